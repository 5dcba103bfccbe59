/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-connection state: reading into the worker's shared buffer, HTTP framing
 * through http.c, requests answered strictly in order (pipelining), write
 * batching, pause/resume when max_pipeline requests are in flight, timeouts,
 * and a refcounted close that waits for jobs still with the committer.
 *
 * No ballot logic here: a finished request goes to ingest.c or query.c.
 */
#include "daemon/conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/cache.h"
#include "daemon/ingest.h"
#include "daemon/log.h"
#include "daemon/query.h"
#include "daemon/text.h"
#include "daemon/worker.h"

static struct bal_req *req_at(struct bal_conn *c, unsigned k)
{
	return c->reqs[(c->first + k) % c->cap];
}

/* A finished request keeps a body buffer this small for the next one: an
 * uploader's batches then cost no malloc; a larger one is freed once read. */
#define BODY_KEEP ((size_t)16 << 10)

/* The connection now holds `n` more owned bytes (bal_conn_held()), and so
 * does the daemon on behalf of its clients. */
static void mem_add(struct bal_conn *c, size_t n)
{
	if (!n)
		return; /* the usual case (an inline answer, a kept body): no shared write */
	c->mem += n;
	__atomic_add_fetch(&c->w->d->client_memory, n, __ATOMIC_RELAXED);
}

static void mem_sub(struct bal_conn *c, size_t n)
{
	if (!n)
		return;
	bal_require(c->mem >= n);
	c->mem -= n;
	__atomic_sub_fetch(&c->w->d->client_memory, n, __ATOMIC_RELAXED);
}

size_t bal_conn_held(const struct bal_conn *c)
{
	return c->mem + c->out_shared;
}

/* The response bytes of `req` beyond its inline head: owned (malloc'd for
 * it) or shared (a cached body, daemon/cache.h). */
static size_t resp_owned(const struct bal_req *req)
{
	return req->tail_owned ? req->tail_len : 0;
}

static size_t resp_shared(const struct bal_req *req)
{
	return req->tail_shared ? req->tail_len : 0;
}

/* Frees the body of a request done with it, unless it is small enough to
 * keep for the next request and the connection is within its memory. */
static void body_release(struct bal_conn *c, struct bal_req *req)
{
	req->body_len = 0;
	if (req->body && (req->body_cap > BODY_KEEP || c->mem > c->w->d->cfg.max_conn_memory)) {
		mem_sub(c, req->body_cap);
		free(req->body);
		req->body = NULL;
		req->body_cap = 0;
	}
}

static void req_reset(struct bal_req *req)
{
	mem_sub(req->conn, resp_owned(req));
	req->conn->out_shared -= resp_shared(req);
	if (req->state == BAL_REQ_WAITING)
		bal_query_abandon(req);
	req->resp_len = 0;
	free(req->tail_owned);
	bal_body_release(req->tail_shared);
	req->tail = req->tail_owned = NULL;
	req->tail_shared = NULL;
	req->tail_len = 0;
	req->body_len = 0;
	req->state = BAL_REQ_FREE;
}

static void req_free(struct bal_req *req)
{
	if (!req)
		return;
	req_reset(req);
	free(req->body);
	free(req->entries);
	free(req->log);
	free(req);
}

static void conn_free(struct bal_conn *c)
{
	struct bal_worker *w = c->w;
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->nconns--;
	BAL_METRIC_SUB(w->d->metrics.connections_open, 1);
	if (c->reqs) {
		for (unsigned i = 0; i < c->cap; i++)
			req_free(c->reqs[i]);
		free(c->reqs);
	}
	while (c->free_reqs) {
		struct bal_req *req = c->free_reqs;
		c->free_reqs = req->next_free;
		req_free(req);
	}
	free(c->pending);
	/* What its requests and held input still had, at once. */
	__atomic_sub_fetch(&w->d->client_memory, c->mem, __ATOMIC_RELAXED);
	free(c);
}

