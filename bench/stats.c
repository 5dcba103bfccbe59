/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Log-linear latency histograms (see stats.h). libc only.
 */
#include "bench/stats.h"

#include <stddef.h>

static unsigned bucket_of(uint64_t us)
{
	if (us < 32)
		return (unsigned)us;
	if (us >= (1ull << 32))
		return BENCH_HIST_BUCKETS - 1;
	unsigned e = 63u - (unsigned)__builtin_clzll(us); /* 5..31 */
	unsigned sub = (unsigned)(us >> (e - BENCH_HIST_SUB_BITS)) & 31u;
	return 32 + (e - BENCH_HIST_SUB_BITS) * 32 + sub;
}

/* [lo, hi) of bucket i in microseconds. */
static void bucket_range(unsigned i, double *lo, double *hi)
{
	if (i < 32) {
		*lo = i;
		*hi = i + 1;
		return;
	}
	unsigned e = (i - 32) / 32 + BENCH_HIST_SUB_BITS, sub = (i - 32) % 32;
	double width = (double)(1ull << (e - BENCH_HIST_SUB_BITS));
	*lo = (double)(1ull << e) + sub * width;
	*hi = *lo + width;
}

void bench_hist_add(struct bench_hist *h, uint64_t us)
{
	h->b[bucket_of(us)]++;
	h->n++;
	if (us > h->max_us)
		h->max_us = us;
}

void bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src)
{
	if (!src->n)
		return;
	for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++)
		dst->b[i] += src->b[i];
	dst->n += src->n;
	if (src->max_us > dst->max_us)
		dst->max_us = src->max_us;
}

double bench_hist_ms(const struct bench_hist *h, double q)
{
	if (!h->n)
		return 0;
	if (q >= 1.0)
		return (double)h->max_us / 1000.0;
	/* The rank of the quantile, 1-based: the smallest value with at least q*n at or below it. */
	uint64_t rank = (uint64_t)(q * (double)h->n);
	if ((double)rank < q * (double)h->n)
		rank++;
	if (rank < 1)
		rank = 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= rank) {
			double lo, hi;
			bucket_range(i, &lo, &hi);
			double mid = i < 32 ? lo : (lo + hi) / 2;
			if (mid > (double)h->max_us)
				mid = (double)h->max_us;
			return mid / 1000.0;
		}
	}
	return (double)h->max_us / 1000.0;
}

void bench_sec_merge(struct bench_sec *dst, const struct bench_sec *src)
{
	dst->ok += src->ok;
	dst->dup += src->dup;
	dst->err += src->err;
	dst->ballots += src->ballots;
	dst->bytes += src->bytes;
	bench_hist_merge(&dst->lat, &src->lat);
}
