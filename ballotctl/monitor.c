/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ballotctl monitor: an observer's watch on the log. It keeps the last signed
 * tree head it has verified in a state file and, on every check, asks for
 * the latest one, verifies its signature under the pinned log key and proves
 * it an extension of the saved one (RFC 9162 consistency proof). A head that
 * is smaller, or of the same size with another root, or whose proof does not
 * check, is a fork or a rollback: the log showed two histories. Comparing
 * the state files of two monitors (--compare) catches a log that shows
 * different histories to different observers. Checks are client/logcheck.h's.
 */
#include "ballotctl/ballotctl.h"

#include "client/http.h"
#include "client/logcheck.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char help[] = "usage: ballotctl monitor --server HOST:PORT --server-key HEX|FILE --state FILE\n"
                           "                         [--definition FILE] [--once | --count N] [--interval DUR]\n"
                           "       ballotctl monitor --compare STATE_A STATE_B --server-key HEX|FILE\n"
                           "                         [--server HOST:PORT] [--definition FILE]\n"
                           "\n"
                           "Watches the log for forks. Each check fetches the latest signed tree head (GET\n"
                           "/v1/log/sth), verifies its Ed25519 signature under --server-key for the election\n"
                           "id, and compares it with the head saved in --state:\n"
                           "  - a smaller tree size than the saved one: a rollback (FORK);\n"
                           "  - the same size with another root: a fork (FORK);\n"
                           "  - a larger size: the consistency proof from the saved size (GET\n"
                           "    /v1/log/proof/consistency) must lead from the saved root to the new root,\n"
                           "    else a fork (FORK).\n"
                           "A head that checks out replaces the saved one (written to FILE.tmp, fsynced,\n"
                           "renamed over FILE, directory fsynced: a kill never leaves half a state). The\n"
                           "first check, with no state yet, saves the head it gets (trust on first use).\n"
                           "One line per check on stdout; a FORK is printed on stdout and stderr with both\n"
                           "heads, and ends the monitor with status 3. The state file is one JSON object:\n"
                           "  {\"tree_size\", \"timestamp_ms\", \"root_hash\", \"signature\", \"server\",\n"
                           "   \"election_id\", \"checked_at\"}\n"
                           "The election id is --definition's; without it, GET /v1/log/key gives it after\n"
                           "checking that the key it names is the pinned one, and a state saved for another\n"
                           "election id is refused.\n"
                           "\n"
                           "Two monitors (two places, two networks) can compare what the log showed them:\n"
                           "--compare A B verifies both saved heads' signatures; equal sizes must have equal\n"
                           "roots; otherwise the consistency proof from the smaller to the larger is fetched\n"
                           "from --server (any server: a proof cannot be forged) and checked. Status 0 when\n"
                           "consistent, 3 on a fork, 1 when it cannot be decided (sizes differ and no\n"
                           "--server, or the server does not answer).\n"
                           "\n"
                           "  --server HOST:PORT     ballotd address (http://HOST:PORT/ works too)\n"
                           "  --server-key HEX|FILE  the log's public key (required)\n"
                           "  --state FILE           the saved head (required without --compare)\n"
                           "  --definition FILE      the election definition (its election id)\n"
                           "  --once                 one check, then exit (same as --count 1)\n"
                           "  --count N              N checks, then exit (default: until killed)\n"
                           "  --interval DUR         time between checks (default 60s; ms, s, m, h)\n"
                           "  --timeout SECONDS      per request (default 30)\n"
                           "  --compare A B          compare two state files instead of checking the server\n"
                           "\n"
                           "Exit status: 0 every check verified (or killed while looping); 1 a check could\n"
                           "not be done (server unreachable, a bad answer: logged, and the loop goes on), a\n"
                           "head whose signature fails or a server naming another log key (at once), a\n"
                           "state file that does not verify;\n"
                           "2 bad command line; 3 a fork or a rollback.\n";

struct saved {
	struct bal_tree_head head;
	char server[BAL_HTTP_HOST_MAX + 16];
	char election_id[257];
	char checked_at[32];
};

struct monitor {
	const char *server; /* HOST:PORT, or NULL */
	const char *state;
	struct log_trust trust;
	bool have_election;
	int timeout_ms;
};

static void now_text(char buf[32])
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	log_time((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000, buf);
}

