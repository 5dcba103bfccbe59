/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests for the observer's log checks (client/logcheck.c) against a naive,
 * recursive RFC 6962 written here from the RFC's definitions (MTH, PATH,
 * SUBPROOF/PROOF): every tree size 1..200 with every leaf and every earlier
 * size, random larger cases, and tampered proofs, indices, sizes and roots,
 * which must all fail. Also the tree head message and signature, the JSON
 * forms and the key files.
 */
#include "client/logcheck.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAXN 200

typedef uint8_t hash_t[BAL_HASH_BYTES];

/* ---- the naive reference: RFC 6962 section 2.1, recursively --------------- */

static void ref_leaf(const uint8_t *d, size_t len, hash_t out)
{
	uint8_t buf[512];
	cr_assert_leq(len, sizeof(buf) - 1);
	buf[0] = 0x00;
	memcpy(buf + 1, d, len);
	crypto_hash_sha256(out, buf, len + 1);
}

static void ref_node(const hash_t l, const hash_t r, hash_t out)
{
	uint8_t buf[65];
	buf[0] = 0x01;
	memcpy(buf + 1, l, 32);
	memcpy(buf + 33, r, 32);
	crypto_hash_sha256(out, buf, sizeof(buf));
}

/* The largest power of two smaller than n (n > 1). */
static size_t split(size_t n)
{
	size_t k = 1;
	while (k * 2 < n)
		k *= 2;
	return k;
}

static hash_t leaves[4096];

/* MTH answers already computed for a range of `leaves`, so that the
 * exhaustive tests stay fast; the recursion itself is the RFC's. Emptied
 * whenever the leaves change. */
#define MEMO_SLOTS (1u << 17)
static struct {
	uint32_t key; /* start << 13 | n, 0: empty */
	hash_t h;
} memo[MEMO_SLOTS];

static uint32_t memo_key(const hash_t *d, size_t n)
{
	if (d < leaves || d >= leaves + 4096 || n >= 8192)
		return 0;
	return (uint32_t)(d - leaves) << 13 | (uint32_t)n;
}

/* MTH(D[n]) over leaf hashes. */
static void mth(const hash_t *d, size_t n, hash_t out)
{
	uint32_t key = n > 1 ? memo_key(d, n) : 0, slot = (key * 2654435761u) % MEMO_SLOTS;
	for (; key && memo[slot].key; slot = (slot + 1) % MEMO_SLOTS) {
		if (memo[slot].key == key) {
			memcpy(out, memo[slot].h, 32);
			return;
		}
	}
	if (n == 0) {
		crypto_hash_sha256(out, NULL, 0);
		return;
	}
	if (n == 1) {
		memcpy(out, d[0], 32);
		return;
	}
	size_t k = split(n);
	hash_t l, r;
	mth(d, k, l);
	mth(d + k, n - k, r);
	ref_node(l, r, out);
	if (key) {
		memo[slot].key = key;
		memcpy(memo[slot].h, out, 32);
	}
}

/* PATH(m, D[n]), bottom up; returns its length. */
static size_t ref_path(size_t m, const hash_t *d, size_t n, hash_t *out)
{
	if (n <= 1)
		return 0;
	size_t k = split(n), len;
	if (m < k) {
		len = ref_path(m, d, k, out);
		mth(d + k, n - k, out[len]);
	} else {
		len = ref_path(m - k, d + k, n - k, out);
		mth(d, k, out[len]);
	}
	return len + 1;
}

/* SUBPROOF(m, D[n], b). */
static size_t subproof(size_t m, const hash_t *d, size_t n, bool b, hash_t *out)
{
	if (m == n) {
		if (b)
			return 0;
		mth(d, n, out[0]);
		return 1;
	}
	size_t k = split(n), len;
	if (m <= k) {
		len = subproof(m, d, k, b, out);
		mth(d + k, n - k, out[len]);
	} else {
		len = subproof(m - k, d + k, n - k, false, out);
		mth(d, k, out[len]);
	}
	return len + 1;
}

