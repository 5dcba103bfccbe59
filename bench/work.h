/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ballot-bench workload: which precincts upload, what their batches hold,
 * and the bytes of batch (precinct, seq) for every target.
 *
 * A batch's content is one of `variants` pre-generated batches of its
 * precinct (client/gen.h, variant v = generated seq v + 1), chosen by
 * (seq - 1) % variants, so seqs 1..variants are exactly the generator's
 * batches. Each variant is pre-packed once without its seq and
 * created_unix_ms fields; the bytes of (precinct, seq) are stamped from it at
 * send time: two varints and a copy, no allocation (see bench_work_body()).
 * Signed workloads cannot be stamped (the signature covers the seq), so a
 * pool of signed bodies per precinct is built before the run
 * (bench_work_presign()); a seq beyond the pool is signed on the spot and
 * counted (bench_work_live_signed()).
 *
 * The same (definition, options, precinct, seq) always gives the same bytes,
 * so a resend of a batch whose answer was lost is byte-identical.
 *
 * Depends on the definition structs, proto/codec.h, client/ (gen, expect,
 * keys) and libsodium. Read-only after bench_work_presign(): any thread may
 * call the encoders, each with its own output buffer.
 */
#ifndef BAL_BENCH_WORK_H
#define BAL_BENCH_WORK_H

#include "core/ballot.h"
#include "client/expect.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bench_work_opts {
	const struct bal_defn *d; /**< borrowed; must outlive the workload */
	uint32_t precincts;       /**< K >= 1: precinct indices i * nprecincts / K, i < K */
	uint32_t batch_size;      /**< ballots per batch, 1..BAL_GEN_MAX_BATCH */
	enum bal_kind kind;       /**< BAL_KIND_BALLOTS or BAL_KIND_TALLY */
	uint64_t seed, key_seed;  /**< as ballotctl push */
	bool sign;                /**< Ed25519 signatures with the demo keys of key_seed */
	uint32_t variants;        /**< distinct contents per precinct, >= 1 */
	const char *host;         /**< Host header value ("HOST:PORT") */
};

/**
 * Pre-aggregated content of one variant, for the peers: the (contest, choice)
 * increments of the batch, sorted by (contest id, choice index), zeros left
 * out, and the turnout. Text forms are PostgreSQL array literals.
 */
struct bench_delta {
	uint32_t precinct_id;
	uint32_t district_id;
	uint32_t ninc;
	const uint32_t *contest_id; /**< [ninc] */
	const uint32_t *choice;     /**< [ninc] choice index */
	const uint64_t *votes;      /**< [ninc] */
	uint64_t ballots;           /**< cast-vote records (0 for TALLY) */
	uint64_t issued, cast, spoiled;
	const char *pg_contests, *pg_choices, *pg_votes; /**< "{1,1,101}" ... */
};

struct bench_work;

/**
 * Generates every variant (and checks that stamping reproduces the codec's
 * packing byte for byte).
 * @param[out] out  free with bench_work_free(); untouched on failure.
 * @return 0; -EINVAL / BAL_EAUTH (demo keys of key_seed do not match the
 *         definition) with `why`; -ENOMEM.
 */
int bench_work_new(const struct bench_work_opts *o, struct bench_work **out, char *why, size_t whylen);
void bench_work_free(struct bench_work *w);

uint32_t bench_work_precincts(const struct bench_work *w);
/** Definition precinct id of workload precinct `p` (< bench_work_precincts()). */
uint32_t bench_work_precinct_id(const struct bench_work *w, uint32_t p);
/** Upper bounds of bench_work_body() and bench_work_http() lengths for any seq. */
size_t bench_work_body_max(const struct bench_work *w);
size_t bench_work_http_max(const struct bench_work *w);
/** Variants per precinct (bench_work_opts.variants). */
uint32_t bench_work_variants(const struct bench_work *w);
/** Variant index of a seq. */
uint32_t bench_work_variant(const struct bench_work *w, uint64_t seq);
const struct bench_delta *bench_work_delta(const struct bench_work *w, uint32_t p, uint32_t variant);

/**
 * Pre-signs seqs [seq_start, seq_start + per_precinct) of every precinct on
 * `threads` threads. Only for signed workloads; call before sending.
 * @return 0 or -ENOMEM (`why`).
 */
int bench_work_presign(struct bench_work *w, uint64_t seq_start, uint64_t per_precinct, unsigned threads, char *why,
                       size_t whylen);

/**
 * Writes the SignedBatch of (p, seq) to `buf` (bench_work_body_max() bytes):
 * from the signed pool, stamped, or stamped and signed on the spot.
 * No allocation. Thread-safe for distinct buffers.
 * @return the length.
 */
size_t bench_work_body(struct bench_work *w, uint32_t p, uint64_t seq, uint8_t *buf);
/** Writes the whole HTTP request (POST /v1/batches, protobuf body) of (p, seq). */
size_t bench_work_http(struct bench_work *w, uint32_t p, uint64_t seq, uint8_t *buf);
/** Bodies signed on the spot so far (pool too small). */
uint64_t bench_work_live_signed(const struct bench_work *w);

/**
 * Folds `count` copies of variant `v` of precinct `p` into `e`
 * (bal_expect_fold of the decoded variant). @return 0 or bal_expect_fold's error.
 */
int bench_work_fold(const struct bench_work *w, struct bal_expect *e, uint32_t p, uint32_t v, uint64_t count, char *why,
                    size_t whylen);

#endif
