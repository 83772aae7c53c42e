/* check.c: imapferry check SRC DST (what clients will notice after the
 * switch) and imapferry dovecot-config SRC (a Dovecot configuration that
 * makes the new server look like the old one). The analysis and the
 * rendering are src/sync/check.c; this file only gathers the inventories. */
#include "pair.h"
#include "checkacct.h"

#include "buf.h"
#include "check.h"
#include "mailboxes.h"
#include "msgsum.h"
#include "source.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* EXAMINEs of target folders for their PERMANENTFLAGS, at most. */
#define CHECK_EXAMINE_MAX 2000

/* The folders of one side, owned: what struct check_folder borrows. */
struct side_data {
	struct imap_account_info info;
	bool have_info;
	struct check_folder *folders;
	uint64_t **sizes;
	char ***keywords;
	char ***perms;
	char **inbox_perms;
};

static void
side_data_free(struct side_data *d)
{
	for (size_t i = 0; d->have_info && i < d->info.count; i++) {
		free(d->sizes[i]);
		strv_free(&d->keywords[i]);
		strv_free(&d->perms[i]);
	}
	free(d->sizes);
	free(d->keywords);
	free(d->perms);
	free(d->folders);
	strv_free(&d->inbox_perms);
	if (d->have_info)
		imap_account_info_free(&d->info);
	memset(d, 0, sizeof(*d));
}

static void
side_data_alloc(struct side_data *d)
{
	size_t n = d->info.count + 1;

	d->have_info = true;
	d->folders = xcalloc(n, sizeof(*d->folders));
	d->sizes = xcalloc(n, sizeof(*d->sizes));
	d->keywords = xcalloc(n, sizeof(*d->keywords));
	d->perms = xcalloc(n, sizeof(*d->perms));
	for (size_t i = 0; i < d->info.count; i++) {
		const struct imap_mailbox_info *b = &d->info.boxes[i];
		struct check_folder *f = &d->folders[i];

		f->name = b->name;
		f->name_len = b->name_len;
		f->attrs = b->attrs;
		f->selectable = b->selectable;
		f->messages = b->messages;
	}
}

/* The distinct keywords of a folder's messages (flags not starting with
 * '\'), sorted; a new NULL-terminated vector. */
static char **
keywords_of(const struct msgsum_list *l)
{
	char **v = xcalloc(1, sizeof(char *));
	size_t n = 0;

	for (size_t i = 0; i < l->count; i++) {
		const char *p = l->items[i].flags != NULL ? l->items[i].flags : "";

		while (*p != '\0') {
			size_t len = strcspn(p, " ");
			bool seen = false;

			for (size_t k = 0; k < n && !seen; k++)
				seen = strlen(v[k]) == len && str_ieqn(v[k], p, len);
			if (len > 0 && p[0] != '\\' && !seen) {
				v = xreallocarray(v, n + 2, sizeof(char *));
				v[n++] = xstrndup(p, len);
				v[n] = NULL;
			}
			p += len;
			p += strspn(p, " ");
		}
	}
	return v;
}

/* The source's folders with every message's size and keywords (FLAGS
 * and RFC822.SIZE, no bodies). Returns 0, or -1 with *error_r;
 * *connect_failed_r when not even the connection worked. */
static int
load_source(struct source *s, struct side_data *d, bool *connect_failed_r,
            const char **error_r)
{
	bool refused;

	*connect_failed_r = true;
	if (source_connect(s, &refused, error_r) < 0)
		return -1;
	*connect_failed_r = false;
	if (source_inventory(s, IMAP_INV_STATUS, &d->info, error_r) < 0) {
		source_disconnect(s);
		return -1;
	}
	side_data_alloc(d);
	for (size_t i = 0; i < d->info.count; i++) {
		struct check_folder *f = &d->folders[i];
		struct source_folder st;
		struct msgsum_list l = { 0 };

		if (!f->selectable)
			continue;
		if (source_select(s, f->name, &st, error_r) < 0) {
			if (source_is_dead(s)) {
				source_disconnect(s);
				return -1;
			}
			/* refused (an ACL...): its sizes and keywords stay
			 * unknown, the copy will say more */
			continue;
		}
		if (st.exists > 0 &&
		    source_list_range(s, 1, UINT32_MAX, MSGSUM_FLAGS | MSGSUM_META,
		                      &l, error_r) < 0) {
			msgsum_list_free(&l);
			source_disconnect(s);
			return -1;
		}
		d->sizes[i] = xcalloc(l.count + 1, sizeof(uint64_t));
		for (size_t k = 0; k < l.count; k++)
			d->sizes[i][k] = l.items[k].size;
		f->sizes = d->sizes[i];
		f->n_sizes = l.count;
		d->keywords[i] = keywords_of(&l);
		f->keywords = d->keywords[i];
		msgsum_list_free(&l);
	}
	source_logout(s);
	return 0;
}

