/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Attacks on the real ballotd by clients that know the protocol: resending
 * a journaled batch in padded envelopes, racing a polling station with a
 * padded copy of its own batch, a key holder flooding one (precinct, seq)
 * with conflicting versions, a stolen key uploading impossible counts,
 * replaying another election's batches, signing for a keyless precinct, and
 * starting the daemon without a definition.
 *
 * Each case asserts the defended behaviour and that nothing else moved:
 * the journal position, the bytes LMDB uses (/healthz map_used), the
 * recorded conflicts, and the totals (against the independent fold of
 * client/expect.h). Envelope encodings that test_hostile.c already covers
 * once each are not repeated here.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/ballot.h"
#include "proto/codec.h"
#include "defn/defn.h"
#include "client/defgen.h"
#include "client/expect.h"
#include "client/gen.h"
#include "client/keys.h"
#include "tests/integration/harness.h"

#define KEY_SEED 31

/* The daemon of the current test, its election and scratch directory. */
static struct th_fixture h;

/* ---- setup ------------------------------------------------------------------- */

/* Options of a small election with demo keys of KEY_SEED; every precinct
 * bounded by exactly `registered` voters, or unbounded when 0. */
static void defn_opts(struct bal_defgen_opts *o, uint64_t registered)
{
	bal_defgen_defaults(o);
	o->precincts = 12;
	o->districts = 3;
	o->choices = 4;
	o->seed = KEY_SEED;
	o->keys = true;
	o->unbounded = registered == 0;
	if (registered)
		o->registered_min = o->registered_max = registered;
}

/* A fresh directory and the definition of `o`; the daemon is not started. */
static void prepare(const struct bal_defgen_opts *o)
{
	cr_assert_eq(th_fixture_init(&h, o), 0);
}

static void start(const struct bal_defgen_opts *o, const char *const *extra)
{
	prepare(o);
	cr_assert_eq(th_start(&h.td, h.defn_path, h.data, 0, extra), 0);
}

static void stop(void)
{
	cr_expect_eq(th_fixture_free(&h), 0, "ballotd should still be alive and exit 0 on SIGTERM");
}

/* Slices are written when the committer is idle after --snapshot-interval:
 * short, so that map_used settles quickly. */
static const char *const settle_args[] = {"--snapshot-interval", "50ms", NULL};

static void setup_unbounded(void)
{
	struct bal_defgen_opts o;
	defn_opts(&o, 0);
	start(&o, settle_args);
}

/* ---- helpers ------------------------------------------------------------------ */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A signed batch of precinct index p made by the generator (content `seed`,
 * `size` ballots or votes); malloc'd bytes. */
static uint8_t *gen_batch(uint64_t seed, uint32_t size, enum bal_kind kind, uint32_t p, uint64_t seq, size_t *len)
{
	struct bal_gen_opts o = {.seed = seed, .key_seed = KEY_SEED, .batch_size = size, .kind = kind};
	struct bal_gen *g = NULL;
	char why[256];
	cr_assert_eq(bal_gen_new(h.defn, &o, &g, why, sizeof(why)), 0, "%s", why);
	const uint8_t *body;
	cr_assert_eq(bal_gen_batch(g, p, seq, NULL, &body, len, why, sizeof(why)), 0, "%s", why);
	uint8_t *copy = malloc(*len);
	memcpy(copy, body, *len);
	bal_gen_free(g);
	return copy;
}

/* SignedBatch{Batch of b (election of the definition when b's is NULL), sig}; malloc'd. */
static uint8_t *with_signature(const struct bal_batch *b, const uint8_t *sig, size_t sl, size_t *len)
{
	struct bal_batch c = *b;
	if (!c.election_id)
		c.election_id = h.defn->election_id;
	size_t bl = bal_codec_batch_size(&c);
	uint8_t *inner = malloc(bl ? bl : 1);
	bal_codec_batch_pack(&c, inner);
	uint8_t *out = malloc(bal_codec_signed_size(inner, bl, sig, sl) + 1);
	*len = bal_codec_signed_pack(inner, bl, sig, sl, out);
	free(inner);
	return out;
}

/* The SignedBatch of b signed with the demo key of its precinct. */
static uint8_t *signed_batch(const struct bal_batch *b, size_t *len)
{
	return th_signed_batch(b, true, KEY_SEED, len);
}

/* One request head + body appended to buf at *n (cap bytes). */
static void append_post(char *buf, size_t cap, size_t *n, const void *body, size_t len)
{
	int hl = snprintf(buf + *n, cap - *n, "POST /v1/batches HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n",
	                  len);
	cr_assert(hl > 0 && *n + (size_t)hl + len <= cap);
	*n += (size_t)hl;
	memcpy(buf + *n, body, len);
	*n += len;
}

/* POSTs `body` on an open keep-alive connection; fills r. */
static int post_on(int fd, const void *body, size_t len, struct th_resp *r)
{
	size_t cap = len + 200, n = 0;
	char *buf = malloc(cap);
	append_post(buf, cap, &n, body, len);
	int rc = th_send(fd, buf, n) ? -1 : th_read_resp(fd, r, 10000);
	free(buf);
	return rc;
}

/* POSTs one batch on a new connection; returns the status and, when `ack`
 * is not NULL, the ack's text (malloc'd). */
static int post_one(const void *body, size_t len, char **ack)
{
	struct th_resp r;
	cr_assert_eq(th_post(h.td.port, body, len, &r), 0, "no answer to a POST");
	int st = r.status;
	if (ack)
		*ack = strdup(r.body ? r.body : "");
	th_resp_free(&r);
	return st;
}

/*
 * POSTs n bodies pipelined, at most 16 in flight, on keep-alive connections.
 * The daemon closes a connection after --max-failures-per-connection refused
 * batches: the requests it left unanswered go again on a new connection, as
 * an attacker's would. Fills status[i] and, when acks is not NULL, acks[i]
 * (malloc'd answer bodies).
 */
