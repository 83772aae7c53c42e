/* ls.c: imapferry ls URL: what a server offers and holds. */
#include "cli.h"

#include "buf.h"
#include "json.h"
#include "log.h"
#include "mailboxes.h"
#include "mutf7.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* UTF-8 display name of a folder (raw name if it is not valid mUTF-7). */
static char *
display_name(const struct imap_mailbox_info *box)
{
	struct buf b;

	buf_init(&b, 64 * 1024);
	if (mutf7_decode(box->name, box->name_len, &b) < 0) {
		buf_free(&b);
		return xstrndup(box->name, box->name_len);
	}
	return buf_take(&b);
}

static void
json_ns(struct json *j, const struct imap_account_info *info, int k)
{
	json_arr_begin(j);
	for (size_t i = 0; i < info->ns_count[k]; i++) {
		char d[2] = { info->ns[k][i].delimiter, '\0' };

		json_obj_begin(j);
		json_key(j, "prefix");
		json_str(j, info->ns[k][i].prefix);
		json_key(j, "separator");
		if (d[0] != '\0')
			json_str(j, d);
		else
			json_null(j);
		json_obj_end(j);
	}
	json_arr_end(j);
}

static const char *
tls_mode(const struct endpoint *ep)
{
	if (ep->imap.implicit_tls)
		return "implicit";
	return "starttls";
}

static void
print_json(struct imap_client *c, const struct endpoint *ep,
           const struct imap_account_info *info)
{
	static const char *nsnames[] = { "personal", "other", "shared" };
	const struct imap_strlist *caps = imap_client_caps(c);
	struct net_conn *conn = imap_client_conn(c);
	uint64_t tot_msgs = 0, tot_size = 0;
	char sep[2] = { info->separator, '\0' };
	struct json j;
	struct buf out;

	buf_init(&out, SIZE_MAX / 2);
	json_init(&j, &out);
	json_obj_begin(&j);
	json_key(&j, "server");
	json_obj_begin(&j);
	json_key(&j, "host");
	json_str(&j, ep->host);
	json_key(&j, "port");
	json_u64(&j, ep->port != NULL ? strtoull(ep->port, NULL, 10) :
	                                (ep->imap.implicit_tls ? 993 : 143));
	json_key(&j, "tls");
	json_str(&j, net_conn_is_tls(conn) ? tls_mode(ep) : "none");
	json_key(&j, "tls_info");
	json_str(&j, net_conn_describe(conn));
	json_key(&j, "greeting");
	json_str(&j, imap_client_greeting(c));
	json_key(&j, "capabilities");
	json_arr_begin(&j);
	for (size_t i = 0; i < caps->count; i++)
		json_str(&j, caps->items[i]);
	json_arr_end(&j);
	json_obj_end(&j);
	json_key(&j, "namespaces");
	json_obj_begin(&j);
	for (int k = 0; k < 3; k++) {
		json_key(&j, nsnames[k]);
		json_ns(&j, info, k);
	}
	json_obj_end(&j);
	json_key(&j, "separator");
	if (sep[0] != '\0')
		json_str(&j, sep);
	else
		json_null(&j);
	json_key(&j, "folders");
	json_arr_begin(&j);
	for (size_t i = 0; i < info->count; i++) {
		const struct imap_mailbox_info *box = &info->boxes[i];
		char *name = display_name(box);

		json_obj_begin(&j);
		json_key(&j, "name");
		json_str(&j, name);
		json_key(&j, "raw_name");
		json_strn(&j, box->name, box->name_len);
		json_key(&j, "attributes");
		json_arr_begin(&j);
		for (char **a = box->attr_names; *a != NULL; a++)
			json_str(&j, *a);
		json_arr_end(&j);
		json_key(&j, "special_use");
		json_str(&j, imap_special_use_name(box->attrs));
		json_key(&j, "selectable");
		json_bool(&j, box->selectable);
		json_key(&j, "messages");
		json_u64(&j, box->messages);
		json_key(&j, "size");
		json_u64(&j, box->size);
		json_key(&j, "size_source");
		json_str(&j, box->size_source);
		json_key(&j, "uidvalidity");
		json_u64(&j, box->uidvalidity);
		json_key(&j, "uidnext");
		json_u64(&j, box->uidnext);
		json_obj_end(&j);
		tot_msgs += box->messages;
		tot_size += box->size;
		free(name);
	}
	json_arr_end(&j);
	json_key(&j, "totals");
	json_obj_begin(&j);
	json_key(&j, "folders");
	json_u64(&j, info->count);
	json_key(&j, "messages");
	json_u64(&j, tot_msgs);
	json_key(&j, "size");
	json_u64(&j, tot_size);
	json_obj_end(&j);
	json_obj_end(&j);
	puts(buf_data(&out));
	buf_free(&out);
}

