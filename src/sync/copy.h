/* copy.h: copying one account, incrementally, from any source (source.h:
 * an IMAP account or a Maildir) to any target (target.h: an IMAP account,
 * or a Dovecot or Courier Maildir written directly with the source's UIDs),
 * with the state database as memory between runs. One pass driver
 * (pass.c) does it for every pair.
 *
 * Per folder: list the source's UIDs and flags, diff them against what the
 * target holds (the state's source UID -> target UID map for an IMAP
 * target; the Maildir's own uidlist), find copies no record knows (by
 * fingerprint on an IMAP target; files an interrupted run left in a
 * Maildir), copy the rest with a reader thread (pipelined UID FETCH)
 * feeding the target (pipelined APPEND, or Maildir files), then carry flag
 * changes and, on request, expunges over. Deliver first, record after: a
 * crash can only leave unrecorded copies, which the next run finds. */
#ifndef IMAPFERRY_SYNC_COPY_H
#define IMAPFERRY_SYNC_COPY_H

#include "foldermap.h"
#include "reader.h"
#include "source.h"
#include "state.h"
#include "target.h"

#include <stdatomic.h>

/* Live counters shared with a progress display (other threads read them). */
struct copy_progress {
	_Atomic uint64_t messages;    /* messages written to the target */
	_Atomic uint64_t bytes;
	_Atomic uint64_t failed;
};

struct copy_options {
	const char *account;          /* state key for this account pair */
	struct foldermap *fm;         /* folder mapping (rules, includes) */
	bool dry_run;
	bool delete_missing;          /* expunge on the target what the source lost */
	bool skip_deleted;            /* do not copy messages flagged \Deleted */
	bool no_subscriptions;
	/* copy --parallel: the passes count themselves here when their
	 * folders are done, and the last of subs_gate_n writes the
	 * subscriptions (every folder exists by then) with its own sessions;
	 * NULL: this pass writes them (unless no_subscriptions) */
	atomic_uint *subs_gate;
	unsigned subs_gate_n;
	struct fetch_reader_options fetch; /* source side */
	uint64_t queue_bytes;         /* reader->writer queue cap; 0: 8 MiB */
	unsigned max_retries;         /* session retries per folder; 0: no
	                               * count, only the time budget */
	unsigned retry_budget_s;      /* keep retrying a folder's session
	                               * failures while the last progress is
	                               * at most this old; 0: 600 */
	unsigned keepalive_ms;        /* NOOP on a session (source or
	                               * target) that waited this long
	                               * without a command (keepalive.h); 0:
	                               * $IMAPFERRY_KEEPALIVE_MS (a test hook),
	                               * else 60 s */
	bool quiet;                   /* no per-folder progress lines */
	struct copy_progress *progress; /* NULL or live counters */
	/* Only these source folders (wire names); NULL: all. */
	char *const *folders;
	size_t n_folders;
	/* One UID range [uid_lo, uid_hi] of folders[0] (a part of a folder
	 * split across jobs of run run_id; both 0: whole folders). Only a
	 * target that keeps UIDs can take one: messages must enter a Maildir
	 * in ascending UID order, so only the part starting at UID 1 writes
	 * into the folder; the others copy into a scratch Maildir in the
	 * folder's tmp/ (".imapferry-stage-<uid_lo>", invisible to the
	 * server, crash-safe like the folder itself) and record in the state
	 * database that they are done. The part that finds the done ranges
	 * covering every UID publishes the staged messages into the folder
	 * in UID order by hard links, sets UIDNEXT, marks the folder
	 * complete and removes the scratch folders. A crash leaves them for
	 * the retried job. */
	uint32_t uid_lo, uid_hi;
	int64_t run_id;
};

/* True if name is selected by a folder filter (NULL list: all). */
bool copy_folder_selected(char *const *folders, size_t n, const char *name);

struct copy_stats {
	unsigned folders;             /* folders handled */
	unsigned folders_failed;
	unsigned folders_created;
	uint64_t copied;              /* messages appended */
	uint64_t skipped;             /* already on the target */
	uint64_t failed;              /* refused by the target */
	uint64_t failed_in_folders;   /* not copied: in folders that failed */
	uint64_t flags_updated;
	uint64_t expunged;
	uint64_t bytes;               /* body bytes appended */
	uint64_t dropped_flags;       /* flag instances the target refused */
	unsigned subscribed;
	double seconds;
	/* the kind of the error that stopped the pass (-1 returned) */
	enum err_kind error_kind;
	/* where the bodies came from (a hybrid source): not set by
	 * copy_account_to(), which counts into src->body_stats; the runner's
	 * engine copies its counts here */
	struct source_body_stats bodies;
};

/* Copies the account from src (its fields are copied; it is not connected
 * yet) to dst. Both are connected (and reconnected after session
 * failures) by this function. Returns 0 when the pass completed (stats
 * tell whether everything was copied), -1 with *error_r and
 * stats->error_kind for a failure that stops the account: login refused
 * (ERRK_AUTH), quota (ERRK_QUOTA), disk full (ERRK_DISK_FULL), state database
 * (ERRK_STATE), an unusable target (ERRK_USAGE), sessions that keep failing
 * (ERRK_SESSION). */
int copy_account_to(const struct source *src, const struct target_spec *dst,
                    struct state_db *db, const struct copy_options *opts,
                    struct copy_stats *stats, const char **error_r) ATTR_WARN_UNUSED;

#endif
