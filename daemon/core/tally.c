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
 * All precincts of a district therefore share one block shape, and a contest
 * sits at the same offset (`coff[c]`) in the block of every precinct that
 * votes in it. For each district the layout keeps, per block offset, the two
 * aggregate slots that offset feeds (district-level and national-level), so
 * apply is three adds per delta entry with no search.
 *
 * After the precinct blocks come, in order: the (contest, district) choice
 * slots, the contest national totals, the district turnout slots, the national
 * turnout slots and the globals. Slot numbers fit uint32 (checked at build).
 *
 * Fold and apply never allocate; they touch only the layout, the batch and
 * the caller's delta and counter storage.
 */
#include "tally.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* The two aggregate slots fed by one precinct-block offset. */
struct parent {
	uint32_t district; /* (contest, district, choice) slot, or district turnout slot */
	uint32_t total;    /* contest national total slot, or national turnout slot */
};

/* Per precinct: where its block starts and where its district's parent map starts. */
struct pslot {
	uint32_t base;
	uint32_t parents; /* index into bal_layout.parents */
};

struct bal_layout {
	const struct bal_defn *d;
	size_t nslots;
	size_t delta_max;
	struct pslot *prec;   /* [nprecincts] */
	uint32_t *coff;       /* [ncontests] offset of the contest in the block of a precinct voting in it */
	uint32_t *dbase;      /* [ncontests] first (contest, district, choice) slot */
	uint32_t *cbase;      /* [ncontests] first national-total slot */
	uint32_t *bsize;      /* [ndistricts] block size of the district's precincts */
	uint32_t *pmap;       /* [ndistricts] index of the district's first entry in `parents` */
	struct parent *parents;
	uint32_t dturnout;    /* first district turnout slot */
	uint32_t tturnout;    /* first national turnout slot */
	uint32_t globals;     /* first global slot */
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
		l->prec[p].base = (uint32_t)next;
		if (!grow(&next, l->bsize[d->precincts[p].district]))
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

/* ---- fold ------------------------------------------------------------------- */

static int fail(int err, char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int fail(int err, char *why, size_t whylen, const char *fmt, ...)
{
	if (why && whylen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	return err;
}

/*
 * The contest of batch entry `what`[i] (a ballot column or a tally): known,
 * on precinct p's ballot and not named by an earlier entry. Entries are read
 * through the address of entry 0's contest_id and the entry size, so columns
 * and tallies share this check.
 */
struct entries {
	const char *what;    /* "ballots" or "tallies", for error texts */
	const char *id0;     /* &entry[0].contest_id */
	size_t stride;       /* sizeof(entry) */
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
		return fail(BAL_EINVALID, why, whylen, "%s[%zu].contest_id %u is not in the definition", es->what, i, id);
	if (!bal_defn_votes_in(d, p, (uint32_t)c)) {
		const struct bal_precinct *pr = &d->precincts[p];
		return fail(BAL_EINVALID, why, whylen, "%s[%zu].contest_id %u is not on the ballot of precinct %u (district %u)",
			    es->what, i, id, pr->id, d->districts[pr->district].id);
	}
	for (size_t j = 0; j < i; j++)
		if (entry_id(es, j) == id)
			return fail(BAL_EINVALID, why, whylen, "%s[%zu]: contest %u appears twice (also %s[%zu])", es->what, i,
				    id, es->what, j);
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

static int reserve(const struct bal_delta *out, uint32_t n, uint32_t more, char *why, size_t whylen)
{
	if ((uint64_t)n + more > out->cap)
		return fail(-ENOBUFS, why, whylen, "delta capacity %u is below the %llu entries this batch needs", out->cap,
			    (unsigned long long)n + more);
	return 0;
}

static int fold_columns(const struct bal_defn *d, const struct bal_layout *l, const struct bal_batch *b, uint32_t p,
			struct bal_delta *out, uint32_t *n, char *why, size_t whylen)
{
	const uint32_t base = l->prec[p].base;
	const struct entries es = { "ballots", b->ncolumns ? (const char *)&b->columns[0].contest_id : NULL,
				    sizeof(*b->columns) };
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
		for (size_t j = 0; j < col->n; j++) {
			if (ch[j] >= nch)
				return fail(BAL_EINVALID, why, whylen,
					    "ballots[%zu].choices[%zu] = %u is out of range (contest %u has %u choices)", i, j,
					    ch[j], col->contest_id, nch);
			e[ch[j]].add++;
		}
		uint32_t kept = 0;
		for (uint32_t k = 0; k < nch; k++)
			if (e[k].add)
				e[kept++] = e[k];
		*n += kept;
	}
	return 0;
}

static int fold_tallies(const struct bal_defn *d, const struct bal_layout *l, const struct bal_batch *b, uint32_t p,
			struct bal_delta *out, uint32_t *n, char *why, size_t whylen)
{
	const uint32_t base = l->prec[p].base;
	const struct entries es = { "tallies", b->ntallies ? (const char *)&b->tallies[0].contest_id : NULL,
				    sizeof(*b->tallies) };
	for (size_t i = 0; i < b->ntallies; i++) {
		const struct bal_ctally *t = &b->tallies[i];
		int c = resolve_contest(d, p, &es, i, why, whylen);
		if (c < 0)
			return c;
		const uint32_t nch = d->contests[c].nchoices;
		if (t->n != nch)
			return fail(BAL_EINVALID, why, whylen, "tallies[%zu].counts has %zu entries, contest %u has %u choices",
				    i, t->n, t->contest_id, nch);
		uint64_t sum = 0;
		for (uint32_t k = 0; k < nch; k++)
			if (__builtin_add_overflow(sum, t->counts[k], &sum))
				return fail(BAL_EOVERFLOW, why, whylen, "tallies[%zu] sum overflows 64 bits (at counts[%u] = %llu)",
					    i, k, (unsigned long long)t->counts[k]);
		int err = reserve(out, *n, nch, why, whylen);
		if (err)
			return err;
		for (uint32_t k = 0; k < nch; k++)
			put(out->e, n, base + l->coff[c] + k, t->counts[k]);
	}
	return 0;
}

int bal_tally_fold(const struct bal_defn *d, const struct bal_layout *l, const struct bal_batch *b,
		   struct bal_delta *out, char *why, size_t whylen)
{
	int32_t pi = bal_defn_precinct(d, b->precinct_id);
	if (pi < 0)
		return fail(BAL_EINVALID, why, whylen, "precinct_id %u is not in the definition", b->precinct_id);
	const uint32_t p = (uint32_t)pi;
	if (b->seq < 1)
		return fail(BAL_EINVALID, why, whylen, "seq must be >= 1 (got %llu)", (unsigned long long)b->seq);

	size_t nballots = b->ncolumns ? b->columns[0].n : 0;
	switch (b->kind) {
	case BAL_KIND_BALLOTS:
		if (b->ntallies)
			return fail(BAL_EINVALID, why, whylen, "a BALLOTS batch may not carry tallies (got %zu tallies)",
				    b->ntallies);
		for (size_t i = 1; i < b->ncolumns; i++)
			if (b->columns[i].n != nballots)
				return fail(BAL_EINVALID, why, whylen,
					    "ballots[%zu] has %zu entries, ballots[0] has %zu (column lengths differ)", i,
					    b->columns[i].n, nballots);
		if (!nballots && !b->has_turnout)
			return fail(BAL_EINVALID, why, whylen, "batch is empty (no ballots and no turnout)");
		break;
	case BAL_KIND_TALLY:
		if (b->ncolumns)
			return fail(BAL_EINVALID, why, whylen, "a TALLY batch may not carry ballots (got %zu ballot columns)",
				    b->ncolumns);
		if (!b->ntallies && !b->has_turnout)
			return fail(BAL_EINVALID, why, whylen, "batch is empty (no tallies and no turnout)");
		break;
	case BAL_KIND_PROTOCOL:
		return fail(BAL_EUNSUPPORTED, why, whylen, "PROTOCOL batches are not supported yet");
	default:
		return fail(BAL_EINVALID, why, whylen, "kind %d is not BALLOTS (0), TALLY (1) or PROTOCOL (2)", (int)b->kind);
	}

	const uint32_t base = l->prec[p].base;
	uint32_t n = 0;
	int err = reserve(out, 0, BAL_T_NFIELDS, why, whylen);
	if (err)
		return err;
	put(out->e, &n, base + BAL_T_BATCHES, 1);
	if (b->kind == BAL_KIND_BALLOTS)
		put(out->e, &n, base + BAL_T_BALLOTS, nballots);
	if (b->has_turnout) {
		put(out->e, &n, base + BAL_T_ISSUED, b->ballots_issued);
		put(out->e, &n, base + BAL_T_CAST, b->ballots_cast);
		put(out->e, &n, base + BAL_T_SPOILED, b->ballots_spoiled);
	}
	if (b->kind == BAL_KIND_BALLOTS)
		err = fold_columns(d, l, b, p, out, &n, why, whylen);
	else
		err = fold_tallies(d, l, b, p, out, &n, why, whylen);
	if (err)
		return err;
	out->precinct = p;
	out->n = n;
	return 0;
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

int bal_tally_check(const struct bal_layout *l, const uint64_t *ctr, const struct bal_delta *dl, char *why,
		    size_t whylen)
{
	const struct bal_defn *d = l->d;
	bal_require(dl->precinct < d->nprecincts);
	const struct pslot ps = l->prec[dl->precinct];
	const struct parent *par = l->parents + ps.parents;
	const uint32_t bsize = l->bsize[d->precincts[dl->precinct].district];
	uint64_t batches = 0;

	for (uint32_t i = 0; i < dl->n; i++) {
		const uint32_t s = dl->e[i].slot;
		const uint64_t add = dl->e[i].add;
		bal_require(s >= ps.base && s - ps.base < bsize);
		const uint32_t o = s - ps.base;
		const char *level = NULL;
		if (o == BAL_T_BATCHES)
			batches = add;
		if (would_overflow(ctr, s, add))
			level = "precinct";
		else if (would_overflow(ctr, par[o].district, add))
			level = "district";
		else if (would_overflow(ctr, par[o].total, add))
			level = "national";
		if (!level)
			continue;
		char what[64];
		name_offset(l, dl->precinct, o, what, sizeof(what));
		const struct bal_precinct *pr = &d->precincts[dl->precinct];
		if (level[0] == 'p')
			return fail(BAL_EOVERFLOW, why, whylen, "%s at precinct %u would overflow 64 bits", what, pr->id);
		if (level[0] == 'd')
			return fail(BAL_EOVERFLOW, why, whylen, "%s district %u total would overflow 64 bits", what,
				    d->districts[pr->district].id);
		return fail(BAL_EOVERFLOW, why, whylen, "%s national total would overflow 64 bits", what);
	}
	if (would_overflow(ctr, l->globals + BAL_G_BATCHES, batches))
		return fail(BAL_EOVERFLOW, why, whylen, "global batch count would overflow 64 bits");
	if (batches && ld(ctr, ps.base + BAL_T_BATCHES) == 0 && would_overflow(ctr, l->globals + BAL_G_PRECINCTS_REPORTING, 1))
		return fail(BAL_EOVERFLOW, why, whylen, "precincts reporting would overflow 64 bits");
	return 0;
}

static inline void add_to(uint64_t *ctr, uint32_t s, uint64_t add)
{
	__atomic_store_n(&ctr[s], ld(ctr, s) + add, __ATOMIC_RELAXED);
}

/*
 * Globals are derived from the precinct's BAL_T_BATCHES slot rather than
 * carried in the delta: BAL_G_BATCHES grows by whatever that slot grew by, and
 * BAL_G_PRECINCTS_REPORTING by one when it went from 0 to nonzero.
 */
void bal_tally_apply(const struct bal_layout *l, uint64_t *ctr, const struct bal_delta *dl)
{
	const struct pslot ps = l->prec[dl->precinct];
	const struct parent *par = l->parents + ps.parents;
	const uint64_t before = ld(ctr, ps.base + BAL_T_BATCHES);

	for (uint32_t i = 0; i < dl->n; i++) {
		const uint32_t s = dl->e[i].slot;
		const uint64_t add = dl->e[i].add;
		const struct parent pa = par[s - ps.base];
		add_to(ctr, s, add);
		add_to(ctr, pa.district, add);
		add_to(ctr, pa.total, add);
	}
	const uint64_t after = ld(ctr, ps.base + BAL_T_BATCHES);
	if (after != before) {
		add_to(ctr, l->globals + BAL_G_BATCHES, after - before);
		if (before == 0)
			add_to(ctr, l->globals + BAL_G_PRECINCTS_REPORTING, 1);
	}
}
