/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The transparency log against the real ballotd on 127.0.0.1: every
 * receipt, head and proof the daemon serves is compared with what a naive
 * RFC 6962 computation over the bytes the test itself sent makes of them
 * (MTH, PATH and SUBPROOF straight from RFC 6962 section 2.1, written here
 * and sharing nothing with storage/merkle.c), and every signature is checked
 * with libsodium against the test's own key. Also: the tree and its heads
 * survive kill -9, and the key file is refused where others could read it.
 */
#include <criterion/criterion.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/gen.h"
#include "client/logcheck.h"
#include "storage/store_lmdb.h"
#include "defn/defn.h"
#include "tests/integration/harness.h"

#define KEY_SEED 11
#define H        32

static char *dir;
static char *defn_path;
static struct bal_defn *defn;
static struct th_daemon td;
static char data[600], key_path[700];
static uint8_t log_pk[32];

/* The records the daemon journaled, by position (1-based), as the test sent them. */
static uint8_t *rec[4096];
static size_t rec_len[4096];
static uint64_t nrec;

/* ---- naive RFC 6962 ------------------------------------------------------------ */

static void leaf_hash(uint64_t i, uint8_t out[H])
{
	crypto_hash_sha256_state st;
	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, (const uint8_t *)"\0", 1);
	crypto_hash_sha256_update(&st, rec[i + 1], rec_len[i + 1]);
	crypto_hash_sha256_final(&st, out);
}

static void node_hash(const uint8_t l[H], const uint8_t r[H], uint8_t out[H])
{
	uint8_t buf[1 + 2 * H];
	buf[0] = 1;
	memcpy(buf + 1, l, H);
	memcpy(buf + 1 + H, r, H);
	crypto_hash_sha256(out, buf, sizeof(buf));
}

static uint64_t split(uint64_t n) /* largest power of two < n, n >= 2 */
{
	uint64_t k = 1;
	while (k << 1 < n)
		k <<= 1;
	return k;
}

/* MTH(D[lo:hi]) */
static void mth(uint64_t lo, uint64_t hi, uint8_t out[H])
{
	if (hi - lo == 1) {
		leaf_hash(lo, out);
		return;
	}
	uint64_t k = split(hi - lo);
	uint8_t l[H], r[H];
	mth(lo, lo + k, l);
	mth(lo + k, hi, r);
	node_hash(l, r, out);
}

/* PATH(m, D[lo:hi]) appended to path[*n]. */
static void path(uint64_t m, uint64_t lo, uint64_t hi, uint8_t (*p)[H], unsigned *n)
{
	if (hi - lo <= 1)
		return;
	uint64_t k = split(hi - lo);
	if (m < k) {
		path(m, lo, lo + k, p, n);
		mth(lo + k, hi, p[(*n)++]);
	} else {
		path(m - k, lo + k, hi, p, n);
		mth(lo, lo + k, p[(*n)++]);
	}
}

/* SUBPROOF(m, D[lo:hi], b) appended to p[*n]. */
static void subproof(uint64_t m, uint64_t lo, uint64_t hi, bool b, uint8_t (*p)[H], unsigned *n)
{
	uint64_t len = hi - lo;
	if (m == len) {
		if (!b)
			mth(lo, hi, p[(*n)++]);
		return;
	}
	uint64_t k = split(len);
	if (m <= k) {
		subproof(m, lo, lo + k, b, p, n);
		mth(lo + k, hi, p[(*n)++]);
	} else {
		subproof(m - k, lo + k, hi, false, p, n);
		mth(lo, lo + k, p[(*n)++]);
	}
}

/* ---- JSON and hex ------------------------------------------------------------- */

static void unhex(const char *s, uint8_t *out, size_t n, const char *what)
{
	cr_assert(s && strlen(s) == 2 * n, "%s: not %zu hex bytes: %s", what, n, s ? s : "(null)");
	size_t got = 0;
	cr_assert_eq(sodium_hex2bin(out, n, s, 2 * n, NULL, &got, NULL), 0, "%s: bad hex", what);
	cr_assert_eq(got, n);
}

