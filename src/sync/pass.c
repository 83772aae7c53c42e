/* pass.c: the one pass driver (copy.h): every copy, whatever its source
 * and target, runs through here. The target's differences are behind
 * struct target_ops (target.h).
 *
 * Threads: the calling thread owns the target and the state database; one
 * reader thread per folder pass owns the source while it fetches, and
 * hands messages over through struct mqueue only. */
#include "copy.h"

#include "flags.h"
#include "log.h"
#include "mailboxes.h"
#include "mqueue.h"
#include "msgsum.h"
#include "mutf7.h"
#include "reader.h"
#include "source.h"
#include "uidset.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* What a failure stops: ordered, the worst one wins. */
enum scope { SCOPE_OK, SCOPE_MESSAGE, SCOPE_FOLDER, SCOPE_SESSION, SCOPE_RUN };

#define COMMIT_EVERY_MSGS 500     /* state records per transaction */
#define COMMIT_EVERY_MS 2000
/* A target that commits (a Maildir publishes its files and their uidlist
 * lines) does so at least this often while it has deliveries, as well
 * as every commit_every() messages: over a slow source the users see
 * their mail arrive, and a crash leaves at most this much unpublished. */
#define TARGET_COMMIT_MS 5000
#define FENCE_EVERY_MS 250        /* a shared job's lease checked before sending */
#define GROUP_BYTES (8 * 1024 * 1024)
/* A folder larger than this is compared with the state (or the target) in
 * windows of about this many messages: memory bounded by the window, not
 * the folder (issue 15). IMAPFERRY_DIFF_WINDOW overrides it (tests). */
#define DIFF_WINDOW 50000
/* A folder whose last pass did not finish, on a target that numbers
 * messages itself: the server may still be running APPENDs of that pass,
 * sent before the process died or the session was dropped (the server
 * reads what is in its socket buffer after the client is gone). Its
 * UIDNEXT and EXISTS must not move for SETTLE_QUIET_MS before the pass
 * compares it, polled every SETTLE_POLL_MS, at most SETTLE_MAX_MS.
 * IMAPFERRY_SETTLE_MS overrides the quiet time (tests). */
#define SETTLE_QUIET_MS 3000
#define SETTLE_POLL_MS 250
#define SETTLE_MAX_MS 60000

static enum scope
scope_of(enum err_kind kind)
{
	switch (kind) {
	case ERRK_NONE:
		return SCOPE_OK;
	case ERRK_MESSAGE:
		return SCOPE_MESSAGE;
	case ERRK_OTHER:
	case ERRK_FOLDER:
		return SCOPE_FOLDER;
	case ERRK_SESSION:
		return SCOPE_SESSION;
	case ERRK_AUTH:
	case ERRK_QUOTA:
	case ERRK_DISK_FULL:
	case ERRK_STATE:
	case ERRK_USAGE:
		return SCOPE_RUN;
	}
	return SCOPE_RUN;
}

enum op_type { OP_PUT, OP_FLAGS, OP_DELETE };

struct state_op {
	enum op_type type;
	struct state_msg m;       /* flags owned */
};

struct pass {
	struct source src;
	struct target *t;
	const struct copy_options *o;
	struct state_db *db;
	struct copy_stats *stats;
	struct imap_keeper *keeper;   /* NOOP on idle sessions */
	unsigned keepalive_ms;
	struct imap_account_info src_info;
	bool have_info;
	char *error;              /* of the worst failure so far */
	enum scope worst;
	enum err_kind worst_kind;
	bool state_broken;        /* a state write failed: write no more */
	bool ranged;
	uint32_t lo, hi;
	uint32_t window;          /* a folder's diff in windows of this many
	                           * messages (0: one window) */

	/* the folder being copied */
	const char *src_name;
	char *shown;              /* src_name in UTF-8, for people */
	struct state_folder sf;
	uint32_t max_dst_uid;     /* highest target UID recorded */
	unsigned since_commit;    /* deliveries since the target's commit */
	uint64_t target_commit_at; /* time of the target's last commit */
	unsigned target_commit_ms; /* commit the target at least this often */
	unsigned uncommitted;     /* records not yet in the state */
	uint64_t last_commit;
	uint64_t last_fence;      /* time of the last state_fence_check() */
	uint32_t *retry;          /* source UIDs to deliver again */
	size_t n_retry, retry_alloc;
	size_t retry_group;       /* the largest group they were refused in */
	struct state_op *ops;     /* state changes not yet written */
	size_t n_ops, ops_alloc;
	char **dropped_seen;      /* flags already reported as dropped */
	size_t n_dropped_seen;
};

/* ------------------------------------------------------------- failures */

static void
fail(struct pass *p, enum err_kind kind, const char *fmt, ...) ATTR_PRINTF(3, 4);

static void
fail(struct pass *p, enum err_kind kind, const char *fmt, ...)
{
	enum scope scope = scope_of(kind);
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
	if (scope >= p->worst) {
		free(p->error);
		p->error = msg;
		p->worst = scope;
		p->worst_kind = kind;
	} else {
		free(msg);
	}
}

/* The kind of an error returned by a source, target or state call, with
 * the call's default for errors that carry none. Read at once: the next
 * err_set() in this thread replaces it. */
static enum err_kind
kind_or(const char *error, enum err_kind dflt)
{
	enum err_kind k = err_kind_of(error);

	return k == ERRK_OTHER || k == ERRK_NONE ? dflt : k;
}

static void
fail_state(struct pass *p, const char *error)
{
	enum err_kind k = err_kind_of(error);

	p->state_broken = true;
	fail(p, k == ERRK_DISK_FULL ? ERRK_DISK_FULL : ERRK_STATE, "%s", error);
}

static void
clear_failure(struct pass *p)
{
	XFREE(p->error);
	p->worst = SCOPE_OK;
	p->worst_kind = ERRK_NONE;
}

/* ------------------------------------------------------------ state */

/* State changes wait in memory and go to the database in one short
 * transaction per batch: no write lock is held across network I/O, so
 * parallel sessions and workers sharing the database never wait long for
 * each other. A crash loses at most the batch: the copies it recorded are
 * found again by fingerprint. */
static void
op_push(struct pass *p, enum op_type type, uint32_t src_uid, uint32_t dst_uid,
        const char *flags, uint64_t size, int64_t date)
{
	struct state_op *op;

	if (p->n_ops == p->ops_alloc) {
		p->ops_alloc = p->ops_alloc == 0 ? 256 : p->ops_alloc * 2;
		p->ops = xreallocarray(p->ops, p->ops_alloc, sizeof(*p->ops));
	}
	op = &p->ops[p->n_ops++];
	memset(op, 0, sizeof(*op));
	op->type = type;
	op->m.src_uid = src_uid;
	op->m.dst_uid = dst_uid;
	op->m.flags = flags != NULL ? xstrdup(flags) : NULL;
	op->m.size = size;
	op->m.internaldate = date;
}

static void
ops_truncate(struct pass *p, size_t n)
{
	for (size_t i = n; i < p->n_ops; i++)
		free(p->ops[i].m.flags);
	p->n_ops = n;
}

/* Writes the pending records and the folder row in one transaction. */
static int
state_flush(struct pass *p)
{
	const char *error;
	int ret = 0;

	if (p->state_broken)
		return -1;
	if (p->max_dst_uid >= p->sf.dst_uidnext)
		p->sf.dst_uidnext = p->max_dst_uid + 1;
	if (state_begin(p->db, &error) < 0)
		goto fail;
	for (size_t i = 0; i < p->n_ops && ret == 0; i++) {
		const struct state_op *op = &p->ops[i];

		switch (op->type) {
		case OP_PUT:
			ret = state_msg_put(p->db, p->sf.id, &op->m, &error);
			break;
		case OP_FLAGS:
			ret = state_msg_set_flags(p->db, p->sf.id, op->m.src_uid,
			                          op->m.flags, &error);
			break;
		case OP_DELETE:
			ret = state_msg_delete(p->db, p->sf.id, op->m.src_uid,
			                       &error);
			break;
		}
	}
	if (ret < 0 || state_folder_put(p->db, &p->sf, &error) < 0 ||
	    state_commit(p->db, &error) < 0) {
		fail_state(p, error);
		state_rollback(p->db);
		return -1;
	}
	ops_truncate(p, 0);
	p->uncommitted = 0;
	p->last_commit = time_mono_ms();
	return 0;
fail:
	fail_state(p, error);
	return -1;
}

