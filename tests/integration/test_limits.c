/*
 * Limits against the real ballotd on 127.0.0.1: numbers in paths that are
 * not canonical are 400; the default --max-body follows the definition (the
 * largest plausible batch passes, anything beyond is 413 before its body is
 * read); a connection that keeps sending refused batches is closed after
 * --max-failures-per-connection of them while another from the same address
 * goes on.
 *
 * Every case checks the daemon's answer from the outside (status, reason,
 * whether the connection is closed, /metrics, the log) and that it still
 * counts a valid batch afterwards.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/defgen.h"
#include "defn/defn.h"
#include "tests/integration/harness.h"
#include "tests/integration/probe.h"

#define KEY_SEED 29

/* The daemon of the current test, its election and scratch directory. */
static struct tp_suite h;

static void start(const char *const *extra)
{
	char why[256];
	cr_assert_eq(tp_suite_start(&h, 20, 4, KEY_SEED, extra, why, sizeof(why)), 0, "%s", why);
}

static void stop(void)
{
	cr_expect_eq(tp_suite_stop(&h), 0, "ballotd should still be alive and exit 0 on SIGTERM");
}

static void setup_default(void)
{
	start(NULL);
}

/* ---- numbers in paths ------------------------------------------------------ */

Test(limits, precinct_ids_in_paths_are_canonical, .init = setup_default, .fini = stop)
{
	static const struct {
		const char *path;
		int status;
	} cases[] = {
	        {"/v1/precincts/1", 200},
	        {"/v1/precincts/20", 200},
	        {"/v1/precincts/+1", 400},
	        {"/v1/precincts/01", 400},
	        {"/v1/precincts/00", 400},
	        {"/v1/precincts/%201", 400},
	        {"/v1/precincts/-1", 400},
	        {"/v1/precincts/1x", 400},
	        {"/v1/precincts/", 400},
	        {"/v1/precincts/0", 404},
	        {"/v1/precincts/4294967295", 404},
	        {"/v1/precincts/4294967296", 400},
	        {"/v1/precincts/18446744073709551617", 400},
	        {"/v1/precincts/99999999999999999999999999", 400},
	};
	int fd = th_connect(h.td.port);
	cr_assert(fd >= 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int st = tp_get_on(fd, cases[i].path);
		cr_expect_eq(st, cases[i].status, "%s: %d, want %d", cases[i].path, st, cases[i].status);
		if (st < 0) {
			close(fd);
			fd = th_connect(h.td.port);
		}
	}
	close(fd);
	/* A raw space ends the target: the rest is not an HTTP version. */
	struct th_resp r;
	fd = th_connect(h.td.port);
	const char *sp = "GET /v1/precincts/ 1 HTTP/1.1\r\nHost: t\r\n\r\n";
	(void)th_send(fd, sp, strlen(sp));
	cr_assert_eq(th_read_resp(fd, &r, 5000), 0);
	cr_expect_eq(r.status, 400, "%s", r.body);
	th_resp_free(&r);
	close(fd);
}

/* ---- the default --max-body ------------------------------------------------ */

/* A demo-shaped election, 40 precincts of 500..3000 voters, bounded. */
static void setup_bounded(void)
{
	char why[256];
	cr_assert_eq(tp_suite_dir(&h), 0);
	struct bal_defgen_opts o;
	bal_defgen_defaults(&o);
	o.precincts = 40;
	o.districts = 3;
	o.seed = KEY_SEED;
	char *path = NULL;
	cr_assert_eq(bal_defgen_json(&o, &path, &(size_t){0}, why, sizeof(why)), 0, "%s", why);
	char file[600];
	snprintf(file, sizeof(file), "%s/bounded.json", h.dir);
	FILE *f = fopen(file, "w");
	cr_assert(f);
	fputs(path, f);
	fclose(f);
	free(path);
	cr_assert_eq(tp_suite_run(&h, file, NULL, why, sizeof(why)), 0, "%s", why);
}

/* The precinct index with the most voters allowed. */
static uint32_t largest_precinct(void)
{
	uint32_t best = 0;
	for (uint32_t p = 1; p < h.defn->nprecincts; p++)
		if (h.defn->precincts[p].max_voters > h.defn->precincts[best].max_voters)
			best = p;
	return best;
}

