/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Commission amendments against the real ballotd on 127.0.0.1 (ephemeral
 * port): a revoked key refuses later batches while earlier ones count, a
 * rotated key refuses the old key and accepts the new one (also for a batch
 * already in flight when the key changes), a void leaves the totals of the
 * batches that remain (client/expect.h's independent fold) and a resend of
 * the voided batch is DUPLICATE, a freeze refuses new batches, a
 * certification shows on the snapshot and the precinct page, and every
 * refused amendment changes nothing. All of it survives kill -9 and replays
 * identically, with and without snapshot slices after it; `ballotctl audit`
 * passes on such a journal and fails when an amendment's signature in the
 * data directory is edited offline. `ballotctl amend` is the client used
 * where the test speaks as the commission.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <lmdb.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/defgen.h"
#include "client/gen.h"
#include "client/keys.h"
#include "client/logcheck.h"
#include "defn/defn.h"
#include "proto/codec.h"
#include "storage/store_lmdb.h"
#include "tests/integration/harness.h"

#define KEY_SEED     61
#define NEW_KEY_SEED 62 /* the demo keys of another seed: the rotated ones */
#define NPRECINCTS   12

static struct {
	char *dir, *defn_path, *log_key, *commission;
	char data[600], server[64];
	struct bal_defn *defn;
	struct th_daemon td;
	struct bal_gen *gb, *gt;
	struct bal_expect *ex;
	uint8_t cpk[32], csk[64], log_pk[32];
	uint64_t position; /* the last journal position acknowledged */
	uint64_t seq;      /* the commission's last seq */
	const char *const *args;
} t;

static const char *const no_snapshots[] = {"--snapshot-every", "4000000000", "--snapshot-interval", "60m", NULL};
static const char *const many_snapshots[] = {"--snapshot-every", "2", "--snapshot-interval", "10ms", NULL};

static void start(void)
{
	const char *argv[16];
	int n = 0;
	argv[n++] = "--log-key";
	argv[n++] = t.log_key;
	for (int i = 0; t.args && t.args[i]; i++)
		argv[n++] = t.args[i];
	argv[n] = NULL;
	cr_assert_eq(th_start(&t.td, t.defn_path, t.data, 0, argv), 0);
	snprintf(t.server, sizeof(t.server), "127.0.0.1:%u", t.td.port);
}

static void setup_with(const char *const *args, bool commission)
{
	memset(&t, 0, sizeof(t));
	t.args = args;
	t.dir = th_tmpdir();
	cr_assert(t.dir);
	th_commission_keypair(t.cpk, t.csk);
	struct bal_defgen_opts o;
	bal_defgen_defaults(&o);
	o.precincts = NPRECINCTS;
	o.districts = 3;
	o.choices = 4;
	o.seed = KEY_SEED;
	o.unbounded = true;
	o.commission_key = commission ? t.cpk : NULL;
	t.defn_path = th_write_defn_opts(t.dir, &o);
	cr_assert(t.defn_path);
	char why[256];
	cr_assert_eq(bal_defn_load(t.defn_path, &t.defn, why, sizeof(why)), 0, "%s", why);
	t.log_key = th_write_log_key(t.dir, NULL);
	t.commission = th_write_commission_key(t.dir);
	cr_assert(t.log_key && t.commission);
	uint8_t sk[64];
	th_log_keypair(t.log_pk, sk);
	snprintf(t.data, sizeof(t.data), "%s/data", t.dir);
	start();
	struct bal_gen_opts g = {.seed = 5, .key_seed = KEY_SEED, .batch_size = 20, .kind = BAL_KIND_BALLOTS};
	cr_assert_eq(bal_gen_new(t.defn, &g, &t.gb, why, sizeof(why)), 0, "%s", why);
	g.kind = BAL_KIND_TALLY;
	cr_assert_eq(bal_gen_new(t.defn, &g, &t.gt, why, sizeof(why)), 0, "%s", why);
	t.ex = bal_expect_new(t.defn);
	cr_assert(t.ex);
}

static void setup(void)
{
	setup_with(NULL, true);
}

static void setup_no_snapshots(void)
{
	setup_with(no_snapshots, true);
}

static void setup_many_snapshots(void)
{
	setup_with(many_snapshots, true);
}

static void setup_no_commission(void)
{
	setup_with(NULL, false);
}

static void teardown(void)
{
	if (t.td.pid > 0)
		cr_expect_eq(th_stop(&t.td), 0, "ballotd should exit 0 on SIGTERM");
	bal_expect_free(t.ex);
	bal_gen_free(t.gb);
	bal_gen_free(t.gt);
	bal_defn_free(t.defn);
	free(t.defn_path);
	free(t.log_key);
	free(t.commission);
	th_rmdir(t.dir);
	free(t.dir);
}

/* ---- talking to the daemon -------------------------------------------------- */

static json_t *parse_ack(struct th_resp *r, int *status)
{
	*status = r->status;
	json_error_t err;
	json_t *ack = json_loadb(r->body, r->len, 0, &err);
	cr_assert(ack, "ack is not JSON (HTTP %d): %s", r->status, r->body);
	th_resp_free(r);
	return ack;
}

static json_t *post(const uint8_t *body, size_t len, int *status)
{
	struct th_resp r;
	cr_assert_eq(th_post(t.td.port, body, len, &r), 0);
	return parse_ack(&r, status);
}

static const char *ack_status(json_t *ack)
{
	return json_string_value(json_object_get(ack, "status"));
}

static const char *ack_error(json_t *ack)
{
	return json_string_value(json_object_get(ack, "error"));
}

static uint64_t ack_position(json_t *ack)
{
	return (uint64_t)json_integer_value(json_object_get(ack, "position"));
}

/* The ack's receipt proves that `body` is leaf position - 1 of the signed log. */
static void assert_receipt(json_t *ack, const uint8_t *body, size_t len)
{
	struct bal_receipt r;
	char why[600] = "";
	cr_assert_eq(bal_logcheck_receipt_from_json(ack, &r, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(r.leaf_index, ack_position(ack) - 1);
	uint8_t leaf[BAL_HASH_BYTES];
	bal_logcheck_leaf_hash(body, len, leaf);
	cr_assert_arr_eq(r.leaf_hash, leaf, sizeof(leaf));
	cr_assert_eq(bal_logcheck_receipt_verify(&r, t.defn->election_id, t.log_pk, why, sizeof(why)), 0, "%s", why);
}

/* Posts `b` (bytes body/len): ACCEPTED, folded into the expected totals. */
static uint64_t accepted(const struct bal_batch *b, const uint8_t *body, size_t len)
{
	int st;
	json_t *ack = post(body, len, &st);
	cr_assert_eq(st, 200, "precinct %u seq %llu: %d %s", b->precinct_id, (unsigned long long)b->seq, st,
	             ack_error(ack));
	cr_assert_str_eq(ack_status(ack), "ACCEPTED");
	t.position = ack_position(ack);
	json_decref(ack);
	char why[256];
	cr_assert_eq(bal_expect_fold(t.ex, b, why, sizeof(why)), 0, "%s", why);
	return t.position;
}

static uint64_t send_ballots(uint32_t p, uint64_t seq)
{
	struct bal_batch b;
	const uint8_t *body;
	size_t len;
	char why[256];
	cr_assert_eq(bal_gen_batch(t.gb, p, seq, &b, &body, &len, why, sizeof(why)), 0, "%s", why);
	return accepted(&b, body, len);
}

static uint64_t send_protocol(uint32_t p, uint64_t seq, uint64_t covers, uint64_t shift)
{
	struct bal_batch b;
	const uint8_t *body;
	size_t len;
	char why[256];
	cr_assert_eq(bal_gen_protocol(t.gt, p, seq, covers, shift, &b, &body, &len, why, sizeof(why)), 0, "%s", why);
	return accepted(&b, body, len);
}

/* The ballots batch (p, seq) signed with the demo key of `key_seed`; malloc'd. */
static uint8_t *ballots_signed_by(uint32_t p, uint64_t seq, uint64_t key_seed, size_t *len)
{
	struct bal_batch b;
	const uint8_t *body;
	size_t n;
	char why[256];
	cr_assert_eq(bal_gen_batch(t.gb, p, seq, &b, &body, &n, why, sizeof(why)), 0, "%s", why);
	return th_signed_batch(&b, true, key_seed, len);
}

/* The ballots batch (p, seq) signed with the demo key of `key_seed`: ACCEPTED. */
static void accepted_signed_by(uint32_t p, uint64_t seq, uint64_t key_seed)
{
	size_t len;
	uint8_t *body = ballots_signed_by(p, seq, key_seed, &len);
	struct bal_batch b;
	const uint8_t *unused;
	size_t n;
	char why[256];
	cr_assert_eq(bal_gen_batch(t.gb, p, seq, &b, &unused, &n, why, sizeof(why)), 0, "%s", why);
	accepted(&b, body, len);
	free(body);
}

/* Posts the amendment `a` signed by the commission; its ack and status. */
static json_t *amend(struct bal_amendment a, int *status, uint8_t **sent, size_t *sent_len)
{
	size_t len;
	uint8_t *body = th_signed_amendment(&a, t.csk, &len);
	struct th_resp r;
	cr_assert_eq(th_post_amendment(t.td.port, body, len, &r), 0);
	json_t *ack = parse_ack(&r, status);
	if (sent) {
		*sent = body;
		*sent_len = len;
	} else {
		free(body);
	}
	return ack;
}

/* The next amendment of the commission: ACCEPTED, with a receipt; its position. */
static uint64_t amend_ok(struct bal_amendment a)
{
	a.seq = ++t.seq;
	if (!a.reason)
		a.reason = "decision of the commission";
	int st;
	uint8_t *body;
	size_t len;
	json_t *ack = amend(a, &st, &body, &len);
	cr_assert_eq(st, 200, "amendment %s: %d %s", bal_change_name(a.change), st, ack_error(ack));
	cr_assert_str_eq(ack_status(ack), "ACCEPTED");
	cr_assert_gt(ack_position(ack), t.position, "a position after every acknowledged one");
	assert_receipt(ack, body, len);
	t.position = ack_position(ack);
	json_decref(ack);
	free(body);
	return t.position;
}

/* An amendment the daemon refuses with `want` and a reason holding `text`. */
static void amend_refused(struct bal_amendment a, int want, const char *text)
{
	if (!a.seq)
		a.seq = t.seq + 1;
	if (!a.reason)
		a.reason = "a mistake";
	json_t *before = th_get_json(t.td.port, "/v1/snapshot");
	int st;
	json_t *ack = amend(a, &st, NULL, NULL);
	cr_assert_eq(st, want, "amendment %s: %d %s, expected %d", bal_change_name(a.change), st, ack_error(ack), want);
	cr_assert_str_eq(ack_status(ack), "REJECTED");
	cr_assert(strstr(ack_error(ack), text), "reason \"%s\" should hold \"%s\"", ack_error(ack), text);
	json_decref(ack);
	json_t *after = th_get_json(t.td.port, "/v1/snapshot");
	cr_assert(json_equal(before, after), "a refused amendment changed the snapshot");
	json_decref(before);
	json_decref(after);
}

static void assert_totals(const char *when)
{
	json_t *snap = th_get_json(t.td.port, "/v1/snapshot");
	cr_assert(th_snapshot_matches_at(snap, t.defn, t.ex, t.position), "%s: the snapshot differs from the fold",
	          when);
	cr_assert_eq((uint64_t)json_integer_value(json_object_get(snap, "precincts_with_protocol")),
	             bal_expect_precincts_with_protocol(t.ex), "%s", when);
	cr_assert_eq((uint64_t)json_integer_value(json_object_get(snap, "precincts_with_discrepancy")),
	             bal_expect_precincts_with_discrepancy(t.ex), "%s", when);
	json_decref(snap);
}

static json_t *precinct_page(uint32_t p)
{
	char path[64];
	snprintf(path, sizeof(path), "/v1/precincts/%u", t.defn->precincts[p].id);
	json_t *j = th_get_json(t.td.port, path);
	cr_assert(j, "GET %s", path);
	return j;
}

/* Posts `body` and expects `want` with a reason holding `text`; nothing counted. */
static void refused(const uint8_t *body, size_t len, int want, const char *text)
{
	int st;
	json_t *ack = post(body, len, &st);
	cr_assert_eq(st, want, "%d %s, expected %d", st, ack_error(ack), want);
	cr_assert(strstr(ack_error(ack), text), "reason \"%s\" should hold \"%s\"", ack_error(ack), text);
	json_decref(ack);
}

static uint32_t id_of(uint32_t p)
{
	return t.defn->precincts[p].id;
}

/* A whole file, malloc'd ("" if missing). */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t cap = 0, n = 0;
	while (f) {
		if (n + 4096 > cap) {
			cap = cap ? 2 * cap : 8192;
			buf = realloc(buf, cap);
		}
		size_t got = fread(buf + n, 1, cap - n - 1, f);
		if (!got)
			break;
		n += got;
	}
	if (f)
		fclose(f);
	if (!buf)
		return strdup("");
	buf[n] = '\0';
	return buf;
}

/* `ballotctl audit` against the daemon with the log key pinned: its exit
 * status, its report in *report (malloc'd). */
static int audit(char **report)
{
	char pub[700], out[700];
	snprintf(pub, sizeof(pub), "%s.pub", t.log_key);
	snprintf(out, sizeof(out), "%s/audit.txt", t.dir);
	const char *args[] = {"audit", "--server", t.server, "--definition", t.defn_path, "--server-key", pub, NULL};
	int rc = th_ctl_run(out, out, args);
	*report = slurp(out);
	return rc;
}

/* ---- keys ------------------------------------------------------------------------- */

Test(amend, revoked_key_refuses_later_batches_and_earlier_ones_count, .init = setup, .fini = teardown)
{
	send_ballots(0, 1);
	send_ballots(0, 2);
	send_ballots(1, 1);
	uint64_t at = amend_ok((struct bal_amendment){.change = BAL_CHANGE_REVOKE_KEY, .precinct_id = id_of(0)});
	size_t len;
	uint8_t *body = ballots_signed_by(0, 3, KEY_SEED, &len);
	char text[96];
	snprintf(text, sizeof(text), "revoked by the amendment at position %llu", (unsigned long long)at);
	refused(body, len, 401, text);
	free(body);
	send_ballots(1, 2); /* other precincts go on */
	assert_totals("after the revocation");
	json_t *page = precinct_page(0);
	json_t *key = json_object_get(page, "key");
	cr_assert_str_eq(json_string_value(json_object_get(key, "state")), "revoked");
	cr_assert_eq((uint64_t)json_integer_value(json_object_get(key, "amendment_position")), at);
	json_decref(page);
	page = precinct_page(1);
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(page, "key"), "state")), "definition");
	json_decref(page);
	/* Revoking it again makes no sense. */
	amend_refused((struct bal_amendment){.change = BAL_CHANGE_REVOKE_KEY, .precinct_id = id_of(0)}, 422,
	              "revoked already");
}

