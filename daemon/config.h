/* SPDX-License-Identifier: Apache-2.0 */
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

/**
 * The default --max-body for definition `d`: the bytes of the largest batch
 * any of its precincts may send without being refused for its counts (its
 * max_voters ballots in each contest on its ballot at 5 bytes a choice, a
 * tally of every choice, the rest of the message), rounded up to 4 KiB,
 * between 16 KiB and 1 MiB; 1 MiB if a precinct is unbounded. `*largest` is
 * the index of the precinct that needs the most.
 */
size_t bal_config_body_bound(const struct bal_defn *d, uint32_t *largest);

/* Full-size batches a derived precinct quota allows beyond the single ballots. */
#define BAL_QUOTA_FULL_BATCHES 16

/*
 * The derived journal quota of precinct index `p`, in bytes: what its voters
 * can plausibly produce. Each of its max_voters voters' ballot in a batch of
 * its own (bounded as for --max-body, with one ballot), plus
 * BAL_QUOTA_FULL_BATCHES batches of the largest size it may send
 * (protocols, tallies, corrections). UINT64_MAX (no quota) for an unbounded
 * precinct or on overflow.
 */
uint64_t bal_config_precinct_quota(const struct bal_defn *d, uint32_t p);

/** Once the definition is loaded: sets cfg.max_body from it unless
 * --max-body was given (bal_config_body_bound()), and logs the value. */
void bal_config_derive(struct bal_config *c, const struct bal_defn *d);

#endif
