/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Limits against the real ballotd on 127.0.0.1: numbers in paths that are
 * not canonical are 400; the default --max-body follows the definition (the
 * largest plausible batch passes, anything beyond is 413 before its body is
 * read); a connection that keeps sending refused batches is closed after
 * --max-failures-per-connection of them while another from the same address
 * goes on; twenty clients that pipeline heavy GETs and 1 MiB bodies and
 * never read keep the daemon's memory within --max-client-memory and
 * --max-connection-memory, are closed by --send-timeout, and an honest
 * station's batches are accepted meanwhile; a batch beyond --queue-bytes or
 * beyond --max-client-memory is 503 with Retry-After.
 *
 * Every case checks the daemon's answer from the outside (status, reason,
 * whether the connection is closed, /metrics, the log) and that it still
 * counts a valid batch afterwards.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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
	cr_expect(tp_log_has(&h.td, "--max-body 32768 bytes, from the definition: the largest batch precinct"),
	          "the log states the value");
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

/* ---- memory held for clients ----------------------------------------------- */

#define ATTACKERS        20
#define ATTACK_MS        4000
#define CONN_MEMORY_KB   512
#define CLIENT_MEMORY_KB (8 * 1024)
#define SEND_TIMEOUT_MS  1500
#define BODY_BYTES       (1 << 20)

static void setup_memory(void)
{
	static const char *const args[] = {"--max-body",
	                                   "1M",
	                                   "--max-connection-memory",
	                                   "512K",
	                                   "--max-client-memory",
	                                   "8M",
	                                   "--send-timeout",
	                                   "1500ms",
	                                   "--max-failures-per-connection",
	                                   "100000",
	                                   "--threads",
	                                   "2",
	                                   NULL};
	char why[256];
	/* 300 precincts x 2 contests x 8 choices: each results.csv is about 100 KB. */
	cr_assert_eq(tp_suite_start(&h, 300, 8, KEY_SEED, args, why, sizeof(why)), 0, "%s", why);
}

struct attacker {
	pthread_t thread;
	unsigned port;
	const char *stream; /* a GET of results.csv and a 1 MiB POST, sent over and over */
	size_t len;
	size_t sent;
	long closed_ms; /* from the start of the attack until the daemon closed it, or -1 */
};

/* Sends the stream round and round, never reading, until the daemon closes
 * the connection or the attack ends; then waits for the close. */
static void *attack(void *arg)
{
	struct attacker *a = arg;
	uint64_t t0 = tp_now_ms();
	a->closed_ms = -1;
	int fd = th_connect(a->port);
	if (fd < 0)
		return NULL;
	int small = 4096;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	size_t off = 0;
	while (tp_now_ms() - t0 < ATTACK_MS + SEND_TIMEOUT_MS + 3000) {
		ssize_t n = send(fd, a->stream + off, a->len - off, MSG_NOSIGNAL);
		if (n > 0) {
			a->sent += (size_t)n;
			off = (off + (size_t)n) % a->len;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			break; /* reset by the daemon */
		/* Blocked: has the daemon closed it? (Reading only to notice EOF.) */
		char peek;
		struct pollfd pfd = {.fd = fd, .events = POLLOUT | POLLRDHUP};
		if (poll(&pfd, 1, 20) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)) &&
		    recv(fd, &peek, 1, MSG_PEEK | MSG_DONTWAIT) <= 0 && errno != EAGAIN)
			break;
		if (tp_now_ms() - t0 >= ATTACK_MS && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)))
			break;
	}
	if (tp_now_ms() - t0 < ATTACK_MS + SEND_TIMEOUT_MS + 3000)
		a->closed_ms = (long)(tp_now_ms() - t0);
	close(fd);
	return NULL;
}

struct honest {
	pthread_t thread;
	unsigned accepted, retried, failed;
	volatile int stop;
};

/* A station: one batch at a time on its own connection, reading every ack,
 * retrying 503 after its Retry-After, as ballotctl upload does. */
