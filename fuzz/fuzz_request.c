/*
 * libFuzzer target: the request path from raw bytes to a validated batch.
 * The input is what a client sends on one connection: it goes through the
 * daemon's HTTP framing (daemon/http.c) in pieces, with hooks that enforce
 * the header and body caps the way daemon/conn.c does and pause after some
 * requests; each complete POST /v1/batches body is decoded (proto/codec.c)
 * and validated and folded (core/tally.c) against tests/data/small.json.
 *
 * Input layout: byte 0 picks the piece size the stream is fed in (1..64
 * bytes, or all at once), the rest is the stream.
 */
#include <stdlib.h>
#include <string.h>

#include "core/ballot.h"
#include "fuzz/fuzz_common.h"
#include "daemon/http.h"

#define FZ_MAX_HEADER 1024
#define FZ_MAX_BODY   8192

struct fz_conn {
	struct bal_http http;
	uint8_t body[FZ_MAX_BODY];
	size_t body_len;
	unsigned requests;
	bool in_request;
};

static struct fz_election election;
static struct bal_arena arena;

static int on_begin(void *ctx)
{
	struct fz_conn *c = ctx;
	FZ_CHECK(!c->in_request, "on_begin inside a request");
	c->in_request = true;
	c->body_len = 0;
	return 0;
}

static int on_headers(void *ctx, const struct bal_http_req *req)
{
	struct fz_conn *c = ctx;
	FZ_CHECK(c->in_request, "on_headers outside a request");
	FZ_CHECK(req->url_len < BAL_HTTP_MAX_URL && strlen(req->url) == req->url_len, "url_len %zu", req->url_len);
	if (req->content_length != UINT64_MAX && req->content_length > FZ_MAX_BODY) {
		bal_http_fail(&c->http, 413, "body of %llu bytes exceeds the limit of %d bytes",
		              (unsigned long long)req->content_length, FZ_MAX_BODY);
		return 413;
	}
	return 0;
}

static int on_body(void *ctx, const char *at, size_t n)
{
	struct fz_conn *c = ctx;
	FZ_CHECK(c->in_request, "on_body outside a request");
	if (c->body_len + n > FZ_MAX_BODY) {
		bal_http_fail(&c->http, 413, "body exceeds the limit of %d bytes", FZ_MAX_BODY);
		return 413;
	}
	memcpy(c->body + c->body_len, at, n);
	c->body_len += n;
	return 0;
}

static int on_complete(void *ctx, const struct bal_http_req *req)
{
	struct fz_conn *c = ctx;
	FZ_CHECK(c->in_request, "on_complete outside a request");
	c->in_request = false;
	c->requests++;
	if (req->method == HTTP_POST && strncmp(req->url, "/v1/batches", 11) == 0) {
		memset(election.ctr, 0, election.nslots * sizeof(uint64_t));
		(void)fz_fold_body(&election, &arena, c->body, c->body_len);
	}
	/* Pause after every third request, as a connection whose slots are full. */
	return c->requests % 3 == 0 ? 1 : 0;
}

static const struct bal_http_hooks hooks = {
        .on_begin = on_begin,
        .on_headers = on_headers,
        .on_body = on_body,
        .on_complete = on_complete,
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fz_election_load(&election);
	bal_arena_init(&arena, FZ_MAX_BODY * 8 + 65536); /* the daemon's arena limit */
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t piece = data[0] % 65 ? data[0] % 65 : size;
	const char *p = (const char *)data + 1;
	size_t left = size - 1;
	static struct fz_conn c;
	memset(&c, 0, sizeof(c));
	bal_http_init(&c.http, &hooks, &c, FZ_MAX_HEADER);
	while (left && !c.http.error_status) {
		size_t n = left < piece ? left : piece;
		size_t used = bal_http_feed(&c.http, p, n);
		FZ_CHECK(used <= n, "feed consumed %zu of %zu bytes", used, n);
		if (c.http.paused) {
			bal_http_resume(&c.http);
		} else if (!c.http.error_status) {
			FZ_CHECK(used == n, "feed consumed %zu of %zu bytes without pausing or failing", used, n);
		}
		p += used;
		left -= used;
		if (used == 0 && !c.http.error_status && !c.http.paused && n)
			break;
	}
	if (c.http.error_status)
		FZ_CHECK(c.http.error_status >= 400 && c.http.error_status < 600 && c.http.error_why[0],
		         "stream error %d without a reason", c.http.error_status);
	return 0;
}
