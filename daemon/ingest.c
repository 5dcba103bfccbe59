/* SPDX-License-Identifier: Apache-2.0 */
/*
 * POST /v1/batches and POST /v1/amendments: the single place where a decoded
 * request turns into journal and tally work, and where the ack decision is
 * made.
 *
 * On the I/O thread, a batch: decode (400) -> known precinct (422) ->
 * signature under the precinct's current key (401; the effective
 * definition's, daemon/amend.h) -> validate and fold against the definition
 * (422) -> hand to the committer (503 when its queue is full). An amendment:
 * a commission key in the definition (403) -> decode (400) -> signature by
 * it (401) -> election and the checks that need no state (422) -> the
 * committer, which checks the rest against the journal. The ack is built
 * only when the committer hands the job back, i.e. after the transaction is
 * synced: a success reply never precedes durability.
 */
#include "daemon/ingest.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/amend.h"
#include "daemon/conn.h"
#include "daemon/log.h"
#include "daemon/text.h"
#include "daemon/tlog.h"
#include "daemon/worker.h"
#include "proto/codec.h"

static const char *status_name(enum bal_ack_status st)
{
	switch (st) {
	case BAL_ACK_ACCEPTED: return "ACCEPTED";
	case BAL_ACK_DUPLICATE: return "DUPLICATE";
	default: return "REJECTED";
	}
}

static void ack(struct bal_req *req, int http_status, enum bal_ack_status st, uint64_t position, const char *why,
                const char *extra)
{
	uint8_t buf[512];
	if (req->accept_protobuf) {
		char err[400];
		if (why && why[0])
			snprintf(err, sizeof(err), "%s", why); /* bounded: the ack buffer holds 400 bytes of text */
		size_t n = bal_codec_ack_pack(st, position, why && why[0] ? err : NULL, buf);
		bal_req_respond(req, http_status, "application/x-protobuf", extra, buf, n);
		return;
	}
	char esc[400];
	bal_text_json_escape(esc, sizeof(esc), why ? why : "");
	int n = snprintf((char *)buf, sizeof(buf), "{\"status\":\"%s\",\"position\":%llu,\"error\":\"%s\"}\n",
	                 status_name(st), (unsigned long long)position, esc);
	if (n < 0 || (size_t)n >= sizeof(buf))
		n = (int)strlen((char *)buf);
	bal_req_respond(req, http_status, "application/json", extra, buf, (size_t)n);
}

/*
 * ACCEPTED or DUPLICATE with its receipt, written into req->log->ack (kept
 * with the request: no allocation per batch once warm).
 */
static void ack_receipt(struct bal_req *req, enum bal_ack_status st, uint64_t position)
{
	const struct bal_receipt *r = &req->log->receipt;
	char *out = req->log->ack;
	if (req->accept_protobuf) {
		/* No size pass: with no error text and at most BAL_TREE_MAX_PATH
		 * hashes the protobuf form stays below 2,400 bytes. */
		size_t n = bal_codec_ack_receipt_pack(st, position, NULL, r, (uint8_t *)out);
		bal_require(n <= sizeof(req->log->ack));
		bal_req_respond_kept(req, 200, "application/x-protobuf", NULL, out, n);
		return;
	}
	struct bal_text b = bal_text_fixed(out, sizeof(req->log->ack));
	bal_text_printf(&b, "{\"status\":\"%s\",\"position\":%llu,\"error\":\"\",", status_name(st),
	                (unsigned long long)position);
	bal_tlog_receipt_json(&b, r);
	bal_text_printf(&b, "}\n");
	bal_require(!b.oom); /* BAL_ACK_RECEIPT_MAX holds the longest JSON receipt */
	bal_req_respond_kept(req, 200, "application/json", NULL, out, b.n);
}

/* Whether an answer refuses the batch itself (as opposed to not storing it
 * for now, or a conflict): these count against the connection's budget. */
static bool refuses(int http_status)
{
	return http_status == 400 || http_status == 401 || http_status == 403 || http_status == 413 ||
	       http_status == 422;
}

