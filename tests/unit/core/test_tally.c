/*
 * Counter tests: the slot layout is a bijection onto [0, nslots), the fold
 * rejects every kind of invalid batch with a precise reason and folds valid
 * ones into the right precinct-level entries, apply keeps every aggregate
 * equal to the sum of its precincts, and check catches overflow at every level.
 */
#include "fixture.h"

#include "defn.h"

#include "params.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static struct bal_defn *D;
static struct bal_layout *L;
static struct bal_delta_entry E[64];
static struct bal_delta DL;

static void setup(void)
{
	fx_load(&D, &L);
	DL = (struct bal_delta){ .precinct = 0, .n = 0, .cap = NELEM(E), .e = E };
}

static void teardown(void)
{
	bal_layout_free(L);
	bal_defn_free(D);
}

static uint32_t pidx(uint32_t id)
{
	int32_t p = bal_defn_precinct(D, id);
	cr_assert_geq(p, 0, "precinct %u not in fixture", id);
	return (uint32_t)p;
}

static uint32_t cidx(uint32_t id)
{
	int32_t c = bal_defn_contest(D, id);
	cr_assert_geq(c, 0, "contest %u not in fixture", id);
	return (uint32_t)c;
}

static uint32_t didx(uint32_t id)
{
	int32_t d = bal_defn_district(D, id);
	cr_assert_geq(d, 0, "district %u not in fixture", id);
	return (uint32_t)d;
}

/* ---- layout ------------------------------------------------------------------ */

static void mark(uint8_t *seen, size_t n, uint32_t slot, const char *what)
{
	cr_assert_lt(slot, n, "%s: slot %u out of range (%zu)", what, slot, n);
	cr_assert_eq(seen[slot], 0, "%s: slot %u handed out twice", what, slot);
	seen[slot] = 1;
}

Test(tally, layout_is_a_bijection, .init = setup, .fini = teardown)
{
	/* Blocks: district 10 = 5 + 8 + 3, district 20 = 5 + 8 + 4, district 30 = 5 + 8;
	 * two precincts each in 10 and 20, one in 30: 32 + 34 + 13 = 79.
	 * District choices 3*8 + 3 + 4 = 31, contest totals 15, district turnout 15,
	 * national turnout 5, globals 2. */
	size_t n = bal_layout_nslots(L);
	cr_assert_eq(n, 147);
	cr_assert_eq(bal_layout_delta_max(L), 17);
	uint8_t *seen = calloc(n, 1);
	for (uint32_t p = 0; p < D->nprecincts; p++) {
		for (uint32_t f = 0; f < BAL_T_NFIELDS; f++)
			mark(seen, n, bal_slot_precinct_turnout(L, p, f), "precinct turnout");
		for (uint32_t c = 0; c < D->ncontests; c++)
			for (uint32_t k = 0; k < D->contests[c].nchoices; k++) {
				uint32_t s = bal_slot_precinct_choice(L, p, c, k);
				if (bal_defn_votes_in(D, p, c))
					mark(seen, n, s, "precinct choice");
				else
					cr_assert_eq(s, BAL_SLOT_NONE);
			}
	}
	for (uint32_t c = 0; c < D->ncontests; c++)
		for (uint32_t k = 0; k < D->contests[c].nchoices; k++) {
			mark(seen, n, bal_slot_contest_choice(L, c, k), "contest total");
			for (uint32_t d = 0; d < D->ndistricts; d++) {
				uint32_t s = bal_slot_district_choice(L, c, d, k);
				if (D->contests[c].district < 0 || (uint32_t)D->contests[c].district == d)
					mark(seen, n, s, "district choice");
				else
					cr_assert_eq(s, BAL_SLOT_NONE);
			}
		}
	for (uint32_t f = 0; f < BAL_T_NFIELDS; f++) {
		mark(seen, n, bal_slot_total_turnout(L, f), "national turnout");
		for (uint32_t d = 0; d < D->ndistricts; d++)
			mark(seen, n, bal_slot_district_turnout(L, d, f), "district turnout");
	}
	for (uint32_t f = 0; f < BAL_G_NFIELDS; f++)
		mark(seen, n, bal_slot_global(L, f), "global");
	for (size_t s = 0; s < n; s++)
		cr_assert_eq(seen[s], 1, "slot %zu is not reachable through any lookup", s);
	free(seen);
}

