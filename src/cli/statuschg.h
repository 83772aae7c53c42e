/* statuschg.h: status per account (statuschg.c): when its last pass ended
 * and, with --changes USERS, what changed on the source since. */
#ifndef IMAPFERRY_CLI_STATUSCHG_H
#define IMAPFERRY_CLI_STATUSCHG_H

#include "runcli.h"

#include "json.h"

struct status_acct {
	const char *src_user, *account;  /* borrowed from the report data */
	int64_t last_end;                /* epoch s; 0: no complete pass */
	bool checked;                    /* --changes: its source answered */
	char *error;                     /* --changes: why not, or NULL */
	size_t folders, changed, unknown; /* unknown: never complete */
	uint64_t new_messages, expunged;
};

/* One entry per account of rep (borrowing its strings), with the end of
 * its last pass when every job of the account is done. */
void status_accts_init(const struct report_data *rep, struct status_acct **v_r,
                       size_t *n_r);
void status_accts_free(struct status_acct **v, size_t n);
/* c: users file and templates set (those of the run), as for run. Builds
 * the accounts, takes the STATUS of every folder of every source account
 * (c's caps and sessions) and fills the changes of the entries of v.
 * Returns 0, or an exit status (message printed). */
int status_changes(struct run_cli *c, struct state_db *db,
                   struct status_acct *v, size_t n);
void status_accts_text(struct buf *out, const struct status_acct *v, size_t n,
                       int64_t now);
void status_accts_json(struct json *j, const struct status_acct *v, size_t n);

#endif
