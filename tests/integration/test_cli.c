/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The command-line grammar the client programs share, seen from outside:
 * every command that talks to a server (ballotctl snapshot, push, audit,
 * monitor, upload, verify-receipt, amend, and ballot-bench) takes HOST:PORT,
 * http://HOST:PORT[/] and [v6addr]:PORT alike against a real ballotd;
 * https://, a missing port, a path, an unknown scheme, an unknown option or a
 * missing value is bad usage: exit 2, one line on stderr naming the problem,
 * nothing on stdout. `ballotctl push` against a dead server reports no rate.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/integration/harness.h"

#define KEY_SEED 7

static char *dir;
static char *defn_path;
static char *key_path;
static char key_hex[65];
static struct th_daemon td;
static unsigned runs; /* distinct output files and seqs per run */

static void prepare(void)
{
	dir = th_tmpdir();
	cr_assert(dir);
	defn_path = th_write_defn(dir, 40, 2, 4, KEY_SEED, true);
	cr_assert(defn_path);
	key_path = th_write_log_key(dir, key_hex);
	cr_assert(key_path);
	runs = 0;
}

/* Starts ballotd with the log key, listening on `listen` (NULL: the harness's 127.0.0.1:0). */
static void start(const char *listen)
{
	char data[600];
	snprintf(data, sizeof(data), "%s/data", dir);
	const char *extra[] = {"--log-key", key_path, listen ? "--listen" : NULL, listen, NULL};
	cr_assert_eq(th_start(&td, defn_path, data, 0, extra), 0);
}

static void setup(void)
{
	prepare();
	start(NULL);
}

static void teardown(void)
{
	if (td.pid > 0)
		cr_expect_eq(th_stop(&td), 0, "ballotd should exit 0 on SIGTERM");
	free(key_path);
	free(defn_path);
	th_rmdir(dir);
	free(dir);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = calloc(1, 1 << 20);
	cr_assert(buf);
	if (f) {
		size_t n = fread(buf, 1, (1 << 20) - 1, f);
		(void)n;
		fclose(f);
	}
	return buf;
}

struct run {
	int status;
	char *out, *err; /* malloc'd, "" when empty */
};

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

/* Runs `argv` (argv[0] a path, NULL-terminated) with stdout and stderr captured. */
static struct run run_argv(const char *const *argv)
{
	char out[700], err[700];
	unsigned n = ++runs;
	snprintf(out, sizeof(out), "%s/out.%u", dir, n);
	snprintf(err, sizeof(err), "%s/err.%u", dir, n);
	pid_t pid = th_spawn(argv, out, err);
	cr_assert(pid > 0);
	struct run r = {.status = th_wait_exit(pid)};
	r.out = slurp(out);
	r.err = slurp(err);
	return r;
}

