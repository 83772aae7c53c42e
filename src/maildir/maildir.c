/* maildir.c: a Maildir++ folder: open/scan, deliver, flag changes,
 * expunge, commit of the uidlist and keywords. See maildir.h for the model. */
#define _GNU_SOURCE 1 /* sync_file_range */
#include "maildir-private.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Size of each half of a folder's I/O buffer (struct maildir_folder.iobuf):
 * the source chunk read by maildir_deliver_fd() and the Courier LF
 * conversion. */
#define IO_CHUNK 65536

/* Room for a message file name built by mname(): the name of a file read
 * from a directory fits in NAME_MAX; our own names (deliver) have a base
 * of at most ~560 bytes and a suffix of ":2," and 31 letters. */
#define MNAME_SIZE 1024
/* struct mfile in slabs of this many (issue 15: no malloc per message). */
#define MSLAB_N 1024

/* One message file (listed or not). Allocated from the folder's slabs
 * (mfile_new()); the address stays the same while the message is known.
 * Its strings are shared, not owned: pub.base (and pub.pop3_uidl) live in
 * the uidlist's pool (f->ul.pool; a listed message shares the base with
 * its md_rec); pub.flags is interned (f->istr) together with the name's
 * suffix, the rest of the file name after the base (":2,S", or "" for a
 * name without flags part), as "<flags>\0<suffix>" (msuffix()): the name
 * in cur/ or new/ is base + suffix, for a pending delivery the name it
 * gets in cur/. */
struct mfile {
	struct maildir_msg pub;
	char *tmpname;          /* pending delivery: its name in tmp/, where it
	                           stays until commit publishes it; else NULL
	                           (owned) */
};

struct mslab {
	struct mslab *next;
	struct mfile m[MSLAB_N];
};

/* Interned strings: a set of distinct (flags, name suffix) pairs (a
 * folder has few distinct values), each stored once as "<flags>\0<suffix>",
 * valid until close. */
struct istr {
	const char **slot;      /* open addressing, NULL = free */
	size_t n, cap;          /* cap a power of 2, or 0 */
	struct md_pool pool;
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
	bool lock_explicit;     /* taken by maildir_folder_lock(): kept until
	                           commit or close */

	/* uidlist: disk records plus pending ones, sorted by UID */
	struct md_uidlist ul;
	bool have_uidlist;
	struct stat ul_st;
	uint32_t disk_maxuid;
	uint32_t set_v, set_n;  /* from set_uids, 0 = unset */
	uint32_t floor;         /* lowest UID accepted now */
	bool dirty;             /* records changed since the last commit */
	bool need_rewrite;      /* a line on disk changed (expunge) or the
	                           file cannot take appends: rewrite it whole */
	bool dir_dirty;         /* renames/unlinks in cur/ since the last commit */
	size_t nlost;           /* pending deliveries dropped by a re-read:
	                           below the floor the server left */
	uint32_t lost_first, lost_floor;
	uint64_t ul_bytes;      /* uidlist bytes written (test hook) */
	unsigned int ul_rewrites;
	char *iobuf;            /* 2 * IO_CHUNK, allocated at first use */

	/* keywords */
	char *dkw[MD_MAX_KEYWORDS];
	bool dkw_exists;
	struct stat dkw_st;
	uint32_t dkw_disk;      /* letters defined in dovecot-keywords on disk;
	                           others in dkw[] wait for the next commit */
	uint32_t used_letters;  /* a-z letters seen in file names */
	bool ckw_dirty;         /* Courier :list must be rewritten */
	struct stat ckw_st;     /* of :list */
	bool ckw_exists;
	struct stat ckwdir_st;  /* of courierimapkeywords/ (update files) */
	bool ckwdir_exists;
	char **ckw_updates;     /* pending update files merged at open */
	size_t nckw_updates;

