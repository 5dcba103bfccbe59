/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Integration tests against the real ballotd on 127.0.0.1 (ephemeral port):
 * exactly-once counting, duplicates, conflicts, every rejection reason (each
 * leaving the counters untouched), HTTP limits, pipelining, ack formats,
 * restart, and the definition pin.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/codec.h"
#include "defn/defn.h"
#include "client/gen.h"
#include "tests/integration/harness.h"

#define KEY_SEED 11

static char *dir;
static char *defn_path;
static struct bal_defn *defn;
static struct th_daemon td;

static void setup_with(const char *const *extra)
{
	dir = th_tmpdir();
	cr_assert(dir);
	defn_path = th_write_defn(dir, 20, 3, 4, KEY_SEED, true);
	cr_assert(defn_path);
	char why[256], data[600];
	cr_assert_eq(bal_defn_load(defn_path, &defn, why, sizeof(why)), 0, "%s", why);
	snprintf(data, sizeof(data), "%s/data", dir);
	cr_assert_eq(th_start(&td, defn_path, data, 0, extra), 0);
}

static void setup(void)
{
	setup_with(NULL);
}

static void teardown(void)
{
	if (td.pid > 0)
		cr_expect_eq(th_stop(&td), 0, "ballotd should exit 0 on SIGTERM");
	bal_defn_free(defn);
	free(defn_path);
	th_rmdir(dir);
	free(dir);
}

static struct bal_gen *new_gen(uint64_t seed, uint32_t size, enum bal_kind kind)
{
	struct bal_gen_opts o = {.seed = seed, .key_seed = KEY_SEED, .batch_size = size, .kind = kind};
	struct bal_gen *g = NULL;
	char why[256];
	cr_assert_eq(bal_gen_new(defn, &o, &g, why, sizeof(why)), 0, "%s", why);
	return g;
}

/* POSTs on an open keep-alive connection; returns the HTTP status. */
static int post_on(int fd, const uint8_t *body, size_t len, json_t **ack)
{
	char head[256];
	int hl = snprintf(head, sizeof(head),
	                  "POST /v1/batches HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-protobuf\r\n"
	                  "Content-Length: %zu\r\n\r\n",
	                  len);
	cr_assert_eq(th_send(fd, head, (size_t)hl), 0);
	cr_assert_eq(th_send(fd, body, len), 0);
	struct th_resp r;
	cr_assert_eq(th_read_resp(fd, &r, 20000), 0, "no response");
	if (ack) {
		json_error_t err;
		*ack = json_loadb(r.body, r.len, 0, &err);
		cr_assert(*ack, "ack is not JSON: %s", r.body);
	}
	int st = r.status;
	th_resp_free(&r);
	return st;
}

static const char *ack_status(json_t *ack)
{
	return json_string_value(json_object_get(ack, "status"));
}

static uint64_t ack_position(json_t *ack)
{
	return (uint64_t)json_integer_value(json_object_get(ack, "position"));
}

static void assert_untouched(void)
{
	json_t *snap = th_get_json(td.port, "/v1/snapshot");
	cr_assert(snap);
	cr_expect_eq(json_integer_value(json_object_get(snap, "position")), 0);
	cr_expect_eq(json_integer_value(json_object_get(snap, "batches")), 0);
	json_t *contests = json_object_get(snap, "contests");
	size_t i;
	json_t *c;
	json_array_foreach(contests, i, c) cr_expect_eq(json_integer_value(json_object_get(c, "total_votes")), 0);
	json_decref(snap);
}

