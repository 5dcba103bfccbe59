/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internals of the counters (core/tally.h), shared by the files that
 * implement them: layout.c builds the layout, fold.c turns a batch into a
 * delta, check.c proves a delta fits, apply.c adds it, slice.c packs
 * snapshot slices and rebuilds the aggregates. Private to core/: no other
 * folder includes this header. Like the rest of core it depends on libc only.
 *
 * Layout. Every precinct owns one contiguous block of slots:
 *   [0, BAL_T_NFIELDS)           its turnout fields;
 *   then, for each national contest in file order, one slot per choice;
 *   then, for each contest of the precinct's district in file order, one slot
 *   per choice.
 * Just before offset 0 sit the BAL_SH_NFIELDS shadows of its counts (see
 * tally.h): the protocol seq (BAL_SH_PROTOCOL_SEQ) and the number of
 * differing slots (BAL_SH_NDIFF), so that the seq shares a cache line with
 * the batch count every delta touches. The shadows of
 * offsets BAL_T_ISSUED.. (ballot sums once a protocol counts) live in a
 * region of their own after all precinct blocks, touched only for precincts
 * with a protocol, so blocks stay dense for the ADD hot path.
 * All precincts of a district therefore share one block shape, and a contest
 * sits at the same offset (`coff[c]`) in the block of every precinct that
 * votes in it. For each district the layout keeps, per block offset, the two
 * aggregate slots that offset feeds (district-level and national-level), so
 * apply is three adds per delta entry with no search.
 *
 * After the precinct blocks come, in order: the ballot-sum region, the
 * (contest, district) choice slots, the contest national totals, the district turnout slots, the national
 * turnout slots and the globals. Slot numbers fit uint32 (checked at build).
 */
#ifndef BAL_CORE_TALLY_INT_H
#define BAL_CORE_TALLY_INT_H

#include "core/tally.h"

/* The counts are exactly the offsets below BAL_T_ISSUED, and each has its
 * shadow just before the block; every other offset has a ballot sum. */
_Static_assert((int)BAL_SH_NFIELDS == (int)BAL_T_ISSUED, "one meta shadow per count, counts first in the block");

/* The two aggregate slots fed by one precinct-block offset. */
struct bal__parent {
	uint32_t district; /* (contest, district, choice) slot, or district turnout slot */
	uint32_t total;    /* contest national total slot, or national turnout slot */
};

/* Per precinct: where its block starts, its size, where its ballot sums
 * start and where its district's parent map starts (all that check and apply
 * need, without touching the definition). */
struct bal__pslot {
	uint32_t base;    /* offset 0 of the block (E); the BAL_SH_NFIELDS meta slots precede it */
	uint32_t bsize;   /* block size of its district */
	uint32_t bsum;    /* shadow of offset BAL_T_ISSUED; bsize - BAL_T_ISSUED slots */
	uint32_t parents; /* index into bal_layout.parents */
};

struct bal_layout {
	const struct bal_defn *d;
	size_t nslots;
	size_t delta_max;
	struct bal__pslot *prec; /* [nprecincts] */
	uint32_t *coff;          /* [ncontests] offset of the contest in the block of a precinct voting in it */
	uint32_t *dbase;         /* [ncontests] first (contest, district, choice) slot */
	uint32_t *cbase;         /* [ncontests] first national-total slot */
	uint32_t *bsize;         /* [ndistricts] block size of the district's precincts */
	uint32_t *pmap;          /* [ndistricts] index of the district's first entry in `parents` */
	struct bal__parent *parents;
	uint32_t dturnout; /* first district turnout slot */
	uint32_t tturnout; /* first national turnout slot */
	uint32_t globals;  /* first global slot */
};

/* The shadow of block offset o of the precinct whose block is `ps`: the
 * counts' shadows (protocol seq, differing slots) just before the block, the
 * ballot sums in the ballot-sum region. */
static inline uint32_t bal__shadow_of(const struct bal__pslot *ps, uint32_t o)
{
	return o < BAL_T_ISSUED ? ps->base - BAL_SH_NFIELDS + o : ps->bsum + o - BAL_T_ISSUED;
}

/* First slot that is not precinct-level (see bal_layout_first_aggregate()). */
static inline size_t bal__first_aggregate(const struct bal_layout *l)
{
	return l->d->ncontests ? l->dbase[0] : l->dturnout;
}

/*
 * Counters are read and written with relaxed __atomic builtins, which compile
 * to plain loads and stores but let bal_pub_apply() run apply.c on the
 * published array while readers copy it (see pub.c).
 */
static inline uint64_t bal__ld(const uint64_t *ctr, uint32_t s)
{
	return __atomic_load_n(&ctr[s], __ATOMIC_RELAXED);
}

static inline void bal__st(uint64_t *ctr, uint32_t s, uint64_t v)
{
	__atomic_store_n(&ctr[s], v, __ATOMIC_RELAXED);
}

/* What check and apply need to know about the delta's precinct. */
struct bal__pview {
	uint32_t p;
	uint32_t base; /* offset 0 of E */
	uint32_t bsize;
	uint32_t meta; /* + BAL_SH_PROTOCOL_SEQ: protocol seq; + BAL_SH_NDIFF: differing slots */
	uint32_t bsum; /* + o (o >= BAL_T_ISSUED): ballot sum while a protocol counts */
	const struct bal__parent *par;
};

static inline struct bal__pview bal__pview_at(const struct bal_layout *l, uint32_t p)
{
	bal_require(p < l->d->nprecincts);
	const struct bal__pslot *ps = &l->prec[p];
	return (struct bal__pview){p,
	                           ps->base,
	                           ps->bsize,
	                           bal__shadow_of(ps, 0),
	                           bal__shadow_of(ps, BAL_T_ISSUED) - BAL_T_ISSUED,
	                           l->parents + ps->parents};
}

static inline struct bal__pview bal__pview_of(const struct bal_layout *l, const struct bal_delta *dl)
{
	return bal__pview_at(l, dl->precinct);
}

#endif
