/* SPDX-License-Identifier: Apache-2.0 */
/*
 * storage/journal.c: appends, exactly-once dedup on (precinct, seq), conflict
 * recording, aborts, and the journal, precinct and conflict scans.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "tests/unit/storage/fixture.h"

TestSuite(storage_journal, .init = fx_setup, .fini = fx_teardown);

static uint64_t conflicts_recorded(struct bal_store *s)
{
	struct bal_store_info info;
	cr_assert_eq(bal_store_info(s, &info), 0);
	return info.conflicts;
}

struct entries {
	size_t n;
	uint64_t pos[64];
	size_t len[64];
	uint8_t bytes[64][256];
	size_t stop_at; /* 0 = never stop */
};

static int collect(void *arg, uint64_t position, const uint8_t *bytes, size_t len)
{
	struct entries *e = arg;
	cr_assert_lt(e->n, 64);
	cr_assert_leq(len, 256);
	e->pos[e->n] = position;
	e->len[e->n] = len;
	memcpy(e->bytes[e->n], bytes, len);
	e->n++;
	return e->stop_at && e->n == e->stop_at ? 77 : 0;
}

Test(storage_journal, positions_are_monotonic_and_bytes_roundtrip)
{
	struct bal_store *s = fx_open_default();
	uint8_t b[200];
	uint64_t pos;
	cr_assert_eq(bal_store_wbegin(s), 0);
	for (uint32_t i = 1; i <= 10; i++) {
		fx_fill(b, 20 * i, i);
		cr_assert_eq(bal_store_append(s, 100 + i % 3, i, b, 20 * i, &pos), 0);
		cr_assert_eq(pos, i);
	}
	cr_assert_eq(bal_store_position(s), 0, "nothing published before commit");
	cr_assert_eq(bal_store_wcommit(s), 0);
	cr_assert_eq(bal_store_position(s), 10);
	cr_assert_eq(fx_commit_one(s, 500, 1, b, 7), 11);
	cr_assert_eq(bal_store_position(s), 11);

	for (uint32_t i = 1; i <= 10; i++)
		fx_expect_journal(s, i, i, 1, 20 * i);
	struct entries e = {0};
	cr_assert_eq(bal_store_journal_scan(s, 0, collect, &e), 0);
	cr_assert_eq(e.n, 11);
	for (uint32_t i = 1; i <= 10; i++) {
		fx_fill(b, 20 * i, i);
		cr_assert_eq(e.pos[i - 1], i);
		cr_assert_eq(e.len[i - 1], 20 * i);
		cr_assert_arr_eq(e.bytes[i - 1], b, 20 * i);
	}
	bal_store_close(s);
}

Test(storage_journal, get_reports_length_and_missing)
{
	struct bal_store *s = fx_open_default();
	uint8_t b[64], got[64];
	fx_fill(b, sizeof(b), 5);
	fx_commit_one(s, 1, 1, b, sizeof(b));
	memset(got, 0xee, sizeof(got));
	cr_assert_eq(bal_store_journal_get(s, 1, got, 10), 64, "too small: length, nothing copied");
	for (size_t i = 0; i < sizeof(got); i++)
		cr_assert_eq(got[i], 0xee);
	cr_assert_eq(bal_store_journal_get(s, 2, got, sizeof(got)), -ENOENT);
	cr_assert_eq(bal_store_journal_get(s, 0, got, sizeof(got)), -ENOENT);
	fx_commit_one(s, 1, 2, NULL, 0);
	cr_assert_eq(bal_store_journal_get(s, 2, got, sizeof(got)), 0, "empty payloads are kept too");
	bal_store_close(s);
}

Test(storage_journal, scan_starts_after_and_stops_on_callback)
{
	struct bal_store *s = fx_open_default();
	fx_journal(s, 2, 1, 6, 8);
	struct entries e = {0};
	cr_assert_eq(bal_store_journal_scan(s, 4, collect, &e), 0);
	cr_assert_eq(e.n, 2);
	cr_assert_eq(e.pos[0], 5);
	cr_assert_eq(e.pos[1], 6);

	e = (struct entries){.stop_at = 2};
	cr_assert_eq(bal_store_journal_scan(s, 0, collect, &e), 77);
	cr_assert_eq(e.n, 2);

	e = (struct entries){0};
	cr_assert_eq(bal_store_journal_scan(s, 6, collect, &e), 0);
	cr_assert_eq(bal_store_journal_scan(s, UINT64_MAX, collect, &e), 0);
	cr_assert_eq(e.n, 0);
	bal_store_close(s);
}

