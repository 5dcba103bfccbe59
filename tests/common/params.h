/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Table-driven Criterion tests. Criterion runs each test in a re-executed
 * worker, so parameters must not hold pointers into the runner's static data
 * (addresses differ under ASLR). Tables stay file-scope `static const` arrays
 * and the parameters are their indices.
 */
#ifndef BAL_TEST_COMMON_PARAMS_H
#define BAL_TEST_COMMON_PARAMS_H

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stddef.h>

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Parameters 0 .. NELEM(table) - 1 for ParameterizedTest(size_t *i, suite, name). */
#define INDEX_PARAMS(suite, name, table)                               \
	ParameterizedTestParameters(suite, name)                       \
	{                                                              \
		static size_t idx[NELEM(table)];                       \
		for (size_t i = 0; i < NELEM(table); i++)              \
			idx[i] = i;                                    \
		return cr_make_param_array(size_t, idx, NELEM(table)); \
	}

#endif
