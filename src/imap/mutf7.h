/* mutf7.h: modified UTF-7 for mailbox names (RFC 3501 5.1.3). */
#ifndef IMAPFERRY_IMAP_MUTF7_H
#define IMAPFERRY_IMAP_MUTF7_H

#include "base.h"
#include "buf.h"

/* Encodes UTF-8 (len bytes) into modified UTF-7, appended to out.
 * Returns 0, or -1 if the input is not valid UTF-8 (or contains NUL) or
 * out's cap is hit. */
int mutf7_encode(const char *utf8, size_t len, struct buf *out) ATTR_WARN_UNUSED;
/* Decodes modified UTF-7 into UTF-8, appended to out. Strict: rejects
 * non-printable bytes, bad base64, non-zero padding bits, unpaired
 * surrogates, encoded printable ASCII, adjacent encoded runs, NUL.
 * Returns 0 or -1. */
int mutf7_decode(const char *mutf7, size_t len, struct buf *out) ATTR_WARN_UNUSED;
/* Decodes the one UTF-8 sequence at s (len > 0 bytes available): returns
 * its length (1 to 4) and sets *cp_r to the code point, or returns 0 if
 * it is invalid (NUL, overlong, surrogate, above U+10FFFF, truncated, bad
 * continuation byte). mutf7_encode() accepts exactly what this accepts. */
size_t mutf7_utf8_decode(const char *s, size_t len, uint32_t *cp_r);
/* True if s is valid modified UTF-7 (per mutf7_decode). */
bool mutf7_is_valid(const char *s, size_t len);

/* A name for people: the UTF-8 of a modified UTF-7 name, with control
 * characters escaped ("\xHH"); a name that is not valid modified UTF-7
 * (or not valid UTF-8 once decoded) is shown escaped as it is. New
 * string. The wire name stays in JSON output and the state. */
char *mutf7_display(const char *mutf7);

#endif