Test(limits, max_body_follows_the_definition, .init = setup_bounded, .fini = stop)
{
	/* Two contests a precinct, at most 3000 voters: 2 x 3000 x 5 bytes and
	 * the rest rounds up to 32 KiB. */
	cr_expect(tp_log_has(&h.td, "--max-body 32768 bytes: the largest batch precinct"), "the log states the value");
	uint32_t big = largest_precinct();
	uint64_t voters = h.defn->precincts[big].max_voters;
	size_t len;
	uint8_t *body = tp_batch(h.defn, KEY_SEED, big, 1, (uint32_t)voters, &len);
	cr_assert(body);
	cr_log_info("largest plausible batch: %llu ballots, %zu bytes", (unsigned long long)voters, len);
	struct th_resp r;
	cr_assert_eq(th_post(h.td.port, body, len, &r), 0);
	cr_expect_eq(r.status, 200, "the largest plausible batch (%zu bytes) passes: %s", len, r.body);
	th_resp_free(&r);
	free(body);

	/* 40000 bytes declared: 413 before the body is sent. */
	int fd = th_connect(h.td.port);
	cr_assert(fd >= 0);
	const char *head = "POST /v1/batches HTTP/1.1\r\nHost: t\r\nContent-Length: 40000\r\n\r\n";
	cr_assert_eq(th_send(fd, head, strlen(head)), 0);
	cr_assert_eq(th_read_resp(fd, &r, 5000), 0, "413 comes without the body");
	cr_expect_eq(r.status, 413, "%s", r.body);
	cr_expect(strstr(r.body, "limit of 32768 bytes (--max-body)"), "%s", r.body);
	th_resp_free(&r);
	close(fd);
}

static void setup_bounded_given(void)
{
	char why[256];
	static const char *const args[] = {"--max-body", "64K", NULL};
	cr_assert_eq(tp_suite_start(&h, 20, 4, KEY_SEED, args, why, sizeof(why)), 0, "%s", why);
}

Test(limits, max_body_given_is_kept, .init = setup_bounded_given, .fini = stop)
{
	cr_expect(tp_log_has(&h.td, "--max-body 65536 bytes (given)"));
}

Test(limits, max_body_with_unbounded_precincts_is_1m, .init = setup_default, .fini = stop)
{
	cr_expect(tp_log_has(&h.td, "--max-body 1048576 bytes: precinct"),
	          "th_write_defn() writes unbounded precincts");
}

/* ---- failures per connection ----------------------------------------------- */

static void setup_failures(void)
{
	static const char *const args[] = {"--max-failures-per-connection", "5", NULL};
	start(args);
}

Test(limits, a_connection_that_keeps_failing_is_closed, .init = setup_failures, .fini = stop)
{
	/* Another connection from the same address, open all along. */
	int other = th_connect(h.td.port);
	cr_assert(other >= 0);
	cr_assert_eq(tp_get_on(other, "/healthz"), 200);

	/* Ten undecodable batches in one write: five are answered, the fifth
	 * announces the close, the rest is never read. */
	char req[2048];
	size_t n = 0;
	for (int i = 0; i < 10; i++)
		n += (size_t)sprintf(req + n, "POST /v1/batches HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nxyz");
	int fd = th_connect(h.td.port);
	cr_assert(fd >= 0);
	cr_assert_eq(th_send(fd, req, n), 0);
	for (int i = 0; i < 5; i++) {
		struct th_resp r;
		cr_assert_eq(th_read_resp(fd, &r, 5000), 0, "answer %d", i + 1);
		cr_expect_eq(r.status, 400, "answer %d: %s", i + 1, r.body);
		bool closes = strcasestr(r.head, "Connection: close") != NULL;
		cr_expect_eq(closes, i == 4, "answer %d %s the close", i + 1,
		             closes ? "announces" : "does not announce");
		th_resp_free(&r);
	}
	cr_expect_geq(tp_wait_closed(fd, 2000), 0, "closed after the fifth refusal");
	close(fd);
	cr_expect(tp_log_has(&h.td, "closing after 5 refused batches (--max-failures-per-connection 5)"));
	cr_expect_eq(tp_metric(h.td.port, "ballotd_connections_closed_total{reason=\"failures\"}"), 1);

	/* Four refusals, then a valid batch, on the connection that stayed. */
	for (int i = 0; i < 4; i++) {
		struct th_resp r;
		cr_assert_eq(tp_post_on(other, "xyz", 3, &r), 0);
		cr_expect_eq(r.status, 400);
		th_resp_free(&r);
	}
	size_t len;
	uint8_t *body = tp_batch(h.defn, KEY_SEED, 0, 1, 10, &len);
	struct th_resp r;
	cr_assert_eq(tp_post_on(other, body, len, &r), 0, "the other connection is still served");
	cr_expect_eq(r.status, 200, "%s", r.body);
	cr_expect_not(strcasestr(r.head, "Connection: close"), "%s", r.head);
	th_resp_free(&r);
	free(body);
	close(other);
}