/* Milliseconds until the target's timed commit is due, 0 when it is. */
static unsigned
commit_wait_ms(const struct pass *p)
{
	uint64_t since = time_mono_ms() - p->target_commit_at;

	return since >= p->target_commit_ms ? 0 :
	       (unsigned)(p->target_commit_ms - since);
}

/* Commits the target (a Maildir publishes its files) every so many
 * deliveries or TARGET_COMMIT_MS, and the state's records every 500 or
 * 2 s. */
static void
maybe_commit(struct pass *p, bool target_too)
{
	unsigned every = p->t->ops->commit_every(p->t);
	const char *error;

	if (target_too && every != 0 &&
	    (p->since_commit >= every ||
	     (p->since_commit > 0 && commit_wait_ms(p) == 0))) {
		p->since_commit = 0;
		p->target_commit_at = time_mono_ms();
		if (p->t->ops->commit(p->t, &error) < 0)
			fail(p, kind_or(error, ERRK_FOLDER), "%s: %s", p->shown, error);
	}
	if (p->uncommitted >= COMMIT_EVERY_MSGS ||
	    (p->uncommitted > 0 &&
	     time_mono_ms() - p->last_commit >= COMMIT_EVERY_MS))
		(void)state_flush(p);
}

static void
record_copy(struct pass *p, uint32_t src_uid, uint32_t dst_uid,
            const char *flags, uint64_t size, int64_t date)
{
	if (p->t->ops->keeps_uids)
		return;           /* the target is the record */
	op_push(p, OP_PUT, src_uid, dst_uid, flags, size, date);
	if (dst_uid > p->max_dst_uid)
		p->max_dst_uid = dst_uid;
	p->uncommitted++;
}

static void
message_failed(struct pass *p, uint32_t uid, const char *why)
{
	const char *err2;

	log_warn("%s: message UID %" PRIu32 " refused by the target: %s",
	         p->shown, uid, why);
	p->stats->failed++;
	if (p->o->progress != NULL)
		p->o->progress->failed++;
	if (!p->o->dry_run &&
	    state_failure_put(p->db, p->o->account, p->src_name, uid,
	                      STATE_SCOPE_MESSAGE, why, &err2) < 0)
		fail_state(p, err2);
}

/* ---------------------------------------------------------- the sink */

static void
sink_delivered(void *ctx, uint32_t src_uid, uint32_t dst_uid, const char *flags,
               uint64_t size, int64_t date)
{
	struct pass *p = ctx;

	record_copy(p, src_uid, dst_uid, flags, size, date);
	p->since_commit++;
	p->stats->copied++;
	p->stats->bytes += size;
	if (p->o->progress != NULL) {
		p->o->progress->messages++;
		p->o->progress->bytes += size;
	}
}

static void
sink_refused(void *ctx, uint32_t src_uid, enum err_kind kind, const char *reason)
{
	struct pass *p = ctx;

	if (scope_of(kind) > SCOPE_MESSAGE)
		fail(p, kind, "%s: UID %" PRIu32 ": %s", p->shown, src_uid, reason);
	else
		message_failed(p, src_uid, reason);
}

static void
sink_retry(void *ctx, uint32_t src_uid, size_t group_size)
{
	struct pass *p = ctx;

	if (group_size > p->retry_group)
		p->retry_group = group_size;
	if (p->n_retry == p->retry_alloc) {
		p->retry_alloc = p->retry_alloc == 0 ? 16 : p->retry_alloc * 2;
		p->retry = xreallocarray(p->retry, p->retry_alloc, sizeof(uint32_t));
	}
	p->retry[p->n_retry++] = src_uid;
}

static void
sink_failed(void *ctx, enum err_kind kind, const char *error)
{
	struct pass *p = ctx;

	fail(p, kind, "target: %s", error);
}

static void
sink_dropped(void *ctx, uint32_t src_uid, const char *dropped)
{
	struct pass *p = ctx;
	char *dup = xstrdup(dropped), *s, *next;

	(void)src_uid;
	for (s = dup; s != NULL && *s != '\0'; s = next) {
		bool seen = false;

		next = strchr(s, ' ');
		if (next != NULL)
			*next++ = '\0';
		if (*s == '\0')
			continue;
		p->stats->dropped_flags++;
		for (size_t i = 0; i < p->n_dropped_seen && !seen; i++)
			seen = strcmp(p->dropped_seen[i], s) == 0;
		if (seen)
			continue;
		log_warn("%s: the target does not keep %s %s: dropped",
		         p->shown, s[0] == '\\' ? "flag" : "keyword", s);
		p->dropped_seen = xreallocarray(p->dropped_seen,
		                                p->n_dropped_seen + 1, sizeof(char *));
		p->dropped_seen[p->n_dropped_seen++] = xstrdup(s);
	}
	free(dup);
}

/* ----------------------------------------------------------- copying */

static void
cmsg_list_free(struct cmsg *list)
{
	while (list != NULL) {
		struct cmsg *m = list;

		list = m->next;
		cmsg_free(&m);
	}
}

/* Copies the given source UIDs (ascending): the reader thread fetches,
 * the target stores (pipelined where it can). */
static enum scope
copy_uids(struct pass *p, const uint32_t *uids, size_t count, size_t group_cap)
{
	const struct target_ops *ops = p->t->ops;
	struct fetch_reader_options fo = p->o->fetch;
	size_t group_max = ops->batch_max(p->t, group_cap == 1);
	struct source_reader *r;
	struct mqueue q;
	struct cmsg *batch;
	const char *error;
	char *rerror;

	if (count == 0)
		return SCOPE_OK;
	if (group_cap != 0 && group_cap < group_max)
		group_max = group_cap;
	if (ops->ordered) {
		/* A Maildir takes UIDs in ascending order only, and a server
		 * may answer pipelined FETCH commands interleaved (Dovecot
		 * does under load): one larger FETCH at a time keeps it. */
		fo.depth = 1;
		if (fo.batch < 500)
			fo.batch = 500;
	}
	/* room for two full groups of small messages (the bytes bound the
	 * rest) */
	mqueue_init(&q, group_max * 2 > 4096 ? group_max * 2 : 4096,
	            p->o->queue_bytes != 0 ? p->o->queue_bytes : 8u << 20);
	r = source_reader_start(&p->src, uids, count, &q, &fo);
	for (;;) {
		unsigned in_flight = ops->in_flight(p->t);

		/* A target holding uncommitted deliveries while the source
		 * is slow: commit it when its time comes, not only when the
		 * next message arrives. */
		if (in_flight == 0 && p->since_commit > 0 &&
		    ops->commit_every(p->t) != 0 &&
		    !mqueue_wait_ready(&q, commit_wait_ms(p) + 1)) {
			maybe_commit(p, true);
			if (p->worst >= SCOPE_FOLDER)
				mqueue_abort(&q);
			continue;
		}
		/* A slow source: after half the keepalive interval without a
		 * message, the target's replies are taken in, so that its
		 * session holds no command and the keeper may keep it alive
		 * (one check per group, not per message). */
		if (in_flight > 0 && !mqueue_wait_ready(&q, p->keepalive_ms / 2)) {
			if (ops->wait(p->t, true, &error) < 0) {
				fail(p, kind_or(error, ERRK_SESSION), "target: %s",
				     error);
				mqueue_abort(&q);
			}
			maybe_commit(p, true);
			if (p->worst >= SCOPE_FOLDER)
				mqueue_abort(&q);
			continue;
		}
		/* While earlier messages keep the target busy, wait briefly
		 * for a full group: a server pays per command (a MULTIAPPEND
		 * of 1 costs Dovecot about 4x the CPU per message of a group
		 * of 32). */
		batch = mqueue_pop_batch_min(&q, group_max, GROUP_BYTES,
		                             in_flight > 0 ? group_max : 1, 20);
		if (batch == NULL)
			break;
		if (p->worst >= SCOPE_FOLDER) {
			cmsg_list_free(batch);
			mqueue_abort(&q);
			continue;
		}
		/* a job shared through PostgreSQL: is it still ours? (a
		 * worker frozen past its lease must not send what the worker
		 * that took the job over copies too) */
		if (time_mono_ms() - p->last_fence >= FENCE_EVERY_MS) {
			p->last_fence = time_mono_ms();
			if (state_fence_check(p->db, &error) < 0) {
				fail_state(p, error);
				cmsg_list_free(batch);
				mqueue_abort(&q);
				continue;
			}
		}
		ops->deliver(p->t, batch);
		if (ops->wait(p->t, false, &error) < 0) {
			fail(p, kind_or(error, ERRK_SESSION), "target: %s", error);
			mqueue_abort(&q);
			continue;
		}
		maybe_commit(p, true);
		if (p->worst >= SCOPE_FOLDER)
			mqueue_abort(&q);
	}
	/* Every reply still due, also after a failure that stops the run
	 * (a server may answer a later command first: an [OVERQUOTA] NO
	 * before the OK of an earlier APPEND, whose copy must be recorded) */
	if (ops->wait(p->t, true, &error) < 0 && p->worst < SCOPE_SESSION)
		fail(p, kind_or(error, ERRK_SESSION), "target: %s", error);
	rerror = source_reader_join(&r);
	mqueue_deinit(&q);
	if (rerror != NULL) {
		fail(p, ERRK_SESSION, "source: %s", rerror);
		free(rerror);
	}
	return p->worst >= SCOPE_FOLDER ? p->worst : SCOPE_OK;
}

