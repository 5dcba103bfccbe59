/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ballot-abuse: attacks a running ballotd on this machine and measures what
 * each attack costs it. Every figure is measured from outside (the daemon's
 * /healthz, its answers, /proc/PID), none is assumed:
 *
 * - junk: bytes LMDB grows by per anonymous junk request (map_used before
 *   and after N requests: a journaled batch resent with padding, batches
 *   with a random signature, random bytes);
 * - stolen: the share of honest batches ACCEPTED after a stolen precinct key
 *   sent eight TALLY batches with counts near 2^63 and 2^64;
 * - memory: peak RSS of PID while 20 connections pipeline unread GET
 *   /v1/results.csv requests and 1 MiB POSTs, against its idle RSS;
 * - cpu: daemon CPU time per refused 1 MiB request (a random signature, and
 *   a junk body), from /proc/PID/stat.
 *
 * `--flood-csv` instead reads GET /v1/results.csv over 4 connections until
 * SIGTERM or --seconds, for ingest measured beside it (scripts/abuse).
 *
 * Talks to 127.x only; every loop is bounded in count and in time. Progress
 * on stderr, one JSON object on stdout.
 */
#include "client/cli.h"
#include "client/gen.h"
#include "client/http.h"
#include "client/keys.h"
#include "core/ballot.h"
#include "defn/defn.h"
#include "proto/codec.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PROG "ballot-abuse"

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };
enum { PH_JUNK = 1, PH_STOLEN = 2, PH_MEMORY = 4, PH_CPU = 8, PH_ALL = 15 };

static const char help[] =
        "usage: ballot-abuse --server HOST:PORT --definition FILE --pid PID [OPTIONS]\n"
        "       ballot-abuse --flood-csv --server HOST:PORT [--connections 4] [--seconds S]\n"
        "\n"
        "Attacks the ballotd at HOST:PORT (127.x only; PID is its process) and prints what\n"
        "each attack cost it as one JSON object (bench/README.md, scripts/abuse).\n"
        "\n"
        "  --server HOST:PORT   the daemon, on 127.x\n"
        "  --definition FILE    its election definition (demo keys of --key-seed)\n"
        "  --pid PID            its process, for VmRSS and CPU time\n"
        "  --key-seed S         seed of the definition's demo keys (default 2023)\n"
        "  --seq N              first seq the attacks and honest batches use (default 4000000000)\n"
        "  --phases LIST        junk,stolen,memory,cpu (default all)\n"
        "  --junk N             junk requests (default 3000)\n"
        "  --cpu N              1 MiB requests per CPU figure (default 500)\n"
        "  --body BYTES         size of the large requests (default 1048576, the largest --max-body\n"
        "                       ballotd derives)\n"
        "  --seconds S          memory-hold attack length (default 10); with --flood-csv the\n"
        "                       longest the flood runs (default 120)\n"
        "  --connections C      memory-hold connections (default 20); flood connections (default 4)\n"
        "  --flood-csv          only flood GET /v1/results.csv until SIGTERM or --seconds\n"
        "  --quiet              no progress lines\n"
        "\n"
        "Exit status: 0 measured; 1 could not measure (daemon unreachable, bad definition, no\n"
        "results.csv read);\n"
        "2 bad command line.\n";

struct args {
	const char *server, *definition;
	long pid;
	uint64_t key_seed, seq;
	uint32_t junk, cpu, connections, body;
	double seconds;
	unsigned phases;
	bool flood_csv, quiet, seconds_set, connections_set;
};

static struct args A;
static struct sockaddr_in target;
static const struct bal_defn *D;

static void say(const char *fmt, ...)
{
	if (A.quiet)
		return;
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, PROG ": ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ---- the daemon's process ------------------------------------------------------ */

/* /proc/PID/NAME of the daemon into buf (NUL-terminated); false when it is gone. */
static bool proc_read(const char *name, char *buf, size_t cap)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%ld/%s", A.pid, name);
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	size_t n = fread(buf, 1, cap - 1, f);
	fclose(f);
	buf[n] = '\0';
	return n > 0;
}

/* Resident memory of the daemon in KiB (VmRSS), or -1 when it is gone. */
static long rss_kib(void)
{
	char buf[256];
	unsigned long long size, resident;
	if (!proc_read("statm", buf, sizeof(buf)) || sscanf(buf, "%llu %llu", &size, &resident) != 2)
		return -1;
	return (long)(resident * (unsigned long long)sysconf(_SC_PAGESIZE) / 1024);
}

/* utime + stime of the daemon (every thread) in milliseconds, or -1. */
static double cpu_ms(void)
{
	char buf[1024];
	if (!proc_read("stat", buf, sizeof(buf)))
		return -1;
	/* Fields after the command name (which may hold spaces): state is
	 * field 3, utime 14 and stime 15. */
	char *p = strrchr(buf, ')');
	unsigned long long ut, st;
	if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) * 1000.0 / (double)sysconf(_SC_CLK_TCK);
}

/* ---- HTTP on keep-alive connections -------------------------------------------- */

struct conn {
	int fd;
	char *buf; /* read buffer: [off, len) not yet consumed */
	size_t cap, off, len;
};

/* Connects to the daemon; rcvbuf > 0 shrinks the receive window first. */
static int conn_open(struct conn *c, int rcvbuf, bool nonblocking)
{
	memset(c, 0, sizeof(*c));
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -1;
	if (rcvbuf > 0)
		setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	struct timeval tv = {.tv_sec = 10};
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (const struct sockaddr *)&target, sizeof(target)) != 0) {
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	if (nonblocking)
		fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
	return 0;
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c->buf);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

