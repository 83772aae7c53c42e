/* state-pg.c: the PostgreSQL backend of the state database (state.h has
 * the contract, state.c dispatches to the pg_* functions here). Several
 * machines share one database: docs/internals/queue.md.
 *
 * The schema is the SQLite one (state-sqlite.c) with PostgreSQL types:
 * BIGINT for every integer (unsigned 64-bit values stored as the signed
 * integer with the same bits, as in SQLite), TEXT COLLATE "C" so that
 * names sort by bytes as SQLite's BINARY does. Its version is in the
 * table imapferry_schema; state_open() creates or migrates it under an
 * advisory lock, so machines starting together do not race.
 *
 * Parameters go as text (PQexecParams). Message mappings are buffered
 * inside a transaction and written as one multi-row INSERT per batch of
 * PG_BATCH_ROWS, before any other statement and at commit: never one
 * round trip per message.
 *
 * Connection loss: a statement sent outside a transaction that fails
 * because the connection broke is sent once more on a new connection
 * (PQreset) (a PostgreSQL restart between two transactions goes
 * unnoticed); inside a transaction the error is returned, the caller
 * rolls back, and the next BEGIN reconnects. */
#include "state-backend.h"

#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* pg_advisory_lock() class id: "ifer" */
#define PG_LOCK_CLASS 1768318322
#define PG_BATCH_ROWS 256
#define PG_CHANNEL "imapferry"

struct pg_batch_row {
	uint32_t src_uid, dst_uid;
	char *flags, *fingerprint;  /* owned; fingerprint may be NULL */
	uint64_t size;
	int64_t internaldate;
};

struct pg_db {
	PGconn *conn;
	char *url;                  /* no password (state_open() refuses one) */
	bool in_tx;
	bool listening;
	struct pg_batch_row *batch; /* buffered msg puts of batch_folder */
	size_t n_batch;
	int64_t batch_folder;
};

/* Parameters of one statement, all as text. */
#define PG_MAX_PARAMS 24
struct pgp {
	const char *v[PG_MAX_PARAMS];
	char num[PG_MAX_PARAMS][32];
	int n;
};

static void
pp_int(struct pgp *p, int64_t v)
{
	snprintf(p->num[p->n], sizeof(p->num[p->n]), "%" PRId64, v);
	p->v[p->n] = p->num[p->n];
	p->n++;
}

static void
pp_dbl(struct pgp *p, double v)
{
	snprintf(p->num[p->n], sizeof(p->num[p->n]), "%.17g", v);
	p->v[p->n] = p->num[p->n];
	p->n++;
}

/* s borrowed until the statement ran; NULL is SQL NULL. */
static void
pp_str(struct pgp *p, const char *s)
{
	p->v[p->n++] = s;
}

static void
pp_str0(struct pgp *p, const char *s)
{
	p->v[p->n++] = s != NULL ? s : "";
}

