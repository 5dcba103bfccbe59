/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Redis as a bench target, with the durability ballotd has: appendonly yes,
 * appendfsync always (Redis writes and fsyncs the AOF before it sends the
 * replies of an event-loop iteration). Each batch is one EVALSHA of the
 * INGEST_LUA script below: HSETNX the raw SignedBatch under its seq in the
 * precinct's hash (dedup), and only if it was new, HINCRBY the per-district
 * and per-precinct vote counters and the precinct's turnout with the batch's
 * pre-aggregated increments (bench_delta).
 *
 * Keys (all declared in KEYS): b:<precinct> (seq -> body), pv:<precinct>
 * ("contest:choice" -> votes), pt:<precinct> (turnout fields),
 * dv:<contest>:<district> (choice -> votes).
 *
 * Concurrency: hiredis async, one redisAsyncContext per connection on the
 * worker's libuv loop (hiredis/adapters/libuv.h), up to --pipeline commands
 * in flight per connection; Redis answers in order. hiredis formats each
 * command into its own output buffer and keeps a callback record per
 * command: those allocations are the driver's, not the workload's.
 *
 * Depends on hiredis, libuv and bench/loadgen.h.
 */
#include "bench/targets.h"

#include <errno.h>
#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* KEYS: b, pv, pt, then dv of each contest in ARGV order.
 * ARGV: seq, body, ballots, issued, cast, spoiled, then per contest:
 * contest id, n, and n (choice, votes) pairs. */
static const char INGEST_LUA[] = "if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end\n"
                                 "redis.call('HINCRBY', KEYS[3], 'batches', 1)\n"
                                 "redis.call('HINCRBY', KEYS[3], 'ballots', ARGV[3])\n"
                                 "redis.call('HINCRBY', KEYS[3], 'issued', ARGV[4])\n"
                                 "redis.call('HINCRBY', KEYS[3], 'cast', ARGV[5])\n"
                                 "redis.call('HINCRBY', KEYS[3], 'spoiled', ARGV[6])\n"
                                 "local a = 7\n"
                                 "for i = 4, #KEYS do\n"
                                 "  local c = ARGV[a]\n"
                                 "  local n = tonumber(ARGV[a + 1])\n"
                                 "  a = a + 2\n"
                                 "  for j = 1, n do\n"
                                 "    redis.call('HINCRBY', KEYS[i], ARGV[a], ARGV[a + 1])\n"
                                 "    redis.call('HINCRBY', KEYS[2], c .. ':' .. ARGV[a], ARGV[a + 1])\n"
                                 "    a = a + 2\n"
                                 "  end\n"
                                 "end\n"
                                 "return 1\n";

#define NUM 24

struct rworker {
	struct bench_redis_cfg *cfg;
	uint8_t *body;
	size_t maxargs;
	const char **argv;
	size_t *argvlen;
	char (*nums)[NUM]; /* numbers formatted for argv */
};

struct rconn {
	struct bench_conn *c;
	redisAsyncContext *ac;
	bool open, closing;
};

