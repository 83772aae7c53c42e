/* benchtools.c: imapferry-bench, the two limits bench/ compares
 * imapferry copy with. Built with imapferry (build/bench/tools/), never
 * installed.
 *
 *   imapferry-bench fetch-only URL      reads every message of every
 *                                 selectable folder (EXAMINE, pipelined UID
 *                                 FETCH of UID FLAGS INTERNALDATE
 *                                 BODY.PEEK[]), bodies discarded: the
 *                                 source's read limit.
 *   imapferry-bench append-only URL DIR APPENDs every message of a
 *                                 Maildir++ tree (gen.py --maildir) or a
 *                                 tree of .eml files, pipelined, LITERAL+
 *                                 and MULTIAPPEND: the target's write limit.
 *
 * The defaults are copy's: its reader sends UID FETCH of 500 UIDs, one
 * command in flight (src/sync/reader.h); its writer keeps 16 APPENDs in
 * flight, MULTIAPPEND groups of up to 1,024 messages or 8 MiB
 * (src/sync/copy.h).
 *
 * Both print one JSON object {messages, bytes, seconds, ...} (or a line of
 * text without --json) and use the client library exactly as copy does, so
 * the only difference from copy is the missing other side. */
#include "cli.h"

#include "buf.h"
#include "json.h"
#include "log.h"
#include "mailboxes.h"
#include "mutf7.h"
#include "uidset.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
	OPT_BATCH = CLI_OPT_LOCAL, OPT_DEPTH, OPT_GROUP, OPT_LITERAL_MEM,
};

/* copy's settings (see the top of the file) */
#define FETCH_BATCH 500
#define FETCH_DEPTH 1
#define APPEND_DEPTH 16
#define APPEND_GROUP 1024

/* Literals up to this size are read into memory for APPEND; larger ones
 * are streamed from the file (as copy does with its spool files). */
#define APPEND_MEM_MAX (256 * 1024)
/* Bytes of one MULTIAPPEND at most (copy's APPEND_GROUP_BYTES). */
#define APPEND_GROUP_BYTES (8 * 1024 * 1024)

struct bench_opts {
	struct cli_common common;
	const char *password_file, *authzid;
	unsigned batch, depth, group;
	size_t literal_mem;
};

struct bench_result {
	uint64_t messages, bytes, failed;
	unsigned folders;
	double seconds;
};

static void
print_result(const struct bench_opts *bo, const char *what,
             const struct bench_result *r)
{
	double rate = r->seconds > 0 ? (double)r->messages / r->seconds : 0;
	double mbs = r->seconds > 0 ? (double)r->bytes / 1e6 / r->seconds : 0;

	if (bo->common.json) {
		struct buf out;
		struct json j;

		buf_init(&out, 1 << 20);
		json_init(&j, &out);
		json_obj_begin(&j);
		json_key(&j, "mode"); json_str(&j, what);
		json_key(&j, "folders"); json_u64(&j, r->folders);
		json_key(&j, "messages"); json_u64(&j, r->messages);
		json_key(&j, "failed"); json_u64(&j, r->failed);
		json_key(&j, "bytes"); json_u64(&j, r->bytes);
		json_key(&j, "seconds"); json_double(&j, r->seconds);
		json_key(&j, "messages_per_second"); json_double(&j, rate);
		json_key(&j, "batch"); json_u64(&j, bo->batch);
		json_key(&j, "depth"); json_u64(&j, bo->depth);
		json_obj_end(&j);
		puts(buf_data(&out));
		buf_free(&out);
		return;
	}
	printf("%s: %u folders, %" PRIu64 " messages (%" PRIu64 " failed), %" PRIu64
	       " bytes in %.2f s (%.0f msg/s, %.1f MB/s)\n", what, r->folders,
	       r->messages, r->failed, r->bytes, r->seconds, rate, mbs);
}

