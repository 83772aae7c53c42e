/* test_net.c: net/ against servers run in threads on 127.0.0.1 (plain,
 * TLS with a certificate made here, STARTTLS, COMPRESS=DEFLATE).
 *
 * Server threads never call cmocka (its failures longjmp); they record
 * errors in struct server and the test checks after joining. They block
 * SIGPIPE for themselves; the test thread leaves it at the default, so a
 * client write that raised SIGPIPE would kill the test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <zlib.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "net.h"

#define MB (1024 * 1024)
#define CHUNK (64 * 1024)

/* ---- test data: deterministic, random or text, by stream offset ---- */

static uint64_t
splitmix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* Bytes below random_len are incompressible, the rest is mail-like text. */
static void
gen_fill(unsigned char *p, size_t len, uint64_t off, uint64_t random_len)
{
	static const char text[] =
		"Subject: quarterly report\r\nFrom: alice@example.com\r\n"
		"The numbers look good, see the attached spreadsheet.\r\n";
	size_t i;

	for (i = 0; i < len; i++, off++) {
		if (off < random_len)
			p[i] = (unsigned char)(splitmix(off >> 3) >> ((off & 7) * 8));
		else
			p[i] = (unsigned char)text[off % (sizeof(text) - 1)];
	}
}

/* ---- certificates ---- */

struct cert {
	EVP_PKEY *key;
	X509 *x509;
	char path[64];
};

static struct cert cert_local;   /* CN=localhost, DNS:localhost, IP:127.0.0.1 */
static struct cert cert_other;   /* CN=other.example, DNS:other.example */

static void
cert_make(struct cert *c, const char *cn, const char *san, long serial)
{
	X509_NAME *name;
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	FILE *f;
	int fd;

	c->key = EVP_EC_gen("P-256");
	assert_non_null(c->key);
	c->x509 = X509_new();
	assert_non_null(c->x509);
	X509_set_version(c->x509, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(c->x509), serial);
	X509_gmtime_adj(X509_getm_notBefore(c->x509), -3600);
	X509_gmtime_adj(X509_getm_notAfter(c->x509), 86400);
	X509_set_pubkey(c->x509, c->key);
	name = X509_get_subject_name(c->x509);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	                           (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(c->x509, name);
	X509V3_set_ctx(&v3, c->x509, c->x509, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
	assert_non_null(ext);
	X509_add_ext(c->x509, ext, -1);
	X509_EXTENSION_free(ext);
	assert_true(X509_sign(c->x509, c->key, EVP_sha256()) > 0);

	str_copy(c->path, "/tmp/test_net_cert_XXXXXX", sizeof(c->path));
	fd = mkstemp(c->path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_X509(f, c->x509), 1);
	assert_int_equal(fclose(f), 0);
}

static void
cert_free(struct cert *c)
{
	if (c->path[0] != '\0')
		unlink(c->path);
	X509_free(c->x509);
	EVP_PKEY_free(c->key);
	memset(c, 0, sizeof(*c));
}

static SSL_CTX *
server_ctx(const struct cert *c, int min_version, int max_version)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_use_certificate(ctx, c->x509), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(ctx, c->key), 1);
	if (min_version != 0)
		SSL_CTX_set_min_proto_version(ctx, min_version);
	if (max_version != 0)
		SSL_CTX_set_max_proto_version(ctx, max_version);
	if (min_version != 0 && min_version < TLS1_2_VERSION) {
		SSL_CTX_set_security_level(ctx, 0);
		SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0");
	}
	return ctx;
}

static int
group_setup(void **state)
{
	(void)state;
	cert_make(&cert_local, "localhost", "DNS:localhost,IP:127.0.0.1", 1);
	cert_make(&cert_other, "other.example", "DNS:other.example", 2);
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	cert_free(&cert_local);
	cert_free(&cert_other);
	return 0;
}

/* ---- server threads ---- */

enum srv_mode {
	SRV_XFER,       /* read size bytes, check, send size bytes */
	SRV_SILENT,     /* accept, say and read nothing until woken */
	SRV_CLOSE,      /* accept (and TLS handshake), then close */
	SRV_ECHO,       /* greeting, echo one line */
	SRV_STARTTLS,   /* plain greeting, STARTTLS, then as SRV_ECHO */
	SRV_COMPRESS,   /* greeting, COMPRESS, then as SRV_XFER compressed */
};

struct server {
	pthread_t thread;
	int lfd;
	int wake[2];
	char port[16];
	enum srv_mode mode;
	SSL_CTX *ctx;           /* implicit TLS (or after STARTTLS) */
	bool inject;            /* STARTTLS: plaintext behind the OK */
	size_t size;
	uint64_t random_len;

	/* results */
	bool handshake_ok;
	char sni[256];
	bool failed;
	char error[256];
};

struct sio {
	int fd;
	SSL *ssl;
};

static void ATTR_PRINTF(2, 3)
srv_fail(struct server *srv, const char *fmt, ...)
{
	va_list ap;

	if (srv->failed)
		return;
	srv->failed = true;
	va_start(ap, fmt);
	vsnprintf(srv->error, sizeof(srv->error), fmt, ap);
	va_end(ap);
}

static ssize_t
sio_read(struct sio *io, void *p, size_t len)
{
	ssize_t n;

	if (io->ssl != NULL) {
		size_t got;

		if (SSL_read_ex(io->ssl, p, len, &got) == 1)
			return (ssize_t)got;
		return SSL_get_error(io->ssl, 0) == SSL_ERROR_ZERO_RETURN ? 0 : -1;
	}
	do
		n = read(io->fd, p, len);
	while (n < 0 && errno == EINTR);
	return n;
}

