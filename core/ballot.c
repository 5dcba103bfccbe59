/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Error text and definition look-ups. libc only.
 */
#include "core/ballot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *bal_strerror(int err)
{
	switch (err) {
	case 0: return "success";
	case BAL_ESCHEMA: return "undecodable body";
	case BAL_EINVALID: return "invalid against the election definition";
	case BAL_EAUTH: return "bad or missing signature";
	case BAL_ECONFLICT: return "conflicting resend: same precinct and seq, different bytes";
	case BAL_EDUPLICATE: return "duplicate: already counted";
	case BAL_ECORRUPT: return "stored data is corrupt";
	case BAL_EDEFN: return "election definition invalid or not the one pinned in the data directory";
	case BAL_EOVERFLOW: return "counter overflow";
	case BAL_EUNSUPPORTED: return "not supported";
	case BAL_EBUSY: return "commit queue full";
	case BAL_EQUOTA: return "precinct journal quota used up";
	case BAL_EFORBIDDEN: return "not allowed by the election definition";
	default: break;
	}
	if (err < 0 && err > BAL_EBASE)
		return strerror(-err);
	return "unknown error";
}

void bal__require_fail(const char *expr, const char *file, int line)
{
	fprintf(stderr, "ballotd: internal invariant broken: %s (%s:%d)\n", expr, file, line);
	fflush(stderr);
	abort();
}

int32_t bal_defn_precinct(const struct bal_defn *d, uint32_t precinct_id)
{
	if (d->by_id) {
		uint32_t k = precinct_id - d->id_base; /* wraps for ids below the base */
		return k < d->id_span ? d->by_id[k] : -1;
	}
	uint32_t lo = 0, hi = d->nprecincts;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		uint32_t id = d->precincts[mid].id;
		if (id == precinct_id)
			return (int32_t)mid;
		if (id < precinct_id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

int32_t bal_defn_contest(const struct bal_defn *d, uint32_t contest_id)
{
	/* Few contests (tens); a linear scan beats bisection at this size. */
	for (uint32_t i = 0; i < d->ncontests; i++)
		if (d->contests[i].id == contest_id)
			return (int32_t)i;
	return -1;
}

int32_t bal_defn_district(const struct bal_defn *d, uint32_t district_id)
{
	for (uint32_t i = 0; i < d->ndistricts; i++)
		if (d->districts[i].id == district_id)
			return (int32_t)i;
	return -1;
}

bool bal_defn_votes_in(const struct bal_defn *d, uint32_t p, uint32_t c)
{
	int32_t cd = d->contests[c].district;
	return cd < 0 || (uint32_t)cd == d->precincts[p].district;
}
