/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests for proto/codec.c: roundtrips of every batch kind and of acks, the
 * exact wire bytes of a small batch, and the behaviour on garbage, truncated,
 * oversized, empty and extended input; only the canonical encoding decodes
 * (every other encoding of the same values is refused, Batch and SignedBatch);
 * bal_codec_signed_part(); the decode arena reaches a steady state.
 */
#include "proto/codec.h"

#include "tests/common/params.h"

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
	        .election_id = "kz-2023-mazhilis",
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
	cr_assert_str_eq(a->election_id ? a->election_id : "", b->election_id ? b->election_id : "");
	cr_assert_eq(a->ncolumns, b->ncolumns);
	for (size_t i = 0; i < a->ncolumns; i++) {
		cr_assert_eq(a->columns[i].contest_id, b->columns[i].contest_id);
		cr_assert_eq(a->columns[i].n, b->columns[i].n);
		if (a->columns[i].n)
			cr_assert_arr_eq(a->columns[i].choices, b->columns[i].choices,
			                 a->columns[i].n * sizeof(uint32_t));
	}
	cr_assert_eq(a->ntallies, b->ntallies);
	for (size_t i = 0; i < a->ntallies; i++) {
		cr_assert_eq(a->tallies[i].contest_id, b->tallies[i].contest_id);
		cr_assert_eq(a->tallies[i].n, b->tallies[i].n);
		if (a->tallies[i].n)
			cr_assert_arr_eq(a->tallies[i].counts, b->tallies[i].counts,
			                 a->tallies[i].n * sizeof(uint64_t));
	}
}

/* Packs `in` with `sig`, decodes it into *out (from `arena`) and checks that
 * every field comes back, the signed bytes exactly the packed Batch and the
 * signature as given. Returns the body (caller frees), its length in *len. */
static uint8_t *assert_round_trip(const struct bal_batch *in, const uint8_t *sig, size_t siglen,
                                  struct bal_arena *arena, struct bal_batch *out, size_t *len)
{
	uint8_t *body;
	*len = pack_signed(in, sig, siglen, &body);
	char why[200] = "";
	cr_assert_eq(bal_codec_decode(body, *len, arena, out, why, sizeof(why)), 0, "%s", why);
	assert_same_batch(in, out);
	size_t blen = bal_codec_batch_size(in);
	uint8_t *inner = malloc(blen ? blen : 1);
	bal_codec_batch_pack(in, inner);
	cr_assert_eq(out->signed_len, blen);
	if (blen)
		cr_assert_arr_eq(out->signed_bytes, inner, blen);
	free(inner);
	cr_assert_eq(out->signature_len, siglen);
	if (siglen)
		cr_assert_arr_eq(out->signature, sig, siglen);
	return body;
}

ParameterizedTestParameters(codec, roundtrips_every_kind)
{
	static enum bal_kind kinds[] = {BAL_KIND_BALLOTS, BAL_KIND_TALLY, BAL_KIND_PROTOCOL};
	return cr_make_param_array(enum bal_kind, kinds, sizeof(kinds) / sizeof(kinds[0]));
}

ParameterizedTest(enum bal_kind *kind, codec, roundtrips_every_kind)
{
	struct bal_batch in = sample(*kind), out;
	struct bal_arena arena;
	bal_arena_init(&arena, 0);
	size_t len;
	free(assert_round_trip(&in, NULL, 0, &arena, &out, &len));
	bal_arena_deinit(&arena);
}

