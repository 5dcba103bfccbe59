/* SPDX-License-Identifier: Apache-2.0 */
/*
 * PostgreSQL as a bench target, with the durability ballotd has: fsync on,
 * synchronous_commit on, one transaction per batch. Each batch is one
 * prepared statement (the INGEST_SQL below) run as its own implicit
 * transaction: insert the raw SignedBatch with the (precinct_id, seq)
 * primary key for dedup, then, only if the insert happened, upsert the
 * per-district and per-precinct vote counters and the precinct's turnout
 * with the batch's pre-aggregated increments (bench_delta).
 *
 * Concurrency: libpq pipeline mode on a non-blocking connection watched by a
 * uv_poll_t. Every batch is PQsendQueryPrepared + PQpipelineSync, so the
 * sync ends the implicit transaction (without a sync, a pipeline would run
 * everything up to the next sync as one transaction); with --pipeline P a
 * connection has up to P batches queued on its backend, which runs them one
 * after the other. Concurrent transactions come from the connections.
 *
 * Deadlocks: a batch updates district counters in (contest, choice) order
 * within one district, so every transaction locks counter rows in one global
 * order (contest, district, choice) and no cycle can form.
 *
 * Depends on libpq, libuv and bench/loadgen.h.
 */
#include "bench/targets.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OID_INT4       23
#define OID_INT8       20
#define OID_BYTEA      17
#define OID_INT4_ARRAY 1007
#define OID_INT8_ARRAY 1016

static const char SCHEMA_SQL[] =
        "CREATE TABLE IF NOT EXISTS batches (precinct_id integer NOT NULL, seq bigint NOT NULL, body bytea NOT NULL,"
        "  PRIMARY KEY (precinct_id, seq));"
        "CREATE TABLE IF NOT EXISTS district_votes (contest_id integer NOT NULL, district_id integer NOT NULL,"
        "  choice integer NOT NULL, votes bigint NOT NULL, PRIMARY KEY (contest_id, district_id, choice));"
        "CREATE TABLE IF NOT EXISTS precinct_votes (precinct_id integer NOT NULL, contest_id integer NOT NULL,"
        "  choice integer NOT NULL, votes bigint NOT NULL, PRIMARY KEY (precinct_id, contest_id, choice));"
        "CREATE TABLE IF NOT EXISTS precinct_turnout (precinct_id integer PRIMARY KEY, batches bigint NOT NULL,"
        "  ballots bigint NOT NULL, issued bigint NOT NULL, ballots_cast bigint NOT NULL, spoiled bigint NOT NULL);";

/* $1 precinct_id, $2 seq, $3 body, $4 contest ids, $5 choice indices, $6 votes, $7 district_id,
 * $8 ballots, $9 issued, $10 cast, $11 spoiled. Returns 1 if the batch was new, 0 if a duplicate. */
static const char INGEST_SQL[] =
        "WITH ins AS (INSERT INTO batches (precinct_id, seq, body) VALUES ($1, $2, $3)"
        "  ON CONFLICT DO NOTHING RETURNING 1),"
        " dv AS (INSERT INTO district_votes AS t (contest_id, district_id, choice, votes)"
        "  SELECT u.c, $7, u.k, u.v FROM unnest($4::integer[], $5::integer[], $6::bigint[]) AS u(c, k, v)"
        "  WHERE EXISTS (SELECT FROM ins)"
        "  ON CONFLICT (contest_id, district_id, choice) DO UPDATE SET votes = t.votes + excluded.votes),"
        " pv AS (INSERT INTO precinct_votes AS t (precinct_id, contest_id, choice, votes)"
        "  SELECT $1, u.c, u.k, u.v FROM unnest($4::integer[], $5::integer[], $6::bigint[]) AS u(c, k, v)"
        "  WHERE EXISTS (SELECT FROM ins)"
        "  ON CONFLICT (precinct_id, contest_id, choice) DO UPDATE SET votes = t.votes + excluded.votes),"
        " pt AS (INSERT INTO precinct_turnout AS t (precinct_id, batches, ballots, issued, ballots_cast, spoiled)"
        "  SELECT $1, 1, $8, $9, $10, $11 WHERE EXISTS (SELECT FROM ins)"
        "  ON CONFLICT (precinct_id) DO UPDATE SET batches = t.batches + 1, ballots = t.ballots + excluded.ballots,"
        "  issued = t.issued + excluded.issued, ballots_cast = t.ballots_cast + excluded.ballots_cast,"
        "  spoiled = t.spoiled + excluded.spoiled)"
        " SELECT count(*) FROM ins";

