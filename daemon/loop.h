/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Signals and graceful drain: the main thread's own loop while the workers
 * serve.
 *
 * Threads: the main thread.
 */
#ifndef BAL_DAEMON_LOOP_H
#define BAL_DAEMON_LOOP_H

#include "daemon/daemon.h"

/** Runs until SIGTERM/SIGINT has drained the workers; they are then stopped
 * (not yet joined). Returns 0 or a libuv error. */
int bal_loop_run(struct bal_daemon *d);

#endif
