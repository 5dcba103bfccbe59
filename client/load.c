/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The load engine (see load.h). One private libuv loop; per connection a
 * send cursor over its items, a FIFO of the requests in flight (HTTP/1.1
 * answers in order), and a response collector. A 10 ms ticker drives
 * reconnects after backoff and response timeouts.
 *
 * Connection lifecycle: CONNECTING -> OPEN -> CLOSING -> (WAITING ->
 * CONNECTING | CONNECTING | DONE). Failures found inside parser callbacks
 * only set flags; the connection is closed after the parser returns, never
 * from inside it. A uv_tcp_t is reused only after its close callback.
 *
 * Depends on libuv, http-parser (resp.h), proto/codec.h, client/expect.h and
 * jansson (JSON acks).
 */
#include "client/load.h"

#include "proto/codec.h"
#include "client/http.h"
#include "client/resp.h"
#include "client/util.h"

#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#define TICK_MS        10
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000
#define WRITE_BUFS     64
#define RBUF_SIZE      65536
#define RBODY_SIZE     4096

struct item {
	struct bal_load_item pub;
	uint8_t *req; /* HTTP header + body */
	size_t reqlen;
	size_t body_off;
};

struct lconn;

/* One uv_write in flight; recycled through bal_load.free_w. */
struct wctx {
	uv_write_t w;
	struct lconn *c;
	struct wctx *next;
};

enum cstate { C_CONNECTING, C_OPEN, C_CLOSING, C_WAITING, C_DONE };
enum after_close { AC_DONE, AC_WAIT, AC_NOW };

/*
 * - items[0..next) were sent on the current connection or were final already;
 * - fifo holds the fcount <= pipeline items sent and not answered, oldest first;
 * - ndone counts final items; the connection is DONE iff ndone == nitems or it gave up.
 */
struct lconn {
	struct bal_load *l;
	enum cstate st;
	enum after_close after;
	bool opened_once;
	bool want_close; /* server asked to close: reconnect at once */
	bool want_fail;  /* a response asked for a retry (503) or was unexpected */
	char fail_why[256];
	uv_tcp_t tcp;
	uv_connect_t creq;
	struct bal_resp resp;
	char rbody[RBODY_SIZE];
	uint32_t *items;
	size_t nitems, capitems, next, ndone;
	uint32_t *fifo;
	size_t fhead, fcount;
	uint64_t last_progress_ns; /* connect, first send after idle, or last response */
	uint64_t failing_since_ns; /* 0 unless failing with no response since */
	uint64_t reconnect_at_ns;
	uint32_t backoff_ms;
	char last_error[256];
	char rbuf[RBUF_SIZE];
};

struct bal_load {
	struct bal_load_opts o;
	char server[BAL_HTTP_HOST_MAX + 8];
	struct sockaddr_storage addr;
	struct item *items;
	size_t nitems, capitems;
	struct lconn *conns;
	uint32_t conns_done;
	uv_loop_t loop;
	uv_timer_t ticker;
	struct wctx *free_w;
	struct bal_arena arena; /* decoding acknowledged batches for the expected totals */
	struct bal_load_stats st;
	char *first_error;
	bool ran;
};

