/* copy.c: the IMAP-to-IMAP copy engine (see copy.h).
 *
 * Threads: the calling thread owns the target session and the state
 * database; one reader thread per folder pass owns the source session
 * while it fetches, and hands messages over through struct mqueue only. */
#define _GNU_SOURCE 1 /* O_TMPFILE */
#include "copy.h"

#include "buf.h"
#include "flags.h"
#include "log.h"
#include "mailboxes.h"
#include "mqueue.h"
#include "msgsum.h"
#include "reader.h"
#include "source.h"
#include "uidset.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum scope { SCOPE_OK, SCOPE_MESSAGE, SCOPE_FOLDER, SCOPE_SESSION, SCOPE_RUN };

#define COMMIT_EVERY_MSGS 500
#define COMMIT_EVERY_MS 2000
#define APPEND_GROUP_BYTES (8 * 1024 * 1024)

enum op_type { OP_PUT, OP_FLAGS, OP_DELETE };

struct state_op {
	enum op_type type;
	struct state_msg m;       /* flags owned */
};

struct copy_ctx {
	const struct imap_client_options *dst_opts;
	struct source src;            /* IMAP account or Maildir */
	const struct copy_options *o;
	struct imap_client *dst;
	struct state_db *db;
	struct copy_stats *stats;
	struct imap_account_info src_info, dst_info;
	bool have_info;
	char *error;              /* of the worst failure so far */
	enum scope worst;

	/* the folder being copied */
	const char *src_name;
	const char *dst_name;
	struct state_folder sf;
	uint32_t dst_uidvalidity;
	char **dst_pflags;        /* PERMANENTFLAGS of the target folder */
	uint32_t max_dst_uid;     /* highest target UID recorded */
	unsigned uncommitted;
	uint64_t last_commit;
	uint32_t *retry;          /* source UIDs to append again one by one */
	size_t n_retry, retry_alloc;
	char **dropped_seen;      /* flags already reported as dropped */
	size_t n_dropped_seen;
	bool single_append;       /* retry pass: no MULTIAPPEND */
	struct state_op *ops;     /* state changes not yet written */
	size_t n_ops, ops_alloc;
};

/* ------------------------------------------------------------- failures */

static void
fail(struct copy_ctx *cc, enum scope scope, const char *fmt, ...) ATTR_PRINTF(3, 4);

static void
fail(struct copy_ctx *cc, enum scope scope, const char *fmt, ...)
{
	va_list ap;
	char *msg;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	msg = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(msg, (size_t)n + 1, fmt, ap);
	va_end(ap);
	if (scope >= cc->worst) {
		free(cc->error);
		cc->error = msg;
		cc->worst = scope;
	} else {
		free(msg);
	}
}

/* Target replies that no retry can fix. */
static bool
is_run_fatal(const struct imap_response *tagged)
{
	const char *t = tagged->text;

	return tagged->code.type == IMAP_CODE_OVERQUOTA ||
	       strstr(t, "disk space") != NULL || strstr(t, "No space") != NULL ||
	       strstr(t, "Disk full") != NULL || strstr(t, "disk full") != NULL ||
	       strstr(t, "Quota exceeded") != NULL;
}

/* ------------------------------------------------------------ state */

/* State changes wait in memory and go to the database in one short
 * transaction per batch: no write lock is held across network I/O, so
 * parallel sessions and workers sharing the database never wait long for
 * each other. A crash loses at most the batch: the copies it recorded are
 * found again by fingerprint. */
static void
op_push(struct copy_ctx *cc, enum op_type type, uint32_t src_uid,
        uint32_t dst_uid, const char *flags, uint64_t size, int64_t date)
{
	struct state_op *op;

	if (cc->n_ops == cc->ops_alloc) {
		cc->ops_alloc = cc->ops_alloc == 0 ? 256 : cc->ops_alloc * 2;
		cc->ops = xreallocarray(cc->ops, cc->ops_alloc, sizeof(*cc->ops));
	}
	op = &cc->ops[cc->n_ops++];
	memset(op, 0, sizeof(*op));
	op->type = type;
	op->m.src_uid = src_uid;
	op->m.dst_uid = dst_uid;
	op->m.flags = flags != NULL ? xstrdup(flags) : NULL;
	op->m.size = size;
	op->m.internaldate = date;
}

static void
ops_clear(struct copy_ctx *cc)
{
	for (size_t i = 0; i < cc->n_ops; i++)
		free(cc->ops[i].m.flags);
	cc->n_ops = 0;
}

static int
state_flush(struct copy_ctx *cc)
{
	const char *error;
	int ret = 0;

	if (cc->max_dst_uid >= cc->sf.dst_uidnext)
		cc->sf.dst_uidnext = cc->max_dst_uid + 1;
	if (state_begin(cc->db, &error) < 0)
		goto fail;
	for (size_t i = 0; i < cc->n_ops && ret == 0; i++) {
		const struct state_op *op = &cc->ops[i];

		switch (op->type) {
		case OP_PUT:
			ret = state_msg_put(cc->db, cc->sf.id, &op->m, &error);
			break;
		case OP_FLAGS:
			ret = state_msg_set_flags(cc->db, cc->sf.id, op->m.src_uid,
			                          op->m.flags, &error);
			break;
		case OP_DELETE:
			ret = state_msg_delete(cc->db, cc->sf.id, op->m.src_uid,
			                       &error);
			break;
		}
	}
	if (ret < 0 || state_folder_put(cc->db, &cc->sf, &error) < 0 ||
	    state_commit(cc->db, &error) < 0) {
		state_rollback(cc->db);
		goto fail;
	}
	ops_clear(cc);
	cc->uncommitted = 0;
	cc->last_commit = time_mono_ms();
	return 0;
fail:
	fail(cc, SCOPE_RUN, "%s", error);
	return -1;
}

static void
maybe_commit(struct copy_ctx *cc)
{
	if (cc->uncommitted >= COMMIT_EVERY_MSGS ||
	    (cc->uncommitted > 0 &&
	     time_mono_ms() - cc->last_commit >= COMMIT_EVERY_MS))
		(void)state_flush(cc);
}

