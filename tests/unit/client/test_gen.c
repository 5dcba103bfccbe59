/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests for the client-side generators: synthetic definitions (defgen.c),
 * demo keys (keys.c), batches (gen.c) and the independent expected-totals fold
 * (expect.c). Definitions are generated in memory and loaded with the real
 * loader (defn/), so generator and loader agree on the format.
 */
#include "proto/codec.h"
#include "client/defgen.h"
#include "defn/defn.h"
#include "client/expect.h"
#include "client/gen.h"
#include "client/keys.h"

#include "tests/common/params.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct bal_defn *make_defn(uint32_t precincts, uint32_t districts, uint32_t choices, uint64_t seed, bool keys)
{
	struct bal_defgen_opts o;
	bal_defgen_defaults(&o);
	o.precincts = precincts;
	o.districts = districts;
	o.choices = choices;
	o.seed = seed;
	o.keys = keys;
	char *text, why[256] = "";
	size_t len;
	cr_assert_eq(bal_defgen_json(&o, &text, &len, why, sizeof(why)), 0, "%s", why);
	struct bal_defn *d;
	cr_assert_eq(bal_defn_parse(text, len, &d, why, sizeof(why)), 0, "loader refused the generated definition: %s",
	             why);
	free(text);
	return d;
}

Test(defgen, is_deterministic_and_seeded)
{
	struct bal_defgen_opts o;
	bal_defgen_defaults(&o);
	o.precincts = 50;
	o.districts = 5;
	char *a, *b, *c;
	size_t la, lb, lc;
	cr_assert_eq(bal_defgen_json(&o, &a, &la, NULL, 0), 0);
	cr_assert_eq(bal_defgen_json(&o, &b, &lb, NULL, 0), 0);
	o.seed++;
	cr_assert_eq(bal_defgen_json(&o, &c, &lc, NULL, 0), 0);
	cr_assert_eq(la, lb);
	cr_assert_arr_eq(a, b, la);
	cr_assert(la != lc || memcmp(a, c, la) != 0, "a different seed gave the same definition");
	free(a);
	free(b);
	free(c);
}

Test(defgen, matches_the_committed_bundled_definition, .timeout = 60)
{
	struct bal_defgen_opts o;
	bal_defgen_defaults(&o);
	char *text;
	size_t len;
	cr_assert_eq(bal_defgen_json(&o, &text, &len, NULL, 0), 0);
	FILE *f = fopen(BAL_TEST_SOURCE_DIR "/data/kz2023.json", "rb");
	cr_assert_not_null(f, "data/kz2023.json missing");
	char *file = malloc(len + 1);
	size_t n = fread(file, 1, len + 1, f);
	fclose(f);
	cr_assert_eq(n, len, "data/kz2023.json is %zu bytes, gen-definition defaults give %zu", n, len);
	cr_assert_arr_eq(file, text, len, "data/kz2023.json differs from gen-definition with the default options");
	free(file);
	free(text);
}

Test(defgen, bundled_shape)
{
	struct bal_defn *d;
	char why[256] = "";
	cr_assert_eq(bal_defn_load(BAL_TEST_SOURCE_DIR "/data/kz2023.json", &d, why, sizeof(why)), 0, "%s", why);
	cr_assert_str_eq(d->election_id, "kz-2023-mazhilis");
	cr_assert_str_eq(d->election_date, "2023-03-19");
	cr_assert_eq(d->nprecincts, 10000);
	cr_assert_eq(d->ndistricts, 29);
	cr_assert_eq(d->ncontests, 30);
	const struct bal_contest *party = &d->contests[0];
	cr_assert_eq(party->id, 1);
	cr_assert_eq(party->kind, BAL_CONTEST_PARTY_LIST);
	cr_assert_eq(party->seats, 69);
	cr_assert_float_eq(party->threshold_percent, 5.0, 1e-9);
	cr_assert_eq(party->nchoices, 8);
	cr_assert_str_eq(party->choices[7].name, "Against all");
	cr_assert_not(party->choices[7].seat_eligible);
	for (uint32_t c = 1; c < d->ncontests; c++) {
		cr_assert_eq(d->contests[c].id, 100 + c);
		cr_assert_eq(d->contests[c].kind, BAL_CONTEST_SINGLE_MEMBER);
		cr_assert_eq(d->districts[d->contests[c].district].id, c);
		cr_assert_not(d->contests[c].choices[7].seat_eligible);
	}
	for (uint32_t p = 0; p < d->nprecincts; p++) {
		cr_assert(d->precincts[p].has_key);
		cr_assert(d->precincts[p].registered_voters >= 500 && d->precincts[p].registered_voters <= 3000);
	}
	/* Every district has precincts. */
	uint32_t per[29] = {0};
	for (uint32_t p = 0; p < d->nprecincts; p++)
		per[d->precincts[p].district]++;
	for (int i = 0; i < 29; i++)
		cr_assert_gt(per[i], 300);
	bal_defn_free(d);
}

