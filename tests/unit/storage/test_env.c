/* SPDX-License-Identifier: Apache-2.0 */
/*
 * storage/env.c: opening, definition pinning, map sizing, the write-txn
 * lifecycle, persistence, map-full behaviour and bal_store_info().
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/unit/storage/fixture.h"

TestSuite(storage_env, .init = fx_setup, .fini = fx_teardown);

Test(storage_env, creates_missing_dir_private)
{
	struct bal_store *s = fx_open_default();
	struct stat st;
	cr_assert_eq(stat(fx_dir, &st), 0);
	cr_assert(S_ISDIR(st.st_mode));
	cr_assert_eq(st.st_mode & 0777, 0700);
	cr_assert_eq(bal_store_position(s), 0);
	bal_store_close(s);
}

Test(storage_env, reopens_with_same_hash)
{
	bal_store_close(fx_open(0x42, 8 * MiB));
	bal_store_close(fx_open(0x42, 8 * MiB));
}

Test(storage_env, refuses_other_definition_naming_both_hashes)
{
	bal_store_close(fx_open(0xab, 8 * MiB));
	static const uint32_t ids[] = {0, 1, 2};
	struct bal_store_opts o = {.dir = fx_dir, .map_size = 8 * MiB, .precinct_ids = ids, .nprecincts = 3};
	struct bal_store *s = NULL;
	char why[512] = "";
	memset(o.hash, 0xcd, sizeof(o.hash));
	cr_assert_eq(bal_store_open(&o, &s, why, sizeof(why)), BAL_EDEFN);
	cr_assert_null(s);
	char pinned[65], given[65];
	memset(pinned, 'a', 64);
	memset(given, 'c', 64);
	for (int i = 1; i < 64; i += 2)
		pinned[i] = 'b', given[i] = 'd';
	pinned[64] = given[64] = '\0';
	cr_assert_not_null(strstr(why, pinned), "why: %s", why);
	cr_assert_not_null(strstr(why, given), "why: %s", why);
	cr_assert_not_null(strstr(why, fx_dir), "why: %s", why);
	cr_assert_lt(strstr(why, pinned), strstr(why, given), "pinned hash first: %s", why);
}

Test(storage_env, refuses_foreign_format)
{
	bal_store_close(fx_open_default());
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	uint8_t v[4] = {0, 0, 0, 99};
	MDB_val k = {6, "format"}, val = {4, v};
	cr_assert_eq(mdb_env_create(&env), 0);
	cr_assert_eq(mdb_env_set_maxdbs(env, 8), 0);
	cr_assert_eq(mdb_env_open(env, fx_dir, 0, 0600), 0);
	cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
	cr_assert_eq(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
	cr_assert_eq(mdb_put(txn, dbi, &k, &val, 0), 0);
	cr_assert_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);

	static const uint32_t ids[] = {0, 1, 2};
	struct bal_store_opts o = {.dir = fx_dir, .map_size = 8 * MiB, .precinct_ids = ids, .nprecincts = 3};
	struct bal_store *s = NULL;
	char why[256] = "";
	memset(o.hash, 0x11, sizeof(o.hash));
	cr_assert_eq(bal_store_open(&o, &s, why, sizeof(why)), BAL_ECORRUPT);
	cr_assert_not_null(strstr(why, "format 99"), "why: %s", why);
}

Test(storage_env, rejects_bad_options)
{
	static const uint32_t ids[] = {4, 9, 9};
	struct bal_store_opts o = {.dir = fx_dir, .map_size = 1000, .precinct_ids = ids, .nprecincts = 2};
	struct bal_store *s = NULL;
	char why[256] = "";
	cr_assert_eq(bal_store_open(&o, &s, why, sizeof(why)), -EINVAL);
	cr_assert_not_null(strstr(why, "map_size 1000"), "why: %s", why);
	o.map_size = 8 * MiB;
	o.nprecincts = 0;
	cr_assert_eq(bal_store_open(&o, &s, why, sizeof(why)), -EINVAL);
	cr_assert_not_null(strstr(why, "no precincts"), "why: %s", why);
	o.nprecincts = 3;
	cr_assert_eq(bal_store_open(&o, &s, why, sizeof(why)), -EINVAL);
	cr_assert_not_null(strstr(why, "not strictly ascending at index 2 (9, 9)"), "why: %s", why);
	o.nprecincts = 2;

	FILE *f = fopen(fx_dir, "w"); /* a plain file where the directory should be */
	cr_assert_not_null(f);
	fclose(f);
	o.map_size = 8 * MiB;
	cr_assert_eq(bal_store_open(&o, &s, why, sizeof(why)), -ENOTDIR);
	cr_assert_not_null(strstr(why, "not a directory"), "why: %s", why);
	cr_assert_null(s);
}