static void post_all(uint8_t *const *bodies, const size_t *lens, unsigned n, int *status, char **acks)
{
	unsigned done = 0, barren = 0;
	int fd = -1;
	while (done < n) {
		cr_assert_lt(barren, 3, "request %u: three connections in a row answered nothing", done);
		if (fd < 0)
			fd = th_connect(h.td.port);
		cr_assert(fd >= 0);
		unsigned k = n - done < 16 ? n - done : 16, answered = 0;
		size_t cap = 0, len = 0;
		for (unsigned i = 0; i < k; i++)
			cap += lens[done + i] + 200;
		char *buf = malloc(cap);
		for (unsigned i = 0; i < k; i++)
			append_post(buf, cap, &len, bodies[done + i], lens[done + i]);
		(void)th_send(fd, buf, len); /* a connection closed meanwhile answers nothing */
		free(buf);
		for (struct th_resp r; answered < k && th_read_resp(fd, &r, 10000) == 0; answered++) {
			status[done + answered] = r.status;
			if (acks)
				acks[done + answered] = strdup(r.body ? r.body : "");
			th_resp_free(&r);
		}
		done += answered;
		barren = answered ? 0 : barren + 1;
		if (answered < k) {
			close(fd);
			fd = -1;
		}
	}
	if (fd >= 0)
		close(fd);
}

/* Asserts `ack` is {"status":want,"position":pos,...}. */
static void expect_ack(const char *ack, const char *want, uint64_t pos, const char *what)
{
	char s[96];
	snprintf(s, sizeof(s), "\"status\":\"%s\",\"position\":%llu", want, (unsigned long long)pos);
	cr_expect(strstr(ack, s), "%s: %s, want %s", what, ack, s);
}

static void expect_accepted(const void *body, size_t len, uint64_t pos, const char *what)
{
	char *ack;
	int st = post_one(body, len, &ack);
	cr_expect_eq(st, 200, "%s: %d %s", what, st, ack);
	expect_ack(ack, "ACCEPTED", pos, what);
	free(ack);
}

/* POSTs and expects `status` with `reason` in the answer. */
static void expect_refused(const void *body, size_t len, int status, const char *reason, const char *what)
{
	char *ack;
	int st = post_one(body, len, &ack);
	cr_expect_eq(st, status, "%s: %d %s, want %d", what, st, ack, status);
	cr_expect(!reason || strstr(ack, reason), "%s: reason %s should mention '%s'", what, ack, reason);
	free(ack);
}

static uint64_t position(void)
{
	uint64_t p = th_healthz_u64(h.td.port, "position");
	cr_assert_neq(p, UINT64_MAX, "no /healthz answer");
	return p;
}

/*
 * map_used once nothing is pending: every snapshot slice at the committed
 * position (an idle committer writes them after --snapshot-interval) and two
 * readings 200 ms apart equal.
 */
static uint64_t settled_map_used(void)
{
	uint64_t deadline = now_ms() + 10000, last = UINT64_MAX;
	while (now_ms() < deadline) {
		json_t *j = th_get_json(h.td.port, "/healthz");
		cr_assert(j, "no /healthz answer");
		uint64_t pos = (uint64_t)json_integer_value(json_object_get(j, "position"));
		uint64_t snap = (uint64_t)json_integer_value(json_object_get(j, "snapshot_position"));
		uint64_t used = (uint64_t)json_integer_value(json_object_get(j, "map_used"));
		json_decref(j);
		if (pos == snap && used == last)
			return used;
		last = pos == snap ? used : UINT64_MAX;
		usleep(200000);
	}
	cr_assert_fail("map_used did not settle within 10 s");
	return 0;
}

/* GET /v1/precincts/{id of index p}; the caller decrefs. */
static json_t *precinct_page(uint32_t p)
{
	char path[64];
	snprintf(path, sizeof(path), "/v1/precincts/%u", h.defn->precincts[p].id);
	json_t *j = th_get_json(h.td.port, path);
	cr_assert(j, "no answer to GET %s", path);
	return j;
}

struct conflicts {
	uint64_t stored, unstored;
	size_t listed;         /* entries of "conflicts" */
	unsigned per_seq[100]; /* listed entries by seq (seqs below 100) */
};

static struct conflicts conflicts_of(uint32_t p)
{
	json_t *j = precinct_page(p);
	struct conflicts c = {0};
	c.stored = (uint64_t)json_integer_value(json_object_get(j, "conflicts_stored"));
	c.unstored = (uint64_t)json_integer_value(json_object_get(j, "conflicts_unstored"));
	json_t *list = json_object_get(j, "conflicts"), *e;
	size_t i;
	c.listed = json_array_size(list);
	json_array_foreach(list, i, e)
	{
		json_int_t seq = json_integer_value(json_object_get(e, "seq"));
		if (seq >= 0 && seq < 100)
			c.per_seq[seq]++;
	}
	json_decref(j);
	return c;
}

