/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ballotctl upload: the polling-station uploader. It watches a spool
 * directory (spool.c) and delivers every batch file in it to ballotd exactly
 * once, whatever happens to the link, the daemon or the uploader itself:
 *
 * - a file is fsynced before it is sent and deleted only after an ACCEPTED or
 *   DUPLICATE ack whose receipt verifies (then the directory is fsynced), so
 *   a kill at any moment leaves either the file (sent again: DUPLICATE if it
 *   had been stored) or nothing to do;
 * - the receipt must prove, under the pinned log key (--server-key), that the
 *   file's own bytes are the journal record at the acknowledged position:
 *   the signed head's signature for the definition's election, the leaf hash
 *   of the file, the leaf index, the inclusion proof up to the signed root.
 *   It is appended to the receipts file and fsynced before the file is
 *   deleted, so a deleted file always leaves its receipt behind. An answer
 *   claiming delivery without such a receipt is a failing server: logged
 *   loudly and retried like a 5xx;
 * - network errors, timeouts, 408/429, 5xx (503 and 507 included) are retried
 *   with exponential backoff and jitter, never sooner than Retry-After;
 * - other 4xx answers are final: the file goes to rejected/ with the reason.
 *
 * Threads: the main thread scans the spool (on a timer, on inotify events,
 * and when the queue runs dry), handles SIGINT/SIGTERM through a signalfd and
 * draws the progress line; each of the --connections workers owns one
 * keep-alive HTTP connection and takes files from the shared queue. A file
 * belongs to one worker from the moment it is taken until it is delivered,
 * rejected or left for the next run, so it is never sent twice at once.
 *
 * Talks HTTP with plain blocking sockets (timeouts through SO_RCVTIMEO /
 * SO_SNDTIMEO) and parses answers with client/resp.h; no libuv.
 */
#include "ballotctl/ballotctl.h"

#include "proto/codec.h"
#include "client/http.h"
#include "client/logcheck.h"
#include "client/resp.h"
#include "client/rng.h"
#include "core/reason.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char help[] =
        "usage: ballotctl upload --spool DIR --server HOST:PORT --server-key HEX|FILE\n"
        "                        --definition FILE [OPTIONS]\n"
        "\n"
        "Delivers every batch file of a spool directory to ballotd exactly once. A batch\n"
        "file holds one serialized SignedBatch and its name ends in .pb (`ballotctl\n"
        "spool-batches` writes <precinct>-<seq>.pb; names starting with '.' are ignored).\n"
        "Files are sent in (precinct, seq) order, each fsynced first, as POST /v1/batches\n"
        "over keep-alive connections, and deleted only after an ACCEPTED or DUPLICATE ack\n"
        "whose receipt verifies: the tree head it carries is signed by the --server-key\n"
        "for the election id of --definition, its leaf hash is SHA-256(0x00 || the file's\n"
        "own bytes), its leaf index is the acknowledged position - 1, and its inclusion\n"
        "proof leads from that leaf to the signed root. The receipt is then appended as one\n"
        "JSON line to RECEIPTS/receipts.jsonl (see --receipts) and fsynced, and only then\n"
        "is the file deleted; `ballotctl verify-receipt` checks that file later. A 200\n"
        "without an ack, or an ack without a receipt that verifies, is a failing server:\n"
        "one line on stderr names the check that failed (\"RECEIPT FAILED\"), nothing is\n"
        "deleted and the file is retried like a 5xx.\n"
        "Connection errors, timeouts, 408, 429 and 5xx (503, 507) are retried with\n"
        "exponential backoff and +-25% jitter, never sooner than the server's Retry-After.\n"
        "Any other 4xx (400, 401, 409, 413, 422) moves the file to DIR/rejected/, with the\n"
        "HTTP status and the server's reason in DIR/rejected/<name>.reason. Killing the\n"
        "uploader at any moment loses nothing: a file sent but not yet deleted is answered\n"
        "DUPLICATE next time and deleted then. One uploader per spool (flock on DIR).\n"
        "Writers must create a batch file complete under a name that starts with '.' or\n"
        "does not end in .pb, then rename it (a file still being written may be sent).\n"
        "\n"
        "Without --once it keeps watching the spool (inotify, and a rescan every\n"
        "--scan-interval) until SIGINT or SIGTERM, which let each connection finish its\n"
        "current request and then exit 0. Progress goes to stderr: one status line when\n"
        "stderr is a terminal (sent, pending, rejected, rate), else one line per file\n"
        "outcome with the time.\n"
        "\n"
        "  --spool DIR              spool directory (required; created if missing)\n"
        "  --server HOST:PORT       ballotd address (required; http://HOST:PORT/ works too)\n"
        "  --server-key HEX|FILE    the log's public key (required): 64 hex digits, or a file\n"
        "                           holding them (`ballotctl keygen` writes FILE.pub)\n"
        "  --definition FILE        the election definition (required): its election id is\n"
        "                           the one the signed heads must name (never the server's)\n"
        "  --receipts DIR           where receipts.jsonl is kept (default DIR/receipts, beside\n"
        "                           rejected/; created if missing). One line per delivered\n"
        "                           file: {\"file\", \"status\", \"position\", \"server\",\n"
        "                           \"election_id\", \"server_key\", \"received_at\", \"leaf_index\",\n"
        "                           \"leaf_hash\", \"tree_size\", \"timestamp_ms\", \"root_hash\",\n"
        "                           \"signature\", \"audit_path\"}\n"
        "  --once                   exit when the spool is empty\n"
        "  --connections N          parallel connections (default 1)\n"
        "  --scan-interval SECONDS  rescan period (default 1)\n"
        "  --timeout SECONDS        connect / no-answer timeout per request (default 30)\n"
        "  --min-backoff SECONDS    first retry delay (default 0.2; doubles per failure)\n"
        "  --max-backoff SECONDS    longest retry delay before jitter (default 30)\n"
        "  --give-up SECONDS        stop when a file could not be delivered for this long\n"
        "                           (default 0: retry forever)\n"
        "  --log                    log lines even when stderr is a terminal\n"
        "  --json                   print a summary object on stdout at exit:\n"
        "                           {\"server\", \"spool\", \"sent\" (accepted + duplicate),\n"
        "                            \"accepted\", \"duplicate\", \"rejected\", \"retries\",\n"
        "                            \"bad_receipts\" (acks without a receipt that verifies),\n"
        "                            \"receipts\" (the receipts file),\n"
        "                            \"pending\" (files left in the spool), \"elapsed_s\",\n"
        "                            \"batches_per_s\", \"stopped\": \"empty\"|\"signal\"|\"error\",\n"
        "                            \"error\": STR|null}\n"
        "\n"
        "Exit status: 0 when the spool was emptied with nothing rejected (--once) or on\n"
        "SIGINT/SIGTERM; 1 when a file was rejected (--once), on --give-up (a server that\n"
        "never sends a receipt that verifies ends there too), or when the spool or the\n"
        "receipts file cannot be read or changed; 2 bad command line.\n";

