/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The effective definition (see amend.h): per-precinct keys behind seqlocks,
 * frozen precincts, the list of amendments, and what a void takes back,
 * found in the journal. Depends on core, proto (decoding journal records)
 * and storage (reading them); never on libuv.
 */
#include "daemon/amend.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "core/reason.h"
#include "daemon/daemon.h"
#include "proto/codec.h"
#include "storage/storage.h"

/* As in core/pub.c: every shared word is accessed atomically, the fences
 * order them, and GCC's ThreadSanitizer warns about fences it does not model. */
#if defined(__SANITIZE_THREAD__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wtsan"
#endif

#define U64(x) ((unsigned long long)(x))

/*
 * A precinct's key behind a seqlock: `seq` is odd while the writer changes
 * the slot, and even values are the key's versions (bal_key_view.version).
 * Every field is accessed with __atomic builtins.
 */
struct key_slot {
	uint64_t seq;
	uint64_t state; /* enum bal_key_state */
	uint64_t changed_at;
	uint64_t key[4];
};

/*
 * - `keys` and `frozen` have one entry per precinct of `d`;
 * - `recs[0..n)` are the amendments applied, in journal order (positions
 *   ascending); `cap >= n`; appending and growing hold `lock`, readers of
 *   other threads hold it too.
 */
struct bal_amend {
	const struct bal_defn *d;
	struct key_slot *keys;
	uint64_t *frozen; /* amendment position, 0: not frozen; the writer's only */
	pthread_mutex_t lock;
	struct bal_amend_rec *recs;
	size_t n, cap;
};

