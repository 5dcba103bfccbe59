/*
 * The dedup index of the journal tail: (precinct, seq) -> position for the
 * batches journaled after the newest snapshot, kept in memory by the
 * committer and merged into the "dedup" table, in key order, in the same
 * write txn as the next snapshot.
 *
 * Why: precincts upload in any interleaving, so inserting each batch's dedup
 * key into the B-tree at once dirties about one leaf page per batch (4 KiB
 * written for a ~300-byte batch) and churns LMDB's freelist. Merging a
 * snapshot interval's keys in one sorted pass writes each leaf once per
 * interval instead. The journal records carry (precinct, seq) in their
 * header, so the tail index is rebuilt from the journal when the store opens.
 *
 * Invariant: "dedup" holds every key with position <= the newest snapshot's
 * position; the tail holds every key with a committed position above it,
 * plus those appended in the open write txn.
 * A write txn that aborts may have merged or added keys: the tail is then
 * reloaded from the committed journal (rare: failed commits only).
 * Only the committer thread (and bal_store_open) touch the tail; readers get
 * the same facts from the journal (bal_store_precinct_scan).
 */
#include "store_lmdb.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define TAIL_MIN_CAP 1024 /* power of two */

static uint64_t mix(uint32_t precinct, uint64_t seq)
{
	uint64_t h = seq * 0x9e3779b97f4a7c15ULL ^ ((uint64_t)precinct * 0xc2b2ae3d27d4eb4fULL);
	h ^= h >> 31;
	h *= 0xbf58476d1ce4e5b9ULL;
	return h ^ (h >> 29);
}

void bal__tail_deinit(struct bal__tail *t)
{
	free(t->e);
	memset(t, 0, sizeof(*t));
}

static int resize(struct bal__tail *t, size_t cap)
{
	struct bal__tail_ent *e = calloc(cap, sizeof(*e));
	if (!e)
		return -ENOMEM;
	struct bal__tail_ent *old = t->e;
	size_t oldcap = t->cap;
	t->e = e;
	t->cap = cap;
	t->n = 0;
	for (size_t i = 0; i < oldcap; i++)
		if (old[i].position)
			bal__tail_put(t, old[i].precinct, old[i].seq, old[i].position);
	free(old);
	return 0;
}

uint64_t bal__tail_get(const struct bal__tail *t, uint32_t precinct, uint64_t seq)
{
	if (!t->n)
		return 0;
	size_t mask = t->cap - 1;
	for (size_t i = mix(precinct, seq) & mask;; i = (i + 1) & mask) {
		const struct bal__tail_ent *e = &t->e[i];
		if (!e->position)
			return 0;
		if (e->precinct == precinct && e->seq == seq)
			return e->position;
	}
}

int bal__tail_put(struct bal__tail *t, uint32_t precinct, uint64_t seq, uint64_t position)
{
	if ((t->n + 1) * 2 > t->cap) {
		/* Load factor <= 1/2; growth is amortised over the interval, never per batch once warm. */
		int rc = resize(t, t->cap ? t->cap * 2 : TAIL_MIN_CAP);
		if (rc)
			return rc;
	}
	size_t mask = t->cap - 1;
	size_t i = mix(precinct, seq) & mask;
	while (t->e[i].position && !(t->e[i].precinct == precinct && t->e[i].seq == seq))
		i = (i + 1) & mask;
	if (!t->e[i].position)
		t->n++;
	t->e[i] = (struct bal__tail_ent){.seq = seq, .position = position, .precinct = precinct};
	return 0;
}

void bal__tail_clear(struct bal__tail *t)
{
	if (t->n)
		memset(t->e, 0, t->cap * sizeof(*t->e));
	t->n = 0;
}