static void
record_copy(struct copy_ctx *cc, uint32_t src_uid, uint32_t dst_uid,
            const char *flags, uint64_t size, int64_t date)
{
	op_push(cc, OP_PUT, src_uid, dst_uid, flags, size, date);
	if (dst_uid > cc->max_dst_uid)
		cc->max_dst_uid = dst_uid;
	cc->uncommitted++;
}

/* ----------------------------------------------------------- appending */

struct append_group {
	struct copy_ctx *cc;
	size_t count;
	uint32_t *uids;
	char **flags;
	int64_t *dates;
	uint64_t *sizes;
};

static void
group_free(struct append_group *g)
{
	for (size_t i = 0; i < g->count; i++)
		free(g->flags[i]);
	free(g->uids);
	free(g->flags);
	free(g->dates);
	free(g->sizes);
	free(g);
}

static void
retry_add(struct copy_ctx *cc, uint32_t uid)
{
	if (cc->n_retry == cc->retry_alloc) {
		cc->retry_alloc = cc->retry_alloc == 0 ? 16 : cc->retry_alloc * 2;
		cc->retry = xreallocarray(cc->retry, cc->retry_alloc, sizeof(uint32_t));
	}
	cc->retry[cc->n_retry++] = uid;
}

static void
append_done(void *ctx, const struct imap_response *tagged, const char *error)
{
	struct append_group *g = ctx;
	struct copy_ctx *cc = g->cc;
	uint32_t *dst_uids = NULL;
	size_t n_dst = 0;

	if (tagged == NULL) {
		fail(cc, SCOPE_SESSION, "target: %s", error);
	} else if (tagged->status != IMAP_STATUS_OK) {
		if (is_run_fatal(tagged)) {
			fail(cc, SCOPE_RUN, "target refused APPEND to %s: %s",
			     cc->dst_name, tagged->text);
		} else if (g->count > 1) {
			/* one bad message fails the whole MULTIAPPEND: try
			 * each of them alone */
			for (size_t i = 0; i < g->count; i++)
				retry_add(cc, g->uids[i]);
		} else {
			const char *err2;

			log_warn("%s: message UID %" PRIu32 " refused by the target: %s",
			         cc->src_name, g->uids[0], tagged->text);
			cc->stats->failed++;
			if (cc->o->progress != NULL)
				cc->o->progress->failed++;
			if (state_failure_put(cc->db, cc->o->account, cc->src_name,
			                      g->uids[0], STATE_SCOPE_MESSAGE,
			                      tagged->text, &err2) < 0)
				fail(cc, SCOPE_RUN, "%s", err2);
		}
	} else {
		if (tagged->code.type == IMAP_CODE_APPENDUID &&
		    tagged->code.uidvalidity == cc->dst_uidvalidity &&
		    (uidset_expand(tagged->code.set1, g->count, &dst_uids, &n_dst) < 0 ||
		     n_dst != g->count)) {
			free(dst_uids);
			dst_uids = NULL;
		}
		for (size_t i = 0; i < g->count; i++) {
			record_copy(cc, g->uids[i], dst_uids != NULL ? dst_uids[i] : 0,
			            g->flags[i], g->sizes[i], g->dates[i]);
			cc->stats->copied++;
			cc->stats->bytes += g->sizes[i];
			if (cc->o->progress != NULL) {
				cc->o->progress->messages++;
				cc->o->progress->bytes += g->sizes[i];
			}
		}
		free(dst_uids);
		maybe_commit(cc);
	}
	group_free(g);
}

static void
note_dropped(struct copy_ctx *cc, const char *dropped)
{
	char *dup = xstrdup(dropped), *p, *next;

	for (p = dup; p != NULL && *p != '\0'; p = next) {
		bool seen = false;

		next = strchr(p, ' ');
		if (next != NULL)
			*next++ = '\0';
		cc->stats->dropped_flags++;
		for (size_t i = 0; i < cc->n_dropped_seen && !seen; i++)
			seen = strcmp(cc->dropped_seen[i], p) == 0;
		if (seen)
			continue;
		log_warn("%s: the target does not keep flag %s: dropped",
		         cc->dst_name, p);
		cc->dropped_seen = xreallocarray(cc->dropped_seen,
		                                 cc->n_dropped_seen + 1, sizeof(char *));
		cc->dropped_seen[cc->n_dropped_seen++] = xstrdup(p);
	}
	free(dup);
}

/* Sends one APPEND (MULTIAPPEND for several) for the list of messages;
 * takes ownership of the list. */
static void
append_submit(struct copy_ctx *cc, struct cmsg *list)
{
	struct imap_cmd *cmd = imap_cmd_new(cc->dst);
	struct append_group *g = xcalloc(1, sizeof(*g));
	size_t n = 0;

	for (struct cmsg *m = list; m != NULL; m = m->next)
		n++;
	g->cc = cc;
	g->uids = xcalloc(n, sizeof(*g->uids));
	g->flags = xcalloc(n, sizeof(*g->flags));
	g->dates = xcalloc(n, sizeof(*g->dates));
	g->sizes = xcalloc(n, sizeof(*g->sizes));
	imap_cmd_add(cmd, "APPEND ");
	imap_cmd_add_astring(cmd, cc->dst_name, strlen(cc->dst_name));
	while (list != NULL) {
		struct cmsg *m = list;
		char date[32], *dropped = NULL;
		char *keep = flags_filter(m->flags, cc->dst_pflags, &dropped);

		list = m->next;
		if (dropped[0] != '\0')
			note_dropped(cc, dropped);
		free(dropped);
		imap_format_datetime((time_t)m->internaldate, date);
		imap_cmd_addf(cmd, " (%s) \"%s\" ", keep, date);
		free(keep);
		if (m->fd >= 0) {
			imap_cmd_add_literal_fd(cmd, m->fd, m->size);
			m->fd = -1;
		} else {
			imap_cmd_add_literal_take(cmd, m->data, (size_t)m->size);
			m->data = NULL;
		}
		g->uids[g->count] = m->uid;
		g->flags[g->count] = m->flags;
		m->flags = NULL;
		g->dates[g->count] = m->internaldate;
		g->sizes[g->count] = m->size;
		g->count++;
		cmsg_free(&m);
	}
	imap_cmd_submit(cmd, append_done, g);
}