static uint64_t jint(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	cr_assert(json_is_integer(v), "field %s missing", k);
	return (uint64_t)json_integer_value(v);
}

static void jhex(json_t *o, const char *k, uint8_t *out, size_t n)
{
	unhex(json_string_value(json_object_get(o, k)), out, n, k);
}

/* A head's signature under the test's key (checked by the observers' code, client/logcheck.c). */
static bool head_verifies(uint64_t size, uint64_t ts, const uint8_t root[H], const uint8_t sig[64])
{
	struct bal_tree_head h = {.tree_size = size, .timestamp_ms = ts};
	memcpy(h.root, root, H);
	memcpy(h.signature, sig, 64);
	return bal_logcheck_head_verify(&h, defn->election_id, log_pk, NULL, 0) == 0;
}

/* The hex path array `a` equals p[0..n). */
static void expect_path(json_t *a, uint8_t (*p)[H], unsigned n, const char *what)
{
	cr_assert(json_is_array(a), "%s: no array", what);
	cr_assert_eq(json_array_size(a), n, "%s: %zu hashes, RFC 6962 gives %u", what, json_array_size(a), n);
	for (unsigned i = 0; i < n; i++) {
		uint8_t h[H];
		unhex(json_string_value(json_array_get(a, i)), h, H, what);
		cr_assert_eq(memcmp(h, p[i], H), 0, "%s: hash %u differs", what, i);
	}
}

/* The head object `o` is signed by the log key over the naive root of its size. */
static void expect_head(json_t *o, const char *what)
{
	uint64_t size = jint(o, "tree_size"), ts = jint(o, "timestamp_ms");
	uint8_t root[H], sig[64], want[H];
	jhex(o, "root_hash", root, H);
	jhex(o, "signature", sig, 64);
	cr_assert(size >= 1 && size <= nrec, "%s: tree_size %llu of %llu records", what, (unsigned long long)size,
	          (unsigned long long)nrec);
	mth(0, size, want);
	cr_assert_eq(memcmp(root, want, H), 0, "%s: root of size %llu differs from RFC 6962's", what,
	             (unsigned long long)size);
	cr_assert(head_verifies(size, ts, root, sig), "%s: signature does not verify", what);
}

/* The JSON ack's receipt proves `pos`. */
static void expect_receipt(json_t *ack, uint64_t pos)
{
	json_t *r = json_object_get(ack, "receipt");
	cr_assert(json_is_object(r), "ack without a receipt: %s", json_dumps(ack, 0));
	cr_assert_eq(jint(r, "leaf_index"), pos - 1);
	uint8_t lh[H], want[H];
	jhex(r, "leaf_hash", lh, H);
	leaf_hash(pos - 1, want);
	cr_assert_eq(memcmp(lh, want, H), 0, "leaf hash of position %llu", (unsigned long long)pos);
	expect_head(r, "receipt head");
	uint64_t size = jint(r, "tree_size");
	cr_assert_geq(size, pos);
	uint8_t p[64][H];
	unsigned n = 0;
	path(pos - 1, 0, size, p, &n);
	expect_path(json_object_get(r, "audit_path"), p, n, "receipt audit path");
}

/* ---- the daemon ------------------------------------------------------------------ */

static void write_key(const char *path, mode_t mode)
{
	uint8_t seed[32], sk[64];
	for (int i = 0; i < 32; i++)
		seed[i] = (uint8_t)(7 * i + 1);
	crypto_sign_seed_keypair(log_pk, sk, seed);
	char hex[65];
	sodium_bin2hex(hex, sizeof(hex), seed, sizeof(seed));
	FILE *f = fopen(path, "w");
	cr_assert(f);
	fprintf(f, "%s\n", hex);
	fclose(f);
	cr_assert_eq(chmod(path, mode), 0);
}

