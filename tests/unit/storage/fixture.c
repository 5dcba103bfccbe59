/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Storage test fixture: temporary directories and raw LMDB access for
 * damaging records on purpose. Test-only; includes lmdb.h.
 */
#define _XOPEN_SOURCE 700
#include "tests/unit/storage/fixture.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "storage/store_lmdb.h"

static char root[256];
char fx_dir[300];

void fx_setup(void)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(root, sizeof(root), "%s/ballotd-store-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	cr_assert_not_null(mkdtemp(root), "mkdtemp %s", root);
	snprintf(fx_dir, sizeof(fx_dir), "%s/data", root);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

void fx_teardown(void)
{
	if (root[0])
		nftw(root, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

struct bal_store *fx_open_precincts(uint8_t hash_byte, size_t map_size, uint32_t nprecincts)
{
	static uint32_t ids[FX_PRECINCTS];
	cr_assert_leq(nprecincts, FX_PRECINCTS);
	for (uint32_t i = 0; i < nprecincts; i++)
		ids[i] = i;
	struct bal_store_opts o = {.dir = fx_dir, .map_size = map_size, .precinct_ids = ids, .nprecincts = nprecincts};
	struct bal_store *s = NULL;
	char why[256] = "";
	memset(o.hash, hash_byte, sizeof(o.hash));
	int rc = bal_store_open(&o, &s, why, sizeof(why));
	cr_assert_eq(rc, 0, "open %s: %s (%s)", fx_dir, bal_strerror(rc), why);
	return s;
}

struct bal_store *fx_open(uint8_t hash_byte, size_t map_size)
{
	return fx_open_precincts(hash_byte, map_size, FX_PRECINCTS);
}

struct bal_store *fx_open_default(void)
{
	return fx_open(0x11, 8 * MiB);
}

void fx_fill(uint8_t *buf, size_t len, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		buf[i] = (uint8_t)x;
	}
}

uint64_t fx_commit_one(struct bal_store *s, uint32_t precinct, uint64_t seq, const uint8_t *bytes, size_t len)
{
	uint64_t pos = 0;
	cr_assert_eq(bal_store_wbegin(s), 0);
	int rc = bal_store_append(s, precinct, seq, bytes, len, &pos);
	cr_assert_eq(rc, 0, "append %u/%llu: %s", precinct, (unsigned long long)seq, bal_strerror(rc));
	cr_assert_eq(bal_store_wcommit(s), 0);
	return pos;
}

void fx_journal(struct bal_store *s, uint32_t precinct, uint64_t first, uint64_t last, size_t len)
{
	uint8_t *b = malloc(len ? len : 1);
	cr_assert_not_null(b);
	for (uint64_t seq = first; seq <= last; seq++) {
		uint64_t before = bal_store_position(s);
		fx_fill(b, len, (uint32_t)seq);
		cr_assert_eq(fx_commit_one(s, precinct, seq, b, len), before + 1);
	}
	free(b);
}

void fx_expect_journal(struct bal_store *s, uint64_t pos, uint64_t first_seed, uint64_t count, size_t len)
{
	uint8_t *want = malloc(len + 1), *got = malloc(len + 1);
	cr_assert(want && got);
	for (uint64_t i = 0; i < count; i++) {
		fx_fill(want, len, (uint32_t)(first_seed + i));
		long n = bal_store_journal_get(s, pos + i, got, len + 1);
		cr_assert_eq(n, (long)len, "position %llu: %ld", (unsigned long long)(pos + i), n);
		cr_assert_arr_eq(got, want, len, "position %llu", (unsigned long long)(pos + i));
	}
	free(want);
	free(got);
}

void fx_commit_slice(struct bal_store *s, unsigned k, const void *blob, size_t len)
{
	cr_assert_eq(bal_store_wbegin(s), 0);
	cr_assert_eq(bal_store_put_slice(s, k, blob, len), 0);
	cr_assert_eq(bal_store_wcommit(s), 0);
}

static void raw_open(MDB_env **env, MDB_txn **txn, MDB_dbi *dbi, const char *name, unsigned flags)
{
	cr_assert_eq(mdb_env_create(env), 0);
	cr_assert_eq(mdb_env_set_maxdbs(*env, 8), 0);
	cr_assert_eq(mdb_env_open(*env, fx_dir, 0, 0600), 0);
	cr_assert_eq(mdb_txn_begin(*env, NULL, flags, txn), 0);
	cr_assert_eq(mdb_dbi_open(*txn, name, 0, dbi), 0, "table %s", name);
}

void fx_damage(const char *name, uint64_t key, size_t offset)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	uint8_t k[8];
	MDB_val mk = {8, k}, mv;
	raw_open(&env, &txn, &dbi, name, 0);
	bal__put_be64(k, key);
	cr_assert_eq(mdb_get(txn, dbi, &mk, &mv), 0, "%s key %llu", name, (unsigned long long)key);
	cr_assert_lt(offset, mv.mv_size);
	uint8_t *copy = malloc(mv.mv_size);
	cr_assert_not_null(copy);
	memcpy(copy, mv.mv_data, mv.mv_size);
	copy[offset] ^= 0xff;
	mv.mv_data = copy;
	cr_assert_eq(mdb_put(txn, dbi, &mk, &mv, 0), 0);
	cr_assert_eq(mdb_txn_commit(txn), 0);
	free(copy);
	mdb_env_close(env);
}

void fx_delete(const char *name, uint64_t key)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	uint8_t k[8];
	MDB_val mk = {8, k};
	raw_open(&env, &txn, &dbi, name, 0);
	bal__put_be64(k, key);
	cr_assert_eq(mdb_del(txn, dbi, &mk, NULL), 0, "%s key %llu", name, (unsigned long long)key);
	cr_assert_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

size_t fx_entries(const char *name)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_stat st;
	raw_open(&env, &txn, &dbi, name, MDB_RDONLY);
	cr_assert_eq(mdb_stat(txn, dbi, &st), 0);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	return st.ms_entries;
}

void fx_put(const char *name, uint64_t key, const void *val, size_t len)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	uint8_t k[8];
	MDB_val mk = {8, k}, mv = {len, (void *)val};
	raw_open(&env, &txn, &dbi, name, 0);
	bal__put_be64(k, key);
	cr_assert_eq(mdb_put(txn, dbi, &mk, &mv, 0), 0, "%s key %llu", name, (unsigned long long)key);
	cr_assert_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

void fx_truncate(const char *name, uint64_t from)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_cursor *cur;
	uint8_t k[8];
	MDB_val mk = {8, k}, mv;
	raw_open(&env, &txn, &dbi, name, 0);
	cr_assert_eq(mdb_cursor_open(txn, dbi, &cur), 0);
	int rc;
	/* Sought again after each delete: a cursor's position after one is not worth relying on here. */
	for (;;) {
		bal__put_be64(k, from);
		mk = (MDB_val){8, k};
		if ((rc = mdb_cursor_get(cur, &mk, &mv, MDB_SET_RANGE)) != 0)
			break;
		cr_assert_eq(mdb_cursor_del(cur, 0), 0);
	}
	cr_assert_eq(rc, MDB_NOTFOUND);
	mdb_cursor_close(cur);
	cr_assert_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

void fx_drop(const char *name)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	raw_open(&env, &txn, &dbi, name, 0);
	cr_assert_eq(mdb_drop(txn, dbi, 1), 0, "table %s", name);
	cr_assert_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}