static int send_all(int fd, const void *p, size_t n)
{
	const char *s = p;
	while (n) {
		ssize_t k = send(fd, s, n, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		s += k;
		n -= (size_t)k;
	}
	return 0;
}

/* Reads more into c->buf (10 s socket timeout). >0 bytes, 0 EOF, -1 error. */
static ssize_t fill(struct conn *c)
{
	if (c->off && c->off == c->len)
		c->off = c->len = 0;
	if (c->len == c->cap) {
		if (c->off) {
			memmove(c->buf, c->buf + c->off, c->len - c->off);
			c->len -= c->off;
			c->off = 0;
		} else {
			size_t cap = c->cap ? c->cap * 2 : 65536;
			char *b = realloc(c->buf, cap);
			if (!b)
				return -1;
			c->buf = b;
			c->cap = cap;
		}
	}
	for (;;) {
		ssize_t k = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k > 0)
			c->len += (size_t)k;
		return k;
	}
}

struct resp {
	int status;
	char *body; /* malloc'd and NUL-terminated when kept */
	size_t len;
};

/*
 * Reads one response (Content-Length framed, as ballotd answers). The body
 * is kept when `keep`, else counted and dropped (a results.csv is MBs).
 * 0, or -1 on EOF, timeout or a response that does not parse.
 */
static int read_resp(struct conn *c, struct resp *r, bool keep)
{
	memset(r, 0, sizeof(*r));
	char *eoh;
	for (;;) {
		eoh = c->len > c->off ? memmem(c->buf + c->off, c->len - c->off, "\r\n\r\n", 4) : NULL;
		if (eoh)
			break;
		if (c->len - c->off > 65536 || fill(c) <= 0)
			return -1;
	}
	char *head = c->buf + c->off;
	size_t hl = (size_t)(eoh - head) + 4;
	if (sscanf(head, "HTTP/1.%*d %d", &r->status) != 1)
		return -1;
	size_t clen = 0;
	for (char *l = memchr(head, '\n', hl); l && l < eoh; l = memchr(l + 1, '\n', (size_t)(eoh - l))) {
		if (strncasecmp(l + 1, "Content-Length:", 15) == 0)
			clen = strtoull(l + 16, NULL, 10);
	}
	c->off += hl;
	if (keep) {
		r->body = malloc(clen + 1);
		if (!r->body)
			return -1;
	}
	size_t got = 0;
	while (got < clen) {
		if (c->off == c->len && fill(c) <= 0) {
			free(r->body);
			r->body = NULL;
			return -1;
		}
		size_t take = c->len - c->off < clen - got ? c->len - c->off : clen - got;
		if (keep)
			memcpy(r->body + got, c->buf + c->off, take);
		got += take;
		c->off += take;
	}
	if (keep)
		r->body[clen] = '\0';
	r->len = clen;
	return 0;
}

static void resp_free(struct resp *r)
{
	free(r->body);
	r->body = NULL;
}

/* A POST /v1/batches request for `body` (head and body in one buffer). */
static uint8_t *post_request(const uint8_t *body, size_t len, size_t *out_len)
{
	char head[128];
	int hl = snprintf(head, sizeof(head), "POST /v1/batches HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n",
	                  len);
	uint8_t *req = malloc((size_t)hl + len);
	if (!req)
		return NULL;
	memcpy(req, head, (size_t)hl);
	memcpy(req + hl, body, len);
	*out_len = (size_t)hl + len;
	return req;
}

/* Status counts of answers, for the JSON. */
struct tally {
	unsigned long by_status[600];
	unsigned long answered, accepted, duplicate;
	unsigned long lost;   /* never answered */
	unsigned long closed; /* connections the daemon closed under us */
};

static void count(struct tally *t, const struct resp *r)
{
	if (r->status > 0 && r->status < 600)
		t->by_status[r->status]++;
	if (r->body && strstr(r->body, "\"status\":\"ACCEPTED\""))
		t->accepted++;
	else if (r->body && strstr(r->body, "\"status\":\"DUPLICATE\""))
		t->duplicate++;
}

static json_t *statuses_json(const struct tally *t)
{
	json_t *o = json_object();
	for (int s = 0; s < 600; s++)
		if (t->by_status[s]) {
			char k[8];
			snprintf(k, sizeof(k), "%d", s);
			json_object_set_new(o, k, json_integer((json_int_t)t->by_status[s]));
		}
	if (t->lost)
		json_object_set_new(o, "unanswered", json_integer((json_int_t)t->lost));
	if (t->closed)
		json_object_set_new(o, "connections_closed_by_daemon", json_integer((json_int_t)t->closed));
	return o;
}

/*
 * n POST requests (bodies made by `make`), `window` in flight at a time on
 * one keep-alive connection; each answer counted into t. When the daemon
 * closes the connection (a refused request too many), the rest go on a new
 * one, as an attacker's would; the window's unanswered requests are made and
 * sent again. Gives up after 3 connections in a row that answer nothing.
 */
typedef uint8_t *(*make_body_fn)(unsigned i, size_t *len, void *arg);

static void pipeline(unsigned n, unsigned window, make_body_fn make, void *arg, struct tally *t)
{
	struct conn c = {.fd = -1};
	unsigned done = 0, barren = 0;
	while (done < n && barren < 3) {
		if (c.fd < 0 && conn_open(&c, 0, false)) {
			barren++;
			sleep_ms(100);
			continue;
		}
		unsigned k = n - done < window ? n - done : window, sent = 0, answered = 0;
		bool made = true;
		for (; sent < k; sent++) {
			size_t blen, rlen;
			uint8_t *body = make(done + sent, &blen, arg);
			uint8_t *req = body ? post_request(body, blen, &rlen) : NULL;
			made = req != NULL;
			bool ok = made && send_all(c.fd, req, rlen) == 0;
			free(req);
			free(body);
			if (!ok)
				break;
		}
		for (; answered < sent; answered++) {
			struct resp r;
			if (read_resp(&c, &r, true))
				break;
			count(t, &r);
			resp_free(&r);
		}
		done += answered;
		t->answered += answered;
		barren = answered ? 0 : barren + 1;
		if (!made)
			break; /* out of memory, or no batch to make: the rest are lost */
		if (answered < k) {
			t->closed++;
			conn_close(&c);
		}
	}
	t->lost += n - done;
	conn_close(&c);
}

