/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Hostile and broken clients against the real ballotd on 127.0.0.1: bodies
 * that are not protobuf, truncated protobuf, huge declared lengths, unknown
 * fields, chunked bodies within and beyond the cap, oversized header lines,
 * heads http-parser would read leniently (bare LF, obs-fold, whitespace
 * before a colon, a tab in the target), slowloris clients, a client that never reads, connections beyond the cap,
 * garbage between pipelined requests, a tally whose own sum overflows, and a
 * long mixed run that checks the daemon's memory stays flat.
 *
 * Every case checks that the daemon is still alive and that no counter moved
 * (position and batches 0), unless it sends a valid batch on purpose to show
 * the daemon still counts. Uses only the harness's blocking sockets.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proto/codec.h"
#include "defn/defn.h"
#include "client/gen.h"
#include "tests/integration/harness.h"
#include "tests/integration/probe.h"
#include "client/keys.h"

#define KEY_SEED 23

/* The daemon of the current test, its election and scratch directory. */
static struct tp_suite h;

static void start(uint32_t precincts, uint32_t choices, const char *const *extra)
{
	char why[256];
	cr_assert_eq(tp_suite_start(&h, precincts, choices, KEY_SEED, extra, why, sizeof(why)), 0, "%s", why);
}

static void stop(void)
{
	cr_expect_eq(tp_suite_stop(&h), 0, "ballotd should still be alive and exit 0 on SIGTERM");
}

static void setup_default(void)
{
	start(20, 4, NULL);
}

static const char *const small_args[] = {"--max-body", "2048", "--max-header", "1024", NULL};

static void setup_small(void)
{
	start(20, 4, small_args);
}

static const char *const slow_args[] = {"--request-timeout", "500ms", "--idle-timeout", "500ms", NULL};

static void setup_slow(void)
{
	start(20, 4, slow_args);
}

/* ---- helpers ---------------------------------------------------------------- */

static void assert_alive(void)
{
	cr_assert_eq(kill(h.td.pid, 0), 0, "ballotd (pid %d) is gone", (int)h.td.pid);
	struct th_resp r;
	cr_assert_eq(th_request(h.td.port, "GET", "/healthz", NULL, NULL, 0, &r), 0, "no answer to /healthz");
	cr_assert_eq(r.status, 200, "/healthz: %d %s", r.status, r.body);
	th_resp_free(&r);
}

/* position and batches of /v1/snapshot. */
static void counters(uint64_t *position, uint64_t *batches)
{
	json_t *snap = th_get_json(h.td.port, "/v1/snapshot");
	cr_assert(snap, "no snapshot");
	*position = (uint64_t)json_integer_value(json_object_get(snap, "position"));
	*batches = (uint64_t)json_integer_value(json_object_get(snap, "batches"));
	json_decref(snap);
}

static void assert_counters(uint64_t want_position, uint64_t want_batches)
{
	assert_alive();
	uint64_t pos, batches;
	counters(&pos, &batches);
	cr_expect_eq(pos, want_position, "snapshot position %llu, want %llu", (unsigned long long)pos,
	             (unsigned long long)want_position);
	cr_expect_eq(batches, want_batches, "snapshot batches %llu, want %llu", (unsigned long long)batches,
	             (unsigned long long)want_batches);
}

static void assert_untouched(void)
{
	assert_counters(0, 0);
}

/* A valid signed BALLOTS batch of precinct index p; malloc'd bytes. */
static uint8_t *valid_batch(uint32_t p, uint64_t seq, size_t *len)
{
	uint8_t *b = tp_batch(h.defn, KEY_SEED, p, seq, 10, len);
	cr_assert(b, "no batch for precinct index %u", p);
	return b;
}

/* Proves the daemon still counts: one valid batch is ACCEPTED at want_position. */
static void accept_one(uint32_t p, uint64_t seq, uint64_t want_position)
{
	size_t len;
	uint8_t *body = valid_batch(p, seq, &len);
	struct th_resp r;
	cr_assert_eq(th_post(h.td.port, body, len, &r), 0, "no answer to a valid batch");
	char want[64];
	snprintf(want, sizeof(want), "\"ACCEPTED\",\"position\":%llu", (unsigned long long)want_position);
	cr_expect_eq(r.status, 200, "%s", r.body);
	cr_expect(strstr(r.body, want), "%s, want %s", r.body, want);
	th_resp_free(&r);
	free(body);
}

/* SignedBatch{batch = inner, signature = sig (64 bytes)} into out. */
static size_t wrap(const uint8_t *inner, size_t inner_len, const uint8_t *sig, uint8_t *out)
{
	size_t n = th_put_field(out, 1, inner, inner_len);
	return n + th_put_field(out + n, 2, sig, 64);
}

/* Wraps raw Batch bytes in a SignedBatch signed with the demo key of
 * precinct index 0 (valid when `inner` is that precinct's batch). */
static size_t wrap_signed(const uint8_t *inner, size_t inner_len, uint8_t *out)
{
	uint8_t pk[32], sk[64], sig[64];
	bal_demo_keypair(KEY_SEED, h.defn->precincts[0].id, pk, sk);
	crypto_sign_detached(sig, NULL, inner, inner_len, sk);
	return wrap(inner, inner_len, sig, out);
}

/* ---- bodies that do not decode --------------------------------------------- */

struct body_case {
	char name[32];
};

static struct body_case body_cases[] = {
        {"json"},                /* '{' is an unsupported start-group tag */
        {"tls_client_hello"},    /* wire type 6 */
        {"all_ff"},              /* a varint that never ends */
        {"zero_tag"},            /* field number 0 */
        {"huge_length_outer"},   /* SignedBatch.batch declares 2^60 bytes */
        {"max_length_outer"},    /* ... and 2^64-1 bytes */
        {"huge_length_inner"},   /* Batch.ballots declares 2^60 bytes */
        {"huge_packed_choices"}, /* BallotColumn.choices (packed) declares 2^62 bytes */
        {"overlong_varint"},     /* precinct_id varint of 11 bytes */
        {"wrong_wire_type"},     /* precinct_id as length-delimited */
        {"unknown_kind"},        /* Batch.kind = 7 */
        {"amplifying"},          /* 1 MB of empty BallotColumns: 2 bytes each on the wire, ~60 decoded */
};

