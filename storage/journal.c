/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The journal (exact SignedBatch bytes by position), the dedup table
 * ((precinct, seq) -> position) and the conflict table, plus the read-side
 * scans over them.
 *
 * Every journal record carries a small header (precinct, seq, checksum) so a
 * damaged record is reported as BAL_ECORRUPT with its position instead of
 * being handed to the tally; callers only ever see the payload bytes. No
 * protobuf here: the bytes are opaque.
 */
#include "storage/store_lmdb.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- one cursor loop for every range scan -------------------------------- */

typedef int (*visit_fn)(void *ctx, const MDB_val *key, const MDB_val *val);

/*
 * Visits entries of `dbi` in key order from the first key >= `from`, while the
 * key's first `prefix` bytes equal `from`'s (prefix 0: to the end). Stops at
 * the first non-zero visit result and returns it.
 */
static int scan_range(MDB_txn *txn, MDB_dbi dbi, const uint8_t *from, size_t fromlen, size_t prefix, visit_fn fn,
                      void *ctx)
{
	MDB_cursor *cur;
	MDB_val key = {fromlen, (void *)from}, val;
	int rc = bal__store_err(mdb_cursor_open(txn, dbi, &cur));
	if (rc != 0)
		return rc;
	int mrc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
	while (mrc == 0) {
		if (prefix && (key.mv_size < prefix || memcmp(key.mv_data, from, prefix) != 0))
			break;
		if ((rc = fn(ctx, &key, &val)) != 0)
			break;
		mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
	}
	if (rc == 0 && mrc != MDB_NOTFOUND)
		rc = bal__store_err(mrc);
	mdb_cursor_close(cur);
	return rc;
}

/* Same, in a read txn of its own. */
static int scan_read(struct bal_store *s, MDB_dbi dbi, const uint8_t *from, size_t fromlen, size_t prefix, visit_fn fn,
                     void *ctx)
{
	MDB_txn *txn;
	int rc = bal__store_txn_begin(s, MDB_RDONLY, &txn);
	if (rc != 0)
		return rc;
	rc = scan_range(txn, dbi, from, fromlen, prefix, fn, ctx);
	mdb_txn_abort(txn);
	return rc;
}

/* ---- journal records ------------------------------------------------------ */

#define JREC_WHAT "journal position"

/* Reads and validates the record at `position` in `txn`. */
static int jrec_get(struct bal_store *s, MDB_txn *txn, uint64_t position, struct bal__rec *r)
{
	uint8_t k[8];
	MDB_val key = {8, k}, val;
	bal__put_be64(k, position);
	int rc = bal__store_err(mdb_get(txn, s->journal, &key, &val));
	return rc != 0 ? rc : bal__rec_parse(&val, position, BAL_JREC_MAGIC, JREC_WHAT, r, NULL, 0);
}

static void dedup_key(uint8_t k[BAL_CONFLICT_KEY], uint32_t precinct, uint64_t seq, uint32_t counter)
{
	bal__put_be32(k, precinct);
	bal__put_be64(k + 4, seq);
	bal__put_be32(k + 12, counter);
}

/* ---- signed parts ----------------------------------------------------------- */

/* The part of a record its sender signed (the whole record without a
 * signed_part function, or where it finds none). */
static void signed_part(const struct bal_store *s, const uint8_t *rec, size_t len, const uint8_t **part, size_t *plen)
{
	size_t off, n;
	if (s->signed_part && s->signed_part(rec, len, &off, &n) == 0 && off <= len && n <= len - off) {
		*part = rec + off;
		*plen = n;
		return;
	}
	*part = rec;
	*plen = len;
}

static bool same_signed_part(const struct bal_store *s, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	const uint8_t *pa, *pb;
	size_t na, nb;
	signed_part(s, a, alen, &pa, &na);
	signed_part(s, b, blen, &pb, &nb);
	return na == nb && (na == 0 || memcmp(pa, pb, na) == 0);
}