static const Oid ingest_types[11] = {OID_INT4, OID_INT8, OID_BYTEA, OID_INT4_ARRAY, OID_INT4_ARRAY, OID_INT8_ARRAY,
                                     OID_INT4, OID_INT8, OID_INT8,  OID_INT8,       OID_INT8};

struct pgworker {
	struct bench_pg_cfg *cfg;
	uint8_t *body; /* bench_work_body_max() */
};

/*
 * - inflight answers are matched in order: a batch's result, then its sync;
 * - `have` iff the oldest batch's result arrived and its sync has not.
 */
struct pgconn {
	struct bench_conn *c;
	PGconn *pg;
	uv_poll_t poll;
	bool polling, writing, open;
	bool have;
	enum bench_outcome outcome;
	char cls[32];
};

static int conn_exec(PGconn *pg, const char *sql, char *why, size_t whylen)
{
	PGresult *r = PQexec(pg, sql);
	ExecStatusType st = PQresultStatus(r);
	int rc = 0;
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		snprintf(why, whylen, "%s", PQresultErrorMessage(r));
		rc = -EPROTO;
	}
	PQclear(r);
	return rc;
}

static PGconn *connect_db(const char *conninfo, char *why, size_t whylen)
{
	PGconn *pg = PQconnectdb(conninfo);
	if (PQstatus(pg) != CONNECTION_OK) {
		snprintf(why, whylen, "connect (%s): %s", conninfo, PQerrorMessage(pg));
		PQfinish(pg);
		return NULL;
	}
	return pg;
}

static int pg_setup(void *cfgp, char *why, size_t whylen)
{
	struct bench_pg_cfg *cfg = cfgp;
	PGconn *pg = connect_db(cfg->conninfo, why, whylen);
	if (!pg)
		return -ECONNREFUSED;
	int rc = conn_exec(pg, "SET client_min_messages = warning", why, whylen);
	if (rc == 0)
		rc = conn_exec(pg, SCHEMA_SQL, why, whylen);
	PQfinish(pg);
	return rc;
}

static int pg_worker_init(void *cfg, struct bench_work *w, void **wpriv)
{
	struct pgworker *pw = calloc(1, sizeof(*pw));
	if (!pw)
		return -ENOMEM;
	pw->cfg = cfg;
	pw->body = malloc(bench_work_body_max(w));
	if (!pw->body) {
		free(pw);
		return -ENOMEM;
	}
	*wpriv = pw;
	return 0;
}

static void pg_worker_deinit(void *wpriv)
{
	struct pgworker *pw = wpriv;
	free(pw->body);
	free(pw);
}

static void lost(struct pgconn *h, const char *what)
{
	char why[320];
	snprintf(why, sizeof(why), "%s: %s", what, PQerrorMessage(h->pg));
	char *nl = strchr(why, '\n');
	if (nl)
		*nl = '\0';
	h->open = false;
	bench_conn_lost(h->c, why);
}

static void on_poll(uv_poll_t *p, int status, int events);

static void flush_out(struct pgconn *h)
{
	int f = PQflush(h->pg);
	if (f < 0) {
		lost(h, "send");
		return;
	}
	if (h->writing != (f == 1)) {
		h->writing = f == 1;
		uv_poll_start(&h->poll, UV_READABLE | (h->writing ? UV_WRITABLE : 0), on_poll);
	}
}

