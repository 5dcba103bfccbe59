/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `ballotctl upload` and `ballotctl spool-batches` end to end, run as the real
 * executables: against the real ballotd (every batch delivered exactly once,
 * bad files (400, 401, 409, 413, 422) moved to rejected/ with their reason, totals equal to the
 * independent fold of client/expect.h, every delivered file's receipt kept),
 * under repeated SIGKILLs of the uploader and one of the daemon, and against
 * a scripted HTTP server for the retry rules (503 with Retry-After, 507, a
 * keep-alive connection the server closed, 413 final) and for the receipt
 * rules: no answer that fails to prove delivery under the pinned log key
 * (an empty 200, no receipt, another key or election, another leaf, a proof
 * that misses the root, another position) may make upload delete a file.
 *
 * Then the observers' side of the log against the real daemon:
 * `ballotctl verify-receipt` on the kept receipts, `ballotctl monitor` (a
 * fork between two daemons answering one monitor state, --compare) and the
 * root check of `ballotctl audit`.
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
#include <sodium.h>
#include <stdatomic.h>
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
#include "client/logcheck.h"
#include "tests/common/params.h"
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

/* Lines of `text` that start with `prefix`. */
static int count_lines_with(const char *text, const char *prefix)
{
	int n = 0;
	size_t pl = strlen(prefix);
	for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
		n += strncmp(l, prefix, pl) == 0;
	return n;
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

/* A daemon that signs its log with the test log key (th_write_log_key()). */
struct env {
	char *dir, *defn_path, *key_path, key_hex[65], spool[600], data[600], server[64], receipts[700];
	struct bal_defn *defn;
	struct th_daemon td;
};

/* (Re)starts v's daemon on `port` (0: any) with --log-key. */
static void env_daemon(struct env *v, unsigned port)
{
	const char *extra[] = {"--log-key", v->key_path, NULL};
	cr_assert_eq(th_start(&v->td, v->defn_path, v->data, port, extra), 0, "ballotd start");
	snprintf(v->server, sizeof(v->server), "127.0.0.1:%u", v->td.port);
}

/* The scratch directory, a definition, the log key; no daemon. */
static void env_init(struct env *v, uint32_t precincts)
{
	memset(v, 0, sizeof(*v));
	v->dir = th_tmpdir();
	cr_assert(v->dir);
	v->defn_path = th_write_defn(v->dir, precincts, 3, 4, KEY_SEED, true);
	cr_assert(v->defn_path);
	char why[256];
	cr_assert_eq(bal_defn_load(v->defn_path, &v->defn, why, sizeof(why)), 0, "%s", why);
	v->key_path = th_write_log_key(v->dir, v->key_hex);
	cr_assert(v->key_path);
	snprintf(v->spool, sizeof(v->spool), "%s/spool", v->dir);
	snprintf(v->receipts, sizeof(v->receipts), "%s/receipts/receipts.jsonl", v->spool);
	snprintf(v->data, sizeof(v->data), "%s/data", v->dir);
}

static void env_start(struct env *v, uint32_t precincts)
{
	env_init(v, precincts);
	env_daemon(v, 0);
}

static void env_stop(struct env *v)
{
	if (v->td.pid > 0)
		cr_expect_eq(th_stop(&v->td), 0, "ballotd should exit 0 on SIGTERM");
	bal_defn_free(v->defn);
	free(v->defn_path);
	free(v->key_path);
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
	const char *args[] = {"upload",   "--spool",      v->spool,     "--server", v->server, "--server-key",
	                      v->key_hex, "--definition", v->defn_path, "--once",   "--json",  NULL};
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

/* The lines of a receipts file; `files` (if not NULL) gets an object whose
 * keys are the distinct "file" members. -1 if the file is missing. */
static int receipt_lines(const char *path, json_t *files)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	char *line = NULL;
	size_t cap = 0;
	int n = 0;
	while (getline(&line, &cap, f) > 0) {
		n++;
		json_t *o = json_loads(line, 0, NULL);
		const char *name = json_string_value(json_object_get(o, "file"));
		cr_expect(name, "receipt line %d has no \"file\": %s", n, line);
		if (files && name)
			json_object_set_new(files, name, json_true());
		json_decref(o);
	}
	free(line);
	fclose(f);
	return n;
}

/* `ballotctl verify-receipt` on `path` against v's daemon; its exit status,
 * its output in *out (malloc'd). */
static int verify_receipts(struct env *v, const char *path, const char *key_hex, char **out)
{
	char o[700], log[700];
	snprintf(o, sizeof(o), "%s/verify.out", v->dir);
	snprintf(log, sizeof(log), "%s/verify.log", v->dir);
	const char *args[] = {"verify-receipt", "--server", v->server, "--server-key", key_hex, path, NULL};
	int status = th_ctl_run(o, log, args);
	*out = slurp(o, NULL);
	cr_assert(*out);
	return status;
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

	/* One verified receipt kept per delivered file, none for the rejected. */
	json_t *files = json_object();
	cr_expect_eq(receipt_lines(v.receipts, files), 300);
	cr_expect_eq(json_object_size(files), 300);
	cr_expect(json_object_get(files, "12-4.pb") && !json_object_get(files, "garbage.pb"));
	json_decref(files);
	char *vout;
	cr_expect_eq(verify_receipts(&v, v.receipts, v.key_hex, &vout), 0, "verify-receipt:\n%s", vout);
	cr_expect_eq(count_lines_with(vout, "OK "), 300, "one OK line per receipt:\n%s", vout);
	free(vout);

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
	cr_expect_eq(receipt_lines(v.receipts, NULL), 301, "the DUPLICATE's receipt is kept too");
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
	const char *args[] = {"upload",     "--spool",       v->spool,   "--server",
	                      v->server,    "--server-key",  v->key_hex, "--definition",
	                      v->defn_path, "--connections", "3",        "--scan-interval",
	                      "0.2",        "--min-backoff", "0.05",     "--max-backoff",
	                      "0.4",        "--timeout",     "5",        NULL};
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
			env_daemon(&v, v.td.port);
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
	/* Every deleted file left its receipt first, whatever the kills cut. */
	json_t *files = json_object();
	int lines = receipt_lines(v.receipts, files);
	cr_expect_eq(json_object_size(files), (size_t)total, "a receipt for every delivered file (seed %u)", seed);
	json_decref(files);
	char *vout;
	cr_expect_eq(verify_receipts(&v, v.receipts, v.key_hex, &vout), 0, "every kept receipt verifies (seed %u)",
	             seed);
	cr_expect_eq(count_lines_with(vout, "OK "), lines);
	free(vout);
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
	uint8_t *body; /* of the last request */
};

/* Reads one request on fd: returns its body length with the body in *out
 * (malloc'd), or -1 at EOF. */
static long recv_request(int fd, uint8_t **out, bool *accept_protobuf)
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
	*accept_protobuf = strcasestr(buf, "\r\nAccept: application/x-protobuf\r\n") != NULL;
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
	*out = body;
	return (long)clen;
}

/* recv_request() for the scripted server: keeps the body of request i. */
static long read_request(int fd, struct scripted *s, int i)
{
	uint8_t *body;
	long len = recv_request(fd, &body, &s->accept_protobuf[i]);
	if (len < 0)
		return -1;
	if (i == 0 && (size_t)len <= sizeof(s->first_body)) {
		memcpy(s->first_body, body, (size_t)len);
		s->first_len = (size_t)len;
	}
	free(s->body);
	s->body = body;
	return len;
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

static void respond_receipt(int fd, enum bal_ack_status st, uint64_t pos, const struct bal_receipt *r)
{
	uint8_t buf[4096];
	cr_assert_leq(bal_codec_ack_receipt_size(st, pos, NULL, r), sizeof(buf));
	size_t n = bal_codec_ack_receipt_pack(st, pos, NULL, r, buf);
	respond(fd, 200, "", "application/x-protobuf", buf, n);
}

static void sign_head(struct bal_tree_head *h, const char *election, const uint8_t sk[64])
{
	uint8_t msg[512];
	size_t n = bal_logcheck_head_message(h, election, msg, sizeof(msg));
	cr_assert_gt(n, 0);
	crypto_sign_detached(h->signature, NULL, msg, n, sk);
}

/*
 * A receipt the way the daemon makes one, signed with `sk` for `election`:
 * `leaf` (32 bytes) is the last leaf of a tree of `position` leaves whose
 * other complete subtrees are made-up hashes, so that the path has a real
 * receipt's shape (one hash per one bit of position - 1) without a real tree.
 */
static void make_receipt(const uint8_t *leaf, uint64_t position, const char *election, const uint8_t sk[64],
                         struct bal_receipt *r)
{
	memset(r, 0, sizeof(*r));
	r->leaf_index = position - 1;
	memcpy(r->leaf_hash, leaf, 32);
	r->head.tree_size = position;
	r->head.timestamp_ms = 1700000000000ULL;
	r->npath = (unsigned)__builtin_popcountll(position - 1);
	for (unsigned i = 0; i < r->npath; i++)
		memset(r->path[i], 0x20 + (int)i, 32);
	char why[256];
	cr_assert_eq(bal_logcheck_inclusion_root(r->leaf_index, position, r->leaf_hash,
	                                         (const uint8_t(*)[BAL_HASH_BYTES])r->path, r->npath, r->head.root, why,
	                                         sizeof(why)),
	             0, "%s", why);
	sign_head(&r->head, election, sk);
}

/* make_receipt() of `body` with the test log key, for the test election. */
static void good_receipt(const void *body, size_t len, uint64_t position, struct bal_receipt *r)
{
	uint8_t pk[32], sk[64], leaf[32];
	th_log_keypair(pk, sk);
	bal_logcheck_leaf_hash(body, len, leaf);
	make_receipt(leaf, position, th_election_id(), sk, r);
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
		case 2: {
			struct bal_receipt r;
			good_receipt(s->body, (size_t)len, 41, &r);
			respond_receipt(fd, BAL_ACK_ACCEPTED, 41, &r);
			break;
		}
		default: respond(fd, 413, "Connection: close\r\n", "text/plain", "body of 9999 bytes exceeds 10\n", 30);
		}
		s->answered = i + 1;
	}
	if (fd >= 0)
		close(fd);
	free(s->body);
	return NULL;
}

