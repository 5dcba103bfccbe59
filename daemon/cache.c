/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared answers, their cache and the reader thread (see cache.h).
 *
 * One mutex guards the cached bodies, the lists of waits and every wait's
 * state. A wait is PENDING on its kind's list until the reader takes it
 * (TAKEN) and hands it its answer (DONE), then wakes the wait's loop with
 * uv_async_send(); the loop thread delivers the body and closes the handle,
 * whose close callback frees the wait. A cancelled wait that is still
 * PENDING is unlinked and closed at once; a TAKEN or DONE one is marked and
 * closed when its wake-up comes, so the reader never signals a closed handle.
 */
#include "daemon/cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "daemon/log.h"

/* The reader's nice value: a build takes CPU from ingest only when there is some to spare. */
#define READER_NICE 10

struct bal_body *bal_body_new(char *data, size_t len, uint64_t position)
{
	struct bal_body *b = malloc(sizeof(*b));
	if (!b) {
		free(data);
		return NULL;
	}
	*b = (struct bal_body){.refs = 1, .position = position, .data = data, .len = len};
	return b;
}

struct bal_body *bal_body_ref(struct bal_body *b)
{
	__atomic_fetch_add(&b->refs, 1, __ATOMIC_RELAXED);
	return b;
}

void bal_body_release(struct bal_body *b)
{
	if (b && __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		free(b->data);
		free(b);
	}
}

enum wait_state { W_PENDING, W_TAKEN, W_DONE };

struct bal_wait {
	uv_async_t async;
	struct bal_cache *cache;
	struct bal_wait *next; /* its kind's pending list, or the reader's batch */
	enum bal_answer kind;  /* BAL_ANSWER_KINDS: private */
	uint64_t min_pos;
	bal_answer_build build;
	bal_answer_done done;
	void *arg;
	/* under the cache's lock */
	enum wait_state state;
	bool cancelled;
	struct bal_body *body;
	_Alignas(16) char params[BAL_ANSWER_PARAMS];
};

struct bal_cache {
	struct bal_daemon *d;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t *scratch; /* the reader's copy of the counters */
	/* under `lock` */
	bool stop;
	struct bal_body *cur[BAL_ANSWER_KINDS];
	struct bal_wait *pending[BAL_ANSWER_KINDS + 1]; /* oldest first */
	unsigned waiting;                               /* waits not yet DONE */
	unsigned turn;                                  /* kind the reader looks at first */
};

static const char *const names[BAL_ANSWER_KINDS + 1] = {
        [BAL_ANSWER_RESULTS_CSV] = "results.csv",
        [BAL_ANSWER_SNAPSHOT] = "snapshot",
        [BAL_ANSWER_SEATS] = "seats",
        [BAL_ANSWER_KINDS] = "journal",
};

const char *bal_answer_name(enum bal_answer kind)
{
	return kind <= BAL_ANSWER_KINDS ? names[kind] : "?";
}

unsigned bal_cache_waiting(struct bal_cache *c)
{
	pthread_mutex_lock(&c->lock);
	unsigned n = c->waiting;
	pthread_mutex_unlock(&c->lock);
	return n;
}

/* Under the lock: makes `b` the cached answer of `kind` if it is further
 * along; returns the body the caller releases after unlocking, or NULL. */
static struct bal_body *put_locked(struct bal_cache *c, enum bal_answer kind, struct bal_body *b)
{
	struct bal_body *old = c->cur[kind];
	if (old && old->position >= b->position)
		return NULL;
	c->cur[kind] = bal_body_ref(b);
	return old;
}

void bal_cache_put(struct bal_cache *c, enum bal_answer kind, struct bal_body *b)
{
	bal_require(kind < BAL_ANSWER_KINDS);
	pthread_mutex_lock(&c->lock);
	struct bal_body *old = put_locked(c, kind, b);
	pthread_mutex_unlock(&c->lock);
	bal_body_release(old);
}

/* ---- the loop side ---------------------------------------------------------- */

static void free_wait(uv_handle_t *h)
{
	free(h->data);
}

