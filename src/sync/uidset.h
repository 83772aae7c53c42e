/* uidset.h: building IMAP sequence sets from sorted UID arrays. */
#ifndef IMAPFERRY_SYNC_UIDSET_H
#define IMAPFERRY_SYNC_UIDSET_H

#include "base.h"
#include "buf.h"

/* Appends uids[0..count) (ascending) to out as a compact set "1:3,7,9:12".
 * Returns 0 or -1 when out's cap is hit. */
int uidset_format(struct buf *out, const uint32_t *uids, size_t count) ATTR_WARN_UNUSED;
/* Returns a new string for uids (count > 0). */
char *uidset_string(const uint32_t *uids, size_t count);
/* Expands a set (e.g. APPENDUID's) into a new array. Returns 0 or -1 for a
 * malformed set or more than max numbers. */
int uidset_expand(const char *set, size_t max, uint32_t **uids_r, size_t *count_r);

#endif
