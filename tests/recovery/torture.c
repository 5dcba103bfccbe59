/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Recovery-test helpers (see torture.h): background pushes, totals and
 * per-precinct journal checks over HTTP, a non-waiting daemon start and the
 * recovery log line. Blocking I/O and fork/exec only.
 */
#include "tests/recovery/torture.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client/logcheck.h"
#include "defn/defn.h"

double tr_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int tr_kills(int dflt)
{
	const char *env = getenv("BAL_CRASH_KILLS");
	int n = env ? atoi(env) : 0;
	return n > 0 ? n : dflt;
}

int tr_push_start(struct tr_push *p)
{
	char port[32], seed[32], kseed[32], batches[32], size[16], conns[16], pipe[16], precincts[16], retry[16];
	snprintf(port, sizeof(port), "127.0.0.1:%u", p->port);
	snprintf(seed, sizeof(seed), "%llu", (unsigned long long)p->seed);
	snprintf(kseed, sizeof(kseed), "%llu", (unsigned long long)p->key_seed);
	snprintf(batches, sizeof(batches), "%llu", (unsigned long long)p->batches);
	snprintf(size, sizeof(size), "%u", p->batch_size ? p->batch_size : 20);
	snprintf(conns, sizeof(conns), "%u", p->connections ? p->connections : 8);
	snprintf(pipe, sizeof(pipe), "%u", p->pipeline ? p->pipeline : 8);
	snprintf(precincts, sizeof(precincts), "%u", p->precincts);
	snprintf(retry, sizeof(retry), "%u", p->retry_for);
	const char *argv[40] = {TH_BIN("ballotctl"), "push", "--server",      port,  "--definition", p->defn,
	                        "--key-seed",        kseed,  "--seed",        seed,  "--batches",    batches,
	                        "--batch-size",      size,   "--connections", conns, "--pipeline",   pipe,
	                        "--retry-for",       retry,  "--timeout",     "10",  "--json"};
	int n = 23;
	if (p->precincts) {
		argv[n++] = "--precincts";
		argv[n++] = precincts;
	}
	argv[n] = NULL;
	p->pid = th_spawn(argv, p->out, NULL);
	return p->pid > 0 ? 0 : -1;
}

json_t *tr_push_wait(struct tr_push *p, int *status)
{
	int st = 0;
	if (waitpid(p->pid, &st, 0) != p->pid)
		st = 127 << 8;
	p->pid = 0;
	if (status)
		*status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	json_error_t err;
	json_t *j = json_load_file(p->out, 0, &err);
	if (!j)
		fprintf(stderr, "torture: push output %s: %s (line %d)\n", p->out, err.text, err.line);
	return j;
}

json_t *tr_push_run(struct tr_push *p, int *status)
{
	if (tr_push_start(p))
		return NULL;
	return tr_push_wait(p, status);
}

static json_int_t ival(json_t *o, const char *a, const char *b)
{
	json_t *v = json_object_get(o, a);
	return json_integer_value(b ? json_object_get(v, b) : v);
}

bool tr_snapshot_matches(json_t *snap, json_t *exp)
{
	static const char *const tf[] = {"batches", "ballots", "issued", "cast", "spoiled"};
	if (!snap || !exp) {
		fprintf(stderr, "torture: %s missing\n", snap ? "expected totals" : "snapshot");
		return false;
	}
	for (size_t i = 0; i < sizeof(tf) / sizeof(tf[0]); i++) {
		json_int_t got = ival(snap, "turnout", tf[i]), want = ival(exp, "turnout", tf[i]);
		if (got != want) {
			fprintf(stderr, "torture: turnout.%s: snapshot %lld, expected %lld\n", tf[i], got, want);
			return false;
		}
	}
	if (ival(snap, "position", NULL) != ival(exp, "batches", NULL)) {
		fprintf(stderr, "torture: position %lld, expected batches %lld\n", ival(snap, "position", NULL),
		        ival(exp, "batches", NULL));
		return false;
	}
	json_t *sc = json_object_get(snap, "contests"), *ec = json_object_get(exp, "contests");
	if (json_array_size(sc) != json_array_size(ec) || !json_array_size(sc)) {
		fprintf(stderr, "torture: %zu contests in the snapshot, %zu expected\n", json_array_size(sc),
		        json_array_size(ec));
		return false;
	}
	for (size_t c = 0; c < json_array_size(sc); c++) {
		json_t *s = json_array_get(sc, c), *e = json_array_get(ec, c);
		json_t *ch = json_object_get(s, "choices"), *ev = json_object_get(e, "votes");
		if (json_array_size(ch) != json_array_size(ev)) {
			fprintf(stderr, "torture: contest %lld: %zu choices, %zu expected\n", ival(s, "id", NULL),
			        json_array_size(ch), json_array_size(ev));
			return false;
		}
		for (size_t k = 0; k < json_array_size(ev); k++) {
			json_int_t got = ival(json_array_get(ch, k), "votes", NULL);
			json_int_t want = json_integer_value(json_array_get(ev, k));
			if (got != want) {
				fprintf(stderr, "torture: contest %lld choice %zu: snapshot %lld, expected %lld\n",
				        ival(s, "id", NULL), k, got, want);
				return false;
			}
		}
		json_t *sd = json_object_get(s, "districts"), *ed = json_object_get(e, "districts");
		if (json_array_size(sd) != json_array_size(ed)) {
			fprintf(stderr, "torture: contest %lld: %zu districts, %zu expected\n", ival(s, "id", NULL),
			        json_array_size(sd), json_array_size(ed));
			return false;
		}
		for (size_t d = 0; d < json_array_size(sd); d++) {
			if (!json_equal(json_object_get(json_array_get(sd, d), "votes"),
			                json_object_get(json_array_get(ed, d), "votes"))) {
				fprintf(stderr, "torture: contest %lld district %lld: votes differ\n",
				        ival(s, "id", NULL), ival(json_array_get(sd, d), "id", NULL));
				return false;
			}
		}
	}
	return true;
}