static void prepare(void)
{
	cr_assert_eq(sodium_init() < 0, 0);
	dir = th_tmpdir();
	cr_assert(dir);
	defn_path = th_write_defn(dir, 20, 3, 4, KEY_SEED, true);
	cr_assert(defn_path);
	char why[256];
	cr_assert_eq(bal_defn_load(defn_path, &defn, why, sizeof(why)), 0, "%s", why);
	snprintf(data, sizeof(data), "%s/data", dir);
	snprintf(key_path, sizeof(key_path), "%s/log.key", dir);
	nrec = 0;
}

static const char *key_args[3];

static void start(void)
{
	key_args[0] = "--log-key";
	key_args[1] = key_path;
	key_args[2] = NULL;
	cr_assert_eq(th_start(&td, defn_path, data, 0, key_args), 0);
}

static void setup(void)
{
	prepare();
	write_key(key_path, 0600);
	start();
}

static void teardown(void)
{
	if (td.pid > 0)
		cr_expect_eq(th_stop(&td), 0, "ballotd should exit 0 on SIGTERM");
	for (uint64_t i = 1; i <= nrec; i++)
		free(rec[i]);
	bal_defn_free(defn);
	free(defn_path);
	th_rmdir(dir);
	free(dir);
}

/* A signed BALLOTS batch of precinct index p at seq; malloc'd. */
static uint8_t *batch(uint32_t p, uint64_t seq, size_t *len)
{
	struct bal_gen_opts o = {.seed = seq * 31 + p, .key_seed = KEY_SEED, .batch_size = 5, .kind = BAL_KIND_BALLOTS};
	struct bal_gen *g = NULL;
	char why[256];
	cr_assert_eq(bal_gen_new(defn, &o, &g, why, sizeof(why)), 0, "%s", why);
	const uint8_t *body;
	cr_assert_eq(bal_gen_batch(g, p, seq, NULL, &body, len, why, sizeof(why)), 0, "%s", why);
	uint8_t *copy = malloc(*len);
	memcpy(copy, body, *len);
	bal_gen_free(g);
	return copy;
}

/* POSTs; the JSON ack (caller decrefs). */
static json_t *post(const uint8_t *body, size_t len, int *status)
{
	struct th_resp r;
	cr_assert_eq(th_post(td.port, body, len, &r), 0, "no answer to a POST");
	*status = r.status;
	json_error_t e;
	json_t *j = json_loadb(r.body, r.len, 0, &e);
	cr_assert(j, "ack is not JSON: %.200s", r.body ? r.body : "");
	th_resp_free(&r);
	return j;
}

/* POSTs a new batch, expects ACCEPTED at the next position, keeps its bytes. */
static json_t *post_new(uint32_t p, uint64_t seq)
{
	size_t len;
	uint8_t *b = batch(p, seq, &len);
	cr_assert_lt(nrec + 1, sizeof(rec) / sizeof(rec[0]));
	rec[nrec + 1] = b;
	rec_len[nrec + 1] = len;
	int st;
	json_t *ack = post(b, len, &st);
	cr_assert_eq(st, 200, "%s", json_dumps(ack, 0));
	cr_assert_str_eq(json_string_value(json_object_get(ack, "status")), "ACCEPTED");
	cr_assert_eq(jint(ack, "position"), nrec + 1);
	nrec++;
	return ack;
}