static int
sio_write(struct sio *io, const void *p, size_t len)
{
	const char *s = p;

	while (len > 0) {
		ssize_t n;

		if (io->ssl != NULL) {
			size_t done;

			if (SSL_write_ex(io->ssl, s, len, &done) != 1)
				return -1;
			n = (ssize_t)done;
		} else {
			n = write(io->fd, s, len);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return -1;
		}
		s += n;
		len -= (size_t)n;
	}
	return 0;
}

/* One byte at a time, so nothing after the line is consumed. */
static int
sio_read_line(struct sio *io, char *line, size_t size)
{
	size_t len = 0;

	while (len + 1 < size) {
		if (sio_read(io, line + len, 1) != 1)
			return -1;
		if (line[len++] == '\n')
			break;
	}
	line[len] = '\0';
	return 0;
}

static void
sio_drain(struct sio *io)
{
	char tmp[CHUNK];

	while (sio_read(io, tmp, sizeof(tmp)) > 0)
		;
}

static bool
srv_accept_tls(struct server *srv, struct sio *io, SSL_CTX *ctx)
{
	const char *sni;

	io->ssl = SSL_new(ctx);
	SSL_set_fd(io->ssl, io->fd);
	srv->handshake_ok = SSL_accept(io->ssl) == 1;
	if (!srv->handshake_ok)
		return false;
	sni = SSL_get_servername(io->ssl, TLSEXT_NAMETYPE_host_name);
	if (sni != NULL)
		str_copy(srv->sni, sni, sizeof(srv->sni));
	return true;
}

static void
srv_expect_line(struct server *srv, struct sio *io, const char *want)
{
	char line[256];

	if (sio_read_line(io, line, sizeof(line)) < 0)
		srv_fail(srv, "no line, wanted %s", want);
	else if (strcmp(line, want) != 0)
		srv_fail(srv, "got line \"%s\", wanted \"%s\"", line, want);
}

static void
srv_echo(struct server *srv, struct sio *io)
{
	char line[256];

	if (sio_write(io, "* OK ready\r\n", 12) < 0 ||
	    sio_read_line(io, line, sizeof(line)) < 0 ||
	    sio_write(io, line, strlen(line)) < 0)
		srv_fail(srv, "echo failed");
	sio_drain(io);
}

static void
srv_xfer(struct server *srv, struct sio *io)
{
	unsigned char *got = malloc(CHUNK), *want = malloc(CHUNK);
	size_t off = 0;

	while (off < srv->size && !srv->failed) {
		size_t max = srv->size - off < CHUNK ? srv->size - off : CHUNK;
		ssize_t n = sio_read(io, got, max);

		if (n <= 0) {
			srv_fail(srv, "read failed at %zu", off);
			break;
		}
		gen_fill(want, (size_t)n, off, srv->random_len);
		if (memcmp(got, want, (size_t)n) != 0)
			srv_fail(srv, "data differs near %zu", off);
		off += (size_t)n;
	}
	for (off = 0; off < srv->size && !srv->failed; off += CHUNK) {
		size_t n = srv->size - off < CHUNK ? srv->size - off : CHUNK;

		gen_fill(want, n, off, srv->random_len);
		if (sio_write(io, want, n) < 0)
			srv_fail(srv, "write failed at %zu", off);
	}
	sio_drain(io);
	free(got);
	free(want);
}

static int
deflate_send(struct sio *io, z_stream *zs, const void *data, size_t len,
             int flush)
{
	unsigned char out[CHUNK];

	zs->next_in = (unsigned char *)data;
	zs->avail_in = (uInt)len;
	do {
		int ret;

		zs->next_out = out;
		zs->avail_out = sizeof(out);
		ret = deflate(zs, flush);
		if (ret != Z_OK && ret != Z_BUF_ERROR)
			return -1;
		if (sio_write(io, out, sizeof(out) - zs->avail_out) < 0)
			return -1;
	} while (zs->avail_out == 0);
	return 0;
}

