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

static uint64_t snap_sum(const uint8_t key[8], const uint8_t *slots, size_t bytes)
{
	/* The key is in the sum, so a record that ends up under another position fails too. */
	return bal__store_sum(slots, bytes, bal__store_sum(key, 8, BAL_SUM_SEED));
}

int bal_store_put_snapshot(struct bal_store *s, uint64_t position, const uint64_t *ctr, size_t n)
{
	MDB_cursor *cur;
	MDB_val key, val;
	uint8_t k[8];
	int rc = bal__store_wready(s);
	if (rc != 0)
		return rc;
	if (position > s->wposition || n > (UINT32_MAX - BAL_SNAP_HDR) / sizeof(uint64_t))
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

	size_t bytes = n * sizeof(uint64_t);
	bal__put_be64(k, position);
	key = (MDB_val){8, k};
	val = (MDB_val){BAL_SNAP_HDR + bytes, NULL};
	if ((rc = bal__store_err(mdb_put(s->wtxn, s->snapshots, &key, &val, MDB_RESERVE))) != 0)
		return bal__store_wfail(s, rc);
	uint8_t *rec = val.mv_data;
	bal__put_be32(rec, BAL_SNAP_MAGIC);
	bal__put_be32(rec + 4, BAL_SNAP_VERSION);
	bal__put_be64(rec + 8, n);
	if (bytes)
		memcpy(rec + BAL_SNAP_HDR, ctr, bytes);
	bal__put_be64(rec + 16, snap_sum(k, rec + BAL_SNAP_HDR, bytes));
	return 0;
}

int bal__snapshot_read(struct bal_store *s, MDB_txn *txn, uint64_t *position, uint64_t *ctr, size_t n, char *why,
		       size_t whylen)
{
	MDB_cursor *cur;
	MDB_val key, val;
	int rc = bal__store_err(mdb_cursor_open(txn, s->snapshots, &cur));
	if (rc != 0)
		return rc;
	rc = bal__store_err(mdb_cursor_get(cur, &key, &val, MDB_LAST));
	mdb_cursor_close(cur);
	if (rc != 0)
		return rc;
	if (key.mv_size != 8) {
		bal__store_why(why, whylen, "snapshot key of %zu bytes, expected 8", key.mv_size);
		return BAL_ECORRUPT;
	}
	uint64_t pos = bal__get_be64(key.mv_data);
	const uint8_t *rec = val.mv_data;
	if (val.mv_size < BAL_SNAP_HDR || bal__get_be32(rec) != BAL_SNAP_MAGIC ||
	    bal__get_be32(rec + 4) != BAL_SNAP_VERSION) {
		bal__store_why(why, whylen, "snapshot at position %llu: bad header (%zu bytes, version %u, expected %u)",
			       (unsigned long long)pos, val.mv_size,
			       val.mv_size >= BAL_SNAP_HDR ? bal__get_be32(rec + 4) : 0u, BAL_SNAP_VERSION);
		return BAL_ECORRUPT;
	}
	uint64_t nslots = bal__get_be64(rec + 8);
	if (nslots != n) {
		bal__store_why(why, whylen, "snapshot at position %llu has %llu slots, the definition needs %zu",
			       (unsigned long long)pos, (unsigned long long)nslots, n);
		return BAL_ECORRUPT;
	}
	size_t bytes = n * sizeof(uint64_t);
	if (val.mv_size != BAL_SNAP_HDR + bytes) {
		bal__store_why(why, whylen, "snapshot at position %llu: record of %zu bytes, expected %zu for %zu slots",
			       (unsigned long long)pos, val.mv_size, BAL_SNAP_HDR + bytes, n);
		return BAL_ECORRUPT;
	}
	uint64_t want = bal__get_be64(rec + 16), got = snap_sum(key.mv_data, rec + BAL_SNAP_HDR, bytes);
	if (want != got) {
		bal__store_why(why, whylen, "snapshot at position %llu: checksum %016llx, stored %016llx (record damaged)",
			       (unsigned long long)pos, (unsigned long long)got, (unsigned long long)want);
		return BAL_ECORRUPT;
	}
	if (bytes)
		memcpy(ctr, rec + BAL_SNAP_HDR, bytes); /* the map may not be 8-byte aligned for us */
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
