/* state.h: the persistent state database of the copy engine: an SQLite
 * file (one machine), or a PostgreSQL database shared by several machines
 * (state_open() with "postgresql://USER@HOST[:PORT]/DB"). One API, two
 * backends (state-sqlite.c, state-pg.c) with the same schema and the
 * same semantics; docs/internals/queue.md describes the queue.
 *
 * It records which source message went to which destination message, so a
 * run that was killed at any moment (kill -9, crash) resumes without losing
 * or duplicating mail. The engine delivers first and records afterwards, in
 * batches: state_begin(), many state_msg_put(), state_commit(). A crash
 * before the commit loses only the record, never a message, and the engine
 * detects the resulting re-copy (fingerprint, destination UIDNEXT).
 *
 * Durability: WAL journal, synchronous=NORMAL. A committed transaction
 * survives the process being killed; after a power loss or OS crash the
 * last few commits may be rolled back (the file is never corrupted).
 *
 * Concurrency: one handle per thread; a handle is not thread-safe. Several
 * handles and several processes may share one file: readers never wait,
 * writers wait up to 30 s (busy timeout) for another writer's transaction.
 *
 * Errors: every -1 return sets *error_r to "state: <operation>: <reason>",
 * valid until the next err_set() in the same thread. When the disk (or the
 * quota) is full the text contains "disk full"; the run should then stop.
 * After any error inside a transaction call state_rollback() and redo the
 * batch: SQLite may already have rolled it back (disk full, I/O error),
 * and later state_msg_put() calls then fail as "outside a transaction".
 *
 * Depends on base only (SQLite is a private dependency). */
#ifndef IMAPFERRY_STATE_H
#define IMAPFERRY_STATE_H

#include "base.h"

/* Schema version: PRAGMA user_version (SQLite), table imapferry_schema
 * (PostgreSQL). 4 adds the leases of jobs and the machines of a run, 5
 * where the bodies of a job came from (struct state_bodies). */
#define STATE_SCHEMA_VERSION 5

struct state_db;

/* Opens the database file at path, creating it (mode 0600, but not its
 * directory) when missing, and creates or checks the schema. Fails on a
 * file that is not an SQLite database, is an SQLite database of another
 * program, or has a newer schema version than this build knows.
 * Returns 0 with *db_r set (caller owns it; free with state_close()), or
 * -1 with *error_r. */
int state_open(const char *path, struct state_db **db_r,
               const char **error_r) ATTR_WARN_UNUSED;

/* True when path names a PostgreSQL database ("postgresql://..." or
 * "postgres://...") rather than an SQLite file. Such a URL must not hold
 * a password (libpq reads it from PGPASSWORD or ~/.pgpass): state_open()
 * refuses one, so it never shows in a process list or a log. */
bool state_path_is_url(const char *path);

/* True when the database is shared by several machines (PostgreSQL):
 * jobs are then claimed with leases (state_job_claim()). */
bool state_is_shared(const struct state_db *db);

/* Closes *db and sets it to NULL; NULL is allowed. A transaction still open
 * is rolled back. */
void state_close(struct state_db **db);

/* Starts a write transaction (BEGIN IMMEDIATE: the write lock is taken now,
 * waiting up to the busy timeout). Nesting is an error.
 * Returns 0 or -1 with *error_r. */
int state_begin(struct state_db *db, const char **error_r) ATTR_WARN_UNUSED;

/* Commits the transaction started by state_begin(). On failure the caller
 * must call state_rollback() (harmless if SQLite already rolled back).
 * Returns 0 or -1 with *error_r. */
int state_commit(struct state_db *db, const char **error_r) ATTR_WARN_UNUSED;

/* Rolls back the open transaction, if any. Never fails (a failure is
 * logged; SQLite then rolls back when the handle is closed). */
void state_rollback(struct state_db *db);

/* True while a transaction started by state_begin() is open. */
bool state_in_transaction(struct state_db *db);

