/* endpoint.h: parsing of the SRC/DST arguments of the command line:
 *   imap://USER@HOST[:PORT][?tls=none|starttls=require|compress=yes]
 *           (STARTTLS is required unless ?tls=none; starttls=require is
 *           the default and still accepted)
 *   imaps://USER@HOST[:PORT]
 *   maildir:PATH[?flavor=dovecot|courier]
 *   cyrus:PARTITION?user=NAME[&config=DIR][&mboxlist=DUMP][&template=T]
 *         [&sub=FILE][&seen=FILE]       (a copied Cyrus spool, source only)
 * USER may be "alice*master" (Dovecot master login) and may carry
 * ";AUTH=PLAIN" / ";AUTH=LOGIN" / ";AUTH=XOAUTH2"; %XX escapes are decoded
 * (alice%40example.org). Passwords never come from the URL. */
#ifndef IMAPFERRY_CLI_ENDPOINT_H
#define IMAPFERRY_CLI_ENDPOINT_H

#include "client.h"

enum endpoint_kind { ENDPOINT_IMAP, ENDPOINT_MAILDIR, ENDPOINT_CYRUS };

struct endpoint {
	enum endpoint_kind kind;
	/* IMAP: strings below are owned by the endpoint */
	struct imap_client_options imap;
	char *host, *port, *user, *password, *authzid;
	/* MAILDIR, CYRUS (path: the partition root) */
	char *path;
	char *flavor;
	/* CYRUS: see struct cyrus_options */
	char *cy_user, *cy_config, *cy_mboxlist, *cy_tmpl, *cy_sub, *cy_seen;
	char *url;            /* as given, for messages (never has a password) */
};

/* Parses url into ep (zeroed first). Returns 0 or -1 with *error_r. */
int endpoint_parse(const char *url, struct endpoint *ep, const char **error_r);
/* Loads the password: from password_file if not NULL, else from the
 * environment variable env_name. Returns 0 or -1 with *error_r. */
int endpoint_load_password(struct endpoint *ep, const char *password_file,
                           const char *env_name, const char **error_r);
void endpoint_free(struct endpoint *ep);
/* True when a and b are the same account, so a copy would read and write
 * the same mailboxes: two IMAP endpoints with the same host (ignoring
 * case), port (143 / 993 when not given) and account (the authzid when
 * given, else the user without a "*master" suffix, ignoring case), or
 * two Maildirs with the same path (resolved when it exists). a_zid and
 * b_zid are the authorization identities used, or NULL. */
bool endpoint_same_account(const struct endpoint *a, const char *a_zid,
                           const struct endpoint *b, const char *b_zid);
/* Expands %u (user), %n (local part before '@'), %d (domain after '@')
 * and %% in a path template. The user is taken without a "*master"
 * suffix. Returns a new string. */
char *endpoint_expand_path(const char *tmpl, const char *user);

#endif
