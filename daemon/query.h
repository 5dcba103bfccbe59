/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The read-only endpoints: /v1/snapshot, /v1/precincts/{id}, /v1/seats,
 * /v1/results.csv, /v1/journal, /healthz and /metrics, and the answers to
 * unknown paths and methods.
 *
 * Threads: the loop thread of the connection's worker; the builders of the
 * heavy answers run on the reader thread (daemon/cache.h).
 */
#ifndef BAL_DAEMON_QUERY_H
#define BAL_DAEMON_QUERY_H

#include <stdint.h>

struct bal_http_req;
struct bal_req;

/**
 * Answers every request that is not POST /v1/batches; leaves the request
 * READY, or WAITING for an answer being built (daemon/cache.h), which
 * makes it READY and flushes the connection once it is there.
 */
void bal_query_request(struct bal_req *req, const struct bal_http_req *head);

/** A WAITING request is being reset (its connection is gone): it stops waiting. */
void bal_query_abandon(struct bal_req *req);

struct bal_text;

/** Answers `status` with the JSON text `b` (taken over), or 503 if building it ran out of memory. */
void bal_query_text(struct bal_req *req, int status, struct bal_text *b);

/** Answers `status` with {"error": the formatted reason}. */
void bal_query_error(struct bal_req *req, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/**
 * A number in a path or query: canonical decimal only (no sign, no leading
 * zero, no spaces), at most `max`. Two spellings of one value would be two
 * cache keys and two log lines for one resource. 0 and *out, or -1.
 */
int bal_query_number(const char *s, uint64_t max, uint64_t *out);

#endif
