/* SPDX-License-Identifier: Apache-2.0 */
/*
 * docs/design.md invariant 8 end to end: GET /v1/journal exports the journal as
 * (position, length, exact SignedBatch bytes) records, and `ballotctl audit`
 * (the real executable) re-verifies every signature and recomputes every total
 * from that export, independently of the daemon's tally code. Covers the
 * passing audit of ballots + tally + protocol batches, paging with pages
 * smaller than the journal (asked for, or cut at --max-output), the 400 answers for bad parameters, the record
 * format itself, and an audit that must fail: the same election published
 * with other public keys.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proto/codec.h"
#include "tests/integration/harness.h"

#define KEY_SEED         41
#define OTHER_KEY_SEED   42
#define PRECINCTS        200
#define BALLOT_BATCHES   2000 /* seqs 1..10 of every precinct */
#define TALLY_BATCHES    400  /* seqs 11..12 */
#define PROTOCOL_BATCHES 200  /* seq 13 */
#define JOURNAL          (BALLOT_BATCHES + TALLY_BATCHES + PROTOCOL_BATCHES)

struct env {
	char *dir, *defn_path, data[600], server[64], log[700];
	struct th_daemon td;
};

static void push(struct env *v, const char *kind, const char *batches, const char *seq_start)
{
	char ks[16];
	snprintf(ks, sizeof(ks), "%d", KEY_SEED);
	const char *args[] = {"push",  "--server",     v->server, "--definition", v->defn_path, "--seed",
	                      "9",     "--key-seed",   ks,        "--kind",       kind,         "--batches",
	                      batches, "--batch-size", "10",      "--seq-start",  seq_start,    NULL};
	cr_assert_eq(th_ctl_run(NULL, v->log, args), 0, "push --kind %s failed (log %s)", kind, v->log);
}

/* A daemon on a keyed definition with JOURNAL batches of every kind journaled. */
static void env_start_with(struct env *v, const char *const *extra)
{
	memset(v, 0, sizeof(*v));
	v->dir = th_tmpdir();
	cr_assert(v->dir);
	v->defn_path = th_write_defn(v->dir, PRECINCTS, 3, 4, KEY_SEED, true);
	cr_assert(v->defn_path);
	snprintf(v->data, sizeof(v->data), "%s/data", v->dir);
	snprintf(v->log, sizeof(v->log), "%s/ballotctl.log", v->dir);
	cr_assert_eq(th_start(&v->td, v->defn_path, v->data, 0, extra), 0);
	snprintf(v->server, sizeof(v->server), "127.0.0.1:%u", v->td.port);
	push(v, "ballots", "2000", "1");
	push(v, "tally", "400", "11");
	push(v, "protocol", "200", "13");
}

static void env_start(struct env *v)
{
	env_start_with(v, NULL);
}

static void env_stop(struct env *v)
{
	if (v->td.pid > 0)
		cr_expect_eq(th_stop(&v->td), 0, "ballotd should exit 0 on SIGTERM");
	free(v->defn_path);
	th_rmdir(v->dir);
	free(v->dir);
}

/* `ballotctl audit --json` with `defn` and `batch`; its exit status and output. */
static json_t *audit(struct env *v, const char *defn, const char *batch, int *status)
{
	char out[700];
	snprintf(out, sizeof(out), "%s/audit.json", v->dir);
	const char *args[] = {"audit", "--server", v->server, "--definition", defn, "--batch", batch, "--json", NULL};
	*status = th_ctl_run(out, v->log, args);
	json_error_t err;
	json_t *j = json_load_file(out, 0, &err);
	cr_assert(j, "audit --json output: %s (log %s)", err.text, v->log);
	return j;
}

static long long jnum(json_t *j, const char *key)
{
	json_t *v = json_object_get(j, key);
	cr_assert(json_is_integer(v), "\"%s\" missing from the audit output", key);
	return (long long)json_integer_value(v);
}

