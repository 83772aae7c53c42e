#include "endpoint.h"
#include "options.h"

#include "base.h"
#include "buf.h"
#include "url.h"

#include <stdlib.h>
#include <string.h>

/* ";AUTH=" values of imap:// URLs, and the mechanism each one selects. */
static const char *const imap_auths[] = {
	"AUTH=*", "AUTH=PLAIN", "AUTH=LOGIN", "AUTH=XOAUTH2", NULL,
};
static const enum imap_auth_mech imap_auth_mechs[] = {
	IMAP_AUTH_AUTO, IMAP_AUTH_PLAIN, IMAP_AUTH_LOGIN, IMAP_AUTH_XOAUTH2,
};
static const struct url_server_syntax imap_syntax = {
	.scheme = "imap",
	.auths = imap_auths,
	.auth_hint = "",
};

/* cyrus: options: "user=", "config=", ... and where each goes */
static int
parse_cyrus_option(struct endpoint *ep, const char *item, const char **error_r)
{
	static const char *const keys[] = {
		"user=", "config=", "mboxlist=", "template=", "sub=", "seen=",
	};
	char **slots[] = {
		&ep->cy_user, &ep->cy_config, &ep->cy_mboxlist, &ep->cy_tmpl,
		&ep->cy_sub, &ep->cy_seen,
	};

	for (size_t i = 0; i < N_ELEMENTS(keys); i++) {
		size_t klen = strlen(keys[i]);

		if (strncmp(item, keys[i], klen) == 0 && item[klen] != '\0') {
			free(*slots[i]);
			*slots[i] = xstrdup(item + klen);
			return 0;
		}
	}
	*error_r = err_setk(ERRK_USAGE, "unknown or empty cyrus: URL option '%s'",
	                    item);
	return -1;
}

static int
parse_option(void *ctx, const char *item, const char **error_r)
{
	struct endpoint *ep = ctx;

	if (ep->kind == ENDPOINT_CYRUS)
		return parse_cyrus_option(ep, item, error_r);
	if (strcmp(item, "tls=none") == 0 || strcmp(item, "starttls=no") == 0)
		ep->imap.starttls = IMAP_STARTTLS_NEVER;
	else if (strcmp(item, "starttls=require") == 0)
		ep->imap.starttls = IMAP_STARTTLS_REQUIRE;
	else if (strcmp(item, "compress=yes") == 0)
		ep->imap.compress = true;
	else if (strncmp(item, "flavor=", 7) == 0 &&
	         (strcmp(item + 7, "dovecot") == 0 ||
	          strcmp(item + 7, "courier") == 0)) {
		free(ep->flavor);
		ep->flavor = xstrdup(item + 7);
	} else {
		*error_r = err_set("unknown URL option '%s'", item);
		return -1;
	}
	return 0;
}

int
endpoint_parse(const char *url, struct endpoint *ep, const char **error_r)
{
	struct url_server server;
	const char *rest, *q;

	memset(ep, 0, sizeof(*ep));
	ep->url = xstrdup(url);
	if (strncmp(url, "maildir:", 8) == 0) {
		ep->kind = ENDPOINT_MAILDIR;
		q = strchr(url + 8, '?');
		ep->path = q != NULL ? xstrndup(url + 8, (size_t)(q - url - 8)) :
		                       xstrdup(url + 8);
		ep->flavor = xstrdup("dovecot");
		if (ep->path[0] == '\0') {
			*error_r = "maildir: needs a path";
			return -1;
		}
		return q != NULL ? url_query_parse(q + 1, parse_option, ep, error_r) : 0;
	}
	if (strncmp(url, "cyrus:", 6) == 0) {
		ep->kind = ENDPOINT_CYRUS;
		q = strchr(url + 6, '?');
		ep->path = q != NULL ? xstrndup(url + 6, (size_t)(q - url - 6)) :
		                       xstrdup(url + 6);
		if (ep->path[0] == '\0') {
			*error_r = "cyrus: needs the partition directory";
			return -1;
		}
		if (q != NULL && url_query_parse(q + 1, parse_option, ep, error_r) < 0)
			return -1;
		if (ep->cy_user == NULL) {
			*error_r = "cyrus: needs ?user=NAME";
			return -1;
		}
		return 0;
	}
	ep->kind = ENDPOINT_IMAP;
	if (strncmp(url, "imap://", 7) == 0) {
		rest = url + 7;
	} else if (strncmp(url, "imaps://", 8) == 0) {
		rest = url + 8;
		ep->imap.implicit_tls = true;
	} else {
		*error_r = err_set("'%s': expected imap://, imaps://, maildir: or "
		                   "cyrus:", url);
		return -1;
	}
	if (url_server_parse(url, rest, &imap_syntax, &server, error_r) < 0)
		return -1;
	if (server.auth >= 0)
		ep->imap.mech = imap_auth_mechs[server.auth];
	ep->user = server.user;
	ep->host = server.host;
	ep->port = server.port;
	ep->imap.host = ep->host;
	ep->imap.port = ep->port;
	ep->imap.user = ep->user;
	q = strchr(server.end, '?');
	if (q != NULL && url_query_parse(q + 1, parse_option, ep, error_r) < 0)
		return -1;
	return 0;
}