Test(defgen, rejects_bad_options_naming_them)
{
	struct bal_defgen_opts o;
	bal_defgen_defaults(&o);
	char why[256], *text;
	size_t len;
	o.precincts = 3;
	o.districts = 5;
	cr_assert_eq(bal_defgen_json(&o, &text, &len, why, sizeof(why)), -EINVAL);
	cr_assert_not_null(strstr(why, "--precincts 3"), "why = %s", why);
	bal_defgen_defaults(&o);
	o.choices = 1;
	cr_assert_eq(bal_defgen_json(&o, &text, &len, why, sizeof(why)), -EINVAL);
	cr_assert_not_null(strstr(why, "--choices 1"), "why = %s", why);
	bal_defgen_defaults(&o);
	o.registered_min = 10;
	o.registered_max = 5;
	cr_assert_eq(bal_defgen_json(&o, &text, &len, why, sizeof(why)), -EINVAL);
	cr_assert_not_null(strstr(why, "--registered-min 10"), "why = %s", why);
	bal_defgen_defaults(&o);
	o.election_date = "19.03.2023";
	cr_assert_eq(bal_defgen_json(&o, &text, &len, why, sizeof(why)), -EINVAL);
	cr_assert_not_null(strstr(why, "19.03.2023"), "why = %s", why);
}

Test(keys, are_deterministic_and_distinct)
{
	uint8_t pk1[32], sk1[64], pk2[32], sk2[64], pk3[32], sk3[64], pk4[32], sk4[64];
	bal_demo_keypair(7, 1, pk1, sk1);
	bal_demo_keypair(7, 1, pk2, sk2);
	bal_demo_keypair(7, 2, pk3, sk3);
	bal_demo_keypair(8, 1, pk4, sk4);
	cr_assert_arr_eq(pk1, pk2, 32);
	cr_assert_arr_eq(sk1, sk2, 64);
	cr_assert_arr_neq(pk1, pk3, 32);
	cr_assert_arr_neq(pk1, pk4, 32);
	/* The documented derivation: seed = SHA-256("ballotd-demo-key:7:1"). */
	const char *text = "ballotd-demo-key:7:1";
	uint8_t seed[32], pk[32], sk[64];
	crypto_hash_sha256(seed, (const unsigned char *)text, strlen(text));
	crypto_sign_seed_keypair(pk, sk, seed);
	cr_assert_arr_eq(pk, pk1, 32);
}

static struct bal_gen *make_gen(const struct bal_defn *d, uint64_t seed, uint64_t key_seed, uint32_t size,
                                enum bal_kind kind)
{
	struct bal_gen_opts o = {.seed = seed, .key_seed = key_seed, .batch_size = size, .kind = kind};
	struct bal_gen *g;
	char why[256] = "";
	cr_assert_eq(bal_gen_new(d, &o, &g, why, sizeof(why)), 0, "%s", why);
	return g;
}