/* The tools' own options (the others are imapferry's, options.c). */
static const struct cli_opt_def bench_defs[] = {
	{ OPT_BATCH, "batch", 0, CLI_ARG_COUNT, "N", 100000,
	  "UIDs per UID FETCH (default 500, as copy)" },
	{ OPT_DEPTH, "depth", 0, CLI_ARG_COUNT, "N", 100000,
	  "commands in flight (default: copy's, 1 UID\n"
	  "FETCH or 16 APPENDs)" },
	{ OPT_GROUP, "group", 0, CLI_ARG_COUNT, "N", 100000,
	  "messages per MULTIAPPEND, up to 8 MiB each\n"
	  "(default 1024, as copy; 1: no MULTIAPPEND)" },
	{ OPT_LITERAL_MEM, "literal-mem", 0, CLI_ARG_COUNT, "BYTES", 64u << 20,
	  "bodies above this go to a discarding sink\n(default 4096)" },
	{ 0, NULL, 0, CLI_ARG_NONE, NULL, 0, NULL },
};

#define BENCH_NET_USES \
	{ CLI_OPT_PASSWORD_FILE, NULL }, { CLI_OPT_AUTHZID, NULL }, \
	{ CLI_OPT_JSON, "one JSON object {mode, messages, bytes,\n" \
	                "seconds, ...}" }, \
	CLI_NET_USES

static const struct cli_use fetch_opts[] = {
	{ OPT_BATCH, NULL },
	{ OPT_DEPTH, "UID FETCH commands in flight (default 1, as\ncopy)" },
	{ OPT_LITERAL_MEM, NULL },
	BENCH_NET_USES,
	{ CLI_OPT_NONE, NULL },
};

static const struct cli_command fetch_cmd = {
	.name = "fetch-only", .program = "imapferry-bench",
	.synopsis = "[options] URL",
	.intro = "Reads every message of every selectable folder (EXAMINE, then\n"
	         "pipelined UID FETCH of BATCH UIDs per command, DEPTH commands in\n"
	         "flight; by default 500 UIDs and 1 command, as copy's reader)\n"
	         "and discards the bodies: the source's read limit.",
	.opts = fetch_opts,
	.trailer = "Password from --password-file or $IMAPFERRY_PASSWORD.",
	.min_args = 1, .max_args = 1,
	.extra = bench_defs,
};

static const struct cli_use append_opts[] = {
	{ OPT_DEPTH, "APPEND commands in flight (default 16, as\ncopy)" },
	{ OPT_GROUP, NULL },
	BENCH_NET_USES,
	{ CLI_OPT_NONE, NULL },
};

static const struct cli_command append_cmd = {
	.name = "append-only", .program = "imapferry-bench",
	.synopsis = "[options] URL DIR",
	.intro = "APPENDs every message of DIR into the account at URL: DIR is a\n"
	         "Maildir++ tree (gen.py --maildir: USER/Maildir or USER) or a tree\n"
	         "of message files (each directory a folder). Pipelined (DEPTH\n"
	         "commands in flight, default 16) with LITERAL+ and MULTIAPPEND (up\n"
	         "to GROUP messages or 8 MiB per command, default 1024), as copy's\n"
	         "writer: the target's APPEND limit. Flags, keywords and\n"
	         "INTERNALDATE (mtime) are sent.",
	.opts = append_opts,
	.trailer = "Password from --password-file or $IMAPFERRY_PASSWORD.",
	.min_args = 2, .max_args = 2,
	.extra = bench_defs,
};

static int
bench_option(void *ctx, int id, const char *arg, uint64_t num)
{
	struct bench_opts *bo = ctx;

	switch (id) {
	case CLI_OPT_PASSWORD_FILE: bo->password_file = arg; return 0;
	case CLI_OPT_AUTHZID: bo->authzid = arg; return 0;
	case OPT_BATCH: bo->batch = (unsigned)num; return 0;
	case OPT_DEPTH: bo->depth = (unsigned)num; return 0;
	case OPT_GROUP: bo->group = (unsigned)num; return 0;
	case OPT_LITERAL_MEM: bo->literal_mem = (size_t)num; return 0;
	default: return -1;
	}
}

