/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Expected totals (see expect.h). Per precinct it keeps the sum B of its
 * BALLOTS and TALLY batches and its latest protocol P, each in a dense area
 * with one slot per choice of the precinct's ballot, plus the national and
 * (contest, district) totals. A fold checks everything first, then withdraws
 * the precinct's contribution from the totals, changes B or P, and adds the
 * precinct's new contribution back: plain enough to be obviously right. A
 * void does the same the other way: B loses the batch, or P becomes the
 * latest protocol left (every folded protocol is kept for that).
 * Deliberately shares no code with the counters of core/ (core/tally.h).
 *
 * Depends on core/ballot.h (definition look-ups) and jansson.
 */
#include "client/expect.h"

#include "client/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOT_ON_BALLOT SIZE_MAX

/* A folded protocol, kept so that a void can let an older one count again. */
struct protocol {
	struct protocol *next;
	uint64_t seq;
	bool voided;
	struct bal_expect_turnout t; /* issued, cast, spoiled */
	uint64_t votes[];            /* the precinct's ballot area */
};

struct bal_expect {
	const struct bal_defn *d;
	size_t *voff; /* per contest: offset of its choices in votes */
	uint64_t *votes;
	size_t *dvoff; /* per contest: offset of its [district][choice] block in dvotes */
	uint64_t *dvotes;
	size_t *boff;     /* [district][contest]: offset of the contest in that district's ballot, or NOT_ON_BALLOT */
	size_t *pbase;    /* [nprecincts + 1]: offset of precinct p's ballot area in bvotes and pvotes */
	uint64_t *bvotes; /* B: sums of the precinct's BALLOTS and TALLY batches */
	uint64_t *pvotes; /* P: the precinct's latest protocol */
	struct bal_expect_turnout *bt; /* per precinct: counts, and turnout sums of B */
	struct bal_expect_turnout *pt; /* per precinct: the protocol's issued, cast, spoiled */
	uint64_t *pseq;                /* per precinct: seq of the protocol that counts, 0 = none */
	struct protocol **protocols;   /* per precinct: every protocol folded, newest first */
	uint32_t nreporting;
	uint32_t nprotocols;
	struct bal_expect_turnout t;
};

static bool covers(const struct bal_contest *c, uint32_t dist)
{
	return c->district < 0 || (uint32_t)c->district == dist;
}

/* Fills boff and pbase; the areas are sized from pbase[nprecincts]. 0 or -ENOMEM. */
static int build_ballots(struct bal_expect *e)
{
	const struct bal_defn *d = e->d;
	size_t *size = calloc(d->ndistricts ? d->ndistricts : 1, sizeof(*size));
	if (!size)
		return -ENOMEM;
	for (uint32_t dist = 0; dist < d->ndistricts; dist++)
		for (uint32_t c = 0; c < d->ncontests; c++) {
			size_t *o = &e->boff[(size_t)dist * d->ncontests + c];
			*o = NOT_ON_BALLOT;
			if (covers(&d->contests[c], dist)) {
				*o = size[dist];
				size[dist] += d->contests[c].nchoices;
			}
		}
	for (uint32_t p = 0; p < d->nprecincts; p++)
		e->pbase[p + 1] = e->pbase[p] + size[d->precincts[p].district];
	free(size);
	return 0;
}

struct bal_expect *bal_expect_new(const struct bal_defn *d)
{
	struct bal_expect *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->d = d;
	size_t np = d->nprecincts ? d->nprecincts : 1;
	e->voff = calloc(d->ncontests + 1, sizeof(*e->voff));
	e->dvoff = calloc(d->ncontests + 1, sizeof(*e->dvoff));
	e->boff = calloc((size_t)d->ndistricts * d->ncontests + 1, sizeof(*e->boff));
	e->pbase = calloc(np + 1, sizeof(*e->pbase));
	e->bt = calloc(np, sizeof(*e->bt));
	e->pt = calloc(np, sizeof(*e->pt));
	e->pseq = calloc(np, sizeof(*e->pseq));
	e->protocols = calloc(np, sizeof(*e->protocols));
	if (!e->voff || !e->dvoff || !e->boff || !e->pbase || !e->bt || !e->pt || !e->pseq || !e->protocols)
		goto fail_expect;
	for (uint32_t c = 0; c < d->ncontests; c++) {
		e->voff[c + 1] = e->voff[c] + d->contests[c].nchoices;
		e->dvoff[c + 1] = e->dvoff[c] + (size_t)d->ndistricts * d->contests[c].nchoices;
	}
	if (build_ballots(e) < 0)
		goto fail_expect;
	e->votes = calloc(e->voff[d->ncontests] + 1, sizeof(*e->votes));
	e->dvotes = calloc(e->dvoff[d->ncontests] + 1, sizeof(*e->dvotes));
	e->bvotes = calloc(e->pbase[d->nprecincts] + 1, sizeof(*e->bvotes));
	e->pvotes = calloc(e->pbase[d->nprecincts] + 1, sizeof(*e->pvotes));
	if (!e->votes || !e->dvotes || !e->bvotes || !e->pvotes)
		goto fail_expect;
	return e;

fail_expect:
	bal_expect_free(e);
	return NULL;
}

