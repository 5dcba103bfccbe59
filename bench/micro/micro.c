/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench/micro: nanoseconds per batch for the hot pieces of ballotd, without
 * the network: HTTP framing, decode, signature check, validate + fold, overflow
 * check + apply, seqlock publish, and durable LMDB group commits of several
 * sizes. A regression in one piece shows here without the whole stack.
 *
 *   build/bench-micro [--definition FILE] [--batch-size N] [--iterations N] [--dir DIR]
 *
 * Batches come from the same generator as ballotctl (kz2023 by default).
 */
#include <errno.h>
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proto/codec.h"
#include "defn/defn.h"
#include "client/gen.h"
#include "daemon/http.h"
#include "storage/storage.h"
#include "core/tally.h"

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void row(const char *what, uint64_t ns, uint64_t n)
{
	printf("| %-50s | %10.0f | %12.0f |\n", what, (double)ns / (double)n, 1e9 * (double)n / (double)ns);
}

struct pool {
	size_t n;
	uint8_t **body;
	size_t *len;
	uint32_t *precinct_id;
	uint64_t *seq;
};

static int noop_begin(void *ctx)
{
	(void)ctx;
	return 0;
}
static int noop_headers(void *ctx, const struct bal_http_req *r)
{
	(void)ctx;
	(void)r;
	return 0;
}
static int count_body(void *ctx, const char *at, size_t n)
{
	(void)at;
	*(size_t *)ctx += n;
	return 0;
}
static int noop_complete(void *ctx, const struct bal_http_req *r)
{
	(void)ctx;
	(void)r;
	return 0;
}