ParameterizedTestParameters(hostile, undecodable_body_is_rejected)
{
	return cr_make_param_array(struct body_case, body_cases, sizeof(body_cases) / sizeof(body_cases[0]));
}

/* Builds the named body into buf (2 MiB); returns its length. */
static size_t build_body(const char *name, uint8_t *buf)
{
	static uint8_t inner[1 << 20];
	size_t n = 0, in = 0;
	if (strcmp(name, "json") == 0) {
		const char *j = "{\"precinct_id\":1,\"seq\":1,\"kind\":\"BALLOTS\"}";
		memcpy(buf, j, strlen(j));
		return strlen(j);
	}
	if (strcmp(name, "tls_client_hello") == 0) {
		static const uint8_t hello[] = {0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03,
		                                0x5a, 0x5b, 0x5c, 0x5d, 0x00, 0x00, 0x20, 0xc0, 0x2b, 0xc0, 0x2f};
		memcpy(buf, hello, sizeof(hello));
		return sizeof(hello);
	}
	if (strcmp(name, "all_ff") == 0) {
		memset(buf, 0xff, 64);
		return 64;
	}
	if (strcmp(name, "zero_tag") == 0) {
		memset(buf, 0, 16);
		return 16;
	}
	if (strcmp(name, "huge_length_outer") == 0 || strcmp(name, "max_length_outer") == 0) {
		buf[n++] = 0x0a;
		n += th_put_varint(buf + n, name[0] == 'h' ? (uint64_t)1 << 60 : UINT64_MAX);
		memcpy(buf + n, "abcdefgh", 8);
		return n + 8;
	}
	/* The rest are a well-formed SignedBatch around a damaged Batch. */
	inner[in++] = 0x08; /* precinct_id */
	in += th_put_varint(inner + in, h.defn->precincts[0].id);
	inner[in++] = 0x10; /* seq = 1 */
	inner[in++] = 0x01;
	if (strcmp(name, "huge_length_inner") == 0) {
		inner[in++] = 0x22; /* ballots, length-delimited */
		in += th_put_varint(inner + in, (uint64_t)1 << 60);
		inner[in++] = 0x08;
		inner[in++] = 0x01;
	} else if (strcmp(name, "huge_packed_choices") == 0) {
		uint8_t col[32];
		size_t cn = 0;
		col[cn++] = 0x08; /* contest_id */
		cn += th_put_varint(col + cn, h.defn->contests[0].id);
		col[cn++] = 0x12; /* choices, packed */
		cn += th_put_varint(col + cn, (uint64_t)1 << 62);
		col[cn++] = 0x01;
		col[cn++] = 0x02;
		in += th_put_field(inner + in, 4, col, cn);
	} else if (strcmp(name, "overlong_varint") == 0) {
		inner[0] = 0x08;
		memset(inner + 1, 0x81, 10);
		inner[11] = 0x01;
		in = 12;
	} else if (strcmp(name, "wrong_wire_type") == 0) {
		in = th_put_field(inner, 1, "\x01\x02", 2);
	} else if (strcmp(name, "unknown_kind") == 0) {
		inner[in++] = 0x18; /* kind */
		inner[in++] = 0x07;
	} else if (strcmp(name, "amplifying") == 0) {
		/* Within --max-body (1M), beyond the decode arena (8 x max-body). */
		while (in + 2 < 1000000) {
			inner[in++] = 0x22;
			inner[in++] = 0x00;
		}
	} else {
		cr_assert_fail("unknown case %s", name);
	}
	return wrap_signed(inner, in, buf);
}

ParameterizedTest(struct body_case *bc, hostile, undecodable_body_is_rejected, .init = setup_default, .fini = stop)
{
	uint8_t *body = malloc(2 << 20);
	size_t len = build_body(bc->name, body);
	long rss0 = tp_rss_kb(h.td.pid);
	struct th_resp r;
	cr_assert_eq(th_post(h.td.port, body, len, &r), 0, "%s: no answer", bc->name);
	if (strcmp(bc->name, "amplifying") == 0) {
		/* Refused by the decode arena's limit rather than decoded into ~30 MB. */
		cr_expect_eq(r.status, 413, "%s: status %d, want 413 (%s)", bc->name, r.status, r.body);
		cr_expect(strstr(r.body, "arena refused") && strstr(r.body, "limit"), "%s: reason: %s", bc->name,
		          r.body);
		long rss1 = tp_rss_kb(h.td.pid);
		cr_expect_lt(rss1 - rss0, tp_rss_allowance_kb(24 * 1024), "RSS grew from %ld to %ld KiB", rss0, rss1);
	} else {
		cr_expect_eq(r.status, 400, "%s: status %d, want 400 (%s)", bc->name, r.status, r.body);
		cr_expect(strstr(r.body, "decode") || strstr(r.body, "kind"), "%s: reason: %s", bc->name, r.body);
	}
	th_resp_free(&r);
	free(body);
	assert_untouched();
	accept_one(1, 1, 1);
}

/* Hundreds of refused batches on one connection are this suite's point, not
 * a client to close (--max-failures-per-connection). */
static void setup_patient(void)
{
	static const char *const args[] = {"--max-failures-per-connection", "100000", NULL};
	start(20, 4, args);
}