static void unref(struct bal_conn *c)
{
	bal_require(c->refs > 0);
	if (--c->refs == 0)
		conn_free(c);
}

static void on_close(uv_handle_t *h)
{
	unref(h->data);
}

void bal_conn_close(struct bal_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	/* Pending writes get their callbacks (UV_ECANCELED) before on_close. */
	uv_close((uv_handle_t *)&c->tcp, on_close);
}

/* ---- responses ------------------------------------------------------------ */

/*
 * Head and body of a response. A short one is copied whole into the
 * request's inline buffer; otherwise the head goes there and the body is
 * sent from where it lies as a second buffer (`tail`): the caller's
 * malloc'd memory (`owned`), a shared body (`shared`), or a copy of `body`.
 */
static void respond(struct bal_req *req, int status, const char *ctype, const char *extra, const void *body, size_t len,
                    char *owned, struct bal_body *shared, bool kept)
{
	struct bal_conn *c = req->conn;
	bool keep = !c->close_after_flush;
	size_t hl = bal_http_head(req->inl, sizeof(req->inl), status, ctype, len, keep, extra);
	bal_require(hl > 0);
	if (owned)
		body = owned;
	else if (shared)
		body = shared->data;
	req->resp_len = hl;
	if (hl + len <= sizeof(req->inl)) {
		if (len)
			memcpy(req->inl + hl, body, len);
		req->resp_len += len;
		free(owned);
	} else if (owned) {
		req->tail = req->tail_owned = owned;
		req->tail_len = len;
	} else if (shared) {
		req->tail_shared = bal_body_ref(shared);
		req->tail = shared->data;
		req->tail_len = len;
	} else if (kept) {
		req->tail = body;
		req->tail_len = len;
	} else {
		char *copy = malloc(len);
		if (!copy) {
			bal_conn_close(c);
			return;
		}
		memcpy(copy, body, len);
		req->tail = req->tail_owned = copy;
		req->tail_len = len;
	}
	req->state = BAL_REQ_READY;
	mem_add(c, resp_owned(req));
	c->out_shared += resp_shared(req);
	uint64_t *count = &c->w->http_status[status / 100 < 6 ? status / 100 : 5];
	__atomic_store_n(count, *count + 1, __ATOMIC_RELAXED); /* this thread is the only writer */
}

void bal_req_respond(struct bal_req *req, int status, const char *ctype, const char *extra, const void *body,
                     size_t len)
{
	respond(req, status, ctype, extra, body, len, NULL, NULL, false);
}

void bal_req_respond_kept(struct bal_req *req, int status, const char *ctype, const char *extra_headers,
                          const char *body, size_t len)
{
	respond(req, status, ctype, extra_headers, body, len, NULL, NULL, true);
}

void bal_req_respond_owned(struct bal_req *req, int status, const char *ctype, const char *extra_headers, char *body,
                           size_t len)
{
	respond(req, status, ctype, extra_headers, NULL, len, body, NULL, false);
}

void bal_req_respond_shared(struct bal_req *req, int status, const char *ctype, const char *extra_headers,
                            struct bal_body *body)
{
	respond(req, status, ctype, extra_headers, NULL, body->len, NULL, body, false);
}

static void feed(struct bal_conn *c, const char *data, size_t n);
static void read_start(struct bal_conn *c);

/* Retires the `n` oldest requests, whose responses have been written. */
static void release_written(struct bal_conn *c, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct bal_req *req = c->reqs[c->first];
		bal_require(req->state == BAL_REQ_WRITING);
		req_reset(req);
		/* Kept for the next request, whatever ring position it gets: a
		 * connection allocates only as many requests as it has in
		 * flight at once, not one per ring position it passes. */
		c->reqs[c->first] = NULL;
		req->next_free = c->free_reqs;
		c->free_reqs = req;
		c->first = (c->first + 1) % c->cap;
		c->used--;
		c->nwriting--;
	}
	c->last_active_ms = c->out_progress_ms = uv_now(&c->w->loop);
}

