/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ballot-bench: the load generator and the side-by-side harness.
 * Simulates thousands of precincts uploading batches to ballotd (or the same
 * workload to PostgreSQL or Redis), prints one progress line a second and
 * one JSON summary, and with --verify checks that the system's totals moved
 * by exactly the fold of the batches it acknowledged.
 *
 * This file is the command line and the order of things: options, workload,
 * snapshot before, run, resolve lost answers, snapshot after, compare,
 * summary, report. The engine is loadgen.c, the targets *_target.c.
 */
#include "client/cli.h"
#include "defn/defn.h"
#include "client/http.h"
#include "bench/loadgen.h"
#include "bench/report.h"
#include "bench/targets.h"
#include "bench/verify.h"
#include "bench/work.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };
enum target_kind { T_BALLOTD, T_POSTGRES, T_REDIS };

#define SIGNED_POOL_RATE 40000.0 /* batches/s a signed closed-loop pool is sized for */

static const char help[] =
        "usage: ballot-bench [OPTIONS]            load-test ballotd (or a peer) and print a JSON summary\n"
        "       ballot-bench table RESULT.json... Markdown table of several results\n"
        "       ballot-bench --version\n"
        "\n"
        "Each of --precincts precincts uploads its own seq stream (seq-start, +1, ...) over\n"
        "the connection it belongs to (precinct p on connection p mod C), with up to\n"
        "--pipeline requests in flight per connection.\n"
        "\n"
        "Target:\n"
        "  --target ballotd|postgres|redis  (default ballotd)\n"
        "  --server HOST:PORT       ballotd or Redis address (ballotd: required; redis: default\n"
        "                           127.0.0.1:6379); [IPv6]:PORT and http://HOST:PORT/ work too\n"
        "  --pg-conninfo STR        libpq connection string (default \"host=127.0.0.1 dbname=postgres\")\n"
        "  --label TEXT             name of this run in the JSON and in `table` (default: the target)\n"
        "Workload:\n"
        "  --definition FILE        election definition (default data/kz2023.json; a relative path\n"
        "                           is tried here, then in the source tree)\n"
        "  --precincts K            precincts that upload, spread evenly over the definition\n"
        "                           (default: all)\n"
        "  --batch-size B           ballots per batch (default 100)\n"
        "  --kind ballots|tally     cast-vote records or per-choice counts (default ballots)\n"
        "  --seed S                 content seed (default 2023)\n"
        "  --key-seed S             seed of the definition's demo keys (default: --seed)\n"
        "  --sign / --no-sign       Ed25519-sign batches with the demo keys (default: sign for\n"
        "                           ballotd when the definition has keys; never for the peers)\n"
        "  --variants V             distinct batch contents per precinct (default 4)\n"
        "  --seq-start N            first seq of every precinct (default 1)\n"
        "  --pool N                 signed batches pre-signed per precinct (default: enough for\n"
        "                           --batches, for --rate x time, or for 40,000 batches/s x time);\n"
        "                           later seqs are signed during the run and counted as signed_live\n"
        "Load:\n"
        "  --connections C          keep-alive connections, 1..precincts (default min(K, 1000))\n"
        "  --pipeline P             requests in flight per connection (default 1)\n"
        "  --duration S             seconds of measured load after the warm-up (default 10)\n"
        "  --batches N              send exactly N batches instead of --duration\n"
        "  --rate R                 open loop: offer R batches/s at fixed intervals, latency from\n"
        "                           the scheduled time (default 0: closed loop)\n"
        "  --warmup S               seconds not counted in the summary (default 2; 0 with --batches)\n"
        "  --threads N              client threads, each with its own loop (default 1)\n"
        "  --source-addrs N         bind connection j to 127.0.0.(1 + j mod N) (default 8 for a\n"
        "                           127.x server, else 0); each address has its own ~28,000 ports\n"
        "  --timeout S              no answer for this long is a lost connection (default 30)\n"
        "Output:\n"
        "  --verify                 check afterwards that the totals grew by exactly the fold of\n"
        "                           the acknowledged batches (exit 1 if not); see bench/README.md\n"
        "  --report DIR             also write DIR/series.csv and DIR/chart.png (gnuplot)\n"
        "  --quiet                  no progress lines\n"
        "\n"
        "Exit status: 0 the run happened (and --verify passed); 1 it could not run or --verify\n"
        "failed; 2 bad command line. Errors during the run are in the JSON, not the status.\n";

