/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Logging. No dependency beyond libc and pthreads.
 */
#include "daemon/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

enum bal_log_level bal_log_min = BAL_LOG_INFO;

static const char *level_name[] = {"debug", "info", "warn", "error"};

static void vlog(enum bal_log_level lvl, const char *module, const char *fmt, va_list ap)
{
	char msg[1024];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s: %s\n", tm.tm_year + 1900, tm.tm_mon + 1,
	        tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, level_name[lvl], module, msg);
}

void bal_log(enum bal_log_level lvl, const char *module, const char *fmt, ...)
{
	if (lvl < bal_log_min)
		return;
	va_list ap;
	va_start(ap, fmt);
	vlog(lvl, module, fmt, ap);
	va_end(ap);
}

void bal_log_always(const char *module, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(BAL_LOG_INFO, module, fmt, ap);
	va_end(ap);
}

static pthread_mutex_t reject_lock = PTHREAD_MUTEX_INITIALIZER;
static time_t reject_window;
static unsigned reject_lines;
static unsigned long reject_suppressed;

void bal_log_reject(const char *module, const char *fmt, ...)
{
	if (BAL_LOG_INFO < bal_log_min)
		return;
	time_t now = time(NULL);
	unsigned long suppressed = 0;
	int emit;
	pthread_mutex_lock(&reject_lock);
	if (now != reject_window) {
		suppressed = reject_suppressed;
		reject_suppressed = 0;
		reject_lines = 0;
		reject_window = now;
	}
	emit = reject_lines < BAL_LOG_REJECT_PER_S;
	if (emit)
		reject_lines++;
	else
		reject_suppressed++;
	pthread_mutex_unlock(&reject_lock);
	if (suppressed)
		bal_log(BAL_LOG_INFO, module, "%lu rejection lines suppressed in the last second", suppressed);
	if (!emit)
		return;
	va_list ap;
	va_start(ap, fmt);
	vlog(BAL_LOG_INFO, module, fmt, ap);
	va_end(ap);
}
