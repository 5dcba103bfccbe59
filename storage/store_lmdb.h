/*
 * Private to storage/: the layout of struct bal_store, the on-disk record
 * formats and the helpers shared by env.c, journal.c, snapshot.c and
 * recovery.c. Nothing outside storage/ includes this file except the storage
 * unit tests, which damage records on purpose through LMDB directly.
 *
 * On-disk layout (one LMDB environment, named DBIs, all integers big-endian
 * so that LMDB's byte order equals numeric order):
 * - "meta":      "format" -> u32 BAL_STORE_FORMAT; "defn_hash" -> 32 bytes;
 *                "conflicts" -> u64 count of recorded conflicts.
 * - "journal":   position u64 -> record (see BAL_REC_HDR) holding the exact
 *                bytes; positions start at 1 and have no gaps.
 * - "dedup":     (precinct u32, seq u64) -> position u64, for every position
 *                up to the newest snapshot's; later ones are in the
 *                in-memory tail index (tail.c), rebuilt from the journal.
 * - "conflicts": (precinct u32, seq u64, counter u32) -> original position
 *                u64 + the conflicting bytes.
 * - "snapshots": position u64 -> record holding nslots native uint64
 *                counters; only the newest is kept.
 */
#ifndef BAL_STORAGE_STORE_LMDB_H
#define BAL_STORAGE_STORE_LMDB_H

#include <lmdb.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "storage.h"

/* 2: "dedup" holds the keys up to the newest snapshot only (see tail.c). */
#define BAL_STORE_FORMAT 2u

#define BAL_STORE_DBI_META "meta"
#define BAL_STORE_DBI_JOURNAL "journal"
#define BAL_STORE_DBI_DEDUP "dedup"
#define BAL_STORE_DBI_CONFLICTS "conflicts"
#define BAL_STORE_DBI_SNAPSHOTS "snapshots"

/*
 * Journal and snapshot values share one checked record format: a header
 * {magic u32, a u32, b u64, checksum u64} + payload, where the checksum
 * covers the u64 key, the first 16 header bytes and the payload (a record
 * copied under another key fails too).
 * - journal:   a = precinct, b = seq, payload = the exact bytes;
 * - snapshots: a = BAL_SNAP_VERSION, b = nslots, payload = the counters.
 */
#define BAL_REC_HDR 24
#define BAL_JREC_MAGIC 0x42414c4aU /* "BALJ" */
#define BAL_SNAP_MAGIC 0x42414c53U /* "BALS" */
#define BAL_SNAP_VERSION 1u

/** A parsed record; `payload` points into the map: valid until the txn ends. */
struct bal__rec {
	uint32_t a;
	uint64_t b;
	const uint8_t *payload;
	size_t len;
};

#define BAL_DEDUP_KEY 12    /* precinct u32 + seq u64 */
#define BAL_CONFLICT_KEY 16 /* dedup key + counter u32 */

/** One key of the tail index; position 0 marks a free cell. */
struct bal__tail_ent {
	uint64_t seq;
	uint64_t position;
	uint32_t precinct;
};

/**
 * Open-addressing hash (linear probing, load <= 1/2) of the dedup keys of
 * the journal tail. `cap` is 0 or a power of two; `n` cells are in use.
 */
struct bal__tail {
	struct bal__tail_ent *e;
	size_t cap, n;
};

/**
 * - `position` is the last committed journal position: written only by the
 *   committer after mdb_txn_commit() succeeded, read lock-free by anyone;
 * - `wtxn != NULL` iff a write txn is open; `wposition >= position` is the
 *   last position appended within it;
 * - `werr != 0` iff an operation inside `wtxn` failed: the txn may only be
 *   aborted (wcommit aborts it and returns `werr`).
 */
struct bal_store {
	MDB_env *env;
	MDB_dbi meta, journal, dedup, conflicts, snapshots;
	char *dir;
	_Atomic uint64_t position;
	MDB_txn *wtxn;
	uint64_t wposition;
	int werr;
	struct bal__tail tail; /* committer-owned; see tail.c */
	int tail_bad;          /* non-zero: the tail must be reloaded before the next write txn */
};

/** MDB_* and errno-style LMDB results -> 0, -errno or BAL_E*. The only translation. */
int bal__store_err(int mdb_rc);

/** Begins a txn (MDB_RDONLY or 0), retrying once after clearing stale reader slots. 0 or mapped error. */
int bal__store_txn_begin(struct bal_store *s, unsigned flags, MDB_txn **txn);

