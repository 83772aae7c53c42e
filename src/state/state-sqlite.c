/* state-sqlite.c: the SQLite backend of the state database (state.h has
 * the contract, state.c dispatches to the sq_* functions here).
 *
 * Every statement is prepared once per handle (lazily, on first use) and
 * kept in db->stmts; after each use it is reset, never finalized, so hot
 * paths (sq_msg_put() in a batch) only bind and step. */
#include "state-backend.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* PRAGMA application_id: "ifer". Tells our files from other SQLite files. */
#define STATE_APPLICATION_ID 0x69666572
#define STATE_BUSY_TIMEOUT_MS 30000
/* UPSERT needs 3.24, RETURNING 3.35. */
#define STATE_MIN_SQLITE 3035000

enum stmt {
	STMT_BEGIN,
	STMT_BEGIN_READ,
	STMT_COMMIT,
	STMT_ROLLBACK,
	STMT_FOLDER_GET,
	STMT_FOLDER_PUT,
	STMT_FOLDER_LIST,
	STMT_FOLDER_CLEAR,
	STMT_FOLDER_DELETE,
	STMT_MSG_COUNT,
	STMT_MSG_LOAD,
	STMT_MSG_PUT,
	STMT_MSG_SET_FLAGS,
	STMT_MSG_DELETE,
	STMT_FAILURE_PUT,
	STMT_FAILURE_CLEAR,
	STMT_FAILURE_LIST,
	STMT_META_SET,
	STMT_META_DELETE,
	STMT_META_GET,
	STMT_COUNT
};

#define FOLDER_COLUMNS \
	"id, account, src_name, src_uidvalidity, dst_name, dst_uidvalidity, " \
	"src_highestmodseq, src_uidnext, dst_uidnext, complete"

static const char *const stmt_sql[STMT_COUNT] = {
	[STMT_BEGIN] = "BEGIN IMMEDIATE",
	[STMT_BEGIN_READ] = "BEGIN DEFERRED",
	[STMT_COMMIT] = "COMMIT",
	[STMT_ROLLBACK] = "ROLLBACK",
	[STMT_FOLDER_GET] =
	    "SELECT " FOLDER_COLUMNS " FROM folder"
	    " WHERE account = ?1 AND src_name = ?2",
	[STMT_FOLDER_PUT] =
	    "INSERT INTO folder (account, src_name, src_uidvalidity, dst_name,"
	    " dst_uidvalidity, src_highestmodseq, src_uidnext, dst_uidnext,"
	    " complete) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
	    " ON CONFLICT (account, src_name) DO UPDATE SET"
	    " src_uidvalidity = excluded.src_uidvalidity,"
	    " dst_name = excluded.dst_name,"
	    " dst_uidvalidity = excluded.dst_uidvalidity,"
	    " src_highestmodseq = excluded.src_highestmodseq,"
	    " src_uidnext = excluded.src_uidnext,"
	    " dst_uidnext = excluded.dst_uidnext,"
	    " complete = excluded.complete"
	    " RETURNING id",
	[STMT_FOLDER_LIST] =
	    "SELECT " FOLDER_COLUMNS " FROM folder WHERE account = ?1"
	    " ORDER BY src_name",
	[STMT_FOLDER_CLEAR] = "DELETE FROM msg WHERE folder_id = ?1",
	[STMT_FOLDER_DELETE] = "DELETE FROM folder WHERE id = ?1",
	/* Bytes of all strings incl. their NULs, for the one allocation. */
	[STMT_MSG_COUNT] =
	    "SELECT count(*), coalesce(sum(length(CAST(flags AS BLOB)) + 1 +"
	    " coalesce(length(CAST(fingerprint AS BLOB)) + 1, 0)), 0)"
	    " FROM msg WHERE folder_id = ?1 AND src_uid BETWEEN ?2 AND ?3",
	[STMT_MSG_LOAD] =
	    "SELECT src_uid, dst_uid, flags, size, internaldate, fingerprint"
	    " FROM msg WHERE folder_id = ?1 AND src_uid BETWEEN ?2 AND ?3"
	    " ORDER BY src_uid",
	[STMT_MSG_PUT] =
	    "INSERT INTO msg (folder_id, src_uid, dst_uid, flags, size,"
	    " internaldate, fingerprint) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
	    " ON CONFLICT (folder_id, src_uid) DO UPDATE SET"
	    " dst_uid = excluded.dst_uid, flags = excluded.flags,"
	    " size = excluded.size, internaldate = excluded.internaldate,"
	    " fingerprint = excluded.fingerprint",
	[STMT_MSG_SET_FLAGS] =
	    "UPDATE msg SET flags = ?3 WHERE folder_id = ?1 AND src_uid = ?2",
	[STMT_MSG_DELETE] =
	    "DELETE FROM msg WHERE folder_id = ?1 AND src_uid = ?2",
	[STMT_FAILURE_PUT] =
	    "INSERT INTO failure (account, folder, src_uid, scope, reason,"
	    " last_time, attempts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1)"
	    " ON CONFLICT (account, folder, src_uid) DO UPDATE SET"
	    " scope = excluded.scope, reason = excluded.reason,"
	    " last_time = excluded.last_time, attempts = attempts + 1",
	[STMT_FAILURE_CLEAR] =
	    "DELETE FROM failure WHERE account = ?1 AND folder = ?2"
	    " AND src_uid = ?3",
	[STMT_FAILURE_LIST] =
	    "SELECT account, folder, src_uid, scope, reason, last_time, attempts"
	    " FROM failure WHERE ?1 IS NULL OR account = ?1"
	    " ORDER BY account, folder, src_uid",
	[STMT_META_SET] =
	    "INSERT INTO meta (key, value) VALUES (?1, ?2)"
	    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
	[STMT_META_DELETE] = "DELETE FROM meta WHERE key = ?1",
	[STMT_META_GET] = "SELECT value FROM meta WHERE key = ?1",
};

/* Version 1. Unsigned 64-bit values (size, modseq) are stored as the
 * signed integer with the same bits. */
static const char schema_v1[] =
	"CREATE TABLE folder ("
	" id INTEGER PRIMARY KEY,"
	" account TEXT NOT NULL,"
	" src_name TEXT NOT NULL,"
	" src_uidvalidity INTEGER NOT NULL,"
	" dst_name TEXT NOT NULL,"
	" dst_uidvalidity INTEGER NOT NULL,"
	" src_highestmodseq INTEGER NOT NULL,"
	" src_uidnext INTEGER NOT NULL,"
	" dst_uidnext INTEGER NOT NULL,"
	" complete INTEGER NOT NULL,"
	" UNIQUE (account, src_name));"
	"CREATE TABLE msg ("
	" folder_id INTEGER NOT NULL REFERENCES folder (id) ON DELETE CASCADE,"
	" src_uid INTEGER NOT NULL,"
	" dst_uid INTEGER NOT NULL,"
	" flags TEXT NOT NULL,"
	" size INTEGER NOT NULL,"
	" internaldate INTEGER NOT NULL,"
	" fingerprint TEXT,"
	" PRIMARY KEY (folder_id, src_uid)) WITHOUT ROWID;"
	"CREATE TABLE failure ("
	" account TEXT NOT NULL,"
	" folder TEXT NOT NULL,"
	" src_uid INTEGER NOT NULL,"
	" scope INTEGER NOT NULL,"
	" reason TEXT NOT NULL,"
	" last_time INTEGER NOT NULL,"
	" attempts INTEGER NOT NULL,"
	" PRIMARY KEY (account, folder, src_uid)) WITHOUT ROWID;"
	"CREATE TABLE meta ("
	" key TEXT PRIMARY KEY,"
	" value TEXT NOT NULL) WITHOUT ROWID;";

/* Version 2 adds the runs and jobs of the scheduler (imapferry run). IF
 * NOT EXISTS: the same text migrates a version 1 file and completes a new
 * one; a file whose version was set back by hand keeps its tables. */
/* Version 3: the UID-range parts of a folder done in a run (a Maildir
 * target publishes the staged parts once they cover every UID). */
static const char schema_v3[] =
	"CREATE TABLE IF NOT EXISTS part ("
	" run_id INTEGER NOT NULL,"
	" account TEXT NOT NULL,"
	" folder TEXT NOT NULL,"
	" uid_lo INTEGER NOT NULL,"
	" uid_hi INTEGER NOT NULL,"
	" uidnext INTEGER NOT NULL,"
	" modseq INTEGER NOT NULL,"
	" PRIMARY KEY (run_id, account, folder, uid_lo));";

/* Version 4: the leases of jobs and the machines of a run (several
 * machines share a PostgreSQL database; an SQLite file has one machine,
 * but the same schema). */
static const char schema_v4_job[] =
	"ALTER TABLE job ADD COLUMN src_slot TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE job ADD COLUMN dst_slot TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE job ADD COLUMN claimed_by TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE job ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE job ADD COLUMN lease_expires INTEGER NOT NULL DEFAULT 0;";
/* Version 5: where the bodies of a job came from (a hybrid source). */
static const char schema_v5_job[] =
	"ALTER TABLE job ADD COLUMN bodies_spool INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE job ADD COLUMN bodies_imap INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE job ADD COLUMN bodies_missing INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE job ADD COLUMN bodies_size INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE job ADD COLUMN bodies_uidvalidity INTEGER NOT NULL"
	" DEFAULT 0;"
	"ALTER TABLE job ADD COLUMN bodies_error INTEGER NOT NULL DEFAULT 0;";
static const char schema_v4[] =
	"CREATE TABLE IF NOT EXISTS machine ("
	" run_id INTEGER NOT NULL REFERENCES run (id) ON DELETE CASCADE,"
	" name TEXT NOT NULL,"
	" host TEXT NOT NULL,"
	" pid INTEGER NOT NULL,"
	" status TEXT NOT NULL,"
	" started INTEGER NOT NULL,"
	" heartbeat INTEGER NOT NULL,"
	" workers INTEGER NOT NULL,"
	" jobs_running INTEGER NOT NULL,"
	" jobs_done INTEGER NOT NULL,"
	" messages INTEGER NOT NULL,"
	" bytes INTEGER NOT NULL,"
	" rate_messages REAL NOT NULL,"
	" rate_bytes REAL NOT NULL,"
	" lost_leases INTEGER NOT NULL,"
	" PRIMARY KEY (run_id, name));"
	"CREATE TABLE IF NOT EXISTS lease_seq ("
	" id INTEGER PRIMARY KEY CHECK (id = 1),"
	" last INTEGER NOT NULL);"
	"INSERT OR IGNORE INTO lease_seq (id, last) VALUES (1, 0);";

