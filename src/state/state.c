/* state.c: the state API (state.h) over its two backends, SQLite
 * (state-sqlite.c) and PostgreSQL (state-pg.c), and what both share: the
 * fencing of a handle's writes by a job's lease token, the free
 * functions, the default path. */
#include "state.h"
#include "state-backend.h"
#include "state-private.h"

#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct state_db {
	struct sq_db *sq;           /* exactly one of sq, pg */
	struct pg_db *pg;
	int64_t fence_job, fence_token; /* 0 0: no fence */
	bool fence_lost;
};

/* Calls the backend's function fn with db's backend handle first. */
#define CALL(fn, ...) \
	(db->pg != NULL ? pg_##fn(db->pg, __VA_ARGS__) : \
	 sq_##fn(db->sq, __VA_ARGS__))
#define CALL0(fn) (db->pg != NULL ? pg_##fn(db->pg) : sq_##fn(db->sq))

bool
state_path_is_url(const char *path)
{
	return strncmp(path, "postgresql://", 13) == 0 ||
	    strncmp(path, "postgres://", 11) == 0;
}

int
state_open(const char *path, struct state_db **db_r, const char **error_r)
{
	struct state_db *db = xcalloc(1, sizeof(*db));
	int rc;

	*db_r = NULL;
	if (state_path_is_url(path))
		rc = pg_open(path, &db->pg, error_r);
	else
		rc = sq_open(path, &db->sq, error_r);
	if (rc < 0) {
		free(db);
		return -1;
	}
	*db_r = db;
	return 0;
}

void
state_close(struct state_db **dbp)
{
	struct state_db *db = *dbp;

	if (db == NULL)
		return;
	if (db->pg != NULL)
		pg_close(&db->pg);
	else
		sq_close(&db->sq);
	free(db);
	*dbp = NULL;
}

bool
state_is_shared(const struct state_db *db)
{
	return db->pg != NULL;
}

struct sqlite3 *
state_db_sqlite(struct state_db *db)
{
	return db->sq != NULL ? sq_handle(db->sq) : NULL;
}

/* ------------------------------------------------------------ fencing */

void
state_fence_set(struct state_db *db, int64_t job_id, int64_t token)
{
	db->fence_job = job_id;
	db->fence_token = token;
	db->fence_lost = false;
}

bool
state_fence_lost(const struct state_db *db)
{
	return db->fence_lost;
}

int
state_fence_check(struct state_db *db, const char **error_r)
{
	if (db->fence_job == 0 && !db->fence_lost)
		return 0;
	if (state_begin(db, error_r) < 0)
		return -1;
	state_rollback(db);
	return 0;
}

int
state_begin(struct state_db *db, const char **error_r)
{
	bool held;

	if (db->fence_lost) {
		*error_r = err_setk(ERRK_STATE, "state: job %" PRId64 " was taken "
		                    "over by another worker (lease lost): not "
		                    "writing for it", db->fence_job);
		return -1;
	}
	if (CALL(begin, error_r) < 0)
		return -1;
	if (db->fence_job == 0)
		return 0;
	/* Locks the job row until the end of the transaction: a claim
	 * cannot take the job over while this transaction writes for it. */
	if (CALL(fence_check, db->fence_job, db->fence_token, &held,
	         error_r) < 0) {
		CALL0(rollback);
		return -1;
	}
	if (!held) {
		CALL0(rollback);
		db->fence_lost = true;
		log_warn("state: job %" PRId64 ": the lease was taken over by "
		         "another worker: this worker stops writing for it",
		         db->fence_job);
		*error_r = err_setk(ERRK_STATE, "state: job %" PRId64 " was taken "
		                    "over by another worker (lease lost): not "
		                    "writing for it", db->fence_job);
		return -1;
	}
	return 0;
}

int
state_commit(struct state_db *db, const char **error_r)
{
	return CALL(commit, error_r);
}

void
state_rollback(struct state_db *db)
{
	CALL0(rollback);
}

bool
state_in_transaction(struct state_db *db)
{
	return CALL0(in_transaction);
}

/* A write outside a transaction on a fenced handle runs in its own
 * transaction, which checks the fence (state_begin()). Returns 0 with
 * *own_r when one was opened, or -1 with *error_r. */
static int
fenced_enter(struct state_db *db, bool *own_r, const char **error_r)
{
	*own_r = false;
	if (db->fence_job == 0 || CALL0(in_transaction))
		return 0;
	if (state_begin(db, error_r) < 0)
		return -1;
	*own_r = true;
	return 0;
}

/* Ends what fenced_enter() opened; rc is the write's result. */
static int
fenced_leave(struct state_db *db, bool own, int rc, const char **error_r)
{
	if (!own)
		return rc;
	if (rc < 0) {
		CALL0(rollback);
		return -1;
	}
	if (CALL(commit, error_r) < 0) {
		CALL0(rollback);
		return -1;
	}
	return 0;
}

/* A write fenced as above: expr is evaluated between the two. */
#define FENCED(expr) do { \
	bool own_; \
	if (fenced_enter(db, &own_, error_r) < 0) \
		return -1; \
	return fenced_leave(db, own_, (expr), error_r); \
} while (0)

