/*
 * Counters: the slot layout built once from the definition, the fold of one
 * batch into a delta of precinct-level slots, the overflow check, and the
 * apply that adds a delta to every level (precinct, district, contest,
 * national, globals). libc only; no uv.h, lmdb.h or protobuf headers.
 *
 * Layout. Every precinct owns one contiguous block of slots:
 *   [0, BAL_T_NFIELDS)           its turnout fields;
 *   then, for each national contest in file order, one slot per choice;
 *   then, for each contest of the precinct's district in file order, one slot
 *   per choice.
 * Just before offset 0 sit two of the precinct's shadow slots (see tally.h):
 * the protocol seq and the number of differing slots, so that the seq shares
 * a cache line with the batch count every delta touches. The shadows of
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
 *
 * Fold and apply never allocate; they touch only the layout, the batch and
 * the caller's delta and counter storage.
 */
#include "core/tally.h"

#include "core/reason.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The two aggregate slots fed by one precinct-block offset. */
struct parent {
	uint32_t district; /* (contest, district, choice) slot, or district turnout slot */
	uint32_t total;    /* contest national total slot, or national turnout slot */
};

/* Per precinct: where its block starts, its size, where its ballot sums
 * start and where its district's parent map starts (all that check and apply
 * need, without touching the definition). */
struct pslot {
	uint32_t base;    /* offset 0 of the block (E); the two meta slots precede it */
	uint32_t bsize;   /* block size of its district */
	uint32_t bsum;    /* shadow of offset BAL_T_ISSUED; bsize - BAL_T_ISSUED slots */
	uint32_t parents; /* index into bal_layout.parents */
};

struct bal_layout {
	const struct bal_defn *d;
	size_t nslots;
	size_t delta_max;
	struct pslot *prec; /* [nprecincts] */
	uint32_t *coff;     /* [ncontests] offset of the contest in the block of a precinct voting in it */
	uint32_t *dbase;    /* [ncontests] first (contest, district, choice) slot */
	uint32_t *cbase;    /* [ncontests] first national-total slot */
	uint32_t *bsize;    /* [ndistricts] block size of the district's precincts */
	uint32_t *pmap;     /* [ndistricts] index of the district's first entry in `parents` */
	struct parent *parents;
	uint32_t dturnout; /* first district turnout slot */
	uint32_t tturnout; /* first national turnout slot */
	uint32_t globals;  /* first global slot */
};

static const char *const turnout_names[BAL_T_NFIELDS] = {
        "batches", "ballots", "ballots_issued", "ballots_cast", "ballots_spoiled",
};

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
		l->prec[p].base = (uint32_t)next + BAL_T_ISSUED;
		l->prec[p].bsize = l->bsize[d->precincts[p].district];
		if (!grow(&next, BAL_T_ISSUED + (uint64_t)l->prec[p].bsize))
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
		struct parent *par = l->parents + l->pmap[i];
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
			struct parent *par = l->parents + l->pmap[i] + l->coff[c];
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
	return l->d->ncontests ? l->dbase[0] : l->dturnout;
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

/* The shadow of block offset o of the precinct whose block is `ps`: the
 * counts' shadows (protocol seq, differing slots) just before the block, the
 * ballot sums in the ballot-sum region. */
static inline uint32_t shadow_of(const struct pslot *ps, uint32_t o)
{
	return o < BAL_T_ISSUED ? ps->base - BAL_T_ISSUED + o : ps->bsum + o - BAL_T_ISSUED;
}

uint32_t bal_slot_precinct_shadow(const struct bal_layout *l, uint32_t p, uint32_t s)
{
	if (p >= l->d->nprecincts || s < l->prec[p].base || s - l->prec[p].base >= l->prec[p].bsize)
		return BAL_SLOT_NONE;
	return shadow_of(&l->prec[p], s - l->prec[p].base);
}

uint64_t bal_tally_protocol_seq(const struct bal_layout *l, const uint64_t *ctr, uint32_t p)
{
	bal_require(p < l->d->nprecincts);
	return ctr[shadow_of(&l->prec[p], BAL_T_BATCHES)];
}

uint64_t bal_tally_ballot_sum(const struct bal_layout *l, const uint64_t *ctr, uint32_t p, uint32_t s)
{
	uint32_t sh = bal_slot_precinct_shadow(l, p, s);
	bal_require(sh != BAL_SLOT_NONE);
	if (s - l->prec[p].base < BAL_T_ISSUED || !bal_tally_protocol_seq(l, ctr, p))
		return ctr[s];
	return ctr[sh];
}