static bool
greeting_has(const char *greeting, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = greeting; p != NULL && *p != '\0'; p++)
		if (str_ieqn(p, word, n))
			return true;
	return false;
}

/* An IMAP target: folders, APPENDLIMIT, PERMANENTFLAGS of INBOX and of
 * each existing folder (SELECTed: nothing is changed but \Recent), what
 * its greeting says it is. */
static int
load_target(const struct imap_client_options *opts, struct side_data *d,
            struct check_side *side, bool *connect_failed_r,
            const char **error_r)
{
	const struct imap_strlist *caps;
	struct imap_client *c;
	size_t examined = 0;

	*connect_failed_r = true;
	if (imap_client_connect(opts, &c, NULL, error_r) < 0)
		return -1;
	*connect_failed_r = false;
	if (imap_account_inventory(c, 0, &d->info, error_r) < 0) {
		imap_client_free(&c);
		return -1;
	}
	side_data_alloc(d);
	caps = imap_client_caps(c);
	for (size_t i = 0; caps != NULL && i < caps->count; i++)
		if (str_ieqn(caps->items[i], "APPENDLIMIT=", 12) &&
		    !str_to_u64z(caps->items[i] + 12, UINT64_MAX, &side->appendlimit))
			side->appendlimit = 0;
	side->courier = greeting_has(imap_client_greeting(c), "Courier");
	side->case_insensitive = greeting_has(imap_client_greeting(c), "Exchange");
	for (size_t i = 0; i < d->info.count; i++) {
		const struct imap_mailbox_state *mb;

		if (!d->folders[i].selectable || examined++ >= CHECK_EXAMINE_MAX)
			continue;
		/* SELECT, not EXAMINE: a read-only folder announces no
		 * PERMANENTFLAGS a copy could use */
		if (imap_client_select(c, d->folders[i].name, false, error_r) < 0) {
			if (imap_client_is_dead(c)) {
				imap_client_free(&c);
				return -1;
			}
			continue;
		}
		mb = imap_client_mailbox(c);
		if (mb->permanentflags != NULL) {
			d->perms[i] = strv_dup(mb->permanentflags);
			d->folders[i].permanentflags = d->perms[i];
			if (str_ieq(d->folders[i].name, "INBOX"))
				d->inbox_perms = strv_dup(mb->permanentflags);
		}
	}
	side->permanentflags = d->inbox_perms;
	imap_client_logout(&c);
	return 0;
}

static const struct cli_use check_opts[] = {
	{ CLI_OPT_SRC_PWFILE, NULL }, { CLI_OPT_DST_PWFILE, NULL },
	{ CLI_OPT_SRC_AUTHZID, NULL }, { CLI_OPT_DST_AUTHZID, NULL },
	{ CLI_OPT_INCLUDE, NULL }, { CLI_OPT_EXCLUDE, NULL },
	{ CLI_OPT_MAP, NULL },
	{ CLI_OPT_SRC_POP3, "the source's POP3 account whose UIDLs copy\n"
	                    "keeps (pop3[s]://USER@HOST)" },
	{ CLI_OPT_JSON, "the findings as JSON" },
	CLI_NET_USES,
	{ CLI_OPT_NONE, NULL },
};

const struct cli_command cli_cmd_check = {
	.name = "check", .program = "imapferry", .synopsis = "[options] SRC DST",
	.intro = "Before anything is copied: lists what mail clients will notice\n"
	         "after the switch from SRC to DST (new UIDs, changed folder\n"
	         "paths, missing special-use folders, names the target cannot\n"
	         "hold, messages or keywords it refuses, POP3 UIDLs), each with\n"
	         "its severity, the folders concerned and the remedy.",
	.opts = check_opts,
	.trailer =
	    "SRC, DST: as for copy: imap://, imaps://, maildir:PATH[?flavor=courier]\n"
	    "exit status: 0 clients notice nothing, 1 they notice something,\n"
	    "2 usage, 3 a server could not be reached, refused the login or\n"
	    "failed during the inventory",
	.min_args = 2, .max_args = 2,
};