Test(audit, every_signature_verifies_and_every_total_matches)
{
	struct env v;
	env_start(&v);
	int status;
	json_t *j = audit(&v, v.defn_path, "10000", &status);
	cr_expect_eq(status, 0, "audit should pass");
	cr_expect_eq(jnum(j, "position"), JOURNAL);
	cr_expect_eq(jnum(j, "records"), JOURNAL);
	cr_expect_eq(jnum(j, "signatures_verified"), JOURNAL);
	cr_expect_eq(jnum(j, "signature_failures"), 0);
	cr_expect_eq(jnum(j, "decode_failures"), 0);
	cr_expect_eq(jnum(j, "fold_failures"), 0);
	cr_expect_eq(jnum(j, "duplicate_keys"), 0);
	cr_expect_eq(jnum(j, "mismatch_count"), 0);
	cr_expect_eq(jnum(j, "requests"), 2, "one snapshot and one journal page");
	cr_expect(json_is_true(json_object_get(j, "definition_matches")));
	cr_expect(json_is_true(json_object_get(j, "ok")));
	json_decref(j);
	/* The snapshot it compared with folds protocols: the audit did recompute them. */
	json_t *snap = th_get_json(v.td.port, "/v1/snapshot");
	cr_assert(snap);
	cr_expect_eq(json_integer_value(json_object_get(snap, "precincts_with_protocol")), PRECINCTS);
	json_decref(snap);
	env_stop(&v);
}

Test(audit, pages_smaller_than_the_journal)
{
	struct env v;
	env_start(&v);
	int status;
	json_t *j = audit(&v, v.defn_path, "100", &status);
	cr_expect_eq(status, 0, "audit with pages of 100 should pass");
	cr_expect_eq(jnum(j, "records"), JOURNAL);
	cr_expect_eq(jnum(j, "signatures_verified"), JOURNAL);
	cr_expect_eq(jnum(j, "requests"), 1 + JOURNAL / 100);
	cr_expect_eq(jnum(j, "mismatch_count"), 0);
	json_decref(j);
	/* Batches journaled after the snapshot it reads are outside the audit, and a new audit covers them. */
	push(&v, "ballots", "200", "14");
	j = audit(&v, v.defn_path, "7", &status);
	cr_expect_eq(status, 0);
	cr_expect_eq(jnum(j, "records"), JOURNAL + 200);
	cr_expect_eq(jnum(j, "mismatch_count"), 0);
	json_decref(j);
	env_stop(&v);
}

/* Big-endian reads of the journal export's record heads. */
static uint64_t be(const char *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | (uint8_t)p[i];
	return v;
}

