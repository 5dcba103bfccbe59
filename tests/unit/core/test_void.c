/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Voids (core/tally.h): reverting a precinct from its protocol to its ballot
 * sums keeps every total and both discrepancy globals right; a void leaves
 * exactly the counters of the fold of the batches that remain, whatever mix
 * of kinds, orders and voids (the previous protocol counting again when the
 * counted one goes); and a void the counters cannot take is refused, naming
 * why, without touching them.
 */
#include "tests/unit/core/fixture.h"

#include "defn/defn.h"
#include "client/gen.h"

#include "tests/common/params.h"

#include <stdlib.h>
#include <string.h>

static struct bal_defn *D;
static struct bal_layout *L;
static size_t N; /* slots */

static void setup(void)
{
	fx_load(&D, &L);
	N = bal_layout_nslots(L);
}

static void teardown(void)
{
	bal_layout_free(L);
	bal_defn_free(D);
}

/* A batch as the journal would hold it: its fold, kept. */
struct kept {
	struct bal_delta dl;
	struct bal_delta_entry e[64];
	bool voided;
};

static void fold(const struct bal_batch *b, struct kept *k)
{
	k->dl = (struct bal_delta){.cap = NELEM(k->e), .e = k->e};
	k->voided = false;
	char why[256] = "";
	cr_assert_eq(bal_tally_fold(D, L, b, &k->dl, why, sizeof(why)), 0, "%s", why);
}

static void apply(uint64_t *ctr, const struct kept *k)
{
	char why[256] = "";
	cr_assert_eq(bal_tally_check(L, ctr, &k->dl, why, sizeof(why)), 0, "%s", why);
	bal_tally_apply(L, ctr, &k->dl);
}

/* The protocol that counts once `x` goes: the highest-seq protocol of its
 * precinct among the kept ones, other than `x` and not voided. */
static const struct bal_delta *previous(const struct kept *all, size_t n, const struct kept *x)
{
	const struct bal_delta *best = NULL;
	for (size_t i = 0; i < n; i++) {
		const struct bal_delta *d = &all[i].dl;
		if (&all[i] == x || all[i].voided || d->kind != BAL_DELTA_PROTOCOL || d->precinct != x->dl.precinct)
			continue;
		if (!best || d->seq > best->seq)
			best = d;
	}
	return best;
}

static void void_one(uint64_t *ctr, struct kept *all, size_t n, struct kept *x)
{
	const struct bal_delta *prev = x->dl.kind == BAL_DELTA_PROTOCOL ? previous(all, n, x) : NULL;
	char why[256] = "";
	cr_assert_eq(bal_tally_check_void(L, ctr, &x->dl, prev, why, sizeof(why)), 0, "%s", why);
	bal_tally_void(L, ctr, &x->dl, prev);
	x->voided = true;
}

/* `ctr` equals, slot for slot, the fold of the batches not voided. */
static void assert_fold_of_the_rest(const uint64_t *ctr, const struct kept *all, size_t n, const char *when)
{
	uint64_t *ref = calloc(N, sizeof(*ref));
	for (size_t i = 0; i < n; i++)
		if (!all[i].voided)
			apply(ref, &all[i]);
	for (size_t s = 0; s < N; s++)
		cr_assert_eq(ctr[s], ref[s], "%s: slot %zu is %llu, the fold of the rest gives %llu", when, s,
		             (unsigned long long)ctr[s], (unsigned long long)ref[s]);
	free(ref);
}

static struct bal_gen *new_gen(enum bal_kind kind, uint32_t batch_size)
{
	struct bal_gen_opts o = {.seed = 41, .key_seed = 41, .batch_size = batch_size, .kind = kind};
	struct bal_gen *g = NULL;
	char why[256] = "";
	cr_assert_eq(bal_gen_new(D, &o, &g, why, sizeof(why)), 0, "%s", why);
	return g;
}

