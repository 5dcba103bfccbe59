/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Integration-test harness: starts the real ballotd (build/ballotd) on
 * 127.0.0.1 with an ephemeral port and a fresh data directory, talks raw
 * HTTP/1.1 to it over blocking sockets, and compares its snapshot with the
 * independent expected-totals fold of client/expect.h.
 */
#ifndef BAL_TEST_HARNESS_H
#define BAL_TEST_HARNESS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/ballot.h"
#include "client/expect.h"

struct bal_defgen_opts; /* client/defgen.h */

struct th_daemon {
	pid_t pid;
	unsigned port;
	char log[512];
};

struct th_resp {
	int status;
	char head[8192];
	char *body; /* malloc'd, NUL-terminated */
	size_t len;
};

/** A fresh directory under $TMPDIR (or /tmp); caller frees the string. */
char *th_tmpdir(void);
/** rm -rf `dir` (only paths th_tmpdir made). */
void th_rmdir(const char *dir);

/**
 * Starts ballotd with --definition defn --data data --listen 127.0.0.1:port
 * plus `extra` (NULL-terminated, may be NULL); waits for "listening on".
 * @return 0, or -1 if it exited or did not get ready in 15 s (its log is printed).
 */
int th_start(struct th_daemon *td, const char *defn, const char *data, unsigned port, const char *const *extra);
/** Like th_start but expects the daemon to exit; returns its exit status and
 * leaves its log in td->log. */
int th_run_to_exit(struct th_daemon *td, const char *defn, const char *data, const char *const *extra);
/** SIGTERM and wait; returns the exit status (or 128+signal). */
int th_stop(struct th_daemon *td);
/** SIGKILL and wait. */
void th_kill9(struct th_daemon *td);
/** Reads the daemon's log into a malloc'd string. */
char *th_read_log(const struct th_daemon *td);

int th_connect(unsigned port);
/** Writes all of buf. 0 or -1. */
int th_send(int fd, const void *buf, size_t len);
/** Reads one HTTP response. 0, or -1 on EOF/timeout/garbage. */
int th_read_resp(int fd, struct th_resp *r, int timeout_ms);
void th_resp_free(struct th_resp *r);
/** One request on a new connection. `extra` holds whole header lines or is NULL. */
int th_request(unsigned port, const char *method, const char *path, const char *extra, const void *body, size_t len,
               struct th_resp *r);
/** POST /v1/batches, JSON ack. */
int th_post(unsigned port, const void *body, size_t len, struct th_resp *r);
/** GET path and parse the JSON body of a 200 answer, or of /healthz's 503
 * (NULL on failure). */
json_t *th_get_json(unsigned port, const char *path);

/** Writes a generated definition (demo keys of `seed` when keys) into dir;
 * returns the malloc'd path. Its election id is th_election_id(). */
char *th_write_defn(const char *dir, uint32_t precincts, uint32_t districts, uint32_t choices, uint64_t seed,
                    bool keys);

/** Writes the definition `o` describes (client/defgen.h; its registers,
 * bounds, keys and election id as given) into dir; returns the malloc'd
 * path, a new file on every call, or NULL. */
char *th_write_defn_opts(const char *dir, const struct bal_defgen_opts *o);

/** The election id of every definition th_write_defn() writes (static). */
const char *th_election_id(void);

/** Packs `b` (its Batch fields), signs with the demo key of (key_seed,
 * precinct) when sign, wraps in a SignedBatch; malloc'd bytes. A NULL
 * b->election_id is sent as th_election_id(), the election of the daemon
 * under test; "" sends none. */
uint8_t *th_signed_batch(const struct bal_batch *b, bool sign, uint64_t key_seed, size_t *len);

/** Compares a /v1/snapshot answer with the expected fold; prints the first
 * difference. true when equal. */
bool th_snapshot_matches(json_t *snap, const struct bal_defn *d, const struct bal_expect *e);

/** The same where the journal holds more than the folded batches (amendments,
 * voided batches): its position must be `position`. */
bool th_snapshot_matches_at(json_t *snap, const struct bal_defn *d, const struct bal_expect *e, uint64_t position);

/** The test commission key: a fixed Ed25519 key pair (seed of 32 bytes 0xc0). */
void th_commission_keypair(uint8_t pk[32], uint8_t sk[64]);

/**
 * Writes the test commission key into `dir` the way `ballotctl keygen` does:
 * dir/commission.key (mode 0600, for ballotctl amend --commission-key) and
 * dir/commission.key.pub. Returns the malloc'd path of the secret, or NULL.
 */
char *th_write_commission_key(const char *dir);

