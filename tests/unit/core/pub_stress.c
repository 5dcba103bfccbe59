/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Seqlock stress run (see pub_stress.h). Plain C and pthreads, no Criterion.
 */
#include "tests/unit/core/pub_stress.h"

#include "tests/unit/core/fixture.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_READERS  8
#define MAX_CONTESTS 4
#define MAX_CHOICES  16

void pub_fold_random(const struct bal_defn *d, const struct bal_layout *l, uint64_t *rs, uint32_t p,
                     struct bal_delta *dl)
{
	uint64_t counts[MAX_CONTESTS][MAX_CHOICES];
	struct bal_ctally ts[MAX_CONTESTS];
	size_t n = 0;
	for (uint32_t c = 0; c < d->ncontests; c++) {
		if (!bal_defn_votes_in(d, p, c))
			continue;
		bal_require(n < MAX_CONTESTS && d->contests[c].nchoices <= MAX_CHOICES);
		for (uint32_t k = 0; k < d->contests[c].nchoices; k++)
			counts[n][k] = fx_rand(rs) % 100;
		ts[n] = (struct bal_ctally){d->contests[c].id, d->contests[c].nchoices, counts[n]};
		n++;
	}
	struct bal_batch b = {.precinct_id = d->precincts[p].id,
	                      .seq = 1,
	                      .kind = BAL_KIND_TALLY,
	                      .ntallies = n,
	                      .tallies = ts,
	                      .has_turnout = true,
	                      .ballots_issued = fx_rand(rs) % 1000};
	/* One in four is a complete protocol (every contest is above) with a
	 * random seq: it replaces the precinct's contribution or, if older than
	 * the stored one, only counts as a batch. */
	if (fx_rand(rs) % 4 == 0) {
		b.kind = BAL_KIND_PROTOCOL;
		b.seq = 1 + fx_rand(rs) % 8;
	}
	char why[256] = "";
	int err = bal_tally_fold(d, l, &b, dl, why, sizeof(why));
	if (err) {
		fprintf(stderr, "pub_fold_random: %s\n", why);
		abort();
	}
}

/* NULL if `v` is a fold of whole batches at `position`, else what is wrong (in buf). */
static const char *inconsistent(const struct bal_defn *d, const struct bal_layout *l, const uint64_t *v,
                                uint64_t position, char *buf, size_t len)
{
	uint64_t batches = v[bal_slot_global(l, BAL_G_BATCHES)];
	if (batches != position) {
		snprintf(buf, len, "position %llu but %llu batches counted", (unsigned long long)position,
		         (unsigned long long)batches);
		return buf;
	}
	for (uint32_t c = 0; c < d->ncontests; c++)
		for (uint32_t k = 0; k < d->contests[c].nchoices; k++) {
			uint64_t total = 0;
			for (uint32_t di = 0; di < d->ndistricts; di++) {
				uint32_t ds = bal_slot_district_choice(l, c, di, k);
				if (ds == BAL_SLOT_NONE)
					continue;
				uint64_t dsum = 0;
				for (uint32_t p = 0; p < d->nprecincts; p++)
					if (d->precincts[p].district == di)
						dsum += v[bal_slot_precinct_choice(l, p, c, k)];
				if (dsum != v[ds]) {
					snprintf(buf, len,
					         "contest %u choice %u district %u: %llu, its precincts sum to %llu",
					         d->contests[c].id, k, d->districts[di].id, (unsigned long long)v[ds],
					         (unsigned long long)dsum);
					return buf;
				}
				total += dsum;
			}
			if (total != v[bal_slot_contest_choice(l, c, k)]) {
				snprintf(buf, len, "contest %u choice %u: national total differs from its precincts",
				         d->contests[c].id, k);
				return buf;
			}
		}
	for (uint32_t f = 0; f < BAL_T_NFIELDS; f++) {
		uint64_t sum = 0;
		for (uint32_t p = 0; p < d->nprecincts; p++)
			sum += v[bal_slot_precinct_turnout(l, p, f)];
		if (sum != v[bal_slot_total_turnout(l, f)]) {
			snprintf(buf, len, "turnout field %u: national total differs from its precincts", f);
			return buf;
		}
	}
	return NULL;
}

