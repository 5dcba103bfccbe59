/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP/1.1 framing with Debian's http-parser (nodejs/http-parser 2.9).
 * Only this file and the connection code see raw HTTP; nothing here knows
 * about ballots. Header values are inspected only for Accept and Expect;
 * http-parser itself handles Content-Length, chunked bodies and keep-alive.
 *
 * http-parser 2.9 takes a bare LF for CRLF, unfolds obs-fold lines and
 * takes "Content-Length : 3" for a Content-Length whatever
 * HTTP_PARSER_STRICT says (tests/unit/daemon/test_http.c shows each case).
 * A proxy in front that reads such a head otherwise would frame the stream
 * otherwise, so they are refused here: scan_head() checks the line ends and
 * line starts of each head once (memchr from line to line), on_header_field
 * the names, on_url the target.
 */
#include "daemon/http.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static struct bal_http *from_parser(http_parser *p)
{
	return p->data;
}

void bal_http_fail(struct bal_http *h, int status, const char *fmt, ...)
{
	if (h->error_status)
		return;
	h->error_status = status;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(h->error_why, sizeof(h->error_why), fmt, ap);
	va_end(ap);
}

static int count_head(struct bal_http *h, size_t n)
{
	h->header_bytes += n;
	if (h->header_bytes > h->max_header) {
		bal_http_fail(h, 431, "request line and headers exceed %zu bytes (--max-header)", h->max_header);
		return -1;
	}
	return 0;
}

enum { SCAN_OFF, SCAN_LINE, SCAN_LINE_START };

/*
 * Checks the lines of a request head from `p` on, up to `end` or the empty
 * line that ends the head, whichever comes first: each line ends in CRLF,
 * and no line after the request line starts with SP or HT. Resumes where
 * the previous call stopped (h->scan); starts in the request line at its
 * target (on_url). Returns 0, or -1 with the stream failed.
 */
static int scan_head(struct bal_http *h, const char *p, const char *end)
{
	/* The state lives in locals for the loop: this runs on every request. */
	uint8_t scan = h->scan;
	bool first = h->scan_first;
	size_t line = h->scan_line;
	while (p < end && scan != SCAN_OFF) {
		if (scan == SCAN_LINE_START && (*p == ' ' || *p == '\t')) {
			bal_http_fail(h, 400,
			              "a header line starts with whitespace (obs-fold line folding is not accepted)");
			return -1;
		}
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl) {
			line += (size_t)(end - p);
			h->scan_last = end[-1];
			scan = SCAN_LINE;
			break;
		}
		size_t len = line + (size_t)(nl - p); /* bytes before the LF */
		if (len == 0 || (nl > p ? nl[-1] : h->scan_last) != '\r') {
			bal_http_fail(h, 400, "%s ends in a bare LF, not CRLF",
			              first ? "the request line" : "a header line");
			return -1;
		}
		p = nl + 1;
		line = 0;
		/* The empty line ends the head: the body, if any, follows. */
		scan = len == 1 && !first ? SCAN_OFF : SCAN_LINE_START;
		first = false;
	}
	h->scan = scan;
	h->scan_first = first;
	h->scan_line = line;
	return 0;
}

static int on_message_begin(http_parser *p)
{
	struct bal_http *h = from_parser(p);
	memset(&h->req, 0, sizeof(h->req));
	h->scan = SCAN_OFF;
	h->url_seen = false;
	h->req.content_length = UINT64_MAX;
	h->header_bytes = 0;
	h->hname_len = 0;
	h->hname_done = false;
	h->hval_len = 0;
	h->in_message = true;
	int st = h->hooks->on_begin(h->ctx);
	return st ? -1 : 0;
}

/* Whether s[0..n) holds a byte <= 0x20 or 0x7f: eight bytes a step (every
 * request's target goes through here). */
