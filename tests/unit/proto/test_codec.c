/*
 * Tests for proto/codec.c: roundtrips of every batch kind and of acks, the
 * exact wire bytes of a small batch, and the behaviour on garbage, truncated,
 * oversized, empty and extended input; the decode arena reaches a steady state.
 */
#include "proto/codec.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const uint32_t col_party[] = {0, 3, 7, 0, 1, 0};
static const uint32_t col_district[] = {2, 2, 0, 1, 5, 4};
static const uint64_t counts_party[] = {10, 0, 4, 1, 0, 0, 2, 300000000000ULL};
static const uint64_t counts_district[] = {5, 5};

static struct bal_column columns[] = {
        {.contest_id = 1, .n = 6, .choices = col_party},
        {.contest_id = 101, .n = 6, .choices = col_district},
};
static struct bal_ctally tallies[] = {
        {.contest_id = 1, .n = 8, .counts = counts_party},
        {.contest_id = 101, .n = 2, .counts = counts_district},
};

static struct bal_batch sample(enum bal_kind kind)
{
	struct bal_batch b = {
	        .precinct_id = 4242,
	        .seq = 1ULL << 40,
	        .kind = kind,
	        .has_turnout = true,
	        .ballots_issued = 8,
	        .ballots_cast = 6,
	        .ballots_spoiled = 1,
	        .created_unix_ms = 1679212800123ULL,
	};
	if (kind == BAL_KIND_BALLOTS) {
		b.ncolumns = 2;
		b.columns = columns;
	} else {
		b.ntallies = 2;
		b.tallies = tallies;
	}
	return b;
}

/* Packs `b` and wraps it in a SignedBatch; caller frees *out. */
static size_t pack_signed(const struct bal_batch *b, const uint8_t *sig, size_t siglen, uint8_t **out)
{
	size_t blen = bal_codec_batch_size(b);
	uint8_t *inner = malloc(blen ? blen : 1);
	cr_assert_not_null(inner);
	cr_assert_eq(bal_codec_batch_pack(b, inner), blen);
	size_t slen = bal_codec_signed_size(inner, blen, sig, siglen);
	*out = malloc(slen);
	cr_assert_not_null(*out);
	cr_assert_eq(bal_codec_signed_pack(inner, blen, sig, siglen, *out), slen);
	free(inner);
	return slen;
}

static void assert_same_batch(const struct bal_batch *a, const struct bal_batch *b)
{
	cr_assert_eq(a->precinct_id, b->precinct_id);
	cr_assert_eq(a->seq, b->seq);
	cr_assert_eq(a->kind, b->kind);
	cr_assert_eq(a->has_turnout, b->has_turnout);
	cr_assert_eq(a->ballots_issued, b->ballots_issued);
	cr_assert_eq(a->ballots_cast, b->ballots_cast);
	cr_assert_eq(a->ballots_spoiled, b->ballots_spoiled);
	cr_assert_eq(a->created_unix_ms, b->created_unix_ms);
	cr_assert_eq(a->ncolumns, b->ncolumns);
	for (size_t i = 0; i < a->ncolumns; i++) {
		cr_assert_eq(a->columns[i].contest_id, b->columns[i].contest_id);
		cr_assert_eq(a->columns[i].n, b->columns[i].n);
		cr_assert_arr_eq(a->columns[i].choices, b->columns[i].choices, a->columns[i].n * sizeof(uint32_t));
	}
	cr_assert_eq(a->ntallies, b->ntallies);
	for (size_t i = 0; i < a->ntallies; i++) {
		cr_assert_eq(a->tallies[i].contest_id, b->tallies[i].contest_id);
		cr_assert_eq(a->tallies[i].n, b->tallies[i].n);
		cr_assert_arr_eq(a->tallies[i].counts, b->tallies[i].counts, a->tallies[i].n * sizeof(uint64_t));
	}
}

