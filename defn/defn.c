/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Election definition loader: JSON (jansson) -> the plain structs of
 * core/ballot.h, with ids resolved to dense indices, precincts sorted
 * by id, public keys decoded (libsodium base64) and the definition hash
 * computed as SHA-256 of the canonical JSON (compact, sorted keys).
 *
 * Validation is strict: every object's keys are checked against the format in
 * docs/definition.md so that a misspelt optional field ("threshold_pecent")
 * is an error rather than a silent default. Every message names the JSON
 * path, the value and what was expected. No networking, no storage.
 */
#include "defn/defn.h"

#include "core/reason.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ED25519_KEY_BYTES   32
#define ED25519_KEY_B64_MAX 88 /* generous: 44 characters encode 32 bytes */
#if JSON_INTEGER_IS_LONG_LONG
#define JINT_MAX LLONG_MAX
#else
#define JINT_MAX LONG_MAX
#endif

struct ctx {
	char *why;
	size_t whylen;
};

static const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a real number";
	case JSON_TRUE: return "true";
	case JSON_FALSE: return "false";
	case JSON_NULL: return "null";
	}
	return "an unknown value";
}

/* ---- field readers -------------------------------------------------------
 * Each takes the object, its path and a key; `dflt` NULL means required.
 * They return 0 or BAL_EDEFN / -ENOMEM with `why` set. */

/* Rejects keys outside `allowed` (NULL-terminated). */
static int check_keys(struct ctx *x, const json_t *obj, const char *path, const char *const *allowed)
{
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)obj, key, v)
	{
		bool ok = false;
		for (const char *const *a = allowed; *a && !ok; a++)
			ok = strcmp(*a, key) == 0;
		if (ok)
			continue;
		char list[256] = "";
		size_t used = 0;
		for (const char *const *a = allowed; *a && used < sizeof(list); a++)
			used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", a == allowed ? "" : ", ",
			                         *a);
		return bal_fail(x->why, x->whylen, BAL_EDEFN, "%s: unknown key \"%s\" (expected one of: %s)", path, key,
		                list);
	}
	return 0;
}

static int get_object(struct ctx *x, const json_t *v, const char *path)
{
	if (!json_is_object(v))
		return bal_fail(x->why, x->whylen, BAL_EDEFN, "%s: expected an object, got %s", path, type_name(v));
	return 0;
}

/* An array member `key` of `obj`; `nonempty` requires at least one element. */
static int get_array(struct ctx *x, const json_t *obj, const char *path, const char *key, bool nonempty, json_t **out)
{
	json_t *v = json_object_get(obj, key);
	if (!v)
		return bal_fail(x->why, x->whylen, BAL_EDEFN, "%s%s%s: missing (expected an array)", path,
		                *path ? "." : "", key);
	if (!json_is_array(v))
		return bal_fail(x->why, x->whylen, BAL_EDEFN, "%s%s%s: expected an array, got %s", path,
		                *path ? "." : "", key, type_name(v));
	if (nonempty && json_array_size(v) == 0)
		return bal_fail(x->why, x->whylen, BAL_EDEFN, "%s%s%s: must not be empty", path, *path ? "." : "", key);
	if (json_array_size(v) > UINT32_MAX)
		return bal_fail(x->why, x->whylen, BAL_EDEFN, "%s%s%s: %zu elements exceed the limit of %u", path,
		                *path ? "." : "", key, json_array_size(v), UINT32_MAX);
	*out = v;
	return 0;
}

/* An integer in [lo, hi]; `dflt` NULL means required. */
static int get_int(struct ctx *x, const json_t *obj, const char *path, const char *key, json_int_t lo, json_int_t hi,
                   const json_int_t *dflt, json_int_t *out)
{
	json_t *v = json_object_get(obj, key);
	if (!v) {
		if (!dflt)
			return bal_fail(x->why, x->whylen, BAL_EDEFN, "%s.%s: missing (expected an integer %lld..%lld)",
			                path, key, (long long)lo, (long long)hi);
		*out = *dflt;
		return 0;
	}
	if (!json_is_integer(v))
		return bal_fail(x->why, x->whylen, BAL_EDEFN, "%s.%s: expected an integer %lld..%lld, got %s", path,
		                key, (long long)lo, (long long)hi, type_name(v));
	json_int_t n = json_integer_value(v);
	if (n < lo || n > hi)
		return bal_fail(x->why, x->whylen, BAL_EDEFN, "%s.%s: %lld is out of range (%lld..%lld)", path, key,
		                (long long)n, (long long)lo, (long long)hi);
	*out = n;
	return 0;
}