/* Parses url, loads the password and connects. Returns 0 with
 * *client_r, or -1 (message printed). ep must be freed by the caller. */
static int
bench_connect(struct bench_opts *bo, const char *url, const char *label,
              const struct imap_parser_limits *limits, struct endpoint *ep,
              struct imap_client **client_r)
{
	const char *error;

	if (endpoint_parse(url, ep, &error) < 0 || ep->kind != ENDPOINT_IMAP ||
	    endpoint_load_password(ep, bo->password_file, "IMAPFERRY_PASSWORD",
	                           &error) < 0) {
		if (ep->kind != ENDPOINT_IMAP)
			error = "an imap:// or imaps:// URL is needed";
		fprintf(stderr, "imapferry: %s\n", error);
		return -1;
	}
	cli_apply_common(&bo->common, ep);
	if (bo->authzid != NULL) {
		ep->authzid = xstrdup(bo->authzid);
		ep->imap.authzid = ep->authzid;
	}
	ep->imap.label = label;
	ep->imap.limits = limits;
	/* one more than we keep in flight ourselves, so the client's own
	 * limit never is the one that holds a command back */
	ep->imap.pipeline_depth = bo->depth + 1;
	if (imap_client_connect(&ep->imap, client_r, NULL, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		return -1;
	}
	return 0;
}

/* ============================================================ fetch-only */

struct fetch_ctx {
	struct bench_result *res;
	uint32_t *uids;           /* of UID SEARCH ALL */
	size_t n_uids, uids_alloc;
	char *error;              /* first failure */
};

/* The sink that throws bodies away: any non-NULL handle will do. */
static void *
discard_begin(void *ctx, uint64_t size)
{
	return ctx;
}

static int
discard_data(void *ctx, void *handle, const void *data, size_t len)
{
	return 0;
}

static int
discard_end(void *ctx, void *handle)
{
	return 0;
}

static void
discard_release(void *ctx, void *handle)
{
}

static void
fetch_failed(struct fetch_ctx *fc, const struct imap_response *tagged,
             const char *error, const char *what)
{
	if (fc->error != NULL)
		return;
	if (tagged == NULL)
		fc->error = xasprintf("%s: %s", what, error);
	else if (tagged->status != IMAP_STATUS_OK)
		fc->error = xasprintf("%s refused: %s", what, tagged->text);
}

static void
search_untagged(void *ctx, const struct imap_response *resp)
{
	struct fetch_ctx *fc = ctx;
	const struct imap_search_data *s;

	if (resp->kind != IMAP_RESP_UNTAGGED || resp->type != IMAP_UNTAGGED_SEARCH)
		return;
	s = &resp->u.search;
	for (size_t i = 0; i < s->count; i++) {
		if (fc->n_uids == fc->uids_alloc) {
			fc->uids_alloc = fc->uids_alloc == 0 ? 1024 : fc->uids_alloc * 2;
			fc->uids = xreallocarray(fc->uids, fc->uids_alloc,
			                         sizeof(*fc->uids));
		}
		fc->uids[fc->n_uids++] = s->nums[i];
	}
}

static void
search_done(void *ctx, const struct imap_response *tagged, const char *error)
{
	fetch_failed(ctx, tagged, error, "UID SEARCH");
}

static void
fetch_untagged(void *ctx, const struct imap_response *resp)
{
	struct fetch_ctx *fc = ctx;
	const struct imap_fetch *f;

	if (resp->kind != IMAP_RESP_UNTAGGED || resp->type != IMAP_UNTAGGED_FETCH)
		return;
	f = &resp->u.fetch;
	for (size_t i = 0; i < f->body_count; i++) {
		const struct imap_value *v = f->bodies[i].value;

		if (f->bodies[i].section[0] != '\0' || v == NULL)
			continue;
		fc->res->messages++;
		if (v->type == IMAP_VALUE_STREAMED)
			fc->res->bytes += v->stream_size;
		else if (v->type == IMAP_VALUE_STRING)
			fc->res->bytes += v->len;
	}
}

static void
fetch_done(void *ctx, const struct imap_response *tagged, const char *error)
{
	fetch_failed(ctx, tagged, error, "UID FETCH");
}

/* Reads one folder. Returns 0 or -1 (message printed). */
static int
fetch_folder(struct imap_client *c, const struct bench_opts *bo,
             struct fetch_ctx *fc, const char *name)
{
	struct imap_cmd *cmd;
	const char *error;

