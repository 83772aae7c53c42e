/* source.h: where a copy reads from: an IMAP account, a Maildir (Dovecot
 * or Courier, read through its uidlist so UIDs are the ones its server
 * showed) or a copied Cyrus spool (read through cyrus.index: UIDVALIDITY,
 * UIDs, flags and INTERNALDATE as the Cyrus server showed them). The copy engines talk to this interface only, so every source
 * works with every target. A source is used by one thread at a time; the
 * reader started by source_reader_start() owns it until joined. */
#ifndef IMAPFERRY_SYNC_SOURCE_H
#define IMAPFERRY_SYNC_SOURCE_H

#include "client.h"
#include "cyrus.h"
#include "keepalive.h"
#include "maildir.h"
#include "mailboxes.h"
#include "mqueue.h"
#include "msgsum.h"
#include "reader.h"

/* Why a body of a hybrid source came over IMAP. */
enum source_body_why {
	SOURCE_BODY_MISSING,    /* no regular file <UID>. (none, a symlink,
	                         * not a file), or the folder is not in the
	                         * copy (whole folder) */
	SOURCE_BODY_SIZE,       /* the file's size is not RFC822.SIZE */
	SOURCE_BODY_UIDVALIDITY,/* the copy's folder has another UIDVALIDITY
	                         * than the server's (whole folder) */
	SOURCE_BODY_ERROR,      /* the file or the copy's folder could not be
	                         * read (I/O error, permissions, a damaged
	                         * cyrus.index) */
};

enum source_kind { SOURCE_IMAP, SOURCE_MAILDIR, SOURCE_CYRUS };

struct source {
	enum source_kind kind;
	/* IMAP */
	const struct imap_client_options *imap;
	struct imap_client *client;
	/* Maildir: root and flavor; folder is the selected one */
	const char *root;
	struct maildir_options md;
	struct maildir_folder *folder;
	/* Cyrus spool: root is the partition; cy names the user (its strings
	 * are borrowed); the account is opened by source_connect(), cfolder
	 * is the selected folder.
	 * An IMAP source with root and cy.user set takes its bodies from that
	 * copied spool ("hybrid": metadata by UID FETCH, each body from
	 * <UID>. when its size is the RFC822.SIZE, else over IMAP); cfolder is
	 * then the spool's folder of the selected one when its UIDVALIDITY
	 * matches, else NULL (everything over IMAP, for the reason
	 * hy_why). */
	struct cyrus_options cy;
	struct cyrus_account *cyrus;
	struct cyrus_folder *cfolder;
	enum source_body_why hy_why;
	char imap_sep;                  /* from source_inventory() */
	struct source_body_stats *body_stats; /* may be NULL; shared by copies */
	/* NULL, or the keeper that sends NOOP on the IMAP session while it
	 * waits between the source's calls (keepalive.h); keep is its slot,
	 * set by source_connect() */
	struct imap_keeper *keeper;
	struct imap_keep *keep;
};

/* ---- a source as a recipe (the runner of plan/run makes one per job) ----
 * A struct source whose session fields (client, cyrus, cfolder, folder)
 * are NULL describes what to read: its kind, IMAP options, root, Cyrus
 * and Maildir options. */
/* A fresh source like spec (every field copied, the session fields
 * zeroed); body_stats is left NULL. */
void source_init_like(struct source *s, const struct source *spec);
/* True when the source needs no server session (a Maildir, a copied
 * Cyrus spool): no connection slot, no namespace to ask for. */
bool source_is_offline(const struct source *spec);
/* The selectable folders of spec's account (a session of its own, ended
 * before returning), as a new NULL-terminated vector (strv_free()), and
 * the hierarchy separator. Returns 0, or -1 with *error_r (*refused_r:
 * retrying will not help). */
int source_folder_names(const struct source *spec, char ***names_r,
                        size_t *count_r, char *sep_r, bool *refused_r,
                        const char **error_r) ATTR_WARN_UNUSED;

/* Where the bodies of a hybrid source came from (updated atomically: the
 * copies of one source in parallel workers share it). Bodies delivered
 * to the copy engine are counted, not bodies asked for (a message
 * expunged meanwhile counts nowhere). */
struct source_body_stats {
	uint64_t from_spool;            /* read from <UID>. files */
	uint64_t from_imap;             /* over IMAP: the sum of the reasons */
	uint64_t missing, size, uidvalidity, error; /* enum source_body_why */
};

/* The selected folder as the source reports it. */
struct source_folder {
	uint32_t uidvalidity, uidnext, exists;
	uint64_t highestmodseq;
};

/* Connects (IMAP) or checks the root (Maildir). *refused_r: the failure
 * is a refused login (do not retry). Returns 0 or -1 with *error_r. */
int source_connect(struct source *s, bool *refused_r, const char **error_r) ATTR_WARN_UNUSED;
/* A session connected before its pass had a keeper (copy --parallel
 * hands its planning session to the first pass): registers it with
 * s->keeper, as source_connect() does. */
void source_adopt(struct source *s);
/* Takes *c, a session already logged in to s's IMAP source (the one that
 * probed its namespace), as s's session: enables CONDSTORE on it as
 * source_connect() does. *c is NULL afterwards; on a failure it was
 * closed and source_connect() makes a new one later. Only for an IMAP
 * source without a spool (source_connect() also opens that). */
void source_take_session(struct source *s, struct imap_client **c);
void source_disconnect(struct source *s);
/* Logs out politely (IMAP) and disconnects. */
void source_logout(struct source *s);
bool source_is_connected(const struct source *s);
/* True when the failure that just happened was the connection's. */
bool source_is_dead(const struct source *s);

/* Folders with status (and subscriptions with IMAP_INV_SUBSCRIBED). For a
 * Maildir the names are '.'-separated without prefix ("Archive.2019"),
 * for a Cyrus spool '/'-separated without prefix ("Archive/2019"); INBOX
 * is "INBOX". */
int source_inventory(struct source *s, unsigned flags,
                     struct imap_account_info *info, const char **error_r) ATTR_WARN_UNUSED;
/* Selects a folder read-only. */
int source_select(struct source *s, const char *name, struct source_folder *st_r,
                  const char **error_r) ATTR_WARN_UNUSED;
/* The selected folder's UIDNEXT as the source last reported it (an IMAP
 * session sees new mail arrive while it works); 0 if unknown. */
uint32_t source_uidnext_now(const struct source *s);
/* Summaries of the selected folder: all messages (uids NULL) or the given
 * ones (ascending), with enum msgsum_what items. */
int source_list(struct source *s, const uint32_t *uids, size_t n, unsigned what,
                struct msgsum_list *list, const char **error_r) ATTR_WARN_UNUSED;
/* The same for the messages with a UID in [lo, hi] (hi UINT32_MAX: up to
 * the last). */
int source_list_range(struct source *s, uint32_t lo, uint32_t hi, unsigned what,
                      struct msgsum_list *list, const char **error_r) ATTR_WARN_UNUSED;

/* Streams the bodies of uids (ascending) of the selected folder into q in
 * a thread; see reader.h. The IMAP session is the reader's until it has
 * fetched the last body; from then until the join, it is parked with the
 * keeper (while the target stores what is still queued). */
struct source_reader;
struct source_reader *source_reader_start(struct source *s, const uint32_t *uids,
                                          size_t count, struct mqueue *q,
                                          const struct fetch_reader_options *o);
/* Returns NULL or the error (caller frees). */
char *source_reader_join(struct source_reader **r);

#endif
