/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to storage/: the layout of struct bal_store, the on-disk record
 * formats and the helpers shared by env.c, journal.c, snapshot.c and
 * recovery.c. Nothing outside storage/ includes this file except the storage
 * unit tests, which damage records on purpose through LMDB directly.
 *
 * On-disk layout (one LMDB environment, named DBIs, all integers big-endian
 * so that LMDB's byte order equals numeric order):
 * - "meta":      "format" -> u32 BAL_STORE_FORMAT; "defn_hash" -> 32 bytes;
 *                "conflicts" -> u64 count of recorded conflicts;
 *                "conflicts/<precinct id>" and "conflicts-unstored/<precinct
 *                id>" (decimal) -> u64 counts of that precinct's stored and
 *                unstored conflicting resends;
 *                "slices" -> u32 number of snapshot slices;
 *                "journal-bytes/<k>" (slice number, decimal) -> u64
 *                position + one u64 per precinct of slice k: the journal
 *                bytes of each precinct's records up to that position
 *                (written with the slice's snapshot; a slice without one
 *                counts its precincts' records from position 1).
 * - "journal":   position u64 -> record (see BAL_REC_HDR) holding the exact
 *                bytes; positions start at 1 and have no gaps.
 * - "dedup":     (precinct u32, seq u64) -> position u64. For the precincts
 *                of slice k it holds every key with a position up to that
 *                slice's snapshot position; later ones are in the in-memory
 *                tail (tail.c), rebuilt from the journal.
 * - "conflicts": (precinct u32, seq u64, counter u32) -> original position
 *                u64 + the conflicting bytes.
 * - "snapshots": slice number u64 -> record holding the caller's snapshot of
 *                that slice's precincts, taken at the position in its header.
 * - "tree":      post-order index u64 -> 32-byte hash: every perfect subtree
 *                of the log (the RFC 6962 Merkle tree whose leaf i is journal
 *                position i + 1), written in the txn that appends its last
 *                leaf, in key order (merkle.c explains the index). A tree of
 *                n leaves holds keys 0 .. 2n - popcount(n) - 1, so its size
 *                is read off the last key. An older data directory without
 *                it gets it from the journal at open.
 * - "heads":     tree_size u64 -> timestamp_ms u64 + root (32) + signature
 *                (64): the signed heads of the log, one per size.
 *
 * Slices. The precincts (indices into bal_store_opts.precinct_ids, sorted by
 * id) are cut into `nslices` ranges [k*n/S, (k+1)*n/S). Each slice has its
 * own snapshot position: the committer writes one slice at a time, in turn,
 * inside ordinary group commits, so no commit carries a whole snapshot and
 * the dedup merge of a slice touches only that slice's key range. Recovery
 * loads every slice and replays a journal entry only if it is later than the
 * snapshot of its precinct's slice.
 */
#ifndef BAL_STORAGE_STORE_LMDB_H
#define BAL_STORAGE_STORE_LMDB_H

#include <lmdb.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/reason.h"
#include "storage/storage.h"

/* 3: snapshots and the dedup merge by slice of precincts.
 * 4: the daemon lists one more id, the commission's (UINT32_MAX), after the
 *    precincts: the slices of a directory of format 3 would cut the
 *    precincts elsewhere, so it is refused rather than misread. */
#define BAL_STORE_FORMAT 4u
/* Slices of a new data directory (fewer if it has fewer precincts); the
 * number is pinned in "meta" at first start. */
#define BAL_STORE_SLICES 64u

#define BAL_STORE_DBI_META      "meta"
#define BAL_STORE_DBI_JOURNAL   "journal"
#define BAL_STORE_DBI_DEDUP     "dedup"
#define BAL_STORE_DBI_CONFLICTS "conflicts"
#define BAL_STORE_DBI_SNAPSHOTS "snapshots"
#define BAL_STORE_DBI_TREE      "tree"
#define BAL_STORE_DBI_HEADS     "heads"

/*
 * Journal and snapshot values share one checked record format: a header
 * {magic u32, a u32, b u64, checksum u64} + payload, where the checksum
 * covers the u64 key, the first 16 header bytes and the payload (a record
 * copied under another key fails too).
 * - journal:   a = precinct, b = seq, payload = the exact bytes;
 * - snapshots: a = BAL_SNAP_VERSION, b = position, payload = the slice.
 */
#define BAL_REC_HDR      24
#define BAL_JREC_MAGIC   0x42414c4aU /* "BALJ" */
#define BAL_SNAP_MAGIC   0x42414c53U /* "BALS" */
#define BAL_SNAP_VERSION 2u

/** A parsed record; `payload` points into the map: valid until the txn ends. */
struct bal__rec {
	uint32_t a;
	uint64_t b;
	const uint8_t *payload;
	size_t len;
};

#define BAL_DEDUP_KEY    12 /* precinct u32 + seq u64 */
#define BAL_CONFLICT_KEY 16 /* dedup key + counter u32 */

/** One key of a precinct's tail: a seq and where it was journaled. */
struct bal__tail_ent {
	uint64_t seq;
	uint64_t position;
};

/**
 * Committer-side state of one precinct.
 * - `tail[0..n)` holds, sorted by seq, every journaled key of the precinct
 *   with a position above its slice's snapshot position (committed, plus
 *   those appended in the open write txn); `cap` is its allocation;
 * - `tail_max` is the largest seq in the tail, 0 when it is empty;
 * - `table_max` is the largest seq of the precinct in "dedup", 0 if none: a
 *   seq above both maxima was never journaled, which the append of a new
 *   batch learns without a look-up;
 * - `slice` is the slice it belongs to;
 * - `bytes` sums the payload lengths of its journal records, committed plus
 *   those appended in the open write txn; `cbytes` the committed ones only
 *   (read by any thread); `quota` bounds `bytes` for new records.
 */
struct bal__prec {
	uint64_t table_max;
	uint64_t tail_max;
	uint64_t bytes, quota;
	_Atomic uint64_t cbytes;
	bool touched; /* listed in bal_store.touched */
	struct bal__tail_ent *tail;
	uint32_t n, cap;
	uint32_t slice;
};

/**
 * - `position` is the last committed journal position: written only by the
 *   committer after mdb_txn_commit() succeeded, read lock-free by anyone;
 * - `wtxn != NULL` iff a write txn is open; `wposition >= position` is the
 *   last position appended within it;
 * - `werr != 0` iff an operation inside `wtxn` failed: the txn may only be
 *   aborted (wcommit aborts it and returns `werr`);
 * - `ids[0..nprec)` are the precinct ids, ascending; `prec` their state;
 * - `slice_pos[k]` is the committed snapshot position of slice k (0: none);
 *   `slice_wpos[k]` the one written in the open txn, or UINT64_MAX;
 * - `tail_bad != 0`: the tails must be reloaded before the next write txn;
 * - `touched[0..ntouched)` are the precincts whose `bytes` the open write txn
 *   changed (published to `cbytes` when it commits).
 * - the log (merkle.c): `tree_leaves` is the number of leaves of the
 *   committed tree, == `position` unless `log_lost`; `front[h]` is its
 *   perfect subtree at level h, for each set bit h of `tree_leaves`;
 *   `wnodes[0..nodes(wposition) - nodes(tree_leaves))` are the nodes the
 *   open write txn created, in post-order (`wnodes_cap` their allocation,
 *   kept across txns); `spine[h]` (for the set bits h of `wposition`) is
 *   the right spine of the txn's tree iff `spine_ok`;
 * - `head_next` is 0 with no signed head, else the last head's size + 1;
 *   `whead_next` the same within the open write txn;
 * - `log_end` is the longest log (tree or head size) found at open, and
 *   `log_lost` is set iff it exceeds the journal: then no write txn begins
 *   and recovery reports the lost records. Both are fixed at open.
 * Only the committer thread touches prec, slice_pos, slice_wpos, tail_bad
 * and the log's state.
 */
struct bal_store {
	int lock_fd; /* DIR/ballotd.lock, flock()ed exclusively while the store is open */
	MDB_env *env;
	MDB_dbi meta, journal, dedup, conflicts, snapshots, tree, heads;
	char *dir;
	_Atomic uint64_t position;
	MDB_txn *wtxn;
	uint64_t wposition;
	int werr;
	uint32_t nprec;
	uint32_t *ids;
	struct bal__prec *prec;
	unsigned nslices;
	uint64_t *slice_pos, *slice_wpos;
	int tail_bad;
	uint32_t *touched, ntouched;
	unsigned conflicts_per_key, conflicts_per_precinct; /* >= 1 */
	bal_store_signed_fn signed_part;                    /* NULL: compare whole records */
	uint64_t tree_leaves;
	uint8_t front[64][BAL_HASH_BYTES];
	uint8_t (*wnodes)[BAL_HASH_BYTES];
	size_t wnodes_cap;
	uint8_t spine[64][BAL_HASH_BYTES];
	bool spine_ok;
	uint64_t head_next, whead_next;
	uint64_t log_end;
	bool log_lost;
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

/** Formats one line into `why` (may be NULL): bal_fail() for callers that return their error apart. */
#define bal__store_why(why, whylen, ...) ((void)bal_fail((why), (whylen), 0, __VA_ARGS__))

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

/* tail.c: the in-memory dedup index of the journal tail, per precinct. */

/** Index of precinct `id` in `ids`, or -1. */
int32_t bal__precinct_index(const struct bal_store *s, uint32_t id);
/** The same for the precinct a journal record at `position` names; -1 with `why` set if it is unknown. */
int32_t bal__record_precinct(const struct bal_store *s, uint64_t position, uint32_t id, char *why, size_t whylen);
/** First precinct index of slice k (k may be nslices: then nprec). */
uint32_t bal__slice_first(const struct bal_store *s, unsigned k);
/** Frees every tail. */
void bal__tail_deinit(struct bal_store *s);
/** Position of `seq` in precinct p's tail, or 0. */
uint64_t bal__tail_get(const struct bal__prec *p, uint64_t seq);
/** Adds (seq, position) to p's tail, keeping it sorted. 0 or -ENOMEM. */
int bal__tail_put(struct bal__prec *p, uint64_t seq, uint64_t position);
/** Within the write txn: moves the tails of slice k's precincts into "dedup", in key order. 0 or error. */
int bal__tail_merge(struct bal_store *s, unsigned k);
/**
 * Reads slice k's snapshot position in `txn` into `pos` (0 for a slice never
 * written) from its record header, without verifying the payload.
 * @return 0, BAL_ECORRUPT, -errno.
 */
int bal__slice_position(struct bal_store *s, MDB_txn *txn, unsigned k, uint64_t *pos, char *why, size_t whylen);
/**
 * The committed state of every tail, table maximum, slice position and
 * journal byte count, read from the store.
 */
int bal__tail_reload(struct bal_store *s, char *why, size_t whylen);
/** Within the write txn: records the journal bytes of slice k's precincts as of the txn's last position. */
int bal__bytes_put(struct bal_store *s, unsigned k);

/* merkle.c: the log over the journal. */

/**
 * At open, after the position is known: reads the committed tree (its size,
 * its frontier) and the last head, and extends the tree from the journal
 * when it holds fewer leaves (a data directory from before the log).
 * @return 0; BAL_ECORRUPT (a damaged tree table or journal record: why
 *         says which); -errno.
 */
int bal__tree_open(struct bal_store *s, char *why, size_t whylen);
/** Frees the log's buffers. */
void bal__tree_deinit(struct bal_store *s);
/** Before a write txn begins: 0, or BAL_ECORRUPT when the log is longer than the journal. */
int bal__tree_wbegin(struct bal_store *s);
/** Within the write txn: adds the leaf of `bytes` as position wposition + 1 (the caller then advances wposition). */
int bal__tree_leaf(struct bal_store *s, const uint8_t *bytes, size_t len);
/** After the write txn committed, before `position` moves to `wposition`. */
void bal__tree_committed(struct bal_store *s);

/** 64-bit checksum for damage detection (not cryptographic); chain calls through `seed`. */
uint64_t bal__store_sum(const void *p, size_t n, uint64_t seed);
#define BAL_SUM_SEED 0xcbf29ce484222325ULL

/** Called per journal record by bal__journal_walk(); `r` points into the map. */
typedef int (*bal__jrec_cb)(void *arg, uint64_t position, const struct bal__rec *r);

/**
 * Walks journal entries with position > after in `txn`, verifying each record
 * and that positions follow each other without gaps.
 * @param[out] at  position of the entry that stopped the walk (callback or damage).
 * @return 0, the callback's non-zero value, BAL_ECORRUPT (why says what), -errno.
 */
int bal__journal_walk(struct bal_store *s, MDB_txn *txn, uint64_t after, bal__jrec_cb cb, void *arg, uint64_t *at,
                      char *why, size_t whylen);

/**
 * Reads slice k's snapshot record in `txn` (payload valid until the txn ends).
 * @return 0; -ENOENT none; BAL_ECORRUPT (why says what); -errno.
 */
int bal__slice_read(struct bal_store *s, MDB_txn *txn, unsigned k, struct bal__rec *r, char *why, size_t whylen);

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
