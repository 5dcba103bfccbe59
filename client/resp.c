/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP response collector (see resp.h). http-parser may split a header name,
 * a header value or the body over several callbacks; each piece is appended.
 */
#include "client/resp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static struct bal_resp *of(http_parser *p)
{
	return p->data;
}

static void append(char *dst, size_t *len, size_t cap, const char *s, size_t n)
{
	size_t room = cap - 1 - *len;
	if (n > room)
		n = room;
	memcpy(dst + *len, s, n);
	*len += n;
	dst[*len] = '\0';
}

static int on_message_begin(http_parser *p)
{
	struct bal_resp *r = of(p);
	r->status = 0;
	r->content_type[0] = '\0';
	r->ct_len = 0;
	r->field_len = 0;
	r->in_value = false;
	r->len = 0;
	if (r->body && r->cap)
		r->body[0] = '\0';
	r->truncated = false;
	return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
	struct bal_resp *r = of(p);
	if (r->in_value) {
		r->field_len = 0;
		r->in_value = false;
	}
	append(r->field, &r->field_len, sizeof(r->field), at, n);
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
	struct bal_resp *r = of(p);
	r->in_value = true;
	if (r->field_len == 12 && strncasecmp(r->field, "content-type", 12) == 0)
		append(r->content_type, &r->ct_len, sizeof(r->content_type), at, n);
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	of(p)->status = (int)p->status_code;
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
	struct bal_resp *r = of(p);
	if (r->growable) {
		if (r->len + n > r->max_body) {
			r->too_big = true;
			return 1;
		}
		if (r->len + n + 1 > r->cap) {
			size_t cap = r->cap ? r->cap : 4096;
			while (cap < r->len + n + 1)
				cap *= 2;
			char *nb = realloc(r->body, cap);
			if (!nb)
				return 1;
			r->body = nb;
			r->cap = cap;
		}
	} else if (r->len + n + 1 > r->cap) {
		r->truncated = true;
	}
	if (r->cap)
		append(r->body, &r->len, r->cap, at, n);
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct bal_resp *r = of(p);
	return r->complete ? r->complete(r) : 0;
}

static const http_parser_settings settings = {
        .on_message_begin = on_message_begin,
        .on_header_field = on_header_field,
        .on_header_value = on_header_value,
        .on_headers_complete = on_headers_complete,
        .on_body = on_body,
        .on_message_complete = on_message_complete,
};

void bal_resp_init(struct bal_resp *r, char *buf, size_t cap, bool growable, size_t max_body,
                   bal_resp_complete_cb_t complete, void *ud)
{
	memset(r, 0, sizeof(*r));
	http_parser_init(&r->parser, HTTP_RESPONSE);
	r->parser.data = r;
	r->body = buf;
	r->cap = cap;
	r->growable = growable;
	r->max_body = max_body;
	r->complete = complete;
	r->ud = ud;
	if (r->body && r->cap)
		r->body[0] = '\0';
}

int bal_resp_feed(struct bal_resp *r, const char *data, size_t len, char *why, size_t whylen)
{
	size_t n = http_parser_execute(&r->parser, &settings, data, len);
	enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
	if (r->too_big) {
		snprintf(why, whylen, "response body over the %zu-byte limit", r->max_body);
		return -EFBIG;
	}
	if (e == HPE_CB_body) {
		snprintf(why, whylen, "out of memory reading a response body of %zu+ bytes", r->len);
		return -ENOMEM;
	}
	if (e != HPE_OK || n != len) {
		snprintf(why, whylen, "response does not parse as HTTP/1.1: %s (%s)", http_errno_name(e),
		         http_errno_description(e));
		return -EPROTO;
	}
	return 0;
}

bool bal_resp_is_protobuf(const struct bal_resp *r)
{
	return strncasecmp(r->content_type, "application/x-protobuf", 22) == 0;
}