/* Copies the given source UIDs: reader thread + pipelined APPENDs. */
static enum scope
copy_uids(struct copy_ctx *cc, const uint32_t *uids, size_t count)
{
	const struct copy_options *o = cc->o;
	struct mqueue q;
	struct source_reader *r;
	unsigned depth = o->append_depth != 0 ? o->append_depth : 16;
	size_t group_max = o->multiappend_max != 0 ? o->multiappend_max : 32;
	const char *error;
	struct cmsg *batch;
	char *rerror;

	if (count == 0)
		return SCOPE_OK;
	if (!imap_client_has_cap(cc->dst, "MULTIAPPEND") || cc->single_append)
		group_max = 1;
	mqueue_init(&q, 4096, o->queue_bytes != 0 ? o->queue_bytes : 32u << 20);
	r = source_reader_start(&cc->src, uids, count, &q, &o->fetch);
	/* While earlier APPENDs keep the target busy, wait briefly for a
	 * full MULTIAPPEND group: a server pays per command (a group of 1
	 * costs Dovecot about 4x the CPU per message of a group of 32). */
	while ((batch = mqueue_pop_batch_min(&q, group_max, APPEND_GROUP_BYTES,
	                                     imap_client_in_flight(cc->dst) > 0 ?
	                                     group_max : 1, 20)) != NULL) {
		if (cc->worst >= SCOPE_SESSION) {
			while (batch != NULL) {
				struct cmsg *m = batch;
				batch = m->next;
				cmsg_free(&m);
			}
			mqueue_abort(&q);
			continue;
		}
		append_submit(cc, batch);
		if (imap_client_run_until_below(cc->dst, depth, &error) < 0) {
			fail(cc, SCOPE_SESSION, "target: %s", error);
			mqueue_abort(&q);
		}
	}
	if (cc->worst < SCOPE_SESSION && imap_client_run(cc->dst, &error) < 0)
		fail(cc, SCOPE_SESSION, "target: %s", error);
	rerror = source_reader_join(&r);
	mqueue_deinit(&q);
	if (rerror != NULL) {
		fail(cc, SCOPE_SESSION, "source: %s", rerror);
		free(rerror);
	}
	return cc->worst >= SCOPE_SESSION ? cc->worst : SCOPE_OK;
}

/* ------------------------------------------------------------- folders */

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Finds, by fingerprint, source messages already on the target (copied by
 * a run that crashed before recording them, or by another tool), records
 * them, and removes them from *to_copy. */
static enum scope
dedupe(struct copy_ctx *cc, uint32_t *to_copy, size_t *n_copy,
       uint32_t dst_from, uint32_t **claimed_r, size_t *n_claimed_r)
{
	struct msgsum_list dst = { 0 }, src = { 0 };
	char from[32];
	const char *error;
	size_t kept = 0, matched = 0;
	struct msgsum_fpindex ix;

	snprintf(from, sizeof(from), "%u:*", dst_from != 0 ? dst_from : 1);
	if (msgsum_fetch(cc->dst, from, MSGSUM_FP, &dst, &error) < 0) {
		fail(cc, SCOPE_SESSION, "target: %s", error);
		msgsum_list_free(&dst);
		return SCOPE_SESSION;
	}
	/* "n:*" also returns the last message when n is past the end */
	while (dst.count > 0 && dst.items[0].uid < dst_from) {
		free(dst.items[0].flags);
		free(dst.items[0].message_id);
		memmove(dst.items, dst.items + 1, (dst.count - 1) * sizeof(*dst.items));
		dst.count--;
	}
	if (dst.count == 0) {
		msgsum_list_free(&dst);
		return SCOPE_OK;
	}
	log_info("%s: %zu messages on the target are not in the state: "
	         "matching them by fingerprint", cc->src_name, dst.count);
	if (source_list(&cc->src, to_copy, *n_copy, MSGSUM_FP, &src, &error) < 0) {
		fail(cc, SCOPE_SESSION, "source: %s", error);
		msgsum_list_free(&dst);
		msgsum_list_free(&src);
		return SCOPE_SESSION;
	}
	msgsum_fpindex_init(&ix, &dst);
	for (size_t i = 0; i < *n_copy; i++) {
		struct msgsum *s = msgsum_find(&src, to_copy[i]);
		struct msgsum *d = s != NULL && s->have_fp ?
		                   msgsum_fpindex_take(&ix, s->fp) : NULL;

		if (d != NULL) {
			record_copy(cc, s->uid, d->uid, s->flags, s->size,
			            s->internaldate);
			if (claimed_r != NULL) {
				*claimed_r = xreallocarray(*claimed_r,
				    *n_claimed_r + 1, sizeof(**claimed_r));
				(*claimed_r)[(*n_claimed_r)++] = d->uid;
			}
			matched++;
		} else {
			to_copy[kept++] = to_copy[i];
		}
	}
	msgsum_fpindex_free(&ix);
	cc->stats->skipped += matched;
	if (matched > 0)
		log_info("%s: %zu messages were already on the target", cc->src_name,
		         matched);
	*n_copy = kept;
	msgsum_list_free(&dst);
	msgsum_list_free(&src);
	return cc->worst >= SCOPE_SESSION ? cc->worst : SCOPE_OK;
}

static const struct imap_mailbox_info *
find_dst_box(const struct imap_account_info *info, const char *name)
{
	for (size_t i = 0; i < info->count; i++)
		if (strcmp(info->boxes[i].name, name) == 0 ||
		    (str_ieq(name, "INBOX") && str_ieq(info->boxes[i].name, "INBOX")))
			return &info->boxes[i];
	return NULL;
}

static char **
strv_dup(char **v)
{
	size_t n = 0;
	char **r;

	if (v == NULL)
		return NULL;
	while (v[n] != NULL)
		n++;
	r = xcalloc(n + 1, sizeof(*r));
	for (size_t i = 0; i < n; i++)
		r[i] = xstrdup(v[i]);
	return r;
}

