/*
 * storage/recovery.c: newest snapshot + replay of the journal tail, and the
 * refusal to guess around a damaged record or a batch that does not replay.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
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

/* Recovers into a dirty array and checks it equals the fold of 1..last, with `snapshot` as the base. */
static void expect_recovered(struct bal_store *s, uint64_t last, uint64_t snapshot)
{
	uint64_t ctr[2] = {999, 999};
	struct fold f = {.ctr = ctr};
	struct bal_recovery_report rep;
	char why[256] = "";
	int rc = bal_store_recover(s, ctr, 2, apply, &f, &rep, why, sizeof(why));
	cr_assert_eq(rc, 0, "%s", why);
	cr_assert_eq(ctr[0], 5 * last * (last + 1), "10 + 20 + .. + 10 * %llu", (unsigned long long)last);
	cr_assert_eq(ctr[1], last);
	cr_assert_eq(f.calls, last - snapshot, "only the tail is replayed");
	if (f.calls) {
		cr_assert_eq(f.first, snapshot + 1);
		cr_assert_eq(f.last, last);
	}
	cr_assert_eq(rep.snapshot_position, snapshot);
	cr_assert_eq(rep.replayed, last - snapshot);
	cr_assert_eq(rep.position, last);
	cr_assert_geq(rep.ms, 0);
}

Test(storage_recovery, without_snapshot_replays_everything)
{
	struct bal_store *s = fx_open_default();
	journal_values(s, 1, 6);
	bal_store_close(s);
	s = fx_open_default();
	expect_recovered(s, 6, 0);
	bal_store_close(s);
}

Test(storage_recovery, empty_store_recovers_to_zero)
{
	struct bal_store *s = fx_open_default();
	expect_recovered(s, 0, 0);
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
	expect_recovered(s, 7, 3);
	bal_store_close(s);
}

/*
 * Every way recovery must stop instead of guessing: the scenario is built,
 * optionally damaged through LMDB, reopened, and recovery must fail with
 * BAL_ECORRUPT, a message naming the place, and no entry applied past it.
 */
enum how { INTACT, FLIP_BYTE, DELETE_KEY };

struct damage_case {
	uint64_t journal;  /* entries 1..journal, value seq * 10 */
	uint64_t snapshot; /* snapshot of the fold at this position; 0 = none */
	enum how how;
	char table[16];    /* arrays, not pointers: the parameters are copied to the test process */
	uint64_t key;
	size_t offset;     /* FLIP_BYTE: byte within the stored value */
	size_t n;          /* slots recovery asks for */
	uint64_t fail_at;  /* apply refuses this position; 0 = never */
	size_t calls;      /* apply calls that succeed before the stop */
	char needle[64];
};

ParameterizedTestParameters(storage_recovery, stops_at_damage)
{
	static struct damage_case cases[] = {
		{.journal = 5, .n = 2, .fail_at = 4, .calls = 3, .needle = "journal position 4 does not replay"},
		{.journal = 5, .how = FLIP_BYTE, .table = "journal", .key = 3, .offset = 26, .n = 2, .calls = 2,
		 .needle = "journal position 3: checksum"},
		{.journal = 5, .how = DELETE_KEY, .table = "journal", .key = 3, .n = 2, .calls = 2,
		 .needle = "journal position 4 follows 2"},
		{.journal = 3, .snapshot = 3, .how = DELETE_KEY, .table = "journal", .key = 3, .n = 2,
		 .needle = "journal ends at 2"},
		{.journal = 2, .snapshot = 2, .how = FLIP_BYTE, .table = "snapshots", .key = 2, .offset = 30, .n = 2,
		 .needle = "snapshot at position 2: checksum"},
		{.journal = 2, .snapshot = 2, .n = 3, .needle = "snapshot at position 2 has 2 slots"},
	};
	return cr_make_param_array(struct damage_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct damage_case *c, storage_recovery, stops_at_damage, .init = fx_setup, .fini = fx_teardown)
{
	struct bal_store *s = fx_open_default();
	journal_values(s, 1, c->journal);
	if (c->snapshot) {
		uint64_t snap[2] = {5 * c->snapshot * (c->snapshot + 1), c->snapshot};
		fx_commit_snapshot(s, c->snapshot, snap, 2);
	}
	bal_store_close(s);
	if (c->how == FLIP_BYTE)
		fx_damage(c->table, c->key, c->offset);
	else if (c->how == DELETE_KEY)
		fx_delete(c->table, c->key);

	s = fx_open_default();
	uint64_t ctr[3];
	struct fold f = {.ctr = ctr, .fail_at = c->fail_at};
	char why[256] = "";
	cr_assert_eq(bal_store_recover(s, ctr, c->n, apply, &f, NULL, why, sizeof(why)), BAL_ECORRUPT, "why: %s", why);
	cr_assert_not_null(strstr(why, c->needle), "want \"%s\" in: %s", c->needle, why);
	cr_assert_eq(f.calls, c->calls, "applied %zu entries before the stop", f.calls);
	bal_store_close(s);
}