void bal_expect_free(struct bal_expect *e)
{
	if (!e)
		return;
	free(e->voff);
	free(e->votes);
	free(e->dvoff);
	free(e->dvotes);
	free(e->boff);
	free(e->pbase);
	free(e->bvotes);
	free(e->pvotes);
	free(e->bt);
	free(e->pt);
	free(e->pseq);
	for (uint32_t p = 0; e->protocols && p < e->d->nprecincts; p++)
		while (e->protocols[p]) {
			struct protocol *next = e->protocols[p]->next;
			free(e->protocols[p]);
			e->protocols[p] = next;
		}
	free(e->protocols);
	free(e);
}

/* Offset of contest c's choices in precinct p's area, or NOT_ON_BALLOT. */
static size_t area_off(const struct bal_expect *e, uint32_t p, uint32_t c)
{
	size_t o = e->boff[(size_t)e->d->precincts[p].district * e->d->ncontests + c];
	return o == NOT_ON_BALLOT ? o : e->pbase[p] + o;
}

/* Contest index of `id` if precinct `p` votes in it, else an error naming `field`. */
static int ballot_contest(const struct bal_expect *e, uint32_t p, const char *field, size_t i, uint32_t id, char *why,
                          size_t whylen)
{
	int32_t c = bal_defn_contest(e->d, id);
	if (c < 0)
		return bal__failf(BAL_EINVALID, why, whylen, "%s[%zu].contest_id %u: not a contest of the definition",
		                  field, i, id);
	if (!bal_defn_votes_in(e->d, p, (uint32_t)c))
		return bal__failf(BAL_EINVALID, why, whylen, "%s[%zu].contest_id %u: not on the ballot of precinct %u",
		                  field, i, id, e->d->precincts[p].id);
	return c;
}

static int check_ballots(const struct bal_expect *e, uint32_t p, const struct bal_batch *b, char *why, size_t whylen)
{
	for (size_t i = 0; i < b->ncolumns; i++) {
		const struct bal_column *col = &b->columns[i];
		int c = ballot_contest(e, p, "ballots", i, col->contest_id, why, whylen);
		if (c < 0)
			return c;
		for (size_t j = 0; j < i; j++)
			if (b->columns[j].contest_id == col->contest_id)
				return bal__failf(BAL_EINVALID, why, whylen,
				                  "ballots[%zu].contest_id %u: repeats ballots[%zu]", i,
				                  col->contest_id, j);
		if (col->n != b->columns[0].n)
			return bal__failf(BAL_EINVALID, why, whylen,
			                  "ballots[%zu]: %zu choices, but ballots[0] has %zu", i, col->n,
			                  b->columns[0].n);
		uint32_t nchoices = e->d->contests[c].nchoices;
		for (size_t j = 0; j < col->n; j++)
			if (col->choices[j] >= nchoices)
				return bal__failf(
				        BAL_EINVALID, why, whylen,
				        "ballots[%zu].choices[%zu]: choice %u out of range (contest %u has %u choices)",
				        i, j, col->choices[j], col->contest_id, nchoices);
	}
	return 0;
}

/* Would `add` on top of `have` overflow? Names the place. */
static int overflows(uint64_t have, uint64_t add, const char *what, size_t i, size_t k, char *why, size_t whylen)
{
	if (add <= UINT64_MAX - have)
		return 0;
	return bal__failf(BAL_EOVERFLOW, why, whylen, "tallies[%zu].counts[%zu]: %llu would overflow the %s %llu", i, k,
	                  (unsigned long long)add, what, (unsigned long long)have);
}