/* Every truncation of a valid SignedBatch, on one keep-alive connection. */
Test(hostile, truncated_protobuf_is_400_at_every_length, .init = setup_patient, .fini = stop)
{
	size_t len;
	/* Precinct index 0: wrap_signed() signs with its key, so a truncated Batch
	 * that still decodes is judged by validation, not by the signature. */
	uint8_t *body = valid_batch(0, 1, &len);
	/* SignedBatch = 0x0a varint(batch_len) batch 0x12 0x40 signature. */
	uint64_t batch_len = 0;
	size_t hdr = 1, shift = 0;
	while (body[hdr] & 0x80)
		batch_len |= (uint64_t)(body[hdr++] & 0x7f) << (7 * shift++);
	batch_len |= (uint64_t)body[hdr++] << (7 * shift);
	size_t boundary = hdr + batch_len; /* here the body is a SignedBatch without signature: 401 */
	cr_assert_eq(len, boundary + 2 + 64);
	int fd = th_connect(h.td.port);
	cr_assert(fd >= 0);
	unsigned tried = 0;
	for (size_t k = 1; k < len; k++) {
		if (k == boundary)
			continue;
		struct th_resp r;
		cr_assert_eq(tp_post_on(fd, body, k, &r), 0, "truncated to %zu of %zu bytes: no answer", k, len);
		cr_assert_eq(r.status, 400, "truncated to %zu of %zu bytes: %d %s", k, len, r.status, r.body);
		th_resp_free(&r);
		tried++;
	}
	/* The Batch inside truncated, the envelope intact (with the signature of
	 * the whole Batch): the inner bytes do not decode, or (cut at a field
	 * boundary) decode but do not verify. Never counted. */
	unsigned inner400 = 0;
	uint8_t *wrapped = malloc(len + 32);
	for (size_t k = 1; k < batch_len; k++) {
		size_t wl = wrap(body + hdr, k, body + len - 64, wrapped);
		struct th_resp r;
		cr_assert_eq(tp_post_on(fd, wrapped, wl, &r), 0, "inner truncated to %zu: no answer", k);
		cr_assert(r.status == 400 || r.status == 401, "inner truncated to %zu of %llu: %d %s", k,
		          (unsigned long long)batch_len, r.status, r.body);
		inner400 += r.status == 400;
		th_resp_free(&r);
		tried++;
	}
	cr_expect_gt(inner400, batch_len / 2, "most inner truncations cut a field: %u of %llu were 400", inner400,
	             (unsigned long long)batch_len);
	close(fd);
	free(wrapped);
	cr_log_info("truncated bodies tried: %u", tried);
	assert_untouched();
	accept_one(2, 1, 1);
	free(body);
}

/* ---- other encodings of a signed batch ---------------------------------------- */

/*
 * A journaled batch resent in another encoding: junk after the signature
 * (which covers only the Batch), or an unknown or repeated field inside the
 * Batch, re-signed. Only the canonical encoding decodes, so each is 400:
 * nothing is journaled or recorded as a conflict, and the original resent is
 * still DUPLICATE.
 */
Test(hostile, other_encodings_of_a_batch_are_400, .init = setup_default, .fini = stop)
{
	size_t len;
	uint8_t *body = valid_batch(0, 1, &len);
	int fd = th_connect(h.td.port);
	struct th_resp r;
	cr_assert_eq(tp_post_on(fd, body, len, &r), 0);
	cr_assert(strstr(r.body, "\"ACCEPTED\",\"position\":1"), "%s", r.body);
	th_resp_free(&r);
	/* SignedBatch = 0x0a varint(batch_len) batch 0x12 0x40 signature. */
	uint64_t blen = 0;
	size_t hdr = 1, shift = 0;
	while (body[hdr] & 0x80)
		blen |= (uint64_t)(body[hdr++] & 0x7f) << (7 * shift++);
	blen |= (uint64_t)body[hdr++] << (7 * shift);
	uint8_t *inner = malloc(blen + 8), *other = malloc(len + 32);
	static const char *const cases[] = {"junk after the signature", "unknown field inside", "turnout twice"};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		memcpy(inner, body + hdr, blen);
		size_t in = blen, n;
		if (k == 0) {
			memcpy(other, body, len);
			n = len;
			other[n++] = 3 << 3; /* field 3, varint 1 */
			other[n++] = 0x01;
		} else {
			if (k == 1) {
				inner[in++] = 15 << 3; /* field 15, varint 42 */
				inner[in++] = 0x2a;
			} else {
				static const uint8_t turnout[] = {0x32, 0x02, 0x08, 0x63}; /* issued 99 */
				memcpy(inner + in, turnout, sizeof(turnout));
				in += sizeof(turnout);
			}
			n = wrap_signed(inner, in, other);
		}
		cr_assert_eq(tp_post_on(fd, other, n, &r), 0);
		cr_expect_eq(r.status, 400, "%s: %d %s", cases[k], r.status, r.body);
		th_resp_free(&r);
	}
	cr_assert_eq(tp_post_on(fd, body, len, &r), 0);
	cr_expect(strstr(r.body, "\"DUPLICATE\",\"position\":1"), "the original is a duplicate: %s", r.body);
	th_resp_free(&r);
	close(fd);
	assert_counters(1, 1);
	char path[64];
	snprintf(path, sizeof(path), "/v1/precincts/%u", h.defn->precincts[0].id);
	json_t *pr = th_get_json(h.td.port, path);
	cr_assert(pr);
	cr_expect_eq(json_array_size(json_object_get(pr, "conflicts")), 0, "no conflict recorded");
	json_decref(pr);
	free(inner);
	free(other);
	free(body);
}

/* ---- chunked bodies --------------------------------------------------------- */

/*
 * POSTs `body` chunked on a new connection, chunk sizes cycling from lo to hi
 * bytes (the first chunk carries an extension), and reads the answer into r.
 * Returns the connection.
 */