Test(gen, same_inputs_same_bytes)
{
	struct bal_defn *d = make_defn(40, 4, 6, 11, true);
	struct bal_gen *g1 = make_gen(d, 5, 11, 50, BAL_KIND_BALLOTS);
	struct bal_gen *g2 = make_gen(d, 5, 11, 50, BAL_KIND_BALLOTS);
	const uint8_t *b1, *b2;
	size_t l1, l2;
	/* g1 generates other batches in between: no hidden state may leak. */
	for (uint32_t p = 0; p < 40; p += 7) {
		for (uint64_t s = 1; s <= 3; s++) {
			cr_assert_eq(bal_gen_batch(g1, (p + 3) % 40, s + 9, NULL, &b1, &l1, NULL, 0), 0);
			cr_assert_eq(bal_gen_batch(g1, p, s, NULL, &b1, &l1, NULL, 0), 0);
			uint8_t *copy = malloc(l1);
			memcpy(copy, b1, l1);
			cr_assert_eq(bal_gen_batch(g2, p, s, NULL, &b2, &l2, NULL, 0), 0);
			cr_assert_eq(l1, l2);
			cr_assert_arr_eq(copy, b2, l1, "precinct index %u seq %llu differs", p, (unsigned long long)s);
			/* the next seq is a different batch */
			cr_assert_eq(bal_gen_batch(g2, p, s + 1, NULL, &b2, &l2, NULL, 0), 0);
			cr_assert(l1 != l2 || memcmp(copy, b2, l1) != 0);
			free(copy);
		}
	}
	bal_gen_free(g1);
	bal_gen_free(g2);
	bal_defn_free(d);
}

/* Checks one decoded batch against the definition and the generator's contract. */
static void check_batch(const struct bal_defn *d, uint32_t p, uint64_t seq, const struct bal_batch *b, uint32_t size,
                        enum bal_kind kind)
{
	cr_assert_eq(b->precinct_id, d->precincts[p].id);
	cr_assert_eq(b->seq, seq);
	cr_assert_eq(b->kind, kind);
	cr_assert_str_eq(b->election_id, d->election_id);
	cr_assert(b->has_turnout);
	cr_assert_eq(b->ballots_cast, size);
	cr_assert_leq(b->ballots_spoiled, 2);
	cr_assert_eq(b->ballots_issued, b->ballots_cast + b->ballots_spoiled);
	size_t on_ballot = 0;
	for (uint32_t c = 0; c < d->ncontests; c++)
		on_ballot += bal_defn_votes_in(d, p, c);
	if (kind == BAL_KIND_BALLOTS) {
		cr_assert_eq(b->ncolumns, on_ballot);
		cr_assert_eq(b->ntallies, 0);
		for (size_t i = 0; i < b->ncolumns; i++) {
			int32_t c = bal_defn_contest(d, b->columns[i].contest_id);
			cr_assert_geq(c, 0);
			cr_assert(bal_defn_votes_in(d, p, (uint32_t)c));
			cr_assert_eq(b->columns[i].n, size);
			for (size_t j = 0; j < size; j++)
				cr_assert_lt(b->columns[i].choices[j], d->contests[c].nchoices);
		}
	} else {
		cr_assert_eq(b->ntallies, on_ballot);
		cr_assert_eq(b->ncolumns, 0);
		for (size_t i = 0; i < b->ntallies; i++) {
			int32_t c = bal_defn_contest(d, b->tallies[i].contest_id);
			cr_assert_geq(c, 0);
			cr_assert(bal_defn_votes_in(d, p, (uint32_t)c));
			cr_assert_eq(b->tallies[i].n, d->contests[c].nchoices);
			uint64_t sum = 0;
			for (size_t k = 0; k < b->tallies[i].n; k++)
				sum += b->tallies[i].counts[k];
			cr_assert_eq(sum, size);
		}
	}
}

static void decode_verify_all(enum bal_kind kind)
{
	struct bal_defn *d = make_defn(30, 3, 5, 99, true);
	struct bal_gen *g = make_gen(d, 1, 99, 25, kind);
	struct bal_arena arena;
	bal_arena_init(&arena, 0);
	for (uint32_t p = 0; p < d->nprecincts; p++) {
		for (uint64_t s = 1; s <= 2; s++) {
			const uint8_t *body;
			size_t len;
			struct bal_batch gb;
			char why[256] = "";
			cr_assert_eq(bal_gen_batch(g, p, s, &gb, &body, &len, why, sizeof(why)), 0, "%s", why);
			struct bal_batch b;
			cr_assert_eq(bal_codec_decode(body, len, &arena, &b, why, sizeof(why)), 0, "%s", why);
			check_batch(d, p, s, &b, 25, kind);
			cr_assert_eq(b.signed_len, gb.signed_len);
			cr_assert_arr_eq(b.signed_bytes, gb.signed_bytes, b.signed_len);
			cr_assert_eq(b.signature_len, crypto_sign_BYTES);
			cr_assert_eq(crypto_sign_verify_detached(b.signature, b.signed_bytes, b.signed_len,
			                                         d->precincts[p].public_key),
			             0, "signature of precinct %u seq %llu does not verify", d->precincts[p].id,
			             (unsigned long long)s);
			bal_arena_reset(&arena);
		}
	}
	bal_arena_deinit(&arena);
	bal_gen_free(g);
	bal_defn_free(d);
}