/* ------------------------------------------------------------- folders */

/* What the windows of one folder's pass share (copy_folder). */
struct fwin {
	const char *name;                 /* on the target */
	const struct target_folder_info *ti;
	uint32_t check_from;
	uint32_t unknown_from;            /* target UIDs no record knows */
	uint64_t src_modseq;
	bool meta, found;
	size_t n_missing;                 /* on the target, gone from the source */
	size_t listed;                    /* source messages in the last window */
	/* target copies no record knows, fetched once per folder */
	struct msgsum_list unknown;
	struct msgsum_fpindex ix;
	bool unknown_fetched;
	/* after a UIDVALIDITY change: target UIDs copied before (ours), and
	 * those a source message claimed again */
	uint32_t *ours, *claimed;
	size_t n_ours, n_claimed, a_claimed;
};

/* Waits until the target folder stops growing (see SETTLE_QUIET_MS): the
 * copies an interrupted pass's APPENDs still make then count among the
 * copies no record knows, and are matched instead of copied again. *ti is
 * the folder as last opened. */
static enum scope
settle_target(struct pass *p, const struct target_open *topen,
              struct target_folder_info *ti)
{
	const char *env = getenv("IMAPFERRY_SETTLE_MS"), *error;
	uint64_t quiet = SETTLE_QUIET_MS, start = time_mono_ms(), since = start;
	uint64_t v;

	if (env != NULL && str_to_u64z(env, 600000, &v))
		quiet = v;
	while (time_mono_ms() - since < quiet) {
		struct target_folder_info now;

		if (time_mono_ms() - start >= SETTLE_MAX_MS) {
			log_warn("%s: the target folder still changes after %u s; "
			         "comparing it now", p->shown, SETTLE_MAX_MS / 1000);
			break;
		}
		usleep(SETTLE_POLL_MS * 1000);
		if (p->t->ops->open_folder(p->t, topen, &now, &error) < 0) {
			fail(p, kind_or(error, ERRK_FOLDER), "%s: %s", p->shown, error);
			return p->worst;
		}
		if (now.uidnext != ti->uidnext || now.exists != ti->exists) {
			if (since == start)     /* once, not at every poll */
				log_info("%s: the target folder changed (%u messages, "
				         "then %u) after the last pass stopped: waiting "
				         "until it settles", p->shown, ti->exists,
				         now.exists);
			since = time_mono_ms();
		}
		now.created = ti->created;
		*ti = now;
	}
	return SCOPE_OK;
}

/* Finds, by fingerprint, source messages already on a target that maps
 * UIDs (copied by a run that crashed before recording them, or by another
 * tool), records them, and removes them from to_copy. The target's
 * unknown copies are fetched at the folder's first window that needs
 * them, and each is taken once. After a UIDVALIDITY change the target
 * messages claimed go to w->claimed. */
static enum scope
match_unknown(struct pass *p, struct fwin *w, uint32_t *to_copy, size_t *n_copy)
{
	struct msgsum_list src = { 0 };
	const char *error;
	size_t kept = 0, matched = 0;

	if (!w->unknown_fetched) {
		if (p->t->ops->fingerprints(p->t, w->unknown_from, &w->unknown,
		                            &error) < 0) {
			fail(p, kind_or(error, ERRK_SESSION), "target: %s", error);
			msgsum_list_free(&w->unknown);
			return p->worst;
		}
		w->unknown_fetched = true;
		/* matching needs the fingerprint, size and date only: the
		 * strings go (kept for the whole folder, they were most of its
		 * memory) */
		for (size_t i = 0; i < w->unknown.count; i++) {
			free(w->unknown.items[i].flags);
			free(w->unknown.items[i].message_id);
			w->unknown.items[i].flags = NULL;
			w->unknown.items[i].message_id = NULL;
		}
		msgsum_fpindex_init(&w->ix, &w->unknown);
		if (w->unknown.count > 0)
			log_info("%s: %zu messages on the target are not in the state: "
			         "matching them by fingerprint", p->shown, w->unknown.count);
	}
	if (w->unknown.count == 0)
		return SCOPE_OK;
	if (source_list(&p->src, to_copy, *n_copy, MSGSUM_FP, &src, &error) < 0) {
		fail(p, kind_or(error, ERRK_SESSION), "source: %s", error);
		msgsum_list_free(&src);
		return p->worst;
	}
	for (size_t i = 0; i < *n_copy; i++) {
		struct msgsum *s = msgsum_find(&src, to_copy[i]);
		struct msgsum *d = s != NULL ?
		                   msgsum_fpindex_match(&w->ix, s, (int64_t)time(NULL)) :
		                   NULL;

		if (d != NULL) {
			record_copy(p, s->uid, d->uid, s->flags, s->size,
			            s->internaldate);
			if (w->n_ours > 0)
				u32_push(&w->claimed, &w->n_claimed, &w->a_claimed, d->uid);
			matched++;
		} else {
			to_copy[kept++] = to_copy[i];
		}
	}
	p->stats->skipped += matched;
	if (matched > 0)
		log_info("%s: %zu messages were already on the target", p->shown,
		         matched);
	*n_copy = kept;
	msgsum_list_free(&src);
	return p->worst >= SCOPE_FOLDER ? p->worst : SCOPE_OK;
}

/* The source folder's UIDs and flags (sizes and dates with meta). With
 * CONDSTORE, a map in the state and a sync point from the last pass, only
 * what changed since is fetched (UID SEARCH ALL for the UID set, FETCH ...
 * (CHANGEDSINCE m) for new and changed flags); unchanged messages keep the
 * flags the state recorded. */