static int64_t
gi(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? 0 :
	    strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static unsigned
gu(const PGresult *res, int row, int col)
{
	int64_t v = gi(res, row, col);

	return v < 0 ? 0 : v > UINT32_MAX ? UINT32_MAX : (unsigned)v;
}

static double
gd(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? 0 :
	    strtod(PQgetvalue(res, row, col), NULL);
}

/* A copy of a text column; NULL stays NULL unless not_null. */
static char *
gs(const PGresult *res, int row, int col, bool not_null)
{
	if (PQgetisnull(res, row, col))
		return not_null ? xstrdup("") : NULL;
	return xstrndup(PQgetvalue(res, row, col),
	                (size_t)PQgetlength(res, row, col));
}

/* The error of res (or of the connection), as "state: what: reason",
 * with ERRK_DISK_FULL for SQLSTATE 53100. */
static const char *
pg_error(struct pg_db *db, const PGresult *res, const char *what)
{
	const char *msg = res != NULL ? PQresultErrorMessage(res) : "";
	const char *code = res != NULL ?
	    PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	size_t len;

	if (msg == NULL || msg[0] == '\0')
		msg = PQerrorMessage(db->conn);
	len = strlen(msg);
	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
		len--;
	if (code != NULL && strcmp(code, "53100") == 0)
		return err_setk(ERRK_DISK_FULL, "state: %s: disk full (%.*s)", what,
		                (int)len, msg);
	return err_setk(ERRK_STATE, "state: %s: %.*s", what, (int)len, msg);
}

/* Sends LISTEN again on a new connection. */
static void
relisten(struct pg_db *db)
{
	PGresult *res;

	if (!db->listening)
		return;
	res = PQexec(db->conn, "LISTEN " PG_CHANNEL);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		db->listening = false;
	PQclear(res);
}

static int flush_batch(struct pg_db *db, const char **error_r);

/* Runs sql with n params. Returns the result (PQclear() it) when it
 * succeeded, or NULL with *error_r. Outside a transaction a statement
 * that failed on a broken connection is sent once more after PQreset(). */
static PGresult *
pg_exec_n(struct pg_db *db, const char *sql, int n, const char *const *v,
          const char *what, const char **error_r)
{
	bool retry = !db->in_tx;
	PGresult *res;

	if (db->n_batch > 0 && flush_batch(db, error_r) < 0)
		return NULL;
	for (;;) {
		ExecStatusType st;

		if (PQstatus(db->conn) == CONNECTION_BAD && !db->in_tx) {
			PQreset(db->conn);
			relisten(db);
		}
		res = PQexecParams(db->conn, sql, n, NULL, v, NULL, NULL, 0);
		st = PQresultStatus(res);
		if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
			return res;
		if (retry && PQstatus(db->conn) == CONNECTION_BAD) {
			log_warn("state: %s: the connection to PostgreSQL broke; "
			         "reconnecting", what);
			PQclear(res);
			retry = false;
			continue;
		}
		*error_r = pg_error(db, res, what);
		PQclear(res);
		return NULL;
	}
}

static PGresult *
pg_exec(struct pg_db *db, const char *sql, const struct pgp *p,
        const char *what, const char **error_r)
{
	return pg_exec_n(db, sql, p != NULL ? p->n : 0, p != NULL ? p->v : NULL,
	                 what, error_r);
}

/* Runs a statement whose result is not needed. */
static int
pg_run(struct pg_db *db, const char *sql, const struct pgp *p,
       const char *what, const char **error_r)
{
	PGresult *res = pg_exec(db, sql, p, what, error_r);

	if (res == NULL)
		return -1;
	PQclear(res);
	return 0;
}

/* Runs a write and sets *rows_r to the rows it changed. */
static int
pg_run_rows(struct pg_db *db, const char *sql, const struct pgp *p,
            const char *what, int64_t *rows_r, const char **error_r)
{
	PGresult *res = pg_exec(db, sql, p, what, error_r);

	if (res == NULL)
		return -1;
	*rows_r = strtoll(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	return 0;
}

static void
batch_clear(struct pg_db *db)
{
	for (size_t i = 0; i < db->n_batch; i++) {
		free(db->batch[i].flags);
		free(db->batch[i].fingerprint);
	}
	db->n_batch = 0;
}

/* Writes the buffered mappings as one INSERT. */
static int
flush_batch(struct pg_db *db, const char **error_r)
{
	const char *what = "inserting message mappings";
	/* 69 bytes per row at most ($NNNN::bigint x7), 300 for the rest */
	size_t n = db->n_batch, cap = 512 + n * 96;
	char *sql = xmalloc(cap), (*num)[24];
	const char **v;
	size_t len;
	int rc = 0, k = 0;
	PGresult *res;

	v = xcalloc(n * 7 + 1, sizeof(*v));
	num = xcalloc(n * 5 + 1, sizeof(*num));
	len = (size_t)snprintf(sql, cap, "INSERT INTO msg (folder_id, src_uid,"
	    " dst_uid, flags, size, internaldate, fingerprint) VALUES ");
	for (size_t i = 0; i < n; i++) {
		const struct pg_batch_row *r = &db->batch[i];
		int b = (int)i * 7;

		len += (size_t)snprintf(sql + len, cap - len, "%s($%d::bigint,"
		    "$%d::bigint,$%d::bigint,$%d,$%d::bigint,$%d::bigint,$%d)",
		    i > 0 ? "," : "", b + 1, b + 2, b + 3, b + 4, b + 5, b + 6,
		    b + 7);
		snprintf(num[k], sizeof(num[k]), "%" PRId64, db->batch_folder);
		v[b] = num[k++];
		snprintf(num[k], sizeof(num[k]), "%" PRIu32, r->src_uid);
		v[b + 1] = num[k++];
		snprintf(num[k], sizeof(num[k]), "%" PRIu32, r->dst_uid);
		v[b + 2] = num[k++];
		v[b + 3] = r->flags;
		snprintf(num[k], sizeof(num[k]), "%" PRId64, (int64_t)r->size);
		v[b + 4] = num[k++];
		snprintf(num[k], sizeof(num[k]), "%" PRId64, r->internaldate);
		v[b + 5] = num[k++];
		v[b + 6] = r->fingerprint;
	}
	snprintf(sql + len, cap - len, " ON CONFLICT (folder_id, src_uid) DO"
	    " UPDATE SET dst_uid = excluded.dst_uid, flags = excluded.flags,"
	    " size = excluded.size, internaldate = excluded.internaldate,"
	    " fingerprint = excluded.fingerprint");
	res = PQexecParams(db->conn, sql, (int)n * 7, NULL, v, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		*error_r = pg_error(db, res, what);
		rc = -1;
	}
	PQclear(res);
	batch_clear(db);
	free(sql);
	free(v);
	free(num);
	return rc;
}

/* ---------------------------------------------------------------- schema */

static const char schema_v4[] =
	"CREATE TABLE imapferry_schema (version INTEGER NOT NULL);"
	"CREATE TABLE folder ("
	" id BIGSERIAL PRIMARY KEY,"
	" account TEXT COLLATE \"C\" NOT NULL,"
	" src_name TEXT COLLATE \"C\" NOT NULL,"
	" src_uidvalidity BIGINT NOT NULL,"
	" dst_name TEXT COLLATE \"C\" NOT NULL,"
	" dst_uidvalidity BIGINT NOT NULL,"
	" src_highestmodseq BIGINT NOT NULL,"
	" src_uidnext BIGINT NOT NULL,"
	" dst_uidnext BIGINT NOT NULL,"
	" complete INTEGER NOT NULL,"
	" UNIQUE (account, src_name));"
	"CREATE TABLE msg ("
	" folder_id BIGINT NOT NULL REFERENCES folder (id) ON DELETE CASCADE,"
	" src_uid BIGINT NOT NULL,"
	" dst_uid BIGINT NOT NULL,"
	" flags TEXT NOT NULL,"
	" size BIGINT NOT NULL,"
	" internaldate BIGINT NOT NULL,"
	" fingerprint TEXT,"
	" PRIMARY KEY (folder_id, src_uid));"
	"CREATE TABLE failure ("
	" account TEXT COLLATE \"C\" NOT NULL,"
	" folder TEXT COLLATE \"C\" NOT NULL,"
	" src_uid BIGINT NOT NULL,"
	" scope INTEGER NOT NULL,"
	" reason TEXT NOT NULL,"
	" last_time BIGINT NOT NULL,"
	" attempts INTEGER NOT NULL,"
	" PRIMARY KEY (account, folder, src_uid));"
	"CREATE TABLE meta ("
	" key TEXT COLLATE \"C\" PRIMARY KEY,"
	" value TEXT NOT NULL);"
	"CREATE TABLE run ("
	" id BIGSERIAL PRIMARY KEY,"
	" pass TEXT COLLATE \"C\" NOT NULL,"
	" src TEXT NOT NULL,"
	" dst TEXT NOT NULL,"
	" folders TEXT NOT NULL,"
	" workers INTEGER NOT NULL,"
	" status TEXT NOT NULL,"
	" error TEXT NOT NULL,"
	" started BIGINT NOT NULL,"
	" finished BIGINT NOT NULL,"
	" heartbeat BIGINT NOT NULL,"
	" pid BIGINT NOT NULL,"
	" est_seconds DOUBLE PRECISION NOT NULL,"
	" rate_messages DOUBLE PRECISION NOT NULL,"
	" rate_bytes DOUBLE PRECISION NOT NULL,"
	" eta_seconds DOUBLE PRECISION NOT NULL,"
	" plan TEXT NOT NULL);"
	"CREATE TABLE job ("
	" id BIGSERIAL PRIMARY KEY,"
	" run_id BIGINT NOT NULL REFERENCES run (id) ON DELETE CASCADE,"
	" seq INTEGER NOT NULL,"
	" account TEXT COLLATE \"C\" NOT NULL,"
	" src_user TEXT NOT NULL,"
	" dst_user TEXT NOT NULL,"
	" part INTEGER NOT NULL,"
	" parts INTEGER NOT NULL,"
	" folders TEXT NOT NULL,"
	" exclude TEXT NOT NULL,"
	" uid_lo BIGINT NOT NULL,"
	" uid_hi BIGINT NOT NULL,"
	" est_messages BIGINT NOT NULL,"
	" est_bytes BIGINT NOT NULL,"
	" est_seconds DOUBLE PRECISION NOT NULL,"
	" status TEXT NOT NULL,"
	" attempts INTEGER NOT NULL,"
	" errors INTEGER NOT NULL,"
	" messages BIGINT NOT NULL,"
	" bytes BIGINT NOT NULL,"
	" skipped BIGINT NOT NULL,"
	" failed BIGINT NOT NULL,"
	" folders_failed INTEGER NOT NULL,"
	" error TEXT NOT NULL,"
	" scope INTEGER NOT NULL,"
	" started BIGINT NOT NULL,"
	" finished BIGINT NOT NULL,"
	" updated BIGINT NOT NULL,"
	" not_before BIGINT NOT NULL,"
	" seconds DOUBLE PRECISION NOT NULL,"
	" src_slot TEXT COLLATE \"C\" NOT NULL DEFAULT '',"
	" dst_slot TEXT COLLATE \"C\" NOT NULL DEFAULT '',"
	" claimed_by TEXT NOT NULL DEFAULT '',"
	" lease_token BIGINT NOT NULL DEFAULT 0,"
	" lease_expires BIGINT NOT NULL DEFAULT 0,"
	" UNIQUE (run_id, seq));"
	"CREATE INDEX job_by_status ON job (run_id, status, seq);"
	"CREATE SEQUENCE lease_token_seq;"
	"CREATE TABLE part ("
	" run_id BIGINT NOT NULL,"
	" account TEXT COLLATE \"C\" NOT NULL,"
	" folder TEXT COLLATE \"C\" NOT NULL,"
	" uid_lo BIGINT NOT NULL,"
	" uid_hi BIGINT NOT NULL,"
	" uidnext BIGINT NOT NULL,"
	" modseq BIGINT NOT NULL,"
	" PRIMARY KEY (run_id, account, folder, uid_lo));"
	"CREATE TABLE machine ("
	" run_id BIGINT NOT NULL REFERENCES run (id) ON DELETE CASCADE,"
	" name TEXT COLLATE \"C\" NOT NULL,"
	" host TEXT NOT NULL,"
	" pid BIGINT NOT NULL,"
	" status TEXT NOT NULL,"
	" started BIGINT NOT NULL,"
	" heartbeat BIGINT NOT NULL,"
	" workers INTEGER NOT NULL,"
	" jobs_running INTEGER NOT NULL,"
	" jobs_done INTEGER NOT NULL,"
	" messages BIGINT NOT NULL,"
	" bytes BIGINT NOT NULL,"
	" rate_messages DOUBLE PRECISION NOT NULL,"
	" rate_bytes DOUBLE PRECISION NOT NULL,"
	" lost_leases INTEGER NOT NULL,"
	" PRIMARY KEY (run_id, name));";

/* Version 5: where the bodies of a job came from (a hybrid source).
 * IF NOT EXISTS: a database whose version was set back by hand keeps its
 * columns. */
static const char schema_v5[] =
	"ALTER TABLE job"
	" ADD COLUMN IF NOT EXISTS bodies_spool BIGINT NOT NULL DEFAULT 0,"
	" ADD COLUMN IF NOT EXISTS bodies_imap BIGINT NOT NULL DEFAULT 0,"
	" ADD COLUMN IF NOT EXISTS bodies_missing BIGINT NOT NULL DEFAULT 0,"
	" ADD COLUMN IF NOT EXISTS bodies_size BIGINT NOT NULL DEFAULT 0,"
	" ADD COLUMN IF NOT EXISTS bodies_uidvalidity BIGINT NOT NULL DEFAULT 0,"
	" ADD COLUMN IF NOT EXISTS bodies_error BIGINT NOT NULL DEFAULT 0;";

/* Runs a text of several statements (the simple query protocol). */
static int
pg_exec_script(struct pg_db *db, const char *sql, const char *what,
               const char **error_r)
{
	PGresult *res = PQexec(db->conn, sql);

	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		*error_r = pg_error(db, res, what);
		PQclear(res);
		return -1;
	}
	PQclear(res);
	return 0;
}

/* Creates or checks the schema in one transaction under an advisory
 * lock (machines opening a new database at once). */
static int
open_schema(struct pg_db *db, const char **error_r)
{
	const char *what = "checking the schema";
	PGresult *res;
	struct pgp p = { 0 };
	int64_t version = -1;
	bool ours, other;

	if (pg_run(db, "BEGIN", NULL, what, error_r) < 0)
		return -1;
	db->in_tx = true;
	pp_int(&p, PG_LOCK_CLASS);
	if (pg_run(db, "SELECT pg_advisory_xact_lock($1::int, 0)", &p, what,
	           error_r) < 0)
		goto fail;
	res = pg_exec(db, "SELECT to_regclass('imapferry_schema') IS NOT NULL,"
	    " to_regclass('job') IS NOT NULL OR to_regclass('folder') IS NOT"
	    " NULL", NULL, what, error_r);
	if (res == NULL)
		goto fail;
	ours = PQgetvalue(res, 0, 0)[0] == 't';
	other = PQgetvalue(res, 0, 1)[0] == 't';
	PQclear(res);
	if (!ours && other) {
		*error_r = err_setk(ERRK_STATE, "state: opening %s: not an imapferry "
		                    "state database (it has tables of another "
		                    "program)", db->url);
		goto fail;
	}
	if (!ours) {
		memset(&p, 0, sizeof(p));
		pp_int(&p, STATE_SCHEMA_VERSION);
		if (pg_exec_script(db, schema_v4, "creating the schema",
		                   error_r) < 0 ||
		    pg_exec_script(db, schema_v5, "creating the schema",
		                   error_r) < 0 ||
		    pg_run(db, "INSERT INTO imapferry_schema VALUES ($1::int)", &p,
		           "creating the schema", error_r) < 0)
			goto fail;
		version = STATE_SCHEMA_VERSION;
	} else {
		res = pg_exec(db, "SELECT max(version) FROM imapferry_schema",
		              NULL, what, error_r);
		if (res == NULL)
			goto fail;
		version = gi(res, 0, 0);
		PQclear(res);
	}
	if (version > STATE_SCHEMA_VERSION) {
		*error_r = err_setk(ERRK_STATE, "state: opening %s: schema version %"
		                    PRId64 " is newer than this imapferry supports "
		                    "(%d); use a newer imapferry", db->url, version,
		                    STATE_SCHEMA_VERSION);
		goto fail;
	}
	if (version < 4) {
		/* PostgreSQL came with version 4: nothing older exists */
		*error_r = err_setk(ERRK_STATE, "state: opening %s: invalid schema "
		                    "version %" PRId64, db->url, version);
		goto fail;
	}
	/* Migrations from 4 on go here, one step per version. */
	if (version < 5) {
		memset(&p, 0, sizeof(p));
		pp_int(&p, STATE_SCHEMA_VERSION);
		if (pg_exec_script(db, schema_v5, "migrating the schema to "
		                   "version 5", error_r) < 0 ||
		    pg_run(db, "UPDATE imapferry_schema SET version = $1::int", &p,
		           "migrating the schema to version 5", error_r) < 0)
			goto fail;
	}
	if (pg_run(db, "COMMIT", NULL, what, error_r) < 0)
		goto fail;
	db->in_tx = false;
	return 0;
fail:
	db->in_tx = false;
	res = PQexec(db->conn, "ROLLBACK");
	PQclear(res);
	return -1;
}

/* True when the URL carries a password (user:password@ or password=). */
static bool
url_has_password(const char *url)
{
	const char *p = strstr(url, "://");
	const char *end, *at;

	if (p == NULL)
		return false;
	p += 3;
	end = p + strcspn(p, "/?");
	at = NULL;
	for (const char *q = p; q < end; q++)
		if (*q == '@')
			at = q;
	if (at != NULL && memchr(p, ':', (size_t)(at - p)) != NULL)
		return true;
	return strstr(url, "password=") != NULL;
}

int
pg_open(const char *path, struct pg_db **db_r, const char **error_r)
{
	static const char *const keys[] = {
		"dbname", "connect_timeout", "application_name", NULL
	};
	const char *values[] = { path, "10", "imapferry", NULL };
	struct pg_db *db;
	PGresult *res;

	*db_r = NULL;
	if (url_has_password(path)) {
		*error_r = err_setk(ERRK_USAGE, "state: the PostgreSQL URL must not "
		                    "contain a password (it would show in process "
		                    "lists and logs): use PGPASSWORD or ~/.pgpass");
		return -1;
	}
	db = xcalloc(1, sizeof(*db));
	db->url = xstrdup(path);
	db->batch = xcalloc(PG_BATCH_ROWS, sizeof(*db->batch));
	db->conn = PQconnectdbParams(keys, values, 1);
	if (db->conn == NULL || PQstatus(db->conn) != CONNECTION_OK) {
		const char *msg = db->conn != NULL ? PQerrorMessage(db->conn) :
		    "out of memory";
		size_t len = strlen(msg);

		while (len > 0 && msg[len - 1] == '\n')
			len--;
		*error_r = err_setk(ERRK_STATE, "state: connecting to %s: %.*s",
		                    path, (int)len, msg);
		goto fail;
	}
	/* quiet NOTICEs (CREATE ... IF NOT EXISTS) and a fixed time zone */
	res = PQexec(db->conn, "SET client_min_messages = warning");
	PQclear(res);
	/* imapferry never waits for anything but the database inside a
	 * transaction: a transaction idle this long belongs to a process
	 * that was frozen (SIGSTOP, a VM paused) holding a job row's lock,
	 * which would keep every other machine from taking the job over
	 * when its lease expires. PostgreSQL ends such a session. */
	res = PQexec(db->conn, "SET idle_in_transaction_session_timeout = '5s'");
	PQclear(res);
	if (open_schema(db, error_r) < 0)
		goto fail;
	*db_r = db;
	return 0;
fail:
	pg_close(&db);
	return -1;
}

void
pg_close(struct pg_db **dbp)
{
	struct pg_db *db = *dbp;

	if (db == NULL)
		return;
	batch_clear(db);
	free(db->batch);
	if (db->conn != NULL)
		PQfinish(db->conn); /* the server rolls back an open transaction */
	free(db->url);
	free(db);
	*dbp = NULL;
}

/* ---------------------------------------------------------- transactions */

int
pg_begin(struct pg_db *db, const char **error_r)
{
	if (db->in_tx) {
		*error_r = err_setk(ERRK_STATE, "state: beginning a transaction: "
		                    "a transaction is already open");
		return -1;
	}
	if (pg_run(db, "BEGIN", NULL, "beginning a transaction", error_r) < 0)
		return -1;
	db->in_tx = true;
	return 0;
}

int
pg_commit(struct pg_db *db, const char **error_r)
{
	PGresult *res;
	bool rolled_back;

	if (!db->in_tx) {
		*error_r = err_setk(ERRK_STATE, "state: committing: no transaction "
		                    "is open");
		return -1;
	}
	if ((res = pg_exec(db, "COMMIT", NULL, "committing", error_r)) == NULL)
		return -1;
	/* COMMIT of a transaction where a statement failed rolls back */
	rolled_back = strcmp(PQcmdStatus(res), "ROLLBACK") == 0;
	PQclear(res);
	db->in_tx = false;
	if (rolled_back) {
		*error_r = err_setk(ERRK_STATE, "state: committing: the transaction "
		                    "was rolled back after an error");
		return -1;
	}
	return 0;
}

void
pg_rollback(struct pg_db *db)
{
	PGresult *res;

	if (!db->in_tx)
		return;
	batch_clear(db);
	db->in_tx = false;
	res = PQexec(db->conn, "ROLLBACK");
	/* a broken connection: the server rolls back by itself */
	PQclear(res);
}

bool
pg_in_transaction(struct pg_db *db)
{
	return db->in_tx;
}

int
pg_fence_check(struct pg_db *db, int64_t job_id, int64_t token, bool *held_r,
               const char **error_r)
{
	struct pgp p = { 0 };
	PGresult *res;

	pp_int(&p, job_id);
	pp_int(&p, token);
	/* FOR SHARE: a claim (UPDATE, FOR UPDATE SKIP LOCKED) cannot take
	 * the job over before this transaction ends. */
	res = pg_exec(db, "SELECT 1 FROM job WHERE id = $1::bigint AND"
	    " lease_token = $2::bigint AND status = 'running' FOR SHARE", &p,
	    "checking the lease", error_r);
	if (res == NULL)
		return -1;
	*held_r = PQntuples(res) > 0;
	PQclear(res);
	return 0;
}

/* --------------------------------------------------------------- folders */

#define FOLDER_COLUMNS \
	"id, account, src_name, src_uidvalidity, dst_name, dst_uidvalidity, " \
	"src_highestmodseq, src_uidnext, dst_uidnext, complete"

static void
folder_from_row(const PGresult *res, int row, struct state_folder *f)
{
	int64_t c = gi(res, row, 9);

	f->id = gi(res, row, 0);
	f->account = gs(res, row, 1, true);
	f->src_name = gs(res, row, 2, true);
	f->src_uidvalidity = (uint32_t)gi(res, row, 3);
	f->dst_name = gs(res, row, 4, true);
	f->dst_uidvalidity = (uint32_t)gi(res, row, 5);
	f->src_highestmodseq = (uint64_t)gi(res, row, 6);
	f->src_uidnext = (uint32_t)gi(res, row, 7);
	f->dst_uidnext = (uint32_t)gi(res, row, 8);
	f->complete = (c & 1) != 0;
	f->gone_pending = (c & 2) != 0;
}

int
pg_folder_get(struct pg_db *db, const char *account, const char *src_name,
              struct state_folder *f_r, bool *found_r, const char **error_r)
{
	struct pgp p = { 0 };
	PGresult *res;

	memset(f_r, 0, sizeof(*f_r));
	*found_r = false;
	pp_str(&p, account);
	pp_str(&p, src_name);
	res = pg_exec(db, "SELECT " FOLDER_COLUMNS " FROM folder WHERE"
	    " account = $1 AND src_name = $2", &p, "reading folder", error_r);
	if (res == NULL)
		return -1;
	if (PQntuples(res) > 0) {
		folder_from_row(res, 0, f_r);
		*found_r = true;
	}
	PQclear(res);
	return 0;
}

int
pg_folder_put(struct pg_db *db, struct state_folder *f, const char **error_r)
{
	struct pgp p = { 0 };
	PGresult *res;

	pp_str(&p, f->account);
	pp_str(&p, f->src_name);
	pp_int(&p, f->src_uidvalidity);
	pp_str0(&p, f->dst_name);
	pp_int(&p, f->dst_uidvalidity);
	pp_int(&p, (int64_t)f->src_highestmodseq);
	pp_int(&p, f->src_uidnext);
	pp_int(&p, f->dst_uidnext);
	pp_int(&p, (f->complete ? 1 : 0) | (f->gone_pending ? 2 : 0));
	res = pg_exec(db, "INSERT INTO folder (account, src_name,"
	    " src_uidvalidity, dst_name, dst_uidvalidity, src_highestmodseq,"
	    " src_uidnext, dst_uidnext, complete) VALUES ($1, $2, $3, $4, $5,"
	    " $6, $7, $8, $9) ON CONFLICT (account, src_name) DO UPDATE SET"
	    " src_uidvalidity = excluded.src_uidvalidity,"
	    " dst_name = excluded.dst_name,"
	    " dst_uidvalidity = excluded.dst_uidvalidity,"
	    " src_highestmodseq = excluded.src_highestmodseq,"
	    " src_uidnext = excluded.src_uidnext,"
	    " dst_uidnext = excluded.dst_uidnext,"
	    " complete = excluded.complete RETURNING id", &p, "storing folder",
	    error_r);
	if (res == NULL)
		return -1;
	f->id = gi(res, 0, 0);
	PQclear(res);
	return 0;
}

int
pg_folder_list(struct pg_db *db, const char *account,
               struct state_folder **folders_r, size_t *count_r,
               const char **error_r)
{
	struct pgp p = { 0 };
	PGresult *res;
	int n;

	*folders_r = NULL;
	*count_r = 0;
	pp_str(&p, account);
	res = pg_exec(db, "SELECT " FOLDER_COLUMNS " FROM folder WHERE"
	    " account = $1 ORDER BY src_name", &p, "listing folders", error_r);
	if (res == NULL)
		return -1;
	n = PQntuples(res);
	if (n > 0) {
		*folders_r = xcalloc((size_t)n, sizeof(**folders_r));
		for (int i = 0; i < n; i++)
			folder_from_row(res, i, &(*folders_r)[i]);
	}
	*count_r = (size_t)n;
	PQclear(res);
	return 0;
}

int
pg_folder_clear_messages(struct pg_db *db, int64_t folder_id,
                         const char **error_r)
{
	struct pgp p = { 0 };

	pp_int(&p, folder_id);
	return pg_run(db, "DELETE FROM msg WHERE folder_id = $1::bigint", &p,
	              "clearing message mappings", error_r);
}

int
pg_folder_delete(struct pg_db *db, int64_t folder_id, const char **error_r)
{
	struct pgp p = { 0 };

	pp_int(&p, folder_id);
	return pg_run(db, "DELETE FROM folder WHERE id = $1::bigint", &p,
	              "deleting folder", error_r);
}

/* -------------------------------------------------------------- messages */

int
pg_msgs_load(struct pg_db *db, int64_t folder_id, uint32_t lo, uint32_t hi,
             struct state_msg **msgs_r, size_t *count_r, const char **error_r)
{
	struct pgp p = { 0 };
	struct state_msg *msgs;
	PGresult *res;
	size_t arena_size = 0, used = 0;
	char *arena;
	int n;

	*msgs_r = NULL;
	*count_r = 0;
	pp_int(&p, folder_id);
	pp_int(&p, lo);
	pp_int(&p, hi);
	/* one statement: one snapshot */
	res = pg_exec(db, "SELECT src_uid, dst_uid, flags, size, internaldate,"
	    " fingerprint FROM msg WHERE folder_id = $1::bigint AND src_uid"
	    " BETWEEN $2::bigint AND $3::bigint ORDER BY src_uid", &p, "loading message mappings", error_r);
	if (res == NULL)
		return -1;
	n = PQntuples(res);
	if (n == 0) {
		PQclear(res);
		return 0;
	}
	for (int i = 0; i < n; i++) {
		arena_size += (size_t)PQgetlength(res, i, 2) + 1;
		if (!PQgetisnull(res, i, 5))
			arena_size += (size_t)PQgetlength(res, i, 5) + 1;
	}
	/* One block: the array, then every string (state.h). */
	msgs = xmalloc((size_t)n * sizeof(*msgs) + arena_size);
	arena = (char *)(msgs + n);
	for (int i = 0; i < n; i++) {
		struct state_msg *m = &msgs[i];
		size_t len = (size_t)PQgetlength(res, i, 2);

		m->src_uid = (uint32_t)gi(res, i, 0);
		m->dst_uid = (uint32_t)gi(res, i, 1);
		m->size = (uint64_t)gi(res, i, 3);
		m->internaldate = gi(res, i, 4);
		m->flags = arena + used;
		memcpy(m->flags, PQgetvalue(res, i, 2), len);
		m->flags[len] = '\0';
		used += len + 1;
		m->fingerprint = NULL;
		if (!PQgetisnull(res, i, 5)) {
			len = (size_t)PQgetlength(res, i, 5);
			m->fingerprint = arena + used;
			memcpy(m->fingerprint, PQgetvalue(res, i, 5), len);
			m->fingerprint[len] = '\0';
			used += len + 1;
		}
	}
	PQclear(res);
	*msgs_r = msgs;
	*count_r = (size_t)n;
	return 0;
}

static int
require_transaction(struct pg_db *db, const char *what, const char **error_r)
{
	if (db->in_tx)
		return 0;
	*error_r = err_setk(ERRK_STATE, "state: %s: called outside a transaction "
	                    "(call state_begin() first)", what);
	return -1;
}

int
pg_msg_put(struct pg_db *db, int64_t folder_id, const struct state_msg *m,
           const char **error_r)
{
	struct pg_batch_row *r;

	if (require_transaction(db, "inserting message mapping", error_r) < 0)
		return -1;
	/* one INSERT may not touch a row twice: a UID out of order or
	 * another folder starts a new batch */
	if (db->n_batch > 0 &&
	    (db->n_batch == PG_BATCH_ROWS || db->batch_folder != folder_id ||
	     m->src_uid <= db->batch[db->n_batch - 1].src_uid) &&
	    flush_batch(db, error_r) < 0)
		return -1;
	db->batch_folder = folder_id;
	r = &db->batch[db->n_batch++];
	r->src_uid = m->src_uid;
	r->dst_uid = m->dst_uid;
	r->flags = xstrdup(m->flags != NULL ? m->flags : "");
	r->fingerprint = m->fingerprint != NULL ? xstrdup(m->fingerprint) : NULL;
	r->size = m->size;
	r->internaldate = m->internaldate;
	return 0;
}

int
pg_msg_set_flags(struct pg_db *db, int64_t folder_id, uint32_t src_uid,
                 const char *flags, const char **error_r)
{
	const char *what = "updating message flags";
	struct pgp p = { 0 };
	int64_t rows;

	if (require_transaction(db, what, error_r) < 0)
		return -1;
	pp_int(&p, folder_id);
	pp_int(&p, src_uid);
	pp_str0(&p, flags);
	if (pg_run_rows(db, "UPDATE msg SET flags = $3 WHERE folder_id ="
	    " $1::bigint AND src_uid = $2::bigint", &p, what, &rows,
	    error_r) < 0)
		return -1;
	if (rows == 0) {
		*error_r = err_setk(ERRK_STATE, "state: %s: no mapping for UID %"
		                    PRIu32 " in folder %" PRId64, what, src_uid,
		                    folder_id);
		return -1;
	}
	return 0;
}

int
pg_msg_delete(struct pg_db *db, int64_t folder_id, uint32_t src_uid,
              const char **error_r)
{
	const char *what = "deleting message mapping";
	struct pgp p = { 0 };

	if (require_transaction(db, what, error_r) < 0)
		return -1;
	pp_int(&p, folder_id);
	pp_int(&p, src_uid);
	return pg_run(db, "DELETE FROM msg WHERE folder_id = $1::bigint AND"
	              " src_uid = $2::bigint", &p, what, error_r);
}

/* -------------------------------------------------------------- failures */

int
pg_failure_put(struct pg_db *db, const char *account, const char *src_folder,
               uint32_t src_uid, enum state_scope scope, const char *reason,
               const char **error_r)
{
	struct pgp p = { 0 };

	pp_str(&p, account);
	pp_str0(&p, src_folder);
	pp_int(&p, src_uid);
	pp_int(&p, (int64_t)scope);
	pp_str0(&p, reason);
	pp_int(&p, (int64_t)time(NULL));
	return pg_run(db, "INSERT INTO failure (account, folder, src_uid, scope,"
	    " reason, last_time, attempts) VALUES ($1, $2, $3, $4, $5, $6, 1)"
	    " ON CONFLICT (account, folder, src_uid) DO UPDATE SET"
	    " scope = excluded.scope, reason = excluded.reason,"
	    " last_time = excluded.last_time,"
	    " attempts = failure.attempts + 1", &p, "recording failure",
	    error_r);
}

int
pg_failure_clear(struct pg_db *db, const char *account, const char *src_folder,
                 uint32_t src_uid, const char **error_r)
{
	struct pgp p = { 0 };

	pp_str(&p, account);
	pp_str0(&p, src_folder);
	pp_int(&p, src_uid);
	return pg_run(db, "DELETE FROM failure WHERE account = $1 AND"
	    " folder = $2 AND src_uid = $3::bigint", &p, "clearing failure",
	    error_r);
}

int
pg_failure_list(struct pg_db *db, const char *account,
                struct state_failure **f_r, size_t *count_r,
                const char **error_r)
{
	struct pgp p = { 0 };
	PGresult *res;
	int n;

	*f_r = NULL;
	*count_r = 0;
	pp_str(&p, account);
	res = pg_exec(db, "SELECT account, folder, src_uid, scope, reason,"
	    " last_time, attempts FROM failure WHERE $1::text IS NULL OR"
	    " account = $1 ORDER BY account, folder, src_uid", &p,
	    "listing failures", error_r);
	if (res == NULL)
		return -1;
	n = PQntuples(res);
	if (n > 0)
		*f_r = xcalloc((size_t)n, sizeof(**f_r));
	for (int i = 0; i < n; i++) {
		struct state_failure *f = &(*f_r)[i];
		int64_t scope = gi(res, i, 3);

		f->account = gs(res, i, 0, true);
		f->folder = gs(res, i, 1, true);
		f->src_uid = (uint32_t)gi(res, i, 2);
		f->scope = scope >= STATE_SCOPE_MESSAGE && scope <= STATE_SCOPE_RUN ?
		    (enum state_scope)scope : STATE_SCOPE_RUN;
		f->reason = gs(res, i, 4, true);
		f->when = gi(res, i, 5);
		f->attempts = gu(res, i, 6);
	}
	*count_r = (size_t)n;
	PQclear(res);
	return 0;
}

int
pg_meta_set(struct pg_db *db, const char *key, const char *value,
            const char **error_r)
{
	struct pgp p = { 0 };

	pp_str(&p, key);
	if (value == NULL)
		return pg_run(db, "DELETE FROM meta WHERE key = $1", &p,
		              "storing run metadata", error_r);
	pp_str(&p, value);
	return pg_run(db, "INSERT INTO meta (key, value) VALUES ($1, $2)"
	    " ON CONFLICT (key) DO UPDATE SET value = excluded.value", &p,
	    "storing run metadata", error_r);
}

int
pg_meta_get(struct pg_db *db, const char *key, char **value_r,
            const char **error_r)
{
	struct pgp p = { 0 };
	PGresult *res;

	*value_r = NULL;
	pp_str(&p, key);
	res = pg_exec(db, "SELECT value FROM meta WHERE key = $1", &p,
	              "reading run metadata", error_r);
	if (res == NULL)
		return -1;
	if (PQntuples(res) > 0)
		*value_r = gs(res, 0, 0, true);
	PQclear(res);
	return 0;
}

/* ------------------------------------------------------------------ runs */

#define RUN_PROGRESS_COLUMNS \
	"workers, status, error, finished, heartbeat, pid, est_seconds," \
	" rate_messages, rate_bytes, eta_seconds, plan"

static void
pp_run_progress(struct pgp *p, const struct state_run *r)
{
	pp_int(p, r->workers);
	pp_str0(p, r->status);
	pp_str0(p, r->error);
	pp_int(p, r->finished);
	pp_int(p, r->heartbeat);
	pp_int(p, r->pid);
	pp_dbl(p, r->est_seconds);
	pp_dbl(p, r->rate_messages);
	pp_dbl(p, r->rate_bytes);
	pp_dbl(p, r->eta_seconds);
	pp_str0(p, r->plan);
}

int
pg_run_insert(struct pg_db *db, struct state_run *r, const char **error_r)
{
	struct pgp p = { 0 };
	PGresult *res;

	pp_str0(&p, r->pass);
	pp_str0(&p, r->src);
	pp_str0(&p, r->dst);
	pp_str0(&p, r->folders);
	pp_int(&p, r->started);
	pp_run_progress(&p, r);
	res = pg_exec(db, "INSERT INTO run (pass, src, dst, folders, started, "
	    RUN_PROGRESS_COLUMNS ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,"
	    " $10, $11, $12, $13, $14, $15, $16) RETURNING id", &p,
	    "storing run", error_r);
	if (res == NULL)
		return -1;
	r->id = gi(res, 0, 0);
	PQclear(res);
	return 0;
}

int
pg_run_update(struct pg_db *db, const struct state_run *r,
              const char **error_r)
{
	struct pgp p = { 0 };

	pp_int(&p, r->id);
	pp_run_progress(&p, r);
	return pg_run(db, "UPDATE run SET (" RUN_PROGRESS_COLUMNS ") = ($2, $3,"
	    " $4, $5, $6, $7, $8, $9, $10, $11, $12) WHERE id = $1::bigint", &p,
	    "updating run", error_r);
}

int
pg_run_get(struct pg_db *db, int64_t id, const char *pass,
           struct state_run *r_r, bool *found_r, const char **error_r)
{
	struct pgp p = { 0 };
	PGresult *res;

	memset(r_r, 0, sizeof(*r_r));
	*found_r = false;
	pp_int(&p, id);
	pp_str(&p, pass);
	res = pg_exec(db, "SELECT id, pass, src, dst, folders, workers, status,"
	    " error, started, finished, heartbeat, pid, est_seconds,"
	    " rate_messages, rate_bytes, eta_seconds, plan FROM run"
	    " WHERE ($1::bigint > 0 AND id = $1::bigint) OR"
	    " ($1::bigint <= 0 AND ($2::text IS NULL OR pass = $2::text))"
	    " ORDER BY id DESC LIMIT 1", &p, "reading run", error_r);
	if (res == NULL)
		return -1;
	if (PQntuples(res) > 0) {
		r_r->id = gi(res, 0, 0);
		r_r->pass = gs(res, 0, 1, true);
		r_r->src = gs(res, 0, 2, true);
		r_r->dst = gs(res, 0, 3, true);
		r_r->folders = gs(res, 0, 4, true);
		r_r->workers = gu(res, 0, 5);
		r_r->status = gs(res, 0, 6, true);
		r_r->error = gs(res, 0, 7, true);
		r_r->started = gi(res, 0, 8);
		r_r->finished = gi(res, 0, 9);
		r_r->heartbeat = gi(res, 0, 10);
		r_r->pid = gi(res, 0, 11);
		r_r->est_seconds = gd(res, 0, 12);
		r_r->rate_messages = gd(res, 0, 13);
		r_r->rate_bytes = gd(res, 0, 14);
		r_r->eta_seconds = gd(res, 0, 15);
		r_r->plan = gs(res, 0, 16, true);
		*found_r = true;
	}
	PQclear(res);
	return 0;
}

/* ------------------------------------------------------------------ jobs */

#define JOB_PROGRESS_COLUMNS \
	"status, attempts, errors, messages, bytes, skipped, failed," \
	" folders_failed, error, scope, started, finished, updated," \
	" not_before, seconds"
/* struct state_bodies (schema 5), in pp_job_bodies() order */
#define JOB_BODIES_COLUMNS \
	"bodies_spool, bodies_imap, bodies_missing, bodies_size," \
	" bodies_uidvalidity, bodies_error"
#define JOB_BODIES_COLUMNS_Q \
	"job.bodies_spool, job.bodies_imap, job.bodies_missing," \
	" job.bodies_size, job.bodies_uidvalidity, job.bodies_error"
/* Every column, qualified (the claim's RETURNING has other tables). */
#define JOB_ALL_COLUMNS \
	"job.id, job.run_id, job.seq, job.account, job.src_user," \
	" job.dst_user, job.part, job.parts, job.folders, job.exclude," \
	" job.uid_lo, job.uid_hi, job.est_messages, job.est_bytes," \
	" job.est_seconds, job.status, job.attempts, job.errors," \
	" job.messages, job.bytes, job.skipped, job.failed," \
	" job.folders_failed, job.error, job.scope, job.started," \
	" job.finished, job.updated, job.not_before, job.seconds," \
	" job.src_slot, job.dst_slot, job.claimed_by, job.lease_token," \
	" job.lease_expires, " JOB_BODIES_COLUMNS_Q

static void
pp_job_progress(struct pgp *p, const struct state_job *j)
{
	pp_str(p, state_job_status_name(j->status));
	pp_int(p, j->attempts);
	pp_int(p, j->errors);
	pp_int(p, (int64_t)j->messages);
	pp_int(p, (int64_t)j->bytes);
	pp_int(p, (int64_t)j->skipped);
	pp_int(p, (int64_t)j->failed);
	pp_int(p, j->folders_failed);
	pp_str0(p, j->error);
	pp_int(p, j->scope);
	pp_int(p, j->started);
	pp_int(p, j->finished);
	pp_int(p, j->updated);
	pp_int(p, j->not_before);
	pp_dbl(p, j->seconds);
}

static void
pp_job_bodies(struct pgp *p, const struct state_job *j)
{
	pp_int(p, (int64_t)j->bodies.spool);
	pp_int(p, (int64_t)j->bodies.imap);
	pp_int(p, (int64_t)j->bodies.missing);
	pp_int(p, (int64_t)j->bodies.size);
	pp_int(p, (int64_t)j->bodies.uidvalidity);
	pp_int(p, (int64_t)j->bodies.error);
}

static void
job_from_row(const PGresult *res, int i, struct state_job *j)
{
	char *status;

	memset(j, 0, sizeof(*j));
	j->id = gi(res, i, 0);
	j->run_id = gi(res, i, 1);
	j->seq = gu(res, i, 2);
	j->account = gs(res, i, 3, true);
	j->src_user = gs(res, i, 4, true);
	j->dst_user = gs(res, i, 5, true);
	j->part = gu(res, i, 6);
	j->parts = gu(res, i, 7);
	j->folders = gs(res, i, 8, true);
	j->exclude = gs(res, i, 9, true);
	j->uid_lo = gu(res, i, 10);
	j->uid_hi = gu(res, i, 11);
	j->est_messages = (uint64_t)gi(res, i, 12);
	j->est_bytes = (uint64_t)gi(res, i, 13);
	j->est_seconds = gd(res, i, 14);
	status = gs(res, i, 15, true);
	j->status = state_job_status_parse(status);
	free(status);
	j->attempts = gu(res, i, 16);
	j->errors = gu(res, i, 17);
	j->messages = (uint64_t)gi(res, i, 18);
	j->bytes = (uint64_t)gi(res, i, 19);
	j->skipped = (uint64_t)gi(res, i, 20);
	j->failed = (uint64_t)gi(res, i, 21);
	j->folders_failed = gu(res, i, 22);
	j->error = gs(res, i, 23, true);
	j->scope = (int)gi(res, i, 24);
	j->started = gi(res, i, 25);
	j->finished = gi(res, i, 26);
	j->updated = gi(res, i, 27);
	j->not_before = gi(res, i, 28);
	j->seconds = gd(res, i, 29);
	j->src_slot = gs(res, i, 30, true);
	j->dst_slot = gs(res, i, 31, true);
	j->claimed_by = gs(res, i, 32, true);
	j->lease_token = gi(res, i, 33);
	j->lease_expires = gi(res, i, 34);
	j->bodies.spool = (uint64_t)gi(res, i, 35);
	j->bodies.imap = (uint64_t)gi(res, i, 36);
	j->bodies.missing = (uint64_t)gi(res, i, 37);
	j->bodies.size = (uint64_t)gi(res, i, 38);
	j->bodies.uidvalidity = (uint64_t)gi(res, i, 39);
	j->bodies.error = (uint64_t)gi(res, i, 40);
}

int
pg_job_insert(struct pg_db *db, struct state_job *j, const char **error_r)
{
	/* 37 parameters: more than struct pgp holds */
	const char *v[37];
	char num[37][32];
	struct pgp p = { 0 };
	PGresult *res;
	int k = 0;

#define VI(x) (snprintf(num[k], sizeof(num[k]), "%" PRId64, (int64_t)(x)), \
               v[k] = num[k], k++)
#define VD(x) (snprintf(num[k], sizeof(num[k]), "%.17g", (double)(x)), \
               v[k] = num[k], k++)
