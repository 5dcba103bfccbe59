/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Crash torture against the real daemon. ballotd is SIGKILLed at random
 * moments and restarted on the same port and data directory while
 * `ballotctl push --retry-for` keeps uploading; at the end every batch must
 * be acknowledged exactly once (ACCEPTED, or DUPLICATE when its commit
 * survived a kill whose ack did not), the snapshot must equal the uploader's
 * own fold of the acknowledged batches, and every precinct must report
 * exactly the seqs it was sent, once each: nothing lost, nothing counted
 * twice; and the log's signed root must be the root of the recovered
 * journal. Variants kill while counter snapshots are being written (a snapshot
 * in every write transaction) and while the daemon is still recovering a
 * long journal tail.
 *
 * BAL_CRASH_KILLS sets the number of kills per test (default 20).
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/recovery/torture.h"

#define KEY_SEED      21
#define DEFAULT_KILLS 20

struct crash_env {
	char *dir;
	char *defn;
	char data[600];
	char *log_key; /* --log-key: the test key (th_write_log_key) */
	uint8_t log_pk[32];
	unsigned seed;
};

static void env_init(struct crash_env *e, uint32_t precincts, uint32_t districts, uint32_t choices)
{
	e->seed = (unsigned)time(NULL) ^ (unsigned)getpid();
	srand(e->seed);
	e->dir = th_tmpdir();
	cr_assert(e->dir);
	e->defn = th_write_defn(e->dir, precincts, districts, choices, KEY_SEED, true);
	cr_assert(e->defn);
	snprintf(e->data, sizeof(e->data), "%s/data", e->dir);
	e->log_key = th_write_log_key(e->dir, NULL);
	cr_assert(e->log_key);
	uint8_t sk[64];
	th_log_keypair(e->log_pk, sk);
}

static void env_deinit(struct crash_env *e)
{
	free(e->defn);
	free(e->log_key);
	th_rmdir(e->dir);
	free(e->dir);
}

/* Sleeps until the journal position reaches `target` (or about 10 s pass). */
static void wait_position(unsigned port, uint64_t target)
{
	for (int i = 0; i < 3000 && tr_position(port) < target; i++)
		usleep(1000 + (useconds_t)(rand() % 3000));
}

/*
 * Kills the daemon `kills` times at random journal positions while `push`
 * runs, restarting it each time, then waits for the push. Checks that no
 * restart goes back behind a position seen before its kill.
 */
static json_t *kill_loop(struct crash_env *e, struct th_daemon *td, const char *const *args, struct tr_push *push,
                         int kills, unsigned spread)
{
	unsigned port = td->port;
	for (int k = 0; k < kills; k++) {
		wait_position(port, tr_position(port) + spread / 4 + (uint64_t)(rand() % spread));
		uint64_t seen = tr_position(port);
		th_kill9(td);
		if (rand() % 2)
			usleep((useconds_t)(rand() % 200000)); /* uploaders see refused connections */
		cr_assert_eq(tr_start(td, e->defn, e->data, port, args), 0, "restart %d after a kill at position %llu",
		             k + 1, (unsigned long long)seen);
		uint64_t after = tr_position(port);
		cr_assert_geq(after, seen, "restart %d: position %llu is behind %llu, seen before the kill", k + 1,
		              (unsigned long long)after, (unsigned long long)seen);
	}
	int st;
	json_t *res = tr_push_wait(push, &st);
	cr_assert(res, "push output");
	cr_assert_eq(st, 0, "ballotctl push must get every batch acknowledged (first error: %s)",
	             json_string_value(json_object_get(res, "first_error")));
	return res;
}

/* The final checks: every batch acknowledged once, totals, per-precinct seqs. */
static void check_exact(struct crash_env *e, unsigned port, json_t *res, uint64_t total, uint32_t k)
{
	cr_expect_eq(json_integer_value(json_object_get(res, "acknowledged")), (json_int_t)total);
	cr_expect_eq(json_integer_value(json_object_get(res, "rejected")), 0);
	cr_expect(tr_totals_match(port, json_object_get(res, "expected")),
	          "recovered totals must equal the fold of the acknowledged batches (seed %u)", e->seed);
	cr_expect_eq(tr_position(port), total, "every batch journaled exactly once (seed %u)", e->seed);
	cr_expect(tr_precincts_exact(port, e->defn, k, total),
	          "every precinct must list exactly the seqs it was sent (seed %u)", e->seed);
	cr_expect(tr_log_matches(port, e->log_pk),
	          "the recovered log's signed root must be RFC 6962's root of the journal (seed %u)", e->seed);
}

