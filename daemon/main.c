/*
 * ballotd: configuration, election definition, storage, recovery, committer,
 * I/O workers, then the signal loop; teardown in reverse. Reads as a table of
 * contents: each step lives in its own module.
 */
#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "proto/codec.h"
#include "daemon/commit.h"
#include "daemon/config.h"
#include "daemon/worker.h"
#include "defn/defn.h"
#include "daemon/listen.h"
#include "daemon/log.h"
#include "daemon/loop.h"
#include "storage/storage.h"

/* The demo election (data/kz2023.json), linked in by embedded.S. */
extern const char bal_embedded_defn[];
extern const char bal_embedded_defn_end[];

uint64_t bal_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t bal_now_ms(void)
{
	return bal_now_ns() / 1000000ull;
}

static int load_definition(struct bal_daemon *d)
{
	char why[512];
	int err;
	if (d->cfg.definition)
		err = bal_defn_load(d->cfg.definition, &d->defn, why, sizeof(why));
	else
		err = bal_defn_parse(bal_embedded_defn, (size_t)(bal_embedded_defn_end - bal_embedded_defn), &d->defn,
		                     why, sizeof(why));
	if (err) {
		bal_log(BAL_LOG_ERROR, "main", "definition %s: %s",
		        d->cfg.definition ? d->cfg.definition : "(embedded)", why);
		return err;
	}
	d->layout = bal_layout_new(d->defn);
	if (!d->layout) {
		bal_log(BAL_LOG_ERROR, "main", "out of memory building the counter layout");
		return -ENOMEM;
	}
	char hex[65];
	bal_defn_hash_hex(d->defn, hex);
	bal_log(BAL_LOG_INFO, "main",
	        "election %s (%s): %u precincts, %u districts, %u contests, %zu counters, "
	        "definition sha256 %s",
	        d->defn->election_id, d->cfg.definition ? d->cfg.definition : "embedded", d->defn->nprecincts,
	        d->defn->ndistricts, d->defn->ncontests, bal_layout_nslots(d->layout), hex);
	return 0;
}

static int open_storage(struct bal_daemon *d)
{
	struct bal_store_opts o = {.dir = d->cfg.data_dir, .map_size = d->cfg.map_size};
	memcpy(o.hash, d->defn->hash, sizeof(o.hash));
	/* Storage names precincts by the definition's dense index, in id order. */
	uint32_t *ids = malloc(d->defn->nprecincts * sizeof(*ids));
	if (!ids) {
		bal_log(BAL_LOG_ERROR, "main", "out of memory listing %u precincts", d->defn->nprecincts);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < d->defn->nprecincts; i++)
		ids[i] = d->defn->precincts[i].id;
	o.precinct_ids = ids;
	o.nprecincts = d->defn->nprecincts;
	char why[512] = "";
	int err = bal_store_open(&o, &d->store, why, sizeof(why));
	free(ids);
	if (err)
		bal_log(BAL_LOG_ERROR, "main", "cannot open data directory %s: %s", d->cfg.data_dir, why);
	return err;
}

/* Recovery: slices into the counters, the journal entries they do not cover, then every total rebuilt. */
struct replay {
	struct bal_daemon *d;
	uint64_t *ctr;
	struct bal_arena arena;
	struct bal_delta delta;
	char why[256];
};

static int replay_slice(void *arg, unsigned k, uint32_t first, uint32_t end, const uint8_t *blob, size_t len)
{
	struct replay *r = arg;
	(void)k;
	if (len % sizeof(uint64_t))
		return BAL_ECORRUPT;
	return bal_layout_slice_unpack(r->d->layout, r->ctr, first, end, blob, len / sizeof(uint64_t));
}

static int replay_one(void *arg, uint64_t position, uint32_t precinct, const uint8_t *bytes, size_t len)
{
	struct replay *r = arg;
	struct bal_batch b;
	bal_arena_reset(&r->arena);
	r->delta.n = 0;
	int err = bal_codec_decode(bytes, len, &r->arena, &b, r->why, sizeof(r->why));
	if (!err)
		err = bal_tally_fold(r->d->defn, r->d->layout, &b, &r->delta, r->why, sizeof(r->why));
	if (!err && r->delta.precinct != precinct) {
		snprintf(r->why, sizeof(r->why), "the batch is of precinct %u, its journal record names another",
		         b.precinct_id);
		err = BAL_ECORRUPT;
	}
	if (err) {
		bal_log(BAL_LOG_ERROR, "recovery", "journal position %llu no longer folds: %s",
		        (unsigned long long)position, r->why);
		return BAL_ECORRUPT;
	}
	/* No overflow check here: slices come from different positions, so until
	 * the last entry the district and national slots are the sums of
	 * precinct states the live counters never held together (a protocol can
	 * lower a precinct's part), and may exceed anything they held. Each
	 * precinct's own slots replay exactly as they were applied live, and
	 * every total is recomputed from them at the end (recover()). */
	bal_tally_apply(r->d->layout, r->ctr, &r->delta);
	return 0;
}

