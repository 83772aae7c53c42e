/* net.c: TCP connect, the connection object, output buffering and the
 * plain/TLS transport dispatch. TLS is in tls.c, DEFLATE in compress.c. */
#include "net-private.h"
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEFAULT_CONNECT_TIMEOUT_MS 30000
#define DEFAULT_IO_TIMEOUT_MS 60000
/* Silence after which a wait is logged (once): a stall shows at once. */
#define QUIET_LOG_MS 10000

/* Formats a timeout in ms as seconds for messages: "30" or "0.3". */
static const char *
fmt_secs(char *dst, size_t size, int ms)
{
	if (ms % 1000 == 0)
		snprintf(dst, size, "%d", ms / 1000);
	else
		snprintf(dst, size, "%.1f", ms / 1000.0);
	return dst;
}

static const char *
broken_error(struct net_conn *conn)
{
	return err_set("%s", conn->broken_msg);
}

const char *
net_conn_set_broken(struct net_conn *conn, const char *msg)
{
	/* msg is usually err_set() storage: copy it out first, then hand
	 * back err_set() storage again, never a pointer into conn (the
	 * caller may close conn before reporting). */
	if (!conn->broken) {
		str_copy(conn->broken_msg, msg, sizeof(conn->broken_msg));
		conn->broken = true;
	}
	return broken_error(conn);
}

ssize_t
net_sock_recv(struct net_conn *conn, void *data, size_t len)
{
	ssize_t n;

	do
		n = recv(conn->fd, data, len, 0);
	while (n < 0 && errno == EINTR);
	if (n > 0)
		conn->bytes_in += (uint64_t)n;
	return n;
}

ssize_t
net_sock_send(struct net_conn *conn, const void *data, size_t len)
{
	ssize_t n;

	/* MSG_NOSIGNAL: a peer that closed must give EPIPE, never SIGPIPE. */
	do
		n = send(conn->fd, data, len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n > 0)
		conn->bytes_out += (uint64_t)n;
	return n;
}

static ssize_t
sock_sendv(struct net_conn *conn, struct iovec *iov, int iovcnt)
{
	struct msghdr msg;
	ssize_t n;

	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = iov;
	msg.msg_iovlen = (size_t)iovcnt;
	do
		n = sendmsg(conn->fd, &msg, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n > 0)
		conn->bytes_out += (uint64_t)n;
	return n;
}

int
net_io_wait(struct net_conn *conn, short events, bool writing,
            const char **error_r)
{
	struct pollfd pfd = { .fd = conn->fd, .events = events };
	uint64_t start = time_mono_ms();
	uint64_t deadline = start + (uint64_t)conn->opts.io_timeout_ms;
	bool logged = conn->opts.io_timeout_ms <= QUIET_LOG_MS;
	char secs[32], secs2[32];

	/* The timeout counts from the last byte: every read or write that
	 * made progress waits afresh, so a large literal that keeps arriving
	 * never times out; silence while a reply is due does (a stall). */
	for (;;) {
		uint64_t now = time_mono_ms();
		uint64_t until = !logged && start + QUIET_LOG_MS < deadline ?
		                 start + QUIET_LOG_MS : deadline;
		int n = now >= until ? 0 : poll(&pfd, 1, (int)(until - now));

		/* POLLERR/POLLHUP count as ready: the next recv/send reports. */
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR) {
			*error_r = err_errno(errno, "poll on connection to %s failed: %s",
			                   conn->host, strerror(errno));
			return -1;
		}
		now = time_mono_ms();
		if (now >= deadline) {
			*error_r = err_set("timeout after %s s %s %s",
			                   fmt_secs(secs, sizeof(secs),
			                            conn->opts.io_timeout_ms),
			                   writing ? "writing to" : "reading from",
			                   conn->host);
			return -1;
		}
		if (!logged && now >= start + QUIET_LOG_MS) {
			log_info("%s: no progress %s it for %s s; waiting up to %s s",
			         conn->host, writing ? "writing to" : "reading from",
			         fmt_secs(secs, sizeof(secs), QUIET_LOG_MS),
			         fmt_secs(secs2, sizeof(secs2),
			                  conn->opts.io_timeout_ms));
			logged = true;
		}
	}
}

