/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ballotctl snapshot: GET /v1/snapshot and print it as a table (national
 * contests in full with bars, district contests as one leader line each), or
 * the JSON itself with --json.
 */
#include "ballotctl/ballotctl.h"

#include "client/http.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] = "usage: ballotctl snapshot --server HOST:PORT [--json] [--timeout SECONDS]\n"
                           "\n"
                           "Fetches GET /v1/snapshot and GET /v1/seats and prints the election, the journal\n"
                           "position, precincts reporting, turnout, every national contest with votes,\n"
                           "percent, seats (\"-\" under the threshold) and a bar, and every district\n"
                           "contest's leader, marked * when the seat is allocated to them. --json prints\n"
                           "the daemon's snapshot JSON unchanged (pretty-printed). --server also takes\n"
                           "[IPv6]:PORT and http://HOST:PORT/.\n";

#define BAR_WIDTH 30
/* Widest name column; longer names keep their start and their end ("...No. 2"). */
#define NAME_MAX_WIDTH 44

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

static bool is_national(json_t *c)
{
	json_t *d = json_object_get(c, "district_id");
	return !d || json_is_null(d);
}

/* Characters (UTF-8 code points) in s. */
static int width_of(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}

/* Byte offset of code point `i` of s (or its end). */
static size_t offset_of(const char *s, int i)
{
	size_t o = 0;
	for (int n = 0; s[o]; o++) {
		if (((unsigned char)s[o] & 0xc0) != 0x80 && n++ == i)
			return o;
	}
	return o;
}

/* Prints s in exactly `width` characters: padded, or shortened in the middle
 * ("East Kazakhstan...Region No. 2") so that names differing at the end stay
 * apart. */
static void print_cell(const char *s, int width)
{
	int w = width_of(s);
	if (w <= width) {
		printf("%s%*s", s, width - w, "");
		return;
	}
	int tail = width / 3, head = width - 3 - tail;
	size_t ho = offset_of(s, head), to = offset_of(s, w - tail);
	printf("%.*s...%s", (int)ho, s, s + to);
}

static int fit_width(int w)
{
	return w > NAME_MAX_WIDTH ? NAME_MAX_WIDTH : w;
}

static void print_bar(double percent)
{
	int n = (int)(percent / 100.0 * BAR_WIDTH + 0.5);
	for (int i = 0; i < n && i < BAR_WIDTH; i++)
		fputc('#', stdout);
}

/* The /v1/seats contest with this id, or NULL. */
static json_t *seats_of(json_t *seats, uint64_t id)
{
	size_t i;
	json_t *c;
	json_array_foreach(json_object_get(seats, "contests"), i, c) if (num(c, "id") == id) return c;
	return NULL;
}

static void print_national(json_t *c, json_t *sc)
{
	char b[32];
	uint64_t total = num(c, "total_votes");
	json_t *thr = json_object_get(sc, "threshold_percent");
	printf("\n%s (contest %llu): %s votes, %llu seats", str(c, "name"), (unsigned long long)num(c, "id"),
	       fmt_count(total, b), (unsigned long long)num(c, "seats"));
	if (json_number_value(thr) > 0)
		printf(", %g%% threshold", json_number_value(thr));
	fputc('\n', stdout);
	size_t i;
	json_t *ch;
	int width = 10;
	json_array_foreach(json_object_get(c, "choices"), i, ch) if (width_of(str(ch, "name")) > width) width =
	        fit_width(width_of(str(ch, "name")));
	printf("  ");
	print_cell("choice", width);
	printf(" %12s %7s%s\n", "votes", "%", sc ? "  seats" : "");
	json_t *seat_choices = json_object_get(sc, "choices");
	char below[48];
	snprintf(below, sizeof(below), "below the %g%% threshold", json_number_value(thr));
	json_array_foreach(json_object_get(c, "choices"), i, ch)
	{
		uint64_t v = num(ch, "votes");
		printf("  ");
		print_cell(str(ch, "name"), width);
		printf(" %12s %6.2f%%", fmt_count(v, b), pct(v, total));
		const char *note = "";
		if (sc) {
			json_t *s = json_array_get(seat_choices, i);
			char cell[16] = "";
			if (!json_is_true(json_object_get(s, "seat_eligible"))) {
				note = "not eligible for seats";
			} else if (total && !json_is_true(json_object_get(s, "passed_threshold"))) {
				snprintf(cell, sizeof(cell), "-");
				note = below;
			} else {
				snprintf(cell, sizeof(cell), "%llu", (unsigned long long)num(s, "seats"));
			}
			printf("  %5s", cell);
		}
		printf("  ");
		print_bar(pct(v, total));
		if (*note) {
			int bar = (int)(pct(v, total) / 100.0 * BAR_WIDTH + 0.5);
			printf("%*s %s", BAR_WIDTH - (bar < BAR_WIDTH ? bar : BAR_WIDTH), "", note);
		}
		fputc('\n', stdout);
	}
	if (sc) {
		printf("  seats allocated %llu of %llu", (unsigned long long)num(sc, "allocated"),
		       (unsigned long long)num(sc, "seats"));
		if (json_is_true(json_object_get(sc, "tie")))
			printf(" (a tie decided a seat: it went to the choice listed first)");
		fputc('\n', stdout);
	}
}

