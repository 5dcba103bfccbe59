/*
 * storage/recovery.c: newest snapshot + replay of the journal tail, and the
 * refusal to guess around a damaged record or a batch that does not replay.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "fixture.h"

TestSuite(storage_recovery, .init = fx_setup, .fini = fx_teardown);

/* The model tally: each entry is one u64 added to ctr[0]; ctr[1] counts entries. */
struct fold {
	uint64_t *ctr;
	size_t calls;
	uint64_t first, last;
	uint64_t fail_at; /* 0 = never */
};

static int apply(void *arg, uint64_t position, const uint8_t *bytes, size_t len)
{
	struct fold *f = arg;
	uint64_t v;
	if (position == f->fail_at)
		return BAL_EINVALID;
	cr_assert_eq(len, sizeof(v));
	memcpy(&v, bytes, sizeof(v));
	if (!f->calls)
		f->first = position;
	f->last = position;
	f->calls++;
	f->ctr[0] += v;
	f->ctr[1]++;
	return 0;
}

/* Journals values first..last (value = seq * 10), one txn each. */
static void journal_values(struct bal_store *s, uint64_t first, uint64_t last)
{
	for (uint64_t i = first; i <= last; i++) {
		uint64_t v = i * 10;
		fx_commit_one(s, 1, i, (const uint8_t *)&v, sizeof(v));
	}
}

Test(storage_recovery, without_snapshot_replays_everything)
{
	struct bal_store *s = fx_open_default();
	journal_values(s, 1, 6);
	bal_store_close(s);

	s = fx_open_default();
	uint64_t ctr[2] = {999, 999};
	struct fold f = {.ctr = ctr};
	struct bal_recovery_report rep;
	char why[256] = "";
	int rc = bal_store_recover(s, ctr, 2, apply, &f, &rep, why, sizeof(why));
	cr_assert_eq(rc, 0, "%s", why);
	cr_assert_eq(ctr[0], 210, "zeroed first, then 10+20+..+60");
	cr_assert_eq(ctr[1], 6);
	cr_assert_eq(f.first, 1);
	cr_assert_eq(f.last, 6);
	cr_assert_eq(rep.snapshot_position, 0);
	cr_assert_eq(rep.replayed, 6);
	cr_assert_eq(rep.position, 6);
	cr_assert_geq(rep.ms, 0);
	bal_store_close(s);
}

Test(storage_recovery, empty_store_recovers_to_zero)
{
	struct bal_store *s = fx_open_default();
	uint64_t ctr[2] = {5, 5};
	struct fold f = {.ctr = ctr};
	struct bal_recovery_report rep;
	cr_assert_eq(bal_store_recover(s, ctr, 2, apply, &f, &rep, NULL, 0), 0);
	cr_assert_eq(ctr[0], 0);
	cr_assert_eq(f.calls, 0);
	cr_assert_eq(rep.position, 0);
	cr_assert_eq(rep.replayed, 0);
	bal_store_close(s);
}

