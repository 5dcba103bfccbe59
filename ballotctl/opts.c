/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Option parsing helpers shared by the ballotctl subcommands: every error
 * names the flag, the value and the accepted range. The parsing itself is
 * client/cli.c's, shared with ballot-bench.
 */
#include "ballotctl/ballotctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/cli.h"
#include "client/http.h"
#include "client/logcheck.h"
#include "defn/defn.h"

bool opt_u64(const char *flag, const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
	return bal_cli_u64("ballotctl", flag, text, min, max, out);
}

bool opt_u32(const char *flag, const char *text, uint32_t min, uint32_t max, uint32_t *out)
{
	return bal_cli_u32("ballotctl", flag, text, min, max, out);
}

bool opt_double(const char *flag, const char *text, double min, double max, double *out)
{
	return bal_cli_double("ballotctl", flag, text, min, max, out);
}

bool opt_duration(const char *flag, const char *text, double min_s, double max_s, double *out_s)
{
	static const struct {
		const char *unit;
		double secs;
	} units[] = {{"", 1}, {"ms", 0.001}, {"s", 1}, {"m", 60}, {"h", 3600}};
	char *end;
	errno = 0;
	double v = strtod(text, &end);
	for (size_t i = 0; !errno && end != text && i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].unit) == 0 && v * units[i].secs >= min_s && v * units[i].secs <= max_s) {
			*out_s = v * units[i].secs;
			return true;
		}
	}
	fprintf(stderr, "ballotctl: %s \"%s\": expected a duration from %gs to %gs (a number with ms, s, m or h)\n",
	        flag, text, min_s, max_s);
	return false;
}

bool opt_server(const char *cmd, const char *text, char *out, size_t outlen)
{
	char prog[64];
	snprintf(prog, sizeof(prog), "ballotctl %s", cmd);
	return bal_cli_server(prog, text, out, outlen);
}

bool opt_server_key(const char *cmd, const char *text, struct log_trust *t)
{
	char why[600];
	if (bal_logcheck_key_parse(text, t->key, why, sizeof(why)) < 0) {
		fprintf(stderr, "ballotctl %s: --server-key %s\n", cmd, why);
		return false;
	}
	bal_logcheck_hex(t->key, sizeof(t->key), t->key_hex);
	return true;
}

bool definition_election_id(const char *cmd, const char *path, char *id, size_t idlen)
{
	char found[4096], why[512];
	if (!find_definition(path, found, sizeof(found)))
		return false;
	struct bal_defn *d;
	if (bal_defn_load(found, &d, why, sizeof(why)) < 0) {
		fprintf(stderr, "ballotctl %s: --definition %s: %s\n", cmd, found, why);
		return false;
	}
	bool ok = strlen(d->election_id) < idlen && strlen(d->election_id) <= BAL_LOGCHECK_ID_MAX;
	if (ok)
		snprintf(id, idlen, "%s", d->election_id);
	else
		fprintf(stderr, "ballotctl %s: --definition %s: election id longer than %d bytes\n", cmd, found,
		        BAL_LOGCHECK_ID_MAX);
	bal_defn_free(d);
	return ok;
}

bool opt_no_operands(const char *cmd, int argc, char **argv)
{
	if (optind >= argc)
		return true;
	fprintf(stderr, "ballotctl %s: unexpected argument \"%s\" (options start with --; see --help)\n", cmd,
	        argv[optind]);
	return false;
}

void opt_bad(const char *cmd, char **argv)
{
	char prog[64];
	snprintf(prog, sizeof(prog), "ballotctl %s", cmd);
	bal_cli_bad_option(prog, argv);
}

bool find_definition(const char *path, char *out, size_t outlen)
{
	return bal_cli_find_file("ballotctl", "--definition", path, BALLOTCTL_SOURCE_DIR, out, outlen);
}

const char *fmt_count(uint64_t v, char buf[32])
{
	return bal_cli_count(v, buf);
}
