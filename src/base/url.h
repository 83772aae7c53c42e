/* url.h: the parts that imap://, imaps://, pop3:// and pop3s:// URLs
 * share: "USER[;AUTH=...]@HOST[:PORT]" after the scheme, and the
 * '&'-separated options after '?'. The schemes themselves, and what each
 * option means, stay with their modules (src/cli/endpoint.c,
 * src/pop3/url.c). */
#ifndef IMAPFERRY_BASE_URL_H
#define IMAPFERRY_BASE_URL_H

#include "base.h"

/* What one scheme accepts in the server part. */
struct url_server_syntax {
	const char *scheme;            /* "imap": for "(imap://USER@HOST)" in messages */
	const char *const *auths;      /* accepted ";AUTH=..." values (compared
	                                * case-insensitively), NULL-terminated */
	const char *auth_hint;         /* appended to the unsupported-auth message */
};

/* The server part of a URL. The strings are owned by the struct. */
struct url_server {
	char *user;                    /* %XX-decoded, never empty */
	char *host;                    /* without the [] of an IPv6 address */
	char *port;                    /* decimal 1-65535, or NULL when absent */
	int auth;                      /* index in syntax->auths, or -1 if no ";" */
	const char *end;               /* in the URL: the first '/' or '?' after
	                                * the host, or its NUL */
};

/* Parses "USER[;AUTH=...]@HOST[:PORT]" at rest, the text after the scheme
 * of url (used whole in messages). USER is everything before the last '@'
 * (an '@' in it need not be escaped); a ':' in it (a password) is
 * refused. Returns 0 with *s filled, or -1 with *error_r set and *s
 * zeroed (nothing to free). */
int url_server_parse(const char *url, const char *rest,
                     const struct url_server_syntax *syntax,
                     struct url_server *s, const char **error_r) ATTR_WARN_UNUSED;
/* Frees the strings; s is zeroed. */
void url_server_free(struct url_server *s);

/* Called by url_query_parse() for each option; item is NUL-terminated
 * and valid only during the call. Returns 0, or -1 with *error_r set. */
typedef int url_option_fn(void *ctx, const char *item, const char **error_r);

/* Splits query (the text after '?') at '&' and calls option for every
 * non-empty item, in order, until one fails. Returns 0, or -1 with the
 * *error_r that option set. */
int url_query_parse(const char *query, url_option_fn *option, void *ctx,
                    const char **error_r) ATTR_WARN_UNUSED;

#endif