/* Largest batch file read into memory; ballotd's own default cap is 1 MiB. */
#define MAX_FILE (64u << 20)
/* Longest Retry-After honoured, so a broken header cannot park the uploader. */
#define MAX_RETRY_AFTER_S 3600
#define DRAW_MS           250
#define RATE_SAMPLES      9 /* 2 s of status lines */

struct upload_args {
	const char *spool;
	char server[BAL_HTTP_HOST_MAX + 16];
	struct log_trust trust; /* the pinned key and the definition's election id */
	const char *receipts;   /* directory */
	bool once, json, force_log;
	uint32_t connections;
	double scan_s, timeout_s, min_backoff_s, max_backoff_s, give_up_s;
};

/* One keep-alive connection. fd < 0: closed. `answered`: a response already
 * came back on fd, so a failure before any byte of the next one may just be
 * the server closing an idle connection. */
struct link {
	const char *server;
	char host[BAL_HTTP_HOST_MAX];
	uint16_t port;
	int timeout_ms;
	int fd;
	bool answered;
};

/* What the server said. `receipt` is valid iff has_receipt; bad_receipt:
 * the ack had one that does not decode (wrong hash or signature sizes). */
struct reply {
	int status;
	bool has_ack; /* the body is a BatchAck */
	enum bal_ack_status ack;
	uint64_t position;
	int retry_after_s; /* -1: no Retry-After */
	char error[512];   /* the ack's error, or the body as text */
	bool has_receipt, bad_receipt;
	struct bal_receipt receipt;
};

enum outcome { DELIVERED, REJECTED, RETRY };

struct uploader;

/* Invariant: `current` != NULL iff the worker owns that file (counted in busy). */
struct worker {
	struct uploader *u;
	pthread_t thread;
	unsigned index;
	struct link link;
	char *current;
	unsigned failures;      /* consecutive failed attempts */
	uint64_t failing_since; /* ms, when failures > 0 */
	struct bal_rng rng;
};

/*
 * Shared state, under `mu`:
 * - queue.v[next..n) are files waiting, none owned by a worker;
 * - `busy` = workers with `current` set;
 * - `stop` only goes false -> true; workers take no new file once it is set.
 */
struct uploader {
	struct upload_args a;
	struct spool spool;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* queue refilled, or stop */
	struct spool_list queue;
	size_t next;
	unsigned busy;
	bool stop;
	bool failed; /* a worker hit an error that ends the run; `failure` says why */
	char failure[600];
	uint64_t accepted, duplicate, rejected, retries, bad_receipts;
	char retry_note[300]; /* latest retry, for the status line */
	uint64_t retry_at;    /* ms when that retry is due */
	int wake_fd;          /* eventfd: a worker went idle with the queue empty */
	struct worker *w;
	bool tty; /* status line on stderr */
	bool status_shown;
	uint64_t start_ms;
	/* receipts.jsonl, append-only; each line written whole and fsynced
	 * under receipts_mu before its batch file is deleted. */
	int receipts_fd;
	char receipts_path[4096];
	pthread_mutex_t receipts_mu;
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- output -------------------------------------------------------------------- */

static void clear_status(struct uploader *u)
{
	if (u->status_shown) {
		fputs("\r\033[K", stderr);
		u->status_shown = false;
	}
}

/* One log line on stderr: with the UTC time when not on a terminal. Any
 * thread; the status line (if shown) is cleared first and redrawn later. */
static void note(struct uploader *u, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct uploader *u, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	flockfile(stderr);
	clear_status(u);
	if (!u->tty) {
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		        tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
	}
	fputs("upload: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	funlockfile(stderr);
	va_end(ap);
}

struct rate {
	uint64_t t[RATE_SAMPLES], sent[RATE_SAMPLES];
	unsigned n, head;
};

/* Adds a sample; returns batches/s over the samples kept (about 2 s). */
static double rate_add(struct rate *r, uint64_t t, uint64_t sent)
{
	unsigned oldest = r->n < RATE_SAMPLES ? 0 : r->head;
	r->t[r->head] = t;
	r->sent[r->head] = sent;
	r->head = (r->head + 1) % RATE_SAMPLES;
	if (r->n < RATE_SAMPLES)
		r->n++;
	uint64_t dt = t - r->t[oldest];
	return dt ? 1000.0 * (double)(sent - r->sent[oldest]) / (double)dt : 0.0;
}

static void draw_status(struct uploader *u, struct rate *rt)
{
	char line[512], b1[32], b2[32], b3[32], b4[32];
	uint64_t now = now_ms();
	pthread_mutex_lock(&u->mu);
	uint64_t sent = u->accepted + u->duplicate;
	size_t pending = u->queue.n - u->next + u->busy;
	int n = snprintf(line, sizeof(line), "upload %s: sent %s (%s duplicate), pending %s, rejected %s, %.0f/s",
	                 u->a.server, fmt_count(sent, b1), fmt_count(u->duplicate, b2), fmt_count(pending, b3),
	                 fmt_count(u->rejected, b4), rate_add(rt, now, sent));
	if (u->retry_at > now && n > 0 && (size_t)n < sizeof(line))
		snprintf(line + n, sizeof(line) - (size_t)n, "; retry in %.1f s: %s", (double)(u->retry_at - now) / 1e3,
		         u->retry_note);
	pthread_mutex_unlock(&u->mu);
	/* Never wider than the terminal: a wrapped line cannot be rewritten with \r. */
	struct winsize ws;
	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 && strlen(line) >= ws.ws_col)
		line[ws.ws_col - 1] = '\0';
	flockfile(stderr);
	fprintf(stderr, "\r%s\033[K", line);
	fflush(stderr);
	u->status_shown = true;
	funlockfile(stderr);
}

/* ---- HTTP ------------------------------------------------------------------------ */

static void link_close(struct link *l)
{
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	l->answered = false;
}

static int link_connect(struct link *l, char *why, size_t whylen)
{
	char port[8];
	snprintf(port, sizeof(port), "%u", l->port);
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
	int gai = getaddrinfo(l->host, port, &hints, &res);
	if (gai) {
		snprintf(why, whylen, "cannot resolve %s: %s", l->host, gai_strerror(gai));
		return -EHOSTUNREACH;
	}
	struct timeval tv = {.tv_sec = l->timeout_ms / 1000, .tv_usec = (l->timeout_ms % 1000) * 1000};
	int err = EHOSTUNREACH;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			err = errno;
			continue;
		}
		/* SO_SNDTIMEO also bounds connect() on Linux (EINPROGRESS when it runs out). */
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			int one = 1;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			l->fd = fd;
			l->answered = false;
			freeaddrinfo(res);
			return 0;
		}
		err = errno;
		close(fd);
	}
	freeaddrinfo(res);
	if (err == EINPROGRESS || err == EAGAIN)
		snprintf(why, whylen, "connect to %s: no answer within %d ms (--timeout)", l->server, l->timeout_ms);
	else
		snprintf(why, whylen, "connect to %s: %s", l->server, strerror(err));
	return -err;
}

