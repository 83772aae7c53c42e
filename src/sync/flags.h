/* flags.h: canonical flag strings and filtering by PERMANENTFLAGS. */
#ifndef IMAPFERRY_SYNC_FLAGS_H
#define IMAPFERRY_SYNC_FLAGS_H

#include "base.h"
#include "response.h"

/* Canonical form of a flag list: system flags in their RFC spelling
 * (\Seen, \Answered, \Flagged, \Deleted, \Draft), \Recent dropped,
 * keywords as sent, duplicates (case-insensitive) removed, sorted by
 * strcmp, joined by single spaces. Returns a new string ("" if none). */
char *flags_canonical(const char *const *flags, size_t count);
/* Same from a space-separated string. */
char *flags_canonical_str(const char *flags);
bool flags_has(const char *canonical, const char *flag);

/* Keeps only the flags of canonical that permanentflags (NULL-terminated,
 * or NULL when the server sent none: then everything is allowed) accepts;
 * keywords pass when "\*" is in the list. Returns the kept flags
 * (canonical) and, in *dropped_r (may be NULL), the dropped ones (both new
 * strings). */
char *flags_filter(const char *canonical, char *const *permanentflags,
                   char **dropped_r);

#endif
