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
 * Finds SignedBatch.batch (field 1, length-delimited) in the bytes of a
 * SignedBatch, walking the wire format by hand: no allocation, any thread.
 * Other fields are skipped whatever they are; of several `batch` fields the
 * last counts, as for every protobuf parser. Matches bal_store_signed_fn
 * (storage/storage.h): the store compares journaled records by this part.
 * @return 0 with the batch bytes at [*off, *off + *slen) of `rec`; -1 if the
 *         bytes are not well-formed, `batch` is not length-delimited, or
 *         there is no `batch` (then *off and *slen are untouched).
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
