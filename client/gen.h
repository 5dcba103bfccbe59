/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Deterministic batch generator for demos, tests and load: for a precinct,
 * a seq and a seed it builds a valid Batch (BALLOTS or TALLY) of the
 * precinct's ballot, or the PROTOCOL those batches add up to, signs it with
 * the demo key (client/keys.h) and wraps it in a SignedBatch. The same (definition, options, precinct, seq) always
 * gives the same bytes, so a resend is byte-identical (docs/design.md invariant 2).
 *
 * Votes follow per-contest weights derived from the seed: each contest has a
 * clear leader (45-60%), at least one party under 5% when it has three or more
 * eligible choices, and 1.5-4% "against all" for every seat-ineligible choice.
 *
 * Depends on the definition structs (core/ballot.h), proto/codec.h
 * and libsodium. Not thread-safe: one generator per thread.
 */
#ifndef BAL_CLIENT_GEN_H
#define BAL_CLIENT_GEN_H

#include "core/ballot.h"

struct bal_gen_opts {
	uint64_t seed;       /**< content seed: votes, turnout */
	uint64_t key_seed;   /**< seed the definition's demo keys were made with (gen-definition --seed) */
	uint32_t batch_size; /**< ballots per batch, 1..BAL_GEN_MAX_BATCH */
	enum bal_kind kind;  /**< BAL_KIND_BALLOTS or BAL_KIND_TALLY (protocols: bal_gen_protocol()) */
};

#define BAL_GEN_MAX_BATCH 1000000u
/** Most batches one generated protocol may cover. */
#define BAL_GEN_MAX_COVERS 1000000u

/** Opaque generator: weights per contest, key cache, scratch buffers. */
struct bal_gen;

/**
 * @param d  borrowed; must outlive the generator.
 * @param[out] out  a new generator (free with bal_gen_free()); untouched on failure.
 * @return 0; -EINVAL with `why` for a bad option (names it, its value and the
 *         limit); -ENOMEM.
 */
int bal_gen_new(const struct bal_defn *d, const struct bal_gen_opts *o, struct bal_gen **out, char *why, size_t whylen);

/** NULL is fine. */
void bal_gen_free(struct bal_gen *g);

/**
 * Builds batch (precinct index `p` in d->precincts, `seq`).
 * Kind BALLOTS: one column per contest the precinct votes in (definition
 * order), batch_size ballots each. Kind TALLY: one ContestTally per such
 * contest, counts summing to batch_size. Turnout: cast = batch_size,
 * spoiled 0..2, issued = cast + spoiled. created_unix_ms = 08:00 UTC on the
 * election date + seq minutes; election_id the definition's. Signed with the
 * precinct's demo key iff the precinct has a public key in the definition.
 * @param[out] batch  optional; the Batch as core struct, borrowed from `g`
 *                    until the next call (signed_bytes/signature included).
 * @param[out] body, len  the SignedBatch bytes, borrowed from `g` until the next call.
 * @return 0; -EINVAL (p out of range, seq 0) or BAL_EAUTH (the demo key of
 *         key_seed does not match the precinct's public_key), with `why`;
 *         -ENOMEM.
 */
int bal_gen_batch(struct bal_gen *g, uint32_t p, uint64_t seq, struct bal_batch *batch, const uint8_t **body,
                  size_t *len, char *why, size_t whylen);

/**
 * Builds the PROTOCOL batch (precinct index `p`, `seq`) of a precinct whose
 * batches 1..`covers` are those bal_gen_batch() makes (votes and turnout are
 * the same whether the generator's kind is BALLOTS or TALLY): one
 * ContestTally per contest the precinct votes in (definition order), every
 * choice listed, equal to the sum of those batches; Turnout their sum. `covers`
 * 0 gives an all-zero protocol.
 * With `shift` > 0 the protocol disagrees with those batches: in one contest
 * with at least two choices (drawn from seed, precinct id and seq),
 * min(shift, the leader's votes) votes move from the leading choice to another
 * drawn choice; turnout stays. created_unix_ms, election_id and signing as
 * bal_gen_batch().
 * @param[out] batch, body, len  as for bal_gen_batch(), borrowed until the next call.
 * @return 0; -EINVAL (p out of range, seq 0, covers above BAL_GEN_MAX_COVERS)
 *         or BAL_EAUTH, with `why`; -ENOMEM.
 */
int bal_gen_protocol(struct bal_gen *g, uint32_t p, uint64_t seq, uint64_t covers, uint64_t shift,
                     struct bal_batch *batch, const uint8_t **body, size_t *len, char *why, size_t whylen);

#endif