Test(void, revert_protocol_restores_the_ballot_sums, .init = setup, .fini = teardown)
{
	struct bal_gen *g = new_gen(BAL_KIND_BALLOTS, 11);
	uint64_t *ctr = calloc(N, sizeof(*ctr));
	const uint32_t p = fx_precinct(D, 12);
	struct kept k;
	struct bal_batch b;
	const uint8_t *body;
	size_t len;
	char why[256] = "";
	for (uint64_t s = 1; s <= 3; s++) {
		cr_assert_eq(bal_gen_batch(g, p, s, &b, &body, &len, why, sizeof(why)), 0, "%s", why);
		fold(&b, &k);
		apply(ctr, &k);
	}
	uint64_t *before = malloc(N * sizeof(*before));
	memcpy(before, ctr, N * sizeof(*ctr));
	/* A protocol that moves 4 votes: a discrepancy. */
	cr_assert_eq(bal_gen_protocol(g, p, 4, 3, 4, &b, &body, &len, why, sizeof(why)), 0, "%s", why);
	fold(&b, &k);
	apply(ctr, &k);
	cr_assert_eq(ctr[bal_slot_global(L, BAL_G_PROTOCOLS)], 1);
	cr_assert_eq(ctr[bal_slot_global(L, BAL_G_DISCREPANCIES)], 1);
	cr_assert_eq(bal_tally_protocol_seq(L, ctr, p), 4);

	bal_tally_revert_protocol(L, ctr, p);
	cr_assert_eq(bal_tally_protocol_seq(L, ctr, p), 0);
	cr_assert_eq(ctr[bal_slot_global(L, BAL_G_PROTOCOLS)], 0);
	cr_assert_eq(ctr[bal_slot_global(L, BAL_G_DISCREPANCIES)], 0);
	/* Everything is as before the protocol but the batch it still counts. */
	const uint32_t counted[] = {bal_slot_precinct_turnout(L, p, BAL_T_BATCHES),
	                            bal_slot_district_turnout(L, D->precincts[p].district, BAL_T_BATCHES),
	                            bal_slot_total_turnout(L, BAL_T_BATCHES), bal_slot_global(L, BAL_G_BATCHES)};
	for (size_t s = 0; s < N; s++) {
		bool one_more = false;
		for (size_t i = 0; i < NELEM(counted); i++)
			one_more |= counted[i] == s;
		cr_assert_eq(ctr[s], before[s] + one_more, "slot %zu", s);
	}
	/* Its shadows are clear again: a new protocol starts from the ballot sums. */
	for (uint32_t f = BAL_T_ISSUED; f < BAL_T_NFIELDS; f++)
		cr_assert_eq(ctr[bal_slot_precinct_shadow(L, p, bal_slot_precinct_turnout(L, p, f))], 0);
	/* Reverting a precinct without a protocol changes nothing. */
	memcpy(before, ctr, N * sizeof(*ctr));
	bal_tally_revert_protocol(L, ctr, p);
	cr_assert_arr_eq(ctr, before, N * sizeof(*ctr));
	free(before);
	free(ctr);
	bal_gen_free(g);
}