/* The pinned key and the definition of the test election, in `dir`: the
 * arguments upload needs besides --spool and --server. */
struct pins {
	char key_hex[65];
	char *defn_path;
};

static void pins_init(struct pins *p, const char *dir)
{
	uint8_t pk[32], sk[64];
	th_log_keypair(pk, sk);
	bal_logcheck_hex(pk, 32, p->key_hex);
	p->defn_path = th_write_defn(dir, 3, 1, 2, KEY_SEED, true);
	cr_assert(p->defn_path);
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
	struct pins p;
	pins_init(&p, dir);
	const char *args[] = {"upload",       "--spool",       spool,          "--server",  server,
	                      "--server-key", p.key_hex,       "--definition", p.defn_path, "--once",
	                      "--json",       "--min-backoff", "0.05",         NULL};
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
	snprintf(path, sizeof(path), "%s/receipts/receipts.jsonl", spool);
	cr_expect_eq(receipt_lines(path, NULL), 1, "the accepted file's receipt is kept");
	free(p.defn_path);
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
	struct pins p;
	pins_init(&p, dir);
	/* Nothing listens on port 9 of loopback: the first uploader keeps retrying. */
	const char *args[] = {"upload",       "--spool", spool,          "--server",  "127.0.0.1:9",
	                      "--server-key", p.key_hex, "--definition", p.defn_path, NULL};
	pid_t first = th_ctl_start(NULL, first_log, args);
	uint64_t deadline = mono_ms() + 10000;
	while (count_in_log(first_log, "not delivered") == 0 && mono_ms() < deadline)
		usleep(10000);
	const char *once[] = {"upload",  "--spool",      spool,       "--server", "127.0.0.1:9", "--server-key",
	                      p.key_hex, "--definition", p.defn_path, "--once",   NULL};
	cr_expect_eq(th_ctl_run(NULL, log, once), 1);
	char *text = slurp(log, NULL);
	cr_expect(text && strstr(text, "another ballotctl upload"), "log: %s", text ? text : "");
	free(text);
	kill(first, SIGTERM);
	cr_expect_eq(th_wait_exit(first), 0, "SIGTERM during backoff: exit 0");
	snprintf(log, sizeof(log), "%s/1-1.pb", spool);
	cr_expect_eq(access(log, F_OK), 0, "an undelivered file stays");
	free(p.defn_path);
	th_rmdir(dir);
	free(dir);
}

