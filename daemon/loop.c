/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The main thread's loop: signals and graceful drain.
 *
 * SIGTERM/SIGINT: stop accepting, answer new batches 503, wait until every
 * batch already handed to the committer is committed and its ack queued, then
 * tell the workers to finish writing what they owe and close. A second
 * signal, or --drain-timeout, shortens the wait. Nothing acknowledged is ever
 * lost by stopping early: acks follow commits, and unacked batches are
 * retried by their uploaders.
 */
#include "daemon/loop.h"

#include <signal.h>
#include <systemd/sd-daemon.h>
#include <uv.h>

#include "daemon/clock.h"
#include "daemon/log.h"
#include "daemon/worker.h"

struct drain {
	struct bal_daemon *d;
	uv_signal_t term, intr;
	uv_timer_t tick;
	uint64_t started_ms;
	bool hard_sent;
};

static void close_all(struct drain *dr)
{
	uv_close((uv_handle_t *)&dr->term, NULL);
	uv_close((uv_handle_t *)&dr->intr, NULL);
	uv_close((uv_handle_t *)&dr->tick, NULL);
}

static void hard_stop(struct drain *dr)
{
	struct bal_daemon *d = dr->d;
	if (dr->hard_sent)
		return;
	dr->hard_sent = true;
	for (unsigned i = 0; i < d->cfg.threads; i++)
		bal_worker_signal_stop(d->workers[i], true);
	close_all(dr);
}

static void on_tick(uv_timer_t *t)
{
	struct drain *dr = t->data;
	struct bal_daemon *d = dr->d;
	uint64_t inflight = __atomic_load_n(&d->inflight, __ATOMIC_RELAXED);
	if (inflight == 0) {
		bal_log(BAL_LOG_INFO, "main", "drained: every batch handed to the committer is committed and answered");
		hard_stop(dr);
	} else if (bal_now_ms() - dr->started_ms > d->cfg.drain_timeout_ms) {
		bal_log(BAL_LOG_WARN, "main",
		        "drain timeout: %llu batches still in flight; stopping (they are not acked, "
		        "uploaders will resend)",
		        (unsigned long long)inflight);
		hard_stop(dr);
	}
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct drain *dr = h->data;
	struct bal_daemon *d = dr->d;
	if (__atomic_load_n(&d->draining, __ATOMIC_RELAXED)) {
		bal_log(BAL_LOG_WARN, "main", "second signal: stopping without waiting for in-flight batches");
		hard_stop(dr);
		return;
	}
	bal_log(BAL_LOG_INFO, "main", "%s: draining (new batches get 503)", signum == SIGTERM ? "SIGTERM" : "SIGINT");
	sd_notify(0, "STOPPING=1");
	__atomic_store_n(&d->draining, 1, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < d->cfg.threads; i++)
		bal_worker_signal_stop(d->workers[i], false);
	dr->started_ms = bal_now_ms();
	uv_timer_start(&dr->tick, on_tick, 0, 10);
}

int bal_loop_run(struct bal_daemon *d)
{
	uv_loop_t loop;
	struct drain dr = {.d = d};
	int err = uv_loop_init(&loop);
	if (err)
		return err;
	uv_signal_init(&loop, &dr.term);
	uv_signal_init(&loop, &dr.intr);
	uv_timer_init(&loop, &dr.tick);
	dr.term.data = dr.intr.data = dr.tick.data = &dr;
	uv_signal_start(&dr.term, on_signal, SIGTERM);
	uv_signal_start(&dr.intr, on_signal, SIGINT);
	uv_run(&loop, UV_RUN_DEFAULT);
	return uv_loop_close(&loop);
}
