/* SPDX-License-Identifier: Apache-2.0 */
/*
 * daemon/http.c: the response head byte for byte (and its refusal to
 * overrun a small buffer), and request framing: pipelined requests, pausing
 * and resuming, the Accept and Expect headers, the header cap, broken input.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "daemon/http.h"

Test(http, head_is_exact)
{
	char buf[256];
	size_t n = bal_http_head(buf, sizeof(buf), 200, "application/json", 42, true, NULL);
	const char *want = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 42\r\n\r\n";
	cr_assert_str_eq(buf, want);
	cr_assert_eq(n, strlen(want));

	n = bal_http_head(buf, sizeof(buf), 503, "application/x-protobuf", 0, false, "Retry-After: 1\r\n");
	want = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n"
	       "Connection: close\r\nRetry-After: 1\r\n\r\n";
	cr_assert_str_eq(buf, want);
	cr_assert_eq(n, strlen(want));

	n = bal_http_head(buf, sizeof(buf), 431, "text/plain", 18446744073709551615ull, true, "");
	want = "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\n"
	       "Content-Length: 18446744073709551615\r\n\r\n";
	cr_assert_str_eq(buf, want);
	cr_assert_eq(n, strlen(want));
}

Test(http, head_never_overruns_its_buffer)
{
	char full[256];
	size_t len = bal_http_head(full, sizeof(full), 409, "application/json", 123, false, "X-A: b\r\n");
	cr_assert_gt(len, 0);
	for (size_t cap = 0; cap <= len + 1; cap++) {
		char buf[256];
		memset(buf, '#', sizeof(buf));
		size_t n = bal_http_head(buf, cap, 409, "application/json", 123, false, "X-A: b\r\n");
		if (cap <= len) {
			cr_assert_eq(n, 0, "cap %zu of %zu", cap, len);
		} else {
			cr_assert_eq(n, len);
			cr_assert_str_eq(buf, full);
		}
		for (size_t i = cap; i < sizeof(buf); i++)
			cr_assert_eq(buf[i], '#', "cap %zu: byte %zu written", cap, i);
	}
	cr_assert_eq(bal_http_head(full, sizeof(full), 42, "x", 0, true, NULL), 0, "not a status");
}

/* A connection stand-in: what the hooks saw. */
struct seen {
	int begun, completed;
	char url[8][BAL_HTTP_MAX_URL];
	bool protobuf[8], cont[8], keep[8];
	size_t body[8];
	int pause_after; /* on_complete pauses after this many; 0 = never */
};

static int on_begin(void *ctx)
{
	((struct seen *)ctx)->begun++;
	return 0;
}

static int on_headers(void *ctx, const struct bal_http_req *req)
{
	struct seen *s = ctx;
	snprintf(s->url[s->begun - 1], sizeof(s->url[0]), "%s", req->url);
	s->protobuf[s->begun - 1] = req->accept_protobuf;
	s->cont[s->begun - 1] = req->expect_continue;
	return 0;
}

static int on_body(void *ctx, const char *at, size_t n)
{
	struct seen *s = ctx;
	(void)at;
	s->body[s->begun - 1] += n;
	return 0;
}

static int on_complete(void *ctx, const struct bal_http_req *req)
{
	struct seen *s = ctx;
	s->keep[s->completed] = req->keep_alive;
	s->completed++;
	return s->pause_after && s->completed == s->pause_after ? 1 : 0;
}

static const struct bal_http_hooks hooks = {on_begin, on_headers, on_body, on_complete};

