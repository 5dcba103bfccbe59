/* SPDX-License-Identifier: Apache-2.0 */
/*
 * PROTOCOL batches against the real ballotd on 127.0.0.1 (ephemeral port):
 * the latest protocol (highest seq) replaces a precinct's contribution to
 * every total, an older one arriving later is journaled and counts nothing
 * but a batch, ballot batches after a protocol change only the precinct's
 * ballot sums, and the difference between protocol and ballot sums shows on
 * /v1/precincts/{id}. Every answer is compared with the independent fold of
 * client/expect.h; restarts (SIGTERM and kill -9) must give the same answers.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "defn/defn.h"
#include "client/gen.h"
#include "tests/integration/harness.h"

#define KEY_SEED   23
#define NPRECINCTS 12

static char *dir;
static char *defn_path;
static struct bal_defn *defn;
static struct th_daemon td;
static struct bal_gen *gb; /* BALLOTS batches, and the protocols of their sums */
static struct bal_expect *ex;

static void data_dir(char *buf, size_t len)
{
	snprintf(buf, len, "%s/data", dir);
}

static void setup_with(const char *const *extra)
{
	dir = th_tmpdir();
	cr_assert(dir);
	defn_path = th_write_defn(dir, NPRECINCTS, 3, 4, KEY_SEED, true);
	cr_assert(defn_path);
	char why[256], data[600];
	cr_assert_eq(bal_defn_load(defn_path, &defn, why, sizeof(why)), 0, "%s", why);
	data_dir(data, sizeof(data));
	cr_assert_eq(th_start(&td, defn_path, data, 0, extra), 0);
	struct bal_gen_opts o = {.seed = 31, .key_seed = KEY_SEED, .batch_size = 25, .kind = BAL_KIND_BALLOTS};
	cr_assert_eq(bal_gen_new(defn, &o, &gb, why, sizeof(why)), 0, "%s", why);
	ex = bal_expect_new(defn);
	cr_assert(ex);
}

static void setup(void)
{
	setup_with(NULL);
}

/* Snapshots every 4 batches: a restart loads one and replays the tail. */
static const char *const snap_args[] = {"--snapshot-every", "4", NULL};

static void setup_snapshots(void)
{
	setup_with(snap_args);
}

static void teardown(void)
{
	if (td.pid > 0)
		cr_expect_eq(th_stop(&td), 0, "ballotd should exit 0 on SIGTERM");
	bal_expect_free(ex);
	bal_gen_free(gb);
	bal_defn_free(defn);
	free(defn_path);
	th_rmdir(dir);
	free(dir);
}

/* POSTs `body`; returns the parsed ack and sets *status. */
static json_t *post(const uint8_t *body, size_t len, int *status)
{
	struct th_resp r;
	cr_assert_eq(th_post(td.port, body, len, &r), 0);
	*status = r.status;
	json_error_t err;
	json_t *ack = json_loadb(r.body, r.len, 0, &err);
	cr_assert(ack, "ack is not JSON: %s", r.body);
	th_resp_free(&r);
	return ack;
}

static const char *ack_status(json_t *ack)
{
	return json_string_value(json_object_get(ack, "status"));
}

/* Posts `b` (whose bytes are body/len), expects ACCEPTED and folds it into the expected totals. */
static uint64_t post_accepted(const struct bal_batch *b, const uint8_t *body, size_t len)
{
	int st;
	json_t *ack = post(body, len, &st);
	cr_assert_eq(st, 200, "precinct %u seq %llu: %d %s", b->precinct_id, (unsigned long long)b->seq, st,
	             json_string_value(json_object_get(ack, "error")));
	cr_assert_str_eq(ack_status(ack), "ACCEPTED");
	uint64_t pos = (uint64_t)json_integer_value(json_object_get(ack, "position"));
	json_decref(ack);
	char why[256];
	cr_assert_eq(bal_expect_fold(ex, b, why, sizeof(why)), 0, "%s", why);
	return pos;
}

static void send_ballots(uint32_t p, uint64_t seq)
{
	struct bal_batch b;
	const uint8_t *body;
	size_t len;
	char why[256];
	cr_assert_eq(bal_gen_batch(gb, p, seq, &b, &body, &len, why, sizeof(why)), 0, "%s", why);
	post_accepted(&b, body, len);
}

