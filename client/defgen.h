/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Synthetic election definitions in the format of docs/definition.md, for demos, tests and
 * benchmarks (`ballotctl gen-definition`): one national party-list contest and
 * one single-member contest per district, precincts spread over the districts
 * in contiguous id blocks, demo public keys (client/keys.h).
 *
 * Depends on jansson and libsodium; knows nothing about the daemon. The output
 * is a pure function of the options: same options, byte-identical text.
 */
#ifndef BAL_CLIENT_DEFGEN_H
#define BAL_CLIENT_DEFGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Parameters of a generated definition; bal_defgen_defaults() fills them. */
struct bal_defgen_opts {
	uint32_t precincts;       /**< >= 1 and >= districts; ids 1..precincts */
	uint32_t districts;       /**< >= 1; ids 1..districts; contest 100+d each */
	uint32_t choices;         /**< per contest, >= 2; the last is "Against all" */
	uint64_t seed;            /**< names, registered voters and demo keys */
	bool keys;                /**< write public_key (demo key of `seed`) */
	uint32_t party_seats;     /**< seats of the party-list contest (id 1), >= 1 */
	double threshold_percent; /**< 0 <= t < 100 */
	uint64_t registered_min;  /**< registered_voters uniform in [min, max] */
	uint64_t registered_max;
	bool unbounded; /**< mark every precinct "unbounded": no plausibility bounds (load tests) */
	const char *election_id;
	const char *election_name;
	const char *election_date; /**< YYYY-MM-DD */
	/** The commission's Ed25519 public key (32 bytes), written as the
	 * top-level "commission_key" (hex); NULL: none, no amendments. */
	const uint8_t *commission_key;
};

/** The bundled demo's parameters: 10000 precincts, 29 districts, 8 choices,
 * seed 2023, keys, 69 seats, 5%, 500..3000 voters, "kz-2023-mazhilis". */
void bal_defgen_defaults(struct bal_defgen_opts *o);

/**
 * Writes the definition as JSON text (one array element per line).
 * @param[out] out  on success a NUL-terminated malloc'd string the caller
 *                  frees; `*len` its length. Untouched on failure.
 * @return 0; -EINVAL with `why` naming the option, its value and the limit;
 *         -ENOMEM.
 */
int bal_defgen_json(const struct bal_defgen_opts *o, char **out, size_t *len, char *why, size_t whylen);

#endif