static void reject(struct bal_req *req, int http_status, const char *why)
{
	struct bal_daemon *d = req->conn->w->d;
	if (http_status == 503)
		BAL_METRIC_ADD(d->metrics.batches_unstored, 1);
	else
		BAL_METRIC_ADD(d->metrics.batches_rejected, 1);
	if (refuses(http_status))
		bal_conn_refused(req->conn);
	bal_log_reject("ingest", "%s: %d %s", req->conn->peer, http_status, why);
	ack(req, http_status, BAL_ACK_REJECTED, 0, why, http_status == 503 ? "Retry-After: 1\r\n" : NULL);
}

static int http_status_of(int err)
{
	switch (err) {
	case BAL_ESCHEMA: return 400;
	case BAL_EAUTH: return 401;
	case BAL_EFORBIDDEN: return 403;
	case BAL_ECONFLICT: return 409;
	case BAL_EINVALID:
	case BAL_EOVERFLOW:
	case BAL_EUNSUPPORTED: return 422;
	case BAL_EBUSY: return 503;
	case -ENOSPC:
	case BAL_EQUOTA: return 507;
	default: return 503;
	}
}

static uint64_t ballots_of(const struct bal_batch *b)
{
	return b->kind == BAL_KIND_BALLOTS && b->ncolumns ? b->columns[0].n : 0;
}

static void submit(struct bal_req *req);

/* What every POST answers before reading its body (a "batch" or an
 * "amendment"): null mode, draining, a body dropped for memory. Returns true
 * when it answered. */
static bool answered_early(struct bal_req *req, const char *what)
{
	struct bal_daemon *d = req->conn->w->d;
	char why[256];
	if (d->cfg.null_mode) {
		ack(req, 200, BAL_ACK_ACCEPTED, 0, NULL, NULL);
		return true;
	}
	if (__atomic_load_n(&d->draining, __ATOMIC_RELAXED)) {
		snprintf(why, sizeof(why), "shutting down: %s not stored, retry after restart", what);
		reject(req, 503, why);
		return true;
	}
	if (req->discard) {
		/* Its body was read and dropped (conn.c: hook_headers, hook_body). */
		BAL_METRIC_ADD(d->metrics.client_memory_refused, 1);
		snprintf(why, sizeof(why),
		         "the daemon holds what it may for its clients (--max-client-memory %zu bytes); %s not read, "
		         "retry",
		         d->cfg.max_client_memory, what);
		reject(req, 503, why);
		return true;
	}
	return false;
}