Test(http, pipelined_requests_pause_and_resume)
{
	struct bal_http h;
	struct seen s = {.pause_after = 1};
	bal_http_init(&h, &hooks, &s, 16384);
	const char in[] = "POST /v1/batches HTTP/1.1\r\nHost: x\r\naccept: text/plain, APPLICATION/X-PROTOBUF;q=1\r\n"
	                  "Content-Length: 5\r\n\r\nhello"
	                  "GET /v1/snapshot HTTP/1.1\r\nAccept: application/json\r\nExpect: 100-continue\r\n\r\n"
	                  "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n";
	size_t used = bal_http_feed(&h, in, sizeof(in) - 1);
	cr_assert(h.paused);
	cr_assert_eq(s.completed, 1);
	cr_assert_lt(used, sizeof(in) - 1);
	cr_assert_str_eq(s.url[0], "/v1/batches");
	cr_assert(s.protobuf[0], "Accept lists application/x-protobuf, in another case");
	cr_assert_eq(s.body[0], 5);
	cr_assert_eq(bal_http_feed(&h, in + used, sizeof(in) - 1 - used), 0, "nothing parsed while paused");
	bal_http_resume(&h);
	s.pause_after = 0;
	cr_assert_eq(bal_http_feed(&h, in + used, sizeof(in) - 1 - used), sizeof(in) - 1 - used);
	cr_assert_eq(s.completed, 3);
	cr_assert_str_eq(s.url[1], "/v1/snapshot");
	cr_assert_not(s.protobuf[1]);
	cr_assert(s.cont[1]);
	cr_assert_str_eq(s.url[2], "/healthz");
	cr_assert(s.keep[0] && s.keep[1]);
	cr_assert_not(s.keep[2], "Connection: close");
	cr_assert_eq(h.error_status, 0);
}

Test(http, byte_at_a_time_is_the_same_request)
{
	struct bal_http h;
	struct seen s = {0};
	bal_http_init(&h, &hooks, &s, 16384);
	const char in[] =
	        "POST /v1/batches?x=1 HTTP/1.1\r\nAccept: application/x-protobuf\r\nContent-Length: 3\r\n\r\nabc";
	for (size_t i = 0; i < sizeof(in) - 1; i++)
		cr_assert_eq(bal_http_feed(&h, in + i, 1), 1, "byte %zu", i);
	cr_assert_eq(s.completed, 1);
	cr_assert_str_eq(s.url[0], "/v1/batches?x=1");
	cr_assert(s.protobuf[0]);
	cr_assert_eq(s.body[0], 3);
}

Test(http, headers_beyond_the_cap_are_431_and_garbage_400)
{
	struct bal_http h;
	struct seen s = {0};
	bal_http_init(&h, &hooks, &s, 64);
	const char big[] =
	        "GET / HTTP/1.1\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
	bal_http_feed(&h, big, sizeof(big) - 1);
	cr_assert_eq(h.error_status, 431);
	cr_assert_not_null(strstr(h.error_why, "exceed 64 bytes"), "%s", h.error_why);
	cr_assert_eq(s.completed, 0);

	bal_http_init(&h, &hooks, &s, 16384);
	const char junk[] = "\x01\x02 nonsense\r\n\r\n";
	bal_http_feed(&h, junk, sizeof(junk) - 1);
	cr_assert_eq(h.error_status, 400);
	cr_assert_not_null(strstr(h.error_why, "malformed HTTP request"), "%s", h.error_why);
	cr_assert_eq(bal_http_feed(&h, "GET / HTTP/1.1\r\n\r\n", 18), 0, "a broken stream parses nothing more");
}

/* A head http-parser 2.9 takes, and why it must be refused: parsed whole, at
 * once and a byte at a time (a line end split from its line). */
struct strict_case {
	const char *name, *in, *why;
};

static const struct strict_case strict_cases[] = {
        {"space before colon", "POST /v1/batches HTTP/1.1\r\nContent-Length : 3\r\n\r\nabc",
         "whitespace between a header name and its colon"},
        {"obs-fold with SP", "GET /healthz HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n", "obs-fold"},
        {"obs-fold with HT", "GET /healthz HTTP/1.1\r\nX-A: a\r\n\tb\r\n\r\n", "obs-fold"},
        {"obs-fold of spaces only", "GET /healthz HTTP/1.1\r\nX-A: a\r\n   \r\n\r\n", "obs-fold"},
        {"bare LF after the request line", "GET /healthz HTTP/1.1\nHost: t\r\n\r\n",
         "the request line ends in a bare LF"},
        {"bare LF after a header", "GET /healthz HTTP/1.1\r\nHost: t\nX: y\r\n\r\n", "a header line ends in a bare LF"},
        {"bare LF as the empty line", "GET /healthz HTTP/1.1\r\nHost: t\r\n\n", "a header line ends in a bare LF"},
        {"bare LF everywhere", "GET /healthz HTTP/1.1\nHost: t\n\n", "the request line ends in a bare LF"},
        {"bare LF without headers", "GET /healthz HTTP/1.1\n\n", "the request line ends in a bare LF"},
        {"tab in the target", "GET /v1/precincts/\t17 HTTP/1.1\r\n\r\n", "control character or a space (0x09)"},
};

