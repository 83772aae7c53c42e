/* pair.h: what copy and verify share: a SRC/DST pair of endpoints with
 * their passwords and admin identities, the folder map, the state key. */
#ifndef IMAPFERRY_CLI_PAIR_H
#define IMAPFERRY_CLI_PAIR_H

#include "cli.h"
#include "foldermap.h"

struct cli_pair {
	struct endpoint src, dst;
	const char *src_pw, *dst_pw, *src_zid, *dst_zid;
	const char *state_path;
	const char **includes, **excludes, **maps;
	size_t n_inc, n_exc, n_map;
	struct foldermap *fm;
	char *sprefix, *dprefix, *account, *default_state;
	bool allow_maildir_dst;   /* copy, verify: DST may be maildir:PATH */
	bool allow_maildir_src;   /* copy: SRC may be maildir:PATH */
	struct net_tls_ctx *tls;  /* shared by every connection, or NULL */
	/* namespaces as probed (prefix strings point into sprefix/dprefix) */
	struct foldermap_side sside, dside;
	/* keep_sessions (copy): the probing sessions stay logged in here for
	 * the copy to take over (a login costs a Dovecot ~40 ms of CPU);
	 * cli_pair_free() logs out whichever was not taken */
	bool keep_sessions;
	struct imap_client *src_client, *dst_client;
};

/* The options of struct cli_pair, for a command's struct cli_use list. */
#define CLI_PAIR_USES \
	{ CLI_OPT_SRC_PWFILE, NULL }, { CLI_OPT_DST_PWFILE, NULL }, \
	{ CLI_OPT_SRC_AUTHZID, NULL }, { CLI_OPT_DST_AUTHZID, NULL }, \
	{ CLI_OPT_STATE, NULL }, { CLI_OPT_INCLUDE, NULL }, \
	{ CLI_OPT_EXCLUDE, NULL }, { CLI_OPT_MAP, NULL }

void cli_pair_init(struct cli_pair *p, int argc);
/* Consumes a pair option (CLI_PAIR_USES); returns 1 if consumed, 0 if
 * not one. */
int cli_pair_option(struct cli_pair *p, int id, const char *arg);
/* Parses the two URLs, refuses the same account as source and target
 * (exit status 2), loads passwords, applies common options, asks both
 * servers for their namespace and separator and builds the folder map.
 * Returns 0, or the exit status to use (message printed): 2 for a bad
 * URL, password or folder rule, 3 for a server not reached. */
int cli_pair_setup(struct cli_pair *p, const struct cli_common *common,
                   const char *src_url, const char *dst_url);
/* A new folder map with the pair's sides and rules (one per thread: a
 * map is not thread-safe). NULL with *error_r for a bad rule. */
struct foldermap *cli_pair_new_foldermap(const struct cli_pair *p,
                                         const char **error_r);
/* Resolves the state path (default when not given). Returns 0 or -1
 * (message printed). */
/* --dst-imap URL: the Dovecot that serves the pair's Maildir target, into
 * *ep (its password: the target's, or $IMAPFERRY_DST_PASSWORD). Returns
 * 0, or -1 with the reason printed (exit status 2). */
int cli_pair_dst_imap(const struct cli_pair *p, const struct cli_common *common,
                      const char *url, struct endpoint *ep);
int cli_pair_state_path(struct cli_pair *p, const char **path_r);
void cli_pair_free(struct cli_pair *p);

#endif