int
endpoint_load_password(struct endpoint *ep, const char *password_file,
                       const char *env_name, const char **error_r)
{
	const char *env;

	if (ep->kind != ENDPOINT_IMAP)
		return 0;
	if (password_file != NULL) {
		if (cli_password_file_read(password_file, &ep->password,
		                           error_r) < 0)
			return -1;
	} else if ((env = getenv(env_name)) != NULL) {
		ep->password = xstrdup(env);
	} else {
		*error_r = err_set("no password for %s: use a password file or set %s",
		                   ep->url, env_name);
		return -1;
	}
	ep->imap.password = ep->password;
	return 0;
}

void
endpoint_free(struct endpoint *ep)
{
	secret_free(&ep->password);
	free(ep->host);
	free(ep->port);
	free(ep->user);
	free(ep->authzid);
	free(ep->path);
	free(ep->flavor);
	free(ep->cy_user);
	free(ep->cy_config);
	free(ep->cy_mboxlist);
	free(ep->cy_tmpl);
	free(ep->cy_sub);
	free(ep->cy_seen);
	free(ep->url);
	memset(ep, 0, sizeof(*ep));
}

static unsigned
effective_port(const struct endpoint *ep)
{
	uint64_t v;

	if (ep->port != NULL && str_to_u64z(ep->port, 65535, &v))
		return (unsigned)v;
	return ep->imap.implicit_tls ? 993 : 143;
}

/* The account a login reaches: the authzid, else the user up to '*'. */
static bool
same_identity(const struct endpoint *a, const char *a_zid,
              const struct endpoint *b, const char *b_zid)
{
	const char *ua = a_zid != NULL ? a_zid : a->user != NULL ? a->user : "";
	const char *ub = b_zid != NULL ? b_zid : b->user != NULL ? b->user : "";
	size_t la = a_zid != NULL ? strlen(ua) : strcspn(ua, "*");
	size_t lb = b_zid != NULL ? strlen(ub) : strcspn(ub, "*");

	return la == lb && str_ieqn(ua, ub, la);
}

bool
endpoint_same_account(const struct endpoint *a, const char *a_zid,
                      const struct endpoint *b, const char *b_zid)
{
	if (a->kind != b->kind)
		return false;
	if (a->kind == ENDPOINT_MAILDIR) {
		char *ra = realpath(a->path, NULL), *rb = realpath(b->path, NULL);
		bool same = ra != NULL && rb != NULL ? strcmp(ra, rb) == 0 :
		            strcmp(a->path, b->path) == 0;

		free(ra);
		free(rb);
		return same;
	}
	return a->host != NULL && b->host != NULL && str_ieq(a->host, b->host) &&
	       effective_port(a) == effective_port(b) &&
	       same_identity(a, a_zid, b, b_zid);
}

char *
endpoint_expand_path(const char *tmpl, const char *user)
{
	size_t ulen = strcspn(user, "*");
	const char *at = memchr(user, '@', ulen);
	struct buf b;

	buf_init(&b, 64 * 1024);
	for (const char *p = tmpl; *p != '\0'; p++) {
		int r = 0;

		if (*p != '%' || p[1] == '\0') {
			r = buf_append(&b, p, 1);
			if (r < 0)
				break;
			continue;
		}
		switch (*++p) {
		case 'u':
			r = buf_append(&b, user, ulen);
			break;
		case 'n':
			r = buf_append(&b, user, at != NULL ? (size_t)(at - user) : ulen);
			break;
		case 'd':
			if (at != NULL)
				r = buf_append(&b, at + 1, ulen - (size_t)(at + 1 - user));
			break;
		default:
			r = buf_append(&b, p, 1);
			break;
		}
		if (r < 0)
			break;
	}
	return buf_take(&b);
}