	if (imap_client_select(c, name, true, &error) < 0) {
		fprintf(stderr, "imapferry: EXAMINE %s: %s\n", name, error);
		return -1;
	}
	fc->res->folders++;
	if (imap_client_mailbox(c)->exists == 0)
		return 0;
	fc->n_uids = 0;
	cmd = imap_cmd_new(c);
	imap_cmd_add(cmd, "UID SEARCH ALL");
	imap_cmd_set_untagged(cmd, search_untagged, fc);
	imap_cmd_submit(cmd, search_done, fc);
	if (imap_client_run(c, &error) < 0 || fc->error != NULL) {
		fprintf(stderr, "imapferry: %s: %s\n", name,
		        fc->error != NULL ? fc->error : error);
		return -1;
	}
	qsort(fc->uids, fc->n_uids, sizeof(*fc->uids), cmp_u32);
	for (size_t i = 0; i < fc->n_uids && fc->error == NULL; i += bo->batch) {
		size_t n = fc->n_uids - i < bo->batch ? fc->n_uids - i : bo->batch;
		char *set = uidset_string(fc->uids + i, n);

		cmd = imap_cmd_new(c);
		imap_cmd_addf(cmd, "UID FETCH %s (UID FLAGS INTERNALDATE BODY.PEEK[])",
		              set);
		free(set);
		imap_cmd_set_untagged(cmd, fetch_untagged, fc);
		imap_cmd_submit(cmd, fetch_done, fc);
		if (imap_client_run_until_below(c, bo->depth, &error) < 0)
			break;
	}
	if (imap_client_run(c, &error) < 0 || fc->error != NULL) {
		fprintf(stderr, "imapferry: %s: %s\n", name,
		        fc->error != NULL ? fc->error : error);
		return -1;
	}
	return 0;
}

static int
cmd_fetch_only(int argc, char **argv)
{
	struct bench_opts bo = { .batch = FETCH_BATCH, .depth = FETCH_DEPTH,
	                         .literal_mem = 4096 };
	struct bench_result res = { 0 };
	struct fetch_ctx fc = { .res = &res };
	struct imap_parser_limits limits = { 0 };
	struct imap_literal_sink sink = {
		.begin = discard_begin, .data = discard_data, .end = discard_end,
		.abort = discard_release, .release = discard_release, .ctx = &fc,
	};
	struct imap_account_info info;
	struct imap_client *c = NULL;
	struct endpoint ep = { 0 };
	const char *error;
	double t0 = time_mono_sec();
	int argi, status = 1;

	if (cli_parse(&fetch_cmd, argc, argv, &bo.common, bench_option, &bo,
	              &argi, &status) < 0)
		return status;
	status = 1;
	/* bodies above literal_mem go to the sink, so none is copied */
	limits.max_literal_mem = bo.literal_mem;
	if (bench_connect(&bo, argv[argi], "fetch", &limits, &ep, &c) < 0)
		goto out;
	imap_client_set_literal_sink(c, &sink);
	if (imap_account_inventory(c, 0, &info, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		goto out;
	}
	status = 0;
	for (size_t i = 0; i < info.count && status == 0; i++)
		if (info.boxes[i].selectable &&
		    fetch_folder(c, &bo, &fc, info.boxes[i].name) < 0)
			status = 1;
	imap_account_info_free(&info);
	imap_client_logout(&c);
	res.seconds = time_mono_sec() - t0;
	if (status == 0)
		print_result(&bo, "fetch-only", &res);
out:
	if (c != NULL)
		imap_client_free(&c);
	free(fc.uids);
	free(fc.error);
	endpoint_free(&ep);
	return status;
}

/* =========================================================== append-only */

struct amsg {
	char *path;
	char *flags;              /* "\Seen \Flagged $Label1" or "" */
	time_t date;
	uint64_t size;
};

struct afolder {
	char *wire;               /* name on the wire (mUTF-7, target separator) */
	struct amsg *msgs;
	size_t count, alloc;
};

struct atree {
	struct afolder *folders;
	size_t count;
};

static struct afolder *
tree_folder(struct atree *t, const char *wire)
{
	for (size_t i = 0; i < t->count; i++)
		if (strcmp(t->folders[i].wire, wire) == 0)
			return &t->folders[i];
	t->folders = xreallocarray(t->folders, t->count + 1, sizeof(*t->folders));
	memset(&t->folders[t->count], 0, sizeof(*t->folders));
	t->folders[t->count].wire = xstrdup(wire);
	return &t->folders[t->count++];
}

static struct amsg *
folder_add(struct afolder *f)
{
	if (f->count == f->alloc) {
		f->alloc = f->alloc == 0 ? 64 : f->alloc * 2;
		f->msgs = xreallocarray(f->msgs, f->alloc, sizeof(*f->msgs));
	}
	memset(&f->msgs[f->count], 0, sizeof(*f->msgs));
	return &f->msgs[f->count++];
}

static void
tree_free(struct atree *t)
{
	for (size_t i = 0; i < t->count; i++) {
		struct afolder *f = &t->folders[i];

		for (size_t k = 0; k < f->count; k++) {
			free(f->msgs[k].path);
			free(f->msgs[k].flags);
		}
		free(f->msgs);
		free(f->wire);
	}
	free(t->folders);
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the entries of a directory (no dot entries), or NULL. */
static char **
list_dir(const char *path, size_t *count_r)
{
	DIR *d = opendir(path);
	struct dirent *e;
	char **v = NULL;
	size_t n = 0;

	*count_r = 0;
	if (d == NULL)
		return NULL;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		v = xreallocarray(v, n + 1, sizeof(*v));
		v[n++] = xstrdup(e->d_name);
	}
	closedir(d);
	if (n > 0)
		qsort(v, n, sizeof(*v), cmp_str);
	*count_r = n;
	return v;
}

static void
names_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static bool
is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* dovecot-keywords of a Maildir folder: 26 keyword names by letter. */
static void
read_keywords(const char *dir, char *kw[26])
{
	char *path = xasprintf("%s/dovecot-keywords", dir);
	char line[512];
	FILE *f = fopen(path, "r");

	free(path);
	memset(kw, 0, 26 * sizeof(*kw));
	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		char *sp = strchr(line, ' ');
		uint64_t idx;

		if (sp == NULL)
			continue;
		*sp++ = '\0';
		sp[strcspn(sp, "\r\n")] = '\0';
		if (str_to_u64z(line, 25, &idx) && kw[idx] == NULL && *sp != '\0')
			kw[idx] = xstrdup(sp);
	}
	fclose(f);
}

/* Adds one message file; flags from a Maildir name ":2,FLAGS". */
static void
add_file(struct afolder *f, const char *path, const char *name,
         char *const kw[26], struct buf *flags)
{
	const char *info = strstr(name, ":2,");
	struct stat st;
	struct amsg *m;

	if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
		return;
	buf_reset(flags);
	for (const char *p = info != NULL ? info + 3 : ""; *p != '\0'; p++) {
		const char *fl = NULL;

		switch (*p) {
		case 'D': fl = "\\Draft"; break;
		case 'F': fl = "\\Flagged"; break;
		case 'R': fl = "\\Answered"; break;
		case 'S': fl = "\\Seen"; break;
		case 'T': fl = "\\Deleted"; break;
		default:
			if (*p >= 'a' && *p <= 'z' && kw != NULL)
				fl = kw[*p - 'a'];
			break;
		}
		if (fl == NULL)
			continue;
		if ((buf_len(flags) > 0 && buf_append(flags, " ", 1) < 0) ||
		    buf_append_str(flags, fl) < 0)
			fatal("flags of %s too long", path);
	}
	m = folder_add(f);
	m->path = xstrdup(path);
	m->date = st.st_mtime;
	m->size = (uint64_t)st.st_size;
	m->flags = xstrdup(buf_data(flags));
}

/* Adds the files of dir/cur and dir/new. */
static void
scan_maildir_folder(struct atree *t, const char *dir, const char *wire,
                    struct buf *flags)
{
	static const char *subs[] = { "cur", "new" };
	struct afolder *f = tree_folder(t, wire);
	char *kw[26];

