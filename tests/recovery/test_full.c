/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Full LMDB map and full filesystem. Ingest runs into the limit: every batch
 * beyond it is answered 507 with a reason, none is acknowledged without being
 * stored (acknowledged count == journal position == sum of the precincts'
 * accepted batches, and the totals equal the fold of exactly the acknowledged
 * ones), queries keep working and /healthz says why it is degraded. After a
 * restart with a bigger map, or after space is freed, the same push again
 * answers DUPLICATE for exactly the batches acknowledged before and ACCEPTED
 * for the rest, with exact totals: nothing lost, nothing doubled.
 *
 * The filesystem tests mount a small tmpfs in a private mount namespace, so
 * they need root (CI runs as root); otherwise they skip and say why. The
 * storage-level test checks that a full filesystem comes back from
 * bal_store_wcommit() as -ENOSPC, including the short writes LMDB reports as
 * EIO.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "storage/storage.h"
#include "tests/recovery/torture.h"

#define KEY_SEED  31
#define PRECINCTS 300
#define BATCHES   20000

struct full_env {
	char *dir;
	char *defn;
	char data[600];
	struct th_daemon td;
};

static void env_init(struct full_env *e)
{
	e->dir = th_tmpdir();
	cr_assert(e->dir);
	e->defn = th_write_defn(e->dir, PRECINCTS, 5, 6, KEY_SEED, true);
	cr_assert(e->defn);
	snprintf(e->data, sizeof(e->data), "%s/data", e->dir);
}

static void env_deinit(struct full_env *e)
{
	if (e->td.pid > 0)
		th_kill9(&e->td);
	umount2(e->data, MNT_DETACH); /* a no-op unless the test mounted it */
	free(e->defn);
	th_rmdir(e->dir);
	free(e->dir);
}

/*
 * Mounts a tmpfs of `size` at `path` in a mount namespace of this test
 * process (the daemons it starts inherit it; nothing leaks to the host).
 * Skips the test when that is not possible.
 */
static void mount_small_fs(const char *path, const char *size)
{
	char opts[64];
	if (geteuid() != 0)
		cr_skip_test("needs root to mount a %s tmpfs for the data directory (CI runs as root); skipped", size);
	if (unshare(CLONE_NEWNS) != 0)
		cr_skip_test("unshare(CLONE_NEWNS): %s; cannot mount a private tmpfs, skipped", strerror(errno));
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		cr_skip_test("making / private in the new mount namespace: %s; skipped", strerror(errno));
	cr_assert(mkdir(path, 0700) == 0 || errno == EEXIST, "mkdir %s: %s", path, strerror(errno));
	snprintf(opts, sizeof(opts), "size=%s,mode=0700", size);
	if (mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0)
		cr_skip_test("mount -t tmpfs -o %s %s: %s; skipped", opts, path, strerror(errno));
}

/* Fills the filesystem of `path` with a file of `bytes` (allocated, not sparse). */
static void fill(const char *path, off_t bytes)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	int rc = posix_fallocate(fd, 0, bytes);
	close(fd);
	cr_assert_eq(rc, 0, "fallocate %s %lld bytes: %s", path, (long long)bytes, strerror(rc));
}

static struct tr_push push_args(struct full_env *e, const char *name)
{
	struct tr_push p = {.defn = e->defn,
	                    .port = e->td.port,
	                    .key_seed = KEY_SEED,
	                    .seed = 4,
	                    .batches = BATCHES,
	                    .batch_size = 20,
	                    .connections = 8,
	                    .pipeline = 8};
	snprintf(p.out, sizeof(p.out), "%s/%s.json", e->dir, name);
	return p;
}

