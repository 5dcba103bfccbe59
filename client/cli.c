/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Command-line helpers (see cli.h). libc and client/http.h only.
 */
#include "client/cli.h"

#include "client/http.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool bal_cli_u64(const char *prog, const char *flag, const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(text, &end, 10);
	if (errno || end == text || *end || text[0] == '-' || v < min || v > max) {
		fprintf(stderr, "%s: %s \"%s\": expected a whole number from %llu to %llu\n", prog, flag, text,
		        (unsigned long long)min, (unsigned long long)max);
		return false;
	}
	*out = v;
	return true;
}

bool bal_cli_u32(const char *prog, const char *flag, const char *text, uint32_t min, uint32_t max, uint32_t *out)
{
	uint64_t v;
	if (!bal_cli_u64(prog, flag, text, min, max, &v))
		return false;
	*out = (uint32_t)v;
	return true;
}

bool bal_cli_double(const char *prog, const char *flag, const char *text, double min, double max, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(text, &end);
	if (errno || end == text || *end || !(v >= min && v <= max)) {
		fprintf(stderr, "%s: %s \"%s\": expected a number from %g to %g\n", prog, flag, text, min, max);
		return false;
	}
	*out = v;
	return true;
}

bool bal_cli_server(const char *prog, const char *text, char *out, size_t outlen)
{
	char why[BAL_HTTP_SERVER_MAX + 160];
	if (bal_http_server(text, out, outlen, why, sizeof(why)) < 0) {
		fprintf(stderr, "%s: --%s\n", prog, why);
		return false;
	}
	return true;
}

void bal_cli_bad_option(const char *prog, char **argv)
{
	const char *arg = optind > 0 ? argv[optind - 1] : "";
	const char *eq = strchr(arg, '=');
	/* getopt_long sets optopt to the option's value when the option exists
	 * but its value is missing or not allowed, and to 0 when it is unknown. */
	if (optopt && strncmp(arg, "--", 2) == 0 && eq)
		fprintf(stderr, "%s: option %.*s takes no value (see --help)\n", prog, (int)(eq - arg), arg);
	else if (optopt && strncmp(arg, "--", 2) == 0)
		fprintf(stderr, "%s: option %s needs a value (see --help)\n", prog, arg);
	else if (optopt)
		fprintf(stderr, "%s: unknown option -%c (see --help)\n", prog, optopt);
	else
		fprintf(stderr, "%s: unknown or ambiguous option %s (see --help)\n", prog, arg);
}

bool bal_cli_find_file(const char *prog, const char *flag, const char *path, const char *srcdir, char *out,
                       size_t outlen)
{
	if (access(path, R_OK) == 0) {
		snprintf(out, outlen, "%s", path);
		return true;
	}
	int err = errno;
	if (path[0] != '/' && srcdir) {
		char alt[PATH_MAX];
		snprintf(alt, sizeof(alt), "%s/%s", srcdir, path);
		if (access(alt, R_OK) == 0) {
			snprintf(out, outlen, "%s", alt);
			return true;
		}
		fprintf(stderr, "%s: %s %s: cannot read it (%s), nor %s (%s)\n", prog, flag, path, strerror(err), alt,
		        strerror(errno));
		return false;
	}
	fprintf(stderr, "%s: %s %s: cannot read it (%s)\n", prog, flag, path, strerror(err));
	return false;
}

const char *bal_cli_count(uint64_t v, char buf[32])
{
	char digits[24];
	int n = snprintf(digits, sizeof(digits), "%llu", (unsigned long long)v);
	int o = 0;
	for (int i = 0; i < n; i++) {
		if (i && (n - i) % 3 == 0)
			buf[o++] = ',';
		buf[o++] = digits[i];
	}
	buf[o] = '\0';
	return buf;
}
