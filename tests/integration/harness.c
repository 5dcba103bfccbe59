/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Integration-test harness (see harness.h). Blocking sockets and fork/exec:
 * deliberately nothing shared with the daemon's I/O code.
 */
#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proto/codec.h"
#include "defn/defn.h"
#include "client/defgen.h"
#include "client/keys.h"
#include "client/logcheck.h"

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

char *th_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *p;
	if (asprintf(&p, "%s/ballotd-test-XXXXXX", base && *base ? base : "/tmp") < 0)
		return NULL;
	if (!mkdtemp(p)) {
		free(p);
		return NULL;
	}
	return p;
}

void th_rmdir(const char *dir)
{
	if (!dir || !strstr(dir, "ballotd-test-"))
		return;
	char *cmd;
	if (asprintf(&cmd, "rm -rf '%s'", dir) >= 0) {
		if (system(cmd) != 0)
			fprintf(stderr, "harness: could not remove %s\n", dir);
		free(cmd);
	}
}

pid_t th_daemon_spawn(const char *defn, const char *data, unsigned port, const char *const *extra, const char *log)
{
	char listen[64];
	snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
	const char *argv[64];
	int n = 0;
	argv[n++] = TH_BIN("ballotd");
	if (defn) {
		argv[n++] = "--definition";
		argv[n++] = defn;
	} else {
		argv[n++] = "--demo";
	}
	argv[n++] = "--data";
	argv[n++] = data;
	argv[n++] = "--listen";
	argv[n++] = listen;
	for (int i = 0; extra && extra[i] && n < 62; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	return th_spawn(argv, log, log);
}

static pid_t spawn(struct th_daemon *td, const char *defn, const char *data, unsigned port, const char *const *extra)
{
	static unsigned seq;
	snprintf(td->log, sizeof(td->log), "%s.%u.log", data, seq++);
	return th_daemon_spawn(defn, data, port, extra, td->log);
}

/* Opens `path` for the child's fd `target` (append when `append`). */
static void redirect(const char *path, int target, bool append)
{
	int fd = open(path, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0600);
	if (fd >= 0 && fd != target) {
		dup2(fd, target);
		close(fd);
	}
}

pid_t th_spawn(const char *const *argv, const char *out, const char *err)
{
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	/* A test that fails before its teardown must not leave a process behind. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
		_exit(127);
	if (out)
		redirect(out, 1, false);
	if (err && out && strcmp(err, out) == 0)
		dup2(1, 2);
	else if (err)
		redirect(err, 2, true);
	execv(argv[0], (char *const *)argv);
	_exit(127);
}

pid_t th_ctl_start(const char *out, const char *log, const char *const *args)
{
	const char *argv[40];
	int n = 0;
	argv[n++] = TH_BIN("ballotctl");
	for (int i = 0; args[i] && n < 39; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	return th_spawn(argv, out ? out : "/dev/null", log ? log : "/dev/null");
}

int th_wait_exit(pid_t pid)
{
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int th_ctl_run(const char *out, const char *log, const char *const *args)
{
	return th_wait_exit(th_ctl_start(out, log, args));
}

char *th_read_log(const struct th_daemon *td)
{
	FILE *f = fopen(td->log, "r");
	if (!f)
		return strdup("");
	char *buf = NULL;
	size_t cap = 0, n = 0;
	for (;;) {
		if (n + 4096 > cap) {
			cap = cap ? cap * 2 : 8192;
			buf = realloc(buf, cap);
		}
		size_t r = fread(buf + n, 1, cap - n - 1, f);
		if (!r)
			break;
		n += r;
	}
	fclose(f);
	if (!buf)
		return strdup("");
	buf[n] = '\0';
	return buf;
}

int th_start(struct th_daemon *td, const char *defn, const char *data, unsigned port, const char *const *extra)
{
	memset(td, 0, sizeof(*td));
	td->pid = spawn(td, defn, data, port, extra);
	if (td->pid < 0)
		return -1;
	uint64_t deadline = now_ms() + 15000;
	while (now_ms() < deadline) {
		char *log = th_read_log(td);
		char *at = strstr(log, "listening on ");
		if (at) {
			char *nl = strchr(at, '\n');
			if (nl) {
				*nl = '\0';
				char *colon = strrchr(at, ':');
				td->port = (unsigned)atoi(colon + 1);
				free(log);
				return 0;
			}
		}
		free(log);
		int st;
		if (waitpid(td->pid, &st, WNOHANG) == td->pid) {
			char *l = th_read_log(td);
			fprintf(stderr, "harness: ballotd exited before getting ready:\n%s\n", l);
			free(l);
			td->pid = 0;
			return -1;
		}
		usleep(10000);
	}
	char *l = th_read_log(td);
	fprintf(stderr, "harness: ballotd not ready after 15 s:\n%s\n", l);
	free(l);
	th_kill9(td);
	return -1;
}

/* Waits up to 15 s for `pid` to exit: its exit status, 128 + signal, or -1
 * (then it is killed). */
static int exit_within_15s(pid_t pid)
{
	int st = 0;
	uint64_t deadline = now_ms() + 15000;
	while (waitpid(pid, &st, WNOHANG) != pid) {
		if (now_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -1;
		}
		usleep(10000);
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int th_run_to_exit(struct th_daemon *td, const char *defn, const char *data, const char *const *extra)
{
	memset(td, 0, sizeof(*td));
	pid_t pid = spawn(td, defn, data, 0, extra);
	return exit_within_15s(pid);
}

int th_stop(struct th_daemon *td)
{
	if (td->pid <= 0)
		return -1;
	kill(td->pid, SIGTERM);
	int st = 0;
	uint64_t deadline = now_ms() + 20000;
	while (waitpid(td->pid, &st, WNOHANG) != td->pid) {
		if (now_ms() > deadline) {
			fprintf(stderr, "harness: ballotd did not stop within 20 s of SIGTERM\n");
			kill(td->pid, SIGKILL);
			waitpid(td->pid, &st, 0);
			td->pid = 0;
			return -1;
		}
		usleep(5000);
	}
	td->pid = 0;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void th_kill9(struct th_daemon *td)
{
	if (td->pid <= 0)
		return;
	kill(td->pid, SIGKILL);
	waitpid(td->pid, NULL, 0);
	td->pid = 0;
}

int th_connect(unsigned port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

int th_send(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_some(int fd, char *buf, size_t cap, uint64_t deadline)
{
	for (;;) {
		long left = (long)(deadline - now_ms());
		if (left <= 0)
			return -1;
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int pr = poll(&pfd, 1, (int)left);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			return -1;
		ssize_t n = recv(fd, buf, cap, 0);
		if (n < 0 && errno == EINTR)
			continue;
		return (int)n;
	}
}

/* Bytes read past the end of the previous response on this fd (pipelining). */
static struct {
	int fd;
	char buf[65536];
	size_t len;
} carry = {.fd = -1};

int th_read_resp(int fd, struct th_resp *r, int timeout_ms)
{
	memset(r, 0, sizeof(*r));
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	char *buf = malloc(65536);
	size_t cap = 65536, n = 0;
	if (carry.fd == fd && carry.len) {
		memcpy(buf, carry.buf, carry.len);
		n = carry.len;
	}
	carry.len = 0;
	carry.fd = fd;
	char *eoh;
	for (;;) {
		buf[n] = '\0';
		if (n && (eoh = strstr(buf, "\r\n\r\n")))
			break;
		if (n + 1 >= cap)
			goto fail;
		int got = read_some(fd, buf + n, cap - n - 1, deadline);
		if (got <= 0)
			goto fail;
		n += (size_t)got;
	}
	size_t hl = (size_t)(eoh - buf) + 4;
	if (hl >= sizeof(r->head))
		goto fail;
	memcpy(r->head, buf, hl);
	r->head[hl] = '\0';
	if (sscanf(buf, "HTTP/1.1 %d", &r->status) != 1)
		goto fail;
	size_t clen = 0;
	char *cl = strcasestr(r->head, "\r\nContent-Length:");
	if (cl)
		clen = strtoull(cl + 17, NULL, 10);
	if (r->status == 100) {
		/* Interim response: the real one follows. */
		size_t rest = n - hl;
		memcpy(carry.buf, buf + hl, rest);
		carry.len = rest;
		free(buf);
		return th_read_resp(fd, r, (int)(deadline - now_ms()));
	}
	if (hl + clen + 1 > cap) {
		cap = hl + clen + 1;
		buf = realloc(buf, cap);
	}
	while (n < hl + clen) {
		int got = read_some(fd, buf + n, cap - n - 1, deadline);
		if (got <= 0)
			goto fail;
		n += (size_t)got;
	}
	r->body = malloc(clen + 1);
	memcpy(r->body, buf + hl, clen);
	r->body[clen] = '\0';
	r->len = clen;
	size_t rest = n - hl - clen;
	if (rest && rest <= sizeof(carry.buf)) {
		memcpy(carry.buf, buf + hl + clen, rest);
		carry.len = rest;
	}
	free(buf);
	return 0;
fail:
	free(buf);
	return -1;
}

void th_resp_free(struct th_resp *r)
{
	free(r->body);
	r->body = NULL;
}

int th_request(unsigned port, const char *method, const char *path, const char *extra, const void *body, size_t len,
               struct th_resp *r)
{
	int fd = th_connect(port);
	if (fd < 0)
		return -1;
	char head[1024];
	int hl = snprintf(head, sizeof(head), "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Length: %zu\r\n\r\n",
	                  method, path, extra ? extra : "", len);
	int rc = th_send(fd, head, (size_t)hl);
	if (!rc && len)
		rc = th_send(fd, body, len);
	if (!rc)
		rc = th_read_resp(fd, r, 20000);
	close(fd);
	return rc;
}

int th_post(unsigned port, const void *body, size_t len, struct th_resp *r)
{
	return th_request(port, "POST", "/v1/batches", "Content-Type: application/x-protobuf\r\n", body, len, r);
}

int th_post_amendment(unsigned port, const void *body, size_t len, struct th_resp *r)
{
	return th_request(port, "POST", "/v1/amendments", "Content-Type: application/x-protobuf\r\n", body, len, r);
}

uint8_t *th_signed_amendment(const struct bal_amendment *amendment, const uint8_t *sk, size_t *len)
{
	struct bal_amendment a = *amendment;
	if (!a.election_id)
		a.election_id = th_election_id();
	size_t n = bal_codec_amendment_size(&a);
	uint8_t *inner = malloc(n ? n : 1), sig[64];
	bal_codec_amendment_pack(&a, inner);
	if (sk)
		crypto_sign_detached(sig, NULL, inner, n, sk);
	size_t total = bal_codec_signed_amendment_size(inner, n, sig, sk ? sizeof(sig) : 0);
	uint8_t *out = malloc(total);
	*len = bal_codec_signed_amendment_pack(inner, n, sig, sk ? sizeof(sig) : 0, out);
	free(inner);
	return out;
}

json_t *th_get_json(unsigned port, const char *path)
{
	struct th_resp r;
	if (th_request(port, "GET", path, NULL, NULL, 0, &r))
		return NULL;
	json_error_t err;
	/* /healthz answers its JSON with 503 while batches cannot be accepted. */
	bool ok = r.status == 200 || (r.status == 503 && strcmp(path, "/healthz") == 0);
	json_t *j = ok ? json_loadb(r.body, r.len, 0, &err) : NULL;
	th_resp_free(&r);
	return j;
}

char *th_write_defn(const char *dir, uint32_t precincts, uint32_t districts, uint32_t choices, uint64_t seed, bool keys)
{
	struct bal_defgen_opts o;
	bal_defgen_defaults(&o);
	o.precincts = precincts;
	o.districts = districts;
	o.choices = choices;
	o.seed = seed;
	o.keys = keys;
	/* The suites built on this harness push far more ballots to a few
	 * precincts than any register holds: they test exactly-once counting,
	 * durability and limits. Plausibility has suites of its own. */
	o.unbounded = true;
	char *json = NULL, why[256], *path = NULL;
	size_t len;
	if (bal_defgen_json(&o, &json, &len, why, sizeof(why))) {
		fprintf(stderr, "harness: defgen: %s\n", why);
		return NULL;
	}
	if (asprintf(&path, "%s/defn-%u-%u-%u-%llu%s.json", dir, precincts, districts, choices,
	             (unsigned long long)seed, keys ? "" : "-nokeys") < 0)
		path = NULL;
	FILE *f = path ? fopen(path, "w") : NULL;
	if (f) {
		fwrite(json, 1, len, f);
		fclose(f);
	}
	free(json);
	return path;
}

const char *th_election_id(void)
{
	struct bal_defgen_opts o;
	bal_defgen_defaults(&o);
	return o.election_id;
}

uint8_t *th_signed_batch(const struct bal_batch *batch, bool sign, uint64_t key_seed, size_t *len)
{
	struct bal_batch with_id = *batch;
	if (!with_id.election_id)
		with_id.election_id = th_election_id();
	const struct bal_batch *b = &with_id;
	size_t bl = bal_codec_batch_size(b);
	uint8_t *inner = malloc(bl ? bl : 1);
	bal_codec_batch_pack(b, inner);
	uint8_t sig[64];
	size_t sl = 0;
	if (sign) {
		uint8_t pk[32], sk[64];
		bal_demo_keypair(key_seed, b->precinct_id, pk, sk);
		crypto_sign_detached(sig, NULL, inner, bl, sk);
		sl = 64;
	}
	size_t n = bal_codec_signed_size(inner, bl, sig, sl);
	uint8_t *out = malloc(n ? n : 1);
	*len = bal_codec_signed_pack(inner, bl, sig, sl, out);
	free(inner);
	return out;
}

static bool votes_equal(json_t *arr, const struct bal_defn *d, const struct bal_expect *e, uint32_t c, int32_t dist,
                        const char *what)
{
	const struct bal_contest *ct = &d->contests[c];
	for (uint32_t k = 0; k < ct->nchoices; k++) {
		json_t *v = json_array_get(arr, k);
		if (json_is_object(v))
			v = json_object_get(v, "votes");
		uint64_t got = (uint64_t)json_integer_value(v);
		uint64_t want =
		        dist < 0 ? bal_expect_votes(e, c, k) : bal_expect_district_votes(e, c, (uint32_t)dist, k);
		if (got != want) {
			fprintf(stderr, "harness: contest %u %s choice %u: snapshot %llu, expected %llu\n", ct->id,
			        what, k, (unsigned long long)got, (unsigned long long)want);
			return false;
		}
	}
	return true;
}

bool th_snapshot_matches(json_t *snap, const struct bal_defn *d, const struct bal_expect *e)
{
	struct bal_expect_turnout t;
	bal_expect_turnout(e, &t);
	return th_snapshot_matches_at(snap, d, e, t.batches);
}

bool th_snapshot_matches_at(json_t *snap, const struct bal_defn *d, const struct bal_expect *e, uint64_t want_position)
{
	if (!snap) {
		fprintf(stderr, "harness: no snapshot\n");
		return false;
	}
	struct bal_expect_turnout t;
	bal_expect_turnout(e, &t);
	json_t *jt = json_object_get(snap, "turnout");
	struct {
		const char *k;
		uint64_t v;
	} fields[] = {{"batches", t.batches},
	              {"ballots", t.ballots},
	              {"issued", t.issued},
	              {"cast", t.cast},
	              {"spoiled", t.spoiled}};
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		uint64_t got = (uint64_t)json_integer_value(json_object_get(jt, fields[i].k));
		if (got != fields[i].v) {
			fprintf(stderr, "harness: turnout.%s: snapshot %llu, expected %llu\n", fields[i].k,
			        (unsigned long long)got, (unsigned long long)fields[i].v);
			return false;
		}
	}
	uint64_t batches = (uint64_t)json_integer_value(json_object_get(snap, "batches"));
	uint64_t position = (uint64_t)json_integer_value(json_object_get(snap, "position"));
	if (batches != t.batches || position != want_position) {
		fprintf(stderr, "harness: batches %llu / position %llu, expected %llu / %llu\n",
		        (unsigned long long)batches, (unsigned long long)position, (unsigned long long)t.batches,
		        (unsigned long long)want_position);
		return false;
	}
	uint64_t rep = (uint64_t)json_integer_value(json_object_get(snap, "precincts_reporting"));
	if (rep != bal_expect_precincts_reporting(e)) {
		fprintf(stderr, "harness: precincts_reporting %llu, expected %u\n", (unsigned long long)rep,
		        bal_expect_precincts_reporting(e));
		return false;
	}
	json_t *contests = json_object_get(snap, "contests");
	if (json_array_size(contests) != d->ncontests) {
		fprintf(stderr, "harness: %zu contests in snapshot, %u defined\n", json_array_size(contests),
		        d->ncontests);
		return false;
	}
	for (uint32_t c = 0; c < d->ncontests; c++) {
		json_t *jc = json_array_get(contests, c);
		if (!votes_equal(json_object_get(jc, "choices"), d, e, c, -1, "national"))
			return false;
		json_t *dists = json_object_get(jc, "districts");
		size_t i;
		json_t *jd;
		json_array_foreach(dists, i, jd)
		{
			int32_t di = bal_defn_district(d, (uint32_t)json_integer_value(json_object_get(jd, "id")));
			if (di < 0 || !votes_equal(json_object_get(jd, "votes"), d, e, c, di, "district"))
				return false;
		}
	}
	return true;
}

char *th_write_defn_opts(const char *dir, const struct bal_defgen_opts *o)
{
	static unsigned seq;
	char *json = NULL, why[256], *path = NULL;
	size_t len;
	if (bal_defgen_json(o, &json, &len, why, sizeof(why))) {
		fprintf(stderr, "harness: defgen: %s\n", why);
		return NULL;
	}
	if (asprintf(&path, "%s/defn-opts-%u.json", dir, seq++) < 0)
		path = NULL;
	FILE *f = path ? fopen(path, "w") : NULL;
	bool ok = f && fwrite(json, 1, len, f) == len;
	if (f && fclose(f) != 0)
		ok = false;
	free(json);
	if (!ok) {
		fprintf(stderr, "harness: could not write %s\n", path ? path : "a definition");
		free(path);
		return NULL;
	}
	return path;
}

int th_fixture_init(struct th_fixture *f, const struct bal_defgen_opts *o)
{
	memset(f, 0, sizeof(*f));
	char why[256];
	f->dir = th_tmpdir();
	f->defn_path = f->dir ? th_write_defn_opts(f->dir, o) : NULL;
	if (!f->defn_path)
		return -1;
	if (bal_defn_load(f->defn_path, &f->defn, why, sizeof(why))) {
		fprintf(stderr, "harness: %s: %s\n", f->defn_path, why);
		return -1;
	}
	snprintf(f->data, sizeof(f->data), "%s/data", f->dir);
	return 0;
}

int th_fixture_free(struct th_fixture *f)
{
	int st = f->td.pid > 0 ? th_stop(&f->td) : 0;
	bal_defn_free(f->defn);
	free(f->defn_path);
	th_rmdir(f->dir);
	free(f->dir);
	memset(f, 0, sizeof(*f));
	return st;
}

int th_run_args_to_exit(struct th_daemon *td, const char *dir, const char *const *args)
{
	static unsigned seq;
	memset(td, 0, sizeof(*td));
	snprintf(td->log, sizeof(td->log), "%s/ballotd-args.%u.log", dir, seq++);
	const char *argv[62];
	int n = 0;
	argv[n++] = TH_BIN("ballotd");
	for (int i = 0; args && args[i] && n < 61; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	pid_t pid = th_spawn(argv, td->log, td->log);
	return pid < 0 ? -1 : exit_within_15s(pid);
}

static uint64_t be_u64(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

uint8_t *th_journal_record(unsigned port, uint64_t pos, size_t *len)
{
	char path[96];
	snprintf(path, sizeof(path), "/v1/journal?from=%llu&limit=1", (unsigned long long)pos);
	struct th_resp r;
	if (th_request(port, "GET", path, NULL, NULL, 0, &r))
		return NULL;
	uint8_t *out = NULL;
	const uint8_t *b = (const uint8_t *)r.body;
	if (r.status == 200 && r.len >= 12 && be_u64(b, 8) == pos && be_u64(b + 8, 4) == r.len - 12) {
		*len = r.len - 12;
		out = malloc(*len ? *len : 1);
		if (out)
			memcpy(out, b + 12, *len);
	}
	th_resp_free(&r);
	return out;
}

uint64_t th_healthz_u64(unsigned port, const char *field)
{
	json_t *j = th_get_json(port, "/healthz");
	json_t *v = json_object_get(j, field);
	uint64_t out = json_is_integer(v) ? (uint64_t)json_integer_value(v) : UINT64_MAX;
	json_decref(j);
	return out;
}

size_t th_put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

size_t th_put_field(uint8_t *p, uint32_t f, const void *data, size_t len)
{
	size_t n = th_put_varint(p, (uint64_t)f << 3 | 2);
	n += th_put_varint(p + n, len);
	memcpy(p + n, data, len);
	return n + len;
}

/* The fixed test keys: a seed of 32 equal bytes. */
#define TH_LOG_SEED_BYTE        0x5e
#define TH_COMMISSION_SEED_BYTE 0xc0

static void fixed_keypair(uint8_t byte, uint8_t pk[32], uint8_t sk[64])
{
	uint8_t seed[32];
	memset(seed, byte, sizeof(seed));
	if (sodium_init() < 0)
		abort();
	crypto_sign_seed_keypair(pk, sk, seed);
}

/* dir/name and dir/name.pub of the fixed key `byte`, as `ballotctl keygen`
 * writes them; the malloc'd path of the secret, or NULL. */
static char *write_fixed_key(const char *dir, const char *name, uint8_t byte, char pub_hex[65])
{
	uint8_t seed[32], pk[32];
	memset(seed, byte, sizeof(seed));
	char *path, why[600];
	if (asprintf(&path, "%s/%s", dir, name) < 0)
		return NULL;
	if (bal_logcheck_key_write(path, seed, pk, why, sizeof(why)) < 0) {
		fprintf(stderr, "harness: writing %s: %s\n", path, why);
		free(path);
		return NULL;
	}
	if (pub_hex)
		bal_logcheck_hex(pk, sizeof(pk), pub_hex);
	return path;
}

void th_log_keypair(uint8_t pk[32], uint8_t sk[64])
{
	fixed_keypair(TH_LOG_SEED_BYTE, pk, sk);
}

char *th_write_log_key(const char *dir, char pub_hex[65])
{
	return write_fixed_key(dir, "log.key", TH_LOG_SEED_BYTE, pub_hex);
}

void th_commission_keypair(uint8_t pk[32], uint8_t sk[64])
{
	fixed_keypair(TH_COMMISSION_SEED_BYTE, pk, sk);
}

char *th_write_commission_key(const char *dir)
{
	return write_fixed_key(dir, "commission.key", TH_COMMISSION_SEED_BYTE, NULL);
}