static uint64_t send_protocol(uint32_t p, uint64_t seq, uint64_t covers, uint64_t shift)
{
	struct bal_batch b;
	const uint8_t *body;
	size_t len;
	char why[256];
	cr_assert_eq(bal_gen_protocol(gb, p, seq, covers, shift, &b, &body, &len, why, sizeof(why)), 0, "%s", why);
	return post_accepted(&b, body, len);
}

static json_t *get_precinct(uint32_t p)
{
	char path[64];
	snprintf(path, sizeof(path), "/v1/precincts/%u", defn->precincts[p].id);
	json_t *j = th_get_json(td.port, path);
	cr_assert(j, "GET %s", path);
	return j;
}

static int64_t jint(json_t *o, const char *k)
{
	return (int64_t)json_integer_value(json_object_get(o, k));
}

/* /v1/snapshot equals the expected fold, protocol and discrepancy counts included. */
static void assert_snapshot(const char *when)
{
	json_t *snap = th_get_json(td.port, "/v1/snapshot");
	cr_assert(th_snapshot_matches(snap, defn, ex), "%s: snapshot differs from the expected fold", when);
	cr_assert_eq(jint(snap, "precincts_with_protocol"), bal_expect_precincts_with_protocol(ex), "%s", when);
	cr_assert_eq(jint(snap, "precincts_with_discrepancy"), bal_expect_precincts_with_discrepancy(ex), "%s", when);
	json_decref(snap);
}

/*
 * /v1/precincts/{id} equals the expected fold: protocol_seq, the votes and
 * turnout it contributes, and exactly the (contest, choice) and turnout
 * fields where its protocol and its ballot sums differ. Returns the number
 * of vote discrepancies.
 */
static size_t assert_precinct(uint32_t p, const char *when)
{
	json_t *j = get_precinct(p);
	uint32_t id = defn->precincts[p].id;
	cr_assert_eq((uint64_t)jint(j, "protocol_seq"), bal_expect_protocol_seq(ex, p), "%s: precinct %u", when, id);
	struct bal_expect_turnout eff, sums;
	bal_expect_precinct_turnout(ex, p, false, &eff);
	bal_expect_precinct_turnout(ex, p, true, &sums);
	json_t *t = json_object_get(j, "turnout");
	cr_assert_eq((uint64_t)jint(t, "batches"), eff.batches, "%s: precinct %u", when, id);
	cr_assert_eq((uint64_t)jint(t, "ballots"), eff.ballots, "%s: precinct %u", when, id);
	cr_assert_eq((uint64_t)jint(t, "issued"), eff.issued, "%s: precinct %u", when, id);
	cr_assert_eq((uint64_t)jint(t, "cast"), eff.cast, "%s: precinct %u", when, id);
	cr_assert_eq((uint64_t)jint(t, "spoiled"), eff.spoiled, "%s: precinct %u", when, id);

	json_t *contests = json_object_get(j, "contests");
	json_t *disc = json_object_get(j, "discrepancies");
	size_t ci = 0, di = 0;
	for (uint32_t c = 0; c < defn->ncontests; c++) {
		if (!bal_defn_votes_in(defn, p, c))
			continue;
		json_t *votes = json_object_get(json_array_get(contests, ci++), "votes");
		for (uint32_t k = 0; k < defn->contests[c].nchoices; k++) {
			uint64_t pv = bal_expect_precinct_votes(ex, p, c, k);
			uint64_t bv = bal_expect_precinct_ballot_votes(ex, p, c, k);
			cr_assert_eq((uint64_t)json_integer_value(json_array_get(votes, k)), pv,
			             "%s: precinct %u contest %u choice %u", when, id, defn->contests[c].id, k);
			if (!bal_expect_protocol_seq(ex, p) || pv == bv)
				continue;
			json_t *d = json_array_get(disc, di++);
			cr_assert(d, "%s: precinct %u: discrepancy of contest %u choice %u missing", when, id,
			          defn->contests[c].id, k);
			cr_assert_eq(jint(d, "contest_id"), defn->contests[c].id, "%s", when);
			cr_assert_eq(jint(d, "choice_id"), defn->contests[c].choices[k].id, "%s", when);
			cr_assert_eq((uint64_t)jint(d, "protocol"), pv, "%s", when);
			cr_assert_eq((uint64_t)jint(d, "ballots"), bv, "%s", when);
			cr_assert_eq(jint(d, "difference"), (int64_t)pv - (int64_t)bv, "%s", when);
		}
	}
	cr_assert_eq(json_array_size(disc), di, "%s: precinct %u: %zu discrepancies, expected %zu", when, id,
	             json_array_size(disc), di);

	const char *names[] = {"issued", "cast", "spoiled"};
	const uint64_t pvals[] = {eff.issued, eff.cast, eff.spoiled}, bvals[] = {sums.issued, sums.cast, sums.spoiled};
	json_t *tdisc = json_object_get(j, "turnout_discrepancies");
	size_t ti = 0;
	for (int f = 0; f < 3; f++) {
		if (!bal_expect_protocol_seq(ex, p) || pvals[f] == bvals[f])
			continue;
		json_t *d = json_array_get(tdisc, ti++);
		cr_assert(d, "%s: precinct %u: turnout discrepancy %s missing", when, id, names[f]);
		cr_assert_str_eq(json_string_value(json_object_get(d, "field")), names[f]);
		cr_assert_eq((uint64_t)jint(d, "protocol"), pvals[f]);
		cr_assert_eq((uint64_t)jint(d, "ballots"), bvals[f]);
		cr_assert_eq(jint(d, "difference"), (int64_t)pvals[f] - (int64_t)bvals[f]);
	}
	cr_assert_eq(json_array_size(tdisc), ti, "%s: precinct %u turnout discrepancies", when, id);
	json_decref(j);
	return di;
}

