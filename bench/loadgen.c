/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The load engine (see loadgen.h).
 *
 * Threads: the main thread sets up the workers, waits until every worker has
 * all its connections open, then publishes t0 and wakes them (uv_async); it
 * prints the progress lines from the workers' per-second records, which a
 * worker publishes by advancing `secs_done` (release) once a second is over.
 * Everything else in a worker belongs to its thread until it has finished.
 *
 * Per connection: a FIFO of the requests in flight (precinct, seq, start
 * time), the precincts it owns, and for the open loop how many of its
 * requests are due and how many were sent. Answers only mark the connection
 * for sending; the uv_check handle sends for every marked connection after
 * the loop's I/O phase, so the answers read in one iteration leave as one write.
 *
 * Depends on libuv, pthreads, bench/work.h and bench/stats.h.
 */
#include "bench/loadgen.h"

#include "client/cli.h"
#include "client/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define MAX_SECS       86400
#define CONNECTING_MAX 256
#define TICK_MS        1
#define RECONNECT_MS   200
#define NS             1000000000ull

struct fent {
	uint32_t p;
	uint64_t seq;
	uint64_t t_ns; /* send time (closed loop) or due time (open loop) */
};

enum cstate { CS_NEW, CS_CONNECTING, CS_OPEN, CS_CLOSING, CS_WAITING, CS_DONE };

struct bench_worker;

/*
 * - fcount <= pipeline; fifo[(fhead + i) % pipeline] is the i-th oldest request in flight;
 * - open loop: sent <= sched; the m-th request of local connection j is the
 *   worker's request m * n + j;
 * - `pending` iff the connection is in the worker's send list.
 */
struct bench_conn {
	struct bench_worker *wk;
	uint32_t index, local;
	enum cstate st;
	bool pending;
	uint32_t *prec;
	uint32_t nprec, rr;
	struct fent *fifo;
	uint32_t fhead, fcount;
	uint64_t quota; /* closed loop: sends left (UINT64_MAX: unlimited) */
	uint64_t sched, sent;
	uint64_t last_progress_ns, reconnect_at_ns, failing_since_ns;
	void *priv;
	struct sockaddr_in src;
	bool has_src;
};

struct shared {
	const struct bench_run_opts *o;
	uint64_t *next_seq; /* [K] */
	uint64_t *acked;    /* [K * variants] */
	uint32_t variants;
	uint64_t ballots_per_batch;
	_Atomic uint32_t ready, failed;
	_Atomic bool abort;
	uint64_t t0, t_meas, t_end; /* written before the go signal */
	pthread_mutex_t mu;         /* guards setup_why */
	char setup_why[256];
};

struct bench_worker {
	struct shared *sh;
	unsigned id;
	pthread_t tid;
	bool started;
	uv_loop_t loop;
	uv_timer_t tick;
	uv_check_t check;
	uv_async_t go;
	struct bench_conn *conns;
	uint32_t n;
	uint8_t *privs;
	size_t priv_stride;
	void *wpriv;
	bool wpriv_ok;
	struct bench_conn **plist; /* connections marked for sending */
	uint32_t npending;
	uint32_t nconnecting, next_open, nready, nactive, nwaiting;
	bool reported, running, stopping, closing_all;
	uint64_t t0, t_meas, t_end, t_stop, send_now, t_last;
	double rate_w;
	uint64_t k_issued, k_limit;
	uint64_t next_timeout_check;
	struct bench_sec **secs;
	uint32_t cur_sec;
	_Atomic uint32_t secs_done; /* seconds [0, secs_done) are final */
	struct bench_sec meas, all;
	struct bench_error_count errors[BENCH_ERROR_KINDS];
	size_t nerrors;
	struct bench_unknown *unknown;
	size_t nunknown, capunknown;
	uint64_t unsent, reconnects;
	char first_error[256];
	_Atomic bool finished;
};

static bool open_loop(const struct bench_worker *wk)
{
	return wk->sh->o->rate > 0;
}

/* ---- records -------------------------------------------------------------- */

static struct bench_sec *sec_at(struct bench_worker *wk, uint64_t now)
{
	uint64_t s = now > wk->t0 ? (now - wk->t0) / NS : 0;
	if (s >= MAX_SECS)
		s = MAX_SECS - 1;
	while (wk->cur_sec < s) {
		struct bench_sec *next = calloc(1, sizeof(*next));
		if (!next)
			break; /* out of memory: keep counting into the current second */
		wk->secs[++wk->cur_sec] = next;
		atomic_store_explicit(&wk->secs_done, wk->cur_sec, memory_order_release);
	}
	return wk->secs[wk->cur_sec];
}