struct shared {
	const struct bal_defn *d;
	const struct bal_layout *l;
	struct bal_published pub;
	int started; /* __atomic; readers that are running */
	int done;    /* __atomic; set by the writer when finished */
};

struct reader {
	pthread_t th;
	struct shared *sh;
	uint64_t reads;
	uint64_t bad;
	char first_bad[200];
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	struct shared *sh = r->sh;
	uint64_t *view = malloc(sh->pub.n * sizeof(*view));
	uint64_t last = 0;
	char buf[200];
	bal_require(view);
	__atomic_add_fetch(&sh->started, 1, __ATOMIC_RELEASE);
	/* At least one read, even if the writer is already done. */
	do {
		uint64_t pos = bal_pub_read(&sh->pub, view);
		const char *bad = inconsistent(sh->d, sh->l, view, pos, buf, sizeof(buf));
		if (!bad && pos < last)
			bad = "position went backwards";
		if (bad && r->bad++ == 0)
			snprintf(r->first_bad, sizeof(r->first_bad), "%s", bad);
		last = pos;
		r->reads++;
	} while (!__atomic_load_n(&sh->done, __ATOMIC_ACQUIRE));
	free(view);
	return NULL;
}

int pub_stress(const struct bal_defn *d, const struct bal_layout *l, int nreaders, uint64_t nbatches, char *why,
               size_t whylen)
{
	struct shared sh = {.d = d, .l = l};
	struct reader rd[MAX_READERS];
	bal_require(nreaders >= 1 && nreaders <= MAX_READERS);
	bal_require(bal_pub_init(&sh.pub, bal_layout_nslots(l)) == 0);
	for (int i = 0; i < nreaders; i++) {
		rd[i] = (struct reader){.sh = &sh};
		bal_require(pthread_create(&rd[i].th, NULL, reader_main, &rd[i]) == 0);
	}

	struct bal_delta_entry e[3][64];
	struct bal_delta dl[3];
	const struct bal_delta *dp[3];
	uint64_t rs = 0xC0FFEE, position = 0;
	bal_require(bal_layout_delta_max(l) <= 64);
	/* Start writing only once every reader runs, so reads overlap writes. */
	while (__atomic_load_n(&sh.started, __ATOMIC_ACQUIRE) < nreaders)
		sched_yield();
	while (position < nbatches) {
		size_t group = 1 + fx_rand(&rs) % 3;
		for (size_t i = 0; i < group; i++) {
			dl[i] = (struct bal_delta){.cap = 64, .e = e[i]};
			pub_fold_random(d, l, &rs, (uint32_t)(fx_rand(&rs) % d->nprecincts), &dl[i]);
			dp[i] = &dl[i];
		}
		position += group;
		bal_pub_apply(&sh.pub, l, dp, group, position);
	}
	__atomic_store_n(&sh.done, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < nreaders; i++)
		bal_require(pthread_join(rd[i].th, NULL) == 0);

	int ret = 0;
	uint64_t *view = malloc(sh.pub.n * sizeof(*view));
	bal_require(view);
	char buf[200];
	const char *bad = NULL;
	uint64_t pos = bal_pub_read(&sh.pub, view);
	if (pos != position)
		bad = "final position differs from the batches written";
	else
		bad = inconsistent(d, l, view, pos, buf, sizeof(buf));
	if (bad) {
		snprintf(why, whylen, "final view: %s", bad);
		ret = -1;
	}
	for (int i = 0; i < nreaders && !ret; i++)
		if (rd[i].bad) {
			snprintf(why, whylen, "reader %d: %llu of %llu views inconsistent, first: %s", i,
			         (unsigned long long)rd[i].bad, (unsigned long long)rd[i].reads, rd[i].first_bad);
			ret = -1;
		}
	free(view);
	bal_pub_deinit(&sh.pub);
	return ret;
}
