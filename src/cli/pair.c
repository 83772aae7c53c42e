#include "pair.h"

#include "mailboxes.h"
#include "state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
cli_pair_init(struct cli_pair *p, int argc)
{
	memset(p, 0, sizeof(*p));
	p->includes = xcalloc((size_t)argc + 1, sizeof(char *));
	p->excludes = xcalloc((size_t)argc + 1, sizeof(char *));
	p->maps = xcalloc((size_t)argc + 1, sizeof(char *));
}

int
cli_pair_option(struct cli_pair *p, int id, const char *arg)
{
	switch (id) {
	case CLI_OPT_SRC_PWFILE: p->src_pw = arg; return 1;
	case CLI_OPT_DST_PWFILE: p->dst_pw = arg; return 1;
	case CLI_OPT_SRC_AUTHZID: p->src_zid = arg; return 1;
	case CLI_OPT_DST_AUTHZID: p->dst_zid = arg; return 1;
	case CLI_OPT_STATE: p->state_path = arg; return 1;
	case CLI_OPT_INCLUDE: p->includes[p->n_inc++] = arg; return 1;
	case CLI_OPT_EXCLUDE: p->excludes[p->n_exc++] = arg; return 1;
	case CLI_OPT_MAP: p->maps[p->n_map++] = arg; return 1;
	default: return 0;
	}
}

/* Asks the server for its personal namespace prefix and separator. The
 * session is logged out, or left in *keep_r when keep_r is not NULL. */
static int
probe_side(const struct endpoint *ep, struct foldermap_side *side,
           char **prefix_r, struct imap_client **keep_r, const char **error_r)
{
	struct imap_client *c;
	struct imap_account_info info;

	if (imap_client_connect(&ep->imap, &c, NULL, error_r) < 0)
		return -1;
	if (imap_account_inventory(c, 0, &info, error_r) < 0) {
		imap_client_free(&c);
		return -1;
	}
	*prefix_r = xstrdup(info.ns_count[0] > 0 ? info.ns[0][0].prefix : "");
	side->prefix = *prefix_r;
	side->separator = info.separator;
	if (side->separator == '\0' && info.ns_count[0] > 0)
		side->separator = info.ns[0][0].delimiter;
	imap_account_info_free(&info);
	if (keep_r != NULL)
		*keep_r = c;
	else
		imap_client_logout(&c);
	return 0;
}

/* Whether e's sessions use TLS: an IMAP endpoint unless ?tls=none. */
static bool
uses_tls(const struct endpoint *e)
{
	return e->kind == ENDPOINT_IMAP &&
	       (e->imap.implicit_tls || e->imap.starttls != IMAP_STARTTLS_NEVER);
}

