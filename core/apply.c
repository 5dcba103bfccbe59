/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Counters, apply: adds a checked delta to every level it reaches (precinct,
 * shadow, district, contest, national, globals) with relaxed atomic stores,
 * so that the seqlock writer (pub.c) can run it on the published array while
 * readers copy it; and takes one back when an amendment voids its batch
 * (reverting a precinct from its protocol to its ballot sums when the
 * counted protocol goes). The ADD hot path is three adds per entry. It never
 * allocates, never fails and formats no text: it must not depend on fold.c,
 * check.c or anything beyond core and libc.
 */
#include "core/tally_int.h"

static inline void add_to(uint64_t *ctr, uint32_t s, uint64_t add)
{
	bal__st(ctr, s, bal__ld(ctr, s) + add);
}

static inline void sub_from(uint64_t *ctr, uint32_t s, uint64_t sub)
{
	bal__st(ctr, s, bal__ld(ctr, s) - sub);
}

/* Adds to E at offset o and to both aggregates it feeds. */
static inline void add_level3(uint64_t *ctr, const struct bal__pview *v, uint32_t o, uint64_t add)
{
	const struct bal__parent pa = v->par[o];
	add_to(ctr, v->base + o, add);
	add_to(ctr, pa.district, add);
	add_to(ctr, pa.total, add);
}

/* Moves BAL_G_DISCREPANCIES when precinct v's count of differing slots
 * crosses zero. */
static void note_mismatch(const struct bal_layout *l, uint64_t *ctr, const struct bal__pview *v, uint64_t before,
                          uint64_t after)
{
	bal__st(ctr, v->meta + BAL_SH_NDIFF, after);
	if (!before && after)
		add_to(ctr, l->globals + BAL_G_DISCREPANCIES, 1);
	else if (before && !after)
		sub_from(ctr, l->globals + BAL_G_DISCREPANCIES, 1);
}

/* An ADD delta to a precinct with a protocol: counts reach the totals, the
 * rest goes to B in the shadow block. */
static void apply_shadowed(const struct bal_layout *l, uint64_t *ctr, const struct bal__pview *v,
                           const struct bal_delta *dl)
{
	const uint64_t before = bal__ld(ctr, v->meta + BAL_SH_NDIFF);
	uint64_t differ = before;
	for (uint32_t i = 0; i < dl->n; i++) {
		const uint32_t o = dl->e[i].slot - v->base;
		if (o < BAL_T_ISSUED) {
			add_level3(ctr, v, o, dl->e[i].add);
			continue;
		}
		const uint64_t p = bal__ld(ctr, v->base + o), b = bal__ld(ctr, v->bsum + o);
		const uint64_t nb = b + dl->e[i].add;
		bal__st(ctr, v->bsum + o, nb);
		if (p == b && p != nb)
			differ++;
		else if (p != b && p == nb)
			differ--;
	}
	note_mismatch(l, ctr, v, before, differ);
}

/* Sets E at offset o from `old` to `nv`, moving both aggregates it feeds by the difference. */
static void set_level3(uint64_t *ctr, const struct bal__pview *v, uint32_t o, uint64_t old, uint64_t nv)
{
	const struct bal__parent pa = v->par[o];
	if (nv >= old) {
		add_to(ctr, pa.district, nv - old);
		add_to(ctr, pa.total, nv - old);
	} else {
		sub_from(ctr, pa.district, old - nv);
		sub_from(ctr, pa.total, old - nv);
	}
	bal__st(ctr, v->base + o, nv);
}

/* E becomes the protocol values of `dl` (whatever its seq), the aggregates
 * move by the difference; a first protocol moves B to the shadow block. Its
 * seq is stored and the differing slots recounted. */
static void take_protocol(const struct bal_layout *l, uint64_t *ctr, const struct bal__pview *v,
                          const struct bal_delta *dl)
{
	const uint64_t stored = bal__ld(ctr, v->meta + BAL_SH_PROTOCOL_SEQ);
	/* Every slot from BAL_T_ISSUED on has exactly one entry (fold guarantees it). */
	bal_require(dl->n == v->bsize - BAL_T_ISSUED);
	for (uint32_t i = 0; i < dl->n; i++) {
		const uint32_t o = dl->e[i].slot - v->base;
		const uint64_t old = bal__ld(ctr, v->base + o);
		if (!stored)
			bal__st(ctr, v->bsum + o, old); /* first protocol: B moves to the shadow block */
		set_level3(ctr, v, o, old, dl->e[i].add);
	}
	bal__st(ctr, v->meta + BAL_SH_PROTOCOL_SEQ, dl->seq);
	if (!stored)
		add_to(ctr, l->globals + BAL_G_PROTOCOLS, 1);
	uint64_t differ = 0;
	for (uint32_t o = BAL_T_ISSUED; o < v->bsize; o++)
		differ += bal__ld(ctr, v->base + o) != bal__ld(ctr, v->bsum + o);
	note_mismatch(l, ctr, v, bal__ld(ctr, v->meta + BAL_SH_NDIFF), differ);
}

/* A PROTOCOL delta: one more batch; if newer than the stored protocol, E
 * becomes P_new and the aggregates move by the difference. */
static void apply_protocol(const struct bal_layout *l, uint64_t *ctr, const struct bal__pview *v,
                           const struct bal_delta *dl)
{
	add_level3(ctr, v, BAL_T_BATCHES, 1);
	if (dl->seq <= bal__ld(ctr, v->meta + BAL_SH_PROTOCOL_SEQ))
		return; /* older (or the same): journaled, counted as a batch, replaces nothing */
	take_protocol(l, ctr, v, dl);
}