int bal_load_new(const struct bal_load_opts *o, struct bal_load **out, char *why, size_t whylen)
{
	if (o->connections < 1 || o->connections > 4096)
		return bal__failf(-EINVAL, why, whylen, "connections %u: must be between 1 and 4096", o->connections);
	if (o->pipeline < 1 || o->pipeline > 4096)
		return bal__failf(-EINVAL, why, whylen, "pipeline %u: must be between 1 and 4096", o->pipeline);
	char host[BAL_HTTP_HOST_MAX];
	uint16_t port;
	int rc = bal_http_hostport(o->server, host, &port, why, whylen);
	if (rc < 0)
		return rc;
	char portstr[8];
	snprintf(portstr, sizeof(portstr), "%u", port);
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res;
	int gai = getaddrinfo(host, portstr, &hints, &res);
	if (gai)
		return bal__failf(-EHOSTUNREACH, why, whylen, "server %s: cannot resolve host: %s", o->server,
		                  gai_strerror(gai));

	struct bal_load *l = calloc(1, sizeof(*l));
	if (!l)
		goto fail_res;
	l->o = *o;
	if (!l->o.timeout_ms)
		l->o.timeout_ms = 30000;
	snprintf(l->server, sizeof(l->server), "%s", o->server);
	l->o.server = l->server;
	/* One address for every connection; IPv4 first, as the daemon listens on
	 * 127.0.0.1 by default while "localhost" often resolves to ::1 first. */
	const struct addrinfo *pick = res;
	for (const struct addrinfo *ai = res; ai; ai = ai->ai_next)
		if (ai->ai_family == AF_INET) {
			pick = ai;
			break;
		}
	memcpy(&l->addr, pick->ai_addr, pick->ai_addrlen);
	freeaddrinfo(res);
	res = NULL;
	bal_arena_init(&l->arena, 0);
	l->conns = calloc(o->connections, sizeof(*l->conns));
	if (!l->conns)
		goto fail_load;
	for (uint32_t i = 0; i < o->connections; i++) {
		struct lconn *c = &l->conns[i];
		c->l = l;
		c->backoff_ms = BACKOFF_MIN_MS;
		c->fifo = calloc(o->pipeline, sizeof(*c->fifo));
		if (!c->fifo)
			goto fail_load;
	}
	*out = l;
	return 0;

fail_load:
	bal_load_free(l);
fail_res:
	if (res)
		freeaddrinfo(res);
	return bal__failf(-ENOMEM, why, whylen, "out of memory creating the load engine");
}

void bal_load_free(struct bal_load *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->nitems; i++) {
		free(l->items[i].req);
		free(l->items[i].pub.error);
	}
	free(l->items);
	if (l->conns)
		for (uint32_t i = 0; i < l->o.connections; i++) {
			free(l->conns[i].items);
			free(l->conns[i].fifo);
		}
	free(l->conns);
	while (l->free_w) {
		struct wctx *w = l->free_w;
		l->free_w = w->next;
		free(w);
	}
	bal_arena_deinit(&l->arena);
	free(l->first_error);
	free(l);
}

int64_t bal_load_add(struct bal_load *l, uint32_t precinct_id, uint64_t seq, const uint8_t *body, size_t len)
{
	struct lconn *c = &l->conns[precinct_id % l->o.connections];
	if (l->nitems >= UINT32_MAX ||
	    bal__grow((void **)&l->items, &l->capitems, l->nitems + 1, sizeof(*l->items), 64) < 0 ||
	    bal__grow((void **)&c->items, &c->capitems, c->nitems + 1, sizeof(*c->items), 64) < 0)
		return -ENOMEM;
	char head[512];
	int hn = snprintf(head, sizeof(head),
	                  "POST /v1/batches HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-protobuf\r\n"
	                  "Accept: application/x-protobuf\r\nContent-Length: %zu\r\n\r\n",
	                  l->server, len);
	uint8_t *req = malloc((size_t)hn + len);
	if (!req)
		return -ENOMEM;
	memcpy(req, head, (size_t)hn);
	memcpy(req + hn, body, len);
	struct item *it = &l->items[l->nitems];
	memset(it, 0, sizeof(*it));
	it->pub.precinct_id = precinct_id;
	it->pub.seq = seq;
	it->req = req;
	it->reqlen = (size_t)hn + len;
	it->body_off = (size_t)hn;
	c->items[c->nitems++] = (uint32_t)l->nitems;
	return (int64_t)l->nitems++;
}

size_t bal_load_count(const struct bal_load *l)
{
	return l->nitems;
}

const struct bal_load_item *bal_load_item(const struct bal_load *l, size_t i)
{
	return i < l->nitems ? &l->items[i].pub : NULL;
}

void bal_load_stats(const struct bal_load *l, struct bal_load_stats *out)
{
	*out = l->st;
	out->pending = 0;
	for (size_t i = 0; i < l->nitems; i++)
		out->pending += l->items[i].pub.state == BAL_LOAD_PENDING;
}

const char *bal_load_first_error(const struct bal_load *l)
{
	return l->first_error;
}