/* ---- receipts: answers that do not prove delivery ---------------------------------- */

enum fake_mode {
	FAKE_VALID,
	FAKE_EMPTY_200,
	FAKE_NO_RECEIPT,
	FAKE_DUPLICATE_NO_RECEIPT,
	FAKE_OTHER_KEY,
	FAKE_OTHER_ELECTION,
	FAKE_WRONG_LEAF,
	FAKE_NOT_TO_ROOT,
	FAKE_WRONG_POSITION,
	FAKE_BEYOND_TREE,
};

/* What each fake answer is, and what upload's RECEIPT FAILED line must name. */
static const struct {
	enum fake_mode mode;
	const char *what, *says;
} fake_cases[] = {
        {FAKE_EMPTY_200, "an empty 200", "HTTP 200 without a BatchAck"},
        {FAKE_NO_RECEIPT, "an ACCEPTED ack without a receipt", "ACCEPTED ack at position 41 carries no receipt"},
        {FAKE_DUPLICATE_NO_RECEIPT, "a DUPLICATE ack without a receipt", "DUPLICATE ack at position 41 carries no"},
        {FAKE_OTHER_KEY, "a receipt signed by another key", "does not verify under key"},
        {FAKE_OTHER_ELECTION, "a head signed for another election", "does not verify under key"},
        {FAKE_WRONG_LEAF, "a valid signed head and proof of another leaf", "is not the file's SHA-256"},
        {FAKE_NOT_TO_ROOT, "a proof that does not reach the signed root", "inclusion proof of leaf 40 leads to"},
        {FAKE_WRONG_POSITION, "a valid receipt for another position", "the ack says position 40"},
        {FAKE_BEYOND_TREE, "a leaf beyond the signed tree", "is not below tree size"},
};

