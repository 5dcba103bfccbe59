/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: the election definition loader (defn/defn.c). Any input
 * is either refused with a reason or yields a definition from which the
 * counter layout can be built; nothing may crash, leak or read out of bounds.
 */
#include <string.h>

#include "defn/defn.h"
#include "fuzz/fuzz_common.h"
#include "core/tally.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bal_defn *d = NULL;
	char why[256] = "";
	int err = bal_defn_parse((const char *)data, size, &d, why, sizeof(why));
	if (err) {
		FZ_CHECK(d == NULL, "failed parse (%d) left a definition", err);
		FZ_CHECK(why[0], "parse failed (%d) without a reason", err);
		return 0;
	}
	FZ_CHECK(d, "parse succeeded without a definition");
	struct bal_layout *l = bal_layout_new(d);
	if (l) {
		/* Every precinct's own contests have slots, and only those. */
		for (uint32_t p = 0; p < d->nprecincts; p++)
			for (uint32_t c = 0; c < d->ncontests; c++)
				FZ_CHECK((bal_slot_precinct_choice(l, p, c, 0) != BAL_SLOT_NONE) ==
				                 bal_defn_votes_in(d, p, c),
				         "precinct %u contest %u: slot and ballot disagree", p, c);
		bal_layout_free(l);
	}
	bal_defn_free(d);
	return 0;
}
