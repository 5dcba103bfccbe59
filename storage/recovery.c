/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Startup recovery: every slice's snapshot + replay of the journal entries
 * that come after the snapshot of their precinct's slice, read from one read
 * txn so both come from the same committed state.
 *
 * Policy: nothing is guessed around. A damaged snapshot slice, a damaged or
 * missing journal record (the log's tree and signed heads show the records
 * lost from the journal's end), a record naming an unknown precinct, or a
 * journaled batch the caller can no longer apply stops recovery with
 * BAL_ECORRUPT and a message naming the position or slice; the operator
 * decides. Knows nothing about batches: the caller interprets the bytes.
 */
#include "storage/store_lmdb.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct replay {
	struct bal_store *s;
	const struct bal_recovery_ops *ops;
	void *arg;
	const uint64_t *pos; /* per slice */
	uint64_t replayed, scanned;
	uint64_t last;
	int failed; /* the caller's result when it stopped the walk */
	char *why;
	size_t whylen;
};

static int replay_entry(void *ctx, uint64_t position, const struct bal__rec *rec)
{
	struct replay *r = ctx;
	int32_t i = bal__record_precinct(r->s, position, rec->a, r->why, r->whylen);
	if (i < 0)
		return BAL_ECORRUPT;
	r->scanned++;
	r->last = position;
	if (position <= r->pos[r->s->prec[i].slice])
		return 0; /* its slice's snapshot already holds it */
	int rc = r->ops->entry(r->arg, position, (uint32_t)i, rec->payload, rec->len);
	if (rc != 0) {
		r->failed = rc;
		return rc;
	}
	r->replayed++;
	return 0;
}

static double ms_since(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Hands every stored slice to ops->slice; fills pos[] and *oldest. */
static int load_slices(struct bal_store *s, MDB_txn *txn, const struct bal_recovery_ops *ops, void *arg, uint64_t *pos,
                       uint64_t last, uint64_t *oldest, char *why, size_t whylen)
{
	*oldest = UINT64_MAX;
	for (unsigned k = 0; k < s->nslices; k++) {
		struct bal__rec r;
		uint32_t first = bal__slice_first(s, k), end = bal__slice_first(s, k + 1);
		int rc = bal__slice_read(s, txn, k, &r, why, whylen);
		if (rc == -ENOENT) {
			pos[k] = 0;
		} else if (rc != 0) {
			if (rc != BAL_ECORRUPT)
				bal__store_why(why, whylen, "recovery: cannot read snapshot slice %u: %s", k,
				               bal_strerror(rc));
			return rc;
		} else {
			pos[k] = r.b;
			if (pos[k] > last) {
				/* A snapshot beyond the journal's end covers batches that are not there. */
				bal__store_why(
				        why, whylen,
				        "recovery: snapshot slice %u covers position %llu, the journal ends at %llu", k,
				        (unsigned long long)pos[k], (unsigned long long)last);
				return BAL_ECORRUPT;
			}
			if ((rc = ops->slice(arg, k, first, end, r.payload, r.len)) != 0) {
				bal__store_why(
				        why, whylen,
				        "recovery: snapshot slice %u (precincts %u..%u, position %llu, %zu bytes) does "
				        "not fit the definition: %s",
				        k, first, end - 1, (unsigned long long)pos[k], r.len, bal_strerror(rc));
				return BAL_ECORRUPT;
			}
		}
		if (pos[k] < *oldest)
			*oldest = pos[k];
	}
	return 0;
}

int bal_store_recover(struct bal_store *s, const struct bal_recovery_ops *ops, void *arg,
                      struct bal_recovery_report *rep, char *why, size_t whylen)
{
	struct timespec t0;
	MDB_txn *txn;
	uint64_t oldest = 0, at = 0, last = 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);

	uint64_t *pos = calloc(s->nslices, sizeof(*pos));
	if (!pos)
		return -ENOMEM;
	int rc = bal__store_txn_begin(s, MDB_RDONLY, &txn);
	if (rc != 0) {
		bal__store_why(why, whylen, "recovery: cannot begin a read txn: %s", bal_strerror(rc));
		goto out_pos;
	}
	if ((rc = bal__store_last(txn, s->journal, &last, NULL)) != 0) {
		bal__store_why(why, whylen, "recovery: cannot read the last journal position: %s", bal_strerror(rc));
		goto out_txn;
	}
	if ((rc = load_slices(s, txn, ops, arg, pos, last, &oldest, why, whylen)) != 0)
		goto out_txn;
	if (ops->loaded && (rc = ops->loaded(arg)) != 0) {
		bal__store_why(why, whylen, "recovery: snapshot slices loaded, then: %s", bal_strerror(rc));
		rc = BAL_ECORRUPT;
		goto out_txn;
	}

	struct replay r = {.s = s, .ops = ops, .arg = arg, .pos = pos, .last = oldest, .why = why, .whylen = whylen};
	rc = bal__journal_walk(s, txn, oldest, replay_entry, &r, &at, why, whylen);
	if (rc != 0 && r.failed) {
		bal__store_why(why, whylen, "recovery: journal position %llu does not replay: %s",
		               (unsigned long long)at, bal_strerror(r.failed));
		rc = BAL_ECORRUPT;
	} else if (rc != 0 && rc != BAL_ECORRUPT) {
		bal__store_why(why, whylen, "recovery: reading the journal after position %llu: %s",
		               (unsigned long long)r.last, bal_strerror(rc));
	}
	if (rc != 0)
		goto out_txn;
	if (r.last != last) {
		bal__store_why(why, whylen, "recovery: the journal walk ended at %llu, the journal ends at %llu",
		               (unsigned long long)r.last, (unsigned long long)last);
		rc = BAL_ECORRUPT;
		goto out_txn;
	}
	if (s->log_end > last) {
		/* The log (tree or signed head) was written with those records, in the same txns. */
		bal__store_why(why, whylen,
		               "recovery: the log covers position %llu, the journal ends at %llu: journal records "
		               "%llu..%llu are missing",
		               (unsigned long long)s->log_end, (unsigned long long)last, (unsigned long long)last + 1,
		               (unsigned long long)s->log_end);
		rc = BAL_ECORRUPT;
		goto out_txn;
	}
	if (rep)
		*rep = (struct bal_recovery_report){
		        .snapshot_position = oldest,
		        .replayed = r.replayed,
		        .scanned = r.scanned,
		        .position = last,
		        .ms = ms_since(&t0),
		};

out_txn:
	mdb_txn_abort(txn);
out_pos:
	free(pos);
	return rc;
}
