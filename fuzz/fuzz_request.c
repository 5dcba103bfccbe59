/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: the daemon's request path from raw bytes, through the
 * real connection code. At start-up a daemon context is built the way
 * ballotd builds its own (tests/data/small.json, a fresh store, recovery,
 * the committer, one worker listening on 127.0.0.1 port 0); the worker's loop
 * runs on the fuzzer's thread. Each input is what a client sends on one
 * connection: it is written in pieces to a loopback connection the worker
 * accepts, and the loop runs after each piece, so the bytes take the path a
 * socket's do: the read callback, HTTP framing (daemon/http.c), requests
 * pipelined up to max_pipeline (3) with pausing and resuming, the header and
 * body caps, then ingest (decode, validate, fold; the commit queue has no
 * room, so a batch that passes is answered 503 and nothing is stored) or
 * the queries. Then the client half-closes.
 *
 * Checked: every answer is a well-formed HTTP/1.1 response whose JSON body,
 * if any, parses; and the connection is gone once the client's side is
 * closed and the answers read, unless a request is still half-received
 * (which waits for --request-timeout).
 *
 * Input layout: byte 0 picks the piece size the stream is written in (1..64
 * bytes, or all at once), the rest is the stream.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/conn.h"
#include "daemon/daemon.h"
#include "daemon/listen.h"
#include "daemon/log.h"
#include "daemon/recover.h"
#include "daemon/worker.h"
#include "fuzz/fuzz_common.h"

#define FZ_MAX_HEADER 1024
#define FZ_MAX_BODY   8192
#define FZ_PIPELINE   3
/* Loop turns allowed for the connection to go once the client is done. */
#define FZ_DRAIN_TURNS 64

static struct fz_election election;
static struct bal_daemon d;
static struct bal_worker *w;
static char dir[] = "/tmp/fuzz-request-XXXXXX";

/* The answers read so far, parsed from the front as they complete. */
static struct {
	char buf[1 << 20];
	size_t len;
	bool unchecked; /* an answer did not fit: the rest of this input is not checked */
	char json[1 << 20];
} in;

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void cleanup(void)
{
	nftw(dir, remove_one, 8, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char why[512] = "";
	bal_log_min = BAL_LOG_WARN;
	fz_election_load(&election);
	FZ_CHECK(mkdtemp(dir), "mkdtemp %s", dir);
	atexit(cleanup);
	bal_config_defaults(&d.cfg);
	d.cfg.data_dir = dir;
	d.cfg.map_size = (size_t)16 << 20;
	d.cfg.threads = 1;
	d.cfg.auth = false;
	d.cfg.max_header = FZ_MAX_HEADER;
	d.cfg.max_body = FZ_MAX_BODY;
	d.cfg.max_pipeline = FZ_PIPELINE;
	d.cfg.queue_depth = 0;
	d.defn = election.defn;
	d.layout = election.layout;
	FZ_CHECK(bal_daemon_open_store(&d) == 0, "cannot open a store in %s", dir);
	uint64_t *ctr, position;
	FZ_CHECK(bal_recover(&d, &ctr, &position) == 0, "recovery of an empty store failed");
	FZ_CHECK(bal_daemon_start_committer(&d, ctr, position) == 0, "the committer did not start");
	free(ctr);
	int fd;
	FZ_CHECK(bal_listen_open("127.0.0.1", 0, 1, &fd, &d.bound_port, why, sizeof(why)) == 0, "listen: %s", why);
	d.workers = calloc(1, sizeof(*d.workers));
	FZ_CHECK(d.workers && bal_worker_new(&d, 0, fd, &d.workers[0]) == 0, "worker: out of memory or libuv error");
	w = d.workers[0];
	return 0;
}

/* Checks and drops the complete responses at the front of `in`. */
static void check_responses(void)
{
	while (!in.unchecked) {
		in.buf[in.len] = '\0';
		char *end = strstr(in.buf, "\r\n\r\n");
		if (!end)
			return;
		size_t head = (size_t)(end + 4 - in.buf);
		int status = 0, n = 0;
		FZ_CHECK(sscanf(in.buf, "HTTP/1.1 %3d %n", &status, &n) == 1 && n == 13 && status >= 100 &&
		                 status < 600,
		         "not a status line: %.40s", in.buf);
		size_t len = 0;
		const char *json = NULL;
		if (status == 100) {
			FZ_CHECK(head == 25, "100 Continue with headers: %.*s", (int)head, in.buf);
		} else {
			const char *at = strstr(in.buf, "\r\nContent-Length: ");
			FZ_CHECK(at && at < end, "no Content-Length: %.*s", (int)head, in.buf);
			len = strtoul(at + 18, NULL, 10);
			at = strstr(in.buf, "\r\nContent-Type: application/json\r\n");
			if (at && at < end)
				json = in.buf + head;
		}
		if (in.len < head + len)
			return;
		if (json) {
			/* The syntax is what is checked: bytes a client sent may come
			 * back in an error message as they were, not always UTF-8. */
			for (size_t i = 0; i < len; i++)
				in.json[i] = json[i] & 0x80 ? 'x' : json[i];
			json_error_t err;
			json_t *v = json_loadb(in.json, len, 0, &err);
			FZ_CHECK(v, "%d answer is not JSON (%s): %.*s", status, err.text, (int)len, json);
			json_decref(v);
		}
		memmove(in.buf, in.buf + head + len, in.len - head - len);
		in.len -= head + len;
	}
}

/* One turn of the loop without waiting, then whatever the client can read. Returns false at EOF. */
static bool turn(int fd)
{
	uv_run(&w->loop, UV_RUN_NOWAIT);
	for (;;) {
		if (in.len == sizeof(in.buf) - 1) {
			in.unchecked = true;
			in.len = 0;
		}
		ssize_t n = recv(fd, in.buf + in.len, sizeof(in.buf) - 1 - in.len, MSG_DONTWAIT);
		if (n > 0) {
			in.len += (size_t)n;
			check_responses();
			continue;
		}
		return !(n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR));
	}
}