Test(storage_journal, identical_resend_is_duplicate_with_original_position)
{
	struct bal_store *s = fx_open_default();
	uint8_t b[50];
	uint64_t pos = 0;
	fx_fill(b, sizeof(b), 1);
	fx_commit_one(s, 9, 1, (const uint8_t *)"other", 5);
	cr_assert_eq(fx_commit_one(s, 9, 2, b, sizeof(b)), 2);
	cr_assert_eq(bal_store_wbegin(s), 0);
	cr_assert_eq(bal_store_append(s, 9, 2, b, sizeof(b), &pos), BAL_EDUPLICATE);
	cr_assert_eq(pos, 2);
	cr_assert_eq(bal_store_wcommit(s), 0, "a duplicate leaves the txn usable");
	cr_assert_eq(bal_store_position(s), 2);
	cr_assert_eq(conflicts_recorded(s), 0);
	bal_store_close(s);
}

struct conflicts {
	size_t n;
	uint64_t seq[8], original[8];
	size_t len[8];
	uint8_t bytes[8][64];
};

static int collect_conflict(void *arg, uint64_t seq, uint64_t original, const uint8_t *bytes, size_t len)
{
	struct conflicts *c = arg;
	cr_assert_lt(c->n, 8);
	cr_assert_leq(len, 64);
	c->seq[c->n] = seq;
	c->original[c->n] = original;
	c->len[c->n] = len;
	memcpy(c->bytes[c->n], bytes, len);
	c->n++;
	return 0;
}

Test(storage_journal, different_resend_is_conflict_recorded_journal_unchanged)
{
	struct bal_store *s = fx_open_default();
	uint8_t orig[40], bad1[40], bad2[33], got[40];
	uint64_t pos = 0;
	fx_fill(orig, sizeof(orig), 1);
	fx_fill(bad1, sizeof(bad1), 2);
	fx_fill(bad2, sizeof(bad2), 3);
	fx_commit_one(s, 4, 1, (const uint8_t *)"x", 1);
	cr_assert_eq(fx_commit_one(s, 4, 8, orig, sizeof(orig)), 2);

	cr_assert_eq(bal_store_wbegin(s), 0);
	cr_assert_eq(bal_store_append(s, 4, 8, bad1, sizeof(bad1), &pos), BAL_ECONFLICT);
	cr_assert_eq(pos, 2);
	cr_assert_eq(bal_store_append(s, 4, 8, bad2, sizeof(bad2), &pos), BAL_ECONFLICT);
	cr_assert_eq(bal_store_append(s, 4, 8, bad1, sizeof(bad1), &pos), BAL_ECONFLICT, "again: still a conflict");
	cr_assert_eq(bal_store_wcommit(s), 0);

	cr_assert_eq(bal_store_position(s), 2, "journal unchanged");
	cr_assert_eq(bal_store_journal_get(s, 2, got, sizeof(got)), (long)sizeof(orig));
	cr_assert_arr_eq(got, orig, sizeof(orig));

	struct conflicts c = {0};
	cr_assert_eq(bal_store_conflict_scan(s, 4, collect_conflict, &c), 0);
	cr_assert_eq(c.n, 2, "each distinct conflicting payload once");
	cr_assert_eq(c.seq[0], 8);
	cr_assert_eq(c.original[0], 2);
	cr_assert_eq(c.len[0], sizeof(bad1));
	cr_assert_arr_eq(c.bytes[0], bad1, sizeof(bad1));
	cr_assert_eq(c.seq[1], 8);
	cr_assert_eq(c.len[1], sizeof(bad2));
	cr_assert_arr_eq(c.bytes[1], bad2, sizeof(bad2));

	struct conflicts none = {0};
	cr_assert_eq(bal_store_conflict_scan(s, 5, collect_conflict, &none), 0);
	cr_assert_eq(none.n, 0);
	cr_assert_eq(conflicts_recorded(s), 2);
	bal_store_close(s);
}

