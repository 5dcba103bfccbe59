/* SPDX-License-Identifier: Apache-2.0 */
/*
 * storage/snapshot.c and tail.c: how precincts are cut into slices, a
 * slice's snapshot record (position, replace, abort, bounds), and the dedup
 * keys that move from the in-memory tail into the table with it — across
 * commits, aborts and reopens.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "tests/unit/storage/fixture.h"

TestSuite(storage_snapshot, .init = fx_setup, .fini = fx_teardown);

Test(storage_snapshot, slices_cut_the_precincts_into_even_ranges)
{
	const uint32_t counts[] = {1, 3, 63, 64, 65, 1000, FX_PRECINCTS};
	for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
		uint32_t n = counts[c];
		fx_teardown();
		fx_setup();
		struct bal_store *s = fx_open_precincts(0x11, 8 * MiB, n);
		unsigned ns = bal_store_slices(s);
		cr_assert_eq(ns, n < 64 ? n : 64, "%u precincts", n);
		uint32_t next = 0, lo = UINT32_MAX, hi = 0;
		for (unsigned k = 0; k < ns; k++) {
			uint32_t first, end;
			bal_store_slice_range(s, k, &first, &end);
			cr_assert_eq(first, next, "slice %u of %u precincts starts where the last ended", k, n);
			cr_assert_gt(end, first, "slice %u is not empty", k);
			lo = end - first < lo ? end - first : lo;
			hi = end - first > hi ? end - first : hi;
			next = end;
			cr_assert_eq(bal_store_slice_position(s, k), 0);
		}
		cr_assert_eq(next, n, "the slices cover all %u precincts", n);
		cr_assert_leq(hi - lo, 1, "slices differ by one precinct at most");
		bal_store_close(s);
	}
}

Test(storage_snapshot, slice_position_is_the_txns_last_append_and_replaces)
{
	struct bal_store *s = fx_open_precincts(0x11, 8 * MiB, 8);
	uint64_t pos;
	const char a[] = "first", b[] = "second";
	cr_assert_eq(bal_store_slices(s), 8);
	fx_journal(s, 1, 1, 3, 10);
	cr_assert_eq(bal_store_wbegin(s), 0);
	cr_assert_eq(bal_store_append(s, 2, 1, (const uint8_t *)"x", 1, &pos), 0);
	cr_assert_eq(bal_store_put_slice(s, 2, a, sizeof(a)), 0);
	cr_assert_eq(bal_store_slice_position(s, 2), 0, "not before the commit");
	cr_assert_eq(bal_store_wcommit(s), 0);
	cr_assert_eq(bal_store_slice_position(s, 2), 4);
	fx_journal(s, 1, 4, 6, 10);
	fx_commit_slice(s, 2, b, sizeof(b));
	cr_assert_eq(bal_store_slice_position(s, 2), 7);
	fx_commit_slice(s, 5, a, sizeof(a));
	bal_store_close(s);
	cr_assert_eq(fx_entries("snapshots"), 2, "one record per slice written");

	s = fx_open_precincts(0x11, 8 * MiB, 8);
	cr_assert_eq(bal_store_slice_position(s, 2), 7, "persists");
	cr_assert_eq(bal_store_slice_position(s, 5), 7);
	cr_assert_eq(bal_store_slice_position(s, 0), 0);
	bal_store_close(s);
}

Test(storage_snapshot, abort_discards_the_slice_and_out_of_range_is_refused)
{
	struct bal_store *s = fx_open_precincts(0x11, 8 * MiB, 4);
	uint64_t pos;
	fx_journal(s, 0, 1, 2, 10);
	fx_commit_slice(s, 0, "a", 1);
	cr_assert_eq(bal_store_wbegin(s), 0);
	cr_assert_eq(bal_store_append(s, 0, 3, (const uint8_t *)"y", 1, &pos), 0);
	cr_assert_eq(bal_store_put_slice(s, 0, "b", 1), 0);
	cr_assert_eq(bal_store_put_slice(s, 4, "c", 1), -EINVAL);
	cr_assert_eq(bal_store_append(s, 0, 4, (const uint8_t *)"z", 1, &pos), 0, "the txn lives on");
	bal_store_wabort(s);
	cr_assert_eq(bal_store_slice_position(s, 0), 2);
	cr_assert_eq(bal_store_position(s), 2);
	/* The aborted txn had merged precinct 0's tail: the committed state is back, and seq 3 is free again. */
	cr_assert_eq(fx_commit_one(s, 0, 3, (const uint8_t *)"w", 1), 3);
	cr_assert_eq(bal_store_wbegin(s), 0);
	cr_assert_eq(bal_store_append(s, 0, 1, NULL, 0, &pos), BAL_ECONFLICT);
	cr_assert_eq(pos, 1);
	bal_store_wabort(s);
	bal_store_close(s);
}

/* Appends seq of precinct p with a payload derived from both. */
static int put(struct bal_store *s, uint32_t p, uint64_t seq, uint64_t *pos)
{
	uint8_t b[12];
	fx_fill(b, sizeof(b), (uint32_t)(p * 1000 + seq));
	return bal_store_append(s, p, seq, b, sizeof(b), pos);
}

static int collect_seq(void *arg, uint64_t seq, uint64_t position)
{
	uint64_t *q = arg;
	q[2 * q[0] + 1] = seq;
	q[2 * q[0] + 2] = position;
	q[0]++;
	return 0;
}

