/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The log: an RFC 6962 Merkle tree over the journal, and the signed tree
 * heads kept for it. Leaf i is journal position i + 1 and hashes the exact
 * bytes given to bal_store_append(): leaf = SHA-256(0x00 || bytes), node =
 * SHA-256(0x01 || left || right), the tree of n leaves splits at the largest
 * power of two below n. Depends on LMDB, OpenSSL's libcrypto (SHA-256) and libc.
 *
 * Layout. Every perfect subtree (2^h leaves starting at a multiple of 2^h:
 * node (h, i) covers leaves [i * 2^h, (i + 1) * 2^h)) is stored once, when
 * its last leaf is appended, in "tree" under its post-order index
 *     post(h, i) = 2L - popcount(L) - 1 - (ctz(L) - h),  L = (i + 1) * 2^h.
 * Nodes complete in exactly that order as leaves are appended, so every put
 * is an MDB_APPEND (LMDB fills each page instead of splitting it), and the
 * tree of n leaves holds nodes 0 .. 2n - popcount(n) - 1: its size is
 * derived from the last key, with no counter to keep in step. Appending
 * leaf n stores the leaf and the 0..63 nodes it completes: about two puts
 * and one node hash per leaf on average. The journal append and the tree
 * nodes are in one txn, so the log is exactly as durable as the journal.
 *
 * Why perfect subtrees only: any tree size n is a chain of the perfect
 * subtrees of n's binary decomposition (one per set bit of n, largest
 * first), and root(n) = H(P1, H(P2, ... H(Pk-1, Pk))). That right spine is
 * the only part of an old tree that is not stored; it is recomputed from at
 * most 64 reads. Every other node of any proof, for any size, is a stored
 * perfect subtree: a root, an audit path or a consistency proof takes
 * O(log n) reads, each node read once.
 *
 * The committer reads nothing for the tree. It keeps in memory the
 * "frontier" of the committed tree (the perfect subtrees of its
 * decomposition, at most 64 hashes) and every node the open write txn
 * created, in post-order from the txn's first one. Any node a new leaf or
 * a receipt of this txn needs is one of those: a perfect subtree whose last
 * leaf is in the txn was created by it, and one wholly before the txn's
 * first leaf a, that is a left sibling on the path of a leaf >= a or a
 * piece of a later tree's decomposition, has a parent reaching beyond a,
 * so it is a frontier subtree of a. An aborted or failed txn therefore
 * leaves nothing to undo: the frontier changes only after a commit.
 *
 * Heads: "heads" maps tree_size (u64) to timestamp_ms (u64) + root (32) +
 * signature (64), one per size, appended in key order.
 */
#include "storage/store_lmdb.h"

#include <errno.h>
/* The SHA256_* functions are deprecated in OpenSSL 3: see sha256_2(). */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#define HASH BAL_HASH_BYTES
/* Leaves hashed per txn when the log is extended from the journal at open:
 * bounds the node buffer (64 bytes a leaf) however long the journal is. */
#define REBUILD_CHUNK ((uint64_t)1 << 16)
#define REBUILD_MORE  1 /* a chunk is full: commit it and go on */
#define WNODES_MIN    256u

/* ---- indices -------------------------------------------------------------- */

static unsigned ctz64(uint64_t x)
{
	return (unsigned)__builtin_ctzll(x);
}

/* Highest set bit of x != 0. */
static unsigned top64(uint64_t x)
{
	return 63u - (unsigned)__builtin_clzll(x);
}

/* Nodes stored for a tree of n leaves (n < 2^63): nodes(n + 1) - nodes(n) =
 * 1 + ctz(n + 1), so it is strictly increasing. */
static uint64_t nodes(uint64_t n)
{
	return 2 * n - (uint64_t)__builtin_popcountll(n);
}

/* Post-order index of node (h, i); leaf n is post(0, n) = nodes(n). */
static uint64_t post(unsigned h, uint64_t i)
{
	uint64_t l = (i + 1) << h;
	return nodes(l) - 1 - (ctz64(l) - h);
}

