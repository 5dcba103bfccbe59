/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Plausibility bounds: one batch of a bounded precinct (bal_tally_fold())
 * and the sums of its BALLOTS and TALLY batches, with and without the
 * deltas of an open group (bal_tally_check_plausible(), struct
 * bal_pending). Every bound is accepted at its limit and refused one above
 * it, with the reason naming the precinct, the quantity, the value and the
 * limit; unbounded precincts pass everything but the seq range.
 */
#include "tests/unit/core/fixture.h"

#include "defn/defn.h"

#include "tests/common/params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Precinct 17 (district 1) may count 100 (its own margin of 0 overrides the
 * default of 5), 18 (district 1) 100 + 5, 19 (district 2) anything, 20
 * (district 2) nothing. District 1 votes in contests 1 and 101, district 2
 * in contest 1 only. Seqs run from 1 to 1000.
 */
static const char json[] =
        "{\"election\": {\"id\": \"pl\", \"name\": \"Plausible\", \"date\": \"2023-03-19\"},"
        " \"limits\": {\"registration_margin\": 5, \"max_seq\": 1000},"
        " \"districts\": [{\"id\": 1, \"name\": \"North\"}, {\"id\": 2, \"name\": \"South\"}],"
        " \"contests\": [{\"id\": 1, \"name\": \"List\", \"kind\": \"party_list\", \"seats\": 10,"
        "                \"choices\": [{\"id\": 0, \"name\": \"A\"}, {\"id\": 1, \"name\": \"B\"},"
        "                             {\"id\": 2, \"name\": \"C\"}]},"
        "               {\"id\": 101, \"name\": \"North seat\", \"kind\": \"single_member\", \"district_id\": 1,"
        "                \"choices\": [{\"id\": 0, \"name\": \"X\"}, {\"id\": 1, \"name\": \"Y\"}]}],"
        " \"precincts\": [{\"id\": 17, \"district_id\": 1, \"registered_voters\": 100, \"registration_margin\": 0},"
        "               {\"id\": 18, \"district_id\": 1, \"registered_voters\": 100},"
        "               {\"id\": 19, \"district_id\": 2, \"unbounded\": true},"
        "               {\"id\": 20, \"district_id\": 2, \"registered_voters\": 0, \"registration_margin\": 0}]}";

#define LIST 1
#define SEAT 101

static struct bal_defn *D;
static struct bal_layout *L;
static struct bal_pending *G;
static uint64_t *CTR;

static void setup(void)
{
	char why[256] = "";
	cr_assert_eq(bal_defn_parse(json, strlen(json), &D, why, sizeof(why)), 0, "%s", why);
	L = bal_layout_new(D);
	cr_assert_not_null(L);
	G = bal_pending_new(L);
	cr_assert_not_null(G);
	CTR = calloc(bal_layout_nslots(L), sizeof(*CTR));
	cr_assert_not_null(CTR);
}

static void teardown(void)
{
	free(CTR);
	bal_pending_free(G);
	bal_layout_free(L);
	bal_defn_free(D);
}

/* A delta with storage of its own. */
struct held {
	struct bal_delta_entry e[32];
	struct bal_delta dl;
};

static struct bal_delta *empty(struct held *h)
{
	h->dl = (struct bal_delta){.cap = NELEM(h->e), .e = h->e};
	return &h->dl;
}

/* ---- one batch: bal_tally_fold() ----------------------------------------------- */

/*
 * A batch of precinct `precinct`: BALLOTS with `nballots` ballots for choice
 * 0 of every contest on its ballot; TALLY and PROTOCOL with `list` for
 * contest 1 and, in district 1, `seat` for contest 101 (a TALLY leaves out a
 * contest whose counts are all zero).
 */
struct spec {
	const char *name;
	uint32_t precinct;
	enum bal_kind kind;
	uint64_t seq; /* 0: seq 1, unless seq_zero */
	bool seq_zero;
	uint32_t nballots;
	uint64_t list[3], seat[2];
	bool turnout;
	uint64_t issued, cast, spoiled;
	int err;
	const char *why;
};

