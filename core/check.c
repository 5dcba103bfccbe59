/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Counters, check: whether a delta can be applied to a counter array without
 * overflowing any slot (the exact check, and the same check with headroom),
 * the running bound that lets the committer skip the exact check, and
 * whether a delta keeps its precinct's ballot sums within the precinct's
 * plausibility bound (with the deltas of the open group, struct
 * bal_pending). Reads counters with relaxed loads and never writes them. It
 * predicts what apply.c does from the layout alone and must not depend on
 * apply.c, fold.c or anything beyond core and libc.
 *
 * What the plausibility bounds leave to the overflow checks. For a bounded
 * precinct with N = max_voters, fold.c keeps every amount of one batch at
 * most N and bal_tally_check_plausible() keeps each ballot sum B (per
 * contest, the cast-vote records and each turnout field) at most N, so every
 * slot of E (B, or a protocol bounded per batch) is at most N. The loader
 * checks that N summed over the bounded precincts fits 64 bits, so no
 * district, contest or national total fed by bounded precincts alone can
 * overflow. The overflow checks below stay necessary nonetheless:
 * - unbounded precincts ("unbounded": true) have no N: their amounts are
 *   limited by nothing but 64 bits, in their own slots and in every total
 *   they feed;
 * - batch counts are not bounded by N: a precinct counts at most max_seq
 *   batches (one per seq), and the national count at most nprecincts times
 *   that, which fits 64 bits with the default max_seq (2^32 - 1) but not for
 *   every max_seq the loader accepts;
 * - the sums over several batches are checked by the committer only:
 *   recovery folds each journaled batch (fold.c's bounds) but trusts the
 *   journal for the sums, and bal_tally_rebuild() still reports totals
 *   beyond 64 bits from counters that no live check produced.
 * The running bound already skips the exact check for any realistic
 * election, so nothing is simplified here: removing a check would trade a
 * guard that costs nothing on the hot path for an argument that depends on
 * the definition.
 */
#include "core/tally_int.h"

#include "core/reason.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const turnout_names[BAL_T_NFIELDS] = {
        "batches", "ballots", "ballots_issued", "ballots_cast", "ballots_spoiled",
};

/* Names the quantity at block offset `o` of precinct `p` into `buf`. */
static void name_offset(const struct bal_layout *l, uint32_t p, uint32_t o, char *buf, size_t len)
{
	const struct bal_defn *d = l->d;
	if (o < BAL_T_NFIELDS) {
		snprintf(buf, len, "%s", turnout_names[o]);
		return;
	}
	for (uint32_t c = 0; c < d->ncontests; c++) {
		if (!bal_defn_votes_in(d, p, c) || o < l->coff[c] || o >= l->coff[c] + d->contests[c].nchoices)
			continue;
		snprintf(buf, len, "contest %u choice %u", d->contests[c].id, o - l->coff[c]);
		return;
	}
	snprintf(buf, len, "offset %u", o);
}

static bool would_overflow(const uint64_t *ctr, uint32_t slot, uint64_t add)
{
	return bal__ld(ctr, slot) > UINT64_MAX - add;
}

/* Block offset of entry `i`, checked to be one of the precinct's slots. */
static uint32_t entry_offset(const struct bal__pview *v, const struct bal_delta *dl, uint32_t i)
{
	const uint32_t s = dl->e[i].slot;
	bal_require(s >= v->base && s - v->base < v->bsize);
	return s - v->base;
}

/* Where an amount would overflow: the precinct's E, its ballot sum (the
 * shadow of E while a protocol counts), or one of the two aggregates. */
enum overflow_level {
	LEVEL_PRECINCT,
	LEVEL_BALLOT_SUM,
	LEVEL_DISTRICT,
	LEVEL_NATIONAL,
};

/* BAL_EOVERFLOW naming the quantity at offset `o` and the level that would
 * overflow. Out of line, so that its text buffer stays out of the frames of
 * the checks that call it. */