void bal_ingest_request(struct bal_req *req)
{
	struct bal_conn *c = req->conn;
	struct bal_worker *w = c->w;
	struct bal_daemon *d = w->d;
	char why[256];

	if (answered_early(req, "batch"))
		return;

	/* The request's delta entries are written by the fold below; they
	 * are usually cold (one array per request, a thousand connections), so start
	 * fetching them while the batch decodes. */
	if (req->entries) {
		const char *e = (const char *)req->entries;
		size_t len = bal_layout_delta_max(d->layout) * sizeof(*req->entries);
		for (size_t off = 0; off < len; off += 64)
			__builtin_prefetch(e + off, 1);
	}
	struct bal_batch b;
	bal_arena_reset(&w->arena);
	int err = bal_codec_decode(req->body, req->body_len, &w->arena, &b, why, sizeof(why));
	if (err) {
		reject(req, err == -ENOMEM ? 413 : 400, why);
		return;
	}

	int32_t p = bal_defn_precinct(d->defn, b.precinct_id);
	if (p < 0) {
		snprintf(why, sizeof(why), "precinct_id %u is not in the definition", b.precinct_id);
		reject(req, 422, why);
		return;
	}
	/* The key as amendments left it; the committer refuses the batch if it
	 * changes before the batch is journaled (struct bal_job). */
	struct bal_key_view key;
	bal_amend_key(d->amend, (uint32_t)p, &key);
	if (key.state == BAL_KEY_NONE && b.signature_len != 0) {
		/* The audit verifies a keyless precinct's batches by their empty
		 * signature: any other bytes would make the journal unverifiable. */
		snprintf(why, sizeof(why),
		         "precinct %u has no key in the definition: its batches carry an empty "
		         "signature, not %zu bytes",
		         b.precinct_id, b.signature_len);
		reject(req, 401, why);
		return;
	}
	if (d->cfg.auth && key.state == BAL_KEY_REVOKED) {
		snprintf(why, sizeof(why),
		         "the key of precinct %u was revoked by the amendment at position %llu: no key signs for it",
		         b.precinct_id, (unsigned long long)key.changed_at);
		reject(req, 401, why);
		return;
	}
	if (d->cfg.auth && key.state == BAL_KEY_SET) {
		if (b.signature_len != crypto_sign_BYTES) {
			snprintf(why, sizeof(why), "signature is %zu bytes, an Ed25519 signature is %d (precinct %u)",
			         b.signature_len, crypto_sign_BYTES, b.precinct_id);
			reject(req, 401, why);
			return;
		}
		if (crypto_sign_verify_detached(b.signature, b.signed_bytes, b.signed_len, key.key) != 0) {
			if (key.changed_at)
				snprintf(why, sizeof(why),
				         "signature does not verify against the public key of precinct %u (set by the "
				         "amendment at position %llu)",
				         b.precinct_id, (unsigned long long)key.changed_at);
			else
				snprintf(why, sizeof(why),
				         "signature does not verify against the public key of precinct %u",
				         b.precinct_id);
			reject(req, 401, why);
			return;
		}
	}
	if (strcmp(b.election_id, d->defn->election_id) != 0) {
		snprintf(why, sizeof(why), "batch is for election \"%.64s\", this is \"%.64s\"", b.election_id,
		         d->defn->election_id);
		reject(req, 422, why);
		return;
	}

	if (!req->entries) {
		req->entries = malloc(bal_layout_delta_max(d->layout) * sizeof(*req->entries));
		if (!req->entries) {
			reject(req, 503, "out of memory");
			return;
		}
	}
	struct bal_job *job = &req->job;
	job->delta.e = req->entries;
	job->delta.cap = (uint32_t)bal_layout_delta_max(d->layout);
	job->delta.n = 0;
	err = bal_tally_fold(d->defn, d->layout, &b, &job->delta, why, sizeof(why));
	if (err) {
		reject(req, http_status_of(err), why);
		return;
	}
	job->amendment = false;
	job->precinct_id = b.precinct_id;
	job->seq = b.seq;
	job->ballots = ballots_of(&b);
	job->key_version = key.version;
	submit(req);
}

/*
 * Hands req->job (its kind, precinct, seq and delta set) to the committer with
 * the request's body as its bytes, or answers 503 when the queue or memory
 * is full.
 */
static void submit(struct bal_req *req)
{
	struct bal_conn *c = req->conn;
	struct bal_worker *w = c->w;
	struct bal_daemon *d = w->d;
	struct bal_job *job = &req->job;
	char why[256];
	if (d->log_key.present && !req->log && !(req->log = malloc(sizeof(*req->log)))) {
		reject(req, 503, "out of memory");
		return;
	}
	job->receipt = req->log ? &req->log->receipt : NULL;
	job->has_receipt = false;
	job->next = NULL;
	job->worker = w;
	job->owner = req;
	job->bytes = req->body;
	job->len = req->body_len;
	job->result = 0;
	job->position = 0;
	job->why[0] = '\0';
	/* Counted down by the worker when the job comes back (take_done()). */
	uint64_t queued = __atomic_add_fetch(&d->queued_bytes, job->len, __ATOMIC_RELAXED);
	if (queued > d->cfg.queue_bytes) {
		__atomic_sub_fetch(&d->queued_bytes, job->len, __ATOMIC_RELAXED);
		BAL_METRIC_ADD(d->metrics.queue_bytes_refused, 1);
		snprintf(why, sizeof(why), "commit queue full (%llu bytes waiting, --queue-bytes %zu); retry",
		         (unsigned long long)(queued - job->len), d->cfg.queue_bytes);
		reject(req, 503, why);
		return;
	}
	/* The request keeps body and delta unchanged until bal_conn_job_done(). */
	req->state = BAL_REQ_QUEUED;
	c->refs++;
	int err = bal_committer_submit(d->committer, job);
	if (err) {
		req->state = BAL_REQ_RECV;
		c->refs--;
		__atomic_sub_fetch(&d->queued_bytes, job->len, __ATOMIC_RELAXED);
		snprintf(why, sizeof(why), "commit queue full (%u batches waiting, --queue-depth); retry",
		         d->cfg.queue_depth);
		reject(req, 503, why);
	}
}

