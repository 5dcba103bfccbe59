/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Outside observations of a running ballotd for the hostile-client suites
 * (see probe.h).
 */
#include "tests/integration/probe.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "client/gen.h"
#include "defn/defn.h"

int tp_suite_dir(struct tp_suite *s)
{
	s->dir = th_tmpdir();
	return s->dir ? 0 : -1;
}

int tp_suite_run(struct tp_suite *s, const char *defn_path, const char *const *extra, char *why, size_t whylen)
{
	char data[600];
	s->defn_path = strdup(defn_path);
	if (!s->defn_path) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	if (bal_defn_load(s->defn_path, &s->defn, why, whylen))
		return -1;
	snprintf(data, sizeof(data), "%s/data", s->dir);
	if (th_start(&s->td, s->defn_path, data, 0, extra)) {
		snprintf(why, whylen, "ballotd did not start (log %s)", s->td.log);
		return -1;
	}
	return 0;
}

int tp_suite_start(struct tp_suite *s, uint32_t precincts, uint32_t choices, uint64_t key_seed,
                   const char *const *extra, char *why, size_t whylen)
{
	if (tp_suite_dir(s)) {
		snprintf(why, whylen, "no scratch directory");
		return -1;
	}
	char *path = th_write_defn(s->dir, precincts, 3, choices, key_seed, true);
	if (!path) {
		snprintf(why, whylen, "cannot write a definition into %s", s->dir);
		return -1;
	}
	int err = tp_suite_run(s, path, extra, why, whylen);
	free(path);
	return err;
}

int tp_suite_stop(struct tp_suite *s)
{
	int st = s->td.pid > 0 ? th_stop(&s->td) : 0;
	bal_defn_free(s->defn);
	free(s->defn_path);
	if (s->dir)
		th_rmdir(s->dir);
	free(s->dir);
	memset(s, 0, sizeof(*s));
	return st;
}

uint64_t tp_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

long tp_rss_kb(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	long kb = -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

long tp_rss_allowance_kb(long release_kb)
{
	return UNDER_ASAN ? 300 * 1024 : release_kb;
}

bool tp_asan(void)
{
	return UNDER_ASAN;
}

long tp_wait_closed(int fd, int timeout_ms)
{
	uint64_t t0 = tp_now_ms(), deadline = t0 + (uint64_t)timeout_ms;
	char buf[4096];
	for (;;) {
		uint64_t now = tp_now_ms();
		if (now >= deadline)
			return -1;
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int pr = poll(&pfd, 1, (int)(deadline - now));
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			return -1;
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return (long)(tp_now_ms() - t0);
	}
}

long long tp_metric(unsigned port, const char *name)
{
	struct th_resp r;
	if (th_request(port, "GET", "/metrics", NULL, NULL, 0, &r))
		return -1;
	long long v = -1;
	size_t nl = strlen(name);
	for (char *line = r.body; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
		if (strncmp(line, name, nl) == 0 && line[nl] == ' ') {
			v = atoll(line + nl + 1);
			break;
		}
	th_resp_free(&r);
	return v;
}

bool tp_log_has(const struct th_daemon *td, const char *needle)
{
	char *log = th_read_log(td);
	bool yes = log && strstr(log, needle) != NULL;
	free(log);
	return yes;
}

int tp_post_on(int fd, const void *body, size_t len, struct th_resp *r)
{
	char head[160];
	int hl = snprintf(head, sizeof(head), "POST /v1/batches HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n",
	                  len);
	if (th_send(fd, head, (size_t)hl) || (len && th_send(fd, body, len)))
		return -1;
	return th_read_resp(fd, r, 10000);
}

int tp_get_on(int fd, const char *path)
{
	char req[128];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
	if (th_send(fd, req, (size_t)n))
		return -1;
	struct th_resp r;
	if (th_read_resp(fd, &r, 5000))
		return -1;
	int st = r.status;
	th_resp_free(&r);
	return st;
}

uint8_t *tp_batch(const struct bal_defn *defn, uint64_t key_seed, uint32_t p, uint64_t seq, uint32_t ballots,
                  size_t *len)
{
	struct bal_gen_opts o = {.seed = 5, .key_seed = key_seed, .batch_size = ballots, .kind = BAL_KIND_BALLOTS};
	struct bal_gen *g = NULL;
	char why[256];
	if (bal_gen_new(defn, &o, &g, why, sizeof(why))) {
		fprintf(stderr, "tp_batch: %s\n", why);
		return NULL;
	}
	const uint8_t *body;
	uint8_t *copy = NULL;
	if (bal_gen_batch(g, p, seq, NULL, &body, len, why, sizeof(why)) == 0 && (copy = malloc(*len)))
		memcpy(copy, body, *len);
	else
		fprintf(stderr, "tp_batch: %s\n", why);
	bal_gen_free(g);
	return copy;
}