struct check_cli {
	struct cli_pair *pair;
	const char **src_pop3;
};

static int
check_option(void *ctx, int id, const char *arg, uint64_t num)
{
	struct check_cli *c = ctx;

	(void)num;
	if (cli_pair_option(c->pair, id, arg) > 0)
		return 0;
	if (id == CLI_OPT_SRC_POP3) {
		*c->src_pop3 = arg;
		return 0;
	}
	return -1;
}

static enum maildir_flavor
flavor_of(const struct endpoint *ep)
{
	return strcmp(ep->flavor, "courier") == 0 ? MAILDIR_COURIER :
	       MAILDIR_DOVECOT;
}

int
cmd_check(int argc, char **argv)
{
	struct cli_common common = { 0 };
	struct cli_pair pair;
	struct check_input in;
	struct check_report r = { 0 };
	struct side_data sd = { 0 }, dd = { 0 };
	struct source source = { 0 };
	struct foldermap *fm = NULL;
	const char *src_pop3 = NULL, *error;
	struct check_cli c = { .pair = &pair, .src_pop3 = &src_pop3 };
	bool conn_failed;
	struct buf out;
	int argi, status = 2;

	memset(&in, 0, sizeof(in));
	buf_init(&out, SIZE_MAX / 2);
	cli_pair_init(&pair, argc);
	pair.allow_maildir_dst = true;
	pair.allow_maildir_src = true;
	if (cli_parse(&cli_cmd_check, argc, argv, &common, check_option, &c, &argi,
	              &status) < 0)
		goto out;
	/* 1 from the pair: a server could not be reached or refused us */
	if ((status = cli_pair_setup(&pair, &common, argv[argi],
	                             argv[argi + 1])) != 0) {
		if (status == 1)
			status = 3;
		goto out;
	}
	status = 3;
	source.kind = pair.src.kind == ENDPOINT_MAILDIR ? SOURCE_MAILDIR :
	              SOURCE_IMAP;
	source.imap = &pair.src.imap;
	if (source.kind == SOURCE_MAILDIR) {
		source.root = pair.src.path;
		maildir_options_init(&source.md);
		source.md.flavor = flavor_of(&pair.src);
	}
	if (load_source(&source, &sd, &conn_failed, &error) < 0) {
		fprintf(stderr, "imapferry: source%s: %s\n", conn_failed ? "" :
		        " inventory", error);
		goto out;
	}
	in.src.store = pair.src.kind == ENDPOINT_MAILDIR ? CHECK_STORE_MAILDIR :
	               CHECK_STORE_IMAP;
	in.src.url = pair.src.url;
	in.src.host = pair.src.kind == ENDPOINT_IMAP ? pair.src.host : NULL;
	in.src.prefix = pair.sside.prefix;
	in.src.separator = pair.sside.separator;
	in.src.folders = sd.folders;
	in.src.count = sd.info.count;
	if (pair.src.kind == ENDPOINT_MAILDIR) {
		in.src.flavor = flavor_of(&pair.src);
		in.src.courier = in.src.flavor == MAILDIR_COURIER;
	}
	in.dst.url = pair.dst.url;
	in.dst.prefix = pair.dside.prefix;
	in.dst.separator = pair.dside.separator;
	if (pair.dst.kind == ENDPOINT_MAILDIR) {
		in.dst.store = CHECK_STORE_MAILDIR;
		in.dst.flavor = flavor_of(&pair.dst);
		in.dst.courier = in.dst.flavor == MAILDIR_COURIER;
	} else {
		in.dst.store = CHECK_STORE_IMAP;
		in.dst.host = pair.dst.host;
		if (load_target(&pair.dst.imap, &dd, &in.dst, &conn_failed,
		                &error) < 0) {
			fprintf(stderr, "imapferry: target%s: %s\n", conn_failed ?
			        "" : " inventory", error);
			goto out;
		}
		in.dst.folders = dd.folders;
		in.dst.count = dd.info.count;
	}
	in.src_pop3 = src_pop3;
	if ((fm = cli_pair_new_foldermap(&pair, &error)) == NULL) {
		fprintf(stderr, "imapferry: %s\n", error);
		status = 2;
		goto out;
	}
	check_analyze(&in, fm, &r);
	if ((common.json ? check_render_json(&r, &out) :
	     check_render_text(&r, &out)) < 0)
		fatal("check report too large");
	fputs(buf_data(&out), stdout);
	if (common.json)
		fputc('\n', stdout);
	status = check_report_noticed(&r) ? 1 : 0;
out:
	check_report_free(&r);
	foldermap_free(&fm);
	side_data_free(&sd);
	side_data_free(&dd);
	buf_free(&out);
	cli_pair_free(&pair);
	return status;
}

