/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An I/O worker: one thread running its own libuv loop with its own
 * listening socket, its connections (daemon/conn.h), a wake-up handle for the
 * committer's results and a timer for timeouts and draining.
 *
 * Threads: bal_worker_new(), bal_worker_start() and the functions that free
 * a worker belong to the main thread; bal_worker_deliver()
 * to the committer thread; bal_worker_signal_stop(), bal_worker_index() and
 * bal_worker_http_count() may be called from any thread. Everything else in
 * struct bal_worker is the worker's own loop thread's.
 */
#ifndef BAL_DAEMON_WORKER_H
#define BAL_DAEMON_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "daemon/daemon.h"

struct bal_conn;
struct bal_job;

/** One I/O thread with its loop. */
struct bal_worker {
	struct bal_daemon *d;
	unsigned index;
	uv_loop_t loop;
	uv_thread_t thread;
	uv_tcp_t listener;
	uv_async_t wake;  /**< committer results or a stop request */
	uv_timer_t sweep; /**< idle and request timeouts */
	pthread_mutex_t done_lock;
	struct bal_job *done_head, *done_tail; /**< delivered by the committer */
	struct bal_conn *conns;                /**< every open connection */
	unsigned nconns;
	int stop;              /**< atomic: 1 stop accepting, 2 close everything */
	uint64_t hard_stop_at; /**< loop time of the first hard-stop check */
	bool listening;
	struct bal_arena arena; /**< per-request decode arena */
	/** HTTP responses by status class ([2] = 2xx ... [5] = 5xx): written by
	 * this worker's thread only (relaxed atomic stores), read by any. */
	uint64_t http_status[6];
	uint64_t *scratch;    /**< counter copy for queries (nslots) */
	char rbuf[64 * 1024]; /**< read buffer shared by this worker's connections */
	bool rbuf_busy;
};

/**
 * Main thread: creates worker `index` of `d` around the bound socket
 * `listen_fd` (adopted and listened on), with its loop, wake-up handle and
 * sweep timer. No thread runs yet.
 * @return 0, -ENOMEM or a libuv error (the socket cannot be listened on).
 */
int bal_worker_new(struct bal_daemon *d, unsigned index, int listen_fd, struct bal_worker **out);

/** Main thread: starts the worker's thread ("ballotd-ioN"), which runs its loop. @return 0 or a libuv error. */
int bal_worker_start(struct bal_worker *w);

/** Any thread: stop accepting; `hard` also closes every connection and ends the loop. */
void bal_worker_signal_stop(struct bal_worker *w, bool hard);

/** Main thread, after bal_worker_signal_stop(w, true): joins the thread and frees the worker. NULL is fine. */
void bal_worker_join_free(struct bal_worker *w);

/**
 * Frees a worker whose loop has ended after a hard stop, whether it ran on
 * the worker's thread (bal_worker_join_free() joins it first) or on the
 * caller's. What the committer delivered since has no one to answer.
 * @return 0, or the libuv error of closing the loop (UV_EBUSY: a handle or a
 *         request was left open; also logged). NULL is fine.
 */
int bal_worker_free(struct bal_worker *w);

/** Main thread: frees a worker whose thread never started (startup failure). NULL is fine. */
void bal_worker_free_unstarted(struct bal_worker *w);

/** Worker thread: connections of this worker with a request not yet answered (for draining). */
unsigned bal_worker_busy(struct bal_worker *w);

/** Any thread: HTTP responses of status class `cls` (1..5) sent by worker `w`. */
uint64_t bal_worker_http_count(const struct bal_worker *w, int cls);

/**
 * Committer thread: takes back a list of finished jobs linked through `next`
 * and wakes the worker's loop to answer them. Never blocks for long.
 */
void bal_worker_deliver(struct bal_worker *w, struct bal_job *head, struct bal_job *tail);

/** Any thread: the worker's index in bal_daemon.workers. */
unsigned bal_worker_index(const struct bal_worker *w);

#endif
