/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Latency histograms and per-second counters for ballot-bench.
 *
 * A histogram counts latencies in microseconds in log-linear buckets: exact
 * below 32 us, then 32 buckets per power of two (at most 3.2% relative
 * error), up to 2^32 us (71 minutes; longer values land in the last bucket).
 * The exact maximum is kept beside the buckets. Adding is a few integer
 * instructions and never allocates; histograms merge by adding buckets.
 *
 * libc only. Not thread-safe: one writer; readers synchronise outside.
 */
#ifndef BAL_BENCH_STATS_H
#define BAL_BENCH_STATS_H

#include <stdint.h>

#define BENCH_HIST_SUB_BITS 5
#define BENCH_HIST_BUCKETS  (32 + (32 - BENCH_HIST_SUB_BITS) * 32)

struct bench_hist {
	uint64_t n;
	uint64_t max_us;
	uint32_t b[BENCH_HIST_BUCKETS];
};

/** Counters of one second (or of a whole window) of a run. */
struct bench_sec {
	uint64_t ok;           /**< answered and stored: ACCEPTED (and, for the peers, newly inserted) */
	uint64_t dup;          /**< answered DUPLICATE: stored before */
	uint64_t err;          /**< rejected or failed */
	uint64_t ballots;      /**< ballots of `ok` batches */
	uint64_t bytes;        /**< request bytes written */
	struct bench_hist lat; /**< latency of ok + dup answers */
};

void bench_hist_add(struct bench_hist *h, uint64_t us);
void bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src);
/** Latency at quantile q (0..1) in milliseconds: the midpoint of its bucket
 * (the exact max for q = 1); 0 for an empty histogram. */
double bench_hist_ms(const struct bench_hist *h, double q);

void bench_sec_merge(struct bench_sec *dst, const struct bench_sec *src);

#endif
