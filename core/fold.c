/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Counters, fold: validates one decoded batch against the definition,
 * including the plausibility bounds of one batch (its precinct's
 * max_voters, the definition's max_seq), and folds it into a delta of
 * precinct-level slots (tally.h, bal_tally_fold()). The bounds of a
 * precinct's sums over several batches need the counters: check.c.
 * Reads only the definition, the layout and the batch: never the counters,
 * never the signature (the caller verifies it), and it never allocates. It
 * must not depend on check, apply or slices, nor on anything beyond core and
 * libc.
 */
#include "core/tally_int.h"

#include "core/reason.h"

#include <errno.h>
#include <string.h>

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

/* TALLY: nonzero counts as adds. PROTOCOL (`absolute`): every count, zeros
 * included. Each tally sums to at most the precinct's max_voters. */
static int fold_tallies(const struct bal_defn *d, const struct bal_layout *l, const struct bal_batch *b, uint32_t p,
                        bool absolute, struct bal_delta *out, uint32_t *n, char *why, size_t whylen)
{
	const uint32_t base = l->prec[p].base;
	const struct bal_precinct *pr = &d->precincts[p];
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
		if (sum > pr->max_voters)
			return bal_fail(why, whylen, BAL_EINVALID,
			                "precinct %u: tallies[%zu] (contest %u) counts %llu votes, above its %llu "
			                "registered voters + %llu margin",
			                pr->id, i, t->contest_id, (unsigned long long)sum,
			                (unsigned long long)pr->registered_voters,
			                (unsigned long long)pr->registration_margin);
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

/*
 * The bounds of one batch of a bounded precinct, beside its tallies' sums
 * (fold_tallies()): at most max_voters ballots, and each turnout field at most
 * max_voters, with neither the cast nor the spoiled ballots above the issued
 * ones. Whether spoiled ballots are part of the cast ones is not fixed by the
 * wire format, so their sum is not compared with the issued ones.
 */
static int within_bound(const struct bal_precinct *pr, const struct bal_batch *b, size_t nballots, char *why,
                        size_t whylen)
{
	const unsigned long long reg = pr->registered_voters, margin = pr->registration_margin;
	if (b->kind == BAL_KIND_BALLOTS && nballots > pr->max_voters)
		return bal_fail(why, whylen, BAL_EINVALID,
		                "precinct %u: %zu ballots in this batch exceed its %llu registered voters + %llu "
		                "margin",
		                pr->id, nballots, reg, margin);
	if (!b->has_turnout)
		return 0;
	const struct {
		const char *name;
		uint64_t value;
	} f[] = {{"ballots_issued", b->ballots_issued},
	         {"ballots_cast", b->ballots_cast},
	         {"ballots_spoiled", b->ballots_spoiled}};
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		if (f[i].value > pr->max_voters)
			return bal_fail(why, whylen, BAL_EINVALID,
			                "precinct %u: turnout.%s %llu exceeds its %llu registered voters + %llu margin",
			                pr->id, f[i].name, (unsigned long long)f[i].value, reg, margin);
		if (i && f[i].value > b->ballots_issued)
			return bal_fail(why, whylen, BAL_EINVALID,
			                "precinct %u: turnout.%s %llu exceeds turnout.ballots_issued %llu", pr->id,
			                f[i].name, (unsigned long long)f[i].value,
			                (unsigned long long)b->ballots_issued);
	}
	return 0;
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
	if (b->seq > d->max_seq)
		return bal_fail(why, whylen, BAL_EINVALID, "precinct %u: seq %llu is above limits.max_seq %llu",
		                b->precinct_id, (unsigned long long)b->seq, (unsigned long long)d->max_seq);

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

	const struct bal_precinct *pr = &d->precincts[p];
	int err = pr->unbounded ? 0 : within_bound(pr, b, nballots, why, whylen);
	if (err)
		return err;
	const uint32_t base = l->prec[p].base;
	const bool protocol = b->kind == BAL_KIND_PROTOCOL;
	uint32_t n = 0;
	err = reserve(out, 0, BAL_T_NFIELDS, why, whylen);
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