static bool measured(const struct bench_worker *wk, uint64_t now)
{
	return now >= wk->t_meas && now < wk->t_end;
}

static void count_error(struct bench_worker *wk, const char *cls)
{
	if (!cls)
		cls = "unknown";
	for (size_t i = 0; i < wk->nerrors; i++)
		if (strcmp(wk->errors[i].name, cls) == 0) {
			wk->errors[i].n++;
			return;
		}
	size_t i = wk->nerrors < BENCH_ERROR_KINDS ? wk->nerrors++ : BENCH_ERROR_KINDS - 1;
	if (i == BENCH_ERROR_KINDS - 1 && wk->errors[i].name[0] && strcmp(wk->errors[i].name, "other") != 0)
		snprintf(wk->errors[i].name, sizeof(wk->errors[i].name), "other");
	else if (!wk->errors[i].name[0])
		snprintf(wk->errors[i].name, sizeof(wk->errors[i].name), "%s", cls);
	wk->errors[i].n++;
}

static void record(struct bench_worker *wk, uint64_t now, enum bench_outcome o, uint64_t start_ns, const char *cls)
{
	struct bench_sec *secs[3] = {sec_at(wk, now), &wk->all, measured(wk, now) ? &wk->meas : NULL};
	uint64_t us = now > start_ns ? (now - start_ns) / 1000 : 0;
	for (int i = 0; i < 3; i++) {
		struct bench_sec *s = secs[i];
		if (!s)
			continue;
		if (o == BENCH_FAIL) {
			s->err++;
			continue;
		}
		if (o == BENCH_NEW) {
			s->ok++;
			s->ballots += wk->sh->ballots_per_batch;
		} else {
			s->dup++;
		}
		bench_hist_add(&s->lat, us);
	}
	if (o == BENCH_FAIL)
		count_error(wk, cls);
	else if (now > wk->t_last)
		wk->t_last = now;
}

static void note_error(struct bench_worker *wk, const char *fmt, const char *why)
{
	if (!wk->first_error[0])
		snprintf(wk->first_error, sizeof(wk->first_error), fmt, why);
}

/* ---- sending ----------------------------------------------------------- */

static void mark_pending(struct bench_conn *c)
{
	if (c->pending)
		return;
	c->pending = true;
	c->wk->plist[c->wk->npending++] = c;
}

static bool exhausted(const struct bench_conn *c)
{
	const struct bench_worker *wk = c->wk;
	if (open_loop(wk))
		return wk->k_issued >= wk->k_limit && c->sent == c->sched;
	return c->quota == 0;
}

static void conn_close(struct bench_conn *c)
{
	c->st = CS_CLOSING;
	c->wk->sh->o->target->close(c);
}

/* Sends what the connection may send now, or closes it once it has nothing more to do. */
static void pump(struct bench_conn *c)
{
	struct bench_worker *wk = c->wk;
	const struct bench_run_opts *o = wk->sh->o;
	if (c->st != CS_OPEN)
		return;
	if (wk->stopping || exhausted(c)) {
		if (c->fcount == 0)
			conn_close(c);
		return;
	}
	uint64_t room = o->pipeline - c->fcount;
	uint64_t avail = open_loop(wk) ? c->sched - c->sent : c->quota;
	uint32_t n = (uint32_t)(room < avail ? room : avail);
	if (!n)
		return;
	wk->send_now = uv_hrtime();
	if (c->fcount == 0)
		c->last_progress_ns = wk->send_now;
	o->target->send(c, n);
}

void bench_conn_next(struct bench_conn *c, uint32_t *p, uint64_t *seq)
{
	struct bench_worker *wk = c->wk;
	struct shared *sh = wk->sh;
	bal_require(c->fcount < sh->o->pipeline);
	uint32_t pi = c->prec[c->rr];
	c->rr = c->rr + 1 == c->nprec ? 0 : c->rr + 1;
	struct fent *e = &c->fifo[(c->fhead + c->fcount) % sh->o->pipeline];
	e->p = pi;
	e->seq = sh->next_seq[pi]++;
	if (open_loop(wk)) {
		uint64_t k = c->sent * wk->n + c->local;
		e->t_ns = wk->t0 + (uint64_t)((double)k * 1e9 / wk->rate_w);
	} else {
		e->t_ns = wk->send_now;
		if (c->quota != UINT64_MAX)
			c->quota--;
	}
	c->sent++;
	c->fcount++;
	*p = pi;
	*seq = e->seq;
}

