/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ballot-bench load engine: N worker threads, each with its own libuv
 * loop and a share of the connections (connection j runs on worker j % N).
 * Every connection owns the precincts p with p % connections == j, takes
 * them round-robin and gives each its own seq stream, with up to `pipeline`
 * requests in flight (answers come back in order: HTTP/1.1, libpq pipeline
 * mode and Redis all answer in order, so one FIFO per connection matches them).
 *
 * Closed loop (rate 0): a connection sends as soon as it has room in its
 * window; latency runs from the send. Open loop (rate > 0): request k of a
 * worker is due at t0 + k / (its share of the rate) on connection k mod n,
 * whether or not earlier answers came back; a due request waits for room in
 * its connection's window, and its latency runs from when it was due, so a
 * stalled server shows as latency instead of fewer samples (no coordinated
 * omission). Requests still waiting when the run ends are counted as unsent.
 *
 * Targets (ballotd over HTTP, PostgreSQL, Redis) plug in through struct
 * bench_target: the engine decides what to send and when, the target writes
 * requests and reports answers. Nothing is allocated per request by the
 * engine once the connections are open (per-second records are allocated
 * once a second).
 *
 * Depends on libuv and bench/work.h, bench/stats.h.
 */
#ifndef BAL_BENCH_LOADGEN_H
#define BAL_BENCH_LOADGEN_H

#include "bench/stats.h"
#include "bench/work.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

struct bench_conn;

enum bench_outcome {
	BENCH_NEW, /**< stored by this request */
	BENCH_DUP, /**< already stored before (DUPLICATE) */
	BENCH_FAIL /**< rejected or failed; not stored */
};

/**
 * A system under test. Every hook runs on the connection's worker thread
 * except setup/teardown (main thread, before/after the workers).
 */
struct bench_target {
	const char *name;
	size_t conn_priv; /**< bytes of per-connection state, zeroed before each open() */
	/** Once before any connection (schema, scripts). Optional. @return 0 or negative with `why`. */
	int (*setup)(void *cfg, char *why, size_t whylen);
	/** Per worker, before its first open(); *wpriv is the target's. Optional. */
	int (*worker_init)(void *cfg, struct bench_work *w, void **wpriv);
	void (*worker_deinit)(void *wpriv);
	/** Starts connecting; the target later calls bench_conn_ready() or
	 * bench_conn_lost() (possibly from inside open()). */
	void (*open)(struct bench_conn *c);
	/** Writes `n` >= 1 requests, taking each from bench_conn_next(). */
	void (*send)(struct bench_conn *c, uint32_t n);
	/** Closes the connection; calls bench_conn_closed() once every handle is closed. */
	void (*close)(struct bench_conn *c);
	void *cfg; /**< the target's configuration, passed to setup and worker_init */
};

struct bench_run_opts {
	const struct bench_target *target;
	struct bench_work *work;
	struct sockaddr_storage server; /**< for socket targets; family AF_UNSPEC otherwise */
	uint32_t connections;           /**< 1..precincts */
	uint32_t pipeline;              /**< >= 1 */
	uint32_t threads;               /**< worker threads, >= 1 */
	uint32_t source_addrs;          /**< 0: no bind; else connection j binds 127.0.0.(1 + j % n) */
	double duration_s;              /**< sending time after warm-up when batches == 0 */
	double warmup_s;                /**< answers in the first warmup_s are not in the totals */
	double rate;                    /**< batches/s offered (open loop); 0 = closed loop */
	uint64_t batches;               /**< > 0: send exactly this many, then stop */
	uint64_t seq_start;             /**< first seq of every precinct */
	uint32_t timeout_ms;            /**< an open connection without an answer for this long is lost */
	uint32_t batch_size;            /**< ballots per batch, for the ballots counters */
	bool progress;                  /**< one line per second on stderr */
};

struct bench_error_count {
	char name[32]; /**< "503", "rejected", "connection", "pg:40P01" ... */
	uint64_t n;
};

#define BENCH_ERROR_KINDS 32

/** A (precinct, seq) whose answer was lost: it may or may not be stored. */
struct bench_unknown {
	uint32_t p;
	uint64_t seq;
};

struct bench_result {
	struct bench_sec total;   /**< answers inside the measured window */
	double seconds;           /**< length of the measured window */
	struct bench_sec all;     /**< every answer, warm-up and drain included */
	struct bench_sec *series; /**< [nseries] per second since t0 */
	size_t nseries;
	double warmup_s;
	double send_s; /**< timed runs: warm-up + duration (later seconds are the drain); else 0 */
	struct bench_error_count errors[BENCH_ERROR_KINDS]; /**< measured window */
	size_t nerrors;
	uint64_t *acked; /**< [precincts * variants]: BENCH_NEW answers per (p, variant) */
	struct bench_unknown *unknown;
	size_t nunknown;
	uint64_t unsent; /**< open loop: due requests never sent (backlog at the end) */
	uint64_t reconnects;
	double cpu_s; /**< CPU time of this process during the run */
	char first_error[256];
};

/**
 * Connects every connection (each to be ready before t0), runs, drains and
 * closes. Blocks. Prints the progress lines when asked.
 * @return 0 when the run happened (whatever the answers); a negative error
 *         with `why` when it could not start (a connection failed to open,
 *         bad options, out of memory). `r` is filled on 0; release it with
 *         bench_result_deinit() in both cases.
 */
int bench_run(const struct bench_run_opts *o, struct bench_result *r, char *why, size_t whylen);
void bench_result_deinit(struct bench_result *r);

/* ---- for targets ---------------------------------------------------------- */

/** Takes the next request of the connection: workload precinct and seq. */
void bench_conn_next(struct bench_conn *c, uint32_t *p, uint64_t *seq);
/** The oldest request in flight was answered. `err_class` names a BENCH_FAIL
 * (copied, at most 31 bytes); NULL otherwise. */
void bench_conn_answer(struct bench_conn *c, enum bench_outcome o, const char *err_class);
/** Request bytes written. */
void bench_conn_wrote(struct bench_conn *c, size_t bytes);
void bench_conn_ready(struct bench_conn *c);
/** The connection failed: requests in flight become unknown; the engine calls close(). */
void bench_conn_lost(struct bench_conn *c, const char *why);
void bench_conn_closed(struct bench_conn *c);

uv_loop_t *bench_conn_loop(struct bench_conn *c);
struct bench_work *bench_conn_work(struct bench_conn *c);
void *bench_conn_priv(struct bench_conn *c);
void *bench_conn_wpriv(struct bench_conn *c);
uint32_t bench_conn_index(const struct bench_conn *c);
/** The server address, or NULL for targets without one. */
const struct sockaddr *bench_conn_server(const struct bench_conn *c);
/** The source address to bind, or NULL (no --source-addrs). */
const struct sockaddr_in *bench_conn_source(const struct bench_conn *c);

#endif