/* `ballotctl ARGS...` or `ballot-bench ARGS...` (args NULL-terminated). */
static struct run run_bin(const char *bin, const char *const *args)
{
	const char *argv[48] = {bin};
	size_t n = 1;
	for (size_t i = 0; args[i] && n < 47; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	return run_argv(argv);
}

static struct run ctl(const char *const *args)
{
	return run_bin(TH_BIN("ballotctl"), args);
}

static struct run bench(const char *const *args)
{
	return run_bin(TH_BIN("ballot-bench"), args);
}

static size_t lines(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* The forms of one address that every command must take. */
static void forms(const char *hostport, char out[4][128])
{
	snprintf(out[0], 128, "%s", hostport);
	snprintf(out[1], 128, "http://%s", hostport);
	snprintf(out[2], 128, "http://%s/", hostport);
	snprintf(out[3], 128, "HTTP://%s", hostport);
}

/* Every command that talks to a server, run against the daemon at `server`. */
static void talk_all(const char *server)
{
	char state[700], seq[24], bseq[24];
	unsigned n = runs;
	snprintf(state, sizeof(state), "%s/monitor.%u.json", dir, n);
	snprintf(seq, sizeof(seq), "%u", 1 + n * 10);
	snprintf(bseq, sizeof(bseq), "%u", 100000 + n * 100);

	const char *snap[] = {"snapshot", "--server", server, "--json", NULL};
	struct run r = ctl(snap);
	cr_expect_eq(r.status, 0, "snapshot --server %s: exit %d: %s", server, r.status, r.err);
	cr_expect(r.out[0] == '{', "snapshot --server %s prints the snapshot", server);
	cr_expect_str_empty(r.err, "snapshot --server %s: nothing on stderr", server);
	run_free(&r);

	const char *push[] = {"push", "--server",    server, "--definition", defn_path, "--key-seed", "7", "--batches",
	                      "4",    "--precincts", "4",    "--seq-start",  seq,       NULL};
	r = ctl(push);
	cr_expect_eq(r.status, 0, "push --server %s: exit %d: %s", server, r.status, r.err);
	cr_expect(strstr(r.out, "batches/s"), "push --server %s reports a rate: %s", server, r.out);
	cr_expect_str_empty(r.err, "push --server %s: nothing on stderr", server);
	run_free(&r);

	const char *audit[] = {"audit", "--server", server, "--definition", defn_path, "--server-key", key_hex, NULL};
	r = ctl(audit);
	cr_expect_eq(r.status, 0, "audit --server %s: exit %d: %s", server, r.status, r.err);
	cr_expect(r.out[0], "audit --server %s prints its report", server);
	run_free(&r);

	const char *mon[] = {"monitor", "--server", server, "--server-key", key_hex, "--state", state, "--once", NULL};
	r = ctl(mon);
	cr_expect_eq(r.status, 0, "monitor --server %s: exit %d: %s", server, r.status, r.err);
	run_free(&r);

	const char *b[] = {"--server",    server, "--definition",  defn_path, "--key-seed", "7",
	                   "--precincts", "4",    "--connections", "2",       "--batches",  "20",
	                   "--seq-start", bseq,   "--quiet",       NULL};
	r = bench(b);
	cr_expect_eq(r.status, 0, "ballot-bench --server %s: exit %d: %s", server, r.status, r.err);
	cr_expect(strstr(r.out, "\"batches_per_s\""), "ballot-bench --server %s prints its summary", server);
	run_free(&r);
}

TestSuite(cli, .init = setup, .fini = teardown, .timeout = 240);

Test(cli, every_command_takes_every_address_form)
{
	char hp[64], f[4][128];
	snprintf(hp, sizeof(hp), "127.0.0.1:%u", td.port);
	forms(hp, f);
	for (int i = 0; i < 4; i++)
		talk_all(f[i]);
}

/* Whether this host has an IPv6 loopback to listen on. */
static bool have_ipv6_loopback(void)
{
	int fd = socket(AF_INET6, SOCK_STREAM, 0);
	if (fd < 0)
		return false;
	struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	bool ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

TestSuite(cli_v6, .timeout = 240);

Test(cli_v6, every_command_takes_an_ipv6_literal)
{
	if (!have_ipv6_loopback())
		cr_skip_test("no IPv6 loopback here");
	prepare();
	start("[::1]:0");
	char hp[64], f[4][128];
	snprintf(hp, sizeof(hp), "[::1]:%u", td.port);
	forms(hp, f);
	for (int i = 0; i < 4; i++)
		talk_all(f[i]);
	teardown();
}

/* One line on stderr containing `want`, nothing on stdout, exit 2. */
static void expect_usage(struct run *r, const char *what, const char *want)
{
	cr_expect_eq(r->status, 2, "%s: exit %d (2 expected); stderr: %s", what, r->status, r->err);
	cr_expect_str_empty(r->out, "%s: nothing on stdout, got: %s", what, r->out);
	cr_expect_eq(lines(r->err), 1, "%s: one line on stderr, got: %s", what, r->err);
	cr_expect(strstr(r->err, want), "%s: stderr names \"%s\": %s", what, want, r->err);
	run_free(r);
}

/* Runs every server command with --server `bad` (other required options
 * given) and expects bad usage naming `want`. */
static void bad_server_everywhere(const char *bad, const char *want)
{
	char spool[700], receipts[700], state[700];
	snprintf(spool, sizeof(spool), "%s/spool", dir);
	snprintf(receipts, sizeof(receipts), "%s/receipts.jsonl", dir);
	snprintf(state, sizeof(state), "%s/state.json", dir);
	const char *const cmds[][16] = {
	        {"snapshot", "--server", bad, NULL},
	        {"push", "--server", bad, "--definition", defn_path, NULL},
	        {"audit", "--server", bad, "--definition", defn_path, NULL},
	        {"upload", "--spool", spool, "--server", bad, "--server-key", key_hex, "--definition", defn_path, NULL},
	        {"verify-receipt", "--server", bad, "--server-key", key_hex, "--definition", defn_path, receipts, NULL},
	        {"monitor", "--server", bad, "--server-key", key_hex, "--state", state, NULL},
	        {"amend", "--server", bad, NULL},
	};
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		char what[300];
		snprintf(what, sizeof(what), "ballotctl %s --server %s", cmds[i][0], bad);
		struct run r = ctl(cmds[i]);
		expect_usage(&r, what, want);
	}
	const char *b[] = {"--server", bad, "--definition", defn_path, NULL};
	char what[300];
	snprintf(what, sizeof(what), "ballot-bench --server %s", bad);
	struct run r = bench(b);
	expect_usage(&r, what, want);
}

Test(cli, refuses_unusable_addresses_as_bad_usage)
{
	/* `text` is a printf format given the daemon's port. */
	static const struct {
		const char *text, *want;
	} bad[] = {
	        {"https://127.0.0.1:%u", "TLS is not supported by this build yet"},
	        {"HTTPS://127.0.0.1:%u/", "TLS is not supported by this build yet"},
	        {"127.0.0.1", "expected HOST:PORT"},
	        {"http://127.0.0.1", "expected HOST:PORT"},
	        {"http://127.0.0.1:%u/v1", "must be a number from 1 to 65535"},
	        {"ftp://127.0.0.1:%u", "unknown scheme \"ftp\""},
	        {"[::1:%u", "expected [IPv6]:PORT"},
	        {"127.0.0.1:0", "port \"0\" must be a number from 1 to 65535"},
	        {"", "expected HOST:PORT"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char a[128];
		snprintf(a, sizeof(a), bad[i].text, td.port);
		bad_server_everywhere(a, bad[i].want);
	}
}

Test(cli, refuses_unknown_options_and_missing_values_in_one_line)
{
	static const char *const cmds[] = {"gen-definition", "push",   "snapshot",       "spool-batches", "upload",
	                                   "audit",          "keygen", "verify-receipt", "monitor",       "amend"};
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		char what[200];
		const char *unknown[] = {cmds[i], "--no-such-option", NULL};
		snprintf(what, sizeof(what), "ballotctl %s --no-such-option", cmds[i]);
		struct run r = ctl(unknown);
		expect_usage(&r, what, "unknown or ambiguous option --no-such-option");
	}
	static const char *const with_server[] = {"push",           "snapshot", "upload", "audit",
	                                          "verify-receipt", "monitor",  "amend"};
	for (size_t i = 0; i < sizeof(with_server) / sizeof(with_server[0]); i++) {
		char what[200];
		const char *missing[] = {with_server[i], "--server", NULL};
		snprintf(what, sizeof(what), "ballotctl %s --server (no value)", with_server[i]);
		struct run r = ctl(missing);
		expect_usage(&r, what, "option --server needs a value");
	}
	const char *json_value[] = {"push", "--json=yes", NULL};
	struct run r = ctl(json_value);
	expect_usage(&r, "ballotctl push --json=yes", "option --json takes no value");

	const char *b1[] = {"--no-such-option", NULL};
	r = bench(b1);
	expect_usage(&r, "ballot-bench --no-such-option", "unknown or ambiguous option --no-such-option");
	const char *b2[] = {"--server", NULL};
	r = bench(b2);
	expect_usage(&r, "ballot-bench --server (no value)", "option --server needs a value");
	const char *b3[] = {"--definition", defn_path, NULL};
	r = bench(b3);
	expect_usage(&r, "ballot-bench without --server", "--server HOST:PORT is required");
}

/* A port on 127.0.0.1 that refuses connections: bound, never listening. */
static int dead_port(unsigned *port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert(fd >= 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	socklen_t len = sizeof(sa);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

Test(cli, push_to_a_dead_server_reports_no_rate)
{
	unsigned port;
	int fd = dead_port(&port);
	char server[64];
	snprintf(server, sizeof(server), "http://127.0.0.1:%u/", port);
	const char *human[] = {"push",      "--server", server, "--definition", defn_path, "--key-seed", "7",
	                       "--batches", "3",        NULL};
	struct run r = ctl(human);
	cr_expect_eq(r.status, 1, "push to a dead server fails: exit %d", r.status);
	cr_expect(strstr(r.out, "nothing was accepted"), "the summary says nothing was accepted: %s", r.out);
	cr_expect_null(strstr(r.out, "batches/s"), "no rate against a dead server: %s", r.out);
	cr_expect_null(strstr(r.out, "refused"), "the error is not on stdout: %s", r.out);
	cr_expect(strstr(r.err, "3 of 3 batches not acknowledged") && strstr(r.err, "refused"), "stderr says why: %s",
	          r.err);
	run_free(&r);

	const char *json[] = {"push", "--server",  server, "--definition", defn_path, "--key-seed",
	                      "7",    "--batches", "3",    "--json",       NULL};
	r = ctl(json);
	cr_expect_eq(r.status, 1);
	json_error_t err;
	json_t *j = json_loads(r.out, 0, &err);
	cr_assert(j, "--json prints JSON: %s (%s)", r.out, err.text);
	cr_expect_eq(json_integer_value(json_object_get(j, "acknowledged")), 0);
	cr_expect(json_real_value(json_object_get(j, "batches_per_s")) == 0.0, "batches_per_s is 0");
	cr_expect(json_is_string(json_object_get(j, "first_error")), "the JSON keeps the first error");
	cr_expect(strstr(r.err, "not acknowledged"), "stderr says why: %s", r.err);
	json_decref(j);
	run_free(&r);
	close(fd);
}

/* Every binary names itself and the project's version, exit 0, on stdout. */
Test(cli, every_binary_prints_its_version)
{
	static const char *const bins[][2] = {{TH_BIN("ballotd"), "ballotd "},
	                                      {TH_BIN("ballotctl"), "ballotctl "},
	                                      {TH_BIN("ballot-bench"), "ballot-bench "}};
	for (size_t i = 0; i < sizeof(bins) / sizeof(bins[0]); i++) {
		const char *const args[] = {"--version", NULL};
		struct run r = run_bin(bins[i][0], args);
		cr_expect_eq(r.status, 0, "%s --version: exit %d", bins[i][1], r.status);
		char want[64];
		snprintf(want, sizeof(want), "%s%s\n", bins[i][1], BAL_VERSION);
		cr_expect_str_eq(r.out, want, "%s--version printed %s", bins[i][1], r.out);
		cr_expect_str_eq(r.err, "");
		run_free(&r);
	}
}