static int by_key(const void *a, const void *b)
{
	const struct bal__tail_ent *x = a, *y = b;
	if (x->precinct != y->precinct)
		return x->precinct < y->precinct ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

int bal__tail_merge(struct bal_store *s, uint64_t upto)
{
	struct bal__tail *t = &s->tail;
	if (!t->n)
		return 0;
	/* Compact, then split: keys up to `upto` go into the table in key order;
	 * later ones (a snapshot trailing the txn's appends) stay in the tail. */
	size_t n = 0, nkeep = 0;
	for (size_t i = 0; i < t->cap; i++)
		if (t->e[i].position)
			t->e[n++] = t->e[i];
	for (size_t i = 0; i < n; i++)
		if (t->e[i].position > upto)
			nkeep++;
	struct bal__tail_ent *keep = NULL;
	if (nkeep) {
		keep = malloc(nkeep * sizeof(*keep));
		if (!keep)
			return -ENOMEM;
		size_t m = 0, j = 0;
		for (size_t i = 0; i < n; i++) {
			if (t->e[i].position > upto)
				keep[j++] = t->e[i];
			else
				t->e[m++] = t->e[i];
		}
		n = m;
	}
	qsort(t->e, n, sizeof(*t->e), by_key);
	MDB_cursor *cur;
	int rc = bal__store_err(mdb_cursor_open(s->wtxn, s->dedup, &cur));
	for (size_t i = 0; i < n && rc == 0; i++) {
		uint8_t k[BAL_DEDUP_KEY], v[8];
		bal__put_be32(k, t->e[i].precinct);
		bal__put_be64(k + 4, t->e[i].seq);
		bal__put_be64(v, t->e[i].position);
		MDB_val key = {sizeof(k), k}, val = {sizeof(v), v};
		int mrc = mdb_cursor_put(cur, &key, &val, MDB_NOOVERWRITE);
		rc = mrc == MDB_KEYEXIST ? BAL_ECORRUPT : bal__store_err(mrc);
	}
	if (rc == 0 || cur)
		mdb_cursor_close(cur);
	/* The merged keys are now found in the table (this txn reads its own
	 * writes); the tail is a hash of the kept ones again. If the txn aborts,
	 * bal_store_wabort() reloads the tail from the committed journal. */
	bal__tail_clear(t);
	for (size_t i = 0; i < nkeep && rc == 0; i++)
		rc = bal__tail_put(t, keep[i].precinct, keep[i].seq, keep[i].position);
	free(keep);
	return rc;
}

/* Header-only read of journal records after `after`: their keys go into the tail. */
int bal__tail_load(struct bal_store *s, MDB_txn *txn, uint64_t after, char *why, size_t whylen)
{
	MDB_cursor *cur;
	uint8_t k[8];
	MDB_val key = {8, k}, val;
	bal__tail_clear(&s->tail);
	int rc = bal__store_err(mdb_cursor_open(txn, s->journal, &cur));
	if (rc)
		return rc;
	bal__put_be64(k, after + 1);
	int mrc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
	for (; mrc == 0; mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		if (key.mv_size != 8 || val.mv_size < BAL_REC_HDR ||
		    bal__get_be32(val.mv_data) != BAL_JREC_MAGIC) {
			uint64_t pos = key.mv_size == 8 ? bal__get_be64(key.mv_data) : 0;
			bal__store_why(why, whylen, "journal position %llu: damaged record header",
				       (unsigned long long)pos);
			rc = BAL_ECORRUPT;
			break;
		}
		const uint8_t *h = val.mv_data;
		rc = bal__tail_put(&s->tail, bal__get_be32(h + 4), bal__get_be64(h + 8), bal__get_be64(key.mv_data));
		if (rc)
			break;
	}
	if (rc == 0 && mrc != MDB_NOTFOUND)
		rc = bal__store_err(mrc);
	mdb_cursor_close(cur);
	return rc;
}

int bal__tail_reload(struct bal_store *s, char *why, size_t whylen)
{
	MDB_txn *txn;
	uint64_t snap = 0;
	int rc = bal__store_txn_begin(s, MDB_RDONLY, &txn);
	if (rc)
		return rc;
	rc = bal__store_last(txn, s->snapshots, &snap, NULL);
	if (rc == 0)
		rc = bal__tail_load(s, txn, snap, why, whylen);
	mdb_txn_abort(txn);
	return rc;
}