/** Records the first failure of the open write txn and returns `err`. */
int bal__store_wfail(struct bal_store *s, int err);

/** Checks that a write txn is open and healthy: 0, -EINVAL (none open) or its recorded error. */
int bal__store_wready(const struct bal_store *s);

/** Adds `delta` to the u64 meta counter `name` (missing = 0) within `txn`. 0 or error. */
int bal__store_meta_add(struct bal_store *s, MDB_txn *txn, const char *name, uint64_t delta);

/** Formats one line into `why` (may be NULL). */
void bal__store_why(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/**
 * Writes a record under `key` within the write txn `txn` (mdb_put `flags`,
 * e.g. MDB_APPEND). @return 0 or a mapped error (-ENOSPC when the map is full).
 */
int bal__rec_put(MDB_txn *txn, MDB_dbi dbi, uint64_t key, unsigned flags, uint32_t magic, uint32_t a, uint64_t b,
		 const void *payload, size_t len);

/**
 * Validates `val`, stored under `key`, as a record with `magic`: size, magic,
 * checksum. `what` names the record in `why` ("journal position").
 * @return 0 (`r` filled) or BAL_ECORRUPT.
 */
int bal__rec_parse(const MDB_val *val, uint64_t key, uint32_t magic, const char *what, struct bal__rec *r, char *why,
		   size_t whylen);

/* tail.c: the in-memory dedup index of the journal tail. */
void bal__tail_deinit(struct bal__tail *t);
/** Position of (precinct, seq) in the tail, or 0. */
uint64_t bal__tail_get(const struct bal__tail *t, uint32_t precinct, uint64_t seq);
/** 0 or -ENOMEM. */
int bal__tail_put(struct bal__tail *t, uint32_t precinct, uint64_t seq, uint64_t position);
void bal__tail_clear(struct bal__tail *t);
/** Within the write txn: moves the tail keys with position <= upto into "dedup", in key order. 0 or error. */
int bal__tail_merge(struct bal_store *s, uint64_t upto);
/** Replaces the tail with the keys of journal records after `after`, read in `txn`. 0, BAL_ECORRUPT, -errno. */
int bal__tail_load(struct bal_store *s, MDB_txn *txn, uint64_t after, char *why, size_t whylen);
/** The tail as it is after the last commit: reloaded from the journal (used after an abort). */
int bal__tail_reload(struct bal_store *s, char *why, size_t whylen);

/** 64-bit checksum for damage detection (not cryptographic); chain calls through `seed`. */
uint64_t bal__store_sum(const void *p, size_t n, uint64_t seed);
#define BAL_SUM_SEED 0xcbf29ce484222325ULL

/**
 * Walks journal entries with position > after in `txn`, verifying each record
 * and that positions follow each other without gaps.
 * @param[out] at  position of the entry that stopped the walk (callback or damage).
 * @return 0, the callback's non-zero value, BAL_ECORRUPT (why says what), -errno.
 */
int bal__journal_walk(struct bal_store *s, MDB_txn *txn, uint64_t after, bal_store_entry_cb cb, void *arg,
		      uint64_t *at, char *why, size_t whylen);

/**
 * Reads the newest snapshot in `txn` into `ctr` (written only if valid).
 * @return 0; -ENOENT none; BAL_ECORRUPT (why says what); -errno.
 */
int bal__snapshot_read(struct bal_store *s, MDB_txn *txn, uint64_t *position, uint64_t *ctr, size_t n, char *why,
		       size_t whylen);

/**
 * Largest u64 key of `dbi` in `txn` (journal: last position; snapshots:
 * newest) and its value (`val` may be NULL; mv_data NULL when the table is
 * empty, and then `*key` is 0). @return 0, BAL_ECORRUPT, -errno.
 */
int bal__store_last(MDB_txn *txn, MDB_dbi dbi, uint64_t *key, MDB_val *val);

static inline void bal__put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void bal__put_be64(uint8_t *p, uint64_t v)
{
	bal__put_be32(p, (uint32_t)(v >> 32));
	bal__put_be32(p + 4, (uint32_t)v);
}

static inline uint32_t bal__get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline uint64_t bal__get_be64(const uint8_t *p)
{
	return (uint64_t)bal__get_be32(p) << 32 | bal__get_be32(p + 4);
}

#endif