/* ----------------------------------------------------------- dispatch */

int
state_folder_get(struct state_db *db, const char *account,
                 const char *src_name, struct state_folder *f_r,
                 bool *found_r, const char **error_r)
{
	return CALL(folder_get, account, src_name, f_r, found_r, error_r);
}

int
state_folder_put(struct state_db *db, struct state_folder *f,
                 const char **error_r)
{
	FENCED(CALL(folder_put, f, error_r));
}

int
state_folder_list(struct state_db *db, const char *account,
                  struct state_folder **folders_r, size_t *count_r,
                  const char **error_r)
{
	return CALL(folder_list, account, folders_r, count_r, error_r);
}

int
state_folder_clear_messages(struct state_db *db, int64_t folder_id,
                            const char **error_r)
{
	FENCED(CALL(folder_clear_messages, folder_id, error_r));
}

int
state_folder_delete(struct state_db *db, int64_t folder_id,
                    const char **error_r)
{
	FENCED(CALL(folder_delete, folder_id, error_r));
}

int
state_msgs_load(struct state_db *db, int64_t folder_id,
                struct state_msg **msgs_r, size_t *count_r,
                const char **error_r)
{
	return CALL(msgs_load, folder_id, 1, UINT32_MAX, msgs_r, count_r, error_r);
}

int
state_msgs_load_range(struct state_db *db, int64_t folder_id, uint32_t lo,
                      uint32_t hi, struct state_msg **msgs_r, size_t *count_r,
                      const char **error_r)
{
	return CALL(msgs_load, folder_id, lo, hi, msgs_r, count_r, error_r);
}

int
state_msg_put(struct state_db *db, int64_t folder_id,
              const struct state_msg *m, const char **error_r)
{
	return CALL(msg_put, folder_id, m, error_r);
}

int
state_msg_set_flags(struct state_db *db, int64_t folder_id,
                    uint32_t src_uid, const char *flags,
                    const char **error_r)
{
	return CALL(msg_set_flags, folder_id, src_uid, flags, error_r);
}

int
state_msg_delete(struct state_db *db, int64_t folder_id, uint32_t src_uid,
                 const char **error_r)
{
	return CALL(msg_delete, folder_id, src_uid, error_r);
}

int
state_failure_put(struct state_db *db, const char *account,
                  const char *src_folder, uint32_t src_uid,
                  enum state_scope scope, const char *reason,
                  const char **error_r)
{
	FENCED(CALL(failure_put, account, src_folder, src_uid, scope, reason,
	            error_r));
}

int
state_failure_clear(struct state_db *db, const char *account,
                    const char *src_folder, uint32_t src_uid,
                    const char **error_r)
{
	FENCED(CALL(failure_clear, account, src_folder, src_uid, error_r));
}

int
state_failure_list(struct state_db *db, const char *account,
                   struct state_failure **f_r, size_t *count_r,
                   const char **error_r)
{
	return CALL(failure_list, account, f_r, count_r, error_r);
}

int
state_meta_set(struct state_db *db, const char *key, const char *value,
               const char **error_r)
{
	FENCED(CALL(meta_set, key, value, error_r));
}

int
state_meta_get(struct state_db *db, const char *key, char **value_r,
               const char **error_r)
{
	return CALL(meta_get, key, value_r, error_r);
}

int
state_run_insert(struct state_db *db, struct state_run *r,
                 const char **error_r)
{
	return CALL(run_insert, r, error_r);
}

int
state_run_update(struct state_db *db, const struct state_run *r,
                 const char **error_r)
{
	return CALL(run_update, r, error_r);
}