/* One source folder and where it goes. All strings are owned by the struct
 * (see state_folder_free()). */
struct state_folder {
	int64_t id;                 /* set by state_folder_put(); 0: not stored */
	char *account;              /* key chosen by the caller */
	char *src_name;             /* source folder, wire name */
	uint32_t src_uidvalidity;
	char *dst_name;             /* destination folder (wire name or maildir path) */
	uint32_t dst_uidvalidity;
	uint64_t src_highestmodseq; /* CONDSTORE sync point, 0 = none */
	uint32_t src_uidnext;       /* source UIDNEXT at the last completed pass */
	uint32_t dst_uidnext;       /* destination UIDNEXT after the last committed append */
	bool complete;              /* last pass over this folder finished */
	bool gone_pending;          /* the target holds messages the source
	                             * expunged (a pass without
	                             * --delete-missing saw them): a pass with
	                             * it must not skip the folder as unchanged.
	                             * Stored as bit 1 of the complete column. */
};

/* Looks up the folder (account, src_name). Returns 0 with *found_r set:
 * when true, *f_r is filled (caller frees it with state_folder_free());
 * when false, *f_r is zeroed. Returns -1 with *error_r on error. */
int state_folder_get(struct state_db *db, const char *account,
                     const char *src_name, struct state_folder *f_r,
                     bool *found_r, const char **error_r) ATTR_WARN_UNUSED;

/* Inserts or updates the folder keyed by (f->account, f->src_name) with all
 * fields of f (f->id is ignored) and sets f->id. account and src_name must
 * not be NULL; a NULL dst_name is stored as "". Works inside or outside a
 * transaction. Returns 0 or -1 with *error_r. */
int state_folder_put(struct state_db *db, struct state_folder *f,
                     const char **error_r) ATTR_WARN_UNUSED;

/* Frees the strings of *f and zeroes it (not f itself). */
void state_folder_free(struct state_folder *f);

/* Lists all folders of account sorted by src_name into a new array
 * (*folders_r NULL when *count_r is 0). Free with state_folder_list_free().
 * Returns 0 or -1 with *error_r. */
int state_folder_list(struct state_db *db, const char *account,
                      struct state_folder **folders_r, size_t *count_r,
                      const char **error_r) ATTR_WARN_UNUSED;

/* Frees an array from state_folder_list() and sets *folders to NULL. */
void state_folder_list_free(struct state_folder **folders, size_t count);

/* Deletes all message mappings of a folder (the source UIDVALIDITY
 * changed). The folder row stays. Returns 0 or -1 with *error_r. */
int state_folder_clear_messages(struct state_db *db, int64_t folder_id,
                                const char **error_r) ATTR_WARN_UNUSED;

/* Deletes a folder and all its message mappings (the source folder is
 * gone). Deleting a missing folder is not an error.
 * Returns 0 or -1 with *error_r. */
int state_folder_delete(struct state_db *db, int64_t folder_id,
                        const char **error_r) ATTR_WARN_UNUSED;

/* The mapping of one source message. */
struct state_msg {
	uint32_t src_uid;
	uint32_t dst_uid;           /* 0: unknown (target without UIDPLUS) */
	char *flags;                /* flags+keywords as last copied, canonical
	                             * (sorted, space-separated): "$Label1 \\Seen" */
	uint64_t size;              /* RFC822.SIZE at the source */
	int64_t internaldate;       /* epoch seconds */
	char *fingerprint;          /* hex digest or NULL */
};

/* Loads all mappings of a folder sorted by src_uid. The array and all its
 * strings are one allocation: the strings are read-only and live until
 * state_msgs_free(). *msgs_r is NULL when *count_r is 0. Reads one
 * consistent snapshot even while other processes write.
 * Returns 0 or -1 with *error_r. */
int state_msgs_load(struct state_db *db, int64_t folder_id,
                    struct state_msg **msgs_r, size_t *count_r,
                    const char **error_r) ATTR_WARN_UNUSED;

