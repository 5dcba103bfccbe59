/*
 * ballotctl snapshot: GET /v1/snapshot and print it as a table (national
 * contests in full with bars, district contests as one leader line each), or
 * the JSON itself with --json.
 */
#include "ballotctl.h"

#include "http.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] = "usage: ballotctl snapshot --server HOST:PORT [--json] [--timeout SECONDS]\n"
			   "\n"
			   "Fetches GET /v1/snapshot and prints the election, the journal position,\n"
			   "precincts reporting, turnout, every national contest with votes, percent and a\n"
			   "bar, and the leader of every district contest. --json prints the daemon's JSON\n"
			   "unchanged (pretty-printed).\n";

#define BAR_WIDTH 30

static uint64_t num(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

static const char *str(json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));
	return s ? s : "?";
}

static double pct(uint64_t part, uint64_t whole)
{
	return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

static void print_bar(double percent)
{
	int n = (int)(percent / 100.0 * BAR_WIDTH + 0.5);
	for (int i = 0; i < n && i < BAR_WIDTH; i++)
		fputc('#', stdout);
}

static void print_national(json_t *c)
{
	char b[32];
	uint64_t total = num(c, "total_votes");
	printf("\n%s (contest %llu, %llu seats): %s votes\n", str(c, "name"), (unsigned long long)num(c, "id"),
	       (unsigned long long)num(c, "seats"), fmt_count(total, b));
	size_t i;
	json_t *ch;
	json_array_foreach (json_object_get(c, "choices"), i, ch) {
		uint64_t v = num(ch, "votes");
		printf("  %-36.36s %12s %6.2f%% ", str(ch, "name"), fmt_count(v, b), pct(v, total));
		print_bar(pct(v, total));
		fputc('\n', stdout);
	}
}

static void print_district_leader(json_t *c)
{
	char b[32];
	uint64_t total = num(c, "total_votes");
	json_t *best = NULL, *ch;
	size_t i;
	json_array_foreach (json_object_get(c, "choices"), i, ch)
		if (!best || num(ch, "votes") > num(best, "votes"))
			best = ch;
	if (!best || !total) {
		printf("  %-48.48s no votes yet\n", str(c, "name"));
		return;
	}
	printf("  %-48.48s %-40.40s %10s %6.2f%%\n", str(c, "name"), str(best, "name"),
	       fmt_count(num(best, "votes"), b), pct(num(best, "votes"), total));
}

static void print_snapshot(json_t *s)
{
	char b1[32], b2[32], b3[32], b4[32];
	json_t *e = json_object_get(s, "election");
	printf("%s [%s, %s]\n", str(e, "name"), str(e, "id"), str(e, "date"));
	uint64_t rep = num(s, "precincts_reporting"), tot = num(s, "precincts_total");
	printf("position %s, batches %s, precincts reporting %s of %s (%.1f%%)\n", fmt_count(num(s, "position"), b1),
	       fmt_count(num(s, "batches"), b2), fmt_count(rep, b3), fmt_count(tot, b4), pct(rep, tot));
	json_t *t = json_object_get(s, "turnout");
	uint64_t reg = num(s, "registered_voters");
	printf("registered %s; ballots issued %s, cast %s (%.2f%% of registered), spoiled %s\n", fmt_count(reg, b1),
	       fmt_count(num(t, "issued"), b2), fmt_count(num(t, "cast"), b3), pct(num(t, "cast"), reg),
	       fmt_count(num(t, "spoiled"), b4));
	json_t *contests = json_object_get(s, "contests"), *c;
	size_t i;
	json_array_foreach (contests, i, c)
		if (json_is_null(json_object_get(c, "district_id")) || !json_object_get(c, "district_id"))
			print_national(c);
	bool header = false;
	json_array_foreach (contests, i, c) {
		if (json_is_null(json_object_get(c, "district_id")) || !json_object_get(c, "district_id"))
			continue;
		if (!header) {
			printf("\nDistrict contests (leader):\n");
			header = true;
		}
		print_district_leader(c);
	}
}

int cmd_snapshot(int argc, char **argv)
{
	enum { O_SERVER = 256, O_JSON, O_TIMEOUT, O_HELP };
	static const struct option longopts[] = {
		{ "server", required_argument, NULL, O_SERVER },
		{ "json", no_argument, NULL, O_JSON },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	const char *server = NULL;
	bool as_json = false, ok = true;
	uint32_t timeout_s = 10;
	int opt;
	optind = 1;
	while (ok && (opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case O_SERVER: server = optarg; break;
		case O_JSON: as_json = true; break;
		case O_TIMEOUT: ok = opt_u32("--timeout", optarg, 1, 3600, &timeout_s); break;
		case O_HELP: fputs(help, stdout); return EXIT_OK;
		default: fputs("ballotctl snapshot: see --help\n", stderr); return EXIT_USAGE;
		}
	}
	if (!ok || !opt_no_operands("snapshot", argc, argv))
		return EXIT_USAGE;
	if (!server) {
		fprintf(stderr, "ballotctl snapshot: --server HOST:PORT is required\n");
		return EXIT_USAGE;
	}
	struct bal_http_resp r;
	char why[512];
	int rc = bal_http_request(server, "GET", "/v1/snapshot", NULL, 0, NULL, (int)timeout_s * 1000, 64u << 20, &r,
				  why, sizeof(why));
	if (rc < 0) {
		fprintf(stderr, "ballotctl snapshot: %s\n", why);
		return EXIT_FAILED;
	}
	int exit_code = EXIT_FAILED;
	if (r.status != 200) {
		fprintf(stderr, "ballotctl snapshot: GET /v1/snapshot from %s: HTTP %d: %.200s\n", server, r.status,
			r.body);
		goto free_resp;
	}
	json_error_t err;
	json_t *s = json_loadb(r.body, r.len, 0, &err);
	if (!json_is_object(s)) {
		fprintf(stderr, "ballotctl snapshot: GET /v1/snapshot from %s: not a JSON object: %s (line %d)\n",
			server, err.text, err.line);
		json_decref(s);
		goto free_resp;
	}
	if (as_json) {
		json_dumpf(s, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
	} else {
		print_snapshot(s);
	}
	json_decref(s);
	exit_code = EXIT_OK;
free_resp:
	bal_http_resp_deinit(&r);
	return exit_code;
}