static void
strv_free(char ***v)
{
	if (*v == NULL)
		return;
	for (char **p = *v; *p != NULL; p++)
		free(*p);
	XFREE(*v);
}

/* Carries flag changes of already-copied messages over: one UID STORE per
 * distinct flag set. */
static enum scope
sync_flags(struct copy_ctx *cc, struct state_msg *known, size_t n_known,
           const struct msgsum_list *src)
{
	struct imap_cmd_wait w = { 0 };
	const char *error;
	bool *done = xcalloc(n_known, sizeof(bool));
	uint32_t *uids = xcalloc(n_known + 1, sizeof(uint32_t));
	size_t changed = 0, ops_mark = cc->n_ops;

	for (size_t i = 0; i < n_known; i++) {
		const struct msgsum *s = msgsum_find(src, known[i].src_uid);

		if (s == NULL || known[i].dst_uid == 0 ||
		    strcmp(s->flags, known[i].flags != NULL ? known[i].flags : "") == 0)
			done[i] = true;
		else
			changed++;
	}
	for (size_t i = 0; i < n_known && changed > 0; i++) {
		const struct msgsum *s;
		size_t n = 0;
		char *keep, *set;
		struct imap_cmd *cmd;

		if (done[i])
			continue;
		s = msgsum_find(src, known[i].src_uid);
		for (size_t k = i; k < n_known; k++) {
			const struct msgsum *t;
			if (done[k])
				continue;
			t = msgsum_find(src, known[k].src_uid);
			if (strcmp(t->flags, s->flags) != 0)
				continue;
			uids[n++] = known[k].dst_uid;
			done[k] = true;
			if (!cc->o->dry_run)
				op_push(cc, OP_FLAGS, known[k].src_uid, 0, t->flags,
				        0, 0);
			cc->stats->flags_updated++;
		}
		changed -= n;
		if (cc->o->dry_run)
			continue;
		qsort(uids, n, sizeof(*uids), cmp_u32);
		keep = flags_filter(s->flags, cc->dst_pflags, NULL);
		set = uidset_string(uids, n);
		cmd = imap_cmd_new(cc->dst);
		imap_cmd_addf(cmd, "UID STORE %s FLAGS.SILENT (%s)", set, keep);
		imap_cmd_submit(cmd, imap_cmd_wait_done, &w);
		free(set);
		free(keep);
		if (imap_client_run_until_below(cc->dst, 16, &error) < 0)
			break;
	}
	if (!cc->o->dry_run && imap_client_run(cc->dst, &error) < 0)
		fail(cc, SCOPE_SESSION, "target: %s", error);
	else if (w.error != NULL)
		fail(cc, SCOPE_FOLDER, "target refused a flag change in %s: %s",
		     cc->dst_name, w.error);
	if (cc->worst >= SCOPE_FOLDER) {
		/* not carried over: the state must not claim it */
		for (size_t i = ops_mark; i < cc->n_ops; i++)
			free(cc->ops[i].m.flags);
		cc->n_ops = ops_mark;
	}
	free(w.error);
	free(done);
	free(uids);
	return cc->worst >= SCOPE_FOLDER ? cc->worst : SCOPE_OK;
}

/* Expunges on the target what the source no longer has. */
static enum scope
delete_missing(struct copy_ctx *cc, const uint32_t *src_gone, size_t n_gone,
               const uint32_t *dst_gone, size_t n_dst)
{
	const char *error;
	char *set;
	struct imap_cmd *cmd;
	struct imap_cmd_wait w = { 0 };

	if (n_gone == 0 && n_dst == 0)
		return SCOPE_OK;
	if (!cc->o->dry_run && n_dst > 0) {
		if (!imap_client_has_cap(cc->dst, "UIDPLUS")) {
			log_warn("%s: the target lacks UIDPLUS: not expunging %zu "
			         "messages deleted on the source", cc->dst_name, n_dst);
			return SCOPE_OK;
		}
		set = uidset_string(dst_gone, n_dst);
		cmd = imap_cmd_new(cc->dst);
		imap_cmd_addf(cmd, "UID STORE %s +FLAGS.SILENT (\\Deleted)", set);
		imap_cmd_submit(cmd, imap_cmd_wait_done, &w);
		cmd = imap_cmd_new(cc->dst);
		imap_cmd_addf(cmd, "UID EXPUNGE %s", set);
		imap_cmd_submit(cmd, imap_cmd_wait_done, &w);
		free(set);
		if (imap_client_run(cc->dst, &error) < 0) {
			fail(cc, SCOPE_SESSION, "target: %s", error);
			free(w.error);
			return SCOPE_SESSION;
		}
		if (w.error != NULL) {
			fail(cc, SCOPE_FOLDER, "target refused to expunge in %s: %s",
			     cc->dst_name, w.error);
			free(w.error);
			return SCOPE_FOLDER;
		}
	}
	for (size_t i = 0; i < n_gone; i++) {
		if (!cc->o->dry_run)
			op_push(cc, OP_DELETE, src_gone[i], 0, NULL, 0, 0);
	}
	cc->stats->expunged += n_gone > n_dst ? n_gone : n_dst;
	return SCOPE_OK;
}

static enum scope
ensure_dst_folder(struct copy_ctx *cc, bool *exists_r)
{
	const struct imap_mailbox_info *b = find_dst_box(&cc->dst_info, cc->dst_name);
	const char *error;
	struct imap_cmd *cmd;
	struct imap_cmd_wait w = { 0 };

	/* a \Noselect or \NonExistent parent that a child implies is listed
	 * but must still be created */
	*exists_r = b != NULL && b->selectable;
	if (*exists_r || cc->o->dry_run)
		return SCOPE_OK;
	cmd = imap_cmd_new(cc->dst);
	imap_cmd_add(cmd, "CREATE ");
	imap_cmd_add_astring(cmd, cc->dst_name, strlen(cc->dst_name));
	imap_cmd_submit(cmd, imap_cmd_wait_done, &w);
	if (imap_client_run(cc->dst, &error) < 0) {
		fail(cc, SCOPE_SESSION, "target: %s", error);
		free(w.error);
		return SCOPE_SESSION;
	}
	if (w.error != NULL && strstr(w.error, "xists") == NULL) {
		fail(cc, SCOPE_FOLDER, "cannot create %s on the target: %s",
		     cc->dst_name, w.error);
		free(w.error);
		return SCOPE_FOLDER;
	}
	free(w.error);
	cc->stats->folders_created++;
	*exists_r = true;
	return SCOPE_OK;
}