/* The same for the source UIDs lo..hi only: a folder's diff in windows
 * keeps memory bounded whatever the folder's size. */
int state_msgs_load_range(struct state_db *db, int64_t folder_id, uint32_t lo,
                          uint32_t hi, struct state_msg **msgs_r,
                          size_t *count_r, const char **error_r);
/* Frees an array from state_msgs_load() and sets *msgs to NULL. */
void state_msgs_free(struct state_msg **msgs, size_t count);

/* Inserts or replaces the mapping (folder_id, m->src_uid). A NULL m->flags
 * is stored as "". The folder must exist. Must be called inside
 * state_begin()/state_commit(): outside a transaction it fails (catches
 * per-message autocommit, which is slow and breaks batching).
 * Returns 0 or -1 with *error_r. */
int state_msg_put(struct state_db *db, int64_t folder_id,
                  const struct state_msg *m,
                  const char **error_r) ATTR_WARN_UNUSED;

/* Sets the flags of an existing mapping. Inside a transaction only; no
 * mapping for src_uid is an error. Returns 0 or -1 with *error_r. */
int state_msg_set_flags(struct state_db *db, int64_t folder_id,
                        uint32_t src_uid, const char *flags,
                        const char **error_r) ATTR_WARN_UNUSED;

/* Deletes a mapping (the source message was expunged). Inside a
 * transaction only; deleting a missing mapping is not an error.
 * Returns 0 or -1 with *error_r. */
int state_msg_delete(struct state_db *db, int64_t folder_id,
                     uint32_t src_uid, const char **error_r) ATTR_WARN_UNUSED;

/* What a failure affected (see STYLE.md, Errors). */
enum state_scope {
	STATE_SCOPE_MESSAGE,
	STATE_SCOPE_FOLDER,
	STATE_SCOPE_SESSION,
	STATE_SCOPE_RUN,
};

/* Records a failure keyed by (account, src_folder, src_uid): the first
 * time with attempts 1, later times with attempts incremented; scope,
 * reason and time (now) are replaced. A NULL src_folder is stored as ""
 * (session or run scope); use src_uid 0 for anything but one message.
 * Returns 0 or -1 with *error_r. */
int state_failure_put(struct state_db *db, const char *account,
                      const char *src_folder, uint32_t src_uid,
                      enum state_scope scope, const char *reason,
                      const char **error_r) ATTR_WARN_UNUSED;

/* Forgets a failure (the item was copied after all). A missing entry is
 * not an error. Returns 0 or -1 with *error_r. */
int state_failure_clear(struct state_db *db, const char *account,
                        const char *src_folder, uint32_t src_uid,
                        const char **error_r) ATTR_WARN_UNUSED;

struct state_failure {
	char *account;
	char *folder;               /* "" for session and run scope */
	uint32_t src_uid;           /* 0 unless message scope */
	enum state_scope scope;
	char *reason;
	int64_t when;               /* epoch seconds of the last attempt */
	unsigned attempts;
};

/* Lists the failures of account (NULL: of all accounts) sorted by account,
 * folder, uid into a new array (*f_r NULL when *count_r is 0). Free with
 * state_failure_list_free(). Returns 0 or -1 with *error_r. */
int state_failure_list(struct state_db *db, const char *account,
                       struct state_failure **f_r, size_t *count_r,
                       const char **error_r) ATTR_WARN_UNUSED;

/* Frees an array from state_failure_list() and sets *f to NULL. */
void state_failure_list_free(struct state_failure **f, size_t count);

/* Sets the run metadata key to value (NULL deletes the key).
 * Returns 0 or -1 with *error_r. */
int state_meta_set(struct state_db *db, const char *key, const char *value,
                   const char **error_r) ATTR_WARN_UNUSED;

/* Reads key: *value_r is a new string the caller frees, or NULL when the
 * key is not set. Returns 0 or -1 with *error_r. */