/* 0 loaded; -ENOENT no file; -EINVAL not a state (why). */
static int load_state(const char *path, struct saved *s, char *why, size_t whylen)
{
	json_error_t err;
	json_t *o = json_load_file(path, 0, &err);
	if (!o) {
		if (access(path, F_OK) != 0 && errno == ENOENT)
			return -ENOENT;
		snprintf(why, whylen, "state %s: not JSON: %s", path, err.text);
		return -EINVAL;
	}
	memset(s, 0, sizeof(*s));
	char e[300];
	int rc = bal_logcheck_head_from_json(o, &s->head, e, sizeof(e));
	const char *server = json_string_value(json_object_get(o, "server"));
	const char *id = json_string_value(json_object_get(o, "election_id"));
	const char *at = json_string_value(json_object_get(o, "checked_at"));
	if (rc < 0)
		snprintf(why, whylen, "state %s: %s", path, e);
	snprintf(s->server, sizeof(s->server), "%s", server ? server : "?");
	snprintf(s->election_id, sizeof(s->election_id), "%s", id ? id : "");
	snprintf(s->checked_at, sizeof(s->checked_at), "%s", at ? at : "?");
	json_decref(o);
	return rc < 0 ? -EINVAL : 0;
}

static int save_state(const struct monitor *m, const struct bal_tree_head *h, char *why, size_t whylen)
{
	char at[32], tmp[4096];
	now_text(at);
	json_t *o = json_object();
	if (!o || bal_logcheck_head_to_json(h, o) < 0 || json_object_set_new(o, "server", json_string(m->server)) ||
	    json_object_set_new(o, "election_id", json_string(m->trust.election_id)) ||
	    json_object_set_new(o, "checked_at", json_string(at))) {
		json_decref(o);
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(o);
	snprintf(tmp, sizeof(tmp), "%s.tmp", m->state);
	int fd = text ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : -1;
	int err = text ? (fd < 0 ? errno : 0) : ENOMEM;
	size_t len = text ? strlen(text) : 0, off = 0;
	while (!err && off <= len) {
		/* the text, then a newline */
		ssize_t n = off < len ? write(fd, text + off, len - off) : write(fd, "\n", 1);
		if (n < 0 && errno != EINTR)
			err = errno;
		else if (n > 0)
			off += (size_t)n;
	}
	if (!err && fsync(fd) < 0)
		err = errno;
	if (fd >= 0 && close(fd) < 0 && !err)
		err = errno;
	if (!err && rename(tmp, m->state) < 0)
		err = errno;
	free(text);
	if (!err) {
		char copy[4096];
		snprintf(copy, sizeof(copy), "%s", m->state);
		int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0 || fsync(dfd) < 0)
			err = errno;
		if (dfd >= 0)
			close(dfd);
	}
	if (err) {
		unlink(tmp);
		snprintf(why, whylen, "cannot save the state %s: %s", m->state, strerror(err));
		return -err;
	}
	return 0;
}

static void describe(const struct bal_tree_head *h, char *out, size_t outlen)
{
	char root[65], at[32];
	bal_logcheck_hex(h->root, sizeof(h->root), root);
	snprintf(out, outlen, "size %" PRIu64 ", root %s, signed at %s", h->tree_size, root,
	         log_time(h->timestamp_ms, at));
}

static void print_fork(const char *why, const char *a_name, const struct bal_tree_head *a, const char *b_name,
                       const struct bal_tree_head *b)
{
	char da[200], db[200], at[32];
	describe(a, da, sizeof(da));
	describe(b, db, sizeof(db));
	now_text(at);
	for (int i = 0; i < 2; i++) {
		FILE *f = i ? stderr : stdout;
		fprintf(f, "%s FORK: %s\n  %s: %s\n  %s: %s\n", at, why, a_name, da, b_name, db);
		fflush(f);
	}
}

/* The saved state's own checks: its signature, its election. */
static int check_saved(const struct monitor *m, const char *path, const struct saved *s)
{
	char why[600];
	if (s->election_id[0] && strcmp(s->election_id, m->trust.election_id) != 0) {
		fprintf(stderr, "ballotctl monitor: state %s was saved for election \"%s\", not \"%s\"\n", path,
		        s->election_id, m->trust.election_id);
		return -1;
	}
	if (bal_logcheck_head_verify(&s->head, m->trust.election_id, m->trust.key, why, sizeof(why)) < 0) {
		fprintf(stderr, "ballotctl monitor: state %s: %s\n", path, why);
		return -1;
	}
	return 0;
}

/* One check. Returns EXIT_OK, EXIT_FAILED (could not check: go on), EXIT_FORK,
 * or -EXIT_FAILED when the monitor must stop (a bad signature, a bad state). */