/* The n with nodes(n) == count, or UINT64_MAX if none. */
static uint64_t leaves_of(uint64_t count)
{
	uint64_t lo = count / 2, hi = count; /* nodes(n) is in [n, 2n] */
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (nodes(mid) < count)
			lo = mid + 1;
		else
			hi = mid;
	}
	return nodes(lo) == count ? lo : UINT64_MAX;
}

/* ---- hashes --------------------------------------------------------------- */

/*
 * SHA-256 through OpenSSL's SHA256_* functions, which use the CPU's SHA
 * extensions where it has them (libsodium's portable code takes about four
 * times as long on a 300-byte record, and the committer hashes every one).
 * OpenSSL 3 marks them deprecated in favour of EVP, but an EVP digest
 * allocates a context on every initialisation, and nothing on the
 * committer's path may allocate per batch; these work on a context on the
 * stack.
 */
static void sha256_2(uint8_t out[HASH], const void *a, size_t alen, const void *b, size_t blen)
{
	SHA256_CTX ctx;
	bal_require(SHA256_Init(&ctx) == 1 && (!alen || SHA256_Update(&ctx, a, alen) == 1) &&
	            (!blen || SHA256_Update(&ctx, b, blen) == 1) && SHA256_Final(out, &ctx) == 1);
}

static void leaf_hash(uint8_t out[HASH], const uint8_t *bytes, size_t len)
{
	static const uint8_t zero = 0x00;
	sha256_2(out, &zero, 1, bytes, len);
}

/* `out` may alias either input. */
static void node_hash(uint8_t out[HASH], const uint8_t left[HASH], const uint8_t right[HASH])
{
	uint8_t buf[1 + 2 * HASH];
	buf[0] = 0x01;
	memcpy(buf + 1, left, HASH);
	memcpy(buf + 1 + HASH, right, HASH);
	sha256_2(out, buf, sizeof(buf), NULL, 0);
}

/* ---- where nodes come from ------------------------------------------------ */

/*
 * A source of complete nodes: the read txn `txn`, or (txn NULL) the
 * committer's memory for the open write txn, whose first leaf is `a`; then
 * `spine`, if not NULL, is the spine of the size being asked about (see
 * spine_below()).
 */
struct src {
	struct bal_store *s;
	MDB_txn *txn;
	uint64_t a;
	const uint8_t (*spine)[HASH];
};

/*
 * Write side: node (h, i), complete in the tree of n leaves that the txn
 * whose first leaf is `a` has built; see the top comment for why it is at
 * hand.
 */
static const uint8_t *wnode(const struct bal_store *s, uint64_t a, uint64_t n, unsigned h, uint64_t i)
{
	uint64_t idx = post(h, i), base = nodes(a);
	if (idx >= base) {
		bal_require(idx < nodes(n));
		return s->wnodes[idx - base];
	}
	bal_require((a >> h & 1) && i == (a >> h) - 1);
	return s->front[h];
}

static int node(const struct src *c, unsigned h, uint64_t i, uint8_t out[HASH])
{
	if (!c->txn) {
		memcpy(out, wnode(c->s, c->a, c->s->wposition, h, i), HASH);
		return 0;
	}
	uint8_t k[8];
	MDB_val key = {8, k}, val;
	bal__put_be64(k, post(h, i));
	int rc = bal__store_err(mdb_get(c->txn, c->s->tree, &key, &val));
	if (rc == -ENOENT || (rc == 0 && val.mv_size != HASH))
		return BAL_ECORRUPT; /* a committed size's node is missing or damaged */
	if (rc != 0)
		return rc;
	memcpy(out, val.mv_data, HASH);
	return 0;
}

/*
 * The right spine of the tree of n leaves: for the set bits h of n below
 * `below` (at least one), the perfect subtrees P_h = node (h, n / 2^h - 1)
 * chained from the smallest up, H(P_top, H(..., P_lowest)). With `below`
 * 64 it is the root; in a path it is the hash of everything right of the
 * perfect subtree holding the leaf.
 */