Test(tally, lookups_reject_out_of_range, .init = setup, .fini = teardown)
{
	uint32_t c1 = cidx(FX_LIST);
	cr_assert_eq(bal_slot_precinct_choice(L, D->nprecincts, c1, 0), BAL_SLOT_NONE);
	cr_assert_eq(bal_slot_precinct_choice(L, 0, D->ncontests, 0), BAL_SLOT_NONE);
	cr_assert_eq(bal_slot_precinct_choice(L, 0, c1, FX_LIST_N), BAL_SLOT_NONE);
	cr_assert_eq(bal_slot_district_choice(L, c1, D->ndistricts, 0), BAL_SLOT_NONE);
	cr_assert_eq(bal_slot_contest_choice(L, c1, FX_LIST_N), BAL_SLOT_NONE);
	cr_assert_eq(bal_slot_precinct_turnout(L, D->nprecincts, BAL_T_CAST), BAL_SLOT_NONE);
	cr_assert_eq(bal_slot_district_turnout(L, D->ndistricts, BAL_T_CAST), BAL_SLOT_NONE);
	cr_assert_eq(bal_slot_total_turnout(L, BAL_T_NFIELDS), BAL_SLOT_NONE);
	cr_assert_eq(bal_slot_global(L, BAL_G_NFIELDS), BAL_SLOT_NONE);
}

/* ---- fold rejections ---------------------------------------------------------- */

static const uint32_t ch3[] = { 0, 1, 2 };
static const uint32_t ch2[] = { 0, 1 };
static const uint32_t ch_bad17[] = { 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 9 };
static const uint64_t cnt8[] = { 1, 2, 3, 4, 5, 6, 7, 8 };
static const uint64_t cnt5[] = { 1, 2, 3, 4, 5 };
static const uint64_t cnt_ovf[] = { UINT64_MAX, 1, 0, 0, 0, 0, 0, 0 };

static const struct bal_column col_list3[] = { { FX_LIST, 3, ch3 } };
static const struct bal_column col_list_unknown[] = { { FX_LIST, 3, ch3 }, { 7, 3, ch3 } };
static const struct bal_column col_list_d20[] = { { FX_LIST, 3, ch3 }, { FX_D20, 3, ch3 } };
static const struct bal_column col_bad_choice[] = { { FX_LIST, NELEM(ch_bad17), ch_bad17 } };
static const struct bal_column col_len_differ[] = { { FX_LIST, 3, ch3 }, { FX_D10, 2, ch2 } };
static const struct bal_column col_twice[] = { { FX_LIST, 3, ch3 }, { FX_LIST, 3, ch3 } };
static const struct bal_column col_zero_len[] = { { FX_LIST, 0, ch3 }, { FX_D10, 0, ch3 } };
static const struct bal_ctally t_list8[] = { { FX_LIST, 8, cnt8 } };
static const struct bal_ctally t_list5[] = { { FX_LIST, 5, cnt5 } };
static const struct bal_ctally t_twice[] = { { FX_LIST, 8, cnt8 }, { FX_LIST, 8, cnt8 } };
static const struct bal_ctally t_unknown[] = { { 55, 8, cnt8 } };
static const struct bal_ctally t_d10[] = { { FX_D10, 3, cnt8 } };
static const struct bal_ctally t_ovf[] = { { FX_LIST, 8, cnt_ovf } };

struct fold_case {
	const char *name;
	struct bal_batch b;
	int err;
	const char *why;
};

#define BATCH(k, pid, s) .precinct_id = (pid), .seq = (s), .kind = (k)
#define BALLOTS_SEQ(pid, s, cols) BATCH(BAL_KIND_BALLOTS, pid, s), .ncolumns = NELEM(cols), .columns = (cols)
#define TALLY_SEQ(pid, s, ts) BATCH(BAL_KIND_TALLY, pid, s), .ntallies = NELEM(ts), .tallies = (ts)
#define BALLOTS(pid, cols) BALLOTS_SEQ(pid, 1, cols)
#define TALLY(pid, ts) TALLY_SEQ(pid, 1, ts)

