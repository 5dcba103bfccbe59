/* SPDX-License-Identifier: Apache-2.0 */
/*
 * daemon/cache.c: shared answers, their cache and the reader thread, on a
 * real loop with a builder of the test's own. The builder reports the
 * position the test sets and can be held until the test lets it go, so a
 * test decides which requests arrive while a build runs. Each test runs the
 * loop until every wait's handle is closed and asserts that it then closes.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "daemon/cache.h"
#include "daemon/config.h"
#include "defn/defn.h"

#define MAX_DONE 16

struct done {
	unsigned id;
	struct bal_body *body;
	uint64_t param; /* the first word of the params, after the build */
};

static struct {
	struct bal_daemon d;
	struct bal_cache *cache;
	uv_loop_t loop;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned started; /* builds begun */
	bool hold;        /* builds wait while set */
	uint64_t position;
	struct done done[MAX_DONE];
	unsigned ndone;
	unsigned ids[MAX_DONE];
} fx;

/* Reports fx.position as it is when the build begins, then waits while
 * fx.hold; adds 1000 to its parameter. */
static int build(struct bal_daemon *d, uint64_t *scratch, void *params, struct bal_text *out, uint64_t *position)
{
	(void)d;
	scratch[0] = 0; /* the reader's scratch is the layout's size */
	pthread_mutex_lock(&fx.lock);
	*position = fx.position; /* as a real build copies the counters first */
	fx.started++;
	pthread_cond_broadcast(&fx.cond);
	while (fx.hold)
		pthread_cond_wait(&fx.cond, &fx.lock);
	pthread_mutex_unlock(&fx.lock);
	uint64_t *param = params;
	*param += 1000;
	bal_text_printf(out, "answer at %llu", (unsigned long long)*position);
	return 0;
}

static void on_done(void *arg, struct bal_body *body, void *params)
{
	cr_assert_lt(fx.ndone, MAX_DONE);
	uint64_t param;
	memcpy(&param, params, sizeof(param));
	fx.done[fx.ndone++] = (struct done){.id = *(unsigned *)arg, .body = body, .param = param};
}

static void setup(void)
{
	char why[512];
	bal_config_defaults(&fx.d.cfg);
	fx.d.cfg.max_heavy_queries = 3;
	cr_assert_eq(bal_defn_load(BAL_TEST_SOURCE_DIR "/tests/data/small.json", &fx.d.defn, why, sizeof(why)), 0, "%s",
	             why);
	fx.d.layout = bal_layout_new(fx.d.defn);
	cr_assert(fx.d.layout);
	pthread_mutex_init(&fx.lock, NULL);
	pthread_cond_init(&fx.cond, NULL);
	cr_assert_eq(uv_loop_init(&fx.loop), 0);
	cr_assert_eq(bal_cache_new(&fx.d, &fx.cache), 0);
	for (unsigned i = 0; i < MAX_DONE; i++)
		fx.ids[i] = i;
}

static void teardown(void)
{
	for (unsigned i = 0; i < fx.ndone; i++)
		bal_body_release(fx.done[i].body);
	bal_cache_free(fx.cache);
	cr_expect_eq(uv_loop_close(&fx.loop), 0, "every wait's handle is closed");
	bal_layout_free(fx.d.layout);
	bal_defn_free(fx.d.defn);
}

TestSuite(cache, .init = setup, .fini = teardown, .timeout = 20);

static void set_position(uint64_t position)
{
	pthread_mutex_lock(&fx.lock);
	fx.position = position;
	pthread_mutex_unlock(&fx.lock);
}

static void hold(bool on)
{
	pthread_mutex_lock(&fx.lock);
	fx.hold = on;
	pthread_cond_broadcast(&fx.cond);
	pthread_mutex_unlock(&fx.lock);
}

/* Blocks until `n` builds have begun. */
static void await_started(unsigned n)
{
	pthread_mutex_lock(&fx.lock);
	while (fx.started < n)
		pthread_cond_wait(&fx.cond, &fx.lock);
	pthread_mutex_unlock(&fx.lock);
}

