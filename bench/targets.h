/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The systems ballot-bench drives, as bench_target implementations:
 * ballotd over HTTP/1.1 (always built), PostgreSQL through libpq and Redis
 * through hiredis (built when pkg-config finds them: BENCH_HAVE_PG,
 * BENCH_HAVE_REDIS), plus what --verify needs from each: its totals.
 */
#ifndef BAL_BENCH_TARGETS_H
#define BAL_BENCH_TARGETS_H

#include "bench/loadgen.h"
#include "bench/verify.h"

/** ballotd: POST /v1/batches with protobuf bodies over keep-alive connections. */
extern const struct bench_target bench_http_target;

/** Configuration of the PostgreSQL target (bench_target.cfg). */
struct bench_pg_cfg {
	const char *conninfo; /**< libpq connection string */
	struct bench_work *work;
};
/** Configuration of the Redis target (bench_target.cfg). */
struct bench_redis_cfg {
	char host[256];
	uint16_t port;
	char sha[41]; /**< of the ingest script, filled by setup */
	struct bench_work *work;
};

/** NULL when ballot-bench was built without libpq / hiredis. */
const struct bench_target *bench_pg_target(struct bench_pg_cfg *cfg);
const struct bench_target *bench_redis_target(struct bench_redis_cfg *cfg);

/**
 * Reads the peer's counters into `t` (zeroed first): district votes and
 * turnout, national votes as the sum over districts.
 * @return 0 or negative with `why`; -ENOTSUP when not built in.
 */
int bench_pg_totals(const struct bench_pg_cfg *cfg, const struct bal_defn *d, struct bench_totals *t, char *why,
                    size_t whylen);
int bench_redis_totals(const struct bench_redis_cfg *cfg, const struct bal_defn *d, struct bench_totals *t, char *why,
                       size_t whylen);

#endif
