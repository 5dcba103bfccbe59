/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Counters: the flat uint64 array that holds every total, the fold of one
 * validated batch into a small delta, overflow and plausibility checks, the
 * seqlock through which readers copy a consistent view, and seat allocation.
 *
 * Pure functions over plain structs; depends on nothing but libc and
 * core/ballot.h. No per-ballot string hashing: ids are resolved to
 * dense indices by the layout, built once from the definition.
 * Implemented by layout.c (layout, look-ups), fold.c, check.c (overflow
 * checks, running bound, plausibility bounds over several batches), apply.c
 * and slice.c (snapshot slices, rebuild), which share tally_int.h, and by
 * pub.c (seqlock) and seats.c.
 *
 * Slot layout (all uint64, one flat array of bal_layout_nslots()):
 * - per precinct: one slot per (contest on its ballot, choice), plus
 *   BAL_T_NFIELDS turnout slots: the precinct's effective contribution E;
 *   and as many shadow slots (bal_slot_precinct_shadow()), see below;
 * - per (contest, district it covers): one slot per choice
 *   (a national contest covers every district, a district contest its own);
 * - per contest: one slot per choice (national total);
 * - per district and national: BAL_T_NFIELDS turnout slots;
 * - globals: BAL_G_NFIELDS slots.
 * A delta names precinct-level slots only; bal_tally_apply() also updates the
 * district, contest and national slots derived from them.
 *
 * Kinds (DESIGN.md "Wire contract"). Per precinct the counters keep
 * - B: the sum of its BALLOTS and TALLY batches, per (contest, choice) and
 *   for the turnout fields ISSUED, CAST, SPOILED;
 * - P: its latest PROTOCOL (the one with the highest seq), same shape, and
 *   that protocol's seq (0 = no protocol counted).
 * Its effective contribution E is P if it has a protocol, else B, and every
 * district, contest and national total is the sum of E over its precincts.
 * - A BALLOTS/TALLY batch adds d to B; the totals grow by d only if the
 *   precinct has no protocol.
 * - A PROTOCOL batch with seq s carries a ContestTally for every contest on
 *   the precinct's ballot and a Turnout, and no ballots. If s is above the
 *   stored protocol seq, every total changes by P_new - E_old (per slot, may be
 *   negative), then P = P_new and the stored seq = s. Otherwise it changes no
 *   total: an older protocol never replaces a newer one, whatever the order in
 *   which they arrive (it is still journaled: valid and signed).
 * - BAL_T_BATCHES counts batches of every kind and BAL_T_BALLOTS cast-vote
 *   records; protocols never replace these two. A precinct reports once it
 *   has any batch counted.
 * - Discrepancy: for a precinct with a protocol, P - B in every
 *   (contest, choice) and in ISSUED, CAST, SPOILED where it is nonzero.
 *
 * Storage of B and P: slot s of E holds B while the precinct has no protocol
 * (its shadow slot is then 0), and P once it has one, when B moves to the
 * shadow slot. The shadows of BAL_T_BATCHES and BAL_T_BALLOTS hold the
 * protocol seq and the number of slots where P and B differ, named
 * BAL_SH_PROTOCOL_SEQ and BAL_SH_NDIFF (enum bal_shadow_field) wherever that
 * meaning is meant. So an ADD delta to a precinct without a protocol costs
 * what it always did: three adds per entry.
 */
#ifndef BAL_CORE_TALLY_H
#define BAL_CORE_TALLY_H

#include "core/ballot.h"

#define BAL_SLOT_NONE UINT32_MAX

enum bal_turnout_field {
	BAL_T_BATCHES = 0, /**< batches counted */
	BAL_T_BALLOTS,     /**< cast-vote records counted (BALLOTS batches) */
	BAL_T_ISSUED,      /**< Turnout.ballots_issued: summed, or the protocol's */
	BAL_T_CAST,        /**< Turnout.ballots_cast: summed, or the protocol's */
	BAL_T_SPOILED,     /**< Turnout.ballots_spoiled: summed, or the protocol's */
	BAL_T_NFIELDS
};

/**
 * What the shadows of the two counts hold (see bal_slot_precinct_shadow()).
 * Each is the block offset of the count it shadows, so the shadow slot of
 * BAL_SH_PROTOCOL_SEQ is the shadow slot of BAL_T_BATCHES.
 */
