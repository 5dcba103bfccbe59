/*
 * ballotctl internals: the subcommands and the option helpers they share.
 * The tool talks to ballotd only over HTTP (client/); it shares no counting
 * code with the daemon.
 */
#ifndef BALLOTCTL_H
#define BALLOTCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Exit codes: 0 success; 1 the operation failed (e.g. a batch was not
 * acknowledged, the server is unreachable); 2 bad command line. */
enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

int cmd_gen_definition(int argc, char **argv);
int cmd_push(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);

/** Parses an unsigned decimal number of `flag` in [min, max]; on error prints
 * "ballotctl: --flag VALUE: ..." to stderr and returns false. */
bool opt_u64(const char *flag, const char *text, uint64_t min, uint64_t max, uint64_t *out);
bool opt_u32(const char *flag, const char *text, uint32_t min, uint32_t max, uint32_t *out);
bool opt_double(const char *flag, const char *text, double min, double max, double *out);

/** After getopt_long(): true iff no operands are left; else prints
 * "ballotctl CMD: unexpected argument ..." and returns false. */
bool opt_no_operands(const char *cmd, int argc, char **argv);

/**
 * Finds a definition file: `path` as given, else (when relative) under the
 * source tree ballotctl was built from. Writes the path that exists to `out`
 * and returns true; false (and prints both tries) when neither exists.
 */
bool find_definition(const char *path, char *out, size_t outlen);

/** "1,234,567" */
const char *fmt_count(uint64_t v, char buf[32]);

#endif