static const struct fold_case fold_cases[] = {
		{ "unknown precinct", { BALLOTS(99999, col_list3) }, BAL_EINVALID, "precinct_id 99999 is not in the definition" },
		{ "seq zero", { BALLOTS_SEQ(12, 0, col_list3) }, BAL_EINVALID, "seq must be >= 1 (got 0)" },
		{ "unknown contest", { BALLOTS(12, col_list_unknown) }, BAL_EINVALID,
		  "ballots[1].contest_id 7 is not in the definition" },
		{ "contest not on ballot", { BALLOTS(12, col_list_d20) }, BAL_EINVALID,
		  "ballots[1].contest_id 102 is not on the ballot of precinct 12 (district 10)" },
		{ "choice out of range", { BALLOTS(12, col_bad_choice) }, BAL_EINVALID,
		  "ballots[0].choices[17] = 9 is out of range (contest 1 has 8 choices)" },
		{ "column lengths differ", { BALLOTS(12, col_len_differ) }, BAL_EINVALID,
		  "ballots[1] has 2 entries, ballots[0] has 3 (column lengths differ)" },
		{ "column twice", { BALLOTS(12, col_twice) }, BAL_EINVALID,
		  "ballots[1]: contest 1 appears twice (also ballots[0])" },
		{ "tally length", { TALLY(12, t_list5) }, BAL_EINVALID,
		  "tallies[0].counts has 5 entries, contest 1 has 8 choices" },
		{ "tally twice", { TALLY(12, t_twice) }, BAL_EINVALID,
		  "tallies[1]: contest 1 appears twice (also tallies[0])" },
		{ "tally unknown contest", { TALLY(12, t_unknown) }, BAL_EINVALID,
		  "tallies[0].contest_id 55 is not in the definition" },
		{ "tally not on ballot", { TALLY(30, t_d10) }, BAL_EINVALID,
		  "tallies[0].contest_id 101 is not on the ballot of precinct 30 (district 30)" },
		{ "tally carrying ballots", { TALLY(12, t_list8), .ncolumns = 1, .columns = col_list3 }, BAL_EINVALID,
		  "a TALLY batch may not carry ballots (got 1 ballot columns)" },
		{ "ballots carrying tallies", { BALLOTS(12, col_list3), .ntallies = 1, .tallies = t_list8 }, BAL_EINVALID,
		  "a BALLOTS batch may not carry tallies (got 1 tallies)" },
		{ "empty ballots", { .precinct_id = 12, .seq = 1, .kind = BAL_KIND_BALLOTS }, BAL_EINVALID,
		  "batch is empty (no ballots and no turnout)" },
		{ "zero-length columns", { BALLOTS(12, col_zero_len) }, BAL_EINVALID,
		  "batch is empty (no ballots and no turnout)" },
		{ "empty tally", { .precinct_id = 12, .seq = 1, .kind = BAL_KIND_TALLY }, BAL_EINVALID,
		  "batch is empty (no tallies and no turnout)" },
		{ "protocol", { BATCH(BAL_KIND_PROTOCOL, 12, 1), .ntallies = 1, .tallies = t_list8 }, BAL_EUNSUPPORTED,
		  "PROTOCOL batches are not supported yet" },
		{ "unknown kind", { BATCH((enum bal_kind)5, 12, 1), .ntallies = 1, .tallies = t_list8 }, BAL_EINVALID,
		  "kind 5 is not BALLOTS (0), TALLY (1) or PROTOCOL (2)" },
		{ "tally sum overflow", { TALLY(12, t_ovf) }, BAL_EOVERFLOW,
		  "tallies[0] sum overflows 64 bits (at counts[1] = 1)" },
};

INDEX_PARAMS(tally, fold_rejects, fold_cases)

ParameterizedTest(size_t *ix, tally, fold_rejects, .init = setup, .fini = teardown)
{
	const struct fold_case *c = &fold_cases[*ix];
	char why[256] = "";
	DL.n = 1234;
	DL.precinct = 4321;
	int err = bal_tally_fold(D, L, &c->b, &DL, why, sizeof(why));
	cr_assert_eq(err, c->err, "%s: got %d (%s)", c->name, err, why);
	cr_assert_str_eq(why, c->why, "%s", c->name);
	cr_assert_eq(DL.n, 1234, "%s: delta written on failure", c->name);
	cr_assert_eq(DL.precinct, 4321, "%s: delta written on failure", c->name);
}

Test(tally, fold_reports_small_delta_storage, .init = setup, .fini = teardown)
{
	struct bal_batch b = { TALLY(12, t_list8) };
	char why[256] = "";
	DL.cap = 8;
	cr_assert_eq(bal_tally_fold(D, L, &b, &DL, why, sizeof(why)), -ENOBUFS);
	cr_assert_str_eq(why, "delta capacity 8 is below the 9 entries this batch needs");
	DL.cap = (uint32_t)bal_layout_delta_max(L);
	cr_assert_eq(bal_tally_fold(D, L, &b, &DL, why, sizeof(why)), 0, "%s", why);
}

