/* parser-private.h: helpers shared by parser.c and response.c only. */
#ifndef IMAPFERRY_IMAP_PARSER_PRIVATE_H
#define IMAPFERRY_IMAP_PARSER_PRIVATE_H

#include "base.h"

/* True if s[0..len) is a sequence set of non-zero 32-bit numbers
 * ("1:3,7,9:8"); '*' is refused, as imap_seqset_foreach() does. */
bool imap_seqset_valid(const char *s, size_t len);

#endif
