/* net-private.h: the connection struct and the functions the net/ files
 * share. Nothing outside src/net includes this.
 *
 * Layers, bottom up:
 *   socket    net_sock_recv()/net_sock_send(): non-blocking, counted,
 *             MSG_NOSIGNAL; the TLS BIO uses them too.
 *   transport net_transport_recv()/net_transport_send(): plain socket or
 *             TLS, waiting with poll() for at most io_timeout_ms per wait.
 *   compress  net_zlib_*(): raw DEFLATE on top of the transport.
 *   buffering net_conn_write()/net_conn_flush() in net.c. */
#ifndef IMAPFERRY_NET_PRIVATE_H
#define IMAPFERRY_NET_PRIVATE_H

#include "net.h"
#include "buf.h"

#include <stdio.h>
#include <sys/uio.h>

/* Output queued by net_conn_write() is pushed out past this size. */
#define NET_OUT_HIGH (256 * 1024)
/* Writes at least this large bypass the output buffer (no copy). */
#define NET_OUT_DIRECT (64 * 1024)
/* Size of each of the two DEFLATE buffers (compressed in, compressed out). */
#define NET_ZBUF_SIZE (64 * 1024)
/* Cap on bytes given back with net_conn_unread(). */
#define NET_UNREAD_MAX (1024 * 1024)

struct ssl_ctx_st;
struct ssl_st;
struct net_zlib;

struct net_conn {
	int fd;
	char *host;                /* for messages, SNI and verification */
	char *ca_file;             /* own copy of opts.ca_file */
	struct net_options opts;   /* timeouts already defaulted */

	struct buf out;            /* plaintext queued by net_conn_write() */
	struct buf unread;         /* input given back by net_conn_unread() */
	bool unread_decoded;       /* unread holds decompressed (not wire) bytes */

	struct ssl_ctx_st *ssl_ctx;
	struct ssl_st *ssl;
	int sock_errno;            /* last socket errno seen by the TLS BIO */

	struct net_zlib *zlib;     /* non-NULL once COMPRESS is active */

	/* Set on the first I/O error: the stream state (TLS records, deflate
	 * dictionary, partially written commands) is undefined afterwards, so
	 * every later call fails with the first error's text. */
	bool broken;
	char broken_msg[256];

	uint64_t bytes_in, bytes_out;
	char desc[128];
};

/* Socket level (net.c). Non-blocking; return what recv/send return, errno
 * set on -1 (EAGAIN when nothing can be moved now). EINTR is retried. */
ssize_t net_sock_recv(struct net_conn *conn, void *data, size_t len);
ssize_t net_sock_send(struct net_conn *conn, const void *data, size_t len);

/* Waits until fd is ready for events (POLLIN/POLLOUT), at most
 * io_timeout_ms. writing selects the wording of the timeout message.
 * Returns 0, or -1 with *error_r. */
int net_io_wait(struct net_conn *conn, short events, bool writing,
                const char **error_r) ATTR_WARN_UNUSED;

/* Transport level (net.c): plain or TLS. send writes all iov bytes;
 * recv returns >0, 0 at EOF, -1 with *error_r. recv returns bytes given
 * back with net_conn_unread() first (unless they are decompressed bytes). */
int net_transport_send(struct net_conn *conn, const struct iovec *iov,
                       int iovcnt, const char **error_r) ATTR_WARN_UNUSED;
ssize_t net_transport_recv(struct net_conn *conn, void *data, size_t len,
                           const char **error_r) ATTR_WARN_UNUSED;

/* Marks the connection broken with msg (copied; the first message wins)
 * and returns that message in err_set() storage for *error_r. */
const char *net_conn_set_broken(struct net_conn *conn, const char *msg);

/* TLS (tls.c). */
int net_tls_start(struct net_conn *conn, const char **error_r) ATTR_WARN_UNUSED;
int net_tls_send(struct net_conn *conn, const void *data, size_t len,
                 const char **error_r) ATTR_WARN_UNUSED;
ssize_t net_tls_recv(struct net_conn *conn, void *data, size_t len,
                     const char **error_r) ATTR_WARN_UNUSED;
/* Sends close_notify without waiting (unless broken) and frees TLS state. */
void net_tls_free(struct net_conn *conn);

/* COMPRESS=DEFLATE (compress.c). */
int net_zlib_start(struct net_conn *conn, const char **error_r) ATTR_WARN_UNUSED;
/* Compresses len bytes and sends whatever output fills the buffer; with
 * sync, ends with Z_SYNC_FLUSH so the peer can decode everything so far. */
int net_zlib_send(struct net_conn *conn, const void *data, size_t len,
                  bool sync, const char **error_r) ATTR_WARN_UNUSED;
/* True if input went into the compressor since the last sync flush. */
bool net_zlib_dirty(const struct net_conn *conn);
ssize_t net_zlib_recv(struct net_conn *conn, void *data, size_t len,
                      const char **error_r) ATTR_WARN_UNUSED;
void net_zlib_free(struct net_conn *conn);

#endif