static void
print_text(struct imap_client *c, const struct endpoint *ep,
           const struct imap_account_info *info)
{
	static const char *nsnames[] = { "personal", "other users", "shared" };
	const struct imap_strlist *caps = imap_client_caps(c);
	struct net_conn *conn = imap_client_conn(c);
	uint64_t tot_msgs = 0, tot_size = 0;

	printf("server:       %s (%s)\n", ep->host, net_conn_describe(conn));
	printf("greeting:     %s\n", imap_client_greeting(c));
	printf("capabilities:");
	for (size_t i = 0; i < caps->count; i++)
		printf(" %s", caps->items[i]);
	printf("\n");
	for (int k = 0; k < 3; k++) {
		printf("namespace %s:", nsnames[k]);
		if (info->ns_count[k] == 0)
			printf(" none");
		for (size_t i = 0; i < info->ns_count[k]; i++)
			printf(" \"%s\" (separator %c)", info->ns[k][i].prefix,
			       info->ns[k][i].delimiter ? info->ns[k][i].delimiter : '-');
		printf("\n");
	}
	printf("separator:    %c\n\n", info->separator ? info->separator : '-');
	printf("%-36s %-10s %9s %14s %11s %9s  %s\n", "FOLDER", "SPECIAL",
	       "MESSAGES", "BYTES", "UIDVALIDITY", "UIDNEXT", "ATTRIBUTES");
	for (size_t i = 0; i < info->count; i++) {
		const struct imap_mailbox_info *box = &info->boxes[i];
		const char *su = imap_special_use_name(box->attrs);
		char *name = display_name(box);

		/* pad by characters, not bytes (UTF-8 names) */
		size_t chars = 0;
		for (const char *q = name; *q != '\0'; q++)
			if (((unsigned char)*q & 0xc0) != 0x80)
				chars++;
		printf("%s%*s %-10s ", name, chars < 36 ? (int)(36 - chars) : 0, "",
		       su != NULL ? su : "");
		if (box->selectable)
			printf("%9" PRIu32 " %14" PRIu64 " %11" PRIu32 " %9" PRIu32 " ",
			       box->messages, box->size, box->uidvalidity, box->uidnext);
		else
			printf("%9s %14s %11s %9s ", "-", "-", "-", "-");
		for (char **a = box->attr_names; *a != NULL; a++)
			printf(" %s", *a);
		printf("\n");
		tot_msgs += box->messages;
		tot_size += box->size;
		free(name);
	}
	printf("\ntotal: %zu folders, %" PRIu64 " messages, %" PRIu64 " bytes\n",
	       info->count, tot_msgs, tot_size);
}

static const struct cli_use ls_opts[] = {
	{ CLI_OPT_PASSWORD_FILE, NULL },
	{ CLI_OPT_AUTHZID, NULL },
	{ CLI_OPT_JSON, "one JSON object: server, namespaces, separator,\n"
	                "folders, totals" },
	CLI_NET_USES,
	{ CLI_OPT_NONE, NULL },
};

const struct cli_command cli_cmd_ls = {
	.name = "ls", .program = "imapferry", .synopsis = "[options] URL",
	.intro = "Shows a server's greeting, capabilities, namespaces and\n"
	         "separator, then every folder with its attributes, special use,\n"
	         "messages and size.",
	.opts = ls_opts,
	.trailer = "URL: imap://USER@HOST[:PORT] or imaps://USER@HOST[:PORT]\n"
	           "  (see imapferry --help)",
	.min_args = 1, .max_args = 1,
};

struct ls_cli {
	const char *password_file, *authzid;
};

static int
ls_option(void *ctx, int id, const char *arg, uint64_t num)
{
	struct ls_cli *c = ctx;

	switch (id) {
	case CLI_OPT_PASSWORD_FILE: c->password_file = arg; return 0;
	case CLI_OPT_AUTHZID: c->authzid = arg; return 0;
	default: return -1;
	}
}

int
cmd_ls(int argc, char **argv)
{
	struct cli_common common = { 0 };
	struct ls_cli c = { 0 };
	const char *password_file, *authzid, *error;
	struct endpoint ep;
	struct imap_client *client;
	struct imap_account_info info;
	int argi, status;

	if (cli_parse(&cli_cmd_ls, argc, argv, &common, ls_option, &c, &argi,
	              &status) < 0)
		return status;
	password_file = c.password_file;
	authzid = c.authzid;
	if (endpoint_parse(argv[argi], &ep, &error) < 0 ||
	    ep.kind != ENDPOINT_IMAP ||
	    endpoint_load_password(&ep, password_file, "IMAPFERRY_PASSWORD",
	                           &error) < 0) {
		if (ep.kind != ENDPOINT_IMAP)
			error = "ls needs an imap:// or imaps:// URL";
		fprintf(stderr, "imapferry: %s\n", error);
		endpoint_free(&ep);
		return CLI_EXIT_USAGE;
	}
	cli_apply_common(&common, &ep);
	if (authzid != NULL) {
		ep.authzid = xstrdup(authzid);
		ep.imap.authzid = ep.authzid;
	}
	ep.imap.label = "ls";
	if (imap_client_connect(&ep.imap, &client, NULL, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		endpoint_free(&ep);
		return CLI_EXIT_ERROR;
	}
	if (imap_account_inventory(client, IMAP_INV_STATUS | IMAP_INV_SIZE,
	                           &info, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		imap_client_free(&client);
		endpoint_free(&ep);
		return CLI_EXIT_ERROR;
	}
	if (common.json)
		print_json(client, &ep, &info);
	else
		print_text(client, &ep, &info);
	imap_account_info_free(&info);
	imap_client_logout(&client);
	endpoint_free(&ep);
	return CLI_EXIT_OK;
}
