/*
 * `ballotctl upload` and `ballotctl spool-batches` end to end, run as the real
 * executables: against the real ballotd (every batch delivered exactly once,
 * bad files (400, 401, 409, 413, 422) moved to rejected/ with their reason, totals equal to the
 * independent fold of client/expect.h), under repeated SIGKILLs of the
 * uploader and one of the daemon, and against a scripted HTTP server for the
 * retry rules (503 with Retry-After, 507, a keep-alive connection the server
 * closed, 413 final).
 *
 * BAL_UPLOAD_KILLS sets the number of uploader kills (default 6).
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proto/codec.h"
#include "defn/defn.h"
#include "client/gen.h"
#include "tests/integration/harness.h"

#define KEY_SEED   31
#define SEED       5
#define BATCH_SIZE 10

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Batch files (*.pb, not hidden) directly in `dir`. */
static int count_batches(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);
		if (de->d_name[0] != '.' && l > 3 && strcmp(de->d_name + l - 3, ".pb") == 0)
			n++;
	}
	closedir(d);
	return n;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *b = malloc((size_t)n + 1);
	size_t got = fread(b, 1, (size_t)n, f);
	b[got] = '\0';
	fclose(f);
	if (len)
		*len = got;
	return b;
}

static void write_file(const char *dir, const char *name, const void *buf, size_t len)
{
	char path[700];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	cr_assert(f, "cannot create %s", path);
	cr_assert_eq(fwrite(buf, 1, len, f), len);
	fclose(f);
}

/* The fold of what spool-batches writes for precinct ids first..last, seqs 1..seqs. */
static struct bal_expect *fold_spooled(const struct bal_defn *d, uint32_t first, uint32_t last, uint64_t seqs)
{
	struct bal_gen_opts o = {
	        .seed = SEED, .key_seed = KEY_SEED, .batch_size = BATCH_SIZE, .kind = BAL_KIND_BALLOTS};
	struct bal_gen *g;
	char why[256];
	cr_assert_eq(bal_gen_new(d, &o, &g, why, sizeof(why)), 0, "%s", why);
	struct bal_expect *e = bal_expect_new(d);
	for (uint32_t id = first; id <= last; id++) {
		for (uint64_t seq = 1; seq <= seqs; seq++) {
			struct bal_batch b;
			const uint8_t *body;
			size_t len;
			cr_assert_eq(bal_gen_batch(g, (uint32_t)bal_defn_precinct(d, id), seq, &b, &body, &len, why,
			                           sizeof(why)),
			             0, "%s", why);
			cr_assert_eq(bal_expect_fold(e, &b, why, sizeof(why)), 0, "%s", why);
		}
	}
	bal_gen_free(g);
	return e;
}

struct env {
	char *dir, *defn_path, spool[600], data[600], server[64];
	struct bal_defn *defn;
	struct th_daemon td;
};

static void env_start(struct env *v, uint32_t precincts)
{
	memset(v, 0, sizeof(*v));
	v->dir = th_tmpdir();
	cr_assert(v->dir);
	v->defn_path = th_write_defn(v->dir, precincts, 3, 4, KEY_SEED, true);
	cr_assert(v->defn_path);
	char why[256];
	cr_assert_eq(bal_defn_load(v->defn_path, &v->defn, why, sizeof(why)), 0, "%s", why);
	snprintf(v->spool, sizeof(v->spool), "%s/spool", v->dir);
	snprintf(v->data, sizeof(v->data), "%s/data", v->dir);
	cr_assert_eq(th_start(&v->td, v->defn_path, v->data, 0, NULL), 0);
	snprintf(v->server, sizeof(v->server), "127.0.0.1:%u", v->td.port);
}

static void env_stop(struct env *v)
{
	if (v->td.pid > 0)
		cr_expect_eq(th_stop(&v->td), 0, "ballotd should exit 0 on SIGTERM");
	bal_defn_free(v->defn);
	free(v->defn_path);
	th_rmdir(v->dir);
	free(v->dir);
}