/* PROOF(m, D[n]) for 0 < m < n (empty for m == n). */
static size_t ref_proof(size_t m, const hash_t *d, size_t n, hash_t *out)
{
	return subproof(m, d, n, true, out);
}

static void make_leaves(size_t n, unsigned seed)
{
	memset(memo, 0, sizeof(memo));
	srand(seed);
	for (size_t i = 0; i < n; i++) {
		uint8_t data[40];
		size_t len = (size_t)rand() % sizeof(data);
		for (size_t j = 0; j < len; j++)
			data[j] = (uint8_t)rand();
		ref_leaf(data, len, leaves[i]);
	}
}

static void setup(void)
{
	cr_assert_geq(sodium_init(), 0);
}

/* ---- hashes -------------------------------------------------------------- */

TestSuite(logcheck, .init = setup);

Test(logcheck, leaf_and_node_hashes_are_rfc6962)
{
	hash_t a, b, n1, n2;
	const uint8_t data[] = "journaled bytes";
	bal_logcheck_leaf_hash(data, sizeof(data) - 1, a);
	ref_leaf(data, sizeof(data) - 1, b);
	cr_assert_arr_eq(a, b, 32);
	bal_logcheck_node_hash(a, b, n1);
	ref_node(a, b, n2);
	cr_assert_arr_eq(n1, n2, 32);
	/* out may alias an input */
	bal_logcheck_node_hash(a, b, a);
	cr_assert_arr_eq(a, n2, 32);
}

/* The RFC 6962 test tree used by Certificate Transparency implementations. */
Test(logcheck, roots_of_the_rfc6962_test_tree)
{
	static const struct {
		const char *data;
		size_t len;
	} in[8] = {{"", 0},
	           {"\x00", 1},
	           {"\x10", 1},
	           {"\x20\x21", 2},
	           {"\x30\x31", 2},
	           {"\x40\x41\x42\x43", 4},
	           {"\x50\x51\x52\x53\x54\x55\x56\x57", 8},
	           {"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f", 16}};
	static const char *const roots[8] = {"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
	                                     "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
	                                     "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
	                                     "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
	                                     "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
	                                     "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
	                                     "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
	                                     "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"};
	struct bal_logcheck_tree t;
	bal_logcheck_tree_init(&t);
	hash_t d[8], root, want;
	char hex[65];
	bal_logcheck_tree_root(&t, root);
	bal_logcheck_hex(root, 32, hex);
	cr_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "empty tree");
	for (int i = 0; i < 8; i++) {
		bal_logcheck_leaf_hash((const uint8_t *)in[i].data, in[i].len, d[i]);
		bal_logcheck_tree_add(&t, d[i]);
		bal_logcheck_tree_root(&t, root);
		cr_assert_eq(bal_logcheck_unhex(roots[i], want, 32), 0);
		bal_logcheck_hex(root, 32, hex);
		cr_assert_arr_eq(root, want, 32, "root of %d leaves: %s", i + 1, hex);
		mth(d, (size_t)i + 1, root);
		cr_assert_arr_eq(root, want, 32, "reference root of %d leaves", i + 1);
	}
}

Test(logcheck, streamed_root_equals_mth_for_every_size)
{
	make_leaves(4096, 7);
	struct bal_logcheck_tree t;
	bal_logcheck_tree_init(&t);
	hash_t a, b;
	for (size_t n = 1; n <= 4096; n++) {
		bal_logcheck_tree_add(&t, leaves[n - 1]);
		if (n > MAXN && n % 97 != 0 && n != 4096)
			continue;
		bal_logcheck_tree_root(&t, a);
		mth(leaves, n, b);
		cr_assert_arr_eq(a, b, 32, "size %zu", n);
		cr_assert_eq(t.size, n);
	}
}