/* ---- fold ------------------------------------------------------------------- */

/*
 * The contest of batch entry `what`[i] (a ballot column or a tally): known,
 * on precinct p's ballot and not named by an earlier entry. Entries are read
 * through the address of entry 0's contest_id and the entry size, so columns
 * and tallies share this check.
 */
struct entries {
	const char *what; /* "ballots" or "tallies", for error texts */
	const char *id0;  /* &entry[0].contest_id */
	size_t stride;    /* sizeof(entry) */
};

static uint32_t entry_id(const struct entries *es, size_t i)
{
	return *(const uint32_t *)(const void *)(es->id0 + i * es->stride);
}

static int resolve_contest(const struct bal_defn *d, uint32_t p, const struct entries *es, size_t i, char *why,
                           size_t whylen)
{
	const uint32_t id = entry_id(es, i);
	int32_t c = bal_defn_contest(d, id);
	if (c < 0)
		return bal_fail(why, whylen, BAL_EINVALID, "%s[%zu].contest_id %u is not in the definition", es->what,
		                i, id);
	if (!bal_defn_votes_in(d, p, (uint32_t)c)) {
		const struct bal_precinct *pr = &d->precincts[p];
		return bal_fail(why, whylen, BAL_EINVALID,
		                "%s[%zu].contest_id %u is not on the ballot of precinct %u (district %u)", es->what, i,
		                id, pr->id, d->districts[pr->district].id);
	}
	for (size_t j = 0; j < i; j++)
		if (entry_id(es, j) == id)
			return bal_fail(why, whylen, BAL_EINVALID, "%s[%zu]: contest %u appears twice (also %s[%zu])",
			                es->what, i, id, es->what, j);
	return c;
}

/* Appends an entry if `add` is nonzero; the caller has reserved room. */
static void put(struct bal_delta_entry *e, uint32_t *n, uint32_t slot, uint64_t add)
{
	if (add) {
		e[*n].slot = slot;
		e[*n].add = add;
		(*n)++;
	}
}

/* Appends an entry even if `value` is zero (protocol entries are absolute). */
static void put_abs(struct bal_delta_entry *e, uint32_t *n, uint32_t slot, uint64_t value)
{
	e[*n].slot = slot;
	e[*n].add = value;
	(*n)++;
}

static int reserve(const struct bal_delta *out, uint32_t n, uint32_t more, char *why, size_t whylen)
{
	if ((uint64_t)n + more > out->cap)
		return bal_fail(why, whylen, -ENOBUFS, "delta capacity %u is below the %llu entries this batch needs",
		                out->cap, (unsigned long long)n + more);
	return 0;
}

/*
 * Counts of the values k0 .. k0+7 in ch[0..n) into cnt[0..8). A histogram
 * loop (count[ch[j]]++) is bound by its chain of loads and stores to the
 * same few counters (a popular choice repeats), so contests with few choices
 * are counted by vector compares instead, eight choices per pass: plain
 * GCC/Clang vector types, SSE2 on x86-64. Each lane counts at most n / 4
 * values (< 2^32 for any body the daemon accepts).
 */
#define COUNT_BY_COMPARE_MAX 16

typedef uint32_t v4u32 __attribute__((vector_size(16)));

static uint64_t lanes_sum(v4u32 a)
{
	return (uint64_t)a[0] + a[1] + a[2] + a[3];
}

static void count_eight(const uint32_t *ch, size_t n, uint32_t k0, uint64_t cnt[8])
{
	const v4u32 one = {1, 1, 1, 1};
	const v4u32 k_0 = one * k0, k_1 = k_0 + one, k_2 = k_1 + one, k_3 = k_2 + one, k_4 = k_3 + one, k_5 = k_4 + one,
	            k_6 = k_5 + one, k_7 = k_6 + one;
	v4u32 a0 = {0, 0, 0, 0}, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
	size_t j = 0;
	for (; j + 4 <= n; j += 4) {
		v4u32 v;
		memcpy(&v, ch + j, sizeof(v));
		a0 -= (v4u32)(v == k_0);
		a1 -= (v4u32)(v == k_1);
		a2 -= (v4u32)(v == k_2);
		a3 -= (v4u32)(v == k_3);
		a4 -= (v4u32)(v == k_4);
		a5 -= (v4u32)(v == k_5);
		a6 -= (v4u32)(v == k_6);
		a7 -= (v4u32)(v == k_7);
	}
	cnt[0] = lanes_sum(a0);
	cnt[1] = lanes_sum(a1);
	cnt[2] = lanes_sum(a2);
	cnt[3] = lanes_sum(a3);
	cnt[4] = lanes_sum(a4);
	cnt[5] = lanes_sum(a5);
	cnt[6] = lanes_sum(a6);
	cnt[7] = lanes_sum(a7);
	for (; j < n; j++)
		if (ch[j] - k0 < 8)
			cnt[ch[j] - k0]++;
}

