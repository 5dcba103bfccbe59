/* SPDX-License-Identifier: Apache-2.0 */
/*
 * storage/merkle.c: the log over the journal. Every root, audit path and
 * consistency proof is compared with a naive recursive RFC 6962
 * implementation written here (MTH, PATH and SUBPROOF exactly as section
 * 2.1 states them), and with the reference vectors of the 8-leaf test tree
 * that Certificate Transparency implementations share. Also: heads, the
 * receipts of a txn, aborts, reopening, a lost or damaged tree table, and
 * the records the log shows the journal has lost.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/storage/fixture.h"

static void setup(void)
{
	fx_setup();
	cr_assert_geq(sodium_init(), 0);
}

TestSuite(storage_merkle, .init = setup, .fini = fx_teardown);

#define H         BAL_HASH_BYTES
#define MAXLEAVES 70000u

typedef uint8_t hash_t[H];

/* ---- the reference: RFC 6962 section 2.1, recursively ---------------------- */

static void ref_leaf(hash_t out, const uint8_t *bytes, size_t len)
{
	uint8_t *buf = malloc(len + 1);
	cr_assert_not_null(buf);
	buf[0] = 0x00;
	if (len)
		memcpy(buf + 1, bytes, len);
	crypto_hash_sha256(out, buf, len + 1);
	free(buf);
}

static void ref_node(hash_t out, const hash_t left, const hash_t right)
{
	uint8_t buf[1 + 2 * H];
	buf[0] = 0x01;
	memcpy(buf + 1, left, H);
	memcpy(buf + 1 + H, right, H);
	crypto_hash_sha256(out, buf, sizeof(buf));
}

/* The largest power of two smaller than n (n > 1). */
static uint64_t ref_split(uint64_t n)
{
	uint64_t k = 1;
	while (k * 2 < n)
		k *= 2;
	return k;
}

/* MTH(D[n]). */
static void mth(hash_t out, const hash_t *d, uint64_t n)
{
	if (n == 0) {
		crypto_hash_sha256(out, NULL, 0);
		return;
	}
	if (n == 1) {
		memcpy(out, d[0], H);
		return;
	}
	uint64_t k = ref_split(n);
	hash_t l, r;
	mth(l, d, k);
	mth(r, d + k, n - k);
	ref_node(out, l, r);
}

struct proof {
	unsigned n;
	hash_t h[BAL_TREE_MAX_PATH];
};

static void proof_add(struct proof *p, const hash_t h)
{
	cr_assert_lt(p->n, BAL_TREE_MAX_PATH);
	memcpy(p->h[p->n++], h, H);
}

/* PATH(m, D[n]). */
static void ref_path(struct proof *p, uint64_t m, const hash_t *d, uint64_t n)
{
	if (n == 1)
		return;
	uint64_t k = ref_split(n);
	hash_t x;
	if (m < k) {
		ref_path(p, m, d, k);
		mth(x, d + k, n - k);
	} else {
		ref_path(p, m - k, d + k, n - k);
		mth(x, d, k);
	}
	proof_add(p, x);
}

/* SUBPROOF(m, D[n], b). */
static void ref_subproof(struct proof *p, uint64_t m, const hash_t *d, uint64_t n, bool b)
{
	hash_t x;
	if (m == n) {
		if (!b) {
			mth(x, d, n);
			proof_add(p, x);
		}
		return;
	}
	uint64_t k = ref_split(n);
	if (m <= k) {
		ref_subproof(p, m, d, k, b);
		mth(x, d + k, n - k);
	} else {
		ref_subproof(p, m - k, d + k, n - k, false);
		mth(x, d, k);
	}
	proof_add(p, x);
}

/* ---- the journal the tests write, and its leaves ------------------------- */

static hash_t leaves[MAXLEAVES];

/* Record i: 0..130 bytes (record 0 is empty), its content chosen by `tag`. */
static size_t rec_len(uint64_t i)
{
	return (size_t)(i * 37 % 131);
}

/* Appends record i within the open write txn; it must land at position i + 1. */
static void append_leaf(struct bal_store *s, uint64_t i, uint32_t tag)
{
	uint8_t b[131];
	size_t len = rec_len(i);
	uint64_t pos = 0;
	cr_assert_lt(i, MAXLEAVES);
	fx_fill(b, len, (uint32_t)i * 31u + tag);
	int rc = bal_store_append(s, (uint32_t)(i % 5), i / 5 + 1, b, len, &pos);
	cr_assert_eq(rc, 0, "append %llu: %s", (unsigned long long)i, bal_strerror(rc));
	cr_assert_eq(pos, i + 1);
	ref_leaf(leaves[i], b, len);
}

