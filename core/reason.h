/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Failure reasons: a printf-style line formatted into the caller's buffer
 * beside the error code that is returned. Every module that reports why a
 * call failed (validation, decoding, storage, the definition loader, the
 * client) formats through here. libc only.
 */
#ifndef BAL_CORE_REASON_H
#define BAL_CORE_REASON_H

#include <stddef.h>

/**
 * Formats `fmt` into `why` (at most `cap` bytes, NUL included, truncated like
 * snprintf) and returns `err`, so that a failure and its reason are one
 * statement: `return bal_fail(why, whylen, BAL_EINVALID, "seq %llu", s);`.
 * @param why  the caller's buffer; with `why` NULL or `cap` 0 nothing is written
 * @param cap  size of `why` in bytes
 * @param err  returned unchanged, whatever its value (0 included)
 * @param fmt  printf format, checked by the compiler
 * @return `err`
 */
int bal_fail(char *why, size_t cap, int err, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