/* One POST on a new connection, its answer counted into t. */
static void post_once(const uint8_t *body, size_t len, struct tally *t)
{
	struct conn c = {.fd = -1};
	size_t rl;
	uint8_t *req = post_request(body, len, &rl);
	struct resp r = {0};
	if (!req || conn_open(&c, 0, false) || send_all(c.fd, req, rl) || read_resp(&c, &r, true)) {
		t->lost++;
	} else {
		t->answered++;
		count(t, &r);
	}
	resp_free(&r);
	conn_close(&c);
	free(req);
}

/* ---- one-off queries --------------------------------------------------------- */

static json_t *get_json(const char *path)
{
	struct bal_http_resp r;
	char why[256];
	if (bal_http_request(A.server, "GET", path, NULL, 0, NULL, 10000, 1 << 20, &r, why, sizeof(why)))
		return NULL;
	json_error_t err;
	/* /healthz answers its JSON with 503 while batches cannot be accepted. */
	bool ok = r.status == 200 || (r.status == 503 && strcmp(path, "/healthz") == 0);
	json_t *j = ok ? json_loadb(r.body, r.len, 0, &err) : NULL;
	bal_http_resp_deinit(&r);
	return j;
}

struct health {
	uint64_t position, snapshot_position, map_used;
};

static int health(struct health *h)
{
	json_t *j = get_json("/healthz");
	if (!j)
		return -1;
	h->position = (uint64_t)json_integer_value(json_object_get(j, "position"));
	h->snapshot_position = (uint64_t)json_integer_value(json_object_get(j, "snapshot_position"));
	h->map_used = (uint64_t)json_integer_value(json_object_get(j, "map_used"));
	json_decref(j);
	return 0;
}

/*
 * map_used once the committer has nothing left to write: every snapshot
 * slice at the committed position (an idle committer writes them after its
 * --snapshot-interval) and two readings 300 ms apart equal. Waits at most
 * 30 s; -1 if it did not settle or the daemon does not answer.
 */
static int settled(struct health *out)
{
	uint64_t deadline = now_ms() + 30000, last = UINT64_MAX;
	while (now_ms() < deadline) {
		struct health h;
		if (health(&h))
			return -1;
		if (h.position == h.snapshot_position && h.map_used == last) {
			*out = h;
			return 0;
		}
		last = h.position == h.snapshot_position ? h.map_used : UINT64_MAX;
		sleep_ms(300);
	}
	return -1;
}

/* ---- batches ------------------------------------------------------------------- */

/* SignedBatch of b with signature sig (sl bytes); malloc'd. */
static uint8_t *pack(const struct bal_batch *b, const uint8_t *sig, size_t sl, size_t *len)
{
	size_t bl = bal_codec_batch_size(b);
	uint8_t *inner = malloc(bl ? bl : 1);
	if (!inner)
		return NULL;
	bal_codec_batch_pack(b, inner);
	uint8_t *out = malloc(bal_codec_signed_size(inner, bl, sig, sl));
	if (out)
		*len = bal_codec_signed_pack(inner, bl, sig, sl, out);
	free(inner);
	return out;
}

/* b signed with the demo key of its precinct. */
static uint8_t *pack_signed(const struct bal_batch *b, size_t *len)
{
	size_t bl = bal_codec_batch_size(b);
	uint8_t *inner = malloc(bl ? bl : 1), pk[32], sk[64], sig[64];
	if (!inner)
		return NULL;
	bal_codec_batch_pack(b, inner);
	bal_demo_keypair(A.key_seed, b->precinct_id, pk, sk);
	crypto_sign_detached(sig, NULL, inner, bl, sk);
	sodium_memzero(sk, sizeof(sk));
	free(inner);
	return pack(b, sig, 64, len);
}

/*
 * A BALLOTS batch of precinct index p close to `size` bytes on the wire
 * (at most that), one column of the first contest, with a random signature.
 * Decodes, and is refused when its signature is checked (401).
 */
struct big {
	uint32_t *choices;
	struct bal_column col;
	struct bal_batch b;
};

static void big_init(struct big *g, uint32_t p, uint64_t seq, size_t size)
{
	const struct bal_contest *ct = &D->contests[0];
	g->choices = malloc(size * sizeof(uint32_t));
	bal_require(g->choices);
	for (size_t i = 0; i < size; i++)
		g->choices[i] = (uint32_t)(i % (ct->nchoices < 128 ? ct->nchoices : 128));
	g->col = (struct bal_column){.contest_id = ct->id, .choices = g->choices};
	g->b = (struct bal_batch){.precinct_id = D->precincts[p].id,
	                          .seq = seq,
	                          .kind = BAL_KIND_BALLOTS,
	                          .columns = &g->col,
	                          .ncolumns = 1,
	                          .election_id = D->election_id};
	/* One byte a ballot: shrink by the envelope until it fits. */
	g->col.n = size;
	for (int k = 0; k < 8; k++) {
		size_t bl = bal_codec_batch_size(&g->b), total = bl + 2 + 10 + 66;
		if (total <= size)
			break;
		g->col.n -= total - size;
	}
}

