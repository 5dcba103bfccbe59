/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon's shared context: configuration, the loaded election, storage,
 * published counters, the committer and the I/O workers, plus the process-wide
 * metrics. One instance lives in main.c; every module reaches it through
 * the worker or connection it is handed.
 *
 * Threads: the main thread fills the context before any other thread starts;
 * the configuration, definition and layout are read-only from then on. The
 * published counters are written by the committer only and read through
 * their seqlock; the metrics, `inflight`, `draining` and `degraded_errno` are
 * atomics any thread may use. This header does not include uv.h: the context
 * knows nothing of the loops.
 */
#ifndef BAL_DAEMON_H
#define BAL_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/tlog.h"
#include "core/ballot.h"
#include "core/tally.h"

struct bal_store;
struct bal_amend;
struct bal_committer;
struct bal_worker;
struct bal_cache;

/** Every limit is configurable; defaults are in config.c. */
struct bal_config {
	const char *definition; /**< path, or NULL for the embedded demo election */
	const char *data_dir;
	char host[64];
	unsigned port;     /**< 0 = pick a free port */
	size_t map_size;   /**< LMDB map size, bytes */
	size_t max_body;   /**< request body cap, bytes (413 beyond) */
	size_t max_header; /**< request line + headers cap, bytes (431 beyond) */
	size_t max_output; /**< queued response bytes per connection before it is closed */

	/* What one client may cost; a connection is judged on its own, never by its address. */
	bool max_body_given;      /**< --max-body was given; else bal_config_derive() sets it from the definition */
	unsigned max_failures;    /**< refused batches (400/401/413/422) per connection before it is closed */
	size_t max_conn_memory;   /**< bodies + queued output of a connection before it is read no further */
	size_t max_client_memory; /**< the same over every connection before new batches get 503 */
	unsigned send_timeout_ms; /**< a connection owing output its client does not read is closed */
	size_t queue_bytes;       /**< batch bytes waiting for commit before 503 */

	unsigned max_connections;
	unsigned max_pipeline;           /**< requests in flight per connection before reading pauses */
	unsigned idle_timeout_ms;        /**< connection with no request in progress */
	unsigned request_timeout_ms;     /**< from a request's first byte to its last */
	unsigned queue_depth;            /**< batches waiting for commit before 503 */
	unsigned group_max;              /**< batches per write transaction at most */
	uint64_t snapshot_every;         /**< batches between counter snapshots */
	unsigned snapshot_ms;            /**< ms between counter snapshots (if anything changed) */
	unsigned threads;                /**< I/O threads */
	bool auth;                       /**< verify Ed25519 signatures of precincts that have a key */
	bool null_mode;                  /**< ack every POST at once: measures the HTTP ceiling */
	unsigned drain_timeout_ms;       /**< SIGTERM: longest wait for in-flight batches */
	unsigned conflicts_per_seq;      /**< conflicting versions stored per (precinct, seq) */
	unsigned conflicts_per_precinct; /**< conflicting versions stored per precinct */
	unsigned max_heavy_queries;      /**< requests waiting for an answer being built, per process, before 503 */
	const char *log_key_path;        /**< --log-key: the log's secret key file; NULL: none (or the demo's) */
	unsigned stall_ms;               /**< /healthz: a committer busy this long with one set of jobs is stalled */
	uint64_t precinct_quota;         /**< journal bytes per precinct; 0 = derived (bal_config_precinct_quota()) */
	bool demo;                       /**< the embedded demo election (definition is NULL) */
};

/** Fills `c` with the default of every option (config.c). */
void bal_config_defaults(struct bal_config *c);

/** Why the daemon closed a connection of its own accord (ballotd_connections_closed_total). */
enum bal_close_reason {
	BAL_CLOSE_FAILURES = 0,    /**< cfg.max_failures refused batches */
	BAL_CLOSE_SEND_TIMEOUT,    /**< output unread for cfg.send_timeout_ms */
	BAL_CLOSE_MAX_OUTPUT,      /**< more than cfg.max_output bytes unread */
	BAL_CLOSE_REQUEST_TIMEOUT, /**< a request not whole within cfg.request_timeout_ms */
	BAL_CLOSE_REASONS
};

/** Answers built once per journal position and shared (daemon/cache.h). */
enum bal_answer {
	BAL_ANSWER_RESULTS_CSV = 0, /**< GET /v1/results.csv */
	BAL_ANSWER_SNAPSHOT,        /**< GET /v1/snapshot */
	BAL_ANSWER_SEATS,           /**< GET /v1/seats */
	BAL_ANSWER_KINDS            /**< also the kind of a private answer (a journal page) */
};

/** Process-wide counters, updated with relaxed atomics from any thread.
 * Counters bumped on every request live per I/O worker instead
 * (bal_worker_http_count()): one shared line written by every thread at
 * that rate would bounce between the cores. The committer's per-batch
 * counters start a cache line of their own. */
