/* SPDX-License-Identifier: Apache-2.0 */
/*
 * daemon/config.c: the default --max-body a definition implies. The
 * largest batch the codec can pack for a precinct (every voter in every
 * contest on its ballot at the highest choice, a tally of every choice at
 * the largest count, a turnout, the longest seq and time, a signature)
 * must fit under it; the floor, the 1 MiB cap and unbounded precincts.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/config.h"
#include "proto/codec.h"

/* Two districts; a national contest of 8 choices, one of 8 in district 0,
 * one of 300 (two-byte choice indices) in district 1. */
static struct bal_contest contests[3] = {
        {.id = 1, .district = -1, .nchoices = 8},
        {.id = 101, .district = 0, .nchoices = 8},
        {.id = 102, .district = 1, .nchoices = 300},
};

static struct bal_defn defn_of(struct bal_precinct *p, uint32_t n)
{
	return (struct bal_defn){.election_id = "kz-2023-mazhilis",
	                         .ndistricts = 2,
	                         .ncontests = 3,
	                         .contests = contests,
	                         .nprecincts = n,
	                         .precincts = p};
}

/* Bytes of the largest SignedBatch precinct index p of d can send. */
static size_t largest_batch(const struct bal_defn *d, uint32_t p)
{
	uint64_t voters = d->precincts[p].max_voters;
	struct bal_column cols[3];
	struct bal_ctally tallies[3];
	uint32_t *choices = malloc(voters * sizeof(*choices) * 3);
	uint64_t *counts = malloc(300 * sizeof(*counts));
	for (uint32_t k = 0; k < 300; k++)
		counts[k] = UINT64_MAX;
	size_t n = 0;
	for (uint32_t c = 0; c < d->ncontests; c++) {
		if (!bal_defn_votes_in(d, p, c))
			continue;
		uint32_t *col = choices + n * voters;
		for (uint64_t v = 0; v < voters; v++)
			col[v] = d->contests[c].nchoices - 1;
		cols[n] = (struct bal_column){.contest_id = d->contests[c].id, .n = voters, .choices = col};
		tallies[n] = (struct bal_ctally){
		        .contest_id = d->contests[c].id, .n = d->contests[c].nchoices, .counts = counts};
		n++;
	}
	struct bal_batch b = {.precinct_id = UINT32_MAX,
	                      .seq = UINT64_MAX,
	                      .kind = BAL_KIND_PROTOCOL,
	                      .ncolumns = n,
	                      .columns = cols,
	                      .ntallies = n,
	                      .tallies = tallies,
	                      .has_turnout = true,
	                      .ballots_issued = UINT64_MAX,
	                      .ballots_cast = UINT64_MAX,
	                      .ballots_spoiled = UINT64_MAX,
	                      .created_unix_ms = UINT64_MAX,
	                      .election_id = d->election_id};
	size_t len = bal_codec_batch_size(&b);
	uint8_t sig[64] = {0};
	size_t signed_len = bal_codec_signed_size(NULL, len, sig, sizeof(sig));
	free(choices);
	free(counts);
	return signed_len;
}

Test(config, the_largest_batch_fits_the_default_max_body)
{
	static const uint64_t voters[] = {0, 1, 500, 1150, 3000, 3100, 9000, 30000};
	for (size_t i = 0; i < sizeof(voters) / sizeof(voters[0]); i++) {
		for (uint32_t district = 0; district < 2; district++) {
			struct bal_precinct p = {.id = 7, .district = district, .max_voters = voters[i]};
			struct bal_defn d = defn_of(&p, 1);
			uint32_t largest;
			size_t bound = bal_config_body_bound(&d, &largest);
			size_t need = largest_batch(&d, 0);
			cr_assert_eq(largest, 0);
			cr_assert_eq(bound % 4096, 0, "%zu is not a multiple of 4 KiB", bound);
			cr_assert_geq(bound, 16384);
			cr_assert_leq(bound, 1 << 20);
			if (need <= (1 << 20))
				cr_assert_geq(bound, need, "%llu voters, district %u: a %zu-byte batch over a %zu cap",
				              (unsigned long long)voters[i], district, need, bound);
			/* And not far beyond it: 5 bytes a choice against 1 or 2. */
			cr_assert_leq(bound, need * 5 + 16384, "%llu voters: %zu for %zu bytes",
			              (unsigned long long)voters[i], bound, need);
		}
	}
}

Test(config, floor_cap_and_unbounded)
{
	struct bal_precinct p[3] = {
	        {.id = 1, .district = 0, .max_voters = 10},
	        {.id = 2, .district = 1, .max_voters = 3000},
	        {.id = 3, .district = 0, .max_voters = 100},
	};
	struct bal_defn d = defn_of(p, 3);
	uint32_t largest;
	/* 3000 voters x 2 contests x 5 bytes, tallies (8 + 300 choices), envelope. */
	cr_assert_eq(bal_config_body_bound(&d, &largest), 36864);
	cr_assert_eq(largest, 1);
	p[1].max_voters = 10;
	cr_assert_eq(bal_config_body_bound(&d, &largest), 16384, "the floor");
	p[2].max_voters = 200000;
	cr_assert_eq(bal_config_body_bound(&d, &largest), 1 << 20, "the cap");
	cr_assert_eq(largest, 2);
	p[2].max_voters = UINT64_MAX;
	p[2].unbounded = true;
	cr_assert_eq(bal_config_body_bound(&d, &largest), 1 << 20, "an unbounded precinct");
	cr_assert_eq(largest, 2);
}

Test(config, derive_keeps_a_given_max_body)
{
	struct bal_precinct p = {.id = 1, .district = 0, .max_voters = 3000};
	struct bal_defn d = defn_of(&p, 1);
	struct bal_config c;
	bal_config_defaults(&c);
	c.max_body = 5000;
	c.max_body_given = true;
	bal_config_derive(&c, &d);
	cr_assert_eq(c.max_body, 5000);
	c.max_body_given = false;
	bal_config_derive(&c, &d);
	cr_assert_eq(c.max_body, 32768);
}
