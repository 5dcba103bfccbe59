/*
 * I/O workers and connections: one libuv loop per worker thread, keep-alive
 * HTTP/1.1 connections with pipelining, responses sent strictly in request
 * order, and the hand-off of batches to the committer.
 *
 * Glossary:
 * - ballot: one voter's choices, one entry per contest column of a batch.
 * - batch: one upload (SignedBatch) from a precinct, keyed by (precinct, seq).
 * - seq: the precinct's own sequence number of a batch, >= 1.
 * - position: where a batch sits in the journal (1-based, gap-free).
 * - snapshot: the counters as of a position, served to readers or stored.
 * - slot: one request of a connection, from its first byte until its response
 *   has been written; a connection has at most cfg.max_pipeline of them.
 *
 * Threads: everything here runs on the worker's own loop thread, except
 * bal_worker_deliver() (committer thread) and the counters it reads through
 * the seqlock.
 */
#ifndef BAL_DAEMON_CONN_H
#define BAL_DAEMON_CONN_H

#include <pthread.h>
#include <uv.h>

#include "daemon/commit.h"
#include "daemon/daemon.h"
#include "daemon/http.h"

enum bal_slot_state {
	BAL_SLOT_FREE = 0,
	BAL_SLOT_RECV,    /**< request being received */
	BAL_SLOT_QUEUED,  /**< job with the committer */
	BAL_SLOT_READY,   /**< response built, waiting for earlier ones */
	BAL_SLOT_WRITING, /**< response handed to uv_write */
};

#define BAL_SLOT_INLINE 320

/**
 * One request/response of a connection. Memory is reused across requests.
 * - `body_len <= body_cap`, `body_cap <= cfg.max_body` (plus nothing);
 * - the job is with the committer iff state == BAL_SLOT_QUEUED;
 * - `resp` points at `inl` or at heap memory owned iff `resp_heap`;
 * - `next_free` links the connection's free slots (state BAL_SLOT_FREE).
 */
struct bal_slot {
	enum bal_slot_state state;
	struct bal_conn *conn;
	struct bal_slot *next_free;
	uint8_t *body;
	size_t body_len, body_cap;
	bool accept_protobuf;
	struct bal_job job;
	struct bal_delta_entry *entries; /**< delta storage, bal_layout_delta_max() entries, lazily allocated */
	char *resp;
	size_t resp_len;
	bool resp_heap;
	uint32_t wcount; /**< responses covered by `wreq` when this slot leads a write */
	uv_write_t wreq;
	char inl[BAL_SLOT_INLINE];
};

/**
 * A client connection. Freed only from the close callback once `refs` is 0.
 * - refs = 1 (handle open) + number of slots in BAL_SLOT_QUEUED;
 * - slots [first, first+used) (mod cap) are in use, oldest first; the first
 *   `nwriting` of them are BAL_SLOT_WRITING;
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
	bool paused;      /**< parser paused: all slots in use */
	bool flushing;    /**< inside bal_conn_flush() */
	bool flush_again; /**< bal_conn_flush() was called again meanwhile */
	struct bal_http http;
	struct bal_slot **slots;     /**< ring of cap pointers, NULL outside [first, first+used) */
	struct bal_slot *free_slots; /**< slots kept for reuse; allocated on first use */
	unsigned cap, first, used, nwriting;
	char *pending; /**< unparsed input kept while paused */
	size_t pending_len, pending_cap;
	uint64_t last_active_ms;
	uint64_t msg_start_ms; /**< 0 when no request is in progress */
	char peer[64];
};

/** One I/O thread with its loop. */
struct bal_worker {
	struct bal_daemon *d;
	unsigned index;
	uv_loop_t loop;
	uv_thread_t thread;
	uv_tcp_t listener;
	uv_async_t wake;  /**< committer results or a stop request */
	uv_timer_t sweep; /**< idle and request timeouts */
	pthread_mutex_t done_lock;
	struct bal_job *done_head, *done_tail; /**< delivered by the committer */
	struct bal_conn *conns;                /**< every open connection */
	unsigned nconns;
	int stop;              /**< atomic: 1 stop accepting, 2 close everything */
	uint64_t hard_stop_at; /**< loop time of the first hard-stop check */
	bool listening;
	struct bal_arena arena; /**< per-request decode arena */
	/** HTTP responses by status class ([2] = 2xx ... [5] = 5xx): written by
	 * this worker's thread only (relaxed atomic stores), read by any. */
	uint64_t http_status[6];
	uint64_t *scratch;    /**< counter copy for queries (nslots) */
	char rbuf[64 * 1024]; /**< read buffer shared by this worker's connections */
	bool rbuf_busy;
};

/* worker.c */
int bal_worker_new(struct bal_daemon *d, unsigned index, int listen_fd, struct bal_worker **out);
int bal_worker_start(struct bal_worker *w);
/** Any thread: stop accepting; `hard` also closes every connection and ends the loop. */
void bal_worker_signal_stop(struct bal_worker *w, bool hard);
void bal_worker_join_free(struct bal_worker *w);
/** Frees a worker whose thread never started (startup failure). NULL is fine. */
void bal_worker_free_unstarted(struct bal_worker *w);
/** Connections of this worker with a request not yet answered (for draining). */
unsigned bal_worker_busy(struct bal_worker *w);
/** Any thread: HTTP responses of status class `cls` (1..5) sent by worker `w`. */
uint64_t bal_worker_http_count(const struct bal_worker *w, int cls);

/* conn.c */
void bal_conn_accept(struct bal_worker *w);
void bal_conn_close(struct bal_conn *c);
/** A slot's response is ready: send what can be sent in order. */
void bal_conn_flush(struct bal_conn *c);
/** Worker thread: finish a job delivered by the committer. */
void bal_conn_job_done(struct bal_job *job);
/** A hint that changes nothing: start fetching what bal_conn_job_done(job) reads first. */
void bal_conn_job_prefetch(const struct bal_job *job);
/** Closes connections idle or stuck mid-request beyond the timeouts. */
void bal_conn_sweep(struct bal_worker *w, uint64_t now_ms);

/* Response helpers (conn.c). `body` is copied. */
void bal_slot_respond(struct bal_slot *s, int status, const char *ctype, const char *extra_headers, const void *body,
                      size_t len);
/** Takes ownership of `body` (malloc'd). */
void bal_slot_respond_owned(struct bal_slot *s, int status, const char *ctype, const char *extra_headers, char *body,
                            size_t len);

/* ingest.c: POST /v1/batches. Leaves the slot READY or QUEUED. */
void bal_ingest_request(struct bal_slot *s);
/** Builds the ack for a job the committer finished. */
void bal_ingest_finish(struct bal_slot *s);

/* query.c: every GET; leaves the slot READY. */
void bal_query_request(struct bal_slot *s, const struct bal_http_req *req);

#endif
