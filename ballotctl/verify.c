/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ballotctl verify-receipt: a station's or an observer's check of the
 * receipts `ballotctl upload` kept. Each receipt is checked offline first
 * (the head's signature under the pinned log key, the inclusion proof of its
 * leaf up to the signed root), then against the log as it is now: the
 * latest signed head, and a consistency proof from the receipt's head to it,
 * so a log that dropped or rewrote the batch since cannot hide it. Uses only
 * client/logcheck.h for the checks, never the server's word.
 */
#include "ballotctl/ballotctl.h"

#include "client/http.h"
#include "client/logcheck.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
        "usage: ballotctl verify-receipt --server HOST:PORT --server-key HEX|FILE [--definition FILE]\n"
        "                                [--offline] [--timeout SECONDS] FILE\n"
        "\n"
        "Checks receipts: FILE is a receipts file of `ballotctl upload` (one JSON object a\n"
        "line, RECEIPTS/receipts.jsonl) or one receipt (a JSON object with \"leaf_index\",\n"
        "\"leaf_hash\", \"tree_size\", \"timestamp_ms\", \"root_hash\", \"signature\" and\n"
        "\"audit_path\", or a JSON ack holding such a \"receipt\"). For each receipt:\n"
        "  1. the tree head's Ed25519 signature under --server-key, for the election id;\n"
        "  2. the inclusion proof from leaf_hash at leaf_index up to the signed root;\n"
        "  3. (unless --offline) the server's latest signed head (GET /v1/log/sth, its\n"
        "     signature checked too) must not be smaller, and the consistency proof from\n"
        "     the receipt's tree size to it (GET /v1/log/proof/consistency) must lead from\n"
        "     the receipt's root to the latest root: the log still holds the batch.\n"
        "A receipt naming another \"election_id\" than the one checked fails. The election\n"
        "id is --definition's; without it, GET /v1/log/key gives it, after checking that\n"
        "the key the server names is the pinned one.\n"
        "\n"
        "One line per receipt on stdout: \"OK <file>: ...\" or \"FAILED <file>: <the check>\"\n"
        "(<file> is the receipt's \"file\" member, else \"#N (line L)\").\n"
        "\n"
        "  --server HOST:PORT       ballotd address (http://HOST:PORT/ works too); required\n"
        "                           unless --offline\n"
        "  --server-key HEX|FILE    the log's public key (required)\n"
        "  --definition FILE        the election definition (its election id)\n"
        "  --offline                only checks 1 and 2 (needs --definition)\n"
        "  --timeout SECONDS        per request (default 30)\n"
        "\n"
        "Exit status: 0 iff FILE holds at least one receipt and every one verifies; 1\n"
        "otherwise (or the server cannot be asked); 2 bad command line.\n";

/* A receipt head already checked against the latest head, and the outcome. */
struct checked {
	struct bal_tree_head head;
	int rc;
	char why[400];
};

struct verifier {
	const char *server;
	struct log_trust trust;
	bool offline;
	int timeout_ms;
	bool have_latest;
	int latest_rc;
	char latest_why[600];
	struct bal_tree_head latest;
	struct checked *done;
	size_t ndone, cap;
	uint64_t ok, failed;
};

