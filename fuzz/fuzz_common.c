/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers shared by the fuzz targets (see fuzz_common.h).
 */
#include "fuzz/fuzz_common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/codec.h"
#include "defn/defn.h"

void fz_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s:%d: ", file, line);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	abort();
}

void fz_election_load(struct fz_election *e)
{
	char why[256] = "";
	int err = bal_defn_load(BAL_FUZZ_SOURCE_DIR "/tests/data/small.json", &e->defn, why, sizeof(why));
	FZ_CHECK(err == 0, "loading the small election: %s", why);
	e->layout = bal_layout_new(e->defn);
	FZ_CHECK(e->layout, "layout: out of memory");
	e->delta.cap = (uint32_t)bal_layout_delta_max(e->layout);
	e->delta.e = calloc(e->delta.cap, sizeof(*e->delta.e));
	e->nslots = bal_layout_nslots(e->layout);
	e->ctr = calloc(e->nslots, sizeof(uint64_t));
	FZ_CHECK(e->delta.e && e->ctr, "out of memory");
}

int fz_fold_body(struct fz_election *e, struct bal_arena *arena, const uint8_t *body, size_t len)
{
	char why[256];
	struct bal_batch b;
	bal_arena_reset(arena);
	int err = bal_codec_decode(body, len, arena, &b, why, sizeof(why));
	if (err)
		return err;
	e->delta.n = 0;
	err = bal_tally_fold(e->defn, e->layout, &b, &e->delta, why, sizeof(why));
	if (err)
		return err;
	FZ_CHECK(e->delta.n <= e->delta.cap, "fold wrote %u entries, cap %u", e->delta.n, e->delta.cap);
	err = bal_tally_check(e->layout, e->ctr, &e->delta, why, sizeof(why));
	if (err)
		return err;
	bal_tally_apply(e->layout, e->ctr, &e->delta);
	return 0;
}