static int recover(struct bal_daemon *d, uint64_t **ctr_out, uint64_t *position)
{
	static const struct bal_recovery_ops ops = {
	        .slice = replay_slice,
	        .entry = replay_one,
	};
	size_t n = bal_layout_nslots(d->layout);
	struct replay r = {.d = d};
	int err = -ENOMEM;
	r.ctr = calloc(n, sizeof(uint64_t));
	r.delta.cap = (uint32_t)bal_layout_delta_max(d->layout);
	r.delta.e = calloc(r.delta.cap, sizeof(*r.delta.e));
	if (!r.ctr || !r.delta.e)
		goto out;
	bal_arena_init(&r.arena, 0);
	struct bal_recovery_report rep;
	char why[512] = "";
	err = bal_store_recover(d->store, &ops, &r, &rep, why, sizeof(why));
	bal_arena_deinit(&r.arena);
	if (!err && bal_tally_rebuild(d->layout, r.ctr) != 0) {
		snprintf(why, sizeof(why),
		         "the journal folds to totals beyond 64 bits, which no live check lets through");
		err = BAL_ECORRUPT;
	}
	if (err) {
		bal_log(BAL_LOG_ERROR, "recovery", "failed: %s", why[0] ? why : bal_strerror(err));
		goto out;
	}
	d->recovery_ms = rep.ms;
	bal_log(BAL_LOG_INFO, "recovery",
	        "position %llu: snapshot at %llu + %llu journal entries replayed in %.1f ms (%llu read; %u snapshot "
	        "slices)",
	        (unsigned long long)rep.position, (unsigned long long)rep.snapshot_position,
	        (unsigned long long)rep.replayed, rep.ms, (unsigned long long)rep.scanned, bal_store_slices(d->store));
	*position = rep.position;
	*ctr_out = r.ctr;
	r.ctr = NULL;
out:
	free(r.ctr);
	free(r.delta.e);
	return err;
}

static int start_committer(struct bal_daemon *d, const uint64_t *ctr, uint64_t position)
{
	size_t n = bal_layout_nslots(d->layout);
	int err = bal_pub_init(&d->pub, n);
	if (err)
		return err;
	bal_pub_store(&d->pub, ctr, position);
	return bal_committer_start(d, position, &d->committer);
}

static int start_workers(struct bal_daemon *d)
{
	unsigned n = d->cfg.threads;
	int fds[256];
	char why[256];
	d->workers = calloc(n, sizeof(*d->workers));
	if (!d->workers)
		return -ENOMEM;
	int err = bal_listen_open(d->cfg.host, d->cfg.port, n, fds, &d->bound_port, why, sizeof(why));
	if (err) {
		bal_log(BAL_LOG_ERROR, "main", "cannot listen on %s:%u: %s", d->cfg.host, d->cfg.port, why);
		return err;
	}
	for (unsigned i = 0; i < n; i++) {
		err = bal_worker_new(d, i, fds[i], &d->workers[i]);
		if (err) {
			bal_log(BAL_LOG_ERROR, "main", "worker %u: %s", i, uv_strerror(err));
			for (unsigned j = i; j < n; j++)
				close(fds[j]);
			return err;
		}
	}
	for (unsigned i = 0; i < n; i++) {
		err = bal_worker_start(d->workers[i]);
		if (err) {
			bal_log(BAL_LOG_ERROR, "main", "worker %u: cannot start its thread: %s", i, uv_strerror(err));
			return err;
		}
		d->nstarted++;
	}
	bool v6 = strchr(d->cfg.host, ':') != NULL;
	bal_log_always("main", "listening on %s%s%s:%u", v6 ? "[" : "", d->cfg.host, v6 ? "]" : "", d->bound_port);
	return 0;
}

/* Stops and frees every worker; only started ones have a thread to join. */
static void stop_workers(struct bal_daemon *d)
{
	if (!d->workers)
		return;
	for (unsigned i = 0; i < d->nstarted; i++)
		bal_worker_signal_stop(d->workers[i], true);
	for (unsigned i = 0; i < d->cfg.threads; i++) {
		if (i < d->nstarted)
			bal_worker_join_free(d->workers[i]);
		else
			bal_worker_free_unstarted(d->workers[i]);
	}
	free(d->workers);
	d->workers = NULL;
}

int main(int argc, char **argv)
{
	static struct bal_daemon d;
	uint64_t *ctr = NULL, position = 0;
	int err;

	bal_config_defaults(&d.cfg);
	if (bal_config_parse(&d.cfg, argc, argv))
		return 2;
	signal(SIGPIPE, SIG_IGN);
	if (sodium_init() < 0) {
		bal_log(BAL_LOG_ERROR, "main", "libsodium failed to initialise");
		return 1;
	}
	d.started_unix_ms = (uint64_t)time(NULL) * 1000;

	err = load_definition(&d);
	if (err)
		goto fail_defn;
	err = open_storage(&d);
	if (err)
		goto fail_defn;
	err = recover(&d, &ctr, &position);
	if (err)
		goto fail_store;
	err = start_committer(&d, ctr, position);
	free(ctr);
	if (err)
		goto fail_pub;
	err = start_workers(&d);
	if (err)
		goto fail_workers;
	sd_notifyf(0, "READY=1\nSTATUS=listening on %s:%u, position %llu", d.cfg.host, d.bound_port,
	           (unsigned long long)position);

	err = bal_loop_run(&d);

	stop_workers(&d);
	bal_committer_stop(d.committer);
	bal_pub_deinit(&d.pub);
	bal_store_close(d.store);
	bal_layout_free(d.layout);
	bal_defn_free(d.defn);
	bal_log_always("main", "stopped cleanly");
	return err ? 1 : 0;

fail_workers:
	stop_workers(&d);
	bal_committer_stop(d.committer);
fail_pub:
	bal_pub_deinit(&d.pub);
fail_store:
	bal_store_close(d.store);
fail_defn:
	bal_layout_free(d.layout);
	bal_defn_free(d.defn);
	return 1;
}