static const char schema_v2[] =
	"CREATE TABLE IF NOT EXISTS run ("
	" id INTEGER PRIMARY KEY,"
	" pass TEXT NOT NULL,"
	" src TEXT NOT NULL,"
	" dst TEXT NOT NULL,"
	" folders TEXT NOT NULL,"
	" workers INTEGER NOT NULL,"
	" status TEXT NOT NULL,"
	" error TEXT NOT NULL,"
	" started INTEGER NOT NULL,"
	" finished INTEGER NOT NULL,"
	" heartbeat INTEGER NOT NULL,"
	" pid INTEGER NOT NULL,"
	" est_seconds REAL NOT NULL,"
	" rate_messages REAL NOT NULL,"
	" rate_bytes REAL NOT NULL,"
	" eta_seconds REAL NOT NULL,"
	" plan TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS job ("
	" id INTEGER PRIMARY KEY,"
	" run_id INTEGER NOT NULL REFERENCES run (id) ON DELETE CASCADE,"
	" seq INTEGER NOT NULL,"
	" account TEXT NOT NULL,"
	" src_user TEXT NOT NULL,"
	" dst_user TEXT NOT NULL,"
	" part INTEGER NOT NULL,"
	" parts INTEGER NOT NULL,"
	" folders TEXT NOT NULL,"
	" exclude TEXT NOT NULL,"
	" uid_lo INTEGER NOT NULL,"
	" uid_hi INTEGER NOT NULL,"
	" est_messages INTEGER NOT NULL,"
	" est_bytes INTEGER NOT NULL,"
	" est_seconds REAL NOT NULL,"
	" status TEXT NOT NULL,"
	" attempts INTEGER NOT NULL,"
	" errors INTEGER NOT NULL,"
	" messages INTEGER NOT NULL,"
	" bytes INTEGER NOT NULL,"
	" skipped INTEGER NOT NULL,"
	" failed INTEGER NOT NULL,"
	" folders_failed INTEGER NOT NULL,"
	" error TEXT NOT NULL,"
	" scope INTEGER NOT NULL,"
	" started INTEGER NOT NULL,"
	" finished INTEGER NOT NULL,"
	" updated INTEGER NOT NULL,"
	" not_before INTEGER NOT NULL,"
	" seconds REAL NOT NULL,"
	" UNIQUE (run_id, seq));";

struct sq_db {
	sqlite3 *db;
	char *path;
	sqlite3_stmt *stmts[STMT_COUNT];
};

/* Formats the error of the last failed SQLite call: "state: what: msg".
 * rc is that call's result code. */
static const char *
db_error(struct sq_db *db, const char *what, int rc)
{
	const char *msg = sqlite3_errmsg(db->db);
	int sys = sqlite3_system_errno(db->db);
	bool full = (rc & 0xff) == SQLITE_FULL;

	/* SQLite maps ENOSPC on write() to SQLITE_FULL, but not on fsync()
	 * or mmap of the shm file, nor a full quota. */
	if ((rc & 0xff) == SQLITE_IOERR) {
		full = sys == ENOSPC;
#ifdef EDQUOT
		full = full || sys == EDQUOT;
#endif
	}
	if (full)
		return err_setk(ERRK_DISK_FULL, "state: %s: disk full (%s)", what, msg);
	return err_setk(ERRK_STATE, "state: %s: %s", what, msg);
}

/* Returns the cached statement id, prepared on first use, or NULL with
 * *error_r. The statement is reset and ready for binding. */
static sqlite3_stmt *
stmt_get(struct sq_db *db, enum stmt id, const char *what,
         const char **error_r)
{
	int rc;

	if (db->stmts[id] != NULL)
		return db->stmts[id];
	rc = sqlite3_prepare_v3(db->db, stmt_sql[id], -1,
	                        SQLITE_PREPARE_PERSISTENT, &db->stmts[id], NULL);
	if (rc != SQLITE_OK) {
		*error_r = db_error(db, what, rc);
		db->stmts[id] = NULL;
		return NULL;
	}
	return db->stmts[id];
}

/* Steps stmt once. Returns 1 when a row is there to read, 0 at the end,
 * or -1 with *error_r. The caller resets (cached statements) or
 * finalizes (prep_once()) stmt afterwards in every case. */
static int
step_next(struct sq_db *db, sqlite3_stmt *stmt, const char *what,
          const char **error_r)
{
	int rc = sqlite3_step(stmt);

	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	*error_r = db_error(db, what, rc);
	return -1;
}

/* Steps stmt to its end. With id_r, the first column of every row (a
 * "RETURNING id") is stored there: a write with RETURNING makes its
 * changes at the first step, and is stepped to the end anyway so that an
 * autocommit statement commits before the reset. Returns 0 or -1 with
 * *error_r; neither resets nor finalizes stmt. */
static int
step_to_end(struct sq_db *db, sqlite3_stmt *stmt, const char *what,
            int64_t *id_r, const char **error_r)
{
	int rc;

	while ((rc = step_next(db, stmt, what, error_r)) > 0)
		if (id_r != NULL)
			*id_r = sqlite3_column_int64(stmt, 0);
	return rc;
}

/* Steps a cached statement that returns no rows (or whose rows are not
 * needed) to completion and resets it. Returns 0 or -1 with *error_r. */
static int
stmt_run(struct sq_db *db, sqlite3_stmt *stmt, const char *what,
         const char **error_r)
{
	int rc = step_to_end(db, stmt, what, NULL, error_r);

	sqlite3_reset(stmt);
	return rc;
}

/* Runs a cached statement without parameters. */
static int
exec_cached(struct sq_db *db, enum stmt id, const char *what,
            const char **error_r)
{
	sqlite3_stmt *stmt = stmt_get(db, id, what, error_r);

	if (stmt == NULL)
		return -1;
	return stmt_run(db, stmt, what, error_r);
}

/* Binding fails only on a wrong index (a bug) or out of memory; a failed
 * binding leaves NULL, which a NOT NULL column then rejects at step. So
 * the results of sqlite3_bind_*() are not checked one by one. Strings are
 * bound SQLITE_STATIC: the statement is always stepped and reset before
 * the caller's string can go away. */
static void
bind_text(sqlite3_stmt *stmt, int idx, const char *s)
{
	if (s == NULL)
		sqlite3_bind_null(stmt, idx);
	else
		sqlite3_bind_text(stmt, idx, s, -1, SQLITE_STATIC);
}

static void
bind_int(sqlite3_stmt *stmt, int idx, int64_t v)
{
	sqlite3_bind_int64(stmt, idx, v);
}

/* Copies text column i; NULL stays NULL unless not_null. */
static char *
col_strdup(sqlite3_stmt *stmt, int i, bool not_null)
{
	const unsigned char *s = sqlite3_column_text(stmt, i);

	if (s == NULL)
		return not_null ? xstrdup("") : NULL;
	return xstrndup((const char *)s, (size_t)sqlite3_column_bytes(stmt, i));
}

/* Makes room in the array list (count elements used, *alloc allocated,
 * of size bytes each) for one more: first elements at first, then
 * doubling. Returns the array, perhaps moved. */
static void *
list_grow(void *list, size_t count, size_t *alloc, size_t size, size_t first)
{
	if (count < *alloc)
		return list;
	*alloc = *alloc == 0 ? first : *alloc * 2;
	return xreallocarray(list, *alloc, size);
}

static int
require_transaction(struct sq_db *db, const char *what,
                    const char **error_r)
{
	if (!sqlite3_get_autocommit(db->db))
		return 0;
	*error_r = err_setk(ERRK_STATE, "state: %s: called outside a transaction "
	                   "(call state_begin() first)", what);
	return -1;
}

/* Runs sql (no parameters, one-time setup) for sq_open(). */
static int
open_exec(struct sq_db *db, const char *sql, const char *what,
          const char **error_r)
{
	int rc = sqlite3_exec(db->db, sql, NULL, NULL, NULL);

	if (rc != SQLITE_OK) {
		*error_r = err_setk(ERRK_STATE, "state: opening %s: %s: %s%s", db->path, what,
		                   (rc & 0xff) == SQLITE_FULL ? "disk full: " : "",
		                   sqlite3_errmsg(db->db));
		return -1;
	}
	return 0;
}

/* Reads a PRAGMA returning one integer. */
static int
open_pragma_int(struct sq_db *db, const char *sql, const char *what,
                int64_t *value_r, const char **error_r)
{
	sqlite3_stmt *stmt;
	int rc;

	rc = sqlite3_prepare_v2(db->db, sql, -1, &stmt, NULL);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(stmt);
		if (rc == SQLITE_ROW) {
			*value_r = sqlite3_column_int64(stmt, 0);
			rc = SQLITE_OK;
		} else if (rc == SQLITE_DONE) {
			*value_r = 0;
			rc = SQLITE_OK;
		}
	}
	if (rc != SQLITE_OK)
		*error_r = err_setk(ERRK_STATE, "state: opening %s: %s: %s", db->path, what,
		                   sqlite3_errmsg(db->db));
	sqlite3_finalize(stmt);
	return rc == SQLITE_OK ? 0 : -1;
}

/* Switches to WAL; the first statement that reads the file, so this is
 * where a file that is not a database fails. */
static int
open_wal(struct sq_db *db, const char **error_r)
{
	sqlite3_stmt *stmt;
	const unsigned char *mode = NULL;
	int rc;

	rc = sqlite3_prepare_v2(db->db, "PRAGMA journal_mode = WAL", -1,
	                        &stmt, NULL);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(stmt);
		if (rc == SQLITE_ROW) {
			mode = sqlite3_column_text(stmt, 0);
			rc = SQLITE_OK;
		}
	}
	if (rc != SQLITE_OK) {
		*error_r = err_setk(ERRK_STATE, "state: opening %s: %s", db->path,
		                   sqlite3_errmsg(db->db));
	} else if (mode == NULL || strcmp((const char *)mode, "wal") != 0) {
		*error_r = err_setk(ERRK_STATE, "state: opening %s: cannot use WAL journal "
		                   "(file system without shared memory?): "
		                   "journal mode is %s", db->path,
		                   mode == NULL ? "unknown" : (const char *)mode);
		rc = SQLITE_ERROR;
	}
	sqlite3_finalize(stmt);
	return rc == SQLITE_OK ? 0 : -1;
}

