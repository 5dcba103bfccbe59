/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Core types shared by every ballotd module: error codes, the election
 * definition as plain structs, a decoded batch, and the per-request bump arena.
 *
 * core/ depends on nothing but libc: no uv.h, no lmdb.h, no generated
 * protobuf headers. Everything here can be tested without a loop or a disk.
 *
 * Glossary:
 * - definition: the election (districts, contests, precincts) loaded from JSON;
 *   ids from the file are resolved to dense indices once, at load time.
 * - batch: one upload from a precinct, identified by (precinct_id, seq).
 * - position: the 1-based index of a batch in the journal.
 * - slot: one uint64 counter in the flat counter array (see tally.h).
 */
#ifndef BAL_CORE_BALLOT_H
#define BAL_CORE_BALLOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- errors --------------------------------------------------------------
 * Functions return 0 on success and a negative value on failure. System
 * failures are negative errno values; daemon-specific codes sit in a reserved
 * range far from errno. bal_strerror() covers both. */
enum {
	BAL_EBASE = -20000,
	BAL_ESCHEMA = -20001,      /**< bytes do not decode (HTTP 400) */
	BAL_EINVALID = -20002,     /**< valid protobuf, invalid against the definition (422) */
	BAL_EAUTH = -20003,        /**< bad or missing signature (401) */
	BAL_ECONFLICT = -20004,    /**< same (precinct, seq), different bytes (409) */
	BAL_EDUPLICATE = -20005,   /**< same (precinct, seq), same bytes: already counted */
	BAL_ECORRUPT = -20006,     /**< stored data fails a check */
	BAL_EDEFN = -20007,        /**< definition file invalid, or not the one pinned in the data dir */
	BAL_EOVERFLOW = -20008,    /**< a counter would overflow 64 bits (422) */
	BAL_EUNSUPPORTED = -20009, /**< recognised but not supported (422) */
	BAL_EBUSY = -20010,        /**< commit queue full (503) */
	BAL_EQUOTA = -20011,       /**< the precinct's journal quota is used up (507) */
	BAL_EFORBIDDEN = -20012,   /**< the definition allows no such request (403) */
	BAL_ELAST = -20013,
};

/** Text for a negative errno or BAL_E* code. Never NULL; static storage. */
const char *bal_strerror(int err);

/* ---- definition ---------------------------------------------------------- */

enum bal_kind { BAL_KIND_BALLOTS = 0, BAL_KIND_TALLY = 1, BAL_KIND_PROTOCOL = 2 };

enum bal_contest_kind { BAL_CONTEST_PARTY_LIST = 0, BAL_CONTEST_SINGLE_MEMBER = 1 };

enum bal_method { BAL_METHOD_LARGEST_REMAINDER = 0, BAL_METHOD_DHONDT = 1, BAL_METHOD_PLURALITY = 2 };

struct bal_choice {
	uint32_t id; /**< id from the file; the wire uses the index instead */
	char *name;
	bool seat_eligible; /**< false for "Against all" and the like */
};

struct bal_district {
	uint32_t id;
	char *name;
};

/**
 * One contest. The wire refers to a choice by its index in `choices`
 * (BallotColumn.choices[i], ContestTally.counts[k]).
 * - `district < 0` iff the contest is national (every precinct votes in it);
 * - `nchoices >= 1`.
 */
struct bal_contest {
	uint32_t id;
	char *name;
	enum bal_contest_kind kind;
	enum bal_method method;
	uint32_t seats;
	double threshold_percent;
	int32_t district; /**< index into bal_defn.districts, or -1 */
	uint32_t nchoices;
	struct bal_choice *choices;
};

/**
 * One precinct. Unless `unbounded`, no batch and no sum of its BALLOTS and
 * TALLY batches may count more than `max_voters` ballots, votes in one
 * contest, or ballots issued, cast or spoiled (see bal_tally_fold() and
 * bal_tally_check_plausible()).
 * - `max_voters == registered_voters + registration_margin` (fits: the loader
 *   keeps both below 2^63), or UINT64_MAX iff `unbounded`;
 * - `registration_margin` is the precinct's own, else the definition's.
 */
struct bal_precinct {
	uint32_t id;
	uint32_t district; /**< index into bal_defn.districts */
	uint64_t registered_voters;
	uint64_t registration_margin; /**< voters allowed beyond the register (same-day registration) */
	uint64_t max_voters;          /**< registered_voters + registration_margin; UINT64_MAX if unbounded */
	bool unbounded;               /**< no plausibility bounds apply, except the seq range */
	bool has_key;
	uint8_t public_key[32]; /**< Ed25519; valid iff has_key */
};