#define VS(x) (v[k] = (x) != NULL ? (x) : "", k++)
	VI(j->run_id); VI(j->seq); VS(j->account); VS(j->src_user);
	VS(j->dst_user); VI(j->part); VI(j->parts); VS(j->folders);
	VS(j->exclude); VI(j->uid_lo); VI(j->uid_hi);
	VI((int64_t)j->est_messages); VI((int64_t)j->est_bytes);
	VD(j->est_seconds);
	pp_job_progress(&p, j);
	pp_job_bodies(&p, j);
	for (int i = 0; i < p.n - 6; i++) {
		if (p.v[i] == p.num[i]) {
			memcpy(num[k], p.num[i], sizeof(num[k]));
			v[k] = num[k];
		} else {
			v[k] = p.v[i];
		}
		k++;
	}
	VS(j->src_slot); VS(j->dst_slot);
	for (int i = p.n - 6; i < p.n; i++) {
		memcpy(num[k], p.num[i], sizeof(num[k]));
		v[k] = num[k];
		k++;
	}
#undef VI
#undef VD
#undef VS
	res = pg_exec_n(db, "INSERT INTO job (run_id, seq, account, src_user,"
	    " dst_user, part, parts, folders, exclude, uid_lo, uid_hi,"
	    " est_messages, est_bytes, est_seconds, " JOB_PROGRESS_COLUMNS ","
	    " src_slot, dst_slot, " JOB_BODIES_COLUMNS ") VALUES ($1, $2, $3,"
	    " $4, $5, $6, $7, $8, $9,"
	    " $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22,"
	    " $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34, $35,"
	    " $36, $37) RETURNING id", k, v,
	    "storing job", error_r);
	if (res == NULL)
		return -1;
	j->id = gi(res, 0, 0);
	PQclear(res);
	return 0;
}

