/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Amendments: the checks of a decoded amendment that need nothing but the
 * definition (core/ballot.h, bal_amendment_check()). What an amendment does
 * to the counters is the tally's (apply.c, bal_tally_void()); what it does to
 * the keys and the precincts the daemon's. libc only.
 */
#include "core/ballot.h"

#include "core/reason.h"

const char *bal_change_name(enum bal_change c)
{
	switch (c) {
	case BAL_CHANGE_REVOKE_KEY: return "revoke_key";
	case BAL_CHANGE_SET_KEY: return "set_key";
	case BAL_CHANGE_VOID: return "void";
	case BAL_CHANGE_FREEZE: return "freeze";
	case BAL_CHANGE_CERTIFY: return "certify";
	case BAL_CHANGE_NONE: break;
	}
	return "none";
}

/* Length of the UTF-8 sequence at s (at most n bytes left), 0 if it is not
 * one in its shortest form or encodes a surrogate or a control character. */
static size_t utf8_char(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	if (c < 0x20 || c == 0x7f)
		return 0;
	if (c < 0x80)
		return 1;
	size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
	if (!len || len > n || c > 0xf4)
		return 0;
	uint32_t cp = c & (0x7f >> len);
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
	if (cp < least[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp < 0xa0))
		return 0;
	return len;
}

static int check_reason(const char *reason, char *why, size_t whylen)
{
	const unsigned char *s = (const unsigned char *)reason;
	size_t n = 0;
	while (s[n])
		n++;
	if (!n)
		return bal_fail(why, whylen, BAL_EINVALID,
		                "an amendment must give a reason (Amendment.reason is empty)");
	if (n > BAL_REASON_MAX)
		return bal_fail(why, whylen, BAL_EINVALID, "reason of %zu bytes is longer than %d", n, BAL_REASON_MAX);
	for (size_t i = 0; i < n;) {
		size_t len = utf8_char(s + i, n - i);
		if (!len)
			return bal_fail(why, whylen, BAL_EINVALID,
			                "reason: byte %zu is not UTF-8 text without control characters", i);
		i += len;
	}
	return 0;
}

int bal_amendment_check(const struct bal_defn *d, const struct bal_amendment *a, char *why, size_t whylen)
{
	if (a->seq < 1)
		return bal_fail(why, whylen, BAL_EINVALID, "amendment seq must be >= 1 (got %llu)",
		                (unsigned long long)a->seq);
	int err = check_reason(a->reason ? a->reason : "", why, whylen);
	if (err)
		return err;
	if (a->change == BAL_CHANGE_SET_KEY && a->public_key_len != 32)
		return bal_fail(why, whylen, BAL_EINVALID,
		                "set_key: public_key is %zu bytes, an Ed25519 public key has 32", a->public_key_len);
	switch (a->change) {
	case BAL_CHANGE_SET_KEY:
	case BAL_CHANGE_REVOKE_KEY:
	case BAL_CHANGE_FREEZE:
		if (bal_defn_precinct(d, a->precinct_id) < 0)
			return bal_fail(why, whylen, BAL_EINVALID, "%s: precinct_id %u is not in the definition",
			                bal_change_name(a->change), a->precinct_id);
		return 0;
	case BAL_CHANGE_VOID:
	case BAL_CHANGE_CERTIFY:
		if (a->position < 1)
			return bal_fail(why, whylen, BAL_EINVALID, "%s: position must be >= 1 (got 0)",
			                bal_change_name(a->change));
		return 0;
	case BAL_CHANGE_NONE: break;
	}
	return bal_fail(why, whylen, BAL_EINVALID,
	                "an amendment must make one change (revoke_key, set_key, void_position, freeze or "
	                "certify_position); this one makes none");
}