/* Checks the schema inside a write transaction (so two processes opening
 * a new file do not both create it), creating it in an empty file. */
static int
open_schema_locked(struct sq_db *db, const char **error_r)
{
	int64_t version, app_id, objects;
	char sql[128];

	if (open_pragma_int(db, "PRAGMA user_version", "reading schema version",
	                    &version, error_r) < 0 ||
	    open_pragma_int(db, "PRAGMA application_id",
	                    "reading application id", &app_id, error_r) < 0 ||
	    open_pragma_int(db, "SELECT count(*) FROM sqlite_schema",
	                    "reading schema", &objects, error_r) < 0)
		return -1;

	if (version == 0 && app_id == 0 && objects == 0) {
		if (open_exec(db, schema_v1, "creating schema", error_r) < 0 ||
		    open_exec(db, schema_v2, "creating schema", error_r) < 0 ||
		    open_exec(db, schema_v3, "creating schema", error_r) < 0 ||
		    open_exec(db, schema_v4_job, "creating schema", error_r) < 0 ||
		    open_exec(db, schema_v4, "creating schema", error_r) < 0 ||
		    open_exec(db, schema_v5_job, "creating schema", error_r) < 0)
			return -1;
		snprintf(sql, sizeof(sql), "PRAGMA application_id = %d;"
		         "PRAGMA user_version = %d", STATE_APPLICATION_ID,
		         STATE_SCHEMA_VERSION);
		return open_exec(db, sql, "setting schema version", error_r);
	}
	if (app_id != STATE_APPLICATION_ID) {
		*error_r = err_setk(ERRK_STATE, "state: opening %s: not an imapferry state "
		                   "database (another program's SQLite file)",
		                   db->path);
		return -1;
	}
	if (version > STATE_SCHEMA_VERSION) {
		*error_r = err_setk(ERRK_STATE, "state: opening %s: schema version %" PRId64
		                   " is newer than this imapferry supports (%d); "
		                   "use a newer imapferry", db->path, version,
		                   STATE_SCHEMA_VERSION);
		return -1;
	}
	if (version < 1) {
		*error_r = err_setk(ERRK_STATE, "state: opening %s: invalid schema version %"
		                   PRId64, db->path, version);
		return -1;
	}
	/* Migrations from older versions go here, one step per version. */
	if (version < 2 &&
	    open_exec(db, schema_v2, "migrating schema to version 2",
	              error_r) < 0)
		return -1;
	if (version < 3 &&
	    open_exec(db, schema_v3, "migrating schema to version 3",
	              error_r) < 0)
		return -1;
	/* a file whose version was set back by hand keeps its columns */
	if (version < 4 &&
	    open_pragma_int(db, "SELECT count(*) FROM pragma_table_info('job')"
	                    " WHERE name = 'lease_token'", "reading schema",
	                    &objects, error_r) < 0)
		return -1;
	if (version < 4 &&
	    ((objects == 0 &&
	      open_exec(db, schema_v4_job, "migrating schema to version 4",
	                error_r) < 0) ||
	     open_exec(db, schema_v4, "migrating schema to version 4",
	               error_r) < 0))
		return -1;
	if (version < 5 &&
	    open_pragma_int(db, "SELECT count(*) FROM pragma_table_info('job')"
	                    " WHERE name = 'bodies_spool'", "reading schema",
	                    &objects, error_r) < 0)
		return -1;
	if (version < 5 && objects == 0 &&
	    open_exec(db, schema_v5_job, "migrating schema to version 5",
	              error_r) < 0)
		return -1;
	if (version < STATE_SCHEMA_VERSION) {
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d",
		         STATE_SCHEMA_VERSION);
		return open_exec(db, sql, "setting schema version", error_r);
	}
	return 0;
}

static int
open_schema(struct sq_db *db, const char **error_r)
{
	int64_t version, app_id;

	/* Fast path without the write lock: an up-to-date file. */
	if (open_pragma_int(db, "PRAGMA user_version", "reading schema version",
	                    &version, error_r) < 0 ||
	    open_pragma_int(db, "PRAGMA application_id",
	                    "reading application id", &app_id, error_r) < 0)
		return -1;
	if (version == STATE_SCHEMA_VERSION && app_id == STATE_APPLICATION_ID)
		return 0;

	if (open_exec(db, "BEGIN IMMEDIATE", "locking for schema check",
	              error_r) < 0)
		return -1;
	if (open_schema_locked(db, error_r) < 0) {
		(void)sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	if (open_exec(db, "COMMIT", "committing schema", error_r) < 0) {
		(void)sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	return 0;
}

static const char *const sidecar_suffixes[] = { "-wal", "-shm" };

/* Sets the open file fd (named path) to mode 0600 when group or others
 * have any access, with a warning. Returns 0, or -1 with *error_r. */
static int
mode_tighten(const char *path, int fd, const char **error_r)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		*error_r = err_errno(errno, "state: %s: %s", path, strerror(errno));
		return -1;
	}
	if ((st.st_mode & 0077) == 0)
		return 0;
	log_warn("state: %s had mode %04o, readable by others: setting it "
	         "to 0600", path, (unsigned)(st.st_mode & 07777));
	if (fchmod(fd, 0600) < 0) {
		*error_r = err_errno(errno, "state: %s: cannot set mode 0600: %s",
		                     path, strerror(errno));
		return -1;
	}
	return 0;
}

int
sq_open(const char *path, struct sq_db **db_r, const char **error_r)
{
	struct sq_db *db;
	int fd, rc;

	*db_r = NULL;
	if (sqlite3_libversion_number() < STATE_MIN_SQLITE) {
		*error_r = err_setk(ERRK_STATE, "state: SQLite %s is too old (need 3.35)",
		                   sqlite3_libversion());
		return -1;
	}
	/* Create the file ourselves for mode 0600 (SQLite would use 0644);
	 * SQLite gives the -wal and -shm files the database file's mode. */
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd == -1) {
		*error_r = err_errno(errno, "state: opening %s: %s", path,
		                   strerror(errno));
		return -1;
	}
	/* The state may hold password file names and every folder name:
	 * a file left readable by others (an older version, a copy, a
	 * loose umask) is tightened, and so are its -wal and -shm. */
	if (mode_tighten(path, fd, error_r) < 0) {
		close(fd);
		return -1;
	}
	close(fd);
	for (size_t i = 0; i < N_ELEMENTS(sidecar_suffixes); i++) {
		char *side = xasprintf("%s%s", path, sidecar_suffixes[i]);

		fd = open(side, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
		if (fd == -1 && errno != ENOENT) {
			*error_r = err_setk(ERRK_STATE, "state: opening %s: %s", side,
			                    strerror(errno));
			free(side);
			return -1;
		}
		if (fd != -1 && mode_tighten(side, fd, error_r) < 0) {
			close(fd);
			free(side);
			return -1;
		}
		if (fd != -1)
			close(fd);
		free(side);
	}

	db = xcalloc(1, sizeof(*db));
	db->path = xstrdup(path);
	/* NOMUTEX: one handle per thread, so no per-call locking. */
	rc = sqlite3_open_v2(path, &db->db,
	                     SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		*error_r = err_setk(ERRK_STATE, "state: opening %s: %s", path,
		                   db->db != NULL ? sqlite3_errmsg(db->db) :
		                   sqlite3_errstr(rc));
		goto fail;
	}
	sqlite3_extended_result_codes(db->db, 1);
	sqlite3_busy_timeout(db->db, STATE_BUSY_TIMEOUT_MS);

	if (open_wal(db, error_r) < 0 ||
	    open_exec(db, "PRAGMA synchronous = NORMAL", "setting synchronous",
	              error_r) < 0 ||
	    open_exec(db, "PRAGMA foreign_keys = ON", "enabling foreign keys",
	              error_r) < 0 ||
	    open_schema(db, error_r) < 0)
		goto fail;
	*db_r = db;
	return 0;
fail:
	sq_close(&db);
	return -1;
}

void
sq_close(struct sq_db **dbp)
{
	struct sq_db *db = *dbp;

	if (db == NULL)
		return;
	for (size_t i = 0; i < STMT_COUNT; i++)
		sqlite3_finalize(db->stmts[i]);
	/* Rolls back an open transaction. close_v2 cannot fail with BUSY. */
	sqlite3_close_v2(db->db);
	free(db->path);
	free(db);
	*dbp = NULL;
}

int
sq_begin(struct sq_db *db, const char **error_r)
{
	if (!sqlite3_get_autocommit(db->db)) {
		*error_r = err_setk(ERRK_STATE, "state: beginning a transaction: "
		                   "a transaction is already open");
		return -1;
	}
	return exec_cached(db, STMT_BEGIN, "beginning a transaction", error_r);
}

int
sq_commit(struct sq_db *db, const char **error_r)
{
	if (sqlite3_get_autocommit(db->db)) {
		*error_r = err_setk(ERRK_STATE, "state: committing: no transaction is open");
		return -1;
	}
	return exec_cached(db, STMT_COMMIT, "committing", error_r);
}

void
sq_rollback(struct sq_db *db)
{
	const char *error = "";

	/* SQLite rolls back by itself after some errors (SQLITE_FULL,
	 * SQLITE_IOERR); then there is nothing left to do. */
	if (sqlite3_get_autocommit(db->db))
		return;
	if (exec_cached(db, STMT_ROLLBACK, "rolling back", &error) < 0)
		log_warn("%s", error);
}

bool
sq_in_transaction(struct sq_db *db)
{
	return !sqlite3_get_autocommit(db->db);
}

