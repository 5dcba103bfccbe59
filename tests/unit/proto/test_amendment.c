/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests for the amendment part of proto/codec.c: every change round-trips,
 * the exact wire bytes of a small amendment, only the canonical encoding
 * decodes (Amendment and SignedAmendment, as for batches), a batch and an
 * amendment never decode as each other, a record's first byte tells them
 * apart and bal_codec_signed_part() finds what the commission signed; and
 * bal_amendment_check() (core/ballot.h), the checks that need only the
 * definition.
 */
#include "proto/codec.h"

#include "tests/common/params.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t key32[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                  17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

static struct bal_amendment sample(enum bal_change change)
{
	struct bal_amendment a = {
	        .election_id = "kz-2023-mazhilis",
	        .seq = 3,
	        .created_unix_ms = 1679212800123ULL,
	        .reason = "protocol of precinct 17 entered twice (decision 12/4)",
	        .change = change,
	};
	switch (change) {
	case BAL_CHANGE_SET_KEY:
		a.public_key = key32;
		a.public_key_len = sizeof(key32);
		/* fall through */
	case BAL_CHANGE_REVOKE_KEY:
	case BAL_CHANGE_FREEZE: a.precinct_id = 17; break;
	case BAL_CHANGE_VOID:
	case BAL_CHANGE_CERTIFY: a.position = 1ULL << 35; break;
	case BAL_CHANGE_NONE: break;
	}
	return a;
}

/* SignedAmendment of `a` with `sig`; caller frees. */
static uint8_t *pack_signed(const struct bal_amendment *a, const uint8_t *sig, size_t siglen, size_t *len)
{
	size_t n = bal_codec_amendment_size(a);
	uint8_t *inner = malloc(n ? n : 1);
	cr_assert_eq(bal_codec_amendment_pack(a, inner), n);
	*len = bal_codec_signed_amendment_size(inner, n, sig, siglen);
	uint8_t *out = malloc(*len);
	cr_assert_eq(bal_codec_signed_amendment_pack(inner, n, sig, siglen, out), *len);
	free(inner);
	return out;
}

static void assert_same(const struct bal_amendment *a, const struct bal_amendment *b)
{
	cr_assert_str_eq(a->election_id, b->election_id);
	cr_assert_eq(a->seq, b->seq);
	cr_assert_eq(a->created_unix_ms, b->created_unix_ms);
	cr_assert_str_eq(a->reason, b->reason);
	cr_assert_eq(a->change, b->change);
	cr_assert_eq(a->precinct_id, b->precinct_id);
	cr_assert_eq(a->position, b->position);
	cr_assert_eq(a->public_key_len, b->public_key_len);
	if (a->public_key_len)
		cr_assert_arr_eq(a->public_key, b->public_key, a->public_key_len);
}

ParameterizedTestParameters(amendment, roundtrips_every_change)
{
	static enum bal_change changes[] = {BAL_CHANGE_REVOKE_KEY, BAL_CHANGE_SET_KEY, BAL_CHANGE_VOID,
	                                    BAL_CHANGE_FREEZE,     BAL_CHANGE_CERTIFY, BAL_CHANGE_NONE};
	return cr_make_param_array(enum bal_change, changes, sizeof(changes) / sizeof(changes[0]));
}

ParameterizedTest(enum bal_change *change, amendment, roundtrips_every_change)
{
	uint8_t sig[64];
	for (size_t i = 0; i < sizeof(sig); i++)
		sig[i] = (uint8_t)(0x80 + i);
	struct bal_amendment in = sample(*change), out;
	struct bal_arena arena;
	bal_arena_init(&arena, 0);
	for (int signed_ = 0; signed_ < 2; signed_++) {
		size_t len;
		uint8_t *body = pack_signed(&in, signed_ ? sig : NULL, signed_ ? sizeof(sig) : 0, &len);
		cr_assert(bal_codec_is_amendment(body, len));
		char why[200] = "";
		cr_assert_eq(bal_codec_amendment_decode(body, len, &arena, &out, why, sizeof(why)), 0, "%s", why);
		assert_same(&in, &out);
		cr_assert_eq(out.signed_len, bal_codec_amendment_size(&in));
		cr_assert_eq(out.signature_len, signed_ ? sizeof(sig) : 0);
		if (signed_)
			cr_assert_arr_eq(out.signature, sig, sizeof(sig));
		/* The store compares records by what the commission signed. */
		size_t off, slen;
		cr_assert_eq(bal_codec_signed_part(body, len, &off, &slen), 0);
		cr_assert_eq(body + off, out.signed_bytes);
		cr_assert_eq(slen, out.signed_len);
		free(body);
		bal_arena_reset(&arena);
	}
	bal_arena_deinit(&arena);
}

