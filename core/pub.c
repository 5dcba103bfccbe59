/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Published counters: a seqlock with one writer (the committer) and any
 * number of readers. libc only.
 *
 * Writer: bump `seq` to odd, release fence, relaxed atomic stores to
 * `position` and the slots, then bump `seq` to even with release semantics.
 * Reader: load `seq` (acquire), copy everything with relaxed atomic loads,
 * acquire fence, reload `seq`; retry if it was odd or changed. Every access to
 * the shared words is atomic, so there is no data race for ThreadSanitizer to
 * report, and the fences order the copy against the two `seq` loads.
 * Readers never block the writer; a reader may retry while writes keep coming.
 */
#include "core/tally.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>

/*
 * ThreadSanitizer does not model standalone fences and GCC warns about them
 * (-Wtsan). Every shared word here is accessed atomically, so TSan has no
 * race to miss; the fences are for the compiler and the CPU.
 */
#if defined(__SANITIZE_THREAD__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wtsan"
#endif

/* After this many torn copies in a row, a reader yields before retrying. */
#define PUB_SPINS_BEFORE_YIELD 4

int bal_pub_init(struct bal_published *p, size_t n)
{
	p->seq = 0;
	p->position = 0;
	p->n = n;
	p->ctr = calloc(n ? n : 1, sizeof(*p->ctr));
	if (!p->ctr) {
		p->n = 0;
		return -ENOMEM;
	}
	return 0;
}

void bal_pub_deinit(struct bal_published *p)
{
	free(p->ctr);
	p->ctr = NULL;
	p->n = 0;
	p->seq = 0;
	p->position = 0;
}

/* Opens a write: seq becomes odd before any slot changes. */
static void write_begin(struct bal_published *p)
{
	uint64_t s = __atomic_load_n(&p->seq, __ATOMIC_RELAXED);
	__atomic_store_n(&p->seq, s + 1, __ATOMIC_RELAXED);
	/* Keeps the slot stores below from moving above the odd seq store. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

/* Closes a write: seq becomes even after every slot store is visible. */
static void write_end(struct bal_published *p, uint64_t position)
{
	__atomic_store_n(&p->position, position, __ATOMIC_RELAXED);
	uint64_t s = __atomic_load_n(&p->seq, __ATOMIC_RELAXED);
	__atomic_store_n(&p->seq, s + 1, __ATOMIC_RELEASE);
}

void bal_pub_store(struct bal_published *p, const uint64_t *ctr, uint64_t position)
{
	write_begin(p);
	for (size_t i = 0; i < p->n; i++)
		__atomic_store_n(&p->ctr[i], ctr[i], __ATOMIC_RELAXED);
	write_end(p, position);
}

void bal_pub_apply(struct bal_published *p, const struct bal_layout *l, const struct bal_delta *const *deltas,
                   size_t ndeltas, uint64_t position)
{
	write_begin(p);
	/* bal_tally_apply() uses relaxed atomic loads and stores on the slots. */
	for (size_t i = 0; i < ndeltas; i++)
		bal_tally_apply(l, p->ctr, deltas[i]);
	write_end(p, position);
}

void bal_pub_void(struct bal_published *p, const struct bal_layout *l, const struct bal_delta *dl,
                  const struct bal_delta *prev, uint64_t position)
{
	write_begin(p);
	if (dl)
		bal_tally_void(l, p->ctr, dl, prev);
	write_end(p, position);
}

uint64_t bal_pub_read(const struct bal_published *p, uint64_t *dst)
{
	return bal_pub_read_range(p, 0, p->n, dst);
}

uint64_t bal_pub_read_range(const struct bal_published *p, size_t first, size_t count, uint64_t *dst)
{
	bal_require(first <= p->n && count <= p->n - first);
	for (unsigned tries = 1;; tries++) {
		uint64_t s1 = __atomic_load_n(&p->seq, __ATOMIC_ACQUIRE);
		if (!(s1 & 1)) {
			uint64_t position = __atomic_load_n(&p->position, __ATOMIC_RELAXED);
			for (size_t i = first; i < first + count; i++)
				dst[i] = __atomic_load_n(&p->ctr[i], __ATOMIC_RELAXED);
			/* Keeps the copy above from moving below the re-check of seq. */
			__atomic_thread_fence(__ATOMIC_ACQUIRE);
			if (__atomic_load_n(&p->seq, __ATOMIC_RELAXED) == s1)
				return position;
		}
		if (tries % PUB_SPINS_BEFORE_YIELD == 0)
			sched_yield();
	}
}
