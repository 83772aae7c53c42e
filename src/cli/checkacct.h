/* checkacct.h: the preflight of one account of a users file (check.c),
 * for plan (plancheck.c). */
#ifndef IMAPFERRY_CLI_CHECKACCT_H
#define IMAPFERRY_CLI_CHECKACCT_H

#include "check.h"
#include "client.h"
#include "slots.h"

struct check_account_args {
	const struct imap_client_options *src;  /* an IMAP source */
	const char *src_url, *dst_url;          /* for messages */
	/* an IMAP target, or NULL: a Maildir of dst_flavor */
	const struct imap_client_options *dst;
	enum maildir_flavor dst_flavor;
	/* the run's folder rules */
	const char *const *includes, *const *excludes, *const *maps;
	size_t n_inc, n_exc, n_map;
	/* the connection caps: each side's session holds its slot */
	struct sched_slots *src_slots, *dst_slots;
	const char *src_slot, *dst_slot;
};

/* Inventories the account on both sides (the source's sizes and
 * keywords: FETCH FLAGS RFC822.SIZE of every message; the target's
 * folders, APPENDLIMIT and PERMANENTFLAGS) and analyzes what its mail
 * clients will notice. Returns 0 with *r filled (free with
 * check_report_free()), or -1 with *error_r (a server could not be
 * reached or failed during the inventory, a bad folder rule). */
int check_account_run(const struct check_account_args *a,
                      struct check_report *r, const char **error_r);

#endif
