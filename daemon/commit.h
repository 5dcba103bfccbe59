/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The committer thread: the only writer of LMDB and of the published counters.
 *
 * I/O workers hand it validated batches (struct bal_job) through a lock-free
 * multi-producer stack; it drains everything queued into one write
 * transaction (group commit): dedup + journal append per batch, an overflow
 * proof or check, sometimes a counter snapshot slice; then it
 * commits and syncs, and only then applies the deltas to the published
 * counters and hands the jobs back to their workers to send the acks.
 * Ordering rule enforced here: commit (fsync) -> publish counters -> deliver
 * results. A job is never delivered as accepted before its txn is durable.
 *
 * Threads: bal_committer_start() and bal_committer_stop() belong to the main
 * thread, bal_committer_submit() to the I/O threads.
 */
#ifndef BAL_DAEMON_COMMIT_H
#define BAL_DAEMON_COMMIT_H

#include "daemon/daemon.h"

/**
 * One batch, or one amendment, on its way to the journal. The memory belongs
 * to the connection request that submitted it; the committer borrows it
 * from submit to delivery.
 * - `bytes`, `delta.e` stay valid and unchanged until the job is delivered;
 * - `amendment`: `bytes` is a SignedAmendment whose checks that need no
 *   state passed (the committer decodes it again), `precinct_id` is
 *   BAL_COMMISSION_ID, `seq` the amendment's and `delta` empty;
 * - `key_version` is the precinct's key version (bal_amend_key()) the
 *   signature was verified under: a batch whose key changed since is
 *   refused (401), so no batch is journaled after an amendment under a key
 *   it revoked or replaced;
 * - `result`, `position`, `why` are written by the committer before delivery
 *   and read by the worker after it.
 */
struct bal_job {
	struct bal_job *next;      /**< link: committer stack, then delivery list */
	struct bal_worker *worker; /**< receives the result */
	void *owner;               /**< the submitting request; opaque to the committer */
	bool amendment;
	uint32_t precinct_id;
	uint64_t seq;
	uint64_t ballots;
	uint64_t key_version;
	const uint8_t *bytes; /**< the SignedBatch (or SignedAmendment) exactly as received */
	size_t len;
	struct bal_delta delta;
	/* results */
	int result; /**< 0, BAL_EDUPLICATE, BAL_ECONFLICT, BAL_EOVERFLOW, BAL_EINVALID, BAL_EAUTH, -ENOSPC, -errno */
	uint64_t position;
	/** Where the committer writes an ACCEPTED batch's receipt when the log
	 * signs (NULL: none wanted); `has_receipt` says it did. */
	struct bal_receipt *receipt;
	bool has_receipt;
	char why[200];
};

/**
 * Starts the committer thread ("ballotd-commit"), the only writer of d->pub
 * from here on.
 * @param position  journal position the published counters (d->pub) fold.
 * @return 0, -ENOMEM, -errno (thread creation).
 */
int bal_committer_start(struct bal_daemon *d, uint64_t position, struct bal_committer **out);

/**
 * Any I/O thread: queues `job`. Never blocks.
 * @return 0; BAL_EBUSY when cfg.queue_depth batches are already in flight
 *         (the caller answers 503 + Retry-After).
 */
int bal_committer_submit(struct bal_committer *c, struct bal_job *job);

/**
 * Commits whatever is queued, writes a final snapshot, stops and joins the
 * thread, frees it. Call after the workers have stopped submitting.
 */
void bal_committer_stop(struct bal_committer *c);

#endif
