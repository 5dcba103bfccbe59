/*
 * POST /v1/batches: decode, authenticate, validate and fold a batch, hand it
 * to the committer, and build its ack once the committer hands it back.
 *
 * Threads: the loop thread of the connection's worker.
 */
#ifndef BAL_DAEMON_INGEST_H
#define BAL_DAEMON_INGEST_H

struct bal_slot;

/**
 * Handles the complete request in `s`: answers it at once (rejection, null
 * mode: the slot is left READY) or submits its job to the committer (QUEUED).
 */
void bal_ingest_request(struct bal_slot *s);

/** Builds the ack of a job the committer has finished; leaves the slot READY. */
void bal_ingest_finish(struct bal_slot *s);

#endif