enum bal_shadow_field {
	BAL_SH_PROTOCOL_SEQ = BAL_T_BATCHES, /**< seq of the latest counted protocol, 0 = none */
	BAL_SH_NDIFF = BAL_T_BALLOTS,        /**< slots where the protocol and the ballot sum differ */
	BAL_SH_NFIELDS                       /**< shadows of counts, kept just before the block */
};

enum bal_global_field {
	BAL_G_BATCHES = 0,         /**< batches counted in total */
	BAL_G_PRECINCTS_REPORTING, /**< precincts with at least one batch counted */
	BAL_G_PROTOCOLS,           /**< precincts with a protocol counted */
	BAL_G_DISCREPANCIES,       /**< precincts whose protocol differs from their ballot batches */
	BAL_G_NFIELDS
};

/** Opaque, immutable once built; any thread may read it. */
struct bal_layout;

/** Builds the layout for `d` (borrowed; must outlive the layout). NULL on ENOMEM. */
struct bal_layout *bal_layout_new(const struct bal_defn *d);
void bal_layout_free(struct bal_layout *l);
/** Number of uint64 slots in a counter array for this layout. */
size_t bal_layout_nslots(const struct bal_layout *l);
/** First slot that is not precinct-level: the (contest, district), contest,
 * turnout and global slots run from here to the end of the array. */
size_t bal_layout_first_aggregate(const struct bal_layout *l);
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

/**
 * The shadow of precinct `p`'s slot `s` (a bal_slot_precinct_choice() or
 * bal_slot_precinct_turnout() slot of `p`), BAL_SLOT_NONE if `s` is not one:
 * - shadow of BAL_T_BATCHES (BAL_SH_PROTOCOL_SEQ): the seq of p's latest
 *   counted protocol (0 = none);
 * - shadow of BAL_T_BALLOTS (BAL_SH_NDIFF): how many of p's slots differ
 *   between its protocol and its ballot sum (nonzero iff p has a discrepancy);
 * - shadow of any other slot: while p has a protocol, the sum of its BALLOTS
 *   and TALLY batches there (`s` then holds the protocol's value); 0 before.
 */
uint32_t bal_slot_precinct_shadow(const struct bal_layout *l, uint32_t p, uint32_t s);

/** Seq of precinct `p`'s latest counted protocol in `ctr`, 0 if none. */
uint64_t bal_tally_protocol_seq(const struct bal_layout *l, const uint64_t *ctr, uint32_t p);

/**
 * B at slot `s` of precinct `p` (see bal_slot_precinct_shadow()): the sum of
 * p's BALLOTS and TALLY batches there, whether or not a protocol replaced it
 * in the totals. For BAL_T_BATCHES and BAL_T_BALLOTS, ctr[s].
 */
uint64_t bal_tally_ballot_sum(const struct bal_layout *l, const uint64_t *ctr, uint32_t p, uint32_t s);

enum bal_delta_kind {
	BAL_DELTA_ADD = 0,      /**< BALLOTS/TALLY: entries are amounts added to B */
	BAL_DELTA_PROTOCOL = 1, /**< PROTOCOL: entries are the protocol's absolute values */
};

struct bal_delta_entry {
	uint32_t slot; /**< a precinct-level slot (of E) */
	uint64_t add;  /**< BAL_DELTA_ADD: amount to add; BAL_DELTA_PROTOCOL: the new value */
};

/**
 * The fold of one batch. Storage for `e` is the caller's (cap entries, at
 * least bal_layout_delta_max()); the fold writes `n <= cap` entries, each slot
 * at most once.
 * - BAL_DELTA_ADD: zero adds omitted; BAL_T_BATCHES carries the batch count.
 * - BAL_DELTA_PROTOCOL: one entry for every slot of the precinct except
 *   BAL_T_BATCHES and BAL_T_BALLOTS, zeros included; the batch counts one in
 *   BAL_T_BATCHES implicitly. What it changes depends on the counters it is
 *   applied to (the stored protocol seq and E), so check and apply compute it
 *   against the array they are given; applying the same deltas in the same
 *   order to equal arrays leaves equal arrays (committer, published copy and
 *   recovery replay agree).
 * A zeroed struct (with `e` and `cap` set) is an empty ADD delta.
 */
