/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CSV series, gnuplot chart and the comparison table (see report.h).
 */
#include "bench/report.h"

#include "client/cli.h"
#include "client/util.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool on_path(const char *prog)
{
	const char *path = getenv("PATH");
	if (!path)
		return false;
	char buf[PATH_MAX];
	for (const char *p = path; *p;) {
		size_t n = strcspn(p, ":");
		snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, p, prog);
		if (access(buf, X_OK) == 0)
			return true;
		p += n + (p[n] == ':');
	}
	return false;
}

int bench_report_write(const char *dir, const struct bench_result *r, const char *title, char *why, size_t whylen)
{
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return bal__failf(-errno, why, whylen, "--report %s: cannot create it: %s", dir, strerror(errno));
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/series.csv", dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return bal__failf(-errno, why, whylen, "--report: cannot write %s: %s", path, strerror(errno));
	/* phase: 0 warm-up, 1 measured, 2 drain (answers after the last send; not in the chart) */
	fprintf(f, "second,phase,batches,ballots,duplicates,errors,bytes_sent,p50_ms,p90_ms,p99_ms,max_ms\n");
	for (size_t s = 0; s < r->nseries; s++) {
		const struct bench_sec *x = &r->series[s];
		int phase = (double)(s + 1) <= r->warmup_s ? 0 : r->send_s > 0 && (double)s >= r->send_s ? 2 : 1;
		fprintf(f, "%zu,%d,%llu,%llu,%llu,%llu,%llu,%.3f,%.3f,%.3f,%.3f\n", s + 1, phase,
		        (unsigned long long)(x->ok + x->dup), (unsigned long long)x->ballots,
		        (unsigned long long)x->dup, (unsigned long long)x->err, (unsigned long long)x->bytes,
		        bench_hist_ms(&x->lat, 0.5), bench_hist_ms(&x->lat, 0.9), bench_hist_ms(&x->lat, 0.99),
		        bench_hist_ms(&x->lat, 1.0));
	}
	if (fclose(f) != 0)
		return bal__failf(-EIO, why, whylen, "--report: writing %s failed", path);
	char abs[PATH_MAX];
	if (!realpath(dir, abs))
		snprintf(abs, sizeof(abs), "%s", dir);
	snprintf(path, sizeof(path), "%s/chart.gp", dir);
	f = fopen(path, "w");
	if (!f)
		return bal__failf(-errno, why, whylen, "--report: cannot write %s: %s", path, strerror(errno));
	fprintf(f,
	        "# ballot-bench: throughput and latency per second (gnuplot %s/chart.gp)\n"
	        "set terminal png size 1100,600\n"
	        "set output '%s/chart.png'\n"
	        "set datafile separator ','\n"
	        "set title \"%s\" noenhanced\n"
	        "set xlabel 'seconds'\n"
	        "set ylabel 'batches/s'\n"
	        "set y2label 'latency (ms)'\n"
	        "set ytics nomirror\n"
	        "set y2tics\n"
	        "set yrange [0:*]\n"
	        "set y2range [0:*]\n"
	        "set key outside bottom center horizontal\n"
	        "set grid\n"
	        "# the drain (phase 2) is left out: its seconds only collect the last answers\n"
	        "plot '%s/series.csv' every ::1 using 1:($2 < 2 ? $3 : 1/0) with lines lw 2 title 'batches/s' axes "
	        "x1y1, \\\n"
	        "     '' every ::1 using 1:($2 < 2 ? $8 : 1/0) with lines title 'p50 ms' axes x1y2, \\\n"
	        "     '' every ::1 using 1:($2 < 2 ? $10 : 1/0) with lines title 'p99 ms' axes x1y2, \\\n"
	        "     '' every ::1 using 1:($2 < 2 ? $6 : 1/0) with impulses title 'errors/s' axes x1y1\n",
	        abs, abs, title, abs);
	if (fclose(f) != 0)
		return bal__failf(-EIO, why, whylen, "--report: writing %s failed", path);
	if (!on_path("gnuplot")) {
		fprintf(stderr,
		        "ballot-bench: gnuplot is not installed: wrote %s/series.csv and %s/chart.gp but no chart.png "
		        "(apt-get install gnuplot-nox, then gnuplot %s/chart.gp; bench/compare installs it)\n",
		        dir, dir, abs);
		return 0;
	}
	char cmd[PATH_MAX + 64];
	snprintf(cmd, sizeof(cmd), "gnuplot '%s/chart.gp'", abs);
	int rc = system(cmd);
	if (rc != 0)
		fprintf(stderr, "ballot-bench: \"%s\" failed (status %d); the CSV is in %s\n", cmd, rc, dir);
	return 0;
}

/* ---- table ------------------------------------------------------------ */

static double dnum(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	return json_is_number(v) ? json_number_value(v) : 0;
}

int bench_table_main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0) {
		fputs("usage: ballot-bench table RESULT.json...\n"
		      "Prints a Markdown table of ballot-bench results (their \"label\", or target):\n"
		      "system, batches/s, ballots/s, p50 and p99 latency, and batches/s relative to the\n"
		      "reference run: the first whose label is \"ballotd --no-auth\", else the first file.\n",
		      argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	json_t **runs = calloc((size_t)argc, sizeof(*runs));
	if (!runs)
		return 1;
	int ref = -1, status = 0;
	for (int i = 1; i < argc; i++) {
		json_error_t err;
		runs[i] = json_load_file(argv[i], 0, &err);
		if (!json_is_object(runs[i])) {
			fprintf(stderr, "ballot-bench table: %s: not a result object: %s (line %d)\n", argv[i],
			        err.text, err.line);
			status = 1;
			continue;
		}
		const char *label = json_string_value(json_object_get(runs[i], "label"));
		if (ref < 0 && label && strcmp(label, "ballotd --no-auth") == 0)
			ref = i;
	}
	for (int i = 1; ref < 0 && i < argc; i++)
		if (runs[i])
			ref = i;
	double ref_bps = ref > 0 ? dnum(runs[ref], "batches_per_s") : 0;
	const char *ref_label = ref > 0 ? json_string_value(json_object_get(runs[ref], "label")) : NULL;
	printf("| system | batches/s | ballots/s | p50 ms | p99 ms | ratio to %s | errors |\n",
	       ref_label ? ref_label : "ballotd");
	printf("|---|---:|---:|---:|---:|---:|---:|\n");
	for (int i = 1; i < argc; i++) {
		if (!runs[i])
			continue;
		json_t *r = runs[i];
		const char *label = json_string_value(json_object_get(r, "label"));
		if (!label)
			label = json_string_value(json_object_get(r, "target"));
		json_t *lat = json_object_get(r, "latency_ms");
		char b1[32], b2[32];
		double bps = dnum(r, "batches_per_s");
		json_t *errs = json_object_get(r, "errors");
		double nerr = 0;
		const char *k;
		json_t *v;
		json_object_foreach(errs, k, v) nerr += json_is_number(v) ? json_number_value(v) : 0;
		char b3[32];
		printf("| %s | %s | %s | %.2f | %.2f | %.3f | %s |\n", label ? label : "?",
		       bal_cli_count((uint64_t)(bps + 0.5), b1),
		       bal_cli_count((uint64_t)(dnum(r, "ballots_per_s") + 0.5), b2), dnum(lat, "p50"),
		       dnum(lat, "p99"), ref_bps > 0 ? bps / ref_bps : 0, bal_cli_count((uint64_t)nerr, b3));
	}
	for (int i = 1; i < argc; i++)
		json_decref(runs[i]);
	free(runs);
	return status;
}