Test(storage_journal, dedup_sees_earlier_appends_of_same_txn)
{
	struct bal_store *s = fx_open_default();
	uint8_t a[16], b[16];
	uint64_t pos = 0;
	fx_fill(a, sizeof(a), 1);
	fx_fill(b, sizeof(b), 2);
	cr_assert_eq(bal_store_wbegin(s), 0);
	cr_assert_eq(bal_store_append(s, 1, 1, a, sizeof(a), &pos), 0);
	cr_assert_eq(pos, 1);
	cr_assert_eq(bal_store_append(s, 1, 1, a, sizeof(a), &pos), BAL_EDUPLICATE);
	cr_assert_eq(pos, 1);
	cr_assert_eq(bal_store_append(s, 1, 1, b, sizeof(b), &pos), BAL_ECONFLICT);
	cr_assert_eq(pos, 1);
	cr_assert_eq(bal_store_append(s, 1, 2, b, sizeof(b), &pos), 0);
	cr_assert_eq(pos, 2);
	cr_assert_eq(bal_store_wcommit(s), 0);
	cr_assert_eq(bal_store_position(s), 2);
	struct conflicts c = {0};
	cr_assert_eq(bal_store_conflict_scan(s, 1, collect_conflict, &c), 0);
	cr_assert_eq(c.n, 1);
	cr_assert_arr_eq(c.bytes[0], b, sizeof(b));
	bal_store_close(s);
}

Test(storage_journal, abort_discards_appends)
{
	struct bal_store *s = fx_open_default();
	uint8_t a[16], b[16], got[16];
	uint64_t pos = 0;
	fx_fill(a, sizeof(a), 1);
	fx_fill(b, sizeof(b), 2);
	fx_commit_one(s, 1, 1, a, sizeof(a));
	cr_assert_eq(bal_store_wbegin(s), 0);
	cr_assert_eq(bal_store_append(s, 1, 2, a, sizeof(a), &pos), 0);
	cr_assert_eq(bal_store_append(s, 1, 3, a, sizeof(a), &pos), 0);
	cr_assert_eq(pos, 3);
	cr_assert_eq(bal_store_append(s, 1, 1, b, sizeof(b), &pos), BAL_ECONFLICT);
	bal_store_wabort(s);
	cr_assert_eq(bal_store_position(s), 1);
	cr_assert_eq(bal_store_journal_get(s, 2, got, sizeof(got)), -ENOENT);

	cr_assert_eq(fx_commit_one(s, 1, 3, b, sizeof(b)), 2, "key and position are free again");
	cr_assert_eq(bal_store_journal_get(s, 2, got, sizeof(got)), (long)sizeof(b));
	cr_assert_arr_eq(got, b, sizeof(b));
	cr_assert_eq(conflicts_recorded(s), 0, "the aborted conflict is gone too");
	bal_store_close(s);
}

struct seqs {
	size_t n;
	uint64_t seq[32], pos[32];
};

static int collect_seq(void *arg, uint64_t seq, uint64_t position)
{
	struct seqs *q = arg;
	cr_assert_lt(q->n, 32);
	q->seq[q->n] = seq;
	q->pos[q->n] = position;
	q->n++;
	return 0;
}

static int stop_first(void *arg, uint64_t seq, uint64_t position)
{
	(*(int *)arg)++;
	return -5;
}