/* The source folder's UIDs and flags. With CONDSTORE and a sync point
 * from the last pass, only what changed since is fetched (UID SEARCH ALL
 * for the UID set, FETCH ... (CHANGEDSINCE m) for new and changed flags);
 * unchanged messages keep the flags the state recorded. */
static int
list_source(struct copy_ctx *cc, const struct state_msg *known, size_t n_known,
            uint64_t src_modseq, struct msgsum_list *list, const char **error_r)
{
	struct imap_client *c = cc->src.client;
	struct msgsum_list changed = { 0 };
	uint32_t *uids;
	size_t n_uids, k = 0;

	if (cc->src.kind != SOURCE_IMAP || cc->sf.src_highestmodseq == 0 ||
	    src_modseq == 0 || n_known == 0 || !imap_client_has_cap(c, "CONDSTORE"))
		return source_list(&cc->src, NULL, 0, MSGSUM_FLAGS, list, error_r);
	if (msgsum_uids_all(c, &uids, &n_uids, error_r) < 0)
		return -1;
	if (msgsum_fetch_changed(c, cc->sf.src_highestmodseq, MSGSUM_FLAGS,
	                         &changed, error_r) < 0) {
		free(uids);
		msgsum_list_free(&changed);
		return -1;
	}
	list->items = xcalloc(n_uids + 1, sizeof(*list->items));
	list->alloc = n_uids + 1;
	for (size_t i = 0; i < n_uids; i++) {
		struct msgsum *m = &list->items[list->count++];
		const struct msgsum *ch = msgsum_find(&changed, uids[i]);

		m->uid = uids[i];
		while (k < n_known && known[k].src_uid < uids[i])
			k++;
		if (ch != NULL)
			m->flags = xstrdup(ch->flags);
		else if (k < n_known && known[k].src_uid == uids[i])
			m->flags = xstrdup(known[k].flags != NULL ? known[k].flags : "");
		else
			m->flags = xstrdup("");  /* new: flags come with the body */
	}
	log_debug("%s: CONDSTORE: %zu UIDs, %zu changed since modseq %llu",
	          cc->src_name, n_uids, changed.count,
	          (unsigned long long)cc->sf.src_highestmodseq);
	free(uids);
	msgsum_list_free(&changed);
	return 0;
}