static uint8_t *big_random_sig(struct big *g, size_t *len)
{
	uint8_t sig[64];
	randombytes_buf(sig, sizeof(sig));
	return pack(&g->b, sig, 64, len);
}

/* ---- junk ---------------------------------------------------------------------- */

static size_t put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	for (; v >= 0x80; v >>= 7)
		p[n++] = (uint8_t)(v | 0x80);
	p[n++] = (uint8_t)v;
	return n;
}

/* Random bytes from a stream cipher: a fresh 1 MiB from the system's
 * generator would cost the client more time than the daemon spends. */
static uint8_t *junk_bytes(unsigned i, size_t len)
{
	static uint8_t key[randombytes_SEEDBYTES];
	static bool keyed;
	if (!keyed) {
		randombytes_buf(key, sizeof(key));
		keyed = true;
	}
	uint8_t seed[randombytes_SEEDBYTES];
	memcpy(seed, key, sizeof(seed));
	memcpy(seed, &i, sizeof(i));
	uint8_t *out = malloc(len);
	if (out)
		randombytes_buf_deterministic(out, len, seed);
	return out;
}

struct junk_ctx {
	const uint8_t *rec; /* a journaled SignedBatch */
	size_t rec_len;
};

/* Junk request i: a padded resend of the journaled batch, a batch of a new
 * seq with a random signature, or random bytes. Each different. */
static uint8_t *junk_body(unsigned i, size_t *len, void *arg)
{
	const struct junk_ctx *j = arg;
	switch (i % 3) {
	case 0: {
		uint8_t *out = malloc(j->rec_len + 24);
		memcpy(out, j->rec, j->rec_len);
		size_t n = j->rec_len;
		n += put_varint(out + n, (uint64_t)(3 + i % 29) << 3);
		n += put_varint(out + n, i);
		*len = n;
		return out;
	}
	case 1: {
		uint32_t choices[3] = {0, 1, 0};
		struct bal_column col = {.contest_id = D->contests[0].id, .n = 3, .choices = choices};
		struct bal_batch b = {.precinct_id = D->precincts[i % D->nprecincts].id,
		                      .seq = A.seq + 1000 + i,
		                      .kind = BAL_KIND_BALLOTS,
		                      .columns = &col,
		                      .ncolumns = 1,
		                      .election_id = D->election_id};
		uint8_t sig[64];
		randombytes_buf(sig, sizeof(sig));
		return pack(&b, sig, 64, len);
	}
	default: *len = 64 + i % 1000; return junk_bytes(i, *len);
	}
}

static json_t *phase_junk(void)
{
	say("junk: %u anonymous junk requests", A.junk);
	struct health h0;
	if (health(&h0))
		return NULL;
	if (h0.position == 0) {
		/* Something to resend: one honest batch, journaled first. */
		struct tally t = {0};
		struct bal_gen_opts o = {
		        .seed = 11, .key_seed = A.key_seed, .batch_size = 10, .kind = BAL_KIND_BALLOTS};
		struct bal_gen *g = NULL;
		char why[256];
		const uint8_t *body;
		size_t len;
		if (bal_gen_new(D, &o, &g, why, sizeof(why)) ||
		    bal_gen_batch(g, D->nprecincts - 1, A.seq + 500, NULL, &body, &len, why, sizeof(why))) {
			fprintf(stderr, PROG ": %s\n", why);
			bal_gen_free(g);
			return NULL;
		}
		post_once(body, len, &t);
		bal_gen_free(g);
		if (!t.accepted && !t.duplicate) {
			fprintf(stderr, PROG ": junk: could not journal a batch to resend\n");
			return NULL;
		}
	}
	struct bal_http_resp jr;
	char why[256];
	if (bal_http_request(A.server, "GET", "/v1/journal?from=1&limit=1", NULL, 0, NULL, 10000, 8 << 20, &jr, why,
	                     sizeof(why)) ||
	    jr.status != 200 || jr.len < 12) {
		fprintf(stderr, PROG ": junk: GET /v1/journal: %s\n", why);
		bal_http_resp_deinit(&jr);
		return NULL;
	}
	struct junk_ctx j = {.rec = (const uint8_t *)jr.body + 12, .rec_len = jr.len - 12};
	struct health before, after;
	if (settled(&before)) {
		fprintf(stderr, PROG ": junk: map_used did not settle\n");
		bal_http_resp_deinit(&jr);
		return NULL;
	}
	struct tally t = {0};
	uint64_t t0 = now_ms();
	pipeline(A.junk, 32, junk_body, &j, &t);
	double secs = (double)(now_ms() - t0) / 1000.0;
	bal_http_resp_deinit(&jr);
	if (settled(&after)) {
		fprintf(stderr, PROG ": junk: map_used did not settle afterwards\n");
		return NULL;
	}
	/* Per request the daemon answered (and so read whole and refused). */
	double per = t.answered ? ((double)after.map_used - (double)before.map_used) / (double)t.answered : 0;
	say("junk: map_used %llu -> %llu bytes: %.2f bytes per request; position %llu -> %llu",
	    (unsigned long long)before.map_used, (unsigned long long)after.map_used, per,
	    (unsigned long long)before.position, (unsigned long long)after.position);
	return json_pack("{s:I, s:I, s:o, s:f, s:I, s:I, s:f, s:I, s:I}", "requests", (json_int_t)A.junk, "answered",
	                 (json_int_t)t.answered, "statuses", statuses_json(&t), "seconds", secs, "map_used_before",
	                 (json_int_t)before.map_used, "map_used_after", (json_int_t)after.map_used, "bytes_per_request",
	                 per, "position_before", (json_int_t)before.position, "position_after",
	                 (json_int_t)after.position);
}

/* ---- a stolen key --------------------------------------------------------------- */