Test(ingest, counts_acked_batches_exactly, .init = setup, .fini = teardown)
{
	struct bal_gen *gb = new_gen(5, 50, BAL_KIND_BALLOTS);
	struct bal_gen *gt = new_gen(6, 200, BAL_KIND_TALLY);
	struct bal_expect *e = bal_expect_new(defn);
	int fd = th_connect(td.port);
	cr_assert(fd >= 0);
	uint64_t accepted = 0;
	for (uint64_t seq = 1; seq <= 6; seq++) {
		for (uint32_t p = 0; p < defn->nprecincts; p++) {
			struct bal_gen *g = seq == 6 ? gt : gb;
			struct bal_batch b;
			const uint8_t *body;
			size_t len;
			char why[256];
			cr_assert_eq(bal_gen_batch(g, p, seq, &b, &body, &len, why, sizeof(why)), 0, "%s", why);
			json_t *ack;
			cr_assert_eq(post_on(fd, body, len, &ack), 200);
			cr_assert_str_eq(ack_status(ack), "ACCEPTED");
			cr_assert_eq(ack_position(ack), ++accepted);
			json_decref(ack);
			cr_assert_eq(bal_expect_fold(e, &b, why, sizeof(why)), 0, "%s", why);
		}
	}
	close(fd);
	json_t *snap = th_get_json(td.port, "/v1/snapshot");
	cr_assert(th_snapshot_matches(snap, defn, e), "snapshot differs from the fold of acknowledged batches");
	cr_expect_eq(json_integer_value(json_object_get(snap, "precincts_reporting")), defn->nprecincts);
	json_decref(snap);

	/* The CSV holds the same per-precinct numbers: its sum equals the totals. */
	struct th_resp r;
	cr_assert_eq(th_request(td.port, "GET", "/v1/results.csv", NULL, NULL, 0, &r), 0);
	cr_assert_eq(r.status, 200);
	cr_assert(strncmp(r.body, "district_id,precinct_id,contest_id,choice_id,votes\n", 51) == 0);
	uint64_t csv_sum = 0, want = 0;
	for (char *line = strchr(r.body, '\n') + 1; *line; line = strchr(line, '\n') + 1) {
		unsigned long long v[5];
		cr_assert_eq(sscanf(line, "%llu,%llu,%llu,%llu,%llu", &v[0], &v[1], &v[2], &v[3], &v[4]), 5);
		csv_sum += v[4];
	}
	for (uint32_t c = 0; c < defn->ncontests; c++)
		for (uint32_t k = 0; k < defn->contests[c].nchoices; k++)
			want += bal_expect_votes(e, c, k);
	cr_expect_eq(csv_sum, want);
	th_resp_free(&r);

	bal_expect_free(e);
	bal_gen_free(gb);
	bal_gen_free(gt);
}

Test(ingest, resend_is_duplicate_and_counts_nothing, .init = setup, .fini = teardown)
{
	struct bal_gen *g = new_gen(5, 10, BAL_KIND_BALLOTS);
	const uint8_t *body;
	size_t len;
	char why[256];
	cr_assert_eq(bal_gen_batch(g, 3, 7, NULL, &body, &len, why, sizeof(why)), 0);
	int fd = th_connect(td.port);
	json_t *a1, *a2, *a3;
	cr_assert_eq(post_on(fd, body, len, &a1), 200);
	cr_assert_str_eq(ack_status(a1), "ACCEPTED");
	cr_assert_eq(post_on(fd, body, len, &a2), 200);
	cr_assert_str_eq(ack_status(a2), "DUPLICATE");
	cr_assert_eq(ack_position(a2), ack_position(a1), "a duplicate names the original position");
	close(fd);
	/* On a new connection too. */
	fd = th_connect(td.port);
	cr_assert_eq(post_on(fd, body, len, &a3), 200);
	cr_assert_str_eq(ack_status(a3), "DUPLICATE");
	close(fd);
	json_t *snap = th_get_json(td.port, "/v1/snapshot");
	cr_expect_eq(json_integer_value(json_object_get(snap, "batches")), 1);
	cr_expect_eq(json_integer_value(json_object_get(json_object_get(snap, "turnout"), "ballots")), 10);
	json_decref(snap);
	json_decref(a1);
	json_decref(a2);
	json_decref(a3);
	bal_gen_free(g);
}

