/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Command-line helpers shared by the client programs (ballotctl,
 * ballot-bench): number options whose errors name the flag, the value and the
 * accepted range; the --server address (client/http.h's grammar); finding a
 * data file given relative to the source tree; and thousands separators.
 * libc and client/http.h only; messages go to stderr prefixed by `prog`.
 */
#ifndef BAL_CLIENT_CLI_H
#define BAL_CLIENT_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Parses an unsigned decimal in [min, max]; on error prints
 * "PROG: FLAG "TEXT": expected a whole number from MIN to MAX" and returns false. */
bool bal_cli_u64(const char *prog, const char *flag, const char *text, uint64_t min, uint64_t max, uint64_t *out);
bool bal_cli_u32(const char *prog, const char *flag, const char *text, uint32_t min, uint32_t max, uint32_t *out);
/** Parses a number in [min, max] (strtod syntax); errors as bal_cli_u64(). */
bool bal_cli_double(const char *prog, const char *flag, const char *text, double min, double max, double *out);

/**
 * Reads a --server value with bal_http_server(): HOST:PORT, [v6addr]:PORT or
 * http://HOST:PORT[/]. Writes HOST:PORT to `out` (BAL_HTTP_SERVER_MAX bytes
 * are enough); on error prints one line, "PROG: --server "TEXT": WHAT", and
 * returns false (https:// is refused: no TLS in this build).
 */
bool bal_cli_server(const char *prog, const char *text, char *out, size_t outlen);

/**
 * Reports a getopt_long() failure ('?', with opterr 0 so getopt printed
 * nothing) as one line: "PROG: unknown or ambiguous option --X", "PROG:
 * option --X needs a value" or "... takes no value", each with "(see
 * --help)". Reads optind and optopt: call it right after getopt_long().
 */
void bal_cli_bad_option(const char *prog, char **argv);

/**
 * Finds a readable file: `path` as given, else (when relative) under `srcdir`.
 * Writes the path that exists to `out` and returns true; false after printing
 * "PROG: FLAG PATH: cannot read it (...), nor SRCDIR/PATH (...)".
 */
bool bal_cli_find_file(const char *prog, const char *flag, const char *path, const char *srcdir, char *out,
                       size_t outlen);

/** "1,234,567" into buf; returns buf. */
const char *bal_cli_count(uint64_t v, char buf[32]);

#endif