struct args {
	enum target_kind target;
	const char *server, *pg_conninfo, *label, *definition, *report;
	char server_buf[BAL_HTTP_SERVER_MAX]; /* --server as HOST:PORT; `server` points here or to the default */
	uint32_t precincts, batch_size, variants, connections, pipeline, threads, source_addrs, timeout_s;
	bool source_addrs_set, key_seed_set, sign_set, sign, verify, quiet, batches_set, warmup_set;
	enum bal_kind kind;
	uint64_t seed, key_seed, seq_start, pool, batches;
	double duration, rate, warmup;
};

enum {
	O_TARGET = 256,
	O_SERVER,
	O_PG,
	O_LABEL,
	O_DEFN,
	O_PRECINCTS,
	O_BATCH_SIZE,
	O_KIND,
	O_SEED,
	O_KEY_SEED,
	O_SIGN,
	O_NO_SIGN,
	O_VARIANTS,
	O_SEQ_START,
	O_POOL,
	O_CONNS,
	O_PIPELINE,
	O_DURATION,
	O_BATCHES,
	O_RATE,
	O_WARMUP,
	O_THREADS,
	O_SRC,
	O_TIMEOUT,
	O_VERIFY,
	O_REPORT,
	O_QUIET,
	O_VERSION,
	O_HELP
};

