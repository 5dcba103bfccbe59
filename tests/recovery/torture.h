/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers shared by the recovery (torture) tests: `ballotctl push` in the
 * background, comparison of a /v1/snapshot answer with push's "expected"
 * object, the per-precinct "every acknowledged seq journaled once" check, a
 * daemon start that does not wait for "listening on" (to kill it while it
 * recovers), and parsing of the daemon's recovery log line.
 *
 * Builds on tests/integration/harness.h; shares nothing with the daemon's
 * code beyond the definition loader.
 */
#ifndef BAL_TEST_TORTURE_H
#define BAL_TEST_TORTURE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/ballot.h"
#include "tests/integration/harness.h"

/** One `ballotctl push --json` run. Zeroed fields take the defaults noted. */
struct tr_push {
	const char *defn;     /**< definition path (required) */
	unsigned port;        /**< ballotd port (required) */
	uint64_t key_seed;    /**< demo keys of the definition */
	uint64_t seed;        /**< content seed */
	uint64_t batches;     /**< required */
	unsigned batch_size;  /**< default 20 */
	unsigned connections; /**< default 8 */
	unsigned pipeline;    /**< default 8 */
	unsigned precincts;   /**< 0: every precinct of the definition */
	unsigned retry_for;   /**< seconds; 0: no retries */
	char out[600];        /**< JSON output file (required) */
	pid_t pid;            /**< set by tr_push_start */
};

/** Forks and execs ballotctl push with stdout to p->out. 0 or -1. */
int tr_push_start(struct tr_push *p);

/**
 * Waits for the push and parses its JSON.
 * @param[out] status  exit status (or 128 + signal); may be NULL.
 * @return the JSON object (caller decrefs), NULL if the output does not parse.
 */
json_t *tr_push_wait(struct tr_push *p, int *status);

/** Runs a push to completion: tr_push_start + tr_push_wait. */
json_t *tr_push_run(struct tr_push *p, int *status);

/**
 * Compares a /v1/snapshot answer with push's "expected" object: turnout,
 * position == expected batches, every contest's national and per-district
 * votes. Prints the first difference. true when equal.
 */
bool tr_snapshot_matches(json_t *snap, json_t *expected);

/** GET /v1/snapshot and tr_snapshot_matches. */
bool tr_totals_match(unsigned port, json_t *expected);

/**
 * The log after recovery: GET /v1/log/sth is signed by `log_pk` (the key
 * /v1/log/key serves too) over the root RFC 6962 gives the journal records
 * 1..tree_size (read back from /v1/journal and hashed here), and tree_size
 * is the journal's position. Prints the first difference. true when all hold.
 */
bool tr_log_matches(unsigned port, const uint8_t log_pk[32]);

/** Position of GET /v1/snapshot; 0 when unreachable. */
uint64_t tr_position(unsigned port);

/**
 * Every precinct among the first `k` of `defn_path` must report exactly the
 * seqs push sends for `total` batches (batch i goes to precinct i mod k with
 * seq 1 + i div k): accepted_seqs [[1, n]] (or none), accepted_batches n, no
 * gaps. Prints the first difference. true when all match.
 */
bool tr_precincts_exact(unsigned port, const char *defn_path, uint32_t k, uint64_t total);

/**
 * Sum of accepted_batches over the first `k` precincts of `defn_path`;
 * -1 on a failed request.
 */
long long tr_precincts_accepted(unsigned port, const char *defn_path, uint32_t k);

/**
 * th_start() for the recovery tests: the same (log "<data>.N.log", port from
 * "listening on"), but the daemon dies with the test process, and it may take
 * up to 60 s to get ready (sanitizer builds recovering long journals).
 * @return 0, or -1 (its log is printed).
 */
int tr_start(struct th_daemon *td, const char *defn, const char *data, unsigned port, const char *const *extra);

/**
 * Polls `log` (every 0.5 ms) until it holds the whole "listening on" line, or the process
 * `pid` exits or `timeout_ms` passes.
 * @return milliseconds since `t0_ms` (tr_now_ms() taken before the spawn), or -1.
 */
double tr_wait_listening(const char *log, pid_t pid, double t0_ms, double timeout_ms);

/** Reads a whole file into a malloc'd NUL-terminated string ("" if missing). */
char *tr_slurp(const char *path);

/** The daemon's "recovery: position P: snapshot at S + R journal entries replayed in X ms" line. */
struct tr_recovery {
	uint64_t position, snapshot, replayed;
	double ms;
};

/** Parses the recovery line out of a daemon log. true when found. */
bool tr_recovery_parse(const char *log, struct tr_recovery *r);

/** The value of the unlabelled metric `name` in GET /metrics; -1 if missing. */
double tr_metric(unsigned port, const char *name);

/** What the daemon's committer thread ("ballotd-commit") is doing at a given instant. */
enum tr_committer {
	TR_COMMITTER_IDLE,  /**< waiting for batches (futex) */
	TR_COMMITTER_CPU,   /**< running: building a write txn (dedup, appends, snapshot copy) */
	TR_COMMITTER_WRITE, /**< in a write system call: LMDB flushing pages */
	TR_COMMITTER_SYNC,  /**< in fsync/fdatasync: the commit's sync */
	TR_COMMITTER_OTHER, /**< another system call, or not found */
	TR_COMMITTER_STATES
};

/** Samples /proc/<pid>/task/<tid>/syscall of the committer thread (Linux). */
enum tr_committer tr_committer_state(pid_t pid);

/** Milliseconds on CLOCK_MONOTONIC. */
double tr_now_ms(void);

/** BAL_CRASH_KILLS, or `dflt` when unset or not a positive number. */
int tr_kills(int dflt);

#endif
