/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GET /metrics: the Prometheus text exposition of the daemon's counters
 * (struct bal_metrics), the I/O workers' response counts and the journal's
 * state.
 *
 * Threads: any; the counters are read with relaxed atomic loads.
 */
#ifndef BAL_DAEMON_METRICS_H
#define BAL_DAEMON_METRICS_H

#include "daemon/daemon.h"
#include "daemon/text.h"

/** Content-Type of the exposition. */
#define BAL_METRICS_CTYPE "text/plain; version=0.0.4"

/** Appends the exposition of `d`'s metrics to `out`. */
void bal_metrics_write(struct bal_daemon *d, struct bal_text *out);

#endif