/* ---- conflicts ------------------------------------------------------------ */

/* Meta counter names of a precinct's stored and unstored conflicts. */
static void conflict_counter(char *name, size_t cap, bool stored, uint32_t precinct_id)
{
	snprintf(name, cap, "%s/%u", stored ? "conflicts" : "conflicts-unstored", precinct_id);
}

static int meta_u64(struct bal_store *s, MDB_txn *txn, const char *name, uint64_t *v)
{
	MDB_val key = {strlen(name), (void *)name}, val;
	int mrc = mdb_get(txn, s->meta, &key, &val);
	*v = 0;
	if (mrc == MDB_NOTFOUND)
		return 0;
	if (mrc != 0)
		return bal__store_err(mrc);
	if (val.mv_size != 8)
		return BAL_ECORRUPT;
	*v = bal__get_be64(val.mv_data);
	return 0;
}

struct conflict_probe {
	const struct bal_store *s;
	const uint8_t *bytes;
	size_t len;
	uint32_t n;    /* versions stored under the key */
	uint32_t next; /* first free counter */
	bool recorded; /* this signed part is already recorded */
};

static int probe_conflict(void *ctx, const MDB_val *key, const MDB_val *val)
{
	struct conflict_probe *p = ctx;
	if (key->mv_size != BAL_CONFLICT_KEY || val->mv_size < 8)
		return BAL_ECORRUPT;
	p->n++;
	p->next = bal__get_be32((const uint8_t *)key->mv_data + 12) + 1;
	if (same_signed_part(p->s, (const uint8_t *)val->mv_data + 8, val->mv_size - 8, p->bytes, p->len)) {
		p->recorded = true;
		return 1;
	}
	return 0;
}

/*
 * Keeps each distinct conflicting signed batch of a key once, and at most
 * conflicts_per_key of them per key and conflicts_per_precinct per precinct:
 * the probe reads at most conflicts_per_key entries, whatever was sent. A
 * version not stored (already recorded, or beyond a cap) is counted.
 * Returns 0 or an error.
 */
static int record_conflict(struct bal_store *s, uint32_t precinct, uint64_t seq, uint64_t original,
                           const uint8_t *bytes, size_t len)
{
	uint8_t k[BAL_CONFLICT_KEY];
	char name[48];
	uint64_t nprec;
	struct conflict_probe probe = {.s = s, .bytes = bytes, .len = len};
	dedup_key(k, precinct, seq, 0);
	int rc = scan_range(s->wtxn, s->conflicts, k, sizeof(k), BAL_DEDUP_KEY, probe_conflict, &probe);
	if (rc < 0)
		return rc;
	conflict_counter(name, sizeof(name), true, precinct);
	if ((rc = meta_u64(s, s->wtxn, name, &nprec)) != 0)
		return rc;
	if (probe.recorded || probe.n >= s->conflicts_per_key || nprec >= s->conflicts_per_precinct) {
		conflict_counter(name, sizeof(name), false, precinct);
		return bal__store_meta_add(s, s->wtxn, name, 1);
	}
	dedup_key(k, precinct, seq, probe.next);
	MDB_val key = {sizeof(k), k}, val = {8 + len, NULL};
	if ((rc = bal__store_err(mdb_put(s->wtxn, s->conflicts, &key, &val, MDB_NOOVERWRITE | MDB_RESERVE))) != 0)
		return rc;
	bal__put_be64(val.mv_data, original);
	if (len)
		memcpy((uint8_t *)val.mv_data + 8, bytes, len);
	if ((rc = bal__store_meta_add(s, s->wtxn, name, 1)) != 0)
		return rc;
	return bal__store_meta_add(s, s->wtxn, "conflicts", 1);
}