static int
list_source(struct pass *p, uint32_t lo, uint32_t hi,
            const struct state_msg *known, size_t n_known,
            uint64_t src_modseq, bool meta, struct msgsum_list *list,
            const char **error_r)
{
	struct imap_client *c = p->src.client;
	struct msgsum_list changed = { 0 };
	unsigned what = MSGSUM_FLAGS | (meta ? MSGSUM_META : 0);
	bool whole = lo <= 1 && hi == UINT32_MAX, condstore = false;
	char set[32];
	uint32_t *uids;
	size_t n_uids, k = 0;

	/* the session is ours, not the keeper's, while we use it */
	if (p->src.kind == SOURCE_IMAP) {
		imap_keep_take(p->src.keep);
		condstore = imap_client_has_cap(c, "CONDSTORE");
		imap_keep_park(p->src.keep);
	}
	if (p->ranged || !whole) {
		/* a UID range of a split folder, or a window of a large one */
		if (p->ranged || p->src.kind != SOURCE_IMAP ||
		    p->t->ops->keeps_uids || meta || p->sf.src_highestmodseq == 0 ||
		    src_modseq == 0 || n_known == 0 || !condstore)
			return source_list_range(&p->src, lo, hi, what, list, error_r);
	} else if (p->src.kind != SOURCE_IMAP || p->t->ops->keeps_uids || meta ||
	           p->sf.src_highestmodseq == 0 || src_modseq == 0 ||
	           n_known == 0 || !condstore) {
		/* (a Maildir target compares every message's flags with its
		 * own: listing them all costs the source one FETCH) */
		return source_list(&p->src, NULL, 0, what, list, error_r);
	}
	imap_keep_take(p->src.keep);
	if (msgsum_uids_range(c, lo, hi, &uids, &n_uids, error_r) < 0) {
		imap_keep_park(p->src.keep);
		return -1;
	}
	if (whole)
		snprintf(set, sizeof(set), "1:*");
	else if (hi == UINT32_MAX)
		snprintf(set, sizeof(set), "%" PRIu32 ":*", lo);
	else
		snprintf(set, sizeof(set), "%" PRIu32 ":%" PRIu32, lo, hi);
	if (msgsum_fetch_changed(c, set, p->sf.src_highestmodseq, MSGSUM_FLAGS,
	                         &changed, error_r) < 0) {
		imap_keep_park(p->src.keep);
		free(uids);
		msgsum_list_free(&changed);
		return -1;
	}
	imap_keep_park(p->src.keep);
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
	          p->shown, n_uids, changed.count,
	          (unsigned long long)p->sf.src_highestmodseq);
	free(uids);
	msgsum_list_free(&changed);
	return 0;
}

/* True when the target holds the source's flags src as far as it can:
 * flags it cannot store (a 27th keyword in a Dovecot Maildir, a keyword
 * outside PERMANENTFLAGS) are no difference, or every pass would count
 * (and try) them again. */
static bool
flags_same(const struct pass *p, const char *src, const char *dst)
{
	char *a, *b;
	bool same;

	if (dst == NULL)
		dst = "";
	if (strcmp(src, dst) == 0)
		return true;
	if (p->t->ops->storable_flags == NULL)
		return false;
	a = p->t->ops->storable_flags(p->t, src);
	b = p->t->ops->storable_flags(p->t, dst);
	same = strcmp(a, b) == 0;
	free(a);
	free(b);
	return same;
}

/* Sets flags of messages already copied: the driver groups what it can. */
static enum scope
sync_flags(struct pass *p, const struct target_flags *ch, size_t n)
{
	const char *error;
	size_t mark = p->n_ops;

	p->stats->flags_updated += n;
	if (n == 0 || p->o->dry_run)
		return SCOPE_OK;
	if (!p->t->ops->keeps_uids)
		for (size_t i = 0; i < n; i++)
			op_push(p, OP_FLAGS, ch[i].src_uid, 0, ch[i].flags, 0, 0);
	if (p->t->ops->set_flags(p->t, ch, n, &error) < 0) {
		fail(p, kind_or(error, ERRK_FOLDER), "%s: changing flags on the "
		     "target: %s", p->shown, error);
		/* not carried over: the state must not claim it */
		ops_truncate(p, mark);
		return p->worst;
	}
	return SCOPE_OK;
}

/* Expunges on the target what the source no longer has. */
static enum scope
delete_missing(struct pass *p, const uint32_t *src_gone, size_t n_gone,
               uint32_t *dst_gone, size_t n_dst)
{
	const char *error;
	size_t done = 0;

	if (n_gone == 0 && n_dst == 0)
		return SCOPE_OK;
	if (p->o->dry_run) {
		p->stats->expunged += n_gone > n_dst ? n_gone : n_dst;
		return SCOPE_OK;
	}
	if (n_dst > 1)
		qsort(dst_gone, n_dst, sizeof(*dst_gone), cmp_u32);
	if (n_dst > 0 &&
	    p->t->ops->expunge(p->t, dst_gone, n_dst, &done, &error) < 0) {
		fail(p, kind_or(error, ERRK_FOLDER), "%s: expunging on the target: %s",
		     p->shown, error);
		return p->worst;
	}
	if (!p->t->ops->keeps_uids)
		for (size_t i = 0; i < n_gone; i++)
			op_push(p, OP_DELETE, src_gone[i], 0, NULL, 0, 0);
	p->stats->expunged += n_gone > done ? n_gone : done;
	return SCOPE_OK;
}

/* A target that maps UIDs: after a UIDVALIDITY change on either side the
 * folder's records are void. With --delete-missing, the target messages
 * copied before (ours: not mail delivered to the target) are returned in
 * *ours, sorted, to expunge those no source message claims again. */
static enum scope
uidvalidity_changed(struct pass *p, uint32_t src_uidvalidity,
                    const struct target_folder_info *ti, uint32_t **ours,
                    size_t *n_ours)
{
	struct state_msg *known = NULL;
	size_t n_known = 0;
	const char *error;

	log_warn("%s: UIDVALIDITY changed (source %u -> %u, target %u -> %u): "
	         "matching messages by fingerprint", p->shown,
	         p->sf.src_uidvalidity, src_uidvalidity, p->sf.dst_uidvalidity,
	         ti->uidvalidity);
	if (p->o->delete_missing && !p->o->dry_run && !ti->missing &&
	    p->sf.dst_uidvalidity == ti->uidvalidity && p->sf.id != 0) {
		if (state_msgs_load(p->db, p->sf.id, &known, &n_known, &error) < 0) {
			fail_state(p, error);
			return SCOPE_RUN;
		}
		*ours = xcalloc(n_known + 1, sizeof(**ours));
		for (size_t i = 0; i < n_known; i++)
			if (known[i].dst_uid != 0)
				(*ours)[(*n_ours)++] = known[i].dst_uid;
		if (*n_ours > 1)
			qsort(*ours, *n_ours, sizeof(**ours), cmp_u32);
		state_msgs_free(&known, n_known);
	}
	if (!p->o->dry_run &&
	    state_folder_clear_messages(p->db, p->sf.id, &error) < 0) {
		fail_state(p, error);
		return SCOPE_RUN;
	}
	p->sf.dst_uidnext = 0;
	p->sf.complete = false;
	return SCOPE_OK;
}

/* A UID range of a split folder is done: record it; the range that
 * completes the cover publishes every staged range and marks the folder
 * complete as of the oldest range's view. */
static enum scope
part_done(struct pass *p, const char *name)
{
	const char *error;
	uint32_t uidnext, uidvalidity = 0;
	uint64_t modseq;
	bool complete, found;

	if (state_part_done(p->db, p->o->run_id, p->o->account, p->src_name,
	                    p->lo, p->hi, p->sf.src_uidnext,
	                    p->sf.src_highestmodseq, &error) < 0 ||
	    state_part_cover(p->db, p->o->run_id, p->o->account, p->src_name,
	                     &complete, &uidnext, &modseq, &error) < 0) {
		fail_state(p, error);
		return SCOPE_RUN;
	}
	if (!complete)
		return SCOPE_OK;
	if (p->t->ops->publish == NULL) {
		fail(p, ERRK_USAGE, "%s: the target cannot take UID ranges", p->shown);
		return SCOPE_RUN;
	}
	if (p->t->ops->publish(p->t, name, uidnext, &uidvalidity, &error) < 0) {
		fail(p, kind_or(error, ERRK_FOLDER), "%s: %s", p->shown, error);
		return p->worst;
	}
	state_folder_free(&p->sf);
	if (state_folder_get(p->db, p->o->account, p->src_name, &p->sf, &found,
	                     &error) < 0) {
		fail_state(p, error);
		return SCOPE_RUN;
	}
	if (!found) {
		memset(&p->sf, 0, sizeof(p->sf));
		p->sf.account = xstrdup(p->o->account);
		p->sf.src_name = xstrdup(p->src_name);
		p->sf.dst_name = xstrdup(name);
	}
	p->sf.src_uidvalidity = uidvalidity;
	p->sf.src_uidnext = uidnext;
	p->sf.src_highestmodseq = modseq;
	p->sf.complete = true;
	return state_flush(p) < 0 ? SCOPE_RUN : SCOPE_OK;
}

/* One window of a folder's pass: the source UIDs lo..hi listed, compared
 * with the state's records (or the target's own list) of the same UIDs,
 * and what differs copied, flagged and expunged. A folder is one window
 * unless it is large (DIFF_WINDOW): then memory stays bounded by the
 * window, whatever the folder's size. */