static void
srv_compress(struct server *srv, struct sio *io)
{
	static const char greeting[] = "* compressed greeting\r\n";
	unsigned char *in = malloc(CHUNK), *got = malloc(CHUNK), *want = malloc(CHUNK);
	z_stream zi, zo;
	size_t off = 0;

	memset(&zi, 0, sizeof(zi));
	memset(&zo, 0, sizeof(zo));
	inflateInit2(&zi, -15);
	deflateInit2(&zo, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8,
	             Z_DEFAULT_STRATEGY);
	if (sio_write(io, "* OK\r\n", 6) < 0)
		srv_fail(srv, "greeting");
	srv_expect_line(srv, io, "c COMPRESS DEFLATE\r\n");
	/* The OK and the first compressed bytes in one TCP segment: the
	 * client reads both and has to give the rest back. */
	{
		unsigned char seg[512];
		size_t len;

		memcpy(seg, "c OK\r\n", 6);
		zo.next_in = (unsigned char *)(uintptr_t)greeting;
		zo.avail_in = sizeof(greeting) - 1;
		zo.next_out = seg + 6;
		zo.avail_out = sizeof(seg) - 6;
		if (deflate(&zo, Z_SYNC_FLUSH) != Z_OK || zo.avail_in != 0)
			srv_fail(srv, "deflate greeting");
		len = sizeof(seg) - zo.avail_out;
		if (sio_write(io, seg, len) < 0)
			srv_fail(srv, "write OK");
	}
	while (off < srv->size && !srv->failed) {
		size_t produced;
		int ret;

		if (zi.avail_in == 0) {
			ssize_t n = sio_read(io, in, CHUNK);

			if (n <= 0) {
				srv_fail(srv, "compressed read failed at %zu", off);
				break;
			}
			zi.next_in = in;
			zi.avail_in = (uInt)n;
		}
		zi.next_out = got;
		zi.avail_out = (uInt)(srv->size - off < CHUNK ? srv->size - off : CHUNK);
		ret = inflate(&zi, Z_SYNC_FLUSH);
		if (ret != Z_OK && ret != Z_BUF_ERROR) {
			srv_fail(srv, "inflate: %d at %zu", ret, off);
			break;
		}
		produced = (size_t)(zi.next_out - got);
		gen_fill(want, produced, off, srv->random_len);
		if (memcmp(got, want, produced) != 0)
			srv_fail(srv, "decompressed data differs near %zu", off);
		off += produced;
	}
	for (off = 0; off < srv->size && !srv->failed; off += CHUNK) {
		size_t n = srv->size - off < CHUNK ? srv->size - off : CHUNK;
		bool last = off + n == srv->size;

		gen_fill(want, n, off, srv->random_len);
		if (deflate_send(io, &zo, want, n,
		                 last ? Z_SYNC_FLUSH : Z_NO_FLUSH) < 0)
			srv_fail(srv, "deflate write failed at %zu", off);
	}
	sio_drain(io);
	inflateEnd(&zi);
	deflateEnd(&zo);
	free(in);
	free(got);
	free(want);
}

static void *
server_main(void *arg)
{
	struct server *srv = arg;
	struct pollfd pfd = { .fd = srv->lfd, .events = POLLIN };
	struct timeval tv = { .tv_sec = 10 };
	struct sio io = { -1, NULL };
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	if (poll(&pfd, 1, 10000) != 1 || (io.fd = accept(srv->lfd, NULL, NULL)) < 0) {
		srv_fail(srv, "no connection");
		return NULL;
	}
	setsockopt(io.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(io.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));

	switch (srv->mode) {
	case SRV_XFER:
		if (srv->ctx == NULL || srv_accept_tls(srv, &io, srv->ctx))
			srv_xfer(srv, &io);
		break;
	case SRV_SILENT:
		pfd.fd = srv->wake[0];
		(void)poll(&pfd, 1, 10000);
		break;
	case SRV_CLOSE:
		if (srv->ctx != NULL)
			(void)srv_accept_tls(srv, &io, srv->ctx);
		break;
	case SRV_ECHO:
		if (srv_accept_tls(srv, &io, srv->ctx))
			srv_echo(srv, &io);
		break;
	case SRV_STARTTLS:
		if (sio_write(&io, "* OK\r\n", 6) < 0)
			srv_fail(srv, "greeting");
		srv_expect_line(srv, &io, "a STARTTLS\r\n");
		if (srv->inject) {
			static const char msg[] = "a OK begin\r\n* BYE injected\r\n";

			/* One write, so both arrive together. */
			if (sio_write(&io, msg, sizeof(msg) - 1) < 0)
				srv_fail(srv, "write");
			sio_drain(&io);
			break;
		}
		if (sio_write(&io, "a OK begin\r\n", 12) < 0)
			srv_fail(srv, "write");
		if (srv_accept_tls(srv, &io, srv->ctx))
			srv_echo(srv, &io);
		break;
	case SRV_COMPRESS:
		if (srv->ctx == NULL || srv_accept_tls(srv, &io, srv->ctx))
			srv_compress(srv, &io);
		break;
	}
	if (io.ssl != NULL) {
		(void)SSL_shutdown(io.ssl);
		SSL_free(io.ssl);
	}
	close(io.fd);
	ERR_clear_error();
	return NULL;
}

static int
listen_loopback(int backlog, char *port, size_t port_size)
{
	struct sockaddr_in sin;
	socklen_t slen = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	if (backlog >= 0)
		assert_int_equal(listen(fd, backlog), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &slen), 0);
	snprintf(port, port_size, "%u", ntohs(sin.sin_port));
	return fd;
}

static void
server_start(struct server *srv, enum srv_mode mode, SSL_CTX *ctx)
{
	srv->mode = mode;
	srv->ctx = ctx;
	srv->lfd = listen_loopback(16, srv->port, sizeof(srv->port));
	assert_int_equal(pipe(srv->wake), 0);
	assert_int_equal(pthread_create(&srv->thread, NULL, server_main, srv), 0);
}

/* Wakes a silent server, joins, and fails the test if the server did. */
static void
server_finish(struct server *srv)
{
	assert_int_equal(write(srv->wake[1], "x", 1), 1);
	pthread_join(srv->thread, NULL);
	close(srv->lfd);
	close(srv->wake[0]);
	close(srv->wake[1]);
	if (srv->ctx != NULL)
		SSL_CTX_free(srv->ctx);
	if (srv->failed)
		fail_msg("server: %s", srv->error);
}

static int
tcp_connect(const char *port)
{
	struct sockaddr_in sin;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	uint64_t num;

	assert_true(fd >= 0);
	assert_true(str_to_u64z(port, 65535, &num));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)num);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	return fd;
}

/* ---- client helpers ---- */