Test(storage_env, keeps_larger_stored_map_and_grows_smaller)
{
	struct bal_store_info info;
	struct bal_store *s = fx_open(0x11, 8 * MiB);
	fx_journal(s, 1, 1, 1, 100); /* the map size is recorded by a commit */
	bal_store_close(s);

	s = fx_open(0x11, 2 * MiB);
	cr_assert_eq(bal_store_info(s, &info), 0);
	cr_assert_eq(info.map_size, 8 * MiB, "stored 8 MiB kept, got %llu", (unsigned long long)info.map_size);
	bal_store_close(s);

	s = fx_open(0x11, 16 * MiB);
	cr_assert_eq(bal_store_info(s, &info), 0);
	cr_assert_eq(info.map_size, 16 * MiB);
	bal_store_close(s);
}

Test(storage_env, write_txn_lifecycle_errors)
{
	struct bal_store *s = fx_open_default();
	uint64_t pos;
	bal_store_wabort(s); /* none open: harmless */
	cr_assert_eq(bal_store_wcommit(s), -EINVAL);
	cr_assert_eq(bal_store_append(s, 1, 1, (const uint8_t *)"x", 1, &pos), -EINVAL);
	cr_assert_eq(bal_store_wbegin(s), 0);
	cr_assert_eq(bal_store_wbegin(s), -EBUSY);
	cr_assert_eq(bal_store_wcommit(s), 0);
	cr_assert_eq(bal_store_position(s), 0);
	bal_store_close(s);
	bal_store_close(NULL);
}

Test(storage_env, data_persists_across_reopen)
{
	struct bal_store *s = fx_open_default();
	uint8_t b[300];
	fx_journal(s, 7, 1, 5, sizeof(b));
	bal_store_close(s);

	s = fx_open_default();
	cr_assert_eq(bal_store_position(s), 5);
	fx_expect_journal(s, 1, 1, 5, sizeof(b));
	uint64_t pos;
	fx_fill(b, sizeof(b), 99);
	cr_assert_eq(bal_store_wbegin(s), 0);
	cr_assert_eq(bal_store_append(s, 7, 3, b, sizeof(b), &pos), BAL_ECONFLICT, "dedup state persisted");
	cr_assert_eq(pos, 3);
	bal_store_wabort(s);
	cr_assert_eq(fx_commit_one(s, 7, 6, b, sizeof(b)), 6);
	bal_store_close(s);
}

/* One txn appending fx_fill(len, seq): the append's error (txn aborted) or the commit's. */
static int try_commit(struct bal_store *s, uint64_t seq, size_t len)
{
	static uint8_t b[64 * 1024];
	uint64_t pos;
	cr_assert_leq(len, sizeof(b));
	fx_fill(b, len, (uint32_t)seq);
	cr_assert_eq(bal_store_wbegin(s), 0);
	int rc = bal_store_append(s, 1, seq, b, len, &pos);
	if (rc != 0) {
		bal_store_wabort(s);
		return rc;
	}
	return bal_store_wcommit(s);
}

/* Fills a 1 MiB map until the store refuses, with -ENOSPC and nothing half-written. */
Test(storage_env, map_full_is_enospc_and_store_survives)
{
	enum { CHUNK = 48 * 1024, MAX_TRIES = 200 };
	struct bal_store *s = fx_open(0x11, 1 * MiB);
	uint64_t committed = 0;
	int rc = 0;
	while (committed < MAX_TRIES && (rc = try_commit(s, committed + 1, CHUNK)) == 0)
		committed++;
	cr_assert_eq(rc, -ENOSPC, "got %d (%s) after %llu commits", rc, bal_strerror(rc),
	             (unsigned long long)committed);
	cr_assert_gt(committed, 0);
	cr_assert_eq(bal_store_position(s), committed);

	/* Reads still work and the store still takes (and refuses) write txns. */
	fx_expect_journal(s, 1, 1, committed, CHUNK);
	cr_assert_eq(try_commit(s, committed + 1, CHUNK), -ENOSPC);
	bal_store_close(s);

	/* A restart with a larger map continues where the journal ended, nothing lost. */
	s = fx_open(0x11, 4 * MiB);
	cr_assert_eq(bal_store_position(s), committed);
	cr_assert_eq(try_commit(s, committed + 1, CHUNK), 0);
	cr_assert_eq(bal_store_position(s), committed + 1);
	fx_expect_journal(s, 1, 1, committed + 1, CHUNK);
	bal_store_close(s);
}