int bal_store_conflict_counts(struct bal_store *s, uint32_t precinct_id, uint64_t *stored, uint64_t *unstored)
{
	MDB_txn *txn;
	char name[48];
	int rc = bal__store_txn_begin(s, MDB_RDONLY, &txn);
	if (rc != 0)
		return rc;
	conflict_counter(name, sizeof(name), true, precinct_id);
	if ((rc = meta_u64(s, txn, name, stored)) == 0) {
		conflict_counter(name, sizeof(name), false, precinct_id);
		rc = meta_u64(s, txn, name, unstored);
	}
	mdb_txn_abort(txn);
	return rc;
}

/* ---- write side ------------------------------------------------------------ */

/*
 * Within the write txn: the position at which (precinct p with id `id`, seq)
 * is journaled, 0 if it is not. A seq above both maxima is new without a
 * look-up (the usual case: precincts upload in order); else the tail (this
 * txn's earlier appends included), then the table. 0 or an error
 * (BAL_ECORRUPT, mapped LMDB error).
 */
static int journaled_at(struct bal_store *s, const struct bal__prec *p, uint32_t id, uint64_t seq, uint64_t *original)
{
	*original = bal__tail_get(p, seq);
	if (*original || seq > p->table_max)
		return 0;
	uint8_t k[BAL_CONFLICT_KEY]; /* dedup_key() writes conflict keys too */
	MDB_val key = {BAL_DEDUP_KEY, k}, val;
	dedup_key(k, id, seq, 0);
	int mrc = mdb_get(s->wtxn, s->dedup, &key, &val);
	if (mrc == MDB_NOTFOUND)
		return 0;
	if (mrc != 0)
		return bal__store_err(mrc);
	if (val.mv_size != 8)
		return BAL_ECORRUPT;
	*original = bal__get_be64(val.mv_data);
	return 0;
}

int bal_store_append(struct bal_store *s, uint32_t precinct, uint64_t seq, const uint8_t *bytes, size_t len,
                     uint64_t *position)
{
	int rc = bal__store_wready(s);
	if (rc != 0)
		return rc;
	if (precinct >= s->nprec)
		return -EINVAL;
	struct bal__prec *p = &s->prec[precinct];
	const uint32_t id = s->ids[precinct];

	uint64_t original;
	if ((rc = journaled_at(s, p, id, seq, &original)) != 0)
		return bal__store_wfail(s, rc);
	if (original) {
		struct bal__rec r;
		if ((rc = jrec_get(s, s->wtxn, original, &r)) != 0)
			return bal__store_wfail(s, rc == -ENOENT ? BAL_ECORRUPT : rc);
		if (r.a != id || r.b != seq)
			return bal__store_wfail(s, BAL_ECORRUPT);
		if (same_signed_part(s, r.payload, r.len, bytes, len)) {
			*position = original;
			return BAL_EDUPLICATE;
		}
		if ((rc = record_conflict(s, id, seq, original, bytes, len)) != 0)
			return bal__store_wfail(s, rc);
		*position = original;
		return BAL_ECONFLICT;
	}
	if (len > p->quota || p->bytes > p->quota - len)
		return BAL_EQUOTA;
	uint64_t pos = s->wposition + 1;
	rc = bal__rec_put(s->wtxn, s->journal, pos, MDB_APPEND, BAL_JREC_MAGIC, id, seq, bytes, len);
	/* Its leaf in the same txn: the log is exactly as durable as the journal. */
	if (rc == 0)
		rc = bal__tree_leaf(s, bytes, len);
	if (rc != 0)
		return bal__store_wfail(s, rc);
	rc = bal__tail_put(p, seq, pos);
	if (rc != 0)
		return bal__store_wfail(s, rc);
	p->bytes += len;
	if (!p->touched) {
		p->touched = true;
		s->touched[s->ntouched++] = precinct;
	}
	s->wposition = pos;
	*position = pos;
	return 0;
}

int bal_store_seen(struct bal_store *s, uint32_t precinct, uint64_t seq)
{
	int rc = bal__store_wready(s);
	if (rc != 0)
		return rc;
	if (precinct >= s->nprec)
		return -EINVAL;
	uint64_t original;
	rc = journaled_at(s, &s->prec[precinct], s->ids[precinct], seq, &original);
	return rc != 0 ? rc : original != 0;
}

