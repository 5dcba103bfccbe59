/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Deterministic batch generator (see gen.h). Every random draw for a batch
 * comes from a stream seeded by (seed, precinct id, seq), and the contest
 * weights from streams seeded by (seed, contest id), so a batch never depends
 * on which batches were generated before it.
 *
 * Depends on the core definition structs, proto/codec.h (packing) and
 * libsodium (signing); nothing here knows about the network.
 */
#include "client/gen.h"

#include "proto/codec.h"
#include "client/keys.h"
#include "client/rng.h"
#include "client/util.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { RNG_WEIGHTS = 11, RNG_BATCH = 12, RNG_SHIFT = 13 };

enum key_state { KEY_UNKNOWN = 0, KEY_OK, KEY_MISMATCH };

/* Cumulative weights of one contest: choice k is drawn when a uniform
 * 32-bit value r satisfies cum[k-1] <= r < cum[k]; cum[n-1] = 2^32. */
struct weights {
	uint64_t *cum;
	uint32_t n;
};

struct bal_gen {
	const struct bal_defn *d;
	struct bal_gen_opts o;
	struct weights *w;  /* per contest index */
	uint8_t *key_state; /* per precinct index: enum key_state */
	uint8_t (*sk)[64];  /* per precinct index; valid iff key_state == KEY_OK */
	int64_t day0_ms;    /* 08:00 UTC on the election date, 0 if unparsable */
	/* scratch, sized at new() for the largest ballot */
	uint32_t maxc;      /* most contests any precinct votes in */
	uint32_t *contests; /* maxc contest indices of the current precinct */
	struct bal_column *cols;
	struct bal_ctally *tallies;
	uint32_t *choices; /* maxc * batch_size */
	uint64_t *counts;  /* sum of nchoices over the current ballot */
	size_t counts_cap;
	uint8_t *inner; /* packed Batch */
	size_t inner_cap;
	uint8_t *body; /* packed SignedBatch */
	size_t body_cap;
};

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int64_t election_day_ms(const char *date)
{
	int y, m, d;
	if (!date || sscanf(date, "%4d-%2d-%2d", &y, &m, &d) != 3 || m < 1 || m > 12 || d < 1 || d > 31)
		return 0;
	return (days_from_civil(y, m, d) * 86400 + 8 * 3600) * 1000;
}

/* Weights for one contest: see gen.h for the shape. */
static int build_weights(const struct bal_gen_opts *o, const struct bal_contest *c, struct weights *w)
{
	uint32_t n = c->nchoices;
	double *p = calloc(n, sizeof(*p));
	w->cum = calloc(n, sizeof(*w->cum));
	w->n = n;
	if (!p || !w->cum) {
		free(p);
		return -ENOMEM;
	}
	struct bal_rng r;
	bal_rng_seed(&r, o->seed, RNG_WEIGHTS, c->id);
	uint32_t neligible = 0;
	double fixed = 0;
	for (uint32_t k = 0; k < n; k++) {
		if (c->choices[k].seat_eligible) {
			neligible++;
		} else {
			p[k] = 0.015 + 0.025 * bal_rng_unit(&r);
			fixed += p[k];
		}
	}
	if (neligible > 0) {
		/* The leader, then the small party, among eligible choices. */
		uint32_t leader_rank = (uint32_t)bal_rng_below(&r, neligible);
		uint32_t small_rank =
		        neligible >= 3 ? (leader_rank + 1 + (uint32_t)bal_rng_below(&r, neligible - 1)) % neligible
		                       : UINT32_MAX;
		double leader = 0.45 + 0.15 * bal_rng_unit(&r);
		double small = small_rank != UINT32_MAX ? 0.015 + 0.02 * bal_rng_unit(&r) : 0;
		double rest = 1.0 - fixed - leader - small;
		if (rest < 0)
			rest = 0; /* many ineligible choices: the normalisation below rescales */
		double share_sum = 0;
		uint32_t rank = 0;
		for (uint32_t k = 0; k < n; k++) {
			if (!c->choices[k].seat_eligible)
				continue;
			if (rank == leader_rank)
				p[k] = leader;
			else if (rank == small_rank)
				p[k] = small;
			else
				share_sum += p[k] = 1.0 + 1.5 * bal_rng_unit(&r);
			rank++;
		}
		rank = 0;
		for (uint32_t k = 0; k < n; k++) {
			if (!c->choices[k].seat_eligible)
				continue;
			if (rank != leader_rank && rank != small_rank)
				p[k] = rest * p[k] / share_sum;
			else if (rank == leader_rank && share_sum == 0)
				p[k] += rest; /* nobody else to share with */
			rank++;
		}
	}
	double total = 0;
	for (uint32_t k = 0; k < n; k++)
		total += p[k];
	double acc = 0;
	for (uint32_t k = 0; k < n; k++) {
		acc += p[k];
		w->cum[k] = (uint64_t)(acc / total * 4294967296.0);
	}
	w->cum[n - 1] = 1ULL << 32;
	free(p);
	return 0;
}

