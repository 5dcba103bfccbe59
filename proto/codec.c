/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Wire codec: the only caller of the protobuf-c code generated from
 * proto/ballot.proto. Decoding maps the generated structs onto the core types
 * of core/ballot.h without copying the repeated arrays; encoding packs
 * core types back into the exact bytes protobuf-c would produce.
 *
 * Depends on protobuf-c and core only. Decoding never calls malloc: the
 * ProtobufCAllocator below bumps from the caller's arena and frees nothing, the
 * arena is reset once per request by its owner.
 *
 * Only canonical bytes decode: the SignedBatch must be exactly
 * [1: batch][2: signature] (each present iff not empty, minimal length
 * varints, nothing else; checked by hand, so that its fields are borrowed
 * from the body without a copy) and the Batch exactly what
 * bal_codec_batch_pack() makes of what it decodes to (checked by packing it
 * again). Protobuf parsers accept many encodings of one message (unknown
 * fields, repeats, unpacked or non-minimal numbers) and do not all read them
 * alike; a signature over one of those would let anyone resend a journaled
 * batch with other bytes, or let two observers count it differently.
 *
 * Empty input is canonical: an empty SignedBatch holds an empty `batch`,
 * which decodes to a Batch of defaults (precinct 0, seq 0, kind BALLOTS, no
 * columns, election ""). Rejecting that is the validator's job (precinct 0
 * does not exist), not the codec's: the codec only answers "do these bytes
 * parse, in their one encoding".
 */
#include "proto/codec.h"

#include "proto/ballot.pb-c.h"

#include "core/reason.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- arena allocator ---------------------------------------------------- */

struct arena_alloc {
	struct bal_arena *arena;
	bool refused; /* set when the arena returned NULL: -ENOMEM, not BAL_ESCHEMA */
};

static void *arena_alloc_cb(void *data, size_t size)
{
	struct arena_alloc *aa = data;
	void *p = bal_arena_alloc(aa->arena, size ? size : 1);
	if (!p)
		aa->refused = true;
	return p;
}

static void arena_free_cb(void *data, void *ptr)
{
	/* Arena memory is released all at once by bal_arena_reset(). */
	(void)data;
	(void)ptr;
}

/* ---- wire format, by hand ------------------------------------------------
 * Just enough of the protobuf encoding to walk a message's top-level fields
 * without allocating: SignedBatch is checked and split with it, and
 * bal_codec_signed_part() finds `batch` in a journaled record. */

enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_LEN = 2, WIRE_FIXED32 = 5 };

struct field {
	uint32_t number;
	unsigned wire;
	size_t data, len; /* WIRE_LEN: the payload's offset and length */
	bool minimal;     /* tag and length written with the fewest varint bytes */
};

/* Reads a varint at *off (at most 10 bytes, no bits beyond 64). 0 or -1. */
static int read_varint(const uint8_t *p, size_t n, size_t *off, uint64_t *v, bool *minimal)
{
	uint64_t x = 0;
	for (unsigned i = 0; i < 10 && *off + i < n; i++) {
		uint8_t byte = p[*off + i];
		if (i == 9 && byte > 1)
			return -1;
		x |= (uint64_t)(byte & 0x7f) << (7 * i);
		if (!(byte & 0x80)) {
			*minimal = i == 0 || byte != 0;
			*off += i + 1;
			*v = x;
			return 0;
		}
	}
	return -1;
}

/* Reads the field at *off and moves *off past it. 0, or -1 if the bytes are
 * not a well-formed field (groups included: proto3 has none). */
static int next_field(const uint8_t *p, size_t n, size_t *off, struct field *f)
{
	uint64_t tag, len = 0, unused;
	bool tag_min, len_min = true, unused_min;
	if (read_varint(p, n, off, &tag, &tag_min) < 0 || tag >> 3 == 0 || tag >> 3 > 0x1fffffff)
		return -1;
	f->number = (uint32_t)(tag >> 3);
	f->wire = (unsigned)(tag & 7);
	switch (f->wire) {
	case WIRE_VARINT:
		if (read_varint(p, n, off, &unused, &unused_min) < 0)
			return -1;
		break;
	case WIRE_FIXED64: len = 8; break;
	case WIRE_FIXED32: len = 4; break;
	case WIRE_LEN:
		if (read_varint(p, n, off, &len, &len_min) < 0)
			return -1;
		break;
	default: return -1;
	}
	if (len > n - *off)
		return -1;
	f->data = *off;
	f->len = f->wire == WIRE_LEN ? (size_t)len : 0;
	f->minimal = tag_min && len_min;
	*off += (size_t)len;
	return 0;
}

