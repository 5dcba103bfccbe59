/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Command-line options and their defaults. Every limit is configurable here.
 */
#include "daemon/config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "daemon/log.h"

/* The default --max-body: what the largest plausible batch needs, between these. */
#define BODY_FLOOR ((size_t)16 << 10)
#define BODY_CAP   ((size_t)1 << 20)

void bal_config_defaults(struct bal_config *c)
{
	memset(c, 0, sizeof(*c));
	c->definition = NULL;
	c->data_dir = "./ballotd-data";
	snprintf(c->host, sizeof(c->host), "127.0.0.1");
	c->port = 8080;
	c->map_size = (size_t)8 << 30;
	c->max_body = BODY_CAP; /* until bal_config_derive() knows the definition */
	c->max_header = 16 * 1024;
	c->max_output = (size_t)16 << 20;
	c->max_body_given = false;
	c->max_failures = 32;
	c->max_conn_memory = (size_t)4 << 20;
	c->max_client_memory = (size_t)256 << 20;
	c->send_timeout_ms = 30000;
	c->queue_bytes = (size_t)256 << 20;
	struct rlimit rl;
	unsigned fds = 1024;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		fds = rl.rlim_cur > 1000000 ? 1000000 : (unsigned)rl.rlim_cur;
	c->max_connections = fds > 128 ? fds - 64 : 64;
	c->max_pipeline = 32;
	c->idle_timeout_ms = 60000;
	c->request_timeout_ms = 30000;
	c->queue_depth = 65536;
	c->group_max = 8192;
	c->snapshot_every = 50000;
	c->snapshot_ms = 2000;
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	c->threads = cores < 1 ? 1 : cores > 64 ? 64 : (unsigned)cores;
	c->auth = true;
	c->null_mode = false;
	c->drain_timeout_ms = 10000;
	c->conflicts_per_seq = 4;
	c->conflicts_per_precinct = 64;
	c->max_heavy_queries = 4;
	c->stall_ms = 10000;
	c->demo = false;
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || v < 0)
		return -1;
	uint64_t mul = 1;
	if (*end) {
		switch (*end) {
		case 'k':
		case 'K': mul = 1ull << 10; break;
		case 'm':
		case 'M': mul = 1ull << 20; break;
		case 'g':
		case 'G': mul = 1ull << 30; break;
		case 't':
		case 'T': mul = 1ull << 40; break;
		default: return -1;
		}
		end++;
		if (*end == 'i' || *end == 'I')
			end++;
		if (*end == 'b' || *end == 'B')
			end++;
		if (*end)
			return -1;
	}
	*out = (uint64_t)(v * (double)mul);
	return 0;
}

/* "250ms", "30s", "2m", or a bare number of milliseconds. */
static int parse_ms(const char *s, unsigned *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || v < 0)
		return -1;
	double mul = 1;
	if (strcmp(end, "ms") == 0 || *end == '\0')
		mul = 1;
	else if (strcmp(end, "s") == 0)
		mul = 1000;
	else if (strcmp(end, "m") == 0)
		mul = 60000;
	else
		return -1;
	double ms = v * mul;
	if (ms > 4e9)
		return -1;
	*out = (unsigned)ms;
	return 0;
}

static int parse_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