/* Fills f from a row of FOLDER_COLUMNS. */
static void
folder_from_row(sqlite3_stmt *stmt, struct state_folder *f)
{
	f->id = sqlite3_column_int64(stmt, 0);
	f->account = col_strdup(stmt, 1, true);
	f->src_name = col_strdup(stmt, 2, true);
	f->src_uidvalidity = (uint32_t)sqlite3_column_int64(stmt, 3);
	f->dst_name = col_strdup(stmt, 4, true);
	f->dst_uidvalidity = (uint32_t)sqlite3_column_int64(stmt, 5);
	f->src_highestmodseq = (uint64_t)sqlite3_column_int64(stmt, 6);
	f->src_uidnext = (uint32_t)sqlite3_column_int64(stmt, 7);
	f->dst_uidnext = (uint32_t)sqlite3_column_int64(stmt, 8);
	f->complete = (sqlite3_column_int64(stmt, 9) & 1) != 0;
	f->gone_pending = (sqlite3_column_int64(stmt, 9) & 2) != 0;
}

int
sq_folder_get(struct sq_db *db, const char *account,
                 const char *src_name, struct state_folder *f_r,
                 bool *found_r, const char **error_r)
{
	const char *what = "reading folder";
	sqlite3_stmt *stmt;
	int rc;

	memset(f_r, 0, sizeof(*f_r));
	*found_r = false;
	if ((stmt = stmt_get(db, STMT_FOLDER_GET, what, error_r)) == NULL)
		return -1;
	bind_text(stmt, 1, account);
	bind_text(stmt, 2, src_name);
	rc = step_next(db, stmt, what, error_r);
	if (rc > 0) {
		folder_from_row(stmt, f_r);
		*found_r = true;
	}
	sqlite3_reset(stmt);
	return rc < 0 ? -1 : 0;
}

int
sq_folder_put(struct sq_db *db, struct state_folder *f,
                 const char **error_r)
{
	const char *what = "storing folder";
	sqlite3_stmt *stmt;
	int64_t id = 0;
	int rc;

	if ((stmt = stmt_get(db, STMT_FOLDER_PUT, what, error_r)) == NULL)
		return -1;
	bind_text(stmt, 1, f->account);
	bind_text(stmt, 2, f->src_name);
	bind_int(stmt, 3, f->src_uidvalidity);
	bind_text(stmt, 4, f->dst_name != NULL ? f->dst_name : "");
	bind_int(stmt, 5, f->dst_uidvalidity);
	bind_int(stmt, 6, (int64_t)f->src_highestmodseq);
	bind_int(stmt, 7, f->src_uidnext);
	bind_int(stmt, 8, f->dst_uidnext);
	bind_int(stmt, 9, (f->complete ? 1 : 0) | (f->gone_pending ? 2 : 0));
	/* RETURNING gives the id for both the insert and the update. */
	rc = step_to_end(db, stmt, what, &id, error_r);
	sqlite3_reset(stmt);
	if (rc < 0)
		return -1;
	f->id = id;
	return 0;
}

int
sq_folder_list(struct sq_db *db, const char *account,
                  struct state_folder **folders_r, size_t *count_r,
                  const char **error_r)
{
	const char *what = "listing folders";
	struct state_folder *folders = NULL;
	size_t count = 0, alloc = 0;
	sqlite3_stmt *stmt;
	int rc;

	*folders_r = NULL;
	*count_r = 0;
	if ((stmt = stmt_get(db, STMT_FOLDER_LIST, what, error_r)) == NULL)
		return -1;
	bind_text(stmt, 1, account);
	while ((rc = step_next(db, stmt, what, error_r)) > 0) {
		folders = list_grow(folders, count, &alloc, sizeof(*folders), 16);
		folder_from_row(stmt, &folders[count++]);
	}
	sqlite3_reset(stmt);
	if (rc < 0) {
		state_folder_list_free(&folders, count);
		return -1;
	}
	*folders_r = folders;
	*count_r = count;
	return 0;
}

/* Runs a cached statement whose only parameter ?1 is an id. */
static int
exec_with_id(struct sq_db *db, enum stmt id, int64_t value,
             const char *what, const char **error_r)
{
	sqlite3_stmt *stmt = stmt_get(db, id, what, error_r);

	if (stmt == NULL)
		return -1;
	bind_int(stmt, 1, value);
	return stmt_run(db, stmt, what, error_r);
}

int
sq_folder_clear_messages(struct sq_db *db, int64_t folder_id,
                            const char **error_r)
{
	return exec_with_id(db, STMT_FOLDER_CLEAR, folder_id,
	                    "clearing message mappings", error_r);
}

int
sq_folder_delete(struct sq_db *db, int64_t folder_id,
                    const char **error_r)
{
	/* The messages go with ON DELETE CASCADE. */
	return exec_with_id(db, STMT_FOLDER_DELETE, folder_id,
	                    "deleting folder", error_r);
}

/* Ends the read snapshot sq_msgs_load() opened, if it opened one. */
static void
load_end(struct sq_db *db, bool own_txn)
{
	const char *error = NULL;

	if (own_txn && !sqlite3_get_autocommit(db->db) &&
	    exec_cached(db, STMT_COMMIT, "ending read", &error) < 0) {
		log_warn("%s", error);
		sq_rollback(db);
	}
}

int
sq_msgs_load(struct sq_db *db, int64_t folder_id, uint32_t lo, uint32_t hi,
                struct state_msg **msgs_r, size_t *count_r,
                const char **error_r)
{
	const char *what = "loading message mappings";
	/* Outside the caller's transaction, the count and the rows must come
	 * from one snapshot: another process may write in between. */
	bool own_txn = sqlite3_get_autocommit(db->db) != 0;
	struct state_msg *msgs = NULL;
	sqlite3_stmt *stmt;
	int64_t rows, str_bytes;
	size_t n = 0, arena_size, arena_used = 0;
	char *arena;
	int rc;

	*msgs_r = NULL;
	*count_r = 0;
	if (own_txn &&
	    exec_cached(db, STMT_BEGIN_READ, what, error_r) < 0)
		return -1;

	if ((stmt = stmt_get(db, STMT_MSG_COUNT, what, error_r)) == NULL)
		goto fail;
	bind_int(stmt, 1, folder_id);
	bind_int(stmt, 2, lo);
	bind_int(stmt, 3, hi);
	rc = sqlite3_step(stmt);
	if (rc != SQLITE_ROW) {
		*error_r = db_error(db, what, rc);
		sqlite3_reset(stmt);
		goto fail;
	}
	rows = sqlite3_column_int64(stmt, 0);
	str_bytes = sqlite3_column_int64(stmt, 1);
	sqlite3_reset(stmt);
	if (rows == 0) {
		load_end(db, own_txn);
		return 0;
	}
	if (rows < 0 || str_bytes < 0 ||
	    (uint64_t)rows > SIZE_MAX / 2 / sizeof(*msgs) ||
	    (uint64_t)str_bytes > SIZE_MAX / 2) {
		*error_r = err_setk(ERRK_STATE, "state: %s: implausible size", what);
		goto fail;
	}

	/* One block: the array, then every string. */
	arena_size = (size_t)str_bytes;
	msgs = xmalloc((size_t)rows * sizeof(*msgs) + arena_size);
	arena = (char *)(msgs + rows);

	if ((stmt = stmt_get(db, STMT_MSG_LOAD, what, error_r)) == NULL)
		goto fail;
	bind_int(stmt, 1, folder_id);
	bind_int(stmt, 2, lo);
	bind_int(stmt, 3, hi);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		struct state_msg *m = &msgs[n];
		const unsigned char *flags, *fp;
		size_t flags_len, fp_len;

		flags = sqlite3_column_text(stmt, 2);
		flags_len = (size_t)sqlite3_column_bytes(stmt, 2);
		fp = sqlite3_column_text(stmt, 5);
		fp_len = (size_t)sqlite3_column_bytes(stmt, 5);
		if (n == (size_t)rows ||
		    arena_size - arena_used < flags_len + 1 +
		    (fp != NULL ? fp_len + 1 : 0)) {
			/* Impossible inside one snapshot. */
			*error_r = err_setk(ERRK_STATE, "state: %s: table changed while "
			                   "reading", what);
			sqlite3_reset(stmt);
			goto fail;
		}
		m->src_uid = (uint32_t)sqlite3_column_int64(stmt, 0);
		m->dst_uid = (uint32_t)sqlite3_column_int64(stmt, 1);
		m->size = (uint64_t)sqlite3_column_int64(stmt, 3);
		m->internaldate = sqlite3_column_int64(stmt, 4);
		m->flags = arena + arena_used;
		if (flags_len > 0)
			memcpy(m->flags, flags, flags_len);
		m->flags[flags_len] = '\0';
		arena_used += flags_len + 1;
		m->fingerprint = NULL;
		if (fp != NULL) {
			m->fingerprint = arena + arena_used;
			memcpy(m->fingerprint, fp, fp_len);
			m->fingerprint[fp_len] = '\0';
			arena_used += fp_len + 1;
		}
		n++;
	}
	if (rc != SQLITE_DONE) {
		*error_r = db_error(db, what, rc);
		sqlite3_reset(stmt);
		goto fail;
	}
	sqlite3_reset(stmt);
	if (n != (size_t)rows) {
		*error_r = err_setk(ERRK_STATE, "state: %s: table changed while reading",
		                   what);
		goto fail;
	}
	load_end(db, own_txn);
	*msgs_r = msgs;
	*count_r = n;
	return 0;
fail:
	free(msgs);
	if (own_txn)
		sq_rollback(db);
	return -1;
}

int
sq_msg_put(struct sq_db *db, int64_t folder_id,
              const struct state_msg *m, const char **error_r)
{
	const char *what = "inserting message mapping";
	sqlite3_stmt *stmt;

	if (require_transaction(db, what, error_r) < 0)
		return -1;
	if ((stmt = stmt_get(db, STMT_MSG_PUT, what, error_r)) == NULL)
		return -1;
	bind_int(stmt, 1, folder_id);
	bind_int(stmt, 2, m->src_uid);
	bind_int(stmt, 3, m->dst_uid);
	bind_text(stmt, 4, m->flags != NULL ? m->flags : "");
	bind_int(stmt, 5, (int64_t)m->size);
	bind_int(stmt, 6, m->internaldate);
	bind_text(stmt, 7, m->fingerprint);
	return stmt_run(db, stmt, what, error_r);
}