	read_keywords(dir, kw);
	for (int s = 0; s < 2; s++) {
		char *sub = xasprintf("%s/%s", dir, subs[s]);
		size_t n;
		char **names = list_dir(sub, &n);

		for (size_t i = 0; i < n; i++) {
			char *path = xasprintf("%s/%s", sub, names[i]);
			add_file(f, path, names[i], kw, flags);
			free(path);
		}
		names_free(names, n);
		free(sub);
	}
	for (int i = 0; i < 26; i++)
		free(kw[i]);
}

/* A Maildir++ tree: INBOX in root, ".A.B" folders (names already mUTF-7). */
static void
scan_maildir(struct atree *t, const char *root, char sep)
{
	size_t n;
	char **names = list_dir(root, &n);
	struct buf flags;

	buf_init(&flags, 4096);
	scan_maildir_folder(t, root, "INBOX", &flags);
	for (size_t i = 0; i < n; i++) {
		char *dir, *wire;

		if (names[i][0] != '.' || names[i][1] == '\0')
			continue;
		dir = xasprintf("%s/%s", root, names[i]);
		if (is_dir(dir)) {
			wire = xstrdup(names[i] + 1);
			for (char *p = wire; *p != '\0'; p++)
				if (*p == '.')
					*p = sep;
			scan_maildir_folder(t, dir, wire, &flags);
			free(wire);
		}
		free(dir);
	}
	buf_free(&flags);
	names_free(names, n);
}

/* A tree of message files: each directory is a folder (UTF-8 names, the
 * top one INBOX). */
static void
scan_eml(struct atree *t, const char *dir, const char *rel, char sep,
         struct buf *flags)
{
	size_t n;
	char **names = list_dir(dir, &n);
	struct afolder *f = NULL;

