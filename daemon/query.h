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

#endif