void bench_conn_wrote(struct bench_conn *c, size_t bytes)
{
	struct bench_worker *wk = c->wk;
	uint64_t now = wk->send_now;
	sec_at(wk, now)->bytes += bytes;
	wk->all.bytes += bytes;
	if (measured(wk, now))
		wk->meas.bytes += bytes;
}

void bench_conn_answer(struct bench_conn *c, enum bench_outcome o, const char *err_class)
{
	struct bench_worker *wk = c->wk;
	struct shared *sh = wk->sh;
	if (c->fcount == 0)
		return; /* the target reports an answer nobody asked for: ignore it */
	struct fent e = c->fifo[c->fhead];
	c->fhead = (c->fhead + 1) % sh->o->pipeline;
	c->fcount--;
	uint64_t now = uv_hrtime();
	record(wk, now, o, e.t_ns, err_class);
	if (o == BENCH_NEW)
		sh->acked[(size_t)e.p * sh->variants + bench_work_variant(sh->o->work, e.seq)]++;
	c->last_progress_ns = now;
	c->failing_since_ns = 0;
	mark_pending(c);
}

/* ---- connection lifecycle -------------------------------------------- */

static void worker_finish(struct bench_worker *wk);

static void open_conn(struct bench_conn *c)
{
	struct bench_worker *wk = c->wk;
	memset(c->priv, 0, wk->priv_stride);
	c->st = CS_CONNECTING;
	c->fhead = c->fcount = 0;
	c->last_progress_ns = uv_hrtime();
	wk->sh->o->target->open(c);
}

static void open_more(struct bench_worker *wk)
{
	while (wk->nconnecting < CONNECTING_MAX && wk->next_open < wk->n && !wk->closing_all) {
		wk->nconnecting++;
		open_conn(&wk->conns[wk->next_open++]);
	}
}

static void report_setup(struct bench_worker *wk, bool ok)
{
	if (wk->reported)
		return;
	wk->reported = true;
	atomic_fetch_add(ok ? &wk->sh->ready : &wk->sh->failed, 1);
}

void bench_conn_ready(struct bench_conn *c)
{
	struct bench_worker *wk = c->wk;
	if (c->st != CS_CONNECTING)
		return;
	c->st = CS_OPEN;
	c->last_progress_ns = uv_hrtime();
	if (!wk->running) {
		wk->nconnecting--;
		if (++wk->nready == wk->n)
			report_setup(wk, true);
		open_more(wk);
		return;
	}
	mark_pending(c);
}

void bench_conn_lost(struct bench_conn *c, const char *why)
{
	struct bench_worker *wk = c->wk;
	struct shared *sh = wk->sh;
	if (c->st != CS_CONNECTING && c->st != CS_OPEN)
		return;
	uint64_t now = uv_hrtime();
	if (!wk->running && c->st == CS_CONNECTING) {
		pthread_mutex_lock(&sh->mu);
		if (!sh->setup_why[0])
			snprintf(sh->setup_why, sizeof(sh->setup_why), "connection %u: %s", c->index, why);
		pthread_mutex_unlock(&sh->mu);
		wk->nconnecting--;
		report_setup(wk, false);
		conn_close(c);
		return;
	}
	note_error(wk, "%s", why);
	while (c->fcount) {
		struct fent *e = &c->fifo[c->fhead];
		if (wk->nunknown == wk->capunknown &&
		    bal__grow((void **)&wk->unknown, &wk->capunknown, wk->nunknown + 1, sizeof(*wk->unknown), 256) < 0)
			break; /* out of memory: the count below still says how many were lost */
		wk->unknown[wk->nunknown++] = (struct bench_unknown){.p = e->p, .seq = e->seq};
		record(wk, now, BENCH_FAIL, e->t_ns, "connection");
		c->fhead = (c->fhead + 1) % sh->o->pipeline;
		c->fcount--;
	}
	c->fcount = 0;
	if (!c->failing_since_ns)
		c->failing_since_ns = now;
	conn_close(c);
}

