/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Seqlock tests: single-threaded store/apply/read, and the threaded stress
 * run (pub_stress.c) where readers check every view they copy while a writer
 * applies deltas. tsan_pub.c runs the same stress under ThreadSanitizer.
 */
#include "defn/defn.h"
#include "tests/unit/core/fixture.h"
#include "tests/unit/core/pub_stress.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static struct bal_defn *D;
static struct bal_layout *L;

static void setup(void)
{
	fx_load(&D, &L);
}

static void teardown(void)
{
	bal_layout_free(L);
	bal_defn_free(D);
}

Test(pub, starts_zeroed, .init = setup, .fini = teardown)
{
	struct bal_published pub;
	size_t n = bal_layout_nslots(L);
	cr_assert_eq(bal_pub_init(&pub, n), 0);
	uint64_t *view = malloc(n * sizeof(*view));
	memset(view, 0xab, n * sizeof(*view));
	cr_assert_eq(bal_pub_read(&pub, view), 0);
	for (size_t s = 0; s < n; s++)
		cr_assert_eq(view[s], 0);
	free(view);
	bal_pub_deinit(&pub);
	bal_pub_deinit(&pub); /* safe twice */
}

Test(pub, store_then_apply_is_what_readers_see, .init = setup, .fini = teardown)
{
	struct bal_published pub;
	size_t n = bal_layout_nslots(L);
	cr_assert_eq(bal_pub_init(&pub, n), 0);
	uint64_t *ctr = calloc(n, sizeof(*ctr));
	uint64_t *view = calloc(n, sizeof(*view));
	uint64_t rs = 7;
	struct bal_delta_entry e[3][32];
	struct bal_delta dl[3];
	const struct bal_delta *dp[3];

	/* Recovery hands over a whole array... */
	for (uint32_t i = 0; i < 2; i++) {
		dl[i] = (struct bal_delta){.cap = 32, .e = e[i]};
		pub_fold_random(D, L, &rs, i, &dl[i]);
		bal_tally_apply(L, ctr, &dl[i]);
	}
	bal_pub_store(&pub, ctr, 2);
	cr_assert_eq(bal_pub_read(&pub, view), 2);
	cr_assert_eq(memcmp(view, ctr, n * sizeof(*ctr)), 0);

	/* ...then the committer applies groups of deltas as one write. */
	for (uint32_t i = 0; i < 3; i++) {
		dl[i] = (struct bal_delta){.cap = 32, .e = e[i]};
		pub_fold_random(D, L, &rs, i + 2, &dl[i]);
		bal_tally_apply(L, ctr, &dl[i]);
		dp[i] = &dl[i];
	}
	bal_pub_apply(&pub, L, dp, 3, 5);
	cr_assert_eq(bal_pub_read(&pub, view), 5);
	cr_assert_eq(memcmp(view, ctr, n * sizeof(*ctr)), 0);
	cr_assert_eq(view[bal_slot_global(L, BAL_G_BATCHES)], 5);
	free(view);
	free(ctr);
	bal_pub_deinit(&pub);
}

Test(pub, readers_see_only_whole_batches, .init = setup, .fini = teardown, .timeout = 20)
{
	char why[256] = "";
	cr_assert_eq(pub_stress(D, L, 2, 20000, why, sizeof(why)), 0, "%s", why);
}
