/* maildir.c: a Maildir++ folder: open/scan, deliver, flag changes,
 * expunge, commit of the uidlist and keywords. See maildir.h for the model. */
#define _GNU_SOURCE 1 /* syncfs */
#include "maildir-private.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* One message file (listed or not). */
struct mfile {
	struct maildir_msg pub;
	char *name;             /* current file name in cur/ or new/; for a
	                           pending delivery the name it gets in cur/ */
	char *tmpname;          /* pending delivery: its name in tmp/, where it
	                           stays until commit publishes it; else NULL */
};

/* A Courier keyword-update file to remove once :list holds its state. */
struct ckw_update {
	char *name;
};

struct maildir_folder {
	struct maildir_options o;
	char *hostname;         /* escaped, for unique names */
	char *dirname;
	char *where;            /* root/dirname, for messages */
	int rootfd, dirfd, curfd, newfd, tmpfd;
	bool created;           /* directories created: fsync them at commit */

	const struct md_lock_spec *lockspec;
	struct md_lock lock;

	/* uidlist: disk records plus pending ones, sorted by UID */
	struct md_uidlist ul;
	bool have_uidlist;
	struct stat ul_st;
	uint32_t disk_maxuid;
	uint32_t set_v, set_n;  /* from set_uids, 0 = unset */
	uint32_t floor;         /* lowest UID accepted now */
	bool dirty;             /* records changed since the last commit */
	bool dir_dirty;         /* renames/unlinks in cur/ since the last commit */

	/* keywords */
	char *dkw[MD_MAX_KEYWORDS];
	bool dkw_exists;
	struct stat dkw_st;
	uint32_t used_letters;  /* a-z letters seen in file names */
	bool ckw_dirty;         /* Courier :list must be rewritten */
	struct stat ckw_st;     /* of :list */
	bool ckw_exists;
	struct stat ckwdir_st;  /* of courierimapkeywords/ (update files) */
	bool ckwdir_exists;
	char **ckw_updates;     /* pending update files merged at open */
	size_t nckw_updates;

	/* messages */
	struct mfile **msgs;    /* listed, sorted by UID */
	size_t nmsgs, amsgs;
	struct mfile **unl;     /* unlisted, sorted by base */
	size_t nunl, aunl;
	uint32_t *synced;       /* UIDs delivered or adopted since the last
	                           commit, ascending (pending ones among them) */
	size_t nsynced, asynced;
};

static const struct md_lock_spec lock_dovecot = {
	.name = MD_LOCK_DOVECOT,
	.watch_name = MD_UIDLIST_DOVECOT,
	.dead_pid_min_age_s = 2,
	.stale_s = 120,
	.stale_by_ctime = true,
};

static const struct md_lock_spec lock_courier = {
	.name = MD_LOCK_COURIER,
	.watch_name = NULL,
	.dead_pid_min_age_s = 0,
	.stale_s = 120,
	.stale_by_ctime = false,
};

static atomic_uint uniq_counter;

void
maildir_options_init(struct maildir_options *o)
{
	memset(o, 0, sizeof(*o));
	o->flavor = MAILDIR_DOVECOT;
	o->owner = (uid_t)-1;
	o->group = (gid_t)-1;
	o->file_mode = 0600;
	o->dir_mode = 0700;
	o->fsync = true;
	o->hostname = NULL;
	o->lock_timeout_ms = 30000;
}

/* ------------------------------------------------------------------ */
/* Small helpers */

static int
lockdirfd(const struct maildir_folder *f)
{
	return f->o.flavor == MAILDIR_COURIER ? f->tmpfd : f->dirfd;
}

static const char *
uidlist_name(const struct maildir_folder *f)
{
	return f->o.flavor == MAILDIR_COURIER ? MD_UIDLIST_COURIER :
	       MD_UIDLIST_DOVECOT;
}

/* The directory holding m's file now and its name there. */
static int
dirfd_of(const struct maildir_folder *f, const struct mfile *m)
{
	if (m->tmpname != NULL)
		return f->tmpfd;
	return m->pub.in_new ? f->newfd : f->curfd;
}

static const char *
fsname_of(const struct mfile *m)
{
	return m->tmpname != NULL ? m->tmpname : m->name;
}

static void
mfile_free(struct mfile *m)
{
	if (m == NULL)
		return;
	free(m->pub.base);
	free(m->pub.flags);
	free(m->pub.pop3_uidl);
	free(m->name);
	free(m->tmpname);
	free(m);
}

static void
ptr_push(void ***arr, size_t *n, size_t *alloc, void *p)
{
	if (*n == *alloc) {
		*alloc = *alloc == 0 ? 64 : *alloc * 2;
		*arr = xreallocarray(*arr, *alloc, sizeof(**arr));
	}
	(*arr)[(*n)++] = p;
}

static int
cmp_mfile_uid(const void *a, const void *b)
{
	const struct mfile *x = *(struct mfile *const *)a;
	const struct mfile *y = *(struct mfile *const *)b;

	return x->pub.uid < y->pub.uid ? -1 : x->pub.uid > y->pub.uid;
}

static int
cmp_mfile_base(const void *a, const void *b)
{
	const struct mfile *x = *(struct mfile *const *)a;
	const struct mfile *y = *(struct mfile *const *)b;

	return strcmp(x->pub.base, y->pub.base);
}

