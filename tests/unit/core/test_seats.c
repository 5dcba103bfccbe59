/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Seat allocation tests: hand-computed results for largest remainder and
 * D'Hondt, the threshold measured over all votes (ineligible choices
 * included), deterministic ties, plurality with tie detection, and
 * invariants (seat sums, quota bounds, D'Hondt optimality) over random votes.
 */
#include "core/tally.h"

#include "tests/common/params.h"
#define MAXCH 16

struct fixture {
	struct bal_choice choices[MAXCH];
	struct bal_contest c;
	uint32_t seats[MAXCH];
	bool passed[MAXCH];
	bool tie;
};

/* A contest of n choices; choice k is ineligible iff bit k of `ineligible` is set. */
static void contest(struct fixture *f, enum bal_contest_kind kind, enum bal_method method, uint32_t seats,
                    double threshold, uint32_t n, uint32_t ineligible)
{
	cr_assert_leq(n, MAXCH);
	for (uint32_t k = 0; k < n; k++)
		f->choices[k] = (struct bal_choice){.id = k, .name = "", .seat_eligible = !(ineligible >> k & 1)};
	f->c = (struct bal_contest){.id = 1,
	                            .name = "",
	                            .kind = kind,
	                            .method = method,
	                            .seats = seats,
	                            .threshold_percent = threshold,
	                            .district = -1,
	                            .nchoices = n,
	                            .choices = f->choices};
	for (uint32_t k = 0; k < MAXCH; k++) {
		f->seats[k] = 12345;
		f->passed[k] = true;
	}
	f->tie = true;
}

static int allocate(struct fixture *f, const uint64_t *votes)
{
	return bal_seats_allocate(&f->c, votes, f->seats, f->passed, &f->tie);
}

static void assert_seats(const struct fixture *f, const uint32_t *want)
{
	for (uint32_t k = 0; k < f->c.nchoices; k++)
		cr_assert_eq(f->seats[k], want[k], "choice %u: %u seats, expected %u", k, f->seats[k], want[k]);
}

Test(seats, kazakhstan_2023_largest_remainder)
{
	/*
	 * Shares of the 2023 Mazhilis party list (per 10,000 votes), scaled by 631:
	 * Amanat 5390, Auyl 1090, Respublica 859, Ak Zhol 841, People's Party 680,
	 * OSDP 520, Baytaq 230 (under 5%), Against all 390 (ineligible).
	 * Passed pool P = 9380 (x631); exact shares 69*v/P:
	 *   39.649 8.018 6.319 6.186 5.002 3.825 -> floors 39 8 6 6 5 3 = 67;
	 * the two seats left go to the largest remainders: OSDP (.825), Amanat (.649).
	 */
	static const uint64_t share[] = {5390, 1090, 859, 841, 680, 520, 230, 390};
	static const uint32_t want[] = {40, 8, 6, 6, 5, 4, 0, 0};
	static const bool want_passed[] = {true, true, true, true, true, true, false, false};
	uint64_t votes[NELEM(share)];
	for (size_t k = 0; k < NELEM(share); k++)
		votes[k] = share[k] * 631;
	struct fixture f;
	contest(&f, BAL_CONTEST_PARTY_LIST, BAL_METHOD_LARGEST_REMAINDER, 69, 5, 8, 1u << 7);
	cr_assert_eq(allocate(&f, votes), 69);
	assert_seats(&f, want);
	uint32_t sum = 0;
	for (uint32_t k = 0; k < 8; k++) {
		sum += f.seats[k];
		cr_assert_eq(f.passed[k], want_passed[k], "choice %u", k);
	}
	cr_assert_eq(sum, 69);
	cr_assert_not(f.tie);
}

Test(seats, dhondt_and_largest_remainder_differ)
{
	/* D'Hondt quotients, 8 seats: 100k 80k 50k 40k 33.3k 30k 26.7k 25k -> A4 B3 C1 D0.
	 * Hare quota 230k/8 = 28750: 3.478 2.783 1.043 0.696 -> 3 2 1 0 + B, D -> 3 3 1 1. */
	static const uint64_t votes[] = {100000, 80000, 30000, 20000};
	static const uint32_t want_dh[] = {4, 3, 1, 0};
	static const uint32_t want_lr[] = {3, 3, 1, 1};
	struct fixture f;
	contest(&f, BAL_CONTEST_PARTY_LIST, BAL_METHOD_DHONDT, 8, 0, 4, 0);
	cr_assert_eq(allocate(&f, votes), 8);
	assert_seats(&f, want_dh);
	contest(&f, BAL_CONTEST_PARTY_LIST, BAL_METHOD_LARGEST_REMAINDER, 8, 0, 4, 0);
	cr_assert_eq(allocate(&f, votes), 8);
	assert_seats(&f, want_lr);
}

Test(seats, threshold_counts_ineligible_votes)
{
	/* B has 49 of 1000 votes (4.9%) but 49 of 949 eligible votes (5.16%):
	 * the threshold is over all votes, so B fails. */
	static const uint64_t under[] = {900, 49, 51};
	static const uint32_t want_under[] = {10, 0, 0};
	struct fixture f;
	contest(&f, BAL_CONTEST_PARTY_LIST, BAL_METHOD_LARGEST_REMAINDER, 10, 5, 3, 1u << 2);
	cr_assert_eq(allocate(&f, under), 10);
	assert_seats(&f, want_under);
	cr_assert_not(f.passed[1]);
	cr_assert_not(f.passed[2]);
	/* Exactly 5% reaches the threshold. */
	static const uint64_t exact[] = {900, 50, 50};
	static const uint32_t want_exact[] = {9, 1, 0};
	cr_assert_eq(allocate(&f, exact), 10);
	assert_seats(&f, want_exact);
	cr_assert(f.passed[1]);
}

Test(seats, fractional_threshold)
{
	/* 7.5%: 75 of 1000 passes, 74 does not. */
	static const uint64_t pass[] = {925, 75};
	static const uint64_t fail[] = {926, 74};
	struct fixture f;
	contest(&f, BAL_CONTEST_PARTY_LIST, BAL_METHOD_DHONDT, 5, 7.5, 2, 0);
	cr_assert_eq(allocate(&f, pass), 5);
	cr_assert(f.passed[1]);
	cr_assert_eq(allocate(&f, fail), 5);
	cr_assert_not(f.passed[1]);
	cr_assert_eq(f.seats[0], 5);
}

Test(seats, ineligible_choice_never_gets_a_seat)
{
	static const uint64_t votes[] = {600, 300, 100};
	static const uint32_t want[] = {0, 3, 1};
	struct fixture f;
	contest(&f, BAL_CONTEST_PARTY_LIST, BAL_METHOD_LARGEST_REMAINDER, 4, 0, 3, 1u << 0);
	cr_assert_eq(allocate(&f, votes), 4);
	assert_seats(&f, want);
	cr_assert_not(f.passed[0]);
	contest(&f, BAL_CONTEST_PARTY_LIST, BAL_METHOD_DHONDT, 4, 0, 3, 1u << 0);
	cr_assert_eq(allocate(&f, votes), 4);
	assert_seats(&f, want);
}

struct tie_case {
	const char *name;
	enum bal_method method;
	uint32_t seats;
	uint32_t n;
	uint64_t votes[4];
	uint32_t want[4];
};

static const struct tie_case tie_cases[] = {
        {"LR one seat", BAL_METHOD_LARGEST_REMAINDER, 1, 2, {50, 50}, {1, 0}},
        {"LR two of three", BAL_METHOD_LARGEST_REMAINDER, 2, 3, {10, 10, 10}, {1, 1, 0}},
        {"LR tie behind a leader", BAL_METHOD_LARGEST_REMAINDER, 2, 3, {50, 25, 25}, {1, 1, 0}},
        {"LR three-way remainder tie", BAL_METHOD_LARGEST_REMAINDER, 2, 4, {10, 30, 30, 30}, {0, 1, 1, 0}},
        {"DH three seats", BAL_METHOD_DHONDT, 3, 2, {100, 100}, {2, 1}},
        {"DH tie later", BAL_METHOD_DHONDT, 3, 3, {60, 30, 30}, {2, 1, 0}},
        {"LR near 2^64", BAL_METHOD_LARGEST_REMAINDER, 3, 2, {UINT64_MAX, UINT64_MAX}, {2, 1}},
        {"DH near 2^64", BAL_METHOD_DHONDT, 5, 2, {UINT64_MAX, UINT64_MAX - 1}, {3, 2}},
};

INDEX_PARAMS(seats, party_list_ties_go_to_lower_index, tie_cases)

ParameterizedTest(size_t *ix, seats, party_list_ties_go_to_lower_index)
{
	const struct tie_case *tc = &tie_cases[*ix];
	struct fixture f;
	contest(&f, BAL_CONTEST_PARTY_LIST, tc->method, tc->seats, 0, tc->n, 0);
	cr_assert_eq(allocate(&f, tc->votes), (int)tc->seats, "%s", tc->name);
	for (uint32_t k = 0; k < tc->n; k++)
		cr_assert_eq(f.seats[k], tc->want[k], "%s: choice %u has %u seats, expected %u", tc->name, k,
		             f.seats[k], tc->want[k]);
	cr_assert_not(f.tie, "%s", tc->name);
}

struct plur_case {
	const char *name;
	uint32_t seats;
	uint32_t n;
	uint32_t ineligible;
	uint64_t votes[4];
	int ret;
	uint32_t want[4];
	bool tie;
};

static const struct plur_case plur_cases[] = {
        {"clear winner", 1, 3, 0, {10, 30, 20}, 1, {0, 1, 0}, false},
        {"tie for first", 1, 3, 0, {30, 30, 20}, 0, {0, 0, 0}, true},
        {"tie below first", 1, 3, 0, {40, 30, 30}, 1, {1, 0, 0}, false},
        {"against all leads", 1, 3, 1u << 2, {10, 20, 90}, 1, {0, 1, 0}, false},
        {"against all ties the winner", 1, 3, 1u << 2, {10, 20, 20}, 1, {0, 1, 0}, false},
        {"no votes", 1, 3, 0, {0, 0, 0}, BAL_EINVALID, {0, 0, 0}, false},
        {"only ineligible votes", 1, 2, 1u << 1, {0, 5}, BAL_EINVALID, {0, 0}, false},
        {"two seats", 2, 4, 0, {10, 9, 8, 1}, 2, {1, 1, 0, 0}, false},
        {"two seats, tie for second", 2, 3, 0, {10, 8, 8}, 1, {1, 0, 0}, true},
        {"two seats, one with votes", 2, 3, 0, {0, 8, 0}, 1, {0, 1, 0}, false},
};

INDEX_PARAMS(seats, plurality, plur_cases)

ParameterizedTest(size_t *ix, seats, plurality)
{
	const struct plur_case *pc = &plur_cases[*ix];
	struct fixture f;
	contest(&f, BAL_CONTEST_SINGLE_MEMBER, BAL_METHOD_PLURALITY, pc->seats, 0, pc->n, pc->ineligible);
	int ret = allocate(&f, pc->votes);
	cr_assert_eq(ret, pc->ret, "%s: returned %d", pc->name, ret);
	for (uint32_t k = 0; k < pc->n; k++) {
		cr_assert_eq(f.seats[k], pc->want[k], "%s: choice %u", pc->name, k);
		cr_assert_eq(f.passed[k], !(pc->ineligible >> k & 1), "%s: passed[%u]", pc->name, k);
	}
	if (ret >= 0)
		cr_assert_eq(f.tie, pc->tie, "%s: tie", pc->name);
}

Test(seats, nothing_to_allocate)
{
	static const uint64_t under[] = {4, 3, 93};
	static const uint64_t none[] = {0, 0, 0};
	struct fixture f;
	/* Every eligible choice under the threshold: no pool to share. */
	contest(&f, BAL_CONTEST_PARTY_LIST, BAL_METHOD_LARGEST_REMAINDER, 5, 5, 3, 1u << 2);
	cr_assert_eq(allocate(&f, under), BAL_EINVALID);
	for (uint32_t k = 0; k < 3; k++) {
		cr_assert_eq(f.seats[k], 0);
		cr_assert_not(f.passed[k]);
	}
	contest(&f, BAL_CONTEST_PARTY_LIST, BAL_METHOD_DHONDT, 5, 0, 3, 0);
	cr_assert_eq(allocate(&f, none), BAL_EINVALID);
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

Test(seats, invariants_over_random_votes)
{
	uint64_t rs = 88172645463325252ULL;
	for (int round = 0; round < 2000; round++) {
		struct fixture f;
		uint32_t n = 2 + (uint32_t)(rnd(&rs) % 10);
		uint32_t nseats = 1 + (uint32_t)(rnd(&rs) % 120);
		uint64_t votes[MAXCH];
		uint64_t scale = rnd(&rs) % 3 == 0 ? UINT64_MAX / 16 : 100000;
		for (uint32_t k = 0; k < n; k++)
			votes[k] = rnd(&rs) % scale;
		enum bal_method m = round % 2 ? BAL_METHOD_DHONDT : BAL_METHOD_LARGEST_REMAINDER;
		contest(&f, BAL_CONTEST_PARTY_LIST, m, nseats, (double)(rnd(&rs) % 8), n, 1u << (n - 1));
		int ret = allocate(&f, votes);
		unsigned __int128 pool = 0;
		for (uint32_t k = 0; k < n; k++)
			pool += f.passed[k] ? votes[k] : 0;
		if (pool == 0) {
			cr_assert_eq(ret, BAL_EINVALID);
			continue;
		}
		cr_assert_eq(ret, (int)nseats, "round %d", round);
		uint32_t sum = 0;
		for (uint32_t k = 0; k < n; k++) {
			sum += f.seats[k];
			if (!f.passed[k])
				cr_assert_eq(f.seats[k], 0, "round %d: choice %u did not pass but has seats", round, k);
			if (m == BAL_METHOD_LARGEST_REMAINDER && f.passed[k]) {
				/* floor(v*S/P) <= seats <= floor(v*S/P) + 1 */
				unsigned __int128 q = (unsigned __int128)votes[k] * nseats / pool;
				cr_assert(f.seats[k] == q || f.seats[k] == q + 1, "round %d: choice %u off quota",
				          round, k);
			}
		}
		cr_assert_eq(sum, nseats, "round %d", round);
		if (m != BAL_METHOD_DHONDT)
			continue;
		/* Optimality: no seat could move to a choice with a higher next quotient,
		 * v_i / s_i >= v_j / (s_j + 1) whenever s_i > 0. */
		for (uint32_t i = 0; i < n; i++)
			for (uint32_t j = 0; j < n; j++)
				if (f.passed[i] && f.passed[j] && f.seats[i] > 0)
					cr_assert((unsigned __int128)votes[i] * (f.seats[j] + 1) >=
					                  (unsigned __int128)votes[j] * f.seats[i],
					          "round %d: D'Hondt not optimal for %u vs %u", round, i, j);
	}
}