static bool has_ctl(const char *s, size_t n)
{
	const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t x;
		memcpy(&x, s + i, 8);
		uint64_t del = x ^ (0x7f * ones);
		if (((x - 0x21 * ones) & ~x & highs) || ((del - ones) & ~del & highs))
			return true;
	}
	for (; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
			return true;
	return false;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
	struct bal_http *h = from_parser(p);
	if (count_head(h, n))
		return -1;
	if (h->req.url_len + n >= sizeof(h->req.url)) {
		bal_http_fail(h, 414, "request target longer than %d bytes", BAL_HTTP_MAX_URL - 1);
		return -1;
	}
	if (has_ctl(at, n)) {
		for (size_t i = 0; i < n; i++) {
			unsigned char ch = (unsigned char)at[i];
			if (ch <= ' ' || ch == 0x7f) {
				bal_http_fail(h, 400,
				              "the request target holds a control character or a space (0x%02x)", ch);
				return -1;
			}
		}
	}
	memcpy(h->req.url + h->req.url_len, at, n);
	h->req.url_len += n;
	h->req.url[h->req.url_len] = '\0';
	if (!h->url_seen) {
		/* The head's lines are checked from here on, ahead of the parser. */
		h->url_seen = true;
		h->scan = SCAN_LINE;
		h->scan_first = true;
		h->scan_line = 0;
		return scan_head(h, at, h->feed_end);
	}
	return 0;
}

/* Whether an Accept value names application/x-protobuf (any case, anywhere in the list). */
static bool has_protobuf(const char *v)
{
	static const char want[] = "application/x-protobuf";
	for (; *v; v++)
		if ((*v | 0x20) == 'a' && strncasecmp(v, want, sizeof(want) - 1) == 0)
			return true;
	return false;
}

/* A completed header (name in hname, value in hval). */
static void header_done(struct bal_http *h)
{
	if (!h->hname_done)
		return;
	h->hval[h->hval_len] = '\0';
	if (strcmp(h->hname, "accept") == 0) {
		if (has_protobuf(h->hval))
			h->req.accept_protobuf = true;
	} else if (strcmp(h->hname, "expect") == 0) {
		if (strcasecmp(h->hval, "100-continue") == 0)
			h->req.expect_continue = true;
	}
	h->hname_len = 0;
	h->hval_len = 0;
	h->hname_done = false;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
	struct bal_http *h = from_parser(p);
	if (count_head(h, n))
		return -1;
	if (h->hname_done)
		header_done(h);
	/* http-parser refuses a tab in a name itself, not a space before the colon. */
	if (memchr(at, ' ', n)) {
		bal_http_fail(h, 400, "whitespace between a header name and its colon");
		return -1;
	}
	for (size_t i = 0; i < n && h->hname_len + 1 < sizeof(h->hname); i++)
		h->hname[h->hname_len++] = (char)(at[i] >= 'A' && at[i] <= 'Z' ? at[i] + 32 : at[i]);
	h->hname[h->hname_len] = '\0';
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
	struct bal_http *h = from_parser(p);
	if (count_head(h, n))
		return -1;
	h->hname_done = true;
	size_t room = sizeof(h->hval) - 1 - h->hval_len;
	if (n > room)
		n = room;
	memcpy(h->hval + h->hval_len, at, n);
	h->hval_len += n;
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	struct bal_http *h = from_parser(p);
	header_done(h);
	h->req.method = p->method;
	h->req.keep_alive = http_should_keep_alive(p) != 0;
	if (p->flags & F_CONTENTLENGTH)
		h->req.content_length = p->content_length;
	if (h->hooks->on_headers(h->ctx, &h->req))
		return -1;
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
	struct bal_http *h = from_parser(p);
	return h->hooks->on_body(h->ctx, at, n) ? -1 : 0;
}

static int on_message_complete(http_parser *p)
{
	struct bal_http *h = from_parser(p);
	h->in_message = false;
	h->req.keep_alive = http_should_keep_alive(p) != 0;
	int r = h->hooks->on_complete(h->ctx, &h->req);
	if (r < 0)
		return -1;
	if (r == 1) {
		h->paused = true;
		http_parser_pause(p, 1);
	}
	return 0;
}

