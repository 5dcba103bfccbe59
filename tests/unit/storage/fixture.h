/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared fixture of the storage unit tests: a fresh mkdtemp data directory per
 * test (created in .init, removed in .fini), opening helpers, and a way to
 * damage a stored record through LMDB directly (the public API cannot).
 */
#ifndef BAL_TEST_STORAGE_FIXTURE_H
#define BAL_TEST_STORAGE_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "storage/storage.h"

#define MiB ((size_t)1 << 20)

/** The current test's data directory (inside the mkdtemp directory). */
extern char fx_dir[];

/** .init: creates the temporary directory. */
void fx_setup(void);
/** .fini: removes it and everything below. */
void fx_teardown(void);

/** Precincts of the stores fx_open() opens: ids 0..FX_PRECINCTS-1, so an id is its own index. */
#define FX_PRECINCTS 1024u

/** Opens fx_dir with a hash filled with `hash_byte` and precinct ids 0..nprecincts-1; asserts success. */
struct bal_store *fx_open_precincts(uint8_t hash_byte, size_t map_size, uint32_t nprecincts);
/** fx_open_precincts() with FX_PRECINCTS precincts. */
struct bal_store *fx_open(uint8_t hash_byte, size_t map_size);
/** Opens with hash byte 0x11 and 8 MiB. */
struct bal_store *fx_open_default(void);

/** Deterministic payload of `len` bytes derived from `seed`. */
void fx_fill(uint8_t *buf, size_t len, uint32_t seed);

/** One txn with one append that must be journaled; returns the position. */
uint64_t fx_commit_one(struct bal_store *s, uint32_t precinct, uint64_t seq, const uint8_t *bytes, size_t len);

/** Commits seqs first..last of `precinct`, one txn each, payload fx_fill(len, seq). */
void fx_journal(struct bal_store *s, uint32_t precinct, uint64_t first, uint64_t last, size_t len);

/** Asserts positions pos..pos+count-1 hold fx_fill(len, seed), seed = first_seed, first_seed+1, ... */
void fx_expect_journal(struct bal_store *s, uint64_t pos, uint64_t first_seed, uint64_t count, size_t len);

/** One txn that only stores `len` bytes as slice k's snapshot (at the committed position). */
void fx_commit_slice(struct bal_store *s, unsigned k, const void *blob, size_t len);

/**
 * With the store closed: XORs 0xff into byte `offset` of the value stored
 * under big-endian u64 `key` in table `dbi`.
 */
void fx_damage(const char *dbi, uint64_t key, size_t offset);

/** With the store closed: deletes big-endian u64 `key` from table `dbi` (a lost record). */
void fx_delete(const char *dbi, uint64_t key);

/** Number of entries in table `dbi` (store closed). */
size_t fx_entries(const char *dbi);

/** With the store closed: stores `len` bytes under big-endian u64 `key` in table `dbi`, replacing any value. */
void fx_put(const char *dbi, uint64_t key, const void *val, size_t len);

/** With the store closed: deletes every big-endian u64 key >= `from` of table `dbi` (0: empties it). */
void fx_truncate(const char *dbi, uint64_t from);

/** With the store closed: deletes table `dbi` itself, as in a data directory from before it existed. */
void fx_drop(const char *dbi);

#endif