static void on_answer(uv_async_t *a)
{
	struct bal_wait *w = a->data;
	struct bal_cache *c = w->cache;
	pthread_mutex_lock(&c->lock);
	bool done = w->state == W_DONE, cancelled = w->cancelled;
	struct bal_body *b = w->body;
	if (done)
		w->body = NULL;
	pthread_mutex_unlock(&c->lock);
	if (!done)
		return;
	if (cancelled)
		bal_body_release(b);
	else
		w->done(w->arg, b, w->params);
	uv_close((uv_handle_t *)&w->async, free_wait);
}

struct bal_body *bal_cache_get(struct bal_cache *c, enum bal_answer kind, uint64_t min_pos)
{
	bal_require(kind < BAL_ANSWER_KINDS);
	struct bal_body *b = NULL;
	pthread_mutex_lock(&c->lock);
	if (c->cur[kind] && c->cur[kind]->position >= min_pos)
		b = bal_body_ref(c->cur[kind]);
	pthread_mutex_unlock(&c->lock);
	if (b)
		BAL_METRIC_ADD(c->d->metrics.answer_hits[kind], 1);
	else
		BAL_METRIC_ADD(c->d->metrics.answer_misses[kind], 1);
	return b;
}

enum bal_cache_outcome bal_cache_answer(struct bal_cache *c, uv_loop_t *loop, enum bal_answer kind, uint64_t min_pos,
                                        bal_answer_build build, const void *params, size_t params_len,
                                        bal_answer_done done, void *arg, struct bal_body **body, struct bal_wait **wait)
{
	struct bal_metrics *m = &c->d->metrics;
	bal_require(kind <= BAL_ANSWER_KINDS && params_len <= BAL_ANSWER_PARAMS);
	*body = NULL;
	*wait = NULL;
	pthread_mutex_lock(&c->lock);
	if (kind < BAL_ANSWER_KINDS && c->cur[kind] && c->cur[kind]->position >= min_pos) {
		*body = bal_body_ref(c->cur[kind]);
		pthread_mutex_unlock(&c->lock);
		BAL_METRIC_ADD(m->answer_hits[kind], 1);
		return BAL_CACHE_HIT;
	}
	BAL_METRIC_ADD(m->answer_misses[kind], 1);
	if (c->waiting >= c->d->cfg.max_heavy_queries) {
		pthread_mutex_unlock(&c->lock);
		BAL_METRIC_ADD(m->heavy_refused, 1);
		return BAL_CACHE_REFUSED;
	}
	struct bal_wait *w = malloc(sizeof(*w));
	if (w) {
		*w = (struct bal_wait){
		        .cache = c, .kind = kind, .min_pos = min_pos, .build = build, .done = done, .arg = arg};
		if (params_len)
			memcpy(w->params, params, params_len);
	}
	if (!w || uv_async_init(loop, &w->async, on_answer)) {
		pthread_mutex_unlock(&c->lock);
		free(w);
		return BAL_CACHE_NOMEM;
	}
	w->async.data = w;
	struct bal_wait **at = &c->pending[kind];
	while (*at)
		at = &(*at)->next;
	*at = w;
	c->waiting++;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	*wait = w;
	return BAL_CACHE_WAIT;
}

void bal_cache_cancel(struct bal_wait *w)
{
	struct bal_cache *c = w->cache;
	pthread_mutex_lock(&c->lock);
	if (w->state != W_PENDING) {
		/* The reader has it: its wake-up closes the handle. */
		w->cancelled = true;
		pthread_mutex_unlock(&c->lock);
		return;
	}
	struct bal_wait **at = &c->pending[w->kind];
	while (*at != w)
		at = &(*at)->next;
	*at = w->next;
	c->waiting--;
	pthread_mutex_unlock(&c->lock);
	uv_close((uv_handle_t *)&w->async, free_wait);
}

/* ---- the reader thread -------------------------------------------------------- */

/* Under the lock: hands `b` (may be NULL) to `w` and wakes its loop. */
static void deliver_locked(struct bal_cache *c, struct bal_wait *w, struct bal_body *b)
{
	w->body = b ? bal_body_ref(b) : NULL;
	w->state = W_DONE;
	c->waiting--;
	uv_async_send(&w->async);
}

/* Under the lock: the next waits to build for, all of one kind (one wait if
 * private), taken off their list; NULL if none. Kinds take turns. */