Test(amendment, packs_exact_wire_bytes)
{
	struct bal_amendment a = {.election_id = "kz",
	                          .seq = 1,
	                          .created_unix_ms = 2,
	                          .reason = "r",
	                          .change = BAL_CHANGE_FREEZE,
	                          .precinct_id = 7};
	/* Written by hand from the protobuf encoding rules, not by protobuf-c. */
	static const uint8_t want[] = {
	        0x0a, 0x02, 'k',  'z',  /* election "kz" */
	        0x10, 0x01,             /* seq 1 */
	        0x18, 0x02,             /* created 2 */
	        0x22, 0x01, 'r',        /* reason "r" */
	        0x6a, 0x02, 0x08, 0x07, /* freeze {precinct 7} */
	};
	cr_assert_eq(bal_codec_amendment_size(&a), sizeof(want));
	uint8_t got[sizeof(want)];
	cr_assert_eq(bal_codec_amendment_pack(&a, got), sizeof(want));
	cr_assert_arr_eq(got, want, sizeof(want));
	/* The envelope starts with field 3: a record's first byte says "amendment". */
	uint8_t sig[2] = {0xaa, 0xbb}, env[32];
	size_t n = bal_codec_signed_amendment_pack(want, sizeof(want), sig, sizeof(sig), env);
	static const uint8_t env_want[] = {0x1a, sizeof(want)};
	cr_assert_eq(n, 2 + sizeof(want) + 4);
	cr_assert_arr_eq(env, env_want, sizeof(env_want));
	cr_assert_eq(env[2 + sizeof(want)], 0x22); /* field 4 */
	cr_assert_eq(env[0], BAL_CODEC_AMENDMENT_TAG);
}

Test(amendment, a_zero_in_a_oneof_is_written_and_decodes)
{
	/* A oneof member is present even at its default: void_position 0 and a
	 * freeze of precinct 0 decode as what they say (and the checks refuse
	 * what makes no sense), not as "no change". */
	struct bal_arena arena;
	bal_arena_init(&arena, 0);
	struct bal_amendment a = {.seq = 1, .reason = "x", .change = BAL_CHANGE_VOID, .position = 0}, out;
	size_t len;
	uint8_t *body = pack_signed(&a, NULL, 0, &len);
	cr_assert_eq(bal_codec_amendment_decode(body, len, &arena, &out, NULL, 0), 0);
	cr_assert_eq(out.change, BAL_CHANGE_VOID);
	cr_assert_eq(out.position, 0);
	free(body);
	a.change = BAL_CHANGE_FREEZE;
	a.precinct_id = 0;
	body = pack_signed(&a, NULL, 0, &len);
	cr_assert_eq(bal_codec_amendment_decode(body, len, &arena, &out, NULL, 0), 0);
	cr_assert_eq(out.change, BAL_CHANGE_FREEZE);
	cr_assert_eq(out.precinct_id, 0);
	free(body);
	bal_arena_deinit(&arena);
}

/* ---- only the canonical encoding decodes ---------------------------------- */

/* Decoding `body` as an amendment fails with BAL_ESCHEMA, a reason starting
 * with `prefix` and holding `also` (when not NULL); `out` stays untouched. */