static void key_write(struct key_slot *k, enum bal_key_state state, const uint8_t *key, uint64_t at)
{
	uint64_t s = __atomic_load_n(&k->seq, __ATOMIC_RELAXED);
	__atomic_store_n(&k->seq, s + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	uint64_t words[4] = {0, 0, 0, 0};
	if (key)
		memcpy(words, key, sizeof(words));
	__atomic_store_n(&k->state, (uint64_t)state, __ATOMIC_RELAXED);
	__atomic_store_n(&k->changed_at, at, __ATOMIC_RELAXED);
	for (int i = 0; i < 4; i++)
		__atomic_store_n(&k->key[i], words[i], __ATOMIC_RELAXED);
	__atomic_store_n(&k->seq, s + 2, __ATOMIC_RELEASE);
}

struct bal_amend *bal_amend_new(const struct bal_defn *d)
{
	struct bal_amend *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->d = d;
	a->keys = calloc(d->nprecincts ? d->nprecincts : 1, sizeof(*a->keys));
	a->frozen = calloc(d->nprecincts ? d->nprecincts : 1, sizeof(*a->frozen));
	if (!a->keys || !a->frozen) {
		free(a->keys);
		free(a->frozen);
		free(a);
		return NULL;
	}
	pthread_mutex_init(&a->lock, NULL);
	for (uint32_t p = 0; p < d->nprecincts; p++) {
		const struct bal_precinct *pr = &d->precincts[p];
		key_write(&a->keys[p], pr->has_key ? BAL_KEY_SET : BAL_KEY_NONE, pr->has_key ? pr->public_key : NULL,
		          0);
	}
	return a;
}

void bal_amend_free(struct bal_amend *a)
{
	if (!a)
		return;
	pthread_mutex_destroy(&a->lock);
	free(a->keys);
	free(a->frozen);
	free(a->recs);
	free(a);
}

void bal_amend_key(const struct bal_amend *a, uint32_t p, struct bal_key_view *out)
{
	bal_require(p < a->d->nprecincts);
	const struct key_slot *k = &a->keys[p];
	for (unsigned tries = 1;; tries++) {
		uint64_t s1 = __atomic_load_n(&k->seq, __ATOMIC_ACQUIRE);
		if (!(s1 & 1)) {
			uint64_t words[4];
			out->state = (enum bal_key_state)__atomic_load_n(&k->state, __ATOMIC_RELAXED);
			out->changed_at = __atomic_load_n(&k->changed_at, __ATOMIC_RELAXED);
			for (int i = 0; i < 4; i++)
				words[i] = __atomic_load_n(&k->key[i], __ATOMIC_RELAXED);
			/* Keeps the copy above from moving below the re-check of seq. */
			__atomic_thread_fence(__ATOMIC_ACQUIRE);
			if (__atomic_load_n(&k->seq, __ATOMIC_RELAXED) == s1) {
				memcpy(out->key, words, sizeof(out->key));
				out->version = s1;
				return;
			}
		}
		if (tries % 4 == 0)
			sched_yield();
	}
}

uint64_t bal_amend_key_version(const struct bal_amend *a, uint32_t p)
{
	bal_require(p < a->d->nprecincts);
	return __atomic_load_n(&a->keys[p].seq, __ATOMIC_RELAXED);
}

uint64_t bal_amend_frozen_at(const struct bal_amend *a, uint32_t p)
{
	bal_require(p < a->d->nprecincts);
	return a->frozen[p];
}

uint64_t bal_amend_voided_at(const struct bal_amend *a, uint64_t x, uint64_t before)
{
	for (size_t i = 0; i < a->n && a->recs[i].position < before; i++)
		if (a->recs[i].change == BAL_CHANGE_VOID && a->recs[i].target == x)
			return a->recs[i].position;
	return 0;
}

size_t bal_amend_count(const struct bal_amend *a)
{
	return a->n;
}

const struct bal_amend_rec *bal_amend_at(const struct bal_amend *a, size_t i)
{
	bal_require(i < a->n);
	return &a->recs[i];
}

int bal_amend_reserve(struct bal_amend *a)
{
	if (a->n < a->cap)
		return 0;
	size_t cap = a->cap ? 2 * a->cap : 8;
	pthread_mutex_lock(&a->lock);
	struct bal_amend_rec *r = realloc(a->recs, cap * sizeof(*r));
	if (r) {
		a->recs = r;
		a->cap = cap;
	}
	pthread_mutex_unlock(&a->lock);
	return r ? 0 : -ENOMEM;
}

void bal_amend_apply(struct bal_amend *a, const struct bal_amendment *am, uint64_t position, uint32_t void_precinct,
                     uint64_t void_seq)
{
	bal_require(a->n < a->cap);
	bal_require(!a->n || a->recs[a->n - 1].position < position);
	struct bal_amend_rec *r = &a->recs[a->n];
	memset(r, 0, sizeof(*r));
	r->position = position;
	r->change = am->change;
	r->precinct = UINT32_MAX;
	size_t len = strlen(am->reason);
	memcpy(r->reason, am->reason, len < BAL_REASON_MAX ? len : BAL_REASON_MAX);
	int32_t p = -1;
	switch (am->change) {
	case BAL_CHANGE_REVOKE_KEY:
	case BAL_CHANGE_SET_KEY:
	case BAL_CHANGE_FREEZE:
		p = bal_defn_precinct(a->d, am->precinct_id);
		bal_require(p >= 0);
		r->precinct = (uint32_t)p;
		break;
	case BAL_CHANGE_VOID:
		r->precinct = void_precinct;
		r->target = am->position;
		r->target_seq = void_seq;
		break;
	case BAL_CHANGE_CERTIFY: r->target = am->position; break;
	case BAL_CHANGE_NONE: break;
	}
	/* Listed before it takes effect: a reader that sees the effect can list it. */
	pthread_mutex_lock(&a->lock);
	a->n++;
	pthread_mutex_unlock(&a->lock);
	if (am->change == BAL_CHANGE_REVOKE_KEY)
		key_write(&a->keys[p], BAL_KEY_REVOKED, NULL, position);
	else if (am->change == BAL_CHANGE_SET_KEY)
		key_write(&a->keys[p], BAL_KEY_SET, am->public_key, position);
	else if (am->change == BAL_CHANGE_FREEZE)
		a->frozen[p] = position;
}

void bal_amend_each(struct bal_amend *a, uint64_t upto, void (*cb)(void *arg, const struct bal_amend_rec *r), void *arg)
{
	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < a->n && a->recs[i].position <= upto; i++)
		cb(arg, &a->recs[i]);
	pthread_mutex_unlock(&a->lock);
}

/* ---- voids ------------------------------------------------------------------- */

int bal_void_plan_init(struct bal_void_plan *v, const struct bal_layout *l)
{
	memset(v, 0, sizeof(*v));
	uint32_t cap = (uint32_t)bal_layout_delta_max(l);
	v->x = (struct bal_delta){.cap = cap, .e = calloc(cap ? cap : 1, sizeof(*v->x.e))};
	v->prev = (struct bal_delta){.cap = cap, .e = calloc(cap ? cap : 1, sizeof(*v->prev.e))};
	bal_arena_init(&v->arena, 0);
	return v->x.e && v->prev.e ? 0 : -ENOMEM;
}

void bal_void_plan_deinit(struct bal_void_plan *v)
{
	free(v->x.e);
	free(v->prev.e);
	free(v->rec);
	bal_arena_deinit(&v->arena);
	memset(v, 0, sizeof(*v));
}

/* The record at `position` into v->rec: its length, or a negative error. */
static long read_record(struct bal_void_plan *v, struct bal_store *s, uint64_t position)
{
	for (;;) {
		long n = bal_store_journal_get(s, position, v->rec, v->cap);
		if (n < 0 || (size_t)n <= v->cap)
			return n == -ENOENT ? BAL_ECORRUPT : n;
		uint8_t *buf = realloc(v->rec, (size_t)n);
		if (!buf)
			return -ENOMEM;
		v->rec = buf;
		v->cap = (size_t)n;
	}
}

