/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Committer thread: group commit into LMDB, then publish, then deliver.
 * Depends on storage/ (never on lmdb.h directly) and core; it never calls
 * libuv: results go back through bal_worker_deliver().
 *
 * The committer keeps no counters of its own: the published array is the
 * committed state, and the committer is its only writer. A group's deltas
 * reach it after the commit; until then the running bound (bal_tally_bound())
 * proves that ordinary batches cannot overflow. Beyond the bound (after
 * counts near 2^63), an ordinary batch is checked against the published
 * counters with the group's accepted deltas as headroom; a protocol, or a
 * batch that fails that conservative check, opens a group of its own and is
 * checked exactly (a group that has accepted batches ends before it). A
 * snapshot slice, when due, is written first in the txn, from the published
 * counters at the committed position.
 *
 * An amendment is committed in a write txn of its own: it is checked against
 * the committed state (the journal it names, keys, frozen precincts), and
 * once durable it changes that state, and the counters for a void, before
 * the next group starts. A batch is checked against the amendments
 * committed before its group: it is refused (401) if its precinct's key
 * changed since its signature was verified, and (422) if its precinct is
 * frozen and the batch is not a resend of a journaled one.
 */
#include "daemon/commit.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/amend.h"
#include "daemon/clock.h"
#include "daemon/log.h"
#include "daemon/tlog.h"
#include "daemon/worker.h"
#include "proto/codec.h"
#include "storage/storage.h"

#define U64(x) ((unsigned long long)(x))

struct bal_committer {
	struct bal_daemon *d;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct bal_job *stack; /* lock-free LIFO of submitted jobs (atomic) */
	int sleeping;          /* committer is (about to be) waiting on cond (atomic) */
	int stop;              /* set by bal_committer_stop (atomic) */
	uint64_t bound;        /* no slot is above it, counting the open txn's deltas (bal_tally_bound()) */
	uint64_t position;     /* last committed journal position */
	/* Snapshots go a slice of precincts at a time, in turn, inside group
	 * commits (see storage/store_lmdb.h), paced so that a round of all
	 * `nslices` takes cfg.snapshot_ms or cfg.snapshot_every batches,
	 * whichever comes first: recovery then replays about one round. */
	unsigned nslices;
	unsigned next_slice; /* the slice the next group snapshots */
	uint64_t slice_ms;   /* when the last slice was written */
	uint64_t slice_at;   /* position it was written at */
	uint64_t *slice_buf; /* packed slice; owned; slice_cap values */
	size_t slice_cap;
	uint64_t snap_retry_ms; /* no snapshot in a group before this (one did not fit) */
	/* Degraded state. A nearly full map or disk makes big groups fail and
	 * small ones succeed alternately, so a success ends the degraded state
	 * only once no write has failed for FAIL_QUIET_MS; while degraded and
	 * idle, a snapshot write every FAIL_QUIET_MS probes for room. The same
	 * failure is logged at most every FAIL_LOG_MS, with the number not logged. */
	uint64_t last_fail_ms;            /* when a write txn last failed */
	int fail_logged;                  /* errno of the last failure line (0: none since the last recovery line) */
	uint64_t fail_log_ms;             /* when it was logged */
	uint64_t failed_txns;             /* failed write txns not yet logged */
	uint64_t unstored;                /* batches in them */
	const struct bal_delta **applied; /* scratch: deltas accepted in the group; cap group_max */
	struct bal_pending *pending;      /* the same deltas, summed per precinct for the plausibility check */
	struct bal_job **heads, **tails;  /* scratch: per-worker delivery lists; cap threads */
	struct bal_arena arena;           /* decodes amendments */
	struct bal_void_plan plan;        /* what a void takes back */
};

