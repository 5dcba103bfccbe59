/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Counter tests: the slot layout is a bijection onto [0, nslots), the fold
 * rejects every kind of invalid batch with a precise reason and folds valid
 * ones into the right precinct-level entries, apply keeps every aggregate
 * equal to the sum of its precincts' effective contributions (ballot sums, or
 * the latest protocol), and check catches overflow at every level and a
 * protocol that would take an inconsistent aggregate below zero.
 */
#include "tests/unit/core/fixture.h"

#include "defn/defn.h"

#include "tests/common/params.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct bal_defn *D;
static struct bal_layout *L;
static struct bal_delta_entry E[64];
static struct bal_delta DL;

static void setup(void)
{
	fx_load(&D, &L);
	DL = (struct bal_delta){.precinct = 0, .n = 0, .cap = NELEM(E), .e = E};
}

static void teardown(void)
{
	bal_layout_free(L);
	bal_defn_free(D);
}

static uint32_t pidx(uint32_t id)
{
	return fx_precinct(D, id);
}

static uint32_t cidx(uint32_t id)
{
	return fx_contest(D, id);
}

static uint32_t didx(uint32_t id)
{
	return fx_district(D, id);
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
	 * two precincts each in 10 and 20, one in 30: 32 + 34 + 13 = 79, twice
	 * (shadow blocks). District choices 3*8 + 3 + 4 = 31, contest totals 15,
	 * district turnout 15, national turnout 5, globals 4. */
	size_t n = bal_layout_nslots(L);
	cr_assert_eq(n, 228);
	cr_assert_eq(bal_layout_delta_max(L), 17);
	uint8_t *seen = calloc(n, 1);
	for (uint32_t p = 0; p < D->nprecincts; p++) {
		for (uint32_t f = 0; f < BAL_T_NFIELDS; f++) {
			mark(seen, n, bal_slot_precinct_turnout(L, p, f), "precinct turnout");
			uint32_t t = bal_slot_precinct_turnout(L, p, f);
			mark(seen, n, bal_slot_precinct_shadow(L, p, t), "shadow turnout");
		}
		for (uint32_t c = 0; c < D->ncontests; c++)
			for (uint32_t k = 0; k < D->contests[c].nchoices; k++) {
				uint32_t s = bal_slot_precinct_choice(L, p, c, k);
				if (bal_defn_votes_in(D, p, c)) {
					mark(seen, n, s, "precinct choice");
					mark(seen, n, bal_slot_precinct_shadow(L, p, s), "shadow choice");
				} else {
					cr_assert_eq(s, BAL_SLOT_NONE);
				}
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
	/* A shadow exists only for the precinct's own E slots. */
	uint32_t p12 = pidx(12), p5 = pidx(5);
	cr_assert_eq(bal_slot_precinct_shadow(L, p12, bal_slot_precinct_choice(L, p5, c1, 0)), BAL_SLOT_NONE);
	uint32_t sh = bal_slot_precinct_shadow(L, p12, bal_slot_precinct_choice(L, p12, c1, 0));
	cr_assert_eq(bal_slot_precinct_shadow(L, p12, sh), BAL_SLOT_NONE);
	cr_assert_eq(bal_slot_precinct_shadow(L, D->nprecincts, 0), BAL_SLOT_NONE);
}

/* ---- fold rejections ---------------------------------------------------------- */

static const uint32_t ch3[] = {0, 1, 2};
static const uint32_t ch2[] = {0, 1};
static const uint32_t ch_bad17[] = {0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 9};
static const uint64_t cnt8[] = {1, 2, 3, 4, 5, 6, 7, 8};
static const uint64_t cnt5[] = {1, 2, 3, 4, 5};
static const uint64_t cnt_ovf[] = {UINT64_MAX, 1, 0, 0, 0, 0, 0, 0};

static const struct bal_column col_list3[] = {{FX_LIST, 3, ch3}};
static const struct bal_column col_list_unknown[] = {{FX_LIST, 3, ch3}, {7, 3, ch3}};
static const struct bal_column col_list_d20[] = {{FX_LIST, 3, ch3}, {FX_D20, 3, ch3}};
static const struct bal_column col_bad_choice[] = {{FX_LIST, NELEM(ch_bad17), ch_bad17}};
static const struct bal_column col_len_differ[] = {{FX_LIST, 3, ch3}, {FX_D10, 2, ch2}};
static const struct bal_column col_twice[] = {{FX_LIST, 3, ch3}, {FX_LIST, 3, ch3}};
static const struct bal_column col_zero_len[] = {{FX_LIST, 0, ch3}, {FX_D10, 0, ch3}};
static const struct bal_ctally t_list8[] = {{FX_LIST, 8, cnt8}};
static const struct bal_ctally t_list5[] = {{FX_LIST, 5, cnt5}};
static const struct bal_ctally t_twice[] = {{FX_LIST, 8, cnt8}, {FX_LIST, 8, cnt8}};
static const struct bal_ctally t_unknown[] = {{55, 8, cnt8}};
static const struct bal_ctally t_d10[] = {{FX_D10, 3, cnt8}};
static const struct bal_ctally t_ovf[] = {{FX_LIST, 8, cnt_ovf}};
static const struct bal_ctally t_list8_d10[] = {{FX_LIST, 8, cnt8}, {FX_D10, 3, cnt8}};

struct fold_case {
	const char *name;
	struct bal_batch b;
	int err;
	const char *why;
};

#define BATCH(k, pid, s)          .precinct_id = (pid), .seq = (s), .kind = (k)
#define BALLOTS_SEQ(pid, s, cols) BATCH(BAL_KIND_BALLOTS, pid, s), .ncolumns = NELEM(cols), .columns = (cols)
#define TALLY_SEQ(pid, s, ts)     BATCH(BAL_KIND_TALLY, pid, s), .ntallies = NELEM(ts), .tallies = (ts)
#define BALLOTS(pid, cols)        BALLOTS_SEQ(pid, 1, cols)
#define TALLY(pid, ts)            TALLY_SEQ(pid, 1, ts)
#define PROTOCOL(pid, ts)         BATCH(BAL_KIND_PROTOCOL, pid, 1), .ntallies = NELEM(ts), .tallies = (ts), .has_turnout = true

static const struct fold_case fold_cases[] = {
        {"unknown precinct", {BALLOTS(99999, col_list3)}, BAL_EINVALID, "precinct_id 99999 is not in the definition"},
        {"seq zero", {BALLOTS_SEQ(12, 0, col_list3)}, BAL_EINVALID, "seq must be >= 1 (got 0)"},
        {"unknown contest",
         {BALLOTS(12, col_list_unknown)},
         BAL_EINVALID,
         "ballots[1].contest_id 7 is not in the definition"},
        {"contest not on ballot",
         {BALLOTS(12, col_list_d20)},
         BAL_EINVALID,
         "ballots[1].contest_id 102 is not on the ballot of precinct 12 (district 10)"},
        {"choice out of range",
         {BALLOTS(12, col_bad_choice)},
         BAL_EINVALID,
         "ballots[0].choices[17] = 9 is out of range (contest 1 has 8 choices)"},
        {"column lengths differ",
         {BALLOTS(12, col_len_differ)},
         BAL_EINVALID,
         "ballots[1] has 2 entries, ballots[0] has 3 (column lengths differ)"},
        {"column twice",
         {BALLOTS(12, col_twice)},
         BAL_EINVALID,
         "ballots[1]: contest 1 appears twice (also ballots[0])"},
        {"tally length",
         {TALLY(12, t_list5)},
         BAL_EINVALID,
         "tallies[0].counts has 5 entries, contest 1 has 8 choices"},
        {"tally twice", {TALLY(12, t_twice)}, BAL_EINVALID, "tallies[1]: contest 1 appears twice (also tallies[0])"},
        {"tally unknown contest",
         {TALLY(12, t_unknown)},
         BAL_EINVALID,
         "tallies[0].contest_id 55 is not in the definition"},
        {"tally not on ballot",
         {TALLY(30, t_d10)},
         BAL_EINVALID,
         "tallies[0].contest_id 101 is not on the ballot of precinct 30 (district 30)"},
        {"tally carrying ballots",
         {TALLY(12, t_list8), .ncolumns = 1, .columns = col_list3},
         BAL_EINVALID,
         "a TALLY batch may not carry ballots (got 1 ballot columns)"},
        {"ballots carrying tallies",
         {BALLOTS(12, col_list3), .ntallies = 1, .tallies = t_list8},
         BAL_EINVALID,
         "a BALLOTS batch may not carry tallies (got 1 tallies)"},
        {"empty ballots",
         {.precinct_id = 12, .seq = 1, .kind = BAL_KIND_BALLOTS},
         BAL_EINVALID,
         "batch is empty (no ballots and no turnout)"},
        {"zero-length columns",
         {BALLOTS(12, col_zero_len)},
         BAL_EINVALID,
         "batch is empty (no ballots and no turnout)"},
        {"empty tally",
         {.precinct_id = 12, .seq = 1, .kind = BAL_KIND_TALLY},
         BAL_EINVALID,
         "batch is empty (no tallies and no turnout)"},
        {"protocol missing a contest",
         {PROTOCOL(12, t_list8)},
         BAL_EINVALID,
         "a PROTOCOL batch must carry a tally for every contest on the ballot of precinct 12: contest 101 is "
         "missing (1 of 2 contests present)"},
        {"protocol with no tallies",
         {BATCH(BAL_KIND_PROTOCOL, 7, 2), .has_turnout = true},
         BAL_EINVALID,
         "a PROTOCOL batch must carry a tally for every contest on the ballot of precinct 7: contest 1 is "
         "missing (0 of 2 contests present)"},
        {"protocol without turnout",
         {BATCH(BAL_KIND_PROTOCOL, 12, 1), .ntallies = 2, .tallies = t_list8_d10},
         BAL_EINVALID,
         "a PROTOCOL batch must carry a turnout (Batch.turnout is absent)"},
        {"protocol carrying ballots",
         {PROTOCOL(12, t_list8_d10), .ncolumns = 1, .columns = col_list3},
         BAL_EINVALID,
         "a PROTOCOL batch may not carry ballots (got 1 ballot columns)"},
        {"protocol tally length",
         {PROTOCOL(30, t_list5)},
         BAL_EINVALID,
         "tallies[0].counts has 5 entries, contest 1 has 8 choices"},
        {"protocol contest not on ballot",
         {PROTOCOL(30, t_list8_d10)},
         BAL_EINVALID,
         "tallies[1].contest_id 101 is not on the ballot of precinct 30 (district 30)"},
        {"protocol seq zero",
         {BATCH(BAL_KIND_PROTOCOL, 30, 0), .ntallies = 1, .tallies = t_list8, .has_turnout = true},
         BAL_EINVALID,
         "seq must be >= 1 (got 0)"},
        {"protocol sum overflow",
         {PROTOCOL(30, t_ovf)},
         BAL_EOVERFLOW,
         "tallies[0] sum overflows 64 bits (at counts[1] = 1)"},
        {"unknown kind",
         {BATCH((enum bal_kind)5, 12, 1), .ntallies = 1, .tallies = t_list8},
         BAL_EINVALID,
         "kind 5 is not BALLOTS (0), TALLY (1) or PROTOCOL (2)"},
        {"tally sum overflow",
         {TALLY(12, t_ovf)},
         BAL_EOVERFLOW,
         "tallies[0] sum overflows 64 bits (at counts[1] = 1)"},
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
	struct bal_batch b = {TALLY(12, t_list8)};
	char why[256] = "";
	DL.cap = 8;
	cr_assert_eq(bal_tally_fold(D, L, &b, &DL, why, sizeof(why)), -ENOBUFS);
	cr_assert_str_eq(why, "delta capacity 8 is below the 9 entries this batch needs");
	DL.cap = (uint32_t)bal_layout_delta_max(L);
	cr_assert_eq(bal_tally_fold(D, L, &b, &DL, why, sizeof(why)), 0, "%s", why);
}

Test(tally, fold_tolerates_missing_why, .init = setup, .fini = teardown)
{
	struct bal_batch b = {BALLOTS(99999, col_list3)};
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
				cr_assert_eq(dl->e[j].add, want[i].add, "slot %u: add %llu, expected %llu",
				             want[i].slot, (unsigned long long)dl->e[j].add,
				             (unsigned long long)want[i].add);
			}
		cr_assert_eq(hits, 1, "slot %u appears %zu times", want[i].slot, hits);
	}
}