/* ---- outcomes ------------------------------------------------------------ */

static void fold_expected(struct bal_load *l, struct item *it)
{
	struct bal_batch b;
	char why[256];
	int rc = bal_codec_decode(it->req + it->body_off, it->reqlen - it->body_off, &l->arena, &b, why, sizeof(why));
	if (rc == 0)
		rc = bal_expect_fold(l->o.expect, &b, why, sizeof(why));
	bal_arena_reset(&l->arena);
	if (rc < 0) {
		l->st.expect_errors++;
		if (!l->first_error) {
			size_t n = strlen(why) + 96;
			l->first_error = malloc(n);
			if (l->first_error)
				snprintf(l->first_error, n, "precinct %u seq %llu: acknowledged but not foldable: %s",
				         it->pub.precinct_id, (unsigned long long)it->pub.seq, why);
		}
	}
}

static void finalize(struct lconn *c, struct item *it, enum bal_load_state state, int http_status, uint64_t position,
                     const char *error)
{
	struct bal_load *l = c->l;
	it->pub.state = state;
	it->pub.http_status = http_status;
	it->pub.position = position;
	it->pub.done_ns = uv_hrtime();
	c->ndone++;
	switch (state) {
	case BAL_LOAD_ACCEPTED: l->st.accepted++; break;
	case BAL_LOAD_DUPLICATE: l->st.duplicate++; break;
	case BAL_LOAD_REJECTED: l->st.rejected++; break;
	default: l->st.errors++; break;
	}
	if ((state == BAL_LOAD_ACCEPTED || state == BAL_LOAD_DUPLICATE) && l->o.expect)
		fold_expected(l, it);
	if (error) {
		it->pub.error = strdup(error);
		if (!l->first_error) {
			size_t n = strlen(error) + 64;
			l->first_error = malloc(n);
			if (l->first_error)
				snprintf(l->first_error, n, "precinct %u seq %llu: %s", it->pub.precinct_id,
				         (unsigned long long)it->pub.seq, error);
		}
	}
	if (l->o.on_done)
		l->o.on_done(l->o.ud, &it->pub);
}

/* Error text of a non-success answer: the BatchAck's error, a JSON "error"
 * member, or the body itself (first line, truncated). */
static void answer_text(const struct bal_resp *r, char *out, size_t outlen)
{
	enum bal_ack_status st;
	uint64_t pos;
	char err[256] = "";
	if (bal_resp_is_protobuf(r) &&
	    bal_codec_ack_decode((const uint8_t *)r->body, r->len, &st, &pos, err, sizeof(err)) == 0 && err[0]) {
		snprintf(out, outlen, "HTTP %d: %s", r->status, err);
		return;
	}
	json_t *j = r->len ? json_loadb(r->body, r->len, 0, NULL) : NULL;
	const char *s = j ? json_string_value(json_object_get(j, "error")) : NULL;
	if (s) {
		snprintf(out, outlen, "HTTP %d: %s", r->status, s);
	} else {
		size_t n = strcspn(r->body ? r->body : "", "\r\n");
		snprintf(out, outlen, "HTTP %d: %.*s", r->status, (int)(n > 200 ? 200 : n), r->body ? r->body : "");
	}
	json_decref(j);
}

/* Decodes a 200 answer: protobuf BatchAck, or the JSON form
 * {"status": "ACCEPTED"|"DUPLICATE"|"REJECTED", "position": N, "error": "..."}. */
static int decode_ack(const struct bal_resp *r, enum bal_ack_status *st, uint64_t *pos, char *err, size_t errlen)
{
	if (bal_resp_is_protobuf(r))
		return bal_codec_ack_decode((const uint8_t *)r->body, r->len, st, pos, err, errlen);
	json_t *j = json_loadb(r->body ? r->body : "", r->len, 0, NULL);
	const char *s = j ? json_string_value(json_object_get(j, "status")) : NULL;
	int rc = BAL_ESCHEMA;
	if (s) {
		rc = 0;
		if (strcasecmp(s, "accepted") == 0)
			*st = BAL_ACK_ACCEPTED;
		else if (strcasecmp(s, "duplicate") == 0)
			*st = BAL_ACK_DUPLICATE;
		else if (strcasecmp(s, "rejected") == 0)
			*st = BAL_ACK_REJECTED;
		else
			rc = BAL_ESCHEMA;
		json_t *p = json_object_get(j, "position");
		*pos = json_is_integer(p) ? (uint64_t)json_integer_value(p) : 0;
		const char *e = json_string_value(json_object_get(j, "error"));
		snprintf(err, errlen, "%s", e ? e : "");
	}
	json_decref(j);
	return rc;
}