#define BALLOTS(pid, n) .precinct = (pid), .kind = BAL_KIND_BALLOTS, .nballots = (n)
#define TALLY(pid, ...) .precinct = (pid), .kind = BAL_KIND_TALLY, .list = {__VA_ARGS__}
#define TURNOUT(pid, i, c, s) \
	.precinct = (pid), .kind = BAL_KIND_TALLY, .turnout = true, .issued = (i), .cast = (c), .spoiled = (s)
#define PROTOCOL(pid, i, c, s) \
	.precinct = (pid), .kind = BAL_KIND_PROTOCOL, .turnout = true, .issued = (i), .cast = (c), .spoiled = (s)
#define OK                       .err = 0, .why = ""
#define REFUSED(text)            .err = BAL_EINVALID, .why = (text)
#define BEYOND(pid, what, limit) REFUSED("precinct " #pid ": " what ", above its " limit)

static const struct spec batch_cases[] = {
        {"ballots at the bound", BALLOTS(17, 100), OK},
        {"ballots above the bound", BALLOTS(17, 101),
         REFUSED("precinct 17: 101 ballots in this batch exceed its 100 registered voters + 0 margin")},
        {"ballots at the bound with the default margin", BALLOTS(18, 105), OK},
        {"ballots above the bound with the default margin", BALLOTS(18, 106),
         REFUSED("precinct 18: 106 ballots in this batch exceed its 100 registered voters + 5 margin")},
        {"tally sum at the bound", TALLY(17, 50, 30, 20), OK},
        {"tally sum above the bound", TALLY(17, 50, 30, 21),
         BEYOND(17, "tallies[0] (contest 1) counts 101 votes", "100 registered voters + 0 margin")},
        {"one count above the bound", TALLY(17, 0, 101, 0),
         BEYOND(17, "tallies[0] (contest 1) counts 101 votes", "100 registered voters + 0 margin")},
        {"second tally at the bound", TALLY(17, 1), .seat = {60, 40}, OK},
        {"second tally above the bound", TALLY(17, 1), .seat = {60, 41},
         BEYOND(17, "tallies[1] (contest 101) counts 101 votes", "100 registered voters + 0 margin")},
        {"tally sum with the margin", TALLY(18, 105), OK},
        {"tally sum above the margin", TALLY(18, 106),
         BEYOND(18, "tallies[0] (contest 1) counts 106 votes", "100 registered voters + 5 margin")},
        {"issued at the bound", TURNOUT(17, 100, 0, 0), OK},
        {"issued above the bound", TURNOUT(17, 101, 0, 0),
         REFUSED("precinct 17: turnout.ballots_issued 101 exceeds its 100 registered voters + 0 margin")},
        {"cast at the bound", TURNOUT(17, 100, 100, 0), OK},
        {"cast above the bound", TURNOUT(17, 100, 101, 0),
         REFUSED("precinct 17: turnout.ballots_cast 101 exceeds its 100 registered voters + 0 margin")},
        {"spoiled at the bound", TURNOUT(17, 100, 0, 100), OK},
        {"spoiled above the bound", TURNOUT(17, 100, 0, 101),
         REFUSED("precinct 17: turnout.ballots_spoiled 101 exceeds its 100 registered voters + 0 margin")},
        {"cast as many as issued", TURNOUT(17, 10, 10, 0), OK},
        {"cast more than issued", TURNOUT(17, 10, 11, 0),
         REFUSED("precinct 17: turnout.ballots_cast 11 exceeds turnout.ballots_issued 10")},
        {"spoiled as many as issued", TURNOUT(17, 10, 0, 10), OK},
        {"spoiled more than issued", TURNOUT(17, 10, 0, 11),
         REFUSED("precinct 17: turnout.ballots_spoiled 11 exceeds turnout.ballots_issued 10")},
        {"cast and spoiled each within issued", TURNOUT(17, 10, 10, 10), OK},
        {"turnout on a ballots batch", BALLOTS(17, 3), .turnout = true, .issued = 3, .cast = 4,
         REFUSED("precinct 17: turnout.ballots_cast 4 exceeds turnout.ballots_issued 3")},
        {"protocol at the bound", PROTOCOL(17, 100, 100, 0), .list = {100}, .seat = {0, 100}, OK},
        {"protocol tally above the bound", PROTOCOL(17, 100, 100, 0), .list = {100, 1}, .seat = {0, 100},
         BEYOND(17, "tallies[0] (contest 1) counts 101 votes", "100 registered voters + 0 margin")},
        {"protocol issued above the bound", PROTOCOL(17, 101, 100, 0), .list = {100},
         REFUSED("precinct 17: turnout.ballots_issued 101 exceeds its 100 registered voters + 0 margin")},
        {"protocol cast more than issued", PROTOCOL(17, 99, 100, 0), .list = {100},
         REFUSED("precinct 17: turnout.ballots_cast 100 exceeds turnout.ballots_issued 99")},
        {"seq zero", TALLY(17, 1), .seq_zero = true, REFUSED("seq must be >= 1 (got 0)")},
        {"seq at max_seq", TALLY(17, 1), .seq = 1000, OK},
        {"seq above max_seq", TALLY(17, 1), .seq = 1001, REFUSED("precinct 17: seq 1001 is above limits.max_seq 1000")},
        {"protocol seq above max_seq", PROTOCOL(17, 1, 1, 0), .list = {1}, .seq = 1001,
         REFUSED("precinct 17: seq 1001 is above limits.max_seq 1000")},
        {"unbounded: seq zero", TALLY(19, 1), .seq_zero = true, REFUSED("seq must be >= 1 (got 0)")},
        {"unbounded: seq at max_seq", TALLY(19, 1), .seq = 1000, OK},
        {"unbounded: seq above max_seq", TALLY(19, 1), .seq = 1001,
         REFUSED("precinct 19: seq 1001 is above limits.max_seq 1000")},
        {"unbounded: many ballots", BALLOTS(19, 1500), OK},
        {"unbounded: huge tally", TALLY(19, (uint64_t)1 << 62, (uint64_t)1 << 62, 7), OK},
        {"unbounded: cast more than issued", TURNOUT(19, 0, 5, 9), OK},
        {"unbounded: huge protocol", PROTOCOL(19, 1, UINT64_MAX, 2), .list = {UINT64_MAX}, OK},
        {"unbounded: the tally sum still fits 64 bits", TALLY(19, UINT64_MAX, 1), .err = BAL_EOVERFLOW,
         .why = "tallies[0] sum overflows 64 bits (at counts[1] = 1)"},
        {"zero bound: zero counts", TURNOUT(20, 0, 0, 0), OK},
        {"zero bound: one ballot", BALLOTS(20, 1),
         REFUSED("precinct 20: 1 ballots in this batch exceed its 0 registered voters + 0 margin")},
        {"zero bound: one vote", TALLY(20, 0, 0, 1),
         BEYOND(20, "tallies[0] (contest 1) counts 1 votes", "0 registered voters + 0 margin")},
};

