/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Definition loader tests: a good file with every default, limits, margins
 * and unbounded precincts, the canonical hash, each kind of broken file with
 * its exact message, loading from disk, and a 10,000-precinct definition
 * with keys loading well under a second.
 */
#include "defn/defn.h"

#include "tests/common/params.h"

#include <errno.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A 32-byte key: bytes 0..31 in base64. */
#define KEY "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

#define ELECTION  "\"election\": {\"id\": \"t-2023\", \"name\": \"Test\", \"date\": \"2023-03-19\"}"
#define DISTRICTS "\"districts\": [{\"id\": 1, \"name\": \"North\"}, {\"id\": 2, \"name\": \"South\"}]"
#define LIST_CHOICES                                                                \
	"\"choices\": [{\"id\": 0, \"name\": \"A\"}, {\"id\": 5, \"name\": \"B\"}," \
	" {\"id\": 7, \"name\": \"Against all\", \"seat_eligible\": false}]"
#define LIST "{\"id\": 1, \"name\": \"List\", \"kind\": \"party_list\", \"seats\": 69, " LIST_CHOICES "}"
#define MEMBER                                                                                     \
	"{\"id\": 101, \"name\": \"North seat\", \"kind\": \"single_member\", \"district_id\": 1," \
	" \"choices\": [{\"id\": 1, \"name\": \"X\"}, {\"id\": 2, \"name\": \"Y\"}]}"
#define LISTX(extra) "{\"id\": 1, \"name\": \"List\", \"kind\": \"party_list\", " extra LIST_CHOICES "}"
#define CONTESTS     "\"contests\": [" LIST ", " MEMBER "]"
#define PRECINCTS                                                                                      \
	"\"precincts\": [{\"id\": 30, \"district_id\": 2, \"registered_voters\": 700},"                \
	" {\"id\": 10, \"district_id\": 1, \"registered_voters\": 1500, \"public_key\": \"" KEY "\"}," \
	" {\"id\": 20, \"district_id\": 1, \"unbounded\": true}]"
#define DOC(e, d, c, p) "{" e ", " d ", " c ", " p "}"
#define GOOD            DOC(ELECTION, DISTRICTS, CONTESTS, PRECINCTS)
/* GOOD with a "limits" object. */
#define DOCL(limits) "{" ELECTION ", " DISTRICTS ", " CONTESTS ", " PRECINCTS ", \"limits\": " limits "}"

static int parse(const char *json, struct bal_defn **d, char *why, size_t len)
{
	return bal_defn_parse(json, strlen(json), d, why, len);
}

Test(defn, good_file_with_defaults)
{
	struct bal_defn *d = NULL;
	char why[256] = "";
	cr_assert_eq(parse(GOOD, &d, why, sizeof(why)), 0, "%s", why);
	cr_assert_str_eq(d->election_id, "t-2023");
	cr_assert_str_eq(d->election_name, "Test");
	cr_assert_str_eq(d->election_date, "2023-03-19");
	cr_assert_eq(d->ndistricts, 2);
	cr_assert_str_eq(d->districts[1].name, "South");

	cr_assert_eq(d->ncontests, 2);
	const struct bal_contest *l = &d->contests[0], *m = &d->contests[1];
	cr_assert_eq(l->id, 1);
	cr_assert_eq(l->kind, BAL_CONTEST_PARTY_LIST);
	cr_assert_eq(l->method, BAL_METHOD_LARGEST_REMAINDER, "default method");
	cr_assert_eq(l->threshold_percent, 0, "default threshold");
	cr_assert_eq(l->seats, 69);
	cr_assert_eq(l->district, -1);
	cr_assert_eq(l->nchoices, 3);
	cr_assert_eq(l->choices[1].id, 5);
	cr_assert(l->choices[0].seat_eligible, "default seat_eligible");
	cr_assert_not(l->choices[2].seat_eligible);
	cr_assert_str_eq(l->choices[2].name, "Against all");
	cr_assert_eq(m->kind, BAL_CONTEST_SINGLE_MEMBER);
	cr_assert_eq(m->method, BAL_METHOD_PLURALITY);
	cr_assert_eq(m->seats, 1, "default seats");
	cr_assert_eq(m->district, 0);

	cr_assert_eq(d->nprecincts, 3);
	const uint32_t ids[] = {10, 20, 30};
	for (uint32_t i = 0; i < 3; i++)
		cr_assert_eq(d->precincts[i].id, ids[i], "precincts sorted by id");
	cr_assert_eq(d->precincts[0].district, 0);
	cr_assert_eq(d->precincts[2].district, 1);
	cr_assert_eq(d->precincts[0].registered_voters, 1500);
	cr_assert_eq(d->precincts[0].registration_margin, 0, "default margin");
	cr_assert_eq(d->precincts[0].max_voters, 1500);
	cr_assert_not(d->precincts[0].unbounded);
	cr_assert(d->precincts[1].unbounded);
	cr_assert_eq(d->precincts[1].registered_voters, 0, "no register needed when unbounded");
	cr_assert_eq(d->precincts[1].max_voters, UINT64_MAX);
	cr_assert_eq(d->registered_total, 2200);
	cr_assert_eq(d->registration_margin, 0, "default margin");
	cr_assert_eq(d->max_seq, UINT32_MAX, "default max_seq");
	cr_assert(d->precincts[0].has_key);
	for (int i = 0; i < 32; i++)
		cr_assert_eq(d->precincts[0].public_key[i], i);
	cr_assert_not(d->precincts[1].has_key);
	cr_assert_eq(bal_defn_precinct(d, 30), 2);
	cr_assert(bal_defn_votes_in(d, 0, 1));
	cr_assert_not(bal_defn_votes_in(d, 2, 1));
	bal_defn_free(d);
}

