/*
 * Expected totals: an independent fold of batches into per-contest,
 * per-(contest, district) and turnout totals, which clients and tests compare
 * with the daemon's snapshot. It is written separately from
 * daemon/core/tally.c on purpose (DESIGN.md invariant 8): observers must be
 * able to recompute totals without the daemon's counting code. It shares only
 * the definition structs and their id look-ups.
 *
 * Depends on daemon/core/ballot.h and jansson. Not thread-safe.
 */
#ifndef BAL_CLIENT_EXPECT_H
#define BAL_CLIENT_EXPECT_H

#include "ballot.h"

#include <jansson.h>

/** Turnout fields, summed over folded batches (same meaning as BAL_T_* in tally.h). */
struct bal_expect_turnout {
	uint64_t batches; /**< batches folded */
	uint64_t ballots; /**< cast-vote records (ballots of BALLOTS batches) */
	uint64_t issued;  /**< Turnout.ballots_issued */
	uint64_t cast;	  /**< Turnout.ballots_cast */
	uint64_t spoiled; /**< Turnout.ballots_spoiled */
};

/** Opaque accumulator. */
struct bal_expect;

/** `d` is borrowed and must outlive the accumulator. NULL on ENOMEM. */
struct bal_expect *bal_expect_new(const struct bal_defn *d);
/** NULL is fine. */
void bal_expect_free(struct bal_expect *e);

/**
 * Adds one BALLOTS or TALLY batch. Checks everything it relies on first and
 * changes nothing when a check fails.
 * @return 0; BAL_EINVALID with `why` (unknown precinct, contest not on the
 *         precinct's ballot, choice or count index out of range, columns of
 *         different lengths); BAL_EUNSUPPORTED for PROTOCOL batches (their
 *         replace-the-precinct semantics are not modelled here).
 */
int bal_expect_fold(struct bal_expect *e, const struct bal_batch *b, char *why, size_t whylen);

/** Votes for choice index `k` of contest index `c` (dense indices). */
uint64_t bal_expect_votes(const struct bal_expect *e, uint32_t c, uint32_t k);
/** Votes for choice `k` of contest `c` cast in district index `dist`; 0 when
 * the contest does not cover the district. */
uint64_t bal_expect_district_votes(const struct bal_expect *e, uint32_t c, uint32_t dist, uint32_t k);
void bal_expect_turnout(const struct bal_expect *e, struct bal_expect_turnout *out);
/** Precincts with at least one folded batch. */
uint32_t bal_expect_precincts_reporting(const struct bal_expect *e);

/**
 * The totals as a new JSON object (caller owns the reference):
 * {"batches": N, "ballots": N, "precincts_reporting": N,
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
