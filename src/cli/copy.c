/* copy.c: imapferry copy SRC DST: one account, incrementally. */
#include "cli.h"

#include "buf.h"
#include "copy.h"
#include "foldermap.h"
#include "json.h"
#include "log.h"
#include "mailboxes.h"
#include "state.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
	OPT_SRC_PWFILE = OPT_FIRST_LOCAL, OPT_DST_PWFILE, OPT_SRC_AUTHZID,
	OPT_DST_AUTHZID, OPT_STATE, OPT_INCLUDE, OPT_EXCLUDE, OPT_MAP,
	OPT_DELETE_MISSING, OPT_SKIP_DELETED, OPT_DRY_RUN, OPT_NO_SUBS,
	OPT_FETCH_BATCH, OPT_APPEND_DEPTH, OPT_SPOOL_DIR,
};

/* The side of the pair a namespace/separator comes from: asks the server
 * once (cheap: CAPABILITY is known, NAMESPACE + LIST "" "") . */
static int
probe_side(const struct endpoint *ep, struct foldermap_side *side,
           char **prefix_r, const char **error_r)
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
	imap_client_logout(&c);
	return 0;
}

static void
print_summary(const struct copy_stats *st, bool json, bool dry_run)
{
	double rate = st->seconds > 0 ? (double)st->copied / st->seconds : 0;
	double mbs = st->seconds > 0 ? (double)st->bytes / 1e6 / st->seconds : 0;

	if (json) {
		struct buf out;
		struct json j;

		buf_init(&out, 1 << 20);
		json_init(&j, &out);
		json_obj_begin(&j);
		json_key(&j, "dry_run"); json_bool(&j, dry_run);
		json_key(&j, "folders"); json_u64(&j, st->folders);
		json_key(&j, "folders_failed"); json_u64(&j, st->folders_failed);
		json_key(&j, "folders_created"); json_u64(&j, st->folders_created);
		json_key(&j, "copied"); json_u64(&j, st->copied);
		json_key(&j, "skipped"); json_u64(&j, st->skipped);
		json_key(&j, "failed"); json_u64(&j, st->failed);
		json_key(&j, "flags_updated"); json_u64(&j, st->flags_updated);
		json_key(&j, "expunged"); json_u64(&j, st->expunged);
		json_key(&j, "dropped_flags"); json_u64(&j, st->dropped_flags);
		json_key(&j, "subscribed"); json_u64(&j, st->subscribed);
		json_key(&j, "bytes"); json_u64(&j, st->bytes);
		json_key(&j, "seconds"); json_double(&j, st->seconds);
		json_key(&j, "messages_per_second"); json_double(&j, rate);
		json_obj_end(&j);
		puts(buf_data(&out));
		buf_free(&out);
		return;
	}
	printf("%s%u folders (%u failed, %u created), %" PRIu64 " copied, %" PRIu64
	       " skipped, %" PRIu64 " failed, %" PRIu64 " flag updates, %" PRIu64
	       " expunged, %" PRIu64 " bytes in %.1f s (%.0f msg/s, %.1f MB/s)\n",
	       dry_run ? "dry run: would do: " : "copy: ",
	       st->folders, st->folders_failed, st->folders_created, st->copied,
	       st->skipped, st->failed, st->flags_updated, st->expunged, st->bytes,
	       st->seconds, rate, mbs);
}