static int r_setup(void *cfgp, char *why, size_t whylen)
{
	struct bench_redis_cfg *cfg = cfgp;
	struct timeval tv = {.tv_sec = 10};
	redisContext *rc = redisConnectWithTimeout(cfg->host, cfg->port, tv);
	if (!rc || rc->err) {
		snprintf(why, whylen, "connect to %s:%u: %s", cfg->host, cfg->port, rc ? rc->errstr : "out of memory");
		redisFree(rc);
		return -ECONNREFUSED;
	}
	redisReply *r = redisCommand(rc, "SCRIPT LOAD %s", INGEST_LUA);
	int ret = 0;
	if (!r || r->type != REDIS_REPLY_STRING || r->len != 40) {
		snprintf(why, whylen, "SCRIPT LOAD: %s",
		         r && r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
		ret = -EPROTO;
	} else {
		memcpy(cfg->sha, r->str, 40);
		cfg->sha[40] = '\0';
	}
	freeReplyObject(r);
	redisFree(rc);
	return ret;
}

static int r_worker_init(void *cfgp, struct bench_work *w, void **wpriv)
{
	struct bench_redis_cfg *cfg = cfgp;
	struct rworker *rw = calloc(1, sizeof(*rw));
	if (!rw)
		return -ENOMEM;
	rw->cfg = cfg;
	/* The most increments any variant has bounds the argument count. */
	size_t maxinc = 0, maxcontests = 0;
	for (uint32_t p = 0; p < bench_work_precincts(w); p++)
		for (uint32_t v = 0; v < bench_work_variants(w); v++) {
			const struct bench_delta *dl = bench_work_delta(w, p, v);
			if (dl->ninc > maxinc)
				maxinc = dl->ninc;
			if (dl->ninc > maxcontests)
				maxcontests = dl->ninc;
		}
	rw->maxargs = 3 + 3 + maxcontests + 6 + 2 * maxcontests + 2 * maxinc;
	rw->body = malloc(bench_work_body_max(w));
	rw->argv = calloc(rw->maxargs, sizeof(*rw->argv));
	rw->argvlen = calloc(rw->maxargs, sizeof(*rw->argvlen));
	rw->nums = calloc(rw->maxargs, sizeof(*rw->nums));
	if (!rw->body || !rw->argv || !rw->argvlen || !rw->nums) {
		free(rw->body);
		free(rw->argv);
		free(rw->argvlen);
		free(rw->nums);
		free(rw);
		return -ENOMEM;
	}
	*wpriv = rw;
	return 0;
}

static void r_worker_deinit(void *wpriv)
{
	struct rworker *rw = wpriv;
	free(rw->body);
	free(rw->argv);
	free(rw->argvlen);
	free(rw->nums);
	free(rw);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct rconn *h = privdata;
	redisReply *r = reply;
	if (!r)
		return; /* the connection is going away; the disconnect callback reports it */
	if (r->type == REDIS_REPLY_INTEGER) {
		bench_conn_answer(h->c, r->integer == 1 ? BENCH_NEW : BENCH_DUP, NULL);
	} else if (r->type == REDIS_REPLY_ERROR) {
		char cls[32];
		size_t n = strcspn(r->str, " ");
		snprintf(cls, sizeof(cls), "redis:%.*s", (int)(n < 20 ? n : 20), r->str);
		bench_conn_answer(h->c, BENCH_FAIL, cls);
	} else {
		bench_conn_answer(h->c, BENCH_FAIL, "redis:unexpected");
	}
}

/* Appends "%u"/"%llu"-formatted numbers to argv. */
static size_t put_num(struct rworker *rw, size_t i, unsigned long long v)
{
	int n = snprintf(rw->nums[i], NUM, "%llu", v);
	rw->argv[i] = rw->nums[i];
	rw->argvlen[i] = (size_t)n;
	return i + 1;
}

static size_t put_key(struct rworker *rw, size_t i, const char *fmt, unsigned a, unsigned b)
{
	int n = snprintf(rw->nums[i], NUM, fmt, a, b);
	rw->argv[i] = rw->nums[i];
	rw->argvlen[i] = (size_t)n;
	return i + 1;
}

static void r_send(struct bench_conn *c, uint32_t n)
{
	struct rconn *h = bench_conn_priv(c);
	struct rworker *rw = bench_conn_wpriv(c);
	struct bench_work *w = rw->cfg->work;
	for (uint32_t m = 0; m < n && h->open; m++) {
		uint32_t p;
		uint64_t seq;
		bench_conn_next(c, &p, &seq);
		const struct bench_delta *dl = bench_work_delta(w, p, bench_work_variant(w, seq));
		size_t blen = bench_work_body(w, p, seq, rw->body);
		/* Contests of the batch, in increment order. */
		uint32_t ncont = 0;
		for (uint32_t i = 0; i < dl->ninc; i++)
			if (i == 0 || dl->contest_id[i] != dl->contest_id[i - 1])
				ncont++;
		size_t a = 0;
		rw->argv[a] = "EVALSHA";
		rw->argvlen[a++] = 7;
		rw->argv[a] = rw->cfg->sha;
		rw->argvlen[a++] = 40;
		a = put_num(rw, a, 3 + ncont);
		a = put_key(rw, a, "b:%u", dl->precinct_id, 0);
		a = put_key(rw, a, "pv:%u", dl->precinct_id, 0);
		a = put_key(rw, a, "pt:%u", dl->precinct_id, 0);
		for (uint32_t i = 0; i < dl->ninc; i++)
			if (i == 0 || dl->contest_id[i] != dl->contest_id[i - 1])
				a = put_key(rw, a, "dv:%u:%u", dl->contest_id[i], dl->district_id);
		a = put_num(rw, a, seq);
		rw->argv[a] = (const char *)rw->body;
		rw->argvlen[a++] = blen;
		a = put_num(rw, a, dl->ballots);
		a = put_num(rw, a, dl->issued);
		a = put_num(rw, a, dl->cast);
		a = put_num(rw, a, dl->spoiled);
		for (uint32_t i = 0; i < dl->ninc;) {
			uint32_t j = i;
			while (j < dl->ninc && dl->contest_id[j] == dl->contest_id[i])
				j++;
			a = put_num(rw, a, dl->contest_id[i]);
			a = put_num(rw, a, j - i);
			for (; i < j; i++) {
				a = put_num(rw, a, dl->choice[i]);
				a = put_num(rw, a, dl->votes[i]);
			}
		}
		size_t bytes = 0;
		for (size_t i = 0; i < a; i++)
			bytes += rw->argvlen[i];
		if (redisAsyncCommandArgv(h->ac, on_reply, h, (int)a, rw->argv, rw->argvlen) != REDIS_OK) {
			h->open = false;
			bench_conn_lost(c, h->ac->errstr[0] ? h->ac->errstr : "redisAsyncCommandArgv failed");
			return;
		}
		bench_conn_wrote(c, bytes);
	}
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	struct rconn *h = ac->data;
	if (status != REDIS_OK) {
		/* hiredis frees the context after this callback. */
		char why[160];
		snprintf(why, sizeof(why), "connect: %s", ac->errstr);
		h->ac = NULL;
		bench_conn_lost(h->c, why);
		return;
	}
	h->open = true;
	bench_conn_ready(h->c);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	struct rconn *h = ac->data;
	char why[160];
	snprintf(why, sizeof(why), "disconnected: %s", status == REDIS_OK ? "closed" : ac->errstr);
	h->ac = NULL;
	bool was_open = h->open;
	h->open = false;
	if (!h->closing && was_open)
		bench_conn_lost(h->c, why); /* calls r_close(), which sees no context left */
	else if (h->closing)
		bench_conn_closed(h->c);
}

static void r_open(struct bench_conn *c)
{
	struct rconn *h = bench_conn_priv(c);
	struct rworker *rw = bench_conn_wpriv(c);
	h->c = c;
	const struct sockaddr_in *src = bench_conn_source(c);
	char srcip[INET_ADDRSTRLEN];
	if (src)
		uv_ip4_name(src, srcip, sizeof(srcip));
	h->ac = src ? redisAsyncConnectBind(rw->cfg->host, rw->cfg->port, srcip)
	            : redisAsyncConnect(rw->cfg->host, rw->cfg->port);
	if (!h->ac || h->ac->err) {
		char why[400];
		snprintf(why, sizeof(why), "connect to %s:%u: %s", rw->cfg->host, rw->cfg->port,
		         h->ac ? h->ac->errstr : "out of memory");
		if (h->ac)
			redisAsyncFree(h->ac);
		h->ac = NULL;
		bench_conn_lost(c, why);
		return;
	}
	h->ac->data = h;
	redisLibuvAttach(h->ac, bench_conn_loop(c));
	redisAsyncSetConnectCallback(h->ac, on_connect);
	redisAsyncSetDisconnectCallback(h->ac, on_disconnect);
}

static void r_close(struct bench_conn *c)
{
	struct rconn *h = bench_conn_priv(c);
	h->open = false;
	if (!h->ac) {
		bench_conn_closed(c);
		return;
	}
	h->closing = true;
	redisAsyncDisconnect(h->ac);
}

static struct bench_target redis_target = {
        .name = "redis",
        .conn_priv = sizeof(struct rconn),
        .setup = r_setup,
        .worker_init = r_worker_init,
        .worker_deinit = r_worker_deinit,
        .open = r_open,
        .send = r_send,
        .close = r_close,
};

const struct bench_target *bench_redis_target(struct bench_redis_cfg *cfg)
{
	redis_target.cfg = cfg;
	return &redis_target;
}

int bench_redis_totals(const struct bench_redis_cfg *cfg, const struct bal_defn *d, struct bench_totals *t, char *why,
                       size_t whylen)
{
	struct timeval tv = {.tv_sec = 30};
	redisContext *rc = redisConnectWithTimeout(cfg->host, cfg->port, tv);
	if (!rc || rc->err) {
		snprintf(why, whylen, "connect to %s:%u: %s", cfg->host, cfg->port, rc ? rc->errstr : "out of memory");
		redisFree(rc);
		return -ECONNREFUSED;
	}
	bench_totals_zero(t);
	int ret = 0;
	/* District counters: every (contest, district) the contest covers. */
	for (uint32_t c = 0; c < d->ncontests && ret == 0; c++)
		for (uint32_t di = 0; di < d->ndistricts; di++)
			if (d->contests[c].district < 0 || (uint32_t)d->contests[c].district == di)
				redisAppendCommand(rc, "HGETALL dv:%u:%u", d->contests[c].id, d->districts[di].id);
	for (uint32_t c = 0; c < d->ncontests && ret == 0; c++)
		for (uint32_t di = 0; di < d->ndistricts && ret == 0; di++) {
			if (d->contests[c].district >= 0 && (uint32_t)d->contests[c].district != di)
				continue;
			redisReply *r = NULL;
			if (redisGetReply(rc, (void **)&r) != REDIS_OK || r->type != REDIS_REPLY_ARRAY) {
				snprintf(why, whylen, "HGETALL dv:%u:%u: %s", d->contests[c].id, d->districts[di].id,
				         rc->err ? rc->errstr : "not an array");
				ret = -EPROTO;
			}
			for (size_t i = 0; ret == 0 && i + 1 < r->elements; i += 2) {
				uint32_t k = (uint32_t)strtoul(r->element[i]->str, NULL, 10);
				if (k < d->contests[c].nchoices)
					*bench_totals_district(t, c, di, k) =
					        strtoull(r->element[i + 1]->str, NULL, 10);
			}
			if (r)
				freeReplyObject(r);
		}
	/* Turnout: every precinct of the definition (one that never uploaded has no hash: nils). */
	for (uint32_t p = 0; p < d->nprecincts && ret == 0; p++)
		redisAppendCommand(rc, "HMGET pt:%u batches ballots issued cast spoiled", d->precincts[p].id);
	for (uint32_t p = 0; p < d->nprecincts && ret == 0; p++) {
		redisReply *r = NULL;
		if (redisGetReply(rc, (void **)&r) != REDIS_OK || r->type != REDIS_REPLY_ARRAY ||
		    r->elements != BENCH_T_N) {
			snprintf(why, whylen, "HMGET pt:%u: %s", d->precincts[p].id,
			         rc->err ? rc->errstr : "bad reply");
			ret = -EPROTO;
		}
		for (size_t i = 0; ret == 0 && i < BENCH_T_N; i++)
			if (r->element[i]->type == REDIS_REPLY_STRING)
				t->turnout[i] += strtoull(r->element[i]->str, NULL, 10);
		if (r)
			freeReplyObject(r);
	}
	redisFree(rc);
	if (ret == 0)
		bench_totals_national_from_districts(t);
	return ret;
}