int
sq_msg_set_flags(struct sq_db *db, int64_t folder_id,
                    uint32_t src_uid, const char *flags,
                    const char **error_r)
{
	const char *what = "updating message flags";
	sqlite3_stmt *stmt;

	if (require_transaction(db, what, error_r) < 0)
		return -1;
	if ((stmt = stmt_get(db, STMT_MSG_SET_FLAGS, what, error_r)) == NULL)
		return -1;
	bind_int(stmt, 1, folder_id);
	bind_int(stmt, 2, src_uid);
	bind_text(stmt, 3, flags != NULL ? flags : "");
	if (stmt_run(db, stmt, what, error_r) < 0)
		return -1;
	if (sqlite3_changes(db->db) == 0) {
		*error_r = err_setk(ERRK_STATE, "state: %s: no mapping for UID %" PRIu32
		                   " in folder %" PRId64, what, src_uid,
		                   folder_id);
		return -1;
	}
	return 0;
}

int
sq_msg_delete(struct sq_db *db, int64_t folder_id, uint32_t src_uid,
                 const char **error_r)
{
	const char *what = "deleting message mapping";
	sqlite3_stmt *stmt;

	if (require_transaction(db, what, error_r) < 0)
		return -1;
	if ((stmt = stmt_get(db, STMT_MSG_DELETE, what, error_r)) == NULL)
		return -1;
	bind_int(stmt, 1, folder_id);
	bind_int(stmt, 2, src_uid);
	return stmt_run(db, stmt, what, error_r);
}

int
sq_failure_put(struct sq_db *db, const char *account,
                  const char *src_folder, uint32_t src_uid,
                  enum state_scope scope, const char *reason,
                  const char **error_r)
{
	const char *what = "recording failure";
	sqlite3_stmt *stmt;

	if ((stmt = stmt_get(db, STMT_FAILURE_PUT, what, error_r)) == NULL)
		return -1;
	bind_text(stmt, 1, account);
	bind_text(stmt, 2, src_folder != NULL ? src_folder : "");
	bind_int(stmt, 3, src_uid);
	bind_int(stmt, 4, (int64_t)scope);
	bind_text(stmt, 5, reason != NULL ? reason : "");
	bind_int(stmt, 6, (int64_t)time(NULL));
	return stmt_run(db, stmt, what, error_r);
}

int
sq_failure_clear(struct sq_db *db, const char *account,
                    const char *src_folder, uint32_t src_uid,
                    const char **error_r)
{
	const char *what = "clearing failure";
	sqlite3_stmt *stmt;

	if ((stmt = stmt_get(db, STMT_FAILURE_CLEAR, what, error_r)) == NULL)
		return -1;
	bind_text(stmt, 1, account);
	bind_text(stmt, 2, src_folder != NULL ? src_folder : "");
	bind_int(stmt, 3, src_uid);
	return stmt_run(db, stmt, what, error_r);
}

int
sq_failure_list(struct sq_db *db, const char *account,
                   struct state_failure **f_r, size_t *count_r,
                   const char **error_r)
{
	const char *what = "listing failures";
	struct state_failure *list = NULL;
	size_t count = 0, alloc = 0;
	sqlite3_stmt *stmt;
	int rc;

	*f_r = NULL;
	*count_r = 0;
	if ((stmt = stmt_get(db, STMT_FAILURE_LIST, what, error_r)) == NULL)
		return -1;
	bind_text(stmt, 1, account);
	while ((rc = step_next(db, stmt, what, error_r)) > 0) {
		struct state_failure *f;
		int64_t scope, attempts;

		list = list_grow(list, count, &alloc, sizeof(*list), 16);
		f = &list[count++];
		f->account = col_strdup(stmt, 0, true);
		f->folder = col_strdup(stmt, 1, true);
		f->src_uid = (uint32_t)sqlite3_column_int64(stmt, 2);
		scope = sqlite3_column_int64(stmt, 3);
		f->scope = scope >= STATE_SCOPE_MESSAGE &&
		    scope <= STATE_SCOPE_RUN ? (enum state_scope)scope :
		    STATE_SCOPE_RUN;
		f->reason = col_strdup(stmt, 4, true);
		f->when = sqlite3_column_int64(stmt, 5);
		attempts = sqlite3_column_int64(stmt, 6);
		f->attempts = attempts < 0 ? 0 : attempts > UINT32_MAX ?
		    UINT32_MAX : (unsigned)attempts;
	}
	sqlite3_reset(stmt);
	if (rc < 0) {
		state_failure_list_free(&list, count);
		return -1;
	}
	*f_r = list;
	*count_r = count;
	return 0;
}

int
sq_meta_set(struct sq_db *db, const char *key, const char *value,
               const char **error_r)
{
	const char *what = "storing run metadata";
	sqlite3_stmt *stmt;

	stmt = stmt_get(db, value != NULL ? STMT_META_SET : STMT_META_DELETE,
	                what, error_r);
	if (stmt == NULL)
		return -1;
	bind_text(stmt, 1, key);
	if (value != NULL)
		bind_text(stmt, 2, value);
	return stmt_run(db, stmt, what, error_r);
}

int
sq_meta_get(struct sq_db *db, const char *key, char **value_r,
               const char **error_r)
{
	const char *what = "reading run metadata";
	sqlite3_stmt *stmt;
	int rc;

	*value_r = NULL;
	if ((stmt = stmt_get(db, STMT_META_GET, what, error_r)) == NULL)
		return -1;
	bind_text(stmt, 1, key);
	rc = step_next(db, stmt, what, error_r);
	if (rc > 0)
		*value_r = col_strdup(stmt, 0, true);
	sqlite3_reset(stmt);
	return rc < 0 ? -1 : 0;
}

/* ------------------------------------------------ runs and jobs (v2) */

/* Runs and jobs are written a few times per second at most: their
 * statements are prepared per call instead of cached in db->stmts. */
static sqlite3_stmt *
prep_once(struct sq_db *db, const char *sql, const char *what,
          const char **error_r)
{
	sqlite3_stmt *stmt = NULL;
	int rc = sqlite3_prepare_v2(db->db, sql, -1, &stmt, NULL);

	if (rc != SQLITE_OK) {
		*error_r = db_error(db, what, rc);
		sqlite3_finalize(stmt);
		return NULL;
	}
	return stmt;
}

/* Steps a prep_once() statement to the end (see step_to_end(); id_r may
 * be NULL) and finalizes it. Returns 0 or -1 with *error_r. */
static int
run_once(struct sq_db *db, sqlite3_stmt *stmt, const char *what,
         int64_t *id_r, const char **error_r)
{
	int rc = step_to_end(db, stmt, what, id_r, error_r);

	sqlite3_finalize(stmt);
	return rc;
}

static void
bind_str0(sqlite3_stmt *stmt, int idx, const char *s)
{
	bind_text(stmt, idx, s != NULL ? s : "");
}

/* The columns of a run that sq_run_update() writes, in the order
 * bind_run_progress() binds them. */
#define RUN_PROGRESS_COLUMNS \
	"workers, status, error, finished, heartbeat, pid, est_seconds," \
	" rate_messages, rate_bytes, eta_seconds, plan"

/* Binds r's RUN_PROGRESS_COLUMNS to the 11 parameters from first on. */
static void
bind_run_progress(sqlite3_stmt *stmt, int first, const struct state_run *r)
{
	bind_int(stmt, first, r->workers);
	bind_str0(stmt, first + 1, r->status);
	bind_str0(stmt, first + 2, r->error);
	bind_int(stmt, first + 3, r->finished);
	bind_int(stmt, first + 4, r->heartbeat);
	bind_int(stmt, first + 5, r->pid);
	sqlite3_bind_double(stmt, first + 6, r->est_seconds);
	sqlite3_bind_double(stmt, first + 7, r->rate_messages);
	sqlite3_bind_double(stmt, first + 8, r->rate_bytes);
	sqlite3_bind_double(stmt, first + 9, r->eta_seconds);
	bind_str0(stmt, first + 10, r->plan);
}

int
sq_run_insert(struct sq_db *db, struct state_run *r,
                 const char **error_r)
{
	const char *what = "storing run";
	sqlite3_stmt *stmt;

	stmt = prep_once(db,
	    "INSERT INTO run (pass, src, dst, folders, started, " RUN_PROGRESS_COLUMNS
	    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,"
	    " ?14, ?15, ?16) RETURNING id", what, error_r);
	if (stmt == NULL)
		return -1;
	bind_str0(stmt, 1, r->pass);
	bind_str0(stmt, 2, r->src);
	bind_str0(stmt, 3, r->dst);
	bind_str0(stmt, 4, r->folders);
	bind_int(stmt, 5, r->started);
	bind_run_progress(stmt, 6, r);
	return run_once(db, stmt, what, &r->id, error_r);
}

int
sq_run_update(struct sq_db *db, const struct state_run *r,
                 const char **error_r)
{
	const char *what = "updating run";
	sqlite3_stmt *stmt;

	stmt = prep_once(db,
	    "UPDATE run SET (" RUN_PROGRESS_COLUMNS ") = (?2, ?3, ?4, ?5, ?6,"
	    " ?7, ?8, ?9, ?10, ?11, ?12) WHERE id = ?1", what, error_r);
	if (stmt == NULL)
		return -1;
	bind_int(stmt, 1, r->id);
	bind_run_progress(stmt, 2, r);
	return run_once(db, stmt, what, NULL, error_r);
}

int
sq_run_get(struct sq_db *db, int64_t id, const char *pass,
              struct state_run *r_r, bool *found_r, const char **error_r)
{
	const char *what = "reading run";
	sqlite3_stmt *stmt;
	int rc;

