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
 * Decodes a SignedBatch and the Batch inside it.
 * @param[out] out  every pointer in it is borrowed from `body` or `arena`,
 *                  valid until the arena is reset and `body` is released.
 * @return 0; BAL_ESCHEMA with `why` ("SignedBatch does not decode",
 *         "Batch inside SignedBatch does not decode", "unknown kind 7");
 *         -ENOMEM if the arena refused.
 */
int bal_codec_decode(const uint8_t *body, size_t len, struct bal_arena *arena, struct bal_batch *out, char *why,
                     size_t whylen);

/** Serialized size of the Batch fields of `b` (signed_bytes/signature ignored). */
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

/**
 * Decodes a BatchAck. `error` receives the error text (truncated to errlen-1,
 * "" when none). @return 0 or BAL_ESCHEMA.
 */
int bal_codec_ack_decode(const uint8_t *buf, size_t len, enum bal_ack_status *st, uint64_t *position, char *error,
                         size_t errlen);

#endif