static int post_chunked(const uint8_t *body, size_t len, size_t lo, size_t hi, struct th_resp *r)
{
	char *req = malloc(len * 8 + 256);
	int n = sprintf(req, "POST /v1/batches HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
	for (size_t off = 0, k = lo; off < len; off += k, k = k < hi ? k + 1 : lo) {
		size_t c = len - off < k ? len - off : k;
		n += sprintf(req + n, off == 0 ? "%zx;note=first\r\n" : "%zx\r\n", c);
		memcpy(req + n, body + off, c);
		n += (int)c;
		n += sprintf(req + n, "\r\n");
	}
	n += sprintf(req + n, "0\r\n\r\n");
	int fd = th_connect(h.td.port);
	cr_assert(fd >= 0);
	cr_assert_eq(th_send(fd, req, (size_t)n), 0);
	free(req);
	cr_assert_eq(th_read_resp(fd, r, 10000), 0, "no answer to a chunked POST");
	return fd;
}

Test(hostile, chunked_body_within_the_cap_is_accepted, .init = setup_small, .fini = stop)
{
	size_t len;
	uint8_t *body = valid_batch(3, 1, &len);
	cr_assert_lt(len, 2048);
	struct th_resp r;
	int fd = post_chunked(body, len, 1, 7, &r);
	cr_expect_eq(r.status, 200, "%s", r.body);
	cr_expect(strstr(r.body, "\"ACCEPTED\",\"position\":1"), "%s", r.body);
	th_resp_free(&r);
	close(fd);
	free(body);
	assert_counters(1, 1);
}

Test(hostile, chunked_body_beyond_the_cap_is_413, .init = setup_small, .fini = stop)
{
	/* Ten 512-byte chunks against --max-body 2048. */
	uint8_t body[5120];
	memset(body, 'x', sizeof(body));
	struct th_resp r;
	int fd = post_chunked(body, sizeof(body), 512, 512, &r);
	cr_expect_eq(r.status, 413, "%s", r.body);
	cr_expect(strstr(r.body, "--max-body"), "%s", r.body);
	th_resp_free(&r);
	cr_expect_geq(tp_wait_closed(fd, 2000), 0, "the connection closes after a 413");
	close(fd);
	assert_untouched();
}

Test(hostile, one_huge_declared_chunk_is_413_before_it_arrives, .init = setup_small, .fini = stop)
{
	/* A 16 MiB chunk is declared; 413 comes once 2048 bytes are exceeded,
	 * without waiting for the rest. */
	char req[4096];
	int n = sprintf(req, "POST /v1/batches HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1000000\r\n");
	memset(req + n, 'y', 3000);
	n += 3000;
	int fd = th_connect(h.td.port);
	cr_assert_eq(th_send(fd, req, (size_t)n), 0);
	struct th_resp r;
	cr_assert_eq(th_read_resp(fd, &r, 5000), 0, "413 must come before the chunk is complete");
	cr_expect_eq(r.status, 413, "%s", r.body);
	th_resp_free(&r);
	close(fd);
	assert_untouched();
}

/* ---- broken framing: answered, then the connection is closed --------------- */

struct framing_case {
	char name[32];
	int status;
	char why[64]; /* in the answer's reason, when not empty */
};

static struct framing_case framing_cases[] = {
        {"content_length_overflow", 400, ""},
        {"two_content_lengths", 400, ""},
        {"chunked_and_content_length", 400, ""},
        {"bad_chunk_size", 400, ""},
        {"chunk_size_overflow", 400, ""},
        {"binary_request_line", 400, ""},
        {"bad_version", 400, ""},
        {"nul_in_header", 400, ""},
        {"url_too_long", 414, ""},
        {"one_huge_header_line", 431, ""},
        /* Heads http-parser reads leniently, each of which would be served
         * (a valid batch, /healthz) if read so. */
        {"space_before_colon", 400, "whitespace between a header name and its colon"},
        {"obs_fold", 400, "obs-fold"},
        {"obs_fold_tab", 400, "obs-fold"},
        {"bare_lf_request_line", 400, "the request line ends in a bare LF"},
        {"bare_lf_header", 400, "a header line ends in a bare LF"},
        {"bare_lf_everywhere", 400, "the request line ends in a bare LF"},
        {"tab_in_target", 400, "control character or a space"},
};

ParameterizedTestParameters(hostile, broken_framing_is_answered_then_closed)
{
	return cr_make_param_array(struct framing_case, framing_cases,
	                           sizeof(framing_cases) / sizeof(framing_cases[0]));
}

/* Builds the named request into buf (64 KiB); returns its length. */
static size_t build_framing(const char *name, char *buf)
{
	const char *post = "POST /v1/batches HTTP/1.1\r\nHost: t\r\n";
	if (strcmp(name, "content_length_overflow") == 0)
		return (size_t)sprintf(buf, "%sContent-Length: 99999999999999999999999\r\n\r\nabc", post);
	if (strcmp(name, "two_content_lengths") == 0)
		return (size_t)sprintf(buf, "%sContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", post);
	if (strcmp(name, "chunked_and_content_length") == 0)
		return (size_t)sprintf(
		        buf, "%sTransfer-Encoding: chunked\r\nContent-Length: 8\r\n\r\n3\r\nabc\r\n0\r\n\r\n", post);
	if (strcmp(name, "bad_chunk_size") == 0)
		return (size_t)sprintf(buf, "%sTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", post);
	if (strcmp(name, "chunk_size_overflow") == 0)
		return (size_t)sprintf(buf, "%sTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\nabc\r\n", post);
	if (strcmp(name, "binary_request_line") == 0)
		return (size_t)sprintf(buf, "\x01\x02\x03\x04 / HTTP/1.1\r\n\r\n");
	if (strcmp(name, "bad_version") == 0)
		return (size_t)sprintf(buf, "GET /healthz HTTP/9.Z\r\nHost: t\r\n\r\n");
	if (strcmp(name, "nul_in_header") == 0) {
		size_t n = (size_t)sprintf(buf, "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Nul: a");
		buf[n++] = '\0';
		return n + (size_t)sprintf(buf + n, "b\r\n\r\n");
	}
	if (strcmp(name, "url_too_long") == 0) {
		size_t n = (size_t)sprintf(buf, "GET /v1/precincts/");
		memset(buf + n, '1', 5000);
		n += 5000;
		return n + (size_t)sprintf(buf + n, " HTTP/1.1\r\nHost: t\r\n\r\n");
	}
	if (strcmp(name, "one_huge_header_line") == 0) {
		/* One 40 KB line against the default --max-header of 16K. */
		size_t n = (size_t)sprintf(buf, "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Huge: ");
		memset(buf + n, 'h', 40000);
		n += 40000;
		return n + (size_t)sprintf(buf + n, "\r\n\r\n");
	}
	if (strcmp(name, "space_before_colon") == 0) {
		size_t len;
		uint8_t *body = valid_batch(4, 1, &len);
		int n = sprintf(buf, "POST /v1/batches HTTP/1.1\r\nHost: t\r\nContent-Length : %zu\r\n\r\n", len);
		memcpy(buf + n, body, len);
		free(body);
		return (size_t)n + len;
	}
	static const char *const lenient[][2] = {
	        {"obs_fold", "GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n"},
	        {"obs_fold_tab", "GET /healthz HTTP/1.1\r\nHost: t\r\nX-A: a\r\n\tb\r\n\r\n"},
	        {"bare_lf_request_line", "GET /healthz HTTP/1.1\nHost: t\r\n\r\n"},
	        {"bare_lf_header", "GET /healthz HTTP/1.1\r\nHost: t\n\r\n"},
	        {"bare_lf_everywhere", "GET /healthz HTTP/1.1\nHost: t\n\n"},
	        {"tab_in_target", "GET /v1/precincts/\t1 HTTP/1.1\r\nHost: t\r\n\r\n"},
	};
	for (size_t i = 0; i < sizeof(lenient) / sizeof(lenient[0]); i++)
		if (strcmp(name, lenient[i][0]) == 0)
			return (size_t)sprintf(buf, "%s", lenient[i][1]);
	cr_assert_fail("unknown case %s", name);
	return 0;
}

ParameterizedTest(struct framing_case *fc, hostile, broken_framing_is_answered_then_closed, .init = setup_default,
                  .fini = stop)
{
	char *req = malloc(65536);
	size_t n = build_framing(fc->name, req);
	int fd = th_connect(h.td.port);
	cr_assert(fd >= 0);
	/* The daemon may close before reading everything: a failed send is fine. */
	(void)th_send(fd, req, n);
	struct th_resp r;
	cr_assert_eq(th_read_resp(fd, &r, 5000), 0, "%s: no answer", fc->name);
	cr_expect_eq(r.status, fc->status, "%s: status %d, want %d (%s)", fc->name, r.status, fc->status, r.body);
	cr_expect(strcasestr(r.head, "Connection: close"), "%s: the answer announces the close: %s", fc->name, r.head);
	cr_expect(!fc->why[0] || strstr(r.body, fc->why), "%s: the reason should say '%s': %s", fc->name, fc->why,
	          r.body);
	th_resp_free(&r);
	cr_expect_geq(tp_wait_closed(fd, 2000), 0, "%s: the connection is closed after the error", fc->name);
	close(fd);
	free(req);
	assert_untouched();
	accept_one(4, 1, 1);
}

/* ---- slowloris and idle connections ---------------------------------------- */

struct slow_case {
	char name[16];
};

static struct slow_case slow_cases[] = {{"header"}, {"body"}, {"blank_lines"}, {"after_request"}};

ParameterizedTestParameters(hostile, slowloris_is_closed_by_the_request_timeout)
{
	return cr_make_param_array(struct slow_case, slow_cases, sizeof(slow_cases) / sizeof(slow_cases[0]));
}

/*
 * Sends one byte every 100 ms, forever unless closed: a request head that
 * never ends, a body that never ends, empty lines before a request line
 * (which http-parser skips without starting a message), or a complete request
 * followed by a slow second one. --request-timeout 500ms must close it well
 * within 2 s although bytes keep arriving (the idle timeout never fires).
 */
ParameterizedTest(struct slow_case *sc, hostile, slowloris_is_closed_by_the_request_timeout, .init = setup_slow,
                  .fini = stop)
{
	int fd = th_connect(h.td.port);
	cr_assert(fd >= 0);
	char stream[4096];
	size_t n = 0;
	if (strcmp(sc->name, "header") == 0) {
		n = (size_t)sprintf(stream, "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ");
		memset(stream + n, 'a', sizeof(stream) - n);
	} else if (strcmp(sc->name, "body") == 0) {
		/* Head at once, then the body byte by byte. */
		const char *head = "POST /v1/batches HTTP/1.1\r\nHost: t\r\nContent-Length: 4000\r\n\r\n";
		cr_assert_eq(th_send(fd, head, strlen(head)), 0);
		memset(stream, 'b', sizeof(stream));
	} else if (strcmp(sc->name, "blank_lines") == 0) {
		for (size_t i = 0; i + 1 < sizeof(stream); i += 2)
			memcpy(stream + i, "\r\n", 2);
	} else {
		cr_assert_eq(tp_get_on(fd, "/healthz"), 200);
		n = (size_t)sprintf(stream, "GET /healthz HTTP/1.1\r\nX-Slow: ");
		memset(stream + n, 'c', sizeof(stream) - n);
	}
	uint64_t t0 = tp_now_ms();
	long closed_at = -1;
	for (size_t i = 0; i < sizeof(stream) && tp_now_ms() - t0 < 3000; i++) {
		if (send(fd, stream + i, 1, MSG_NOSIGNAL) != 1) {
			closed_at = (long)(tp_now_ms() - t0);
			break;
		}
		long w = tp_wait_closed(fd, 100);
		if (w >= 0) {
			closed_at = (long)(tp_now_ms() - t0);
			break;
		}
	}
	close(fd);
	cr_expect_geq(closed_at, 0, "%s: a client sending one byte per 100 ms is still connected after 3 s", sc->name);
	cr_expect_leq(closed_at, 2000, "%s: closed after %ld ms (--request-timeout 500ms)", sc->name, closed_at);
	cr_expect_geq(closed_at, 400, "%s: closed after %ld ms, before the request timeout", sc->name, closed_at);
	cr_log_info("slowloris %s: closed after %ld ms", sc->name, closed_at);
	assert_untouched();
}

Test(hostile, idle_keep_alive_connection_is_closed, .init = setup_slow, .fini = stop)
{
	int fd = th_connect(h.td.port);
	cr_assert_eq(tp_get_on(fd, "/healthz"), 200);
	long closed = tp_wait_closed(fd, 2500);
	close(fd);
	cr_expect_geq(closed, 400, "closed after %ld ms: an idle keep-alive connection is kept for --idle-timeout",
	              closed);
	cr_expect_leq(closed, 2000, "closed after %ld ms (--idle-timeout 500ms; -1: still open)", closed);
	/* A connection that never sends a byte is idle too. */
	fd = th_connect(h.td.port);
	closed = tp_wait_closed(fd, 2500);
	close(fd);
	cr_expect(closed >= 400 && closed <= 2000, "silent connection closed after %ld ms", closed);
	assert_untouched();
}

/* ---- a client that never reads ---------------------------------------------- */

static void setup_output(void)
{
	static const char *const args[] = {"--max-output", "64K", NULL};
	/* 300 precincts x 2 contests x 8 choices: each CSV answer is about 100 KB. */
	start(300, 8, args);
}

/*
 * Pipelines GET /v1/results.csv with a tiny receive window and never reads.
 * Sends for at most `ms` milliseconds. Returns bytes sent.
 */
static size_t pipeline_unread(int fd, unsigned ms, bool *blocked)
{
	static const char req[] = "GET /v1/results.csv HTTP/1.1\r\nHost: t\r\n\r\n";
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	size_t sent = 0;
	uint64_t t0 = tp_now_ms(), last_progress = t0;
	*blocked = false;
	while (tp_now_ms() - t0 < ms) {
		ssize_t n = send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL);
		if (n > 0) {
			sent += (size_t)n;
			last_progress = tp_now_ms();
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (tp_now_ms() - last_progress > 500) {
				*blocked = true; /* the daemon stopped reading: paused */
				break;
			}
			usleep(5000);
			continue;
		}
		break; /* EPIPE / ECONNRESET: closed by the daemon */
	}
	return sent;
}