Test(amend, rotated_key_refuses_the_old_key_and_accepts_the_new, .init = setup, .fini = teardown)
{
	send_ballots(2, 1);
	uint8_t pk[32], sk[64];
	bal_demo_keypair(NEW_KEY_SEED, id_of(2), pk, sk);
	uint64_t at = amend_ok((struct bal_amendment){
	        .change = BAL_CHANGE_SET_KEY, .precinct_id = id_of(2), .public_key = pk, .public_key_len = 32});
	size_t len;
	uint8_t *old = ballots_signed_by(2, 2, KEY_SEED, &len);
	refused(old, len, 401, "does not verify against the public key of precinct");
	free(old);
	accepted_signed_by(2, 2, NEW_KEY_SEED);
	assert_totals("after the rotation");
	json_t *page = precinct_page(2);
	json_t *key = json_object_get(page, "key");
	cr_assert_str_eq(json_string_value(json_object_get(key, "state")), "amended");
	cr_assert_eq((uint64_t)json_integer_value(json_object_get(key, "amendment_position")), at);
	json_decref(page);
	amend_refused(
	        (struct bal_amendment){
	                .change = BAL_CHANGE_SET_KEY, .precinct_id = id_of(2), .public_key = pk, .public_key_len = 32},
	        422, "has that key already");
	/* A key for a revoked precinct brings it back. */
	amend_ok((struct bal_amendment){.change = BAL_CHANGE_REVOKE_KEY, .precinct_id = id_of(3)});
	bal_demo_keypair(NEW_KEY_SEED, id_of(3), pk, sk);
	amend_ok((struct bal_amendment){
	        .change = BAL_CHANGE_SET_KEY, .precinct_id = id_of(3), .public_key = pk, .public_key_len = 32});
	accepted_signed_by(3, 1, NEW_KEY_SEED);
	assert_totals("after the new key of a revoked precinct");
}