static int check_once(struct monitor *m)
{
	char why[1000], at[32], line[300];
	if (!m->have_election) {
		int rc = log_fetch_election(m->server, &m->trust, m->timeout_ms, why, sizeof(why));
		now_text(at);
		if (rc == BAL_EAUTH) {
			/* the server names another log key: nothing it signs can be checked */
			printf("%s %s: WRONG KEY: %s\n", at, m->server, why);
			fprintf(stderr, "ballotctl monitor: %s: WRONG KEY: %s\n", m->server, why);
			return -EXIT_FAILED;
		}
		if (rc < 0) {
			printf("%s %s: cannot check: %s\n", at, m->server, why);
			fflush(stdout);
			return EXIT_FAILED;
		}
		m->have_election = true;
	}
	struct saved s;
	int rc = load_state(m->state, &s, why, sizeof(why));
	if (rc == -EINVAL) {
		fprintf(stderr, "ballotctl monitor: %s\n", why);
		return -EXIT_FAILED;
	}
	bool have_saved = rc == 0;
	if (have_saved && check_saved(m, m->state, &s) < 0)
		return -EXIT_FAILED;

	struct bal_tree_head h;
	rc = log_fetch_signed_head(m->server, &m->trust, 0, m->timeout_ms, &h, why, sizeof(why));
	now_text(at);
	if (rc == BAL_EAUTH) {
		printf("%s %s: SIGNATURE FAILED: %s\n", at, m->server, why);
		fprintf(stderr, "ballotctl monitor: %s: SIGNATURE FAILED: %s\n", m->server, why);
		return -EXIT_FAILED;
	}
	if (rc < 0) {
		printf("%s %s: cannot check: %s\n", at, m->server, why);
		fflush(stdout);
		return EXIT_FAILED;
	}
	describe(&h, line, sizeof(line));
	if (have_saved) {
		rc = log_check_consistent(m->server, &s.head, &h, m->timeout_ms, why, sizeof(why));
		if (rc == BAL_ECORRUPT) {
			char saved_name[400], got_name[400];
			snprintf(saved_name, sizeof(saved_name), "saved in %s (from %s at %s)", m->state, s.server,
			         s.checked_at);
			snprintf(got_name, sizeof(got_name), "served now by %s", m->server);
			print_fork(why, saved_name, &s.head, got_name, &h);
			return EXIT_FORK;
		}
		if (rc < 0) {
			printf("%s %s: cannot check the head of %s against the saved size %" PRIu64 ": %s\n", at,
			       m->server, line, s.head.tree_size, why);
			fflush(stdout);
			return EXIT_FAILED;
		}
		if (h.timestamp_ms < s.head.timestamp_ms && h.tree_size > s.head.tree_size)
			fprintf(stderr,
			        "ballotctl monitor: warning: the head of size %" PRIu64
			        " is signed earlier than the saved one of size %" PRIu64 "\n",
			        h.tree_size, s.head.tree_size);
	}
	if (save_state(m, &h, why, sizeof(why)) < 0) {
		fprintf(stderr, "ballotctl monitor: %s\n", why);
		return -EXIT_FAILED;
	}
	if (!have_saved)
		printf("%s %s: head of %s; saved as the first head (nothing to compare with)\n", at, m->server, line);
	else if (h.tree_size == s.head.tree_size)
		printf("%s %s: head of %s; unchanged since the saved one\n", at, m->server, line);
	else
		printf("%s %s: head of %s; consistent with the saved head of size %" PRIu64 "\n", at, m->server, line,
		       s.head.tree_size);
	fflush(stdout);
	return EXIT_OK;
}

static int compare(struct monitor *m, const char *a_path, const char *b_path)
{
	struct saved a, b;
	char why[1000];
	if (load_state(a_path, &a, why, sizeof(why)) < 0 || load_state(b_path, &b, why, sizeof(why)) < 0) {
		fprintf(stderr, "ballotctl monitor: --compare: %s\n", why[0] ? why : "a state file does not exist");
		return EXIT_FAILED;
	}
	if (!m->have_election) {
		if (!a.election_id[0] || strcmp(a.election_id, b.election_id) != 0) {
			fprintf(stderr,
			        "ballotctl monitor: --compare: the states name elections \"%s\" and \"%s\"; give "
			        "--definition\n",
			        a.election_id, b.election_id);
			return EXIT_FAILED;
		}
		snprintf(m->trust.election_id, sizeof(m->trust.election_id), "%s", a.election_id);
	}
	if (check_saved(m, a_path, &a) < 0 || check_saved(m, b_path, &b) < 0)
		return EXIT_FAILED;
	bool a_first = a.head.tree_size <= b.head.tree_size;
	const struct saved *lo = a_first ? &a : &b, *hi = a_first ? &b : &a;
	const char *lo_path = a_first ? a_path : b_path, *hi_path = a_first ? b_path : a_path;
	if (lo->head.tree_size != hi->head.tree_size && lo->head.tree_size != 0 && !m->server) {
		fprintf(stderr,
		        "ballotctl monitor: --compare: sizes %" PRIu64 " and %" PRIu64
		        " differ; give --server to fetch the consistency proof\n",
		        lo->head.tree_size, hi->head.tree_size);
		return EXIT_FAILED;
	}
	int rc = log_check_consistent(m->server, &lo->head, &hi->head, m->timeout_ms, why, sizeof(why));
	char lo_name[4200], hi_name[4200];
	snprintf(lo_name, sizeof(lo_name), "%s (from %s at %s)", lo_path, lo->server, lo->checked_at);
	snprintf(hi_name, sizeof(hi_name), "%s (from %s at %s)", hi_path, hi->server, hi->checked_at);
	if (rc == BAL_ECORRUPT) {
		print_fork(why, lo_name, &lo->head, hi_name, &hi->head);
		return EXIT_FORK;
	}
	if (rc < 0) {
		fprintf(stderr, "ballotctl monitor: --compare: cannot decide: %s\n", why);
		return EXIT_FAILED;
	}
	if (lo->head.tree_size == hi->head.tree_size)
		printf("CONSISTENT: %s and %s hold the same head of size %" PRIu64 "\n", lo_path, hi_path,
		       lo->head.tree_size);
	else
		printf("CONSISTENT: %s (size %" PRIu64 ") is a prefix of %s (size %" PRIu64 ")\n", lo_path,
		       lo->head.tree_size, hi_path, hi->head.tree_size);
	return EXIT_OK;
}

