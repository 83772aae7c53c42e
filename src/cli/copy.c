/* copy.c: imapferry copy SRC DST: one account, incrementally. */
#include "pair.h"

#include "buf.h"
#include "copy.h"
#include "foldermap.h"
#include "json.h"
#include "log.h"
#include "mailboxes.h"
#include "msgsum.h"
#include "pop3.h"
#include "runner.h"
#include "state.h"

#include <pthread.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PARALLEL_MAX 16

/* One of the session pairs of a parallel copy: its own folders, state
 * handle and folder map (neither is shared between threads). */
struct worker {
	pthread_t thread;
	const struct source *src;
	const struct target_spec *dst;
	struct copy_options o;
	const char *state_path;
	char **folders;
	size_t n_folders;
	uint64_t load;
	struct copy_stats st;
	int ret;
	bool ran;               /* copy_account_to() took src (and owns its session) */
	char *error;
};

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct state_db *db;
	const char *error;

	w->ret = -1;
	if (state_open(w->state_path, &db, &error) < 0) {
		w->error = xstrdup(error);
		return NULL;
	}
	w->o.folders = w->folders;
	w->o.n_folders = w->n_folders;
	w->ran = true;
	w->ret = copy_account_to(w->src, w->dst, db, &w->o, &w->st, &error);
	if (w->ret < 0)
		w->error = xstrdup(error);
	state_close(&db);
	return NULL;
}

/* Copies over n pairs of sessions: the source's folders are dealt out
 * largest first to the least loaded pair, so one big folder does not
 * serialize the account (a server handles one session's commands one
 * after another). Each folder is still copied by a single pair. */
