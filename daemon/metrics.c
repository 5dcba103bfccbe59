/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Prometheus text exposition (see metrics.h): one counter family per
 * outcome, the per-worker response counts summed, and gauges for the queue,
 * the journal and the LMDB map.
 */
#include "daemon/metrics.h"

#include "daemon/cache.h"
#include "daemon/worker.h"
#include "storage/storage.h"

#define U64(x) ((unsigned long long)(x))

void bal_metrics_write(struct bal_daemon *d, struct bal_text *b)
{
	struct bal_metrics *m = &d->metrics;
	struct bal_store_info info = {0};
	bal_store_info(d->store, &info);
#define COUNTER(name, help, val)                                                                                      \
	bal_text_printf(b,                                                                                            \
	                "# HELP ballotd_" name " " help "\n# TYPE ballotd_" name " counter\nballotd_" name " %llu\n", \
	                U64(val))
#define GAUGE(name, help, val)                                                                                         \
	bal_text_printf(b, "# HELP ballotd_" name " " help "\n# TYPE ballotd_" name " gauge\nballotd_" name " %llu\n", \
	                U64(val))
	bal_text_printf(
	        b,
	        "# HELP ballotd_batches_total Batches answered, by outcome.\n# TYPE ballotd_batches_total counter\n");
	bal_text_printf(b, "ballotd_batches_total{result=\"accepted\"} %llu\n",
	                U64(BAL_METRIC_GET(m->batches_accepted)));
	bal_text_printf(b, "ballotd_batches_total{result=\"duplicate\"} %llu\n",
	                U64(BAL_METRIC_GET(m->batches_duplicate)));
	bal_text_printf(b, "ballotd_batches_total{result=\"conflict\"} %llu\n",
	                U64(BAL_METRIC_GET(m->batches_conflict)));
	bal_text_printf(b, "ballotd_batches_total{result=\"rejected\"} %llu\n",
	                U64(BAL_METRIC_GET(m->batches_rejected)));
	bal_text_printf(b, "ballotd_batches_total{result=\"unstored\"} %llu\n",
	                U64(BAL_METRIC_GET(m->batches_unstored)));
	bal_text_printf(b, "ballotd_batches_total{result=\"over_quota\"} %llu\n",
	                U64(BAL_METRIC_GET(m->batches_over_quota)));
	bal_text_printf(b, "# HELP ballotd_amendments_total Amendments answered, by outcome.\n"
	                   "# TYPE ballotd_amendments_total counter\n");
	bal_text_printf(b, "ballotd_amendments_total{result=\"accepted\"} %llu\n",
	                U64(BAL_METRIC_GET(m->amendments_accepted)));
	bal_text_printf(b, "ballotd_amendments_total{result=\"duplicate\"} %llu\n",
	                U64(BAL_METRIC_GET(m->amendments_duplicate)));
	bal_text_printf(b, "ballotd_amendments_total{result=\"rejected\"} %llu\n",
	                U64(BAL_METRIC_GET(m->amendments_rejected)));
	bal_text_printf(b, "ballotd_amendments_total{result=\"unstored\"} %llu\n",
	                U64(BAL_METRIC_GET(m->amendments_unstored)));
	bal_text_printf(b, "# HELP ballotd_http_responses_total HTTP responses, by status class.\n"
	                   "# TYPE ballotd_http_responses_total counter\n");
	for (int i = 1; i < 6; i++) {
		uint64_t n = 0;
		for (unsigned k = 0; k < d->cfg.threads; k++)
			n += bal_worker_http_count(d->workers[k], i);
		bal_text_printf(b, "ballotd_http_responses_total{code=\"%dxx\"} %llu\n", i, U64(n));
	}
	COUNTER("ballots_accepted_total", "Cast-vote records in accepted batches.",
	        BAL_METRIC_GET(m->ballots_accepted));
	COUNTER("commits_total", "Durable LMDB write transactions.", BAL_METRIC_GET(m->commits));
	COUNTER("commit_failures_total", "Failed write transactions (nothing acked).",
	        BAL_METRIC_GET(m->commit_failures));
	COUNTER("commit_seconds_total_ns", "Nanoseconds spent in commit+sync.", BAL_METRIC_GET(m->commit_ns_total));
	COUNTER("group_batches_total", "Batches journaled through group commits.",
	        BAL_METRIC_GET(m->group_batches_total));
	COUNTER("snapshots_total", "Counter snapshot slices written.", BAL_METRIC_GET(m->snapshots));
	COUNTER("connections_total", "Connections accepted.", BAL_METRIC_GET(m->connections_total));
	COUNTER("connections_refused_total", "Connections refused over --max-connections.",
	        BAL_METRIC_GET(m->connections_refused));
	bal_text_printf(b, "# HELP ballotd_connections_closed_total Connections the daemon closed, by reason.\n"
	                   "# TYPE ballotd_connections_closed_total counter\n");
	static const char *const reasons[BAL_CLOSE_REASONS] = {
	        [BAL_CLOSE_FAILURES] = "failures",
	        [BAL_CLOSE_SEND_TIMEOUT] = "send_timeout",
	        [BAL_CLOSE_MAX_OUTPUT] = "max_output",
	        [BAL_CLOSE_REQUEST_TIMEOUT] = "request_timeout",
	};
	for (int i = 0; i < BAL_CLOSE_REASONS; i++)
		bal_text_printf(b, "ballotd_connections_closed_total{reason=\"%s\"} %llu\n", reasons[i],
		                U64(BAL_METRIC_GET(m->connections_closed[i])));
	COUNTER("connection_memory_pauses_total", "Times a connection was read no further: --max-connection-memory.",
	        BAL_METRIC_GET(m->connection_memory_pauses));
	bal_text_printf(b, "# HELP ballotd_limit_refusals_total Requests answered 503 by a memory limit.\n"
	                   "# TYPE ballotd_limit_refusals_total counter\n");
	bal_text_printf(b, "ballotd_limit_refusals_total{limit=\"client_memory\"} %llu\n",
	                U64(BAL_METRIC_GET(m->client_memory_refused)));
	bal_text_printf(b, "ballotd_limit_refusals_total{limit=\"queue_bytes\"} %llu\n",
	                U64(BAL_METRIC_GET(m->queue_bytes_refused)));
	COUNTER("queries_total", "Counter reads by queries.", BAL_METRIC_GET(m->queries));
	bal_text_printf(b, "# HELP ballotd_answers_total Shared answers asked for, by answer and by whether the cache "
	                   "held them at the position asked.\n# TYPE ballotd_answers_total counter\n");
	for (int k = 0; k < BAL_ANSWER_KINDS; k++) {
		bal_text_printf(b, "ballotd_answers_total{answer=\"%s\",cache=\"hit\"} %llu\n", bal_answer_name(k),
		                U64(BAL_METRIC_GET(m->answer_hits[k])));
		bal_text_printf(b, "ballotd_answers_total{answer=\"%s\",cache=\"miss\"} %llu\n", bal_answer_name(k),
		                U64(BAL_METRIC_GET(m->answer_misses[k])));
	}
	bal_text_printf(b, "# HELP ballotd_answer_builds_total Answers built, by answer.\n"
	                   "# TYPE ballotd_answer_builds_total counter\n");
	for (int k = 0; k <= BAL_ANSWER_KINDS; k++)
		bal_text_printf(b, "ballotd_answer_builds_total{answer=\"%s\"} %llu\n", bal_answer_name(k),
		                U64(BAL_METRIC_GET(m->answer_builds[k])));
	COUNTER("heavy_queries_refused_total", "Requests answered 503: --max-heavy-queries waiting already.",
	        BAL_METRIC_GET(m->heavy_refused));
	GAUGE("heavy_queries_waiting", "Requests waiting for a heavy answer being built.",
	      d->cache ? bal_cache_waiting(d->cache) : 0);
	GAUGE("connections_open", "Open connections.", BAL_METRIC_GET(m->connections_open));
	GAUGE("commit_queue_depth", "Batches waiting for commit.", __atomic_load_n(&d->inflight, __ATOMIC_RELAXED));
	GAUGE("commit_queue_bytes", "Bytes of the batches waiting for commit.",
	      __atomic_load_n(&d->queued_bytes, __ATOMIC_RELAXED));
	GAUGE("client_memory_bytes", "Bytes held for connections: request bodies, their output, held input.",
	      __atomic_load_n(&d->client_memory, __ATOMIC_RELAXED));
	GAUGE("journal_position", "Last committed journal position.", info.position);
	GAUGE("snapshot_position", "Oldest snapshot slice position: a restart replays what follows it.",
	      info.snapshot_position);
	GAUGE("map_used_bytes", "LMDB map bytes in use.", info.map_used);
	GAUGE("map_size_bytes", "LMDB map size.", info.map_size);
	GAUGE("degraded", "1 while journal commits fail.", __atomic_load_n(&d->degraded_errno, __ATOMIC_RELAXED) != 0);
#undef COUNTER
#undef GAUGE
}
