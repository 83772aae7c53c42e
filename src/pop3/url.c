/* url.c: pop3:// and pop3s:// URLs, with the conventions of the imap://
 * URLs of src/cli/endpoint.c (user before the last '@', %XX escapes,
 * [IPv6], '&'-separated options, no passwords). */
#include "pop3.h"

#include <stdlib.h>
#include <string.h>

static int
parse_query(struct pop3_options *o, const char *q, const char **error_r)
{
	char *dup = xstrdup(q), *next, *item;

	for (item = dup; item != NULL; item = next) {
		next = strchr(item, '&');
		if (next != NULL)
			*next++ = '\0';
		if (*item == '\0')
			continue;
		if (strcmp(item, "tls=none") == 0 || strcmp(item, "starttls=no") == 0) {
			o->starttls = false;
			o->require_tls = false;
		} else if (strcmp(item, "starttls=require") == 0) {
			o->starttls = true;
			o->require_tls = true;
		} else {
			*error_r = err_set("unknown URL option '%s'", item);
			free(dup);
			return -1;
		}
		if (o->implicit_tls) {
			*error_r = err_set("URL option '%s' is for pop3:// only "
			                   "(pop3s:// is always TLS)", item);
			free(dup);
			return -1;
		}
	}
	free(dup);
	return 0;
}

bool
pop3_url_is(const char *url)
{
	return strncmp(url, "pop3://", 7) == 0 || strncmp(url, "pop3s://", 8) == 0;
}

static int
url_parse(const char *url, struct pop3_options *o, struct pop3_url *u,
          const char **error_r)
{
	const char *rest, *at, *hostpart, *end;
	char *userinfo, *semi;

	if (strncmp(url, "pop3://", 7) == 0) {
		rest = url + 7;
		o->implicit_tls = false;
		o->starttls = true;
		o->require_tls = false;
	} else if (strncmp(url, "pop3s://", 8) == 0) {
		rest = url + 8;
		o->implicit_tls = true;
		o->starttls = false;
		o->require_tls = true;
	} else {
		*error_r = err_set("'%s': expected pop3:// or pop3s://", url);
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
		*error_r = err_set("'%s': no user name (pop3://USER@HOST)", url);
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
		/* RFC 2384: ";AUTH=*" any, ";AUTH=+USER" plain USER/PASS */
		if (!str_ieq(semi, "AUTH=*") && !str_ieq(semi, "AUTH=+USER")) {
			*error_r = err_set("unsupported URL auth '%s' (AUTH PLAIN is "
			                   "used when an authzid is given)", semi);
			free(userinfo);
			return -1;
		}
	}
	u->user = str_pct_decode(userinfo, strlen(userinfo));
	free(userinfo);
	if (u->user == NULL || u->user[0] == '\0') {
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
		u->host = xstrndup(hostpart + 1, (size_t)(close - hostpart - 1));
		hostpart = close + 1;
		if (hostpart < end && *hostpart == ':')
			u->port = xstrndup(hostpart + 1, (size_t)(end - hostpart - 1));
		else if (hostpart < end) {
			*error_r = "junk after [IPv6] address in URL";
			return -1;
		}
	} else {
		const char *colon = memchr(hostpart, ':', (size_t)(end - hostpart));

		u->host = xstrndup(hostpart, (size_t)((colon != NULL ? colon : end) - hostpart));
		if (colon != NULL)
			u->port = xstrndup(colon + 1, (size_t)(end - colon - 1));
	}
	if (u->host[0] == '\0') {
		*error_r = "empty host in URL";
		return -1;
	}
	if (u->port != NULL) {
		uint64_t p;

		if (!str_to_u64z(u->port, 65535, &p) || p == 0) {
			*error_r = err_set("bad port '%s' in URL", u->port);
			return -1;
		}
	}
	/* A POP3 URL names a maildrop, not a path: allow only "/". */
	if (*end == '/' && end[1] != '\0' && end[1] != '?') {
		*error_r = err_set("'%s': unexpected path in a POP3 URL", url);
		return -1;
	}
	end += strcspn(end, "?");
	if (*end == '?' && parse_query(o, end + 1, error_r) < 0)
		return -1;
	/* last, so that a failed parse leaves no pointer to freed storage */
	o->host = u->host;
	o->port = u->port;
	o->user = u->user;
	return 0;
}

int
pop3_url_parse(const char *url, struct pop3_options *o, struct pop3_url *u,
               const char **error_r)
{
	memset(u, 0, sizeof(*u));
	u->url = xstrdup(url);
	if (url_parse(url, o, u, error_r) < 0) {
		pop3_url_free(u);
		return -1;
	}
	return 0;
}

void
pop3_url_free(struct pop3_url *u)
{
	free(u->host);
	free(u->port);
	free(u->user);
	free(u->url);
	memset(u, 0, sizeof(*u));
}