Test(logcheck, hex_round_trip_and_refusals)
{
	uint8_t b[4] = {0x00, 0xab, 0x7f, 0xff}, c[4];
	char hex[9];
	bal_logcheck_hex(b, 4, hex);
	cr_assert_str_eq(hex, "00ab7fff");
	cr_assert_eq(bal_logcheck_unhex("00AB7fff", c, 4), 0);
	cr_assert_arr_eq(b, c, 4);
	cr_assert_eq(bal_logcheck_unhex("00ab7ff", c, 4), -EINVAL);
	cr_assert_eq(bal_logcheck_unhex("00ab7fff0", c, 4), -EINVAL);
	cr_assert_eq(bal_logcheck_unhex("00ab7fgf", c, 4), -EINVAL);
	cr_assert_eq(bal_logcheck_unhex(" 0ab7fff", c, 4), -EINVAL);
	cr_assert_eq(bal_logcheck_unhex(NULL, c, 4), -EINVAL);
}

/* ---- inclusion ----------------------------------------------------------- */

static int incl(uint64_t m, uint64_t n, const hash_t leaf, const hash_t *path, size_t np, const hash_t root)
{
	char why[256];
	return bal_logcheck_inclusion_verify(m, n, leaf, (const uint8_t(*)[BAL_HASH_BYTES])path, np, root, why,
	                                     sizeof(why));
}

Test(logcheck, inclusion_of_every_leaf_of_every_size_to_200)
{
	make_leaves(MAXN, 1);
	hash_t path[64], root, got;
	for (size_t n = 1; n <= MAXN; n++) {
		mth(leaves, n, root);
		for (size_t m = 0; m < n; m++) {
			size_t np = ref_path(m, leaves, n, path);
			char why[256] = "";
			cr_assert_eq(bal_logcheck_inclusion_root(m, n, leaves[m], (const uint8_t(*)[32])path, np, got,
			                                         why, sizeof(why)),
			             0, "leaf %zu of %zu: %s", m, n, why);
			cr_assert_arr_eq(got, root, 32, "leaf %zu of %zu", m, n);
			cr_assert_eq(incl(m, n, leaves[m], path, np, root), 0);
		}
	}
}

Test(logcheck, inclusion_in_random_large_trees)
{
	make_leaves(4096, 2);
	srand(99);
	hash_t path[64], root;
	for (int k = 0; k < 40; k++) {
		size_t n = 201 + (size_t)rand() % (4096 - 201);
		mth(leaves, n, root);
		for (int j = 0; j < 10; j++) {
			size_t m = (size_t)rand() % n;
			size_t np = ref_path(m, leaves, n, path);
			cr_assert_eq(incl(m, n, leaves[m], path, np, root), 0, "leaf %zu of %zu", m, n);
			cr_assert_neq(incl(m, n, leaves[(m + 1) % n], path, np, root), 0);
		}
	}
}

Test(logcheck, tampered_inclusion_proofs_fail)
{
	const size_t maxn = 48;
	make_leaves(maxn + 10, 3);
	hash_t path[64], root, roots[96], bad[65];
	for (size_t n = 1; n <= maxn + 8; n++)
		mth(leaves, n, roots[n]);
	for (size_t n = 1; n <= maxn; n++) {
		memcpy(root, roots[n], 32);
		for (size_t m = 0; m < n; m++) {
			size_t np = ref_path(m, leaves, n, path);
			/* every flipped byte of the proof */
			for (size_t i = 0; i < np; i++) {
				for (size_t b = 0; b < 32; b++) {
					path[i][b] ^= 0x01;
					cr_assert_eq(incl(m, n, leaves[m], path, np, root), BAL_ECORRUPT,
					             "leaf %zu of %zu, byte %zu of hash %zu flipped", m, n, b, i);
					path[i][b] ^= 0x01;
				}
			}
			/* the wrong leaf, the wrong root */
			cr_assert_neq(incl(m, n, leaves[(m + 1) % (n + 1)], path, np, root), 0);
			hash_t r2;
			memcpy(r2, root, 32);
			r2[31] ^= 0x80;
			cr_assert_neq(incl(m, n, leaves[m], path, np, r2), 0);
			/* every other index */
			for (size_t m2 = 0; m2 < n + 2; m2++)
				if (m2 != m)
					cr_assert_neq(incl(m2, n, leaves[m], path, np, root), 0,
					              "proof of leaf %zu of %zu taken for leaf %zu", m, n, m2);
			/* other sizes, each with its own root */
			for (size_t n2 = 1; n2 <= n + 8; n2++)
				if (n2 != n)
					cr_assert_neq(incl(m, n2, leaves[m], path, np, roots[n2]), 0,
					              "proof of leaf %zu of %zu taken for size %zu", m, n, n2);
			/* a hash missing, one too many */
			if (np > 0) {
				cr_assert_neq(incl(m, n, leaves[m], path, np - 1, root), 0);
				cr_assert_neq(incl(m, n, leaves[m], path + 1, np - 1, root), 0);
			}
			memcpy(bad, path, np * 32);
			memcpy(bad[np], leaves[0], 32);
			cr_assert_neq(incl(m, n, leaves[m], bad, np + 1, root), 0);
		}
		/* an index at or beyond the size */
		cr_assert_eq(incl(n, n, leaves[0], path, 0, root), BAL_ECORRUPT);
	}
	cr_assert_eq(incl(0, 0, leaves[0], path, 0, root), BAL_ECORRUPT);
}

