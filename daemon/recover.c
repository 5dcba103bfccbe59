/*
 * Recovery (see recover.h). storage/ walks the snapshot slices and the
 * journal entries after them; each slice is unpacked into the counters and
 * each entry decoded (proto/) and folded (core/) as it was live, then
 * bal_tally_rebuild() recomputes every total from the precincts' own
 * counters.
 */
#include "daemon/recover.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "daemon/log.h"
#include "proto/codec.h"
#include "storage/storage.h"

/* The state the walk folds into. */
struct replay {
	struct bal_daemon *d;
	uint64_t *ctr;
	struct bal_arena arena;
	struct bal_delta delta;
	char why[256];
};

static int replay_slice(void *arg, unsigned k, uint32_t first, uint32_t end, const uint8_t *blob, size_t len)
{
	struct replay *r = arg;
	(void)k;
	if (len % sizeof(uint64_t))
		return BAL_ECORRUPT;
	return bal_layout_slice_unpack(r->d->layout, r->ctr, first, end, blob, len / sizeof(uint64_t));
}

static int replay_one(void *arg, uint64_t position, uint32_t precinct, const uint8_t *bytes, size_t len)
{
	struct replay *r = arg;
	struct bal_batch b;
	bal_arena_reset(&r->arena);
	r->delta.n = 0;
	int err = bal_codec_decode(bytes, len, &r->arena, &b, r->why, sizeof(r->why));
	if (!err)
		err = bal_tally_fold(r->d->defn, r->d->layout, &b, &r->delta, r->why, sizeof(r->why));
	if (!err && r->delta.precinct != precinct) {
		snprintf(r->why, sizeof(r->why), "the batch is of precinct %u, its journal record names another",
		         b.precinct_id);
		err = BAL_ECORRUPT;
	}
	if (err) {
		bal_log(BAL_LOG_ERROR, "recovery", "journal position %llu no longer folds: %s",
		        (unsigned long long)position, r->why);
		return BAL_ECORRUPT;
	}
	/* No overflow check here: slices come from different positions, so until
	 * the last entry the district and national slots are the sums of
	 * precinct states the live counters never held together (a protocol can
	 * lower a precinct's part), and may exceed anything they held. Each
	 * precinct's own slots replay exactly as they were applied live, and
	 * every total is recomputed from them at the end (bal_recover()). */
	bal_tally_apply(r->d->layout, r->ctr, &r->delta);
	return 0;
}

int bal_recover(struct bal_daemon *d, uint64_t **ctr_out, uint64_t *position)
{
	static const struct bal_recovery_ops ops = {
	        .slice = replay_slice,
	        .entry = replay_one,
	};
	size_t n = bal_layout_nslots(d->layout);
	struct replay r = {.d = d};
	int err = -ENOMEM;
	r.ctr = calloc(n, sizeof(uint64_t));
	r.delta.cap = (uint32_t)bal_layout_delta_max(d->layout);
	r.delta.e = calloc(r.delta.cap, sizeof(*r.delta.e));
	if (!r.ctr || !r.delta.e)
		goto out;
	bal_arena_init(&r.arena, 0);
	struct bal_recovery_report rep;
	char why[512] = "";
	err = bal_store_recover(d->store, &ops, &r, &rep, why, sizeof(why));
	bal_arena_deinit(&r.arena);
	if (!err && bal_tally_rebuild(d->layout, r.ctr) != 0) {
		snprintf(why, sizeof(why),
		         "the journal folds to totals beyond 64 bits, which no live check lets through");
		err = BAL_ECORRUPT;
	}
	if (err) {
		bal_log(BAL_LOG_ERROR, "recovery", "failed: %s", why[0] ? why : bal_strerror(err));
		goto out;
	}
	d->recovery_ms = rep.ms;
	bal_log(BAL_LOG_INFO, "recovery",
	        "position %llu: snapshot at %llu + %llu journal entries replayed in %.1f ms (%llu read; %u snapshot "
	        "slices)",
	        (unsigned long long)rep.position, (unsigned long long)rep.snapshot_position,
	        (unsigned long long)rep.replayed, rep.ms, (unsigned long long)rep.scanned, bal_store_slices(d->store));
	*position = rep.position;
	*ctr_out = r.ctr;
	r.ctr = NULL;
out:
	free(r.ctr);
	free(r.delta.e);
	return err;
}