static void assert_refused(const char *name, const uint8_t *body, size_t len, const char *prefix, const char *also)
{
	struct bal_arena arena;
	bal_arena_init(&arena, 0);
	struct bal_amendment out;
	memset(&out, 0xa5, sizeof(out));
	struct bal_amendment untouched = out;
	char why[200] = "";
	cr_assert_eq(bal_codec_amendment_decode(body, len, &arena, &out, why, sizeof(why)), BAL_ESCHEMA, "%s: %s", name,
	             why);
	cr_assert_eq(strncmp(why, prefix, strlen(prefix)), 0, "%s: why = \"%s\"", name, why);
	cr_assert(!also || strstr(why, also), "%s: why = \"%s\", want \"%s\"", name, why, also);
	cr_assert_arr_eq(&out, &untouched, sizeof(out), "%s: out written on failure", name);
	bal_arena_deinit(&arena);
}

/* seq 1, reason "r", freeze {precinct 7} */
#define A_OK     0x10, 0x01, 0x22, 0x01, 'r', 0x6a, 0x02, 0x08, 0x07
#define A_OK_LEN 9

/* Amendments protobuf-c decodes, each another encoding than the canonical one. */
struct noncanon_case {
	const char *name;
	uint8_t bytes[40];
	size_t len;
};

static const struct noncanon_case noncanon_cases[] = {
        {"unknown varint field 5", {A_OK, 0x28, 0x01}, A_OK_LEN + 2},
        {"unknown bytes field 20", {A_OK, 0xa2, 0x01, 0x01, 'x'}, A_OK_LEN + 4},
        {"seq twice", {0x10, 0x02, 0x10, 0x01, 0x22, 0x01, 'r', 0x6a, 0x02, 0x08, 0x07}, 11},
        {"reason before seq", {0x22, 0x01, 'r', 0x10, 0x01, 0x6a, 0x02, 0x08, 0x07}, 9},
        {"two changes: revoke, then freeze",
         {0x10, 0x01, 0x22, 0x01, 'r', 0x52, 0x02, 0x08, 0x07, 0x6a, 0x02, 0x08, 0x07},
         13},
        {"two changes: void, then certify", {0x10, 0x01, 0x22, 0x01, 'r', 0x60, 0x05, 0x70, 0x05}, 9},
        {"the change twice", {0x10, 0x01, 0x22, 0x01, 'r', 0x60, 0x05, 0x60, 0x05}, 9},
        {"non-minimal seq", {0x10, 0x81, 0x00, 0x22, 0x01, 'r', 0x6a, 0x02, 0x08, 0x07}, 10},
        {"non-minimal void_position", {0x10, 0x01, 0x22, 0x01, 'r', 0x60, 0x85, 0x00}, 8},
        {"explicit seq 0", {0x10, 0x00, 0x22, 0x01, 'r', 0x6a, 0x02, 0x08, 0x07}, 9},
        {"explicit empty election_id", {0x0a, 0x00, A_OK}, A_OK_LEN + 2},
        {"explicit created 0", {0x10, 0x01, 0x18, 0x00, 0x22, 0x01, 'r', 0x6a, 0x02, 0x08, 0x07}, 11},
        {"explicit precinct_id 0 in freeze", {0x10, 0x01, 0x22, 0x01, 'r', 0x6a, 0x02, 0x08, 0x00}, 9},
        {"unknown field in freeze", {0x10, 0x01, 0x22, 0x01, 'r', 0x6a, 0x04, 0x08, 0x07, 0x10, 0x01}, 11},
        {"public_key before precinct_id", {0x10, 0x01, 0x22, 0x01, 'r', 0x5a, 0x05, 0x12, 0x01, 0xaa, 0x08, 0x07}, 12},
        {"empty public_key written out", {0x10, 0x01, 0x22, 0x01, 'r', 0x5a, 0x04, 0x08, 0x07, 0x12, 0x00}, 11},
        {"a NUL inside the reason", {0x10, 0x01, 0x22, 0x03, 'a', 0x00, 'b', 0x6a, 0x02, 0x08, 0x07}, 11},
};

INDEX_PARAMS(amendment, refuses_non_canonical_amendment, noncanon_cases)