__attribute__((cold, noinline)) static int overflow_at(const struct bal_layout *l, const struct bal__pview *v,
                                                       uint32_t o, enum overflow_level level, char *why, size_t whylen)
{
	const struct bal_defn *d = l->d;
	const struct bal_precinct *pr = &d->precincts[v->p];
	char what[64];
	name_offset(l, v->p, o, what, sizeof(what));
	switch (level) {
	case LEVEL_PRECINCT:
		return bal_fail(why, whylen, BAL_EOVERFLOW, "%s at precinct %u would overflow 64 bits", what, pr->id);
	case LEVEL_BALLOT_SUM:
		return bal_fail(why, whylen, BAL_EOVERFLOW, "%s ballot sum at precinct %u would overflow 64 bits", what,
		                pr->id);
	case LEVEL_DISTRICT:
		return bal_fail(why, whylen, BAL_EOVERFLOW, "%s district %u total would overflow 64 bits", what,
		                d->districts[pr->district].id);
	case LEVEL_NATIONAL: break;
	}
	return bal_fail(why, whylen, BAL_EOVERFLOW, "%s national total would overflow 64 bits", what);
}

/* Adding `add` at offset `o` to E (if `with_precinct`) and both aggregates:
 * 0 or BAL_EOVERFLOW naming the first level that would overflow. */
static int check_add(const struct bal_layout *l, const uint64_t *ctr, const struct bal__pview *v, uint32_t o,
                     uint64_t add, bool with_precinct, char *why, size_t whylen)
{
	if (with_precinct && would_overflow(ctr, v->base + o, add))
		return overflow_at(l, v, o, LEVEL_PRECINCT, why, whylen);
	if (would_overflow(ctr, v->par[o].district, add))
		return overflow_at(l, v, o, LEVEL_DISTRICT, why, whylen);
	if (would_overflow(ctr, v->par[o].total, add))
		return overflow_at(l, v, o, LEVEL_NATIONAL, why, whylen);
	return 0;
}

/* The globals that one more batch of precinct v touches, `batches` being
 * already raised by `headroom` (see bal_tally_check_headroom(); with headroom
 * the precinct may have reported since `ctr`, so that count is always checked). */
static inline int check_globals(const struct bal_layout *l, const uint64_t *ctr, const struct bal__pview *v,
                                uint64_t batches, uint64_t headroom, char *why, size_t whylen)
{
	if (would_overflow(ctr, l->globals + BAL_G_BATCHES, batches))
		return bal_fail(why, whylen, BAL_EOVERFLOW, "global batch count would overflow 64 bits");
	if ((headroom || (batches && bal__ld(ctr, v->base + BAL_T_BATCHES) == 0)) &&
	    (headroom == UINT64_MAX || would_overflow(ctr, l->globals + BAL_G_PRECINCTS_REPORTING, 1 + headroom)))
		return bal_fail(why, whylen, BAL_EOVERFLOW, "precincts reporting would overflow 64 bits");
	return 0;
}

/*
 * A newer protocol moves each aggregate by P_new - E_old: up by at most what
 * fits, down by at most what the aggregate holds. An aggregate below one of
 * its precincts' contributions means the counters are not a fold of the
 * journal any more.
 */
static int check_replace(const struct bal_layout *l, const uint64_t *ctr, const struct bal__pview *v,
                         const struct bal_delta *dl, char *why, size_t whylen)
{
	for (uint32_t i = 0; i < dl->n; i++) {
		const uint32_t o = entry_offset(v, dl, i);
		bal_require(o >= BAL_T_ISSUED);
		const uint64_t nv = dl->e[i].add, old = bal__ld(ctr, v->base + o);
		if (nv >= old) {
			int err = check_add(l, ctr, v, o, nv - old, false, why, whylen);
			if (err)
				return err;
			continue;
		}
		const uint32_t agg[2] = {v->par[o].district, v->par[o].total};
		for (int a = 0; a < 2; a++) {
			if (bal__ld(ctr, agg[a]) >= old - nv)
				continue;
			char what[64];
			name_offset(l, v->p, o, what, sizeof(what));
			const struct bal_precinct *pr = &l->d->precincts[v->p];
			return bal_fail(
			        why, whylen, BAL_ECORRUPT,
			        "%s %s total %llu is below the %llu precinct %u contributes to it: the counters "
			        "are inconsistent",
			        what, a == 0 ? "district" : "national", (unsigned long long)bal__ld(ctr, agg[a]),
			        (unsigned long long)old, pr->id);
		}
	}
	return 0;
}