static json_t *get(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_t *get(const char *fmt, ...)
{
	char path[160];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(path, sizeof(path), fmt, ap);
	va_end(ap);
	json_t *j = th_get_json(td.port, path);
	cr_assert(j, "no JSON answer to GET %s", path);
	return j;
}

#define U(x) ((unsigned long long)(x))

/* ---- tests ------------------------------------------------------------------------ */

Test(log, receipts_heads_and_proofs_match_rfc6962, .init = setup, .fini = teardown)
{
	json_t *k = th_get_json(td.port, "/v1/log/key");
	cr_assert(k);
	uint8_t pk[32];
	jhex(k, "public_key", pk, 32);
	cr_assert_eq(memcmp(pk, log_pk, 32), 0, "the log key served is not the one given");
	cr_assert_str_eq(json_string_value(json_object_get(k, "election_id")), defn->election_id);
	json_decref(k);

	/* One batch at a time: every ack's group ends at its own position. */
	for (uint64_t i = 0; i < 70; i++) {
		json_t *ack = post_new((uint32_t)(i % defn->nprecincts), 1 + i / defn->nprecincts);
		expect_receipt(ack, nrec);
		cr_assert_eq(jint(json_object_get(ack, "receipt"), "tree_size"), nrec);
		json_decref(ack);
	}
	/* A resend: DUPLICATE, proven against the latest head. */
	int st;
	json_t *dup = post(rec[5], rec_len[5], &st);
	cr_assert_eq(st, 200);
	cr_assert_str_eq(json_string_value(json_object_get(dup, "status")), "DUPLICATE");
	expect_receipt(dup, 5);
	cr_assert_eq(jint(json_object_get(dup, "receipt"), "tree_size"), nrec);
	json_decref(dup);

	/* Heads of every size, the latest, and proofs for many (position, size) and (first, second). */
	json_t *sth = get("/v1/log/sth");
	cr_assert_eq(jint(sth, "tree_size"), nrec);
	expect_head(sth, "latest head");
	json_decref(sth);
	for (uint64_t n = 1; n <= nrec; n += 7) {
		json_t *h = get("/v1/log/sth?tree_size=%llu", U(n));
		cr_assert_eq(jint(h, "tree_size"), n);
		expect_head(h, "head by size");
		json_decref(h);
	}
	for (uint64_t n = 1; n <= nrec; n += 3) {
		for (uint64_t pos = 1; pos <= n; pos += 5) {
			json_t *pr = get("/v1/log/proof/inclusion?position=%llu&tree_size=%llu", U(pos), U(n));
			cr_assert_eq(jint(pr, "leaf_index"), pos - 1);
			uint8_t p[64][H];
			unsigned cnt = 0;
			path(pos - 1, 0, n, p, &cnt);
			expect_path(json_object_get(pr, "audit_path"), p, cnt, "inclusion proof");
			json_decref(pr);
		}
		for (uint64_t m = 1; m <= n; m += 4) {
			json_t *pr = get("/v1/log/proof/consistency?first=%llu&second=%llu", U(m), U(n));
			uint8_t p[64][H];
			unsigned cnt = 0;
			subproof(m, 0, n, true, p, &cnt);
			expect_path(json_object_get(pr, "consistency"), p, cnt, "consistency proof");
			json_decref(pr);
		}
	}
}

Test(log, bad_log_requests_are_400_or_404, .init = setup, .fini = teardown)
{
	json_decref(post_new(0, 1));
	json_decref(post_new(1, 1));
	static const struct {
		const char *path;
		int status;
	} cases[] = {
	        {"/v1/log/sth?tree_size=3", 404},
	        {"/v1/log/sth?tree_size=017", 400},
	        {"/v1/log/sth?tree_size=+1", 400},
	        {"/v1/log/sth?size=1", 400},
	        {"/v1/log/proof/inclusion?position=3&tree_size=2", 400},
	        {"/v1/log/proof/inclusion?position=0&tree_size=2", 400},
	        {"/v1/log/proof/inclusion?position=1", 400},
	        {"/v1/log/proof/consistency?first=2&second=1", 400},
	        {"/v1/log/proof/consistency?first=1&second=3", 400},
	        {"/v1/log/nothing", 404},
	        {"/v1/journal?from=01", 400},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct th_resp r;
		cr_assert_eq(th_request(td.port, "GET", cases[i].path, NULL, NULL, 0, &r), 0);
		cr_expect_eq(r.status, cases[i].status, "GET %s: %d %s", cases[i].path, r.status, r.body);
		th_resp_free(&r);
	}
}

/* kill -9 after acknowledged batches: the recovered tree's root, from the
 * latest head, equals RFC 6962's root of the journal, and the heads of the
 * acknowledged receipts are still served, unchanged. */
Test(log, tree_and_heads_survive_kill9, .init = setup, .fini = teardown)
{
	uint8_t roots[40][H];
	for (uint64_t i = 0; i < 40; i++) {
		json_t *ack = post_new((uint32_t)(i % defn->nprecincts), 1 + i / defn->nprecincts);
		jhex(json_object_get(ack, "receipt"), "root_hash", roots[i], H);
		json_decref(ack);
	}
	th_kill9(&td);
	start();
	json_t *sth = get("/v1/log/sth");
	cr_assert_eq(jint(sth, "tree_size"), nrec);
	expect_head(sth, "head after kill -9");
	json_decref(sth);
	for (uint64_t n = 1; n <= nrec; n++) {
		json_t *h = get("/v1/log/sth?tree_size=%llu", U(n));
		uint8_t root[H];
		jhex(h, "root_hash", root, H);
		cr_assert_eq(memcmp(root, roots[n - 1], H), 0, "head %llu changed across kill -9",
		             (unsigned long long)n);
		json_decref(h);
	}
	/* And the log goes on from there. */
	json_t *ack = post_new(3, 100);
	expect_receipt(ack, nrec);
	json_decref(ack);
}

/*
 * History rewritten offline: one byte of journal record 3 is changed in the
 * data directory, with its storage checksum made right again (what an
 * insider with the disk would do). The daemon starts and serves the edited
 * record; the station's receipt no longer matches what the log serves, the
 * root of the served journal is not the signed root, and `ballotctl audit
 * --server-key` fails saying so.
 */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	char *buf = calloc(1, 1 << 20);
	size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
	(void)n;
	fclose(f);
	return buf;
}

