/*
 * Startup recovery: newest snapshot + replay of the journal entries after it,
 * read from one read txn so both come from the same committed state.
 *
 * Policy: nothing is guessed around. A damaged snapshot, a damaged or
 * missing journal record, or a journaled batch the caller can no longer apply
 * stops recovery with BAL_ECORRUPT and a message naming the position; the
 * operator decides. Knows nothing about batches: `apply` interprets the bytes.
 */
#include "store_lmdb.h"

#include <errno.h>
#include <string.h>
#include <time.h>

struct replay {
	bal_store_entry_cb apply;
	void *arg;
	uint64_t replayed;
	uint64_t last;
	int failed; /* apply's result when it stopped the walk */
};

static int replay_entry(void *ctx, uint64_t position, const uint8_t *bytes, size_t len)
{
	struct replay *r = ctx;
	int rc = r->apply(r->arg, position, bytes, len);
	if (rc != 0) {
		r->failed = rc;
		return rc;
	}
	r->replayed++;
	r->last = position;
	return 0;
}

static double ms_since(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

int bal_store_recover(struct bal_store *s, uint64_t *ctr, size_t n, bal_store_entry_cb apply, void *arg,
		      struct bal_recovery_report *rep, char *why, size_t whylen)
{
	struct timespec t0;
	MDB_txn *txn;
	uint64_t snap = 0, at = 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);

	int rc = bal__store_txn_begin(s, MDB_RDONLY, &txn);
	if (rc != 0) {
		bal__store_why(why, whylen, "recovery: cannot begin a read txn: %s", bal_strerror(rc));
		return rc;
	}
	rc = bal__snapshot_read(s, txn, &snap, ctr, n, why, whylen);
	if (rc == -ENOENT) {
		snap = 0;
		if (n)
			memset(ctr, 0, n * sizeof(*ctr));
	} else if (rc != 0) {
		if (rc != BAL_ECORRUPT)
			bal__store_why(why, whylen, "recovery: cannot read the newest snapshot: %s", bal_strerror(rc));
		goto out_txn;
	}

	struct replay r = {.apply = apply, .arg = arg, .last = snap};
	rc = bal__journal_walk(s, txn, snap, replay_entry, &r, &at, why, whylen);
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

	/* A snapshot beyond the journal's end covers batches that are not there. */
	uint64_t last = 0;
	if ((rc = bal__store_last(txn, s->journal, &last, NULL)) != 0) {
		bal__store_why(why, whylen, "recovery: cannot read the last journal position: %s", bal_strerror(rc));
		goto out_txn;
	}
	if (r.last != last) {
		bal__store_why(why, whylen,
			       "recovery: counters cover position %llu (snapshot %llu + %llu replayed), "
			       "journal ends at %llu",
			       (unsigned long long)r.last, (unsigned long long)snap, (unsigned long long)r.replayed,
			       (unsigned long long)last);
		rc = BAL_ECORRUPT;
		goto out_txn;
	}
	if (rep)
		*rep = (struct bal_recovery_report){
			.snapshot_position = snap,
			.replayed = r.replayed,
			.position = r.last,
			.ms = ms_since(&t0),
		};

out_txn:
	mdb_txn_abort(txn);
	return rc;
}
