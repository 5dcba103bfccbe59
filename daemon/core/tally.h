/*
 * Counters: the flat uint64 array that holds every total, the fold of one
 * validated batch into a small delta, overflow checks, the seqlock through
 * which readers copy a consistent view, and seat allocation.
 *
 * Pure functions over plain structs; depends on nothing but libc and
 * daemon/core/ballot.h. No per-ballot string hashing: ids are resolved to
 * dense indices by the layout, built once from the definition.
 *
 * Slot layout (all uint64, one flat array of bal_layout_nslots()):
 * - per precinct: one slot per (contest on its ballot, choice), plus
 *   BAL_T_NFIELDS turnout slots;
 * - per (contest, district it covers): one slot per choice
 *   (a national contest covers every district, a district contest its own);
 * - per contest: one slot per choice (national total);
 * - per district and national: BAL_T_NFIELDS turnout slots;
 * - globals: BAL_G_NFIELDS slots.
 * A delta names precinct-level slots only; bal_tally_apply() also adds to the
 * district, contest and national slots derived from them.
 */
#ifndef BAL_CORE_TALLY_H
#define BAL_CORE_TALLY_H

#include "ballot.h"

#define BAL_SLOT_NONE UINT32_MAX

enum bal_turnout_field {
	BAL_T_BATCHES = 0, /**< batches counted */
	BAL_T_BALLOTS,     /**< cast-vote records counted (BALLOTS batches) */
	BAL_T_ISSUED,      /**< Turnout.ballots_issued, summed */
	BAL_T_CAST,        /**< Turnout.ballots_cast, summed */
	BAL_T_SPOILED,     /**< Turnout.ballots_spoiled, summed */
	BAL_T_NFIELDS
};

enum bal_global_field {
	BAL_G_BATCHES = 0,           /**< batches counted in total */
	BAL_G_PRECINCTS_REPORTING,   /**< precincts with at least one batch counted */
	BAL_G_NFIELDS
};

/** Opaque, immutable once built; any thread may read it. */
struct bal_layout;

/** Builds the layout for `d` (borrowed; must outlive the layout). NULL on ENOMEM. */
struct bal_layout *bal_layout_new(const struct bal_defn *d);
void bal_layout_free(struct bal_layout *l);
/** Number of uint64 slots in a counter array for this layout. */
size_t bal_layout_nslots(const struct bal_layout *l);
/** Upper bound on the entries of any one delta (size of bal_delta.e). */
size_t bal_layout_delta_max(const struct bal_layout *l);

/* Slot lookups by dense index; BAL_SLOT_NONE when the pair does not exist
 * (precinct does not vote in that contest, contest does not cover district). */
uint32_t bal_slot_precinct_choice(const struct bal_layout *l, uint32_t p, uint32_t c, uint32_t k);
uint32_t bal_slot_district_choice(const struct bal_layout *l, uint32_t c, uint32_t d, uint32_t k);
uint32_t bal_slot_contest_choice(const struct bal_layout *l, uint32_t c, uint32_t k);
uint32_t bal_slot_precinct_turnout(const struct bal_layout *l, uint32_t p, enum bal_turnout_field f);
uint32_t bal_slot_district_turnout(const struct bal_layout *l, uint32_t d, enum bal_turnout_field f);
uint32_t bal_slot_total_turnout(const struct bal_layout *l, enum bal_turnout_field f);
uint32_t bal_slot_global(const struct bal_layout *l, enum bal_global_field f);

struct bal_delta_entry {
	uint32_t slot; /**< a precinct-level slot */
	uint64_t add;
};

/**
 * The fold of one batch. Storage for `e` is the caller's (cap entries, at
 * least bal_layout_delta_max()); the fold writes `n <= cap` entries, each slot
 * at most once, zero adds omitted.
 */
struct bal_delta {
	uint32_t precinct; /**< dense precinct index */
	uint32_t n;
	uint32_t cap;
	struct bal_delta_entry *e;
};

/**
 * Validates `b` against the definition and folds it into `out`.
 * Does not verify the signature (the caller does) and reads no counters.
 * @return 0; BAL_EINVALID with `why` naming field, value and limit (unknown
 *         precinct, seq 0, unknown contest, contest not on this precinct's
 *         ballot, contest twice, choice out of range, column lengths differ,
 *         tally length differs from the contest's choices, ballots in a TALLY
 *         batch or tallies in a BALLOTS batch, empty batch);
 *         BAL_EOVERFLOW if the batch's own sums overflow 64 bits;
 *         BAL_EUNSUPPORTED for PROTOCOL batches.
 * Thread-safe: reads only `d`, `l`, `b`.
 */
int bal_tally_fold(const struct bal_defn *d, const struct bal_layout *l, const struct bal_batch *b,
		   struct bal_delta *out, char *why, size_t whylen);

/**
 * BAL_EOVERFLOW (with `why`) if applying `dl` to `ctr` would overflow any
 * slot, precinct-level or aggregate; 0 otherwise. Reads `ctr` plainly: call it
 * from the thread that owns `ctr`.
 */
int bal_tally_check(const struct bal_layout *l, const uint64_t *ctr, const struct bal_delta *dl, char *why,
		    size_t whylen);

/** Adds `dl` to `ctr` (precinct, district, contest, national and global slots).
 * Caller has checked it with bal_tally_check(). Plain stores. */
void bal_tally_apply(const struct bal_layout *l, uint64_t *ctr, const struct bal_delta *dl);

/* ---- published counters (seqlock) ----------------------------------------
 * One writer (the committer) and any number of readers on other threads.
 * Readers never block the writer; they retry if a write overlapped the copy.
 * - `seq` is odd iff a write is in progress;
 * - between writes, `ctr` equals the fold of the journal prefix 1..`position`. */
struct bal_published {
	uint64_t seq;      /**< accessed with __atomic builtins only */
	uint64_t position; /**< accessed with __atomic builtins only */
	size_t n;
	uint64_t *ctr;     /**< owned; n slots; accessed with __atomic builtins only */
};

/** Allocates n zeroed slots. 0 or -ENOMEM. */
int bal_pub_init(struct bal_published *p, size_t n);
void bal_pub_deinit(struct bal_published *p);
/** Writer only: replaces the whole array (after recovery) and sets position. */
void bal_pub_store(struct bal_published *p, const uint64_t *ctr, uint64_t position);
/** Writer only: applies `ndeltas` deltas and moves `position` forward, as one write. */
void bal_pub_apply(struct bal_published *p, const struct bal_layout *l, const struct bal_delta *const *deltas,
		   size_t ndeltas, uint64_t position);
/** Any thread: copies a consistent view into `dst` (n slots); returns its position. */
uint64_t bal_pub_read(const struct bal_published *p, uint64_t *dst);

/* ---- seats ----------------------------------------------------------------- */

/**
 * Allocates `c->seats` seats from `votes[k]` (k < c->nchoices).
 * Party list: choices that are seat_eligible and reach threshold_percent of
 * all votes in the contest share the seats by `c->method` (largest remainder
 * with the Hare quota, or D'Hondt); ties go to the lower choice index.
 * Single member: the seat_eligible choice with most votes; a tie for first
 * place allocates nothing and sets *tie.
 * Writes seats[k] and passed[k] (threshold reached) for every k.
 * @return seats allocated (>= 0), or BAL_EINVALID if nothing can be allocated.
 */
int bal_seats_allocate(const struct bal_contest *c, const uint64_t *votes, uint32_t *seats, bool *passed, bool *tie);

#endif