Test(ingest, conflicting_resend_is_409_and_recorded, .init = setup, .fini = teardown)
{
	struct bal_gen *g1 = new_gen(5, 10, BAL_KIND_BALLOTS);
	struct bal_gen *g2 = new_gen(99, 10, BAL_KIND_BALLOTS);
	const uint8_t *body;
	size_t len;
	char why[256];
	cr_assert_eq(bal_gen_batch(g1, 2, 1, NULL, &body, &len, why, sizeof(why)), 0);
	int fd = th_connect(td.port);
	json_t *a1, *a2;
	cr_assert_eq(post_on(fd, body, len, &a1), 200);
	cr_assert_eq(bal_gen_batch(g2, 2, 1, NULL, &body, &len, why, sizeof(why)), 0);
	cr_assert_eq(post_on(fd, body, len, &a2), 409);
	cr_assert_str_eq(ack_status(a2), "REJECTED");
	cr_expect(strstr(json_string_value(json_object_get(a2, "error")), "conflicting resend"));
	cr_expect_eq(ack_position(a2), ack_position(a1));
	close(fd);
	json_t *snap = th_get_json(td.port, "/v1/snapshot");
	cr_expect_eq(json_integer_value(json_object_get(snap, "batches")), 1);
	json_decref(snap);
	char path[64];
	snprintf(path, sizeof(path), "/v1/precincts/%u", defn->precincts[2].id);
	json_t *pr = th_get_json(td.port, path);
	cr_assert(pr);
	cr_expect_eq(json_array_size(json_object_get(pr, "conflicts")), 1, "the conflict is recorded");
	cr_expect_eq(json_integer_value(json_object_get(pr, "accepted_batches")), 1);
	json_decref(pr);
	json_decref(a1);
	json_decref(a2);
	bal_gen_free(g1);
	bal_gen_free(g2);
}

/* ---- every rejection reason ------------------------------------------------ */

/* Inline strings: Criterion runs each case in a new process, where pointers
 * into the parent's data would not be valid. */
struct bad_case {
	char name[32];
	int status;
	char why[32]; /* substring of the error */
};

static struct bad_case bad_cases[] = {
        {"garbage", 400, "does not decode"},
        {"truncated", 400, "does not decode"},
        {"unknown_precinct", 422, "is not in the definition"},
        {"seq_zero", 422, "seq"},
        {"contest_not_on_ballot", 422, "not on the ballot"},
        {"unknown_contest", 422, "contest"},
        {"choice_out_of_range", 422, "out of range"},
        {"column_lengths_differ", 422, "differ"},
        {"tally_length", 422, "choices"},
        {"tallies_in_ballots_batch", 422, "BALLOTS"},
        {"protocol_without_turnout", 422, "must carry a turnout"},
        {"empty_batch", 422, "empty"},
        {"bad_signature", 401, "does not verify"},
        {"missing_signature", 401, "signature"},
        {"other_election", 422, "election \\\"kz-2023-rehearsal"},
        {"no_election", 422, "is for election"},
};

ParameterizedTestParameters(ingest, rejects_bad_input)
{
	return cr_make_param_array(struct bad_case, bad_cases, sizeof(bad_cases) / sizeof(bad_cases[0]));
}

/* A contest the precinct with index p does not vote in (another district's). */
static uint32_t foreign_contest(uint32_t p)
{
	for (uint32_t c = 0; c < defn->ncontests; c++)
		if (!bal_defn_votes_in(defn, p, c))
			return defn->contests[c].id;
	cr_assert_fail("definition has no foreign contest");
	return 0;
}

