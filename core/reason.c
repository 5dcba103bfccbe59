/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Failure reasons (see reason.h). libc only; allocates nothing.
 */
#include "core/reason.h"

#include <stdarg.h>
#include <stdio.h>

int bal_fail(char *why, size_t cap, int err, const char *fmt, ...)
{
	if (why && cap) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(why, cap, fmt, ap);
		va_end(ap);
	}
	return err;
}