/* One txn appending records [n, n + k). */
static uint64_t commit_leaves(struct bal_store *s, uint64_t n, uint64_t k)
{
	cr_assert_eq(bal_store_wbegin(s), 0);
	for (uint64_t i = n; i < n + k; i++)
		append_leaf(s, i, 0);
	cr_assert_eq(bal_store_wcommit(s), 0);
	return n + k;
}

static void expect_root(struct bal_store *s, uint64_t n)
{
	hash_t want, got;
	mth(want, leaves, n);
	int rc = bal_store_tree_root(s, n, got);
	cr_assert_eq(rc, 0, "root of %llu: %s", (unsigned long long)n, bal_strerror(rc));
	cr_assert_arr_eq(got, want, H, "root of size %llu", (unsigned long long)n);
}

static void expect_same_path(const struct bal_receipt *r, uint64_t m, uint64_t n)
{
	static struct proof want;
	want.n = 0;
	ref_path(&want, m, leaves, n);
	cr_assert_eq(r->leaf_index, m);
	cr_assert_arr_eq(r->leaf_hash, leaves[m], H, "leaf %llu", (unsigned long long)m);
	cr_assert_eq(r->npath, want.n, "leaf %llu of %llu: %u hashes, want %u", (unsigned long long)m,
	             (unsigned long long)n, r->npath, want.n);
	for (unsigned j = 0; j < want.n; j++)
		cr_assert_arr_eq(r->path[j], want.h[j], H, "leaf %llu of %llu: path[%u]", (unsigned long long)m,
		                 (unsigned long long)n, j);
}

/* Leaf m (0-based) in the committed tree of n leaves. */
static void expect_path(struct bal_store *s, uint64_t m, uint64_t n)
{
	static struct bal_receipt r;
	memset(&r, 0xa5, sizeof(r));
	int rc = bal_store_tree_path(s, m + 1, n, &r);
	cr_assert_eq(rc, 0, "path %llu of %llu: %s", (unsigned long long)m, (unsigned long long)n, bal_strerror(rc));
	expect_same_path(&r, m, n);
	cr_assert_eq(r.head.tree_size, 0xa5a5a5a5a5a5a5a5ULL, "the head is the caller's");
}

static void expect_consistency(struct bal_store *s, uint64_t m, uint64_t n)
{
	static struct proof want;
	static uint8_t got[BAL_TREE_MAX_PATH][H];
	unsigned np = 99;
	want.n = 0;
	ref_subproof(&want, m, leaves, n, true);
	int rc = bal_store_tree_consistency(s, m, n, got, &np);
	cr_assert_eq(rc, 0, "consistency %llu..%llu: %s", (unsigned long long)m, (unsigned long long)n,
	             bal_strerror(rc));
	cr_assert_eq(np, want.n, "consistency %llu..%llu: %u hashes, want %u", (unsigned long long)m,
	             (unsigned long long)n, np, want.n);
	for (unsigned j = 0; j < want.n; j++)
		cr_assert_arr_eq(got[j], want.h[j], H, "consistency %llu..%llu: [%u]", (unsigned long long)m,
		                 (unsigned long long)n, j);
}

/* Within the write txn that appended records [a, n): its root and every receipt. */
static void expect_wtxn(struct bal_store *s, uint64_t a, uint64_t n)
{
	static struct bal_receipt r;
	hash_t want, got;
	mth(want, leaves, n);
	cr_assert_eq(bal_store_tree_wroot(s, got), 0);
	cr_assert_arr_eq(got, want, H, "txn root of size %llu", (unsigned long long)n);
	for (uint64_t m = a; m < n; m++) {
		memset(&r, 0xa5, sizeof(r));
		int rc = bal_store_tree_wpath(s, m + 1, &r);
		cr_assert_eq(rc, 0, "receipt of %llu: %s", (unsigned long long)(m + 1), bal_strerror(rc));
		expect_same_path(&r, m, n);
		cr_assert_eq(r.head.tree_size, 0xa5a5a5a5a5a5a5a5ULL, "the head is the caller's");
	}
}

static uint64_t rnd_state = 0x9e3779b97f4a7c15ULL;

/* Uniform enough in [lo, hi]. */
static uint64_t rnd(uint64_t lo, uint64_t hi)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return lo + rnd_state % (hi - lo + 1);
}

/* Random proofs in trees up to n. */
static void expect_random(struct bal_store *s, uint64_t n, unsigned count)
{
	for (unsigned j = 0; j < count; j++) {
		uint64_t size = rnd(1, n);
		expect_path(s, rnd(0, size - 1), size);
		expect_consistency(s, rnd(1, size), size);
	}
}

