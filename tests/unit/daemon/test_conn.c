/* SPDX-License-Identifier: Apache-2.0 */
/*
 * daemon/conn.c on a real loop. Each test builds a daemon context the way
 * ballotd builds its own (tests/data/small.json, a fresh store, recovery,
 * the committer, one worker listening on 127.0.0.1 port 0), runs the
 * worker's loop on the test's thread and connects libuv clients to it on the
 * same loop. In libuv's test style a test counts its callbacks, runs the loop
 * until every handle is closed, asserts the counts, and asserts that the
 * loop then closes (bal_worker_free() returns what uv_loop_close() says).
 *
 * A uv_check handle looks at the server's side of the connection after each
 * loop iteration: that is how a test sees the parser paused, the number of
 * requests in flight and a closed connection waiting for its jobs.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "client/gen.h"
#include "daemon/conn.h"
#include "daemon/daemon.h"
#include "daemon/listen.h"
#include "daemon/log.h"
#include "daemon/recover.h"
#include "daemon/worker.h"
#include "defn/defn.h"
#include "storage/storage.h"
#include "tests/integration/harness.h"

#define MAX_RESP 32

struct resp {
	int status;
	bool close; /* Connection: close */
	char body[512];
};

/* A client on the worker's loop: what it sends, what it got, its callbacks. */
struct client {
	uv_tcp_t tcp;
	uv_connect_t connect;
	uv_write_t write;
	uv_shutdown_t shutdown;
	char out[16384];
	size_t out_len;
	bool reset_after_write; /* close with RST once the requests are written */
	char in[65536];
	size_t in_len;
	struct resp resp[MAX_RESP];
	unsigned nresp, expect; /* once `expect` responses are in, the client shuts down its side */
	/* callbacks */
	unsigned connected, written, shut, eofs, closed;
};

/* What the probe saw of the server's connection, and the test's context. */
static struct {
	struct bal_daemon d;
	struct bal_worker *w;
	char *dir;
	struct bal_gen *gen;
	uv_check_t probe;
	uv_timer_t guard;
	struct client cl;
	const char *inject_why; /* a stream error to set on the connection once it exists */
	bool injected, stopping;
	unsigned paused_seen, closing_with_jobs, max_used;
	uint64_t http[6]; /* the worker's responses by status class, kept when it is freed */
} fx;

static void on_guard(uv_timer_t *t)
{
	(void)t;
	cr_assert_fail("the loop did not finish in 10 s");
}

/* Once the client has closed and the server has freed its side: the hard
 * stop closes the worker's handles, and the loop ends. Checked where either
 * can happen last: the client's close callback, and the probe (a connection
 * freed when its last job comes back). */
static void stop_when_done(void)
{
	if (fx.stopping || !fx.cl.closed || fx.w->nconns)
		return;
	fx.stopping = true;
	uv_close((uv_handle_t *)&fx.probe, NULL);
	uv_close((uv_handle_t *)&fx.guard, NULL);
	bal_worker_signal_stop(fx.w, true);
}

static void on_client_write(uv_write_t *req, int status);

static void on_probe(uv_check_t *h)
{
	(void)h;
	const struct bal_conn *c = fx.w->conns;
	if (c) {
		if (c->used > fx.max_used)
			fx.max_used = c->used;
		if (c->paused && !c->reading)
			fx.paused_seen++;
		if (c->closing && c->refs > 1)
			fx.closing_with_jobs++;
		if (fx.inject_why && !fx.injected) {
			/* No input makes http.c's reasons echo the client's bytes, so
			 * the reason is set the way a hook sets one, and the next
			 * bytes read find the stream broken. */
			fx.injected = true;
			bal_http_fail(&fx.w->conns->http, 400, "%s", fx.inject_why);
			uv_buf_t b = uv_buf_init(fx.cl.out, (unsigned)fx.cl.out_len);
			cr_assert_eq(uv_write(&fx.cl.write, (uv_stream_t *)&fx.cl.tcp, &b, 1, on_client_write), 0);
		}
	}
	stop_when_done();
}

