/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The dedup index of the journal tail, per precinct: (seq -> position) for
 * the batches journaled after the snapshot of the precinct's slice, kept in
 * memory by the committer and merged into the "dedup" table, in key order,
 * in the same write txn as that slice's next snapshot.
 *
 * Why: precincts upload in any interleaving, so inserting each batch's dedup
 * key into the B-tree at once dirties about one leaf page per batch (4 KiB
 * written for a ~300-byte batch) and churns LMDB's freelist. Merging a
 * slice's keys in one sorted pass writes each of its leaves once per round
 * of slices instead, and a round is spread over many commits: no commit
 * stalls behind the whole table. The journal records carry (precinct, seq)
 * in their header, so the tails are rebuilt from the journal when the store
 * opens.
 *
 * Invariant, for the precincts of slice k: "dedup" holds every key with a
 * position up to slice_pos[k]; the tails hold every key with a committed
 * position above it, plus those appended in the open write txn. A write txn
 * that aborts may have merged or added keys: the tails are then reloaded
 * from the committed store (rare: failed commits only). Only the committer
 * thread (and bal_store_open) touch the tails; readers get the same facts
 * from the journal (bal_store_precinct_scan).
 *
 * The journal bytes of each precinct (its quota's use) are kept the same
 * way: counted in memory, recorded per slice with the slice's snapshot
 * ("journal-bytes/<k>"), and rebuilt at open from those records plus the
 * lengths of the journal records after them.
 */
#include "storage/store_lmdb.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TAIL_MIN_CAP 8

int32_t bal__record_precinct(const struct bal_store *s, uint64_t position, uint32_t id, char *why, size_t whylen)
{
	int32_t i = bal__precinct_index(s, id);
	if (i < 0)
		bal__store_why(why, whylen, "journal position %llu names precinct %u, which is not in the definition",
		               (unsigned long long)position, id);
	return i;
}

int32_t bal__precinct_index(const struct bal_store *s, uint32_t id)
{
	uint32_t lo = 0, hi = s->nprec;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (s->ids[mid] == id)
			return (int32_t)mid;
		if (s->ids[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

uint32_t bal__slice_first(const struct bal_store *s, unsigned k)
{
	return (uint32_t)((uint64_t)k * s->nprec / s->nslices);
}

void bal__tail_deinit(struct bal_store *s)
{
	for (uint32_t i = 0; s->prec && i < s->nprec; i++) {
		free(s->prec[i].tail);
		s->prec[i].tail = NULL;
		s->prec[i].n = s->prec[i].cap = 0;
	}
}

/* Index of the first entry with seq >= `seq`. */
static uint32_t lower_bound(const struct bal__prec *p, uint64_t seq)
{
	uint32_t lo = 0, hi = p->n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (p->tail[mid].seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

uint64_t bal__tail_get(const struct bal__prec *p, uint64_t seq)
{
	if (seq > p->tail_max || !p->n)
		return 0;
	uint32_t i = lower_bound(p, seq);
	return i < p->n && p->tail[i].seq == seq ? p->tail[i].position : 0;
}

int bal__tail_put(struct bal__prec *p, uint64_t seq, uint64_t position)
{
	if (p->n == p->cap) {
		/* Capacity is kept when the tail is merged: once a precinct has seen
		 * its busiest round, its appends do not allocate. */
		uint32_t cap = p->cap ? p->cap * 2 : TAIL_MIN_CAP;
		if (cap <= p->cap)
			return -ENOMEM;
		struct bal__tail_ent *t = realloc(p->tail, (size_t)cap * sizeof(*t));
		if (!t)
			return -ENOMEM;
		p->tail = t;
		p->cap = cap;
	}
	/* In-order uploads append; a seq that arrives late is inserted in place. */
	uint32_t i = seq > p->tail_max ? p->n : lower_bound(p, seq);
	if (i < p->n)
		memmove(&p->tail[i + 1], &p->tail[i], (size_t)(p->n - i) * sizeof(*p->tail));
	p->tail[i] = (struct bal__tail_ent){.seq = seq, .position = position};
	p->n++;
	if (seq > p->tail_max)
		p->tail_max = seq;
	return 0;
}

int bal__tail_merge(struct bal_store *s, unsigned k)
{
	uint32_t first = bal__slice_first(s, k), end = bal__slice_first(s, k + 1);
	MDB_cursor *cur;
	int rc = bal__store_err(mdb_cursor_open(s->wtxn, s->dedup, &cur));
	if (rc != 0)
		return rc;
	/* Precinct indices follow id order and each tail is sorted by seq:
	 * the keys go in in key order, with the cursor moving forward. */
	for (uint32_t i = first; i < end && rc == 0; i++) {
		struct bal__prec *p = &s->prec[i];
		for (uint32_t j = 0; j < p->n && rc == 0; j++) {
			uint8_t kb[BAL_DEDUP_KEY], vb[8];
			bal__put_be32(kb, s->ids[i]);
			bal__put_be64(kb + 4, p->tail[j].seq);
			bal__put_be64(vb, p->tail[j].position);
			MDB_val key = {sizeof(kb), kb}, val = {sizeof(vb), vb};
			int mrc = mdb_cursor_put(cur, &key, &val, MDB_NOOVERWRITE);
			rc = mrc == MDB_KEYEXIST ? BAL_ECORRUPT : bal__store_err(mrc);
		}
		if (rc != 0)
			break;
		/* This txn reads its own writes: the keys are found in the table now.
		 * If it aborts, bal_store_wabort() reloads the committed state. */
		if (p->tail_max > p->table_max)
			p->table_max = p->tail_max;
		p->n = 0;
		p->tail_max = 0;
	}
	mdb_cursor_close(cur);
	return rc;
}

int bal__slice_position(struct bal_store *s, MDB_txn *txn, unsigned k, uint64_t *pos, char *why, size_t whylen)
{
	uint8_t kb[8];
	MDB_val key = {8, kb}, val;
	bal__put_be64(kb, k);
	int mrc = mdb_get(txn, s->snapshots, &key, &val);
	*pos = 0;
	if (mrc == MDB_NOTFOUND)
		return 0;
	if (mrc != 0)
		return bal__store_err(mrc);
	if (val.mv_size < BAL_REC_HDR || bal__get_be32(val.mv_data) != BAL_SNAP_MAGIC) {
		bal__store_why(why, whylen, "snapshot slice %u: damaged record header", k);
		return BAL_ECORRUPT;
	}
	*pos = bal__get_be64((const uint8_t *)val.mv_data + 8);
	return 0;
}

/* Largest seq of precinct `id` in "dedup", 0 if none. */
static int table_max(MDB_cursor *cur, uint32_t id, uint64_t *max)
{
	uint8_t kb[BAL_DEDUP_KEY];
	MDB_val key = {sizeof(kb), kb}, val;
	*max = 0;
	int mrc;
	if (id == UINT32_MAX) {
		mrc = mdb_cursor_get(cur, &key, &val, MDB_LAST);
	} else {
		/* The first key of the next precinct, then one back. */
		bal__put_be32(kb, id + 1);
		memset(kb + 4, 0, 8);
		mrc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
		mrc = mrc == 0 || mrc == MDB_NOTFOUND ? mdb_cursor_get(cur, &key, &val, mrc == 0 ? MDB_PREV : MDB_LAST)
		                                      : mrc;
	}
	if (mrc == MDB_NOTFOUND)
		return 0;
	if (mrc != 0)
		return bal__store_err(mrc);
	if (key.mv_size != BAL_DEDUP_KEY)
		return BAL_ECORRUPT;
	if (bal__get_be32(key.mv_data) == id)
		*max = bal__get_be64((const uint8_t *)key.mv_data + 4);
	return 0;
}

/* ---- journal bytes per precinct -------------------------------------------- */

static void bytes_name(char *name, size_t cap, unsigned k)
{
	snprintf(name, cap, "journal-bytes/%u", k);
}

int bal__bytes_put(struct bal_store *s, unsigned k)
{
	uint32_t first = bal__slice_first(s, k), end = bal__slice_first(s, k + 1);
	char name[40];
	bytes_name(name, sizeof(name), k);
	MDB_val key = {strlen(name), name}, val = {8 + 8 * (size_t)(end - first), NULL};
	/* MDB_RESERVE: written in place, no staging buffer. */
	int rc = bal__store_err(mdb_put(s->wtxn, s->meta, &key, &val, MDB_RESERVE));
	if (rc != 0)
		return rc;
	uint8_t *v = val.mv_data;
	bal__put_be64(v, s->wposition);
	for (uint32_t i = first; i < end; i++)
		bal__put_be64(v + 8 + 8 * (size_t)(i - first), s->prec[i].bytes);
	return 0;
}

/* Slice k's recorded journal bytes into its precincts; *pos is the position
 * they count up to (0 and zero bytes when none was recorded). */
static int bytes_load(struct bal_store *s, MDB_txn *txn, unsigned k, uint64_t *pos, char *why, size_t whylen)
{
	uint32_t first = bal__slice_first(s, k), end = bal__slice_first(s, k + 1);
	char name[40];
	bytes_name(name, sizeof(name), k);
	MDB_val key = {strlen(name), name}, val;
	int mrc = mdb_get(txn, s->meta, &key, &val);
	*pos = 0;
	for (uint32_t i = first; i < end; i++)
		s->prec[i].bytes = 0;
	if (mrc == MDB_NOTFOUND)
		return 0;
	if (mrc != 0)
		return bal__store_err(mrc);
	if (val.mv_size != 8 + 8 * (size_t)(end - first)) {
		bal__store_why(why, whylen, "%s: %zu bytes for %u precincts", name, val.mv_size, end - first);
		return BAL_ECORRUPT;
	}
	const uint8_t *v = val.mv_data;
	*pos = bal__get_be64(v);
	for (uint32_t i = first; i < end; i++)
		s->prec[i].bytes = bal__get_be64(v + 8 + 8 * (size_t)(i - first));
	return 0;
}

/* Header-only read of journal records after `after` (recovery verifies the
 * payloads): the keys later than their slice's snapshot go into the tails,
 * and the lengths of records later than their slice's byte counts
 * (`bytes_pos`) into their precinct's bytes. */
static int load_tails(struct bal_store *s, MDB_txn *txn, uint64_t after, const uint64_t *bytes_pos, char *why,
                      size_t whylen)
{
	MDB_cursor *cur;
	uint8_t k[8];
	MDB_val key = {8, k}, val;
	int rc = bal__store_err(mdb_cursor_open(txn, s->journal, &cur));
	if (rc)
		return rc;
	bal__put_be64(k, after + 1);
	int mrc = after == UINT64_MAX ? MDB_NOTFOUND : mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
	for (; mrc == 0; mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		uint64_t pos = key.mv_size == 8 ? bal__get_be64(key.mv_data) : 0;
		if (key.mv_size != 8 || val.mv_size < BAL_REC_HDR || bal__get_be32(val.mv_data) != BAL_JREC_MAGIC) {
			bal__store_why(why, whylen, "journal position %llu: damaged record header",
			               (unsigned long long)pos);
			rc = BAL_ECORRUPT;
			break;
		}
		const uint8_t *h = val.mv_data;
		int32_t i = bal__record_precinct(s, pos, bal__get_be32(h + 4), why, whylen);
		if (i < 0) {
			rc = BAL_ECORRUPT;
			break;
		}
		struct bal__prec *p = &s->prec[i];
		if (pos > bytes_pos[p->slice])
			p->bytes += val.mv_size - BAL_REC_HDR;
		if (pos > s->slice_pos[p->slice] && (rc = bal__tail_put(p, bal__get_be64(h + 8), pos)))
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
	MDB_cursor *cur;
	uint64_t *bytes_pos = malloc(s->nslices * sizeof(*bytes_pos));
	if (!bytes_pos)
		return -ENOMEM;
	int rc = bal__store_txn_begin(s, MDB_RDONLY, &txn);
	if (rc) {
		free(bytes_pos);
		return rc;
	}
	for (unsigned k = 0; k < s->nslices && rc == 0; k++)
		if ((rc = bal__slice_position(s, txn, k, &s->slice_pos[k], why, whylen)) == 0)
			rc = bytes_load(s, txn, k, &bytes_pos[k], why, whylen);
	if (rc != 0)
		goto out_txn;
	if ((rc = bal__store_err(mdb_cursor_open(txn, s->dedup, &cur))) != 0)
		goto out_txn;
	for (uint32_t i = 0; i < s->nprec && rc == 0; i++) {
		s->prec[i].n = 0;
		s->prec[i].tail_max = 0;
		rc = table_max(cur, s->ids[i], &s->prec[i].table_max);
	}
	mdb_cursor_close(cur);
	if (rc != 0) {
		bal__store_why(why, whylen, "dedup table: %s", bal_strerror(rc));
		goto out_txn;
	}
	uint64_t from = UINT64_MAX;
	for (unsigned k = 0; k < s->nslices; k++) {
		if (s->slice_pos[k] < from)
			from = s->slice_pos[k];
		if (bytes_pos[k] < from)
			from = bytes_pos[k];
	}
	rc = load_tails(s, txn, from, bytes_pos, why, whylen);
	for (uint32_t i = 0; i < s->nprec; i++) {
		atomic_store_explicit(&s->prec[i].cbytes, s->prec[i].bytes, memory_order_relaxed);
		s->prec[i].touched = false;
	}
	s->ntouched = 0;
out_txn:
	mdb_txn_abort(txn);
	free(bytes_pos);
	return rc;
}
