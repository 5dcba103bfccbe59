/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Graceful stop: SIGTERM while a push keeps hundreds of pipelined batches in
 * flight. The daemon must drain (commit and acknowledge what it took, answer
 * 503 to what comes after), exit 0, and leave every acknowledged batch in the
 * journal; a restart right after must resume exactly: the same push again
 * finds every acknowledged batch DUPLICATE, stores the rest, and the totals
 * and per-precinct seqs are exact.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/recovery/torture.h"

#define KEY_SEED  41
#define PRECINCTS 300

struct drain_env {
	char *dir;
	char *defn;
	char data[600];
	unsigned seed;
	struct th_daemon td;
};

static void env_init(struct drain_env *e)
{
	e->seed = (unsigned)time(NULL) ^ (unsigned)getpid();
	srand(e->seed);
	e->dir = th_tmpdir();
	cr_assert(e->dir);
	e->defn = th_write_defn(e->dir, PRECINCTS, 5, 6, KEY_SEED, true);
	cr_assert(e->defn);
	snprintf(e->data, sizeof(e->data), "%s/data", e->dir);
}

static void env_deinit(struct drain_env *e)
{
	if (e->td.pid > 0)
		th_kill9(&e->td);
	free(e->defn);
	th_rmdir(e->dir);
	free(e->dir);
}

