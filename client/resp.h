/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP response collector shared by the blocking client (http.c) and the load
 * engine (load.c): wraps http-parser in HTTP_RESPONSE mode and keeps the
 * status, the Content-Type and the body of the current response, calling a
 * hook as each response completes (several may arrive in one read when
 * requests are pipelined). Depends on http-parser only.
 */
#ifndef BAL_CLIENT_RESP_H
#define BAL_CLIENT_RESP_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>

struct bal_resp;

/** Called once per complete response, from inside bal_resp_feed(). Return 0
 * to go on parsing, nonzero to stop (bal_resp_feed() then reports an error). */
typedef int (*bal_resp_complete_cb_t)(struct bal_resp *r);

/**
 * - `len <= cap`; `body[len]` is a NUL when `cap > len`;
 * - a fixed buffer (`growable` false) keeps the first cap-1 bytes and sets
 *   `truncated`; a growable one reallocs up to `max_body` and then sets `too_big`.
 */
struct bal_resp {
	http_parser parser;
	int status;
	char content_type[128];
	size_t ct_len;
	char field[32]; /* current header name, truncated */
	size_t field_len;
	bool in_value; /* the last callback was a header value */
	char *body;
	size_t len, cap, max_body;
	bool growable, truncated, too_big;
	bal_resp_complete_cb_t complete;
	void *ud; /**< the caller's */
};

/** `buf`/`cap` is the body buffer: owned by the caller when !growable,
 * else may be NULL/0 and is malloc'd (free `r->body` when done). */
void bal_resp_init(struct bal_resp *r, char *buf, size_t cap, bool growable, size_t max_body,
                   bal_resp_complete_cb_t complete, void *ud);

/** Feeds bytes (len 0 signals EOF). @return 0, or -EPROTO with the parser's
 * error name in `why`, or -EFBIG for a body over max_body, or -ENOMEM. */
int bal_resp_feed(struct bal_resp *r, const char *data, size_t len, char *why, size_t whylen);

/** True iff the current response's Content-Type is application/x-protobuf. */
bool bal_resp_is_protobuf(const struct bal_resp *r);

#endif