static void on_write(uv_write_t *wr, int status)
{
	struct bal_req *lead = wr->data;
	struct bal_conn *c = lead->conn;
	release_written(c, lead->wcount);
	if (c->closing)
		return;
	if (status < 0) {
		bal_conn_close(c);
		return;
	}
	bal_conn_flush(c);
}

/*
 * Writes the responses that are ready, in order. With nothing queued in
 * libuv it first tries a synchronous write (uv_try_write): a response that
 * fits in the socket buffer then needs no write request, no callback and no
 * poll-set update. Whatever the socket does not take goes to uv_write, and
 * every later response queues behind it. A response is one buffer, or two
 * when its body is sent from where it lies (`tail`). At most 4 buffers per
 * write: libuv keeps that many inline in the request and mallocs beyond it,
 * which the ingest path must not do. Returns false if the connection was
 * closed.
 */
static bool write_ready(struct bal_conn *c)
{
	uv_buf_t bufs[4];
	for (;;) {
		unsigned n = 0, nreq = 0, k = c->nwriting;
		struct bal_req *lead = NULL;
		while (k < c->used) {
			struct bal_req *req = req_at(c, k);
			if (req->state != BAL_REQ_READY || n + 1 + (req->tail != NULL) > 4)
				break;
			if (!lead)
				lead = req;
			bufs[n++] = uv_buf_init(req->inl, (unsigned)req->resp_len);
			if (req->tail)
				bufs[n++] = uv_buf_init((char *)req->tail, (unsigned)req->tail_len);
			req->state = BAL_REQ_WRITING;
			nreq++;
			k++;
		}
		if (!nreq)
			return true;
		c->nwriting += nreq;
		unsigned skip = 0;
		if (c->nwriting == nreq) {
			int r = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
			size_t done = r > 0 ? (size_t)r : 0;
			if (r < 0 && r != UV_EAGAIN) {
				bal_conn_close(c);
				return false;
			}
			while (skip < n && done >= bufs[skip].len)
				done -= bufs[skip++].len;
			if (skip == n) {
				release_written(c, nreq);
				continue;
			}
			bufs[skip].base += done;
			bufs[skip].len -= done;
		}
		/* The requests of the fully written buffers stay WRITING under this
		 * request too: on_write retires all nreq in order. */
		lead->wcount = nreq;
		lead->wreq.data = lead;
		int r = uv_write(&lead->wreq, (uv_stream_t *)&c->tcp, bufs + skip, n - skip, on_write);
		if (r) {
			/* Not queued: no callback will come. */
			bal_conn_close(c);
			return false;
		}
	}
}

void bal_conn_flush(struct bal_conn *c)
{
	if (c->closing)
		return;
	if (c->flushing) {
		/* Reached again through feed() below: the outer call loops. */
		c->flush_again = true;
		return;
	}
	c->flushing = true;
	do {
		c->flush_again = false;
		if (!write_ready(c))
			goto out;
		if (c->paused && c->used < c->cap && !c->close_after_flush &&
		    (c->used == 0 || bal_conn_held(c) < c->w->d->cfg.max_conn_memory)) {
			/* A request came free: parse what was held back. */
			c->paused = false;
			bal_http_resume(&c->http);
			size_t len = c->pending_len;
			c->pending_len = 0;
			feed(c, c->pending, len);
			if (c->closing)
				goto out;
			c->flush_again = true;
		}
	} while (c->flush_again);
	if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > c->w->d->cfg.max_output) {
		bal_log_reject("conn", "%s: closing: %zu response bytes unread (--max-output %zu)", c->peer,
		               uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp), c->w->d->cfg.max_output);
		BAL_METRIC_ADD(c->w->d->metrics.connections_closed[BAL_CLOSE_MAX_OUTPUT], 1);
		bal_conn_close(c);
		goto out;
	}
	if (c->close_after_flush && c->used == 0)
		bal_conn_close(c);
out:
	c->flushing = false;
}