Test(gen, ballots_decode_within_definition_and_verify)
{
	decode_verify_all(BAL_KIND_BALLOTS);
}

Test(gen, tallies_decode_within_definition_and_verify)
{
	decode_verify_all(BAL_KIND_TALLY);
}

Test(gen, leaves_unsigned_without_keys)
{
	struct bal_defn *d = make_defn(5, 1, 3, 4, false);
	struct bal_gen *g = make_gen(d, 1, 12345, 10, BAL_KIND_BALLOTS);
	const uint8_t *body;
	size_t len;
	struct bal_batch b;
	cr_assert_eq(bal_gen_batch(g, 2, 1, &b, &body, &len, NULL, 0), 0);
	cr_assert_eq(b.signature_len, 0);
	bal_gen_free(g);
	bal_defn_free(d);
}

Test(gen, refuses_a_key_seed_that_does_not_match)
{
	struct bal_defn *d = make_defn(5, 1, 3, 4, true);
	struct bal_gen *g = make_gen(d, 1, 5, 10, BAL_KIND_BALLOTS);
	const uint8_t *body;
	size_t len;
	char why[256] = "";
	cr_assert_eq(bal_gen_batch(g, 0, 1, NULL, &body, &len, why, sizeof(why)), BAL_EAUTH);
	cr_assert_not_null(strstr(why, "key seed 5"), "why = %s", why);
	bal_gen_free(g);
	bal_defn_free(d);
}

Test(gen, rejects_bad_arguments)
{
	struct bal_defn *d = make_defn(5, 1, 3, 4, true);
	struct bal_gen_opts o = {.seed = 1, .key_seed = 4, .batch_size = 0, .kind = BAL_KIND_BALLOTS};
	struct bal_gen *g;
	char why[256] = "";
	cr_assert_eq(bal_gen_new(d, &o, &g, why, sizeof(why)), -EINVAL);
	cr_assert_not_null(strstr(why, "batch size 0"), "why = %s", why);
	o.batch_size = 1;
	o.kind = BAL_KIND_PROTOCOL;
	cr_assert_eq(bal_gen_new(d, &o, &g, why, sizeof(why)), -EINVAL);
	g = make_gen(d, 1, 4, 10, BAL_KIND_BALLOTS);
	const uint8_t *body;
	size_t len;
	cr_assert_eq(bal_gen_batch(g, 5, 1, NULL, &body, &len, why, sizeof(why)), -EINVAL);
	cr_assert_not_null(strstr(why, "precinct index 5"), "why = %s", why);
	cr_assert_eq(bal_gen_batch(g, 0, 0, NULL, &body, &len, why, sizeof(why)), -EINVAL);
	cr_assert_not_null(strstr(why, "seq 0"), "why = %s", why);
	bal_gen_free(g);
	bal_defn_free(d);
}

Test(gen, results_have_a_leader_and_a_small_party)
{
	struct bal_defn *d = make_defn(200, 4, 8, 2023, false);
	struct bal_gen *g = make_gen(d, 2023, 2023, 100, BAL_KIND_BALLOTS);
	struct bal_expect *e = bal_expect_new(d);
	for (uint32_t p = 0; p < d->nprecincts; p++) {
		const uint8_t *body;
		size_t len;
		struct bal_batch b;
		char why[256] = "";
		cr_assert_eq(bal_gen_batch(g, p, 1, &b, &body, &len, NULL, 0), 0);
		cr_assert_eq(bal_expect_fold(e, &b, why, sizeof(why)), 0, "%s", why);
	}
	for (uint32_t c = 0; c < d->ncontests; c++) {
		const struct bal_contest *ct = &d->contests[c];
		uint64_t total = 0, max = 0, min_eligible = UINT64_MAX;
		for (uint32_t k = 0; k < ct->nchoices; k++) {
			uint64_t v = bal_expect_votes(e, c, k);
			total += v;
			if (v > max)
				max = v;
			if (ct->choices[k].seat_eligible && v < min_eligible)
				min_eligible = v;
		}
		cr_assert_gt(max * 100, total * 40, "contest %u: leader has only %llu of %llu", ct->id,
		             (unsigned long long)max, (unsigned long long)total);
		cr_assert_lt(min_eligible * 100, total * 5, "contest %u: no eligible choice under 5%%", ct->id);
		uint64_t against = bal_expect_votes(e, c, ct->nchoices - 1);
		cr_assert_lt(against * 100, total * 6, "contest %u: against all at %llu of %llu", ct->id,
		             (unsigned long long)against, (unsigned long long)total);
	}
	bal_expect_free(e);
	bal_gen_free(g);
	bal_defn_free(d);
}

