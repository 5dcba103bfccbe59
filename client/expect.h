/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Expected totals: an independent fold of batches into per-contest,
 * per-(contest, district), per-precinct and turnout totals, which clients and
 * tests compare with the daemon's answers. It is written separately from
 * core/ (core/tally.h) on purpose (docs/design.md invariant 8): observers must be
 * able to recompute totals without the daemon's counting code. It shares only
 * the definition structs and their id look-ups.
 *
 * Kinds (docs/design.md): BALLOTS and TALLY batches add to the precinct's ballot
 * sums B. A PROTOCOL batch is the precinct's complete result P: the one with
 * the highest seq counts, an older one arriving later changes nothing but the
 * batch count. A precinct contributes P to every total once it has a
 * protocol, else B. Fold only batches the daemon acknowledged as ACCEPTED, in
 * any order: the totals do not depend on it. A batch an amendment voided is
 * taken back (bal_expect_void()): the totals are then those of the batches
 * that remain.
 *
 * Depends on core/ballot.h and jansson. Not thread-safe.
 */
#ifndef BAL_CLIENT_EXPECT_H
#define BAL_CLIENT_EXPECT_H

#include "core/ballot.h"

#include <jansson.h>

/** Turnout fields (same meaning as BAL_T_* in tally.h). */
struct bal_expect_turnout {
	uint64_t batches; /**< batches folded, every kind */
	uint64_t ballots; /**< cast-vote records (ballots of BALLOTS batches) */
	uint64_t issued;  /**< Turnout.ballots_issued: summed, or the protocol's */
	uint64_t cast;    /**< Turnout.ballots_cast: summed, or the protocol's */
	uint64_t spoiled; /**< Turnout.ballots_spoiled: summed, or the protocol's */
};

/** Opaque accumulator. */
struct bal_expect;

/** `d` is borrowed and must outlive the accumulator. NULL on ENOMEM. */
struct bal_expect *bal_expect_new(const struct bal_defn *d);
/** NULL is fine. */
void bal_expect_free(struct bal_expect *e);

/**
 * Folds one batch of any kind. Checks everything it relies on first and
 * changes nothing when a check fails.
 * @return 0; BAL_EINVALID with `why` (unknown precinct, unknown kind, contest
 *         not on the precinct's ballot or repeated, choice or count index out
 *         of range, columns of different lengths; a PROTOCOL batch with ballots,
 *         without a turnout, without a tally for every contest of the ballot or
 *         with a tally not listing every choice; an election_id other than the
 *         definition's, NULL or "" included); BAL_EOVERFLOW if a count would
 *         overflow the precinct's sum or an expected total.
 */
int bal_expect_fold(struct bal_expect *e, const struct bal_batch *b, char *why, size_t whylen);

/**
 * Takes back a batch folded earlier (an amendment voided it): a BALLOTS or
 * TALLY batch leaves the precinct's ballot sums and every count; a PROTOCOL
 * counts as a batch no more, and if it was the protocol that counted, the
 * latest protocol of the precinct folded and not voided counts instead (or
 * none: its ballot sums count again). Checks first and changes nothing when
 * a check fails.
 * @return 0; BAL_EINVALID with `why` (unknown precinct or kind, a batch the
 *         checks of bal_expect_fold() refuse, a protocol of that seq not
 *         folded or voided already, more to take back than the precinct's
 *         sums hold: never folded); -ENOMEM.
 */
int bal_expect_void(struct bal_expect *e, const struct bal_batch *b, char *why, size_t whylen);

/** Votes for choice index `k` of contest index `c` (dense indices). */
uint64_t bal_expect_votes(const struct bal_expect *e, uint32_t c, uint32_t k);
/** Votes for choice `k` of contest `c` cast in district index `dist`; 0 when
 * the contest does not cover the district. */
uint64_t bal_expect_district_votes(const struct bal_expect *e, uint32_t c, uint32_t dist, uint32_t k);
void bal_expect_turnout(const struct bal_expect *e, struct bal_expect_turnout *out);
/** Precincts with at least one folded batch. */
uint32_t bal_expect_precincts_reporting(const struct bal_expect *e);
/** Precincts with a protocol folded. */
uint32_t bal_expect_precincts_with_protocol(const struct bal_expect *e);
/** Precincts whose protocol differs from the sum of their ballot batches
 * (in a vote or in issued, cast or spoiled). */
uint32_t bal_expect_precincts_with_discrepancy(const struct bal_expect *e);

/* Per precinct (dense index p; 0 for anything out of range or not on its ballot). */

/** Seq of the protocol that counts for precinct p, 0 if none. */
uint64_t bal_expect_protocol_seq(const struct bal_expect *e, uint32_t p);
/** Precinct p's contribution to the totals for choice k of contest c. */
uint64_t bal_expect_precinct_votes(const struct bal_expect *e, uint32_t p, uint32_t c, uint32_t k);
/** The sum of precinct p's BALLOTS and TALLY batches for choice k of contest c. */
uint64_t bal_expect_precinct_ballot_votes(const struct bal_expect *e, uint32_t p, uint32_t c, uint32_t k);
/** Precinct p's turnout: batch and ballot counts, and issued/cast/spoiled as
 * they count in the totals (`ballot_sums` false) or summed over its BALLOTS
 * and TALLY batches (`ballot_sums` true). */
void bal_expect_precinct_turnout(const struct bal_expect *e, uint32_t p, bool ballot_sums,
                                 struct bal_expect_turnout *out);

/**
 * The totals as a new JSON object (caller owns the reference):
 * {"batches": N, "ballots": N, "precincts_reporting": N,
 *  "precincts_with_protocol": N, "precincts_with_discrepancy": N,
 *  "turnout": {"batches", "ballots", "issued", "cast", "spoiled"},
 *  "contests": [{"id": contest id, "total_votes": N,
 *                "votes": [N per choice index],
 *                "districts": [{"id": district id, "votes": [N per choice index]}]}]}
 * Every contest of the definition appears, in definition order; "districts"
 * lists every district the contest covers (all of them for a national
 * contest, its own for a district contest), zeros included.
 * NULL on ENOMEM.
 */
json_t *bal_expect_json(const struct bal_expect *e);

#endif