static enum bal_cache_outcome ask(enum bal_answer kind, uint64_t min_pos, unsigned id, uint64_t param,
                                  struct bal_body **body, struct bal_wait **wait)
{
	return bal_cache_answer(fx.cache, &fx.loop, kind, min_pos, build, &param, sizeof(param), on_done, &fx.ids[id],
	                        body, wait);
}

static struct bal_wait *ask_wait(enum bal_answer kind, uint64_t min_pos, unsigned id)
{
	struct bal_body *b;
	struct bal_wait *w;
	cr_assert_eq(ask(kind, min_pos, id, 0, &b, &w), BAL_CACHE_WAIT);
	cr_assert(w && !b);
	return w;
}

static uint64_t builds(enum bal_answer kind)
{
	return BAL_METRIC_GET(fx.d.metrics.answer_builds[kind]);
}

/* Requests asking while a build runs at their position share it: one build
 * for all of them, and later requests at that position are hits. */
Test(cache, waits_at_one_position_share_one_build)
{
	set_position(7);
	hold(true);
	ask_wait(BAL_ANSWER_RESULTS_CSV, 7, 0);
	await_started(1);
	ask_wait(BAL_ANSWER_RESULTS_CSV, 7, 1);
	ask_wait(BAL_ANSWER_RESULTS_CSV, 5, 2);
	cr_assert_eq(bal_cache_waiting(fx.cache), 3);
	hold(false);
	cr_assert_eq(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);

	cr_assert_eq(fx.ndone, 3);
	cr_assert_eq(builds(BAL_ANSWER_RESULTS_CSV), 1, "one build served every wait");
	cr_assert_eq(bal_cache_waiting(fx.cache), 0);
	for (unsigned i = 0; i < 3; i++) {
		cr_assert_eq(fx.done[i].body, fx.done[0].body, "one shared body");
		cr_assert_eq(fx.done[i].body->position, 7);
	}
	cr_assert_eq(fx.done[0].body->len, strlen("answer at 7"));
	cr_assert_eq(memcmp(fx.done[0].body->data, "answer at 7", fx.done[0].body->len), 0);
	cr_assert_eq(BAL_METRIC_GET(fx.d.metrics.answer_misses[BAL_ANSWER_RESULTS_CSV]), 3);

	struct bal_body *b;
	struct bal_wait *w;
	cr_assert_eq(ask(BAL_ANSWER_RESULTS_CSV, 7, 3, 0, &b, &w), BAL_CACHE_HIT);
	cr_assert_eq(b, fx.done[0].body);
	cr_assert_eq(BAL_METRIC_GET(fx.d.metrics.answer_hits[BAL_ANSWER_RESULTS_CSV]), 1);
	bal_body_release(b);
	cr_assert_eq(builds(BAL_ANSWER_RESULTS_CSV), 1);
}

/* A request at a position beyond the build running waits for a build of
 * its own, which replaces the cached answer; the older body lives on while
 * a response still holds it. */
Test(cache, a_newer_position_builds_again_and_replaces_the_answer)
{
	set_position(3);
	hold(true);
	ask_wait(BAL_ANSWER_RESULTS_CSV, 3, 0);
	await_started(1);
	set_position(9);
	ask_wait(BAL_ANSWER_RESULTS_CSV, 9, 1);
	hold(false);
	cr_assert_eq(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);

	cr_assert_eq(fx.ndone, 2);
	cr_assert_eq(builds(BAL_ANSWER_RESULTS_CSV), 2);
	struct bal_body *old = fx.done[0].body, *cur = fx.done[1].body;
	cr_assert_eq(old->position, 3);
	cr_assert_eq(cur->position, 9);
	cr_assert_eq(__atomic_load_n(&old->refs, __ATOMIC_RELAXED), 1, "the cache let go of the older answer");
	cr_assert_eq(__atomic_load_n(&cur->refs, __ATOMIC_RELAXED), 2, "the cache and this response hold it");

	struct bal_body *b = bal_cache_get(fx.cache, BAL_ANSWER_RESULTS_CSV, 4);
	cr_assert_eq(b, cur);
	bal_body_release(b);
	cr_assert_null(bal_cache_get(fx.cache, BAL_ANSWER_RESULTS_CSV, 10));
	cr_assert_null(bal_cache_get(fx.cache, BAL_ANSWER_SNAPSHOT, 0), "each kind has its own answer");
}

