/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The observer's side of ballotd's transparency log: everything a client
 * needs to check a receipt, a signed tree head or a consistency proof without
 * trusting the server. Leaf and node hashes are RFC 6962's (leaf =
 * SHA-256(0x00 || record bytes), node = SHA-256(0x01 || left || right));
 * proofs are checked with the iterative algorithms of RFC 9162 sections
 * 2.1.3.2 (inclusion) and 2.1.4.2 (consistency); a tree head is Ed25519 by
 * the log key over
 *   "ballotd-sth-v1" 0x00 election_id 0x00 uint64be(tree_size)
 *   uint64be(timestamp_ms) root_hash(32).
 *
 * Shares no code with the daemon's or storage's tree code on purpose: an
 * observer must not trust the server's code to check the server. Only the
 * plain structs of core/ballot.h are common. Depends on libsodium (SHA-256,
 * Ed25519) and jansson (receipts and heads as JSON). Every function is
 * thread-safe; none keeps a pointer to its arguments.
 *
 * Errors: 0 on success; -EINVAL for malformed input (bad hex, a missing
 * field, a size out of range), BAL_EAUTH for a signature that does not
 * verify, BAL_ECORRUPT for a proof that does not lead to the expected
 * hash(es); `why` (may be NULL) names what failed.
 */
#ifndef BAL_CLIENT_LOGCHECK_H
#define BAL_CLIENT_LOGCHECK_H

#include "core/ballot.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** The label that starts every signed tree head message. */
#define BAL_LOGCHECK_STH_LABEL "ballotd-sth-v1"
/** Ed25519 public key and seed sizes. */
#define BAL_LOGCHECK_KEY_BYTES 32
/** Longest election id a head message is built for. */
#define BAL_LOGCHECK_ID_MAX 256

/* ---- hashes and hex ------------------------------------------------------- */

/** SHA-256(0x00 || data): the leaf hash of a journal record's exact bytes. */
void bal_logcheck_leaf_hash(const uint8_t *data, size_t len, uint8_t out[BAL_HASH_BYTES]);
/** SHA-256(0x01 || left || right). `out` may alias either input. */
void bal_logcheck_node_hash(const uint8_t left[BAL_HASH_BYTES], const uint8_t right[BAL_HASH_BYTES],
                            uint8_t out[BAL_HASH_BYTES]);

/** `len` bytes as 2 * len lowercase hex digits and a NUL into `out`. */
void bal_logcheck_hex(const uint8_t *bytes, size_t len, char *out);
/** Exactly 2 * len hex digits (either case, nothing else) into `out`.
 * @return 0 or -EINVAL (`out` then undefined). */
int bal_logcheck_unhex(const char *text, uint8_t *out, size_t len);

/* ---- proofs --------------------------------------------------------------- */

/**
 * RFC 9162 2.1.3.2: the root that the inclusion proof of leaf `leaf_index`
 * in a tree of `tree_size` leaves leads to.
 * @return 0 with `root` written; BAL_ECORRUPT when `leaf_index >= tree_size`
 *         or the path has too few or too many hashes for that shape.
 */
int bal_logcheck_inclusion_root(uint64_t leaf_index, uint64_t tree_size, const uint8_t leaf[BAL_HASH_BYTES],
                                const uint8_t (*path)[BAL_HASH_BYTES], size_t npath, uint8_t root[BAL_HASH_BYTES],
                                char *why, size_t whylen);

/** bal_logcheck_inclusion_root() and a comparison with `root`.
 * @return 0 or BAL_ECORRUPT. Note that the tree size is only bound as far as
 *         the path's shape: a signed head binds it with the root. */
int bal_logcheck_inclusion_verify(uint64_t leaf_index, uint64_t tree_size, const uint8_t leaf[BAL_HASH_BYTES],
                                  const uint8_t (*path)[BAL_HASH_BYTES], size_t npath,
                                  const uint8_t root[BAL_HASH_BYTES], char *why, size_t whylen);

/**
 * RFC 9162 2.1.4.2: checks that the tree of `first` leaves with root
 * `first_root` is a prefix of the tree of `second` leaves with root
 * `second_root`. `first == second` needs an empty proof and equal roots;
 * `first == 0` (the empty tree is a prefix of every tree) an empty proof.
 * @return 0; -EINVAL when first > second; BAL_ECORRUPT otherwise.
 */
int bal_logcheck_consistency_verify(uint64_t first, uint64_t second, const uint8_t first_root[BAL_HASH_BYTES],
                                    const uint8_t second_root[BAL_HASH_BYTES], const uint8_t (*proof)[BAL_HASH_BYTES],
                                    size_t nproof, char *why, size_t whylen);