int
cli_pair_setup(struct cli_pair *p, const struct cli_common *common,
               const char *src_url, const char *dst_url)
{
	struct foldermap_side sside = { 0 }, dside = { 0 };
	const char *error;

	if (endpoint_parse(src_url, &p->src, &error) < 0 ||
	    endpoint_parse(dst_url, &p->dst, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		return CLI_EXIT_USAGE;
	}
	if ((p->src.kind != ENDPOINT_IMAP && !p->allow_maildir_src) ||
	    (p->dst.kind != ENDPOINT_IMAP && !p->allow_maildir_dst)) {
		fprintf(stderr, "imapferry: this command does not take a maildir: "
		                "or cyrus: %s\n", p->src.kind != ENDPOINT_IMAP ?
		                "source" : "target");
		return CLI_EXIT_USAGE;
	}
	if (p->dst.kind == ENDPOINT_CYRUS) {
		fprintf(stderr, "imapferry: a cyrus: spool can only be a source\n");
		return 2;
	}
	if (p->dst.kind == ENDPOINT_MAILDIR && p->src.kind != ENDPOINT_MAILDIR) {
		/* %u, %n, %d: the source account's user name */
		char *path = endpoint_expand_path(p->dst.path,
		    p->src.kind == ENDPOINT_CYRUS ? p->src.cy_user : p->src.user);

		free(p->dst.path);
		p->dst.path = path;
	}
	/* reading and writing one account would copy it onto itself */
	if (endpoint_same_account(&p->src, p->src_zid, &p->dst, p->dst_zid)) {
		fprintf(stderr, "imapferry: source and target are the same %s: "
		        "%s\n", p->src.kind == ENDPOINT_MAILDIR ? "Maildir" :
		        "account", p->src.url);
		return CLI_EXIT_USAGE;
	}
	if (endpoint_load_password(&p->src, p->src_pw, "IMAPFERRY_SRC_PASSWORD",
	                           &error) < 0 ||
	    endpoint_load_password(&p->dst, p->dst_pw, "IMAPFERRY_DST_PASSWORD",
	                           &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		return CLI_EXIT_USAGE;
	}
	cli_apply_common(common, &p->src);
	cli_apply_common(common, &p->dst);
	/* one TLS context (one read of the trust store) for every session
	 * of both sides: reconnects, --parallel pairs; a failure here is
	 * reported by the first connection that needs TLS. None when no
	 * side does (plain text asked for, or Maildir and spool endpoints):
	 * parsing the system's CA bundle cost ~70 ms of CPU per process. */
	if ((uses_tls(&p->src) || uses_tls(&p->dst)) &&
	    net_tls_ctx_new(&common->net, &p->tls, &error) == 0)
		p->src.imap.net.tls_ctx = p->dst.imap.net.tls_ctx = p->tls;
	if (p->src_zid != NULL)
		p->src.imap.authzid = p->src.authzid = xstrdup(p->src_zid);
	if (p->dst_zid != NULL)
		p->dst.imap.authzid = p->dst.authzid = xstrdup(p->dst_zid);
	p->src.imap.label = "src";
	p->dst.imap.label = "dst";
	if (p->src.kind == ENDPOINT_MAILDIR) {
		sside.separator = '.';
		sside.prefix = "";
	} else if (p->src.kind == ENDPOINT_CYRUS) {
		/* cyrus.c names folders "A/B" ('.' inside a level is a '.') */
		sside.separator = '/';
		sside.prefix = "";
	} else if (probe_side(&p->src, &sside, &p->sprefix,
	                      p->keep_sessions ? &p->src_client : NULL, &error) < 0) {
		fprintf(stderr, "imapferry: source: %s\n", error);
		return CLI_EXIT_ERROR;
	}
	if (p->dst.kind == ENDPOINT_MAILDIR) {
		/* Maildir++ on disk: '.' between levels, no prefix */
		dside.separator = '.';
		dside.prefix = "";
	} else if (probe_side(&p->dst, &dside, &p->dprefix,
	                      p->keep_sessions ? &p->dst_client : NULL, &error) < 0) {
		fprintf(stderr, "imapferry: target: %s\n", error);
		return CLI_EXIT_ERROR;
	}
	p->sside = sside;
	p->dside = dside;
	if ((p->fm = cli_pair_new_foldermap(p, &error)) == NULL)
		goto bad_rule;
	p->account = xasprintf("%s%s%s -> %s%s%s", p->src.url,
	                       p->src_zid ? " as " : "", p->src_zid ? p->src_zid : "",
	                       p->dst.url, p->dst_zid ? " as " : "",
	                       p->dst_zid ? p->dst_zid : "");
	return 0;
bad_rule:
	fprintf(stderr, "imapferry: %s\n", error);
	return CLI_EXIT_USAGE;
}

struct foldermap *
cli_pair_new_foldermap(const struct cli_pair *p, const char **error_r)
{
	struct foldermap *fm = foldermap_new(&p->sside, &p->dside);

	for (size_t i = 0; i < p->n_inc; i++)
		if (foldermap_add_include(fm, p->includes[i], error_r) < 0)
			goto fail;
	for (size_t i = 0; i < p->n_exc; i++)
		if (foldermap_add_exclude(fm, p->excludes[i], error_r) < 0)
			goto fail;
	for (size_t i = 0; i < p->n_map; i++)
		if (foldermap_add_rule(fm, p->maps[i], error_r) < 0)
			goto fail;
	return fm;
fail:
	foldermap_free(&fm);
	return NULL;
}

int
cli_pair_dst_imap(const struct cli_pair *p, const struct cli_common *common,
                  const char *url, struct endpoint *ep)
{
	const char *why = NULL, *error;

	if (p->dst.kind != ENDPOINT_MAILDIR)
		why = "needs a maildir: target";
	else if (endpoint_parse(url, ep, &error) < 0)
		why = error;
	else if (ep->kind != ENDPOINT_IMAP)
		why = "an imap:// or imaps:// URL";
	else if (endpoint_load_password(ep, p->dst_pw, "IMAPFERRY_DST_PASSWORD",
	                                &error) < 0)
		why = error;
	if (why != NULL) {
		fprintf(stderr, "imapferry: --dst-imap: %s\n", why);
		return -1;
	}
	cli_apply_common(common, ep);
	ep->imap.label = "dovecot";
	return 0;
}

int
cli_pair_state_path(struct cli_pair *p, const char **path_r)
{
	const char *error;

	if (p->state_path == NULL) {
		p->default_state = state_default_path(p->src.url, p->dst.url, &error);
		if (p->default_state == NULL) {
			fprintf(stderr, "imapferry: %s (use --state FILE)\n", error);
			return -1;
		}
		p->state_path = p->default_state;
	}
	*path_r = p->state_path;
	return 0;
}

void
cli_pair_free(struct cli_pair *p)
{
	if (p->src_client != NULL)
		imap_client_logout(&p->src_client);
	if (p->dst_client != NULL)
		imap_client_logout(&p->dst_client);
	if (p->fm != NULL)
		foldermap_free(&p->fm);
	endpoint_free(&p->src);
	endpoint_free(&p->dst);
	net_tls_ctx_free(&p->tls);
	free(p->sprefix);
	free(p->dprefix);
	free(p->account);
	free(p->default_state);
	free(p->includes);
	free(p->excludes);
	free(p->maps);
	memset(p, 0, sizeof(*p));
}
