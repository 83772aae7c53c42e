/* runner.h: running the jobs of a planned run with worker threads.
 *
 * Concurrency: N worker threads; each takes the next runnable job in plan
 * order (largest first), takes a connection slot on its source server and
 * one on its target server (slots.h) and runs the copy engine, which opens
 * exactly one source and one target session at a time. A job that must
 * learn a server's namespace (first job on that server) or the folder
 * list (the "rest" part of a split account) opens its probe session
 * inside the same slots, before the engine, so the caps hold for every
 * session. Each worker owns its state database handle; the only shared
 * mutable state is the job table in memory (one mutex) and the state
 * database. A progress thread writes the live counters of running jobs
 * and the run's rate and ETA to the database every 2 s.
 *
 * Errors by scope (STYLE.md):
 *   message  the engine records it and goes on; the job is done with a
 *            failed count (see the failures of the state database);
 *   folder / session (folders failed, connection lost beyond the
 *            engine's own reconnects): the job is retried later, after
 *            backoff, backoff*2, ... seconds, up to max_errors attempts;
 *   account  (login refused, over quota): the job and the account's other
 *            parts fail at once, other accounts go on; when the first five
 *            accounts tried all fail to log in and none worked, the
 *            credentials are wrong for all: the run stops;
 *   run      (disk full, state database unusable, an admin login to a
 *            server that ignores authzids): no new job starts, running
 *            jobs end, the run stops.
 *
 * Crash safety: the engine is crash-safe per account; the job table only
 * has to resume: jobs found "running" in the database belong to a dead
 * process and are pending again (state_job_requeue()). A job is marked
 * done only after the engine returned.
 *
 * Several machines (a shared PostgreSQL state, state_is_shared()): the
 * workers claim jobs from the database (state_job_claim(): plan order,
 * the caps max_src/max_dst counted over all machines) instead of the
 * table in memory, with a lease the progress thread renews every
 * lease/3 s; the copy engine's writes are fenced by the claim's token
 * (state_fence_set()). A worker whose job was taken over (its lease
 * expired: the process stalled, the network broke) writes nothing more
 * for it and takes the next. Idle workers wait for a NOTIFY (a job ended
 * or became due) or 1 s, and exit when the run has no job pending or
 * running on any machine. The in-memory table mirrors the database
 * (refreshed every 2 s) so the view shows the whole run.
 * docs/internals/queue.md. */
#ifndef IMAPFERRY_SCHED_RUNNER_H
#define IMAPFERRY_SCHED_RUNNER_H

#include "copy.h"
#include "maildir.h"
#include "slots.h"
#include "state.h"
#include "users.h"

/* What a copy engine gets for one job. All pointers are borrowed for the
 * duration of the call. */
struct sched_engine_args {
	const struct sched_account *account;
	struct state_db *db;          /* the worker's handle */
	struct foldermap *fm;         /* this job's folder map */
	char *const *folders;         /* source folders to copy; NULL: all */
	size_t n_folders;
	uint32_t uid_lo, uid_hi;      /* UID range of folders[0]; 0 0: all */
	int64_t run_id;               /* the run (UID-range parts meet in it) */
	const struct copy_options *base; /* run-wide options (account, fm,
	                               * folders and progress are set here) */
	const struct maildir_options *md; /* Maildir targets; NULL: defaults */
	struct copy_progress *progress;
};

/* A copy engine. Returns 0 when the pass completed (stats tell about
 * failed folders and messages), -1 with *error_r and stats->error_kind for
 * a failure that stops this account (login refused, quota) or the run
 * (disk full, state database). */
typedef int sched_engine_fn(const struct sched_engine_args *a,
                            struct copy_stats *stats, const char **error_r);

/* The engine: copy_account_to() from the account's source (src_spec, else
 * its IMAP account; a hybrid source's body counts are logged and set in
 * stats->bodies) into the
 * account's target (an IMAP
 * account, or the Maildir at dst_path keeping UIDs, UIDVALIDITY and
 * UIDNEXT) with the job's folder filter. A UID-range job copies that range
 * of folders[0] (Maildir targets only); the ranges of one folder meet in
 * the state database by run_id, and the last one done publishes the
 * others' staged messages (copy.h). */
int sched_engine_copy(const struct sched_engine_args *a,
                      struct copy_stats *stats, const char **error_r);

/* Adds a hybrid source's body counts to *to. */
void sched_bodies_add(struct state_bodies *to,
                      const struct source_body_stats *bs);
/* "2270 from the Cyrus spool, 5 over IMAP (3 missing in the spool, 2 of
 * another size)" (only the reasons that occurred) appended to out. */
