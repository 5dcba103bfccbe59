/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Listening sockets: one per I/O worker on the same address. With more than
 * one worker they share the port through SO_REUSEPORT, so the kernel spreads
 * connections across loops. Port 0 takes a free port for the first socket,
 * the others bind that same port.
 */
#include "daemon/listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int open_one(const struct sockaddr *sa, socklen_t len, bool reuseport, char *why, size_t whylen)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(why, whylen, "socket: %s", strerror(errno));
		return -errno;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
		int err = -errno;
		snprintf(why, whylen, "SO_REUSEPORT: %s", strerror(errno));
		close(fd);
		return err;
	}
	if (bind(fd, sa, len) != 0) {
		int err = -errno;
		snprintf(why, whylen, "bind: %s", strerror(errno));
		close(fd);
		return err;
	}
	return fd;
}

int bal_listen_open(const char *host, unsigned port, unsigned n, int *fds, unsigned *bound_port, char *why,
                    size_t whylen)
{
	struct sockaddr_storage ss;
	socklen_t len;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		len = sizeof(*s4);
	} else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		len = sizeof(*s6);
	} else {
		snprintf(why, whylen, "'%s' is not an IPv4 or IPv6 address", host);
		return -EINVAL;
	}
	if (n > 1 && port != 0) {
		/* SO_REUSEPORT lets any process of this user join a port whose
		 * sockets all set it: a second ballotd started by mistake on the same
		 * port would silently take half the connections. A plain bind first
		 * fails if anything listens there already. */
		int probe = open_one((struct sockaddr *)&ss, len, false, why, whylen);
		if (probe < 0)
			return probe;
		close(probe);
	}
	unsigned i;
	for (i = 0; i < n; i++) {
		int fd = open_one((struct sockaddr *)&ss, len, n > 1, why, whylen);
		if (fd < 0) {
			while (i--)
				close(fds[i]);
			return fd;
		}
		fds[i] = fd;
		if (i == 0) {
			/* Port 0: the rest bind the port the kernel picked. */
			struct sockaddr_storage got;
			socklen_t gl = sizeof(got);
			getsockname(fd, (struct sockaddr *)&got, &gl);
			uint16_t p = got.ss_family == AF_INET ? ((struct sockaddr_in *)&got)->sin_port
			                                      : ((struct sockaddr_in6 *)&got)->sin6_port;
			if (ss.ss_family == AF_INET)
				s4->sin_port = p;
			else
				s6->sin6_port = p;
			*bound_port = ntohs(p);
		}
	}
	return 0;
}
