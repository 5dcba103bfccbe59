/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the hostile-client suites observe of a running ballotd from outside:
 * the clock, its resident memory, whether a socket was closed, one metric,
 * a line of its log. Blocking calls, for tests only.
 */
#ifndef BAL_TEST_PROBE_H
#define BAL_TEST_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tests/integration/harness.h"

/** The daemon of a test, its election and its scratch directory. */
struct tp_suite {
	char *dir;
	char *defn_path;
	struct bal_defn *defn;
	struct th_daemon td;
};

/**
 * Makes a scratch directory, writes a definition of `precincts` precincts in
 * 3 districts with `choices` choices per contest and the demo keys of
 * `key_seed` (th_write_defn(): unbounded precincts), and starts ballotd on
 * it (tp_suite_run()). Returns 0, or -1 with the reason in `why`.
 */
int tp_suite_start(struct tp_suite *s, uint32_t precincts, uint32_t choices, uint64_t key_seed,
                   const char *const *extra, char *why, size_t whylen);

/** Makes the scratch directory of `s` (s->dir). Returns 0 or -1. */
int tp_suite_dir(struct tp_suite *s);

/** Loads the definition at `defn_path` (copied) and starts ballotd on it with
 * data in s->dir and `extra` arguments. Returns 0, or -1 with the reason in `why`. */
int tp_suite_run(struct tp_suite *s, const char *defn_path, const char *const *extra, char *why, size_t whylen);

/** Stops the daemon (SIGTERM) if it runs, frees and removes everything of
 * `s`, and clears it. Returns the daemon's exit status (0 if none ran). */
int tp_suite_stop(struct tp_suite *s);

/** CLOCK_MONOTONIC in milliseconds. */
uint64_t tp_now_ms(void);

/** Resident set of a process in KiB (VmRSS of /proc/PID/status), or -1. */
long tp_rss_kb(pid_t pid);

/**
 * How much RSS growth a check allows: `release_kb` in a plain build. ASan
 * keeps freed memory in quarantine (up to 256 MB) and maps shadow memory as
 * it is touched, so RSS there says little about leaks; LeakSanitizer checks
 * those at exit instead, and the bound only catches runaway growth.
 */
long tp_rss_allowance_kb(long release_kb);

/** Whether this build runs under AddressSanitizer (the daemon too). */
bool tp_asan(void);

/**
 * Reads and discards until the peer closes (EOF or reset). Returns the
 * milliseconds that took, or -1 if the connection is still open after
 * timeout_ms.
 */
long tp_wait_closed(int fd, int timeout_ms);

/** The value of the first /metrics sample line that starts with `name` and a
 * space (`name` may carry labels), or -1. */
long long tp_metric(unsigned port, const char *name);

/** Whether the daemon's log holds `needle`. */
bool tp_log_has(const struct th_daemon *td, const char *needle);

/** POSTs `body` to /v1/batches on an open connection; fills r (10 s at most). 0 or -1. */
int tp_post_on(int fd, const void *body, size_t len, struct th_resp *r);

/** One GET on an open connection; returns the status (or -1). */
int tp_get_on(int fd, const char *path);

/** A valid BALLOTS batch of `ballots` ballots for precinct index p of `defn`,
 * signed with the demo key of `key_seed`; malloc'd bytes, or NULL. */
uint8_t *tp_batch(const struct bal_defn *defn, uint64_t key_seed, uint32_t p, uint64_t seq, uint32_t ballots,
                  size_t *len);

#endif