static uint32_t draw(const struct weights *w, struct bal_rng *r)
{
	uint64_t x = bal_rng_next(r) >> 32;
	uint32_t lo = 0, hi = w->n - 1;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (x < w->cum[mid])
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

static uint32_t ballot_of(const struct bal_defn *d, uint32_t p, uint32_t *contests)
{
	uint32_t n = 0;
	for (uint32_t c = 0; c < d->ncontests; c++)
		if (bal_defn_votes_in(d, p, c)) {
			if (contests)
				contests[n] = c;
			n++;
		}
	return n;
}

int bal_gen_new(const struct bal_defn *d, const struct bal_gen_opts *o, struct bal_gen **out, char *why, size_t whylen)
{
	if (o->batch_size < 1 || o->batch_size > BAL_GEN_MAX_BATCH)
		return bal__failf(-EINVAL, why, whylen, "batch size %u: must be between 1 and %u", o->batch_size,
		                  BAL_GEN_MAX_BATCH);
	if (o->kind != BAL_KIND_BALLOTS && o->kind != BAL_KIND_TALLY)
		return bal__failf(-EINVAL, why, whylen, "kind %d: the generator makes BALLOTS (0) or TALLY (1) batches",
		                  (int)o->kind);
	if (d->nprecincts == 0 || d->ncontests == 0)
		return bal__failf(-EINVAL, why, whylen,
		                  "definition has %u precincts and %u contests: needs at least one of each",
		                  d->nprecincts, d->ncontests);
	if (sodium_init() < 0)
		return bal__failf(-ENOSYS, why, whylen, "libsodium failed to initialise");

	struct bal_gen *g = calloc(1, sizeof(*g));
	if (!g)
		goto fail_nomem;
	g->d = d;
	g->o = *o;
	g->day0_ms = election_day_ms(d->election_date);
	g->w = calloc(d->ncontests, sizeof(*g->w));
	g->key_state = calloc(d->nprecincts, 1);
	g->sk = calloc(d->nprecincts, sizeof(*g->sk));
	if (!g->w || !g->key_state || !g->sk)
		goto fail_gen;
	for (uint32_t c = 0; c < d->ncontests; c++)
		if (build_weights(o, &d->contests[c], &g->w[c]) < 0)
			goto fail_gen;
	for (uint32_t p = 0; p < d->nprecincts; p++) {
		uint32_t n = ballot_of(d, p, NULL);
		if (n > g->maxc)
			g->maxc = n;
	}
	size_t maxc = g->maxc ? g->maxc : 1;
	g->contests = calloc(maxc, sizeof(*g->contests));
	g->cols = calloc(maxc, sizeof(*g->cols));
	g->tallies = calloc(maxc, sizeof(*g->tallies));
	if (!g->contests || !g->cols || !g->tallies)
		goto fail_gen;
	if (o->kind == BAL_KIND_BALLOTS) {
		g->choices = calloc(maxc * o->batch_size, sizeof(*g->choices));
		if (!g->choices)
			goto fail_gen;
	}
	*out = g;
	return 0;

fail_gen:
	bal_gen_free(g);
fail_nomem:
	return bal__failf(-ENOMEM, why, whylen, "out of memory building the generator");
}

void bal_gen_free(struct bal_gen *g)
{
	if (!g)
		return;
	if (g->w)
		for (uint32_t c = 0; c < g->d->ncontests; c++)
			free(g->w[c].cum);
	free(g->w);
	free(g->key_state);
	if (g->sk)
		sodium_memzero(g->sk, (size_t)g->d->nprecincts * sizeof(*g->sk));
	free(g->sk);
	free(g->contests);
	free(g->cols);
	free(g->tallies);
	free(g->choices);
	free(g->counts);
	free(g->inner);
	free(g->body);
	free(g);
}

static int precinct_key(struct bal_gen *g, uint32_t p, char *why, size_t whylen)
{
	const struct bal_precinct *pr = &g->d->precincts[p];
	if (g->key_state[p] == KEY_UNKNOWN) {
		uint8_t pk[32];
		bal_demo_keypair(g->o.key_seed, pr->id, pk, g->sk[p]);
		g->key_state[p] = sodium_memcmp(pk, pr->public_key, sizeof(pk)) == 0 ? KEY_OK : KEY_MISMATCH;
		if (g->key_state[p] == KEY_MISMATCH)
			sodium_memzero(g->sk[p], sizeof(g->sk[p]));
	}
	if (g->key_state[p] == KEY_MISMATCH)
		return bal__failf(
		        BAL_EAUTH, why, whylen,
		        "precinct %u: the demo key of key seed %llu does not match the definition's public_key "
		        "(use the --seed the definition was generated with)",
		        pr->id, (unsigned long long)g->o.key_seed);
	return 0;
}

static void fill_ballots(struct bal_gen *g, uint32_t nc, struct bal_rng *r)
{
	uint32_t bs = g->o.batch_size;
	for (uint32_t i = 0; i < nc; i++) {
		uint32_t c = g->contests[i];
		uint32_t *col = g->choices + (size_t)i * bs;
		for (uint32_t b = 0; b < bs; b++)
			col[b] = draw(&g->w[c], r);
		g->cols[i].contest_id = g->d->contests[c].id;
		g->cols[i].n = bs;
		g->cols[i].choices = col;
	}
}

/* Zeroed counts for the nc contests of the current ballot, tallies pointing at them. */
static int zero_tallies(struct bal_gen *g, uint32_t nc)
{
	size_t total = 0;
	for (uint32_t i = 0; i < nc; i++)
		total += g->d->contests[g->contests[i]].nchoices;
	if (bal__grow((void **)&g->counts, &g->counts_cap, total, sizeof(*g->counts), 256) < 0)
		return -ENOMEM;
	memset(g->counts, 0, total * sizeof(*g->counts));
	size_t off = 0;
	for (uint32_t i = 0; i < nc; i++) {
		uint32_t c = g->contests[i];
		g->tallies[i].contest_id = g->d->contests[c].id;
		g->tallies[i].n = g->d->contests[c].nchoices;
		g->tallies[i].counts = g->counts + off;
		off += g->d->contests[c].nchoices;
	}
	return 0;
}

/* Adds one batch's votes to the tallies: the same draws, in the same order,
 * as fill_ballots(), so a TALLY batch counts what the BALLOTS batch holds. */
static void draw_tallies(struct bal_gen *g, uint32_t nc, struct bal_rng *r)
{
	uint64_t *counts = g->counts; /* zero_tallies() laid the contests out back to back */
	for (uint32_t i = 0; i < nc; i++) {
		for (uint32_t b = 0; b < g->o.batch_size; b++)
			counts[draw(&g->w[g->contests[i]], r)]++;
		counts += g->d->contests[g->contests[i]].nchoices;
	}
}

static int fill_tallies(struct bal_gen *g, uint32_t nc, struct bal_rng *r)
{
	if (zero_tallies(g, nc) < 0)
		return -ENOMEM;
	draw_tallies(g, nc, r);
	return 0;
}

/* Packs `b`, signs it with precinct p's demo key if it has a public key, and
 * wraps it in a SignedBatch; the outputs are borrowed from `g`. */
static int finish(struct bal_gen *g, uint32_t p, const struct bal_batch *bp, struct bal_batch *batch,
                  const uint8_t **body, size_t *len, char *why, size_t whylen)
{
	const struct bal_precinct *pr = &g->d->precincts[p];
	struct bal_batch b = *bp;
	size_t ilen = bal_codec_batch_size(&b);
	if (bal__grow((void **)&g->inner, &g->inner_cap, ilen, 1, 256) < 0)
		return bal__failf(-ENOMEM, why, whylen, "out of memory packing a batch of %zu bytes", ilen);
	bal_codec_batch_pack(&b, g->inner);
	uint8_t sig[crypto_sign_BYTES];
	size_t siglen = 0;
	if (pr->has_key) {
		crypto_sign_detached(sig, NULL, g->inner, ilen, g->sk[p]);
		siglen = sizeof(sig);
	}
	size_t slen = bal_codec_signed_size(g->inner, ilen, sig, siglen);
	if (bal__grow((void **)&g->body, &g->body_cap, slen, 1, 256) < 0)
		return bal__failf(-ENOMEM, why, whylen, "out of memory packing a batch of %zu bytes", slen);
	bal_codec_signed_pack(g->inner, ilen, sig, siglen, g->body);

	if (batch) {
		b.signed_bytes = g->inner;
		b.signed_len = ilen;
		/* The signature is copied into the body; point at it there. */
		b.signature = siglen ? g->body + slen - siglen : NULL;
		b.signature_len = siglen;
		*batch = b;
	}
	*body = g->body;
	*len = slen;
	return 0;
}

/* Checks (p, seq) and the precinct's key. */
static int check_target(struct bal_gen *g, uint32_t p, uint64_t seq, char *why, size_t whylen)
{
	const struct bal_defn *d = g->d;
	if (p >= d->nprecincts)
		return bal__failf(-EINVAL, why, whylen,
		                  "precinct index %u: out of range (the definition has %u precincts)", p,
		                  d->nprecincts);
	if (seq == 0)
		return bal__failf(-EINVAL, why, whylen, "precinct %u seq 0: seqs start at 1", d->precincts[p].id);
	return d->precincts[p].has_key ? precinct_key(g, p, why, whylen) : 0;
}

int bal_gen_batch(struct bal_gen *g, uint32_t p, uint64_t seq, struct bal_batch *batch, const uint8_t **body,
                  size_t *len, char *why, size_t whylen)
{
	const struct bal_defn *d = g->d;
	int rc = check_target(g, p, seq, why, whylen);
	if (rc < 0)
		return rc;
	const struct bal_precinct *pr = &d->precincts[p];

	struct bal_rng r;
	bal_rng_seed(&r, g->o.seed ^ RNG_BATCH, pr->id, seq);
	uint32_t nc = ballot_of(d, p, g->contests);
	struct bal_batch b;
	memset(&b, 0, sizeof(b));
	b.precinct_id = pr->id;
	b.seq = seq;
	b.kind = g->o.kind;
	if (g->o.kind == BAL_KIND_BALLOTS) {
		fill_ballots(g, nc, &r);
		b.ncolumns = nc;
		b.columns = g->cols;
	} else {
		if (fill_tallies(g, nc, &r) < 0)
			return bal__failf(-ENOMEM, why, whylen, "out of memory generating a tally");
		b.ntallies = nc;
		b.tallies = g->tallies;
	}
	b.has_turnout = true;
	b.ballots_cast = g->o.batch_size;
	b.ballots_spoiled = bal_rng_below(&r, 3);
	b.ballots_issued = b.ballots_cast + b.ballots_spoiled;
	b.created_unix_ms = (uint64_t)g->day0_ms + seq * 60000;
	b.election_id = d->election_id;

	return finish(g, p, &b, batch, body, len, why, whylen);
}

/*
 * Moves min(shift, votes of the contest's leader) votes from the leader to
 * another choice, in one contest with at least two choices; both contest and
 * receiving choice drawn from `r`. Nothing if no contest has two choices.
 */
static void shift_votes(struct bal_gen *g, uint32_t nc, uint64_t shift, struct bal_rng *r)
{
	uint32_t eligible = 0;
	for (uint32_t i = 0; i < nc; i++)
		eligible += g->tallies[i].n >= 2;
	if (!eligible)
		return;
	uint32_t pick = (uint32_t)bal_rng_below(r, eligible), i = 0;
	uint64_t *counts = g->counts; /* laid out as in draw_tallies() */
	for (;; i++) {
		if (g->tallies[i].n >= 2 && pick-- == 0)
			break;
		counts += g->tallies[i].n;
	}
	uint32_t n = (uint32_t)g->tallies[i].n, from = 0;
	for (uint32_t k = 1; k < n; k++)
		if (counts[k] > counts[from])
			from = k;
	uint32_t to = (from + 1 + (uint32_t)bal_rng_below(r, n - 1)) % n;
	uint64_t moved = shift < counts[from] ? shift : counts[from];
	counts[from] -= moved;
	counts[to] += moved;
}

int bal_gen_protocol(struct bal_gen *g, uint32_t p, uint64_t seq, uint64_t covers, uint64_t shift,
                     struct bal_batch *batch, const uint8_t **body, size_t *len, char *why, size_t whylen)
{
	const struct bal_defn *d = g->d;
	int rc = check_target(g, p, seq, why, whylen);
	if (rc < 0)
		return rc;
	if (covers > BAL_GEN_MAX_COVERS)
		return bal__failf(-EINVAL, why, whylen, "protocol of precinct %u covers %llu batches: at most %u",
		                  d->precincts[p].id, (unsigned long long)covers, BAL_GEN_MAX_COVERS);
	const struct bal_precinct *pr = &d->precincts[p];
	uint32_t nc = ballot_of(d, p, g->contests);
	if (zero_tallies(g, nc) < 0)
		return bal__failf(-ENOMEM, why, whylen, "out of memory generating a protocol");
	struct bal_batch b;
	memset(&b, 0, sizeof(b));
	/* Batch s draws its votes, then its spoiled count, from its own stream
	 * (see bal_gen_batch()): replaying the streams of 1..covers sums them. */
	for (uint64_t s = 1; s <= covers; s++) {
		struct bal_rng r;
		bal_rng_seed(&r, g->o.seed ^ RNG_BATCH, pr->id, s);
		draw_tallies(g, nc, &r);
		b.ballots_spoiled += bal_rng_below(&r, 3);
	}
	if (shift) {
		struct bal_rng r;
		bal_rng_seed(&r, g->o.seed ^ RNG_SHIFT, pr->id, seq);
		shift_votes(g, nc, shift, &r);
	}
	b.precinct_id = pr->id;
	b.seq = seq;
	b.kind = BAL_KIND_PROTOCOL;
	b.ntallies = nc;
	b.tallies = g->tallies;
	b.has_turnout = true;
	b.ballots_cast = covers * g->o.batch_size;
	b.ballots_issued = b.ballots_cast + b.ballots_spoiled;
	b.created_unix_ms = (uint64_t)g->day0_ms + seq * 60000;
	b.election_id = d->election_id;
	return finish(g, p, &b, batch, body, len, why, whylen);
}