/* An answer built elsewhere replaces the cached one only if it is further along. */
Test(cache, put_keeps_the_answer_furthest_along)
{
	struct bal_body *a = bal_body_new(strdup("a"), 1, 5), *b = bal_body_new(strdup("b"), 1, 4);
	cr_assert(a && b);
	bal_cache_put(fx.cache, BAL_ANSWER_SNAPSHOT, a);
	bal_cache_put(fx.cache, BAL_ANSWER_SNAPSHOT, b);
	struct bal_body *got = bal_cache_get(fx.cache, BAL_ANSWER_SNAPSHOT, 5);
	cr_assert_eq(got, a);
	bal_body_release(got);
	bal_body_release(a);
	bal_body_release(b);
}

/* Beyond cfg.max_heavy_queries waiting requests the next is refused, and
 * counted; a hit is never refused. */
Test(cache, beyond_max_heavy_queries_waiting_a_request_is_refused)
{
	set_position(2);
	hold(true);
	for (unsigned i = 0; i < 3; i++)
		ask_wait(BAL_ANSWER_RESULTS_CSV, 2, i);
	struct bal_body *b;
	struct bal_wait *w;
	cr_assert_eq(ask(BAL_ANSWER_KINDS, 0, 3, 0, &b, &w), BAL_CACHE_REFUSED);
	cr_assert(!b && !w);
	cr_assert_eq(BAL_METRIC_GET(fx.d.metrics.heavy_refused), 1);
	hold(false);
	cr_assert_eq(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
	cr_assert_eq(fx.ndone, 3);
	cr_assert_eq(ask(BAL_ANSWER_RESULTS_CSV, 2, 3, 0, &b, &w), BAL_CACHE_HIT);
	bal_body_release(b);
}

/* A cancelled wait is never answered, whether the reader had taken it
 * (its handle closes when the build is done) or not (at once); the build
 * still fills the cache. */
Test(cache, a_cancelled_wait_is_not_answered)
{
	set_position(4);
	hold(true);
	struct bal_wait *taken = ask_wait(BAL_ANSWER_RESULTS_CSV, 4, 0);
	await_started(1);
	struct bal_wait *pending = ask_wait(BAL_ANSWER_SEATS, 4, 1);
	bal_cache_cancel(taken);
	bal_cache_cancel(pending);
	cr_assert_eq(bal_cache_waiting(fx.cache), 1, "the taken one until its build is done");
	hold(false);
	cr_assert_eq(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
	cr_assert_eq(fx.ndone, 0);
	cr_assert_eq(bal_cache_waiting(fx.cache), 0);
	cr_assert_eq(builds(BAL_ANSWER_RESULTS_CSV), 1);
	cr_assert_eq(builds(BAL_ANSWER_SEATS), 0, "nobody waited for it any more");
	struct bal_body *b = bal_cache_get(fx.cache, BAL_ANSWER_RESULTS_CSV, 4);
	cr_assert(b);
	bal_body_release(b);
}

/* Private answers are built one per request, with the request's own
 * parameters, which the build may write for the request; never cached. */
Test(cache, private_answers_are_built_per_request)
{
	set_position(1);
	struct bal_body *b;
	struct bal_wait *w;
	cr_assert_eq(ask(BAL_ANSWER_KINDS, 0, 0, 1, &b, &w), BAL_CACHE_WAIT);
	cr_assert_eq(ask(BAL_ANSWER_KINDS, 0, 1, 2, &b, &w), BAL_CACHE_WAIT);
	cr_assert_eq(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
	cr_assert_eq(fx.ndone, 2);
	cr_assert_eq(builds(BAL_ANSWER_KINDS), 2);
	cr_assert_neq(fx.done[0].body, fx.done[1].body);
	for (unsigned i = 0; i < 2; i++)
		cr_assert_eq(fx.done[i].param, 1000 + 1 + fx.done[i].id, "done %u", i);
}
