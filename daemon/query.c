/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Read-only endpoints for the commission, observers and operators:
 * /v1/snapshot, /v1/precincts/{id}, /v1/seats, /v1/results.csv,
 * /v1/journal, /healthz, /metrics. What the amendments did (a precinct's
 * key, freeze and voided batches; the latest certification) is cut at the
 * position of the counters shown, like everything else.
 *
 * Every answer is computed from one seqlock copy of the published counters
 * (bal_pub_read), so it folds exactly the journal prefix 1..position it
 * reports and never blocks the committer. Per-precinct journal facts (seqs,
 * conflicts) come from an LMDB read txn and are cut at that same position.
 */
#include "daemon/query.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/amend.h"
#include "daemon/cache.h"
#include "daemon/clock.h"
#include "daemon/conn.h"
#include "daemon/log.h"
#include "daemon/metrics.h"
#include "daemon/text.h"
#include "daemon/worker.h"
#include "daemon/tlog.h"
#include "storage/storage.h"

/* ---- answers built in a text buffer ----------------------------------- */

#define U64(x) ((unsigned long long)(x))

static void send_text_x(struct bal_req *req, int status, const char *ctype, const char *extra, struct bal_text *b)
{
	if (b->oom) {
		free(b->p);
		static const char msg[] = "{\"error\":\"out of memory building the answer\"}\n";
		bal_req_respond(req, 503, "application/json", "Retry-After: 1\r\n", msg, sizeof(msg) - 1);
		return;
	}
	bal_req_respond_owned(req, status, ctype, extra, b->p, b->n);
}

static void send_text(struct bal_req *req, int status, const char *ctype, struct bal_text *b)
{
	send_text_x(req, status, ctype, NULL, b);
}

static void send_error_v(struct bal_req *req, int status, const char *extra, const char *fmt, va_list ap)
{
	char why[256];
	vsnprintf(why, sizeof(why), fmt, ap);
	struct bal_text b = {0};
	bal_text_printf(&b, "{\"error\":");
	bal_text_json(&b, why);
	bal_text_printf(&b, "}\n");
	send_text_x(req, status, "application/json", extra, &b);
}