int
pg_job_update(struct pg_db *db, const struct state_job *j,
              const char **error_r)
{
	struct pgp p = { 0 };

	pp_int(&p, j->id);
	pp_job_progress(&p, j);
	pp_job_bodies(&p, j);
	return pg_run(db, "UPDATE job SET (" JOB_PROGRESS_COLUMNS ", "
	    JOB_BODIES_COLUMNS ") = ($2, $3, $4, $5, $6, $7, $8, $9, $10, $11,"
	    " $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)"
	    " WHERE id = $1::bigint", &p, "updating job", error_r);
}

int
pg_job_progress(struct pg_db *db, int64_t id, unsigned attempts,
                uint64_t messages, uint64_t bytes, int64_t updated,
                const char **error_r)
{
	struct pgp p = { 0 };

	pp_int(&p, id);
	pp_int(&p, attempts);
	pp_int(&p, (int64_t)messages);
	pp_int(&p, (int64_t)bytes);
	pp_int(&p, updated);
	return pg_run(db, "UPDATE job SET messages = $3, bytes = $4,"
	    " updated = $5 WHERE id = $1::bigint AND attempts = $2 AND"
	    " status = 'running'", &p, "updating job progress", error_r);
}

int
pg_job_requeue(struct pg_db *db, int64_t run_id, const char **error_r)
{
	struct pgp p = { 0 };

	pp_int(&p, run_id);
	return pg_run(db, "UPDATE job SET status = 'pending', not_before = 0,"
	    " lease_expires = 0 WHERE run_id = $1::bigint AND"
	    " status = 'running'", &p, "requeueing jobs", error_r);
}

