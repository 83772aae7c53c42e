/* users.h: the accounts of a whole-server migration: the users file, the
 * SRC/DST templates and the login of each side.
 *
 * Users file, one of two formats (told apart by the first line that is
 * neither empty nor a '#' comment):
 *   CSV with a header naming the columns, in any order:
 *     src_user,dst_user[,src_password_file,dst_password_file]
 *   Fields may be double-quoted ("" inside for a quote). Empty dst_user:
 *   same as src_user. Password files are read at load time (relative
 *   names: relative to the users file's directory).
 *   imapsync style: user1;password1;user2;password2 (an optional trailing
 *   ';'). The passwords are kept in memory only: never logged, never
 *   stored in the state database.
 *
 * Templates: SRC and DST are URLs (imap://, imaps://, maildir:) where
 *   %u  the user (the source user in SRC, the target user in DST)
 *   %n  its local part (before the last '@'), %d its domain (after it, or "")
 *   %%  a '%'.
 * In an imap(s) URL the substituted text is percent-encoded where the URL
 * syntax needs it; in a maildir path a user that could escape the
 * directory ('/', a leading '.', control characters) is refused.
 *
 * Logging in, per side and account, first match wins:
 *   1. a password from the users file: log in as the user of the URL;
 *   2. an admin (--src-admin USER): log in as USER with the side's
 *      password file, SASL PLAIN authzid = the account (Cyrus admins,
 *      Dovecot master users); the URL's user is replaced by USER;
 *   3. the side's password file for every account (Dovecot master login
 *      in the template, imap://%u*master@host, or a shared password).
 * A maildir side needs no login.
 *
 * Depends on base (and on client.h for struct imap_client_options). */
#ifndef IMAPFERRY_SCHED_USERS_H
#define IMAPFERRY_SCHED_USERS_H

#include "client.h"

struct source;

struct sched_user {
	char *src_user;
	char *dst_user;
	char *src_password;       /* secret from the users file, or NULL */
	char *dst_password;
	unsigned line;            /* in the users file, for messages */
};

struct sched_users {
	struct sched_user *users;
	size_t count;
	bool imapsync_format;
};

/* Parses the users file text (len bytes, need not be NUL-terminated).
 * base_dir resolves relative password file names (NULL: the current
 * directory). Duplicate source users are refused. Returns 0 with *users_r
 * filled (free with sched_users_free()), or -1 with *error_r naming the
 * line. No password ever appears in an error. */
int sched_users_parse(const char *text, size_t len, const char *base_dir,
                      struct sched_users *users_r,
                      const char **error_r) ATTR_WARN_UNUSED;
/* Reads and parses the users file at path (at most 64 MiB). Returns 0 or
 * -1 with *error_r, as sched_users_parse(). */
int sched_users_load(const char *path, struct sched_users *users_r,
                     const char **error_r) ATTR_WARN_UNUSED;
/* Wipes the passwords, frees everything and zeroes *users. */
void sched_users_free(struct sched_users *users);

/* Expands %u %n %d %% of tmpl with user (see the top of this file).
 * Returns a new string (caller frees), or NULL with *error_r for an
 * unknown %-escape, a trailing '%', or a user unfit for a maildir path. */
char *sched_template_expand(const char *tmpl, const char *user,
                            const char **error_r) ATTR_WARN_UNUSED;

/* True for an imap:// or imaps:// URL (else a maildir: or other). */
bool sched_url_is_imap(const char *url);

/* url with the user part of an imap(s) URL replaced by user
 * (percent-encoded), keeping a ";AUTH=..." suffix: for admin logins.
 * Returns a new string, or NULL when url has no user part. */
char *sched_url_replace_user(const char *url, const char *user);

/* The state key of an account pair, the same text "imapferry copy" and
 * "imapferry verify" use for the same URLs and authzids, so a verify of
 * one account finds the mappings of the run:
 * "SRC[ as ZID] -> DST[ as ZID]". Returns a new string. */
char *sched_account_key(const char *src_url, const char *src_authzid,
                        const char *dst_url, const char *dst_authzid);

/* The login of one side for every account. */
struct sched_login {
	const char *admin;        /* --src-admin USER, or NULL */
	const char *password;     /* --src-password-file contents, or NULL
	                           * (borrowed: must outlive the accounts) */
};

/* One account pair, resolved: what to log in as on each side. */
struct sched_account {
	char *key;                /* state key (sched_account_key()) */
	char *src_user, *dst_user;
	char *src_url, *dst_url;  /* login URLs (admin user substituted) */
	char *src_authzid;        /* NULL unless logging in as an admin */
	char *dst_authzid;
	const char *src_password; /* borrowed (users file or login), NULL
	                           * for maildir */
	const char *dst_password;
	unsigned line;
	/* Filled by the caller from the URLs (parsing endpoints is the
	 * command line's job); strings borrowed from the caller: */
	struct imap_client_options src_opts, dst_opts;
	/* What the copy reads (sync/source.h, a recipe: copied for every
	 * job), borrowed; NULL: the IMAP account of src_opts. A source that
	 * is offline (a copied Cyrus spool) has no src_slot. */
	const struct source *src_spec;
	bool dst_maildir;         /* target is a Maildir: dst_path */
	bool dst_courier;         /* ... of Courier's flavor */
	const char *dst_path;
	/* Maildir target: the Dovecot serving it (--dst-imap), borrowed, or
	 * NULL */
	const struct imap_client_options *dst_imap;
	char *src_slot, *dst_slot; /* connection cap keys (owned, freed by
	                            * sched_accounts_free()); NULL: none */
};

/* Builds one account per user from the templates and logins. The
 * accounts borrow the passwords of users and logins: keep both alive.
 * Returns 0 with a new array (free with sched_accounts_free()), or -1
 * with *error_r (bad template, no password for an account: line named). */
int sched_accounts_build(const struct sched_users *users, const char *src_tmpl,
                         const char *dst_tmpl, const struct sched_login *src,
                         const struct sched_login *dst,
                         struct sched_account **accounts_r, size_t *count_r,
                         const char **error_r) ATTR_WARN_UNUSED;
void sched_accounts_free(struct sched_account **accounts, size_t count);

/* True if a server greeting says the server ignores a SASL authorization
 * identity: Courier-IMAP logs the admin into the admin's own mailbox
 * instead of refusing (FORMATS.md 4). A heuristic on the greeting text
 * ("Courier"); an admin login to such a server must be refused. */
bool sched_greeting_ignores_authzid(const char *greeting);

/* Encodes a list of folder names as one text for the state database:
 * names joined by '\n', with '\\' and '\n' inside a name written as
 * "\\\\" and "\\n". An empty list is "". Returns a new string. */
char *sched_names_encode(char *const *names, size_t count);
/* Decodes sched_names_encode() text into a new NULL-terminated array of
 * new strings (free with sched_names_free()); *count_r set. */
char **sched_names_decode(const char *text, size_t *count_r);
void sched_names_free(char ***names);

#endif
