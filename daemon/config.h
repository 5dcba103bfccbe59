/*
 * Command-line configuration of ballotd (struct bal_config in daemon.h).
 *
 * Threads: the main thread, at startup.
 */
#ifndef BAL_DAEMON_CONFIG_H
#define BAL_DAEMON_CONFIG_H

#include "daemon/daemon.h"

/** Parses argv into `c` (defaults already set). Prints the reason and
 * returns -1 on a bad option; exits 0 after --help. */
int bal_config_parse(struct bal_config *c, int argc, char **argv);
/** Parses "HOST:PORT" / "[v6]:PORT" into c->host, c->port. */
int bal_config_listen(struct bal_config *c, const char *arg);

#endif
