/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The effective definition: the definition file plus every journaled
 * amendment, applied in journal order (docs/design.md, "Amendments"). It
 * keeps, per precinct, the key that signs its batches (the definition's, one
 * an amendment set, or none once revoked) and whether it is frozen, and the
 * list of every amendment with what it did, for the queries. What a void
 * does to the counters is core's (bal_tally_void()); finding what it takes
 * back, in the journal, is here (struct bal_void_plan).
 *
 * Threads. One writer: recovery on the main thread, then the committer. The
 * committer checks an amendment against this state and the journal
 * (bal_amend_check()), journals it, and once it is durable applies it
 * (bal_amend_apply(), which cannot fail: bal_amend_reserve() made room
 * before the commit). I/O threads read a precinct's key through a seqlock of
 * its own (bal_amend_key()), never blocking the committer; queries read the
 * list under a mutex (bal_amend_each()) that the writer takes only to
 * append. The writer reads its own state without either.
 */
#ifndef BAL_DAEMON_AMEND_H
#define BAL_DAEMON_AMEND_H

#include "core/ballot.h"
#include "core/tally.h"

struct bal_daemon;

/** Who signs a precinct's batches. */
enum bal_key_state {
	BAL_KEY_NONE = 0, /**< nobody: the definition gives it no key and no amendment set one (empty signatures) */
	BAL_KEY_SET,      /**< `key` (the definition's, or an amendment's) */
	BAL_KEY_REVOKED,  /**< revoked by an amendment: no key signs for it */
};

/** A precinct's key as an I/O thread sees it. */
struct bal_key_view {
	enum bal_key_state state;
	uint8_t key[32];     /**< valid iff BAL_KEY_SET */
	uint64_t version;    /**< changes with every amendment to this precinct's key */
	uint64_t changed_at; /**< position of the amendment that made it so; 0: the definition */
};

/** One journaled amendment, as the queries list it. */
struct bal_amend_rec {
	uint64_t position; /**< where it is journaled */
	enum bal_change change;
	uint32_t precinct;   /**< index: of revoke_key, set_key, freeze; of the voided batch; UINT32_MAX: none */
	uint64_t target;     /**< void, certify: the position named */
	uint64_t target_seq; /**< void: the voided batch's seq */
	char reason[BAL_REASON_MAX + 1];
};

/** Opaque; bal_amend_new() / bal_amend_free(). */
struct bal_amend;

/** The state of `d` before any amendment (`d` borrowed; it must outlive the
 * state). NULL on ENOMEM. */
struct bal_amend *bal_amend_new(const struct bal_defn *d);
/** NULL is fine. */
void bal_amend_free(struct bal_amend *a);

/** Any thread: precinct index `p`'s key, consistent (a seqlock read). */
void bal_amend_key(const struct bal_amend *a, uint32_t p, struct bal_key_view *out);

/* ---- the writer's ---------------------------------------------------------- */

/** The version bal_amend_key() reports for `p` now. */
uint64_t bal_amend_key_version(const struct bal_amend *a, uint32_t p);
/** Position of the amendment that froze precinct index `p`, 0 if none. */
uint64_t bal_amend_frozen_at(const struct bal_amend *a, uint32_t p);
/** Position of the amendment that voided journal position `x` before
 * position `before`, 0 if none did. */
uint64_t bal_amend_voided_at(const struct bal_amend *a, uint64_t x, uint64_t before);

/** Amendments applied so far, and the i-th of them (i < count), in journal order. */
size_t bal_amend_count(const struct bal_amend *a);
const struct bal_amend_rec *bal_amend_at(const struct bal_amend *a, size_t i);

/**
 * Room for one more amendment, so that bal_amend_apply() cannot fail.
 * @return 0 or -ENOMEM.
 */
int bal_amend_reserve(struct bal_amend *a);

/**
 * Applies `am`, journaled at `position` (above every one applied before),
 * after bal_amend_reserve(): its record is listed, and a revoked or set key
 * or a frozen precinct takes effect. `void_precinct` and `void_seq` name the
 * voided batch (bal_void_plan) for a void, and are ignored otherwise. Changes
 * no counter (the caller voids).
 */