/* One complete response, from inside the parser: answers the oldest request in flight. */
static int on_response(struct bal_resp *r)
{
	struct lconn *c = r->ud;
	struct bal_load *l = c->l;
	if (!http_should_keep_alive(&r->parser))
		c->want_close = true;
	if (c->fcount == 0) {
		c->want_fail = true;
		snprintf(c->fail_why, sizeof(c->fail_why), "HTTP %d response with no request in flight", r->status);
		return 1;
	}
	struct item *it = &l->items[c->fifo[c->fhead]];
	c->fhead = (c->fhead + 1) % l->o.pipeline;
	c->fcount--;
	uint64_t now = uv_hrtime();
	char text[512];
	if (r->status == 503 && l->o.retry_for_ms) {
		/* Not progress: the item stays pending and is resent after the backoff. */
		answer_text(r, c->fail_why, sizeof(c->fail_why));
		c->want_fail = true;
		return 0;
	}
	c->last_progress_ns = now;
	c->failing_since_ns = 0;
	c->backoff_ms = BACKOFF_MIN_MS;
	if (r->status != 200) {
		answer_text(r, text, sizeof(text));
		finalize(c, it, BAL_LOAD_REJECTED, r->status, 0, text);
		return 0;
	}
	enum bal_ack_status st;
	uint64_t pos = 0;
	char err[256] = "";
	if (decode_ack(r, &st, &pos, err, sizeof(err)) < 0) {
		snprintf(text, sizeof(text), "HTTP 200 with an undecodable BatchAck (Content-Type \"%s\", %zu bytes)",
		         r->content_type, r->len);
		finalize(c, it, BAL_LOAD_REJECTED, 200, 0, text);
	} else if (st == BAL_ACK_ACCEPTED) {
		finalize(c, it, BAL_LOAD_ACCEPTED, 200, pos, NULL);
	} else if (st == BAL_ACK_DUPLICATE) {
		finalize(c, it, BAL_LOAD_DUPLICATE, 200, pos, NULL);
	} else {
		snprintf(text, sizeof(text), "HTTP 200: REJECTED: %s", err);
		finalize(c, it, BAL_LOAD_REJECTED, 200, pos, text);
	}
	return 0;
}

/* ---- connection lifecycle --------------------------------------------- */

static void conn_connect(struct lconn *c);
static void pump(struct lconn *c);

static void check_finish(struct bal_load *l)
{
	if (l->conns_done == l->o.connections && !uv_is_closing((uv_handle_t *)&l->ticker))
		uv_close((uv_handle_t *)&l->ticker, NULL);
}

static void on_close(uv_handle_t *h)
{
	struct lconn *c = h->data;
	switch (c->after) {
	case AC_DONE:
		c->st = C_DONE;
		c->l->conns_done++;
		check_finish(c->l);
		break;
	case AC_WAIT: c->st = C_WAITING; break;
	case AC_NOW: conn_connect(c); break;
	}
}

static void conn_close(struct lconn *c, enum after_close after)
{
	c->st = C_CLOSING;
	c->after = after;
	c->fcount = 0; /* unanswered items stay PENDING and are resent from the cursor */
	c->fhead = 0;
	uv_close((uv_handle_t *)&c->tcp, on_close);
}