static uint32_t zeros[2000];

/* The batch `s` describes; `cols` and `ts` hold its columns or tallies. */
static struct bal_batch batch_of(const struct spec *s, struct bal_column cols[2], struct bal_ctally ts[2])
{
	cr_assert_leq(s->nballots, NELEM(zeros));
	const bool north = s->precinct == 17 || s->precinct == 18;
	struct bal_batch b = {.precinct_id = s->precinct,
	                      .seq = s->seq_zero ? 0
	                             : s->seq    ? s->seq
	                                         : 1,
	                      .kind = s->kind};
	if (s->kind == BAL_KIND_BALLOTS) {
		cols[0] = (struct bal_column){LIST, s->nballots, zeros};
		cols[1] = (struct bal_column){SEAT, s->nballots, zeros};
		b.ncolumns = north ? 2 : 1;
		b.columns = cols;
	} else {
		const bool all = s->kind == BAL_KIND_PROTOCOL;
		if (all || s->list[0] || s->list[1] || s->list[2])
			ts[b.ntallies++] = (struct bal_ctally){LIST, 3, s->list};
		if (north && (all || s->seat[0] || s->seat[1]))
			ts[b.ntallies++] = (struct bal_ctally){SEAT, 2, s->seat};
		b.tallies = ts;
	}
	b.has_turnout = s->turnout;
	b.ballots_issued = s->issued;
	b.ballots_cast = s->cast;
	b.ballots_spoiled = s->spoiled;
	return b;
}

