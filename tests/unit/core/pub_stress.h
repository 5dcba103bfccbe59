/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The seqlock stress run shared by the Criterion suite (test_pub.c) and the
 * ThreadSanitizer driver (tsan_pub.c): Criterion cannot start under TSan.
 */
#ifndef BAL_TEST_CORE_PUB_STRESS_H
#define BAL_TEST_CORE_PUB_STRESS_H

#include "core/tally.h"

/**
 * One writer thread (the caller) applies `nbatches` random TALLY and PROTOCOL batches in
 * groups of one to three through bal_pub_apply() while `nreaders` threads copy
 * views with bal_pub_read() and check each: every district and national slot
 * equals the sum of its precincts, the global batch count equals the
 * position, and the position never goes backwards.
 * Writing starts once every reader runs; each reader reads at least once.
 * @return 0, or -1 with `why` describing the first inconsistent view.
 */
int pub_stress(const struct bal_defn *d, const struct bal_layout *l, int nreaders, uint64_t nbatches, char *why,
               size_t whylen);

/** Folds a random TALLY or (one in four) PROTOCOL batch, with every contest of precinct index p
 * plus turnout, into `dl`. */
void pub_fold_random(const struct bal_defn *d, const struct bal_layout *l, uint64_t *rs, uint32_t p,
                     struct bal_delta *dl);

#endif
