/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An I/O worker: one thread ("ballotd-ioN") running its own libuv loop with
 * its own listening socket, its connections, a wake-up handle for committer
 * results, and a timer for timeouts and draining.
 *
 * Cross-thread entry points are bal_worker_deliver() (committer thread) and
 * bal_worker_signal_stop() (main thread); both only touch the locked done list
 * or atomics and then uv_async_send().
 */
#include "daemon/worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/commit.h"
#include "daemon/conn.h"
#include "daemon/log.h"

#define BAL_LISTEN_BACKLOG 4096

uint64_t bal_worker_http_count(const struct bal_worker *w, int cls)
{
	return cls >= 0 && cls < 6 ? __atomic_load_n(&w->http_status[cls], __ATOMIC_RELAXED) : 0;
}

unsigned bal_worker_index(const struct bal_worker *w)
{
	return w->index;
}

void bal_worker_deliver(struct bal_worker *w, struct bal_job *head, struct bal_job *tail)
{
	pthread_mutex_lock(&w->done_lock);
	if (w->done_tail)
		w->done_tail->next = head;
	else
		w->done_head = head;
	w->done_tail = tail;
	pthread_mutex_unlock(&w->done_lock);
	uv_async_send(&w->wake);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct bal_worker *w = server->data;
	if (status < 0) {
		/* EMFILE/ENFILE: libuv sheds the pending connections itself (it keeps
		 * a spare descriptor for that); existing connections keep working. */
		bal_log_reject("listen",
		               "cannot accept: %s (%u connections open on worker %u); new connections are "
		               "shed until descriptors free up",
		               uv_strerror(status), w->nconns, w->index);
		return;
	}
	bal_conn_accept(w);
}

static bool conn_owes_answers(const struct bal_conn *c)
{
	for (unsigned k = 0; k < c->used; k++) {
		const struct bal_req *req = c->reqs[(c->first + k) % c->cap];
		if (req->state != BAL_REQ_RECV)
			return true;
	}
	return false;
}

unsigned bal_worker_busy(struct bal_worker *w)
{
	unsigned n = 0;
	for (struct bal_conn *c = w->conns; c; c = c->next)
		if (!c->closing && conn_owes_answers(c))
			n++;
	return n;
}

static void close_handles(struct bal_worker *w)
{
	if (w->listening) {
		uv_close((uv_handle_t *)&w->listener, NULL);
		w->listening = false;
	}
	if (!uv_is_closing((uv_handle_t *)&w->wake)) {
		uv_close((uv_handle_t *)&w->wake, NULL);
		uv_close((uv_handle_t *)&w->sweep, NULL);
	}
}

/* Hard stop: answer what is owed, then close every connection and handle. */
static void shut_connections(struct bal_worker *w, bool force)
{
	struct bal_conn *c = w->conns;
	while (c) {
		struct bal_conn *next = c->next;
		if (!c->closing) {
			c->close_after_flush = true;
			if (c->reading) {
				uv_read_stop((uv_stream_t *)&c->tcp);
				c->reading = false;
			}
			if (force || !conn_owes_answers(c))
				bal_conn_close(c);
		}
		c = next;
	}
}

static void take_done(struct bal_worker *w)
{
	pthread_mutex_lock(&w->done_lock);
	struct bal_job *j = w->done_head;
	w->done_head = w->done_tail = NULL;
	pthread_mutex_unlock(&w->done_lock);
	while (j) {
		struct bal_job *next = j->next;
		/* Each job lives in its connection's request, cold after the commit:
		 * fetch the next ones while this ack is written. */
		if (next) {
			__builtin_prefetch(next->next);
			bal_conn_job_prefetch(next);
		}
		size_t len = j->len; /* the job is its request's, which may be freed or reused */
		bal_conn_job_done(j);
		/* Counted down after the ack is queued, so draining sees it written. */
		__atomic_sub_fetch(&w->d->inflight, 1, __ATOMIC_RELAXED);
		__atomic_sub_fetch(&w->d->queued_bytes, len, __ATOMIC_RELAXED);
		j = next;
	}
}

