/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The transparency log's daemon side: the log key, signed tree heads,
 * receipts in acknowledgements and the GET /v1/log/... endpoints. The tree
 * itself is storage's (storage/merkle.c); this module signs its heads and
 * serves its proofs.
 *
 * A signed tree head is Ed25519 by the log key over
 *   "ballotd-sth-v1" 0x00 election_id 0x00 uint64be(tree_size)
 *   uint64be(timestamp_ms) root_hash(32)
 * and the committer signs one per commit group that journaled something
 * (bal_tlog_sign()). The log key is the operator's (--log-key FILE, 32-byte
 * Ed25519 seed in hex, made by `ballotctl keygen`): never in the data
 * directory, refused if others may read it. The embedded demo election
 * derives one from its public seed. Without a key the tree is still kept
 * but no head is signed and acknowledgements carry no receipt.
 */
#ifndef BAL_DAEMON_TLOG_H
#define BAL_DAEMON_TLOG_H

#include "core/ballot.h"

struct bal_daemon;
struct bal_req;
struct bal_text;

/** The log key, once loaded. */
struct bal_tlog_key {
	bool present;
	uint8_t pk[32];
	uint8_t sk[64];
};

/**
 * Main thread, at startup, after the definition is loaded: loads
 * cfg.log_key_path into d->log_key (or the demo key with --demo, or none,
 * with a warning). Refuses a file readable by group or others, inside the
 * data directory, or not holding 64 hex digits.
 * @return 0, or -1 after logging why.
 */
int bal_tlog_load_key(struct bal_daemon *d);

/** Committer: signs `h` (tree_size, timestamp_ms, root set) with the log key. */
void bal_tlog_sign(const struct bal_daemon *d, struct bal_tree_head *h);

/** Appends `"receipt":{...}` (JSON, hex lowercase) to `b`. */
void bal_tlog_receipt_json(struct bal_text *b, const struct bal_receipt *r);

/**
 * I/O thread: a DUPLICATE's receipt, against the latest head: 0 and `r`
 * filled, or an error (no log key, no head yet, storage).
 */
int bal_tlog_receipt_for(struct bal_daemon *d, uint64_t position, struct bal_receipt *r);

/** GET /v1/log/<rest>?<query>: key, sth, proof/inclusion, proof/consistency. */
void bal_tlog_request(struct bal_req *req, const char *rest, const char *query);

#endif