static http_parser_settings settings = {
        .on_message_begin = on_message_begin,
        .on_url = on_url,
        .on_header_field = on_header_field,
        .on_header_value = on_header_value,
        .on_headers_complete = on_headers_complete,
        .on_body = on_body,
        .on_message_complete = on_message_complete,
};

void bal_http_init(struct bal_http *h, const struct bal_http_hooks *hooks, void *ctx, size_t max_header)
{
	memset(h, 0, sizeof(*h));
	http_parser_init(&h->parser, HTTP_REQUEST);
	h->parser.data = h;
	h->settings = &settings;
	h->hooks = hooks;
	h->ctx = ctx;
	h->max_header = max_header;
}

size_t bal_http_feed(struct bal_http *h, const char *data, size_t n)
{
	if (h->error_status || h->paused)
		return 0;
	/* n == 0 (the end of input) may come with data == NULL: no arithmetic on it. */
	const char *end = n ? data + n : data;
	h->feed_end = end;
	if (h->scan != SCAN_OFF && scan_head(h, data, end))
		return 0; /* the rest of a head begun in earlier bytes */
	size_t used = http_parser_execute(&h->parser, h->settings, data, n);
	enum http_errno e = HTTP_PARSER_ERRNO(&h->parser);
	if (e == HPE_PAUSED)
		return used;
	if (e != HPE_OK) {
		if (e == HPE_HEADER_OVERFLOW)
			bal_http_fail(h, 431, "request headers too large");
		else
			bal_http_fail(h, 400, "malformed HTTP request: %s", http_errno_description(e));
		return used;
	}
	return used;
}

void bal_http_resume(struct bal_http *h)
{
	if (!h->paused)
		return;
	h->paused = false;
	http_parser_pause(&h->parser, 0);
}

const char *bal_http_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 414: return "URI Too Long";
	case 422: return "Unprocessable Entity";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	case 507: return "Insufficient Storage";
	default: return "Unknown";
	}
}

/* Appends `n` bytes at *at if they fit before `end`; false (and nothing written) if not. */
static bool put(char **at, const char *end, const char *s, size_t n)
{
	if ((size_t)(end - *at) < n)
		return false;
	memcpy(*at, s, n);
	*at += n;
	return true;
}

static bool put_str(char **at, const char *end, const char *s)
{
	return put(at, end, s, strlen(s));
}

static bool put_u64(char **at, const char *end, uint64_t v)
{
	char digits[20];
	size_t n = 0;
	do {
		digits[sizeof(digits) - 1 - n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return put(at, end, digits + sizeof(digits) - n, n);
}

size_t bal_http_head(char *buf, size_t cap, int status, const char *ctype, size_t body_len, bool keep_alive,
                     const char *extra)
{
	/* Built by hand: this runs once per request, and printf's machinery
	 * costs more than the rest of an ack together. */
	char *at = buf;
	const char *end = buf + cap;
	bool ok = status >= 100 && status <= 999 && put(&at, end, "HTTP/1.1 ", 9) &&
	          put_u64(&at, end, (uint64_t)status) && put(&at, end, " ", 1) &&
	          put_str(&at, end, bal_http_reason(status)) && put(&at, end, "\r\nContent-Type: ", 16) &&
	          put_str(&at, end, ctype) && put(&at, end, "\r\nContent-Length: ", 18) &&
	          put_u64(&at, end, body_len) && put(&at, end, "\r\n", 2) &&
	          (keep_alive || put(&at, end, "Connection: close\r\n", 19)) && (!extra || put_str(&at, end, extra)) &&
	          put(&at, end, "\r\n", 2) && at < end;
	if (!ok)
		return 0;
	*at = '\0';
	return (size_t)(at - buf);
}
