/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Blocking one-shot HTTP/1.1 requests (see http.h): resolve, connect with a
 * timeout, send everything, read to the end of the response. Depends on libc
 * sockets and http-parser (through resp.h); no libuv, no ballot logic.
 */
#include "client/http.h"

#include "client/resp.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* Refuses a URL scheme other than http:// (https:// with the reason: no TLS
 * here); *rest is the text after "http://", or `s` when it has no scheme. */
static int scheme(const char *s, const char **rest, char *why, size_t whylen)
{
	const char *sep = strstr(s, "://");
	*rest = s;
	if (!sep)
		return 0;
	size_t n = (size_t)(sep - s);
	if (n == 5 && strncasecmp(s, "https", 5) == 0) {
		snprintf(why, whylen,
		         "server \"%s\": TLS is not supported by this build yet; use http://HOST:PORT or HOST:PORT", s);
		return -EPROTONOSUPPORT;
	}
	if (n != 4 || strncasecmp(s, "http", 4) != 0) {
		snprintf(why, whylen,
		         "server \"%s\": unknown scheme \"%.*s\"; expected HOST:PORT, [IPv6]:PORT or http://HOST:PORT",
		         s, (int)(n < 32 ? n : 32), s);
		return -EINVAL;
	}
	*rest = sep + 3;
	return 0;
}

/* Splits the HOST:PORT text `hp`; messages name `s`, the text as given. */
static int split(const char *s, const char *hp, char host[BAL_HTTP_HOST_MAX], uint16_t *port, char *why, size_t whylen)
{
	const char *colon, *hs = hp, *he;
	if (hp[0] == '[') {
		he = strchr(hp, ']');
		if (!he || he[1] != ':') {
			snprintf(why, whylen, "server \"%s\": expected [IPv6]:PORT", s);
			return -EINVAL;
		}
		hs = hp + 1;
		colon = he + 1;
	} else {
		colon = strrchr(hp, ':');
		if (!colon) {
			snprintf(why, whylen, "server \"%s\": expected HOST:PORT, [IPv6]:PORT or http://HOST:PORT", s);
			return -EINVAL;
		}
		he = colon;
	}
	size_t hl = (size_t)(he - hs);
	if (hl == 0 || hl >= BAL_HTTP_HOST_MAX) {
		snprintf(why, whylen, "server \"%s\": host must be 1..%d characters", s, BAL_HTTP_HOST_MAX - 1);
		return -EINVAL;
	}
	char *end;
	errno = 0;
	unsigned long p = strtoul(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || p < 1 || p > 65535) {
		snprintf(why, whylen, "server \"%s\": port \"%s\" must be a number from 1 to 65535", s, colon + 1);
		return -EINVAL;
	}
	memcpy(host, hs, hl);
	host[hl] = '\0';
	*port = (uint16_t)p;
	return 0;
}

int bal_http_hostport(const char *s, char host[BAL_HTTP_HOST_MAX], uint16_t *port, char *why, size_t whylen)
{
	const char *rest;
	int rc = scheme(s, &rest, why, whylen);
	if (rc < 0)
		return rc;
	if (rest != s) {
		snprintf(why, whylen, "server \"%s\": expected HOST:PORT here, without http://", s);
		return -EINVAL;
	}
	return split(s, s, host, port, why, whylen);
}

int bal_http_server(const char *s, char *out, size_t outlen, char *why, size_t whylen)
{
	const char *rest;
	int rc = scheme(s, &rest, why, whylen);
	if (rc < 0)
		return rc;
	size_t n = strlen(rest);
	if (n && rest[n - 1] == '/')
		n--;
	char hp[BAL_HTTP_SERVER_MAX];
	size_t max = outlen < sizeof(hp) ? outlen : sizeof(hp);
	if (n >= max) {
		snprintf(why, whylen, "server \"%s\": HOST:PORT longer than %zu characters", s, max - 1);
		return -EINVAL;
	}
	memcpy(hp, rest, n);
	hp[n] = '\0';
	char host[BAL_HTTP_HOST_MAX];
	uint16_t port;
	if ((rc = split(s, hp, host, &port, why, whylen)) < 0)
		return rc;
	memcpy(out, hp, n + 1);
	return 0;
}