Test(tally, fold_tolerates_missing_why, .init = setup, .fini = teardown)
{
	struct bal_batch b = { BALLOTS(99999, col_list3) };
	cr_assert_eq(bal_tally_fold(D, L, &b, &DL, NULL, 0), BAL_EINVALID);
}

/* ---- fold results ------------------------------------------------------------- */

/* Expected (slot, add) pairs must equal the delta as a set, each slot once. */
static void assert_delta(const struct bal_delta *dl, const struct bal_delta_entry *want, size_t nwant)
{
	cr_assert_eq(dl->n, nwant, "delta has %u entries, expected %zu", dl->n, nwant);
	for (size_t i = 0; i < nwant; i++) {
		size_t hits = 0;
		for (uint32_t j = 0; j < dl->n; j++)
			if (dl->e[j].slot == want[i].slot) {
				hits++;
				cr_assert_eq(dl->e[j].add, want[i].add, "slot %u: add %llu, expected %llu", want[i].slot,
					     (unsigned long long)dl->e[j].add, (unsigned long long)want[i].add);
			}
		cr_assert_eq(hits, 1, "slot %u appears %zu times", want[i].slot, hits);
	}
}

Test(tally, fold_ballots_counts_each_choice, .init = setup, .fini = teardown)
{
	static const uint32_t list[] = { 0, 0, 3, 7, 7 };
	static const uint32_t d10[] = { 2, 2, 2, 1, 0 };
	static const struct bal_column cols[] = { { FX_LIST, 5, list }, { FX_D10, 5, d10 } };
	struct bal_batch b = { BALLOTS_SEQ(12, 3, cols), .has_turnout = true, .ballots_issued = 6,
			       .ballots_cast = 5, .ballots_spoiled = 0 };
	char why[256] = "";
	cr_assert_eq(bal_tally_fold(D, L, &b, &DL, why, sizeof(why)), 0, "%s", why);
	uint32_t p = pidx(12), c1 = cidx(FX_LIST), c10 = cidx(FX_D10);
	cr_assert_eq(DL.precinct, p);
	const struct bal_delta_entry want[] = {
		{ bal_slot_precinct_turnout(L, p, BAL_T_BATCHES), 1 },
		{ bal_slot_precinct_turnout(L, p, BAL_T_BALLOTS), 5 },
		{ bal_slot_precinct_turnout(L, p, BAL_T_ISSUED), 6 },
		{ bal_slot_precinct_turnout(L, p, BAL_T_CAST), 5 },
		{ bal_slot_precinct_choice(L, p, c1, 0), 2 },
		{ bal_slot_precinct_choice(L, p, c1, 3), 1 },
		{ bal_slot_precinct_choice(L, p, c1, 7), 2 },
		{ bal_slot_precinct_choice(L, p, c10, 0), 1 },
		{ bal_slot_precinct_choice(L, p, c10, 1), 1 },
		{ bal_slot_precinct_choice(L, p, c10, 2), 3 },
	};
	assert_delta(&DL, want, NELEM(want));
}

Test(tally, fold_ballots_accepts_a_subset_of_contests, .init = setup, .fini = teardown)
{
	static const uint32_t d20[] = { 3, 3 };
	static const struct bal_column cols[] = { { FX_D20, 2, d20 } };
	struct bal_batch b = { BALLOTS(7, cols) };
	char why[256] = "";
	cr_assert_eq(bal_tally_fold(D, L, &b, &DL, why, sizeof(why)), 0, "%s", why);
	uint32_t p = pidx(7);
	const struct bal_delta_entry want[] = {
		{ bal_slot_precinct_turnout(L, p, BAL_T_BATCHES), 1 },
		{ bal_slot_precinct_turnout(L, p, BAL_T_BALLOTS), 2 },
		{ bal_slot_precinct_choice(L, p, cidx(FX_D20), 3), 2 },
	};
	assert_delta(&DL, want, NELEM(want));
}