/* The consistency of `h` with the latest head, asked once per distinct head. */
static int check_current(struct verifier *v, const struct bal_tree_head *h, char *why, size_t whylen)
{
	if (!v->have_latest) {
		v->latest_rc = log_fetch_signed_head(v->server, &v->trust, 0, v->timeout_ms, &v->latest, v->latest_why,
		                                     sizeof(v->latest_why));
		v->have_latest = true;
	}
	if (v->latest_rc < 0) {
		snprintf(why, whylen, "latest head: %s", v->latest_why);
		return v->latest_rc;
	}
	for (size_t i = 0; i < v->ndone; i++) {
		if (v->done[i].head.tree_size == h->tree_size && memcmp(v->done[i].head.root, h->root, 32) == 0) {
			snprintf(why, whylen, "%s", v->done[i].why);
			return v->done[i].rc;
		}
	}
	if (v->ndone == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 16;
		struct checked *d = realloc(v->done, cap * sizeof(*d));
		if (!d) {
			snprintf(why, whylen, "out of memory");
			return -ENOMEM;
		}
		v->done = d;
		v->cap = cap;
	}
	struct checked *c = &v->done[v->ndone++];
	c->head = *h;
	c->why[0] = '\0';
	c->rc = log_check_consistent(v->server, h, &v->latest, v->timeout_ms, c->why, sizeof(c->why));
	snprintf(why, whylen, "%s", c->why);
	return c->rc;
}

/* Checks one parsed JSON value; prints its line. */
static void check_one(struct verifier *v, json_t *o, size_t index, size_t line)
{
	char label[300], why[1000], e[700];
	const char *file = json_string_value(json_object_get(o, "file"));
	if (file)
		snprintf(label, sizeof(label), "%s", file);
	else
		snprintf(label, sizeof(label), "#%zu (line %zu)", index, line);
	struct bal_receipt r;
	const char *id = json_string_value(json_object_get(o, "election_id"));
	if (bal_logcheck_receipt_from_json(o, &r, e, sizeof(e)) < 0) {
		snprintf(why, sizeof(why), "not a receipt: %s", e);
	} else if (id && strcmp(id, v->trust.election_id) != 0) {
		snprintf(why, sizeof(why), "kept for election \"%s\", not \"%s\"", id, v->trust.election_id);
	} else if (bal_logcheck_receipt_verify(&r, v->trust.election_id, v->trust.key, e, sizeof(e)) < 0) {
		snprintf(why, sizeof(why), "%s", e);
	} else if (!v->offline && check_current(v, &r.head, e, sizeof(e)) < 0) {
		snprintf(why, sizeof(why), "not consistent with the log now: %s", e);
	} else {
		v->ok++;
		if (v->offline)
			printf("OK %s: position %" PRIu64 " in the signed head of size %" PRIu64 "\n", label,
			       r.leaf_index + 1, r.head.tree_size);
		else
			printf("OK %s: position %" PRIu64 " in the signed head of size %" PRIu64
			       ", consistent with the latest head of size %" PRIu64 "\n",
			       label, r.leaf_index + 1, r.head.tree_size, v->latest.tree_size);
		return;
	}
	v->failed++;
	printf("FAILED %s: %s\n", label, why);
}

static char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);
	while (buf) {
		if (n + 1 >= cap) {
			char *b = realloc(buf, cap * 2);
			if (!b) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = b;
			cap *= 2;
		}
		size_t got = fread(buf + n, 1, cap - n - 1, f);
		if (got == 0)
			break;
		n += got;
	}
	int err = ferror(f);
	fclose(f);
	if (buf && err) {
		free(buf);
		return NULL;
	}
	if (buf) {
		buf[n] = '\0';
		*len = n;
	}
	return buf;
}

/* Walks the JSON values of the file: JSON lines, or one (pretty) object. */
static void check_file(struct verifier *v, const char *text, size_t len)
{
	size_t off = 0, index = 0, line = 1;
	while (off < len) {
		while (off < len && (text[off] == ' ' || text[off] == '\t' || text[off] == '\r' || text[off] == '\n')) {
			if (text[off] == '\n')
				line++;
			off++;
		}
		if (off == len)
			break;
		json_error_t err;
		json_t *o = json_loadb(text + off, len - off, JSON_DISABLE_EOF_CHECK, &err);
		index++;
		size_t used = o ? (size_t)err.position : 0;
		if (!o || used == 0) {
			v->failed++;
			printf("FAILED #%zu (line %zu): not JSON: %s\n", index, line, err.text);
			const char *nl = memchr(text + off, '\n', len - off);
			used = nl ? (size_t)(nl - (text + off)) : len - off;
		} else {
			check_one(v, o, index, line);
		}
		json_decref(o);
		for (size_t i = 0; i < used; i++)
			line += text[off + i] == '\n';
		off += used;
	}
}