Test(recovery, kill9_during_push_loses_and_doubles_nothing)
{
	struct crash_env e;
	env_init(&e, 300, 5, 6);
	int kills = tr_kills(DEFAULT_KILLS);
	/* Small snapshot spacing: some kills also land during snapshot writes. */
	const char *const args[] = {"--snapshot-every", "700", "--snapshot-interval", "50ms", "--log-key",
	                            e.log_key,          NULL};
	struct th_daemon td;
	cr_assert_eq(tr_start(&td, e.defn, e.data, 0, args), 0);
	uint64_t total = 6000 + 3000 * (uint64_t)kills;
	struct tr_push push = {.defn = e.defn,
	                       .port = td.port,
	                       .key_seed = KEY_SEED,
	                       .seed = 5,
	                       .batches = total,
	                       .batch_size = 20,
	                       .connections = 8,
	                       .pipeline = 8,
	                       .retry_for = 60};
	snprintf(push.out, sizeof(push.out), "%s/push.json", e.dir);
	cr_assert_eq(tr_push_start(&push), 0);
	json_t *res = kill_loop(&e, &td, args, &push, kills, 2000);
	check_exact(&e, td.port, res, total, 300);
	fprintf(stderr,
	        "recovery: %d SIGKILLs during push survived, %llu batches checked, %lld answered DUPLICATE after a "
	        "kill lost their ack (seed %u)\n",
	        kills, (unsigned long long)total, json_integer_value(json_object_get(res, "duplicate")), e.seed);
	json_decref(res);
	cr_expect_eq(th_stop(&td), 0);
	env_deinit(&e);
}

/*
 * A snapshot in every write transaction, of a national-size counter array
 * (10,000 precincts: ~1.7 MB), so most of each commit is snapshot writing and
 * the kills land in it. Metrics confirm the share before each kill.
 */
Test(recovery, kill9_during_snapshot_writes_loses_and_doubles_nothing)
{
	struct crash_env e;
	env_init(&e, 10000, 29, 8);
	int kills = tr_kills(DEFAULT_KILLS);
	const char *const args[] = {"--snapshot-every", "1", "--snapshot-interval", "1ms", "--log-key",
	                            e.log_key,          NULL};
	struct th_daemon td;
	cr_assert_eq(tr_start(&td, e.defn, e.data, 0, args), 0);
	unsigned port = td.port;
	uint64_t total = 2000 + 600 * (uint64_t)kills;
	struct tr_push push = {.defn = e.defn,
	                       .port = port,
	                       .key_seed = KEY_SEED,
	                       .seed = 9,
	                       .batches = total,
	                       .batch_size = 20,
	                       .connections = 8,
	                       .pipeline = 4,
	                       .precincts = 400,
	                       .retry_for = 60};
	snprintf(push.out, sizeof(push.out), "%s/push.json", e.dir);
	cr_assert_eq(tr_push_start(&push), 0);
	double commits = 0, snapshots = 0, commit_ns = 0, wall_ms = 0;
	int where[TR_COMMITTER_STATES] = {0};
	for (int k = 0; k < kills; k++) {
		double t0 = tr_now_ms();
		wait_position(port, tr_position(port) + 100 + (uint64_t)(rand() % 400));
		/* Counted per daemon life: the metrics restart with it. */
		commits += tr_metric(port, "ballotd_commits_total");
		snapshots += tr_metric(port, "ballotd_snapshots_total");
		commit_ns += tr_metric(port, "ballotd_commit_seconds_total_ns");
		wall_ms += tr_now_ms() - t0;
		uint64_t seen = tr_position(port);
		where[tr_committer_state(td.pid)]++; /* sampled right before the kill */
		th_kill9(&td);
		cr_assert_eq(tr_start(&td, e.defn, e.data, port, args), 0, "restart %d after a kill at position %llu",
		             k + 1, (unsigned long long)seen);
		char *log = th_read_log(&td);
		struct tr_recovery r;
		cr_assert(tr_recovery_parse(log, &r), "no recovery line in:\n%s", log);
		free(log);
		cr_assert_geq(r.position, seen, "restart %d: recovered position %llu is behind %llu", k + 1,
		              (unsigned long long)r.position, (unsigned long long)seen);
		/* Snapshot and batches commit together: the snapshot is never behind by more than a group. */
		cr_assert_leq(r.snapshot, r.position);
	}
	int st;
	json_t *res = tr_push_wait(&push, &st);
	cr_assert(res);
	cr_assert_eq(st, 0, "push: %s", json_string_value(json_object_get(res, "first_error")));
	check_exact(&e, port, res, total, 400);
	cr_expect_geq(snapshots, 0.9 * commits, "a snapshot in (almost) every commit: %.0f snapshots, %.0f commits",
	              snapshots, commits);
	int busy = where[TR_COMMITTER_CPU] + where[TR_COMMITTER_WRITE] + where[TR_COMMITTER_SYNC];
	cr_expect_geq(busy, kills / 4, "only %d of %d kills caught the committer inside a write txn", busy, kills);
	fprintf(stderr,
	        "recovery: %d SIGKILLs during snapshot writes survived, %llu batches checked; %.0f commits carried "
	        "%.0f snapshots, commit+sync took %.0f%% of the wall time; at the kills the committer was building "
	        "a txn %d, writing pages %d, syncing %d, idle %d, other %d times (seed %u)\n",
	        kills, (unsigned long long)total, commits, snapshots, wall_ms > 0 ? commit_ns / 1e4 / wall_ms : 0.0,
	        where[TR_COMMITTER_CPU], where[TR_COMMITTER_WRITE], where[TR_COMMITTER_SYNC], where[TR_COMMITTER_IDLE],
	        where[TR_COMMITTER_OTHER], e.seed);
	json_decref(res);
	cr_expect_eq(th_stop(&td), 0);
	env_deinit(&e);
}

