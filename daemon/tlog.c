/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The transparency log's daemon side (see tlog.h): the log key, signing,
 * receipts and the /v1/log endpoints.
 */
#include "daemon/tlog.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/conn.h"
#include "daemon/daemon.h"
#include "daemon/log.h"
#include "daemon/query.h"
#include "daemon/text.h"
#include "daemon/worker.h"
#include "storage/storage.h"

#define U64(x) ((unsigned long long)(x))

/* The demo election's log key: the public demo seed, so anyone can sign
 * heads for it, like its precinct keys (never for a real election). */
#define DEMO_LOG_SEED "ballotd-demo-log-key"

/* ---- the key ---------------------------------------------------------------- */

static int hex_nibble(char c)
{
	return c >= '0' && c <= '9'   ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
	                              : -1;
}

/* 64 hex digits, then optionally one newline, then nothing. */
static int parse_seed(const char *text, size_t n, uint8_t seed[32])
{
	if (n == 65 && text[64] == '\n')
		n = 64;
	if (n != 64)
		return -1;
	for (size_t i = 0; i < 32; i++) {
		int hi = hex_nibble(text[2 * i]), lo = hex_nibble(text[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		seed[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

/* Whether `path` lies inside directory `dir` (both resolved). */
static bool inside(const char *path, const char *dir)
{
	char rp[PATH_MAX], rd[PATH_MAX];
	if (!realpath(path, rp) || !realpath(dir, rd))
		return false;
	size_t n = strlen(rd);
	return strncmp(rp, rd, n) == 0 && (rp[n] == '/' || rp[n] == '\0');
}

static int read_key_file(const struct bal_daemon *d, uint8_t seed[32])
{
	const char *path = d->cfg.log_key_path;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		bal_log(BAL_LOG_ERROR, "main", "--log-key %s: %s", path, strerror(errno));
		return -1;
	}
	struct stat st;
	char text[80];
	ssize_t n = -1;
	int rc = -1;
	if (fstat(fd, &st) != 0)
		bal_log(BAL_LOG_ERROR, "main", "--log-key %s: %s", path, strerror(errno));
	else if (!S_ISREG(st.st_mode))
		bal_log(BAL_LOG_ERROR, "main", "--log-key %s: not a regular file", path);
	else if (st.st_mode & 077)
		bal_log(BAL_LOG_ERROR, "main",
		        "--log-key %s: mode %03o lets others read the log's secret key (chmod 600 it)", path,
		        (unsigned)(st.st_mode & 0777));
	else if (inside(path, d->cfg.data_dir))
		bal_log(BAL_LOG_ERROR, "main",
		        "--log-key %s: inside the data directory %s; keep the secret key apart from the data it "
		        "vouches for",
		        path, d->cfg.data_dir);
	else if ((n = read(fd, text, sizeof(text))) < 0)
		bal_log(BAL_LOG_ERROR, "main", "--log-key %s: %s", path, strerror(errno));
	else if (parse_seed(text, (size_t)n, seed) != 0)
		bal_log(BAL_LOG_ERROR, "main",
		        "--log-key %s: not a log key (64 hex digits, as `ballotctl keygen` writes)", path);
	else
		rc = 0;
	sodium_memzero(text, sizeof(text));
	close(fd);
	return rc;
}

static void hex(char *out, const uint8_t *p, size_t n)
{
	sodium_bin2hex(out, 2 * n + 1, p, n);
}

int bal_tlog_load_key(struct bal_daemon *d)
{
	struct bal_tlog_key *k = &d->log_key;
	uint8_t seed[32];
	memset(k, 0, sizeof(*k));
	if (d->cfg.log_key_path) {
		if (read_key_file(d, seed) != 0)
			return -1;
	} else if (d->cfg.demo) {
		crypto_hash_sha256(seed, (const uint8_t *)DEMO_LOG_SEED, sizeof(DEMO_LOG_SEED) - 1);
	} else {
		bal_log(BAL_LOG_WARN, "main",
		        "no --log-key: tree heads are not signed and acknowledgements carry no receipt, so "
		        "`ballotctl upload` keeps every file");
		return 0;
	}
	crypto_sign_seed_keypair(k->pk, k->sk, seed);
	sodium_memzero(seed, sizeof(seed));
	k->present = true;
	char pk[65];
	hex(pk, k->pk, sizeof(k->pk));
	if (d->cfg.log_key_path)
		bal_log(BAL_LOG_INFO, "main", "log key %s", pk);
	else
		bal_log(BAL_LOG_WARN, "main", "log key %s: the demo election's, derived from a public seed", pk);
	return 0;
}

/* ---- heads ------------------------------------------------------------------ */

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

/* The signed message of head `h` of election `id` into `msg`; its length. */
static size_t head_message(const char *id, const struct bal_tree_head *h, uint8_t *msg)
{
	size_t n = 0, idlen = strlen(id);
	memcpy(msg, BAL_STH_LABEL, sizeof(BAL_STH_LABEL)); /* with its NUL: the 0x00 after the label */
	n += sizeof(BAL_STH_LABEL);
	memcpy(msg + n, id, idlen + 1);
	n += idlen + 1;
	put_be64(msg + n, h->tree_size);
	put_be64(msg + n + 8, h->timestamp_ms);
	n += 16;
	memcpy(msg + n, h->root, BAL_HASH_BYTES);
	return n + BAL_HASH_BYTES;
}

void bal_tlog_sign(const struct bal_daemon *d, struct bal_tree_head *h)
{
	const char *id = d->defn->election_id;
	uint8_t stackbuf[256];
	size_t need = BAL_STH_MESSAGE_BYTES(strlen(id));
	uint8_t *msg = need <= sizeof(stackbuf) ? stackbuf : malloc(need);
	bal_require(msg); /* an election id longer than 150 bytes, and no memory for it */
	size_t n = head_message(id, h, msg);
	bal_require(n == need);
	crypto_sign_detached(h->signature, NULL, msg, n, d->log_key.sk);
	if (msg != stackbuf)
		free(msg);
}

/* ---- JSON ------------------------------------------------------------------- */

static void json_hex(struct bal_text *b, const char *name, const uint8_t *p, size_t n)
{
	char h[2 * 64 + 1];
	bal_require(n <= 64);
	hex(h, p, n);
	bal_text_printf(b, "\"%s\":\"%s\"", name, h);
}

static void head_fields(struct bal_text *b, const struct bal_tree_head *h)
{
	bal_text_printf(b, "\"tree_size\":%llu,\"timestamp_ms\":%llu,", U64(h->tree_size), U64(h->timestamp_ms));
	json_hex(b, "root_hash", h->root, BAL_HASH_BYTES);
	bal_text_printf(b, ",");
	json_hex(b, "signature", h->signature, sizeof(h->signature));
}

static void path_json(struct bal_text *b, const char *name, const uint8_t (*path)[BAL_HASH_BYTES], unsigned n)
{
	char h[2 * BAL_HASH_BYTES + 1];
	bal_text_printf(b, "\"%s\":[", name);
	for (unsigned i = 0; i < n; i++) {
		hex(h, path[i], BAL_HASH_BYTES);
		bal_text_printf(b, "%s\"%s\"", i ? "," : "", h);
	}
	bal_text_printf(b, "]");
}

void bal_tlog_receipt_json(struct bal_text *b, const struct bal_receipt *r)
{
	bal_text_printf(b, "\"receipt\":{\"leaf_index\":%llu,", U64(r->leaf_index));
	json_hex(b, "leaf_hash", r->leaf_hash, BAL_HASH_BYTES);
	bal_text_printf(b, ",");
	head_fields(b, &r->head);
	bal_text_printf(b, ",");
	path_json(b, "audit_path", (const uint8_t(*)[BAL_HASH_BYTES])r->path, r->npath);
	bal_text_printf(b, "}");
}

int bal_tlog_receipt_for(struct bal_daemon *d, uint64_t position, struct bal_receipt *r)
{
	if (!d->log_key.present)
		return -ENOENT;
	int err = bal_store_head(d->store, 0, &r->head);
	if (!err && r->head.tree_size < position)
		err = -ENOENT; /* cannot happen: the head of its group was committed with it */
	if (!err)
		err = bal_store_tree_path(d->store, position, r->head.tree_size, r);
	return err;
}

/* ---- endpoints -------------------------------------------------------------- */

/* The query's value of `name` as a canonical decimal in [lo, hi]: 1, 0 if
 * absent, -1 after answering 400 (malformed, unknown parameter). */
static int param(struct bal_req *req, const char *query, const char *const *names, const char *name, uint64_t lo,
                 uint64_t hi, uint64_t *out)
{
	char buf[512];
	snprintf(buf, sizeof(buf), "%s", query);
	char *save = NULL;
	int found = 0;
	for (char *kv = strtok_r(buf, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
		char *val = strchr(kv, '=');
		if (val)
			*val++ = '\0';
		bool known = false;
		for (const char *const *n = names; *n; n++)
			known |= strcmp(kv, *n) == 0;
		if (!known) {
			bal_query_error(req, 400, "unknown parameter '%.40s'", kv);
			return -1;
		}
		if (strcmp(kv, name) != 0)
			continue;
		uint64_t v;
		if (!val || bal_query_number(val, hi, &v) != 0 || v < lo) {
			bal_query_error(req, 400, "%s '%.40s' is not a number in [%llu, %llu]", name, val ? val : "",
			                U64(lo), U64(hi));
			return -1;
		}
		*out = v;
		found = 1;
	}
	return found;
}

static void send_json(struct bal_req *req, struct bal_text *b)
{
	bal_text_printf(b, "\n");
	bal_query_text(req, 200, b);
}

static void storage_error(struct bal_req *req, int err, const char *what)
{
	if (err == -ENOENT)
		bal_query_error(req, 404, "%s", what);
	else
		bal_query_error(req, 503, "reading the log failed: %s", bal_strerror(err));
}

static void get_key(struct bal_req *req, struct bal_daemon *d)
{
	struct bal_text b = {0};
	bal_text_printf(&b, "{");
	json_hex(&b, "public_key", d->log_key.pk, sizeof(d->log_key.pk));
	bal_text_printf(&b, ",\"election_id\":");
	bal_text_json(&b, d->defn->election_id);
	bal_text_printf(&b, "}");
	send_json(req, &b);
}

static void get_sth(struct bal_req *req, struct bal_daemon *d, const char *query)
{
	static const char *const names[] = {"tree_size", NULL};
	uint64_t size = 0;
	int got = param(req, query, names, "tree_size", 1, UINT64_MAX, &size);
	if (got < 0)
		return;
	struct bal_tree_head h;
	int err = bal_store_head(d->store, got ? size : 0, &h);
	if (err) {
		char what[96] = "no tree head yet (the journal is empty)";
		if (got)
			snprintf(what, sizeof(what), "no tree head of size %llu (no commit group ended there)",
			         U64(size));
		storage_error(req, err, what);
		return;
	}
	struct bal_text b = {0};
	bal_text_printf(&b, "{");
	head_fields(&b, &h);
	bal_text_printf(&b, "}");
	send_json(req, &b);
}

/*
 * The two parameters `names[0]` <= `names[1]` of a proof, both required, the
 * second at most the log's size: true, or false after answering 400.
 */
static bool proof_params(struct bal_req *req, struct bal_daemon *d, const char *query, const char *const names[3],
                         uint64_t *lo, uint64_t *hi)
{
	uint64_t committed = bal_store_position(d->store);
	int a = param(req, query, names, names[0], 1, UINT64_MAX, lo);
	int b = a < 0 ? -1 : param(req, query, names, names[1], 1, UINT64_MAX, hi);
	if (a < 0 || b < 0)
		return false;
	if (!a || !b) {
		bal_query_error(req, 400, "%s and %s are both required", names[0], names[1]);
		return false;
	}
	if (*hi > committed || *lo > *hi) {
		bal_query_error(req, 400, "need 1 <= %s (%llu) <= %s (%llu) <= %llu (the log's size)", names[0],
		                U64(*lo), names[1], U64(*hi), U64(committed));
		return false;
	}
	return true;
}

static void get_inclusion(struct bal_req *req, struct bal_daemon *d, const char *query)
{
	static const char *const names[] = {"position", "tree_size", NULL};
	uint64_t pos = 0, size = 0;
	if (!proof_params(req, d, query, names, &pos, &size))
		return;
	static _Thread_local struct bal_receipt r;
	int err = bal_store_tree_path(d->store, pos, size, &r);
	if (err) {
		storage_error(req, err, "no such leaf");
		return;
	}
	struct bal_text t = {0};
	bal_text_printf(&t, "{\"leaf_index\":%llu,\"tree_size\":%llu,", U64(pos - 1), U64(size));
	path_json(&t, "audit_path", (const uint8_t(*)[BAL_HASH_BYTES])r.path, r.npath);
	bal_text_printf(&t, "}");
	send_json(req, &t);
}

static void get_consistency(struct bal_req *req, struct bal_daemon *d, const char *query)
{
	static const char *const names[] = {"first", "second", NULL};
	uint64_t first = 0, second = 0;
	if (!proof_params(req, d, query, names, &first, &second))
		return;
	uint8_t path[BAL_TREE_MAX_PATH][BAL_HASH_BYTES];
	unsigned n = 0;
	int err = bal_store_tree_consistency(d->store, first, second, path, &n);
	if (err) {
		storage_error(req, err, "no such tree");
		return;
	}
	struct bal_text t = {0};
	bal_text_printf(&t, "{\"first\":%llu,\"second\":%llu,", U64(first), U64(second));
	path_json(&t, "consistency", (const uint8_t(*)[BAL_HASH_BYTES])path, n);
	bal_text_printf(&t, "}");
	send_json(req, &t);
}

void bal_tlog_request(struct bal_req *req, const char *rest, const char *query)
{
	struct bal_daemon *d = req->conn->w->d;
	if (!d->log_key.present) {
		bal_query_error(req, 404, "this ballotd runs without --log-key: it signs no tree heads");
		return;
	}
	if (strcmp(rest, "key") == 0)
		get_key(req, d);
	else if (strcmp(rest, "sth") == 0)
		get_sth(req, d, query);
	else if (strcmp(rest, "proof/inclusion") == 0)
		get_inclusion(req, d, query);
	else if (strcmp(rest, "proof/consistency") == 0)
		get_consistency(req, d, query);
	else
		bal_query_error(req, 404,
		                "no such endpoint: /v1/log/%.80s (key, sth, proof/inclusion, "
		                "proof/consistency)",
		                rest);
}