int
state_run_get(struct state_db *db, int64_t id, const char *pass,
              struct state_run *r_r, bool *found_r, const char **error_r)
{
	return CALL(run_get, id, pass, r_r, found_r, error_r);
}

int
state_job_insert(struct state_db *db, struct state_job *j,
                 const char **error_r)
{
	return CALL(job_insert, j, error_r);
}

int
state_job_update(struct state_db *db, const struct state_job *j,
                 const char **error_r)
{
	return CALL(job_update, j, error_r);
}

int
state_job_progress(struct state_db *db, int64_t id, unsigned attempts,
                   uint64_t messages, uint64_t bytes, int64_t updated,
                   const char **error_r)
{
	return CALL(job_progress, id, attempts, messages, bytes, updated,
	            error_r);
}

int
state_job_requeue(struct state_db *db, int64_t run_id, const char **error_r)
{
	return CALL(job_requeue, run_id, error_r);
}

int
state_job_list(struct state_db *db, int64_t run_id, struct state_job **jobs_r,
               size_t *count_r, const char **error_r)
{
	return CALL(job_list, run_id, jobs_r, count_r, error_r);
}

int
state_part_done(struct state_db *db, int64_t run_id, const char *account,
                const char *folder, uint32_t uid_lo, uint32_t uid_hi,
                uint32_t uidnext, uint64_t modseq, const char **error_r)
{
	FENCED(CALL(part_done, run_id, account, folder, uid_lo, uid_hi, uidnext,
	            modseq, error_r));
}

int
state_part_cover(struct state_db *db, int64_t run_id, const char *account,
                 const char *folder, bool *complete_r, uint32_t *uidnext_r,
                 uint64_t *modseq_r, const char **error_r)
{
	return CALL(part_cover, run_id, account, folder, complete_r, uidnext_r,
	            modseq_r, error_r);
}

int
state_job_claim(struct state_db *db, const struct state_claim *c,
                struct state_job *j_r, bool *found_r, size_t *busy_r,
                const char **error_r)
{
	return CALL(job_claim, c, j_r, found_r, busy_r, error_r);
}

int
state_job_heartbeat(struct state_db *db, int64_t id, int64_t token,
                    unsigned lease_seconds, uint64_t messages, uint64_t bytes,
                    int64_t updated, bool *lost_r, const char **error_r)
{
	return CALL(job_heartbeat, id, token, lease_seconds, messages, bytes,
	            updated, lost_r, error_r);
}

int
state_job_release(struct state_db *db, const struct state_job *j,
                  int64_t token, bool *lost_r, const char **error_r)
{
	return CALL(job_release, j, token, lost_r, error_r);
}

int
state_job_fail_account(struct state_db *db, int64_t run_id,
                       const char *account, const char *error,
                       const char **error_r)
{
	return CALL(job_fail_account, run_id, account, error, error_r);
}

int
state_job_retry_failed(struct state_db *db, int64_t run_id,
                       const char **error_r)
{
	return CALL(job_retry_failed, run_id, error_r);
}

int
state_machine_put(struct state_db *db, const struct state_machine *m,
                  const char **error_r)
{
	return CALL(machine_put, m, error_r);
}

int
state_machine_list(struct state_db *db, int64_t run_id,
                   struct state_machine **m_r, size_t *count_r,
                   const char **error_r)
{
	return CALL(machine_list, run_id, m_r, count_r, error_r);
}

void
state_machine_list_free(struct state_machine **m, size_t count)
{
	if (*m == NULL)
		return;
	for (size_t i = 0; i < count; i++) {
		free((*m)[i].name);
		free((*m)[i].host);
		free((*m)[i].status);
	}
	XFREE(*m);
}

int
state_run_lock(struct state_db *db, const char *key, const char **error_r)
{
	return CALL(run_lock, key, error_r);
}

void
state_run_unlock(struct state_db *db, const char *key)
{
	CALL(run_unlock, key);
}

void
state_notify(struct state_db *db)
{
	CALL0(notify);
}

bool
state_wait(struct state_db *db, unsigned ms)
{
	return CALL(wait, ms);
}

/* ------------------------------------------------------------- common */

uint64_t
state_fnv1a(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= UINT64_C(0x100000001b3);
	}
	return h;
}