/* ---- read side -------------------------------------------------------------- */

struct walk {
	bal__jrec_cb cb;
	void *arg;
	uint64_t next; /* position the next entry must have */
	uint64_t *at;
	char *why;
	size_t whylen;
};

static int walk_entry(void *ctx, const MDB_val *key, const MDB_val *val)
{
	struct walk *w = ctx;
	struct bal__rec r;
	if (key->mv_size != 8) {
		*w->at = w->next;
		bal__store_why(w->why, w->whylen, "journal after position %llu: key of %zu bytes, expected 8",
		               (unsigned long long)(w->next - 1), key->mv_size);
		return BAL_ECORRUPT;
	}
	uint64_t pos = bal__get_be64(key->mv_data);
	*w->at = pos;
	if (pos != w->next) {
		bal__store_why(w->why, w->whylen,
		               "journal position %llu follows %llu: positions %llu..%llu are missing",
		               (unsigned long long)pos, (unsigned long long)(w->next - 1), (unsigned long long)w->next,
		               (unsigned long long)(pos - 1));
		return BAL_ECORRUPT;
	}
	int rc = bal__rec_parse(val, pos, BAL_JREC_MAGIC, JREC_WHAT, &r, w->why, w->whylen);
	if (rc != 0)
		return rc;
	w->next = pos + 1;
	return w->cb(w->arg, pos, &r);
}

int bal__journal_walk(struct bal_store *s, MDB_txn *txn, uint64_t after, bal__jrec_cb cb, void *arg, uint64_t *at,
                      char *why, size_t whylen)
{
	uint8_t k[8];
	uint64_t stop = 0;
	struct walk w = {.cb = cb, .arg = arg, .next = after + 1, .at = at ? at : &stop, .why = why, .whylen = whylen};
	if (after == UINT64_MAX)
		return 0;
	bal__put_be64(k, after + 1);
	return scan_range(txn, s->journal, k, sizeof(k), 0, walk_entry, &w);
}

struct payload_visit {
	bal_store_entry_cb cb;
	void *arg;
};

static int visit_payload(void *ctx, uint64_t position, const struct bal__rec *r)
{
	const struct payload_visit *v = ctx;
	return v->cb(v->arg, position, r->payload, r->len);
}

int bal_store_journal_scan(struct bal_store *s, uint64_t after, bal_store_entry_cb cb, void *arg)
{
	MDB_txn *txn;
	struct payload_visit v = {cb, arg};
	int rc = bal__store_txn_begin(s, MDB_RDONLY, &txn);
	if (rc != 0)
		return rc;
	rc = bal__journal_walk(s, txn, after, visit_payload, &v, NULL, NULL, 0);
	mdb_txn_abort(txn);
	return rc;
}

long bal_store_journal_get(struct bal_store *s, uint64_t position, uint8_t *buf, size_t cap)
{
	MDB_txn *txn;
	struct bal__rec r;
	int rc = bal__store_txn_begin(s, MDB_RDONLY, &txn);
	if (rc != 0)
		return rc;
	rc = jrec_get(s, txn, position, &r);
	if (rc == 0 && r.len > LONG_MAX)
		rc = -EOVERFLOW;
	if (rc == 0 && r.len <= cap && r.len)
		memcpy(buf, r.payload, r.len); /* copied before the txn ends: r.payload points into the map */
	mdb_txn_abort(txn);
	return rc != 0 ? rc : (long)r.len;
}

/* The precinct's (seq, position) pairs, gathered from the table and the journal tail. */
struct seq_list {
	uint32_t precinct;
	size_t n, cap;
	uint64_t (*sp)[2];
};

static int seq_add(struct seq_list *l, uint64_t seq, uint64_t position)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		void *p = realloc(l->sp, cap * sizeof(*l->sp));
		if (!p)
			return -ENOMEM;
		l->sp = p;
		l->cap = cap;
	}
	l->sp[l->n][0] = seq;
	l->sp[l->n][1] = position;
	l->n++;
	return 0;
}