int bal_config_listen(struct bal_config *c, const char *arg)
{
	const char *colon = strrchr(arg, ':');
	if (!colon)
		return -1;
	size_t hl = (size_t)(colon - arg);
	const char *h = arg;
	if (hl >= 2 && arg[0] == '[' && arg[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl == 0 || hl >= sizeof(c->host))
		return -1;
	uint64_t port;
	if (parse_uint(colon + 1, 0, 65535, &port))
		return -1;
	memcpy(c->host, h, hl);
	c->host[hl] = '\0';
	if (strcmp(c->host, "localhost") == 0)
		snprintf(c->host, sizeof(c->host), "127.0.0.1");
	c->port = (unsigned)port;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: ballotd [options]\n"
	           "Counts ballot batches from polling stations exactly once, durably, and serves the totals.\n\n"
	           "  --definition FILE        election definition (JSON); required unless --demo\n"
	           "  --demo                   run the embedded demo election (kz2023: 10,000 precincts, 29\n"
	           "                           districts; its keys derive from a public seed: never for real)\n"
	           "  --data DIR               data directory (LMDB), default ./ballotd-data\n"
	           "  --listen HOST:PORT       default 127.0.0.1:8080; port 0 picks a free port\n"
	           "  --map-size SIZE          LMDB map size, default 8G\n"
	           "  --max-body SIZE          request body cap (413 beyond), default: the largest batch the\n"
	           "                           definition allows (max voters x contests x 5 bytes + tallies +\n"
	           "                           overhead, 16K..1M; 1M with an unbounded precinct)\n"
	           "  --max-header SIZE        request line + headers cap (431 beyond), default 16K\n"
	           "  --max-output SIZE        unread response bytes per connection before closing it, default 16M\n"
	           "  --max-failures-per-connection N  refused batches (400/401/413/422) before the\n"
	           "                           connection is closed, default 32\n"
	           "  --max-connection-memory SIZE  request bodies + unread responses a connection holds\n"
	           "                           before it is read no further, default 4M\n"
	           "  --max-client-memory SIZE  the same over all connections before new batches get 503,\n"
	           "                           default 256M\n"
	           "  --send-timeout DUR       close a connection whose client reads nothing of what it is\n"
	           "                           owed for this long, default 30s\n"
	           "  --max-connections N      default: descriptor limit - 64\n"
	           "  --max-pipeline N         requests in flight per connection, default 32\n"
	           "  --idle-timeout DUR       close idle connections, default 60s\n"
	           "  --request-timeout DUR    close connections whose request takes longer, default 30s\n"
	           "  --queue-depth N          batches waiting for commit before 503, default 65536\n"
	           "  --queue-bytes SIZE       batch bytes waiting for commit before 503, default 256M\n"
	           "  --group-max N            batches per write transaction at most, default 8192\n"
	           "  --snapshot-every N       batches per round of counter snapshot slices, default 50000\n"
	           "  --snapshot-interval DUR  time per round of counter snapshot slices, default 2s\n"
	           "  --threads N              I/O threads (one libuv loop each, SO_REUSEPORT), default: cores\n"
	           "  --drain-timeout DUR      SIGTERM: longest wait for in-flight batches, default 10s\n"
	           "  --conflicts-per-seq N    conflicting versions stored per (precinct, seq), default 4\n"
	           "  --conflicts-per-precinct N  conflicting versions stored per precinct, default 64;\n"
	           "                           beyond either they are counted, not stored\n"
	           "  --stall-timeout DUR      /healthz answers 503 while the committer has spent this long on\n"
	           "                           one set of batches (a stuck disk), default 10s\n"
	           "  --log-key FILE           the log's Ed25519 secret key (ballotctl keygen), mode 0600, outside\n"
	           "                           the data directory: signs tree heads and receipts\n"
	           "  --precinct-quota SIZE    journal bytes each precinct's batches may take, then 507;\n"
	           "                           default derived per precinct from its voters (see docs)\n"
	           "  --max-heavy-queries N    requests waiting for a heavy answer being built (results.csv,\n"
	           "                           journal pages), per process, before 503; default 4\n"
	           "  --no-auth                do not verify precinct signatures\n"
	           "  --null                   ack every POST at once without decoding or storing (HTTP ceiling)\n"
	           "  --log-level LEVEL        debug, info, warn, error; default info\n"
	           "  --version\n"
	           "  --help\n");
}

