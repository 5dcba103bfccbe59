/*
 * Expected totals (see expect.h): dense arrays indexed by contest, district
 * and choice index, filled by a two-pass fold (check everything, then add).
 * Deliberately shares no code with daemon/core/tally.c.
 *
 * Depends on daemon/core/ballot.h (definition look-ups) and jansson.
 */
#include "expect.h"

#include "util.h"

#include <stdio.h>
#include <stdlib.h>

struct bal_expect {
	const struct bal_defn *d;
	size_t *voff; /* per contest: offset of its choices in votes */
	uint64_t *votes;
	size_t *dvoff; /* per contest: offset of its [district][choice] block in dvotes */
	uint64_t *dvotes;
	uint8_t *reported; /* per precinct: 1 once a batch was folded */
	uint32_t nreporting;
	struct bal_expect_turnout t;
};

struct bal_expect *bal_expect_new(const struct bal_defn *d)
{
	struct bal_expect *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->d = d;
	e->voff = calloc(d->ncontests + 1, sizeof(*e->voff));
	e->dvoff = calloc(d->ncontests + 1, sizeof(*e->dvoff));
	e->reported = calloc(d->nprecincts ? d->nprecincts : 1, 1);
	if (!e->voff || !e->dvoff || !e->reported)
		goto fail_expect;
	for (uint32_t c = 0; c < d->ncontests; c++) {
		e->voff[c + 1] = e->voff[c] + d->contests[c].nchoices;
		e->dvoff[c + 1] = e->dvoff[c] + (size_t)d->ndistricts * d->contests[c].nchoices;
	}
	e->votes = calloc(e->voff[d->ncontests] + 1, sizeof(*e->votes));
	e->dvotes = calloc(e->dvoff[d->ncontests] + 1, sizeof(*e->dvotes));
	if (!e->votes || !e->dvotes)
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
	free(e->reported);
	free(e);
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

static int check_tallies(const struct bal_expect *e, uint32_t p, const struct bal_batch *b, char *why, size_t whylen)
{
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
		if (t->n > nchoices)
			return bal__failf(BAL_EINVALID, why, whylen,
					  "tallies[%zu].counts: %zu counts, but contest %u has %u choices", i, t->n,
					  t->contest_id, nchoices);
		const uint64_t *v = e->votes + e->voff[c];
		for (size_t k = 0; k < t->n; k++)
			if (t->counts[k] > UINT64_MAX - v[k])
				return bal__failf(
					BAL_EOVERFLOW, why, whylen,
					"tallies[%zu].counts[%zu]: %llu would overflow the expected total %llu", i, k,
					(unsigned long long)t->counts[k], (unsigned long long)v[k]);
	}
	return 0;
}

static void add_votes(struct bal_expect *e, uint32_t c, uint32_t dist, uint32_t k, uint64_t n)
{
	e->votes[e->voff[c] + k] += n;
	e->dvotes[e->dvoff[c] + (size_t)dist * e->d->contests[c].nchoices + k] += n;
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
	case BAL_KIND_PROTOCOL:
		return bal__failf(BAL_EUNSUPPORTED, why, whylen, "kind PROTOCOL: not modelled by the expected totals");
	default: return bal__failf(BAL_EINVALID, why, whylen, "kind %d: not a batch kind", (int)b->kind);
	}
	if (rc < 0)
		return rc;

	uint32_t dist = e->d->precincts[p].district;
	uint64_t ballots = 0;
	if (b->kind == BAL_KIND_BALLOTS) {
		for (size_t i = 0; i < b->ncolumns; i++) {
			uint32_t c = (uint32_t)bal_defn_contest(e->d, b->columns[i].contest_id);
			for (size_t j = 0; j < b->columns[i].n; j++)
				add_votes(e, c, dist, b->columns[i].choices[j], 1);
		}
		ballots = b->ncolumns ? b->columns[0].n : 0;
	} else {
		for (size_t i = 0; i < b->ntallies; i++) {
			uint32_t c = (uint32_t)bal_defn_contest(e->d, b->tallies[i].contest_id);
			for (size_t k = 0; k < b->tallies[i].n; k++)
				add_votes(e, c, dist, (uint32_t)k, b->tallies[i].counts[k]);
		}
	}
	e->t.batches++;
	e->t.ballots += ballots;
	e->t.issued += b->ballots_issued;
	e->t.cast += b->ballots_cast;
	e->t.spoiled += b->ballots_spoiled;
	if (!e->reported[p]) {
		e->reported[p] = 1;
		e->nreporting++;
	}
	return 0;
}

uint64_t bal_expect_votes(const struct bal_expect *e, uint32_t c, uint32_t k)
{
	if (c >= e->d->ncontests || k >= e->d->contests[c].nchoices)
		return 0;
	return e->votes[e->voff[c] + k];
}

static bool covers(const struct bal_contest *c, uint32_t dist)
{
	return c->district < 0 || (uint32_t)c->district == dist;
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
	json_object_set_new(j, "turnout", t);
	json_object_set_new(j, "contests", contests);
	return j;
}