/*
 * Tallies of a TALLY batch (counts added to B; to the totals too without a
 * protocol) or of a PROTOCOL (its counts replace the precinct's contribution
 * if it counts; then each must list every choice).
 */
static int check_tallies(const struct bal_expect *e, uint32_t p, const struct bal_batch *b, char *why, size_t whylen)
{
	const bool protocol = b->kind == BAL_KIND_PROTOCOL;
	const bool counts = !protocol || b->seq > e->pseq[p];
	const uint64_t *contrib = e->pseq[p] ? e->pvotes : e->bvotes;
	for (size_t i = 0; i < b->ntallies; i++) {
		const struct bal_ctally *t = &b->tallies[i];
		int c = ballot_contest(e, p, "tallies", i, t->contest_id, why, whylen);
		if (c < 0)
			return c;
		for (size_t j = 0; j < i; j++)
			if (b->tallies[j].contest_id == t->contest_id)
				return bal__failf(BAL_EINVALID, why, whylen,
				                  "tallies[%zu].contest_id %u: repeats tallies[%zu]", i, t->contest_id,
				                  j);
		uint32_t nchoices = e->d->contests[c].nchoices;
		if (t->n > nchoices || (protocol && t->n != nchoices))
			return bal__failf(BAL_EINVALID, why, whylen,
			                  "tallies[%zu].counts: %zu counts, but contest %u has %u choices", i, t->n,
			                  t->contest_id, nchoices);
		const uint64_t *v = e->votes + e->voff[c];
		const size_t a = area_off(e, p, (uint32_t)c);
		for (size_t k = 0; k < t->n && counts; k++) {
			const uint64_t n = t->counts[k];
			int rc = 0;
			if (!protocol)
				rc = overflows(e->bvotes[a + k], n, "precinct's ballot sum", i, k, why, whylen);
			/* A protocol's count replaces the precinct's part of the total. */
			if (!rc && (protocol || !e->pseq[p]))
				rc = overflows(v[k] - (protocol ? contrib[a + k] : 0), n, "expected total", i, k, why,
				               whylen);
			if (rc)
				return rc;
		}
	}
	return 0;
}

static int check_protocol(const struct bal_expect *e, uint32_t p, const struct bal_batch *b, char *why, size_t whylen)
{
	if (b->ncolumns)
		return bal__failf(BAL_EINVALID, why, whylen, "kind PROTOCOL: %zu ballot columns, a protocol has none",
		                  b->ncolumns);
	if (!b->has_turnout)
		return bal__failf(BAL_EINVALID, why, whylen, "kind PROTOCOL: no turnout, a protocol must have one");
	int rc = check_tallies(e, p, b, why, whylen);
	if (rc < 0)
		return rc;
	const uint32_t dist = e->d->precincts[p].district;
	for (uint32_t c = 0; c < e->d->ncontests; c++) {
		if (!covers(&e->d->contests[c], dist))
			continue;
		size_t i = 0;
		while (i < b->ntallies && b->tallies[i].contest_id != e->d->contests[c].id)
			i++;
		if (i == b->ntallies)
			return bal__failf(BAL_EINVALID, why, whylen,
			                  "kind PROTOCOL: contest %u is on the ballot of precinct %u but has no tally",
			                  e->d->contests[c].id, e->d->precincts[p].id);
	}
	return 0;
}

/* Adds (or takes away) precinct p's contribution to every total. */
static void contribute(struct bal_expect *e, uint32_t p, bool add)
{
	const struct bal_defn *d = e->d;
	const uint32_t dist = d->precincts[p].district;
	const uint64_t *src = e->pseq[p] ? e->pvotes : e->bvotes;
	for (uint32_t c = 0; c < d->ncontests; c++) {
		const size_t a = area_off(e, p, c);
		if (a == NOT_ON_BALLOT)
			continue;
		uint32_t n = d->contests[c].nchoices;
		uint64_t *v = e->votes + e->voff[c];
		uint64_t *dv = e->dvotes + e->dvoff[c] + (size_t)dist * n;
		for (uint32_t k = 0; k < n; k++) {
			v[k] = add ? v[k] + src[a + k] : v[k] - src[a + k];
			dv[k] = add ? dv[k] + src[a + k] : dv[k] - src[a + k];
		}
	}
	const struct bal_expect_turnout *t = e->pseq[p] ? &e->pt[p] : &e->bt[p];
	e->t.issued = add ? e->t.issued + t->issued : e->t.issued - t->issued;
	e->t.cast = add ? e->t.cast + t->cast : e->t.cast - t->cast;
	e->t.spoiled = add ? e->t.spoiled + t->spoiled : e->t.spoiled - t->spoiled;
}