static int spine_below(const struct src *c, uint64_t n, unsigned below, uint8_t out[HASH])
{
	uint64_t bits = below >= 64 ? n : n & (((uint64_t)1 << below) - 1);
	bal_require(bits != 0);
	if (c->spine) {
		memcpy(out, c->spine[top64(bits)], HASH);
		return 0;
	}
	int rc = node(c, ctz64(bits), (n >> ctz64(bits)) - 1, out);
	for (bits &= bits - 1; bits && rc == 0; bits &= bits - 1) {
		uint8_t p[HASH];
		unsigned h = ctz64(bits);
		if ((rc = node(c, h, (n >> h) - 1, p)) == 0)
			node_hash(out, p, out);
	}
	return rc;
}

/* The next free hash of a path. Positions stay far below 2^63, so no path
 * is longer than BAL_TREE_MAX_PATH (see path_from()). */
static uint8_t *path_slot(uint8_t path[][HASH], unsigned *np)
{
	bal_require(*np < BAL_TREE_MAX_PATH);
	return path[(*np)++];
}

/*
 * Appends to path[*np..] the RFC 6962 audit path of the complete node
 * (level, index) in the tree of n leaves, bottom up. With m the node's
 * first leaf and d the highest bit where m and n differ, the node lies in
 * P_d: its siblings up to level d, then the spine right of P_d (if n has
 * bits below d), then the larger perfect subtrees left of P_d.
 */
static int path_from(const struct src *c, unsigned level, uint64_t index, uint64_t n, uint8_t path[][HASH],
                     unsigned *np)
{
	uint64_t m = index << level;
	unsigned d = top64(m ^ n);
	int rc = 0;
	/* At most (d - level) + 1 + popcount(n >> (d + 1)) hashes, no more than the
	 * bits of n (63 below 2^63): a consistency proof's extra node still fits. */
	for (unsigned h = level; h < d && rc == 0; h++)
		rc = node(c, h, (m >> h) ^ 1, path_slot(path, np));
	if (rc == 0 && (n & (((uint64_t)1 << d) - 1)) != 0)
		rc = spine_below(c, n, d, path_slot(path, np));
	for (unsigned h = d + 1; h < 64 && rc == 0; h++)
		if (n >> h & 1)
			rc = node(c, h, (n >> h) - 1, path_slot(path, np));
	return rc;
}

/*
 * RFC 6962 PROOF(m, D[n]) for 1 <= m < n: the perfect subtree that ends at
 * leaf m (level ctz(m)), unless it is the whole old tree (m a power of two:
 * the verifier holds it as the old root), then its audit path in the tree
 * of n. This is SUBPROOF(m, D[n], true) unrolled.
 */
static int consistency(const struct src *c, uint64_t m, uint64_t n, uint8_t path[][HASH], unsigned *np)
{
	unsigned level = ctz64(m);
	uint64_t index = (m >> level) - 1;
	int rc = 0;
	*np = 0;
	if (index != 0)
		rc = node(c, level, index, path_slot(path, np));
	return rc != 0 ? rc : path_from(c, level, index, n, path, np);
}

/* ---- the committer's side ---------------------------------------------------- */

/* Room for `more` nodes after the txn's `used` ones; grows geometrically. */
static int wnodes_reserve(struct bal_store *s, uint64_t used, unsigned more)
{
	if (used + more <= s->wnodes_cap)
		return 0;
	size_t cap = s->wnodes_cap ? s->wnodes_cap : WNODES_MIN;
	while (cap < used + more)
		cap *= 2;
	void *p = realloc(s->wnodes, cap * sizeof(*s->wnodes));
	if (!p)
		return -ENOMEM;
	s->wnodes = p;
	s->wnodes_cap = cap;
	return 0;
}

static int put_node(MDB_txn *txn, MDB_dbi dbi, uint64_t idx, const uint8_t hash[HASH])
{
	uint8_t k[8];
	MDB_val key = {8, k}, val = {HASH, (void *)hash};
	bal__put_be64(k, idx);
	int rc = bal__store_err(mdb_put(txn, dbi, &key, &val, MDB_APPEND));
	/* APPEND refuses a key at or below the last one: nodes past the tree's end. */
	return rc == -EEXIST ? BAL_ECORRUPT : rc;
}