static int
copy_parallel(unsigned n, const struct source *src, const struct target_spec *dst,
              const struct copy_options *o, const struct cli_pair *pair,
              const char *state_path, struct copy_stats *st, const char **error_r)
{
	struct worker w[PARALLEL_MAX];
	struct source probe = *src, others = *src;
	struct target_spec rest;      /* the other pairs' (no session to take) */
	struct imap_account_info info;
	atomic_uint subs_gate;
	unsigned started;
	size_t *order;
	bool refused;
	int ret = 0;

	atomic_init(&subs_gate, 0);
	others.client = NULL;
	memset(w, 0, sizeof(w));
	memset(st, 0, sizeof(*st));
	/* the session that probed the namespace, when it was taken */
	if (!source_is_connected(&probe) &&
	    source_connect(&probe, &refused, error_r) < 0)
		return -1;
	if (source_inventory(&probe, IMAP_INV_STATUS, &info, error_r) < 0) {
		source_disconnect(&probe);
		return -1;
	}
	/* largest first (insertion sort: folder counts are small) */
	order = xcalloc(info.count + 1, sizeof(*order));
	for (size_t i = 0; i < info.count; i++) {
		size_t k = i;

		while (k > 0 && info.boxes[order[k - 1]].messages < info.boxes[i].messages) {
			order[k] = order[k - 1];
			k--;
		}
		order[k] = i;
	}
	for (unsigned i = 0; i < n; i++) {
		w[i].folders = xcalloc(info.count + 1, sizeof(char *));
		w[i].src = &others;   /* each its own session */
		w[i].dst = dst;
		w[i].o = *o;
		w[i].state_path = state_path;
		/* subscriptions are the whole account's: written once, by the
		 * pass that finishes its folders last, when every folder
		 * exists (Dovecot refuses to subscribe to a folder that does
		 * not), over its own sessions: no extra pair of logins */
		w[i].o.subs_gate = &subs_gate;
		if ((w[i].o.fm = cli_pair_new_foldermap(pair, error_r)) == NULL)
			fatal("folder map rules became invalid");
	}
	for (size_t k = 0; k < info.count; k++) {
		const struct imap_mailbox_info *b = &info.boxes[order[k]];
		unsigned best = 0;

		if (!b->selectable || !copy_folder_selected(o->folders, o->n_folders,
		                                            b->name))
			continue;
		for (unsigned i = 1; i < n; i++)
			if (w[i].load < w[best].load)
				best = i;
		w[best].folders[w[best].n_folders++] = xstrdup(b->name);
		w[best].load += b->messages + 10;  /* a folder costs a little too */
	}
	/* a pair with no folder would only log in and out: started only
	 * when no pair has any (the pass still writes the subscriptions) */
	{
		unsigned m = 0;

		for (unsigned i = 0; i < n; i++) {
			if (w[i].n_folders == 0)
				continue;
			if (i != m) {
				struct worker t = w[m];

				w[m] = w[i];
				w[i] = t;
			}
			m++;
		}
		started = m > 0 ? m : 1;
		for (unsigned i = 0; i < n; i++)
			w[i].o.subs_gate_n = started;
		/* the planning session becomes the first pair's source
		 * session (that pass logs it out), and the target session
		 * that probed the namespace its target session: two logins
		 * less */
		w[0].src = &probe;
		rest = *dst;
		rest.adopt = NULL;
		for (unsigned i = 1; i < n; i++)
			w[i].dst = &rest;
		for (unsigned i = 0; i < started; i++)
			if (pthread_create(&w[i].thread, NULL, worker_main, &w[i]) != 0)
				fatal("pthread_create failed");
	}
	for (unsigned i = 0; i < n; i++) {
		if (i < started)
			pthread_join(w[i].thread, NULL);
		st->folders += w[i].st.folders;
		st->folders_failed += w[i].st.folders_failed;
		st->folders_created += w[i].st.folders_created;
		st->copied += w[i].st.copied;
		st->skipped += w[i].st.skipped;
		st->failed += w[i].st.failed;
		st->failed_in_folders += w[i].st.failed_in_folders;
		st->flags_updated += w[i].st.flags_updated;
		st->expunged += w[i].st.expunged;
		st->bytes += w[i].st.bytes;
		st->dropped_flags += w[i].st.dropped_flags;
		st->subscribed += w[i].st.subscribed;
		if (w[i].st.seconds > st->seconds)
			st->seconds = w[i].st.seconds;
		if (w[i].ret < 0 && ret == 0) {
			*error_r = err_setk(w[i].st.error_kind, "%s", w[i].error);
			st->error_kind = w[i].st.error_kind;
			ret = -1;
		}
		free(w[i].error);
		for (size_t k = 0; k < w[i].n_folders; k++)
			free(w[i].folders[k]);
		free(w[i].folders);
		foldermap_free(&w[i].o.fm);
	}
	/* the planning session, unless the first pass took it over */
	if (!w[0].ran)
		source_disconnect(&probe);
	free(order);
	imap_account_info_free(&info);
	return ret;
}

struct pop3_map {
	uint32_t *uids;
	char **uidls;
	size_t count;
};

/* Reads the UIDLs of the source's INBOX over POP3 and pairs them with the
 * INBOX UIDs (same order, same sizes). */