static int fold_columns(const struct bal_defn *d, const struct bal_layout *l, const struct bal_batch *b, uint32_t p,
                        struct bal_delta *out, uint32_t *n, char *why, size_t whylen)
{
	const uint32_t base = l->prec[p].base;
	const struct entries es = {"ballots", b->ncolumns ? (const char *)&b->columns[0].contest_id : NULL,
	                           sizeof(*b->columns)};
	for (size_t i = 0; i < b->ncolumns; i++) {
		const struct bal_column *col = &b->columns[i];
		int c = resolve_contest(d, p, &es, i, why, whylen);
		if (c < 0)
			return c;
		const uint32_t nch = d->contests[c].nchoices;
		int err = reserve(out, *n, nch, why, whylen);
		if (err)
			return err;
		/* The contest's nch entries double as its count array; zeros are
		 * squeezed out afterwards. */
		struct bal_delta_entry *e = out->e + *n;
		for (uint32_t k = 0; k < nch; k++) {
			e[k].slot = base + l->coff[c] + k;
			e[k].add = 0;
		}
		const uint32_t *ch = col->choices;
		size_t bad = col->n;
		if (nch <= COUNT_BY_COMPARE_MAX) {
			uint64_t counted = 0, cnt[8];
			for (uint32_t k0 = 0; k0 < nch; k0 += 8) {
				count_eight(ch, col->n, k0, cnt);
				for (uint32_t k = k0; k < nch && k < k0 + 8; k++) {
					e[k].add = cnt[k - k0];
					counted += cnt[k - k0];
				}
			}
			if (counted != col->n) /* some choice is not below nch */
				for (bad = 0; bad < col->n && ch[bad] < nch; bad++)
					;
			bal_require(counted == col->n || bad < col->n);
		} else {
			for (size_t j = 0; j < col->n && bad == col->n; j++) {
				if (ch[j] >= nch)
					bad = j;
				else
					e[ch[j]].add++;
			}
		}
		if (bad != col->n)
			return bal_fail(why, whylen, BAL_EINVALID,
			                "ballots[%zu].choices[%zu] = %u is out of range (contest %u has %u choices)", i,
			                bad, ch[bad], col->contest_id, nch);
		uint32_t kept = 0;
		for (uint32_t k = 0; k < nch; k++)
			if (e[k].add)
				e[kept++] = e[k];
		*n += kept;
	}
	return 0;
}

/* TALLY: nonzero counts as adds. PROTOCOL (`absolute`): every count, zeros included. */
static int fold_tallies(const struct bal_defn *d, const struct bal_layout *l, const struct bal_batch *b, uint32_t p,
                        bool absolute, struct bal_delta *out, uint32_t *n, char *why, size_t whylen)
{
	const uint32_t base = l->prec[p].base;
	const struct entries es = {"tallies", b->ntallies ? (const char *)&b->tallies[0].contest_id : NULL,
	                           sizeof(*b->tallies)};
	for (size_t i = 0; i < b->ntallies; i++) {
		const struct bal_ctally *t = &b->tallies[i];
		int c = resolve_contest(d, p, &es, i, why, whylen);
		if (c < 0)
			return c;
		const uint32_t nch = d->contests[c].nchoices;
		if (t->n != nch)
			return bal_fail(why, whylen, BAL_EINVALID,
			                "tallies[%zu].counts has %zu entries, contest %u has %u choices", i, t->n,
			                t->contest_id, nch);
		uint64_t sum = 0;
		for (uint32_t k = 0; k < nch; k++)
			if (__builtin_add_overflow(sum, t->counts[k], &sum))
				return bal_fail(why, whylen, BAL_EOVERFLOW,
				                "tallies[%zu] sum overflows 64 bits (at counts[%u] = %llu)", i, k,
				                (unsigned long long)t->counts[k]);
		int err = reserve(out, *n, nch, why, whylen);
		if (err)
			return err;
		for (uint32_t k = 0; k < nch; k++)
			if (absolute)
				put_abs(out->e, n, base + l->coff[c] + k, t->counts[k]);
			else
				put(out->e, n, base + l->coff[c] + k, t->counts[k]);
	}
	return 0;
}