int
pg_job_list(struct pg_db *db, int64_t run_id, struct state_job **jobs_r,
            size_t *count_r, const char **error_r)
{
	struct pgp p = { 0 };
	PGresult *res;
	int n;

	*jobs_r = NULL;
	*count_r = 0;
	pp_int(&p, run_id);
	res = pg_exec(db, "SELECT " JOB_ALL_COLUMNS " FROM job WHERE"
	    " run_id = $1::bigint ORDER BY seq", &p, "listing jobs", error_r);
	if (res == NULL)
		return -1;
	n = PQntuples(res);
	if (n > 0)
		*jobs_r = xcalloc((size_t)n, sizeof(**jobs_r));
	for (int i = 0; i < n; i++)
		job_from_row(res, i, &(*jobs_r)[i]);
	*count_r = (size_t)n;
	PQclear(res);
	return 0;
}

/* ----------------------------------------------------------------- parts */

int
pg_part_done(struct pg_db *db, int64_t run_id, const char *account,
             const char *folder, uint32_t uid_lo, uint32_t uid_hi,
             uint32_t uidnext, uint64_t modseq, const char **error_r)
{
	struct pgp p = { 0 };

	pp_int(&p, run_id);
	pp_str(&p, account);
	pp_str(&p, folder);
	pp_int(&p, uid_lo);
	pp_int(&p, uid_hi);
	pp_int(&p, uidnext);
	pp_int(&p, (int64_t)modseq);
	return pg_run(db, "INSERT INTO part (run_id, account, folder, uid_lo,"
	    " uid_hi, uidnext, modseq) VALUES ($1, $2, $3, $4, $5, $6, $7)"
	    " ON CONFLICT (run_id, account, folder, uid_lo) DO UPDATE SET"
	    " uid_hi = excluded.uid_hi, uidnext = excluded.uidnext,"
	    " modseq = excluded.modseq", &p,
	    "recording a finished UID range", error_r);
}