/* ---- consistency --------------------------------------------------------- */

static int cons(uint64_t m, uint64_t n, const hash_t r1, const hash_t r2, const hash_t *p, size_t np)
{
	char why[256];
	return bal_logcheck_consistency_verify(m, n, r1, r2, (const uint8_t(*)[BAL_HASH_BYTES])p, np, why, sizeof(why));
}

Test(logcheck, consistency_of_every_pair_of_sizes_to_200)
{
	make_leaves(MAXN, 4);
	hash_t proof[64], roots[MAXN + 1];
	for (size_t n = 0; n <= MAXN; n++)
		mth(leaves, n, roots[n]);
	for (size_t n = 1; n <= MAXN; n++) {
		for (size_t m = 1; m <= n; m++) {
			size_t np = ref_proof(m, leaves, n, proof);
			char why[256] = "";
			cr_assert_eq(bal_logcheck_consistency_verify(m, n, roots[m], roots[n],
			                                             (const uint8_t(*)[32])proof, np, why, sizeof(why)),
			             0, "%zu -> %zu (%zu hashes): %s", m, n, np, why);
		}
		/* the empty tree is a prefix of every tree */
		cr_assert_eq(cons(0, n, roots[0], roots[n], proof, 0), 0);
	}
}

Test(logcheck, consistency_in_random_large_trees)
{
	make_leaves(4096, 5);
	srand(1234);
	hash_t proof[64], r1, r2;
	for (int k = 0; k < 60; k++) {
		size_t n = 2 + (size_t)rand() % 4095, m = 1 + (size_t)rand() % (n - 1);
		mth(leaves, m, r1);
		mth(leaves, n, r2);
		size_t np = ref_proof(m, leaves, n, proof);
		cr_assert_eq(cons(m, n, r1, r2, proof, np), 0, "%zu -> %zu", m, n);
		cr_assert_neq(cons(m, n, r2, r1, proof, np), 0, "%zu -> %zu, roots swapped", m, n);
	}
}