	memset(r_r, 0, sizeof(*r_r));
	*found_r = false;
	stmt = prep_once(db,
	    "SELECT id, pass, src, dst, folders, workers, status, error,"
	    " started, finished, heartbeat, pid, est_seconds, rate_messages,"
	    " rate_bytes, eta_seconds, plan FROM run"
	    " WHERE (?1 > 0 AND id = ?1) OR"
	    " (?1 <= 0 AND (?2 IS NULL OR pass = ?2))"
	    " ORDER BY id DESC LIMIT 1", what, error_r);
	if (stmt == NULL)
		return -1;
	bind_int(stmt, 1, id);
	bind_text(stmt, 2, pass);
	rc = step_next(db, stmt, what, error_r);
	if (rc > 0) {
		int64_t w = sqlite3_column_int64(stmt, 5);

		r_r->id = sqlite3_column_int64(stmt, 0);
		r_r->pass = col_strdup(stmt, 1, true);
		r_r->src = col_strdup(stmt, 2, true);
		r_r->dst = col_strdup(stmt, 3, true);
		r_r->folders = col_strdup(stmt, 4, true);
		r_r->workers = w < 0 ? 0 : w > UINT32_MAX ? UINT32_MAX : (unsigned)w;
		r_r->status = col_strdup(stmt, 6, true);
		r_r->error = col_strdup(stmt, 7, true);
		r_r->started = sqlite3_column_int64(stmt, 8);
		r_r->finished = sqlite3_column_int64(stmt, 9);
		r_r->heartbeat = sqlite3_column_int64(stmt, 10);
		r_r->pid = sqlite3_column_int64(stmt, 11);
		r_r->est_seconds = sqlite3_column_double(stmt, 12);
		r_r->rate_messages = sqlite3_column_double(stmt, 13);
		r_r->rate_bytes = sqlite3_column_double(stmt, 14);
		r_r->eta_seconds = sqlite3_column_double(stmt, 15);
		r_r->plan = col_strdup(stmt, 16, true);
		*found_r = true;
	}
	sqlite3_finalize(stmt);
	return rc < 0 ? -1 : 0;
}

/* The columns of a job that sq_job_update() writes, in the order
 * bind_job_progress() binds them. */
#define JOB_PROGRESS_COLUMNS \
	"status, attempts, errors, messages, bytes, skipped, failed," \
	" folders_failed, error, scope, started, finished, updated," \
	" not_before, seconds"

/* Binds j's JOB_PROGRESS_COLUMNS to the 15 parameters from first on. */
static void
bind_job_progress(sqlite3_stmt *stmt, int first, const struct state_job *j)
{
	bind_text(stmt, first, state_job_status_name(j->status));
	bind_int(stmt, first + 1, j->attempts);
	bind_int(stmt, first + 2, j->errors);
	bind_int(stmt, first + 3, (int64_t)j->messages);
	bind_int(stmt, first + 4, (int64_t)j->bytes);
	bind_int(stmt, first + 5, (int64_t)j->skipped);
	bind_int(stmt, first + 6, (int64_t)j->failed);
	bind_int(stmt, first + 7, j->folders_failed);
	bind_str0(stmt, first + 8, j->error);
	bind_int(stmt, first + 9, j->scope);
	bind_int(stmt, first + 10, j->started);
	bind_int(stmt, first + 11, j->finished);
	bind_int(stmt, first + 12, j->updated);
	bind_int(stmt, first + 13, j->not_before);
	sqlite3_bind_double(stmt, first + 14, j->seconds);
}

/* The columns of struct state_bodies, in the order bind_job_bodies()
 * binds them (6 parameters from first on). */
#define JOB_BODIES_COLUMNS \
	"bodies_spool, bodies_imap, bodies_missing, bodies_size," \
	" bodies_uidvalidity, bodies_error"

static void
bind_job_bodies(sqlite3_stmt *stmt, int first, const struct state_job *j)
{
	bind_int(stmt, first, (int64_t)j->bodies.spool);
	bind_int(stmt, first + 1, (int64_t)j->bodies.imap);
	bind_int(stmt, first + 2, (int64_t)j->bodies.missing);
	bind_int(stmt, first + 3, (int64_t)j->bodies.size);
	bind_int(stmt, first + 4, (int64_t)j->bodies.uidvalidity);
	bind_int(stmt, first + 5, (int64_t)j->bodies.error);
}

int
sq_job_insert(struct sq_db *db, struct state_job *j,
                 const char **error_r)
{
	const char *what = "storing job";
	sqlite3_stmt *stmt;

	stmt = prep_once(db,
	    "INSERT INTO job (run_id, seq, account, src_user, dst_user, part,"
	    " parts, folders, exclude, uid_lo, uid_hi, est_messages, est_bytes,"
	    " est_seconds, " JOB_PROGRESS_COLUMNS ", src_slot, dst_slot, "
	    JOB_BODIES_COLUMNS ") VALUES (?1, ?2, ?3, ?4,"
	    " ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,"
	    " ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31,"
	    " ?32, ?33, ?34, ?35, ?36, ?37) RETURNING id", what, error_r);
	if (stmt == NULL)
		return -1;
	bind_int(stmt, 1, j->run_id);
	bind_int(stmt, 2, j->seq);
	bind_str0(stmt, 3, j->account);
	bind_str0(stmt, 4, j->src_user);
	bind_str0(stmt, 5, j->dst_user);
	bind_int(stmt, 6, j->part);
	bind_int(stmt, 7, j->parts);
	bind_str0(stmt, 8, j->folders);
	bind_str0(stmt, 9, j->exclude);
	bind_int(stmt, 10, j->uid_lo);
	bind_int(stmt, 11, j->uid_hi);
	bind_int(stmt, 12, (int64_t)j->est_messages);
	bind_int(stmt, 13, (int64_t)j->est_bytes);
	sqlite3_bind_double(stmt, 14, j->est_seconds);
	bind_job_progress(stmt, 15, j);
	bind_str0(stmt, 30, j->src_slot);
	bind_str0(stmt, 31, j->dst_slot);
	bind_job_bodies(stmt, 32, j);
	return run_once(db, stmt, what, &j->id, error_r);
}

int
sq_job_update(struct sq_db *db, const struct state_job *j,
                 const char **error_r)
{
	const char *what = "updating job";
	sqlite3_stmt *stmt;

	stmt = prep_once(db,
	    "UPDATE job SET (" JOB_PROGRESS_COLUMNS ", " JOB_BODIES_COLUMNS
	    ") = (?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,"
	    " ?16, ?17, ?18, ?19, ?20, ?21, ?22) WHERE id = ?1", what, error_r);
	if (stmt == NULL)
		return -1;
	bind_int(stmt, 1, j->id);
	bind_job_progress(stmt, 2, j);
	bind_job_bodies(stmt, 17, j);
	return run_once(db, stmt, what, NULL, error_r);
}

int
sq_job_progress(struct sq_db *db, int64_t id, unsigned attempts,
                   uint64_t messages, uint64_t bytes, int64_t updated,
                   const char **error_r)
{
	const char *what = "updating job progress";
	sqlite3_stmt *stmt;

	stmt = prep_once(db,
	    "UPDATE job SET messages = ?3, bytes = ?4, updated = ?5"
	    " WHERE id = ?1 AND attempts = ?2 AND status = 'running'",
	    what, error_r);
	if (stmt == NULL)
		return -1;
	bind_int(stmt, 1, id);
	bind_int(stmt, 2, attempts);
	bind_int(stmt, 3, (int64_t)messages);
	bind_int(stmt, 4, (int64_t)bytes);
	bind_int(stmt, 5, updated);
	return run_once(db, stmt, what, NULL, error_r);
}

int
sq_job_requeue(struct sq_db *db, int64_t run_id, const char **error_r)
{
	const char *what = "requeueing jobs";
	sqlite3_stmt *stmt;

	stmt = prep_once(db,
	    "UPDATE job SET status = 'pending', not_before = 0"
	    " WHERE run_id = ?1 AND status = 'running'", what, error_r);
	if (stmt == NULL)
		return -1;
	bind_int(stmt, 1, run_id);
	return run_once(db, stmt, what, NULL, error_r);
}

#define JOB_LEASE_COLUMNS \
	"src_slot, dst_slot, claimed_by, lease_token, lease_expires"
#define JOB_ALL_COLUMNS \
	"id, run_id, seq, account, src_user, dst_user, part, parts," \
	" folders, exclude, uid_lo, uid_hi, est_messages, est_bytes," \
	" est_seconds, status, attempts, errors, messages, bytes, skipped," \
	" failed, folders_failed, error, scope, started, finished, updated," \
	" not_before, seconds, " JOB_LEASE_COLUMNS ", " JOB_BODIES_COLUMNS

static void job_from_row(sqlite3_stmt *stmt, struct state_job *j);

static unsigned
col_uint(sqlite3_stmt *stmt, int i)
{
	int64_t v = sqlite3_column_int64(stmt, i);

	return v < 0 ? 0 : v > UINT32_MAX ? UINT32_MAX : (unsigned)v;
}

int
sq_job_list(struct sq_db *db, int64_t run_id, struct state_job **jobs_r,
               size_t *count_r, const char **error_r)
{
	const char *what = "listing jobs";
	struct state_job *list = NULL;
	size_t count = 0, alloc = 0;
	sqlite3_stmt *stmt;
	int rc;

	*jobs_r = NULL;
	*count_r = 0;
	stmt = prep_once(db,
	    "SELECT id, run_id, seq, account, src_user, dst_user, part, parts,"
	    " folders, exclude, uid_lo, uid_hi, est_messages, est_bytes,"
	    " est_seconds, status, attempts, errors, messages, bytes, skipped,"
	    " failed, folders_failed, error, scope, started, finished, updated,"
	    " not_before, seconds, " JOB_LEASE_COLUMNS ", " JOB_BODIES_COLUMNS
	    " FROM job WHERE run_id = ?1 ORDER BY seq", what, error_r);
	if (stmt == NULL)
		return -1;
	bind_int(stmt, 1, run_id);
	while ((rc = step_next(db, stmt, what, error_r)) > 0) {
		struct state_job *j;

		list = list_grow(list, count, &alloc, sizeof(*list), 64);
		j = &list[count++];
		job_from_row(stmt, j);
	}
	sqlite3_finalize(stmt);
	if (rc < 0) {
		state_job_list_free(&list, count);
		return -1;
	}
	*jobs_r = list;
	*count_r = count;
	return 0;
}