/*
 * Within `txn`, whose first leaf is `a`: adds leaf n (the tree had n leaves)
 * and every node it completes, to the table and to the txn's nodes in memory.
 */
static int push(struct bal_store *s, MDB_txn *txn, uint64_t a, uint64_t n, const uint8_t leaf[HASH])
{
	uint64_t base = nodes(a), idx = nodes(n);
	unsigned levels = ctz64(~n); /* leaf n completes one node per trailing 1 bit of n */
	int rc = wnodes_reserve(s, idx - base, levels + 1);
	if (rc != 0)
		return rc;
	uint8_t(*out)[HASH] = &s->wnodes[idx - base];
	memcpy(out[0], leaf, HASH);
	if ((rc = put_node(txn, s->tree, idx, out[0])) != 0)
		return rc;
	for (unsigned h = 0; h < levels; h++) {
		/* Bit h of n is set: the left sibling at level h was complete before this leaf. */
		node_hash(out[h + 1], wnode(s, a, n, h, (n >> h) - 1), out[h]);
		if ((rc = put_node(txn, s->tree, idx + h + 1, out[h + 1])) != 0)
			return rc;
	}
	return 0;
}

/* After a txn from a to n leaves committed: the frontier of n. */
static void front_commit(struct bal_store *s, uint64_t a, uint64_t n)
{
	uint64_t base = nodes(a);
	for (uint64_t bits = n; bits; bits &= bits - 1) {
		unsigned h = ctz64(bits);
		uint64_t idx = post(h, (n >> h) - 1);
		if (idx >= base)
			memcpy(s->front[h], s->wnodes[idx - base], HASH);
	}
}

int bal__tree_leaf(struct bal_store *s, const uint8_t *bytes, size_t len)
{
	uint8_t leaf[HASH];
	leaf_hash(leaf, bytes, len);
	s->spine_ok = false;
	return push(s, s->wtxn, s->tree_leaves, s->wposition, leaf);
}

int bal__tree_wbegin(struct bal_store *s)
{
	/* Nothing may be appended after a log that is longer than the journal. */
	if (s->log_lost)
		return BAL_ECORRUPT;
	bal_require(s->tree_leaves == atomic_load_explicit(&s->position, memory_order_relaxed));
	s->spine_ok = false;
	s->whead_next = s->head_next;
	return 0;
}

void bal__tree_committed(struct bal_store *s)
{
	front_commit(s, s->tree_leaves, s->wposition);
	s->tree_leaves = s->wposition;
	s->head_next = s->whead_next;
}

/* The spine of the txn's tree, every level, computed once per size. */
static void wspine(struct bal_store *s)
{
	uint64_t n = s->wposition;
	unsigned prev = 64;
	if (s->spine_ok)
		return;
	for (uint64_t bits = n; bits; bits &= bits - 1) {
		unsigned h = ctz64(bits);
		const uint8_t *p = wnode(s, s->tree_leaves, n, h, (n >> h) - 1);
		if (prev == 64)
			memcpy(s->spine[h], p, HASH);
		else
			node_hash(s->spine[h], p, s->spine[prev]);
		prev = h;
	}
	s->spine_ok = true;
}

static void wroot(struct bal_store *s, uint8_t root[HASH])
{
	if (s->wposition == 0) {
		sha256_2(root, NULL, 0, NULL, 0); /* RFC 6962: MTH({}) = SHA-256() */
		return;
	}
	wspine(s);
	memcpy(root, s->spine[top64(s->wposition)], HASH);
}

int bal_store_tree_wroot(struct bal_store *s, uint8_t root[BAL_HASH_BYTES])
{
	int rc = bal__store_wready(s);
	if (rc != 0)
		return rc;
	wroot(s, root);
	return 0;
}

