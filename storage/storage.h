/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Durable storage of one election's data directory, on LMDB: the journal of
 * the exact SignedBatch bytes keyed by position, the precinct state used for
 * deduplication, recorded conflicts, counter snapshots (one slice of
 * precincts at a time), and the pinned definition hash. Recovery = every
 * slice's snapshot + replay of the journal entries each one does not cover.
 *
 * This is the only code that includes lmdb.h; nothing above it sees MDB_*
 * codes (MDB_MAP_FULL becomes -ENOSPC, MDB_NOTFOUND -ENOENT, anything that
 * fails a consistency check BAL_ECORRUPT). No networking, no protobuf: replay
 * hands raw journal bytes to a callback.
 *
 * Threads: exactly one thread (the committer) uses the write functions; the
 * read functions may be called from any thread at any time and never block
 * the writer (LMDB MVCC, MDB_NOTLS).
 */
#ifndef BAL_STORAGE_H
#define BAL_STORAGE_H

#include "core/ballot.h"

/** Opaque: environment, DBIs, write-txn state. */
struct bal_store;

/**
 * Finds the part of a journaled record that its sender signed (for a
 * SignedBatch, the `batch` field). Deduplication and conflicts compare these
 * parts only, so the same signed batch in another envelope is a duplicate,
 * and a conflict needs another signed batch.
 * @return 0 with [*off, *off + *len) inside the record; non-zero if the
 *         record has no such part (then the whole record is compared).
 * Called on the committer thread; must not allocate.
 */
typedef int (*bal_store_signed_fn)(const uint8_t *rec, size_t len, size_t *off, size_t *slen);

#define BAL_STORE_CONFLICTS_PER_KEY      4u
#define BAL_STORE_CONFLICTS_PER_PRECINCT 64u

struct bal_store_opts {
	const char *dir;      /**< created (mode 0700) if missing */
	size_t map_size;      /**< LMDB map size in bytes */
	uint8_t hash[32];     /**< definition hash to pin / compare */
	unsigned max_readers; /**< 0 = default (126) */
	/** The definition's precinct ids, strictly ascending (copied). A precinct
	 * is named by its index in this array wherever the API says "index". */
	const uint32_t *precinct_ids;
	uint32_t nprecincts; /**< >= 1 */
	/** Distinct conflicting versions stored per (precinct, seq); 0 = BAL_STORE_CONFLICTS_PER_KEY. */
	unsigned conflicts_per_key;
	/** Conflicting versions stored per precinct; 0 = BAL_STORE_CONFLICTS_PER_PRECINCT. */
	unsigned conflicts_per_precinct;
	/** NULL: records are compared whole. */
	bal_store_signed_fn signed_part;
	/** Per precinct index: the most journal bytes (records as appended)
	 * its batches may take; UINT64_MAX = no quota. NULL: no quotas. Copied. */
	const uint64_t *quota;
};

/**
 * Opens (creating if needed) the data directory.
 * At first start pins `opts->hash`; later starts compare it.
 * @param[out] out  new store, owned by the caller (bal_store_close()).
 * @param[out] why  on failure, one line; for BAL_EDEFN it names both hashes
 *                  in hex ("data dir X belongs to definition <hex>, not <hex>").
 * A data directory whose log (see below) holds fewer leaves than the
 * journal, one written before the log existed, gets them here: the tree is
 * extended from the journal records, in txns of its own.
 * @return 0; BAL_EDEFN on hash mismatch; BAL_ECORRUPT if the stored format is
 *         not ours, the journal names a precinct not in `precinct_ids`, the
 *         tree table is damaged, or a journal record the tree is extended
 *         from is; -EINVAL for bad options (ids not ascending, none); -errno
 *         (e.g. -EACCES, -ENOSPC) otherwise.
 */
int bal_store_open(const struct bal_store_opts *opts, struct bal_store **out, char *why, size_t whylen);

/** Closes the environment. Any write txn must have been committed or aborted. NULL is fine. */
void bal_store_close(struct bal_store *s);

/* ---- write side: committer thread only ---------------------------------- */