static size_t
msg_index(const struct maildir_folder *f, uint32_t uid, bool *found_r)
{
	size_t lo = 0, hi = f->nmsgs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (f->msgs[mid]->pub.uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found_r = lo < f->nmsgs && f->msgs[lo]->pub.uid == uid;
	return lo;
}

static struct mfile *
msg_lookup(const struct maildir_folder *f, uint32_t uid)
{
	bool found;
	size_t i = msg_index(f, uid, &found);

	return found ? f->msgs[i] : NULL;
}

static size_t
rec_index(const struct md_uidlist *ul, uint32_t uid, bool *found_r)
{
	size_t lo = 0, hi = ul->nrecs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (ul->recs[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found_r = lo < ul->nrecs && ul->recs[lo].uid == uid;
	return lo;
}

static void
rec_append(struct md_uidlist *ul, uint32_t uid, const char *base, const char *ext)
{
	if (ul->nrecs == ul->arecs) {
		ul->arecs = ul->arecs == 0 ? 64 : ul->arecs * 2;
		ul->recs = xreallocarray(ul->recs, ul->arecs, sizeof(*ul->recs));
	}
	ul->recs[ul->nrecs].uid = uid;
	ul->recs[ul->nrecs].base = xstrdup(base);
	ul->recs[ul->nrecs].ext = xstrdup(ext);
	ul->nrecs++;
}

static uint32_t
max_uid(const struct maildir_folder *f)
{
	return f->ul.nrecs > 0 ? f->ul.recs[f->ul.nrecs - 1].uid : 0;
}

/* Opens a fresh directory stream of a directory fd (independent offset). */
static DIR *
open_dir(int dfd)
{
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d;

	if (fd < 0)
		return NULL;
	d = fdopendir(fd);
	if (d == NULL)
		close(fd);
	return d;
}

/* ------------------------------------------------------------------ */
/* Flags <-> letters */

/* Canonical flags of a Dovecot file name. */
static char *
flags_from_letters(const struct maildir_folder *f, const char *letters,
                   const struct md_ckw_entry *ckw)
{
	unsigned int sys = 0;
	const char *kw[MD_MAX_KEYWORDS];
	size_t nkw = 0;

	for (const char *p = letters; *p != '\0'; p++) {
		switch (*p) {
		case 'D': sys |= MD_DRAFT; break;
		case 'F': sys |= MD_FLAGGED; break;
		case 'R': sys |= MD_ANSWERED; break;
		case 'S': sys |= MD_SEEN; break;
		case 'T': sys |= MD_DELETED; break;
		default:
			if (f->o.flavor == MAILDIR_DOVECOT && *p >= 'a' && *p <= 'z' &&
			    f->dkw[*p - 'a'] != NULL && nkw < MD_MAX_KEYWORDS) {
				bool dup = false;

				for (size_t i = 0; i < nkw; i++)
					dup = dup || kw[i] == f->dkw[*p - 'a'];
				if (!dup)
					kw[nkw++] = f->dkw[*p - 'a'];
			}
			break;
		}
	}
	if (ckw != NULL)
		return md_flags_format(sys, (const char *const *)ckw->kw, ckw->nkw);
	return md_flags_format(sys, kw, nkw);
}

/* Looks up or assigns the Dovecot letter of keyword name; -1 when all 26
 * are taken. New definitions set *defined_r (written by kw_flush()). */
static int
kw_letter(struct maildir_folder *f, const char *name, bool *defined_r)
{
	for (int i = 0; i < MD_MAX_KEYWORDS; i++) {
		/* Dovecot matches keyword names case-insensitively */
		if (f->dkw[i] != NULL && str_ieq(f->dkw[i], name))
			return i;
	}
	for (int i = 0; i < MD_MAX_KEYWORDS; i++) {
		/* skip letters that files use without a definition: giving them
		 * a meaning now would change those messages */
		if (f->dkw[i] == NULL && (f->used_letters & (1u << i)) == 0) {
			f->dkw[i] = xstrdup(name);
			*defined_r = true;
			return i;
		}
	}
	return -1;
}

/* Writes dovecot-keywords (under the uidlist lock). Its mtime must grow:
 * Dovecot notices changes by mtime seconds. */
static int
kw_flush(struct maildir_folder *f, const char **error_r)
{
	struct buf b;
	struct stat st;
	time_t mtime = time(NULL);
	int r;

	if (f->dkw_exists && f->dkw_st.st_mtime >= mtime)
		mtime = f->dkw_st.st_mtime + 1;
	buf_init(&b, MD_META_MAX);
	if (md_dkw_format(&b, f->dkw) < 0) {
		buf_free(&b);
		*error_r = "dovecot-keywords too large";
		return -1;
	}
	/* Dovecot uses dovecot-keywords.lock as the temp file and removes a
	 * leftover one first, relying on the uidlist lock, as we do. */
	unlinkat(f->dirfd, MD_KEYWORDS_DOVECOT ".lock", 0);
	r = md_replace_file(f->dirfd, MD_KEYWORDS_DOVECOT ".lock", true, f->dirfd,
	                    MD_KEYWORDS_DOVECOT, buf_data(&b), buf_len(&b), &f->o,
	                    mtime, error_r);
	buf_free(&b);
	if (r < 0)
		return -1;
	if (fstatat(f->dirfd, MD_KEYWORDS_DOVECOT, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		f->dkw_st = st;
		f->dkw_exists = true;
	}
	return 0;
}

/* Marks in set[] the letters of fl: system flags and (Dovecot) keyword
 * letters, assigned as needed. Keywords that cannot be stored move to
 * fl->dropped. */
static void
letters_mark(struct maildir_folder *f, struct md_flags *fl, bool set[128],
             bool *kw_defined_r)
{
	char sys[8];
	size_t j = 0;

	md_sys_letters(fl->sys, sys);
	for (const char *p = sys; *p != '\0'; p++)
		set[(unsigned char)*p] = true;
	if (f->o.flavor != MAILDIR_DOVECOT)
		return;
	for (size_t i = 0; i < fl->nkw; i++) {
		int l = kw_letter(f, fl->kw[i], kw_defined_r);

		if (l < 0) {
			if (buf_len(&fl->dropped) > 0)
				ignore_result(buf_append_str(&fl->dropped, " "));
			ignore_result(buf_append_str(&fl->dropped, fl->kw[i]));
			free(fl->kw[i]);
			continue;
		}
		set['a' + l] = true;
		fl->kw[j++] = fl->kw[i];
	}
	fl->nkw = j;
}

/* The letters of set[] plus those of old_letters the library does not
 * manage (e.g. P, undefined keyword letters), in ASCII order, into out. */
static void
letters_emit(const struct maildir_folder *f, const bool set_in[128],
             const char *old_letters, char *out)
{
	bool set[128];
	size_t n = 0;

	memcpy(set, set_in, sizeof(set));
	for (const char *p = old_letters; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c >= 'A' && c <= 'Z' && strchr("DFRST", c) == NULL)
			set[c] = true;
		else if (f->o.flavor == MAILDIR_DOVECOT && c >= 'a' && c <= 'z' &&
		         f->dkw[c - 'a'] == NULL)
			set[c] = true;
	}
	for (int c = 0; c < 128; c++) {
		if (set[c])
			out[n++] = (char)c;
	}
	out[n] = '\0';
}

static char *
take_dropped(struct md_flags *fl)
{
	if (buf_len(&fl->dropped) == 0)
		return NULL;
	return buf_take(&fl->dropped);
}

/* ------------------------------------------------------------------ */
/* Loading */

/* Unlinks the files of pending deliveries from tmp/ (never published, so
 * never seen by the server) and forgets that they were pending. Returns
 * how many there were. The messages themselves stay in the lists: the
 * caller drops them (clear_state()). */
static size_t
drop_pending(struct maildir_folder *f)
{
	size_t n = 0;

	for (size_t i = 0; i < f->nmsgs; i++) {
		struct mfile *m = f->msgs[i];

		if (m->tmpname == NULL)
			continue;
		if (unlinkat(f->tmpfd, m->tmpname, 0) < 0 && errno != ENOENT)
			log_warn("%s: unlink tmp/%s: %s", f->where, m->tmpname,
			         strerror(errno));
		XFREE(m->tmpname);
		n++;
	}
	return n;
}

static void
clear_state(struct maildir_folder *f)
{
	drop_pending(f);
	for (size_t i = 0; i < f->nmsgs; i++)
		mfile_free(f->msgs[i]);
	for (size_t i = 0; i < f->nunl; i++)
		mfile_free(f->unl[i]);
	f->nmsgs = f->nunl = 0;
	md_uidlist_free(&f->ul);
	for (size_t i = 0; i < MD_MAX_KEYWORDS; i++)
		XFREE(f->dkw[i]);
	for (size_t i = 0; i < f->nckw_updates; i++)
		free(f->ckw_updates[i]);
	XFREE(f->ckw_updates);
	f->nckw_updates = 0;
	f->nsynced = 0;
	f->have_uidlist = f->dkw_exists = f->ckw_exists = f->ckwdir_exists = false;
	f->used_letters = 0;
	f->dirty = f->dir_dirty = f->ckw_dirty = false;
}

/* Scans one of cur/ and new/ into *v. */
static int
scan_dir(struct maildir_folder *f, bool in_new, struct mfile ***v, size_t *n,
         size_t *alloc, const char **error_r)
{
	int dfd = in_new ? f->newfd : f->curfd;
	DIR *d = open_dir(dfd);
	struct dirent *de;

	if (d == NULL) {
		*error_r = err_errno(errno, "%s: reading %s/: %s", f->where, in_new ? "new" : "cur",
		                   strerror(errno));
		return -1;
	}
	while ((errno = 0, de = readdir(d)) != NULL) {
		struct stat st;
		struct mfile *m;

		if (de->d_name[0] == '.')
			continue;
		if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;       /* vanished, or a symlink: never a message */
		m = xcalloc(1, sizeof(*m));
		m->name = xstrdup(de->d_name);
		m->pub.base = xstrndup(de->d_name, md_name_base_len(de->d_name));
		m->pub.in_new = in_new;
		m->pub.mtime = (int64_t)st.st_mtime;
		m->pub.file_size = (uint64_t)st.st_size;
		m->pub.size = MAILDIR_SIZE_UNKNOWN;
		if (f->o.flavor == MAILDIR_DOVECOT &&
		    !md_name_field(m->name, 'W', &m->pub.size))
			m->pub.size = MAILDIR_SIZE_UNKNOWN;
		if (!in_new) {
			for (const char *p = md_name_letters(m->name); *p != '\0'; p++) {
				if (*p >= 'a' && *p <= 'z')
					f->used_letters |= 1u << (*p - 'a');
			}
		}
		ptr_push((void ***)v, n, alloc, m);
	}
	if (errno != 0) {
		*error_r = err_errno(errno, "%s: reading %s/: %s", f->where, in_new ? "new" : "cur",
		                   strerror(errno));
		closedir(d);
		return -1;
	}
	closedir(d);
	return 0;
}

static int
cmp_ckw_base(const void *a, const void *b)
{
	return strcmp(((const struct md_ckw_entry *)a)->base,
	              ((const struct md_ckw_entry *)b)->base);
}

/* Reads courierimapkeywords/:list and merges the per-message update files
 * (".<n>.<base>" or "<base>", the highest n or the plain name winning). */
static int
load_courier_keywords(struct maildir_folder *f, struct md_ckw *ckw,
                      const char **error_r)
{
	int kfd = openat(f->dirfd, MD_KEYWORDS_COURIER_DIR,
	                 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct buf b;
	DIR *d;
	struct dirent *de;
	struct {
		char *base, *file;
		uint64_t n;
	} *best = NULL;
	size_t nbest = 0;
	int r;

	memset(ckw, 0, sizeof(*ckw));
	if (kfd < 0)
		return 0;
	f->ckwdir_exists = fstat(kfd, &f->ckwdir_st) == 0;
	buf_init(&b, MD_META_MAX);
	r = md_read_at(kfd, ":list", &b, &f->ckw_st, error_r);
	if (r < 0) {
		buf_free(&b);
		close(kfd);
		return -1;
	}
	f->ckw_exists = r > 0;
	md_ckw_parse(buf_data(&b), buf_len(&b), ckw);

	d = open_dir(kfd);
	while (d != NULL && (de = readdir(d)) != NULL) {
		const char *base;
		uint64_t n = UINT64_MAX;
		size_t i;

		if (de->d_name[0] == ':' || strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0 || strncmp(de->d_name, ".tmp.", 5) == 0)
			continue;
		base = de->d_name;
		if (base[0] == '.') {
			const char *dot = strchr(base + 1, '.');

			if (dot == NULL ||
			    !str_to_u64(base + 1, (size_t)(dot - base - 1), UINT64_MAX - 1, &n))
				continue;
			base = dot + 1;
		}
		for (i = 0; i < nbest; i++) {
			if (strcmp(best[i].base, base) == 0)
				break;
		}
		f->ckw_updates = xreallocarray(f->ckw_updates, f->nckw_updates + 1,
		                               sizeof(*f->ckw_updates));
		f->ckw_updates[f->nckw_updates++] = xstrdup(de->d_name);
		if (i == nbest) {
			best = xreallocarray(best, nbest + 1, sizeof(*best));
			best[nbest].base = xstrdup(base);
			best[nbest].file = xstrdup(de->d_name);
			best[nbest].n = n;
			nbest++;
		} else if (n > best[i].n) {
			free(best[i].file);
			best[i].file = xstrdup(de->d_name);
			best[i].n = n;
		}
	}
	if (d != NULL)
		closedir(d);
	for (size_t i = 0; i < nbest; i++) {
		struct stat st;
		struct md_ckw_entry *e = NULL;

		if (md_read_at(kfd, best[i].file, &b, &st, error_r) > 0) {
			for (size_t j = 0; j < ckw->n; j++) {
				if (strcmp(ckw->e[j].base, best[i].base) == 0)
					e = &ckw->e[j];
			}
			if (e == NULL) {
				ckw->e = xreallocarray(ckw->e, ckw->n + 1, sizeof(*ckw->e));
				e = &ckw->e[ckw->n++];
				memset(e, 0, sizeof(*e));
				e->base = xstrdup(best[i].base);
			}
			for (size_t j = 0; j < e->nkw; j++)
				free(e->kw[j]);
			e->nkw = 0;
			{
				const char *p = buf_data(&b), *end = p + buf_len(&b);

				while (p < end) {
					const char *nl = memchr(p, '\n', (size_t)(end - p));
					const char *le = nl != NULL ? nl : end;

					if (le > p) {
						e->kw = xreallocarray(e->kw, e->nkw + 1,
						                      sizeof(*e->kw));
						e->kw[e->nkw++] = xstrndup(p, (size_t)(le - p));
					}
					p = nl != NULL ? nl + 1 : end;
				}
			}
		}
		free(best[i].base);
		free(best[i].file);
	}
	free(best);
	buf_free(&b);
	close(kfd);
	ckw->alloc = ckw->n;
	if (ckw->n > 0)
		qsort(ckw->e, ckw->n, sizeof(*ckw->e), cmp_ckw_base);
	return 0;
}

/* (Re)reads the uidlist and keywords and scans cur/ and new/. */
static int
load(struct maildir_folder *f, const char **error_r)
{
	struct mfile **scan = NULL;
	size_t nscan = 0, ascan = 0;
	struct md_ckw ckw = { 0 };
	struct buf b;
	struct stat st;
	const char *err;
	int r;

	clear_state(f);
	buf_init(&b, MD_META_MAX);
	r = md_read_at(f->dirfd, uidlist_name(f), &b, &st, &err);
	if (r < 0) {
		*error_r = err_wrap(err, "%s: %s", f->where, err);
		buf_free(&b);
		return -1;
	}
	if (r > 0) {
		if (md_uidlist_parse(buf_data(&b), buf_len(&b), &f->ul, &err) < 0) {
			*error_r = err_wrap(err, "%s/%s is corrupt (%s); not touching the folder",
			                   f->where, uidlist_name(f), err);
			buf_free(&b);
			return -1;
		}
		f->ul_st = st;
		f->have_uidlist = f->ul.version != 0;
		if (f->o.flavor == MAILDIR_COURIER && f->have_uidlist &&
		    f->ul.version != 1) {
			*error_r = err_set("%s/%s: unexpected version %d", f->where,
			                   uidlist_name(f), f->ul.version);
			buf_free(&b);
			return -1;
		}
	} else {
		memset(&f->ul_st, 0, sizeof(f->ul_st));
	}
	f->disk_maxuid = max_uid(f);
	f->floor = f->have_uidlist ? f->ul.uidnext : 1;
	if (f->disk_maxuid >= f->floor)
		f->floor = f->disk_maxuid + 1;

	if (f->o.flavor == MAILDIR_DOVECOT) {
		r = md_read_at(f->dirfd, MD_KEYWORDS_DOVECOT, &b, &f->dkw_st, &err);
		if (r < 0) {
			*error_r = err_wrap(err, "%s: %s", f->where, err);
			buf_free(&b);
			return -1;
		}
		f->dkw_exists = r > 0;
		if (r > 0)
			md_dkw_parse(buf_data(&b), buf_len(&b), f->dkw);
	} else if (load_courier_keywords(f, &ckw, &err) < 0) {
		*error_r = err_wrap(err, "%s: %s", f->where, err);
		buf_free(&b);
		return -1;
	}
	buf_free(&b);

	if (scan_dir(f, false, &scan, &nscan, &ascan, error_r) < 0 ||
	    scan_dir(f, true, &scan, &nscan, &ascan, error_r) < 0) {
		for (size_t i = 0; i < nscan; i++)
			mfile_free(scan[i]);
		free(scan);
		md_ckw_free(&ckw);
		return -1;
	}
	/* by base; a base in both cur/ and new/ keeps the cur/ one */
	if (nscan > 0)
		qsort(scan, nscan, sizeof(*scan), cmp_mfile_base);
	{
		size_t j = 0;

		for (size_t i = 0; i < nscan; i++) {
			if (j > 0 && strcmp(scan[j - 1]->pub.base, scan[i]->pub.base) == 0) {
				if (scan[j - 1]->pub.in_new && !scan[i]->pub.in_new) {
					mfile_free(scan[j - 1]);
					scan[j - 1] = scan[i];
				} else {
					mfile_free(scan[i]);
				}
				continue;
			}
			scan[j++] = scan[i];
		}
		nscan = j;
	}
	/* match uidlist lines; a later UID for the same base wins (Dovecot) */
	for (size_t i = 0; i < f->ul.nrecs; i++) {
		struct mfile key_m = { .pub.base = f->ul.recs[i].base }, *key = &key_m;
		struct mfile **hit = nscan == 0 ? NULL :
			bsearch(&key, scan, nscan, sizeof(*scan), cmp_mfile_base);
		char *w;

		if (hit == NULL)
			continue;
		(*hit)->pub.uid = f->ul.recs[i].uid;
		free((*hit)->pub.pop3_uidl);
		(*hit)->pub.pop3_uidl = md_ext_get(f->ul.recs[i].ext, 'P');
		if ((*hit)->pub.pop3_uidl != NULL && (*hit)->pub.pop3_uidl[0] == '\0') {
			free((*hit)->pub.pop3_uidl);
			(*hit)->pub.pop3_uidl = xstrdup((*hit)->pub.base);
		}
		w = md_ext_get(f->ul.recs[i].ext, 'W');
		if (w != NULL && (*hit)->pub.size == MAILDIR_SIZE_UNKNOWN &&
		    !str_to_u64z(w, UINT64_MAX, &(*hit)->pub.size))
			(*hit)->pub.size = MAILDIR_SIZE_UNKNOWN;
		free(w);
	}
	for (size_t i = 0; i < nscan; i++) {
		struct mfile *m = scan[i];
		const struct md_ckw_entry *e = NULL;

		if (f->o.flavor == MAILDIR_COURIER) {
			struct md_ckw_entry key = { .base = m->pub.base };

			e = ckw.n == 0 ? NULL :
				bsearch(&key, ckw.e, ckw.n, sizeof(*ckw.e), cmp_ckw_base);
		}
		m->pub.flags = flags_from_letters(f, m->pub.in_new ? "" :
		                                  md_name_letters(m->name), e);
		if (m->pub.uid != 0)
			ptr_push((void ***)&f->msgs, &f->nmsgs, &f->amsgs, m);
		else
			ptr_push((void ***)&f->unl, &f->nunl, &f->aunl, m);
	}
	free(scan);
	md_ckw_free(&ckw);
	if (f->nmsgs > 0)
		qsort(f->msgs, f->nmsgs, sizeof(*f->msgs), cmp_mfile_uid);
	return 0;
}

/* true if the uidlist or keywords file changed since load(). */
static bool
meta_changed(const struct maildir_folder *f)
{
	struct stat st;
	bool exists;

	exists = fstatat(f->dirfd, uidlist_name(f), &st, AT_SYMLINK_NOFOLLOW) == 0;
	if (exists != f->have_uidlist ||
	    (exists && (st.st_ino != f->ul_st.st_ino || st.st_size != f->ul_st.st_size ||
	                st.st_mtim.tv_sec != f->ul_st.st_mtim.tv_sec ||
	                st.st_mtim.tv_nsec != f->ul_st.st_mtim.tv_nsec)))
		return true;
	if (f->o.flavor == MAILDIR_DOVECOT) {
		exists = fstatat(f->dirfd, MD_KEYWORDS_DOVECOT, &st,
		                 AT_SYMLINK_NOFOLLOW) == 0;
		if (exists != f->dkw_exists ||
		    (exists && (st.st_ino != f->dkw_st.st_ino ||
		                st.st_size != f->dkw_st.st_size ||
		                st.st_mtim.tv_sec != f->dkw_st.st_mtim.tv_sec)))
			return true;
	} else {
		/* :list is replaced by rename and update files are added, both
		 * change the directory */
		exists = fstatat(f->dirfd, MD_KEYWORDS_COURIER_DIR, &st,
		                 AT_SYMLINK_NOFOLLOW) == 0;
		if (exists != f->ckwdir_exists ||
		    (exists && (st.st_ino != f->ckwdir_st.st_ino ||
		                st.st_mtim.tv_sec != f->ckwdir_st.st_mtim.tv_sec ||
		                st.st_mtim.tv_nsec != f->ckwdir_st.st_mtim.tv_nsec)))
			return true;
	}
	return false;
}

static int
ensure_locked(struct maildir_folder *f, const char **error_r)
{
	if (f->lock.fd >= 0) {
		md_lock_touch(&f->lock);
		return 0;
	}
	if (md_lock_take(lockdirfd(f), f->dirfd, f->lockspec, &f->lock, &f->o,
	                 f->o.lock_timeout_ms, f->where, error_r) < 0)
		return -1;
	/* Writers change the uidlist only under this lock: what we read now
	 * stays valid until we release it. */
	if (meta_changed(f)) {
		/* Only a failed commit leaves changes behind without the
		 * lock. Its pending deliveries may no longer fit the floor
		 * the server left: they are dropped from tmp/ (copied again
		 * by the next run). */
		size_t n = drop_pending(f);

		if (f->dirty)
			log_warn("%s: the server changed the folder since the last "
			         "failed commit; %zu uncommitted deliveries dropped",
			         f->where, n);
		if (load(f, error_r) < 0) {
			md_lock_release(lockdirfd(f), f->lockspec, &f->lock);
			return -1;
		}
	}
	return 0;
}

int
maildir_folder_lock(struct maildir_folder *f, const char **error_r)
{
	return ensure_locked(f, error_r);
}

/* ------------------------------------------------------------------ */
/* Open / close */

/* mkdir -p of the trusted root path; created directories get the owner. */
static int
mkdir_parents(const char *path, const struct maildir_options *o,
              const char **error_r)
{
	char *p = xstrdup(path);
	size_t len = strlen(p);

	for (size_t i = 1; i <= len; i++) {
		if (p[i] != '/' && p[i] != '\0')
			continue;
		p[i] = '\0';
		if (mkdir(p, o->dir_mode) == 0) {
			int fd = open(p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			if (fd < 0 || md_fix_owner(fd, o, o->dir_mode, p, error_r) < 0) {
				if (fd < 0)
					*error_r = err_errno(errno, "open %s: %s", p, strerror(errno));
				else
					close(fd);
				free(p);
				return -1;
			}
			close(fd);
		} else if (errno != EEXIST) {
			*error_r = err_errno(errno, "mkdir %s: %s", p, strerror(errno));
			free(p);
			return -1;
		}
		if (i < len)
			p[i] = '/';
	}
	free(p);
	return 0;
}

static bool
dirname_ok(const char *d)
{
	size_t len = strlen(d);

	if (len == 0)
		return true;
	return d[0] == '.' && strcmp(d, ".") != 0 && strcmp(d, "..") != 0 &&
	       strchr(d, '/') == NULL && len <= MAILDIR_DIRNAME_MAX;
}

/* Skips "<digits>" at *p; false if there is none. */
static bool
skip_digits(const char **p, unsigned long *value_r)
{
	const char *s = *p;
	unsigned long v = 0;

	while (*s >= '0' && *s <= '9')
		v = v * 10 + (unsigned long)(*s++ - '0');
	if (s == *p)
		return false;
	*p = s;
	if (value_r != NULL)
		*value_r = v;
	return true;
}

/* Removes from tmp/ what a killed writer on this host left: files named as
 * deliver() and the Courier commit name their temp files
 * ("<secs>.M<usec>P<pid>Q<n>.<host>", "<secs>.<pid>_kw.<host>",
 * "<secs>.<pid>_uiddb.<host>") whose pid is gone. Live writers (ours,
 * Dovecot's LDA, which uses the same pattern) are left alone. */
static void
cleanup_tmp(struct maildir_folder *f)
{
	DIR *d = open_dir(f->tmpfd);
	struct dirent *de;

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		const char *p = de->d_name;
		unsigned long pid = 0;

		if (!skip_digits(&p, NULL) || *p++ != '.')
			continue;
		if (*p == 'M') {
			p++;
			if (!skip_digits(&p, NULL) || *p++ != 'P' ||
			    !skip_digits(&p, &pid) || *p++ != 'Q' ||
			    !skip_digits(&p, NULL))
				continue;
		} else {
			if (!skip_digits(&p, &pid))
				continue;
			if (strncmp(p, "_kw", 3) == 0)
				p += 3;
			else if (strncmp(p, "_uiddb", 6) == 0)
				p += 6;
			else
				continue;
		}
		if (*p++ != '.' || strcmp(p, f->hostname) != 0 || pid == 0 ||
		    pid > (unsigned long)INT32_MAX || (pid_t)pid == getpid() ||
		    kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		if (unlinkat(f->tmpfd, de->d_name, 0) == 0)
			log_debug("%s: removed tmp/%s left by a killed writer", f->where,
			          de->d_name);
	}
	closedir(d);
}

int
maildir_folder_open(const char *root, const char *dirname,
                    const struct maildir_options *o, bool create,
                    struct maildir_folder **f_r, const char **error_r)
{
	struct maildir_folder *f;
	char host[256];
	const char *err;
	bool created = false, c2;

	*f_r = NULL;
	if (!dirname_ok(dirname)) {
		*error_r = err_set("invalid Maildir++ folder directory \"%.100s\"", dirname);
		return -1;
	}
	f = xcalloc(1, sizeof(*f));
	if (o != NULL)
		f->o = *o;
	else
		maildir_options_init(&f->o);
	if (f->o.file_mode == 0)
		f->o.file_mode = 0600;
	if (f->o.dir_mode == 0)
		f->o.dir_mode = 0700;
	if (f->o.lock_timeout_ms == 0)
		f->o.lock_timeout_ms = 30000;
	if (f->o.hostname == NULL || f->o.hostname[0] == '\0') {
		if (gethostname(host, sizeof(host)) < 0)
			str_copy(host, "localhost", sizeof(host));
		host[sizeof(host) - 1] = '\0';
		f->hostname = md_host_escape(host);
	} else {
		f->hostname = md_host_escape(f->o.hostname);
	}
	f->o.hostname = NULL;   /* not kept: the caller owns it */
	f->dirname = xstrdup(dirname);
	f->where = dirname[0] == '\0' ? xstrdup(root) : xasprintf("%s/%s", root, dirname);
	f->rootfd = f->dirfd = f->curfd = f->newfd = f->tmpfd = -1;
	f->lock.fd = -1;
	f->lockspec = f->o.flavor == MAILDIR_COURIER ? &lock_courier : &lock_dovecot;

	if (create && mkdir_parents(root, &f->o, &err) < 0) {
		*error_r = err_wrap(err, "%s", err);
		goto fail;
	}
	f->rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (f->rootfd < 0) {
		*error_r = err_errno(errno, "open %s: %s", root, strerror(errno));
		goto fail;
	}
	if (dirname[0] == '\0') {
		f->dirfd = fcntl(f->rootfd, F_DUPFD_CLOEXEC, 0);
	} else {
		f->dirfd = md_mkdir_open(f->rootfd, dirname, &f->o, create, &created, &err);
		if (f->dirfd < 0) {
			*error_r = err_wrap(err, "%s: %s", root, err);
			goto fail;
		}
	}
	f->created = created;
	f->curfd = md_mkdir_open(f->dirfd, "cur", &f->o, create, &c2, &err);
	f->created = f->created || (f->curfd >= 0 && c2);
	if (f->curfd >= 0)
		f->newfd = md_mkdir_open(f->dirfd, "new", &f->o, create, &c2, &err);
	if (f->newfd >= 0)
		f->tmpfd = md_mkdir_open(f->dirfd, "tmp", &f->o, create, &c2, &err);
	if (f->tmpfd < 0) {
		*error_r = err_wrap(err, "%s: not a Maildir folder: %s", f->where, err);
		goto fail;
	}
	if (create && dirname[0] != '\0') {
		int fd = openat(f->dirfd, "maildirfolder",
		                O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		                f->o.file_mode);

		if (fd >= 0) {
			int r = md_fix_owner(fd, &f->o, f->o.file_mode, "maildirfolder", &err);

			close(fd);
			if (r < 0) {
				*error_r = err_wrap(err, "%s: %s", f->where, err);
				goto fail;
			}
		} else if (errno != EEXIST) {
			*error_r = err_errno(errno, "%s: create maildirfolder: %s", f->where,
			                   strerror(errno));
			goto fail;
		}
	}
	if (load(f, error_r) < 0)
		goto fail;
	if (create)
		cleanup_tmp(f);
	*f_r = f;
	return 0;
fail:
	maildir_folder_close(&f);
	return -1;
}

void
maildir_folder_close(struct maildir_folder **fp)
{
	struct maildir_folder *f = *fp;

	if (f == NULL)
		return;
	*fp = NULL;
	/* uncommitted deliveries were never published: remove them while
	 * still holding the lock */
	drop_pending(f);
	if (f->lock.fd >= 0)
		md_lock_release(lockdirfd(f), f->lockspec, &f->lock);
	clear_state(f);
	free(f->msgs);
	free(f->unl);
	free(f->synced);
	if (f->tmpfd >= 0)
		close(f->tmpfd);
	if (f->newfd >= 0)
		close(f->newfd);
	if (f->curfd >= 0)
		close(f->curfd);
	if (f->dirfd >= 0)
		close(f->dirfd);
	if (f->rootfd >= 0)
		close(f->rootfd);
	free(f->hostname);
	free(f->dirname);
	free(f->where);
	free(f);
}

/* ------------------------------------------------------------------ */
/* Accessors */

uint32_t
maildir_folder_uidvalidity(const struct maildir_folder *f)
{
	if (f->set_v != 0)
		return f->set_v;
	return f->have_uidlist ? f->ul.uidvalidity : 0;
}

uint32_t
maildir_folder_uidnext(const struct maildir_folder *f)
{
	uint32_t n = f->set_n;

	if (f->have_uidlist && f->ul.uidnext > n)
		n = f->ul.uidnext;
	if (max_uid(f) >= n)
		n = max_uid(f) + 1;
	return n;
}

uint32_t
maildir_folder_min_uid(const struct maildir_folder *f)
{
	return f->floor;
}

const char *
maildir_folder_name(const struct maildir_folder *f)
{
	return f->dirname;
}

size_t
maildir_folder_count(const struct maildir_folder *f)
{
	return f->nmsgs;
}

const struct maildir_msg *
maildir_folder_msg(const struct maildir_folder *f, size_t i)
{
	return i < f->nmsgs ? &f->msgs[i]->pub : NULL;
}

const struct maildir_msg *
maildir_folder_find(const struct maildir_folder *f, uint32_t uid)
{
	struct mfile *m = msg_lookup(f, uid);

	return m != NULL ? &m->pub : NULL;
}

size_t
maildir_folder_unlisted_count(const struct maildir_folder *f)
{
	return f->nunl;
}

const struct maildir_msg *
maildir_folder_unlisted(const struct maildir_folder *f, size_t i)
{
	return i < f->nunl ? &f->unl[i]->pub : NULL;
}

int
maildir_folder_set_uids(struct maildir_folder *f, uint32_t uidvalidity,
                        uint32_t uidnext, const char **error_r)
{
	if (uidvalidity == 0) {
		*error_r = "UIDVALIDITY 0 is invalid";
		return -1;
	}
	if (f->have_uidlist && f->ul.uidvalidity != uidvalidity) {
		*error_r = err_set("%s already has UIDVALIDITY %u (asked for %u); "
		                   "use a new folder", f->where, f->ul.uidvalidity,
		                   uidvalidity);
		return -1;
	}
	if (uidnext != 0 && uidnext < maildir_folder_uidnext(f)) {
		*error_r = err_set("%s: UIDNEXT %u is below the folder's %u", f->where,
		                   uidnext, maildir_folder_uidnext(f));
		return -1;
	}
	f->set_v = uidvalidity;
	if (uidnext != 0)
		f->set_n = uidnext;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Delivery */

/* Counts and (Courier) converts a message as it is written. */
struct writer {
	int fd;
	bool courier;
	bool last_cr;           /* last byte written was CR */
	bool held_cr;           /* Courier: a CR waiting to see if LF follows */
	uint64_t out_len, lfs, bare_lfs;
	size_t blen;
	char buf[65536];
};

static int
writer_flush(struct writer *w)
{
	if (w->blen > 0 && md_write_all(w->fd, w->buf, w->blen) < 0)
		return -1;
	w->blen = 0;
	return 0;
}

static void
count_bytes(struct writer *w, const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '\n') {
			w->lfs++;
			if (!w->last_cr)
				w->bare_lfs++;
		}
		w->last_cr = p[i] == '\r';
	}
	w->out_len += len;
}

static int
writer_emit(struct writer *w, char c)
{
	if (w->blen == sizeof(w->buf) && writer_flush(w) < 0)
		return -1;
	w->buf[w->blen++] = c;
	count_bytes(w, &c, 1);
	return 0;
}

static int
writer_put(struct writer *w, const char *p, size_t len)
{
	if (!w->courier) {
		count_bytes(w, p, len);
		return md_write_all(w->fd, p, len);
	}
	for (size_t i = 0; i < len; i++) {
		char c = p[i];

		if (w->held_cr) {
			w->held_cr = false;
			if (c == '\n') {
				if (writer_emit(w, '\n') < 0)
					return -1;
				continue;
			}
			if (writer_emit(w, '\r') < 0)
				return -1;
		}
		if (c == '\r') {
			w->held_cr = true;
			continue;
		}
		if (writer_emit(w, c) < 0)
			return -1;
	}
	return 0;
}

static int
writer_finish(struct writer *w)
{
	if (w->held_cr) {
		w->held_cr = false;
		if (writer_emit(w, '\r') < 0)
			return -1;
	}
	return writer_flush(w);
}

static bool
pop3_uidl_valid(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > MD_POP3_UIDL_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return false;
	}
	return true;
}

static int
check_new_uid(struct maildir_folder *f, uint32_t uid, const char **error_r)
{
	if (uid == 0 || uid == UINT32_MAX) {
		*error_r = err_set("%s: invalid UID %u", f->where, uid);
		return -1;
	}
	if (uid < f->floor) {
		*error_r = err_set("%s: UID %u is below the lowest UID the folder "
		                   "accepts (%u): the server may already have used it",
		                   f->where, uid, f->floor);
		return -1;
	}
	return 0;
}

/* Records a listed message with a new UID (uid >= floor). */
static void
add_listed(struct maildir_folder *f, struct mfile *m, const char *ext)
{
	ptr_push((void ***)&f->msgs, &f->nmsgs, &f->amsgs, m);
	rec_append(&f->ul, m->pub.uid, m->pub.base, ext);
	f->floor = m->pub.uid + 1;
	f->dirty = true;
	if (f->nsynced == f->asynced) {
		f->asynced = f->asynced == 0 ? 64 : f->asynced * 2;
		f->synced = xreallocarray(f->synced, f->asynced, sizeof(*f->synced));
	}
	f->synced[f->nsynced++] = m->pub.uid;
}

/* Records the file tmp/uniq (file_size bytes on disk, RFC822.SIZE size)
 * as a pending delivery of uid: its final name, flags and uidlist line.
 * On failure the caller removes tmp/uniq. */
static int relocate(struct maildir_folder *f, struct mfile *m);

static int
register_pending(struct maildir_folder *f, uint32_t uid, const char *uniq,
                 const char *flags, int64_t internaldate, uint64_t file_size,
                 uint64_t size, const char *pop3_uidl, char **dropped_r,
                 const char **error_r)
{
	struct md_flags fl;
	char letters[130], *base, *name;
	bool set[128] = { false };
	bool kw_defined = false, courier = f->o.flavor == MAILDIR_COURIER;
	struct mfile *m;

	md_flags_init(&fl);
	md_flags_parse(&fl, flags != NULL ? flags : "");
	letters_mark(f, &fl, set, &kw_defined);
	letters_emit(f, set, "", letters);
	if (kw_defined && kw_flush(f, error_r) < 0) {
		md_flags_free(&fl);
		return -1;
	}
	if (courier)
		base = xasprintf("%s,S=%llu", uniq, (unsigned long long)file_size);
	else
		base = xasprintf("%s,S=%llu,W=%llu", uniq,
		                 (unsigned long long)file_size,
		                 (unsigned long long)size);
	name = xasprintf("%s:2,%s", base, letters);
	/* The file stays in tmp/ until commit renames it into cur/ right
	 * before the uidlist that lists it: a server never sees it without
	 * its line, even if we are killed now and it breaks our lock. */
	m = xcalloc(1, sizeof(*m));
	m->name = name;
	m->tmpname = xstrdup(uniq);
	m->pub.uid = uid;
	m->pub.base = base;
	m->pub.flags = courier ?
		md_flags_format(fl.sys, (const char *const *)fl.kw, fl.nkw) :
		flags_from_letters(f, letters, NULL);
	m->pub.mtime = internaldate;
	m->pub.file_size = file_size;
	m->pub.size = size;
	m->pub.pop3_uidl = pop3_uidl != NULL ? xstrdup(pop3_uidl) : NULL;
	{
		char *ext = pop3_uidl != NULL ? xasprintf("P%s", pop3_uidl) : xstrdup("");

		add_listed(f, m, ext);
		free(ext);
	}
	if (courier && fl.nkw > 0)
		f->ckw_dirty = true;
	if (dropped_r != NULL)
		*dropped_r = take_dropped(&fl);
	md_flags_free(&fl);
	return 0;
}

static int
deliver(struct maildir_folder *f, uint32_t uid, const char *flags,
        int64_t internaldate, const void *data, int in_fd, uint64_t len,
        const char *pop3_uidl, char **dropped_r, const char **error_r)
{
	struct writer *w = NULL;
	struct timespec now;
	char uniq[512];
	bool courier = f->o.flavor == MAILDIR_COURIER;
	int fd = -1;
	time_t secs;

	if (dropped_r != NULL)
		*dropped_r = NULL;
	if (check_new_uid(f, uid, error_r) < 0)
		return -1;
	if (pop3_uidl != NULL && !pop3_uidl_valid(pop3_uidl)) {
		*error_r = err_set("%s: UID %u: invalid POP3 UIDL (printable ASCII "
		                   "without space, 1-255 bytes)", f->where, uid);
		return -1;
	}
	if (ensure_locked(f, error_r) < 0)
		return -1;
	if (check_new_uid(f, uid, error_r) < 0)      /* floor may have moved */
		return -1;

	clock_gettime(CLOCK_REALTIME, &now);
	secs = internaldate > 0 ? (time_t)internaldate : now.tv_sec;
	for (int tries = 0; fd < 0; tries++) {
		snprintf(uniq, sizeof(uniq), "%lld.M%ldP%ldQ%u.%s", (long long)secs,
		         now.tv_nsec / 1000, (long)getpid(),
		         atomic_fetch_add(&uniq_counter, 1) + 1, f->hostname);
		fd = openat(f->tmpfd, uniq, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
		            O_CLOEXEC, f->o.file_mode);
		if (fd < 0 && (errno != EEXIST || tries >= 10)) {
			*error_r = err_errno(errno, "%s: create tmp/%s: %s", f->where, uniq,
			                   strerror(errno));
			return -1;
		}
	}
	if (md_fix_owner(fd, &f->o, f->o.file_mode, uniq, error_r) < 0)
		goto fail;

	w = xmalloc(sizeof(*w));
	memset(w, 0, offsetof(struct writer, buf));
	w->fd = fd;
	w->courier = courier;
	if (data != NULL) {
		if (writer_put(w, data, (size_t)len) < 0)
			goto write_error;
	} else {
		char *chunk = xmalloc(65536);
		uint64_t left = len;

		while (left > 0) {
			ssize_t n = read(in_fd, chunk, left < 65536 ? (size_t)left : 65536);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				*error_r = n == 0 ?
					err_set("%s: UID %u: source ended after %llu of %llu bytes",
					        f->where, uid, (unsigned long long)(len - left),
					        (unsigned long long)len) :
					err_errno(errno, "%s: UID %u: reading the source: %s", f->where,
					        uid, strerror(errno));
				free(chunk);
				goto fail;
			}
			if (writer_put(w, chunk, (size_t)n) < 0) {
				free(chunk);
				goto write_error;
			}
			left -= (uint64_t)n;
		}
		free(chunk);
	}
	if (writer_finish(w) < 0)
		goto write_error;
	{
		struct timespec ts[2] = { { (time_t)internaldate, 0 },
		                          { (time_t)internaldate, 0 } };

		if (futimens(fd, ts) < 0) {
			*error_r = err_errno(errno, "%s: utime tmp/%s: %s", f->where, uniq,
			                   strerror(errno));
			goto fail;
		}
	}
	/* close() can report a deferred write error (NFS, quota) */
	if (close(fd) < 0) {
		fd = -1;
		goto write_error;
	}
	fd = -1;

	if (register_pending(f, uid, uniq, flags, internaldate, w->out_len,
	                     w->out_len + (courier ? w->lfs : w->bare_lfs),
	                     pop3_uidl, dropped_r, error_r) < 0)
		goto fail;
	free(w);
	return 0;

write_error:
	*error_r = err_errno(errno, "%s: write tmp/%s: %s", f->where, uniq, strerror(errno));
fail:
	if (fd >= 0)
		close(fd);
	unlinkat(f->tmpfd, uniq, 0);
	free(w);
	return -1;
}

int
maildir_deliver(struct maildir_folder *f, uint32_t uid, const char *flags,
                int64_t internaldate, const void *data, size_t len,
                const char *pop3_uidl, char **dropped_r, const char **error_r)
{
	if (data == NULL && len > 0) {
		if (dropped_r != NULL)
			*dropped_r = NULL;
		*error_r = "maildir_deliver: NULL data";
		return -1;
	}
	return deliver(f, uid, flags, internaldate, data != NULL ? data : "", -1,
	               len, pop3_uidl, dropped_r, error_r);
}

int
maildir_deliver_fd(struct maildir_folder *f, uint32_t uid, const char *flags,
                   int64_t internaldate, int fd, uint64_t len,
                   const char *pop3_uidl, char **dropped_r, const char **error_r)
{
	return deliver(f, uid, flags, internaldate, NULL, fd, len, pop3_uidl,
	               dropped_r, error_r);
}

int
maildir_link_in(struct maildir_folder *f, struct maildir_folder *from,
                uint32_t uid, char **dropped_r, const char **error_r)
{
	struct mfile *sm = msg_lookup(from, uid);
	struct timespec now;
	char uniq[512], *flags, *uidl;
	uint64_t size;
	int ret;

	if (dropped_r != NULL)
		*dropped_r = NULL;
	if (sm == NULL) {
		*error_r = err_set("%s: no message with UID %u", from->where, uid);
		return -1;
	}
	if (from->o.flavor != f->o.flavor) {
		*error_r = err_set("%s: cannot take a message of a Maildir of "
		                   "another flavor", f->where);
		return -1;
	}
	if (maildir_msg_size(from, uid, &size, error_r) < 0)
		return -1;
	sm = msg_lookup(from, uid);
	if (sm == NULL) {
		*error_r = err_set("%s: UID %u vanished", from->where, uid);
		return -1;
	}
	if (check_new_uid(f, uid, error_r) < 0 || ensure_locked(f, error_r) < 0 ||
	    check_new_uid(f, uid, error_r) < 0)
		return -1;
	clock_gettime(CLOCK_REALTIME, &now);
	for (int tries = 0;; tries++) {
		snprintf(uniq, sizeof(uniq), "%lld.M%ldP%ldQ%u.%s",
		         (long long)(sm->pub.mtime > 0 ? sm->pub.mtime : now.tv_sec),
		         now.tv_nsec / 1000, (long)getpid(),
		         atomic_fetch_add(&uniq_counter, 1) + 1, f->hostname);
		if (linkat(dirfd_of(from, sm), fsname_of(sm), f->tmpfd, uniq, 0) == 0)
			break;
		if (errno == ENOENT && tries == 0 && sm->tmpname == NULL &&
		    relocate(from, sm) == 0)
			continue;       /* renamed meanwhile (flags): once more */
		if (errno != EEXIST || tries >= 10) {
			*error_r = err_errno(errno, "%s: link %s/%s into tmp/: %s", f->where,
			                   from->where, fsname_of(sm), strerror(errno));
			return -1;
		}
	}
	/* copies: register_pending() may change from's keyword state only
	 * through f, but sm's strings must outlive no call on from */
	flags = xstrdup(sm->pub.flags);
	uidl = sm->pub.pop3_uidl != NULL ? xstrdup(sm->pub.pop3_uidl) : NULL;
	ret = register_pending(f, uid, uniq, flags, sm->pub.mtime,
	                       sm->pub.file_size, size, uidl, dropped_r, error_r);
	if (ret < 0)
		unlinkat(f->tmpfd, uniq, 0);
	free(flags);
	free(uidl);
	return ret;
}

static int
remove_files_in(int dfd, const char *where, const char **error_r)
{
	DIR *d = open_dir(dfd);
	struct dirent *de;
	int ret = 0;

	if (d == NULL) {
		*error_r = err_errno(errno, "%s: %s", where, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (unlinkat(dfd, de->d_name, 0) < 0 && errno != ENOENT) {
			*error_r = err_errno(errno, "%s: unlink %s: %s", where, de->d_name,
			                   strerror(errno));
			ret = -1;
		}
	}
	closedir(d);
	return ret;
}

int
maildir_folder_remove(const char *root, const char *dirname,
                      const char **error_r)
{
	static const char *const subdirs[] = {
		"cur", "new", "tmp", "courierimapkeywords",
	};
	int rootfd, dfd, ret = 0;
	const char *err;

	if (dirname[0] == '\0' || !dirname_ok(dirname)) {
		*error_r = err_set("refusing to remove Maildir folder \"%.100s\"",
		                   dirname);
		return -1;
	}
	rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0) {
		*error_r = err_errno(errno, "open %s: %s", root, strerror(errno));
		return -1;
	}
	dfd = md_mkdir_open(rootfd, dirname, NULL, false, NULL, &err);
	if (dfd < 0) {
		bool gone = errno == ENOENT;

		close(rootfd);
		if (gone)
			return 0;
		*error_r = err_wrap(err, "%s: %s", root, err);
		return -1;
	}
	for (size_t i = 0; i < N_ELEMENTS(subdirs) && ret == 0; i++) {
		int sfd = openat(dfd, subdirs[i], O_RDONLY | O_DIRECTORY |
		                 O_NOFOLLOW | O_CLOEXEC);

		if (sfd < 0)
			continue;
		ret = remove_files_in(sfd, subdirs[i], error_r);
		close(sfd);
		if (ret == 0 && unlinkat(dfd, subdirs[i], AT_REMOVEDIR) < 0) {
			*error_r = err_errno(errno, "%s/%s: rmdir %s: %s", root, dirname,
			                   subdirs[i], strerror(errno));
			ret = -1;
		}
	}
	if (ret == 0)
		ret = remove_files_in(dfd, dirname, error_r);
	close(dfd);
	if (ret == 0 && unlinkat(rootfd, dirname, AT_REMOVEDIR) < 0) {
		*error_r = err_errno(errno, "%s: rmdir %s: %s", root, dirname, strerror(errno));
		ret = -1;
	}
	close(rootfd);
	return ret;
}

/* ------------------------------------------------------------------ */
/* Flag changes, expunges, unlisted files */

/* Finds the current name of m's base after a rename by someone else.
 * A pending delivery in tmp/ is never renamed by others: -1. */
static int
relocate(struct maildir_folder *f, struct mfile *m)
{
	size_t blen = strlen(m->pub.base);

	if (m->tmpname != NULL)
		return -1;

	for (int pass = 0; pass < 2; pass++) {
		bool in_new = pass == 1;
		DIR *d = open_dir(in_new ? f->newfd : f->curfd);
		struct dirent *de;

		if (d == NULL)
			continue;
		while ((de = readdir(d)) != NULL) {
			if (strncmp(de->d_name, m->pub.base, blen) == 0 &&
			    (de->d_name[blen] == '\0' || de->d_name[blen] == ':')) {
				free(m->name);
				m->name = xstrdup(de->d_name);
				m->pub.in_new = in_new;
				closedir(d);
				return 0;
			}
		}
		closedir(d);
	}
	return -1;
}

int
maildir_set_flags(struct maildir_folder *f, uint32_t uid, const char *flags,
                  char **dropped_r, const char **error_r)
{
	struct md_flags fl;
	struct mfile *m;
	char letters[130], *name;
	bool set[128] = { false };
	bool kw_defined = false;
	int r = -1;

	if (dropped_r != NULL)
		*dropped_r = NULL;
	if (ensure_locked(f, error_r) < 0)
		return -1;
	m = msg_lookup(f, uid);
	if (m == NULL) {
		*error_r = err_set("%s: no message with UID %u", f->where, uid);
		return -1;
	}
	md_flags_init(&fl);
	md_flags_parse(&fl, flags != NULL ? flags : "");
	letters_mark(f, &fl, set, &kw_defined);
	if (kw_defined && kw_flush(f, error_r) < 0)
		goto out;
	for (int tries = 0; ; tries++) {
		letters_emit(f, set, m->pub.in_new ? "" : md_name_letters(m->name),
		             letters);
		name = xasprintf("%s:2,%s", m->pub.base, letters);
		if (!m->pub.in_new && strcmp(name, m->name) == 0) {
			free(name);
			break;
		}
		if (m->tmpname != NULL) {
			/* pending: only the name commit gives it changes */
			free(m->name);
			m->name = name;
			break;
		}
		if (renameat(dirfd_of(f, m), m->name, f->curfd, name) == 0) {
			free(m->name);
			m->name = name;
			m->pub.in_new = false;
			f->dir_dirty = true;
			break;
		}
		free(name);
		/* renamed by the server meanwhile: find it, keep its letters */
		if (errno != ENOENT || tries > 0 || relocate(f, m) < 0) {
			*error_r = err_set("%s: UID %u: rename %s: %s", f->where, uid,
			                   m->name, errno == ENOENT ?
			                   "the file vanished" : strerror(errno));
			goto out;
		}
	}
	if (f->o.flavor == MAILDIR_COURIER) {
		/* any change of the keyword part rewrites :list at commit */
		char *nf = md_flags_format(fl.sys, (const char *const *)fl.kw, fl.nkw);

		if (strcmp(nf, m->pub.flags) != 0)
			f->ckw_dirty = true;
		free(m->pub.flags);
		m->pub.flags = nf;
	} else {
		free(m->pub.flags);
		m->pub.flags = flags_from_letters(f, letters, NULL);
	}
	if (dropped_r != NULL)
		*dropped_r = take_dropped(&fl);
	r = 0;
out:
	md_flags_free(&fl);
	return r;
}

static bool
flags_have_keywords(const char *flags)
{
	for (const char *p = flags; *p != '\0'; ) {
		if (*p != '\\' && *p != ' ')
			return true;
		while (*p != '\0' && *p != ' ')
			p++;
		while (*p == ' ')
			p++;
	}
	return false;
}

/* Unlinks m's file; a file already gone is fine. */
static int
unlink_mfile(struct maildir_folder *f, struct mfile *m, const char **error_r)
{
	if (m->tmpname != NULL) {
		/* pending: never published, nothing in cur/ changes */
		if (unlinkat(f->tmpfd, m->tmpname, 0) < 0 && errno != ENOENT) {
			*error_r = err_errno(errno, "%s: unlink tmp/%s: %s", f->where,
			                   m->tmpname, strerror(errno));
			return -1;
		}
		XFREE(m->tmpname);
		return 0;
	}
	if (unlinkat(dirfd_of(f, m), m->name, 0) == 0 ||
	    (errno == ENOENT &&
	     (relocate(f, m) < 0 || unlinkat(dirfd_of(f, m), m->name, 0) == 0 ||
	      errno == ENOENT))) {
		f->dir_dirty = true;
		if (f->o.flavor == MAILDIR_COURIER && flags_have_keywords(m->pub.flags))
			f->ckw_dirty = true;
		return 0;
	}
	*error_r = err_errno(errno, "%s: unlink %s: %s", f->where, m->name, strerror(errno));
	return -1;
}

int
maildir_expunge(struct maildir_folder *f, uint32_t uid, const char **error_r)
{
	bool found;
	size_t i;

	if (ensure_locked(f, error_r) < 0)
		return -1;
	i = msg_index(f, uid, &found);
	if (!found) {
		*error_r = err_set("%s: no message with UID %u", f->where, uid);
		return -1;
	}
	if (unlink_mfile(f, f->msgs[i], error_r) < 0)
		return -1;
	mfile_free(f->msgs[i]);
	memmove(&f->msgs[i], &f->msgs[i + 1], (f->nmsgs - i - 1) * sizeof(*f->msgs));
	f->nmsgs--;
	i = rec_index(&f->ul, uid, &found);
	if (found) {
		free(f->ul.recs[i].base);
		free(f->ul.recs[i].ext);
		memmove(&f->ul.recs[i], &f->ul.recs[i + 1],
		        (f->ul.nrecs - i - 1) * sizeof(*f->ul.recs));
		f->ul.nrecs--;
		f->dirty = true;
	}
	return 0;
}

static void
unlisted_remove(struct maildir_folder *f, size_t i)
{
	memmove(&f->unl[i], &f->unl[i + 1], (f->nunl - i - 1) * sizeof(*f->unl));
	f->nunl--;
}

/* Takes the lock and returns the index of unlisted file i as it was before:
 * taking the lock may re-read the folder and shift the list. */
static int
unlisted_locked(struct maildir_folder *f, size_t i, size_t *idx_r,
                const char **error_r)
{
	char *base;

	if (i >= f->nunl) {
		*error_r = "no such unlisted file";
		return -1;
	}
	base = xstrdup(f->unl[i]->pub.base);
	if (ensure_locked(f, error_r) < 0) {
		free(base);
		return -1;
	}
	for (size_t j = 0; j < f->nunl; j++) {
		if (strcmp(f->unl[j]->pub.base, base) == 0) {
			*idx_r = j;
			free(base);
			return 0;
		}
	}
	*error_r = err_set("%s: %s is no longer unlisted", f->where, base);
	free(base);
	return -1;
}

int
maildir_unlisted_expunge(struct maildir_folder *f, size_t i, const char **error_r)
{
	if (unlisted_locked(f, i, &i, error_r) < 0 ||
	    unlink_mfile(f, f->unl[i], error_r) < 0)
		return -1;
	mfile_free(f->unl[i]);
	unlisted_remove(f, i);
	return 0;
}

int
maildir_unlisted_adopt(struct maildir_folder *f, size_t i, uint32_t uid,
                       const char **error_r)
{
	struct mfile *m;

	if (check_new_uid(f, uid, error_r) < 0 ||
	    unlisted_locked(f, i, &i, error_r) < 0 ||
	    check_new_uid(f, uid, error_r) < 0)
		return -1;
	m = f->unl[i];
	if (m->pub.in_new) {
		/* Courier numbers files in new/ afresh: move it to cur/ first */
		char *name = xasprintf("%s:2,", m->pub.base);

		if (renameat(f->newfd, m->name, f->curfd, name) < 0) {
			*error_r = err_errno(errno, "%s: rename new/%s: %s", f->where, m->name,
			                   strerror(errno));
			free(name);
			return -1;
		}
		free(m->name);
		m->name = name;
		m->pub.in_new = false;
		f->dir_dirty = true;
	}
	unlisted_remove(f, i);
	m->pub.uid = uid;
	add_listed(f, m, "");
	return 0;
}

/* ------------------------------------------------------------------ */
/* Reading */

static int
open_mfile(struct maildir_folder *f, struct mfile *m, int *fd_r,
           const char **error_r)
{
	int fd = openat(dirfd_of(f, m), fsname_of(m), O_RDONLY | O_NOFOLLOW |
	                O_CLOEXEC);

	if (fd < 0 && errno == ENOENT && relocate(f, m) == 0)
		fd = openat(dirfd_of(f, m), m->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		*error_r = err_set("%s: open %s: %s", f->where, fsname_of(m),
		                   errno == ENOENT ? "the message vanished" : strerror(errno));
		return -1;
	}
	*fd_r = fd;
	return 0;
}

int
maildir_open_msg(struct maildir_folder *f, uint32_t uid, int *fd_r,
                 uint64_t *size_r, const char **error_r)
{
	struct mfile *m = msg_lookup(f, uid);
	struct stat st;
	int fd;

	if (m == NULL) {
		*error_r = err_set("%s: no message with UID %u", f->where, uid);
		return -1;
	}
	if (open_mfile(f, m, &fd, error_r) < 0)
		return -1;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		*error_r = err_set("%s: %s is not a regular file", f->where,
		                   fsname_of(m));
		close(fd);
		return -1;
	}
	*fd_r = fd;
	*size_r = (uint64_t)st.st_size;
	return 0;
}

int
maildir_msg_size(struct maildir_folder *f, uint32_t uid, uint64_t *size_r,
                 const char **error_r)
{
	struct mfile *m = msg_lookup(f, uid);
	struct writer cnt;
	char *chunk;
	int fd;

	if (m == NULL) {
		*error_r = err_set("%s: no message with UID %u", f->where, uid);
		return -1;
	}
	if (m->pub.size != MAILDIR_SIZE_UNKNOWN) {
		*size_r = m->pub.size;
		return 0;
	}
	if (open_mfile(f, m, &fd, error_r) < 0)
		return -1;
	memset(&cnt, 0, offsetof(struct writer, buf));
	chunk = xmalloc(65536);
	for (;;) {
		ssize_t n = read(fd, chunk, 65536);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*error_r = err_errno(errno, "%s: read %s: %s", f->where, fsname_of(m),
			                   strerror(errno));
			free(chunk);
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		count_bytes(&cnt, chunk, (size_t)n);
	}
	free(chunk);
	close(fd);
	m->pub.size = cnt.out_len + (f->o.flavor == MAILDIR_COURIER ? cnt.lfs :
	                             cnt.bare_lfs);
	*size_r = m->pub.size;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Commit */

static int
fsync_fd(int fd, const char *what, const struct maildir_folder *f,
         const char **error_r)
{
	if (fsync(fd) < 0) {
		*error_r = err_errno(errno, "%s: fsync %s: %s", f->where, what, strerror(errno));
		return -1;
	}
	return 0;
}

/* Makes the batch's files durable (pending ones in tmp/, adopted ones
 * where they are) before they are published and listed. */
static int
sync_files(struct maildir_folder *f, const char **error_r)
{
	/* One syncfs() per commit flushes the whole batch: thousands of
	 * fdatasync() calls cost far more (24 s against 6 s for 16,000
	 * messages here). Per-file fdatasync stays as the fallback. */
	if (f->nsynced > 1 && syncfs(f->curfd) == 0)
		return 0;
	for (size_t i = 0; i < f->nsynced; i++) {
		struct mfile *m = msg_lookup(f, f->synced[i]);
		int fd;

		if (m == NULL)
			continue;       /* expunged since */
		fd = openat(dirfd_of(f, m), fsname_of(m), O_RDONLY | O_NOFOLLOW |
		            O_CLOEXEC);
		if (fd < 0 && errno == ENOENT && relocate(f, m) == 0)
			fd = openat(dirfd_of(f, m), m->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT && m->tmpname == NULL)
			continue;       /* removed by someone else */
		if (fd < 0) {
			*error_r = err_errno(errno, "%s: open %s%s: %s", f->where,
			                   m->tmpname != NULL ? "tmp/" : "", fsname_of(m),
			                   strerror(errno));
			return -1;
		}
		if (fdatasync(fd) < 0) {
			*error_r = err_errno(errno, "%s: fdatasync %s: %s", f->where, fsname_of(m),
			                   strerror(errno));
			close(fd);
			return -1;
		}
		close(fd);
	}
	return 0;
}

/* Makes the renames into cur/ (publish, flag changes), new/ and new
 * directories durable before the uidlist that names the files. */
static int
sync_dirs(struct maildir_folder *f, bool published, const char **error_r)
{
	if ((published || f->dir_dirty) &&
	    fsync_fd(f->curfd, "cur/", f, error_r) < 0)
		return -1;
	if (f->dir_dirty && fsync_fd(f->newfd, "new/", f, error_r) < 0)
		return -1;
	if (f->created) {
		if (fsync_fd(f->dirfd, "folder directory", f, error_r) < 0 ||
		    fsync_fd(f->rootfd, "root directory", f, error_r) < 0)
			return -1;
		f->created = false;
	}
	return 0;
}

/* Moves pending files synced[0..n) that publish() moved into cur/ back
 * into tmp/, so no file appears without its uidlist line. Best effort: a
 * file that cannot go back stays in cur/ and is no longer pending (the next
 * commit lists it; if none does, the server numbers it). */
static void
unpublish(struct maildir_folder *f, size_t n)
{
	for (size_t i = n; i-- > 0; ) {
		struct mfile *m = msg_lookup(f, f->synced[i]);

		if (m == NULL || m->tmpname == NULL)
			continue;
		if (renameat(f->curfd, m->name, f->tmpfd, m->tmpname) < 0) {
			log_warn("%s: moving cur/%s back to tmp/ after a failed "
			         "commit: %s; it stays without a uidlist line",
			         f->where, m->name, strerror(errno));
			XFREE(m->tmpname);
		}
	}
}

/* Renames every pending file from tmp/ into cur/ under its final name,
 * in UID order; *published_r tells whether any was. If a rename fails,
 * moves those already renamed back (unpublish()) and returns -1. On
 * success the files stay marked pending (tmpname) until the uidlist is in
 * place, so a later failure can still unpublish them; publish_done()
 * clears the marks. */
static int
publish(struct maildir_folder *f, bool *published_r, const char **error_r)
{
	*published_r = false;
	for (size_t i = 0; i < f->nsynced; i++) {
		struct mfile *m = msg_lookup(f, f->synced[i]);

		if (m == NULL || m->tmpname == NULL)
			continue;
		if (renameat(f->tmpfd, m->tmpname, f->curfd, m->name) < 0) {
			*error_r = err_set("%s: UID %u: rename tmp/%s to cur/: %s",
			                   f->where, m->pub.uid, m->tmpname,
			                   errno == ENOENT ? "the file vanished" :
			                   strerror(errno));
			unpublish(f, i);
			return -1;
		}
		*published_r = true;
	}
	return 0;
}

/* The uidlist lists the published files now: they are no longer pending. */
static void
publish_done(struct maildir_folder *f)
{
	for (size_t i = 0; i < f->nsynced; i++) {
		struct mfile *m = msg_lookup(f, f->synced[i]);

		if (m != NULL)
			XFREE(m->tmpname);
	}
}

static int
write_courier_keywords(struct maildir_folder *f, const char **error_r)
{
	struct md_ckw c = { 0 };
	struct buf b;
	char tmpname[600];
	bool created;
	const char *err;
	int kfd, r = 0;

	kfd = md_mkdir_open(f->dirfd, MD_KEYWORDS_COURIER_DIR, &f->o, true, &created, &err);
	if (kfd < 0) {
		*error_r = err_wrap(err, "%s: %s", f->where, err);
		return -1;
	}
	/* all files, listed or not: Courier keeps keywords by base */
	for (int pass = 0; pass < 2; pass++) {
		struct mfile **v = pass == 0 ? f->msgs : f->unl;
		size_t n = pass == 0 ? f->nmsgs : f->nunl;

		for (size_t i = 0; i < n; i++) {
			struct md_flags fl;

			md_flags_init(&fl);
			md_flags_parse(&fl, v[i]->pub.flags);
			if (fl.nkw > 0) {
				if (c.n == c.alloc) {
					c.alloc = c.alloc == 0 ? 16 : c.alloc * 2;
					c.e = xreallocarray(c.e, c.alloc, sizeof(*c.e));
				}
				c.e[c.n].base = xstrdup(v[i]->pub.base);
				c.e[c.n].kw = fl.kw;
				c.e[c.n].nkw = fl.nkw;
				c.n++;
				fl.kw = NULL;
				fl.nkw = 0;
			}
			md_flags_free(&fl);
		}
	}
	buf_init(&b, MD_META_MAX);
	if (md_ckw_format(&b, &c) < 0) {
		*error_r = err_set("%s: keywords too large", f->where);
		r = -1;
	} else if (buf_len(&b) == 0) {
		if (unlinkat(kfd, ":list", 0) < 0 && errno != ENOENT) {
			*error_r = err_errno(errno, "%s: unlink :list: %s", f->where, strerror(errno));
			r = -1;
		}
	} else {
		snprintf(tmpname, sizeof(tmpname), "%lld.%ld_kw.%s", (long long)time(NULL),
		         (long)getpid(), f->hostname);
		if (md_replace_file(f->tmpfd, tmpname, false, kfd, ":list",
		                    buf_data(&b), buf_len(&b), &f->o, 0, &err) < 0) {
			*error_r = err_wrap(err, "%s: courierimapkeywords/:list: %s", f->where, err);
			r = -1;
		}
	}
	if (r == 0) {
		/* :list now holds the merged update files */
		for (size_t i = 0; i < f->nckw_updates; i++)
			unlinkat(kfd, f->ckw_updates[i], 0);
		if (f->o.fsync && fsync(kfd) < 0) {
			*error_r = err_errno(errno, "%s: fsync courierimapkeywords: %s", f->where,
			                   strerror(errno));
			r = -1;
		}
	}
	buf_free(&b);
	md_ckw_free(&c);
	close(kfd);
	return r;
}

int
maildir_folder_commit(struct maildir_folder *f, const char **error_r)
{
	uint32_t v, n, mx;
	struct buf b;
	struct stat st;
	const char *err;
	char tmpname[600];
	bool published;
	int r;

	if (f->lock.fd < 0 && !f->dirty && !f->ckw_dirty &&
	    (f->set_v == 0 || (f->have_uidlist && f->set_v == f->ul.uidvalidity)) &&
	    (f->set_n == 0 || (f->have_uidlist && f->set_n <= f->ul.uidnext)))
		return 0;
	if (ensure_locked(f, error_r) < 0)
		return -1;
	v = f->set_v != 0 ? f->set_v : (f->have_uidlist ? f->ul.uidvalidity : 0);
	if (v == 0 && f->ul.nrecs > 0) {
		*error_r = err_set("%s: UIDVALIDITY not set (call maildir_folder_set_uids)",
		                   f->where);
		goto fail;
	}
	if (f->have_uidlist && f->ul.uidvalidity != v) {
		*error_r = err_set("%s: the folder has UIDVALIDITY %u now, not %u",
		                   f->where, f->ul.uidvalidity, v);
		goto fail;
	}
	mx = max_uid(f);
	n = maildir_folder_uidnext(f);
	if (v == 0 || (!f->dirty && !f->ckw_dirty && f->have_uidlist &&
	               n == f->ul.uidnext)) {
		/* nothing to write (so nothing pending); make flag renames
		 * durable */
		if (f->o.fsync && f->dir_dirty && sync_dirs(f, false, error_r) < 0)
			goto fail;
		f->dir_dirty = false;
		md_lock_release(lockdirfd(f), f->lockspec, &f->lock);
		f->set_v = f->set_n = 0;
		return 0;
	}
	if (!md_lock_is_ours(lockdirfd(f), f->lockspec, &f->lock)) {
		*error_r = err_set("%s: our %s was removed by another process; "
		                   "not writing the uidlist", f->where, f->lockspec->name);
		goto fail;
	}
	/* Publish the pending files, then list them. Until the new uidlist
	 * is renamed into place any failure moves them back to tmp/, so the
	 * server never numbers a file of ours itself. */
	if (f->o.fsync && sync_files(f, error_r) < 0)
		goto fail;
	if (publish(f, &published, error_r) < 0)
		goto fail;
	if (f->o.fsync && sync_dirs(f, published, error_r) < 0)
		goto fail_unpublish;
	if (f->o.flavor == MAILDIR_COURIER && f->ckw_dirty &&
	    write_courier_keywords(f, error_r) < 0)
		goto fail_unpublish;

	buf_init(&b, (size_t)1 << 31);
	if (md_uidlist_format(&b, f->o.flavor, v, n, f->ul.hdr_extra, f->ul.recs,
	                      f->ul.nrecs) < 0) {
		buf_free(&b);
		*error_r = err_set("%s: uidlist too large", f->where);
		goto fail_unpublish;
	}
	if (f->o.flavor == MAILDIR_DOVECOT) {
		/* Dovecot's own temp name; it writes it only under the lock */
		r = md_replace_file(f->dirfd, MD_UIDLIST_DOVECOT ".tmp", false, f->dirfd,
		                    MD_UIDLIST_DOVECOT, buf_data(&b), buf_len(&b), &f->o,
		                    0, &err);
	} else {
		snprintf(tmpname, sizeof(tmpname), "%lld.%ld_uiddb.%s",
		         (long long)time(NULL), (long)getpid(), f->hostname);
		r = md_replace_file(f->tmpfd, tmpname, false, f->dirfd,
		                    MD_UIDLIST_COURIER, buf_data(&b), buf_len(&b), &f->o,
		                    0, &err);
	}
	buf_free(&b);
	if (r < 0) {
		*error_r = err_wrap(err, "%s: %s", f->where, err);
		goto fail_unpublish;
	}
	/* the uidlist names the published files now */
	publish_done(f);
	if (f->o.fsync && fsync_fd(f->dirfd, "folder directory", f, error_r) < 0)
		goto fail;

	/* the new file is now the disk state */
	if (fstatat(f->dirfd, uidlist_name(f), &st, AT_SYMLINK_NOFOLLOW) == 0)
		f->ul_st = st;
	if (f->o.flavor == MAILDIR_COURIER && f->ckw_dirty) {
		int kfd = openat(f->dirfd, MD_KEYWORDS_COURIER_DIR,
		                 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

		f->ckw_exists = kfd >= 0 && fstatat(kfd, ":list", &f->ckw_st,
		                                    AT_SYMLINK_NOFOLLOW) == 0;
		f->ckwdir_exists = kfd >= 0 && fstat(kfd, &f->ckwdir_st) == 0;
		if (kfd >= 0)
			close(kfd);
		for (size_t i = 0; i < f->nckw_updates; i++)
			free(f->ckw_updates[i]);
		f->nckw_updates = 0;
	}
	f->have_uidlist = true;
	f->ul.version = f->o.flavor == MAILDIR_COURIER ? 1 : 3;
	f->ul.uidvalidity = v;
	f->ul.uidnext = n;
	f->disk_maxuid = mx;
	f->floor = n > mx ? n : mx + 1;
	f->set_v = f->set_n = 0;
	f->dirty = f->dir_dirty = f->ckw_dirty = false;
	f->nsynced = 0;
	md_lock_release(lockdirfd(f), f->lockspec, &f->lock);
	return 0;
fail_unpublish:
	unpublish(f, f->nsynced);
	if (f->o.fsync)
		ignore_result(fsync(f->curfd));
fail:
	md_lock_release(lockdirfd(f), f->lockspec, &f->lock);
	return -1;
}