static enum scope
copy_window(struct pass *p, struct fwin *w, uint32_t lo, uint32_t hi,
            bool any)
{
	const struct copy_options *o = p->o;
	const struct target_ops *ops = p->t->ops;
	const struct target_folder_info *ti = w->ti;
	struct msgsum_list src = { 0 };
	struct state_msg *known = NULL;
	struct target_flags *fl = NULL;
	size_t n_known = 0, n_copy = 0, n_gone = 0, n_dst_gone = 0, n_fl = 0;
	uint32_t *to_copy = NULL, *gone = NULL, *dst_gone = NULL;
	const char *error;
	enum scope sc = SCOPE_OK;

	w->listed = 0;
	if (!ops->keeps_uids && w->found && p->sf.id != 0 &&
	    state_msgs_load_range(p->db, p->sf.id, lo, hi, &known, &n_known,
	                          &error) < 0) {
		fail_state(p, error);
		return SCOPE_RUN;
	}
	if (any &&
	    list_source(p, lo, hi, known, n_known, w->src_modseq, w->meta, &src,
	                &error) < 0) {
		fail(p, kind_or(error, ERRK_SESSION), "source: %s", error);
		sc = p->worst;
		goto out;
	}
	w->listed = src.count;
	if (ops->keeps_uids && !ti->missing &&
	    ops->list(p->t, &src, !o->dry_run, lo, hi, &known, &n_known,
	              &error) < 0) {
		fail(p, kind_or(error, ERRK_FOLDER), "%s: %s", p->shown, error);
		sc = p->worst;
		goto out;
	}

	/* the diff: both lists are sorted by source UID */
	to_copy = xcalloc(src.count + 1, sizeof(uint32_t));
	gone = xcalloc(n_known + 1, sizeof(uint32_t));
	dst_gone = xcalloc(n_known + 1, sizeof(uint32_t));
	fl = xcalloc(n_known + 1, sizeof(*fl));
	for (size_t i = 0, k = 0; i < src.count || k < n_known;) {
		const struct msgsum *s = i < src.count ? &src.items[i] : NULL;
		const struct state_msg *m = k < n_known ? &known[k] : NULL;
		char *why = NULL;

		if (m == NULL || (s != NULL && s->uid < m->src_uid)) {
			i++;
			if (o->skip_deleted && flags_has(s->flags, "\\Deleted"))
				continue;
			if (ops->keeps_uids && !o->dry_run && !ti->missing &&
			    !ops->can_place(p->t, s->uid, &why)) {
				message_failed(p, s->uid, why);
				free(why);
				continue;
			}
			to_copy[n_copy++] = s->uid;
		} else if (s == NULL || m->src_uid < s->uid) {
			k++;
			w->n_missing++;
			if (o->delete_missing) {
				gone[n_gone++] = m->src_uid;
				if (m->dst_uid != 0)
					dst_gone[n_dst_gone++] = m->dst_uid;
			}
		} else {
			i++;
			k++;
			if (ops->keeps_uids && w->meta && m->dst_uid >= w->check_from &&
			    (m->internaldate != s->internaldate ||
			     (m->size != MAILDIR_SIZE_UNKNOWN && m->size != s->size))) {
				why = xasprintf("UID %" PRIu32 " on the target holds "
				    "another message (INTERNALDATE %" PRId64 ", %" PRIu64
				    " bytes; the source's: %" PRId64 ", %" PRIu64 " bytes): "
				    "the server numbered a file of an interrupted run, or "
				    "mail was delivered to the target; not copied",
				    s->uid, m->internaldate, m->size, s->internaldate,
				    s->size);
				message_failed(p, s->uid, why);
				free(why);
				continue;
			}
			p->stats->skipped++;
			if (m->dst_uid != 0 && !flags_same(p, s->flags, m->flags)) {
				fl[n_fl].src_uid = s->uid;
				fl[n_fl].dst_uid = m->dst_uid;
				fl[n_fl].flags = s->flags;
				n_fl++;
			}
		}
	}

	/* copies no record knows: an interrupted run, another tool */
	if (!ops->keeps_uids && n_copy > 0 && !ti->missing &&
	    ti->uidnext > w->unknown_from &&
	    (sc = match_unknown(p, w, to_copy, &n_copy)) != SCOPE_OK)
		goto out;

	if (!o->quiet && (n_copy > 0 || n_gone > 0 || n_dst_gone > 0))
		log_info("%s -> %s: %zu to copy, %zu already there, %zu gone%s",
		         p->shown, w->name[0] != '\0' ? w->name : "INBOX", n_copy,
		         src.count - n_copy, n_gone > n_dst_gone ? n_gone : n_dst_gone,
		         o->dry_run ? " (dry run)" : "");
	if (o->dry_run) {
		p->stats->copied += n_copy;
		for (size_t i = 0; i < n_copy; i++) {
			const struct msgsum *m = msgsum_find(&src, to_copy[i]);

			if (m != NULL)
				p->stats->bytes += m->size;
		}
		(void)sync_flags(p, fl, n_fl);
		(void)delete_missing(p, gone, n_gone, dst_gone, n_dst_gone);
		goto out;
	}
	if ((sc = copy_uids(p, to_copy, n_copy, 0)) != SCOPE_OK)
		goto out;
	/* messages of refused groups: again in groups of half the size, so
	 * a bad message costs ~2 x log2(group) APPENDs, not one per
	 * neighbour; a group of one is refused for good (sink->refused) */
	while (p->n_retry > 0) {
		uint32_t *retry = p->retry;
		size_t n = p->n_retry;
		size_t cap = p->retry_group / 2 > 1 ? p->retry_group / 2 : 1;

		qsort(retry, n, sizeof(*retry), cmp_u32);
		p->retry = NULL;
		p->n_retry = p->retry_alloc = 0;
		p->retry_group = 0;
		sc = copy_uids(p, retry, n, cap);
		free(retry);
		if (sc != SCOPE_OK)
			goto out;
	}
	if ((sc = sync_flags(p, fl, n_fl)) != SCOPE_OK)
		goto out;
	sc = delete_missing(p, gone, n_gone, dst_gone, n_dst_gone);
out:
	state_msgs_free(&known, n_known);
	msgsum_list_free(&src);
	free(to_copy);
	free(gone);
	free(dst_gone);
	free(fl);
	return sc;
}

/* The windows' width in UIDs for about DIFF_WINDOW messages each, from the
 * folder's density (exists messages below uidnext), then from what the
 * last window held. */
static uint64_t
window_width(uint64_t window, uint64_t width, size_t listed, bool first,
             uint32_t exists, uint32_t uidnext, uint32_t lo)
{
	if (first) {
		uint64_t span = uidnext > lo ? (uint64_t)uidnext - lo : 1;

		width = exists > 0 ? span * window / exists : window;
	} else if (listed < window / 4) {
		width *= 2;
	} else if (listed > window * 2) {
		width /= 2;
	}
	if (width < window)
		width = window;      /* never fewer UIDs than messages */
	if (width > (uint64_t)UINT32_MAX)
		width = UINT32_MAX;
	return width;
}