static int tiny_window_connect(void)
{
	int fd = th_connect(h.td.port);
	cr_assert(fd >= 0);
	int small = 4096;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	return fd;
}

Test(hostile, client_that_never_reads_is_closed_at_max_output, .init = setup_output, .fini = stop)
{
	long rss0 = tp_rss_kb(h.td.pid);
	int fd = tiny_window_connect();
	bool blocked;
	size_t sent = pipeline_unread(fd, 3000, &blocked);
	uint64_t t0 = tp_now_ms();
	while (!tp_log_has(&h.td, "response bytes unread (--max-output") && tp_now_ms() - t0 < 5000)
		usleep(20000);
	cr_expect(tp_log_has(&h.td, "response bytes unread (--max-output 65536)"),
	          "the daemon should close a connection with more than 64 KiB of unread answers (sent %zu bytes)",
	          sent);
	long rss1 = tp_rss_kb(h.td.pid);
	fprintf(stderr, "never-reading client, --max-output 64K: sent %zu bytes, RSS %ld -> %ld KiB\n", sent, rss0,
	        rss1);
	cr_expect_lt(rss1 - rss0, tp_rss_allowance_kb(8 * 1024), "RSS grew from %ld to %ld KiB", rss0, rss1);
	/* Others are served meanwhile; the socket itself is gone. */
	assert_alive();
	close(fd);
	assert_untouched();
}