Test(storage_journal, precinct_scan_lists_one_precinct_in_seq_order)
{
	struct bal_store *s = fx_open_default();
	static const struct {
		uint32_t precinct;
		uint64_t seq;
	} order[] = {{2, 9}, {1, 5}, {2, 1}, {3, 1}, {2, 300}, {2, 4}, {1, 1}, {2, 1ULL << 40}};
	uint64_t pos;
	cr_assert_eq(bal_store_wbegin(s), 0);
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		const uint8_t *bytes = (const uint8_t *)&i;
		cr_assert_eq(bal_store_append(s, order[i].precinct, order[i].seq, bytes, sizeof(i), &pos), 0);
	}
	cr_assert_eq(bal_store_wcommit(s), 0);

	struct seqs q = {0};
	cr_assert_eq(bal_store_precinct_scan(s, 2, collect_seq, &q), 0);
	cr_assert_eq(q.n, 5);
	static const uint64_t want_seq[] = {1, 4, 9, 300, 1ULL << 40}, want_pos[] = {3, 6, 1, 5, 8};
	for (size_t i = 0; i < 5; i++) {
		cr_assert_eq(q.seq[i], want_seq[i], "i=%zu", i);
		cr_assert_eq(q.pos[i], want_pos[i], "i=%zu", i);
	}
	q = (struct seqs){0};
	cr_assert_eq(bal_store_precinct_scan(s, 4, collect_seq, &q), 0);
	cr_assert_eq(q.n, 0);
	int calls = 0;
	cr_assert_eq(bal_store_precinct_scan(s, 1, stop_first, &calls), -5);
	cr_assert_eq(calls, 1);
	bal_store_close(s);
}

Test(storage_journal, damaged_record_is_reported_not_returned)
{
	struct bal_store *s = fx_open_default();
	uint8_t b[100], got[100];
	fx_journal(s, 1, 1, 3, sizeof(b));
	bal_store_close(s);
	fx_damage("journal", 2, 60);

	s = fx_open_default();
	fx_expect_journal(s, 1, 1, 1, sizeof(b));
	fx_expect_journal(s, 3, 3, 1, sizeof(b));
	cr_assert_eq(bal_store_journal_get(s, 2, got, sizeof(got)), BAL_ECORRUPT);
	struct entries e = {0};
	cr_assert_eq(bal_store_journal_scan(s, 0, collect, &e), BAL_ECORRUPT);
	cr_assert_eq(e.n, 1, "entries before the damage were delivered");

	uint64_t pos;
	fx_fill(b, sizeof(b), 2);
	cr_assert_eq(bal_store_wbegin(s), 0);
	cr_assert_eq(bal_store_append(s, 1, 2, b, sizeof(b), &pos), BAL_ECORRUPT,
	             "dedup never compares against a damaged original");
	cr_assert_eq(bal_store_wcommit(s), BAL_ECORRUPT, "the failed txn is not committed");
	bal_store_close(s);
}

/* Opens fx_dir with precincts 0..7 and the given conflict policy. */
static struct bal_store *open_policy(unsigned per_key, unsigned per_precinct, bal_store_signed_fn fn)
{
	static const uint32_t ids[8] = {0, 1, 2, 3, 4, 5, 6, 7};
	struct bal_store_opts o = {.dir = fx_dir,
	                           .map_size = 8 * MiB,
	                           .precinct_ids = ids,
	                           .nprecincts = 8,
	                           .conflicts_per_key = per_key,
	                           .conflicts_per_precinct = per_precinct,
	                           .signed_part = fn};
	struct bal_store *s = NULL;
	char why[256] = "";
	memset(o.hash, 0x22, sizeof(o.hash));
	cr_assert_eq(bal_store_open(&o, &s, why, sizeof(why)), 0, "%s", why);
	return s;
}

static int append_one(struct bal_store *s, uint32_t precinct, uint64_t seq, const uint8_t *b, size_t len)
{
	uint64_t pos = 0;
	cr_assert_eq(bal_store_wbegin(s), 0);
	int rc = bal_store_append(s, precinct, seq, b, len, &pos);
	cr_assert_eq(bal_store_wcommit(s), 0);
	return rc;
}

static void expect_counts(struct bal_store *s, uint32_t precinct, uint64_t stored, uint64_t unstored)
{
	uint64_t st = 99, un = 99;
	cr_assert_eq(bal_store_conflict_counts(s, precinct, &st, &un), 0);
	cr_assert_eq(st, stored, "stored %llu, want %llu", (unsigned long long)st, (unsigned long long)stored);
	cr_assert_eq(un, unstored, "unstored %llu, want %llu", (unsigned long long)un, (unsigned long long)unstored);
}

