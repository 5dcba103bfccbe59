/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Failure reason tests: bal_fail() formats into the caller's buffer,
 * truncates like snprintf, writes nothing without a buffer, and always
 * returns the error it was given.
 */
#include "core/ballot.h"
#include "core/reason.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

Test(reason, formats_and_returns_the_error)
{
	char why[64];
	int rc = bal_fail(why, sizeof(why), BAL_EINVALID, "precinct_id %u is not in the definition", 42u);
	cr_assert_eq(rc, BAL_EINVALID);
	cr_assert_str_eq(why, "precinct_id 42 is not in the definition");
}

Test(reason, returns_any_error_unchanged)
{
	char why[8];
	cr_assert_eq(bal_fail(why, sizeof(why), 0, "ok"), 0);
	cr_assert_str_eq(why, "ok");
	cr_assert_eq(bal_fail(why, sizeof(why), -ENOMEM, "x"), -ENOMEM);
	cr_assert_eq(bal_fail(why, sizeof(why), 7, "x"), 7);
}

Test(reason, truncates_to_the_buffer)
{
	char why[8];
	memset(why, 'z', sizeof(why));
	cr_assert_eq(bal_fail(why, 6, BAL_ECORRUPT, "%s %llu", "journal", 123ULL), BAL_ECORRUPT);
	cr_assert_str_eq(why, "journ");
	cr_assert_eq(why[6], 'z', "wrote past the capacity");
}

Test(reason, writes_nothing_without_a_buffer)
{
	cr_assert_eq(bal_fail(NULL, 64, BAL_EOVERFLOW, "%d", 1), BAL_EOVERFLOW);
	char why[4] = "abc";
	cr_assert_eq(bal_fail(why, 0, BAL_EOVERFLOW, "%d", 1), BAL_EOVERFLOW);
	cr_assert_str_eq(why, "abc");
}
