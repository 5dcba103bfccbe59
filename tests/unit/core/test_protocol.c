/* SPDX-License-Identifier: Apache-2.0 */
/*
 * PROTOCOL batches across the two folds: the daemon's counters
 * (core/tally.h) and the independent expected totals
 * (client/expect.c) must agree on every total, precinct contribution, ballot
 * sum and discrepancy for any mix of batches in any order; and the
 * generator's protocols (client/gen.c) are the sums of the batches they
 * cover, or differ from them by exactly the requested shift. Voids too: the
 * daemon's (bal_tally_void()) and the independent one (bal_expect_void())
 * agree whatever is voided in whatever order.
 */
#include "tests/unit/core/fixture.h"

#include "defn/defn.h"
#include "client/expect.h"
#include "client/gen.h"

#include "tests/common/params.h"

#include <stdlib.h>
#include <string.h>

static struct bal_defn *D;
static struct bal_layout *L;
static struct bal_delta_entry E[64];
static struct bal_delta DL;

static void setup(void)
{
	fx_load(&D, &L);
	DL = (struct bal_delta){.cap = NELEM(E), .e = E};
}

static void teardown(void)
{
	bal_layout_free(L);
	bal_defn_free(D);
}

static struct bal_gen *new_gen(enum bal_kind kind, uint32_t batch_size)
{
	struct bal_gen_opts o = {.seed = 77, .key_seed = 77, .batch_size = batch_size, .kind = kind};
	struct bal_gen *g = NULL;
	char why[256] = "";
	cr_assert_eq(bal_gen_new(D, &o, &g, why, sizeof(why)), 0, "%s", why);
	return g;
}

/* Every number both folds expose, compared. */
static void assert_agree(const uint64_t *ctr, const struct bal_expect *e, const char *when)
{
	for (uint32_t c = 0; c < D->ncontests; c++)
		for (uint32_t k = 0; k < D->contests[c].nchoices; k++) {
			cr_assert_eq(ctr[bal_slot_contest_choice(L, c, k)], bal_expect_votes(e, c, k),
			             "%s: contest %u choice %u", when, D->contests[c].id, k);
			for (uint32_t di = 0; di < D->ndistricts; di++) {
				uint32_t s = bal_slot_district_choice(L, c, di, k);
				if (s != BAL_SLOT_NONE)
					cr_assert_eq(ctr[s], bal_expect_district_votes(e, c, di, k),
					             "%s: contest %u district %u choice %u", when, D->contests[c].id,
					             D->districts[di].id, k);
			}
		}
	for (uint32_t p = 0; p < D->nprecincts; p++) {
		cr_assert_eq(bal_tally_protocol_seq(L, ctr, p), bal_expect_protocol_seq(e, p), "%s: precinct %u seq",
		             when, D->precincts[p].id);
		for (uint32_t c = 0; c < D->ncontests; c++) {
			if (!bal_defn_votes_in(D, p, c))
				continue;
			for (uint32_t k = 0; k < D->contests[c].nchoices; k++) {
				uint32_t s = bal_slot_precinct_choice(L, p, c, k);
				cr_assert_eq(ctr[s], bal_expect_precinct_votes(e, p, c, k), "%s: precinct %u", when,
				             D->precincts[p].id);
				uint64_t bsum = bal_expect_precinct_ballot_votes(e, p, c, k);
				cr_assert_eq(bal_tally_ballot_sum(L, ctr, p, s), bsum, "%s: precinct %u ballot sum",
				             when, D->precincts[p].id);
			}
		}
		struct bal_expect_turnout eff, sums;
		bal_expect_precinct_turnout(e, p, false, &eff);
		bal_expect_precinct_turnout(e, p, true, &sums);
		const uint64_t want[BAL_T_NFIELDS] = {eff.batches, eff.ballots, eff.issued, eff.cast, eff.spoiled};
		const uint64_t want_sums[BAL_T_NFIELDS] = {sums.batches, sums.ballots, sums.issued, sums.cast,
		                                           sums.spoiled};
		for (uint32_t f = 0; f < BAL_T_NFIELDS; f++) {
			uint32_t s = bal_slot_precinct_turnout(L, p, f);
			cr_assert_eq(ctr[s], want[f], "%s: precinct %u turnout %u", when, D->precincts[p].id, f);
			cr_assert_eq(bal_tally_ballot_sum(L, ctr, p, s), want_sums[f], "%s: precinct %u turnout sum %u",
			             when, D->precincts[p].id, f);
		}
	}
	struct bal_expect_turnout t;
	bal_expect_turnout(e, &t);
	const uint64_t tw[BAL_T_NFIELDS] = {t.batches, t.ballots, t.issued, t.cast, t.spoiled};
	for (uint32_t f = 0; f < BAL_T_NFIELDS; f++)
		cr_assert_eq(ctr[bal_slot_total_turnout(L, f)], tw[f], "%s: national turnout %u", when, f);
	cr_assert_eq(ctr[bal_slot_global(L, BAL_G_BATCHES)], t.batches, "%s", when);
	cr_assert_eq(ctr[bal_slot_global(L, BAL_G_PRECINCTS_REPORTING)], bal_expect_precincts_reporting(e), "%s", when);
	cr_assert_eq(ctr[bal_slot_global(L, BAL_G_PROTOCOLS)], bal_expect_precincts_with_protocol(e), "%s", when);
	cr_assert_eq(ctr[bal_slot_global(L, BAL_G_DISCREPANCIES)], bal_expect_precincts_with_discrepancy(e), "%s",
	             when);
}