Test(expect, folds_ballots_tallies_and_turnout)
{
	struct bal_defn *d = make_defn(4, 2, 3, 1, false);
	/* precincts 1,2 in district 1 (contest 101), 3,4 in district 2 (contest 102) */
	struct bal_expect *e = bal_expect_new(d);
	const uint32_t party[] = {0, 1, 1, 2}, dist[] = {2, 2, 0, 1};
	struct bal_column cols[] = {{.contest_id = 1, .n = 4, .choices = party},
	                            {.contest_id = 102, .n = 4, .choices = dist}};
	struct bal_batch b = {.precinct_id = 3,
	                      .seq = 1,
	                      .kind = BAL_KIND_BALLOTS,
	                      .ncolumns = 2,
	                      .columns = cols,
	                      .has_turnout = true,
	                      .ballots_issued = 5,
	                      .ballots_cast = 4,
	                      .ballots_spoiled = 1,
	                      .election_id = d->election_id};
	char why[256] = "";
	cr_assert_eq(bal_expect_fold(e, &b, why, sizeof(why)), 0, "%s", why);
	const uint64_t counts[] = {10, 0, 7};
	struct bal_ctally t = {.contest_id = 1, .n = 3, .counts = counts};
	struct bal_batch tb = {.precinct_id = 1,
	                       .seq = 1,
	                       .kind = BAL_KIND_TALLY,
	                       .ntallies = 1,
	                       .tallies = &t,
	                       .election_id = d->election_id};
	cr_assert_eq(bal_expect_fold(e, &tb, why, sizeof(why)), 0, "%s", why);

	int32_t c1 = bal_defn_contest(d, 1), c102 = bal_defn_contest(d, 102), c101 = bal_defn_contest(d, 101);
	int32_t d1 = bal_defn_district(d, 1), d2 = bal_defn_district(d, 2);
	cr_assert_eq(bal_expect_votes(e, c1, 0), 11);
	cr_assert_eq(bal_expect_votes(e, c1, 1), 2);
	cr_assert_eq(bal_expect_votes(e, c1, 2), 8);
	cr_assert_eq(bal_expect_district_votes(e, c1, d2, 1), 2);
	cr_assert_eq(bal_expect_district_votes(e, c1, d1, 0), 10);
	cr_assert_eq(bal_expect_votes(e, c102, 2), 2);
	cr_assert_eq(bal_expect_district_votes(e, c102, d1, 2), 0, "district contest leaked into another district");
	cr_assert_eq(bal_expect_votes(e, c101, 0), 0);
	struct bal_expect_turnout tt;
	bal_expect_turnout(e, &tt);
	cr_assert_eq(tt.batches, 2);
	cr_assert_eq(tt.ballots, 4);
	cr_assert_eq(tt.issued, 5);
	cr_assert_eq(tt.cast, 4);
	cr_assert_eq(tt.spoiled, 1);
	cr_assert_eq(bal_expect_precincts_reporting(e), 2);

	json_t *j = bal_expect_json(e);
	json_t *contests = json_object_get(j, "contests");
	cr_assert_eq(json_array_size(contests), d->ncontests);
	json_t *jc1 = json_array_get(contests, (size_t)c1);
	cr_assert_eq(json_integer_value(json_object_get(jc1, "total_votes")), 21);
	cr_assert_eq(json_array_size(json_object_get(jc1, "districts")), 2);
	json_t *jc102 = json_array_get(contests, (size_t)c102);
	cr_assert_eq(json_array_size(json_object_get(jc102, "districts")), 1);
	cr_assert_eq(json_integer_value(json_object_get(json_array_get(json_object_get(jc102, "districts"), 0), "id")),
	             2);
	cr_assert_eq(json_integer_value(json_object_get(j, "precincts_reporting")), 2);
	json_decref(j);
	bal_expect_free(e);
	bal_defn_free(d);
}