Test(tally, fold_ballots_counts_each_choice, .init = setup, .fini = teardown)
{
	static const uint32_t list[] = {0, 0, 3, 7, 7};
	static const uint32_t d10[] = {2, 2, 2, 1, 0};
	static const struct bal_column cols[] = {{FX_LIST, 5, list}, {FX_D10, 5, d10}};
	struct bal_batch b = {BALLOTS_SEQ(12, 3, cols), .has_turnout = true, .ballots_issued = 6, .ballots_cast = 5,
	                      .ballots_spoiled = 0};
	char why[256] = "";
	cr_assert_eq(bal_tally_fold(D, L, &b, &DL, why, sizeof(why)), 0, "%s", why);
	uint32_t p = pidx(12), c1 = cidx(FX_LIST), c10 = cidx(FX_D10);
	cr_assert_eq(DL.precinct, p);
	const struct bal_delta_entry want[] = {
	        {bal_slot_precinct_turnout(L, p, BAL_T_BATCHES), 1},
	        {bal_slot_precinct_turnout(L, p, BAL_T_BALLOTS), 5},
	        {bal_slot_precinct_turnout(L, p, BAL_T_ISSUED), 6},
	        {bal_slot_precinct_turnout(L, p, BAL_T_CAST), 5},
	        {bal_slot_precinct_choice(L, p, c1, 0), 2},
	        {bal_slot_precinct_choice(L, p, c1, 3), 1},
	        {bal_slot_precinct_choice(L, p, c1, 7), 2},
	        {bal_slot_precinct_choice(L, p, c10, 0), 1},
	        {bal_slot_precinct_choice(L, p, c10, 1), 1},
	        {bal_slot_precinct_choice(L, p, c10, 2), 3},
	};
	assert_delta(&DL, want, NELEM(want));
}

/*
 * The fold counts a column by vector compares for contests of up to 16
 * choices and by a histogram beyond: random columns of every length from 0
 * to 70 (vector body and scalar tail) in contests of 1, 8, 9, 16, 17 and 40
 * choices must give the naive counts, and a choice out of range anywhere
 * must be reported at its index.
 */
Test(tally, fold_counts_columns_of_any_length_and_choice_count)
{
	static const uint32_t nchoices[] = {1, 8, 9, 16, 17, 40};
	enum { NC = NELEM(nchoices), MAXN = 70 };
	char *json = malloc(65536);
	cr_assert(json);
	size_t n = (size_t)sprintf(json,
	                           "{\"election\": {\"id\": \"cnt\", \"name\": \"Counts\", \"date\": \"2023-03-19\"},"
	                           " \"districts\": [{\"id\": 10, \"name\": \"Ten\"}], \"contests\": [");
	for (uint32_t c = 0; c < NC; c++) {
		n += (size_t)sprintf(json + n,
		                     "%s{\"id\": %u, \"name\": \"C%u\", \"kind\": \"party_list\", \"seats\": 10, "
		                     "\"threshold_percent\": 5, \"choices\": [",
		                     c ? ", " : "", c + 1, c + 1);
		for (uint32_t k = 0; k < nchoices[c]; k++)
			n += (size_t)sprintf(json + n, "%s{\"id\": %u, \"name\": \"k%u\"}", k ? ", " : "", k, k);
		n += (size_t)sprintf(json + n, "]}");
	}
	n += (size_t)sprintf(json + n, "], \"precincts\": [{\"id\": 1, \"district_id\": 10, \"unbounded\": true}]}");
	struct bal_defn *d;
	char why[256] = "";
	cr_assert_eq(bal_defn_parse(json, n, &d, why, sizeof(why)), 0, "%s", why);
	free(json);
	struct bal_layout *l = bal_layout_new(d);
	cr_assert(l);
	struct bal_delta_entry ent[200];
	cr_assert_geq(NELEM(ent), bal_layout_delta_max(l));
	uint32_t choices[NC][MAXN];
	struct bal_column cols[NC];
	uint64_t rng = 7;
	for (size_t len = 0; len <= MAXN; len++) {
		for (uint32_t c = 0; c < NC; c++) {
			for (size_t j = 0; j < len; j++) /* skewed: choice 0 leads */
				choices[c][j] = fx_rand(&rng) % 3 ? 0 : (uint32_t)(fx_rand(&rng) % nchoices[c]);
			cols[c] = (struct bal_column){c + 1, len, choices[c]};
		}
		struct bal_batch b = {.precinct_id = 1,
		                      .seq = 1,
		                      .kind = BAL_KIND_BALLOTS,
		                      .ncolumns = NC,
		                      .columns = cols,
		                      .has_turnout = len == 0};
		struct bal_delta dl = {.cap = NELEM(ent), .e = ent};
		cr_assert_eq(bal_tally_fold(d, l, &b, &dl, why, sizeof(why)), 0, "length %zu: %s", len, why);
		for (uint32_t c = 0; c < NC; c++)
			for (uint32_t k = 0; k < nchoices[c]; k++) {
				uint64_t want = 0, got = 0;
				for (size_t j = 0; j < len; j++)
					want += choices[c][j] == k;
				uint32_t slot = bal_slot_precinct_choice(l, 0, c, k);
				for (uint32_t i = 0; i < dl.n; i++)
					if (dl.e[i].slot == slot)
						got += dl.e[i].add;
				cr_assert_eq(got, want,
				             "length %zu, contest of %u choices, choice %u: %llu, expected %llu", len,
				             nchoices[c], k, (unsigned long long)got, (unsigned long long)want);
			}
		if (!len)
			continue;
		for (uint32_t c = 0; c < NC; c++) {
			size_t at = (size_t)(fx_rand(&rng) % len);
			uint32_t keep = choices[c][at];
			choices[c][at] = nchoices[c] + (uint32_t)(fx_rand(&rng) % 3);
			char want[160];
			snprintf(want, sizeof(want),
			         "ballots[%u].choices[%zu] = %u is out of range (contest %u has %u choices)", c, at,
			         choices[c][at], c + 1, nchoices[c]);
			dl = (struct bal_delta){.cap = NELEM(ent), .e = ent};
			cr_assert_eq(bal_tally_fold(d, l, &b, &dl, why, sizeof(why)), BAL_EINVALID);
			cr_assert_str_eq(why, want);
			choices[c][at] = keep;
		}
	}
	bal_layout_free(l);
	bal_defn_free(d);
}

