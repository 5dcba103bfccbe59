/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The monotonic clock (see clock.h).
 */
#include "daemon/clock.h"

#include <time.h>

uint64_t bal_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t bal_now_ms(void)
{
	return bal_now_ns() / 1000000ull;
}