static int send_request(struct link *l, const uint8_t *body, size_t len, char *why, size_t whylen)
{
	char head[512];
	int hl = snprintf(head, sizeof(head),
	                  "POST /v1/batches HTTP/1.1\r\nHost: %s\r\nUser-Agent: ballotctl-upload\r\n"
	                  "Content-Type: application/x-protobuf\r\nAccept: application/x-protobuf\r\n"
	                  "Content-Length: %zu\r\n\r\n",
	                  l->server, len);
	struct iovec iov[2] = {{head, (size_t)hl}, {(void *)body, len}};
	struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
	while (msg.msg_iovlen) {
		ssize_t n = sendmsg(l->fd, &msg, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = errno == EAGAIN ? ETIMEDOUT : errno;
			snprintf(why, whylen, "send to %s: %s", l->server, strerror(err));
			return -err;
		}
		while (msg.msg_iovlen && (size_t)n >= msg.msg_iov->iov_len) {
			n -= (ssize_t)msg.msg_iov->iov_len;
			msg.msg_iov++;
			msg.msg_iovlen--;
		}
		if (msg.msg_iovlen) {
			msg.msg_iov->iov_base = (char *)msg.msg_iov->iov_base + n;
			msg.msg_iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

/* Retry-After in the raw response head: delta-seconds or an HTTP-date; -1 if absent. */
static int parse_retry_after(const char *head)
{
	const char *end = strstr(head, "\r\n\r\n");
	for (const char *p = strstr(head, "\r\n"); p && (!end || p < end); p = strstr(p + 2, "\r\n")) {
		if (strncasecmp(p + 2, "Retry-After:", 12) != 0)
			continue;
		const char *v = p + 14;
		while (*v == ' ' || *v == '\t')
			v++;
		long s;
		if (*v >= '0' && *v <= '9') {
			s = strtol(v, NULL, 10);
		} else {
			struct tm tm = {0};
			if (!strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm))
				return -1;
			s = (long)(timegm(&tm) - time(NULL));
		}
		return s < 0 ? 0 : s > MAX_RETRY_AFTER_S ? MAX_RETRY_AFTER_S : (int)s;
	}
	return -1;
}

struct recv_state {
	bool done, keep_alive;
};

static int on_response(struct bal_resp *r)
{
	struct recv_state *st = r->ud;
	st->done = true;
	st->keep_alive = http_should_keep_alive(&r->parser);
	return 0;
}

/* The body as one line of text: the "error" of a JSON object, else the bytes
 * with control characters as spaces. */
static void body_text(const char *body, size_t len, char *out, size_t outlen)
{
	json_t *j = json_loadb(body, len, 0, NULL);
	const char *e = json_string_value(json_object_get(j, "error"));
	if (e && *e) {
		snprintf(out, outlen, "%s", e);
	} else {
		size_t n = len < outlen - 1 ? len : outlen - 1;
		for (size_t i = 0; i < n; i++)
			out[i] = (unsigned char)body[i] < 0x20 ? ' ' : body[i];
		while (n && out[n - 1] == ' ')
			n--;
		out[n] = '\0';
	}
	json_decref(j);
}

/* Reads one response into `r`. `*got_bytes` tells whether anything arrived. */
static int recv_reply(struct link *l, struct reply *r, bool *got_bytes, char *why, size_t whylen)
{
	char body[8192], head[8192], buf[16384]; /* an ack with a receipt: under 3 KiB */
	size_t hl = 0;
	struct recv_state st = {0};
	struct bal_resp rp;
	bal_resp_init(&rp, body, sizeof(body), false, 0, on_response, &st);
	*got_bytes = false;
	while (!st.done) {
		ssize_t n = recv(l->fd, buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = errno == EAGAIN ? ETIMEDOUT : errno;
			if (err == ETIMEDOUT)
				snprintf(why, whylen, "no answer from %s within %d ms (--timeout)", l->server,
				         l->timeout_ms);
			else
				snprintf(why, whylen, "receive from %s: %s", l->server, strerror(err));
			return -err;
		}
		if (n > 0)
			*got_bytes = true;
		size_t keep = (size_t)n < sizeof(head) - 1 - hl ? (size_t)n : sizeof(head) - 1 - hl;
		memcpy(head + hl, buf, keep);
		hl += keep;
		head[hl] = '\0';
		int rc = bal_resp_feed(&rp, buf, (size_t)n, why, whylen);
		if (rc < 0)
			return rc;
		if (n == 0 && !st.done) {
			snprintf(why, whylen, "%s closed the connection before answering", l->server);
			return -ECONNRESET;
		}
	}
	r->status = rp.status;
	r->retry_after_s = parse_retry_after(head);
	if (bal_resp_is_protobuf(&rp) && !rp.truncated) {
		const uint8_t *b = (const uint8_t *)rp.body;
		r->has_ack = bal_codec_ack_receipt_decode(b, rp.len, &r->ack, &r->position, r->error, sizeof(r->error),
		                                          &r->receipt, &r->has_receipt) == 0;
		/* A receipt of the wrong shape fails the whole decode: the ack
		 * itself still says what happened. */
		if (!r->has_ack &&
		    bal_codec_ack_decode(b, rp.len, &r->ack, &r->position, r->error, sizeof(r->error)) == 0)
			r->has_ack = r->bad_receipt = true;
	}
	if (!r->has_ack)
		body_text(rp.body, rp.len, r->error, sizeof(r->error));
	if (!st.keep_alive)
		link_close(l);
	else
		l->answered = true;
	return 0;
}

/* POST /v1/batches on the worker's connection, (re)connecting as needed. A
 * connection that served a request before and fails before any byte of the
 * answer was probably closed by the server while idle: one immediate retry on
 * a new connection (the batch is idempotent, so a resend is harmless). */
static int link_post(struct link *l, const uint8_t *body, size_t len, struct reply *r, char *why, size_t whylen)
{
	memset(r, 0, sizeof(*r));
	for (int attempt = 0;; attempt++) {
		bool reused = l->fd >= 0 && l->answered, got = false;
		int rc = l->fd >= 0 ? 0 : link_connect(l, why, whylen);
		bool connected = rc == 0;
		if (rc == 0)
			rc = send_request(l, body, len, why, whylen);
		/* A server may answer before reading the whole body (413) and close:
		 * the send fails, but the answer is waiting to be read. */
		if (connected && (rc == 0 || rc == -EPIPE || rc == -ECONNRESET)) {
			char rwhy[300];
			int rrc = recv_reply(l, r, &got, rwhy, sizeof(rwhy));
			if (rc == 0 || rrc == 0) {
				rc = rrc;
				if (rrc < 0)
					snprintf(why, whylen, "%s", rwhy);
			}
		}
		if (rc == 0)
			return 0;
		link_close(l);
		if (!reused || got || rc == -ETIMEDOUT || attempt > 0)
			return rc;
	}
}

/* ---- one file ----------------------------------------------------------------------- */

static enum outcome classify(int rc, const struct reply *r, char *why, size_t whylen)
{
	if (rc < 0)
		return RETRY; /* `why` says what failed */
	if (r->status == 200 && r->has_ack && (r->ack == BAL_ACK_ACCEPTED || r->ack == BAL_ACK_DUPLICATE))
		return DELIVERED;
	snprintf(why, whylen, "HTTP %d: %s", r->status, r->error[0] ? r->error : "(no reason given)");
	if (r->status == 200 && r->has_ack)
		return REJECTED; /* a REJECTED ack with 200: final all the same */
	if (r->status == 408 || r->status == 429 || r->status >= 500 || r->status < 400)
		return RETRY; /* overload, full disk, shutdown, proxies, or not an ack at all */
	return REJECTED;
}

/* Marks the end of the run (under no lock); the main thread exits 1. */
static void fail_run(struct uploader *u, const char *why)
{
	pthread_mutex_lock(&u->mu);
	if (!u->failed)
		snprintf(u->failure, sizeof(u->failure), "%s", why);
	u->failed = true;
	u->stop = true;
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mu);
	uint64_t one = 1;
	if (write(u->wake_fd, &one, sizeof(one)) < 0) {
		/* the main thread also sees `failed` at its next timer tick */
	}
}

/* Waits out the backoff after a failed attempt. false: stop (signal, or
 * --give-up ran out), leave the file for the next run. */
static bool back_off(struct worker *w, const char *name, int retry_after_s, const char *why)
{
	struct uploader *u = w->u;
	uint64_t now = now_ms();
	if (w->failures++ == 0)
		w->failing_since = now;
	if (u->a.give_up_s > 0 && (double)(now - w->failing_since) >= u->a.give_up_s * 1000.0) {
		char msg[600];
		snprintf(msg, sizeof(msg), "%s not delivered for %.0f s (--give-up %g): %s", name,
		         (double)(now - w->failing_since) / 1e3, u->a.give_up_s, why);
		fail_run(u, msg);
		return false;
	}
	double ms = u->a.min_backoff_s * 1000.0;
	for (unsigned i = 1; i < w->failures && ms < u->a.max_backoff_s * 1000.0; i++)
		ms *= 2;
	if (ms > u->a.max_backoff_s * 1000.0)
		ms = u->a.max_backoff_s * 1000.0;
	ms *= 0.75 + 0.5 * (double)bal_rng_below(&w->rng, 1000001) / 1e6; /* +-25% */
	if (retry_after_s >= 0 && ms < retry_after_s * 1000.0)
		ms = retry_after_s * 1000.0;
	uint64_t due = now + (uint64_t)ms;

	pthread_mutex_lock(&u->mu);
	u->retries++;
	snprintf(u->retry_note, sizeof(u->retry_note), "%s", why);
	u->retry_at = due;
	pthread_mutex_unlock(&u->mu);
	if (!u->tty)
		note(u, "%s: not delivered (%s); attempt %u in %.1f s%s", name, why, w->failures + 1, ms / 1e3,
		     retry_after_s >= 0 ? " (Retry-After)" : "");

	pthread_mutex_lock(&u->mu);
	while (!u->stop && now_ms() < due) {
		uint64_t left = due - now_ms();
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += (time_t)(left / 1000);
		ts.tv_nsec += (long)(left % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&u->cv, &u->mu, &ts);
	}
	bool go_on = !u->stop;
	pthread_mutex_unlock(&u->mu);
	return go_on;
}

static void reject_file(struct worker *w, const char *name, int status, const char *why)
{
	struct uploader *u = w->u;
	char reason[1024], at[64], moved[256], err[600];
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (status)
		snprintf(reason, sizeof(reason), "http_status: %d\nerror: %s\nserver: %s\nrejected_at: %s\n", status,
		         why, u->a.server, at);
	else
		snprintf(reason, sizeof(reason), "http_status: none (not sent)\nerror: %s\nrejected_at: %s\n", why, at);
	if (spool_reject(&u->spool, name, reason, moved, err, sizeof(err)) < 0) {
		fail_run(u, err);
		return;
	}
	pthread_mutex_lock(&u->mu);
	u->rejected++;
	pthread_mutex_unlock(&u->mu);
	if (status)
		note(u, "%s REJECTED (HTTP %d: %s) -> rejected/%s", name, status, why, moved);
	else
		note(u, "%s REJECTED (%s) -> rejected/%s", name, why, moved);
}

/* ---- receipts ---------------------------------------------------------------------- */

/*
 * Checks the receipt of an ACCEPTED or DUPLICATE ack for the file's bytes.
 * Returns 0, or -1 with `why` naming the first check that failed.
 */
static int check_receipt(const struct uploader *u, const uint8_t *body, size_t len, const struct reply *r, char *why,
                         size_t whylen)
{
	const char *what = r->ack == BAL_ACK_ACCEPTED ? "ACCEPTED" : "DUPLICATE";
	if (r->bad_receipt) {
		snprintf(why, whylen, "the %s ack's receipt does not decode (hash, signature or path sizes)", what);
		return -1;
	}
	if (!r->has_receipt) {
		snprintf(why, whylen, "the %s ack at position %llu carries no receipt", what,
		         (unsigned long long)r->position);
		return -1;
	}
	const struct bal_receipt *rc = &r->receipt;
	if (r->position == 0 || rc->leaf_index != r->position - 1) {
		snprintf(why, whylen, "receipt for leaf %llu, but the ack says position %llu (leaf %llu)",
		         (unsigned long long)rc->leaf_index, (unsigned long long)r->position,
		         (unsigned long long)(r->position - 1));
		return -1;
	}
	uint8_t mine[BAL_HASH_BYTES];
	bal_logcheck_leaf_hash(body, len, mine);
	if (memcmp(mine, rc->leaf_hash, sizeof(mine)) != 0) {
		char a[65], b[65];
		bal_logcheck_hex(rc->leaf_hash, sizeof(mine), a);
		bal_logcheck_hex(mine, sizeof(mine), b);
		snprintf(why, whylen, "receipt's leaf hash %.16s... is not the file's SHA-256(0x00 || bytes) %.16s...",
		         a, b);
		return -1;
	}
	char e[500];
	if (bal_logcheck_receipt_verify(rc, u->a.trust.election_id, u->a.trust.key, e, sizeof(e)) < 0) {
		snprintf(why, whylen, "receipt: %s", e);
		return -1;
	}
	return 0;
}

/* Appends the receipt line of a delivered file and fsyncs it. 0 or -1 (why). */
static int keep_receipt(struct uploader *u, const char *name, const struct reply *r, char *why, size_t whylen)
{
	char at[32];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	log_time((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000, at);
	json_t *o = json_pack("{ss ss sI ss ss ss ss}", "file", name, "status",
	                      r->ack == BAL_ACK_ACCEPTED ? "ACCEPTED" : "DUPLICATE", "position",
	                      (json_int_t)r->position, "server", u->a.server, "election_id", u->a.trust.election_id,
	                      "server_key", u->a.trust.key_hex, "received_at", at);
	char *line = NULL;
	if (o && bal_logcheck_receipt_to_json(&r->receipt, o) == 0)
		line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (!line) {
		snprintf(why, whylen, "out of memory writing the receipt of %s", name);
		return -1;
	}
	size_t len = strlen(line);
	line[len] = '\n'; /* json_dumps' NUL becomes the line end: written as one write */
	int err = 0;
	pthread_mutex_lock(&u->receipts_mu);
	for (size_t off = 0; !err && off < len + 1;) {
		ssize_t n = write(u->receipts_fd, line + off, len + 1 - off);
		if (n < 0 && errno != EINTR)
			err = errno;
		else if (n > 0)
			off += (size_t)n;
	}
	if (!err && fsync(u->receipts_fd) < 0)
		err = errno;
	pthread_mutex_unlock(&u->receipts_mu);
	free(line);
	if (err) {
		bal_fail(why, whylen, -err, "cannot keep the receipt of %s in %s: %s (the file stays in the spool)",
		         name, u->receipts_path, strerror(err));
		return -1;
	}
	return 0;
}

/* A server that claimed delivery without proving it: loud, then a retry. */
static bool receipt_failed(struct worker *w, const char *name, const char *why)
{
	struct uploader *u = w->u;
	pthread_mutex_lock(&u->mu);
	u->bad_receipts++;
	pthread_mutex_unlock(&u->mu);
	note(u, "%s: RECEIPT FAILED from %s: %s; the file is kept and sent again", name, u->a.server, why);
	return back_off(w, name, -1, why);
}

/* Delivers, rejects or (on stop) leaves one file. */
static void handle(struct worker *w, const char *name)
{
	struct uploader *u = w->u;
	char why[600], err[600];
	uint8_t *body = NULL;
	size_t len = 0;
	int rc = spool_read(&u->spool, name, MAX_FILE, &body, &len, why, sizeof(why));
	if (rc == -ENOENT)
		return; /* taken away meanwhile (or delivered by a previous pass) */
	if (rc == -EFBIG) {
		reject_file(w, name, 0, why);
		return;
	}
	if (rc < 0) {
		/* Not durable or not readable yet: a later scan tries again. */
		back_off(w, name, -1, why);
		return;
	}
	for (;;) {
		struct reply r;
		rc = link_post(&w->link, body, len, &r, why, sizeof(why));
		enum outcome o = classify(rc, &r, why, sizeof(why));
		if (o == RETRY && rc == 0 && r.status == 200) {
			/* 200 but no ack: a server (or a proxy) that says nothing. */
			snprintf(why, sizeof(why), "HTTP 200 without a BatchAck (%s)",
			         r.error[0] ? r.error : "empty body");
			if (!receipt_failed(w, name, why))
				break;
			continue;
		}
		if (o == DELIVERED && check_receipt(u, body, len, &r, why, sizeof(why)) < 0) {
			if (!receipt_failed(w, name, why))
				break;
			continue;
		}
		if (o == DELIVERED) {
			/* The receipt is kept first, then the file deleted: the ack and
			 * its verified receipt mean the batch is durable in the log. */
			if (keep_receipt(u, name, &r, err, sizeof(err)) < 0 ||
			    spool_remove(&u->spool, name, err, sizeof(err)) < 0) {
				fail_run(u, err);
				break;
			}
			pthread_mutex_lock(&u->mu);
			if (r.ack == BAL_ACK_ACCEPTED)
				u->accepted++;
			else
				u->duplicate++;
			pthread_mutex_unlock(&u->mu);
			w->failures = 0;
			if (!u->tty)
				note(u, "%s %s at position %llu", name,
				     r.ack == BAL_ACK_ACCEPTED ? "ACCEPTED" : "DUPLICATE",
				     (unsigned long long)r.position);
			break;
		}
		if (o == REJECTED) {
			w->failures = 0;
			reject_file(w, name, r.status, r.error[0] ? r.error : "(no reason given)");
			break;
		}
		if (!back_off(w, name, rc < 0 ? -1 : r.retry_after_s, why))
			break;
	}
	free(body);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct uploader *u = w->u;
	pthread_mutex_lock(&u->mu);
	for (;;) {
		while (!u->stop && u->next == u->queue.n)
			pthread_cond_wait(&u->cv, &u->mu);
		if (u->stop)
			break;
		w->current = u->queue.v[u->next].name;
		u->queue.v[u->next++].name = NULL;
		u->busy++;
		pthread_mutex_unlock(&u->mu);

		handle(w, w->current);

		pthread_mutex_lock(&u->mu);
		free(w->current);
		w->current = NULL;
		u->busy--;
		if (u->next == u->queue.n) {
			uint64_t one = 1;
			if (write(u->wake_fd, &one, sizeof(one)) < 0) {
				/* the main thread rescans on its timer anyway */
			}
		}
	}
	pthread_mutex_unlock(&u->mu);
	link_close(&w->link);
	return NULL;
}

/* ---- the spool watcher (main thread) ------------------------------------------- */

static bool owned(const struct uploader *u, const char *name)
{
	for (unsigned i = 0; i < u->a.connections; i++)
		if (u->w[i].current && strcmp(u->w[i].current, name) == 0)
			return true;
	return false;
}

/* Rescans and replaces the queue. Returns 1 when --once is done (nothing
 * waiting, nothing in flight), 0 to go on, -1 when the spool is unreadable. */
static int refill(struct uploader *u, struct spool_list *scratch)
{
	char why[600];
	if (spool_scan(&u->spool, scratch, why, sizeof(why)) < 0) {
		fail_run(u, why);
		return -1;
	}
	size_t keep = 0;
	pthread_mutex_lock(&u->mu);
	for (size_t i = 0; i < scratch->n; i++) {
		if (owned(u, scratch->v[i].name)) {
			free(scratch->v[i].name);
			continue;
		}
		scratch->v[keep++] = scratch->v[i];
	}
	scratch->n = keep;
	struct spool_list old = u->queue;
	u->queue = *scratch;
	*scratch = old;
	u->next = 0;
	bool done = u->a.once && u->queue.n == 0 && u->busy == 0;
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mu);
	spool_list_clear(scratch);
	return done ? 1 : 0;
}

static void drain_fd(int fd)
{
	char buf[4096];
	while (read(fd, buf, sizeof(buf)) > 0) {
	}
}

enum stopped { STOP_EMPTY, STOP_SIGNAL, STOP_ERROR };

/* The main loop: scans, waits for a signal / inotify / idle workers / timer,
 * draws the status line. Returns why it stopped. */
static enum stopped watch(struct uploader *u, int sig_fd, int ino_fd)
{
	struct spool_list scratch = {0};
	struct rate rt = {0};
	uint64_t scan_ms = (uint64_t)(u->a.scan_s * 1000.0), next_scan = 0, next_draw = 0;
	enum stopped why = STOP_ERROR;
	for (;;) {
		uint64_t now = now_ms();
		if (now >= next_scan) {
			int rc = refill(u, &scratch);
			if (rc != 0) {
				why = rc > 0 ? STOP_EMPTY : STOP_ERROR;
				break;
			}
			next_scan = now + scan_ms;
		}
		pthread_mutex_lock(&u->mu);
		bool failed = u->failed;
		pthread_mutex_unlock(&u->mu);
		if (failed)
			break;
		if (u->tty && now >= next_draw) {
			draw_status(u, &rt);
			next_draw = now + DRAW_MS;
		}
		uint64_t until = u->tty && next_draw < next_scan ? next_draw : next_scan;
		struct pollfd pf[3] = {{.fd = sig_fd, .events = POLLIN},
		                       {.fd = u->wake_fd, .events = POLLIN},
		                       {.fd = ino_fd, .events = POLLIN}};
		int n = poll(pf, ino_fd >= 0 ? 3 : 2, until > now ? (int)(until - now) : 0);
		if (n < 0 && errno != EINTR) {
			char msg[128];
			snprintf(msg, sizeof(msg), "poll: %s", strerror(errno));
			fail_run(u, msg);
			break;
		}
		if (n > 0 && (pf[0].revents & POLLIN)) {
			struct signalfd_siginfo si;
			if (read(sig_fd, &si, sizeof(si)) == sizeof(si))
				note(u, "%s: finishing the requests in flight, then exiting",
				     strsignal((int)si.ssi_signo));
			why = STOP_SIGNAL;
			break;
		}
		if (n > 0 && (pf[1].revents & POLLIN)) {
			drain_fd(u->wake_fd);
			next_scan = now_ms(); /* a worker is idle: look for more at once */
		}
		if (n > 0 && ino_fd >= 0 && (pf[2].revents & POLLIN)) {
			drain_fd(ino_fd);
			/* A short delay gathers a burst of new files into one scan. */
			if (next_scan > now_ms() + 50)
				next_scan = now_ms() + 50;
		}
	}
	spool_list_deinit(&scratch);
	return why;
}

/* ---- command ------------------------------------------------------------------------ */

static int parse_args(int argc, char **argv, struct upload_args *a)
{
	enum {
		O_SPOOL = 256,
		O_SERVER,
		O_ONCE,
		O_CONNS,
		O_SCAN,
		O_TIMEOUT,
		O_MIN_BACKOFF,
		O_MAX_BACKOFF,
		O_GIVE_UP,
		O_LOG,
		O_JSON,
		O_SERVER_KEY,
		O_DEFN,
		O_RECEIPTS,
		O_HELP
	};
	static const struct option longopts[] = {
	        {"spool", required_argument, NULL, O_SPOOL},
	        {"server", required_argument, NULL, O_SERVER},
	        {"once", no_argument, NULL, O_ONCE},
	        {"connections", required_argument, NULL, O_CONNS},
	        {"scan-interval", required_argument, NULL, O_SCAN},
	        {"timeout", required_argument, NULL, O_TIMEOUT},
	        {"min-backoff", required_argument, NULL, O_MIN_BACKOFF},
	        {"max-backoff", required_argument, NULL, O_MAX_BACKOFF},
	        {"give-up", required_argument, NULL, O_GIVE_UP},
	        {"log", no_argument, NULL, O_LOG},
	        {"json", no_argument, NULL, O_JSON},
	        {"server-key", required_argument, NULL, O_SERVER_KEY},
	        {"definition", required_argument, NULL, O_DEFN},
	        {"receipts", required_argument, NULL, O_RECEIPTS},
	        {"help", no_argument, NULL, O_HELP},
	        {NULL, 0, NULL, 0},
	};
	*a = (struct upload_args){
	        .connections = 1, .scan_s = 1, .timeout_s = 30, .min_backoff_s = 0.2, .max_backoff_s = 30};
	const char *server = NULL, *key = NULL, *definition = NULL;
	bool ok = true;
	int opt;
	optind = 1;
	while (ok && (opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case O_SPOOL: a->spool = optarg; break;
		case O_SERVER: server = optarg; break;
		case O_ONCE: a->once = true; break;
		case O_CONNS: ok = opt_u32("--connections", optarg, 1, 256, &a->connections); break;
		case O_SCAN: ok = opt_double("--scan-interval", optarg, 0.01, 3600, &a->scan_s); break;
		case O_TIMEOUT: ok = opt_double("--timeout", optarg, 0.1, 3600, &a->timeout_s); break;
		case O_MIN_BACKOFF: ok = opt_double("--min-backoff", optarg, 0.001, 3600, &a->min_backoff_s); break;
		case O_MAX_BACKOFF: ok = opt_double("--max-backoff", optarg, 0.001, 86400, &a->max_backoff_s); break;
		case O_GIVE_UP: ok = opt_double("--give-up", optarg, 0, 30 * 86400, &a->give_up_s); break;
		case O_LOG: a->force_log = true; break;
		case O_JSON: a->json = true; break;
		case O_SERVER_KEY: key = optarg; break;
		case O_DEFN: definition = optarg; break;
		case O_RECEIPTS: a->receipts = optarg; break;
		case O_HELP: fputs(help, stdout); return EXIT_OK;
		default: opt_bad("upload", argv); return EXIT_USAGE;
		}
	}
	if (!ok || !opt_no_operands("upload", argc, argv))
		return EXIT_USAGE;
	const char *missing = !a->spool     ? "--spool DIR"
	                      : !server     ? "--server HOST:PORT"
	                      : !key        ? "--server-key HEX|FILE (the log's public key)"
	                      : !definition ? "--definition FILE (the election the log's heads must name)"
	                                    : NULL;
	if (missing) {
		fprintf(stderr, "ballotctl upload: %s is required\n", missing);
		return EXIT_USAGE;
	}
	if (a->max_backoff_s < a->min_backoff_s) {
		fprintf(stderr, "ballotctl upload: --max-backoff %g is below --min-backoff %g\n", a->max_backoff_s,
		        a->min_backoff_s);
		return EXIT_USAGE;
	}
	if (!opt_server("upload", server, a->server, sizeof(a->server)) || !opt_server_key("upload", key, &a->trust) ||
	    !definition_election_id("upload", definition, a->trust.election_id, sizeof(a->trust.election_id)))
		return EXIT_USAGE;
	return -1;
}

static void print_summary(struct uploader *u, enum stopped stopped)
{
	static const char *const names[] = {"empty", "signal", "error"};
	double secs = (double)(now_ms() - u->start_ms) / 1e3;
	uint64_t sent = u->accepted + u->duplicate;
	struct spool_list left = {0};
	char why[600];
	size_t pending = spool_scan(&u->spool, &left, why, sizeof(why)) == 0 ? left.n : 0;
	spool_list_deinit(&left);
	char b1[32], b2[32], b3[32], b4[32], b5[32];
	char b6[32], bad[64] = "";
	if (u->bad_receipts)
		snprintf(bad, sizeof(bad), ", %s RECEIPTS FAILED", fmt_count(u->bad_receipts, b6));
	note(u, "%s sent (%s accepted, %s duplicate), %s rejected, %zu left in %s, %s retries%s in %.1f s (%.0f/s)%s%s",
	     fmt_count(sent, b1), fmt_count(u->accepted, b2), fmt_count(u->duplicate, b3), fmt_count(u->rejected, b4),
	     pending, u->a.spool, fmt_count(u->retries, b5), bad, secs, secs > 0 ? (double)sent / secs : 0.0,
	     u->failed ? "; stopped: " : "", u->failed ? u->failure : "");
	if (!u->a.json)
		return;
	json_t *j = json_object();
	json_object_set_new(j, "server", json_string(u->a.server));
	json_object_set_new(j, "spool", json_string(u->a.spool));
	json_object_set_new(j, "sent", json_integer((json_int_t)sent));
	json_object_set_new(j, "accepted", json_integer((json_int_t)u->accepted));
	json_object_set_new(j, "duplicate", json_integer((json_int_t)u->duplicate));
	json_object_set_new(j, "rejected", json_integer((json_int_t)u->rejected));
	json_object_set_new(j, "retries", json_integer((json_int_t)u->retries));
	json_object_set_new(j, "bad_receipts", json_integer((json_int_t)u->bad_receipts));
	json_object_set_new(j, "receipts", json_string(u->receipts_path));
	json_object_set_new(j, "pending", json_integer((json_int_t)pending));
	json_object_set_new(j, "elapsed_s", json_real(secs));
	json_object_set_new(j, "batches_per_s", json_real(secs > 0 ? (double)sent / secs : 0.0));
	json_object_set_new(j, "stopped", json_string(names[stopped]));
	json_object_set_new(j, "error", u->failed ? json_string(u->failure) : json_null());
	json_dumpf(j, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
	fputc('\n', stdout);
	json_decref(j);
}

static int start_workers(struct uploader *u)
{
	u->w = calloc(u->a.connections, sizeof(*u->w));
	if (!u->w)
		return -ENOMEM;
	uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	for (unsigned i = 0; i < u->a.connections; i++) {
		struct worker *w = &u->w[i];
		w->u = u;
		w->index = i;
		w->link = (struct link){.server = u->a.server, .timeout_ms = (int)(u->a.timeout_s * 1000), .fd = -1};
		char why[8];
		bal_http_hostport(u->a.server, w->link.host, &w->link.port, why, sizeof(why));
		bal_rng_seed(&w->rng, seed, 0x75706c6f6164ULL, i);
		int rc = pthread_create(&w->thread, NULL, worker_main, w);
		if (rc) {
			u->a.connections = i; /* join only the ones started */
			return -rc;
		}
	}
	return 0;
}

static int sync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), err = 0;
	if (fd < 0 || fsync(fd) < 0)
		err = errno;
	if (fd >= 0)
		close(fd);
	return -err;
}