static int seq_collect(void *ctx, const MDB_val *key, const MDB_val *val)
{
	if (key->mv_size != BAL_DEDUP_KEY || val->mv_size != 8)
		return BAL_ECORRUPT;
	return seq_add(ctx, bal__get_be64((const uint8_t *)key->mv_data + 4), bal__get_be64(val->mv_data));
}

static int tail_collect(void *ctx, const MDB_val *key, const MDB_val *val)
{
	struct seq_list *l = ctx;
	if (key->mv_size != 8 || val->mv_size < BAL_REC_HDR)
		return BAL_ECORRUPT;
	const uint8_t *h = val->mv_data;
	if (bal__get_be32(h + 4) != l->precinct)
		return 0;
	return seq_add(l, bal__get_be64(h + 8), bal__get_be64(key->mv_data));
}

static int by_seq(const void *a, const void *b)
{
	const uint64_t *x = a, *y = b;
	return x[0] < y[0] ? -1 : x[0] > y[0];
}

int bal_store_precinct_list(struct bal_store *s, uint32_t precinct_id, uint64_t (**pairs)[2], size_t *n)
{
	uint8_t k[BAL_CONFLICT_KEY], jk[8];
	struct seq_list l = {.precinct = precinct_id};
	MDB_txn *txn;
	uint64_t snap = 0;
	*pairs = NULL;
	*n = 0;
	int32_t idx = bal__precinct_index(s, precinct_id);
	if (idx < 0)
		return 0; /* not a precinct of this election: nothing journaled */
	int rc = bal__store_txn_begin(s, MDB_RDONLY, &txn);
	if (rc != 0)
		return rc;
	/* One read txn: the table up to the snapshot of the precinct's slice, the journal after it. */
	rc = bal__slice_position(s, txn, s->prec[idx].slice, &snap, NULL, 0);
	dedup_key(k, precinct_id, 0, 0);
	if (rc == 0)
		rc = scan_range(txn, s->dedup, k, BAL_DEDUP_KEY, 4, seq_collect, &l);
	bal__put_be64(jk, snap + 1);
	if (rc == 0)
		rc = scan_range(txn, s->journal, jk, 8, 0, tail_collect, &l);
	mdb_txn_abort(txn);
	if (rc != 0) {
		free(l.sp);
		return rc;
	}
	if (l.n)
		qsort(l.sp, l.n, sizeof(*l.sp), by_seq);
	*pairs = l.sp;
	*n = l.n;
	return 0;
}

int bal_store_precinct_scan(struct bal_store *s, uint32_t precinct_id, bal_store_seq_cb cb, void *arg)
{
	uint64_t(*sp)[2];
	size_t n;
	int rc = bal_store_precinct_list(s, precinct_id, &sp, &n);
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = cb(arg, sp[i][0], sp[i][1]);
	free(sp);
	return rc;
}

struct conflict_visit {
	bal_store_conflict_cb cb;
	void *arg;
};

static int conflict_entry(void *ctx, const MDB_val *key, const MDB_val *val)
{
	struct conflict_visit *v = ctx;
	const uint8_t *p = val->mv_data;
	if (key->mv_size != BAL_CONFLICT_KEY || val->mv_size < 8)
		return BAL_ECORRUPT;
	return v->cb(v->arg, bal__get_be64((const uint8_t *)key->mv_data + 4), bal__get_be64(p), p + 8,
	             val->mv_size - 8);
}

int bal_store_conflict_scan(struct bal_store *s, uint32_t precinct_id, bal_store_conflict_cb cb, void *arg)
{
	uint8_t k[BAL_CONFLICT_KEY];
	struct conflict_visit v = {cb, arg};
	dedup_key(k, precinct_id, 0, 0);
	return scan_read(s, s->conflicts, k, BAL_CONFLICT_KEY, 4, conflict_entry, &v);
}