/* A district contest's row label: its district's name, else the contest's. */
static const char *district_label(json_t *c)
{
	json_t *district = json_array_get(json_object_get(c, "districts"), 0);
	const char *name = json_string_value(json_object_get(district, "name"));
	return name ? name : str(c, "name");
}

static void print_district_row(json_t *c, json_t *sc, int dw, int cw)
{
	char b[32];
	uint64_t total = num(c, "total_votes");
	json_t *choices = json_object_get(c, "choices"), *best = NULL, *ch;
	size_t i;
	json_array_foreach(choices, i, ch) if (!best || num(ch, "votes") > num(best, "votes")) best = ch;
	/* The seat holder, if the allocation has one (it is the leader unless the
	 * leader is not eligible for the seat). */
	bool seated = false;
	json_t *s;
	json_array_foreach(json_object_get(sc, "choices"), i, s) if (num(s, "seats") > 0 && json_array_get(choices, i))
	{
		best = json_array_get(choices, i);
		seated = true;
		break;
	}
	printf("  ");
	print_cell(district_label(c), dw);
	if (!best || !total) {
		printf("   no votes yet\n");
		return;
	}
	bool tie = json_is_true(json_object_get(sc, "tie"));
	printf(" %s ", seated ? "*" : " ");
	print_cell(str(best, "name"), cw);
	printf(" %10s %6.2f%%%s\n", fmt_count(num(best, "votes"), b), pct(num(best, "votes"), total),
	       tie ? "  tie for first place: no winner" : "");
}

static void print_districts(json_t *contests, json_t *seats)
{
	json_t *c, *ch;
	size_t i, k;
	int dw = 0, cw = 6;
	json_array_foreach(contests, i, c)
	{
		if (is_national(c))
			continue;
		if (width_of(district_label(c)) > dw)
			dw = fit_width(width_of(district_label(c)));
		json_array_foreach(json_object_get(c, "choices"), k, ch) if (width_of(str(ch, "name")) > cw) cw =
		        fit_width(width_of(str(ch, "name")));
	}
	if (!dw)
		return;
	printf("\nDistrict contests (leader; * elected at the seats' position)\n  ");
	print_cell("district", dw);
	printf("   ");
	print_cell("leader", cw);
	printf(" %10s %7s\n", "votes", "%");
	json_array_foreach(contests, i, c) if (!is_national(c))
	        print_district_row(c, seats_of(seats, num(c, "id")), dw, cw);
}

