/*
 * A growable text buffer for the answers built on the I/O threads (queries,
 * /metrics). Allocation failure is sticky: once `oom` is set every later
 * append does nothing, and the caller answers 503 instead.
 *
 * Threads: any; a buffer belongs to the thread building it.
 */
#ifndef BAL_DAEMON_TEXT_H
#define BAL_DAEMON_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/**
 * Text being built; zero-initialised it is empty.
 * - `p[0..n)` is the text (bal_text_printf() also leaves a NUL after it);
 * - `n < cap` once anything was reserved; `p` is malloc'd, the caller's to
 *   free or hand on;
 * - `oom` is set once and then nothing more is appended.
 */
struct bal_text {
	char *p;
	size_t n, cap;
	bool oom;
};

/** Makes room for more than `more` further bytes (sets `oom` if it cannot). */
void bal_text_reserve(struct bal_text *b, size_t more);

/** Appends printf-style. */
void bal_text_printf(struct bal_text *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
