/*
 * Small helpers shared by the bal_client sources: formatting a failure reason
 * and growing an array. Internal to client/ (bal__ prefix). libc only.
 */
#ifndef BAL_CLIENT_UTIL_H
#define BAL_CLIENT_UTIL_H

#include <stddef.h>

/** Formats the reason into `why` (if not NULL and whylen > 0); returns `rc`. */
int bal__failf(int rc, char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/**
 * Makes `*buf` hold at least `need` elements of `elem` bytes, doubling from
 * at least `min_cap`. `*buf` and `*cap` change only on success.
 * @return 0 or -ENOMEM.
 */
int bal__grow(void **buf, size_t *cap, size_t need, size_t elem, size_t min_cap);

#endif