/* Returns -1 to go on, else the exit code. */
static int parse_args(int argc, char **argv, struct args *a)
{
	static const struct option longopts[] = {
	        {"target", required_argument, NULL, O_TARGET},
	        {"server", required_argument, NULL, O_SERVER},
	        {"pg-conninfo", required_argument, NULL, O_PG},
	        {"label", required_argument, NULL, O_LABEL},
	        {"definition", required_argument, NULL, O_DEFN},
	        {"precincts", required_argument, NULL, O_PRECINCTS},
	        {"batch-size", required_argument, NULL, O_BATCH_SIZE},
	        {"kind", required_argument, NULL, O_KIND},
	        {"seed", required_argument, NULL, O_SEED},
	        {"key-seed", required_argument, NULL, O_KEY_SEED},
	        {"sign", no_argument, NULL, O_SIGN},
	        {"no-sign", no_argument, NULL, O_NO_SIGN},
	        {"variants", required_argument, NULL, O_VARIANTS},
	        {"seq-start", required_argument, NULL, O_SEQ_START},
	        {"pool", required_argument, NULL, O_POOL},
	        {"connections", required_argument, NULL, O_CONNS},
	        {"pipeline", required_argument, NULL, O_PIPELINE},
	        {"duration", required_argument, NULL, O_DURATION},
	        {"batches", required_argument, NULL, O_BATCHES},
	        {"rate", required_argument, NULL, O_RATE},
	        {"warmup", required_argument, NULL, O_WARMUP},
	        {"threads", required_argument, NULL, O_THREADS},
	        {"source-addrs", required_argument, NULL, O_SRC},
	        {"timeout", required_argument, NULL, O_TIMEOUT},
	        {"verify", no_argument, NULL, O_VERIFY},
	        {"report", required_argument, NULL, O_REPORT},
	        {"quiet", no_argument, NULL, O_QUIET},
	        {"help", no_argument, NULL, O_HELP},
	        {"version", no_argument, NULL, O_VERSION},
	        {NULL, 0, NULL, 0},
	};
	*a = (struct args){.target = T_BALLOTD,
	                   .pg_conninfo = "host=127.0.0.1 dbname=postgres",
	                   .definition = "data/kz2023.json",
	                   .batch_size = 100,
	                   .variants = 4,
	                   .pipeline = 1,
	                   .threads = 1,
	                   .timeout_s = 30,
	                   .kind = BAL_KIND_BALLOTS,
	                   .seed = 2023,
	                   .seq_start = 1,
	                   .duration = 10,
	                   .warmup = 2};
	bool ok = true;
	int opt;
	opterr = 0; /* bal_cli_bad_option() says what is wrong, on one line */
	while (ok && (opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case O_TARGET:
			if (strcmp(optarg, "ballotd") == 0) {
				a->target = T_BALLOTD;
			} else if (strcmp(optarg, "postgres") == 0 || strcmp(optarg, "postgresql") == 0) {
				a->target = T_POSTGRES;
			} else if (strcmp(optarg, "redis") == 0) {
				a->target = T_REDIS;
			} else {
				fprintf(stderr, "ballot-bench: --target \"%s\": expected ballotd, postgres or redis\n",
				        optarg);
				ok = false;
			}
			break;
		case O_SERVER:
			ok = bal_cli_server("ballot-bench", optarg, a->server_buf, sizeof(a->server_buf));
			a->server = a->server_buf;
			break;
		case O_PG: a->pg_conninfo = optarg; break;
		case O_LABEL: a->label = optarg; break;
		case O_DEFN: a->definition = optarg; break;
		case O_PRECINCTS:
			ok = bal_cli_u32("ballot-bench", "--precincts", optarg, 1, UINT32_MAX, &a->precincts);
			break;
		case O_BATCH_SIZE:
			ok = bal_cli_u32("ballot-bench", "--batch-size", optarg, 1, 1000000, &a->batch_size);
			break;
		case O_KIND:
			if (strcmp(optarg, "ballots") == 0) {
				a->kind = BAL_KIND_BALLOTS;
			} else if (strcmp(optarg, "tally") == 0) {
				a->kind = BAL_KIND_TALLY;
			} else {
				fprintf(stderr, "ballot-bench: --kind \"%s\": expected ballots or tally\n", optarg);
				ok = false;
			}
			break;
		case O_SEED: ok = bal_cli_u64("ballot-bench", "--seed", optarg, 0, UINT64_MAX, &a->seed); break;
		case O_KEY_SEED:
			ok = bal_cli_u64("ballot-bench", "--key-seed", optarg, 0, UINT64_MAX, &a->key_seed);
			a->key_seed_set = true;
			break;
		case O_SIGN: a->sign = a->sign_set = true; break;
		case O_NO_SIGN:
			a->sign = false;
			a->sign_set = true;
			break;
		case O_VARIANTS: ok = bal_cli_u32("ballot-bench", "--variants", optarg, 1, 1024, &a->variants); break;
		case O_SEQ_START:
			ok = bal_cli_u64("ballot-bench", "--seq-start", optarg, 1, UINT64_MAX / 4, &a->seq_start);
			break;
		case O_POOL: ok = bal_cli_u64("ballot-bench", "--pool", optarg, 0, UINT32_MAX, &a->pool); break;
		case O_CONNS:
			ok = bal_cli_u32("ballot-bench", "--connections", optarg, 1, 1000000, &a->connections);
			break;
		case O_PIPELINE: ok = bal_cli_u32("ballot-bench", "--pipeline", optarg, 1, 65536, &a->pipeline); break;
		case O_DURATION:
			ok = bal_cli_double("ballot-bench", "--duration", optarg, 0.1, 86000, &a->duration);
			break;
		case O_BATCHES:
			ok = bal_cli_u64("ballot-bench", "--batches", optarg, 1, UINT32_MAX * 16ull, &a->batches);
			a->batches_set = true;
			break;
		case O_RATE: ok = bal_cli_double("ballot-bench", "--rate", optarg, 0, 1e8, &a->rate); break;
		case O_WARMUP:
			ok = bal_cli_double("ballot-bench", "--warmup", optarg, 0, 3600, &a->warmup);
			a->warmup_set = true;
			break;
		case O_THREADS: ok = bal_cli_u32("ballot-bench", "--threads", optarg, 1, 64, &a->threads); break;
		case O_SRC:
			ok = bal_cli_u32("ballot-bench", "--source-addrs", optarg, 0, 254, &a->source_addrs);
			a->source_addrs_set = true;
			break;
		case O_TIMEOUT: ok = bal_cli_u32("ballot-bench", "--timeout", optarg, 1, 86400, &a->timeout_s); break;
		case O_VERIFY: a->verify = true; break;
		case O_REPORT: a->report = optarg; break;
		case O_QUIET: a->quiet = true; break;
		case O_HELP: fputs(help, stdout); return EXIT_OK;
		case O_VERSION: printf("ballot-bench %s\n", BAL_VERSION); return EXIT_OK;
		default: bal_cli_bad_option("ballot-bench", argv); return EXIT_USAGE;
		}
	}
	if (!ok)
		return EXIT_USAGE;
	if (optind < argc) {
		fprintf(stderr, "ballot-bench: unexpected argument \"%s\" (options start with --; see --help)\n",
		        argv[optind]);
		return EXIT_USAGE;
	}
	if (a->target == T_BALLOTD && !a->server) {
		fprintf(stderr, "ballot-bench: --server HOST:PORT is required with --target ballotd\n");
		return EXIT_USAGE;
	}
	if (a->target == T_REDIS && !a->server)
		a->server = "127.0.0.1:6379";
	if (!a->key_seed_set)
		a->key_seed = a->seed;
	if (a->batches_set && !a->warmup_set)
		a->warmup = 0;
	if (!a->label)
		a->label = a->target == T_BALLOTD ? "ballotd" : a->target == T_POSTGRES ? "postgres" : "redis";
	return -1;
}

