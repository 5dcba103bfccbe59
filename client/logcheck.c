/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Checks of ballotd's transparency log from the outside (see logcheck.h):
 * RFC 6962 hashes, the RFC 9162 iterative proof checks, the tree head
 * signature, receipts and heads as JSON, log key files. Written from the
 * RFCs, not from the daemon's tree code, which it must be able to catch out.
 * libsodium and jansson; no I/O but the key files.
 */
#include "client/logcheck.h"

#include "client/util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- hashes and hex ------------------------------------------------------- */

void bal_logcheck_leaf_hash(const uint8_t *data, size_t len, uint8_t out[BAL_HASH_BYTES])
{
	static const uint8_t prefix = 0x00;
	crypto_hash_sha256_state st;
	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, &prefix, 1);
	crypto_hash_sha256_update(&st, data, len);
	crypto_hash_sha256_final(&st, out);
}

void bal_logcheck_node_hash(const uint8_t left[BAL_HASH_BYTES], const uint8_t right[BAL_HASH_BYTES],
                            uint8_t out[BAL_HASH_BYTES])
{
	uint8_t buf[1 + 2 * BAL_HASH_BYTES];
	buf[0] = 0x01;
	memcpy(buf + 1, left, BAL_HASH_BYTES);
	memcpy(buf + 1 + BAL_HASH_BYTES, right, BAL_HASH_BYTES);
	crypto_hash_sha256(out, buf, sizeof(buf)); /* after both copies: out may alias an input */
}

void bal_logcheck_hex(const uint8_t *bytes, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[bytes[i] >> 4];
		out[2 * i + 1] = digits[bytes[i] & 15];
	}
	out[2 * len] = '\0';
}

