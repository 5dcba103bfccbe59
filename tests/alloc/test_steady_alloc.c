/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ingest path does not allocate per batch once warm (docs/design.md
 * invariant 5). ballotd runs with a counting malloc shim preloaded; after a
 * warm-up push, a push of N batches and a push of 10N batches (same
 * connections and pipeline) are compared:
 * - the I/O threads (HTTP, decode, verify, fold, acks) must cost the same
 *   whatever the number of batches: only the new connections allocate;
 * - the committer may allocate inside LMDB once per write transaction (an ID
 *   list when it reuses freed pages), never per batch: at most two per commit.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/integration/harness.h"

#define KEY_SEED 31

static char *dir, *defn, server[64], countfile[600];
static struct th_daemon td;

static void push(unsigned long batches, unsigned long seq_start)
{
	char nb[32], ss[32], ks[32];
	snprintf(nb, sizeof(nb), "%lu", batches);
	snprintf(ss, sizeof(ss), "%lu", seq_start);
	snprintf(ks, sizeof(ks), "%d", KEY_SEED);
	const char *args[] = {"push", "--server",      server, "--definition", defn, "--key-seed",
	                      ks,     "--batches",     nb,     "--seq-start",  ss,   "--batch-size",
	                      "50",   "--connections", "8",    "--pipeline",   "8",  NULL};
	cr_assert_eq(th_ctl_run(NULL, NULL, args), 0, "push of %lu batches failed", batches);
}

struct counts {
	unsigned long io, commit, other;
};

static struct counts allocations(void)
{
	struct counts c;
	unlink(countfile);
	kill(td.pid, SIGUSR2);
	for (int i = 0; i < 200; i++) {
		FILE *f = fopen(countfile, "r");
		if (f && fscanf(f, "%lu %lu %lu", &c.io, &c.commit, &c.other) == 3) {
			fclose(f);
			return c;
		}
		if (f)
			fclose(f);
		usleep(10000);
	}
	cr_assert_fail("the malloc shim did not report");
	return c;
}

static unsigned long commits(void)
{
	struct th_resp r;
	cr_assert_eq(th_request(td.port, "GET", "/metrics", NULL, NULL, 0, &r), 0);
	static const char key[] = "\nballotd_commits_total ";
	const char *at = strstr(r.body, key);
	cr_assert(at);
	unsigned long v = strtoul(at + sizeof(key) - 1, NULL, 10);
	th_resp_free(&r);
	return v;
}

Test(alloc, ingest_does_not_allocate_per_batch)
{
#ifdef BAL_TEST_SANITIZED
	cr_skip_test("the counting malloc shim cannot run beside AddressSanitizer");
#endif
	dir = th_tmpdir();
	defn = th_write_defn(dir, 300, 5, 6, KEY_SEED, true);
	char data[600];
	snprintf(data, sizeof(data), "%s/data", dir);
	snprintf(countfile, sizeof(countfile), "%s/mallocs", dir);
	setenv("LD_PRELOAD", BAL_MALLOC_SHIM, 1);
	setenv("BAL_MALLOC_COUNT_FILE", countfile, 1);
	/* Snapshots are the one allocation that scales with batches (LMDB
	 * overflow pages): space them out so the phases compare ingest alone. */
	const char *const args[] = {"--threads", "2", "--snapshot-every", "10000000", "--snapshot-interval",
	                            "10m",       NULL};
	int err = th_start(&td, defn, data, 0, args);
	unsetenv("LD_PRELOAD");
	unsetenv("BAL_MALLOC_COUNT_FILE");
	cr_assert_eq(err, 0);
	snprintf(server, sizeof(server), "127.0.0.1:%u", td.port);

	/* Warm-up shaped like the measured pushes: every precinct, the slots a
	 * connection pipelines, and LMDB's cache of dirty pages for the largest
	 * group commits this load produces. */
	push(30000, 1);
	struct counts a0 = allocations();
	unsigned long c0 = commits();
	push(3000, 1000);
	struct counts a1 = allocations();
	unsigned long c1 = commits();
	push(30000, 2000);
	struct counts a2 = allocations();
	unsigned long c2 = commits();
	unsigned long io_small = a1.io - a0.io, io_large = a2.io - a1.io;
	unsigned long cm_small = a1.commit - a0.commit, cm_large = a2.commit - a1.commit;
	unsigned long commits_small = c1 - c0, commits_large = c2 - c1;
	fprintf(stderr,
	        "alloc: I/O threads: %lu malloc calls for 3,000 batches, %lu for 30,000; committer: %lu in %lu "
	        "commits, "
	        "%lu in %lu commits\n",
	        io_small, io_large, cm_small, commits_small, cm_large, commits_large);
	/* Each push opens 8 connections, each allocating its connection, its
	 * slot ring and one slot (slot, body, delta) per request it has in
	 * flight at once (at most its pipeline of 8), plus what the /metrics
	 * answers take: the same for both pushes. The slack covers a held-back
	 * input buffer that timing may ask for once per connection. Per-batch
	 * allocations would show as thousands here. */
	cr_expect_leq(io_large, io_small + 16,
	              "I/O-thread allocations grow with batches: %lu for 3,000, %lu for 30,000", io_small, io_large);
	cr_expect_leq(cm_large, 2 * commits_large + 64, "committer: %lu allocations in %lu commits", cm_large,
	              commits_large);
	cr_expect_eq(th_stop(&td), 0);
	th_rmdir(dir);
}