/* Resolves HOST:PORT, IPv4 first (ballotd listens on 127.0.0.1 by default). */
static bool resolve(const char *server, struct sockaddr_storage *out, char host[BAL_HTTP_HOST_MAX], uint16_t *port)
{
	char why[256];
	if (bal_http_hostport(server, host, port, why, sizeof(why)) < 0) {
		fprintf(stderr, "ballot-bench: --server: %s\n", why);
		return false;
	}
	char portstr[8];
	snprintf(portstr, sizeof(portstr), "%u", *port);
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
	int gai = getaddrinfo(host, portstr, &hints, &res);
	if (gai) {
		fprintf(stderr, "ballot-bench: --server %s: cannot resolve %s: %s\n", server, host, gai_strerror(gai));
		return false;
	}
	const struct addrinfo *pick = res;
	for (const struct addrinfo *ai = res; ai; ai = ai->ai_next)
		if (ai->ai_family == AF_INET) {
			pick = ai;
			break;
		}
	memset(out, 0, sizeof(*out));
	memcpy(out, pick->ai_addr, pick->ai_addrlen);
	freeaddrinfo(res);
	return true;
}

static bool is_loopback4(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET && (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
}

/* Raises the soft descriptor limit to the hard one and checks the connections fit. */
static bool check_fds(uint32_t need)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && need + 64 > rl.rlim_cur) {
		fprintf(stderr,
		        "ballot-bench: --connections %u: needs %u descriptors with the 64 kept for the rest, and the "
		        "limit (RLIMIT_NOFILE) is %llu\n",
		        need, need + 64, (unsigned long long)rl.rlim_cur);
		return false;
	}
	return true;
}

/* ---- verification ------------------------------------------------------ */

struct target_ctx {
	enum target_kind kind;
	const char *server;
	struct bench_pg_cfg pg;
	struct bench_redis_cfg redis;
};

static int read_totals(const struct target_ctx *t, const struct bal_defn *d, struct bench_totals *out, char *why,
                       size_t whylen)
{
	if (t->kind == T_POSTGRES)
		return bench_pg_totals(&t->pg, d, out, why, whylen);
	if (t->kind == T_REDIS)
		return bench_redis_totals(&t->redis, d, out, why, whylen);
	struct bal_http_resp r;
	int rc = bal_http_request(t->server, "GET", "/v1/snapshot", NULL, 0, NULL, 30000, 64u << 20, &r, why, whylen);
	if (rc < 0)
		return rc;
	if (r.status != 200) {
		snprintf(why, whylen, "GET /v1/snapshot from %s: HTTP %d: %.200s", t->server, r.status, r.body);
		bal_http_resp_deinit(&r);
		return -EPROTO;
	}
	json_error_t err;
	json_t *snap = json_loadb(r.body, r.len, 0, &err);
	bal_http_resp_deinit(&r);
	if (!json_is_object(snap)) {
		snprintf(why, whylen, "GET /v1/snapshot from %s: not a JSON object: %s", t->server, err.text);
		json_decref(snap);
		return -EPROTO;
	}
	rc = bench_totals_from_snapshot(out, snap, why, whylen);
	json_decref(snap);
	return rc;
}