/**
 * A loaded election definition. Owned by whoever called bal_defn_load(),
 * freed with bal_defn_free(); immutable after load, so any thread may read it.
 * - `precincts` is sorted by id;
 * - `by_id`, when not NULL, maps id - `id_base` (< `id_span`) to the index
 *   in `precincts` or -1: built by the loader when the ids are dense enough
 *   (a span of at most 4 entries per precinct), so that bal_defn_precinct()
 *   is one array read; otherwise it bisects `precincts`;
 * - `contests` and `districts` keep file order;
 * - `hash` is SHA-256 of the canonical JSON (sorted keys, compact), pinned in
 *   the data directory at first start;
 * - `max_seq >= 1` bounds the seq of every batch; `registration_margin` is
 *   the default of bal_precinct.registration_margin (the file's "limits");
 * - `registered_total` sums registered_voters over every precinct, and the
 *   loader has checked that max_voters summed over the bounded precincts fits
 *   64 bits too.
 */
struct bal_defn {
	char *election_id;
	char *election_name;
	char *election_date;
	uint8_t hash[32];
	uint32_t ndistricts;
	struct bal_district *districts;
	uint32_t ncontests;
	struct bal_contest *contests;
	uint32_t nprecincts;
	struct bal_precinct *precincts;
	uint32_t id_base, id_span;
	int32_t *by_id;
	uint64_t registered_total;
	uint64_t registration_margin;
	uint64_t max_seq;
	bool has_commission_key;
	uint8_t commission_key[32]; /**< Ed25519; signs amendments; valid iff has_commission_key */
};

/** The precinct id that names the commission in the journal and the dedup
 * table: its amendments are the records of this pseudo-precinct. No
 * definition may give a precinct this id. */
#define BAL_COMMISSION_ID UINT32_MAX

/** Index of the precinct with this id, or -1. */
int32_t bal_defn_precinct(const struct bal_defn *d, uint32_t precinct_id);
/** Index of the contest with this id, or -1. */
int32_t bal_defn_contest(const struct bal_defn *d, uint32_t contest_id);
/** Index of the district with this id, or -1. */
int32_t bal_defn_district(const struct bal_defn *d, uint32_t district_id);
/** True iff precinct index `p` votes in contest index `c`. */
bool bal_defn_votes_in(const struct bal_defn *d, uint32_t p, uint32_t c);

/* ---- decoded batch -------------------------------------------------------
 * Produced by proto/codec.c. Every pointer is borrowed: it points into the
 * request arena or into the request body, valid until that arena is reset. */

/* ---- the log: a Merkle tree over the journal ------------------------------
 * Leaf i (0-based) is journal position i + 1; RFC 6962 hashes and shape:
 * leaf = SHA-256(0x00 || record bytes), node = SHA-256(0x01 || left || right). */

#define BAL_HASH_BYTES 32
/** Longest audit or consistency path: one hash per level of a 2^64 tree. */
#define BAL_TREE_MAX_PATH 64

/** A signed tree head: Ed25519 by the log key over bal_tree_head_message(). */
struct bal_tree_head {
	uint64_t tree_size;
	uint64_t timestamp_ms; /**< Unix time the head was made */
	uint8_t root[BAL_HASH_BYTES];
	uint8_t signature[64];
};

/** Proof that journal position leaf_index + 1 is in the tree of `head`. */
struct bal_receipt {
	uint64_t leaf_index;
	uint8_t leaf_hash[BAL_HASH_BYTES];
	struct bal_tree_head head;
	unsigned npath;                                  /**< <= BAL_TREE_MAX_PATH */
	uint8_t path[BAL_TREE_MAX_PATH][BAL_HASH_BYTES]; /**< RFC 6962 PATH, bottom up */
};

/* The bytes a tree head signs: "ballotd-sth-v1" 0x00 election_id 0x00
 * uint64be(tree_size) uint64be(timestamp_ms) root (32). */
#define BAL_STH_LABEL "ballotd-sth-v1"
/** Bytes of the message for an election id of `idlen` bytes. */
#define BAL_STH_MESSAGE_BYTES(idlen) (sizeof(BAL_STH_LABEL) + (idlen) + 1 + 8 + 8 + BAL_HASH_BYTES)

struct bal_column {
	uint32_t contest_id;
	size_t n;
	const uint32_t *choices;
};

struct bal_ctally {
	uint32_t contest_id;
	size_t n;
	const uint64_t *counts;
};