static struct net_options
opts_default(void)
{
	struct net_options o;

	memset(&o, 0, sizeof(o));
	o.connect_timeout_ms = 5000;
	o.io_timeout_ms = 10000;
	return o;
}

/* Connects to srv (TLS when tls) with o; a failure fails the test. */
static struct net_conn *
connect_ok(const struct server *srv, bool tls, const struct net_options *o)
{
	struct net_conn *conn = NULL;
	const char *error = NULL;

	if (net_connect("127.0.0.1", srv->port, tls, o, &conn, &error) < 0)
		fail_msg("connect: %s", error);
	return conn;
}

/* Writes 1 MB blocks of zeros to conn, at most max of them, until a write
 * fails. Returns the last write's result (-1 with *error_r set). */
static int
write_until_error(struct net_conn *conn, int max, const char **error_r)
{
	unsigned char *chunk = xcalloc(1, MB);
	int ret = 0;

	for (int i = 0; i < max && ret == 0; i++)
		ret = net_conn_write(conn, chunk, MB, error_r);
	free(chunk);
	return ret;
}

/* Reads one line the way the IMAP layer does (big reads), and gives what
 * follows the line back with net_conn_unread(). */
static void
client_read_line(struct net_conn *conn, char *line, size_t size)
{
	const char *error = NULL;
	size_t len = 0;
	char *nl;

	for (;;) {
		ssize_t n = net_conn_read(conn, line + len, size - 1 - len, &error);

		if (n <= 0)
			fail_msg("read line: %s", n == 0 ? "EOF" : error);
		len += (size_t)n;
		line[len] = '\0';
		nl = memchr(line, '\n', len);
		if (nl != NULL)
			break;
		assert_true(len < size - 1);
	}
	nl++;
	assert_int_equal(net_conn_unread(conn, nl, len - (size_t)(nl - line),
	                                 &error), 0);
	*nl = '\0';
}

static void
client_send(struct net_conn *conn, const char *s)
{
	const char *error = NULL;

	if (net_conn_write(conn, s, strlen(s), &error) < 0 ||
	    net_conn_flush(conn, &error) < 0)
		fail_msg("send: %s", error);
}

/* Writes size bytes in a mix of chunk sizes that hits every buffer path. */
static void
client_write_data(struct net_conn *conn, size_t size, uint64_t random_len)
{
	static const size_t sizes[] = { 1, 7, 1000, 65535, 65536, 300000,
	                                4096, MB, 200000, 100 };
	unsigned char *chunk = malloc(MB);
	const char *error = NULL;
	size_t off = 0, i = 0;

	while (off < size) {
		size_t n = sizes[i++ % N_ELEMENTS(sizes)];

		if (n > size - off)
			n = size - off;
		gen_fill(chunk, n, off, random_len);
		if (net_conn_write(conn, chunk, n, &error) < 0)
			fail_msg("write at %zu: %s", off, error);
		assert_true(net_conn_output_pending(conn) <= 256 * 1024);
		off += n;
	}
	if (net_conn_flush(conn, &error) < 0)
		fail_msg("flush: %s", error);
	assert_int_equal(net_conn_output_pending(conn), 0);
	free(chunk);
}

static void
client_read_data(struct net_conn *conn, size_t size, uint64_t random_len)
{
	unsigned char *got = malloc(CHUNK), *want = malloc(CHUNK);
	const char *error = NULL;
	size_t off = 0;

	while (off < size) {
		size_t max = size - off < CHUNK ? size - off : CHUNK;
		ssize_t n = net_conn_read(conn, got, max, &error);

		if (n <= 0)
			fail_msg("read at %zu: %s", off, n == 0 ? "EOF" : error);
		gen_fill(want, (size_t)n, off, random_len);
		if (memcmp(got, want, (size_t)n) != 0)
			fail_msg("data differs near %zu", off);
		off += (size_t)n;
	}
	free(got);
	free(want);
}

static void
assert_contains(const char *s, const char *part)
{
	if (s == NULL || strstr(s, part) == NULL)
		fail_msg("\"%s\" does not contain \"%s\"", s != NULL ? s : "(null)",
		         part);
}

/* ---- plain TCP ---- */

static void
test_plain_transfer(void **state)
{
	struct server srv = { .size = 10 * MB, .random_len = 10 * MB };
	struct net_options o = opts_default();
	struct net_conn *conn = NULL;

	(void)state;
	server_start(&srv, SRV_XFER, NULL);
	conn = connect_ok(&srv, false, &o);
	assert_false(net_conn_is_tls(conn));
	assert_false(net_conn_is_compressed(conn));
	assert_string_equal(net_conn_describe(conn), "plain");
	client_write_data(conn, srv.size, srv.random_len);
	client_read_data(conn, srv.size, srv.random_len);
	assert_true(net_conn_bytes_out(conn) == srv.size);
	assert_true(net_conn_bytes_in(conn) == srv.size);
	net_conn_close(&conn);
	assert_null(conn);
	net_conn_close(&conn);
	server_finish(&srv);
}

