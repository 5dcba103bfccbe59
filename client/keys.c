/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Demo key derivation (see keys.h for why this is not how real keys are made).
 * libsodium only.
 */
#include "client/keys.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>

void bal_demo_keypair(uint64_t seed, uint32_t precinct_id, uint8_t pk[32], uint8_t sk[64])
{
	/* sodium_init() is idempotent and thread-safe; failure means no usable
	 * randomness source, which seed-derived keys do not need, but the
	 * library must be initialised before use. */
	if (sodium_init() < 0)
		fprintf(stderr,
		        "bal_client: sodium_init failed; continuing: seeded key derivation needs no randomness\n");
	char text[64];
	int n = snprintf(text, sizeof(text), "ballotd-demo-key:%" PRIu64 ":%" PRIu32, seed, precinct_id);
	uint8_t digest[crypto_hash_sha256_BYTES];
	crypto_hash_sha256(digest, (const unsigned char *)text, (unsigned long long)n);
	crypto_sign_seed_keypair(pk, sk, digest);
	sodium_memzero(digest, sizeof(digest));
}