struct bal_batch {
	uint32_t precinct_id;
	uint64_t seq;
	enum bal_kind kind;
	size_t ncolumns;
	const struct bal_column *columns;
	size_t ntallies;
	const struct bal_ctally *tallies;
	bool has_turnout;
	uint64_t ballots_issued;
	uint64_t ballots_cast;
	uint64_t ballots_spoiled;
	uint64_t created_unix_ms;
	/** Batch.election_id, NUL-terminated, never NULL once decoded ("" when
	 * absent); encoders treat NULL as "". The definition's election id. */
	const char *election_id;
	const uint8_t *signed_bytes; /**< SignedBatch.batch: the exact signed bytes */
	size_t signed_len;
	const uint8_t *signature; /**< SignedBatch.signature; may be empty */
	size_t signature_len;
};

/* ---- decoded amendment -----------------------------------------------------
 * A change the election commission signs (Amendment on the wire). The
 * definition plus every journaled amendment, applied in journal order, is the
 * effective definition. Produced by proto/codec.c; pointers borrowed as for
 * a batch. */

enum bal_change {
	BAL_CHANGE_NONE = 0,        /**< no change set: refused */
	BAL_CHANGE_REVOKE_KEY = 10, /**< no key signs for `precinct_id` from here on */
	BAL_CHANGE_SET_KEY = 11,    /**< only `public_key` signs for `precinct_id` from here on */
	BAL_CHANGE_VOID = 12,       /**< the batch journaled at `position` no longer counts */
	BAL_CHANGE_FREEZE = 13,     /**< no further batches from `precinct_id` */
	BAL_CHANGE_CERTIFY = 14,    /**< the results at `position` are final */
};

/** Longest reason an amendment may give, in bytes. */
#define BAL_REASON_MAX 1024

struct bal_amendment {
	/** Amendment.election_id, never NULL once decoded ("" when absent). */
	const char *election_id;
	uint64_t seq; /**< the commission's own sequence number, >= 1 */
	uint64_t created_unix_ms;
	const char *reason; /**< never NULL once decoded */
	enum bal_change change;
	uint32_t precinct_id;      /**< REVOKE_KEY, SET_KEY, FREEZE */
	const uint8_t *public_key; /**< SET_KEY; public_key_len bytes */
	size_t public_key_len;
	uint64_t position;           /**< VOID, CERTIFY */
	const uint8_t *signed_bytes; /**< SignedAmendment.amendment: the exact signed bytes */
	size_t signed_len;
	const uint8_t *signature; /**< SignedAmendment.signature; may be empty */
	size_t signature_len;
};

/** "revoke_key", "set_key", "void", "freeze", "certify", or "none". */
const char *bal_change_name(enum bal_change c);

/**
 * The checks of an amendment that need nothing but the definition: seq >= 1,
 * a reason of 1..BAL_REASON_MAX bytes of UTF-8 without control characters, a
 * change set, a precinct of the definition (revoke_key, set_key, freeze), a
 * key of 32 bytes (set_key), a position >= 1 (void, certify). Neither the
 * election id nor the signature (the caller's), nor anything that depends on
 * the journal (what a position holds, what is revoked or frozen already).
 * @return 0 or BAL_EINVALID with `why`.
 */
int bal_amendment_check(const struct bal_defn *d, const struct bal_amendment *a, char *why, size_t whylen);

/* ---- arena ---------------------------------------------------------------
 * A bump allocator reset once per request. After warm-up a reset keeps one
 * block large enough for the biggest request seen, so steady state does not
 * call malloc.
 * - `used <= cap` of the current block;
 * - memory handed out is 16-byte aligned and valid until the next reset/deinit. */

struct bal_arena_block;

struct bal_arena {
	struct bal_arena_block *head; /**< current block; older blocks chain behind it */
	size_t total;                 /**< bytes handed out since the last reset */
	size_t high_water;            /**< largest `total` seen; sizes the block kept at reset */
	size_t limit;                 /**< 0 = unlimited; else allocations beyond it fail */
};

/** Caller owns `a`; no memory is allocated until the first bal_arena_alloc(). */
void bal_arena_init(struct bal_arena *a, size_t limit);
/** Frees every block. Safe on a zeroed arena. */
void bal_arena_deinit(struct bal_arena *a);
/** Returns NULL when out of memory or over `limit`. */
void *bal_arena_alloc(struct bal_arena *a, size_t n);
/** Forget every allocation; keeps (at most) one block sized to the high water mark. */
void bal_arena_reset(struct bal_arena *a);

/* ---- assertions ---------------------------------------------------------- */

void bal__require_fail(const char *expr, const char *file, int line) __attribute__((noreturn));

/** Always on, fatal: a broken internal invariant. */
#define bal_require(expr) ((expr) ? (void)0 : bal__require_fail(#expr, __FILE__, __LINE__))

#endif