static uint8_t *build_bad(const char *name, size_t *len)
{
	uint32_t choices[4] = {0, 1, 2, 3};
	uint32_t short_col[3] = {0, 1, 2};
	uint32_t oor[4] = {0, 1, 9, 3};
	uint64_t counts[4] = {1, 2, 3, 4};
	struct bal_column cols[2];
	struct bal_ctally tal[2];
	uint32_t p = 0;
	struct bal_batch b = {.precinct_id = defn->precincts[p].id, .seq = 1, .kind = BAL_KIND_BALLOTS};
	uint32_t national = defn->contests[0].id;
	cols[0] = (struct bal_column){.contest_id = national, .n = 4, .choices = choices};
	b.columns = cols;
	b.ncolumns = 1;
	bool sign = true;
	if (strcmp(name, "garbage") == 0) {
		uint8_t *g = malloc(32);
		memcpy(g, "\xff\xff\xff\xff this is not protobuf", 24);
		*len = 24;
		return g;
	}
	if (strcmp(name, "unknown_precinct") == 0)
		b.precinct_id = 999999;
	else if (strcmp(name, "seq_zero") == 0)
		b.seq = 0;
	else if (strcmp(name, "contest_not_on_ballot") == 0)
		cols[0].contest_id = foreign_contest(p);
	else if (strcmp(name, "unknown_contest") == 0)
		cols[0].contest_id = 4242;
	else if (strcmp(name, "choice_out_of_range") == 0)
		cols[0].choices = oor;
	else if (strcmp(name, "column_lengths_differ") == 0) {
		uint32_t own = 0;
		for (uint32_t c = 1; c < defn->ncontests; c++)
			if (bal_defn_votes_in(defn, p, c))
				own = defn->contests[c].id;
		cols[1] = (struct bal_column){.contest_id = own, .n = 3, .choices = short_col};
		b.ncolumns = 2;
	} else if (strcmp(name, "tally_length") == 0) {
		b.kind = BAL_KIND_TALLY;
		b.ncolumns = 0;
		tal[0] = (struct bal_ctally){.contest_id = national, .n = 2, .counts = counts};
		b.tallies = tal;
		b.ntallies = 1;
	} else if (strcmp(name, "tallies_in_ballots_batch") == 0) {
		tal[0] = (struct bal_ctally){.contest_id = national, .n = 4, .counts = counts};
		b.tallies = tal;
		b.ntallies = 1;
	} else if (strcmp(name, "protocol_without_turnout") == 0) {
		/* Complete otherwise: a tally for every contest on the ballot. */
		b.kind = BAL_KIND_PROTOCOL;
		b.ncolumns = 0;
		b.ntallies = 0;
		for (uint32_t c = 0; c < defn->ncontests; c++) {
			if (!bal_defn_votes_in(defn, p, c))
				continue;
			const struct bal_contest *ct = &defn->contests[c];
			cr_assert(b.ntallies < 2 && ct->nchoices == 4, "fixture: two contests of 4 choices");
			tal[b.ntallies++] = (struct bal_ctally){.contest_id = ct->id, .n = 4, .counts = counts};
		}
		b.tallies = tal;
	} else if (strcmp(name, "empty_batch") == 0) {
		b.ncolumns = 0;
	} else if (strcmp(name, "missing_signature") == 0) {
		sign = false;
	} else if (strcmp(name, "other_election") == 0) {
		b.election_id = "kz-2023-rehearsal";
	} else if (strcmp(name, "no_election") == 0) {
		b.election_id = "";
	}
	uint8_t *body = th_signed_batch(&b, sign, KEY_SEED, len);
	if (strcmp(name, "bad_signature") == 0)
		body[*len - 1] ^= 0x55; /* last byte of the signature */
	if (strcmp(name, "truncated") == 0)
		*len /= 2;
	return body;
}

ParameterizedTest(struct bad_case *bc, ingest, rejects_bad_input, .init = setup, .fini = teardown)
{
	size_t len;
	uint8_t *body = build_bad(bc->name, &len);
	struct th_resp r;
	cr_assert_eq(th_post(td.port, body, len, &r), 0);
	cr_expect_eq(r.status, bc->status, "%s: status %d, want %d (%s)", bc->name, r.status, bc->status, r.body);
	cr_expect(strstr(r.body, bc->why), "%s: reason '%s' should mention '%s'", bc->name, r.body, bc->why);
	cr_expect(strstr(r.body, "\"REJECTED\""), "%s: %s", bc->name, r.body);
	th_resp_free(&r);
	free(body);
	assert_untouched();
	/* And the daemon still counts good batches afterwards. */
	struct bal_gen *g = new_gen(5, 10, BAL_KIND_BALLOTS);
	const uint8_t *ok;
	size_t oklen;
	char why[256];
	cr_assert_eq(bal_gen_batch(g, 1, 1, NULL, &ok, &oklen, why, sizeof(why)), 0);
	cr_assert_eq(th_post(td.port, ok, oklen, &r), 0);
	cr_expect_eq(r.status, 200, "%s", r.body);
	th_resp_free(&r);
	bal_gen_free(g);
}

/* Precinct 0's TALLY of UINT64_MAX - 5 votes for choice 0 of contest 0, and
 * precinct 1's 10 votes there, which would push the national total past 2^64. */
static void overflow_pair(uint8_t **big_body, size_t *big_len, uint8_t **small_body, size_t *small_len)
{
	uint32_t nch = defn->contests[0].nchoices;
	uint64_t big[8] = {0}, small[8] = {0};
	big[0] = UINT64_MAX - 5;
	small[0] = 10;
	struct bal_ctally t = {.contest_id = defn->contests[0].id, .n = nch, .counts = big};
	struct bal_batch b = {
	        .precinct_id = defn->precincts[0].id, .seq = 1, .kind = BAL_KIND_TALLY, .tallies = &t, .ntallies = 1};
	*big_body = th_signed_batch(&b, true, KEY_SEED, big_len);
	t.counts = small;
	b.precinct_id = defn->precincts[1].id;
	*small_body = th_signed_batch(&b, true, KEY_SEED, small_len);
}