ParameterizedTestParameters(codec, roundtrips_every_kind)
{
	static enum bal_kind kinds[] = {BAL_KIND_BALLOTS, BAL_KIND_TALLY, BAL_KIND_PROTOCOL};
	return cr_make_param_array(enum bal_kind, kinds, sizeof(kinds) / sizeof(kinds[0]));
}

ParameterizedTest(enum bal_kind *kind, codec, roundtrips_every_kind)
{
	struct bal_batch in = sample(*kind);
	uint8_t *body;
	size_t len = pack_signed(&in, NULL, 0, &body);

	struct bal_arena arena;
	bal_arena_init(&arena, 0);
	struct bal_batch out;
	char why[128] = "";
	cr_assert_eq(bal_codec_decode(body, len, &arena, &out, why, sizeof(why)), 0, "%s", why);
	assert_same_batch(&in, &out);
	cr_assert_eq(out.signature_len, 0);
	/* The signed bytes are exactly the packed Batch. */
	size_t blen = bal_codec_batch_size(&in);
	uint8_t *inner = malloc(blen);
	bal_codec_batch_pack(&in, inner);
	cr_assert_eq(out.signed_len, blen);
	cr_assert_arr_eq(out.signed_bytes, inner, blen);
	free(inner);
	bal_arena_deinit(&arena);
	free(body);
}

Test(codec, roundtrips_signed_wrapper)
{
	uint8_t sig[64];
	for (size_t i = 0; i < sizeof(sig); i++)
		sig[i] = (uint8_t)(i * 7 + 1);
	struct bal_batch in = sample(BAL_KIND_BALLOTS);
	uint8_t *body;
	size_t len = pack_signed(&in, sig, sizeof(sig), &body);

	struct bal_arena arena;
	bal_arena_init(&arena, 0);
	struct bal_batch out;
	char why[128] = "";
	cr_assert_eq(bal_codec_decode(body, len, &arena, &out, why, sizeof(why)), 0, "%s", why);
	assert_same_batch(&in, &out);
	cr_assert_eq(out.signature_len, sizeof(sig));
	cr_assert_arr_eq(out.signature, sig, sizeof(sig));
	bal_arena_deinit(&arena);
	free(body);
}

Test(codec, packs_exact_wire_bytes)
{
	static const uint64_t counts[] = {3, 4};
	static const uint32_t choices[] = {1, 0, 2};
	struct bal_ctally t = {.contest_id = 1, .n = 2, .counts = counts};
	struct bal_column c = {.contest_id = 101, .n = 3, .choices = choices};
	struct bal_batch b = {.precinct_id = 1,
	                      .seq = 2,
	                      .kind = BAL_KIND_TALLY,
	                      .ncolumns = 1,
	                      .columns = &c,
	                      .ntallies = 1,
	                      .tallies = &t,
	                      .has_turnout = true,
	                      .ballots_issued = 5,
	                      .ballots_cast = 4,
	                      .ballots_spoiled = 1,
	                      .created_unix_ms = 6};
	/* Written by hand from the protobuf encoding rules, not by protobuf-c. */
	static const uint8_t want[] = {
	        0x08, 0x01, 0x10, 0x02, 0x18, 0x01,                   /* precinct 1, seq 2, kind TALLY */
	        0x22, 0x07, 0x08, 0x65, 0x12, 0x03, 0x01, 0x00, 0x02, /* ballots: contest 101, [1,0,2] */
	        0x2a, 0x06, 0x08, 0x01, 0x12, 0x02, 0x03, 0x04,       /* tallies: contest 1, [3,4] */
	        0x32, 0x06, 0x08, 0x05, 0x10, 0x04, 0x18, 0x01,       /* turnout 5/4/1 */
	        0x38, 0x06,                                           /* created 6 */
	};
	cr_assert_eq(bal_codec_batch_size(&b), sizeof(want));
	uint8_t got[sizeof(want)];
	cr_assert_eq(bal_codec_batch_pack(&b, got), sizeof(want));
	cr_assert_arr_eq(got, want, sizeof(want));
}

