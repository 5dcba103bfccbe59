/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ballotctl internals: the subcommands and the option helpers they share.
 * The tool talks to ballotd only over HTTP (client/); it shares no counting
 * code with the daemon.
 */
#ifndef BALLOTCTL_H
#define BALLOTCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/ballot.h"

/** Exit codes: 0 success; 1 the operation failed (e.g. a batch was not
 * acknowledged, the server is unreachable); 2 bad command line; 3 (monitor)
 * the log is proven inconsistent: a fork or a rollback. */
enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_FORK = 3 };

int cmd_gen_definition(int argc, char **argv);
int cmd_push(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_spool_batches(int argc, char **argv);
int cmd_upload(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
int cmd_verify_receipt(int argc, char **argv);
int cmd_monitor(int argc, char **argv);
int cmd_amend(int argc, char **argv);

/** Parses an unsigned decimal number of `flag` in [min, max]; on error prints
 * "ballotctl: --flag VALUE: ..." to stderr and returns false. */
bool opt_u64(const char *flag, const char *text, uint64_t min, uint64_t max, uint64_t *out);
bool opt_u32(const char *flag, const char *text, uint32_t min, uint32_t max, uint32_t *out);
bool opt_double(const char *flag, const char *text, double min, double max, double *out);

/** Parses a duration: a number with an optional unit ms, s (the default), m
 * or h, in [min_s, max_s] seconds; errors as opt_u64(). */
bool opt_duration(const char *flag, const char *text, double min_s, double max_s, double *out_s);

/**
 * Parses a --server value with bal_cli_server(): HOST:PORT, [v6addr]:PORT or
 * http://HOST:PORT with an optional trailing '/'; https:// is refused. Writes
 * HOST:PORT to `out` (BAL_HTTP_SERVER_MAX bytes are enough); on error prints
 * one line, "ballotctl CMD: --server ...", and returns false.
 */
bool opt_server(const char *cmd, const char *text, char *out, size_t outlen);

/** After getopt_long() returned '?': bal_cli_bad_option()'s one line,
 * "ballotctl CMD: unknown option ..." or "... needs a value". */
void opt_bad(const char *cmd, char **argv);

/** After getopt_long(): true iff no operands are left; else prints
 * "ballotctl CMD: unexpected argument ..." and returns false. */
bool opt_no_operands(const char *cmd, int argc, char **argv);

/**
 * Finds a definition file: `path` as given, else (when relative) under the
 * source tree ballotctl was built from. Writes the path that exists to `out`
 * and returns true; false (and prints both tries) when neither exists.
 */
bool find_definition(const char *path, char *out, size_t outlen);

/**
 * The election id of a definition file (found as find_definition() does)
 * into `id`; false after printing why.
 */
bool definition_election_id(const char *cmd, const char *path, char *id, size_t idlen);

/** "1,234,567" */
const char *fmt_count(uint64_t v, char buf[32]);

/*
 * The upload spool (spool.c): a directory of batch files, one serialized
 * SignedBatch each, named `<precinct>-<seq>.pb` (any name ending in ".pb"
 * not starting with '.' is a batch). Rejected batches go to `rejected/` with
 * `<name>.reason` beside them. Every function fills `why` (naming the path
 * and the system error) when it fails and returns 0 or a negative errno.
 */
struct spool {
	const char *path; /**< as given; borrowed */
	int fd;           /**< the directory; holds the flock when opened with `lock` */
	int rejected_fd;  /**< rejected/, -1 until the first rejection */
};

/** One batch file found by spool_scan(). */
struct spool_entry {
	char *name;        /**< malloc'd */
	bool numbered;     /**< the name is `<precinct>-<seq>.pb` */
	uint32_t precinct; /**< when numbered */
	uint64_t seq;      /**< when numbered */
};

/** Owns the names; a zeroed list is empty. */
struct spool_list {
	struct spool_entry *v;
	size_t n, cap;
};

/** Parses `<precinct>-<seq>.pb` (decimal, seq >= 1); false for any other name. */
bool spool_name_parse(const char *name, uint32_t *precinct, uint64_t *seq);

/**
 * Opens (creating if missing, mode 0755) the spool directory. With `lock`,
 * takes an exclusive flock on it: -EWOULDBLOCK when another uploader holds it.
 * The lock goes with the process (a SIGKILL releases it).
 */
int spool_open(struct spool *s, const char *path, bool lock, char *why, size_t whylen);
/** Closes the descriptors (and so releases the lock); safe twice. */
void spool_close(struct spool *s);
/** fsync of the spool directory. */
int spool_sync(struct spool *s, char *why, size_t whylen);

/** Lists the batch files (regular files only), sorted by (precinct, seq), then
 * other names by strcmp after them. Replaces the list's content. */
int spool_scan(struct spool *s, struct spool_list *out, char *why, size_t whylen);
/** Frees the names, keeps the array. */
void spool_list_clear(struct spool_list *l);
/** Frees everything; the list is empty and reusable afterwards. */
void spool_list_deinit(struct spool_list *l);

/**
 * fsyncs a batch file and reads it whole into a malloc'd buffer (caller frees).
 * @return 0; -ENOENT (gone), -EFBIG (over `max` bytes), -errno of open,
 *         fsync or read, -ENOMEM.
 */
int spool_read(struct spool *s, const char *name, size_t max, uint8_t **buf, size_t *len, char *why, size_t whylen);

/** Deletes a batch file (gone already is fine), then fsyncs the directory. */
int spool_remove(struct spool *s, const char *name, char *why, size_t whylen);

/**
 * Writes a batch file durably: `.<name>.tmp`, fsync, rename to `name` without
 * replacing. The directory is not synced (spool_sync() once after many).
 * @return 0 written; 1 `name` already held these exact bytes (nothing
 *         changed); -EEXIST it holds other bytes (kept); -errno.
 */
int spool_put(struct spool *s, const char *name, const void *buf, size_t len, char *why, size_t whylen);

/**
 * Moves batch file `name` to rejected/ (created on first use) with `reason`
 * written to `<dest>.reason` first, both fsynced, then both directories.
 * `dest` is `name`, or `name.N` when an earlier rejection took that name.
 * @param[out] moved_to  `dest`
 */
int spool_reject(struct spool *s, const char *name, const char *reason, char moved_to[256], char *why, size_t whylen);

/** Removes reason temp files a killed uploader left in rejected/. Best effort. */
void spool_clean_tmp(struct spool *s);

/*
 * The transparency log as its observers see it (logapi.c): GET /v1/log/...
 * answers parsed, proofs fetched and checked with client/logcheck.h. Every
 * function returns 0; -ENOENT for a 404 (no such head); -EPROTO for an
 * answer that is not what the API promises; -errno of the request; or, for
 * the checks, BAL_EAUTH / BAL_ECORRUPT when the log is caught out. `why`
 * names the request or the check.
 */

/** The pinned log key (--server-key) and the election its heads are for. */
struct log_trust {
	uint8_t key[32];
	char key_hex[65];
	char election_id[257];
};

/** Parses --server-key HEX|FILE into t->key and t->key_hex; false after
 * printing "ballotctl CMD: --server-key ...". */
bool opt_server_key(const char *cmd, const char *text, struct log_trust *t);

/**
 * GET /v1/log/key: the server's election id into t->election_id, after
 * checking that its public key is the pinned t->key (BAL_EAUTH if not).
 */
int log_fetch_election(const char *server, struct log_trust *t, int timeout_ms, char *why, size_t whylen);

/** GET /v1/log/sth (tree_size 0) or /v1/log/sth?tree_size=N, not verified. */
int log_fetch_head(const char *server, uint64_t tree_size, int timeout_ms, struct bal_tree_head *h, char *why,
                   size_t whylen);

/** GET /v1/log/sth... and its signature checked under `t`. */
int log_fetch_signed_head(const char *server, const struct log_trust *t, uint64_t tree_size, int timeout_ms,
                          struct bal_tree_head *h, char *why, size_t whylen);

/**
 * Checks that head `older` is a prefix of head `newer` (both already
 * verified): equal sizes need equal roots; a smaller `newer` is a rollback;
 * otherwise GET /v1/log/proof/consistency?first=..&second=.. from `server`
 * and its check. BAL_ECORRUPT means the two heads cannot both be the log's.
 */
int log_check_consistent(const char *server, const struct bal_tree_head *older, const struct bal_tree_head *newer,
                         int timeout_ms, char *why, size_t whylen);

/** "2024-03-01T12:00:00.123Z" for a Unix time in ms. */
const char *log_time(uint64_t ms, char buf[32]);

#endif
