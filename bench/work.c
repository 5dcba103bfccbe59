/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ballot-bench workload (see work.h). A Batch is stamped as
 *   [1: precinct_id][2: seq][3: kind] + mid + [7: created_unix_ms]
 *   + [8: election_id]
 * where mid is the codec's packing of the variant with those five fields
 * zeroed (proto3 leaves zero scalars and empty strings out, and protobuf-c
 * writes fields in field-number order, so the concatenation is what the codec
 * itself packs, the only encoding ballotd accepts: bench_work_new() checks
 * that on every variant). The SignedBatch around it is [1: batch][2: signature].
 *
 * Depends on proto/codec.h, client/gen.h, client/keys.h, client/expect.h and
 * libsodium.
 */
#include "bench/work.h"

#include "proto/codec.h"
#include "client/gen.h"
#include "client/http.h"
#include "client/keys.h"
#include "client/util.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIG_LEN    64
#define MINUTE_MS  60000u
#define VARINT_MAX 10

struct variant {
	struct bal_batch batch; /* decoded, for the expected fold; points into w->arena */
	const uint8_t *mid;     /* packed fields 4-6 */
	size_t midlen;
	struct bench_delta delta;
};

/* Signed bodies of seqs [w->pool_start, + n) of one precinct: slot i at i * w->stride. */
struct pool {
	uint8_t *bytes;
	uint32_t *len;
	uint64_t n;
};

struct bench_work {
	struct bench_work_opts o;
	uint32_t k;
	uint32_t *pidx;        /* [k] definition precinct index */
	struct variant *var;   /* [k * variants] */
	uint8_t (*sk)[64];     /* [k] demo secret keys when signing */
	uint64_t created_base; /* created_unix_ms of seq s is created_base + s minutes */
	const char *election;  /* the definition's election id, stamped into every batch */
	size_t election_len;
	struct bal_arena arena; /* variants' bytes and decoded batches, never reset */
	char head[BAL_HTTP_HOST_MAX + 160];
	size_t headlen;
	size_t body_max, http_max;
	struct pool *pool; /* [k] when signing and presigned */
	uint64_t pool_start;
	size_t stride;
	_Atomic uint64_t live_signed;
};