static void fold_both(uint64_t *ctr, struct bal_expect *e, const struct bal_batch *b)
{
	char why[256] = "";
	cr_assert_eq(bal_tally_fold(D, L, b, &DL, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(bal_tally_check(L, ctr, &DL, why, sizeof(why)), 0, "%s", why);
	bal_tally_apply(L, ctr, &DL);
	cr_assert_eq(bal_expect_fold(e, b, why, sizeof(why)), 0, "%s", why);
}

Test(protocol, daemon_fold_agrees_with_the_independent_fold, .init = setup, .fini = teardown)
{
	struct bal_gen *gb = new_gen(BAL_KIND_BALLOTS, 7), *gt = new_gen(BAL_KIND_TALLY, 5);
	uint64_t *ctr = calloc(bal_layout_nslots(L), sizeof(*ctr));
	struct bal_expect *e = bal_expect_new(D);
	uint64_t rs = 2023;
	for (int i = 0; i < 600; i++) {
		uint32_t p = (uint32_t)(fx_rand(&rs) % D->nprecincts);
		uint64_t seq = 1 + fx_rand(&rs) % 30;
		struct bal_batch b;
		const uint8_t *body;
		size_t len;
		char why[256] = "";
		switch (fx_rand(&rs) % 4) {
		case 0: cr_assert_eq(bal_gen_batch(gb, p, seq, &b, &body, &len, why, sizeof(why)), 0, "%s", why); break;
		case 1: cr_assert_eq(bal_gen_batch(gt, p, seq, &b, &body, &len, why, sizeof(why)), 0, "%s", why); break;
		default:
			cr_assert_eq(bal_gen_protocol(gt, p, seq, fx_rand(&rs) % 6, fx_rand(&rs) % 2 ? 0 : 3, &b, &body,
			                              &len, why, sizeof(why)),
			             0, "%s", why);
		}
		fold_both(ctr, e, &b);
		if (i % 50 == 49)
			assert_agree(ctr, e, "during the run");
	}
	assert_agree(ctr, e, "at the end");
	cr_assert_gt(ctr[bal_slot_global(L, BAL_G_PROTOCOLS)], 0);
	cr_assert_gt(ctr[bal_slot_global(L, BAL_G_DISCREPANCIES)], 0);
	bal_expect_free(e);
	free(ctr);
	bal_gen_free(gb);
	bal_gen_free(gt);
}

/* A batch both folds counted, kept with its fold for a void. */
struct kept {
	struct bal_batch b;
	struct bal_delta dl;
	struct bal_delta_entry e[64];
	uint64_t tally[4][8]; /* the batch's own copy of its counts (the generator reuses its buffers) */
	uint32_t choices[4][16];
	struct bal_ctally t[4];
	struct bal_column c[4];
	bool voided;
};

static void keep(struct kept *k, const struct bal_batch *b)
{
	k->b = *b;
	for (size_t i = 0; i < b->ntallies; i++) {
		cr_assert_leq(b->tallies[i].n, 8);
		memcpy(k->tally[i], b->tallies[i].counts, b->tallies[i].n * sizeof(uint64_t));
		k->t[i] = b->tallies[i];
		k->t[i].counts = k->tally[i];
	}
	for (size_t i = 0; i < b->ncolumns; i++) {
		cr_assert_leq(b->columns[i].n, 16);
		memcpy(k->choices[i], b->columns[i].choices, b->columns[i].n * sizeof(uint32_t));
		k->c[i] = b->columns[i];
		k->c[i].choices = k->choices[i];
	}
	k->b.tallies = k->t;
	k->b.columns = k->c;
	k->dl = (struct bal_delta){.cap = NELEM(k->e), .e = k->e};
	char why[256] = "";
	cr_assert_eq(bal_tally_fold(D, L, &k->b, &k->dl, why, sizeof(why)), 0, "%s", why);
	k->voided = false;
}

Test(protocol, daemon_void_agrees_with_the_independent_void, .init = setup, .fini = teardown)
{
	enum { STEPS = 500 };
	struct bal_gen *gb = new_gen(BAL_KIND_BALLOTS, 7), *gt = new_gen(BAL_KIND_TALLY, 5);
	uint64_t *ctr = calloc(bal_layout_nslots(L), sizeof(*ctr));
	struct bal_expect *e = bal_expect_new(D);
	struct kept *all = calloc(STEPS, sizeof(*all));
	bool used[5][31] = {{false}};
	size_t n = 0, voids = 0;
	uint64_t rs = 99;
	char why[256] = "";
	for (int step = 0; step < STEPS; step++) {
		if (n && fx_rand(&rs) % 4 == 0) {
			struct kept *x = &all[fx_rand(&rs) % n];
			if (x->voided)
				continue;
			/* The daemon's: the previous protocol is found by its caller. */
			const struct bal_delta *prev = NULL;
			if (x->dl.kind == BAL_DELTA_PROTOCOL &&
			    x->dl.seq == bal_tally_protocol_seq(L, ctr, x->dl.precinct))
				for (size_t i = 0; i < n; i++)
					if (&all[i] != x && !all[i].voided && all[i].dl.kind == BAL_DELTA_PROTOCOL &&
					    all[i].dl.precinct == x->dl.precinct &&
					    (!prev || all[i].dl.seq > prev->seq))
						prev = &all[i].dl;
			cr_assert_eq(bal_tally_check_void(L, ctr, &x->dl, prev, why, sizeof(why)), 0, "%s", why);
			bal_tally_void(L, ctr, &x->dl, prev);
			cr_assert_eq(bal_expect_void(e, &x->b, why, sizeof(why)), 0, "%s", why);
			x->voided = true;
			voids++;
			/* A second void of the same batch is refused, and changes nothing. */
			if (x->b.kind == BAL_KIND_PROTOCOL)
				cr_assert_eq(bal_expect_void(e, &x->b, why, sizeof(why)), BAL_EINVALID);
		} else {
			uint32_t p = (uint32_t)(fx_rand(&rs) % D->nprecincts);
			uint64_t seq = 1 + fx_rand(&rs) % 30;
			if (used[p][seq])
				continue;
			used[p][seq] = true;
			struct bal_batch b;
			const uint8_t *body;
			size_t len;
			switch (fx_rand(&rs) % 3) {
			case 0:
				cr_assert_eq(bal_gen_batch(gb, p, seq, &b, &body, &len, why, sizeof(why)), 0, "%s",
				             why);
				break;
			case 1:
				cr_assert_eq(bal_gen_batch(gt, p, seq, &b, &body, &len, why, sizeof(why)), 0, "%s",
				             why);
				break;
			default:
				cr_assert_eq(bal_gen_protocol(gt, p, seq, fx_rand(&rs) % 4, fx_rand(&rs) % 2 ? 0 : 2,
				                              &b, &body, &len, why, sizeof(why)),
				             0, "%s", why);
			}
			keep(&all[n], &b);
			fold_both(ctr, e, &all[n].b);
			n++;
		}
		if (step % 25 == 24)
			assert_agree(ctr, e, "during the run");
	}
	assert_agree(ctr, e, "at the end");
	cr_assert_gt(voids, 50);
	free(all);
	bal_expect_free(e);
	free(ctr);
	bal_gen_free(gb);
	bal_gen_free(gt);
}

Test(protocol, expect_refuses_to_take_back_what_it_never_folded, .init = setup, .fini = teardown)
{
	static const uint64_t l8[8] = {1, 2, 3, 4, 5, 6, 7, 8}, d3[3] = {1, 2, 3};
	struct bal_ctally ts[2] = {{FX_LIST, 8, l8}, {FX_D10, 3, d3}};
	struct bal_batch b = {
	        .precinct_id = 12, .seq = 1, .kind = BAL_KIND_TALLY, .ntallies = 2, .tallies = ts, .election_id = "fx"};
	struct bal_expect *e = bal_expect_new(D);
	char why[256] = "";
	cr_assert_eq(bal_expect_void(e, &b, why, sizeof(why)), BAL_EINVALID);
	cr_assert_str_eq(why, "1 to take back, the precinct's ballot sum of a choice holds 0");
	b.kind = BAL_KIND_PROTOCOL;
	b.has_turnout = true;
	cr_assert_eq(bal_expect_void(e, &b, why, sizeof(why)), BAL_EINVALID);
	cr_assert_str_eq(why, "precinct 12 has no protocol of seq 1 folded (or it is voided already)");
	struct bal_expect_turnout t;
	bal_expect_turnout(e, &t);
	cr_assert_eq(t.batches, 0);
	bal_expect_free(e);
}

Test(protocol, generated_protocol_is_the_sum_of_the_batches_it_covers, .init = setup, .fini = teardown)
{
	/* Ballot batches 1..4 and then their protocol: no discrepancy, and the
	 * totals are what the batches alone gave. Same for the TALLY generator. */
	for (int kind = BAL_KIND_BALLOTS; kind <= BAL_KIND_TALLY; kind++) {
		struct bal_gen *g = new_gen((enum bal_kind)kind, 9);
		uint64_t *ctr = calloc(bal_layout_nslots(L), sizeof(*ctr));
		struct bal_expect *e = bal_expect_new(D);
		uint32_t p = (uint32_t)bal_defn_precinct(D, 12);
		struct bal_batch b;
		const uint8_t *body;
		size_t len;
		char why[256] = "";
		for (uint64_t s = 1; s <= 4; s++) {
			cr_assert_eq(bal_gen_batch(g, p, s, &b, &body, &len, why, sizeof(why)), 0, "%s", why);
			fold_both(ctr, e, &b);
		}
		size_t n = bal_layout_nslots(L);
		uint64_t *before = malloc(n * sizeof(*before));
		memcpy(before, ctr, n * sizeof(*ctr));
		cr_assert_eq(bal_gen_protocol(g, p, 5, 4, 0, &b, &body, &len, why, sizeof(why)), 0, "%s", why);
		cr_assert_eq(b.kind, BAL_KIND_PROTOCOL);
		cr_assert_eq(b.ntallies, 2, "every contest of precinct 12's ballot");
		cr_assert_eq(b.ballots_cast, 36);
		fold_both(ctr, e, &b);
		assert_agree(ctr, e, "after the protocol");
		cr_assert_eq(ctr[bal_slot_global(L, BAL_G_DISCREPANCIES)], 0);
		cr_assert_eq(ctr[bal_slot_global(L, BAL_G_PROTOCOLS)], 1);
		for (uint32_t c = 0; c < D->ncontests; c++)
			for (uint32_t k = 0; k < D->contests[c].nchoices; k++)
				cr_assert_eq(ctr[bal_slot_contest_choice(L, c, k)],
				             before[bal_slot_contest_choice(L, c, k)]);
		free(before);
		bal_expect_free(e);
		free(ctr);
		bal_gen_free(g);
	}
}

Test(protocol, generated_shift_moves_votes_from_the_leader, .init = setup, .fini = teardown)
{
	struct bal_gen *g = new_gen(BAL_KIND_BALLOTS, 20);
	uint32_t p = (uint32_t)bal_defn_precinct(D, 7);
	struct bal_batch b;
	const uint8_t *body;
	size_t len;
	char why[256] = "";
	cr_assert_eq(bal_gen_protocol(g, p, 3, 2, 0, &b, &body, &len, why, sizeof(why)), 0, "%s", why);
	uint64_t plain[2][8] = {{0}};
	for (size_t i = 0; i < b.ntallies; i++)
		memcpy(plain[i], b.tallies[i].counts, b.tallies[i].n * sizeof(uint64_t));
	cr_assert_eq(bal_gen_protocol(g, p, 3, 2, 5, &b, &body, &len, why, sizeof(why)), 0, "%s", why);
	uint64_t up = 0, down = 0;
	size_t changed = 0;
	for (size_t i = 0; i < b.ntallies; i++) {
		uint64_t before = 0, after = 0;
		for (size_t k = 0; k < b.tallies[i].n; k++) {
			before += plain[i][k];
			after += b.tallies[i].counts[k];
			if (b.tallies[i].counts[k] > plain[i][k])
				up += b.tallies[i].counts[k] - plain[i][k];
			else
				down += plain[i][k] - b.tallies[i].counts[k];
			changed += b.tallies[i].counts[k] != plain[i][k];
		}
		cr_assert_eq(before, after, "a shift moves votes, it does not add any");
	}
	cr_assert_eq(up, 5);
	cr_assert_eq(down, 5);
	cr_assert_eq(changed, 2);
	bal_gen_free(g);
}

struct bad_protocol {
	const char *name;
	int err;
	const char *why;
};

static const struct bad_protocol bad_protocols[] = {
        {"missing contest", BAL_EINVALID,
         "kind PROTOCOL: contest 101 is on the ballot of precinct 12 but has no tally"},
        {"no turnout", BAL_EINVALID, "kind PROTOCOL: no turnout, a protocol must have one"},
        {"ballots", BAL_EINVALID, "kind PROTOCOL: 1 ballot columns, a protocol has none"},
        {"short tally", BAL_EINVALID, "tallies[1].counts: 2 counts, but contest 101 has 3 choices"},
};

INDEX_PARAMS(protocol, expect_refuses_incomplete_protocols, bad_protocols)

ParameterizedTest(size_t *ix, protocol, expect_refuses_incomplete_protocols, .init = setup, .fini = teardown)
{
	const struct bad_protocol *bp = &bad_protocols[*ix];
	static const uint64_t l8[8] = {1, 2, 3, 4, 5, 6, 7, 8}, d3[3] = {1, 2, 3};
	static const uint32_t ch[1] = {0};
	struct bal_ctally ts[2] = {{FX_LIST, 8, l8}, {FX_D10, 3, d3}};
	struct bal_column col = {FX_LIST, 1, ch};
	struct bal_batch b = {.precinct_id = 12,
	                      .seq = 1,
	                      .kind = BAL_KIND_PROTOCOL,
	                      .ntallies = 2,
	                      .tallies = ts,
	                      .has_turnout = true};
	switch (*ix) {
	case 0: b.ntallies = 1; break;
	case 1: b.has_turnout = false; break;
	case 2:
		b.ncolumns = 1;
		b.columns = &col;
		break;
	default: ts[1].n = 2;
	}
	struct bal_expect *e = bal_expect_new(D);
	char why[256] = "";
	cr_assert_eq(bal_expect_fold(e, &b, why, sizeof(why)), bp->err, "%s: %s", bp->name, why);
	cr_assert_str_eq(why, bp->why, "%s", bp->name);
	struct bal_expect_turnout t;
	bal_expect_turnout(e, &t);
	cr_assert_eq(t.batches, 0, "%s: a refused batch changed the totals", bp->name);
	/* The daemon's fold refuses the same batch. */
	cr_assert_eq(bal_tally_fold(D, L, &b, &DL, why, sizeof(why)), BAL_EINVALID, "%s", bp->name);
	bal_expect_free(e);
}

Test(protocol, expect_ignores_an_older_protocol, .init = setup, .fini = teardown)
{
	struct bal_gen *g = new_gen(BAL_KIND_TALLY, 10);
	uint64_t *ctr = calloc(bal_layout_nslots(L), sizeof(*ctr));
	struct bal_expect *e = bal_expect_new(D);
	uint32_t p = (uint32_t)bal_defn_precinct(D, 99);
	struct bal_batch b;
	const uint8_t *body;
	size_t len;
	char why[256] = "";
	cr_assert_eq(bal_gen_protocol(g, p, 8, 3, 0, &b, &body, &len, why, sizeof(why)), 0, "%s", why);
	fold_both(ctr, e, &b);
	cr_assert_eq(bal_gen_protocol(g, p, 2, 1, 4, &b, &body, &len, why, sizeof(why)), 0, "%s", why);
	fold_both(ctr, e, &b);
	cr_assert_eq(bal_expect_protocol_seq(e, p), 8);
	struct bal_expect_turnout t;
	bal_expect_precinct_turnout(e, p, false, &t);
	cr_assert_eq(t.cast, 30);
	cr_assert_eq(t.batches, 2);
	cr_assert_eq(bal_expect_precincts_with_protocol(e), 1);
	assert_agree(ctr, e, "after the older protocol");
	bal_expect_free(e);
	free(ctr);
	bal_gen_free(g);
}