static int get_u32(struct ctx *x, const json_t *obj, const char *path, const char *key, uint32_t lo,
                   const json_int_t *dflt, uint32_t *out)
{
	json_int_t n;
	int err = get_int(x, obj, path, key, lo, UINT32_MAX, dflt, &n);
	if (!err)
		*out = (uint32_t)n;
	return err;
}

/* A string, copied; `dflt` NULL means required. `nonempty` rejects "". */
static int get_str(struct ctx *x, const json_t *obj, const char *path, const char *key, const char *dflt, bool nonempty,
                   char **out)
{
	json_t *v = json_object_get(obj, key);
	const char *s = dflt;
	if (v && !json_is_string(v))
		return bal_fail(x->why, x->whylen, BAL_EDEFN, "%s.%s: expected a string, got %s", path, key,
		                type_name(v));
	if (v)
		s = json_string_value(v);
	else if (!dflt)
		return bal_fail(x->why, x->whylen, BAL_EDEFN, "%s.%s: missing (expected a string)", path, key);
	if (nonempty && !*s)
		return bal_fail(x->why, x->whylen, BAL_EDEFN, "%s.%s: must not be empty", path, key);
	*out = strdup(s);
	return *out ? 0 : bal_fail(x->why, x->whylen, -ENOMEM, "%s.%s: out of memory", path, key);
}

/* One of `names` (NULL-terminated); *out is its index. */
static int get_enum(struct ctx *x, const json_t *obj, const char *path, const char *key, const char *const *names,
                    const char *dflt, int *out)
{
	json_t *v = json_object_get(obj, key);
	const char *s = dflt;
	if (v && !json_is_string(v))
		return bal_fail(x->why, x->whylen, BAL_EDEFN, "%s.%s: expected a string, got %s", path, key,
		                type_name(v));
	if (v)
		s = json_string_value(v);
	for (int i = 0; s && names[i]; i++)
		if (strcmp(s, names[i]) == 0) {
			*out = i;
			return 0;
		}
	char list[128] = "";
	size_t used = 0;
	for (int i = 0; names[i] && used < sizeof(list); i++)
		used += (size_t)snprintf(list + used, sizeof(list) - used, "%s\"%s\"", i ? " or " : "", names[i]);
	if (!s)
		return bal_fail(x->why, x->whylen, BAL_EDEFN, "%s.%s: missing (expected %s)", path, key, list);
	return bal_fail(x->why, x->whylen, BAL_EDEFN, "%s.%s: \"%s\" is not %s", path, key, s, list);
}

/* ---- ids -------------------------------------------------------------------- */

struct idref {
	uint32_t id;
	uint32_t idx; /* position in the file */
};