/* mkdir -p with mode 0700 for the components it creates. */
static int
mkdir_parents(char *dir, const char **error_r)
{
	struct stat st;
	char *p = dir;

	for (;;) {
		p = strchr(p + 1, '/');
		if (p != NULL)
			*p = '\0';
		if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
			int saved = errno;

			/* EACCES etc. on a directory that already exists
			 * (a parent we may not write to) is fine. */
			if (stat(dir, &st) == -1 || !S_ISDIR(st.st_mode)) {
				*error_r = err_errno(saved, "state: creating directory "
				                   "%s: %s", dir,
				                   strerror(saved));
				if (p != NULL)
					*p = '/';
				return -1;
			}
		}
		if (p == NULL)
			break;
		*p = '/';
	}
	if (stat(dir, &st) == -1 || !S_ISDIR(st.st_mode)) {
		*error_r = err_setk(ERRK_STATE, "state: %s: not a directory", dir);
		return -1;
	}
	return 0;
}

char *
state_default_path(const char *src_url, const char *dst_url,
                   const char **error_r)
{
	const char *base = getenv("XDG_STATE_HOME");
	const char *home = getenv("HOME");
	char *dir, *path;
	uint64_t h;

	/* The XDG spec says to ignore relative paths. */
	if (base != NULL && base[0] == '/')
		dir = xasprintf("%s/imapferry", base);
	else if (home != NULL && home[0] == '/')
		dir = xasprintf("%s/.local/state/imapferry", home);
	else {
		*error_r = "state: cannot find a state directory: neither "
		    "XDG_STATE_HOME nor HOME is an absolute path";
		return NULL;
	}
	if (mkdir_parents(dir, error_r) < 0) {
		free(dir);
		return NULL;
	}
	/* Hash the NULs too: ("ab", "c") and ("a", "bc") differ. */
	h = state_fnv1a(STATE_FNV1A_INIT, src_url, strlen(src_url) + 1);
	h = state_fnv1a(h, dst_url, strlen(dst_url) + 1);
	path = xasprintf("%s/%016" PRIx64 ".db", dir, h);
	free(dir);
	return path;
}


static const char *const job_status_names[] = {
	[STATE_JOB_PENDING] = "pending",
	[STATE_JOB_RUNNING] = "running",
	[STATE_JOB_DONE] = "done",
	[STATE_JOB_FAILED] = "failed",
};

const char *
state_job_status_name(enum state_job_status status)
{
	if ((size_t)status >= N_ELEMENTS(job_status_names))
		return "unknown";
	return job_status_names[status];
}

enum state_job_status
state_job_status_parse(const char *s)
{
	for (size_t i = 0; i < N_ELEMENTS(job_status_names); i++)
		if (strcmp(s, job_status_names[i]) == 0)
			return (enum state_job_status)i;
	return STATE_JOB_FAILED;
}


void
state_run_free(struct state_run *r)
{
	free(r->pass);
	free(r->src);
	free(r->dst);
	free(r->folders);
	free(r->status);
	free(r->error);
	free(r->plan);
	memset(r, 0, sizeof(*r));
}


void
state_job_free(struct state_job *j)
{
	free(j->account);
	free(j->src_user);
	free(j->dst_user);
	free(j->folders);
	free(j->exclude);
	free(j->error);
	free(j->src_slot);
	free(j->dst_slot);
	free(j->claimed_by);
	memset(j, 0, sizeof(*j));
}

void
state_job_list_free(struct state_job **jobs, size_t count)
{
	if (*jobs == NULL)
		return;
	for (size_t i = 0; i < count; i++)
		state_job_free(&(*jobs)[i]);
	XFREE(*jobs);
}


void
state_folder_free(struct state_folder *f)
{
	free(f->account);
	free(f->src_name);
	free(f->dst_name);
	memset(f, 0, sizeof(*f));
}


void
state_folder_list_free(struct state_folder **folders, size_t count)
{
	if (*folders == NULL)
		return;
	for (size_t i = 0; i < count; i++)
		state_folder_free(&(*folders)[i]);
	XFREE(*folders);
}


void
state_msgs_free(struct state_msg **msgs, size_t count)
{
	(void)count; /* one allocation */
	XFREE(*msgs);
}


void
state_failure_list_free(struct state_failure **f, size_t count)
{
	if (*f == NULL)
		return;
	for (size_t i = 0; i < count; i++) {
		free((*f)[i].account);
		free((*f)[i].folder);
		free((*f)[i].reason);
	}
	XFREE(*f);
}