Test(void, leaves_the_fold_of_the_batches_that_remain, .init = setup, .fini = teardown)
{
	enum { STEPS = 700 };
	struct bal_gen *gb = new_gen(BAL_KIND_BALLOTS, 6), *gt = new_gen(BAL_KIND_TALLY, 9);
	uint64_t *ctr = calloc(N, sizeof(*ctr));
	struct kept *all = calloc(STEPS, sizeof(*all));
	bool used[5][41] = {{false}};
	size_t n = 0, voids = 0, protocol_voids = 0, reverted_to_older = 0;
	uint64_t rs = 777;
	for (int step = 0; step < STEPS; step++) {
		if (n && fx_rand(&rs) % 5 == 0) {
			struct kept *x = &all[fx_rand(&rs) % n];
			if (x->voided)
				continue;
			const bool counted = x->dl.kind == BAL_DELTA_PROTOCOL &&
			                     x->dl.seq == bal_tally_protocol_seq(L, ctr, x->dl.precinct);
			protocol_voids += counted;
			reverted_to_older += counted && previous(all, n, x);
			void_one(ctr, all, n, x);
			voids++;
		} else {
			uint32_t p = (uint32_t)(fx_rand(&rs) % D->nprecincts);
			uint64_t seq = 1 + fx_rand(&rs) % 40;
			if (used[p][seq])
				continue;
			used[p][seq] = true;
			struct bal_batch b;
			const uint8_t *body;
			size_t len;
			char why[256] = "";
			int kind = (int)(fx_rand(&rs) % 4);
			int rc = kind == 0   ? bal_gen_batch(gb, p, seq, &b, &body, &len, why, sizeof(why))
			         : kind == 1 ? bal_gen_batch(gt, p, seq, &b, &body, &len, why, sizeof(why))
			                     : bal_gen_protocol(gt, p, seq, fx_rand(&rs) % 5, fx_rand(&rs) % 3, &b,
			                                        &body, &len, why, sizeof(why));
			cr_assert_eq(rc, 0, "%s", why);
			fold(&b, &all[n]);
			apply(ctr, &all[n]);
			n++;
		}
		if (step % 25 == 24)
			assert_fold_of_the_rest(ctr, all, n, "during the run");
	}
	assert_fold_of_the_rest(ctr, all, n, "at the end");
	cr_assert_gt(protocol_voids, 5, "counted protocols voided: %zu", protocol_voids);
	cr_assert_gt(reverted_to_older, 2, "an older protocol counting again: %zu", reverted_to_older);
	cr_assert_gt(voids, 50);
	/* Voiding everything leaves zeros. */
	for (size_t i = 0; i < n; i++)
		if (!all[i].voided)
			void_one(ctr, all, n, &all[i]);
	for (size_t s = 0; s < N; s++)
		cr_assert_eq(ctr[s], 0, "slot %zu after voiding every batch", s);
	free(all);
	free(ctr);
	bal_gen_free(gb);
	bal_gen_free(gt);
}

/* Hand-made batches of precinct 30 (district 30: the list only) and 12. */
static struct bal_batch tally(uint32_t id, uint64_t seq, enum bal_kind kind, const uint64_t *list, const uint64_t *d10,
                              struct bal_ctally *ts)
{
	ts[0] = (struct bal_ctally){FX_LIST, FX_LIST_N, list};
	ts[1] = (struct bal_ctally){FX_D10, FX_D10_N, d10};
	return (struct bal_batch){.precinct_id = id,
	                          .seq = seq,
	                          .kind = kind,
	                          .ntallies = d10 ? 2 : 1,
	                          .tallies = ts,
	                          .has_turnout = kind == BAL_KIND_PROTOCOL,
	                          .election_id = "fx"};
}