/**
 * Begins the one write transaction.
 * @return 0; BAL_ECORRUPT when the log covers positions the journal has
 *         lost (bal_store_recover() says which): nothing may follow them;
 *         -errno.
 */
int bal_store_wbegin(struct bal_store *s);

/**
 * Within the write txn: deduplicates (precinct, seq) and appends `bytes` (the
 * SignedBatch exactly as received) to the journal at the next position.
 * `precinct` is an index into the open options' precinct_ids; the journal
 * record names the precinct by its id. Later calls in the same txn see
 * earlier ones.
 * @param[out] position  the new position (0), or the original one
 *                       (BAL_EDUPLICATE / BAL_ECONFLICT).
 * @return 0 journaled; BAL_EDUPLICATE the same signed part (see
 *         bal_store_signed_fn) already journaled under that key;
 *         BAL_ECONFLICT another signed part already journaled under that key:
 *         the new bytes are recorded in the conflict table within this txn
 *         unless that version is recorded already or the key or the precinct
 *         has reached its cap of stored versions (then it is only counted:
 *         bal_store_conflict_counts());
 *         BAL_EQUOTA a new key whose bytes would take the precinct beyond
 *         its quota (nothing written; the txn lives on);
 *         -EINVAL no such precinct index (the txn lives on);
 *         -ENOSPC map full, -errno: the txn is dead, call bal_store_wabort().
 */
int bal_store_append(struct bal_store *s, uint32_t precinct, uint64_t seq, const uint8_t *bytes, size_t len,
                     uint64_t *position);

/**
 * Within the write txn: whether (precinct index, seq) is journaled, committed
 * or earlier in this txn. Writes nothing. For a batch about to be refused
 * (an overflow): a resend of a journaled one is answered by
 * bal_store_append() (DUPLICATE or a recorded conflict) instead.
 * @return 1 journaled, 0 not; -EINVAL no such index, or a mapped error (the
 *         txn lives on).
 */
int bal_store_seen(struct bal_store *s, uint32_t precinct, uint64_t seq);

/** Number of snapshot slices (>= 1, pinned at first start). Any thread. */
unsigned bal_store_slices(const struct bal_store *s);

/** Slice k's precincts: indices [*first, *end). k < bal_store_slices(). Any thread. */
void bal_store_slice_range(const struct bal_store *s, unsigned k, uint32_t *first, uint32_t *end);

/** Committed snapshot position of slice k (0: never written). Committer thread. */
uint64_t bal_store_slice_position(const struct bal_store *s, unsigned k);

/**
 * Within the write txn: stores `blob` (`len` bytes, the caller's snapshot of
 * slice k's precincts as of the last position appended in this txn) as slice
 * k's snapshot, replacing the previous one, and moves the slice's dedup keys
 * from the in-memory tail into the table. Both become durable with the txn,
 * together with the journal prefix the snapshot covers.
 * @return 0; -EINVAL (k out of range; the txn lives on); -ENOSPC / -errno:
 *         txn dead, abort it.
 */
int bal_store_put_slice(struct bal_store *s, unsigned k, const void *blob, size_t len);

/**
 * Commits and syncs the write txn: when it returns 0 the data is on disk.
 * @return 0; -ENOSPC (map or disk full: a write that the filesystem cut short
 *         for lack of room, which LMDB reports as EIO, is -ENOSPC too; a real
 *         device error stays -EIO), -EIO, -errno: nothing was committed (the
 *         txn is gone; no abort needed).
 */
int bal_store_wcommit(struct bal_store *s);

/** Aborts the write txn, if any. Safe to call when none is open. */
void bal_store_wabort(struct bal_store *s);

/* ---- the log: Merkle tree over the journal (storage/merkle.c) ------------
 * Every journal record is a leaf (position p is leaf p - 1, its hash
 * SHA-256(0x00 || the bytes given to bal_store_append())), added by
 * bal_store_append() in the same txn, so the tree is exactly as durable as
 * the journal; RFC 6962 shape and node hashes. Complete subtrees' hashes
 * are stored once each; a root or a proof for any size up to the committed
 * position takes O(log n) reads. Appends refused (duplicates, conflicts,
 * quota) add no leaf. */