void bal_conn_job_prefetch(const struct bal_job *job)
{
	const struct bal_req *req = job->owner;
	__builtin_prefetch(req);       /* state, conn */
	__builtin_prefetch(req->conn); /* the connection's head: refs, flags */
	__builtin_prefetch(&req->conn->reqs);
}

void bal_conn_job_done(struct bal_job *job)
{
	struct bal_req *req = job->owner;
	struct bal_conn *c = req->conn;
	bal_require(req->state == BAL_REQ_QUEUED);
	body_release(c, req);
	if (c->closing) {
		req->state = BAL_REQ_FREE; /* nobody to answer; the batch's fate is in the journal */
	} else {
		bal_ingest_finish(req);
		bal_conn_flush(c);
	}
	unref(c);
}

/* ---- HTTP hooks ------------------------------------------------------------ */

/* Takes the next request of the ring, allocating it on first use. */
static struct bal_req *req_take(struct bal_conn *c)
{
	struct bal_daemon *d = c->w->d;
	if (!c->reqs) {
		c->cap = d->cfg.max_pipeline;
		c->reqs = calloc(c->cap, sizeof(*c->reqs));
		if (!c->reqs)
			return NULL;
	}
	bal_require(c->used < c->cap); /* parsing pauses when every request is in use */
	unsigned i = (c->first + c->used) % c->cap;
	if (!c->reqs[i] && c->free_reqs) {
		c->reqs[i] = c->free_reqs;
		c->free_reqs = c->free_reqs->next_free;
	} else if (!c->reqs[i]) {
		/* Requests are allocated one by one: an uploader that never
		 * pipelines costs one, not max_pipeline of them. */
		c->reqs[i] = calloc(1, sizeof(struct bal_req));
		if (!c->reqs[i])
			return NULL;
		c->reqs[i]->conn = c;
	}
	struct bal_req *req = c->reqs[i];
	bal_require(req->state == BAL_REQ_FREE);
	c->used++;
	req->state = BAL_REQ_RECV;
	req->body_len = 0;
	req->discard = false;
	req->accept_protobuf = false;
	return req;
}

static int hook_begin(void *ctx)
{
	struct bal_conn *c = ctx;
	if (!req_take(c)) {
		bal_http_fail(&c->http, 503, "out of memory");
		return 503;
	}
	c->msg_start_ms = c->last_active_ms = uv_now(&c->w->loop);
	return 0;
}

static struct bal_req *current(struct bal_conn *c)
{
	return req_at(c, c->used - 1);
}

/* Whether `head` is a POST of `path`, with or without a query string. */
static bool is_post(const struct bal_http_req *head, const char *path, size_t len)
{
	return head->method == HTTP_POST && strncmp(head->url, path, len) == 0 &&
	       (head->url[len] == '\0' || head->url[len] == '?');
}

static bool is_batch_post(const struct bal_http_req *head)
{
	return is_post(head, "/v1/batches", 11);
}

static bool is_amendment_post(const struct bal_http_req *head)
{
	return is_post(head, "/v1/amendments", 14);
}

/* The requests whose body anyone reads: they go to the journal. */
static bool is_journal_post(const struct bal_http_req *head)
{
	return is_batch_post(head) || is_amendment_post(head);
}

/*
 * Makes room for `need` body bytes (at most cfg.max_body), doubling. Beyond
 * cfg.max_client_memory, or if malloc fails, the body is dropped instead
 * (`discard`: read, not kept, answered 503).
 */
static void body_grow(struct bal_conn *c, struct bal_req *req, size_t need)
{
	const struct bal_config *cfg = &c->w->d->cfg;
	size_t cap = req->body_cap ? req->body_cap : 1024;
	while (cap < need)
		cap *= 2;
	if (cap > cfg->max_body)
		cap = cfg->max_body;
	uint64_t held = __atomic_load_n(&c->w->d->client_memory, __ATOMIC_RELAXED);
	uint8_t *nb = held + (cap - req->body_cap) > cfg->max_client_memory ? NULL : realloc(req->body, cap);
	if (nb) {
		mem_add(c, cap - req->body_cap);
		req->body = nb;
		req->body_cap = cap;
		return;
	}
	size_t len = req->body_len;
	body_release(c, req);
	req->body_len = len;
	req->discard = true;
}