int
cmd_copy(int argc, char **argv)
{
	static const struct option longopts[] = {
		CLI_COMMON_LONGOPTS,
		{ "src-password-file", required_argument, NULL, OPT_SRC_PWFILE },
		{ "dst-password-file", required_argument, NULL, OPT_DST_PWFILE },
		{ "src-authzid", required_argument, NULL, OPT_SRC_AUTHZID },
		{ "dst-authzid", required_argument, NULL, OPT_DST_AUTHZID },
		{ "state", required_argument, NULL, OPT_STATE },
		{ "include", required_argument, NULL, OPT_INCLUDE },
		{ "exclude", required_argument, NULL, OPT_EXCLUDE },
		{ "map", required_argument, NULL, OPT_MAP },
		{ "delete-missing", no_argument, NULL, OPT_DELETE_MISSING },
		{ "skip-deleted", no_argument, NULL, OPT_SKIP_DELETED },
		{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
		{ "no-subscriptions", no_argument, NULL, OPT_NO_SUBS },
		{ "fetch-batch", required_argument, NULL, OPT_FETCH_BATCH },
		{ "append-depth", required_argument, NULL, OPT_APPEND_DEPTH },
		{ "spool-dir", required_argument, NULL, OPT_SPOOL_DIR },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct cli_common common = { 0 };
	struct copy_options o = { 0 };
	struct copy_stats st;
	const char *src_pw = NULL, *dst_pw = NULL, *src_zid = NULL, *dst_zid = NULL;
	const char *state_path = NULL, *error;
	const char **includes = xcalloc((size_t)argc + 1, sizeof(char *));
	const char **excludes = xcalloc((size_t)argc + 1, sizeof(char *));
	const char **maps = xcalloc((size_t)argc + 1, sizeof(char *));
	size_t n_inc = 0, n_exc = 0, n_map = 0;
	struct endpoint src, dst;
	struct foldermap_side sside = { 0 }, dside = { 0 };
	char *sprefix = NULL, *dprefix = NULL, *account = NULL, *default_state = NULL;
	struct state_db *db = NULL;
	int opt, ret, status = 1;
	uint64_t v;

	memset(&src, 0, sizeof(src));
	memset(&dst, 0, sizeof(dst));
	optind = 1;
	while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
		if ((ret = cli_common_option(&common, opt, optarg)) < 0)
			goto usage;
		if (ret > 0)
			continue;
		switch (opt) {
		case OPT_SRC_PWFILE: src_pw = optarg; break;
		case OPT_DST_PWFILE: dst_pw = optarg; break;
		case OPT_SRC_AUTHZID: src_zid = optarg; break;
		case OPT_DST_AUTHZID: dst_zid = optarg; break;
		case OPT_STATE: state_path = optarg; break;
		case OPT_INCLUDE: includes[n_inc++] = optarg; break;
		case OPT_EXCLUDE: excludes[n_exc++] = optarg; break;
		case OPT_MAP: maps[n_map++] = optarg; break;
		case OPT_DELETE_MISSING: o.delete_missing = true; break;
		case OPT_SKIP_DELETED: o.skip_deleted = true; break;
		case OPT_DRY_RUN: o.dry_run = true; break;
		case OPT_NO_SUBS: o.no_subscriptions = true; break;
		case OPT_SPOOL_DIR: o.spool_dir = optarg; break;
		case OPT_FETCH_BATCH:
			if (!str_to_u64z(optarg, 10000, &v) || v == 0)
				goto usage;
			o.fetch_batch = (unsigned)v;
			break;
		case OPT_APPEND_DEPTH:
			if (!str_to_u64z(optarg, 1000, &v) || v == 0)
				goto usage;
			o.append_depth = (unsigned)v;
			break;
		case 'h':
			puts("usage: imapferry copy [options] SRC DST\n"
			     "  --src-password-file F / --dst-password-file F\n"
			     "      (else $IMAPFERRY_SRC_PASSWORD / $IMAPFERRY_DST_PASSWORD)\n"
			     "  --src-authzid ID / --dst-authzid ID   admin login on behalf of ID\n"
			     "  --state FILE          state database (default under ~/.local/state)\n"
			     "  --include RE / --exclude RE   folders to copy (regex on the name)\n"
			     "  --map 'OLD=NEW'       rename folders (regex, \\1..\\9)\n"
			     "  --delete-missing      expunge on the target what the source lost\n"
			     "  --skip-deleted        do not copy messages flagged \\Deleted\n"
			     "  --dry-run             show what would be done\n"
			     "  --no-subscriptions    do not copy subscriptions\n"
			     "  --json                summary as JSON");
			status = 0;
			goto out;
		default:
			goto usage;
		}
	}
	if (optind + 2 != argc)
		goto usage;
	if (endpoint_parse(argv[optind], &src, &error) < 0 ||
	    endpoint_parse(argv[optind + 1], &dst, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		status = 2;
		goto out;
	}
	if (src.kind != ENDPOINT_IMAP || dst.kind != ENDPOINT_IMAP) {
		fprintf(stderr, "imapferry: copy: maildir: endpoints are not "
		                "supported yet\n");
		status = 2;
		goto out;
	}
	if (endpoint_load_password(&src, src_pw, "IMAPFERRY_SRC_PASSWORD", &error) < 0 ||
	    endpoint_load_password(&dst, dst_pw, "IMAPFERRY_DST_PASSWORD", &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		status = 2;
		goto out;
	}
	cli_apply_common(&common, &src);
	cli_apply_common(&common, &dst);
	if (src_zid != NULL)
		src.imap.authzid = src.authzid = xstrdup(src_zid);
	if (dst_zid != NULL)
		dst.imap.authzid = dst.authzid = xstrdup(dst_zid);
	src.imap.label = "src";
	dst.imap.label = "dst";

	if (probe_side(&src, &sside, &sprefix, &error) < 0 ||
	    probe_side(&dst, &dside, &dprefix, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		goto out;
	}
	o.fm = foldermap_new(&sside, &dside);
	for (size_t i = 0; i < n_inc; i++)
		if (foldermap_add_include(o.fm, includes[i], &error) < 0)
			goto bad_rule;
	for (size_t i = 0; i < n_exc; i++)
		if (foldermap_add_exclude(o.fm, excludes[i], &error) < 0)
			goto bad_rule;
	for (size_t i = 0; i < n_map; i++)
		if (foldermap_add_rule(o.fm, maps[i], &error) < 0)
			goto bad_rule;

	account = xasprintf("%s%s%s -> %s%s%s", src.url, src_zid ? " as " : "",
	                    src_zid ? src_zid : "", dst.url, dst_zid ? " as " : "",
	                    dst_zid ? dst_zid : "");
	o.account = account;
	if (state_path == NULL) {
		state_path = default_state = state_default_path(src.url, dst.url,
		                                                &error);
		if (state_path == NULL) {
			fprintf(stderr, "imapferry: %s (use --state FILE)\n", error);
			goto out;
		}
	}
	if (state_open(state_path, &db, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		goto out;
	}
	log_info("copying %s -> %s (state %s)", src.url, dst.url, state_path);
	if (copy_account(&src.imap, &dst.imap, db, &o, &st, &error) < 0) {
		fprintf(stderr, "imapferry: stopped: %s\n", error);
		print_summary(&st, common.json, o.dry_run);
		goto out;
	}
	print_summary(&st, common.json, o.dry_run);
	status = (st.failed == 0 && st.folders_failed == 0) ? 0 : 1;
	goto out;
bad_rule:
	fprintf(stderr, "imapferry: %s\n", error);
	status = 2;
	goto out;
usage:
	fprintf(stderr, "usage: imapferry copy [options] SRC DST (see --help)\n");
	status = 2;
out:
	state_close(&db);
	if (o.fm != NULL)
		foldermap_free(&o.fm);
	endpoint_free(&src);
	endpoint_free(&dst);
	free(sprefix);
	free(dprefix);
	free(account);
	free(default_state);
	free(includes);
	free(excludes);
	free(maps);
	return status;
}