/**
 * Within the write txn, from memory (no reads, no allocation):
 * - wroot: the root of the tree of every position appended so far (the
 *   txn's last position; the committed one if the txn appended nothing;
 *   SHA-256 of nothing for an empty journal);
 * - wpath: the leaf hash and RFC 6962 audit path of `position`, appended in
 *   this txn, against that size (r->leaf_index, leaf_hash, npath, path;
 *   r->head untouched: the caller fills it once the head is signed). Valid
 *   for the txn's current size: a later append changes the root.
 * @return 0; -EINVAL (no txn, or `position` not appended in this txn); the
 *         txn's recorded error if an earlier call failed it.
 */
int bal_store_tree_wroot(struct bal_store *s, uint8_t root[BAL_HASH_BYTES]);
int bal_store_tree_wpath(struct bal_store *s, uint64_t position, struct bal_receipt *r);

/**
 * Within the write txn: keeps a copy of `h` as the signed head of its
 * size, durable with the txn. Its tree_size must be the txn's last position
 * and its root that of bal_store_tree_wroot() (checked, not trusted); the
 * signature is stored as given. One head per size, every one kept.
 * @return 0; -EINVAL (no txn, another size, another root; the txn lives
 *         on); -EEXIST (that size has a head already, committed or in this
 *         txn: nothing written, the txn lives on); -ENOSPC / -errno: txn
 *         dead, abort it.
 */
int bal_store_put_head(struct bal_store *s, const struct bal_tree_head *h);

/** The committed head of `tree_size` (0: the latest, the largest size). Any thread.
 * @return 0, -ENOENT (no head of that size, or none at all), BAL_ECORRUPT (a
 *         damaged record), -errno. */
int bal_store_head(struct bal_store *s, uint64_t tree_size, struct bal_tree_head *out);

/**
 * Any thread, one read txn each, O(log n) reads:
 * - root: the root of the tree of `tree_size` leaves (1..committed position);
 * - path: the leaf hash and RFC 6962 audit path (PATH) of `position`
 *   (1..tree_size) in it (r->leaf_index, leaf_hash, npath, path; r->head
 *   untouched);
 * - consistency: the RFC 6962 consistency proof (PROOF) between sizes
 *   `first` and `second` (1 <= first <= second <= committed; empty when
 *   they are equal), `*npath` hashes into `path`.
 * Out-params are written only on success.
 * @return 0; -EINVAL (out of range, a size not committed yet included);
 *         BAL_ECORRUPT (a stored node missing or not 32 bytes); -errno.
 */
int bal_store_tree_root(struct bal_store *s, uint64_t tree_size, uint8_t root[BAL_HASH_BYTES]);
int bal_store_tree_path(struct bal_store *s, uint64_t position, uint64_t tree_size, struct bal_receipt *r);
int bal_store_tree_consistency(struct bal_store *s, uint64_t first, uint64_t second,
                               uint8_t path[BAL_TREE_MAX_PATH][BAL_HASH_BYTES], unsigned *npath);

/* ---- read side: any thread ---------------------------------------------- */

/** Last committed journal position (0 when empty). Lock-free. */
uint64_t bal_store_position(const struct bal_store *s);

/** Called per journal entry; `bytes` is valid only during the call. Non-zero stops the scan. */
typedef int (*bal_store_entry_cb)(void *arg, uint64_t position, const uint8_t *bytes, size_t len);

/**
 * Calls `cb` for each journal entry with position > after, in order, from one
 * read txn. @return 0, the callback's non-zero value, or -errno.
 */
int bal_store_journal_scan(struct bal_store *s, uint64_t after, bal_store_entry_cb cb, void *arg);

/**
 * Copies the journal entry at `position` into `buf` (cap bytes).
 * @return its length (may exceed cap: then nothing is copied), -ENOENT, -errno.
 */
