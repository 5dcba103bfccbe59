/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small blocking HTTP/1.1 client for one-off requests (ballotctl snapshot,
 * integration tests): one connection per request, `Connection: close`,
 * responses parsed with http-parser (Content-Length, chunked or
 * close-delimited bodies). Also the server address parser the other clients
 * share.
 *
 * Depends on libc sockets and http-parser; no libuv.
 */
#ifndef BAL_CLIENT_HTTP_H
#define BAL_CLIENT_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define BAL_HTTP_HOST_MAX 256
/** Room for a HOST:PORT: "[" host "]:" and five digits, with the NUL. */
#define BAL_HTTP_SERVER_MAX (BAL_HTTP_HOST_MAX + 8)

/**
 * Reads a server address as users write it, the one grammar of every client's
 * --server: "HOST:PORT", "[v6addr]:PORT", or either after "http://" with an
 * optional trailing '/'. Writes the HOST:PORT part, which the other functions
 * here take, to `out`.
 * @param outlen  BAL_HTTP_SERVER_MAX is always enough
 * @return 0; -EPROTONOSUPPORT for "https://" (no TLS in this client);
 *         -EINVAL otherwise. `why` names the text and what is wrong, on one line.
 */
int bal_http_server(const char *s, char *out, size_t outlen, char *why, size_t whylen);

/**
 * Splits "HOST:PORT" ("[v6addr]:PORT" for IPv6 literals), the form
 * bal_http_server() writes.
 * @param[out] host  NUL-terminated, at most BAL_HTTP_HOST_MAX bytes with the NUL.
 * @return 0; -EPROTONOSUPPORT (https://); -EINVAL with `why` naming the text
 *         and what is wrong.
 */
int bal_http_hostport(const char *s, char host[BAL_HTTP_HOST_MAX], uint16_t *port, char *why, size_t whylen);

struct bal_http_resp {
	int status;             /**< HTTP status code */
	char content_type[128]; /**< "" when absent; truncated if longer */
	char *body;             /**< malloc'd, NUL-terminated (not counted in len) */
	size_t len;
};

/**
 * Sends one request and reads the whole response.
 * @param server  "HOST:PORT"
 * @param body    may be NULL when len is 0; sent with `content_type` (may be NULL)
 * @param timeout_ms  for connecting and for each wait on the socket
 * @param max_body    responses with larger bodies fail with -EFBIG
 * @param[out] out  filled on success; release with bal_http_resp_deinit().
 *                  Zeroed on failure.
 * @return 0; -EINVAL or -EPROTONOSUPPORT (bad server text), -EHOSTUNREACH
 *         (name does not resolve), -errno of connect/send/recv, -ETIMEDOUT, -EPROTO
 *         (response does not parse), -EFBIG, -ENOMEM; `why` says which and where.
 */
int bal_http_request(const char *server, const char *method, const char *path, const void *body, size_t len,
                     const char *content_type, int timeout_ms, size_t max_body, struct bal_http_resp *out, char *why,
                     size_t whylen);

/** Frees the body; safe on a zeroed or already released response. */
void bal_http_resp_deinit(struct bal_http_resp *r);

#endif
