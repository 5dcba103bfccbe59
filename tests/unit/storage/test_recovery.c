/* SPDX-License-Identifier: Apache-2.0 */
/*
 * storage/recovery.c: every slice's snapshot + replay of exactly the journal
 * entries each slice does not cover, and the refusal to guess around a
 * damaged record, a misfitting slice or a batch that does not replay.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <string.h>

#include "tests/unit/storage/fixture.h"

TestSuite(storage_recovery, .init = fx_setup, .fini = fx_teardown);

enum { NP = 6 }; /* precincts of these stores: six slices of one precinct */

/* The model tally: each entry is one u64 added to ctr[precinct]; a slice's
 * snapshot is its precincts' values. */
struct fold {
	uint64_t ctr[NP];
	size_t calls, slices;
	bool loaded;
	uint64_t last;
	uint64_t fail_at; /* 0 = never */
	size_t slice_len; /* the blob size a slice must have: 8 per precinct */
};

static int on_slice(void *arg, unsigned k, uint32_t first, uint32_t end, const uint8_t *blob, size_t len)
{
	struct fold *f = arg;
	cr_assert_not(f->loaded);
	cr_assert_eq(first, k);
	cr_assert_eq(end, k + 1);
	if (len != 8 * (end - first))
		return BAL_EINVALID;
	memcpy(&f->ctr[first], blob, len);
	f->slices++;
	return 0;
}

static int on_loaded(void *arg)
{
	struct fold *f = arg;
	f->loaded = true;
	return 0;
}

static int on_entry(void *arg, uint64_t position, uint32_t precinct, const uint8_t *bytes, size_t len)
{
	struct fold *f = arg;
	uint64_t v;
	cr_assert(f->loaded, "entries come after every slice");
	cr_assert_gt(position, f->last, "in journal order");
	if (position == f->fail_at)
		return BAL_EINVALID;
	cr_assert_eq(len, sizeof(v));
	cr_assert_lt(precinct, NP);
	memcpy(&v, bytes, sizeof(v));
	f->last = position;
	f->calls++;
	f->ctr[precinct] += v;
	return 0;
}

static const struct bal_recovery_ops ops = {.slice = on_slice, .loaded = on_loaded, .entry = on_entry};

static struct bal_store *open_np(void)
{
	return fx_open_precincts(0x11, 8 * MiB, NP);
}

/* Entry i (1-based) is precinct (i - 1) % NP, seq (i - 1) / NP + 1, value i * 10. */
static void journal_values(struct bal_store *s, uint64_t first, uint64_t last)
{
	for (uint64_t i = first; i <= last; i++) {
		uint64_t v = i * 10;
		cr_assert_eq(
		        fx_commit_one(s, (uint32_t)((i - 1) % NP), (i - 1) / NP + 1, (const uint8_t *)&v, sizeof(v)),
		        i);
	}
}

/* Precinct p's total over entries 1..upto. */
static uint64_t total(uint32_t p, uint64_t upto)
{
	uint64_t t = 0;
	for (uint64_t i = p + 1; i <= upto; i += NP)
		t += i * 10;
	return t;
}

/* Snapshots slice k as of the committed position. */
static void snapshot_slice(struct bal_store *s, unsigned k)
{
	uint64_t v = total(k, bal_store_position(s));
	fx_commit_slice(s, k, &v, sizeof(v));
}

/* Recovers and checks the totals of 1..last; `replayed` entries must come through. */
static void expect_recovered(struct bal_store *s, uint64_t last, uint64_t oldest, uint64_t replayed, size_t slices)
{
	struct fold f;
	memset(&f, 0, sizeof(f));
	for (int p = 0; p < NP; p++)
		f.ctr[p] = 0;
	struct bal_recovery_report rep;
	char why[256] = "";
	int rc = bal_store_recover(s, &ops, &f, &rep, why, sizeof(why));
	cr_assert_eq(rc, 0, "%s", why);
	for (uint32_t p = 0; p < NP; p++)
		cr_assert_eq(f.ctr[p], total(p, last), "precinct %u", p);
	cr_assert(f.loaded);
	cr_assert_eq(f.slices, slices);
	cr_assert_eq(f.calls, replayed, "only what the slices do not hold is replayed");
	cr_assert_eq(rep.snapshot_position, oldest);
	cr_assert_eq(rep.replayed, replayed);
	cr_assert_eq(rep.scanned, last - oldest);
	cr_assert_eq(rep.position, last);
	cr_assert_geq(rep.ms, 0);
}