bool tr_totals_match(unsigned port, json_t *expected)
{
	json_t *snap = th_get_json(port, "/v1/snapshot");
	bool ok = tr_snapshot_matches(snap, expected);
	json_decref(snap);
	return ok;
}

/* ---- the log ------------------------------------------------------------------- */

static uint64_t be(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* Feeds journal records 1..size to t; false on a failed or short read. */
static bool feed_journal(unsigned port, uint64_t size, struct bal_logcheck_tree *t)
{
	uint64_t next = 1;
	while (next <= size) {
		char path[96];
		snprintf(path, sizeof(path), "/v1/journal?from=%llu&limit=2000", (unsigned long long)next);
		struct th_resp r = {0};
		/* A page is a heavy answer: 503 + Retry-After while others are built,
		 * and slow under the sanitizers; try again for a while. */
		int rc = -1, status = 0;
		for (int attempt = 0; attempt < 40 && status != 200; attempt++) {
			if (attempt)
				usleep(250000);
			if (rc == 0)
				th_resp_free(&r);
			rc = th_request(port, "GET", path, NULL, NULL, 0, &r);
			status = rc ? 0 : r.status;
		}
		if (status != 200) {
			fprintf(stderr, "torture: GET %s failed (HTTP %d): %.200s\n", path, status,
			        rc == 0 && r.body ? r.body : "no answer");
			if (rc == 0)
				th_resp_free(&r);
			return false;
		}
		const uint8_t *b = (const uint8_t *)r.body;
		size_t at = 0;
		uint64_t before = next;
		while (at + 12 <= r.len && next <= size) {
			uint64_t pos = be(b + at, 8), len = be(b + at + 8, 4);
			if (pos != next || at + 12 + len > r.len)
				break;
			uint8_t leaf[BAL_HASH_BYTES];
			bal_logcheck_leaf_hash(b + at + 12, len, leaf);
			bal_logcheck_tree_add(t, leaf);
			at += 12 + len;
			next++;
		}
		th_resp_free(&r);
		if (next == before) {
			fprintf(stderr, "torture: journal page from %llu is empty or malformed\n",
			        (unsigned long long)before);
			return false;
		}
	}
	return true;
}

bool tr_log_matches(unsigned port, const uint8_t log_pk[32])
{
	json_t *key = th_get_json(port, "/v1/log/key"), *sth = th_get_json(port, "/v1/log/sth");
	uint8_t pk[32], want[BAL_HASH_BYTES];
	struct bal_tree_head h;
	char why[256] = "";
	bool ok = false;
	const char *id = json_string_value(json_object_get(key, "election_id"));
	if (!key || !sth || !id || bal_logcheck_unhex(json_string_value(json_object_get(key, "public_key")), pk, 32) ||
	    bal_logcheck_head_from_json(sth, &h, why, sizeof(why))) {
		fprintf(stderr, "torture: /v1/log/key or /v1/log/sth missing or malformed %s\n", why);
		goto out;
	}
	if (memcmp(pk, log_pk, 32) != 0) {
		fprintf(stderr, "torture: /v1/log/key serves another key\n");
		goto out;
	}
	if (h.tree_size != tr_position(port)) {
		fprintf(stderr, "torture: latest head of size %llu, journal position %llu\n",
		        (unsigned long long)h.tree_size, (unsigned long long)tr_position(port));
		goto out;
	}
	if (bal_logcheck_head_verify(&h, id, log_pk, why, sizeof(why)) != 0) {
		fprintf(stderr, "torture: the latest head's signature does not verify: %s\n", why);
		goto out;
	}
	static struct bal_logcheck_tree t;
	bal_logcheck_tree_init(&t);
	if (h.tree_size == 0 || !feed_journal(port, h.tree_size, &t))
		goto out;
	bal_logcheck_tree_root(&t, want);
	ok = memcmp(want, h.root, BAL_HASH_BYTES) == 0;
	if (!ok)
		fprintf(stderr, "torture: the signed root of size %llu is not RFC 6962's root of the journal\n",
		        (unsigned long long)h.tree_size);
out:
	json_decref(key);
	json_decref(sth);
	return ok;
}

uint64_t tr_position(unsigned port)
{
	json_t *s = th_get_json(port, "/v1/snapshot");
	uint64_t p = s ? (uint64_t)json_integer_value(json_object_get(s, "position")) : 0;
	json_decref(s);
	return p;
}

/* Calls fn for each of the first k precincts' /v1/precincts/{id} answers. */
static bool each_precinct(unsigned port, const char *defn_path, uint32_t k,
                          bool (*fn)(void *arg, uint32_t i, uint32_t id, json_t *j), void *arg)
{
	struct bal_defn *d = NULL;
	char why[256];
	if (bal_defn_load(defn_path, &d, why, sizeof(why))) {
		fprintf(stderr, "torture: %s\n", why);
		return false;
	}
	bool ok = true;
	if (!k || k > d->nprecincts)
		k = d->nprecincts;
	for (uint32_t i = 0; ok && i < k; i++) {
		char path[64];
		snprintf(path, sizeof(path), "/v1/precincts/%u", d->precincts[i].id);
		json_t *j = th_get_json(port, path);
		if (!j) {
			fprintf(stderr, "torture: GET %s failed\n", path);
			ok = false;
			break;
		}
		ok = fn(arg, i, d->precincts[i].id, j);
		json_decref(j);
	}
	bal_defn_free(d);
	return ok;
}

struct exact {
	uint32_t k;
	uint64_t total;
};

static bool precinct_exact(void *arg, uint32_t i, uint32_t id, json_t *j)
{
	const struct exact *x = arg;
	uint64_t n = x->total / x->k + (i < x->total % x->k);
	json_t *seqs = json_object_get(j, "accepted_seqs"), *gaps = json_object_get(j, "gaps");
	uint64_t count = (uint64_t)json_integer_value(json_object_get(j, "accepted_batches"));
	bool ok = count == n && json_array_size(gaps) == 0;
	if (ok && n) {
		json_t *run = json_array_get(seqs, 0);
		ok = json_array_size(seqs) == 1 && json_integer_value(json_array_get(run, 0)) == 1 &&
		     (uint64_t)json_integer_value(json_array_get(run, 1)) == n;
	} else if (ok) {
		ok = json_array_size(seqs) == 0;
	}
	if (!ok) {
		char *s = json_dumps(seqs, JSON_COMPACT), *g = json_dumps(gaps, JSON_COMPACT);
		fprintf(stderr,
		        "torture: precinct %u: accepted_batches %llu, accepted_seqs %s, gaps %s; expected seqs 1..%llu "
		        "exactly once\n",
		        id, (unsigned long long)count, s ? s : "?", g ? g : "?", (unsigned long long)n);
		free(s);
		free(g);
	}
	return ok;
}

bool tr_precincts_exact(unsigned port, const char *defn_path, uint32_t k, uint64_t total)
{
	struct exact x = {.k = k, .total = total};
	if (!k)
		return false;
	return each_precinct(port, defn_path, k, precinct_exact, &x);
}

static bool precinct_sum(void *arg, uint32_t i, uint32_t id, json_t *j)
{
	*(long long *)arg += json_integer_value(json_object_get(j, "accepted_batches"));
	return true;
}

long long tr_precincts_accepted(unsigned port, const char *defn_path, uint32_t k)
{
	long long sum = 0;
	return each_precinct(port, defn_path, k, precinct_sum, &sum) ? sum : -1;
}

int tr_start(struct th_daemon *td, const char *defn, const char *data, unsigned port, const char *const *extra)
{
	static unsigned seq;
	memset(td, 0, sizeof(*td));
	snprintf(td->log, sizeof(td->log), "%s.%u.log", data, seq++);
	double t0 = tr_now_ms();
	td->pid = th_daemon_spawn(defn, data, port, extra, td->log);
	if (td->pid < 0) {
		td->pid = 0;
		return -1;
	}
	double ms = tr_wait_listening(td->log, td->pid, t0, 60000);
	char *log = tr_slurp(td->log);
	const char *at = strstr(log, "listening on ");
	const char *colon = at ? strchr(at, '\n') : NULL;
	if (ms < 0 || !colon) {
		fprintf(stderr, "torture: ballotd did not get ready (%s):\n%s\n", ms < 0 ? "exited or 60 s" : "no port",
		        log);
		free(log);
		th_kill9(td);
		return -1;
	}
	while (colon > at && *colon != ':')
		colon--;
	td->port = (unsigned)atoi(colon + 1);
	free(log);
	return 0;
}

double tr_wait_listening(const char *log, pid_t pid, double t0_ms, double timeout_ms)
{
	for (;;) {
		char *text = tr_slurp(log);
		const char *at = strstr(text, "listening on ");
		bool ready = at && strchr(at, '\n'); /* the whole line, port included */
		free(text);
		double now = tr_now_ms();
		if (ready)
			return now - t0_ms;
		if (now - t0_ms > timeout_ms || waitpid(pid, NULL, WNOHANG) == pid)
			return -1;
		usleep(500);
	}
}

char *tr_slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0;
	if (!f)
		return strdup("");
	FILE *m = open_memstream(&buf, &len);
	char chunk[8192];
	size_t n;
	while (m && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		fwrite(chunk, 1, n, m);
	fclose(f);
	if (!m)
		return strdup("");
	fclose(m);
	return buf;
}

bool tr_recovery_parse(const char *log, struct tr_recovery *r)
{
	const char *at = strstr(log, "recovery: position ");
	unsigned long long p, s, n;
	double ms;
	if (!at || sscanf(at, "recovery: position %llu: snapshot at %llu + %llu journal entries replayed in %lf ms", &p,
	                  &s, &n, &ms) != 4)
		return false;
	*r = (struct tr_recovery){.position = p, .snapshot = s, .replayed = n, .ms = ms};
	return true;
}

double tr_metric(unsigned port, const char *name)
{
	struct th_resp r;
	double v = -1;
	if (th_request(port, "GET", "/metrics", NULL, NULL, 0, &r))
		return -1;
	size_t nl = strlen(name);
	for (const char *line = r.body; r.status == 200 && line && *line; line = strchr(line, '\n')) {
		if (*line == '\n')
			line++;
		if (strncmp(line, name, nl) == 0 && line[nl] == ' ') {
			v = strtod(line + nl + 1, NULL);
			break;
		}
	}
	th_resp_free(&r);
	return v;
}

/* First line of /proc/<pid>/task/<tid>/<name> into buf; false if unreadable. */
static bool task_read(pid_t pid, const char *tid, const char *name, char *buf, size_t cap)
{
	char path[600]; /* tid is a directory entry's name: up to 255 bytes */
	snprintf(path, sizeof(path), "/proc/%d/task/%s/%s", (int)pid, tid, name);
	FILE *f = fopen(path, "r");
	bool ok = f && fgets(buf, (int)cap, f);
	if (f)
		fclose(f);
	return ok;
}

enum tr_committer tr_committer_state(pid_t pid)
{
	char path[64], buf[256];
	enum tr_committer st = TR_COMMITTER_OTHER;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *dir = opendir(path);
	struct dirent *de;
	while (dir && (de = readdir(dir))) {
		if (de->d_name[0] == '.' || !task_read(pid, de->d_name, "comm", buf, sizeof(buf)) ||
		    strncmp(buf, "ballotd-commit", 14) != 0 || !task_read(pid, de->d_name, "syscall", buf, sizeof(buf)))
			continue;
		if (strncmp(buf, "running", 7) == 0) {
			st = TR_COMMITTER_CPU;
			break;
		}
		long nr = strtol(buf, NULL, 10);
		if (nr == SYS_futex)
			st = TR_COMMITTER_IDLE;
		else if (nr == SYS_pwrite64 || nr == SYS_pwritev || nr == SYS_write || nr == SYS_writev)
			st = TR_COMMITTER_WRITE;
		else if (nr == SYS_fsync || nr == SYS_fdatasync)
			st = TR_COMMITTER_SYNC;
		break;
	}
	if (dir)
		closedir(dir);
	return st;
}