Test(tally, fold_ballots_accepts_a_subset_of_contests, .init = setup, .fini = teardown)
{
	static const uint32_t d20[] = {3, 3};
	static const struct bal_column cols[] = {{FX_D20, 2, d20}};
	struct bal_batch b = {BALLOTS(7, cols)};
	char why[256] = "";
	cr_assert_eq(bal_tally_fold(D, L, &b, &DL, why, sizeof(why)), 0, "%s", why);
	uint32_t p = pidx(7);
	const struct bal_delta_entry want[] = {
	        {bal_slot_precinct_turnout(L, p, BAL_T_BATCHES), 1},
	        {bal_slot_precinct_turnout(L, p, BAL_T_BALLOTS), 2},
	        {bal_slot_precinct_choice(L, p, cidx(FX_D20), 3), 2},
	};
	assert_delta(&DL, want, NELEM(want));
}

Test(tally, fold_tally_omits_zero_counts, .init = setup, .fini = teardown)
{
	static const uint64_t list[] = {0, 10, 0, 0, 5, 0, 0, 1};
	static const struct bal_ctally ts[] = {{FX_LIST, 8, list}};
	struct bal_batch b = {TALLY(30, ts), .has_turnout = true, .ballots_issued = 20, .ballots_spoiled = 4};
	char why[256] = "";
	cr_assert_eq(bal_tally_fold(D, L, &b, &DL, why, sizeof(why)), 0, "%s", why);
	uint32_t p = pidx(30), c1 = cidx(FX_LIST);
	const struct bal_delta_entry want[] = {
	        {bal_slot_precinct_turnout(L, p, BAL_T_BATCHES), 1},
	        {bal_slot_precinct_turnout(L, p, BAL_T_ISSUED), 20},
	        {bal_slot_precinct_turnout(L, p, BAL_T_SPOILED), 4},
	        {bal_slot_precinct_choice(L, p, c1, 1), 10},
	        {bal_slot_precinct_choice(L, p, c1, 4), 5},
	        {bal_slot_precinct_choice(L, p, c1, 7), 1},
	};
	assert_delta(&DL, want, NELEM(want));
	cr_assert_eq(DL.peak, 20, "the largest entry");
	cr_assert_eq(bal_tally_bound(100, &DL), 120);
	cr_assert_eq(bal_tally_bound(UINT64_MAX - 5, &DL), UINT64_MAX, "saturates");
}

Test(tally, fold_accepts_turnout_only_batches, .init = setup, .fini = teardown)
{
	struct bal_batch b = {
	        .precinct_id = 5, .seq = 9, .kind = BAL_KIND_TALLY, .has_turnout = true, .ballots_cast = 77};
	char why[256] = "";
	cr_assert_eq(bal_tally_fold(D, L, &b, &DL, why, sizeof(why)), 0, "%s", why);
	uint32_t p = pidx(5);
	const struct bal_delta_entry want[] = {
	        {bal_slot_precinct_turnout(L, p, BAL_T_BATCHES), 1},
	        {bal_slot_precinct_turnout(L, p, BAL_T_CAST), 77},
	};
	assert_delta(&DL, want, NELEM(want));
}

/* ---- apply: aggregates against an independent model ----------------------------- */

#define MAXP 8
#define MAXC 4
#define MAXK 8

/* Per precinct: B (ballot sums), P (latest protocol) and its seq, counts. The
 * turnout arrays use BAL_T_ISSUED..BAL_T_SPOILED only. */
struct model {
	uint64_t votes[MAXP][MAXC][MAXK]; /* B */
	uint64_t turnout[MAXP][BAL_T_NFIELDS];
	uint64_t pvotes[MAXP][MAXC][MAXK]; /* P */
	uint64_t pturnout[MAXP][BAL_T_NFIELDS];
	uint64_t pseq[MAXP];
	uint64_t batches[MAXP];
	uint64_t ballots[MAXP];
};

/* A random valid batch for precinct p, recorded in `m` without using the fold.
 * One in `protocol_odds` (0: never) is a PROTOCOL with a random seq. */
static struct bal_batch random_batch(uint64_t *rs, uint32_t p, struct model *m, uint32_t (*chbuf)[64],
                                     uint64_t (*cntbuf)[MAXK], struct bal_column *cols, struct bal_ctally *ts,
                                     unsigned protocol_odds)
{
	struct bal_batch b = {.precinct_id = D->precincts[p].id, .seq = 1};
	b.kind = fx_rand(rs) % 2 ? BAL_KIND_TALLY : BAL_KIND_BALLOTS;
	if (protocol_odds && fx_rand(rs) % protocol_odds == 0) {
		b.kind = BAL_KIND_PROTOCOL;
		b.seq = 1 + fx_rand(rs) % 12;
	}
	const bool replaces = b.kind == BAL_KIND_PROTOCOL && b.seq > m->pseq[p];
	size_t nballots = 1 + fx_rand(rs) % 64;
	size_t n = 0;
	for (uint32_t c = 0; c < D->ncontests; c++) {
		if (!bal_defn_votes_in(D, p, c) || (b.kind != BAL_KIND_PROTOCOL && fx_rand(rs) % 4 == 0))
			continue;
		uint32_t nch = D->contests[c].nchoices;
		if (b.kind == BAL_KIND_BALLOTS) {
			for (size_t i = 0; i < nballots; i++) {
				chbuf[n][i] = (uint32_t)(fx_rand(rs) % nch);
				m->votes[p][c][chbuf[n][i]]++;
			}
			cols[n] = (struct bal_column){D->contests[c].id, nballots, chbuf[n]};
		} else {
			for (uint32_t k = 0; k < nch; k++) {
				cntbuf[n][k] = fx_rand(rs) % 3 ? fx_rand(rs) % 1000 : 0;
				if (b.kind == BAL_KIND_TALLY)
					m->votes[p][c][k] += cntbuf[n][k];
				else if (replaces)
					m->pvotes[p][c][k] = cntbuf[n][k];
			}
			ts[n] = (struct bal_ctally){D->contests[c].id, nch, cntbuf[n]};
		}
		n++;
	}
	if (b.kind == BAL_KIND_BALLOTS) {
		b.ncolumns = n;
		b.columns = cols;
		if (n)
			m->ballots[p] += nballots;
	} else {
		b.ntallies = n;
		b.tallies = ts;
	}
	b.has_turnout = n == 0 || b.kind == BAL_KIND_PROTOCOL || fx_rand(rs) % 2;
	if (b.has_turnout) {
		b.ballots_issued = 1 + fx_rand(rs) % 500;
		b.ballots_cast = fx_rand(rs) % 500;
		b.ballots_spoiled = fx_rand(rs) % 5;
		uint64_t *t = b.kind != BAL_KIND_PROTOCOL ? m->turnout[p] : replaces ? m->pturnout[p] : NULL;
		if (t) {
			t[BAL_T_ISSUED] = (b.kind == BAL_KIND_PROTOCOL ? 0 : t[BAL_T_ISSUED]) + b.ballots_issued;
			t[BAL_T_CAST] = (b.kind == BAL_KIND_PROTOCOL ? 0 : t[BAL_T_CAST]) + b.ballots_cast;
			t[BAL_T_SPOILED] = (b.kind == BAL_KIND_PROTOCOL ? 0 : t[BAL_T_SPOILED]) + b.ballots_spoiled;
		}
	}
	if (replaces)
		m->pseq[p] = b.seq;
	m->batches[p]++;
	return b;
}