long bal_store_journal_get(struct bal_store *s, uint64_t position, uint8_t *buf, size_t cap);

/**
 * Every journaled (seq, position) of a precinct (by id), in seq order, from
 * one read txn: (*pairs)[i][0] the seq, [1] the position; *pairs is malloc'd,
 * the caller's to free (NULL when *n is 0). @return 0, -errno.
 */
int bal_store_precinct_list(struct bal_store *s, uint32_t precinct_id, uint64_t (**pairs)[2], size_t *n);

/** Called per accepted (seq, position) of a precinct, in seq order. Non-zero stops. */
typedef int (*bal_store_seq_cb)(void *arg, uint64_t seq, uint64_t position);
/** bal_store_precinct_list() handed to `cb` pair by pair. */
int bal_store_precinct_scan(struct bal_store *s, uint32_t precinct_id, bal_store_seq_cb cb, void *arg);

/**
 * Journal bytes of precinct index `precinct`: `used` by its committed
 * records, and its `quota` (UINT64_MAX: none). Any thread; lock-free.
 * @return 0, -EINVAL (no such index).
 */
int bal_store_precinct_bytes(const struct bal_store *s, uint32_t precinct, uint64_t *used, uint64_t *quota);

/**
 * A precinct's conflicting resends: `stored` versions kept in the conflict
 * table and `unstored` refused beyond the caps or already recorded. Any thread.
 * @return 0, -errno.
 */
int bal_store_conflict_counts(struct bal_store *s, uint32_t precinct_id, uint64_t *stored, uint64_t *unstored);

/** Called per recorded conflict of a precinct; `bytes` valid only during the call. */
typedef int (*bal_store_conflict_cb)(void *arg, uint64_t seq, uint64_t original_position, const uint8_t *bytes,
                                     size_t len);
int bal_store_conflict_scan(struct bal_store *s, uint32_t precinct_id, bal_store_conflict_cb cb, void *arg);

struct bal_store_info {
	uint64_t position;          /**< last committed journal position */
	uint64_t snapshot_position; /**< oldest slice snapshot position: recovery replays what follows it */
	uint64_t conflicts;         /**< conflicts recorded */
	uint64_t map_size;          /**< bytes */
	uint64_t map_used;          /**< bytes in use (last page number * page size) */
};
int bal_store_info(struct bal_store *s, struct bal_store_info *out);

/* ---- recovery ------------------------------------------------------------ */

struct bal_recovery_report {
	uint64_t snapshot_position; /**< oldest slice snapshot position (0 if a slice has none) */
	uint64_t replayed;          /**< journal entries replayed: those later than their slice's snapshot */
	uint64_t scanned;           /**< journal entries read after snapshot_position */
	uint64_t position;          /**< last journal position */
	double ms;                  /**< wall time */
};

/** What recovery calls, in this order, from one read txn. Non-zero stops it. */
struct bal_recovery_ops {
	/** Once per slice with a snapshot: its precincts [first, end) and the
	 * blob stored by bal_store_put_slice() (valid only during the call). */
	int (*slice)(void *arg, unsigned k, uint32_t first, uint32_t end, const uint8_t *blob, size_t len);
	/** Once, after every slice was loaded, before the first entry; may be NULL. */
	int (*loaded)(void *arg);
	/** Per journal entry later than its precinct's slice snapshot, in
	 * journal order; `precinct` is its index (see bal_store_opts). */
	int (*entry)(void *arg, uint64_t position, uint32_t precinct, const uint8_t *bytes, size_t len);
};

/**
 * Loads every slice snapshot and replays the journal entries they do not
 * cover, through `ops`. A journaled batch that no longer applies, a damaged
 * slice or journal record, a slice or the log (tree or signed head) beyond
 * the journal's end or a record naming an unknown precinct is corruption,
 * never skipped.
 * @return 0; BAL_ECORRUPT (why names the position or slice); -errno.
 */
int bal_store_recover(struct bal_store *s, const struct bal_recovery_ops *ops, void *arg,
                      struct bal_recovery_report *rep, char *why, size_t whylen);

#endif
