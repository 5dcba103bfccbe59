/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers shared by the bal_client sources (see util.h). libc only.
 */
#include "client/util.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

int bal__grow(void **buf, size_t *cap, size_t need, size_t elem, size_t min_cap)
{
	if (need <= *cap)
		return 0;
	size_t n = *cap > min_cap ? *cap : min_cap;
	while (n < need) {
		if (n > SIZE_MAX / 2)
			return -ENOMEM;
		n *= 2;
	}
	if (n > SIZE_MAX / elem)
		return -ENOMEM;
	void *nb = realloc(*buf, n * elem);
	if (!nb)
		return -ENOMEM;
	*buf = nb;
	*cap = n;
	return 0;
}
