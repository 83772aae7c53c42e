/* compress.c: COMPRESS=DEFLATE (RFC 4978): raw DEFLATE (no zlib header,
 * windowBits -15) in both directions, above TLS when TLS is active.
 * Both directions use one fixed 64 KiB buffer: compressed input is read
 * into it in chunks and inflated straight into the caller's buffer, so
 * memory stays bounded however well the peer's data compresses. */
#define ZLIB_CONST
#include "net-private.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Level 1: mail (text, base64) compresses nearly as well as at level 6,
 * at several times the speed; a migration is throughput bound. */
#define ZLIB_LEVEL Z_BEST_SPEED
/* zlib counts in uInt; feed at most this much per deflate() call. */
#define ZLIB_MAX_CHUNK (1U << 30)

struct net_zlib {
	z_stream in, out;
	bool in_end;      /* peer ended its DEFLATE stream */
	bool out_dirty;   /* input went in since the last sync flush */
	unsigned char inbuf[NET_ZBUF_SIZE];
	unsigned char outbuf[NET_ZBUF_SIZE];
};

int
net_zlib_start(struct net_conn *conn, const char **error_r)
{
	struct net_zlib *z = xcalloc(1, sizeof(*z));

	if (inflateInit2(&z->in, -15) != Z_OK) {
		*error_r = err_set("cannot start DEFLATE decompression: %s",
		                   z->in.msg != NULL ? z->in.msg : "zlib error");
		free(z);
		return -1;
	}
	if (deflateInit2(&z->out, ZLIB_LEVEL, Z_DEFLATED, -15, 8,
	                 Z_DEFAULT_STRATEGY) != Z_OK) {
		*error_r = err_set("cannot start DEFLATE compression: %s",
		                   z->out.msg != NULL ? z->out.msg : "zlib error");
		inflateEnd(&z->in);
		free(z);
		return -1;
	}
	conn->zlib = z;
	/* Bytes the caller gave back before this point are the first
	 * compressed input; they stay in conn->unread as wire bytes. */
	return 0;
}

/* Runs deflate over the current input with the flush mode, sending each
 * full output buffer. */
static int
deflate_run(struct net_conn *conn, int flush, const char **error_r)
{
	struct net_zlib *z = conn->zlib;
	struct iovec iov;

	do {
		int ret;

		z->out.next_out = z->outbuf;
		z->out.avail_out = sizeof(z->outbuf);
		ret = deflate(&z->out, flush);
		/* Z_BUF_ERROR only means nothing was left to do. */
		if (ret != Z_OK && ret != Z_BUF_ERROR) {
			*error_r = err_set("DEFLATE compression failed for %s: %s",
			                   conn->host, z->out.msg != NULL ?
			                   z->out.msg : "zlib error");
			return -1;
		}
		iov.iov_base = z->outbuf;
		iov.iov_len = sizeof(z->outbuf) - z->out.avail_out;
		if (iov.iov_len > 0 &&
		    net_transport_send(conn, &iov, 1, error_r) < 0)
			return -1;
	} while (z->out.avail_out == 0);
	return 0;
}

int
net_zlib_send(struct net_conn *conn, const void *data, size_t len,
              bool sync, const char **error_r)
{
	struct net_zlib *z = conn->zlib;
	const unsigned char *p = data;

	while (len > 0) {
		size_t chunk = len < ZLIB_MAX_CHUNK ? len : ZLIB_MAX_CHUNK;

		z->out.next_in = p;
		z->out.avail_in = (uInt)chunk;
		if (deflate_run(conn, Z_NO_FLUSH, error_r) < 0)
			return -1;
		z->out_dirty = true;
		p += chunk;
		len -= chunk;
	}
	if (sync && z->out_dirty) {
		z->out.next_in = NULL;
		z->out.avail_in = 0;
		if (deflate_run(conn, Z_SYNC_FLUSH, error_r) < 0)
			return -1;
		z->out_dirty = false;
	}
	return 0;
}

bool
net_zlib_dirty(const struct net_conn *conn)
{
	return conn->zlib->out_dirty;
}

ssize_t
net_zlib_recv(struct net_conn *conn, void *data, size_t len,
              const char **error_r)
{
	struct net_zlib *z = conn->zlib;

	if (len > ZLIB_MAX_CHUNK)
		len = ZLIB_MAX_CHUNK;
	for (;;) {
		size_t produced;
		ssize_t n;
		int ret;

		if (z->in_end)
			return 0;
		/* inflate first even without new input: output may be pending
		 * from a previous call that filled the caller's buffer. */
		z->in.next_out = data;
		z->in.avail_out = (uInt)len;
		ret = inflate(&z->in, Z_SYNC_FLUSH);
		if (ret == Z_STREAM_END) {
			z->in_end = true;
		} else if (ret != Z_OK && ret != Z_BUF_ERROR) {
			*error_r = err_set("DEFLATE data from %s is corrupt: %s",
			                   conn->host, z->in.msg != NULL ?
			                   z->in.msg : "zlib error");
			return -1;
		}
		produced = len - z->in.avail_out;
		if (produced > 0)
			return (ssize_t)produced;
		if (z->in.avail_in > 0) {
			if (ret == Z_BUF_ERROR) {
				*error_r = err_set("DEFLATE decompression from %s "
				                   "made no progress", conn->host);
				return -1;
			}
			continue;
		}
		if (z->in_end)
			return 0;
		n = net_transport_recv(conn, z->inbuf, sizeof(z->inbuf), error_r);
		if (n <= 0)
			return n;
		z->in.next_in = z->inbuf;
		z->in.avail_in = (uInt)n;
	}
}

void
net_zlib_free(struct net_conn *conn)
{
	if (conn->zlib == NULL)
		return;
	inflateEnd(&conn->zlib->in);
	deflateEnd(&conn->zlib->out);
	free(conn->zlib);
	conn->zlib = NULL;
}
