/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP/1.1 request framing on top of http-parser: request line, the few
 * headers we act on, body delivery, keep-alive, pipelining, limits. No ballot
 * logic here, and no libuv: bytes in, callbacks out.
 *
 * A stream error (malformed request, headers beyond the cap, body beyond the
 * cap) sets `error_status` and `error_why`; the connection answers that and
 * closes, since the framing of whatever follows is unknown.
 *
 * The head is read strictly (RFC 9112), where http-parser is lenient: every
 * line of it ends in CRLF (a bare LF is 400), no header line starts with SP
 * or HT (obs-fold is 400), no whitespace sits between a header name and its
 * colon (400), and the request target holds no control character or space
 * (400). Two readers must never frame one byte stream differently.
 *
 * Threads: any; a struct bal_http belongs to the thread of its connection.
 */
#ifndef BAL_DAEMON_HTTP_H
#define BAL_DAEMON_HTTP_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BAL_HTTP_MAX_URL 512

/** The parts of a request the daemon acts on. Valid from on_headers to on_complete. */
struct bal_http_req {
	unsigned method; /**< enum http_method */
	char url[BAL_HTTP_MAX_URL];
	size_t url_len;
	bool accept_protobuf; /**< Accept names application/x-protobuf */
	bool expect_continue; /**< Expect: 100-continue */
	bool keep_alive;
	uint64_t content_length; /**< UINT64_MAX if absent (chunked or none) */
};

struct bal_http;

/** Callbacks into the connection. A non-zero return is an HTTP status that
 * ends the stream (the callee has set error_why via bal_http_fail()). */
struct bal_http_hooks {
	int (*on_begin)(void *ctx);
	int (*on_headers)(void *ctx, const struct bal_http_req *req);
	int (*on_body)(void *ctx, const char *at, size_t n);
	/** Request complete. Return 0 to go on parsing, 1 to pause (no request free). */
	int (*on_complete)(void *ctx, const struct bal_http_req *req);
};

/**
 * Parser state of one connection.
 * - `error_status != 0` iff the stream is broken; nothing more is parsed;
 * - `header_bytes <= max_header` while a request's head is being read.
 */
struct bal_http {
	http_parser parser;
	http_parser_settings *settings;
	const struct bal_http_hooks *hooks;
	void *ctx;
	struct bal_http_req req;
	size_t max_header;
	size_t header_bytes;
	bool in_message;
	bool paused;
	char hname[32]; /**< current header name, lower-cased, truncated */
	size_t hname_len;
	bool hname_done;
	char hval[128]; /**< current header value (only for headers we read) */
	size_t hval_len;
	/* Line check of the head, from the request target to the empty line
	 * (see http.c: scan_head()); it may run ahead of the parser within
	 * the bytes being fed, never beyond them. */
	const char *feed_end; /**< end of the bytes bal_http_feed() is parsing */
	uint8_t scan;         /**< SCAN_OFF, SCAN_LINE or SCAN_LINE_START */
	bool scan_first;      /**< in the request line */
	bool url_seen;        /**< the request target's first bytes came */
	char scan_last;       /**< last byte scanned, when a line goes on in the next bytes fed */
	size_t scan_line;     /**< bytes of the current line scanned so far */
	int error_status;
	char error_why[160];
};

/** Starts a connection's parser: `hooks` get `ctx`; request line and headers are capped at `max_header` bytes. */
void bal_http_init(struct bal_http *h, const struct bal_http_hooks *hooks, void *ctx, size_t max_header);

/**
 * Parses `n` bytes. Returns how many were consumed: all of them, unless the
 * parser paused (on_complete returned 1; the rest must be fed again after
 * bal_http_resume()) or the stream broke (error_status set).
 */
size_t bal_http_feed(struct bal_http *h, const char *data, size_t n);
/** Lifts a pause (on_complete returned 1); the bytes not consumed are fed again next. */
void bal_http_resume(struct bal_http *h);
/** Marks the stream broken with `status` and a reason (printf-style). */
void bal_http_fail(struct bal_http *h, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/** Reason phrase for a status code. */
const char *bal_http_reason(int status);

/**
 * Writes a response head into buf. `extra` holds whole header lines
 * ("Retry-After: 1\r\n") or is NULL. Returns the length, or 0 if cap is too small.
 */
size_t bal_http_head(char *buf, size_t cap, int status, const char *ctype, size_t body_len, bool keep_alive,
                     const char *extra);

#endif
