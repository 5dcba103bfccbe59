/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ballotctl: the command-line client of ballotd. This file only dispatches to
 * the subcommands and documents them; each lives in its own file. The tool
 * talks to the daemon over HTTP only and shares no counting code with it.
 */
#include "ballotctl/ballotctl.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char usage[] =
        "usage: ballotctl COMMAND [OPTIONS]   (ballotctl COMMAND --help for details)\n"
        "       ballotctl --version\n"
        "\n"
        "commands:\n"
        "  gen-definition  write a synthetic election definition (JSON) with demo keys\n"
        "  push            generate signed batches and upload them to ballotd, pipelined\n"
        "  snapshot        print the daemon's current totals and seats (GET /v1/snapshot, /v1/seats)\n"
        "  spool-batches   write generated signed batches into an upload spool directory\n"
        "  upload          deliver a spool directory's batch files exactly once, retrying;\n"
        "                  delete each only after a receipt that verifies under the log key\n"
        "  audit           export the journal (GET /v1/journal), verify every signature and\n"
        "                  recompute every total independently, compare with the snapshot;\n"
        "                  recompute the log's Merkle root and check it against a signed head\n"
        "  keygen          make the log key pair (ballotd --log-key; --server-key for clients)\n"
        "  verify-receipt  check kept receipts: signature, inclusion, and consistency with the\n"
        "                  log's latest signed head\n"
        "  monitor         watch the log's signed heads for forks and rollbacks; compare the\n"
        "                  heads two monitors saw (--compare)\n"
        "  amend           the commission's signed amendment: revoke or set a precinct's key,\n"
        "                  void a batch, freeze a precinct, certify the results at a position\n"
        "\n"
        "exit status: 0 success; 1 the operation failed (push: some batch was not\n"
        "acknowledged as ACCEPTED or DUPLICATE; upload --once: some file was rejected;\n"
        "audit: a signature, a record, a total or the log's root does not check out;\n"
        "verify-receipt: a receipt does not verify; amend: refused, or its receipt does not\n"
        "verify); 2 bad command line; 3 (monitor) the\n"
        "log showed a fork or a rollback.\n"
        "\n"
        "push --json prints one JSON object on stdout; its keys are stable:\n"
        "  {\"server\": \"HOST:PORT\", \"definition\": PATH, \"election_id\": STR,\n"
        "   \"kind\": \"ballots\"|\"tally\"|\"protocol\", \"seed\": N, \"key_seed\": N, \"batch_size\": N,\n"
        "   \"precincts\": N (precincts used), \"seq_start\": N, \"seq_end\": N (last seq sent),\n"
        "   \"batches\": N (sent), \"accepted\": N, \"duplicate\": N, \"rejected\": N,\n"
        "   \"errors\": N (no answer), \"acknowledged\": N (accepted + duplicate),\n"
        "   \"sends\": N (resends included), \"reconnects\": N, \"expect_errors\": N,\n"
        "   \"elapsed_s\": X, \"batches_per_s\": X (0 when nothing was acknowledged),\n"
        "   \"latency_ms\": {\"p50\": X, \"p90\": X, \"p99\": X, \"max\": X} (last send to answer,\n"
        "                  acknowledged batches),\n"
        "   \"first_error\": STR|null,\n"
        "   \"failures\": [{\"precinct_id\": N, \"seq\": N, \"state\": \"rejected\"|\"error\",\n"
        "                 \"http_status\": N, \"error\": STR}] (at most 20),\n"
        "   \"expected\": {                       totals of the acknowledged batches\n"
        "      \"batches\": N, \"ballots\": N, \"precincts_reporting\": N,\n"
        "      \"precincts_with_protocol\": N, \"precincts_with_discrepancy\": N,\n"
        "      \"turnout\": {\"batches\", \"ballots\", \"issued\", \"cast\", \"spoiled\"},\n"
        "      \"contests\": [{\"id\": CONTEST_ID, \"total_votes\": N,\n"
        "                    \"votes\": [N per choice index],\n"
        "                    \"districts\": [{\"id\": DISTRICT_ID, \"votes\": [N per choice index]}]}]}}\n"
        "  \"expected\" lists every contest in definition order and, per contest, every\n"
        "  district it covers (all for a national contest), zeros included. A DUPLICATE\n"
        "  counts in \"expected\": it was counted once, earlier.\n";

int main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
		fputs(usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : EXIT_OK;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "--version") == 0) {
		printf("ballotctl %s\n", BAL_VERSION);
		return EXIT_OK;
	}
	opterr = 0; /* each command reports a bad option itself, on one line (opt_bad()) */
	if (strcmp(cmd, "gen-definition") == 0)
		return cmd_gen_definition(argc - 1, argv + 1);
	if (strcmp(cmd, "push") == 0)
		return cmd_push(argc - 1, argv + 1);
	if (strcmp(cmd, "snapshot") == 0)
		return cmd_snapshot(argc - 1, argv + 1);
	if (strcmp(cmd, "spool-batches") == 0)
		return cmd_spool_batches(argc - 1, argv + 1);
	if (strcmp(cmd, "upload") == 0)
		return cmd_upload(argc - 1, argv + 1);
	if (strcmp(cmd, "audit") == 0)
		return cmd_audit(argc - 1, argv + 1);
	if (strcmp(cmd, "keygen") == 0)
		return cmd_keygen(argc - 1, argv + 1);
	if (strcmp(cmd, "verify-receipt") == 0)
		return cmd_verify_receipt(argc - 1, argv + 1);
	if (strcmp(cmd, "monitor") == 0)
		return cmd_monitor(argc - 1, argv + 1);
	if (strcmp(cmd, "amend") == 0)
		return cmd_amend(argc - 1, argv + 1);
	fprintf(stderr,
	        "ballotctl: unknown command \"%s\" (gen-definition, push, snapshot, spool-batches, upload, audit, "
	        "keygen, verify-receipt, monitor, amend)\n",
	        cmd);
	return EXIT_USAGE;
}