/* The canonical envelope: [first: signed part][first + 1: signature], each
 * present iff not empty, as bal_codec_signed_pack() (first 1, a
 * SignedBatch) and bal_codec_signed_amendment_pack() (first 3, a
 * SignedAmendment) write it. Its parts point into `p`. NULL, or what is wrong
 * (then *at is the offending field's offset, or n if the bytes are not
 * well-formed). */
static const char *envelope_canonical(const uint8_t *p, size_t n, uint32_t first, struct field *part, struct field *sig,
                                      size_t *at)
{
	size_t off = 0;
	uint32_t last = 0;
	memset(part, 0, sizeof(*part));
	memset(sig, 0, sizeof(*sig));
	while (off < n) {
		struct field f;
		*at = off;
		if (next_field(p, n, &off, &f) < 0) {
			*at = n;
			return "not well-formed";
		}
		if (f.number != first && f.number != first + 1)
			return first == 1 ? "a field other than batch and signature"
			                  : "a field other than amendment and signature";
		if (f.number <= last)
			return "a field repeated or out of order";
		if (f.wire != WIRE_LEN)
			return "a field that is not length-delimited";
		if (!f.minimal)
			return "a tag or length in more varint bytes than needed";
		if (!f.len)
			return "an empty field written out";
		last = f.number;
		*(f.number == first ? part : sig) = f;
	}
	return NULL;
}

static const char *signed_canonical(const uint8_t *p, size_t n, struct field *batch, struct field *sig, size_t *at)
{
	return envelope_canonical(p, n, 1, batch, sig, at);
}

bool bal_codec_is_amendment(const uint8_t *rec, size_t len)
{
	return len && rec[0] == BAL_CODEC_AMENDMENT_TAG;
}

int bal_codec_signed_part(const uint8_t *rec, size_t len, size_t *off, size_t *slen)
{
	size_t at = 0;
	/* A record is a batch or an amendment, as its first byte says. */
	const uint32_t want = bal_codec_is_amendment(rec, len) ? 3 : 1;
	struct field batch = {.number = 0};
	while (at < len) {
		struct field f;
		if (next_field(rec, len, &at, &f) < 0 || (f.number == want && f.wire != WIRE_LEN))
			return -1;
		if (f.number == want)
			batch = f; /* of several, the last counts, as for every parser */
	}
	if (!batch.number)
		return -1;
	*off = batch.data;
	*slen = batch.len;
	return 0;
}

/* ---- decode ------------------------------------------------------------- */