/* Resends a batch whose answer was lost until ballotd answers; true iff it is stored. */
static bool resolve_unknown(const char *server, struct bench_work *w, uint8_t *buf, const struct bench_unknown *u,
                            int *failures)
{
	size_t len = bench_work_body(w, u->p, u->seq, buf);
	for (int attempt = 0; attempt < 50; attempt++) {
		struct bal_http_resp r;
		char why[256];
		if (bal_http_request(server, "POST", "/v1/batches", buf, len, "application/x-protobuf", 30000, 1 << 20,
		                     &r, why, sizeof(why)) == 0) {
			json_t *j = r.status == 200 ? json_loadb(r.body, r.len, 0, NULL) : NULL;
			const char *st = json_string_value(json_object_get(j, "status"));
			bool stored = st && (strcmp(st, "ACCEPTED") == 0 || strcmp(st, "DUPLICATE") == 0);
			int status = r.status;
			json_decref(j);
			bal_http_resp_deinit(&r);
			if (status != 503)
				return stored;
		}
		usleep(100000);
	}
	(*failures)++;
	return false;
}

struct verify_out {
	bool ran, ok;
	size_t checked, mismatches, resolved, unresolved;
	uint64_t expected_batches;
	char first[512];
};

/* Folds the acknowledged batches, reads the totals after the run and compares the difference. */
static void verify_after(const struct target_ctx *t, const struct bal_defn *d, struct bench_work *w,
                         struct bench_result *r, struct bench_totals *before, struct verify_out *v)
{
	v->ran = true;
	uint32_t V = bench_work_variants(w);
	if (r->nunknown && t->kind == T_BALLOTD) {
		uint8_t *buf = malloc(bench_work_body_max(w));
		int failures = 0;
		for (size_t i = 0; buf && i < r->nunknown; i++) {
			const struct bench_unknown *u = &r->unknown[i];
			if (resolve_unknown(t->server, w, buf, u, &failures)) {
				r->acked[(size_t)u->p * V + bench_work_variant(w, u->seq)]++;
				v->resolved++;
			}
		}
		free(buf);
		v->unresolved = (size_t)failures;
	} else {
		v->unresolved = r->nunknown;
	}
	struct bench_totals after, want;
	char why[512] = "";
	if (bench_totals_init(&after, d) < 0 || bench_totals_init(&want, d) < 0) {
		snprintf(v->first, sizeof(v->first), "out of memory");
		return;
	}
	struct bal_expect *e = bal_expect_new(d);
	int rc = e ? 0 : -ENOMEM;
	for (uint32_t p = 0; rc == 0 && p < bench_work_precincts(w); p++)
		for (uint32_t vi = 0; rc == 0 && vi < V; vi++)
			rc = bench_work_fold(w, e, p, vi, r->acked[(size_t)p * V + vi], why, sizeof(why));
	if (rc < 0) {
		snprintf(v->first, sizeof(v->first), "folding the acknowledged batches: %.400s", why);
		goto done;
	}
	bench_totals_from_expect(&want, e);
	v->expected_batches = want.turnout[BENCH_T_BATCHES];
	if ((rc = read_totals(t, d, &after, why, sizeof(why))) < 0) {
		snprintf(v->first, sizeof(v->first), "reading the totals after the run: %.400s", why);
		goto done;
	}
	bench_totals_sub(&after, before);
	v->checked = bench_totals_count(&after);
	v->mismatches = bench_totals_diff(&after, &want, why, sizeof(why));
	if (v->mismatches)
		snprintf(v->first, sizeof(v->first),
		         "after - before differs from the fold of acknowledged batches: %.400s", why);
	else if (v->unresolved)
		snprintf(v->first, sizeof(v->first),
		         "%zu batches lost their answer and could not be resolved: the check is inconclusive",
		         v->unresolved);
	v->ok = v->mismatches == 0 && v->unresolved == 0;
done:
	bal_expect_free(e);
	bench_totals_deinit(&after);
	bench_totals_deinit(&want);
}

/* ---- summary -------------------------------------------------------------- */

