/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ballot-bench output besides the JSON summary: the per-second series as CSV
 * and a gnuplot chart of throughput and latency over time (--report DIR),
 * and the Markdown comparison table of several runs (ballot-bench table).
 * Depends on jansson and bench/loadgen.h; runs gnuplot when it is installed.
 */
#ifndef BAL_BENCH_REPORT_H
#define BAL_BENCH_REPORT_H

#include "bench/loadgen.h"

#include <stddef.h>

/**
 * Writes DIR/series.csv and DIR/chart.gp and, when gnuplot is on PATH, runs
 * it to make DIR/chart.png. `title` heads the chart.
 * @return 0 (a missing gnuplot is reported on stderr, not an error) or
 *         -errno with `why` when DIR or a file cannot be written.
 */
int bench_report_write(const char *dir, const struct bench_result *r, const char *title, char *why, size_t whylen);

/**
 * `ballot-bench table FILE...`: reads result JSON files (the first
 * non-"null" target named ballotd is the reference, or the first file) and
 * prints a Markdown table: system, batches/s, ballots/s, p50, p99, ratio.
 * @return process exit code.
 */
int bench_table_main(int argc, char **argv);

#endif