Test(void, refuses_a_void_the_counters_cannot_take, .init = setup, .fini = teardown)
{
	static const uint64_t big[FX_LIST_N] = {1ULL << 63}, zero[FX_LIST_N] = {0}, d10[FX_D10_N] = {0};
	uint64_t *ctr = calloc(N, sizeof(*ctr));
	struct bal_ctally ts[2];
	struct kept ballots30, protocol30, ballots12, never;
	struct bal_batch b = tally(30, 1, BAL_KIND_TALLY, big, NULL, ts);
	fold(&b, &ballots30);
	apply(ctr, &ballots30);
	b = tally(30, 2, BAL_KIND_PROTOCOL, zero, NULL, ts);
	fold(&b, &protocol30);
	apply(ctr, &protocol30);
	b = tally(12, 1, BAL_KIND_TALLY, big, d10, ts);
	fold(&b, &ballots12);
	apply(ctr, &ballots12);
	uint64_t *before = malloc(N * sizeof(*before));
	memcpy(before, ctr, N * sizeof(*ctr));

	/* Precinct 30 back to its ballot sums: 2^63 + 2^63 in the national total. */
	char why[256] = "";
	cr_assert_eq(bal_tally_check_void(L, ctr, &protocol30.dl, NULL, why, sizeof(why)), BAL_EOVERFLOW);
	cr_assert_str_eq(why, "contest 1 choice 0 national total would overflow 64 bits");
	/* A protocol newer than the counted one was never counted. */
	b = tally(30, 3, BAL_KIND_PROTOCOL, zero, NULL, ts);
	fold(&b, &never);
	cr_assert_eq(bal_tally_check_void(L, ctr, &never.dl, NULL, why, sizeof(why)), BAL_ECORRUPT);
	cr_assert_str_eq(why, "precinct 30: the protocol of seq 3 is newer than the counted one (seq 2): the "
	                      "counters are inconsistent");
	/* A batch that was never added cannot be taken away. */
	b = tally(12, 2, BAL_KIND_TALLY, big, d10, ts);
	ts[0].counts = (const uint64_t[FX_LIST_N]){0, 5};
	fold(&b, &never);
	cr_assert_eq(bal_tally_check_void(L, ctr, &never.dl, NULL, why, sizeof(why)), BAL_ECORRUPT);
	cr_assert_str_eq(why, "precinct 12: contest 1 choice 1 of the precinct holds 0, below the 5 a void takes "
	                      "away: the counters are inconsistent");
	/* Behind a protocol, precinct 30's ballot sum is what a void takes from. */
	b = tally(30, 4, BAL_KIND_TALLY, big, NULL, ts);
	ts[0].counts = (const uint64_t[FX_LIST_N]){0, 0, 9};
	fold(&b, &never);
	cr_assert_eq(bal_tally_check_void(L, ctr, &never.dl, NULL, why, sizeof(why)), BAL_ECORRUPT);
	cr_assert_str_eq(why, "precinct 30: contest 1 choice 2 of its ballot sum holds 0, below the 9 a void takes "
	                      "away: the counters are inconsistent");
	cr_assert_arr_eq(ctr, before, N * sizeof(*ctr), "a check never writes");
	/* Once precinct 12's batch is voided, precinct 30's protocol can go. */
	cr_assert_eq(bal_tally_check_void(L, ctr, &ballots12.dl, NULL, why, sizeof(why)), 0, "%s", why);
	bal_tally_void(L, ctr, &ballots12.dl, NULL);
	cr_assert_eq(bal_tally_check_void(L, ctr, &protocol30.dl, NULL, why, sizeof(why)), 0, "%s", why);
	bal_tally_void(L, ctr, &protocol30.dl, NULL);
	cr_assert_eq(ctr[bal_slot_contest_choice(L, fx_contest(D, FX_LIST), 0)], 1ULL << 63);
	cr_assert_eq(ctr[bal_slot_global(L, BAL_G_PRECINCTS_REPORTING)], 1, "precinct 12 has no batch left");
	cr_assert_eq(ctr[bal_slot_global(L, BAL_G_BATCHES)], 1);
	free(before);
	free(ctr);
}

Test(void, published_void_moves_the_position, .init = setup, .fini = teardown)
{
	static const uint64_t list[FX_LIST_N] = {3, 4}, d10[FX_D10_N] = {1};
	struct bal_published pub;
	cr_assert_eq(bal_pub_init(&pub, N), 0);
	struct bal_ctally ts[2];
	struct kept k;
	struct bal_batch b = tally(12, 1, BAL_KIND_TALLY, list, d10, ts);
	fold(&b, &k);
	const struct bal_delta *dls[] = {&k.dl};
	bal_pub_apply(&pub, L, dls, 1, 1);
	cr_assert_eq(pub.ctr[bal_slot_contest_choice(L, fx_contest(D, FX_LIST), 1)], 4);
	bal_pub_void(&pub, L, NULL, NULL, 2); /* an amendment that changes no counter */
	uint64_t *copy = calloc(N, sizeof(*copy));
	cr_assert_eq(bal_pub_read(&pub, copy), 2);
	bal_pub_void(&pub, L, &k.dl, NULL, 3);
	cr_assert_eq(bal_pub_read(&pub, copy), 3);
	for (size_t s = 0; s < N; s++)
		cr_assert_eq(copy[s], 0, "slot %zu", s);
	free(copy);
	bal_pub_deinit(&pub);
}