static int map_batch(const Ballot__V1__Batch *pb, struct bal_arena *arena, struct bal_batch *out, char *why,
                     size_t whylen)
{
	if (pb->kind != BALLOT__V1__KIND__BALLOTS && pb->kind != BALLOT__V1__KIND__TALLY &&
	    pb->kind != BALLOT__V1__KIND__PROTOCOL) {
		return bal_fail(why, whylen, BAL_ESCHEMA,
		                "unknown kind %d (Batch.kind must be BALLOTS=0, TALLY=1 or PROTOCOL=2)", (int)pb->kind);
	}
	struct bal_column *cols = NULL;
	if (pb->n_ballots) {
		cols = bal_arena_alloc(arena, pb->n_ballots * sizeof(*cols));
		if (!cols)
			goto fail_nomem;
		for (size_t i = 0; i < pb->n_ballots; i++) {
			cols[i].contest_id = pb->ballots[i]->contest_id;
			cols[i].n = pb->ballots[i]->n_choices;
			cols[i].choices = pb->ballots[i]->choices;
		}
	}
	struct bal_ctally *tallies = NULL;
	if (pb->n_tallies) {
		tallies = bal_arena_alloc(arena, pb->n_tallies * sizeof(*tallies));
		if (!tallies)
			goto fail_nomem;
		for (size_t i = 0; i < pb->n_tallies; i++) {
			tallies[i].contest_id = pb->tallies[i]->contest_id;
			tallies[i].n = pb->tallies[i]->n_counts;
			tallies[i].counts = pb->tallies[i]->counts;
		}
	}
	out->precinct_id = pb->precinct_id;
	out->seq = pb->seq;
	out->kind = (enum bal_kind)pb->kind;
	out->ncolumns = pb->n_ballots;
	out->columns = cols;
	out->ntallies = pb->n_tallies;
	out->tallies = tallies;
	out->has_turnout = pb->turnout != NULL;
	out->ballots_issued = pb->turnout ? pb->turnout->ballots_issued : 0;
	out->ballots_cast = pb->turnout ? pb->turnout->ballots_cast : 0;
	out->ballots_spoiled = pb->turnout ? pb->turnout->ballots_spoiled : 0;
	out->created_unix_ms = pb->created_unix_ms;
	out->election_id = pb->election_id ? pb->election_id : "";
	return 0;

fail_nomem:
	return bal_fail(why, whylen, -ENOMEM, "request arena refused an allocation (limit %zu bytes)", arena->limit);
}

/* Why the envelope (a SignedBatch, or a SignedAmendment when `amendment`)
 * is not canonical: bytes no parser reads, or another encoding (protobuf-c
 * decides which, from the arena). */
static int signed_refusal(const uint8_t *body, size_t len, bool amendment, const char *wrong, size_t at,
                          struct bal_arena *arena, char *why, size_t whylen)
{
	struct arena_alloc aa = {.arena = arena, .refused = false};
	ProtobufCAllocator alloc = {.alloc = arena_alloc_cb, .free = arena_free_cb, .allocator_data = &aa};
	const char *name = amendment ? "SignedAmendment" : "SignedBatch", *part = amendment ? "amendment" : "batch";
	if (amendment ? (void *)ballot__v1__signed_amendment__unpack(&alloc, len, body)
	              : (void *)ballot__v1__signed_batch__unpack(&alloc, len, body))
		return bal_fail(why, whylen, BAL_ESCHEMA,
		                "%s must hold %s and signature once each and nothing else (%s at byte %zu of %zu)",
		                name, part, wrong, at, len);
	if (aa.refused)
		return bal_fail(why, whylen, -ENOMEM,
		                "request arena refused an allocation decoding %s of %zu bytes (limit %zu bytes)", name,
		                len, arena->limit);
	return bal_fail(why, whylen, BAL_ESCHEMA, "%s does not decode (%zu bytes)", name, len);
}

/*
 * An upper bound of what bal_codec_batch_pack() writes for b, from its
 * counts alone (every varint at its longest): the canonical form can be
 * packed into that much without a size pass. Each piece is a Batch: head
 * {precinct_id, seq, kind} <= 28 bytes; a column {tag, length, {contest_id,
 * packed choices}} <= 28 + 5 per choice; a tally <= 28 + 10 per count;
 * turnout, created_unix_ms and election_id <= 57 + the id's length.
 */
static size_t batch_bound(const struct bal_batch *b)
{
	size_t n = 28 + 57 + (b->election_id ? strlen(b->election_id) : 0);
	for (size_t i = 0; i < b->ncolumns; i++)
		n += 28 + 5 * b->columns[i].n;
	for (size_t i = 0; i < b->ntallies; i++)
		n += 28 + 10 * b->tallies[i].n;
	return n;
}

