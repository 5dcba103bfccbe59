/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small election definition shared by the counter tests: three districts,
 * one national party list with an ineligible "Against all", two district
 * contests (district 30 has none), five precincts listed out of id order.
 * Every precinct is unbounded, so that the counter tests reach any count
 * (test_plausible.c has bounded ones).
 */
#ifndef BAL_TEST_CORE_FIXTURE_H
#define BAL_TEST_CORE_FIXTURE_H

#include "core/ballot.h"
#include "core/tally.h"

/* Contest ids and choice counts in the fixture. */
#define FX_LIST   1 /* national, 8 choices, index 7 "Against all" */
#define FX_LIST_N 8
#define FX_D10    101 /* district 10, 3 choices */
#define FX_D10_N  3
#define FX_D20    102 /* district 20, 4 choices */
#define FX_D20_N  4

extern const char fx_json[];

/* Loads fx_json into a definition and its layout; aborts on failure. */
void fx_load(struct bal_defn **d, struct bal_layout **l);

/* Dense indices of the precinct, contest and district with these ids in
 * `d`; abort if there is none. */
uint32_t fx_precinct(const struct bal_defn *d, uint32_t id);
uint32_t fx_contest(const struct bal_defn *d, uint32_t id);
uint32_t fx_district(const struct bal_defn *d, uint32_t id);

/* Deterministic pseudo-random numbers (xorshift64*), no libc state. */
uint64_t fx_rand(uint64_t *state);

#endif