/* The whole counter array the model implies, built from lookups alone. */
static uint64_t *expected_counters(const struct model *m)
{
	uint64_t *want = calloc(bal_layout_nslots(L), sizeof(*want));
	uint64_t reporting = 0, batches = 0, protocols = 0, discrepancies = 0;
	for (uint32_t p = 0; p < D->nprecincts; p++) {
		uint32_t dist = D->precincts[p].district;
		const bool prot = m->pseq[p] != 0;
		uint64_t differ = 0;
		for (uint32_t f = 0; f < BAL_T_NFIELDS; f++) {
			uint64_t e = f == BAL_T_BATCHES   ? m->batches[p]
			             : f == BAL_T_BALLOTS ? m->ballots[p]
			             : prot               ? m->pturnout[p][f]
			                                  : m->turnout[p][f];
			uint32_t s = bal_slot_precinct_turnout(L, p, f);
			want[s] = e;
			want[bal_slot_district_turnout(L, dist, f)] += e;
			want[bal_slot_total_turnout(L, f)] += e;
			if (f >= BAL_T_ISSUED && prot) {
				want[bal_slot_precinct_shadow(L, p, s)] = m->turnout[p][f];
				differ += m->turnout[p][f] != e;
			}
		}
		batches += m->batches[p];
		reporting += m->batches[p] > 0;
		for (uint32_t c = 0; c < D->ncontests; c++) {
			if (!bal_defn_votes_in(D, p, c))
				continue;
			for (uint32_t k = 0; k < D->contests[c].nchoices; k++) {
				uint64_t e = prot ? m->pvotes[p][c][k] : m->votes[p][c][k];
				uint32_t s = bal_slot_precinct_choice(L, p, c, k);
				want[s] = e;
				want[bal_slot_district_choice(L, c, dist, k)] += e;
				want[bal_slot_contest_choice(L, c, k)] += e;
				if (prot) {
					want[bal_slot_precinct_shadow(L, p, s)] = m->votes[p][c][k];
					differ += m->votes[p][c][k] != e;
				}
			}
		}
		want[bal_slot_precinct_shadow(L, p, bal_slot_precinct_turnout(L, p, BAL_T_BATCHES))] = m->pseq[p];
		want[bal_slot_precinct_shadow(L, p, bal_slot_precinct_turnout(L, p, BAL_T_BALLOTS))] = differ;
		protocols += prot;
		discrepancies += differ > 0;
	}
	want[bal_slot_global(L, BAL_G_BATCHES)] = batches;
	want[bal_slot_global(L, BAL_G_PRECINCTS_REPORTING)] = reporting;
	want[bal_slot_global(L, BAL_G_PROTOCOLS)] = protocols;
	want[bal_slot_global(L, BAL_G_DISCREPANCIES)] = discrepancies;
	return want;
}

static void assert_counters(const uint64_t *ctr, const struct model *m, const char *when)
{
	uint64_t *want = expected_counters(m);
	for (size_t s = 0; s < bal_layout_nslots(L); s++)
		cr_assert_eq(ctr[s], want[s], "%s: slot %zu: %llu, expected %llu", when, s, (unsigned long long)ctr[s],
		             (unsigned long long)want[s]);
	free(want);
}

/* Folds, checks and applies 500 random batches; one in `protocol_odds` a protocol. */
static void run_random(unsigned protocol_odds, uint64_t seed)
{
	cr_assert_leq(D->nprecincts, MAXP);
	cr_assert_leq(D->ncontests, MAXC);
	static struct model m;
	memset(&m, 0, sizeof(m));
	size_t n = bal_layout_nslots(L);
	uint64_t *ctr = calloc(n, sizeof(*ctr));
	uint64_t rs = seed;
	uint32_t chbuf[MAXC][64];
	uint64_t cntbuf[MAXC][MAXK];
	struct bal_column cols[MAXC];
	struct bal_ctally ts[MAXC];
	char why[256] = "";

	/* Precinct 30 never reports, so precincts reporting stays below the total. */
	uint32_t silent = pidx(30);
	uint64_t bound = bal_tally_max(L, ctr);
	for (int i = 0; i < 500; i++) {
		uint32_t p = (uint32_t)(fx_rand(&rs) % D->nprecincts);
		if (p == silent)
			continue;
		struct bal_batch b = random_batch(&rs, p, &m, chbuf, cntbuf, cols, ts, protocol_odds);
		cr_assert_eq(bal_tally_fold(D, L, &b, &DL, why, sizeof(why)), 0, "%s", why);
		cr_assert_eq(bal_tally_check(L, ctr, &DL, why, sizeof(why)), 0, "%s", why);
		bal_tally_apply(L, ctr, &DL);
		bound = bal_tally_bound(bound, &DL);
		cr_assert_leq(bal_tally_max(L, ctr), bound, "batch %d: a slot rose above the bound", i);
	}
	assert_counters(ctr, &m, "after 500 batches");
	cr_assert_eq(ctr[bal_slot_global(L, BAL_G_PRECINCTS_REPORTING)], D->nprecincts - 1);
	/* The precinct-level slots alone, in slices of any partition, give
	 * everything back: every aggregate and global is rebuilt from them. */
	uint64_t *back = malloc(n * sizeof(*back)), *buf = malloc(n * sizeof(*buf));
	for (uint32_t parts = 1; parts <= D->nprecincts; parts++) {
		memset(back, 0xa5, n * sizeof(*back));
		for (uint32_t k = 0; k < parts; k++) {
			uint32_t first = k * D->nprecincts / parts, end = (k + 1) * D->nprecincts / parts;
			size_t len = bal_layout_slice_pack(L, ctr, first, end, buf);
			cr_assert_eq(len, bal_layout_slice_len(L, first, end));
			cr_assert_eq(bal_layout_slice_unpack(L, back, first, end, buf, len), 0);
			cr_assert_eq(bal_layout_slice_unpack(L, back, first, end, buf, len + 1), BAL_ECORRUPT);
		}
		cr_assert_eq(bal_tally_rebuild(L, back), 0);
		assert_counters(back, &m, "slices loaded, aggregates rebuilt");
	}
	free(back);
	free(buf);
	free(ctr);
}

Test(tally, apply_keeps_aggregates_equal_to_sums, .init = setup, .fini = teardown)
{
	run_random(0, 0x9E3779B97F4A7C15ULL);
}

Test(tally, apply_with_protocols_keeps_aggregates_equal_to_sums, .init = setup, .fini = teardown)
{
	for (uint64_t seed = 1; seed <= 20; seed++)
		run_random(4, seed * 0x9E3779B97F4A7C15ULL);
}

/*
 * Recovery from slices taken at different times: slice k saved after batch
 * t_k, then every later batch of a precinct replayed only if it came after
 * that precinct's slice, with the aggregates rebuilt first, ends equal to the
 * counters that saw every batch once.
 */
Test(tally, slices_at_different_positions_plus_their_later_batches_recover_everything, .init = setup, .fini = teardown)
{
	enum { NB = 400, NS = 3 };
	static struct model m;
	memset(&m, 0, sizeof(m));
	size_t n = bal_layout_nslots(L);
	uint64_t *ctr = calloc(n, sizeof(*ctr)), *back = malloc(n * sizeof(*back));
	uint64_t *saved[NS];
	size_t saved_len[NS];
	static struct bal_delta_entry log_e[NB][64];
	static struct bal_delta log_d[NB];
	const unsigned at[NS] = {37, 390, 211};
	uint64_t rs = 12345;
	uint32_t chbuf[MAXC][64];
	uint64_t cntbuf[MAXC][MAXK];
	struct bal_column cols[MAXC];
	struct bal_ctally ts[MAXC];
	char why[256] = "";
	for (unsigned i = 0; i < NB; i++) {
		uint32_t p = (uint32_t)(fx_rand(&rs) % D->nprecincts);
		struct bal_batch b = random_batch(&rs, p, &m, chbuf, cntbuf, cols, ts, 5);
		log_d[i] = (struct bal_delta){.cap = 64, .e = log_e[i]};
		cr_assert_eq(bal_tally_fold(D, L, &b, &log_d[i], why, sizeof(why)), 0, "%s", why);
		cr_assert_eq(bal_tally_check(L, ctr, &log_d[i], why, sizeof(why)), 0, "%s", why);
		bal_tally_apply(L, ctr, &log_d[i]);
		for (unsigned k = 0; k < NS; k++)
			if (at[k] == i) {
				uint32_t first = k * D->nprecincts / NS, end = (k + 1) * D->nprecincts / NS;
				saved[k] = malloc(bal_layout_slice_len(L, first, end) * sizeof(uint64_t));
				saved_len[k] = bal_layout_slice_pack(L, ctr, first, end, saved[k]);
			}
	}
	/* As ballotd recovers: slices over garbage, later batches applied, totals rebuilt. */
	memset(back, 0x5a, n * sizeof(*back));
	for (unsigned k = 0; k < NS; k++) {
		uint32_t first = k * D->nprecincts / NS, end = (k + 1) * D->nprecincts / NS;
		cr_assert_eq(bal_layout_slice_unpack(L, back, first, end, saved[k], saved_len[k]), 0);
		free(saved[k]);
	}
	for (unsigned i = 0; i < NB; i++) {
		unsigned k = log_d[i].precinct * NS / D->nprecincts;
		while ((k + 1) * D->nprecincts / NS <= log_d[i].precinct)
			k++;
		while (k * D->nprecincts / NS > log_d[i].precinct)
			k--;
		if (i > at[k])
			bal_tally_apply(L, back, &log_d[i]);
	}
	cr_assert_eq(bal_tally_rebuild(L, back), 0);
	assert_counters(back, &m, "recovered from slices");
	cr_assert_arr_eq(back, ctr, n * sizeof(*ctr));
	free(back);
	free(ctr);
}