static json_int_t jint(json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

/*
 * A push ran into the limit (`acked_before` of its batches were stored by an
 * earlier one). Checks the 507s and their reasons, that
 * exactly the acknowledged batches are journaled and counted, the degraded
 * health and that every query still answers. Returns the acknowledged count.
 */
static json_int_t check_at_limit(struct full_env *e, json_t *res, json_int_t acked_before)
{
	unsigned port = e->td.port;
	json_int_t acked = jint(res, "acknowledged");
	cr_assert_gt(acked, 0, "some batches must fit before the limit");
	cr_assert_gt(jint(res, "rejected"), 0, "the limit must be reached: %lld of %d acknowledged", acked, BATCHES);
	cr_expect_eq(jint(res, "errors"), 0, "every batch gets an answer at the limit");
	cr_expect_eq(jint(res, "duplicate"), acked_before, "batches stored before are DUPLICATE: %lld, expected %lld",
	             jint(res, "duplicate"), acked_before);
	cr_expect_eq(acked + jint(res, "rejected"), BATCHES);
	size_t i;
	json_t *f;
	json_array_foreach(json_object_get(res, "failures"), i, f)
	{
		const char *why = json_string_value(json_object_get(f, "error"));
		cr_expect_eq(jint(f, "http_status"), 507, "precinct %lld seq %lld: HTTP %lld (%s), expected 507",
		             jint(f, "precinct_id"), jint(f, "seq"), jint(f, "http_status"), why);
		cr_expect(why && strstr(why, "journal full") && strstr(why, "not stored"), "507 without a reason: %s",
		          why);
	}
	/* Acknowledged == stored == counted. */
	cr_expect_eq(tr_position(port), (uint64_t)acked, "journal position vs acknowledged batches");
	cr_expect(tr_totals_match(port, json_object_get(res, "expected")),
	          "totals must be the fold of exactly the acknowledged batches");
	cr_expect_eq(tr_precincts_accepted(port, e->defn, PRECINCTS), acked,
	             "the precincts' accepted batches must add up to the acknowledged ones");
	struct th_resp hr;
	cr_assert_eq(th_request(port, "GET", "/healthz", NULL, NULL, 0, &hr), 0);
	cr_expect_eq(hr.status, 503, "/healthz is 503 while batches cannot be stored (a load balancer moves on)");
	th_resp_free(&hr);
	json_t *h = th_get_json(port, "/healthz");
	cr_assert(h, "/healthz must answer at the limit");
	cr_expect_str_eq(json_string_value(json_object_get(h, "status")), "degraded");
	const char *reason = json_string_value(json_object_get(h, "reason"));
	cr_expect(reason && strstr(reason, "journal full") && strstr(reason, "507"), "healthz reason: %s",
	          reason ? reason : "(none)");
	json_decref(h);
	static const char *const paths[] = {"/v1/snapshot", "/v1/seats", "/v1/results.csv", "/v1/precincts/1",
	                                    "/metrics"};
	for (size_t k = 0; k < sizeof(paths) / sizeof(paths[0]); k++) {
		struct th_resp r;
		cr_assert_eq(th_request(port, "GET", paths[k], NULL, NULL, 0, &r), 0, "GET %s", paths[k]);
		cr_expect_eq(r.status, 200, "GET %s at the limit: HTTP %d", paths[k], r.status);
		th_resp_free(&r);
	}
	return acked;
}

/* Polls /healthz until its status is `want` (about `ms` at most). */
static bool health_becomes(unsigned port, const char *want, int ms)
{
	for (int waited = 0; waited <= ms; waited += 100) {
		json_t *h = th_get_json(port, "/healthz");
		bool ok = h && strcmp(json_string_value(json_object_get(h, "status")), want) == 0;
		json_decref(h);
		if (ok)
			return true;
		usleep(100000);
	}
	return false;
}

/* The same push again, after the limit was lifted: resumes exactly. */
static void check_resumed(struct full_env *e, json_int_t acked_before)
{
	struct tr_push p = push_args(e, "push-again");
	int st;
	json_t *res = tr_push_run(&p, &st);
	cr_assert(res);
	cr_expect_eq(st, 0, "every batch acknowledged once there is room (first error: %s)",
	             json_string_value(json_object_get(res, "first_error")));
	cr_expect_eq(jint(res, "duplicate"), acked_before,
	             "exactly the batches acknowledged at the limit are DUPLICATE: %lld, expected %lld",
	             jint(res, "duplicate"), acked_before);
	cr_expect_eq(jint(res, "accepted"), BATCHES - acked_before,
	             "exactly the batches refused at the limit are ACCEPTED now");
	cr_expect(tr_totals_match(e->td.port, json_object_get(res, "expected")), "totals must be exact");
	cr_expect(tr_precincts_exact(e->td.port, e->defn, PRECINCTS, BATCHES), "every seq journaled once");
	json_t *h = th_get_json(e->td.port, "/healthz");
	cr_expect_str_eq(json_string_value(json_object_get(h, "status")), "ok");
	json_decref(h);
	json_decref(res);
}

Test(full, map_full_answers_507_and_a_bigger_map_resumes)
{
	struct full_env e = {0};
	env_init(&e);
	/* About 12,000 of the 20,000 batches fit: the limit is reached with a wide margin. */
	const char *const small[] = {"--map-size", "2M", NULL};
	cr_assert_eq(tr_start(&e.td, e.defn, e.data, 0, small), 0);
	struct tr_push p = push_args(&e, "push");
	json_t *res = tr_push_run(&p, NULL);
	cr_assert(res);
	json_int_t acked = check_at_limit(&e, res, 0);
	json_decref(res);
	/* A clean stop at the limit still exits 0 (its final snapshot may not fit). */
	unsigned port = e.td.port;
	cr_expect_eq(th_stop(&e.td), 0);
	const char *const big[] = {"--map-size", "64M", NULL};
	cr_assert_eq(tr_start(&e.td, e.defn, e.data, port, big), 0);
	cr_expect_eq(tr_position(port), (uint64_t)acked, "restart with a bigger map recovers every stored batch");
	check_resumed(&e, acked);
	fprintf(stderr, "full map: 2 MiB map took %lld of %d batches, the other %lld got 507; resumed with 64 MiB\n",
	        acked, BATCHES, BATCHES - acked);
	cr_expect_eq(th_stop(&e.td), 0);
	env_deinit(&e);
}

Test(full, disk_full_answers_507_and_freed_space_resumes)
{
	struct full_env e = {0};
	env_init(&e);
	mount_small_fs(e.data, "8m");
	/* The map is much larger than the filesystem: the disk fills first. */
	const char *const args[] = {"--map-size", "64M", NULL};
	cr_assert_eq(tr_start(&e.td, e.defn, e.data, 0, args), 0);
	char filler[700];
	snprintf(filler, sizeof(filler), "%s/filler", e.data);
	fill(filler, 6 << 20);
	struct tr_push p = push_args(&e, "push");
	json_t *res = tr_push_run(&p, NULL);
	cr_assert(res);
	json_int_t acked = check_at_limit(&e, res, 0);
	json_decref(res);
	/* Restarting on the full disk works (recovery only reads), and pushing
	 * again there finds the stored batches and refuses the rest. */
	unsigned port = e.td.port;
	cr_expect_eq(th_stop(&e.td), 0, "a clean stop on a full disk exits 0");
	cr_assert_eq(tr_start(&e.td, e.defn, e.data, port, args), 0, "restart on a full disk");
	cr_expect_eq(tr_position(port), (uint64_t)acked);
	p = push_args(&e, "push-full");
	res = tr_push_run(&p, NULL);
	cr_assert(res);
	acked = check_at_limit(&e, res, acked);
	json_decref(res);
	/* Free space without a restart or traffic: the idle committer's probe sees room. */
	cr_assert_eq(unlink(filler), 0);
	cr_expect(health_becomes(port, "ok", 10000), "/healthz must turn ok once space is freed");
	check_resumed(&e, acked);
	fprintf(stderr,
	        "full disk: 8 MiB tmpfs (6 MiB filler) took %lld of %d batches, the other %lld got 507; resumed after "
	        "freeing space\n",
	        acked, BATCHES, BATCHES - acked);
	cr_expect_eq(th_stop(&e.td), 0);
	env_deinit(&e);
}

/* Deterministic payload of journal position `pos`. */
static void payload(uint8_t *buf, size_t len, uint64_t pos)
{
	uint64_t x = pos * 0x9e3779b97f4a7c15ULL + 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[i] = (uint8_t)x;
	}
}