INDEX_PARAMS(plausible, one_batch, batch_cases)

ParameterizedTest(size_t *ix, plausible, one_batch, .init = setup, .fini = teardown)
{
	const struct spec *s = &batch_cases[*ix];
	struct bal_column cols[2];
	struct bal_ctally ts[2];
	struct bal_batch b = batch_of(s, cols, ts);
	struct held h;
	char why[256] = "";
	int err = bal_tally_fold(D, L, &b, empty(&h), why, sizeof(why));
	cr_assert_eq(err, s->err, "%s: got %d (%s)", s->name, err, why);
	cr_assert_str_eq(why, s->why, "%s", s->name);
}

/* ---- sums over several batches: bal_tally_check_plausible() ---------------------- */

/* The quantities a bounded precinct's ballot sums are bounded in. */
enum quantity { Q_BALLOTS, Q_LIST, Q_SEAT, Q_ISSUED, Q_CAST, Q_SPOILED };

static const struct {
	enum quantity q;
	const char *name; /* as the reason names it */
} quantities[] = {
        {Q_BALLOTS, "ballots"},           {Q_LIST, "contest 1 votes"},
        {Q_SEAT, "contest 101 votes"},    {Q_ISSUED, "turnout.ballots_issued"},
        {Q_CAST, "turnout.ballots_cast"}, {Q_SPOILED, "turnout.ballots_spoiled"},
};

/*
 * An ADD delta of precinct `id` that adds `amount` to quantity q and nothing
 * else but the batch count: a contest's votes go to choices 0 and 1 (half
 * each, the odd one to choice 0), so that the bound is on their sum.
 */
static struct bal_delta *adding(struct held *h, uint32_t id, enum quantity q, uint64_t amount)
{
	struct bal_delta *dl = empty(h);
	const uint32_t p = fx_precinct(D, id);
	dl->precinct = p;
	dl->kind = BAL_DELTA_ADD;
	h->e[dl->n++] = (struct bal_delta_entry){bal_slot_precinct_turnout(L, p, BAL_T_BATCHES), 1};
	static const enum bal_turnout_field field[] = {[Q_BALLOTS] = BAL_T_BALLOTS,
	                                               [Q_ISSUED] = BAL_T_ISSUED,
	                                               [Q_CAST] = BAL_T_CAST,
	                                               [Q_SPOILED] = BAL_T_SPOILED};
	if (q == Q_LIST || q == Q_SEAT) {
		const uint32_t c = fx_contest(D, q == Q_LIST ? LIST : SEAT);
		if (amount - amount / 2)
			h->e[dl->n++] =
			        (struct bal_delta_entry){bal_slot_precinct_choice(L, p, c, 0), amount - amount / 2};
		if (amount / 2)
			h->e[dl->n++] = (struct bal_delta_entry){bal_slot_precinct_choice(L, p, c, 1), amount / 2};
	} else if (amount) {
		h->e[dl->n++] = (struct bal_delta_entry){bal_slot_precinct_turnout(L, p, field[q]), amount};
	}
	dl->peak = amount > 1 ? amount : 1;
	return dl;
}

static int check(const struct bal_delta *dl, char *why, size_t whylen)
{
	return bal_tally_check_plausible(L, CTR, G, dl, why, whylen);
}

/* `dl` of precinct `id` is refused: `what` would reach before + add. */
static void expect_beyond(const struct bal_delta *dl, uint32_t id, const char *what, uint64_t before, uint64_t add)
{
	const struct bal_precinct *pr = &D->precincts[fx_precinct(D, id)];
	char why[256] = "", want[256];
	snprintf(want, sizeof(want),
	         "precinct %u: %s would reach %llu over its BALLOTS and TALLY batches (%llu before this batch + %llu "
	         "in it), above its %llu registered voters + %llu margin",
	         id, what, (unsigned long long)(before + add), (unsigned long long)before, (unsigned long long)add,
	         (unsigned long long)pr->registered_voters, (unsigned long long)pr->registration_margin);
	cr_assert_eq(check(dl, why, sizeof(why)), BAL_EINVALID, "%s: %s", what, why);
	cr_assert_str_eq(why, want);
}

