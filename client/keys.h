/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Demo keying scheme shared by `ballotctl gen-definition` (which publishes the
 * public keys in the definition) and the uploaders (which sign with the
 * matching secret keys). Depends on libsodium only.
 *
 * The keys are derived from a public seed, so anyone who knows the seed can
 * sign for any precinct: this exists for demos, tests and benchmarks only.
 * Real deployments provision one key pair per polling station, generated on
 * the station's device, and put only the public keys in the definition.
 */
#ifndef BAL_CLIENT_KEYS_H
#define BAL_CLIENT_KEYS_H

#include <stdint.h>

/**
 * Derives the demo Ed25519 key pair of a precinct:
 * crypto_sign_seed_keypair(SHA-256("ballotd-demo-key:" seed ":" precinct_id)),
 * with `seed` and `precinct_id` written in decimal.
 * @param[out] pk  public key (crypto_sign_PUBLICKEYBYTES)
 * @param[out] sk  secret key (crypto_sign_SECRETKEYBYTES)
 * Deterministic and thread-safe; calls sodium_init() on first use.
 */
void bal_demo_keypair(uint64_t seed, uint32_t precinct_id, uint8_t pk[32], uint8_t sk[64]);

#endif