static struct bal_wait *take_locked(struct bal_cache *c)
{
	for (unsigned i = 0; i <= BAL_ANSWER_KINDS; i++) {
		unsigned k = (c->turn + i) % (BAL_ANSWER_KINDS + 1);
		struct bal_wait *batch = c->pending[k];
		if (!batch)
			continue;
		c->turn = k + 1;
		if (k == BAL_ANSWER_KINDS) {
			c->pending[k] = batch->next;
			batch->next = NULL;
		} else {
			c->pending[k] = NULL;
		}
		for (struct bal_wait *w = batch; w; w = w->next)
			w->state = W_TAKEN;
		return batch;
	}
	return NULL;
}

/* Best effort: the reader yields the CPU to the I/O threads and the committer. */
static void lower_priority(void)
{
	if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), READER_NICE))
		bal_log(BAL_LOG_DEBUG, "reader", "nice %d not set: %s", READER_NICE, bal_strerror(-errno));
}

struct bal_body *bal_answer_make(struct bal_daemon *d, uint64_t *scratch, enum bal_answer kind, bal_answer_build build,
                                 void *params)
{
	struct bal_text t = {0};
	uint64_t position = 0;
	int err = build(d, scratch, params, &t, &position);
	struct bal_body *b = err || t.oom ? NULL : bal_body_new(t.p, t.n, position);
	if (!b) {
		if (err || t.oom)
			free(t.p);
		bal_log(BAL_LOG_WARN, "query", "building the %s answer failed: %s", bal_answer_name(kind),
		        bal_strerror(err ? err : -ENOMEM));
		return NULL;
	}
	BAL_METRIC_ADD(d->metrics.answer_builds[kind], 1);
	return b;
}

static void *run(void *arg)
{
	struct bal_cache *c = arg;
	lower_priority();
	pthread_mutex_lock(&c->lock);
	for (;;) {
		struct bal_wait *batch = take_locked(c);
		if (!batch) {
			if (c->stop)
				break;
			pthread_cond_wait(&c->cond, &c->lock);
			continue;
		}
		enum bal_answer kind = batch->kind;
		pthread_mutex_unlock(&c->lock);
		struct bal_body *b = bal_answer_make(c->d, c->scratch, kind, batch->build, batch->params), *old = NULL;
		pthread_mutex_lock(&c->lock);
		while (batch) {
			struct bal_wait *next = batch->next;
			deliver_locked(c, batch, b);
			batch = next;
		}
		if (b && kind < BAL_ANSWER_KINDS) {
			old = put_locked(c, kind, b);
			/* Requests that came meanwhile at this position need no build of their own. */
			for (struct bal_wait **at = &c->pending[kind]; *at;) {
				struct bal_wait *w = *at;
				if (w->min_pos > b->position) {
					at = &w->next;
					continue;
				}
				*at = w->next;
				deliver_locked(c, w, b);
			}
		}
		pthread_mutex_unlock(&c->lock);
		bal_body_release(old);
		bal_body_release(b);
		pthread_mutex_lock(&c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

int bal_cache_new(struct bal_daemon *d, struct bal_cache **out)
{
	struct bal_cache *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->d = d;
	c->scratch = malloc(bal_layout_nslots(d->layout) * sizeof(*c->scratch));
	if (!c->scratch) {
		free(c);
		return -ENOMEM;
	}
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	int err = -pthread_create(&c->thread, NULL, run, c);
	if (err) {
		pthread_cond_destroy(&c->cond);
		pthread_mutex_destroy(&c->lock);
		free(c->scratch);
		free(c);
		return err;
	}
	pthread_setname_np(c->thread, "ballotd-reader");
	*out = c;
	return 0;
}

void bal_cache_free(struct bal_cache *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	c->stop = true;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->thread, NULL);
	/* Every loop has ended, so no wait is left to answer. */
	for (unsigned k = 0; k <= BAL_ANSWER_KINDS; k++)
		bal_require(!c->pending[k]);
	for (unsigned k = 0; k < BAL_ANSWER_KINDS; k++)
		bal_body_release(c->cur[k]);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c->scratch);
	free(c);
}