static uint64_t node_count(uint64_t n)
{
	return 2 * n - (uint64_t)__builtin_popcountll(n);
}

/* ---- RFC 6962 reference vectors --------------------------------------------- */

/* The test tree of RFC 6962 implementations (Certificate Transparency's
 * merkle_tree_test, transparency-dev/merkle testonly): leaf inputs, the root
 * of every size 0..8, some inclusion and consistency proofs. */
static const char *const vec_inputs[8] = {
        "", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f",
};
static const char *const vec_roots[9] = {
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
};

struct vec_proof {
	uint64_t a, b; /* inclusion: position (1-based) and size; consistency: the two sizes */
	unsigned n;
	const char *h[3];
};

static const struct vec_proof vec_inclusion[] = {
        {1, 1, 0, {NULL}},
        {1,
         8,
         3,
         {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
          "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
          "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
        {6,
         8,
         3,
         {"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
          "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
          "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
        {3, 3, 1, {"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"}},
        {2,
         5,
         3,
         {"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
          "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
          "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
};

static const struct vec_proof vec_consistency[] = {
        {1, 1, 0, {NULL}},
        {1,
         8,
         3,
         {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
          "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
          "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
        {6,
         8,
         3,
         {"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
          "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
          "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
        {2,
         5,
         2,
         {"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
          "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
        {6,
         7,
         3,
         {"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
          "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
          "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
};

static size_t unhex(uint8_t *out, size_t cap, const char *hex)
{
	size_t n = 0;
	cr_assert_eq(sodium_hex2bin(out, cap, hex, strlen(hex), NULL, &n, NULL), 0, "hex %s", hex);
	return n;
}

static void expect_hex(const uint8_t *got, const char *hex, const char *what, uint64_t a, uint64_t b)
{
	hash_t want;
	cr_assert_eq(unhex(want, H, hex), H);
	cr_assert_arr_eq(got, want, H, "%s %llu/%llu", what, (unsigned long long)a, (unsigned long long)b);
}

Test(storage_merkle, matches_the_rfc6962_reference_vectors)
{
	struct bal_store *s = fx_open_default();
	static struct bal_receipt r;
	hash_t root;
	uint8_t in[16];

	cr_assert_eq(bal_store_wbegin(s), 0);
	cr_assert_eq(bal_store_tree_wroot(s, root), 0, "the empty tree has a root too");
	expect_hex(root, vec_roots[0], "root", 0, 0);
	/* Sizes 1..5 in one txn (root after each append), then 6..8 in another. */
	for (uint64_t i = 0; i < 8; i++) {
		uint64_t pos;
		if (i == 5) {
			cr_assert_eq(bal_store_tree_wpath(s, 2, &r), 0);
			cr_assert_eq(r.npath, vec_inclusion[4].n);
			for (unsigned j = 0; j < r.npath; j++)
				expect_hex(r.path[j], vec_inclusion[4].h[j], "receipt", 2, 5);
			cr_assert_eq(bal_store_wcommit(s), 0);
			cr_assert_eq(bal_store_wbegin(s), 0);
		}
		size_t len = unhex(in, sizeof(in), vec_inputs[i]);
		cr_assert_eq(bal_store_append(s, 7, i + 1, in, len, &pos), 0);
		cr_assert_eq(pos, i + 1);
		cr_assert_eq(bal_store_tree_wroot(s, root), 0);
		expect_hex(root, vec_roots[i + 1], "root", i + 1, i + 1);
	}
	cr_assert_eq(bal_store_tree_wpath(s, 6, &r), 0);
	cr_assert_eq(r.npath, vec_inclusion[2].n);
	for (unsigned j = 0; j < r.npath; j++)
		expect_hex(r.path[j], vec_inclusion[2].h[j], "receipt", 6, 8);
	cr_assert_eq(bal_store_wcommit(s), 0);

	for (uint64_t n = 1; n <= 8; n++) {
		cr_assert_eq(bal_store_tree_root(s, n, root), 0);
		expect_hex(root, vec_roots[n], "root", n, n);
	}
	for (size_t v = 0; v < sizeof(vec_inclusion) / sizeof(vec_inclusion[0]); v++) {
		const struct vec_proof *p = &vec_inclusion[v];
		cr_assert_eq(bal_store_tree_path(s, p->a, p->b, &r), 0);
		cr_assert_eq(r.leaf_index, p->a - 1);
		cr_assert_eq(r.npath, p->n, "inclusion %llu/%llu", (unsigned long long)p->a, (unsigned long long)p->b);
		for (unsigned j = 0; j < p->n; j++)
			expect_hex(r.path[j], p->h[j], "inclusion", p->a, p->b);
	}
	for (size_t v = 0; v < sizeof(vec_consistency) / sizeof(vec_consistency[0]); v++) {
		const struct vec_proof *p = &vec_consistency[v];
		uint8_t path[BAL_TREE_MAX_PATH][H];
		unsigned np = 99;
		cr_assert_eq(bal_store_tree_consistency(s, p->a, p->b, path, &np), 0);
		cr_assert_eq(np, p->n, "consistency %llu/%llu", (unsigned long long)p->a, (unsigned long long)p->b);
		for (unsigned j = 0; j < p->n; j++)
			expect_hex(path[j], p->h[j], "consistency", p->a, p->b);
	}
	bal_store_close(s);
}

/* ---- against the reference ------------------------------------------------------ */

Test(storage_merkle, every_size_matches_the_reference)
{
	static const unsigned txn_sizes[] = {1, 1, 2, 3, 1, 5, 8, 13, 4, 21, 7, 34, 16, 55, 2, 89, 6};
	struct bal_store *s = fx_open_default();
	uint64_t n = 0;
	for (unsigned t = 0; n < 300; t++) {
		uint64_t a = n, k = txn_sizes[t % (sizeof(txn_sizes) / sizeof(txn_sizes[0]))];
		if (k > 300 - n)
			k = 300 - n;
		cr_assert_eq(bal_store_wbegin(s), 0);
		for (uint64_t j = 0; j < k; j++) {
			append_leaf(s, n++, 0);
			if (j % 3 == 0) /* the root mid-txn, then more appends: nothing stale */
				expect_wtxn(s, a, n);
		}
		expect_wtxn(s, a, n);
		cr_assert_eq(bal_store_position(s), a, "nothing published before the commit");
		cr_assert_eq(bal_store_wcommit(s), 0);
		cr_assert_eq(bal_store_position(s), n);
		expect_root(s, n);
		expect_random(s, n, 20); /* old sizes too, after later appends */
	}
	for (uint64_t size = 1; size <= 300; size++)
		expect_root(s, size);
	for (uint64_t size = 1; size <= 40; size++)
		for (uint64_t m = 1; m <= size; m++) {
			expect_path(s, m - 1, size);
			expect_consistency(s, m, size);
		}
	expect_random(s, 300, 1500);
	bal_store_close(s);
	cr_assert_eq(fx_entries("tree"), node_count(300), "each perfect subtree stored once");
}

Test(storage_merkle, an_aborted_txn_leaves_no_trace)
{
	struct bal_store *s = fx_open_default();
	uint64_t n = commit_leaves(s, 0, 5);
	hash_t before, after;
	cr_assert_eq(bal_store_tree_root(s, n, before), 0);

	/* The aborted txn computes its root and receipts, then is dropped. */
	cr_assert_eq(bal_store_wbegin(s), 0);
	for (uint64_t i = n; i < n + 3; i++)
		append_leaf(s, i, 1);
	expect_wtxn(s, n, n + 3);
	bal_store_wabort(s);
	cr_assert_eq(bal_store_position(s), n);
	cr_assert_eq(bal_store_tree_root(s, n, after), 0);
	cr_assert_arr_eq(after, before, H);

	/* The same size again with other leaves: nothing of the aborted txn shows. */
	cr_assert_eq(bal_store_wbegin(s), 0);
	cr_assert_eq(bal_store_tree_wroot(s, after), 0);
	cr_assert_arr_eq(after, before, H, "a txn without appends has the committed root");
	for (uint64_t i = n; i < n + 3; i++)
		append_leaf(s, i, 2);
	expect_wtxn(s, n, n + 3);
	cr_assert_eq(bal_store_wcommit(s), 0);
	n += 3;
	for (uint64_t size = 1; size <= n; size++) {
		expect_root(s, size);
		for (uint64_t m = 1; m <= size; m++) {
			expect_path(s, m - 1, size);
			expect_consistency(s, m, size);
		}
	}
	/* Another txn after an abort in the middle of a run of txns. */
	n = commit_leaves(s, n, 9);
	expect_random(s, n, 50);
	bal_store_close(s);
	cr_assert_eq(fx_entries("tree"), node_count(n));
}

Test(storage_merkle, rejected_appends_add_no_leaf)
{
	struct bal_store *s = fx_open_default();
	uint8_t b[131];
	uint64_t pos;
	cr_assert_eq(bal_store_wbegin(s), 0);
	append_leaf(s, 0, 0);
	append_leaf(s, 1, 0);
	fx_fill(b, rec_len(1), 31u);
	cr_assert_eq(bal_store_append(s, 1, 1, b, rec_len(1), &pos), BAL_EDUPLICATE);
	cr_assert_eq(bal_store_append(s, 1, 1, b, 3, &pos), BAL_ECONFLICT);
	cr_assert_eq(bal_store_append(s, FX_PRECINCTS, 1, b, 3, &pos), -EINVAL);
	append_leaf(s, 2, 0);
	expect_wtxn(s, 0, 3);
	cr_assert_eq(bal_store_wcommit(s), 0);
	expect_root(s, 3);
	bal_store_close(s);
	cr_assert_eq(fx_entries("tree"), node_count(3));
}

Test(storage_merkle, a_full_map_keeps_the_committed_tree)
{
	struct bal_store *s = fx_open_precincts(0x11, 128 * 1024, 8);
	uint64_t n = 0;
	int rc = 0;
	/* Until the map fills, in an append or in a commit: either way the txn is gone. */
	while (rc == 0) {
		uint64_t a = n;
		uint8_t b[131];
		cr_assert_eq(bal_store_wbegin(s), 0);
		for (uint64_t i = a; i < a + 20 && rc == 0; i++) {
			uint64_t pos;
			fx_fill(b, 130, (uint32_t)i);
			if ((rc = bal_store_append(s, (uint32_t)(i % 8), i / 8 + 1, b, 130, &pos)) == 0)
				ref_leaf(leaves[i], b, 130);
		}
		if (rc != 0) {
			bal_store_wabort(s);
			break;
		}
		if ((rc = bal_store_wcommit(s)) == 0)
			n = a + 20;
		cr_assert_lt(n, 10000, "the map never filled");
	}
	cr_assert_eq(rc, -ENOSPC, "%s", bal_strerror(rc));
	cr_assert_eq(bal_store_position(s), n);
	cr_assert_gt(n, 0);
	hash_t want, got;
	mth(want, leaves, n);
	cr_assert_eq(bal_store_wbegin(s), 0);
	cr_assert_eq(bal_store_tree_wroot(s, got), 0);
	cr_assert_arr_eq(got, want, H, "the committed tree, not the failed txn's");
	bal_store_wabort(s);
	expect_root(s, n);
	expect_random(s, n, 30);
	bal_store_close(s);
}

/* ---- reopening ------------------------------------------------------------------------ */

Test(storage_merkle, proofs_survive_reopen)
{
	struct bal_store *s = fx_open_default();
	uint64_t n = 0;
	for (uint64_t k = 1; n < 50; k++)
		n = commit_leaves(s, n, k);
	bal_store_close(s);

	s = fx_open_default();
	for (uint64_t size = 1; size <= n; size++)
		expect_root(s, size);
	expect_random(s, n, 100);
	/* The frontier read at open serves the next txns. */
	for (uint64_t k = 1; k <= 6; k++) {
		uint64_t a = n;
		cr_assert_eq(bal_store_wbegin(s), 0);
		for (uint64_t i = 0; i < k; i++)
			append_leaf(s, n++, 0);
		expect_wtxn(s, a, n);
		cr_assert_eq(bal_store_wcommit(s), 0);
	}
	for (uint64_t size = 1; size <= n; size++)
		expect_root(s, size);
	expect_random(s, n, 100);
	bal_store_close(s);
}

/* Opens fx_dir as fx_open_default() does, but returns the failure and its reason. */
static int open_why(char *why, size_t whylen, struct bal_store **s)
{
	static uint32_t ids[FX_PRECINCTS];
	for (uint32_t i = 0; i < FX_PRECINCTS; i++)
		ids[i] = i;
	struct bal_store_opts o = {.dir = fx_dir, .map_size = 8 * MiB, .precinct_ids = ids, .nprecincts = FX_PRECINCTS};
	memset(o.hash, 0x11, sizeof(o.hash));
	why[0] = '\0';
	return bal_store_open(&o, s, why, whylen);
}

/* Opens, checks every root and some proofs against the reference, closes. */
static void expect_reopened(uint64_t n)
{
	struct bal_store *s = fx_open_default();
	cr_assert_eq(bal_store_position(s), n);
	for (uint64_t size = 1; size <= n; size++)
		expect_root(s, size);
	expect_random(s, n, 40);
	bal_store_close(s);
	cr_assert_eq(fx_entries("tree"), node_count(n));
}

Test(storage_merkle, a_lost_tree_is_rebuilt_from_the_journal)
{
	struct bal_store *s = fx_open_default();
	uint64_t n = 0;
	while (n < 100)
		n = commit_leaves(s, n, 7);
	hash_t root;
	cr_assert_eq(bal_store_tree_root(s, n, root), 0);
	bal_store_close(s);
	cr_assert_eq(fx_entries("tree"), node_count(n));

	fx_truncate("tree", 0); /* emptied */
	cr_assert_eq(fx_entries("tree"), 0);
	expect_reopened(n);
	fx_truncate("tree", node_count(37)); /* cut after a whole leaf: resumed from there */
	expect_reopened(n);
	fx_drop("tree"); /* as in a data directory from before the log */
	expect_reopened(n);

	/* The rebuilt tree goes on as if it had never been lost. */
	s = fx_open_default();
	hash_t again;
	cr_assert_eq(bal_store_tree_root(s, n, again), 0);
	cr_assert_arr_eq(again, root, H);
	cr_assert_eq(bal_store_wbegin(s), 0);
	for (uint64_t i = 0; i < 10; i++)
		append_leaf(s, n + i, 0);
	expect_wtxn(s, n, n + 10);
	cr_assert_eq(bal_store_wcommit(s), 0);
	n += 10;
	expect_random(s, n, 40);
	bal_store_close(s);
}

Test(storage_merkle, a_long_journal_is_rebuilt_in_several_txns)
{
	/* More leaves than one rebuild txn hashes (65536). */
	struct bal_store *s = fx_open(0x11, 64 * MiB);
	uint64_t n = 0;
	const uint64_t total = 66000;
	while (n < total) {
		uint64_t k = total - n < 6000 ? total - n : 6000;
		cr_assert_eq(bal_store_wbegin(s), 0);
		for (uint64_t i = n; i < n + k; i++) {
			uint8_t b[8];
			uint64_t pos;
			memcpy(b, &i, sizeof(b));
			cr_assert_eq(
			        bal_store_append(s, (uint32_t)(i % FX_PRECINCTS), i / FX_PRECINCTS + 1, b, 8, &pos), 0);
			ref_leaf(leaves[i], b, 8);
		}
		cr_assert_eq(bal_store_wcommit(s), 0);
		n += k;
	}
	hash_t want, got;
	mth(want, leaves, n);
	cr_assert_eq(bal_store_tree_root(s, n, got), 0);
	cr_assert_arr_eq(got, want, H);
	bal_store_close(s);

	fx_drop("tree");
	s = fx_open(0x11, 64 * MiB);
	cr_assert_eq(bal_store_tree_root(s, n, got), 0);
	cr_assert_arr_eq(got, want, H, "root after the rebuild");
	mth(want, leaves, 65536);
	cr_assert_eq(bal_store_tree_root(s, 65536, got), 0);
	cr_assert_arr_eq(got, want, H, "root at the first rebuild txn's end");
	expect_path(s, 65535, n);
	expect_path(s, 65536, n);
	expect_consistency(s, 65537, n);
	bal_store_close(s);
	cr_assert_eq(fx_entries("tree"), node_count(n));
}

Test(storage_merkle, a_damaged_record_stops_the_rebuild)
{
	struct bal_store *s = fx_open_default();
	commit_leaves(s, 0, 5);
	bal_store_close(s);
	fx_truncate("tree", 0);
	fx_damage("journal", 3, 30); /* record 2: 74 bytes after the 24-byte header */

	char why[256];
	cr_assert_eq(open_why(why, sizeof(why), &s), BAL_ECORRUPT, "%s", why);
	cr_assert_not_null(strstr(why, "extending the log from position 1"), "%s", why);
	cr_assert_not_null(strstr(why, "journal position 3: checksum"), "%s", why);
}

/* ---- damage --------------------------------------------------------------------------- */
Test(storage_merkle, a_damaged_node_is_corrupt)
{
	struct bal_store *s = fx_open_default();
	commit_leaves(s, 0, 6);
	bal_store_close(s);

	/* Leaf 4 (node 7) is in no frontier of 6: open does not read it, proofs do. */
	static const uint8_t short_hash[H - 1];
	fx_put("tree", 7, short_hash, sizeof(short_hash));
	s = fx_open_default();
	hash_t root;
	static struct bal_receipt r;
	uint8_t path[BAL_TREE_MAX_PATH][H];
	unsigned np;
	expect_root(s, 6);
	cr_assert_eq(bal_store_tree_root(s, 5, root), BAL_ECORRUPT);
	cr_assert_eq(bal_store_tree_path(s, 5, 6, &r), BAL_ECORRUPT);
	cr_assert_eq(bal_store_tree_path(s, 6, 6, &r), BAL_ECORRUPT);
	cr_assert_eq(bal_store_tree_consistency(s, 5, 6, path, &np), BAL_ECORRUPT);
	bal_store_close(s);

	fx_delete("tree", 7);
	s = fx_open_default();
	cr_assert_eq(bal_store_tree_root(s, 5, root), BAL_ECORRUPT, "a missing node");
	bal_store_close(s);

	/* A frontier node (level 1, index 2: node 9) is read at open. */
	fx_put("tree", 7, leaves[4], H);
	fx_put("tree", 9, short_hash, sizeof(short_hash));
	char why[256];
	cr_assert_eq(open_why(why, sizeof(why), &s), BAL_ECORRUPT, "%s", why);
	cr_assert_not_null(strstr(why, "tree node (1, 2) of size 6"), "%s", why);

	/* A table that ends inside a leaf's nodes. */
	fx_truncate("tree", 9);
	cr_assert_eq(open_why(why, sizeof(why), &s), BAL_ECORRUPT, "%s", why);
	cr_assert_not_null(strstr(why, "tree table ends at node 8, which completes no leaf"), "%s", why);
}

static int no_slice(void *arg, unsigned k, uint32_t first, uint32_t end, const uint8_t *blob, size_t len)
{
	return 0;
}

static int no_entry(void *arg, uint64_t position, uint32_t precinct, const uint8_t *bytes, size_t len)
{
	return 0;
}

Test(storage_merkle, a_lost_journal_end_is_reported)
{
	struct bal_store *s = fx_open_default();
	commit_leaves(s, 0, 5);
	struct bal_tree_head h = {.tree_size = 5, .timestamp_ms = 1};
	bal_store_close(s);
	fx_delete("journal", 5);

	s = fx_open_default();
	cr_assert_eq(bal_store_position(s), 4);
	char why[256] = "";
	static const struct bal_recovery_ops ops = {.slice = no_slice, .entry = no_entry};
	cr_assert_eq(bal_store_recover(s, &ops, NULL, NULL, why, sizeof(why)), BAL_ECORRUPT);
	cr_assert_not_null(strstr(why, "the log covers position 5, the journal ends at 4: journal records 5..5 are "
	                               "missing"),
	                   "%s", why);
	cr_assert_eq(bal_store_wbegin(s), BAL_ECORRUPT, "nothing is appended after the lost records");
	cr_assert_eq(bal_store_put_head(s, &h), -EINVAL, "no txn");
	expect_root(s, 4); /* what is left still proves */
	bal_store_close(s);
}

/* ---- heads ------------------------------------------------------------------------------ */

static void expect_head(struct bal_store *s, uint64_t ask, const struct bal_tree_head *want)
{
	struct bal_tree_head got;
	memset(&got, 0, sizeof(got));
	int rc = bal_store_head(s, ask, &got);
	cr_assert_eq(rc, 0, "head %llu: %s", (unsigned long long)ask, bal_strerror(rc));
	cr_assert_eq(got.tree_size, want->tree_size);
	cr_assert_eq(got.timestamp_ms, want->timestamp_ms);
	cr_assert_arr_eq(got.root, want->root, H);
	cr_assert_arr_eq(got.signature, want->signature, 64);
}

/* Appends `k` records in the open txn and makes a head of the result. */
static void make_head(struct bal_store *s, uint64_t *n, uint64_t k, uint64_t ts, struct bal_tree_head *h)
{
	for (uint64_t i = 0; i < k; i++)
		append_leaf(s, (*n)++, 0);
	*h = (struct bal_tree_head){.tree_size = *n, .timestamp_ms = ts};
	cr_assert_eq(bal_store_tree_wroot(s, h->root), 0);
	fx_fill(h->signature, 64, (uint32_t)ts);
}

Test(storage_merkle, one_head_per_size)
{
	struct bal_store *s = fx_open_default();
	struct bal_tree_head h0, h3, h5, bad, got;
	uint64_t n = 0;

	cr_assert_eq(bal_store_head(s, 0, &got), -ENOENT, "no head yet");
	cr_assert_eq(bal_store_wbegin(s), 0);
	make_head(s, &n, 0, 100, &h0);
	cr_assert_eq(bal_store_put_head(s, &h0), 0, "the empty log may be signed");
	make_head(s, &n, 3, 103, &h3);
	bad = h3;
	bad.tree_size = 2;
	cr_assert_eq(bal_store_put_head(s, &bad), -EINVAL, "not the txn's size");
	bad = h3;
	bad.root[0] ^= 1;
	cr_assert_eq(bal_store_put_head(s, &bad), -EINVAL, "not the txn's root");
	cr_assert_eq(bal_store_put_head(s, &h3), 0);
	cr_assert_eq(bal_store_put_head(s, &h3), -EEXIST, "one head per size");
	cr_assert_eq(bal_store_head(s, 0, &got), -ENOENT, "not committed yet");
	cr_assert_eq(bal_store_wcommit(s), 0, "the refusals left the txn alive");
	expect_head(s, 0, &h3);
	expect_head(s, 3, &h3);
	cr_assert_eq(bal_store_head(s, 2, &got), -ENOENT);

	/* The latest size again, in a txn without appends: refused, the txn lives on. */
	cr_assert_eq(bal_store_wbegin(s), 0);
	cr_assert_eq(bal_store_put_head(s, &h3), -EEXIST);
	cr_assert_eq(bal_store_wcommit(s), 0);

	/* An aborted head is gone; its size can be signed again. */
	uint64_t before = n;
	cr_assert_eq(bal_store_wbegin(s), 0);
	make_head(s, &n, 2, 105, &h5);
	cr_assert_eq(bal_store_put_head(s, &h5), 0);
	bal_store_wabort(s);
	n = before;
	expect_head(s, 0, &h3);
	cr_assert_eq(bal_store_head(s, 5, &got), -ENOENT);
	cr_assert_eq(bal_store_wbegin(s), 0);
	make_head(s, &n, 2, 106, &h5);
	cr_assert_eq(bal_store_put_head(s, &h5), 0);
	cr_assert_eq(bal_store_wcommit(s), 0);
	expect_head(s, 0, &h5);
	bal_store_close(s);

	s = fx_open_default();
	expect_head(s, 0, &h5);
	expect_head(s, 5, &h5);
	expect_head(s, 3, &h3);
	cr_assert_eq(bal_store_wbegin(s), 0);
	cr_assert_eq(bal_store_put_head(s, &h5), -EEXIST, "kept across a reopen");
	bal_store_wabort(s);
	bal_store_close(s);

	/* A damaged head is reported, not handed out. */
	fx_put("heads", 5, "short", 5);
	s = fx_open_default();
	cr_assert_eq(bal_store_head(s, 0, &got), BAL_ECORRUPT);
	cr_assert_eq(bal_store_head(s, 5, &got), BAL_ECORRUPT);
	expect_head(s, 3, &h3);
	bal_store_close(s);
}

/* ---- arguments ------------------------------------------------------------------------ */

Test(storage_merkle, rejects_sizes_and_positions_out_of_range)
{
	struct bal_store *s = fx_open_default();
	static struct bal_receipt r;
	uint8_t path[BAL_TREE_MAX_PATH][H];
	hash_t root;
	unsigned np = 99;

	cr_assert_eq(bal_store_tree_root(s, 0, root), -EINVAL);
	cr_assert_eq(bal_store_tree_root(s, 1, root), -EINVAL, "an empty log");
	cr_assert_eq(bal_store_tree_path(s, 1, 1, &r), -EINVAL);
	cr_assert_eq(bal_store_tree_consistency(s, 1, 1, path, &np), -EINVAL);
	cr_assert_eq(bal_store_tree_wroot(s, root), -EINVAL, "no txn");
	cr_assert_eq(bal_store_tree_wpath(s, 1, &r), -EINVAL, "no txn");

	uint64_t n = commit_leaves(s, 0, 3);
	cr_assert_eq(bal_store_tree_root(s, 0, root), -EINVAL);
	cr_assert_eq(bal_store_tree_root(s, n + 1, root), -EINVAL);
	cr_assert_eq(bal_store_tree_path(s, 0, 3, &r), -EINVAL);
	cr_assert_eq(bal_store_tree_path(s, 4, 3, &r), -EINVAL);
	cr_assert_eq(bal_store_tree_path(s, 2, 4, &r), -EINVAL);
	cr_assert_eq(bal_store_tree_consistency(s, 0, 2, path, &np), -EINVAL);
	cr_assert_eq(bal_store_tree_consistency(s, 3, 2, path, &np), -EINVAL);
	cr_assert_eq(bal_store_tree_consistency(s, 2, 4, path, &np), -EINVAL);
	cr_assert_eq(np, 99, "nothing written on failure");
	cr_assert_eq(bal_store_tree_consistency(s, 3, 3, path, &np), 0);
	cr_assert_eq(np, 0, "a tree is consistent with itself, no proof needed");
	expect_path(s, 0, 1);

	cr_assert_eq(bal_store_wbegin(s), 0);
	append_leaf(s, n, 0);
	append_leaf(s, n + 1, 0);
	cr_assert_eq(bal_store_tree_wpath(s, 0, &r), -EINVAL);
	cr_assert_eq(bal_store_tree_wpath(s, n, &r), -EINVAL, "committed before this txn");
	cr_assert_eq(bal_store_tree_wpath(s, n + 3, &r), -EINVAL, "not appended");
	cr_assert_eq(bal_store_tree_root(s, n + 1, root), -EINVAL, "not committed");
	expect_wtxn(s, n, n + 2);
	bal_store_wabort(s);
	bal_store_close(s);
}