void bench_conn_closed(struct bench_conn *c)
{
	struct bench_worker *wk = c->wk;
	uint64_t now = uv_hrtime();
	bool give_up = c->failing_since_ns && now - c->failing_since_ns > (uint64_t)wk->sh->o->timeout_ms * 1000000;
	if (wk->running && !wk->stopping && !wk->closing_all && !exhausted(c) && !give_up) {
		c->st = CS_WAITING;
		c->reconnect_at_ns = now + (uint64_t)RECONNECT_MS * 1000000;
		wk->nwaiting++;
		return;
	}
	if (give_up)
		note_error(wk, "%s", "a connection failed for longer than --timeout and was given up");
	c->st = CS_DONE;
	if (--wk->nactive == 0)
		worker_finish(wk);
}

uv_loop_t *bench_conn_loop(struct bench_conn *c)
{
	return &c->wk->loop;
}

struct bench_work *bench_conn_work(struct bench_conn *c)
{
	return c->wk->sh->o->work;
}

void *bench_conn_priv(struct bench_conn *c)
{
	return c->priv;
}

void *bench_conn_wpriv(struct bench_conn *c)
{
	return c->wk->wpriv;
}

uint32_t bench_conn_index(const struct bench_conn *c)
{
	return c->index;
}

const struct sockaddr *bench_conn_server(const struct bench_conn *c)
{
	const struct sockaddr_storage *s = &c->wk->sh->o->server;
	return s->ss_family == AF_UNSPEC ? NULL : (const struct sockaddr *)s;
}

const struct sockaddr_in *bench_conn_source(const struct bench_conn *c)
{
	return c->has_src ? &c->src : NULL;
}

/* ---- worker loop ------------------------------------------------------------ */

static void close_all(struct bench_worker *wk)
{
	wk->closing_all = true;
	for (uint32_t i = 0; i < wk->n; i++) {
		struct bench_conn *c = &wk->conns[i];
		if (c->st == CS_CONNECTING || c->st == CS_OPEN) {
			conn_close(c);
		} else if (c->st == CS_NEW || c->st == CS_WAITING) {
			c->st = CS_DONE;
			wk->nactive--;
		}
	}
	if (wk->nactive == 0)
		worker_finish(wk);
}

static void begin_stop(struct bench_worker *wk, uint64_t now)
{
	wk->stopping = true;
	wk->t_stop = now;
	for (uint32_t i = 0; i < wk->n; i++) {
		struct bench_conn *c = &wk->conns[i];
		if (open_loop(wk))
			wk->unsent += c->sched - c->sent;
		if (c->st == CS_WAITING) {
			c->st = CS_DONE;
			wk->nactive--;
		} else if (c->st == CS_OPEN && c->fcount == 0) {
			conn_close(c);
		}
	}
	if (wk->nactive == 0)
		worker_finish(wk);
}

/* Open loop: hands out every request due by `now`. */
static void issue_due(struct bench_worker *wk, uint64_t now)
{
	uint64_t due = (uint64_t)((double)(now - wk->t0) * wk->rate_w / 1e9) + 1;
	if (due > wk->k_limit)
		due = wk->k_limit;
	bool was_short = wk->k_issued < wk->k_limit;
	for (; wk->k_issued < due; wk->k_issued++) {
		struct bench_conn *c = &wk->conns[wk->k_issued % wk->n];
		c->sched++;
		mark_pending(c);
	}
	if (was_short && wk->k_issued == wk->k_limit)
		for (uint32_t i = 0; i < wk->n; i++)
			mark_pending(&wk->conns[i]); /* each closes once its last answer is in */
}

static void on_check(uv_check_t *h)
{
	struct bench_worker *wk = h->data;
	if (!wk->running || wk->closing_all)
		return;
	if (open_loop(wk) && !wk->stopping)
		issue_due(wk, uv_hrtime());
	/* pump() may close connections but never marks new ones: the list is stable. */
	for (uint32_t i = 0; i < wk->npending; i++) {
		struct bench_conn *c = wk->plist[i];
		c->pending = false;
		pump(c);
	}
	wk->npending = 0;
}