struct bal_delta {
	uint32_t precinct; /**< dense precinct index */
	uint32_t n;
	uint32_t cap;
	enum bal_delta_kind kind;
	uint64_t seq;  /**< BAL_DELTA_PROTOCOL: the protocol's seq (>= 1) */
	uint64_t peak; /**< largest entry value, or protocol seq (see bal_tally_bound()) */
	struct bal_delta_entry *e;
};

/**
 * Validates `b` against the definition and folds it into `out` (sets every
 * field but `cap` and `e`; on failure `out` keeps its fields, entries may be
 * scribbled). Does not verify the signature (the caller does) and reads no
 * counters.
 * @return 0; BAL_EINVALID with `why` naming field, value and limit (unknown
 *         precinct, seq 0 or above the definition's max_seq, unknown contest,
 *         contest not on this precinct's ballot, contest twice, choice out of
 *         range, column lengths differ, tally length differs from the
 *         contest's choices, ballots in a TALLY or PROTOCOL batch, tallies in
 *         a BALLOTS batch, empty batch, a PROTOCOL batch without a turnout or
 *         without a tally for some contest of the precinct's ballot, unknown
 *         kind; and, unless the precinct is unbounded, a batch beyond its
 *         max_voters: more ballots, a tally summing to more votes, or a
 *         turnout field above it, or ballots cast or spoiled above the
 *         ballots issued);
 *         BAL_EOVERFLOW if the batch's own sums overflow 64 bits;
 *         -ENOBUFS if `out->cap` is too small.
 * Thread-safe: reads only `d`, `l`, `b`.
 */
int bal_tally_fold(const struct bal_defn *d, const struct bal_layout *l, const struct bal_batch *b,
                   struct bal_delta *out, char *why, size_t whylen);

/**
 * Whether `dl` can be applied to `ctr`.
 * @return 0; BAL_EOVERFLOW (with `why`) if applying it would overflow any slot,
 *         precinct-level, shadow or aggregate; BAL_ECORRUPT (with `why`) if a
 *         protocol would take an aggregate below zero, which only counters that
 *         are not the sum of their precincts allow.
 * A protocol whose seq is not above the stored one (older, or a resend that
 * dedup will catch later) is checked as a batch count only.
 * Reads `ctr` with relaxed loads: call it from the thread that owns `ctr`.
 */
int bal_tally_check(const struct bal_layout *l, const uint64_t *ctr, const struct bal_delta *dl, char *why,
                    size_t whylen);

/**
 * Whether the BAL_DELTA_ADD delta `dl` can be applied to any array each of
 * whose slots exceeds the same slot of `ctr` by at most `headroom` (e.g. `ctr`
 * plus deltas whose peaks sum to at most `headroom`, see bal_tally_bound()):
 * the check of bal_tally_check() with every amount raised by `headroom`.
 * 0 proves it; BAL_EOVERFLOW (with `why`, may be NULL) only says that it may
 * not fit: decide with bal_tally_check() on the actual array. With headroom 0
 * it is bal_tally_check(). Same threading rule.
 */
int bal_tally_check_headroom(const struct bal_layout *l, const uint64_t *ctr, const struct bal_delta *dl,
                             uint64_t headroom, char *why, size_t whylen);

/**
 * ADD deltas that a group (one write transaction) has accepted and that are
 * not yet applied to the counters, summed per precinct slot, so that
 * bal_tally_check_plausible() sees the precinct's ballot sums as they will be.
 * Opaque; owned by one thread (the committer). Its memory is about one uint64
 * per precinct-level slot, allocated once.
 */
struct bal_pending;

/** An empty one for layout `l` (borrowed; must outlive it). NULL on ENOMEM. */
struct bal_pending *bal_pending_new(const struct bal_layout *l);
void bal_pending_free(struct bal_pending *g);
/** `dl` is accepted into the group (call it once per accepted delta, in any
 * order). PROTOCOL deltas and deltas of unbounded precincts are ignored. */
void bal_pending_add(struct bal_pending *g, const struct bal_delta *dl);
/** The group's deltas are applied to the counters, or dropped: forget them.
 * Costs the blocks of the precincts added since the last clear. */
void bal_pending_clear(struct bal_pending *g);