int
pg_part_cover(struct pg_db *db, int64_t run_id, const char *account,
              const char *folder, bool *complete_r, uint32_t *uidnext_r,
              uint64_t *modseq_r, const char **error_r)
{
	struct pgp p = { 0 };
	PGresult *res;
	uint64_t next = 1;

	*complete_r = false;
	*uidnext_r = 0;
	*modseq_r = 0;
	pp_int(&p, run_id);
	pp_str(&p, account);
	pp_str(&p, folder);
	res = pg_exec(db, "SELECT uid_lo, uid_hi, uidnext, modseq FROM part"
	    " WHERE run_id = $1::bigint AND account = $2 AND folder = $3"
	    " ORDER BY uid_lo", &p, "reading the finished UID ranges", error_r);
	if (res == NULL)
		return -1;
	for (int i = 0; i < PQntuples(res); i++) {
		uint64_t lo = (uint64_t)gi(res, i, 0);
		uint64_t hi = (uint64_t)gi(res, i, 1);
		uint32_t un = (uint32_t)gi(res, i, 2);
		uint64_t ms = (uint64_t)gi(res, i, 3);

		if (lo <= next && hi + 1 > next)
			next = hi + 1;
		if (*uidnext_r == 0 || (un != 0 && un < *uidnext_r))
			*uidnext_r = un;
		if (*modseq_r == 0 || (ms != 0 && ms < *modseq_r))
			*modseq_r = ms;
	}
	PQclear(res);
	*complete_r = next > UINT32_MAX;
	return 0;
}

