/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Synthetic election definitions (see defgen.h). Each random quantity draws
 * from its own seeded stream (rng.h), so adding a precinct does not reshuffle
 * candidate names, and the text is assembled element by element so that the
 * committed file stays diffable: one district, contest or precinct per line.
 *
 * Depends on jansson (escaping, number formatting) and libsodium (base64);
 * never on the daemon.
 */
#include "client/defgen.h"

#include "client/keys.h"
#include "client/rng.h"
#include "client/util.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Stream tags: one independent random stream per purpose. */
enum { RNG_REGISTERED = 1, RNG_CANDIDATES = 2 };

/* Fictional parties; choice k of the party list takes name k, the last choice
 * is always "Against all". */
static const char *const party_names[] = {
        "People's Unity Party",    "Rural Revival",  "Republic Forward",  "Bright Path",
        "Social Democratic Party", "Green Steppe",   "Workers' League",   "Civic Alliance",
        "New Generation",          "Heritage Party", "Free Market Union", "Coastal Union",
};
#define NPARTY_NAMES (sizeof(party_names) / sizeof(party_names[0]))

/* Regions and cities of republican significance; districts are assigned to
 * them in order, several per region when there are more districts than
 * regions ("Astana No. 1", "Astana No. 2", ...). */
static const char *const region_names[] = {
        "Astana",
        "Almaty",
        "Shymkent",
        "Abai Region",
        "Akmola Region",
        "Aktobe Region",
        "Almaty Region",
        "Atyrau Region",
        "East Kazakhstan Region",
        "Jambyl Region",
        "Jetisu Region",
        "Karaganda Region",
        "Kostanay Region",
        "Kyzylorda Region",
        "Mangystau Region",
        "North Kazakhstan Region",
        "Pavlodar Region",
        "Turkistan Region",
        "Ulytau Region",
        "West Kazakhstan Region",
};
#define NREGIONS (sizeof(region_names) / sizeof(region_names[0]))

struct given_name {
	const char *name;
	bool female;
};
static const struct given_name given_names[] = {
        {"Aigerim", true}, {"Askar", false}, {"Dana", true},   {"Yerlan", false}, {"Gulnara", true}, {"Nurlan", false},
        {"Saule", true},   {"Timur", false}, {"Madina", true}, {"Bolat", false},  {"Aliya", true},   {"Daniyar", false},
        {"Zhanar", true},  {"Serik", false}, {"Asel", true},   {"Marat", false},
};
#define NGIVEN (sizeof(given_names) / sizeof(given_names[0]))

/* Surname stems; a woman's surname adds "a" (Omarov, Omarova). */
static const char *const surname_stems[] = {
        "Abenov",    "Bekov",  "Ibraev",    "Kassymov", "Mukhanov",    "Nurpeisov",    "Omarov",   "Sarsenov",
        "Tulegenov", "Utepov", "Zhumabaev", "Akhmetov", "Kenzhebekov", "Dzhaksybekov", "Yessenov", "Baimukhanov",
};
#define NSURNAMES (sizeof(surname_stems) / sizeof(surname_stems[0]))

void bal_defgen_defaults(struct bal_defgen_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->precincts = 10000;
	o->districts = 29;
	o->choices = 8;
	o->seed = 2023;
	o->keys = true;
	o->party_seats = 69;
	o->threshold_percent = 5;
	o->registered_min = 500;
	o->registered_max = 3000;
	o->election_id = "kz-2023-mazhilis";
	o->election_name = "Mazhilis election 2023 (synthetic demo data)";
	o->election_date = "2023-03-19";
}

static bool is_date(const char *s)
{
	if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
		return false;
	for (int i = 0; i < 10; i++)
		if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
			return false;
	return true;
}

static int check_opts(const struct bal_defgen_opts *o, char *why, size_t whylen)
{
	if (o->districts < 1 || o->districts > 100000)
		return bal__failf(-EINVAL, why, whylen, "--districts %u: must be between 1 and 100000", o->districts);
	if (o->precincts < o->districts || o->precincts > 10000000)
		return bal__failf(-EINVAL, why, whylen, "--precincts %u: must be between --districts (%u) and 10000000",
		                  o->precincts, o->districts);
	if (o->choices < 2 || o->choices > 1000)
		return bal__failf(-EINVAL, why, whylen,
		                  "--choices %u: must be between 2 and 1000 (the last is \"Against all\")", o->choices);
	if (o->party_seats < 1 || o->party_seats > 100000)
		return bal__failf(-EINVAL, why, whylen, "--party-seats %u: must be between 1 and 100000",
		                  o->party_seats);
	if (!(o->threshold_percent >= 0 && o->threshold_percent < 100))
		return bal__failf(-EINVAL, why, whylen, "--threshold %g: must be at least 0 and below 100",
		                  o->threshold_percent);
	if (o->registered_min > o->registered_max)
		return bal__failf(-EINVAL, why, whylen, "--registered-min %llu: must not exceed --registered-max %llu",
		                  (unsigned long long)o->registered_min, (unsigned long long)o->registered_max);
	if (o->registered_max > 1000000000ULL)
		return bal__failf(-EINVAL, why, whylen, "--registered-max %llu: must be at most 1000000000",
		                  (unsigned long long)o->registered_max);
	if (!o->election_id || !*o->election_id)
		return bal__failf(-EINVAL, why, whylen, "election id: must not be empty");
	if (!o->election_name || !*o->election_name)
		return bal__failf(-EINVAL, why, whylen, "election name: must not be empty");
	if (!o->election_date || !is_date(o->election_date))
		return bal__failf(-EINVAL, why, whylen, "election date \"%s\": must be YYYY-MM-DD",
		                  o->election_date ? o->election_date : "");
	return 0;
}