static enum scope
copy_folder(struct pass *p, const struct imap_mailbox_info *box,
            const char *name)
{
	const struct copy_options *o = p->o;
	const struct target_ops *ops = p->t->ops;
	struct target_open topen = { 0 };
	struct target_folder_info ti = { 0 };
	struct target_close tc = { 0 };
	struct source_folder sfo = { 0 };
	struct fwin w = { .name = name, .ti = &ti };
	uint32_t src_uidvalidity, src_uidnext, flo, fhi, lo;
	uint64_t width = 0, failed_before = p->stats->failed;
	const char *error;
	bool windowed, all_windows = false;
	enum scope sc = SCOPE_OK;

	p->src_name = box->name;
	free(p->shown);
	p->shown = mutf7_display(box->name);
	p->max_dst_uid = 0;
	p->n_retry = 0;
	p->retry_group = 0;
	p->since_commit = 0;
	p->target_commit_at = time_mono_ms();
	if (state_folder_get(p->db, o->account, box->name, &p->sf, &w.found,
	                     &error) < 0) {
		fail_state(p, error);
		return SCOPE_RUN;
	}
	if (!w.found) {
		memset(&p->sf, 0, sizeof(p->sf));
		p->sf.account = xstrdup(o->account);
		p->sf.src_name = xstrdup(box->name);
	}
	free(p->sf.dst_name);
	p->sf.dst_name = xstrdup(name);

	/* Unchanged since the last complete pass (CONDSTORE): nothing to do. */
	if (w.found && p->sf.complete && box->have_status &&
	    p->sf.src_uidvalidity == box->uidvalidity &&
	    p->sf.src_uidnext == box->uidnext && box->highestmodseq != 0 &&
	    p->sf.src_highestmodseq == box->highestmodseq &&
	    !(o->delete_missing && p->sf.gone_pending) &&
	    ops->folder_exists(p->t, name)) {
		log_debug("%s: unchanged since the last run", p->shown);
		p->stats->skipped += box->messages;
		if (p->ranged && !o->dry_run)
			sc = part_done(p, name);
		goto out;
	}

	if (source_select(&p->src, box->name, &sfo, &error) < 0) {
		bool dead = source_is_dead(&p->src);

		fail(p, dead ? ERRK_SESSION : kind_or(error, ERRK_FOLDER),
		     "cannot examine %s on the source: %s", p->shown, error);
		sc = p->worst;
		goto out;
	}
	/* Courier sends no UIDNEXT on SELECT: STATUS had it */
	src_uidvalidity = sfo.uidvalidity != 0 ? sfo.uidvalidity : box->uidvalidity;
	src_uidnext = sfo.uidnext != 0 ? sfo.uidnext : box->uidnext;
	w.src_modseq = sfo.highestmodseq;

	topen.name = name;
	topen.src_uidvalidity = src_uidvalidity;
	topen.uid_lo = o->uid_lo;
	topen.uid_hi = o->uid_hi;
	topen.dry_run = o->dry_run;
	if (ops->open_folder(p->t, &topen, &ti, &error) < 0) {
		fail(p, kind_or(error, ERRK_FOLDER), "%s: %s", p->shown, error);
		sc = p->worst;
		goto out;
	}
	if (!ops->keeps_uids && !o->dry_run && !ti.missing && !ti.created &&
	    w.found && !p->sf.complete && !p->ranged &&
	    (sc = settle_target(p, &topen, &ti)) != SCOPE_OK)
		goto out;
	if (ti.created || (o->dry_run && ti.missing))
		p->stats->folders_created++;   /* (a dry run: would create) */

	/* Target UIDs at or above the source UIDNEXT of the last complete
	 * pass (all of them without one) were not numbered by a complete
	 * pass of ours: a server that keeps our UIDs may have numbered files
	 * of an interrupted run, or mail delivered to it, with UIDs the
	 * source gives to other messages. Checked by INTERNALDATE and size. */
	w.check_from = w.found && p->sf.complete && p->sf.src_uidnext != 0 ?
	               p->sf.src_uidnext : 1;
	if (!ops->keeps_uids) {
		if (w.found && (p->sf.src_uidvalidity != src_uidvalidity ||
		                (!ti.missing && p->sf.dst_uidvalidity != 0 &&
		                 p->sf.dst_uidvalidity != ti.uidvalidity)) &&
		    (sc = uidvalidity_changed(p, src_uidvalidity, &ti, &w.ours,
		                              &w.n_ours)) != SCOPE_OK)
			goto out;
		p->sf.dst_uidvalidity = ti.missing ? 0 : ti.uidvalidity;
	}
	p->sf.src_uidvalidity = src_uidvalidity;
	if (!ops->keeps_uids && !o->dry_run && state_flush(p) < 0) {
		sc = SCOPE_RUN;
		goto out;
	}
	p->last_commit = time_mono_ms();
	w.unknown_from = p->sf.dst_uidnext;
	if (ops->keeps_uids && !ti.missing)
		w.meta = ops->needs_meta(p->t, w.check_from);
	if (o->dry_run)
		w.meta = true;        /* the bytes it would copy */

	/* the folder (or the split folder's range) in windows of about
	 * p->window messages when it is large and the source can list a
	 * UID range for that cost (IMAP) */
	flo = p->ranged ? p->lo : 1;
	fhi = p->ranged ? p->hi : UINT32_MAX;
	if (flo == 0)
		flo = 1;
	windowed = p->window > 0 && sfo.exists > p->window &&
	           p->src.kind == SOURCE_IMAP && !ti.whole;
	if (windowed && ops->expect_keywords != NULL && !ti.missing && !o->dry_run) {
		/* (the FLAGS are the session's: not while the keeper has it) */
		imap_keep_take(p->src.keep);
		ops->expect_keywords(p->t,
		                     imap_client_mailbox(p->src.client)->flags);
		imap_keep_park(p->src.keep);
	}
	for (lo = flo;;) {
		uint32_t hi = fhi;

		if (windowed) {
			width = window_width(p->window, width, w.listed, lo == flo,
			                     sfo.exists, src_uidnext, lo);
			/* the last window reaches fhi: mail that arrives meanwhile */
			if ((uint64_t)lo + width - 1 < (uint64_t)fhi &&
			    (uint64_t)lo + width - 1 < (uint64_t)src_uidnext)
				hi = (uint32_t)((uint64_t)lo + width - 1);
		}
		sc = copy_window(p, &w, lo, hi, sfo.exists > 0);
		if (sc != SCOPE_OK)
			goto close;
		if (hi >= fhi)
			break;
		lo = hi + 1;
		if (!o->dry_run && !p->state_broken && state_flush(p) < 0) {
			sc = SCOPE_RUN;
			goto close;
		}
	}
	all_windows = true;
	if (!ops->keeps_uids && w.n_ours > 0) {
		/* ours that nothing claimed: dropped by the source */
		uint32_t *drop = xcalloc(w.n_ours + 1, sizeof(*drop));
		size_t n_drop = 0;

		if (w.n_claimed > 1)
			qsort(w.claimed, w.n_claimed, sizeof(*w.claimed), cmp_u32);
		for (size_t i = 0, k = 0; i < w.n_ours; i++) {
			while (k < w.n_claimed && w.claimed[k] < w.ours[i])
				k++;
			if (k < w.n_claimed && w.claimed[k] == w.ours[i])
				continue;
			drop[n_drop++] = w.ours[i];
		}
		sc = delete_missing(p, NULL, 0, drop, n_drop);
		free(drop);
		if (sc != SCOPE_OK)
			goto close;
	}
	if (o->dry_run)
		goto out;
	p->sf.src_uidnext = src_uidnext;
	p->sf.src_highestmodseq = w.src_modseq;
	/* a later pass with --delete-missing must look at the folder even
	 * when nothing changes on the source */
	p->sf.gone_pending = !o->delete_missing && w.n_missing > 0;
	/* A message that was not copied leaves the folder incomplete, so
	 * that the next run tries (and reports) it again instead of skipping
	 * the folder as unchanged. */
	p->sf.complete = p->stats->failed == failed_before;
close:
	/* every window matched the target's unknown copies: they are known
	 * from here on */
	if (!ops->keeps_uids && all_windows && !ti.missing &&
	    ti.uidnext > p->sf.dst_uidnext)
		p->sf.dst_uidnext = ti.uidnext;
	/* UIDNEXT as the source has it now (it may have grown meanwhile) */
	tc.complete = sc == SCOPE_OK && p->worst < SCOPE_FOLDER;
	tc.src_uidnext = src_uidnext;
	if (source_uidnext_now(&p->src) > tc.src_uidnext)
		tc.src_uidnext = source_uidnext_now(&p->src);
	if (ops->close_folder(p->t, &tc, &error) < 0) {
		p->sf.complete = false;
		fail(p, kind_or(error, ERRK_FOLDER), "%s: %s", p->shown, error);
		if (sc == SCOPE_OK)
			sc = p->worst;
	}
	if (p->ranged) {
		/* the range's scratch folder is committed: record the part */
		if (sc == SCOPE_OK && p->worst < SCOPE_FOLDER && p->sf.complete)
			sc = part_done(p, name);
		goto out;
	}
	/* the records so far, and the folder's sync point (a folder that
	 * keeps UIDs records only that) */
	if (!p->state_broken)
		(void)state_flush(p);
	ops_truncate(p, 0);
out:
	if (w.unknown_fetched)
		msgsum_fpindex_free(&w.ix);
	msgsum_list_free(&w.unknown);
	free(w.ours);
	free(w.claimed);
	ops_truncate(p, 0);
	state_folder_free(&p->sf);
	if (sc == SCOPE_OK && p->worst >= SCOPE_FOLDER)
		sc = p->worst;
	return sc;
}

