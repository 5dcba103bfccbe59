/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ThreadSanitizer driver for the seqlock: runs pub_stress() from a plain
 * main(), because Criterion cannot start under TSan (Snaipe/Criterion#274).
 * Built and registered only when CMAKE_C_FLAGS carry -fsanitize=thread.
 */
#include "defn/defn.h"
#include "tests/unit/core/fixture.h"
#include "tests/unit/core/pub_stress.h"

#include <stdio.h>

int main(void)
{
	struct bal_defn *d;
	struct bal_layout *l;
	char why[256] = "";
	fx_load(&d, &l);
	int ret = pub_stress(d, l, 2, 20000, why, sizeof(why));
	if (ret)
		fprintf(stderr, "pub_stress: %s\n", why);
	else
		printf("pub_stress: 20000 batches, 2 readers, every view consistent\n");
	bal_layout_free(l);
	bal_defn_free(d);
	return ret ? 1 : 0;
}