int bal_store_tree_wpath(struct bal_store *s, uint64_t position, struct bal_receipt *r)
{
	int rc = bal__store_wready(s);
	if (rc != 0)
		return rc;
	if (position <= s->tree_leaves || position > s->wposition)
		return -EINVAL;
	wspine(s);
	struct src c = {.s = s, .a = s->tree_leaves, .spine = (const uint8_t(*)[HASH])s->spine};
	uint64_t m = position - 1;
	r->leaf_index = m;
	memcpy(r->leaf_hash, wnode(s, c.a, s->wposition, 0, m), HASH);
	r->npath = 0;
	return path_from(&c, 0, m, s->wposition, r->path, &r->npath);
}

/* ---- heads ---------------------------------------------------------------------- */

#define HEAD_BYTES (8 + HASH + 64)

int bal_store_put_head(struct bal_store *s, const struct bal_tree_head *h)
{
	uint8_t root[HASH], k[8], v[HEAD_BYTES];
	int rc = bal__store_wready(s);
	if (rc != 0)
		return rc;
	if (h->tree_size != s->wposition)
		return -EINVAL;
	if (h->tree_size < s->whead_next)
		return -EEXIST;
	wroot(s, root);
	if (memcmp(root, h->root, HASH) != 0)
		return -EINVAL; /* a head must sign the tree it names */
	bal__put_be64(k, h->tree_size);
	bal__put_be64(v, h->timestamp_ms);
	memcpy(v + 8, h->root, HASH);
	memcpy(v + 8 + HASH, h->signature, 64);
	MDB_val key = {8, k}, val = {sizeof(v), v};
	if ((rc = bal__store_err(mdb_put(s->wtxn, s->heads, &key, &val, MDB_APPEND))) != 0)
		return bal__store_wfail(s, rc == -EEXIST ? BAL_ECORRUPT : rc);
	s->whead_next = h->tree_size + 1;
	return 0;
}

/*
 * The head of `size`, or with 0 the latest, as far as the published
 * position: a reader may begin its txn after a commit but before the
 * committer publishes that commit's position, and must not see a head
 * beyond the position every other answer reports.
 */
static int head_at(struct bal_store *s, MDB_txn *txn, uint64_t tree_size, uint64_t limit, uint64_t *size, MDB_val *val)
{
	uint8_t k[8];
	MDB_val key = {8, k};
	if (tree_size) {
		if (tree_size > limit)
			return -ENOENT;
		*size = tree_size;
		bal__put_be64(k, tree_size);
		return bal__store_err(mdb_get(txn, s->heads, &key, val));
	}
	MDB_cursor *cur;
	int rc = bal__store_err(mdb_cursor_open(txn, s->heads, &cur));
	if (rc != 0)
		return rc;
	/* The first head beyond the limit, then one back; or the last head. */
	bal__put_be64(k, limit + 1);
	int mrc = limit == UINT64_MAX ? MDB_NOTFOUND : mdb_cursor_get(cur, &key, val, MDB_SET_RANGE);
	if (mrc == 0)
		mrc = mdb_cursor_get(cur, &key, val, MDB_PREV);
	else if (mrc == MDB_NOTFOUND)
		mrc = mdb_cursor_get(cur, &key, val, MDB_LAST);
	rc = bal__store_err(mrc);
	if (rc == 0 && key.mv_size != 8)
		rc = BAL_ECORRUPT;
	if (rc == 0)
		*size = bal__get_be64(key.mv_data);
	mdb_cursor_close(cur);
	return rc;
}

int bal_store_head(struct bal_store *s, uint64_t tree_size, struct bal_tree_head *out)
{
	MDB_txn *txn;
	MDB_val val = {0, NULL};
	uint64_t size = 0;
	/* Loaded before the txn begins: the txn sees that commit or a later one. */
	const uint64_t limit = bal_store_position(s);
	int rc = bal__store_txn_begin(s, MDB_RDONLY, &txn);
	if (rc != 0)
		return rc;
	rc = head_at(s, txn, tree_size, limit, &size, &val);
	if (rc == 0 && val.mv_size != HEAD_BYTES)
		rc = BAL_ECORRUPT;
	if (rc == 0) {
		const uint8_t *p = val.mv_data; /* copied before the txn ends */
		out->tree_size = size;
		out->timestamp_ms = bal__get_be64(p);
		memcpy(out->root, p + 8, HASH);
		memcpy(out->signature, p + 8 + HASH, 64);
	}
	mdb_txn_abort(txn);
	return rc;
}