/* The signed bytes must be what the codec packs from the Batch they decode to. */
static int batch_canonical(const struct bal_batch *b, const uint8_t *bytes, size_t len, struct bal_arena *arena,
                           char *why, size_t whylen)
{
	/* Usually the bound fits the arena and one packing pass decides; a
	 * bound beyond the arena's limit (long columns of one-byte choices)
	 * takes the exact size first. */
	size_t want;
	uint8_t *canon = len ? bal_arena_alloc(arena, batch_bound(b)) : NULL;
	if (canon) {
		want = bal_codec_batch_pack(b, canon);
		bal_require(want <= batch_bound(b));
	} else {
		want = bal_codec_batch_size(b);
		if (want == len && len) {
			if (!(canon = bal_arena_alloc(arena, len)))
				return bal_fail(
				        why, whylen, -ENOMEM,
				        "request arena refused %zu bytes to check the Batch's encoding (limit %zu "
				        "bytes)",
				        len, arena->limit);
			bal_codec_batch_pack(b, canon);
		}
	}
	if (want != len)
		return bal_fail(why, whylen, BAL_ESCHEMA,
		                "non-canonical encoding of Batch (%zu bytes, canonical form has %zu)", len, want);
	if (!len || memcmp(canon, bytes, len) == 0)
		return 0;
	size_t i = 0;
	while (canon[i] == bytes[i])
		i++;
	return bal_fail(why, whylen, BAL_ESCHEMA,
	                "non-canonical encoding of Batch (%zu bytes, the canonical form differs at byte %zu)", len, i);
}

int bal_codec_decode(const uint8_t *body, size_t len, struct bal_arena *arena, struct bal_batch *out, char *why,
                     size_t whylen)
{
	struct field batch, sig;
	size_t at = 0;
	const char *wrong = signed_canonical(body, len, &batch, &sig, &at);
	if (wrong)
		return signed_refusal(body, len, false, wrong, at, arena, why, whylen);
	const uint8_t *bytes = batch.len ? body + batch.data : (const uint8_t *)"";

	struct arena_alloc aa = {.arena = arena, .refused = false};
	ProtobufCAllocator alloc = {.alloc = arena_alloc_cb, .free = arena_free_cb, .allocator_data = &aa};
	Ballot__V1__Batch *pb = ballot__v1__batch__unpack(&alloc, batch.len, bytes);
	if (!pb) {
		if (aa.refused) {
			return bal_fail(
			        why, whylen, -ENOMEM,
			        "request arena refused an allocation decoding Batch of %zu bytes (limit %zu bytes)",
			        batch.len, arena->limit);
		}
		return bal_fail(why, whylen, BAL_ESCHEMA,
		                "Batch inside SignedBatch does not decode (SignedBatch.batch is %zu bytes)", batch.len);
	}
	struct bal_batch tmp;
	memset(&tmp, 0, sizeof(tmp));
	int rc = map_batch(pb, arena, &tmp, why, whylen);
	if (rc < 0)
		return rc;
	rc = batch_canonical(&tmp, bytes, batch.len, arena, why, whylen);
	if (rc < 0)
		return rc;
	tmp.signed_bytes = bytes;
	tmp.signed_len = batch.len;
	tmp.signature = sig.len ? body + sig.data : NULL;
	tmp.signature_len = sig.len;
	*out = tmp;
	return 0;
}

/* ---- encode --------------------------------------------------------------
 * A Batch is packed piecewise so that encoding needs no allocation however
 * many columns it has: the scalar head, then one single-element Batch per
 * column and per tally, then the tail. protobuf-c writes fields in field-number
 * order and proto3 omits default scalars, so the concatenation is byte for
 * byte what packing the whole message at once would produce (and a protobuf
 * parser merges concatenated messages by appending repeated fields). */

/* Every encoder computes the size or packs, from one description of the message. */
enum piece_op { PIECE_SIZE, PIECE_PACK };