void bal_ingest_amendment(struct bal_req *req)
{
	struct bal_worker *w = req->conn->w;
	struct bal_daemon *d = w->d;
	char why[256];
	if (answered_early(req, "amendment"))
		return;
	if (!d->defn->has_commission_key) {
		reject(req, 403,
		       "this election's definition has no commission_key: no amendment can be accepted (see "
		       "docs/definition.md)");
		return;
	}
	struct bal_amendment am;
	bal_arena_reset(&w->arena);
	int err = bal_codec_amendment_decode(req->body, req->body_len, &w->arena, &am, why, sizeof(why));
	if (err) {
		reject(req, err == -ENOMEM ? 413 : 400, why);
		return;
	}
	/* Every amendment is signed, --no-auth or not: that option is about the
	 * precincts' signatures. */
	if (am.signature_len != crypto_sign_BYTES) {
		snprintf(why, sizeof(why), "signature is %zu bytes, an Ed25519 signature by the commission key is %d",
		         am.signature_len, crypto_sign_BYTES);
		reject(req, 401, why);
		return;
	}
	if (crypto_sign_verify_detached(am.signature, am.signed_bytes, am.signed_len, d->defn->commission_key) != 0) {
		reject(req, 401, "signature does not verify against the definition's commission_key");
		return;
	}
	if (strcmp(am.election_id, d->defn->election_id) != 0) {
		snprintf(why, sizeof(why), "amendment is for election \"%.64s\", this is \"%.64s\"", am.election_id,
		         d->defn->election_id);
		reject(req, 422, why);
		return;
	}
	if ((err = bal_amendment_check(d->defn, &am, why, sizeof(why))) != 0) {
		reject(req, http_status_of(err), why);
		return;
	}
	struct bal_job *job = &req->job;
	job->amendment = true;
	job->precinct_id = BAL_COMMISSION_ID;
	job->seq = am.seq;
	job->ballots = 0;
	job->key_version = 0;
	job->delta = (struct bal_delta){.precinct = d->defn->nprecincts};
	submit(req);
}

void bal_ingest_finish(struct bal_req *req)
{
	struct bal_job *job = &req->job;
	switch (job->result) {
	case 0:
		if (job->has_receipt)
			ack_receipt(req, BAL_ACK_ACCEPTED, job->position);
		else
			ack(req, 200, BAL_ACK_ACCEPTED, job->position, NULL, NULL);
		break;
	case BAL_EDUPLICATE:
		/* Against the latest head: the duplicate's own group may be long past. */
		if (req->log && bal_tlog_receipt_for(req->conn->w->d, job->position, &req->log->receipt) == 0)
			ack_receipt(req, BAL_ACK_DUPLICATE, job->position);
		else
			ack(req, 200, BAL_ACK_DUPLICATE, job->position, NULL, NULL);
		break;
	default: {
		int st = http_status_of(job->result);
		if (refuses(st))
			bal_conn_refused(req->conn);
		ack(req, st, BAL_ACK_REJECTED, job->position, job->why[0] ? job->why : bal_strerror(job->result),
		    st == 503 ? "Retry-After: 1\r\n" : NULL);
		break;
	}
	}
}