/**
 * The root of a tree built leaf by leaf, in O(log n) memory (RFC 6962 MTH
 * of every leaf added so far). Zeroed (or bal_logcheck_tree_init()) is empty.
 * - `size` leaves were added; `n` == popcount(size);
 * - stack[i] is the root of a complete subtree of 2^height[i] leaves, the
 *   heights strictly decreasing with i, covering the leaves in order.
 */
struct bal_logcheck_tree {
	uint64_t size;
	unsigned n;
	uint8_t height[64];
	uint8_t stack[64][BAL_HASH_BYTES];
};

void bal_logcheck_tree_init(struct bal_logcheck_tree *t);
/** Adds the next leaf by its leaf hash. */
void bal_logcheck_tree_add(struct bal_logcheck_tree *t, const uint8_t leaf[BAL_HASH_BYTES]);
/** MTH of the leaves so far (SHA-256 of nothing for none). */
void bal_logcheck_tree_root(const struct bal_logcheck_tree *t, uint8_t root[BAL_HASH_BYTES]);

/* ---- signed tree heads ---------------------------------------------------- */

/**
 * Writes the message a head signs into `buf` (at most `cap` bytes).
 * @return its length, or 0 when `cap` is too small or `election_id` is
 *         longer than BAL_LOGCHECK_ID_MAX bytes.
 */
size_t bal_logcheck_head_message(const struct bal_tree_head *h, const char *election_id, uint8_t *buf, size_t cap);

/** Checks h->signature under `pk` for `election_id`.
 * @return 0, BAL_EAUTH, or -EINVAL (election id too long). */
int bal_logcheck_head_verify(const struct bal_tree_head *h, const char *election_id,
                             const uint8_t pk[BAL_LOGCHECK_KEY_BYTES], char *why, size_t whylen);

/**
 * A receipt's own checks: the head's signature under `pk` for `election_id`,
 * then the inclusion proof of r->leaf_hash at r->leaf_index up to the signed
 * root. (That the leaf hash is the batch's and the index its position is the
 * caller's to check: only it has the bytes and the ack.)
 * @return 0, BAL_EAUTH or BAL_ECORRUPT, `why` naming the check that failed.
 */
int bal_logcheck_receipt_verify(const struct bal_receipt *r, const char *election_id,
                                const uint8_t pk[BAL_LOGCHECK_KEY_BYTES], char *why, size_t whylen);

/* ---- JSON ----------------------------------------------------------------- */

/**
 * Reads a head from `o`'s members "tree_size", "timestamp_ms" (integers
 * >= 0), "root_hash" (64 hex) and "signature" (128 hex); other members are
 * ignored. @return 0 or -EINVAL naming the member.
 */
int bal_logcheck_head_from_json(json_t *o, struct bal_tree_head *h, char *why, size_t whylen);
/** Sets those four members of object `o` (lowercase hex). @return 0 or -ENOMEM. */
int bal_logcheck_head_to_json(const struct bal_tree_head *h, json_t *o);

/**
 * Reads a receipt: the head's members as above plus "leaf_index",
 * "leaf_hash" and "audit_path" (array of 64-hex strings, at most
 * BAL_TREE_MAX_PATH). When `o` has an object member "receipt" (an ack as
 * the daemon sends it in JSON), that object is read instead.
 * @return 0 or -EINVAL naming the member.
 */
int bal_logcheck_receipt_from_json(json_t *o, struct bal_receipt *r, char *why, size_t whylen);
/** Sets the receipt's members of object `o` (lowercase hex). @return 0 or -ENOMEM. */
int bal_logcheck_receipt_to_json(const struct bal_receipt *r, json_t *o);

/**
 * Reads a proof array (of `member` in `o`): at most BAL_TREE_MAX_PATH hashes
 * of 64 hex digits each. @return 0 or -EINVAL.
 */
int bal_logcheck_path_from_json(json_t *o, const char *member, uint8_t (*path)[BAL_HASH_BYTES], unsigned *npath,
                                char *why, size_t whylen);

/* ---- keys ----------------------------------------------------------------- */

/**
 * A public key given as 64 hex digits, or as the path of a file whose
 * content is 64 hex digits (surrounding white space ignored).
 * @return 0, -EINVAL (neither), or -errno of reading the file.
 */
int bal_logcheck_key_parse(const char *text, uint8_t pk[BAL_LOGCHECK_KEY_BYTES], char *why, size_t whylen);

/**
 * Writes a log key pair: `path` gets the 32-byte Ed25519 seed as 64
 * lowercase hex digits and a newline, created with mode 0600; `path`.pub the
 * public key likewise (mode 0644). Neither may exist already. Both files and
 * their directory are fsynced. With `seed` NULL a random seed is drawn.
 * @param[out] pk  the public key
 * @return 0; -EEXIST (nothing written); -errno (nothing left behind).
 */
int bal_logcheck_key_write(const char *path, const uint8_t *seed, uint8_t pk[BAL_LOGCHECK_KEY_BYTES], char *why,
                           size_t whylen);

#endif