static void
test_read_timeout(void **state)
{
	struct server srv = { 0 };
	struct net_options o = opts_default();
	struct net_conn *conn = NULL;
	const char *error = NULL;
	char tmp[CHUNK];
	uint64_t start;

	(void)state;
	server_start(&srv, SRV_SILENT, NULL);
	o.io_timeout_ms = 300;
	conn = connect_ok(&srv, false, &o);
	start = time_mono_ms();
	assert_int_equal(net_conn_read(conn, tmp, sizeof(tmp), &error), -1);
	assert_true(time_mono_ms() - start >= 250);
	assert_true(time_mono_ms() - start < 3000);
	assert_string_equal(error, "timeout after 0.3 s reading from 127.0.0.1");
	/* The connection stays failed with the same message. */
	error = NULL;
	assert_int_equal(net_conn_read(conn, tmp, sizeof(tmp), &error), -1);
	assert_string_equal(error, "timeout after 0.3 s reading from 127.0.0.1");
	assert_int_equal(net_conn_write(conn, "x", 1, &error), -1);
	net_conn_close(&conn);
	server_finish(&srv);
}

static void
test_write_timeout(void **state)
{
	struct server srv = { 0 };
	struct net_options o = opts_default();
	struct net_conn *conn = NULL;
	const char *error = NULL;

	(void)state;
	server_start(&srv, SRV_SILENT, NULL);
	o.io_timeout_ms = 200;
	conn = connect_ok(&srv, false, &o);
	/* The server reads nothing: socket buffers fill up. */
	assert_int_equal(write_until_error(conn, 512, &error), -1);
	assert_string_equal(error, "timeout after 0.2 s writing to 127.0.0.1");
	net_conn_close(&conn);
	server_finish(&srv);
}

static void
test_connect_refused(void **state)
{
	struct net_options o = opts_default();
	struct net_conn *conn = NULL;
	const char *error = NULL;
	char port[16], want[128];
	int fd;

	(void)state;
	/* Bound but not listening: nobody else can take the port meanwhile. */
	fd = listen_loopback(-1, port, sizeof(port));
	assert_int_equal(net_connect("127.0.0.1", port, false, &o, &conn, &error), -1);
	assert_null(conn);
	snprintf(want, sizeof(want),
	         "cannot connect to 127.0.0.1 port %s: 127.0.0.1: Connection refused",
	         port);
	assert_string_equal(error, want);
	close(fd);

	assert_int_equal(net_connect("127.0.0.1", "no-such-service-xyz", false,
	                             &o, &conn, &error), -1);
	assert_contains(error, "cannot resolve 127.0.0.1 port no-such-service-xyz");
}

static void
test_connect_timeout(void **state)
{
	struct net_options o = opts_default();
	struct net_conn *conn = NULL;
	const char *error = NULL;
	char port[16];
	uint64_t start;
	int lfd, filler;

	(void)state;
	/* Backlog 0 holds one connection; further SYNs are dropped, so the
	 * next connect hangs like one to an unreachable host. */
	lfd = listen_loopback(0, port, sizeof(port));
	filler = tcp_connect(port);
	o.connect_timeout_ms = 300;
	start = time_mono_ms();
	assert_int_equal(net_connect("127.0.0.1", port, false, &o, &conn, &error), -1);
	assert_true(time_mono_ms() - start >= 250);
	assert_true(time_mono_ms() - start < 3000);
	assert_contains(error, "cannot connect to 127.0.0.1 port ");
	assert_contains(error, "127.0.0.1: connect timeout after 0.3 s");
	close(filler);
	close(lfd);
}

/* Socketpair: unread, EOF, and writing to a closed peer without SIGPIPE. */
static void
test_unread_eof_epipe(void **state)
{
	struct net_options o = opts_default();
	struct net_conn *conn;
	const char *error = NULL;
	char tmp[CHUNK];
	int sv[2], i, ret = 0;
	ssize_t n;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	conn = net_conn_from_fd(sv[0], "peer", &o);
	assert_int_equal(write(sv[1], "hello world", 11), 11);
	n = net_conn_read(conn, tmp, sizeof(tmp), &error);
	assert_int_equal(n, 11);
	assert_int_equal(net_conn_unread(conn, tmp + 6, 5, &error), 0);
	assert_int_equal(net_conn_unread(conn, "my ", 3, &error), 0);
	n = net_conn_read(conn, tmp, 4, &error);
	assert_int_equal(n, 4);
	assert_memory_equal(tmp, "my w", 4);
	n = net_conn_read(conn, tmp, sizeof(tmp), &error);
	assert_int_equal(n, 4);
	assert_memory_equal(tmp, "orld", 4);
	assert_int_equal(net_conn_bytes_in(conn), 11);

	assert_int_equal(net_conn_write(conn, "abc", 3, &error), 0);
	assert_int_equal(net_conn_output_pending(conn), 3);
	assert_int_equal(net_conn_flush(conn, &error), 0);
	assert_int_equal(read(sv[1], tmp, sizeof(tmp)), 3);

	close(sv[1]);
	assert_int_equal(net_conn_read(conn, tmp, sizeof(tmp), &error), 0);
	for (i = 0; i < 100 && ret == 0; i++)
		ret = net_conn_write(conn, tmp, sizeof(tmp), &error);
	if (ret == 0)
		ret = net_conn_flush(conn, &error);
	assert_int_equal(ret, -1);
	assert_contains(error, "write to peer failed: ");
	net_conn_close(&conn);
}

/* ---- TLS ---- */

static void
tls_expect_refused(SSL_CTX *ctx, const struct net_options *o,
                   const char *want)
{
	struct server srv = { 0 };
	struct net_conn *conn = NULL;
	const char *error = NULL;

	server_start(&srv, SRV_ECHO, ctx);
	assert_int_equal(net_connect("127.0.0.1", srv.port, true, o, &conn,
	                             &error), -1);
	assert_null(conn);
	assert_contains(error, want);
	server_finish(&srv);
	assert_false(srv.handshake_ok);
}