static json_int_t jint(json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

/* Waits for ingest to reach a random position in [lo, lo + spread), then SIGTERMs; checks the drain. */
static void sigterm_mid_ingest(struct drain_env *e, uint64_t lo, unsigned spread)
{
	unsigned port = e->td.port;
	uint64_t target = lo + (uint64_t)(rand() % spread);
	for (int i = 0; i < 5000 && tr_position(port) < target; i++)
		usleep(1000 + (useconds_t)(rand() % 2000));
	uint64_t seen = tr_position(port);
	cr_assert_geq(seen, target, "ingest stalled at position %llu before the signal", (unsigned long long)seen);
	struct th_daemon stopped = e->td;
	cr_expect_eq(th_stop(&e->td), 0, "SIGTERM at position %llu: ballotd must drain and exit 0",
	             (unsigned long long)seen);
	char *log = th_read_log(&stopped);
	cr_expect(strstr(log, "drained: every batch handed to the committer is committed and answered"),
	          "the drain must complete within --drain-timeout:\n%s", log);
	cr_expect(!strstr(log, "drain timeout"), "drain timed out:\n%s", log);
	free(log);
}

Test(drain, sigterm_acks_or_503s_batches_in_flight_and_a_restart_resumes)
{
	struct drain_env e = {0};
	env_init(&e);
	cr_assert_eq(tr_start(&e.td, e.defn, e.data, 0, NULL), 0);
	unsigned port = e.td.port;
	/* Far more than can be ingested before the signal; 16 x 32 in flight. */
	const uint64_t total = 120000;
	struct tr_push p = {.defn = e.defn,
	                    .port = port,
	                    .key_seed = KEY_SEED,
	                    .seed = 6,
	                    .batches = total,
	                    .batch_size = 20,
	                    .connections = 16,
	                    .pipeline = 32};
	snprintf(p.out, sizeof(p.out), "%s/push.json", e.dir);
	cr_assert_eq(tr_push_start(&p), 0);
	sigterm_mid_ingest(&e, 5000, 20000);
	int st;
	json_t *res = tr_push_wait(&p, &st);
	cr_assert(res);
	json_int_t acked = jint(res, "acknowledged"), rejected = jint(res, "rejected");
	cr_assert_lt(acked, (json_int_t)total, "the signal must come before the push ends");
	/* Every answer that was not an ack is the drain's 503 with its reason. */
	size_t i;
	json_t *f;
	json_array_foreach(json_object_get(res, "failures"), i, f)
	{
		const char *why = json_string_value(json_object_get(f, "error"));
		if (jint(f, "http_status") == 0)
			continue; /* never answered: the connection closed after the drain */
		cr_expect_eq(jint(f, "http_status"), 503, "precinct %lld seq %lld: HTTP %lld (%s) while draining",
		             jint(f, "precinct_id"), jint(f, "seq"), jint(f, "http_status"), why);
		cr_expect(why && strstr(why, "shutting down"), "503 without its reason: %s", why);
	}

	/* Restart right after: everything acknowledged is there and counted. */
	cr_assert_eq(tr_start(&e.td, e.defn, e.data, port, NULL), 0);
	uint64_t journaled = tr_position(port);
	char *log = th_read_log(&e.td);
	struct tr_recovery r;
	cr_assert(tr_recovery_parse(log, &r), "no recovery line:\n%s", log);
	free(log);
	cr_expect_eq(r.replayed, 0, "a drained stop leaves a final snapshot: %llu entries replayed",
	             (unsigned long long)r.replayed);
	/* Fewer would be acknowledged batches lost; more, batches committed at the
	 * signal whose ack never left: a drain answers everything it took. */
	cr_expect_eq(journaled, (uint64_t)acked, "journal %llu after the drain, %lld acknowledged",
	             (unsigned long long)journaled, acked);
	cr_expect(tr_totals_match(port, json_object_get(res, "expected")),
	          "totals after the restart must be the fold of exactly the acknowledged batches");
	json_decref(res);

	/* The same push again completes and resumes exactly. */
	snprintf(p.out, sizeof(p.out), "%s/push-again.json", e.dir);
	p.retry_for = 30;
	res = tr_push_run(&p, &st);
	cr_assert(res);
	cr_expect_eq(st, 0, "push after the restart: %s", json_string_value(json_object_get(res, "first_error")));
	cr_expect_eq(jint(res, "duplicate"), (json_int_t)journaled,
	             "exactly the journaled batches are DUPLICATE: %lld, journal %llu", jint(res, "duplicate"),
	             (unsigned long long)journaled);
	cr_expect_eq(jint(res, "acknowledged"), (json_int_t)total);
	cr_expect(tr_totals_match(port, json_object_get(res, "expected")), "totals must be exact");
	cr_expect(tr_precincts_exact(port, e.defn, PRECINCTS, total), "every seq journaled once");
	fprintf(stderr,
	        "drain: SIGTERM with 512 batches in flight at position ~%llu: exit 0, %lld acknowledged, %lld answered "
	        "503, %llu journaled; restart resumed all %llu batches exactly (seed %u)\n",
	        (unsigned long long)journaled, acked, rejected, (unsigned long long)journaled,
	        (unsigned long long)total, e.seed);
	json_decref(res);
	cr_expect_eq(th_stop(&e.td), 0);
	env_deinit(&e);
}

Test(drain, repeated_sigterm_restarts_during_push_lose_and_double_nothing)
{
	struct drain_env e = {0};
	env_init(&e);
	const int stops = 6;
	cr_assert_eq(tr_start(&e.td, e.defn, e.data, 0, NULL), 0);
	unsigned port = e.td.port;
	const uint64_t total = 10000 + 6000 * (uint64_t)stops;
	struct tr_push p = {.defn = e.defn,
	                    .port = port,
	                    .key_seed = KEY_SEED,
	                    .seed = 7,
	                    .batches = total,
	                    .batch_size = 20,
	                    .connections = 16,
	                    .pipeline = 32,
	                    .retry_for = 60};
	snprintf(p.out, sizeof(p.out), "%s/push.json", e.dir);
	cr_assert_eq(tr_push_start(&p), 0);
	for (int k = 0; k < stops; k++) {
		sigterm_mid_ingest(&e, tr_position(port) + 1000, 4000);
		cr_assert_eq(tr_start(&e.td, e.defn, e.data, port, NULL), 0, "restart %d", k + 1);
	}
	int st;
	json_t *res = tr_push_wait(&p, &st);
	cr_assert(res);
	cr_expect_eq(st, 0, "push: %s", json_string_value(json_object_get(res, "first_error")));
	cr_expect_eq(jint(res, "acknowledged"), (json_int_t)total);
	cr_expect_eq(jint(res, "rejected"), 0);
	cr_expect(tr_totals_match(port, json_object_get(res, "expected")), "totals must be exact (seed %u)", e.seed);
	cr_expect_eq(tr_position(port), total, "every batch journaled once");
	cr_expect(tr_precincts_exact(port, e.defn, PRECINCTS, total), "every seq journaled once");
	fprintf(stderr,
	        "drain: %d SIGTERM restarts during a retrying push, %llu batches exact, %lld DUPLICATE (seed %u)\n",
	        stops, (unsigned long long)total, jint(res, "duplicate"), e.seed);
	json_decref(res);
	cr_expect_eq(th_stop(&e.td), 0);
	env_deinit(&e);
}