/* ------------------------------------------------------------ sessions */

static void
disconnect(struct pass *p)
{
	source_disconnect(&p->src);
	p->t->ops->disconnect(p->t);
	if (p->have_info) {
		imap_account_info_free(&p->src_info);
		p->have_info = false;
	}
}

/* Connects both sides and lists the source's folders. */
static enum scope
connect_both(struct pass *p)
{
	const char *error;
	bool refused;

	if (p->have_info) {
		imap_account_info_free(&p->src_info);
		p->have_info = false;
	}
	if (!source_is_connected(&p->src) &&
	    source_connect(&p->src, &refused, &error) < 0) {
		fail(p, refused ? ERRK_AUTH : kind_or(error, ERRK_SESSION),
		     "source: %s", error);
		return p->worst;
	}
	if (p->t->ops->connect(p->t, &error) < 0) {
		fail(p, kind_or(error, ERRK_SESSION), "target: %s", error);
		return p->worst;
	}
	if (source_inventory(&p->src, IMAP_INV_STATUS | IMAP_INV_SUBSCRIBED,
	                     &p->src_info, &error) < 0) {
		fail(p, kind_or(error, ERRK_SESSION), "source: %s", error);
		return p->worst;
	}
	p->have_info = true;
	return SCOPE_OK;
}

/* The wait before retry number attempt (0-based): 1, 2, 4, 8, 16, then
 * 30 s. */
static unsigned
backoff_s(unsigned attempt)
{
	return attempt < 5 ? 1u << attempt : 30;
}

/* Reconnects after a session failure, waiting backoff_s(attempt) (cut to
 * what is left of the budget, at least 1 s). Logs the retry once. */
static enum scope
reconnect(struct pass *p, unsigned attempt, double left)
{
	unsigned wait = backoff_s(attempt);

	/* (a budget with less than a second left still gets its last try
	 * after 1 s, not after a backoff of 30) */
	if (left > 0 && wait > left)
		wait = left < 1 ? 1 : (unsigned)left;
	if (wait == 0)
		wait = 1;
	log_warn("%s; reconnecting in %u s (retry %u, %.0f s left of the retry "
	         "budget)", p->error != NULL ? p->error : "session lost", wait,
	         attempt + 1, left > 0 ? left : 0);
	disconnect(p);
	sleep(wait);
	clear_failure(p);
	return connect_both(p);
}

/* Session retries of one folder: a time budget rather than a count, so a
 * copy through many short cuts keeps going. The budget is time without
 * progress: an attempt that copied something starts it again, and the
 * backoff again from 1 s. */
struct retry {
	double start, budget;
	unsigned attempt, max;        /* max 0: no count limit */
};

static void
retry_init(struct retry *r, const struct copy_options *o)
{
	r->start = time_mono_sec();
	r->budget = o->retry_budget_s != 0 ? o->retry_budget_s : 600;
	r->attempt = 0;
	r->max = o->max_retries;
}

static double
retry_left(const struct retry *r)
{
	return r->budget - (time_mono_sec() - r->start);
}

static bool
retry_exhausted(const struct retry *r)
{
	return retry_left(r) <= 0 || (r->max != 0 && r->attempt >= r->max);
}

struct fpair {
	char *src;                /* source wire name (may hold a NUL) */
	size_t src_len;
	char *wire;               /* target wire name, NULL if not copied */
	char *name;               /* the driver's name */
	bool selectable, subscribed;
};

static void
copy_subscriptions(struct pass *p, const struct fpair *pairs, size_t n)
{
	char **wires = xcalloc(n + 1, sizeof(*wires));
	const char *error;
	unsigned count = 0;
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
		if (pairs[i].subscribed && pairs[i].wire != NULL)
			wires[k++] = pairs[i].wire;
	if (k > 0 && p->t->ops->subscribe(p->t, wires, k, p->o->dry_run, &count,
	                                  &error) < 0)
		log_warn("target: subscriptions: %s", error);
	p->stats->subscribed += count;
	free(wires);
}

/* A folder that will not be copied: it and its messages are counted as
 * failed (the summary must not say "0 failed" for a folder of 10). */
static void
folder_lost(struct pass *p, const struct imap_mailbox_info *box)
{
	p->stats->folders_failed++;
	if (box->have_status)
		p->stats->failed_in_folders += box->messages;
}

static void
map_folders(struct pass *p, struct fpair *pairs, size_t n)
{
	const struct copy_options *o = p->o;
	bool quiet;

	for (size_t i = 0; i < n; i++) {
		const struct imap_mailbox_info *box = &p->src_info.boxes[i];
		struct foldermap_result res;
		const char *error;

		pairs[i].src = xstrndup(box->name, box->name_len);
		pairs[i].src_len = box->name_len;
		pairs[i].selectable = box->selectable;
		pairs[i].subscribed = box->subscribed;
		/* failures are reported by the pass that copies the folder
		 * (copy --parallel splits the folders between passes) */
		if (!copy_folder_selected(o->folders, o->n_folders, pairs[i].src))
			quiet = true;
		else
			quiet = false;
		if (foldermap_map(o->fm, box->name, box->name_len, box->attrs, &res,
		                  &error) < 0) {
			char *shown = mutf7_display(pairs[i].src);

			if (!quiet) {
				log_warn("source folder %s: %s", shown, error);
				p->stats->folders_failed++;
			}
			free(shown);
			continue;
		}
		if (res.note != NULL && !quiet)
			log_warn("folder %s: %s", res.logical, res.note);
		if (res.excluded) {
			foldermap_result_free(&res);
			continue;
		}
		if (memchr(box->name, '\0', box->name_len) != NULL) {
			/* SELECT takes a C string: the source would be asked
			 * for the folder named by the bytes before the NUL */
			if (!quiet) {
				log_error("folder %s cannot be copied: its source "
				          "name contains a NUL byte", res.logical);
				folder_lost(p, box);
			}
		} else if (p->t->ops->folder_name(p->t, res.dst_wire, &pairs[i].name,
		                                  &error) < 0) {
			if (!quiet) {
				log_error("folder %s cannot be stored on the target: %s",
				          res.logical, error);
				folder_lost(p, box);
			}
		} else {
			pairs[i].wire = xstrdup(res.dst_wire);
		}
		foldermap_result_free(&res);
	}
}

/* Copies one folder, retrying session failures within the retry budget
 * (copy_options.retry_budget_s). Returns false when the run must stop. */