Test(tally, fold_tally_omits_zero_counts, .init = setup, .fini = teardown)
{
	static const uint64_t list[] = { 0, 10, 0, 0, 5, 0, 0, 1 };
	static const struct bal_ctally ts[] = { { FX_LIST, 8, list } };
	struct bal_batch b = { TALLY(30, ts), .has_turnout = true, .ballots_issued = 20, .ballots_spoiled = 4 };
	char why[256] = "";
	cr_assert_eq(bal_tally_fold(D, L, &b, &DL, why, sizeof(why)), 0, "%s", why);
	uint32_t p = pidx(30), c1 = cidx(FX_LIST);
	const struct bal_delta_entry want[] = {
		{ bal_slot_precinct_turnout(L, p, BAL_T_BATCHES), 1 },
		{ bal_slot_precinct_turnout(L, p, BAL_T_ISSUED), 20 },
		{ bal_slot_precinct_turnout(L, p, BAL_T_SPOILED), 4 },
		{ bal_slot_precinct_choice(L, p, c1, 1), 10 },
		{ bal_slot_precinct_choice(L, p, c1, 4), 5 },
		{ bal_slot_precinct_choice(L, p, c1, 7), 1 },
	};
	assert_delta(&DL, want, NELEM(want));
}

Test(tally, fold_accepts_turnout_only_batches, .init = setup, .fini = teardown)
{
	struct bal_batch b = { .precinct_id = 5, .seq = 9, .kind = BAL_KIND_TALLY, .has_turnout = true,
			       .ballots_cast = 77 };
	char why[256] = "";
	cr_assert_eq(bal_tally_fold(D, L, &b, &DL, why, sizeof(why)), 0, "%s", why);
	uint32_t p = pidx(5);
	const struct bal_delta_entry want[] = {
		{ bal_slot_precinct_turnout(L, p, BAL_T_BATCHES), 1 },
		{ bal_slot_precinct_turnout(L, p, BAL_T_CAST), 77 },
	};
	assert_delta(&DL, want, NELEM(want));
}

/* ---- apply: aggregates against an independent model ----------------------------- */

#define MAXP 8
#define MAXC 4
#define MAXK 8

struct model {
	uint64_t votes[MAXP][MAXC][MAXK];
	uint64_t turnout[MAXP][BAL_T_NFIELDS];
};

/* A random valid batch for precinct p, recorded in `m` without using the fold. */
static struct bal_batch random_batch(uint64_t *rs, uint32_t p, struct model *m, uint32_t (*chbuf)[64],
				     uint64_t (*cntbuf)[MAXK], struct bal_column *cols, struct bal_ctally *ts)
{
	struct bal_batch b = { .precinct_id = D->precincts[p].id, .seq = 1 };
	b.kind = fx_rand(rs) % 2 ? BAL_KIND_TALLY : BAL_KIND_BALLOTS;
	size_t nballots = 1 + fx_rand(rs) % 64;
	size_t n = 0;
	for (uint32_t c = 0; c < D->ncontests; c++) {
		if (!bal_defn_votes_in(D, p, c) || fx_rand(rs) % 4 == 0)
			continue;
		uint32_t nch = D->contests[c].nchoices;
		if (b.kind == BAL_KIND_BALLOTS) {
			for (size_t i = 0; i < nballots; i++) {
				chbuf[n][i] = (uint32_t)(fx_rand(rs) % nch);
				m->votes[p][c][chbuf[n][i]]++;
			}
			cols[n] = (struct bal_column){ D->contests[c].id, nballots, chbuf[n] };
		} else {
			for (uint32_t k = 0; k < nch; k++) {
				cntbuf[n][k] = fx_rand(rs) % 3 ? fx_rand(rs) % 1000 : 0;
				m->votes[p][c][k] += cntbuf[n][k];
			}
			ts[n] = (struct bal_ctally){ D->contests[c].id, nch, cntbuf[n] };
		}
		n++;
	}
	if (b.kind == BAL_KIND_BALLOTS) {
		b.ncolumns = n;
		b.columns = cols;
		if (n)
			m->turnout[p][BAL_T_BALLOTS] += nballots;
	} else {
		b.ntallies = n;
		b.tallies = ts;
	}
	b.has_turnout = n == 0 || fx_rand(rs) % 2;
	if (b.has_turnout) {
		b.ballots_issued = 1 + fx_rand(rs) % 500;
		b.ballots_cast = fx_rand(rs) % 500;
		b.ballots_spoiled = fx_rand(rs) % 5;
		m->turnout[p][BAL_T_ISSUED] += b.ballots_issued;
		m->turnout[p][BAL_T_CAST] += b.ballots_cast;
		m->turnout[p][BAL_T_SPOILED] += b.ballots_spoiled;
	}
	m->turnout[p][BAL_T_BATCHES]++;
	return b;
}