/*
 * Opens RECEIPTS/receipts.jsonl for appending, creating the directory (mode
 * 0755) and the file (0644) as needed, both made durable. A last line that a
 * kill cut short is cut off: its batch file was not deleted (the line is
 * fsynced first), so it is delivered again and gets a whole line then.
 */
static int open_receipts(struct uploader *u, char *why, size_t whylen)
{
	char dir[3000], parent[3100];
	int dl = snprintf(dir, sizeof(dir), "%s%s", u->a.receipts ? u->a.receipts : u->a.spool,
	                  u->a.receipts ? "" : "/receipts");
	if (dl < 0 || (size_t)dl >= sizeof(dir))
		return bal_fail(why, whylen, -1, "receipts directory: path too long");
	snprintf(parent, sizeof(parent), "%s/..", dir);
	snprintf(u->receipts_path, sizeof(u->receipts_path), "%s/receipts.jsonl", dir);
	bool made = mkdir(dir, 0755) == 0;
	if (!made && errno != EEXIST)
		return bal_fail(why, whylen, -1, "cannot create the receipts directory %s: %s", dir, strerror(errno));
	int fd = open(u->receipts_path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		bal_fail(why, whylen, -1, "cannot open %s: %s", u->receipts_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	/* The end of the last whole line: just after the last '\n', or 0. */
	off_t end = st.st_size;
	char buf[4096];
	while (end > 0) {
		size_t n = end < (off_t)sizeof(buf) ? (size_t)end : sizeof(buf);
		if (pread(fd, buf, n, end - (off_t)n) != (ssize_t)n)
			break;
		size_t i = n;
		while (i > 0 && buf[i - 1] != '\n')
			i--;
		end -= (off_t)(n - i);
		if (i > 0)
			break;
	}
	int err = 0;
	if (end < st.st_size) {
		note(u, "%s: dropping an unfinished last line of %lld bytes (its batch file is still in the spool)",
		     u->receipts_path, (long long)(st.st_size - end));
		if (ftruncate(fd, end) < 0 || fsync(fd) < 0)
			err = errno;
	}
	if (!err && fsync(fd) < 0)
		err = errno;
	if (!err)
		err = -sync_path(dir);
	if (!err && made)
		err = -sync_path(parent);
	if (err) {
		bal_fail(why, whylen, -1, "cannot make %s durable: %s", u->receipts_path, strerror(err));
		close(fd);
		return -1;
	}
	u->receipts_fd = fd;
	return 0;
}

/* Runs the uploader once the spool is open and signals are routed to sig_fd. */
static int run(struct uploader *u, int sig_fd)
{
	int ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (ino_fd >= 0 && inotify_add_watch(ino_fd, u->a.spool, IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
		close(ino_fd);
		ino_fd = -1; /* the timer still finds new files */
	}
	int exit_code = EXIT_FAILED;
	u->start_ms = now_ms();
	note(u, "delivering %s to %s over %u connection%s%s", u->a.spool, u->a.server, u->a.connections,
	     u->a.connections == 1 ? "" : "s", u->a.once ? " until it is empty" : "");
	int rc = start_workers(u);
	enum stopped stopped = STOP_ERROR;
	if (rc < 0) {
		snprintf(u->failure, sizeof(u->failure), "cannot start worker threads: %s", strerror(-rc));
		u->failed = true;
	} else {
		stopped = watch(u, sig_fd, ino_fd);
	}
	pthread_mutex_lock(&u->mu);
	u->stop = true;
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mu);
	for (unsigned i = 0; i < u->a.connections; i++)
		pthread_join(u->w[i].thread, NULL);
	if (u->failed)
		stopped = STOP_ERROR;
	flockfile(stderr);
	clear_status(u);
	funlockfile(stderr);
	print_summary(u, stopped);
	if (stopped == STOP_SIGNAL || (stopped == STOP_EMPTY && u->rejected == 0))
		exit_code = EXIT_OK;
	free(u->w);
	if (ino_fd >= 0)
		close(ino_fd);
	return exit_code;
}

int cmd_upload(int argc, char **argv)
{
	struct uploader u;
	memset(&u, 0, sizeof(u));
	int rc = parse_args(argc, argv, &u.a);
	if (rc >= 0)
		return rc;
	u.tty = isatty(STDERR_FILENO) && !u.a.force_log;
	char why[600];
	if (spool_open(&u.spool, u.a.spool, true, why, sizeof(why)) < 0) {
		fprintf(stderr, "ballotctl upload: %s\n", why);
		return EXIT_FAILED;
	}
	spool_clean_tmp(&u.spool);
	if (open_receipts(&u, why, sizeof(why)) < 0) {
		fprintf(stderr, "ballotctl upload: %s\n", why);
		spool_close(&u.spool);
		return EXIT_FAILED;
	}
	pthread_mutex_init(&u.receipts_mu, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* Blocked before any thread starts, so every thread inherits the mask and
	 * SIGINT/SIGTERM arrive only through the signalfd of the main loop. */
	sigset_t mask, old;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &mask, &old);
	int exit_code = EXIT_FAILED;
	int sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sig_fd < 0) {
		fprintf(stderr, "ballotctl upload: signalfd: %s\n", strerror(errno));
		goto restore_mask;
	}
	u.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (u.wake_fd < 0) {
		fprintf(stderr, "ballotctl upload: eventfd: %s\n", strerror(errno));
		goto close_sig;
	}
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&u.cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&u.mu, NULL);

	exit_code = run(&u, sig_fd);

	spool_list_deinit(&u.queue);
	pthread_mutex_destroy(&u.mu);
	pthread_cond_destroy(&u.cv);
	close(u.wake_fd);
close_sig:
	close(sig_fd);
restore_mask:
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_mutex_destroy(&u.receipts_mu);
	close(u.receipts_fd);
	spool_close(&u.spool);
	return exit_code;
}