ParameterizedTest(size_t *ix, amendment, refuses_non_canonical_amendment)
{
	const struct noncanon_case *c = &noncanon_cases[*ix];
	uint8_t body[128];
	size_t n = bal_codec_signed_amendment_pack(c->bytes, c->len, NULL, 0, body);
	assert_refused(c->name, body, n, "non-canonical encoding of Amendment (", NULL);
}

Test(amendment, accepts_a_canonical_amendment_written_by_hand)
{
	static const uint8_t inner[] = {A_OK};
	uint8_t body[64];
	size_t n = bal_codec_signed_amendment_pack(inner, sizeof(inner), NULL, 0, body);
	struct bal_arena arena;
	bal_arena_init(&arena, 0);
	struct bal_amendment out;
	char why[200] = "";
	cr_assert_eq(bal_codec_amendment_decode(body, n, &arena, &out, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(out.seq, 1);
	cr_assert_str_eq(out.reason, "r");
	cr_assert_str_eq(out.election_id, "");
	cr_assert_eq(out.change, BAL_CHANGE_FREEZE);
	cr_assert_eq(out.precinct_id, 7);
	cr_assert_eq(out.signed_len, sizeof(inner));
	cr_assert_arr_eq(out.signed_bytes, inner, sizeof(inner));
	bal_arena_deinit(&arena);
}

#define IN9 0x1a, 0x09, A_OK

/* SignedAmendment bytes protobuf-c decodes, each another encoding than the canonical one. */
struct envelope_case {
	const char *name;
	uint8_t bytes[40];
	size_t len;
	const char *what;
};

static const struct envelope_case envelope_cases[] = {
        {"unknown varint field after", {IN9, 0x28, 0x01}, 13, "a field other than amendment and signature"},
        {"a batch field before", {0x0a, 0x01, 0x00, IN9}, 14, "a field other than amendment and signature"},
        {"amendment twice", {IN9, IN9}, 22, "a field repeated or out of order"},
        {"signature before amendment", {0x22, 0x01, 0xaa, IN9}, 14, "a field repeated or out of order"},
        {"signature twice", {IN9, 0x22, 0x01, 0xaa, 0x22, 0x01, 0xbb}, 17, "a field repeated or out of order"},
        {"empty amendment written out", {0x1a, 0x00}, 2, "an empty field written out"},
        {"empty signature written out", {IN9, 0x22, 0x00}, 13, "an empty field written out"},
        {"non-minimal length", {0x1a, 0x89, 0x00, A_OK}, 12, "a tag or length in more varint bytes than needed"},
};

INDEX_PARAMS(amendment, refuses_non_canonical_envelope, envelope_cases)

ParameterizedTest(size_t *ix, amendment, refuses_non_canonical_envelope)
{
	const struct envelope_case *c = &envelope_cases[*ix];
	assert_refused(c->name, c->bytes, c->len,
	               "SignedAmendment must hold amendment and signature once each and nothing else (", c->what);
}

Test(amendment, refuses_what_does_not_decode)
{
	static const uint8_t garbage[] = {0xff, 0xff, 0xff};
	assert_refused("garbage", garbage, sizeof(garbage), "SignedAmendment does not decode", NULL);
	/* the inner Amendment: field 4 (reason) declares 100 bytes, has 1 */
	static const uint8_t short_inner[] = {0x1a, 0x03, 0x22, 0x64, 'r'};
	assert_refused("inner short", short_inner, sizeof(short_inner),
	               "Amendment inside SignedAmendment does not "
	               "decode",
	               NULL);
}

Test(amendment, batches_and_amendments_never_decode_as_each_other)
{
	struct bal_arena arena;
	bal_arena_init(&arena, 0);
	/* An amendment posted as a batch. */
	struct bal_amendment a = sample(BAL_CHANGE_CERTIFY);
	size_t alen;
	uint8_t *abody = pack_signed(&a, NULL, 0, &alen);
	struct bal_batch b;
	char why[200] = "";
	cr_assert_eq(bal_codec_decode(abody, alen, &arena, &b, why, sizeof(why)), BAL_ESCHEMA);
	cr_assert(strstr(why, "a field other than batch and signature"), "%s", why);
	/* A batch posted as an amendment. */
	struct bal_batch in = {.precinct_id = 1, .seq = 2, .kind = BAL_KIND_TALLY, .election_id = "kz"};
	uint8_t inner[64], bbody[80];
	size_t n = bal_codec_batch_pack(&in, inner);
	size_t blen = bal_codec_signed_pack(inner, n, NULL, 0, bbody);
	cr_assert_not(bal_codec_is_amendment(bbody, blen));
	cr_assert_eq(bbody[0], 0x0a);
	struct bal_amendment out;
	cr_assert_eq(bal_codec_amendment_decode(bbody, blen, &arena, &out, why, sizeof(why)), BAL_ESCHEMA);
	cr_assert(strstr(why, "a field other than amendment and signature"), "%s", why);
	cr_assert_not(bal_codec_is_amendment(NULL, 0));
	free(abody);
	bal_arena_deinit(&arena);
}

Test(amendment, signed_part_of_a_record_with_both_fields_follows_its_first_byte)
{
	/* Not canonical, never journaled; the store still compares what the
	 * first byte says was signed. */
	static const uint8_t rec[] = {0x1a, 0x01, 0xa1, 0x0a, 0x01, 0xb1};
	size_t off = 0, slen = 0;
	cr_assert_eq(bal_codec_signed_part(rec, sizeof(rec), &off, &slen), 0);
	cr_assert_eq(off, 2);
	cr_assert_eq(slen, 1);
	static const uint8_t rec2[] = {0x0a, 0x01, 0xb1, 0x1a, 0x01, 0xa1};
	cr_assert_eq(bal_codec_signed_part(rec2, sizeof(rec2), &off, &slen), 0);
	cr_assert_eq(off, 2);
	cr_assert_eq(rec2[off], 0xb1);
	static const uint8_t cut_short[] = {0x1a, 0x05, 0xaa};
	cr_assert_eq(bal_codec_signed_part(cut_short, sizeof(cut_short), &off, &slen), -1);
}

Test(amendment, arena_limit_is_enomem)
{
	struct bal_amendment a = sample(BAL_CHANGE_SET_KEY);
	size_t len;
	uint8_t *body = pack_signed(&a, NULL, 0, &len);
	struct bal_arena arena;
	bal_arena_init(&arena, 32);
	struct bal_amendment out;
	char why[200] = "";
	cr_assert_eq(bal_codec_amendment_decode(body, len, &arena, &out, why, sizeof(why)), -ENOMEM, "%s", why);
	bal_arena_deinit(&arena);
	free(body);
}

/* ---- bal_amendment_check --------------------------------------------------- */

struct check_case {
	const char *name;
	enum bal_change change;
	uint64_t seq;
	const char *reason;
	uint32_t precinct_id;
	size_t key_len;
	uint64_t position;
	const char *why; /* NULL: accepted; else a part of the reason */
};

static const struct check_case check_cases[] = {
        {"revoke", BAL_CHANGE_REVOKE_KEY, 1, "stolen", 7, 0, 0, NULL},
        {"set_key", BAL_CHANGE_SET_KEY, 2, "new device", 9, 32, 0, NULL},
        {"void", BAL_CHANGE_VOID, 3, "entered twice", 0, 0, 12, NULL},
        {"freeze", BAL_CHANGE_FREEZE, 4, "final protocol", 7, 0, 0, NULL},
        {"certify", BAL_CHANGE_CERTIFY, 5, "final results", 0, 0, 1, NULL},
        {"utf-8 reason", BAL_CHANGE_FREEZE, 1, "\xd0\xbf\xd1\x80\xd0\xbe\xd1\x82\xd0\xbe\xd0\xba\xd0\xbe\xd0\xbb", 7, 0,
         0, NULL},
        {"seq 0", BAL_CHANGE_FREEZE, 0, "x", 7, 0, 0, "seq must be >= 1"},
        {"empty reason", BAL_CHANGE_FREEZE, 1, "", 7, 0, 0, "must give a reason"},
        {"control character", BAL_CHANGE_FREEZE, 1, "a\nb", 7, 0, 0, "byte 1 is not UTF-8"},
        {"latin-1 byte", BAL_CHANGE_FREEZE, 1, "caf\xe9", 7, 0, 0, "byte 3 is not UTF-8"},
        {"overlong slash", BAL_CHANGE_FREEZE, 1, "\xc0\xaf", 7, 0, 0, "byte 0 is not UTF-8"},
        {"surrogate", BAL_CHANGE_FREEZE, 1, "\xed\xa0\x80", 7, 0, 0, "byte 0 is not UTF-8"},
        {"no change", BAL_CHANGE_NONE, 1, "x", 0, 0, 0, "makes none"},
        {"revoke of an unknown precinct", BAL_CHANGE_REVOKE_KEY, 1, "x", 8, 0, 0, "precinct_id 8 is not in"},
        {"freeze of the commission", BAL_CHANGE_FREEZE, 1, "x", UINT32_MAX, 0, 0, "precinct_id 4294967295 is not"},
        {"set_key of 31 bytes", BAL_CHANGE_SET_KEY, 1, "x", 7, 31, 0, "public_key is 31 bytes"},
        {"set_key without a key", BAL_CHANGE_SET_KEY, 1, "x", 7, 0, 0, "public_key is 0 bytes"},
        {"set_key of an unknown precinct", BAL_CHANGE_SET_KEY, 1, "x", 8, 32, 0, "precinct_id 8 is not in"},
        {"void of position 0", BAL_CHANGE_VOID, 1, "x", 0, 0, 0, "void: position must be >= 1"},
        {"certify of position 0", BAL_CHANGE_CERTIFY, 1, "x", 0, 0, 0, "certify: position must be >= 1"},
};

INDEX_PARAMS(amendment, checks_what_needs_only_the_definition, check_cases)

ParameterizedTest(size_t *ix, amendment, checks_what_needs_only_the_definition)
{
	const struct check_case *c = &check_cases[*ix];
	struct bal_precinct precincts[] = {{.id = 7}, {.id = 9}};
	struct bal_defn d = {.election_id = "e", .nprecincts = 2, .precincts = precincts};
	struct bal_amendment a = {.election_id = "e",
	                          .seq = c->seq,
	                          .reason = c->reason,
	                          .change = c->change,
	                          .precinct_id = c->precinct_id,
	                          .public_key = c->key_len ? key32 : NULL,
	                          .public_key_len = c->key_len,
	                          .position = c->position};
	char why[200] = "";
	int rc = bal_amendment_check(&d, &a, why, sizeof(why));
	if (!c->why) {
		cr_assert_eq(rc, 0, "%s: %s", c->name, why);
		return;
	}
	cr_assert_eq(rc, BAL_EINVALID, "%s", c->name);
	cr_assert(strstr(why, c->why), "%s: why = \"%s\", want \"%s\"", c->name, why, c->why);
}

Test(amendment, reason_length_is_bounded)
{
	struct bal_precinct precincts[] = {{.id = 7}};
	struct bal_defn d = {.nprecincts = 1, .precincts = precincts};
	char *reason = malloc(BAL_REASON_MAX + 2);
	memset(reason, 'a', BAL_REASON_MAX + 1);
	reason[BAL_REASON_MAX] = '\0';
	struct bal_amendment a = {.seq = 1, .reason = reason, .change = BAL_CHANGE_FREEZE, .precinct_id = 7};
	cr_assert_eq(bal_amendment_check(&d, &a, NULL, 0), 0);
	reason[BAL_REASON_MAX] = 'a';
	reason[BAL_REASON_MAX + 1] = '\0';
	char why[100];
	cr_assert_eq(bal_amendment_check(&d, &a, why, sizeof(why)), BAL_EINVALID);
	cr_assert(strstr(why, "longer than 1024"), "%s", why);
	free(reason);
}
