/* test_state.c: the state database, both backends: every test of the
 * API runs against SQLite and, when the PostgreSQL binaries are installed,
 * against a throwaway PostgreSQL (tests/support/pgtmp.sh) started once for
 * the whole program; without them the PostgreSQL cases are skipped with a
 * message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <inttypes.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "state.h"
#include "state-private.h"
#include "tmpdir.h"

#define BULK_COUNT 100000

struct fixture {
	char dir[256];
	char path[300];
	char db[32];                /* PostgreSQL: the database's name */
};

/* The throwaway PostgreSQL of this program (test code: one per process). */
static struct {
	bool tried, up;
	char dir[256];
	char url[200];              /* postgresql://imapferry@127.0.0.1:PORT */
	unsigned next_db;
} pg;

/* Runs tests/support/pgtmp.sh with args; returns its exit status and, with
 * out, its first output line. */
static int
pgtmp(char *out, size_t out_size, const char *fmt, ...) ATTR_PRINTF(3, 4);

static int
pgtmp(char *out, size_t out_size, const char *fmt, ...)
{
	char args[1024], cmd[1400];
	va_list ap;
	FILE *f;
	int status;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "sh %s/tests/support/pgtmp.sh %s",
	         IMAPFERRY_SOURCE_DIR, args);
	f = popen(cmd, "r");
	if (f == NULL)
		return -1;
	if (out != NULL) {
		out[0] = '\0';
		if (fgets(out, (int)out_size, f) != NULL)
			out[strcspn(out, "\n")] = '\0';
	}
	while (fgetc(f) != EOF)
		;
	status = pclose(f);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void
pg_stop(void)
{
	if (pg.up)
		(void)pgtmp(NULL, 0, "stop %s", pg.dir);
	if (pg.dir[0] != '\0')
		tmpdir_remove(pg.dir);
}

/* Starts the server on first use. Returns false when there is none. */
static bool
pg_start(void)
{
	int rc;

	if (pg.tried)
		return pg.up;
	pg.tried = true;
	/* the server's password, as libpq finds it in production */
	setenv("PGPASSWORD", "throwaway", 1);
	if (tmpdir_make(pg.dir, sizeof(pg.dir), "test_state_pg") < 0)
		return false;
	rc = pgtmp(pg.url, sizeof(pg.url), "start %s", pg.dir);
	if (rc != 0) {
		fprintf(stderr, "test_state: PostgreSQL tests skipped: %s\n",
		        rc == 77 ? "PostgreSQL is not installed" :
		        "the throwaway server did not start");
		return false;
	}
	pg.up = true;
	atexit(pg_stop);
	return true;
}

/* A fixture whose path is a new, empty PostgreSQL database. */
static int
setup_pg(void **statep)
{
	struct fixture *fx = xcalloc(1, sizeof(*fx));

	*statep = fx;
	if (!pg_start())
		return 0;
	snprintf(fx->db, sizeof(fx->db), "t%u", ++pg.next_db);
	if (pgtmp(NULL, 0, "createdb %s %s", pg.dir, fx->db) != 0)
		return -1;
	snprintf(fx->path, sizeof(fx->path), "%s/%s", pg.url, fx->db);
	return 0;
}

static int
teardown_pg(void **statep)
{
	free(*statep);
	return 0;
}

/* In a PostgreSQL test: skips it when there is no server. */
#define NEED_PG() do { \
	if (!pg.up) { \
		fprintf(stderr, "skipped: no PostgreSQL\n"); \
		skip(); \
	} \
} while (0)

static int
setup(void **statep)
{
	struct fixture *fx = xcalloc(1, sizeof(*fx));

	if (tmpdir_make(fx->dir, sizeof(fx->dir), "test_state") < 0) {
		free(fx);
		return -1;
	}
	snprintf(fx->path, sizeof(fx->path), "%s/state.db", fx->dir);
	*statep = fx;
	return 0;
}

static int
teardown(void **statep)
{
	struct fixture *fx = *statep;

	tmpdir_remove(fx->dir);
	free(fx);
	return 0;
}

static struct state_db *
open_ok(const char *path)
{
	struct state_db *db = NULL;
	const char *error = NULL;

	if (state_open(path, &db, &error) < 0)
		fail_msg("state_open: %s", error);
	assert_non_null(db);
	return db;
}

static int64_t
folder_add(struct state_db *db, const char *account, const char *name)
{
	struct state_folder f = {
		.account = (char *)account,
		.src_name = (char *)name,
		.dst_name = (char *)name,
		.src_uidvalidity = 1,
	};
	const char *error;

	if (state_folder_put(db, &f, &error) < 0)
		fail_msg("%s", error);
	assert_true(f.id > 0);
	return f.id;
}

static void
msg_put_ok(struct state_db *db, int64_t folder_id, uint32_t uid,
           const char *flags)
{
	struct state_msg m = {
		.src_uid = uid, .dst_uid = uid + 1000, .flags = (char *)flags,
		.size = uid * 10, .internaldate = 1700000000 + uid,
	};
	const char *error;

	if (state_msg_put(db, folder_id, &m, &error) < 0)
		fail_msg("%s", error);
}

static void
begin_ok(struct state_db *db)
{
	const char *error;

	if (state_begin(db, &error) < 0)
		fail_msg("%s", error);
}

static void
commit_ok(struct state_db *db)
{
	const char *error;

	if (state_commit(db, &error) < 0)
		fail_msg("%s", error);
}

static size_t
msg_count(struct state_db *db, int64_t folder_id)
{
	struct state_msg *msgs;
	size_t count;
	const char *error;

	if (state_msgs_load(db, folder_id, &msgs, &count, &error) < 0)
		fail_msg("%s", error);
	state_msgs_free(&msgs, count);
	return count;
}

static int64_t
pragma_int(struct state_db *db, const char *sql)
{
	sqlite3_stmt *stmt;
	int64_t v = -1;

	assert_int_equal(sqlite3_prepare_v2(state_db_sqlite(db), sql, -1,
	                                    &stmt, NULL), SQLITE_OK);
	if (sqlite3_step(stmt) == SQLITE_ROW)
		v = sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	return v;
}

