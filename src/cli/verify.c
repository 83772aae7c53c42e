/* verify.c: imapferry verify SRC DST: prove the copy. */
#include "pair.h"

#include "buf.h"
#include "json.h"
#include "state.h"
#include "verify.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { OPT_DEEP = OPT_PAIR_LAST, OPT_NO_STATE };

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

		printf("%-14s %s -> %s  src UID %" PRIu32 "  dst UID %" PRIu32 ": %s\n",
		       verify_kind_name(d->kind), d->src_folder, d->dst_folder,
		       d->src_uid, d->dst_uid, d->detail);
	}
	printf("verify: %u folders, %" PRIu64 " messages, %" PRIu64
	       " matched, %zu differences\n", r->folders, r->messages, r->matched,
	       r->count);
}

int
cmd_verify(int argc, char **argv)
{
	static const struct option longopts[] = {
		CLI_COMMON_LONGOPTS,
		CLI_PAIR_LONGOPTS,
		{ "deep", no_argument, NULL, OPT_DEEP },
		{ "no-state", no_argument, NULL, OPT_NO_STATE },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct cli_common common = { 0 };
	struct verify_options o = { 0 };
	struct verify_report r;
	struct cli_pair pair;
	const char *state_path, *error;
	struct state_db *db = NULL;
	bool no_state = false;
	int opt, ret, status = 2;

	cli_pair_init(&pair, argc);
	pair.allow_maildir_dst = true;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
		if ((ret = cli_common_option(&common, opt, optarg)) < 0)
			goto usage;
		if (ret > 0 || cli_pair_option(&pair, opt, optarg) > 0)
			continue;
		switch (opt) {
		case OPT_DEEP: o.deep = true; break;
		case OPT_NO_STATE: no_state = true; break;
		case 'h':
			puts("usage: imapferry verify [options] SRC DST\n"
			     CLI_PAIR_HELP
			     "  --deep                compare SHA-256 of every message\n"
			     "  --no-state            pair messages by fingerprint only\n"
			     "  --json                report as JSON\n"
			     "exit status: 0 no difference, 1 differences, 2 error");
			status = 0;
			goto out;
		default:
			goto usage;
		}
	}
	if (optind + 2 != argc)
		goto usage;
	if ((status = cli_pair_setup(&pair, &common, argv[optind],
	                             argv[optind + 1])) != 0)
		goto out;
	status = 2;
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
	status = r.count == 0 ? 0 : 1;
	verify_report_free(&r);
	goto out;
usage:
	fprintf(stderr, "usage: imapferry verify [options] SRC DST (see --help)\n");
	status = 2;
out:
	state_close(&db);
	cli_pair_free(&pair);
	return status;
}
