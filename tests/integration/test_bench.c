/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CI smoke of ballot-bench (build/ballot-bench) against a fresh ballotd on
 * 127.0.0.1 (ephemeral port): a short closed-loop run with --verify and
 * --report, an open-loop run repeated on the same daemon (the second run's
 * answers are all DUPLICATE and --verify must still pass, since it compares
 * the snapshot's change with the fold of newly accepted batches), and the
 * verification's comparison itself on a known difference. Keeps the harness
 * from rotting; the comparison with the peers is bench/compare, not a test.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "defn/defn.h"
#include "tests/integration/harness.h"
#include "bench/verify.h"

#define KEY_SEED 7

static char *dir;
static char *defn_path;
static struct th_daemon td;

static void setup(void)
{
	dir = th_tmpdir();
	cr_assert(dir);
	defn_path = th_write_defn(dir, 300, 4, 5, KEY_SEED, true);
	cr_assert(defn_path);
	char data[600];
	snprintf(data, sizeof(data), "%s/data", dir);
	cr_assert_eq(th_start(&td, defn_path, data, 0, NULL), 0);
}

static void teardown(void)
{
	if (td.pid > 0)
		cr_expect_eq(th_stop(&td), 0, "ballotd should exit 0 on SIGTERM");
	free(defn_path);
	th_rmdir(dir);
	free(dir);
}

/* Runs ballot-bench with `args` (NULL-terminated, after the common ones);
 * returns its exit status and its stdout parsed as JSON (NULL if it is not). */
static int run_bench(const char *const *args, json_t **out)
{
	char server[64], keyseed[24];
	snprintf(server, sizeof(server), "127.0.0.1:%u", td.port);
	snprintf(keyseed, sizeof(keyseed), "%d", KEY_SEED);
	const char *argv[64] = {TH_BIN("ballot-bench"), "--server", server,   "--definition", defn_path,
	                        "--key-seed",           keyseed,    "--quiet"};
	size_t n = 8;
	for (size_t i = 0; args[i] && n < 63; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(fds[1]);
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	ssize_t r;
	while ((r = read(fds[0], buf + len, cap - len - 1)) > 0) {
		len += (size_t)r;
		if (len + 1 == cap)
			buf = realloc(buf, cap *= 2);
	}
	close(fds[0]);
	buf[len] = '\0';
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	json_error_t err;
	*out = json_loads(buf, 0, &err);
	if (!*out)
		fprintf(stderr, "ballot-bench printed no JSON: %s\n%s\n", err.text, buf);
	free(buf);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static double num(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	cr_assert(json_is_number(v), "\"%s\" is not a number", k);
	return json_number_value(v);
}

/* The summary fields every run prints, and their consistency. */
static void check_summary(json_t *j, double connections)
{
	cr_assert(json_is_object(j));
	cr_expect_eq(num(j, "connections"), connections);
	double batches = num(j, "batches"), seconds = num(j, "seconds");
	cr_expect_gt(batches, 0);
	cr_expect_gt(seconds, 0);
	cr_expect_eq(num(j, "ballots"), batches * 100, "batches of 100 ballots");
	double bps = num(j, "batches_per_s");
	cr_expect(bps > 0.9 * batches / seconds && bps < 1.1 * batches / seconds, "batches_per_s %g vs %g / %g", bps,
	          batches, seconds);
	json_t *lat = json_object_get(j, "latency_ms");
	double p50 = num(lat, "p50"), p90 = num(lat, "p90"), p99 = num(lat, "p99"), p999 = num(lat, "p999"),
	       max = num(lat, "max");
	cr_expect(p50 > 0 && p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max * 1.04,
	          "latencies out of order: %g %g %g %g %g", p50, p90, p99, p999, max);
	cr_expect_eq(json_object_size(json_object_get(j, "errors")), 0, "no errors expected");
	cr_expect_gt(num(j, "bytes_sent"), batches * 100);
}

Test(bench, closed_loop_run_verifies_and_reports, .init = setup, .fini = teardown)
{
	char report[600];
	snprintf(report, sizeof(report), "%s/report", dir);
	const char *args[] = {"--connections", "200", "--precincts", "300",      "--duration", "2",
	                      "--warmup",      "0.5", "--verify",    "--report", report,       NULL};
	json_t *j;
	int rc = run_bench(args, &j);
	cr_assert_eq(rc, 0, "ballot-bench exited %d", rc);
	check_summary(j, 200);
	cr_expect_eq(num(j, "seconds"), 2);
	json_t *v = json_object_get(j, "verify");
	cr_assert(json_is_true(json_object_get(v, "ok")), "verify: %s", json_string_value(json_object_get(v, "error")));
	cr_expect_eq(num(v, "expected_batches"), num(json_object_get(j, "whole_run"), "stored"));
	cr_expect_gt(num(v, "values_checked"), 5);
	char csv[700];
	snprintf(csv, sizeof(csv), "%s/series.csv", report);
	struct stat sb;
	cr_expect_eq(stat(csv, &sb), 0, "%s missing", csv);
	json_decref(j);
}

Test(bench, open_loop_rerun_counts_only_new_batches, .init = setup, .fini = teardown)
{
	const char *args[] = {"--connections", "50",        "--precincts", "100",      "--rate",
	                      "1000",          "--batches", "600",         "--verify", NULL};
	json_t *j;
	int rc = run_bench(args, &j);
	cr_assert_eq(rc, 0, "first run exited %d", rc);
	check_summary(j, 50);
	cr_expect_eq(num(j, "batches"), 600);
	cr_expect_eq(num(j, "duplicates"), 0);
	/* 600 batches offered at 1,000/s take about 0.6 s. */
	cr_expect(num(j, "seconds") > 0.4 && num(j, "seconds") < 3, "seconds %g", num(j, "seconds"));
	json_decref(j);
	/* Same seeds and seqs: every batch is a DUPLICATE, the totals do not move, and --verify agrees. */
	rc = run_bench(args, &j);
	cr_assert_eq(rc, 0, "second run exited %d", rc);
	cr_expect_eq(num(j, "duplicates"), 600);
	json_t *v = json_object_get(j, "verify");
	cr_expect(json_is_true(json_object_get(v, "ok")));
	cr_expect_eq(num(v, "expected_batches"), 0);
	json_decref(j);
}

Test(bench, verify_names_the_first_difference, .init = setup, .fini = teardown)
{
	struct bal_defn *d;
	char why[256];
	cr_assert_eq(bal_defn_load(defn_path, &d, why, sizeof(why)), 0, "%s", why);
	struct bench_totals a, b;
	cr_assert_eq(bench_totals_init(&a, d), 0);
	cr_assert_eq(bench_totals_init(&b, d), 0);
	*bench_totals_district(&a, 1, 1, 2) = 5;
	*bench_totals_district(&b, 1, 1, 2) = 5;
	bench_totals_national_from_districts(&a);
	bench_totals_national_from_districts(&b);
	cr_expect_eq(bench_totals_diff(&a, &b, why, sizeof(why)), 0);
	b.turnout[BENCH_T_CAST] = 3;
	*bench_totals_district(&b, 1, 1, 2) = 6;
	cr_expect_eq(bench_totals_diff(&a, &b, why, sizeof(why)), 2);
	cr_expect(strstr(why, "turnout.cast"), "%s", why);
	b.turnout[BENCH_T_CAST] = 0;
	cr_expect_eq(bench_totals_diff(&a, &b, why, sizeof(why)), 1);
	cr_expect(strstr(why, "district") && strstr(why, "choice 2"), "%s", why);
	bench_totals_deinit(&a);
	bench_totals_deinit(&b);
	bal_defn_free(d);
}