Test(codec, roundtrips_signed_wrapper)
{
	uint8_t sig[64];
	for (size_t i = 0; i < sizeof(sig); i++)
		sig[i] = (uint8_t)(i * 7 + 1);
	struct bal_batch in = sample(BAL_KIND_BALLOTS), out;
	struct bal_arena arena;
	bal_arena_init(&arena, 0);
	size_t len;
	free(assert_round_trip(&in, sig, sizeof(sig), &arena, &out, &len));
	bal_arena_deinit(&arena);
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
	                      .created_unix_ms = 6,
	                      .election_id = "kz"};
	/* Written by hand from the protobuf encoding rules, not by protobuf-c. */
	static const uint8_t want[] = {
	        0x08, 0x01, 0x10, 0x02, 0x18, 0x01,                   /* precinct 1, seq 2, kind TALLY */
	        0x22, 0x07, 0x08, 0x65, 0x12, 0x03, 0x01, 0x00, 0x02, /* ballots: contest 101, [1,0,2] */
	        0x2a, 0x06, 0x08, 0x01, 0x12, 0x02, 0x03, 0x04,       /* tallies: contest 1, [3,4] */
	        0x32, 0x06, 0x08, 0x05, 0x10, 0x04, 0x18, 0x01,       /* turnout 5/4/1 */
	        0x38, 0x06,                                           /* created 6 */
	        0x42, 0x02, 'k',  'z',                                /* election "kz" */
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

/* A receipt survives the round trip field for field; an ack without one
 * says so; a receipt with a short hash is refused. */
Test(codec, roundtrips_ack_receipt)
{
	static struct bal_receipt r, back;
	r.leaf_index = 41;
	r.head.tree_size = 1000;
	r.head.timestamp_ms = 1701234567890ULL;
	for (unsigned i = 0; i < BAL_HASH_BYTES; i++) {
		r.leaf_hash[i] = (uint8_t)i;
		r.head.root[i] = (uint8_t)(255 - i);
	}
	for (unsigned i = 0; i < sizeof(r.head.signature); i++)
		r.head.signature[i] = (uint8_t)(i * 3);
	r.npath = 10;
	for (unsigned k = 0; k < r.npath; k++)
		memset(r.path[k], (int)(k + 1), BAL_HASH_BYTES);
	size_t n = bal_codec_ack_receipt_size(BAL_ACK_ACCEPTED, 42, NULL, &r);
	uint8_t buf[1024];
	cr_assert_leq(n, sizeof(buf));
	cr_assert_eq(bal_codec_ack_receipt_pack(BAL_ACK_ACCEPTED, 42, NULL, &r, buf), n);
	enum bal_ack_status st;
	uint64_t pos;
	char err[16];
	bool has = false;
	cr_assert_eq(bal_codec_ack_receipt_decode(buf, n, &st, &pos, err, sizeof(err), &back, &has), 0);
	cr_assert(has);
	cr_assert_eq(pos, 42);
	cr_assert_eq(back.leaf_index, r.leaf_index);
	cr_assert_eq(back.head.tree_size, r.head.tree_size);
	cr_assert_eq(back.head.timestamp_ms, r.head.timestamp_ms);
	cr_assert_eq(back.npath, r.npath);
	cr_assert_eq(memcmp(back.leaf_hash, r.leaf_hash, BAL_HASH_BYTES), 0);
	cr_assert_eq(memcmp(back.head.root, r.head.root, BAL_HASH_BYTES), 0);
	cr_assert_eq(memcmp(back.head.signature, r.head.signature, sizeof(r.head.signature)), 0);
	cr_assert_eq(memcmp(back.path, r.path, r.npath * BAL_HASH_BYTES), 0);

	n = bal_codec_ack_pack(BAL_ACK_ACCEPTED, 42, NULL, buf);
	cr_assert_eq(bal_codec_ack_receipt_decode(buf, n, &st, &pos, err, sizeof(err), &back, &has), 0);
	cr_assert(!has, "an ack without a receipt has none");

	/* Receipt{leaf_hash: 3 bytes} inside BatchAck{status 0, receipt}. */
	static const uint8_t short_hash[] = {0x22, 0x05, 0x12, 0x03, 0x01, 0x02, 0x03};
	cr_assert_eq(
	        bal_codec_ack_receipt_decode(short_hash, sizeof(short_hash), &st, &pos, err, sizeof(err), &back, &has),
	        BAL_ESCHEMA);
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

/* Decoding `body` fails with BAL_ESCHEMA, a reason starting with `prefix`
 * and holding `also` (when not NULL), and leaves the output untouched. */
static void assert_refused(const char *name, const uint8_t *body, size_t len, const char *prefix, const char *also)
{
	struct bal_arena arena;
	bal_arena_init(&arena, 0);
	struct bal_batch out;
	memset(&out, 0xa5, sizeof(out));
	struct bal_batch untouched = out;
	char why[200] = "";
	cr_assert_eq(bal_codec_decode(body, len, &arena, &out, why, sizeof(why)), BAL_ESCHEMA, "%s: %s", name, why);
	cr_assert_eq(strncmp(why, prefix, strlen(prefix)), 0, "%s: why = \"%s\"", name, why);
	cr_assert(!also || strstr(why, also), "%s: why = \"%s\", want \"%s\"", name, why, also);
	cr_assert_arr_eq(&out, &untouched, sizeof(out), "%s: out written on failure", name);
	bal_arena_deinit(&arena);
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
	assert_refused(c->name, c->bytes, c->len, c->why_prefix, NULL);
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
	cr_assert_str_eq(out.election_id, "");
	bal_arena_deinit(&arena);
}

/* ---- only the canonical encoding decodes ---------------------------------- */

/* Wraps raw Batch bytes in a (canonical, unsigned) SignedBatch: body[128]. */
static size_t wrap_inner(const uint8_t *inner, size_t len, uint8_t *body)
{
	cr_assert_leq(bal_codec_signed_size(inner, len, NULL, 0), 128);
	return bal_codec_signed_pack(inner, len, NULL, 0, body);
}

/* Wraps raw Batch bytes as wrap_inner() does and decodes them. */
static int decode_inner(const uint8_t *inner, size_t len, struct bal_arena *arena, struct bal_batch *out, char *why,
                        size_t whylen)
{
	static uint8_t body[128]; /* `out` borrows from it after the return */
	size_t n = wrap_inner(inner, len, body);
	return bal_codec_decode(body, n, arena, out, why, whylen);
}

/* precinct 1, seq 2, TALLY, tallies {contest 1: [3, 4]}, turnout 5/4/1, created 6, election "kz" */
#define CANONICAL                                                                                                   \
	0x08, 0x01, 0x10, 0x02, 0x18, 0x01, 0x2a, 0x06, 0x08, 0x01, 0x12, 0x02, 0x03, 0x04, 0x32, 0x06, 0x08, 0x05, \
	        0x10, 0x04, 0x18, 0x01, 0x38, 0x06, 0x42, 0x02, 'k', 'z'
#define CANONICAL_LEN 28

Test(codec, accepts_a_canonical_batch_written_by_hand)
{
	static const uint8_t inner[] = {CANONICAL};
	cr_assert_eq(sizeof(inner), CANONICAL_LEN);
	struct bal_arena arena;
	bal_arena_init(&arena, 0);
	struct bal_batch out;
	char why[160] = "";
	cr_assert_eq(decode_inner(inner, sizeof(inner), &arena, &out, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(out.precinct_id, 1);
	cr_assert_eq(out.kind, BAL_KIND_TALLY);
	cr_assert_eq(out.ntallies, 1);
	cr_assert_eq(out.tallies[0].counts[1], 4);
	cr_assert_eq(out.ballots_issued, 5);
	cr_assert_str_eq(out.election_id, "kz");
	cr_assert_eq(out.signed_len, sizeof(inner));
	cr_assert_arr_eq(out.signed_bytes, inner, sizeof(inner));
	bal_arena_deinit(&arena);
}

/* Batches protobuf-c decodes, each another encoding than the canonical one. */
struct noncanon_case {
	const char *name;
	uint8_t bytes[40];
	size_t len;
};

static const struct noncanon_case noncanon_cases[] = {
        {"unknown varint field 15", {CANONICAL, 0x78, 0x01}, CANONICAL_LEN + 2},
        {"unknown bytes field 16", {CANONICAL, 0x82, 0x01, 0x02, 'h', 'i'}, CANONICAL_LEN + 5},
        {"unknown fixed32 field 9", {0x08, 0x01, 0x4d, 1, 2, 3, 4}, 7},
        {"unknown fixed64 field 10", {0x08, 0x01, 0x51, 1, 2, 3, 4, 5, 6, 7, 8}, 11},
        {"turnout twice", {0x08, 0x01, 0x32, 0x02, 0x08, 0x05, 0x32, 0x02, 0x10, 0x04}, 10},
        {"turnout twice, same", {0x08, 0x01, 0x32, 0x02, 0x08, 0x05, 0x32, 0x02, 0x08, 0x05}, 10},
        {"precinct_id twice", {0x08, 0x02, 0x08, 0x01}, 4},
        {"election_id twice", {0x08, 0x01, 0x42, 0x01, 'a', 0x42, 0x01, 'b'}, 8},
        {"non-minimal varint", {0x08, 0x81, 0x00}, 3},
        {"non-minimal tag", {0x88, 0x00, 0x01}, 3},
        {"non-minimal length", {0x08, 0x01, 0x2a, 0x86, 0x00, 0x08, 0x01, 0x12, 0x02, 0x03, 0x04}, 11},
        {"unpacked choices", {0x08, 0x01, 0x22, 0x08, 0x08, 0x65, 0x10, 0x01, 0x10, 0x00, 0x10, 0x02}, 12},
        {"unpacked counts", {0x08, 0x01, 0x18, 0x01, 0x2a, 0x06, 0x08, 0x01, 0x10, 0x03, 0x10, 0x04}, 12},
        {"choices packed in two runs",
         {0x08, 0x01, 0x22, 0x09, 0x08, 0x65, 0x12, 0x01, 0x01, 0x12, 0x02, 0x00, 0x02},
         13},
        {"empty packed choices", {0x08, 0x01, 0x22, 0x04, 0x08, 0x65, 0x12, 0x00}, 8},
        {"non-minimal choice", {0x08, 0x01, 0x22, 0x06, 0x08, 0x65, 0x12, 0x02, 0x81, 0x00}, 10},
        {"explicit precinct_id 0", {0x08, 0x00, 0x10, 0x02}, 4},
        {"explicit kind BALLOTS", {0x08, 0x01, 0x18, 0x00}, 4},
        {"explicit created 0", {0x08, 0x01, 0x38, 0x00}, 4},
        {"explicit empty election_id", {0x08, 0x01, 0x42, 0x00}, 4},
        {"explicit zero in turnout", {0x08, 0x01, 0x32, 0x02, 0x08, 0x00}, 6},
        {"explicit contest_id 0", {0x08, 0x01, 0x22, 0x05, 0x08, 0x00, 0x12, 0x01, 0x01}, 9},
        {"seq before precinct_id", {0x10, 0x02, 0x08, 0x01}, 4},
        {"tallies before ballots", {0x08, 0x01, 0x2a, 0x02, 0x08, 0x01, 0x22, 0x02, 0x08, 0x65}, 10},
        {"ballots, tallies, ballots",
         {0x08, 0x01, 0x22, 0x02, 0x08, 0x65, 0x2a, 0x02, 0x08, 0x01, 0x22, 0x02, 0x08, 0x66},
         14},
        {"election_id before created", {0x08, 0x01, 0x42, 0x01, 'x', 0x38, 0x06}, 7},
        {"contest_id after choices", {0x08, 0x01, 0x22, 0x05, 0x12, 0x01, 0x01, 0x08, 0x65}, 9},
        {"turnout fields out of order", {0x08, 0x01, 0x32, 0x04, 0x10, 0x04, 0x08, 0x05}, 8},
        {"contest_id twice in a column", {0x08, 0x01, 0x22, 0x04, 0x08, 0x66, 0x08, 0x65}, 8},
        {"unknown field in a column", {0x08, 0x01, 0x22, 0x04, 0x08, 0x65, 0x18, 0x01}, 8},
        {"unknown field in turnout", {0x08, 0x01, 0x32, 0x02, 0x20, 0x01}, 6},
};

INDEX_PARAMS(codec, refuses_non_canonical_batch, noncanon_cases)

ParameterizedTest(size_t *ix, codec, refuses_non_canonical_batch)
{
	const struct noncanon_case *c = &noncanon_cases[*ix];
	uint8_t body[128];
	size_t n = wrap_inner(c->bytes, c->len, body);
	assert_refused(c->name, body, n, "non-canonical encoding of Batch (", NULL);
}

Test(codec, names_both_sizes_or_the_first_differing_byte)
{
	struct bal_arena arena;
	bal_arena_init(&arena, 0);
	struct bal_batch out;
	char why[160] = "";
	static const uint8_t longer[] = {CANONICAL, 0x78, 0x01};
	cr_assert_eq(decode_inner(longer, sizeof(longer), &arena, &out, why, sizeof(why)), BAL_ESCHEMA);
	cr_assert_str_eq(why, "non-canonical encoding of Batch (30 bytes, canonical form has 28)");
	static const uint8_t swapped[] = {0x10, 0x02, 0x08, 0x01};
	cr_assert_eq(decode_inner(swapped, sizeof(swapped), &arena, &out, why, sizeof(why)), BAL_ESCHEMA);
	cr_assert_str_eq(why, "non-canonical encoding of Batch (4 bytes, the canonical form differs at byte 0)");
	bal_arena_deinit(&arena);
}

/* inner Batch used by the envelope cases: precinct 1, seq 2 */
#define B4 0x08, 0x01, 0x10, 0x02

/* SignedBatch bytes protobuf-c decodes, each another encoding than the canonical one. */
struct envelope_case {
	const char *name;
	uint8_t bytes[32];
	size_t len;
	const char *what; /* the reason in parentheses */
};

static const struct envelope_case envelope_cases[] = {
        {"unknown varint field after", {0x0a, 0x04, B4, 0x18, 0x01}, 8, "a field other than batch and signature"},
        {"unknown fixed32 field after",
         {0x0a, 0x04, B4, 0x4d, 1, 2, 3, 4},
         11,
         "a field other than batch and signature"},
        {"unknown bytes field after", {0x0a, 0x04, B4, 0x1a, 0x01, 0x00}, 9, "a field other than batch and signature"},
        {"unknown field before", {0x18, 0x01, 0x0a, 0x04, B4}, 8, "a field other than batch and signature"},
        {"batch twice", {0x0a, 0x04, B4, 0x0a, 0x04, B4}, 12, "a field repeated or out of order"},
        {"batch twice, the last another",
         {0x0a, 0x02, 0x08, 0x02, 0x0a, 0x04, B4},
         10,
         "a field repeated or out of order"},
        {"signature before batch", {0x12, 0x02, 0xaa, 0xbb, 0x0a, 0x04, B4}, 10, "a field repeated or out of order"},
        {"signature twice",
         {0x0a, 0x04, B4, 0x12, 0x01, 0xaa, 0x12, 0x01, 0xbb},
         12,
         "a field repeated or out of order"},
        {"empty batch written out", {0x0a, 0x00}, 2, "an empty field written out"},
        {"empty signature written out", {0x0a, 0x04, B4, 0x12, 0x00}, 8, "an empty field written out"},
        {"non-minimal length", {0x0a, 0x84, 0x00, B4}, 7, "a tag or length in more varint bytes than needed"},
        {"non-minimal tag", {0x8a, 0x00, 0x04, B4}, 7, "a tag or length in more varint bytes than needed"},
};

INDEX_PARAMS(codec, refuses_non_canonical_envelope, envelope_cases)

ParameterizedTest(size_t *ix, codec, refuses_non_canonical_envelope)
{
	const struct envelope_case *c = &envelope_cases[*ix];
	assert_refused(c->name, c->bytes, c->len,
	               "SignedBatch must hold batch and signature once each and nothing else (", c->what);
}

/* A small xorshift stream: the same batches on every run. */
static uint64_t next_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* A number of about `bits` random bits, often at the edges of varint widths. */
static uint64_t edgy(uint64_t *s, unsigned bits)
{
	static const uint64_t edges[] = {0,          1,          127,       128, 16383, 16384, (1ULL << 32) - 1,
	                                 1ULL << 32, 1ULL << 63, UINT64_MAX};
	uint64_t r = next_rand(s);
	uint64_t v = r % 4 == 0 ? edges[(r >> 8) % (sizeof(edges) / sizeof(edges[0]))] : next_rand(s) >> (r % 64);
	return bits >= 64 ? v : v & ((1ULL << bits) - 1);
}

/* Whatever bal_codec_batch_pack() makes, with or without a signature, decodes
 * to the same batch, with the packed bytes as its signed bytes. */
ParameterizedTestParameters(codec, accepts_everything_it_packs)
{
	static enum bal_kind kinds[] = {BAL_KIND_BALLOTS, BAL_KIND_TALLY, BAL_KIND_PROTOCOL};
	return cr_make_param_array(enum bal_kind, kinds, sizeof(kinds) / sizeof(kinds[0]));
}

ParameterizedTest(enum bal_kind *kind, codec, accepts_everything_it_packs)
{
	enum { ROUNDS = 400, MAXCOL = 4, MAXN = 40, MAXID = 300 };
	uint64_t s = 0x9e3779b97f4a7c15ULL + (uint64_t)*kind;
	static uint32_t choices[MAXCOL][MAXN];
	static uint64_t counts[MAXCOL][MAXN];
	struct bal_column cols[MAXCOL];
	struct bal_ctally tls[MAXCOL];
	char election[MAXID + 1];
	uint8_t sig[64];
	struct bal_arena arena;
	bal_arena_init(&arena, 0);
	for (int round = 0; round < ROUNDS; round++) {
		struct bal_batch in = {
		        .precinct_id = (uint32_t)edgy(&s, 32),
		        .seq = edgy(&s, 64),
		        .kind = *kind,
		        .has_turnout = next_rand(&s) % 3 != 0,
		        .created_unix_ms = edgy(&s, 64),
		};
		if (in.has_turnout) {
			in.ballots_issued = edgy(&s, 64);
			in.ballots_cast = edgy(&s, 64);
			in.ballots_spoiled = edgy(&s, 64);
		}
		size_t idlen = next_rand(&s) % 4 == 0 ? 0 : next_rand(&s) % (MAXID + 1);
		for (size_t i = 0; i < idlen; i++)
			election[i] = (char)(1 + next_rand(&s) % 255); /* any byte but NUL */
		election[idlen] = '\0';
		in.election_id = next_rand(&s) % 8 == 0 ? NULL : election;
		size_t ncol = next_rand(&s) % (MAXCOL + 1);
		for (size_t c = 0; c < ncol; c++) {
			size_t n = next_rand(&s) % (MAXN + 1);
			for (size_t k = 0; k < n; k++) {
				choices[c][k] = (uint32_t)edgy(&s, 32);
				counts[c][k] = edgy(&s, 64);
			}
			cols[c] = (struct bal_column){
			        .contest_id = (uint32_t)edgy(&s, 32), .n = n, .choices = choices[c]};
			tls[c] = (struct bal_ctally){.contest_id = (uint32_t)edgy(&s, 32), .n = n, .counts = counts[c]};
		}
		if (*kind == BAL_KIND_BALLOTS || next_rand(&s) % 4 == 0) {
			in.ncolumns = ncol;
			in.columns = cols;
		}
		if (*kind != BAL_KIND_BALLOTS || next_rand(&s) % 4 == 0) {
			in.ntallies = ncol;
			in.tallies = tls;
		}
		size_t siglen = next_rand(&s) % 2 ? sizeof(sig) : 0;
		for (size_t i = 0; i < siglen; i++)
			sig[i] = (uint8_t)next_rand(&s);

		size_t len;
		struct bal_batch out;
		uint8_t *body = assert_round_trip(&in, sig, siglen, &arena, &out, &len);
		/* The store's view of the record: the same signed bytes. */
		size_t off = 0, slen = 0;
		if (out.signed_len) {
			cr_assert_eq(bal_codec_signed_part(body, len, &off, &slen), 0, "round %d", round);
			cr_assert_eq(body + off, out.signed_bytes, "round %d", round);
			cr_assert_eq(slen, out.signed_len, "round %d", round);
		}
		free(body);
		bal_arena_reset(&arena);
	}
	bal_arena_deinit(&arena);
}

struct election_case {
	const char *id; /* NULL: not set */
	const char *decoded;
	size_t wire; /* bytes field 8 takes on the wire */
};

static const struct election_case election_cases[] = {
        {NULL, "", 0},
        {"", "", 0},
        {"kz-2023-mazhilis", "kz-2023-mazhilis", 2 + 16},
        {"kz-2023-rehearsal", "kz-2023-rehearsal", 2 + 17},
        {"выборы-2023", "выборы-2023", 2 + 17},
};

INDEX_PARAMS(codec, election_id_round_trips, election_cases)

ParameterizedTest(size_t *ix, codec, election_id_round_trips)
{
	const struct election_case *c = &election_cases[*ix];
	struct bal_batch in = sample(BAL_KIND_TALLY);
	in.election_id = NULL;
	size_t without = bal_codec_batch_size(&in);
	in.election_id = c->id;
	cr_assert_eq(bal_codec_batch_size(&in), without + c->wire);
	struct bal_batch out;
	struct bal_arena arena;
	bal_arena_init(&arena, 0);
	size_t len;
	free(assert_round_trip(&in, NULL, 0, &arena, &out, &len));
	cr_assert_not_null(out.election_id);
	cr_assert_str_eq(out.election_id, c->decoded);
	bal_arena_deinit(&arena);
}

Test(codec, refuses_an_election_id_with_a_nul)
{
	/* A C string ends at the NUL: "k\0z" decodes to "k", whose canonical form is shorter. */
	static const uint8_t inner[] = {0x08, 0x01, 0x42, 0x03, 'k', 0x00, 'z'};
	struct bal_arena arena;
	bal_arena_init(&arena, 0);
	struct bal_batch out;
	char why[160] = "";
	cr_assert_eq(decode_inner(inner, sizeof(inner), &arena, &out, why, sizeof(why)), BAL_ESCHEMA, "%s", why);
	cr_assert_str_eq(why, "non-canonical encoding of Batch (7 bytes, canonical form has 5)");
	bal_arena_deinit(&arena);
}

/* The daemon's request arena is 8 x --max-body + 64 KiB (daemon/worker.c): a
 * batch of --max-body (1 MB) ballots decodes in it, its canonical copy included. */
Test(codec, a_batch_of_max_body_fits_the_request_arena)
{
	enum { MAX_BODY = 1 << 20, NCOL = 2, NBALLOTS = (MAX_BODY - 256) / NCOL };
	uint32_t *choices = malloc(NCOL * (size_t)NBALLOTS * sizeof(*choices));
	struct bal_column cols[NCOL];
	for (size_t c = 0; c < NCOL; c++) {
		for (size_t i = 0; i < NBALLOTS; i++)
			choices[c * NBALLOTS + i] = (uint32_t)((i * 7 + c) % 9);
		cols[c] = (struct bal_column){
		        .contest_id = (uint32_t)(1 + 100 * c), .n = NBALLOTS, .choices = choices + c * NBALLOTS};
	}
	struct bal_batch in = sample(BAL_KIND_BALLOTS);
	in.columns = cols;
	in.ncolumns = NCOL;
	uint8_t sig[64] = {1};
	uint8_t *body;
	size_t len = pack_signed(&in, sig, sizeof(sig), &body);
	cr_assert_leq(len, MAX_BODY);
	cr_assert_geq(len, MAX_BODY - 256);
	struct bal_arena arena;
	bal_arena_init(&arena, (size_t)8 * MAX_BODY + 65536);
	struct bal_batch out;
	char why[200] = "";
	cr_assert_eq(bal_codec_decode(body, len, &arena, &out, why, sizeof(why)), 0, "%s", why);
	assert_same_batch(&in, &out);
	cr_log_info("arena: %zu bytes for a body of %zu", arena.high_water, len);
	bal_arena_deinit(&arena);
	free(body);
	free(choices);
}

/* ---- bal_codec_signed_part ------------------------------------------------ */

struct part_case {
	const char *name;
	uint8_t bytes[24];
	size_t len;
	int rc;
	size_t off, slen;
};

static const struct part_case part_cases[] = {
        {"canonical, no signature", {0x0a, 0x04, B4}, 6, 0, 2, 4},
        {"canonical, signature", {0x0a, 0x04, B4, 0x12, 0x02, 0xaa, 0xbb}, 10, 0, 2, 4},
        {"signature first", {0x12, 0x02, 0xaa, 0xbb, 0x0a, 0x04, B4}, 10, 0, 6, 4},
        {"unknown fields around",
         {0x18, 0x01, 0x0a, 0x04, B4, 0x4d, 1, 2, 3, 4, 0x51, 1, 2, 3, 4, 5, 6, 7, 8},
         22,
         0,
         4,
         4},
        {"batch twice: the last counts", {0x0a, 0x02, 0x08, 0x02, 0x0a, 0x04, B4}, 10, 0, 6, 4},
        {"non-minimal length", {0x0a, 0x84, 0x00, B4}, 7, 0, 3, 4},
        {"empty batch written out", {0x0a, 0x00}, 2, 0, 2, 0},
        {"no batch", {0x12, 0x01, 0xaa}, 3, -1, 0, 0},
        {"nothing", {0}, 0, -1, 0, 0},
        {"batch as a varint", {0x08, 0x01}, 2, -1, 0, 0},
        {"batch cut short", {0x0a, 0x05, B4}, 6, -1, 0, 0},
        {"length 2^64-1", {0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, B4}, 15, -1, 0, 0},
        {"length beyond 64 bits", {0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, B4}, 15, -1, 0, 0},
        {"tag never ends", {0x8a}, 1, -1, 0, 0},
        {"a varint of 11 bytes",
         {0x0a, 0x04, B4, 0x18, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01},
         17,
         -1,
         0,
         0},
        {"a group", {0x0a, 0x04, B4, 0x1b, 0x1c}, 8, -1, 0, 0},
        {"field number 0", {0x02, 0x00, 0x0a, 0x04, B4}, 8, -1, 0, 0},
        {"fixed32 cut short", {0x0a, 0x04, B4, 0x4d, 1, 2}, 9, -1, 0, 0},
        {"garbage after the batch", {0x0a, 0x04, B4, 0xff}, 7, -1, 0, 0},
};

INDEX_PARAMS(codec, finds_the_signed_part, part_cases)

ParameterizedTest(size_t *ix, codec, finds_the_signed_part)
{
	const struct part_case *c = &part_cases[*ix];
	size_t off = 12345, slen = 67890;
	int rc = bal_codec_signed_part(c->bytes, c->len, &off, &slen);
	cr_assert_eq(rc, c->rc, "%s: rc %d", c->name, rc);
	if (c->rc == 0) {
		cr_assert_eq(off, c->off, "%s: off %zu", c->name, off);
		cr_assert_eq(slen, c->slen, "%s: len %zu", c->name, slen);
	} else {
		cr_assert(off == 12345 && slen == 67890, "%s: outputs written on failure", c->name);
	}
}

Test(codec, signed_part_is_what_the_signature_covers)
{
	uint8_t sig[64];
	for (size_t i = 0; i < sizeof(sig); i++)
		sig[i] = (uint8_t)(0x80 + i); /* bytes that look like varint continuations */
	struct bal_arena arena;
	bal_arena_init(&arena, 0);
	for (int kind = BAL_KIND_BALLOTS; kind <= BAL_KIND_PROTOCOL; kind++) {
		struct bal_batch in = sample((enum bal_kind)kind);
		uint8_t *body;
		size_t len = pack_signed(&in, sig, sizeof(sig), &body);
		struct bal_batch out;
		cr_assert_eq(bal_codec_decode(body, len, &arena, &out, NULL, 0), 0);
		size_t off, slen;
		cr_assert_eq(bal_codec_signed_part(body, len, &off, &slen), 0);
		cr_assert_eq(body + off, out.signed_bytes, "kind %d: the part is not the signed bytes", kind);
		cr_assert_eq(slen, out.signed_len);
		/* Every proper prefix is malformed or lacks the batch. */
		for (size_t cut = 0; cut < len; cut++) {
			size_t o2 = 0, l2 = 0;
			int rc = bal_codec_signed_part(body, cut, &o2, &l2);
			cr_assert(rc != 0 || (o2 == off && l2 == slen && cut >= off + slen),
			          "kind %d cut %zu of %zu: found [%zu, +%zu)", kind, cut, len, o2, l2);
		}
		free(body);
		bal_arena_reset(&arena);
	}
	bal_arena_deinit(&arena);
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
