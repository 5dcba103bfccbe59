/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Recovery (see recover.h). First the amendments: every record of the
 * commission, found through its dedup keys, is decoded and applied to the
 * effective definition (daemon/amend.h) in journal order, whatever the
 * snapshots cover, since none of them holds keys or frozen precincts. Then
 * storage/ walks the snapshot slices and the journal entries after them;
 * each slice is unpacked into the counters and each batch decoded (proto/)
 * and folded (core/) as it was live, each void taken back where it stands
 * in the journal, then bal_tally_rebuild() recomputes every total from the
 * precincts' own counters.
 *
 * A void at position M of a batch of precinct p changes p's counters only,
 * so it is replayed iff M is later than the snapshot of p's slice (an older
 * snapshot does not hold it, a newer one does), between p's batches journaled
 * before M and those after it: before each replayed entry, every void
 * journaled before that entry is taken back.
 */
#include "daemon/recover.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "daemon/amend.h"
#include "daemon/log.h"
#include "proto/codec.h"
#include "storage/storage.h"

#define U64(x) ((unsigned long long)(x))

/* The state the walk folds into. */
struct replay {
	struct bal_daemon *d;
	uint64_t *ctr;
	struct bal_arena arena;
	struct bal_delta delta;
	uint64_t *slice_at; /* per precinct: the position its slice's snapshot covers */
	size_t next_amend;  /* the first amendment whose void is not replayed yet */
	struct bal_void_plan plan;
	char why[256];
};

/* Slice k's precincts that have counters (see daemon/commit.c: storage's
 * slices also cover the commission's index, which has none). */
static int replay_slice(void *arg, unsigned k, uint32_t first, uint32_t end, const uint8_t *blob, size_t len)
{
	struct replay *r = arg;
	(void)k;
	if (end > r->d->defn->nprecincts)
		end = r->d->defn->nprecincts;
	if (first >= end)
		return len ? BAL_ECORRUPT : 0;
	if (len % sizeof(uint64_t))
		return BAL_ECORRUPT;
	return bal_layout_slice_unpack(r->d->layout, r->ctr, first, end, blob, len / sizeof(uint64_t));
}

/* Takes back every void journaled before `position` whose precinct's
 * snapshot does not hold it yet. */
static int replay_voids(struct replay *r, uint64_t position)
{
	struct bal_daemon *d = r->d;
	for (; r->next_amend < bal_amend_count(d->amend); r->next_amend++) {
		const struct bal_amend_rec *a = bal_amend_at(d->amend, r->next_amend);
		if (a->position >= position)
			break;
		if (a->change != BAL_CHANGE_VOID || a->position <= r->slice_at[a->precinct])
			continue;
		int err = bal_void_plan_make(&r->plan, d, a->target, a->position, r->ctr, r->why, sizeof(r->why));
		if (err) {
			bal_log(BAL_LOG_ERROR, "recovery", "the void at journal position %llu no longer replays: %s",
			        U64(a->position), r->why);
			return BAL_ECORRUPT;
		}
		bal_tally_void(d->layout, r->ctr, &r->plan.x, r->plan.has_prev ? &r->plan.prev : NULL);
	}
	return 0;
}

static int replay_one(void *arg, uint64_t position, uint32_t precinct, const uint8_t *bytes, size_t len)
{
	struct replay *r = arg;
	if (replay_voids(r, position) != 0)
		return BAL_ECORRUPT;
	if (precinct == r->d->defn->nprecincts)
		return 0; /* the commission's: applied before the walk */
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
		bal_log(BAL_LOG_ERROR, "recovery", "journal position %llu no longer folds: %s", U64(position), r->why);
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

/* Every amendment, in journal order, into d->amend; and where each
 * precinct's slice snapshot stands. */
static int load_amendments(struct replay *r)
{
	struct bal_daemon *d = r->d;
	int err = bal_amend_load(d, &r->plan, r->why, sizeof(r->why));
	for (unsigned k = 0; !err && k < bal_store_slices(d->store); k++) {
		uint32_t first, end;
		bal_store_slice_range(d->store, k, &first, &end);
		for (uint32_t i = first; i < end && i < d->defn->nprecincts; i++)
			r->slice_at[i] = bal_store_slice_position(d->store, k);
	}
	return err;
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
	bal_arena_init(&r.arena, 0);
	r.ctr = calloc(n, sizeof(uint64_t));
	r.delta.cap = (uint32_t)bal_layout_delta_max(d->layout);
	r.delta.e = calloc(r.delta.cap, sizeof(*r.delta.e));
	r.slice_at = calloc(d->defn->nprecincts ? d->defn->nprecincts : 1, sizeof(*r.slice_at));
	if (bal_void_plan_init(&r.plan, d->layout) != 0 || !r.ctr || !r.delta.e || !r.slice_at)
		goto out;
	char why[512] = "";
	struct bal_recovery_report rep;
	err = load_amendments(&r);
	if (err)
		snprintf(why, sizeof(why), "%s", r.why);
	if (!err)
		err = bal_store_recover(d->store, &ops, &r, &rep, why, sizeof(why));
	if (!err && (err = replay_voids(&r, UINT64_MAX)) != 0)
		snprintf(why, sizeof(why), "a void after the last batch: %s", r.why);
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
	        "slices; %zu amendments)",
	        U64(rep.position), U64(rep.snapshot_position), U64(rep.replayed), rep.ms, U64(rep.scanned),
	        bal_store_slices(d->store), bal_amend_count(d->amend));
	*position = rep.position;
	*ctr_out = r.ctr;
	r.ctr = NULL;
out:
	bal_arena_deinit(&r.arena);
	bal_void_plan_deinit(&r.plan);
	free(r.ctr);
	free(r.delta.e);
	free(r.slice_at);
	return err;
}
