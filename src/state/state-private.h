/* state-private.h: internals of the state module for its own tests. */
#ifndef IMAPFERRY_STATE_PRIVATE_H
#define IMAPFERRY_STATE_PRIVATE_H

#include "state.h"

struct sqlite3;

/* The SQLite connection of db, borrowed (valid until state_close()).
 * Tests only: to provoke errors (PRAGMA max_page_count for "disk full"). */
struct sqlite3 *state_db_sqlite(struct state_db *db);

#endif
