/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shared definition fixture for the counter tests (see fixture.h).
 * Free of Criterion so that the ThreadSanitizer driver can use it too.
 */
#include "tests/unit/core/fixture.h"

#include "defn/defn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char fx_json[] =
        "{\"election\": {\"id\": \"fx\", \"name\": \"Fixture\", \"date\": \"2023-03-19\"},"
        " \"districts\": [{\"id\": 10, \"name\": \"Ten\"}, {\"id\": 20, \"name\": \"Twenty\"},"
        "                 {\"id\": 30, \"name\": \"Thirty\"}],"
        " \"contests\": ["
        "  {\"id\": 1, \"name\": \"List\", \"kind\": \"party_list\", \"seats\": 69, \"threshold_percent\": 5,"
        "   \"choices\": [{\"id\": 0, \"name\": \"A\"}, {\"id\": 1, \"name\": \"B\"}, {\"id\": 2, \"name\": \"C\"},"
        "                {\"id\": 3, \"name\": \"D\"}, {\"id\": 4, \"name\": \"E\"}, {\"id\": 5, \"name\": \"F\"},"
        "                {\"id\": 6, \"name\": \"G\"},"
        "                {\"id\": 7, \"name\": \"Against all\", \"seat_eligible\": false}]},"
        "  {\"id\": 101, \"name\": \"Ten\", \"kind\": \"single_member\", \"district_id\": 10,"
        "   \"choices\": [{\"id\": 1, \"name\": \"x\"}, {\"id\": 2, \"name\": \"y\"}, {\"id\": 3, \"name\": \"z\"}]},"
        "  {\"id\": 102, \"name\": \"Twenty\", \"kind\": \"single_member\", \"district_id\": 20,"
        "   \"choices\": [{\"id\": 1, \"name\": \"p\"}, {\"id\": 2, \"name\": \"q\"}, {\"id\": 3, \"name\": \"r\"},"
        "                {\"id\": 4, \"name\": \"s\"}]}],"
        " \"precincts\": [{\"id\": 12, \"district_id\": 10, \"registered_voters\": 1500, \"unbounded\": true},"
        "                 {\"id\": 5, \"district_id\": 10, \"unbounded\": true},"
        "                 {\"id\": 7, \"district_id\": 20, \"unbounded\": true},"
        "                 {\"id\": 99, \"district_id\": 20, \"unbounded\": true},"
        "                 {\"id\": 30, \"district_id\": 30, \"unbounded\": true}]}";

void fx_load(struct bal_defn **d, struct bal_layout **l)
{
	char why[256] = "";
	int err = bal_defn_parse(fx_json, strlen(fx_json), d, why, sizeof(why));
	if (err) {
		fprintf(stderr, "fixture does not load: %s\n", why);
		abort();
	}
	*l = bal_layout_new(*d);
	if (!*l) {
		fprintf(stderr, "fixture layout: out of memory\n");
		abort();
	}
}

/* `index`, or abort naming what is missing. */
static uint32_t found(int32_t index, const char *what, uint32_t id)
{
	if (index < 0) {
		fprintf(stderr, "%s %u is not in the definition\n", what, id);
		abort();
	}
	return (uint32_t)index;
}

uint32_t fx_precinct(const struct bal_defn *d, uint32_t id)
{
	return found(bal_defn_precinct(d, id), "precinct", id);
}

uint32_t fx_contest(const struct bal_defn *d, uint32_t id)
{
	return found(bal_defn_contest(d, id), "contest", id);
}

uint32_t fx_district(const struct bal_defn *d, uint32_t id)
{
	return found(bal_defn_district(d, id), "district", id);
}

uint64_t fx_rand(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545F4914F6CDD1DULL;
}
