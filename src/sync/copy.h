/* copy.h: copying one account from an IMAP source to an IMAP target,
 * incrementally, with the state database as memory between runs.
 *
 * Per folder: list the source's UIDs and flags, diff against the state
 * (source UID -> target UID, flags as copied), find copies the state does
 * not know by fingerprint (a crashed run, another tool), copy the rest
 * with a reader thread (pipelined UID FETCH) feeding a writer (pipelined
 * APPEND with LITERAL+, MULTIAPPEND when offered), then carry flag
 * changes and, on request, expunges over. Deliver first, record after:
 * a crash can only leave unrecorded copies, which the next run finds by
 * fingerprint. */
#ifndef IMAPFERRY_SYNC_COPY_H
#define IMAPFERRY_SYNC_COPY_H

#include "client.h"
#include "foldermap.h"
#include "reader.h"
#include "source.h"
#include "state.h"

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
	struct fetch_reader_options fetch; /* source side */
	unsigned append_depth;        /* APPEND commands in flight; 0: 16 */
	unsigned multiappend_max;     /* messages per MULTIAPPEND; 0: 32 */
	uint64_t queue_bytes;         /* reader->writer queue cap; 0: 32 MiB */
	unsigned max_retries;         /* session retries per folder; 0: 5 */
	bool quiet;                   /* no per-folder progress lines */
	struct copy_progress *progress; /* NULL or live counters */
	/* Only these source folders (wire names); NULL: all. */
	char *const *folders;
	size_t n_folders;
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
	uint64_t flags_updated;
	uint64_t expunged;
	uint64_t bytes;               /* body bytes appended */
	uint64_t dropped_flags;       /* flag instances the target refused */
	unsigned subscribed;
	double seconds;
};

/* Copies the account. src (an IMAP account or a Maildir: its fields are
 * copied, it is not connected yet) and dst are connected (and reconnected
 * after session failures) by this function. Returns 0 when the run completed
 * (stats tell whether everything was copied), -1 with *error_r for a
 * failure of run scope (login refused, disk full, state database error). */
int copy_account_from(const struct source *src,
                      const struct imap_client_options *dst,
                      struct state_db *db, const struct copy_options *opts,
                      struct copy_stats *stats, const char **error_r) ATTR_WARN_UNUSED;
/* The same from an IMAP account. */
int copy_account(const struct imap_client_options *src,
                 const struct imap_client_options *dst,
                 struct state_db *db, const struct copy_options *opts,
                 struct copy_stats *stats, const char **error_r) ATTR_WARN_UNUSED;

#endif
