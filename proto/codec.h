/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The only caller of the protobuf-c pack/unpack functions generated from
 * proto/ballot.proto. Converts between wire bytes and the core types of
 * core/ballot.h, so that protobuf structs never reach the tally.
 *
 * Decoding allocates from a caller-supplied arena (ProtobufCAllocator), so the
 * ingest path does not call malloc once the arena is warm.
 */
#ifndef BAL_PROTO_CODEC_H
#define BAL_PROTO_CODEC_H

#include "core/ballot.h"

enum bal_ack_status { BAL_ACK_ACCEPTED = 0, BAL_ACK_DUPLICATE = 1, BAL_ACK_REJECTED = 2 };

/**
 * Decodes a SignedBatch and the Batch inside it. Only the canonical encoding
 * decodes: the SignedBatch exactly as bal_codec_signed_pack() writes it (batch,
 * then signature, each once and only when not empty, nothing else), the Batch
 * exactly as bal_codec_batch_pack() packs what it decodes to (fields in number
 * order, each once, repeated numbers packed, defaults left out, varints in
 * their fewest bytes, no unknown fields). Any other encoding of the same
 * values is refused: a signature covers one byte string, with one meaning.
 * No malloc: everything, the canonical form included, comes from `arena`
 * (about the Batch's size on top of the decoded arrays).
 * @param[out] out  every pointer in it is borrowed from `body` or `arena`,
 *                  valid until the arena is reset and `body` is released;
 *                  `election_id` is never NULL ("" when absent). Untouched
 *                  on failure.
 * @return 0; BAL_ESCHEMA with `why` ("SignedBatch does not decode",
 *         "SignedBatch must hold batch and signature once each and nothing
 *         else (...)", "Batch inside SignedBatch does not decode",
 *         "unknown kind 7", "non-canonical encoding of Batch (N bytes,
 *         canonical form has M)"); -ENOMEM if the arena refused.
 */
int bal_codec_decode(const uint8_t *body, size_t len, struct bal_arena *arena, struct bal_batch *out, char *why,
                     size_t whylen);

/**
 * Finds the signed part of a journal record: SignedBatch.batch (field 1,
 * length-delimited), or SignedAmendment.amendment (field 3) when the record
 * is an amendment (bal_codec_is_amendment()), walking the wire format by
 * hand: no allocation, any thread. Other fields are skipped whatever they
 * are; of several such fields the last counts, as for every protobuf parser.
 * Matches bal_store_signed_fn (storage/storage.h): the store compares
 * journaled records by this part.
 * @return 0 with the signed bytes at [*off, *off + *slen) of `rec`; -1 if
 *         the bytes are not well-formed, the part is not length-delimited,
 *         or there is none (then *off and *slen are untouched).
 */
int bal_codec_signed_part(const uint8_t *rec, size_t len, size_t *off, size_t *slen);

/** Serialized size of the Batch fields of `b` (signed_bytes/signature
 * ignored; election_id NULL is ""). */
size_t bal_codec_batch_size(const struct bal_batch *b);
/** Packs the Batch fields of `b` into `buf` (bal_codec_batch_size() bytes); returns bytes written. */
size_t bal_codec_batch_pack(const struct bal_batch *b, uint8_t *buf);

/** Serialized size of SignedBatch{batch, signature}. */
size_t bal_codec_signed_size(const uint8_t *batch, size_t batch_len, const uint8_t *sig, size_t sig_len);
/** Packs SignedBatch{batch, signature} into `buf`; returns bytes written. */
size_t bal_codec_signed_pack(const uint8_t *batch, size_t batch_len, const uint8_t *sig, size_t sig_len, uint8_t *buf);

/* ---- amendments -------------------------------------------------------------
 * A journal record is a SignedBatch or a SignedAmendment; their field numbers
 * differ so that the first byte tells them apart (proto/ballot.proto). */

