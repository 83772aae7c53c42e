/* url.c: server part and options of the mail URLs (see url.h). */
#include "url.h"

#include <stdlib.h>
#include <string.h>

/* Index of auth in the NULL-terminated auths, or -1. */
static int
auth_find(const char *const *auths, const char *auth)
{
	for (int i = 0; auths[i] != NULL; i++)
		if (str_ieq(auth, auths[i]))
			return i;
	return -1;
}

static int
server_parse(const char *url, const char *rest,
             const struct url_server_syntax *syntax, struct url_server *s,
             const char **error_r)
{
	const char *at, *hostpart, *end;
	char *userinfo, *semi;

	end = rest + strcspn(rest, "/?");
	/* the last '@' before the host separates the user (which may
	 * contain an unescaped '@') */
	at = NULL;
	for (const char *p = rest; p < end; p++)
		if (*p == '@')
			at = p;
	if (at == NULL) {
		*error_r = err_set("'%s': no user name (%s://USER@HOST)", url,
		                   syntax->scheme);
		return -1;
	}
	userinfo = xstrndup(rest, (size_t)(at - rest));
	if (strchr(userinfo, ':') != NULL) {
		free(userinfo);
		*error_r = "passwords are not accepted in URLs: use --password-file "
		           "or the environment";
		return -1;
	}
	s->auth = -1;
	semi = strchr(userinfo, ';');
	if (semi != NULL) {
		*semi++ = '\0';
		s->auth = auth_find(syntax->auths, semi);
		if (s->auth < 0) {
			*error_r = err_set("unsupported URL auth '%s'%s", semi,
			                   syntax->auth_hint);
			free(userinfo);
			return -1;
		}
	}
	s->user = str_pct_decode(userinfo, strlen(userinfo));
	free(userinfo);
	if (s->user == NULL || s->user[0] == '\0') {
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
		s->host = xstrndup(hostpart + 1, (size_t)(close - hostpart - 1));
		hostpart = close + 1;
		if (hostpart < end && *hostpart == ':') {
			s->port = xstrndup(hostpart + 1, (size_t)(end - hostpart - 1));
		} else if (hostpart < end) {
			*error_r = "junk after [IPv6] address in URL";
			return -1;
		}
	} else {
		const char *colon = memchr(hostpart, ':', (size_t)(end - hostpart));

		s->host = xstrndup(hostpart, (size_t)((colon != NULL ? colon : end) - hostpart));
		if (colon != NULL)
			s->port = xstrndup(colon + 1, (size_t)(end - colon - 1));
	}
	if (s->host[0] == '\0') {
		*error_r = "empty host in URL";
		return -1;
	}
	if (s->port != NULL) {
		uint64_t p;

		if (!str_to_u64z(s->port, 65535, &p) || p == 0) {
			*error_r = err_set("bad port '%s' in URL", s->port);
			return -1;
		}
	}
	s->end = end;
	return 0;
}

int
url_server_parse(const char *url, const char *rest,
                 const struct url_server_syntax *syntax, struct url_server *s,
                 const char **error_r)
{
	memset(s, 0, sizeof(*s));
	if (server_parse(url, rest, syntax, s, error_r) < 0) {
		url_server_free(s);
		return -1;
	}
	return 0;
}

void
url_server_free(struct url_server *s)
{
	free(s->user);
	free(s->host);
	free(s->port);
	memset(s, 0, sizeof(*s));
}

int
url_query_parse(const char *query, url_option_fn *option, void *ctx,
                const char **error_r)
{
	char *dup = xstrdup(query), *next, *item;
	int ret = 0;

	for (item = dup; item != NULL && ret == 0; item = next) {
		next = strchr(item, '&');
		if (next != NULL)
			*next++ = '\0';
		if (*item != '\0')
			ret = option(ctx, item, error_r);
	}
	free(dup);
	return ret;
}