Test(storage_journal, conflicts_are_capped_per_key_and_per_precinct_and_counted)
{
	struct bal_store *s = open_policy(2, 3, NULL);
	uint8_t v[6][24];
	for (unsigned i = 0; i < 6; i++)
		fx_fill(v[i], sizeof(v[i]), 10 + i);
	cr_assert_eq(append_one(s, 5, 1, v[0], sizeof(v[0])), 0);
	cr_assert_eq(append_one(s, 5, 2, v[0], sizeof(v[0])), 0);
	expect_counts(s, 5, 0, 0);
	for (unsigned i = 1; i <= 4; i++)
		cr_assert_eq(append_one(s, 5, 1, v[i], sizeof(v[i])), BAL_ECONFLICT);
	expect_counts(s, 5, 2, 2);
	cr_assert_eq(append_one(s, 5, 1, v[1], sizeof(v[1])), BAL_ECONFLICT, "a recorded version again");
	expect_counts(s, 5, 2, 3);
	cr_assert_eq(append_one(s, 5, 2, v[4], sizeof(v[4])), BAL_ECONFLICT);
	cr_assert_eq(append_one(s, 5, 2, v[5], sizeof(v[5])), BAL_ECONFLICT, "beyond the precinct's cap");
	expect_counts(s, 5, 3, 4);
	expect_counts(s, 6, 0, 0);

	struct conflicts c = {0};
	cr_assert_eq(bal_store_conflict_scan(s, 5, collect_conflict, &c), 0);
	cr_assert_eq(c.n, 3, "two versions of seq 1, one of seq 2");
	cr_assert_arr_eq(c.bytes[0], v[1], sizeof(v[1]));
	cr_assert_arr_eq(c.bytes[1], v[2], sizeof(v[2]));
	cr_assert_arr_eq(c.bytes[2], v[4], sizeof(v[4]));
	cr_assert_eq(conflicts_recorded(s), 3);
	cr_assert_eq(bal_store_position(s), 2, "the journal holds only the two batches");
	bal_store_close(s);

	s = open_policy(2, 3, NULL);
	expect_counts(s, 5, 3, 4);
	bal_store_close(s);
}

/* Records in these tests: byte 0 is the length n of an unsigned header, then
 * n header bytes, then the signed part. */
static int test_signed_part(const uint8_t *rec, size_t len, size_t *off, size_t *slen)
{
	if (len < 1 || (size_t)rec[0] + 1 > len)
		return -1;
	*off = (size_t)rec[0] + 1;
	*slen = len - *off;
	return 0;
}

Test(storage_journal, dedup_and_conflicts_compare_the_signed_part_only)
{
	struct bal_store *s = open_policy(0, 0, test_signed_part);
	const uint8_t a[] = {1, 'x', 'S', 'I', 'G', 'N', 'E', 'D'};
	const uint8_t a_padded[] = {3, 'p', 'a', 'd', 'S', 'I', 'G', 'N', 'E', 'D'};
	const uint8_t b[] = {0, 'O', 'T', 'H', 'E', 'R'};
	const uint8_t b_padded[] = {2, 'j', 'k', 'O', 'T', 'H', 'E', 'R'};
	uint64_t pos = 0;
	cr_assert_eq(append_one(s, 3, 1, a, sizeof(a)), 0);
	cr_assert_eq(bal_store_wbegin(s), 0);
	cr_assert_eq(bal_store_append(s, 3, 1, a_padded, sizeof(a_padded), &pos), BAL_EDUPLICATE,
	             "the same signed part in another envelope");
	cr_assert_eq(pos, 1);
	cr_assert_eq(bal_store_wcommit(s), 0);
	expect_counts(s, 3, 0, 0);
	cr_assert_eq(append_one(s, 3, 1, b, sizeof(b)), BAL_ECONFLICT);
	cr_assert_eq(append_one(s, 3, 1, b_padded, sizeof(b_padded)), BAL_ECONFLICT);
	expect_counts(s, 3, 1, 1);
	struct conflicts c = {0};
	cr_assert_eq(bal_store_conflict_scan(s, 3, collect_conflict, &c), 0);
	cr_assert_eq(c.n, 1, "one conflicting signed part, stored once");
	bal_store_close(s);
}