/* Takes the complete responses off the front of what was read. */
static void parse_responses(struct client *cl)
{
	for (;;) {
		cl->in[cl->in_len] = '\0';
		char *end = strstr(cl->in, "\r\n\r\n");
		if (!end)
			return;
		size_t head = (size_t)(end + 4 - cl->in);
		const char *cl_at = strstr(cl->in, "\r\nContent-Length: ");
		cr_assert(cl_at && cl_at < end, "no Content-Length in %.*s", (int)head, cl->in);
		size_t len = strtoul(cl_at + 18, NULL, 10);
		if (cl->in_len < head + len)
			return;
		cr_assert_lt(cl->nresp, MAX_RESP);
		cr_assert_lt(len, sizeof(cl->resp[0].body));
		struct resp *r = &cl->resp[cl->nresp++];
		cr_assert_eq(sscanf(cl->in, "HTTP/1.1 %d ", &r->status), 1, "%.*s", (int)head, cl->in);
		const char *close_at = strstr(cl->in, "\r\nConnection: close\r\n");
		r->close = close_at && close_at < end;
		memcpy(r->body, cl->in + head, len);
		r->body[len] = '\0';
		memmove(cl->in, cl->in + head + len, cl->in_len - head - len);
		cl->in_len -= head + len;
	}
}

static void on_client_shutdown(uv_shutdown_t *req, int status)
{
	struct client *cl = req->handle->data;
	cr_assert_eq(status, 0, "client shutdown: %s", uv_strerror(status));
	cl->shut++;
}

static void on_client_close(uv_handle_t *h)
{
	struct client *cl = h->data;
	cl->closed++;
	stop_when_done();
}

static void on_client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct client *cl = h->data;
	(void)suggested;
	*buf = uv_buf_init(cl->in + cl->in_len, (unsigned)(sizeof(cl->in) - 1 - cl->in_len));
}

static void on_client_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct client *cl = st->data;
	(void)buf;
	if (nread == UV_EOF) {
		cl->eofs++;
		uv_close((uv_handle_t *)st, on_client_close);
		return;
	}
	cr_assert_geq(nread, 0, "client read: %s", uv_strerror((int)nread));
	cl->in_len += (size_t)nread;
	unsigned before = cl->nresp;
	parse_responses(cl);
	if (cl->expect && before < cl->expect && cl->nresp >= cl->expect)
		cr_assert_eq(uv_shutdown(&cl->shutdown, st, on_client_shutdown), 0);
}

static void on_client_write(uv_write_t *req, int status)
{
	struct client *cl = req->handle->data;
	cr_assert_eq(status, 0, "client write: %s", uv_strerror(status));
	cl->written++;
	if (cl->reset_after_write)
		cr_assert_eq(uv_tcp_close_reset(&cl->tcp, on_client_close), 0);
}

static void on_client_connect(uv_connect_t *req, int status)
{
	struct client *cl = req->handle->data;
	cr_assert_eq(status, 0, "connect: %s", uv_strerror(status));
	cl->connected++;
	cr_assert_eq(uv_read_start((uv_stream_t *)&cl->tcp, on_client_alloc, on_client_read), 0);
	if (fx.inject_why)
		return; /* the probe writes once the server side exists */
	uv_buf_t b = uv_buf_init(cl->out, (unsigned)cl->out_len);
	cr_assert_eq(uv_write(&cl->write, (uv_stream_t *)&cl->tcp, &b, 1, on_client_write), 0);
}

static void add_post(struct client *cl, uint32_t precinct, uint64_t seq)
{
	char why[256];
	const uint8_t *body;
	size_t len;
	cr_assert_eq(bal_gen_batch(fx.gen, precinct, seq, NULL, &body, &len, why, sizeof(why)), 0, "%s", why);
	int n = snprintf(cl->out + cl->out_len, sizeof(cl->out) - cl->out_len,
	                 "POST /v1/batches HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-protobuf\r\n"
	                 "Content-Length: %zu\r\n\r\n",
	                 len);
	cr_assert(n > 0 && cl->out_len + (size_t)n + len < sizeof(cl->out));
	cl->out_len += (size_t)n;
	memcpy(cl->out + cl->out_len, body, len);
	cl->out_len += len;
}

static void add_get(struct client *cl, const char *path)
{
	int n = snprintf(cl->out + cl->out_len, sizeof(cl->out) - cl->out_len, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n",
	                 path);
	cr_assert(n > 0 && cl->out_len + (size_t)n < sizeof(cl->out));
	cl->out_len += (size_t)n;
}

