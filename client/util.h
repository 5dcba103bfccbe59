/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Small helpers shared by the bal_client sources: formatting a failure reason
 * (core/reason.h under the name the client uses) and growing an array.
 * Internal to client/ (bal__ prefix). libc and core only.
 */
#ifndef BAL_CLIENT_UTIL_H
#define BAL_CLIENT_UTIL_H

#include "core/reason.h"

#include <stddef.h>

/** Formats the reason into `why` (if not NULL and whylen > 0); returns `rc`: bal_fail() with the code first. */
#define bal__failf(rc, why, whylen, ...) bal_fail((why), (whylen), (rc), __VA_ARGS__)

/**
 * Makes `*buf` hold at least `need` elements of `elem` bytes, doubling from
 * at least `min_cap`. `*buf` and `*cap` change only on success.
 * @return 0 or -ENOMEM.
 */
int bal__grow(void **buf, size_t *cap, size_t need, size_t elem, size_t min_cap);

#endif