/* Precinct p's P becomes `q` (a kept protocol), or none. */
static void take_protocol(struct bal_expect *e, uint32_t p, const struct protocol *q)
{
	if (!q) {
		if (e->pseq[p])
			e->nprotocols--;
		e->pseq[p] = 0;
		return;
	}
	if (!e->pseq[p])
		e->nprotocols++;
	e->pseq[p] = q->seq;
	memcpy(e->pvotes + e->pbase[p], q->votes, (e->pbase[p + 1] - e->pbase[p]) * sizeof(uint64_t));
	e->pt[p].issued = q->t.issued;
	e->pt[p].cast = q->t.cast;
	e->pt[p].spoiled = q->t.spoiled;
}

/* Keeps protocol `b` of precinct p, first in its list. 0 or -ENOMEM. */
static int keep_protocol(struct bal_expect *e, uint32_t p, const struct bal_batch *b)
{
	size_t n = e->pbase[p + 1] - e->pbase[p];
	struct protocol *q = calloc(1, sizeof(*q) + n * sizeof(uint64_t));
	if (!q)
		return -ENOMEM;
	q->seq = b->seq;
	for (size_t i = 0; i < b->ntallies; i++) {
		size_t a = area_off(e, p, (uint32_t)bal_defn_contest(e->d, b->tallies[i].contest_id)) - e->pbase[p];
		for (size_t k = 0; k < b->tallies[i].n; k++)
			q->votes[a + k] = b->tallies[i].counts[k];
	}
	q->t.issued = b->ballots_issued;
	q->t.cast = b->ballots_cast;
	q->t.spoiled = b->ballots_spoiled;
	q->next = e->protocols[p];
	e->protocols[p] = q;
	return 0;
}

/* Changes B (BALLOTS, TALLY) or P (a protocol newer than the stored one,
 * kept first in the precinct's list). */
static void fold_into_precinct(struct bal_expect *e, uint32_t p, const struct bal_batch *b)
{
	if (b->kind == BAL_KIND_PROTOCOL) {
		if (b->seq > e->pseq[p]) /* an older protocol never replaces a newer one */
			take_protocol(e, p, e->protocols[p]);
		return;
	}
	if (b->kind == BAL_KIND_BALLOTS) {
		for (size_t i = 0; i < b->ncolumns; i++) {
			size_t a = area_off(e, p, (uint32_t)bal_defn_contest(e->d, b->columns[i].contest_id));
			for (size_t j = 0; j < b->columns[i].n; j++)
				e->bvotes[a + b->columns[i].choices[j]]++;
		}
	} else {
		for (size_t i = 0; i < b->ntallies; i++) {
			size_t a = area_off(e, p, (uint32_t)bal_defn_contest(e->d, b->tallies[i].contest_id));
			for (size_t k = 0; k < b->tallies[i].n; k++)
				e->bvotes[a + k] += b->tallies[i].counts[k];
		}
	}
	e->bt[p].issued += b->ballots_issued;
	e->bt[p].cast += b->ballots_cast;
	e->bt[p].spoiled += b->ballots_spoiled;
}

int bal_expect_fold(struct bal_expect *e, const struct bal_batch *b, char *why, size_t whylen)
{
	int32_t p = bal_defn_precinct(e->d, b->precinct_id);
	if (p < 0)
		return bal__failf(BAL_EINVALID, why, whylen, "precinct_id %u: not a precinct of the definition",
		                  b->precinct_id);
	int rc;
	switch (b->kind) {
	case BAL_KIND_BALLOTS: rc = check_ballots(e, (uint32_t)p, b, why, whylen); break;
	case BAL_KIND_TALLY: rc = check_tallies(e, (uint32_t)p, b, why, whylen); break;
	case BAL_KIND_PROTOCOL: rc = check_protocol(e, (uint32_t)p, b, why, whylen); break;
	default: return bal__failf(BAL_EINVALID, why, whylen, "kind %d: not a batch kind", (int)b->kind);
	}
	if (rc < 0)
		return rc;
	/* Signed for another election that shares the keys (a rehearsal). */
	const char *election = b->election_id ? b->election_id : "";
	const char *ours = e->d->election_id ? e->d->election_id : "";
	if (strcmp(election, ours) != 0)
		return bal__failf(BAL_EINVALID, why, whylen,
		                  "election_id \"%.64s\": the definition's election is \"%.64s\"", election, ours);
	if (b->kind == BAL_KIND_PROTOCOL && keep_protocol(e, (uint32_t)p, b) < 0)
		return bal__failf(-ENOMEM, why, whylen, "out of memory keeping a protocol of precinct %u",
		                  b->precinct_id);

	contribute(e, (uint32_t)p, false);
	fold_into_precinct(e, (uint32_t)p, b);
	contribute(e, (uint32_t)p, true);
	uint64_t ballots = b->kind == BAL_KIND_BALLOTS && b->ncolumns ? b->columns[0].n : 0;
	e->bt[p].batches++;
	e->bt[p].ballots += ballots;
	e->t.batches++;
	e->t.ballots += ballots;
	if (e->bt[p].batches == 1)
		e->nreporting++;
	return 0;
}