/* Sends all bytes of iov over the plain socket. Modifies iov. */
static int
plain_send(struct net_conn *conn, struct iovec *iov, int iovcnt,
           const char **error_r)
{
	while (iovcnt > 0) {
		ssize_t n;

		if (iov[0].iov_len == 0) {
			iov++;
			iovcnt--;
			continue;
		}
		n = sock_sendv(conn, iov, iovcnt);
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				*error_r = err_errno(errno, "write to %s failed: %s",
				                   conn->host, strerror(errno));
				return -1;
			}
			if (net_io_wait(conn, POLLOUT, true, error_r) < 0)
				return -1;
			continue;
		}
		while (n > 0 && iovcnt > 0) {
			size_t take = (size_t)n < iov[0].iov_len ?
			              (size_t)n : iov[0].iov_len;

			iov[0].iov_base = (char *)iov[0].iov_base + take;
			iov[0].iov_len -= take;
			n -= (ssize_t)take;
			if (iov[0].iov_len == 0) {
				iov++;
				iovcnt--;
			}
		}
	}
	return 0;
}

int
net_transport_send(struct net_conn *conn, const struct iovec *iov,
                   int iovcnt, const char **error_r)
{
	struct iovec v[4];
	int i;

	if (conn->ssl != NULL) {
		for (i = 0; i < iovcnt; i++) {
			if (iov[i].iov_len > 0 &&
			    net_tls_send(conn, iov[i].iov_base, iov[i].iov_len,
			                 error_r) < 0)
				return -1;
		}
		return 0;
	}
	if (iovcnt > (int)N_ELEMENTS(v))
		fatal("net_transport_send: %d iovecs", iovcnt);
	memcpy(v, iov, sizeof(v[0]) * (size_t)iovcnt);
	return plain_send(conn, v, iovcnt, error_r);
}

ssize_t
net_transport_recv(struct net_conn *conn, void *data, size_t len,
                   const char **error_r)
{
	if (buf_len(&conn->unread) > 0 && !conn->unread_decoded) {
		size_t n = buf_len(&conn->unread) < len ?
		           buf_len(&conn->unread) : len;

		memcpy(data, buf_data(&conn->unread), n);
		buf_consume(&conn->unread, n);
		return (ssize_t)n;
	}
	if (conn->ssl != NULL)
		return net_tls_recv(conn, data, len, error_r);
	for (;;) {
		ssize_t n = net_sock_recv(conn, data, len);

		if (n >= 0)
			return n;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			*error_r = err_errno(errno, "read from %s failed: %s",
			                   conn->host, strerror(errno));
			return -1;
		}
		if (net_io_wait(conn, POLLIN, false, error_r) < 0)
			return -1;
	}
}