static void
tls_expect_echo(struct net_conn *conn)
{
	char line[256];

	client_read_line(conn, line, sizeof(line));
	assert_string_equal(line, "* OK ready\r\n");
	client_send(conn, "a NOOP\r\n");
	client_read_line(conn, line, sizeof(line));
	assert_string_equal(line, "a NOOP\r\n");
}

static void
test_tls_default_refuses_self_signed(void **state)
{
	struct net_options o = opts_default();

	(void)state;
	tls_expect_refused(server_ctx(&cert_local, 0, 0), &o,
	                   "certificate verify failed for 127.0.0.1: "
	                   "self-signed certificate "
	                   "(use --insecure to skip verification)");
}

static void
test_tls_insecure_accepts(void **state)
{
	struct server srv = { 0 };
	struct net_options o = opts_default();
	struct net_conn *conn = NULL;

	(void)state;
	o.insecure = true;
	server_start(&srv, SRV_ECHO, server_ctx(&cert_other, 0, 0));
	conn = connect_ok(&srv, true, &o);
	assert_true(net_conn_is_tls(conn));
	assert_true(strncmp(net_conn_describe(conn), "TLSv1.3 TLS_", 12) == 0);
	tls_expect_echo(conn);
	/* Wire bytes include the handshake. */
	assert_true(net_conn_bytes_in(conn) > 200);
	assert_true(net_conn_bytes_out(conn) > 100);
	net_conn_close(&conn);
	server_finish(&srv);
	assert_true(srv.handshake_ok);
	assert_string_equal(srv.sni, "");   /* no SNI for IP literals */
}

static void
test_tls_ca_file_ip(void **state)
{
	struct server srv = { .size = 2 * MB, .random_len = MB };
	struct net_options o = opts_default();
	struct net_conn *conn = NULL;

	(void)state;
	o.ca_file = cert_local.path;
	server_start(&srv, SRV_XFER, server_ctx(&cert_local, 0, 0));
	conn = connect_ok(&srv, true, &o);
	client_write_data(conn, srv.size, srv.random_len);
	client_read_data(conn, srv.size, srv.random_len);
	assert_true(net_conn_bytes_out(conn) > srv.size);
	assert_true(net_conn_bytes_in(conn) > srv.size);
	net_conn_close(&conn);
	server_finish(&srv);
}

static void
test_tls_ca_file_dns_name(void **state)
{
	struct server srv = { 0 };
	struct net_options o = opts_default();
	struct net_conn *conn;
	const char *error = NULL;

	(void)state;
	o.ca_file = cert_local.path;
	server_start(&srv, SRV_ECHO, server_ctx(&cert_local, 0, 0));
	conn = net_conn_from_fd(tcp_connect(srv.port), "localhost", &o);
	if (net_conn_start_tls(conn, &error) < 0)
		fail_msg("start_tls: %s", error);
	tls_expect_echo(conn);
	net_conn_close(&conn);
	server_finish(&srv);
	assert_string_equal(srv.sni, "localhost");
}

static void
test_tls_ip_mismatch(void **state)
{
	struct net_options o = opts_default();

	(void)state;
	o.ca_file = cert_other.path;
	tls_expect_refused(server_ctx(&cert_other, 0, 0), &o,
	                   "certificate verify failed for 127.0.0.1: "
	                   "IP address mismatch");
}

static void
test_tls_hostname_mismatch(void **state)
{
	struct server srv = { 0 };
	struct net_options o = opts_default();
	struct net_conn *conn;
	const char *error = NULL;

	(void)state;
	o.ca_file = cert_local.path;
	server_start(&srv, SRV_ECHO, server_ctx(&cert_local, 0, 0));
	conn = net_conn_from_fd(tcp_connect(srv.port), "wrong.example", &o);
	assert_int_equal(net_conn_start_tls(conn, &error), -1);
	assert_contains(error, "certificate verify failed for wrong.example: "
	                "hostname mismatch");
	assert_false(net_conn_is_tls(conn));
	net_conn_close(&conn);
	server_finish(&srv);
}

static void
test_tls_ca_file_missing(void **state)
{
	struct server srv = { 0 };
	struct net_options o = opts_default();
	struct net_conn *conn = NULL;
	const char *error = NULL;

	(void)state;
	o.ca_file = "/nonexistent/ca.pem";
	server_start(&srv, SRV_CLOSE, NULL);
	assert_int_equal(net_connect("127.0.0.1", srv.port, true, &o, &conn,
	                             &error), -1);
	assert_contains(error, "cannot load CA file /nonexistent/ca.pem");
	server_finish(&srv);
}

/* One TLS context shared by connections: the trust store is read once
 * (a CA file removed after the context was made does not matter), and a
 * connection keeps the context after the caller dropped it. */