static size_t batch_pieces(const struct bal_batch *b, enum piece_op op, uint8_t *buf)
{
	size_t n = 0;

	Ballot__V1__Batch head = BALLOT__V1__BATCH__INIT;
	head.precinct_id = b->precinct_id;
	head.seq = b->seq;
	head.kind = (Ballot__V1__Kind)b->kind;
	n += op == PIECE_SIZE ? ballot__v1__batch__get_packed_size(&head) : ballot__v1__batch__pack(&head, buf + n);

	for (size_t i = 0; i < b->ncolumns; i++) {
		Ballot__V1__BallotColumn col = BALLOT__V1__BALLOT_COLUMN__INIT;
		col.contest_id = b->columns[i].contest_id;
		col.n_choices = b->columns[i].n;
		col.choices = (uint32_t *)b->columns[i].choices; /* pack only reads */
		Ballot__V1__BallotColumn *colp = &col;
		Ballot__V1__Batch piece = BALLOT__V1__BATCH__INIT;
		piece.n_ballots = 1;
		piece.ballots = &colp;
		n += op == PIECE_SIZE ? ballot__v1__batch__get_packed_size(&piece)
		                      : ballot__v1__batch__pack(&piece, buf + n);
	}
	for (size_t i = 0; i < b->ntallies; i++) {
		Ballot__V1__ContestTally t = BALLOT__V1__CONTEST_TALLY__INIT;
		t.contest_id = b->tallies[i].contest_id;
		t.n_counts = b->tallies[i].n;
		t.counts = (uint64_t *)b->tallies[i].counts; /* pack only reads */
		Ballot__V1__ContestTally *tp = &t;
		Ballot__V1__Batch piece = BALLOT__V1__BATCH__INIT;
		piece.n_tallies = 1;
		piece.tallies = &tp;
		n += op == PIECE_SIZE ? ballot__v1__batch__get_packed_size(&piece)
		                      : ballot__v1__batch__pack(&piece, buf + n);
	}

	Ballot__V1__Turnout turnout = BALLOT__V1__TURNOUT__INIT;
	turnout.ballots_issued = b->ballots_issued;
	turnout.ballots_cast = b->ballots_cast;
	turnout.ballots_spoiled = b->ballots_spoiled;
	Ballot__V1__Batch tail = BALLOT__V1__BATCH__INIT;
	tail.turnout = b->has_turnout ? &turnout : NULL;
	tail.created_unix_ms = b->created_unix_ms;
	if (b->election_id)
		tail.election_id = (char *)b->election_id; /* pack only reads */
	n += op == PIECE_SIZE ? ballot__v1__batch__get_packed_size(&tail) : ballot__v1__batch__pack(&tail, buf + n);
	return n;
}

size_t bal_codec_batch_size(const struct bal_batch *b)
{
	return batch_pieces(b, PIECE_SIZE, NULL);
}

size_t bal_codec_batch_pack(const struct bal_batch *b, uint8_t *buf)
{
	return batch_pieces(b, PIECE_PACK, buf);
}

static size_t signed_do(enum piece_op op, const uint8_t *batch, size_t batch_len, const uint8_t *sig, size_t sig_len,
                        uint8_t *buf)
{
	Ballot__V1__SignedBatch sb = BALLOT__V1__SIGNED_BATCH__INIT;
	sb.batch.data = (uint8_t *)batch; /* pack only reads */
	sb.batch.len = batch_len;
	sb.signature.data = (uint8_t *)sig;
	sb.signature.len = sig_len;
	return op == PIECE_SIZE ? ballot__v1__signed_batch__get_packed_size(&sb)
	                        : ballot__v1__signed_batch__pack(&sb, buf);
}

size_t bal_codec_signed_size(const uint8_t *batch, size_t batch_len, const uint8_t *sig, size_t sig_len)
{
	return signed_do(PIECE_SIZE, batch, batch_len, sig, sig_len, NULL);
}

size_t bal_codec_signed_pack(const uint8_t *batch, size_t batch_len, const uint8_t *sig, size_t sig_len, uint8_t *buf)
{
	return signed_do(PIECE_PACK, batch, batch_len, sig, sig_len, buf);
}

/* ---- amendments ------------------------------------------------------------ */