static void
test_open_create(void **statep)
{
	struct fixture *fx = *statep;
	struct state_db *db = open_ok(fx->path);
	struct stat st;
	sqlite3_stmt *stmt;

	assert_int_equal(stat(fx->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(pragma_int(db, "PRAGMA user_version"),
	                 STATE_SCHEMA_VERSION);
	/* NORMAL == 1 */
	assert_int_equal(pragma_int(db, "PRAGMA synchronous"), 1);
	assert_int_equal(pragma_int(db, "PRAGMA foreign_keys"), 1);
	assert_int_equal(sqlite3_prepare_v2(state_db_sqlite(db),
	                 "PRAGMA journal_mode", -1, &stmt, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(stmt, 0), "wal");
	sqlite3_finalize(stmt);
	assert_false(state_in_transaction(db));
	state_close(&db);
	assert_null(db);
	state_close(&db);       /* NULL is fine */
}

/* An existing state file (and its -wal/-shm) with looser permissions is
 * put back to 0600 when opened; a new one is 0600 whatever the umask. */
static void
test_open_fixes_mode(void **statep)
{
	struct fixture *fx = *statep;
	struct state_db *db;
	char wal[320], shm[320];
	struct stat st;
	mode_t old_umask = umask(0);
	int fd;

	db = open_ok(fx->path);
	assert_int_equal(stat(fx->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	state_close(&db);
	snprintf(wal, sizeof(wal), "%s-wal", fx->path);
	snprintf(shm, sizeof(shm), "%s-shm", fx->path);
	assert_int_equal(chmod(fx->path, 0644), 0);
	/* leftovers of a run under a loose umask */
	fd = open(wal, O_WRONLY | O_CREAT | O_TRUNC, 0666);
	assert_true(fd >= 0);
	close(fd);
	fd = open(shm, O_WRONLY | O_CREAT | O_TRUNC, 0664);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(chmod(wal, 0666), 0);
	assert_int_equal(chmod(shm, 0664), 0);

	db = open_ok(fx->path);
	assert_int_equal(stat(fx->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(wal, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	if (stat(shm, &st) == 0)
		assert_int_equal(st.st_mode & 0777, 0600);
	state_close(&db);
	umask(old_umask);
}

static void
test_open_missing_dir(void **statep)
{
	struct fixture *fx = *statep;
	struct state_db *db = NULL;
	const char *error = NULL;
	char path[400];

	snprintf(path, sizeof(path), "%s/nope/state.db", fx->dir);
	assert_int_equal(state_open(path, &db, &error), -1);
	assert_null(db);
	assert_non_null(strstr(error, "nope/state.db"));
	assert_non_null(strstr(error, "No such file"));
}

static void
test_folders(void **statep)
{
	struct fixture *fx = *statep;
	struct state_db *db = open_ok(fx->path);
	struct state_folder f = {
		.account = "alice", .src_name = "INBOX", .src_uidvalidity = 7,
		.dst_name = "INBOX", .dst_uidvalidity = 9,
		.src_highestmodseq = UINT64_C(0x8000000000000005),
		.src_uidnext = 100, .dst_uidnext = UINT32_MAX, .complete = true,
	}, g, *list;
	const char *error;
	bool found;
	size_t count;
	int64_t id;

	assert_int_equal(state_folder_get(db, "alice", "INBOX", &g, &found,
	                                  &error), 0);
	assert_false(found);
	assert_null(g.account);

	assert_int_equal(state_folder_put(db, &f, &error), 0);
	id = f.id;
	assert_true(id > 0);
	assert_int_equal(state_folder_get(db, "alice", "INBOX", &g, &found,
	                                  &error), 0);
	assert_true(found);
	assert_int_equal(g.id, id);
	assert_string_equal(g.account, "alice");
	assert_string_equal(g.src_name, "INBOX");
	assert_string_equal(g.dst_name, "INBOX");
	assert_int_equal(g.src_uidvalidity, 7);
	assert_int_equal(g.dst_uidvalidity, 9);
	assert_true(g.src_highestmodseq == UINT64_C(0x8000000000000005));
	assert_int_equal(g.src_uidnext, 100);
	assert_int_equal(g.dst_uidnext, UINT32_MAX);
	assert_true(g.complete);
	state_folder_free(&g);
	assert_null(g.account);

	/* Update keeps the id; id in the struct is ignored. */
	f.id = 12345;
	f.src_uidvalidity = UINT32_MAX;
	f.dst_name = NULL;
	f.complete = false;
	f.src_highestmodseq = 0;
	assert_int_equal(state_folder_put(db, &f, &error), 0);
	assert_int_equal(f.id, id);
	assert_int_equal(state_folder_get(db, "alice", "INBOX", &g, &found,
	                                  &error), 0);
	assert_true(found);
	assert_int_equal(g.src_uidvalidity, UINT32_MAX);
	assert_string_equal(g.dst_name, "");
	assert_false(g.complete);
	assert_true(g.src_highestmodseq == 0);
	state_folder_free(&g);

	/* Same name, other account: another row. */
	assert_true(folder_add(db, "bob", "INBOX") != id);
	folder_add(db, "alice", "Sent");
	folder_add(db, "alice", "Archive/2020");

	assert_int_equal(state_folder_list(db, "alice", &list, &count,
	                                   &error), 0);
	assert_int_equal(count, 3);
	assert_string_equal(list[0].src_name, "Archive/2020");
	assert_string_equal(list[1].src_name, "INBOX");
	assert_int_equal(list[1].id, id);
	assert_string_equal(list[2].src_name, "Sent");
	state_folder_list_free(&list, count);
	assert_null(list);

	assert_int_equal(state_folder_list(db, "nobody", &list, &count,
	                                   &error), 0);
	assert_int_equal(count, 0);
	assert_null(list);
	state_folder_list_free(&list, count);
	state_close(&db);
}

/* A permutation of 1..n without duplicates: i * step mod p. */
static uint32_t
shuffled_uid(uint32_t i)
{
	return (uint32_t)(((uint64_t)i * 48271) % 100003) + 1;
}

static void
test_msgs_bulk(void **statep)
{
	struct fixture *fx = *statep;
	struct state_db *db = open_ok(fx->path);
	int64_t fid = folder_add(db, "alice", "INBOX");
	int64_t other = folder_add(db, "alice", "Other");
	struct state_msg *msgs;
	const char *error;
	char fp[65];
	size_t count;

	begin_ok(db);
	assert_true(state_in_transaction(db));
	for (uint32_t i = 1; i <= BULK_COUNT; i++) {
		uint32_t uid = shuffled_uid(i);
		struct state_msg m = {
			.src_uid = uid,
			.dst_uid = uid % 7 == 0 ? 0 : uid + 5,
			.flags = uid % 3 == 0 ? "" : uid % 3 == 1 ? "\\Seen" :
			    "$Label1 \\Answered \\Seen",
			.size = (uint64_t)uid << 33,
			.internaldate = -(int64_t)uid,
			.fingerprint = NULL,
		};

		if (uid % 2 == 0) {
			snprintf(fp, sizeof(fp), "%064" PRIx32, uid);
			m.fingerprint = fp;
		}
		if (state_msg_put(db, fid, &m, &error) < 0)
			fail_msg("%s", error);
	}
	msg_put_ok(db, other, 1, "x");
	commit_ok(db);
	assert_false(state_in_transaction(db));

	assert_int_equal(state_msgs_load(db, fid, &msgs, &count, &error), 0);
	assert_int_equal(count, BULK_COUNT);
	for (size_t i = 0; i < count; i++) {
		const struct state_msg *m = &msgs[i];
		uint32_t uid = m->src_uid;

		if (i > 0)
			assert_true(msgs[i - 1].src_uid < uid);
		assert_int_equal(m->dst_uid, uid % 7 == 0 ? 0 : uid + 5);
		assert_string_equal(m->flags, uid % 3 == 0 ? "" :
		                    uid % 3 == 1 ? "\\Seen" :
		                    "$Label1 \\Answered \\Seen");
		assert_true(m->size == (uint64_t)uid << 33);
		assert_true(m->internaldate == -(int64_t)uid);
		if (uid % 2 == 0) {
			snprintf(fp, sizeof(fp), "%064" PRIx32, uid);
			assert_non_null(m->fingerprint);
			assert_string_equal(m->fingerprint, fp);
		} else {
			assert_null(m->fingerprint);
		}
	}
	state_msgs_free(&msgs, count);
	assert_null(msgs);

	/* Inside a transaction the caller's snapshot is used. */
	begin_ok(db);
	msg_put_ok(db, other, 2, "y");
	assert_int_equal(msg_count(db, other), 2);
	commit_ok(db);

	/* Empty folder. */
	assert_int_equal(state_msgs_load(db, 999, &msgs, &count, &error), 0);
	assert_int_equal(count, 0);
	assert_null(msgs);
	state_close(&db);
}

static void
test_msg_update_delete_clear(void **statep)
{
	struct fixture *fx = *statep;
	struct state_db *db = open_ok(fx->path);
	int64_t fid = folder_add(db, "alice", "INBOX");
	int64_t other = folder_add(db, "alice", "Other");
	struct state_msg *msgs;
	const char *error;
	size_t count;

	begin_ok(db);
	for (uint32_t uid = 1; uid <= 10; uid++) {
		msg_put_ok(db, fid, uid, "\\Seen");
		msg_put_ok(db, other, uid, "");
	}
	/* Upsert replaces. */
	msg_put_ok(db, fid, 3, "\\Flagged");
	assert_int_equal(state_msg_set_flags(db, fid, 4, "\\Deleted \\Seen",
	                                     &error), 0);
	assert_int_equal(state_msg_set_flags(db, fid, 77, "\\Seen", &error),
	                 -1);
	assert_non_null(strstr(error, "no mapping for UID 77"));
	assert_int_equal(state_msg_delete(db, fid, 5, &error), 0);
	assert_int_equal(state_msg_delete(db, fid, 5, &error), 0);
	/* The folder must exist. (PostgreSQL reports it at the next
	 * statement, the batch's, and aborts the transaction: state.h asks
	 * for a rollback after any error anyway.) */
	if (!state_is_shared(db)) {
		struct state_msg m = { .src_uid = 1, .flags = "" };

		assert_int_equal(state_msg_put(db, 4242, &m, &error), -1);
		assert_non_null(strstr(error, "state: inserting message "
		                        "mapping: FOREIGN KEY"));
	}
	commit_ok(db);

	assert_int_equal(state_msgs_load(db, fid, &msgs, &count, &error), 0);
	assert_int_equal(count, 9);
	assert_int_equal(msgs[2].src_uid, 3);
	assert_string_equal(msgs[2].flags, "\\Flagged");
	assert_int_equal(msgs[3].src_uid, 4);
	assert_string_equal(msgs[3].flags, "\\Deleted \\Seen");
	assert_int_equal(msgs[4].src_uid, 6);
	state_msgs_free(&msgs, count);

	/* Works outside a transaction too (one statement). */
	assert_int_equal(state_folder_clear_messages(db, fid, &error), 0);
	assert_int_equal(msg_count(db, fid), 0);
	assert_int_equal(msg_count(db, other), 10);

	/* Deleting a folder takes its messages along. */
	assert_int_equal(state_folder_delete(db, other, &error), 0);
	assert_int_equal(msg_count(db, other), 0);
	assert_int_equal(state_folder_delete(db, other, &error), 0);
	state_close(&db);
}

static void
test_outside_transaction(void **statep)
{
	struct fixture *fx = *statep;
	struct state_db *db = open_ok(fx->path);
	int64_t fid = folder_add(db, "alice", "INBOX");
	struct state_msg m = { .src_uid = 1, .flags = "\\Seen" };
	const char *error = NULL;

	assert_int_equal(state_msg_put(db, fid, &m, &error), -1);
	assert_string_equal(error, "state: inserting message mapping: called "
	                    "outside a transaction (call state_begin() first)");
	assert_int_equal(state_msg_set_flags(db, fid, 1, "", &error), -1);
	assert_non_null(strstr(error, "outside a transaction"));
	assert_int_equal(state_msg_delete(db, fid, 1, &error), -1);
	assert_non_null(strstr(error, "outside a transaction"));
	assert_int_equal(state_commit(db, &error), -1);
	assert_non_null(strstr(error, "no transaction"));

	begin_ok(db);
	assert_int_equal(state_begin(db, &error), -1);
	assert_non_null(strstr(error, "already open"));
	assert_int_equal(state_msg_put(db, fid, &m, &error), 0);
	state_rollback(db);
	assert_false(state_in_transaction(db));
	state_rollback(db);     /* nothing open: no-op */
	assert_int_equal(msg_count(db, fid), 0);
	state_close(&db);
}

static void
test_failures(void **statep)
{
	struct fixture *fx = *statep;
	struct state_db *db = open_ok(fx->path);
	struct state_failure *f;
	const char *error;
	size_t count;

	assert_int_equal(state_failure_put(db, "alice", "INBOX", 5,
	                 STATE_SCOPE_MESSAGE, "NO too big", &error), 0);
	assert_int_equal(state_failure_put(db, "alice", "INBOX", 5,
	                 STATE_SCOPE_MESSAGE, "NO still too big", &error), 0);
	assert_int_equal(state_failure_put(db, "alice", "Junk", 0,
	                 STATE_SCOPE_FOLDER, "NO [NONEXISTENT]", &error), 0);
	assert_int_equal(state_failure_put(db, "bob", NULL, 0,
	                 STATE_SCOPE_RUN, "disk full", &error), 0);

	assert_int_equal(state_failure_list(db, "alice", &f, &count, &error),
	                 0);
	assert_int_equal(count, 2);
	assert_string_equal(f[0].account, "alice");
	assert_string_equal(f[0].folder, "INBOX");
	assert_int_equal(f[0].src_uid, 5);
	assert_int_equal(f[0].scope, STATE_SCOPE_MESSAGE);
	assert_string_equal(f[0].reason, "NO still too big");
	assert_int_equal(f[0].attempts, 2);
	assert_true(f[0].when > 1600000000);
	assert_string_equal(f[1].folder, "Junk");
	assert_int_equal(f[1].scope, STATE_SCOPE_FOLDER);
	assert_int_equal(f[1].attempts, 1);
	state_failure_list_free(&f, count);
	assert_null(f);

	assert_int_equal(state_failure_list(db, NULL, &f, &count, &error), 0);
	assert_int_equal(count, 3);
	assert_string_equal(f[2].account, "bob");
	assert_string_equal(f[2].folder, "");
	assert_int_equal(f[2].scope, STATE_SCOPE_RUN);
	state_failure_list_free(&f, count);

	assert_int_equal(state_failure_clear(db, "alice", "INBOX", 5, &error),
	                 0);
	assert_int_equal(state_failure_clear(db, "alice", "INBOX", 5, &error),
	                 0);
	assert_int_equal(state_failure_clear(db, "bob", NULL, 0, &error), 0);
	assert_int_equal(state_failure_list(db, NULL, &f, &count, &error), 0);
	assert_int_equal(count, 1);
	assert_string_equal(f[0].folder, "Junk");
	state_failure_list_free(&f, count);

	/* After clearing, the count starts over. */
	assert_int_equal(state_failure_put(db, "alice", "INBOX", 5,
	                 STATE_SCOPE_MESSAGE, "again", &error), 0);
	assert_int_equal(state_failure_list(db, "alice", &f, &count, &error),
	                 0);
	assert_int_equal(f[0].attempts, 1);
	state_failure_list_free(&f, count);
	state_close(&db);
}

static void
test_meta(void **statep)
{
	struct fixture *fx = *statep;
	struct state_db *db = open_ok(fx->path);
	const char *error;
	char *value;

	assert_int_equal(state_meta_get(db, "last_run_start", &value, &error),
	                 0);
	assert_null(value);
	assert_int_equal(state_meta_set(db, "last_run_start", "1700000000",
	                                &error), 0);
	assert_int_equal(state_meta_set(db, "last_run_start", "1700000001",
	                                &error), 0);
	assert_int_equal(state_meta_set(db, "empty", "", &error), 0);
	assert_int_equal(state_meta_get(db, "last_run_start", &value, &error),
	                 0);
	assert_string_equal(value, "1700000001");
	free(value);
	assert_int_equal(state_meta_get(db, "empty", &value, &error), 0);
	assert_string_equal(value, "");
	free(value);
	assert_int_equal(state_meta_set(db, "empty", NULL, &error), 0);
	assert_int_equal(state_meta_get(db, "empty", &value, &error), 0);
	assert_null(value);
	state_close(&db);
}

static void
test_reopen_persists(void **statep)
{
	struct fixture *fx = *statep;
	struct state_db *db = open_ok(fx->path);
	int64_t fid = folder_add(db, "alice", "INBOX");
	struct state_folder f;
	const char *error;
	char *value;
	bool found;

	begin_ok(db);
	for (uint32_t uid = 1; uid <= 100; uid++)
		msg_put_ok(db, fid, uid, "\\Seen");
	commit_ok(db);
	assert_int_equal(state_meta_set(db, "k", "v", &error), 0);
	/* Uncommitted work is lost on close. */
	begin_ok(db);
	msg_put_ok(db, fid, 101, "");
	state_close(&db);

	db = open_ok(fx->path);
	assert_int_equal(state_folder_get(db, "alice", "INBOX", &f, &found,
	                                  &error), 0);
	assert_true(found);
	assert_int_equal(f.id, fid);
	state_folder_free(&f);
	assert_int_equal(msg_count(db, fid), 100);
	assert_int_equal(state_meta_get(db, "k", &value, &error), 0);
	assert_string_equal(value, "v");
	free(value);
	state_close(&db);
}

static void
test_second_handle(void **statep)
{
	struct fixture *fx = *statep;
	struct state_db *a = open_ok(fx->path);
	struct state_db *b = open_ok(fx->path);
	int64_t fid = folder_add(a, "alice", "INBOX");
	const char *error;
	pid_t pid;
	int status;

	begin_ok(a);
	for (uint32_t uid = 1; uid <= 50; uid++)
		msg_put_ok(a, fid, uid, "");
	/* Not visible before the commit; a reader does not block. */
	assert_int_equal(msg_count(b, fid), 0);
	commit_ok(a);
	assert_int_equal(msg_count(b, fid), 50);

	/* b writes, a sees it. */
	begin_ok(b);
	msg_put_ok(b, fid, 51, "");
	commit_ok(b);
	assert_int_equal(msg_count(a, fid), 51);

	/* Another process sees the committed data and can write. */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct state_db *c = NULL;
		int code = 0;

		if (state_open(fx->path, &c, &error) < 0)
			_exit(10);
		if (msg_count(c, fid) != 51)
			code = 11;
		else if (state_begin(c, &error) < 0)
			code = 12;
		else {
			struct state_msg m = { .src_uid = 52, .flags = "" };

			if (state_msg_put(c, fid, &m, &error) < 0 ||
			    state_commit(c, &error) < 0)
				code = 13;
		}
		state_close(&c);
		_exit(code);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(msg_count(a, fid), 52);
	assert_int_equal(msg_count(b, fid), 52);
	state_close(&a);
	state_close(&b);
}

/* kill -9 in the middle of a batch: the committed batches survive, the
 * open one is gone, the file opens cleanly. */
static void
test_crash(void **statep)
{
	struct fixture *fx = *statep;
	struct state_db *db = open_ok(fx->path);
	int64_t fid = folder_add(db, "alice", "INBOX");
	pid_t pid;
	int status;

	state_close(&db);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct state_db *c = NULL;
		const char *error;

		if (state_open(fx->path, &c, &error) < 0)
			_exit(10);
		for (uint32_t batch = 0; batch < 3; batch++) {
			if (state_begin(c, &error) < 0)
				_exit(11);
			for (uint32_t i = 1; i <= 1000; i++) {
				struct state_msg m = {
					.src_uid = batch * 1000 + i,
					.flags = "\\Seen",
				};

				if (state_msg_put(c, fid, &m, &error) < 0)
					_exit(12);
			}
			if (batch == 2)
				raise(SIGKILL);
			if (state_commit(c, &error) < 0)
				_exit(13);
		}
		_exit(14);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGKILL);

	db = open_ok(fx->path);
	assert_int_equal(msg_count(db, fid), 2000);
	{
		sqlite3_stmt *stmt;

		assert_int_equal(sqlite3_prepare_v2(state_db_sqlite(db),
		                 "PRAGMA quick_check", -1, &stmt, NULL),
		                 SQLITE_OK);
		assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
		assert_string_equal((const char *)sqlite3_column_text(stmt, 0),
		                    "ok");
		sqlite3_finalize(stmt);
	}
	state_close(&db);
}

static void
write_file(const char *path, const void *data, size_t len, off_t offset,
           bool truncate)
{
	int fd = open(path, O_WRONLY | O_CREAT | (truncate ? O_TRUNC : 0),
	              0600);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, data, len, offset), (ssize_t)len);
	assert_int_equal(close(fd), 0);
}

static void
test_corrupt_garbage(void **statep)
{
	struct fixture *fx = *statep;
	struct state_db *db = NULL;
	const char *error = NULL;
	unsigned char garbage[8192];

	for (size_t i = 0; i < sizeof(garbage); i++)
		garbage[i] = (unsigned char)(i * 131 + 17);
	write_file(fx->path, garbage, sizeof(garbage), 0, true);
	assert_int_equal(state_open(fx->path, &db, &error), -1);
	assert_null(db);
	assert_non_null(strstr(error, "state: opening "));
	assert_non_null(strstr(error, "file is not a database"));

	/* A short text file too. */
	write_file(fx->path, "hello\n", 6, 0, true);
	assert_int_equal(state_open(fx->path, &db, &error), -1);
	assert_non_null(strstr(error, "file is not a database"));
}

/* A valid header but damaged pages: errors, no crash. */
static void
test_corrupt_pages(void **statep)
{
	struct fixture *fx = *statep;
	struct state_db *db = open_ok(fx->path);
	int64_t fid = folder_add(db, "alice", "INBOX");
	struct state_msg *msgs = NULL;
	struct state_folder *folders = NULL;
	const char *error = NULL;
	unsigned char garbage[4096 * 4];
	size_t count = 0;
	int failures = 0;

	begin_ok(db);
	for (uint32_t uid = 1; uid <= 5000; uid++)
		msg_put_ok(db, fid, uid, "\\Seen $Forwarded");
	commit_ok(db);
	state_close(&db);       /* checkpoints: everything is in the file */

	for (size_t i = 0; i < sizeof(garbage); i++)
		garbage[i] = (unsigned char)(i * 7 + 3);
	write_file(fx->path, garbage, sizeof(garbage), 4096, false);

	if (state_open(fx->path, &db, &error) < 0) {
		assert_non_null(strstr(error, "state: "));
		return;
	}
	if (state_msgs_load(db, fid, &msgs, &count, &error) < 0) {
		assert_non_null(strstr(error, "state: loading message "
		                        "mappings: "));
		failures++;
	}
	state_msgs_free(&msgs, count);
	if (state_folder_list(db, "alice", &folders, &count, &error) < 0) {
		assert_non_null(strstr(error, "state: listing folders: "));
		failures++;
	}
	state_folder_list_free(&folders, count);
	assert_true(failures > 0);
	state_close(&db);
}

static void
raw_exec(const char *path, const char *sql)
{
	sqlite3 *raw;

	assert_int_equal(sqlite3_open(path, &raw), SQLITE_OK);
	assert_int_equal(sqlite3_exec(raw, sql, NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_close(raw), SQLITE_OK);
}

/* Finished UID ranges: complete only when they cover 1..UINT32_MAX in
 * the same run; the lowest UIDNEXT and MODSEQ are reported. */
static void
test_parts(void **statep)
{
	struct fixture *fx = *statep;
	struct state_db *db = open_ok(fx->path);
	const char *error;
	bool complete;
	uint32_t next;
	uint64_t modseq;

	assert_int_equal(state_part_cover(db, 1, "a", "INBOX", &complete, &next,
	                                  &modseq, &error), 0);
	assert_false(complete);
	assert_int_equal(next, 0);
	assert_int_equal(state_part_done(db, 1, "a", "INBOX", 5001, UINT32_MAX,
	                                 9001, 70, &error), 0);
	assert_int_equal(state_part_cover(db, 1, "a", "INBOX", &complete, &next,
	                                  &modseq, &error), 0);
	assert_false(complete);
	/* another run, account or folder does not count */
	assert_int_equal(state_part_done(db, 2, "a", "INBOX", 1, 5000, 9000, 60,
	                                 &error), 0);
	assert_int_equal(state_part_done(db, 1, "b", "INBOX", 1, 5000, 9000, 60,
	                                 &error), 0);
	assert_int_equal(state_part_done(db, 1, "a", "Sent", 1, 5000, 9000, 60,
	                                 &error), 0);
	assert_int_equal(state_part_cover(db, 1, "a", "INBOX", &complete, &next,
	                                  &modseq, &error), 0);
	assert_false(complete);
	/* a gap (1..4000 and 5001..) is not complete */
	assert_int_equal(state_part_done(db, 1, "a", "INBOX", 1, 4000, 9000, 65,
	                                 &error), 0);
	assert_int_equal(state_part_cover(db, 1, "a", "INBOX", &complete, &next,
	                                  &modseq, &error), 0);
	assert_false(complete);
	/* recorded again (a retried job) with a wider range */
	assert_int_equal(state_part_done(db, 1, "a", "INBOX", 1, 5000, 8999, 66,
	                                 &error), 0);
	assert_int_equal(state_part_cover(db, 1, "a", "INBOX", &complete, &next,
	                                  &modseq, &error), 0);
	assert_true(complete);
	assert_int_equal(next, 8999);
	assert_int_equal(modseq, 66);
	state_close(&db);
}

static void
test_schema_version(void **statep)
{
	struct fixture *fx = *statep;
	struct state_db *db = open_ok(fx->path);
	const char *error = NULL;

	state_close(&db);
	raw_exec(fx->path, "PRAGMA user_version = 99");
	assert_int_equal(state_open(fx->path, &db, &error), -1);
	assert_null(db);
	assert_non_null(strstr(error, "schema version 99 is newer"));

	raw_exec(fx->path, "PRAGMA user_version = 1");
	db = open_ok(fx->path);
	state_close(&db);
}

static void
test_foreign_database(void **statep)
{
	struct fixture *fx = *statep;
	struct state_db *db = NULL;
	const char *error = NULL;

	raw_exec(fx->path, "CREATE TABLE t (x)");
	assert_int_equal(state_open(fx->path, &db, &error), -1);
	assert_null(db);
	assert_non_null(strstr(error, "not an imapferry state database"));
}

static void
test_disk_full(void **statep)
{
	struct fixture *fx = *statep;
	struct state_db *db = open_ok(fx->path);
	int64_t fid = folder_add(db, "alice", "INBOX");
	char sql[64], flags[512];
	const char *error = NULL;
	int64_t pages;
	int rc = 0;

	begin_ok(db);
	for (uint32_t uid = 1; uid <= 10; uid++)
		msg_put_ok(db, fid, uid, "\\Seen");
	commit_ok(db);

	/* The file may not grow past a few more pages: SQLITE_FULL. */
	pages = pragma_int(db, "PRAGMA page_count");
	snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %" PRId64,
	         pages + 2);
	assert_int_equal(sqlite3_exec(state_db_sqlite(db), sql, NULL, NULL,
	                              NULL), SQLITE_OK);
	memset(flags, 'x', sizeof(flags) - 1);
	flags[sizeof(flags) - 1] = '\0';
	begin_ok(db);
	for (uint32_t uid = 100; uid < 10000 && rc == 0; uid++) {
		struct state_msg m = { .src_uid = uid, .flags = flags };

		rc = state_msg_put(db, fid, &m, &error);
	}
	if (rc == 0)
		rc = state_commit(db, &error);
	assert_int_equal(rc, -1);
	assert_non_null(strstr(error, "disk full"));
	assert_non_null(strstr(error, "state: inserting message mapping: "));
	state_rollback(db);
	assert_false(state_in_transaction(db));
	assert_int_equal(msg_count(db, fid), 10);
	state_close(&db);
}

static void
test_fnv1a(void **statep)
{
	/* Reference vectors of the FNV-1a 64-bit hash. */
	assert_true(state_fnv1a(STATE_FNV1A_INIT, "", 0) ==
	            UINT64_C(0xcbf29ce484222325));
	assert_true(state_fnv1a(STATE_FNV1A_INIT, "a", 1) ==
	            UINT64_C(0xaf63dc4c8601ec8c));
	assert_true(state_fnv1a(STATE_FNV1A_INIT, "foobar", 6) ==
	            UINT64_C(0x85944171f73967e8));
}

static void
restore_env(const char *name, char *saved)
{
	if (saved != NULL) {
		setenv(name, saved, 1);
		free(saved);
	} else {
		unsetenv(name);
	}
}

static void
test_default_path(void **statep)
{
	struct fixture *fx = *statep;
	char *saved_xdg = getenv("XDG_STATE_HOME") ?
	    xstrdup(getenv("XDG_STATE_HOME")) : NULL;
	char *saved_home = getenv("HOME") ? xstrdup(getenv("HOME")) : NULL;
	char *p1, *p2, *p3, *expect;
	const char *error = NULL;
	struct stat st;

	expect = xasprintf("%s/xdg/state", fx->dir);
	setenv("XDG_STATE_HOME", expect, 1);
	free(expect);
	p1 = state_default_path("imaps://a@src", "imaps://a@dst", &error);
	assert_non_null(p1);
	expect = xasprintf("%s/xdg/state/imapferry/%016" PRIx64 ".db", fx->dir,
	                   state_fnv1a(state_fnv1a(STATE_FNV1A_INIT,
	                   "imaps://a@src", 14), "imaps://a@dst", 14));
	assert_string_equal(p1, expect);
	free(expect);
	expect = xasprintf("%s/xdg/state/imapferry", fx->dir);
	assert_int_equal(stat(expect, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0700);
	free(expect);

	/* Deterministic; the pair order and the split matter. */
	p2 = state_default_path("imaps://a@src", "imaps://a@dst", &error);
	assert_string_equal(p1, p2);
	free(p2);
	p2 = state_default_path("imaps://a@dst", "imaps://a@src", &error);
	assert_string_not_equal(p1, p2);
	free(p2);
	p2 = state_default_path("imaps://a@sr", "cimaps://a@dst", &error);
	assert_string_not_equal(p1, p2);
	free(p2);

	/* The file opens there. */
	{
		struct state_db *db = open_ok(p1);

		state_close(&db);
	}

	/* Relative XDG_STATE_HOME is ignored: $HOME/.local/state. */
	setenv("XDG_STATE_HOME", "relative", 1);
	setenv("HOME", fx->dir, 1);
	p3 = state_default_path("x", "y", &error);
	assert_non_null(p3);
	expect = xasprintf("%s/.local/state/imapferry/", fx->dir);
	assert_memory_equal(p3, expect, strlen(expect));
	assert_int_equal(strlen(p3), strlen(expect) + 16 + 3);
	free(expect);
	free(p3);

	/* A file in the way of the directory. */
	expect = xasprintf("%s/blocker", fx->dir);
	write_file(expect, "x", 1, 0, true);
	setenv("XDG_STATE_HOME", expect, 1);
	assert_null(state_default_path("x", "y", &error));
	assert_non_null(strstr(error, "blocker"));
	free(expect);

	unsetenv("XDG_STATE_HOME");
	unsetenv("HOME");
	assert_null(state_default_path("x", "y", &error));
	assert_non_null(strstr(error, "HOME"));

	restore_env("XDG_STATE_HOME", saved_xdg);
	restore_env("HOME", saved_home);
	free(p1);
}


/* ---- claims, leases, fencing (both backends) ---- */

static int64_t
run_add(struct state_db *db, unsigned n_jobs)
{
	struct state_run r = { .pass = "p", .status = "running",
	                       .eta_seconds = -1 };
	const char *error;

	if (state_run_insert(db, &r, &error) < 0)
		fail_msg("%s", error);
	for (unsigned i = 1; i <= n_jobs; i++) {
		struct state_job j = {
			.run_id = r.id, .seq = i, .account = "acct",
			.src_user = "u", .dst_user = "u", .part = 1, .parts = 1,
			.status = STATE_JOB_PENDING, .scope = -1,
			.src_slot = "src:143", .dst_slot = "dst:143",
		};
		char name[16];

		snprintf(name, sizeof(name), "acct%u", i);
		j.account = name;
		if (state_job_insert(db, &j, &error) < 0)
			fail_msg("%s", error);
	}
	return r.id;
}

static bool
claim(struct state_db *db, int64_t run_id, const char *machine,
      unsigned lease, unsigned max_src, struct state_job *j_r, size_t *busy_r)
{
	struct state_claim c = { .run_id = run_id, .machine = machine,
	                         .lease_seconds = lease, .max_src = max_src };
	const char *error;
	size_t busy;
	bool found;

	if (state_job_claim(db, &c, j_r, &found, &busy, &error) < 0)
		fail_msg("%s", error);
	if (busy_r != NULL)
		*busy_r = busy;
	return found;
}

static void
machine_add(struct state_db *db, int64_t run_id, const char *name)
{
	struct state_machine m = { .run_id = run_id, .name = (char *)name,
	                           .host = "h", .status = "running",
	                           .workers = 2 };
	const char *error;

	if (state_machine_put(db, &m, &error) < 0)
		fail_msg("%s", error);
}

/* Claims in seq order; the cap per source server holds; an expired lease
 * is claimed again with a new token, and the old token's heartbeat and
 * release change nothing. */
static void
test_claims(void **statep)
{
	struct fixture *fx = *statep;
	struct state_db *a = open_ok(fx->path);
	struct state_db *b = open_ok(fx->path);
	struct state_job j1, j2, j3, jx, *list;
	const char *error;
	size_t busy, n;
	bool lost;
	int64_t run_id = run_add(a, 3);

	machine_add(a, run_id, "m1");
	machine_add(a, run_id, "m2");
	assert_true(claim(a, run_id, "m1", 1, 2, &j1, &busy));
	assert_int_equal(j1.seq, 1);
	assert_int_equal(j1.status, STATE_JOB_RUNNING);
	assert_int_equal(j1.attempts, 1);
	assert_string_equal(j1.claimed_by, "m1");
	assert_int_equal(busy, 3);
	assert_true(claim(b, run_id, "m2", 60, 2, &j2, NULL));
	assert_int_equal(j2.seq, 2);
	assert_true(j2.lease_token > j1.lease_token);
	/* two running on src:143: the third waits for the cap */
	assert_false(claim(b, run_id, "m2", 60, 2, &jx, &busy));
	assert_int_equal(busy, 3);
	/* no cap: it is claimed */
	assert_true(claim(b, run_id, "m2", 60, 0, &j3, NULL));
	assert_int_equal(j3.seq, 3);
	j3.status = STATE_JOB_DONE;
	assert_int_equal(state_job_release(b, &j3, j3.lease_token, &lost,
	                                   &error), 0);
	assert_false(lost);
	/* a second release of the same claim is fenced */
	assert_int_equal(state_job_release(b, &j3, j3.lease_token, &lost,
	                                   &error), 0);
	assert_true(lost);
	state_job_free(&j3);

	/* j1's lease (1 s) expires: m2 takes it over */
	assert_false(claim(b, run_id, "m2", 60, 0, &jx, NULL));
	sleep(3);
	assert_true(claim(b, run_id, "m2", 60, 0, &jx, &busy));
	assert_int_equal(jx.id, j1.id);
	assert_int_equal(jx.attempts, 2);
	assert_true(jx.lease_token > j2.lease_token);
	assert_int_equal(busy, 2);
	/* m1's writes for its old claim change nothing */
	assert_int_equal(state_job_heartbeat(a, j1.id, j1.lease_token, 60, 5, 50,
	                                     1, &lost, &error), 0);
	assert_true(lost);
	j1.status = STATE_JOB_DONE;
	assert_int_equal(state_job_release(a, &j1, j1.lease_token, &lost,
	                                   &error), 0);
	assert_true(lost);
	assert_int_equal(state_job_heartbeat(b, jx.id, jx.lease_token, 60, 7, 70,
	                                     1, &lost, &error), 0);
	assert_false(lost);
	assert_int_equal(state_job_list(a, run_id, &list, &n, &error), 0);
	assert_int_equal(n, 3);
	assert_int_equal(list[0].status, STATE_JOB_RUNNING);
	assert_string_equal(list[0].claimed_by, "m2");
	assert_int_equal(list[0].messages, 7);
	assert_int_equal(list[2].status, STATE_JOB_DONE);
	state_job_list_free(&list, n);
	{
		struct state_machine *m;

		assert_int_equal(state_machine_list(a, run_id, &m, &n, &error), 0);
		assert_int_equal(n, 2);
		assert_string_equal(m[0].name, "m1");
		assert_int_equal(m[0].lost_leases, 1);
		assert_int_equal(m[1].lost_leases, 0);
		state_machine_list_free(&m, n);
	}
	/* the rest done: nothing busy */
	jx.status = STATE_JOB_DONE;
	assert_int_equal(state_job_release(b, &jx, jx.lease_token, &lost,
	                                   &error), 0);
	j2.status = STATE_JOB_FAILED;
	assert_int_equal(state_job_release(b, &j2, j2.lease_token, &lost,
	                                   &error), 0);
	assert_false(claim(a, run_id, "m1", 60, 0, &j3, &busy));
	assert_int_equal(busy, 0);
	/* a resumed run retries the failed one */
	assert_int_equal(state_job_retry_failed(a, run_id, &error), 0);
	assert_true(claim(a, run_id, "m1", 60, 0, &j3, &busy));
	assert_int_equal(j3.seq, 2);
	state_job_free(&j3);
	state_job_free(&j1);
	state_job_free(&j2);
	state_job_free(&jx);
	state_close(&a);
	state_close(&b);
}

/* A handle fenced by a claim's token writes while the claim holds, and
 * refuses every write (mappings, folders, failures, parts) once another
 * worker took the job over. */
static void
test_fence(void **statep)
{
	struct fixture *fx = *statep;
	struct state_db *a = open_ok(fx->path);
	struct state_db *b = open_ok(fx->path);
	struct state_job j1, j2;
	struct state_folder f = { .account = "acct1", .src_name = "INBOX",
	                          .dst_name = "INBOX" };
	const char *error;
	int64_t run_id = run_add(a, 1), fid;

	assert_true(claim(a, run_id, "m1", 1, 0, &j1, NULL));
	state_fence_set(a, j1.id, j1.lease_token);
	fid = folder_add(a, "acct1", "INBOX");   /* outside a transaction */
	begin_ok(a);
	msg_put_ok(a, fid, 1, "");
	commit_ok(a);
	assert_false(state_fence_lost(a));
	sleep(3);
	/* expired but not taken over: the token still holds */
	begin_ok(a);
	msg_put_ok(a, fid, 2, "");
	commit_ok(a);
	assert_true(claim(b, run_id, "m2", 60, 0, &j2, NULL));
	assert_int_equal(state_begin(a, &error), -1);
	assert_non_null(strstr(error, "taken over"));
	assert_int_equal(err_kind_of(error), ERRK_STATE);
	assert_true(state_fence_lost(a));
	assert_false(state_in_transaction(a));
	assert_int_equal(state_folder_put(a, &f, &error), -1);
	assert_int_equal(state_failure_put(a, "acct1", "INBOX", 3,
	                                   STATE_SCOPE_MESSAGE, "x", &error), -1);
	assert_int_equal(state_part_done(a, run_id, "acct1", "INBOX", 1, 10, 11,
	                                 0, &error), -1);
	/* reads go on */
	assert_int_equal(msg_count(a, fid), 2);
	/* the new owner writes */
	state_fence_set(b, j2.id, j2.lease_token);
	begin_ok(b);
	msg_put_ok(b, fid, 3, "");
	commit_ok(b);
	assert_int_equal(msg_count(a, fid), 3);
	/* unfenced again */
	state_fence_set(a, 0, 0);
	assert_int_equal(state_folder_put(a, &f, &error), 0);
	state_job_free(&j1);
	state_job_free(&j2);
	state_close(&a);
	state_close(&b);
}

static void
test_machines(void **statep)
{
	struct fixture *fx = *statep;
	struct state_db *db = open_ok(fx->path);
	struct state_machine m = { .name = "b", .host = "hb", .pid = 42,
	                           .status = "running", .started = 1000,
	                           .workers = 4, .jobs_running = 2,
	                           .messages = 10, .bytes = 1000,
	                           .rate_messages = 1.5 }, *list;
	const char *error;
	size_t n;

	m.run_id = run_add(db, 0);
	assert_int_equal(state_machine_put(db, &m, &error), 0);
	m.name = "a";
	assert_int_equal(state_machine_put(db, &m, &error), 0);
	m.jobs_running = 0;
	m.status = "done";
	assert_int_equal(state_machine_put(db, &m, &error), 0);
	assert_int_equal(state_machine_list(db, m.run_id, &list, &n, &error), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].name, "a");
	assert_string_equal(list[0].status, "done");
	assert_int_equal(list[0].jobs_running, 0);
	assert_string_equal(list[1].host, "hb");
	assert_int_equal(list[1].pid, 42);
	assert_int_equal(list[1].jobs_running, 2);
	assert_int_equal(list[1].workers, 4);
	assert_true(list[1].age >= 0 && list[1].age < 5);
	assert_true(list[1].rate_messages == 1.5);
	state_machine_list_free(&list, n);
	assert_null(list);
	assert_int_equal(state_machine_list(db, m.run_id + 1, &list, &n,
	                                    &error), 0);
	assert_int_equal(n, 0);
	state_close(&db);
}

/* ---- PostgreSQL only ---- */

static void
test_pg_password_refused(void **statep)
{
	struct fixture *fx = *statep;
	struct state_db *db = NULL;
	const char *error;
	char url[400];

	assert_true(state_path_is_url(fx->path));
	assert_false(state_path_is_url("/tmp/x.db"));
	assert_true(state_path_is_url("postgres://u@h/d"));
	snprintf(url, sizeof(url), "postgresql://imapferry:s3cret@%s",
	         fx->path + strlen("postgresql://imapferry@"));
	assert_int_equal(state_open(url, &db, &error), -1);
	assert_null(strstr(error, "s3cret"));
	assert_non_null(strstr(error, "PGPASSWORD"));
	snprintf(url, sizeof(url), "%s?password=s3cret", fx->path);
	assert_int_equal(state_open(url, &db, &error), -1);
	assert_null(strstr(error, "s3cret"));
	/* a wrong password from the environment: a clear error */
	setenv("PGPASSWORD", "wrong", 1);
	assert_int_equal(state_open(fx->path, &db, &error), -1);
	assert_int_equal(err_kind_of(error), ERRK_STATE);
	assert_non_null(strstr(error, "password"));
	setenv("PGPASSWORD", "throwaway", 1);
	db = open_ok(fx->path);
	assert_true(state_is_shared(db));
	assert_null(state_db_sqlite(db));
	state_close(&db);
}

/* The schema is created once, has a version, a newer one is refused, and
 * a database of another program too. */
static void
test_pg_schema(void **statep)
{
	struct fixture *fx = *statep;
	struct state_db *db = open_ok(fx->path), *db2;
	const char *error;
	char out[64], other[300];

	db2 = open_ok(fx->path);   /* opens the existing schema */
	state_close(&db2);
	state_close(&db);
	assert_int_equal(pgtmp(out, sizeof(out), "psql %s %s 'SELECT version"
	                       " FROM imapferry_schema'", pg.dir, fx->db), 0);
	assert_int_equal(atoi(out), STATE_SCHEMA_VERSION);
	assert_int_equal(pgtmp(NULL, 0, "psql %s %s 'UPDATE imapferry_schema"
	                       " SET version = 99'", pg.dir, fx->db), 0);
	assert_int_equal(state_open(fx->path, &db, &error), -1);
	assert_non_null(strstr(error, "newer"));

	snprintf(out, sizeof(out), "%s_other", fx->db);
	assert_int_equal(pgtmp(NULL, 0, "createdb %s %s", pg.dir, out), 0);
	assert_int_equal(pgtmp(NULL, 0, "psql %s %s 'CREATE TABLE job (x int)'",
	                       pg.dir, out), 0);
	snprintf(other, sizeof(other), "%s/%s", pg.url, out);
	assert_int_equal(state_open(other, &db, &error), -1);
	assert_non_null(strstr(error, "another program"));
}

/* The server closes the connection between two transactions (a restart):
 * the next statement reconnects; inside a transaction the error is
 * returned and the next transaction works. */
static void
test_pg_reconnect(void **statep)
{
	struct fixture *fx = *statep;
	struct state_db *db = open_ok(fx->path);
	int64_t fid = folder_add(db, "alice", "INBOX");
#define KILL_SQL "psql %s %s \"SELECT pg_terminate_backend(pid)" \
	    " FROM pg_stat_activity WHERE application_name = 'imapferry'\""
	const char *error;

	begin_ok(db);
	msg_put_ok(db, fid, 1, "");
	commit_ok(db);
	assert_int_equal(pgtmp(NULL, 0, KILL_SQL, pg.dir, fx->db), 0);
	assert_int_equal(msg_count(db, fid), 1);
	begin_ok(db);
	assert_int_equal(pgtmp(NULL, 0, KILL_SQL, pg.dir, fx->db), 0);
	msg_put_ok(db, fid, 2, "");      /* buffered */
	assert_int_equal(state_commit(db, &error), -1);
	assert_int_equal(err_kind_of(error), ERRK_STATE);
	state_rollback(db);
	begin_ok(db);
	msg_put_ok(db, fid, 2, "");
	commit_ok(db);
	assert_int_equal(msg_count(db, fid), 2);
	state_close(&db);
}

/* While a fenced transaction is open its job cannot be taken over, even
 * with an expired lease: the claim skips the locked row. */
static void
test_pg_fence_blocks_claim(void **statep)
{
	struct fixture *fx = *statep;
	struct state_db *a = open_ok(fx->path);
	struct state_db *b = open_ok(fx->path);
	struct state_job j1, j2;
	int64_t run_id = run_add(a, 1), fid = folder_add(a, "acct1", "INBOX");

	assert_true(claim(a, run_id, "m1", 1, 0, &j1, NULL));
	state_fence_set(a, j1.id, j1.lease_token);
	sleep(3);
	begin_ok(a);
	msg_put_ok(a, fid, 1, "");
	assert_false(claim(b, run_id, "m2", 60, 0, &j2, NULL));
	commit_ok(a);
	assert_true(claim(b, run_id, "m2", 60, 0, &j2, NULL));
	assert_int_equal(msg_count(b, fid), 1);
	state_job_free(&j1);
	state_job_free(&j2);
	state_close(&a);
	state_close(&b);
}

/* ---- where the bodies of a job came from (schema 5, both backends) ---- */

static void
bodies_set(struct state_bodies *b, uint64_t base)
{
	b->spool = base + 1000;
	b->missing = base + 3;
	b->size = base + 2;
	b->uidvalidity = base + 40;
	b->error = base + 1;
	b->imap = b->missing + b->size + b->uidvalidity + b->error;
}

static void
bodies_equal(const struct state_bodies *a, const struct state_bodies *b)
{
	assert_int_equal(a->spool, b->spool);
	assert_int_equal(a->imap, b->imap);
	assert_int_equal(a->missing, b->missing);
	assert_int_equal(a->size, b->size);
	assert_int_equal(a->uidvalidity, b->uidvalidity);
	assert_int_equal(a->error, b->error);
}

/* The bodies are stored by insert, update and release, and read back by
 * the list and the claim; a job without them reads 0. */
static void
test_job_bodies(void **statep)
{
	struct fixture *fx = *statep;
	struct state_db *db = open_ok(fx->path);
	struct state_job *list, j;
	struct state_bodies want;
	const char *error;
	size_t n;
	bool lost;
	int64_t run_id = run_add(db, 2);

	assert_int_equal(state_job_list(db, run_id, &list, &n, &error), 0);
	assert_int_equal(n, 2);
	memset(&want, 0, sizeof(want));
	bodies_equal(&list[0].bodies, &want);
	/* update (one machine) */
	bodies_set(&list[0].bodies, 0);
	want = list[0].bodies;
	list[0].status = STATE_JOB_DONE;
	assert_int_equal(state_job_update(db, &list[0], &error), 0);
	state_job_list_free(&list, n);
	assert_int_equal(state_job_list(db, run_id, &list, &n, &error), 0);
	bodies_equal(&list[0].bodies, &want);
	assert_int_equal(list[1].bodies.spool, 0);
	state_job_list_free(&list, n);
	/* the claim reads them, the release writes them (several machines);
	 * a big count survives the signed column */
	assert_true(claim(db, run_id, "m1", 60, 0, &j, NULL));
	assert_int_equal(j.seq, 2);
	assert_int_equal(j.bodies.spool, 0);
	bodies_set(&j.bodies, (uint64_t)1 << 40);
	want = j.bodies;
	j.status = STATE_JOB_DONE;
	assert_int_equal(state_job_release(db, &j, j.lease_token, &lost, &error),
	                 0);
	assert_false(lost);
	state_job_free(&j);
	assert_int_equal(state_job_list(db, run_id, &list, &n, &error), 0);
	bodies_equal(&list[1].bodies, &want);
	state_job_list_free(&list, n);
	/* insert */
	{
		struct state_job k = {
			.run_id = run_id, .seq = 3, .account = "acct3",
			.src_user = "u", .dst_user = "u", .part = 1, .parts = 1,
			.status = STATE_JOB_DONE, .scope = -1,
		};

		bodies_set(&k.bodies, 7);
		want = k.bodies;
		assert_int_equal(state_job_insert(db, &k, &error), 0);
	}
	assert_int_equal(state_job_list(db, run_id, &list, &n, &error), 0);
	assert_int_equal(n, 3);
	bodies_equal(&list[2].bodies, &want);
	state_job_list_free(&list, n);
	state_close(&db);
}

/* A state of schema version 4 (no bodies columns) is upgraded when opened:
 * its jobs read 0 bodies, and new ones are stored. */
static void
test_schema_upgrade_v4(void **statep)
{
	struct fixture *fx = *statep;
	struct state_db *db = open_ok(fx->path);
	struct state_job *list;
	struct state_bodies want;
	const char *error;
	char out[64];
	size_t n;
	int64_t run_id = run_add(db, 1);

	state_close(&db);
	/* back to version 4, as an older imapferry left it */
	if (fx->db[0] == '\0') {
		raw_exec(fx->path, "ALTER TABLE job DROP COLUMN bodies_spool;"
		         "ALTER TABLE job DROP COLUMN bodies_imap;"
		         "ALTER TABLE job DROP COLUMN bodies_missing;"
		         "ALTER TABLE job DROP COLUMN bodies_size;"
		         "ALTER TABLE job DROP COLUMN bodies_uidvalidity;"
		         "ALTER TABLE job DROP COLUMN bodies_error;"
		         "PRAGMA user_version = 4");
	} else {
		assert_int_equal(pgtmp(NULL, 0, "psql %s %s 'ALTER TABLE job"
		    " DROP COLUMN bodies_spool, DROP COLUMN bodies_imap,"
		    " DROP COLUMN bodies_missing, DROP COLUMN bodies_size,"
		    " DROP COLUMN bodies_uidvalidity, DROP COLUMN bodies_error;"
		    " UPDATE imapferry_schema SET version = 4'", pg.dir, fx->db),
		    0);
	}
	db = open_ok(fx->path);
	if (fx->db[0] == '\0') {
		assert_int_equal(pragma_int(db, "PRAGMA user_version"),
		                 STATE_SCHEMA_VERSION);
	} else {
		assert_int_equal(pgtmp(out, sizeof(out), "psql %s %s 'SELECT"
		    " max(version) FROM imapferry_schema'", pg.dir, fx->db), 0);
		assert_int_equal(atoi(out), STATE_SCHEMA_VERSION);
	}
	assert_int_equal(state_job_list(db, run_id, &list, &n, &error), 0);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].account, "acct1");
	memset(&want, 0, sizeof(want));
	bodies_equal(&list[0].bodies, &want);
	bodies_set(&list[0].bodies, 5);
	want = list[0].bodies;
	assert_int_equal(state_job_update(db, &list[0], &error), 0);
	state_job_list_free(&list, n);
	state_close(&db);
	/* opened again: nothing more to migrate, the values kept */
	db = open_ok(fx->path);
	assert_int_equal(state_job_list(db, run_id, &list, &n, &error), 0);
	bodies_equal(&list[0].bodies, &want);
	state_job_list_free(&list, n);
	state_close(&db);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
#define P(f) cmocka_unit_test_prestate_setup_teardown(f##_pg, setup_pg, \
                                                    teardown_pg, NULL)
/* The same test on PostgreSQL. */
#define PG_CASE(f) \
	static void f##_pg(void **statep) \
	{ \
		NEED_PG(); \
		f(statep); \
	}
PG_CASE(test_folders)
PG_CASE(test_msgs_bulk)
PG_CASE(test_msg_update_delete_clear)
PG_CASE(test_outside_transaction)
PG_CASE(test_failures)
PG_CASE(test_meta)
PG_CASE(test_parts)
PG_CASE(test_reopen_persists)
PG_CASE(test_second_handle)
PG_CASE(test_claims)
PG_CASE(test_fence)
PG_CASE(test_machines)
PG_CASE(test_pg_password_refused)
PG_CASE(test_pg_schema)
PG_CASE(test_pg_reconnect)
PG_CASE(test_pg_fence_blocks_claim)
PG_CASE(test_job_bodies)
PG_CASE(test_schema_upgrade_v4)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_open_create),
		T(test_open_fixes_mode),
		T(test_open_missing_dir),
		T(test_folders),
		T(test_msgs_bulk),
		T(test_msg_update_delete_clear),
		T(test_outside_transaction),
		T(test_failures),
		T(test_meta),
		T(test_parts),
		T(test_reopen_persists),
		T(test_second_handle),
		T(test_crash),
		T(test_corrupt_garbage),
		T(test_corrupt_pages),
		T(test_schema_version),
		T(test_foreign_database),
		T(test_disk_full),
		T(test_fnv1a),
		T(test_default_path),
		T(test_claims),
		T(test_fence),
		T(test_machines),
		T(test_job_bodies),
		T(test_schema_upgrade_v4),
		P(test_folders),
		P(test_msgs_bulk),
		P(test_msg_update_delete_clear),
		P(test_outside_transaction),
		P(test_failures),
		P(test_meta),
		P(test_parts),
		P(test_reopen_persists),
		P(test_second_handle),
		P(test_claims),
		P(test_fence),
		P(test_machines),
		P(test_pg_password_refused),
		P(test_pg_schema),
		P(test_pg_reconnect),
		P(test_pg_fence_blocks_claim),
		P(test_job_bodies),
		P(test_schema_upgrade_v4),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
