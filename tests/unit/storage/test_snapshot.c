/*
 * storage/snapshot.c: put/load/replace of the counter snapshot and its
 * validation (slot count, checksum).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "fixture.h"

TestSuite(storage_snapshot, .init = fx_setup, .fini = fx_teardown);

enum { N = 1000 };

/* Journals `count` entries and snapshots `ctr` at `at`, in one txn. */
static void journal_and_snapshot(struct bal_store *s, uint32_t count, uint64_t at, const uint64_t *ctr, size_t n)
{
	uint64_t pos, first = bal_store_position(s);
	cr_assert_eq(bal_store_wbegin(s), 0);
	for (uint32_t i = 1; i <= count; i++)
		cr_assert_eq(bal_store_append(s, 1, first + i, (const uint8_t *)&i, sizeof(i), &pos), 0);
	cr_assert_eq(bal_store_put_snapshot(s, at, ctr, n), 0);
	cr_assert_eq(bal_store_wcommit(s), 0);
}

Test(storage_snapshot, none_is_enoent_and_leaves_ctr)
{
	struct bal_store *s = fx_open_default();
	uint64_t ctr[3] = {7, 8, 9}, pos = 42;
	cr_assert_eq(bal_store_snapshot_load(s, &pos, ctr, 3), -ENOENT);
	cr_assert_eq(ctr[0], 7);
	cr_assert_eq(ctr[2], 9);
	cr_assert_eq(pos, 42);
	bal_store_close(s);
}

Test(storage_snapshot, put_load_roundtrip_and_replace)
{
	static uint64_t a[N], b[N], got[N];
	for (size_t i = 0; i < N; i++) {
		a[i] = i * 3 + 1;
		b[i] = UINT64_MAX - i;
	}
	struct bal_store *s = fx_open_default();
	uint64_t pos = 0;
	journal_and_snapshot(s, 5, 5, a, N);
	cr_assert_eq(bal_store_snapshot_load(s, &pos, got, N), 0);
	cr_assert_eq(pos, 5);
	cr_assert_arr_eq(got, a, sizeof(a));

	journal_and_snapshot(s, 3, 7, b, N);
	cr_assert_eq(bal_store_snapshot_load(s, &pos, got, N), 0);
	cr_assert_eq(pos, 7);
	cr_assert_arr_eq(got, b, sizeof(b));
	struct bal_store_info info;
	cr_assert_eq(bal_store_info(s, &info), 0);
	cr_assert_eq(info.snapshot_position, 7);
	bal_store_close(s);

	cr_assert_eq(fx_entries("snapshots"), 1, "older snapshots are deleted");
	s = fx_open_default();
	cr_assert_eq(bal_store_snapshot_load(s, &pos, got, N), 0, "persists");
	cr_assert_eq(pos, 7);
	cr_assert_arr_eq(got, b, sizeof(b));
	bal_store_close(s);
}

Test(storage_snapshot, wrong_slot_count_is_corrupt)
{
	uint64_t ctr[4] = {1, 2, 3, 4}, got[5] = {0}, pos = 0;
	struct bal_store *s = fx_open_default();
	journal_and_snapshot(s, 1, 1, ctr, 4);
	cr_assert_eq(bal_store_snapshot_load(s, &pos, got, 5), BAL_ECORRUPT);
	cr_assert_eq(bal_store_snapshot_load(s, &pos, got, 3), BAL_ECORRUPT);
	cr_assert_eq(got[0], 0, "nothing copied");
	cr_assert_eq(pos, 0);
	bal_store_close(s);
}

Test(storage_snapshot, damaged_record_is_corrupt)
{
	static uint64_t ctr[N], got[N];
	uint64_t pos = 0;
	for (size_t i = 0; i < N; i++)
		ctr[i] = i;
	struct bal_store *s = fx_open_default();
	journal_and_snapshot(s, 2, 2, ctr, N);
	bal_store_close(s);
	fx_damage("snapshots", 2, 24 + 8 * 500 + 3); /* one counter byte */

	s = fx_open_default();
	memset(got, 0, sizeof(got));
	cr_assert_eq(bal_store_snapshot_load(s, &pos, got, N), BAL_ECORRUPT);
	cr_assert_eq(got[1], 0, "nothing copied");
	bal_store_close(s);
}

Test(storage_snapshot, beyond_journal_is_refused_and_txn_dead)
{
	uint64_t ctr[2] = {1, 2}, pos;
	struct bal_store *s = fx_open_default();
	cr_assert_eq(bal_store_wbegin(s), 0);
	cr_assert_eq(bal_store_append(s, 1, 1, (const uint8_t *)ctr, sizeof(ctr), &pos), 0);
	cr_assert_eq(bal_store_put_snapshot(s, 2, ctr, 2), -EINVAL);
	cr_assert_eq(bal_store_append(s, 1, 2, (const uint8_t *)ctr, sizeof(ctr), &pos), -EINVAL,
		     "dead txn refuses more work");
	cr_assert_eq(bal_store_wcommit(s), -EINVAL);
	cr_assert_eq(bal_store_position(s), 0, "nothing committed");
	cr_assert_eq(bal_store_wbegin(s), 0, "the next txn works");
	bal_store_wabort(s);
	bal_store_close(s);
}

Test(storage_snapshot, abort_discards_snapshot)
{
	uint64_t a[2] = {1, 2}, b[2] = {3, 4}, got[2], pos;
	struct bal_store *s = fx_open_default();
	journal_and_snapshot(s, 1, 1, a, 2);
	cr_assert_eq(bal_store_wbegin(s), 0);
	cr_assert_eq(bal_store_put_snapshot(s, 1, b, 2), 0);
	bal_store_wabort(s);
	cr_assert_eq(bal_store_snapshot_load(s, &pos, got, 2), 0);
	cr_assert_arr_eq(got, a, sizeof(a));
	bal_store_close(s);
}
