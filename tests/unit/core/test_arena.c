/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Arena tests: 16-byte alignment, growth past a block keeps earlier data,
 * the limit is enforced, and once warm a request/reset cycle calls malloc
 * zero times. malloc is counted through the linker (-Wl,--wrap=malloc), which
 * reroutes the arena's calls in the static bal_core archive to __wrap_malloc.
 */
#include "core/ballot.h"

#include "tests/common/params.h"

#include <stdint.h>
#include <string.h>

void *__real_malloc(size_t n);
void *__wrap_malloc(size_t n);

static size_t mallocs;

void *__wrap_malloc(size_t n)
{
	mallocs++;
	return __real_malloc(n);
}

static const size_t sizes[] = {0, 1, 7, 15, 16, 17, 33, 100, 4095, 4096, 5000, 70000};

INDEX_PARAMS(arena, alignment, sizes)

ParameterizedTest(size_t *ix, arena, alignment)
{
	const size_t *size = &sizes[*ix];
	struct bal_arena a;
	bal_arena_init(&a, 0);
	for (int i = 0; i < 50; i++) {
		uint8_t *p = bal_arena_alloc(&a, *size);
		cr_assert_not_null(p);
		cr_assert_eq((uintptr_t)p % 16, 0, "size %zu, allocation %d: %p", *size, i, (void *)p);
		memset(p, 0x5a, *size);
	}
	bal_arena_deinit(&a);
}

Test(arena, growth_keeps_earlier_allocations)
{
	struct bal_arena a;
	bal_arena_init(&a, 0);
	uint32_t *blocks[200];
	/* 200 x 1000 bytes spans several blocks of the 4 KiB-and-doubling chain. */
	for (uint32_t i = 0; i < NELEM(blocks); i++) {
		blocks[i] = bal_arena_alloc(&a, 250 * sizeof(uint32_t));
		cr_assert_not_null(blocks[i]);
		for (uint32_t j = 0; j < 250; j++)
			blocks[i][j] = i * 1000 + j;
	}
	for (uint32_t i = 0; i < NELEM(blocks); i++)
		for (uint32_t j = 0; j < 250; j++)
			cr_assert_eq(blocks[i][j], i * 1000 + j, "allocation %u word %u overwritten", i, j);
	cr_assert_eq(a.total, 200 * 1008, "1000 bytes round up to 1008");
	cr_assert_eq(a.high_water, a.total);
	bal_arena_deinit(&a);
	cr_assert_null(a.head);
}

Test(arena, limit_refuses_past_it)
{
	struct bal_arena a;
	bal_arena_init(&a, 1024);
	cr_assert_not_null(bal_arena_alloc(&a, 1000));
	cr_assert_null(bal_arena_alloc(&a, 32), "1008 + 32 exceeds the 1024-byte limit");
	cr_assert_not_null(bal_arena_alloc(&a, 16));
	cr_assert_null(bal_arena_alloc(&a, SIZE_MAX), "size overflow is refused");
	bal_arena_reset(&a);
	cr_assert_eq(a.total, 0);
	cr_assert_not_null(bal_arena_alloc(&a, 1024));
	bal_arena_deinit(&a);
}

Test(arena, unlimited_refuses_size_overflow)
{
	struct bal_arena a;
	bal_arena_init(&a, 0);
	cr_assert_null(bal_arena_alloc(&a, SIZE_MAX - 3), "rounding up wraps");
	/* Rounds without wrapping, but header + size would wrap to a tiny block. */
	cr_assert_null(bal_arena_alloc(&a, SIZE_MAX - 40));
	cr_assert_not_null(bal_arena_alloc(&a, 64), "the arena still works afterwards");
	bal_arena_deinit(&a);
}

/* One "request": many small allocations totalling about `bytes`. */
static void request(struct bal_arena *a, size_t bytes)
{
	for (size_t used = 0; used < bytes; used += 96) {
		void *p = bal_arena_alloc(a, 96);
		cr_assert_not_null(p);
		memset(p, 1, 96);
	}
}

Test(arena, steady_state_does_not_malloc)
{
	struct bal_arena a;
	bal_arena_init(&a, 0);
	/* Warm-up: a request bigger than the first block grows a chain... */
	request(&a, 50000);
	cr_assert_gt(mallocs, 1);
	bal_arena_reset(&a);
	/* ...which reset replaces with one block sized to the high water mark. */
	cr_assert_eq(a.total, 0);
	cr_assert_geq(a.high_water, 50000);
	size_t before = mallocs;
	for (int i = 0; i < 100; i++) {
		request(&a, 1000 + (size_t)(i % 7) * 7000); /* all at or below the high water */
		bal_arena_reset(&a);
	}
	cr_assert_eq(mallocs, before, "%zu mallocs in steady state", mallocs - before);
	bal_arena_deinit(&a);
}

Test(arena, reset_on_empty_and_deinit_on_zeroed_are_safe)
{
	struct bal_arena a;
	bal_arena_init(&a, 0);
	bal_arena_reset(&a);
	cr_assert_null(a.head);
	bal_arena_deinit(&a);
	struct bal_arena z = {0};
	bal_arena_deinit(&z);
}