/*
 * Keys merged into the table with their slice, keys still in the tail, and
 * seqs that arrive out of order below a precinct's largest one: duplicates
 * keep their original positions, gaps stay free, before and after a reopen.
 */
Test(storage_snapshot, dedup_across_slice_merges_gaps_and_reopens)
{
	struct bal_store *s = fx_open_precincts(0x11, 8 * MiB, 4);
	uint64_t pos, want[4][12] = {{0}};
	cr_assert_eq(bal_store_slices(s), 4);
	/* Precinct 1: seqs 1..5 and 9 (6..8 missing); precinct 3: 2 and 4. */
	const uint32_t ps[] = {1, 1, 3, 1, 1, 1, 3, 1};
	const uint64_t ss[] = {1, 2, 4, 3, 9, 5, 2, 4};
	cr_assert_eq(bal_store_wbegin(s), 0);
	for (size_t i = 0; i < 8; i++) {
		cr_assert_eq(put(s, ps[i], ss[i], &pos), 0, "%u/%llu", ps[i], (unsigned long long)ss[i]);
		want[ps[i]][ss[i]] = pos;
	}
	cr_assert_eq(bal_store_put_slice(s, 1, "p1", 2), 0, "precinct 1's keys go to the table");
	cr_assert_eq(put(s, 1, 4, &pos), BAL_EDUPLICATE, "found in the table within the same txn");
	cr_assert_eq(pos, want[1][4]);
	cr_assert_eq(bal_store_wcommit(s), 0);

	for (int round = 0; round < 2; round++) {
		cr_assert_eq(bal_store_wbegin(s), 0);
		for (size_t i = 0; i < 8; i++) {
			cr_assert_eq(put(s, ps[i], ss[i], &pos), BAL_EDUPLICATE, "round %d: %u/%llu", round, ps[i],
			             (unsigned long long)ss[i]);
			cr_assert_eq(pos, want[ps[i]][ss[i]]);
		}
		cr_assert_eq(bal_store_append(s, 1, 9, (const uint8_t *)"other", 5, &pos), BAL_ECONFLICT);
		cr_assert_eq(pos, want[1][9]);
		cr_assert_eq(bal_store_append(s, 3, 2, (const uint8_t *)"other", 5, &pos), BAL_ECONFLICT);
		cr_assert_eq(pos, want[3][2]);
		bal_store_wabort(s);
		bal_store_close(s);
		s = fx_open_precincts(0x11, 8 * MiB, 4);
	}
	/* The gaps below the largest seq are not duplicates, in the table's range or the tail's. */
	cr_assert_eq(bal_store_wbegin(s), 0);
	cr_assert_eq(put(s, 1, 7, &pos), 0);
	want[1][7] = pos;
	cr_assert_eq(put(s, 3, 3, &pos), 0);
	want[3][3] = pos;
	cr_assert_eq(put(s, 1, 10, &pos), 0);
	want[1][10] = pos;
	cr_assert_eq(bal_store_wcommit(s), 0);
	/* The reader's view joins the table and the journal after the slice's snapshot. */
	uint64_t q[1 + 2 * 16] = {0};
	cr_assert_eq(bal_store_precinct_scan(s, 1, collect_seq, q), 0);
	const uint64_t seqs1[] = {1, 2, 3, 4, 5, 7, 9, 10};
	cr_assert_eq(q[0], 8);
	for (size_t i = 0; i < 8; i++) {
		cr_assert_eq(q[1 + 2 * i], seqs1[i]);
		cr_assert_eq(q[2 + 2 * i], want[1][seqs1[i]]);
	}
	memset(q, 0, sizeof(q));
	cr_assert_eq(bal_store_precinct_scan(s, 3, collect_seq, q), 0);
	cr_assert_eq(q[0], 3);
	cr_assert_eq(q[1], 2);
	cr_assert_eq(q[3], 3);
	cr_assert_eq(q[5], 4);
	bal_store_close(s);
	cr_assert_eq(fx_entries("dedup"), 6, "precinct 1's six keys of the first txn, nothing else");
}

/* Every precinct's slice merged in one txn, many times: keys land once, nothing is lost. */
Test(storage_snapshot, every_slice_merged_repeatedly_keeps_every_key_once)
{
	enum { NP = 10, ROUNDS = 6, PER = 5 };
	struct bal_store *s = fx_open_precincts(0x11, 8 * MiB, NP);
	uint64_t pos, seq[NP] = {0};
	for (int r = 0; r < ROUNDS; r++) {
		cr_assert_eq(bal_store_wbegin(s), 0);
		for (uint32_t p = 0; p < NP; p++)
			for (int i = 0; i < PER; i++)
				cr_assert_eq(put(s, p, ++seq[p], &pos), 0);
		for (unsigned k = 0; k < bal_store_slices(s); k++)
			if ((k + (unsigned)r) % 3 != 0) /* a different subset each round */
				cr_assert_eq(bal_store_put_slice(s, k, "s", 1), 0);
		cr_assert_eq(bal_store_wcommit(s), 0);
	}
	bal_store_close(s);
	s = fx_open_precincts(0x11, 8 * MiB, NP);
	cr_assert_eq(bal_store_wbegin(s), 0);
	for (uint32_t p = 0; p < NP; p++)
		for (uint64_t q = 1; q <= seq[p]; q++)
			cr_assert_eq(put(s, p, q, &pos), BAL_EDUPLICATE, "%u/%llu", p, (unsigned long long)q);
	bal_store_wabort(s);
	bal_store_close(s);
}
