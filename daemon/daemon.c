/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Startup steps on the shared context (see daemon.h) that need more than
 * one module: the store opened for the loaded definition, and the committer
 * started from recovered counters.
 */
#include "daemon/daemon.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/amend.h"
#include "daemon/commit.h"
#include "daemon/config.h"
#include "daemon/log.h"
#include "proto/codec.h"
#include "storage/storage.h"

/*
 * Every precinct's journal quota (--precinct-quota, else derived from its
 * voters), logged as the range it spans. A new array owned by the caller,
 * or NULL (out of memory).
 */
static uint64_t *precinct_quotas(const struct bal_daemon *d)
{
	const struct bal_defn *defn = d->defn;
	uint64_t *q = malloc((defn->nprecincts + 1) * sizeof(*q));
	if (!q)
		return NULL;
	q[defn->nprecincts] = UINT64_MAX; /* the commission's */
	uint32_t lo = 0, hi = 0, unlimited = 0;
	for (uint32_t p = 0; p < defn->nprecincts; p++) {
		q[p] = d->cfg.precinct_quota ? d->cfg.precinct_quota : bal_config_precinct_quota(defn, p);
		unlimited += q[p] == UINT64_MAX;
		if (q[p] != UINT64_MAX && (q[lo] == UINT64_MAX || q[p] < q[lo]))
			lo = p;
		if (q[p] != UINT64_MAX && (q[hi] == UINT64_MAX || q[p] > q[hi]))
			hi = p;
	}
	if (d->cfg.precinct_quota)
		bal_log(BAL_LOG_INFO, "config", "--precinct-quota %llu bytes (given)",
		        (unsigned long long)d->cfg.precinct_quota);
	else if (unlimited < defn->nprecincts)
		bal_log(BAL_LOG_INFO, "config",
		        "--precinct-quota derived per precinct from its voters: %llu bytes (precinct %u) to %llu "
		        "(precinct %u)%s",
		        (unsigned long long)q[lo], defn->precincts[lo].id, (unsigned long long)q[hi],
		        defn->precincts[hi].id, unlimited ? "; unbounded precincts have none" : "");
	else if (defn->nprecincts)
		bal_log(BAL_LOG_WARN, "config",
		        "no precinct journal quota: every precinct is unbounded (set --precinct-quota)");
	return q;
}

int bal_daemon_open_store(struct bal_daemon *d)
{
	struct bal_store_opts o = {.dir = d->cfg.data_dir,
	                           .map_size = d->cfg.map_size,
	                           .conflicts_per_key = d->cfg.conflicts_per_seq,
	                           .conflicts_per_precinct = d->cfg.conflicts_per_precinct,
	                           .signed_part = bal_codec_signed_part};
	memcpy(o.hash, d->defn->hash, sizeof(o.hash));
	/* Storage names precincts by the definition's dense index, in id order;
	 * the commission's id, the largest, comes last (the loader keeps it
	 * from every precinct). */
	const uint32_t n = d->defn->nprecincts;
	uint32_t *ids = malloc((n + 1) * sizeof(*ids));
	uint64_t *quota = precinct_quotas(d);
	d->amend = bal_amend_new(d->defn);
	if (!ids || !quota || !d->amend) {
		free(ids);
		free(quota);
		bal_amend_free(d->amend);
		d->amend = NULL;
		bal_log(BAL_LOG_ERROR, "main", "out of memory listing %u precincts", n);
		return -ENOMEM;
	}
	o.quota = quota;
	for (uint32_t i = 0; i < n; i++)
		ids[i] = d->defn->precincts[i].id;
	ids[n] = BAL_COMMISSION_ID;
	o.precinct_ids = ids;
	o.nprecincts = n + 1;
	char why[512] = "";
	int err = bal_store_open(&o, &d->store, why, sizeof(why));
	free(ids);
	free(quota);
	if (err) {
		bal_log(BAL_LOG_ERROR, "main", "cannot open data directory %s: %s", d->cfg.data_dir, why);
		bal_amend_free(d->amend);
		d->amend = NULL;
	}
	return err;
}

void bal_daemon_close_store(struct bal_daemon *d)
{
	bal_store_close(d->store);
	d->store = NULL;
	bal_amend_free(d->amend);
	d->amend = NULL;
}

int bal_daemon_start_committer(struct bal_daemon *d, const uint64_t *ctr, uint64_t position)
{
	size_t n = bal_layout_nslots(d->layout);
	int err = bal_pub_init(&d->pub, n);
	if (err)
		return err;
	bal_pub_store(&d->pub, ctr, position);
	return bal_committer_start(d, position, &d->committer);
}
