/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ballotctl audit: the observer's check of docs/design.md invariant 8. Reads the
 * daemon's snapshot (its journal position P), exports journal positions 1..P
 * through GET /v1/journal page by page, re-verifies every precinct's Ed25519
 * signature against the definition's public keys, checks that no (precinct,
 * seq) key is journaled twice, folds every record with the independent fold
 * of client/expect.h (not the daemon's tally code; it also checks that the
 * batch names the definition's election) and compares the result
 * with that snapshot, field by field. The snapshot folds exactly 1..P
 * (invariant 3), so batches journaled while the audit runs do not disturb it.
 *
 * It also recomputes the transparency log's Merkle root over the exact bytes
 * of records 1..P (client/logcheck.h, not the daemon's tree code) and ties it
 * to a signed tree head: the head of size P when a commit group ended there
 * (the usual case: the snapshot moves a whole commit group at a time), else
 * the latest head and a consistency proof from the recomputed root of size P
 * to it. So the journal the audit folded is the log the daemon signs, which
 * every receipt and monitor checks against.
 *
 * Amendments are records of the journal like batches (docs/design.md,
 * "Amendments"): each must carry the signature of the definition's
 * commission_key, and the audit applies them in journal order with its own
 * state: a batch journaled after an amendment revoked or replaced its
 * precinct's key must verify under the key of its position, none after a
 * freeze; a void takes its batch back out of the fold (the batch's bytes
 * are fetched again and must hash to the leaf read the first time); the
 * latest certification must be the snapshot's "certified".
 */
#include "ballotctl/ballotctl.h"

#include "proto/codec.h"
#include "defn/defn.h"
#include "client/expect.h"
#include "client/http.h"
#include "client/logcheck.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
        "usage: ballotctl audit --server HOST:PORT [--definition FILE] [--server-key HEX|FILE]\n"
        "                       [--batch N] [--json] [--timeout SECONDS]\n"
        "\n"
        "Reads GET /v1/snapshot (journal position P), then the journal records 1..P via\n"
        "GET /v1/journal, N records per request (default 10000, at most 100000). For every\n"
        "record: decodes it (only its canonical encoding decodes), verifies its Ed25519\n"
        "signature with the precinct's public key from the definition (a precinct without\n"
        "a key must have an empty signature), checks that its (precinct, seq) appears once,\n"
        "and folds it with an accumulator that shares no code with the daemon's tally,\n"
        "which refuses a batch signed for another election id than the definition's (a\n"
        "fold failure naming both). Then compares the recomputed totals\n"
        "with that first snapshot: batches, precincts reporting, with protocol, with\n"
        "discrepancy, turnout, and every contest's votes nationally and per district.\n"
        "Batches journaled after P (ingestion may go on) are not part of the audit.\n"
        "\n"
        "Amendments (journal records of the commission, docs/design.md) are applied in journal\n"
        "order: each must verify under the definition's commission_key; a batch journaled after\n"
        "its precinct's key was revoked or replaced must verify under the key of its position, and\n"
        "none may follow a freeze of its precinct; a void takes its batch back out of the fold\n"
        "(fetched again, it must hash to the leaf read the first time); the latest certification\n"
        "must be the snapshot's \"certified\".\n"
        "\n"
        "The log: recomputes the Merkle root (RFC 6962) over the exact bytes of records\n"
        "1..P and checks it against the signed tree head of size P (GET\n"
        "/v1/log/sth?tree_size=P). When no commit group ended exactly at P (404), it takes\n"
        "the latest head instead (size N >= P) and checks the consistency proof (GET\n"
        "/v1/log/proof/consistency?first=P&second=N) from the recomputed root to that\n"
        "head's root: records 1..P are then a prefix of the signed log. With --server-key\n"
        "the head's Ed25519 signature is verified for the definition's election id, and a\n"
        "daemon that signs no heads fails the audit. Without it the signature is not\n"
        "checked (a warning says so) and a daemon without heads (404) is only a warning.\n"
        "\n"
        "  --server HOST:PORT    ballotd address (required; http://HOST:PORT/ works too)\n"
        "  --definition FILE     the published election definition (default data/kz2023.json)\n"
        "  --server-key HEX|FILE the log's public key: 64 hex digits or a file holding them\n"
        "  --batch N             journal records per request (default 10000)\n"
        "  --json                one JSON object on stdout:\n"
        "                        {\"server\", \"definition\", \"definition_matches\": BOOL, \"position\": P,\n"
        "                         \"records\": N, \"amendments\": N, \"signatures_verified\": N (batches and\n"
        "                         amendments), \"unsigned\": N (precincts\n"
        "                         without a key, empty signature), \"signature_failures\": N,\n"
        "                         \"decode_failures\": N, \"fold_failures\": N, \"duplicate_keys\": N,\n"
        "                         \"problems\": [{\"position\", \"precinct_id\", \"seq\", \"problem\"}] (at most 50),\n"
        "                         \"mismatch_count\": N,\n"
        "                         \"mismatches\": [{\"what\", \"recomputed\", \"snapshot\"}] (at most 50),\n"
        "                         \"log\": {\"checked\": BOOL, \"root_hash\": HEX (recomputed over 1..P),\n"
        "                                 \"head_size\": N, \"consistency\": BOOL (checked through a\n"
        "                                 proof), \"signature\": \"verified\"|\"not checked\"|\"failed\",\n"
        "                                 \"ok\": BOOL, \"error\": STR|null},\n"
        "                         \"requests\": N (snapshot and journal), \"ok\": BOOL}\n"
        "  --timeout SECONDS     per request (default 30)\n"
        "\n"
        "Exit status 0 iff every record decodes, verifies and is folded, no key repeats,\n"
        "every recomputed total equals the snapshot's and the recomputed root is the signed\n"
        "log's; 1 otherwise; 2 bad command line.\n";

#define LIST_MAX    50
#define RECORD_HEAD 12 /* u64 position + u32 length, big-endian */

/* What the log check found. `ok` holds when the log is checked and matches,
 * or (without --server-key) when the daemon publishes no head at all. */
struct log_result {
	bool checked, consistency, ok;
	const char *signature; /* "verified", "not checked", "failed" */
	uint64_t head_size;
	uint8_t root[BAL_HASH_BYTES];
	char error[700];
};

/* Who signs a precinct's batches at the position being audited. */
struct pkey {
	enum { KEY_NONE, KEY_SET, KEY_REVOKED } state;
	uint64_t at; /* the amendment that made it so; 0: the definition */
	uint8_t key[32];
};

struct audit {
	const char *server;
	int timeout_ms;
	uint8_t (*leaves)[BAL_HASH_BYTES]; /* leaf hash of records 1..P, at [position - 1] */
	struct pkey *pkeys;                /* per precinct */
	uint64_t *frozen;                  /* per precinct: the freezing amendment's position, 0 none */
	uint64_t *voided;                  /* positions voided so far, nvoided of them */
	size_t nvoided;
	uint64_t amendments;
	bool certified;
	uint64_t cert_position, cert_at;
	char cert_reason[BAL_REASON_MAX + 1];
	struct bal_logcheck_tree tree; /* leaves 1..next-1 */
	struct log_result log;
	const struct bal_defn *d;
	struct bal_expect *e;
	struct bal_arena arena;
	uint64_t position; /* P: the snapshot's */
	uint64_t next;     /* next journal position expected */
	uint64_t records, verified, unsigned_ok, sig_failures, decode_failures, fold_failures, duplicate_keys;
	uint64_t requests, mismatch_count;
	uint64_t (*keys)[2]; /* (precinct_id, seq) per folded record */
	size_t nkeys;
	json_t *problems, *mismatches;
};

static void problem(struct audit *a, uint64_t position, uint32_t precinct, uint64_t seq, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));
static void problem(struct audit *a, uint64_t position, uint32_t precinct, uint64_t seq, const char *fmt, ...)
{
	if (json_array_size(a->problems) >= LIST_MAX)
		return;
	char why[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	json_array_append_new(a->problems, json_pack("{sI sI sI ss}", "position", (json_int_t)position, "precinct_id",
	                                             (json_int_t)precinct, "seq", (json_int_t)seq, "problem", why));
}

static void check_amendment(struct audit *a, uint64_t position, const uint8_t *bytes, size_t len);

/* Decodes, verifies and folds the record at `position`. */
static void check_record(struct audit *a, uint64_t position, const uint8_t *bytes, size_t len)
{
	struct bal_batch b;
	char why[256];
	a->records++;
	if (bal_codec_is_amendment(bytes, len)) {
		check_amendment(a, position, bytes, len);
		return;
	}
	bal_arena_reset(&a->arena);
	if (bal_codec_decode(bytes, len, &a->arena, &b, why, sizeof(why)) != 0) {
		a->decode_failures++;
		problem(a, position, 0, 0, "does not decode: %s", why);
		return;
	}
	int32_t p = bal_defn_precinct(a->d, b.precinct_id);
	const struct pkey *k = p >= 0 ? &a->pkeys[p] : NULL;
	if (p < 0) {
		a->sig_failures++;
		problem(a, position, b.precinct_id, b.seq, "precinct %" PRIu32 " is not in the definition",
		        b.precinct_id);
	} else if (k->state == KEY_REVOKED) {
		a->sig_failures++;
		problem(a, position, b.precinct_id, b.seq,
		        "journaled after the amendment at position %" PRIu64 " revoked the precinct's key", k->at);
	} else if (k->state == KEY_NONE) {
		if (b.signature_len == 0) {
			a->unsigned_ok++;
		} else {
			a->sig_failures++;
			problem(a, position, b.precinct_id, b.seq,
			        "signature of %zu bytes, but the precinct has no public key (must be empty)",
			        b.signature_len);
		}
	} else if (b.signature_len != crypto_sign_BYTES ||
	           crypto_sign_verify_detached(b.signature, b.signed_bytes, b.signed_len, k->key) != 0) {
		a->sig_failures++;
		if (k->at)
			problem(a, position, b.precinct_id, b.seq,
			        "Ed25519 signature (%zu bytes) does not verify with the precinct's public key set by "
			        "the "
			        "amendment at position %" PRIu64,
			        b.signature_len, k->at);
		else
			problem(a, position, b.precinct_id, b.seq,
			        "Ed25519 signature (%zu bytes) does not verify with the "
			        "precinct's public key",
			        b.signature_len);
	} else {
		a->verified++;
	}
	if (p >= 0 && a->frozen[p]) {
		a->fold_failures++;
		problem(a, position, b.precinct_id, b.seq,
		        "journaled after the amendment at position %" PRIu64 " froze the precinct", a->frozen[p]);
	}
	a->keys[a->nkeys][0] = b.precinct_id;
	a->keys[a->nkeys][1] = b.seq;
	a->nkeys++;
	if (bal_expect_fold(a->e, &b, why, sizeof(why)) != 0) {
		a->fold_failures++;
		problem(a, position, b.precinct_id, b.seq, "cannot be folded: %s", why);
	}
}

static int fetch(struct audit *a, const char *path, int timeout_ms, struct bal_http_resp *r);

/*
 * The batch journaled at `x`, fetched again (GET /v1/journal?from=x&limit=1)
 * into *b (from a->arena): its bytes must hash to the leaf read in the first
 * pass. 0, or -1 after recording the problem. *body must be freed.
 */
static int refetch_batch(struct audit *a, uint64_t at, uint64_t x, struct bal_batch *b, struct bal_http_resp *body)
{
	char path[96], why[256];
	snprintf(path, sizeof(path), "/v1/journal?from=%" PRIu64 "&limit=1", x);
	if (fetch(a, path, a->timeout_ms, body) < 0) {
		a->fold_failures++;
		problem(a, at, BAL_COMMISSION_ID, 0, "the voided position %" PRIu64 " cannot be fetched again", x);
		return -1;
	}
	const uint8_t *p = (const uint8_t *)body->body;
	uint64_t pos = 0;
	uint32_t len = 0;
	for (int i = 0; body->len >= RECORD_HEAD && i < 8; i++)
		pos = pos << 8 | p[i];
	for (int i = 0; body->len >= RECORD_HEAD && i < 4; i++)
		len = len << 8 | p[8 + i];
	uint8_t leaf[BAL_HASH_BYTES];
	if (body->len < RECORD_HEAD || pos != x || len != body->len - RECORD_HEAD) {
		a->fold_failures++;
		problem(a, at, BAL_COMMISSION_ID, 0, "GET %s does not answer with record %" PRIu64, path, x);
		return -1;
	}
	bal_logcheck_leaf_hash(p + RECORD_HEAD, len, leaf);
	if (memcmp(leaf, a->leaves[x - 1], sizeof(leaf)) != 0) {
		a->fold_failures++;
		problem(a, at, BAL_COMMISSION_ID, 0,
		        "record %" PRIu64 " fetched again is not the record the journal held in the first pass", x);
		return -1;
	}
	if (bal_codec_is_amendment(p + RECORD_HEAD, len)) {
		a->fold_failures++;
		problem(a, at, BAL_COMMISSION_ID, 0, "void of position %" PRIu64 ", which holds an amendment", x);
		return -1;
	}
	bal_arena_reset(&a->arena);
	if (bal_codec_decode(p + RECORD_HEAD, len, &a->arena, b, why, sizeof(why)) != 0) {
		a->fold_failures++;
		problem(a, at, BAL_COMMISSION_ID, 0, "the voided record %" PRIu64 " does not decode: %s", x, why);
		return -1;
	}
	return 0;
}

/* A void at `position` of the batch journaled at `x`. */
static void apply_void(struct audit *a, uint64_t position, uint64_t x)
{
	if (x == 0 || x >= position) {
		a->fold_failures++;
		problem(a, position, BAL_COMMISSION_ID, 0, "void of position %" PRIu64 ", not journaled before it", x);
		return;
	}
	for (size_t i = 0; i < a->nvoided; i++)
		if (a->voided[i] == x) {
			a->fold_failures++;
			problem(a, position, BAL_COMMISSION_ID, 0, "void of position %" PRIu64 ", voided already", x);
			return;
		}
	uint64_t *v = realloc(a->voided, (a->nvoided + 1) * sizeof(*v));
	if (!v) {
		a->fold_failures++;
		problem(a, position, BAL_COMMISSION_ID, 0, "out of memory");
		return;
	}
	a->voided = v;
	struct bal_batch b;
	struct bal_http_resp r = {0};
	char why[256];
	if (refetch_batch(a, position, x, &b, &r) == 0) {
		if (bal_expect_void(a->e, &b, why, sizeof(why)) != 0) {
			a->fold_failures++;
			problem(a, position, b.precinct_id, b.seq, "void of position %" PRIu64 ": %s", x, why);
		} else {
			a->voided[a->nvoided++] = x;
		}
	}
	bal_http_resp_deinit(&r);
}

/* Verifies the amendment at `position` and applies it to the audit's state. */
static void check_amendment(struct audit *a, uint64_t position, const uint8_t *bytes, size_t len)
{
	struct bal_amendment am;
	char why[256];
	a->amendments++;
	bal_arena_reset(&a->arena);
	if (bal_codec_amendment_decode(bytes, len, &a->arena, &am, why, sizeof(why)) != 0) {
		a->decode_failures++;
		problem(a, position, BAL_COMMISSION_ID, 0, "amendment does not decode: %s", why);
		return;
	}
	a->keys[a->nkeys][0] = BAL_COMMISSION_ID;
	a->keys[a->nkeys][1] = am.seq;
	a->nkeys++;
	if (!a->d->has_commission_key) {
		a->sig_failures++;
		problem(a, position, BAL_COMMISSION_ID, am.seq,
		        "an amendment, but the definition has no commission_key");
	} else if (am.signature_len != crypto_sign_BYTES ||
	           crypto_sign_verify_detached(am.signature, am.signed_bytes, am.signed_len, a->d->commission_key) !=
	                   0) {
		a->sig_failures++;
		problem(a, position, BAL_COMMISSION_ID, am.seq,
		        "amendment's Ed25519 signature (%zu bytes) does not verify with the commission_key",
		        am.signature_len);
	} else {
		a->verified++;
	}
	if (strcmp(am.election_id, a->d->election_id) != 0 || !am.reason[0]) {
		a->fold_failures++;
		problem(a, position, BAL_COMMISSION_ID, am.seq, "amendment for election \"%.64s\" with %s reason",
		        am.election_id, am.reason[0] ? "a" : "no");
		return;
	}
	int32_t p = bal_defn_precinct(a->d, am.precinct_id);
	bool on_precinct =
	        am.change == BAL_CHANGE_REVOKE_KEY || am.change == BAL_CHANGE_SET_KEY || am.change == BAL_CHANGE_FREEZE;
	if (on_precinct && p < 0) {
		a->fold_failures++;
		problem(a, position, BAL_COMMISSION_ID, am.seq,
		        "amendment of precinct %" PRIu32 ", not in the definition", am.precinct_id);
		return;
	}
	switch (am.change) {
	case BAL_CHANGE_REVOKE_KEY: a->pkeys[p] = (struct pkey){.state = KEY_REVOKED, .at = position}; break;
	case BAL_CHANGE_SET_KEY:
		if (am.public_key_len != sizeof(a->pkeys[p].key)) {
			a->fold_failures++;
			problem(a, position, BAL_COMMISSION_ID, am.seq, "set_key with a key of %zu bytes",
			        am.public_key_len);
			break;
		}
		a->pkeys[p] = (struct pkey){.state = KEY_SET, .at = position};
		memcpy(a->pkeys[p].key, am.public_key, sizeof(a->pkeys[p].key));
		break;
	case BAL_CHANGE_FREEZE:
		if (!a->frozen[p])
			a->frozen[p] = position;
		break;
	case BAL_CHANGE_VOID: apply_void(a, position, am.position); break;
	case BAL_CHANGE_CERTIFY:
		if (am.position == 0 || am.position >= position) {
			a->fold_failures++;
			problem(a, position, BAL_COMMISSION_ID, am.seq,
			        "certification of position %" PRIu64 ", not journaled before it", am.position);
			break;
		}
		a->certified = true;
		a->cert_position = am.position;
		a->cert_at = position;
		snprintf(a->cert_reason, sizeof(a->cert_reason), "%s", am.reason);
		break;
	case BAL_CHANGE_NONE:
		a->fold_failures++;
		problem(a, position, BAL_COMMISSION_ID, am.seq, "amendment without a change");
		break;
	}
}

/* Walks one /v1/journal answer; returns records taken or -1 (a problem is recorded). */
static long take_page(struct audit *a, const uint8_t *body, size_t len)
{
	size_t off = 0;
	long n = 0;
	while (off < len) {
		if (len - off < RECORD_HEAD) {
			problem(a, a->next, 0, 0, "journal answer ends inside a record head (%zu of %d bytes)",
			        len - off, RECORD_HEAD);
			return -1;
		}
		uint64_t pos = 0;
		uint32_t rlen = 0;
		for (int i = 0; i < 8; i++)
			pos = pos << 8 | body[off + i];
		for (int i = 0; i < 4; i++)
			rlen = rlen << 8 | body[off + 8 + i];
		off += RECORD_HEAD;
		if (rlen > len - off) {
			problem(a, pos, 0, 0, "record of %" PRIu32 " bytes, only %zu left in the answer", rlen,
			        len - off);
			return -1;
		}
		if (pos != a->next) {
			problem(a, pos, 0, 0, "journal position %" PRIu64 " where %" PRIu64 " was expected", pos,
			        a->next);
			return -1;
		}
		if (pos > a->position)
			break; /* the daemon cut at its own position; never fold beyond P */
		bal_logcheck_leaf_hash(body + off, rlen, a->leaves[pos - 1]);
		check_record(a, pos, body + off, rlen);
		bal_logcheck_tree_add(&a->tree, a->leaves[pos - 1]);
		off += rlen;
		a->next++;
		n++;
	}
	return n;
}

static int fetch(struct audit *a, const char *path, int timeout_ms, struct bal_http_resp *r)
{
	char why[512];
	a->requests++;
	if (bal_http_request(a->server, "GET", path, NULL, 0, NULL, timeout_ms, (size_t)64 << 20, r, why, sizeof(why)) <
	    0) {
		fprintf(stderr, "ballotctl audit: %s\n", why);
		return -1;
	}
	if (r->status != 200) {
		fprintf(stderr, "ballotctl audit: GET %s from %s: HTTP %d: %.200s\n", path, a->server, r->status,
		        r->body);
		bal_http_resp_deinit(r);
		return -1;
	}
	return 0;
}

static uint64_t num(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

static void compare(struct audit *a, const char *what, uint64_t recomputed, json_t *snap_value)
{
	bool present = json_is_integer(snap_value) && json_integer_value(snap_value) >= 0;
	uint64_t sv = present ? (uint64_t)json_integer_value(snap_value) : 0;
	if (present && sv == recomputed)
		return;
	a->mismatch_count++;
	if (json_array_size(a->mismatches) < LIST_MAX)
		json_array_append_new(a->mismatches,
		                      json_pack("{ss sI so}", "what", what, "recomputed", (json_int_t)recomputed,
		                                "snapshot", present ? json_integer((json_int_t)sv) : json_null()));
}

/* Every total of the snapshot against the recomputed fold. */
static void compare_snapshot(struct audit *a, json_t *snap)
{
	const struct bal_defn *d = a->d;
	struct bal_expect_turnout t;
	bal_expect_turnout(a->e, &t);
	char what[160];
	compare(a, "batches", t.batches, json_object_get(snap, "batches"));
	compare(a, "precincts_reporting", bal_expect_precincts_reporting(a->e),
	        json_object_get(snap, "precincts_reporting"));
	compare(a, "precincts_with_protocol", bal_expect_precincts_with_protocol(a->e),
	        json_object_get(snap, "precincts_with_protocol"));
	compare(a, "precincts_with_discrepancy", bal_expect_precincts_with_discrepancy(a->e),
	        json_object_get(snap, "precincts_with_discrepancy"));
	json_t *cert = json_object_get(snap, "certified");
	if (a->certified) {
		compare(a, "certified.position", a->cert_position, json_object_get(cert, "position"));
		compare(a, "certified.amendment_position", a->cert_at, json_object_get(cert, "amendment_position"));
		const char *reason = json_string_value(json_object_get(cert, "reason"));
		if (!reason || strcmp(reason, a->cert_reason) != 0) {
			json_t *none = json_null();
			compare(a, "certified.reason (the latest certification's)", a->cert_at, none);
			json_decref(none);
		}
	} else if (cert && !json_is_null(cert)) {
		compare(a, "certified (no certification journaled up to the position)", 0,
		        json_object_get(cert, "position"));
	}
	json_t *st = json_object_get(snap, "turnout");
	const struct {
		const char *name;
		uint64_t v;
	} tf[] = {{"batches", t.batches},
	          {"ballots", t.ballots},
	          {"issued", t.issued},
	          {"cast", t.cast},
	          {"spoiled", t.spoiled}};
	for (size_t i = 0; i < sizeof(tf) / sizeof(tf[0]); i++) {
		snprintf(what, sizeof(what), "turnout.%s", tf[i].name);
		compare(a, what, tf[i].v, json_object_get(st, tf[i].name));
	}
	json_t *contests = json_object_get(snap, "contests");
	if (json_array_size(contests) != d->ncontests) {
		json_t *n = json_integer((json_int_t)json_array_size(contests));
		compare(a, "contests (count)", d->ncontests, n);
		json_decref(n);
		return;
	}
	for (uint32_t c = 0; c < d->ncontests; c++) {
		const struct bal_contest *ct = &d->contests[c];
		json_t *sc = json_array_get(contests, c), *choices = json_object_get(sc, "choices");
		if (num(sc, "id") != ct->id || json_array_size(choices) != ct->nchoices) {
			snprintf(what, sizeof(what), "contest %" PRIu32 ": id and choice count", ct->id);
			compare(a, what, ct->nchoices, json_null());
			continue;
		}
		uint64_t total = 0;
		for (uint32_t k = 0; k < ct->nchoices; k++) {
			uint64_t v = bal_expect_votes(a->e, c, k);
			total += v;
			snprintf(what, sizeof(what), "contest %" PRIu32 " choice %" PRIu32 " votes", ct->id,
			         ct->choices[k].id);
			compare(a, what, v, json_object_get(json_array_get(choices, k), "votes"));
		}
		snprintf(what, sizeof(what), "contest %" PRIu32 " total_votes", ct->id);
		compare(a, what, total, json_object_get(sc, "total_votes"));
		size_t i;
		json_t *sd;
		json_array_foreach(json_object_get(sc, "districts"), i, sd)
		{
			int32_t di = bal_defn_district(d, (uint32_t)num(sd, "id"));
			json_t *votes = json_object_get(sd, "votes");
			for (uint32_t k = 0; k < ct->nchoices; k++) {
				snprintf(what, sizeof(what),
				         "contest %" PRIu32 " district %" PRIu64 " choice %" PRIu32 " votes", ct->id,
				         num(sd, "id"), ct->choices[k].id);
				compare(a, what, di < 0 ? 0 : bal_expect_district_votes(a->e, c, (uint32_t)di, k),
				        json_array_get(votes, k));
			}
		}
	}
}

static int cmp_key(const void *x, const void *y)
{
	const uint64_t *p = x, *q = y;
	if (p[0] != q[0])
		return p[0] < q[0] ? -1 : 1;
	return p[1] < q[1] ? -1 : p[1] > q[1];
}

static void check_keys(struct audit *a)
{
	qsort(a->keys, a->nkeys, sizeof(*a->keys), cmp_key);
	for (size_t i = 1; i < a->nkeys; i++) {
		if (a->keys[i][0] == a->keys[i - 1][0] && a->keys[i][1] == a->keys[i - 1][1]) {
			a->duplicate_keys++;
			problem(a, 0, (uint32_t)a->keys[i][0], a->keys[i][1],
			        "(precinct %" PRIu64 ", seq %" PRIu64 ") is journaled more than once", a->keys[i][0],
			        a->keys[i][1]);
		}
	}
}

static bool audit_ok(const struct audit *a)
{
	return a->records == a->position && a->next == a->position + 1 && !a->sig_failures && !a->decode_failures &&
	       !a->fold_failures && !a->duplicate_keys && !a->mismatch_count && a->log.ok;
}

/*
 * Ties the recomputed root of records 1..P to a signed head (see the file
 * comment). `t` is NULL without --server-key.
 */
static void check_log(struct audit *a, const struct log_trust *t, int timeout_ms)
{
	struct log_result *L = &a->log;
	L->signature = "not checked";
	bal_logcheck_tree_root(&a->tree, L->root);
	if (a->tree.size != a->position) {
		snprintf(L->error, sizeof(L->error), "the journal was not read whole: no root to check");
		return;
	}
	if (a->position == 0) {
		L->ok = true; /* an empty journal: no head to check against */
		return;
	}
	char why[600];
	struct bal_tree_head h;
	int rc = log_fetch_head(a->server, a->position, timeout_ms, &h, why, sizeof(why));
	if (rc == -ENOENT) {
		/* No commit group ended at P, or no heads at all: the latest. */
		rc = log_fetch_head(a->server, 0, timeout_ms, &h, why, sizeof(why));
		if (rc == -ENOENT && !t) {
			L->ok = true;
			snprintf(L->error, sizeof(L->error), "the daemon publishes no signed tree head: %s", why);
			return;
		}
		L->consistency = rc == 0;
	}
	if (rc < 0) {
		snprintf(L->error, sizeof(L->error), "%s", why);
		return;
	}
	L->checked = true;
	L->head_size = h.tree_size;
	if (t) {
		rc = bal_logcheck_head_verify(&h, t->election_id, t->key, why, sizeof(why));
		L->signature = rc == 0 ? "verified" : "failed";
		if (rc < 0) {
			snprintf(L->error, sizeof(L->error), "%s", why);
			return;
		}
	}
	struct bal_tree_head mine = {.tree_size = a->position};
	memcpy(mine.root, L->root, sizeof(mine.root));
	rc = log_check_consistent(a->server, &mine, &h, timeout_ms, why, sizeof(why));
	if (rc < 0) {
		char hex[65];
		bal_logcheck_hex(L->root, sizeof(L->root), hex);
		snprintf(L->error, sizeof(L->error),
		         "the root of records 1..%" PRIu64 " (%.16s...) is not the signed log's: %s", a->position, hex,
		         why);
		return;
	}
	L->ok = true;
}

static void print_report(const struct audit *a, const char *defn_path, bool defn_matches)
{
	char b1[32], b2[32], b3[32];
	printf("audit of %s against %s\n", a->server, defn_path);
	if (!defn_matches)
		printf("the daemon's definition_sha256 differs from this definition's\n");
	printf("snapshot position %s; journal records checked %s in %s requests\n", fmt_count(a->position, b1),
	       fmt_count(a->records, b2), fmt_count(a->requests, b3));
	printf("signatures verified %s, unsigned (no key) %s, failed %s\n", fmt_count(a->verified, b1),
	       fmt_count(a->unsigned_ok, b2), fmt_count(a->sig_failures, b3));
	printf("amendments %s (voids %s)%s\n", fmt_count(a->amendments, b1), fmt_count(a->nvoided, b2),
	       a->certified ? "; results certified" : "");
	printf("undecodable %s, not foldable %s, repeated (precinct, seq) keys %s\n", fmt_count(a->decode_failures, b1),
	       fmt_count(a->fold_failures, b2), fmt_count(a->duplicate_keys, b3));
	size_t i;
	json_t *v;
	json_array_foreach(a->problems, i, v)
	        printf("  position %" JSON_INTEGER_FORMAT " precinct %" JSON_INTEGER_FORMAT " seq %" JSON_INTEGER_FORMAT
	               ": %s\n",
	               json_integer_value(json_object_get(v, "position")),
	               json_integer_value(json_object_get(v, "precinct_id")),
	               json_integer_value(json_object_get(v, "seq")), json_string_value(json_object_get(v, "problem")));
	printf("totals compared with the snapshot: %s mismatches\n", fmt_count(a->mismatch_count, b1));
	json_array_foreach(a->mismatches, i, v)
	{
		json_t *s = json_object_get(v, "snapshot");
		printf("  %s: recomputed %" JSON_INTEGER_FORMAT ", snapshot ",
		       json_string_value(json_object_get(v, "what")),
		       json_integer_value(json_object_get(v, "recomputed")));
		if (json_is_integer(s))
			printf("%" JSON_INTEGER_FORMAT "\n", json_integer_value(s));
		else
			printf("missing\n");
	}
	const struct log_result *L = &a->log;
	char hex[65];
	bal_logcheck_hex(L->root, sizeof(L->root), hex);
	if (L->checked && L->ok)
		printf("log: the root of records 1..%s (%.16s...) is %s the signed head of size %s (signature %s)\n",
		       fmt_count(a->position, b1), hex, L->consistency ? "consistent with" : "that of",
		       fmt_count(L->head_size, b2), L->signature);
	else if (L->ok && a->position == 0)
		printf("log: the journal is empty; no head to check\n");
	else if (L->ok)
		printf("log: NOT CHECKED: %s\n", L->error);
	else
		printf("log: FAILED: %s\n", L->error);
	printf("%s\n", audit_ok(a) && defn_matches ? "AUDIT PASSED: every signature verifies and every total matches"
	                                           : "AUDIT FAILED");
}

static void print_json(const struct audit *a, const char *defn_path, bool defn_matches)
{
	const struct log_result *L = &a->log;
	char hex[65];
	bal_logcheck_hex(L->root, sizeof(L->root), hex);
	json_t *log = json_pack("{sb ss sI sb ss sb so}", "checked", L->checked, "root_hash", hex, "head_size",
	                        (json_int_t)L->head_size, "consistency", L->consistency, "signature", L->signature,
	                        "ok", L->ok, "error", L->error[0] ? json_string(L->error) : json_null());
	json_t *j = json_pack("{ss ss sb sI sI sI sI sI sI sI sI sI sO sI sO so sI sb}", "server", a->server,
	                      "definition", defn_path, "definition_matches", defn_matches, "position",
	                      (json_int_t)a->position, "records", (json_int_t)a->records, "amendments",
	                      (json_int_t)a->amendments, "signatures_verified", (json_int_t)a->verified, "unsigned",
	                      (json_int_t)a->unsigned_ok, "signature_failures", (json_int_t)a->sig_failures,
	                      "decode_failures", (json_int_t)a->decode_failures, "fold_failures",
	                      (json_int_t)a->fold_failures, "duplicate_keys", (json_int_t)a->duplicate_keys, "problems",
	                      a->problems, "mismatch_count", (json_int_t)a->mismatch_count, "mismatches", a->mismatches,
	                      "log", log, "requests", (json_int_t)a->requests, "ok", audit_ok(a) && defn_matches);
	json_dumpf(j, stdout, JSON_INDENT(2));
	fputc('\n', stdout);
	json_decref(j);
}

/* Pages through /v1/journal until a->next passes a->position. 0 or -1. */
static int read_journal(struct audit *a, uint64_t batch, int timeout_ms)
{
	while (a->next <= a->position) {
		uint64_t want = a->position - a->next + 1 < batch ? a->position - a->next + 1 : batch;
		char path[96];
		snprintf(path, sizeof(path), "/v1/journal?from=%" PRIu64 "&limit=%" PRIu64, a->next, want);
		struct bal_http_resp r;
		if (fetch(a, path, timeout_ms, &r) < 0)
			return -1;
		long n = take_page(a, (const uint8_t *)r.body, r.len);
		bal_http_resp_deinit(&r);
		if (n < 0)
			return 0; /* a problem is recorded; the audit fails */
		if (n == 0) {
			problem(a, a->next, 0, 0, "the journal ends before position %" PRIu64 " of the snapshot",
			        a->position);
			return 0;
		}
	}
	return 0;
}

int cmd_audit(int argc, char **argv)
{
	enum { O_SERVER = 256, O_DEFN, O_BATCH, O_JSON, O_TIMEOUT, O_KEY, O_HELP };
	static const struct option longopts[] = {
	        {"server", required_argument, NULL, O_SERVER},
	        {"definition", required_argument, NULL, O_DEFN},
	        {"batch", required_argument, NULL, O_BATCH},
	        {"json", no_argument, NULL, O_JSON},
	        {"timeout", required_argument, NULL, O_TIMEOUT},
	        {"server-key", required_argument, NULL, O_KEY},
	        {"help", no_argument, NULL, O_HELP},
	        {NULL, 0, NULL, 0},
	};
	const char *definition = "data/kz2023.json", *key = NULL;
	char server[BAL_HTTP_SERVER_MAX] = "";
	struct log_trust trust = {0};
	uint64_t batch = 10000;
	uint32_t timeout_s = 30;
	bool as_json = false, ok = true;
	int opt;
	optind = 1;
	while (ok && (opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case O_SERVER: ok = opt_server("audit", optarg, server, sizeof(server)); break;
		case O_DEFN: definition = optarg; break;
		case O_BATCH: ok = opt_u64("--batch", optarg, 1, 100000, &batch); break;
		case O_JSON: as_json = true; break;
		case O_TIMEOUT: ok = opt_u32("--timeout", optarg, 1, 3600, &timeout_s); break;
		case O_KEY: key = optarg; break;
		case O_HELP: fputs(help, stdout); return EXIT_OK;
		default: opt_bad("audit", argv); return EXIT_USAGE;
		}
	}
	if (!ok || !opt_no_operands("audit", argc, argv))
		return EXIT_USAGE;
	if (!server[0]) {
		fprintf(stderr, "ballotctl audit: --server HOST:PORT is required\n");
		return EXIT_USAGE;
	}
	if (key && !opt_server_key("audit", key, &trust))
		return EXIT_USAGE;
	if (!key)
		fprintf(stderr, "ballotctl audit: warning: no --server-key: the signature of the log's tree head "
		                "is not checked\n");
	char path[4096], why[512];
	if (!find_definition(definition, path, sizeof(path)))
		return EXIT_USAGE;
	struct bal_defn *d;
	if (bal_defn_load(path, &d, why, sizeof(why)) < 0) {
		fprintf(stderr, "ballotctl audit: --definition %s: %s\n", path, why);
		return EXIT_USAGE;
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "ballotctl audit: libsodium does not initialise\n");
		bal_defn_free(d);
		return EXIT_FAILED;
	}
	int rc = EXIT_FAILED;
	int timeout_ms = (int)timeout_s * 1000;
	struct audit a = {.server = server,
	                  .timeout_ms = timeout_ms,
	                  .d = d,
	                  .next = 1,
	                  .problems = json_array(),
	                  .mismatches = json_array()};
	bal_arena_init(&a.arena, 0);
	a.e = bal_expect_new(d);
	a.pkeys = calloc(d->nprecincts, sizeof(*a.pkeys));
	a.frozen = calloc(d->nprecincts, sizeof(*a.frozen));
	for (uint32_t p = 0; a.pkeys && p < d->nprecincts; p++) {
		a.pkeys[p].state = d->precincts[p].has_key ? KEY_SET : KEY_NONE;
		memcpy(a.pkeys[p].key, d->precincts[p].public_key, sizeof(a.pkeys[p].key));
	}
	struct bal_http_resp r;
	json_t *snap = NULL;
	if (!a.e || !a.problems || !a.mismatches || !a.pkeys || !a.frozen) {
		fprintf(stderr, "ballotctl audit: out of memory\n");
		goto out;
	}
	if (fetch(&a, "/v1/snapshot", timeout_ms, &r) < 0)
		goto out;
	json_error_t jerr;
	snap = json_loadb(r.body, r.len, 0, &jerr);
	bal_http_resp_deinit(&r);
	if (!json_is_object(snap) || !json_is_integer(json_object_get(snap, "position"))) {
		fprintf(stderr, "ballotctl audit: GET /v1/snapshot from %s: no \"position\" in the answer (%s)\n",
		        server, jerr.text);
		goto out;
	}
	a.position = num(snap, "position");
	char hex[65];
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", d->hash[i]);
	const char *theirs = json_string_value(json_object_get(json_object_get(snap, "election"), "definition_sha256"));
	bool defn_matches = theirs && strcmp(theirs, hex) == 0;
	a.keys = a.position ? malloc(a.position * sizeof(*a.keys)) : NULL;
	a.leaves = a.position ? malloc(a.position * sizeof(*a.leaves)) : NULL;
	if (a.position && (!a.keys || !a.leaves)) {
		fprintf(stderr, "ballotctl audit: out of memory for %" PRIu64 " journal keys\n", a.position);
		goto out;
	}
	if (read_journal(&a, batch, timeout_ms) < 0)
		goto out;
	snprintf(trust.election_id, sizeof(trust.election_id), "%s", d->election_id);
	check_log(&a, key ? &trust : NULL, timeout_ms);
	check_keys(&a);
	compare_snapshot(&a, snap);
	if (as_json)
		print_json(&a, path, defn_matches);
	else
		print_report(&a, path, defn_matches);
	rc = audit_ok(&a) && defn_matches ? EXIT_OK : EXIT_FAILED;
out:
	json_decref(snap);
	free(a.keys);
	free(a.leaves);
	free(a.pkeys);
	free(a.frozen);
	free(a.voided);
	json_decref(a.problems);
	json_decref(a.mismatches);
	bal_expect_free(a.e);
	bal_arena_deinit(&a.arena);
	bal_defn_free(d);
	return rc;
}