Test(expect, refuses_invalid_batches_without_changing_totals)
{
	struct bal_defn *d = make_defn(4, 2, 3, 1, false);
	struct bal_expect *e = bal_expect_new(d);
	char why[256];
	const uint32_t ok[] = {0, 1}, bad[] = {0, 3};
	struct bal_column cols[] = {{.contest_id = 1, .n = 2, .choices = ok},
	                            {.contest_id = 101, .n = 2, .choices = bad}};
	struct bal_batch b = {.precinct_id = 1, .seq = 1, .kind = BAL_KIND_BALLOTS, .ncolumns = 2, .columns = cols};
	cr_assert_eq(bal_expect_fold(e, &b, why, sizeof(why)), BAL_EINVALID);
	cr_assert_not_null(strstr(why, "choice 3 out of range"), "why = %s", why);
	cols[1].choices = ok;
	cols[1].contest_id = 102; /* district 2's contest, precinct 1 is in district 1 */
	cr_assert_eq(bal_expect_fold(e, &b, why, sizeof(why)), BAL_EINVALID);
	cr_assert_not_null(strstr(why, "not on the ballot of precinct 1"), "why = %s", why);
	cols[1].contest_id = 101;
	cols[1].n = 1;
	cr_assert_eq(bal_expect_fold(e, &b, why, sizeof(why)), BAL_EINVALID);
	b.precinct_id = 99;
	cr_assert_eq(bal_expect_fold(e, &b, why, sizeof(why)), BAL_EINVALID);
	b.kind = BAL_KIND_PROTOCOL; /* with ballot columns: a protocol has none */
	b.precinct_id = 1;
	cr_assert_eq(bal_expect_fold(e, &b, why, sizeof(why)), BAL_EINVALID);
	struct bal_expect_turnout t;
	bal_expect_turnout(e, &t);
	cr_assert_eq(t.batches, 0);
	cr_assert_eq(bal_expect_votes(e, 0, 0), 0);
	cr_assert_eq(bal_expect_precincts_reporting(e), 0);
	bal_expect_free(e);
	bal_defn_free(d);
}

/* Election ids a batch of the "kz-2023-mazhilis" definition must not carry. */
static const char *const other_elections[] = {
        NULL,                /* not set: no election */
        "",                  /* absent on the wire */
        "kz-2023-rehearsal", /* a rehearsal that shares the keys */
        "kz-2023-mazhilis ", /* one byte more */
        "kz-2023-mazhili",   /* one byte less */
        "KZ-2023-MAZHILIS",  /* ids compare byte for byte */
};

INDEX_PARAMS(expect, refuses_another_election, other_elections)

ParameterizedTest(size_t *ix, expect, refuses_another_election)
{
	struct bal_defn *d = make_defn(4, 2, 3, 1, false);
	cr_assert_str_eq(d->election_id, "kz-2023-mazhilis");
	struct bal_expect *e = bal_expect_new(d);
	const uint64_t counts[] = {10, 0, 7};
	struct bal_ctally t = {.contest_id = 1, .n = 3, .counts = counts};
	struct bal_batch b = {.precinct_id = 1,
	                      .seq = 1,
	                      .kind = BAL_KIND_TALLY,
	                      .ntallies = 1,
	                      .tallies = &t,
	                      .election_id = other_elections[*ix]};
	char why[256] = "";
	cr_assert_eq(bal_expect_fold(e, &b, why, sizeof(why)), BAL_EINVALID, "election_id %s",
	             b.election_id ? b.election_id : "NULL");
	char want[128];
	snprintf(want, sizeof(want), "election_id \"%s\": the definition's election is \"kz-2023-mazhilis\"",
	         b.election_id ? b.election_id : "");
	cr_assert_str_eq(why, want);
	struct bal_expect_turnout tt;
	bal_expect_turnout(e, &tt);
	cr_assert_eq(tt.batches, 0, "a refused batch was counted");
	cr_assert_eq(bal_expect_votes(e, 0, 0), 0);
	/* The same batch for this election folds. */
	b.election_id = d->election_id;
	cr_assert_eq(bal_expect_fold(e, &b, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(bal_expect_votes(e, 0, 0), 10);
	bal_expect_free(e);
	bal_defn_free(d);
}