struct verify {
	uint64_t next;
	size_t len;
	uint8_t *want;
	bool ok;
};

static int verify_entry(void *arg, uint64_t position, const uint8_t *bytes, size_t len)
{
	struct verify *v = arg;
	payload(v->want, v->len, position);
	if (position != v->next || len != v->len || memcmp(bytes, v->want, len) != 0) {
		fprintf(stderr, "position %llu (expected %llu): %zu bytes, content %s\n", (unsigned long long)position,
		        (unsigned long long)v->next, len, len == v->len ? "differs" : "-");
		v->ok = false;
		return 1;
	}
	v->next++;
	return 0;
}

/*
 * Storage alone on a 4 MiB tmpfs with a 64 MiB map: commits until the
 * filesystem is full must fail with -ENOSPC (never -EIO, which LMDB returns
 * for a write cut short), leave nothing behind, and succeed again after some
 * space is freed; many rounds, so both kinds of failed write occur.
 */
Test(full, storage_maps_a_full_filesystem_to_enospc)
{
	struct full_env e = {0};
	env_init(&e);
	mount_small_fs(e.data, "4m");
	char why[256];
	static const uint32_t ids[] = {1, 2};
	struct bal_store_opts o = {.dir = e.data, .map_size = 64 << 20, .precinct_ids = ids, .nprecincts = 2};
	struct bal_store *s;
	cr_assert_eq(bal_store_open(&o, &s, why, sizeof(why)), 0, "%s", why);
	enum { LEN = 24000, PER_TXN = 12, ROUNDS = 16 };
	uint8_t *buf = malloc(LEN);
	char filler[700];
	uint64_t pos = 0;
	int full = 0;
	/* Fillers made up front; each round frees one, then writes until the filesystem is full again. */
	for (int round = 0; round < ROUNDS; round++) {
		snprintf(filler, sizeof(filler), "%s/filler.%d", e.data, round);
		fill(filler, 128 << 10);
	}
	for (int round = 0; round < ROUNDS; round++) {
		snprintf(filler, sizeof(filler), "%s/filler.%d", e.data, round);
		cr_assert_eq(unlink(filler), 0);
		for (int txn = 0; txn < 1000; txn++) {
			uint64_t got;
			cr_assert_eq(bal_store_wbegin(s), 0);
			for (uint32_t i = 0; i < PER_TXN; i++) {
				payload(buf, LEN, pos + i + 1);
				cr_assert_eq(bal_store_append(s, 0, pos + i + 1, buf, LEN, &got), 0);
			}
			int rc = bal_store_wcommit(s);
			if (rc == 0) {
				pos += PER_TXN;
				cr_assert_eq(bal_store_position(s), pos);
				continue;
			}
			cr_assert_eq(rc, -ENOSPC, "round %d: a full filesystem must be -ENOSPC, got %d (%s)", round, rc,
			             bal_strerror(rc));
			cr_assert_eq(bal_store_position(s), pos, "a failed commit must not move the position");
			full++;
			break;
		}
	}
	cr_expect_eq(full, ROUNDS, "every round must end on a full filesystem");
	struct verify v = {.next = 1, .len = LEN, .want = malloc(LEN), .ok = true};
	cr_expect_eq(bal_store_journal_scan(s, 0, verify_entry, &v), 0);
	cr_expect(v.ok && v.next == pos + 1, "journal holds exactly positions 1..%llu intact", (unsigned long long)pos);
	bal_store_close(s);
	/* Reopened, it has exactly what was committed. */
	cr_assert_eq(bal_store_open(&o, &s, why, sizeof(why)), 0, "%s", why);
	cr_expect_eq(bal_store_position(s), pos);
	bal_store_close(s);
	fprintf(stderr, "full disk (storage): %d rounds ended in -ENOSPC, %llu records intact\n", full,
	        (unsigned long long)pos);
	free(v.want);
	free(buf);
	env_deinit(&e);
}