/* Every id from 0 to past the largest, and the extremes, against a linear search. */
static void check_lookups(const struct bal_defn *d)
{
	uint32_t top = d->precincts[d->nprecincts - 1].id;
	const uint32_t extremes[] = {0, 1, top + 1, top + 1000, UINT32_MAX - 1, UINT32_MAX};
	for (uint64_t id = 0; id <= (uint64_t)top + sizeof(extremes) / sizeof(extremes[0]); id++) {
		uint32_t q = id <= top ? (uint32_t)id : extremes[id - top - 1];
		int32_t want = -1;
		for (uint32_t i = 0; i < d->nprecincts; i++)
			if (d->precincts[i].id == q)
				want = (int32_t)i;
		cr_assert_eq(bal_defn_precinct(d, q), want, "precinct id %u", q);
	}
}

Test(defn, precinct_lookup_dense_and_sparse_ids)
{
	struct bal_defn *d = NULL;
	char why[256] = "";
	/* 10, 20, 30: dense enough for the direct table. */
	cr_assert_eq(parse(GOOD, &d, why, sizeof(why)), 0, "%s", why);
	cr_assert_not_null(d->by_id);
	check_lookups(d);
	bal_defn_free(d);
	/* 5 and 4,000,000: too sparse for a table, bisected. */
	const char *sparse = DOC(ELECTION, DISTRICTS, CONTESTS,
	                         "\"precincts\": [{\"id\": 4000000, \"district_id\": 2, \"registered_voters\": 1},"
	                         " {\"id\": 5, \"district_id\": 1, \"registered_voters\": 1}]");
	cr_assert_eq(parse(sparse, &d, why, sizeof(why)), 0, "%s", why);
	cr_assert_null(d->by_id);
	cr_assert_eq(bal_defn_precinct(d, 5), 0);
	cr_assert_eq(bal_defn_precinct(d, 4000000), 1);
	const uint32_t absent[] = {0, 4, 6, 3999999, 4000001, UINT32_MAX};
	for (size_t i = 0; i < sizeof(absent) / sizeof(absent[0]); i++)
		cr_assert_eq(bal_defn_precinct(d, absent[i]), -1, "precinct id %u", absent[i]);
	bal_defn_free(d);
}

