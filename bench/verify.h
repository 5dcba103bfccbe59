/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Totals for --verify: the same numbers read from ballotd's /v1/snapshot,
 * from a peer's tables, or folded from the acknowledged batches
 * (client/expect.h), so that "after - before == expected" can be checked
 * value by value. Depends on the definition structs, client/expect.h and jansson.
 */
#ifndef BAL_BENCH_VERIFY_H
#define BAL_BENCH_VERIFY_H

#include "core/ballot.h"
#include "client/expect.h"

#include <jansson.h>
#include <stdbool.h>

enum { BENCH_T_BATCHES, BENCH_T_BALLOTS, BENCH_T_ISSUED, BENCH_T_CAST, BENCH_T_SPOILED, BENCH_T_N };

/**
 * - national[noff[c] + k]: votes for choice k of contest index c;
 * - district[doff[c] + di * nchoices(c) + k]: the same, cast in district index di.
 */
struct bench_totals {
	const struct bal_defn *d;
	uint64_t turnout[BENCH_T_N];
	uint64_t *national, *district;
	size_t *noff, *doff;
	size_t nnational, ndistrict;
};

int bench_totals_init(struct bench_totals *t, const struct bal_defn *d);
void bench_totals_deinit(struct bench_totals *t);
void bench_totals_zero(struct bench_totals *t);
uint64_t *bench_totals_district(struct bench_totals *t, uint32_t c, uint32_t di, uint32_t k);

/** From a /v1/snapshot answer. @return 0 or -EPROTO with `why` naming the missing member. */
int bench_totals_from_snapshot(struct bench_totals *t, json_t *snap, char *why, size_t whylen);
void bench_totals_from_expect(struct bench_totals *t, const struct bal_expect *e);
/** national[c][k] = sum over districts (for peers, which keep district counters only). */
void bench_totals_national_from_districts(struct bench_totals *t);
/** a -= b, value by value (wrapping; a mismatch then shows as a huge number). */
void bench_totals_sub(struct bench_totals *a, const struct bench_totals *b);
/** Compares value by value; on the first difference writes it to `why`.
 * @return the number of values that differ (0 = equal). */
size_t bench_totals_diff(const struct bench_totals *got, const struct bench_totals *want, char *why, size_t whylen);
/** Values compared by bench_totals_diff(). */
size_t bench_totals_count(const struct bench_totals *t);

#endif