static size_t varint_len(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

static void *arena_dup(struct bal_arena *a, const void *src, size_t n)
{
	void *p = bal_arena_alloc(a, n ? n : 1);
	if (p && n)
		memcpy(p, src, n);
	return p;
}

/* ---- variants ------------------------------------------------------------ */

static int cmp_u32(const void *x, const void *y)
{
	uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
	return a < b ? -1 : a > b;
}

/* "{1,2,3}" of n numbers into the arena. */
static const char *pg_array(struct bal_arena *a, const uint64_t *v, uint32_t n)
{
	size_t cap = 3 + (size_t)n * 21;
	char *s = bal_arena_alloc(a, cap), *p = s;
	if (!s)
		return NULL;
	*p++ = '{';
	for (uint32_t i = 0; i < n; i++)
		p += snprintf(p, cap - (size_t)(p - s), "%s%llu", i ? "," : "", (unsigned long long)v[i]);
	*p++ = '}';
	*p = '\0';
	return s;
}

/* The (contest, choice) increments of a decoded batch, sorted, zeros left out. */
static int build_delta(struct bench_work *w, const struct bal_batch *b, uint32_t pi, struct bench_delta *out)
{
	const struct bal_defn *d = w->o.d;
	size_t nsrc = b->kind == BAL_KIND_TALLY ? b->ntallies : b->ncolumns;
	uint32_t *ids = calloc(nsrc ? nsrc : 1, sizeof(*ids));
	size_t cap = 0;
	for (size_t i = 0; i < nsrc; i++) {
		ids[i] = b->kind == BAL_KIND_TALLY ? b->tallies[i].contest_id : b->columns[i].contest_id;
		int32_t c = bal_defn_contest(d, ids[i]);
		if (c < 0) {
			free(ids);
			return -EINVAL;
		}
		cap += d->contests[c].nchoices;
	}
	qsort(ids, nsrc, sizeof(*ids), cmp_u32);
	uint32_t *cid = bal_arena_alloc(&w->arena, (cap ? cap : 1) * sizeof(*cid));
	uint32_t *ch = bal_arena_alloc(&w->arena, (cap ? cap : 1) * sizeof(*ch));
	uint64_t *votes = bal_arena_alloc(&w->arena, (cap ? cap : 1) * sizeof(*votes));
	uint64_t *tmp = calloc(cap ? cap : 1, sizeof(*tmp));
	uint64_t *c64 = calloc(cap ? cap : 1, sizeof(*c64)), *k64 = calloc(cap ? cap : 1, sizeof(*k64));
	int rc = -ENOMEM;
	if (!cid || !ch || !votes || !tmp || !c64 || !k64)
		goto free_tmp;
	uint32_t n = 0;
	for (size_t i = 0; i < nsrc; i++) {
		const struct bal_contest *ct = &d->contests[bal_defn_contest(d, ids[i])];
		memset(tmp, 0, ct->nchoices * sizeof(*tmp));
		for (size_t j = 0; j < nsrc; j++) {
			if (b->kind == BAL_KIND_TALLY && b->tallies[j].contest_id == ids[i]) {
				for (size_t k = 0; k < b->tallies[j].n && k < ct->nchoices; k++)
					tmp[k] += b->tallies[j].counts[k];
			} else if (b->kind != BAL_KIND_TALLY && b->columns[j].contest_id == ids[i]) {
				for (size_t r = 0; r < b->columns[j].n; r++)
					if (b->columns[j].choices[r] < ct->nchoices)
						tmp[b->columns[j].choices[r]]++;
			}
		}
		for (uint32_t k = 0; k < ct->nchoices; k++) {
			if (!tmp[k])
				continue;
			cid[n] = ids[i];
			ch[n] = k;
			votes[n] = tmp[k];
			c64[n] = ids[i];
			k64[n] = k;
			n++;
		}
		while (i + 1 < nsrc && ids[i + 1] == ids[i])
			i++; /* a contest twice in one batch: already summed */
	}
	const struct bal_precinct *pr = &d->precincts[pi];
	*out = (struct bench_delta){
	        .precinct_id = pr->id,
	        .district_id = d->districts[pr->district].id,
	        .ninc = n,
	        .contest_id = cid,
	        .choice = ch,
	        .votes = votes,
	        .ballots = b->kind == BAL_KIND_BALLOTS && b->ncolumns ? b->columns[0].n : 0,
	        .issued = b->ballots_issued,
	        .cast = b->ballots_cast,
	        .spoiled = b->ballots_spoiled,
	        .pg_contests = pg_array(&w->arena, c64, n),
	        .pg_choices = pg_array(&w->arena, k64, n),
	        .pg_votes = pg_array(&w->arena, votes, n),
	};
	rc = out->pg_contests && out->pg_choices && out->pg_votes ? 0 : -ENOMEM;
free_tmp:
	free(tmp);
	free(c64);
	free(k64);
	free(ids);
	return rc;
}

static size_t batch_len(const struct bench_work *w, const struct variant *v, uint32_t pid, uint64_t seq)
{
	uint64_t created = w->created_base + seq * MINUTE_MS;
	return 1 + varint_len(pid) + 1 + varint_len(seq) + (w->o.kind ? 1 + varint_len((uint64_t)w->o.kind) : 0) +
	       v->midlen + (created ? 1 + varint_len(created) : 0) +
	       (w->election_len ? 1 + varint_len(w->election_len) + w->election_len : 0);
}

static uint8_t *stamp_batch(const struct bench_work *w, const struct variant *v, uint32_t pid, uint64_t seq, uint8_t *p)
{
	uint64_t created = w->created_base + seq * MINUTE_MS;
	*p++ = 0x08;
	p = put_varint(p, pid);
	*p++ = 0x10;
	p = put_varint(p, seq);
	if (w->o.kind) {
		*p++ = 0x18;
		p = put_varint(p, (uint64_t)w->o.kind);
	}
	memcpy(p, v->mid, v->midlen);
	p += v->midlen;
	if (created) {
		*p++ = 0x38;
		p = put_varint(p, created);
	}
	if (w->election_len) {
		*p++ = 0x42;
		p = put_varint(p, w->election_len);
		memcpy(p, w->election, w->election_len);
		p += w->election_len;
	}
	return p;
}

/* Stamps (and signs, when the workload is signed) the SignedBatch of (p, seq). */
static size_t stamp_body(const struct bench_work *w, uint32_t p, uint64_t seq, uint8_t *buf)
{
	const struct variant *v = &w->var[(size_t)p * w->o.variants + (seq - 1) % w->o.variants];
	uint32_t pid = w->o.d->precincts[w->pidx[p]].id;
	size_t bl = batch_len(w, v, pid, seq);
	uint8_t *q = buf;
	*q++ = 0x0a;
	q = put_varint(q, bl);
	uint8_t *batch = q;
	q = stamp_batch(w, v, pid, seq, q);
	if (w->o.sign) {
		*q++ = 0x12;
		*q++ = SIG_LEN;
		crypto_sign_detached(q, NULL, batch, bl, w->sk[p]);
		q += SIG_LEN;
	}
	return (size_t)(q - buf);
}

/* Generates variant `vi` of workload precinct `p` and checks the stamping against the codec. */
static int make_variant(struct bench_work *w, struct bal_gen *g, uint32_t p, uint32_t vi, char *why, size_t whylen)
{
	struct variant *v = &w->var[(size_t)p * w->o.variants + vi];
	uint32_t pi = w->pidx[p];
	uint64_t seq = vi + 1;
	const uint8_t *body;
	size_t len;
	int rc = bal_gen_batch(g, pi, seq, NULL, &body, &len, why, whylen);
	if (rc < 0)
		return rc;
	uint8_t *copy = arena_dup(&w->arena, body, len);
	if (!copy)
		return bal__failf(-ENOMEM, why, whylen, "out of memory generating the workload");
	char dwhy[256];
	rc = bal_codec_decode(copy, len, &w->arena, &v->batch, dwhy, sizeof(dwhy));
	if (rc < 0)
		return bal__failf(rc, why, whylen, "precinct %u seq %llu: generated batch does not decode: %s",
		                  w->o.d->precincts[pi].id, (unsigned long long)seq, dwhy);
	struct bal_batch m = v->batch;
	m.precinct_id = 0;
	m.seq = 0;
	m.kind = BAL_KIND_BALLOTS;
	m.created_unix_ms = 0;
	m.election_id = NULL;
	v->midlen = bal_codec_batch_size(&m);
	uint8_t *mid = bal_arena_alloc(&w->arena, v->midlen ? v->midlen : 1);
	if (!mid)
		return bal__failf(-ENOMEM, why, whylen, "out of memory generating the workload");
	bal_codec_batch_pack(&m, mid);
	v->mid = mid;
	if (p == 0 && vi == 0)
		w->created_base = v->batch.created_unix_ms - seq * MINUTE_MS;
	/* Stamping seq vi + 1 must give the generator's own bytes. */
	uint8_t *check = malloc(len + 3 * VARINT_MAX + SIG_LEN + 8 + w->election_len);
	if (!check)
		return bal__failf(-ENOMEM, why, whylen, "out of memory generating the workload");
	size_t n = stamp_body(w, p, seq, check);
	bool same = n == len && memcmp(check, copy, len) == 0;
	free(check);
	if (!same)
		return bal__failf(-EINVAL, why, whylen,
		                  "precinct %u seq %llu: stamped bytes (%zu) differ from the codec's packing (%zu)",
		                  w->o.d->precincts[pi].id, (unsigned long long)seq, n, len);
	rc = build_delta(w, &v->batch, pi, &v->delta);
	if (rc < 0)
		return bal__failf(rc, why, whylen, "precinct %u: cannot pre-aggregate its batch: %s",
		                  w->o.d->precincts[pi].id, bal_strerror(rc));
	return 0;
}

static int load_keys(struct bench_work *w, char *why, size_t whylen)
{
	w->sk = calloc(w->k, sizeof(*w->sk));
	if (!w->sk)
		return bal__failf(-ENOMEM, why, whylen, "out of memory for %u keys", w->k);
	for (uint32_t p = 0; p < w->k; p++) {
		const struct bal_precinct *pr = &w->o.d->precincts[w->pidx[p]];
		uint8_t pk[32];
		bal_demo_keypair(w->o.key_seed, pr->id, pk, w->sk[p]);
		if (!pr->has_key)
			return bal__failf(
			        -EINVAL, why, whylen,
			        "precinct %u has no public_key in the definition: cannot sign (use --no-sign)", pr->id);
		if (memcmp(pk, pr->public_key, sizeof(pk)) != 0)
			return bal__failf(BAL_EAUTH, why, whylen,
			                  "precinct %u: the demo key of key seed %llu does not match its public_key "
			                  "(--key-seed must be the gen-definition --seed)",
			                  pr->id, (unsigned long long)w->o.key_seed);
	}
	return 0;
}

int bench_work_new(const struct bench_work_opts *o, struct bench_work **out, char *why, size_t whylen)
{
	const struct bal_defn *d = o->d;
	if (o->precincts < 1 || o->precincts > d->nprecincts)
		return bal__failf(-EINVAL, why, whylen, "precincts %u: must be between 1 and %u (the definition's)",
		                  o->precincts, d->nprecincts);
	if (o->variants < 1 || o->variants > 1024)
		return bal__failf(-EINVAL, why, whylen, "variants %u: must be between 1 and 1024", o->variants);
	if (strlen(o->host) >= BAL_HTTP_HOST_MAX)
		return bal__failf(-EINVAL, why, whylen, "host \"%.40s...\": longer than %d bytes", o->host,
		                  BAL_HTTP_HOST_MAX - 1);
	struct bench_work *w = calloc(1, sizeof(*w));
	if (!w)
		return bal__failf(-ENOMEM, why, whylen, "out of memory");
	w->o = *o;
	w->k = o->precincts;
	w->election = d->election_id ? d->election_id : "";
	w->election_len = strlen(w->election);
	bal_arena_init(&w->arena, 0);
	int rc = -ENOMEM;
	w->pidx = calloc(w->k, sizeof(*w->pidx));
	w->var = calloc((size_t)w->k * o->variants, sizeof(*w->var));
	if (!w->pidx || !w->var) {
		bal__failf(rc, why, whylen, "out of memory for %u precincts x %u variants", w->k, o->variants);
		goto fail_work;
	}
	for (uint32_t p = 0; p < w->k; p++)
		w->pidx[p] = (uint32_t)((uint64_t)p * d->nprecincts / w->k);
	if (o->sign && (rc = load_keys(w, why, whylen)) < 0)
		goto fail_work;
	/* Unsigned workloads generate from a copy of the definition without keys,
	 * so the generator neither signs nor needs the key seed. */
	struct bal_defn nokeys = *d;
	struct bal_precinct *prs = NULL;
	if (!o->sign) {
		prs = malloc(d->nprecincts * sizeof(*prs));
		if (!prs) {
			rc = bal__failf(-ENOMEM, why, whylen, "out of memory");
			goto fail_work;
		}
		memcpy(prs, d->precincts, d->nprecincts * sizeof(*prs));
		for (uint32_t i = 0; i < d->nprecincts; i++)
			prs[i].has_key = false;
		nokeys.precincts = prs;
	}
	struct bal_gen *g;
	struct bal_gen_opts go = {
	        .seed = o->seed, .key_seed = o->key_seed, .batch_size = o->batch_size, .kind = o->kind};
	rc = bal_gen_new(o->sign ? d : &nokeys, &go, &g, why, whylen);
	if (rc == 0) {
		for (uint32_t p = 0; p < w->k && rc == 0; p++)
			for (uint32_t v = 0; v < o->variants && rc == 0; v++)
				rc = make_variant(w, g, p, v, why, whylen);
		bal_gen_free(g);
	}
	free(prs);
	/* Variants only point into the arena, never into the key-less copy. */
	for (size_t i = 0; rc == 0 && i < (size_t)w->k * o->variants; i++)
		if (w->var[i].midlen > w->body_max)
			w->body_max = w->var[i].midlen;
	if (rc < 0)
		goto fail_work;
	w->body_max +=
	        1 + VARINT_MAX + 3 * (1 + VARINT_MAX) + 1 + VARINT_MAX + 1 + VARINT_MAX + w->election_len + 2 + SIG_LEN;
	w->headlen =
	        (size_t)snprintf(w->head, sizeof(w->head),
	                         "POST /v1/batches HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-protobuf\r\n"
	                         "Accept: application/x-protobuf\r\nContent-Length: ",
	                         o->host);
	w->http_max = w->headlen + 20 + 4 + w->body_max;
	*out = w;
	return 0;

fail_work:
	bench_work_free(w);
	return rc;
}

void bench_work_free(struct bench_work *w)
{
	if (!w)
		return;
	if (w->pool) {
		for (uint32_t p = 0; p < w->k; p++) {
			free(w->pool[p].bytes);
			free(w->pool[p].len);
		}
		free(w->pool);
	}
	bal_arena_deinit(&w->arena);
	free(w->sk);
	free(w->var);
	free(w->pidx);
	free(w);
}

uint32_t bench_work_precincts(const struct bench_work *w)
{
	return w->k;
}

uint32_t bench_work_precinct_id(const struct bench_work *w, uint32_t p)
{
	return w->o.d->precincts[w->pidx[p]].id;
}

size_t bench_work_body_max(const struct bench_work *w)
{
	return w->body_max;
}

size_t bench_work_http_max(const struct bench_work *w)
{
	return w->http_max;
}

uint32_t bench_work_variants(const struct bench_work *w)
{
	return w->o.variants;
}

uint32_t bench_work_variant(const struct bench_work *w, uint64_t seq)
{
	return (uint32_t)((seq - 1) % w->o.variants);
}

const struct bench_delta *bench_work_delta(const struct bench_work *w, uint32_t p, uint32_t variant)
{
	return &w->var[(size_t)p * w->o.variants + variant].delta;
}

/* ---- signed pool --------------------------------------------------------- */

struct presign_job {
	struct bench_work *w;
	unsigned t, nthreads;
};

static void *presign_thread(void *arg)
{
	struct presign_job *j = arg;
	struct bench_work *w = j->w;
	for (uint32_t p = j->t; p < w->k; p += j->nthreads) {
		struct pool *pl = &w->pool[p];
		for (uint64_t i = 0; i < pl->n; i++)
			pl->len[i] = (uint32_t)stamp_body(w, p, w->pool_start + i, pl->bytes + i * w->stride);
	}
	return NULL;
}

int bench_work_presign(struct bench_work *w, uint64_t seq_start, uint64_t per_precinct, unsigned threads, char *why,
                       size_t whylen)
{
	if (!w->o.sign || per_precinct == 0)
		return 0;
	w->pool_start = seq_start;
	w->stride = (w->body_max + 15) & ~(size_t)15;
	w->pool = calloc(w->k, sizeof(*w->pool));
	if (!w->pool)
		return bal__failf(-ENOMEM, why, whylen, "out of memory for the signed pool");
	for (uint32_t p = 0; p < w->k; p++) {
		struct pool *pl = &w->pool[p];
		pl->bytes = malloc(per_precinct * w->stride);
		pl->len = malloc(per_precinct * sizeof(*pl->len));
		if (!pl->bytes || !pl->len)
			return bal__failf(-ENOMEM, why, whylen,
			                  "out of memory for the signed pool: %u precincts x %llu batches x %zu bytes",
			                  w->k, (unsigned long long)per_precinct, w->stride);
		pl->n = per_precinct;
	}
	if (threads < 1)
		threads = 1;
	if (threads > 64)
		threads = 64;
	struct presign_job jobs[64];
	pthread_t tids[64];
	bool started[64] = {false};
	for (unsigned t = 0; t < threads; t++) {
		jobs[t] = (struct presign_job){.w = w, .t = t, .nthreads = threads};
		started[t] = t > 0 && pthread_create(&tids[t], NULL, presign_thread, &jobs[t]) == 0;
	}
	/* Thread 0's share runs here, and so does the share of a thread that could not start. */
	for (unsigned t = 0; t < threads; t++)
		if (!started[t])
			presign_thread(&jobs[t]);
	for (unsigned t = 1; t < threads; t++)
		if (started[t])
			pthread_join(tids[t], NULL);
	return 0;
}

size_t bench_work_body(struct bench_work *w, uint32_t p, uint64_t seq, uint8_t *buf)
{
	if (w->pool && seq >= w->pool_start && seq - w->pool_start < w->pool[p].n) {
		uint64_t i = seq - w->pool_start;
		uint32_t n = w->pool[p].len[i];
		memcpy(buf, w->pool[p].bytes + i * w->stride, n);
		return n;
	}
	if (w->o.sign)
		atomic_fetch_add_explicit(&w->live_signed, 1, memory_order_relaxed);
	return stamp_body(w, p, seq, buf);
}

size_t bench_work_http(struct bench_work *w, uint32_t p, uint64_t seq, uint8_t *buf)
{
	/* The body goes after the longest possible head, then moves up against the actual head. */
	memcpy(buf, w->head, w->headlen);
	uint8_t *body = buf + w->headlen + 24;
	size_t n = bench_work_body(w, p, seq, body);
	char digits[24];
	int nd = 0;
	size_t v = n;
	do {
		digits[nd++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	uint8_t *q = buf + w->headlen;
	while (nd)
		*q++ = (uint8_t)digits[--nd];
	memcpy(q, "\r\n\r\n", 4);
	q += 4;
	memmove(q, body, n);
	return (size_t)(q + n - buf);
}

uint64_t bench_work_live_signed(const struct bench_work *w)
{
	return atomic_load_explicit(&w->live_signed, memory_order_relaxed);
}

int bench_work_fold(const struct bench_work *w, struct bal_expect *e, uint32_t p, uint32_t v, uint64_t count, char *why,
                    size_t whylen)
{
	const struct bal_batch *b = &w->var[(size_t)p * w->o.variants + v].batch;
	for (uint64_t i = 0; i < count; i++) {
		int rc = bal_expect_fold(e, b, why, whylen);
		if (rc < 0)
			return rc;
	}
	return 0;
}