/* Answers every POST /v1/batches the same way, on any number of connections,
 * until the listening socket is shut down. */
struct fake {
	int lfd;
	unsigned port;
	enum fake_mode mode;
	atomic_int requests;
	pthread_t thread;
};

static void fake_answer(struct fake *f, int fd, const uint8_t *body, size_t len)
{
	uint8_t pk[32], sk[64], other_pk[32], other_sk[64], leaf[32];
	th_log_keypair(pk, sk);
	memset(other_sk, 0x77, 32);
	crypto_sign_seed_keypair(other_pk, other_sk, other_sk);
	bal_logcheck_leaf_hash(body, len, leaf);
	struct bal_receipt r;
	uint64_t pos = 41;
	switch (f->mode) {
	case FAKE_EMPTY_200: respond(fd, 200, "", "text/plain", "", 0); return;
	case FAKE_NO_RECEIPT: respond_ack(fd, 200, "", BAL_ACK_ACCEPTED, pos, NULL); return;
	case FAKE_DUPLICATE_NO_RECEIPT: respond_ack(fd, 200, "", BAL_ACK_DUPLICATE, pos, NULL); return;
	case FAKE_VALID: make_receipt(leaf, pos, th_election_id(), sk, &r); break;
	case FAKE_OTHER_KEY: make_receipt(leaf, pos, th_election_id(), other_sk, &r); break;
	case FAKE_OTHER_ELECTION: make_receipt(leaf, pos, "another-election", sk, &r); break;
	case FAKE_WRONG_LEAF:
		bal_logcheck_leaf_hash((const uint8_t *)"another batch", 13, leaf);
		make_receipt(leaf, pos, th_election_id(), sk, &r);
		break;
	case FAKE_NOT_TO_ROOT:
		make_receipt(leaf, pos, th_election_id(), sk, &r);
		r.head.root[0] ^= 0x01; /* a root the path does not lead to, signed all the same */
		sign_head(&r.head, th_election_id(), sk);
		break;
	case FAKE_WRONG_POSITION:
		make_receipt(leaf, pos, th_election_id(), sk, &r);
		pos = 40;
		break;
	case FAKE_BEYOND_TREE:
		/* leaf 40 of a signed tree of 40 leaves, ack at position 41 */
		make_receipt(leaf, pos, th_election_id(), sk, &r);
		r.head.tree_size = 40;
		sign_head(&r.head, th_election_id(), sk);
		break;
	}
	respond_receipt(fd, BAL_ACK_ACCEPTED, pos, &r);
}

static void *fake_serve(void *arg)
{
	struct fake *f = arg;
	int fd;
	while ((fd = accept(f->lfd, NULL, NULL)) >= 0) {
		struct timeval tv = {.tv_sec = 5};
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		for (;;) {
			uint8_t *body;
			bool pb;
			long len = recv_request(fd, &body, &pb);
			if (len < 0)
				break;
			atomic_fetch_add(&f->requests, 1);
			fake_answer(f, fd, body, (size_t)len);
			free(body);
		}
		close(fd);
	}
	return NULL;
}

static void fake_start(struct fake *f, enum fake_mode mode)
{
	memset(f, 0, sizeof(*f));
	f->mode = mode;
	f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	cr_assert_eq(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(f->lfd, 8), 0);
	socklen_t sl = sizeof(sa);
	getsockname(f->lfd, (struct sockaddr *)&sa, &sl);
	f->port = ntohs(sa.sin_port);
	cr_assert_eq(pthread_create(&f->thread, NULL, fake_serve, f), 0);
}

static void fake_stop(struct fake *f)
{
	shutdown(f->lfd, SHUT_RDWR); /* wakes the accept() */
	pthread_join(f->thread, NULL);
	close(f->lfd);
}

/* upload --once against a fake server; stops on --give-up 1. */
static int upload_to_fake(struct fake *f, const char *dir, const char *spool, const struct pins *p, json_t **res,
                          char **logtext)
{
	char server[64], out[700], log[700];
	snprintf(server, sizeof(server), "127.0.0.1:%u", f->port);
	snprintf(out, sizeof(out), "%s/upload.json", dir);
	snprintf(log, sizeof(log), "%s/upload.log", dir);
	const char *args[] = {"upload",   "--spool",       spool,        "--server",  server,   "--server-key",
	                      p->key_hex, "--definition",  p->defn_path, "--once",    "--json", "--min-backoff",
	                      "0.05",     "--max-backoff", "0.1",        "--give-up", "1",      NULL};
	int status = th_ctl_run(out, log, args);
	json_error_t err;
	*res = json_load_file(out, 0, &err);
	cr_assert(*res, "upload --json output: %s", err.text);
	*logtext = slurp(log, NULL);
	cr_assert(*logtext);
	return status;
}

