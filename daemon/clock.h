/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon's monotonic clock (CLOCK_MONOTONIC): commit timing, snapshot
 * pacing, drain deadlines. Not wall time, and not a loop's cached time
 * (uv_now()).
 *
 * Threads: any.
 */
#ifndef BAL_DAEMON_CLOCK_H
#define BAL_DAEMON_CLOCK_H

#include <stdint.h>

/** Monotonic nanoseconds. */
uint64_t bal_now_ns(void);

/** Monotonic milliseconds. */
uint64_t bal_now_ms(void);

#endif