	for (size_t i = 0; i < n; i++) {
		char *path = xasprintf("%s/%s", dir, names[i]);

		if (is_dir(path)) {
			char *sub = rel[0] == '\0' ? xstrdup(names[i]) :
			            xasprintf("%s%c%s", rel, sep, names[i]);
			scan_eml(t, path, sub, sep, flags);
			free(sub);
		} else if (strcmp(names[i], "manifest.jsonl") != 0) {
			if (f == NULL) {
				struct buf w;

				buf_init(&w, 64 * 1024);
				if (rel[0] == '\0') {
					if (buf_append_str(&w, "INBOX") < 0)
						fatal("out of buffer");
				} else if (mutf7_encode(rel, strlen(rel), &w) < 0)
					fatal("folder name is not UTF-8: %s", rel);
				f = tree_folder(t, buf_data(&w));
				buf_free(&w);
			}
			add_file(f, path, names[i], NULL, flags);
		}
		free(path);
	}
	names_free(names, n);
}

struct append_ctx {
	struct bench_result *res;
	char *error;
};

struct append_batch {
	struct append_ctx *ac;
	size_t count;
	uint64_t bytes;
};

static void
append_done(void *ctx, const struct imap_response *tagged, const char *error)
{
	struct append_batch *b = ctx;
	struct append_ctx *ac = b->ac;

	if (tagged != NULL && tagged->status == IMAP_STATUS_OK) {
		ac->res->messages += b->count;
		ac->res->bytes += b->bytes;
	} else {
		ac->res->failed += b->count;
		if (ac->error == NULL)
			ac->error = tagged == NULL ? xasprintf("%s", error) :
			            xasprintf("APPEND refused: %s", tagged->text);
	}
	free(b);
}

struct abody {
	int fd;                   /* streamed from here when >= 0 */
	char *data;               /* else these bytes */
	uint64_t size;
};

/* Loads a message body: into memory when small, else an open fd to
 * stream from (as copy does with its spool files). Returns 0 or -1
 * (message printed). */
static int
body_load(const struct amsg *m, struct abody *b)
{
	int fd = open(m->path, O_RDONLY | O_CLOEXEC);
	size_t got = 0;

	b->fd = -1;
	b->data = NULL;
	b->size = m->size;
	if (fd < 0) {
		fprintf(stderr, "imapferry: %s: %s\n", m->path, strerror(errno));
		return -1;
	}
	if (m->size > APPEND_MEM_MAX) {
		b->fd = fd;
		return 0;
	}
	b->data = xmalloc((size_t)m->size + 1);
	while (got < m->size) {
		ssize_t n = read(fd, b->data + got, (size_t)m->size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "imapferry: %s: short read\n", m->path);
			close(fd);
			XFREE(b->data);
			return -1;
		}
		got += (size_t)n;
	}
	close(fd);
	return 0;
}