/* The whole counter array the model implies, built from lookups alone. */
static uint64_t *expected_counters(const struct model *m)
{
	uint64_t *want = calloc(bal_layout_nslots(L), sizeof(*want));
	uint64_t reporting = 0, batches = 0;
	for (uint32_t p = 0; p < D->nprecincts; p++) {
		uint32_t dist = D->precincts[p].district;
		for (uint32_t f = 0; f < BAL_T_NFIELDS; f++) {
			want[bal_slot_precinct_turnout(L, p, f)] = m->turnout[p][f];
			want[bal_slot_district_turnout(L, dist, f)] += m->turnout[p][f];
			want[bal_slot_total_turnout(L, f)] += m->turnout[p][f];
		}
		batches += m->turnout[p][BAL_T_BATCHES];
		reporting += m->turnout[p][BAL_T_BATCHES] > 0;
		for (uint32_t c = 0; c < D->ncontests; c++) {
			if (!bal_defn_votes_in(D, p, c))
				continue;
			for (uint32_t k = 0; k < D->contests[c].nchoices; k++) {
				want[bal_slot_precinct_choice(L, p, c, k)] = m->votes[p][c][k];
				want[bal_slot_district_choice(L, c, dist, k)] += m->votes[p][c][k];
				want[bal_slot_contest_choice(L, c, k)] += m->votes[p][c][k];
			}
		}
	}
	want[bal_slot_global(L, BAL_G_BATCHES)] = batches;
	want[bal_slot_global(L, BAL_G_PRECINCTS_REPORTING)] = reporting;
	return want;
}

Test(tally, apply_keeps_aggregates_equal_to_sums, .init = setup, .fini = teardown)
{
	cr_assert_leq(D->nprecincts, MAXP);
	cr_assert_leq(D->ncontests, MAXC);
	static struct model m;
	memset(&m, 0, sizeof(m));
	size_t n = bal_layout_nslots(L);
	uint64_t *ctr = calloc(n, sizeof(*ctr));
	uint64_t rs = 0x9E3779B97F4A7C15ULL;
	uint32_t chbuf[MAXC][64];
	uint64_t cntbuf[MAXC][MAXK];
	struct bal_column cols[MAXC];
	struct bal_ctally ts[MAXC];
	char why[256] = "";

	/* Precinct 30 never reports, so precincts reporting stays below the total. */
	uint32_t silent = pidx(30);
	for (int i = 0; i < 500; i++) {
		uint32_t p = (uint32_t)(fx_rand(&rs) % D->nprecincts);
		if (p == silent)
			continue;
		struct bal_batch b = random_batch(&rs, p, &m, chbuf, cntbuf, cols, ts);
		cr_assert_eq(bal_tally_fold(D, L, &b, &DL, why, sizeof(why)), 0, "%s", why);
		cr_assert_eq(bal_tally_check(L, ctr, &DL, why, sizeof(why)), 0, "%s", why);
		bal_tally_apply(L, ctr, &DL);
	}
	uint64_t *want = expected_counters(&m);
	for (size_t s = 0; s < n; s++)
		cr_assert_eq(ctr[s], want[s], "slot %zu: %llu, expected %llu", s, (unsigned long long)ctr[s],
			     (unsigned long long)want[s]);
	cr_assert_eq(ctr[bal_slot_global(L, BAL_G_PRECINCTS_REPORTING)], D->nprecincts - 1);
	free(want);
	free(ctr);
}

Test(tally, precincts_reporting_counts_first_batch_only, .init = setup, .fini = teardown)
{
	uint64_t *ctr = calloc(bal_layout_nslots(L), sizeof(*ctr));
	const uint32_t rep = bal_slot_global(L, BAL_G_PRECINCTS_REPORTING);
	const uint32_t bat = bal_slot_global(L, BAL_G_BATCHES);
	const uint32_t ids[] = { 12, 12, 7, 12, 7, 5 };
	const uint64_t want_rep[] = { 1, 1, 2, 2, 2, 3 };
	char why[256] = "";
	for (size_t i = 0; i < NELEM(ids); i++) {
		struct bal_batch b = { TALLY_SEQ(ids[i], i + 1, t_list8) };
		cr_assert_eq(bal_tally_fold(D, L, &b, &DL, why, sizeof(why)), 0, "%s", why);
		bal_tally_apply(L, ctr, &DL);
		cr_assert_eq(ctr[rep], want_rep[i], "after batch %zu", i);
		cr_assert_eq(ctr[bat], i + 1);
	}
	free(ctr);
}