int state_meta_get(struct state_db *db, const char *key, char **value_r,
                   const char **error_r) ATTR_WARN_UNUSED;

/* The default database path of the pair (src_url, dst_url):
 * "$XDG_STATE_HOME/imapferry/<16 hex digits>.db", or with
 * $HOME/.local/state instead of an unset or relative $XDG_STATE_HOME. The
 * digits are the FNV-1a 64-bit hash of both URLs; pass URLs without
 * passwords so the path does not change with them. Creates missing
 * directories (mode 0700). Returns a new string the caller frees, or NULL
 * with *error_r (neither variable set, or a directory cannot be created). */
char *state_default_path(const char *src_url, const char *dst_url,
                         const char **error_r) ATTR_WARN_UNUSED;

/* The FNV-1a 64-bit hash of len bytes continuing from h; start with
 * STATE_FNV1A_INIT. Exposed for tests. */
#define STATE_FNV1A_INIT UINT64_C(0xcbf29ce484222325)
uint64_t state_fnv1a(uint64_t h, const void *data, size_t len);

/* ---- runs and jobs of the scheduler (imapferry run; schema 2) ----
 *
 * A run is one pass over many accounts (all folders, or a folder filter
 * such as the INBOXes of a cutover); its jobs are the planned units of
 * work (an account, or a part of one: some folders, a UID range). The
 * runner keeps the job table current so that a run killed at any moment
 * resumes where it stopped, and so that "imapferry status" can show the
 * progress from another process. No password is ever stored here. */

enum state_job_status {
	STATE_JOB_PENDING,
	STATE_JOB_RUNNING,
	STATE_JOB_DONE,
	STATE_JOB_FAILED,
};

/* "pending", "running", "done", "failed". */
const char *state_job_status_name(enum state_job_status status);

/* One run. Strings are owned (state_run_free()); NULL is stored as "". */
struct state_run {
	int64_t id;                 /* set by state_run_insert() */
	char *pass;                 /* what the run copies (resume key) */
	char *src, *dst;            /* SRC and DST templates */
	char *folders;              /* folder filter (encoded list) or "" */
	unsigned workers;
	char *status;               /* "running", "done", "failed",
	                             * "stopped", "interrupted" */
	char *error;                /* why it stopped, or "" */
	int64_t started, finished;  /* epoch seconds; finished 0 = not yet */
	int64_t heartbeat;          /* epoch seconds of the last progress write */
	int64_t pid;                /* of the process running it */
	double est_seconds;         /* the plan's predicted duration */
	double rate_messages;       /* live: messages/s */
	double rate_bytes;          /* live: bytes/s */
	double eta_seconds;         /* live: < 0 unknown */
	char *plan;                 /* plan summary as JSON text, or "" */
};

/* Inserts r (r->id ignored) and sets r->id. Returns 0 or -1 with *error_r. */
int state_run_insert(struct state_db *db, struct state_run *r,
                     const char **error_r) ATTR_WARN_UNUSED;
/* Stores every field of the run r->id but pass, src, dst, folders and
 * started. Returns 0 or -1 with *error_r. */
int state_run_update(struct state_db *db, const struct state_run *r,
                     const char **error_r) ATTR_WARN_UNUSED;
/* Reads the newest run (highest id) with this pass, or of any pass when
 * pass is NULL (id 0), or the run with this id (id > 0, pass ignored).
 * Returns 0 with *found_r; when true *r_r is filled (free with
 * state_run_free()), else zeroed. Returns -1 with *error_r on error. */
int state_run_get(struct state_db *db, int64_t id, const char *pass,
                  struct state_run *r_r, bool *found_r,
                  const char **error_r) ATTR_WARN_UNUSED;
/* Frees the strings of *r and zeroes it. */
void state_run_free(struct state_run *r);