static void apply_checked(const struct bal_delta *dl)
{
	char why[256] = "";
	cr_assert_eq(bal_tally_check(L, CTR, dl, why, sizeof(why)), 0, "%s", why);
	bal_tally_apply(L, CTR, dl);
}

INDEX_PARAMS(plausible, sums_over_applied_batches, quantities)

/* 60 + 40 reach the bound of 100, one more is refused; the margin widens it. */
ParameterizedTest(size_t *ix, plausible, sums_over_applied_batches, .init = setup, .fini = teardown)
{
	const enum quantity q = quantities[*ix].q;
	const char *name = quantities[*ix].name;
	struct held a, b, c;
	cr_assert_eq(check(adding(&a, 17, q, 60), NULL, 0), 0, "%s", name);
	apply_checked(&a.dl);
	cr_assert_eq(check(adding(&b, 17, q, 40), NULL, 0), 0, "%s: at the bound", name);
	apply_checked(&b.dl);
	expect_beyond(adding(&c, 17, q, 1), 17, name, 100, 1);
	expect_beyond(adding(&c, 17, q, 7), 17, name, 100, 7);
	/* A batch that adds nothing to q is not refused for it. */
	cr_assert_eq(check(adding(&c, 17, q, 0), NULL, 0), 0, "%s", name);

	/* Precinct 18 has the default margin of 5: 105 fits, 106 does not. */
	cr_assert_eq(check(adding(&a, 18, q, 100), NULL, 0), 0);
	apply_checked(&a.dl);
	cr_assert_eq(check(adding(&b, 18, q, 5), NULL, 0), 0, "%s: at the bound with the margin", name);
	apply_checked(&b.dl);
	expect_beyond(adding(&c, 18, q, 1), 18, name, 105, 1);
}

INDEX_PARAMS(plausible, sums_within_one_group, quantities)

/* The same with the earlier batches pending in the group, not yet applied. */
ParameterizedTest(size_t *ix, plausible, sums_within_one_group, .init = setup, .fini = teardown)
{
	const enum quantity q = quantities[*ix].q;
	const char *name = quantities[*ix].name;
	struct held a, b, c, other;
	/* Another precinct's pending batch counts nothing for precinct 17. */
	bal_pending_add(G, adding(&other, 18, q, 105));
	cr_assert_eq(check(adding(&a, 17, q, 60), NULL, 0), 0, "%s", name);
	bal_pending_add(G, &a.dl);
	cr_assert_eq(check(adding(&b, 17, q, 40), NULL, 0), 0, "%s: at the bound", name);
	bal_pending_add(G, &b.dl);
	expect_beyond(adding(&c, 17, q, 1), 17, name, 100, 1);
	expect_beyond(adding(&c, 18, q, 1), 18, name, 105, 1);

	/* Dropped (a failed commit): nothing is pending any more. */
	bal_pending_clear(G);
	cr_assert_eq(check(adding(&c, 17, q, 100), NULL, 0), 0, "%s: after clear", name);

	/* Half applied, half pending. */
	apply_checked(&a.dl);
	bal_pending_add(G, &b.dl);
	expect_beyond(adding(&c, 17, q, 1), 17, name, 100, 1);
	bal_pending_clear(G);
	cr_assert_eq(check(adding(&c, 17, q, 40), NULL, 0), 0, "%s", name);
	expect_beyond(adding(&c, 17, q, 41), 17, name, 60, 41);
}