/* Reads, decodes and folds the batch journaled at `position` into `out`;
 * *amendment tells a record that is an amendment (then `out` is untouched). */
static int fold_record(struct bal_void_plan *v, struct bal_daemon *d, uint64_t position, struct bal_delta *out,
                       struct bal_batch *b, bool *amendment, char *why, size_t whylen)
{
	long n = read_record(v, d->store, position);
	if (n < 0)
		return bal_fail(why, whylen, (int)n, "journal position %llu cannot be read: %s", U64(position),
		                bal_strerror((int)n));
	*amendment = bal_codec_is_amendment(v->rec, (size_t)n);
	if (*amendment)
		return 0;
	char inner[200] = "";
	bal_arena_reset(&v->arena);
	out->n = 0;
	if (bal_codec_decode(v->rec, (size_t)n, &v->arena, b, inner, sizeof(inner)) != 0 ||
	    bal_tally_fold(d->defn, d->layout, b, out, inner, sizeof(inner)) != 0)
		return bal_fail(why, whylen, BAL_ECORRUPT, "journal position %llu no longer folds: %s", U64(position),
		                inner);
	return 0;
}

/* The protocol that counts once v->x goes (see bal_void_plan_make()). */
static int find_previous(struct bal_void_plan *v, struct bal_daemon *d, uint64_t x, uint64_t before, char *why,
                         size_t whylen)
{
	uint64_t(*sp)[2];
	size_t n;
	int err = bal_store_precinct_list(d->store, d->defn->precincts[v->precinct].id, &sp, &n);
	if (err)
		err = bal_fail(why, whylen, err, "the journal of precinct %u cannot be read: %s",
		               d->defn->precincts[v->precinct].id, bal_strerror(err));
	/* In seq order: the first protocol from the top is the highest. */
	for (size_t i = n; !err && i-- > 0;) {
		const uint64_t pos = sp[i][1];
		if (pos == x || pos >= before || bal_amend_voided_at(d->amend, pos, before))
			continue;
		struct bal_batch b;
		bool amendment;
		err = fold_record(v, d, pos, &v->prev, &b, &amendment, why, whylen);
		if (!err && amendment)
			err = bal_fail(why, whylen, BAL_ECORRUPT, "journal position %llu is listed for precinct %u",
			               U64(pos), d->defn->precincts[v->precinct].id);
		if (err || b.kind != BAL_KIND_PROTOCOL)
			continue;
		v->has_prev = true;
		v->prev_position = pos;
		break;
	}
	free(sp);
	return err;
}

int bal_void_plan_make(struct bal_void_plan *v, struct bal_daemon *d, uint64_t x, uint64_t before, const uint64_t *ctr,
                       char *why, size_t whylen)
{
	struct bal_batch b;
	bool amendment;
	v->has_prev = false;
	v->prev_position = 0;
	int err = fold_record(v, d, x, &v->x, &b, &amendment, why, whylen);
	if (err)
		return err;
	if (amendment)
		return bal_fail(why, whylen, BAL_EINVALID,
		                "void: position %llu holds an amendment, not a batch (amendments are not voided)",
		                U64(x));
	v->precinct = v->x.precinct;
	v->seq = b.seq;
	if (v->x.kind != BAL_DELTA_PROTOCOL || v->x.seq != bal_tally_protocol_seq(d->layout, ctr, v->precinct))
		return 0;
	return find_previous(v, d, x, before, why, whylen);
}

static int by_position(const void *a, const void *b)
{
	const uint64_t *x = a, *y = b;
	return x[1] < y[1] ? -1 : x[1] > y[1];
}

/* The amendment journaled at `position`, read with v's buffer and decoded
 * into `arena`, applied. */
static int load_one(struct bal_daemon *d, struct bal_void_plan *v, struct bal_arena *arena, uint64_t position,
                    char *why, size_t whylen)
{
	long n = read_record(v, d->store, position);
	if (n < 0)
		return bal_fail(why, whylen, (int)n, "it cannot be read: %s", bal_strerror((int)n));
	struct bal_amendment am;
	bal_arena_reset(arena);
	int err = bal_codec_amendment_decode(v->rec, (size_t)n, arena, &am, why, whylen);
	if (!err)
		err = bal_amendment_check(d->defn, &am, why, whylen);
	if (err)
		return err == -ENOMEM ? err : BAL_ECORRUPT;
	uint32_t precinct = UINT32_MAX;
	uint64_t seq = 0;
	if (am.change == BAL_CHANGE_VOID) {
		/* The voided batch's precinct and seq, for the list; the walk takes
		 * it back. What bal_amend_apply() reads of `am` lives in `arena`, so
		 * v's record buffer may be reused. */
		struct bal_batch b;
		bool amendment = false;
		if (am.position >= position ||
		    (err = fold_record(v, d, am.position, &v->x, &b, &amendment, why, whylen)) != 0 || amendment)
			return err == -ENOMEM
			               ? err
			               : bal_fail(why, whylen, BAL_ECORRUPT,
			                          "it voids position %llu, which holds no batch journaled before it",
			                          U64(am.position));
		precinct = v->x.precinct;
		seq = b.seq;
	}
	if ((err = bal_amend_reserve(d->amend)) != 0)
		return err;
	bal_amend_apply(d->amend, &am, position, precinct, seq);
	return 0;
}