static enum scope
copy_folder(struct copy_ctx *cc, const struct imap_mailbox_info *box,
            const char *dst_name)
{
	const struct copy_options *o = cc->o;
	const struct imap_mailbox_state *mb;
	struct source_folder sfo = { 0 };
	struct msgsum_list src = { 0 };
	struct state_msg *known = NULL;
	size_t n_known = 0, n_copy = 0, n_gone = 0, n_dst_gone = 0;
	uint32_t *to_copy = NULL, *gone = NULL, *dst_gone = NULL;
	uint32_t *ours = NULL, *claimed = NULL;  /* after a UIDVALIDITY change */
	size_t n_ours = 0, n_claimed = 0;
	uint32_t src_uidvalidity, src_uidnext, dst_uidnext = 0;
	uint64_t src_modseq;
	const char *error;
	bool found, dst_exists;
	enum scope sc = SCOPE_OK;
	uint64_t failed_before = cc->stats->failed;

	cc->src_name = box->name;
	cc->dst_name = dst_name;
	cc->max_dst_uid = 0;
	cc->n_retry = 0;
	if (state_folder_get(cc->db, o->account, box->name, &cc->sf, &found,
	                     &error) < 0) {
		fail(cc, SCOPE_RUN, "%s", error);
		return SCOPE_RUN;
	}
	if (!found) {
		memset(&cc->sf, 0, sizeof(cc->sf));
		cc->sf.account = xstrdup(o->account);
		cc->sf.src_name = xstrdup(box->name);
	}
	free(cc->sf.dst_name);
	cc->sf.dst_name = xstrdup(dst_name);

	/* Unchanged since the last complete pass (CONDSTORE): nothing to do. */
	if (found && cc->sf.complete && box->have_status &&
	    cc->sf.src_uidvalidity == box->uidvalidity &&
	    cc->sf.src_uidnext == box->uidnext && box->highestmodseq != 0 &&
	    cc->sf.src_highestmodseq == box->highestmodseq &&
	    find_dst_box(&cc->dst_info, dst_name) != NULL) {
		log_debug("%s: unchanged since the last run", box->name);
		cc->stats->skipped += box->messages;
		state_folder_free(&cc->sf);
		return SCOPE_OK;
	}

	if ((sc = ensure_dst_folder(cc, &dst_exists)) != SCOPE_OK)
		goto out;
	if (dst_exists) {
		if (o->dry_run ? imap_client_select(cc->dst, dst_name, true, &error) < 0 :
		                 imap_client_select(cc->dst, dst_name, false, &error) < 0) {
			if (imap_client_is_dead(cc->dst)) {
				fail(cc, SCOPE_SESSION, "target: %s", error);
				sc = SCOPE_SESSION;
			} else {
				fail(cc, SCOPE_FOLDER, "cannot select %s on the target: %s",
				     dst_name, error);
				sc = SCOPE_FOLDER;
			}
			goto out;
		}
		mb = imap_client_mailbox(cc->dst);
		cc->dst_uidvalidity = mb->uidvalidity;
		dst_uidnext = mb->uidnext;
		strv_free(&cc->dst_pflags);
		cc->dst_pflags = strv_dup(mb->permanentflags);
		if (mb->exists == 0)
			dst_uidnext = cc->sf.dst_uidnext; /* nothing to match */
	} else {
		cc->dst_uidvalidity = 0;
	}

	if (source_select(&cc->src, box->name, &sfo, &error) < 0) {
		if (source_is_dead(&cc->src)) {
			fail(cc, SCOPE_SESSION, "source: %s", error);
			sc = SCOPE_SESSION;
		} else {
			fail(cc, SCOPE_FOLDER, "cannot examine %s on the source: %s",
			     box->name, error);
			sc = SCOPE_FOLDER;
		}
		goto out;
	}
	src_uidvalidity = sfo.uidvalidity;
	src_uidnext = sfo.uidnext != 0 ? sfo.uidnext : box->uidnext;
	src_modseq = sfo.highestmodseq;

	if (found && (cc->sf.src_uidvalidity != src_uidvalidity ||
	              (dst_exists && cc->sf.dst_uidvalidity != 0 &&
	               cc->sf.dst_uidvalidity != cc->dst_uidvalidity))) {
		log_warn("%s: UIDVALIDITY changed (source %u -> %u, target %u -> %u): "
		         "matching messages by fingerprint", box->name,
		         cc->sf.src_uidvalidity, src_uidvalidity,
		         cc->sf.dst_uidvalidity, cc->dst_uidvalidity);
		/* with --delete-missing: the target messages we copied
		 * before that no source message matches now are gone on
		 * the source (only ours: not mail delivered to the target) */
		if (o->delete_missing && !o->dry_run && dst_exists &&
		    cc->sf.dst_uidvalidity == cc->dst_uidvalidity &&
		    cc->sf.id != 0) {
			if (state_msgs_load(cc->db, cc->sf.id, &known, &n_known,
			                    &error) < 0) {
				fail(cc, SCOPE_RUN, "%s", error);
				sc = SCOPE_RUN;
				goto out;
			}
			ours = xcalloc(n_known + 1, sizeof(*ours));
			for (size_t i = 0; i < n_known; i++)
				if (known[i].dst_uid != 0)
					ours[n_ours++] = known[i].dst_uid;
			qsort(ours, n_ours, sizeof(*ours), cmp_u32);
			state_msgs_free(&known, n_known);
			n_known = 0;
		}
		if (!o->dry_run &&
		    state_folder_clear_messages(cc->db, cc->sf.id, &error) < 0) {
			fail(cc, SCOPE_RUN, "%s", error);
			sc = SCOPE_RUN;
			goto out;
		}
		cc->sf.dst_uidnext = 0;
		cc->sf.complete = false;
	}
	cc->sf.src_uidvalidity = src_uidvalidity;
	cc->sf.dst_uidvalidity = cc->dst_uidvalidity;
	if (!o->dry_run && state_flush(cc) < 0) {
		sc = SCOPE_RUN;
		goto out;
	}
	cc->last_commit = time_mono_ms();
	if (found && cc->sf.id != 0 &&
	    state_msgs_load(cc->db, cc->sf.id, &known, &n_known, &error) < 0) {
		fail(cc, SCOPE_RUN, "%s", error);
		sc = SCOPE_RUN;
		goto out_tx;
	}

	if (sfo.exists > 0 && list_source(cc, known, n_known, src_modseq, &src,
	                                  &error) < 0) {
		fail(cc, SCOPE_SESSION, "source: %s", error);
		sc = SCOPE_SESSION;
		goto out_tx;
	}

	/* diff: both lists are sorted by source UID */
	to_copy = xcalloc(src.count + 1, sizeof(uint32_t));
	gone = xcalloc(n_known + 1, sizeof(uint32_t));
	dst_gone = xcalloc(n_known + 1, sizeof(uint32_t));
	for (size_t i = 0, k = 0; i < src.count || k < n_known;) {
		if (k == n_known || (i < src.count && src.items[i].uid < known[k].src_uid)) {
			if (!(o->skip_deleted && flags_has(src.items[i].flags, "\\Deleted")))
				to_copy[n_copy++] = src.items[i].uid;
			i++;
		} else if (i == src.count || known[k].src_uid < src.items[i].uid) {
			if (o->delete_missing) {
				gone[n_gone++] = known[k].src_uid;
				if (known[k].dst_uid != 0)
					dst_gone[n_dst_gone++] = known[k].dst_uid;
			}
			k++;
		} else {
			cc->stats->skipped++;
			i++;
			k++;
		}
	}

	if (n_copy > 0 && dst_exists && dst_uidnext > cc->sf.dst_uidnext &&
	    (sc = dedupe(cc, to_copy, &n_copy, cc->sf.dst_uidnext,
	                 n_ours > 0 ? &claimed : NULL, &n_claimed)) != SCOPE_OK)
		goto out_tx;
	if (n_ours > 0) {
		/* ours that nothing claimed: dropped by the source */
		if (n_claimed > 1)
			qsort(claimed, n_claimed, sizeof(*claimed), cmp_u32);
		dst_gone = xreallocarray(dst_gone, n_dst_gone + n_ours + 1,
		                         sizeof(*dst_gone));
		for (size_t i = 0, k = 0; i < n_ours; i++) {
			while (k < n_claimed && claimed[k] < ours[i])
				k++;
			if (k < n_claimed && claimed[k] == ours[i])
				continue;
			dst_gone[n_dst_gone++] = ours[i];
		}
	}
	if (dst_exists && dst_uidnext > cc->sf.dst_uidnext)
		cc->sf.dst_uidnext = dst_uidnext;

	if (!o->quiet && (n_copy > 0 || n_gone > 0))
		log_info("%s -> %s: %zu to copy, %zu known, %zu gone%s", box->name,
		         dst_name, n_copy, n_known, n_gone,
		         o->dry_run ? " (dry run)" : "");
	if (o->dry_run) {
		cc->stats->copied += n_copy;
		cc->stats->expunged += n_gone;
		sync_flags(cc, known, n_known, &src);
		goto out_tx;
	}
	if ((sc = copy_uids(cc, to_copy, n_copy)) != SCOPE_OK)
		goto out_tx;
	if (cc->n_retry > 0) {
		uint32_t *retry = cc->retry;
		size_t n = cc->n_retry;

		qsort(retry, n, sizeof(*retry), cmp_u32);
		cc->retry = NULL;
		cc->n_retry = cc->retry_alloc = 0;
		cc->single_append = true;
		sc = copy_uids(cc, retry, n);
		cc->single_append = false;
		free(retry);
		if (sc != SCOPE_OK)
			goto out_tx;
	}
	if (cc->worst >= SCOPE_SESSION) {
		sc = cc->worst;
		goto out_tx;
	}
	if ((sc = sync_flags(cc, known, n_known, &src)) != SCOPE_OK)
		goto out_tx;
	if ((sc = delete_missing(cc, gone, n_gone, dst_gone, n_dst_gone)) != SCOPE_OK)
		goto out_tx;
	cc->sf.src_uidnext = src_uidnext;
	cc->sf.src_highestmodseq = src_modseq;
	/* A message the target refused is not copied: leave the folder
	 * incomplete so that the next run tries (and reports) it again
	 * instead of skipping the folder as unchanged. */
	cc->sf.complete = cc->stats->failed == failed_before;
out_tx:
	if (!o->dry_run && !(sc == SCOPE_RUN && cc->worst == SCOPE_RUN &&
	                     strstr(cc->error, "state") != NULL))
		(void)state_flush(cc);
	ops_clear(cc);
out:
	state_msgs_free(&known, n_known);
	msgsum_list_free(&src);
	free(to_copy);
	free(gone);
	free(dst_gone);
	free(ours);
	free(claimed);
	state_folder_free(&cc->sf);
	if (sc == SCOPE_OK && cc->worst >= SCOPE_SESSION)
		sc = cc->worst;
	return sc;
}

