/* foldermap.h: mapping folder names from a source account to a
 * destination account (IMAP server or Maildir).
 *
 * A source wire name (modified UTF-7, source separator and personal
 * namespace prefix) becomes a LOGICAL name: UTF-8, components joined by
 * '/', without the personal prefix; the real INBOX is always "INBOX".
 * User rules (--map), special-use matching and --include/--exclude work
 * on logical names; the result is turned into a destination wire name.
 * Names that cannot be written as they are (separator inside a
 * component, ".", "..", control characters, invalid modified UTF-7,
 * empty components) are changed to something safe and the result carries
 * a human note saying so. Two source folders never silently share a
 * destination name: a later one gets "~2", "~3"... appended.
 *
 * Not thread-safe: one struct foldermap belongs to one thread. */
#ifndef IMAPFERRY_SYNC_FOLDERMAP_H
#define IMAPFERRY_SYNC_FOLDERMAP_H

#include "base.h"

/* Names longer than this (wire bytes) are refused; real servers stay far
 * below, the destination layer applies its own, smaller limit. */
#define FOLDERMAP_NAME_MAX 65536

struct foldermap_side {
	char separator;        /* hierarchy separator; '\0' = flat (no hierarchy) */
	const char *prefix;    /* personal namespace prefix as in NAMESPACE,
	                        * e.g. "INBOX." or "" (NULL = ""); copied */
};

struct foldermap;

enum foldermap_via {
	FOLDERMAP_VIA_IDENTITY,   /* logical name kept */
	FOLDERMAP_VIA_RULE,       /* a --map rule matched */
	FOLDERMAP_VIA_SPECIAL,    /* sent to the destination's special-use
	                           * folder (or below it, for children) */
	FOLDERMAP_VIA_EXCLUDED,   /* --include/--exclude: not copied */
	FOLDERMAP_VIA_FAILED,     /* foldermap_map_list only: cannot be
	                           * mapped; note holds the reason */
};

struct foldermap_result {
	char *logical;         /* source logical name (UTF-8, '/'-separated),
	                        * owned; may be NULL when FAILED */
	char *dst_wire;        /* destination wire name (mUTF-7), owned;
	                        * NULL if excluded or failed */
	bool excluded;
	unsigned special_use;  /* one IMAP_MBOX_* special-use bit recognized
	                        * for this folder (from attrs or by a
	                        * well-known top-level name), or 0 */
	char *note;            /* what was changed to make the name fit
	                        * ("; "-separated), owned, or NULL */
	enum foldermap_via via;
};

/* One source folder for foldermap_map_list(); wire is borrowed for the
 * duration of the call. */
struct foldermap_input {
	const char *wire;
	size_t len;            /* wire may contain NUL */
	unsigned attrs;        /* enum imap_mbox_attr bits from LIST */
};

/* Creates a map from src to dst (both copied). Never fails. Free with
 * foldermap_free(). */
struct foldermap *foldermap_new(const struct foldermap_side *src,
                                const struct foldermap_side *dst);
/* Frees *fm (NULL allowed) and sets it to NULL. */
void foldermap_free(struct foldermap **fm);

/* Adds a --map rule "OLD=NEW" (spec copied). The first '=' not preceded
 * by '\' splits OLD and NEW ("\=" in OLD is a literal '='). OLD is a
 * POSIX extended regex that must match the whole logical source name;
 * NEW is the new logical name, where \0 is the whole name, \1..\9 the
 * groups of OLD and \\ a backslash ('&' is not special). An OLD without
 * regex metacharacters is an exact, case-sensitive rename that also
 * renames children ("Old=New" maps "Old/x" to "New/x"). Rules are tried
 * in the order added; the first match wins. Returns 0, or -1 with
 * *error_r (valid until the next err_set() in this thread) for a missing
 * '=', an empty side, a bad regex, or a bad or out-of-range escape. */
int foldermap_add_rule(struct foldermap *fm, const char *spec,
                       const char **error_r) ATTR_WARN_UNUSED;
/* --include / --exclude: POSIX extended regexes searched (unanchored) in
 * the logical source name. With any include, only folders matching one
 * are kept; excludes then remove. Returns 0, or -1 with *error_r for a
 * bad regex. */