static int hook_headers(void *ctx, const struct bal_http_req *head)
{
	struct bal_conn *c = ctx;
	struct bal_daemon *d = c->w->d;
	struct bal_req *req = current(c);
	req->accept_protobuf = head->accept_protobuf;
	if (head->content_length != UINT64_MAX && head->content_length > d->cfg.max_body) {
		bal_http_fail(&c->http, 413, "body of %llu bytes exceeds the limit of %zu bytes (--max-body)",
		              (unsigned long long)head->content_length, d->cfg.max_body);
		return 413;
	}
	/* Only the body of a batch or an amendment is read by anyone. One beyond
	 * what the daemon holds for its clients is read and dropped, then
	 * answered 503. Its room is taken as its bytes come (hook_body), not on
	 * the word of its Content-Length: a client would reserve memory with a
	 * few header bytes. */
	uint64_t held = __atomic_load_n(&d->client_memory, __ATOMIC_RELAXED);
	uint64_t need = head->content_length != UINT64_MAX ? head->content_length : 0;
	req->discard = !is_journal_post(head) || held + need > d->cfg.max_client_memory;
	if (head->expect_continue && c->used == 1 && is_journal_post(head) && !req->discard) {
		/* Only when no earlier response is pending, or it would jump the queue. */
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
		uv_buf_t b = uv_buf_init((char *)cont, sizeof(cont) - 1);
		(void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
	}
	return 0;
}

static int hook_body(void *ctx, const char *at, size_t n)
{
	struct bal_conn *c = ctx;
	struct bal_daemon *d = c->w->d;
	struct bal_req *req = current(c);
	if (req->body_len + n > d->cfg.max_body) {
		bal_http_fail(&c->http, 413, "body exceeds the limit of %zu bytes (--max-body)", d->cfg.max_body);
		return 413;
	}
	if (!req->discard && req->body_len + n > req->body_cap)
		body_grow(c, req, req->body_len + n);
	if (!req->discard)
		memcpy(req->body + req->body_len, at, n);
	req->body_len += n;
	return 0;
}

static int hook_complete(void *ctx, const struct bal_http_req *head)
{
	struct bal_conn *c = ctx;
	struct bal_req *req = current(c);
	c->msg_start_ms = 0;
	if (!head->keep_alive)
		c->close_after_flush = true;
	if (is_batch_post(head))
		bal_ingest_request(req);
	else if (is_amendment_post(head))
		bal_ingest_amendment(req);
	else
		bal_query_request(req, head);
	if (req->state != BAL_REQ_QUEUED)
		body_release(c, req); /* answered: nobody reads the body again */
	/* Stop parsing when every request is in use, or when the connection ends
	 * here, or holds as much as it may: the next request waits for answers
	 * to be written. */
	if (c->used == c->cap || c->close_after_flush)
		return 1;
	if (bal_conn_held(c) >= c->w->d->cfg.max_conn_memory) {
		BAL_METRIC_ADD(c->w->d->metrics.connection_memory_pauses, 1);
		return 1;
	}
	return 0;
}

static const struct bal_http_hooks hooks = {
        .on_begin = hook_begin,
        .on_headers = hook_headers,
        .on_body = hook_body,
        .on_complete = hook_complete,
};

/* Answers a broken stream with its status in a request of its own, then closes. */
static void stream_error(struct bal_conn *c)
{
	struct bal_http *h = &c->http;
	struct bal_req *req;
	if (c->used && req_at(c, c->used - 1)->state == BAL_REQ_RECV) {
		req = req_at(c, c->used - 1);
	} else if (c->used < (c->reqs ? c->cap : 1)) {
		req = req_take(c);
		if (!req) {
			bal_conn_close(c);
			return;
		}
	} else {
		bal_conn_close(c);
		return;
	}
	c->msg_start_ms = 0;
	c->close_after_flush = true;
	body_release(c, req);
	bal_log_reject("http", "%s: %d %s", c->peer, h->error_status, h->error_why);
	char why[sizeof(h->error_why) * 6], body[sizeof(why) + 64];
	bal_text_json_escape(why, sizeof(why), h->error_why);
	int n = snprintf(body, sizeof(body), "{\"status\":\"REJECTED\",\"position\":0,\"error\":\"%s\"}", why);
	if (n < 0 || (size_t)n >= sizeof(body))
		n = (int)strlen(body);
	if (h->error_status == 413 || h->error_status == 400)
		BAL_METRIC_ADD(c->w->d->metrics.batches_rejected, 1);
	bal_req_respond(req, h->error_status, "application/json", NULL, body, (size_t)n);
	bal_conn_flush(c);
}

static void read_stop(struct bal_conn *c)
{
	if (c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = false;
	}
}

void bal_conn_refused(struct bal_conn *c)
{
	struct bal_daemon *d = c->w->d;
	if (++c->failures < d->cfg.max_failures || c->close_after_flush || c->closing)
		return;
	bal_log_reject("conn", "%s: closing after %u refused batches (--max-failures-per-connection %u)", c->peer,
	               c->failures, d->cfg.max_failures);
	BAL_METRIC_ADD(d->metrics.connections_closed[BAL_CLOSE_FAILURES], 1);
	c->close_after_flush = true;
	read_stop(c);
}

static void feed(struct bal_conn *c, const char *data, size_t n)
{
	size_t used = bal_http_feed(&c->http, data, n);
	if (c->closing)
		return;
	if (c->http.error_status) {
		read_stop(c);
		stream_error(c);
		return;
	}
	if (c->close_after_flush) {
		/* Connection: close, or the failure budget spent: whatever follows is ignored. */
		read_stop(c);
		bal_conn_flush(c);
		return;
	}
	if (c->http.paused) {
		size_t rest = n - used;
		c->paused = true;
		if (rest) {
			if (rest > c->pending_cap) {
				char *p = realloc(c->pending, rest);
				if (!p) {
					bal_conn_close(c);
					return;
				}
				mem_add(c, rest - c->pending_cap);
				c->pending = p;
				c->pending_cap = rest;
			}
			memmove(c->pending, data + used, rest);
		}
		c->pending_len = rest;
		read_stop(c);
		bal_conn_flush(c);
		return;
	}
	bal_conn_flush(c);
	if (!c->reading && !c->closing)
		read_start(c);
}

/* ---- reading ---------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct bal_conn *c = h->data;
	/* Parsing is synchronous in on_read, so one buffer serves every connection. */
	buf->base = c->w->rbuf;
	buf->len = sizeof(c->w->rbuf);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct bal_conn *c = st->data;
	if (nread == 0)
		return;
	if (nread < 0) {
		if (nread == UV_EOF && c->used > 0) {
			/* Half-close: the client may still read what we owe it. A
			 * request not whole yet never will be, and its body goes: the
			 * parser refuses its end of input (400). */
			read_stop(c);
			c->close_after_flush = true;
			if (req_at(c, c->used - 1)->state == BAL_REQ_RECV)
				feed(c, NULL, 0);
			else
				bal_conn_flush(c);
		} else {
			bal_conn_close(c);
		}
		return;
	}
	/* Not counted as activity here: http-parser skips blank lines before a
	 * request line without starting a message, so a client trickling CRLFs
	 * would otherwise never be idle nor mid-request (slowloris). Activity is
	 * a request begun (hook_begin) or a response written (on_write). */
	feed(c, buf->base, (size_t)nread);
}