static int
append_folder(struct imap_client *c, const struct bench_opts *bo,
              struct append_ctx *ac, const struct afolder *f, bool multi)
{
	const char *error;
	struct abody body;
	bool failed = false;
	size_t i = 0;

	while (i < f->count && ac->error == NULL && !failed) {
		struct imap_cmd *cmd;
		struct append_batch *b;

		/* Each body is loaded before its text is added, so a failure
		 * never leaves half a message in a command (and a command is
		 * only created once it has a message). */
		if (body_load(&f->msgs[i], &body) < 0)
			break;
		cmd = imap_cmd_new(c);
		b = xcalloc(1, sizeof(*b));
		b->ac = ac;
		imap_cmd_add(cmd, "APPEND ");
		imap_cmd_add_astring(cmd, f->wire, strlen(f->wire));
		for (;;) {
			const struct amsg *m = &f->msgs[i++];
			char date[32];

			imap_format_datetime(m->date, date);
			imap_cmd_addf(cmd, " (%s) \"%s\" ", m->flags, date);
			if (body.fd >= 0)
				imap_cmd_add_literal_fd(cmd, body.fd, body.size);
			else
				imap_cmd_add_literal_take(cmd, body.data,
				                          (size_t)body.size);
			b->count++;
			b->bytes += m->size;
			if (!multi || i == f->count || b->count >= bo->group ||
			    b->bytes + f->msgs[i].size > APPEND_GROUP_BYTES)
				break;
			if (body_load(&f->msgs[i], &body) < 0) {
				failed = true;
				break;
			}
		}
		imap_cmd_submit(cmd, append_done, b);
		if (imap_client_run_until_below(c, bo->depth, &error) < 0)
			break;
	}
	if (imap_client_run(c, &error) < 0 && ac->error == NULL)
		ac->error = xstrdup(error);
	if (i < f->count && ac->error == NULL)
		ac->error = xasprintf("cannot read %s", f->msgs[i].path);
	return ac->error != NULL ? -1 : 0;
}

static void
create_done(void *ctx, const struct imap_response *tagged, const char *error)
{
	/* "already exists" is fine; real failures show in the APPENDs */
}

