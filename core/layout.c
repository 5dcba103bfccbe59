/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Counters, layout: builds the slot layout (see tally_int.h) once from the
 * definition and answers the slot look-ups: precinct, district, contest,
 * national, global and shadow slots, a precinct's protocol seq and its ballot
 * sums. Depends on the definition (core/ballot.h) and libc only; it knows
 * nothing of batches, deltas or how counters change.
 */
#include "core/tally_int.h"

#include <errno.h>
#include <stdlib.h>

static bool contest_national(const struct bal_contest *c)
{
	return c->district < 0;
}

/* ---- layout --------------------------------------------------------------- */

/* Adds `n` to `*acc`; false if the result would not fit a uint32 slot number
 * (BAL_SLOT_NONE is reserved). */
static bool grow(uint64_t *acc, uint64_t n)
{
	*acc += n;
	return *acc < BAL_SLOT_NONE;
}

static int layout_fill(struct bal_layout *l, const struct bal_defn *d)
{
	uint64_t next = 0;
	uint64_t national = BAL_T_NFIELDS;

	for (uint32_t c = 0; c < d->ncontests; c++)
		if (contest_national(&d->contests[c])) {
			l->coff[c] = (uint32_t)national;
			if (!grow(&national, d->contests[c].nchoices))
				return -EOVERFLOW;
		}
	for (uint32_t i = 0; i < d->ndistricts; i++)
		l->bsize[i] = (uint32_t)national;
	for (uint32_t c = 0; c < d->ncontests; c++) {
		const struct bal_contest *ct = &d->contests[c];
		if (contest_national(ct))
			continue;
		uint64_t sz = l->bsize[ct->district];
		l->coff[c] = (uint32_t)sz;
		if (!grow(&sz, ct->nchoices))
			return -EOVERFLOW;
		l->bsize[ct->district] = (uint32_t)sz;
	}

	l->delta_max = 0;
	for (uint32_t i = 0; i < d->ndistricts; i++)
		if (l->bsize[i] > l->delta_max)
			l->delta_max = l->bsize[i];

	for (uint32_t p = 0; p < d->nprecincts; p++) {
		/* Protocol seq and differing slots, then the block. */
		l->prec[p].base = (uint32_t)next + BAL_SH_NFIELDS;
		l->prec[p].bsize = l->bsize[d->precincts[p].district];
		if (!grow(&next, BAL_SH_NFIELDS + (uint64_t)l->prec[p].bsize))
			return -EOVERFLOW;
	}
	for (uint32_t p = 0; p < d->nprecincts; p++) {
		l->prec[p].bsum = (uint32_t)next;
		if (!grow(&next, l->prec[p].bsize - BAL_T_ISSUED))
			return -EOVERFLOW;
	}
	for (uint32_t c = 0; c < d->ncontests; c++) {
		const struct bal_contest *ct = &d->contests[c];
		l->dbase[c] = (uint32_t)next;
		if (!grow(&next, (uint64_t)ct->nchoices * (contest_national(ct) ? d->ndistricts : 1)))
			return -EOVERFLOW;
	}
	for (uint32_t c = 0; c < d->ncontests; c++) {
		l->cbase[c] = (uint32_t)next;
		if (!grow(&next, d->contests[c].nchoices))
			return -EOVERFLOW;
	}
	l->dturnout = (uint32_t)next;
	if (!grow(&next, (uint64_t)d->ndistricts * BAL_T_NFIELDS))
		return -EOVERFLOW;
	l->tturnout = (uint32_t)next;
	if (!grow(&next, BAL_T_NFIELDS))
		return -EOVERFLOW;
	l->globals = (uint32_t)next;
	if (!grow(&next, BAL_G_NFIELDS))
		return -EOVERFLOW;
	l->nslots = next;
	return 0;
}

/* Fills the per-district parent maps; bsize/coff/dbase/cbase are set. */
static void layout_parents(struct bal_layout *l, const struct bal_defn *d)
{
	for (uint32_t i = 0; i < d->ndistricts; i++) {
		struct bal__parent *par = l->parents + l->pmap[i];
		for (uint32_t f = 0; f < BAL_T_NFIELDS; f++) {
			par[f].district = l->dturnout + i * BAL_T_NFIELDS + f;
			par[f].total = l->tturnout + f;
		}
	}
	for (uint32_t c = 0; c < d->ncontests; c++) {
		const struct bal_contest *ct = &d->contests[c];
		for (uint32_t i = 0; i < d->ndistricts; i++) {
			if (!contest_national(ct) && (uint32_t)ct->district != i)
				continue;
			struct bal__parent *par = l->parents + l->pmap[i] + l->coff[c];
			uint32_t dfirst = l->dbase[c] + (contest_national(ct) ? i * ct->nchoices : 0);
			for (uint32_t k = 0; k < ct->nchoices; k++) {
				par[k].district = dfirst + k;
				par[k].total = l->cbase[c] + k;
			}
		}
	}
	for (uint32_t p = 0; p < d->nprecincts; p++)
		l->prec[p].parents = l->pmap[d->precincts[p].district];
}

