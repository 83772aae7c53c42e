#include "endpoint.h"

#include "base.h"
#include "buf.h"

#include <stdlib.h>
#include <string.h>

static int
parse_query(struct endpoint *ep, const char *q, const char **error_r)
{
	char *dup = xstrdup(q), *next, *item;

	for (item = dup; item != NULL; item = next) {
		next = strchr(item, '&');
		if (next != NULL)
			*next++ = '\0';
		if (*item == '\0')
			continue;
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
			free(dup);
			return -1;
		}
	}
	free(dup);
	return 0;
}

int
endpoint_parse(const char *url, struct endpoint *ep, const char **error_r)
{
	const char *rest, *at, *hostpart, *end, *q;
	char *userinfo, *semi;

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
		return q != NULL ? parse_query(ep, q + 1, error_r) : 0;
	}
	ep->kind = ENDPOINT_IMAP;
	if (strncmp(url, "imap://", 7) == 0) {
		rest = url + 7;
	} else if (strncmp(url, "imaps://", 8) == 0) {
		rest = url + 8;
		ep->imap.implicit_tls = true;
	} else {
		*error_r = err_set("'%s': expected imap://, imaps:// or maildir:", url);
		return -1;
	}
	end = rest + strcspn(rest, "/?");
	/* the last '@' before the host separates the user (which may
	 * contain an unescaped '@') */
	at = NULL;
	for (const char *p = rest; p < end; p++)
		if (*p == '@')
			at = p;
	if (at == NULL) {
		*error_r = err_set("'%s': no user name (imap://USER@HOST)", url);
		return -1;
	}
	userinfo = xstrndup(rest, (size_t)(at - rest));
	if (strchr(userinfo, ':') != NULL) {
		free(userinfo);
		*error_r = "passwords are not accepted in URLs: use --password-file "
		           "or the environment";
		return -1;
	}
	semi = strchr(userinfo, ';');
	if (semi != NULL) {
		*semi++ = '\0';
		if (str_ieq(semi, "AUTH=PLAIN"))
			ep->imap.mech = IMAP_AUTH_PLAIN;
		else if (str_ieq(semi, "AUTH=LOGIN"))
			ep->imap.mech = IMAP_AUTH_LOGIN;
		else if (str_ieq(semi, "AUTH=XOAUTH2"))
			ep->imap.mech = IMAP_AUTH_XOAUTH2;
		else if (!str_ieq(semi, "AUTH=*")) {
			*error_r = err_set("unsupported URL auth '%s'", semi);
			free(userinfo);
			return -1;
		}
	}
	ep->user = str_pct_decode(userinfo, strlen(userinfo));
	free(userinfo);
	if (ep->user == NULL || ep->user[0] == '\0') {
		*error_r = "bad or empty user name in URL";
		return -1;
	}
	hostpart = at + 1;
	if (*hostpart == '[') {
		const char *close = memchr(hostpart, ']', (size_t)(end - hostpart));
		if (close == NULL) {
			*error_r = "unterminated [IPv6] address in URL";
			return -1;
		}
		ep->host = xstrndup(hostpart + 1, (size_t)(close - hostpart - 1));
		hostpart = close + 1;
		if (hostpart < end && *hostpart == ':')
			ep->port = xstrndup(hostpart + 1, (size_t)(end - hostpart - 1));
	} else {
		const char *colon = memchr(hostpart, ':', (size_t)(end - hostpart));
		ep->host = xstrndup(hostpart, (size_t)((colon != NULL ? colon : end) - hostpart));
		if (colon != NULL)
			ep->port = xstrndup(colon + 1, (size_t)(end - colon - 1));
	}
	if (ep->host[0] == '\0') {
		*error_r = "empty host in URL";
		return -1;
	}
	if (ep->port != NULL) {
		uint64_t p;
		if (!str_to_u64z(ep->port, 65535, &p) || p == 0) {
			*error_r = err_set("bad port '%s' in URL", ep->port);
			return -1;
		}
	}
	ep->imap.host = ep->host;
	ep->imap.port = ep->port;
	ep->imap.user = ep->user;
	q = strchr(end, '?');
	if (q != NULL && parse_query(ep, q + 1, error_r) < 0)
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
		if (file_read_small(password_file, 64 * 1024, true, &ep->password,
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
	free(ep->url);
	memset(ep, 0, sizeof(*ep));
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
