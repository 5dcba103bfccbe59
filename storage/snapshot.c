/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Snapshot slices: for each slice of precincts, the caller's snapshot of
 * those precincts (an opaque blob) and the journal position it was taken at,
 * so recovery replays only what came later. A slice is replaced within the
 * committer's write txn, so a slice's snapshot and the journal prefix it
 * covers always become durable together; the slice's dedup keys join the
 * table in the same txn (tail.c).
 *
 * A record is validated (magic, version, checksum) before its payload is
 * handed out. No dependency beyond LMDB and libc.
 */
#include "storage/store_lmdb.h"

#include <errno.h>
#include <string.h>

unsigned bal_store_slices(const struct bal_store *s)
{
	return s->nslices;
}

void bal_store_slice_range(const struct bal_store *s, unsigned k, uint32_t *first, uint32_t *end)
{
	bal_require(k < s->nslices);
	*first = bal__slice_first(s, k);
	*end = bal__slice_first(s, k + 1);
}

uint64_t bal_store_slice_position(const struct bal_store *s, unsigned k)
{
	bal_require(k < s->nslices);
	return s->slice_pos[k];
}

int bal_store_put_slice(struct bal_store *s, unsigned k, const void *blob, size_t len)
{
	int rc = bal__store_wready(s);
	if (rc != 0)
		return rc;
	if (k >= s->nslices)
		return -EINVAL;
	/* Overwrites the slice's previous record: there is one per slice. */
	rc = bal__rec_put(s->wtxn, s->snapshots, k, 0, BAL_SNAP_MAGIC, BAL_SNAP_VERSION, s->wposition, blob, len);
	if (rc == 0)
		rc = bal__tail_merge(s, k);
	if (rc == 0)
		rc = bal__bytes_put(s, k);
	if (rc != 0)
		return bal__store_wfail(s, rc);
	s->slice_wpos[k] = s->wposition;
	return 0;
}

int bal__slice_read(struct bal_store *s, MDB_txn *txn, unsigned k, struct bal__rec *r, char *why, size_t whylen)
{
	uint8_t kb[8];
	MDB_val key = {8, kb}, val;
	bal__put_be64(kb, k);
	int rc = bal__store_err(mdb_get(txn, s->snapshots, &key, &val));
	if (rc != 0)
		return rc;
	if ((rc = bal__rec_parse(&val, k, BAL_SNAP_MAGIC, "snapshot slice", r, why, whylen)) != 0)
		return rc;
	if (r->a != BAL_SNAP_VERSION) {
		bal__store_why(why, whylen, "snapshot slice %u: version %u, this build reads version %u", k, r->a,
		               BAL_SNAP_VERSION);
		return BAL_ECORRUPT;
	}
	return 0;
}