static void assert_overflow_422(const struct th_resp *r)
{
	cr_expect_eq(r->status, 422, "%s", r->body);
	cr_expect(strstr(r->body, "overflow"), "%s", r->body);
}

/* Only the big batch counts. Totals above 2^63 are valid JSON that jansson
 * cannot hold: read the text. */
static void assert_only_the_big_one_counted(void)
{
	struct th_resp r;
	cr_assert_eq(th_request(td.port, "GET", "/v1/snapshot", NULL, NULL, 0, &r), 0);
	cr_expect(strstr(r.body, "\"position\":1,\"batches\":1,"), "%s", r.body);
	char want[64];
	snprintf(want, sizeof(want), "\"votes\":%llu}", (unsigned long long)(UINT64_MAX - 5));
	cr_expect(strstr(r.body, want), "%s", r.body);
	th_resp_free(&r);
}

Test(ingest, counter_overflow_is_422_and_changes_nothing, .init = setup, .fini = teardown)
{
	uint8_t *big, *small;
	size_t lbig, lsmall;
	overflow_pair(&big, &lbig, &small, &lsmall);
	struct th_resp r;
	cr_assert_eq(th_post(td.port, big, lbig, &r), 0);
	cr_assert_eq(r.status, 200, "%s", r.body);
	th_resp_free(&r);
	cr_assert_eq(th_post(td.port, small, lsmall, &r), 0);
	assert_overflow_422(&r);
	th_resp_free(&r);
	/* A resend of the big one would overflow too, but it adds nothing: it is
	 * a duplicate, as any resend of a journaled batch. */
	cr_assert_eq(th_post(td.port, big, lbig, &r), 0);
	cr_expect_eq(r.status, 200, "%s", r.body);
	cr_expect(strstr(r.body, "\"status\":\"DUPLICATE\",\"position\":1"), "%s", r.body);
	th_resp_free(&r);
	free(big);
	free(small);
	assert_only_the_big_one_counted();
}

/* Without signature checks the I/O thread queues pipelined batches microseconds apart. */
static const char *const no_auth_args[] = {"--no-auth", NULL};

static void setup_no_auth(void)
{
	setup_with(no_auth_args);
}

/*
 * The same, with both batches pipelined in one write so that they reach the
 * committer together (as good as always): the second must be checked
 * against counters that include the first (a group ends before a batch that
 * needs the exact check).
 */
Test(ingest, counter_overflow_within_one_group_is_422, .init = setup_no_auth, .fini = teardown)
{
	uint8_t *big, *small;
	size_t lbig, lsmall;
	overflow_pair(&big, &lbig, &small, &lsmall);
	char *buf = malloc(lbig + lsmall + 256);
	cr_assert(buf);
	size_t n = (size_t)sprintf(buf, "POST /v1/batches HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n", lbig);
	memcpy(buf + n, big, lbig);
	n += lbig;
	n += (size_t)sprintf(buf + n, "POST /v1/batches HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n", lsmall);
	memcpy(buf + n, small, lsmall);
	n += lsmall;
	int fd = th_connect(td.port);
	cr_assert_eq(th_send(fd, buf, n), 0, "both requests go out in one write");
	struct th_resp r;
	cr_assert_eq(th_read_resp(fd, &r, 10000), 0);
	cr_expect_eq(r.status, 200, "%s", r.body);
	th_resp_free(&r);
	cr_assert_eq(th_read_resp(fd, &r, 10000), 0);
	assert_overflow_422(&r);
	th_resp_free(&r);
	close(fd);
	free(big);
	free(small);
	free(buf);
	assert_only_the_big_one_counted();
}

static uint64_t commits_total(void)
{
	struct th_resp r;
	cr_assert_eq(th_request(td.port, "GET", "/metrics", NULL, NULL, 0, &r), 0);
	const char *at = strstr(r.body, "\nballotd_commits_total ");
	cr_assert(at, "%s", r.body);
	uint64_t n = strtoull(at + strlen("\nballotd_commits_total "), NULL, 10);
	th_resp_free(&r);
	return n;
}

