/* net.h: one client connection: TCP (IPv4/IPv6) with timeouts, implicit
 * TLS or STARTTLS via OpenSSL (certificate and host name verified by
 * default), and optional COMPRESS=DEFLATE via zlib.
 *
 * Blocking API with internal poll() timeouts: every call waits at most the
 * configured timeout for progress. Writes are buffered in the connection
 * and go out on net_conn_flush() (or when the buffer passes its high-water
 * mark). Not thread-safe: one thread uses a connection at a time.
 * Depends on base only. */
#ifndef IMAPFERRY_NET_H
#define IMAPFERRY_NET_H

#include "base.h"

#include <sys/types.h>

struct net_conn;

struct net_options {
	int connect_timeout_ms;   /* per address tried; 0: 30 s */
	int io_timeout_ms;        /* max wait for any read/write progress; 0: 120 s */
	bool insecure;            /* skip certificate and host-name verification */
	/* Minimum TLS protocol version as OpenSSL constant (TLS1_VERSION,
	 * TLS1_2_VERSION, ...); 0: OpenSSL's default. Lowering it below 1.2
	 * also lowers the OpenSSL security level so TLS 1.0 servers work. */
	int min_tls_version;
	const char *ca_file;      /* NULL: system trust store */
	/* A TLS context made once by net_tls_ctx_new() from these same
	 * options and shared by every connection that uses them (the trust
	 * store is read once, not per connection); NULL: each connection
	 * makes its own. Borrowed: it must outlive the connections. */
	struct net_tls_ctx *tls_ctx;
};

struct net_tls_ctx;

/* A TLS client context for o (verification, CA file, minimum version),
 * shareable between threads and connections. Returns 0, or -1 with
 * *error_r (an unreadable CA file, the trust store). */
int net_tls_ctx_new(const struct net_options *o, struct net_tls_ctx **ctx_r,
                    const char **error_r) ATTR_WARN_UNUSED;
/* Drops the caller's reference (connections keep theirs); NULL-safe. */
void net_tls_ctx_free(struct net_tls_ctx **ctx);

/* Parses "1.0", "1.1", "1.2", "1.3" into an OpenSSL version constant.
 * Returns false for anything else. */
bool net_parse_tls_version(const char *s, int *version_r);

/* Connects to host:port (numeric or name; IPv4 and IPv6 are tried in the
 * order getaddrinfo gives, each with connect_timeout_ms). With implicit_tls
 * the TLS handshake is done too. opts is copied. Returns 0 with *conn_r
 * set (caller owns it; free with net_conn_close()), or -1 with *error_r set
 * (valid until the next err_set() in this thread). */
int net_connect(const char *host, const char *port, bool implicit_tls,
                const struct net_options *opts, struct net_conn **conn_r,
                const char **error_r) ATTR_WARN_UNUSED;

/* Wraps an already-connected socket (tests, fake servers). Takes ownership
 * of fd. host is used for TLS SNI and verification. */
struct net_conn *net_conn_from_fd(int fd, const char *host,
                                  const struct net_options *opts);

/* Starts TLS on a plain connection (STARTTLS, after the server's OK).
 * Any buffered unread plaintext input is an error (injection attack):
 * bytes given back with net_conn_unread(), or bytes already waiting in the
 * socket (the server must not speak before the ClientHello). net_conn_read()
 * returns everything available, so a caller that read past the tagged OK
 * must give the rest back with net_conn_unread() (or fail by itself).
 * Flushes queued output first. On failure the connection is unusable.
 * Returns 0 or -1 with *error_r. */
int net_conn_start_tls(struct net_conn *conn, const char **error_r) ATTR_WARN_UNUSED;

/* Starts raw DEFLATE (RFC 4978) in both directions, after the server's OK
 * to COMPRESS DEFLATE. Output queued but not yet sent is compressed too.
 * The server may send compressed data right behind its OK: if the caller
 * read past the OK, it gives those bytes back with net_conn_unread()
 * before this call and they are decompressed first.
 * Returns 0 or -1 with *error_r. */
int net_conn_start_compress(struct net_conn *conn, const char **error_r) ATTR_WARN_UNUSED;

/* Gives back len bytes the caller read but did not consume; the next
 * net_conn_read() calls return them before anything new. Given back
 * before net_conn_start_compress(), they are taken as compressed input;
 * before net_conn_start_tls(), they make it fail (see there). Bytes are
 * copied (at most 1 MiB pending). Returns 0 or -1 with *error_r. */
int net_conn_unread(struct net_conn *conn, const void *data, size_t len,
                    const char **error_r) ATTR_WARN_UNUSED;

/* Reads up to len (> 0) bytes of (decrypted, decompressed) input into
 * data, straight from the socket/TLS/zlib without an extra copy: use a
 * large buffer (64 KiB) for speed. Flushes pending output first. Returns
 * the number of bytes read (>0) as soon as any are available, 0 on EOF
 * (a missing TLS close_notify counts as EOF), or -1 with *error_r on error
 * or timeout ("timeout after N s reading from HOST"). After an error the
 * connection is unusable: every later call fails with the same text. */
ssize_t net_conn_read(struct net_conn *conn, void *data, size_t len,
                      const char **error_r) ATTR_WARN_UNUSED;

/* Queues bytes for sending; may write some out when the output buffer is
 * above its high-water mark (256 KiB). Returns 0 or -1 with *error_r. */
int net_conn_write(struct net_conn *conn, const void *data, size_t len,
                   const char **error_r) ATTR_WARN_UNUSED;

/* Sends everything queued (and, with COMPRESS, a sync flush).
 * Returns 0 or -1 with *error_r. */
int net_conn_flush(struct net_conn *conn, const char **error_r) ATTR_WARN_UNUSED;

/* Bytes queued but not yet handed to the compressor/TLS/socket. */
size_t net_conn_output_pending(const struct net_conn *conn);

bool net_conn_is_tls(const struct net_conn *conn);
bool net_conn_is_compressed(const struct net_conn *conn);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384" or "plain"; valid while conn lives. */
const char *net_conn_describe(const struct net_conn *conn);
/* Total bytes moved on the wire (after TLS/compression). */
uint64_t net_conn_bytes_in(const struct net_conn *conn);
uint64_t net_conn_bytes_out(const struct net_conn *conn);

/* Shuts TLS down if active (one non-blocking close_notify, no waiting),
 * closes the socket, frees, sets *conn to NULL. Output not flushed is
 * discarded. NULL *conn is fine. */
void net_conn_close(struct net_conn **conn);

#endif
