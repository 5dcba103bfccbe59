/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Text of the answers built on the I/O threads: a growable buffer (queries,
 * /metrics), whose allocation failure is sticky (once `oom` is set every
 * later append does nothing, and the caller answers 503 instead), and the
 * one JSON string writer every JSON answer uses (acks, stream errors,
 * queries).
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
 *   free or hand on, unless `fixed`: then `p` is the caller's buffer of
 *   `cap` bytes, never grown (bal_text_fixed());
 * - `oom` is set once and then nothing more is appended.
 */
struct bal_text {
	char *p;
	size_t n, cap;
	bool oom;
	bool fixed;
};

/** Text written into `buf` (`cap` bytes, the caller's): what does not fit sets `oom`. */
static inline struct bal_text bal_text_fixed(char *buf, size_t cap)
{
	return (struct bal_text){.p = buf, .cap = cap, .fixed = true};
}

/** Makes room for more than `more` further bytes (sets `oom` if it cannot). */
void bal_text_reserve(struct bal_text *b, size_t more);

/** Appends printf-style. */
void bal_text_printf(struct bal_text *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Appends `s` as a JSON string literal, quotes included (see bal_text_json_escape()). */
void bal_text_json(struct bal_text *b, const char *s);

/**
 * Writes the inside of a JSON string literal for `s` (no quotes) into
 * `out`: `"` and `\` get a backslash, control characters become \u00XX,
 * every other byte is copied (UTF-8 passes through). Allocates nothing. If
 * `s` does not fit, it is cut before the first character whose escape would
 * not, never inside an escape.
 * @param cap  bytes at `out`, at least 1; the result is NUL-terminated.
 * @return its length (without the NUL).
 */
size_t bal_text_json_escape(char *out, size_t cap, const char *s);

#endif