static void read_start(struct bal_conn *c)
{
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
		c->reading = true;
	else
		bal_conn_close(c);
}

void bal_conn_accept(struct bal_worker *w)
{
	struct bal_daemon *d = w->d;
	struct bal_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return;
	uv_tcp_init(&w->loop, &c->tcp);
	c->tcp.data = c;
	c->w = w;
	c->refs = 1;
	if (uv_accept((uv_stream_t *)&w->listener, (uv_stream_t *)&c->tcp) != 0) {
		uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
		return;
	}
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	w->nconns++;
	BAL_METRIC_ADD(d->metrics.connections_open, 1);
	BAL_METRIC_ADD(d->metrics.connections_total, 1);
	struct sockaddr_storage sa;
	int salen = sizeof(sa);
	strcpy(c->peer, "?");
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &salen) == 0) {
		char ip[48] = "?";
		if (sa.ss_family == AF_INET) {
			uv_ip4_name((struct sockaddr_in *)&sa, ip, sizeof(ip));
			snprintf(c->peer, sizeof(c->peer), "%s:%d", ip, ntohs(((struct sockaddr_in *)&sa)->sin_port));
		} else if (sa.ss_family == AF_INET6) {
			uv_ip6_name((struct sockaddr_in6 *)&sa, ip, sizeof(ip));
			snprintf(c->peer, sizeof(c->peer), "[%s]:%d", ip,
			         ntohs(((struct sockaddr_in6 *)&sa)->sin6_port));
		}
	}
	unsigned total = (unsigned)BAL_METRIC_GET(d->metrics.connections_open);
	if (total > d->cfg.max_connections) {
		BAL_METRIC_ADD(d->metrics.connections_refused, 1);
		bal_log_reject("conn", "%s: refused: %u connections open (--max-connections %u)", c->peer, total - 1,
		               d->cfg.max_connections);
		bal_conn_close(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	c->last_active_ms = uv_now(&w->loop);
	bal_http_init(&c->http, &hooks, c, d->cfg.max_header);
	read_start(c);
}

/*
 * Whether the connection has owed output for longer than `timeout` ms with
 * none of it taken by its client. Progress is a write completed
 * (release_written()) or libuv's write queue shorter than at the previous
 * sweep; a new write queued meanwhile may hide one sweep's progress.
 */
static bool output_stalled(struct bal_conn *c, uint64_t now, unsigned timeout)
{
	if (!c->nwriting) {
		c->out_progress_ms = now;
		c->out_seen = 0;
		return false;
	}
	size_t q = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
	if (q < c->out_seen)
		c->out_progress_ms = now;
	c->out_seen = q;
	return now - c->out_progress_ms > timeout;
}

void bal_conn_sweep(struct bal_worker *w, uint64_t now)
{
	const struct bal_config *cfg = &w->d->cfg;
	struct bal_conn *c = w->conns;
	while (c) {
		struct bal_conn *next = c->next;
		if (!c->closing) {
			if (c->msg_start_ms && now - c->msg_start_ms > cfg->request_timeout_ms) {
				bal_log_reject("conn",
				               "%s: closing: request not complete after %u ms (--request-timeout)",
				               c->peer, cfg->request_timeout_ms);
				BAL_METRIC_ADD(w->d->metrics.connections_closed[BAL_CLOSE_REQUEST_TIMEOUT], 1);
				bal_conn_close(c);
			} else if (!c->msg_start_ms && c->used == 0 && now - c->last_active_ms > cfg->idle_timeout_ms) {
				bal_conn_close(c);
			} else if (output_stalled(c, now, cfg->send_timeout_ms)) {
				bal_log_reject("conn",
				               "%s: closing: %zu response bytes not read for %u ms (--send-timeout), "
				               "%zu bytes held",
				               c->peer, c->out_seen, cfg->send_timeout_ms, bal_conn_held(c));
				BAL_METRIC_ADD(w->d->metrics.connections_closed[BAL_CLOSE_SEND_TIMEOUT], 1);
				bal_conn_close(c);
			}
		}
		c = next;
	}
}
