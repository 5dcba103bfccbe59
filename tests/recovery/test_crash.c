/*
 * Crash recovery against the real daemon: `ballotctl push --retry-for` keeps
 * uploading while ballotd is SIGKILLed at random moments and restarted on the
 * same port and data directory. At the end every batch must be acknowledged
 * exactly once (ACCEPTED, or DUPLICATE when its commit survived a kill whose
 * ack did not), and the snapshot must equal the uploader's own fold of the
 * acknowledged batches: nothing lost, nothing counted twice.
 *
 * BAL_CRASH_KILLS sets the number of kills (default 5).
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define KEY_SEED 21

static uint64_t snapshot_position(unsigned port)
{
	json_t *s = th_get_json(port, "/v1/snapshot");
	uint64_t p = s ? (uint64_t)json_integer_value(json_object_get(s, "position")) : 0;
	json_decref(s);
	return p;
}

/* Compares the daemon's snapshot with push's "expected" object. */
static bool matches_expected(json_t *snap, json_t *exp)
{
	const char *tf[] = {"batches", "ballots", "issued", "cast", "spoiled"};
	for (int i = 0; i < 5; i++) {
		json_int_t got = json_integer_value(json_object_get(json_object_get(snap, "turnout"), tf[i]));
		json_int_t want = json_integer_value(json_object_get(json_object_get(exp, "turnout"), tf[i]));
		if (got != want) {
			fprintf(stderr, "turnout.%s: snapshot %lld, expected %lld\n", tf[i], got, want);
			return false;
		}
	}
	if (json_integer_value(json_object_get(snap, "position")) != json_integer_value(json_object_get(exp, "batches"))) {
		fprintf(stderr, "position %lld, expected batches %lld\n",
			json_integer_value(json_object_get(snap, "position")),
			json_integer_value(json_object_get(exp, "batches")));
		return false;
	}
	json_t *sc = json_object_get(snap, "contests"), *ec = json_object_get(exp, "contests");
	if (json_array_size(sc) != json_array_size(ec))
		return false;
	for (size_t c = 0; c < json_array_size(sc); c++) {
		json_t *s = json_array_get(sc, c), *e = json_array_get(ec, c);
		json_t *ch = json_object_get(s, "choices"), *ev = json_object_get(e, "votes");
		for (size_t k = 0; k < json_array_size(ev); k++) {
			json_int_t got = json_integer_value(json_object_get(json_array_get(ch, k), "votes"));
			json_int_t want = json_integer_value(json_array_get(ev, k));
			if (got != want) {
				fprintf(stderr, "contest %lld choice %zu: snapshot %lld, expected %lld\n",
					json_integer_value(json_object_get(s, "id")), k, got, want);
				return false;
			}
		}
		json_t *sd = json_object_get(s, "districts"), *ed = json_object_get(e, "districts");
		if (json_array_size(sd) != json_array_size(ed))
			return false;
		for (size_t d = 0; d < json_array_size(sd); d++) {
			json_t *sv = json_object_get(json_array_get(sd, d), "votes");
			json_t *evd = json_object_get(json_array_get(ed, d), "votes");
			if (!json_equal(sv, evd)) {
				fprintf(stderr, "contest %lld district %zu differs\n",
					json_integer_value(json_object_get(s, "id")), d);
				return false;
			}
		}
	}
	return true;
}

Test(recovery, kill9_during_push_loses_and_doubles_nothing, .timeout = 240)
{
	const char *env = getenv("BAL_CRASH_KILLS");
	int kills = env ? atoi(env) : 5;
	unsigned seed = (unsigned)time(NULL);
	srand(seed);
	char *dir = th_tmpdir();
	char *defn = th_write_defn(dir, 300, 5, 6, KEY_SEED, true);
	char data[600], out[600];
	snprintf(data, sizeof(data), "%s/data", dir);
	snprintf(out, sizeof(out), "%s/push.json", dir);
	/* Small snapshot interval: kills also land during snapshot writes. */
	const char *const args[] = {"--snapshot-every", "700", "--snapshot-interval", "50ms", NULL};
	struct th_daemon td;
	cr_assert_eq(th_start(&td, defn, data, 0, args), 0);
	unsigned port = td.port;
	uint64_t total = 6000 + 3000 * (uint64_t)kills;
	char server[64], batches[32], keyseed[32];
	snprintf(server, sizeof(server), "127.0.0.1:%u", port);
	snprintf(batches, sizeof(batches), "%llu", (unsigned long long)total);
	snprintf(keyseed, sizeof(keyseed), "%d", KEY_SEED);
	pid_t push = fork();
	if (push == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(fd, 1);
		execl(TH_BIN("ballotctl"), "ballotctl", "push", "--server", server, "--definition", defn, "--key-seed",
		      keyseed, "--seed", "5", "--batches", batches, "--batch-size", "20", "--connections", "8",
		      "--pipeline", "8", "--retry-for", "60", "--timeout", "10", "--json", (char *)NULL);
		_exit(127);
	}
	uint64_t killed_at[64] = {0};
	for (int k = 0; k < kills && k < 64; k++) {
		/* Kill somewhere in the next stretch of ingest, at a random moment. */
		uint64_t target = snapshot_position(port) + 200 + (uint64_t)(rand() % 2000);
		for (int i = 0; i < 3000 && snapshot_position(port) < target; i++)
			usleep(1000 + (useconds_t)(rand() % 3000));
		killed_at[k] = snapshot_position(port);
		th_kill9(&td);
		if (rand() % 2)
			usleep((useconds_t)(rand() % 200000)); /* uploaders see refused connections */
		cr_assert_eq(th_start(&td, defn, data, port, args), 0, "restart %d after kill at position %llu", k,
			     (unsigned long long)killed_at[k]);
		uint64_t after = snapshot_position(port);
		cr_assert_geq(after, killed_at[k], "restart %d: position %llu went back below %llu seen before the kill",
			      k, (unsigned long long)after, (unsigned long long)killed_at[k]);
	}
	int st;
	cr_assert_eq(waitpid(push, &st, 0), push);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "ballotctl push must get every batch acknowledged");
	json_error_t jerr;
	json_t *res = json_load_file(out, 0, &jerr);
	cr_assert(res, "push output: %s", jerr.text);
	cr_expect_eq(json_integer_value(json_object_get(res, "acknowledged")), (json_int_t)total);
	cr_expect_eq(json_integer_value(json_object_get(res, "rejected")), 0);
	json_t *snap = th_get_json(port, "/v1/snapshot");
	cr_assert(snap);
	cr_expect(matches_expected(snap, json_object_get(res, "expected")),
		  "recovered totals must equal the fold of acknowledged batches (seed %u)", seed);
	cr_expect_eq(json_integer_value(json_object_get(snap, "position")), (json_int_t)total,
		     "every batch journaled exactly once");
	fprintf(stderr, "recovery: %d kills survived, %llu batches checked, %lld duplicates answered (seed %u)\n", kills,
		(unsigned long long)total, json_integer_value(json_object_get(res, "duplicate")), seed);
	json_decref(snap);
	json_decref(res);
	cr_expect_eq(th_stop(&td), 0);
	free(defn);
	th_rmdir(dir);
	free(dir);
}