Test(hostile, client_that_never_reads_is_paused_and_bounded, .init = setup_default, .fini = stop)
{
	/* Default --max-output (16M): the connection fills its 32 pipeline slots,
	 * reading pauses, and the client's sends block. */
	long rss0 = tp_rss_kb(h.td.pid);
	int fd = tiny_window_connect();
	bool blocked;
	size_t sent = pipeline_unread(fd, 4000, &blocked);
	cr_expect(blocked, "sends should block once the daemon stops reading (sent %zu bytes)", sent);
	long rss1 = tp_rss_kb(h.td.pid);
	fprintf(stderr, "never-reading client, paused: sent %zu bytes, RSS %ld -> %ld KiB\n", sent, rss0, rss1);
	cr_expect_lt(rss1 - rss0, tp_rss_allowance_kb(8 * 1024), "RSS grew from %ld to %ld KiB while paused", rss0,
	             rss1);
	assert_alive();
	accept_one(5, 1, 1);
	cr_expect_eq(kill(h.td.pid, 0), 0);
	close(fd);
}

/* ---- --max-connections ---------------------------------------------------- */

static void setup_conns(void)
{
	static const char *const args[] = {"--max-connections", "4", NULL};
	start(20, 4, args);
}

Test(hostile, connections_beyond_the_cap_are_closed_at_once, .init = setup_conns, .fini = stop)
{
	int keep[4];
	for (int i = 0; i < 4; i++) {
		keep[i] = th_connect(h.td.port);
		cr_assert(keep[i] >= 0);
		cr_assert_eq(tp_get_on(keep[i], "/healthz"), 200, "connection %d of 4", i);
	}
	/* A burst of 20 more: each is accepted by the kernel and closed by the daemon. */
	for (int i = 0; i < 20; i++) {
		int fd = th_connect(h.td.port);
		cr_assert(fd >= 0);
		const char *req = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
		(void)th_send(fd, req, strlen(req));
		long closed = tp_wait_closed(fd, 2000);
		cr_expect_geq(closed, 0, "connection %d over the cap is still open", i);
		cr_expect_lt(closed, 1000, "connection %d over the cap closed only after %ld ms", i, closed);
		close(fd);
	}
	/* The four keep working, pipelining included. */
	for (int i = 0; i < 4; i++)
		cr_expect_eq(tp_get_on(keep[i], "/v1/snapshot"), 200, "existing connection %d", i);
	size_t len;
	uint8_t *body = valid_batch(6, 1, &len);
	struct th_resp r;
	cr_assert_eq(tp_post_on(keep[0], body, len, &r), 0);
	cr_expect(strstr(r.body, "\"ACCEPTED\",\"position\":1"), "%s", r.body);
	th_resp_free(&r);
	free(body);
	close(keep[1]);
	usleep(100000);
	long long refused = tp_metric(h.td.port, "ballotd_connections_refused_total");
	cr_expect_eq(refused, 20, "connections_refused_total %lld", refused);
	for (int i = 0; i < 4; i++)
		if (i != 1)
			close(keep[i]);
	usleep(100000);
	assert_counters(1, 1);
}

/* ---- garbage between pipelined requests ------------------------------------ */

struct garbage_case {
	char name[16];
	char bytes[40];
	unsigned len;
};

static struct garbage_case garbage_cases[] = {
        {"tls_hello", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 11},
        {"bad_method", "BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n", 32},
        {"header_no_colon", "GET /healthz HTTP/1.1\r\nHost t\r\n\r\n", 33},
        {"bare_lf_junk", "\n\n\x7f\x7f\x7f\n\n", 7},
};

ParameterizedTestParameters(hostile, garbage_between_pipelined_requests)
{
	return cr_make_param_array(struct garbage_case, garbage_cases,
	                           sizeof(garbage_cases) / sizeof(garbage_cases[0]));
}

/*
 * GET, POST (valid batch), GET, garbage, GET in one write: the three requests
 * before the garbage are answered in order, then 400 with Connection: close,
 * and the request after the garbage is never parsed.
 */
