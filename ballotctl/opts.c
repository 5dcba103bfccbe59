/*
 * Option parsing helpers shared by the ballotctl subcommands: every error
 * names the flag, the value and the accepted range. The parsing itself is
 * client/cli.c's, shared with ballot-bench.
 */
#include "ballotctl/ballotctl.h"

#include <stdio.h>
#include <unistd.h>

#include "client/cli.h"

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

bool opt_no_operands(const char *cmd, int argc, char **argv)
{
	if (optind >= argc)
		return true;
	fprintf(stderr, "ballotctl %s: unexpected argument \"%s\" (options start with --; see --help)\n", cmd,
	        argv[optind]);
	return false;
}

bool find_definition(const char *path, char *out, size_t outlen)
{
	return bal_cli_find_file("ballotctl", "--definition", path, BALLOTCTL_SOURCE_DIR, out, outlen);
}

const char *fmt_count(uint64_t v, char buf[32])
{
	return bal_cli_count(v, buf);
}