static void sleep_s(double s)
{
	struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
	}
}

int cmd_monitor(int argc, char **argv)
{
	enum { O_SERVER = 256, O_KEY, O_STATE, O_DEFN, O_ONCE, O_COUNT, O_INTERVAL, O_TIMEOUT, O_COMPARE, O_HELP };
	static const struct option longopts[] = {
	        {"server", required_argument, NULL, O_SERVER},
	        {"server-key", required_argument, NULL, O_KEY},
	        {"state", required_argument, NULL, O_STATE},
	        {"definition", required_argument, NULL, O_DEFN},
	        {"once", no_argument, NULL, O_ONCE},
	        {"count", required_argument, NULL, O_COUNT},
	        {"interval", required_argument, NULL, O_INTERVAL},
	        {"timeout", required_argument, NULL, O_TIMEOUT},
	        {"compare", required_argument, NULL, O_COMPARE},
	        {"help", no_argument, NULL, O_HELP},
	        {NULL, 0, NULL, 0},
	};
	struct monitor m = {0};
	const char *server = NULL, *key = NULL, *definition = NULL, *compare_a = NULL;
	uint64_t count = 0;
	uint32_t timeout_s = 30;
	double interval_s = 60;
	bool ok = true;
	int opt;
	optind = 1;
	while (ok && (opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case O_SERVER: server = optarg; break;
		case O_KEY: key = optarg; break;
		case O_STATE: m.state = optarg; break;
		case O_DEFN: definition = optarg; break;
		case O_ONCE: count = 1; break;
		case O_COUNT: ok = opt_u64("--count", optarg, 1, UINT64_MAX, &count); break;
		case O_INTERVAL: ok = opt_duration("--interval", optarg, 0.01, 86400, &interval_s); break;
		case O_TIMEOUT: ok = opt_u32("--timeout", optarg, 1, 3600, &timeout_s); break;
		case O_COMPARE: compare_a = optarg; break;
		case O_HELP: fputs(help, stdout); return EXIT_OK;
		default: opt_bad("monitor", argv); return EXIT_USAGE;
		}
	}
	if (!ok)
		return EXIT_USAGE;
	if (compare_a ? optind != argc - 1 : !opt_no_operands("monitor", argc, argv)) {
		if (compare_a)
			fprintf(stderr, "ballotctl monitor: --compare A B takes two state files\n");
		return EXIT_USAGE;
	}
	const char *missing = !key        ? "--server-key HEX|FILE"
	                      : compare_a ? NULL
	                      : !server   ? "--server HOST:PORT"
	                      : !m.state  ? "--state FILE"
	                                  : NULL;
	if (missing) {
		fprintf(stderr, "ballotctl monitor: %s is required\n", missing);
		return EXIT_USAGE;
	}
	char srv[BAL_HTTP_HOST_MAX + 16];
	if ((server && !opt_server("monitor", server, srv, sizeof(srv))) || !opt_server_key("monitor", key, &m.trust) ||
	    (definition &&
	     !definition_election_id("monitor", definition, m.trust.election_id, sizeof(m.trust.election_id))))
		return EXIT_USAGE;
	m.server = server ? srv : NULL;
	m.have_election = definition != NULL;
	m.timeout_ms = (int)timeout_s * 1000;
	if (compare_a)
		return compare(&m, compare_a, argv[optind]);

	int worst = EXIT_OK;
	for (uint64_t i = 0; count == 0 || i < count; i++) {
		if (i > 0)
			sleep_s(interval_s);
		int rc = check_once(&m);
		if (rc < 0)
			return -rc;
		if (rc == EXIT_FORK)
			return EXIT_FORK;
		if (rc != EXIT_OK)
			worst = rc;
	}
	return worst;
}
