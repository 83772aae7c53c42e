/* url.c: pop3:// and pop3s:// URLs. The server part and the option list
 * follow the conventions of the imap:// URLs of src/cli/endpoint.c (user
 * before the last '@', %XX escapes, [IPv6], '&'-separated options, no
 * passwords); src/base/url.c parses them for both. */
#include "pop3.h"
#include "url.h"

#include <stdlib.h>
#include <string.h>

/* RFC 2384: ";AUTH=*" any, ";AUTH=+USER" plain USER/PASS */
static const char *const pop3_auths[] = { "AUTH=*", "AUTH=+USER", NULL };
static const struct url_server_syntax pop3_syntax = {
	.scheme = "pop3",
	.auths = pop3_auths,
	.auth_hint = " (AUTH PLAIN is used when an authzid is given)",
};

static int
parse_option(void *ctx, const char *item, const char **error_r)
{
	struct pop3_options *o = ctx;

	if (strcmp(item, "tls=none") == 0 || strcmp(item, "starttls=no") == 0) {
		o->starttls = false;
		o->require_tls = false;
	} else if (strcmp(item, "starttls=require") == 0) {
		o->starttls = true;
		o->require_tls = true;
	} else {
		*error_r = err_set("unknown URL option '%s'", item);
		return -1;
	}
	if (o->implicit_tls) {
		*error_r = err_set("URL option '%s' is for pop3:// only "
		                   "(pop3s:// is always TLS)", item);
		return -1;
	}
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
	struct url_server server;
	const char *rest, *end;

	if (strncmp(url, "pop3://", 7) == 0) {
		rest = url + 7;
		o->implicit_tls = false;
		o->starttls = true;
		/* no opportunistic TLS: plain text only with ?tls=none */
		o->require_tls = true;
	} else if (strncmp(url, "pop3s://", 8) == 0) {
		rest = url + 8;
		o->implicit_tls = true;
		o->starttls = false;
		o->require_tls = true;
	} else {
		*error_r = err_set("'%s': expected pop3:// or pop3s://", url);
		return -1;
	}
	if (url_server_parse(url, rest, &pop3_syntax, &server, error_r) < 0)
		return -1;
	u->user = server.user;
	u->host = server.host;
	u->port = server.port;
	end = server.end;
	/* A POP3 URL names a maildrop, not a path: allow only "/". */
	if (*end == '/' && end[1] != '\0' && end[1] != '?') {
		*error_r = err_set("'%s': unexpected path in a POP3 URL", url);
		return -1;
	}
	end += strcspn(end, "?");
	if (*end == '?' && url_query_parse(end + 1, parse_option, o, error_r) < 0)
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