Test(storage_recovery, without_snapshot_replays_everything)
{
	struct bal_store *s = open_np();
	journal_values(s, 1, 20);
	bal_store_close(s);
	s = open_np();
	expect_recovered(s, 20, 0, 20, 0);
	bal_store_close(s);
}

Test(storage_recovery, empty_store_recovers_to_zero)
{
	struct bal_store *s = open_np();
	expect_recovered(s, 0, 0, 0, 0);
	bal_store_close(s);
}

/* Slices taken at positions 6, 12, 12, 18, 24, 30 over 36 entries: each
 * precinct replays only its entries after its own slice. */
Test(storage_recovery, slices_at_different_positions_replay_only_what_they_miss)
{
	struct bal_store *s = open_np();
	const uint64_t at[NP] = {6, 12, 12, 18, 24, 30};
	uint64_t replayed = 0;
	for (uint64_t i = 1; i <= 36; i++) {
		journal_values(s, i, i);
		for (unsigned k = 0; k < NP; k++)
			if (at[k] == i)
				snapshot_slice(s, k);
	}
	for (uint64_t i = 1; i <= 36; i++)
		replayed += i > at[(i - 1) % NP];
	bal_store_close(s);
	s = open_np();
	expect_recovered(s, 36, 6, replayed, NP);
	bal_store_close(s);
}

Test(storage_recovery, a_slice_written_with_the_appends_of_its_txn_covers_them)
{
	struct bal_store *s = open_np();
	journal_values(s, 1, 3);
	uint64_t pos, v = 40;
	cr_assert_eq(bal_store_wbegin(s), 0);
	cr_assert_eq(bal_store_append(s, 3, 1, (const uint8_t *)&v, sizeof(v), &pos), 0);
	cr_assert_eq(pos, 4);
	uint64_t snap = total(3, 4);
	cr_assert_eq(bal_store_put_slice(s, 3, &snap, sizeof(snap)), 0);
	cr_assert_eq(bal_store_wcommit(s), 0);
	journal_values(s, 5, 9);
	bal_store_close(s);
	s = open_np();
	/* Precinct 3 misses only entry 10 (none here): 9 entries, 4 of them in precinct 3's slice or before. */
	expect_recovered(s, 9, 0, 8, 1);
	bal_store_close(s);
}

/*
 * Every way recovery must stop instead of guessing: the scenario is built,
 * optionally damaged through LMDB, reopened, and recovery must fail with
 * BAL_ECORRUPT, a message naming the place, and no entry applied past it.
 */
enum how { INTACT, FLIP_BYTE, DELETE_KEY };

struct damage_case {
	uint64_t journal;  /* entries 1..journal */
	uint64_t slice_at; /* slice 0 (precinct 0) snapshotted at this position; 0 = no slice */
	size_t slice_len;  /* its blob size (8 fits) */
	enum how how;
	char table[16]; /* arrays, not pointers: the parameters are copied to the test process */
	uint64_t key;
	size_t offset;    /* FLIP_BYTE: byte within the stored value */
	uint64_t fail_at; /* the entry callback refuses this position; 0 = never */
	size_t calls;     /* entries applied before the stop */
	char needle[80];
};