/* Where the bodies of a job's messages came from when its source is an
 * IMAP account with --bodies-from cyrus-spool:PATH (schema 5: columns
 * bodies_spool, bodies_imap, bodies_missing, bodies_size,
 * bodies_uidvalidity, bodies_error of the job table). All 0 for any other
 * source. */
struct state_bodies {
	uint64_t spool;             /* read from the copied spool */
	uint64_t imap;              /* over IMAP: the sum of the four reasons */
	uint64_t missing;           /* no spool file (or folder) in the copy */
	uint64_t size;              /* the spool file had another size */
	uint64_t uidvalidity;       /* the copy's folder had another UIDVALIDITY */
	uint64_t error;             /* the spool file or folder was unreadable */
};

/* One job of a run. Strings are owned (state_job_list_free()). */
struct state_job {
	int64_t id;                 /* set by state_job_insert() */
	int64_t run_id;
	unsigned seq;               /* order of execution (largest first) */
	char *account;              /* state key of the account pair */
	char *src_user, *dst_user;
	unsigned part, parts;       /* 1-based part of a split account; 1/1 */
	char *folders;              /* encoded list of source folders, "" all */
	char *exclude;              /* encoded list: all folders but these */
	uint32_t uid_lo, uid_hi;    /* UID range of a split folder; 0 0 all */
	uint64_t est_messages, est_bytes;
	double est_seconds;
	enum state_job_status status;
	unsigned attempts;          /* attempts started */
	unsigned errors;            /* attempts that failed */
	uint64_t messages, bytes;   /* copied, over all attempts */
	uint64_t skipped;           /* already on the target (last attempt) */
	uint64_t failed;            /* messages refused (last attempt) */
	unsigned folders_failed;    /* of the last attempt */
	char *error;                /* last error or "" */
	int scope;                  /* enum state_scope of error, -1 none */
	int64_t started, finished, updated; /* epoch seconds, 0 = never */
	int64_t not_before;         /* pending: retry not before this time */
	double seconds;             /* time spent, over all attempts */
	/* schema 4: caps and leases (several machines) */
	char *src_slot, *dst_slot;  /* "host:port" of its servers, "" none */
	char *claimed_by;           /* machine of the last claim, or "" */
	int64_t lease_token;        /* fencing token of the last claim */
	int64_t lease_expires;      /* epoch seconds (database clock) */
	/* schema 5: summed over all attempts, written with the progress
	 * fields (state_job_update(), state_job_release()) */
	struct state_bodies bodies;
};

/* Inserts j (j->id ignored) and sets j->id. Returns 0 or -1 with *error_r. */
int state_job_insert(struct state_db *db, struct state_job *j,
                     const char **error_r) ATTR_WARN_UNUSED;
/* Stores the mutable fields (status .. seconds, bodies) of job j->id.
 * Returns 0 or -1 with *error_r. */
int state_job_update(struct state_db *db, const struct state_job *j,
                     const char **error_r) ATTR_WARN_UNUSED;
/* Live progress of a running job: sets messages, bytes and updated, but
 * only while the job is still running its attempt number attempts (a
 * late write never overwrites a finished job). Returns 0 or -1. */
int state_job_progress(struct state_db *db, int64_t id, unsigned attempts,
                       uint64_t messages, uint64_t bytes, int64_t updated,
                       const char **error_r) ATTR_WARN_UNUSED;
/* Sets every running job of run_id back to pending (their process died:
 * the copy engine resumes them without loss). Returns 0 or -1. */
int state_job_requeue(struct state_db *db, int64_t run_id,
                      const char **error_r) ATTR_WARN_UNUSED;
/* Lists the jobs of run_id by seq (*jobs_r NULL when *count_r is 0).
 * Reads one consistent snapshot. Free with state_job_list_free().
 * Returns 0 or -1 with *error_r. */
int state_job_list(struct state_db *db, int64_t run_id,
                   struct state_job **jobs_r, size_t *count_r,
                   const char **error_r) ATTR_WARN_UNUSED;