/* ------------------------------------------------------------ sessions */

static void
disconnect(struct copy_ctx *cc)
{
	source_disconnect(&cc->src);
	if (cc->dst != NULL)
		imap_client_free(&cc->dst);
}

static enum scope
connect_both(struct copy_ctx *cc)
{
	const char *error;
	bool refused;

	if (!source_is_connected(&cc->src) &&
	    source_connect(&cc->src, &refused, &error) < 0) {
		fail(cc, refused ? SCOPE_RUN : SCOPE_SESSION, "source: %s", error);
		return refused ? SCOPE_RUN : SCOPE_SESSION;
	}
	if (cc->dst == NULL &&
	    imap_client_connect(cc->dst_opts, &cc->dst, &refused, &error) < 0) {
		fail(cc, refused ? SCOPE_RUN : SCOPE_SESSION, "target: %s", error);
		return refused ? SCOPE_RUN : SCOPE_SESSION;
	}
	return SCOPE_OK;
}

static enum scope
load_inventories(struct copy_ctx *cc)
{
	const char *error;

	if (cc->have_info) {
		imap_account_info_free(&cc->src_info);
		imap_account_info_free(&cc->dst_info);
		cc->have_info = false;
	}
	if (source_inventory(&cc->src, IMAP_INV_STATUS | IMAP_INV_SUBSCRIBED,
	                     &cc->src_info, &error) < 0) {
		fail(cc, SCOPE_SESSION, "source: %s", error);
		return SCOPE_SESSION;
	}
	if (imap_account_inventory(cc->dst, IMAP_INV_SUBSCRIBED, &cc->dst_info,
	                           &error) < 0) {
		imap_account_info_free(&cc->src_info);
		fail(cc, SCOPE_SESSION, "target: %s", error);
		return SCOPE_SESSION;
	}
	cc->have_info = true;
	return SCOPE_OK;
}

/* Reconnects after a session failure, waiting 1, 2, 4, ... seconds. */
static enum scope
reconnect(struct copy_ctx *cc, unsigned attempt)
{
	unsigned wait = 1u << (attempt < 5 ? attempt : 5);

	log_warn("%s; reconnecting in %u s", cc->error != NULL ? cc->error : "session lost", wait);
	disconnect(cc);
	/* The folder lists belong to the old sessions: without new ones
	 * (connect or inventory failing below) have_info stays false. */
	if (cc->have_info) {
		imap_account_info_free(&cc->src_info);
		imap_account_info_free(&cc->dst_info);
		cc->have_info = false;
	}
	sleep(wait);
	XFREE(cc->error);
	cc->worst = SCOPE_OK;
	if (connect_both(cc) != SCOPE_OK)
		return cc->worst;
	return load_inventories(cc);
}

struct fpair {
	char *src;                /* source wire name */
	char *dst;                /* target wire name, NULL if excluded */
	bool selectable, subscribed;
};

static void
copy_subscriptions(struct copy_ctx *cc, const struct fpair *pairs, size_t n)
{
	struct imap_cmd_wait w = { 0 };
	const char *error;

	for (size_t i = 0; i < n; i++) {
		const struct imap_mailbox_info *db;
		struct imap_cmd *cmd;

		if (!pairs[i].subscribed || pairs[i].dst == NULL)
			continue;
		db = find_dst_box(&cc->dst_info, pairs[i].dst);
		if (db != NULL && db->subscribed)
			continue;
		cc->stats->subscribed++;
		if (cc->o->dry_run)
			continue;
		cmd = imap_cmd_new(cc->dst);
		imap_cmd_add(cmd, "SUBSCRIBE ");
		imap_cmd_add_astring(cmd, pairs[i].dst, strlen(pairs[i].dst));
		imap_cmd_submit(cmd, imap_cmd_wait_done, &w);
	}
	if (!cc->o->dry_run && imap_client_run(cc->dst, &error) < 0)
		log_warn("target: subscribing: %s", error);
	else if (w.error != NULL)
		log_warn("target refused a subscription: %s", w.error);
	free(w.error);
}

static void
setup_foldermap(struct copy_ctx *cc)
{
	for (size_t i = 0; i < cc->dst_info.count; i++) {
		unsigned su = cc->dst_info.boxes[i].attrs & IMAP_MBOX_SPECIAL_USE_MASK;

		for (unsigned bit = 1; su != 0 && bit != 0; bit <<= 1)
			if (su & bit)
				foldermap_set_dst_special(cc->o->fm, bit,
				                          cc->dst_info.boxes[i].name);
	}
}