int cmd_verify_receipt(int argc, char **argv)
{
	enum { O_SERVER = 256, O_KEY, O_DEFN, O_OFFLINE, O_TIMEOUT, O_HELP };
	static const struct option longopts[] = {
	        {"server", required_argument, NULL, O_SERVER},
	        {"server-key", required_argument, NULL, O_KEY},
	        {"definition", required_argument, NULL, O_DEFN},
	        {"offline", no_argument, NULL, O_OFFLINE},
	        {"timeout", required_argument, NULL, O_TIMEOUT},
	        {"help", no_argument, NULL, O_HELP},
	        {NULL, 0, NULL, 0},
	};
	struct verifier v = {0};
	const char *server = NULL, *key = NULL, *definition = NULL;
	uint32_t timeout_s = 30;
	bool ok = true;
	int opt;
	optind = 1;
	while (ok && (opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case O_SERVER: server = optarg; break;
		case O_KEY: key = optarg; break;
		case O_DEFN: definition = optarg; break;
		case O_OFFLINE: v.offline = true; break;
		case O_TIMEOUT: ok = opt_u32("--timeout", optarg, 1, 3600, &timeout_s); break;
		case O_HELP: fputs(help, stdout); return EXIT_OK;
		default: opt_bad("verify-receipt", argv); return EXIT_USAGE;
		}
	}
	if (!ok)
		return EXIT_USAGE;
	if (optind != argc - 1) {
		fprintf(stderr, "ballotctl verify-receipt: give exactly one FILE of receipts (see --help)\n");
		return EXIT_USAGE;
	}
	const char *path = argv[optind];
	const char *missing = !key                       ? "--server-key HEX|FILE"
	                      : !server && !v.offline    ? "--server HOST:PORT (or --offline)"
	                      : v.offline && !definition ? "--definition FILE (with --offline)"
	                                                 : NULL;
	if (missing) {
		fprintf(stderr, "ballotctl verify-receipt: %s is required\n", missing);
		return EXIT_USAGE;
	}
	char srv[BAL_HTTP_HOST_MAX + 16];
	if ((server && !opt_server("verify-receipt", server, srv, sizeof(srv))) ||
	    !opt_server_key("verify-receipt", key, &v.trust) ||
	    (definition &&
	     !definition_election_id("verify-receipt", definition, v.trust.election_id, sizeof(v.trust.election_id))))
		return EXIT_USAGE;
	v.server = server ? srv : NULL;
	v.timeout_ms = (int)timeout_s * 1000;
	char why[600];
	if (!definition) {
		int rc = log_fetch_election(v.server, &v.trust, v.timeout_ms, why, sizeof(why));
		if (rc < 0) {
			fprintf(stderr, "ballotctl verify-receipt: %s\n", why);
			return EXIT_FAILED;
		}
	}
	size_t len = 0;
	char *text = read_all(path, &len);
	if (!text) {
		fprintf(stderr, "ballotctl verify-receipt: %s: %s\n", path, strerror(errno));
		return EXIT_FAILED;
	}
	check_file(&v, text, len);
	free(text);
	free(v.done);
	char b1[32], b2[32];
	fprintf(stderr, "ballotctl verify-receipt: %s: %s verified, %s failed (election \"%s\", key %.16s...)\n", path,
	        fmt_count(v.ok, b1), fmt_count(v.failed, b2), v.trust.election_id, v.trust.key_hex);
	if (v.ok + v.failed == 0)
		fprintf(stderr, "ballotctl verify-receipt: %s holds no receipt\n", path);
	return v.failed == 0 && v.ok > 0 ? EXIT_OK : EXIT_FAILED;
}
