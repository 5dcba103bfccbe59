/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Integration tests of the heavy reads against the real ballotd: GET
 * /v1/results.csv is byte for byte the CSV of the independent fold
 * (client/expect.h) of the batches up to the position it reports; a burst
 * of requests at one position builds it once and a later position again
 * (ballotd_answer_builds_total); pipelined POSTs and GETs are answered in
 * request order, each answer the fold of the journal prefix it reports;
 * beyond --max-heavy-queries a request is answered 503 with Retry-After;
 * a client that leaves while its answer is built costs nothing.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/gen.h"
#include "defn/defn.h"
#include "tests/integration/harness.h"

#define KEY_SEED 23

static char *dir;
static char *defn_path;
static struct bal_defn *defn;
static struct th_daemon td;
static struct bal_gen *gen;

/* A daemon of a definition with `precincts` precincts, and a batch generator for it. */
static void start(uint32_t precincts, uint32_t districts, const char *const *extra)
{
	dir = th_tmpdir();
	cr_assert(dir);
	defn_path = th_write_defn(dir, precincts, districts, 6, KEY_SEED, true);
	cr_assert(defn_path);
	char why[256], data[600];
	cr_assert_eq(bal_defn_load(defn_path, &defn, why, sizeof(why)), 0, "%s", why);
	snprintf(data, sizeof(data), "%s/data", dir);
	cr_assert_eq(th_start(&td, defn_path, data, 0, extra), 0);
	struct bal_gen_opts o = {.seed = 3, .key_seed = KEY_SEED, .batch_size = 20, .kind = BAL_KIND_BALLOTS};
	cr_assert_eq(bal_gen_new(defn, &o, &gen, why, sizeof(why)), 0, "%s", why);
}

static void teardown(void)
{
	if (td.pid > 0)
		cr_expect_eq(th_stop(&td), 0, "ballotd should exit 0 on SIGTERM");
	bal_gen_free(gen);
	bal_defn_free(defn);
	free(defn_path);
	th_rmdir(dir);
	free(dir);
}

TestSuite(reads, .fini = teardown, .timeout = 120);

/* The batches a test sent, by the position their ack gave. */
struct sent {
	uint32_t precinct[256];
	uint64_t seq[256];
	uint64_t position[256];
	unsigned n;
};

/* Appends POST /v1/batches of batch (precinct p, seq) to out. */
static size_t add_post(char *out, size_t at, size_t cap, uint32_t p, uint64_t seq)
{
	const uint8_t *body;
	size_t len;
	char why[256];
	cr_assert_eq(bal_gen_batch(gen, p, seq, NULL, &body, &len, why, sizeof(why)), 0, "%s", why);
	int n = snprintf(out + at, cap - at,
	                 "POST /v1/batches HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-protobuf\r\n"
	                 "Content-Length: %zu\r\n\r\n",
	                 len);
	cr_assert(n > 0 && at + (size_t)n + len < cap);
	memcpy(out + at + n, body, len);
	return at + (size_t)n + len;
}