static void expect_refused(const struct strict_case *c, size_t step)
{
	struct bal_http h;
	struct seen s = {0};
	bal_http_init(&h, &hooks, &s, 16384);
	size_t n = strlen(c->in);
	for (size_t i = 0; i < n && !h.error_status; i += step)
		bal_http_feed(&h, c->in + i, i + step <= n ? step : n - i);
	cr_assert_eq(h.error_status, 400, "%s (step %zu): status %d", c->name, step, h.error_status);
	cr_assert_not_null(strstr(h.error_why, c->why), "%s (step %zu): %s", c->name, step, h.error_why);
	cr_assert_eq(s.completed, 0, "%s (step %zu): the request must not reach the daemon", c->name, step);
}

Test(http, lenient_heads_are_400)
{
	for (size_t k = 0; k < sizeof(strict_cases) / sizeof(strict_cases[0]); k++) {
		expect_refused(&strict_cases[k], 1);
		expect_refused(&strict_cases[k], 2);
		expect_refused(&strict_cases[k], 4096);
	}
}

Test(http, strict_heads_pass_split_anywhere)
{
	/* Pipelined, with a body holding bare LFs and a leading empty line: the
	 * line check covers heads only. */
	const char in[] = "POST /v1/batches HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\na\nb\r\n\n"
	                  "\r\nGET /v1/snapshot HTTP/1.1\r\nAccept: application/json\r\n\r\n"
	                  "GET /healthz HTTP/1.1\r\n\r\n";
	for (size_t step = 1; step <= sizeof(in); step++) {
		struct bal_http h;
		struct seen s = {0};
		bal_http_init(&h, &hooks, &s, 16384);
		for (size_t i = 0; i < sizeof(in) - 1; i += step)
			cr_assert_eq(bal_http_feed(&h, in + i, i + step < sizeof(in) - 1 ? step : sizeof(in) - 1 - i),
			             i + step < sizeof(in) - 1 ? step : sizeof(in) - 1 - i, "step %zu: %s", step,
			             h.error_why);
		cr_assert_eq(h.error_status, 0, "step %zu: %s", step, h.error_why);
		cr_assert_eq(s.completed, 3, "step %zu", step);
		cr_assert_eq(s.body[0], 6);
		cr_assert_str_eq(s.url[2], "/healthz");
	}
}

/* GET of a 19-byte target with `byte` at `pos` (1..19); returns the status. */
static int target_with(unsigned char byte, size_t pos, int *completed)
{
	char in[64];
	memcpy(in, "GET /aaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n\r\n", 38);
	in[4 + pos] = (char)byte;
	struct bal_http h;
	struct seen s = {0};
	bal_http_init(&h, &hooks, &s, 16384);
	bal_http_feed(&h, in, 37);
	*completed = s.completed;
	return h.error_status;
}

Test(http, control_bytes_in_the_target_are_400_wherever_they_are)
{
	/* Every position, so that each byte is checked both in an 8-byte step
	 * and in the tail. */
	static const unsigned char bad[] = {0x01, 0x09, 0x0c, 0x1f, 0x7f};
	static const unsigned char fine[] = {'!', '~', '0', 'z', '%'};
	int completed;
	for (size_t pos = 1; pos < 20; pos++) {
		for (size_t k = 0; k < sizeof(bad); k++) {
			cr_assert_eq(target_with(bad[k], pos, &completed), 400, "byte 0x%02x at %zu", bad[k], pos);
			cr_assert_eq(completed, 0);
		}
		for (size_t k = 0; k < sizeof(fine); k++) {
			cr_assert_eq(target_with(fine[k], pos, &completed), 0, "byte %c at %zu", fine[k], pos);
			cr_assert_eq(completed, 1);
		}
	}
}