/*
 * A long journal tail and no snapshot (snapshots effectively off, the daemon
 * SIGKILLed so it writes no final one); then SIGKILL the restarting daemon
 * at random moments while it replays, before it listens, many times. The
 * final start must replay everything and match exactly.
 */
Test(recovery, kill9_during_recovery_loses_and_doubles_nothing)
{
	struct crash_env e;
	env_init(&e, 300, 5, 6);
	int kills = tr_kills(DEFAULT_KILLS);
	const char *const args[] = {"--snapshot-every", "4000000000", "--snapshot-interval", "60m", "--log-key",
	                            e.log_key,          NULL};
	struct th_daemon td;
	cr_assert_eq(tr_start(&td, e.defn, e.data, 0, args), 0);
	unsigned port = td.port;
	/* Big batches: replay costs per ballot, so a modest journal gives a long tail. */
	uint64_t total = 24000;
	struct tr_push push = {.defn = e.defn,
	                       .port = port,
	                       .key_seed = KEY_SEED,
	                       .seed = 13,
	                       .batches = total,
	                       .batch_size = 1000,
	                       .connections = 8,
	                       .pipeline = 8};
	snprintf(push.out, sizeof(push.out), "%s/push.json", e.dir);
	int st;
	json_t *res = tr_push_run(&push, &st);
	cr_assert(res);
	cr_assert_eq(st, 0, "push: %s", json_string_value(json_object_get(res, "first_error")));
	th_kill9(&td);

	/* One full start measures the replay. */
	cr_assert_eq(tr_start(&td, e.defn, e.data, port, args), 0);
	char *log = th_read_log(&td);
	struct tr_recovery r;
	cr_assert(tr_recovery_parse(log, &r), "no recovery line in:\n%s", log);
	free(log);
	cr_assert_eq(r.snapshot, 0, "the tail must be unsnapshotted, found a snapshot at %llu",
	             (unsigned long long)r.snapshot);
	cr_assert_eq(r.replayed, total);
	th_kill9(&td);

	int in_recovery = 0;
	for (int k = 0; k < kills; k++) {
		char logpath[700];
		snprintf(logpath, sizeof(logpath), "%s/recovering.%d.log", e.dir, k);
		pid_t pid = th_daemon_spawn(e.defn, e.data, port, args, logpath);
		cr_assert_gt(pid, 0);
		/* The definition line comes right before the store opens and recovery starts. */
		double t0 = tr_now_ms();
		char *text = NULL;
		do {
			free(text);
			usleep(500);
			text = tr_slurp(logpath);
		} while (!strstr(text, "election ") && tr_now_ms() - t0 < 15000);
		free(text);
		usleep((useconds_t)((double)(rand() % 1000) / 1000.0 * r.ms * 500.0));
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		text = tr_slurp(logpath);
		if (strstr(text, "election ") && !strstr(text, "recovery: position"))
			in_recovery++;
		cr_assert(!strstr(text, " error "), "a killed recovery must not leave errors behind:\n%s", text);
		free(text);
	}
	cr_expect_geq(in_recovery, kills / 2, "only %d of %d kills landed while recovering (replay takes %.1f ms)",
	              in_recovery, kills, r.ms);

	cr_assert_eq(tr_start(&td, e.defn, e.data, port, args), 0);
	log = th_read_log(&td);
	struct tr_recovery after;
	cr_assert(tr_recovery_parse(log, &after), "no recovery line in:\n%s", log);
	free(log);
	cr_expect_eq(after.position, total);
	cr_expect_eq(after.replayed, total);
	check_exact(&e, port, res, total, 300);
	/* A clean stop leaves a snapshot: the next start replays nothing and agrees. */
	cr_expect_eq(th_stop(&td), 0);
	cr_assert_eq(tr_start(&td, e.defn, e.data, port, args), 0);
	log = th_read_log(&td);
	cr_assert(tr_recovery_parse(log, &after));
	free(log);
	cr_expect_eq(after.snapshot, total);
	cr_expect_eq(after.replayed, 0);
	cr_expect(tr_totals_match(port, json_object_get(res, "expected")));
	fprintf(stderr,
	        "recovery: %d SIGKILLs during recovery (%d of them mid-replay of %llu entries, %.1f ms) survived, "
	        "%llu batches checked (seed %u)\n",
	        kills, in_recovery, (unsigned long long)total, r.ms, (unsigned long long)total, e.seed);
	json_decref(res);
	cr_expect_eq(th_stop(&td), 0);
	env_deinit(&e);
}