/* Folds a batch the daemon ACCEPTED, decoded from the bytes that were sent. */
static void fold_bytes(struct bal_expect *e, const uint8_t *body, size_t len)
{
	struct bal_arena a;
	bal_arena_init(&a, 0);
	struct bal_batch b;
	char why[256];
	cr_assert_eq(bal_codec_decode(body, len, &a, &b, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(bal_expect_fold(e, &b, why, sizeof(why)), 0, "%s", why);
	bal_arena_deinit(&a);
}

static void expect_totals(const struct bal_expect *e, const char *when)
{
	json_t *snap = th_get_json(h.td.port, "/v1/snapshot");
	cr_expect(th_snapshot_matches(snap, h.defn, e), "%s: the totals are not the fold of the accepted batches",
	          when);
	json_decref(snap);
}

/* The log line holding `needle` is at `level`. */
static bool log_line_at(const char *log, const char *level, const char *needle)
{
	const char *at = strstr(log, needle);
	if (!at)
		return false;
	const char *bol = at;
	while (bol > log && bol[-1] != '\n')
		bol--;
	char lv[16];
	snprintf(lv, sizeof(lv), " %s ", level);
	const char *hit = strstr(bol, lv);
	return hit && hit < at;
}

/* ---- the envelope of a SignedBatch ------------------------------------------------- */

/* Where the Batch and the signature sit in a canonical SignedBatch
 * (0x0a varint(len) batch 0x12 0x40 signature). */
struct envelope {
	size_t batch_off, batch_len, sig_off;
};

static struct envelope envelope_of(const uint8_t *sb, size_t len)
{
	struct envelope e = {0};
	size_t i = 1;
	unsigned shift = 0;
	cr_assert_eq(sb[0], 0x0a);
	while (sb[i] & 0x80)
		e.batch_len |= (size_t)(sb[i++] & 0x7f) << (7 * shift++);
	e.batch_len |= (size_t)sb[i++] << (7 * shift);
	e.batch_off = i;
	e.sig_off = i + e.batch_len + 2;
	cr_assert_eq(e.sig_off + 64, len, "fixture: a SignedBatch with a 64-byte signature");
	cr_assert_eq(sb[e.sig_off - 2], 0x12);
	return e;
}

#define PAD_KINDS 6

/*
 * Another encoding of the same signed batch: the Batch bytes and the
 * signature unchanged, so the signature still verifies against them.
 * `variant` picks the field numbers and values of the padding. Writes to
 * out (len + 300 bytes); returns its length.
 */
static size_t padded(const uint8_t *sb, size_t len, unsigned kind, unsigned variant, uint8_t *out)
{
	struct envelope e = envelope_of(sb, len);
	const uint8_t *batch = sb + e.batch_off, *sig = sb + e.sig_off;
	size_t n = 0;
	switch (kind % PAD_KINDS) {
	case 0: /* an unknown varint field after the signature */
		memcpy(out, sb, len);
		n = len;
		n += th_put_varint(out + n, (uint64_t)(3 + variant % 29) << 3);
		n += th_put_varint(out + n, variant);
		break;
	case 1: /* an unknown length-delimited field before the batch */
		n = th_put_field(out, 3 + variant % 13, "padding-padding-padding", 1 + variant % 20);
		memcpy(out + n, sb, len);
		n += len;
		break;
	case 2: /* the batch field twice (parsers keep the last) */
		memcpy(out, sb, len);
		n = len;
		n += th_put_field(out + n, 1, batch, e.batch_len);
		break;
	case 3: /* signature first */
		n = th_put_field(out, 2, sig, 64);
		n += th_put_field(out + n, 1, batch, e.batch_len);
		break;
	case 4: /* the batch's length as an overlong varint */
		out[n++] = 0x0a;
		n += th_put_varint(out + n, e.batch_len);
		out[n - 1] |= 0x80;
		for (unsigned k = 0; k < variant % 3; k++)
			out[n++] = 0x80;
		out[n++] = 0x00;
		memcpy(out + n, batch, e.batch_len);
		n += e.batch_len;
		n += th_put_field(out + n, 2, sig, 64);
		break;
	default: /* the signature twice */
		memcpy(out, sb, len);
		n = len;
		n += th_put_field(out + n, 2, sig, 64);
		break;
	}
	return n;
}

/* ---- a. junk resends of a journaled batch ------------------------------------------ */

/*
 * Anyone can read a journaled batch from GET /v1/journal and resend it with
 * padding in the envelope, each time different. None decodes: 200 requests,
 * 200 answers 400, and not one byte more in LMDB, no conflict recorded, the
 * journal where it was; the batch itself is still a DUPLICATE at its
 * position.
 */
Test(abuse, junk_resends_of_a_journaled_batch_store_nothing, .init = setup_unbounded, .fini = stop)
{
	size_t glen, rlen;
	uint8_t *genuine = gen_batch(5, 20, BAL_KIND_BALLOTS, 1, 1, &glen);
	expect_accepted(genuine, glen, 1, "the genuine batch");
	uint8_t *rec = th_journal_record(h.td.port, 1, &rlen);
	cr_assert(rec, "no journal record at position 1");
	cr_assert(rlen == glen && memcmp(rec, genuine, glen) == 0, "the journal holds the exact bytes sent");
	uint64_t used0 = settled_map_used();
	struct conflicts c0 = conflicts_of(1);
	cr_assert_eq(c0.stored + c0.unstored, 0);

	enum { JUNK = 200 };
	uint8_t *junk[JUNK];
	size_t lens[JUNK];
	int status[JUNK];
	char *acks[JUNK];
	for (unsigned i = 0; i < JUNK; i++) {
		junk[i] = malloc(rlen + 300);
		lens[i] = padded(rec, rlen, i, i / PAD_KINDS, junk[i]);
	}
	post_all(junk, lens, JUNK, status, acks);
	unsigned refused = 0;
	for (unsigned i = 0; i < JUNK; i++) {
		cr_expect_eq(status[i], 400, "junk %u (kind %u): %d %s", i, i % PAD_KINDS, status[i], acks[i]);
		refused += status[i] == 400;
		free(acks[i]);
		free(junk[i]);
	}
	cr_expect_eq(refused, JUNK);

	uint64_t used1 = settled_map_used();
	cr_expect_eq(used1, used0, "map_used moved from %llu to %llu bytes over 200 junk requests",
	             (unsigned long long)used0, (unsigned long long)used1);
	struct conflicts c1 = conflicts_of(1);
	cr_expect_eq(c1.stored + c1.unstored, 0, "conflicts: %llu stored, %llu counted", (unsigned long long)c1.stored,
	             (unsigned long long)c1.unstored);
	cr_expect_eq(position(), 1);
	char *ack;
	cr_expect_eq(post_one(genuine, glen, &ack), 200);
	expect_ack(ack, "DUPLICATE", 1, "the genuine batch resent");
	free(ack);
	free(rec);
	free(genuine);
}

/* ---- b. a padded copy racing the station ------------------------------------------- */

/*
 * Someone on the path copies a station's batch and pads the envelope, so
 * that its bytes differ but the signature still verifies, and sends it
 * first: if it were stored, the station's own upload would be a conflict.
 * Every padded copy is 400 and the station's batch is ACCEPTED: when the
 * copies come first, and when they race it on another connection.
 */
Test(abuse, padded_copy_cannot_take_a_stations_slot, .init = setup_unbounded, .fini = stop)
{
	const uint32_t p = 4;
	size_t len;
	uint8_t *genuine = gen_batch(5, 20, BAL_KIND_BALLOTS, p, 1, &len);
	uint8_t *copy = malloc(len + 300);
	for (unsigned k = 0; k < PAD_KINDS; k++) {
		size_t n = padded(genuine, len, k, k, copy);
		char what[48];
		snprintf(what, sizeof(what), "padded copy, kind %u", k);
		expect_refused(copy, n, 400, NULL, what);
	}
	cr_expect_eq(position(), 0, "no padded copy was journaled");
	expect_accepted(genuine, len, 1, "the station's batch after the copies");
	free(genuine);

	/* The race: 60 padded copies of seq 2 pipelined on six connections (fewer
	 * on each than the daemon's refusals per connection), the station's
	 * upload on another at the same moment. */
	genuine = gen_batch(5, 20, BAL_KIND_BALLOTS, p, 2, &len);
	enum { CONNS = 6, PER_CONN = 10 };
	int a[CONNS];
	for (unsigned k = 0; k < CONNS; k++) {
		size_t cap = PER_CONN * (len + 400), n = 0;
		char *flood = malloc(cap);
		for (unsigned j = 0; j < PER_CONN; j++) {
			unsigned i = k * PER_CONN + j;
			size_t m = padded(genuine, len, i, i / PAD_KINDS, copy);
			append_post(flood, cap, &n, copy, m);
		}
		a[k] = th_connect(h.td.port);
		cr_assert(a[k] >= 0);
		cr_assert_eq(th_send(a[k], flood, n), 0);
		free(flood);
	}
	int s = th_connect(h.td.port);
	cr_assert(s >= 0);
	char *station = malloc(len + 200);
	size_t sn = 0;
	append_post(station, len + 200, &sn, genuine, len);
	cr_assert_eq(th_send(s, station, sn), 0);
	free(station);
	struct th_resp r;
	cr_assert_eq(th_read_resp(s, &r, 10000), 0, "no answer to the station");
	cr_expect_eq(r.status, 200, "%s", r.body);
	expect_ack(r.body, "ACCEPTED", 2, "the station's batch racing 60 copies");
	th_resp_free(&r);
	close(s);
	unsigned refused = 0;
	for (unsigned k = 0; k < CONNS; k++) {
		for (unsigned j = 0; j < PER_CONN; j++) {
			cr_assert_eq(th_read_resp(a[k], &r, 10000), 0, "copy %u: no answer", k * PER_CONN + j);
			refused += r.status == 400;
			cr_expect_eq(r.status, 400, "copy %u: %d %s", k * PER_CONN + j, r.status, r.body);
			th_resp_free(&r);
		}
		close(a[k]);
	}
	cr_expect_eq(refused, CONNS * PER_CONN);
	cr_expect_eq(position(), 2);
	struct conflicts c = conflicts_of(p);
	cr_expect_eq(c.stored + c.unstored, 0, "no conflict recorded");
	free(copy);
	free(genuine);
}

/* ---- c. a key holder's conflicting versions ----------------------------------------- */

static void setup_conflict_caps(void)
{
	static const char *const args[] = {
	        "--conflicts-per-seq", "3", "--conflicts-per-precinct", "7", "--snapshot-interval", "50ms", NULL};
	struct bal_defgen_opts o;
	defn_opts(&o, 0);
	start(&o, args);
}

/* `count` versions of (p, seq) with content seeds from `seed0`, each 409. */
static void send_versions(int fd, uint32_t p, uint64_t seq, uint64_t seed0, unsigned count, uint32_t size)
{
	for (unsigned i = 0; i < count; i++) {
		size_t len;
		uint8_t *v = gen_batch(seed0 + i, size, BAL_KIND_BALLOTS, p, seq, &len);
		struct th_resp r;
		cr_assert_eq(post_on(fd, v, len, &r), 0);
		cr_expect_eq(r.status, 409, "seq %llu version %u: %d %s", (unsigned long long)seq, i, r.status, r.body);
		cr_expect(strstr(r.body, "conflicting resend"), "%s", r.body);
		th_resp_free(&r);
		free(v);
	}
}

/*
 * Whoever holds a precinct's key can sign any number of versions of one
 * batch. With --conflicts-per-seq 3 and --conflicts-per-precinct 7 at most
 * 3 versions of a seq and 7 of the precinct are stored; the others are
 * counted. Once the caps are reached, more versions add next to nothing to
 * LMDB; other precincts keep their own allowance and the totals count only
 * the first version of each seq.
 */
Test(abuse, conflicting_versions_are_capped_per_seq_and_per_precinct, .init = setup_conflict_caps, .fini = stop)
{
	const uint32_t p = 2;
	const uint32_t size = 1000; /* about 2 KB a version */
	int fd = th_connect(h.td.port);
	cr_assert(fd >= 0);
	uint64_t pos = 0;
	size_t len;
	uint8_t *b = gen_batch(5, size, BAL_KIND_BALLOTS, p, 1, &len);
	expect_accepted(b, len, ++pos, "seq 1");
	free(b);
	send_versions(fd, p, 1, 100, 20, size);
	struct conflicts c = conflicts_of(p);
	cr_expect_eq(c.stored, 3, "versions of seq 1 stored: %llu", (unsigned long long)c.stored);
	cr_expect_eq(c.listed, 3);
	cr_expect_eq(c.unstored, 17);
	/* A version recorded already is counted again, not stored again. */
	send_versions(fd, p, 1, 100, 1, size);
	c = conflicts_of(p);
	cr_expect_eq(c.stored, 3);
	cr_expect_eq(c.unstored, 18);

	for (uint64_t seq = 2; seq <= 5; seq++) {
		b = gen_batch(5, size, BAL_KIND_BALLOTS, p, seq, &len);
		expect_accepted(b, len, ++pos, "the genuine batch of a later seq");
		free(b);
		send_versions(fd, p, seq, 200 + 10 * seq, 5, size);
	}
	c = conflicts_of(p);
	cr_expect_eq(c.stored, 7, "versions stored for the precinct: %llu", (unsigned long long)c.stored);
	cr_expect_eq(c.listed, 7);
	cr_expect_eq(c.per_seq[1], 3);
	cr_expect_eq(c.per_seq[2], 3);
	cr_expect_eq(c.per_seq[3], 1);
	cr_expect_eq(c.per_seq[4] + c.per_seq[5], 0);
	cr_expect_eq(c.stored + c.unstored, 41, "every version is accounted for: %llu + %llu",
	             (unsigned long long)c.stored, (unsigned long long)c.unstored);

	/* 40 more versions once the caps are reached: counted, not stored. */
	uint64_t used0 = settled_map_used();
	send_versions(fd, p, 5, 900, 40, size);
	uint64_t used1 = settled_map_used();
	c = conflicts_of(p);
	cr_expect_eq(c.stored, 7);
	cr_expect_eq(c.unstored, 74);
	cr_log_info("40 versions beyond the caps (%zu bytes each): map_used %llu -> %llu", len,
	            (unsigned long long)used0, (unsigned long long)used1);
	cr_expect_leq(used1 - used0, 8 * 4096,
	              "40 unstored versions of %zu bytes grew map_used by %llu bytes (8 pages allowed for the "
	              "counters' copy-on-write)",
	              len, (unsigned long long)(used1 - used0));

	/* Another precinct still stores its own conflict. */
	b = gen_batch(5, 10, BAL_KIND_BALLOTS, 3, 1, &len);
	expect_accepted(b, len, ++pos, "another precinct");
	free(b);
	send_versions(fd, 3, 1, 77, 1, 10);
	struct conflicts other = conflicts_of(3);
	cr_expect_eq(other.stored, 1, "the caps of precinct %u do not touch precinct %u", h.defn->precincts[p].id,
	             h.defn->precincts[3].id);
	close(fd);
	json_t *snap = th_get_json(h.td.port, "/v1/snapshot");
	cr_expect_eq(json_integer_value(json_object_get(snap, "batches")), (json_int_t)pos,
	             "only the first version of each seq counts");
	json_decref(snap);
}

/* ---- d. a stolen key ---------------------------------------------------------------- */

#define REGISTERED 1150

/* Without --max-body ballotd caps bodies at the largest batch a register
 * allows (413 before decoding); given, the 520,000-ballot batch below is
 * decoded and refused by the plausibility check itself. */
static const char *const bounded_args[] = {"--max-body", "1M", NULL};

static void setup_bounded(void)
{
	struct bal_defgen_opts o;
	defn_opts(&o, REGISTERED);
	start(&o, bounded_args);
}

/* A TALLY batch of precinct index p for the national contest (4 choices). */
static uint8_t *tally(uint32_t p, uint64_t seq, const uint64_t counts[4], const uint64_t *turnout, size_t *len)
{
	cr_assert_eq(h.defn->contests[0].nchoices, 4);
	struct bal_ctally t = {.contest_id = h.defn->contests[0].id, .n = 4, .counts = counts};
	struct bal_batch b = {.precinct_id = h.defn->precincts[p].id,
	                      .seq = seq,
	                      .kind = BAL_KIND_TALLY,
	                      .tallies = &t,
	                      .ntallies = 1};
	if (turnout) {
		b.has_turnout = true;
		b.ballots_issued = turnout[0];
		b.ballots_cast = turnout[1];
		b.ballots_spoiled = turnout[2];
	}
	return signed_batch(&b, len);
}

/* Honest BALLOTS batches (50 ballots) of every precinct but `skip`, at seq:
 * each must be ACCEPTED; folded into e. Returns how many were. */
static unsigned honest_round(struct bal_expect *e, uint32_t skip, uint64_t seq, uint64_t *pos)
{
	unsigned ok = 0;
	for (uint32_t p = 0; p < h.defn->nprecincts; p++) {
		if (p == skip)
			continue;
		size_t len;
		uint8_t *b = gen_batch(7, 50, BAL_KIND_BALLOTS, p, seq, &len);
		char *ack;
		int st = post_one(b, len, &ack);
		if (st == 200 && strstr(ack, "\"ACCEPTED\"")) {
			ok++;
			++*pos;
			fold_bytes(e, b, len);
		}
		cr_expect_eq(st, 200, "honest batch of precinct %u seq %llu: %d %s", h.defn->precincts[p].id,
		             (unsigned long long)seq, st, ack);
		free(ack);
		free(b);
	}
	return ok;
}

/*
 * The key of precinct index 0 (1,150 registered voters, like every precinct
 * here) is stolen. Counts near 2^63 and 2^64, 520,000 ballots or votes in
 * one batch or over 520 batches, more ballots cast than issued, and a
 * protocol at seq 2^64-1 are all 422 and count nothing; every other
 * precinct's honest batches are then ACCEPTED, all of them, the totals are
 * the fold of exactly the accepted batches, and so after a restart.
 */
Test(abuse, stolen_key_cannot_block_or_inflate_the_count, .init = setup_bounded, .fini = stop)
{
	const uint32_t victim = 0;
	struct bal_expect *e = bal_expect_new(h.defn);
	uint64_t pos = 0;
	size_t len;
	uint8_t *b;

	/* Eight batches with counts near 2^63 and 2^64. */
	static const uint64_t huge[8][4] = {
	        {1ull << 63, 0, 0, 0},
	        {(1ull << 63) - 1, 0, 0, 0},
	        {UINT64_MAX, 0, 0, 0},
	        {UINT64_MAX - 1, 1, 0, 0},
	        {1ull << 62, 1ull << 62, 0, 0},
	        {(1ull << 63) - 1, (1ull << 63) - 1, 1, 0},
	        {UINT64_MAX / 4, UINT64_MAX / 4, UINT64_MAX / 4, UINT64_MAX / 4},
	        {0, 0, 0, (1ull << 63) + REGISTERED},
	};
	for (unsigned i = 0; i < 8; i++) {
		b = tally(victim, 1 + i, huge[i], NULL, &len);
		char what[48];
		snprintf(what, sizeof(what), "huge tally %u", i);
		expect_refused(b, len, 422, "above its 1150 registered voters", what);
		free(b);
	}
	cr_expect_eq(position(), 0, "no huge tally was journaled");

	/* 520,000 ballots in one BALLOTS batch, and 520,000 votes in one TALLY. */
	enum { BIG = 520000 };
	uint32_t *choices = malloc(BIG * sizeof(*choices));
	for (uint32_t i = 0; i < BIG; i++)
		choices[i] = i % 4;
	struct bal_column col = {.contest_id = h.defn->contests[0].id, .n = BIG, .choices = choices};
	struct bal_batch big = {.precinct_id = h.defn->precincts[victim].id,
	                        .seq = 20,
	                        .kind = BAL_KIND_BALLOTS,
	                        .columns = &col,
	                        .ncolumns = 1};
	b = signed_batch(&big, &len);
	expect_refused(b, len, 422, "520000 ballots in this batch exceed its 1150 registered voters",
	               "520,000 ballots in one batch");
	free(b);
	free(choices);
	static const uint64_t votes520k[4] = {200000, 150000, 100000, 70000};
	b = tally(victim, 21, votes520k, NULL, &len);
	expect_refused(b, len, 422, "counts 520000 votes", "520,000 votes in one batch");
	free(b);

	/* More ballots cast than issued. */
	static const uint64_t ten[4] = {4, 3, 2, 1}, cast_over[3] = {10, 11, 0}, spoiled_over[3] = {10, 10, 11};
	b = tally(victim, 22, ten, cast_over, &len);
	expect_refused(b, len, 422, "turnout.ballots_cast 11 exceeds turnout.ballots_issued 10", "cast > issued");
	free(b);
	b = tally(victim, 23, ten, spoiled_over, &len);
	expect_refused(b, len, 422, "turnout.ballots_spoiled 11 exceeds turnout.ballots_issued 10", "spoiled > issued");
	free(b);

	/* A protocol at seq 2^64-1, and one just above limits.max_seq. */
	struct bal_gen_opts go = {.seed = 7, .key_seed = KEY_SEED, .batch_size = 50, .kind = BAL_KIND_BALLOTS};
	struct bal_gen *g = NULL;
	char why[256];
	cr_assert_eq(bal_gen_new(h.defn, &go, &g, why, sizeof(why)), 0, "%s", why);
	const uint8_t *pb;
	cr_assert_eq(bal_gen_protocol(g, victim, UINT64_MAX, 0, 0, NULL, &pb, &len, why, sizeof(why)), 0, "%s", why);
	expect_refused(pb, len, 422, "is above limits.max_seq 4294967295", "protocol at seq 2^64-1");
	cr_assert_eq(bal_gen_protocol(g, victim, h.defn->max_seq + 1, 0, 0, NULL, &pb, &len, why, sizeof(why)), 0, "%s",
	             why);
	expect_refused(pb, len, 422, "is above limits.max_seq", "protocol at max_seq + 1");
	bal_gen_free(g);
	cr_expect_eq(position(), 0, "nothing the stolen key sent was journaled");

	/* 520,000 votes over 520 batches of 1,000: the first fits the register,
	 * the 519 after it would take the sum past it. Pipelined. */
	static const uint64_t thousand[4] = {400, 300, 200, 100};
	enum { SUMMED = 520 };
	uint8_t *bodies[SUMMED];
	size_t lens[SUMMED];
	int status[SUMMED];
	char *acks[SUMMED];
	for (unsigned i = 0; i < SUMMED; i++)
		bodies[i] = tally(victim, 100 + i, thousand, NULL, &lens[i]);
	post_all(bodies, lens, SUMMED, status, acks);
	unsigned accepted = 0, refused = 0;
	for (unsigned i = 0; i < SUMMED; i++) {
		if (status[i] == 200 && strstr(acks[i], "\"ACCEPTED\"")) {
			accepted++;
			pos++;
			fold_bytes(e, bodies[i], lens[i]);
		} else {
			refused++;
			cr_expect_eq(status[i], 422, "summed batch %u: %d %s", i, status[i], acks[i]);
			cr_expect(strstr(acks[i], "over its BALLOTS and TALLY batches"), "%s", acks[i]);
		}
		free(acks[i]);
		free(bodies[i]);
	}
	cr_expect_eq(accepted, 1, "one batch of 1,000 votes fits 1,150 voters; %u were accepted", accepted);
	cr_expect_eq(refused, 519);

	/* Everyone else's honest batches, two rounds: all accepted. */
	unsigned others = h.defn->nprecincts - 1, ok = 0;
	ok += honest_round(e, victim, 1, &pos);
	ok += honest_round(e, victim, 2, &pos);
	cr_expect_eq(ok, 2 * others, "honest batches accepted after the attack: %u of %u", ok, 2 * others);
	cr_log_info("stolen key: honest batches accepted %u of %u", ok, 2 * others);
	/* The victim's own station: its batch fits beside the 1,000 votes. */
	b = gen_batch(7, 50, BAL_KIND_BALLOTS, victim, 1000, &len);
	expect_accepted(b, len, ++pos, "the victim station's own batch");
	fold_bytes(e, b, len);
	free(b);
	expect_totals(e, "after the attack");

	/* A restart on the same data: the same totals, and honest batches still count. */
	cr_assert_eq(th_stop(&h.td), 0);
	cr_assert_eq(th_start(&h.td, h.defn_path, h.data, 0, bounded_args), 0);
	expect_totals(e, "after a restart");
	ok = honest_round(e, victim, 3, &pos);
	cr_expect_eq(ok, others, "honest batches accepted after the restart: %u of %u", ok, others);
	cr_expect_eq(position(), pos);
	expect_totals(e, "after the restart's batches");
	bal_expect_free(e);
}

/*
 * A stolen key cannot fill the journal with batches that count nothing
 * (empty TALLY batches at ever new seqs): its precinct's journal bytes stop
 * at --precinct-quota, beyond which batches get 507 and store nothing, while
 * every other precinct's batches are ACCEPTED and a resend of a journaled
 * batch is still a DUPLICATE. The byte count survives a restart and a kill
 * -9 exactly (from the slice records and the journal after them).
 */
#define QUOTA 3000
static const char *const quota_args[] = {"--precinct-quota", "3000", "--snapshot-interval", "50ms", NULL};

static void setup_quota(void)
{
	struct bal_defgen_opts o;
	defn_opts(&o, REGISTERED);
	start(&o, quota_args);
}

static uint64_t page_u64(uint32_t p, const char *field)
{
	json_t *j = precinct_page(p);
	json_t *v = json_object_get(j, field);
	cr_assert(json_is_integer(v), "precinct page field %s: not an integer", field);
	uint64_t n = (uint64_t)json_integer_value(v);
	json_decref(j);
	return n;
}

Test(abuse, stolen_key_cannot_fill_the_journal_beyond_its_quota, .init = setup_quota, .fini = stop)
{
	const uint32_t victim = 0;
	const uint64_t zero[4] = {0, 0, 0, 0};
	struct bal_expect *e = bal_expect_new(h.defn);
	uint64_t pos = 0, stored = 0, seq = 0;
	size_t len, first_len = 0;
	uint8_t *first = NULL;
	cr_expect_eq(page_u64(victim, "journal_quota"), QUOTA);
	/* Up to the quota: each ACCEPTED; then 507 naming the quota. */
	for (;;) {
		uint8_t *b = tally(victim, ++seq, zero, NULL, &len);
		char *ack;
		int st = post_one(b, len, &ack);
		if (stored + len <= QUOTA) {
			cr_assert_eq(st, 200, "seq %llu within the quota: %d %s", (unsigned long long)seq, st, ack);
			expect_ack(ack, "ACCEPTED", ++pos, "within the quota");
			stored += len;
			if (!first) {
				first = b;
				first_len = len;
				b = NULL;
			}
		} else {
			cr_assert_eq(st, 507, "seq %llu beyond the quota: %d %s", (unsigned long long)seq, st, ack);
			cr_expect(strstr(ack, "journal quota"), "%s", ack);
		}
		free(ack);
		free(b);
		if (st != 200)
			break;
		if (seq == 8)
			usleep(300000); /* the slices record the bytes so far */
	}
	cr_expect_gt(seq, 10, "a few dozen empty batches fit 3000 bytes");
	cr_expect_eq(page_u64(victim, "journal_bytes"), stored);
	cr_expect_eq(position(), pos, "nothing beyond the quota was journaled");
	/* A resend of a journaled batch is answered, not refused for the quota. */
	char *ack;
	cr_expect_eq(post_one(first, first_len, &ack), 200);
	expect_ack(ack, "DUPLICATE", 1, "a resend at the quota");
	free(ack);
	/* Everyone else is unaffected. */
	unsigned others = h.defn->nprecincts - 1;
	cr_expect_eq(honest_round(e, victim, 1, &pos), others);

	/* kill -9 and a restart: the same count, the same refusal. */
	th_kill9(&h.td);
	cr_assert_eq(th_start(&h.td, h.defn_path, h.data, 0, quota_args), 0);
	cr_expect_eq(page_u64(victim, "journal_bytes"), stored, "journal bytes recovered after kill -9");
	uint8_t *b = tally(victim, ++seq, zero, NULL, &len);
	expect_refused(b, len, 507, "journal quota", "beyond the quota after a restart");
	free(b);
	cr_expect_eq(honest_round(e, victim, 2, &pos), others);
	cr_expect_eq(position(), pos);
	/* A clean stop writes every slice (and its byte record): the same again. */
	cr_assert_eq(th_stop(&h.td), 0);
	cr_assert_eq(th_start(&h.td, h.defn_path, h.data, 0, quota_args), 0);
	cr_expect_eq(page_u64(victim, "journal_bytes"), stored, "journal bytes after a clean restart");
	cr_expect_eq(page_u64(1, "journal_bytes") > 0, 1);
	free(first);
	bal_expect_free(e);
}

/* Without --precinct-quota a bounded precinct's quota is derived from its
 * voters (at least one small batch per voter); an unbounded one has none. */
Test(abuse, precinct_quota_is_derived_from_the_register, .fini = stop)
{
	struct bal_defgen_opts o;
	defn_opts(&o, REGISTERED);
	start(&o, NULL);
	uint64_t q = page_u64(0, "journal_quota");
	cr_expect_gt(q, (uint64_t)REGISTERED * 100, "quota %llu for %u voters", (unsigned long long)q, REGISTERED);
	cr_expect_lt(q, (uint64_t)REGISTERED * 100000, "quota %llu for %u voters", (unsigned long long)q, REGISTERED);
	stop();
	defn_opts(&o, 0);
	start(&o, NULL);
	json_t *j = precinct_page(0);
	cr_expect(json_is_null(json_object_get(j, "journal_quota")), "an unbounded precinct has no quota");
	json_decref(j);
}

/* ---- e. replay into another election ------------------------------------------------ */

/*
 * Two elections with the same station keys (a rerun, or a second round):
 * a batch journaled by election A, replayed byte for byte to the daemon of
 * election B, is 422 naming the election, stores nothing, and does not take
 * the (precinct, seq) from B's own station.
 */
Test(abuse, batch_of_another_election_is_422_and_takes_no_slot, .fini = stop)
{
	struct bal_defgen_opts oa, ob;
	defn_opts(&oa, 0);
	oa.election_id = "abuse-round-1";
	defn_opts(&ob, 0);
	ob.election_id = "abuse-round-2";
	prepare(&ob);
	cr_assert_eq(th_start(&h.td, h.defn_path, h.data, 0, settle_args), 0);

	/* Election A's daemon journals a batch of precinct 3, seq 1. */
	char *path_a = th_write_defn_opts(h.dir, &oa), data_a[640];
	cr_assert(path_a);
	struct bal_defn *defn_a;
	char why[256];
	cr_assert_eq(bal_defn_load(path_a, &defn_a, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(memcmp(defn_a->precincts[3].public_key, h.defn->precincts[3].public_key, 32), 0,
	             "fixture: both elections share the keys");
	snprintf(data_a, sizeof(data_a), "%s/data-a", h.dir);
	struct th_daemon ta;
	cr_assert_eq(th_start(&ta, path_a, data_a, 0, NULL), 0);
	struct bal_gen_opts go = {.seed = 5, .key_seed = KEY_SEED, .batch_size = 20, .kind = BAL_KIND_BALLOTS};
	struct bal_gen *ga = NULL;
	cr_assert_eq(bal_gen_new(defn_a, &go, &ga, why, sizeof(why)), 0, "%s", why);
	const uint8_t *body;
	size_t len, rlen;
	cr_assert_eq(bal_gen_batch(ga, 3, 1, NULL, &body, &len, why, sizeof(why)), 0, "%s", why);
	struct th_resp r;
	cr_assert_eq(th_post(ta.port, body, len, &r), 0);
	cr_assert(strstr(r.body, "\"ACCEPTED\",\"position\":1"), "election A: %s", r.body);
	th_resp_free(&r);
	uint8_t *rec = th_journal_record(ta.port, 1, &rlen);
	cr_assert(rec);
	cr_expect_eq(th_stop(&ta), 0);
	bal_gen_free(ga);

	/* Replayed to election B, twice. */
	uint64_t used0 = settled_map_used();
	for (int i = 0; i < 2; i++)
		expect_refused(rec, rlen, 422, "election \\\"abuse-round-1", "A's journaled batch replayed to B");
	cr_expect_eq(settled_map_used(), used0, "the replay changed map_used");
	cr_expect_eq(position(), 0);
	struct conflicts c = conflicts_of(3);
	cr_expect_eq(c.stored + c.unstored, 0);
	/* B's own station uploads the same (precinct, seq). */
	uint8_t *own = gen_batch(5, 20, BAL_KIND_BALLOTS, 3, 1, &len);
	expect_accepted(own, len, 1, "election B's own batch of the replayed (precinct, seq)");
	free(own);
	free(rec);
	bal_defn_free(defn_a);
	free(path_a);
}

/* ---- g. a keyless precinct ---------------------------------------------------------- */

/* Writes h.defn_path's definition again without the public key of precinct
 * index p, and reloads it. */
static void drop_key(uint32_t p)
{
	json_error_t err;
	json_t *root = json_load_file(h.defn_path, 0, &err);
	cr_assert(root, "%s", err.text);
	json_t *pr = json_array_get(json_object_get(root, "precincts"), p);
	cr_assert_eq(json_object_del(pr, "public_key"), 0);
	cr_assert_eq(json_dump_file(root, h.defn_path, JSON_INDENT(1)), 0);
	json_decref(root);
	bal_defn_free(h.defn);
	char why[256];
	cr_assert_eq(bal_defn_load(h.defn_path, &h.defn, why, sizeof(why)), 0, "%s", why);
	cr_assert(!h.defn->precincts[p].has_key);
}

static void setup_keyless(void)
{
	struct bal_defgen_opts o;
	defn_opts(&o, 0);
	prepare(&o);
	drop_key(0);
	cr_assert_eq(th_start(&h.td, h.defn_path, h.data, 0, NULL), 0);
}

/*
 * A precinct without a public key accepts only an empty signature: any
 * signature bytes are 401, the old demo key's valid signature included (a
 * signature nobody can check must not pass for one).
 */
Test(abuse, keyless_precinct_takes_only_an_empty_signature, .init = setup_keyless, .fini = stop)
{
	cr_expect_eq(th_healthz_u64(h.td.port, "keyless_precincts"), 1);
	uint32_t choices[3] = {0, 1, 2};
	struct bal_column col = {.contest_id = h.defn->contests[0].id, .n = 3, .choices = choices};
	struct bal_batch b = {.precinct_id = h.defn->precincts[0].id,
	                      .seq = 1,
	                      .kind = BAL_KIND_BALLOTS,
	                      .columns = &col,
	                      .ncolumns = 1};
	uint8_t sig[64];
	size_t len;
	uint8_t *body = signed_batch(&b, &len); /* signed with the key the precinct had */
	expect_refused(body, len, 401, "signature", "a valid signature by the removed key");
	free(body);
	randombytes_buf(sig, sizeof(sig));
	body = with_signature(&b, sig, 64, &len);
	expect_refused(body, len, 401, "signature", "64 random signature bytes");
	free(body);
	body = with_signature(&b, sig, 1, &len);
	expect_refused(body, len, 401, "signature", "a 1-byte signature");
	free(body);
	cr_expect_eq(position(), 0);
	body = th_signed_batch(&b, false, KEY_SEED, &len);
	expect_accepted(body, len, 1, "the empty signature");
	free(body);
}

/* ---- h. starting without a definition ---------------------------------------------- */

/*
 * Without --definition ballotd exits non-zero naming --demo and creates
 * nothing; with --demo it runs the demo election and warns that its keys
 * are public.
 */
Test(abuse, no_definition_refuses_to_start_and_demo_warns, .fini = stop)
{
	struct bal_defgen_opts o;
	defn_opts(&o, 0);
	prepare(&o); /* the daemon below runs the demo election; this one is unused */
	const char *const args[] = {"--data", h.data, "--listen", "127.0.0.1:0", NULL};
	struct th_daemon td;
	int st = th_run_args_to_exit(&td, h.dir, args);
	char *log = th_read_log(&td);
	cr_expect(st > 0 && st < 128, "ballotd without --definition: exit status %d\n%s", st, log);
	cr_expect(strstr(log, "--definition") && strstr(log, "--demo"), "the refusal should name --demo: %s", log);
	cr_expect_neq(access(h.data, F_OK), 0, "no data directory is created");
	free(log);

	cr_assert_eq(th_start(&h.td, NULL, h.data, 0, NULL), 0, "ballotd --demo");
	log = th_read_log(&h.td);
	cr_expect(log_line_at(log, "warn", "--demo: "), "--demo should log a warning: %s", log);
	free(log);
	cr_expect_eq(th_healthz_u64(h.td.port, "keyless_precincts"), 0);
}

/* The start log warns, at warn level, about keyless precincts and --no-auth. */
Test(abuse, start_log_warns_about_keyless_precincts_and_no_auth, .fini = stop)
{
	struct bal_defgen_opts o;
	defn_opts(&o, 0);
	prepare(&o);
	drop_key(0);
	drop_key(5);
	static const char *const args[] = {"--no-auth", NULL};
	cr_assert_eq(th_start(&h.td, h.defn_path, h.data, 0, args), 0);
	char *log = th_read_log(&h.td);
	cr_expect(log_line_at(log, "warn", "2 of 12 precincts have no public key"), "%s", log);
	cr_expect(log_line_at(log, "warn", "--no-auth: signatures are not verified"), "%s", log);
	free(log);
	json_t *j = th_get_json(h.td.port, "/healthz");
	cr_assert(j);
	cr_expect(json_is_false(json_object_get(j, "auth")), "/healthz auth should be false");
	cr_expect_eq(json_integer_value(json_object_get(j, "keyless_precincts")), 2);
	json_decref(j);
}