Test(codec, omits_turnout_when_absent)
{
	struct bal_batch in = sample(BAL_KIND_TALLY);
	in.has_turnout = false;
	in.ballots_issued = in.ballots_cast = in.ballots_spoiled = 0;
	uint8_t *body;
	size_t len = pack_signed(&in, NULL, 0, &body);
	struct bal_arena arena;
	bal_arena_init(&arena, 0);
	struct bal_batch out;
	cr_assert_eq(bal_codec_decode(body, len, &arena, &out, NULL, 0), 0);
	cr_assert_not(out.has_turnout);
	assert_same_batch(&in, &out);
	bal_arena_deinit(&arena);
	free(body);
}

/* Parameters are copied into a re-executed worker: no pointers, only arrays. */
struct ack_case {
	enum bal_ack_status st;
	uint64_t position;
	bool has_error;
	char error[96];
};

ParameterizedTestParameters(codec, roundtrips_ack)
{
	static struct ack_case cases[] = {
	        {BAL_ACK_ACCEPTED, 1, false, ""},
	        {BAL_ACK_DUPLICATE, 123456789012ULL, false, ""},
	        {BAL_ACK_REJECTED, 0, true, "ballots[0].choices[3]: choice 9 out of range (contest 1 has 8 choices)"},
	        {BAL_ACK_ACCEPTED, 0, true, ""},
	};
	return cr_make_param_array(struct ack_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct ack_case *c, codec, roundtrips_ack)
{
	const char *error = c->has_error ? c->error : NULL;
	size_t n = bal_codec_ack_size(c->st, c->position, error);
	uint8_t buf[256];
	cr_assert_leq(n, sizeof(buf));
	cr_assert_eq(bal_codec_ack_pack(c->st, c->position, error, buf), n);
	enum bal_ack_status st = (enum bal_ack_status) - 1;
	uint64_t pos = 99;
	char err[256] = "x";
	cr_assert_eq(bal_codec_ack_decode(buf, n, &st, &pos, err, sizeof(err)), 0);
	cr_assert_eq(st, c->st);
	cr_assert_eq(pos, c->position);
	cr_assert_str_eq(err, c->error);
}

Test(codec, truncates_long_ack_error)
{
	const char *msg = "precinct 77: unknown precinct id";
	uint8_t buf[128];
	size_t n = bal_codec_ack_pack(BAL_ACK_REJECTED, 0, msg, buf);
	enum bal_ack_status st;
	uint64_t pos;
	char err[9];
	cr_assert_eq(bal_codec_ack_decode(buf, n, &st, &pos, err, sizeof(err)), 0);
	cr_assert_str_eq(err, "precinct");
}

Test(codec, rejects_garbage_ack)
{
	static const uint8_t garbage[] = {0xff, 0xff, 0xff};
	enum bal_ack_status st;
	uint64_t pos;
	char err[16];
	cr_assert_eq(bal_codec_ack_decode(garbage, sizeof(garbage), &st, &pos, err, sizeof(err)), BAL_ESCHEMA);
	/* status 9 is not a Status value */
	static const uint8_t bad_status[] = {0x08, 0x09};
	cr_assert_eq(bal_codec_ack_decode(bad_status, sizeof(bad_status), &st, &pos, err, sizeof(err)), BAL_ESCHEMA);
}

struct bad_case {
	char name[16];
	uint8_t bytes[24];
	size_t len;
	char why_prefix[48];
};

ParameterizedTestParameters(codec, rejects_undecodable)
{
	static struct bad_case cases[] = {
	        {"all ones", {0xff, 0xff, 0xff, 0xff}, 4, "SignedBatch does not decode"},
	        {"wire type 7", {0x0f, 0x01}, 2, "SignedBatch does not decode"},
	        /* field 1, declared length 2^40, 3 bytes present */
	        {"huge length", {0x0a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 1, 2, 3}, 10, "SignedBatch does not decode"},
	        /* field 1, declared length 5, 2 bytes present */
	        {"short bytes", {0x0a, 0x05, 0x08, 0x01}, 4, "SignedBatch does not decode"},
	        /* unterminated varint */
	        {"open varint", {0x08, 0x80, 0x80}, 3, "SignedBatch does not decode"},
	        /* the inner batch: field 4 (ballots) declares 100 bytes, has 1 */
	        {"inner short", {0x0a, 0x03, 0x22, 0x64, 0x08}, 5, "Batch inside SignedBatch does not decode"},
	        /* the inner batch: kind 7 */
	        {"kind 7", {0x0a, 0x02, 0x18, 0x07}, 4, "unknown kind 7"},
	        /* the inner batch: kind -1 as a 10-byte varint */
	        {"kind -1",
	         {0x0a, 0x0b, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	         13,
	         "unknown kind -1"},
	};
	return cr_make_param_array(struct bad_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct bad_case *c, codec, rejects_undecodable)
{
	struct bal_arena arena;
	bal_arena_init(&arena, 0);
	struct bal_batch out;
	memset(&out, 0xa5, sizeof(out));
	struct bal_batch untouched = out;
	char why[128] = "";
	cr_assert_eq(bal_codec_decode(c->bytes, c->len, &arena, &out, why, sizeof(why)), BAL_ESCHEMA, "%s", c->name);
	cr_assert_eq(strncmp(why, c->why_prefix, strlen(c->why_prefix)), 0, "%s: why = \"%s\"", c->name, why);
	cr_assert_arr_eq(&out, &untouched, sizeof(out), "%s: out written on failure", c->name);
	bal_arena_deinit(&arena);
}

Test(codec, rejects_every_cut_inside_the_batch_field)
{
	struct bal_batch in = sample(BAL_KIND_BALLOTS);
	uint8_t *body;
	size_t len = pack_signed(&in, NULL, 0, &body);
	struct bal_arena arena;
	bal_arena_init(&arena, 0);
	/* With no signature the body is one length-delimited field: every proper
	 * prefix but the empty one cuts it. */
	for (size_t cut = 1; cut < len; cut++) {
		struct bal_batch out;
		char why[128];
		cr_assert_eq(bal_codec_decode(body, cut, &arena, &out, why, sizeof(why)), BAL_ESCHEMA,
		             "cut at %zu of %zu", cut, len);
		bal_arena_reset(&arena);
	}
	bal_arena_deinit(&arena);
	free(body);
}

Test(codec, decodes_empty_body_as_default_batch)
{
	struct bal_arena arena;
	bal_arena_init(&arena, 0);
	struct bal_batch out;
	char why[64] = "";
	cr_assert_eq(bal_codec_decode((const uint8_t *)"", 0, &arena, &out, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(out.precinct_id, 0);
	cr_assert_eq(out.seq, 0);
	cr_assert_eq(out.kind, BAL_KIND_BALLOTS);
	cr_assert_eq(out.ncolumns, 0);
	cr_assert_eq(out.ntallies, 0);
	cr_assert_not(out.has_turnout);
	cr_assert_eq(out.signed_len, 0);
	cr_assert_eq(out.signature_len, 0);
	bal_arena_deinit(&arena);
}

Test(codec, tolerates_unknown_fields)
{
	struct bal_batch in = sample(BAL_KIND_BALLOTS);
	size_t blen = bal_codec_batch_size(&in);
	/* Batch field 15 (varint 300) and field 16 (bytes "hi") appended. */
	static const uint8_t extra_batch[] = {0x78, 0xac, 0x02, 0x82, 0x01, 0x02, 'h', 'i'};
	uint8_t *inner = malloc(blen + sizeof(extra_batch));
	bal_codec_batch_pack(&in, inner);
	memcpy(inner + blen, extra_batch, sizeof(extra_batch));
	size_t ilen = blen + sizeof(extra_batch);
	size_t slen = bal_codec_signed_size(inner, ilen, NULL, 0);
	/* SignedBatch field 9 (fixed32) appended. */
	static const uint8_t extra_signed[] = {0x4d, 1, 2, 3, 4};
	uint8_t *body = malloc(slen + sizeof(extra_signed));
	bal_codec_signed_pack(inner, ilen, NULL, 0, body);
	memcpy(body + slen, extra_signed, sizeof(extra_signed));

	struct bal_arena arena;
	bal_arena_init(&arena, 0);
	struct bal_batch out;
	char why[128] = "";
	cr_assert_eq(bal_codec_decode(body, slen + sizeof(extra_signed), &arena, &out, why, sizeof(why)), 0, "%s", why);
	assert_same_batch(&in, &out);
	/* The signed bytes keep the unknown fields: they are what was signed. */
	cr_assert_eq(out.signed_len, ilen);
	cr_assert_arr_eq(out.signed_bytes, inner, ilen);
	bal_arena_deinit(&arena);
	free(inner);
	free(body);
}

Test(codec, reports_arena_limit_as_enomem)
{
	struct bal_batch in = sample(BAL_KIND_BALLOTS);
	uint8_t *body;
	size_t len = pack_signed(&in, NULL, 0, &body);
	struct bal_arena arena;
	bal_arena_init(&arena, 64);
	struct bal_batch out;
	char why[160] = "";
	cr_assert_eq(bal_codec_decode(body, len, &arena, &out, why, sizeof(why)), -ENOMEM);
	cr_assert_not_null(strstr(why, "limit 64 bytes"), "why = \"%s\"", why);
	bal_arena_deinit(&arena);
	free(body);
}

Test(codec, arena_reaches_steady_state)
{
	enum { NBALLOTS = 5000 };
	uint32_t *a = malloc(NBALLOTS * sizeof(*a));
	uint32_t *b = malloc(NBALLOTS * sizeof(*b));
	for (size_t i = 0; i < NBALLOTS; i++) {
		a[i] = (uint32_t)(i % 8);
		b[i] = (uint32_t)(i % 5);
	}
	struct bal_column cols[] = {{.contest_id = 1, .n = NBALLOTS, .choices = a},
	                            {.contest_id = 105, .n = NBALLOTS, .choices = b}};
	struct bal_batch in = sample(BAL_KIND_BALLOTS);
	in.columns = cols;
	in.ncolumns = 2;
	uint8_t *body;
	size_t len = pack_signed(&in, NULL, 0, &body);

	struct bal_arena arena;
	bal_arena_init(&arena, 0);
	struct bal_batch out;
	/* First decode: the arena grows (several blocks, the arrays alone are 40 kB). */
	cr_assert_eq(bal_codec_decode(body, len, &arena, &out, NULL, 0), 0);
	assert_same_batch(&in, &out);
	size_t hw = arena.high_water;
	cr_assert_geq(hw, 2 * NBALLOTS * sizeof(uint32_t));
	bal_arena_reset(&arena);
	struct bal_arena_block *kept = arena.head;
	cr_assert_not_null(kept);
	/* Steady state: same block, same high water, no new block chained. */
	for (int round = 0; round < 3; round++) {
		cr_assert_eq(bal_codec_decode(body, len, &arena, &out, NULL, 0), 0);
		assert_same_batch(&in, &out);
		cr_assert_eq(arena.head, kept, "round %d chained a new block", round);
		cr_assert_eq(arena.high_water, hw, "round %d grew the high water mark", round);
		bal_arena_reset(&arena);
		cr_assert_eq(arena.head, kept);
	}
	bal_arena_deinit(&arena);
	free(body);
	free(a);
	free(b);
}