static int
cmd_append_only(int argc, char **argv)
{
	struct bench_opts bo = { .batch = 1, .depth = APPEND_DEPTH,
	                         .group = APPEND_GROUP };
	struct bench_result res = { 0 };
	struct append_ctx ac = { .res = &res };
	struct imap_account_info info;
	struct imap_client *c = NULL;
	struct endpoint ep = { 0 };
	struct atree tree = { 0 };
	const char *error, *dir;
	char *maildir = NULL;
	double t0;
	char sep;
	bool multi;
	int argi, status = 1;

	if (cli_parse(&append_cmd, argc, argv, &bo.common, bench_option, &bo,
	              &argi, &status) < 0)
		return status;
	status = 1;
	dir = argv[argi + 1];
	if (!is_dir(dir)) {
		fprintf(stderr, "imapferry: %s: not a directory\n", dir);
		return 2;
	}
	t0 = time_mono_sec();
	if (bench_connect(&bo, argv[argi], "append", NULL, &ep, &c) < 0)
		goto out;
	if (imap_account_inventory(c, 0, &info, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		goto out;
	}
	sep = info.separator != '\0' ? info.separator : '/';
	imap_account_info_free(&info);

	maildir = xasprintf("%s/Maildir", dir);
	if (is_dir(maildir)) {
		scan_maildir(&tree, maildir, sep);
	} else {
		char *cur = xasprintf("%s/cur", dir);

		if (is_dir(cur)) {
			scan_maildir(&tree, dir, sep);
		} else {
			struct buf flags;

			buf_init(&flags, 4096);
			scan_eml(&tree, dir, "", sep, &flags);
			buf_free(&flags);
		}
		free(cur);
	}
	/* CREATE every folder first (pipelined; errors such as "already
	 * exists" ignored: a real failure shows in the APPENDs) */
	for (size_t i = 0; i < tree.count; i++) {
		struct imap_cmd *cmd;

		if (str_ieq(tree.folders[i].wire, "INBOX"))
			continue;
		cmd = imap_cmd_new(c);
		imap_cmd_add(cmd, "CREATE ");
		imap_cmd_add_astring(cmd, tree.folders[i].wire,
		                     strlen(tree.folders[i].wire));
		imap_cmd_submit(cmd, create_done, NULL);
	}
	if (imap_client_run(c, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		goto out;
	}
	multi = imap_client_has_cap(c, "MULTIAPPEND") && bo.group > 1;
	status = 0;
	for (size_t i = 0; i < tree.count && status == 0; i++) {
		if (tree.folders[i].count == 0)
			continue;
		res.folders++;
		if (append_folder(c, &bo, &ac, &tree.folders[i], multi) < 0) {
			fprintf(stderr, "imapferry: %s: %s\n", tree.folders[i].wire,
			        ac.error != NULL ? ac.error : "failed");
			status = 1;
		}
	}
	imap_client_logout(&c);
	res.seconds = time_mono_sec() - t0;
	print_result(&bo, "append-only", &res);
out:
	if (c != NULL)
		imap_client_free(&c);
	tree_free(&tree);
	free(maildir);
	free(ac.error);
	endpoint_free(&ep);
	return status;
}

static void
usage(FILE *f)
{
	fputs("usage: imapferry-bench COMMAND [options] ...\n"
	      "The limits bench/run.py compares imapferry copy with:\n"
	      "  fetch-only URL        read every message, bodies discarded\n"
	      "  append-only URL DIR   APPEND every message of a Maildir or tree\n"
	      "See imapferry-bench COMMAND --help.\n", f);
}

int
main(int argc, char **argv)
{
	/* A peer closing a socket must be an error, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "fetch-only") == 0)
		return cmd_fetch_only(argc - 1, argv + 1);
	if (strcmp(argv[1], "append-only") == 0)
		return cmd_append_only(argc - 1, argv + 1);
	fprintf(stderr, "imapferry-bench: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