struct honest_ctx {
	struct bal_gen *g;
	uint64_t seq;
};

/* Honest batch i: precinct index i + 1 (all but the victim, index 0). */
static uint8_t *honest_body(unsigned i, size_t *len, void *arg)
{
	struct honest_ctx *hc = arg;
	const uint8_t *body;
	char why[256];
	if (bal_gen_batch(hc->g, i + 1, hc->seq, NULL, &body, len, why, sizeof(why))) {
		fprintf(stderr, PROG ": %s\n", why);
		return NULL;
	}
	uint8_t *copy = malloc(*len);
	memcpy(copy, body, *len);
	return copy;
}

/* Attack batch i: a TALLY of the first contest with counts near 2^63 or 2^64. */
static uint8_t *attack_body(unsigned i, size_t *len, void *arg)
{
	(void)arg;
	static const uint64_t huge[8][2] = {
	        {1ull << 63, 0},
	        {(1ull << 63) - 1, 0},
	        {UINT64_MAX, 0},
	        {UINT64_MAX - 1, 1},
	        {1ull << 62, 1ull << 62},
	        {(1ull << 63) - 1, (1ull << 63) - 1},
	        {UINT64_MAX / 2, UINT64_MAX / 2},
	        {0, (1ull << 63) + 1000000},
	};
	const struct bal_contest *ct = &D->contests[0];
	uint64_t *counts = calloc(ct->nchoices, sizeof(uint64_t));
	counts[0] = huge[i % 8][0];
	if (ct->nchoices > 1)
		counts[1] = huge[i % 8][1];
	struct bal_ctally t = {.contest_id = ct->id, .n = ct->nchoices, .counts = counts};
	struct bal_batch b = {.precinct_id = D->precincts[0].id,
	                      .seq = A.seq + 1 + i,
	                      .kind = BAL_KIND_TALLY,
	                      .tallies = &t,
	                      .ntallies = 1,
	                      .election_id = D->election_id};
	uint8_t *out = pack_signed(&b, len);
	free(counts);
	return out;
}

static json_t *phase_stolen(void)
{
	if (D->nprecincts < 2) {
		fprintf(stderr, PROG ": stolen: the definition needs two precincts\n");
		return NULL;
	}
	say("stolen: precinct %u's key sends 8 TALLY batches near 2^63 and 2^64", D->precincts[0].id);
	struct tally attack = {0}, honest = {0}, victim = {0};
	pipeline(8, 8, attack_body, NULL, &attack);
	struct bal_gen_opts o = {.seed = 11, .key_seed = A.key_seed, .batch_size = 10, .kind = BAL_KIND_BALLOTS};
	struct honest_ctx hc = {.seq = A.seq};
	char why[256];
	if (bal_gen_new(D, &o, &hc.g, why, sizeof(why))) {
		fprintf(stderr, PROG ": %s\n", why);
		return NULL;
	}
	unsigned n = D->nprecincts - 1;
	say("stolen: an honest batch from each of the other %u precincts", n);
	uint64_t t0 = now_ms();
	pipeline(n, 32, honest_body, &hc, &honest);
	double secs = (double)(now_ms() - t0) / 1000.0;
	/* The victim's own station, after the attack. */
	const uint8_t *body;
	size_t len;
	if (!bal_gen_batch(hc.g, 0, A.seq, NULL, &body, &len, why, sizeof(why)))
		post_once(body, len, &victim);
	bal_gen_free(hc.g);
	double share = (double)honest.accepted / (double)n;
	say("stolen: attack answered %lu x 422 of 8; honest batches ACCEPTED %lu of %u (%.2f%%)", attack.by_status[422],
	    honest.accepted, n, 100.0 * share);
	return json_pack("{s:I, s:o, s:I, s:I, s:I, s:o, s:f, s:f, s:b}", "victim_precinct",
	                 (json_int_t)D->precincts[0].id, "attack_statuses", statuses_json(&attack), "honest_sent",
	                 (json_int_t)n, "honest_accepted", (json_int_t)honest.accepted, "honest_duplicate",
	                 (json_int_t)honest.duplicate, "honest_statuses", statuses_json(&honest), "share_accepted",
	                 share, "honest_seconds", secs, "victim_station_accepted", victim.accepted == 1);
}

/* ---- holding memory -------------------------------------------------------------- */

/* Reconnections at most, per attacking connection and second. */
#define RECONNECTS_PER_S 100

/* One attacking connection of the memory hold: sends `req` over and over,
 * never reads. */
struct holder {
	struct conn c;
	const uint8_t *req;
	size_t req_len, off;
	bool csv;
	unsigned long requests, closed;
	uint64_t bytes;
};

static void holder_open(struct holder *h)
{
	/* A tiny receive window: the daemon's answers stay on its side. */
	if (conn_open(&h->c, h->csv ? 4096 : 0, true))
		h->c.fd = -1;
	h->off = 0;
}

/* Sends what the socket takes now (at most 8 MiB a turn). false when the
 * daemon closed the connection. */
