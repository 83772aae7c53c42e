/* state-backend.h: the two backends behind state.h. state.c dispatches
 * every call to the handle's backend and does what both share (fencing,
 * the free functions, the default path). Each function has the contract
 * of its state_* namesake in state.h. */
#ifndef IMAPFERRY_STATE_BACKEND_H
#define IMAPFERRY_STATE_BACKEND_H

#include "state.h"

struct sq_db;
struct pg_db;

/* Parses "pending", ... (unknown: STATE_JOB_FAILED). */
enum state_job_status state_job_status_parse(const char *s);

#define STATE_BACKEND_DECLS(P, T) \
int P##_open(const char *path, T **db_r, const char **error_r); \
void P##_close(T **db); \
int P##_begin(T *db, const char **error_r); \
int P##_commit(T *db, const char **error_r); \
void P##_rollback(T *db); \
bool P##_in_transaction(T *db); \
int P##_fence_check(T *db, int64_t job_id, int64_t token, bool *held_r, \
                    const char **error_r); \
int P##_folder_get(T *db, const char *account, const char *src_name, \
                   struct state_folder *f_r, bool *found_r, \
                   const char **error_r); \
int P##_folder_put(T *db, struct state_folder *f, const char **error_r); \
int P##_folder_list(T *db, const char *account, \
                    struct state_folder **folders_r, size_t *count_r, \
                    const char **error_r); \
int P##_folder_clear_messages(T *db, int64_t folder_id, const char **error_r); \
int P##_folder_delete(T *db, int64_t folder_id, const char **error_r); \
int P##_msgs_load(T *db, int64_t folder_id, uint32_t lo, uint32_t hi, \
                  struct state_msg **msgs_r, size_t *count_r, \
                  const char **error_r); \
int P##_msg_put(T *db, int64_t folder_id, const struct state_msg *m, \
                const char **error_r); \
int P##_msg_set_flags(T *db, int64_t folder_id, uint32_t src_uid, \
                      const char *flags, const char **error_r); \
int P##_msg_delete(T *db, int64_t folder_id, uint32_t src_uid, \
                   const char **error_r); \
int P##_failure_put(T *db, const char *account, const char *src_folder, \
                    uint32_t src_uid, enum state_scope scope, \
                    const char *reason, const char **error_r); \
int P##_failure_clear(T *db, const char *account, const char *src_folder, \
                      uint32_t src_uid, const char **error_r); \
int P##_failure_list(T *db, const char *account, struct state_failure **f_r, \
                     size_t *count_r, const char **error_r); \
int P##_meta_set(T *db, const char *key, const char *value, \
                 const char **error_r); \
int P##_meta_get(T *db, const char *key, char **value_r, \
                 const char **error_r); \
int P##_run_insert(T *db, struct state_run *r, const char **error_r); \
int P##_run_update(T *db, const struct state_run *r, const char **error_r); \
int P##_run_get(T *db, int64_t id, const char *pass, struct state_run *r_r, \
                bool *found_r, const char **error_r); \
int P##_job_insert(T *db, struct state_job *j, const char **error_r); \
int P##_job_update(T *db, const struct state_job *j, const char **error_r); \
int P##_job_progress(T *db, int64_t id, unsigned attempts, uint64_t messages, \
                     uint64_t bytes, int64_t updated, const char **error_r); \
int P##_job_requeue(T *db, int64_t run_id, const char **error_r); \
int P##_job_list(T *db, int64_t run_id, struct state_job **jobs_r, \
                 size_t *count_r, const char **error_r); \
int P##_part_done(T *db, int64_t run_id, const char *account, \
                  const char *folder, uint32_t uid_lo, uint32_t uid_hi, \
                  uint32_t uidnext, uint64_t modseq, const char **error_r); \
int P##_part_cover(T *db, int64_t run_id, const char *account, \
                   const char *folder, bool *complete_r, uint32_t *uidnext_r, \
                   uint64_t *modseq_r, const char **error_r); \
int P##_job_claim(T *db, const struct state_claim *c, struct state_job *j_r, \
                  bool *found_r, size_t *busy_r, const char **error_r); \
int P##_job_heartbeat(T *db, int64_t id, int64_t token, unsigned lease, \
                      uint64_t messages, uint64_t bytes, int64_t updated, \
                      bool *lost_r, const char **error_r); \
int P##_job_release(T *db, const struct state_job *j, int64_t token, \
                    bool *lost_r, const char **error_r); \
int P##_job_fail_account(T *db, int64_t run_id, const char *account, \
                         const char *error, const char **error_r); \
int P##_job_retry_failed(T *db, int64_t run_id, const char **error_r); \
int P##_machine_put(T *db, const struct state_machine *m, \
                    const char **error_r); \
int P##_machine_list(T *db, int64_t run_id, struct state_machine **m_r, \
                     size_t *count_r, const char **error_r); \
int P##_run_lock(T *db, const char *key, const char **error_r); \
void P##_run_unlock(T *db, const char *key); \
void P##_notify(T *db); \
bool P##_wait(T *db, unsigned ms);

STATE_BACKEND_DECLS(sq, struct sq_db)
STATE_BACKEND_DECLS(pg, struct pg_db)

/* The SQLite connection of an SQLite handle (state_db_sqlite()). */
struct sqlite3 *sq_handle(struct sq_db *db);

#endif