static void assert_all(const char *when)
{
	assert_snapshot(when);
	for (uint32_t p = 0; p < defn->nprecincts; p++)
		assert_precinct(p, when);
}

Test(protocol, replaces_the_ballot_batches_in_every_total, .init = setup, .fini = teardown)
{
	/* Every precinct sends ballot batches 1..3; precincts 0..5 then send their
	 * protocol (seq 4): exact for 0..3, shifted by 7 votes for 4 and 5. */
	for (uint64_t seq = 1; seq <= 3; seq++)
		for (uint32_t p = 0; p < NPRECINCTS; p++)
			send_ballots(p, seq);
	assert_all("ballots only");
	json_t *before = th_get_json(td.port, "/v1/snapshot");
	for (uint32_t p = 0; p < 6; p++)
		send_protocol(p, 4, 3, p >= 4 ? 7 : 0);
	assert_all("after the protocols");
	cr_assert_eq(bal_expect_precincts_with_protocol(ex), 6);
	cr_assert_eq(bal_expect_precincts_with_discrepancy(ex), 2);
	cr_assert_eq(assert_precinct(0, "exact protocol"), 0);
	cr_assert_eq(assert_precinct(4, "shifted protocol"), 2, "7 votes moved: one choice down, one up");
	/* Exact protocols leave the totals where the ballots had them. */
	json_t *after = th_get_json(td.port, "/v1/snapshot");
	json_t *c0b = json_array_get(json_object_get(before, "contests"), 0);
	json_t *c0a = json_array_get(json_object_get(after, "contests"), 0);
	cr_assert_eq(jint(c0a, "total_votes"), jint(c0b, "total_votes"), "a shift moves votes, it adds none");
	cr_assert_eq(jint(after, "batches"), jint(before, "batches") + 6);
	json_decref(before);
	json_decref(after);
}