ParameterizedTest(struct garbage_case *gc, hostile, garbage_between_pipelined_requests, .init = setup_default,
                  .fini = stop)
{
	size_t blen;
	uint8_t *body = valid_batch(7, 1, &blen);
	char *buf = malloc(blen + 1024);
	size_t n = (size_t)sprintf(buf,
	                           "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
	                           "POST /v1/batches HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n",
	                           blen);
	memcpy(buf + n, body, blen);
	n += blen;
	n += (size_t)sprintf(buf + n, "GET /v1/seats HTTP/1.1\r\nHost: t\r\n\r\n");
	memcpy(buf + n, gc->bytes, gc->len);
	n += gc->len;
	n += (size_t)sprintf(buf + n, "GET /v1/snapshot HTTP/1.1\r\nHost: t\r\n\r\n");
	int fd = th_connect(h.td.port);
	cr_assert_eq(th_send(fd, buf, n), 0);
	const char *want[] = {"\"status\":\"ok\"", "\"ACCEPTED\",\"position\":1", "\"contests\""};
	for (int i = 0; i < 3; i++) {
		struct th_resp r;
		cr_assert_eq(th_read_resp(fd, &r, 10000), 0, "%s: answer %d", gc->name, i);
		cr_expect_eq(r.status, 200, "%s: answer %d: %d %s", gc->name, i, r.status, r.body);
		cr_expect(strstr(r.body, want[i]), "%s: answer %d: %s, want %s", gc->name, i, r.body, want[i]);
		th_resp_free(&r);
	}
	struct th_resp r;
	cr_assert_eq(th_read_resp(fd, &r, 5000), 0, "%s: no answer to the garbage", gc->name);
	cr_expect_eq(r.status, 400, "%s: %d %s", gc->name, r.status, r.body);
	cr_expect(strcasestr(r.head, "Connection: close"), "%s: %s", gc->name, r.head);
	th_resp_free(&r);
	cr_expect_geq(tp_wait_closed(fd, 2000), 0, "%s: nothing is answered after the garbage", gc->name);
	close(fd);
	free(buf);
	free(body);
	assert_counters(1, 1);
}

/* ---- one batch whose own sum overflows --------------------------------------- */

struct overflow_case {
	char name[16];
	uint64_t counts[4];
};

static struct overflow_case overflow_cases[] = {
        {"max_plus_one", {UINT64_MAX, 1, 0, 0}},
        {"two_halves", {(UINT64_MAX >> 1) + 1, (UINT64_MAX >> 1) + 1, 0, 0}},
        {"all_max", {UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX}},
};

ParameterizedTestParameters(hostile, tally_sum_overflow_is_422)
{
	return cr_make_param_array(struct overflow_case, overflow_cases,
	                           sizeof(overflow_cases) / sizeof(overflow_cases[0]));
}

ParameterizedTest(struct overflow_case *oc, hostile, tally_sum_overflow_is_422, .init = setup_default, .fini = stop)
{
	cr_assert_eq(h.defn->contests[0].nchoices, 4);
	struct bal_ctally t = {.contest_id = h.defn->contests[0].id, .n = 4, .counts = oc->counts};
	struct bal_batch b = {
	        .precinct_id = h.defn->precincts[0].id, .seq = 1, .kind = BAL_KIND_TALLY, .tallies = &t, .ntallies = 1};
	size_t len;
	uint8_t *body = th_signed_batch(&b, true, KEY_SEED, &len);
	struct th_resp r;
	cr_assert_eq(th_post(h.td.port, body, len, &r), 0);
	cr_expect_eq(r.status, 422, "%s: %d %s", oc->name, r.status, r.body);
	cr_expect(strstr(r.body, "overflow"), "%s: reason: %s", oc->name, r.body);
	th_resp_free(&r);
	free(body);
	assert_untouched();
	accept_one(0, 1, 1);
}

/* ---- a long mixed hostile run ---------------------------------------------- */

#define RUN_MS      5000
#define RUN_THREADS 4

struct actor {
	unsigned port;
	uint32_t rng;
	const uint8_t *valid;
	size_t valid_len;
	unsigned long ops, by_kind[10];
	uint64_t end_ms;
};

static uint32_t rnd(struct actor *a)
{
	a->rng ^= a->rng << 13;
	a->rng ^= a->rng >> 17;
	a->rng ^= a->rng << 5;
	return a->rng;
}

/* Reads whatever comes for up to ms, then gives up (responses are not checked here). */
static void drain_for(int fd, int ms)
{
	char buf[4096];
	uint64_t deadline = tp_now_ms() + (uint64_t)ms;
	while (tp_now_ms() < deadline) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		if (poll(&pfd, 1, (int)(deadline - tp_now_ms())) <= 0)
			return;
		if (recv(fd, buf, sizeof(buf), 0) <= 0)
			return;
	}
}