static void
test_tls_shared_ctx(void **state)
{
	struct server srv = { 0 }, srv2 = { 0 };
	struct net_options o = opts_default();
	struct net_tls_ctx *ctx = NULL;
	struct net_conn *conn = NULL, *conn2 = NULL;
	const char *error = NULL;
	char ca[] = "/tmp/test_net_ca_XXXXXX", buf[65536];
	int in, out;
	ssize_t n;

	(void)state;
	out = mkstemp(ca);
	assert_true(out >= 0);
	in = open(cert_local.path, O_RDONLY);
	assert_true(in >= 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		assert_int_equal(write(out, buf, (size_t)n), n);
	close(in);
	close(out);
	o.ca_file = ca;
	assert_int_equal(net_tls_ctx_new(&o, &ctx, &error), 0);
	unlink(ca);
	/* without the shared context the CA file is read again: gone */
	server_start(&srv, SRV_CLOSE, NULL);
	assert_int_equal(net_connect("127.0.0.1", srv.port, true, &o, &conn,
	                             &error), -1);
	assert_contains(error, "cannot load CA file");
	server_finish(&srv);
	/* with it, two verified connections */
	o.tls_ctx = ctx;
	server_start(&srv, SRV_ECHO, server_ctx(&cert_local, 0, 0));
	server_start(&srv2, SRV_ECHO, server_ctx(&cert_local, 0, 0));
	conn = connect_ok(&srv, true, &o);
	conn2 = connect_ok(&srv2, true, &o);
	net_tls_ctx_free(&ctx);
	assert_null(ctx);
	tls_expect_echo(conn);
	tls_expect_echo(conn2);
	net_conn_close(&conn);
	net_conn_close(&conn2);
	server_finish(&srv);
	server_finish(&srv2);
	/* a context for an unreadable CA file fails when made */
	o.tls_ctx = NULL;
	o.ca_file = "/nonexistent/ca.pem";
	assert_int_equal(net_tls_ctx_new(&o, &ctx, &error), -1);
	assert_contains(error, "cannot load CA file /nonexistent/ca.pem");
}

static void
test_tls_versions(void **state)
{
	struct server srv = { 0 };
	struct net_options o = opts_default();
	struct net_conn *conn = NULL;
	const char *error = NULL;
	int v = 0;

	(void)state;
	assert_true(net_parse_tls_version("1.0", &v) && v == TLS1_VERSION);
	assert_true(net_parse_tls_version("1.1", &v) && v == TLS1_1_VERSION);
	assert_true(net_parse_tls_version("1.2", &v) && v == TLS1_2_VERSION);
	assert_true(net_parse_tls_version("1.3", &v) && v == TLS1_3_VERSION);
	assert_false(net_parse_tls_version("1.4", &v));
	assert_false(net_parse_tls_version("", &v));
	assert_false(net_parse_tls_version("1.2 ", &v));

	/* Server stops at 1.2, client wants 1.3. */
	o.insecure = true;
	o.min_tls_version = TLS1_3_VERSION;
	tls_expect_refused(server_ctx(&cert_local, 0, TLS1_2_VERSION), &o,
	                   "TLS handshake with 127.0.0.1 failed: ");

	/* A TLS 1.0-only server: refused by default, fine with 1.0 allowed. */
	o.min_tls_version = 0;
	tls_expect_refused(server_ctx(&cert_local, TLS1_VERSION, TLS1_VERSION),
	                   &o, "TLS handshake with 127.0.0.1 failed: ");
	o.min_tls_version = TLS1_VERSION;
	server_start(&srv, SRV_ECHO,
	             server_ctx(&cert_local, TLS1_VERSION, TLS1_VERSION));
	if (net_connect("127.0.0.1", srv.port, true, &o, &conn, &error) < 0)
		fail_msg("TLS 1.0 connect: %s", error);
	assert_true(strncmp(net_conn_describe(conn), "TLSv1 ", 6) == 0);
	tls_expect_echo(conn);
	net_conn_close(&conn);
	server_finish(&srv);
}

/* A server that dies mid-session must give an error, never SIGPIPE. */
static void
test_tls_peer_gone(void **state)
{
	struct server srv = { 0 };
	struct net_options o = opts_default();
	struct net_conn *conn = NULL;
	const char *error = NULL;
	int ret;

	(void)state;
	o.insecure = true;
	server_start(&srv, SRV_CLOSE, server_ctx(&cert_local, 0, 0));
	conn = connect_ok(&srv, true, &o);
	server_finish(&srv);
	ret = write_until_error(conn, 200, &error);
	if (ret == 0)
		ret = net_conn_flush(conn, &error);
	assert_int_equal(ret, -1);
	assert_contains(error, "127.0.0.1");
	net_conn_close(&conn);
}

/* ---- STARTTLS ---- */

static struct net_conn *
starttls_begin(struct server *srv, const struct net_options *o)
{
	struct net_conn *conn = NULL;
	char line[256];

	conn = connect_ok(srv, false, o);
	client_read_line(conn, line, sizeof(line));
	assert_string_equal(line, "* OK\r\n");
	client_send(conn, "a STARTTLS\r\n");
	return conn;
}

static void
test_starttls(void **state)
{
	struct server srv = { 0 };
	struct net_options o = opts_default();
	struct net_conn *conn;
	const char *error = NULL;
	char line[256];

	(void)state;
	o.ca_file = cert_local.path;
	server_start(&srv, SRV_STARTTLS, server_ctx(&cert_local, 0, 0));
	conn = starttls_begin(&srv, &o);
	client_read_line(conn, line, sizeof(line));
	assert_string_equal(line, "a OK begin\r\n");
	if (net_conn_start_tls(conn, &error) < 0)
		fail_msg("start_tls: %s", error);
	assert_true(net_conn_is_tls(conn));
	tls_expect_echo(conn);
	assert_int_equal(net_conn_start_tls(conn, &error), -1);
	net_conn_close(&conn);
	server_finish(&srv);
}

/* The injected bytes were read along with the OK and given back. */
static void
test_starttls_injection_buffered(void **state)
{
	struct server srv = { .inject = true };
	struct net_options o = opts_default();
	struct net_conn *conn;
	const char *error = NULL;
	char line[256];

	(void)state;
	o.insecure = true;
	server_start(&srv, SRV_STARTTLS, NULL);
	conn = starttls_begin(&srv, &o);
	client_read_line(conn, line, sizeof(line));
	assert_string_equal(line, "a OK begin\r\n");
	assert_int_equal(net_conn_start_tls(conn, &error), -1);
	assert_string_equal(error, "127.0.0.1 sent unexpected plaintext after "
	                    "its STARTTLS response (possible injection attack); "
	                    "refusing to start TLS");
	assert_false(net_conn_is_tls(conn));
	net_conn_close(&conn);
	server_finish(&srv);
}

/* The injected bytes are still in the socket. */
static void
test_starttls_injection_in_socket(void **state)
{
	struct server srv = { .inject = true };
	struct net_options o = opts_default();
	struct net_conn *conn;
	const char *error = NULL;
	char line[32];
	size_t len = 0;

	(void)state;
	o.insecure = true;
	server_start(&srv, SRV_STARTTLS, NULL);
	conn = starttls_begin(&srv, &o);
	while (len < 12) {
		ssize_t n = net_conn_read(conn, line + len, 12 - len, &error);

		assert_true(n > 0);
		len += (size_t)n;
	}
	assert_memory_equal(line, "a OK begin\r\n", 12);
	usleep(50 * 1000);
	assert_int_equal(net_conn_start_tls(conn, &error), -1);
	assert_contains(error, "possible injection attack");
	net_conn_close(&conn);
	server_finish(&srv);
}

/* ---- COMPRESS ---- */

static void
compress_session(SSL_CTX *ctx, size_t size)
{
	struct server srv = { .size = size, .random_len = size / 2 };
	struct net_options o = opts_default();
	struct net_conn *conn = NULL;
	const char *error = NULL;
	char line[256];

	o.insecure = true;
	server_start(&srv, SRV_COMPRESS, ctx);
	conn = connect_ok(&srv, ctx != NULL, &o);
	client_read_line(conn, line, sizeof(line));
	assert_string_equal(line, "* OK\r\n");
	client_send(conn, "c COMPRESS DEFLATE\r\n");
	client_read_line(conn, line, sizeof(line));
	assert_string_equal(line, "c OK\r\n");
	/* client_read_line gave the compressed bytes behind the OK back. */
	if (net_conn_start_compress(conn, &error) < 0)
		fail_msg("start_compress: %s", error);
	assert_true(net_conn_is_compressed(conn));
	assert_int_equal(net_conn_start_compress(conn, &error), -1);
	client_read_line(conn, line, sizeof(line));
	assert_string_equal(line, "* compressed greeting\r\n");

	client_write_data(conn, srv.size, srv.random_len);
	client_read_data(conn, srv.size, srv.random_len);
	/* Half is random, half is text that all but disappears. */
	assert_true(net_conn_bytes_out(conn) < srv.size * 6 / 10);
	assert_true(net_conn_bytes_out(conn) > srv.size / 2);
	assert_true(net_conn_bytes_in(conn) < srv.size * 6 / 10);
	assert_true(net_conn_bytes_in(conn) > srv.size / 2);
	net_conn_close(&conn);
	server_finish(&srv);
}

static void
test_compress_plain(void **state)
{
	(void)state;
	compress_session(NULL, 10 * MB);
}

static void
test_compress_tls(void **state)
{
	(void)state;
	compress_session(server_ctx(&cert_local, 0, 0), 2 * MB);
}

/* Garbage where DEFLATE data should be gives a clear error. */
static void
test_compress_corrupt(void **state)
{
	struct net_options o = opts_default();
	struct net_conn *conn;
	const char *error = NULL;
	char tmp[CHUNK];
	int sv[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	conn = net_conn_from_fd(sv[0], "peer", &o);
	assert_int_equal(net_conn_start_compress(conn, &error), 0);
	assert_int_equal(write(sv[1], "\xff\xff\xff\xff", 4), 4);
	assert_int_equal(net_conn_read(conn, tmp, sizeof(tmp), &error), -1);
	assert_contains(error, "DEFLATE data from peer is corrupt");
	close(sv[1]);
	net_conn_close(&conn);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_transfer),
		cmocka_unit_test(test_read_timeout),
		cmocka_unit_test(test_write_timeout),
		cmocka_unit_test(test_connect_refused),
		cmocka_unit_test(test_connect_timeout),
		cmocka_unit_test(test_unread_eof_epipe),
		cmocka_unit_test(test_tls_default_refuses_self_signed),
		cmocka_unit_test(test_tls_insecure_accepts),
		cmocka_unit_test(test_tls_ca_file_ip),
		cmocka_unit_test(test_tls_ca_file_dns_name),
		cmocka_unit_test(test_tls_ip_mismatch),
		cmocka_unit_test(test_tls_hostname_mismatch),
		cmocka_unit_test(test_tls_ca_file_missing),
		cmocka_unit_test(test_tls_shared_ctx),
		cmocka_unit_test(test_tls_versions),
		cmocka_unit_test(test_tls_peer_gone),
		cmocka_unit_test(test_starttls),
		cmocka_unit_test(test_starttls_injection_buffered),
		cmocka_unit_test(test_starttls_injection_in_socket),
		cmocka_unit_test(test_compress_plain),
		cmocka_unit_test(test_compress_tls),
		cmocka_unit_test(test_compress_corrupt),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