static struct net_conn *
conn_new(int fd, const char *host, const struct net_options *opts)
{
	struct net_conn *conn = xcalloc(1, sizeof(*conn));
	int one = 1;
	int flags;

	conn->fd = fd;
	conn->host = xstrdup(host != NULL ? host : "(unknown host)");
	if (opts != NULL)
		conn->opts = *opts;
	if (conn->opts.ca_file != NULL)
		conn->ca_file = xstrdup(conn->opts.ca_file);
	conn->opts.ca_file = conn->ca_file;
	if (conn->opts.connect_timeout_ms <= 0)
		conn->opts.connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
	if (conn->opts.io_timeout_ms <= 0)
		conn->opts.io_timeout_ms = DEFAULT_IO_TIMEOUT_MS;
	buf_init(&conn->out, NET_OUT_HIGH);
	buf_init(&conn->unread, NET_UNREAD_MAX);
	str_copy(conn->desc, "plain", sizeof(conn->desc));

	/* All waiting is done with poll(), so the socket never blocks. */
	flags = fcntl(fd, F_GETFL);
	if (flags >= 0 && (flags & O_NONBLOCK) == 0)
		(void)fcntl(fd, F_SETFL, flags | O_NONBLOCK);
	(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	/* Fails harmlessly on non-TCP sockets (socketpair in tests). */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* An idle connection (the source while the target commits, or the
	 * reverse) is kept open through NAT and firewalls, and a dead peer
	 * found, by TCP keepalive: probes after 60 s idle, every 15 s. */
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	{
		int idle = 60, intvl = 15, cnt = 4;

		(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
		(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
		(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	}
	return conn;
}

struct net_conn *
net_conn_from_fd(int fd, const char *host, const struct net_options *opts)
{
	return conn_new(fd, host, opts);
}

/* Appends "; " (unless first) and a formatted piece to a fixed message. */
static void ATTR_PRINTF(3, 4)
msg_add(char *msg, size_t size, const char *fmt, ...)
{
	size_t used = strlen(msg);
	va_list ap;

	if (used + 3 >= size)
		return;
	if (used > 0) {
		memcpy(msg + used, "; ", 3);
		used += 2;
	}
	va_start(ap, fmt);
	vsnprintf(msg + used, size - used, fmt, ap);
	va_end(ap);
}

/* Connects one address with a non-blocking connect and poll. Returns the
 * socket, or -1 with *errno_r (ETIMEDOUT on timeout). */
static int
connect_addr(const struct addrinfo *ai, int timeout_ms, int *errno_r)
{
	struct pollfd pfd;
	uint64_t deadline = time_mono_ms() + (uint64_t)timeout_ms;
	int fd, soerr = 0, timeout = timeout_ms;
	socklen_t slen = sizeof(soerr);

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
	            ai->ai_protocol);
	if (fd < 0) {
		*errno_r = errno;
		return -1;
	}
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
		return fd;
	if (errno != EINPROGRESS && errno != EINTR) {
		*errno_r = errno;
		close(fd);
		return -1;
	}
	pfd.fd = fd;
	pfd.events = POLLOUT;
	for (;;) {
		int n = poll(&pfd, 1, timeout);
		uint64_t now;

		if (n > 0)
			break;
		if (n < 0 && errno != EINTR) {
			*errno_r = errno;
			close(fd);
			return -1;
		}
		now = time_mono_ms();
		if (n == 0 || now >= deadline) {
			*errno_r = ETIMEDOUT;
			close(fd);
			return -1;
		}
		timeout = (int)(deadline - now);
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &slen) < 0)
		soerr = errno;
	if (soerr != 0) {
		*errno_r = soerr;
		close(fd);
		return -1;
	}
	return fd;
}

int
net_connect(const char *host, const char *port, bool implicit_tls,
            const struct net_options *opts, struct net_conn **conn_r,
            const char **error_r)
{
	struct addrinfo hints, *res, *ai;
	struct net_conn *conn;
	char msg[768] = "", secs[32];
	int fd = -1, ret, timeout;

	*conn_r = NULL;
	timeout = opts != NULL && opts->connect_timeout_ms > 0 ?
	          opts->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	ret = getaddrinfo(host, port, &hints, &res);
	if (ret != 0) {
		*error_r = err_set("cannot resolve %s port %s: %s", host, port,
		                   ret == EAI_SYSTEM ? strerror(errno) :
		                   gai_strerror(ret));
		return -1;
	}
	for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
		char addr[NI_MAXHOST];
		int err = 0;

		fd = connect_addr(ai, timeout, &err);
		if (fd >= 0)
			break;
		if (getnameinfo(ai->ai_addr, ai->ai_addrlen, addr, sizeof(addr),
		                NULL, 0, NI_NUMERICHOST) != 0)
			str_copy(addr, "?", sizeof(addr));
		if (err == ETIMEDOUT)
			msg_add(msg, sizeof(msg), "%s: connect timeout after %s s",
			        addr, fmt_secs(secs, sizeof(secs), timeout));
		else
			msg_add(msg, sizeof(msg), "%s: %s", addr, strerror(err));
	}
	freeaddrinfo(res);
	if (fd < 0) {
		*error_r = err_set("cannot connect to %s port %s: %s", host,
		                   port, msg[0] != '\0' ? msg : "no addresses");
		return -1;
	}
	conn = conn_new(fd, host, opts);
	if (implicit_tls && net_conn_start_tls(conn, error_r) < 0) {
		net_conn_close(&conn);
		return -1;
	}
	*conn_r = conn;
	return 0;
}

int
net_conn_start_tls(struct net_conn *conn, const char **error_r)
{
	char c;
	ssize_t n;

	if (conn->broken) {
		*error_r = broken_error(conn);
		return -1;
	}
	if (conn->ssl != NULL) {
		*error_r = err_set("TLS is already active on the connection to %s",
		                   conn->host);
		return -1;
	}
	if (conn->zlib != NULL) {
		*error_r = err_set("cannot start TLS with %s after COMPRESS",
		                   conn->host);
		return -1;
	}
	if (net_conn_flush(conn, error_r) < 0)
		return -1;
	/* In TLS the client speaks first, so any byte from the server that
	 * is already here (given back by the caller, or waiting in the
	 * socket) was sent before the handshake: plaintext that would be
	 * taken as if it came over TLS (CVE-2011-0411 and friends). */
	do
		n = recv(conn->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (buf_len(&conn->unread) > 0 || n > 0) {
		*error_r = err_set("%s sent unexpected plaintext after its "
		                   "STARTTLS response (possible injection "
		                   "attack); refusing to start TLS", conn->host);
		return -1;
	}
	if (net_tls_start(conn, error_r) < 0) {
		*error_r = net_conn_set_broken(conn, *error_r);
		return -1;
	}
	return 0;
}

int
net_conn_start_compress(struct net_conn *conn, const char **error_r)
{
	if (conn->broken) {
		*error_r = broken_error(conn);
		return -1;
	}
	if (conn->zlib != NULL) {
		*error_r = err_set("COMPRESS is already active on the connection "
		                   "to %s", conn->host);
		return -1;
	}
	return net_zlib_start(conn, error_r);
}

int
net_conn_unread(struct net_conn *conn, const void *data, size_t len,
                const char **error_r)
{
	bool decoded = conn->zlib != NULL;

	if (len == 0)
		return 0;
	if (buf_len(&conn->unread) > 0 && conn->unread_decoded != decoded) {
		*error_r = err_set("net_conn_unread: earlier bytes given back "
		                   "before COMPRESS started are still unread");
		return -1;
	}
	/* They go in front of what is still unread from an earlier call. */
	if (buf_len(&conn->unread) > 0) {
		struct buf tmp;

		buf_init(&tmp, NET_UNREAD_MAX);
		if (buf_append(&tmp, data, len) < 0 ||
		    buf_append(&tmp, buf_data(&conn->unread),
		               buf_len(&conn->unread)) < 0) {
			buf_free(&tmp);
			goto too_much;
		}
		buf_free(&conn->unread);
		conn->unread = tmp;
	} else if (buf_append(&conn->unread, data, len) < 0) {
		goto too_much;
	}
	conn->unread_decoded = decoded;
	return 0;
too_much:
	*error_r = err_set("net_conn_unread: more than %d bytes given back",
	                   NET_UNREAD_MAX);
	return -1;
}

/* Sends the output buffer followed by data (may be NULL/0); with sync,
 * ends with a DEFLATE sync flush. Empties the output buffer. */
static int
push_out(struct net_conn *conn, const void *data, size_t len, bool sync,
         const char **error_r)
{
	struct iovec iov[2];
	int ret;

	if (conn->zlib != NULL) {
		bool more = len > 0;

		ret = 0;
		if (buf_len(&conn->out) > 0 || (sync && !more))
			ret = net_zlib_send(conn, buf_data(&conn->out),
			                    buf_len(&conn->out), sync && !more,
			                    error_r);
		if (ret == 0 && more)
			ret = net_zlib_send(conn, data, len, sync, error_r);
	} else {
		iov[0].iov_base = (void *)buf_data(&conn->out);
		iov[0].iov_len = buf_len(&conn->out);
		iov[1].iov_base = (void *)data;
		iov[1].iov_len = len;
		ret = net_transport_send(conn, iov, 2, error_r);
	}
	buf_reset(&conn->out);
	if (ret < 0)
		*error_r = net_conn_set_broken(conn, *error_r);
	return ret;
}

int
net_conn_write(struct net_conn *conn, const void *data, size_t len,
               const char **error_r)
{
	if (conn->broken) {
		*error_r = broken_error(conn);
		return -1;
	}
	if (len <= NET_OUT_HIGH - buf_len(&conn->out)) {
		if (buf_append(&conn->out, data, len) < 0)
			fatal("net_conn_write: output buffer cap");
		return 0;
	}
	/* Big writes go straight out behind what is queued, without a copy. */
	if (len >= NET_OUT_DIRECT)
		return push_out(conn, data, len, false, error_r);
	if (push_out(conn, NULL, 0, false, error_r) < 0)
		return -1;
	if (buf_append(&conn->out, data, len) < 0)
		fatal("net_conn_write: output buffer cap");
	return 0;
}

int
net_conn_flush(struct net_conn *conn, const char **error_r)
{
	if (conn->broken) {
		*error_r = broken_error(conn);
		return -1;
	}
	if (buf_len(&conn->out) == 0 &&
	    (conn->zlib == NULL || !net_zlib_dirty(conn)))
		return 0;
	return push_out(conn, NULL, 0, true, error_r);
}

ssize_t
net_conn_read(struct net_conn *conn, void *data, size_t len,
              const char **error_r)
{
	ssize_t n;

	if (len == 0)
		fatal("net_conn_read: zero length");
	if (net_conn_flush(conn, error_r) < 0)
		return -1;
	if (buf_len(&conn->unread) > 0 && conn->unread_decoded) {
		size_t take = buf_len(&conn->unread) < len ?
		              buf_len(&conn->unread) : len;

		memcpy(data, buf_data(&conn->unread), take);
		buf_consume(&conn->unread, take);
		return (ssize_t)take;
	}
	if (conn->zlib != NULL)
		n = net_zlib_recv(conn, data, len, error_r);
	else
		n = net_transport_recv(conn, data, len, error_r);
	if (n < 0)
		*error_r = net_conn_set_broken(conn, *error_r);
	return n;
}

size_t
net_conn_output_pending(const struct net_conn *conn)
{
	return buf_len(&conn->out);
}

bool
net_conn_is_tls(const struct net_conn *conn)
{
	return conn->ssl != NULL;
}

bool
net_conn_is_compressed(const struct net_conn *conn)
{
	return conn->zlib != NULL;
}

const char *
net_conn_describe(const struct net_conn *conn)
{
	return conn->desc;
}

uint64_t
net_conn_bytes_in(const struct net_conn *conn)
{
	return conn->bytes_in;
}

uint64_t
net_conn_bytes_out(const struct net_conn *conn)
{
	return conn->bytes_out;
}

void
net_conn_close(struct net_conn **connp)
{
	struct net_conn *conn = *connp;

	if (conn == NULL)
		return;
	net_zlib_free(conn);
	net_tls_free(conn);
	if (conn->fd >= 0)
		close(conn->fd);
	buf_free(&conn->out);
	buf_free(&conn->unread);
	free(conn->ca_file);
	free(conn->host);
	free(conn);
	*connp = NULL;
}
