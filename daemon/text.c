/*
 * The growable text buffer (see text.h).
 */
#include "daemon/text.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void bal_text_reserve(struct bal_text *b, size_t more)
{
	if (b->oom || b->n + more < b->cap)
		return;
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