/* ---- check: overflow at every level ------------------------------------------------ */

enum level { PREC, DIST, NAT, PREC_T, DIST_T, NAT_T, PREC_B, GLOBAL_B, GLOBAL_R };

struct ovf_case {
	enum level level;
	const char *why;
};

static const struct ovf_case ovf_cases[] = {
		{ PREC, "contest 1 choice 3 at precinct 12 would overflow 64 bits" },
		{ DIST, "contest 1 choice 3 district 10 total would overflow 64 bits" },
		{ NAT, "contest 1 choice 3 national total would overflow 64 bits" },
		{ PREC_T, "ballots_issued at precinct 12 would overflow 64 bits" },
		{ DIST_T, "ballots_issued district 10 total would overflow 64 bits" },
		{ NAT_T, "ballots_issued national total would overflow 64 bits" },
		{ PREC_B, "batches at precinct 12 would overflow 64 bits" },
		{ GLOBAL_B, "global batch count would overflow 64 bits" },
		{ GLOBAL_R, "precincts reporting would overflow 64 bits" },
};

INDEX_PARAMS(tally, check_detects_overflow, ovf_cases)

/* The slot a case preloads; the delta adds 2 there (1 for batch counts). */
static uint32_t ovf_slot(enum level lv, uint64_t *add)
{
	uint32_t p = pidx(12), c = cidx(FX_LIST), d = didx(10);
	*add = 2;
	switch (lv) {
	case PREC: return bal_slot_precinct_choice(L, p, c, 3);
	case DIST: return bal_slot_district_choice(L, c, d, 3);
	case NAT: return bal_slot_contest_choice(L, c, 3);
	case PREC_T: return bal_slot_precinct_turnout(L, p, BAL_T_ISSUED);
	case DIST_T: return bal_slot_district_turnout(L, d, BAL_T_ISSUED);
	case NAT_T: return bal_slot_total_turnout(L, BAL_T_ISSUED);
	case PREC_B: *add = 1; return bal_slot_precinct_turnout(L, p, BAL_T_BATCHES);
	case GLOBAL_B: *add = 1; return bal_slot_global(L, BAL_G_BATCHES);
	case GLOBAL_R: *add = 1; return bal_slot_global(L, BAL_G_PRECINCTS_REPORTING);
	}
	return BAL_SLOT_NONE;
}

ParameterizedTest(size_t *ix, tally, check_detects_overflow, .init = setup, .fini = teardown)
{
	const struct ovf_case *oc = &ovf_cases[*ix];
	static const uint64_t counts[] = { 0, 0, 0, 2, 0, 0, 0, 0 };
	static const struct bal_ctally ts[] = { { FX_LIST, 8, counts } };
	struct bal_batch b = { TALLY(12, ts), .has_turnout = true, .ballots_issued = 2 };
	char why[256] = "";
	cr_assert_eq(bal_tally_fold(D, L, &b, &DL, why, sizeof(why)), 0, "%s", why);

	size_t n = bal_layout_nslots(L);
	uint64_t *ctr = calloc(n, sizeof(*ctr));
	uint64_t add;
	uint32_t slot = ovf_slot(oc->level, &add);
	/* At the limit exactly: fine, and apply lands on UINT64_MAX. */
	ctr[slot] = UINT64_MAX - add;
	cr_assert_eq(bal_tally_check(L, ctr, &DL, why, sizeof(why)), 0, "%s", why);
	/* One past: refused, naming the slot; the counters are untouched. */
	ctr[slot] = UINT64_MAX - add + 1;
	uint64_t *before = malloc(n * sizeof(*before));
	memcpy(before, ctr, n * sizeof(*ctr));
	cr_assert_eq(bal_tally_check(L, ctr, &DL, why, sizeof(why)), BAL_EOVERFLOW);
	cr_assert_str_eq(why, oc->why);
	cr_assert_eq(memcmp(before, ctr, n * sizeof(*ctr)), 0);
	ctr[slot] = UINT64_MAX - add;
	bal_tally_apply(L, ctr, &DL);
	cr_assert_eq(ctr[slot], UINT64_MAX);
	free(before);
	free(ctr);
}