Test(defn, explicit_options)
{
	const char *json = DOC(
	        ELECTION, DISTRICTS,
	        "\"contests\": [{\"id\": 1, \"name\": \"L\", \"kind\": \"party_list\", \"seats\": 9,"
	        " \"method\": \"dhondt\", \"threshold_percent\": 7.5, \"district_id\": 2, " LIST_CHOICES "},"
	        " {\"id\": 2, \"name\": \"M\", \"kind\": \"single_member\", \"district_id\": 1, \"seats\": 2,"
	        " \"method\": \"plurality\", \"choices\": [{\"id\": 1, \"name\": \"X\", \"seat_eligible\": true}]}]",
	        PRECINCTS);
	struct bal_defn *d = NULL;
	char why[256] = "";
	cr_assert_eq(parse(json, &d, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(d->contests[0].method, BAL_METHOD_DHONDT);
	cr_assert_eq(d->contests[0].threshold_percent, 7.5);
	cr_assert_eq(d->contests[0].district, 1, "a regional party list");
	cr_assert_eq(d->contests[1].seats, 2);
	bal_defn_free(d);
}

Test(defn, limits_margins_and_unbounded_precincts)
{
	const char *json = "{" ELECTION ", " DISTRICTS ", " CONTESTS ","
	                   " \"limits\": {\"registration_margin\": 25, \"max_seq\": 1000},"
	                   " \"precincts\": [{\"id\": 1, \"district_id\": 1, \"registered_voters\": 100},"
	                   " {\"id\": 2, \"district_id\": 1, \"registered_voters\": 200, \"registration_margin\": 0},"
	                   " {\"id\": 3, \"district_id\": 2, \"registered_voters\": 300, \"registration_margin\": 7},"
	                   " {\"id\": 4, \"district_id\": 2, \"registered_voters\": 400, \"unbounded\": true},"
	                   " {\"id\": 5, \"district_id\": 2, \"registered_voters\": 0, \"unbounded\": false}]}";
	static const struct {
		uint64_t registered, margin, max;
		bool unbounded;
	} want[] = {{100, 25, 125, false},
	            {200, 0, 200, false},
	            {300, 7, 307, false},
	            {400, 0, UINT64_MAX, true},
	            {0, 25, 25, false}};
	struct bal_defn *d = NULL;
	char why[256] = "";
	cr_assert_eq(parse(json, &d, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(d->max_seq, 1000);
	cr_assert_eq(d->registration_margin, 25);
	cr_assert_eq(d->registered_total, 1000, "unbounded precincts count in the register");
	for (uint32_t i = 0; i < NELEM(want); i++) {
		const struct bal_precinct *p = &d->precincts[i];
		cr_assert_eq(p->id, i + 1);
		cr_assert_eq(p->registered_voters, want[i].registered, "precinct %u", p->id);
		cr_assert_eq(p->registration_margin, want[i].margin, "precinct %u", p->id);
		cr_assert_eq(p->max_voters, want[i].max, "precinct %u", p->id);
		cr_assert_eq(p->unbounded, want[i].unbounded, "precinct %u", p->id);
	}
	bal_defn_free(d);

	/* Limits are part of the election: they change the hash, and an empty
	 * "limits" object is the defaults under another hash. */
	struct bal_defn *a = NULL, *b = NULL;
	cr_assert_eq(parse(GOOD, &a, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(parse(DOCL("{}"), &b, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(b->max_seq, a->max_seq);
	cr_assert_eq(b->registration_margin, a->registration_margin);
	cr_assert_neq(memcmp(a->hash, b->hash, 32), 0);
	bal_defn_free(a);
	bal_defn_free(b);
}

Test(defn, hash_is_sha256_of_canonical_json)
{
	/* Pretty, unordered input; its canonical form is compact with sorted keys. */
	const char *pretty = "{\n  \"precincts\": [ { \"id\": 1, \"district_id\": 1, \"registered_voters\": 9 } ],\n"
	                     "  \"election\": { \"name\": \"E\", \"id\": \"e\" },\n"
	                     "  \"districts\": [ { \"name\": \"D\", \"id\": 1 } ],\n"
	                     "  \"contests\": [ { \"seats\": 1, \"name\": \"L\", \"kind\": \"party_list\", \"id\": 1,\n"
	                     "                    \"choices\": [ { \"name\": \"A\", \"id\": 0 } ] } ]\n}\n";
	const char *canonical =
	        "{\"contests\":[{\"choices\":[{\"id\":0,\"name\":\"A\"}],\"id\":1,\"kind\":\"party_list\","
	        "\"name\":\"L\",\"seats\":1}],\"districts\":[{\"id\":1,\"name\":\"D\"}],"
	        "\"election\":{\"id\":\"e\",\"name\":\"E\"},\"precincts\":[{\"district_id\":1,\"id\":1,"
	        "\"registered_voters\":9}]}";
	uint8_t want[32];
	crypto_hash_sha256(want, (const unsigned char *)canonical, strlen(canonical));
	struct bal_defn *d = NULL;
	char why[256] = "";
	cr_assert_eq(parse(pretty, &d, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(memcmp(d->hash, want, 32), 0);
	char hex[65], want_hex[65];
	bal_defn_hash_hex(d, hex);
	sodium_bin2hex(want_hex, sizeof(want_hex), want, 32);
	cr_assert_str_eq(hex, want_hex);
	bal_defn_free(d);

	/* Whitespace does not change the hash; any change of content does. */
	struct bal_defn *d2 = NULL;
	cr_assert_eq(parse(GOOD, &d, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(parse("\n  " GOOD "  \n", &d2, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(memcmp(d->hash, d2->hash, 32), 0, "whitespace changed the hash");
	bal_defn_free(d2);
	cr_assert_eq(
	        parse(DOC(ELECTION, DISTRICTS, "\"contests\": [" LISTX("\"seats\": 68, ") ", " MEMBER "]", PRECINCTS),
	              &d2, why, sizeof(why)),
	        0, "%s", why);
	cr_assert_neq(memcmp(d->hash, d2->hash, 32), 0, "68 seats is another election");
	bal_defn_free(d2);
	bal_defn_free(d);
}

struct bad_case {
	const char *name;
	const char *json;
	const char *why;
};

#define ONE_CONTEST(c) "\"contests\": [" c "]"
#define MEMBERX(extra)                                                       \
	"{\"id\": 101, \"name\": \"M\", \"kind\": \"single_member\", " extra \
	" \"choices\": [{\"id\": 1, \"name\": \"X\"}]}"
#define ONE_PRECINCT(p) "\"precincts\": [" p "]"
/* Precinct 1 of district 1 with 5 registered voters and `more` keys. */
#define P1(more) "{\"id\": 1, \"district_id\": 1, \"registered_voters\": 5, " more "}"
#define VOTERS_MISSING(i)                                                                                             \
	"precincts[" i "].registered_voters: missing (expected an integer 0..9223372036854775807, or \"unbounded\": " \
	"true for a precinct without plausibility bounds)"

static const struct bad_case bad_cases[] = {
        {"top level array", "[]", "top level: expected an object, got an array"},
        {"unknown top-level key", "{\"extra\": 1, " ELECTION "}",
         "top level: unknown key \"extra\" (expected one of: election, districts, contests, precincts, limits, "
         "commission_key)"},
        {"reserved precinct id",
         DOC(ELECTION, DISTRICTS, CONTESTS,
             ONE_PRECINCT("{\"id\": 1, \"district_id\": 1, \"registered_voters\": 5},"
                          " {\"id\": 4294967295, \"district_id\": 1, \"registered_voters\": 5}")),
         "precincts[1].id: 4294967295 is reserved (it names the commission's amendments in the journal)"},
        {"commission key type", "{" ELECTION ", " DISTRICTS ", " CONTESTS ", " PRECINCTS ", \"commission_key\": 5}",
         "commission_key: expected 64 hex digits (an Ed25519 public key), got an integer"},
        {"commission key short",
         "{" ELECTION ", " DISTRICTS ", " CONTESTS ", " PRECINCTS ", \"commission_key\": \"00ff\"}",
         "commission_key: \"00ff\" is not 64 hex digits (an Ed25519 public key)"},
        {"commission key base64",
         "{" ELECTION ", " DISTRICTS ", " CONTESTS ", " PRECINCTS ", \"commission_key\": \"" KEY "\"}",
         "commission_key: \"" KEY "\" is not 64 hex digits (an Ed25519 public key)"},
        {"commission key not hex",
         "{" ELECTION ", " DISTRICTS ", " CONTESTS ", " PRECINCTS
         ", \"commission_key\": \"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1g\"}",
         "commission_key: \"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1g\" is not 64 hex "
         "digits (an Ed25519 public key)"},
        {"no election", "{" DISTRICTS ", " CONTESTS ", " PRECINCTS "}",
         "election: missing (expected an object with id, name, date)"},
        {"election not an object", DOC("\"election\": []", DISTRICTS, CONTESTS, PRECINCTS),
         "election: expected an object, got an array"},
        {"election id type", DOC("\"election\": {\"id\": 5, \"name\": \"T\"}", DISTRICTS, CONTESTS, PRECINCTS),
         "election.id: expected a string, got an integer"},
        {"election id empty", DOC("\"election\": {\"id\": \"\", \"name\": \"T\"}", DISTRICTS, CONTESTS, PRECINCTS),
         "election.id: must not be empty"},
        {"election name missing", DOC("\"election\": {\"id\": \"x\"}", DISTRICTS, CONTESTS, PRECINCTS),
         "election.name: missing (expected a string)"},
        {"districts missing", "{" ELECTION ", " CONTESTS ", " PRECINCTS "}", "districts: missing (expected an array)"},
        {"districts not an array", DOC(ELECTION, "\"districts\": {}", CONTESTS, PRECINCTS),
         "districts: expected an array, got an object"},
        {"districts empty", DOC(ELECTION, "\"districts\": []", CONTESTS, PRECINCTS), "districts: must not be empty"},
        {"district not an object", DOC(ELECTION, "\"districts\": [3]", CONTESTS, PRECINCTS),
         "districts[0]: expected an object, got an integer"},
        {"district id negative",
         DOC(ELECTION, "\"districts\": [{\"id\": 1, \"name\": \"a\"}, {\"id\": -1, \"name\": \"b\"}]", CONTESTS,
             PRECINCTS),
         "districts[1].id: -1 is out of range (0..4294967295)"},
        {"district id too big",
         DOC(ELECTION, "\"districts\": [{\"id\": 4294967296, \"name\": \"a\"}]", CONTESTS, PRECINCTS),
         "districts[0].id: 4294967296 is out of range (0..4294967295)"},
        {"district id real", DOC(ELECTION, "\"districts\": [{\"id\": 1.5, \"name\": \"a\"}]", CONTESTS, PRECINCTS),
         "districts[0].id: expected an integer 0..4294967295, got a real number"},
        {"district id missing", DOC(ELECTION, "\"districts\": [{\"name\": \"a\"}]", CONTESTS, PRECINCTS),
         "districts[0].id: missing (expected an integer 0..4294967295)"},
        {"district name missing", DOC(ELECTION, "\"districts\": [{\"id\": 1}]", CONTESTS, PRECINCTS),
         "districts[0].name: missing (expected a string)"},
        {"duplicate district",
         DOC(ELECTION, "\"districts\": [{\"id\": 1, \"name\": \"a\"}, {\"id\": 1, \"name\": \"b\"}]", CONTESTS,
             PRECINCTS),
         "districts[1].id: 1 duplicates districts[0].id"},
        {"contests empty", DOC(ELECTION, DISTRICTS, "\"contests\": []", PRECINCTS), "contests: must not be empty"},
        {"kind missing",
         DOC(ELECTION, DISTRICTS, ONE_CONTEST("{\"id\": 1, \"name\": \"L\", \"seats\": 1, " LIST_CHOICES "}"),
             PRECINCTS),
         "contests[0].kind: missing (expected \"party_list\" or \"single_member\")"},
        {"kind wrong",
         DOC(ELECTION, DISTRICTS,
             ONE_CONTEST("{\"id\": 1, \"name\": \"L\", \"kind\": \"mixed\", \"seats\": 1, " LIST_CHOICES "}"),
             PRECINCTS),
         "contests[0].kind: \"mixed\" is not \"party_list\" or \"single_member\""},
        {"seats missing", DOC(ELECTION, DISTRICTS, ONE_CONTEST(LISTX("")), PRECINCTS),
         "contests[0].seats: missing (expected an integer 1..4294967295)"},
        {"seats zero", DOC(ELECTION, DISTRICTS, ONE_CONTEST(LISTX("\"seats\": 0, ")), PRECINCTS),
         "contests[0].seats: 0 is out of range (1..4294967295)"},
        {"method unknown",
         DOC(ELECTION, DISTRICTS, ONE_CONTEST(LISTX("\"seats\": 3, \"method\": \"sainte_lague\", ")), PRECINCTS),
         "contests[0].method: \"sainte_lague\" is not \"largest_remainder\" or \"dhondt\""},
        {"method type", DOC(ELECTION, DISTRICTS, ONE_CONTEST(LISTX("\"seats\": 3, \"method\": 2, ")), PRECINCTS),
         "contests[0].method: expected a string, got an integer"},
        {"member method",
         DOC(ELECTION, DISTRICTS, ONE_CONTEST(MEMBERX("\"district_id\": 1, \"method\": \"dhondt\",")), PRECINCTS),
         "contests[0].method: \"dhondt\" is not \"plurality\""},
        {"threshold too high",
         DOC(ELECTION, DISTRICTS, ONE_CONTEST(LISTX("\"seats\": 3, \"threshold_percent\": 150, ")), PRECINCTS),
         "contests[0].threshold_percent: 150 is out of range (0..100)"},
        {"threshold negative",
         DOC(ELECTION, DISTRICTS, ONE_CONTEST(LISTX("\"seats\": 3, \"threshold_percent\": -0.5, ")), PRECINCTS),
         "contests[0].threshold_percent: -0.5 is out of range (0..100)"},
        {"threshold type",
         DOC(ELECTION, DISTRICTS, ONE_CONTEST(LISTX("\"seats\": 3, \"threshold_percent\": \"5\", ")), PRECINCTS),
         "contests[0].threshold_percent: expected a number 0..100, got a string"},
        {"member without district", DOC(ELECTION, DISTRICTS, ONE_CONTEST(MEMBERX("")), PRECINCTS),
         "contests[0].district_id: missing (expected an integer 0..4294967295)"},
        {"unknown district", DOC(ELECTION, DISTRICTS, ONE_CONTEST(MEMBERX("\"district_id\": 9,")), PRECINCTS),
         "contests[0].district_id: 9 is not a district id"},
        {"no choices",
         DOC(ELECTION, DISTRICTS,
             ONE_CONTEST("{\"id\": 1, \"name\": \"L\", \"kind\": \"party_list\", \"seats\": 1, \"choices\": []}"),
             PRECINCTS),
         "contests[0].choices: must not be empty"},
        {"choices missing",
         DOC(ELECTION, DISTRICTS, ONE_CONTEST("{\"id\": 1, \"name\": \"L\", \"kind\": \"party_list\", \"seats\": 1}"),
             PRECINCTS),
         "contests[0].choices: missing (expected an array)"},
        {"duplicate choice",
         DOC(ELECTION, DISTRICTS,
             ONE_CONTEST("{\"id\": 1, \"name\": \"L\", \"kind\": \"party_list\", \"seats\": 1, \"choices\": ["
                         "{\"id\": 0, \"name\": \"A\"}, {\"id\": 3, \"name\": \"B\"}, {\"id\": 0, \"name\": \"C\"}]}"),
             PRECINCTS),
         "contests[0].choices[2].id: 0 duplicates contests[0].choices[0].id"},
        {"seat_eligible type",
         DOC(ELECTION, DISTRICTS,
             ONE_CONTEST("{\"id\": 1, \"name\": \"L\", \"kind\": \"party_list\", \"seats\": 1, \"choices\": ["
                         "{\"id\": 0, \"name\": \"A\", \"seat_eligible\": 0}]}"),
             PRECINCTS),
         "contests[0].choices[0].seat_eligible: expected true or false, got an integer"},
        {"choice name type",
         DOC(ELECTION, DISTRICTS,
             ONE_CONTEST("{\"id\": 1, \"name\": \"L\", \"kind\": \"party_list\", \"seats\": 1, \"choices\": ["
                         "{\"id\": 0, \"name\": null}]}"),
             PRECINCTS),
         "contests[0].choices[0].name: expected a string, got null"},
        {"duplicate contest", DOC(ELECTION, DISTRICTS, "\"contests\": [" LIST ", " LIST "]", PRECINCTS),
         "contests[1].id: 1 duplicates contests[0].id"},
        {"misspelt key",
         DOC(ELECTION, DISTRICTS, ONE_CONTEST(LISTX("\"seats\": 3, \"threshold_pecent\": 5, ")), PRECINCTS),
         "contests[0]: unknown key \"threshold_pecent\" (expected one of: id, name, kind, seats, threshold_percent, "
         "method, district_id, choices)"},
        {"precincts missing", "{" ELECTION ", " DISTRICTS ", " CONTESTS "}", "precincts: missing (expected an array)"},
        {"precincts empty", DOC(ELECTION, DISTRICTS, CONTESTS, "\"precincts\": []"), "precincts: must not be empty"},
        {"precinct not an object", DOC(ELECTION, DISTRICTS, CONTESTS, ONE_PRECINCT("\"p1\"")),
         "precincts[0]: expected an object, got a string"},
        {"precinct unknown district",
         DOC(ELECTION, DISTRICTS, CONTESTS,
             ONE_PRECINCT("{\"id\": 1, \"district_id\": 1, \"registered_voters\": 5},"
                          " {\"id\": 2, \"district_id\": 9}")),
         "precincts[1].district_id: 9 is not a district id"},
        {"precinct without district", DOC(ELECTION, DISTRICTS, CONTESTS, ONE_PRECINCT("{\"id\": 1}")),
         "precincts[0].district_id: missing (expected an integer 0..4294967295)"},
        {"duplicate precinct",
         DOC(ELECTION, DISTRICTS, CONTESTS,
             ONE_PRECINCT("{\"id\": 4, \"district_id\": 1, \"registered_voters\": 5},"
                          " {\"id\": 10, \"district_id\": 1, \"registered_voters\": 5},"
                          " {\"id\": 10, \"district_id\": 2, \"registered_voters\": 5}")),
         "precincts[2].id: 10 duplicates precincts[1].id"},
        {"voters negative",
         DOC(ELECTION, DISTRICTS, CONTESTS, ONE_PRECINCT("{\"id\": 1, \"district_id\": 1, \"registered_voters\": -5}")),
         "precincts[0].registered_voters: -5 is out of range (0..9223372036854775807)"},
        {"key not base64", DOC(ELECTION, DISTRICTS, CONTESTS, ONE_PRECINCT(P1("\"public_key\": \"not base64!\""))),
         "precincts[0].public_key: \"not base64!\" is not valid base64"},
        {"key url-safe alphabet",
         DOC(ELECTION, DISTRICTS, CONTESTS,
             ONE_PRECINCT(P1("\"public_key\": "
                             "\"__ECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\""))),
         "precincts[0].public_key: \"__ECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\" is not valid base64"},
        {"key too short",
         DOC(ELECTION, DISTRICTS, CONTESTS, ONE_PRECINCT(P1("\"public_key\": \"AAAAAAAAAAAAAAAAAAAAAA==\""))),
         "precincts[0].public_key: decodes to 16 bytes, an Ed25519 key has 32"},
        {"key too long", DOC(ELECTION, DISTRICTS, CONTESTS, ONE_PRECINCT(P1("\"public_key\": \"" KEY KEY KEY "\""))),
         "precincts[0].public_key: 132 characters is too long for a 32-byte Ed25519 key"},
        {"key 33 bytes",
         DOC(ELECTION, DISTRICTS, CONTESTS,
             ONE_PRECINCT(P1("\"public_key\": "
                             "\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g\""))),
         "precincts[0].public_key: decodes to 33 bytes, an Ed25519 key has 32"},
        {"key type", DOC(ELECTION, DISTRICTS, CONTESTS, ONE_PRECINCT(P1("\"public_key\": 7"))),
         "precincts[0].public_key: expected a base64 string, got an integer"},
        {"precinct unknown key",
         DOC(ELECTION, DISTRICTS, CONTESTS, ONE_PRECINCT("{\"id\": 1, \"district_id\": 1, \"voters\": 7}")),
         "precincts[0]: unknown key \"voters\" (expected one of: id, district_id, registered_voters, unbounded, "
         "registration_margin, public_key)"},
        {"voters missing", DOC(ELECTION, DISTRICTS, CONTESTS, ONE_PRECINCT("{\"id\": 1, \"district_id\": 1}")),
         VOTERS_MISSING("0")},
        {"voters missing in a later precinct",
         DOC(ELECTION, DISTRICTS, CONTESTS,
             ONE_PRECINCT("{\"id\": 1, \"district_id\": 1, \"registered_voters\": 5},"
                          " {\"id\": 2, \"district_id\": 2, \"registration_margin\": 5}")),
         VOTERS_MISSING("1")},
        {"voters missing, unbounded false",
         DOC(ELECTION, DISTRICTS, CONTESTS, ONE_PRECINCT("{\"id\": 1, \"district_id\": 1, \"unbounded\": false}")),
         VOTERS_MISSING("0")},
        {"unbounded type",
         DOC(ELECTION, DISTRICTS, CONTESTS, ONE_PRECINCT("{\"id\": 1, \"district_id\": 1, \"unbounded\": 1}")),
         "precincts[0].unbounded: expected true or false, got an integer"},
        {"margin of an unbounded precinct",
         DOC(ELECTION, DISTRICTS, CONTESTS,
             ONE_PRECINCT("{\"id\": 1, \"district_id\": 1, \"unbounded\": true, \"registration_margin\": 3}")),
         "precincts[0].registration_margin: an unbounded precinct has no bound to widen (drop the margin or "
         "\"unbounded\": true)"},
        {"margin negative", DOC(ELECTION, DISTRICTS, CONTESTS, ONE_PRECINCT(P1("\"registration_margin\": -1"))),
         "precincts[0].registration_margin: -1 is out of range (0..9223372036854775807)"},
        {"margin type", DOC(ELECTION, DISTRICTS, CONTESTS, ONE_PRECINCT(P1("\"registration_margin\": \"5\""))),
         "precincts[0].registration_margin: expected an integer 0..9223372036854775807, got a string"},
        {"registered total overflows",
         DOC(ELECTION, DISTRICTS, CONTESTS,
             ONE_PRECINCT("{\"id\": 1, \"district_id\": 1, \"registered_voters\": 9223372036854775807},"
                          " {\"id\": 2, \"district_id\": 1, \"registered_voters\": 9223372036854775807},"
                          " {\"id\": 3, \"district_id\": 1, \"registered_voters\": 2}")),
         "precincts[2].registered_voters: 2 makes the total overflow 64 bits"},
        {"bounds total overflows",
         DOC(ELECTION, DISTRICTS, CONTESTS,
             ONE_PRECINCT("{\"id\": 1, \"district_id\": 1, \"registered_voters\": 9223372036854775807},"
                          " {\"id\": 2, \"district_id\": 1, \"registered_voters\": 9223372036854775807,"
                          " \"registration_margin\": 2}")),
         "precincts[1]: registered_voters 9223372036854775807 + registration_margin 2 makes the total of the "
         "precincts' bounds overflow 64 bits"},
        {"limits not an object", DOCL("5"), "limits: expected an object, got an integer"},
        {"limits unknown key", DOCL("{\"max_sequence\": 5}"),
         "limits: unknown key \"max_sequence\" (expected one of: registration_margin, max_seq)"},
        {"max_seq zero", DOCL("{\"max_seq\": 0}"), "limits.max_seq: 0 is out of range (1..9223372036854775807)"},
        {"max_seq type", DOCL("{\"max_seq\": 1e3}"),
         "limits.max_seq: expected an integer 1..9223372036854775807, got a real number"},
        {"limits margin negative", DOCL("{\"registration_margin\": -3}"),
         "limits.registration_margin: -3 is out of range (0..9223372036854775807)"},
};

INDEX_PARAMS(defn, rejects, bad_cases)

ParameterizedTest(size_t *ix, defn, rejects)
{
	const struct bad_case *bc = &bad_cases[*ix];
	struct bal_defn *sentinel = (struct bal_defn *)&sentinel;
	struct bal_defn *d = sentinel;
	char why[512] = "";
	int err = parse(bc->json, &d, why, sizeof(why));
	cr_assert_eq(err, BAL_EDEFN, "%s: got %d (%s)", bc->name, err, why);
	cr_assert_eq(d, sentinel, "%s: out written on failure", bc->name);
	cr_assert_str_eq(why, bc->why, "%s", bc->name);
}

Test(defn, commission_key_is_optional_hex_and_in_the_hash)
{
	struct bal_defn *plain = NULL, *d = NULL;
	char why[256] = "";
	cr_assert_eq(parse(GOOD, &plain, why, sizeof(why)), 0, "%s", why);
	cr_assert_not(plain->has_commission_key);
	static const char with_key[] =
	        "{" ELECTION ", " DISTRICTS ", " CONTESTS ", " PRECINCTS
	        ", \"commission_key\": \"000102030405060708090A0B0C0D0E0F101112131415161718191a1b1c1d1e1f\"}";
	cr_assert_eq(parse(with_key, &d, why, sizeof(why)), 0, "%s", why);
	cr_assert(d->has_commission_key);
	for (int i = 0; i < 32; i++)
		cr_assert_eq(d->commission_key[i], i);
	cr_assert(memcmp(d->hash, plain->hash, sizeof(d->hash)) != 0, "the key is part of the pinned definition");
	bal_defn_free(d);
	bal_defn_free(plain);
}

Test(defn, rejects_malformed_json_with_its_position)
{
	/* jansson's own wording follows the position; the position is ours to promise. */
	static const char *const docs[] = {"{\"election\": ", "{\"election\": {\"id\": \"a\", \"id\": \"b\"}}", ""};
	for (size_t i = 0; i < NELEM(docs); i++) {
		struct bal_defn *d = NULL;
		char why[512] = "";
		cr_assert_eq(parse(docs[i], &d, why, sizeof(why)), BAL_EDEFN, "doc %zu", i);
		cr_assert_eq(strncmp(why, "line 1 column ", 14), 0, "doc %zu: %s", i, why);
		cr_assert_null(d);
	}
}

Test(defn, load_reads_a_file_and_names_missing_paths)
{
	char path[] = "/tmp/bal-defn-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, GOOD, strlen(GOOD)), (ssize_t)strlen(GOOD));
	close(fd);
	struct bal_defn *d = NULL;
	char why[512] = "";
	cr_assert_eq(bal_defn_load(path, &d, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(d->nprecincts, 3);
	bal_defn_free(d);
	unlink(path);

	d = NULL;
	cr_assert_eq(bal_defn_load(path, &d, why, sizeof(why)), -ENOENT);
	char want[600];
	snprintf(want, sizeof(want), "cannot open %s: No such file or directory", path);
	cr_assert_str_eq(why, want);
	cr_assert_null(d);
	bal_defn_free(NULL);
}

/* ---- a national-scale definition ----------------------------------------------- */

struct buf {
	char *p;
	size_t len, cap;
};

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct buf *b, const char *fmt, ...)
{
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		b->cap = b->cap * 2 + (size_t)n;
		b->p = realloc(b->p, b->cap);
		cr_assert_not_null(b->p);
	}
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

Test(defn, large_definition_loads_fast)
{
	enum { NDIST = 29, NPREC = 10000 };
	struct buf b = {malloc(1 << 16), 0, 1 << 16};
	b.p[0] = '\0';
	put(&b, "{\"election\": {\"id\": \"kz-2023-mazhilis\", \"name\": \"Mazhilis\", \"date\": \"2023-03-19\"},\n");
	put(&b, "\"districts\": [");
	for (int i = 1; i <= NDIST; i++)
		put(&b, "%s{\"id\": %d, \"name\": \"District %d\"}", i > 1 ? ", " : "", i, i);
	put(&b, "],\n\"contests\": [{\"id\": 1, \"name\": \"Party list\", \"kind\": \"party_list\", \"seats\": 69,"
	        " \"threshold_percent\": 5, \"choices\": [");
	for (int k = 0; k < 8; k++)
		put(&b, "%s{\"id\": %d, \"name\": \"Party %d\"%s}", k ? ", " : "", k, k,
		    k == 7 ? ", \"seat_eligible\": false" : "");
	put(&b, "]}");
	for (int i = 1; i <= NDIST; i++) {
		put(&b,
		    ",\n{\"id\": %d, \"name\": \"District %d\", \"kind\": \"single_member\", \"district_id\": %d,"
		    " \"choices\": [",
		    100 + i, i, i);
		for (int k = 0; k < 6; k++)
			put(&b, "%s{\"id\": %d, \"name\": \"Candidate %d-%d\"}", k ? ", " : "", k, i, k);
		put(&b, "]}");
	}
	put(&b, "],\n\"precincts\": [");
	uint8_t key[32];
	char b64[64];
	for (int p = 0; p < NPREC; p++) {
		/* Ids descending so the loader has to sort them. */
		for (int i = 0; i < 32; i++)
			key[i] = (uint8_t)(p * 31 + i);
		sodium_bin2base64(b64, sizeof(b64), key, 32, sodium_base64_VARIANT_ORIGINAL);
		put(&b, "%s\n{\"id\": %d, \"district_id\": %d, \"registered_voters\": %d, \"public_key\": \"%s\"}",
		    p ? "," : "", 100000 - p, 1 + p % NDIST, 1000 + p % 700, b64);
	}
	put(&b, "]}\n");
	cr_assert_gt(b.len, 1000000, "about 1.5 MB (%zu)", b.len);

	struct bal_defn *d = NULL;
	char why[256] = "";
	double t0 = now();
	int err = bal_defn_parse(b.p, b.len, &d, why, sizeof(why));
	double dt = now() - t0;
	cr_assert_eq(err, 0, "%s", why);
	cr_assert_lt(dt, 1.0, "%zu bytes took %.3f s", b.len, dt);
	cr_assert_eq(d->nprecincts, NPREC);
	cr_assert_eq(d->ncontests, 1 + NDIST);
	for (uint32_t i = 1; i < d->nprecincts; i++)
		cr_assert_lt(d->precincts[i - 1].id, d->precincts[i].id);
	/* precincts[0] is id 90001, written at file position p = 9999. */
	cr_assert_eq(d->precincts[0].id, 90001);
	cr_assert(d->precincts[0].has_key);
	for (int i = 0; i < 32; i++)
		cr_assert_eq(d->precincts[0].public_key[i], (uint8_t)(9999 * 31 + i));
	cr_assert_eq(d->precincts[0].district, (uint32_t)(9999 % NDIST));
	bal_defn_free(d);
	free(b.p);
}