static int read_begin(struct bal_store *s, uint64_t size, struct src *c)
{
	/* Loaded before the txn begins: the txn sees that commit or a later one. */
	if (size == 0 || size > bal_store_position(s))
		return -EINVAL;
	*c = (struct src){.s = s};
	return bal__store_txn_begin(s, MDB_RDONLY, &c->txn);
}

int bal_store_tree_root(struct bal_store *s, uint64_t tree_size, uint8_t root[BAL_HASH_BYTES])
{
	struct src c;
	int rc = read_begin(s, tree_size, &c);
	if (rc != 0)
		return rc;
	rc = spine_below(&c, tree_size, 64, root);
	mdb_txn_abort(c.txn);
	return rc;
}

int bal_store_tree_path(struct bal_store *s, uint64_t position, uint64_t tree_size, struct bal_receipt *r)
{
	struct src c;
	if (position == 0 || position > tree_size)
		return -EINVAL;
	int rc = read_begin(s, tree_size, &c);
	if (rc != 0)
		return rc;
	uint8_t leaf[HASH], path[BAL_TREE_MAX_PATH][HASH];
	unsigned np = 0;
	uint64_t m = position - 1;
	if ((rc = node(&c, 0, m, leaf)) == 0)
		rc = path_from(&c, 0, m, tree_size, path, &np);
	mdb_txn_abort(c.txn);
	if (rc == 0) {
		r->leaf_index = m;
		memcpy(r->leaf_hash, leaf, HASH);
		r->npath = np;
		memcpy(r->path, path, (size_t)np * HASH);
	}
	return rc;
}

int bal_store_tree_consistency(struct bal_store *s, uint64_t first, uint64_t second,
                               uint8_t path[BAL_TREE_MAX_PATH][BAL_HASH_BYTES], unsigned *npath)
{
	struct src c;
	if (first == 0 || first > second)
		return -EINVAL;
	int rc = read_begin(s, second, &c);
	if (rc != 0)
		return rc;
	uint8_t p[BAL_TREE_MAX_PATH][HASH];
	unsigned np = 0;
	if (first < second)
		rc = consistency(&c, first, second, p, &np);
	mdb_txn_abort(c.txn);
	if (rc == 0) {
		*npath = np;
		memcpy(path, p, (size_t)np * HASH);
	}
	return rc;
}

/* ---- open: the committed log, extended from the journal if it is behind ------------- */

struct extend {
	struct bal_store *s;
	MDB_txn *txn;
	uint64_t a, n, stop;
};

static int extend_leaf(void *ctx, uint64_t position, const struct bal__rec *r)
{
	struct extend *e = ctx;
	uint8_t leaf[HASH];
	leaf_hash(leaf, r->payload, r->len);
	int rc = push(e->s, e->txn, e->a, e->n, leaf);
	if (rc != 0)
		return rc;
	e->n++;
	return e->n == e->stop ? REBUILD_MORE : 0;
}

/*
 * Hashes journal positions tree_leaves + 1 .. `end` into the tree, in txns of
 * REBUILD_CHUNK leaves: a data directory written before the log existed (or
 * whose tree table was lost) gets the same tree the appends would have
 * built. Each chunk commits on its own, so an interrupted extension resumes.
 */