/*
 * A protocol is the precinct's complete result: after fold_tallies() has
 * checked that every tally names a distinct contest of the ballot, it is
 * complete iff there are as many tallies as contests on the ballot.
 */
static int protocol_complete(const struct bal_defn *d, const struct bal_batch *b, uint32_t p, char *why, size_t whylen)
{
	uint32_t on_ballot = 0, missing = UINT32_MAX;
	for (uint32_t c = 0; c < d->ncontests; c++) {
		if (!bal_defn_votes_in(d, p, c))
			continue;
		on_ballot++;
		bool found = false;
		for (size_t i = 0; i < b->ntallies && !found; i++)
			found = b->tallies[i].contest_id == d->contests[c].id;
		if (!found && missing == UINT32_MAX)
			missing = c;
	}
	if (missing == UINT32_MAX)
		return 0;
	return bal_fail(
	        why, whylen, BAL_EINVALID,
	        "a PROTOCOL batch must carry a tally for every contest on the ballot of precinct %u: contest %u "
	        "is missing (%zu of %u contests present)",
	        b->precinct_id, d->contests[missing].id, b->ntallies, on_ballot);
}

int bal_tally_fold(const struct bal_defn *d, const struct bal_layout *l, const struct bal_batch *b,
                   struct bal_delta *out, char *why, size_t whylen)
{
	int32_t pi = bal_defn_precinct(d, b->precinct_id);
	if (pi < 0)
		return bal_fail(why, whylen, BAL_EINVALID, "precinct_id %u is not in the definition", b->precinct_id);
	const uint32_t p = (uint32_t)pi;
	/* Both rows are read below, one precinct among thousands: let the two
	 * misses overlap. */
	__builtin_prefetch(&l->prec[p]);
	__builtin_prefetch(&d->precincts[p]);
	if (b->seq < 1)
		return bal_fail(why, whylen, BAL_EINVALID, "seq must be >= 1 (got %llu)", (unsigned long long)b->seq);

	size_t nballots = b->ncolumns ? b->columns[0].n : 0;
	switch (b->kind) {
	case BAL_KIND_BALLOTS:
		if (b->ntallies)
			return bal_fail(why, whylen, BAL_EINVALID,
			                "a BALLOTS batch may not carry tallies (got %zu tallies)", b->ntallies);
		for (size_t i = 1; i < b->ncolumns; i++)
			if (b->columns[i].n != nballots)
				return bal_fail(
				        why, whylen, BAL_EINVALID,
				        "ballots[%zu] has %zu entries, ballots[0] has %zu (column lengths differ)", i,
				        b->columns[i].n, nballots);
		if (!nballots && !b->has_turnout)
			return bal_fail(why, whylen, BAL_EINVALID, "batch is empty (no ballots and no turnout)");
		break;
	case BAL_KIND_TALLY:
		if (b->ncolumns)
			return bal_fail(why, whylen, BAL_EINVALID,
			                "a TALLY batch may not carry ballots (got %zu ballot columns)", b->ncolumns);
		if (!b->ntallies && !b->has_turnout)
			return bal_fail(why, whylen, BAL_EINVALID, "batch is empty (no tallies and no turnout)");
		break;
	case BAL_KIND_PROTOCOL:
		if (b->ncolumns)
			return bal_fail(why, whylen, BAL_EINVALID,
			                "a PROTOCOL batch may not carry ballots (got %zu ballot columns)", b->ncolumns);
		if (!b->has_turnout)
			return bal_fail(why, whylen, BAL_EINVALID,
			                "a PROTOCOL batch must carry a turnout (Batch.turnout is absent)");
		break;
	default:
		return bal_fail(why, whylen, BAL_EINVALID, "kind %d is not BALLOTS (0), TALLY (1) or PROTOCOL (2)",
		                (int)b->kind);
	}

