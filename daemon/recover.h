/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Recovery at startup: the counters as of the last committed journal
 * position, from the stored snapshot slices and the journal entries they do
 * not cover (storage/), each entry decoded and folded again into its
 * precinct, then every district, contest and national total recomputed.
 *
 * Threads: the main thread, before the committer starts.
 */
#ifndef BAL_DAEMON_RECOVER_H
#define BAL_DAEMON_RECOVER_H

#include <stdint.h>

#include "daemon/daemon.h"

/**
 * Rebuilds the counters of d's definition from d->store, sets d->recovery_ms
 * and logs what it did (or why it failed).
 * @param[out] ctr_out   bal_layout_nslots() counters, malloc'd; the caller frees them.
 * @param[out] position  the journal position they fold.
 * @return 0; BAL_ECORRUPT when the journal no longer folds or folds beyond 64
 *         bits; -ENOMEM; a storage error.
 */
int bal_recover(struct bal_daemon *d, uint64_t **ctr_out, uint64_t *position);

#endif
