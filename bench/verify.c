/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Totals for --verify (see verify.h). Depends on the definition structs,
 * client/expect.h and jansson.
 */
#include "bench/verify.h"

#include "client/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const turnout_names[BENCH_T_N] = {"batches", "ballots", "issued", "cast", "spoiled"};

int bench_totals_init(struct bench_totals *t, const struct bal_defn *d)
{
	memset(t, 0, sizeof(*t));
	t->d = d;
	t->noff = calloc(d->ncontests + 1, sizeof(*t->noff));
	t->doff = calloc(d->ncontests + 1, sizeof(*t->doff));
	if (!t->noff || !t->doff)
		goto fail;
	for (uint32_t c = 0; c < d->ncontests; c++) {
		t->noff[c + 1] = t->noff[c] + d->contests[c].nchoices;
		t->doff[c + 1] = t->doff[c] + (size_t)d->ndistricts * d->contests[c].nchoices;
	}
	t->nnational = t->noff[d->ncontests];
	t->ndistrict = t->doff[d->ncontests];
	t->national = calloc(t->nnational + 1, sizeof(*t->national));
	t->district = calloc(t->ndistrict + 1, sizeof(*t->district));
	if (!t->national || !t->district)
		goto fail;
	return 0;
fail:
	bench_totals_deinit(t);
	return -ENOMEM;
}

void bench_totals_deinit(struct bench_totals *t)
{
	free(t->national);
	free(t->district);
	free(t->noff);
	free(t->doff);
	memset(t, 0, sizeof(*t));
}

void bench_totals_zero(struct bench_totals *t)
{
	memset(t->turnout, 0, sizeof(t->turnout));
	memset(t->national, 0, t->nnational * sizeof(*t->national));
	memset(t->district, 0, t->ndistrict * sizeof(*t->district));
}

uint64_t *bench_totals_district(struct bench_totals *t, uint32_t c, uint32_t di, uint32_t k)
{
	return &t->district[t->doff[c] + (size_t)di * t->d->contests[c].nchoices + k];
}

static uint64_t num(json_t *v)
{
	if (json_is_object(v))
		v = json_object_get(v, "votes");
	return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

int bench_totals_from_snapshot(struct bench_totals *t, json_t *snap, char *why, size_t whylen)
{
	const struct bal_defn *d = t->d;
	bench_totals_zero(t);
	json_t *jt = json_object_get(snap, "turnout");
	if (!json_is_object(jt))
		return bal__failf(-EPROTO, why, whylen, "snapshot has no \"turnout\" object");
	for (int i = 0; i < BENCH_T_N; i++)
		t->turnout[i] = num(json_object_get(jt, turnout_names[i]));
	json_t *contests = json_object_get(snap, "contests");
	if (json_array_size(contests) != d->ncontests)
		return bal__failf(-EPROTO, why, whylen, "snapshot has %zu contests, the definition %u",
		                  json_array_size(contests), d->ncontests);
	for (uint32_t c = 0; c < d->ncontests; c++) {
		json_t *jc = json_array_get(contests, c);
		json_t *choices = json_object_get(jc, "choices");
		for (uint32_t k = 0; k < d->contests[c].nchoices; k++)
			t->national[t->noff[c] + k] = num(json_array_get(choices, k));
		size_t i;
		json_t *jd;
		json_array_foreach(json_object_get(jc, "districts"), i, jd)
		{
			int32_t di = bal_defn_district(d, (uint32_t)json_integer_value(json_object_get(jd, "id")));
			if (di < 0)
				return bal__failf(-EPROTO, why, whylen, "snapshot contest %u: unknown district id %lld",
				                  d->contests[c].id,
				                  (long long)json_integer_value(json_object_get(jd, "id")));
			json_t *votes = json_object_get(jd, "votes");
			for (uint32_t k = 0; k < d->contests[c].nchoices; k++)
				*bench_totals_district(t, c, (uint32_t)di, k) = num(json_array_get(votes, k));
		}
	}
	return 0;
}

void bench_totals_from_expect(struct bench_totals *t, const struct bal_expect *e)
{
	const struct bal_defn *d = t->d;
	bench_totals_zero(t);
	struct bal_expect_turnout et;
	bal_expect_turnout(e, &et);
	t->turnout[BENCH_T_BATCHES] = et.batches;
	t->turnout[BENCH_T_BALLOTS] = et.ballots;
	t->turnout[BENCH_T_ISSUED] = et.issued;
	t->turnout[BENCH_T_CAST] = et.cast;
	t->turnout[BENCH_T_SPOILED] = et.spoiled;
	for (uint32_t c = 0; c < d->ncontests; c++)
		for (uint32_t k = 0; k < d->contests[c].nchoices; k++) {
			t->national[t->noff[c] + k] = bal_expect_votes(e, c, k);
			for (uint32_t di = 0; di < d->ndistricts; di++)
				*bench_totals_district(t, c, di, k) = bal_expect_district_votes(e, c, di, k);
		}
}

void bench_totals_national_from_districts(struct bench_totals *t)
{
	const struct bal_defn *d = t->d;
	for (uint32_t c = 0; c < d->ncontests; c++)
		for (uint32_t k = 0; k < d->contests[c].nchoices; k++) {
			uint64_t sum = 0;
			for (uint32_t di = 0; di < d->ndistricts; di++)
				sum += *bench_totals_district(t, c, di, k);
			t->national[t->noff[c] + k] = sum;
		}
}

void bench_totals_sub(struct bench_totals *a, const struct bench_totals *b)
{
	for (int i = 0; i < BENCH_T_N; i++)
		a->turnout[i] -= b->turnout[i];
	for (size_t i = 0; i < a->nnational; i++)
		a->national[i] -= b->national[i];
	for (size_t i = 0; i < a->ndistrict; i++)
		a->district[i] -= b->district[i];
}

size_t bench_totals_count(const struct bench_totals *t)
{
	return BENCH_T_N + t->nnational + t->ndistrict;
}

size_t bench_totals_diff(const struct bench_totals *got, const struct bench_totals *want, char *why, size_t whylen)
{
	const struct bal_defn *d = got->d;
	size_t n = 0;
	for (int i = 0; i < BENCH_T_N; i++)
		if (got->turnout[i] != want->turnout[i] && n++ == 0)
			bal__failf(0, why, whylen, "turnout.%s: got %lld, expected %llu", turnout_names[i],
			           (long long)got->turnout[i], (unsigned long long)want->turnout[i]);
	for (uint32_t c = 0; c < d->ncontests; c++)
		for (uint32_t k = 0; k < d->contests[c].nchoices; k++) {
			size_t i = got->noff[c] + k;
			if (got->national[i] != want->national[i] && n++ == 0)
				bal__failf(0, why, whylen, "contest %u choice %u: got %lld votes, expected %llu",
				           d->contests[c].id, k, (long long)got->national[i],
				           (unsigned long long)want->national[i]);
			for (uint32_t di = 0; di < d->ndistricts; di++) {
				uint64_t g = *bench_totals_district((struct bench_totals *)got, c, di, k);
				uint64_t w = *bench_totals_district((struct bench_totals *)want, c, di, k);
				if (g != w && n++ == 0)
					bal__failf(0, why, whylen,
					           "contest %u district %u choice %u: got %lld votes, expected %llu",
					           d->contests[c].id, d->districts[di].id, k, (long long)g,
					           (unsigned long long)w);
			}
		}
	return n;
}
