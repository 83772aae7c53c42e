/* tomaildir.h: copying one account from an IMAP source straight into a
 * Dovecot or Courier Maildir, keeping every folder's UIDVALIDITY and
 * UIDNEXT and every message's UID, so mail clients keep their caches
 * after the switch ("transparent cutover").
 *
 * The Maildir itself is the record of what was copied (the uidlist holds
 * the source UIDs); the state database keeps per-folder sync points so an
 * unchanged folder costs one STATUS on the next run. */
#ifndef IMAPFERRY_SYNC_TOMAILDIR_H
#define IMAPFERRY_SYNC_TOMAILDIR_H

#include "client.h"
#include "copy.h"
#include "maildir.h"
#include "source.h"

struct tomaildir_options {
	const char *account;          /* state key */
	const char *root;             /* the account's Maildir (expanded) */
	struct foldermap *fm;         /* destination side: prefix "", sep '.' */
	struct maildir_options md;
	struct fetch_reader_options fetch;
	bool dry_run;
	bool delete_missing;
	bool skip_deleted;
	bool no_subscriptions;
	unsigned commit_every;        /* messages per uidlist commit; 0: 2000 */
	struct copy_progress *progress; /* NULL or live counters */
	char *const *folders;         /* only these source folders; NULL: all */
	size_t n_folders;
	/* POP3 UIDLs of INBOX messages by source UID (sorted by uid), or
	 * NULL: stored as P<uidl> in the uidlist */
	const uint32_t *pop3_uids;
	char *const *pop3_uidls;
	size_t pop3_count;
	/* One UID range [uid_lo, uid_hi] of folders[0] (a part of a folder
	 * split across jobs of run run_id; both 0: whole folders). Messages
	 * must enter a Maildir in ascending UID order, so only the part
	 * starting at UID 1 writes into the folder; the others copy into a
	 * scratch Maildir in the folder's tmp/ (".imapferry-stage-<uid_lo>",
	 * invisible to the server, crash-safe like the folder itself) and
	 * record in the state database that they are done. The part that
	 * finds the done ranges covering every UID publishes the staged
	 * messages into the folder in UID order by hard links (one lock, a
	 * few renames per message), sets UIDNEXT, marks the folder complete
	 * and removes the scratch folders. A crash leaves them for the
	 * retried job. */
	uint32_t uid_lo, uid_hi;
	int64_t run_id;
};

/* Copies the account into o->root. Returns 0 when the run completed
 * (stats tell whether everything was copied), -1 with *error_r for a
 * failure of run scope (login refused, disk full, unwritable root). */
int tomaildir_copy_account(const struct imap_client_options *src,
                           struct state_db *db,
                           const struct tomaildir_options *o,
                           struct copy_stats *stats,
                           const char **error_r) ATTR_WARN_UNUSED;

/* The same from any source (IMAP account or another Maildir). */
int tomaildir_copy_from(const struct source *src, struct state_db *db,
                        const struct tomaildir_options *o,
                        struct copy_stats *stats, const char **error_r) ATTR_WARN_UNUSED;

/* The Maildir++ directory of a destination wire name ("Archive.2019",
 * '.'-separated, no prefix): ".Archive.2019"; INBOX is "". Refuses names
 * that are unsafe on disk. Returns 0 or -1 with *error_r. */
int tomaildir_dirname(const char *wire, char **dirname_r, const char **error_r);
/* The same for a flavor: Courier(-IMAP 5) keeps names on disk in UTF-8
 * (".Projects.Beta & Co", not ".Projects.Beta &- Co"). */
int tomaildir_dirname_for(const char *wire, enum maildir_flavor flavor,
                          char **dirname_r, const char **error_r);

#endif
