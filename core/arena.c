/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Bump allocator for per-request decoding. libc only.
 *
 * Blocks form a chain; allocation bumps within the newest block and adds a
 * larger block when it does not fit. Reset frees all but the newest block and,
 * if the request needed more than that block holds, replaces it with one sized
 * to the high water mark, so that once warm a request fits in a single block
 * and reset never calls malloc or free.
 */
#include "core/ballot.h"

#include <stdint.h>
#include <stdlib.h>

#define ARENA_ALIGN     16
#define ARENA_MIN_BLOCK 4096

struct bal_arena_block {
	struct bal_arena_block *prev;
	size_t cap;  /* usable bytes after the header */
	size_t used; /* used <= cap */
	             /* data follows, ARENA_ALIGN-aligned */
};

static size_t header_size(void)
{
	return (sizeof(struct bal_arena_block) + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
}

static struct bal_arena_block *block_new(size_t cap, struct bal_arena_block *prev)
{
	if (cap > SIZE_MAX - header_size())
		return NULL; /* header + cap would wrap to a tiny block */
	struct bal_arena_block *b = malloc(header_size() + cap);
	if (!b)
		return NULL;
	b->prev = prev;
	b->cap = cap;
	b->used = 0;
	return b;
}

void bal_arena_init(struct bal_arena *a, size_t limit)
{
	a->head = NULL;
	a->total = 0;
	a->high_water = 0;
	a->limit = limit;
}

void bal_arena_deinit(struct bal_arena *a)
{
	struct bal_arena_block *b = a->head;
	while (b) {
		struct bal_arena_block *prev = b->prev;
		free(b);
		b = prev;
	}
	a->head = NULL;
	a->total = 0;
	a->high_water = 0;
}

void *bal_arena_alloc(struct bal_arena *a, size_t n)
{
	size_t need = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
	if (need < n)
		return NULL;
	if (a->limit && (a->total + need > a->limit || a->total + need < a->total))
		return NULL;
	struct bal_arena_block *b = a->head;
	if (!b || b->cap - b->used < need) {
		size_t cap = !b ? ARENA_MIN_BLOCK : b->cap > SIZE_MAX / 2 ? SIZE_MAX : b->cap * 2;
		if (cap < need)
			cap = need;
		if (cap < a->high_water)
			cap = a->high_water;
		b = block_new(cap, a->head);
		if (!b)
			return NULL;
		a->head = b;
	}
	void *p = (char *)b + header_size() + b->used;
	b->used += need;
	a->total += need;
	if (a->total > a->high_water)
		a->high_water = a->total;
	return p;
}

void bal_arena_reset(struct bal_arena *a)
{
	struct bal_arena_block *b = a->head;
	if (!b)
		return;
	if (b->prev) {
		/* More than one block was needed: keep one big enough next time. */
		size_t hw = a->high_water;
		bal_arena_deinit(a);
		a->high_water = hw;
		a->head = block_new(hw < ARENA_MIN_BLOCK ? ARENA_MIN_BLOCK : hw, NULL);
		return;
	}
	b->used = 0;
	a->total = 0;
}