ParameterizedTestParameters(storage_recovery, stops_at_damage)
{
	static struct damage_case cases[] = {
	        {.journal = 5, .fail_at = 4, .calls = 3, .needle = "journal position 4 does not replay"},
	        {.journal = 5,
	         .how = FLIP_BYTE,
	         .table = "journal",
	         .key = 3,
	         .offset = 26,
	         .calls = 2,
	         .needle = "journal position 3: checksum"},
	        {.journal = 5,
	         .how = DELETE_KEY,
	         .table = "journal",
	         .key = 3,
	         .calls = 2,
	         .needle = "journal position 4 follows 2"},
	        {.journal = 3,
	         .slice_at = 3,
	         .slice_len = 8,
	         .how = DELETE_KEY,
	         .table = "journal",
	         .key = 3,
	         .needle = "snapshot slice 0 covers position 3, the journal ends at 2"},
	        {.journal = 2,
	         .slice_at = 2,
	         .slice_len = 8,
	         .how = FLIP_BYTE,
	         .table = "snapshots",
	         .key = 0,
	         .offset = 28,
	         .needle = "snapshot slice 0: checksum"},
	        {.journal = 2,
	         .slice_at = 2,
	         .slice_len = 16,
	         .needle = "snapshot slice 0 (precincts 0..0, position 2, 16 bytes) does not fit"},
	        {.journal = 2,
	         .slice_at = 2,
	         .slice_len = 8,
	         .how = FLIP_BYTE,
	         .table = "snapshots",
	         .key = 0,
	         .offset = 1,
	         .needle = "snapshot slice 0: damaged record header"},
	};
	return cr_make_param_array(struct damage_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct damage_case *c, storage_recovery, stops_at_damage, .init = fx_setup, .fini = fx_teardown)
{
	struct bal_store *s = open_np();
	journal_values(s, 1, c->journal);
	if (c->slice_at) {
		uint64_t blob[2] = {total(0, c->slice_at), 0};
		fx_commit_slice(s, 0, blob, c->slice_len);
	}
	bal_store_close(s);
	if (c->how == FLIP_BYTE)
		fx_damage(c->table, c->key, c->offset);
	else if (c->how == DELETE_KEY)
		fx_delete(c->table, c->key);

	struct bal_store_opts o = {.dir = fx_dir, .map_size = 8 * MiB, .nprecincts = NP};
	uint32_t ids[NP] = {0, 1, 2, 3, 4, 5};
	o.precinct_ids = ids;
	memset(o.hash, 0x11, sizeof(o.hash));
	char why[256] = "";
	int rc = bal_store_open(&o, &s, why, sizeof(why));
	if (rc != 0) {
		/* Damage the open already stumbles on (it indexes the journal tail) is reported there. */
		cr_assert_eq(rc, BAL_ECORRUPT, "open: %s", why);
		cr_assert_not_null(strstr(why, c->needle), "want \"%s\" in: %s", c->needle, why);
		return;
	}
	struct fold f;
	memset(&f, 0, sizeof(f));
	f.fail_at = c->fail_at;
	cr_assert_eq(bal_store_recover(s, &ops, &f, NULL, why, sizeof(why)), BAL_ECORRUPT, "why: %s", why);
	cr_assert_not_null(strstr(why, c->needle), "want \"%s\" in: %s", c->needle, why);
	cr_assert_eq(f.calls, c->calls, "applied %zu entries before the stop", f.calls);
	bal_store_close(s);
}

Test(storage_recovery, a_record_naming_an_unknown_precinct_is_corrupt)
{
	/* Journaled with precincts 0..5, reopened as if precinct 5 were 6. */
	struct bal_store *s = open_np();
	journal_values(s, 1, 6);
	bal_store_close(s);
	uint32_t ids[NP] = {0, 1, 2, 3, 4, 6};
	struct bal_store_opts o = {.dir = fx_dir, .map_size = 8 * MiB, .precinct_ids = ids, .nprecincts = NP};
	memset(o.hash, 0x11, sizeof(o.hash));
	char why[256] = "";
	cr_assert_eq(bal_store_open(&o, &s, why, sizeof(why)), BAL_ECORRUPT, "%s", why);
	cr_assert_not_null(strstr(why, "journal position 6 names precinct 5, which is not in the definition"), "%s",
	                   why);
	/* And fewer precincts than the pinned slices. */
	o.nprecincts = 4;
	cr_assert_eq(bal_store_open(&o, &s, why, sizeof(why)), BAL_ECORRUPT, "%s", why);
	cr_assert_not_null(strstr(why, "6 snapshot slices for 4 precincts"), "%s", why);
}
