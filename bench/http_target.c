/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ballotd as a bench target: one uv_tcp_t per connection (bound to its
 * source address first when there is one, with IP_BIND_ADDRESS_NO_PORT so
 * the port is picked per destination at connect time), requests written
 * with uv_try_write and, for what the socket did not take, uv_write.
 * Answers are parsed with http-parser (client/resp.h) and the BatchAck body
 * decoded by hand (three fields), so the read path allocates nothing.
 *
 * Per worker: one 64 KiB read buffer (answers are parsed inside the read
 * callback, so connections can share it) and a free list of write buffers
 * that grows only while more writes are pending than ever before.
 *
 * Depends on libuv, http-parser (client/resp.h) and bench/loadgen.h.
 */
#include "bench/targets.h"

#include "client/resp.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define RBUF_SIZE 65536
#define WBUF_MIN  65536
#define ACK_BODY  128

struct wbuf {
	uv_write_t req;
	struct wbuf *next;
	size_t cap;
	uint8_t data[];
};

struct hworker {
	struct bench_work *work;
	size_t wcap;
	struct wbuf *free;
	char rbuf[RBUF_SIZE];
};

struct hconn {
	struct bench_conn *c;
	uv_tcp_t tcp;
	uv_connect_t creq;
	bool open, want_close;
	struct bal_resp resp;
	char body[ACK_BODY];
};

static int hworker_init(void *cfg, struct bench_work *w, void **wpriv)
{
	struct hworker *hw = calloc(1, sizeof(*hw));
	if (!hw)
		return -ENOMEM;
	hw->work = w;
	hw->wcap = bench_work_http_max(w) > WBUF_MIN ? bench_work_http_max(w) : WBUF_MIN;
	*wpriv = hw;
	return 0;
}

static void hworker_deinit(void *wpriv)
{
	struct hworker *hw = wpriv;
	while (hw->free) {
		struct wbuf *b = hw->free;
		hw->free = b->next;
		free(b);
	}
	free(hw);
}

static struct wbuf *wbuf_get(struct hworker *hw)
{
	struct wbuf *b = hw->free;
	if (b) {
		hw->free = b->next;
		return b;
	}
	b = malloc(sizeof(*b) + hw->wcap);
	if (b)
		b->cap = hw->wcap;
	return b;
}

static void wbuf_put(struct hworker *hw, struct wbuf *b)
{
	b->next = hw->free;
	hw->free = b;
}

/* BatchAck: 1 status (varint), 2 position (varint), 3 error (string). */
static bool read_varint(const uint8_t *p, size_t n, size_t *i, uint64_t *v)
{
	*v = 0;
	for (unsigned shift = 0; *i < n && shift < 64; shift += 7) {
		uint8_t b = p[(*i)++];
		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return true;
	}
	return false;
}

static int ack_status(const uint8_t *p, size_t n)
{
	int status = 0;
	size_t i = 0;
	while (i < n) {
		uint64_t key, v;
		if (!read_varint(p, n, &i, &key))
			return -1;
		switch (key & 7) {
		case 0:
			if (!read_varint(p, n, &i, &v))
				return -1;
			if (key >> 3 == 1)
				status = (int)v;
			break;
		case 2:
			if (!read_varint(p, n, &i, &v))
				return -1;
			/* The buffer keeps the head of the ack: an error text or a
			 * receipt (fields 3, 4, after the status) may run past it. */
			if (v > n - i)
				return key >> 3 == 3 || key >> 3 == 4 ? status : -1;
			i += v;
			break;
		default: return -1;
		}
	}
	return status;
}

static int on_response(struct bal_resp *r)
{
	struct hconn *h = r->ud;
	if (!http_should_keep_alive(&r->parser))
		h->want_close = true;
	if (r->status != 200) {
		char cls[16];
		snprintf(cls, sizeof(cls), "%d", r->status);
		bench_conn_answer(h->c, BENCH_FAIL, cls);
		return 0;
	}
	/* The error text of a REJECTED ack or the receipt of an ACCEPTED one may
	 * not fit the body buffer; the status comes first. */
	int st = bal_resp_is_protobuf(r) ? ack_status((const uint8_t *)r->body, r->len) : -1;
	if (st == 0)
		bench_conn_answer(h->c, BENCH_NEW, NULL);
	else if (st == 1)
		bench_conn_answer(h->c, BENCH_DUP, NULL);
	else
		bench_conn_answer(h->c, BENCH_FAIL, st == 2 ? "rejected" : "bad_ack");
	return 0;
}

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
	struct hconn *h = hd->data;
	struct hworker *hw = bench_conn_wpriv(h->c);
	buf->base = hw->rbuf;
	buf->len = sizeof(hw->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct hconn *h = s->data;
	if (!h->open || nread == 0)
		return;
	char why[256];
	if (nread < 0) {
		snprintf(why, sizeof(why), "%s",
		         nread == UV_EOF ? "the server closed the connection" : uv_strerror((int)nread));
		h->open = false;
		bench_conn_lost(h->c, why);
		return;
	}
	char perr[160];
	if (bal_resp_feed(&h->resp, buf->base, (size_t)nread, perr, sizeof(perr)) < 0) {
		snprintf(why, sizeof(why), "bad HTTP answer: %s", perr);
		h->open = false;
		bench_conn_lost(h->c, why);
		return;
	}
	if (h->want_close) {
		h->open = false;
		bench_conn_lost(h->c, "the server closed the connection (Connection: close)");
	}
}