/* Fills j from a row of JOB_ALL_COLUMNS. */
static void
job_from_row(sqlite3_stmt *stmt, struct state_job *j)
{
		char *status;

		memset(j, 0, sizeof(*j));
		j->id = sqlite3_column_int64(stmt, 0);
		j->run_id = sqlite3_column_int64(stmt, 1);
		j->seq = col_uint(stmt, 2);
		j->account = col_strdup(stmt, 3, true);
		j->src_user = col_strdup(stmt, 4, true);
		j->dst_user = col_strdup(stmt, 5, true);
		j->part = col_uint(stmt, 6);
		j->parts = col_uint(stmt, 7);
		j->folders = col_strdup(stmt, 8, true);
		j->exclude = col_strdup(stmt, 9, true);
		j->uid_lo = col_uint(stmt, 10);
		j->uid_hi = col_uint(stmt, 11);
		j->est_messages = (uint64_t)sqlite3_column_int64(stmt, 12);
		j->est_bytes = (uint64_t)sqlite3_column_int64(stmt, 13);
		j->est_seconds = sqlite3_column_double(stmt, 14);
		status = col_strdup(stmt, 15, true);
		j->status = state_job_status_parse(status);
		free(status);
		j->attempts = col_uint(stmt, 16);
		j->errors = col_uint(stmt, 17);
		j->messages = (uint64_t)sqlite3_column_int64(stmt, 18);
		j->bytes = (uint64_t)sqlite3_column_int64(stmt, 19);
		j->skipped = (uint64_t)sqlite3_column_int64(stmt, 20);
		j->failed = (uint64_t)sqlite3_column_int64(stmt, 21);
		j->folders_failed = col_uint(stmt, 22);
		j->error = col_strdup(stmt, 23, true);
		j->scope = (int)sqlite3_column_int64(stmt, 24);
		j->started = sqlite3_column_int64(stmt, 25);
		j->finished = sqlite3_column_int64(stmt, 26);
		j->updated = sqlite3_column_int64(stmt, 27);
		j->not_before = sqlite3_column_int64(stmt, 28);
		j->seconds = sqlite3_column_double(stmt, 29);
		j->src_slot = col_strdup(stmt, 30, true);
		j->dst_slot = col_strdup(stmt, 31, true);
		j->claimed_by = col_strdup(stmt, 32, true);
		j->lease_token = sqlite3_column_int64(stmt, 33);
		j->lease_expires = sqlite3_column_int64(stmt, 34);
		j->bodies.spool = (uint64_t)sqlite3_column_int64(stmt, 35);
		j->bodies.imap = (uint64_t)sqlite3_column_int64(stmt, 36);
		j->bodies.missing = (uint64_t)sqlite3_column_int64(stmt, 37);
		j->bodies.size = (uint64_t)sqlite3_column_int64(stmt, 38);
		j->bodies.uidvalidity = (uint64_t)sqlite3_column_int64(stmt, 39);
		j->bodies.error = (uint64_t)sqlite3_column_int64(stmt, 40);
}

/* ---- UID-range parts ---- */

/* Prepares sql (not cached: a few calls per folder) with its first three
 * parameters bound: run_id, account, folder. */
static sqlite3_stmt *
part_stmt(struct sq_db *db, const char *sql, int64_t run_id,
          const char *account, const char *folder, const char *what,
          const char **error_r)
{
	sqlite3_stmt *stmt = prep_once(db, sql, what, error_r);

	if (stmt == NULL)
		return NULL;
	sqlite3_bind_int64(stmt, 1, run_id);
	bind_text(stmt, 2, account);
	bind_text(stmt, 3, folder);
	return stmt;
}

int
sq_part_done(struct sq_db *db, int64_t run_id, const char *account,
                const char *folder, uint32_t uid_lo, uint32_t uid_hi,
                uint32_t uidnext, uint64_t modseq, const char **error_r)
{
	const char *what = "recording a finished UID range";
	sqlite3_stmt *stmt;

	stmt = part_stmt(db, "INSERT OR REPLACE INTO part (run_id, account, "
	    "folder, uid_lo, uid_hi, uidnext, modseq) VALUES "
	    "(?, ?, ?, ?, ?, ?, ?)", run_id, account, folder, what, error_r);
	if (stmt == NULL)
		return -1;
	sqlite3_bind_int64(stmt, 4, uid_lo);
	sqlite3_bind_int64(stmt, 5, uid_hi);
	sqlite3_bind_int64(stmt, 6, uidnext);
	sqlite3_bind_int64(stmt, 7, (sqlite3_int64)modseq);
	return run_once(db, stmt, what, NULL, error_r);
}

int
sq_part_cover(struct sq_db *db, int64_t run_id, const char *account,
                 const char *folder, bool *complete_r, uint32_t *uidnext_r,
                 uint64_t *modseq_r, const char **error_r)
{
	const char *what = "reading the finished UID ranges";
	sqlite3_stmt *stmt;
	uint64_t next = 1;    /* the lowest UID not covered yet */
	int rc;

	*complete_r = false;
	*uidnext_r = 0;
	*modseq_r = 0;
	stmt = part_stmt(db, "SELECT uid_lo, uid_hi, uidnext, modseq FROM part "
	    "WHERE run_id = ? AND account = ? AND folder = ? ORDER BY uid_lo",
	    run_id, account, folder, what, error_r);
	if (stmt == NULL)
		return -1;
	while ((rc = step_next(db, stmt, what, error_r)) > 0) {
		uint64_t lo = (uint64_t)sqlite3_column_int64(stmt, 0);
		uint64_t hi = (uint64_t)sqlite3_column_int64(stmt, 1);
		uint32_t un = (uint32_t)sqlite3_column_int64(stmt, 2);
		uint64_t ms = (uint64_t)sqlite3_column_int64(stmt, 3);

		if (lo <= next && hi + 1 > next)
			next = hi + 1;
		if (*uidnext_r == 0 || (un != 0 && un < *uidnext_r))
			*uidnext_r = un;
		if (*modseq_r == 0 || (ms != 0 && ms < *modseq_r))
			*modseq_r = ms;
	}
	sqlite3_finalize(stmt);
	if (rc < 0)
		return -1;
	*complete_r = next > UINT32_MAX;
	return 0;
}

/* ---- claims, leases, machines (schema 4) ----
 * One machine uses an SQLite file, but the queue has the same semantics
 * as on PostgreSQL (tests/unit/test_state.c runs both): BEGIN IMMEDIATE
 * serializes claims as PostgreSQL's advisory lock does, the local clock
 * stands for the database's. */

struct sqlite3 *
sq_handle(struct sq_db *db)
{
	return db->db;
}

int
sq_fence_check(struct sq_db *db, int64_t job_id, int64_t token, bool *held_r,
               const char **error_r)
{
	const char *what = "checking the lease";
	sqlite3_stmt *stmt;
	int rc;

	*held_r = false;
	stmt = prep_once(db, "SELECT 1 FROM job WHERE id = ?1 AND"
	    " lease_token = ?2 AND status = 'running'", what, error_r);
	if (stmt == NULL)
		return -1;
	bind_int(stmt, 1, job_id);
	bind_int(stmt, 2, token);
	rc = step_next(db, stmt, what, error_r);
	sqlite3_finalize(stmt);
	*held_r = rc > 0;
	return rc < 0 ? -1 : 0;
}

/* Runs the one-row query stmt (finalized here) into *v_r (0 if no row). */
static int
query_int(struct sq_db *db, sqlite3_stmt *stmt, const char *what,
          int64_t *v_r, const char **error_r)
{
	int rc = step_next(db, stmt, what, error_r);

	*v_r = rc > 0 ? sqlite3_column_int64(stmt, 0) : 0;
	sqlite3_finalize(stmt);
	return rc < 0 ? -1 : 0;
}

static int
claim_locked(struct sq_db *db, const struct state_claim *c, int64_t now,
             struct state_job *j_r, bool *found_r, size_t *busy_r,
             const char **error_r)
{
	const char *what = "claiming a job";
	sqlite3_stmt *stmt;
	int64_t id = 0, token, busy;
	char *prev = NULL, *prev_status = NULL;
	int rc;

	stmt = prep_once(db, "SELECT id, claimed_by, status FROM job j"
	    " WHERE run_id = ?1 AND ((status = 'pending' AND not_before <= ?2)"
	    " OR (status = 'running' AND lease_expires < ?2))"
	    " AND (?3 = 0 OR src_slot = '' OR (SELECT count(*) FROM job r"
	    "  WHERE r.run_id = ?1 AND r.status = 'running' AND"
	    "  r.lease_expires >= ?2 AND r.src_slot = j.src_slot) < ?3)"
	    " AND (?4 = 0 OR dst_slot = '' OR (SELECT count(*) FROM job r"
	    "  WHERE r.run_id = ?1 AND r.status = 'running' AND"
	    "  r.lease_expires >= ?2 AND r.dst_slot = j.dst_slot) < ?4)"
	    " ORDER BY seq LIMIT 1", what, error_r);
	if (stmt == NULL)
		return -1;
	bind_int(stmt, 1, c->run_id);
	bind_int(stmt, 2, now);
	bind_int(stmt, 3, c->max_src);
	bind_int(stmt, 4, c->max_dst);
	rc = step_next(db, stmt, what, error_r);
	if (rc > 0) {
		id = sqlite3_column_int64(stmt, 0);
		prev = col_strdup(stmt, 1, true);
		prev_status = col_strdup(stmt, 2, true);
	}
	sqlite3_finalize(stmt);
	if (rc < 0)
		return -1;
	if (id != 0) {
		stmt = prep_once(db, "UPDATE lease_seq SET last = last + 1"
		    " WHERE id = 1 RETURNING last", what, error_r);
		if (stmt == NULL || query_int(db, stmt, what, &token, error_r) < 0)
			goto fail;
		stmt = prep_once(db, "UPDATE job SET status = 'running',"
		    " attempts = attempts + 1, claimed_by = ?2, lease_token = ?3,"
		    " lease_expires = ?4 + ?5, started = ?4, finished = 0,"
		    " updated = ?4 WHERE id = ?1 RETURNING " JOB_ALL_COLUMNS,
		    what, error_r);
		if (stmt == NULL)
			goto fail;
		bind_int(stmt, 1, id);
		bind_text(stmt, 2, c->machine != NULL ? c->machine : "");
		bind_int(stmt, 3, token);
		bind_int(stmt, 4, now);
		bind_int(stmt, 5, c->lease_seconds);
		rc = step_next(db, stmt, what, error_r);
		if (rc > 0)
			job_from_row(stmt, j_r);
		/* to the end: a write with RETURNING */
		while (rc > 0)
			rc = step_next(db, stmt, what, error_r);
		sqlite3_finalize(stmt);
		if (rc < 0)
			goto fail;
		*found_r = true;
		if (strcmp(prev_status, "running") == 0 && prev[0] != '\0') {
			stmt = prep_once(db, "UPDATE machine SET lost_leases ="
			    " lost_leases + 1 WHERE run_id = ?1 AND name = ?2",
			    what, error_r);
			if (stmt == NULL)
				goto fail;
			bind_int(stmt, 1, c->run_id);
			bind_text(stmt, 2, prev);
			if (run_once(db, stmt, what, NULL, error_r) < 0)
				goto fail;
		}
	}
	stmt = prep_once(db, "SELECT count(*) FROM job WHERE run_id = ?1 AND"
	    " status IN ('pending', 'running')", what, error_r);
	if (stmt == NULL)
		goto fail;
	bind_int(stmt, 1, c->run_id);
	if (query_int(db, stmt, what, &busy, error_r) < 0)
		goto fail;
	*busy_r = (size_t)busy;
	free(prev);
	free(prev_status);
	return 0;
fail:
	if (*found_r)
		state_job_free(j_r);
	*found_r = false;
	free(prev);
	free(prev_status);
	return -1;
}