static bool
folder_with_retries(struct pass *p, const struct fpair *pair)
{
	struct retry rt;
	uint64_t best_done = 0;   /* the furthest an attempt got */

	retry_init(&rt, p->o);
	for (;; rt.attempt++) {
		const struct imap_mailbox_info *b = NULL;
		struct imap_mailbox_info box;
		uint64_t done_before;
		enum scope sc;

		if (!p->have_info) {
			/* The last reconnect failed: no sessions and no
			 * folder list (not "vanished"). Try again; give up
			 * on the run when that keeps failing. */
			if (retry_exhausted(&rt)) {
				char *why = p->error;
				enum err_kind k = p->worst_kind;

				p->error = NULL;
				p->worst = SCOPE_OK;
				fail(p, scope_of(k) == SCOPE_RUN ? k : ERRK_SESSION,
				     "cannot reconnect: %s", why != NULL ? why :
				     "session lost");
				p->worst = SCOPE_RUN;
				free(why);
				return false;
			}
			if (reconnect(p, rt.attempt, retry_left(&rt)) == SCOPE_RUN)
				return false;
			continue;
		}
		/* by length too: "a" must not match a source "a\0b" */
		for (size_t k = 0; k < p->src_info.count && b == NULL; k++)
			if (p->src_info.boxes[k].name_len == pair->src_len &&
			    memcmp(p->src_info.boxes[k].name, pair->src,
			           pair->src_len) == 0)
				b = &p->src_info.boxes[k];
		if (b == NULL) {
			char *shown = mutf7_display(pair->src);

			log_warn("%s: vanished from the source", shown);
			free(shown);
			return true;
		}
		box = *b;
		done_before = p->stats->copied + p->stats->skipped;
		sc = copy_folder(p, &box, pair->name);
		if (sc == SCOPE_OK) {
			p->stats->folders++;
			return true;
		}
		if (sc == SCOPE_RUN)
			return false;
		if (sc > SCOPE_FOLDER) {
			uint64_t done = p->stats->copied + p->stats->skipped -
			                done_before;

			/* a session that got as far as the folder's messages:
			 * back to a short wait (cuts are transient) */
			if (done > 0)
				rt.attempt = 0;
			/* further through the folder than any attempt before
			 * (each counts the messages found there again, so a
			 * high-water mark): a fresh budget. A folder that fails
			 * at the same place every time ends with its budget. */
			if (done > best_done) {
				best_done = done;
				rt.start = time_mono_sec();
			}
		}
		if (sc <= SCOPE_FOLDER || retry_exhausted(&rt)) {
			const char *err2;

			log_error("%s", p->error);
			p->stats->folders_failed++;
			if (box.have_status) {
				uint64_t done = p->stats->copied + p->stats->skipped -
				                done_before;

				p->stats->failed_in_folders +=
				    box.messages > done ? box.messages - done : 0;
			}
			if (!p->state_broken &&
			    state_failure_put(p->db, p->o->account, pair->src, 0,
			                      STATE_SCOPE_FOLDER, p->error, &err2) < 0) {
				fail_state(p, err2);
				return false;
			}
			clear_failure(p);
			/* the next folder starts on new sessions, with its own
			 * budget and backoff (a failed connect is retried
			 * there) */
			if (sc > SCOPE_FOLDER) {
				disconnect(p);
				if (connect_both(p) == SCOPE_RUN)
					return false;
			}
			return true;
		}
		if (reconnect(p, rt.attempt, retry_left(&rt)) == SCOPE_RUN)
			return false;
	}
}

/* An interval in ms from a test's environment variable (100 ms to a
 * day), or def. */
static unsigned
env_ms(const char *name, unsigned def)
{
	const char *env = getenv(name);
	uint64_t v;

	if (env != NULL && str_to_u64z(env, 86400000, &v) && v >= 100)
		return (unsigned)v;
	return def;
}

/* The keepalive interval: the option, a test's shorter one, or 60 s. */
static unsigned
keepalive_ms(const struct copy_options *o)
{
	if (o->keepalive_ms != 0)
		return o->keepalive_ms;
	return env_ms("IMAPFERRY_KEEPALIVE_MS", IMAP_KEEPALIVE_DEFAULT_MS);
}

int
copy_account_to(const struct source *src, const struct target_spec *dst,
                struct state_db *db, const struct copy_options *o,
                struct copy_stats *stats, const char **error_r)
{
	struct pass p = {
		.src = *src, .o = o, .db = db, .stats = stats,
	};
	struct target_sink sink = {
		.ctx = &p, .delivered = sink_delivered, .refused = sink_refused,
		.retry = sink_retry, .failed = sink_failed, .dropped = sink_dropped,
	};
	struct retry rt;
	double start = time_mono_sec();
	size_t inbox = SIZE_MAX;        /* the INBOX pair, if any */
	struct fpair *pairs = NULL;
	size_t n_names = 0;
	int ret = 0;

	memset(stats, 0, sizeof(*stats));
	p.ranged = o->uid_lo != 0 || o->uid_hi != 0;
	p.lo = p.ranged && o->uid_lo > 1 ? o->uid_lo : 1;
	p.hi = p.ranged ? o->uid_hi : UINT32_MAX;
	p.window = DIFF_WINDOW;
	{
		const char *w = getenv("IMAPFERRY_DIFF_WINDOW");
		uint64_t v;

		if (w != NULL && str_to_u64(w, strlen(w), UINT32_MAX, &v))
			p.window = (uint32_t)v;
	}
	p.t = target_new(dst, &sink, stats);
	if (p.ranged && (p.t->ops->publish == NULL || o->n_folders != 1)) {
		*error_r = err_setk(ERRK_USAGE, "a UID range needs one folder and a "
		                    "target that keeps UIDs (a Maildir): an IMAP "
		                    "target assigns UIDs in APPEND order");
		stats->error_kind = ERRK_USAGE;
		target_free(&p.t);
		return -1;
	}
	/* one helper thread per pass sends NOOP on whichever session
	 * waits while the other works */
	p.keepalive_ms = keepalive_ms(o);
	/* the target's commit interval (a test's shorter one) */
	p.target_commit_ms = env_ms("IMAPFERRY_COMMIT_MS", TARGET_COMMIT_MS);
	p.keeper = imap_keeper_new(p.keepalive_ms);
	p.src.keeper = p.t->keeper = p.keeper;
	p.src.keep = NULL;
	source_adopt(&p.src);
	retry_init(&rt, o);
	while (connect_both(&p) != SCOPE_OK) {
		/* a first connection: a few tries, not the folder budget */
		if (p.worst == SCOPE_RUN || rt.attempt >= 5 || retry_exhausted(&rt)) {
			*error_r = err_setk(p.worst_kind, "%s", p.error);
			stats->error_kind = p.worst_kind;
			ret = -1;
			goto out;
		}
		log_warn("%s; retrying in %u s (retry %u)", p.error,
		         backoff_s(rt.attempt), rt.attempt + 1);
		disconnect(&p);
		sleep(backoff_s(rt.attempt));
		rt.attempt++;
		clear_failure(&p);
	}
	p.t->ops->setup_foldermap(p.t, o->fm);
	/* The folder list is taken now: src_info may be reloaded after a
	 * reconnect. */
	n_names = p.src_info.count;
	pairs = xcalloc(n_names + 1, sizeof(*pairs));
	map_folders(&p, pairs, n_names);
	for (size_t i = 0; i < n_names && inbox >= n_names; i++)
		if (pairs[i].src_len == 5 && str_ieqn(pairs[i].src, "INBOX", 5))
			inbox = i;
	for (size_t k = 0; k < n_names; k++) {
		/* INBOX first: a Maildir root gets its uidlist before any
		 * folder appears in it (a server would number it itself) */
		size_t i = inbox >= n_names ? k : k == 0 ? inbox : k <= inbox ? k - 1 : k;

		if (pairs[i].name == NULL || !pairs[i].selectable ||
		    !copy_folder_selected(o->folders, o->n_folders, pairs[i].src))
			continue;
		if (!folder_with_retries(&p, &pairs[i])) {
			*error_r = err_setk(p.worst_kind, "%s", p.error);
			stats->error_kind = p.worst_kind;
			ret = -1;
			goto out;
		}
	}
	/* one part of a split folder writes them: the one from UID 1; of
	 * parallel passes, the one that finishes last */
	if (!o->no_subscriptions && p.lo <= 1 && p.have_info &&
	    (o->subs_gate == NULL ||
	     atomic_fetch_add(o->subs_gate, 1) + 1 == o->subs_gate_n))
		copy_subscriptions(&p, pairs, n_names);
	source_logout(&p.src);
	p.t->ops->logout(p.t);
out:
	for (size_t i = 0; i < n_names && pairs != NULL; i++) {
		free(pairs[i].src);
		free(pairs[i].wire);
		free(pairs[i].name);
	}
	free(pairs);
	disconnect(&p);
	target_free(&p.t);
	imap_keeper_free(&p.keeper);
	for (size_t i = 0; i < p.n_dropped_seen; i++)
		free(p.dropped_seen[i]);
	free(p.dropped_seen);
	free(p.retry);
	ops_truncate(&p, 0);
	free(p.ops);
	free(p.error);
	free(p.shown);
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

struct target *
target_new(const struct target_spec *spec, const struct target_sink *sink,
           struct copy_stats *stats)
{
	struct target *t = spec->kind == TARGET_MAILDIR ?
	                   target_maildir_new(spec) : target_imap_new(spec);

	t->spec = spec;
	t->sink = *sink;
	t->stats = stats;
	return t;
}

void
target_free(struct target **t)
{
	if (*t == NULL)
		return;
	(*t)->ops->free(*t);
	*t = NULL;
}
