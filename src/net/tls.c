/* tls.c: TLS client side with OpenSSL 3.
 *
 * The SSL object talks to the socket through a small BIO of our own
 * instead of BIO_s_socket(): it sends with MSG_NOSIGNAL (a socket BIO uses
 * write(2), which raises SIGPIPE when the peer has gone away; libpq does
 * the same for the same reason) and it counts wire bytes in the
 * connection. The socket is non-blocking; SSL_ERROR_WANT_READ/WRITE turn
 * into net_io_wait(). */
#include "net-private.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* OpenSSL reads this much from the socket at once (read-ahead), so one
 * recv() brings in several records. */
#define TLS_READ_BUFFER (64 * 1024)

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

bool
net_parse_tls_version(const char *s, int *version_r)
{
	static const struct {
		const char *name;
		int version;
	} versions[] = {
		{ "1.0", TLS1_VERSION },
		{ "1.1", TLS1_1_VERSION },
		{ "1.2", TLS1_2_VERSION },
		{ "1.3", TLS1_3_VERSION },
	};
	size_t i;

	for (i = 0; i < N_ELEMENTS(versions); i++) {
		if (strcmp(s, versions[i].name) == 0) {
			*version_r = versions[i].version;
			return true;
		}
	}
	return false;
}

static int
bio_write(BIO *b, const char *data, int len)
{
	struct net_conn *conn = BIO_get_data(b);
	ssize_t n;

	BIO_clear_retry_flags(b);
	n = net_sock_send(conn, data, (size_t)len);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			BIO_set_retry_write(b);
		else
			conn->sock_errno = errno;
		return -1;
	}
	return (int)n;
}

static int
bio_read(BIO *b, char *data, int len)
{
	struct net_conn *conn = BIO_get_data(b);
	ssize_t n;

	BIO_clear_retry_flags(b);
	n = net_sock_recv(conn, data, (size_t)len);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			BIO_set_retry_read(b);
		else
			conn->sock_errno = errno;
		return -1;
	}
	return (int)n;
}

static long
bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
	case BIO_CTRL_DUP:
		return 1;
	case BIO_CTRL_GET_CLOSE:
		return BIO_get_shutdown(b);
	case BIO_CTRL_SET_CLOSE:
		BIO_set_shutdown(b, (int)num);
		return 1;
	default:
		return 0;
	}
}

static int
bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static int
bio_destroy(BIO *b)
{
	/* The connection owns the socket. */
	(void)b;
	return 1;
}

static void
bio_method_init(void)
{
	int index = BIO_get_new_index();
	BIO_METHOD *m;

	if (index < 0)
		fatal("BIO_get_new_index failed");
	m = BIO_meth_new(index | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
	                 "imapferry socket");
	if (m == NULL || BIO_meth_set_write(m, bio_write) != 1 ||
	    BIO_meth_set_read(m, bio_read) != 1 ||
	    BIO_meth_set_ctrl(m, bio_ctrl) != 1 ||
	    BIO_meth_set_create(m, bio_create) != 1 ||
	    BIO_meth_set_destroy(m, bio_destroy) != 1)
		fatal("cannot set up the OpenSSL BIO method");
	bio_method = m;
}

/* Text of the first queued OpenSSL error (empty queue: fallback). */
static const char *
ssl_reason(char *dst, size_t size, const char *fallback)
{
	unsigned long e = ERR_get_error();
	const char *reason;

	if (e == 0) {
		str_copy(dst, fallback, size);
	} else if ((reason = ERR_reason_error_string(e)) != NULL) {
		str_copy(dst, reason, size);
	} else {
		ERR_error_string_n(e, dst, size);
	}
	ERR_clear_error();
	return dst;
}

static bool
is_ip_literal(const char *host)
{
	unsigned char addr[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, addr) == 1 ||
	       inet_pton(AF_INET6, host, addr) == 1;
}

struct net_tls_ctx {
	SSL_CTX *ctx;
};