/* Whether `have` holds `sub` to take away; names what does not. */
static int underflows(uint64_t have, uint64_t sub, const char *what, char *why, size_t whylen)
{
	if (sub <= have)
		return 0;
	return bal__failf(BAL_EINVALID, why, whylen, "%llu to take back, the precinct's %s holds %llu",
	                  (unsigned long long)sub, what, (unsigned long long)have);
}

/* Whether precinct p's B and counts hold what BALLOTS or TALLY batch `b` added. */
static int check_takeback(const struct bal_expect *e, uint32_t p, const struct bal_batch *b, char *why, size_t whylen)
{
	const size_t base = e->pbase[p], n = e->pbase[p + 1] - base;
	uint64_t *sub = calloc(n + 1, sizeof(*sub));
	if (!sub)
		return bal__failf(-ENOMEM, why, whylen, "out of memory");
	for (size_t i = 0; i < b->ncolumns; i++) {
		size_t a = area_off(e, p, (uint32_t)bal_defn_contest(e->d, b->columns[i].contest_id)) - base;
		for (size_t j = 0; j < b->columns[i].n; j++)
			sub[a + b->columns[i].choices[j]]++;
	}
	for (size_t i = 0; i < b->ntallies; i++) {
		size_t a = area_off(e, p, (uint32_t)bal_defn_contest(e->d, b->tallies[i].contest_id)) - base;
		for (size_t k = 0; k < b->tallies[i].n; k++)
			sub[a + k] += b->tallies[i].counts[k];
	}
	int rc = 0;
	for (size_t s = 0; !rc && s < n; s++)
		rc = underflows(e->bvotes[base + s], sub[s], "ballot sum of a choice", why, whylen);
	free(sub);
	const struct bal_expect_turnout *t = &e->bt[p];
	const uint64_t ballots = b->kind == BAL_KIND_BALLOTS && b->ncolumns ? b->columns[0].n : 0;
	if (!rc)
		rc = underflows(t->issued, b->ballots_issued, "ballots issued", why, whylen);
	if (!rc)
		rc = underflows(t->cast, b->ballots_cast, "ballots cast", why, whylen);
	if (!rc)
		rc = underflows(t->spoiled, b->ballots_spoiled, "ballots spoiled", why, whylen);
	if (!rc)
		rc = underflows(t->ballots, ballots, "cast-vote records", why, whylen);
	if (!rc)
		rc = underflows(t->batches, 1, "batch count", why, whylen);
	return rc;
}

/* The latest protocol of precinct p folded and not voided, or NULL. */
static const struct protocol *latest_protocol(const struct bal_expect *e, uint32_t p)
{
	const struct protocol *best = NULL;
	for (const struct protocol *q = e->protocols[p]; q; q = q->next)
		if (!q->voided && (!best || q->seq > best->seq))
			best = q;
	return best;
}

/* Takes B (BALLOTS, TALLY) batch `b` out of precinct p's sums. */
static void take_from_precinct(struct bal_expect *e, uint32_t p, const struct bal_batch *b)
{
	for (size_t i = 0; i < b->ncolumns; i++) {
		size_t a = area_off(e, p, (uint32_t)bal_defn_contest(e->d, b->columns[i].contest_id));
		for (size_t j = 0; j < b->columns[i].n; j++)
			e->bvotes[a + b->columns[i].choices[j]]--;
	}
	for (size_t i = 0; i < b->ntallies; i++) {
		size_t a = area_off(e, p, (uint32_t)bal_defn_contest(e->d, b->tallies[i].contest_id));
		for (size_t k = 0; k < b->tallies[i].n; k++)
			e->bvotes[a + k] -= b->tallies[i].counts[k];
	}
	e->bt[p].issued -= b->ballots_issued;
	e->bt[p].cast -= b->ballots_cast;
	e->bt[p].spoiled -= b->ballots_spoiled;
}

