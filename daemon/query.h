/*
 * The read-only endpoints: /v1/snapshot, /v1/precincts/{id}, /v1/seats,
 * /v1/results.csv, /v1/journal, /healthz and /metrics, and the answers to
 * unknown paths and methods.
 *
 * Threads: the loop thread of the connection's worker.
 */
#ifndef BAL_DAEMON_QUERY_H
#define BAL_DAEMON_QUERY_H

struct bal_http_req;
struct bal_req;

/** Answers every request that is not POST /v1/batches; leaves the request READY. */
void bal_query_request(struct bal_req *req, const struct bal_http_req *head);

#endif
