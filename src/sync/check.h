/* check.h: the preflight of a migration ("imapferry check"): what mail
 * clients will notice after the switch from a source account to a target,
 * found from the two accounts' inventories before anything is copied, and
 * the Dovecot configuration that makes a new server look like the old one
 * ("imapferry dovecot-config").
 *
 * The analysis works on constructed inventories (struct check_side): the
 * command fills them from the servers (LIST, NAMESPACE, CAPABILITY,
 * EXAMINE, FETCH FLAGS RFC822.SIZE), the unit tests by hand. Nothing here
 * talks to a server. What clients do, and why each finding matters, is in
 * shared/docs/CLIENTS.md. */
#ifndef IMAPFERRY_SYNC_CHECK_H
#define IMAPFERRY_SYNC_CHECK_H

#include "buf.h"
#include "foldermap.h"
#include "maildir.h"

/* Dovecot's Maildir keeps keywords as the letters a..z in file names: at
 * most 26 per folder (dovecot-keywords). */
#define CHECK_DOVECOT_KEYWORDS_MAX 26
/* Many servers keep a folder in one file name (Maildir++: the whole path,
 * Courier, Dovecot): longer names are refused. */
#define CHECK_NAME_MAX 255

enum check_severity { CHECK_INFO, CHECK_WARNING, CHECK_ERROR };

/* One folder of an inventory. Pointers are borrowed for the call. */
struct check_folder {
	const char *name;            /* as LISTed (modified UTF-7) */
	size_t name_len;             /* may hold NUL */
	unsigned attrs;              /* enum imap_mbox_attr bits */
	bool selectable;
	uint32_t messages;
	/* source: the RFC822.SIZE of each message, or NULL (unknown) */
	const uint64_t *sizes;
	size_t n_sizes;
	/* source: the keywords its messages carry (NULL-terminated), or
	 * NULL (unknown) */
	char *const *keywords;
	/* target: PERMANENTFLAGS of the folder (EXAMINE), or NULL */
	char *const *permanentflags;
};

enum check_store { CHECK_STORE_IMAP, CHECK_STORE_MAILDIR };

/* One side of the migration. */
struct check_side {
	enum check_store store;
	enum maildir_flavor flavor;  /* MAILDIR */
	const char *url;             /* for messages */
	const char *host;            /* IMAP: the server's host name */
	const char *prefix;          /* personal namespace prefix (NULL: "") */
	char separator;              /* hierarchy separator ('\0': flat) */
	bool courier;                /* served by Courier-IMAP (its greeting,
	                              * or a Courier Maildir) */
	bool case_insensitive;       /* folder names that differ only in
	                              * case are one folder (Exchange) */
	uint64_t appendlimit;        /* APPENDLIMIT=N; 0: none announced */
	/* PERMANENTFLAGS of INBOX: what a folder created by the copy will
	 * accept; NULL: unknown */
	char *const *permanentflags;
	const struct check_folder *folders;
	size_t count;
};

struct check_input {
	struct check_side src, dst;
	/* --src-pop3 URL (the INBOX's POP3 UIDLs kept), or NULL */
	const char *src_pop3;
};

struct check_finding {
	enum check_severity severity;
	const char *code;            /* static: "uids", "namespace",
	                              * "special-use", "name", "appendlimit",
	                              * "keywords", "pop3", "host" */
	char *summary;               /* one line, owned */
	char **folders;              /* source folders concerned (UTF-8 as
	                              * the source shows them), owned,
	                              * NULL-terminated; may be empty */
	size_t n_folders;
	uint64_t messages;           /* messages concerned (0: not counted) */
	char *remedy;                /* owned, or NULL */
};

struct check_report {
	struct check_finding *items;
	size_t count;
	unsigned errors, warnings, infos;
};

/* Analyzes what clients will notice when in->src is moved to in->dst.
 * fm: a new folder map from the source's side to the target's (with the
 * --map/--include/--exclude rules), used once (the target's special-use
 * folders are told to it here). Fills *r (free with check_report_free):
 * findings sorted by severity, errors first. Never fails. */
void check_analyze(const struct check_input *in, struct foldermap *fm,
                   struct check_report *r);
/* True when a client notices something: any warning or error (infos are
 * what to do so that nothing is noticed). */
bool check_report_noticed(const struct check_report *r);
void check_report_free(struct check_report *r);

/* Renders the report as text lines or as one JSON object (keys
 * "noticed", "errors", "warnings", "infos", "findings": [{"severity",
 * "code", "summary", "folders", "messages", "remedy"}]) into out.
 * Returns 0, or -1 when out's cap was reached. */
int check_render_text(const struct check_report *r, struct buf *out) ATTR_WARN_UNUSED;
int check_render_json(const struct check_report *r, struct buf *out) ATTR_WARN_UNUSED;

/* A Dovecot configuration fragment that makes a Dovecot serving the
 * migrated Maildir look like src to clients: the personal namespace
 * "inbox" with src's prefix and separator (inbox = yes), a mailbox block
 * with special_use for each source folder that has a special use (by
 * attribute, else, when the source announces none, by well-known name),
 * named as in the namespace (UTF-8, without the prefix), and the POP3
 * UIDL format. Returns 0, or -1 when out's cap was reached. */
int check_dovecot_config(const struct check_side *src, struct buf *out) ATTR_WARN_UNUSED;

/* The text of a special-use bit for configuration and messages
 * ("\\Sent"), or NULL. */
const char *check_special_use_name(unsigned bit);

#endif