/*
 * Counts near 2^63 end the running bound's proof, for good (it is rebuilt
 * from the counters at start). Ordinary batches must still share commits:
 * 16 small batches pipelined after a huge one are checked with their group
 * as headroom, not given a commit (and an fsync) each.
 */
Test(ingest, batches_after_a_huge_count_still_share_commits, .init = setup_no_auth, .fini = teardown)
{
	enum { N = 16 };
	uint32_t nch = defn->contests[0].nchoices;
	uint64_t counts[8] = {0};
	counts[0] = (uint64_t)1 << 63;
	struct bal_ctally t = {.contest_id = defn->contests[0].id, .n = nch, .counts = counts};
	struct bal_batch b = {
	        .precinct_id = defn->precincts[0].id, .seq = 1, .kind = BAL_KIND_TALLY, .tallies = &t, .ntallies = 1};
	size_t len;
	uint8_t *body = th_signed_batch(&b, true, KEY_SEED, &len);
	struct th_resp r;
	cr_assert_eq(th_post(td.port, body, len, &r), 0);
	cr_assert_eq(r.status, 200, "%s", r.body);
	th_resp_free(&r);
	free(body);
	uint64_t before = commits_total();
	char *buf = malloc(N * 1024);
	cr_assert(buf);
	size_t n = 0;
	counts[0] = 3;
	for (uint32_t i = 1; i <= N; i++) {
		b.precinct_id = defn->precincts[i].id;
		body = th_signed_batch(&b, true, KEY_SEED, &len);
		n += (size_t)sprintf(buf + n, "POST /v1/batches HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n",
		                     len);
		memcpy(buf + n, body, len);
		n += len;
		free(body);
	}
	int fd = th_connect(td.port);
	cr_assert_eq(th_send(fd, buf, n), 0, "the %d requests go out in one write", N);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(th_read_resp(fd, &r, 10000), 0);
		cr_assert_eq(r.status, 200, "batch %d: %s", i, r.body);
		th_resp_free(&r);
	}
	close(fd);
	free(buf);
	uint64_t commits = commits_total() - before;
	cr_expect_leq(commits, 4, "%d batches pipelined after a huge count took %llu commits", N,
	              (unsigned long long)commits);
	cr_assert_eq(th_request(td.port, "GET", "/v1/snapshot", NULL, NULL, 0, &r), 0);
	char want[64];
	snprintf(want, sizeof(want), "\"votes\":%llu}", (unsigned long long)((uint64_t)1 << 63) + 3 * N);
	cr_expect(strstr(r.body, want), "want %s in %s", want, r.body);
	th_resp_free(&r);
}

/* ---- HTTP behaviour -------------------------------------------------------- */

static const char *const small_body_args[] = {"--max-body", "2048", "--max-header", "1024", NULL};

static void setup_small(void)
{
	setup_with(small_body_args);
}

Test(http, body_over_the_cap_is_413_without_reading_it, .init = setup_small, .fini = teardown)
{
	int fd = th_connect(td.port);
	const char *req = "POST /v1/batches HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n";
	cr_assert_eq(th_send(fd, req, strlen(req)), 0);
	struct th_resp r;
	cr_assert_eq(th_read_resp(fd, &r, 5000), 0, "413 must come before the body is sent");
	cr_expect_eq(r.status, 413);
	cr_expect(strstr(r.body, "--max-body"), "%s", r.body);
	th_resp_free(&r);
	close(fd);
	assert_untouched();
}

Test(http, header_flood_is_431, .init = setup_small, .fini = teardown)
{
	int fd = th_connect(td.port);
	char req[8192];
	int n = snprintf(req, sizeof(req), "GET /healthz HTTP/1.1\r\nHost: t\r\n");
	for (int i = 0; i < 100; i++)
		n += snprintf(req + n, sizeof(req) - (size_t)n, "X-Flood-%d: %040d\r\n", i, i);
	n += snprintf(req + n, sizeof(req) - (size_t)n, "\r\n");
	th_send(fd, req, (size_t)n);
	struct th_resp r;
	cr_assert_eq(th_read_resp(fd, &r, 5000), 0);
	cr_expect_eq(r.status, 431);
	th_resp_free(&r);
	close(fd);
}