/* The ballot sums count, not the protocol that replaces them in the totals. */
Test(plausible, sums_are_the_ballot_sums_under_a_protocol, .init = setup, .fini = teardown)
{
	const struct spec s = {PROTOCOL(17, 100, 100, 0), .list = {100}, .seat = {0, 100}};
	struct bal_column cols[2];
	struct bal_ctally ts[2];
	struct bal_batch b = batch_of(&s, cols, ts);
	struct held prot, a, c;
	char why[256] = "";
	cr_assert_eq(bal_tally_fold(D, L, &b, empty(&prot), why, sizeof(why)), 0, "%s", why);

	apply_checked(adding(&a, 17, Q_LIST, 70));
	/* A protocol is bounded per batch: it passes whatever the sums. */
	cr_assert_eq(check(&prot.dl, why, sizeof(why)), 0, "%s", why);
	bal_pending_add(G, &prot.dl);
	apply_checked(&prot.dl);
	bal_pending_clear(G);
	cr_assert_eq(CTR[bal_slot_precinct_choice(L, fx_precinct(D, 17), fx_contest(D, LIST), 0)], 100,
	             "E is the protocol");

	/* 70 so far in B: 30 more fit although E already holds 100. */
	cr_assert_eq(check(adding(&c, 17, Q_LIST, 30), why, sizeof(why)), 0, "%s", why);
	apply_checked(&c.dl);
	expect_beyond(adding(&c, 17, Q_LIST, 1), 17, "contest 1 votes", 100, 1);
	/* The protocol's 100 issued ballots are not in B. */
	cr_assert_eq(check(adding(&c, 17, Q_ISSUED, 100), why, sizeof(why)), 0, "%s", why);
}

Test(plausible, only_the_quantities_a_batch_adds_to_are_checked, .init = setup, .fini = teardown)
{
	/* Counters beyond the bound in one quantity (as no check here lets
	 * through) refuse batches adding to it, and only those. */
	const uint32_t p = fx_precinct(D, 17);
	CTR[bal_slot_precinct_turnout(L, p, BAL_T_CAST)] = 500;
	struct held a;
	cr_assert_eq(check(adding(&a, 17, Q_LIST, 100), NULL, 0), 0);
	cr_assert_eq(check(adding(&a, 17, Q_ISSUED, 100), NULL, 0), 0);
	expect_beyond(adding(&a, 17, Q_CAST, 1), 17, "turnout.ballots_cast", 500, 1);
	/* A sum beyond 64 bits saturates: still refused, never wrapped. */
	CTR[bal_slot_precinct_turnout(L, p, BAL_T_CAST)] = UINT64_MAX;
	cr_assert_eq(check(adding(&a, 17, Q_CAST, 1), NULL, 0), BAL_EINVALID);
}

Test(plausible, unbounded_precincts_have_no_sums_to_check, .init = setup, .fini = teardown)
{
	struct held a;
	for (size_t i = 0; i < NELEM(quantities); i++) {
		if (quantities[i].q == Q_SEAT)
			continue; /* not on district 2's ballot */
		adding(&a, 19, quantities[i].q, (uint64_t)1 << 62);
		bal_pending_add(G, &a.dl);
		bal_pending_add(G, &a.dl);
		cr_assert_eq(check(&a.dl, NULL, 0), 0, "%s", quantities[i].name);
	}
	/* Precinct 20 may count nothing. */
	expect_beyond(adding(&a, 20, Q_LIST, 1), 20, "contest 1 votes", 0, 1);
}

/*
 * A model: random batches of precincts 17 and 18 (through the fold), in
 * groups of random size. A batch is accepted iff each quantity it adds to
 * stays within the bound, counting every accepted batch before it, applied
 * or pending; at the end of each group the accepted ones are applied and
 * the pending sums cleared. The counters end equal to the model's sums.
 * Every 150 batches or so, between groups, everything starts from zero
 * again, so that most batches meet sums close to the bound.
 */
