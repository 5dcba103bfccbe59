/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ballotctl gen-definition: writes a synthetic definition (client/defgen.h)
 * to a file or stdout. Same arguments, byte-identical output.
 */
#include "ballotctl/ballotctl.h"

#include "client/defgen.h"
#include "client/logcheck.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
        "usage: ballotctl gen-definition [OPTIONS]\n"
        "\n"
        "Writes a synthetic election definition in the format of docs/definition.md: a national\n"
        "party-list contest (id 1) and one single-member contest per district (id\n"
        "100+d), each with C choices whose last is \"Against all\" (seat_eligible\n"
        "false); precincts 1..N in contiguous blocks per district, registered voters\n"
        "uniform in [min, max], and demo public keys derived from the seed (anyone who\n"
        "knows the seed can sign: demo only; real stations get provisioned keys).\n"
        "Same arguments give byte-identical output.\n"
        "\n"
        "  --precincts N        precincts (default 10000)\n"
        "  --districts D        districts (default 29)\n"
        "  --choices C          choices per contest, >= 2 (default 8)\n"
        "  --seed S             names, voters and keys (default 2023)\n"
        "  --out FILE           write to FILE instead of stdout\n"
        "  --no-keys            omit public_key (signature checks off)\n"
        "  --party-seats N      seats of the party list (default 69)\n"
        "  --threshold P        party-list threshold in percent (default 5)\n"
        "  --registered-min N   (default 500)\n"
        "  --registered-max N   (default 3000)\n"
        "  --unbounded          mark every precinct unbounded: no plausibility bounds (load tests)\n"
        "  --election-id ID     (default kz-2023-mazhilis)\n"
        "  --election-name TEXT\n"
        "  --date YYYY-MM-DD    (default 2023-03-19)\n"
        "  --commission-key-pub HEX|FILE\n"
        "                       the commission's Ed25519 public key (64 hex digits, or a file holding\n"
        "                       them, as `ballotctl keygen` writes FILE.pub): the definition's\n"
        "                       commission_key, which signs amendments (`ballotctl amend`); without it\n"
        "                       the daemon accepts none\n"
        "\n"
        "The bundled data/kz2023.json is: --precincts 10000 --districts 29 --choices 8 --seed 2023\n";

enum {
	O_PRECINCTS = 256,
	O_DISTRICTS,
	O_CHOICES,
	O_SEED,
	O_OUT,
	O_NO_KEYS,
	O_SEATS,
	O_THRESHOLD,
	O_RMIN,
	O_RMAX,
	O_UNBOUNDED,
	O_ID,
	O_NAME,
	O_DATE,
	O_COMMISSION,
	O_HELP
};

int cmd_gen_definition(int argc, char **argv)
{
	static const struct option longopts[] = {
	        {"precincts", required_argument, NULL, O_PRECINCTS},
	        {"districts", required_argument, NULL, O_DISTRICTS},
	        {"choices", required_argument, NULL, O_CHOICES},
	        {"seed", required_argument, NULL, O_SEED},
	        {"out", required_argument, NULL, O_OUT},
	        {"no-keys", no_argument, NULL, O_NO_KEYS},
	        {"party-seats", required_argument, NULL, O_SEATS},
	        {"threshold", required_argument, NULL, O_THRESHOLD},
	        {"registered-min", required_argument, NULL, O_RMIN},
	        {"registered-max", required_argument, NULL, O_RMAX},
	        {"unbounded", no_argument, NULL, O_UNBOUNDED},
	        {"election-id", required_argument, NULL, O_ID},
	        {"election-name", required_argument, NULL, O_NAME},
	        {"date", required_argument, NULL, O_DATE},
	        {"commission-key-pub", required_argument, NULL, O_COMMISSION},
	        {"help", no_argument, NULL, O_HELP},
	        {NULL, 0, NULL, 0},
	};
	struct bal_defgen_opts o;
	bal_defgen_defaults(&o);
	const char *out_path = NULL;
	uint8_t commission[32];
	char why[600];
	int opt;
	bool ok = true;
	optind = 1;
	while (ok && (opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case O_PRECINCTS: ok = opt_u32("--precincts", optarg, 1, 10000000, &o.precincts); break;
		case O_DISTRICTS: ok = opt_u32("--districts", optarg, 1, 100000, &o.districts); break;
		case O_CHOICES: ok = opt_u32("--choices", optarg, 2, 1000, &o.choices); break;
		case O_SEED: ok = opt_u64("--seed", optarg, 0, UINT64_MAX, &o.seed); break;
		case O_OUT: out_path = optarg; break;
		case O_NO_KEYS: o.keys = false; break;
		case O_SEATS: ok = opt_u32("--party-seats", optarg, 1, 100000, &o.party_seats); break;
		case O_THRESHOLD: ok = opt_double("--threshold", optarg, 0, 99.999, &o.threshold_percent); break;
		case O_RMIN: ok = opt_u64("--registered-min", optarg, 0, 1000000000, &o.registered_min); break;
		case O_RMAX: ok = opt_u64("--registered-max", optarg, 0, 1000000000, &o.registered_max); break;
		case O_UNBOUNDED: o.unbounded = true; break;
		case O_ID: o.election_id = optarg; break;
		case O_NAME: o.election_name = optarg; break;
		case O_DATE: o.election_date = optarg; break;
		case O_COMMISSION:
			ok = bal_logcheck_key_parse(optarg, commission, why, sizeof(why)) == 0;
			if (!ok)
				fprintf(stderr, "ballotctl gen-definition: --commission-key-pub %s\n", why);
			o.commission_key = commission;
			break;
		case O_HELP: fputs(help, stdout); return EXIT_OK;
		default: opt_bad("gen-definition", argv); return EXIT_USAGE;
		}
	}
	if (!ok || !opt_no_operands("gen-definition", argc, argv))
		return EXIT_USAGE;

	char *text;
	size_t len;
	int rc = bal_defgen_json(&o, &text, &len, why, sizeof(why));
	if (rc < 0) {
		fprintf(stderr, "ballotctl gen-definition: %s\n", why);
		return rc == -EINVAL ? EXIT_USAGE : EXIT_FAILED;
	}
	FILE *f = out_path ? fopen(out_path, "w") : stdout;
	if (!f) {
		perror(out_path);
		free(text);
		return EXIT_FAILED;
	}
	bool written = fwrite(text, 1, len, f) == len;
	written &= (out_path ? fclose(f) : fflush(f)) == 0;
	free(text);
	if (!written) {
		fprintf(stderr, "ballotctl gen-definition: writing %s failed\n", out_path ? out_path : "stdout");
		return EXIT_FAILED;
	}
	return EXIT_OK;
}