Test(logcheck, tampered_consistency_proofs_fail)
{
	const size_t maxn = 48;
	make_leaves(maxn + 10, 6);
	hash_t proof[64], roots[80], bad[65];
	for (size_t n = 0; n <= maxn + 8; n++)
		mth(leaves, n, roots[n]);
	for (size_t n = 1; n <= maxn; n++) {
		for (size_t m = 1; m <= n; m++) {
			size_t np = ref_proof(m, leaves, n, proof);
			/* every flipped byte of the proof */
			for (size_t i = 0; i < np; i++) {
				for (size_t b = 0; b < 32; b++) {
					proof[i][b] ^= 0x04;
					cr_assert_eq(cons(m, n, roots[m], roots[n], proof, np), BAL_ECORRUPT,
					             "%zu -> %zu, byte %zu of hash %zu flipped", m, n, b, i);
					proof[i][b] ^= 0x04;
				}
			}
			/* a wrong first or second root */
			hash_t r;
			memcpy(r, roots[m], 32);
			r[0] ^= 1;
			cr_assert_neq(cons(m, n, r, roots[n], proof, np), 0, "%zu -> %zu, first root", m, n);
			memcpy(r, roots[n], 32);
			r[0] ^= 1;
			cr_assert_neq(cons(m, n, roots[m], r, proof, np), 0, "%zu -> %zu, second root", m, n);
			/* other sizes, each with its real root */
			for (size_t m2 = 1; m2 <= n + 8; m2++)
				if (m2 != m)
					cr_assert_neq(cons(m2, n, roots[m2], roots[n], proof, np), 0,
					              "proof %zu -> %zu taken for %zu -> %zu", m, n, m2, n);
			for (size_t n2 = 1; n2 <= maxn + 8; n2++)
				if (n2 != n && n2 >= m)
					cr_assert_neq(cons(m, n2, roots[m], roots[n2], proof, np), 0,
					              "proof %zu -> %zu taken for %zu -> %zu", m, n, m, n2);
			if (m < n) {
				/* the roots swapped, a hash missing, one too many */
				cr_assert_neq(cons(m, n, roots[n], roots[m], proof, np), 0);
				cr_assert_neq(cons(m, n, roots[m], roots[n], proof, np - 1), 0);
				cr_assert_neq(cons(m, n, roots[m], roots[n], proof + 1, np - 1), 0);
				memcpy(bad, proof, np * 32);
				memcpy(bad[np], roots[m], 32);
				cr_assert_neq(cons(m, n, roots[m], roots[n], bad, np + 1), 0);
			} else {
				/* equal sizes: an empty proof, equal roots */
				cr_assert_neq(cons(m, n, roots[m], roots[m - 1], proof, 0), 0);
				cr_assert_neq(cons(m, n, roots[m], roots[n], roots, 1), 0);
			}
		}
		cr_assert_eq(cons(n + 1, n, roots[n], roots[n], proof, 0), -EINVAL);
		cr_assert_neq(cons(0, n, roots[0], roots[n], roots, 1), 0, "from the empty tree: empty proof");
	}
}

/* ---- signed tree heads --------------------------------------------------- */

static void test_key(uint8_t pk[32], uint8_t sk[64], uint8_t fill)
{
	uint8_t seed[32];
	memset(seed, fill, sizeof(seed));
	crypto_sign_seed_keypair(pk, sk, seed);
}

static void sign_head(struct bal_tree_head *h, const char *election, const uint8_t sk[64])
{
	uint8_t msg[512];
	size_t n = bal_logcheck_head_message(h, election, msg, sizeof(msg));
	cr_assert_gt(n, 0);
	crypto_sign_detached(h->signature, NULL, msg, n, sk);
}

Test(logcheck, head_message_is_the_documented_bytes)
{
	cr_assert_str_eq(BAL_LOGCHECK_STH_LABEL, BAL_STH_LABEL, "the client's label is the daemon's contract");
	struct bal_tree_head h = {.tree_size = 0x0102030405060708ULL, .timestamp_ms = 0x1112131415161718ULL};
	for (int i = 0; i < 32; i++)
		h.root[i] = (uint8_t)(0xa0 + i);
	uint8_t msg[512];
	size_t n = bal_logcheck_head_message(&h, "kz-2023", msg, sizeof(msg));
	cr_assert_eq(n, 14 + 1 + 7 + 1 + 8 + 8 + 32);
	cr_assert_eq(n, BAL_STH_MESSAGE_BYTES(7));
	cr_assert_arr_eq(msg, "ballotd-sth-v1\0kz-2023\0", 23);
	const uint8_t sizes[16] = {1, 2, 3, 4, 5, 6, 7, 8, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18};
	cr_assert_arr_eq(msg + 23, sizes, 16);
	cr_assert_arr_eq(msg + 39, h.root, 32);
	cr_assert_eq(bal_logcheck_head_message(&h, "kz-2023", msg, n - 1), 0, "too small a buffer");
	char long_id[BAL_LOGCHECK_ID_MAX + 2];
	memset(long_id, 'x', sizeof(long_id) - 1);
	long_id[sizeof(long_id) - 1] = '\0';
	cr_assert_eq(bal_logcheck_head_message(&h, long_id, msg, sizeof(msg)), 0);
}

