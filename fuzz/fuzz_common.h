/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared by the libFuzzer targets: the small test election
 * (tests/data/small.json, read once at start-up) and the fold of one decoded
 * batch the way daemon/ingest.c and the recovery replay do it. Test-only code;
 * depends on the project's static libraries and nothing else.
 */
#ifndef BAL_FUZZ_COMMON_H
#define BAL_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "core/ballot.h"
#include "core/tally.h"

/** The small election and its layout, loaded once; aborts if it cannot be. */
struct fz_election {
	struct bal_defn *defn;
	struct bal_layout *layout;
	struct bal_delta delta; /**< entries for bal_layout_delta_max() */
	uint64_t *ctr;          /**< bal_layout_nslots() counters */
	size_t nslots;
};

/** Loads tests/data/small.json (path compiled in); aborts on failure. */
void fz_election_load(struct fz_election *e);

/**
 * Decodes `body` into a batch (arena is reset first), then validates and
 * folds it and, when the fold and the overflow check pass, applies it to
 * e->ctr. Mirrors daemon/ingest.c minus the signature (the fuzzer cannot sign).
 * @return 0, or the first error code (BAL_ESCHEMA, BAL_EINVALID, ...).
 */
int fz_fold_body(struct fz_election *e, struct bal_arena *arena, const uint8_t *body, size_t len);

/** Aborts (a crash for libFuzzer) with a message when `cond` is false. */
#define FZ_CHECK(cond, ...)                                       \
	do {                                                      \
		if (!(cond))                                      \
			fz_fail(__FILE__, __LINE__, __VA_ARGS__); \
	} while (0)
void fz_fail(const char *file, int line, const char *fmt, ...) __attribute__((noreturn, format(printf, 3, 4)));

#endif
