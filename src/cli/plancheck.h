/* plancheck.h: the preflight of every account inside plan (plancheck.c). */
#ifndef IMAPFERRY_CLI_PLANCHECK_H
#define IMAPFERRY_CLI_PLANCHECK_H

#include "runcli.h"

#include "check.h"

struct plan_check_acct {
	const char *src_user, *dst_user;  /* borrowed from the accounts */
	char *error;                      /* could not be checked, or NULL */
	struct check_report r;
};

struct plan_check {
	struct plan_check_acct *v;        /* one per account of the run_cli */
	size_t n;
};

/* Checks every account of c (set up) with as many sessions at once as
 * the inventory, holding the connection caps. */
void plan_check_run(const struct run_cli *c, struct plan_check *pc);
void plan_check_free(struct plan_check *pc);
/* One line per kind of finding with the number of accounts concerned,
 * and the accounts that could not be checked. */
void plan_check_text(struct buf *out, const struct plan_check *pc);
/* A JSON object: "checked", "noticed", "failed", "kinds" [{"severity",
 * "code", "accounts"}], "accounts" [{"src_user", "dst_user", "error",
 * "report" (as check --json, or null)}]. */
void plan_check_json(struct buf *out, const struct plan_check *pc);

#endif