/* The daemon context and its worker, as ballotd's main() builds them, with one client. */
static void start(unsigned max_pipeline, unsigned group_max)
{
	struct bal_daemon *d = &fx.d;
	char why[512] = "";
	bal_log_min = BAL_LOG_WARN;
	bal_config_defaults(&d->cfg);
	fx.dir = th_tmpdir();
	cr_assert(fx.dir);
	d->cfg.data_dir = fx.dir;
	d->cfg.map_size = (size_t)64 << 20;
	d->cfg.threads = 1;
	d->cfg.auth = false;
	d->cfg.max_pipeline = max_pipeline;
	d->cfg.group_max = group_max;
	cr_assert_eq(bal_defn_load(BAL_TEST_SOURCE_DIR "/tests/data/small.json", &d->defn, why, sizeof(why)), 0, "%s",
	             why);
	d->layout = bal_layout_new(d->defn);
	cr_assert(d->layout);
	cr_assert_eq(bal_daemon_open_store(d), 0);
	uint64_t *ctr, position;
	cr_assert_eq(bal_recover(d, &ctr, &position), 0);
	cr_assert_eq(bal_daemon_start_committer(d, ctr, position), 0);
	free(ctr);
	int fd;
	cr_assert_eq(bal_listen_open("127.0.0.1", 0, 1, &fd, &d->bound_port, why, sizeof(why)), 0, "%s", why);
	d->workers = calloc(1, sizeof(*d->workers));
	cr_assert(d->workers);
	cr_assert_eq(bal_worker_new(d, 0, fd, &d->workers[0]), 0);
	fx.w = d->workers[0];

	struct bal_gen_opts go = {.seed = 11, .batch_size = 5, .kind = BAL_KIND_BALLOTS};
	cr_assert_eq(bal_gen_new(d->defn, &go, &fx.gen, why, sizeof(why)), 0, "%s", why);

	uv_check_init(&fx.w->loop, &fx.probe);
	uv_check_start(&fx.probe, on_probe);
	uv_unref((uv_handle_t *)&fx.probe);
	uv_timer_init(&fx.w->loop, &fx.guard);
	uv_timer_start(&fx.guard, on_guard, 10000, 0);
	uv_unref((uv_handle_t *)&fx.guard);

	struct client *cl = &fx.cl;
	cr_assert_eq(uv_tcp_init(&fx.w->loop, &cl->tcp), 0);
	cl->tcp.data = cl;
}

/* Connects the client, runs the loop until every handle is closed, and closes it. */
static void run(void)
{
	struct sockaddr_in sa;
	uv_ip4_addr("127.0.0.1", (int)fx.d.bound_port, &sa);
	cr_assert_eq(uv_tcp_connect(&fx.cl.connect, &fx.cl.tcp, (const struct sockaddr *)&sa, on_client_connect), 0);
	cr_assert_eq(uv_run(&fx.w->loop, UV_RUN_DEFAULT), 0);
	cr_assert_eq(fx.cl.connected, 1);
	cr_assert_eq(fx.cl.closed, 1);
	cr_assert_eq(fx.w->nconns, 0);
	cr_assert_eq(BAL_METRIC_GET(fx.d.metrics.connections_total), 1);
	cr_assert_eq(BAL_METRIC_GET(fx.d.metrics.connections_open), 0, "the connection was freed");
	for (int i = 0; i < 6; i++)
		fx.http[i] = bal_worker_http_count(fx.w, i);
	cr_assert_eq(bal_worker_free(fx.w), 0, "uv_loop_close(): every handle and request is closed");
	fx.w = fx.d.workers[0] = NULL;
	cr_assert_eq(__atomic_load_n(&fx.d.inflight, __ATOMIC_RELAXED), 0);
}

static void cleanup(void)
{
	struct bal_daemon *d = &fx.d;
	bal_gen_free(fx.gen); /* it borrows the definition */
	bal_committer_stop(d->committer);
	bal_pub_deinit(&d->pub);
	bal_daemon_close_store(d);
	bal_layout_free(d->layout);
	bal_defn_free(d->defn);
	free(d->workers);
	th_rmdir(fx.dir);
	free(fx.dir);
}