	const uint32_t base = l->prec[p].base;
	const bool protocol = b->kind == BAL_KIND_PROTOCOL;
	uint32_t n = 0;
	int err = reserve(out, 0, BAL_T_NFIELDS, why, whylen);
	if (err)
		return err;
	if (protocol) {
		/* Absolute values; the batch count is implied by the kind. */
		put_abs(out->e, &n, base + BAL_T_ISSUED, b->ballots_issued);
		put_abs(out->e, &n, base + BAL_T_CAST, b->ballots_cast);
		put_abs(out->e, &n, base + BAL_T_SPOILED, b->ballots_spoiled);
	} else {
		put(out->e, &n, base + BAL_T_BATCHES, 1);
		if (b->kind == BAL_KIND_BALLOTS)
			put(out->e, &n, base + BAL_T_BALLOTS, nballots);
		if (b->has_turnout) {
			put(out->e, &n, base + BAL_T_ISSUED, b->ballots_issued);
			put(out->e, &n, base + BAL_T_CAST, b->ballots_cast);
			put(out->e, &n, base + BAL_T_SPOILED, b->ballots_spoiled);
		}
	}
	if (b->kind == BAL_KIND_BALLOTS)
		err = fold_columns(d, l, b, p, out, &n, why, whylen);
	else
		err = fold_tallies(d, l, b, p, protocol, out, &n, why, whylen);
	if (!err && protocol)
		err = protocol_complete(d, b, p, why, whylen);
	if (err)
		return err;
	uint64_t peak = n > 1 ? n : 1; /* the batch count; a protocol's count of differing slots */
	for (uint32_t i = 0; i < n; i++)
		if (out->e[i].add > peak)
			peak = out->e[i].add;
	if (protocol && b->seq > peak)
		peak = b->seq; /* stored as the precinct's protocol seq */
	out->precinct = p;
	out->n = n;
	out->kind = protocol ? BAL_DELTA_PROTOCOL : BAL_DELTA_ADD;
	out->seq = protocol ? b->seq : 0;
	out->peak = peak;
	return 0;
}

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

/* ---- check and apply ---------------------------------------------------------- */

/*
 * Counters are read and written with relaxed __atomic builtins, which compile
 * to plain loads and stores but let bal_pub_apply() run this same code on the
 * published array while readers copy it (see pub.c).
 */
static inline uint64_t ld(const uint64_t *ctr, uint32_t s)
{
	return __atomic_load_n(&ctr[s], __ATOMIC_RELAXED);
}

static inline void st(uint64_t *ctr, uint32_t s, uint64_t v)
{
	__atomic_store_n(&ctr[s], v, __ATOMIC_RELAXED);
}

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
	return ld(ctr, slot) > UINT64_MAX - add;
}

/* What check and apply need to know about the delta's precinct. */
struct pview {
	uint32_t p;
	uint32_t base; /* offset 0 of E */
	uint32_t bsize;
	uint32_t meta; /* + BAL_T_BATCHES: protocol seq; + BAL_T_BALLOTS: differing slots */
	uint32_t bsum; /* + o (o >= BAL_T_ISSUED): ballot sum while a protocol counts */
	const struct parent *par;
};

static inline struct pview pview_of(const struct bal_layout *l, const struct bal_delta *dl)
{
	bal_require(dl->precinct < l->d->nprecincts);
	const struct pslot *ps = &l->prec[dl->precinct];
	return (struct pview){dl->precinct,
	                      ps->base,
	                      ps->bsize,
	                      shadow_of(ps, 0),
	                      shadow_of(ps, BAL_T_ISSUED) - BAL_T_ISSUED,
	                      l->parents + ps->parents};
}

/* Block offset of entry `i`, checked to be one of the precinct's slots. */
static uint32_t entry_offset(const struct pview *v, const struct bal_delta *dl, uint32_t i)
{
	const uint32_t s = dl->e[i].slot;
	bal_require(s >= v->base && s - v->base < v->bsize);
	return s - v->base;
}

/* BAL_EOVERFLOW naming the quantity at offset `o` and the level ('p'recinct,
 * 's'hadow, 'd'istrict or 'n'ational) that would overflow. */