static int
load_pop3_uidls(const char *url, const struct cli_pair *pair,
                const struct cli_common *common, struct pop3_map *map,
                const char **error_r)
{
	struct pop3_options po;
	struct pop3_url pu;
	struct pop3_entry *entries = NULL;
	size_t n_entries = 0;
	struct imap_client *c;
	struct msgsum_list inbox = { 0 };
	uint32_t *uids;
	uint64_t *sizes;
	int ret = -1;

	memset(&po, 0, sizeof(po));
	if (pop3_url_parse(url, &po, &pu, error_r) < 0)
		return -1;
	po.password = pair->src.password;
	po.authzid = pair->src.authzid;
	po.net = common->net;
	if (pop3_fetch_uidls(&po, &entries, &n_entries, error_r) < 0)
		goto out;
	if (imap_client_connect(&pair->src.imap, &c, NULL, error_r) < 0)
		goto out;
	if (imap_client_select(c, "INBOX", true, error_r) == 0 &&
	    (imap_client_mailbox(c)->exists == 0 ||
	     msgsum_fetch(c, "1:*", MSGSUM_META, &inbox, error_r) == 0)) {
		uids = xcalloc(inbox.count + 1, sizeof(*uids));
		sizes = xcalloc(inbox.count + 1, sizeof(*sizes));
		for (size_t i = 0; i < inbox.count; i++) {
			uids[i] = inbox.items[i].uid;
			sizes[i] = inbox.items[i].size;
		}
		ret = pop3_match_uids(entries, n_entries, uids, sizes, inbox.count,
		                      &map->uids, &map->uidls, &map->count, error_r);
		free(uids);
		free(sizes);
	}
	msgsum_list_free(&inbox);
	imap_client_logout(&c);
out:
	pop3_entries_free(&entries, n_entries);
	pop3_url_free(&pu);
	return ret;
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
		json_key(&j, "failed_in_folders"); json_u64(&j, st->failed_in_folders);
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
	printf("%s%u folders (%u failed, %u %s), %" PRIu64 " %s, %" PRIu64
	       " skipped, %" PRIu64 " failed", dry_run ? "dry run: would do: " :
	       "copy: ", st->folders, st->folders_failed, st->folders_created,
	       dry_run ? "to create" : "created", st->copied,
	       dry_run ? "to copy" : "copied", st->skipped,
	       st->failed + st->failed_in_folders);
	if (st->failed_in_folders > 0)
		printf(" (%" PRIu64 " in failed folders)", st->failed_in_folders);
	printf(", %" PRIu64 " flag updates, %" PRIu64 " expunged, %" PRIu64
	       " bytes in %.1f s (%.0f msg/s, %.1f MB/s)\n", st->flags_updated,
	       st->expunged, st->bytes, st->seconds, rate, mbs);
	if (st->dropped_flags > 0)
		printf("not kept: %" PRIu64 " flags or keywords the target cannot "
		       "store (named above; a Dovecot Maildir keeps more than 26 "
		       "keywords with --dst-imap)\n", st->dropped_flags);
}

/* --bodies-from: where the bodies came from (before the summary, which
 * stays the last line; with --json as its own object {"bodies_from_spool":
 * N, "bodies_from_imap": M, "bodies_imap_missing": .., "bodies_imap_size":
 * .., "bodies_imap_uidvalidity": .., "bodies_imap_error": ..}, the four
 * reasons summing to M). */
static void
print_body_stats(const struct source_body_stats *bs, bool json)
{
	struct state_bodies sb = { 0 };
	struct buf line;

	if (json) {
		printf("{\"bodies_from_spool\": %" PRIu64 ", \"bodies_from_imap\": %"
		       PRIu64 ", \"bodies_imap_missing\": %" PRIu64 ", "
		       "\"bodies_imap_size\": %" PRIu64 ", "
		       "\"bodies_imap_uidvalidity\": %" PRIu64 ", "
		       "\"bodies_imap_error\": %" PRIu64 "}\n", bs->from_spool,
		       bs->from_imap, bs->missing, bs->size, bs->uidvalidity,
		       bs->error);
		return;
	}
	sched_bodies_add(&sb, bs);
	buf_init(&line, 1024);
	sched_bodies_text(&line, &sb);
	printf("bodies: %s\n", buf_data(&line));
	buf_free(&line);
}

static const struct cli_use copy_opts[] = {
	CLI_PAIR_USES,
	{ CLI_OPT_DELETE_MISSING, NULL },
	{ CLI_OPT_SKIP_DELETED, NULL },
	{ CLI_OPT_DRY_RUN, NULL },
	{ CLI_OPT_NO_SUBS, NULL },
	{ CLI_OPT_PARALLEL, NULL },
	{ CLI_OPT_RETRY_BUDGET, NULL },
	{ CLI_OPT_FOLDERS, NULL },
	{ CLI_OPT_FETCH_BATCH, NULL },
	{ CLI_OPT_APPEND_DEPTH, NULL },
	{ CLI_OPT_SPOOL_DIR, NULL },
	{ CLI_OPT_OWNER, NULL },
	{ CLI_OPT_SRC_POP3, NULL },
	{ CLI_OPT_DST_IMAP, NULL },
	{ CLI_OPT_BODIES_FROM, NULL },
	{ CLI_OPT_NO_FSYNC, NULL },
	{ CLI_OPT_FSYNC, NULL },
	{ CLI_OPT_JSON, "the summary as JSON" },
	CLI_NET_USES,
	{ CLI_OPT_NONE, NULL },
};

