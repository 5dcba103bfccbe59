/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The peer targets when ballot-bench is built without their drivers: they
 * report that they are missing, so --target postgres/redis fail with a clear
 * message instead of the build needing libpq and hiredis.
 */
#include "bench/targets.h"

#include <errno.h>
#include <stdio.h>

#ifndef BENCH_HAVE_PG
const struct bench_target *bench_pg_target(struct bench_pg_cfg *cfg)
{
	return NULL;
}

int bench_pg_totals(const struct bench_pg_cfg *cfg, const struct bal_defn *d, struct bench_totals *t, char *why,
                    size_t whylen)
{
	snprintf(why, whylen, "ballot-bench was built without libpq");
	return -ENOTSUP;
}
#endif

#ifndef BENCH_HAVE_REDIS
const struct bench_target *bench_redis_target(struct bench_redis_cfg *cfg)
{
	return NULL;
}

int bench_redis_totals(const struct bench_redis_cfg *cfg, const struct bal_defn *d, struct bench_totals *t, char *why,
                       size_t whylen)
{
	snprintf(why, whylen, "ballot-bench was built without hiredis");
	return -ENOTSUP;
}
#endif

/* Keeps the translation unit non-empty when both drivers are built in. */
int bench__peers_absent_unused;