/* ------------------------------------------------- one account of plan */

/* The personal namespace of an inventory. */
static void
side_ns(const struct imap_account_info *info, const char **prefix_r,
        char *sep_r)
{
	*prefix_r = info->ns_count[0] > 0 ? info->ns[0][0].prefix : "";
	*sep_r = info->separator;
	if (*sep_r == '\0' && info->ns_count[0] > 0)
		*sep_r = info->ns[0][0].delimiter;
}

static void
slot_take(struct sched_slots *s, const char *key)
{
	if (s != NULL && key != NULL)
		sched_slots_acquire(s, key);
}

static void
slot_give(struct sched_slots *s, const char *key)
{
	if (s != NULL && key != NULL)
		sched_slots_release(s, key);
}

int
check_account_run(const struct check_account_args *a, struct check_report *r,
                  const char **error_r)
{
	struct side_data sd = { 0 }, dd = { 0 };
	struct source source = { 0 };
	struct check_input in;
	struct foldermap_side fs, fd;
	struct foldermap *fm = NULL;
	const char *error;
	bool conn_failed;
	int ret = -1;

	memset(&in, 0, sizeof(in));
	memset(r, 0, sizeof(*r));
	source.kind = SOURCE_IMAP;
	source.imap = a->src;
	slot_take(a->src_slots, a->src_slot);
	ret = load_source(&source, &sd, &conn_failed, &error);
	slot_give(a->src_slots, a->src_slot);
	if (ret < 0) {
		*error_r = err_set("source%s: %s", conn_failed ? "" : " inventory",
		                   error);
		goto out;
	}
	ret = -1;
	in.src.store = CHECK_STORE_IMAP;
	in.src.url = a->src_url;
	in.src.host = a->src->host;
	side_ns(&sd.info, &in.src.prefix, &in.src.separator);
	in.src.folders = sd.folders;
	in.src.count = sd.info.count;
	in.dst.url = a->dst_url;
	if (a->dst == NULL) {
		in.dst.store = CHECK_STORE_MAILDIR;
		in.dst.flavor = a->dst_flavor;
		in.dst.courier = a->dst_flavor == MAILDIR_COURIER;
		in.dst.prefix = "";
		in.dst.separator = '.';
	} else {
		in.dst.store = CHECK_STORE_IMAP;
		in.dst.host = a->dst->host;
		slot_take(a->dst_slots, a->dst_slot);
		ret = load_target(a->dst, &dd, &in.dst, &conn_failed, &error);
		slot_give(a->dst_slots, a->dst_slot);
		if (ret < 0) {
			*error_r = err_set("target%s: %s", conn_failed ? "" :
			                   " inventory", error);
			ret = -1;
			goto out;
		}
		ret = -1;
		side_ns(&dd.info, &in.dst.prefix, &in.dst.separator);
		in.dst.folders = dd.folders;
		in.dst.count = dd.info.count;
	}
	fs = (struct foldermap_side){ .separator = in.src.separator,
	                              .prefix = in.src.prefix };
	fd = (struct foldermap_side){ .separator = in.dst.separator,
	                              .prefix = in.dst.prefix };
	fm = foldermap_new(&fs, &fd);
	for (size_t i = 0; i < a->n_inc; i++)
		if (foldermap_add_include(fm, a->includes[i], error_r) < 0)
			goto out;
	for (size_t i = 0; i < a->n_exc; i++)
		if (foldermap_add_exclude(fm, a->excludes[i], error_r) < 0)
			goto out;
	for (size_t i = 0; i < a->n_map; i++)
		if (foldermap_add_rule(fm, a->maps[i], error_r) < 0)
			goto out;
	check_analyze(&in, fm, r);
	ret = 0;
out:
	foldermap_free(&fm);
	side_data_free(&sd);
	side_data_free(&dd);
	return ret;
}