Test(plausible, random_groups_agree_with_a_model, .init = setup, .fini = teardown)
{
	enum { NB = 3000, GROUP_MAX = 12 };
	static const uint32_t ids[] = {17, 18};
	uint64_t sum[2][6] = {{0}}; /* per precinct, per quantity */
	uint64_t rng = 0x243F6A8885A308D3ULL;
	static struct held held[GROUP_MAX];
	const struct bal_delta *group[GROUP_MAX];
	size_t ngroup = 0, in_group = 0, group_end = 1, accepted = 0, refused = 0, since_zero = 0;
	for (int i = 0; i < NB; i++) {
		if (!in_group && since_zero >= 150) {
			memset(CTR, 0, bal_layout_nslots(L) * sizeof(*CTR));
			memset(sum, 0, sizeof(sum));
			since_zero = 0;
		}
		since_zero++;
		rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
		const uint64_t r = rng >> 11;
		const int w = (int)(r & 1);
		const uint64_t n = (r >> 1) % 9, k = (r >> 5) % 3;
		struct spec s = {.precinct = ids[w], .seq = 1 + (uint64_t)i % 1000};
		uint64_t add[6] = {0};
		switch ((r >> 8) % 3) {
		case 0: /* n ballots, all for choice 0 */
			s.kind = BAL_KIND_BALLOTS;
			s.nballots = (uint32_t)n + 1;
			add[Q_BALLOTS] = add[Q_LIST] = add[Q_SEAT] = n + 1;
			break;
		case 1: /* n votes for choice k of the list, n/2 for the seat */
			s.kind = BAL_KIND_TALLY;
			s.list[k] = n + 1;
			s.seat[k % 2] = n / 2;
			add[Q_LIST] = n + 1;
			add[Q_SEAT] = n / 2;
			break;
		default: /* a turnout */
			s.kind = BAL_KIND_TALLY;
			s.turnout = true;
			s.issued = n + 1;
			s.cast = n;
			s.spoiled = (r >> 12) % 2;
			add[Q_ISSUED] = s.issued;
			add[Q_CAST] = s.cast;
			add[Q_SPOILED] = s.spoiled;
			break;
		}
		struct bal_column cols[2];
		struct bal_ctally ts[2];
		struct bal_batch b = batch_of(&s, cols, ts);
		struct held *h = &held[ngroup];
		char why[256] = "";
		cr_assert_eq(bal_tally_fold(D, L, &b, empty(h), why, sizeof(why)), 0, "batch %d: %s", i, why);
		bool fits = true;
		const uint64_t bound = D->precincts[fx_precinct(D, ids[w])].max_voters;
		for (int q = 0; q < 6; q++)
			fits &= !add[q] || sum[w][q] + add[q] <= bound;
		int err = check(&h->dl, why, sizeof(why));
		cr_assert_eq(err, fits ? 0 : BAL_EINVALID, "batch %d: %s", i, why);
		if (!err) {
			for (int q = 0; q < 6; q++)
				sum[w][q] += add[q];
			bal_pending_add(G, &h->dl);
			group[ngroup++] = &h->dl;
			accepted++;
		} else {
			refused++;
		}
		if (++in_group == group_end || i == NB - 1) {
			for (size_t j = 0; j < ngroup; j++)
				apply_checked(group[j]);
			bal_pending_clear(G);
			ngroup = in_group = 0;
			group_end = 1 + (r >> 16) % GROUP_MAX;
		}
	}
	cr_assert_gt(accepted, NB / 3, "accepted %zu, refused %zu", accepted, refused);
	cr_assert_gt(refused, NB / 3, "accepted %zu, refused %zu", accepted, refused);
	for (int w = 0; w < 2; w++) {
		const uint32_t p = fx_precinct(D, ids[w]);
		cr_assert_eq(CTR[bal_slot_precinct_turnout(L, p, BAL_T_BALLOTS)], sum[w][Q_BALLOTS]);
		cr_assert_eq(CTR[bal_slot_precinct_turnout(L, p, BAL_T_ISSUED)], sum[w][Q_ISSUED]);
		cr_assert_eq(CTR[bal_slot_precinct_turnout(L, p, BAL_T_CAST)], sum[w][Q_CAST]);
		cr_assert_eq(CTR[bal_slot_precinct_turnout(L, p, BAL_T_SPOILED)], sum[w][Q_SPOILED]);
		uint64_t list = 0, seat = 0;
		for (uint32_t k = 0; k < 3; k++)
			list += CTR[bal_slot_precinct_choice(L, p, fx_contest(D, LIST), k)];
		for (uint32_t k = 0; k < 2; k++)
			seat += CTR[bal_slot_precinct_choice(L, p, fx_contest(D, SEAT), k)];
		cr_assert_eq(list, sum[w][Q_LIST]);
		cr_assert_eq(seat, sum[w][Q_SEAT]);
		for (int q = 0; q < 6; q++)
			cr_assert_leq(sum[w][q], D->precincts[p].max_voters);
	}
}
