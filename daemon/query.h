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
struct bal_slot;

/** Answers every request that is not POST /v1/batches; leaves the slot READY. */
void bal_query_request(struct bal_slot *s, const struct bal_http_req *req);

#endif