static int spool_batches(struct env *v, const char *precincts, const char *to_seq, const char *seed)
{
	char ks[16];
	snprintf(ks, sizeof(ks), "%d", KEY_SEED);
	const char *args[] = {"spool-batches",
	                      "--spool",
	                      v->spool,
	                      "--definition",
	                      v->defn_path,
	                      "--precinct",
	                      precincts,
	                      "--from-seq",
	                      "1",
	                      "--to-seq",
	                      to_seq,
	                      "--seed",
	                      seed,
	                      "--key-seed",
	                      ks,
	                      "--batch-size",
	                      "10",
	                      NULL};
	return th_ctl_run(NULL, NULL, args);
}

static json_t *upload_once(struct env *v, int *status)
{
	char out[700], log[700];
	snprintf(out, sizeof(out), "%s/upload.json", v->dir);
	snprintf(log, sizeof(log), "%s/upload.log", v->dir);
	const char *args[] = {"upload", "--spool", v->spool, "--server", v->server, "--once", "--json", NULL};
	*status = th_ctl_run(out, log, args);
	json_error_t err;
	json_t *j = json_load_file(out, 0, &err);
	cr_assert(j, "upload --json output: %s", err.text);
	return j;
}

static json_int_t jint(json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

/* The reason file of rejected/NAME holds the status and the expected text. */
static void expect_rejected(struct env *v, const char *name, int status, const char *text)
{
	char path[800];
	snprintf(path, sizeof(path), "%s/rejected/%s", v->spool, name);
	struct stat st;
	cr_expect_eq(stat(path, &st), 0, "%s should be in rejected/", name);
	strcat(path, ".reason");
	char *reason = slurp(path, NULL);
	cr_assert(reason, "%s.reason should be beside it", name);
	char want[64];
	snprintf(want, sizeof(want), "http_status: %d\n", status);
	cr_expect(strstr(reason, want), "%s.reason should say \"%s\": %s", name, want, reason);
	cr_expect(strstr(reason, text), "%s.reason should name the reason \"%s\": %s", name, text, reason);
	free(reason);
}

Test(upload, once_delivers_every_batch_and_rejects_bad_files)
{
	struct env v;
	env_start(&v, 30);
	cr_assert_eq(spool_batches(&v, "1-30", "10", "5"), 0);
	cr_assert_eq(count_batches(v.spool), 300);
	/* Spooling the same batches again changes nothing; other bytes under a spooled name are refused. */
	cr_assert_eq(spool_batches(&v, "7", "2", "5"), 0);
	cr_assert_eq(spool_batches(&v, "7", "2", "6"), 1, "a different batch must not replace a spooled one");

	/* The file holds exactly the generator's SignedBatch. */
	struct bal_gen_opts o = {
	        .seed = SEED, .key_seed = KEY_SEED, .batch_size = BATCH_SIZE, .kind = BAL_KIND_BALLOTS};
	struct bal_gen *g;
	char why[256], path[700];
	cr_assert_eq(bal_gen_new(v.defn, &o, &g, why, sizeof(why)), 0, "%s", why);
	struct bal_batch b;
	const uint8_t *body;
	size_t len, flen;
	cr_assert_eq(bal_gen_batch(g, (uint32_t)bal_defn_precinct(v.defn, 12), 4, &b, &body, &len, why, sizeof(why)),
	             0);
	snprintf(path, sizeof(path), "%s/12-4.pb", v.spool);
	char *file = slurp(path, &flen);
	cr_assert(file && flen == len && memcmp(file, body, len) == 0, "12-4.pb must hold the generated batch");
	free(file);

	/* Bad files: not protobuf (400), a precinct not in the definition (422), a wrong signature (401). */
	write_file(v.spool, "garbage.pb", "\x0a\xff\xff\xff\xff\x0f not a batch", 19);
	b.precinct_id = 999;
	size_t bl;
	uint8_t *bad = th_signed_batch(&b, true, KEY_SEED, &bl);
	write_file(v.spool, "999-1.pb", bad, bl);
	free(bad);
	cr_assert_eq(bal_gen_batch(g, 0, 50, &b, &body, &len, why, sizeof(why)), 0);
	bad = th_signed_batch(&b, true, KEY_SEED + 1, &bl);
	write_file(v.spool, "1-50.pb", bad, bl);
	free(bad);
	bal_gen_free(g);
	/* Far over ballotd's --max-body (1 MiB): answered 413 and closed before the
	 * body is read, so sending it fails; the answer must still be read. */
	snprintf(path, sizeof(path), "%s/big.pb", v.spool);
	int bfd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert(bfd >= 0 && ftruncate(bfd, 40000000) == 0, "sparse big.pb"); /* zeros, nothing to sync */
	close(bfd);
	/* Not batches: left alone. */
	write_file(v.spool, "notes.txt", "hello", 5);
	write_file(v.spool, ".partial.pb", "\x0a", 1);

	int status;
	json_t *res = upload_once(&v, &status);
	cr_expect_eq(status, 1, "--once exits 1 when a file was rejected");
	cr_expect_eq(jint(res, "accepted"), 300);
	cr_expect_eq(jint(res, "duplicate"), 0);
	cr_expect_eq(jint(res, "rejected"), 4);
	cr_expect_eq(jint(res, "pending"), 0);
	cr_expect_str_eq(json_string_value(json_object_get(res, "stopped")), "empty");
	json_decref(res);
	cr_expect_eq(count_batches(v.spool), 0, "every batch file is gone from the spool");
	snprintf(path, sizeof(path), "%s/notes.txt", v.spool);
	cr_expect_eq(access(path, F_OK), 0, "other files stay");
	snprintf(path, sizeof(path), "%s/.partial.pb", v.spool);
	cr_expect_eq(access(path, F_OK), 0, "hidden (temporary) files stay");
	expect_rejected(&v, "garbage.pb", 400, "does not decode");
	expect_rejected(&v, "999-1.pb", 422, "999");
	expect_rejected(&v, "1-50.pb", 401, "signature");
	expect_rejected(&v, "big.pb", 413, "exceeds");

	struct bal_expect *e = fold_spooled(v.defn, 1, 30, 10);
	json_t *snap = th_get_json(v.td.port, "/v1/snapshot");
	cr_expect(th_snapshot_matches(snap, v.defn, e), "totals must equal the fold of the 300 spooled batches");
	json_decref(snap);

	/* A resend of a delivered batch is DUPLICATE (deleted, counts nothing); a
	 * different batch under a delivered (precinct, seq) is a 409 conflict. */
	cr_assert_eq(spool_batches(&v, "2", "1", "5"), 0);
	cr_assert_eq(spool_batches(&v, "3", "1", "6"), 0);
	res = upload_once(&v, &status);
	cr_expect_eq(status, 1);
	cr_expect_eq(jint(res, "duplicate"), 1);
	cr_expect_eq(jint(res, "accepted"), 0);
	cr_expect_eq(jint(res, "rejected"), 1);
	json_decref(res);
	expect_rejected(&v, "3-1.pb", 409, "conflicting");
	cr_expect_eq(count_batches(v.spool), 0);
	snap = th_get_json(v.td.port, "/v1/snapshot");
	cr_expect(th_snapshot_matches(snap, v.defn, e), "a duplicate and a conflict change no total");
	json_decref(snap);

	/* Nothing to do: exit 0. */
	res = upload_once(&v, &status);
	cr_expect_eq(status, 0);
	cr_expect_eq(jint(res, "sent"), 0);
	json_decref(res);
	bal_expect_free(e);
	env_stop(&v);
}

static int kills_wanted(void)
{
	const char *s = getenv("BAL_UPLOAD_KILLS");
	int n = s ? atoi(s) : 0;
	return n > 0 ? n : 6;
}

static pid_t upload_start(struct env *v, const char *log)
{
	const char *args[] = {"upload",  "--spool",       v->spool, "--server",
	                      v->server, "--connections", "3",      "--scan-interval",
	                      "0.2",     "--min-backoff", "0.05",   "--max-backoff",
	                      "0.4",     "--timeout",     "5",      NULL};
	return th_ctl_start(NULL, log, args);
}

static int count_in_log(const char *log, const char *word)
{
	char *text = slurp(log, NULL);
	int n = 0;
	for (char *p = text; p && (p = strstr(p, word)); p++)
		n++;
	free(text);
	return n;
}

Test(upload, kills_of_uploader_and_daemon_lose_and_double_nothing)
{
	struct env v;
	env_start(&v, 60);
	cr_assert_eq(spool_batches(&v, "1-60", "15", "5"), 0);
	const int total = 60 * 15;
	cr_assert_eq(count_batches(v.spool), total);
	unsigned seed = (unsigned)time(NULL);
	srand(seed);
	char log[700];
	snprintf(log, sizeof(log), "%s/upload.log", v.dir);

	int kills = kills_wanted(), done_kills = 0, daemon_kills = 0;
	pid_t up = upload_start(&v, log);
	for (int k = 0; k < kills; k++) {
		/* Let it deliver a random handful (or run a random few ms), then SIGKILL it. */
		int left = count_batches(v.spool), target = left - 5 - rand() % 40;
		uint64_t deadline = mono_ms() + (uint64_t)(5 + rand() % 60);
		if (rand() % 2)
			deadline += 5000;
		while (count_batches(v.spool) > target && count_batches(v.spool) > 0 && mono_ms() < deadline)
			usleep(200);
		if (count_batches(v.spool) == 0)
			break;
		kill(up, SIGKILL);
		cr_assert_eq(th_wait_exit(up), 128 + SIGKILL);
		done_kills++;
		if (k == kills / 2) {
			/* The daemon too: the new uploader meets refused connections and retries. */
			th_kill9(&v.td);
			daemon_kills++;
			up = upload_start(&v, log);
			usleep(300000);
			unsigned port = v.td.port;
			cr_assert_eq(th_start(&v.td, v.defn_path, v.data, port, NULL), 0, "ballotd restart");
		} else {
			up = upload_start(&v, log);
		}
	}
	uint64_t deadline = mono_ms() + 60000;
	while (count_batches(v.spool) > 0 && mono_ms() < deadline)
		usleep(5000);
	cr_expect_eq(count_batches(v.spool), 0, "the spool must drain (seed %u)", seed);
	kill(up, SIGTERM);
	cr_expect_eq(th_wait_exit(up), 0, "SIGTERM ends the uploader with status 0");

	struct bal_expect *e = fold_spooled(v.defn, 1, 60, 15);
	json_t *snap = th_get_json(v.td.port, "/v1/snapshot");
	cr_expect_eq(jint(snap, "position"), total, "every batch journaled exactly once (seed %u)", seed);
	cr_expect(th_snapshot_matches(snap, v.defn, e), "totals must equal the fold of every spooled batch (seed %u)",
	          seed);
	json_decref(snap);
	char rej[700];
	snprintf(rej, sizeof(rej), "%s/rejected", v.spool);
	cr_expect(count_batches(rej) <= 0, "nothing may be rejected");
	int accepted = count_in_log(log, " ACCEPTED at"), duplicate = count_in_log(log, " DUPLICATE at");
	cr_expect_leq(accepted, total, "no batch accepted twice");
	fprintf(stderr,
	        "upload: %d uploader kills and %d daemon kill survived, %d batches checked (%d ACCEPTED logged, "
	        "%d DUPLICATE after a kill) (seed %u)\n",
	        done_kills, daemon_kills, total, accepted, duplicate, seed);
	bal_expect_free(e);
	env_stop(&v);
}

/* ---- a scripted server for the retry rules ------------------------------------------ */

struct scripted {
	int lfd;
	unsigned port;
	int answered;
	uint64_t at_ms[8];
	bool accept_protobuf[8];
	size_t body_len[8];
	uint8_t first_body[4096];
	size_t first_len;
};

/* Reads one request on fd: returns its body length, or -1 at EOF. */
static long read_request(int fd, struct scripted *s, int i)
{
	char buf[8192];
	size_t n = 0;
	char *eoh = NULL;
	while (!eoh) {
		ssize_t r = recv(fd, buf + n, sizeof(buf) - 1 - n, 0);
		if (r <= 0)
			return -1;
		n += (size_t)r;
		buf[n] = '\0';
		eoh = strstr(buf, "\r\n\r\n");
	}
	char *cl = strcasestr(buf, "\r\nContent-Length:");
	size_t clen = cl ? strtoul(cl + 17, NULL, 10) : 0;
	size_t have = n - (size_t)(eoh + 4 - buf);
	s->accept_protobuf[i] = strcasestr(buf, "\r\nAccept: application/x-protobuf\r\n") != NULL;
	uint8_t *body = malloc(clen + 1);
	memcpy(body, eoh + 4, have);
	while (have < clen) {
		ssize_t r = recv(fd, body + have, clen - have, 0);
		if (r <= 0) {
			free(body);
			return -1;
		}
		have += (size_t)r;
	}
	if (i == 0 && clen <= sizeof(s->first_body)) {
		memcpy(s->first_body, body, clen);
		s->first_len = clen;
	}
	free(body);
	return (long)clen;
}

static void respond(int fd, int status, const char *extra, const char *ctype, const void *body, size_t len)
{
	char head[512];
	int n = snprintf(head, sizeof(head), "HTTP/1.1 %d X\r\n%sContent-Type: %s\r\nContent-Length: %zu\r\n\r\n",
	                 status, extra, ctype, len);
	send(fd, head, (size_t)n, MSG_NOSIGNAL);
	send(fd, body, len, MSG_NOSIGNAL);
}

static void respond_ack(int fd, int status, const char *extra, enum bal_ack_status st, uint64_t pos, const char *error)
{
	uint8_t buf[512];
	size_t n = bal_codec_ack_pack(st, pos, error, buf);
	respond(fd, status, extra, "application/x-protobuf", buf, n);
}

/*
 * Request 0 (1-1.pb): 503 + Retry-After: 1, keep-alive, then the server drops
 * the connection as if idle. Request 1 (1-1.pb again, on a new connection):
 * 507. Request 2: ACCEPTED. Request 3 (1-2.pb): 413 with a text body.
 */
static void *serve(void *arg)
{
	struct scripted *s = arg;
	int fd = -1;
	for (int i = 0; i < 4; i++) {
		if (fd < 0 && (fd = accept(s->lfd, NULL, NULL)) < 0)
			break;
		long len = read_request(fd, s, i);
		if (len < 0) {
			close(fd);
			fd = -1;
			i--;
			continue;
		}
		s->at_ms[i] = mono_ms();
		s->body_len[i] = (size_t)len;
		switch (i) {
		case 0:
			respond_ack(fd, 503, "Retry-After: 1\r\n", BAL_ACK_REJECTED, 0, "commit queue full");
			usleep(50000);
			close(fd);
			fd = -1;
			break;
		case 1: respond_ack(fd, 507, "", BAL_ACK_REJECTED, 0, "journal full (--map-size)"); break;
		case 2: respond_ack(fd, 200, "", BAL_ACK_ACCEPTED, 41, NULL); break;
		default: respond(fd, 413, "Connection: close\r\n", "text/plain", "body of 9999 bytes exceeds 10\n", 30);
		}
		s->answered = i + 1;
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

Test(upload, retries_503_and_507_after_retry_after_and_rejects_413)
{
	struct scripted s = {0};
	s.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	cr_assert_eq(bind(s.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(s.lfd, 8), 0);
	socklen_t sl = sizeof(sa);
	getsockname(s.lfd, (struct sockaddr *)&sa, &sl);
	s.port = ntohs(sa.sin_port);
	pthread_t th;
	pthread_create(&th, NULL, serve, &s);

	char *dir = th_tmpdir(), spool[600], server[64], out[700], log[700];
	snprintf(spool, sizeof(spool), "%s/spool", dir);
	mkdir(spool, 0755);
	snprintf(server, sizeof(server), "http://127.0.0.1:%u/", s.port);
	snprintf(out, sizeof(out), "%s/upload.json", dir);
	snprintf(log, sizeof(log), "%s/upload.log", dir);
	write_file(spool, "1-1.pb", "first batch bytes", 17);
	write_file(spool, "1-2.pb", "second", 6);
	const char *args[] = {"upload", "--spool", spool,           "--server", server,
	                      "--once", "--json",  "--min-backoff", "0.05",     NULL};
	uint64_t t0 = mono_ms();
	int status = th_ctl_run(out, log, args);
	pthread_join(th, NULL);
	close(s.lfd);
	char *logtext = slurp(log, NULL);
	cr_expect_eq(status, 1, "exit 1: a file was rejected; log:\n%s", logtext);
	cr_assert_eq(s.answered, 4, "four requests expected; log:\n%s", logtext);
	cr_expect_geq(s.at_ms[1] - s.at_ms[0], 1000, "Retry-After: 1 must be honoured (retried after %llu ms)",
	              (unsigned long long)(s.at_ms[1] - s.at_ms[0]));
	cr_expect_lt(s.at_ms[2] - s.at_ms[1], 1000, "507 is retried after the short backoff");
	cr_expect_lt(mono_ms() - t0, 10000);
	for (int i = 0; i < 4; i++)
		cr_expect(s.accept_protobuf[i], "request %d must ask for a protobuf ack", i);
	cr_expect_eq(s.first_len, 17);
	cr_expect_eq(memcmp(s.first_body, "first batch bytes", 17), 0, "the body is the file's bytes");
	cr_expect_eq(s.body_len[3], 6);

	json_error_t err;
	json_t *res = json_load_file(out, 0, &err);
	cr_assert(res, "%s", err.text);
	cr_expect_eq(jint(res, "accepted"), 1);
	cr_expect_eq(jint(res, "rejected"), 1);
	cr_expect_eq(jint(res, "retries"), 2, "503 and 507 are retries; a dropped idle connection is not");
	json_decref(res);
	cr_expect(strstr(logtext, "1-1.pb ACCEPTED at position 41"), "log:\n%s", logtext);
	cr_expect(strstr(logtext, "Retry-After"), "the log names the Retry-After wait:\n%s", logtext);
	free(logtext);

	char path[800];
	snprintf(path, sizeof(path), "%s/1-1.pb", spool);
	cr_expect_neq(access(path, F_OK), 0, "the accepted file is deleted");
	snprintf(path, sizeof(path), "%s/rejected/1-2.pb.reason", spool);
	char *reason = slurp(path, NULL);
	cr_assert(reason, "1-2.pb.reason");
	cr_expect(strstr(reason, "http_status: 413\n") && strstr(reason, "exceeds 10"), "reason: %s", reason);
	free(reason);
	th_rmdir(dir);
	free(dir);
}

Test(upload, second_uploader_on_a_spool_is_refused)
{
	char *dir = th_tmpdir(), spool[600], log[700], first_log[700];
	snprintf(spool, sizeof(spool), "%s/spool", dir);
	snprintf(log, sizeof(log), "%s/upload.log", dir);
	snprintf(first_log, sizeof(first_log), "%s/first.log", dir);
	mkdir(spool, 0755);
	write_file(spool, "1-1.pb", "x", 1);
	/* Nothing listens on port 9 of loopback: the first uploader keeps retrying. */
	const char *args[] = {"upload", "--spool", spool, "--server", "127.0.0.1:9", NULL};
	pid_t first = th_ctl_start(NULL, first_log, args);
	uint64_t deadline = mono_ms() + 10000;
	while (count_in_log(first_log, "not delivered") == 0 && mono_ms() < deadline)
		usleep(10000);
	const char *once[] = {"upload", "--spool", spool, "--server", "127.0.0.1:9", "--once", NULL};
	cr_expect_eq(th_ctl_run(NULL, log, once), 1);
	char *text = slurp(log, NULL);
	cr_expect(text && strstr(text, "another ballotctl upload"), "log: %s", text ? text : "");
	free(text);
	kill(first, SIGTERM);
	cr_expect_eq(th_wait_exit(first), 0, "SIGTERM during backoff: exit 0");
	snprintf(log, sizeof(log), "%s/1-1.pb", spool);
	cr_expect_eq(access(log, F_OK), 0, "an undelivered file stays");
	th_rmdir(dir);
	free(dir);
}

/* ---- ballotctl snapshot ------------------------------------------------------------- */

/* The line of `text` whose name column starts with `name` after two spaces; NULL if none. */
static const char *row_of(const char *text, const char *name)
{
	size_t n = strlen(name);
	for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
		if (strncmp(l, "  ", 2) == 0 && strncmp(l + 2, name, n) == 0)
			return l;
	return NULL;
}

Test(snapshot, prints_seats_threshold_and_distinct_district_names)
{
	struct env v;
	memset(&v, 0, sizeof(v));
	v.dir = th_tmpdir();
	char *gen = th_write_defn(v.dir, 30, 3, 4, KEY_SEED, true);
	/* District names that only differ at the end, longer than any column. */
	json_error_t err;
	json_t *d = json_load_file(gen, 0, &err);
	cr_assert(d, "%s", err.text);
	size_t i;
	json_t *dist;
	json_array_foreach(json_object_get(d, "districts"), i, dist)
	{
		char name[128];
		snprintf(name, sizeof(name), "Very Long Administrative Region of the Steppe Electoral District No. %zu",
		         i + 1);
		json_object_set_new(dist, "name", json_string(name));
	}
	cr_assert_eq(asprintf(&v.defn_path, "%s/long-names.json", v.dir) > 0, true);
	cr_assert_eq(json_dump_file(d, v.defn_path, 0), 0);
	json_decref(d);
	free(gen);
	char why[256];
	cr_assert_eq(bal_defn_load(v.defn_path, &v.defn, why, sizeof(why)), 0, "%s", why);
	snprintf(v.spool, sizeof(v.spool), "%s/spool", v.dir);
	snprintf(v.data, sizeof(v.data), "%s/data", v.dir);
	cr_assert_eq(th_start(&v.td, v.defn_path, v.data, 0, NULL), 0);
	snprintf(v.server, sizeof(v.server), "127.0.0.1:%u", v.td.port);
	cr_assert_eq(spool_batches(&v, "1-30", "4", "5"), 0);
	int status;
	json_decref(upload_once(&v, &status));
	cr_assert_eq(status, 0);

	char out[700];
	snprintf(out, sizeof(out), "%s/snapshot.txt", v.dir);
	const char *args[] = {"snapshot", "--server", v.server, NULL};
	cr_assert_eq(th_ctl_run(out, NULL, args), 0);
	char *text = slurp(out, NULL);
	json_t *seats = th_get_json(v.td.port, "/v1/seats");
	cr_assert(text && seats);

	/* Party list: every choice's seats, "-" under the threshold. */
	json_t *pl = json_array_get(json_object_get(seats, "contests"), 0);
	cr_assert_str_eq(json_string_value(json_object_get(pl, "kind")), "party_list");
	int below = 0;
	json_t *ch;
	json_array_foreach(json_object_get(pl, "choices"), i, ch)
	{
		const char *row = row_of(text, json_string_value(json_object_get(ch, "name")));
		cr_assert(row, "no row for %s in:\n%s", json_string_value(json_object_get(ch, "name")), text);
		char line[256];
		snprintf(line, sizeof(line), "%.*s", (int)(strchr(row, '\n') - row), row);
		char *pcent = strchr(line, '%');
		cr_assert(pcent, "%s", line);
		char cell[16] = "";
		sscanf(pcent + 1, "%15s", cell);
		if (!json_is_true(json_object_get(ch, "seat_eligible"))) {
			cr_expect(strstr(line, "not eligible"), "%s", line);
		} else if (!json_is_true(json_object_get(ch, "passed_threshold"))) {
			below++;
			cr_expect_str_eq(cell, "-", "%s", line);
			cr_expect(strstr(line, "below the 5% threshold"), "%s", line);
		} else {
			char want[16];
			snprintf(want, sizeof(want), "%lld", jint(ch, "seats"));
			cr_expect_str_eq(cell, want, "seats of %s: %s", json_string_value(json_object_get(ch, "name")),
			                 line);
		}
	}
	cr_expect_geq(below, 1, "the generator puts one party under 5%%:\n%s", text);

	/* Districts: three distinct labels, each keeping its number, the elected leader marked. */
	const char *from = text;
	for (int k = 1; k <= 3; k++) {
		const char *row = row_of(from, "Very Long Administrative");
		cr_assert(row, "district row %d missing:\n%s", k, text);
		int len = (int)(strchr(row, '\n') - row);
		char num[16];
		snprintf(num, sizeof(num), "No. %d ", k);
		const char *at = strstr(row, num);
		cr_expect(at && at < row + len, "district %d keeps its number: %.*s", k, len, row);
		cr_expect(memchr(row, '*', (size_t)len), "elected mark: %.*s", len, row);
		from = row + len + 1;
	}
	free(text);
	json_decref(seats);
	env_stop(&v);
}