/*
 * Batches of one precinct pipelined on four connections, signed with its key,
 * while the commission revokes that key on another: every batch journaled
 * comes before the revocation; the others get 401, whether the I/O thread saw
 * the revoked key or the committer found the key changed in flight. (Each
 * connection sends fewer refusals than --max-failures-per-connection.)
 */
Test(amend, no_batch_is_journaled_after_its_key_is_revoked, .init = setup, .fini = teardown)
{
	enum { CONNS = 4, PER = 30 };
	static uint8_t wire[CONNS][PER * 1024];
	size_t at[CONNS] = {0};
	int fd[CONNS];
	for (int c = 0; c < CONNS; c++) {
		for (uint64_t i = 0; i < PER; i++) {
			size_t len;
			uint8_t *body = ballots_signed_by(4, 1 + (uint64_t)c * PER + i, KEY_SEED, &len);
			at[c] += (size_t)snprintf((char *)wire[c] + at[c], sizeof(wire[c]) - at[c],
			                          "POST /v1/batches HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n",
			                          len);
			cr_assert_lt(at[c] + len, sizeof(wire[c]));
			memcpy(wire[c] + at[c], body, len);
			at[c] += len;
			free(body);
		}
		fd[c] = th_connect(t.td.port);
		cr_assert_geq(fd[c], 0);
	}
	for (int c = 0; c < CONNS; c++)
		cr_assert_eq(th_send(fd[c], wire[c], at[c] / 2), 0);
	uint64_t revoked = amend_ok((struct bal_amendment){.change = BAL_CHANGE_REVOKE_KEY, .precinct_id = id_of(4)});
	for (int c = 0; c < CONNS; c++)
		cr_assert_eq(th_send(fd[c], wire[c] + at[c] / 2, at[c] - at[c] / 2), 0);
	unsigned ok = 0, refused_401 = 0, in_flight = 0;
	for (int c = 0; c < CONNS; c++) {
		for (unsigned i = 0; i < PER; i++) {
			struct th_resp r;
			cr_assert_eq(th_read_resp(fd[c], &r, 20000), 0, "connection %d, answer %u", c, i);
			int st;
			json_t *ack = parse_ack(&r, &st);
			if (st == 200) {
				cr_assert_lt(ack_position(ack), revoked,
				             "a batch journaled at %llu, after the revocation at %llu",
				             (unsigned long long)ack_position(ack), (unsigned long long)revoked);
				ok++;
			} else {
				cr_assert_eq(st, 401, "%d %s", st, ack_error(ack));
				cr_assert(strstr(ack_error(ack), "revoked") || strstr(ack_error(ack), "changed while"),
				          "%s", ack_error(ack));
				refused_401++;
				in_flight += strstr(ack_error(ack), "changed while") != NULL;
			}
			json_decref(ack);
		}
		close(fd[c]);
	}
	cr_assert_eq(ok + refused_401, CONNS * PER);
	cr_log_info("%u batches journaled before the revocation, %u refused (%u of them verified before it, "
	            "refused by the committer)",
	            ok, refused_401, in_flight);
	json_t *page = precinct_page(4);
	cr_assert_eq(json_integer_value(json_object_get(page, "accepted_batches")), ok);
	json_decref(page);
	char *report;
	cr_assert_eq(audit(&report), 0, "%s", report);
	free(report);
}

