/* target.h: where a copy writes, behind one interface (isync's struct
 * driver is the model). One pass driver (pass.c) runs every copy; what
 * differs between targets lives behind struct target_ops:
 *
 *   target-imap.c     any IMAP server: CREATE, SELECT, pipelined APPEND
 *                     (LITERAL+, MULTIAPPEND), UID STORE, UID EXPUNGE. The
 *                     server chooses UIDs: the state database maps source
 *                     UIDs to target UIDs (keeps_uids false).
 *   target-maildir.c  a Dovecot or Courier Maildir written directly:
 *                     files in tmp/, published with the uidlist at commit,
 *                     UIDVALIDITY, UIDNEXT and every UID the source's
 *                     (keeps_uids true: the Maildir itself is the record).
 *
 * What is common -- the diff against the state or the target, error kinds
 * and scopes, retries and backoff, reconnects, state batching, progress,
 * the summary -- is written once, in pass.c.
 *
 * Errors: every operation that fails returns -1 with *error_r made by
 * err_setk()/err_errno()/err_wrap() (base.h), so err_kind_of(*error_r)
 * tells the pass what failed: ERRK_SESSION (reconnect and redo the folder),
 * ERRK_FOLDER, ERRK_QUOTA / ERRK_DISK_FULL / ERRK_AUTH (stop), ... An error
 * without a kind (ERRK_OTHER) gets the operation's documented default.
 * Outcomes of single messages, known only later for a pipelined target,
 * go to the pass through struct target_sink. */
#ifndef IMAPFERRY_SYNC_TARGET_H
#define IMAPFERRY_SYNC_TARGET_H

#include "client.h"
#include "foldermap.h"
#include "keepalive.h"
#include "maildir.h"
#include "mqueue.h"
#include "msgsum.h"
#include "state.h"

struct copy_stats;

/* What a copy writes to. */
enum target_kind { TARGET_IMAP, TARGET_MAILDIR };

struct target_spec {
	enum target_kind kind;
	/* IMAP */
	const struct imap_client_options *imap;
	/* a session already logged in with imap (the one that probed the
	 * namespace), or NULL: the first connect takes it (*adopt becomes
	 * NULL) instead of logging in again. One pass's spec only. */
	struct imap_client **adopt;
	unsigned append_depth;        /* APPEND commands in flight; 0: 16 */
	unsigned multiappend_max;     /* messages per MULTIAPPEND; 0: by folder
	                                 size, 1,024 to 8,192 */
	/* Maildir: the account's root (expanded), flavor and file options */
	const char *root;
	struct maildir_options md;
	unsigned commit_every;        /* messages per uidlist commit; 0: 2000 */
	/* POP3 UIDLs of INBOX messages by source UID (sorted by uid), or
	 * NULL: stored as P<uidl> in the uidlist */
	const uint32_t *pop3_uids;
	char *const *pop3_uidls;
	size_t pop3_count;
	/* The Dovecot that serves this Maildir, logged in as the account
	 * (a master user): keywords the file names cannot hold (more than
	 * 26 in a folder) are set through it after each commit, into its
	 * index. NULL: they are reported as not kept. */
	const struct imap_client_options *dst_imap;
};

/* How a driver reports what happens to single messages. ctx is the
 * pass's. flags: the source's canonical flags as stored. */
struct target_sink {
	void *ctx;
	/* stored; dst_uid 0 when the target did not say (no UIDPLUS) */
	void (*delivered)(void *ctx, uint32_t src_uid, uint32_t dst_uid,
	                  const char *flags, uint64_t size, int64_t internaldate);
	/* refused: kind ERRK_MESSAGE for this message alone; ERRK_QUOTA,
	 * ERRK_DISK_FULL... stop the run; ERRK_SESSION the session */
	void (*refused)(void *ctx, uint32_t src_uid, enum err_kind kind,
	                const char *reason);
	/* refused as part of a group of group_size messages: copy it again
	 * in smaller groups (halved each time, down to one message) */
	void (*retry)(void *ctx, uint32_t src_uid, size_t group_size);
	/* the session or folder failed while messages were in flight */
	void (*failed)(void *ctx, enum err_kind kind, const char *error);
	/* flags or keywords the target cannot keep for this message
	 * (space-separated) */
	void (*dropped)(void *ctx, uint32_t src_uid, const char *dropped);
};