Test(protocol, newer_replaces_and_older_is_accepted_but_counts_nothing, .init = setup, .fini = teardown)
{
	uint32_t p = 2;
	for (uint64_t seq = 1; seq <= 4; seq++)
		send_ballots(p, seq);
	send_protocol(p, 5, 2, 0);
	assert_all("protocol 5");
	send_protocol(p, 9, 4, 3);
	assert_all("protocol 9");
	json_t *before = th_get_json(td.port, "/v1/snapshot");
	json_t *pbefore = get_precinct(p);
	/* Seq 7 arrives late: ACCEPTED, journaled, and only the batch count moves. */
	uint64_t pos = send_protocol(p, 7, 1, 0);
	cr_assert_eq(pos, 7, "journaled like any batch");
	assert_all("late protocol 7");
	json_t *after = th_get_json(td.port, "/v1/snapshot");
	json_t *pafter = get_precinct(p);
	cr_assert_eq(jint(pafter, "protocol_seq"), 9);
	cr_assert_eq(jint(after, "batches"), jint(before, "batches") + 1);
	json_object_del(before, "batches");
	json_object_del(after, "batches");
	json_object_del(before, "position");
	json_object_del(after, "position");
	json_object_del(json_object_get(before, "turnout"), "batches");
	json_object_del(json_object_get(after, "turnout"), "batches");
	cr_assert(json_equal(before, after), "an older protocol changed a total");
	cr_assert(json_equal(json_object_get(pbefore, "contests"), json_object_get(pafter, "contests")));
	cr_assert(json_equal(json_object_get(pbefore, "discrepancies"), json_object_get(pafter, "discrepancies")));
	/* Seqs 1..5, 7 and 9 are journaled. */
	json_t *runs = json_object_get(pafter, "accepted_seqs");
	cr_assert_eq(json_array_size(runs), 3);
	cr_assert_eq(json_integer_value(json_array_get(json_array_get(runs, 1), 0)), 7);
	cr_assert_eq(jint(pafter, "accepted_batches"), 7);
	json_decref(before);
	json_decref(after);
	json_decref(pbefore);
	json_decref(pafter);
}

Test(protocol, ballots_after_the_protocol_change_only_the_ballot_sums, .init = setup, .fini = teardown)
{
	uint32_t p = 5;
	send_protocol(p, 10, 3, 0);
	assert_all("protocol first");
	cr_assert_eq(bal_expect_precincts_with_discrepancy(ex), 1, "no ballots yet: everything differs");
	json_t *before = th_get_json(td.port, "/v1/snapshot");
	for (uint64_t seq = 1; seq <= 3; seq++)
		send_ballots(p, seq);
	assert_all("ballots after the protocol");
	cr_assert_eq(bal_expect_precincts_with_discrepancy(ex), 0, "the ballots add up to the protocol");
	json_t *after = th_get_json(td.port, "/v1/snapshot");
	json_t *cb = json_object_get(before, "contests"), *ca = json_object_get(after, "contests");
	cr_assert(json_equal(cb, ca), "ballot batches after a protocol changed the totals");
	cr_assert_eq(jint(json_object_get(after, "turnout"), "ballots"), 75, "cast-vote records still count");
	json_decref(before);
	json_decref(after);
}

Test(protocol, lower_protocol_gives_negative_differences, .init = setup, .fini = teardown)
{
	uint32_t p = 7;
	for (uint64_t seq = 1; seq <= 3; seq++)
		send_ballots(p, seq);
	send_protocol(p, 4, 1, 0); /* covers batch 1 only */
	assert_all("protocol below the ballots");
	json_t *j = get_precinct(p);
	json_t *td_cast = NULL, *d;
	size_t i;
	json_array_foreach(json_object_get(j, "turnout_discrepancies"), i, d)
	{
		if (strcmp(json_string_value(json_object_get(d, "field")), "cast") == 0)
			td_cast = d;
	}
	cr_assert(td_cast, "the protocol's cast differs from the ballots'");
	cr_assert_eq(jint(td_cast, "protocol"), 25);
	cr_assert_eq(jint(td_cast, "ballots"), 75);
	cr_assert_eq(jint(td_cast, "difference"), -50);
	size_t negative = 0;
	json_array_foreach(json_object_get(j, "discrepancies"), i, d)
	{
		negative += jint(d, "difference") < 0;
	}
	cr_assert_gt(negative, 0);
	json_decref(j);
}