/* ---------------------------------------------------------------- claims */

static int
claim_locked(struct pg_db *db, const struct state_claim *c,
             struct state_job *j_r, bool *found_r, size_t *busy_r,
             const char **error_r)
{
	const char *what = "claiming a job";
	struct pgp p = { 0 };
	PGresult *res;

	/* Claims of one run one at a time: the cap counts below then see
	 * every earlier claim, so they are exact across machines. */
	pp_int(&p, PG_LOCK_CLASS);
	pp_int(&p, c->run_id);
	if (pg_run(db, "SELECT pg_advisory_xact_lock($1::int,"
	           " ($2::bigint % 2147483647)::int)", &p, what, error_r) < 0)
		return -1;
	memset(&p, 0, sizeof(p));
	pp_int(&p, c->run_id);
	pp_str0(&p, c->machine);
	pp_int(&p, c->max_src);
	pp_int(&p, c->max_dst);
	pp_int(&p, c->lease_seconds > 0 ? c->lease_seconds : 1);
	res = pg_exec(db,
	    "WITH clock AS (SELECT extract(epoch FROM now())::bigint AS t),"
	    " cand AS (SELECT j.id, j.claimed_by AS prev,"
	    "  j.status AS prev_status FROM job j, clock"
	    "  WHERE j.run_id = $1::bigint AND"
	    "  ((j.status = 'pending' AND j.not_before <= clock.t) OR"
	    "   (j.status = 'running' AND j.lease_expires < clock.t))"
	    "  AND ($3::int = 0 OR j.src_slot = '' OR (SELECT count(*)"
	    "   FROM job r WHERE r.run_id = $1::bigint AND"
	    "   r.status = 'running' AND r.lease_expires >= clock.t AND"
	    "   r.src_slot = j.src_slot) < $3::int)"
	    "  AND ($4::int = 0 OR j.dst_slot = '' OR (SELECT count(*)"
	    "   FROM job r WHERE r.run_id = $1::bigint AND"
	    "   r.status = 'running' AND r.lease_expires >= clock.t AND"
	    "   r.dst_slot = j.dst_slot) < $4::int)"
	    "  ORDER BY j.seq LIMIT 1 FOR UPDATE OF j SKIP LOCKED)"
	    " UPDATE job SET status = 'running', attempts = job.attempts + 1,"
	    "  claimed_by = $2, lease_token = nextval('lease_token_seq'),"
	    "  lease_expires = clock.t + $5::bigint, started = clock.t,"
	    "  finished = 0, updated = clock.t"
	    " FROM cand, clock WHERE job.id = cand.id"
	    " RETURNING " JOB_ALL_COLUMNS ", cand.prev, cand.prev_status",
	    &p, what, error_r);
	if (res == NULL)
		return -1;
	if (PQntuples(res) > 0) {
		char *prev = gs(res, 0, 41, true);
		bool stolen = strcmp(PQgetvalue(res, 0, 42), "running") == 0 &&
		    prev[0] != '\0';

		job_from_row(res, 0, j_r);
		*found_r = true;
		PQclear(res);
		if (stolen) {
			memset(&p, 0, sizeof(p));
			pp_int(&p, c->run_id);
			pp_str(&p, prev);
			if (pg_run(db, "UPDATE machine SET lost_leases ="
			    " lost_leases + 1 WHERE run_id = $1::bigint AND"
			    " name = $2", &p, what, error_r) < 0) {
				free(prev);
				return -1;
			}
		}
		free(prev);
	} else {
		PQclear(res);
	}
	memset(&p, 0, sizeof(p));
	pp_int(&p, c->run_id);
	res = pg_exec(db, "SELECT count(*) FROM job WHERE run_id = $1::bigint"
	    " AND status IN ('pending', 'running')", &p, what, error_r);
	if (res == NULL)
		return -1;
	*busy_r = (size_t)gi(res, 0, 0);
	PQclear(res);
	return 0;
}

int
pg_job_claim(struct pg_db *db, const struct state_claim *c,
             struct state_job *j_r, bool *found_r, size_t *busy_r,
             const char **error_r)
{
	bool own = !db->in_tx;

	memset(j_r, 0, sizeof(*j_r));
	*found_r = false;
	*busy_r = 0;
	if (own && pg_begin(db, error_r) < 0)
		return -1;
	if (claim_locked(db, c, j_r, found_r, busy_r, error_r) < 0)
		goto fail;
	if (own && pg_commit(db, error_r) < 0)
		goto fail;
	return 0;
fail:
	if (own)
		pg_rollback(db);
	if (*found_r)
		state_job_free(j_r);
	*found_r = false;
	return -1;
}

