/*
 * Counter snapshots: the flat uint64 counter array plus the journal position
 * it covers, so recovery replays only the tail. Only the newest snapshot is
 * kept; it is replaced within the committer's write txn, so a snapshot and
 * the journal prefix it covers always become durable together.
 *
 * A record is validated (magic, version, slot count, size, checksum) before a
 * single counter is copied out. No dependency beyond LMDB and libc.
 */
#include "store_lmdb.h"

#include <errno.h>
#include <string.h>

int bal_store_put_snapshot(struct bal_store *s, uint64_t position, const uint64_t *ctr, size_t n)
{
	MDB_cursor *cur;
	MDB_val key, val;
	int rc = bal__store_wready(s);
	if (rc != 0)
		return rc;
	if (position > s->wposition || n > SIZE_MAX / sizeof(uint64_t))
		return bal__store_wfail(s, -EINVAL);

	/* Delete every older snapshot first; the new one then is the only record. */
	if ((rc = bal__store_err(mdb_cursor_open(s->wtxn, s->snapshots, &cur))) != 0)
		return bal__store_wfail(s, rc);
	int mrc;
	while ((mrc = mdb_cursor_get(cur, &key, &val, MDB_FIRST)) == 0)
		if ((mrc = mdb_cursor_del(cur, 0)) != 0)
			break;
	mdb_cursor_close(cur);
	if (mrc != MDB_NOTFOUND)
		return bal__store_wfail(s, bal__store_err(mrc));

	rc = bal__rec_put(s->wtxn, s->snapshots, position, 0, BAL_SNAP_MAGIC, BAL_SNAP_VERSION, n, ctr,
			  n * sizeof(uint64_t));
	/* The dedup keys the snapshot covers join the table in the same txn. */
	if (rc == 0)
		rc = bal__tail_merge(s, position);
	return rc != 0 ? bal__store_wfail(s, rc) : 0;
}

int bal__snapshot_read(struct bal_store *s, MDB_txn *txn, uint64_t *position, uint64_t *ctr, size_t n, char *why,
		       size_t whylen)
{
	MDB_val val;
	uint64_t pos;
	int rc = bal__store_last(txn, s->snapshots, &pos, &val);
	if (rc == BAL_ECORRUPT)
		bal__store_why(why, whylen, "snapshot: key is not 8 bytes");
	if (rc != 0)
		return rc;
	if (!val.mv_data)
		return -ENOENT;
	struct bal__rec r;
	if ((rc = bal__rec_parse(&val, pos, BAL_SNAP_MAGIC, "snapshot at position", &r, why, whylen)) != 0)
		return rc;
	if (r.a != BAL_SNAP_VERSION) {
		bal__store_why(why, whylen, "snapshot at position %llu: version %u, this build reads version %u",
			       (unsigned long long)pos, r.a, BAL_SNAP_VERSION);
		return BAL_ECORRUPT;
	}
	if (r.b != n || r.len != n * sizeof(uint64_t)) {
		bal__store_why(why, whylen,
			       "snapshot at position %llu has %llu slots (%zu bytes), the definition needs %zu",
			       (unsigned long long)pos, (unsigned long long)r.b, r.len, n);
		return BAL_ECORRUPT;
	}
	if (r.len)
		memcpy(ctr, r.payload, r.len); /* the map may not be 8-byte aligned for us */
	*position = pos;
	return 0;
}

int bal_store_snapshot_load(struct bal_store *s, uint64_t *position, uint64_t *ctr, size_t n)
{
	MDB_txn *txn;
	int rc = bal__store_txn_begin(s, MDB_RDONLY, &txn);
	if (rc != 0)
		return rc;
	rc = bal__snapshot_read(s, txn, position, ctr, n, NULL, 0);
	mdb_txn_abort(txn);
	return rc;
}
