/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The client of ballotd's transparency log API (GET /v1/log/...), shared by
 * verify-receipt, monitor and audit: each answer is parsed strictly and every
 * head or proof is checked with client/logcheck.h, never taken on the
 * server's word. Blocking one-shot requests (client/http.h).
 */
#include "ballotctl/ballotctl.h"

#include "client/http.h"
#include "client/logcheck.h"
#include "core/reason.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Answers of the log API are small: a head, or a proof of at most 64 hashes. */
#define MAX_ANSWER (64u << 10)

/* GET path as JSON: 0 with *out (caller decrefs); -ENOENT for 404; -EPROTO. */
static int get_json(const char *server, const char *path, int timeout_ms, json_t **out, char *why, size_t whylen)
{
	struct bal_http_resp r;
	int rc = bal_http_request(server, "GET", path, NULL, 0, NULL, timeout_ms, MAX_ANSWER, &r, why, whylen);
	if (rc < 0)
		return rc;
	if (r.status != 200) {
		char text[201];
		size_t n = 0;
		for (const char *c = r.body; *c && n < sizeof(text) - 1; c++)
			text[n++] = (unsigned char)*c < 0x20 ? ' ' : *c;
		while (n && text[n - 1] == ' ')
			n--;
		text[n] = '\0';
		snprintf(why, whylen, "GET %s from %s: HTTP %d: %s", path, server, r.status, text);
		bal_http_resp_deinit(&r);
		return r.status == 404 ? -ENOENT : -EPROTO;
	}
	json_error_t err;
	*out = json_loadb(r.body, r.len, 0, &err);
	bal_http_resp_deinit(&r);
	if (!json_is_object(*out)) {
		snprintf(why, whylen, "GET %s from %s: not a JSON object (%s)", path, server, err.text);
		json_decref(*out);
		*out = NULL;
		return -EPROTO;
	}
	return 0;
}

int log_fetch_election(const char *server, struct log_trust *t, int timeout_ms, char *why, size_t whylen)
{
	json_t *o;
	int rc = get_json(server, "/v1/log/key", timeout_ms, &o, why, whylen);
	if (rc < 0)
		return rc;
	const char *pk = json_string_value(json_object_get(o, "public_key"));
	const char *id = json_string_value(json_object_get(o, "election_id"));
	uint8_t key[32];
	if (!pk || !id || bal_logcheck_unhex(pk, key, sizeof(key)) < 0 || strlen(id) >= sizeof(t->election_id)) {
		snprintf(why, whylen,
		         "GET /v1/log/key from %s: no \"public_key\" of 64 hex digits or no \"election_id\"", server);
		rc = -EPROTO;
	} else if (memcmp(key, t->key, sizeof(key)) != 0) {
		snprintf(why, whylen,
		         "GET /v1/log/key from %s: the server's log key %.16s... is not the pinned %.16s...", server,
		         pk, t->key_hex);
		rc = BAL_EAUTH;
	} else {
		snprintf(t->election_id, sizeof(t->election_id), "%s", id);
	}
	json_decref(o);
	return rc;
}

int log_fetch_head(const char *server, uint64_t tree_size, int timeout_ms, struct bal_tree_head *h, char *why,
                   size_t whylen)
{
	char path[96];
	if (tree_size)
		snprintf(path, sizeof(path), "/v1/log/sth?tree_size=%" PRIu64, tree_size);
	else
		snprintf(path, sizeof(path), "/v1/log/sth");
	json_t *o;
	int rc = get_json(server, path, timeout_ms, &o, why, whylen);
	if (rc < 0)
		return rc;
	char e[256];
	rc = bal_logcheck_head_from_json(o, h, e, sizeof(e));
	json_decref(o);
	if (rc < 0) {
		snprintf(why, whylen, "GET %s from %s: %s", path, server, e);
		return -EPROTO;
	}
	if (tree_size && h->tree_size != tree_size) {
		snprintf(why, whylen, "GET %s from %s: a head of size %" PRIu64 " instead", path, server, h->tree_size);
		return -EPROTO;
	}
	return 0;
}

int log_fetch_signed_head(const char *server, const struct log_trust *t, uint64_t tree_size, int timeout_ms,
                          struct bal_tree_head *h, char *why, size_t whylen)
{
	int rc = log_fetch_head(server, tree_size, timeout_ms, h, why, whylen);
	if (rc < 0)
		return rc;
	char e[400];
	rc = bal_logcheck_head_verify(h, t->election_id, t->key, e, sizeof(e));
	if (rc < 0)
		snprintf(why, whylen, "head from %s: %s", server, e);
	return rc;
}

int log_check_consistent(const char *server, const struct bal_tree_head *older, const struct bal_tree_head *newer,
                         int timeout_ms, char *why, size_t whylen)
{
	char a[65], b[65];
	if (newer->tree_size < older->tree_size) {
		bal_logcheck_hex(newer->root, sizeof(newer->root), a);
		return bal_fail(why, whylen, BAL_ECORRUPT,
		                "rollback: a head of size %" PRIu64 " (root %.16s...) after one of size %" PRIu64,
		                newer->tree_size, a, older->tree_size);
	}
	if (newer->tree_size == older->tree_size) {
		if (memcmp(newer->root, older->root, sizeof(older->root)) == 0)
			return 0;
		bal_logcheck_hex(older->root, sizeof(older->root), a);
		bal_logcheck_hex(newer->root, sizeof(newer->root), b);
		return bal_fail(why, whylen, BAL_ECORRUPT, "two roots for tree size %" PRIu64 ": %.16s... and %.16s...",
		                older->tree_size, a, b);
	}
	if (older->tree_size == 0)
		return 0; /* the empty tree is a prefix of every tree */
	char path[128];
	snprintf(path, sizeof(path), "/v1/log/proof/consistency?first=%" PRIu64 "&second=%" PRIu64, older->tree_size,
	         newer->tree_size);
	json_t *o;
	int rc = get_json(server, path, timeout_ms, &o, why, whylen);
	if (rc < 0)
		return rc;
	uint8_t proof[BAL_TREE_MAX_PATH][BAL_HASH_BYTES];
	unsigned n = 0;
	char e[300];
	json_t *first = json_object_get(o, "first"), *second = json_object_get(o, "second");
	if (!json_is_integer(first) || (uint64_t)json_integer_value(first) != older->tree_size ||
	    !json_is_integer(second) || (uint64_t)json_integer_value(second) != newer->tree_size) {
		snprintf(why, whylen, "GET %s from %s: \"first\" and \"second\" are not the sizes asked for", path,
		         server);
		rc = -EPROTO;
	} else if (bal_logcheck_path_from_json(o, "consistency", proof, &n, e, sizeof(e)) < 0) {
		snprintf(why, whylen, "GET %s from %s: %s", path, server, e);
		rc = -EPROTO;
	}
	json_decref(o);
	if (rc < 0)
		return rc;
	rc = bal_logcheck_consistency_verify(older->tree_size, newer->tree_size, older->root, newer->root,
	                                     (const uint8_t(*)[BAL_HASH_BYTES])proof, n, e, sizeof(e));
	if (rc < 0)
		return bal_fail(why, whylen, rc == -EINVAL ? -EPROTO : rc, "%s (proof from %s)", e, server);
	return 0;
}

const char *log_time(uint64_t ms, char buf[32])
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	size_t n = gmtime_r(&s, &tm) ? strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm) : 0;
	if (n == 0 || n > 26)
		snprintf(buf, 32, "%" PRIu64 " ms", ms);
	else
		snprintf(buf + n, 32 - n, ".%03uZ", (unsigned)(ms % 1000));
	return buf;
}