int bal_committer_submit(struct bal_committer *c, struct bal_job *job)
{
	struct bal_daemon *d = c->d;
	uint64_t n = __atomic_add_fetch(&d->inflight, 1, __ATOMIC_RELAXED);
	if (n > d->cfg.queue_depth) {
		__atomic_sub_fetch(&d->inflight, 1, __ATOMIC_RELAXED);
		return BAL_EBUSY;
	}
	struct bal_job *old = __atomic_load_n(&c->stack, __ATOMIC_RELAXED);
	do {
		job->next = old;
	} while (!__atomic_compare_exchange_n(&c->stack, &old, job, true, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
	/* Dekker pairing with the committer's sleeping store + stack load (both
	 * seq_cst): either it sees our job or we see it sleeping and signal. */
	if (__atomic_load_n(&c->sleeping, __ATOMIC_SEQ_CST)) {
		pthread_mutex_lock(&c->lock);
		pthread_cond_signal(&c->cond);
		pthread_mutex_unlock(&c->lock);
	}
	return 0;
}

/* Takes every queued job, oldest first. */
static struct bal_job *take_all(struct bal_committer *c)
{
	struct bal_job *lifo = __atomic_exchange_n(&c->stack, NULL, __ATOMIC_ACQUIRE);
	struct bal_job *fifo = NULL;
	while (lifo) {
		struct bal_job *next = lifo->next;
		lifo->next = fifo;
		fifo = lifo;
		lifo = next;
	}
	return fifo;
}

#define FAIL_QUIET_MS 5000
#define FAIL_LOG_MS   30000

static bool slice_due(struct bal_committer *c, uint64_t position, uint64_t now)
{
	const struct bal_config *cfg = &c->d->cfg;
	if (position == bal_store_slice_position(c->d->store, c->next_slice) || now < c->snap_retry_ms)
		return false;
	return (position - c->slice_at) * c->nslices >= cfg->snapshot_every ||
	       (now - c->slice_ms) * c->nslices >= cfg->snapshot_ms;
}

/* Slice k's precincts that have counters: storage's slices also cover the
 * commission's index, after the last precinct, which has none. */
static void counted_range(const struct bal_daemon *d, unsigned k, uint32_t *first, uint32_t *end)
{
	bal_store_slice_range(d->store, k, first, end);
	if (*end > d->defn->nprecincts)
		*end = d->defn->nprecincts;
	if (*first > *end)
		*first = *end;
}

/* Before any append in the write txn: slice k of the published counters, i.e.
 * at the committed position (the committer is their only writer). */
static int put_slice(struct bal_committer *c, unsigned k)
{
	uint32_t first, end;
	counted_range(c->d, k, &first, &end);
	size_t n = first < end ? bal_layout_slice_pack(c->d->layout, c->d->pub.ctr, first, end, c->slice_buf) : 0;
	return bal_store_put_slice(c->d->store, k, c->slice_buf, n * sizeof(uint64_t));
}

/* Whether some slice's snapshot is older than the committed position. */
static bool slices_stale(const struct bal_committer *c)
{
	for (unsigned k = 0; k < c->nslices; k++)
		if (bal_store_slice_position(c->d->store, k) != c->position)
			return true;
	return false;
}

/*
 * Whether an amendment committed before this group refuses batch `j`: its
 * signature was verified under a key of its precinct that is no longer
 * current (revoked or replaced while the batch was queued), or its precinct
 * is frozen and `j` is not a resend of a journaled batch (which still gets
 * its DUPLICATE). Sets the result and the reason when it does.
 */
static bool amended_since(struct bal_committer *c, struct bal_job *j)
{
	struct bal_daemon *d = c->d;
	const uint32_t p = j->delta.precinct;
	if (d->cfg.auth && j->key_version != bal_amend_key_version(d->amend, p)) {
		struct bal_key_view k;
		bal_amend_key(d->amend, p, &k);
		j->result = BAL_EAUTH;
		j->position = 0;
		snprintf(j->why, sizeof(j->why),
		         "the key of precinct %u changed while the batch was in flight (amendment at position %llu); "
		         "retry",
		         j->precinct_id, U64(k.changed_at));
		return true;
	}
	uint64_t frozen = bal_amend_frozen_at(d->amend, p);
	if (!frozen || bal_store_seen(d->store, p, j->seq) == 1)
		return false;
	j->result = BAL_EINVALID;
	j->position = 0;
	snprintf(j->why, sizeof(j->why), "precinct %u frozen by amendment at position %llu", j->precinct_id,
	         U64(frozen));
	return true;
}

static void set_unstored(struct bal_job *job, int err, size_t map_size)
{
	job->result = err;
	job->position = 0;
	if (err == -ENOSPC)
		snprintf(job->why, sizeof(job->why),
		         "journal full: the LMDB map (%zu bytes) or the disk is full; batch not stored", map_size);
	else
		snprintf(job->why, sizeof(job->why), "journal commit failed: %s; batch not stored, retry",
		         bal_strerror(err));
}

/* Unix time in ms: a tree head's timestamp. */
static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * Within the write txn, after the group's appends: signs the head of the
 * tree at `size` (the txn's last position), keeps it, and writes the
 * receipt of every job of [first, end) the txn journaled, from memory. One
 * signature per group: its cost is shared by the group's batches.
 */
static int sign_group(struct bal_committer *c, struct bal_job *first, struct bal_job *end, uint64_t size)
{
	struct bal_daemon *d = c->d;
	struct bal_tree_head h = {.tree_size = size, .timestamp_ms = wall_ms()};
	int err = bal_store_tree_wroot(d->store, h.root);
	if (err)
		return err;
	bal_tlog_sign(d, &h);
	if ((err = bal_store_put_head(d->store, &h)) != 0)
		return err;
	for (struct bal_job *j = first; j != end; j = j->next) {
		if (j->result != 0 || !j->position || !j->receipt)
			continue;
		if ((err = bal_store_tree_wpath(d->store, j->position, j->receipt)) != 0)
			return err;
		j->receipt->head = h;
		j->has_receipt = true;
	}
	return 0;
}

/*
 * One write txn over jobs [first, *stop): *stop is `end` unless a job that
 * needs the exact overflow check came after accepted ones; that job then
 * opens the next group. Returns 0 if committed, else the storage error (every
 * job of [first, end) then carries an unstored result, except overflow
 * rejections and earlier duplicates, which stand, and *stop is `end`).
 */
static int commit_group(struct bal_committer *c, struct bal_job *first, struct bal_job *end, bool with_snapshot,
                        struct bal_job **stop, size_t *naccepted, bool *snap_tried)
{
	struct bal_daemon *d = c->d;
	size_t nacc = 0;
	const uint64_t committed = c->position; /* where a slice of this txn is taken */
	uint64_t position = committed, bound = c->bound;
	uint64_t headroom = 0; /* sum of the peaks of the deltas this txn accepted (saturating) */
	struct bal_job *j = first;
	*snap_tried = false;
	bal_pending_clear(c->pending); /* the previous group is applied or dropped */
	int err = bal_store_wbegin(d->store);
	if (err)
		goto fail;
	uint64_t now = bal_now_ms();
	if (with_snapshot && slice_due(c, position, now)) {
		*snap_tried = true;
		err = put_slice(c, c->next_slice);
		if (err)
			goto fail_txn;
	}
	for (; j != end; j = j->next) {
		j->why[0] = '\0';
		j->has_receipt = false;
		if (amended_since(c, j))
			continue;
		/* While the bound proves an ADD delta cannot overflow (any realistic
		 * election), no check is needed. Otherwise the published (committed)
		 * counters are checked: exactly while this txn has accepted nothing;
		 * after that, an ADD delta with the txn's deltas as headroom (a
		 * proof, or the group ends before it and it is checked exactly at the
		 * start of the next), and a protocol always opens a group. */
		uint64_t next_bound = bal_tally_bound(bound, &j->delta);
		bool add = j->delta.kind == BAL_DELTA_ADD;
		/* Plausibility first: the precinct's ballot sums, with this group's
		 * earlier batches, stay within its registered voters. A refusal does
		 * not end the group, so bad batches cannot force an fsync each. */
		j->result =
		        bal_tally_check_plausible(d->layout, d->pub.ctr, c->pending, &j->delta, j->why, sizeof(j->why));
		if (j->result)
			;
		else if (add && next_bound < BAL_TALLY_SAFE)
			j->result = 0;
		else if (!nacc)
			j->result = bal_tally_check(d->layout, d->pub.ctr, &j->delta, j->why, sizeof(j->why));
		else if (!add || bal_tally_check_headroom(d->layout, d->pub.ctr, &j->delta, headroom, NULL, 0))
			break;
		else
			j->result = 0;
		/* A resend of a journaled batch is a duplicate or a conflict, whatever
		 * its counts: it would add nothing, so it is not refused for them. */
		bool resend = (j->result == BAL_EOVERFLOW || j->result == BAL_EINVALID) &&
		              bal_store_seen(d->store, j->delta.precinct, j->seq) == 1;
		if (resend)
			j->result = 0;
		else if (j->result) {
			j->position = 0;
			continue;
		}
		err = bal_store_append(d->store, j->delta.precinct, j->seq, j->bytes, j->len, &j->position);
		if (err == BAL_EDUPLICATE) {
			j->result = err;
			continue;
		}
		if (err == BAL_EQUOTA) {
			uint64_t used = 0, quota = 0;
			(void)bal_store_precinct_bytes(d->store, j->delta.precinct, &used, &quota);
			j->result = err;
			j->position = 0;
			snprintf(j->why, sizeof(j->why),
			         "precinct %u has used its journal quota (%llu of %llu bytes; this batch %zu; "
			         "--precinct-quota); batch not stored",
			         j->precinct_id, (unsigned long long)used, (unsigned long long)quota, j->len);
			continue;
		}
		if (err == BAL_ECONFLICT) {
			j->result = err;
			snprintf(j->why, sizeof(j->why),
			         "conflicting resend: precinct %u seq %llu was journaled at position %llu with "
			         "different "
			         "bytes; recorded, not counted",
			         j->precinct_id, (unsigned long long)j->seq, (unsigned long long)j->position);
			continue;
		}
		if (err)
			goto fail_txn;
		bal_require(!resend); /* seen, so never journaled anew */
		bal_require(j->position == position + 1);
		position = j->position;
		bound = next_bound;
		headroom = bal_tally_bound(headroom, &j->delta);
		c->applied[nacc++] = &j->delta;
		bal_pending_add(c->pending, &j->delta);
		j->result = 0;
	}
	if (nacc && d->log_key.present && (err = sign_group(c, first, j, position)) != 0)
		goto fail_txn;
	uint64_t t0 = bal_now_ns();
	err = bal_store_wcommit(d->store);
	if (err)
		goto fail; /* the txn is gone either way */
	/* Durable from here on: publish, then the caller delivers the acks. */
	BAL_METRIC_ADD(d->metrics.commit_ns_total, bal_now_ns() - t0);
	BAL_METRIC_ADD(d->metrics.commits, 1);
	BAL_METRIC_ADD(d->metrics.group_batches_total, nacc);
	if (nacc)
		bal_pub_apply(&d->pub, d->layout, c->applied, nacc, position);
	c->position = position;
	c->bound = bound;
	if (*snap_tried) {
		c->next_slice = (c->next_slice + 1) % c->nslices;
		c->slice_ms = now;
		c->slice_at = committed;
		BAL_METRIC_ADD(d->metrics.snapshots, 1);
	}
	*stop = j;
	*naccepted = nacc;
	return 0;

fail_txn:
	bal_store_wabort(d->store);
fail:
	/* Nothing of this group is stored (and nothing was applied). Overflow
	 * rejections stand (plausibility refusals do not: they may depend on
	 * earlier batches of this group, which are not stored either), and so do duplicates of batches an earlier txn
	 * committed (their answer is true whatever became of this one: a
	 * resend to a full journal still learns it is stored). */
	for (j = first; j != end; j = j->next)
		if (j->result != BAL_EOVERFLOW && !(j->result == BAL_EDUPLICATE && j->position <= c->position))
			set_unstored(j, err, d->cfg.map_size);
	*stop = end;
	*naccepted = 0;
	return err;
}

/* What an amendment did, for the log. */
static void describe(const struct bal_amendment *am, const struct bal_void_plan *v, char *buf, size_t len)
{
	switch (am->change) {
	case BAL_CHANGE_REVOKE_KEY: snprintf(buf, len, "revoked the key of precinct %u", am->precinct_id); break;
	case BAL_CHANGE_SET_KEY: snprintf(buf, len, "set the key of precinct %u", am->precinct_id); break;
	case BAL_CHANGE_FREEZE: snprintf(buf, len, "froze precinct %u", am->precinct_id); break;
	case BAL_CHANGE_CERTIFY: snprintf(buf, len, "certified the results at position %llu", U64(am->position)); break;
	case BAL_CHANGE_VOID:
		snprintf(buf, len, "voided position %llu (seq %llu)%s", U64(am->position), U64(v->seq),
		         v->has_prev ? ", an older protocol counts again" : "");
		break;
	case BAL_CHANGE_NONE: snprintf(buf, len, "changed nothing"); break;
	}
}

/*
 * Amendment `j`, in a write txn of its own (see the top of the file). A
 * resend of a journaled amendment is a duplicate (or a recorded conflict)
 * whatever the state says of it now. Returns 0, or the storage error of a
 * failed txn (the job then carries an unstored result).
 */
static int commit_amendment(struct bal_committer *c, struct bal_job *j)
{
	struct bal_daemon *d = c->d;
	const uint32_t commission = d->defn->nprecincts;
	struct bal_amendment am;
	j->why[0] = '\0';
	j->has_receipt = false;
	j->position = 0;
	bal_arena_reset(&c->arena);
	int err = bal_codec_amendment_decode(j->bytes, j->len, &c->arena, &am, j->why, sizeof(j->why));
	if (err) /* decoded once already by the I/O thread: only memory can fail */
		goto fail;
	int check = bal_amend_check(d, &am, c->position, d->pub.ctr, &c->plan, j->why, sizeof(j->why));
	if (check && check != BAL_EINVALID) {
		bal_log(BAL_LOG_ERROR, "commit", "amendment seq %llu not checked: %s", U64(am.seq), j->why);
		err = check;
		goto fail;
	}
	if ((err = bal_amend_reserve(d->amend)) != 0 || (err = bal_store_wbegin(d->store)) != 0)
		goto fail;
	int seen = bal_store_seen(d->store, commission, am.seq);
	if (seen < 0) {
		err = seen;
		goto fail_txn;
	}
	if (check && !seen) {
		j->result = check;
		bal_store_wabort(d->store);
		return 0;
	}
	j->why[0] = '\0';
	err = bal_store_append(d->store, commission, am.seq, j->bytes, j->len, &j->position);
	if (err == BAL_EDUPLICATE) {
		j->result = err;
		bal_store_wabort(d->store);
		return 0;
	}
	if (err == BAL_ECONFLICT) {
		uint64_t original = j->position;
		if ((err = bal_store_wcommit(d->store)) != 0) /* the conflict table holds the new version */
			goto fail;
		j->result = BAL_ECONFLICT;
		j->position = original;
		snprintf(j->why, sizeof(j->why),
		         "conflicting resend: amendment seq %llu was journaled at position %llu with different bytes; "
		         "recorded, not applied",
		         U64(am.seq), U64(original));
		return 0;
	}
	if (err)
		goto fail_txn;
	bal_require(j->position == c->position + 1);
	j->result = 0;
	if (d->log_key.present && (err = sign_group(c, j, j->next, j->position)) != 0)
		goto fail_txn;
	uint64_t t0 = bal_now_ns();
	if ((err = bal_store_wcommit(d->store)) != 0)
		goto fail;
	BAL_METRIC_ADD(d->metrics.commit_ns_total, bal_now_ns() - t0);
	BAL_METRIC_ADD(d->metrics.commits, 1);
	/* Durable: the effective definition, then the counters with the
	 * position (readers list what an amendment did up to the position they
	 * fold), then the ack. */
	const bool is_void = am.change == BAL_CHANGE_VOID;
	bal_amend_apply(d->amend, &am, j->position, is_void ? c->plan.precinct : UINT32_MAX, is_void ? c->plan.seq : 0);
	bal_pub_void(&d->pub, d->layout, is_void ? &c->plan.x : NULL,
	             is_void && c->plan.has_prev ? &c->plan.prev : NULL, j->position);
	/* Taking a BALLOTS or TALLY delta back only lowers slots: the running
	 * bound stays true. Voiding the counted protocol may raise totals (to
	 * the ballot sums, or an older protocol): the exact maximum again. */
	if (is_void && c->plan.x.kind == BAL_DELTA_PROTOCOL)
		c->bound = bal_tally_max(d->layout, d->pub.ctr);
	c->position = j->position;
	char what[160];
	describe(&am, &c->plan, what, sizeof(what));
	bal_log(BAL_LOG_INFO, "commit", "amendment seq %llu at position %llu %s; reason: %.200s", U64(am.seq),
	        U64(j->position), what, am.reason);
	return 0;

fail_txn:
	bal_store_wabort(d->store);
fail:
	set_unstored(j, err, d->cfg.map_size);
	return err;
}

static void deliver(struct bal_committer *c, struct bal_job *first, struct bal_job *end)
{
	struct bal_daemon *d = c->d;
	unsigned nw = d->cfg.threads;
	for (unsigned w = 0; w < nw; w++)
		c->heads[w] = c->tails[w] = NULL;
	/* One pass splits the group into a list per worker, keeping order. */
	struct bal_job *j = first;
	while (j != end) {
		struct bal_job *next = j->next;
		unsigned w = bal_worker_index(j->worker);
		j->next = NULL;
		if (c->tails[w])
			c->tails[w]->next = j;
		else
			c->heads[w] = j;
		c->tails[w] = j;
		j = next;
	}
	for (unsigned w = 0; w < nw; w++)
		if (c->heads[w])
			bal_worker_deliver(d->workers[w], c->heads[w], c->tails[w]);
}

static void account_amendment(struct bal_daemon *d, const struct bal_job *j)
{
	switch (j->result) {
	case 0: BAL_METRIC_ADD(d->metrics.amendments_accepted, 1); break;
	case BAL_EDUPLICATE: BAL_METRIC_ADD(d->metrics.amendments_duplicate, 1); break;
	case BAL_ECONFLICT:
	case BAL_EINVALID:
		BAL_METRIC_ADD(d->metrics.amendments_rejected, 1);
		bal_log(BAL_LOG_WARN, "commit", "amendment seq %llu refused: %s", U64(j->seq), j->why);
		break;
	default: BAL_METRIC_ADD(d->metrics.amendments_unstored, 1); break;
	}
}

static void account(struct bal_daemon *d, struct bal_job *first, struct bal_job *end)
{
	for (struct bal_job *j = first; j != end; j = j->next) {
		if (j->amendment) {
			account_amendment(d, j);
			continue;
		}
		switch (j->result) {
		case 0:
			BAL_METRIC_ADD(d->metrics.batches_accepted, 1);
			BAL_METRIC_ADD(d->metrics.ballots_accepted, j->ballots);
			break;
		case BAL_EDUPLICATE: BAL_METRIC_ADD(d->metrics.batches_duplicate, 1); break;
		case BAL_ECONFLICT:
			BAL_METRIC_ADD(d->metrics.batches_conflict, 1);
			bal_log_reject("commit", "%s", j->why); /* rate-limited: anyone may resend */
			break;
		case BAL_EQUOTA:
			BAL_METRIC_ADD(d->metrics.batches_over_quota, 1);
			bal_log_reject("commit", "%s", j->why); /* one stolen key may send many */
			break;
		case BAL_EOVERFLOW:
		case BAL_EINVALID:
		case BAL_EAUTH:
			BAL_METRIC_ADD(d->metrics.batches_rejected, 1);
			bal_log_reject("commit", "precinct %u seq %llu rejected: %s", j->precinct_id,
			               (unsigned long long)j->seq, j->why);
			break;
		default: BAL_METRIC_ADD(d->metrics.batches_unstored, 1); break;
		}
	}
}

/*
 * Records the result of a write txn of `nbatches` batches: sets or ends the
 * degraded state (see struct bal_committer) and logs its changes.
 */
static void note_result(struct bal_committer *c, int err, size_t nbatches)
{
	struct bal_daemon *d = c->d;
	uint64_t now = bal_now_ms();
	if (!err) {
		if (!__atomic_load_n(&d->degraded_errno, __ATOMIC_RELAXED) || now - c->last_fail_ms < FAIL_QUIET_MS)
			return;
		__atomic_store_n(&d->degraded_errno, 0, __ATOMIC_RELAXED);
		if (c->failed_txns)
			bal_log(BAL_LOG_INFO, "commit",
			        "write transactions succeed again (%llu more failed, %llu batches not stored, since "
			        "the "
			        "last report)",
			        (unsigned long long)c->failed_txns, (unsigned long long)c->unstored);
		else
			bal_log(BAL_LOG_INFO, "commit", "write transactions succeed again");
		c->fail_logged = 0;
		c->failed_txns = c->unstored = 0;
		return;
	}
	__atomic_store_n(&d->degraded_errno, err, __ATOMIC_RELAXED);
	BAL_METRIC_ADD(d->metrics.commit_failures, 1);
	c->last_fail_ms = now;
	c->failed_txns++;
	c->unstored += nbatches;
	if (err == c->fail_logged && now - c->fail_log_ms < FAIL_LOG_MS)
		return;
	bal_log(BAL_LOG_ERROR, "commit",
	        "write transaction failed: %s (%llu failed transactions, %llu batches not stored, since the last "
	        "report); answering %s until writes succeed again",
	        bal_strerror(err), (unsigned long long)c->failed_txns, (unsigned long long)c->unstored,
	        err == -ENOSPC ? "507" : "503");
	c->fail_logged = err;
	c->fail_log_ms = now;
	c->failed_txns = c->unstored = 0;
}

/* Processes `list` (FIFO) in groups of at most group_max. */
static void process(struct bal_committer *c, struct bal_job *list)
{
	struct bal_daemon *d = c->d;
	while (list) {
		if (list->amendment) {
			struct bal_job *j = list, *next = list->next;
			note_result(c, commit_amendment(c, j), 1);
			account(d, j, next);
			list = next;
			deliver(c, j, next);
			continue;
		}
		/* A group ends before an amendment: it has a txn of its own. */
		struct bal_job *first = list, *end = list, *stop;
		size_t n = 0;
		for (; end && n < d->cfg.group_max && !end->amendment; n++)
			end = end->next;
		size_t nacc = 0;
		bool snap_tried;
		int err = commit_group(c, first, end, true, &stop, &nacc, &snap_tried);
		if (err == -ENOSPC && snap_tried) {
			/* The snapshot may be what did not fit: the batches come first, and
			 * further snapshots wait an interval instead of doubling every txn. */
			c->snap_retry_ms = bal_now_ms() + d->cfg.snapshot_ms;
			err = commit_group(c, first, end, false, &stop, &nacc, &snap_tried);
		}
		note_result(c, err, n); /* n counts only for a failed txn, which always covers [first, end) */
		account(d, first, stop);
		list = stop;
		deliver(c, first, stop);
	}
}

enum snap_why {
	SNAP_TAIL,  /* idle with slices behind the committed position */
	SNAP_PROBE, /* degraded and idle: does a write fit again? (rewrites a slice if need be) */
	SNAP_FINAL, /* stopping: its failure is always logged */
};

/* Snapshot-only txn: every slice behind the committed position (a probe
 * writes at least the next one), so the next start replays nothing. */
static void idle_snapshot(struct bal_committer *c, enum snap_why why)
{
	struct bal_daemon *d = c->d;
	unsigned written = 0;
	if (!slices_stale(c) && why != SNAP_PROBE)
		return;
	int err = bal_store_wbegin(d->store);
	for (unsigned k = 0; k < c->nslices && !err; k++) {
		if (bal_store_slice_position(d->store, k) == c->position && !(why == SNAP_PROBE && !written))
			continue;
		err = put_slice(c, k);
		written++;
	}
	if (!err) {
		err = bal_store_wcommit(d->store);
	} else {
		bal_store_wabort(d->store);
	}
	if (err && (err != c->fail_logged || why == SNAP_FINAL))
		bal_log(BAL_LOG_WARN, "commit", "%ssnapshot at position %llu failed: %s%s",
		        why == SNAP_FINAL ? "final " : "", (unsigned long long)c->position, bal_strerror(err),
		        why == SNAP_FINAL ? "; the next start replays the journal after the older slices" : "");
	note_result(c, err, 0);
	c->slice_ms = bal_now_ms(); /* after a failure: retry after another interval, not in a loop */
	if (err)
		return;
	c->slice_at = c->position;
	BAL_METRIC_ADD(d->metrics.snapshots, written);
}

/* How long the idle committer may sleep: 0 = until woken. */
static uint64_t idle_wait_ms(const struct bal_committer *c)
{
	uint64_t wait_ms = slices_stale(c) ? c->d->cfg.snapshot_ms : 0;
	if (__atomic_load_n(&c->d->degraded_errno, __ATOMIC_RELAXED)) {
		uint64_t since = bal_now_ms() - c->last_fail_ms;
		uint64_t probe = since < FAIL_QUIET_MS ? FAIL_QUIET_MS - since : 1;
		if (!wait_ms || probe < wait_ms)
			wait_ms = probe;
	}
	return wait_ms;
}

/*
 * The committer sleeps in every fdatasync and wakes when the disk answers,
 * about a thousand times a second under load. As an ordinary thread each
 * wake-up preempts an I/O thread in the middle of its requests (and spoils its
 * caches); as SCHED_BATCH it runs as soon as that thread waits for the network,
 * or at the end of its time slice, at the same priority. Measured at 1,000
 * connections: 5-8% more batches/s; at 100, latency unchanged. Best effort:
 * without it the daemon works the same, somewhat slower.
 */
static void no_wakeup_preemption(void)
{
#ifdef SCHED_BATCH
	struct sched_param sp = {.sched_priority = 0};
	int err = pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
	if (err)
		bal_log(BAL_LOG_DEBUG, "commit", "SCHED_BATCH not set: %s", bal_strerror(-err));
#endif
}

static void *run(void *arg)
{
	struct bal_committer *c = arg;
	no_wakeup_preemption();
	for (;;) {
		struct bal_job *list = take_all(c);
		if (list) {
			/* /healthz calls the committer stalled when this stays set too long. */
			__atomic_store_n(&c->d->committer_busy_ms, bal_now_ms(), __ATOMIC_RELAXED);
			process(c, list);
			__atomic_store_n(&c->d->committer_busy_ms, 0, __ATOMIC_RELAXED);
			continue;
		}
		if (__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE))
			break;
		pthread_mutex_lock(&c->lock);
		__atomic_store_n(&c->sleeping, 1, __ATOMIC_SEQ_CST);
		bool timed_out = false;
		while (!__atomic_load_n(&c->stack, __ATOMIC_SEQ_CST) && !__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
			uint64_t wait_ms = idle_wait_ms(c);
			if (!wait_ms) {
				pthread_cond_wait(&c->cond, &c->lock);
				continue;
			}
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			uint64_t ns = (uint64_t)ts.tv_nsec + wait_ms * 1000000ull;
			ts.tv_sec += (time_t)(ns / 1000000000ull);
			ts.tv_nsec = (long)(ns % 1000000000ull);
			if (pthread_cond_timedwait(&c->cond, &c->lock, &ts) == ETIMEDOUT) {
				timed_out = true;
				break;
			}
		}
		__atomic_store_n(&c->sleeping, 0, __ATOMIC_SEQ_CST);
		pthread_mutex_unlock(&c->lock);
		if (timed_out) {
			bool probe = __atomic_load_n(&c->d->degraded_errno, __ATOMIC_RELAXED) &&
			             bal_now_ms() - c->last_fail_ms >= FAIL_QUIET_MS;
			idle_snapshot(c, probe ? SNAP_PROBE : SNAP_TAIL);
		}
	}
	/* Stopping: everything queued has been processed; leave a snapshot so
	 * the next start replays nothing. */
	idle_snapshot(c, SNAP_FINAL);
	return NULL;
}

int bal_committer_start(struct bal_daemon *d, uint64_t position, struct bal_committer **out)
{
	int err = -ENOMEM;
	struct bal_committer *c = calloc(1, sizeof(*c));
	if (!c)
		return err;
	c->d = d;
	c->bound = bal_tally_max(d->layout, d->pub.ctr);
	c->position = position;
	c->nslices = bal_store_slices(d->store);
	for (unsigned k = 0; k < c->nslices; k++) {
		uint32_t first, end;
		counted_range(d, k, &first, &end);
		size_t n = bal_layout_slice_len(d->layout, first, end);
		if (n > c->slice_cap)
			c->slice_cap = n;
	}
	c->slice_ms = bal_now_ms();
	c->slice_at = position;
	c->slice_buf = malloc((c->slice_cap ? c->slice_cap : 1) * sizeof(*c->slice_buf));
	c->applied = calloc(d->cfg.group_max, sizeof(*c->applied));
	c->pending = bal_pending_new(d->layout);
	c->heads = calloc(d->cfg.threads, sizeof(*c->heads));
	c->tails = calloc(d->cfg.threads, sizeof(*c->tails));
	bal_arena_init(&c->arena, 0);
	err = bal_void_plan_init(&c->plan, d->layout);
	if (err || !c->slice_buf || !c->applied || !c->pending || !c->heads || !c->tails) {
		err = -ENOMEM;
		goto fail_c;
	}
	pthread_mutex_init(&c->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &ca);
	pthread_condattr_destroy(&ca);
	err = -pthread_create(&c->thread, NULL, run, c);
	if (err)
		goto fail_sync;
	pthread_setname_np(c->thread, "ballotd-commit");
	*out = c;
	return 0;

fail_sync:
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
fail_c:
	free(c->slice_buf);
	free(c->applied);
	bal_pending_free(c->pending);
	free(c->heads);
	free(c->tails);
	bal_arena_deinit(&c->arena);
	bal_void_plan_deinit(&c->plan);
	free(c);
	return err;
}

void bal_committer_stop(struct bal_committer *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	__atomic_store_n(&c->stop, 1, __ATOMIC_RELEASE);
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->thread, NULL);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c->slice_buf);
	free(c->applied);
	bal_pending_free(c->pending);
	free(c->heads);
	free(c->tails);
	bal_arena_deinit(&c->arena);
	bal_void_plan_deinit(&c->plan);
	free(c);
}