static int check_protocol(const struct bal_layout *l, const uint64_t *ctr, const struct bal__pview *v,
                          const struct bal_delta *dl, char *why, size_t whylen)
{
	bal_require(dl->seq >= 1);
	int err = check_add(l, ctr, v, BAL_T_BATCHES, 1, true, why, whylen);
	if (!err)
		err = check_globals(l, ctr, v, 1, 0, why, whylen);
	if (!err && dl->seq > bal__ld(ctr, v->meta + BAL_SH_PROTOCOL_SEQ))
		err = check_replace(l, ctr, v, dl, why, whylen);
	return err;
}

/* The hot path: three comparisons per entry; check_add() names the failure. */
static inline bool add_fits(const uint64_t *ctr, const struct bal__pview *v, uint32_t o, uint64_t add)
{
	const struct bal__parent pa = v->par[o];
	return !would_overflow(ctr, v->base + o, add) && !would_overflow(ctr, pa.district, add) &&
	       !would_overflow(ctr, pa.total, add);
}

/* An ADD delta, each amount raised by `headroom` (see bal_tally_check_headroom()). */
static int check_add_delta(const struct bal_layout *l, const uint64_t *ctr, const struct bal__pview *v,
                           const struct bal_delta *dl, uint64_t headroom, char *why, size_t whylen)
{
	/* With a protocol counted, B lives in the shadow slots and the totals
	 * only see the batch and ballot counts. */
	const bool shadowed = bal__ld(ctr, v->meta + BAL_SH_PROTOCOL_SEQ) != 0;
	uint64_t batches = 0;
	for (uint32_t i = 0; i < dl->n; i++) {
		const uint32_t o = entry_offset(v, dl, i);
		uint64_t add;
		if (__builtin_add_overflow(dl->e[i].add, headroom, &add))
			return bal_fail(why, whylen, BAL_EOVERFLOW, "an amount plus the headroom overflows 64 bits");
		if (o == BAL_T_BATCHES)
			batches = add;
		if (__builtin_expect(shadowed, 0) && o >= BAL_T_ISSUED) {
			if (would_overflow(ctr, v->bsum + o, add))
				return overflow_at(l, v, o, LEVEL_BALLOT_SUM, why, whylen);
		} else if (__builtin_expect(!add_fits(ctr, v, o, add), 0)) {
			return check_add(l, ctr, v, o, add, true, why, whylen);
		}
	}
	return check_globals(l, ctr, v, batches, headroom, why, whylen);
}

int bal_tally_check(const struct bal_layout *l, const uint64_t *ctr, const struct bal_delta *dl, char *why,
                    size_t whylen)
{
	const struct bal__pview v = bal__pview_of(l, dl);
	if (dl->kind == BAL_DELTA_PROTOCOL)
		return check_protocol(l, ctr, &v, dl, why, whylen);
	return check_add_delta(l, ctr, &v, dl, 0, why, whylen);
}

int bal_tally_check_headroom(const struct bal_layout *l, const uint64_t *ctr, const struct bal_delta *dl,
                             uint64_t headroom, char *why, size_t whylen)
{
	bal_require(dl->kind == BAL_DELTA_ADD);
	const struct bal__pview v = bal__pview_of(l, dl);
	return check_add_delta(l, ctr, &v, dl, headroom, why, whylen);
}

/* ---- voids ------------------------------------------------------------------- */

/* BAL_ECORRUPT: taking `sub` away at offset o of precinct v (from E, its ballot
 * sum, or an aggregate) would go below zero. */
__attribute__((cold, noinline)) static int below_zero(const struct bal_layout *l, const struct bal__pview *v,
                                                      uint32_t o, enum overflow_level level, uint64_t have,
                                                      uint64_t sub, char *why, size_t whylen)
{
	static const char *const where[] = {"of the precinct", "of its ballot sum", "of its district's total",
	                                    "of the national total"};
	char what[64];
	name_offset(l, v->p, o, what, sizeof(what));
	return bal_fail(why, whylen, BAL_ECORRUPT,
	                "precinct %u: %s %s holds %llu, below the %llu a void takes away: the counters are "
	                "inconsistent",
	                l->d->precincts[v->p].id, what, where[level], (unsigned long long)have,
	                (unsigned long long)sub);
}