int
sq_job_claim(struct sq_db *db, const struct state_claim *c,
             struct state_job *j_r, bool *found_r, size_t *busy_r,
             const char **error_r)
{
	bool own = sqlite3_get_autocommit(db->db) != 0;

	memset(j_r, 0, sizeof(*j_r));
	*found_r = false;
	*busy_r = 0;
	if (own && sq_begin(db, error_r) < 0)
		return -1;
	if (claim_locked(db, c, (int64_t)time(NULL), j_r, found_r, busy_r,
	                 error_r) < 0) {
		if (own)
			sq_rollback(db);
		return -1;
	}
	if (own && sq_commit(db, error_r) < 0) {
		sq_rollback(db);
		if (*found_r)
			state_job_free(j_r);
		*found_r = false;
		return -1;
	}
	return 0;
}

int
sq_job_heartbeat(struct sq_db *db, int64_t id, int64_t token, unsigned lease,
                 uint64_t messages, uint64_t bytes, int64_t updated,
                 bool *lost_r, const char **error_r)
{
	const char *what = "extending a lease";
	sqlite3_stmt *stmt;
	int64_t now = (int64_t)time(NULL);

	*lost_r = false;
	stmt = prep_once(db, "UPDATE job SET lease_expires = ?3 + ?4,"
	    " messages = ?5, bytes = ?6, updated = ?7 WHERE id = ?1 AND"
	    " lease_token = ?2 AND status = 'running'", what, error_r);
	if (stmt == NULL)
		return -1;
	bind_int(stmt, 1, id);
	bind_int(stmt, 2, token);
	bind_int(stmt, 3, now);
	bind_int(stmt, 4, lease);
	bind_int(stmt, 5, (int64_t)messages);
	bind_int(stmt, 6, (int64_t)bytes);
	bind_int(stmt, 7, updated);
	if (run_once(db, stmt, what, NULL, error_r) < 0)
		return -1;
	*lost_r = sqlite3_changes(db->db) == 0;
	return 0;
}

int
sq_job_release(struct sq_db *db, const struct state_job *j, int64_t token,
               bool *lost_r, const char **error_r)
{
	const char *what = "ending a job's attempt";
	sqlite3_stmt *stmt;

	*lost_r = false;
	stmt = prep_once(db,
	    "UPDATE job SET (" JOB_PROGRESS_COLUMNS ", " JOB_BODIES_COLUMNS
	    ") = (?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,"
	    " ?16, ?18, ?19, ?20, ?21, ?22, ?23), lease_expires = 0"
	    " WHERE id = ?1 AND lease_token = ?17 AND status = 'running'",
	    what, error_r);
	if (stmt == NULL)
		return -1;
	bind_int(stmt, 1, j->id);
	bind_job_progress(stmt, 2, j);
	bind_int(stmt, 17, token);
	bind_job_bodies(stmt, 18, j);
	if (run_once(db, stmt, what, NULL, error_r) < 0)
		return -1;
	*lost_r = sqlite3_changes(db->db) == 0;
	return 0;
}

int
sq_job_fail_account(struct sq_db *db, int64_t run_id, const char *account,
                    const char *error, const char **error_r)
{
	const char *what = "failing an account's jobs";
	sqlite3_stmt *stmt;
	int64_t now = (int64_t)time(NULL);

	stmt = prep_once(db, "UPDATE job SET status = 'failed', finished = ?3,"
	    " updated = ?3, error = ?4, scope = ?5 WHERE run_id = ?1 AND"
	    " account = ?2 AND status = 'pending'", what, error_r);
	if (stmt == NULL)
		return -1;
	bind_int(stmt, 1, run_id);
	bind_text(stmt, 2, account);
	bind_int(stmt, 3, now);
	bind_str0(stmt, 4, error);
	bind_int(stmt, 5, STATE_SCOPE_RUN);
	return run_once(db, stmt, what, NULL, error_r);
}

int
sq_job_retry_failed(struct sq_db *db, int64_t run_id, const char **error_r)
{
	const char *what = "retrying failed jobs";
	sqlite3_stmt *stmt;

	stmt = prep_once(db, "UPDATE job SET status = 'pending', errors = 0,"
	    " not_before = 0 WHERE run_id = ?1 AND status = 'failed'",
	    what, error_r);
	if (stmt == NULL)
		return -1;
	bind_int(stmt, 1, run_id);
	return run_once(db, stmt, what, NULL, error_r);
}

int
sq_machine_put(struct sq_db *db, const struct state_machine *m,
               const char **error_r)
{
	const char *what = "storing a machine";
	sqlite3_stmt *stmt;

	stmt = prep_once(db, "INSERT INTO machine (run_id, name, host, pid,"
	    " status, started, heartbeat, workers, jobs_running, jobs_done,"
	    " messages, bytes, rate_messages, rate_bytes, lost_leases) VALUES"
	    " (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 0)"
	    " ON CONFLICT (run_id, name) DO UPDATE SET host = excluded.host,"
	    " pid = excluded.pid, status = excluded.status,"
	    " started = excluded.started, heartbeat = excluded.heartbeat,"
	    " workers = excluded.workers,"
	    " jobs_running = excluded.jobs_running,"
	    " jobs_done = excluded.jobs_done, messages = excluded.messages,"
	    " bytes = excluded.bytes, rate_messages = excluded.rate_messages,"
	    " rate_bytes = excluded.rate_bytes", what, error_r);
	if (stmt == NULL)
		return -1;
	bind_int(stmt, 1, m->run_id);
	bind_str0(stmt, 2, m->name);
	bind_str0(stmt, 3, m->host);
	bind_int(stmt, 4, m->pid);
	bind_str0(stmt, 5, m->status);
	bind_int(stmt, 6, m->started);
	bind_int(stmt, 7, (int64_t)time(NULL));
	bind_int(stmt, 8, m->workers);
	bind_int(stmt, 9, m->jobs_running);
	bind_int(stmt, 10, m->jobs_done);
	bind_int(stmt, 11, (int64_t)m->messages);
	bind_int(stmt, 12, (int64_t)m->bytes);
	sqlite3_bind_double(stmt, 13, m->rate_messages);
	sqlite3_bind_double(stmt, 14, m->rate_bytes);
	return run_once(db, stmt, what, NULL, error_r);
}

int
sq_machine_list(struct sq_db *db, int64_t run_id, struct state_machine **m_r,
                size_t *count_r, const char **error_r)
{
	const char *what = "listing machines";
	struct state_machine *list = NULL;
	size_t count = 0, alloc = 0;
	sqlite3_stmt *stmt;
	int rc;

	*m_r = NULL;
	*count_r = 0;
	stmt = prep_once(db, "SELECT run_id, name, host, pid, status, started,"
	    " heartbeat, workers, jobs_running, jobs_done, messages, bytes,"
	    " rate_messages, rate_bytes, lost_leases, ?2 - heartbeat"
	    " FROM machine WHERE run_id = ?1 ORDER BY name", what, error_r);
	if (stmt == NULL)
		return -1;
	bind_int(stmt, 1, run_id);
	bind_int(stmt, 2, (int64_t)time(NULL));
	while ((rc = step_next(db, stmt, what, error_r)) > 0) {
		struct state_machine *m;

		list = list_grow(list, count, &alloc, sizeof(*list), 8);
		m = &list[count++];
		memset(m, 0, sizeof(*m));
		m->run_id = sqlite3_column_int64(stmt, 0);
		m->name = col_strdup(stmt, 1, true);
		m->host = col_strdup(stmt, 2, true);
		m->pid = sqlite3_column_int64(stmt, 3);
		m->status = col_strdup(stmt, 4, true);
		m->started = sqlite3_column_int64(stmt, 5);
		m->heartbeat = sqlite3_column_int64(stmt, 6);
		m->workers = col_uint(stmt, 7);
		m->jobs_running = col_uint(stmt, 8);
		m->jobs_done = col_uint(stmt, 9);
		m->messages = (uint64_t)sqlite3_column_int64(stmt, 10);
		m->bytes = (uint64_t)sqlite3_column_int64(stmt, 11);
		m->rate_messages = sqlite3_column_double(stmt, 12);
		m->rate_bytes = sqlite3_column_double(stmt, 13);
		m->lost_leases = col_uint(stmt, 14);
		m->age = sqlite3_column_int64(stmt, 15);
	}
	sqlite3_finalize(stmt);
	if (rc < 0) {
		state_machine_list_free(&list, count);
		return -1;
	}
	*m_r = list;
	*count_r = count;
	return 0;
}

int
sq_run_lock(struct sq_db *db, const char *key, const char **error_r)
{
	return 0; /* one machine: FILE.lock keeps other processes out */
}

void
sq_run_unlock(struct sq_db *db, const char *key)
{
}

void
sq_notify(struct sq_db *db)
{
}

bool
sq_wait(struct sq_db *db, unsigned ms)
{
	usleep(ms * 1000);
	return false;
}
