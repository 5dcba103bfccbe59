/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Seat allocation for one contest from its national vote totals: largest
 * remainder (Hare quota) and D'Hondt for party lists, plurality for single
 * member contests. libc only; pure function of the contest and the votes.
 *
 * The threshold is measured against every vote in the contest, including
 * choices that can never win a seat ("Against all"); the quota and the
 * divisors then use only the votes of the choices that passed. Products of
 * votes and seats are formed in unsigned __int128, so every comparison is
 * exact for any uint64 vote count. Ties go to the lower choice index.
 */
#include "core/tally.h"

typedef unsigned __int128 u128;

/* threshold_percent in units of 1e-6 percent: exact for up to six decimals. */
#define THRESHOLD_SCALE 1000000.0
#define PERCENT_SCALE   ((u128)100 * 1000000)

static u128 threshold_units(double percent)
{
	if (!(percent > 0))
		return 0;
	if (percent >= 100)
		return PERCENT_SCALE;
	return (u128)(percent * THRESHOLD_SCALE + 0.5);
}

/* Largest remainder: floor(v * S / P) each, then one more seat for each of
 * the `left` largest remainders (v * S mod P). There are fewer leftover seats
 * than passed choices with a nonzero remainder, so a choice gains at most one. */
static uint32_t largest_remainder(const struct bal_contest *c, const uint64_t *votes, const bool *passed, u128 pool,
                                  uint32_t *seats)
{
	const u128 S = c->seats;
	uint32_t given = 0;
	for (uint32_t k = 0; k < c->nchoices; k++)
		if (passed[k]) {
			seats[k] = (uint32_t)((u128)votes[k] * S / pool);
			given += seats[k];
		}
	const uint32_t left = c->seats - given;
	for (uint32_t k = 0; k < c->nchoices && left; k++) {
		if (!passed[k])
			continue;
		const u128 rk = (u128)votes[k] * S % pool;
		uint32_t ahead = 0; /* passed choices whose remainder ranks before k's */
		for (uint32_t j = 0; j < c->nchoices; j++) {
			if (!passed[j] || j == k)
				continue;
			const u128 rj = (u128)votes[j] * S % pool;
			ahead += rj > rk || (rj == rk && j < k);
		}
		if (ahead < left) {
			seats[k]++;
			given++;
		}
	}
	return given;
}

/* D'Hondt: each seat to the largest v / (s + 1), compared by cross products. */
static uint32_t dhondt(const struct bal_contest *c, const uint64_t *votes, const bool *passed, uint32_t *seats)
{
	for (uint32_t n = 0; n < c->seats; n++) {
		int32_t best = -1;
		for (uint32_t k = 0; k < c->nchoices; k++) {
			if (!passed[k])
				continue;
			if (best < 0 || (u128)votes[k] * (seats[best] + 1) > (u128)votes[best] * (seats[k] + 1))
				best = (int32_t)k;
		}
		seats[best]++;
	}
	return c->seats;
}

/*
 * Plurality: the S passed choices with most votes (and at least one vote) win
 * one seat each. B is the S-th largest vote count counting repeats; if more
 * choices sit at B than seats remain for them, only those strictly above B
 * win and *tie is set (with one seat: a tie for first allocates nothing).
 */
static uint32_t plurality(const struct bal_contest *c, const uint64_t *votes, const bool *passed, uint32_t *seats,
                          bool *tie)
{
	uint64_t B = UINT64_MAX;
	uint32_t upto = 0; /* candidates with votes >= B */
	bool first = true;
	while (upto < c->seats) {
		uint64_t next = 0;
		for (uint32_t k = 0; k < c->nchoices; k++)
			if (passed[k] && votes[k] > next && (first || votes[k] < B))
				next = votes[k];
		if (next == 0)
			break; /* fewer candidates with votes than seats */
		B = next;
		first = false;
		for (uint32_t k = 0; k < c->nchoices; k++)
			upto += passed[k] && votes[k] == B;
	}
	const bool tied = upto > c->seats;
	uint32_t given = 0;
	for (uint32_t k = 0; k < c->nchoices; k++) {
		bool win = passed[k] && votes[k] > 0 && (votes[k] > B || (votes[k] == B && !tied));
		seats[k] = win;
		given += win;
	}
	*tie = tied;
	return given;
}

int bal_seats_allocate(const struct bal_contest *c, const uint64_t *votes, uint32_t *seats, bool *passed, bool *tie)
{
	u128 total = 0, pool = 0;
	*tie = false;
	for (uint32_t k = 0; k < c->nchoices; k++)
		total += votes[k];
	const u128 thr = threshold_units(c->threshold_percent);
	for (uint32_t k = 0; k < c->nchoices; k++) {
		seats[k] = 0;
		passed[k] = c->choices[k].seat_eligible && (u128)votes[k] * PERCENT_SCALE >= thr * total;
		if (passed[k])
			pool += votes[k];
	}
	if (c->seats == 0)
		return 0;
	/* No votes for any passed choice: no quota, no divisor, no winner. */
	if (pool == 0)
		return BAL_EINVALID;
	uint32_t given;
	switch (c->method) {
	case BAL_METHOD_LARGEST_REMAINDER: given = largest_remainder(c, votes, passed, pool, seats); break;
	case BAL_METHOD_DHONDT: given = dhondt(c, votes, passed, seats); break;
	case BAL_METHOD_PLURALITY: given = plurality(c, votes, passed, seats, tie); break;
	default: return BAL_EINVALID;
	}
	return (int)given;
}