static void edit_record(uint64_t pos, size_t at)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	cr_assert_eq(mdb_env_create(&env), 0);
	cr_assert_eq(mdb_env_set_maxdbs(env, 16), 0);
	cr_assert_eq(mdb_env_open(env, data, 0, 0600), 0);
	cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
	cr_assert_eq(mdb_dbi_open(txn, BAL_STORE_DBI_JOURNAL, 0, &dbi), 0);
	uint8_t k[8];
	for (int i = 0; i < 8; i++)
		k[i] = (uint8_t)(pos >> (56 - 8 * i));
	MDB_val key = {8, k}, val;
	cr_assert_eq(mdb_get(txn, dbi, &key, &val), 0);
	struct bal__rec r;
	char why[200];
	cr_assert_eq(bal__rec_parse(&val, pos, BAL_JREC_MAGIC, "journal position", &r, why, sizeof(why)), 0, "%s", why);
	cr_assert_lt(at, r.len);
	uint8_t *copy = malloc(r.len);
	memcpy(copy, r.payload, r.len);
	copy[at] ^= 0x01;
	cr_assert_eq(bal__rec_put(txn, dbi, pos, 0, BAL_JREC_MAGIC, r.a, r.b, copy, r.len), 0);
	cr_assert_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	free(copy);
}