static void send_error(struct bal_req *req, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void send_error(struct bal_req *req, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	send_error_v(req, status, NULL, fmt, ap);
	va_end(ap);
}

void bal_query_text(struct bal_req *req, int status, struct bal_text *b)
{
	send_text(req, status, "application/json", b);
}

void bal_query_error(struct bal_req *req, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	send_error_v(req, status, NULL, fmt, ap);
	va_end(ap);
}

/* As send_error(), with header lines ("Retry-After: 1\r\n"). */
static void send_error_x(struct bal_req *req, int status, const char *extra, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void send_error_x(struct bal_req *req, int status, const char *extra, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	send_error_v(req, status, extra, fmt, ap);
	va_end(ap);
}

/* ---- pieces shared by the JSON answers ------------------------------------ */

static void turnout_json(struct bal_text *b, const struct bal_layout *l, const uint64_t *ctr,
                         uint32_t (*slot)(const struct bal_layout *, uint32_t, enum bal_turnout_field), uint32_t idx)
{
	bal_text_printf(b, "{\"batches\":%llu,\"ballots\":%llu,\"issued\":%llu,\"cast\":%llu,\"spoiled\":%llu}",
	                U64(ctr[slot(l, idx, BAL_T_BATCHES)]), U64(ctr[slot(l, idx, BAL_T_BALLOTS)]),
	                U64(ctr[slot(l, idx, BAL_T_ISSUED)]), U64(ctr[slot(l, idx, BAL_T_CAST)]),
	                U64(ctr[slot(l, idx, BAL_T_SPOILED)]));
}

static uint32_t total_turnout(const struct bal_layout *l, uint32_t unused, enum bal_turnout_field f)
{
	(void)unused;
	return bal_slot_total_turnout(l, f);
}

static const char *contest_kind(const struct bal_contest *c)
{
	return c->kind == BAL_CONTEST_PARTY_LIST ? "party_list" : "single_member";
}

/*
 * What every answer about totals works from: the definition, the layout and
 * one consistent copy of the counters (in a scratch array of the thread
 * building the answer: an I/O worker's, or the reader's, valid until that
 * thread's next copy) with the journal position it folds. With
 * `totals_only`, only the aggregate and global slots are copied (totals per
 * contest, district and nation): all the snapshot and the seats answer
 * from, a small fraction of a national array.
 */
struct view {
	const struct bal_defn *d;
	const struct bal_layout *l;
	const uint64_t *ctr;
	uint64_t pos;
};

static struct view view_copy(struct bal_daemon *d, uint64_t *scratch, bool totals_only)
{
	const struct bal_layout *l = d->layout;
	size_t first = totals_only ? bal_layout_first_aggregate(l) : 0;
	BAL_METRIC_ADD(d->metrics.queries, 1);
	uint64_t pos = bal_pub_read_range(&d->pub, first, bal_layout_nslots(l) - first, scratch);
	return (struct view){.d = d->defn, .l = l, .ctr = scratch, .pos = pos};
}

/* Widens [*lo, *hi] to hold slot `s`. */
static void span_add(uint32_t *lo, uint32_t *hi, uint32_t s)
{
	if (s < *lo)
		*lo = s;
	if (s > *hi)
		*hi = s;
}

/*
 * The counters of precinct `p` alone, at their own indices in the worker's
 * scratch array: its block (choices, turnout, and the shadows kept just
 * before it) and the shadows holding its ballot sums, two short ranges of a
 * national array copied through the seqlock one after the other. The
 * counters at a position are the fold of the prefix up to it, so two
 * copies that report one position are one consistent view; a commit in
 * between makes the copy start again.
 */
static struct view view_of_precinct(struct bal_req *req, uint32_t p)
{
	struct bal_worker *w = req->conn->w;
	const struct bal_defn *d = w->d->defn;
	const struct bal_layout *l = w->d->layout;
	uint32_t lo[2] = {UINT32_MAX, UINT32_MAX}, hi[2] = {0, 0};
	for (uint32_t f = 0; f < BAL_T_NFIELDS; f++) {
		uint32_t s = bal_slot_precinct_turnout(l, p, f);
		span_add(&lo[0], &hi[0], s);
		span_add(&lo[f < BAL_SH_NFIELDS ? 0 : 1], &hi[f < BAL_SH_NFIELDS ? 0 : 1],
		         bal_slot_precinct_shadow(l, p, s));
	}
	for (uint32_t c = 0; c < d->ncontests; c++) {
		for (uint32_t k = 0; bal_defn_votes_in(d, p, c) && k < d->contests[c].nchoices; k++) {
			uint32_t s = bal_slot_precinct_choice(l, p, c, k);
			span_add(&lo[0], &hi[0], s);
			span_add(&lo[1], &hi[1], bal_slot_precinct_shadow(l, p, s));
		}
	}
	BAL_METRIC_ADD(w->d->metrics.queries, 1);
	uint64_t pos;
	do
		pos = bal_pub_read_range(&w->d->pub, lo[0], hi[0] - lo[0] + 1, w->scratch);
	while (bal_pub_read_range(&w->d->pub, lo[1], hi[1] - lo[1] + 1, w->scratch) != pos);
	return (struct view){.d = d, .l = l, .ctr = w->scratch, .pos = pos};
}

/* ---- amendments, as of a position --------------------------------------------- */

/*
 * What the amendments journaled up to a view's position did, for one
 * precinct (or none: UINT32_MAX): its voided batches (as JSON, in journal
 * order), the latest change of its key, its freeze, and the latest
 * certification. Records are copied out: the list may move once the lock
 * is released.
 */
struct amend_view {
	uint32_t p;
	struct bal_text voided; /* ",{...}" per voided batch of p */
	bool has_key, has_frozen, has_cert;
	struct bal_amend_rec key, frozen, cert;
};

static void on_amendment(void *arg, const struct bal_amend_rec *r)
{
	struct amend_view *v = arg;
	if (r->change == BAL_CHANGE_CERTIFY) {
		v->cert = *r;
		v->has_cert = true;
	}
	if (r->precinct != v->p || v->p == UINT32_MAX)
		return;
	switch (r->change) {
	case BAL_CHANGE_REVOKE_KEY:
	case BAL_CHANGE_SET_KEY:
		v->key = *r;
		v->has_key = true;
		break;
	case BAL_CHANGE_FREEZE:
		v->frozen = *r;
		v->has_frozen = true;
		break;
	case BAL_CHANGE_VOID:
		bal_text_printf(&v->voided, ",{\"position\":%llu,\"seq\":%llu,\"amendment_position\":%llu,\"reason\":",
		                U64(r->target), U64(r->target_seq), U64(r->position));
		bal_text_json(&v->voided, r->reason);
		bal_text_printf(&v->voided, "}");
		break;
	default: break;
	}
}

static void amend_view(struct bal_daemon *d, uint32_t p, uint64_t upto, struct amend_view *v)
{
	memset(v, 0, sizeof(*v));
	v->p = p;
	bal_amend_each(d->amend, upto, on_amendment, v);
}

/* ,"certified":{"position", "amendment_position", "reason"} or null: the
 * latest certification. */
static void certified_json(struct bal_text *b, const struct amend_view *v)
{
	bal_text_printf(b, ",\"certified\":");
	if (!v->has_cert) {
		bal_text_printf(b, "null");
		return;
	}
	bal_text_printf(b, "{\"position\":%llu,\"amendment_position\":%llu,\"reason\":", U64(v->cert.target),
	                U64(v->cert.position));
	bal_text_json(b, v->cert.reason);
	bal_text_printf(b, "}");
}

/* A precinct's key, freeze and voided batches (see amend_view). */
static void precinct_amendments_json(struct bal_text *b, const struct bal_precinct *pr, const struct amend_view *v)
{
	const char *state = v->has_key ? (v->key.change == BAL_CHANGE_REVOKE_KEY ? "revoked" : "amended")
	                               : (pr->has_key ? "definition" : "none");
	bal_text_printf(b, ",\"key\":{\"state\":\"%s\",\"amendment_position\":", state);
	if (v->has_key)
		bal_text_printf(b, "%llu}", U64(v->key.position));
	else
		bal_text_printf(b, "null}");
	bal_text_printf(b, ",\"frozen\":");
	if (v->has_frozen) {
		bal_text_printf(b, "{\"amendment_position\":%llu,\"reason\":", U64(v->frozen.position));
		bal_text_json(b, v->frozen.reason);
		bal_text_printf(b, "}");
	} else {
		bal_text_printf(b, "null");
	}
	bal_text_printf(b, ",\"voided\":[%s]", v->voided.p ? v->voided.p + 1 : "");
	if (v->voided.oom)
		b->oom = true;
	certified_json(b, v);
}

/* ---- GET /v1/snapshot ----------------------------------------------------- */

static int build_snapshot(struct bal_daemon *d, uint64_t *scratch, void *params, struct bal_text *out,
                          uint64_t *position)
{
	(void)params;
	struct view v = view_copy(d, scratch, true);
	struct bal_text b = {0};
	bal_text_printf(&b, "{\"election\":{\"id\":");
	bal_text_json(&b, v.d->election_id);
	bal_text_printf(&b, ",\"name\":");
	bal_text_json(&b, v.d->election_name);
	bal_text_printf(&b, ",\"date\":");
	bal_text_json(&b, v.d->election_date);
	bal_text_printf(&b, ",\"definition_sha256\":\"");
	for (int i = 0; i < 32; i++)
		bal_text_printf(&b, "%02x", v.d->hash[i]);
	bal_text_printf(&b,
	                "\"},\"position\":%llu,\"batches\":%llu,\"precincts_reporting\":%llu,\"precincts_total\":%u,"
	                "\"precincts_with_protocol\":%llu,\"precincts_with_discrepancy\":%llu,"
	                "\"registered_voters\":%llu,\"turnout\":",
	                U64(v.pos), U64(v.ctr[bal_slot_global(v.l, BAL_G_BATCHES)]),
	                U64(v.ctr[bal_slot_global(v.l, BAL_G_PRECINCTS_REPORTING)]), v.d->nprecincts,
	                U64(v.ctr[bal_slot_global(v.l, BAL_G_PROTOCOLS)]),
	                U64(v.ctr[bal_slot_global(v.l, BAL_G_DISCREPANCIES)]), U64(v.d->registered_total));
	turnout_json(&b, v.l, v.ctr, total_turnout, 0);
	struct amend_view av;
	amend_view(d, UINT32_MAX, v.pos, &av);
	certified_json(&b, &av);
	bal_text_printf(&b, ",\"contests\":[");
	for (uint32_t c = 0; c < v.d->ncontests; c++) {
		const struct bal_contest *ct = &v.d->contests[c];
		uint64_t total = 0;
		for (uint32_t k = 0; k < ct->nchoices; k++)
			total += v.ctr[bal_slot_contest_choice(v.l, c, k)];
		bal_text_printf(&b, "%s{\"id\":%u,\"name\":", c ? "," : "", ct->id);
		bal_text_json(&b, ct->name);
		bal_text_printf(&b, ",\"kind\":\"%s\",\"seats\":%u,\"district_id\":", contest_kind(ct), ct->seats);
		if (ct->district < 0)
			bal_text_printf(&b, "null");
		else
			bal_text_printf(&b, "%u", v.d->districts[ct->district].id);
		bal_text_printf(&b, ",\"total_votes\":%llu,\"choices\":[", U64(total));
		for (uint32_t k = 0; k < ct->nchoices; k++) {
			bal_text_printf(&b, "%s{\"id\":%u,\"index\":%u,\"name\":", k ? "," : "", ct->choices[k].id, k);
			bal_text_json(&b, ct->choices[k].name);
			bal_text_printf(&b, ",\"votes\":%llu}", U64(v.ctr[bal_slot_contest_choice(v.l, c, k)]));
		}
		bal_text_printf(&b, "],\"districts\":[");
		bool first = true;
		for (uint32_t di = 0; di < v.d->ndistricts; di++) {
			if (bal_slot_district_choice(v.l, c, di, 0) == BAL_SLOT_NONE)
				continue;
			bal_text_printf(&b, "%s{\"id\":%u,\"name\":", first ? "" : ",", v.d->districts[di].id);
			bal_text_json(&b, v.d->districts[di].name);
			bal_text_printf(&b, ",\"votes\":[");
			for (uint32_t k = 0; k < ct->nchoices; k++)
				bal_text_printf(&b, "%s%llu", k ? "," : "",
				                U64(v.ctr[bal_slot_district_choice(v.l, c, di, k)]));
			bal_text_printf(&b, "]}");
			first = false;
		}
		bal_text_printf(&b, "]}");
	}
	bal_text_printf(&b, "]}\n");
	*out = b;
	*position = v.pos;
	return 0;
}

/* ---- GET /v1/precincts/{id} ------------------------------------------------ */

struct seq_walk {
	struct bal_text *b;
	uint64_t upto;   /* journal position of the counters view */
	uint64_t expect; /* next seq if there were no gap */
	uint64_t run_lo; /* current run of accepted seqs */
	uint64_t run_hi;
	uint64_t count;
	struct bal_text gaps;
	bool first_run;
};

static void close_run(struct seq_walk *sw)
{
	if (!sw->run_lo)
		return;
	bal_text_printf(sw->b, "%s[%llu,%llu]", sw->first_run ? "" : ",", U64(sw->run_lo), U64(sw->run_hi));
	sw->first_run = false;
}

static int on_seq(void *arg, uint64_t seq, uint64_t position)
{
	struct seq_walk *sw = arg;
	if (position > sw->upto)
		return 0; /* committed after the counters we show */
	sw->count++;
	if (sw->run_lo && seq == sw->run_hi + 1) {
		sw->run_hi = seq;
	} else {
		close_run(sw);
		if (seq > sw->expect)
			bal_text_printf(&sw->gaps, "%s[%llu,%llu]", sw->gaps.n ? "," : "", U64(sw->expect),
			                U64(seq - 1));
		sw->run_lo = sw->run_hi = seq;
	}
	sw->expect = seq + 1;
	return 0;
}

struct conflict_walk {
	struct bal_text *b;
	bool first;
};

static int on_conflict(void *arg, uint64_t seq, uint64_t original, const uint8_t *bytes, size_t len)
{
	struct conflict_walk *cw = arg;
	(void)bytes;
	bal_text_printf(cw->b, "%s{\"seq\":%llu,\"original_position\":%llu,\"bytes\":%zu}", cw->first ? "" : ",",
	                U64(seq), U64(original), len);
	cw->first = false;
	return 0;
}

/*
 * "protocol_seq", then where the precinct's counted protocol differs from the
 * sum of its ballot batches: "discrepancies" per (contest, choice) and
 * "turnout_discrepancies" per turnout field; difference = protocol - ballots.
 */
static void sb_signed_diff(struct bal_text *b, uint64_t protocol, uint64_t ballots)
{
	if (protocol >= ballots)
		bal_text_printf(b, "%llu", U64(protocol - ballots));
	else
		bal_text_printf(b, "-%llu", U64(ballots - protocol));
}

static void discrepancies_json(struct bal_text *b, const struct bal_defn *d, const struct bal_layout *l,
                               const uint64_t *ctr, uint32_t p)
{
	const bool has = bal_tally_protocol_seq(l, ctr, p) != 0;
	bal_text_printf(b, ",\"protocol_seq\":%llu,\"discrepancies\":[", U64(bal_tally_protocol_seq(l, ctr, p)));
	bool first = true;
	for (uint32_t c = 0; c < d->ncontests && has; c++) {
		if (!bal_defn_votes_in(d, p, c))
			continue;
		const struct bal_contest *ct = &d->contests[c];
		for (uint32_t k = 0; k < ct->nchoices; k++) {
			uint32_t slot = bal_slot_precinct_choice(l, p, c, k);
			uint64_t pv = ctr[slot], bv = bal_tally_ballot_sum(l, ctr, p, slot);
			if (pv == bv)
				continue;
			bal_text_printf(b,
			                "%s{\"contest_id\":%u,\"choice_id\":%u,\"choice_index\":%u,\"protocol\":%llu,"
			                "\"ballots\":%llu,\"difference\":",
			                first ? "" : ",", ct->id, ct->choices[k].id, k, U64(pv), U64(bv));
			sb_signed_diff(b, pv, bv);
			bal_text_printf(b, "}");
			first = false;
		}
	}
	static const char *const fields[] = {
	        [BAL_T_ISSUED] = "issued", [BAL_T_CAST] = "cast", [BAL_T_SPOILED] = "spoiled"};
	bal_text_printf(b, "],\"turnout_discrepancies\":[");
	first = true;
	for (uint32_t f = BAL_T_ISSUED; f <= BAL_T_SPOILED && has; f++) {
		uint32_t slot = bal_slot_precinct_turnout(l, p, f);
		uint64_t pv = ctr[slot], bv = bal_tally_ballot_sum(l, ctr, p, slot);
		if (pv == bv)
			continue;
		bal_text_printf(b, "%s{\"field\":\"%s\",\"protocol\":%llu,\"ballots\":%llu,\"difference\":",
		                first ? "" : ",", fields[f], U64(pv), U64(bv));
		sb_signed_diff(b, pv, bv);
		bal_text_printf(b, "}");
		first = false;
	}
	bal_text_printf(b, "]");
}

int bal_query_number(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	if (s[0] < '0' || s[0] > '9' || (s[0] == '0' && s[1]))
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > (max - (uint64_t)(*s - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return 0;
}

static void precinct(struct bal_req *req, const char *idstr)
{
	struct bal_worker *w = req->conn->w;
	const struct bal_defn *d = w->d->defn;
	const struct bal_layout *l = w->d->layout;
	uint64_t id;
	if (bal_query_number(idstr, UINT32_MAX, &id)) {
		send_error(req, 400, "precinct id '%.40s' is not a number in [0, %u] in canonical form", idstr,
		           UINT32_MAX);
		return;
	}
	int32_t p = bal_defn_precinct(d, (uint32_t)id);
	if (p < 0) {
		send_error(req, 404, "precinct %llu is not in the definition", U64(id));
		return;
	}
	const struct view v = view_of_precinct(req, (uint32_t)p);
	const uint64_t pos = v.pos, *ctr = v.ctr;
	const struct bal_precinct *pr = &d->precincts[p];
	struct bal_text b = {0};
	bal_text_printf(&b, "{\"id\":%u,\"district_id\":%u,\"registered_voters\":%llu,\"position\":%llu,\"turnout\":",
	                pr->id, d->districts[pr->district].id, U64(pr->registered_voters), U64(pos));
	turnout_json(&b, l, ctr, bal_slot_precinct_turnout, (uint32_t)p);
	bal_text_printf(&b, ",\"contests\":[");
	bool first = true;
	for (uint32_t c = 0; c < d->ncontests; c++) {
		if (!bal_defn_votes_in(d, (uint32_t)p, c))
			continue;
		const struct bal_contest *ct = &d->contests[c];
		bal_text_printf(&b, "%s{\"id\":%u,\"name\":", first ? "" : ",", ct->id);
		bal_text_json(&b, ct->name);
		bal_text_printf(&b, ",\"votes\":[");
		for (uint32_t k = 0; k < ct->nchoices; k++)
			bal_text_printf(&b, "%s%llu", k ? "," : "",
			                U64(ctr[bal_slot_precinct_choice(l, (uint32_t)p, c, k)]));
		bal_text_printf(&b, "]}");
		first = false;
	}
	bal_text_printf(&b, "],\"accepted_seqs\":[");
	struct seq_walk sw = {.b = &b, .upto = pos, .expect = 1, .first_run = true};
	int err = bal_store_precinct_scan(w->d->store, pr->id, on_seq, &sw);
	close_run(&sw);
	bal_text_printf(&b, "],\"accepted_batches\":%llu,\"gaps\":[%s],\"conflicts\":[", U64(sw.count),
	                sw.gaps.p ? sw.gaps.p : "");
	free(sw.gaps.p);
	struct conflict_walk cw = {.b = &b, .first = true};
	if (!err)
		err = bal_store_conflict_scan(w->d->store, pr->id, on_conflict, &cw);
	uint64_t stored = 0, unstored = 0;
	if (!err)
		err = bal_store_conflict_counts(w->d->store, pr->id, &stored, &unstored);
	/* Conflicting versions beyond the caps (or already recorded) are
	 * counted, not stored. */
	bal_text_printf(&b, "],\"conflicts_stored\":%llu,\"conflicts_unstored\":%llu", U64(stored), U64(unstored));
	/* The quota's use as of the latest commit (it may be ahead of `pos`). */
	uint64_t used = 0, quota = UINT64_MAX;
	(void)bal_store_precinct_bytes(w->d->store, (uint32_t)p, &used, &quota);
	bal_text_printf(&b, ",\"journal_bytes\":%llu,\"journal_quota\":", U64(used));
	if (quota == UINT64_MAX)
		bal_text_printf(&b, "null");
	else
		bal_text_printf(&b, "%llu", U64(quota));
	discrepancies_json(&b, d, l, ctr, (uint32_t)p);
	struct amend_view av;
	amend_view(w->d, (uint32_t)p, pos, &av);
	precinct_amendments_json(&b, pr, &av);
	free(av.voided.p);
	bal_text_printf(&b, "}\n");
	if (err) {
		free(b.p);
		send_error(req, 503, "reading the journal failed: %s", bal_strerror(err));
		return;
	}
	send_text(req, 200, "application/json", &b);
}

/* ---- GET /v1/seats ---------------------------------------------------------- */

static int build_seats(struct bal_daemon *d, uint64_t *scratch, void *params, struct bal_text *text, uint64_t *position)
{
	(void)params;
	struct view v = view_copy(d, scratch, true);
	uint32_t maxc = 0;
	for (uint32_t c = 0; c < v.d->ncontests; c++)
		if (v.d->contests[c].nchoices > maxc)
			maxc = v.d->contests[c].nchoices;
	uint64_t *votes = malloc(maxc * sizeof(*votes));
	uint32_t *seat = malloc(maxc * sizeof(*seat));
	bool *passed = malloc(maxc * sizeof(*passed));
	struct bal_text b = {0};
	if (!votes || !seat || !passed) {
		b.oom = true;
		goto out;
	}
	bal_text_printf(&b, "{\"position\":%llu,\"precincts_reporting\":%llu,\"precincts_total\":%u,\"contests\":[",
	                U64(v.pos), U64(v.ctr[bal_slot_global(v.l, BAL_G_PRECINCTS_REPORTING)]), v.d->nprecincts);
	for (uint32_t c = 0; c < v.d->ncontests; c++) {
		const struct bal_contest *ct = &v.d->contests[c];
		uint64_t total = 0;
		for (uint32_t k = 0; k < ct->nchoices; k++)
			total += votes[k] = v.ctr[bal_slot_contest_choice(v.l, c, k)];
		bool tie = false;
		int allocated = bal_seats_allocate(ct, votes, seat, passed, &tie);
		bal_text_printf(&b, "%s{\"id\":%u,\"name\":", c ? "," : "", ct->id);
		bal_text_json(&b, ct->name);
		bal_text_printf(&b,
		                ",\"kind\":\"%s\",\"seats\":%u,\"allocated\":%d,\"tie\":%s,\"total_votes\":%llu,"
		                "\"threshold_percent\":%g,\"choices\":[",
		                contest_kind(ct), ct->seats, allocated < 0 ? 0 : allocated, tie ? "true" : "false",
		                U64(total), ct->threshold_percent);
		for (uint32_t k = 0; k < ct->nchoices; k++) {
			bal_text_printf(&b, "%s{\"id\":%u,\"index\":%u,\"name\":", k ? "," : "", ct->choices[k].id, k);
			bal_text_json(&b, ct->choices[k].name);
			bal_text_printf(&b,
			                ",\"votes\":%llu,\"percent\":%.4f,\"seat_eligible\":%s,\"passed_threshold\":%s,"
			                "\"seats\":%u}",
			                U64(votes[k]), total ? 100.0 * (double)votes[k] / (double)total : 0.0,
			                ct->choices[k].seat_eligible ? "true" : "false",
			                allocated >= 0 && passed[k] ? "true" : "false", allocated >= 0 ? seat[k] : 0);
		}
		bal_text_printf(&b, "]}");
	}
	bal_text_printf(&b, "]}\n");
out:
	free(votes);
	free(seat);
	free(passed);
	*text = b;
	*position = v.pos;
	return 0;
}

/* ---- GET /v1/results.csv ------------------------------------------------------ */

/* Writes `v` in decimal at `p`, in place; returns the digits written (at most 20). */
static size_t put_decimal(char *p, uint64_t v)
{
	size_t n = 1;
	for (uint64_t rest = v / 10; rest; rest /= 10)
		n++;
	for (size_t i = n; i > 0; v /= 10)
		p[--i] = (char)('0' + v % 10);
	return n;
}

/*
 * One line "district_id,precinct_id,contest_id,choice_id,votes" per
 * (precinct, contest on its ballot, choice), in the definition's order.
 * Formatted by hand: it is the largest answer, about 160,000 lines for a
 * national election, and printf would spend most of its time parsing the
 * format.
 */
static int build_results_csv(struct bal_daemon *d, uint64_t *scratch, void *params, struct bal_text *out,
                             uint64_t *position)
{
	(void)params;
	struct view v = view_copy(d, scratch, false);
	struct bal_text b = {0};
	bal_text_printf(&b, "district_id,precinct_id,contest_id,choice_id,votes\n");
	for (uint32_t p = 0; p < v.d->nprecincts && !b.oom; p++) {
		const struct bal_precinct *pr = &v.d->precincts[p];
		char prefix[24]; /* "district_id,precinct_id," */
		size_t pl = put_decimal(prefix, v.d->districts[pr->district].id);
		prefix[pl++] = ',';
		pl += put_decimal(prefix + pl, pr->id);
		prefix[pl++] = ',';
		for (uint32_t c = 0; c < v.d->ncontests; c++) {
			if (!bal_defn_votes_in(v.d, p, c))
				continue;
			const struct bal_contest *ct = &v.d->contests[c];
			for (uint32_t k = 0; k < ct->nchoices; k++) {
				/* prefix, two ids of 10 digits, votes of 20, separators */
				bal_text_reserve(&b, sizeof(prefix) + 10 + 10 + 20 + 4);
				if (b.oom)
					break;
				char *at = b.p + b.n;
				memcpy(at, prefix, pl);
				at += pl;
				at += put_decimal(at, ct->id);
				*at++ = ',';
				at += put_decimal(at, ct->choices[k].id);
				*at++ = ',';
				at += put_decimal(at, v.ctr[bal_slot_precinct_choice(v.l, p, c, k)]);
				*at++ = '\n';
				b.n = (size_t)(at - b.p);
			}
		}
	}
	*out = b;
	*position = v.pos;
	return 0;
}

/* ---- GET /v1/journal?from=N&limit=M ------------------------------------------------ */

#define JOURNAL_LIMIT_DEFAULT 10000
#define JOURNAL_LIMIT_MAX     100000

struct journal_walk {
	struct bal_text *b;
	uint64_t upto;  /* last committed position when the request was read */
	uint64_t left;  /* records still allowed */
	size_t max_out; /* body bytes allowed (--max-output), at least one record */
	uint64_t next;  /* position after the last record written */
};

#define JOURNAL_STOP 1

static int on_journal(void *arg, uint64_t position, const uint8_t *bytes, size_t len)
{
	struct journal_walk *jw = arg;
	if (position > jw->upto || !jw->left || (jw->b->n && jw->b->n + 12 + len > jw->max_out))
		return JOURNAL_STOP;
	if (len > UINT32_MAX)
		return -EOVERFLOW;
	bal_text_reserve(jw->b, 12 + len);
	if (jw->b->oom)
		return JOURNAL_STOP;
	uint8_t *p = (uint8_t *)jw->b->p + jw->b->n;
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(position >> (56 - 8 * i));
	for (int i = 0; i < 4; i++)
		p[8 + i] = (uint8_t)(len >> (24 - 8 * i));
	memcpy(p + 12, bytes, len);
	jw->b->n += 12 + len;
	jw->left--;
	jw->next = position + 1;
	return 0;
}

/* Parses "from" and "limit" of the query string; false after answering 400. */
static bool journal_params(struct bal_req *req, const char *query, uint64_t *from, uint64_t *limit)
{
	char buf[BAL_HTTP_MAX_URL];
	snprintf(buf, sizeof(buf), "%s", query);
	char *save = NULL;
	for (char *kv = strtok_r(buf, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
		char *val = strchr(kv, '=');
		uint64_t *dst = NULL, lo = 1, hi = UINT64_MAX;
		if (val)
			*val++ = '\0';
		if (strcmp(kv, "from") == 0) {
			dst = from;
		} else if (strcmp(kv, "limit") == 0) {
			dst = limit;
			hi = JOURNAL_LIMIT_MAX;
		} else {
			send_error(req, 400, "unknown parameter '%.40s' (from, limit)", kv);
			return false;
		}
		uint64_t v = 0;
		if (!val || bal_query_number(val, hi, &v) != 0 || v < lo) {
			send_error(req, 400, "%s '%.40s' is not a number in [%llu, %llu]", kv, val ? val : "", U64(lo),
			           U64(hi));
			return false;
		}
		*dst = v;
	}
	return true;
}

/* A journal page asked for, and what its build found. */
struct journal_page {
	uint64_t from, limit;
	uint64_t upto; /* last committed position when the request was read */
	uint64_t next; /* out: where the next page starts */
	int err;       /* out: the journal could not be read */
};

/*
 * The exact journaled SignedBatch bytes of positions from..from+limit-1, cut at
 * the position committed when the request was read and at --max-output bytes
 * (one record at least): records of position (u64 BE), length (u32 BE), bytes.
 * `params` is a struct answer_params holding the page.
 */
static int build_journal(struct bal_daemon *d, uint64_t *scratch, void *params, struct bal_text *out,
                         uint64_t *position);

/* ---- answers built once and shared ------------------------------------------------ */

/* What an answer is built from; for the reader, also what it found. */
struct answer_params {
	enum bal_answer kind; /* BAL_ANSWER_KINDS: a journal page */
	struct journal_page page;
};
_Static_assert(sizeof(struct answer_params) <= BAL_ANSWER_PARAMS, "fits a wait");

static const struct {
	const char *ctype;
	bal_answer_build build;
	bool heavy; /* built by the reader thread, else by the I/O thread asking (a millisecond or less) */
} answers[BAL_ANSWER_KINDS + 1] = {
        [BAL_ANSWER_RESULTS_CSV] = {"text/csv", build_results_csv, true},
        [BAL_ANSWER_SNAPSHOT] = {"application/json", build_snapshot, false},
        [BAL_ANSWER_SEATS] = {"application/json", build_seats, false},
        [BAL_ANSWER_KINDS] = {"application/octet-stream", build_journal, true},
};

static int build_journal(struct bal_daemon *d, uint64_t *scratch, void *params, struct bal_text *out,
                         uint64_t *position)
{
	(void)scratch;
	struct journal_page *pg = &((struct answer_params *)params)->page;
	struct bal_text b = {0};
	struct journal_walk jw = {
	        .b = &b, .upto = pg->upto, .left = pg->limit, .max_out = d->cfg.max_output - 1024, .next = pg->from};
	int err = pg->from - 1 < jw.upto ? bal_store_journal_scan(d->store, pg->from - 1, on_journal, &jw) : 0;
	if (err && err != JOURNAL_STOP) {
		free(b.p);
		b = (struct bal_text){0};
		pg->err = err;
	}
	pg->next = jw.next;
	*out = b;
	*position = pg->upto;
	return 0;
}

/* Answers `req` with `b` (a reference it takes over; NULL: not built), built for `ap`. */
static void send_answer(struct bal_req *req, const struct answer_params *ap, struct bal_body *b)
{
	char extra[96] = "";
	if (!b) {
		send_error_x(req, 503, "Retry-After: 1\r\n", "out of memory building the answer");
		return;
	}
	if (ap->kind == BAL_ANSWER_RESULTS_CSV) {
		/* The journal prefix this CSV folds travels in a header, keeping the body plain CSV. */
		snprintf(extra, sizeof(extra), "X-Ballotd-Position: %llu\r\n", U64(b->position));
	} else if (ap->kind == BAL_ANSWER_KINDS) {
		const struct journal_page *pg = &ap->page;
		if (pg->err) {
			bal_body_release(b);
			send_error(req, 503, "reading the journal after position %llu failed: %s", U64(pg->from - 1),
			           bal_strerror(pg->err));
			return;
		}
		snprintf(extra, sizeof(extra), "X-Ballotd-Position: %llu\r\nX-Ballotd-Next: %llu\r\n", U64(pg->upto),
		         U64(pg->next));
	}
	bal_req_respond_shared(req, 200, answers[ap->kind].ctype, extra[0] ? extra : NULL, b);
	bal_body_release(b);
}

/* Loop thread: the answer a request waited for is there. */
static void on_built(void *arg, struct bal_body *b, void *params)
{
	struct bal_req *req = arg;
	req->wait = NULL;
	send_answer(req, params, b);
	bal_conn_flush(req->conn);
}

/*
 * Answers `req` with the answer `ap` names. Without a cache (a daemon
 * context built without one) it is built here for this request alone.
 * With one, a cached answer at the position published now or later is
 * shared; a cheap one missing is built here and cached; a heavy one is
 * waited for (the request stays BAL_REQ_WAITING, answers behind it wait
 * their turn), unless --max-heavy-queries requests wait already.
 */
static void answer(struct bal_req *req, struct answer_params *ap)
{
	struct bal_worker *w = req->conn->w;
	struct bal_daemon *d = w->d;
	enum bal_answer kind = ap->kind;
	bal_answer_build build = answers[kind].build;
	struct bal_cache *cache = d->cache;
	if (!cache) {
		send_answer(req, ap, bal_answer_make(d, w->scratch, kind, build, ap));
		return;
	}
	/* Never behind what was published when the request was read: a client
	 * that has its ack sees its batch. */
	uint64_t min_pos = bal_pub_read_range(&d->pub, 0, 0, NULL);
	struct bal_body *b = NULL;
	if (!answers[kind].heavy) {
		b = bal_cache_get(cache, kind, min_pos);
		if (!b) {
			b = bal_answer_make(d, w->scratch, kind, build, ap);
			if (b)
				bal_cache_put(cache, kind, b);
		}
		send_answer(req, ap, b);
		return;
	}
	struct bal_wait *wait = NULL;
	switch (bal_cache_answer(cache, &w->loop, kind, min_pos, build, ap, sizeof(*ap), on_built, req, &b, &wait)) {
	case BAL_CACHE_HIT: send_answer(req, ap, b); break;
	case BAL_CACHE_WAIT:
		req->wait = wait;
		req->state = BAL_REQ_WAITING;
		break;
	case BAL_CACHE_REFUSED:
		send_error_x(req, 503, "Retry-After: 1\r\n",
		             "%u requests wait for heavy answers being built (--max-heavy-queries); retry",
		             d->cfg.max_heavy_queries);
		break;
	case BAL_CACHE_NOMEM: send_answer(req, ap, NULL); break;
	}
}

void bal_query_abandon(struct bal_req *req)
{
	bal_cache_cancel(req->wait);
	req->wait = NULL;
}

static void journal(struct bal_req *req, const char *query)
{
	struct bal_daemon *d = req->conn->w->d;
	struct answer_params ap = {.kind = BAL_ANSWER_KINDS, .page = {.from = 1, .limit = JOURNAL_LIMIT_DEFAULT}};
	if (!journal_params(req, query, &ap.page.from, &ap.page.limit))
		return;
	ap.page.upto = bal_store_position(d->store);
	ap.page.next = ap.page.from;
	answer(req, &ap);
}

static void shared(struct bal_req *req, enum bal_answer kind)
{
	struct answer_params ap = {.kind = kind};
	answer(req, &ap);
}

/* ---- GET /healthz and /metrics --------------------------------------------------- */

/*
 * 200 only while batches can be accepted, so that a load balancer sends
 * stations elsewhere otherwise: 503 with the reason while the journal is
 * full or commits fail, while draining, or while the committer has spent
 * cfg.stall_ms on one set of batches (a disk that no longer answers).
 */
static void healthz(struct bal_req *req)
{
	struct bal_daemon *d = req->conn->w->d;
	int err = __atomic_load_n(&d->degraded_errno, __ATOMIC_RELAXED);
	bool draining = __atomic_load_n(&d->draining, __ATOMIC_RELAXED);
	uint64_t busy = __atomic_load_n(&d->committer_busy_ms, __ATOMIC_RELAXED), now = bal_now_ms();
	bool stalled = busy && now > busy && now - busy >= d->cfg.stall_ms;
	struct bal_store_info info = {0};
	bal_store_info(d->store, &info);
	char why[200] = "";
	if (err == -ENOSPC)
		snprintf(why, sizeof(why),
		         "journal full: LMDB map or disk full (%llu of %llu bytes used); new batches get 507",
		         U64(info.map_used), U64(info.map_size));
	else if (err)
		snprintf(why, sizeof(why), "journal commits failing: %s; new batches get 503", bal_strerror(err));
	else if (stalled)
		snprintf(why, sizeof(why),
		         "committer stalled: one group commit has taken %llu ms (--stall-timeout %u ms)",
		         U64(now - busy), d->cfg.stall_ms);
	else if (draining)
		snprintf(why, sizeof(why), "shutting down: new batches get 503");
	struct bal_text b = {0};
	bal_text_printf(&b,
	                "{\"status\":\"%s\",\"position\":%llu,\"snapshot_position\":%llu,\"map_used\":%llu,"
	                "\"map_size\":%llu,\"draining\":%s,\"auth\":%s,\"keyless_precincts\":%u",
	                why[0] ? "degraded" : "ok", U64(info.position), U64(info.snapshot_position), U64(info.map_used),
	                U64(info.map_size), draining ? "true" : "false", d->cfg.auth ? "true" : "false", d->keyless);
	if (why[0]) {
		bal_text_printf(&b, ",\"reason\":");
		bal_text_json(&b, why);
	}
	bal_text_printf(&b, "}\n");
	send_text_x(req, why[0] ? 503 : 200, "application/json", why[0] ? "Retry-After: 1\r\n" : NULL, &b);
}

static void metrics(struct bal_req *req)
{
	struct bal_text b = {0};
	bal_metrics_write(req->conn->w->d, &b);
	send_text(req, 200, BAL_METRICS_CTYPE, &b);
}

/* ---- routing --------------------------------------------------------------------- */

void bal_query_request(struct bal_req *req, const struct bal_http_req *head)
{
	char path[BAL_HTTP_MAX_URL];
	size_t n = strcspn(head->url, "?");
	memcpy(path, head->url, n);
	path[n] = '\0';
	bool known = strcmp(path, "/v1/snapshot") == 0 || strcmp(path, "/v1/seats") == 0 ||
	             strcmp(path, "/v1/results.csv") == 0 || strcmp(path, "/v1/journal") == 0 ||
	             strcmp(path, "/healthz") == 0 || strcmp(path, "/metrics") == 0 ||
	             strncmp(path, "/v1/precincts/", 14) == 0 || strcmp(path, "/v1/batches") == 0 ||
	             strcmp(path, "/v1/amendments") == 0 || strncmp(path, "/v1/log/", 8) == 0;
	if (!known) {
		send_error(req, 404, "no such endpoint: %.100s", path);
		return;
	}
	if (head->method != HTTP_GET) {
		send_error(req, 405, "%s %.100s is not supported%s", http_method_str(head->method), path,
		           strcmp(path, "/v1/batches") == 0      ? " (POST a SignedBatch)"
		           : strcmp(path, "/v1/amendments") == 0 ? " (POST a SignedAmendment)"
		                                                 : " (use GET)");
		return;
	}
	if (strcmp(path, "/v1/batches") == 0)
		send_error(req, 405, "GET /v1/batches is not supported (POST a SignedBatch)");
	else if (strcmp(path, "/v1/amendments") == 0)
		send_error(req, 405, "GET /v1/amendments is not supported (POST a SignedAmendment)");
	else if (strcmp(path, "/v1/snapshot") == 0)
		shared(req, BAL_ANSWER_SNAPSHOT);
	else if (strcmp(path, "/v1/seats") == 0)
		shared(req, BAL_ANSWER_SEATS);
	else if (strcmp(path, "/v1/results.csv") == 0)
		shared(req, BAL_ANSWER_RESULTS_CSV);
	else if (strcmp(path, "/v1/journal") == 0)
		journal(req, head->url[n] ? head->url + n + 1 : "");
	else if (strcmp(path, "/healthz") == 0)
		healthz(req);
	else if (strcmp(path, "/metrics") == 0)
		metrics(req);
	else if (strncmp(path, "/v1/log/", 8) == 0)
		bal_tlog_request(req, path + 8, head->url[n] ? head->url + n + 1 : "");
	else
		precinct(req, path + 14);
}