/* A failed connection: retry after backoff, or make every pending item an ERROR. */
static void conn_fail(struct lconn *c, const char *why)
{
	struct bal_load *l = c->l;
	if (c->st != C_CONNECTING && c->st != C_OPEN)
		return;
	uint64_t now = uv_hrtime();
	snprintf(c->last_error, sizeof(c->last_error), "%s", why);
	bool final = true;
	if (l->o.retry_for_ms) {
		if (!c->failing_since_ns)
			c->failing_since_ns = now;
		final = now - c->failing_since_ns >= (uint64_t)l->o.retry_for_ms * 1000000;
	}
	if (!final) {
		c->reconnect_at_ns = now + (uint64_t)c->backoff_ms * 1000000;
		c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
		conn_close(c, AC_WAIT);
		return;
	}
	char text[512];
	if (l->o.retry_for_ms)
		snprintf(text, sizeof(text), "gave up after %u ms of retries; last error: %s", l->o.retry_for_ms, why);
	else
		snprintf(text, sizeof(text), "%s", why);
	for (size_t i = 0; i < c->nitems; i++) {
		struct item *it = &l->items[c->items[i]];
		if (it->pub.state == BAL_LOAD_PENDING)
			finalize(c, it, BAL_LOAD_ERROR, 0, 0, text);
	}
	conn_close(c, AC_DONE);
}

