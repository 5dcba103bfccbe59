/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ballotctl push: generates signed batches (client/gen.h) round-robin over
 * the first K precincts, uploads them with the load engine (client/load.h)
 * and reports what was acknowledged and the totals the daemon should now
 * show for them (client/expect.h, independent of the daemon's tally code).
 */
#include "ballotctl/ballotctl.h"

#include "defn/defn.h"
#include "client/expect.h"
#include "client/gen.h"
#include "client/http.h"
#include "client/load.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] = "usage: ballotctl push --server HOST:PORT [OPTIONS]\n"
                           "\n"
                           "Generates batches deterministically from (seed, precinct, seq), signs them\n"
                           "with the demo keys, POSTs them to /v1/batches over keep-alive connections with\n"
                           "pipelining, and prints how many were acknowledged and the totals expected from\n"
                           "the acknowledged ones. Batch i goes to precinct i mod K with seq\n"
                           "seq-start + i div K; precinct p's batches all use connection p mod C, in order.\n"
                           "Re-running with the same arguments resends identical bytes (DUPLICATE answers).\n"
                           "\n"
                           "  --server HOST:PORT    ballotd address (required; [IPv6]:PORT and\n"
                           "                        http://HOST:PORT/ work too)\n"
                           "  --definition FILE     election definition (default data/kz2023.json; a relative\n"
                           "                        path is tried in the current directory, then in the\n"
                           "                        source tree ballotctl was built from)\n"
                           "  --seed S              content seed (default 2023)\n"
                           "  --key-seed S          seed the definition's demo keys were made with\n"
                           "                        (gen-definition --seed; default: --seed)\n"
                           "  --batches N           batches in total (default: one per precinct used)\n"
                           "  --batch-size B        ballots per batch (default 100)\n"
                           "  --kind ballots|tally|protocol\n"
                           "                        cast-vote records or per-choice counts (default ballots),\n"
                           "                        or each precinct's PROTOCOL: its complete result as its\n"
                           "                        batches 1..seq-1 of this seed add up (e.g. after\n"
                           "                        --batches 3K, a protocol run with --seq-start 4)\n"
                           "  --connections C       (default 4)\n"
                           "  --pipeline P          requests in flight per connection (default 8)\n"
                           "  --precincts K         use the first K precincts of the definition (default all)\n"
                           "  --seq-start N         first seq of every precinct (default 1)\n"
                           "  --retry-for SECONDS   on connection errors, EOF or 503, reconnect with backoff\n"
                           "                        and resend unacknowledged batches until a connection has\n"
                           "                        failed for this long (default 0: no retries)\n"
                           "  --timeout SECONDS     no answer for this long is a connection error (default 30)\n"
                           "  --json                one JSON object on stdout (schema: ballotctl --help)\n"
                           "\n"
                           "Exit status 0 iff every batch was acknowledged (ACCEPTED or DUPLICATE).\n";

struct push_args {
	char server[BAL_HTTP_SERVER_MAX]; /**< HOST:PORT; "" until --server */
	const char *definition;
	uint64_t seed, key_seed;
	bool key_seed_set;
	uint64_t batches;
	bool batches_set;
	uint32_t batch_size;
	enum bal_kind kind;
	uint32_t connections, pipeline;
	uint32_t precincts;
	uint64_t seq_start;
	uint32_t retry_for_s, timeout_s;
	bool json;
};

enum {
	O_SERVER = 256,
	O_DEFN,
	O_SEED,
	O_KEY_SEED,
	O_BATCHES,
	O_BATCH_SIZE,
	O_KIND,
	O_CONNS,
	O_PIPELINE,
	O_PRECINCTS,
	O_SEQ_START,
	O_RETRY,
	O_TIMEOUT,
	O_JSON,
	O_HELP
};

/* Returns -1 to go on, else the exit code. */
static int parse_args(int argc, char **argv, struct push_args *a)
{
	static const struct option longopts[] = {
	        {"server", required_argument, NULL, O_SERVER},
	        {"definition", required_argument, NULL, O_DEFN},
	        {"seed", required_argument, NULL, O_SEED},
	        {"key-seed", required_argument, NULL, O_KEY_SEED},
	        {"batches", required_argument, NULL, O_BATCHES},
	        {"batch-size", required_argument, NULL, O_BATCH_SIZE},
	        {"kind", required_argument, NULL, O_KIND},
	        {"connections", required_argument, NULL, O_CONNS},
	        {"pipeline", required_argument, NULL, O_PIPELINE},
	        {"precincts", required_argument, NULL, O_PRECINCTS},
	        {"seq-start", required_argument, NULL, O_SEQ_START},
	        {"retry-for", required_argument, NULL, O_RETRY},
	        {"timeout", required_argument, NULL, O_TIMEOUT},
	        {"json", no_argument, NULL, O_JSON},
	        {"help", no_argument, NULL, O_HELP},
	        {NULL, 0, NULL, 0},
	};
	*a = (struct push_args){.definition = "data/kz2023.json",
	                        .seed = 2023,
	                        .batch_size = 100,
	                        .kind = BAL_KIND_BALLOTS,
	                        .connections = 4,
	                        .pipeline = 8,
	                        .seq_start = 1,
	                        .timeout_s = 30};
	bool ok = true;
	int opt;
	optind = 1;
	while (ok && (opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case O_SERVER: ok = opt_server("push", optarg, a->server, sizeof(a->server)); break;
		case O_DEFN: a->definition = optarg; break;
		case O_SEED: ok = opt_u64("--seed", optarg, 0, UINT64_MAX, &a->seed); break;
		case O_KEY_SEED:
			ok = opt_u64("--key-seed", optarg, 0, UINT64_MAX, &a->key_seed);
			a->key_seed_set = true;
			break;
		case O_BATCHES:
			ok = opt_u64("--batches", optarg, 1, UINT32_MAX, &a->batches);
			a->batches_set = true;
			break;
		case O_BATCH_SIZE: ok = opt_u32("--batch-size", optarg, 1, BAL_GEN_MAX_BATCH, &a->batch_size); break;
		case O_KIND:
			if (strcmp(optarg, "ballots") == 0) {
				a->kind = BAL_KIND_BALLOTS;
			} else if (strcmp(optarg, "tally") == 0) {
				a->kind = BAL_KIND_TALLY;
			} else if (strcmp(optarg, "protocol") == 0) {
				a->kind = BAL_KIND_PROTOCOL;
			} else {
				fprintf(stderr, "ballotctl push: --kind \"%s\": expected ballots, tally or protocol\n",
				        optarg);
				ok = false;
			}
			break;
		case O_CONNS: ok = opt_u32("--connections", optarg, 1, 4096, &a->connections); break;
		case O_PIPELINE: ok = opt_u32("--pipeline", optarg, 1, 4096, &a->pipeline); break;
		case O_PRECINCTS: ok = opt_u32("--precincts", optarg, 1, UINT32_MAX, &a->precincts); break;
		case O_SEQ_START: ok = opt_u64("--seq-start", optarg, 1, UINT64_MAX / 2, &a->seq_start); break;
		case O_RETRY: ok = opt_u32("--retry-for", optarg, 0, 86400, &a->retry_for_s); break;
		case O_TIMEOUT: ok = opt_u32("--timeout", optarg, 1, 86400, &a->timeout_s); break;
		case O_JSON: a->json = true; break;
		case O_HELP: fputs(help, stdout); return EXIT_OK;
		default: opt_bad("push", argv); return EXIT_USAGE;
		}
	}
	if (!ok || !opt_no_operands("push", argc, argv))
		return EXIT_USAGE;
	if (!a->server[0]) {
		fprintf(stderr, "ballotctl push: --server HOST:PORT is required\n");
		return EXIT_USAGE;
	}
	if (!a->key_seed_set)
		a->key_seed = a->seed;
	return -1;
}

static const char *kind_name(enum bal_kind k)
{
	return k == BAL_KIND_TALLY ? "tally" : k == BAL_KIND_PROTOCOL ? "protocol" : "ballots";
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return a < b ? -1 : a > b;
}

/* Latency (last send to answer) percentiles of acknowledged batches, in ms. */
static json_t *latency_json(const struct bal_load *l)
{
	size_t n = bal_load_count(l), m = 0;
	uint64_t *v = malloc((n ? n : 1) * sizeof(*v));
	if (!v)
		return json_null();
	for (size_t i = 0; i < n; i++) {
		const struct bal_load_item *it = bal_load_item(l, i);
		if (it->state == BAL_LOAD_ACCEPTED || it->state == BAL_LOAD_DUPLICATE)
			v[m++] = it->done_ns - it->last_send_ns;
	}
	qsort(v, m, sizeof(*v), cmp_u64);
	json_t *j = json_object();
	static const struct {
		const char *name;
		double q;
	} qs[] = {{"p50", 0.50}, {"p90", 0.90}, {"p99", 0.99}, {"max", 1.0}};
	for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
		double ms = 0;
		if (m) {
			size_t k = (size_t)(qs[i].q * (double)(m - 1) + 0.5);
			ms = (double)v[k] / 1e6;
		}
		json_object_set_new(j, qs[i].name, json_real(ms));
	}
	free(v);
	return j;
}