/* The folder a pass opens. */
struct target_open {
	const char *name;             /* the driver's name (folder_name()) */
	uint32_t src_uidvalidity;     /* the source's */
	uint32_t uid_lo, uid_hi;      /* a UID range of a split folder: only
	                                 UIDs in [lo, hi]; 0 0: whole */
	bool dry_run;                 /* read only: create nothing */
};

struct target_folder_info {
	bool missing;                 /* dry run: the folder does not exist */
	bool created;
	uint32_t uidvalidity;         /* the target's */
	uint32_t uidnext;             /* the target's UIDNEXT when opened */
	uint32_t exists;
	/* keeps_uids: list() must see the whole folder's source summaries
	 * at once (files an interrupted run left to settle), not a window */
	bool whole;
};

/* The end of a folder's pass. */
struct target_close {
	bool complete;                /* every message is there */
	uint32_t src_uidnext;         /* the source's UIDNEXT now */
};

struct target_flags {
	uint32_t src_uid, dst_uid;
	const char *flags;            /* the source's, canonical */
};

struct target;

struct target_ops {
	const char *name;
	/* Target UIDs are the source's, and the target itself records what
	 * was copied (list()); otherwise the state database maps them. */
	bool keeps_uids;
	/* Needs messages in ascending UID order (one FETCH in flight). */
	bool ordered;

	/* Connects (logs in and lists folders) or checks the root. A
	 * refused login is ERRK_AUTH; default ERRK_SESSION. */
	int (*connect)(struct target *t, const char **error_r);
	void (*disconnect)(struct target *t);
	/* Politely: LOGOUT. */
	void (*logout)(struct target *t);
	/* Special-use folders of the target into the folder map. */
	void (*setup_foldermap)(struct target *t, struct foldermap *fm);
	/* The driver's name of a destination wire name (a Maildir++
	 * directory); ERRK_FOLDER when the target cannot hold it. New string. */
	int (*folder_name)(struct target *t, const char *wire, char **name_r,
	                   const char **error_r);
	/* Whether the folder exists now (cheap). */
	bool (*folder_exists)(struct target *t, const char *name);

	/* Opens (creates) a folder for a pass. Default ERRK_FOLDER. */
	int (*open_folder)(struct target *t, const struct target_open *o,
	                   struct target_folder_info *info_r,
	                   const char **error_r);
	/* keeps_uids: whether list() can only judge the messages from
	 * check_from up with the source's INTERNALDATE and size (listing
	 * them costs the source more). */
	bool (*needs_meta)(struct target *t, uint32_t check_from);
	/* keeps_uids: what the open folder holds (in the pass's UID range),
	 * and in the window lo..hi, as records sorted by UID (src_uid ==
	 * dst_uid, flags, size, internaldate; a size that matches src's is
	 * given as src's), in one allocation that state_msgs_free() frees,
	 * as the state's. With settle, first settles files an interrupted
	 * run left without a UID, against src (the source's summaries of the
	 * window, with sizes and dates; the whole folder when info.whole). */
	int (*list)(struct target *t, const struct msgsum_list *src, bool settle,
	            uint32_t lo, uint32_t hi, struct state_msg **msgs_r,
	            size_t *n_r, const char **error_r);
	/* keeps_uids: whether a new message can keep its UID (a Maildir
	 * refuses UIDs below what its server may have seen); *why_r a new
	 * string when not. */
	bool (*can_place)(struct target *t, uint32_t uid, char **why_r);
	/* Optional: the keywords the open folder will hold (the source's
	 * FLAGS), before a pass in windows: a target with few keyword slots
	 * gives the well-known ones theirs first, whatever window they are
	 * in. */
	void (*expect_keywords)(struct target *t, char *const *names);
	/* Optional: the part of flags (the source's, canonical) that the
	 * open folder can store, a new string (canonical). The pass compares
	 * the source's and the target's flags through it, so that a flag the
	 * target cannot keep is not "updated" again on every pass. NULL:
	 * every flag is kept. */
	char *(*storable_flags)(struct target *t, const char *flags);
	/* !keeps_uids: fingerprints of the folder's messages from UID
	 * `from` up (messages no record knows). */
	int (*fingerprints)(struct target *t, uint32_t from,
	                    struct msgsum_list *list, const char **error_r);