const struct cli_command cli_cmd_copy = {
	.name = "copy", .program = "imapferry", .synopsis = "[options] SRC DST",
	.intro = "Copies one account incrementally (the state database maps\n"
	         "each source message to its copy; a re-run copies what is new).",
	.opts = copy_opts,
	.trailer =
	    "SRC, DST: imap://USER@HOST[:PORT] or imaps://... (see imapferry --help)\n"
	    "SRC may be maildir:PATH[?flavor=dovecot|courier]: a Maildir read\n"
	    "  through its uidlist (its UIDs are kept where the target allows)\n"
	    "SRC may be cyrus:PARTITION?user=NAME[&config=DIR][&mboxlist=DUMP]\n"
	    "  [&template=T][&sub=FILE][&seen=FILE]: a copied Cyrus spool, read\n"
	    "  offline (see docs/internals/cyrus-formats.md)\n"
	    "DST maildir:PATH[?flavor=dovecot|courier] (PATH may use %u %n %d)\n"
	    "  writes the Maildir directly, keeping UIDVALIDITY, UIDNEXT, UIDs\n"
	    "The same account as SRC and DST is refused.\n"
	    CLI_EXIT_HELP,
	.min_args = 2, .max_args = 2,
};

/* What copy's options set: cmd_copy()'s variables. */
struct copy_cli {
	struct cli_pair *pair;
	struct copy_options *o;
	struct maildir_options *md;
	char **folders;
	unsigned *parallel;
	const char **src_pop3;
	const char **bodies_from;
	const char **dst_imap;
	struct target_spec *target;
};

static int
copy_option(void *ctx, int id, const char *arg, uint64_t num)
{
	struct copy_cli *c = ctx;

	if (cli_pair_option(c->pair, id, arg) > 0)
		return 0;
	switch (id) {
	case CLI_OPT_DELETE_MISSING: c->o->delete_missing = true; break;
	case CLI_OPT_SKIP_DELETED:
		c->o->skip_deleted = c->o->fetch.skip_deleted = true;
		break;
	case CLI_OPT_DRY_RUN: c->o->dry_run = true; break;
	case CLI_OPT_NO_SUBS: c->o->no_subscriptions = true; break;
	case CLI_OPT_SPOOL_DIR: c->o->fetch.spool_dir = arg; break;
	case CLI_OPT_OWNER:
		if (cli_parse_owner(arg, &c->md->owner, &c->md->group) < 0)
			return cli_bad_value(id, arg, "unknown user or group");
		break;
	case CLI_OPT_SRC_POP3: *c->src_pop3 = arg; break;
	case CLI_OPT_BODIES_FROM:
		if (strncmp(arg, "cyrus-spool:", 12) != 0)
			return cli_bad_value(id, arg, "expected cyrus-spool:PATH?user=NAME");
		*c->bodies_from = arg;
		break;
	case CLI_OPT_DST_IMAP:
		*c->dst_imap = arg;
		break;
	case CLI_OPT_NO_FSYNC: c->md->fsync = false; break;
	case CLI_OPT_FSYNC:
		if (cli_parse_fsync(arg, &c->md->fsync, &c->md->fsync_fs) < 0)
			return cli_bad_value(id, arg, "expected file, fs or off");
		break;
	case CLI_OPT_PARALLEL: *c->parallel = (unsigned)num; break;
	case CLI_OPT_RETRY_BUDGET: c->o->retry_budget_s = (unsigned)num; break;
	case CLI_OPT_FOLDERS:
		/* source folder names as LISTed, e.g. the INBOXes for the
		 * final pass of a cutover */
		c->folders[c->o->n_folders++] = (char *)arg;
		c->o->folders = c->folders;
		break;
	case CLI_OPT_FETCH_BATCH: c->o->fetch.batch = (unsigned)num; break;
	case CLI_OPT_APPEND_DEPTH: c->target->append_depth = (unsigned)num; break;
	default:
		return -1;
	}
	return 0;
}