Test(storage_recovery, snapshot_then_tail_only)
{
	struct bal_store *s = fx_open_default();
	journal_values(s, 1, 3);
	uint64_t snap[2] = {60, 3}, pos; /* the fold of 1..3 */
	cr_assert_eq(bal_store_wbegin(s), 0);
	uint64_t v = 40;
	cr_assert_eq(bal_store_append(s, 1, 4, (const uint8_t *)&v, sizeof(v), &pos), 0);
	cr_assert_eq(bal_store_put_snapshot(s, 3, snap, 2), 0, "a snapshot may trail the txn's appends");
	cr_assert_eq(bal_store_wcommit(s), 0);
	journal_values(s, 5, 7);
	bal_store_close(s);

	s = fx_open_default();
	uint64_t ctr[2] = {0, 0};
	struct fold f = {.ctr = ctr};
	struct bal_recovery_report rep;
	char why[256] = "";
	cr_assert_eq(bal_store_recover(s, ctr, 2, apply, &f, &rep, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(f.calls, 4);
	cr_assert_eq(f.first, 4);
	cr_assert_eq(f.last, 7);
	cr_assert_eq(ctr[0], 280);
	cr_assert_eq(ctr[1], 7);
	cr_assert_eq(rep.snapshot_position, 3);
	cr_assert_eq(rep.replayed, 4);
	cr_assert_eq(rep.position, 7);
	bal_store_close(s);
}

Test(storage_recovery, callback_error_is_corrupt_naming_position)
{
	struct bal_store *s = fx_open_default();
	journal_values(s, 1, 5);
	uint64_t ctr[2];
	struct fold f = {.ctr = ctr, .fail_at = 4};
	char why[256] = "";
	cr_assert_eq(bal_store_recover(s, ctr, 2, apply, &f, NULL, why, sizeof(why)), BAL_ECORRUPT);
	cr_assert_eq(f.calls, 3);
	cr_assert_not_null(strstr(why, "position 4"), "why: %s", why);
	cr_assert_not_null(strstr(why, bal_strerror(BAL_EINVALID)), "why: %s", why);
	bal_store_close(s);
}

Test(storage_recovery, damaged_record_is_corrupt_naming_position)
{
	struct bal_store *s = fx_open_default();
	journal_values(s, 1, 5);
	bal_store_close(s);
	fx_damage("journal", 3, 24 + 2); /* a payload byte of position 3 */

	s = fx_open_default();
	uint64_t ctr[2];
	struct fold f = {.ctr = ctr};
	char why[256] = "";
	cr_assert_eq(bal_store_recover(s, ctr, 2, apply, &f, NULL, why, sizeof(why)), BAL_ECORRUPT);
	cr_assert_eq(f.calls, 2, "stops at the damage, nothing skipped");
	cr_assert_not_null(strstr(why, "position 3"), "why: %s", why);
	bal_store_close(s);
}

Test(storage_recovery, missing_record_is_corrupt_naming_the_gap)
{
	struct bal_store *s = fx_open_default();
	journal_values(s, 1, 5);
	bal_store_close(s);
	fx_delete("journal", 3);

	s = fx_open_default();
	uint64_t ctr[2];
	struct fold f = {.ctr = ctr};
	char why[256] = "";
	cr_assert_eq(bal_store_recover(s, ctr, 2, apply, &f, NULL, why, sizeof(why)), BAL_ECORRUPT);
	cr_assert_eq(f.calls, 2);
	cr_assert_not_null(strstr(why, "position 4 follows 2"), "why: %s", why);
	bal_store_close(s);
}

Test(storage_recovery, snapshot_beyond_journal_end_is_corrupt)
{
	struct bal_store *s = fx_open_default();
	journal_values(s, 1, 3);
	uint64_t snap[2] = {60, 3};
	cr_assert_eq(bal_store_wbegin(s), 0);
	cr_assert_eq(bal_store_put_snapshot(s, 3, snap, 2), 0);
	cr_assert_eq(bal_store_wcommit(s), 0);
	bal_store_close(s);
	fx_delete("journal", 3); /* the tail the snapshot covers is gone */

	s = fx_open_default();
	cr_assert_eq(bal_store_position(s), 2);
	uint64_t ctr[2];
	struct fold f = {.ctr = ctr};
	char why[256] = "";
	cr_assert_eq(bal_store_recover(s, ctr, 2, apply, &f, NULL, why, sizeof(why)), BAL_ECORRUPT);
	cr_assert_not_null(strstr(why, "journal ends at 2"), "why: %s", why);
	bal_store_close(s);
}

Test(storage_recovery, damaged_snapshot_is_corrupt)
{
	struct bal_store *s = fx_open_default();
	journal_values(s, 1, 2);
	uint64_t snap[2] = {30, 2};
	cr_assert_eq(bal_store_wbegin(s), 0);
	cr_assert_eq(bal_store_put_snapshot(s, 2, snap, 2), 0);
	cr_assert_eq(bal_store_wcommit(s), 0);
	bal_store_close(s);
	fx_damage("snapshots", 2, 30);

	s = fx_open_default();
	uint64_t ctr[2];
	struct fold f = {.ctr = ctr};
	char why[256] = "";
	cr_assert_eq(bal_store_recover(s, ctr, 2, apply, &f, NULL, why, sizeof(why)), BAL_ECORRUPT);
	cr_assert_eq(f.calls, 0);
	cr_assert_not_null(strstr(why, "snapshot at position 2"), "why: %s", why);
	cr_assert_eq(bal_store_recover(s, ctr, 3, apply, &f, NULL, why, sizeof(why)), BAL_ECORRUPT);
	cr_assert_not_null(strstr(why, "slots"), "why: %s", why);
	bal_store_close(s);
}