Test(protocol, duplicates_and_conflicts_behave_like_other_batches, .init = setup, .fini = teardown)
{
	uint32_t p = 1;
	send_ballots(p, 1);
	struct bal_batch b;
	const uint8_t *body;
	size_t len;
	char why[256];
	cr_assert_eq(bal_gen_protocol(gb, p, 2, 1, 4, &b, &body, &len, why, sizeof(why)), 0, "%s", why);
	uint8_t *copy = malloc(len);
	memcpy(copy, body, len);
	uint64_t pos = post_accepted(&b, body, len);
	int st;
	json_t *ack = post(copy, len, &st);
	cr_assert_eq(st, 200);
	cr_assert_str_eq(ack_status(ack), "DUPLICATE");
	cr_assert_eq((uint64_t)jint(ack, "position"), pos);
	json_decref(ack);
	/* Same (precinct, seq), other numbers: 409, recorded, not counted. */
	cr_assert_eq(bal_gen_protocol(gb, p, 2, 1, 0, &b, &body, &len, why, sizeof(why)), 0, "%s", why);
	ack = post(body, len, &st);
	cr_assert_eq(st, 409, "%s", json_string_value(json_object_get(ack, "error")));
	cr_assert(strstr(json_string_value(json_object_get(ack, "error")), "conflicting resend"));
	json_decref(ack);
	assert_all("after the duplicate and the conflict");
	json_t *j = get_precinct(p);
	cr_assert_eq(json_array_size(json_object_get(j, "conflicts")), 1);
	cr_assert_eq(jint(j, "accepted_batches"), 2);
	json_decref(j);
	free(copy);
}

Test(protocol, incomplete_protocols_are_422_and_change_nothing, .init = setup, .fini = teardown)
{
	uint32_t p = 3;
	struct bal_batch b;
	const uint8_t *body;
	size_t len;
	char why[256];
	cr_assert_eq(bal_gen_protocol(gb, p, 1, 2, 0, &b, &body, &len, why, sizeof(why)), 0, "%s", why);
	/* Drop the last contest's tally, then the turnout. */
	struct bal_batch bad = b;
	bad.ntallies--;
	size_t blen;
	uint8_t *bytes = th_signed_batch(&bad, true, KEY_SEED, &blen);
	int st;
	json_t *ack = post(bytes, blen, &st);
	cr_assert_eq(st, 422);
	const char *err = json_string_value(json_object_get(ack, "error"));
	char want[128];
	snprintf(want, sizeof(want), "contest %u is missing", b.tallies[b.ntallies - 1].contest_id);
	cr_assert(strstr(err, want), "%s", err);
	json_decref(ack);
	free(bytes);
	bad = b;
	bad.has_turnout = false;
	bytes = th_signed_batch(&bad, true, KEY_SEED, &blen);
	ack = post(bytes, blen, &st);
	cr_assert_eq(st, 422);
	cr_assert(strstr(json_string_value(json_object_get(ack, "error")), "must carry a turnout"));
	json_decref(ack);
	free(bytes);
	json_t *snap = th_get_json(td.port, "/v1/snapshot");
	cr_assert_eq(jint(snap, "position"), 0);
	cr_assert_eq(jint(snap, "precincts_with_protocol"), 0);
	json_decref(snap);
	/* The complete one is accepted. */
	post_accepted(&b, body, len);
	assert_all("complete protocol");
}

/* A mixed history: ballots, protocols (one shifted), ballots after a
 * protocol, a newer protocol, an older one late. */
static void mixed_history(void)
{
	for (uint32_t p = 0; p < NPRECINCTS; p++)
		send_ballots(p, 1);
	send_protocol(0, 3, 1, 0);
	send_protocol(1, 2, 1, 5);
	send_ballots(1, 3);
	send_protocol(2, 8, 2, 2);
	send_ballots(2, 2);
	send_protocol(2, 9, 2, 0);
	send_protocol(2, 4, 1, 9);
	send_protocol(3, 2, 0, 0);
	assert_all("before the restart");
}

static void restart(bool kill9)
{
	if (kill9)
		th_kill9(&td);
	else
		cr_assert_eq(th_stop(&td), 0, "SIGTERM exits 0");
	char data[600];
	data_dir(data, sizeof(data));
	cr_assert_eq(th_start(&td, defn_path, data, 0, snap_args), 0);
}

Test(protocol, sigterm_restart_gives_the_same_answers, .init = setup_snapshots, .fini = teardown)
{
	mixed_history();
	restart(false);
	assert_all("after SIGTERM and restart");
	/* And it goes on counting protocols with the same semantics. */
	send_protocol(3, 5, 1, 1);
	send_protocol(0, 2, 1, 0); /* older than 3 */
	assert_all("after more protocols");
}

Test(protocol, kill9_restart_replays_to_the_same_answers, .init = setup_snapshots, .fini = teardown)
{
	mixed_history();
	restart(true);
	assert_all("after kill -9 and restart");
	send_ballots(0, 4);
	send_protocol(1, 6, 2, 0);
	restart(true);
	assert_all("after a second kill -9");
}