__attribute__((cold)) static int overflow_at(const struct bal_layout *l, const struct pview *v, uint32_t o, char level,
                                             char *why, size_t whylen)
{
	const struct bal_defn *d = l->d;
	const struct bal_precinct *pr = &d->precincts[v->p];
	char what[64];
	name_offset(l, v->p, o, what, sizeof(what));
	switch (level) {
	case 'p': return bal_fail(why, whylen, BAL_EOVERFLOW, "%s at precinct %u would overflow 64 bits", what, pr->id);
	case 's':
		return bal_fail(why, whylen, BAL_EOVERFLOW, "%s ballot sum at precinct %u would overflow 64 bits", what,
		                pr->id);
	case 'd':
		return bal_fail(why, whylen, BAL_EOVERFLOW, "%s district %u total would overflow 64 bits", what,
		                d->districts[pr->district].id);
	default: return bal_fail(why, whylen, BAL_EOVERFLOW, "%s national total would overflow 64 bits", what);
	}
}

/* Adding `add` at offset `o` to E (if `with_precinct`) and both aggregates:
 * 0 or BAL_EOVERFLOW naming the first level that would overflow. */
static int check_add(const struct bal_layout *l, const uint64_t *ctr, const struct pview *v, uint32_t o, uint64_t add,
                     bool with_precinct, char *why, size_t whylen)
{
	if (with_precinct && would_overflow(ctr, v->base + o, add))
		return overflow_at(l, v, o, 'p', why, whylen);
	if (would_overflow(ctr, v->par[o].district, add))
		return overflow_at(l, v, o, 'd', why, whylen);
	if (would_overflow(ctr, v->par[o].total, add))
		return overflow_at(l, v, o, 'n', why, whylen);
	return 0;
}

/* The globals that one more batch of precinct v touches, `batches` being
 * already raised by `headroom` (see bal_tally_check_headroom(); with headroom
 * the precinct may have reported since `ctr`, so that count is always checked). */
static inline int check_globals(const struct bal_layout *l, const uint64_t *ctr, const struct pview *v,
                                uint64_t batches, uint64_t headroom, char *why, size_t whylen)
{
	if (would_overflow(ctr, l->globals + BAL_G_BATCHES, batches))
		return bal_fail(why, whylen, BAL_EOVERFLOW, "global batch count would overflow 64 bits");
	if ((headroom || (batches && ld(ctr, v->base + BAL_T_BATCHES) == 0)) &&
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
static int check_replace(const struct bal_layout *l, const uint64_t *ctr, const struct pview *v,
                         const struct bal_delta *dl, char *why, size_t whylen)
{
	for (uint32_t i = 0; i < dl->n; i++) {
		const uint32_t o = entry_offset(v, dl, i);
		bal_require(o >= BAL_T_ISSUED);
		const uint64_t nv = dl->e[i].add, old = ld(ctr, v->base + o);
		if (nv >= old) {
			int err = check_add(l, ctr, v, o, nv - old, false, why, whylen);
			if (err)
				return err;
			continue;
		}
		const uint32_t agg[2] = {v->par[o].district, v->par[o].total};
		for (int a = 0; a < 2; a++) {
			if (ld(ctr, agg[a]) >= old - nv)
				continue;
			char what[64];
			name_offset(l, v->p, o, what, sizeof(what));
			const struct bal_precinct *pr = &l->d->precincts[v->p];
			return bal_fail(
			        why, whylen, BAL_ECORRUPT,
			        "%s %s total %llu is below the %llu precinct %u contributes to it: the counters "
			        "are inconsistent",
			        what, a == 0 ? "district" : "national", (unsigned long long)ld(ctr, agg[a]),
			        (unsigned long long)old, pr->id);
		}
	}
	return 0;
}

static int check_protocol(const struct bal_layout *l, const uint64_t *ctr, const struct pview *v,
                          const struct bal_delta *dl, char *why, size_t whylen)
{
	bal_require(dl->seq >= 1);
	int err = check_add(l, ctr, v, BAL_T_BATCHES, 1, true, why, whylen);
	if (!err)
		err = check_globals(l, ctr, v, 1, 0, why, whylen);
	if (!err && dl->seq > ld(ctr, v->meta + BAL_T_BATCHES))
		err = check_replace(l, ctr, v, dl, why, whylen);
	return err;
}

/* The hot path: three comparisons per entry; check_add() names the failure. */
static inline bool add_fits(const uint64_t *ctr, const struct pview *v, uint32_t o, uint64_t add)
{
	const struct parent pa = v->par[o];
	return !would_overflow(ctr, v->base + o, add) && !would_overflow(ctr, pa.district, add) &&
	       !would_overflow(ctr, pa.total, add);
}

/* An ADD delta, each amount raised by `headroom` (see bal_tally_check_headroom()). */
static int check_add_delta(const struct bal_layout *l, const uint64_t *ctr, const struct pview *v,
                           const struct bal_delta *dl, uint64_t headroom, char *why, size_t whylen)
{
	/* With a protocol counted, B lives in the shadow slots and the totals
	 * only see the batch and ballot counts. */
	const bool shadowed = ld(ctr, v->meta + BAL_T_BATCHES) != 0;
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
				return overflow_at(l, v, o, 's', why, whylen);
		} else if (__builtin_expect(!add_fits(ctr, v, o, add), 0)) {
			return check_add(l, ctr, v, o, add, true, why, whylen);
		}
	}
	return check_globals(l, ctr, v, batches, headroom, why, whylen);
}