int
pg_job_heartbeat(struct pg_db *db, int64_t id, int64_t token, unsigned lease,
                 uint64_t messages, uint64_t bytes, int64_t updated,
                 bool *lost_r, const char **error_r)
{
	struct pgp p = { 0 };
	int64_t rows;

	*lost_r = false;
	pp_int(&p, id);
	pp_int(&p, token);
	pp_int(&p, lease);
	pp_int(&p, (int64_t)messages);
	pp_int(&p, (int64_t)bytes);
	pp_int(&p, updated);
	if (pg_run_rows(db, "UPDATE job SET lease_expires ="
	    " extract(epoch FROM now())::bigint + $3::bigint, messages = $4,"
	    " bytes = $5, updated = $6 WHERE id = $1::bigint AND"
	    " lease_token = $2::bigint AND status = 'running'", &p,
	    "extending a lease", &rows, error_r) < 0)
		return -1;
	*lost_r = rows == 0;
	return 0;
}

int
pg_job_release(struct pg_db *db, const struct state_job *j, int64_t token,
               bool *lost_r, const char **error_r)
{
	struct pgp p = { 0 };
	int64_t rows;

	*lost_r = false;
	pp_int(&p, j->id);
	pp_job_progress(&p, j);
	pp_int(&p, token);
	pp_job_bodies(&p, j);
	if (pg_run_rows(db, "UPDATE job SET (" JOB_PROGRESS_COLUMNS ", "
	    JOB_BODIES_COLUMNS ") = ($2, $3, $4, $5, $6, $7, $8, $9, $10, $11,"
	    " $12, $13, $14, $15, $16, $18, $19, $20, $21, $22, $23),"
	    " lease_expires = 0 WHERE id = $1::bigint AND"
	    " lease_token = $17::bigint AND status = 'running'", &p,
	    "ending a job's attempt", &rows, error_r) < 0)
		return -1;
	*lost_r = rows == 0;
	return 0;
}

int
pg_job_fail_account(struct pg_db *db, int64_t run_id, const char *account,
                    const char *error, const char **error_r)
{
	struct pgp p = { 0 };

	pp_int(&p, run_id);
	pp_str(&p, account);
	pp_int(&p, (int64_t)time(NULL));
	pp_str0(&p, error);
	pp_int(&p, STATE_SCOPE_RUN);
	return pg_run(db, "UPDATE job SET status = 'failed', finished = $3,"
	    " updated = $3, error = $4, scope = $5 WHERE run_id = $1::bigint"
	    " AND account = $2 AND status = 'pending'", &p,
	    "failing an account's jobs", error_r);
}

int
pg_job_retry_failed(struct pg_db *db, int64_t run_id, const char **error_r)
{
	struct pgp p = { 0 };

	pp_int(&p, run_id);
	return pg_run(db, "UPDATE job SET status = 'pending', errors = 0,"
	    " not_before = 0 WHERE run_id = $1::bigint AND status = 'failed'",
	    &p, "retrying failed jobs", error_r);
}

/* -------------------------------------------------------------- machines */

int
pg_machine_put(struct pg_db *db, const struct state_machine *m,
               const char **error_r)
{
	struct pgp p = { 0 };

	pp_int(&p, m->run_id);
	pp_str0(&p, m->name);
	pp_str0(&p, m->host);
	pp_int(&p, m->pid);
	pp_str0(&p, m->status);
	pp_int(&p, m->started);
	pp_int(&p, m->workers);
	pp_int(&p, m->jobs_running);
	pp_int(&p, m->jobs_done);
	pp_int(&p, (int64_t)m->messages);
	pp_int(&p, (int64_t)m->bytes);
	pp_dbl(&p, m->rate_messages);
	pp_dbl(&p, m->rate_bytes);
	return pg_run(db, "INSERT INTO machine (run_id, name, host, pid, status,"
	    " started, heartbeat, workers, jobs_running, jobs_done, messages,"
	    " bytes, rate_messages, rate_bytes, lost_leases) VALUES ($1, $2, $3,"
	    " $4, $5, $6, extract(epoch FROM now())::bigint, $7, $8, $9, $10,"
	    " $11, $12, $13, 0) ON CONFLICT (run_id, name) DO UPDATE SET"
	    " host = excluded.host, pid = excluded.pid, status = excluded.status,"
	    " started = excluded.started, heartbeat = excluded.heartbeat,"
	    " workers = excluded.workers, jobs_running = excluded.jobs_running,"
	    " jobs_done = excluded.jobs_done, messages = excluded.messages,"
	    " bytes = excluded.bytes, rate_messages = excluded.rate_messages,"
	    " rate_bytes = excluded.rate_bytes", &p, "storing a machine",
	    error_r);
}

int
pg_machine_list(struct pg_db *db, int64_t run_id, struct state_machine **m_r,
                size_t *count_r, const char **error_r)
{
	struct pgp p = { 0 };
	PGresult *res;
	int n;

	*m_r = NULL;
	*count_r = 0;
	pp_int(&p, run_id);
	res = pg_exec(db, "SELECT run_id, name, host, pid, status, started,"
	    " heartbeat, workers, jobs_running, jobs_done, messages, bytes,"
	    " rate_messages, rate_bytes, lost_leases,"
	    " extract(epoch FROM now())::bigint - heartbeat FROM machine"
	    " WHERE run_id = $1::bigint ORDER BY name", &p, "listing machines",
	    error_r);
	if (res == NULL)
		return -1;
	n = PQntuples(res);
	if (n > 0)
		*m_r = xcalloc((size_t)n, sizeof(**m_r));
	for (int i = 0; i < n; i++) {
		struct state_machine *m = &(*m_r)[i];

		m->run_id = gi(res, i, 0);
		m->name = gs(res, i, 1, true);
		m->host = gs(res, i, 2, true);
		m->pid = gi(res, i, 3);
		m->status = gs(res, i, 4, true);
		m->started = gi(res, i, 5);
		m->heartbeat = gi(res, i, 6);
		m->workers = gu(res, i, 7);
		m->jobs_running = gu(res, i, 8);
		m->jobs_done = gu(res, i, 9);
		m->messages = (uint64_t)gi(res, i, 10);
		m->bytes = (uint64_t)gi(res, i, 11);
		m->rate_messages = gd(res, i, 12);
		m->rate_bytes = gd(res, i, 13);
		m->lost_leases = gu(res, i, 14);
		m->age = gi(res, i, 15);
	}
	*count_r = (size_t)n;
	PQclear(res);
	return 0;
}

/* ------------------------------------------------------- locks, wake-ups */

int
pg_run_lock(struct pg_db *db, const char *key, const char **error_r)
{
	struct pgp p = { 0 };

	pp_int(&p, PG_LOCK_CLASS);
	pp_str(&p, key);
	return pg_run(db, "SELECT pg_advisory_lock($1::int, hashtext($2))", &p,
	              "waiting for the other machines' plan", error_r);
}

void
pg_run_unlock(struct pg_db *db, const char *key)
{
	struct pgp p = { 0 };
	const char *error;

	pp_int(&p, PG_LOCK_CLASS);
	pp_str(&p, key);
	if (pg_run(db, "SELECT pg_advisory_unlock($1::int, hashtext($2))", &p,
	           "unlocking", &error) < 0)
		log_warn("%s", error);
}

void
pg_notify(struct pg_db *db)
{
	const char *error;

	if (pg_run(db, "NOTIFY " PG_CHANNEL, NULL, "waking workers",
	           &error) < 0)
		log_debug("%s", error);
}

/* Takes the notifications libpq has read; true if there was one. */
static bool
drain_notifies(struct pg_db *db)
{
	PGnotify *n;
	bool any = false;

	while ((n = PQnotifies(db->conn)) != NULL) {
		any = true;
		PQfreemem(n);
	}
	return any;
}

bool
pg_wait(struct pg_db *db, unsigned ms)
{
	struct pollfd pfd;
	const char *error;

	if (!db->listening && !db->in_tx) {
		if (pg_run(db, "LISTEN " PG_CHANNEL, NULL, "listening",
		           &error) < 0) {
			log_debug("%s", error);
			usleep(ms * 1000);
			return false;
		}
		db->listening = true;
	}
	if (drain_notifies(db))
		return true;
	pfd.fd = PQsocket(db->conn);
	pfd.events = POLLIN;
	if (pfd.fd < 0) {
		usleep(ms * 1000);
		return false;
	}
	if (poll(&pfd, 1, (int)ms) <= 0)
		return false;
	if (!PQconsumeInput(db->conn))
		return false; /* the next statement reconnects */
	return drain_notifies(db);
}