static void on_tick(uv_timer_t *t)
{
	struct bench_worker *wk = t->data;
	const struct bench_run_opts *o = wk->sh->o;
	uint64_t now = uv_hrtime();
	if (wk->running)
		sec_at(wk, now);
	if (wk->closing_all)
		return;
	if (wk->running && !wk->stopping && now >= wk->t_end)
		begin_stop(wk, now);
	if (wk->closing_all || wk->nactive == 0)
		return;
	if (wk->stopping && now - wk->t_stop > (uint64_t)o->timeout_ms * 1000000) {
		/* Drain timeout: whatever is still in flight will not be answered. */
		for (uint32_t i = 0; i < wk->n; i++)
			if (wk->conns[i].st == CS_OPEN && wk->conns[i].fcount)
				bench_conn_lost(&wk->conns[i], "no answer within --timeout after the run ended");
	}
	if (wk->nwaiting) {
		for (uint32_t i = 0; i < wk->n; i++) {
			struct bench_conn *c = &wk->conns[i];
			if (c->st == CS_WAITING && now >= c->reconnect_at_ns) {
				wk->nwaiting--;
				wk->reconnects++;
				open_conn(c);
			}
		}
	}
	if (now >= wk->next_timeout_check) {
		wk->next_timeout_check = now + 100 * 1000000ull;
		uint64_t limit = (uint64_t)o->timeout_ms * 1000000;
		for (uint32_t i = 0; i < wk->n; i++) {
			struct bench_conn *c = &wk->conns[i];
			if ((c->st == CS_CONNECTING || (c->st == CS_OPEN && c->fcount)) &&
			    now - c->last_progress_ns > limit) {
				char why[96];
				snprintf(why, sizeof(why), "no answer within --timeout (%u ms)", o->timeout_ms);
				bench_conn_lost(c, why);
			}
		}
	}
	if (wk->running && !wk->stopping)
		on_check(&wk->check);
}

static void on_go(uv_async_t *a)
{
	struct bench_worker *wk = a->data;
	struct shared *sh = wk->sh;
	const struct bench_run_opts *o = sh->o;
	if (wk->running || wk->closing_all)
		return;
	if (atomic_load(&sh->abort)) {
		close_all(wk);
		return;
	}
	wk->t0 = sh->t0;
	wk->t_meas = sh->t_meas;
	wk->t_end = sh->t_end;
	wk->running = true;
	if (open_loop(wk)) {
		wk->rate_w = o->rate * wk->n / o->connections;
		if (o->batches) {
			wk->k_limit = 0;
			for (uint32_t i = 0; i < wk->n; i++)
				wk->k_limit += o->batches / o->connections +
				               (wk->conns[i].index < o->batches % o->connections);
		} else {
			wk->k_limit = UINT64_MAX;
			/* Nothing is due at or after t_end. */
			double last = (double)(wk->t_end - wk->t0) * wk->rate_w / 1e9;
			if (last < 1.8e19)
				wk->k_limit = (uint64_t)last + 1;
		}
	}
	uv_check_start(&wk->check, on_check);
	for (uint32_t i = 0; i < wk->n; i++)
		if (wk->conns[i].st == CS_OPEN)
			mark_pending(&wk->conns[i]);
	on_check(&wk->check);
}

static void worker_finish(struct bench_worker *wk)
{
	if (!uv_is_closing((uv_handle_t *)&wk->tick)) {
		uv_close((uv_handle_t *)&wk->tick, NULL);
		uv_close((uv_handle_t *)&wk->check, NULL);
		uv_close((uv_handle_t *)&wk->go, NULL);
	}
}

static void *worker_main(void *arg)
{
	struct bench_worker *wk = arg;
	const struct bench_run_opts *o = wk->sh->o;
	if (o->target->worker_init) {
		int rc = o->target->worker_init(o->target->cfg, o->work, &wk->wpriv);
		wk->wpriv_ok = rc == 0;
		if (rc < 0) {
			pthread_mutex_lock(&wk->sh->mu);
			if (!wk->sh->setup_why[0])
				snprintf(wk->sh->setup_why, sizeof(wk->sh->setup_why), "%s: worker setup failed: %s",
				         o->target->name, bal_strerror(rc));
			pthread_mutex_unlock(&wk->sh->mu);
			report_setup(wk, false);
			wk->closing_all = true;
		}
	}
	if (!wk->closing_all) {
		/* The ticker also times out connects during setup. */
		uv_timer_start(&wk->tick, on_tick, TICK_MS, TICK_MS);
		open_more(wk);
	}
	if (wk->closing_all && wk->nactive) {
		for (uint32_t i = 0; i < wk->n; i++)
			wk->conns[i].st = CS_DONE;
		wk->nactive = 0;
		worker_finish(wk);
	}
	uv_run(&wk->loop, UV_RUN_DEFAULT);
	if (o->target->worker_deinit && wk->wpriv_ok)
		o->target->worker_deinit(wk->wpriv);
	int rc = uv_loop_close(&wk->loop);
	bal_require(rc == 0); /* every handle was closed before uv_run returned */
	atomic_store_explicit(&wk->secs_done, wk->cur_sec + 1, memory_order_release);
	atomic_store(&wk->finished, true);
	return NULL;
}