/* Results in order: per batch TUPLES_OK (or an error), NULL, then PIPELINE_SYNC. */
static void read_results(struct pgconn *h)
{
	int nulls = 0;
	while (h->open && !PQisBusy(h->pg)) {
		PGresult *r = PQgetResult(h->pg);
		if (!r) {
			if (++nulls > 1)
				break; /* nothing queued */
			continue;
		}
		nulls = 0;
		switch (PQresultStatus(r)) {
		case PGRES_TUPLES_OK:
			h->have = true;
			h->outcome = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "1") == 0 ? BENCH_NEW : BENCH_DUP;
			break;
		case PGRES_PIPELINE_SYNC:
			if (h->have)
				bench_conn_answer(h->c, h->outcome, h->outcome == BENCH_FAIL ? h->cls : NULL);
			else
				bench_conn_answer(h->c, BENCH_FAIL, "pg:no_result");
			h->have = false;
			break;
		case PGRES_PIPELINE_ABORTED:
			h->have = true;
			h->outcome = BENCH_FAIL;
			snprintf(h->cls, sizeof(h->cls), "pg:aborted");
			break;
		default: {
			const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
			h->have = true;
			h->outcome = BENCH_FAIL;
			snprintf(h->cls, sizeof(h->cls), "pg:%s", state ? state : "error");
			break;
		}
		}
		PQclear(r);
	}
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	struct pgconn *h = p->data;
	if (!h->open)
		return;
	if (status < 0) {
		h->open = false;
		bench_conn_lost(h->c, uv_strerror(status));
		return;
	}
	if (events & UV_WRITABLE)
		flush_out(h);
	if (h->open && (events & UV_READABLE)) {
		if (!PQconsumeInput(h->pg)) {
			lost(h, "receive");
			return;
		}
		read_results(h);
	}
}

static void pg_send(struct bench_conn *c, uint32_t n)
{
	struct pgconn *h = bench_conn_priv(c);
	struct pgworker *pw = bench_conn_wpriv(c);
	struct bench_work *w = pw->cfg->work;
	for (uint32_t i = 0; i < n && h->open; i++) {
		uint32_t p;
		uint64_t seq;
		bench_conn_next(c, &p, &seq);
		const struct bench_delta *dl = bench_work_delta(w, p, bench_work_variant(w, seq));
		size_t blen = bench_work_body(w, p, seq, pw->body);
		char sp[12], ss[24], sd[12], sb[24], si[24], sc[24], ssp[24];
		snprintf(sp, sizeof(sp), "%u", dl->precinct_id);
		snprintf(ss, sizeof(ss), "%llu", (unsigned long long)seq);
		snprintf(sd, sizeof(sd), "%u", dl->district_id);
		snprintf(sb, sizeof(sb), "%llu", (unsigned long long)dl->ballots);
		snprintf(si, sizeof(si), "%llu", (unsigned long long)dl->issued);
		snprintf(sc, sizeof(sc), "%llu", (unsigned long long)dl->cast);
		snprintf(ssp, sizeof(ssp), "%llu", (unsigned long long)dl->spoiled);
		const char *values[11] = {
		        sp, ss, (const char *)pw->body, dl->pg_contests, dl->pg_choices, dl->pg_votes, sd, sb, si,
		        sc, ssp};
		int lengths[11] = {0, 0, (int)blen};
		int formats[11] = {0, 0, 1};
		if (!PQsendQueryPrepared(h->pg, "ingest", 11, values, lengths, formats, 0) || !PQpipelineSync(h->pg)) {
			lost(h, "send");
			return;
		}
		size_t bytes = blen + strlen(dl->pg_contests) + strlen(dl->pg_choices) + strlen(dl->pg_votes) + 64;
		bench_conn_wrote(c, bytes);
	}
	if (h->open)
		flush_out(h);
}