int
cmd_copy(int argc, char **argv)
{
	struct cli_common common = { 0 };
	struct copy_options o = { 0 };
	struct copy_stats st;
	struct cli_pair pair;
	const char *state_path, *error;
	struct state_db *db = NULL;
	char **folders = xcalloc((size_t)argc + 1, sizeof(char *));
	struct maildir_options md;
	struct pop3_map pop3 = { 0 };
	struct source source = { 0 };
	struct target_spec target = { 0 };
	unsigned parallel = 2;
	const char *src_pop3 = NULL, *bodies_from = NULL, *dst_imap = NULL;
	struct endpoint bodies = { 0 }, dovecot = { 0 };
	struct source_body_stats body_stats = { 0 };
	struct copy_cli c = {
		.pair = &pair, .o = &o, .md = &md, .folders = folders,
		.parallel = &parallel, .src_pop3 = &src_pop3,
		.bodies_from = &bodies_from, .target = &target, .dst_imap = &dst_imap,
	};
	int argi, status = CLI_EXIT_USAGE;

	cli_pair_init(&pair, argc);
	pair.allow_maildir_dst = true;
	pair.allow_maildir_src = true;
	pair.keep_sessions = true;
	maildir_options_init(&md);
	if (cli_parse(&cli_cmd_copy, argc, argv, &common, copy_option, &c, &argi,
	              &status) < 0)
		goto out;
	if ((status = cli_pair_setup(&pair, &common, argv[argi],
	                             argv[argi + 1])) != 0)
		goto out;
	/* from here on, an error that stops the copy */
	status = CLI_EXIT_ERROR;
	if (cli_pair_state_path(&pair, &state_path) < 0)
		goto out;
	if (state_open(state_path, &db, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		goto out;
	}
	o.fm = pair.fm;
	o.account = pair.account;
	log_info("copying %s -> %s (state %s)", pair.src.url, pair.dst.url,
	         state_path);
	/* the source: an IMAP account, or a Maildir read through its uidlist */
	source.kind = pair.src.kind == ENDPOINT_MAILDIR ? SOURCE_MAILDIR :
	              pair.src.kind == ENDPOINT_CYRUS ? SOURCE_CYRUS : SOURCE_IMAP;
	source.imap = &pair.src.imap;
	if (source.kind == SOURCE_CYRUS) {
		source.root = pair.src.path;
		source.cy = (struct cyrus_options){
			.user = pair.src.cy_user, .config_dir = pair.src.cy_config,
			.mboxlist = pair.src.cy_mboxlist, .tmpl = pair.src.cy_tmpl,
			.sub_file = pair.src.cy_sub, .seen_file = pair.src.cy_seen,
		};
		if (src_pop3 != NULL) {
			fprintf(stderr, "imapferry: --src-pop3 needs an IMAP source\n");
			goto out;
		}
	}
	if (bodies_from != NULL) {
		/* cyrus-spool:... is a cyrus: endpoint used for bodies only */
		char *url = xasprintf("cyrus:%s", bodies_from + 12);

		if (source.kind != SOURCE_IMAP) {
			fprintf(stderr, "imapferry: --bodies-from needs an IMAP source\n");
			free(url);
			status = 2;
			goto out;
		}
		if (endpoint_parse(url, &bodies, &error) < 0) {
			fprintf(stderr, "imapferry: --bodies-from: %s\n", error);
			free(url);
			status = 2;
			goto out;
		}
		free(url);
		source.root = bodies.path;
		source.cy = (struct cyrus_options){
			.user = bodies.cy_user, .config_dir = bodies.cy_config,
			.mboxlist = bodies.cy_mboxlist, .tmpl = bodies.cy_tmpl,
		};
		source.body_stats = &body_stats;
	}
	if (source.kind == SOURCE_MAILDIR) {
		source.root = pair.src.path;
		maildir_options_init(&source.md);
		source.md.flavor = strcmp(pair.src.flavor, "courier") == 0 ?
		                   MAILDIR_COURIER : MAILDIR_DOVECOT;
		if (src_pop3 != NULL) {
			fprintf(stderr, "imapferry: --src-pop3 needs an IMAP source\n");
			status = CLI_EXIT_USAGE;
			goto out;
		}
	}
	if (pair.dst.kind == ENDPOINT_MAILDIR) {
		md.flavor = strcmp(pair.dst.flavor, "courier") == 0 ?
		            MAILDIR_COURIER : MAILDIR_DOVECOT;
		if (src_pop3 != NULL &&
		    load_pop3_uidls(src_pop3, &pair, &common, &pop3, &error) < 0) {
			fprintf(stderr, "imapferry: POP3 UIDLs: %s\n", error);
			goto out;
		}
		target.kind = TARGET_MAILDIR;
		target.root = pair.dst.path;
		target.md = md;
		target.pop3_uids = pop3.uids;
		target.pop3_uidls = pop3.uidls;
		target.pop3_count = pop3.count;
		if (dst_imap != NULL) {
			/* the Dovecot serving the Maildir, for the keywords the
			 * file names cannot hold */
			if (cli_pair_dst_imap(&pair, &common, dst_imap, &dovecot) < 0) {
				status = CLI_EXIT_USAGE;
				goto out;
			}
			target.dst_imap = &dovecot.imap;
		}
	} else if (dst_imap != NULL) {
		fprintf(stderr, "imapferry: --dst-imap needs a maildir: target\n");
		status = CLI_EXIT_USAGE;
		goto out;
	} else {
		target.kind = TARGET_IMAP;
		target.imap = &pair.dst.imap;
		target.adopt = &pair.dst_client;
	}
	/* the sessions that probed the namespaces carry on as the copy's
	 * (source_take_session() logs out one it cannot use: a spool's
	 * bodies open the spool when they connect) */
	if (pair.src_client != NULL)
		source_take_session(&source, &pair.src_client);
	if ((parallel > 1 ?
	     copy_parallel(parallel, &source, &target, &o, &pair, state_path, &st,
	                   &error) :
	     copy_account_to(&source, &target, db, &o, &st, &error)) < 0) {
		/* a full disk or quota says so, whatever the call's text */
		if ((st.error_kind == ERRK_DISK_FULL || st.error_kind == ERRK_QUOTA) &&
		    strstr(error, err_kind_name(st.error_kind)) == NULL)
			fprintf(stderr, "imapferry: stopped: %s: %s\n",
			        err_kind_name(st.error_kind), error);
		else
			fprintf(stderr, "imapferry: stopped: %s\n", error);
		print_summary(&st, common.json, o.dry_run);
		goto out;
	}
	if (bodies_from != NULL)
		print_body_stats(&body_stats, common.json);
	print_summary(&st, common.json, o.dry_run);
	/* a flag or keyword not kept is a loss: listed, exit status 1 */
	status = (st.failed == 0 && st.folders_failed == 0 &&
	          st.dropped_flags == 0) ? CLI_EXIT_OK :
	         CLI_EXIT_FAILURES;
out:
	state_close(&db);
	cli_pair_free(&pair);
	endpoint_free(&bodies);
	endpoint_free(&dovecot);
	free(folders);
	pop3_matched_free(&pop3.uids, &pop3.uidls, pop3.count);
	return status;
}