/* One hostile exchange on a fresh connection. */
static void hostile_op(struct actor *a, char *buf, size_t cap)
{
	int fd = th_connect(a->port);
	if (fd < 0)
		return;
	unsigned kind = rnd(a) % 10;
	size_t n = 0;
	switch (kind) {
	case 0: { /* random bytes as a POST body */
		size_t len = 1 + rnd(a) % 2000;
		n = (size_t)sprintf(buf, "POST /v1/batches HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n", len);
		for (size_t i = 0; i < len; i++)
			buf[n++] = (char)rnd(a);
		break;
	}
	case 1: /* random bytes instead of HTTP */
		n = 1 + rnd(a) % 3000;
		for (size_t i = 0; i < n; i++)
			buf[i] = (char)rnd(a);
		break;
	case 2: { /* a valid batch truncated, or with one byte flipped (bad signature or undecodable) */
		size_t len = a->valid_len;
		bool flip = rnd(a) & 1;
		if (!flip)
			len = rnd(a) % a->valid_len;
		n = (size_t)sprintf(buf, "POST /v1/batches HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n", len);
		memcpy(buf + n, a->valid, len);
		if (flip)
			buf[n + rnd(a) % len] ^= (char)(1 + rnd(a) % 255);
		n += len;
		break;
	}
	case 3: /* half a request, then gone */
		n = (size_t)sprintf(buf, "POST /v1/batches HTTP/1.1\r\nHost: t\r\nContent-Length: 500\r\n\r\nabc");
		n = 1 + rnd(a) % n;
		break;
	case 4: /* a header line far beyond --max-header */
		n = (size_t)sprintf(buf, "GET /healthz HTTP/1.1\r\nX-Big: ");
		memset(buf + n, 'z', 20000);
		n += 20000;
		n += (size_t)sprintf(buf + n, "\r\n\r\n");
		break;
	case 5: { /* chunked garbage, sometimes with broken chunk framing */
		n = (size_t)sprintf(buf, "POST /v1/batches HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
		for (int c = 0; c < 5; c++) {
			size_t len = 1 + rnd(a) % 300;
			n += (size_t)sprintf(buf + n, rnd(a) % 8 ? "%zx\r\n" : "%zxq\r\n", len);
			for (size_t i = 0; i < len; i++)
				buf[n++] = (char)rnd(a);
			n += (size_t)sprintf(buf + n, "\r\n");
		}
		n += (size_t)sprintf(buf + n, "0\r\n\r\n");
		break;
	}
	case 6: /* a huge Content-Length, a little body, then gone */
		n = (size_t)sprintf(buf, "POST /v1/batches HTTP/1.1\r\nHost: t\r\nContent-Length: 90000000\r\n\r\nxyz");
		break;
	case 7: /* pipelined queries, closed without reading (reset) */
		for (int i = 0; i < 16; i++)
			n += (size_t)sprintf(buf + n, "GET /v1/results.csv HTTP/1.1\r\nHost: t\r\n\r\n");
		break;
	case 8: { /* undecodable protobuf with huge nested lengths */
		uint8_t pb[64];
		size_t pn = 0;
		pb[pn++] = 0x0a;
		pn += th_put_varint(pb + pn, (uint64_t)rnd(a) << 32 | rnd(a));
		for (int i = 0; i < 8; i++)
			pb[pn++] = (uint8_t)rnd(a);
		n = (size_t)sprintf(buf, "POST /v1/batches HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n", pn);
		memcpy(buf + n, pb, pn);
		n += pn;
		break;
	}
	default: /* many pipelined bad requests on one connection */
		for (int i = 0; i < 20 && n + 200 < cap; i++)
			n += (size_t)sprintf(
			        buf + n,
			        "POST /v1/batches HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\n\xff\xff\xff\xff");
		break;
	}
	bal_require(n <= cap);
	(void)th_send(fd, buf, n);
	if (kind != 3 && kind != 6 && kind != 7)
		drain_for(fd, 10);
	close(fd);
	a->ops++;
	a->by_kind[kind]++;
}

static void *actor_run(void *arg)
{
	struct actor *a = arg;
	char *buf = malloc(65536);
	while (tp_now_ms() < a->end_ms)
		hostile_op(a, buf, 65536);
	free(buf);
	return NULL;
}

static void setup_long(void)
{
	static const char *const args[] = {"--max-header",   "4K", "--max-body", "64K", "--request-timeout", "1s",
	                                   "--idle-timeout", "1s", NULL};
	start(20, 4, args);
}

/* One phase of RUN_THREADS actors for ms; returns the exchanges done. */
static unsigned long hostile_phase(unsigned ms, uint32_t seed, const uint8_t *valid, size_t valid_len,
                                   unsigned long by_kind[10])
{
	struct actor actors[RUN_THREADS];
	pthread_t th[RUN_THREADS];
	uint64_t end = tp_now_ms() + ms;
	for (int i = 0; i < RUN_THREADS; i++) {
		actors[i] = (struct actor){.port = h.td.port,
		                           .rng = seed + (uint32_t)i * 7919,
		                           .valid = valid,
		                           .valid_len = valid_len,
		                           .end_ms = end};
		cr_assert_eq(pthread_create(&th[i], NULL, actor_run, &actors[i]), 0);
	}
	unsigned long ops = 0;
	for (int i = 0; i < RUN_THREADS; i++) {
		pthread_join(th[i], NULL);
		ops += actors[i].ops;
		for (int k = 0; k < 10; k++)
			by_kind[k] += actors[i].by_kind[k];
	}
	return ops;
}

Test(hostile, long_mixed_run_keeps_memory_flat_and_counters_still, .init = setup_long, .fini = stop)
{
	size_t vlen;
	uint8_t *valid = valid_batch(8, 1, &vlen);
	unsigned long by_kind[10] = {0};
	/* A first second warms up arenas, slot bodies and allocator caches. */
	unsigned long ops = hostile_phase(1000, 12345, valid, vlen, by_kind);
	usleep(200000);
	long rss0 = tp_rss_kb(h.td.pid);
	ops += hostile_phase(RUN_MS - 1000, 777, valid, vlen, by_kind);
	usleep(1500000); /* --request-timeout 1s collects the half-sent requests */
	long rss1 = tp_rss_kb(h.td.pid);
	cr_log_info("long hostile run: %lu exchanges (%lu/%lu/%lu/%lu/%lu/%lu/%lu/%lu/%lu/%lu by kind), RSS %ld -> %ld "
	            "KiB",
	            ops, by_kind[0], by_kind[1], by_kind[2], by_kind[3], by_kind[4], by_kind[5], by_kind[6], by_kind[7],
	            by_kind[8], by_kind[9], rss0, rss1);
	fprintf(stderr, "long hostile run: %lu exchanges, RSS %ld -> %ld KiB\n", ops, rss0, rss1);
	cr_expect_gt(ops, 200, "only %lu hostile exchanges in %d ms", ops, RUN_MS);
	cr_expect_lt(rss1 - rss0, tp_rss_allowance_kb(4 * 1024), "RSS grew from %ld to %ld KiB during the hostile run",
	             rss0, rss1);
	long long open = tp_metric(h.td.port, "ballotd_connections_open");
	cr_expect_leq(open, 1, "%lld connections still open after the run", open);
	assert_untouched();
	/* The journal moved not at all; the same daemon still counts. */
	struct th_resp r;
	cr_assert_eq(th_post(h.td.port, valid, vlen, &r), 0);
	cr_expect(strstr(r.body, "\"ACCEPTED\",\"position\":1"), "%s", r.body);
	th_resp_free(&r);
	free(valid);
	assert_counters(1, 1);
}