/* `seats` may be NULL (GET /v1/seats failed): no seat columns then. */
static void print_snapshot(json_t *s, json_t *seats)
{
	char b1[32], b2[32], b3[32], b4[32];
	json_t *e = json_object_get(s, "election");
	printf("%s [%s, %s]\n", str(e, "name"), str(e, "id"), str(e, "date"));
	uint64_t rep = num(s, "precincts_reporting"), tot = num(s, "precincts_total");
	printf("position %s, batches %s, precincts reporting %s of %s (%.1f%%)\n", fmt_count(num(s, "position"), b1),
	       fmt_count(num(s, "batches"), b2), fmt_count(rep, b3), fmt_count(tot, b4), pct(rep, tot));
	if (seats && num(seats, "position") != num(s, "position"))
		printf("seats computed at position %s (the journal moved between the two requests)\n",
		       fmt_count(num(seats, "position"), b1));
	json_t *t = json_object_get(s, "turnout");
	uint64_t reg = num(s, "registered_voters");
	printf("registered %s; ballots issued %s, cast %s (%.2f%% of registered), spoiled %s\n", fmt_count(reg, b1),
	       fmt_count(num(t, "issued"), b2), fmt_count(num(t, "cast"), b3), pct(num(t, "cast"), reg),
	       fmt_count(num(t, "spoiled"), b4));
	json_t *contests = json_object_get(s, "contests"), *c;
	size_t i;
	json_array_foreach(contests, i, c) if (is_national(c))
	        print_national(c, seats ? seats_of(seats, num(c, "id")) : NULL);
	print_districts(contests, seats);
}

/* GET path as a JSON object; NULL with a message on stderr. */
static json_t *get_json(const char *server, const char *path, int timeout_ms)
{
	struct bal_http_resp r;
	char why[512];
	if (bal_http_request(server, "GET", path, NULL, 0, NULL, timeout_ms, 64u << 20, &r, why, sizeof(why)) < 0) {
		fprintf(stderr, "ballotctl snapshot: %s\n", why);
		return NULL;
	}
	json_t *j = NULL;
	if (r.status != 200) {
		fprintf(stderr, "ballotctl snapshot: GET %s from %s: HTTP %d: %.200s\n", path, server, r.status,
		        r.body);
	} else {
		json_error_t err;
		j = json_loadb(r.body, r.len, 0, &err);
		if (!json_is_object(j)) {
			fprintf(stderr, "ballotctl snapshot: GET %s from %s: not a JSON object: %s (line %d)\n", path,
			        server, err.text, err.line);
			json_decref(j);
			j = NULL;
		}
	}
	bal_http_resp_deinit(&r);
	return j;
}

int cmd_snapshot(int argc, char **argv)
{
	enum { O_SERVER = 256, O_JSON, O_TIMEOUT, O_HELP };
	static const struct option longopts[] = {
	        {"server", required_argument, NULL, O_SERVER},
	        {"json", no_argument, NULL, O_JSON},
	        {"timeout", required_argument, NULL, O_TIMEOUT},
	        {"help", no_argument, NULL, O_HELP},
	        {NULL, 0, NULL, 0},
	};
	char server[BAL_HTTP_SERVER_MAX] = "";
	bool as_json = false, ok = true;
	uint32_t timeout_s = 10;
	int opt;
	optind = 1;
	while (ok && (opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case O_SERVER: ok = opt_server("snapshot", optarg, server, sizeof(server)); break;
		case O_JSON: as_json = true; break;
		case O_TIMEOUT: ok = opt_u32("--timeout", optarg, 1, 3600, &timeout_s); break;
		case O_HELP: fputs(help, stdout); return EXIT_OK;
		default: opt_bad("snapshot", argv); return EXIT_USAGE;
		}
	}
	if (!ok || !opt_no_operands("snapshot", argc, argv))
		return EXIT_USAGE;
	if (!server[0]) {
		fprintf(stderr, "ballotctl snapshot: --server HOST:PORT is required\n");
		return EXIT_USAGE;
	}
	json_t *s = get_json(server, "/v1/snapshot", (int)timeout_s * 1000);
	if (!s)
		return EXIT_FAILED;
	if (as_json) {
		json_dumpf(s, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
	} else {
		json_t *seats = get_json(server, "/v1/seats", (int)timeout_s * 1000);
		if (!seats)
			fprintf(stderr, "ballotctl snapshot: printing the totals without seats\n");
		print_snapshot(s, seats);
		json_decref(seats);
	}
	json_decref(s);
	return EXIT_OK;
}
