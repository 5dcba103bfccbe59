/* SPDX-License-Identifier: Apache-2.0 */
/*
 * daemon/text.c: the JSON string writer every JSON answer uses (escapes,
 * cutting to a small buffer without splitting an escape, the quoted form),
 * checked against jansson, and the growable buffer.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/text.h"

/* Parses `json` as a document holding one string and returns it (malloc'd). */
static char *parse_string(const char *json)
{
	json_error_t err;
	json_t *v = json_loads(json, JSON_DECODE_ANY, &err);
	cr_assert(v, "not valid JSON (%s): %s", err.text, json);
	cr_assert(json_is_string(v), "not a string: %s", json);
	char *s = strdup(json_string_value(v));
	json_decref(v);
	return s;
}

Test(text, escapes_quotes_backslashes_and_control_characters)
{
	char out[128];
	const char *in = "a \"quoted\" \\path\\ tab\there\nline\x01\x1f del\x7f caf\xc3\xa9";
	size_t n = bal_text_json_escape(out, sizeof(out), in);
	const char *want = "a \\\"quoted\\\" \\\\path\\\\ tab\\u0009here\\u000aline\\u0001\\u001f del\x7f caf\xc3\xa9";
	cr_assert_str_eq(out, want);
	cr_assert_eq(n, strlen(want));

	char doc[160];
	snprintf(doc, sizeof(doc), "\"%s\"", out);
	char *back = parse_string(doc);
	cr_assert_str_eq(back, in, "the escape decodes to what was escaped");
	free(back);
}

Test(text, a_short_buffer_cuts_between_escapes)
{
	const char *in = "ab\"c\x02";
	/* Full: ab\"c\u0002 (11 bytes). Each cap keeps what fits whole, plus the NUL. */
	static const char *const want[] = {
	        "",        "",        "a",       "ab",      "ab",      "ab\\\"",        "ab\\\"c",
	        "ab\\\"c", "ab\\\"c", "ab\\\"c", "ab\\\"c", "ab\\\"c", "ab\\\"c\\u0002"};
	for (size_t cap = 1; cap < sizeof(want) / sizeof(want[0]); cap++) {
		char out[16];
		memset(out, '#', sizeof(out));
		size_t n = bal_text_json_escape(out, cap, in);
		cr_assert_str_eq(out, want[cap], "cap %zu", cap);
		cr_assert_eq(n, strlen(want[cap]));
		for (size_t i = cap; i < sizeof(out); i++)
			cr_assert_eq(out[i], '#', "cap %zu: byte %zu written", cap, i);
	}
}

Test(text, json_appends_a_quoted_literal)
{
	struct bal_text b = {0};
	bal_text_printf(&b, "{\"error\":");
	bal_text_json(&b, "no \"such\" \\ thing\r\n");
	bal_text_printf(&b, ",\"n\":%d}", 7);
	cr_assert(!b.oom);
	cr_assert_str_eq(b.p, "{\"error\":\"no \\\"such\\\" \\\\ thing\\u000d\\u000a\",\"n\":7}");
	cr_assert_eq(b.n, strlen(b.p));
	json_error_t err;
	json_t *v = json_loads(b.p, 0, &err);
	cr_assert(v, "%s", err.text);
	cr_assert_str_eq(json_string_value(json_object_get(v, "error")), "no \"such\" \\ thing\r\n");
	json_decref(v);
	free(b.p);
}

Test(text, grows_past_its_first_block)
{
	struct bal_text b = {0};
	char word[1000];
	memset(word, 'x', sizeof(word) - 1);
	word[sizeof(word) - 1] = '\0';
	for (int i = 0; i < 20; i++)
		bal_text_printf(&b, "%s", word);
	bal_text_json(&b, word);
	cr_assert(!b.oom);
	cr_assert_eq(b.n, 20 * 999 + 999 + 2);
	cr_assert_eq(strlen(b.p), b.n);
	cr_assert_lt(b.n, b.cap);
	free(b.p);
}