void bal_amend_apply(struct bal_amend *a, const struct bal_amendment *am, uint64_t position, uint32_t void_precinct,
                     uint64_t void_seq);

/* ---- the queries' ---------------------------------------------------------- */

/** Any thread: calls `cb` for every amendment journaled at or before `upto`,
 * in journal order, under the state's mutex: `cb` must be quick and must not
 * call into the state. */
void bal_amend_each(struct bal_amend *a, uint64_t upto, void (*cb)(void *arg, const struct bal_amend_rec *r),
                    void *arg);

/* ---- voids --------------------------------------------------------------------- */

/**
 * What a void takes out of the counters: the voided batch's fold and, when it
 * is the counted protocol, the fold of the protocol that counts instead.
 * Owned by one thread; its buffers are allocated once (bal_void_plan_init()).
 * - `x` holds the voided batch's fold after bal_void_plan_make();
 * - `prev` holds the previous protocol's fold iff `has_prev`.
 */
struct bal_void_plan {
	uint32_t precinct; /**< the voided batch's precinct index */
	uint64_t seq;      /**< and its seq */
	struct bal_delta x;
	struct bal_delta prev;
	bool has_prev;
	uint64_t prev_position;
	struct bal_arena arena; /* scratch: decoding */
	uint8_t *rec;           /* scratch: a journal record */
	size_t cap;
};

/** Allocates the buffers for layout `l`. 0 or -ENOMEM (then deinit is still safe). */
int bal_void_plan_init(struct bal_void_plan *v, const struct bal_layout *l);
void bal_void_plan_deinit(struct bal_void_plan *v);

/**
 * Reads the batch journaled at `x` (<= the committed position) and folds it
 * into v->x. If it is the protocol counted in `ctr`, finds the protocol that
 * counts instead: the highest-seq protocol of its precinct journaled before
 * position `before` other than `x` and not voided by an amendment before
 * `before` (the state's list), folded into v->prev. Reads the journal (read
 * txns of its own); writes nothing but `v`.
 * @return 0; BAL_EINVALID (with `why`) when `x` holds an amendment;
 *         BAL_ECORRUPT when a journaled record no longer decodes or folds;
 *         -errno from storage.
 */
int bal_void_plan_make(struct bal_void_plan *v, struct bal_daemon *d, uint64_t x, uint64_t before, const uint64_t *ctr,
                       char *why, size_t whylen);

/**
 * Main thread, at startup, before recovery's walk: applies every journaled
 * amendment to d->amend in journal order, found through the commission's
 * dedup keys whatever the snapshots cover (no snapshot holds keys or frozen
 * precincts). A void's record names its batch, read from the journal with
 * `v`'s buffers; what it takes back is the walk's, at its place in the
 * journal (bal_void_plan_make()).
 * @return 0; BAL_ECORRUPT (with `why`) when a record no longer decodes or
 *         applies; -errno.
 */
int bal_amend_load(struct bal_daemon *d, struct bal_void_plan *v, char *why, size_t whylen);

/**
 * The committer, for an amendment whose static checks passed
 * (bal_amendment_check()): whether it makes sense now, with `committed` the
 * last committed position (the amendment would be the next one) and `ctr`
 * the committed counters. A key revoked already, a precinct's own key set
 * again, a precinct frozen already; a void of a position beyond the journal,
 * voided already, holding an amendment, or whose void the counters cannot
 * take; a certification beyond the journal. For a void, `v` is made
 * (bal_void_plan_make()).
 * @return 0; BAL_EINVALID with `why` (the reason the client gets, 422);
 *         BAL_ECORRUPT or -errno (the journal cannot be read).
 */
int bal_amend_check(struct bal_daemon *d, const struct bal_amendment *am, uint64_t committed, const uint64_t *ctr,
                    struct bal_void_plan *v, char *why, size_t whylen);

#endif
