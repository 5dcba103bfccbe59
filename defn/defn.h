/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Election definition loader: reads the JSON described in docs/definition.md
 * into the plain structs of core/ballot.h, resolving ids to dense indices and
 * computing the definition hash that a data directory is pinned to.
 *
 * Depends on jansson (JSON) and libsodium (SHA-256, base64); nothing here
 * knows about networking or storage.
 */
#ifndef BAL_DEFN_H
#define BAL_DEFN_H

#include "core/ballot.h"

/**
 * Parses a definition from memory.
 * @param[out] out  on success, a new definition; the caller owns it and frees
 *                  it with bal_defn_free(). Untouched on failure.
 * @param[out] why  on failure, one line naming the JSON path, the value and
 *                  what was expected, e.g.
 *                  "precincts[3].district_id: 42 is not a district id".
 * @return 0 or BAL_EDEFN (invalid), -ENOMEM.
 */
int bal_defn_parse(const char *json, size_t len, struct bal_defn **out, char *why, size_t whylen);

/** Like bal_defn_parse() on a file's contents; -errno if it cannot be read
 * (why names the path). */
int bal_defn_load(const char *path, struct bal_defn **out, char *why, size_t whylen);

/** Frees everything the definition owns. NULL is fine. */
void bal_defn_free(struct bal_defn *d);

/** Lower-case hex of d->hash into `hex` (65 bytes). */
void bal_defn_hash_hex(const struct bal_defn *d, char hex[65]);

#endif
