/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Answers shared between requests: an immutable, reference-counted body
 * (struct bal_body); the daemon's cache of the latest answer of each kind
 * (enum bal_answer), keyed by the journal position it folds; and the reader
 * thread ("ballotd-reader") that builds the expensive answers off the I/O
 * threads, at a lower CPU priority than ingest.
 *
 * A request asks for an answer of a kind at a position at least the one
 * published when it was read (bal_cache_answer()). A cached answer that far
 * along is handed out at once. Otherwise the request waits: the reader builds
 * the answer once, from the published counters at their current position
 * (never behind a waiter's), caches it in place of the older one, and hands
 * it to every request that waits for that kind and position; the older body
 * is freed when the last response writing it is done. The loop of a waiting
 * request learns that its answer is there through an async handle of the
 * wait's own, so no loop ever blocks on a build. A private answer (a journal
 * page) is built for its one request and not cached.
 *
 * Requests waiting for a build count against cfg.max_heavy_queries, per
 * process; beyond it bal_cache_answer() refuses (the caller answers 503).
 *
 * Threads: bal_cache_new() and bal_cache_free() belong to the main thread;
 * bal_cache_answer() and bal_cache_cancel() to the loop thread of the
 * request; bal_cache_put() and the body functions to any thread.
 */
#ifndef BAL_DAEMON_CACHE_H
#define BAL_DAEMON_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "daemon/daemon.h"
#include "daemon/text.h"

/**
 * Bytes of an answer, immutable once made; freed with its last reference.
 * - `refs` is changed with atomics only;
 * - `data[0..len)` is the answer, as of journal position `position`.
 */
struct bal_body {
	uint64_t refs;
	uint64_t position;
	char *data;
	size_t len;
};

/** Makes a body of `data` (malloc'd; taken, and freed on failure) with one reference. NULL on ENOMEM. */
struct bal_body *bal_body_new(char *data, size_t len, uint64_t position);

/** Takes one more reference to `b`; returns `b`. */
struct bal_body *bal_body_ref(struct bal_body *b);

/** Drops one reference; the last frees the body. NULL is fine. */
void bal_body_release(struct bal_body *b);

/** Parameters a private build reads and writes (see bal_answer_build); copied into the wait. */
#define BAL_ANSWER_PARAMS 128

/**
 * Builds an answer: appends it to `out` and sets `*position` to the journal
 * position it folds. `scratch` holds bal_layout_nslots() counters for the
 * builder to copy them into. `params` is the private build's parameter
 * block (zeroes for a shared kind), which the builder may also write for
 * the request to read when it is done.
 * @return 0, or a negative errno (`out` is then discarded).
 */
typedef int (*bal_answer_build)(struct bal_daemon *d, uint64_t *scratch, void *params, struct bal_text *out,
                                uint64_t *position);

/**
 * Loop thread: a waited-for answer is there. `body` is a reference the
 * callee owns, NULL if it could not be built; `params` is the build's
 * parameter block. Not called once the wait is cancelled.
 */
typedef void (*bal_answer_done)(void *arg, struct bal_body *body, void *params);

struct bal_cache;
struct bal_wait;

/**
 * Main thread: the cache of `d` (its layout, counters and configuration)
 * and its reader thread. @return 0, -ENOMEM or -errno (thread creation).
 */
int bal_cache_new(struct bal_daemon *d, struct bal_cache **out);

/** Main thread, once no loop has a wait left: stops and joins the reader, frees the cache. NULL is fine. */
void bal_cache_free(struct bal_cache *c);

/** What bal_cache_answer() did. */
enum bal_cache_outcome {
	BAL_CACHE_HIT,     /**< `*body` is a reference to a cached answer */
	BAL_CACHE_WAIT,    /**< `*wait` will call `done` on the loop */
	BAL_CACHE_REFUSED, /**< cfg.max_heavy_queries requests wait already */
	BAL_CACHE_NOMEM,
};

/**
 * Loop thread of `loop`: the answer of `kind` at position `min_pos` or later,
 * or a wait for it. `kind` BAL_ANSWER_KINDS asks for a private answer, built
 * with `params` (`params_len` bytes at most BAL_ANSWER_PARAMS, copied) for
 * this request alone. `build` makes the answer of `kind`.
 */
enum bal_cache_outcome bal_cache_answer(struct bal_cache *c, uv_loop_t *loop, enum bal_answer kind, uint64_t min_pos,
                                        bal_answer_build build, const void *params, size_t params_len,
                                        bal_answer_done done, void *arg, struct bal_body **body,
                                        struct bal_wait **wait);

/** Loop thread of the wait: its request is gone; `done` is not called. The build may still run. */
void bal_cache_cancel(struct bal_wait *w);

/**
 * Any thread: the cached answer of `kind` if it folds position `min_pos` or
 * later (a reference), else NULL. Counted as a hit or a miss.
 */
struct bal_body *bal_cache_get(struct bal_cache *c, enum bal_answer kind, uint64_t min_pos);

/**
 * Any thread: offers `b` (borrowed) as the answer of `kind`, built by the
 * caller; it replaces the cached one if it is further along.
 */
void bal_cache_put(struct bal_cache *c, enum bal_answer kind, struct bal_body *b);

/**
 * Any thread: builds the answer of `kind` with `build` on the calling
 * thread (its own `scratch`) and counts it. NULL if it failed (logged).
 */
struct bal_body *bal_answer_make(struct bal_daemon *d, uint64_t *scratch, enum bal_answer kind, bal_answer_build build,
                                 void *params);

/** Any thread: requests waiting for a build now (for /metrics). */
unsigned bal_cache_waiting(struct bal_cache *c);

/** Name of `kind` in metrics ("results.csv", ...; "journal" for private answers). */
const char *bal_answer_name(enum bal_answer kind);

#endif