Test(storage_env, info_reports_fields)
{
	struct bal_store *s = fx_open_default();
	struct bal_store_info a, b;
	uint8_t buf[4000];
	uint64_t ctr[4] = {1, 2, 3, 4}, pos;
	cr_assert_eq(bal_store_info(s, &a), 0);
	cr_assert_eq(a.position, 0);
	cr_assert_eq(a.snapshot_position, 0);
	cr_assert_eq(a.conflicts, 0);
	cr_assert_eq(a.map_size, 8 * MiB);
	cr_assert_gt(a.map_used, 0);
	cr_assert_leq(a.map_used, a.map_size);

	cr_assert_eq(bal_store_wbegin(s), 0);
	for (uint32_t i = 1; i <= 20; i++) {
		fx_fill(buf, sizeof(buf), i);
		cr_assert_eq(bal_store_append(s, 3, i, buf, sizeof(buf), &pos), 0);
	}
	/* Every slice snapshotted, at 20 but the last one, then at 15: the oldest is reported. */
	for (unsigned k = 0; k + 1 < bal_store_slices(s); k++)
		cr_assert_eq(bal_store_put_slice(s, k, ctr, sizeof(ctr)), 0);
	cr_assert_eq(bal_store_append(s, 3, 1, buf, sizeof(buf), &pos), BAL_ECONFLICT);
	cr_assert_eq(bal_store_wcommit(s), 0);
	cr_assert_eq(bal_store_info(s, &b), 0);
	cr_assert_eq(b.snapshot_position, 0, "one slice has no snapshot yet");
	cr_assert_eq(bal_store_wbegin(s), 0);
	cr_assert_eq(bal_store_put_slice(s, bal_store_slices(s) - 1, ctr, sizeof(ctr)), 0);
	for (uint32_t i = 21; i <= 25; i++)
		cr_assert_eq(bal_store_append(s, 3, i, buf, 10, &pos), 0);
	cr_assert_eq(bal_store_put_slice(s, 0, ctr, sizeof(ctr)), 0);
	cr_assert_eq(bal_store_wcommit(s), 0);

	cr_assert_eq(bal_store_info(s, &b), 0);
	cr_assert_eq(b.position, 25);
	cr_assert_eq(b.snapshot_position, 20);
	cr_assert_eq(b.conflicts, 1);
	cr_assert_gt(b.map_used, a.map_used + 20 * sizeof(buf) - 1);
	cr_assert_leq(b.map_used, b.map_size);
	bal_store_close(s);
}

struct reader {
	struct bal_store *s;
	uint64_t position;
	long got;
};

static void *read_side(void *arg)
{
	struct reader *r = arg;
	uint8_t buf[16];
	r->position = bal_store_position(r->s);
	r->got = bal_store_journal_get(r->s, 2, buf, sizeof(buf));
	return NULL;
}

Test(storage_env, readers_see_only_committed_data)
{
	struct bal_store *s = fx_open_default();
	uint64_t pos;
	fx_commit_one(s, 1, 1, (const uint8_t *)"one", 3);
	cr_assert_eq(bal_store_wbegin(s), 0);
	cr_assert_eq(bal_store_append(s, 1, 2, (const uint8_t *)"two", 3, &pos), 0);
	cr_assert_eq(pos, 2);

	uint8_t buf[8];
	cr_assert_eq(bal_store_journal_get(s, 2, buf, sizeof(buf)), -ENOENT, "same thread, own read txn");
	pthread_t t;
	struct reader r = {.s = s};
	cr_assert_eq(pthread_create(&t, NULL, read_side, &r), 0);
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_eq(r.position, 1);
	cr_assert_eq(r.got, -ENOENT);

	cr_assert_eq(bal_store_wcommit(s), 0);
	r = (struct reader){.s = s};
	cr_assert_eq(pthread_create(&t, NULL, read_side, &r), 0);
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_eq(r.position, 2);
	cr_assert_eq(r.got, 3);
	bal_store_close(s);
}