Test(log, an_edited_journal_byte_is_caught_by_the_proofs_and_the_audit, .init = setup, .fini = teardown)
{
	uint8_t leaf3[H];
	for (uint64_t i = 0; i < 12; i++) {
		json_t *ack = post_new((uint32_t)(i % defn->nprecincts), 1 + i / defn->nprecincts);
		if (nrec == 3)
			jhex(json_object_get(ack, "receipt"), "leaf_hash", leaf3, H);
		json_decref(ack);
	}
	cr_assert_eq(th_stop(&td), 0);
	edit_record(3, rec_len[3] - 1); /* the signature's last byte */
	start();

	size_t len;
	uint8_t *served = th_journal_record(td.port, 3, &len);
	cr_assert(served && len == rec_len[3]);
	cr_expect_neq(memcmp(served, rec[3], len), 0, "the daemon serves the edited record");
	/* The station's receipt names the leaf it sent, not the one served now. */
	uint8_t *orig = rec[3];
	rec[3] = served;
	uint8_t now3[H], root[H], signed_root[H];
	leaf_hash(2, now3);
	cr_expect_neq(memcmp(now3, leaf3, H), 0, "the served record's leaf is not the receipt's");
	/* An observer's root over the served journal is not the signed one. */
	mth(0, nrec, root);
	rec[3] = orig;
	free(served);
	json_t *sth = get("/v1/log/sth");
	jhex(sth, "root_hash", signed_root, H);
	json_decref(sth);
	cr_expect_neq(memcmp(root, signed_root, H), 0, "the served journal's root differs from the signed root");

	/* And the audit fails, naming the root. */
	char server[64], out[800], log[800], pub[65];
	snprintf(server, sizeof(server), "127.0.0.1:%u", td.port);
	snprintf(out, sizeof(out), "%s/audit.out", dir);
	snprintf(log, sizeof(log), "%s/audit.log", dir);
	sodium_bin2hex(pub, sizeof(pub), log_pk, sizeof(log_pk));
	const char *args[] = {"audit", "--server", server, "--definition", defn_path, "--server-key", pub, NULL};
	cr_expect_neq(th_ctl_run(out, log, args), 0, "audit must fail on a rewritten journal");
	char *text = slurp(out), *err = slurp(log);
	cr_expect((text && strstr(text, "is not the signed log's")) || (err && strstr(err, "is not the signed log's")),
	          "audit names the root: %s %s", text ? text : "", err ? err : "");
	free(text);
	free(err);
}

Test(log, key_file_readable_by_others_is_refused, .fini = teardown)
{
	prepare();
	write_key(key_path, 0644);
	const char *args[] = {"--log-key", key_path, NULL};
	cr_assert_neq(th_run_to_exit(&td, defn_path, data, args), 0, "a world-readable log key must be refused");
	char *log = th_read_log(&td);
	cr_expect(log && strstr(log, "chmod 600"), "the refusal says why: %s", log ? log : "");
	free(log);
	td.pid = 0;
}

Test(log, key_file_inside_the_data_directory_is_refused, .fini = teardown)
{
	prepare();
	cr_assert_eq(mkdir(data, 0700), 0);
	snprintf(key_path, sizeof(key_path), "%s/log.key", data);
	write_key(key_path, 0600);
	const char *args[] = {"--log-key", key_path, NULL};
	cr_assert_neq(th_run_to_exit(&td, defn_path, data, args), 0, "a log key in the data directory is refused");
	char *log = th_read_log(&td);
	cr_expect(log && strstr(log, "inside the data directory"), "the refusal says why: %s", log ? log : "");
	free(log);
	td.pid = 0;
}

Test(log, without_a_key_there_are_no_receipts_and_no_heads, .fini = teardown)
{
	prepare();
	cr_assert_eq(th_start(&td, defn_path, data, 0, NULL), 0);
	json_t *ack = post_new(0, 1);
	cr_assert(!json_object_get(ack, "receipt"), "no key, no receipt");
	json_decref(ack);
	struct th_resp r;
	cr_assert_eq(th_request(td.port, "GET", "/v1/log/sth", NULL, NULL, 0, &r), 0);
	cr_expect_eq(r.status, 404);
	th_resp_free(&r);
	char *log = th_read_log(&td);
	cr_expect(log && strstr(log, "no --log-key"), "the start log warns");
	free(log);
}