struct bal_metrics {
	_Alignas(64) uint64_t batches_accepted;
	uint64_t batches_duplicate;
	uint64_t batches_conflict;
	uint64_t batches_rejected;   /**< 400/401/413/422 before the committer, and 422 overflow */
	uint64_t batches_unstored;   /**< 503/507: not stored, not acked, client must retry */
	uint64_t batches_over_quota; /**< 507: the precinct's journal quota is used up */
	uint64_t ballots_accepted;
	uint64_t amendments_accepted;
	uint64_t amendments_duplicate;
	uint64_t amendments_rejected; /**< 400/401/403/409/422 */
	uint64_t amendments_unstored; /**< 503/507 */
	uint64_t commits;
	uint64_t commit_failures;
	uint64_t commit_ns_total;
	uint64_t group_batches_total;
	uint64_t snapshots;
	_Alignas(64) uint64_t connections_open;
	uint64_t connections_total;
	uint64_t connections_refused;

	/* The limits on what clients may cost, when they act. */
	uint64_t connections_closed[BAL_CLOSE_REASONS];
	uint64_t connection_memory_pauses; /**< reading paused: cfg.max_conn_memory held by the connection */
	uint64_t client_memory_refused;    /**< 503: cfg.max_client_memory held for clients already */
	uint64_t queue_bytes_refused;      /**< 503: cfg.queue_bytes waiting for commit already */

	uint64_t queries;
	/* per enum bal_answer, [BAL_ANSWER_KINDS] for private answers (never cached: every one a miss) */
	uint64_t answer_hits[BAL_ANSWER_KINDS + 1];   /**< served from the cache */
	uint64_t answer_misses[BAL_ANSWER_KINDS + 1]; /**< not cached at the position asked */
	uint64_t answer_builds[BAL_ANSWER_KINDS + 1]; /**< answers built */
	uint64_t heavy_refused;                       /**< 503: cfg.max_heavy_queries requests waiting already */
};

#define BAL_METRIC_ADD(field, n) __atomic_fetch_add(&(field), (n), __ATOMIC_RELAXED)
#define BAL_METRIC_SUB(field, n) __atomic_fetch_sub(&(field), (n), __ATOMIC_RELAXED)
#define BAL_METRIC_GET(field)    __atomic_load_n(&(field), __ATOMIC_RELAXED)

struct bal_daemon {
	struct bal_config cfg;
	struct bal_defn *defn;     /**< owned; immutable after load */
	struct bal_layout *layout; /**< owned; immutable */
	struct bal_store *store;   /**< owned */
	struct bal_amend *amend;   /**< owned: the effective definition (daemon/amend.h), opened with the store */
	struct bal_published pub;  /**< written by the committer only */
	struct bal_committer *committer;
	struct bal_cache *cache;     /**< shared answers and their reader thread; NULL: built per request */
	struct bal_worker **workers; /**< cfg.threads of them (NULL where creation failed) */
	unsigned nstarted;           /**< workers[0..nstarted) have a running thread */
	struct bal_metrics metrics;
	uint64_t inflight;          /**< batches handed to the committer and not yet answered */
	uint64_t queued_bytes;      /**< bytes of the batches in `inflight` (cfg.queue_bytes) */
	uint64_t client_memory;     /**< bytes held for connections: bodies, owned output, held input */
	int draining;               /**< set by SIGTERM: new batches get 503 */
	int degraded_errno;         /**< last commit failure (-ENOSPC ...), 0 when healthy */
	uint64_t committer_busy_ms; /**< monotonic ms the committer took its current jobs, 0 when idle */
	uint64_t started_unix_ms;
	double recovery_ms;
	uint32_t keyless;            /**< precincts without a public key in the definition */
	struct bal_tlog_key log_key; /**< signs tree heads; immutable after startup */
	char bound_host[64];
	unsigned bound_port;
};

/**
 * Main thread, at startup: opens cfg.data_dir as the store of the loaded
 * definition (d->defn) into d->store, with the commission's amendments as
 * the records of the pseudo-precinct BAL_COMMISSION_ID (storage index
 * d->defn->nprecincts, after every precinct, without a quota), and the
 * effective definition before any amendment into d->amend (recovery applies
 * the journaled ones). Logs why it cannot.
 * @return 0 or the storage error, -ENOMEM.
 */
int bal_daemon_open_store(struct bal_daemon *d);

/** Main thread, at teardown: closes d->store and frees d->amend (NULL is fine). */
void bal_daemon_close_store(struct bal_daemon *d);

/**
 * Main thread, at startup: publishes `ctr` (bal_layout_nslots() counters,
 * copied) as the counters at journal `position` and starts the committer
 * from there (d->pub, d->committer).
 * @return 0, -ENOMEM, or the committer's error.
 */
int bal_daemon_start_committer(struct bal_daemon *d, const uint64_t *ctr, uint64_t position);

#endif