static void *upload(void *arg)
{
	struct honest *u = arg;
	int fd = th_connect(h.td.port);
	for (uint64_t seq = 1; !u->stop && seq <= 400; seq++) {
		size_t len;
		uint8_t *body = tp_batch(h.defn, KEY_SEED, 1, seq, 20, &len);
		for (;;) {
			struct th_resp r;
			if (fd < 0 || tp_post_on(fd, body, len, &r)) {
				u->failed++;
				if (fd >= 0)
					close(fd);
				fd = th_connect(h.td.port);
				usleep(100000);
				continue;
			}
			int st = r.status;
			th_resp_free(&r);
			if (st == 503) {
				u->retried++;
				usleep(200000);
				continue;
			}
			u->accepted += st == 200;
			break;
		}
		free(body);
		usleep(10000);
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

Test(limits, clients_that_never_read_cannot_hold_memory, .init = setup_memory, .fini = stop, .timeout = 60)
{
	size_t cap = 64 + BODY_BYTES + 128;
	char *stream = malloc(cap);
	int n = sprintf(stream,
	                "GET /v1/results.csv HTTP/1.1\r\nHost: t\r\n\r\n"
	                "POST /v1/batches HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n",
	                BODY_BYTES);
	memset(stream + n, 'x', BODY_BYTES);
	size_t len = (size_t)n + BODY_BYTES;

	usleep(200000);
	long idle = tp_rss_kb(h.td.pid), peak = idle;
	struct honest u = {0};
	cr_assert_eq(pthread_create(&u.thread, NULL, upload, &u), 0);
	struct attacker a[ATTACKERS];
	for (int i = 0; i < ATTACKERS; i++) {
		a[i] = (struct attacker){.port = h.td.port, .stream = stream, .len = len};
		cr_assert_eq(pthread_create(&a[i].thread, NULL, attack, &a[i]), 0);
	}
	uint64_t t0 = tp_now_ms();
	long long held_peak = 0;
	while (tp_now_ms() - t0 < ATTACK_MS + SEND_TIMEOUT_MS + 2000) {
		long kb = tp_rss_kb(h.td.pid);
		if (kb > peak)
			peak = kb;
		long long held = tp_metric(h.td.port, "ballotd_client_memory_bytes");
		if (held > held_peak)
			held_peak = held;
		usleep(20000);
	}
	size_t sent = 0;
	int closed = 0;
	for (int i = 0; i < ATTACKERS; i++) {
		pthread_join(a[i].thread, NULL);
		sent += a[i].sent;
		closed += a[i].closed_ms >= 0;
	}
	u.stop = 1;
	pthread_join(u.thread, NULL);
	long after = tp_rss_kb(h.td.pid);
	/* Each I/O thread's decode arena (8 x --max-body) fills once with the
	 * unknown fields of a junk body, and stays: the daemon's, not a client's. */
	long arenas = 2 * (8 * 1024 + 64);
	long bound = arenas + CLIENT_MEMORY_KB + ATTACKERS * CONN_MEMORY_KB + 8 * 1024;
	fprintf(stderr,
	        "%d clients pipelining results.csv and 1 MiB bodies, never reading: %zu MiB sent, RSS idle %ld KiB, "
	        "peak %ld KiB (+%ld), after %ld KiB; held for clients at most %lld KiB; %d closed; honest station: "
	        "%u accepted, %u retried after 503, %u transport failures\n",
	        ATTACKERS, sent >> 20, idle, peak, peak - idle, after, held_peak >> 10, closed, u.accepted, u.retried,
	        u.failed);
	/* What the daemon counts: bodies within --max-client-memory, plus input
	 * held by paused connections (at most one read, 64 KiB, each). */
	cr_expect_leq(held_peak >> 10, CLIENT_MEMORY_KB + ATTACKERS * 64 + 1024, "held for clients: %lld KiB",
	              held_peak >> 10);
	/* What the system sees; under ASan freed memory stays in quarantine (256 MB)
	 * and this much churn fills it, so RSS says nothing there. */
	if (!tp_asan())
		cr_expect_lt(peak - idle, bound, "RSS rose by %ld KiB, the caps allow %ld KiB", peak - idle, bound);
	cr_expect_eq(closed, ATTACKERS, "%d of %d clients that never read were closed", closed, ATTACKERS);
	long long by_timeout = tp_metric(h.td.port, "ballotd_connections_closed_total{reason=\"send_timeout\"}");
	cr_expect_geq(by_timeout, 1, "closed by --send-timeout: %lld", by_timeout);
	cr_expect_geq(tp_metric(h.td.port, "ballotd_connection_memory_pauses_total"), 1);
	cr_expect_gt(u.accepted, 0, "the honest station's batches are accepted during the attack");
	cr_expect_eq(u.failed, 0, "the honest station's connection was never broken");
	json_t *snap = th_get_json(h.td.port, "/v1/snapshot");
	cr_assert(snap);
	cr_expect_eq(json_integer_value(json_object_get(snap, "batches")), u.accepted, "every accepted batch counts");
	json_decref(snap);
	long long held = tp_metric(h.td.port, "ballotd_client_memory_bytes");
	cr_expect_lt(held, 1 << 20, "memory held for clients once they are gone: %lld bytes", held);
	free(stream);
}

/* ---- 503 beyond --queue-bytes and --max-client-memory ------------------------ */

static void setup_queue_bytes(void)
{
	static const char *const args[] = {"--queue-bytes", "4K", NULL};
	start(args);
}

Test(limits, a_batch_beyond_queue_bytes_is_503, .init = setup_queue_bytes, .fini = stop)
{
	size_t small_len, big_len;
	uint8_t *small = tp_batch(h.defn, KEY_SEED, 2, 1, 10, &small_len);
	uint8_t *big = tp_batch(h.defn, KEY_SEED, 3, 1, 2500, &big_len);
	cr_assert(small && big && big_len > 4096, "a batch of %zu bytes", big_len);
	struct th_resp r;
	cr_assert_eq(th_post(h.td.port, big, big_len, &r), 0);
	cr_expect_eq(r.status, 503, "%s", r.body);
	cr_expect(strcasestr(r.head, "Retry-After: 1"), "%s", r.head);
	cr_expect(strstr(r.body, "--queue-bytes 4096"), "%s", r.body);
	th_resp_free(&r);
	cr_assert_eq(th_post(h.td.port, small, small_len, &r), 0);
	cr_expect_eq(r.status, 200, "%s", r.body);
	th_resp_free(&r);
	cr_expect_eq(tp_metric(h.td.port, "ballotd_limit_refusals_total{limit=\"queue_bytes\"}"), 1);
	cr_expect_eq(tp_metric(h.td.port, "ballotd_commit_queue_bytes"), 0, "nothing waits once answered");
	free(small);
	free(big);
}

static void setup_client_memory(void)
{
	static const char *const args[] = {"--max-client-memory", "320K", NULL};
	start(args);
}

Test(limits, a_batch_beyond_client_memory_is_503_until_memory_frees, .init = setup_client_memory, .fini = stop)
{
	/* One client sends 150 KB of a 200 KB body and stops: the daemon holds
	 * what came (256 KiB of room). */
	int hog = th_connect(h.td.port);
	cr_assert(hog >= 0);
	char *part = malloc(160000);
	int hl = sprintf(part, "POST /v1/batches HTTP/1.1\r\nHost: t\r\nContent-Length: 200000\r\n\r\n");
	memset(part + hl, 'x', 150000);
	cr_assert_eq(th_send(hog, part, (size_t)hl + 150000), 0);
	free(part);
	long long held = 0;
	for (int i = 0; i < 100 && held < 150000; i++, usleep(10000))
		held = tp_metric(h.td.port, "ballotd_client_memory_bytes");
	cr_expect_geq(held, 150000, "the body so far is held: %lld bytes", held);

	/* Another's batch does not fit beside it: 503, read and dropped. */
	size_t len;
	uint8_t *body = tp_batch(h.defn, KEY_SEED, 4, 1, 40000, &len);
	cr_assert(body && len > 64 * 1024, "a batch of %zu bytes", len);
	struct th_resp r;
	cr_assert_eq(th_post(h.td.port, body, len, &r), 0);
	cr_expect_eq(r.status, 503, "%s", r.body);
	cr_expect(strcasestr(r.head, "Retry-After: 1"), "%s", r.head);
	cr_expect(strstr(r.body, "--max-client-memory 327680"), "%s", r.body);
	th_resp_free(&r);
	cr_expect_eq(tp_metric(h.td.port, "ballotd_limit_refusals_total{limit=\"client_memory\"}"), 1);

	/* The hog goes: the retry is accepted, and nothing stays held. */
	close(hog);
	usleep(100000);
	cr_assert_eq(th_post(h.td.port, body, len, &r), 0);
	cr_expect_eq(r.status, 200, "%s", r.body);
	th_resp_free(&r);
	free(body);
	held = tp_metric(h.td.port, "ballotd_client_memory_bytes");
	cr_expect_leq(held, 16 * 1024, "held once every batch is answered: %lld bytes", held);
}