static int extend(struct bal_store *s, uint64_t end, char *why, size_t whylen)
{
	char sub[160] = "";
	int rc = 0;
	while (rc == 0 && s->tree_leaves < end) {
		struct extend e = {.s = s, .a = s->tree_leaves, .n = s->tree_leaves};
		e.stop = end - e.a < REBUILD_CHUNK ? end : e.a + REBUILD_CHUNK;
		if ((rc = bal__store_txn_begin(s, 0, &e.txn)) != 0)
			break;
		rc = bal__journal_walk(s, e.txn, e.a, extend_leaf, &e, NULL, sub, sizeof(sub));
		if (rc == REBUILD_MORE)
			rc = 0;
		if (rc == 0 && e.n != e.stop) {
			bal__store_why(sub, sizeof(sub), "the journal ends at %llu, not %llu", (unsigned long long)e.n,
			               (unsigned long long)end);
			rc = BAL_ECORRUPT;
		}
		if (rc == 0)
			rc = bal__store_err(mdb_txn_commit(e.txn));
		else
			mdb_txn_abort(e.txn);
		if (rc == 0) {
			front_commit(s, e.a, e.n);
			s->tree_leaves = e.n;
		}
	}
	/* The buffer held a whole chunk's nodes: the committer starts small. */
	free(s->wnodes);
	s->wnodes = NULL;
	s->wnodes_cap = 0;
	if (rc != 0)
		bal__store_why(why, whylen, "data dir %s: extending the log from position %llu: %s", s->dir,
		               (unsigned long long)s->tree_leaves + 1, sub[0] ? sub : bal_strerror(rc));
	return rc;
}

/* The leaves of the committed tree (from its last node) and its frontier. */
static int load_tree(struct bal_store *s, MDB_txn *txn, char *why, size_t whylen)
{
	uint64_t last;
	MDB_val val;
	int rc = bal__store_last(txn, s->tree, &last, &val);
	if (rc != 0) {
		bal__store_why(why, whylen, "data dir %s: tree table: %s", s->dir, bal_strerror(rc));
		return rc;
	}
	uint64_t n = val.mv_data ? leaves_of(last + 1) : 0;
	if (n == UINT64_MAX) {
		bal__store_why(why, whylen, "data dir %s: tree table ends at node %llu, which completes no leaf",
		               s->dir, (unsigned long long)last);
		return BAL_ECORRUPT;
	}
	struct src c = {.s = s, .txn = txn};
	for (uint64_t bits = n; bits && rc == 0; bits &= bits - 1) {
		unsigned h = ctz64(bits);
		if ((rc = node(&c, h, (n >> h) - 1, s->front[h])) != 0)
			bal__store_why(why, whylen, "data dir %s: tree node (%u, %llu) of size %llu: %s", s->dir, h,
			               (unsigned long long)((n >> h) - 1), (unsigned long long)n, bal_strerror(rc));
	}
	s->tree_leaves = n;
	return rc;
}

int bal__tree_open(struct bal_store *s, char *why, size_t whylen)
{
	MDB_txn *txn;
	uint64_t head = 0;
	MDB_val val;
	int rc = bal__store_txn_begin(s, MDB_RDONLY, &txn);
	if (rc != 0) {
		bal__store_why(why, whylen, "data dir %s: cannot begin a read txn: %s", s->dir, bal_strerror(rc));
		return rc;
	}
	rc = load_tree(s, txn, why, whylen);
	if (rc == 0 && (rc = bal__store_last(txn, s->heads, &head, &val)) != 0)
		bal__store_why(why, whylen, "data dir %s: heads table: %s", s->dir, bal_strerror(rc));
	mdb_txn_abort(txn);
	if (rc != 0)
		return rc;
	s->head_next = val.mv_data ? head + 1 : 0;
	uint64_t position = atomic_load_explicit(&s->position, memory_order_relaxed);
	s->log_end = s->tree_leaves > head ? s->tree_leaves : head;
	/* A log longer than the journal means journal records were lost: recovery
	 * reports it and no write txn begins. Left as it is for the operator. */
	s->log_lost = s->log_end > position;
	if (s->log_lost || s->tree_leaves == position)
		return 0;
	return extend(s, position, why, whylen);
}

void bal__tree_deinit(struct bal_store *s)
{
	free(s->wnodes);
	s->wnodes = NULL;
	s->wnodes_cap = 0;
}
