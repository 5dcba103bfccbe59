/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ballotctl keygen: makes the log key of a ballotd deployment. The secret
 * seed goes to a file only its owner may read, for `ballotd --log-key`; the
 * public key, printed and written beside it, is what stations and observers
 * pin with --server-key. Nothing here talks to the daemon.
 */
#include "ballotctl/ballotctl.h"

#include "client/logcheck.h"

#include <getopt.h>
#include <stdio.h>

static const char help[] = "usage: ballotctl keygen --out FILE\n"
                           "\n"
                           "Makes an Ed25519 log key for ballotd's signed tree heads. FILE gets the 32-byte\n"
                           "secret seed as 64 lowercase hex digits and a newline, created with mode 0600\n"
                           "(give it to `ballotd --log-key FILE`, which refuses a file that group or others\n"
                           "may read); FILE.pub gets the public key the same way (mode 0644). Neither file\n"
                           "may exist already: a log key is never overwritten. Both files and their\n"
                           "directory are fsynced. The public key is printed on stdout: give it to stations\n"
                           "and observers (`--server-key HEX` or `--server-key FILE.pub`).\n"
                           "\n"
                           "  --out FILE   where to write the secret seed (required)\n"
                           "\n"
                           "Exit status: 0 written; 1 a file exists or cannot be written; 2 bad command line.\n";

int cmd_keygen(int argc, char **argv)
{
	enum { O_OUT = 256, O_HELP };
	static const struct option longopts[] = {
	        {"out", required_argument, NULL, O_OUT},
	        {"help", no_argument, NULL, O_HELP},
	        {NULL, 0, NULL, 0},
	};
	const char *out = NULL;
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case O_OUT: out = optarg; break;
		case O_HELP: fputs(help, stdout); return EXIT_OK;
		default: opt_bad("keygen", argv); return EXIT_USAGE;
		}
	}
	if (!opt_no_operands("keygen", argc, argv))
		return EXIT_USAGE;
	if (!out) {
		fprintf(stderr, "ballotctl keygen: --out FILE is required\n");
		return EXIT_USAGE;
	}
	uint8_t pk[BAL_LOGCHECK_KEY_BYTES];
	char why[600], hex[2 * BAL_LOGCHECK_KEY_BYTES + 1];
	if (bal_logcheck_key_write(out, NULL, pk, why, sizeof(why)) < 0) {
		fprintf(stderr, "ballotctl keygen: %s\n", why);
		return EXIT_FAILED;
	}
	bal_logcheck_hex(pk, sizeof(pk), hex);
	printf("%s\n", hex);
	fprintf(stderr, "ballotctl keygen: secret key in %s (mode 0600), public key in %s.pub\n", out, out);
	return EXIT_OK;
}