static json_t *latency_json(const struct bench_hist *h)
{
	json_t *j = json_object();
	static const struct {
		const char *name;
		double q;
	} qs[] = {{"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}, {"p999", 0.999}, {"max", 1.0}};
	for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++)
		json_object_set_new(j, qs[i].name, json_real(round(bench_hist_ms(h, qs[i].q) * 1000) / 1000));
	return j;
}

static void print_summary(const struct args *a, const char *defn_path, const struct bench_result *r,
                          const struct bench_work *w, const struct verify_out *v, double setup_s)
{
	json_t *j = json_object();
	const char *tname = a->target == T_BALLOTD ? "ballotd" : a->target == T_POSTGRES ? "postgres" : "redis";
	uint64_t batches = r->total.ok + r->total.dup;
	json_object_set_new(j, "label", json_string(a->label));
	json_object_set_new(j, "target", json_string(tname));
	json_object_set_new(j, "server",
	                    a->target == T_POSTGRES ? json_string(a->pg_conninfo) : json_string(a->server));
	json_object_set_new(j, "definition", json_string(defn_path));
	json_object_set_new(j, "kind", json_string(a->kind == BAL_KIND_TALLY ? "tally" : "ballots"));
	json_object_set_new(j, "batch_size", json_integer(a->batch_size));
	json_object_set_new(j, "precincts", json_integer(bench_work_precincts(w)));
	json_object_set_new(j, "connections", json_integer(a->connections));
	json_object_set_new(j, "pipeline", json_integer(a->pipeline));
	json_object_set_new(j, "threads", json_integer(a->threads));
	json_object_set_new(j, "signed", json_boolean(a->sign));
	json_object_set_new(j, "rate", a->rate > 0 ? json_real(a->rate) : json_null());
	json_object_set_new(j, "warmup_s", json_real(a->warmup));
	json_object_set_new(j, "batches", json_integer((json_int_t)batches));
	json_object_set_new(j, "ballots", json_integer((json_int_t)r->total.ballots));
	json_object_set_new(j, "seconds", json_real(round(r->seconds * 1000) / 1000));
	double s = r->seconds > 0 ? r->seconds : 1;
	json_object_set_new(j, "batches_per_s", json_real(round((double)batches / s * 10) / 10));
	json_object_set_new(j, "ballots_per_s", json_real(round((double)r->total.ballots / s)));
	json_object_set_new(j, "latency_ms", latency_json(&r->total.lat));
	json_t *errs = json_object();
	for (size_t i = 0; i < r->nerrors; i++)
		json_object_set_new(errs, r->errors[i].name, json_integer((json_int_t)r->errors[i].n));
	json_object_set_new(j, "errors", errs);
	json_object_set_new(j, "duplicates", json_integer((json_int_t)r->total.dup));
	json_object_set_new(j, "bytes_sent", json_integer((json_int_t)r->total.bytes));
	json_t *all = json_object();
	json_object_set_new(all, "stored", json_integer((json_int_t)r->all.ok));
	json_object_set_new(all, "duplicates", json_integer((json_int_t)r->all.dup));
	json_object_set_new(all, "errors", json_integer((json_int_t)r->all.err));
	json_object_set_new(all, "bytes_sent", json_integer((json_int_t)r->all.bytes));
	json_object_set_new(all, "lost_answers", json_integer((json_int_t)r->nunknown));
	json_object_set_new(all, "unsent", json_integer((json_int_t)r->unsent));
	json_object_set_new(all, "reconnects", json_integer((json_int_t)r->reconnects));
	json_object_set_new(all, "signed_live", json_integer((json_int_t)bench_work_live_signed(w)));
	json_object_set_new(j, "whole_run", all);
	json_object_set_new(j, "client_cpu_s", json_real(round(r->cpu_s * 100) / 100));
	json_object_set_new(j, "setup_s", json_real(round(setup_s * 100) / 100));
	json_object_set_new(j, "first_error", r->first_error[0] ? json_string(r->first_error) : json_null());
	if (v->ran) {
		json_t *jv = json_object();
		json_object_set_new(jv, "ok", json_boolean(v->ok));
		json_object_set_new(jv, "values_checked", json_integer((json_int_t)v->checked));
		json_object_set_new(jv, "mismatches", json_integer((json_int_t)v->mismatches));
		json_object_set_new(jv, "expected_batches", json_integer((json_int_t)v->expected_batches));
		json_object_set_new(jv, "resolved_lost_answers", json_integer((json_int_t)v->resolved));
		json_object_set_new(jv, "error", v->first[0] ? json_string(v->first) : json_null());
		json_object_set_new(j, "verify", jv);
	} else {
		json_object_set_new(j, "verify", json_null());
	}
	json_dumpf(j, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
	fputc('\n', stdout);
	fflush(stdout);
	json_decref(j);
}

/* ---- main ------------------------------------------------------------------ */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Builds the target; NULL (and a message) when it was not built in. */
static const struct bench_target *make_target(struct target_ctx *t, const struct args *a, struct bench_work *w,
                                              const char *host, uint16_t port)
{
	t->kind = a->target;
	t->server = a->server;
	if (a->target == T_BALLOTD)
		return &bench_http_target;
	const struct bench_target *bt = NULL;
	if (a->target == T_POSTGRES) {
		t->pg = (struct bench_pg_cfg){.conninfo = a->pg_conninfo, .work = w};
		bt = bench_pg_target(&t->pg);
		if (!bt)
			fprintf(stderr, "ballot-bench: --target postgres: this ballot-bench was built without libpq "
			                "(install libpq-dev and rebuild; bench/compare does)\n");
	} else {
		t->redis = (struct bench_redis_cfg){.port = port, .work = w};
		snprintf(t->redis.host, sizeof(t->redis.host), "%s", host);
		bt = bench_redis_target(&t->redis);
		if (!bt)
			fprintf(stderr, "ballot-bench: --target redis: this ballot-bench was built without hiredis "
			                "(install libhiredis-dev and rebuild; bench/compare does)\n");
	}
	return bt;
}

static uint64_t pool_size(const struct args *a, uint32_t k)
{
	if (a->pool || !a->sign)
		return a->pool;
	double total;
	if (a->batches)
		total = (double)a->batches;
	else
		total = (a->rate > 0 ? a->rate : SIGNED_POOL_RATE) * (a->warmup + a->duration);
	return (uint64_t)ceil(total / k) + 2;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "table") == 0)
		return bench_table_main(argc - 1, argv + 1);
	struct args a;
	int rc = parse_args(argc, argv, &a);
	if (rc >= 0)
		return rc;
	signal(SIGPIPE, SIG_IGN);
	char path[PATH_MAX], why[512];
	if (!bal_cli_find_file("ballot-bench", "--definition", a.definition, BENCH_SOURCE_DIR, path, sizeof(path)))
		return EXIT_FAILED;
	struct bal_defn *d;
	if (bal_defn_load(path, &d, why, sizeof(why)) < 0) {
		fprintf(stderr, "ballot-bench: %s: %s\n", path, why);
		return EXIT_FAILED;
	}
	int exit_code = EXIT_FAILED;
	struct bench_work *w = NULL;
	struct bench_result r = {0};
	struct bench_totals before = {0};
	double t_setup = now_s();
	uint32_t k = a.precincts ? a.precincts : d->nprecincts;
	if (k > d->nprecincts) {
		fprintf(stderr, "ballot-bench: --precincts %u: the definition has only %u precincts\n", k,
		        d->nprecincts);
		exit_code = EXIT_USAGE;
		goto free_defn;
	}
	if (!a.connections)
		a.connections = k < 1000 ? k : 1000;
	if (a.connections > k) {
		fprintf(stderr,
		        "ballot-bench: --connections %u: more than the %u precincts that upload (each connection "
		        "carries at least one precinct; raise --precincts)\n",
		        a.connections, k);
		exit_code = EXIT_USAGE;
		goto free_defn;
	}
	if (a.threads > a.connections) {
		fprintf(stderr, "ballot-bench: --threads %u: more than the %u connections\n", a.threads, a.connections);
		exit_code = EXIT_USAGE;
		goto free_defn;
	}
	bool has_keys = d->nprecincts && d->precincts[0].has_key;
	if (!a.sign_set)
		a.sign = a.target == T_BALLOTD && has_keys;
	if (!check_fds(a.connections))
		goto free_defn;
	struct sockaddr_storage server = {.ss_family = AF_UNSPEC};
	char host[BAL_HTTP_HOST_MAX] = "";
	uint16_t port = 0;
	if (a.target != T_POSTGRES && !resolve(a.server, &server, host, &port))
		goto free_defn;
	if (!a.source_addrs_set)
		a.source_addrs = a.target != T_POSTGRES && is_loopback4(&server) ? 8 : 0;
	if (a.source_addrs && !is_loopback4(&server)) {
		fprintf(stderr, "ballot-bench: --source-addrs %u: only for a server on 127.x (it binds 127.0.0.N)\n",
		        a.source_addrs);
		exit_code = EXIT_USAGE;
		goto free_defn;
	}
	struct bench_work_opts wo = {.d = d,
	                             .precincts = k,
	                             .batch_size = a.batch_size,
	                             .kind = a.kind,
	                             .seed = a.seed,
	                             .key_seed = a.key_seed,
	                             .sign = a.sign,
	                             .variants = a.variants,
	                             .host = a.server ? a.server : "postgres"};
	if (bench_work_new(&wo, &w, why, sizeof(why)) < 0) {
		fprintf(stderr, "ballot-bench: workload: %s\n", why);
		goto free_defn;
	}
	uint64_t pool = pool_size(&a, k);
	if (a.sign && pool) {
		long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		if (!a.quiet)
			fprintf(stderr, "ballot-bench: pre-signing %llu batches per precinct (%llu in all)...\n",
			        (unsigned long long)pool, (unsigned long long)pool * k);
		if (bench_work_presign(w, a.seq_start, pool, ncpu > 0 ? (unsigned)ncpu : 1, why, sizeof(why)) < 0) {
			fprintf(stderr, "ballot-bench: %s\n", why);
			goto free_work;
		}
	}
	struct target_ctx tc;
	const struct bench_target *target = make_target(&tc, &a, w, host, port);
	if (!target)
		goto free_work;
	if (target->setup && target->setup(target->cfg, why, sizeof(why)) < 0) {
		fprintf(stderr, "ballot-bench: %s setup: %s\n", target->name, why);
		goto free_work;
	}
	if (a.verify) {
		if (bench_totals_init(&before, d) < 0 || read_totals(&tc, d, &before, why, sizeof(why)) < 0) {
			fprintf(stderr, "ballot-bench: --verify: reading the totals before the run: %s\n", why);
			goto free_work;
		}
	}
	struct bench_run_opts ro = {.target = target,
	                            .work = w,
	                            .server = server,
	                            .connections = a.connections,
	                            .pipeline = a.pipeline,
	                            .threads = a.threads,
	                            .source_addrs = a.source_addrs,
	                            .duration_s = a.duration,
	                            .warmup_s = a.warmup,
	                            .rate = a.rate,
	                            .batches = a.batches,
	                            .seq_start = a.seq_start,
	                            .timeout_ms = a.timeout_s * 1000,
	                            .batch_size = a.batch_size,
	                            .progress = !a.quiet};
	double setup_s = now_s() - t_setup;
	if (!a.quiet)
		fprintf(stderr, "ballot-bench: %s, %u connections x pipeline %u, %u precincts, batches of %u%s\n",
		        a.label, a.connections, a.pipeline, k, a.batch_size, a.sign ? ", signed" : "");
	if (bench_run(&ro, &r, why, sizeof(why)) < 0) {
		fprintf(stderr, "ballot-bench: %s\n", why);
		goto free_result;
	}
	struct verify_out v = {0};
	if (a.verify)
		verify_after(&tc, d, w, &r, &before, &v);
	print_summary(&a, path, &r, w, &v, setup_s);
	if (a.verify && !v.ok)
		fprintf(stderr, "ballot-bench: --verify failed: %s\n", v.first);
	if (!a.quiet && r.total.dup)
		fprintf(stderr,
		        "ballot-bench: %llu answers were DUPLICATE: the server held these seqs already (a used data "
		        "directory?); use a fresh one or --seq-start past them\n",
		        (unsigned long long)r.total.dup);
	if (!a.quiet && bench_work_live_signed(w))
		fprintf(stderr,
		        "ballot-bench: %llu batches were signed during the run (beyond the pre-signed pool): raise "
		        "--pool if the client was the bottleneck\n",
		        (unsigned long long)bench_work_live_signed(w));
	exit_code = a.verify && !v.ok ? EXIT_FAILED : EXIT_OK;
	if (a.report) {
		char title[256];
		snprintf(title, sizeof(title), "%s: %u connections x pipeline %u, batches of %u", a.label,
		         a.connections, a.pipeline, a.batch_size);
		if (bench_report_write(a.report, &r, title, why, sizeof(why)) < 0) {
			fprintf(stderr, "ballot-bench: %s\n", why);
			exit_code = EXIT_FAILED;
		}
	}
free_result:
	bench_result_deinit(&r);
free_work:
	bench_totals_deinit(&before);
	bench_work_free(w);
free_defn:
	bal_defn_free(d);
	return exit_code;
}