static void check_stop(struct bal_worker *w)
{
	int stop = __atomic_load_n(&w->stop, __ATOMIC_ACQUIRE);
	if (stop >= 1 && w->listening) {
		uv_close((uv_handle_t *)&w->listener, NULL);
		w->listening = false;
	}
	if (stop >= 2) {
		uint64_t now = uv_now(&w->loop);
		if (!w->hard_stop_at)
			w->hard_stop_at = now;
		bool force = now - w->hard_stop_at > w->d->cfg.drain_timeout_ms;
		shut_connections(w, force);
		if (!w->conns)
			close_handles(w);
	}
}

static void on_wake(uv_async_t *a)
{
	struct bal_worker *w = a->data;
	take_done(w);
	check_stop(w);
}

static void on_sweep(uv_timer_t *t)
{
	struct bal_worker *w = t->data;
	bal_conn_sweep(w, uv_now(&w->loop));
	check_stop(w);
}

void bal_worker_signal_stop(struct bal_worker *w, bool hard)
{
	__atomic_store_n(&w->stop, hard ? 2 : 1, __ATOMIC_RELEASE);
	uv_async_send(&w->wake);
}

int bal_worker_new(struct bal_daemon *d, unsigned index, int listen_fd, struct bal_worker **out)
{
	int err = -ENOMEM;
	struct bal_worker *w = calloc(1, sizeof(*w));
	if (!w)
		return err;
	w->d = d;
	w->index = index;
	w->scratch = malloc(bal_layout_nslots(d->layout) * sizeof(uint64_t));
	if (!w->scratch)
		goto fail_w;
	bal_arena_init(&w->arena, d->cfg.max_body * 8 + 65536);
	pthread_mutex_init(&w->done_lock, NULL);
	err = uv_loop_init(&w->loop);
	if (err)
		goto fail_mem;
	uv_tcp_init(&w->loop, &w->listener);
	w->listener.data = w;
	err = uv_tcp_open(&w->listener, listen_fd);
	if (!err)
		err = uv_listen((uv_stream_t *)&w->listener, BAL_LISTEN_BACKLOG, on_connection);
	if (err) {
		uv_close((uv_handle_t *)&w->listener, NULL);
		uv_run(&w->loop, UV_RUN_DEFAULT);
		uv_loop_close(&w->loop);
		goto fail_mem;
	}
	w->listening = true;
	uv_async_init(&w->loop, &w->wake, on_wake);
	w->wake.data = w;
	uv_timer_init(&w->loop, &w->sweep);
	w->sweep.data = w;
	unsigned tick =
	        d->cfg.idle_timeout_ms < d->cfg.request_timeout_ms ? d->cfg.idle_timeout_ms : d->cfg.request_timeout_ms;
	if (d->cfg.send_timeout_ms < tick)
		tick = d->cfg.send_timeout_ms;
	tick /= 4;
	if (tick < 20)
		tick = 20;
	if (tick > 1000)
		tick = 1000;
	uv_timer_start(&w->sweep, on_sweep, tick, tick);
	*out = w;
	return 0;

fail_mem:
	pthread_mutex_destroy(&w->done_lock);
	bal_arena_deinit(&w->arena);
	free(w->scratch);
fail_w:
	free(w);
	return err;
}

static void run(void *arg)
{
	struct bal_worker *w = arg;
	char name[16];
	snprintf(name, sizeof(name), "ballotd-io%u", w->index);
	pthread_setname_np(pthread_self(), name);
	uv_run(&w->loop, UV_RUN_DEFAULT);
}

int bal_worker_start(struct bal_worker *w)
{
	return uv_thread_create(&w->thread, run, w);
}

static void walk_close(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

int bal_worker_free(struct bal_worker *w)
{
	if (!w)
		return 0;
	/* Anything the committer delivered after the loop ended has no one to answer. */
	take_done(w);
	int err = uv_loop_close(&w->loop);
	if (err)
		bal_log(BAL_LOG_WARN, "worker", "io%u: loop closed with handles open: %s", w->index, uv_strerror(err));
	pthread_mutex_destroy(&w->done_lock);
	bal_arena_deinit(&w->arena);
	free(w->scratch);
	free(w);
	return err;
}

void bal_worker_free_unstarted(struct bal_worker *w)
{
	if (!w)
		return;
	/* Nothing was accepted yet: close the handles and run the loop dry. */
	uv_walk(&w->loop, walk_close, NULL);
	uv_run(&w->loop, UV_RUN_DEFAULT);
	bal_worker_free(w);
}

void bal_worker_join_free(struct bal_worker *w)
{
	if (!w)
		return;
	uv_thread_join(&w->thread);
	bal_worker_free(w);
}