static size_t amendment_do(enum piece_op op, const struct bal_amendment *a, uint8_t *buf)
{
	Ballot__V1__Amendment m = BALLOT__V1__AMENDMENT__INIT;
	Ballot__V1__PrecinctRef ref = BALLOT__V1__PRECINCT_REF__INIT;
	Ballot__V1__PrecinctKey key = BALLOT__V1__PRECINCT_KEY__INIT;
	/* pack only reads: the casts drop const */
	if (a->election_id)
		m.election_id = (char *)a->election_id;
	m.seq = a->seq;
	m.created_unix_ms = a->created_unix_ms;
	if (a->reason)
		m.reason = (char *)a->reason;
	ref.precinct_id = a->precinct_id;
	key.precinct_id = a->precinct_id;
	key.public_key = (ProtobufCBinaryData){a->public_key_len, (uint8_t *)a->public_key};
	switch (a->change) {
	case BAL_CHANGE_REVOKE_KEY:
		m.change_case = BALLOT__V1__AMENDMENT__CHANGE_REVOKE_KEY;
		m.revoke_key = &ref;
		break;
	case BAL_CHANGE_SET_KEY:
		m.change_case = BALLOT__V1__AMENDMENT__CHANGE_SET_KEY;
		m.set_key = &key;
		break;
	case BAL_CHANGE_VOID:
		m.change_case = BALLOT__V1__AMENDMENT__CHANGE_VOID_POSITION;
		m.void_position = a->position;
		break;
	case BAL_CHANGE_FREEZE:
		m.change_case = BALLOT__V1__AMENDMENT__CHANGE_FREEZE;
		m.freeze = &ref;
		break;
	case BAL_CHANGE_CERTIFY:
		m.change_case = BALLOT__V1__AMENDMENT__CHANGE_CERTIFY_POSITION;
		m.certify_position = a->position;
		break;
	case BAL_CHANGE_NONE: break;
	}
	return op == PIECE_SIZE ? ballot__v1__amendment__get_packed_size(&m) : ballot__v1__amendment__pack(&m, buf);
}

size_t bal_codec_amendment_size(const struct bal_amendment *a)
{
	return amendment_do(PIECE_SIZE, a, NULL);
}

size_t bal_codec_amendment_pack(const struct bal_amendment *a, uint8_t *buf)
{
	return amendment_do(PIECE_PACK, a, buf);
}

static size_t signed_amendment_do(enum piece_op op, const uint8_t *am, size_t am_len, const uint8_t *sig,
                                  size_t sig_len, uint8_t *buf)
{
	Ballot__V1__SignedAmendment sa = BALLOT__V1__SIGNED_AMENDMENT__INIT;
	sa.amendment = (ProtobufCBinaryData){am_len, (uint8_t *)am}; /* pack only reads */
	sa.signature = (ProtobufCBinaryData){sig_len, (uint8_t *)sig};
	return op == PIECE_SIZE ? ballot__v1__signed_amendment__get_packed_size(&sa)
	                        : ballot__v1__signed_amendment__pack(&sa, buf);
}

size_t bal_codec_signed_amendment_size(const uint8_t *am, size_t am_len, const uint8_t *sig, size_t sig_len)
{
	return signed_amendment_do(PIECE_SIZE, am, am_len, sig, sig_len, NULL);
}

size_t bal_codec_signed_amendment_pack(const uint8_t *am, size_t am_len, const uint8_t *sig, size_t sig_len,
                                       uint8_t *buf)
{
	return signed_amendment_do(PIECE_PACK, am, am_len, sig, sig_len, buf);
}

static void map_amendment(const Ballot__V1__Amendment *m, struct bal_amendment *out)
{
	memset(out, 0, sizeof(*out));
	out->election_id = m->election_id ? m->election_id : "";
	out->seq = m->seq;
	out->created_unix_ms = m->created_unix_ms;
	out->reason = m->reason ? m->reason : "";
	switch (m->change_case) {
	case BALLOT__V1__AMENDMENT__CHANGE_REVOKE_KEY:
		out->change = BAL_CHANGE_REVOKE_KEY;
		out->precinct_id = m->revoke_key->precinct_id;
		break;
	case BALLOT__V1__AMENDMENT__CHANGE_SET_KEY:
		out->change = BAL_CHANGE_SET_KEY;
		out->precinct_id = m->set_key->precinct_id;
		out->public_key = m->set_key->public_key.data;
		out->public_key_len = m->set_key->public_key.len;
		break;
	case BALLOT__V1__AMENDMENT__CHANGE_VOID_POSITION:
		out->change = BAL_CHANGE_VOID;
		out->position = m->void_position;
		break;
	case BALLOT__V1__AMENDMENT__CHANGE_FREEZE:
		out->change = BAL_CHANGE_FREEZE;
		out->precinct_id = m->freeze->precinct_id;
		break;
	case BALLOT__V1__AMENDMENT__CHANGE_CERTIFY_POSITION:
		out->change = BAL_CHANGE_CERTIFY;
		out->position = m->certify_position;
		break;
	default: out->change = BAL_CHANGE_NONE; break;
	}
}

