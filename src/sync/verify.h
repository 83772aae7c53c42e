/* verify.h: comparing an account on two servers, folder by folder and
 * message by message. Messages are paired through the state database
 * (source UID -> target UID) when it knows the folder, else by
 * fingerprint (Message-ID and other header fields, size, INTERNALDATE).
 * Compared: presence, RFC822.SIZE, INTERNALDATE, flags and keywords,
 * Message-ID, and with deep the SHA-256 of the whole message. */
#ifndef IMAPFERRY_SYNC_VERIFY_H
#define IMAPFERRY_SYNC_VERIFY_H

#include "client.h"
#include "foldermap.h"
#include "maildir.h"
#include "state.h"

enum verify_kind {
	VERIFY_FOLDER_MISSING,    /* folder absent on the target */
	VERIFY_UIDVALIDITY,       /* Maildir target: UIDVALIDITY differs */
	VERIFY_UIDNEXT,           /* Maildir target: UIDNEXT differs */
	VERIFY_MISSING,           /* message absent on the target */
	VERIFY_EXTRA,             /* message on the target only */
	VERIFY_SIZE,
	VERIFY_DATE,
	VERIFY_FLAGS,
	VERIFY_MESSAGE_ID,
	VERIFY_BODY,
	VERIFY_ERROR,             /* the folder could not be compared */
};

struct verify_diff {
	enum verify_kind kind;
	char *src_folder, *dst_folder;
	uint32_t src_uid, dst_uid;
	char *detail;             /* e.g. "source \\Seen, target (none)" */
};

struct verify_report {
	struct verify_diff *diffs;
	size_t count, alloc;
	unsigned folders;
	uint64_t messages;        /* source messages compared */
	uint64_t matched;
};

struct verify_options {
	const char *account;      /* state key, or NULL */
	struct state_db *db;      /* NULL: pair by fingerprint only */
	struct foldermap *fm;
	bool deep;
	/* Maildir target: the Dovecot serving it (--dst-imap), or NULL:
	 * flags and keywords are then compared as it serves them (its index
	 * keeps keywords beyond the file names' 26), not from the file
	 * names */
	const struct imap_client_options *dst_imap;
};

/* Compares the two accounts. Returns 0 (report filled, possibly with
 * differences) or -1 with *error_r when a connection or login failed. */
int verify_account(const struct imap_client_options *src,
                   const struct imap_client_options *dst,
                   const struct verify_options *opts,
                   struct verify_report *report, const char **error_r) ATTR_WARN_UNUSED;
/* Same against a Maildir written by imapferry: messages are paired by UID
 * (they must be the source's), and each folder's UIDVALIDITY and UIDNEXT
 * must equal the source's. Files are read directly (deep: SHA-256 of each
 * file as the server would serve it: LF stored by Courier counts as CRLF). */
int verify_account_maildir(const struct imap_client_options *src,
                           const char *root, enum maildir_flavor flavor,
                           const struct verify_options *opts,
                           struct verify_report *report,
                           const char **error_r) ATTR_WARN_UNUSED;
void verify_report_free(struct verify_report *report);
const char *verify_kind_name(enum verify_kind kind);

#endif