int bal_expect_void(struct bal_expect *e, const struct bal_batch *b, char *why, size_t whylen)
{
	int32_t pi = bal_defn_precinct(e->d, b->precinct_id);
	if (pi < 0)
		return bal__failf(BAL_EINVALID, why, whylen, "precinct_id %u: not a precinct of the definition",
		                  b->precinct_id);
	const uint32_t p = (uint32_t)pi;
	int rc;
	switch (b->kind) {
	case BAL_KIND_BALLOTS: rc = check_ballots(e, p, b, why, whylen); break;
	case BAL_KIND_TALLY: rc = check_tallies(e, p, b, why, whylen); break;
	case BAL_KIND_PROTOCOL: rc = 0; break;
	default: return bal__failf(BAL_EINVALID, why, whylen, "kind %d: not a batch kind", (int)b->kind);
	}
	if (rc < 0)
		return rc;
	struct protocol *q = NULL;
	if (b->kind == BAL_KIND_PROTOCOL) {
		for (q = e->protocols[p]; q && (q->seq != b->seq || q->voided); q = q->next)
			;
		if (!q)
			return bal__failf(BAL_EINVALID, why, whylen,
			                  "precinct %u has no protocol of seq %llu folded (or it is voided already)",
			                  b->precinct_id, (unsigned long long)b->seq);
	} else if ((rc = check_takeback(e, p, b, why, whylen)) < 0) {
		return rc;
	}

	contribute(e, p, false);
	if (q) {
		q->voided = true;
		if (q->seq == e->pseq[p])
			take_protocol(e, p, latest_protocol(e, p));
	} else {
		take_from_precinct(e, p, b);
	}
	contribute(e, p, true);
	const uint64_t ballots = b->kind == BAL_KIND_BALLOTS && b->ncolumns ? b->columns[0].n : 0;
	e->bt[p].batches--;
	e->bt[p].ballots -= ballots;
	e->t.batches--;
	e->t.ballots -= ballots;
	if (e->bt[p].batches == 0)
		e->nreporting--;
	return 0;
}

uint64_t bal_expect_votes(const struct bal_expect *e, uint32_t c, uint32_t k)
{
	if (c >= e->d->ncontests || k >= e->d->contests[c].nchoices)
		return 0;
	return e->votes[e->voff[c] + k];
}

uint64_t bal_expect_district_votes(const struct bal_expect *e, uint32_t c, uint32_t dist, uint32_t k)
{
	if (c >= e->d->ncontests || dist >= e->d->ndistricts || k >= e->d->contests[c].nchoices ||
	    !covers(&e->d->contests[c], dist))
		return 0;
	return e->dvotes[e->dvoff[c] + (size_t)dist * e->d->contests[c].nchoices + k];
}

void bal_expect_turnout(const struct bal_expect *e, struct bal_expect_turnout *out)
{
	*out = e->t;
}

uint32_t bal_expect_precincts_reporting(const struct bal_expect *e)
{
	return e->nreporting;
}

uint32_t bal_expect_precincts_with_protocol(const struct bal_expect *e)
{
	return e->nprotocols;
}

static bool differs(const struct bal_expect *e, uint32_t p)
{
	if (!e->pseq[p])
		return false;
	const struct bal_expect_turnout *b = &e->bt[p], *q = &e->pt[p];
	if (b->issued != q->issued || b->cast != q->cast || b->spoiled != q->spoiled)
		return true;
	for (size_t i = e->pbase[p]; i < e->pbase[p + 1]; i++)
		if (e->bvotes[i] != e->pvotes[i])
			return true;
	return false;
}

uint32_t bal_expect_precincts_with_discrepancy(const struct bal_expect *e)
{
	uint32_t n = 0;
	for (uint32_t p = 0; p < e->d->nprecincts; p++)
		n += differs(e, p);
	return n;
}

uint64_t bal_expect_protocol_seq(const struct bal_expect *e, uint32_t p)
{
	return p < e->d->nprecincts ? e->pseq[p] : 0;
}

