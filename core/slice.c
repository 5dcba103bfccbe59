/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Counters, snapshot slices: packs and unpacks the precinct-level slots of a
 * range of precincts (their order in a slice is the storage format of
 * snapshots) and rebuilds every aggregate and global from the precinct-level
 * slots after recovery. Plain loads and stores: pack reads an array only its
 * owner writes, unpack and rebuild write arrays no other thread reads. It must
 * not depend on fold, check or apply (rebuild recomputes from the layout alone
 * what apply maintains), nor on anything beyond core and libc.
 */
#include "core/tally_int.h"

#include <string.h>

/* The slots of precincts [first, end): their blocks (with the shadows of the
 * counts before each) and their ballot sums, two contiguous runs. */
static void slice_runs(const struct bal_layout *l, uint32_t first, uint32_t end, uint32_t run[2][2])
{
	const struct bal__pslot *a = &l->prec[first], *z = &l->prec[end - 1];
	run[0][0] = a->base - BAL_SH_NFIELDS;
	run[0][1] = z->base + z->bsize - run[0][0];
	run[1][0] = a->bsum;
	run[1][1] = z->bsum + z->bsize - BAL_T_ISSUED - run[1][0];
}

size_t bal_layout_slice_len(const struct bal_layout *l, uint32_t first, uint32_t end)
{
	if (first >= end || end > l->d->nprecincts)
		return 0;
	uint32_t run[2][2];
	slice_runs(l, first, end, run);
	return (size_t)run[0][1] + run[1][1];
}

size_t bal_layout_slice_pack(const struct bal_layout *l, const uint64_t *ctr, uint32_t first, uint32_t end,
                             uint64_t *out)
{
	size_t n = bal_layout_slice_len(l, first, end);
	if (!n)
		return 0;
	uint32_t run[2][2];
	slice_runs(l, first, end, run);
	memcpy(out, ctr + run[0][0], run[0][1] * sizeof(*ctr));
	memcpy(out + run[0][1], ctr + run[1][0], run[1][1] * sizeof(*ctr));
	return n;
}

int bal_layout_slice_unpack(const struct bal_layout *l, uint64_t *ctr, uint32_t first, uint32_t end, const void *in,
                            size_t n)
{
	size_t want = bal_layout_slice_len(l, first, end);
	if (!want || n != want)
		return BAL_ECORRUPT;
	uint32_t run[2][2];
	slice_runs(l, first, end, run);
	memcpy(ctr + run[0][0], in, run[0][1] * sizeof(*ctr));
	memcpy(ctr + run[1][0], (const uint8_t *)in + run[0][1] * sizeof(*ctr), run[1][1] * sizeof(*ctr));
	return 0;
}

int bal_tally_rebuild(const struct bal_layout *l, uint64_t *ctr)
{
	const struct bal_defn *d = l->d;
	const size_t agg = bal__first_aggregate(l);
	memset(ctr + agg, 0, (l->nslots - agg) * sizeof(*ctr));
	uint64_t *g = ctr + l->globals;
	bool overflow = false;
	for (uint32_t p = 0; p < d->nprecincts; p++) {
		const struct bal__pslot *ps = &l->prec[p];
		const struct bal__parent *par = l->parents + ps->parents;
		const uint64_t *e = ctr + ps->base;
		for (uint32_t o = 0; o < ps->bsize; o++) {
			overflow |= __builtin_add_overflow(ctr[par[o].district], e[o], &ctr[par[o].district]);
			overflow |= __builtin_add_overflow(ctr[par[o].total], e[o], &ctr[par[o].total]);
		}
		overflow |= __builtin_add_overflow(g[BAL_G_BATCHES], e[BAL_T_BATCHES], &g[BAL_G_BATCHES]);
		g[BAL_G_PRECINCTS_REPORTING] += e[BAL_T_BATCHES] != 0;
		g[BAL_G_PROTOCOLS] += ctr[bal__shadow_of(ps, BAL_SH_PROTOCOL_SEQ)] != 0;
		g[BAL_G_DISCREPANCIES] += ctr[bal__shadow_of(ps, BAL_SH_NDIFF)] != 0;
	}
	return overflow ? BAL_EOVERFLOW : 0;
}