/* Frees an array from state_job_list() and sets *jobs to NULL. */
void state_job_list_free(struct state_job **jobs, size_t count);
/* Frees the strings of one job and zeroes it. */
void state_job_free(struct state_job *j);

/* ---- UID-range parts (schema 3) ----
 * A large folder copied into a Maildir by several jobs of one run, each a
 * UID range [uid_lo, uid_hi] (the last one up to UINT32_MAX). */

/* Records that the range's job finished, with the source's UIDNEXT and
 * HIGHESTMODSEQ (0: none) as it saw them. */
int state_part_done(struct state_db *db, int64_t run_id, const char *account,
                    const char *folder, uint32_t uid_lo, uint32_t uid_hi,
                    uint32_t uidnext, uint64_t modseq,
                    const char **error_r) ATTR_WARN_UNUSED;
/* *complete_r: the finished ranges of the run cover UIDs 1..UINT32_MAX;
 * *uidnext_r and *modseq_r: the lowest of those recorded (0 if none). */
int state_part_cover(struct state_db *db, int64_t run_id, const char *account,
                     const char *folder, bool *complete_r, uint32_t *uidnext_r,
                     uint64_t *modseq_r, const char **error_r) ATTR_WARN_UNUSED;

/* ---- several machines: claims, leases and fencing (schema 4) ----
 *
 * A worker claims a job (state_job_claim()): the job becomes running with
 * a new fencing token (a sequence, never reused) and a lease that expires
 * lease_seconds later by the database's clock. The worker extends it
 * (state_job_heartbeat()) and ends the attempt (state_job_release()); both
 * only while the token is still the job's: a job whose lease expired is
 * claimed again by another worker with a new token, and the first
 * worker's writes then change nothing (*lost_r).
 *
 * The copy engine's own writes (mappings, folders, failures, parts) are
 * fenced through the handle: after state_fence_set(db, job, token) every
 * transaction started on db first checks, and locks against a takeover
 * until it ends, that the job still runs under token (PostgreSQL: SELECT
 * ... FOR SHARE on the job row, which a claim's FOR UPDATE SKIP LOCKED
 * skips; SQLite: inside BEGIN IMMEDIATE), and every write outside a
 * transaction runs in one such transaction. When the check fails, the
 * write fails as a state error and state_fence_lost() turns true: the
 * worker stops writing for that job. */

/* What state_job_claim() may take. */
struct state_claim {
	int64_t run_id;
	const char *machine;          /* recorded as claimed_by */
	unsigned lease_seconds;       /* >= 1 */
	unsigned max_src, max_dst;    /* jobs running at once per src_slot /
	                               * dst_slot over all machines; 0: any */
};

/* Claims the first runnable job of the run by seq: pending and due
 * (not_before passed), or running with an expired lease (its machine died
 * or stalls), and whose servers are below the caps (counted from the jobs
 * running with a live lease; claims are serialized per run, so the caps
 * are exact). The job becomes running with attempts + 1, a new token and
 * lease; taking over an expired lease counts one lost lease for the
 * machine that held it. Returns 0 with *found_r (true: *j_r filled, free
 * with state_job_free(); its lease_token is the fence) and *busy_r, the
 * jobs of the run not finished (pending or running, including the one
 * claimed): 0 means the run has nothing left. -1 with *error_r. */
int state_job_claim(struct state_db *db, const struct state_claim *c,
                    struct state_job *j_r, bool *found_r, size_t *busy_r,
                    const char **error_r) ATTR_WARN_UNUSED;

/* Extends the lease of job id to lease_seconds from now and stores its
 * live counters, if token is still its token and it is running; else
 * sets *lost_r (nothing written). Returns 0 or -1 with *error_r. */
int state_job_heartbeat(struct state_db *db, int64_t id, int64_t token,
                        unsigned lease_seconds, uint64_t messages,
                        uint64_t bytes, int64_t updated, bool *lost_r,
                        const char **error_r) ATTR_WARN_UNUSED;