Test(http, pipelined_requests_are_answered_in_order, .init = setup, .fini = teardown)
{
	struct bal_gen *g = new_gen(5, 20, BAL_KIND_BALLOTS);
	const uint8_t *body;
	size_t la, lb;
	char why[256];
	uint8_t a[65536], bb[65536];
	cr_assert_eq(bal_gen_batch(g, 0, 1, NULL, &body, &la, why, sizeof(why)), 0);
	memcpy(a, body, la);
	cr_assert_eq(bal_gen_batch(g, 1, 1, NULL, &body, &lb, why, sizeof(why)), 0);
	memcpy(bb, body, lb);
	char *buf = malloc(200000);
	size_t n = 0;
	const uint8_t *bodies[] = {a, NULL, bb, a, NULL};
	size_t lens[] = {la, 0, lb, la, 0};
	for (int i = 0; i < 5; i++) {
		if (bodies[i]) {
			n += (size_t)sprintf(buf + n,
			                     "POST /v1/batches HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n",
			                     lens[i]);
			memcpy(buf + n, bodies[i], lens[i]);
			n += lens[i];
		} else {
			n += (size_t)sprintf(buf + n, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
		}
	}
	int fd = th_connect(td.port);
	cr_assert_eq(th_send(fd, buf, n), 0, "all five requests go out in one write");
	const char *want[] = {"\"ACCEPTED\",\"position\":1", "\"status\":\"ok\"", "\"ACCEPTED\",\"position\":2",
	                      "\"DUPLICATE\",\"position\":1", "\"status\":\"ok\""};
	for (int i = 0; i < 5; i++) {
		struct th_resp r;
		cr_assert_eq(th_read_resp(fd, &r, 10000), 0, "response %d", i);
		cr_expect_eq(r.status, 200);
		cr_expect(strstr(r.body, want[i]), "response %d: %s, want %s", i, r.body, want[i]);
		th_resp_free(&r);
	}
	close(fd);
	free(buf);
	bal_gen_free(g);
}

Test(http, protobuf_ack_when_asked, .init = setup, .fini = teardown)
{
	struct bal_gen *g = new_gen(5, 20, BAL_KIND_BALLOTS);
	const uint8_t *body;
	size_t len;
	char why[256];
	cr_assert_eq(bal_gen_batch(g, 4, 2, NULL, &body, &len, why, sizeof(why)), 0);
	struct th_resp r;
	cr_assert_eq(th_request(td.port, "POST", "/v1/batches",
	                        "Accept: application/x-protobuf\r\nContent-Type: application/x-protobuf\r\n", body, len,
	                        &r),
	             0);
	cr_assert_eq(r.status, 200);
	cr_expect(strcasestr(r.head, "Content-Type: application/x-protobuf"));
	enum bal_ack_status st;
	uint64_t pos;
	char err[128];
	cr_assert_eq(bal_codec_ack_decode((uint8_t *)r.body, r.len, &st, &pos, err, sizeof(err)), 0);
	cr_expect_eq(st, BAL_ACK_ACCEPTED);
	cr_expect_eq(pos, 1);
	th_resp_free(&r);
	bal_gen_free(g);
}

Test(http, unknown_paths_and_methods, .init = setup, .fini = teardown)
{
	struct th_resp r;
	cr_assert_eq(th_request(td.port, "GET", "/nope", NULL, NULL, 0, &r), 0);
	cr_expect_eq(r.status, 404);
	th_resp_free(&r);
	cr_assert_eq(th_request(td.port, "DELETE", "/v1/snapshot", NULL, NULL, 0, &r), 0);
	cr_expect_eq(r.status, 405);
	th_resp_free(&r);
	cr_assert_eq(th_request(td.port, "GET", "/v1/precincts/123456789", NULL, NULL, 0, &r), 0);
	cr_expect_eq(r.status, 404);
	th_resp_free(&r);
	cr_assert_eq(th_request(td.port, "GET", "/v1/precincts/abc", NULL, NULL, 0, &r), 0);
	cr_expect_eq(r.status, 400);
	th_resp_free(&r);
	json_t *seats = th_get_json(td.port, "/v1/seats");
	cr_expect(seats);
	json_decref(seats);
}

/* ---- restart and the definition pin --------------------------------------- */

Test(daemon, restart_keeps_exact_totals, .init = setup, .fini = teardown)
{
	struct bal_gen *g = new_gen(8, 30, BAL_KIND_BALLOTS);
	struct bal_expect *e = bal_expect_new(defn);
	int fd = th_connect(td.port);
	for (uint32_t p = 0; p < defn->nprecincts; p++) {
		struct bal_batch b;
		const uint8_t *body;
		size_t len;
		char why[256];
		cr_assert_eq(bal_gen_batch(g, p, 1, &b, &body, &len, why, sizeof(why)), 0);
		cr_assert_eq(post_on(fd, body, len, NULL), 200);
		bal_expect_fold(e, &b, why, sizeof(why));
	}
	close(fd);
	cr_assert_eq(th_stop(&td), 0, "SIGTERM exits 0");
	char data[600];
	snprintf(data, sizeof(data), "%s/data", dir);
	cr_assert_eq(th_start(&td, defn_path, data, 0, NULL), 0);
	json_t *snap = th_get_json(td.port, "/v1/snapshot");
	cr_expect(th_snapshot_matches(snap, defn, e));
	json_decref(snap);
	bal_expect_free(e);
	bal_gen_free(g);
}

/* A second daemon (`pid`) must exit non-zero within 15 s; killed and failed if it keeps running. */
static void expect_refused(pid_t pid, const char *what)
{
	cr_assert_gt(pid, 0);
	int st = -1;
	for (int i = 0; i < 1500 && waitpid(pid, &st, WNOHANG) != pid; i++)
		usleep(10000);
	if (kill(pid, 0) == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		cr_assert_fail("a second daemon %s started and kept running", what);
	}
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) != 0, "a second daemon %s must not start", what);
}

