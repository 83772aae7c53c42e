/* tomaildir.c: IMAP source -> Maildir target, keeping UIDs (see
 * tomaildir.h). The calling thread owns the Maildir and the state
 * database; the reader thread (reader.c) owns the source session while it
 * fetches. */
#include "tomaildir.h"

#include "flags.h"
#include "log.h"
#include "mailboxes.h"
#include "mqueue.h"
#include "msgsum.h"
#include "mutf7.h"
#include "reader.h"
#include "source.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

enum scope { SCOPE_OK, SCOPE_FOLDER, SCOPE_SESSION, SCOPE_RUN };

struct md_ctx {
	struct source src;            /* IMAP account or Maildir */
	const struct tomaildir_options *o;
	struct state_db *db;
	struct copy_stats *stats;
	struct imap_account_info info;
	bool have_info;
	char *error;
	enum scope worst;
};

static void
fail(struct md_ctx *mc, enum scope scope, const char *fmt, ...) ATTR_PRINTF(3, 4);

static void
fail(struct md_ctx *mc, enum scope scope, const char *fmt, ...)
{
	char tmp[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (scope >= mc->worst) {
		free(mc->error);
		mc->error = xstrdup(tmp);
		mc->worst = scope;
	}
}

static bool
is_disk_full(const char *error)
{
	return strstr(error, "No space left") != NULL ||
	       strstr(error, "Disk quota") != NULL ||
	       strstr(error, "disk full") != NULL;
}

/* Splits a destination wire name ("Archive.2019", '.' separated, no
 * prefix) into the Maildir++ directory name. INBOX is the root. */
int
tomaildir_dirname(const char *wire, char **dirname_r, const char **error_r)
{
	char *dup, *p, *next;
	const char **comps;
	size_t n = 0, alloc = 1;
	int ret;

	if (str_ieq(wire, "INBOX")) {
		*dirname_r = xstrdup("");
		return 0;
	}
	for (p = (char *)wire; *p != '\0'; p++)
		if (*p == '.')
			alloc++;
	comps = xcalloc(alloc + 1, sizeof(*comps));
	dup = xstrdup(wire);
	for (p = dup; p != NULL; p = next) {
		next = strchr(p, '.');
		if (next != NULL)
			*next++ = '\0';
		comps[n++] = p;
	}
	ret = maildir_folder_dirname(comps, n, dirname_r, error_r);
	free(comps);
	free(dup);
	return ret;
}

/* Courier-IMAP 5 keeps folder names on disk in UTF-8 (the directory of
 * INBOX.Listes.&APw-n&AO8-code is ".Listes." + the UTF-8 of "\u00fcn\u00efcode",
 * that of "Beta &- Co" is ".Projects.Beta & Co"),
 * and courierimapsubscribed too: a modified-UTF-7 directory name would be
 * listed literally ("INBOX.Listes.&-APw-n..."). Converts a checked
 * modified-UTF-7 name to that form; refuses what Courier 5 refuses ('/')
 * or cannot be a safe directory name (control characters, too long). */
static int
courier_utf8(const char *mutf7, size_t max, char **out_r, const char **error_r)
{
	struct buf b;

	buf_init(&b, max + 1);
	if (mutf7_decode(mutf7, strlen(mutf7), &b) < 0) {
		buf_free(&b);
		*error_r = err_set("\"%.100s\": not valid modified UTF-7, or longer "
		                   "than %zu bytes in UTF-8 (Courier 5 stores names "
		                   "in UTF-8)", mutf7, max);
		return -1;
	}
	for (size_t i = 0; i < buf_len(&b); i++) {
		unsigned char ch = (unsigned char)buf_data(&b)[i];

		if (ch < 0x20 || ch == 0x7f || ch == '/') {
			buf_free(&b);
			*error_r = err_set("\"%.100s\": %s in the name (Courier 5 "
			                   "stores names in UTF-8)", mutf7, ch == '/' ?
			                   "'/'" : "a control character");
			return -1;
		}
	}
	if (buf_len(&b) > max) {
		buf_free(&b);
		*error_r = err_set("\"%.100s\": longer than %zu bytes in UTF-8",
		                   mutf7, max);
		return -1;
	}
	*out_r = buf_take(&b);
	return 0;
}

int
tomaildir_dirname_for(const char *wire, enum maildir_flavor flavor,
                      char **dirname_r, const char **error_r)
{
	char *d;

	if (tomaildir_dirname(wire, &d, error_r) < 0)
		return -1;
	if (flavor == MAILDIR_COURIER && d[0] != '\0') {
		int ret = courier_utf8(d, MAILDIR_DIRNAME_MAX, dirname_r, error_r);

		free(d);
		return ret;
	}
	*dirname_r = d;
	return 0;
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static const char *
pop3_uidl_of(const struct tomaildir_options *o, uint32_t uid)
{
	size_t lo = 0, hi = o->pop3_count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (o->pop3_uids[mid] == uid)
			return o->pop3_uidls[mid];
		if (o->pop3_uids[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static void
report_dropped(struct md_ctx *mc, const char *folder, uint32_t uid,
               char *dropped)
{
	if (dropped != NULL && dropped[0] != '\0') {
		log_warn("%s: UID %" PRIu32 ": keywords not storable in the "
		         "Maildir file name (more than 26 in the folder): %s",
		         folder, uid, dropped);
		mc->stats->dropped_flags++;
	}
	free(dropped);
}

/* Delivers the messages the reader fetches; commits every commit_every. */
static enum scope
deliver_uids(struct md_ctx *mc, struct maildir_folder *f, const char *folder,
             bool inbox, const uint32_t *uids, size_t count)
{
	const struct tomaildir_options *o = mc->o;
	unsigned every = o->commit_every != 0 ? o->commit_every : 2000;
	unsigned since = 0;
	struct mqueue q;
	struct source_reader *r;
	struct fetch_reader_options fo;
	struct cmsg *batch;
	const char *error;
	char *rerror;

	if (count == 0)
		return SCOPE_OK;
	mqueue_init(&q, 4096, 32u << 20);
	/* A Maildir takes UIDs in ascending order only, and a server may
	 * answer pipelined FETCH commands interleaved (Dovecot does under
	 * load): one larger FETCH at a time keeps the order. */
	fo = o->fetch;
	fo.depth = 1;
	if (fo.batch < 500)
		fo.batch = 500;
	r = source_reader_start(&mc->src, uids, count, &q, &fo);
	while ((batch = mqueue_pop_batch(&q, 64, 8u << 20)) != NULL) {
		while (batch != NULL) {
			struct cmsg *m = batch;
			const char *uidl = inbox ? pop3_uidl_of(o, m->uid) : NULL;
			char *dropped = NULL;
			int ret;

			batch = m->next;
			if (mc->worst >= SCOPE_SESSION) {
				cmsg_free(&m);
				continue;
			}
			if (m->fd >= 0)
				ret = maildir_deliver_fd(f, m->uid, m->flags,
				                         m->internaldate, m->fd, m->size,
				                         uidl, &dropped, &error);
			else
				ret = maildir_deliver(f, m->uid, m->flags,
				                      m->internaldate, m->data,
				                      (size_t)m->size, uidl, &dropped,
				                      &error);
			if (ret < 0) {
				if (is_disk_full(error)) {
					fail(mc, SCOPE_RUN, "%s: %s", folder, error);
				} else {
					const char *err2;

					log_warn("%s: UID %" PRIu32 ": %s", folder,
					         m->uid, error);
					mc->stats->failed++;
					if (state_failure_put(mc->db, o->account, folder,
					                      m->uid, STATE_SCOPE_MESSAGE,
					                      error, &err2) < 0)
						fail(mc, SCOPE_RUN, "%s", err2);
				}
			} else {
				report_dropped(mc, folder, m->uid, dropped);
				mc->stats->copied++;
				mc->stats->bytes += m->size;
				if (o->progress != NULL) {
					o->progress->messages++;
					o->progress->bytes += m->size;
				}
				if (++since >= every) {
					since = 0;
					if (maildir_folder_commit(f, &error) < 0)
						fail(mc, is_disk_full(error) ? SCOPE_RUN :
						     SCOPE_FOLDER, "%s: %s", folder, error);
				}
			}
			cmsg_free(&m);
		}
		if (mc->worst >= SCOPE_FOLDER)
			mqueue_abort(&q);
	}
	rerror = source_reader_join(&r);
	mqueue_deinit(&q);
	if (rerror != NULL) {
		fail(mc, SCOPE_SESSION, "source: %s", rerror);
		free(rerror);
	}
	return mc->worst;
}

/* A crashed run leaves delivered files without uidlist lines. Those that
 * match exactly one source message not yet in the folder by INTERNALDATE
 * and size get that message's UID; those that match several are removed
 * (they are copied again); others are not ours (an MDA delivered them) and
 * are left for the server to number. */
static enum scope
adopt_unlisted(struct md_ctx *mc, struct maildir_folder *f, const char *folder,
               const struct msgsum_list *src)
{
	const char *error;
	size_t adopted = 0, removed = 0;

	for (size_t i = 0; i < maildir_folder_unlisted_count(f);) {
		const struct maildir_msg *u = maildir_folder_unlisted(f, i);
		const struct msgsum *match = NULL;
		size_t candidates = 0;

		for (size_t k = 0; k < src->count; k++) {
			const struct msgsum *s = &src->items[k];

			if (s->internaldate != u->mtime ||
			    maildir_folder_find(f, s->uid) != NULL)
				continue;
			if (u->size != MAILDIR_SIZE_UNKNOWN && u->size != s->size &&
			    u->file_size != s->size)
				continue;
			match = s;
			candidates++;
		}
		if (candidates == 1 && match->uid >= maildir_folder_min_uid(f) &&
		    maildir_unlisted_adopt(f, i, match->uid, &error) == 0) {
			adopted++;
			continue;
		}
		if (candidates >= 1) {
			if (maildir_unlisted_expunge(f, i, &error) < 0) {
				fail(mc, SCOPE_FOLDER, "%s: %s", folder, error);
				return SCOPE_FOLDER;
			}
			removed++;
			continue;
		}
		i++;
	}
	if (adopted + removed > 0)
		log_info("%s: %zu files of an interrupted run adopted, %zu removed "
		         "to be copied again", folder, adopted, removed);
	return SCOPE_OK;
}

/* The folder's sync point from the state database, or a new one. */
static int
load_folder(struct md_ctx *mc, const char *boxname, const char *dirname,
            struct state_folder *sf, bool *found_r)
{
	const char *error;

	if (state_folder_get(mc->db, mc->o->account, boxname, sf, found_r,
	                     &error) < 0) {
		fail(mc, SCOPE_RUN, "%s", error);
		return -1;
	}
	if (!*found_r) {
		memset(sf, 0, sizeof(*sf));
		sf->account = xstrdup(mc->o->account);
		sf->src_name = xstrdup(boxname);
		sf->dst_name = xstrdup(dirname);
	}
	return 0;
}

static int
save_folder(struct md_ctx *mc, struct state_folder *sf)
{
	const char *error;

	if (state_begin(mc->db, &error) < 0 ||
	    state_folder_put(mc->db, sf, &error) < 0 ||
	    state_commit(mc->db, &error) < 0) {
		state_rollback(mc->db);
		fail(mc, SCOPE_RUN, "%s", error);
		return -1;
	}
	return 0;
}

#define STAGE_PREFIX ".imapferry-stage-"

/* The directory of a folder: root or root/dirname (new string). */
static char *
folder_path(const char *root, const char *dirname)
{
	return dirname[0] == '\0' ? xstrdup(root) :
	    xasprintf("%s/%s", root, dirname);
}

/* The names of the scratch folders in the folder's tmp/ (maybe none). */
static size_t
stage_names(const char *tmpdir, char ***names_r)
{
	DIR *d = opendir(tmpdir);
	struct dirent *de;
	char **v = NULL;
	size_t n = 0;

	*names_r = NULL;
	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, STAGE_PREFIX, strlen(STAGE_PREFIX)) != 0)
			continue;
		v = xreallocarray(v, n + 1, sizeof(*v));
		v[n++] = xstrdup(de->d_name);
	}
	closedir(d);
	*names_r = v;
	return n;
}

static void
remove_stages(const char *tmpdir, char **names, size_t n)
{
	const char *error;

	for (size_t i = 0; i < n; i++)
		if (maildir_folder_remove(tmpdir, names[i], &error) < 0)
			log_warn("removing the scratch folder: %s", error);
}

static void
free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

struct staged {
	uint32_t uid;
	size_t stage;
};

static int
cmp_staged(const void *a, const void *b)
{
	const struct staged *x = a, *y = b;

	if (x->uid != y->uid)
		return x->uid < y->uid ? -1 : 1;
	return x->stage < y->stage ? -1 : x->stage > y->stage;
}

/* When the done UID ranges of this run cover the folder, publishes the
 * staged messages into it in UID order (see tomaildir.h). Serialized
 * between jobs and processes by flock() on tmp/.imapferry-publish.lock
 * (released by a crash). */
static enum scope
publish_parts(struct md_ctx *mc, const char *boxname, const char *dirname,
              const char *shown)
{
	const struct tomaildir_options *o = mc->o;
	struct maildir_folder *f = NULL, **stages = NULL;
	struct staged *list = NULL;
	size_t n_list = 0, n_names = 0, published = 0, refused = 0;
	char **names = NULL, *path, *tmpdir, *lockpath;
	struct state_folder sf;
	uint32_t uidnext, v;
	uint64_t modseq;
	bool complete, found;
	const char *error;
	enum scope sc = SCOPE_OK;
	int lockfd;

	if (state_part_cover(mc->db, o->run_id, o->account, boxname, &complete,
	                     &uidnext, &modseq, &error) < 0) {
		fail(mc, SCOPE_RUN, "%s", error);
		return SCOPE_RUN;
	}
	if (!complete)
		return SCOPE_OK;
	path = folder_path(o->root, dirname);
	tmpdir = xasprintf("%s/tmp", path);
	lockpath = xasprintf("%s/.imapferry-publish.lock", tmpdir);
	lockfd = open(lockpath, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (lockfd < 0 || flock(lockfd, LOCK_EX) < 0) {
		fail(mc, SCOPE_FOLDER, "%s: %s: %s", shown, lockpath, strerror(errno));
		sc = SCOPE_FOLDER;
		goto out;
	}
	if (maildir_folder_open(o->root, dirname, &o->md, true, &f, &error) < 0) {
		sc = is_disk_full(error) ? SCOPE_RUN : SCOPE_FOLDER;
		fail(mc, sc, "%s: %s", shown, error);
		goto out;
	}
	v = maildir_folder_uidvalidity(f);
	n_names = stage_names(tmpdir, &names);
	stages = xcalloc(n_names + 1, sizeof(*stages));
	for (size_t i = 0; i < n_names; i++) {
		struct maildir_folder *st;
		size_t cnt;

		if (maildir_folder_open(tmpdir, names[i], &o->md, false, &st,
		                        &error) < 0) {
			log_warn("%s: scratch folder %s: %s", shown, names[i], error);
			continue;
		}
		if (v == 0 || maildir_folder_uidvalidity(st) != v) {
			/* another UIDVALIDITY: not these messages */
			maildir_folder_close(&st);
			continue;
		}
		stages[i] = st;
		cnt = maildir_folder_count(st);
		list = xreallocarray(list, n_list + cnt + 1, sizeof(*list));
		for (size_t k = 0; k < cnt; k++) {
			list[n_list].uid = maildir_folder_msg(st, k)->uid;
			list[n_list].stage = i;
			n_list++;
		}
	}
	/* a crash inside an earlier publish's commit left files in cur/
	 * without lines: the scratch folders still have them */
	for (size_t i = 0; i < maildir_folder_unlisted_count(f);) {
		const struct maildir_msg *u = maildir_folder_unlisted(f, i);
		bool ours = false;

		for (size_t k = 0; k < n_list && !ours; k++) {
			const struct maildir_msg *m =
			    maildir_folder_find(stages[list[k].stage], list[k].uid);

			ours = m != NULL && m->mtime == u->mtime &&
			       m->file_size == u->file_size;
		}
		if (ours) {
			if (maildir_unlisted_expunge(f, i, &error) < 0) {
				sc = SCOPE_FOLDER;
				fail(mc, sc, "%s: %s", shown, error);
				goto out;
			}
			continue;
		}
		i++;
	}
	if (n_list > 1)
		qsort(list, n_list, sizeof(*list), cmp_staged);
	for (size_t k = 0; k < n_list; k++) {
		uint32_t uid = list[k].uid;
		char *dropped = NULL;

		if (maildir_folder_find(f, uid) != NULL)
			continue;       /* published before, or a duplicate */
		if (uid < maildir_folder_min_uid(f)) {
			const char *err2;
			char *why = xasprintf("UID %" PRIu32 " is below the Maildir "
			    "folder's UIDNEXT %" PRIu32 ": it cannot keep its UID",
			    uid, maildir_folder_min_uid(f));

			log_warn("%s: %s", shown, why);
			mc->stats->failed++;
			refused++;
			if (state_failure_put(mc->db, o->account, boxname, uid,
			                      STATE_SCOPE_MESSAGE, why, &err2) < 0)
				fail(mc, SCOPE_RUN, "%s", err2);
			free(why);
			continue;
		}
		if (maildir_link_in(f, stages[list[k].stage], uid, &dropped,
		                    &error) < 0) {
			sc = is_disk_full(error) ? SCOPE_RUN : SCOPE_FOLDER;
			fail(mc, sc, "%s: publishing UID %" PRIu32 ": %s", shown, uid,
			     error);
			goto out;
		}
		report_dropped(mc, shown, uid, dropped);
		if (++published % 5000 == 0 &&
		    maildir_folder_commit(f, &error) < 0) {
			sc = is_disk_full(error) ? SCOPE_RUN : SCOPE_FOLDER;
			fail(mc, sc, "%s: %s", shown, error);
			goto out;
		}
	}
	if (v != 0) {
		uint32_t next = uidnext;

		if (maildir_folder_uidnext(f) > next)
			next = maildir_folder_uidnext(f);
		if (maildir_folder_set_uids(f, v, next, &error) < 0)
			log_warn("%s: %s", shown, error);
	}
	if (maildir_folder_commit(f, &error) < 0) {
		sc = is_disk_full(error) ? SCOPE_RUN : SCOPE_FOLDER;
		fail(mc, sc, "%s: %s", shown, error);
		goto out;
	}
	log_info("%s: %zu staged messages published from %zu UID ranges%s",
	         shown, published, n_names, refused > 0 ? " (some refused)" : "");
	for (size_t i = 0; i < n_names; i++)
		maildir_folder_close(&stages[i]);
	remove_stages(tmpdir, names, n_names);
	/* the folder is complete as of the oldest part's view */
	if (load_folder(mc, boxname, dirname, &sf, &found) < 0) {
		sc = SCOPE_RUN;
		goto out;
	}
	sf.src_uidvalidity = v;
	sf.src_uidnext = uidnext;
	sf.src_highestmodseq = modseq;
	sf.complete = true;
	if (save_folder(mc, &sf) < 0)
		sc = SCOPE_RUN;
	state_folder_free(&sf);
out:
	for (size_t i = 0; i < n_names && stages != NULL; i++)
		maildir_folder_close(&stages[i]);
	free(stages);
	free(list);
	free_names(names, n_names);
	maildir_folder_close(&f);
	if (lockfd >= 0)
		close(lockfd);
	free(lockpath);
	free(tmpdir);
	free(path);
	return sc;
}

static enum scope
copy_folder(struct md_ctx *mc, const struct imap_mailbox_info *box,
            const char *dirname)
{
	const struct tomaildir_options *o = mc->o;
	struct source_folder sfo = { 0 };
	const struct source_folder *mb;
	struct maildir_folder *f = NULL;
	struct msgsum_list src = { 0 };
	struct state_folder sf;
	uint32_t *to_copy = NULL, *gone = NULL;
	size_t n_copy = 0, n_gone = 0, n_md;
	bool found, inbox = dirname[0] == '\0';
	const char *error;
	enum scope sc = SCOPE_OK;
	char *shown = str_escape_controls(box->name);
	uint32_t check_from;
	bool meta;
	/* a UID range of a split folder (see tomaildir.h) */
	bool ranged = o->uid_lo != 0 || o->uid_hi != 0;
	uint32_t lo = ranged && o->uid_lo > 1 ? o->uid_lo : 1;
	uint32_t hi = ranged ? o->uid_hi : UINT32_MAX;
	struct maildir_folder *stage = NULL, *into;

	if (load_folder(mc, box->name, dirname, &sf, &found) < 0) {
		free(shown);
		return SCOPE_RUN;
	}
	/* Unchanged since the last complete pass (CONDSTORE): nothing to do. */
	if (found && sf.complete && box->have_status && box->highestmodseq != 0 &&
	    sf.src_uidvalidity == box->uidvalidity &&
	    sf.src_uidnext == box->uidnext &&
	    sf.src_highestmodseq == box->highestmodseq) {
		log_debug("%s: unchanged since the last run", shown);
		mc->stats->skipped += box->messages;
		if (ranged && !o->dry_run)
			goto part_done;
		state_folder_free(&sf);
		free(shown);
		return SCOPE_OK;
	}
	if (source_select(&mc->src, box->name, &sfo, &error) < 0) {
		sc = source_is_dead(&mc->src) ? SCOPE_SESSION : SCOPE_FOLDER;
		fail(mc, sc, "cannot examine %s on the source: %s", shown, error);
		goto out;
	}
	mb = &sfo;
	if (mb->uidvalidity == 0 || mb->uidnext == 0) {
		/* Courier sends no UIDNEXT on SELECT: STATUS had it */
		if (box->uidnext == 0) {
			sc = SCOPE_FOLDER;
			fail(mc, sc, "%s: the source reports no UIDVALIDITY/UIDNEXT",
			     shown);
			goto out;
		}
	}
	/* Target UIDs at or above the source UIDNEXT of the last complete run
	 * (all of them without one) were not numbered by a committed run of
	 * ours: the server may have numbered files of an interrupted run, or
	 * mail delivered to the target, with UIDs the source gives to other
	 * messages. Those are checked by INTERNALDATE and size below. */
	check_from = found && sf.complete && sf.src_uidnext != 0 ? sf.src_uidnext : 1;
	sf.src_uidvalidity = mb->uidvalidity != 0 ? mb->uidvalidity : box->uidvalidity;
	sf.src_uidnext = mb->uidnext != 0 ? mb->uidnext : box->uidnext;
	sf.src_highestmodseq = mb->highestmodseq;
	if (maildir_folder_open(o->root, dirname, &o->md, !o->dry_run, &f,
	                        &error) < 0) {
		if (o->dry_run) {
			mc->stats->copied += mb->exists;
			goto out;
		}
		sc = is_disk_full(error) ? SCOPE_RUN : SCOPE_FOLDER;
		fail(mc, sc, "%s: %s", shown, error);
		goto out;
	}
	/* sizes and dates only when unlisted files need matching or
	 * messages need checking */
	n_md = maildir_folder_count(f);
	meta = maildir_folder_unlisted_count(f) > 0 ||
	       (n_md > 0 && maildir_folder_msg(f, n_md - 1)->uid >= check_from);
	if (mb->exists > 0 &&
	    (ranged ? source_list_range(&mc->src, lo, hi, MSGSUM_FLAGS |
	                                (meta ? MSGSUM_META : 0), &src, &error) :
	     source_list(&mc->src, NULL, 0, MSGSUM_FLAGS |
	                 (meta ? MSGSUM_META : 0), &src, &error)) < 0) {
		fail(mc, SCOPE_SESSION, "source: %s", error);
		sc = SCOPE_SESSION;
		goto out;
	}
	if (maildir_folder_uidvalidity(f) == 0) {
		/* UIDNEXT is set after the last delivery: a committed N is a
		 * floor for the UIDs that may follow */
		if (!o->dry_run &&
		    maildir_folder_set_uids(f, sf.src_uidvalidity, 0, &error) < 0) {
			sc = SCOPE_FOLDER;
			fail(mc, sc, "%s: %s", shown, error);
			goto out;
		}
		if (!o->dry_run)
			mc->stats->folders_created++;
	} else if (maildir_folder_uidvalidity(f) != sf.src_uidvalidity) {
		sc = SCOPE_FOLDER;
		fail(mc, sc, "%s: the Maildir folder %s has UIDVALIDITY %" PRIu32
		     " but the source %" PRIu32 ": its UIDs cannot be kept (move the "
		     "Maildir folder away to copy it again)", shown,
		     dirname[0] != '\0' ? dirname : "INBOX",
		     maildir_folder_uidvalidity(f), sf.src_uidvalidity);
		goto out;
	}

	/* files a crashed run delivered but did not list */
	if (!o->dry_run && lo == 1 && maildir_folder_unlisted_count(f) > 0 &&
	    (sc = adopt_unlisted(mc, f, shown, &src)) != SCOPE_OK)
		goto out;

	/* a part above UID 1 copies into its scratch folder */
	if (lo > 1 && !o->dry_run) {
		char *path = folder_path(o->root, dirname);
		char *tmpdir = xasprintf("%s/tmp", path);
		char *name = xasprintf(STAGE_PREFIX "%" PRIu32, lo);
		int r;

		r = maildir_folder_open(tmpdir, name, &o->md, true, &stage, &error);
		if (r == 0 && maildir_folder_uidvalidity(stage) != 0 &&
		    maildir_folder_uidvalidity(stage) != sf.src_uidvalidity) {
			maildir_folder_close(&stage);
			r = maildir_folder_remove(tmpdir, name, &error);
			if (r == 0)
				r = maildir_folder_open(tmpdir, name, &o->md, true,
				                        &stage, &error);
		}
		if (r == 0 && maildir_folder_uidvalidity(stage) == 0)
			r = maildir_folder_set_uids(stage, sf.src_uidvalidity, 0,
			                            &error);
		free(name);
		free(tmpdir);
		free(path);
		if (r < 0) {
			sc = is_disk_full(error) ? SCOPE_RUN : SCOPE_FOLDER;
			fail(mc, sc, "%s: scratch folder: %s", shown, error);
			goto out;
		}
	}

	/* diff: the Maildir holds the source UIDs */
	n_md = maildir_folder_count(f);
	to_copy = xcalloc(src.count + 1, sizeof(uint32_t));
	gone = xcalloc(n_md + 1, sizeof(uint32_t));
	for (size_t i = 0; i < src.count; i++) {
		const struct msgsum *s = &src.items[i];
		const struct maildir_msg *m = maildir_folder_find(f, s->uid);

		if (m == NULL && stage != NULL &&
		    (m = maildir_folder_find(stage, s->uid)) != NULL) {
			/* copied by an earlier attempt of this part */
			mc->stats->skipped++;
			if (strcmp(m->flags, s->flags) != 0) {
				char *dropped = NULL;

				if (maildir_set_flags(stage, s->uid, s->flags,
				                      &dropped, &error) < 0)
					log_warn("%s: UID %" PRIu32 ": %s", shown,
					         s->uid, error);
				else
					report_dropped(mc, shown, s->uid, dropped);
			}
			continue;
		}
		if (m == NULL) {
			if (o->skip_deleted && flags_has(s->flags, "\\Deleted"))
				continue;
			if (!o->dry_run && s->uid < maildir_folder_min_uid(f)) {
				const char *err2;
				char *why = xasprintf("UID %" PRIu32 " is below the "
				    "Maildir folder's UIDNEXT %" PRIu32 " (expunged on "
				    "the target?): it cannot keep its UID",
				    s->uid, maildir_folder_min_uid(f));

				log_warn("%s: %s", shown, why);
				mc->stats->failed++;
				if (state_failure_put(mc->db, o->account, box->name,
				                      s->uid, STATE_SCOPE_MESSAGE, why,
				                      &err2) < 0)
					fail(mc, SCOPE_RUN, "%s", err2);
				free(why);
				continue;
			}
			to_copy[n_copy++] = s->uid;
			continue;
		}
		if (meta && m->uid >= check_from &&
		    (m->mtime != s->internaldate ||
		     (m->size != MAILDIR_SIZE_UNKNOWN && m->size != s->size &&
		      m->file_size != s->size))) {
			const char *err2;
			char *why = xasprintf("UID %" PRIu32 " on the target holds "
			    "another message (INTERNALDATE %" PRId64 ", %" PRIu64
			    " bytes; the source's: %" PRId64 ", %" PRIu64 " bytes): the "
			    "server numbered a file of an interrupted run, or mail "
			    "was delivered to the target; not copied", s->uid,
			    m->mtime, m->file_size, s->internaldate, s->size);

			log_warn("%s: %s", shown, why);
			mc->stats->failed++;
			if (state_failure_put(mc->db, o->account, box->name, s->uid,
			                      STATE_SCOPE_MESSAGE, why, &err2) < 0)
				fail(mc, SCOPE_RUN, "%s", err2);
			free(why);
			continue;
		}
		mc->stats->skipped++;
		if (strcmp(m->flags, s->flags) != 0) {
			char *dropped = NULL;

			mc->stats->flags_updated++;
			if (o->dry_run)
				continue;
			if (maildir_set_flags(f, s->uid, s->flags, &dropped,
			                      &error) < 0) {
				log_warn("%s: UID %" PRIu32 ": %s", shown, s->uid,
				         error);
				continue;
			}
			report_dropped(mc, shown, s->uid, dropped);
		}
	}
	for (size_t i = 0; i < n_md && o->delete_missing; i++) {
		const struct maildir_msg *m = maildir_folder_msg(f, i);

		if (m->uid >= lo && m->uid <= hi &&
		    msgsum_find(&src, m->uid) == NULL)
			gone[n_gone++] = m->uid;
	}
	for (size_t i = 0; stage != NULL && o->delete_missing &&
	     i < maildir_folder_count(stage);) {
		const struct maildir_msg *m = maildir_folder_msg(stage, i);

		if (msgsum_find(&src, m->uid) == NULL &&
		    maildir_expunge(stage, m->uid, &error) == 0)
			continue;
		i++;
	}
	if (n_copy > 0 || n_gone > 0)
		log_info("%s -> %s: %zu to copy, %zu already there, %zu gone%s",
		         shown, dirname[0] != '\0' ? dirname : "INBOX", n_copy,
		         src.count - n_copy, n_gone, o->dry_run ? " (dry run)" : "");
	if (o->dry_run) {
		mc->stats->copied += n_copy;
		mc->stats->expunged += n_gone;
		goto out;
	}
	qsort(to_copy, n_copy, sizeof(*to_copy), cmp_u32);
	into = stage != NULL ? stage : f;
	if ((sc = deliver_uids(mc, into, box->name, inbox, to_copy, n_copy)) !=
	    SCOPE_OK)
		goto commit;
	for (size_t i = 0; i < n_gone; i++) {
		if (maildir_expunge(f, gone[i], &error) < 0)
			log_warn("%s: UID %" PRIu32 ": %s", shown, gone[i], error);
		else
			mc->stats->expunged++;
	}
	/* UIDNEXT as the source has it (it may have grown meanwhile), never
	 * below what the folder already promised; for a split folder the
	 * publishing part sets it */
	if (!ranged) {
		uint32_t next = sf.src_uidnext;

		struct source_folder now;

		/* (IMAP: the session may have seen new mail meanwhile) */
		if (mc->src.kind == SOURCE_IMAP) {
			now.uidnext = imap_client_mailbox(mc->src.client)->uidnext;
			if (now.uidnext > next)
				next = now.uidnext;
		}
		if (maildir_folder_uidnext(f) > next)
			next = maildir_folder_uidnext(f);
		if (maildir_folder_set_uids(f, sf.src_uidvalidity, next, &error) < 0)
			log_warn("%s: %s", shown, error);
	}
	sf.complete = true;
commit:
	if (stage != NULL && maildir_folder_commit(stage, &error) < 0) {
		sf.complete = false;
		if (sc < SCOPE_FOLDER) {
			sc = is_disk_full(error) ? SCOPE_RUN : SCOPE_FOLDER;
			fail(mc, sc, "%s: %s", shown, error);
		}
	}
	if (maildir_folder_commit(f, &error) < 0) {
		sf.complete = false;
		if (sc < SCOPE_FOLDER) {
			sc = is_disk_full(error) ? SCOPE_RUN : SCOPE_FOLDER;
			fail(mc, sc, "%s: %s", shown, error);
		}
	}
	if (ranged) {
		if (sc == SCOPE_OK && mc->worst == SCOPE_OK)
			goto part_done;
		goto out;
	}
	if (sf.complete) {
		/* scratch folders of an abandoned split: these messages
		 * were copied directly now */
		char *path = folder_path(o->root, dirname);
		char *tmpdir = xasprintf("%s/tmp", path);
		char **names;
		size_t nn = stage_names(tmpdir, &names);

		remove_stages(tmpdir, names, nn);
		free_names(names, nn);
		free(tmpdir);
		free(path);
	}
	if (save_folder(mc, &sf) < 0)
		sc = SCOPE_RUN;
	goto out;
part_done:
	/* this range is done: record it; the part that completes the
	 * cover publishes every staged range */
	maildir_folder_close(&stage);
	maildir_folder_close(&f);
	if (state_part_done(mc->db, o->run_id, o->account, box->name, lo, hi,
	                    sf.src_uidnext, sf.src_highestmodseq, &error) < 0) {
		fail(mc, SCOPE_RUN, "%s", error);
		sc = SCOPE_RUN;
	} else {
		sc = publish_parts(mc, box->name, dirname, shown);
	}
out:
	maildir_folder_close(&stage);
	if (f != NULL)
		maildir_folder_close(&f);
	msgsum_list_free(&src);
	free(to_copy);
	free(gone);
	state_folder_free(&sf);
	free(shown);
	return sc != SCOPE_OK ? sc : mc->worst;
}

static enum scope
connect_src(struct md_ctx *mc)
{
	const char *error;
	bool refused;

	if (source_connect(&mc->src, &refused, &error) < 0) {
		fail(mc, refused ? SCOPE_RUN : SCOPE_SESSION, "source: %s", error);
		return mc->worst;
	}
	if (mc->have_info) {
		imap_account_info_free(&mc->info);
		mc->have_info = false;
	}
	if (source_inventory(&mc->src, IMAP_INV_STATUS | IMAP_INV_SUBSCRIBED,
	                     &mc->info, &error) < 0) {
		fail(mc, SCOPE_SESSION, "source: %s", error);
		source_disconnect(&mc->src);
		return SCOPE_SESSION;
	}
	mc->have_info = true;
	return SCOPE_OK;
}

static enum scope
reconnect(struct md_ctx *mc, unsigned attempt)
{
	unsigned wait = 1u << (attempt < 5 ? attempt : 5);

	log_warn("%s; reconnecting in %u s", mc->error != NULL ? mc->error : "session lost", wait);
	source_disconnect(&mc->src);
	sleep(wait);
	XFREE(mc->error);
	mc->worst = SCOPE_OK;
	return connect_src(mc);
}

struct md_pair {
	char *src;                /* source wire name */
	char *dirname;            /* Maildir++ directory, NULL if excluded */
	char *dst_wire;           /* destination name, '.' separated */
	bool selectable, subscribed;
};

static void
write_subscriptions(struct md_ctx *mc, const struct md_pair *pairs, size_t n)
{
	const char **names = xcalloc(n + 1, sizeof(*names));
	char **tmp = xcalloc(n + 1, sizeof(*tmp));
	const char *error;
	size_t k = 0;
	bool courier = mc->o->md.flavor == MAILDIR_COURIER;

	for (size_t i = 0; i < n; i++) {
		if (!pairs[i].subscribed || pairs[i].dst_wire == NULL)
			continue;
		if (courier && !str_ieq(pairs[i].dst_wire, "INBOX")) {
			char *name = xasprintf("INBOX.%s", pairs[i].dst_wire);

			/* in UTF-8, like the directory names */
			if (courier_utf8(name, SIZE_MAX / 2, &tmp[k], &error) < 0) {
				log_warn("subscription %s not written: %s",
				         pairs[i].dst_wire, error);
				free(name);
				continue;
			}
			free(name);
		} else {
			tmp[k] = xstrdup(pairs[i].dst_wire);
		}
		names[k] = tmp[k];
		k++;
	}
	mc->stats->subscribed = (unsigned)k;
	if (k > 0 && !mc->o->dry_run &&
	    maildir_subscriptions_write(mc->o->root, &mc->o->md, names, k, '.',
	                                &error) < 0)
		log_warn("writing subscriptions: %s", error);
	for (size_t i = 0; i < k; i++)
		free(tmp[i]);
	free(tmp);
	free(names);
}

int
tomaildir_copy_account(const struct imap_client_options *src_opts,
                       struct state_db *db, const struct tomaildir_options *o,
                       struct copy_stats *stats, const char **error_r)
{
	struct source s = { .kind = SOURCE_IMAP, .imap = src_opts };

	return tomaildir_copy_from(&s, db, o, stats, error_r);
}

int
tomaildir_copy_from(const struct source *src, struct state_db *db,
                    const struct tomaildir_options *o, struct copy_stats *stats,
                    const char **error_r)
{
	struct md_ctx mc = {
		.src = *src, .o = o, .db = db, .stats = stats,
	};
	double start = time_mono_sec();
	struct md_pair *pairs = NULL;
	size_t n = 0;
	unsigned attempt = 0;
	int ret = 0;

	memset(stats, 0, sizeof(*stats));
	while (connect_src(&mc) != SCOPE_OK) {
		if (mc.worst == SCOPE_RUN || attempt >= 5) {
			*error_r = err_set("%s", mc.error);
			ret = -1;
			goto out;
		}
		log_warn("%s; retrying in %u s", mc.error, 1u << attempt);
		sleep(1u << attempt);
		attempt++;
		XFREE(mc.error);
		mc.worst = SCOPE_OK;
	}
	n = mc.info.count;
	pairs = xcalloc(n + 1, sizeof(*pairs));
	for (size_t i = 0; i < n; i++) {
		const struct imap_mailbox_info *box = &mc.info.boxes[i];
		struct foldermap_result res;
		const char *error;

		pairs[i].src = xstrndup(box->name, box->name_len);
		pairs[i].selectable = box->selectable;
		pairs[i].subscribed = box->subscribed;
		if (foldermap_map(o->fm, box->name, box->name_len, box->attrs, &res,
		                  &error) < 0) {
			log_warn("source folder %s: %s", pairs[i].src, error);
			stats->folders_failed++;
			continue;
		}
		if (res.note != NULL)
			log_warn("folder %s: %s", res.logical, res.note);
		if (!res.excluded &&
		    memchr(box->name, '\0', box->name_len) != NULL) {
			/* SELECT takes a C string: the source would be asked
			 * for the folder named by the bytes before the NUL */
			log_error("folder %s cannot be copied: its source name "
			          "contains a NUL byte", res.logical);
			stats->folders_failed++;
		} else if (!res.excluded) {
			if (tomaildir_dirname_for(res.dst_wire, o->md.flavor,
			                          &pairs[i].dirname, &error) < 0) {
				log_error("folder %s cannot be stored safely: %s",
				          res.logical, error);
				stats->folders_failed++;
			} else {
				pairs[i].dst_wire = xstrdup(res.dst_wire);
			}
		}
		foldermap_result_free(&res);
	}
	for (size_t i = 0; i < n; i++) {
		if (pairs[i].dirname == NULL || !pairs[i].selectable ||
		    !copy_folder_selected(o->folders, o->n_folders, pairs[i].src))
			continue;
		for (attempt = 0;; attempt++) {
			const struct imap_mailbox_info *b = NULL;
			struct imap_mailbox_info box;
			enum scope sc;

			/* by length too: "a" must not match a source "a\0b" */
			for (size_t k = 0; k < mc.info.count && b == NULL; k++)
				if (mc.info.boxes[k].name_len == strlen(pairs[i].src) &&
				    strcmp(mc.info.boxes[k].name, pairs[i].src) == 0)
					b = &mc.info.boxes[k];
			if (b == NULL) {
				log_warn("%s: vanished from the source", pairs[i].src);
				break;
			}
			box = *b;
			sc = copy_folder(&mc, &box, pairs[i].dirname);
			if (sc == SCOPE_OK) {
				stats->folders++;
				break;
			}
			if (sc == SCOPE_RUN)
				break;
			if (sc == SCOPE_FOLDER || attempt >= 5) {
				const char *err2;

				log_error("%s", mc.error);
				stats->folders_failed++;
				ignore_result(state_failure_put(db, o->account, pairs[i].src,
				                                0, STATE_SCOPE_FOLDER,
				                                mc.error, &err2));
				XFREE(mc.error);
				mc.worst = SCOPE_OK;
				if (sc != SCOPE_FOLDER)
					(void)reconnect(&mc, attempt);
				break;
			}
			if (reconnect(&mc, attempt) == SCOPE_RUN)
				break;
		}
		if (mc.worst == SCOPE_RUN) {
			*error_r = err_set("%s", mc.error);
			ret = -1;
			goto out;
		}
	}
	/* one part of a split folder writes them: the one from UID 1 */
	if (!o->no_subscriptions && o->uid_lo <= 1)
		write_subscriptions(&mc, pairs, n);
	source_logout(&mc.src);
out:
	for (size_t i = 0; i < n && pairs != NULL; i++) {
		free(pairs[i].src);
		free(pairs[i].dirname);
		free(pairs[i].dst_wire);
	}
	free(pairs);
	source_disconnect(&mc.src);
	if (mc.have_info)
		imap_account_info_free(&mc.info);
	free(mc.error);
	stats->seconds = time_mono_sec() - start;
	return ret;
}