/* Writes one JSON value on the current line; returns -ENOMEM on failure. */
static int put_value(FILE *f, json_t *v)
{
	if (!v)
		return -ENOMEM;
	int rc = json_dumpf(v, f, JSON_ENSURE_ASCII) == 0 ? 0 : -ENOMEM;
	json_decref(v);
	return rc;
}

static void district_name(const struct bal_defgen_opts *o, uint32_t d, char *buf, size_t len)
{
	/* Region r holds base + (r < extra) districts, in id order. */
	uint32_t nregions = o->districts < NREGIONS ? o->districts : (uint32_t)NREGIONS;
	uint32_t base = o->districts / nregions, extra = o->districts % nregions;
	uint32_t first = 0;
	for (uint32_t r = 0; r < nregions; r++) {
		uint32_t count = base + (r < extra ? 1 : 0);
		if (d < first + count) {
			if (count == 1)
				snprintf(buf, len, "%s", region_names[r]);
			else
				snprintf(buf, len, "%s No. %u", region_names[r], d - first + 1);
			return;
		}
		first += count;
	}
	snprintf(buf, len, "District %u", d + 1); /* not reached: counts sum to districts */
}

static void party_name(uint32_t k, char *buf, size_t len)
{
	if (k < NPARTY_NAMES)
		snprintf(buf, len, "%s", party_names[k]);
	else
		snprintf(buf, len, "Party No. %u", k + 1);
}

static json_t *choice_json(uint32_t k, const char *name, bool eligible)
{
	json_t *c = json_object();
	json_object_set_new(c, "id", json_integer(k));
	json_object_set_new(c, "name", json_string(name));
	if (!eligible)
		json_object_set_new(c, "seat_eligible", json_false());
	return c;
}

static json_t *party_contest(const struct bal_defgen_opts *o)
{
	json_t *c = json_object();
	json_object_set_new(c, "id", json_integer(1));
	json_object_set_new(c, "name", json_string("Party list"));
	json_object_set_new(c, "kind", json_string("party_list"));
	json_object_set_new(c, "seats", json_integer(o->party_seats));
	double t = o->threshold_percent;
	json_object_set_new(c, "threshold_percent", t == floor(t) ? json_integer((json_int_t)t) : json_real(t));
	json_object_set_new(c, "method", json_string("largest_remainder"));
	json_t *choices = json_array();
	char name[64];
	for (uint32_t k = 0; k + 1 < o->choices; k++) {
		party_name(k, name, sizeof(name));
		json_array_append_new(choices, choice_json(k, name, true));
	}
	json_array_append_new(choices, choice_json(o->choices - 1, "Against all", false));
	json_object_set_new(c, "choices", choices);
	return c;
}

static json_t *district_contest(const struct bal_defgen_opts *o, uint32_t d)
{
	json_t *c = json_object();
	char name[160];
	district_name(o, d, name, sizeof(name));
	char title[200];
	snprintf(title, sizeof(title), "Single-member district: %s", name);
	json_object_set_new(c, "id", json_integer(100 + d + 1));
	json_object_set_new(c, "name", json_string(title));
	json_object_set_new(c, "kind", json_string("single_member"));
	json_object_set_new(c, "district_id", json_integer(d + 1));
	json_object_set_new(c, "seats", json_integer(1));
	json_t *choices = json_array();
	struct bal_rng rng;
	bal_rng_seed(&rng, o->seed, RNG_CANDIDATES, d);
	uint32_t used[64]; /* (given, surname) pairs taken in this contest */
	uint32_t nused = 0;
	for (uint32_t k = 0; k + 1 < o->choices; k++) {
		uint32_t g, s, pair;
		bool dup;
		int tries = 0;
		do {
			g = (uint32_t)bal_rng_below(&rng, NGIVEN);
			s = (uint32_t)bal_rng_below(&rng, NSURNAMES);
			pair = g * NSURNAMES + s;
			dup = false;
			for (uint32_t i = 0; i < nused; i++)
				dup |= used[i] == pair;
		} while (dup && ++tries < 16);
		if (nused < sizeof(used) / sizeof(used[0]))
			used[nused++] = pair;
		char party[64], cand[160];
		party_name(k % (o->choices - 1), party, sizeof(party));
		snprintf(cand, sizeof(cand), "%s %s%s (%s)", given_names[g].name, surname_stems[s],
		         given_names[g].female ? "a" : "", party);
		json_array_append_new(choices, choice_json(k, cand, true));
	}
	json_array_append_new(choices, choice_json(o->choices - 1, "Against all", false));
	json_object_set_new(c, "choices", choices);
	return c;
}