static const char *state_name(enum bal_load_state s)
{
	switch (s) {
	case BAL_LOAD_ACCEPTED: return "accepted";
	case BAL_LOAD_DUPLICATE: return "duplicate";
	case BAL_LOAD_REJECTED: return "rejected";
	case BAL_LOAD_ERROR: return "error";
	default: return "pending";
	}
}

static json_t *failures_json(const struct bal_load *l)
{
	json_t *arr = json_array();
	size_t n = bal_load_count(l);
	for (size_t i = 0; i < n && json_array_size(arr) < 20; i++) {
		const struct bal_load_item *it = bal_load_item(l, i);
		if (it->state == BAL_LOAD_ACCEPTED || it->state == BAL_LOAD_DUPLICATE)
			continue;
		json_t *f = json_object();
		json_object_set_new(f, "precinct_id", json_integer(it->precinct_id));
		json_object_set_new(f, "seq", json_integer((json_int_t)it->seq));
		json_object_set_new(f, "state", json_string(state_name(it->state)));
		json_object_set_new(f, "http_status", json_integer(it->http_status));
		json_object_set_new(f, "error", it->error ? json_string(it->error) : json_string("not answered"));
		json_array_append_new(arr, f);
	}
	return arr;
}

static void print_json(const struct push_args *a, const char *defn_path, const struct bal_defn *d, uint32_t k,
                       uint64_t seq_end, const struct bal_load *l, const struct bal_expect *e)
{
	struct bal_load_stats st;
	bal_load_stats(l, &st);
	double secs = (double)st.elapsed_ns / 1e9;
	json_t *j = json_object();
	json_object_set_new(j, "server", json_string(a->server));
	json_object_set_new(j, "definition", json_string(defn_path));
	json_object_set_new(j, "election_id", json_string(d->election_id));
	json_object_set_new(j, "kind", json_string(kind_name(a->kind)));
	json_object_set_new(j, "seed", json_integer((json_int_t)a->seed));
	json_object_set_new(j, "key_seed", json_integer((json_int_t)a->key_seed));
	json_object_set_new(j, "batch_size", json_integer(a->batch_size));
	json_object_set_new(j, "precincts", json_integer(k));
	json_object_set_new(j, "seq_start", json_integer((json_int_t)a->seq_start));
	json_object_set_new(j, "seq_end", json_integer((json_int_t)seq_end));
	json_object_set_new(j, "batches", json_integer((json_int_t)bal_load_count(l)));
	json_object_set_new(j, "accepted", json_integer((json_int_t)st.accepted));
	json_object_set_new(j, "duplicate", json_integer((json_int_t)st.duplicate));
	json_object_set_new(j, "rejected", json_integer((json_int_t)st.rejected));
	json_object_set_new(j, "errors", json_integer((json_int_t)(st.errors + st.pending)));
	json_object_set_new(j, "acknowledged", json_integer((json_int_t)(st.accepted + st.duplicate)));
	json_object_set_new(j, "sends", json_integer((json_int_t)st.sends));
	json_object_set_new(j, "reconnects", json_integer((json_int_t)st.reconnects));
	json_object_set_new(j, "expect_errors", json_integer((json_int_t)st.expect_errors));
	json_object_set_new(j, "elapsed_s", json_real(secs));
	/* A rate is only reported when the server acknowledged something: a count
	 * of refused connections per second is no throughput. */
	bool acked = st.accepted + st.duplicate > 0;
	json_object_set_new(j, "batches_per_s", json_real(acked && secs > 0 ? (double)bal_load_count(l) / secs : 0));
	json_object_set_new(j, "latency_ms", latency_json(l));
	const char *fe = bal_load_first_error(l);
	json_object_set_new(j, "first_error", fe ? json_string(fe) : json_null());
	json_object_set_new(j, "failures", failures_json(l));
	json_object_set_new(j, "expected", bal_expect_json(e));
	json_dumpf(j, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
	fputc('\n', stdout);
	json_decref(j);
}

static void print_contest(const struct bal_defn *d, const struct bal_expect *e, uint32_t c)
{
	const struct bal_contest *ct = &d->contests[c];
	uint64_t total = 0;
	for (uint32_t k = 0; k < ct->nchoices; k++)
		total += bal_expect_votes(e, c, k);
	char buf[32];
	if (ct->district < 0) {
		printf("  %s (contest %u): %s votes\n", ct->name, ct->id, fmt_count(total, buf));
		for (uint32_t k = 0; k < ct->nchoices; k++) {
			uint64_t v = bal_expect_votes(e, c, k);
			printf("    %-36.36s %12s %6.2f%%\n", ct->choices[k].name, fmt_count(v, buf),
			       total ? 100.0 * (double)v / (double)total : 0.0);
		}
		return;
	}
	uint32_t best = 0;
	for (uint32_t k = 1; k < ct->nchoices; k++)
		if (bal_expect_votes(e, c, k) > bal_expect_votes(e, c, best))
			best = k;
	uint64_t v = bal_expect_votes(e, c, best);
	printf("    %-48.48s %-40.40s %10s %6.2f%%\n", ct->name, total ? ct->choices[best].name : "-",
	       fmt_count(v, buf), total ? 100.0 * (double)v / (double)total : 0.0);
}

static void print_human(const struct push_args *a, const struct bal_defn *d, const struct bal_load *l,
                        const struct bal_expect *e)
{
	struct bal_load_stats st;
	bal_load_stats(l, &st);
	double secs = (double)st.elapsed_ns / 1e9;
	char b1[32], b2[32], b3[32], b4[32];
	if (st.accepted + st.duplicate)
		printf("pushed %s %s batches of %u to %s in %.3f s: %.0f batches/s (%u connections x pipeline %u)\n",
		       fmt_count(bal_load_count(l), b1), kind_name(a->kind), a->batch_size, a->server, secs,
		       secs > 0 ? (double)bal_load_count(l) / secs : 0.0, a->connections, a->pipeline);
	else
		printf("pushed none of %s %s batches of %u to %s in %.3f s: nothing was accepted (%u connections x "
		       "pipeline %u)\n",
		       fmt_count(bal_load_count(l), b1), kind_name(a->kind), a->batch_size, a->server, secs,
		       a->connections, a->pipeline);
	printf("  accepted %s, duplicate %s, rejected %s, errors %s (sends %llu, reconnects %llu)\n",
	       fmt_count(st.accepted, b1), fmt_count(st.duplicate, b2), fmt_count(st.rejected, b3),
	       fmt_count(st.errors + st.pending, b4), (unsigned long long)st.sends, (unsigned long long)st.reconnects);
	struct bal_expect_turnout t;
	bal_expect_turnout(e, &t);
	printf("expected totals of the %s acknowledged batches (%u precincts reporting):\n", fmt_count(t.batches, b1),
	       bal_expect_precincts_reporting(e));
	printf("  ballots %s; turnout issued %s, cast %s, spoiled %s\n", fmt_count(t.ballots, b1),
	       fmt_count(t.issued, b2), fmt_count(t.cast, b3), fmt_count(t.spoiled, b4));
	for (uint32_t c = 0; c < d->ncontests; c++)
		if (d->contests[c].district < 0)
			print_contest(d, e, c);
	printf("  district contests (leader):\n");
	for (uint32_t c = 0; c < d->ncontests; c++)
		if (d->contests[c].district >= 0)
			print_contest(d, e, c);
}

/* Generates every batch into the engine; returns the last seq used or 0 on error. */
static uint64_t generate(const struct push_args *a, const struct bal_defn *d, uint32_t k, struct bal_load *l)
{
	char why[256];
	struct bal_gen *g;
	/* A protocol sums the BALLOTS batches of the same seed (the votes of TALLY ones are the same). */
	const bool protocol = a->kind == BAL_KIND_PROTOCOL;
	struct bal_gen_opts go = {.seed = a->seed,
	                          .key_seed = a->key_seed,
	                          .batch_size = a->batch_size,
	                          .kind = protocol ? BAL_KIND_BALLOTS : a->kind};
	if (bal_gen_new(d, &go, &g, why, sizeof(why)) < 0) {
		fprintf(stderr, "ballotctl push: %s\n", why);
		return 0;
	}
	uint64_t last = 0;
	for (uint64_t i = 0; i < a->batches; i++) {
		uint32_t p = (uint32_t)(i % k);
		uint64_t seq = a->seq_start + i / k;
		const uint8_t *body;
		size_t len;
		int grc = protocol ? bal_gen_protocol(g, p, seq, seq - 1, 0, NULL, &body, &len, why, sizeof(why))
		                   : bal_gen_batch(g, p, seq, NULL, &body, &len, why, sizeof(why));
		if (grc < 0) {
			fprintf(stderr, "ballotctl push: %s\n", why);
			last = 0;
			break;
		}
		if (bal_load_add(l, d->precincts[p].id, seq, body, len) < 0) {
			fprintf(stderr, "ballotctl push: out of memory queueing batch %llu\n", (unsigned long long)i);
			last = 0;
			break;
		}
		last = seq;
	}
	bal_gen_free(g);
	return last;
}

int cmd_push(int argc, char **argv)
{
	struct push_args a;
	int rc = parse_args(argc, argv, &a);
	if (rc >= 0)
		return rc;
	char path[PATH_MAX];
	if (!find_definition(a.definition, path, sizeof(path)))
		return EXIT_FAILED;
	char why[512];
	struct bal_defn *d;
	if (bal_defn_load(path, &d, why, sizeof(why)) < 0) {
		fprintf(stderr, "ballotctl push: %s: %s\n", path, why);
		return EXIT_FAILED;
	}
	int exit_code = EXIT_FAILED;
	uint32_t k = a.precincts ? a.precincts : d->nprecincts;
	if (k > d->nprecincts) {
		fprintf(stderr, "ballotctl push: --precincts %u: the definition has only %u precincts\n", k,
		        d->nprecincts);
		exit_code = EXIT_USAGE;
		goto free_defn;
	}
	if (!a.batches_set)
		a.batches = k;
	struct bal_expect *e = bal_expect_new(d);
	if (!e) {
		fprintf(stderr, "ballotctl push: out of memory\n");
		goto free_defn;
	}
	struct bal_load_opts lo = {.server = a.server,
	                           .connections = a.connections,
	                           .pipeline = a.pipeline,
	                           .retry_for_ms = a.retry_for_s * 1000,
	                           .timeout_ms = a.timeout_s * 1000,
	                           .expect = e};
	struct bal_load *l;
	if ((rc = bal_load_new(&lo, &l, why, sizeof(why))) < 0) {
		fprintf(stderr, "ballotctl push: %s\n", why);
		exit_code = rc == -EINVAL ? EXIT_USAGE : EXIT_FAILED;
		goto free_expect;
	}
	uint64_t seq_end = generate(&a, d, k, l);
	if (!seq_end)
		goto free_load;
	if (bal_load_run(l, why, sizeof(why)) < 0) {
		fprintf(stderr, "ballotctl push: %s\n", why);
		goto free_load;
	}
	if (a.json)
		print_json(&a, path, d, k, seq_end, l, e);
	else
		print_human(&a, d, l, e);
	struct bal_load_stats st;
	bal_load_stats(l, &st);
	uint64_t acked = st.accepted + st.duplicate;
	exit_code = acked == bal_load_count(l) ? EXIT_OK : EXIT_FAILED;
	if (exit_code != EXIT_OK) {
		char b1[32], b2[32];
		const char *fe = bal_load_first_error(l);
		fprintf(stderr, "ballotctl push: %s of %s batches not acknowledged%s%s\n",
		        fmt_count(bal_load_count(l) - acked, b1), fmt_count(bal_load_count(l), b2),
		        fe ? "; first error: " : "", fe ? fe : "");
	}

free_load:
	bal_load_free(l);
free_expect:
	bal_expect_free(e);
free_defn:
	bal_defn_free(d);
	return exit_code;
}