/* Ends an attempt: stores the mutable fields of j (status pending, done
 * or failed) and ends the lease, if token is still the job's token and it
 * is running; else sets *lost_r (nothing written). Returns 0 or -1. */
int state_job_release(struct state_db *db, const struct state_job *j,
                      int64_t token, bool *lost_r,
                      const char **error_r) ATTR_WARN_UNUSED;

/* Fails every pending job of account in the run (its login was refused)
 * with error. Returns 0 or -1 with *error_r. */
int state_job_fail_account(struct state_db *db, int64_t run_id,
                           const char *account, const char *error,
                           const char **error_r) ATTR_WARN_UNUSED;

/* Sets the failed jobs of the run back to pending with no errors (a
 * resumed run retries them). Returns 0 or -1 with *error_r. */
int state_job_retry_failed(struct state_db *db, int64_t run_id,
                           const char **error_r) ATTR_WARN_UNUSED;

/* Fences db's writes by job id's token (see above); 0 0 ends fencing. */
void state_fence_set(struct state_db *db, int64_t job_id, int64_t token);
/* True when a write was refused since state_fence_set(): the job was
 * taken over by another worker. */
bool state_fence_lost(const struct state_db *db);
/* Checks now that the fence still holds (one short transaction; nothing
 * to do without a fence), before work whose effect is outside the state
 * (messages sent to a target): a worker that was frozen past its lease
 * must notice before it sends, not at its next state write. Returns 0, or
 * -1 with *error_r (ERRK_STATE) when the job was taken over. */
int state_fence_check(struct state_db *db, const char **error_r) ATTR_WARN_UNUSED;

/* One machine of a run (imapferry run --machine NAME). Strings owned. */
struct state_machine {
	int64_t run_id;
	char *name;
	char *host;                   /* hostname */
	int64_t pid;
	char *status;                 /* "running", "done", "stopped", ... */
	int64_t started, heartbeat;   /* epoch seconds; heartbeat: db clock */
	unsigned workers, jobs_running, jobs_done;
	uint64_t messages, bytes;     /* copied by this machine */
	double rate_messages, rate_bytes;
	unsigned lost_leases;         /* its jobs others took over */
	int64_t age;                  /* list only: seconds since heartbeat */
};

/* Inserts or updates the machine (run_id, name); heartbeat is set to now
 * by the database, lost_leases is kept. Returns 0 or -1 with *error_r. */
int state_machine_put(struct state_db *db, const struct state_machine *m,
                      const char **error_r) ATTR_WARN_UNUSED;
/* Lists the machines of a run by name (free with
 * state_machine_list_free()). Returns 0 or -1 with *error_r. */
int state_machine_list(struct state_db *db, int64_t run_id,
                       struct state_machine **m_r, size_t *count_r,
                       const char **error_r) ATTR_WARN_UNUSED;
void state_machine_list_free(struct state_machine **m, size_t count);

/* Serializes "find the run or plan it" among machines: a lock on key held
 * by this handle until state_run_unlock() or state_close() (PostgreSQL:
 * a session advisory lock; SQLite: nothing, FILE.lock does it). Waits.
 * Returns 0 or -1 with *error_r. */
int state_run_lock(struct state_db *db, const char *key,
                   const char **error_r) ATTR_WARN_UNUSED;
void state_run_unlock(struct state_db *db, const char *key);

/* Wakes the idle workers of every machine (PostgreSQL: NOTIFY; SQLite:
 * nothing). Best effort. */
void state_notify(struct state_db *db);
/* Waits up to ms milliseconds for a state_notify() from any handle (the
 * first call subscribes; PostgreSQL: LISTEN). Notifications can be lost
 * (a reconnect): callers poll too. Returns true if woken. */
bool state_wait(struct state_db *db, unsigned ms);

#endif