/* Taking `sub` away at offset o: from E (when `with_precinct`) and both aggregates. */
static int check_sub(const struct bal_layout *l, const uint64_t *ctr, const struct bal__pview *v, uint32_t o,
                     uint64_t sub, bool with_precinct, char *why, size_t whylen)
{
	const uint32_t slot[3] = {v->base + o, v->par[o].district, v->par[o].total};
	const enum overflow_level level[3] = {LEVEL_PRECINCT, LEVEL_DISTRICT, LEVEL_NATIONAL};
	for (int i = with_precinct ? 0 : 1; i < 3; i++)
		if (bal__ld(ctr, slot[i]) < sub)
			return below_zero(l, v, o, level[i], bal__ld(ctr, slot[i]), sub, why, whylen);
	return 0;
}

/* E at every offset from BAL_T_ISSUED on moving to `target`'s values (B, or a
 * protocol's): the aggregates rise by what fits and fall by what they hold. */
static int check_move(const struct bal_layout *l, const uint64_t *ctr, const struct bal__pview *v,
                      const struct bal_delta *target, char *why, size_t whylen)
{
	for (uint32_t o = BAL_T_ISSUED; o < v->bsize; o++) {
		uint64_t nv = bal__ld(ctr, v->bsum + o);
		for (uint32_t i = 0; target && i < target->n; i++)
			if (target->e[i].slot == v->base + o)
				nv = target->e[i].add;
		const uint64_t old = bal__ld(ctr, v->base + o);
		int err = nv >= old ? check_add(l, ctr, v, o, nv - old, false, why, whylen)
		                    : check_sub(l, ctr, v, o, old - nv, false, why, whylen);
		if (err)
			return err;
	}
	return 0;
}

int bal_tally_check_void(const struct bal_layout *l, const uint64_t *ctr, const struct bal_delta *dl,
                         const struct bal_delta *prev, char *why, size_t whylen)
{
	const struct bal__pview v = bal__pview_of(l, dl);
	const uint64_t stored = bal__ld(ctr, v.meta + BAL_SH_PROTOCOL_SEQ);
	if (dl->kind == BAL_DELTA_PROTOCOL) {
		int err = check_sub(l, ctr, &v, BAL_T_BATCHES, 1, true, why, whylen);
		if (err || dl->seq < stored)
			return err;
		if (dl->seq > stored)
			return bal_fail(
			        why, whylen, BAL_ECORRUPT,
			        "precinct %u: the protocol of seq %llu is newer than the counted one (seq %llu): "
			        "the counters are inconsistent",
			        l->d->precincts[v.p].id, (unsigned long long)dl->seq, (unsigned long long)stored);
		if (prev) {
			bal_require(prev->kind == BAL_DELTA_PROTOCOL && prev->precinct == dl->precinct &&
			            prev->seq < dl->seq && prev->n == v.bsize - BAL_T_ISSUED);
			for (uint32_t i = 0; i < prev->n; i++)
				(void)entry_offset(&v, prev, i);
		}
		return check_move(l, ctr, &v, prev, why, whylen);
	}
	for (uint32_t i = 0; i < dl->n; i++) {
		const uint32_t o = entry_offset(&v, dl, i);
		const uint64_t sub = dl->e[i].add;
		int err;
		if (stored && o >= BAL_T_ISSUED)
			err = bal__ld(ctr, v.bsum + o) < sub ? below_zero(l, &v, o, LEVEL_BALLOT_SUM,
			                                                  bal__ld(ctr, v.bsum + o), sub, why, whylen)
			                                     : 0;
		else
			err = check_sub(l, ctr, &v, o, sub, true, why, whylen);
		if (err)
			return err;
	}
	return 0;
}

/* ---- running bound ---------------------------------------------------------- */

uint64_t bal_tally_bound(uint64_t bound, const struct bal_delta *dl)
{
	uint64_t peak = dl->peak ? dl->peak : 1, next;
	return __builtin_add_overflow(bound, peak, &next) ? UINT64_MAX : next;
}

uint64_t bal_tally_max(const struct bal_layout *l, const uint64_t *ctr)
{
	uint64_t m = 0;
	for (size_t s = 0; s < l->nslots; s++)
		if (ctr[s] > m)
			m = ctr[s];
	return m;
}