int bal_codec_amendment_decode(const uint8_t *body, size_t len, struct bal_arena *arena, struct bal_amendment *out,
                               char *why, size_t whylen)
{
	struct field part, sig;
	size_t at = 0;
	const char *wrong = envelope_canonical(body, len, 3, &part, &sig, &at);
	if (wrong)
		return signed_refusal(body, len, true, wrong, at, arena, why, whylen);
	const uint8_t *bytes = part.len ? body + part.data : (const uint8_t *)"";

	struct arena_alloc aa = {.arena = arena, .refused = false};
	ProtobufCAllocator alloc = {.alloc = arena_alloc_cb, .free = arena_free_cb, .allocator_data = &aa};
	Ballot__V1__Amendment *m = ballot__v1__amendment__unpack(&alloc, part.len, bytes);
	if (!m) {
		if (aa.refused)
			return bal_fail(
			        why, whylen, -ENOMEM,
			        "request arena refused an allocation decoding Amendment of %zu bytes (limit %zu bytes)",
			        part.len, arena->limit);
		return bal_fail(why, whylen, BAL_ESCHEMA,
		                "Amendment inside SignedAmendment does not decode (SignedAmendment.amendment is %zu "
		                "bytes)",
		                part.len);
	}
	struct bal_amendment tmp;
	map_amendment(m, &tmp);
	/* The signed bytes must be what the codec packs from what they decode to. */
	size_t want = bal_codec_amendment_size(&tmp);
	if (want != part.len)
		return bal_fail(why, whylen, BAL_ESCHEMA,
		                "non-canonical encoding of Amendment (%zu bytes, canonical form has %zu)", part.len,
		                want);
	if (part.len) {
		uint8_t *canon = bal_arena_alloc(arena, part.len);
		if (!canon)
			return bal_fail(why, whylen, -ENOMEM,
			                "request arena refused %zu bytes to check the Amendment's encoding (limit %zu "
			                "bytes)",
			                part.len, arena->limit);
		bal_codec_amendment_pack(&tmp, canon);
		if (memcmp(canon, bytes, part.len) != 0) {
			size_t i = 0;
			while (canon[i] == bytes[i])
				i++;
			return bal_fail(why, whylen, BAL_ESCHEMA,
			                "non-canonical encoding of Amendment (%zu bytes, the canonical form differs at "
			                "byte %zu)",
			                part.len, i);
		}
	}
	tmp.signed_bytes = bytes;
	tmp.signed_len = part.len;
	tmp.signature = sig.len ? body + sig.data : NULL;
	tmp.signature_len = sig.len;
	*out = tmp;
	return 0;
}

static size_t ack_do(enum piece_op op, enum bal_ack_status st, uint64_t position, const char *error,
                     const struct bal_receipt *r, uint8_t *buf)
{
	Ballot__V1__BatchAck ack = BALLOT__V1__BATCH_ACK__INIT;
	ack.status = (Ballot__V1__Status)st;
	ack.position = position;
	if (error)
		ack.error = (char *)error; /* pack only reads */
	Ballot__V1__Receipt rc = BALLOT__V1__RECEIPT__INIT;
	ProtobufCBinaryData path[BAL_TREE_MAX_PATH];
	if (r) {
		/* pack only reads: the casts drop const */
		rc.leaf_index = r->leaf_index;
		rc.leaf_hash = (ProtobufCBinaryData){BAL_HASH_BYTES, (uint8_t *)r->leaf_hash};
		rc.tree_size = r->head.tree_size;
		rc.timestamp_ms = r->head.timestamp_ms;
		rc.root_hash = (ProtobufCBinaryData){BAL_HASH_BYTES, (uint8_t *)r->head.root};
		rc.signature = (ProtobufCBinaryData){sizeof(r->head.signature), (uint8_t *)r->head.signature};
		unsigned n = r->npath < BAL_TREE_MAX_PATH ? r->npath : BAL_TREE_MAX_PATH;
		for (unsigned i = 0; i < n; i++)
			path[i] = (ProtobufCBinaryData){BAL_HASH_BYTES, (uint8_t *)r->path[i]};
		rc.n_audit_path = n;
		rc.audit_path = path;
		ack.receipt = &rc;
	}
	return op == PIECE_SIZE ? ballot__v1__batch_ack__get_packed_size(&ack) : ballot__v1__batch_ack__pack(&ack, buf);
}