/* A blocking connect that a signal interrupts (libFuzzer's timers) goes on in
 * the background: wait for it instead of failing. 0 or -1 with errno. */
static int connect_fd(int fd, const struct sockaddr_in *sa)
{
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
		return 0;
	if (errno != EINTR)
		return -1;
	struct pollfd pfd = {.fd = fd, .events = POLLOUT};
	int rc;
	while ((rc = poll(&pfd, 1, 5000)) < 0 && errno == EINTR)
		;
	if (rc != 1)
		return -1;
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		return -1;
	errno = err;
	return err ? -1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t piece = data[0] % 65 ? data[0] % 65 : size;
	const char *p = (const char *)data + 1;
	size_t left = size - 1;
	in.len = 0;
	in.unchecked = false;

	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)d.bound_port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	FZ_CHECK(fd >= 0 && connect_fd(fd, &sa) == 0, "connect: %s", strerror(errno));
	FZ_CHECK(fcntl(fd, F_SETFL, O_NONBLOCK) == 0, "O_NONBLOCK: %s", strerror(errno));
	for (int i = 0; i < FZ_DRAIN_TURNS && !w->nconns; i++)
		turn(fd);
	FZ_CHECK(w->nconns == 1, "the worker did not accept the connection");

	bool open = true;
	while (left && open) {
		ssize_t n = send(fd, p, left < piece ? left : piece, MSG_NOSIGNAL);
		if (n < 0) {
			/* Full (the server reads no more) or closed by the server: the rest is not sent. */
			FZ_CHECK(errno == EAGAIN || errno == EWOULDBLOCK || errno == EPIPE || errno == ECONNRESET,
			         "send: %s", strerror(errno));
			break;
		}
		p += n;
		left -= (size_t)n;
		open = turn(fd);
	}
	shutdown(fd, SHUT_WR);
	for (int i = 0; i < FZ_DRAIN_TURNS && w->nconns; i++)
		turn(fd);
	if (w->nconns) {
		/* Only a request still being received may keep the connection (until --request-timeout). */
		FZ_CHECK(w->conns->msg_start_ms != 0, "connection still open %d turns after the client's EOF",
		         FZ_DRAIN_TURNS);
		bal_conn_close(w->conns);
		uv_run(&w->loop, UV_RUN_NOWAIT);
	}
	FZ_CHECK(w->nconns == 0, "connection not freed after closing");
	close(fd);
	return 0;
}
