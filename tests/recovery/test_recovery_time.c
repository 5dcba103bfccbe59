/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Recovery time after SIGKILL must not grow with the journal: snapshots
 * bound it. Journals 100,000 and 1,000,000 batches of the bundled national
 * definition (data/kz2023.json: 10,000 precincts, 210,856 counters) through
 * `ballotctl push` with default snapshot settings, SIGKILLs the daemon and
 * restarts it several times, timing spawn -> "listening on" and reading the
 * daemon's own recovery line. Labelled `slow` (minutes): run it with
 * `scripts/torture recovery-time`, or `ctest -L slow`.
 *
 * BAL_RECOVERY_BATCHES="N1,N2,..." overrides the journal sizes (ascending);
 * the last is compared with the first.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/recovery/torture.h"

/* data/kz2023.json's shape and keys (gen-definition --precincts 10000
 * --districts 29 --choices 8 --seed 2023), with unbounded precincts: a
 * million batches hold more ballots than its registers. */
#define SEED      2023
#define RESTARTS  5
#define MAX_SIZES 8
/* Defaults of --snapshot-every and --group-max: the longest tail a kill can leave. */
#define SNAPSHOT_EVERY 50000
#define GROUP_MAX      8192

struct timing {
	uint64_t batches;
	double push_s;
	double listen_ms[RESTARTS]; /* spawn -> "listening on" */
	struct tr_recovery rec[RESTARTS];
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(const double *v, int n)
{
	double s[RESTARTS];
	memcpy(s, v, (size_t)n * sizeof(double));
	qsort(s, (size_t)n, sizeof(double), cmp_double);
	return s[n / 2];
}

static void measure(uint64_t batches, struct timing *t)
{
	char *dir = th_tmpdir();
	cr_assert(dir);
	char data[600], log[700];
	snprintf(data, sizeof(data), "%s/data", dir);
	char *defn = th_write_defn(dir, 10000, 29, 8, SEED, true);
	cr_assert(defn);
	struct th_daemon td;
	cr_assert_eq(tr_start(&td, defn, data, 0, NULL), 0);
	unsigned port = td.port;
	struct tr_push p = {.defn = defn,
	                    .port = port,
	                    .key_seed = SEED,
	                    .seed = SEED,
	                    .batches = batches,
	                    .batch_size = 10,
	                    .connections = 16,
	                    .pipeline = 32};
	snprintf(p.out, sizeof(p.out), "%s/push.json", dir);
	double t0 = tr_now_ms();
	int st;
	json_t *res = tr_push_run(&p, &st);
	t->batches = batches;
	t->push_s = (tr_now_ms() - t0) / 1000;
	cr_assert(res);
	cr_assert_eq(st, 0, "push: %s", json_string_value(json_object_get(res, "first_error")));
	for (int k = 0; k < RESTARTS; k++) {
		th_kill9(&td);
		snprintf(log, sizeof(log), "%s/restart.%d.log", dir, k);
		double s0 = tr_now_ms();
		pid_t pid = th_daemon_spawn(defn, data, port, NULL, log);
		cr_assert_gt(pid, 0);
		t->listen_ms[k] = tr_wait_listening(log, pid, s0, 120000);
		char *text = tr_slurp(log);
		cr_assert_geq(t->listen_ms[k], 0, "restart %d did not get ready:\n%s", k + 1, text);
		cr_assert(tr_recovery_parse(text, &t->rec[k]), "no recovery line:\n%s", text);
		free(text);
		cr_assert_eq(t->rec[k].position, batches);
		cr_assert_leq(t->rec[k].replayed, SNAPSHOT_EVERY + GROUP_MAX,
		              "restart %d replayed %llu entries: snapshots must bound the tail", k + 1,
		              (unsigned long long)t->rec[k].replayed);
		td.pid = pid;
	}
	cr_expect(tr_totals_match(port, json_object_get(res, "expected")), "totals after %d restarts", RESTARTS);
	json_decref(res);
	cr_expect_eq(th_stop(&td), 0);
	th_rmdir(dir);
	free(defn);
	free(dir);
}

Test(recovery_time, does_not_grow_with_the_journal)
{
	uint64_t sizes[MAX_SIZES] = {100000, 1000000};
	int n = 2;
	const char *env = getenv("BAL_RECOVERY_BATCHES");
	if (env && *env) {
		n = 0;
		for (const char *s = env; *s && n < MAX_SIZES; n++) {
			char *end;
			sizes[n] = strtoull(s, &end, 10);
			cr_assert(end != s && sizes[n] > 0, "BAL_RECOVERY_BATCHES \"%s\": expected N1,N2,...", env);
			s = *end == ',' ? end + 1 : end;
		}
	}
	struct timing t[MAX_SIZES];
	for (int i = 0; i < n; i++)
		measure(sizes[i], &t[i]);
	fprintf(stderr,
	        "recovery time after SIGKILL (kz2023 shape, batch size 10, default --snapshot-every %d / 2s):\n",
	        SNAPSHOT_EVERY);
	fprintf(stderr, "%10s %8s %10s  %-40s %s\n", "journal", "push s", "batches/s",
	        "spawn->listening ms (each restart)", "replayed entries / replay ms (each restart)");
	for (int i = 0; i < n; i++) {
		char a[256] = "", b[512] = "";
		size_t al = 0, bl = 0;
		for (int k = 0; k < RESTARTS; k++) {
			al += (size_t)snprintf(a + al, sizeof(a) - al, "%s%.0f", k ? " " : "", t[i].listen_ms[k]);
			bl += (size_t)snprintf(b + bl, sizeof(b) - bl, "%s%llu/%.1f", k ? " " : "",
			                       (unsigned long long)t[i].rec[k].replayed, t[i].rec[k].ms);
		}
		fprintf(stderr, "%10llu %8.1f %10.0f  %-40s %s\n", (unsigned long long)t[i].batches, t[i].push_s,
		        (double)t[i].batches / t[i].push_s, a, b);
	}
	double first = median(t[0].listen_ms, RESTARTS), last = median(t[n - 1].listen_ms, RESTARTS);
	fprintf(stderr, "median spawn->listening: %.0f ms at %llu batches, %.0f ms at %llu batches\n", first,
	        (unsigned long long)t[0].batches, last, (unsigned long long)t[n - 1].batches);
	/* Flat, within noise: a replay of the whole journal would be many times slower. */
	cr_expect_leq(last, 2 * first + 250, "recovery grew with the journal: %.0f ms vs %.0f ms", last, first);
}