/* ---- plausibility bounds over several batches ------------------------------------ */

struct bal_pending {
	const struct bal_layout *l;
	uint64_t *amount;  /* [first aggregate slot] pending ADD amounts summed per precinct slot */
	uint32_t *touched; /* [nprecincts] the precincts with pending amounts: ntouched of them */
	uint32_t ntouched;
	uint8_t *is_touched;  /* [nprecincts] 1 iff in touched */
	uint32_t *contest_at; /* per district block, at bal__pslot.parents + offset: the contest index */
	uint64_t *csum;       /* scratch [ncontests]: the checked delta's amounts per contest */
	uint32_t *clist;      /* scratch [ncontests]: the contests it adds to, each once */
	uint8_t *cmark;       /* scratch [ncontests]: 1 iff in clist */
};

struct bal_pending *bal_pending_new(const struct bal_layout *l)
{
	const struct bal_defn *d = l->d;
	struct bal_pending *g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	size_t nblock = 0;
	for (uint32_t i = 0; i < d->ndistricts; i++)
		nblock += l->bsize[i];
	const size_t np = d->nprecincts ? d->nprecincts : 1, nc = d->ncontests ? d->ncontests : 1;
	g->l = l;
	g->amount = calloc(bal__first_aggregate(l) ? bal__first_aggregate(l) : 1, sizeof(*g->amount));
	g->touched = calloc(np, sizeof(*g->touched));
	g->is_touched = calloc(np, sizeof(*g->is_touched));
	g->contest_at = calloc(nblock ? nblock : 1, sizeof(*g->contest_at));
	g->csum = calloc(nc, sizeof(*g->csum));
	g->clist = calloc(nc, sizeof(*g->clist));
	g->cmark = calloc(nc, sizeof(*g->cmark));
	if (!g->amount || !g->touched || !g->is_touched || !g->contest_at || !g->csum || !g->clist || !g->cmark) {
		bal_pending_free(g);
		return NULL;
	}
	for (uint32_t i = 0; i < d->ndistricts; i++) {
		uint32_t *at = g->contest_at + l->pmap[i];
		for (uint32_t o = 0; o < l->bsize[i]; o++)
			at[o] = UINT32_MAX;
		for (uint32_t c = 0; c < d->ncontests; c++)
			if (d->contests[c].district < 0 || (uint32_t)d->contests[c].district == i)
				for (uint32_t k = 0; k < d->contests[c].nchoices; k++)
					at[l->coff[c] + k] = c;
	}
	return g;
}

