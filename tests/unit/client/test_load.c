/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests for the load engine (client/load.c) against a scripted in-process
 * HTTP server on 127.0.0.1 port 0: pipelining, ack decoding, expected-totals
 * folding, and the failure paths (503, EOF with requests in flight, refused
 * connections, silence) with and without retry mode.
 *
 * The server runs on its own thread, poll()s every connection, answers each
 * request in order with a protobuf BatchAck (ACCEPTED the first time a
 * (precinct, seq) is processed, DUPLICATE after), and misbehaves as each test
 * asks.
 */
#include "proto/codec.h"
#include "client/defgen.h"
#include "defn/defn.h"
#include "client/expect.h"
#include "client/gen.h"
#include "client/load.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CLIENTS 16
#define MAX_KEYS    4096

struct fake {
	int lfd;
	int wake[2];
	uint16_t port;
	pthread_t thread;
	atomic_bool stop;
	/* script */
	atomic_int fail503;       /* answer this many requests with 503 first */
	int close_after;          /* close a connection after this many answers (0 = never) */
	bool process_unanswered;  /* on such a close, still count the requests read but not answered */
	uint32_t reject_precinct; /* answer 422 with a JSON error for this precinct */
	bool silent;              /* read requests, never answer */
	/* observations */
	atomic_int requests, accepts;
	uint64_t seen[MAX_KEYS]; /* (precinct << 32 | seq) processed; guarded by the server thread */
	int nseen;
	bool order_ok; /* each precinct's seqs arrived in increasing order on first sight */
	uint64_t last_seq[256];
};

struct client {
	int fd;
	char buf[1 << 16];
	size_t len;
	int answered;
	bool draining; /* answered close_after requests: write side shut, reads discarded until EOF */
};

static bool seen_before(struct fake *f, uint32_t p, uint64_t s)
{
	uint64_t key = ((uint64_t)p << 32) | s;
	for (int i = 0; i < f->nseen; i++)
		if (f->seen[i] == key)
			return true;
	if (f->nseen < MAX_KEYS)
		f->seen[f->nseen++] = key;
	if (p < 256) {
		if (s <= f->last_seq[p])
			f->order_ok = false;
		f->last_seq[p] = s;
	}
	return false;
}

static void send_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
		if (w <= 0)
			return;
		c += w;
		n -= (size_t)w;
	}
}

/* Takes one complete request off the front of c->buf; -1 if incomplete. */
static int take_request(struct client *c, struct bal_batch *b, struct bal_arena *arena)
{
	char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
	if (!end)
		return -1;
	size_t hlen = (size_t)(end - c->buf) + 4;
	char *cl = memmem(c->buf, hlen, "Content-Length: ", 16);
	cr_assert_not_null(cl, "request without Content-Length");
	size_t blen = strtoul(cl + 16, NULL, 10);
	if (c->len < hlen + blen)
		return -1;
	char why[128] = "";
	cr_assert_eq(bal_codec_decode((uint8_t *)c->buf + hlen, blen, arena, b, why, sizeof(why)), 0, "%s", why);
	memmove(c->buf, c->buf + hlen + blen, c->len - hlen - blen);
	c->len -= hlen + blen;
	return 0;
}

static void answer(struct fake *f, struct client *c, const struct bal_batch *b)
{
	char out[512];
	int n;
	if (atomic_load(&f->fail503) > 0) {
		atomic_fetch_sub(&f->fail503, 1);
		n = snprintf(out, sizeof(out),
		             "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\n"
		             "Content-Length: 17\r\n\r\ncommit queue full");
		send_all(c->fd, out, (size_t)n);
		return;
	}
	if (f->reject_precinct && b->precinct_id == f->reject_precinct) {
		const char *body = "{\"error\": \"precinct 3: rejected by the test server\"}";
		n = snprintf(out, sizeof(out),
		             "HTTP/1.1 422 Unprocessable Entity\r\nContent-Type: application/json\r\n"
		             "Content-Length: %zu\r\n\r\n%s",
		             strlen(body), body);
		send_all(c->fd, out, (size_t)n);
		return;
	}
	bool dup = seen_before(f, b->precinct_id, b->seq);
	if (!dup)
		atomic_fetch_add(&f->accepts, 1);
	uint8_t ack[64];
	size_t alen = bal_codec_ack_pack(dup ? BAL_ACK_DUPLICATE : BAL_ACK_ACCEPTED, (uint64_t)f->nseen, NULL, ack);
	n = snprintf(out, sizeof(out),
	             "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: %zu\r\n\r\n", alen);
	memcpy(out + n, ack, alen);
	send_all(c->fd, out, (size_t)n + alen);
}