TestSuite(conn, .fini = cleanup, .timeout = 20);

/* Twelve requests in one write with room for four: POSTs wait for the
 * committer while the GETs behind them are ready at once. The parser pauses
 * with four in flight, resumes as they are answered, and the answers come
 * back in request order. */
Test(conn, pipelining_beyond_max_pipeline_pauses_and_answers_in_order)
{
	start(4, 8192);
	struct client *cl = &fx.cl;
	uint64_t seq = 0;
	for (unsigned i = 0; i < 12; i++) {
		if (i % 3 == 2) {
			char path[32];
			snprintf(path, sizeof(path), "/order/%u", i);
			add_get(cl, path);
		} else {
			add_post(cl, i % 4, ++seq);
		}
	}
	cl->expect = 12;
	run();

	cr_assert_eq(cl->written, 1);
	cr_assert_eq(cl->nresp, 12);
	cr_assert_eq(cl->shut, 1);
	cr_assert_eq(cl->eofs, 1, "the server closed after the client's EOF");
	uint64_t position = 0;
	for (unsigned i = 0; i < 12; i++) {
		const struct resp *r = &cl->resp[i];
		char want[128];
		if (i % 3 == 2) {
			snprintf(want, sizeof(want), "{\"error\":\"no such endpoint: /order/%u\"}\n", i);
			cr_assert_eq(r->status, 404, "response %u", i);
		} else {
			snprintf(want, sizeof(want), "{\"status\":\"ACCEPTED\",\"position\":%llu,\"error\":\"\"}\n",
			         (unsigned long long)++position);
			cr_assert_eq(r->status, 200, "response %u", i);
		}
		cr_assert_str_eq(r->body, want, "response %u", i);
		cr_assert(!r->close);
	}
	cr_assert_geq(fx.paused_seen, 1, "the parser paused with every request in use");
	cr_assert_eq(fx.max_used, 4, "never more than max_pipeline requests in flight");
	cr_assert_eq(BAL_METRIC_GET(fx.d.metrics.batches_accepted), 8);
	cr_assert_eq(fx.http[2], 8);
	cr_assert_eq(fx.http[4], 4);
}

/* A client that resets the connection while its batches are with the
 * committer (one batch per commit, so they come back one by one): the
 * connection closes at once but is freed only when the last job is back,
 * and every batch is still journaled. */
Test(conn, a_closed_connection_waits_for_its_jobs)
{
	start(8, 1);
	struct client *cl = &fx.cl;
	for (unsigned i = 0; i < 6; i++)
		add_post(cl, i, 1);
	cl->reset_after_write = true;
	run();

	cr_assert_eq(cl->written, 1);
	cr_assert_eq(cl->nresp, 0);
	cr_assert_geq(fx.closing_with_jobs, 1, "the connection was closed with jobs out");
	cr_assert_eq(BAL_METRIC_GET(fx.d.metrics.batches_accepted), 6);
	cr_assert_eq(bal_store_position(fx.d.store), 6);
}

/* A broken stream is answered with its reason as a JSON string, escaped. */
Test(conn, a_stream_error_reason_is_escaped_json)
{
	static const char reason[] = "bad \"quoted\" input, a back\\slash and a tab\there";
	start(4, 8192);
	struct client *cl = &fx.cl;
	fx.inject_why = reason;
	add_get(cl, "/v1/snapshot");
	run();

	cr_assert_eq(cl->written, 1);
	cr_assert_eq(cl->nresp, 1);
	cr_assert_eq(cl->eofs, 1, "the server closed after answering");
	const struct resp *r = &cl->resp[0];
	cr_assert_eq(r->status, 400);
	cr_assert(r->close);
	json_error_t err;
	json_t *v = json_loads(r->body, 0, &err);
	cr_assert(v, "not valid JSON (%s): %s", err.text, r->body);
	cr_assert_str_eq(json_string_value(json_object_get(v, "status")), "REJECTED");
	cr_assert_eq(json_integer_value(json_object_get(v, "position")), 0);
	cr_assert_str_eq(json_string_value(json_object_get(v, "error")), reason);
	json_decref(v);
	cr_assert_eq(BAL_METRIC_GET(fx.d.metrics.batches_rejected), 1);
}