static SSL_CTX *
ctx_new(const struct net_options *opts, const char **error_r)
{
	char reason[256];
	SSL_CTX *ctx;

	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL) {
		*error_r = err_set("cannot create TLS context: %s",
		                   ssl_reason(reason, sizeof(reason), "unknown"));
		return NULL;
	}
	/* IMAP frames its own data (tagged completions, literal sizes), and
	 * many servers close without close_notify: a missing one is EOF. */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF |
	                         SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	                      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_default_read_buffer_len(ctx, TLS_READ_BUFFER);

	if (opts->min_tls_version != 0) {
		if (SSL_CTX_set_min_proto_version(ctx, opts->min_tls_version) != 1) {
			*error_r = err_set("unsupported minimum TLS version 0x%x",
			                   (unsigned)opts->min_tls_version);
			goto fail;
		}
		if (opts->min_tls_version < TLS1_2_VERSION) {
			/* TLS 1.0/1.1 need SHA-1 signatures and old ciphers,
			 * which OpenSSL 3 refuses above security level 0; old
			 * servers may also lack RFC 5746 renegotiation. */
			SSL_CTX_set_security_level(ctx, 0);
			if (SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0") != 1) {
				*error_r = err_set("cannot enable legacy TLS ciphers: %s",
				                   ssl_reason(reason, sizeof(reason), "unknown"));
				goto fail;
			}
			SSL_CTX_set_options(ctx, SSL_OP_LEGACY_SERVER_CONNECT);
		}
	}

	if (opts->insecure) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		return ctx;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (opts->ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, opts->ca_file, NULL) != 1) {
			*error_r = err_set("cannot load CA file %s: %s", opts->ca_file,
			                   ssl_reason(reason, sizeof(reason), "unknown"));
			goto fail;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		*error_r = err_set("cannot load the system trust store: %s",
		                   ssl_reason(reason, sizeof(reason), "unknown"));
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/* Error text for a failed SSL call; also marks the TLS state dead so that
 * no close_notify is attempted. */
static const char *
io_error(struct net_conn *conn, int sslerr, bool writing)
{
	const char *dir = writing ? "write to" : "read from";
	char reason[256];

	if (sslerr == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
		ERR_clear_error();
		if (conn->sock_errno != 0)
			return err_set("%s %s failed: %s", dir, conn->host,
			               strerror(conn->sock_errno));
		return err_set("connection to %s closed unexpectedly", conn->host);
	}
	return err_set("TLS %s %s failed: %s", dir, conn->host,
	               ssl_reason(reason, sizeof(reason), "unknown error"));
}

static const char *
handshake_error(struct net_conn *conn, int sslerr)
{
	long vr = SSL_get_verify_result(conn->ssl);
	char reason[256];

	if (!conn->opts.insecure && vr != X509_V_OK) {
		ERR_clear_error();
		return err_set("certificate verify failed for %s: %s "
		               "(use --insecure to skip verification)",
		               conn->host, X509_verify_cert_error_string(vr));
	}
	if (sslerr == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
		ERR_clear_error();
		if (conn->sock_errno != 0)
			return err_set("TLS handshake with %s failed: %s",
			               conn->host, strerror(conn->sock_errno));
		return err_set("TLS handshake with %s failed: connection closed "
		               "by the server", conn->host);
	}
	return err_set("TLS handshake with %s failed: %s", conn->host,
	               ssl_reason(reason, sizeof(reason), "unknown error"));
}

/* Waits for what SSL_ERROR_WANT_READ or SSL_ERROR_WANT_WRITE asked for.
 * Returns 0, or -1 with *error_r on timeout. */
static int
ssl_wait(struct net_conn *conn, int sslerr, bool writing, const char **error_r)
{
	return net_io_wait(conn, sslerr == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
	                   writing, error_r);
}

int
net_tls_start(struct net_conn *conn, const char **error_r)
{
	BIO *bio;
	int ret;

	if (pthread_once(&bio_once, bio_method_init) != 0)
		fatal("pthread_once failed");
	if (conn->opts.tls_ctx != NULL) {
		/* shared: one trust store read for all connections */
		if (SSL_CTX_up_ref(conn->opts.tls_ctx->ctx) != 1)
			fatal("SSL_CTX_up_ref failed");
		conn->ssl_ctx = conn->opts.tls_ctx->ctx;
	} else {
		conn->ssl_ctx = ctx_new(&conn->opts, error_r);
		if (conn->ssl_ctx == NULL)
			return -1;
	}
	conn->ssl = SSL_new(conn->ssl_ctx);
	bio = BIO_new(bio_method);
	if (conn->ssl == NULL || bio == NULL)
		fatal("out of memory creating a TLS session");
	BIO_set_data(bio, conn);
	SSL_set_bio(conn->ssl, bio, bio);
	SSL_set_connect_state(conn->ssl);

	if (!is_ip_literal(conn->host)) {
		/* SNI is sent even when not verifying: virtual hosts need it. */
		if (SSL_set_tlsext_host_name(conn->ssl, conn->host) != 1)
			goto fail_setup;
		if (!conn->opts.insecure) {
			X509_VERIFY_PARAM_set_hostflags(SSL_get0_param(conn->ssl),
			        X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
			if (SSL_set1_host(conn->ssl, conn->host) != 1)
				goto fail_setup;
		}
	} else if (!conn->opts.insecure &&
	           X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(conn->ssl),
	                                         conn->host) != 1) {
		goto fail_setup;
	}

	conn->sock_errno = 0;
	for (;;) {
		int sslerr;

		ERR_clear_error();
		ret = SSL_connect(conn->ssl);
		if (ret == 1)
			break;
		sslerr = SSL_get_error(conn->ssl, ret);
		if (sslerr != SSL_ERROR_WANT_READ && sslerr != SSL_ERROR_WANT_WRITE) {
			*error_r = handshake_error(conn, sslerr);
			goto fail;
		}
		if (ssl_wait(conn, sslerr, sslerr == SSL_ERROR_WANT_WRITE,
		             error_r) < 0)
			goto fail;
	}
	snprintf(conn->desc, sizeof(conn->desc), "%s %s",
	         SSL_get_version(conn->ssl), SSL_get_cipher_name(conn->ssl));
	return 0;

fail_setup:
	*error_r = err_set("cannot set up TLS host name checks for %s",
	                   conn->host);
fail:
	/* The handshake state is lost; free without close_notify. */
	SSL_free(conn->ssl);
	conn->ssl = NULL;
	SSL_CTX_free(conn->ssl_ctx);
	conn->ssl_ctx = NULL;
	return -1;
}

int
net_tls_send(struct net_conn *conn, const void *data, size_t len,
             const char **error_r)
{
	const char *p = data;

	conn->sock_errno = 0;
	while (len > 0) {
		size_t n = 0;
		int sslerr;

		ERR_clear_error();
		if (SSL_write_ex(conn->ssl, p, len, &n) == 1) {
			p += n;
			len -= n;
			continue;
		}
		sslerr = SSL_get_error(conn->ssl, 0);
		if (sslerr != SSL_ERROR_WANT_READ && sslerr != SSL_ERROR_WANT_WRITE) {
			*error_r = io_error(conn, sslerr, true);
			return -1;
		}
		if (ssl_wait(conn, sslerr, true, error_r) < 0)
			return -1;
	}
	return 0;
}

ssize_t
net_tls_recv(struct net_conn *conn, void *data, size_t len,
             const char **error_r)
{
	size_t got = 0, n;
	int sslerr;

	conn->sock_errno = 0;
	for (;;) {
		ERR_clear_error();
		if (SSL_read_ex(conn->ssl, data, len, &got) == 1)
			break;
		sslerr = SSL_get_error(conn->ssl, 0);
		if (sslerr == SSL_ERROR_ZERO_RETURN)
			return 0;
		if (sslerr != SSL_ERROR_WANT_READ && sslerr != SSL_ERROR_WANT_WRITE) {
			*error_r = io_error(conn, sslerr, false);
			return -1;
		}
		if (ssl_wait(conn, sslerr, false, error_r) < 0)
			return -1;
	}
	/* Hand over whatever else is already decrypted or read ahead, so a
	 * 64 KiB buffer gets several records per call. Stops at the first
	 * would-block; errors and EOF surface on the next call. */
	while (got < len && SSL_has_pending(conn->ssl)) {
		ERR_clear_error();
		if (SSL_read_ex(conn->ssl, (char *)data + got, len - got, &n) != 1)
			break;
		got += n;
	}
	ERR_clear_error();
	return (ssize_t)got;
}

void
net_tls_free(struct net_conn *conn)
{
	if (conn->ssl != NULL) {
		/* One non-blocking attempt at close_notify; never wait. */
		if (!conn->broken) {
			ERR_clear_error();
			(void)SSL_shutdown(conn->ssl);
			ERR_clear_error();
		}
		SSL_free(conn->ssl);
		conn->ssl = NULL;
	}
	SSL_CTX_free(conn->ssl_ctx);
	conn->ssl_ctx = NULL;
}

int
net_tls_ctx_new(const struct net_options *o, struct net_tls_ctx **ctx_r,
                const char **error_r)
{
	SSL_CTX *ctx = ctx_new(o, error_r);

	if (ctx == NULL)
		return -1;
	*ctx_r = xcalloc(1, sizeof(**ctx_r));
	(*ctx_r)->ctx = ctx;
	return 0;
}

void
net_tls_ctx_free(struct net_tls_ctx **ctx)
{
	if (*ctx == NULL)
		return;
	SSL_CTX_free((*ctx)->ctx);
	XFREE(*ctx);
}
