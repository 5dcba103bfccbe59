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

void bal_config_defaults(struct bal_config *c)
{
	memset(c, 0, sizeof(*c));
	c->definition = NULL;
	c->data_dir = "./ballotd-data";
	snprintf(c->host, sizeof(c->host), "127.0.0.1");
	c->port = 8080;
	c->map_size = (size_t)8 << 30;
	c->max_body = (size_t)1 << 20;
	c->max_header = 16 * 1024;
	c->max_output = (size_t)16 << 20;
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
	           "  --max-body SIZE          request body cap (413 beyond), default 1M\n"
	           "  --max-header SIZE        request line + headers cap (431 beyond), default 16K\n"
	           "  --max-output SIZE        unread response bytes per connection before closing it, default 16M\n"
	           "  --max-connections N      default: descriptor limit - 64\n"
	           "  --max-pipeline N         requests in flight per connection, default 32\n"
	           "  --idle-timeout DUR       close idle connections, default 60s\n"
	           "  --request-timeout DUR    close connections whose request takes longer, default 30s\n"
	           "  --queue-depth N          batches waiting for commit before 503, default 65536\n"
	           "  --group-max N            batches per write transaction at most, default 8192\n"
	           "  --snapshot-every N       batches per round of counter snapshot slices, default 50000\n"
	           "  --snapshot-interval DUR  time per round of counter snapshot slices, default 2s\n"
	           "  --threads N              I/O threads (one libuv loop each, SO_REUSEPORT), default: cores\n"
	           "  --drain-timeout DUR      SIGTERM: longest wait for in-flight batches, default 10s\n"
	           "  --conflicts-per-seq N    conflicting versions stored per (precinct, seq), default 4\n"
	           "  --conflicts-per-precinct N  conflicting versions stored per precinct, default 64;\n"
	           "                           beyond either they are counted, not stored\n"
	           "  --no-auth                do not verify precinct signatures\n"
	           "  --null                   ack every POST at once without decoding or storing (HTTP ceiling)\n"
	           "  --log-level LEVEL        debug, info, warn, error; default info\n"
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
	        {"help", no_argument, 0, O_HELP},
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
			if (!bad)
				c->max_body = v;
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