/**
 * Whether applying `dl` after the deltas pending in `g` keeps its precinct's
 * ballot sums (B, see above) within the precinct's max_voters: for every
 * contest `dl` adds votes to, the precinct's votes in it summed over the
 * choices; and each of the cast-vote records (BAL_T_BALLOTS) and turnout
 * fields issued, cast and spoiled that `dl` adds to. Quantities `dl` does
 * not add to are not checked. B is read from `ctr` whether or not a protocol
 * replaced it in the totals.
 * A PROTOCOL delta (bounded per batch by bal_tally_fold(), it replaces
 * rather than adds) and any delta of an unbounded precinct pass.
 * @return 0; BAL_EINVALID with `why` (may be NULL) naming the precinct, the
 *         quantity, the sum it would reach (before this batch + in it) and
 *         the bound (registered voters + margin).
 * Reads `ctr` with relaxed loads (the owner's array) and writes only the
 * scratch of `g`, so: the thread that owns `g`.
 */
int bal_tally_check_plausible(const struct bal_layout *l, const uint64_t *ctr, struct bal_pending *g,
                              const struct bal_delta *dl, char *why, size_t whylen);

/**
 * A cheap overflow proof. Applying a delta raises any one slot by at most
 * its `peak` (an ADD entry feeds each slot it reaches once; a protocol value
 * replaces a slot or moves an aggregate by at most itself, and its seq is
 * stored as it is; counts of batches, precincts and protocols grow by one). So if every slot of `ctr` is at most
 * `bound`, after applying `dl` every slot is at most the value this returns,
 * saturating at UINT64_MAX. While it stays below BAL_TALLY_SAFE, no
 * BAL_DELTA_ADD delta can overflow and bal_tally_check() may be skipped for
 * it; the caller keeps `bound` by feeding each applied delta through here,
 * starting from bal_tally_max(). Pure, any thread.
 */
#define BAL_TALLY_SAFE ((uint64_t)1 << 63)
uint64_t bal_tally_bound(uint64_t bound, const struct bal_delta *dl);
/** The largest value in `ctr` (plain loads: the owner's array). */
uint64_t bal_tally_max(const struct bal_layout *l, const uint64_t *ctr);

/** Applies `dl` to `ctr` (precinct, shadow, district, contest, national and
 * global slots) with the semantics above. Caller has checked it with
 * bal_tally_check() against the same `ctr`. Relaxed atomic stores, so that
 * bal_pub_apply() can run it on the published array while readers copy it. */
void bal_tally_apply(const struct bal_layout *l, uint64_t *ctr, const struct bal_delta *dl);

/* ---- voids --------------------------------------------------------------------
 * An amendment may void a journaled batch: from then on every total is as if
 * it had never been journaled, while its (precinct, seq) stays taken. The
 * counters are a fold of the set of counted batches (the order does not
 * matter), so a void takes the batch's delta back:
 * - BALLOTS/TALLY: its amounts leave B (and the totals with it, unless a
 *   protocol counts), its counts leave the batch and ballot counts;
 * - PROTOCOL: one batch fewer; if it is the counted protocol (its seq is the
 *   stored one), the precinct reverts to B, then takes its previous protocol
 *   if it has one: the highest-seq protocol it journaled, other than this
 *   one and not voided itself (the caller finds it in the journal).
 * A void of a BALLOTS/TALLY batch lowers counters only; a protocol's may
 * raise the totals (B, or an older protocol, above the voided one), so it is
 * checked first, and the committer recomputes its running bound after any
 * void. */

/**
 * Precinct `p` without its protocol: E becomes B (every aggregate moves by B
 * - P), the shadows of its ballot sums are cleared, its protocol seq becomes
 * 0 and it leaves BAL_G_PROTOCOLS, and BAL_G_DISCREPANCIES if it was there.
 * Nothing when it has no protocol. Its batch and ballot counts stay. Relaxed
 * atomic stores, like bal_tally_apply().
 */
void bal_tally_revert_protocol(const struct bal_layout *l, uint64_t *ctr, uint32_t p);

/**
 * Whether the batch folded into `dl` can be voided in `ctr`, `prev` being
 * the fold of the protocol that counts instead (NULL: none; only for the
 * counted protocol).
 * @return 0; BAL_EOVERFLOW (with `why`) if a total would not fit once the
 *         precinct's protocol is replaced; BAL_ECORRUPT if a slot would go
 *         below zero or `dl` is a protocol newer than the counted one, which
 *         only counters that are not a fold of the journal allow.
 * Reads `ctr` with relaxed loads: call it from the thread that owns `ctr`.
 */