/** First byte of every journaled SignedAmendment: field 3, length-delimited. */
#define BAL_CODEC_AMENDMENT_TAG 0x1a

/** Whether a journal record is a SignedAmendment (its first byte); any thread. */
bool bal_codec_is_amendment(const uint8_t *rec, size_t len);

/**
 * Decodes a SignedAmendment and the Amendment inside it, canonical encoding
 * only, exactly as bal_codec_decode() does for batches: the envelope as
 * bal_codec_signed_amendment_pack() writes it (amendment, then signature,
 * each once and only when not empty, nothing else), the Amendment exactly as
 * bal_codec_amendment_pack() packs what it decodes to. No malloc: everything
 * comes from `arena`.
 * @param[out] out  pointers borrowed from `body` or `arena` as for a batch;
 *                  `election_id` and `reason` never NULL. Untouched on failure.
 * @return 0; BAL_ESCHEMA with `why` ("SignedAmendment does not decode",
 *         "SignedAmendment must hold amendment and signature once each and
 *         nothing else (...)", "Amendment inside SignedAmendment does not
 *         decode", "non-canonical encoding of Amendment (...)"); -ENOMEM if
 *         the arena refused. A change that is not set decodes (to
 *         BAL_CHANGE_NONE): refusing it is bal_amendment_check()'s job.
 */
int bal_codec_amendment_decode(const uint8_t *body, size_t len, struct bal_arena *arena, struct bal_amendment *out,
                               char *why, size_t whylen);

/** Serialized size of the Amendment fields of `a` (signed_bytes and
 * signature ignored; NULL strings are ""). */
size_t bal_codec_amendment_size(const struct bal_amendment *a);
/** Packs them into `buf` (bal_codec_amendment_size() bytes); returns bytes written. */
size_t bal_codec_amendment_pack(const struct bal_amendment *a, uint8_t *buf);

/** Serialized size of SignedAmendment{amendment, signature}. */
size_t bal_codec_signed_amendment_size(const uint8_t *am, size_t am_len, const uint8_t *sig, size_t sig_len);
/** Packs SignedAmendment{amendment, signature} into `buf`; returns bytes written. */
size_t bal_codec_signed_amendment_pack(const uint8_t *am, size_t am_len, const uint8_t *sig, size_t sig_len,
                                       uint8_t *buf);

/** Serialized size of a BatchAck; `error` may be NULL. */
size_t bal_codec_ack_size(enum bal_ack_status st, uint64_t position, const char *error);
/** Packs a BatchAck into `buf`; returns bytes written. */
size_t bal_codec_ack_pack(enum bal_ack_status st, uint64_t position, const char *error, uint8_t *buf);

/** The same with a receipt (NULL: none), for ACCEPTED and DUPLICATE acks. */
size_t bal_codec_ack_receipt_size(enum bal_ack_status st, uint64_t position, const char *error,
                                  const struct bal_receipt *r);
size_t bal_codec_ack_receipt_pack(enum bal_ack_status st, uint64_t position, const char *error,
                                  const struct bal_receipt *r, uint8_t *buf);

/**
 * Decodes a BatchAck with its receipt: *has_receipt tells whether it had one
 * (then `r` is filled). A receipt whose hashes are not 32 bytes, signature
 * not 64 bytes or path longer than BAL_TREE_MAX_PATH is BAL_ESCHEMA.
 */
int bal_codec_ack_receipt_decode(const uint8_t *buf, size_t len, enum bal_ack_status *st, uint64_t *position,
                                 char *error, size_t errlen, struct bal_receipt *r, bool *has_receipt);

/**
 * Decodes a BatchAck. `error` receives the error text (truncated to errlen-1,
 * "" when none). @return 0 or BAL_ESCHEMA.
 */
int bal_codec_ack_decode(const uint8_t *buf, size_t len, enum bal_ack_status *st, uint64_t *position, char *error,
                         size_t errlen);

#endif