/*
 * Slices from different positions can add up to totals the live counters
 * never held: here precinct 30 reaches 2^63 and then a protocol takes it back
 * to 0 before precinct 5 reaches 2^63. Recovering with precinct 5's slice
 * (after both) and precinct 30's journal entries, a check on the mixed totals
 * would see an overflow that never happened; applying and then rebuilding
 * gives exactly the live counters, and a real overflow is still caught.
 */
Test(tally, recovery_totals_mixed_from_slices_do_not_fake_an_overflow, .init = setup, .fini = teardown)
{
	static const uint64_t big[8] = {(uint64_t)1 << 63}, zero[8] = {0};
	static const struct bal_ctally t_big[] = {{FX_LIST, 8, big}}, t_zero[] = {{FX_LIST, 8, zero}};
	const struct bal_batch batches[3] = {
	        {TALLY(30, t_big)},
	        {BATCH(BAL_KIND_PROTOCOL, 30, 2), .ntallies = 1, .tallies = t_zero, .has_turnout = true},
	        {TALLY(5, t_big)},
	};
	size_t n = bal_layout_nslots(L);
	uint64_t *live = calloc(n, sizeof(*live)), *back = calloc(n, sizeof(*back));
	struct bal_delta_entry es[3][64];
	struct bal_delta ds[3];
	char why[256] = "";
	for (int i = 0; i < 3; i++) {
		ds[i] = (struct bal_delta){.cap = 64, .e = es[i]};
		cr_assert_eq(bal_tally_fold(D, L, &batches[i], &ds[i], why, sizeof(why)), 0, "%s", why);
		cr_assert_eq(bal_tally_check(L, live, &ds[i], why, sizeof(why)), 0, "live %d: %s", i, why);
		bal_tally_apply(L, live, &ds[i]);
	}
	/* Precinct 5 (index 0) alone in the first slice, saved after all three; precinct 30's never saved. */
	uint32_t p5 = pidx(5), p30 = pidx(30);
	cr_assert_eq(p5, 0);
	uint64_t *slice = malloc(bal_layout_slice_len(L, 0, 1) * sizeof(uint64_t));
	size_t len = bal_layout_slice_pack(L, live, 0, 1, slice);
	cr_assert_eq(bal_layout_slice_unpack(L, back, 0, 1, slice, len), 0);
	cr_assert_eq(bal_tally_rebuild(L, back), 0);
	cr_assert_eq(bal_tally_check(L, back, &ds[0], why, sizeof(why)), BAL_EOVERFLOW,
	             "the mixed totals look like an overflow to the live check");
	cr_assert_eq(ds[0].precinct, p30);
	bal_tally_apply(L, back, &ds[0]);
	bal_tally_apply(L, back, &ds[1]);
	cr_assert_eq(bal_tally_rebuild(L, back), 0);
	cr_assert_arr_eq(back, live, n * sizeof(*live));
	/* A real one: both precincts at 2^63 is beyond 64 bits, and the rebuild says so. */
	back[bal_slot_precinct_choice(L, p30, cidx(FX_LIST), 0)] = (uint64_t)1 << 63;
	cr_assert_eq(bal_tally_rebuild(L, back), BAL_EOVERFLOW);
	free(slice);
	free(back);
	free(live);
}