struct bal_layout *bal_layout_new(const struct bal_defn *d)
{
	struct bal_layout *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->d = d;
	l->prec = calloc(d->nprecincts ? d->nprecincts : 1, sizeof(*l->prec));
	l->coff = calloc(d->ncontests ? d->ncontests : 1, sizeof(*l->coff));
	l->dbase = calloc(d->ncontests ? d->ncontests : 1, sizeof(*l->dbase));
	l->cbase = calloc(d->ncontests ? d->ncontests : 1, sizeof(*l->cbase));
	l->bsize = calloc(d->ndistricts ? d->ndistricts : 1, sizeof(*l->bsize));
	l->pmap = calloc(d->ndistricts ? d->ndistricts : 1, sizeof(*l->pmap));
	if (!l->prec || !l->coff || !l->dbase || !l->cbase || !l->bsize || !l->pmap)
		goto fail_layout;
	int err = layout_fill(l, d);
	if (err) {
		errno = -err;
		goto fail_layout;
	}
	size_t nparents = 0;
	for (uint32_t i = 0; i < d->ndistricts; i++) {
		l->pmap[i] = (uint32_t)nparents;
		nparents += l->bsize[i];
	}
	l->parents = calloc(nparents ? nparents : 1, sizeof(*l->parents));
	if (!l->parents)
		goto fail_layout;
	layout_parents(l, d);
	return l;

fail_layout:
	bal_layout_free(l);
	return NULL;
}

void bal_layout_free(struct bal_layout *l)
{
	if (!l)
		return;
	free(l->prec);
	free(l->coff);
	free(l->dbase);
	free(l->cbase);
	free(l->bsize);
	free(l->pmap);
	free(l->parents);
	free(l);
}

size_t bal_layout_nslots(const struct bal_layout *l)
{
	return l->nslots;
}

size_t bal_layout_first_aggregate(const struct bal_layout *l)
{
	return bal__first_aggregate(l);
}

size_t bal_layout_delta_max(const struct bal_layout *l)
{
	return l->delta_max;
}

/* ---- slot look-ups ---------------------------------------------------------- */

static bool precinct_votes_in(const struct bal_layout *l, uint32_t p, uint32_t c)
{
	return bal_defn_votes_in(l->d, p, c);
}

uint32_t bal_slot_precinct_choice(const struct bal_layout *l, uint32_t p, uint32_t c, uint32_t k)
{
	const struct bal_defn *d = l->d;
	if (p >= d->nprecincts || c >= d->ncontests || k >= d->contests[c].nchoices || !precinct_votes_in(l, p, c))
		return BAL_SLOT_NONE;
	return l->prec[p].base + l->coff[c] + k;
}

uint32_t bal_slot_district_choice(const struct bal_layout *l, uint32_t c, uint32_t dist, uint32_t k)
{
	const struct bal_defn *d = l->d;
	if (c >= d->ncontests || dist >= d->ndistricts || k >= d->contests[c].nchoices)
		return BAL_SLOT_NONE;
	const struct bal_contest *ct = &d->contests[c];
	if (contest_national(ct))
		return l->dbase[c] + dist * ct->nchoices + k;
	return (uint32_t)ct->district == dist ? l->dbase[c] + k : BAL_SLOT_NONE;
}

uint32_t bal_slot_contest_choice(const struct bal_layout *l, uint32_t c, uint32_t k)
{
	const struct bal_defn *d = l->d;
	if (c >= d->ncontests || k >= d->contests[c].nchoices)
		return BAL_SLOT_NONE;
	return l->cbase[c] + k;
}

uint32_t bal_slot_precinct_turnout(const struct bal_layout *l, uint32_t p, enum bal_turnout_field f)
{
	if (p >= l->d->nprecincts || (unsigned)f >= BAL_T_NFIELDS)
		return BAL_SLOT_NONE;
	return l->prec[p].base + (uint32_t)f;
}

uint32_t bal_slot_district_turnout(const struct bal_layout *l, uint32_t dist, enum bal_turnout_field f)
{
	if (dist >= l->d->ndistricts || (unsigned)f >= BAL_T_NFIELDS)
		return BAL_SLOT_NONE;
	return l->dturnout + dist * BAL_T_NFIELDS + (uint32_t)f;
}

uint32_t bal_slot_total_turnout(const struct bal_layout *l, enum bal_turnout_field f)
{
	if ((unsigned)f >= BAL_T_NFIELDS)
		return BAL_SLOT_NONE;
	return l->tturnout + (uint32_t)f;
}

uint32_t bal_slot_global(const struct bal_layout *l, enum bal_global_field f)
{
	if ((unsigned)f >= BAL_G_NFIELDS)
		return BAL_SLOT_NONE;
	return l->globals + (uint32_t)f;
}

uint32_t bal_slot_precinct_shadow(const struct bal_layout *l, uint32_t p, uint32_t s)
{
	if (p >= l->d->nprecincts || s < l->prec[p].base || s - l->prec[p].base >= l->prec[p].bsize)
		return BAL_SLOT_NONE;
	return bal__shadow_of(&l->prec[p], s - l->prec[p].base);
}

uint64_t bal_tally_protocol_seq(const struct bal_layout *l, const uint64_t *ctr, uint32_t p)
{
	bal_require(p < l->d->nprecincts);
	return ctr[bal__shadow_of(&l->prec[p], BAL_SH_PROTOCOL_SEQ)];
}

uint64_t bal_tally_ballot_sum(const struct bal_layout *l, const uint64_t *ctr, uint32_t p, uint32_t s)
{
	uint32_t sh = bal_slot_precinct_shadow(l, p, s);
	bal_require(sh != BAL_SLOT_NONE);
	if (s - l->prec[p].base < BAL_T_ISSUED || !bal_tally_protocol_seq(l, ctr, p))
		return ctr[s];
	return ctr[sh];
}