/* to += from, field by field. */
void sched_bodies_sum(struct state_bodies *to, const struct state_bodies *from);
void sched_bodies_text(struct buf *out, const struct state_bodies *b);

struct sched_run_options {
	const char *state_path;
	int64_t run_id;
	unsigned workers;             /* 0: 4 */
	struct sched_slots *src_slots, *dst_slots;
	unsigned max_errors;          /* failed attempts before a job fails; 0: 3 */
	unsigned backoff;             /* seconds before the first retry; 0: 5 */
	sched_engine_fn *engine;      /* NULL: sched_engine_copy */
	const struct copy_options *copy; /* run-wide copy options, or NULL */
	const struct maildir_options *md; /* for Maildir targets, or NULL */
	char *const *folders;         /* the pass's folder filter, or NULL */
	size_t n_folders;
	/* --include / --exclude / --map rules for every job's folder map */
	const char *const *includes, *const *excludes, *const *maps;
	size_t n_includes, n_excludes, n_maps;
	/* several machines (used when the state is shared) */
	const char *machine;          /* this machine's name */
	unsigned lease;               /* seconds; 0: 30 */
	unsigned max_src, max_dst;    /* caps over all machines; 0: none */
};

struct sched_runner;

/* Loads the jobs of o->run_id (running ones must have been requeued),
 * matches them to accounts by state key and starts the workers and the
 * progress thread. Jobs whose account is no longer in the users file
 * fail at once. accounts and o (and what they point to) must stay valid
 * until sched_runner_finish(). Returns 0 with *runner_r, or -1 with
 * *error_r (state database). */
int sched_runner_start(const struct sched_run_options *o,
                       const struct sched_account *accounts, size_t n_accounts,
                       struct sched_runner **runner_r,
                       const char **error_r) ATTR_WARN_UNUSED;

/* Asks the workers to take no new job (a signal); returns at once. */
void sched_runner_stop(struct sched_runner *r);
/* True when every worker has exited (all jobs ended or stopped). */
bool sched_runner_finished(struct sched_runner *r);

/* ---- the view: what a progress display and "status" show ---- */
struct sched_view_job {
	char *src_user;               /* owned */
	char *account;                /* state key, owned */
	unsigned part, parts;
	enum state_job_status status;
	unsigned attempts;
	uint64_t messages, bytes;     /* copied so far */
	uint64_t est_messages, est_bytes;
	double seconds;               /* running: this attempt; else total */
	char *error;                  /* owned, or NULL */
};

struct sched_view {
	int64_t run_id;
	size_t jobs, pending, running, done, failed;
	uint64_t est_messages, est_bytes;
	uint64_t messages, bytes;     /* copied, all attempts */
	double fraction;              /* of the planned work done, 0..1 */
	double elapsed;               /* seconds since this process started */
	double rate_messages, rate_bytes; /* recent, per second */
	double eta_seconds;           /* < 0: unknown */
	struct sched_view_job *active; /* running jobs */
	size_t n_active;
};

/* Fills v with the live state (free with sched_view_free()). */
void sched_runner_view(struct sched_runner *r, struct sched_view *v);
void sched_view_free(struct sched_view *v);

/* The same from the database (another process: imapferry status): the
 * rates and ETA are those last written by the running process. Returns 0
 * or -1 with *error_r. */
int sched_view_load(struct state_db *db, int64_t run_id, struct sched_view *v,
                    const char **error_r) ATTR_WARN_UNUSED;

struct sched_run_result {
	bool stopped;                 /* by sched_runner_stop() or run scope */
	char *error;                  /* run-scope error (owned), or NULL */
	size_t done, failed, pending;
	size_t refused_jobs;          /* done, with messages the target refused */
	unsigned src_peak, dst_peak;  /* most sessions at once per server */
	unsigned lost_leases;         /* jobs this machine lost to others */
};

/* Waits for the workers, writes the final progress and frees *r.
 * Fills *res (free res->error). */
void sched_runner_finish(struct sched_runner **r, struct sched_run_result *res);

/* What an engine error's kind means for the run (never its text). */
enum sched_error_class {
	SCHED_ERR_RETRY,              /* session, folder, transient */
	SCHED_ERR_ACCOUNT,            /* login refused, over quota */
	SCHED_ERR_RUN,                /* disk full: stop */
};
enum sched_error_class sched_error_classify(enum err_kind kind);

/* Seconds to wait before retry number errors (1-based): backoff doubled
 * each time, at most 300. */
unsigned sched_backoff(unsigned backoff, unsigned errors);

#endif