	/* Most messages deliver() takes at once (1 with single). */
	size_t (*batch_max)(struct target *t, bool single);
	/* Stores the messages of list (ownership passes): outcomes through
	 * the sink, now or during wait(). */
	void (*deliver)(struct target *t, struct cmsg *list);
	/* Messages in flight. */
	unsigned (*in_flight)(struct target *t);
	/* Waits until fewer than the driver's depth are in flight (all:
	 * none). -1: the session failed (ERRK_SESSION). */
	int (*wait)(struct target *t, bool all, const char **error_r);
	/* Makes what was delivered durable and visible (Maildir: the
	 * uidlist). Default ERRK_FOLDER. */
	int (*commit)(struct target *t, const char **error_r);
	/* Messages per commit(); 0: no count (commit at the folder's end). */
	unsigned (*commit_every)(struct target *t);

	/* Sets flags of messages already there. Default ERRK_FOLDER. */
	int (*set_flags)(struct target *t, const struct target_flags *f,
	                 size_t n, const char **error_r);
	/* Expunges target UIDs (sorted). *done_r: how many. */
	int (*expunge)(struct target *t, const uint32_t *dst_uids, size_t n,
	               size_t *done_r, const char **error_r);
	/* Ends the folder's pass (Maildir: UIDNEXT, the last commit). */
	int (*close_folder)(struct target *t, const struct target_close *c,
	                    const char **error_r);
	/* A UID range of a split folder is done; all ranges are (cover):
	 * publish the staged ranges into the folder. *uidvalidity_r: the
	 * folder's. Default ERRK_FOLDER. NULL: no split folders. */
	int (*publish)(struct target *t, const char *name, uint32_t uidnext,
	               uint32_t *uidvalidity_r, const char **error_r);

	/* Removes a scratch folder of ours (a probe's) with its messages. */
	int (*remove_folder)(struct target *t, const char *name,
	                     const char **error_r);

	/* Subscribes the account to these destination wire names (only the
	 * missing ones for a server). *count_r: how many were (or, dry run,
	 * would be) added. */
	int (*subscribe)(struct target *t, char *const *wires, size_t n,
	                 bool dry_run, unsigned *count_r, const char **error_r);
	void (*free)(struct target *t);
};

struct target {
	const struct target_ops *ops;
	const struct target_spec *spec;
	struct target_sink sink;
	struct copy_stats *stats;     /* folders_created, dropped_flags */
	/* NULL, or the keeper that sends NOOP on the driver's IMAP sessions
	 * while they wait between its calls (keepalive.h): a driver's
	 * session is its own only during a call of its ops */
	struct imap_keeper *keeper;
};

/* A Maildir target spec with the default file options (maildir.h). */
void target_spec_maildir_init(struct target_spec *spec);

/* A driver for spec (not connected yet). */
struct target *target_new(const struct target_spec *spec,
                          const struct target_sink *sink,
                          struct copy_stats *stats);
void target_free(struct target **t);

struct target *target_imap_new(const struct target_spec *spec);
struct target *target_maildir_new(const struct target_spec *spec);

/* The Maildir++ directory of a destination wire name ("Archive.2019",
 * '.'-separated, no prefix): ".Archive.2019"; INBOX is "". Courier(-IMAP
 * 5) keeps names on disk in UTF-8 (".Projects.Beta & Co", not ".Projects.
 * Beta &- Co"). Refuses names that are unsafe on disk or that the flavor's
 * server cannot serve. Returns 0 or -1 with *error_r (ERRK_FOLDER). */
int target_maildir_dirname(const char *wire, enum maildir_flavor flavor,
                           char **dirname_r, const char **error_r);

#endif