int foldermap_add_include(struct foldermap *fm, const char *regex,
                          const char **error_r) ATTR_WARN_UNUSED;
int foldermap_add_exclude(struct foldermap *fm, const char *regex,
                          const char **error_r) ATTR_WARN_UNUSED;
/* Tells the map that the destination folder dst_wire_name (as LISTed,
 * copied) carries special_use_bit (one of IMAP_MBOX_SENT, _DRAFTS,
 * _TRASH, _JUNK, _ARCHIVE; other bits are ignored: \All and \Flagged
 * are usually virtual and never receive messages). A later call for the
 * same bit replaces the earlier one. */
void foldermap_set_dst_special(struct foldermap *fm, unsigned special_use_bit,
                               const char *dst_wire_name);

/* Maps one source folder. src_wire/len: the name as LISTed (may hold
 * NUL or invalid modified UTF-7: invalid components keep their
 * printable bytes and get others escaped as "_XX", with a note).
 * src_attrs: its LIST attribute bits. Rules apply in this order: --map
 * rules; else special use (the folder's special-use attribute, or, if
 * it has none, a well-known top-level name such as "Sent Items"; one
 * source folder per kind, the first seen, is sent to the destination's
 * folder of that kind, and its children follow it); else the logical
 * name is kept. The destination name is unique among the folders mapped
 * so far with this fm; mapping the same source name again gives the
 * same answer. Which of two colliding folders gets the "~2", and which
 * of two candidates is the special one, depends on call order: prefer
 * foldermap_map_list() for a whole LIST.
 * Returns 0 with *res filled (free with foldermap_result_free()), or -1
 * with *error_r for a name that cannot be mapped at all (empty after
 * cleaning, or too long); *res is then empty. */
int foldermap_map(struct foldermap *fm, const char *src_wire, size_t len,
                  unsigned src_attrs, struct foldermap_result *res,
                  const char **error_r) ATTR_WARN_UNUSED;
/* Maps a whole LIST (count folders) into res[0..count-1] independently
 * of the order of in[]: first the special folders are chosen (those with
 * an attribute, else the best well-known name), then destination names
 * are handed out to folders mapped by rule or special use, then to
 * unchanged names, then to changed ones, each group in byte order of the
 * source name. A folder that cannot be mapped gets via FAILED, dst_wire
 * NULL and the reason in note; the others are unaffected. Free each
 * result with foldermap_result_free(). */
void foldermap_map_list(struct foldermap *fm, const struct foldermap_input *in,
                        size_t count, struct foldermap_result *res);
/* Frees the contents of *res (which stays valid and empty). */
void foldermap_result_free(struct foldermap_result *res);

/* Wire name (len bytes) of one side -> logical name. Strips the side's
 * prefix (case-insensitively; names outside it are kept whole), turns
 * "INBOX" in any case into "INBOX" (and, with an empty prefix, a first
 * component "inbox" too), decodes each component (the separator must
 * not be a base64 character), replaces '/' inside a component by '_'
 * and escapes invalid components. Empty components are kept (as "//").
 * Returns 0 with *logical_r (owned) and *note_r (owned, or NULL), or -1
 * with *error_r if the name is longer than FOLDERMAP_NAME_MAX. */
int foldermap_wire_to_logical(const struct foldermap_side *side,
                              const char *wire, size_t len, char **logical_r,
                              char **note_r, const char **error_r) ATTR_WARN_UNUSED;
/* Logical name -> wire name of one side. "INBOX" and "INBOX/..." stay
 * under INBOX without the prefix; other names get the prefix. Empty
 * components are dropped, "." and ".." become "_" and "__", the
 * separator, control characters and invalid UTF-8 inside a component
 * become '_' (bytes of invalid UTF-8 as "_XX"); on a flat side the
 * components are joined with '_'. Returns 0 with *wire_r (owned) and
 * *note_r (owned, or NULL), or -1 with *error_r if nothing is left of
 * the name or it is too long. */
int foldermap_logical_to_wire(const struct foldermap_side *side,
                              const char *logical, char **wire_r,
                              char **note_r, const char **error_r) ATTR_WARN_UNUSED;

#endif