/* ---- main thread ------------------------------------------------------------- */

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

static double cpu_now(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

static void print_progress(uint32_t s, const struct bench_sec *sec, double warmup_s, uint64_t errors_total)
{
	char b1[32], b2[32];
	fprintf(stderr, "[%4us] %10s batches/s %12s ballots/s  p99 %8.2f ms  errors %llu%s\n", s + 1,
	        bal_cli_count(sec->ok + sec->dup, b1), bal_cli_count(sec->ballots, b2), bench_hist_ms(&sec->lat, 0.99),
	        (unsigned long long)errors_total, (double)(s + 1) <= warmup_s ? "  (warm-up)" : "");
}

/* Prints second s once every worker is past it (a finished worker is past
 * every second); returns false if not yet, or if no worker reached s. */
static bool progress_second(struct bench_worker *wks, const struct bench_run_opts *o, uint32_t s,
                            uint64_t *errors_total)
{
	bool reached = false;
	for (uint32_t w = 0; w < o->threads; w++) {
		bool finished = !wks[w].started || atomic_load(&wks[w].finished);
		if (!finished && atomic_load_explicit(&wks[w].secs_done, memory_order_acquire) <= s)
			return false;
		reached |= !finished || (wks[w].started && s <= wks[w].cur_sec);
	}
	if (!reached)
		return false;
	struct bench_sec sum;
	memset(&sum, 0, sizeof(sum));
	for (uint32_t w = 0; w < o->threads; w++)
		if (wks[w].started && s < MAX_SECS && wks[w].secs[s])
			bench_sec_merge(&sum, wks[w].secs[s]);
	*errors_total += sum.err;
	if (o->progress)
		print_progress(s, &sum, o->warmup_s, *errors_total);
	return true;
}

static int setup_workers(const struct bench_run_opts *o, struct shared *sh, struct bench_worker *wks,
                         struct bench_conn *conns, uint32_t *precs, struct fent *fifos, char *why, size_t whylen)
{
	uint32_t K = bench_work_precincts(o->work), C = o->connections;
	/* Precincts by connection: connection j owns j, j + C, ... */
	uint32_t pos = 0;
	for (uint32_t j = 0; j < C; j++) {
		struct bench_conn *c = &conns[j];
		c->index = j;
		c->prec = precs + pos;
		for (uint32_t p = j; p < K; p += C)
			precs[pos++] = p;
		c->nprec = (uint32_t)(precs + pos - c->prec);
		c->fifo = fifos + (size_t)j * o->pipeline;
		c->quota = o->batches ? o->batches / C + (j < o->batches % C) : UINT64_MAX;
		if (o->source_addrs) {
			c->has_src = true;
			c->src.sin_family = AF_INET;
			c->src.sin_port = 0;
			c->src.sin_addr.s_addr = htonl(0x7f000001u + j % o->source_addrs);
		}
	}
	/* Workers take connections j % threads, kept contiguous per worker by a stable shuffle. */
	for (uint32_t w = 0; w < o->threads; w++) {
		struct bench_worker *wk = &wks[w];
		wk->sh = sh;
		wk->id = w;
		wk->n = (C - w + o->threads - 1) / o->threads;
		wk->nactive = wk->n;
		wk->secs = calloc(MAX_SECS, sizeof(*wk->secs));
		wk->plist = calloc(wk->n ? wk->n : 1, sizeof(*wk->plist));
		wk->conns = calloc(wk->n ? wk->n : 1, sizeof(*wk->conns));
		wk->priv_stride = (o->target->conn_priv + 15) & ~(size_t)15;
		wk->privs = calloc(wk->n ? wk->n : 1, wk->priv_stride ? wk->priv_stride : 16);
		if (!wk->secs || !wk->plist || !wk->conns || !wk->privs ||
		    !(wk->secs[0] = calloc(1, sizeof(struct bench_sec))))
			return bal__failf(-ENOMEM, why, whylen, "out of memory setting up worker %u", w);
		for (uint32_t i = 0; i < wk->n; i++) {
			struct bench_conn *c = &wk->conns[i];
			*c = conns[(size_t)i * o->threads + w];
			c->wk = wk;
			c->local = i;
			c->priv = wk->privs + (size_t)i * wk->priv_stride;
		}
		int rc = uv_loop_init(&wk->loop);
		if (rc < 0)
			return bal__failf(rc, why, whylen, "uv_loop_init: %s", uv_strerror(rc));
		uv_timer_init(&wk->loop, &wk->tick);
		uv_check_init(&wk->loop, &wk->check);
		rc = uv_async_init(&wk->loop, &wk->go, on_go);
		if (rc < 0)
			return bal__failf(rc, why, whylen, "uv_async_init: %s", uv_strerror(rc));
		wk->tick.data = wk->check.data = wk->go.data = wk;
	}
	return 0;
}

static void collect(const struct bench_run_opts *o, struct shared *sh, struct bench_worker *wks, struct bench_result *r)
{
	uint32_t nsec = 0;
	uint64_t t_last = 0;
	for (uint32_t w = 0; w < o->threads; w++) {
		struct bench_worker *wk = &wks[w];
		bench_sec_merge(&r->total, &wk->meas);
		bench_sec_merge(&r->all, &wk->all);
		r->unsent += wk->unsent;
		r->reconnects += wk->reconnects;
		if (!r->first_error[0] && wk->first_error[0])
			snprintf(r->first_error, sizeof(r->first_error), "%s", wk->first_error);
		if (wk->cur_sec + 1 > nsec)
			nsec = wk->cur_sec + 1;
		if (wk->t_last > t_last)
			t_last = wk->t_last;
		for (size_t i = 0; i < wk->nerrors; i++) {
			size_t j = 0;
			while (j < r->nerrors && strcmp(r->errors[j].name, wk->errors[i].name) != 0)
				j++;
			if (j == r->nerrors) {
				if (r->nerrors == BENCH_ERROR_KINDS)
					j--;
				else
					r->errors[r->nerrors++] = (struct bench_error_count){.n = 0};
				if (!r->errors[j].name[0])
					memcpy(r->errors[j].name, wk->errors[i].name, sizeof(r->errors[j].name));
			}
			r->errors[j].n += wk->errors[i].n;
		}
		if (wk->nunknown) {
			struct bench_unknown *u = realloc(r->unknown, (r->nunknown + wk->nunknown) * sizeof(*u));
			if (u) {
				memcpy(u + r->nunknown, wk->unknown, wk->nunknown * sizeof(*u));
				r->unknown = u;
				r->nunknown += wk->nunknown;
			}
		}
	}
	r->series = calloc(nsec ? nsec : 1, sizeof(*r->series));
	if (r->series) {
		r->nseries = nsec;
		for (uint32_t s = 0; s < nsec; s++)
			for (uint32_t w = 0; w < o->threads; w++)
				if (s <= wks[w].cur_sec && wks[w].secs[s])
					bench_sec_merge(&r->series[s], wks[w].secs[s]);
	}
	/* A timed run's window is fixed; a counted one ends with its last answer. */
	if (!o->batches)
		r->seconds = (double)(sh->t_end - sh->t_meas) / 1e9;
	else
		r->seconds = t_last > sh->t_meas ? (double)(t_last - sh->t_meas) / 1e9 : 0;
	r->warmup_s = o->warmup_s;
	r->send_s = o->batches ? 0 : o->warmup_s + o->duration_s;
	r->acked = sh->acked;
	sh->acked = NULL;
}

int bench_run(const struct bench_run_opts *o, struct bench_result *r, char *why, size_t whylen)
{
	memset(r, 0, sizeof(*r));
	uint32_t K = bench_work_precincts(o->work);
	if (o->connections < 1 || o->connections > K)
		return bal__failf(
		        -EINVAL, why, whylen,
		        "connections %u: must be between 1 and the number of precincts (%u): every connection "
		        "uploads for at least one precinct",
		        o->connections, K);
	if (o->pipeline < 1 || o->pipeline > 65536)
		return bal__failf(-EINVAL, why, whylen, "pipeline %u: must be between 1 and 65536", o->pipeline);
	if (o->threads < 1 || o->threads > o->connections || o->threads > 64)
		return bal__failf(-EINVAL, why, whylen, "threads %u: must be between 1 and min(64, connections %u)",
		                  o->threads, o->connections);
	struct shared sh = {.o = o, .variants = bench_work_variants(o->work), .ballots_per_batch = o->batch_size};
	pthread_mutex_init(&sh.mu, NULL);
	int rc = -ENOMEM;
	struct bench_worker *wks = calloc(o->threads, sizeof(*wks));
	struct bench_conn *conns = calloc(o->connections, sizeof(*conns));
	uint32_t *precs = calloc(K, sizeof(*precs));
	struct fent *fifos = calloc((size_t)o->connections * o->pipeline, sizeof(*fifos));
	sh.next_seq = calloc(K, sizeof(*sh.next_seq));
	sh.acked = calloc((size_t)K * sh.variants, sizeof(*sh.acked));
	if (!wks || !conns || !precs || !fifos || !sh.next_seq || !sh.acked) {
		bal__failf(rc, why, whylen, "out of memory for %u connections x pipeline %u", o->connections,
		           o->pipeline);
		goto free_all;
	}
	for (uint32_t p = 0; p < K; p++)
		sh.next_seq[p] = o->seq_start;
	uint32_t inited = 0;
	rc = setup_workers(o, &sh, wks, conns, precs, fifos, why, whylen);
	for (uint32_t w = 0; w < o->threads; w++)
		if (wks[w].go.data)
			inited = w + 1;
	if (rc < 0)
		goto close_loops;
	for (uint32_t w = 0; w < o->threads; w++) {
		if (pthread_create(&wks[w].tid, NULL, worker_main, &wks[w]) != 0) {
			rc = bal__failf(-EAGAIN, why, whylen, "cannot start worker thread %u", w);
			atomic_store(&sh.abort, true);
			break;
		}
		wks[w].started = true;
	}
	/* Wait until every connection is open (or one failed), then go. */
	while (!atomic_load(&sh.abort) && atomic_load(&sh.ready) + atomic_load(&sh.failed) < o->threads)
		sleep_ms(2);
	if (atomic_load(&sh.failed)) {
		atomic_store(&sh.abort, true);
		pthread_mutex_lock(&sh.mu);
		rc = bal__failf(-ECONNREFUSED, why, whylen, "%s", sh.setup_why[0] ? sh.setup_why : "setup failed");
		pthread_mutex_unlock(&sh.mu);
	}
	double cpu0 = cpu_now();
	sh.t0 = uv_hrtime();
	sh.t_meas = sh.t0 + (uint64_t)(o->warmup_s * 1e9);
	sh.t_end = o->batches ? UINT64_MAX : sh.t_meas + (uint64_t)(o->duration_s * 1e9);
	atomic_thread_fence(memory_order_release);
	for (uint32_t w = 0; w < o->threads; w++)
		if (wks[w].started)
			uv_async_send(&wks[w].go);
	/* Progress: second s is printed once every worker is past it. */
	uint64_t errors_total = 0;
	uint32_t s = 0;
	for (;;) {
		bool all_done = true;
		for (uint32_t w = 0; w < o->threads; w++)
			all_done &= !wks[w].started || atomic_load(&wks[w].finished);
		while (!atomic_load(&sh.abort) && progress_second(wks, o, s, &errors_total))
			s++;
		if (all_done)
			break;
		sleep_ms(20);
	}
	for (uint32_t w = 0; w < o->threads; w++)
		if (wks[w].started)
			pthread_join(wks[w].tid, NULL);
	inited = 0; /* every started worker closed its loop */
	for (uint32_t w = 0; w < o->threads; w++)
		if (!wks[w].started && wks[w].go.data)
			inited = w + 1;
	if (rc == 0) {
		r->cpu_s = cpu_now() - cpu0;
		collect(o, &sh, wks, r);
	}
close_loops:
	for (uint32_t w = 0; w < inited; w++)
		if (!wks[w].started && wks[w].go.data) {
			uv_close((uv_handle_t *)&wks[w].tick, NULL);
			uv_close((uv_handle_t *)&wks[w].check, NULL);
			uv_close((uv_handle_t *)&wks[w].go, NULL);
			uv_run(&wks[w].loop, UV_RUN_DEFAULT);
			uv_loop_close(&wks[w].loop);
		}
free_all:
	if (wks)
		for (uint32_t w = 0; w < o->threads; w++) {
			if (wks[w].secs)
				for (uint32_t i = 0; i <= wks[w].cur_sec; i++)
					free(wks[w].secs[i]);
			free(wks[w].secs);
			free(wks[w].plist);
			free(wks[w].conns);
			free(wks[w].privs);
			free(wks[w].unknown);
		}
	free(wks);
	free(conns);
	free(precs);
	free(fifos);
	free(sh.next_seq);
	free(sh.acked);
	pthread_mutex_destroy(&sh.mu);
	return rc;
}

void bench_result_deinit(struct bench_result *r)
{
	free(r->series);
	free(r->acked);
	free(r->unknown);
	memset(r, 0, sizeof(*r));
}