int bal_amend_load(struct bal_daemon *d, struct bal_void_plan *v, char *why, size_t whylen)
{
	uint64_t(*sp)[2];
	size_t n;
	struct bal_arena arena;
	bal_arena_init(&arena, 0);
	int err = bal_store_precinct_list(d->store, BAL_COMMISSION_ID, &sp, &n);
	if (err)
		bal_fail(why, whylen, err, "the commission's records cannot be listed: %s", bal_strerror(err));
	if (!err && n)
		qsort(sp, n, sizeof(*sp), by_position);
	for (size_t i = 0; !err && i < n; i++) {
		char inner[256] = "";
		err = load_one(d, v, &arena, sp[i][1], inner, sizeof(inner));
		if (err)
			bal_fail(why, whylen, err, "the amendment at journal position %llu no longer applies: %s",
			         U64(sp[i][1]), inner);
	}
	bal_arena_deinit(&arena);
	free(sp);
	return err;
}

int bal_amend_check(struct bal_daemon *d, const struct bal_amendment *am, uint64_t committed, const uint64_t *ctr,
                    struct bal_void_plan *v, char *why, size_t whylen)
{
	const struct bal_amend *a = d->amend;
	const int32_t p = bal_defn_precinct(d->defn, am->precinct_id);
	switch (am->change) {
	case BAL_CHANGE_REVOKE_KEY:
	case BAL_CHANGE_SET_KEY: {
		bal_require(p >= 0);
		struct bal_key_view k;
		bal_amend_key(a, (uint32_t)p, &k);
		if (am->change == BAL_CHANGE_REVOKE_KEY && k.state == BAL_KEY_REVOKED)
			return bal_fail(why, whylen, BAL_EINVALID,
			                "revoke_key: the key of precinct %u is revoked already (amendment at position "
			                "%llu)",
			                am->precinct_id, U64(k.changed_at));
		if (am->change == BAL_CHANGE_SET_KEY && k.state == BAL_KEY_SET &&
		    memcmp(k.key, am->public_key, sizeof(k.key)) == 0)
			return bal_fail(why, whylen, BAL_EINVALID, "set_key: precinct %u has that key already",
			                am->precinct_id);
		return 0;
	}
	case BAL_CHANGE_FREEZE:
		bal_require(p >= 0);
		if (a->frozen[p])
			return bal_fail(why, whylen, BAL_EINVALID,
			                "freeze: precinct %u is frozen already (amendment at position %llu)",
			                am->precinct_id, U64(a->frozen[p]));
		return 0;
	case BAL_CHANGE_CERTIFY:
	case BAL_CHANGE_VOID: break;
	case BAL_CHANGE_NONE: return bal_fail(why, whylen, BAL_EINVALID, "an amendment must make one change");
	}
	const char *what = bal_change_name(am->change);
	if (am->position > committed)
		return bal_fail(why, whylen, BAL_EINVALID,
		                "%s: position %llu is beyond the journal, which ends at %llu", what, U64(am->position),
		                U64(committed));
	if (am->change == BAL_CHANGE_CERTIFY)
		return 0;
	uint64_t voided = bal_amend_voided_at(a, am->position, UINT64_MAX);
	if (voided)
		return bal_fail(why, whylen, BAL_EINVALID,
		                "void: position %llu is voided already (amendment at position %llu)", U64(am->position),
		                U64(voided));
	int err = bal_void_plan_make(v, d, am->position, committed + 1, ctr, why, whylen);
	if (err)
		return err;
	char inner[200] = "";
	err = bal_tally_check_void(d->layout, ctr, &v->x, v->has_prev ? &v->prev : NULL, inner, sizeof(inner));
	if (err == BAL_EOVERFLOW)
		return bal_fail(why, whylen, BAL_EINVALID, "void: position %llu cannot be voided: %s",
		                U64(am->position), inner);
	if (err)
		return bal_fail(why, whylen, err, "void: position %llu: %s", U64(am->position), inner);
	return 0;
}