/* One spooled file (1-1.pb) uploaded to a fake server of `mode`. */
struct fake_run {
	struct fake f;
	char *dir, spool[600], *log;
	struct pins p;
	json_t *res;
	int status;
};

static void fake_run(struct fake_run *r, enum fake_mode mode)
{
	fake_start(&r->f, mode);
	r->dir = th_tmpdir();
	snprintf(r->spool, sizeof(r->spool), "%s/spool", r->dir);
	mkdir(r->spool, 0755);
	write_file(r->spool, "1-1.pb", "first batch bytes", 17);
	pins_init(&r->p, r->dir);
	r->status = upload_to_fake(&r->f, r->dir, r->spool, &r->p, &r->res, &r->log);
	fake_stop(&r->f);
}

static void fake_run_free(struct fake_run *r)
{
	json_decref(r->res);
	free(r->log);
	free(r->p.defn_path);
	th_rmdir(r->dir);
	free(r->dir);
}

INDEX_PARAMS(upload, keeps_files_without_a_valid_receipt, fake_cases)
ParameterizedTest(size_t *i, upload, keeps_files_without_a_valid_receipt)
{
	const char *what = fake_cases[*i].what, *says = fake_cases[*i].says;
	struct fake_run run;
	fake_run(&run, fake_cases[*i].mode);
	const char *spool = run.spool, *log = run.log;
	json_t *res = run.res;
	struct fake *f = &run.f;
	char path[800];
	cr_expect_eq(run.status, 1, "%s: upload must fail (--give-up), log:\n%s", what, log);
	snprintf(path, sizeof(path), "%s/1-1.pb", spool);
	cr_expect_eq(access(path, F_OK), 0, "%s: the file must stay in the spool", what);
	cr_expect_geq(atomic_load(&f->requests), 3, "%s: upload must keep retrying (%d requests)", what,
	              atomic_load(&f->requests));
	cr_expect(strstr(log, "1-1.pb: RECEIPT FAILED from 127.0.0.1:"), "%s: a loud line, log:\n%s", what, log);
	cr_expect(strstr(log, says), "%s: the line names \"%s\", log:\n%s", what, says, log);
	cr_expect_eq(jint(res, "accepted") + jint(res, "duplicate"), 0, "%s", what);
	cr_expect_geq(jint(res, "bad_receipts"), 2, "%s", what);
	cr_expect_eq(jint(res, "pending"), 1, "%s", what);
	cr_expect_str_eq(json_string_value(json_object_get(res, "stopped")), "error", "%s", what);
	snprintf(path, sizeof(path), "%s/receipts/receipts.jsonl", spool);
	cr_expect_eq(receipt_lines(path, NULL), 0, "%s: no receipt kept", what);
	fake_run_free(&run);
}