/* ---- voids ------------------------------------------------------------------------ */

/* The batch (p, seq) as the generators made it, for bal_expect_void(). */
static void expect_void(uint32_t p, uint64_t seq, bool protocol, uint64_t covers, uint64_t shift)
{
	struct bal_batch b;
	const uint8_t *body;
	size_t len;
	char why[256];
	if (protocol)
		cr_assert_eq(bal_gen_protocol(t.gt, p, seq, covers, shift, &b, &body, &len, why, sizeof(why)), 0, "%s",
		             why);
	else
		cr_assert_eq(bal_gen_batch(t.gb, p, seq, &b, &body, &len, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(bal_expect_void(t.ex, &b, why, sizeof(why)), 0, "%s", why);
}

/* A resend of the voided ballots batch (p, seq): DUPLICATE at `position`, nothing counted. */
static void resend_is_duplicate(uint32_t p, uint64_t seq, uint64_t position)
{
	struct bal_batch b;
	const uint8_t *body;
	size_t len;
	char why[256];
	cr_assert_eq(bal_gen_batch(t.gb, p, seq, &b, &body, &len, why, sizeof(why)), 0, "%s", why);
	int st;
	json_t *ack = post(body, len, &st);
	cr_assert_eq(st, 200);
	cr_assert_str_eq(ack_status(ack), "DUPLICATE");
	cr_assert_eq(ack_position(ack), position);
	json_decref(ack);
}

Test(amend, void_of_a_ballots_batch_leaves_the_fold_of_the_rest, .init = setup, .fini = teardown)
{
	uint64_t y = 0;
	for (uint64_t seq = 1; seq <= 3; seq++)
		for (uint32_t p = 0; p < 4; p++)
			if (send_ballots(p, seq) && p == 1 && seq == 3)
				y = t.position;
	uint64_t x = send_ballots(5, 1); /* precinct 5's only batch */
	assert_totals("before");
	uint64_t at = amend_ok((struct bal_amendment){
	        .change = BAL_CHANGE_VOID, .position = y, .reason = "entered twice (protocol 17/2)"});
	expect_void(1, 3, false, 0, 0);
	assert_totals("after the void of a ballots batch");
	amend_ok((struct bal_amendment){.change = BAL_CHANGE_VOID, .position = x});
	expect_void(5, 1, false, 0, 0);
	assert_totals("after the void of a precinct's only batch");
	json_t *snap = th_get_json(t.td.port, "/v1/snapshot");
	cr_assert_eq(json_integer_value(json_object_get(snap, "precincts_reporting")), 4);
	json_decref(snap);
	resend_is_duplicate(1, 3, y);
	resend_is_duplicate(5, 1, x);
	assert_totals("after the resends");
	/* The page lists it, with the reason. */
	json_t *page = precinct_page(1);
	json_t *v = json_array_get(json_object_get(page, "voided"), 0);
	cr_assert_eq((uint64_t)json_integer_value(json_object_get(v, "position")), y);
	cr_assert_eq(json_integer_value(json_object_get(v, "seq")), 3);
	cr_assert_eq((uint64_t)json_integer_value(json_object_get(v, "amendment_position")), at);
	cr_assert_str_eq(json_string_value(json_object_get(v, "reason")), "entered twice (protocol 17/2)");
	cr_assert_eq(json_array_size(json_object_get(page, "voided")), 1);
	cr_assert_eq(json_integer_value(json_object_get(page, "accepted_batches")), 3, "its seq stays taken");
	json_decref(page);
	/* What makes no sense is refused. */
	amend_refused((struct bal_amendment){.change = BAL_CHANGE_VOID, .position = y}, 422, "voided already");
	amend_refused((struct bal_amendment){.change = BAL_CHANGE_VOID, .position = at}, 422, "holds an amendment");
	amend_refused((struct bal_amendment){.change = BAL_CHANGE_VOID, .position = t.position + 1}, 422,
	              "beyond the journal");
	amend_refused((struct bal_amendment){.change = BAL_CHANGE_VOID, .position = 0}, 422, "position must be >= 1");
}

Test(amend, void_of_a_protocol_lets_the_previous_one_count, .init = setup, .fini = teardown)
{
	for (uint64_t seq = 1; seq <= 3; seq++) {
		send_ballots(6, seq);
		send_ballots(7, seq);
	}
	send_protocol(6, 4, 3, 0);               /* exact */
	uint64_t p6 = send_protocol(6, 5, 3, 6); /* moves 6 votes: counts, a discrepancy */
	uint64_t p7 = send_protocol(7, 4, 3, 9);
	send_ballots(6, 6); /* behind the protocol: ballot sums only */
	assert_totals("with protocols");
	/* Precinct 6: its protocol of seq 4 counts again. */
	amend_ok((struct bal_amendment){.change = BAL_CHANGE_VOID, .position = p6});
	expect_void(6, 5, true, 3, 6);
	assert_totals("after the void of a protocol with an older one");
	cr_assert_eq(bal_expect_protocol_seq(t.ex, 6), 4);
	json_t *page = precinct_page(6);
	cr_assert_eq(json_integer_value(json_object_get(page, "protocol_seq")), 4);
	json_decref(page);
	/* Precinct 7: no protocol left, its ballot sums count again. */
	amend_ok((struct bal_amendment){.change = BAL_CHANGE_VOID, .position = p7});
	expect_void(7, 4, true, 3, 9);
	assert_totals("after the void of a precinct's only protocol");
	page = precinct_page(7);
	cr_assert_eq(json_integer_value(json_object_get(page, "protocol_seq")), 0);
	cr_assert_eq(json_array_size(json_object_get(page, "discrepancies")), 0);
	json_decref(page);
	/* A later protocol counts as ever, and a resend of the voided one is DUPLICATE. */
	send_protocol(7, 7, 3, 0);
	int st;
	struct bal_batch b;
	const uint8_t *body;
	size_t len;
	char why[256];
	cr_assert_eq(bal_gen_protocol(t.gt, 7, 4, 3, 9, &b, &body, &len, why, sizeof(why)), 0, "%s", why);
	json_t *ack = post(body, len, &st);
	cr_assert_str_eq(ack_status(ack), "DUPLICATE");
	json_decref(ack);
	assert_totals("after a new protocol");
}

/* ---- freeze and certify ------------------------------------------------------------ */

Test(amend, frozen_precinct_refuses_new_batches_and_answers_resends, .init = setup, .fini = teardown)
{
	uint64_t x = send_ballots(8, 1);
	send_protocol(8, 2, 1, 0);
	uint64_t at = amend_ok((struct bal_amendment){
	        .change = BAL_CHANGE_FREEZE, .precinct_id = id_of(8), .reason = "final protocol"});
	size_t len;
	uint8_t *body = ballots_signed_by(8, 3, KEY_SEED, &len);
	char text[96];
	snprintf(text, sizeof(text), "precinct %u frozen by amendment at position %llu", id_of(8),
	         (unsigned long long)at);
	refused(body, len, 422, text);
	free(body);
	resend_is_duplicate(8, 1, x);
	assert_totals("after the freeze");
	json_t *page = precinct_page(8);
	json_t *frozen = json_object_get(page, "frozen");
	cr_assert_eq((uint64_t)json_integer_value(json_object_get(frozen, "amendment_position")), at);
	cr_assert_str_eq(json_string_value(json_object_get(frozen, "reason")), "final protocol");
	json_decref(page);
	amend_refused((struct bal_amendment){.change = BAL_CHANGE_FREEZE, .precinct_id = id_of(8)}, 422,
	              "frozen already");
	/* A void still applies to a frozen precinct's batches. */
	amend_ok((struct bal_amendment){.change = BAL_CHANGE_VOID, .position = x});
	expect_void(8, 1, false, 0, 0);
	assert_totals("after a void in a frozen precinct");
}

Test(amend, certification_shows_on_the_snapshot_and_the_pages, .init = setup, .fini = teardown)
{
	json_t *snap = th_get_json(t.td.port, "/v1/snapshot");
	cr_assert(json_is_null(json_object_get(snap, "certified")));
	json_decref(snap);
	send_ballots(9, 1);
	uint64_t n = send_ballots(10, 1);
	uint64_t m = amend_ok((struct bal_amendment){
	        .change = BAL_CHANGE_CERTIFY, .position = n, .reason = "results final (decision 99)"});
	send_ballots(11, 1);
	snap = th_get_json(t.td.port, "/v1/snapshot");
	json_t *c = json_object_get(snap, "certified");
	cr_assert_eq((uint64_t)json_integer_value(json_object_get(c, "position")), n);
	cr_assert_eq((uint64_t)json_integer_value(json_object_get(c, "amendment_position")), m);
	cr_assert_str_eq(json_string_value(json_object_get(c, "reason")), "results final (decision 99)");
	json_decref(snap);
	json_t *page = precinct_page(9);
	cr_assert_eq((uint64_t)json_integer_value(json_object_get(json_object_get(page, "certified"), "position")), n);
	json_decref(page);
	/* The latest certification is the one shown. */
	uint64_t m2 = amend_ok((struct bal_amendment){.change = BAL_CHANGE_CERTIFY, .position = t.position});
	snap = th_get_json(t.td.port, "/v1/snapshot");
	cr_assert_eq(
	        (uint64_t)json_integer_value(json_object_get(json_object_get(snap, "certified"), "amendment_position")),
	        m2);
	json_decref(snap);
	amend_refused((struct bal_amendment){.change = BAL_CHANGE_CERTIFY, .position = t.position + 1}, 422,
	              "beyond the journal");
	assert_totals("after the certifications");
}

/* ---- what is refused ------------------------------------------------------------- */

Test(amend, refused_amendments_change_nothing, .init = setup, .fini = teardown)
{
	send_ballots(0, 1);
	uint8_t opk[32], osk[64];
	bal_demo_keypair(99, 1, opk, osk); /* not the commission's */
	struct bal_amendment a = {.seq = 1, .reason = "x", .change = BAL_CHANGE_FREEZE, .precinct_id = id_of(0)};
	size_t len;
	uint8_t *body = th_signed_amendment(&a, osk, &len);
	struct th_resp r;
	int st;
	cr_assert_eq(th_post_amendment(t.td.port, body, len, &r), 0);
	json_t *ack = parse_ack(&r, &st);
	cr_assert_eq(st, 401);
	cr_assert(strstr(ack_error(ack), "does not verify against the definition's commission_key"));
	json_decref(ack);
	free(body);
	body = th_signed_amendment(&a, NULL, &len);
	cr_assert_eq(th_post_amendment(t.td.port, body, len, &r), 0);
	ack = parse_ack(&r, &st);
	cr_assert_eq(st, 401, "an unsigned amendment");
	json_decref(ack);
	free(body);
	/* Not the canonical encoding: the fields of the envelope swapped. */
	body = th_signed_amendment(&a, t.csk, &len);
	uint8_t *swapped = malloc(len);
	size_t inner = body[1]; /* short: one length byte */
	memcpy(swapped, body + 2 + inner, len - 2 - inner);
	memcpy(swapped + len - 2 - inner, body, 2 + inner);
	cr_assert_eq(th_post_amendment(t.td.port, swapped, len, &r), 0);
	ack = parse_ack(&r, &st);
	cr_assert_eq(st, 400, "%s", ack_error(ack));
	json_decref(ack);
	free(swapped);
	free(body);
	amend_refused((struct bal_amendment){.change = BAL_CHANGE_FREEZE,
	                                     .precinct_id = id_of(0),
	                                     .election_id = "another-election"},
	              422, "amendment is for election \"another-election\"");
	amend_refused((struct bal_amendment){.change = BAL_CHANGE_FREEZE, .precinct_id = 999999}, 422,
	              "precinct_id 999999 is not in the definition");
	amend_refused((struct bal_amendment){.change = BAL_CHANGE_NONE}, 422, "makes none");
	amend_refused((struct bal_amendment){.change = BAL_CHANGE_FREEZE, .precinct_id = id_of(0), .reason = ""}, 422,
	              "must give a reason");
	amend_refused(
	        (struct bal_amendment){
	                .change = BAL_CHANGE_SET_KEY, .precinct_id = id_of(0), .public_key = opk, .public_key_len = 31},
	        422, "public_key is 31 bytes");
	a.seq = 0;
	body = th_signed_amendment(&a, t.csk, &len);
	cr_assert_eq(th_post_amendment(t.td.port, body, len, &r), 0);
	ack = parse_ack(&r, &st);
	cr_assert_eq(st, 422, "%s", ack_error(ack));
	cr_assert(strstr(ack_error(ack), "seq must be >= 1"), "%s", ack_error(ack));
	json_decref(ack);
	free(body);
	json_t *health = th_get_json(t.td.port, "/healthz");
	cr_assert_eq((uint64_t)json_integer_value(json_object_get(health, "position")), t.position,
	             "nothing was journaled");
	json_decref(health);
	/* The same amendment twice is DUPLICATE; another one with its seq a conflict. */
	uint64_t at = amend_ok((struct bal_amendment){.change = BAL_CHANGE_FREEZE, .precinct_id = id_of(0)});
	ack = amend((struct bal_amendment){.seq = t.seq,
	                                   .reason = "decision of the commission",
	                                   .change = BAL_CHANGE_FREEZE,
	                                   .precinct_id = id_of(0)},
	            &st, NULL, NULL);
	cr_assert_eq(st, 200);
	cr_assert_str_eq(ack_status(ack), "DUPLICATE");
	cr_assert_eq(ack_position(ack), at);
	cr_assert(json_is_object(json_object_get(ack, "receipt")), "a DUPLICATE carries a receipt too");
	json_decref(ack);
	ack = amend(
	        (struct bal_amendment){.seq = t.seq, .reason = "other", .change = BAL_CHANGE_CERTIFY, .position = 1},
	        &st, NULL, NULL);
	cr_assert_eq(st, 409, "%s", ack_error(ack));
	json_decref(ack);
	assert_totals("after the refusals");
}

Test(amend, without_a_commission_key_amendments_are_forbidden, .init = setup_no_commission, .fini = teardown)
{
	int st;
	json_t *ack =
	        amend((struct bal_amendment){.seq = 1, .reason = "x", .change = BAL_CHANGE_CERTIFY, .position = 1}, &st,
	              NULL, NULL);
	cr_assert_eq(st, 403);
	cr_assert(strstr(ack_error(ack), "no commission_key"), "%s", ack_error(ack));
	json_decref(ack);
	struct th_resp r;
	cr_assert_eq(th_request(t.td.port, "GET", "/v1/amendments", NULL, NULL, 0, &r), 0);
	cr_assert_eq(r.status, 405);
	th_resp_free(&r);
}

/* ---- kill -9 and replay ------------------------------------------------------------- */

/* Every answer that shows what the amendments did, as one JSON array. */
static json_t *state(void)
{
	json_t *all = json_array();
	json_array_append_new(all, th_get_json(t.td.port, "/v1/snapshot"));
	for (uint32_t p = 0; p < NPRECINCTS; p++)
		json_array_append_new(all, precinct_page(p));
	return all;
}

static void history(void)
{
	for (uint64_t seq = 1; seq <= 3; seq++)
		for (uint32_t p = 0; p < 8; p++)
			send_ballots(p, seq);
	send_protocol(6, 4, 3, 0);
	uint64_t p6 = send_protocol(6, 5, 3, 4);
	uint64_t p7 = send_protocol(7, 4, 3, 2);
	send_ballots(7, 5);
	amend_ok((struct bal_amendment){.change = BAL_CHANGE_VOID, .position = 3, .reason = "duplicate entry"});
	expect_void(2, 1, false, 0, 0);
	amend_ok((struct bal_amendment){.change = BAL_CHANGE_VOID, .position = p6});
	expect_void(6, 5, true, 3, 4);
	amend_ok((struct bal_amendment){.change = BAL_CHANGE_REVOKE_KEY, .precinct_id = id_of(0)});
	uint8_t pk[32], sk[64];
	bal_demo_keypair(NEW_KEY_SEED, id_of(1), pk, sk);
	amend_ok((struct bal_amendment){
	        .change = BAL_CHANGE_SET_KEY, .precinct_id = id_of(1), .public_key = pk, .public_key_len = 32});
	amend_ok((struct bal_amendment){.change = BAL_CHANGE_FREEZE, .precinct_id = id_of(3)});
	send_ballots(6, 6);
	send_ballots(4, 4);
	amend_ok((struct bal_amendment){.change = BAL_CHANGE_VOID, .position = p7});
	expect_void(7, 4, true, 3, 2);
	amend_ok((struct bal_amendment){.change = BAL_CHANGE_CERTIFY, .position = t.position});
	send_ballots(5, 4);
	assert_totals("before the kill");
}

/* After a restart, what the amendments did is still enforced. */
static void still_enforced(void)
{
	size_t len;
	uint8_t *body = ballots_signed_by(0, 9, KEY_SEED, &len);
	refused(body, len, 401, "revoked");
	free(body);
	body = ballots_signed_by(1, 9, KEY_SEED, &len);
	refused(body, len, 401, "does not verify");
	free(body);
	body = ballots_signed_by(3, 9, KEY_SEED, &len);
	refused(body, len, 422, "frozen");
	free(body);
	resend_is_duplicate(2, 1, 3);
	amend_refused((struct bal_amendment){.change = BAL_CHANGE_VOID, .position = 3}, 422, "voided already");
	accepted_signed_by(1, 9, NEW_KEY_SEED);
	assert_totals("after the restart");
}

static void survives_kill9(void)
{
	history();
	json_t *before = state();
	th_kill9(&t.td);
	start();
	json_t *after = state();
	char *a = json_dumps(before, JSON_SORT_KEYS | JSON_COMPACT),
	     *b = json_dumps(after, JSON_SORT_KEYS | JSON_COMPACT);
	cr_assert_str_eq(b, a, "the answers after kill -9 differ");
	free(a);
	free(b);
	json_decref(after);
	/* A clean stop leaves every slice snapshotted: the same again. */
	cr_assert_eq(th_stop(&t.td), 0);
	start();
	after = state();
	cr_assert(json_equal(before, after), "the answers after a clean restart differ");
	json_decref(after);
	json_decref(before);
	still_enforced();
	/* The replayed state is the audit's too. */
	char *report;
	cr_assert_eq(audit(&report), 0, "ballotctl audit must pass on a journal with amendments:\n%s", report);
	cr_assert(strstr(report, "amendments 7 (voids 3); results certified"), "%s", report);
	free(report);
}

Test(amend, survives_kill9_without_snapshots, .init = setup_no_snapshots, .fini = teardown, .timeout = 60)
{
	survives_kill9();
}

Test(amend, survives_kill9_with_snapshots, .init = setup_many_snapshots, .fini = teardown, .timeout = 60)
{
	survives_kill9();
}

/* ---- ballotctl amend and the audit ------------------------------------------------- */

/* `ballotctl amend` with the commission's key and the log key pinned, then `extra`. */
static int ctl_amend(const char *key, const char *const *extra, char **out)
{
	char pub[700], path[700], seq[24];
	snprintf(pub, sizeof(pub), "%s.pub", t.log_key);
	snprintf(path, sizeof(path), "%s/amend.out", t.dir);
	snprintf(seq, sizeof(seq), "%llu", (unsigned long long)t.seq + 1);
	const char *args[32] = {"amend", "--server",     t.server, "--definition", t.defn_path, "--commission-key",
	                        key,     "--server-key", pub,      "--seq",        seq,         NULL};
	int n = 11;
	for (int i = 0; extra[i]; i++)
		args[n++] = extra[i];
	args[n] = NULL;
	int rc = th_ctl_run(path, path, args);
	*out = slurp(path);
	return rc;
}

/* Replaces the last byte (of the signature) of the journal record at
 * `position` in the stopped daemon's data directory, keeping the record's
 * checksum right: what an offline edit of the data directory looks like. */
static void edit_signature_offline(uint64_t position)
{
	const uint32_t n = t.defn->nprecincts;
	uint32_t *ids = malloc((n + 1) * sizeof(*ids));
	for (uint32_t i = 0; i < n; i++)
		ids[i] = t.defn->precincts[i].id;
	ids[n] = BAL_COMMISSION_ID;
	struct bal_store_opts o = {
	        .dir = t.data, .map_size = (size_t)64 << 20, .precinct_ids = ids, .nprecincts = n + 1};
	memcpy(o.hash, t.defn->hash, sizeof(o.hash));
	struct bal_store *s;
	char why[512] = "";
	cr_assert_eq(bal_store_open(&o, &s, why, sizeof(why)), 0, "%s", why);
	MDB_txn *txn;
	cr_assert_eq(mdb_txn_begin(s->env, NULL, 0, &txn), 0);
	uint8_t k[8];
	bal__put_be64(k, position);
	MDB_val key = {sizeof(k), k}, val;
	cr_assert_eq(mdb_get(txn, s->journal, &key, &val), 0);
	struct bal__rec r;
	cr_assert_eq(bal__rec_parse(&val, position, BAL_JREC_MAGIC, "journal position", &r, why, sizeof(why)), 0, "%s",
	             why);
	uint8_t *copy = malloc(r.len);
	memcpy(copy, r.payload, r.len);
	cr_assert(bal_codec_is_amendment(copy, r.len));
	copy[r.len - 1] ^= 0x01;
	cr_assert_eq(bal__rec_put(txn, s->journal, position, 0, BAL_JREC_MAGIC, r.a, r.b, copy, r.len), 0);
	cr_assert_eq(mdb_txn_commit(txn), 0);
	free(copy);
	bal_store_close(s);
	free(ids);
}

Test(amend, ballotctl_amend_and_the_audit, .init = setup, .fini = teardown, .timeout = 60)
{
	for (uint32_t p = 0; p < 6; p++)
		send_ballots(p, 1);
	send_protocol(5, 2, 1, 3);
	char *out, freeze[16], pubfile[700];
	snprintf(freeze, sizeof(freeze), "%u", id_of(4));
	const char *const freeze_args[] = {"--reason",          "final protocol signed", "--freeze", freeze,
	                                   "--created-unix-ms", "1679212800000",         NULL};
	cr_assert_eq(ctl_amend(t.commission, freeze_args, &out), 0, "%s", out);
	cr_assert(strstr(out, "\"status\":\"ACCEPTED\"") && strstr(out, "receipt verified"), "%s", out);
	free(out);
	/* The same amendment again is a DUPLICATE, receipt and all. */
	cr_assert_eq(ctl_amend(t.commission, freeze_args, &out), 0, "%s", out);
	cr_assert(strstr(out, "\"status\":\"DUPLICATE\"") && strstr(out, "receipt verified"), "%s", out);
	free(out);
	t.seq++;
	t.position++;
	/* A key from a file, as keygen writes it. */
	snprintf(pubfile, sizeof(pubfile), "%s/station.key", t.dir);
	const char *const keygen[] = {"keygen", "--out", pubfile, NULL};
	cr_assert_eq(th_ctl_run(NULL, NULL, keygen), 0);
	strcat(pubfile, ".pub");
	char p3[16];
	snprintf(p3, sizeof(p3), "%u", id_of(3));
	const char *const setkey[] = {"--reason", "new device", "--set-key", p3, pubfile, NULL};
	cr_assert_eq(ctl_amend(t.commission, setkey, &out), 0, "%s", out);
	free(out);
	t.seq++;
	t.position++;
	char pos[24];
	snprintf(pos, sizeof(pos), "%llu", (unsigned long long)t.position - 2); /* the protocol */
	const char *const void_args[] = {"--reason", "wrong protocol", "--void", pos, NULL};
	cr_assert_eq(ctl_amend(t.commission, void_args, &out), 0, "%s", out);
	free(out);
	t.seq++;
	t.position++;
	expect_void(5, 2, true, 1, 3);
	assert_totals("after the amendments of ballotctl");
	/* What ballotctl refuses before sending. */
	const char *const unknown[] = {"--reason", "x", "--freeze", "999999", NULL};
	cr_assert_eq(ctl_amend(t.commission, unknown, &out), 2, "%s", out);
	cr_assert(strstr(out, "precinct_id 999999 is not in the definition"), "%s", out);
	free(out);
	cr_assert_eq(ctl_amend(t.log_key, freeze_args, &out), 2, "%s", out);
	cr_assert(strstr(out, "is not the commission_key"), "%s", out);
	free(out);
	const char *const two[] = {"--reason", "x", "--freeze", freeze, "--certify", "1", NULL};
	cr_assert_eq(ctl_amend(t.commission, two, &out), 2, "%s", out);
	free(out);
	/* What the daemon refuses: exit 1, the ack printed. */
	cr_assert_eq(ctl_amend(t.commission, freeze_args, &out), 1, "%s", out);
	cr_assert(strstr(out, "frozen already"), "%s", out);
	free(out);

	char *report;
	cr_assert_eq(audit(&report), 0, "the audit must pass:\n%s", report);
	cr_assert(strstr(report, "amendments 3 (voids 1)"), "%s", report);
	free(report);
	/* The amendment of seq 1 (position 8) with its signature edited offline. */
	cr_assert_eq(th_stop(&t.td), 0);
	edit_signature_offline(8);
	start();
	cr_assert_eq(audit(&report), 1, "the audit must fail:\n%s", report);
	cr_assert(strstr(report, "amendment's Ed25519 signature (64 bytes) does not verify with the commission_key"),
	          "%s", report);
	free(report);
}