	/* messages */
	struct mslab *slabs;    /* every struct mfile */
	size_t slab_used;       /* of slabs (the newest) */
	struct mfile **mfree;   /* freed ones, for reuse */
	size_t nmfree, amfree;
	struct istr istr;       /* flags and name suffixes */
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

/* The suffix of m's file name, interned after its flags. */
static const char *
msuffix(const struct mfile *m)
{
	return m->pub.flags + strlen(m->pub.flags) + 1;
}

/* m's file name in cur/ or new/ (for a pending delivery the one it gets
 * in cur/), built into buf (MNAME_SIZE bytes). */
static const char *
mname(const struct mfile *m, char *buf)
{
	snprintf(buf, MNAME_SIZE, "%s%s", m->pub.base, msuffix(m));
	return buf;
}

/* The name of m's file in the directory dirfd_of() gives. */
static const char *
fsname_of(const struct mfile *m, char *buf)
{
	return m->tmpname != NULL ? m->tmpname : mname(m, buf);
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

static uint64_t
istr_hash(const char *pair)
{
	uint64_t h = 14695981039346656037u;     /* FNV-1a over both strings */
	const char *s = pair;

	for (int k = 0; k < 2; k++, s++) {
		for (; *s != '\0'; s++)
			h = (h ^ (unsigned char)*s) * 1099511628211u;
		h = (h ^ 0xff) * 1099511628211u;
	}
	return h;
}

/* The interned pair "<flags>\0<suffix>" (valid until the folder is
 * closed); its address is what pub.flags holds. */
static const char *
istr_pair(struct istr *t, const char *flags, const char *suffix)
{
	size_t lf = strlen(flags), ls = strlen(suffix), i;
	char *key = xmalloc(lf + ls + 2);

	memcpy(key, flags, lf + 1);
	memcpy(key + lf + 1, suffix, ls + 1);
	if (t->n * 2 >= t->cap) {
		size_t ncap = t->cap == 0 ? 64 : t->cap * 2;
		const char **ns = xcalloc(ncap, sizeof(*ns));

		for (size_t j = 0; j < t->cap; j++) {
			if (t->slot[j] == NULL)
				continue;
			i = (size_t)istr_hash(t->slot[j]) & (ncap - 1);
			while (ns[i] != NULL)
				i = (i + 1) & (ncap - 1);
			ns[i] = t->slot[j];
		}
		free(t->slot);
		t->slot = ns;
		t->cap = ncap;
	}
	i = (size_t)istr_hash(key) & (t->cap - 1);
	while (t->slot[i] != NULL) {
		const char *e = t->slot[i];

		if (strcmp(e, flags) == 0 && strcmp(e + lf + 1, suffix) == 0) {
			free(key);
			return e;
		}
		i = (i + 1) & (t->cap - 1);
	}
	t->slot[i] = md_pool_strndup(&t->pool, key, lf + ls + 1);
	t->n++;
	free(key);
	return t->slot[i];
}

static void
istr_free(struct istr *t)
{
	free(t->slot);
	md_pool_free(&t->pool);
	memset(t, 0, sizeof(*t));
}

/* Gives m the flags and name suffix given (interned). */
static void
mfile_set(struct maildir_folder *f, struct mfile *m, const char *flags,
          const char *suffix)
{
	m->pub.flags = istr_pair(&f->istr, flags, suffix);
}

/* Same with flags a new string, which it frees. */
static void
mfile_take(struct maildir_folder *f, struct mfile *m, char *flags,
           const char *suffix)
{
	mfile_set(f, m, flags, suffix);
	free(flags);
}

/* ":2,<letters>" into buf (MNAME_SIZE bytes). */
static const char *
suffix_of(const char *letters, char *buf)
{
	snprintf(buf, MNAME_SIZE, ":2,%s", letters);
	return buf;
}

/* A zeroed struct mfile from the folder's slabs. */
static struct mfile *
mfile_new(struct maildir_folder *f)
{
	struct mfile *m;

	if (f->nmfree > 0) {
		m = f->mfree[--f->nmfree];
	} else {
		if (f->slabs == NULL || f->slab_used == MSLAB_N) {
			struct mslab *s = xmalloc(sizeof(*s));

			s->next = f->slabs;
			f->slabs = s;
			f->slab_used = 0;
		}
		m = &f->slabs->m[f->slab_used++];
	}
	memset(m, 0, sizeof(*m));
	return m;
}

/* Returns m to the slabs (its shared strings stay where they live). */
static void
mfile_free(struct maildir_folder *f, struct mfile *m)
{
	if (m == NULL)
		return;
	XFREE(m->tmpname);
	ptr_push((void ***)&f->mfree, &f->nmfree, &f->amfree, m);
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

/* Appends a record; base is a message's, a "<base>\0<ext>\0" pair in
 * ul->pool: shared when its ext is ext, else a new pair. Returns the
 * record's base, for the message to share. */
static const char *
rec_append(struct md_uidlist *ul, uint32_t uid, const char *base, const char *ext)
{
	size_t blen = strlen(base);

	if (strcmp(base + blen + 1, ext) != 0)
		base = md_pool_base_ext(&ul->pool, base, blen, ext, strlen(ext));
	if (ul->nrecs == ul->arecs) {
		ul->arecs = ul->arecs == 0 ? 64 : ul->arecs * 2;
		ul->recs = xreallocarray(ul->recs, ul->arecs, sizeof(*ul->recs));
	}
	ul->recs[ul->nrecs].uid = uid;
	ul->recs[ul->nrecs].base = base;
	ul->nrecs++;
	return base;
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

void
maildir_folder_plan_keywords(struct maildir_folder *f,
                             const char *const *names, size_t n)
{
	bool defined = false;

	if (f->o.flavor != MAILDIR_DOVECOT)
		return;
	for (size_t i = 0; i < n; i++)
		if (kw_letter(f, names[i], &defined) < 0)
			break;
}

static bool
kw_storable(const struct maildir_folder *f, const char *name)
{
	if (!md_keyword_valid(name))
		return false;
	if (f->o.flavor != MAILDIR_DOVECOT)
		return true;
	for (int i = 0; i < MD_MAX_KEYWORDS; i++)
		if (f->dkw[i] != NULL && str_ieq(f->dkw[i], name))
			return true;
	for (int i = 0; i < MD_MAX_KEYWORDS; i++)
		if (f->dkw[i] == NULL && (f->used_letters & (1u << i)) == 0)
			return true;
	return false;
}

char *
maildir_folder_storable_flags(const struct maildir_folder *f, const char *flags)
{
	static const char *const sys[] = {
		"\\Draft", "\\Flagged", "\\Answered", "\\Seen", "\\Deleted",
	};
	struct buf b;
	const char *p = flags != NULL ? flags : "";

	buf_init(&b, SIZE_MAX / 2);
	while (*p != '\0') {
		size_t len = strcspn(p, " ");
		char *tok = xstrndup(p, len);
		bool keep = false;

		if (tok[0] == '\\') {
			for (size_t i = 0; i < N_ELEMENTS(sys) && !keep; i++)
				keep = str_ieq(tok, sys[i]);
		} else if (len > 0) {
			keep = kw_storable(f, tok);
		}
		if (keep) {
			if (buf_len(&b) > 0)
				ignore_result(buf_append_str(&b, " "));
			ignore_result(buf_append_str(&b, tok));
		}
		free(tok);
		p += len;
		p += strspn(p, " ");
	}
	if (buf_len(&b) == 0) {
		buf_free(&b);
		return xstrdup("");
	}
	return buf_take(&b);
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
	f->dkw_disk = 0;
	for (int i = 0; i < MD_MAX_KEYWORDS; i++) {
		if (f->dkw[i] != NULL)
			f->dkw_disk |= 1u << i;
	}
	return 0;
}

/* true if set[] uses a keyword letter that dovecot-keywords on disk does
 * not define yet (defined in memory by kw_letter() since). */
static bool
letters_need_flush(const struct maildir_folder *f, const bool set[128])
{
	for (int i = 0; i < MD_MAX_KEYWORDS; i++) {
		if (set['a' + i] && (f->dkw_disk & (1u << i)) == 0)
			return true;
	}
	return false;
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
		mfile_free(f, f->msgs[i]);
	for (size_t i = 0; i < f->nunl; i++)
		mfile_free(f, f->unl[i]);
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
	f->dkw_disk = 0;
	f->dirty = f->dir_dirty = f->ckw_dirty = f->need_rewrite = false;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Scans one of cur/ and new/ into *v. A file whose base a uidlist line
 * names (ix: the records' bases sorted by strcmp) shares the line's
 * string; others get theirs in the uidlist's pool. */
static int
scan_dir(struct maildir_folder *f, bool in_new, struct mfile ***v, size_t *n,
         size_t *alloc, const char **ix, size_t nix, const char **error_r)
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
		char key[sizeof(de->d_name)];
		const char *keyp = key, **hit;
		size_t blen;

		if (de->d_name[0] == '.')
			continue;
		if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;       /* vanished, or a symlink: never a message */
		m = mfile_new(f);
		blen = md_name_base_len(de->d_name);
		memcpy(key, de->d_name, blen);
		key[blen] = '\0';
		hit = nix == 0 ? NULL : bsearch(&keyp, ix, nix, sizeof(*ix), cmp_str);
		m->pub.base = hit != NULL ? *hit :
			md_pool_base_ext(&f->ul.pool, de->d_name, blen, "", 0);
		mfile_set(f, m, "", de->d_name + blen);  /* flags: load() */
		m->pub.in_new = in_new;
		m->pub.mtime = (int64_t)st.st_mtime;
		m->pub.file_size = (uint64_t)st.st_size;
		m->pub.size = MAILDIR_SIZE_UNKNOWN;
		if (f->o.flavor == MAILDIR_DOVECOT &&
		    !md_name_field(de->d_name, 'W', &m->pub.size))
			m->pub.size = MAILDIR_SIZE_UNKNOWN;
		if (!in_new) {
			for (const char *p = md_name_letters(msuffix(m)); *p != '\0'; p++) {
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
	const char **ix;
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
		/* appends need a sorted v3 file ending in LF: Dovecot
		 * rejects a file with lines out of order */
		f->need_rewrite = f->ul.unsorted || f->ul.torn;
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
		for (int i = 0; i < MD_MAX_KEYWORDS; i++) {
			if (f->dkw[i] != NULL)
				f->dkw_disk |= 1u << i;
		}
	} else if (load_courier_keywords(f, &ckw, &err) < 0) {
		*error_r = err_wrap(err, "%s: %s", f->where, err);
		buf_free(&b);
		return -1;
	}
	buf_free(&b);

	/* the lines' bases by name, for scan_dir() */
	ix = xreallocarray(NULL, f->ul.nrecs + 1, sizeof(*ix));
	for (size_t i = 0; i < f->ul.nrecs; i++)
		ix[i] = f->ul.recs[i].base;
	if (f->ul.nrecs > 1)
		qsort(ix, f->ul.nrecs, sizeof(*ix), cmp_str);
	r = scan_dir(f, false, &scan, &nscan, &ascan, ix, f->ul.nrecs, error_r);
	if (r == 0)
		r = scan_dir(f, true, &scan, &nscan, &ascan, ix, f->ul.nrecs, error_r);
	free(ix);
	if (r < 0) {
		for (size_t i = 0; i < nscan; i++)
			mfile_free(f, scan[i]);
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
					mfile_free(f, scan[j - 1]);
					scan[j - 1] = scan[i];
				} else {
					mfile_free(f, scan[i]);
				}
				continue;
			}
			scan[j++] = scan[i];
		}
		nscan = j;
	}
	/* match uidlist lines; a later UID for the same base wins (Dovecot).
	 * A matched file shares the line's base string. */
	for (size_t i = 0; i < f->ul.nrecs; i++) {
		struct mfile key_m = { .pub.base = f->ul.recs[i].base }, *key = &key_m;
		struct mfile **hit = nscan == 0 ? NULL :
			bsearch(&key, scan, nscan, sizeof(*scan), cmp_mfile_base);
		char *w, *uidl;

		if (hit == NULL)
			continue;
		(*hit)->pub.uid = f->ul.recs[i].uid;
		(*hit)->pub.base = f->ul.recs[i].base;
		(*hit)->pub.pop3_uidl = NULL;
		uidl = md_ext_get(md_rec_ext(&f->ul.recs[i]), 'P');
		if (uidl != NULL)
			(*hit)->pub.pop3_uidl = uidl[0] == '\0' ? (*hit)->pub.base :
				md_pool_strdup(&f->ul.pool, uidl);
		free(uidl);
		w = md_ext_get(md_rec_ext(&f->ul.recs[i]), 'W');
		if (w != NULL && (*hit)->pub.size == MAILDIR_SIZE_UNKNOWN &&
		    !str_to_u64z(w, UINT64_MAX, &(*hit)->pub.size))
			(*hit)->pub.size = MAILDIR_SIZE_UNKNOWN;
		free(w);
	}
	for (size_t i = 0; i < nscan; i++) {
		struct mfile *m = scan[i];
		const struct md_ckw_entry *e = NULL;

		if (f->o.flavor == MAILDIR_COURIER) {
			struct md_ckw_entry key = { .base = (char *)m->pub.base };

			e = ckw.n == 0 ? NULL :
				bsearch(&key, ckw.e, ckw.n, sizeof(*ckw.e), cmp_ckw_base);
		}
		mfile_take(f, m, flags_from_letters(f, m->pub.in_new ? "" :
		                                    md_name_letters(msuffix(m)), e),
		           msuffix(m));
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

static void add_listed(struct maildir_folder *f, struct mfile *m, const char *ext);
static void letters_mark(struct maildir_folder *f, struct md_flags *fl, bool set[128],
                         bool *kw_defined_r);
static void letters_emit(const struct maildir_folder *f, const bool set_in[128],
                         const char *old_letters, char *out);

/* Gives a pending Dovecot delivery the keyword letters its flags have in
 * f->dkw now (defining letters as needed): its final name in cur/ is
 * only used at commit, so it may change until then. */
static void
pending_rename_letters(struct maildir_folder *f, struct mfile *m)
{
	struct md_flags fl;
	bool set[128] = { false }, defined = false;
	char letters[130], sbuf[MNAME_SIZE], *flags;

	if (f->o.flavor != MAILDIR_DOVECOT)
		return;
	md_flags_init(&fl);
	md_flags_parse(&fl, m->pub.flags);
	letters_mark(f, &fl, set, &defined);
	letters_emit(f, set, "", letters);
	flags = flags_from_letters(f, letters, NULL);
	if (strcmp(flags, m->pub.flags) != 0)
		log_warn("%s: UID %u: the folder's keywords changed meanwhile; "
		         "stored as \"%s\" instead of \"%s\"", f->where,
		         m->pub.uid, flags, m->pub.flags);
	mfile_take(f, m, flags, suffix_of(letters, sbuf));
	md_flags_free(&fl);
}

/* Re-reads the folder the server changed, keeping our pending deliveries
 * (files in tmp/ the server cannot see). Those whose UID is now below the
 * floor the server left (it numbered new mail meanwhile, or rewrote N)
 * cannot be published under their UID: they are unlinked from tmp/ and
 * counted in f->nlost for the next commit to report. The others get
 * their keyword letters again (dovecot-keywords may have changed). */
static int
reload(struct maildir_folder *f, const char **error_r)
{
	struct mfile **pend = NULL;
	char **pext = NULL;
	size_t npend = 0, j = 0;
	int r;

	for (size_t i = 0; i < f->nmsgs; i++) {
		struct mfile *m = f->msgs[i];
		bool found;
		size_t ri;

		if (m->tmpname == NULL) {
			f->msgs[j++] = m;
			continue;
		}
		ri = rec_index(&f->ul, m->pub.uid, &found);
		pend = xreallocarray(pend, npend + 1, sizeof(*pend));
		pext = xreallocarray(pext, npend + 1, sizeof(*pext));
		pend[npend] = m;
		pext[npend] = xstrdup(found ? md_rec_ext(&f->ul.recs[ri]) : "");
		npend++;
		/* its strings live in the pool load() frees: copies meanwhile */
		m->pub.base = xstrdup(m->pub.base);
		if (m->pub.pop3_uidl != NULL)
			m->pub.pop3_uidl = xstrdup(m->pub.pop3_uidl);
	}
	f->nmsgs = j;
	r = load(f, error_r);
	for (size_t i = 0; i < npend; i++) {
		struct mfile *m = pend[i];
		char *base = (char *)m->pub.base, *uidl = (char *)m->pub.pop3_uidl;

		m->pub.base = md_pool_base_ext(&f->ul.pool, base, strlen(base), pext[i],
		                               strlen(pext[i]));
		if (uidl != NULL)
			m->pub.pop3_uidl = md_pool_strdup(&f->ul.pool, uidl);
		free(base);
		free(uidl);
		if (r < 0 || m->pub.uid < f->floor) {
			if (unlinkat(f->tmpfd, m->tmpname, 0) < 0 && errno != ENOENT)
				log_warn("%s: unlink tmp/%s: %s", f->where, m->tmpname,
				         strerror(errno));
			if (r == 0) {
				if (f->nlost++ == 0)
					f->lost_first = m->pub.uid;
				f->lost_floor = f->floor;
			}
			mfile_free(f, m);
		} else {
			pending_rename_letters(f, m);
			add_listed(f, m, pext[i]);
		}
		free(pext[i]);
	}
	free(pend);
	free(pext);
	return r;
}

/* Takes the folder lock; re-reads the folder (reload()) if the server
 * changed the uidlist or keywords since we read them. Writers change
 * them only under this lock: what we read now stays valid until we
 * release it. */
static int
lock_folder(struct maildir_folder *f, const char **error_r)
{
	if (f->lock.fd >= 0) {
		md_lock_touch(&f->lock);
		return 0;
	}
	if (md_lock_take(lockdirfd(f), f->dirfd, f->lockspec, &f->lock, &f->o,
	                 f->o.lock_timeout_ms, f->where, error_r) < 0)
		return -1;
	if (meta_changed(f) && reload(f, error_r) < 0) {
		md_lock_release(lockdirfd(f), f->lockspec, &f->lock);
		return -1;
	}
	return 0;
}

/* Releases a lock lock_folder() took, unless maildir_folder_lock() asked
 * to keep it until the commit. */
static void
unlock_folder(struct maildir_folder *f)
{
	if (!f->lock_explicit)
		md_lock_release(lockdirfd(f), f->lockspec, &f->lock);
}

int
maildir_folder_lock(struct maildir_folder *f, const char **error_r)
{
	if (lock_folder(f, error_r) < 0)
		return -1;
	f->lock_explicit = true;
	return 0;
}

uint64_t
md_folder_uidlist_bytes(const struct maildir_folder *f)
{
	return f->ul_bytes;
}

unsigned int
md_folder_uidlist_rewrites(const struct maildir_folder *f)
{
	return f->ul_rewrites;
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
	/* uncommitted deliveries were never published: remove them */
	drop_pending(f);
	if (f->lock.fd >= 0)
		md_lock_release(lockdirfd(f), f->lockspec, &f->lock);
	clear_state(f);
	while (f->slabs != NULL) {
		struct mslab *s = f->slabs;

		f->slabs = s->next;
		free(s);
	}
	free(f->mfree);
	istr_free(&f->istr);
	free(f->msgs);
	free(f->unl);
	free(f->synced);
	free(f->iobuf);
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
	char *buf;              /* IO_CHUNK bytes, borrowed from the folder */
};

/* The folder's I/O buffer: 2 * IO_CHUNK bytes, one per folder for all
 * its deliveries (owned by f, freed by close). */
static char *
folder_iobuf(struct maildir_folder *f)
{
	if (f->iobuf == NULL)
		f->iobuf = xmalloc(2 * IO_CHUNK);
	return f->iobuf;
}

static int
writer_flush(struct writer *w)
{
	if (w->blen > 0 && md_write_all(w->fd, w->buf, w->blen) < 0)
		return -1;
	w->blen = 0;
	return 0;
}

/* Line ends of what is written (for S= and W=): all LFs, and the bare
 * ones (no CR before them). 16 bytes at a time with the compiler's
 * vector extension (SSE2/NEON compares; a memchr() per line was 8 % of
 * an offline copy's CPU, a byte loop a fifth), byte counters flushed
 * before they can wrap. */
typedef unsigned char md_u8x16 __attribute__((vector_size(16)));

static uint64_t
hsum16(md_u8x16 v)
{
	uint64_t n = 0;

	for (int i = 0; i < 16; i++)
		n += v[i];
	return n;
}

static void
count_bytes(struct writer *w, const char *p, size_t len)
{
	const unsigned char *s = (const unsigned char *)p;
	const md_u8x16 lf = { '\n', '\n', '\n', '\n', '\n', '\n', '\n', '\n',
	                      '\n', '\n', '\n', '\n', '\n', '\n', '\n', '\n' };
	const md_u8x16 cr = { '\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r',
	                      '\r', '\r', '\r', '\r', '\r', '\r', '\r', '\r' };
	size_t i = 1;

	if (len == 0)
		return;
	if (s[0] == '\n') {
		w->lfs++;
		if (!w->last_cr)
			w->bare_lfs++;
	}
	/* byte i is checked against byte i - 1 of the same buffer */
	while (len - i >= 16) {
		md_u8x16 n_lf = { 0 }, n_bare = { 0 };
		unsigned rounds = 0;

		for (; len - i >= 16 && rounds < 255; i += 16, rounds++) {
			md_u8x16 a, b, is_lf, after_cr;

			memcpy(&a, s + i, 16);
			memcpy(&b, s + i - 1, 16);
			is_lf = (md_u8x16)(a == lf);        /* 0xff or 0 */
			after_cr = (md_u8x16)(b == cr);
			n_lf -= is_lf;                      /* + 1 per LF */
			n_bare -= is_lf & ~after_cr;
		}
		w->lfs += hsum16(n_lf);
		w->bare_lfs += hsum16(n_bare);
	}
	for (; i < len; i++) {
		if (s[i] == '\n') {
			w->lfs++;
			if (s[i - 1] != '\r')
				w->bare_lfs++;
		}
	}
	w->last_cr = s[len - 1] == '\r';
	w->out_len += len;
}

static int
writer_emit(struct writer *w, char c)
{
	if (w->blen == IO_CHUNK && writer_flush(w) < 0)
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
	m->pub.base = rec_append(&f->ul, m->pub.uid, m->pub.base, ext);
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
	char letters[130], sbuf[MNAME_SIZE], *base, *ext;
	bool set[128] = { false };
	bool kw_defined = false, courier = f->o.flavor == MAILDIR_COURIER;
	struct mfile *m;

	(void)error_r;
	md_flags_init(&fl);
	md_flags_parse(&fl, flags != NULL ? flags : "");
	/* new keyword letters are defined in memory only: commit writes
	 * dovecot-keywords under the lock before it publishes the file */
	letters_mark(f, &fl, set, &kw_defined);
	letters_emit(f, set, "", letters);
	if (courier)
		base = xasprintf("%s,S=%llu", uniq, (unsigned long long)file_size);
	else
		base = xasprintf("%s,S=%llu,W=%llu", uniq,
		                 (unsigned long long)file_size,
		                 (unsigned long long)size);
	/* The file stays in tmp/ until commit renames it into cur/ right
	 * before the uidlist that lists it: a server never sees it without
	 * its line, even if we are killed now and it breaks our lock. */
	m = mfile_new(f);
	mfile_take(f, m, courier ?
		md_flags_format(fl.sys, (const char *const *)fl.kw, fl.nkw) :
		flags_from_letters(f, letters, NULL), suffix_of(letters, sbuf));
	m->tmpname = xstrdup(uniq);
	m->pub.uid = uid;
	/* the base with its line's ext fields behind it (struct md_rec) */
	ext = pop3_uidl != NULL ? xasprintf("P%s", pop3_uidl) : xstrdup("");
	m->pub.base = md_pool_base_ext(&f->ul.pool, base, strlen(base), ext,
	                               strlen(ext));
	free(base);
	m->pub.mtime = internaldate;
	m->pub.file_size = file_size;
	m->pub.size = size;
	add_listed(f, m, ext);
	free(ext);
	/* pop3_uidl is the ext's P field */
	if (pop3_uidl != NULL)
		m->pub.pop3_uidl = m->pub.base + strlen(m->pub.base) + 2;
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
	struct writer wr, *w;
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
	/* No lock: the file stays in tmp/, invisible to the server, and
	 * commit checks the UID again under the lock. */
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

	w = &wr;
	memset(w, 0, sizeof(*w));
	w->fd = fd;
	w->courier = courier;
	w->buf = folder_iobuf(f);
	if (data != NULL) {
		if (writer_put(w, data, (size_t)len) < 0)
			goto write_error;
	} else {
		char *chunk = folder_iobuf(f) + IO_CHUNK;
		uint64_t left = len;

		while (left > 0) {
			ssize_t n = read(in_fd, chunk, left < IO_CHUNK ? (size_t)left : IO_CHUNK);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				*error_r = n == 0 ?
					err_set("%s: UID %u: source ended after %llu of %llu bytes",
					        f->where, uid, (unsigned long long)(len - left),
					        (unsigned long long)len) :
					err_errno(errno, "%s: UID %u: reading the source: %s", f->where,
					        uid, strerror(errno));
				goto fail;
			}
			if (writer_put(w, chunk, (size_t)n) < 0)
				goto write_error;
			left -= (uint64_t)n;
		}
	}
	if (writer_finish(w) < 0)
		goto write_error;
	/* start the write-back now, without waiting: commit's fdatasync
	 * of the batch then finds most of the data on its way */
	if (f->o.fsync)
		(void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
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
	return 0;

write_error:
	*error_r = err_errno(errno, "%s: write tmp/%s: %s", f->where, uniq, strerror(errno));
fail:
	if (fd >= 0)
		close(fd);
	unlinkat(f->tmpfd, uniq, 0);
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
	char uniq[512], nbuf[MNAME_SIZE], *flags, *uidl;
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
	if (check_new_uid(f, uid, error_r) < 0)
		return -1;
	clock_gettime(CLOCK_REALTIME, &now);
	for (int tries = 0;; tries++) {
		snprintf(uniq, sizeof(uniq), "%lld.M%ldP%ldQ%u.%s",
		         (long long)(sm->pub.mtime > 0 ? sm->pub.mtime : now.tv_sec),
		         now.tv_nsec / 1000, (long)getpid(),
		         atomic_fetch_add(&uniq_counter, 1) + 1, f->hostname);
		if (linkat(dirfd_of(from, sm), fsname_of(sm, nbuf), f->tmpfd, uniq, 0) == 0)
			break;
		if (errno == ENOENT && tries == 0 && sm->tmpname == NULL &&
		    relocate(from, sm) == 0)
			continue;       /* renamed meanwhile (flags): once more */
		if (errno != EEXIST || tries >= 10) {
			*error_r = err_errno(errno, "%s: link %s/%s into tmp/: %s", f->where,
			                   from->where, fsname_of(sm, nbuf), strerror(errno));
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
				mfile_set(f, m, m->pub.flags, de->d_name + blen);
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
	char letters[130], name[MNAME_SIZE], cur[MNAME_SIZE], suffix[MNAME_SIZE];
	bool set[128];
	bool kw_defined = false, locked_here = false;
	int r = -1;

	if (dropped_r != NULL)
		*dropped_r = NULL;
	for (;;) {
		m = msg_lookup(f, uid);
		if (m == NULL) {
			*error_r = err_set("%s: no message with UID %u", f->where, uid);
			if (locked_here)
				unlock_folder(f);
			return -1;
		}
		memset(set, 0, sizeof(set));
		md_flags_init(&fl);
		md_flags_parse(&fl, flags != NULL ? flags : "");
		letters_mark(f, &fl, set, &kw_defined);
		/* A file in cur/ may use a keyword letter only once
		 * dovecot-keywords defines it, and that file is written under
		 * the lock. No lock otherwise: Dovecot renames files in cur/
		 * without it too. (A pending delivery gets its letters at
		 * commit.) */
		if (m->tmpname != NULL || !letters_need_flush(f, set))
			break;
		if (f->lock.fd >= 0) {
			if (kw_flush(f, error_r) < 0)
				goto out;
			break;
		}
		md_flags_free(&fl);
		if (lock_folder(f, error_r) < 0)
			return -1;
		locked_here = true;
		/* the folder may have been re-read: look again */
	}
	for (int tries = 0; ; tries++) {
		letters_emit(f, set, m->pub.in_new ? "" : md_name_letters(msuffix(m)),
		             letters);
		suffix_of(letters, suffix);     /* m's suffix once renamed */
		if (!m->pub.in_new && strcmp(suffix, msuffix(m)) == 0)
			break;
		if (m->tmpname != NULL)
			break;  /* pending: only the name commit gives it changes */
		snprintf(name, sizeof(name), "%s%s", m->pub.base, suffix);
		if (renameat(dirfd_of(f, m), mname(m, cur), f->curfd, name) == 0) {
			m->pub.in_new = false;
			f->dir_dirty = true;
			break;
		}
		/* renamed by the server meanwhile: find it, keep its letters */
		if (errno != ENOENT || tries > 0 || relocate(f, m) < 0) {
			*error_r = err_set("%s: UID %u: rename %s: %s", f->where, uid,
			                   mname(m, cur), errno == ENOENT ?
			                   "the file vanished" : strerror(errno));
			goto out;
		}
	}
	if (f->o.flavor == MAILDIR_COURIER) {
		/* any change of the keyword part rewrites :list at commit */
		char *nf = md_flags_format(fl.sys, (const char *const *)fl.kw, fl.nkw);

		if (strcmp(nf, m->pub.flags) != 0)
			f->ckw_dirty = true;
		mfile_take(f, m, nf, suffix);
	} else {
		mfile_take(f, m, flags_from_letters(f, letters, NULL), suffix);
	}
	if (dropped_r != NULL)
		*dropped_r = take_dropped(&fl);
	r = 0;
out:
	md_flags_free(&fl);
	if (locked_here)
		unlock_folder(f);
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
	char nbuf[MNAME_SIZE];

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
	if (unlinkat(dirfd_of(f, m), mname(m, nbuf), 0) == 0 ||
	    (errno == ENOENT &&
	     (relocate(f, m) < 0 || unlinkat(dirfd_of(f, m), mname(m, nbuf), 0) == 0 ||
	      errno == ENOENT))) {
		f->dir_dirty = true;
		if (f->o.flavor == MAILDIR_COURIER && flags_have_keywords(m->pub.flags))
			f->ckw_dirty = true;
		return 0;
	}
	*error_r = err_errno(errno, "%s: unlink %s: %s", f->where, mname(m, nbuf),
	                     strerror(errno));
	return -1;
}

int
maildir_expunge(struct maildir_folder *f, uint32_t uid, const char **error_r)
{
	bool found;
	size_t i;

	/* No lock: unlinking a message is what Dovecot does without it; its
	 * line goes at the next commit (a line without a file counts as
	 * expunged meanwhile). */
	i = msg_index(f, uid, &found);
	if (!found) {
		*error_r = err_set("%s: no message with UID %u", f->where, uid);
		return -1;
	}
	if (unlink_mfile(f, f->msgs[i], error_r) < 0)
		return -1;
	mfile_free(f, f->msgs[i]);
	memmove(&f->msgs[i], &f->msgs[i + 1], (f->nmsgs - i - 1) * sizeof(*f->msgs));
	f->nmsgs--;
	i = rec_index(&f->ul, uid, &found);
	if (found) {
		/* (its strings stay in the pool until the next load) */
		memmove(&f->ul.recs[i], &f->ul.recs[i + 1],
		        (f->ul.nrecs - i - 1) * sizeof(*f->ul.recs));
		f->ul.nrecs--;
		f->dirty = true;
		if (uid <= f->disk_maxuid)
			f->need_rewrite = true; /* a line on disk goes */
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
	/* the server can number an unlisted file at any time: keep it from
	 * doing so until the commit (maildir_folder_lock()) */
	if (maildir_folder_lock(f, error_r) < 0) {
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
	mfile_free(f, f->unl[i]);
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
		char name[MNAME_SIZE], cur[MNAME_SIZE];

		snprintf(name, sizeof(name), "%s:2,", m->pub.base);
		if (renameat(f->newfd, mname(m, cur), f->curfd, name) < 0) {
			*error_r = err_errno(errno, "%s: rename new/%s: %s", f->where, cur,
			                   strerror(errno));
			return -1;
		}
		mfile_set(f, m, m->pub.flags, ":2,");
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
	char nbuf[MNAME_SIZE];
	int fd = openat(dirfd_of(f, m), fsname_of(m, nbuf), O_RDONLY | O_NOFOLLOW |
	                O_CLOEXEC);

	if (fd < 0 && errno == ENOENT && relocate(f, m) == 0)
		fd = openat(dirfd_of(f, m), mname(m, nbuf), O_RDONLY | O_NOFOLLOW |
		            O_CLOEXEC);
	if (fd < 0) {
		*error_r = err_set("%s: open %s: %s", f->where, fsname_of(m, nbuf),
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
	char nbuf[MNAME_SIZE];
	int fd;

	if (m == NULL) {
		*error_r = err_set("%s: no message with UID %u", f->where, uid);
		return -1;
	}
	if (open_mfile(f, m, &fd, error_r) < 0)
		return -1;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		*error_r = err_set("%s: %s is not a regular file", f->where,
		                   fsname_of(m, nbuf));
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
	char *chunk, nbuf[MNAME_SIZE];
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
	memset(&cnt, 0, sizeof(cnt));
	chunk = folder_iobuf(f);
	for (;;) {
		ssize_t n = read(fd, chunk, IO_CHUNK);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*error_r = err_errno(errno, "%s: read %s: %s", f->where,
			                     fsname_of(m, nbuf),
			                   strerror(errno));
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		count_bytes(&cnt, chunk, (size_t)n);
	}
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

/* fdatasync() of a set of open files by a few threads at once: the file
 * system commits its journal once for all the calls waiting at that
 * moment (ext4's jbd2, XFS's log force), where one call after another
 * would pay one journal commit and cache flush per file. The threads
 * share only this struct: the fds are read-only, the counters atomic. */
#define SYNC_THREADS 16
#define SYNC_CHUNK 256          /* files open at once */

struct sync_job {
	const int *fds;
	size_t n;
	atomic_size_t next;
	atomic_size_t failed;   /* index + 1 of a failed file, 0 if none */
	atomic_int failed_errno;
};

static void *
sync_worker(void *arg)
{
	struct sync_job *j = arg;

	for (;;) {
		size_t i = atomic_fetch_add(&j->next, 1);
		size_t none = 0;

		if (i >= j->n)
			break;
		if (fdatasync(j->fds[i]) < 0 &&
		    atomic_compare_exchange_strong(&j->failed, &none, i + 1))
			atomic_store(&j->failed_errno, errno);
	}
	return NULL;
}

/* fdatasyncs fds[0..n); returns -1 and sets *failed_r, *errno_r for a
 * failed one. */
static int
sync_fds(const int *fds, size_t n, size_t *failed_r, int *errno_r)
{
	struct sync_job j = { .fds = fds, .n = n };
	pthread_t th[SYNC_THREADS];
	size_t nth = 0, want = n < SYNC_THREADS ? n : SYNC_THREADS;

	atomic_init(&j.next, 0);
	atomic_init(&j.failed, 0);
	atomic_init(&j.failed_errno, 0);
	/* the calling thread is one of the workers */
	for (size_t i = 1; i < want; i++) {
		if (pthread_create(&th[nth], NULL, sync_worker, &j) != 0)
			break;  /* fewer threads: slower, still complete */
		nth++;
	}
	sync_worker(&j);
	for (size_t i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	if (atomic_load(&j.failed) != 0) {
		*failed_r = atomic_load(&j.failed) - 1;
		*errno_r = atomic_load(&j.failed_errno);
		return -1;
	}
	return 0;
}

/* Makes the batch's files durable (pending ones in tmp/, adopted ones
 * where they are) before they are published and listed: an fdatasync of
 * each, issued in parallel (sync_fds()), SYNC_CHUNK files at a time.
 * deliver() started their write-back (sync_file_range), so this mostly
 * waits for writes already under way. Not syncfs(): on a shared mail
 * spool it would flush every user's pending writes, and its errors may
 * belong to other files. */
static int
sync_files(struct maildir_folder *f, const char **error_r)
{
	int fds[SYNC_CHUNK];
	struct mfile *ms[SYNC_CHUNK];
	char nbuf[MNAME_SIZE];
	size_t nfd = 0, i = 0;
	int ret = 0;

	/* --fsync=fs: the administrator's choice for a file system that
	 * only the copy writes to (a new server before its cutover): one
	 * write-back of the whole file system and one journal commit per
	 * batch. On a shared mail spool it would flush every user's
	 * pending writes too, hence not the default. syncfs() reports a
	 * write-back error seen since the fd was opened (Linux >= 5.8). */
	if (f->o.fsync_fs) {
		if (f->nsynced > 0 && syncfs(f->tmpfd) < 0) {
			*error_r = err_errno(errno, "%s: syncfs: %s", f->where,
			                     strerror(errno));
			return -1;
		}
		md_lock_touch(&f->lock);
		return 0;
	}

	while (ret == 0 && (i < f->nsynced || nfd > 0)) {
		if (i < f->nsynced && nfd < SYNC_CHUNK) {
			struct mfile *m = msg_lookup(f, f->synced[i++]);
			int fd;

			if (m == NULL)
				continue;       /* expunged since */
			fd = openat(dirfd_of(f, m), fsname_of(m, nbuf), O_RDONLY |
			            O_NOFOLLOW | O_CLOEXEC);
			if (fd < 0 && errno == ENOENT && relocate(f, m) == 0)
				fd = openat(dirfd_of(f, m), mname(m, nbuf), O_RDONLY |
				            O_NOFOLLOW | O_CLOEXEC);
			if (fd < 0 && errno == ENOENT && m->tmpname == NULL)
				continue;       /* removed by someone else */
			if (fd < 0) {
				*error_r = err_errno(errno, "%s: open %s%s: %s", f->where,
				                     m->tmpname != NULL ? "tmp/" : "",
				                     fsname_of(m, nbuf), strerror(errno));
				ret = -1;
				break;
			}
			fds[nfd] = fd;
			ms[nfd++] = m;
			continue;
		}
		{
			size_t bad;
			int e;

			if (sync_fds(fds, nfd, &bad, &e) < 0) {
				*error_r = err_errno(e, "%s: fdatasync %s: %s", f->where,
				                     fsname_of(ms[bad], nbuf), strerror(e));
				ret = -1;
			}
		}
		for (size_t k = 0; k < nfd; k++)
			close(fds[k]);
		nfd = 0;
		md_lock_touch(&f->lock);
	}
	for (size_t k = 0; k < nfd; k++)
		close(fds[k]);
	return ret;
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
		char nbuf[MNAME_SIZE];

		if (m == NULL || m->tmpname == NULL)
			continue;
		if (renameat(f->curfd, mname(m, nbuf), f->tmpfd, m->tmpname) < 0) {
			log_warn("%s: moving cur/%s back to tmp/ after a failed "
			         "commit: %s; it stays without a uidlist line",
			         f->where, nbuf, strerror(errno));
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
		char nbuf[MNAME_SIZE];

		if (m == NULL || m->tmpname == NULL)
			continue;
		if (renameat(f->tmpfd, m->tmpname, f->curfd, mname(m, nbuf)) < 0) {
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

/* true if f->dkw[] defines letters dovecot-keywords does not have yet */
static bool
dkw_unwritten(const struct maildir_folder *f)
{
	if (f->o.flavor != MAILDIR_DOVECOT)
		return false;
	for (int i = 0; i < MD_MAX_KEYWORDS; i++) {
		if (f->dkw[i] != NULL && (f->dkw_disk & (1u << i)) == 0)
			return true;
	}
	return false;
}

/* The UIDNEXT a server takes from the uidlist on disk: Dovecot max(N,
 * last + 1), Courier the header's N alone. */
static uint32_t
disk_uidnext(const struct maildir_folder *f)
{
	uint32_t n = f->have_uidlist ? f->ul.uidnext : 1;

	if (f->o.flavor == MAILDIR_COURIER)
		return n;
	return f->disk_maxuid >= n ? f->disk_maxuid + 1 : n;
}

/* Appends the lines of the records above disk_maxuid to dovecot-uidlist,
 * as Dovecot does when it only adds records: under the lock, to the file
 * we read (same inode and size), which must end in LF (a torn last line
 * would otherwise merge with ours). The header stays: readers take
 * max(N, last UID + 1). Space is reserved first (fallocate), so a full
 * disk fails before a byte is written; a failing write is cut back to
 * the old size. Returns 1 when appended, 0 when the file cannot take an
 * append (the caller rewrites it), -1 with *error_r. */
static int
uidlist_append(struct maildir_folder *f, const char **error_r)
{
	bool found;
	size_t from = rec_index(&f->ul, f->disk_maxuid + 1, &found);
	struct buf b;
	struct stat st;
	char last;
	int fd, ret = -1;

	fd = openat(f->dirfd, MD_UIDLIST_DOVECOT, O_RDWR | O_APPEND | O_NOFOLLOW |
	            O_CLOEXEC);
	if (fd < 0)
		return 0;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_ino != f->ul_st.st_ino || st.st_dev != f->ul_st.st_dev ||
	    st.st_size != f->ul_st.st_size || st.st_size == 0 ||
	    pread(fd, &last, 1, st.st_size - 1) != 1 || last != '\n') {
		close(fd);
		return 0;
	}
	buf_init(&b, MD_META_MAX);
	if (md_uidlist_format_recs(&b, MAILDIR_DOVECOT, f->ul.recs + from,
	                           f->ul.nrecs - from) < 0 ||
	    (uint64_t)st.st_size + buf_len(&b) >= MD_META_MAX) {
		*error_r = err_set("%s: uidlist too large (limit %u bytes)", f->where,
		                   MD_META_MAX);
		goto out;
	}
	if (buf_len(&b) > 0 &&
	    fallocate(fd, FALLOC_FL_KEEP_SIZE, st.st_size, (off_t)buf_len(&b)) < 0 &&
	    errno != EOPNOTSUPP && errno != ENOSYS) {
		*error_r = err_errno(errno, "%s: %s: %s", f->where, MD_UIDLIST_DOVECOT,
		                     strerror(errno));
		goto out;
	}
	/* one write: a reader sees whole lines, plus at most a last line
	 * without its LF that it ignores until the rest arrives */
	if (md_write_all(fd, buf_data(&b), buf_len(&b)) < 0 ||
	    (f->o.fsync && fdatasync(fd) < 0)) {
		int e = errno;

		if (ftruncate(fd, st.st_size) < 0)
			log_warn("%s: cutting %s back after a failed append: %s",
			         f->where, MD_UIDLIST_DOVECOT, strerror(errno));
		*error_r = err_errno(e, "%s: appending to %s: %s", f->where,
		                     MD_UIDLIST_DOVECOT, strerror(e));
		goto out;
	}
	f->ul_bytes += buf_len(&b);
	ret = 1;
out:
	if (close(fd) < 0 && ret == 1) {
		*error_r = err_errno(errno, "%s: close %s: %s", f->where,
		                     MD_UIDLIST_DOVECOT, strerror(errno));
		ret = -1;
	}
	buf_free(&b);
	return ret;
}

/* Replaces the whole uidlist (temporary file + rename). */
static int
uidlist_rewrite(struct maildir_folder *f, uint32_t v, uint32_t n,
                const char **error_r)
{
	struct buf b;
	const char *err;
	char tmpname[600];
	int r;

	/* below the cap by one byte: what md_read_at() reads back */
	buf_init(&b, MD_META_MAX - 1);
	if (md_uidlist_format(&b, f->o.flavor, v, n, f->ul.hdr_extra, f->ul.recs,
	                      f->ul.nrecs) < 0) {
		buf_free(&b);
		*error_r = err_set("%s: uidlist too large (limit %u bytes)", f->where,
		                   MD_META_MAX);
		return -1;
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
	if (r < 0) {
		buf_free(&b);
		*error_r = err_wrap(err, "%s: %s", f->where, err);
		return -1;
	}
	f->ul_bytes += buf_len(&b);
	f->ul_rewrites++;
	buf_free(&b);
	return 0;
}

int
maildir_folder_commit(struct maildir_folder *f, const char **error_r)
{
	uint32_t v, n, mx;
	struct stat st;
	bool published, rewrite;
	int r;

	if (f->lock.fd < 0 && !f->dirty && !f->ckw_dirty && f->nlost == 0 &&
	    !dkw_unwritten(f) &&
	    (f->set_v == 0 || (f->have_uidlist && f->set_v == f->ul.uidvalidity)) &&
	    (f->set_n == 0 || (f->have_uidlist && f->set_n <= disk_uidnext(f))))
		return 0;
	/* The batch's data first, before the lock: the files are ours, in
	 * tmp/, and the server waits for the lock, not for our disk. */
	if (f->o.fsync && sync_files(f, error_r) < 0) {
		/* as every failed commit: the lock (maildir_folder_lock()) goes */
		md_lock_release(lockdirfd(f), f->lockspec, &f->lock);
		f->lock_explicit = false;
		return -1;
	}
	f->lock_explicit = false;       /* commit releases the lock anyway */
	if (lock_folder(f, error_r) < 0)
		return -1;
	if (f->nlost > 0) {
		/* the server numbered mail (or raised N) meanwhile: those
		 * UIDs are no longer ours to give */
		*error_r = err_set("%s: the server gave out UIDs up to %u since "
		                   "the folder was read; %zu uncommitted deliveries "
		                   "from UID %u on were dropped (they cannot keep "
		                   "their UIDs)", f->where, f->lost_floor - 1,
		                   f->nlost, f->lost_first);
		f->nlost = 0;
		goto fail;
	}
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
	if (v == 0 || (!f->dirty && !f->ckw_dirty && !dkw_unwritten(f) &&
	               f->have_uidlist && n == disk_uidnext(f))) {
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
	/* Keyword letters of the batch, before any file using them is in
	 * cur/ (Dovecot would record an undefined letter as unknown-N). */
	if (dkw_unwritten(f) && kw_flush(f, error_r) < 0)
		goto fail;
	/* Publish the pending files (their data is on disk: sync_files()
	 * above), then list them. Until the uidlist names them any failure
	 * moves them back to tmp/, so the server never numbers a file of
	 * ours itself. */
	if (publish(f, &published, error_r) < 0)
		goto fail;
	if (f->o.fsync && sync_dirs(f, published, error_r) < 0)
		goto fail_unpublish;
	if (f->o.flavor == MAILDIR_COURIER && f->ckw_dirty &&
	    write_courier_keywords(f, error_r) < 0)
		goto fail_unpublish;

	/* Dovecot: new lines only are appended, as Dovecot itself does;
	 * the whole file is rewritten when a line on disk changes, the
	 * header changes (a new UIDVALIDITY, an N above what the lines
	 * imply), or the file cannot take an append. Courier takes the
	 * header's next UID for new mail and never max(UID) + 1, and reads
	 * a torn last line as a record: always a rewrite. */
	rewrite = f->o.flavor == MAILDIR_COURIER || !f->have_uidlist ||
	          f->ul.version != 3 || f->need_rewrite || f->ul.uidvalidity != v ||
	          n != (f->ul.uidnext > mx ? f->ul.uidnext : mx + 1);
	r = rewrite ? 0 : uidlist_append(f, error_r);
	if (r == 0) {
		rewrite = true;
		r = uidlist_rewrite(f, v, n, error_r);
	}
	if (r < 0)
		goto fail_unpublish;
	/* the uidlist names the published files now */
	publish_done(f);
	if (f->o.fsync && rewrite &&
	    fsync_fd(f->dirfd, "folder directory", f, error_r) < 0)
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
	if (rewrite) {
		f->ul.version = f->o.flavor == MAILDIR_COURIER ? 1 : 3;
		f->ul.uidvalidity = v;
		f->ul.uidnext = n;
		f->ul.torn = f->ul.unsorted = false;
		f->need_rewrite = false;
	}
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