/* The control: the same fake server with a receipt that does verify. */
Test(upload, deletes_a_file_after_a_valid_receipt_and_keeps_the_receipt)
{
	struct fake_run run;
	fake_run(&run, FAKE_VALID);
	const char *dir = run.dir, *spool = run.spool;
	struct pins p = run.p;
	json_t *res = run.res;
	char *log = run.log, path[800];
	struct fake f;
	cr_expect_eq(run.status, 0, "log:\n%s", log);
	cr_expect_eq(atomic_load(&run.f.requests), 1);
	cr_expect_eq(jint(res, "accepted"), 1);
	cr_expect_eq(jint(res, "bad_receipts"), 0);
	snprintf(path, sizeof(path), "%s/1-1.pb", spool);
	cr_expect_neq(access(path, F_OK), 0, "the file is deleted");
	snprintf(path, sizeof(path), "%s/receipts/receipts.jsonl", spool);
	cr_expect_eq(receipt_lines(path, NULL), 1);
	char *text = slurp(path, NULL);
	json_t *line = json_loads(text, 0, NULL);
	cr_expect_str_eq(json_string_value(json_object_get(line, "file")), "1-1.pb");
	cr_expect_eq(jint(line, "position"), 41);
	cr_expect_eq(jint(line, "leaf_index"), 40);
	cr_expect_str_eq(json_string_value(json_object_get(line, "election_id")), th_election_id());
	cr_expect_str_eq(json_string_value(json_object_get(line, "server_key")), p.key_hex);
	json_decref(line);
	free(text);

	/* Checked again offline, as kept; a line cut short by a kill is dropped at the next start. */
	char out[700];
	snprintf(out, sizeof(out), "%s/verify.out", dir);
	const char *verify[] = {"verify-receipt", "--offline", "--definition", p.defn_path,
	                        "--server-key",   p.key_hex,   path,           NULL};
	cr_expect_eq(th_ctl_run(out, NULL, verify), 0);
	FILE *fp = fopen(path, "a");
	fputs("{\"file\":\"2-1.pb\",\"status\":\"ACC", fp);
	fclose(fp);
	cr_expect_eq(th_ctl_run(out, NULL, verify), 1, "a cut line is not a receipt");
	fake_start(&f, FAKE_VALID);
	json_decref(run.res);
	free(run.log);
	cr_expect_eq(upload_to_fake(&f, dir, spool, &p, &run.res, &run.log), 0);
	fake_stop(&f);
	cr_expect(strstr(run.log, "dropping an unfinished last line"), "log:\n%s", run.log);
	cr_expect_eq(receipt_lines(path, NULL), 1);
	cr_expect_eq(th_ctl_run(out, NULL, verify), 0);
	fake_run_free(&run);
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
	v.key_path = th_write_log_key(v.dir, v.key_hex);
	cr_assert(v.key_path);
	env_daemon(&v, 0);
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

/* ---- the log's observers against the real daemon ------------------------------------ */

/* `ballotctl ARGS` with stdout into dir/NAME.out; its status, its output in *out. */
static int ctl(const char *dir, const char *name, const char *const *args, char **out)
{
	char o[700], log[700];
	snprintf(o, sizeof(o), "%s/%s.out", dir, name);
	snprintf(log, sizeof(log), "%s/%s.log", dir, name);
	int status = th_ctl_run(o, log, args);
	*out = slurp(o, NULL);
	cr_assert(*out);
	if (status != 0) {
		char *l = slurp(log, NULL);
		fprintf(stderr, "ballotctl %s: exit %d, stderr:\n%s", args[0], status, l ? l : "");
		free(l);
	}
	return status;
}

static int monitor_once(struct env *v, const char *state, char **out)
{
	const char *args[] = {"monitor", "--server", v->server, "--server-key", v->key_hex, "--state",
	                      state,     "--once",   NULL};
	return ctl(v->dir, "monitor", args, out);
}

static json_int_t state_size(const char *state)
{
	json_t *o = json_load_file(state, 0, NULL);
	json_int_t n = jint(o, "tree_size");
	json_decref(o);
	return n;
}

Test(log, receipts_verify_and_a_tampered_one_does_not)
{
	struct env v;
	env_start(&v, 20);
	cr_assert_eq(spool_batches(&v, "1-20", "3", "5"), 0);
	int status;
	json_decref(upload_once(&v, &status));
	cr_assert_eq(status, 0);
	cr_assert_eq(receipt_lines(v.receipts, NULL), 60);
	/* Later batches (seqs 1..3 again: DUPLICATE, with receipts against the
	 * head of the day): the early heads must be consistent with the latest. */
	cr_assert_eq(spool_batches(&v, "1-20", "5", "5"), 0);
	json_decref(upload_once(&v, &status));
	cr_assert_eq(status, 0);
	cr_assert_eq(receipt_lines(v.receipts, NULL), 160);
	char *out;
	cr_expect_eq(verify_receipts(&v, v.receipts, v.key_hex, &out), 0, "%s", out);
	cr_expect_eq(count_lines_with(out, "OK "), 160, "%s", out);
	cr_expect(strstr(out, "consistent with the latest head of size 100"), "%s", out);
	free(out);

	/* One receipt altered: its line, and only its line, fails. */
	char *text = slurp(v.receipts, NULL), bad[700];
	char *line = text;
	for (int i = 0; i < 6; i++)
		line = strchr(line, '\n') + 1;
	char *audit = strstr(line, "\"audit_path\":[\"");
	cr_assert(audit && audit < strchr(line, '\n'));
	char *hex = audit + strlen("\"audit_path\":[\"");
	*hex = *hex == '0' ? '1' : '0';
	snprintf(bad, sizeof(bad), "%s/tampered.jsonl", v.dir);
	FILE *f = fopen(bad, "w");
	fputs(text, f);
	fclose(f);
	free(text);
	cr_expect_eq(verify_receipts(&v, bad, v.key_hex, &out), 1);
	cr_expect_eq(count_lines_with(out, "FAILED "), 1, "%s", out);
	cr_expect(strstr(out, "FAILED ") && strstr(strstr(out, "FAILED "), "inclusion proof"), "%s", out);
	free(out);

	/* Another pinned key: the server's /v1/log/key is not it, nothing verifies. */
	uint8_t other[32];
	memset(other, 0x11, sizeof(other));
	char other_hex[65];
	bal_logcheck_hex(other, 32, other_hex);
	cr_expect_eq(verify_receipts(&v, v.receipts, other_hex, &out), 1);
	free(out);
	const char *offline[] = {"verify-receipt", "--offline", "--definition", v.defn_path,
	                         "--server-key",   other_hex,   v.receipts,     NULL};
	cr_expect_eq(ctl(v.dir, "offline", offline, &out), 1);
	cr_expect_eq(count_lines_with(out, "FAILED "), 160, "%s", out);
	cr_expect(strstr(out, "does not verify under key"), "%s", out);
	free(out);
	env_stop(&v);
}

Test(log, monitor_follows_the_log_and_audit_checks_its_root)
{
	struct env v;
	env_start(&v, 20);
	char state[700], *out;
	snprintf(state, sizeof(state), "%s/monitor.json", v.dir);
	cr_assert_eq(spool_batches(&v, "1-20", "2", "5"), 0);
	int status;
	json_decref(upload_once(&v, &status));
	cr_assert_eq(status, 0);
	cr_expect_eq(monitor_once(&v, state, &out), 0, "%s", out);
	cr_expect(strstr(out, "saved as the first head"), "%s", out);
	free(out);
	cr_expect_eq(state_size(state), 40);

	cr_assert_eq(spool_batches(&v, "1-20", "4", "5"), 0);
	json_decref(upload_once(&v, &status));
	cr_assert_eq(status, 0);
	const char *twice[] = {"monitor", "--server", v.server,     "--server-key", v.key_hex,      "--state",   state,
	                       "--count", "2",        "--interval", "50ms",         "--definition", v.defn_path, NULL};
	cr_expect_eq(ctl(v.dir, "monitor", twice, &out), 0, "%s", out);
	cr_expect(strstr(out, "consistent with the saved head of size 40"), "%s", out);
	cr_expect(strstr(out, "unchanged since the saved one"), "%s", out);
	free(out);
	cr_expect_eq(state_size(state), 80);

	/* A tampered state: its signature no longer verifies. */
	char bad_state[700];
	snprintf(bad_state, sizeof(bad_state), "%s/bad.json", v.dir);
	json_t *o = json_load_file(state, 0, NULL);
	json_object_set_new(o, "tree_size", json_integer(79));
	json_dump_file(o, bad_state, 0);
	json_decref(o);
	cr_expect_eq(monitor_once(&v, bad_state, &out), 1);
	free(out);
	/* A server naming another log key than the pinned one. */
	char other_state[700];
	snprintf(other_state, sizeof(other_state), "%s/other.json", v.dir);
	const char *wrong_key[] = {"monitor",
	                           "--server",
	                           v.server,
	                           "--server-key",
	                           "33333333333333333333333333333333"
	                           "33333333333333333333333333333333",
	                           "--state",
	                           other_state,
	                           "--count",
	                           "3",
	                           NULL};
	cr_expect_eq(ctl(v.dir, "monitor", wrong_key, &out), 1);
	cr_expect(strstr(out, "WRONG KEY") && !strstr(strstr(out, "WRONG KEY") + 1, "WRONG KEY"),
	          "one line, then it stops:\n%s", out);
	cr_expect_neq(access(other_state, F_OK), 0, "nothing saved");
	free(out);

	/* audit: the root of records 1..P is the signed head's. */
	char out_path[700];
	snprintf(out_path, sizeof(out_path), "%s/audit.json", v.dir);
	const char *audit[] = {"audit",   "--server", v.server, "--definition", v.defn_path, "--server-key",
	                       v.key_hex, "--json",   NULL};
	cr_expect_eq(th_ctl_run(out_path, NULL, audit), 0);
	json_t *a = json_load_file(out_path, 0, NULL);
	json_t *log = json_object_get(a, "log");
	cr_expect(json_is_true(json_object_get(log, "checked")));
	cr_expect(json_is_true(json_object_get(log, "ok")));
	cr_expect_eq(jint(log, "head_size"), 80);
	cr_expect_str_eq(json_string_value(json_object_get(log, "signature")), "verified");
	json_t *head = th_get_json(v.td.port, "/v1/log/sth");
	cr_expect_str_eq(json_string_value(json_object_get(log, "root_hash")),
	                 json_string_value(json_object_get(head, "root_hash")), "recomputed root = signed root");
	json_decref(head);
	json_decref(a);
	/* Under another key the head's signature fails, and so does the audit. */
	uint8_t other[32];
	memset(other, 0x22, sizeof(other));
	char other_hex[65];
	bal_logcheck_hex(other, 32, other_hex);
	const char *audit_other[] = {"audit",   "--server", v.server, "--definition", v.defn_path, "--server-key",
	                             other_hex, "--json",   NULL};
	cr_expect_eq(th_ctl_run(out_path, NULL, audit_other), 1);
	a = json_load_file(out_path, 0, NULL);
	cr_expect_str_eq(json_string_value(json_object_get(json_object_get(a, "log"), "signature")), "failed");
	cr_expect(json_is_false(json_object_get(a, "ok")));
	json_decref(a);
	env_stop(&v);
}

/*
 * Two daemons with the same log key, election and definition but their own
 * data directories: two histories under one key, as a log that forks would
 * show them. A monitor state saved from one is a FORK for the other, both
 * ways (a longer other history, and a rollback to a shorter one), and
 * --compare finds it between two monitors' states.
 */
Test(log, monitor_catches_a_fork_between_two_daemons)
{
	struct env a, b;
	env_start(&a, 20);
	env_init(&b, 20);
	free(b.key_path);
	b.key_path = strdup(a.key_path); /* the same key, the same election */
	snprintf(b.key_hex, sizeof(b.key_hex), "%s", a.key_hex);
	env_daemon(&b, 0);
	cr_assert_eq(spool_batches(&a, "1-20", "2", "5"), 0);
	cr_assert_eq(spool_batches(&b, "1-20", "3", "6"), 0); /* other ballots, more of them */
	int status;
	json_decref(upload_once(&a, &status));
	cr_assert_eq(status, 0);
	json_decref(upload_once(&b, &status));
	cr_assert_eq(status, 0);

	char sa[700], sb[700], before[700], *out;
	snprintf(sa, sizeof(sa), "%s/a.json", a.dir);
	snprintf(sb, sizeof(sb), "%s/b.json", a.dir);
	cr_assert_eq(monitor_once(&a, sa, &out), 0, "%s", out);
	free(out);
	cr_assert_eq(monitor_once(&b, sb, &out), 0, "%s", out);
	free(out);
	cr_assert_eq(state_size(sa), 40);
	cr_assert_eq(state_size(sb), 60);

	/* A's state shown B's head: a larger tree whose proof does not start at A's root. */
	char *saved = slurp(sa, NULL);
	cr_expect_eq(monitor_once(&b, sa, &out), 3, "%s", out);
	cr_expect(strstr(out, "FORK: consistency proof from 40 to 60"), "%s", out);
	free(out);
	char *after = slurp(sa, NULL);
	cr_expect_str_eq(after, saved, "a fork leaves the saved head as it was");
	free(after);
	free(saved);
	/* B's state shown A's head: smaller, a rollback. */
	snprintf(before, sizeof(before), "%s/b-copy.json", a.dir);
	char *text = slurp(sb, NULL);
	FILE *f = fopen(before, "w");
	fputs(text, f);
	fclose(f);
	free(text);
	cr_expect_eq(monitor_once(&a, before, &out), 3, "%s", out);
	cr_expect(strstr(out, "FORK: rollback: a head of size 40"), "%s", out);
	free(out);

	/* --compare: through either server's proof, and without one for equal sizes. */
	const char *cmp_b[] = {"monitor", "--compare", sa, sb, "--server-key", a.key_hex, "--server", b.server, NULL};
	cr_expect_eq(ctl(a.dir, "compare", cmp_b, &out), 3, "%s", out);
	cr_expect(strstr(out, "FORK"), "%s", out);
	free(out);
	const char *cmp_a[] = {"monitor", "--compare", sb, sa, "--server-key", a.key_hex, "--server", a.server, NULL};
	cr_expect_eq(ctl(a.dir, "compare", cmp_a, &out), 1, "A's log has no size 60: cannot decide\n%s", out);
	free(out);
	const char *cmp_same[] = {"monitor", "--compare", sa, sa, "--server-key", a.key_hex, NULL};
	cr_expect_eq(ctl(a.dir, "compare", cmp_same, &out), 0, "%s", out);
	cr_expect(strstr(out, "CONSISTENT"), "%s", out);
	free(out);
	/* A grows: its later state is consistent with its earlier one. */
	char sa2[700];
	snprintf(sa2, sizeof(sa2), "%s/a2.json", a.dir);
	cr_assert_eq(spool_batches(&a, "1-20", "4", "5"), 0);
	json_decref(upload_once(&a, &status));
	cr_assert_eq(status, 0);
	cr_assert_eq(monitor_once(&a, sa2, &out), 0, "%s", out);
	free(out);
	const char *cmp_grown[] = {"monitor", "--compare", sa2,      sa,  "--server-key",
	                           a.key_hex, "--server",  a.server, NULL};
	cr_expect_eq(ctl(a.dir, "compare", cmp_grown, &out), 0, "%s", out);
	cr_expect(strstr(out, "is a prefix of"), "%s", out);
	free(out);
	env_stop(&b);
	env_stop(&a);
}
