/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ballotctl amend: the election commission's one tool to change the running
 * election (docs/design.md, "Amendments"): makes one Amendment, signs it with
 * the commission's secret key and posts it to POST /v1/amendments, then
 * prints the ack. With --server-key it checks the receipt the way `ballotctl
 * upload` checks a batch's: the amendment is a leaf of the signed log.
 *
 * It refuses what the daemon would (an unknown precinct, a key of another
 * length, no reason) before sending, and a secret key that is not the
 * definition's commission_key, so that a mistake costs no commission seq.
 * Talks to the daemon over HTTP only (client/).
 */
#include "ballotctl/ballotctl.h"

#include "client/http.h"
#include "client/logcheck.h"
#include "defn/defn.h"
#include "proto/codec.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char help[] =
        "usage: ballotctl amend --server HOST:PORT --definition FILE --commission-key SECRETFILE\n"
        "                       --seq N --reason TEXT CHANGE [--server-key HEX|FILE] [--timeout SECONDS]\n"
        "\n"
        "Makes one amendment of the running election, signs it with the commission's key and\n"
        "posts it (POST /v1/amendments), then prints the daemon's ack (JSON) on stdout. CHANGE\n"
        "is exactly one of:\n"
        "  --revoke-key P          from here on no key signs for precinct P (its batches get 401)\n"
        "  --set-key P HEX|FILE    from here on only this Ed25519 public key (64 hex digits, or a\n"
        "                          file holding them, as `ballotctl keygen` writes FILE.pub) signs\n"
        "                          for precinct P: adds a key or rotates it\n"
        "  --void POSITION         the batch journaled at POSITION no longer counts: every total\n"
        "                          is as if it had never been journaled (its seq stays taken)\n"
        "  --freeze P              no further batches from precinct P are accepted\n"
        "  --certify POSITION      the results at journal POSITION are final\n"
        "\n"
        "  --server HOST:PORT      ballotd address (required; http://HOST:PORT/ works too)\n"
        "  --definition FILE       the election definition (required): its election id, and its\n"
        "                          commission_key, which the secret key must match\n"
        "  --commission-key FILE   the commission's secret key: 64 hex digits of the Ed25519 seed, as\n"
        "                          `ballotctl keygen` writes it; refused if group or others may read it\n"
        "  --seq N                 the commission's own sequence number of this amendment (1, 2, ...):\n"
        "                          a resend of the same amendment is DUPLICATE, another one with a\n"
        "                          seq already used is a conflict (409)\n"
        "  --reason TEXT           why (required; 1..1024 bytes of UTF-8, no control characters)\n"
        "  --server-key HEX|FILE   the log's public key: check that the ack's receipt proves the\n"
        "                          amendment is in the signed log\n"
        "  --created-unix-ms MS    the amendment's creation time (default: now). Signing is\n"
        "                          deterministic: the same options with the same time make the same\n"
        "                          bytes, so sending again after a lost answer gets DUPLICATE, not a\n"
        "                          conflict; the time used is printed when no ack came back\n"
        "  --timeout SECONDS       for the request (default 30)\n"
        "\n"
        "Exit status: 0 ACCEPTED or DUPLICATE (and, with --server-key, the receipt verifies);\n"
        "1 refused, not answered, or a receipt that does not verify; 2 bad command line.\n";

/* 64 hex digits, then optionally one newline, then nothing. */
static bool parse_seed(const char *text, size_t n, uint8_t seed[32])
{
	if (n == 65 && text[64] == '\n')
		n = 64;
	size_t bin = 0;
	const char *end = NULL;
	return n == 64 && sodium_hex2bin(seed, 32, text, 64, NULL, &bin, &end) == 0 && bin == 32 && end == text + 64;
}