/* The slot of (p, c, k) in the precinct areas, or NOT_ON_BALLOT. */
static size_t precinct_slot(const struct bal_expect *e, uint32_t p, uint32_t c, uint32_t k)
{
	if (p >= e->d->nprecincts || c >= e->d->ncontests || k >= e->d->contests[c].nchoices)
		return NOT_ON_BALLOT;
	size_t a = area_off(e, p, c);
	return a == NOT_ON_BALLOT ? a : a + k;
}

uint64_t bal_expect_precinct_votes(const struct bal_expect *e, uint32_t p, uint32_t c, uint32_t k)
{
	size_t s = precinct_slot(e, p, c, k);
	if (s == NOT_ON_BALLOT)
		return 0;
	return e->pseq[p] ? e->pvotes[s] : e->bvotes[s];
}

uint64_t bal_expect_precinct_ballot_votes(const struct bal_expect *e, uint32_t p, uint32_t c, uint32_t k)
{
	size_t s = precinct_slot(e, p, c, k);
	return s == NOT_ON_BALLOT ? 0 : e->bvotes[s];
}

void bal_expect_precinct_turnout(const struct bal_expect *e, uint32_t p, bool ballot_sums,
                                 struct bal_expect_turnout *out)
{
	*out = (struct bal_expect_turnout){0};
	if (p >= e->d->nprecincts)
		return;
	*out = e->bt[p];
	if (!ballot_sums && e->pseq[p]) {
		out->issued = e->pt[p].issued;
		out->cast = e->pt[p].cast;
		out->spoiled = e->pt[p].spoiled;
	}
}

static json_t *u64(uint64_t v)
{
	/* json_int_t is long long; totals stay far below 2^63 in any election. */
	return json_integer((json_int_t)v);
}

static json_t *contest_json(const struct bal_expect *e, uint32_t c)
{
	const struct bal_contest *ct = &e->d->contests[c];
	json_t *j = json_object();
	json_t *votes = json_array();
	uint64_t total = 0;
	for (uint32_t k = 0; k < ct->nchoices; k++) {
		total += bal_expect_votes(e, c, k);
		json_array_append_new(votes, u64(bal_expect_votes(e, c, k)));
	}
	json_object_set_new(j, "id", json_integer(ct->id));
	json_object_set_new(j, "total_votes", u64(total));
	json_object_set_new(j, "votes", votes);
	json_t *districts = json_array();
	for (uint32_t dist = 0; dist < e->d->ndistricts; dist++) {
		if (!covers(ct, dist))
			continue;
		json_t *dj = json_object();
		json_t *dv = json_array();
		for (uint32_t k = 0; k < ct->nchoices; k++)
			json_array_append_new(dv, u64(bal_expect_district_votes(e, c, dist, k)));
		json_object_set_new(dj, "id", json_integer(e->d->districts[dist].id));
		json_object_set_new(dj, "votes", dv);
		json_array_append_new(districts, dj);
	}
	json_object_set_new(j, "districts", districts);
	return j;
}

json_t *bal_expect_json(const struct bal_expect *e)
{
	json_t *j = json_object();
	json_t *t = json_object();
	json_t *contests = json_array();
	if (!j || !t || !contests) {
		json_decref(j);
		json_decref(t);
		json_decref(contests);
		return NULL;
	}
	json_object_set_new(t, "batches", u64(e->t.batches));
	json_object_set_new(t, "ballots", u64(e->t.ballots));
	json_object_set_new(t, "issued", u64(e->t.issued));
	json_object_set_new(t, "cast", u64(e->t.cast));
	json_object_set_new(t, "spoiled", u64(e->t.spoiled));
	for (uint32_t c = 0; c < e->d->ncontests; c++)
		json_array_append_new(contests, contest_json(e, c));
	json_object_set_new(j, "batches", u64(e->t.batches));
	json_object_set_new(j, "ballots", u64(e->t.ballots));
	json_object_set_new(j, "precincts_reporting", json_integer(e->nreporting));
	json_object_set_new(j, "precincts_with_protocol", json_integer(e->nprotocols));
	json_object_set_new(j, "precincts_with_discrepancy", json_integer(bal_expect_precincts_with_discrepancy(e)));
	json_object_set_new(j, "turnout", t);
	json_object_set_new(j, "contests", contests);
	return j;
}
