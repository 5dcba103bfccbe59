/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Module-tagged log lines on stderr ("<time> <level> <module>: <text>").
 * journald adds its own metadata under systemd. Per-request rejections go
 * through bal_log_reject(), which is rate-limited so that a flood of bad
 * input cannot flood the log.
 *
 * Threads: any (one fprintf per line).
 */
#ifndef BAL_DAEMON_LOG_H
#define BAL_DAEMON_LOG_H

enum bal_log_level { BAL_LOG_DEBUG = 0, BAL_LOG_INFO, BAL_LOG_WARN, BAL_LOG_ERROR };

/** Lines below this level are dropped. Set once at startup. */
extern enum bal_log_level bal_log_min;

/** Logs one line at `lvl` for `module` (printf-style), unless `lvl` is below bal_log_min. */
void bal_log(enum bal_log_level lvl, const char *module, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/** An INFO line printed whatever the log level: lifecycle lines that scripts
 * wait for ("listening on HOST:PORT", "stopped cleanly"). */
void bal_log_always(const char *module, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Logs a rejected request at INFO, at most `BAL_LOG_REJECT_PER_S` lines a
 * second; the number of suppressed lines is logged when the window ends. */
void bal_log_reject(const char *module, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define BAL_LOG_REJECT_PER_S 20

#endif