/* The secret key file into an Ed25519 key pair; false after printing why. */
static bool read_secret(const char *path, uint8_t pk[32], uint8_t sk[64])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "ballotctl amend: --commission-key %s: %s\n", path, strerror(errno));
		return false;
	}
	struct stat st;
	char text[80];
	uint8_t seed[32];
	ssize_t n = -1;
	bool ok = false;
	if (fstat(fd, &st) != 0)
		fprintf(stderr, "ballotctl amend: --commission-key %s: %s\n", path, strerror(errno));
	else if (st.st_mode & 077)
		fprintf(stderr,
		        "ballotctl amend: --commission-key %s: mode %03o lets others read the commission's secret key "
		        "(chmod 600 it)\n",
		        path, (unsigned)(st.st_mode & 0777));
	else if ((n = read(fd, text, sizeof(text))) < 0)
		fprintf(stderr, "ballotctl amend: --commission-key %s: %s\n", path, strerror(errno));
	else if (!parse_seed(text, (size_t)n, seed))
		fprintf(stderr,
		        "ballotctl amend: --commission-key %s: not a secret key (64 hex digits, as `ballotctl "
		        "keygen` writes)\n",
		        path);
	else
		ok = crypto_sign_seed_keypair(pk, sk, seed) == 0;
	sodium_memzero(text, sizeof(text));
	sodium_memzero(seed, sizeof(seed));
	close(fd);
	return ok;
}

/* What an ACCEPTED or DUPLICATE ack's receipt must prove (see upload.c). */
static bool receipt_verifies(json_t *ack, const uint8_t *body, size_t len, uint64_t position, const char *election,
                             const struct log_trust *t)
{
	struct bal_receipt rc;
	char why[600];
	uint8_t mine[BAL_HASH_BYTES];
	bal_logcheck_leaf_hash(body, len, mine);
	if (!json_is_object(json_object_get(ack, "receipt")))
		snprintf(why, sizeof(why), "the ack at position %" PRIu64 " carries no receipt", position);
	else if (bal_logcheck_receipt_from_json(ack, &rc, why, sizeof(why)) < 0)
		;
	else if (!position || rc.leaf_index != position - 1)
		snprintf(why, sizeof(why), "receipt for leaf %" PRIu64 ", but the ack says position %" PRIu64,
		         rc.leaf_index, position);
	else if (memcmp(mine, rc.leaf_hash, sizeof(mine)) != 0)
		snprintf(why, sizeof(why), "the receipt's leaf hash is not SHA-256(0x00 || the amendment's bytes)");
	else if (bal_logcheck_receipt_verify(&rc, election, t->key, why, sizeof(why)) == 0) {
		fprintf(stderr,
		        "ballotctl amend: receipt verified: leaf %" PRIu64 " of the log of size %" PRIu64
		        ", signed by %.16s...\n",
		        rc.leaf_index, rc.head.tree_size, t->key_hex);
		return true;
	}
	fprintf(stderr, "ballotctl amend: RECEIPT FAILED: %s\n", why);
	return false;
}

struct change {
	enum bal_change kind;
	uint64_t value;  /* precinct id or position */
	const char *key; /* --set-key HEX|FILE */
	unsigned given;
};

/* Sets the change of `flag`, refusing a second one. */
static bool set_change(struct change *c, enum bal_change kind, const char *flag, const char *text, uint64_t max)
{
	if (c->given++) {
		fprintf(stderr, "ballotctl amend: one change per amendment (%s and another given)\n", flag);
		return false;
	}
	c->kind = kind;
	return opt_u64(flag, text, kind == BAL_CHANGE_VOID || kind == BAL_CHANGE_CERTIFY ? 1 : 0, max, &c->value);
}

