/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Listening sockets for the I/O workers (plain sockets; the workers adopt
 * them with uv_tcp_open).
 *
 * Threads: the main thread, at startup.
 */
#ifndef BAL_DAEMON_LISTEN_H
#define BAL_DAEMON_LISTEN_H

#include <stdbool.h>
#include <stddef.h>

/**
 * Opens `n` bound (not yet listening) non-blocking sockets on host:port,
 * sharing the port with SO_REUSEPORT when n > 1. On success fds[0..n) are the
 * caller's and *bound_port is the actual port.
 * @return 0 or -errno with `why`.
 */
int bal_listen_open(const char *host, unsigned port, unsigned n, int *fds, unsigned *bound_port, char *why,
                    size_t whylen);

#endif
