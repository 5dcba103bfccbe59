/*
 * Startup steps on the shared context (see daemon.h) that need more than
 * one module: the store opened for the loaded definition, and the committer
 * started from recovered counters.
 */
#include "daemon/daemon.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/commit.h"
#include "daemon/log.h"
#include "proto/codec.h"
#include "storage/storage.h"

int bal_daemon_open_store(struct bal_daemon *d)
{
	struct bal_store_opts o = {.dir = d->cfg.data_dir,
	                           .map_size = d->cfg.map_size,
	                           .conflicts_per_key = d->cfg.conflicts_per_seq,
	                           .conflicts_per_precinct = d->cfg.conflicts_per_precinct,
	                           .signed_part = bal_codec_signed_part};
	memcpy(o.hash, d->defn->hash, sizeof(o.hash));
	/* Storage names precincts by the definition's dense index, in id order. */
	uint32_t *ids = malloc(d->defn->nprecincts * sizeof(*ids));
	if (!ids) {
		bal_log(BAL_LOG_ERROR, "main", "out of memory listing %u precincts", d->defn->nprecincts);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < d->defn->nprecincts; i++)
		ids[i] = d->defn->precincts[i].id;
	o.precinct_ids = ids;
	o.nprecincts = d->defn->nprecincts;
	char why[512] = "";
	int err = bal_store_open(&o, &d->store, why, sizeof(why));
	free(ids);
	if (err)
		bal_log(BAL_LOG_ERROR, "main", "cannot open data directory %s: %s", d->cfg.data_dir, why);
	return err;
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
