/* cyrus.h: reads a copied Cyrus IMAP spool (2.3 to 3.8) offline.
 *
 * The formats are in docs/internals/cyrus-formats.md, with the Cyrus
 * source files they were read from. Depends on base only (and zlib's
 * crc32): no IMAP, no state. Two layers:
 *
 *   - parsers of bytes in memory (cyrus.header, cyrus.index, the flat
 *     seen db, subscription files, a `ctl_mboxlist -d` dump), bounded by
 *     the buffer they get, for unit tests and fuzzing;
 *   - an account view over a partition root: every path is opened with
 *     openat() below the root's fd, one component at a time, with
 *     O_NOFOLLOW, so a symlink or ".." in a copied spool never leads
 *     outside it; message files must be regular files.
 *
 * Folder names are IMAP names on the wire (modified UTF-7, as Cyrus keeps
 * them), levels separated by '/', without prefix: "INBOX", "Sent",
 * "Archive/2019". A '.' in a name (stored as '^' on disk) is a '.'.
 *
 * Error strings (*error_r) are static or per-thread (err_set()) and stay
 * valid until the next failing call in the same thread. A folder that
 * cannot be read gives ERRK_FOLDER, a bad path or option ERRK_USAGE, a
 * message file ERRK_MESSAGE. A struct cyrus_account and its folders are
 * used by one thread at a time. */
#ifndef IMAPFERRY_CYRUS_H
#define IMAPFERRY_CYRUS_H

#include "base.h"

#include <sys/types.h>

/* system_flags bits of an index record (imap/mailbox.h) */
enum cyrus_sysflag {
	CYRUS_FLAG_ANSWERED = 1 << 0,
	CYRUS_FLAG_FLAGGED  = 1 << 1,
	CYRUS_FLAG_DELETED  = 1 << 2,
	CYRUS_FLAG_DRAFT    = 1 << 3,
	CYRUS_FLAG_SEEN     = 1 << 4,   /* 2.4+: the owner's \Seen */
};
#define CYRUS_FLAG_UNLINKED (1U << 30)
#define CYRUS_FLAG_EXPUNGED (1U << 31)
#define CYRUS_MAX_USER_FLAGS 128

/* ------------------------------------------------------------ cyrus.header */

struct cyrus_header {
	char *quotaroot;          /* or NULL */
	char *uniqueid;           /* or NULL (headers older than 2.2) */
	char *name;               /* internal name (3.x "N"), or NULL */
	/* keyword of each user-flag slot, NULL for an unused slot */
	char *flagname[CYRUS_MAX_USER_FLAGS];
	size_t n_flags;           /* slots up to the last used one */
};

/* Parses a whole cyrus.header: the magic, then either the 2.x lines
 * (quotaroot TAB uniqueid / flag names separated by spaces / ACL) or the
 * 3.x dlist "%(T .. N .. I .. Q .. A %(..) U (..))". Returns 0, or -1 with
 * *error_r; *h is then empty. Free with cyrus_header_free(). */
int cyrus_header_parse(const char *data, size_t len, struct cyrus_header *h,
                       const char **error_r) ATTR_WARN_UNUSED;
void cyrus_header_free(struct cyrus_header *h);

/* ------------------------------------------------------------- cyrus.index */

struct cyrus_record {
	uint32_t uid;
	uint32_t system_flags;    /* enum cyrus_sysflag and internal bits */
	uint32_t user_flags[CYRUS_MAX_USER_FLAGS / 32];
	int64_t internaldate;     /* seconds since the epoch */
	uint64_t size;            /* RFC822.SIZE: the spool file's size */
	uint64_t modseq;          /* 0 before version 8 */
};

struct cyrus_index {
	uint32_t minor_version;
	uint32_t start_offset, record_size, num_records;
	uint32_t last_uid, uidvalidity;
	int64_t last_appenddate;
	uint64_t highestmodseq;
	/* live records (neither expunged nor unlinked), ascending UID */
	struct cyrus_record *records;
	size_t count;
	size_t n_expunged;        /* records skipped as expunged or unlinked */
};

/* True for the minor versions this reader knows: 9, 10 (2.3), 12 (2.4),
 * 13 (2.5, 3.0), 14, 15, 16 (3.2), 17 (3.4 to 3.8). */
bool cyrus_index_version_known(uint32_t minor_version);
/* Parses a whole cyrus.index. Checks the version (an unknown one is an
 * error naming it), the header length, the record size the version
 * implies, that num_records records fit in len, the header and record
 * CRCs (12 and later), and that live UIDs ascend and do not pass
 * last_uid. Returns 0, or -1 with *error_r (*ix then empty). Free with
 * cyrus_index_free(). */
int cyrus_index_parse(const unsigned char *data, size_t len, struct cyrus_index *ix,
                      const char **error_r) ATTR_WARN_UNUSED;
void cyrus_index_free(struct cyrus_index *ix);

/* The record's flags as IMAP names separated by single spaces (system
 * flags first, then keywords by slot; a bit without a name is dropped).
 * seen: whether \Seen is set (the caller decides: the record's bit from
 * 2.4 on, the seen db before). Returns a new string ("" for none). */
char *cyrus_record_flags(const struct cyrus_record *r, const struct cyrus_header *h,
                         bool seen);

/* ------------------------------------------------ config files (2.x, 3.x) */

/* The value of key (a mailbox uniqueid) in a flat-text seen db
 * ("key TAB 1 lastread lastuid lastchange uidset LF" lines, Cyrus 2.3):
 * the seen UIDs as *count_r ranges, pairs (lo, hi) in *ranges_r (2 *
 * *count_r values, free()). A skiplist or twoskip file is an error
 * naming its format. Returns 0 (found or not: *count_r 0 when absent),
 * or -1 with *error_r. */