int cmd_amend(int argc, char **argv)
{
	enum {
		O_SERVER = 256,
		O_DEFN,
		O_SECRET,
		O_SEQ,
		O_REASON,
		O_REVOKE,
		O_SETKEY,
		O_VOID,
		O_FREEZE,
		O_CERTIFY,
		O_KEY,
		O_TIMEOUT,
		O_CREATED,
		O_HELP
	};
	static const struct option longopts[] = {
	        {"server", required_argument, NULL, O_SERVER},
	        {"definition", required_argument, NULL, O_DEFN},
	        {"commission-key", required_argument, NULL, O_SECRET},
	        {"seq", required_argument, NULL, O_SEQ},
	        {"reason", required_argument, NULL, O_REASON},
	        {"revoke-key", required_argument, NULL, O_REVOKE},
	        {"set-key", required_argument, NULL, O_SETKEY},
	        {"void", required_argument, NULL, O_VOID},
	        {"freeze", required_argument, NULL, O_FREEZE},
	        {"certify", required_argument, NULL, O_CERTIFY},
	        {"server-key", required_argument, NULL, O_KEY},
	        {"timeout", required_argument, NULL, O_TIMEOUT},
	        {"created-unix-ms", required_argument, NULL, O_CREATED},
	        {"help", no_argument, NULL, O_HELP},
	        {NULL, 0, NULL, 0},
	};
	char server[300] = "";
	const char *definition = NULL, *secret = NULL, *reason = NULL, *server_key = NULL;
	uint64_t seq = 0, created = 0;
	bool created_given = false;
	uint32_t timeout_s = 30;
	struct change ch = {0};
	struct log_trust trust = {0};
	bool ok = true;
	int opt;
	optind = 1;
	/* "+": options only, in order; --set-key takes the word after its precinct. */
	while (ok && (opt = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
		switch (opt) {
		case O_SERVER: ok = opt_server("amend", optarg, server, sizeof(server)); break;
		case O_DEFN: definition = optarg; break;
		case O_SECRET: secret = optarg; break;
		case O_SEQ: ok = opt_u64("--seq", optarg, 1, UINT64_MAX, &seq); break;
		case O_REASON: reason = optarg; break;
		case O_REVOKE:
			ok = set_change(&ch, BAL_CHANGE_REVOKE_KEY, "--revoke-key", optarg, UINT32_MAX - 1);
			break;
		case O_SETKEY:
			ok = set_change(&ch, BAL_CHANGE_SET_KEY, "--set-key", optarg, UINT32_MAX - 1);
			if (ok && (optind >= argc || strncmp(argv[optind], "--", 2) == 0)) {
				fprintf(stderr, "ballotctl amend: --set-key P HEX|FILE: the key is missing\n");
				ok = false;
			} else if (ok) {
				ch.key = argv[optind++];
			}
			break;
		case O_VOID: ok = set_change(&ch, BAL_CHANGE_VOID, "--void", optarg, UINT64_MAX); break;
		case O_FREEZE: ok = set_change(&ch, BAL_CHANGE_FREEZE, "--freeze", optarg, UINT32_MAX - 1); break;
		case O_CERTIFY: ok = set_change(&ch, BAL_CHANGE_CERTIFY, "--certify", optarg, UINT64_MAX); break;
		case O_KEY: server_key = optarg; break;
		case O_TIMEOUT: ok = opt_u32("--timeout", optarg, 1, 3600, &timeout_s); break;
		case O_CREATED:
			ok = opt_u64("--created-unix-ms", optarg, 0, UINT64_MAX, &created);
			created_given = true;
			break;
		case O_HELP: fputs(help, stdout); return EXIT_OK;
		default: opt_bad("amend", argv); return EXIT_USAGE;
		}
	}
	if (!ok || !opt_no_operands("amend", argc, argv))
		return EXIT_USAGE;
	const char *missing = !server[0]    ? "--server HOST:PORT"
	                      : !definition ? "--definition FILE"
	                      : !secret     ? "--commission-key SECRETFILE"
	                      : !seq        ? "--seq N"
	                      : !reason     ? "--reason TEXT"
	                      : !ch.given   ? "one change (--revoke-key, --set-key, --void, --freeze or --certify)"
	                                    : NULL;
	if (missing) {
		fprintf(stderr, "ballotctl amend: %s is required (see --help)\n", missing);
		return EXIT_USAGE;
	}
	if (server_key && !opt_server_key("amend", server_key, &trust))
		return EXIT_USAGE;
	if (sodium_init() < 0) {
		fprintf(stderr, "ballotctl amend: libsodium does not initialise\n");
		return EXIT_FAILED;
	}
	uint8_t new_key[32];
	char why[600];
	if (ch.key && bal_logcheck_key_parse(ch.key, new_key, why, sizeof(why)) < 0) {
		fprintf(stderr, "ballotctl amend: --set-key %" PRIu64 " %s\n", ch.value, why);
		return EXIT_USAGE;
	}
	char path[4096];
	struct bal_defn *d = NULL;
	if (!find_definition(definition, path, sizeof(path)))
		return EXIT_USAGE;
	if (bal_defn_load(path, &d, why, sizeof(why)) < 0) {
		fprintf(stderr, "ballotctl amend: --definition %s: %s\n", path, why);
		return EXIT_USAGE;
	}
	int rc = EXIT_USAGE;
	uint8_t pk[32], sk[64], *inner = NULL, *body = NULL;
	json_t *ack = NULL;
	struct bal_http_resp resp = {0};
	if (!d->has_commission_key) {
		fprintf(stderr,
		        "ballotctl amend: --definition %s has no commission_key: the daemon accepts no amendment\n",
		        path);
		goto out;
	}
	if (!read_secret(secret, pk, sk))
		goto out;
	if (memcmp(pk, d->commission_key, sizeof(pk)) != 0) {
		char hex[65];
		bal_logcheck_hex(pk, sizeof(pk), hex);
		fprintf(stderr,
		        "ballotctl amend: the key in %s (public key %s) is not the commission_key of --definition %s\n",
		        secret, hex, path);
		goto out;
	}
	if (!created_given) {
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		created = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
	}
	struct bal_amendment am = {.election_id = d->election_id,
	                           .seq = seq,
	                           .created_unix_ms = created,
	                           .reason = reason,
	                           .change = ch.kind};
	if (ch.kind == BAL_CHANGE_VOID || ch.kind == BAL_CHANGE_CERTIFY)
		am.position = ch.value;
	else
		am.precinct_id = (uint32_t)ch.value;
	if (ch.key) {
		am.public_key = new_key;
		am.public_key_len = sizeof(new_key);
	}
	if (bal_amendment_check(d, &am, why, sizeof(why)) < 0) {
		fprintf(stderr, "ballotctl amend: %s\n", why);
		goto out;
	}
	rc = EXIT_FAILED;
	size_t n = bal_codec_amendment_size(&am);
	uint8_t sig[crypto_sign_BYTES];
	if (!(inner = malloc(n ? n : 1)))
		goto out;
	bal_codec_amendment_pack(&am, inner);
	crypto_sign_detached(sig, NULL, inner, n, sk);
	size_t len = bal_codec_signed_amendment_size(inner, n, sig, sizeof(sig));
	if (!(body = malloc(len)))
		goto out;
	bal_codec_signed_amendment_pack(inner, n, sig, sizeof(sig), body);
	if (bal_http_request(server, "POST", "/v1/amendments", body, len, "application/x-protobuf",
	                     (int)timeout_s * 1000, 1 << 20, &resp, why, sizeof(why)) < 0) {
		fprintf(stderr,
		        "ballotctl amend: %s\nballotctl amend: to send this same amendment again, add "
		        "--created-unix-ms "
		        "%" PRIu64 "\n",
		        why, created);
		goto out;
	}
	json_error_t jerr;
	ack = json_loadb(resp.body, resp.len, 0, &jerr);
	const char *status = json_string_value(json_object_get(ack, "status"));
	if (!status) {
		fprintf(stderr,
		        "ballotctl amend: POST /v1/amendments: HTTP %d without an ack: %.300s\nballotctl amend: to "
		        "send "
		        "this same amendment again, add --created-unix-ms %" PRIu64 "\n",
		        resp.status, resp.body, created);
		goto out;
	}
	fwrite(resp.body, 1, resp.len, stdout);
	if (resp.len && resp.body[resp.len - 1] != '\n')
		fputc('\n', stdout);
	bool stored = strcmp(status, "ACCEPTED") == 0 || strcmp(status, "DUPLICATE") == 0;
	if (!stored) {
		fprintf(stderr, "ballotctl amend: refused (HTTP %d): %s\n", resp.status,
		        json_string_value(json_object_get(ack, "error")));
		goto out;
	}
	json_t *jpos = json_object_get(ack, "position");
	uint64_t position =
	        json_is_integer(jpos) && json_integer_value(jpos) > 0 ? (uint64_t)json_integer_value(jpos) : 0;
	if (server_key && !receipt_verifies(ack, body, len, position, d->election_id, &trust))
		goto out;
	rc = EXIT_OK;
out:
	sodium_memzero(sk, sizeof(sk));
	json_decref(ack);
	bal_http_resp_deinit(&resp);
	free(inner);
	free(body);
	bal_defn_free(d);
	return rc;
}