int bal_tally_check_void(const struct bal_layout *l, const uint64_t *ctr, const struct bal_delta *dl,
                         const struct bal_delta *prev, char *why, size_t whylen);

/**
 * Takes the batch folded into `dl` back out of `ctr` (see above): `prev`
 * as for bal_tally_check_void(), which the caller has run against the same
 * `ctr`. Relaxed atomic stores, like bal_tally_apply().
 */
void bal_tally_void(const struct bal_layout *l, uint64_t *ctr, const struct bal_delta *dl,
                    const struct bal_delta *prev);

/* ---- snapshot slices --------------------------------------------------------
 * Snapshots are written a slice of precincts at a time (storage/ decides the
 * slices: ranges [first, end) of precinct indices). A slice holds only
 * precinct-level slots (E, the shadows, the ballot sums): every aggregate and
 * global is the sum (or count) of those over the precincts, so after loading
 * slices taken at different positions and replaying each precinct's later
 * batches, bal_tally_rebuild() recomputes the rest. */

/** uint64 values in a slice of precincts [first, end); 0 if the range is empty or out of bounds. */
size_t bal_layout_slice_len(const struct bal_layout *l, uint32_t first, uint32_t end);
/** Copies the slice's slots from `ctr` into `out` (bal_layout_slice_len() values); returns that count. */
size_t bal_layout_slice_pack(const struct bal_layout *l, const uint64_t *ctr, uint32_t first, uint32_t end,
                             uint64_t *out);
/** Copies `n` values packed by bal_layout_slice_pack() into `ctr`. `in` needs no alignment (it may point
 * into a storage map). 0, or BAL_ECORRUPT if `n` does not fit the slice. */
int bal_layout_slice_unpack(const struct bal_layout *l, uint64_t *ctr, uint32_t first, uint32_t end, const void *in,
                            size_t n);
/**
 * Recomputes every (contest, district), contest, turnout and global slot of
 * `ctr` from its precinct-level slots. Plain stores: only for an array no
 * other thread reads (recovery).
 * @return 0, or BAL_EOVERFLOW if some total does not fit 64 bits (it is then
 *         left wrapped): counters that no live check would have let through.
 */
int bal_tally_rebuild(const struct bal_layout *l, uint64_t *ctr);

/* ---- published counters (seqlock) ----------------------------------------
 * One writer (the committer) and any number of readers on other threads.
 * Readers never block the writer; they retry if a write overlapped the copy.
 * - `seq` is odd iff a write is in progress;
 * - between writes, `ctr` equals the fold of the journal prefix 1..`position`. */
struct bal_published {
	uint64_t seq;      /**< accessed with __atomic builtins only */
	uint64_t position; /**< accessed with __atomic builtins only */
	size_t n;
	uint64_t *ctr; /**< owned; n slots; accessed with __atomic builtins only */
};

/** Allocates n zeroed slots. 0 or -ENOMEM. */
int bal_pub_init(struct bal_published *p, size_t n);
void bal_pub_deinit(struct bal_published *p);
/** Writer only: replaces the whole array (after recovery) and sets position. */
void bal_pub_store(struct bal_published *p, const uint64_t *ctr, uint64_t position);
/** Writer only: applies `ndeltas` deltas in order (bal_tally_apply(), so the published array ends as
 * any array that held the same counters would after the same deltas) and moves `position` forward, as one
 * write. The writer may read `ctr` with plain loads between its writes (it is the only one to store). */
void bal_pub_apply(struct bal_published *p, const struct bal_layout *l, const struct bal_delta *const *deltas,
                   size_t ndeltas, uint64_t position);
/** Writer only: bal_tally_void(l, ctr, dl, prev) on the published array (`dl`
 * NULL: nothing) and `position` moves forward, as one write. */
void bal_pub_void(struct bal_published *p, const struct bal_layout *l, const struct bal_delta *dl,
                  const struct bal_delta *prev, uint64_t position);
/** Any thread: copies a consistent view into `dst` (n slots); returns its position. */
uint64_t bal_pub_read(const struct bal_published *p, uint64_t *dst);
/** Any thread: the same for slots [first, first+count) only, copied to the same indices of `dst`. */
uint64_t bal_pub_read_range(const struct bal_published *p, size_t first, size_t count, uint64_t *dst);

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