static bool holder_push(struct holder *h)
{
	size_t turn = 0;
	while (turn < (8u << 20)) {
		ssize_t k = send(h->c.fd, h->req + h->off, h->req_len - h->off, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return true;
		if (k <= 0)
			return false;
		h->off += (size_t)k;
		h->bytes += (uint64_t)k;
		turn += (size_t)k;
		if (h->off == h->req_len) {
			h->off = 0;
			h->requests++;
		}
	}
	return true;
}

static json_t *phase_memory(void)
{
	unsigned n = A.connections;
	say("memory: idle RSS, then %u connections pipelining unread GET /v1/results.csv and %u-byte POSTs for %.0f s",
	    n, A.body, A.seconds);
	long idle[5], idle_kib = 0;
	for (int i = 0; i < 5; i++) {
		idle[i] = rss_kib();
		if (idle[i] < 0) {
			fprintf(stderr, PROG ": memory: no process %ld\n", A.pid);
			return NULL;
		}
		idle_kib = idle[i] > idle_kib ? idle[i] : idle_kib;
		sleep_ms(100);
	}
	static const char csv_req[] = "GET /v1/results.csv HTTP/1.1\r\nHost: t\r\n\r\n";
	struct big g;
	big_init(&g, 0, A.seq + 900000, A.body);
	size_t blen = 0, plen = 0;
	uint8_t *big = big_random_sig(&g, &blen);
	uint8_t *post = post_request(big, blen, &plen);
	free(big);
	struct holder *hs = calloc(n, sizeof(*hs));
	struct pollfd *pf = calloc(n, sizeof(*pf));
	for (unsigned i = 0; i < n; i++) {
		hs[i].csv = i % 2 == 0;
		hs[i].req = hs[i].csv ? (const uint8_t *)csv_req : post;
		hs[i].req_len = hs[i].csv ? sizeof(csv_req) - 1 : plen;
		holder_open(&hs[i]);
	}
	unsigned reconnects = 0, samples = 0, max_reconnects = (unsigned)(RECONNECTS_PER_S * n * A.seconds) + n;
	long peak_kib = idle_kib, last_kib = idle_kib;
	uint64_t t0 = now_ms(), end = t0 + (uint64_t)(A.seconds * 1000), next_sample = t0, peak_at = 0;
	bool gone = false;
	while (!gone && now_ms() < end) {
		uint64_t now = now_ms();
		if (now >= next_sample) {
			long kib = rss_kib();
			if (kib < 0) {
				gone = true;
				break;
			}
			samples++;
			last_kib = kib;
			if (kib > peak_kib) {
				peak_kib = kib;
				peak_at = now - t0;
			}
			next_sample += 100;
			continue;
		}
		for (unsigned i = 0; i < n; i++) {
			if (hs[i].c.fd < 0 && reconnects < max_reconnects) {
				reconnects++;
				holder_open(&hs[i]);
			}
			pf[i] = (struct pollfd){.fd = hs[i].c.fd, .events = POLLOUT};
		}
		int wait = (int)(next_sample - now);
		if (poll(pf, n, wait) < 0 && errno != EINTR)
			break;
		for (unsigned i = 0; i < n; i++) {
			if (pf[i].fd < 0 || !pf[i].revents)
				continue;
			if ((pf[i].revents & (POLLERR | POLLHUP)) || !holder_push(&hs[i])) {
				hs[i].closed++;
				conn_close(&hs[i].c);
			}
		}
	}
	double held = (double)(now_ms() - t0) / 1000.0;
	unsigned long csv_reqs = 0, post_reqs = 0, closed = 0;
	uint64_t bytes = 0;
	for (unsigned i = 0; i < n; i++) {
		*(hs[i].csv ? &csv_reqs : &post_reqs) += hs[i].requests;
		closed += hs[i].closed;
		bytes += hs[i].bytes;
		conn_close(&hs[i].c);
	}
	sleep_ms(1000);
	long after_kib = rss_kib();
	struct health h;
	bool answers = !gone && health(&h) == 0;
	say("memory: RSS idle %ld KiB, peak %ld KiB (+%ld KiB, at %.1f s), 1 s after %ld KiB; %lu GETs and %lu POSTs "
	    "written, %lu connections closed by the daemon%s",
	    idle_kib, peak_kib, peak_kib - idle_kib, (double)peak_at / 1000.0, after_kib, csv_reqs, post_reqs, closed,
	    answers ? "" : "; THE DAEMON DOES NOT ANSWER");
	free(hs);
	free(pf);
	free(post);
	free(g.choices);
	return json_pack("{s:I, s:I, s:f, s:I, s:I, s:I, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b}", "connections",
	                 (json_int_t)n, "body_bytes", (json_int_t)blen, "seconds", held, "idle_rss_kib",
	                 (json_int_t)idle_kib, "peak_rss_kib", (json_int_t)peak_kib, "peak_over_idle_kib",
	                 (json_int_t)(peak_kib - idle_kib), "peak_at_s", (double)peak_at / 1000.0, "last_rss_kib",
	                 (json_int_t)last_kib, "after_rss_kib", (json_int_t)after_kib, "samples", (json_int_t)samples,
	                 "csv_requests_written", (json_int_t)csv_reqs, "post_requests_written", (json_int_t)post_reqs,
	                 "bytes_written", (json_int_t)bytes, "closed_by_daemon", (json_int_t)closed, "answers_after",
	                 answers);
}

/* ---- CPU per refused request --------------------------------------------------- */

static struct big cpu_big;

static uint8_t *cpu_random_sig(unsigned i, size_t *len, void *arg)
{
	(void)i;
	(void)arg;
	return big_random_sig(&cpu_big, len);
}

static uint8_t *cpu_junk(unsigned i, size_t *len, void *arg)
{
	(void)arg;
	*len = A.body;
	return junk_bytes(i, *len);
}

/* Daemon CPU over A.cpu requests made by `make`, one at a time. */
static json_t *cpu_run(const char *what, make_body_fn make)
{
	struct tally t = {0};
	size_t len;
	uint8_t *sample = make(0, &len, NULL);
	free(sample);
	double c0 = cpu_ms();
	uint64_t t0 = now_ms();
	pipeline(A.cpu, 1, make, NULL, &t);
	double secs = (double)(now_ms() - t0) / 1000.0, c1 = cpu_ms();
	if (c0 < 0 || c1 < 0) {
		fprintf(stderr, PROG ": cpu: no process %ld\n", A.pid);
		return NULL;
	}
	double per = t.answered ? (c1 - c0) / (double)t.answered : 0;
	say("cpu: %lu requests of %zu bytes (%s) answered: %.0f ms of daemon CPU, %.3f ms each, %.0f requests/s",
	    t.answered, len, what, c1 - c0, per, (double)t.answered / secs);
	return json_pack("{s:I, s:I, s:I, s:o, s:f, s:f, s:f}", "requests", (json_int_t)A.cpu, "answered",
	                 (json_int_t)t.answered, "body_bytes", (json_int_t)len, "statuses", statuses_json(&t), "cpu_ms",
	                 c1 - c0, "cpu_ms_per_request", per, "seconds", secs);
}

static json_t *phase_cpu(void)
{
	big_init(&cpu_big, 0, A.seq + 900001, A.body);
	json_t *sig = cpu_run("random signature", cpu_random_sig);
	json_t *junk = cpu_run("junk body", cpu_junk);
	free(cpu_big.choices);
	if (!sig || !junk) {
		json_decref(sig);
		json_decref(junk);
		return NULL;
	}
	return json_pack("{s:o, s:o}", "random_signature", sig, "junk_body", junk);
}

/* ---- the results.csv flood ------------------------------------------------------- */

static volatile sig_atomic_t stop_flood;

static void on_signal(int sig)
{
	(void)sig;
	stop_flood = 1;
}

struct flooder {
	pthread_t th;
	uint64_t end_ms;
	unsigned long responses, errors;
	uint64_t bytes;
};

static void *flood_run(void *arg)
{
	struct flooder *f = arg;
	static const char req[] = "GET /v1/results.csv HTTP/1.1\r\nHost: t\r\n\r\n";
	struct conn c = {.fd = -1};
	while (!stop_flood && now_ms() < f->end_ms && f->errors < 1000) {
		if (c.fd < 0 && conn_open(&c, 0, false)) {
			f->errors++;
			sleep_ms(100);
			continue;
		}
		struct resp r;
		if (send_all(c.fd, req, sizeof(req) - 1) || read_resp(&c, &r, false) || r.status != 200) {
			f->errors++;
			conn_close(&c);
			continue;
		}
		f->responses++;
		f->bytes += r.len;
	}
	conn_close(&c);
	return NULL;
}

static int flood_csv(void)
{
	unsigned n = A.connections_set ? A.connections : 4;
	double limit = A.seconds_set ? A.seconds : 120;
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	say("flood: %u connections reading GET /v1/results.csv for at most %.0f s", n, limit);
	struct flooder *fs = calloc(n, sizeof(*fs));
	uint64_t t0 = now_ms();
	for (unsigned i = 0; i < n; i++) {
		fs[i].end_ms = t0 + (uint64_t)(limit * 1000);
		if (pthread_create(&fs[i].th, NULL, flood_run, &fs[i]) != 0) {
			fprintf(stderr, PROG ": flood: pthread_create failed\n");
			exit(EXIT_FAILED);
		}
	}
	unsigned long responses = 0, errors = 0;
	uint64_t bytes = 0;
	for (unsigned i = 0; i < n; i++) {
		pthread_join(fs[i].th, NULL);
		responses += fs[i].responses;
		errors += fs[i].errors;
		bytes += fs[i].bytes;
	}
	double secs = (double)(now_ms() - t0) / 1000.0;
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
	               ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
	free(fs);
	say("flood: %lu results.csv answers (%.1f MB) in %.1f s, %.1f a second, %lu errors; %.1f s of its own CPU",
	    responses, (double)bytes / 1e6, secs, (double)responses / secs, errors, cpu_s);
	json_t *out = json_pack("{s:{s:I, s:f, s:I, s:I, s:f, s:I, s:f}}", "flood_csv", "connections", (json_int_t)n,
	                        "seconds", secs, "responses", (json_int_t)responses, "bytes", (json_int_t)bytes,
	                        "responses_per_s", (double)responses / secs, "errors", (json_int_t)errors,
	                        "client_cpu_s", cpu_s);
	json_dumpf(out, stdout, JSON_INDENT(2));
	fputc('\n', stdout);
	json_decref(out);
	return responses ? EXIT_OK : EXIT_FAILED;
}

/* ---- command line ------------------------------------------------------------------ */

enum {
	O_SERVER = 256,
	O_DEFN,
	O_PID,
	O_KEY_SEED,
	O_SEQ,
	O_PHASES,
	O_JUNK,
	O_CPU,
	O_BODY,
	O_SECONDS,
	O_CONNS,
	O_FLOOD,
	O_QUIET,
	O_HELP
};

static bool parse_phases(const char *s, unsigned *out)
{
	static const char *const names[] = {"junk", "stolen", "memory", "cpu"};
	*out = 0;
	char *copy = strdup(s), *save = NULL;
	bool ok = copy != NULL;
	for (char *tok = copy ? strtok_r(copy, ",", &save) : NULL; ok && tok; tok = strtok_r(NULL, ",", &save)) {
		unsigned k = 0;
		while (k < 4 && strcmp(tok, names[k]) != 0)
			k++;
		if (k == 4) {
			fprintf(stderr, PROG ": --phases: unknown phase '%s' (junk, stolen, memory, cpu)\n", tok);
			ok = false;
		}
		*out |= 1u << k;
	}
	free(copy);
	return ok && *out;
}

static int parse(int argc, char **argv)
{
	static const struct option longopts[] = {
	        {"server", required_argument, NULL, O_SERVER},
	        {"definition", required_argument, NULL, O_DEFN},
	        {"pid", required_argument, NULL, O_PID},
	        {"key-seed", required_argument, NULL, O_KEY_SEED},
	        {"seq", required_argument, NULL, O_SEQ},
	        {"phases", required_argument, NULL, O_PHASES},
	        {"junk", required_argument, NULL, O_JUNK},
	        {"cpu", required_argument, NULL, O_CPU},
	        {"body", required_argument, NULL, O_BODY},
	        {"seconds", required_argument, NULL, O_SECONDS},
	        {"connections", required_argument, NULL, O_CONNS},
	        {"flood-csv", no_argument, NULL, O_FLOOD},
	        {"quiet", no_argument, NULL, O_QUIET},
	        {"help", no_argument, NULL, O_HELP},
	        {NULL, 0, NULL, 0},
	};
	A = (struct args){.key_seed = 2023,
	                  .seq = 4000000000u,
	                  .junk = 3000,
	                  .cpu = 500,
	                  .body = 1u << 20,
	                  .seconds = 10,
	                  .connections = 20,
	                  .phases = PH_ALL,
	                  .pid = -1};
	uint64_t pid = 0;
	bool ok = true;
	int opt;
	while (ok && (opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case O_SERVER: A.server = optarg; break;
		case O_DEFN: A.definition = optarg; break;
		case O_PID:
			ok = bal_cli_u64(PROG, "--pid", optarg, 1, 1u << 30, &pid);
			A.pid = (long)pid;
			break;
		case O_KEY_SEED: ok = bal_cli_u64(PROG, "--key-seed", optarg, 0, UINT64_MAX, &A.key_seed); break;
		case O_SEQ: ok = bal_cli_u64(PROG, "--seq", optarg, 1, UINT64_MAX / 2, &A.seq); break;
		case O_PHASES: ok = parse_phases(optarg, &A.phases); break;
		case O_JUNK: ok = bal_cli_u32(PROG, "--junk", optarg, 1, 10000000, &A.junk); break;
		case O_CPU: ok = bal_cli_u32(PROG, "--cpu", optarg, 1, 1000000, &A.cpu); break;
		case O_BODY: ok = bal_cli_u32(PROG, "--body", optarg, 1024, 1u << 30, &A.body); break;
		case O_SECONDS:
			ok = bal_cli_double(PROG, "--seconds", optarg, 0.1, 3600, &A.seconds);
			A.seconds_set = true;
			break;
		case O_CONNS:
			ok = bal_cli_u32(PROG, "--connections", optarg, 1, 10000, &A.connections);
			A.connections_set = true;
			break;
		case O_FLOOD: A.flood_csv = true; break;
		case O_QUIET: A.quiet = true; break;
		case O_HELP: fputs(help, stdout); exit(EXIT_OK);
		default: ok = false;
		}
	}
	if (!ok || optind < argc) {
		fprintf(stderr, "%s", ok ? PROG ": unexpected argument\n" : "");
		fprintf(stderr, PROG ": see --help\n");
		return -1;
	}
	if (!A.server || (!A.flood_csv && (!A.definition || A.pid < 0))) {
		fprintf(stderr, PROG ": --server is required%s; see --help\n",
		        A.flood_csv ? "" : ", and --definition and --pid");
		return -1;
	}
	char host[BAL_HTTP_HOST_MAX], why[256];
	uint16_t port;
	if (bal_http_hostport(A.server, host, &port, why, sizeof(why))) {
		fprintf(stderr, PROG ": --server: %s\n", why);
		return -1;
	}
	if (strcmp(host, "localhost") == 0)
		strcpy(host, "127.0.0.1");
	target = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(port)};
	if (inet_pton(AF_INET, host, &target.sin_addr) != 1 || (ntohl(target.sin_addr.s_addr) >> 24) != 127) {
		fprintf(stderr, PROG ": --server %s: only a daemon on 127.x is attacked\n", A.server);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (parse(argc, argv))
		return EXIT_USAGE;
	if (sodium_init() < 0) {
		fprintf(stderr, PROG ": libsodium failed to initialise\n");
		return EXIT_FAILED;
	}
	signal(SIGPIPE, SIG_IGN);
	if (A.flood_csv)
		return flood_csv();
	struct bal_defn *d;
	char why[512];
	if (bal_defn_load(A.definition, &d, why, sizeof(why))) {
		fprintf(stderr, PROG ": %s\n", why);
		return EXIT_FAILED;
	}
	D = d;
	struct health h;
	if (health(&h)) {
		fprintf(stderr, PROG ": no answer to GET /healthz from %s\n", A.server);
		bal_defn_free(d);
		return EXIT_FAILED;
	}
	if (rss_kib() < 0) {
		fprintf(stderr, PROG ": --pid %ld: no such process\n", A.pid);
		bal_defn_free(d);
		return EXIT_FAILED;
	}
	json_t *out = json_object();
	json_object_set_new(out, "server", json_string(A.server));
	json_object_set_new(out, "definition", json_string(A.definition));
	bool failed = false;
	static const struct {
		unsigned bit;
		const char *name;
		json_t *(*run)(void);
	} phases[] = {{PH_JUNK, "junk", phase_junk},
	              {PH_STOLEN, "stolen", phase_stolen},
	              {PH_MEMORY, "memory", phase_memory},
	              {PH_CPU, "cpu", phase_cpu}};
	for (size_t i = 0; i < sizeof(phases) / sizeof(phases[0]); i++) {
		if (!(A.phases & phases[i].bit))
			continue;
		json_t *r = phases[i].run();
		failed |= r == NULL;
		json_object_set_new(out, phases[i].name, r ? r : json_null());
	}
	json_dumpf(out, stdout, JSON_INDENT(2));
	fputc('\n', stdout);
	json_decref(out);
	bal_defn_free(d);
	return failed ? EXIT_FAILED : EXIT_OK;
}
