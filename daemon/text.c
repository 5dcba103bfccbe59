/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The growable text buffer (see text.h).
 */
#include "daemon/text.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void bal_text_reserve(struct bal_text *b, size_t more)
{
	if (b->oom || b->n + more < b->cap)
		return;
	if (b->fixed) {
		b->oom = true;
		return;
	}
	size_t cap = b->cap ? b->cap : 4096;
	while (cap <= b->n + more)
		cap *= 2;
	char *np = realloc(b->p, cap);
	if (!np) {
		b->oom = true;
		return;
	}
	b->p = np;
	b->cap = cap;
}

void bal_text_printf(struct bal_text *b, const char *fmt, ...)
{
	/* One formatting pass when the text fits what is left, a second after growing. */
	bal_text_reserve(b, 256);
	if (b->oom)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= b->cap - b->n) {
		bal_text_reserve(b, (size_t)n + 1);
		if (b->oom)
			return;
		va_start(ap, fmt);
		vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
		va_end(ap);
	}
	b->n += (size_t)n;
}

void bal_text_json(struct bal_text *b, const char *s)
{
	/* Room for the longest escape of every byte: the escape below is never cut. */
	bal_text_reserve(b, strlen(s) * 6 + 3);
	if (b->oom)
		return;
	b->p[b->n++] = '"';
	b->n += bal_text_json_escape(b->p + b->n, b->cap - b->n, s);
	b->p[b->n++] = '"';
	b->p[b->n] = '\0';
}

size_t bal_text_json_escape(char *out, size_t cap, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0;
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		size_t len = ch == '"' || ch == '\\' ? 2 : ch < 0x20 ? 6 : 1;
		if (n + len >= cap)
			break;
		if (len == 1) {
			out[n] = (char)ch;
		} else if (len == 2) {
			out[n] = '\\';
			out[n + 1] = (char)ch;
		} else {
			memcpy(out + n, "\\u00", 4);
			out[n + 4] = hex[ch >> 4];
			out[n + 5] = hex[ch & 15];
		}
		n += len;
	}
	out[n] = '\0';
	return n;
}