static size_t add_get(char *out, size_t at, size_t cap, const char *path)
{
	int n = snprintf(out + at, cap - at, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
	cr_assert(n > 0 && at + (size_t)n < cap);
	return at + (size_t)n;
}

/* POSTs batch (p, seq) on a connection of its own; returns the position it was given. */
static uint64_t post(struct sent *s, uint32_t p, uint64_t seq)
{
	char buf[65536];
	size_t n = add_post(buf, 0, sizeof(buf), p, seq);
	int fd = th_connect(td.port);
	cr_assert(fd >= 0);
	cr_assert_eq(th_send(fd, buf, n), 0);
	struct th_resp r;
	cr_assert_eq(th_read_resp(fd, &r, 20000), 0);
	close(fd);
	cr_assert_eq(r.status, 200, "%s", r.body);
	unsigned long long pos = 0;
	cr_assert(strstr(r.body, "\"ACCEPTED\"") && sscanf(strstr(r.body, "\"position\":"), "\"position\":%llu", &pos),
	          "%s", r.body);
	th_resp_free(&r);
	cr_assert_lt(s->n, 256);
	s->precinct[s->n] = p;
	s->seq[s->n] = seq;
	s->position[s->n++] = pos;
	return pos;
}

/* The independent fold of the batches sent at positions 1..upto. */
static struct bal_expect *fold_upto(const struct sent *s, uint64_t upto)
{
	struct bal_expect *e = bal_expect_new(defn);
	cr_assert(e);
	for (unsigned i = 0; i < s->n; i++) {
		if (s->position[i] > upto)
			continue;
		struct bal_batch b;
		const uint8_t *body;
		size_t len;
		char why[256];
		cr_assert_eq(bal_gen_batch(gen, s->precinct[i], s->seq[i], &b, &body, &len, why, sizeof(why)), 0, "%s",
		             why);
		cr_assert_eq(bal_expect_fold(e, &b, why, sizeof(why)), 0, "%s", why);
	}
	return e;
}

/* results.csv as the fold `e` makes it: a header, then one line per
 * (precinct, contest on its ballot, choice) in the definition's order. */
static char *expected_csv(const struct bal_expect *e, size_t *len)
{
	char *out = NULL;
	size_t cap = 0;
	FILE *f = open_memstream(&out, &cap);
	cr_assert(f);
	fputs("district_id,precinct_id,contest_id,choice_id,votes\n", f);
	for (uint32_t p = 0; p < defn->nprecincts; p++) {
		const struct bal_precinct *pr = &defn->precincts[p];
		for (uint32_t c = 0; c < defn->ncontests; c++) {
			if (!bal_defn_votes_in(defn, p, c))
				continue;
			const struct bal_contest *ct = &defn->contests[c];
			for (uint32_t k = 0; k < ct->nchoices; k++)
				fprintf(f, "%u,%u,%u,%u,%llu\n", defn->districts[pr->district].id, pr->id, ct->id,
				        ct->choices[k].id, (unsigned long long)bal_expect_precinct_votes(e, p, c, k));
		}
	}
	cr_assert_eq(fclose(f), 0);
	*len = cap;
	return out;
}

static uint64_t header_u64(const struct th_resp *r, const char *name)
{
	char key[64];
	snprintf(key, sizeof(key), "\r\n%s: ", name);
	const char *at = strstr(r->head, key);
	cr_assert(at, "no %s in %s", name, r->head);
	return strtoull(at + strlen(key), NULL, 10);
}

/* Asserts that `r` is results.csv exactly as the fold of the batches up to its position. */
static uint64_t assert_csv_is_fold(const struct th_resp *r, const struct sent *s)
{
	cr_assert_eq(r->status, 200, "%s", r->head);
	cr_assert(strstr(r->head, "Content-Type: text/csv\r\n"), "%s", r->head);
	uint64_t pos = header_u64(r, "X-Ballotd-Position");
	struct bal_expect *e = fold_upto(s, pos);
	size_t len;
	char *want = expected_csv(e, &len);
	cr_assert_eq(r->len, len, "at position %llu: %zu bytes, want %zu", (unsigned long long)pos, r->len, len);
	cr_assert_eq(memcmp(r->body, want, len), 0, "at position %llu the CSV differs from the fold",
	             (unsigned long long)pos);
	free(want);
	bal_expect_free(e);
	return pos;
}

/* The value of one line of /metrics, e.g. `ballotd_heavy_queries_refused_total`. */
static uint64_t metric(const char *series)
{
	struct th_resp r;
	cr_assert_eq(th_request(td.port, "GET", "/metrics", NULL, NULL, 0, &r), 0);
	char key[160];
	snprintf(key, sizeof(key), "\n%s ", series);
	const char *at = strstr(r.body, key);
	cr_assert(at, "no %s in /metrics", series);
	uint64_t v = strtoull(at + strlen(key), NULL, 10);
	th_resp_free(&r);
	return v;
}

#define CSV_BUILDS "ballotd_answer_builds_total{answer=\"results.csv\"}"

/* results.csv is the fold of the acknowledged batches, byte for byte, at
 * the position it reports, which is the snapshot's. */
Test(reads, results_csv_is_the_fold_byte_for_byte)
{
	start(30, 3, NULL);
	struct sent s = {0};
	for (uint64_t seq = 1; seq <= 3; seq++)
		for (uint32_t p = 0; p < defn->nprecincts; p += 2)
			post(&s, p, seq);
	struct th_resp r;
	cr_assert_eq(th_request(td.port, "GET", "/v1/results.csv", NULL, NULL, 0, &r), 0);
	cr_assert_eq(assert_csv_is_fold(&r, &s), s.n);
	th_resp_free(&r);
	json_t *snap = th_get_json(td.port, "/v1/snapshot");
	struct bal_expect *e = fold_upto(&s, s.n);
	cr_assert(th_snapshot_matches(snap, defn, e));
	cr_assert_eq(json_integer_value(json_object_get(snap, "position")), s.n);
	json_decref(snap);
	bal_expect_free(e);
}

/* GET results.csv on `nconn` connections at once: every request is sent
 * before any answer is read. Returns the position they all report. */
static uint64_t burst(unsigned nconn, const struct sent *s)
{
	int fds[16];
	cr_assert_leq(nconn, 16);
	for (unsigned i = 0; i < nconn; i++) {
		fds[i] = th_connect(td.port);
		cr_assert(fds[i] >= 0);
	}
	char req[128];
	size_t n = add_get(req, 0, sizeof(req), "/v1/results.csv");
	for (unsigned i = 0; i < nconn; i++)
		cr_assert_eq(th_send(fds[i], req, n), 0);
	uint64_t pos = 0;
	char *first = NULL;
	size_t first_len = 0;
	for (unsigned i = 0; i < nconn; i++) {
		struct th_resp r;
		cr_assert_eq(th_read_resp(fds[i], &r, 30000), 0, "connection %u: no answer", i);
		close(fds[i]);
		uint64_t p = assert_csv_is_fold(&r, s);
		if (!first) {
			pos = p;
			first = r.body;
			first_len = r.len;
			continue;
		}
		cr_assert_eq(p, pos, "one position for the whole burst");
		cr_assert(r.len == first_len && memcmp(r.body, first, first_len) == 0);
		th_resp_free(&r);
	}
	free(first);
	return pos;
}

/* A burst of requests at one journal position builds the CSV once; after
 * more batches the next burst builds it once more, at the new position. */
Test(reads, a_burst_at_one_position_builds_once)
{
	static const char *const extra[] = {"--max-heavy-queries", "8", NULL};
	start(2000, 20, extra);
	struct sent s = {0};
	for (uint32_t p = 0; p < 10; p++)
		post(&s, p * 97, 1);
	uint64_t before = metric(CSV_BUILDS);
	cr_assert_eq(burst(8, &s), 10);
	cr_assert_eq(metric(CSV_BUILDS), before + 1, "eight requests at one position, one build");
	cr_assert_eq(burst(4, &s), 10);
	cr_assert_eq(metric(CSV_BUILDS), before + 1, "the cached CSV answers the same position");
	cr_assert_geq(metric("ballotd_answers_total{answer=\"results.csv\",cache=\"hit\"}"), 4);

	for (uint32_t p = 0; p < 5; p++)
		post(&s, p * 97, 2);
	cr_assert_eq(burst(8, &s), 15);
	cr_assert_eq(metric(CSV_BUILDS), before + 2, "a new position, one new build");
}

/* One connection pipelines POSTs and GETs in one write: the answers come
 * back in request order, each GET answer the fold of exactly the journal
 * prefix it reports, and each POST acknowledged with the next position. */
Test(reads, pipelined_posts_and_gets_are_answered_in_order)
{
	static const char *const extra[] = {"--max-heavy-queries", "16", NULL};
	start(2000, 20, extra);
	struct sent s = {0};
	post(&s, 5, 1);
	enum { POST, CSV, SNAP, SEATS, JOURNAL } kinds[16];
	static const char *const paths[] = {
	        [CSV] = "/v1/results.csv", [SNAP] = "/v1/snapshot", [SEATS] = "/v1/seats", [JOURNAL] = "/v1/journal"};
	static char buf[1 << 16];
	size_t n = 0;
	unsigned nreq = 0;
	uint64_t seq = 1;
	for (unsigned i = 0; i < 16; i++) {
		static const int plan[16] = {POST, CSV, POST, SNAP, CSV,  POST,    SEATS, POST,
		                             CSV,  CSV, POST, POST, SNAP, JOURNAL, CSV,   POST};
		kinds[nreq++] = plan[i];
		if (plan[i] == POST)
			n = add_post(buf, n, sizeof(buf), 7, ++seq);
		else
			n = add_get(buf, n, sizeof(buf), paths[plan[i]]);
	}
	int fd = th_connect(td.port);
	cr_assert(fd >= 0);
	cr_assert_eq(th_send(fd, buf, n), 0);
	struct th_resp r[16];
	uint64_t next_seq = 2;
	for (unsigned i = 0; i < nreq; i++) {
		cr_assert_eq(th_read_resp(fd, &r[i], 30000), 0, "answer %u missing", i);
		cr_assert_eq(r[i].status, 200, "answer %u: %s", i, r[i].body);
		if (kinds[i] == POST) {
			unsigned long long pos = 0;
			cr_assert(strstr(r[i].body, "\"ACCEPTED\""), "answer %u: %s", i, r[i].body);
			cr_assert_eq(sscanf(strstr(r[i].body, "\"position\":"), "\"position\":%llu", &pos), 1);
			cr_assert_eq(pos, s.n + 1, "answer %u: batches are journaled in request order", i);
			s.precinct[s.n] = 7;
			s.seq[s.n] = next_seq++;
			s.position[s.n++] = pos;
		}
	}
	close(fd);
	/* Every batch is acknowledged now; check each GET against its prefix. */
	for (unsigned i = 0; i < nreq; i++) {
		if (kinds[i] == CSV) {
			assert_csv_is_fold(&r[i], &s);
		} else if (kinds[i] == SNAP || kinds[i] == SEATS) {
			cr_assert(strstr(r[i].head, "Content-Type: application/json\r\n"), "answer %u: %s", i,
			          r[i].head);
			json_error_t err;
			json_t *v = json_loadb(r[i].body, r[i].len, 0, &err);
			cr_assert(v, "answer %u is not JSON: %s", i, err.text);
			uint64_t pos = (uint64_t)json_integer_value(json_object_get(v, "position"));
			cr_assert_leq(pos, s.n);
			if (kinds[i] == SNAP) {
				struct bal_expect *e = fold_upto(&s, pos);
				cr_assert(th_snapshot_matches(v, defn, e), "answer %u: the snapshot at %llu", i,
				          (unsigned long long)pos);
				bal_expect_free(e);
			} else {
				cr_assert(json_object_get(v, "contests"), "answer %u: %s", i, r[i].body);
			}
			json_decref(v);
		} else if (kinds[i] == JOURNAL) {
			cr_assert(strstr(r[i].head, "Content-Type: application/octet-stream\r\n"));
			uint64_t upto = header_u64(&r[i], "X-Ballotd-Position");
			cr_assert_eq(header_u64(&r[i], "X-Ballotd-Next"), upto + 1);
			size_t at = 0;
			for (uint64_t pos = 1; pos <= upto; pos++) {
				cr_assert_leq(at + 12, r[i].len);
				uint64_t got = 0;
				for (int b = 0; b < 8; b++)
					got = got << 8 | (uint8_t)r[i].body[at + (size_t)b];
				cr_assert_eq(got, pos);
				uint32_t len = 0;
				for (int b = 8; b < 12; b++)
					len = len << 8 | (uint8_t)r[i].body[at + (size_t)b];
				at += 12 + len;
			}
			cr_assert_eq(at, r[i].len, "the page ends at its last record");
		}
	}
	for (unsigned i = 0; i < nreq; i++)
		th_resp_free(&r[i]);
}

/* With --max-heavy-queries 1, requests arriving while one waits for a
 * results.csv being built are answered 503 with Retry-After, in their
 * turn, and counted; the one waiting is answered; the limit does not
 * touch an answer already cached. The requests behind the first are parsed
 * microseconds after it, and the build takes milliseconds; should the
 * daemon's I/O thread be held up longer than a build (a loaded machine),
 * the round is tried again at the next position. */
Test(reads, beyond_max_heavy_queries_503_with_retry_after)
{
	static const char *const extra[] = {"--max-heavy-queries", "1", NULL};
	start(10000, 29, extra);
	struct sent s = {0};
	unsigned refused = 0;
	for (uint32_t round = 0; round < 5 && !refused; round++) {
		post(&s, round, 1);
		static char buf[4096];
		size_t n = 0;
		for (unsigned i = 0; i < 6; i++)
			n = add_get(buf, n, sizeof(buf), i == 5 ? "/v1/journal" : "/v1/results.csv");
		int fd = th_connect(td.port);
		cr_assert(fd >= 0);
		cr_assert_eq(th_send(fd, buf, n), 0);
		for (unsigned i = 0; i < 6; i++) {
			struct th_resp r;
			cr_assert_eq(th_read_resp(fd, &r, 30000), 0, "answer %u missing", i);
			if (i == 0) {
				cr_assert_eq(assert_csv_is_fold(&r, &s), s.n);
			} else if (r.status == 503) {
				cr_assert(strstr(r.head, "\r\nRetry-After: 1\r\n"), "answer %u: %s", i, r.head);
				cr_assert(strstr(r.body, "--max-heavy-queries"), "answer %u: %s", i, r.body);
				refused++;
			} else {
				cr_assert_eq(r.status, 200, "answer %u: %s", i, r.body);
			}
			th_resp_free(&r);
		}
		close(fd);
	}
	cr_assert_gt(refused, 0);
	cr_assert_eq(metric("ballotd_heavy_queries_refused_total"), refused);
	struct th_resp r;
	cr_assert_eq(th_request(td.port, "GET", "/v1/results.csv", NULL, NULL, 0, &r), 0);
	assert_csv_is_fold(&r, &s);
	th_resp_free(&r);
	cr_assert_eq(metric("ballotd_heavy_queries_waiting"), 0);
}

/* Clients that leave (reset) while their answer is built cost nothing: the
 * build finishes, the cache serves the next request, nobody waits, and the
 * daemon stops cleanly (teardown). */
Test(reads, a_client_leaving_while_its_answer_is_built)
{
	start(10000, 29, NULL);
	struct sent s = {0};
	post(&s, 3, 1);
	char req[128];
	size_t n = add_get(req, 0, sizeof(req), "/v1/results.csv");
	for (unsigned i = 0; i < 3; i++) {
		int fd = th_connect(td.port);
		cr_assert(fd >= 0);
		cr_assert_eq(th_send(fd, req, n), 0);
		struct linger lg = {.l_onoff = 1, .l_linger = 0};
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(fd);
	}
	struct th_resp r;
	cr_assert_eq(th_request(td.port, "GET", "/v1/results.csv", NULL, NULL, 0, &r), 0);
	assert_csv_is_fold(&r, &s);
	th_resp_free(&r);
	cr_assert_eq(metric("ballotd_heavy_queries_waiting"), 0);
	cr_assert_eq(metric(CSV_BUILDS), 1, "one position, one build, whoever left");
}
