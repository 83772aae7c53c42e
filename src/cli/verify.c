/* verify.c: imapferry verify SRC DST: prove the copy. */
#include "pair.h"

#include "buf.h"
#include "json.h"
#include "mutf7.h"
#include "state.h"
#include "verify.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


static void
print_report(const struct verify_report *r, bool json)
{
	if (json) {
		struct buf out;
		struct json j;

		buf_init(&out, SIZE_MAX / 2);
		json_init(&j, &out);
		json_obj_begin(&j);
		json_key(&j, "folders"); json_u64(&j, r->folders);
		json_key(&j, "messages"); json_u64(&j, r->messages);
		json_key(&j, "matched"); json_u64(&j, r->matched);
		json_key(&j, "differences"); json_u64(&j, r->count);
		json_key(&j, "diffs");
		json_arr_begin(&j);
		for (size_t i = 0; i < r->count; i++) {
			const struct verify_diff *d = &r->diffs[i];

			json_obj_begin(&j);
			json_key(&j, "kind"); json_str(&j, verify_kind_name(d->kind));
			json_key(&j, "src_folder"); json_str(&j, d->src_folder);
			json_key(&j, "dst_folder"); json_str(&j, d->dst_folder);
			json_key(&j, "src_uid"); json_u64(&j, d->src_uid);
			json_key(&j, "dst_uid"); json_u64(&j, d->dst_uid);
			json_key(&j, "detail"); json_str(&j, d->detail);
			json_obj_end(&j);
		}
		json_arr_end(&j);
		json_obj_end(&j);
		puts(buf_data(&out));
		buf_free(&out);
		return;
	}
	for (size_t i = 0; i < r->count; i++) {
		const struct verify_diff *d = &r->diffs[i];

		/* names for people in UTF-8 (the wire names stay in --json);
		 * a UID only where there is one (an extra message has no
		 * source UID, a missing one no target UID) */
		char *sf = mutf7_display(d->src_folder != NULL ? d->src_folder : "");
		char *df = mutf7_display(d->dst_folder != NULL ? d->dst_folder : "");

		printf("%-14s %s -> %s", verify_kind_name(d->kind), sf, df);
		if (d->src_uid != 0)
			printf("  src UID %" PRIu32, d->src_uid);
		if (d->dst_uid != 0)
			printf("  dst UID %" PRIu32, d->dst_uid);
		printf(": %s\n", d->detail);
		free(sf);
		free(df);
	}
	printf("verify: %u folders, %" PRIu64 " messages, %" PRIu64
	       " matched, %zu differences\n", r->folders, r->messages, r->matched,
	       r->count);
}

static const struct cli_use verify_opts[] = {
	CLI_PAIR_USES,
	{ CLI_OPT_DEEP, NULL },
	{ CLI_OPT_NO_STATE, NULL },
	{ CLI_OPT_DST_IMAP, "Dovecot Maildir target: the Dovecot serving it\n"
	                    "(imap://USER*MASTER@HOST, the password as the\n"
	                    "target's): flags and keywords are compared as\n"
	                    "it serves them (beyond the file names' 26)" },
	{ CLI_OPT_JSON, "the report as JSON" },
	CLI_NET_USES,
	{ CLI_OPT_NONE, NULL },
};

const struct cli_command cli_cmd_verify = {
	.name = "verify", .program = "imapferry", .synopsis = "[options] SRC DST",
	.intro = "Compares an account on two servers, folder by folder and\n"
	         "message by message (paired through the state database when\n"
	         "it exists, else by fingerprint).",
	.opts = verify_opts,
	.trailer = "DST may be maildir:PATH[?flavor=dovecot|courier].\n"
	           CLI_EXIT_HELP,
	.min_args = 2, .max_args = 2,
};

struct verify_cli {
	struct cli_pair *pair;
	struct verify_options *o;
	bool *no_state;
	const char **dst_imap;
};

static int
verify_option(void *ctx, int id, const char *arg, uint64_t num)
{
	struct verify_cli *c = ctx;

	if (cli_pair_option(c->pair, id, arg) > 0)
		return 0;
	switch (id) {
	case CLI_OPT_DEEP: c->o->deep = true; return 0;
	case CLI_OPT_NO_STATE: *c->no_state = true; return 0;
	case CLI_OPT_DST_IMAP: *c->dst_imap = arg; return 0;
	default: return -1;
	}
}

int
cmd_verify(int argc, char **argv)
{
	struct cli_common common = { 0 };
	struct verify_options o = { 0 };
	struct verify_report r;
	struct cli_pair pair;
	const char *state_path, *error;
	struct state_db *db = NULL;
	bool no_state = false;
	const char *dst_imap = NULL;
	struct endpoint dovecot = { 0 };
	struct verify_cli c = { .pair = &pair, .o = &o, .no_state = &no_state,
	                        .dst_imap = &dst_imap };
	int argi, status = 2;

	cli_pair_init(&pair, argc);
	pair.allow_maildir_dst = true;
	if (cli_parse(&cli_cmd_verify, argc, argv, &common, verify_option, &c, &argi,
	              &status) < 0)
		goto out;
	if (dst_imap != NULL && strncmp(argv[argi + 1], "maildir:", 8) != 0) {
		fprintf(stderr, "imapferry: --dst-imap needs a maildir: target\n");
		status = CLI_EXIT_USAGE;
		goto out;
	}
	if ((status = cli_pair_setup(&pair, &common, argv[argi],
	                             argv[argi + 1])) != 0)
		goto out;
	if (dst_imap != NULL) {
		/* the Dovecot serving the Maildir: keywords as it serves them */
		if (cli_pair_dst_imap(&pair, &common, dst_imap, &dovecot) < 0) {
			status = CLI_EXIT_USAGE;
			goto out;
		}
		o.dst_imap = &dovecot.imap;
	}
	status = CLI_EXIT_ERROR;
	/* The state pairs messages exactly; it is used when it exists. */
	if (!no_state && cli_pair_state_path(&pair, &state_path) == 0 &&
	    access(state_path, F_OK) == 0 &&
	    state_open(state_path, &db, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		goto out;
	}
	o.db = db;
	o.account = pair.account;
	o.fm = pair.fm;
	if (pair.dst.kind == ENDPOINT_MAILDIR ?
	    verify_account_maildir(&pair.src.imap, pair.dst.path,
	                           strcmp(pair.dst.flavor, "courier") == 0 ?
	                           MAILDIR_COURIER : MAILDIR_DOVECOT, &o, &r,
	                           &error) < 0 :
	    verify_account(&pair.src.imap, &pair.dst.imap, &o, &r, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		goto out;
	}
	print_report(&r, common.json);
	status = r.count == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURES;
	verify_report_free(&r);
out:
	state_close(&db);
	endpoint_free(&dovecot);
	cli_pair_free(&pair);
	return status;
}