int bal_tally_check(const struct bal_layout *l, const uint64_t *ctr, const struct bal_delta *dl, char *why,
                    size_t whylen)
{
	const struct pview v = pview_of(l, dl);
	if (dl->kind == BAL_DELTA_PROTOCOL)
		return check_protocol(l, ctr, &v, dl, why, whylen);
	return check_add_delta(l, ctr, &v, dl, 0, why, whylen);
}

int bal_tally_check_headroom(const struct bal_layout *l, const uint64_t *ctr, const struct bal_delta *dl,
                             uint64_t headroom, char *why, size_t whylen)
{
	bal_require(dl->kind == BAL_DELTA_ADD);
	const struct pview v = pview_of(l, dl);
	return check_add_delta(l, ctr, &v, dl, headroom, why, whylen);
}

static inline void add_to(uint64_t *ctr, uint32_t s, uint64_t add)
{
	st(ctr, s, ld(ctr, s) + add);
}

static inline void sub_from(uint64_t *ctr, uint32_t s, uint64_t sub)
{
	st(ctr, s, ld(ctr, s) - sub);
}

/* Adds to E at offset o and to both aggregates it feeds. */
static inline void add_level3(uint64_t *ctr, const struct pview *v, uint32_t o, uint64_t add)
{
	const struct parent pa = v->par[o];
	add_to(ctr, v->base + o, add);
	add_to(ctr, pa.district, add);
	add_to(ctr, pa.total, add);
}

/* Moves BAL_G_DISCREPANCIES when precinct v's count of differing slots
 * crosses zero. */
static void note_mismatch(const struct bal_layout *l, uint64_t *ctr, const struct pview *v, uint64_t before,
                          uint64_t after)
{
	st(ctr, v->meta + BAL_T_BALLOTS, after);
	if (!before && after)
		add_to(ctr, l->globals + BAL_G_DISCREPANCIES, 1);
	else if (before && !after)
		sub_from(ctr, l->globals + BAL_G_DISCREPANCIES, 1);
}

/* An ADD delta to a precinct with a protocol: counts reach the totals, the
 * rest goes to B in the shadow block. */
static void apply_shadowed(const struct bal_layout *l, uint64_t *ctr, const struct pview *v, const struct bal_delta *dl)
{
	const uint64_t before = ld(ctr, v->meta + BAL_T_BALLOTS);
	uint64_t differ = before;
	for (uint32_t i = 0; i < dl->n; i++) {
		const uint32_t o = dl->e[i].slot - v->base;
		if (o < BAL_T_ISSUED) {
			add_level3(ctr, v, o, dl->e[i].add);
			continue;
		}
		const uint64_t p = ld(ctr, v->base + o), b = ld(ctr, v->bsum + o);
		const uint64_t nb = b + dl->e[i].add;
		st(ctr, v->bsum + o, nb);
		if (p == b && p != nb)
			differ++;
		else if (p != b && p == nb)
			differ--;
	}
	note_mismatch(l, ctr, v, before, differ);
}

/* A PROTOCOL delta: one more batch; if newer than the stored protocol, E
 * becomes P_new and the aggregates move by the difference. */