Test(daemon, refuses_a_port_another_daemon_listens_on, .init = setup, .fini = teardown)
{
	/* Several I/O threads share the port through SO_REUSEPORT; a second
	 * daemon must not be able to join it and take a share of the uploads. */
	char data2[600];
	struct th_daemon t2 = {0};
	snprintf(data2, sizeof(data2), "%s/data2", dir);
	snprintf(t2.log, sizeof(t2.log), "%s/second.log", dir);
	const char *const args[] = {"--threads", "2", NULL};
	expect_refused(th_daemon_spawn(defn_path, data2, td.port, args, t2.log), "on the same port");
	char *text = th_read_log(&t2);
	cr_expect(strstr(text, "cannot listen on") && strstr(text, "Address already in use"), "log should say why: %s",
	          text);
	free(text);
	json_t *h = th_get_json(td.port, "/healthz");
	cr_expect_not_null(h, "the first daemon still answers");
	json_decref(h);
}

/*
 * Two daemons on one data directory would each count and deduplicate from
 * their own memory: the second must refuse to start, name the first, and
 * leave it serving; once the first is killed (kill -9: the kernel drops its
 * lock), a new one starts on the directory.
 */
Test(daemon, refuses_a_data_directory_another_daemon_holds, .init = setup, .fini = teardown)
{
	char data[600];
	struct th_daemon t2 = {0};
	snprintf(data, sizeof(data), "%s/data", dir);
	snprintf(t2.log, sizeof(t2.log), "%s/second.log", dir);
	expect_refused(th_daemon_spawn(defn_path, data, 0, NULL, t2.log), "on the same data directory");
	char *text = th_read_log(&t2);
	char want[64];
	snprintf(want, sizeof(want), "in use by another process (pid %d,", (int)td.pid);
	cr_expect(strstr(text, want), "log should name the holder (%s): %s", want, text);
	free(text);
	json_t *h = th_get_json(td.port, "/healthz");
	cr_expect_not_null(h, "the first daemon still answers");
	json_decref(h);
	th_kill9(&td);
	cr_assert_eq(th_start(&td, defn_path, data, 0, NULL), 0, "after kill -9 the directory is free again");
}

Test(daemon, refuses_a_different_definition, .init = setup, .fini = teardown)
{
	cr_assert_eq(th_stop(&td), 0);
	char *other = th_write_defn(dir, 21, 3, 4, KEY_SEED, true);
	char data[600];
	snprintf(data, sizeof(data), "%s/data", dir);
	struct th_daemon t2;
	int st = th_run_to_exit(&t2, other, data, NULL);
	cr_expect_neq(st, 0, "a different definition must be refused");
	char *log = th_read_log(&t2);
	cr_expect(strstr(log, "belongs to definition"), "log should say why: %s", log);
	free(log);
	free(other);
	/* The right one still starts. */
	cr_assert_eq(th_start(&td, defn_path, data, 0, NULL), 0);
}