int bal_config_parse(struct bal_config *c, int argc, char **argv)
{
	enum {
		O_DEF = 1000,
		O_DATA,
		O_LISTEN,
		O_MAP,
		O_BODY,
		O_HEADER,
		O_OUTPUT,
		O_CONNS,
		O_PIPE,
		O_IDLE,
		O_REQ,
		O_QUEUE,
		O_GROUP,
		O_SNAPN,
		O_SNAPT,
		O_THREADS,
		O_DRAIN,
		O_NOAUTH,
		O_NULL,
		O_LOG,
		O_DEMO,
		O_CONFKEY,
		O_CONFPREC,
		O_FAILURES,
		O_CONNMEM,
		O_CLIENTMEM,
		O_SENDTO,
		O_QBYTES,
		O_HEAVY,
		O_QUOTA,
		O_LOGKEY,
		O_STALL,
		O_VERSION,
		O_HELP
	};
	static const struct option opts[] = {
	        {"definition", required_argument, 0, O_DEF},
	        {"data", required_argument, 0, O_DATA},
	        {"listen", required_argument, 0, O_LISTEN},
	        {"map-size", required_argument, 0, O_MAP},
	        {"max-body", required_argument, 0, O_BODY},
	        {"max-header", required_argument, 0, O_HEADER},
	        {"max-output", required_argument, 0, O_OUTPUT},
	        {"max-connections", required_argument, 0, O_CONNS},
	        {"max-pipeline", required_argument, 0, O_PIPE},
	        {"idle-timeout", required_argument, 0, O_IDLE},
	        {"request-timeout", required_argument, 0, O_REQ},
	        {"queue-depth", required_argument, 0, O_QUEUE},
	        {"group-max", required_argument, 0, O_GROUP},
	        {"snapshot-every", required_argument, 0, O_SNAPN},
	        {"snapshot-interval", required_argument, 0, O_SNAPT},
	        {"threads", required_argument, 0, O_THREADS},
	        {"drain-timeout", required_argument, 0, O_DRAIN},
	        {"no-auth", no_argument, 0, O_NOAUTH},
	        {"null", no_argument, 0, O_NULL},
	        {"log-level", required_argument, 0, O_LOG},
	        {"demo", no_argument, 0, O_DEMO},
	        {"conflicts-per-seq", required_argument, 0, O_CONFKEY},
	        {"conflicts-per-precinct", required_argument, 0, O_CONFPREC},
	        {"max-failures-per-connection", required_argument, 0, O_FAILURES},
	        {"max-connection-memory", required_argument, 0, O_CONNMEM},
	        {"max-client-memory", required_argument, 0, O_CLIENTMEM},
	        {"send-timeout", required_argument, 0, O_SENDTO},
	        {"queue-bytes", required_argument, 0, O_QBYTES},
	        {"max-heavy-queries", required_argument, 0, O_HEAVY},
	        {"precinct-quota", required_argument, 0, O_QUOTA},
	        {"log-key", required_argument, 0, O_LOGKEY},
	        {"stall-timeout", required_argument, 0, O_STALL},
	        {"help", no_argument, 0, O_HELP},
	        {"version", no_argument, 0, O_VERSION},
	        {0, 0, 0, 0},
	};
	int o, li = -1;
	opterr = 0;
	while ((o = getopt_long(argc, argv, "", opts, &li)) != -1) {
		uint64_t v = 0;
		unsigned ms = 0;
		int bad = 0;
		switch (o) {
		case O_DEF: c->definition = optarg; break;
		case O_DATA: c->data_dir = optarg; break;
		case O_LISTEN: bad = bal_config_listen(c, optarg); break;
		case O_MAP:
			bad = parse_size(optarg, &v) || v < (1u << 20);
			if (!bad)
				c->map_size = v;
			break;
		case O_BODY:
			bad = parse_size(optarg, &v) || v < 64 || v > (1ull << 30);
			if (!bad) {
				c->max_body = v;
				c->max_body_given = true;
			}
			break;
		case O_HEADER:
			bad = parse_size(optarg, &v) || v < 256 || v > (1u << 20);
			if (!bad)
				c->max_header = v;
			break;
		case O_OUTPUT:
			bad = parse_size(optarg, &v) || v < 4096;
			if (!bad)
				c->max_output = v;
			break;
		case O_CONNS:
			bad = parse_uint(optarg, 1, 10000000, &v);
			if (!bad)
				c->max_connections = (unsigned)v;
			break;
		case O_PIPE:
			bad = parse_uint(optarg, 1, 1024, &v);
			if (!bad)
				c->max_pipeline = (unsigned)v;
			break;
		case O_IDLE:
			bad = parse_ms(optarg, &ms) || ms < 10;
			if (!bad)
				c->idle_timeout_ms = ms;
			break;
		case O_REQ:
			bad = parse_ms(optarg, &ms) || ms < 10;
			if (!bad)
				c->request_timeout_ms = ms;
			break;
		case O_QUEUE:
			bad = parse_uint(optarg, 1, 100000000, &v);
			if (!bad)
				c->queue_depth = (unsigned)v;
			break;
		case O_GROUP:
			bad = parse_uint(optarg, 1, 1000000, &v);
			if (!bad)
				c->group_max = (unsigned)v;
			break;
		case O_SNAPN:
			bad = parse_uint(optarg, 1, UINT64_MAX, &v);
			if (!bad)
				c->snapshot_every = v;
			break;
		case O_SNAPT:
			bad = parse_ms(optarg, &ms) || ms < 1;
			if (!bad)
				c->snapshot_ms = ms;
			break;
		case O_THREADS:
			bad = parse_uint(optarg, 1, 256, &v);
			if (!bad)
				c->threads = (unsigned)v;
			break;
		case O_DRAIN:
			bad = parse_ms(optarg, &ms);
			if (!bad)
				c->drain_timeout_ms = ms;
			break;
		case O_NOAUTH: c->auth = false; break;
		case O_NULL: c->null_mode = true; break;
		case O_DEMO: c->demo = true; break;
		case O_CONFKEY:
			bad = parse_uint(optarg, 1, 1000, &v);
			if (!bad)
				c->conflicts_per_seq = (unsigned)v;
			break;
		case O_CONFPREC:
			bad = parse_uint(optarg, 1, 1000000, &v);
			if (!bad)
				c->conflicts_per_precinct = (unsigned)v;
			break;
		case O_FAILURES:
			bad = parse_uint(optarg, 1, 100000000, &v);
			if (!bad)
				c->max_failures = (unsigned)v;
			break;
		case O_CONNMEM:
			bad = parse_size(optarg, &v) || v < 4096;
			if (!bad)
				c->max_conn_memory = v;
			break;
		case O_CLIENTMEM:
			bad = parse_size(optarg, &v) || v < 4096;
			if (!bad)
				c->max_client_memory = v;
			break;
		case O_SENDTO:
			bad = parse_ms(optarg, &ms) || ms < 10;
			if (!bad)
				c->send_timeout_ms = ms;
			break;
		case O_QBYTES:
			bad = parse_size(optarg, &v) || v < 4096;
			if (!bad)
				c->queue_bytes = v;
			break;
		case O_HEAVY:
			bad = parse_uint(optarg, 1, 100000, &v);
			if (!bad)
				c->max_heavy_queries = (unsigned)v;
			break;
		case O_LOGKEY: c->log_key_path = optarg; break;
		case O_STALL:
			bad = parse_ms(optarg, &ms) || ms < 100;
			if (!bad)
				c->stall_ms = ms;
			break;
		case O_QUOTA:
			bad = parse_size(optarg, &v) || v < 1;
			if (!bad)
				c->precinct_quota = v;
			break;
		case O_LOG:
			if (strcmp(optarg, "debug") == 0)
				bal_log_min = BAL_LOG_DEBUG;
			else if (strcmp(optarg, "info") == 0)
				bal_log_min = BAL_LOG_INFO;
			else if (strcmp(optarg, "warn") == 0)
				bal_log_min = BAL_LOG_WARN;
			else if (strcmp(optarg, "error") == 0)
				bal_log_min = BAL_LOG_ERROR;
			else
				bad = 1;
			break;
		case O_HELP: usage(stdout); exit(0);
		case O_VERSION: printf("ballotd %s\n", BAL_VERSION); exit(0);
		default:
			fprintf(stderr, "ballotd: unknown option or missing value: %s\n", argv[optind - 1]);
			usage(stderr);
			return -1;
		}
		if (bad) {
			fprintf(stderr, "ballotd: invalid value '%s' for --%s (see --help for units and limits)\n",
			        optarg, opts[li].name);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ballotd: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	if (!c->definition && !c->demo) {
		fprintf(stderr, "ballotd: no --definition FILE given (--demo runs the embedded demo election, whose "
		                "keys anyone can derive)\n");
		return -1;
	}
	if (c->definition && c->demo) {
		fprintf(stderr, "ballotd: --definition and --demo exclude each other\n");
		return -1;
	}
	return 0;
}

/* Bytes of a varint holding v. */
static unsigned varint_len(uint64_t v)
{
	unsigned n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/*
 * Bytes of the largest SignedBatch precinct index `p` can send with
 * `ballots` ballots: those ballots in every contest on its ballot (a choice
 * index takes at most 5 bytes), a tally of every choice of those contests
 * (at most 10 bytes a count), a turnout, ids, seq, election id, and a
 * 64-byte signature with the framing around all of it. Saturates at `cap`.
 */
static uint64_t batch_bytes(const struct bal_defn *d, uint32_t p, uint64_t ballots, uint64_t cap)
{
	uint64_t n = 256 + strlen(d->election_id);
	if (ballots > ((uint64_t)1 << 40))
		return cap;
	for (uint32_t c = 0; c < d->ncontests; c++) {
		if (!bal_defn_votes_in(d, p, c))
			continue;
		uint64_t column = ballots * 5, tally = (uint64_t)d->contests[c].nchoices * 10;
		n += 2 * (1 + 5 + 1 + 5 + 1 + 5) + column + tally; /* two messages: tag, length, contest id, field */
		if (n >= cap)
			return cap;
	}
	n += varint_len(n) + 1; /* the Batch inside the SignedBatch */
	return n < cap ? n : cap;
}

/* The largest batch precinct index `p` may send that is not refused for its
 * counts (its max_voters ballots); SIZE_MAX at BODY_CAP or beyond. */
static size_t batch_bound(const struct bal_defn *d, uint32_t p)
{
	uint64_t n = batch_bytes(d, p, d->precincts[p].max_voters, BODY_CAP);
	return n >= BODY_CAP ? SIZE_MAX : (size_t)n;
}

uint64_t bal_config_precinct_quota(const struct bal_defn *d, uint32_t p)
{
	const struct bal_precinct *pr = &d->precincts[p];
	if (pr->unbounded)
		return UINT64_MAX;
	uint64_t one = batch_bytes(d, p, 1, UINT64_MAX), full = batch_bytes(d, p, pr->max_voters, UINT64_MAX);
	uint64_t singles, large, q;
	if (__builtin_mul_overflow(pr->max_voters, one, &singles) ||
	    __builtin_mul_overflow((uint64_t)BAL_QUOTA_FULL_BATCHES, full, &large) ||
	    __builtin_add_overflow(singles, large, &q))
		return UINT64_MAX;
	return q;
}

size_t bal_config_body_bound(const struct bal_defn *d, uint32_t *largest)
{
	size_t most = 0;
	*largest = 0;
	for (uint32_t p = 0; p < d->nprecincts && most < BODY_CAP; p++) {
		size_t b = d->precincts[p].unbounded ? SIZE_MAX : batch_bound(d, p);
		if (b > most) {
			most = b;
			*largest = p;
		}
	}
	if (most >= BODY_CAP)
		return BODY_CAP;
	most = (most + 4095) & ~(size_t)4095;
	return most < BODY_FLOOR ? BODY_FLOOR : most > BODY_CAP ? BODY_CAP : most;
}

/* Caps below one body refuse some batches whatever the load: say so at start. */
static void warn_below_body(const struct bal_config *c)
{
	if (c->queue_bytes < c->max_body)
		bal_log(BAL_LOG_WARN, "config",
		        "--queue-bytes %zu is below --max-body %zu: a batch longer than it always gets 503",
		        c->queue_bytes, c->max_body);
	if (c->max_client_memory < c->max_body)
		bal_log(BAL_LOG_WARN, "config",
		        "--max-client-memory %zu is below --max-body %zu: a batch longer than it always gets 503",
		        c->max_client_memory, c->max_body);
}

void bal_config_derive(struct bal_config *c, const struct bal_defn *d)
{
	if (c->max_body_given) {
		bal_log(BAL_LOG_INFO, "config", "--max-body %zu bytes (given)", c->max_body);
		warn_below_body(c);
		return;
	}
	uint32_t p;
	c->max_body = bal_config_body_bound(d, &p);
	const struct bal_precinct *pr = d->nprecincts ? &d->precincts[p] : NULL;
	if (!pr) {
		bal_log(BAL_LOG_INFO, "config", "--max-body %zu bytes (no precincts)", c->max_body);
	} else if (pr->unbounded) {
		bal_log(BAL_LOG_INFO, "config", "--max-body %zu bytes: precinct %u is unbounded", c->max_body, pr->id);
	} else {
		uint32_t contests = 0;
		for (uint32_t k = 0; k < d->ncontests; k++)
			contests += bal_defn_votes_in(d, p, k);
		bal_log(BAL_LOG_INFO, "config",
		        "--max-body %zu bytes, from the definition: the largest batch precinct %u may send (%llu "
		        "voters x %u contests x 5 bytes, tallies and envelope), rounded up to 4 KiB, within %zu..%zu",
		        c->max_body, pr->id, (unsigned long long)pr->max_voters, contests, BODY_FLOOR, BODY_CAP);
	}
	warn_below_body(c);
}