int
copy_account(const struct imap_client_options *src,
             const struct imap_client_options *dst, struct state_db *db,
             const struct copy_options *o, struct copy_stats *stats,
             const char **error_r)
{
	struct source s = { .kind = SOURCE_IMAP, .imap = src };

	return copy_account_from(&s, dst, db, o, stats, error_r);
}

int
copy_account_from(const struct source *src,
             const struct imap_client_options *dst_opts, struct state_db *db,
             const struct copy_options *o, struct copy_stats *stats,
             const char **error_r)
{
	struct copy_ctx cc = {
		.src = *src, .dst_opts = dst_opts, .o = o, .db = db,
		.stats = stats,
	};
	unsigned max_retries = o->max_retries != 0 ? o->max_retries : 5;
	double start = time_mono_sec();
	struct fpair *pairs = NULL;
	size_t n_names = 0;
	unsigned attempt = 0;
	int ret = 0;

	memset(stats, 0, sizeof(*stats));
	while (connect_both(&cc) != SCOPE_OK || load_inventories(&cc) != SCOPE_OK) {
		if (cc.worst == SCOPE_RUN || attempt >= max_retries) {
			*error_r = err_set("%s", cc.error);
			ret = -1;
			goto out;
		}
		log_warn("%s; retrying in %u s", cc.error, 1u << attempt);
		disconnect(&cc);
		sleep(1u << attempt);
		attempt++;
		XFREE(cc.error);
		cc.worst = SCOPE_OK;
	}
	setup_foldermap(&cc);
	/* The folder list is taken now: src_info may be reloaded after a
	 * reconnect. */
	n_names = cc.src_info.count;
	pairs = xcalloc(n_names + 1, sizeof(*pairs));
	for (size_t i = 0; i < n_names; i++) {
		const struct imap_mailbox_info *box = &cc.src_info.boxes[i];
		struct foldermap_result res;
		const char *error;

		pairs[i].src = xstrndup(box->name, box->name_len);
		pairs[i].selectable = box->selectable;
		pairs[i].subscribed = box->subscribed;
		if (strlen(pairs[i].src) != box->name_len) {
			log_warn("source folder name with a NUL byte skipped: %s",
			         pairs[i].src);
			stats->folders_failed++;
			continue;
		}
		if (foldermap_map(o->fm, box->name, box->name_len, box->attrs, &res,
		                  &error) < 0) {
			log_warn("source folder %s: %s", box->name, error);
			stats->folders_failed++;
			continue;
		}
		if (res.note != NULL)
			log_warn("folder %s: %s", res.logical, res.note);
		if (!res.excluded)
			pairs[i].dst = xstrdup(res.dst_wire);
		foldermap_result_free(&res);
	}
	for (size_t i = 0; i < n_names; i++) {
		const char *src_name = pairs[i].src;
		struct imap_mailbox_info box;
		enum scope sc;

		if (pairs[i].dst == NULL || !pairs[i].selectable ||
		    !copy_folder_selected(o->folders, o->n_folders, src_name))
			continue;
		for (attempt = 0;; attempt++) {
			const struct imap_mailbox_info *b = NULL;

			if (!cc.have_info) {
				/* The last reconnect failed: no sessions and no
				 * folder list (not "vanished"). Try again; give up
				 * on the run when that keeps failing. */
				if (attempt >= max_retries) {
					char *why = cc.error;

					cc.error = NULL;
					fail(&cc, SCOPE_RUN, "cannot reconnect: %s",
					     why != NULL ? why : "session lost");
					free(why);
					break;
				}
				if (reconnect(&cc, attempt) == SCOPE_RUN)
					break;
				continue;
			}
			for (size_t k = 0; k < cc.src_info.count && b == NULL; k++)
				if (strcmp(cc.src_info.boxes[k].name, src_name) == 0)
					b = &cc.src_info.boxes[k];
			if (b == NULL) {
				log_warn("%s: vanished from the source", src_name);
				break;
			}
			box = *b;
			sc = copy_folder(&cc, &box, pairs[i].dst);
			if (sc == SCOPE_OK) {
				stats->folders++;
				break;
			}
			if (sc == SCOPE_RUN)
				break;
			if (sc == SCOPE_FOLDER || attempt >= max_retries) {
				const char *err2;

				log_error("%s: %s", src_name, cc.error);
				stats->folders_failed++;
				ignore_result(state_failure_put(db, o->account, src_name, 0,
				                        STATE_SCOPE_FOLDER, cc.error, &err2));
				XFREE(cc.error);
				cc.worst = SCOPE_OK;
				if (sc != SCOPE_FOLDER)
					(void)reconnect(&cc, attempt);
				break;
			}
			if (reconnect(&cc, attempt) == SCOPE_RUN)
				break;
		}
		if (cc.worst == SCOPE_RUN) {
			*error_r = err_set("%s", cc.error);
			ret = -1;
			goto out;
		}
	}
	if (!o->no_subscriptions && source_is_connected(&cc.src) && cc.dst != NULL &&
	    !imap_client_is_dead(cc.dst))
		copy_subscriptions(&cc, pairs, n_names);
	source_logout(&cc.src);
	if (cc.dst != NULL)
		imap_client_logout(&cc.dst);
out:
	for (size_t i = 0; i < n_names && pairs != NULL; i++) {
		free(pairs[i].src);
		free(pairs[i].dst);
	}
	free(pairs);
	disconnect(&cc);
	if (cc.have_info) {
		imap_account_info_free(&cc.src_info);
		imap_account_info_free(&cc.dst_info);
	}
	strv_free(&cc.dst_pflags);
	for (size_t i = 0; i < cc.n_dropped_seen; i++)
		free(cc.dropped_seen[i]);
	free(cc.dropped_seen);
	free(cc.retry);
	ops_clear(&cc);
	free(cc.ops);
	free(cc.error);
	stats->seconds = time_mono_sec() - start;
	return ret;
}

bool
copy_folder_selected(char *const *folders, size_t n, const char *name)
{
	if (folders == NULL)
		return true;
	for (size_t i = 0; i < n; i++)
		if (strcmp(folders[i], name) == 0 ||
		    (str_ieq(folders[i], "INBOX") && str_ieq(name, "INBOX")))
			return true;
	return false;
}