size_t bal_codec_ack_size(enum bal_ack_status st, uint64_t position, const char *error)
{
	return ack_do(PIECE_SIZE, st, position, error, NULL, NULL);
}

size_t bal_codec_ack_pack(enum bal_ack_status st, uint64_t position, const char *error, uint8_t *buf)
{
	return ack_do(PIECE_PACK, st, position, error, NULL, buf);
}

size_t bal_codec_ack_receipt_size(enum bal_ack_status st, uint64_t position, const char *error,
                                  const struct bal_receipt *r)
{
	return ack_do(PIECE_SIZE, st, position, error, r, NULL);
}

size_t bal_codec_ack_receipt_pack(enum bal_ack_status st, uint64_t position, const char *error,
                                  const struct bal_receipt *r, uint8_t *buf)
{
	return ack_do(PIECE_PACK, st, position, error, r, buf);
}

/* A receipt's fields into r: BAL_ESCHEMA unless every length is right. */
static int receipt_of(const Ballot__V1__Receipt *m, struct bal_receipt *r)
{
	if (m->leaf_hash.len != BAL_HASH_BYTES || m->root_hash.len != BAL_HASH_BYTES ||
	    m->signature.len != sizeof(r->head.signature) || m->n_audit_path > BAL_TREE_MAX_PATH)
		return BAL_ESCHEMA;
	memset(r, 0, sizeof(*r));
	r->leaf_index = m->leaf_index;
	memcpy(r->leaf_hash, m->leaf_hash.data, BAL_HASH_BYTES);
	r->head.tree_size = m->tree_size;
	r->head.timestamp_ms = m->timestamp_ms;
	memcpy(r->head.root, m->root_hash.data, BAL_HASH_BYTES);
	memcpy(r->head.signature, m->signature.data, sizeof(r->head.signature));
	r->npath = (unsigned)m->n_audit_path;
	for (size_t i = 0; i < m->n_audit_path; i++) {
		if (m->audit_path[i].len != BAL_HASH_BYTES)
			return BAL_ESCHEMA;
		memcpy(r->path[i], m->audit_path[i].data, BAL_HASH_BYTES);
	}
	return 0;
}

int bal_codec_ack_receipt_decode(const uint8_t *buf, size_t len, enum bal_ack_status *st, uint64_t *position,
                                 char *error, size_t errlen, struct bal_receipt *r, bool *has_receipt)
{
	Ballot__V1__BatchAck *ack = ballot__v1__batch_ack__unpack(NULL, len, buf);
	if (!ack)
		return BAL_ESCHEMA;
	int rc = 0;
	if (ack->status != BALLOT__V1__STATUS__ACCEPTED && ack->status != BALLOT__V1__STATUS__DUPLICATE &&
	    ack->status != BALLOT__V1__STATUS__REJECTED) {
		rc = BAL_ESCHEMA;
		goto free_ack;
	}
	*st = (enum bal_ack_status)ack->status;
	*position = ack->position;
	if (error && errlen)
		snprintf(error, errlen, "%s", ack->error ? ack->error : "");
	if (has_receipt)
		*has_receipt = false;
	if (ack->receipt && r) {
		rc = receipt_of(ack->receipt, r);
		if (rc == 0 && has_receipt)
			*has_receipt = true;
	}
free_ack:
	ballot__v1__batch_ack__free_unpacked(ack, NULL);
	return rc;
}

int bal_codec_ack_decode(const uint8_t *buf, size_t len, enum bal_ack_status *st, uint64_t *position, char *error,
                         size_t errlen)
{
	return bal_codec_ack_receipt_decode(buf, len, st, position, error, errlen, NULL, NULL);
}