void bal_pending_free(struct bal_pending *g)
{
	if (!g)
		return;
	free(g->amount);
	free(g->touched);
	free(g->is_touched);
	free(g->contest_at);
	free(g->csum);
	free(g->clist);
	free(g->cmark);
	free(g);
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
	uint64_t r;
	return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

void bal_pending_add(struct bal_pending *g, const struct bal_delta *dl)
{
	const struct bal_layout *l = g->l;
	const struct bal__pview v = bal__pview_of(l, dl);
	if (dl->kind != BAL_DELTA_ADD || l->d->precincts[v.p].unbounded)
		return;
	for (uint32_t i = 0; i < dl->n; i++) {
		const uint32_t s = v.base + entry_offset(&v, dl, i);
		g->amount[s] = add_sat(g->amount[s], dl->e[i].add);
	}
	if (!g->is_touched[v.p]) {
		g->is_touched[v.p] = 1;
		g->touched[g->ntouched++] = v.p;
	}
}

void bal_pending_clear(struct bal_pending *g)
{
	for (uint32_t i = 0; i < g->ntouched; i++) {
		const struct bal__pslot *ps = &g->l->prec[g->touched[i]];
		memset(g->amount + ps->base, 0, ps->bsize * sizeof(*g->amount));
		g->is_touched[g->touched[i]] = 0;
	}
	g->ntouched = 0;
}

/* The bounded counts and turnout fields, as the wire names them. */
static const char *const bounded_names[BAL_T_NFIELDS] = {
        [BAL_T_BALLOTS] = "ballots",
        [BAL_T_ISSUED] = "turnout.ballots_issued",
        [BAL_T_CAST] = "turnout.ballots_cast",
        [BAL_T_SPOILED] = "turnout.ballots_spoiled",
};

/* B at block offset o of precinct v, plus what the group's pending deltas
 * add to it (`pending` NULL: nothing pending for v). */
static uint64_t sum_before(const uint64_t *ctr, const uint64_t *pending, const struct bal__pview *v, bool shadowed,
                           uint32_t o)
{
	const uint64_t b = shadowed && o >= BAL_T_ISSUED ? bal__ld(ctr, v->bsum + o) : bal__ld(ctr, v->base + o);
	return pending ? add_sat(b, pending[v->base + o]) : b;
}

/* BAL_EINVALID: `what` would exceed precinct v's bound. */
__attribute__((cold, noinline)) static int beyond_bound(const struct bal_layout *l, const struct bal__pview *v,
                                                        const char *what, uint64_t before, uint64_t add, char *why,
                                                        size_t whylen)
{
	const struct bal_precinct *pr = &l->d->precincts[v->p];
	return bal_fail(why, whylen, BAL_EINVALID,
	                "precinct %u: %s would reach %llu over its BALLOTS and TALLY batches (%llu before this batch + "
	                "%llu in it), above its %llu registered voters + %llu margin",
	                pr->id, what, (unsigned long long)add_sat(before, add), (unsigned long long)before,
	                (unsigned long long)add, (unsigned long long)pr->registered_voters,
	                (unsigned long long)pr->registration_margin);
}

__attribute__((cold, noinline)) static int contest_beyond_bound(const struct bal_layout *l, const struct bal__pview *v,
                                                                uint32_t c, uint64_t before, uint64_t add, char *why,
                                                                size_t whylen)
{
	char what[48];
	snprintf(what, sizeof(what), "contest %u votes", l->d->contests[c].id);
	return beyond_bound(l, v, what, before, add, why, whylen);
}

int bal_tally_check_plausible(const struct bal_layout *l, const uint64_t *ctr, struct bal_pending *g,
                              const struct bal_delta *dl, char *why, size_t whylen)
{
	bal_require(g->l == l);
	const struct bal__pview v = bal__pview_of(l, dl);
	const struct bal_precinct *pr = &l->d->precincts[v.p];
	if (dl->kind != BAL_DELTA_ADD || pr->unbounded)
		return 0;
	const bool shadowed = bal__ld(ctr, v.meta + BAL_SH_PROTOCOL_SEQ) != 0;
	/* Most batches are their precinct's only one in the group: then nothing
	 * is pending for it and the (large, cold) amount array is not read. */
	const uint64_t *pending = g->is_touched[v.p] ? g->amount : NULL;
	const uint32_t *contest_at = g->contest_at + l->prec[v.p].parents;
	/* The counts and turnout fields first, each its own quantity; the
	 * contests' amounts are summed per contest on the way. */
	uint32_t nc = 0;
	for (uint32_t i = 0; i < dl->n; i++) {
		const uint32_t o = entry_offset(&v, dl, i);
		const uint64_t add = dl->e[i].add;
		if (o >= BAL_T_NFIELDS) {
			const uint32_t c = contest_at[o];
			if (!g->cmark[c]) {
				g->cmark[c] = 1;
				g->csum[c] = 0;
				g->clist[nc++] = c;
			}
			g->csum[c] = add_sat(g->csum[c], add);
			continue;
		}
		if (o == BAL_T_BATCHES)
			continue;
		const uint64_t before = sum_before(ctr, pending, &v, shadowed, o);
		if (add_sat(before, add) > pr->max_voters) {
			for (uint32_t j = 0; j < nc; j++)
				g->cmark[g->clist[j]] = 0;
			return beyond_bound(l, &v, bounded_names[o], before, add, why, whylen);
		}
	}
	int err = 0;
	for (uint32_t j = 0; j < nc; j++) {
		const uint32_t c = g->clist[j];
		g->cmark[c] = 0;
		if (err)
			continue;
		uint64_t before = 0;
		for (uint32_t k = 0; k < l->d->contests[c].nchoices; k++)
			before = add_sat(before, sum_before(ctr, pending, &v, shadowed, l->coff[c] + k));
		if (add_sat(before, g->csum[c]) > pr->max_voters)
			err = contest_beyond_bound(l, &v, c, before, g->csum[c], why, whylen);
	}
	return err;
}