Test(tally, precincts_reporting_counts_first_batch_only, .init = setup, .fini = teardown)
{
	uint64_t *ctr = calloc(bal_layout_nslots(L), sizeof(*ctr));
	const uint32_t rep = bal_slot_global(L, BAL_G_PRECINCTS_REPORTING);
	const uint32_t bat = bal_slot_global(L, BAL_G_BATCHES);
	const uint32_t ids[] = {12, 12, 7, 12, 7, 5};
	const uint64_t want_rep[] = {1, 1, 2, 2, 2, 3};
	char why[256] = "";
	for (size_t i = 0; i < NELEM(ids); i++) {
		struct bal_batch b = {TALLY_SEQ(ids[i], i + 1, t_list8)};
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
        {PREC, "contest 1 choice 3 at precinct 12 would overflow 64 bits"},
        {DIST, "contest 1 choice 3 district 10 total would overflow 64 bits"},
        {NAT, "contest 1 choice 3 national total would overflow 64 bits"},
        {PREC_T, "ballots_issued at precinct 12 would overflow 64 bits"},
        {DIST_T, "ballots_issued district 10 total would overflow 64 bits"},
        {NAT_T, "ballots_issued national total would overflow 64 bits"},
        {PREC_B, "batches at precinct 12 would overflow 64 bits"},
        {GLOBAL_B, "global batch count would overflow 64 bits"},
        {GLOBAL_R, "precincts reporting would overflow 64 bits"},
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
	static const uint64_t counts[] = {0, 0, 0, 2, 0, 0, 0, 0};
	static const struct bal_ctally ts[] = {{FX_LIST, 8, counts}};
	struct bal_batch b = {TALLY(12, ts), .has_turnout = true, .ballots_issued = 2};
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

/* ---- PROTOCOL batches ------------------------------------------------------------- */

static const uint64_t p_list[] = {0, 10, 0, 0, 5, 0, 0, 1};
static const uint64_t p_d10[] = {1, 0, 2};
static const struct bal_ctally p_ts[] = {{FX_D10, 3, p_d10}, {FX_LIST, 8, p_list}};

/* A protocol of precinct 12 with seq `seq`: p_ts scaled by `scale`, turnout (issued, cast, spoiled). */
static struct bal_batch protocol12(uint64_t seq, uint64_t (*buf)[8], struct bal_ctally *ts, uint64_t scale,
                                   uint64_t issued, uint64_t cast, uint64_t spoiled)
{
	for (int i = 0; i < 2; i++) {
		for (size_t k = 0; k < p_ts[i].n; k++)
			buf[i][k] = p_ts[i].counts[k] * scale;
		ts[i] = (struct bal_ctally){p_ts[i].contest_id, p_ts[i].n, buf[i]};
	}
	return (struct bal_batch){.precinct_id = 12,
	                          .seq = seq,
	                          .kind = BAL_KIND_PROTOCOL,
	                          .ntallies = 2,
	                          .tallies = ts,
	                          .has_turnout = true,
	                          .ballots_issued = issued,
	                          .ballots_cast = cast,
	                          .ballots_spoiled = spoiled};
}

/* Folds, checks and applies `b` to `ctr`, asserting success. */
static void fold_apply(uint64_t *ctr, const struct bal_batch *b)
{
	char why[256] = "";
	cr_assert_eq(bal_tally_fold(D, L, b, &DL, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(bal_tally_check(L, ctr, &DL, why, sizeof(why)), 0, "%s", why);
	bal_tally_apply(L, ctr, &DL);
}

Test(tally, fold_protocol_lists_every_slot_with_absolute_values, .init = setup, .fini = teardown)
{
	uint64_t buf[2][8];
	struct bal_ctally ts[2];
	struct bal_batch b = protocol12(7, buf, ts, 1, 20, 18, 2);
	char why[256] = "";
	cr_assert_eq(bal_tally_fold(D, L, &b, &DL, why, sizeof(why)), 0, "%s", why);
	uint32_t p = pidx(12), c1 = cidx(FX_LIST), c10 = cidx(FX_D10);
	cr_assert_eq(DL.kind, BAL_DELTA_PROTOCOL);
	cr_assert_eq(DL.seq, 7);
	cr_assert_eq(DL.precinct, p);
	struct bal_delta_entry want[3 + FX_LIST_N + FX_D10_N] = {
	        {bal_slot_precinct_turnout(L, p, BAL_T_ISSUED), 20},
	        {bal_slot_precinct_turnout(L, p, BAL_T_CAST), 18},
	        {bal_slot_precinct_turnout(L, p, BAL_T_SPOILED), 2},
	};
	for (uint32_t k = 0; k < FX_LIST_N; k++)
		want[3 + k] = (struct bal_delta_entry){bal_slot_precinct_choice(L, p, c1, k), p_list[k]};
	for (uint32_t k = 0; k < FX_D10_N; k++)
		want[3 + FX_LIST_N + k] = (struct bal_delta_entry){bal_slot_precinct_choice(L, p, c10, k), p_d10[k]};
	assert_delta(&DL, want, NELEM(want));

	/* A BALLOTS fold into the same storage is an ADD delta again. */
	struct bal_batch t = {TALLY(12, t_list8)};
	cr_assert_eq(bal_tally_fold(D, L, &t, &DL, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(DL.kind, BAL_DELTA_ADD);
	cr_assert_eq(DL.seq, 0);
}

/* The counters of precinct 12 and of district 10 / the nation for (contest 1, choice 1). */
struct view12 {
	uint64_t e, shadow, ballots, district, national, issued, d_issued, seq, batches, g_batches, protocols,
	        discrepancies, differ;
};

static struct view12 view12(const uint64_t *ctr)
{
	uint32_t p = pidx(12), c1 = cidx(FX_LIST), d = didx(10);
	uint32_t s = bal_slot_precinct_choice(L, p, c1, 1);
	uint32_t ti = bal_slot_precinct_turnout(L, p, BAL_T_ISSUED);
	return (struct view12){
	        .e = ctr[s],
	        .shadow = ctr[bal_slot_precinct_shadow(L, p, s)],
	        .ballots = bal_tally_ballot_sum(L, ctr, p, s),
	        .district = ctr[bal_slot_district_choice(L, c1, d, 1)],
	        .national = ctr[bal_slot_contest_choice(L, c1, 1)],
	        .issued = ctr[ti],
	        .d_issued = ctr[bal_slot_district_turnout(L, d, BAL_T_ISSUED)],
	        .seq = bal_tally_protocol_seq(L, ctr, p),
	        .batches = ctr[bal_slot_precinct_turnout(L, p, BAL_T_BATCHES)],
	        .g_batches = ctr[bal_slot_global(L, BAL_G_BATCHES)],
	        .protocols = ctr[bal_slot_global(L, BAL_G_PROTOCOLS)],
	        .discrepancies = ctr[bal_slot_global(L, BAL_G_DISCREPANCIES)],
	        .differ = ctr[bal_slot_precinct_shadow(L, p, bal_slot_precinct_turnout(L, p, BAL_T_BALLOTS))],
	};
}

Test(tally, protocol_replaces_the_precincts_contribution, .init = setup, .fini = teardown)
{
	uint64_t *ctr = calloc(bal_layout_nslots(L), sizeof(*ctr));
	static const uint64_t c8[] = {0, 4, 0, 0, 0, 0, 0, 0};
	static const struct bal_ctally t4[] = {{FX_LIST, 8, c8}};
	/* Precinct 12 tallies 4 + 4 votes for choice 1 (issued 9); precinct 5 (same district) 4. */
	struct bal_batch t = {TALLY_SEQ(12, 1, t4), .has_turnout = true, .ballots_issued = 9};
	fold_apply(ctr, &t);
	t.seq = 2;
	fold_apply(ctr, &t);
	struct bal_batch t5 = {TALLY(5, t4)};
	fold_apply(ctr, &t5);
	struct view12 v = view12(ctr);
	cr_assert_eq(v.e, 8);
	cr_assert_eq(v.district, 12);
	cr_assert_eq(v.seq, 0);
	cr_assert_eq(v.shadow, 0);

	/* Its protocol says 10 (issued 20): the totals take 10 in place of 8. */
	uint64_t buf[2][8];
	struct bal_ctally ts[2];
	struct bal_batch pb = protocol12(3, buf, ts, 1, 20, 18, 2);
	fold_apply(ctr, &pb);
	v = view12(ctr);
	cr_assert_eq(v.e, 10);
	cr_assert_eq(v.shadow, 8, "the ballot sum moves to the shadow slot");
	cr_assert_eq(v.ballots, 8);
	cr_assert_eq(v.district, 14);
	cr_assert_eq(v.national, 14);
	cr_assert_eq(v.issued, 20);
	cr_assert_eq(v.d_issued, 20);
	cr_assert_eq(v.seq, 3);
	cr_assert_eq(v.batches, 3);
	cr_assert_eq(v.g_batches, 4);
	cr_assert_eq(v.protocols, 1);
	cr_assert_eq(v.discrepancies, 1);
	/* Every choice the protocol sets to 0 is 0 in the totals too (p_list[0] = 0). */
	uint32_t c1 = cidx(FX_LIST);
	cr_assert_eq(ctr[bal_slot_precinct_choice(L, pidx(12), c1, 0)], 0);
	/* Aggregates are still the sums of E, and the whole array is what the model says. */
	static struct model m;
	memset(&m, 0, sizeof(m));
	uint32_t p12 = pidx(12), p5 = pidx(5), c10 = cidx(FX_D10);
	m.votes[p12][c1][1] = 8;
	m.turnout[p12][BAL_T_ISSUED] = 18;
	m.votes[p5][c1][1] = 4;
	m.batches[p12] = 3;
	m.batches[p5] = 1;
	m.pseq[p12] = 3;
	for (uint32_t k = 0; k < FX_LIST_N; k++)
		m.pvotes[p12][c1][k] = p_list[k];
	for (uint32_t k = 0; k < FX_D10_N; k++)
		m.pvotes[p12][c10][k] = p_d10[k];
	m.pturnout[p12][BAL_T_ISSUED] = 20;
	m.pturnout[p12][BAL_T_CAST] = 18;
	m.pturnout[p12][BAL_T_SPOILED] = 2;
	assert_counters(ctr, &m, "after the protocol");
	free(ctr);
}

Test(tally, newer_protocol_replaces_and_older_one_counts_only_as_a_batch, .init = setup, .fini = teardown)
{
	size_t n = bal_layout_nslots(L);
	uint64_t *ctr = calloc(n, sizeof(*ctr));
	uint64_t buf[2][8];
	struct bal_ctally ts[2];
	struct bal_batch p2 = protocol12(2, buf, ts, 1, 20, 18, 2);
	fold_apply(ctr, &p2);
	cr_assert_eq(view12(ctr).e, 10);
	struct bal_batch p5 = protocol12(5, buf, ts, 3, 60, 54, 6);
	fold_apply(ctr, &p5);
	struct view12 v = view12(ctr);
	cr_assert_eq(v.e, 30);
	cr_assert_eq(v.district, 30);
	cr_assert_eq(v.issued, 60);
	cr_assert_eq(v.seq, 5);
	cr_assert_eq(v.shadow, 0, "no ballot batches: B is 0");
	cr_assert_eq(v.protocols, 1, "one precinct, however many protocols");

	/* Seq 4 arrives late: only the batch counts move. */
	uint64_t *before = malloc(n * sizeof(*before));
	memcpy(before, ctr, n * sizeof(*ctr));
	struct bal_batch p4 = protocol12(4, buf, ts, 7, 1, 1, 1);
	fold_apply(ctr, &p4);
	v = view12(ctr);
	cr_assert_eq(v.e, 30);
	cr_assert_eq(v.seq, 5);
	cr_assert_eq(v.batches, 3);
	cr_assert_eq(v.g_batches, 3);
	uint32_t p = pidx(12), d = didx(10);
	before[bal_slot_precinct_turnout(L, p, BAL_T_BATCHES)]++;
	before[bal_slot_district_turnout(L, d, BAL_T_BATCHES)]++;
	before[bal_slot_total_turnout(L, BAL_T_BATCHES)]++;
	before[bal_slot_global(L, BAL_G_BATCHES)]++;
	cr_assert_eq(memcmp(before, ctr, n * sizeof(*ctr)), 0, "an older protocol changed a total");
	free(before);
	free(ctr);
}

Test(tally, ballots_after_a_protocol_change_only_the_ballot_sum, .init = setup, .fini = teardown)
{
	size_t n = bal_layout_nslots(L);
	uint64_t *ctr = calloc(n, sizeof(*ctr));
	uint64_t buf[2][8];
	struct bal_ctally ts[2];
	struct bal_batch pb = protocol12(1, buf, ts, 1, 20, 18, 2);
	fold_apply(ctr, &pb);
	cr_assert_eq(view12(ctr).discrepancies, 1);

	/* The ballot batches arrive after their protocol and add up to it exactly:
	 * the totals never move (but batch and ballot counts), the discrepancy goes. */
	uint64_t *before = malloc(n * sizeof(*before));
	memcpy(before, ctr, n * sizeof(*ctr));
	static const struct bal_ctally t_all[] = {{FX_LIST, 8, p_list}, {FX_D10, 3, p_d10}};
	struct bal_batch t = {TALLY_SEQ(12, 2, t_all), .has_turnout = true, .ballots_issued = 20, .ballots_cast = 18,
	                      .ballots_spoiled = 1};
	fold_apply(ctr, &t);
	struct view12 v = view12(ctr);
	cr_assert_eq(v.e, 10);
	cr_assert_eq(v.shadow, 10);
	cr_assert_eq(v.district, 10);
	cr_assert_eq(v.differ, 1, "spoiled still differs (2 vs 1)");
	cr_assert_eq(v.discrepancies, 1);
	static const uint32_t one[] = {4};
	static const struct bal_column col[] = {{FX_D10, 0, one}};
	struct bal_batch sp = {BALLOTS_SEQ(12, 3, col), .has_turnout = true, .ballots_spoiled = 1};
	fold_apply(ctr, &sp);
	v = view12(ctr);
	cr_assert_eq(v.differ, 0);
	cr_assert_eq(v.discrepancies, 0);
	cr_assert_eq(v.protocols, 1);
	uint32_t p = pidx(12), d = didx(10);
	/* Precinct 12's shadow slots (ballot sums, differing slots) may move. */
	uint8_t *shadow = calloc(n, 1);
	for (uint32_t f = 0; f < BAL_T_NFIELDS; f++)
		shadow[bal_slot_precinct_shadow(L, p, bal_slot_precinct_turnout(L, p, f))] = 1;
	for (uint32_t c = 0; c < D->ncontests; c++)
		for (uint32_t k = 0; bal_defn_votes_in(D, p, c) && k < D->contests[c].nchoices; k++)
			shadow[bal_slot_precinct_shadow(L, p, bal_slot_precinct_choice(L, p, c, k))] = 1;
	for (size_t s = 0; s < n; s++) {
		if (shadow[s])
			continue;
		if (s == bal_slot_precinct_turnout(L, p, BAL_T_BATCHES) ||
		    s == bal_slot_district_turnout(L, d, BAL_T_BATCHES) ||
		    s == bal_slot_total_turnout(L, BAL_T_BATCHES) || s == bal_slot_global(L, BAL_G_BATCHES) ||
		    s == bal_slot_global(L, BAL_G_DISCREPANCIES))
			continue;
		cr_assert_eq(ctr[s], before[s], "slot %zu moved: %llu -> %llu", s, (unsigned long long)before[s],
		             (unsigned long long)ctr[s]);
	}
	cr_assert_eq(ctr[bal_slot_precinct_turnout(L, p, BAL_T_BATCHES)], 3);
	cr_assert_eq(view12(ctr).seq, 1, "the protocol seq stays");
	free(shadow);
	free(before);
	free(ctr);
}

Test(tally, protocol_below_the_ballot_sum_lowers_the_totals, .init = setup, .fini = teardown)
{
	uint64_t *ctr = calloc(bal_layout_nslots(L), sizeof(*ctr));
	static const uint64_t c8[] = {0, 25, 0, 0, 0, 0, 0, 0};
	static const struct bal_ctally t25[] = {{FX_LIST, 8, c8}};
	struct bal_batch t = {TALLY(12, t25), .has_turnout = true, .ballots_issued = 100};
	fold_apply(ctr, &t);
	struct bal_batch t5 = {TALLY(5, t25)};
	fold_apply(ctr, &t5);
	cr_assert_eq(view12(ctr).district, 50);
	uint64_t buf[2][8];
	struct bal_ctally ts[2];
	struct bal_batch pb = protocol12(1, buf, ts, 1, 20, 18, 2);
	fold_apply(ctr, &pb);
	struct view12 v = view12(ctr);
	cr_assert_eq(v.e, 10);
	cr_assert_eq(v.ballots, 25);
	cr_assert_eq(v.district, 35, "25 from precinct 5 + the protocol's 10");
	cr_assert_eq(v.national, 35);
	cr_assert_eq(v.issued, 20);
	cr_assert_eq(v.d_issued, 20);
	/* A zero protocol takes the precinct out of every total. */
	static const uint64_t z8[8], z3[3];
	static const struct bal_ctally tz[] = {{FX_LIST, 8, z8}, {FX_D10, 3, z3}};
	struct bal_batch pz = {BATCH(BAL_KIND_PROTOCOL, 12, 2), .ntallies = 2, .tallies = tz, .has_turnout = true};
	fold_apply(ctr, &pz);
	v = view12(ctr);
	cr_assert_eq(v.e, 0);
	cr_assert_eq(v.district, 25);
	cr_assert_eq(v.d_issued, 0);
	cr_assert_eq(v.ballots, 25);
	free(ctr);
}

enum pcase { P_DIST, P_NAT, P_SHADOW, P_UNDER_DIST, P_UNDER_NAT, P_BATCHES };

struct protocol_check_case {
	enum pcase c;
	int err;
	const char *why;
};

static const struct protocol_check_case protocol_check_cases[] = {
        {P_DIST, BAL_EOVERFLOW, "contest 1 choice 1 district 10 total would overflow 64 bits"},
        {P_NAT, BAL_EOVERFLOW, "contest 1 choice 1 national total would overflow 64 bits"},
        {P_SHADOW, BAL_EOVERFLOW, "contest 1 choice 1 ballot sum at precinct 12 would overflow 64 bits"},
        {P_UNDER_DIST, BAL_ECORRUPT,
         "contest 1 choice 1 district total 3 is below the 40 precinct 12 contributes to it: the counters are "
         "inconsistent"},
        {P_UNDER_NAT, BAL_ECORRUPT,
         "contest 1 choice 1 national total 3 is below the 40 precinct 12 contributes to it: the counters are "
         "inconsistent"},
        {P_BATCHES, BAL_EOVERFLOW, "batches at precinct 12 would overflow 64 bits"},
};

INDEX_PARAMS(tally, check_protocol_limits, protocol_check_cases)

/*
 * The protocol sets contest 1 choice 1 of precinct 12 to 10. Each case
 * prepares counters where that (or, for P_SHADOW, a later ballot batch)
 * crosses a limit by one, and one step short of it, where it must pass.
 */
ParameterizedTest(size_t *ix, tally, check_protocol_limits, .init = setup, .fini = teardown)
{
	const struct protocol_check_case *pc = &protocol_check_cases[*ix];
	size_t n = bal_layout_nslots(L);
	uint64_t *ctr = calloc(n, sizeof(*ctr));
	uint32_t p = pidx(12), c1 = cidx(FX_LIST), d = didx(10);
	uint32_t s = bal_slot_precinct_choice(L, p, c1, 1);
	uint32_t ds = bal_slot_district_choice(L, c1, d, 1), ns = bal_slot_contest_choice(L, c1, 1);
	uint64_t buf[2][8];
	struct bal_ctally ts[2];
	struct bal_batch pb = protocol12(1, buf, ts, 1, 20, 18, 2);
	char why[256] = "";
	cr_assert_eq(bal_tally_fold(D, L, &pb, &DL, why, sizeof(why)), 0, "%s", why);
	uint32_t slot = 0;
	uint64_t ok = 0, bad = 0;
	switch (pc->c) {
	case P_DIST: /* E 4 -> 10: +6 */
	case P_NAT:
		ctr[s] = 4;
		ctr[ds] = ctr[ns] = 4;
		slot = pc->c == P_DIST ? ds : ns;
		ok = UINT64_MAX - 6;
		bad = ok + 1;
		break;
	case P_UNDER_DIST: /* E 40 -> 10: -30 */
	case P_UNDER_NAT:
		ctr[s] = 40;
		ctr[ds] = ctr[ns] = 40;
		slot = pc->c == P_UNDER_DIST ? ds : ns;
		ok = 30;
		bad = 3;
		break;
	case P_BATCHES:
		slot = bal_slot_precinct_turnout(L, p, BAL_T_BATCHES);
		ok = UINT64_MAX - 1;
		bad = UINT64_MAX;
		break;
	case P_SHADOW: {
		/* Protocol counted, then a tally of 2 votes for choice 1 onto a full ballot sum. */
		bal_tally_apply(L, ctr, &DL);
		static const uint64_t c8[] = {0, 2, 0, 0, 0, 0, 0, 0};
		static const struct bal_ctally t2[] = {{FX_LIST, 8, c8}};
		struct bal_batch t = {TALLY_SEQ(12, 2, t2)};
		cr_assert_eq(bal_tally_fold(D, L, &t, &DL, why, sizeof(why)), 0, "%s", why);
		slot = bal_slot_precinct_shadow(L, p, s);
		ok = UINT64_MAX - 2;
		bad = ok + 1;
		break;
	}
	}
	ctr[slot] = ok;
	cr_assert_eq(bal_tally_check(L, ctr, &DL, why, sizeof(why)), 0, "%s", why);
	ctr[slot] = bad;
	uint64_t *before = malloc(n * sizeof(*before));
	memcpy(before, ctr, n * sizeof(*ctr));
	cr_assert_eq(bal_tally_check(L, ctr, &DL, why, sizeof(why)), pc->err, "%s", why);
	cr_assert_str_eq(why, pc->why);
	cr_assert_eq(memcmp(before, ctr, n * sizeof(*ctr)), 0, "check wrote to the counters");
	free(before);
	free(ctr);
}

Test(tally, protocol_resend_with_the_stored_seq_checks_as_a_batch_only, .init = setup, .fini = teardown)
{
	/* The committer checks before dedup: a resend of the counted protocol must
	 * not be refused for what it would replace. */
	uint64_t *ctr = calloc(bal_layout_nslots(L), sizeof(*ctr));
	uint64_t buf[2][8];
	struct bal_ctally ts[2];
	struct bal_batch pb = protocol12(4, buf, ts, 1, 20, 18, 2);
	fold_apply(ctr, &pb);
	/* Make replacing impossible: the district total is now inconsistent. */
	uint32_t c1 = cidx(FX_LIST), d = didx(10);
	ctr[bal_slot_district_choice(L, c1, d, 1)] = 0;
	char why[256] = "";
	cr_assert_eq(bal_tally_check(L, ctr, &DL, why, sizeof(why)), 0, "%s", why);
	struct bal_batch newer = protocol12(5, buf, ts, 0, 0, 0, 0);
	cr_assert_eq(bal_tally_fold(D, L, &newer, &DL, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(bal_tally_check(L, ctr, &DL, why, sizeof(why)), BAL_ECORRUPT);
	free(ctr);
}

/* Batches of precincts 12 and 5: ballots, tallies and three protocols of 12. */
#define NMIXED 8

static struct bal_batch mixed_batch(size_t i, uint64_t (*buf)[8], struct bal_ctally *ts)
{
	static const uint32_t l3[] = {1, 1, 4};
	static const uint32_t d3[] = {0, 2, 2};
	static const struct bal_column cols[] = {{FX_LIST, 3, l3}, {FX_D10, 3, d3}};
	switch (i) {
	case 0: return (struct bal_batch){BALLOTS_SEQ(12, 1, cols), .has_turnout = true, .ballots_cast = 3};
	case 1: return (struct bal_batch){TALLY_SEQ(12, 2, p_ts), .has_turnout = true, .ballots_issued = 7};
	case 2: return protocol12(3, buf, ts, 2, 30, 28, 2);
	case 3: return protocol12(6, buf, ts, 1, 10, 10, 0);
	case 4: return protocol12(5, buf, ts, 4, 40, 40, 0);
	case 5: return (struct bal_batch){BALLOTS_SEQ(12, 7, cols)};
	case 6: return (struct bal_batch){BALLOTS_SEQ(5, 1, cols), .has_turnout = true, .ballots_issued = 3};
	default: return (struct bal_batch){TALLY_SEQ(5, 2, p_ts)};
	}
}

Test(tally, any_arrival_order_gives_the_same_counters, .init = setup, .fini = teardown)
{
	size_t n = bal_layout_nslots(L);
	uint64_t *first = NULL;
	uint64_t rs = 42;
	for (int round = 0; round < 40; round++) {
		size_t order[NMIXED];
		for (size_t i = 0; i < NMIXED; i++)
			order[i] = i;
		for (size_t i = NMIXED - 1; i > 0 && round; i--) {
			size_t j = (size_t)(fx_rand(&rs) % (i + 1)), t = order[i];
			order[i] = order[j];
			order[j] = t;
		}
		uint64_t *ctr = calloc(n, sizeof(*ctr));
		for (size_t i = 0; i < NMIXED; i++) {
			uint64_t buf[2][8];
			struct bal_ctally ts[2];
			struct bal_batch b = mixed_batch(order[i], buf, ts);
			fold_apply(ctr, &b);
		}
		/* The protocol with seq 6 (scale 1) is what counts for precinct 12. */
		struct view12 v = view12(ctr);
		cr_assert_eq(v.seq, 6);
		cr_assert_eq(v.e, 10);
		cr_assert_eq(v.issued, 10);
		if (!first)
			first = ctr;
		else {
			cr_assert_eq(memcmp(first, ctr, n * sizeof(*ctr)), 0, "round %d: order changed the counters",
			             round);
			free(ctr);
		}
	}
	free(first);
}

Test(tally, published_copy_equals_the_committers_copy, .init = setup, .fini = teardown)
{
	/* The committer checks and applies each delta to its own array; the
	 * seqlock copy gets the same deltas in groups; recovery replays them one
	 * by one from zero. All three must agree slot for slot. */
	size_t n = bal_layout_nslots(L);
	uint64_t *own = calloc(n, sizeof(*own));
	uint64_t *view = calloc(n, sizeof(*view));
	struct bal_published pub;
	cr_assert_eq(bal_pub_init(&pub, n), 0);
	static struct bal_delta_entry ent[NMIXED][64];
	struct bal_delta dl[NMIXED];
	const struct bal_delta *dp[NMIXED];
	char why[256] = "";
	uint64_t buf[2][8];
	struct bal_ctally ts[2];
	for (size_t i = 0; i < NMIXED; i++) {
		struct bal_batch b = mixed_batch((i * 3) % NMIXED, buf, ts);
		dl[i] = (struct bal_delta){.cap = 64, .e = ent[i]};
		cr_assert_eq(bal_tally_fold(D, L, &b, &dl[i], why, sizeof(why)), 0, "%s", why);
		cr_assert_eq(bal_tally_check(L, own, &dl[i], why, sizeof(why)), 0, "%s", why);
		bal_tally_apply(L, own, &dl[i]);
		dp[i] = &dl[i];
	}
	bal_pub_apply(&pub, L, dp, 3, 3);
	bal_pub_apply(&pub, L, dp + 3, NMIXED - 3, NMIXED);
	cr_assert_eq(bal_pub_read(&pub, view), NMIXED);
	cr_assert_eq(memcmp(view, own, n * sizeof(*own)), 0);
	uint64_t *replay = calloc(n, sizeof(*replay));
	for (size_t i = 0; i < NMIXED; i++)
		bal_tally_apply(L, replay, &dl[i]);
	cr_assert_eq(memcmp(replay, own, n * sizeof(*own)), 0);
	cr_assert_eq(view[bal_slot_global(L, BAL_G_PROTOCOLS)], 1);
	free(replay);
	free(view);
	free(own);
	bal_pub_deinit(&pub);
}

/*
 * bal_tally_check_headroom(): the exact check with every amount raised by the
 * headroom, at every level (precinct, district, national), and 0 headroom is
 * bal_tally_check().
 */
Test(tally, check_with_headroom_is_the_check_with_raised_amounts, .init = setup, .fini = teardown)
{
	uint64_t *ctr = calloc(bal_layout_nslots(L), sizeof(uint64_t));
	cr_assert(ctr);
	static const uint32_t list[] = {3, 3, 3, 3, 3};
	static const struct bal_column cols[] = {{FX_LIST, 5, list}};
	struct bal_batch b = {BALLOTS(12, cols)};
	char why[256] = "";
	cr_assert_eq(bal_tally_fold(D, L, &b, &DL, why, sizeof(why)), 0, "%s", why);
	uint32_t p = pidx(12), c1 = cidx(FX_LIST);
	const uint32_t slots[] = {bal_slot_precinct_choice(L, p, c1, 3),
	                          bal_slot_district_choice(L, c1, D->precincts[p].district, 3),
	                          bal_slot_contest_choice(L, c1, 3)};
	for (size_t i = 0; i < NELEM(slots); i++) {
		memset(ctr, 0, bal_layout_nslots(L) * sizeof(uint64_t));
		ctr[slots[i]] = UINT64_MAX - 10; /* room for 10 more */
		cr_assert_eq(bal_tally_check(L, ctr, &DL, why, sizeof(why)), 0, "level %zu: %s", i, why);
		cr_assert_eq(bal_tally_check_headroom(L, ctr, &DL, 0, why, sizeof(why)), 0, "level %zu", i);
		cr_assert_eq(bal_tally_check_headroom(L, ctr, &DL, 5, why, sizeof(why)), 0, "level %zu: 5 + 5 fit", i);
		cr_assert_eq(bal_tally_check_headroom(L, ctr, &DL, 6, why, sizeof(why)), BAL_EOVERFLOW,
		             "level %zu: 5 + 6 do not fit", i);
		cr_assert_eq(bal_tally_check_headroom(L, ctr, &DL, UINT64_MAX, NULL, 0), BAL_EOVERFLOW,
		             "level %zu: the raised amount itself overflows", i);
	}
	/* The global batch count takes the headroom too. */
	memset(ctr, 0, bal_layout_nslots(L) * sizeof(uint64_t));
	ctr[bal_slot_global(L, BAL_G_BATCHES)] = UINT64_MAX - 3;
	cr_assert_eq(bal_tally_check_headroom(L, ctr, &DL, 2, why, sizeof(why)), 0);
	cr_assert_eq(bal_tally_check_headroom(L, ctr, &DL, 3, why, sizeof(why)), BAL_EOVERFLOW);
	free(ctr);
}
