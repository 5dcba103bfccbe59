/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Connections: keep-alive HTTP/1.1 with pipelining. Bytes read into the
 * worker's shared buffer go through the HTTP framing (daemon/http.h); each
 * request gets a struct bal_req, a finished one goes to ingest
 * (daemon/ingest.h) or to the queries (daemon/query.h), and responses are
 * written strictly in request order. Reading pauses while cfg.max_pipeline
 * requests are in flight.
 *
 * Glossary:
 * - ballot: one voter's choices, one entry per contest column of a batch.
 * - batch: one upload (SignedBatch) from a precinct, keyed by (precinct, seq).
 * - seq: the precinct's own sequence number of a batch, >= 1.
 * - position: where a batch sits in the journal (1-based, gap-free).
 * - snapshot: the counters as of a position, served to readers or stored.
 * - request (struct bal_req): one request of a connection, from its first
 *   byte until its response has been written; a connection has at most
 *   cfg.max_pipeline of them in flight.
 * - slot: only an index into the counter array (core/tally.h), never a
 *   request.
 *
 * Threads: everything here runs on the loop thread of the connection's
 * worker; the committer reaches a connection only through the worker
 * (bal_worker_deliver(), then bal_conn_job_done() on the loop thread).
 */
#ifndef BAL_DAEMON_CONN_H
#define BAL_DAEMON_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "daemon/commit.h"
#include "daemon/http.h"

struct bal_worker;

enum bal_req_state {
	BAL_REQ_FREE = 0,
	BAL_REQ_RECV,    /**< request being received */
	BAL_REQ_QUEUED,  /**< job with the committer */
	BAL_REQ_WAITING, /**< answer being built off the loop (daemon/query.h); not ready */
	BAL_REQ_READY,   /**< response built, waiting for earlier ones */
	BAL_REQ_WRITING, /**< response handed to uv_write */
};

/** Response bytes a request holds inline: the head, and the body if it fits;
 * a longer body is sent from where it lies, after the head (`tail`). */
#define BAL_REQ_INLINE 320

struct bal_body;
struct bal_wait;

/**
 * One request/response of a connection. Memory is reused across requests.
 * - `body_len <= body_cap`, `body_cap <= cfg.max_body` (plus nothing);
 * - the job is with the committer iff state == BAL_REQ_QUEUED;
 * - the response is `inl[0..resp_len)`, then `tail[0..tail_len)` unless
 *   `tail` is NULL: the body, sent as a buffer of its own, from `tail_owned`
 *   (malloc'd, freed with the response), from `tail_shared` (a reference,
 *   released with it) or, when both are NULL, from `log->ack` (kept);
 * - `wait` is set iff state == BAL_REQ_WAITING;
 * - `next_free` links the connection's free requests (state BAL_REQ_FREE).
 */
/* Longest acknowledgement with a receipt: the JSON form, a 64-hash path in
 * hex (the protobuf form is shorter). */
#define BAL_ACK_RECEIPT_MAX 6144

/** What an acknowledgement with a receipt needs, kept with its request
 * for the next one (no allocation per batch once warm). */
struct bal_req_log {
	struct bal_receipt receipt;
	char ack[BAL_ACK_RECEIPT_MAX]; /**< the answer's body, written from the request (bal_req_respond_kept()) */
};

struct bal_req {
	enum bal_req_state state;
	struct bal_conn *conn;
	struct bal_req *next_free;
	uint8_t *body;
	size_t body_len, body_cap;
	bool discard; /**< the body is counted, not kept: a batch answered 503 (cfg.max_client_memory) */
	bool accept_protobuf;
	struct bal_job job;
	struct bal_delta_entry *entries; /**< delta storage, bal_layout_delta_max() entries, lazily allocated */
	struct bal_req_log *log;         /**< an ack with a receipt, lazily allocated when the log signs */
	size_t resp_len;
	const char *tail;
	size_t tail_len;
	char *tail_owned;
	struct bal_body *tail_shared;
	struct bal_wait *wait; /**< the answer this request waits for (daemon/cache.h) */
	uint32_t wcount;       /**< responses covered by `wreq` when this request leads a write */
	uv_write_t wreq;
	char inl[BAL_REQ_INLINE];
};

/**
 * A client connection. Freed only from the close callback once `refs` is 0.
 * - refs = 1 (handle open) + number of requests in BAL_REQ_QUEUED;
 * - reqs [first, first+used) (mod cap) are in use, oldest first; the first
 *   `nwriting` of them are BAL_REQ_WRITING;
 * - `closing` is set once, and then no new request is parsed or answered.
 */