/*
 * Protocols among ballot batches of other precincts, all pipelined on one
 * connection in one write, so that they reach the committer together: a
 * protocol needs the exact overflow check against the committed counters and
 * so opens a group of its own. What this checks is that the groups split
 * that way still answer in order and count exactly (realistic counts never
 * overflow, so it would pass without the split too; the overflow that needs
 * it is ingest/counter_overflow_within_one_group_is_422). Per precinct:
 * ballots 1 and 2, protocol 3
 * (shifted for some), ballots 4, protocol 6, protocol 5 (older, late),
 * ballots 7 and a resend of 4; the steps go round the precincts in turn.
 * Every ack must come back in order with the planned answer, and the totals
 * must equal the fold, before and after kill -9.
 */
Test(protocol, pipelined_among_ballot_batches_count_exactly, .init = setup_snapshots, .fini = teardown)
{
	enum { NSTEPS = 8 };
	const struct {
		bool protocol;
		uint64_t seq, covers;
	} plan[NSTEPS] = {{false, 1, 0}, {false, 2, 0}, {true, 3, 2},  {false, 4, 0},
	                  {true, 6, 3},  {true, 5, 3},  {false, 7, 0}, {false, 4, 0}};
	const size_t nreq = (size_t)NSTEPS * NPRECINCTS;
	size_t cap = nreq * 4096, n = 0;
	char *buf = malloc(cap);
	uint8_t *resend[NPRECINCTS];
	size_t resend_len[NPRECINCTS];
	bool dup[NSTEPS * NPRECINCTS];
	cr_assert(buf);
	for (int s = 0; s < NSTEPS; s++) {
		for (uint32_t p = 0; p < NPRECINCTS; p++) {
			struct bal_batch b;
			const uint8_t *body;
			size_t len;
			char why[256];
			dup[s * NPRECINCTS + p] = s == NSTEPS - 1;
			if (s == NSTEPS - 1) {
				body = resend[p];
				len = resend_len[p];
			} else if (plan[s].protocol) {
				cr_assert_eq(bal_gen_protocol(gb, p, plan[s].seq, plan[s].covers, p % 3, &b, &body,
				                              &len, why, sizeof(why)),
				             0, "%s", why);
				cr_assert_eq(bal_expect_fold(ex, &b, why, sizeof(why)), 0, "%s", why);
			} else {
				cr_assert_eq(bal_gen_batch(gb, p, plan[s].seq, &b, &body, &len, why, sizeof(why)), 0,
				             "%s", why);
				cr_assert_eq(bal_expect_fold(ex, &b, why, sizeof(why)), 0, "%s", why);
				if (plan[s].seq == 4) {
					resend[p] = malloc(len);
					cr_assert(resend[p]);
					memcpy(resend[p], body, len);
					resend_len[p] = len;
				}
			}
			cr_assert(n + len + 128 < cap);
			n += (size_t)sprintf(
			        buf + n, "POST /v1/batches HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n", len);
			memcpy(buf + n, body, len);
			n += len;
		}
	}
	int fd = th_connect(td.port);
	cr_assert_eq(th_send(fd, buf, n), 0, "every request goes out in one write");
	for (size_t i = 0; i < nreq; i++) {
		struct th_resp r;
		cr_assert_eq(th_read_resp(fd, &r, 10000), 0, "response %zu", i);
		cr_assert_eq(r.status, 200, "response %zu: %s", i, r.body);
		const char *want = dup[i] ? "\"status\":\"DUPLICATE\"" : "\"status\":\"ACCEPTED\"";
		cr_assert(strstr(r.body, want), "response %zu (step %zu, precinct %zu): %s, want %s", i, i / NPRECINCTS,
		          i % NPRECINCTS, r.body, want);
		th_resp_free(&r);
	}
	close(fd);
	for (uint32_t p = 0; p < NPRECINCTS; p++)
		free(resend[p]);
	free(buf);
	assert_all("pipelined");
	cr_assert_eq(bal_expect_precincts_with_protocol(ex), NPRECINCTS);
	restart(true);
	assert_all("pipelined, after kill -9");
}