static void conn_failf(struct lconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void conn_failf(struct lconn *c, const char *fmt, ...)
{
	char why[320];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	conn_fail(c, why);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct lconn *c = h->data;
	buf->base = c->rbuf;
	buf->len = sizeof(c->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct lconn *c = s->data;
	struct bal_load *l = c->l;
	if (c->st != C_OPEN || nread == 0)
		return;
	char why[256];
	if (nread < 0 && nread != UV_EOF) {
		conn_failf(c, "read from %s: %s", l->server, uv_strerror((int)nread));
		return;
	}
	/* Length 0 tells the parser about EOF (ends a close-delimited body). */
	size_t n = nread > 0 ? (size_t)nread : 0;
	if (bal_resp_feed(&c->resp, buf->base, n, why, sizeof(why)) < 0 && !c->want_fail) {
		conn_failf(c, "%s: %s", l->server, why);
		return;
	}
	if (c->ndone == c->nitems) {
		conn_close(c, AC_DONE);
	} else if (c->want_fail) {
		conn_fail(c, c->fail_why);
	} else if (nread == UV_EOF) {
		if (c->fcount)
			conn_failf(c, "%s closed the connection with %zu requests in flight", l->server, c->fcount);
		else
			conn_close(c, AC_NOW);
	} else if (c->want_close) {
		conn_close(c, AC_NOW);
	} else {
		pump(c);
	}
}

static void on_write(uv_write_t *req, int status)
{
	struct wctx *w = (struct wctx *)req;
	struct lconn *c = w->c;
	w->next = c->l->free_w;
	c->l->free_w = w;
	if (status < 0 && status != UV_ECANCELED && c->st == C_OPEN)
		conn_failf(c, "write to %s: %s", c->l->server, uv_strerror(status));
}

static int flush(struct lconn *c, uv_buf_t *bufs, unsigned n)
{
	struct bal_load *l = c->l;
	struct wctx *w = l->free_w;
	if (w) {
		l->free_w = w->next;
	} else if (!(w = malloc(sizeof(*w)))) {
		conn_failf(c, "out of memory writing to %s", l->server);
		return -ENOMEM;
	}
	w->c = c;
	int rc = uv_write(&w->w, (uv_stream_t *)&c->tcp, bufs, n, on_write);
	if (rc < 0) {
		w->next = l->free_w;
		l->free_w = w;
		conn_failf(c, "write to %s: %s", l->server, uv_strerror(rc));
	}
	return rc;
}

/* Sends items from the cursor until `pipeline` are in flight. */
static void pump(struct lconn *c)
{
	struct bal_load *l = c->l;
	uv_buf_t bufs[WRITE_BUFS];
	unsigned n = 0;
	uint64_t now = uv_hrtime();
	if (c->st != C_OPEN)
		return;
	while (c->fcount < l->o.pipeline && c->next < c->nitems) {
		uint32_t idx = c->items[c->next++];
		struct item *it = &l->items[idx];
		if (it->pub.state != BAL_LOAD_PENDING)
			continue;
		if (c->fcount == 0)
			c->last_progress_ns = now; /* the response timeout runs from here */
		c->fifo[(c->fhead + c->fcount) % l->o.pipeline] = idx;
		c->fcount++;
		it->pub.sends++;
		if (!it->pub.first_send_ns)
			it->pub.first_send_ns = now;
		it->pub.last_send_ns = now;
		l->st.sends++;
		bufs[n++] = uv_buf_init((char *)it->req, (unsigned)it->reqlen);
		if (n == WRITE_BUFS) {
			if (flush(c, bufs, n) < 0)
				return;
			n = 0;
		}
	}
	if (n)
		flush(c, bufs, n);
}

static void on_connect(uv_connect_t *req, int status)
{
	struct lconn *c = req->data;
	if (status == UV_ECANCELED || c->st != C_CONNECTING)
		return;
	if (status < 0) {
		conn_failf(c, "connect to %s: %s", c->l->server, uv_strerror(status));
		return;
	}
	c->st = C_OPEN;
	c->last_progress_ns = uv_hrtime();
	int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	if (rc < 0) {
		conn_failf(c, "read from %s: %s", c->l->server, uv_strerror(rc));
		return;
	}
	pump(c);
}

static void conn_connect(struct lconn *c)
{
	struct bal_load *l = c->l;
	if (c->opened_once)
		l->st.reconnects++;
	c->opened_once = true;
	c->st = C_CONNECTING;
	c->next = 0;
	c->fhead = c->fcount = 0;
	c->want_close = c->want_fail = false;
	c->last_progress_ns = uv_hrtime();
	bal_resp_init(&c->resp, c->rbody, sizeof(c->rbody), false, sizeof(c->rbody), on_response, c);
	int rc = uv_tcp_init(&l->loop, &c->tcp);
	bal_require(rc == 0); /* only fails for a bad address family flag */
	c->tcp.data = c;
	c->creq.data = c;
	uv_tcp_nodelay(&c->tcp, 1);
	rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&l->addr, on_connect);
	if (rc < 0)
		conn_failf(c, "connect to %s: %s", l->server, uv_strerror(rc));
}

static void on_tick(uv_timer_t *t)
{
	struct bal_load *l = t->data;
	uint64_t now = uv_hrtime();
	uint64_t timeout = (uint64_t)l->o.timeout_ms * 1000000;
	for (uint32_t i = 0; i < l->o.connections; i++) {
		struct lconn *c = &l->conns[i];
		if (c->st == C_WAITING && now >= c->reconnect_at_ns)
			conn_connect(c);
		else if ((c->st == C_CONNECTING || (c->st == C_OPEN && c->fcount)) &&
		         now - c->last_progress_ns > timeout)
			conn_failf(c, "%s: no response within %u ms", l->server, l->o.timeout_ms);
	}
}

int bal_load_run(struct bal_load *l, char *why, size_t whylen)
{
	bal_require(!l->ran);
	l->ran = true;
	/* A write to a connection the server reset raises SIGPIPE; the engine
	 * handles the EPIPE instead. */
	signal(SIGPIPE, SIG_IGN);
	int rc = uv_loop_init(&l->loop);
	if (rc < 0)
		return bal__failf(rc, why, whylen, "uv_loop_init: %s", uv_strerror(rc));
	uint64_t start = uv_hrtime();
	uv_timer_init(&l->loop, &l->ticker);
	l->ticker.data = l;
	uv_timer_start(&l->ticker, on_tick, TICK_MS, TICK_MS);
	for (uint32_t i = 0; i < l->o.connections; i++) {
		struct lconn *c = &l->conns[i];
		if (c->nitems == 0) {
			c->st = C_DONE;
			l->conns_done++;
		}
	}
	check_finish(l);
	for (uint32_t i = 0; i < l->o.connections; i++)
		if (l->conns[i].st != C_DONE)
			conn_connect(&l->conns[i]);
	uv_run(&l->loop, UV_RUN_DEFAULT);
	l->st.elapsed_ns = uv_hrtime() - start;
	rc = uv_loop_close(&l->loop);
	bal_require(rc == 0); /* every handle was closed before uv_run returned */
	return 0;
}
