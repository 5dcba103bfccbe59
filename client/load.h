/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP/1.1 load engine for uploading batches (ballotctl push, and later
 * ballot-bench): N keep-alive connections to one server, each owning the
 * batches of a set of precincts (precinct_id % N) and sending them in the
 * order they were added, with up to `pipeline` requests in flight.
 * Requests are encoded once, when added (header and body in one buffer), so
 * a resend is the same bytes. Responses are parsed with http-parser and the
 * BatchAck decoded with proto/codec.h.
 *
 * Retry mode (retry_for_ms > 0), for crash tests: on a connection error, an
 * EOF with requests in flight, a response timeout or a 503, the connection is
 * closed and reopened after a backoff (50 ms doubling to 1 s), and every
 * batch of it not yet acknowledged is sent again, until acknowledged or until
 * the connection has failed continuously (no response received) for
 * retry_for_ms. Without retry mode those failures are final.
 *
 * Depends on libuv (a private loop, run by bal_load_run()), http-parser,
 * proto/codec.h and client/expect.h. Not thread-safe: one engine per thread.
 */
#ifndef BAL_CLIENT_LOAD_H
#define BAL_CLIENT_LOAD_H

#include "client/expect.h"

#include <stdint.h>

struct bal_load_item;

/** Called once per batch when it reaches a final state, on the engine's loop
 * (inside bal_load_run()). */
typedef void (*bal_load_done_cb_t)(void *ud, const struct bal_load_item *it);

struct bal_load_opts {
	const char *server;         /**< "HOST:PORT"; resolved once by bal_load_new() */
	uint32_t connections;       /**< 1..4096 */
	uint32_t pipeline;          /**< requests in flight per connection, 1..4096 */
	uint32_t retry_for_ms;      /**< 0: no retries; see the file comment */
	uint32_t timeout_ms;        /**< no response for this long with requests in flight is a
	                                 connection error; 0 means 30000 */
	struct bal_expect *expect;  /**< optional, borrowed: ACCEPTED and DUPLICATE batches are folded in */
	bal_load_done_cb_t on_done; /**< optional */
	void *ud;                   /**< for on_done */
};

enum bal_load_state {
	BAL_LOAD_PENDING = 0, /**< not acknowledged (yet) */
	BAL_LOAD_ACCEPTED,    /**< 200 + BatchAck ACCEPTED */
	BAL_LOAD_DUPLICATE,   /**< 200 + BatchAck DUPLICATE: counted once, earlier */
	BAL_LOAD_REJECTED,    /**< an HTTP answer other than ACCEPTED/DUPLICATE (4xx, 5xx, REJECTED ack) */
	BAL_LOAD_ERROR,       /**< no answer: connection failures (after retries, in retry mode) */
};

/** One batch and its outcome. Times are uv_hrtime() nanoseconds, 0 = not yet. */
struct bal_load_item {
	uint32_t precinct_id;
	uint64_t seq;
	enum bal_load_state state;
	int http_status;   /**< of the final answer; 0 for PENDING/ERROR */
	uint64_t position; /**< journal position from the ack (ACCEPTED/DUPLICATE) */
	uint32_t sends;    /**< times the request was written */
	uint64_t first_send_ns, last_send_ns, done_ns;
	char *error; /**< REJECTED/ERROR: the reason (ack error, body or connection error); else NULL */
};

struct bal_load_stats {
	uint64_t accepted, duplicate, rejected, errors, pending;
	uint64_t sends;         /**< requests written, resends included */
	uint64_t reconnects;    /**< connections opened after the first per connection slot */
	uint64_t expect_errors; /**< acknowledged batches the expected totals refused (see expect.h) */
	uint64_t elapsed_ns;    /**< wall time of bal_load_run() */
};

/** Opaque engine. */
struct bal_load;

/**
 * @param[out] out  a new engine (free with bal_load_free()); untouched on failure.
 * @return 0; -EINVAL (bad option: `why` names it, its value and the limit);
 *         -EHOSTUNREACH (server does not resolve); -ENOMEM.
 */
int bal_load_new(const struct bal_load_opts *o, struct bal_load **out, char *why, size_t whylen);

/**
 * Queues one SignedBatch body (copied) for precinct_id/seq, which identify it
 * in the results; the connection is precinct_id % connections.
 * Only before bal_load_run(). @return the item index (>= 0) or -ENOMEM.
 */
int64_t bal_load_add(struct bal_load *l, uint32_t precinct_id, uint64_t seq, const uint8_t *body, size_t len);

/**
 * Runs until every item is final (acknowledged, rejected or failed). Blocks;
 * callbacks fire on this thread. Call once. Sets SIGPIPE to SIG_IGN for the
 * process (a reset connection is reported as EPIPE and handled).
 * @return 0 when the run completed (whatever the items' outcomes), or a
 *         negative libuv error if the loop could not be set up (`why`).
 */
int bal_load_run(struct bal_load *l, char *why, size_t whylen);

size_t bal_load_count(const struct bal_load *l);
/** Borrowed until bal_load_free(). */
const struct bal_load_item *bal_load_item(const struct bal_load *l, size_t i);
void bal_load_stats(const struct bal_load *l, struct bal_load_stats *out);
/** The first rejection or error text seen, or NULL. Borrowed. */
const char *bal_load_first_error(const struct bal_load *l);

/** NULL is fine. Not during bal_load_run(). */
void bal_load_free(struct bal_load *l);

#endif