static void pg_open(struct bench_conn *c)
{
	struct pgconn *h = bench_conn_priv(c);
	struct pgworker *pw = bench_conn_wpriv(c);
	char why[512];
	h->c = c;
	/* Blocking connect: only while the run is being set up (and on a reconnect). */
	h->pg = connect_db(pw->cfg->conninfo, why, sizeof(why));
	if (!h->pg) {
		bench_conn_lost(c, why);
		return;
	}
	PGresult *r = PQprepare(h->pg, "ingest", INGEST_SQL, 11, ingest_types);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		snprintf(why, sizeof(why), "prepare: %s", PQresultErrorMessage(r));
		PQclear(r);
		bench_conn_lost(c, why);
		return;
	}
	PQclear(r);
	if (PQsetnonblocking(h->pg, 1) != 0 || !PQenterPipelineMode(h->pg)) {
		lost(h, "pipeline mode");
		return;
	}
	int rc = uv_poll_init_socket(bench_conn_loop(c), &h->poll, PQsocket(h->pg));
	if (rc < 0) {
		snprintf(why, sizeof(why), "uv_poll_init_socket: %s", uv_strerror(rc));
		bench_conn_lost(c, why);
		return;
	}
	h->poll.data = h;
	h->polling = true;
	h->open = true;
	uv_poll_start(&h->poll, UV_READABLE, on_poll);
	bench_conn_ready(c);
}

static void on_poll_close(uv_handle_t *hd)
{
	struct pgconn *h = hd->data;
	PQfinish(h->pg);
	h->pg = NULL;
	bench_conn_closed(h->c);
}

static void pg_close(struct bench_conn *c)
{
	struct pgconn *h = bench_conn_priv(c);
	h->open = false;
	if (h->polling) {
		h->polling = false;
		uv_close((uv_handle_t *)&h->poll, on_poll_close);
		return;
	}
	if (h->pg)
		PQfinish(h->pg);
	h->pg = NULL;
	bench_conn_closed(c);
}

static struct bench_target pg_target = {
        .name = "postgres",
        .conn_priv = sizeof(struct pgconn),
        .setup = pg_setup,
        .worker_init = pg_worker_init,
        .worker_deinit = pg_worker_deinit,
        .open = pg_open,
        .send = pg_send,
        .close = pg_close,
};

const struct bench_target *bench_pg_target(struct bench_pg_cfg *cfg)
{
	pg_target.cfg = cfg;
	return &pg_target;
}

int bench_pg_totals(const struct bench_pg_cfg *cfg, const struct bal_defn *d, struct bench_totals *t, char *why,
                    size_t whylen)
{
	PGconn *pg = connect_db(cfg->conninfo, why, whylen);
	if (!pg)
		return -ECONNREFUSED;
	bench_totals_zero(t);
	int rc = -EPROTO;
	PGresult *r = PQexec(pg, "SELECT contest_id, district_id, choice, votes FROM district_votes");
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		snprintf(why, whylen, "reading district_votes: %s", PQresultErrorMessage(r));
		goto done;
	}
	for (int i = 0; i < PQntuples(r); i++) {
		int32_t c = bal_defn_contest(d, (uint32_t)strtoul(PQgetvalue(r, i, 0), NULL, 10));
		int32_t di = bal_defn_district(d, (uint32_t)strtoul(PQgetvalue(r, i, 1), NULL, 10));
		uint32_t k = (uint32_t)strtoul(PQgetvalue(r, i, 2), NULL, 10);
		if (c < 0 || di < 0 || k >= d->contests[c].nchoices) {
			snprintf(why, whylen, "district_votes row (%s, %s, %s) is not in the definition",
			         PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2));
			goto done;
		}
		*bench_totals_district(t, (uint32_t)c, (uint32_t)di, k) = strtoull(PQgetvalue(r, i, 3), NULL, 10);
	}
	PQclear(r);
	r = PQexec(pg, "SELECT coalesce(sum(batches), 0), coalesce(sum(ballots), 0), coalesce(sum(issued), 0),"
	               " coalesce(sum(ballots_cast), 0), coalesce(sum(spoiled), 0) FROM precinct_turnout");
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
		snprintf(why, whylen, "reading precinct_turnout: %s", PQresultErrorMessage(r));
		goto done;
	}
	for (int i = 0; i < BENCH_T_N; i++)
		t->turnout[i] = strtoull(PQgetvalue(r, 0, i), NULL, 10);
	bench_totals_national_from_districts(t);
	rc = 0;
done:
	PQclear(r);
	PQfinish(pg);
	return rc;
}