/* ------------------------------------------------------ dovecot-config */

static const struct cli_use dconf_opts[] = {
	{ CLI_OPT_PASSWORD_FILE, NULL },
	{ CLI_OPT_AUTHZID, NULL },
	CLI_NET_USES,
	{ CLI_OPT_NONE, NULL },
};

const struct cli_command cli_cmd_dovecot_config = {
	.name = "dovecot-config", .program = "imapferry",
	.synopsis = "[options] SRC",
	.intro = "Prints a Dovecot configuration fragment that makes the new\n"
	         "server show the migrated Maildir as SRC showed the account:\n"
	         "the personal namespace with SRC's prefix and separator, the\n"
	         "special-use folders, the POP3 UIDL format. Include it after\n"
	         "conf.d/ in dovecot.conf (see README, Cutover procedure).",
	.opts = dconf_opts,
	.trailer = "SRC: imap://USER@HOST[:PORT] or imaps://... (any account of\n"
	           "  the old server with the usual folders)\n"
	           "exit status: 0 printed, 2 usage, 3 could not connect",
	.min_args = 1, .max_args = 1,
};

struct dconf_cli {
	const char *password_file, *authzid;
};

static int
dconf_option(void *ctx, int id, const char *arg, uint64_t num)
{
	struct dconf_cli *c = ctx;

	(void)num;
	switch (id) {
	case CLI_OPT_PASSWORD_FILE: c->password_file = arg; return 0;
	case CLI_OPT_AUTHZID: c->authzid = arg; return 0;
	default: return -1;
	}
}

int
cmd_dovecot_config(int argc, char **argv)
{
	struct cli_common common = { 0 };
	struct dconf_cli c = { 0 };
	struct endpoint ep;
	struct imap_client *client;
	struct side_data d = { 0 };
	struct check_side side;
	const char *error;
	struct buf out;
	int argi, status;

	if (cli_parse(&cli_cmd_dovecot_config, argc, argv, &common, dconf_option, &c, &argi,
	              &status) < 0)
		return status;
	if (endpoint_parse(argv[argi], &ep, &error) < 0 ||
	    ep.kind != ENDPOINT_IMAP ||
	    endpoint_load_password(&ep, c.password_file, "IMAPFERRY_PASSWORD",
	                           &error) < 0) {
		if (ep.kind != ENDPOINT_IMAP)
			error = "dovecot-config needs an imap:// or imaps:// URL";
		fprintf(stderr, "imapferry: %s\n", error);
		endpoint_free(&ep);
		return 2;
	}
	cli_apply_common(&common, &ep);
	if (c.authzid != NULL) {
		ep.authzid = xstrdup(c.authzid);
		ep.imap.authzid = ep.authzid;
	}
	ep.imap.label = "src";
	if (imap_client_connect(&ep.imap, &client, NULL, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		endpoint_free(&ep);
		return 3;
	}
	if (imap_account_inventory(client, 0, &d.info, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		imap_client_free(&client);
		endpoint_free(&ep);
		return 3;
	}
	imap_client_logout(&client);
	side_data_alloc(&d);
	memset(&side, 0, sizeof(side));
	side.store = CHECK_STORE_IMAP;
	side.url = ep.url;
	side.host = ep.host;
	side.prefix = d.info.ns_count[0] > 0 ? d.info.ns[0][0].prefix : "";
	side.separator = d.info.separator;
	if (side.separator == '\0' && d.info.ns_count[0] > 0)
		side.separator = d.info.ns[0][0].delimiter;
	side.folders = d.folders;
	side.count = d.info.count;
	buf_init(&out, SIZE_MAX / 2);
	if (check_dovecot_config(&side, &out) < 0)
		fatal("configuration too large");
	fputs(buf_data(&out), stdout);
	buf_free(&out);
	side_data_free(&d);
	endpoint_free(&ep);
	return 0;
}