int cyrus_seen_parse(const char *data, size_t len, const char *key,
                     uint32_t **ranges_r, size_t *count_r,
                     const char **error_r) ATTR_WARN_UNUSED;

/* The folders of a subscription file (<user>.sub) that belong to the user
 * localpart (internal names "user.alice.X" in 2.x flat files, relative
 * names "INBOX\x1fX" in the 3.x format), as folder names ("INBOX", "X").
 * Returns 0 with a NULL-terminated vector (strv_free()), or -1. */
int cyrus_subs_parse(const char *data, size_t len, const char *user,
                     char ***names_r, size_t *count_r,
                     const char **error_r) ATTR_WARN_UNUSED;

/* A mailbox of the user found in a `ctl_mboxlist -d` dump (3.x JSON, one
 * mailbox a line). */
struct cyrus_mbentry {
	char *name;               /* folder name ("INBOX", "Sent", "A/B") */
	char *uniqueid;           /* or NULL */
	char *partition;          /* or NULL */
	bool legacy_dirs;         /* mbtype has 'l': the directory is by name */
};
/* Collects the email mailboxes of user (localpart or local@domain) from a
 * dump; deleted, remote, moving, reserved and intermediate entries and
 * non-email types are skipped. Returns 0 (entries freed with
 * cyrus_mbentries_free()) or -1 with *error_r. */
int cyrus_mboxlist_parse(const char *data, size_t len, const char *user,
                         struct cyrus_mbentry **entries_r, size_t *count_r,
                         const char **error_r) ATTR_WARN_UNUSED;
void cyrus_mbentries_free(struct cyrus_mbentry **entries, size_t count);

/* Cyrus's dir_hash_c(): the hash letter of a directory name ('q' for a
 * name not starting with a-z; with full, 'A' + a hash of name up to its
 * first '.' modulo 23). */
char cyrus_dir_hash(const char *name, bool full);

/* ----------------------------------------------------------- account view */

struct cyrus_options {
	const char *user;         /* "alice" or "alice@example.org" */
	const char *config_dir;   /* Cyrus configdirectory (for <user>.sub and
	                             <user>.seen), or NULL */
	const char *mboxlist;     /* `ctl_mboxlist -d` dump (3.x uuid layout) */
	const char *tmpl;         /* the user's directory below the root:
	                             %u local part, %d domain, %h / %H hash
	                             letter (plain / fulldirhash), %% */
	const char *sub_file;     /* overrides the .sub found in config_dir */
	const char *seen_file;    /* overrides the .seen found in config_dir */
};

struct cyrus_mailbox {
	char *name;               /* folder name, see above */
	char *dir;                /* directory relative to the root */
	bool subscribed;
};

struct cyrus_account;
struct cyrus_folder;

/* Opens the partition root and finds the user's mailboxes: from the dump
 * when o->mboxlist is set; else below o->tmpl; else by the legacy layout,
 * trying user/<u>, <h>/user/<u> and <H>/user/<u> (virtual domains under
 * domain/). Every directory below the user's that holds a cyrus.header is
 * a mailbox. Reads subscriptions and (for 2.3 spools) the seen db when
 * found. Returns 0 or -1 with *error_r (ERRK_USAGE for a bad root, user
 * or option). */
int cyrus_account_open(const char *root, const struct cyrus_options *o,
                       struct cyrus_account **acct_r, const char **error_r) ATTR_WARN_UNUSED;
void cyrus_account_free(struct cyrus_account **acct);
size_t cyrus_account_count(const struct cyrus_account *a);
/* Mailbox i (sorted by name); valid until cyrus_account_free(). */
const struct cyrus_mailbox *cyrus_account_mailbox(const struct cyrus_account *a, size_t i);

/* Opens the mailbox of that name: reads cyrus.header and cyrus.index.
 * Returns 0 or -1 with *error_r (ERRK_FOLDER; *missing_r, unless NULL,
 * true when the account has no such mailbox or its directory is not in
 * the copy, false when it is there but unreadable). */
int cyrus_folder_open(struct cyrus_account *a, const char *name,
                      struct cyrus_folder **f_r, bool *missing_r,
                      const char **error_r) ATTR_WARN_UNUSED;
void cyrus_folder_close(struct cyrus_folder **f);
const struct cyrus_index *cyrus_folder_index(const struct cyrus_folder *f);
const struct cyrus_header *cyrus_folder_header(const struct cyrus_folder *f);
uint32_t cyrus_folder_uidvalidity(const struct cyrus_folder *f);
/* last_uid + 1 */
uint32_t cyrus_folder_uidnext(const struct cyrus_folder *f);
/* The live record with that UID, or NULL. */
const struct cyrus_record *cyrus_folder_find(const struct cyrus_folder *f, uint32_t uid);
/* The record's flags (see cyrus_record_flags()) with \Seen from the index
 * or, for versions before 12, from the seen db. New string. */
char *cyrus_folder_flags(const struct cyrus_folder *f, const struct cyrus_record *r);
/* Opens the spool file "<uid>." read-only (no symlink, a regular file).
 * *size_r is its size. Returns 0, or -1 with *error_r (ERRK_MESSAGE;
 * *missing_r true when no regular file of that name exists: none, a
 * symlink or something else; false for another error). */
int cyrus_folder_open_msg(const struct cyrus_folder *f, uint32_t uid, int *fd_r,
                          uint64_t *size_r, bool *missing_r,
                          const char **error_r) ATTR_WARN_UNUSED;

#endif