static void on_write(uv_write_t *req, int status)
{
	struct wbuf *b = (struct wbuf *)req;
	struct hconn *h = req->data;
	struct hworker *hw = bench_conn_wpriv(h->c);
	wbuf_put(hw, b);
	if (status < 0 && status != UV_ECANCELED && h->open) {
		char why[128];
		snprintf(why, sizeof(why), "write: %s", uv_strerror(status));
		h->open = false;
		bench_conn_lost(h->c, why);
	}
}

static bool flush(struct hconn *h, struct wbuf *b, size_t len)
{
	struct hworker *hw = bench_conn_wpriv(h->c);
	uv_buf_t ub = uv_buf_init((char *)b->data, (unsigned)len);
	int n = uv_try_write((uv_stream_t *)&h->tcp, &ub, 1);
	if (n == (int)len) {
		wbuf_put(hw, b);
		return true;
	}
	if (n < 0 && n != UV_EAGAIN) {
		wbuf_put(hw, b);
		char why[128];
		snprintf(why, sizeof(why), "write: %s", uv_strerror(n));
		h->open = false;
		bench_conn_lost(h->c, why);
		return false;
	}
	size_t off = n > 0 ? (size_t)n : 0;
	ub = uv_buf_init((char *)b->data + off, (unsigned)(len - off));
	b->req.data = h;
	int rc = uv_write(&b->req, (uv_stream_t *)&h->tcp, &ub, 1, on_write);
	if (rc < 0) {
		wbuf_put(hw, b);
		char why[128];
		snprintf(why, sizeof(why), "write: %s", uv_strerror(rc));
		h->open = false;
		bench_conn_lost(h->c, why);
		return false;
	}
	return true;
}

static void hsend(struct bench_conn *c, uint32_t n)
{
	struct hconn *h = bench_conn_priv(c);
	struct hworker *hw = bench_conn_wpriv(c);
	size_t max = bench_work_http_max(hw->work);
	while (n && h->open) {
		struct wbuf *b = wbuf_get(hw);
		if (!b) {
			h->open = false;
			bench_conn_lost(c, "out of memory for a write buffer");
			return;
		}
		size_t len = 0;
		for (; n && len + max <= b->cap; n--) {
			uint32_t p;
			uint64_t seq;
			bench_conn_next(c, &p, &seq);
			len += bench_work_http(hw->work, p, seq, b->data + len);
		}
		bench_conn_wrote(c, len);
		flush(h, b, len);
	}
}

static void on_connect(uv_connect_t *req, int status)
{
	struct hconn *h = req->data;
	if (status == UV_ECANCELED)
		return;
	char why[256];
	if (status < 0) {
		snprintf(why, sizeof(why), "connect: %s", uv_strerror(status));
		bench_conn_lost(h->c, why);
		return;
	}
	int rc = uv_read_start((uv_stream_t *)&h->tcp, on_alloc, on_read);
	if (rc < 0) {
		snprintf(why, sizeof(why), "read: %s", uv_strerror(rc));
		bench_conn_lost(h->c, why);
		return;
	}
	h->open = true;
	bench_conn_ready(h->c);
}

static void hopen(struct bench_conn *c)
{
	struct hconn *h = bench_conn_priv(c);
	const struct sockaddr *srv = bench_conn_server(c);
	const struct sockaddr_in *src = bench_conn_source(c);
	h->c = c;
	bal_resp_init(&h->resp, h->body, sizeof(h->body), false, sizeof(h->body), on_response, h);
	int rc = uv_tcp_init_ex(bench_conn_loop(c), &h->tcp, srv->sa_family);
	char why[256];
	if (rc < 0) {
		/* No handle to close: report, and let close() know there is nothing to do. */
		snprintf(why, sizeof(why), "socket: %s", uv_strerror(rc));
		h->tcp.data = NULL;
		bench_conn_lost(c, why);
		return;
	}
	h->tcp.data = h;
	h->creq.data = h;
	uv_tcp_nodelay(&h->tcp, 1);
	if (src && srv->sa_family == AF_INET) {
		uv_os_fd_t fd;
		int one = 1;
		if (uv_fileno((uv_handle_t *)&h->tcp, &fd) == 0)
			setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		rc = uv_tcp_bind(&h->tcp, (const struct sockaddr *)src, 0);
		if (rc < 0) {
			char ip[INET_ADDRSTRLEN];
			uv_ip4_name(src, ip, sizeof(ip));
			snprintf(why, sizeof(why), "bind to source address %s: %s", ip, uv_strerror(rc));
			bench_conn_lost(c, why);
			return;
		}
	}
	rc = uv_tcp_connect(&h->creq, &h->tcp, srv, on_connect);
	if (rc < 0) {
		snprintf(why, sizeof(why), "connect: %s", uv_strerror(rc));
		bench_conn_lost(c, why);
	}
}

static void on_close(uv_handle_t *hd)
{
	struct hconn *h = hd->data;
	bench_conn_closed(h->c);
}

static void hclose(struct bench_conn *c)
{
	struct hconn *h = bench_conn_priv(c);
	h->open = false;
	if (!h->tcp.data) {
		bench_conn_closed(c);
		return;
	}
	if (!uv_is_closing((uv_handle_t *)&h->tcp))
		uv_close((uv_handle_t *)&h->tcp, on_close);
}

const struct bench_target bench_http_target = {
        .name = "ballotd",
        .conn_priv = sizeof(struct hconn),
        .worker_init = hworker_init,
        .worker_deinit = hworker_deinit,
        .open = hopen,
        .send = hsend,
        .close = hclose,
};