static int nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int bal_logcheck_unhex(const char *text, uint8_t *out, size_t len)
{
	if (!text || strlen(text) != 2 * len)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		int hi = nibble(text[2 * i]), lo = nibble(text[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

/* ---- proofs --------------------------------------------------------------- */

int bal_logcheck_inclusion_root(uint64_t leaf_index, uint64_t tree_size, const uint8_t leaf[BAL_HASH_BYTES],
                                const uint8_t (*path)[BAL_HASH_BYTES], size_t npath, uint8_t root[BAL_HASH_BYTES],
                                char *why, size_t whylen)
{
	if (leaf_index >= tree_size)
		return bal__failf(BAL_ECORRUPT, why, whylen, "leaf index %llu is not below tree size %llu",
		                  (unsigned long long)leaf_index, (unsigned long long)tree_size);
	uint64_t fn = leaf_index, sn = tree_size - 1;
	uint8_t r[BAL_HASH_BYTES];
	memcpy(r, leaf, BAL_HASH_BYTES);
	for (size_t i = 0; i < npath; i++) {
		if (sn == 0)
			return bal__failf(BAL_ECORRUPT, why, whylen,
			                  "inclusion proof has %zu hashes, leaf %llu of a tree of %llu takes %zu",
			                  npath, (unsigned long long)leaf_index, (unsigned long long)tree_size, i);
		if ((fn & 1) || fn == sn) {
			bal_logcheck_node_hash(path[i], r, r);
			while (!(fn & 1) && fn != 0) {
				fn >>= 1;
				sn >>= 1;
			}
		} else {
			bal_logcheck_node_hash(r, path[i], r);
		}
		fn >>= 1;
		sn >>= 1;
	}
	if (sn != 0)
		return bal__failf(BAL_ECORRUPT, why, whylen,
		                  "inclusion proof has %zu hashes, too few for leaf %llu of a tree of %llu", npath,
		                  (unsigned long long)leaf_index, (unsigned long long)tree_size);
	memcpy(root, r, BAL_HASH_BYTES);
	return 0;
}

int bal_logcheck_inclusion_verify(uint64_t leaf_index, uint64_t tree_size, const uint8_t leaf[BAL_HASH_BYTES],
                                  const uint8_t (*path)[BAL_HASH_BYTES], size_t npath,
                                  const uint8_t root[BAL_HASH_BYTES], char *why, size_t whylen)
{
	uint8_t got[BAL_HASH_BYTES];
	int rc = bal_logcheck_inclusion_root(leaf_index, tree_size, leaf, path, npath, got, why, whylen);
	if (rc < 0)
		return rc;
	if (sodium_memcmp(got, root, BAL_HASH_BYTES) != 0) {
		char want[2 * BAL_HASH_BYTES + 1], have[2 * BAL_HASH_BYTES + 1];
		bal_logcheck_hex(root, BAL_HASH_BYTES, want);
		bal_logcheck_hex(got, BAL_HASH_BYTES, have);
		return bal__failf(
		        BAL_ECORRUPT, why, whylen,
		        "inclusion proof of leaf %llu leads to root %.16s..., not to %.16s... of tree size %llu",
		        (unsigned long long)leaf_index, have, want, (unsigned long long)tree_size);
	}
	return 0;
}

/* Element i of the consistency path, first_root prepended when `lead`. */
static const uint8_t *path_at(const uint8_t *first_root, const uint8_t (*proof)[BAL_HASH_BYTES], bool lead, size_t i)
{
	if (!lead)
		return proof[i];
	return i == 0 ? first_root : proof[i - 1];
}

int bal_logcheck_consistency_verify(uint64_t first, uint64_t second, const uint8_t first_root[BAL_HASH_BYTES],
                                    const uint8_t second_root[BAL_HASH_BYTES], const uint8_t (*proof)[BAL_HASH_BYTES],
                                    size_t nproof, char *why, size_t whylen)
{
	if (first > second)
		return bal__failf(-EINVAL, why, whylen, "consistency from tree size %llu to the smaller %llu",
		                  (unsigned long long)first, (unsigned long long)second);
	if (first == second || first == 0) {
		if (nproof != 0)
			return bal__failf(BAL_ECORRUPT, why, whylen,
			                  "consistency proof from %llu to %llu must be empty, has %zu hashes",
			                  (unsigned long long)first, (unsigned long long)second, nproof);
		if (first == second && sodium_memcmp(first_root, second_root, BAL_HASH_BYTES) != 0)
			return bal__failf(BAL_ECORRUPT, why, whylen, "two different roots for tree size %llu",
			                  (unsigned long long)first);
		return 0;
	}
	if (nproof == 0)
		return bal__failf(BAL_ECORRUPT, why, whylen, "empty consistency proof from %llu to %llu",
		                  (unsigned long long)first, (unsigned long long)second);
	/* The path is first_root followed by the proof when first is a power of
	 * two (RFC 9162 step 2), else the proof itself: indexed, not copied. */
	bool lead = (first & (first - 1)) == 0;
	size_t n = nproof + (lead ? 1 : 0);
	uint64_t fn = first - 1, sn = second - 1;
	while (fn & 1) {
		fn >>= 1;
		sn >>= 1;
	}
	uint8_t fr[BAL_HASH_BYTES], sr[BAL_HASH_BYTES];
	memcpy(fr, path_at(first_root, proof, lead, 0), BAL_HASH_BYTES);
	memcpy(sr, path_at(first_root, proof, lead, 0), BAL_HASH_BYTES);
	for (size_t i = 1; i < n; i++) {
		const uint8_t *c = path_at(first_root, proof, lead, i);
		if (sn == 0)
			return bal__failf(
			        BAL_ECORRUPT, why, whylen,
			        "consistency proof from %llu to %llu has %zu hashes, more than the trees take",
			        (unsigned long long)first, (unsigned long long)second, nproof);
		if ((fn & 1) || fn == sn) {
			bal_logcheck_node_hash(c, fr, fr);
			bal_logcheck_node_hash(c, sr, sr);
			while (!(fn & 1) && fn != 0) {
				fn >>= 1;
				sn >>= 1;
			}
		} else {
			bal_logcheck_node_hash(sr, c, sr);
		}
		fn >>= 1;
		sn >>= 1;
	}
	if (sn != 0)
		return bal__failf(BAL_ECORRUPT, why, whylen,
		                  "consistency proof from %llu to %llu has %zu hashes, fewer than the trees take",
		                  (unsigned long long)first, (unsigned long long)second, nproof);
	if (sodium_memcmp(fr, first_root, BAL_HASH_BYTES) != 0)
		return bal__failf(BAL_ECORRUPT, why, whylen,
		                  "consistency proof from %llu to %llu does not lead to the root of tree size %llu",
		                  (unsigned long long)first, (unsigned long long)second, (unsigned long long)first);
	if (sodium_memcmp(sr, second_root, BAL_HASH_BYTES) != 0)
		return bal__failf(BAL_ECORRUPT, why, whylen,
		                  "consistency proof from %llu to %llu does not lead to the root of tree size %llu",
		                  (unsigned long long)first, (unsigned long long)second, (unsigned long long)second);
	return 0;
}

void bal_logcheck_tree_init(struct bal_logcheck_tree *t)
{
	memset(t, 0, sizeof(*t));
}

void bal_logcheck_tree_add(struct bal_logcheck_tree *t, const uint8_t leaf[BAL_HASH_BYTES])
{
	memcpy(t->stack[t->n], leaf, BAL_HASH_BYTES);
	t->height[t->n] = 0;
	t->n++;
	/* Two complete subtrees of one height make one of the next. At most 64
	 * entries: one per set bit of the size. */
	while (t->n >= 2 && t->height[t->n - 1] == t->height[t->n - 2]) {
		bal_logcheck_node_hash(t->stack[t->n - 2], t->stack[t->n - 1], t->stack[t->n - 2]);
		t->height[t->n - 2]++;
		t->n--;
	}
	t->size++;
}

void bal_logcheck_tree_root(const struct bal_logcheck_tree *t, uint8_t root[BAL_HASH_BYTES])
{
	if (t->n == 0) {
		crypto_hash_sha256(root, NULL, 0);
		return;
	}
	/* RFC 6962 splits at the largest power of two below the size, so the
	 * root folds the complete subtrees from the smallest (rightmost) up. */
	uint8_t r[BAL_HASH_BYTES];
	memcpy(r, t->stack[t->n - 1], BAL_HASH_BYTES);
	for (unsigned i = t->n - 1; i-- > 0;)
		bal_logcheck_node_hash(t->stack[i], r, r);
	memcpy(root, r, BAL_HASH_BYTES);
}

/* ---- signed tree heads ---------------------------------------------------- */

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

size_t bal_logcheck_head_message(const struct bal_tree_head *h, const char *election_id, uint8_t *buf, size_t cap)
{
	static const char label[] = BAL_LOGCHECK_STH_LABEL;
	size_t idlen = strlen(election_id), ll = sizeof(label) - 1;
	size_t need = ll + 1 + idlen + 1 + 8 + 8 + BAL_HASH_BYTES;
	if (idlen > BAL_LOGCHECK_ID_MAX || need > cap)
		return 0;
	uint8_t *p = buf;
	memcpy(p, label, ll);
	p += ll;
	*p++ = 0x00;
	memcpy(p, election_id, idlen);
	p += idlen;
	*p++ = 0x00;
	put_be64(p, h->tree_size);
	p += 8;
	put_be64(p, h->timestamp_ms);
	p += 8;
	memcpy(p, h->root, BAL_HASH_BYTES);
	p += BAL_HASH_BYTES;
	return (size_t)(p - buf);
}

int bal_logcheck_head_verify(const struct bal_tree_head *h, const char *election_id,
                             const uint8_t pk[BAL_LOGCHECK_KEY_BYTES], char *why, size_t whylen)
{
	uint8_t msg[sizeof(BAL_LOGCHECK_STH_LABEL) + BAL_LOGCHECK_ID_MAX + 1 + 16 + BAL_HASH_BYTES];
	size_t n = bal_logcheck_head_message(h, election_id, msg, sizeof(msg));
	if (n == 0)
		return bal__failf(-EINVAL, why, whylen, "election id longer than %d bytes", BAL_LOGCHECK_ID_MAX);
	if (sodium_init() < 0)
		return bal__failf(-EINVAL, why, whylen, "libsodium does not initialise");
	if (crypto_sign_verify_detached(h->signature, msg, n, pk) != 0) {
		char key[2 * BAL_LOGCHECK_KEY_BYTES + 1];
		bal_logcheck_hex(pk, BAL_LOGCHECK_KEY_BYTES, key);
		return bal__failf(BAL_EAUTH, why, whylen,
		                  "signature of the tree head of size %llu does not verify under key %.16s... for "
		                  "election \"%s\"",
		                  (unsigned long long)h->tree_size, key, election_id);
	}
	return 0;
}

int bal_logcheck_receipt_verify(const struct bal_receipt *r, const char *election_id,
                                const uint8_t pk[BAL_LOGCHECK_KEY_BYTES], char *why, size_t whylen)
{
	int rc = bal_logcheck_head_verify(&r->head, election_id, pk, why, whylen);
	if (rc < 0)
		return rc;
	if (r->npath > BAL_TREE_MAX_PATH)
		return bal__failf(BAL_ECORRUPT, why, whylen, "audit path of %u hashes", r->npath);
	return bal_logcheck_inclusion_verify(r->leaf_index, r->head.tree_size, r->leaf_hash,
	                                     (const uint8_t(*)[BAL_HASH_BYTES])r->path, r->npath, r->head.root, why,
	                                     whylen);
}

/* ---- JSON ----------------------------------------------------------------- */

static int get_u64(json_t *o, const char *member, uint64_t *out, char *why, size_t whylen)
{
	json_t *v = json_object_get(o, member);
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return bal__failf(-EINVAL, why, whylen, "\"%s\" is %s, not a whole number >= 0", member,
		                  v ? "of another type or negative" : "missing");
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int get_hex(json_t *o, const char *member, uint8_t *out, size_t len, char *why, size_t whylen)
{
	json_t *v = json_object_get(o, member);
	if (!json_is_string(v) || bal_logcheck_unhex(json_string_value(v), out, len) < 0)
		return bal__failf(-EINVAL, why, whylen, "\"%s\" is %s, not %zu hex digits", member,
		                  v ? "something else" : "missing", 2 * len);
	return 0;
}

static json_t *hex_string(const uint8_t *bytes, size_t len)
{
	char buf[2 * 64 + 1];
	bal_logcheck_hex(bytes, len, buf);
	return json_string(buf);
}

int bal_logcheck_head_from_json(json_t *o, struct bal_tree_head *h, char *why, size_t whylen)
{
	struct bal_tree_head t;
	if (!json_is_object(o))
		return bal__failf(-EINVAL, why, whylen, "a tree head must be a JSON object");
	int rc;
	if ((rc = get_u64(o, "tree_size", &t.tree_size, why, whylen)) < 0 ||
	    (rc = get_u64(o, "timestamp_ms", &t.timestamp_ms, why, whylen)) < 0 ||
	    (rc = get_hex(o, "root_hash", t.root, sizeof(t.root), why, whylen)) < 0 ||
	    (rc = get_hex(o, "signature", t.signature, sizeof(t.signature), why, whylen)) < 0)
		return rc;
	*h = t;
	return 0;
}

int bal_logcheck_head_to_json(const struct bal_tree_head *h, json_t *o)
{
	int bad = json_object_set_new(o, "tree_size", json_integer((json_int_t)h->tree_size));
	bad |= json_object_set_new(o, "timestamp_ms", json_integer((json_int_t)h->timestamp_ms));
	bad |= json_object_set_new(o, "root_hash", hex_string(h->root, sizeof(h->root)));
	bad |= json_object_set_new(o, "signature", hex_string(h->signature, sizeof(h->signature)));
	return bad ? -ENOMEM : 0;
}

int bal_logcheck_path_from_json(json_t *o, const char *member, uint8_t (*path)[BAL_HASH_BYTES], unsigned *npath,
                                char *why, size_t whylen)
{
	json_t *a = json_object_get(o, member);
	if (!json_is_array(a))
		return bal__failf(-EINVAL, why, whylen, "\"%s\" is %s, not an array of hashes", member,
		                  a ? "something else" : "missing");
	if (json_array_size(a) > BAL_TREE_MAX_PATH)
		return bal__failf(-EINVAL, why, whylen, "\"%s\" has %zu hashes, more than %d", member,
		                  json_array_size(a), BAL_TREE_MAX_PATH);
	size_t i;
	json_t *v;
	json_array_foreach(a, i, v)
	{
		if (!json_is_string(v) || bal_logcheck_unhex(json_string_value(v), path[i], BAL_HASH_BYTES) < 0)
			return bal__failf(-EINVAL, why, whylen, "\"%s\"[%zu] is not %d hex digits", member, i,
			                  2 * BAL_HASH_BYTES);
	}
	*npath = (unsigned)json_array_size(a);
	return 0;
}

int bal_logcheck_receipt_from_json(json_t *o, struct bal_receipt *r, char *why, size_t whylen)
{
	json_t *inner = json_object_get(o, "receipt");
	if (json_is_object(inner))
		o = inner;
	if (!json_is_object(o))
		return bal__failf(-EINVAL, why, whylen, "a receipt must be a JSON object");
	memset(r, 0, sizeof(*r));
	int rc;
	if ((rc = get_u64(o, "leaf_index", &r->leaf_index, why, whylen)) < 0 ||
	    (rc = get_hex(o, "leaf_hash", r->leaf_hash, sizeof(r->leaf_hash), why, whylen)) < 0 ||
	    (rc = bal_logcheck_head_from_json(o, &r->head, why, whylen)) < 0 ||
	    (rc = bal_logcheck_path_from_json(o, "audit_path", r->path, &r->npath, why, whylen)) < 0) {
		memset(r, 0, sizeof(*r));
		return rc;
	}
	return 0;
}

int bal_logcheck_receipt_to_json(const struct bal_receipt *r, json_t *o)
{
	int bad = json_object_set_new(o, "leaf_index", json_integer((json_int_t)r->leaf_index));
	bad |= json_object_set_new(o, "leaf_hash", hex_string(r->leaf_hash, sizeof(r->leaf_hash)));
	bad |= bal_logcheck_head_to_json(&r->head, o);
	json_t *a = json_array();
	for (unsigned i = 0; a && i < r->npath && i < BAL_TREE_MAX_PATH; i++)
		bad |= json_array_append_new(a, hex_string(r->path[i], BAL_HASH_BYTES));
	bad |= json_object_set_new(o, "audit_path", a);
	return bad ? -ENOMEM : 0;
}

/* ---- keys ----------------------------------------------------------------- */

int bal_logcheck_key_parse(const char *text, uint8_t pk[BAL_LOGCHECK_KEY_BYTES], char *why, size_t whylen)
{
	if (bal_logcheck_unhex(text, pk, BAL_LOGCHECK_KEY_BYTES) == 0)
		return 0;
	FILE *f = fopen(text, "re");
	if (!f) {
		int err = errno;
		if (err == ENOENT && strlen(text) == 2 * BAL_LOGCHECK_KEY_BYTES)
			return bal__failf(-EINVAL, why, whylen, "\"%s\" is neither 64 hex digits nor a file", text);
		return bal__failf(-err, why, whylen, "%s: %s (expected 64 hex digits or a file holding them)", text,
		                  strerror(err));
	}
	char buf[256];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	int err = ferror(f) ? errno : 0;
	fclose(f);
	if (err)
		return bal__failf(-err, why, whylen, "%s: %s", text, strerror(err));
	buf[n] = '\0';
	char *s = buf;
	while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
		s++;
	while (n > 0 && (buf[n - 1] == ' ' || buf[n - 1] == '\t' || buf[n - 1] == '\r' || buf[n - 1] == '\n'))
		buf[--n] = '\0';
	if (bal_logcheck_unhex(s, pk, BAL_LOGCHECK_KEY_BYTES) < 0)
		return bal__failf(-EINVAL, why, whylen, "%s does not hold a public key of 64 hex digits", text);
	return 0;
}

/* Creates `path` (must not exist) holding `text`, fsynced. 0 or -errno. */
static int write_new(const char *path, mode_t mode, const char *text, char *why, size_t whylen)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0) {
		int err = errno;
		return bal__failf(-err, why, whylen, "%s: %s", path,
		                  err == EEXIST ? "exists already (not overwritten)" : strerror(err));
	}
	size_t len = strlen(text), off = 0;
	int err = fchmod(fd, mode) < 0 ? errno : 0; /* whatever the umask */
	while (!err && off < len) {
		ssize_t w = write(fd, text + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			err = errno;
		else
			off += (size_t)w;
	}
	if (!err && fsync(fd) < 0)
		err = errno;
	if (close(fd) < 0 && !err)
		err = errno;
	if (err) {
		unlink(path);
		return bal__failf(-err, why, whylen, "%s: %s", path, strerror(err));
	}
	return 0;
}

static int sync_dir_of(const char *path, char *why, size_t whylen)
{
	char *copy = strdup(path);
	if (!copy)
		return bal__failf(-ENOMEM, why, whylen, "out of memory");
	const char *dir = dirname(copy);
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), err = 0;
	if (fd < 0 || fsync(fd) < 0)
		err = errno;
	if (fd >= 0)
		close(fd);
	if (err)
		bal_fail(why, whylen, -err, "fsync of directory %s: %s", dir, strerror(err));
	free(copy);
	return -err;
}

int bal_logcheck_key_write(const char *path, const uint8_t *seed, uint8_t pk[BAL_LOGCHECK_KEY_BYTES], char *why,
                           size_t whylen)
{
	if (sodium_init() < 0)
		return bal__failf(-EINVAL, why, whylen, "libsodium does not initialise");
	char pub_path[4096];
	if ((size_t)snprintf(pub_path, sizeof(pub_path), "%s.pub", path) >= sizeof(pub_path))
		return bal__failf(-ENAMETOOLONG, why, whylen, "%s: path too long", path);
	struct stat st;
	if (lstat(path, &st) == 0 || lstat(pub_path, &st) == 0)
		return bal__failf(-EEXIST, why, whylen, "%s: exists already (not overwritten)",
		                  lstat(path, &st) == 0 ? path : pub_path);
	uint8_t s[crypto_sign_SEEDBYTES], sk[crypto_sign_SECRETKEYBYTES], pub[crypto_sign_PUBLICKEYBYTES];
	if (seed)
		memcpy(s, seed, sizeof(s));
	else
		randombytes_buf(s, sizeof(s));
	crypto_sign_seed_keypair(pub, sk, s);
	char text[2 * 32 + 2];
	bal_logcheck_hex(s, sizeof(s), text);
	strcat(text, "\n");
	sodium_memzero(s, sizeof(s));
	sodium_memzero(sk, sizeof(sk));
	int rc = write_new(path, 0600, text, why, whylen);
	sodium_memzero(text, sizeof(text));
	if (rc < 0)
		return rc;
	bal_logcheck_hex(pub, sizeof(pub), text);
	strcat(text, "\n");
	rc = write_new(pub_path, 0644, text, why, whylen);
	if (rc < 0) {
		unlink(path);
		return rc;
	}
	rc = sync_dir_of(path, why, whylen);
	if (rc < 0) {
		unlink(path);
		unlink(pub_path);
		return rc;
	}
	memcpy(pk, pub, sizeof(pub));
	return 0;
}
