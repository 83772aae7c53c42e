/* buf.h: the one growable byte buffer, always with a hard size cap.
 * Only buf.c touches the fields. The data is kept NUL-terminated so it can
 * be used as a C string when it holds text. */
#ifndef IMAPFERRY_BUF_H
#define IMAPFERRY_BUF_H

#include "base.h"

struct buf {
	char *data;     /* owned; NUL-terminated; NULL until first growth */
	size_t len;
	size_t alloc;
	size_t cap;     /* hard limit on len */
};

/* Initializes an empty buffer that may grow up to cap bytes. */
void buf_init(struct buf *b, size_t cap);
/* Frees the storage and leaves the buffer empty (reusable). */
void buf_free(struct buf *b);
/* Empties the buffer, keeping its storage. */
void buf_reset(struct buf *b);
/* Appends; returns -1 (and appends nothing) when cap would be exceeded. */
int buf_append(struct buf *b, const void *data, size_t len) ATTR_WARN_UNUSED;
int buf_append_str(struct buf *b, const char *s) ATTR_WARN_UNUSED;
int buf_printf(struct buf *b, const char *fmt, ...) ATTR_PRINTF(2, 3) ATTR_WARN_UNUSED;
/* Removes the first n bytes (n <= len). */
void buf_consume(struct buf *b, size_t n);
/* Makes room for at least n more bytes and returns a pointer to them;
 * NULL when cap would be exceeded. Commit what was written with
 * buf_commit(). The pointer is valid until the next call on b. */
char *buf_reserve(struct buf *b, size_t n);
void buf_commit(struct buf *b, size_t n);
/* Transfers the storage to the caller (NUL-terminated string, never NULL)
 * and leaves the buffer empty. */
char *buf_take(struct buf *b);

static inline const char *buf_data(const struct buf *b) { return b->data != NULL ? b->data : ""; }
static inline size_t buf_len(const struct buf *b) { return b->len; }

#endif