static int idref_cmp(const void *a, const void *b)
{
	const struct idref *x = a, *y = b;
	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Sorts `refs` and reports the first repeated id as "<what>[i].id: N duplicates <what>[j].id". */
static int check_unique(struct ctx *x, struct idref *refs, uint32_t n, const char *what)
{
	qsort(refs, n, sizeof(*refs), idref_cmp);
	for (uint32_t i = 1; i < n; i++)
		if (refs[i].id == refs[i - 1].id)
			return bal_fail(x->why, x->whylen, BAL_EDEFN, "%s[%u].id: %u duplicates %s[%u].id", what,
			                refs[i].idx, refs[i].id, what, refs[i - 1].idx);
	return 0;
}

/* File index of district `id` in the sorted `refs`, or -1. */
static int32_t find_district(const struct idref *refs, uint32_t n, uint32_t id)
{
	uint32_t lo = 0, hi = n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (refs[mid].id == id)
			return (int32_t)refs[mid].idx;
		if (refs[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* ---- sections ------------------------------------------------------------- */

static int parse_election(struct ctx *x, const json_t *root, struct bal_defn *d)
{
	static const char *const keys[] = {"id", "name", "date", NULL};
	json_t *e = json_object_get(root, "election");
	if (!e)
		return bal_fail(x->why, x->whylen, BAL_EDEFN,
		                "election: missing (expected an object with id, name, date)");
	int err = get_object(x, e, "election");
	if (!err)
		err = check_keys(x, e, "election", keys);
	if (!err)
		err = get_str(x, e, "election", "id", NULL, true, &d->election_id);
	if (!err)
		err = get_str(x, e, "election", "name", NULL, false, &d->election_name);
	if (!err)
		err = get_str(x, e, "election", "date", "", false, &d->election_date);
	return err;
}

/*
 * The non-empty array `key` of `obj` (at `path`): allocates `*elems` (n zeroed
 * elements of `size` bytes, owned by the definition from then on, so that
 * bal_defn_free() cleans up after a failure) and `*refs` (n ids, the caller
 * frees them). `*n` is set only on success.
 */
static int section(struct ctx *x, const json_t *obj, const char *path, const char *key, size_t size, json_t **arr,
                   void **elems, struct idref **refs, uint32_t *n)
{
	int err = get_array(x, obj, path, key, true, arr);
	if (err)
		return err;
	size_t len = json_array_size(*arr);
	*elems = calloc(len, size);
	*refs = calloc(len, sizeof(**refs));
	if (!*elems || !*refs)
		return bal_fail(x->why, x->whylen, -ENOMEM, "%s%s%s: out of memory for %zu elements", path,
		                *path ? "." : "", key, len);
	*n = (uint32_t)len;
	return 0;
}

/* Element i of `arr`, which must be an object with only `keys`; its path
 * "<prefix>[i]" is written to `path`. */
static int element(struct ctx *x, const json_t *arr, const char *prefix, uint32_t i, const char *const *keys,
                   char *path, size_t pathlen, json_t **v)
{
	snprintf(path, pathlen, "%s[%u]", prefix, i);
	*v = json_array_get(arr, i);
	int err = get_object(x, *v, path);
	return err ? err : check_keys(x, *v, path, keys);
}

static int parse_districts(struct ctx *x, const json_t *root, struct bal_defn *d, struct idref **refs)
{
	static const char *const keys[] = {"id", "name", NULL};
	json_t *arr;
	int err = section(x, root, "", "districts", sizeof(*d->districts), &arr, (void **)&d->districts, refs,
	                  &d->ndistricts);
	for (uint32_t i = 0; i < d->ndistricts && !err; i++) {
		char path[48];
		json_t *v;
		struct bal_district *ds = &d->districts[i];
		err = element(x, arr, "districts", i, keys, path, sizeof(path), &v);
		if (!err)
			err = get_u32(x, v, path, "id", 0, NULL, &ds->id);
		if (!err)
			err = get_str(x, v, path, "name", NULL, false, &ds->name);
		(*refs)[i] = (struct idref){ds->id, i};
	}
	return err ? err : check_unique(x, *refs, d->ndistricts, "districts");
}

static int parse_choices(struct ctx *x, const json_t *cv, const char *cpath, struct bal_contest *c)
{
	static const char *const keys[] = {"id", "name", "seat_eligible", NULL};
	json_t *arr;
	struct idref *refs = NULL;
	char prefix[64];
	snprintf(prefix, sizeof(prefix), "%s.choices", cpath);
	int err =
	        section(x, cv, cpath, "choices", sizeof(*c->choices), &arr, (void **)&c->choices, &refs, &c->nchoices);
	for (uint32_t k = 0; k < c->nchoices && !err; k++) {
		char path[80];
		json_t *v;
		struct bal_choice *ch = &c->choices[k];
		err = element(x, arr, prefix, k, keys, path, sizeof(path), &v);
		if (!err)
			err = get_u32(x, v, path, "id", 0, NULL, &ch->id);
		if (!err)
			err = get_str(x, v, path, "name", NULL, false, &ch->name);
		if (!err) {
			json_t *e = json_object_get(v, "seat_eligible");
			if (e && !json_is_boolean(e))
				err = bal_fail(x->why, x->whylen, BAL_EDEFN,
				               "%s.seat_eligible: expected true or false, got %s", path, type_name(e));
			ch->seat_eligible = e ? json_is_true(e) : true;
		}
		refs[k] = (struct idref){ch->id, k};
	}
	if (!err)
		err = check_unique(x, refs, c->nchoices, prefix);
	free(refs);
	return err;
}

/* Contest `v` at `path`, already checked to be an object with known keys. */
static int parse_contest(struct ctx *x, const json_t *v, const char *path, const struct idref *drefs, uint32_t nd,
                         struct bal_contest *c)
{
	static const char *const kinds[] = {"party_list", "single_member", NULL};
	static const char *const list_methods[] = {"largest_remainder", "dhondt", NULL};
	static const char *const member_methods[] = {"plurality", NULL};
	static const json_int_t one = 1;

	int err = get_u32(x, v, path, "id", 0, NULL, &c->id);
	if (!err)
		err = get_str(x, v, path, "name", NULL, false, &c->name);
	int kind = 0;
	if (!err)
		err = get_enum(x, v, path, "kind", kinds, NULL, &kind);
	if (err)
		return err;
	c->kind = kind == 0 ? BAL_CONTEST_PARTY_LIST : BAL_CONTEST_SINGLE_MEMBER;
	bool list = c->kind == BAL_CONTEST_PARTY_LIST;

	err = get_u32(x, v, path, "seats", 1, list ? NULL : &one, &c->seats);
	int method = 0;
	if (!err)
		err = get_enum(x, v, path, "method", list ? list_methods : member_methods,
		               list ? "largest_remainder" : "plurality", &method);
	if (err)
		return err;
	c->method = !list ? BAL_METHOD_PLURALITY : method == 0 ? BAL_METHOD_LARGEST_REMAINDER : BAL_METHOD_DHONDT;

	json_t *t = json_object_get(v, "threshold_percent");
	c->threshold_percent = 0;
	if (t && !json_is_number(t))
		return bal_fail(x->why, x->whylen, BAL_EDEFN, "%s.threshold_percent: expected a number 0..100, got %s",
		                path, type_name(t));
	if (t) {
		c->threshold_percent = json_number_value(t);
		if (!(c->threshold_percent >= 0 && c->threshold_percent <= 100))
			return bal_fail(x->why, x->whylen, BAL_EDEFN,
			                "%s.threshold_percent: %g is out of range (0..100)", path,
			                c->threshold_percent);
	}

	c->district = -1;
	if (json_object_get(v, "district_id") || !list) {
		uint32_t did;
		err = get_u32(x, v, path, "district_id", 0, NULL, &did);
		if (err)
			return err;
		c->district = find_district(drefs, nd, did);
		if (c->district < 0)
			return bal_fail(x->why, x->whylen, BAL_EDEFN, "%s.district_id: %u is not a district id", path,
			                did);
	}
	return parse_choices(x, v, path, c);
}

static int parse_contests(struct ctx *x, const json_t *root, struct bal_defn *d, const struct idref *drefs)
{
	static const char *const keys[] = {"id",     "name",        "kind",    "seats", "threshold_percent",
	                                   "method", "district_id", "choices", NULL};
	json_t *arr;
	struct idref *refs = NULL;
	int err = section(x, root, "", "contests", sizeof(*d->contests), &arr, (void **)&d->contests, &refs,
	                  &d->ncontests);
	for (uint32_t i = 0; i < d->ncontests && !err; i++) {
		char path[48];
		json_t *v;
		err = element(x, arr, "contests", i, keys, path, sizeof(path), &v);
		if (!err)
			err = parse_contest(x, v, path, drefs, d->ndistricts, &d->contests[i]);
		refs[i] = (struct idref){d->contests[i].id, i};
	}
	if (!err)
		err = check_unique(x, refs, d->ncontests, "contests");
	free(refs);
	return err;
}

static int parse_key(struct ctx *x, const json_t *v, const char *path, struct bal_precinct *p)
{
	json_t *k = json_object_get(v, "public_key");
	if (!k)
		return 0;
	if (!json_is_string(k))
		return bal_fail(x->why, x->whylen, BAL_EDEFN, "%s.public_key: expected a base64 string, got %s", path,
		                type_name(k));
	const char *b64 = json_string_value(k);
	size_t len = json_string_length(k);
	if (len > ED25519_KEY_B64_MAX)
		return bal_fail(x->why, x->whylen, BAL_EDEFN,
		                "%s.public_key: %zu characters is too long for a %d-byte Ed25519 key", path, len,
		                ED25519_KEY_BYTES);
	unsigned char bin[ED25519_KEY_B64_MAX];
	size_t binlen = 0;
	if (sodium_base642bin(bin, sizeof(bin), b64, len, NULL, &binlen, NULL, sodium_base64_VARIANT_ORIGINAL) != 0)
		return bal_fail(x->why, x->whylen, BAL_EDEFN, "%s.public_key: \"%s\" is not valid base64", path, b64);
	if (binlen != ED25519_KEY_BYTES)
		return bal_fail(x->why, x->whylen, BAL_EDEFN,
		                "%s.public_key: decodes to %zu bytes, an Ed25519 key has %d", path, binlen,
		                ED25519_KEY_BYTES);
	memcpy(p->public_key, bin, ED25519_KEY_BYTES);
	p->has_key = true;
	return 0;
}

static int precinct_cmp(const void *a, const void *b)
{
	const struct bal_precinct *x = a, *y = b;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* The direct id -> index table of bal_defn.by_id, when the ids are dense enough for it. */
static int index_ids(struct ctx *x, struct bal_defn *d)
{
	if (!d->nprecincts)
		return 0;
	uint32_t lo = d->precincts[0].id, hi = d->precincts[d->nprecincts - 1].id;
	uint64_t span = (uint64_t)hi - lo + 1;
	if (span > 4 * (uint64_t)d->nprecincts + 1024)
		return 0;
	d->by_id = malloc(span * sizeof(*d->by_id));
	if (!d->by_id)
		return bal_fail(x->why, x->whylen, -ENOMEM, "out of memory indexing %u precincts", d->nprecincts);
	for (uint64_t k = 0; k < span; k++)
		d->by_id[k] = -1;
	for (uint32_t i = 0; i < d->nprecincts; i++)
		d->by_id[d->precincts[i].id - lo] = (int32_t)i;
	d->id_base = lo;
	d->id_span = (uint32_t)span;
	return 0;
}

/* An optional boolean `key` of `obj`, false when absent. */
static int get_bool(struct ctx *x, const json_t *obj, const char *path, const char *key, bool *out)
{
	json_t *v = json_object_get(obj, key);
	if (v && !json_is_boolean(v))
		return bal_fail(x->why, x->whylen, BAL_EDEFN, "%s.%s: expected true or false, got %s", path, key,
		                type_name(v));
	*out = v && json_is_true(v);
	return 0;
}

/*
 * The plausibility bound of precinct `v` at `path`: registered_voters is
 * required unless the precinct says "unbounded": true, and a margin of its
 * own only widens a bound it has. Adds to the definition's totals.
 */
static int parse_bound(struct ctx *x, const json_t *v, const char *path, struct bal_defn *d, struct bal_precinct *p,
                       uint64_t *bound_total)
{
	static const json_int_t zero = 0;
	json_int_t voters = 0, margin = (json_int_t)d->registration_margin;
	int err = get_bool(x, v, path, "unbounded", &p->unbounded);
	if (err)
		return err;
	if (!p->unbounded && !json_object_get(v, "registered_voters"))
		return bal_fail(x->why, x->whylen, BAL_EDEFN,
		                "%s.registered_voters: missing (expected an integer 0..%lld, or \"unbounded\": true "
		                "for a precinct without plausibility bounds)",
		                path, (long long)JINT_MAX);
	err = get_int(x, v, path, "registered_voters", 0, JINT_MAX, &zero, &voters);
	if (err)
		return err;
	p->registered_voters = (uint64_t)voters;
	if (__builtin_add_overflow(d->registered_total, p->registered_voters, &d->registered_total))
		return bal_fail(x->why, x->whylen, BAL_EDEFN,
		                "%s.registered_voters: %llu makes the total overflow 64 bits", path,
		                (unsigned long long)p->registered_voters);
	if (p->unbounded) {
		if (json_object_get(v, "registration_margin"))
			return bal_fail(x->why, x->whylen, BAL_EDEFN,
			                "%s.registration_margin: an unbounded precinct has no bound to widen (drop the "
			                "margin or \"unbounded\": true)",
			                path);
		p->registration_margin = 0;
		p->max_voters = UINT64_MAX;
		return 0;
	}
	err = get_int(x, v, path, "registration_margin", 0, JINT_MAX, &margin, &margin);
	if (err)
		return err;
	p->registration_margin = (uint64_t)margin;
	p->max_voters = p->registered_voters + p->registration_margin; /* each below 2^63 */
	if (__builtin_add_overflow(*bound_total, p->max_voters, bound_total))
		return bal_fail(x->why, x->whylen, BAL_EDEFN,
		                "%s: registered_voters %llu + registration_margin %llu makes the total of the "
		                "precincts' bounds overflow 64 bits",
		                path, (unsigned long long)p->registered_voters,
		                (unsigned long long)p->registration_margin);
	return 0;
}

static int parse_precincts(struct ctx *x, const json_t *root, struct bal_defn *d, const struct idref *drefs)
{
	static const char *const keys[] = {
	        "id", "district_id", "registered_voters", "unbounded", "registration_margin", "public_key", NULL};
	json_t *arr;
	struct idref *refs = NULL;
	uint64_t bound_total = 0;
	int err = section(x, root, "", "precincts", sizeof(*d->precincts), &arr, (void **)&d->precincts, &refs,
	                  &d->nprecincts);
	for (uint32_t i = 0; i < d->nprecincts && !err; i++) {
		char path[48];
		json_t *v;
		struct bal_precinct *p = &d->precincts[i];
		uint32_t did = 0;
		err = element(x, arr, "precincts", i, keys, path, sizeof(path), &v);
		if (!err)
			err = get_u32(x, v, path, "id", 0, NULL, &p->id);
		if (!err && p->id == BAL_COMMISSION_ID)
			err = bal_fail(x->why, x->whylen, BAL_EDEFN,
			               "%s.id: %u is reserved (it names the commission's amendments in the journal)",
			               path, p->id);
		if (!err)
			err = get_u32(x, v, path, "district_id", 0, NULL, &did);
		if (!err) {
			int32_t di = find_district(drefs, d->ndistricts, did);
			if (di < 0)
				err = bal_fail(x->why, x->whylen, BAL_EDEFN, "%s.district_id: %u is not a district id",
				               path, did);
			p->district = (uint32_t)di;
		}
		if (!err)
			err = parse_bound(x, v, path, d, p, &bound_total);
		if (!err)
			err = parse_key(x, v, path, p);
		refs[i] = (struct idref){p->id, i};
	}
	if (!err)
		err = check_unique(x, refs, d->nprecincts, "precincts");
	free(refs);
	if (!err)
		qsort(d->precincts, d->nprecincts, sizeof(*d->precincts), precinct_cmp);
	if (!err)
		err = index_ids(x, d);
	return err;
}

/* The optional "limits" object: the default registration margin and the seq range. */
static int parse_limits(struct ctx *x, const json_t *root, struct bal_defn *d)
{
	static const char *const keys[] = {"registration_margin", "max_seq", NULL};
	static const json_int_t no_margin = 0, seq_max = UINT32_MAX;
	json_int_t margin = no_margin, max_seq = seq_max;
	json_t *v = json_object_get(root, "limits");
	int err = 0;
	if (v) {
		err = get_object(x, v, "limits");
		if (!err)
			err = check_keys(x, v, "limits", keys);
		if (!err)
			err = get_int(x, v, "limits", "registration_margin", 0, JINT_MAX, &no_margin, &margin);
		if (!err)
			err = get_int(x, v, "limits", "max_seq", 1, JINT_MAX, &seq_max, &max_seq);
	}
	d->registration_margin = (uint64_t)margin;
	d->max_seq = (uint64_t)max_seq;
	return err;
}

/* The optional "commission_key": 64 hex digits of the Ed25519 public key
 * that signs amendments. */
static int parse_commission_key(struct ctx *x, const json_t *root, struct bal_defn *d)
{
	json_t *k = json_object_get(root, "commission_key");
	if (!k)
		return 0;
	if (!json_is_string(k))
		return bal_fail(x->why, x->whylen, BAL_EDEFN,
		                "commission_key: expected 64 hex digits (an Ed25519 public key), got %s", type_name(k));
	const char *hex = json_string_value(k);
	size_t binlen = 0;
	const char *end = NULL;
	if (json_string_length(k) != 2 * ED25519_KEY_BYTES ||
	    sodium_hex2bin(d->commission_key, sizeof(d->commission_key), hex, json_string_length(k), NULL, &binlen,
	                   &end) != 0 ||
	    binlen != ED25519_KEY_BYTES || (end && *end))
		return bal_fail(x->why, x->whylen, BAL_EDEFN,
		                "commission_key: \"%.80s\" is not 64 hex digits (an Ed25519 public key)", hex);
	d->has_commission_key = true;
	return 0;
}

static int hash_canonical(struct ctx *x, const json_t *root, struct bal_defn *d)
{
	char *canon = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
	if (!canon)
		return bal_fail(x->why, x->whylen, -ENOMEM, "out of memory serialising the definition for its hash");
	crypto_hash_sha256(d->hash, (const unsigned char *)canon, strlen(canon));
	free(canon);
	return 0;
}

/* ---- public ----------------------------------------------------------------- */

int bal_defn_parse(const char *json, size_t len, struct bal_defn **out, char *why, size_t whylen)
{
	static const char *const keys[] = {"election", "districts",      "contests", "precincts",
	                                   "limits",   "commission_key", NULL};
	struct ctx x = {why, whylen};
	if (sodium_init() < 0)
		return bal_fail(why, whylen, -ENOMEM, "libsodium failed to initialise");

	json_error_t jerr;
	json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return bal_fail(why, whylen, BAL_EDEFN, "line %d column %d: %s", jerr.line, jerr.column, jerr.text);

	int err;
	struct idref *drefs = NULL;
	struct bal_defn *d = calloc(1, sizeof(*d));
	if (!d) {
		err = bal_fail(why, whylen, -ENOMEM, "out of memory");
		goto fail_root;
	}
	if (!json_is_object(root)) {
		err = bal_fail(why, whylen, BAL_EDEFN, "top level: expected an object, got %s", type_name(root));
		goto fail_defn;
	}
	err = check_keys(&x, root, "top level", keys);
	if (!err)
		err = parse_election(&x, root, d);
	if (!err)
		err = parse_districts(&x, root, d, &drefs);
	if (!err)
		err = parse_contests(&x, root, d, drefs);
	if (!err)
		err = parse_limits(&x, root, d);
	if (!err)
		err = parse_precincts(&x, root, d, drefs);
	if (!err)
		err = parse_commission_key(&x, root, d);
	if (!err)
		err = hash_canonical(&x, root, d);
	if (err)
		goto fail_defn;
	free(drefs);
	json_decref(root);
	*out = d;
	return 0;

fail_defn:
	free(drefs);
	bal_defn_free(d);
fail_root:
	json_decref(root);
	return err;
}

int bal_defn_load(const char *path, struct bal_defn **out, char *why, size_t whylen)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return bal_fail(why, whylen, -errno, "cannot open %s: %s", path, strerror(errno));
	int err = 0;
	char *buf = NULL;
	long size;
	if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
		err = bal_fail(why, whylen, -errno, "cannot read %s: %s", path, strerror(errno));
		goto fail_file;
	}
	buf = malloc((size_t)size + 1);
	if (!buf) {
		err = bal_fail(why, whylen, -ENOMEM, "cannot read %s: %ld bytes: out of memory", path, size);
		goto fail_file;
	}
	if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
		err = bal_fail(why, whylen, ferror(f) ? -EIO : -ENODATA, "cannot read %s: short read", path);
		goto fail_buf;
	}
	err = bal_defn_parse(buf, (size_t)size, out, why, whylen);
fail_buf:
	free(buf);
fail_file:
	fclose(f);
	return err;
}

void bal_defn_free(struct bal_defn *d)
{
	if (!d)
		return;
	free(d->election_id);
	free(d->election_name);
	free(d->election_date);
	for (uint32_t i = 0; i < d->ndistricts; i++)
		free(d->districts[i].name);
	free(d->districts);
	for (uint32_t c = 0; c < d->ncontests; c++) {
		for (uint32_t k = 0; k < d->contests[c].nchoices; k++)
			free(d->contests[c].choices[k].name);
		free(d->contests[c].choices);
		free(d->contests[c].name);
	}
	free(d->contests);
	free(d->precincts);
	free(d->by_id);
	free(d);
}

void bal_defn_hash_hex(const struct bal_defn *d, char hex[65])
{
	static const char digits[] = "0123456789abcdef";
	for (int i = 0; i < 32; i++) {
		hex[2 * i] = digits[d->hash[i] >> 4];
		hex[2 * i + 1] = digits[d->hash[i] & 15];
	}
	hex[64] = '\0';
}