/** Packs amendment `a` (a NULL election_id is th_election_id()), signs it
 * with `sk` (NULL: no signature) and wraps it in a SignedAmendment;
 * malloc'd bytes. */
uint8_t *th_signed_amendment(const struct bal_amendment *a, const uint8_t *sk, size_t *len);

/** POST /v1/amendments, JSON ack. */
int th_post_amendment(unsigned port, const void *body, size_t len, struct th_resp *r);

/**
 * fork + exec `argv` (argv[0] a path) with stdout truncated into `out` and
 * stderr appended to `err`; NULL inherits the test's, `err` equal to `out`
 * shares it. The child is SIGKILLed if the test process dies first, so a
 * failed assertion never leaves a daemon or uploader behind. Returns the pid.
 */
pid_t th_spawn(const char *const *argv, const char *out, const char *err);

/** Spawns ballotd (th_spawn) with --definition defn (omitted when NULL) --data
 * data --listen 127.0.0.1:port and `extra`, stdout and stderr into `log`;
 * does not wait for it. Returns the pid. */
pid_t th_daemon_spawn(const char *defn, const char *data, unsigned port, const char *const *extra, const char *log);

/**
 * Starts `ballotctl ARGS...` (args NULL-terminated, at most 38) with stdout to
 * `out` (truncated) and stderr appended to `log`; either may be NULL
 * (/dev/null). The child dies with the test process. Returns its pid or -1.
 */
pid_t th_ctl_start(const char *out, const char *log, const char *const *args);
/** Waits for `pid`: its exit status, 128 + signal, or -1. */
int th_wait_exit(pid_t pid);
/** th_ctl_start() and th_wait_exit(). */
int th_ctl_run(const char *out, const char *log, const char *const *args);

/** A scratch directory holding a definition, that definition loaded, and
 * the data directory a daemon of it uses (not created). */
struct th_fixture {
	char *dir;
	char *defn_path;
	struct bal_defn *defn;
	char data[600]; /* dir/data */
	struct th_daemon td;
};

/** Fills f from the definition `o` describes (th_write_defn_opts()); starts
 * nothing. 0, or -1 with the reason on stderr. */
int th_fixture_init(struct th_fixture *f, const struct bal_defgen_opts *o);
/** Stops f->td if it runs (SIGTERM), frees the definition, removes the
 * directory and zeroes f. Returns the daemon's exit status, 0 if none ran. */
int th_fixture_free(struct th_fixture *f);

/** Runs build/ballotd with exactly `args` (NULL-terminated, at most 60;
 * nothing added: no --definition, --demo, --data or --listen), stdout and
 * stderr into a new log under `dir` named in td->log. Waits at most 15 s.
 * Returns its exit status, or -1 if it was still running (then killed). */
int th_run_args_to_exit(struct th_daemon *td, const char *dir, const char *const *args);

/**
 * GET /v1/journal?from=pos&limit=1: the exact SignedBatch bytes journaled at
 * `pos` (malloc'd, length in *len), or NULL if there is none or the record
 * is not well-formed.
 */
uint8_t *th_journal_record(unsigned port, uint64_t pos, size_t *len);

/** An unsigned integer field of GET /healthz (e.g. "map_used"), or UINT64_MAX. */
uint64_t th_healthz_u64(unsigned port, const char *field);

/** Protobuf wire format by hand, for encodings the codec never writes:
 * `v` as a varint at p; returns the bytes written (at most 10). */
size_t th_put_varint(uint8_t *p, uint64_t v);
/** A length-delimited field (number f) holding `data`, at p; returns the
 * bytes written (len + at most 15). */
size_t th_put_field(uint8_t *p, uint32_t f, const void *data, size_t len);

/**
 * The test log key: a fixed Ed25519 key pair (seed of 32 bytes 0x5e), so
 * that fake servers can sign tree heads the real daemon's clients accept.
 */
void th_log_keypair(uint8_t pk[32], uint8_t sk[64]);

/**
 * Writes the test log key into `dir` the way `ballotctl keygen` does:
 * dir/log.key (the seed as 64 hex digits, mode 0600, for ballotd --log-key)
 * and dir/log.key.pub. Neither may exist yet.
 * @param[out] pub_hex  the public key, 64 hex digits and a NUL (may be NULL)
 * @return the malloc'd path of dir/log.key, or NULL (the reason on stderr).
 */
char *th_write_log_key(const char *dir, char pub_hex[65]);

/** Path of a binary in the build tree. */
#define TH_BIN(name) BAL_TEST_BINARY_DIR "/" name

#endif