/* Waits for `events` on fd; 0, -ETIMEDOUT or -errno. */
static int wait_fd(int fd, short events, int timeout_ms)
{
	struct pollfd pfd = {.fd = fd, .events = events};
	for (;;) {
		int n = poll(&pfd, 1, timeout_ms);
		if (n > 0)
			return 0;
		if (n == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

static int connect_one(const struct addrinfo *ai, int timeout_ms)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
	if (fd < 0)
		return -errno;
	int rc = 0;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		if (errno != EINPROGRESS) {
			rc = -errno;
			goto fail_fd;
		}
		if ((rc = wait_fd(fd, POLLOUT, timeout_ms)) < 0)
			goto fail_fd;
		int err = 0;
		socklen_t elen = sizeof(err);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err) {
			rc = err ? -err : -errno;
			goto fail_fd;
		}
	}
	return fd;

fail_fd:
	close(fd);
	return rc;
}

static int dial(const char *host, uint16_t port, int timeout_ms, char *why, size_t whylen)
{
	char portstr[8];
	snprintf(portstr, sizeof(portstr), "%u", port);
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res;
	int gai = getaddrinfo(host, portstr, &hints, &res);
	if (gai) {
		snprintf(why, whylen, "%s:%u: cannot resolve host: %s", host, port, gai_strerror(gai));
		return -EHOSTUNREACH;
	}
	int fd = -EHOSTUNREACH;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
		if ((fd = connect_one(ai, timeout_ms)) >= 0)
			break;
	freeaddrinfo(res);
	if (fd < 0)
		snprintf(why, whylen, "%s:%u: cannot connect: %s", host, port, strerror(-fd));
	return fd;
}

static int send_all(int fd, const char *p, size_t n, int timeout_ms)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -errno;
			int rc = wait_fd(fd, POLLOUT, timeout_ms);
			if (rc < 0)
				return rc;
			continue;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int mark_done(struct bal_resp *r)
{
	*(bool *)r->ud = true;
	return 0;
}

int bal_http_request(const char *server, const char *method, const char *path, const void *body, size_t len,
                     const char *content_type, int timeout_ms, size_t max_body, struct bal_http_resp *out, char *why,
                     size_t whylen)
{
	memset(out, 0, sizeof(*out));
	char host[BAL_HTTP_HOST_MAX];
	uint16_t port;
	int rc = bal_http_hostport(server, host, &port, why, whylen);
	if (rc < 0)
		return rc;
	int fd = dial(host, port, timeout_ms, why, whylen);
	if (fd < 0)
		return fd;

	char head[1024];
	int hn = snprintf(
	        head, sizeof(head),
	        "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nAccept: */*\r\n%s%s%sContent-Length: %zu\r\n\r\n",
	        method, path, server, content_type ? "Content-Type: " : "", content_type ? content_type : "",
	        content_type ? "\r\n" : "", len);
	if (hn < 0 || (size_t)hn >= sizeof(head)) {
		snprintf(why, whylen, "%s %s: request header over %zu bytes", method, path, sizeof(head));
		rc = -EINVAL;
		goto fail_fd;
	}
	if ((rc = send_all(fd, head, (size_t)hn, timeout_ms)) < 0 || (rc = send_all(fd, body, len, timeout_ms)) < 0) {
		snprintf(why, whylen, "%s %s to %s: send failed: %s", method, path, server, strerror(-rc));
		goto fail_fd;
	}

	bool done = false;
	struct bal_resp r;
	bal_resp_init(&r, NULL, 0, true, max_body, mark_done, &done);
	char buf[16384];
	while (!done) {
		if ((rc = wait_fd(fd, POLLIN, timeout_ms)) < 0) {
			snprintf(why, whylen, "%s %s from %s: no response within %d ms", method, path, server,
			         timeout_ms);
			goto fail_body;
		}
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			rc = -errno;
			snprintf(why, whylen, "%s %s from %s: recv failed: %s", method, path, server, strerror(errno));
			goto fail_body;
		}
		if ((rc = bal_resp_feed(&r, buf, (size_t)n, why, whylen)) < 0)
			goto fail_body;
		if (n == 0 && !done) {
			snprintf(why, whylen, "%s %s from %s: connection closed before the response ended", method,
			         path, server);
			rc = -EPROTO;
			goto fail_body;
		}
	}
	close(fd);
	out->status = r.status;
	snprintf(out->content_type, sizeof(out->content_type), "%s", r.content_type);
	if (!r.body) {
		r.body = malloc(1);
		if (!r.body)
			return -ENOMEM;
		r.body[0] = '\0';
	}
	out->body = r.body;
	out->len = r.len;
	return 0;

fail_body:
	free(r.body);
fail_fd:
	close(fd);
	return rc;
}

void bal_http_resp_deinit(struct bal_http_resp *r)
{
	free(r->body);
	r->body = NULL;
	r->len = 0;
}