int main(int argc, char **argv)
{
	const char *defn_path = BAL_SOURCE_DIR "/data/kz2023.json";
	const char *dir = NULL;
	unsigned batch_size = 100, iters = 20000;
	static const struct option opts[] = {{"definition", required_argument, 0, 'd'},
	                                     {"batch-size", required_argument, 0, 'b'},
	                                     {"iterations", required_argument, 0, 'i'},
	                                     {"dir", required_argument, 0, 'D'},
	                                     {"help", no_argument, 0, 'h'},
	                                     {0, 0, 0, 0}};
	int o;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'd': defn_path = optarg; break;
		case 'b': batch_size = (unsigned)atoi(optarg); break;
		case 'i': iters = (unsigned)atoi(optarg); break;
		case 'D': dir = optarg; break;
		default:
			fprintf(stderr, "usage: bench-micro [--definition FILE] [--batch-size N] [--iterations N] "
			                "[--dir DIR]\n");
			return o == 'h' ? 0 : 2;
		}
	}
	if (sodium_init() < 0 || batch_size < 1 || iters < 100)
		return 2;
	char why[512];
	struct bal_defn *d;
	if (bal_defn_load(defn_path, &d, why, sizeof(why))) {
		fprintf(stderr, "bench-micro: %s\n", why);
		return 1;
	}
	struct bal_layout *l = bal_layout_new(d);
	struct bal_gen_opts go = {.seed = 2023, .key_seed = 2023, .batch_size = batch_size, .kind = BAL_KIND_BALLOTS};
	struct bal_gen *g;
	if (bal_gen_new(d, &go, &g, why, sizeof(why))) {
		fprintf(stderr, "bench-micro: %s (is the definition keyed with seed 2023?)\n", why);
		return 1;
	}
	struct pool p = {.n = iters};
	p.body = calloc(iters, sizeof(*p.body));
	p.len = calloc(iters, sizeof(*p.len));
	p.precinct_id = calloc(iters, sizeof(*p.precinct_id));
	p.seq = calloc(iters, sizeof(*p.seq));
	size_t total_bytes = 0;
	for (unsigned i = 0; i < iters; i++) {
		const uint8_t *b;
		struct bal_batch bb;
		uint32_t pi = i % d->nprecincts;
		if (bal_gen_batch(g, pi, 1 + i / d->nprecincts, &bb, &b, &p.len[i], why, sizeof(why))) {
			fprintf(stderr, "bench-micro: %s\n", why);
			return 1;
		}
		p.body[i] = malloc(p.len[i]);
		memcpy(p.body[i], b, p.len[i]);
		p.precinct_id[i] = bb.precinct_id;
		p.seq[i] = bb.seq;
		total_bytes += p.len[i];
	}
	printf("bench-micro: %s, %u precincts, batches of %u ballots (%zu bytes on average), %u batches\n\n",
	       d->election_id, d->nprecincts, batch_size, total_bytes / iters, iters);
	printf("| %-50s | %10s | %12s |\n", "step", "ns/batch", "batches/s");
	printf("|%s|%s|%s|\n", "----------------------------------------------------", "------------",
	       "--------------");

	/* HTTP framing of a full POST request. */
	char *req = malloc(p.len[0] + 256);
	int hl = sprintf(req,
	                 "POST /v1/batches HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
	                 "Content-Length: %zu\r\n\r\n",
	                 p.len[0]);
	memcpy(req + hl, p.body[0], p.len[0]);
	size_t reqlen = (size_t)hl + p.len[0], got = 0;
	struct bal_http_hooks hooks = {noop_begin, noop_headers, count_body, noop_complete};
	struct bal_http h;
	bal_http_init(&h, &hooks, &got, 16384);
	uint64_t t0 = now_ns();
	for (unsigned i = 0; i < iters; i++)
		bal_http_feed(&h, req, reqlen);
	row("HTTP/1.1 framing (http-parser)", now_ns() - t0, iters);

	struct bal_arena arena;
	bal_arena_init(&arena, 0);
	struct bal_batch b;
	t0 = now_ns();
	for (unsigned i = 0; i < iters; i++) {
		bal_arena_reset(&arena);
		if (bal_codec_decode(p.body[i], p.len[i], &arena, &b, why, sizeof(why)))
			return fprintf(stderr, "decode: %s\n", why), 1;
	}
	uint64_t t_decode = now_ns() - t0;
	row("decode SignedBatch + Batch (protobuf-c, arena)", t_decode, iters);

	unsigned nsig = iters < 5000 ? iters : 5000;
	t0 = now_ns();
	for (unsigned i = 0; i < nsig; i++) {
		bal_arena_reset(&arena);
		bal_codec_decode(p.body[i], p.len[i], &arena, &b, why, sizeof(why));
		const struct bal_precinct *pr = &d->precincts[bal_defn_precinct(d, b.precinct_id)];
		if (crypto_sign_verify_detached(b.signature, b.signed_bytes, b.signed_len, pr->public_key) != 0)
			return fprintf(stderr, "signature does not verify\n"), 1;
	}
	row("decode + Ed25519 verify (libsodium)", now_ns() - t0, nsig);

	size_t dmax = bal_layout_delta_max(l);
	struct bal_delta *deltas = calloc(iters, sizeof(*deltas));
	struct bal_delta_entry *ent = calloc((size_t)iters * dmax, sizeof(*ent));
	t0 = now_ns();
	for (unsigned i = 0; i < iters; i++) {
		bal_arena_reset(&arena);
		bal_codec_decode(p.body[i], p.len[i], &arena, &b, why, sizeof(why));
		deltas[i].e = ent + (size_t)i * dmax;
		deltas[i].cap = (uint32_t)dmax;
		if (bal_tally_fold(d, l, &b, &deltas[i], why, sizeof(why)))
			return fprintf(stderr, "fold: %s\n", why), 1;
	}
	uint64_t t_fold = now_ns() - t0;
	row("decode + validate + fold", t_fold, iters);
	row("  validate + fold alone", t_fold > t_decode ? t_fold - t_decode : 0, iters);

	size_t ns = bal_layout_nslots(l);
	uint64_t *ctr = calloc(ns, sizeof(uint64_t));
	t0 = now_ns();
	for (unsigned i = 0; i < iters; i++) {
		if (bal_tally_check(l, ctr, &deltas[i], why, sizeof(why)))
			return fprintf(stderr, "check: %s\n", why), 1;
		bal_tally_apply(l, ctr, &deltas[i]);
	}
	row("exact overflow check + apply (plain array)", now_ns() - t0, iters);

	struct bal_published pub;
	bal_pub_init(&pub, ns);
	const struct bal_delta **ptrs = calloc(iters, sizeof(*ptrs));
	for (unsigned i = 0; i < iters; i++)
		ptrs[i] = &deltas[i];
	t0 = now_ns();
	for (unsigned i = 0; i < iters; i += 100)
		bal_pub_apply(&pub, l, ptrs + i, iters - i < 100 ? iters - i : 100, i + 100);
	row("publish through the seqlock (groups of 100)", now_ns() - t0, iters);
	uint64_t *copy = malloc(ns * sizeof(uint64_t));
	t0 = now_ns();
	for (int i = 0; i < 100; i++)
		bal_pub_read(&pub, copy);
	printf("| %-50s | %10.0f | %12s |\n", "reader copy of all counters (per query)", (double)(now_ns() - t0) / 100,
	       "-");

	/* Durable group commits on a fresh LMDB directory. */
	char tmpl[] = "/tmp/bench-micro-XXXXXX";
	char dbdir[600];
	if (dir)
		snprintf(dbdir, sizeof(dbdir), "%s/bench-micro-db", dir);
	else if (mkdtemp(tmpl))
		snprintf(dbdir, sizeof(dbdir), "%s", tmpl);
	else
		return perror("mkdtemp"), 1;
	struct bal_store_opts so = {.dir = dbdir, .map_size = (size_t)4 << 30, .nprecincts = d->nprecincts};
	memcpy(so.hash, d->hash, 32);
	uint32_t *ids = malloc(d->nprecincts * sizeof(*ids));
	for (uint32_t i = 0; i < d->nprecincts; i++)
		ids[i] = d->precincts[i].id;
	so.precinct_ids = ids;
	struct bal_store *st;
	if (bal_store_open(&so, &st, why, sizeof(why)))
		return fprintf(stderr, "store: %s\n", why), 1;
	free(ids);
	unsigned groups[] = {1, 10, 100, 1000};
	unsigned next = 0;
	for (size_t gi = 0; gi < sizeof(groups) / sizeof(groups[0]); gi++) {
		unsigned gsz = groups[gi], rounds = gsz == 1 ? 300 : gsz == 10 ? 200 : gsz == 100 ? 60 : 8;
		uint64_t t = 0;
		for (unsigned r = 0; r < rounds; r++) {
			uint64_t s0 = now_ns();
			bal_store_wbegin(st);
			for (unsigned k = 0; k < gsz; k++, next++) {
				uint64_t pos;
				unsigned i = next % iters;
				/* Fresh keys every time: seq moves past the generated range. */
				int e = bal_store_append(st, deltas[i].precinct, p.seq[i] + 1000000ull * (next / iters),
				                         p.body[i], p.len[i], &pos);
				if (e)
					return fprintf(stderr, "append: %s\n", bal_strerror(e)), 1;
			}
			int e = bal_store_wcommit(st);
			if (e)
				return fprintf(stderr, "commit: %s\n", bal_strerror(e)), 1;
			t += now_ns() - s0;
		}
		char label[64];
		snprintf(label, sizeof(label), "durable commit, groups of %u (%.2f ms/commit)", gsz,
		         (double)t / rounds / 1e6);
		row(label, t, (uint64_t)rounds * gsz);
	}
	/* Snapshots: one slice (what a group commit carries), then a whole round in one txn (a clean stop). */
	unsigned nsl = bal_store_slices(st);
	uint64_t *slice = malloc(ns * sizeof(uint64_t));
	uint64_t s0 = now_ns();
	for (unsigned k = 0; k < nsl; k++) {
		uint32_t first, end;
		bal_store_slice_range(st, k, &first, &end);
		size_t n = bal_layout_slice_pack(l, ctr, first, end, slice);
		bal_store_wbegin(st);
		bal_store_put_slice(st, k, slice, n * sizeof(uint64_t));
		bal_store_wcommit(st);
	}
	char label[80];
	snprintf(label, sizeof(label), "snapshot slice (1 of %u) + dedup merge + commit (ms)", nsl);
	printf("| %-50s | %10.2f | %12s |\n", label, (double)(now_ns() - s0) / 1e6 / nsl, "-");
	s0 = now_ns();
	bal_store_wbegin(st);
	for (unsigned k = 0; k < nsl; k++) {
		uint32_t first, end;
		bal_store_slice_range(st, k, &first, &end);
		size_t n = bal_layout_slice_pack(l, ctr, first, end, slice);
		bal_store_put_slice(st, k, slice, n * sizeof(uint64_t));
	}
	bal_store_wcommit(st);
	snprintf(label, sizeof(label), "all %u slices in one txn + commit (ms)", nsl);
	printf("| %-50s | %10.2f | %12s |\n", label, (double)(now_ns() - s0) / 1e6, "-");
	free(slice);
	bal_store_close(st);
	if (!dir) {
		char cmd[700];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dbdir);
		if (system(cmd) != 0)
			fprintf(stderr, "bench-micro: could not remove %s\n", dbdir);
	}
	return 0;
}