static void apply_protocol(const struct bal_layout *l, uint64_t *ctr, const struct pview *v, const struct bal_delta *dl)
{
	add_level3(ctr, v, BAL_T_BATCHES, 1);
	const uint64_t stored = ld(ctr, v->meta + BAL_T_BATCHES);
	if (dl->seq <= stored)
		return; /* older (or the same): journaled, counted as a batch, replaces nothing */
	/* Every slot from BAL_T_ISSUED on has exactly one entry (fold guarantees it). */
	bal_require(dl->n == v->bsize - BAL_T_ISSUED);
	for (uint32_t i = 0; i < dl->n; i++) {
		const uint32_t o = dl->e[i].slot - v->base;
		const struct parent pa = v->par[o];
		const uint64_t nv = dl->e[i].add, old = ld(ctr, v->base + o);
		if (!stored)
			st(ctr, v->bsum + o, old); /* first protocol: B moves to the shadow block */
		if (nv >= old) {
			add_to(ctr, pa.district, nv - old);
			add_to(ctr, pa.total, nv - old);
		} else {
			sub_from(ctr, pa.district, old - nv);
			sub_from(ctr, pa.total, old - nv);
		}
		st(ctr, v->base + o, nv);
	}
	st(ctr, v->meta + BAL_T_BATCHES, dl->seq);
	if (!stored)
		add_to(ctr, l->globals + BAL_G_PROTOCOLS, 1);
	uint64_t differ = 0;
	for (uint32_t o = BAL_T_ISSUED; o < v->bsize; o++)
		differ += ld(ctr, v->base + o) != ld(ctr, v->bsum + o);
	note_mismatch(l, ctr, v, ld(ctr, v->meta + BAL_T_BALLOTS), differ);
}

/*
 * Globals are derived from the precinct's BAL_T_BATCHES slot rather than
 * carried in the delta: BAL_G_BATCHES grows by whatever that slot grew by, and
 * BAL_G_PRECINCTS_REPORTING by one when it went from 0 to nonzero.
 */
void bal_tally_apply(const struct bal_layout *l, uint64_t *ctr, const struct bal_delta *dl)
{
	const struct pview v = pview_of(l, dl);
	const uint64_t before = ld(ctr, v.base + BAL_T_BATCHES);

	if (dl->kind == BAL_DELTA_PROTOCOL) {
		apply_protocol(l, ctr, &v, dl);
	} else if (ld(ctr, v.meta + BAL_T_BATCHES)) {
		apply_shadowed(l, ctr, &v, dl);
	} else {
		/* The hot path: no protocol, three adds per entry. */
		for (uint32_t i = 0; i < dl->n; i++)
			add_level3(ctr, &v, dl->e[i].slot - v.base, dl->e[i].add);
	}
	const uint64_t after = ld(ctr, v.base + BAL_T_BATCHES);
	if (after != before) {
		add_to(ctr, l->globals + BAL_G_BATCHES, after - before);
		if (before == 0)
			add_to(ctr, l->globals + BAL_G_PRECINCTS_REPORTING, 1);
	}
}

/* ---- snapshot slices and rebuilt aggregates -------------------------------- */

/* The slots of precincts [first, end): their blocks (with the two shadows
 * before each) and their ballot sums, two contiguous runs. */
static void slice_runs(const struct bal_layout *l, uint32_t first, uint32_t end, uint32_t run[2][2])
{
	const struct pslot *a = &l->prec[first], *z = &l->prec[end - 1];
	run[0][0] = a->base - BAL_T_ISSUED;
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
	const size_t agg = bal_layout_first_aggregate(l);
	memset(ctr + agg, 0, (l->nslots - agg) * sizeof(*ctr));
	uint64_t *g = ctr + l->globals;
	bool overflow = false;
	for (uint32_t p = 0; p < d->nprecincts; p++) {
		const struct pslot *ps = &l->prec[p];
		const struct parent *par = l->parents + ps->parents;
		const uint64_t *e = ctr + ps->base;
		for (uint32_t o = 0; o < ps->bsize; o++) {
			overflow |= __builtin_add_overflow(ctr[par[o].district], e[o], &ctr[par[o].district]);
			overflow |= __builtin_add_overflow(ctr[par[o].total], e[o], &ctr[par[o].total]);
		}
		overflow |= __builtin_add_overflow(g[BAL_G_BATCHES], e[BAL_T_BATCHES], &g[BAL_G_BATCHES]);
		g[BAL_G_PRECINCTS_REPORTING] += e[BAL_T_BATCHES] != 0;
		g[BAL_G_PROTOCOLS] += ctr[shadow_of(ps, BAL_T_BATCHES)] != 0;
		g[BAL_G_DISCREPANCIES] += ctr[shadow_of(ps, BAL_T_BALLOTS)] != 0;
	}
	return overflow ? BAL_EOVERFLOW : 0;
}