Test(logcheck, head_signature_binds_every_field)
{
	uint8_t pk[32], sk[64], pk2[32], sk2[64];
	test_key(pk, sk, 7);
	test_key(pk2, sk2, 8);
	struct bal_tree_head h = {.tree_size = 42, .timestamp_ms = 1700000000123ULL};
	memset(h.root, 0x5a, 32);
	sign_head(&h, "e1", sk);
	char why[256];
	cr_assert_eq(bal_logcheck_head_verify(&h, "e1", pk, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(bal_logcheck_head_verify(&h, "e2", pk, why, sizeof(why)), BAL_EAUTH, "another election");
	cr_assert_eq(bal_logcheck_head_verify(&h, "e", pk, why, sizeof(why)), BAL_EAUTH);
	cr_assert_eq(bal_logcheck_head_verify(&h, "e1", pk2, why, sizeof(why)), BAL_EAUTH, "another key");
	cr_assert(strstr(why, "does not verify"), "%s", why);
	struct bal_tree_head t = h;
	t.tree_size++;
	cr_assert_eq(bal_logcheck_head_verify(&t, "e1", pk, why, sizeof(why)), BAL_EAUTH);
	t = h;
	t.timestamp_ms--;
	cr_assert_eq(bal_logcheck_head_verify(&t, "e1", pk, why, sizeof(why)), BAL_EAUTH);
	for (int i = 0; i < 32; i++) {
		t = h;
		t.root[i] ^= 0x10;
		cr_assert_eq(bal_logcheck_head_verify(&t, "e1", pk, why, sizeof(why)), BAL_EAUTH);
	}
	for (int i = 0; i < 64; i++) {
		t = h;
		t.signature[i] ^= 0x01;
		cr_assert_eq(bal_logcheck_head_verify(&t, "e1", pk, why, sizeof(why)), BAL_EAUTH);
	}
}

Test(logcheck, receipt_checks_signature_then_inclusion)
{
	make_leaves(13, 9);
	uint8_t pk[32], sk[64], pk2[32], sk2[64];
	test_key(pk, sk, 1);
	test_key(pk2, sk2, 2);
	struct bal_receipt r = {.leaf_index = 9};
	memcpy(r.leaf_hash, leaves[9], 32);
	r.head.tree_size = 13;
	r.head.timestamp_ms = 5;
	mth(leaves, 13, r.head.root);
	r.npath = (unsigned)ref_path(9, leaves, 13, (hash_t *)r.path);
	sign_head(&r.head, "el", sk);
	char why[256];
	cr_assert_eq(bal_logcheck_receipt_verify(&r, "el", pk, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(bal_logcheck_receipt_verify(&r, "el", pk2, why, sizeof(why)), BAL_EAUTH);
	struct bal_receipt t = r;
	t.leaf_hash[3] ^= 1;
	cr_assert_eq(bal_logcheck_receipt_verify(&t, "el", pk, why, sizeof(why)), BAL_ECORRUPT);
	cr_assert(strstr(why, "inclusion proof"), "%s", why);
	t = r;
	t.leaf_index = 8;
	cr_assert_eq(bal_logcheck_receipt_verify(&t, "el", pk, why, sizeof(why)), BAL_ECORRUPT);
	/* a proof to another root, signed properly: still not included */
	t = r;
	mth(leaves, 12, t.head.root);
	sign_head(&t.head, "el", sk);
	cr_assert_eq(bal_logcheck_receipt_verify(&t, "el", pk, why, sizeof(why)), BAL_ECORRUPT);
	/* another size, signed properly, same root: the path's shape no longer
	 * fits (sizes 13 to 16 share it for leaf 9; the signature binds those) */
	t = r;
	t.head.tree_size = 10;
	sign_head(&t.head, "el", sk);
	cr_assert_neq(bal_logcheck_receipt_verify(&t, "el", pk, why, sizeof(why)), 0);
}

/* ---- JSON ---------------------------------------------------------------- */

Test(logcheck, receipt_json_round_trip)
{
	make_leaves(5, 10);
	struct bal_receipt r = {.leaf_index = 3, .head = {.tree_size = 5, .timestamp_ms = 77}};
	memcpy(r.leaf_hash, leaves[3], 32);
	mth(leaves, 5, r.head.root);
	memset(r.head.signature, 0xee, 64);
	r.npath = (unsigned)ref_path(3, leaves, 5, (hash_t *)r.path);
	json_t *o = json_object();
	cr_assert_eq(bal_logcheck_receipt_to_json(&r, o), 0);
	char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	cr_assert(strstr(text, "\"leaf_index\":3") && strstr(text, "\"tree_size\":5") &&
	                  strstr(text, "\"signature\":\"eeee"),
	          "%s", text);
	free(text);
	struct bal_receipt back;
	char why[256];
	cr_assert_eq(bal_logcheck_receipt_from_json(o, &back, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(memcmp(&back, &r, sizeof(r)), 0);

	/* as the daemon's JSON ack: {"status", "position", "receipt": {...}} */
	json_t *ack = json_pack("{ss si sO}", "status", "ACCEPTED", "position", 4, "receipt", o);
	memset(&back, 0, sizeof(back));
	cr_assert_eq(bal_logcheck_receipt_from_json(ack, &back, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(memcmp(&back, &r, sizeof(r)), 0);
	json_decref(ack);

	/* every member is required and checked */
	static const char *const members[] = {"leaf_index", "leaf_hash", "tree_size", "timestamp_ms",
	                                      "root_hash",  "signature", "audit_path"};
	for (size_t i = 0; i < sizeof(members) / sizeof(members[0]); i++) {
		json_t *c = json_deep_copy(o);
		json_object_del(c, members[i]);
		cr_assert_eq(bal_logcheck_receipt_from_json(c, &back, why, sizeof(why)), -EINVAL, "%s", members[i]);
		cr_assert(strstr(why, members[i]), "%s", why);
		json_object_set_new(c, members[i], json_string("zz"));
		cr_assert_eq(bal_logcheck_receipt_from_json(c, &back, why, sizeof(why)), -EINVAL, "%s", members[i]);
		json_decref(c);
	}
	json_t *c = json_deep_copy(o);
	json_object_set_new(c, "tree_size", json_integer(-1));
	cr_assert_eq(bal_logcheck_receipt_from_json(c, &back, why, sizeof(why)), -EINVAL);
	json_object_set_new(c, "tree_size", json_integer(5));
	json_object_set_new(c, "root_hash", json_string("abcd"));
	cr_assert_eq(bal_logcheck_receipt_from_json(c, &back, why, sizeof(why)), -EINVAL);
	json_decref(c);
	c = json_deep_copy(o);
	json_array_append_new(json_object_get(c, "audit_path"), json_integer(1));
	cr_assert_eq(bal_logcheck_receipt_from_json(c, &back, why, sizeof(why)), -EINVAL);
	json_decref(c);
	c = json_deep_copy(o);
	json_t *long_path = json_array();
	for (int i = 0; i <= BAL_TREE_MAX_PATH; i++)
		json_array_append_new(long_path, json_string("00000000000000000000000000000000"
		                                             "00000000000000000000000000000000"));
	json_object_set_new(c, "audit_path", long_path);
	cr_assert_eq(bal_logcheck_receipt_from_json(c, &back, why, sizeof(why)), -EINVAL);
	json_decref(c);
	json_decref(o);
}

Test(logcheck, head_json_round_trip)
{
	struct bal_tree_head h = {.tree_size = 1ULL << 40, .timestamp_ms = 1700000000000ULL}, back;
	memset(h.root, 0x01, 32);
	memset(h.signature, 0xfe, 64);
	json_t *o = json_object();
	cr_assert_eq(bal_logcheck_head_to_json(&h, o), 0);
	char why[256];
	cr_assert_eq(bal_logcheck_head_from_json(o, &back, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(memcmp(&h, &back, sizeof(h)), 0);
	cr_assert_eq(bal_logcheck_head_from_json(json_object_get(o, "tree_size"), &back, why, sizeof(why)), -EINVAL);
	json_decref(o);
}

/* ---- keys ---------------------------------------------------------------- */

Test(logcheck, key_files_are_written_once_with_their_modes)
{
	char dir[] = "/tmp/logcheck-XXXXXX";
	cr_assert(mkdtemp(dir));
	char path[128], pub[160], why[512];
	snprintf(path, sizeof(path), "%s/log.key", dir);
	snprintf(pub, sizeof(pub), "%s.pub", path);
	uint8_t seed[32], pk[32], pk2[32], sk[64];
	memset(seed, 0x42, sizeof(seed));
	cr_assert_eq(bal_logcheck_key_write(path, seed, pk, why, sizeof(why)), 0, "%s", why);
	crypto_sign_seed_keypair(pk2, sk, seed);
	cr_assert_arr_eq(pk, pk2, 32);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	cr_assert_eq(stat(pub, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0644);
	char text[80] = "";
	FILE *f = fopen(path, "r");
	cr_assert(fgets(text, sizeof(text), f));
	fclose(f);
	cr_assert_str_eq(text, "4242424242424242424242424242424242424242424242424242424242424242\n");

	/* the public key as hex, as a file */
	char hex[65];
	bal_logcheck_hex(pk, 32, hex);
	memset(pk2, 0, 32);
	cr_assert_eq(bal_logcheck_key_parse(hex, pk2, why, sizeof(why)), 0, "%s", why);
	cr_assert_arr_eq(pk, pk2, 32);
	memset(pk2, 0, 32);
	cr_assert_eq(bal_logcheck_key_parse(pub, pk2, why, sizeof(why)), 0, "%s", why);
	cr_assert_arr_eq(pk, pk2, 32);
	cr_assert_neq(bal_logcheck_key_parse("abc", pk2, why, sizeof(why)), 0);
	char missing[200];
	snprintf(missing, sizeof(missing), "%s/nothing", dir);
	cr_assert_eq(bal_logcheck_key_parse(missing, pk2, why, sizeof(why)), -ENOENT);

	/* never overwritten: neither the secret nor the public file */
	cr_assert_eq(bal_logcheck_key_write(path, NULL, pk2, why, sizeof(why)), -EEXIST);
	cr_assert(strstr(why, "not overwritten"), "%s", why);
	f = fopen(path, "r");
	cr_assert(fgets(text, sizeof(text), f));
	fclose(f);
	cr_assert_eq(text[0], '4', "the existing key is kept");
	char other[160];
	snprintf(other, sizeof(other), "%s/other.key", dir);
	char other_pub[200];
	snprintf(other_pub, sizeof(other_pub), "%s.pub", other);
	f = fopen(other_pub, "w");
	fputs("keep\n", f);
	fclose(f);
	cr_assert_eq(bal_logcheck_key_write(other, NULL, pk2, why, sizeof(why)), -EEXIST);
	cr_assert_neq(access(other, F_OK), 0, "no secret file without its public file");

	/* random seeds differ */
	unlink(other_pub);
	cr_assert_eq(bal_logcheck_key_write(other, NULL, pk2, why, sizeof(why)), 0, "%s", why);
	cr_assert(memcmp(pk, pk2, 32) != 0);
	unlink(other);
	unlink(other_pub);
	unlink(path);
	unlink(pub);
	rmdir(dir);
}
