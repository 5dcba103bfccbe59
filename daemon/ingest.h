/* SPDX-License-Identifier: Apache-2.0 */
/*
 * POST /v1/batches and /v1/amendments: decode, authenticate, validate (and
 * fold) a batch or an amendment, hand it to the committer, and build its ack
 * once the committer hands it back.
 *
 * Threads: the loop thread of the connection's worker.
 */
#ifndef BAL_DAEMON_INGEST_H
#define BAL_DAEMON_INGEST_H

struct bal_req;

/**
 * Handles the complete request in `s`: answers it at once (rejection, null
 * mode: the request is left READY) or submits its job to the committer (QUEUED).
 */
void bal_ingest_request(struct bal_req *req);

/**
 * POST /v1/amendments: the same for a SignedAmendment (403 when the
 * definition has no commission key). Its ack is a BatchAck, with a receipt
 * like a batch's.
 */
void bal_ingest_amendment(struct bal_req *req);

/** Builds the ack of a job the committer has finished; leaves the request READY. */
void bal_ingest_finish(struct bal_req *req);

#endif