struct bal_conn {
	uv_tcp_t tcp;
	struct bal_worker *w;
	struct bal_conn *prev, *next; /**< worker's list */
	unsigned refs;
	bool closing;
	bool close_after_flush; /**< answer what is pending, then close */
	bool reading;
	bool paused;      /**< parser paused: every request in use */
	bool flushing;    /**< inside bal_conn_flush() */
	bool flush_again; /**< bal_conn_flush() was called again meanwhile */
	struct bal_http http;
	struct bal_req **reqs;     /**< ring of cap pointers, NULL outside [first, first+used) */
	struct bal_req *free_reqs; /**< requests kept for reuse; allocated on first use */
	unsigned cap, first, used, nwriting;
	char *pending; /**< unparsed input kept while paused */
	size_t pending_len, pending_cap;
	uint64_t last_active_ms;
	uint64_t msg_start_ms; /**< 0 when no request is in progress */
	unsigned failures;     /**< batches refused so far (cfg.max_failures) */
	/* What it costs (see bal_conn_held()): `mem` is owned, counted in the
	 * daemon's client_memory too (bodies, owned response bytes, held input);
	 * `out_shared` is response bytes it sends from memory it shares. */
	size_t mem;
	size_t out_shared;
	uint64_t out_progress_ms; /**< output began to wait, or its client last took some */
	size_t out_seen;          /**< libuv's write queue at the last sweep */
	char peer[64];
};

/** Accepts a pending connection on the worker's listener and starts reading it. */
void bal_conn_accept(struct bal_worker *w);

/**
 * Closes the connection (once; later calls do nothing). Its memory goes when
 * the handle is closed and no job of it is still with the committer.
 */
void bal_conn_close(struct bal_conn *c);

/** A request's response is ready: sends what can be sent in order, and resumes parsing if a request came free. */
void bal_conn_flush(struct bal_conn *c);

/** Finishes a job delivered by the committer: answers it, or drops it if the connection is closing. */
void bal_conn_job_done(struct bal_job *job);

/** A hint that changes nothing: starts fetching what bal_conn_job_done(job) reads first. */
void bal_conn_job_prefetch(const struct bal_job *job);

/**
 * A batch of this connection is refused (400, 401, 413, 422). The
 * cfg.max_failures-th refusal ends the connection: it is answered with
 * "Connection: close", after whatever was read before it, and nothing more is
 * read. Call before the refusal's response is built. Per connection, not per
 * address: stations behind one NAT do not pay for each other's mistakes.
 */
void bal_conn_refused(struct bal_conn *c);

/**
 * Bytes the connection holds: request bodies (in progress, with the
 * committer, or kept for reuse), response bytes not yet written, input held
 * while parsing is paused. Once it reaches cfg.max_conn_memory the
 * connection's next request waits: parsing and reading pause until answers
 * are written (one request in progress and one answer may go beyond).
 */
size_t bal_conn_held(const struct bal_conn *c);

/**
 * Closes connections of `w` idle, stuck mid-request, or owing output their
 * client reads nothing of, beyond the timeouts, as of loop time `now_ms`.
 */
void bal_conn_sweep(struct bal_worker *w, uint64_t now_ms);

/**
 * Builds a request's response (head and body) and marks it ready; the caller
 * then lets bal_conn_flush() send it in order. `body` is copied.
 * @param extra_headers  whole header lines ("Retry-After: 1\r\n") or NULL.
 */
void bal_req_respond(struct bal_req *req, int status, const char *ctype, const char *extra_headers, const void *body,
                     size_t len);

/** As bal_req_respond(), with `body` in memory the request keeps until it
 * is reset (req->log->ack): written from there, neither copied nor freed. */
void bal_req_respond_kept(struct bal_req *req, int status, const char *ctype, const char *extra_headers,
                          const char *body, size_t len);

/** As bal_req_respond(), taking ownership of `body` (malloc'd) instead of copying it. */
void bal_req_respond_owned(struct bal_req *req, int status, const char *ctype, const char *extra_headers, char *body,
                           size_t len);

/**
 * As bal_req_respond(), with a shared immutable body (daemon/cache.h): the
 * request takes a reference, which it releases once the body is written.
 * The head and the body leave as two buffers of one write; the body is
 * never copied.
 */
void bal_req_respond_shared(struct bal_req *req, int status, const char *ctype, const char *extra_headers,
                            struct bal_body *body);

#endif