/* Precinct v without its protocol: E becomes B again (the aggregates move by
 * B - P), the shadows of the ballot sums are cleared, the protocol seq is 0,
 * and the precinct leaves the protocol and discrepancy counts. */
static void revert(const struct bal_layout *l, uint64_t *ctr, const struct bal__pview *v)
{
	if (!bal__ld(ctr, v->meta + BAL_SH_PROTOCOL_SEQ))
		return;
	for (uint32_t o = BAL_T_ISSUED; o < v->bsize; o++) {
		set_level3(ctr, v, o, bal__ld(ctr, v->base + o), bal__ld(ctr, v->bsum + o));
		bal__st(ctr, v->bsum + o, 0);
	}
	bal__st(ctr, v->meta + BAL_SH_PROTOCOL_SEQ, 0);
	sub_from(ctr, l->globals + BAL_G_PROTOCOLS, 1);
	note_mismatch(l, ctr, v, bal__ld(ctr, v->meta + BAL_SH_NDIFF), 0);
}

void bal_tally_revert_protocol(const struct bal_layout *l, uint64_t *ctr, uint32_t p)
{
	const struct bal__pview v = bal__pview_at(l, p);
	revert(l, ctr, &v);
}

/* Takes an ADD delta back from precinct v: with a protocol counted, the
 * counts leave the totals and the rest leaves B in the shadow block. */
static void unapply_add(const struct bal_layout *l, uint64_t *ctr, const struct bal__pview *v,
                        const struct bal_delta *dl)
{
	const bool shadowed = bal__ld(ctr, v->meta + BAL_SH_PROTOCOL_SEQ) != 0;
	const uint64_t before = bal__ld(ctr, v->meta + BAL_SH_NDIFF);
	uint64_t differ = before;
	for (uint32_t i = 0; i < dl->n; i++) {
		const uint32_t o = dl->e[i].slot - v->base;
		const uint64_t sub = dl->e[i].add;
		if (!shadowed || o < BAL_T_ISSUED) {
			const struct bal__parent pa = v->par[o];
			sub_from(ctr, v->base + o, sub);
			sub_from(ctr, pa.district, sub);
			sub_from(ctr, pa.total, sub);
			continue;
		}
		const uint64_t p = bal__ld(ctr, v->base + o), b = bal__ld(ctr, v->bsum + o);
		const uint64_t nb = b - sub;
		bal__st(ctr, v->bsum + o, nb);
		if (p == b && p != nb)
			differ++;
		else if (p != b && p == nb)
			differ--;
	}
	if (shadowed)
		note_mismatch(l, ctr, v, before, differ);
}

/*
 * As bal_tally_apply() derives the globals from the precinct's batch count,
 * so does a void: BAL_G_BATCHES falls by what that count fell by, and a
 * precinct left without a batch stops reporting.
 */
void bal_tally_void(const struct bal_layout *l, uint64_t *ctr, const struct bal_delta *dl, const struct bal_delta *prev)
{
	const struct bal__pview v = bal__pview_of(l, dl);
	const uint64_t before = bal__ld(ctr, v.base + BAL_T_BATCHES);
	if (dl->kind == BAL_DELTA_PROTOCOL) {
		const struct bal__parent pa = v.par[BAL_T_BATCHES];
		sub_from(ctr, v.base + BAL_T_BATCHES, 1);
		sub_from(ctr, pa.district, 1);
		sub_from(ctr, pa.total, 1);
		if (dl->seq == bal__ld(ctr, v.meta + BAL_SH_PROTOCOL_SEQ)) {
			revert(l, ctr, &v);
			if (prev) {
				bal_require(prev->kind == BAL_DELTA_PROTOCOL && prev->precinct == dl->precinct &&
				            prev->seq < dl->seq);
				take_protocol(l, ctr, &v, prev);
			}
		}
	} else {
		unapply_add(l, ctr, &v, dl);
	}
	const uint64_t after = bal__ld(ctr, v.base + BAL_T_BATCHES);
	if (after != before) {
		sub_from(ctr, l->globals + BAL_G_BATCHES, before - after);
		if (after == 0)
			sub_from(ctr, l->globals + BAL_G_PRECINCTS_REPORTING, 1);
	}
}

/*
 * Globals are derived from the precinct's BAL_T_BATCHES slot rather than
 * carried in the delta: BAL_G_BATCHES grows by whatever that slot grew by, and
 * BAL_G_PRECINCTS_REPORTING by one when it went from 0 to nonzero.
 */
void bal_tally_apply(const struct bal_layout *l, uint64_t *ctr, const struct bal_delta *dl)
{
	const struct bal__pview v = bal__pview_of(l, dl);
	const uint64_t before = bal__ld(ctr, v.base + BAL_T_BATCHES);

	if (dl->kind == BAL_DELTA_PROTOCOL) {
		apply_protocol(l, ctr, &v, dl);
	} else if (bal__ld(ctr, v.meta + BAL_SH_PROTOCOL_SEQ)) {
		apply_shadowed(l, ctr, &v, dl);
	} else {
		/* The hot path: no protocol, three adds per entry. */
		for (uint32_t i = 0; i < dl->n; i++)
			add_level3(ctr, &v, dl->e[i].slot - v.base, dl->e[i].add);
	}
	const uint64_t after = bal__ld(ctr, v.base + BAL_T_BATCHES);
	if (after != before) {
		add_to(ctr, l->globals + BAL_G_BATCHES, after - before);
		if (before == 0)
			add_to(ctr, l->globals + BAL_G_PRECINCTS_REPORTING, 1);
	}
}