static json_t *precinct_json(const struct bal_defgen_opts *o, uint32_t i, struct bal_rng *reg)
{
	uint32_t id = i + 1;
	uint32_t district = (uint32_t)((uint64_t)i * o->districts / o->precincts) + 1;
	uint64_t span = o->registered_max - o->registered_min + 1;
	json_t *p = json_object();
	json_object_set_new(p, "id", json_integer(id));
	json_object_set_new(p, "district_id", json_integer(district));
	json_object_set_new(p, "registered_voters",
	                    json_integer((json_int_t)(o->registered_min + bal_rng_below(reg, span))));
	if (o->unbounded)
		json_object_set_new(p, "unbounded", json_true());
	if (o->keys) {
		uint8_t pk[32], sk[64];
		bal_demo_keypair(o->seed, id, pk, sk);
		sodium_memzero(sk, sizeof(sk));
		char b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
		sodium_bin2base64(b64, sizeof(b64), pk, sizeof(pk), sodium_base64_VARIANT_ORIGINAL);
		json_object_set_new(p, "public_key", json_string(b64));
	}
	return p;
}

static json_t *election_json(const struct bal_defgen_opts *o)
{
	json_t *e = json_object();
	json_object_set_new(e, "id", json_string(o->election_id));
	json_object_set_new(e, "name", json_string(o->election_name));
	json_object_set_new(e, "date", json_string(o->election_date));
	return e;
}

static json_t *district_json(const struct bal_defgen_opts *o, uint32_t d)
{
	char name[160];
	district_name(o, d, name, sizeof(name));
	json_t *j = json_object();
	json_object_set_new(j, "id", json_integer(d + 1));
	json_object_set_new(j, "name", json_string(name));
	return j;
}

static int write_doc(const struct bal_defgen_opts *o, FILE *f)
{
	int rc = 0;
	fputs("{\n  \"election\": ", f);
	if ((rc = put_value(f, election_json(o))) < 0)
		return rc;
	fputs(",\n  \"districts\": [\n", f);
	for (uint32_t d = 0; d < o->districts; d++) {
		fputs("    ", f);
		if ((rc = put_value(f, district_json(o, d))) < 0)
			return rc;
		fputs(d + 1 < o->districts ? ",\n" : "\n", f);
	}
	fputs("  ],\n  \"contests\": [\n    ", f);
	if ((rc = put_value(f, party_contest(o))) < 0)
		return rc;
	for (uint32_t d = 0; d < o->districts; d++) {
		fputs(",\n    ", f);
		if ((rc = put_value(f, district_contest(o, d))) < 0)
			return rc;
	}
	fputs("\n  ],\n  \"precincts\": [\n", f);
	struct bal_rng reg;
	bal_rng_seed(&reg, o->seed, RNG_REGISTERED, 0);
	for (uint32_t i = 0; i < o->precincts; i++) {
		fputs("    ", f);
		if ((rc = put_value(f, precinct_json(o, i, &reg))) < 0)
			return rc;
		fputs(i + 1 < o->precincts ? ",\n" : "\n", f);
	}
	fputs("  ]", f);
	if (o->commission_key) {
		char hex[65];
		sodium_bin2hex(hex, sizeof(hex), o->commission_key, 32);
		fprintf(f, ",\n  \"commission_key\": \"%s\"", hex);
	}
	fputs("\n}\n", f);
	return 0;
}

int bal_defgen_json(const struct bal_defgen_opts *o, char **out, size_t *len, char *why, size_t whylen)
{
	int rc = check_opts(o, why, whylen);
	if (rc < 0)
		return rc;
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);
	if (!f)
		return -ENOMEM;
	rc = write_doc(o, f);
	if (fclose(f) != 0 && rc == 0)
		rc = -ENOMEM;
	if (rc < 0) {
		if (why && whylen)
			snprintf(why, whylen, "out of memory writing the definition");
		free(buf);
		return rc;
	}
	*out = buf;
	*len = n;
	return 0;
}