Test(audit, journal_export_format_and_bad_parameters)
{
	struct env v;
	env_start(&v);
	static const char *const bad[] = {
	        "/v1/journal?from=0",   "/v1/journal?from=abc", "/v1/journal?from=-1",
	        "/v1/journal?from=",    "/v1/journal?limit=0",  "/v1/journal?limit=100001",
	        "/v1/journal?limit=5x", "/v1/journal?since=3",  "/v1/journal?from=99999999999999999999999"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct th_resp r;
		cr_assert_eq(th_request(v.td.port, "GET", bad[i], NULL, NULL, 0, &r), 0);
		cr_expect_eq(r.status, 400, "GET %s: %d %s", bad[i], r.status, r.body);
		cr_expect(strstr(r.body, "\"error\""), "GET %s: no reason: %s", bad[i], r.body);
		th_resp_free(&r);
	}
	/* Records 2..4: position, length and the exact bytes, which decode to a signed batch. */
	struct th_resp r;
	cr_assert_eq(th_request(v.td.port, "GET", "/v1/journal?from=2&limit=3", NULL, NULL, 0, &r), 0);
	cr_assert_eq(r.status, 200, "%s", r.body);
	cr_expect(strstr(r.head, "application/octet-stream"), "%s", r.head);
	cr_expect(strstr(r.head, "X-Ballotd-Next: 5\r\n"), "%s", r.head);
	char want[64];
	snprintf(want, sizeof(want), "X-Ballotd-Position: %d\r\n", JOURNAL);
	cr_expect(strstr(r.head, want), "%s", r.head);
	size_t off = 0;
	struct bal_arena arena;
	bal_arena_init(&arena, 0);
	for (uint64_t pos = 2; pos <= 4; pos++) {
		cr_assert_geq(r.len, off + 12);
		cr_expect_eq(be(r.body + off, 8), pos);
		size_t len = be(r.body + off + 8, 4);
		cr_assert_geq(r.len, off + 12 + len);
		struct bal_batch b;
		char why[256];
		bal_arena_reset(&arena);
		cr_expect_eq(bal_codec_decode((const uint8_t *)r.body + off + 12, len, &arena, &b, why, sizeof(why)), 0,
		             "%s", why);
		cr_expect_eq(b.signature_len, 64);
		off += 12 + len;
	}
	cr_expect_eq(off, r.len, "exactly three records");
	bal_arena_deinit(&arena);
	th_resp_free(&r);
	/* Past the end: empty, and Next stays where the reader asked. */
	cr_assert_eq(th_request(v.td.port, "GET", "/v1/journal?from=9000", NULL, NULL, 0, &r), 0);
	cr_expect_eq(r.status, 200);
	cr_expect_eq(r.len, 0);
	cr_expect(strstr(r.head, "X-Ballotd-Next: 9000\r\n"), "%s", r.head);
	th_resp_free(&r);
	/* The default limit covers this whole journal. */
	cr_assert_eq(th_request(v.td.port, "GET", "/v1/journal", NULL, NULL, 0, &r), 0);
	snprintf(want, sizeof(want), "X-Ballotd-Next: %d\r\n", JOURNAL + 1);
	cr_expect(strstr(r.head, want), "%s", r.head);
	th_resp_free(&r);
	env_stop(&v);
}

/* A page stops at about --max-output bytes, however many records were asked for; the audit pages on. */
Test(audit, pages_cut_at_max_output)
{
	static const char *const extra[] = {"--max-output", "8K", NULL};
	struct env v;
	env_start_with(&v, extra);
	struct th_resp r;
	cr_assert_eq(th_request(v.td.port, "GET", "/v1/journal?from=1&limit=1000", NULL, NULL, 0, &r), 0);
	cr_assert_eq(r.status, 200, "%s", r.body);
	cr_expect_leq(r.len, 8192 - 1024);
	const char *next = strstr(r.head, "X-Ballotd-Next: ");
	cr_assert(next, "%s", r.head);
	long n = strtol(next + 16, NULL, 10);
	cr_expect(n > 2 && n < 1001, "X-Ballotd-Next %ld: the page should be cut by size", n);
	th_resp_free(&r);
	int status;
	json_t *j = audit(&v, v.defn_path, "10000", &status);
	cr_expect_eq(status, 0);
	cr_expect_eq(jnum(j, "records"), JOURNAL);
	cr_expect_gt(jnum(j, "requests"), 3);
	cr_expect_eq(jnum(j, "mismatch_count"), 0);
	json_decref(j);
	env_stop(&v);
}

Test(audit, fails_against_other_public_keys)
{
	struct env v;
	env_start(&v);
	/* The same election shape with the keys of another seed. */
	char *other = th_write_defn(v.dir, PRECINCTS, 3, 4, OTHER_KEY_SEED, true);
	cr_assert(other);
	int status;
	json_t *j = audit(&v, other, "500", &status);
	cr_expect_eq(status, 1, "audit with other public keys must fail");
	cr_expect_eq(jnum(j, "records"), JOURNAL);
	cr_expect_eq(jnum(j, "signatures_verified"), 0);
	cr_expect_eq(jnum(j, "signature_failures"), JOURNAL);
	cr_expect(json_is_false(json_object_get(j, "ok")));
	cr_expect_gt(json_array_size(json_object_get(j, "problems")), 0);
	json_decref(j);
	free(other);
	env_stop(&v);
}
