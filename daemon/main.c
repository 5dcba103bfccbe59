/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ballotd: configuration, election definition, storage, recovery, committer,
 * I/O workers, then the signal loop; teardown in reverse. Reads as a table of
 * contents: each step lives in its own module.
 */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "daemon/cache.h"
#include "daemon/commit.h"
#include "daemon/config.h"
#include "daemon/listen.h"
#include "daemon/log.h"
#include "daemon/loop.h"
#include "daemon/recover.h"
#include "daemon/tlog.h"
#include "daemon/worker.h"
#include "defn/defn.h"
#include "storage/storage.h"

/* The demo election (data/kz2023.json), linked in by embedded.S. */
extern const char bal_embedded_defn[];
extern const char bal_embedded_defn_end[];

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
	uint32_t keyless = 0;
	for (uint32_t i = 0; i < d->defn->nprecincts; i++)
		keyless += !d->defn->precincts[i].has_key;
	d->keyless = keyless;
	if (keyless)
		bal_log(BAL_LOG_WARN, "main",
		        "%u of %u precincts have no public key: anyone can upload their batches (with an empty "
		        "signature)",
		        keyless, d->defn->nprecincts);
	if (!d->cfg.auth)
		bal_log(BAL_LOG_WARN, "main",
		        "--no-auth: signatures are not verified; anyone can upload batches for any precinct");
	if (d->cfg.demo)
		bal_log(BAL_LOG_WARN, "main",
		        "--demo: the embedded demo election, whose keys derive from a public seed; never for a real "
		        "election");
	return 0;
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
	bal_config_derive(&d.cfg, d.defn);
	if (bal_tlog_load_key(&d) != 0) {
		err = -EINVAL;
		goto fail_defn;
	}
	/* Request bodies and answers beyond 128 KiB are mapped and unmapped, so
	 * that what a client made the daemon hold goes back to the system with
	 * it instead of staying in a malloc arena (the threshold no longer rises
	 * with the sizes freed). */
	mallopt(M_MMAP_THRESHOLD, 128 << 10);
	err = bal_daemon_open_store(&d);
	if (err)
		goto fail_defn;
	err = bal_recover(&d, &ctr, &position);
	if (err)
		goto fail_store;
	err = bal_daemon_start_committer(&d, ctr, position);
	free(ctr);
	if (err)
		goto fail_pub;
	err = bal_cache_new(&d, &d.cache);
	if (err) {
		bal_log(BAL_LOG_ERROR, "main", "cannot start the reader thread: %s", bal_strerror(err));
		goto fail_cache;
	}
	err = start_workers(&d);
	if (err)
		goto fail_workers;
	sd_notifyf(0, "READY=1\nSTATUS=listening on %s:%u, position %llu", d.cfg.host, d.bound_port,
	           (unsigned long long)position);

	err = bal_loop_run(&d);

	stop_workers(&d);
	bal_cache_free(d.cache);
	bal_committer_stop(d.committer);
	bal_pub_deinit(&d.pub);
	bal_daemon_close_store(&d);
	bal_layout_free(d.layout);
	bal_defn_free(d.defn);
	bal_log_always("main", "stopped cleanly");
	return err ? 1 : 0;

fail_workers:
	stop_workers(&d);
	bal_cache_free(d.cache);
fail_cache:
	bal_committer_stop(d.committer);
fail_pub:
	bal_pub_deinit(&d.pub);
fail_store:
	bal_daemon_close_store(&d);
fail_defn:
	bal_layout_free(d.layout);
	bal_defn_free(d.defn);
	return 1;
}