static void *serve(void *arg)
{
	struct fake *f = arg;
	struct client *clients = calloc(MAX_CLIENTS, sizeof(*clients));
	int nclients = 0;
	struct bal_arena arena;
	bal_arena_init(&arena, 0);
	while (!atomic_load(&f->stop)) {
		struct pollfd pfd[MAX_CLIENTS + 2];
		pfd[0] = (struct pollfd){.fd = f->lfd, .events = POLLIN};
		pfd[1] = (struct pollfd){.fd = f->wake[0], .events = POLLIN};
		for (int i = 0; i < nclients; i++)
			pfd[i + 2] = (struct pollfd){.fd = clients[i].fd, .events = POLLIN};
		if (poll(pfd, (nfds_t)nclients + 2, 1000) <= 0)
			continue;
		if ((pfd[0].revents & POLLIN) && nclients < MAX_CLIENTS) {
			int fd = accept(f->lfd, NULL, NULL);
			if (fd >= 0) {
				memset(&clients[nclients], 0, sizeof(clients[nclients]));
				clients[nclients++].fd = fd;
			}
		}
		for (int i = 0; i < nclients; i++) {
			if (!(pfd[i + 2].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			struct client *c = &clients[i];
			ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
			bool closing = r <= 0;
			if (r > 0)
				c->len += (size_t)r;
			struct bal_batch b;
			while (!closing && take_request(c, &b, &arena) == 0) {
				atomic_fetch_add(&f->requests, 1);
				if (c->draining) {
					/* read but never answered: a crash after processing, or before */
					if (f->process_unanswered)
						seen_before(f, b.precinct_id, b.seq);
				} else if (!f->silent) {
					answer(f, c, &b);
				}
				bal_arena_reset(&arena);
				if (f->close_after && !c->draining && ++c->answered >= f->close_after) {
					/* Graceful: the answers already sent arrive, then EOF. */
					shutdown(c->fd, SHUT_WR);
					c->draining = true;
				}
			}
			if (closing) {
				close(c->fd);
				clients[i] = clients[--nclients];
				pfd[i + 2] = pfd[nclients + 2];
				i--;
			}
		}
	}
	for (int i = 0; i < nclients; i++)
		close(clients[i].fd);
	bal_arena_deinit(&arena);
	free(clients);
	return NULL;
}

static struct fake *fake_start(void)
{
	struct fake *f = calloc(1, sizeof(*f));
	f->order_ok = true;
	f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	cr_assert_eq(bind(f->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(f->lfd, 64), 0);
	socklen_t alen = sizeof(a);
	getsockname(f->lfd, (struct sockaddr *)&a, &alen);
	f->port = ntohs(a.sin_port);
	cr_assert_eq(pipe(f->wake), 0);
	return f;
}

static void fake_run(struct fake *f)
{
	cr_assert_eq(pthread_create(&f->thread, NULL, serve, f), 0);
}

/* Stops the server thread; `f` stays readable. */
static void fake_join(struct fake *f)
{
	atomic_store(&f->stop, true);
	cr_assert_eq(write(f->wake[1], "x", 1), 1);
	pthread_join(f->thread, NULL);
}

static void fake_free(struct fake *f)
{
	if (f->lfd >= 0)
		close(f->lfd);
	close(f->wake[0]);
	close(f->wake[1]);
	free(f);
}

static void fake_stop(struct fake *f)
{
	fake_join(f);
	fake_free(f);
}

/* Nobody will accept: close the listener, keep the port number. */
static void fake_refuse(struct fake *f)
{
	close(f->lfd);
	f->lfd = -1;
}

struct world {
	struct bal_defn *d;
	struct bal_expect *e;
	struct bal_load *l;
};

/* 20 precincts, `n` batches: precinct i % 20, seq 1 + i / 20. */
static void world_init(struct world *w, struct fake *f, uint32_t n, uint32_t conns, uint32_t pipeline,
                       uint32_t retry_for_ms, uint32_t timeout_ms)
{
	struct bal_defgen_opts o;
	bal_defgen_defaults(&o);
	o.precincts = 20;
	o.districts = 2;
	o.choices = 4;
	o.keys = false;
	char *text, why[256] = "";
	size_t len;
	cr_assert_eq(bal_defgen_json(&o, &text, &len, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(bal_defn_parse(text, len, &w->d, why, sizeof(why)), 0, "%s", why);
	free(text);
	w->e = bal_expect_new(w->d);
	char server[32];
	snprintf(server, sizeof(server), "127.0.0.1:%u", f->port);
	struct bal_load_opts lo = {.server = server,
	                           .connections = conns,
	                           .pipeline = pipeline,
	                           .retry_for_ms = retry_for_ms,
	                           .timeout_ms = timeout_ms,
	                           .expect = w->e};
	cr_assert_eq(bal_load_new(&lo, &w->l, why, sizeof(why)), 0, "%s", why);
	struct bal_gen_opts go = {.seed = 3, .key_seed = 3, .batch_size = 10, .kind = BAL_KIND_BALLOTS};
	struct bal_gen *g;
	cr_assert_eq(bal_gen_new(w->d, &go, &g, why, sizeof(why)), 0, "%s", why);
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *body;
		size_t blen;
		cr_assert_eq(bal_gen_batch(g, i % 20, 1 + i / 20, NULL, &body, &blen, why, sizeof(why)), 0, "%s", why);
		cr_assert_eq(bal_load_add(w->l, w->d->precincts[i % 20].id, 1 + i / 20, body, blen), (int64_t)i);
	}
	bal_gen_free(g);
}

static void world_run(struct world *w, struct bal_load_stats *st)
{
	char why[256] = "";
	cr_assert_eq(bal_load_run(w->l, why, sizeof(why)), 0, "%s", why);
	bal_load_stats(w->l, st);
	cr_assert_eq(st->pending, 0);
	cr_assert_eq(st->accepted + st->duplicate + st->rejected + st->errors, bal_load_count(w->l));
}

static void world_deinit(struct world *w)
{
	bal_load_free(w->l);
	bal_expect_free(w->e);
	bal_defn_free(w->d);
}

Test(load, pipelines_and_folds_acks)
{
	struct fake *f = fake_start();
	fake_run(f);
	struct world w;
	world_init(&w, f, 300, 3, 8, 0, 5000);
	struct bal_load_stats st;
	world_run(&w, &st);
	cr_assert_eq(st.accepted, 300);
	cr_assert_eq(st.sends, 300);
	cr_assert_eq(st.expect_errors, 0);
	struct bal_expect_turnout t;
	bal_expect_turnout(w.e, &t);
	cr_assert_eq(t.batches, 300);
	cr_assert_eq(t.ballots, 3000);
	cr_assert_eq(bal_expect_precincts_reporting(w.e), 20);
	for (size_t i = 0; i < bal_load_count(w.l); i++) {
		const struct bal_load_item *it = bal_load_item(w.l, i);
		cr_assert_eq(it->state, BAL_LOAD_ACCEPTED);
		cr_assert_eq(it->http_status, 200);
		cr_assert_geq(it->done_ns, it->last_send_ns);
		cr_assert_null(it->error);
	}
	fake_stop(f);
	world_deinit(&w);
}

Test(load, keeps_each_precinct_in_seq_order)
{
	struct fake *f = fake_start();
	fake_run(f);
	struct world w;
	world_init(&w, f, 200, 4, 16, 0, 5000);
	struct bal_load_stats st;
	world_run(&w, &st);
	cr_assert_eq(st.accepted, 200);
	fake_join(f);
	cr_assert(f->order_ok, "a precinct's seqs arrived out of order");
	fake_free(f);
	world_deinit(&w);
}

Test(load, retries_503_in_retry_mode)
{
	struct fake *f = fake_start();
	atomic_store(&f->fail503, 5);
	fake_run(f);
	struct world w;
	world_init(&w, f, 100, 2, 4, 5000, 5000);
	struct bal_load_stats st;
	world_run(&w, &st);
	cr_assert_eq(st.accepted + st.duplicate, 100);
	cr_assert_geq(st.sends, 105);
	cr_assert_geq(st.reconnects, 1);
	struct bal_expect_turnout t;
	bal_expect_turnout(w.e, &t);
	cr_assert_eq(t.batches, 100, "expected totals count each batch once");
	fake_stop(f);
	world_deinit(&w);
}

Test(load, reports_503_as_rejected_without_retry)
{
	struct fake *f = fake_start();
	atomic_store(&f->fail503, 3);
	fake_run(f);
	struct world w;
	world_init(&w, f, 40, 1, 1, 0, 5000);
	struct bal_load_stats st;
	world_run(&w, &st);
	cr_assert_eq(st.rejected, 3);
	cr_assert_eq(st.accepted, 37);
	const struct bal_load_item *it = bal_load_item(w.l, 0);
	cr_assert_eq(it->state, BAL_LOAD_REJECTED);
	cr_assert_eq(it->http_status, 503);
	cr_assert_not_null(strstr(it->error, "HTTP 503: commit queue full"), "error = %s", it->error);
	struct bal_expect_turnout t;
	bal_expect_turnout(w.e, &t);
	cr_assert_eq(t.batches, 37);
	fake_stop(f);
	world_deinit(&w);
}

Test(load, resends_after_eof_and_counts_duplicates_once)
{
	struct fake *f = fake_start();
	f->close_after = 7;
	f->process_unanswered = true;
	fake_run(f);
	struct world w;
	world_init(&w, f, 120, 2, 8, 5000, 5000);
	struct bal_load_stats st;
	world_run(&w, &st);
	cr_assert_eq(st.accepted + st.duplicate, 120);
	cr_assert_gt(st.duplicate, 0, "requests processed but not answered must come back DUPLICATE");
	cr_assert_gt(st.sends, 120);
	cr_assert_eq(atomic_load(&f->accepts), (int)st.accepted, "server accepted %d, client saw %llu ACCEPTED",
	             atomic_load(&f->accepts), (unsigned long long)st.accepted);
	struct bal_expect_turnout t;
	bal_expect_turnout(w.e, &t);
	cr_assert_eq(t.batches, 120, "a DUPLICATE folds once, like an ACCEPTED");
	fake_stop(f);
	world_deinit(&w);
}

Test(load, eof_without_retry_is_an_error)
{
	struct fake *f = fake_start();
	f->close_after = 5;
	fake_run(f);
	struct world w;
	world_init(&w, f, 40, 1, 8, 0, 5000);
	struct bal_load_stats st;
	world_run(&w, &st);
	cr_assert_eq(st.accepted, 5, "accepted %llu errors %llu first error %s", (unsigned long long)st.accepted,
	             (unsigned long long)st.errors, bal_load_first_error(w.l));
	cr_assert_eq(st.errors, 35);
	const struct bal_load_item *it = bal_load_item(w.l, 39);
	cr_assert_eq(it->state, BAL_LOAD_ERROR);
	cr_assert_not_null(strstr(it->error, "closed the connection"), "error = %s", it->error);
	fake_stop(f);
	world_deinit(&w);
}

Test(load, rejection_carries_the_servers_reason)
{
	struct fake *f = fake_start();
	f->reject_precinct = 3;
	fake_run(f);
	struct world w;
	world_init(&w, f, 40, 2, 4, 0, 5000);
	struct bal_load_stats st;
	world_run(&w, &st);
	cr_assert_eq(st.rejected, 2); /* precinct 3 has seq 1 and 2 */
	cr_assert_eq(st.accepted, 38);
	const struct bal_load_item *it = bal_load_item(w.l, 2);
	cr_assert_eq(it->precinct_id, 3);
	cr_assert_eq(it->http_status, 422);
	cr_assert_str_eq(it->error, "HTTP 422: precinct 3: rejected by the test server");
	cr_assert_not_null(bal_load_first_error(w.l));
	fake_stop(f);
	world_deinit(&w);
}

Test(load, silence_times_out)
{
	struct fake *f = fake_start();
	f->silent = true;
	fake_run(f);
	struct world w;
	world_init(&w, f, 10, 1, 4, 0, 200);
	struct bal_load_stats st;
	world_run(&w, &st);
	cr_assert_eq(st.errors, 10);
	cr_assert_not_null(strstr(bal_load_item(w.l, 0)->error, "no response within 200 ms"), "error = %s",
	                   bal_load_item(w.l, 0)->error);
	fake_stop(f);
	world_deinit(&w);
}

Test(load, gives_up_on_a_refused_connection_after_the_deadline)
{
	struct fake *f = fake_start();
	fake_refuse(f);
	struct world w;
	world_init(&w, f, 10, 2, 4, 300, 5000);
	struct bal_load_stats st;
	world_run(&w, &st);
	cr_assert_eq(st.errors, 10);
	cr_assert_geq(st.elapsed_ns, 300000000ULL, "gave up after %llu ns", (unsigned long long)st.elapsed_ns);
	cr_assert_geq(st.reconnects, 2);
	cr_assert_not_null(strstr(bal_load_item(w.l, 0)->error, "gave up after 300 ms of retries"), "error = %s",
	                   bal_load_item(w.l, 0)->error);
	fake_free(f);
	world_deinit(&w);
}

Test(load, refused_without_retry_fails_at_once)
{
	struct fake *f = fake_start();
	fake_refuse(f);
	struct world w;
	world_init(&w, f, 6, 3, 4, 0, 5000);
	struct bal_load_stats st;
	world_run(&w, &st);
	cr_assert_eq(st.errors, 6);
	cr_assert_eq(st.reconnects, 0);
	cr_assert_not_null(strstr(bal_load_item(w.l, 0)->error, "connect to 127.0.0.1"), "error = %s",
	                   bal_load_item(w.l, 0)->error);
	fake_free(f);
	world_deinit(&w);
}
