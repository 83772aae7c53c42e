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

/* Room for a message file name built by mr_name(): the name of a file
 * read from a directory fits in NAME_MAX; our own names (deliver) have a
 * base of at most ~560 bytes and a suffix of ":2," and 31 letters. */
#define MNAME_SIZE 1024
/* Bytes read from the uidlist at a time to get a record's line back: a
 * sequential walk reads ~50 lines per pread, a lookup one small block. */
#define LINE_READ 4096

/* One message file (listed, pending or unlisted): 16 bytes (issue 15).
 * Its base name is not stored here: ref says where it is. For a line of
 * the uidlist as we last read or wrote it, ref is the line's byte offset
 * in that file (f->ulfd keeps its inode open: Dovecot appends in place
 * and replaces the file by rename, so the offset stays valid); the line
 * is read back and parsed when the base or ext is needed (rec_name()).
 * With MR_POOL (a pending delivery, an adopted file before the commit
 * that writes its line, an unlisted file) ref is the offset of
 * "<base>\0<ext>\0" in f->names. The flags and the name's suffix (the
 * rest of the file name after the base: ":2,S", or "" for a name without
 * flags part) are one interned pair, its id in meta above MR_ID_SHIFT:
 * the name in cur/ or new/ is base + suffix, for a pending delivery the
 * name it gets in cur/. A pending delivery's name in tmp/ is its base up
 * to the first ',' (deliver() names it so; the host name has its ','
 * escaped). */
struct mrec {
	uint32_t uid;           /* 0: unlisted */
	uint32_t meta;          /* MR_* bits, interned pair id << MR_ID_SHIFT */
	uint32_t ref;
	uint32_t mtime;         /* epoch seconds; MR_MTIME_NONE: stat it */
};

#define MR_NEW 1u               /* in new/ */
#define MR_PENDING 2u           /* in tmp/ until commit publishes it */
#define MR_POOL 4u              /* ref is into f->names */
#define MR_ID_SHIFT 3
#define MR_MTIME_NONE UINT32_MAX

/* Interned strings: a set of distinct (flags, name suffix) pairs (a
 * folder has few distinct values), each stored once as "<flags>\0<suffix>"
 * and numbered, valid until close. */
struct istr {
	uint32_t *slot;         /* open addressing: id + 1, 0 = free */
	size_t n, cap;          /* cap a power of 2, or 0 */
	const char **byid;      /* n pairs */
	size_t abyid;
	struct md_pool pool;
};

/* RFC822.SIZE of messages whose name and line do not give it (Courier,
 * Dovecot without W=), as maildir_msg_size() counted it or a Courier
 * delivery wrote it: open addressing by UID. */
struct szent {
	uint32_t uid;           /* 0 = free */
	uint64_t size;
};

/* A Courier keyword-update file to remove once :list holds its state. */
struct ckw_update {
	char *name;
};

struct sync_bg;
static void bg_join(struct maildir_folder *f);
static void bg_kick(struct maildir_folder *f);

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

	/* uidlist: its header as read or written (ul.recs only inside
	 * load()); the records are in msgs (with a file) and gone (without) */
	struct md_uidlist ul;
	bool have_uidlist;
	struct stat ul_st;
	int ulfd;               /* the uidlist the disk records' offsets are
	                           of, or -1 */
	char *lc;               /* a block of it (line_at()) */
	size_t lc_alloc, lc_len;
	uint64_t lc_off;
	struct buf names;       /* MR_POOL strings "<base>\0<ext>\0" */
	struct buf sb, se;      /* rec_name(): base and ext */
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
	unsigned int hash_bits; /* test hook: base hashes cut to this many bits
	                           (IMAPFERRY_TEST_MD_HASH_BITS), 64 normally */
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
	struct istr istr;       /* flags and name suffixes */
	struct mrec *msgs;      /* listed, sorted by UID */
	size_t nmsgs, amsgs;
	struct md_rec *gone;    /* uidlist lines without a file, by UID */
	size_t ngone, agone;
	struct mrec *unl;       /* unlisted, sorted by base */
	size_t nunl, aunl;
	struct szent *szc;      /* see struct szent */
	size_t nszc, cszc;
	uint32_t *synced;       /* UIDs delivered or adopted since the last
	                           commit, ascending (pending ones among them) */
	size_t nsynced, asynced;
	/* synced[0..nbg) were handed to background fdatasyncs (bg_kick());
	 * the commit waits for them and syncs only the rest */
	size_t nbg;
	struct sync_bg *bg;     /* the chunk being synced, or NULL */
	uint32_t bg_bad_uid;    /* a background fdatasync failed: this UID */
	int bg_errno;
	bool bg_off;            /* a file could not be opened for it: the
	                           commit syncs (and reports) the rest */
	bool sync_by_journal;   /* md_journal_orders_writes(): files are
	                           synced by waiting for their write-back, the
	                           commit's next fsync makes them durable */
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

/* Grows an array of elements of size sz to hold n + 1. */
static void *
grow(void *arr, size_t n, size_t *alloc, size_t sz)
{
	if (n < *alloc)
		return arr;
	*alloc = *alloc == 0 ? 64 : *alloc * 2;
	return xreallocarray(arr, *alloc, sz);
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

/* The id of the interned pair "<flags>\0<suffix>" (valid until the folder
 * is closed). */
static uint32_t
istr_id(struct istr *t, const char *flags, const char *suffix)
{
	size_t lf = strlen(flags), ls = strlen(suffix), i;
	char *key = xmalloc(lf + ls + 2);
	const char *s;

	memcpy(key, flags, lf + 1);
	memcpy(key + lf + 1, suffix, ls + 1);
	if (t->n * 2 >= t->cap) {
		size_t ncap = t->cap == 0 ? 64 : t->cap * 2;
		uint32_t *ns = xcalloc(ncap, sizeof(*ns));

		for (size_t j = 0; j < t->cap; j++) {
			if (t->slot[j] == 0)
				continue;
			i = (size_t)istr_hash(t->byid[t->slot[j] - 1]) & (ncap - 1);
			while (ns[i] != 0)
				i = (i + 1) & (ncap - 1);
			ns[i] = t->slot[j];
		}
		free(t->slot);
		t->slot = ns;
		t->cap = ncap;
	}
	i = (size_t)istr_hash(key) & (t->cap - 1);
	while (t->slot[i] != 0) {
		const char *e = t->byid[t->slot[i] - 1];

		if (strcmp(e, flags) == 0 && strcmp(e + lf + 1, suffix) == 0) {
			free(key);
			return t->slot[i] - 1;
		}
		i = (i + 1) & (t->cap - 1);
	}
	if (t->n >= (UINT32_MAX >> MR_ID_SHIFT))
		fatal("maildir: too many distinct flag sets");
	t->byid = grow(t->byid, t->n, &t->abyid, sizeof(*t->byid));
	s = md_pool_strndup(&t->pool, key, lf + ls + 1);
	t->byid[t->n] = s;
	t->slot[i] = (uint32_t)++t->n;
	free(key);
	return (uint32_t)(t->n - 1);
}

static void
istr_free(struct istr *t)
{
	free(t->slot);
	free(t->byid);
	md_pool_free(&t->pool);
	memset(t, 0, sizeof(*t));
}

/* r's flags (interned) and the suffix of its file name behind them. */
static const char *
mr_flags(const struct maildir_folder *f, const struct mrec *r)
{
	return f->istr.byid[r->meta >> MR_ID_SHIFT];
}

static const char *
mr_suffix(const struct maildir_folder *f, const struct mrec *r)
{
	const char *fl = mr_flags(f, r);

	return fl + strlen(fl) + 1;
}

/* Gives r the flags and name suffix given (interned). */
static void
mr_set(struct maildir_folder *f, struct mrec *r, const char *flags,
       const char *suffix)
{
	r->meta = (r->meta & ((1u << MR_ID_SHIFT) - 1)) |
	          istr_id(&f->istr, flags, suffix) << MR_ID_SHIFT;
}

/* Same with flags a new string, which it frees. */
static void
mr_take(struct maildir_folder *f, struct mrec *r, char *flags, const char *suffix)
{
	mr_set(f, r, flags, suffix);
	free(flags);
}

static uint32_t
mtime32(int64_t t)
{
	return t >= 0 && t < (int64_t)MR_MTIME_NONE ? (uint32_t)t : MR_MTIME_NONE;
}

/* ":2,<letters>" into buf (MNAME_SIZE bytes). */
static const char *
suffix_of(const char *letters, char *buf)
{
	snprintf(buf, MNAME_SIZE, ":2,%s", letters);
	return buf;
}

/* Adds "<base>\0<ext>\0" to f->names; returns its offset. */
static uint32_t
names_add(struct maildir_folder *f, const char *base, size_t blen,
          const char *ext, size_t elen)
{
	size_t off = buf_len(&f->names);

	if (buf_append(&f->names, base, blen) < 0 ||
	    buf_append(&f->names, "", 1) < 0 ||
	    buf_append(&f->names, ext, elen) < 0 ||
	    buf_append(&f->names, "", 1) < 0)
		fatal("maildir: %s: more than 4 GB of file names", f->where);
	return (uint32_t)off;
}

/* The uidlist line (without LF) at byte offset off of f->ulfd, in f->lc:
 * valid until the next call. */
static int
line_at(struct maildir_folder *f, uint32_t off, const char **line_r,
        size_t *len_r, const char **error_r)
{
	size_t want = LINE_READ;

	if (off >= f->lc_off && off - f->lc_off < f->lc_len) {
		const char *p = f->lc + (off - f->lc_off);
		const char *nl = memchr(p, '\n', f->lc_len - (size_t)(off - f->lc_off));

		if (nl != NULL) {
			*line_r = p;
			*len_r = (size_t)(nl - p);
			return 0;
		}
	}
	for (;;) {
		ssize_t n;
		const char *nl;

		if (f->lc_alloc < want) {
			free(f->lc);
			f->lc = xmalloc(want);
			f->lc_alloc = want;
		}
		f->lc_len = 0;
		do
			n = f->ulfd < 0 ? -1 : pread(f->ulfd, f->lc, want, off);
		while (n < 0 && errno == EINTR);
		if (n < 0) {
			*error_r = err_errno(errno, "%s: reading %s back: %s", f->where,
			                     uidlist_name(f), f->ulfd < 0 ? "not open" :
			                     strerror(errno));
			return -1;
		}
		f->lc_off = off;
		f->lc_len = (size_t)n;
		nl = memchr(f->lc, '\n', (size_t)n);
		if (nl != NULL) {
			*line_r = f->lc;
			*len_r = (size_t)(nl - f->lc);
			return 0;
		}
		if ((size_t)n < want || want >= MD_META_MAX) {
			*error_r = err_set("%s: %s: the line at offset %u is gone",
			                   f->where, uidlist_name(f), off);
			return -1;
		}
		want *= 2;
	}
}

/* The base and ext of a record (meta, ref) into f->sb and f->se. Returns
 * the base (valid until the next call), or NULL with *error_r. */
static const char *
rec_name(struct maildir_folder *f, uint32_t meta, uint32_t ref,
         const char **error_r)
{
	const char *base, *line, *why;
	size_t blen, len;
	uint32_t uid;

	buf_reset(&f->sb);
	if ((meta & MR_POOL) != 0) {
		base = buf_data(&f->names) + ref;
		blen = strlen(base);
		buf_reset(&f->se);
		if (buf_append_str(&f->se, base + blen + 1) < 0)
			fatal("maildir: ext too long");
	} else {
		if (line_at(f, ref, &line, &len, error_r) < 0)
			return NULL;
		if (md_uidlist_line(line, len, f->ul.version, &uid, &f->se, &base, &blen,
		                    &why) < 0) {
			*error_r = err_set("%s: %s: the line at offset %u changed (%s)",
			                   f->where, uidlist_name(f), ref, why);
			return NULL;
		}
	}
	if (buf_append(&f->sb, base, blen) < 0)
		fatal("maildir: base too long");
	return buf_data(&f->sb);
}

/* The directory holding r's file now. */
static int
mr_dirfd(const struct maildir_folder *f, const struct mrec *r)
{
	if ((r->meta & MR_PENDING) != 0)
		return f->tmpfd;
	return (r->meta & MR_NEW) != 0 ? f->newfd : f->curfd;
}

/* r's file name in cur/ or new/ (for a pending delivery the one it gets
 * in cur/), built into buf (MNAME_SIZE bytes); NULL with *error_r. */
static const char *
mr_name(struct maildir_folder *f, const struct mrec *r, char *buf,
        const char **error_r)
{
	const char *base = rec_name(f, r->meta, r->ref, error_r);

	if (base == NULL)
		return NULL;
	if ((size_t)snprintf(buf, MNAME_SIZE, "%s%s", base, mr_suffix(f, r)) >= MNAME_SIZE) {
		*error_r = err_set("%s: file name too long: %.100s", f->where, base);
		return NULL;
	}
	return buf;
}

/* The name of r's file in the directory mr_dirfd() gives. */
static const char *
mr_fsname(struct maildir_folder *f, const struct mrec *r, char *buf,
          const char **error_r)
{
	const char *base;

	if ((r->meta & MR_PENDING) == 0)
		return mr_name(f, r, buf, error_r);
	base = rec_name(f, r->meta, r->ref, error_r);
	if (base == NULL)
		return NULL;
	snprintf(buf, MNAME_SIZE, "%.*s", (int)strcspn(base, ","), base);
	return buf;
}

static size_t
msg_index(const struct maildir_folder *f, uint32_t uid, bool *found_r)
{
	size_t lo = 0, hi = f->nmsgs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (f->msgs[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found_r = lo < f->nmsgs && f->msgs[lo].uid == uid;
	return lo;
}

static struct mrec *
msg_lookup(const struct maildir_folder *f, uint32_t uid)
{
	bool found;
	size_t i = msg_index(f, uid, &found);

	return found ? &f->msgs[i] : NULL;
}

static uint32_t
max_uid(const struct maildir_folder *f)
{
	uint32_t a = f->nmsgs > 0 ? f->msgs[f->nmsgs - 1].uid : 0;
	uint32_t b = f->ngone > 0 ? f->gone[f->ngone - 1].uid : 0;

	return a > b ? a : b;
}

/* ---- the size cache (struct szent) ---- */

static size_t
szc_slot(const struct szent *t, size_t cap, uint32_t uid)
{
	size_t i = (size_t)(uid * 2654435761u) & (cap - 1);

	while (t[i].uid != 0 && t[i].uid != uid)
		i = (i + 1) & (cap - 1);
	return i;
}

static void
szc_put(struct maildir_folder *f, uint32_t uid, uint64_t size)
{
	size_t i;

	if (uid == 0)
		return;
	if ((f->nszc + 1) * 2 > f->cszc) {
		size_t ncap = f->cszc == 0 ? 64 : f->cszc * 2;
		struct szent *nt = xcalloc(ncap, sizeof(*nt));

		for (size_t j = 0; j < f->cszc; j++) {
			if (f->szc[j].uid != 0)
				nt[szc_slot(nt, ncap, f->szc[j].uid)] = f->szc[j];
		}
		free(f->szc);
		f->szc = nt;
		f->cszc = ncap;
	}
	i = szc_slot(f->szc, f->cszc, uid);
	if (f->szc[i].uid == 0)
		f->nszc++;
	f->szc[i].uid = uid;
	f->szc[i].size = size;
}

static uint64_t
szc_get(const struct maildir_folder *f, uint32_t uid)
{
	size_t i;

	if (f->cszc == 0 || uid == 0)
		return MAILDIR_SIZE_UNKNOWN;
	i = szc_slot(f->szc, f->cszc, uid);
	return f->szc[i].uid == uid ? f->szc[i].size : MAILDIR_SIZE_UNKNOWN;
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
		struct mrec *r = &f->msgs[i];
		char nbuf[MNAME_SIZE];
		const char *err;

		if ((r->meta & MR_PENDING) == 0)
			continue;
		if (mr_fsname(f, r, nbuf, &err) == NULL)
			log_warn("%s", err);
		else if (unlinkat(f->tmpfd, nbuf, 0) < 0 && errno != ENOENT)
			log_warn("%s: unlink tmp/%s: %s", f->where, nbuf, strerror(errno));
		r->meta &= ~MR_PENDING;
		n++;
	}
	return n;
}

/* Forgets the uidlist inode the records point into. */
static void
close_uidlist(struct maildir_folder *f)
{
	if (f->ulfd >= 0)
		close(f->ulfd);
	f->ulfd = -1;
	f->lc_len = 0;
}

static void
clear_state(struct maildir_folder *f)
{
	drop_pending(f);
	f->nmsgs = f->nunl = f->ngone = 0;
	buf_reset(&f->names);
	close_uidlist(f);
	md_uidlist_free(&f->ul);
	for (size_t i = 0; i < MD_MAX_KEYWORDS; i++)
		XFREE(f->dkw[i]);
	for (size_t i = 0; i < f->nckw_updates; i++)
		free(f->ckw_updates[i]);
	XFREE(f->ckw_updates);
	f->nckw_updates = 0;
	bg_join(f);
	f->nsynced = f->nbg = 0;
	f->bg_errno = 0;
	f->bg_off = false;
	f->have_uidlist = f->dkw_exists = f->ckw_exists = f->ckwdir_exists = false;
	f->used_letters = 0;
	f->dkw_disk = 0;
	f->dirty = f->dir_dirty = f->ckw_dirty = f->need_rewrite = false;
}

/* The hash of a base that matches scanned files to uidlist lines
 * (FNV-1a, 64 bits; fewer with the test hook, to force collisions). */
static uint64_t
base_hash(const struct maildir_folder *f, const char *s, size_t len)
{
	uint64_t h = 14695981039346656037u;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211u;
	return f->hash_bits >= 64 ? h : h & ((UINT64_C(1) << f->hash_bits) - 1);
}

/* load()'s index of the uidlist lines by the hash of their base, sorted
 * by (hash, line): a scanned file finds its line without the folder
 * holding every base (16 bytes a line, freed after the scan). */
struct hix {
	uint64_t h;
	uint32_t rec;           /* index in f->ul.recs */
	uint32_t claim;         /* index in f->msgs + 1 of its file, 0 if none */
};

static int
cmp_hix(const void *a, const void *b)
{
	const struct hix *x = a, *y = b;

	if (x->h != y->h)
		return x->h < y->h ? -1 : 1;
	return x->rec < y->rec ? -1 : (x->rec > y->rec);
}

/* The index entry of the line naming base (blen bytes), or NULL: of
 * several lines with the same base the last (highest UID) wins, as in
 * Dovecot. Hash hits are checked against the line's real base. */
static struct hix *
hix_find(struct maildir_folder *f, struct hix *ix, size_t n, const char *base,
         size_t blen, const char **error_r)
{
	uint64_t h = base_hash(f, base, blen);
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (ix[mid].h < h)
			lo = mid + 1;
		else
			hi = mid;
	}
	hi = lo;
	while (hi < n && ix[hi].h == h)
		hi++;
	while (hi-- > lo) {
		const char *b = rec_name(f, 0, f->ul.recs[ix[hi].rec].off, error_r);

		if (b == NULL)
			return (struct hix *)-1;
		if (buf_len(&f->sb) == blen && memcmp(b, base, blen) == 0)
			return &ix[hi];
	}
	return NULL;
}

static int
cmp_ckw_base(const void *a, const void *b)
{
	return strcmp(((const struct md_ckw_entry *)a)->base,
	              ((const struct md_ckw_entry *)b)->base);
}

static char *flags_from_letters(const struct maildir_folder *f, const char *letters,
                                const struct md_ckw_entry *ckw);

/* Scans one of cur/ and new/: a file a uidlist line names (ix) joins
 * f->msgs with the line's UID and offset (a base in both cur/ and new/
 * keeps the cur/ one; cur/ is scanned first), others join f->unl with
 * their base in f->names. */
static int
scan_dir(struct maildir_folder *f, bool in_new, struct hix *ix, size_t nix,
         const struct md_ckw *ckw, const char **error_r)
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
		struct mrec r = { 0 };
		const struct md_ckw_entry *e = NULL;
		const char *suffix, *letters;
		char key[sizeof(de->d_name)];
		struct hix *hit;
		size_t blen;

		if (de->d_name[0] == '.')
			continue;
		if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;       /* vanished, or a symlink: never a message */
		blen = md_name_base_len(de->d_name);
		memcpy(key, de->d_name, blen);
		key[blen] = '\0';
		suffix = de->d_name + blen;
		letters = in_new ? "" : md_name_letters(suffix);
		if (!in_new) {
			for (const char *p = letters; *p != '\0'; p++) {
				if (*p >= 'a' && *p <= 'z')
					f->used_letters |= 1u << (*p - 'a');
			}
		}
		if (f->o.flavor == MAILDIR_COURIER && ckw->n > 0) {
			struct md_ckw_entry k = { .base = key };

			e = bsearch(&k, ckw->e, ckw->n, sizeof(*ckw->e), cmp_ckw_base);
		}
		r.meta = in_new ? MR_NEW : 0;
		mr_take(f, &r, flags_from_letters(f, letters, e), suffix);
		r.mtime = mtime32((int64_t)st.st_mtime);
		hit = nix == 0 ? NULL : hix_find(f, ix, nix, key, blen, error_r);
		if (hit == (struct hix *)-1) {
			closedir(d);
			return -1;
		}
		if (hit != NULL) {
			r.uid = f->ul.recs[hit->rec].uid;
			r.ref = f->ul.recs[hit->rec].off;
			if (hit->claim != 0) {
				struct mrec *o = &f->msgs[hit->claim - 1];

				if ((o->meta & MR_NEW) != 0 && !in_new)
					*o = r;
				continue;
			}
			f->msgs = grow(f->msgs, f->nmsgs, &f->amsgs, sizeof(*f->msgs));
			f->msgs[f->nmsgs++] = r;
			hit->claim = (uint32_t)f->nmsgs;
		} else {
			r.meta |= MR_POOL;
			r.ref = names_add(f, key, blen, "", 0);
			f->unl = grow(f->unl, f->nunl, &f->aunl, sizeof(*f->unl));
			f->unl[f->nunl++] = r;
		}
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
cmp_mrec_uid(const void *a, const void *b)
{
	const struct mrec *x = a, *y = b;

	return x->uid < y->uid ? -1 : x->uid > y->uid;
}

/* Unlisted files by base (their bases are in names, the context). */
static int
cmp_unl_base(const void *a, const void *b, void *names)
{
	const struct mrec *x = a, *y = b;

	return strcmp((const char *)names + x->ref, (const char *)names + y->ref);
}

static void
sort_unlisted(struct maildir_folder *f)
{
	if (f->nunl > 1)
		qsort_r(f->unl, f->nunl, sizeof(*f->unl), cmp_unl_base,
		        (void *)buf_data(&f->names));
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

/* (Re)reads the uidlist and keywords and scans cur/ and new/. The
 * uidlist is parsed in chunks (its lines' UIDs and offsets only) and stays
 * open: the records read their names back from it. */
static int
load(struct maildir_folder *f, const char **error_r)
{
	struct md_ckw ckw = { 0 };
	struct hix *ix = NULL;
	struct buf b;
	struct stat st;
	const char *err;
	size_t j;
	int r, fd;

	clear_state(f);
	fd = openat(f->dirfd, uidlist_name(f), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno != ENOENT) {
		*error_r = err_errno(errno, "%s: open %s: %s", f->where, uidlist_name(f),
		                     strerror(errno));
		return -1;
	}
	if (fd >= 0 && (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))) {
		*error_r = err_set("%s: %s: not a regular file", f->where, uidlist_name(f));
		close(fd);
		return -1;
	}
	if (fd >= 0) {
		r = md_uidlist_parse_fd(fd, &f->ul, &err);
		if (r < 0) {
			*error_r = r == -1 ?
				err_wrap(err, "%s/%s is corrupt (%s); not touching the folder",
				         f->where, uidlist_name(f), err) :
				err_wrap(err, "%s: %s: %s", f->where, uidlist_name(f), err);
			close(fd);
			return -1;
		}
		f->ulfd = fd;
		f->ul_st = st;
		f->have_uidlist = f->ul.version != 0;
		/* appends need a sorted v3 file ending in LF: Dovecot
		 * rejects a file with lines out of order */
		f->need_rewrite = f->ul.unsorted || f->ul.torn;
		if (f->o.flavor == MAILDIR_COURIER && f->have_uidlist &&
		    f->ul.version != 1) {
			*error_r = err_set("%s/%s: unexpected version %d", f->where,
			                   uidlist_name(f), f->ul.version);
			return -1;
		}
	} else {
		memset(&f->ul_st, 0, sizeof(f->ul_st));
	}
	f->disk_maxuid = f->ul.nrecs > 0 ? f->ul.recs[f->ul.nrecs - 1].uid : 0;
	f->floor = f->have_uidlist ? f->ul.uidnext : 1;
	if (f->disk_maxuid >= f->floor)
		f->floor = f->disk_maxuid + 1;

	buf_init(&b, MD_META_MAX);
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

	/* the lines by the hash of their base, for scan_dir(); read in file
	 * order (a sequential read of the uidlist) */
	if (f->ul.nrecs > 0) {
		ix = xreallocarray(NULL, f->ul.nrecs, sizeof(*ix));
		for (size_t i = 0; i < f->ul.nrecs; i++) {
			const char *base = rec_name(f, 0, f->ul.recs[i].off, error_r);

			if (base == NULL) {
				free(ix);
				md_ckw_free(&ckw);
				return -1;
			}
			ix[i].h = base_hash(f, base, buf_len(&f->sb));
			ix[i].rec = (uint32_t)i;
			ix[i].claim = 0;
		}
		qsort(ix, f->ul.nrecs, sizeof(*ix), cmp_hix);
	}
	/* about one file per line: no doubling beyond that */
	if (f->amsgs < f->ul.nrecs) {
		f->amsgs = f->ul.nrecs;
		f->msgs = xreallocarray(f->msgs, f->amsgs, sizeof(*f->msgs));
	}
	r = scan_dir(f, false, ix, f->ul.nrecs, &ckw, error_r);
	if (r == 0)
		r = scan_dir(f, true, ix, f->ul.nrecs, &ckw, error_r);
	md_ckw_free(&ckw);
	if (r < 0) {
		free(ix);
		f->nmsgs = f->nunl = 0;
		return -1;
	}
	/* the lines without a file stay as lines (f->gone) */
	for (size_t i = 0; i < f->ul.nrecs; i++) {
		if (ix[i].claim != 0)
			f->ul.recs[ix[i].rec].uid = 0;
	}
	free(ix);
	j = 0;
	for (size_t i = 0; i < f->ul.nrecs; i++) {
		if (f->ul.recs[i].uid != 0)
			f->ul.recs[j++] = f->ul.recs[i];
	}
	free(f->gone);
	f->gone = j > 0 ? xreallocarray(f->ul.recs, j, sizeof(*f->gone)) : NULL;
	if (j == 0)
		free(f->ul.recs);
	f->ngone = f->agone = j;
	f->ul.recs = NULL;
	f->ul.nrecs = f->ul.arecs = 0;
	if (f->nmsgs > 1)
		qsort(f->msgs, f->nmsgs, sizeof(*f->msgs), cmp_mrec_uid);
	/* by base; a base in both cur/ and new/ keeps the cur/ one */
	sort_unlisted(f);
	j = 0;
	for (size_t i = 0; i < f->nunl; i++) {
		if (j > 0 && strcmp(buf_data(&f->names) + f->unl[j - 1].ref,
		                    buf_data(&f->names) + f->unl[i].ref) == 0) {
			if ((f->unl[j - 1].meta & MR_NEW) != 0 &&
			    (f->unl[i].meta & MR_NEW) == 0)
				f->unl[j - 1] = f->unl[i];
			continue;
		}
		f->unl[j++] = f->unl[i];
	}
	f->nunl = j;
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

static void add_listed(struct maildir_folder *f, const struct mrec *r);
static void letters_mark(struct maildir_folder *f, struct md_flags *fl, bool set[128],
                         bool *kw_defined_r);
static void letters_emit(const struct maildir_folder *f, const bool set_in[128],
                         const char *old_letters, char *out);

/* Gives a pending Dovecot delivery the keyword letters its flags have in
 * f->dkw now (defining letters as needed): its final name in cur/ is
 * only used at commit, so it may change until then. */
static void
pending_rename_letters(struct maildir_folder *f, struct mrec *r)
{
	struct md_flags fl;
	bool set[128] = { false }, defined = false;
	char letters[130], sbuf[MNAME_SIZE], *flags;

	if (f->o.flavor != MAILDIR_DOVECOT)
		return;
	md_flags_init(&fl);
	md_flags_parse(&fl, mr_flags(f, r));
	letters_mark(f, &fl, set, &defined);
	letters_emit(f, set, "", letters);
	flags = flags_from_letters(f, letters, NULL);
	if (strcmp(flags, mr_flags(f, r)) != 0)
		log_warn("%s: UID %u: the folder's keywords changed meanwhile; "
		         "stored as \"%s\" instead of \"%s\"", f->where,
		         r->uid, flags, mr_flags(f, r));
	mr_take(f, r, flags, suffix_of(letters, sbuf));
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
	struct mrec *pend = NULL;
	char **pbase = NULL, **pext = NULL;
	size_t npend = 0, j = 0;
	const char *err;
	int r;

	for (size_t i = 0; i < f->nmsgs; i++) {
		struct mrec *m = &f->msgs[i];
		const char *base;

		if ((m->meta & MR_PENDING) == 0) {
			f->msgs[j++] = *m;
			continue;
		}
		/* its name lives in what load() frees: copies meanwhile */
		base = rec_name(f, m->meta, m->ref, &err);
		if (base == NULL) {
			log_warn("%s", err);
			continue;
		}
		pend = xreallocarray(pend, npend + 1, sizeof(*pend));
		pbase = xreallocarray(pbase, npend + 1, sizeof(*pbase));
		pext = xreallocarray(pext, npend + 1, sizeof(*pext));
		pend[npend] = *m;
		pbase[npend] = xstrdup(base);
		pext[npend] = xstrdup(buf_data(&f->se));
		npend++;
	}
	f->nmsgs = j;
	r = load(f, error_r);
	for (size_t i = 0; i < npend; i++) {
		struct mrec *m = &pend[i];

		m->meta |= MR_POOL;
		m->ref = names_add(f, pbase[i], strlen(pbase[i]), pext[i], strlen(pext[i]));
		if (r < 0 || m->uid < f->floor) {
			char nbuf[MNAME_SIZE];

			snprintf(nbuf, sizeof(nbuf), "%.*s", (int)strcspn(pbase[i], ","),
			         pbase[i]);
			if (unlinkat(f->tmpfd, nbuf, 0) < 0 && errno != ENOENT)
				log_warn("%s: unlink tmp/%s: %s", f->where, nbuf,
				         strerror(errno));
			if (r == 0) {
				if (f->nlost++ == 0)
					f->lost_first = m->uid;
				f->lost_floor = f->floor;
			}
		} else {
			pending_rename_letters(f, m);
			add_listed(f, m);
		}
		free(pbase[i]);
		free(pext[i]);
	}
	free(pend);
	free(pbase);
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

/* The root directory exists: if it is ours (the effective user's) but
 * not the owner's asked for, a run was killed between its mkdir and its
 * chown, and the server could never read it: finished now. False with
 * *error_r when that fails. */
static bool
finish_own_dir(const char *path, const struct maildir_options *o,
               const char **error_r)
{
	struct stat st;
	bool ok = true;
	int fd;

	if ((o->owner == (uid_t)-1 && o->group == (gid_t)-1) ||
	    (fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return true;
	if (fstat(fd, &st) == 0 && st.st_uid == geteuid() &&
	    ((o->owner != (uid_t)-1 && st.st_uid != o->owner) ||
	     (o->group != (gid_t)-1 && st.st_gid != o->group)))
		ok = md_fix_owner(fd, o, o->dir_mode, path, error_r) == 0;
	close(fd);
	return ok;
}

/* mkdir -p of the trusted root path (each new directory appears with its
 * owner), then the root of an older run killed before its chown. */
static int
mkdir_parents(const char *path, const struct maildir_options *o,
              const char **error_r)
{
	if (md_mkdir_p(path, o, error_r) < 0)
		return -1;
	return finish_own_dir(path, o, error_r) ? 0 : -1;
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
	f->ulfd = -1;
	buf_init(&f->names, UINT32_MAX);
	buf_init(&f->sb, MD_META_MAX);
	buf_init(&f->se, MD_META_MAX);
	f->hash_bits = 64;
	{
		/* test hook: few hash bits force collisions of bases */
		const char *hb = getenv("IMAPFERRY_TEST_MD_HASH_BITS");
		uint64_t v;

		if (hb != NULL && str_to_u64z(hb, 64, &v) && v > 0)
			f->hash_bits = (unsigned int)v;
	}
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
	f->sync_by_journal = f->o.fsync && !f->o.fsync_fs &&
	                     md_journal_orders_writes(f->tmpfd);
	if (f->o.fsync && !f->o.fsync_fs)
		log_debug("%s: %s", f->where, f->sync_by_journal ?
		          "ext4 with a journal: a batch's files are synced by "
		          "waiting for their write-back, then one journal commit" :
		          "a batch's files are synced by an fdatasync each");
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
	bg_join(f);
	/* uncommitted deliveries were never published: remove them */
	drop_pending(f);
	if (f->lock.fd >= 0)
		md_lock_release(lockdirfd(f), f->lockspec, &f->lock);
	clear_state(f);
	istr_free(&f->istr);
	free(f->msgs);
	free(f->unl);
	free(f->gone);
	free(f->szc);
	free(f->lc);
	buf_free(&f->names);
	buf_free(&f->sb);
	buf_free(&f->se);
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

uint32_t
maildir_folder_uid(const struct maildir_folder *f, size_t i)
{
	return i < f->nmsgs ? f->msgs[i].uid : 0;
}

const char *
maildir_folder_flags(const struct maildir_folder *f, size_t i)
{
	return i < f->nmsgs ? mr_flags(f, &f->msgs[i]) : NULL;
}

/* Fills *m from r; false (with a warning) if its name cannot be read
 * back. */
static bool
fill(struct maildir_folder *f, const struct mrec *r, struct maildir_msg *m)
{
	const char *base, *ext, *err;
	size_t blen, room;
	uint64_t v;
	char *w;

	base = rec_name(f, r->meta, r->ref, &err);
	if (base == NULL) {
		log_warn("%s", err);
		return false;
	}
	blen = buf_len(&f->sb);
	if (blen >= sizeof(m->text)) {
		log_warn("%s: UID %u: base name too long", f->where, r->uid);
		return false;
	}
	ext = buf_data(&f->se);
	memset(m, 0, offsetof(struct maildir_msg, text));
	memcpy(m->text, base, blen + 1);
	m->base = m->text;
	m->uid = r->uid;
	m->in_new = (r->meta & MR_NEW) != 0;
	m->flags = mr_flags(f, r);
	m->mtime = r->mtime;
	m->size = MAILDIR_SIZE_UNKNOWN;
	if (!md_name_field(m->base, 'S', &m->file_size) || r->mtime == MR_MTIME_NONE) {
		char nbuf[MNAME_SIZE];
		struct stat st;

		/* not in the name: what the file says */
		if (mr_fsname(f, r, nbuf, &err) != NULL &&
		    fstatat(mr_dirfd(f, r), nbuf, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			if (!md_name_field(m->base, 'S', &m->file_size))
				m->file_size = (uint64_t)st.st_size;
			if (r->mtime == MR_MTIME_NONE)
				m->mtime = (int64_t)st.st_mtime;
		} else if (r->mtime == MR_MTIME_NONE) {
			m->mtime = 0;
		}
	}
	if (f->o.flavor == MAILDIR_DOVECOT && md_name_field(m->base, 'W', &v))
		m->size = v;
	if (m->size == MAILDIR_SIZE_UNKNOWN && (w = md_ext_get(ext, 'W')) != NULL) {
		if (str_to_u64z(w, UINT64_MAX, &v))
			m->size = v;
		free(w);
	}
	if (m->size == MAILDIR_SIZE_UNKNOWN)
		m->size = szc_get(f, r->uid);
	if ((w = md_ext_get(ext, 'P')) != NULL) {
		room = sizeof(m->text) - blen - 1;
		if (w[0] == '\0')
			m->pop3_uidl = m->base;
		else if (strlen(w) < room)
			m->pop3_uidl = memcpy(m->text + blen + 1, w, strlen(w) + 1);
		else
			log_warn("%s: UID %u: POP3 UIDL too long", f->where, r->uid);
		free(w);
	}
	return true;
}

bool
maildir_folder_msg(struct maildir_folder *f, size_t i, struct maildir_msg *m)
{
	return i < f->nmsgs && fill(f, &f->msgs[i], m);
}

bool
maildir_folder_find(struct maildir_folder *f, uint32_t uid, struct maildir_msg *m)
{
	struct mrec *r = msg_lookup(f, uid);

	if (r == NULL)
		return false;
	return m == NULL || fill(f, r, m);
}

size_t
maildir_folder_unlisted_count(const struct maildir_folder *f)
{
	return f->nunl;
}

bool
maildir_folder_unlisted(struct maildir_folder *f, size_t i, struct maildir_msg *m)
{
	return i < f->nunl && fill(f, &f->unl[i], m);
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

/* Records a listed message with a new UID (uid >= floor): its base and
 * ext are in f->names (MR_POOL) until the commit writes its line. */
static void
add_listed(struct maildir_folder *f, const struct mrec *r)
{
	f->msgs = grow(f->msgs, f->nmsgs, &f->amsgs, sizeof(*f->msgs));
	f->msgs[f->nmsgs++] = *r;
	f->floor = r->uid + 1;
	f->dirty = true;
	f->synced = grow(f->synced, f->nsynced, &f->asynced, sizeof(*f->synced));
	f->synced[f->nsynced++] = r->uid;
}

/* Records the file tmp/uniq (file_size bytes on disk, RFC822.SIZE size)
 * as a pending delivery of uid: its final name, flags and uidlist line.
 * On failure the caller removes tmp/uniq. */
static int relocate(struct maildir_folder *f, struct mrec *r);

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
	struct mrec r = { 0 };

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
	 * its line, even if we are killed now and it breaks our lock. Its
	 * name there is the base up to the first ',' (mr_fsname()). */
	mr_take(f, &r, courier ?
		md_flags_format(fl.sys, (const char *const *)fl.kw, fl.nkw) :
		flags_from_letters(f, letters, NULL), suffix_of(letters, sbuf));
	r.meta |= MR_PENDING | MR_POOL;
	r.uid = uid;
	r.mtime = mtime32(internaldate);
	/* the base with its line's ext fields behind it */
	ext = pop3_uidl != NULL ? xasprintf("P%s", pop3_uidl) : xstrdup("");
	r.ref = names_add(f, base, strlen(base), ext, strlen(ext));
	free(base);
	free(ext);
	if (courier)
		szc_put(f, uid, size);      /* Courier names have no W= */
	add_listed(f, &r);
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
	/* start the write-back now, without waiting: the background
	 * fdatasyncs (bg_kick()) and the commit then find most of the data
	 * on its way (measured: letting the fdatasyncs start it was slower,
	 * ~5.0-6.0 s against 4.1-4.8 s for the bench's largest account) */
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
	bg_kick(f);
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
	struct maildir_msg *sm;
	struct mrec *r;
	struct timespec now;
	char uniq[512], nbuf[MNAME_SIZE], *flags, *uidl;
	const char *fsname;
	uint64_t size;
	int ret;

	if (dropped_r != NULL)
		*dropped_r = NULL;
	if (!maildir_folder_find(from, uid, NULL)) {
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
	sm = xmalloc(sizeof(*sm));
	if (!maildir_folder_find(from, uid, sm)) {
		*error_r = err_set("%s: UID %u vanished", from->where, uid);
		free(sm);
		return -1;
	}
	if (check_new_uid(f, uid, error_r) < 0) {
		free(sm);
		return -1;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	for (int tries = 0;; tries++) {
		r = msg_lookup(from, uid);
		fsname = mr_fsname(from, r, nbuf, error_r);
		if (fsname == NULL) {
			free(sm);
			return -1;
		}
		snprintf(uniq, sizeof(uniq), "%lld.M%ldP%ldQ%u.%s",
		         (long long)(sm->mtime > 0 ? sm->mtime : now.tv_sec),
		         now.tv_nsec / 1000, (long)getpid(),
		         atomic_fetch_add(&uniq_counter, 1) + 1, f->hostname);
		if (linkat(mr_dirfd(from, r), fsname, f->tmpfd, uniq, 0) == 0)
			break;
		if (errno == ENOENT && tries == 0 && (r->meta & MR_PENDING) == 0 &&
		    relocate(from, r) == 0)
			continue;       /* renamed meanwhile (flags): once more */
		if (errno != EEXIST || tries >= 10) {
			*error_r = err_errno(errno, "%s: link %s/%s into tmp/: %s", f->where,
			                   from->where, nbuf, strerror(errno));
			free(sm);
			return -1;
		}
	}
	/* copies: register_pending() may change from's keyword state only
	 * through f */
	flags = xstrdup(sm->flags);
	uidl = sm->pop3_uidl != NULL ? xstrdup(sm->pop3_uidl) : NULL;
	ret = register_pending(f, uid, uniq, flags, sm->mtime,
	                       sm->file_size, size, uidl, dropped_r, error_r);
	if (ret < 0)
		unlinkat(f->tmpfd, uniq, 0);
	free(flags);
	free(uidl);
	free(sm);
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

/* Finds the current name of r's base after a rename by someone else.
 * A pending delivery in tmp/ is never renamed by others: -1. */
static int
relocate(struct maildir_folder *f, struct mrec *r)
{
	const char *err, *b;
	char *base;
	size_t blen;

	if ((r->meta & MR_PENDING) != 0)
		return -1;
	b = rec_name(f, r->meta, r->ref, &err);
	if (b == NULL) {
		log_warn("%s", err);
		errno = EIO;
		return -1;
	}
	base = xstrdup(b);
	blen = strlen(base);
	for (int pass = 0; pass < 2; pass++) {
		bool in_new = pass == 1;
		DIR *d = open_dir(in_new ? f->newfd : f->curfd);
		struct dirent *de;

		if (d == NULL)
			continue;
		while ((de = readdir(d)) != NULL) {
			if (strncmp(de->d_name, base, blen) == 0 &&
			    (de->d_name[blen] == '\0' || de->d_name[blen] == ':')) {
				mr_set(f, r, mr_flags(f, r), de->d_name + blen);
				r->meta = in_new ? r->meta | MR_NEW : r->meta & ~MR_NEW;
				closedir(d);
				free(base);
				return 0;
			}
		}
		closedir(d);
	}
	free(base);
	errno = ENOENT;
	return -1;
}

int
maildir_set_flags(struct maildir_folder *f, uint32_t uid, const char *flags,
                  char **dropped_r, const char **error_r)
{
	struct md_flags fl;
	struct mrec *m;
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
		if ((m->meta & MR_PENDING) != 0 || !letters_need_flush(f, set))
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
		bool in_new = (m->meta & MR_NEW) != 0;
		const char *base;

		letters_emit(f, set, in_new ? "" : md_name_letters(mr_suffix(f, m)),
		             letters);
		suffix_of(letters, suffix);     /* m's suffix once renamed */
		if (!in_new && strcmp(suffix, mr_suffix(f, m)) == 0)
			break;
		if ((m->meta & MR_PENDING) != 0)
			break;  /* pending: only the name commit gives it changes */
		if (mr_name(f, m, cur, error_r) == NULL)
			goto out;
		base = buf_data(&f->sb);
		snprintf(name, sizeof(name), "%s%s", base, suffix);
		if (renameat(mr_dirfd(f, m), cur, f->curfd, name) == 0) {
			m->meta &= ~MR_NEW;
			f->dir_dirty = true;
			break;
		}
		/* renamed by the server meanwhile: find it, keep its letters */
		if (errno != ENOENT || tries > 0 || relocate(f, m) < 0) {
			*error_r = err_set("%s: UID %u: rename %s: %s", f->where, uid,
			                   cur, errno == ENOENT ?
			                   "the file vanished" : strerror(errno));
			goto out;
		}
	}
	if (f->o.flavor == MAILDIR_COURIER) {
		/* any change of the keyword part rewrites :list at commit */
		char *nf = md_flags_format(fl.sys, (const char *const *)fl.kw, fl.nkw);

		if (strcmp(nf, mr_flags(f, m)) != 0)
			f->ckw_dirty = true;
		mr_take(f, m, nf, suffix);
	} else {
		mr_take(f, m, flags_from_letters(f, letters, NULL), suffix);
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

/* Unlinks r's file; a file already gone is fine. */
static int
unlink_mrec(struct maildir_folder *f, struct mrec *r, const char **error_r)
{
	char nbuf[MNAME_SIZE];

	if (mr_fsname(f, r, nbuf, error_r) == NULL)
		return -1;
	if ((r->meta & MR_PENDING) != 0) {
		/* pending: never published, nothing in cur/ changes */
		if (unlinkat(f->tmpfd, nbuf, 0) < 0 && errno != ENOENT) {
			*error_r = err_errno(errno, "%s: unlink tmp/%s: %s", f->where,
			                   nbuf, strerror(errno));
			return -1;
		}
		r->meta &= ~MR_PENDING;
		return 0;
	}
	if (unlinkat(mr_dirfd(f, r), nbuf, 0) == 0 ||
	    (errno == ENOENT &&
	     (relocate(f, r) < 0 || mr_name(f, r, nbuf, error_r) == NULL ||
	      unlinkat(mr_dirfd(f, r), nbuf, 0) == 0 || errno == ENOENT))) {
		f->dir_dirty = true;
		if (f->o.flavor == MAILDIR_COURIER && flags_have_keywords(mr_flags(f, r)))
			f->ckw_dirty = true;
		return 0;
	}
	*error_r = err_errno(errno, "%s: unlink %s: %s", f->where, nbuf,
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
	if (unlink_mrec(f, &f->msgs[i], error_r) < 0)
		return -1;
	memmove(&f->msgs[i], &f->msgs[i + 1], (f->nmsgs - i - 1) * sizeof(*f->msgs));
	f->nmsgs--;
	f->dirty = true;
	if (uid <= f->disk_maxuid)
		f->need_rewrite = true; /* a line on disk goes */
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
	base = xstrdup(buf_data(&f->names) + f->unl[i].ref);
	/* the server can number an unlisted file at any time: keep it from
	 * doing so until the commit (maildir_folder_lock()) */
	if (maildir_folder_lock(f, error_r) < 0) {
		free(base);
		return -1;
	}
	for (size_t j = 0; j < f->nunl; j++) {
		if (strcmp(buf_data(&f->names) + f->unl[j].ref, base) == 0) {
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
	    unlink_mrec(f, &f->unl[i], error_r) < 0)
		return -1;
	unlisted_remove(f, i);
	return 0;
}

int
maildir_unlisted_adopt(struct maildir_folder *f, size_t i, uint32_t uid,
                       const char **error_r)
{
	struct mrec m;

	if (check_new_uid(f, uid, error_r) < 0 ||
	    unlisted_locked(f, i, &i, error_r) < 0 ||
	    check_new_uid(f, uid, error_r) < 0)
		return -1;
	m = f->unl[i];
	if ((m.meta & MR_NEW) != 0) {
		/* Courier numbers files in new/ afresh: move it to cur/ first */
		char name[MNAME_SIZE], cur[MNAME_SIZE];

		if (mr_name(f, &m, cur, error_r) == NULL)
			return -1;
		snprintf(name, sizeof(name), "%s:2,", buf_data(&f->sb));
		if (renameat(f->newfd, cur, f->curfd, name) < 0) {
			*error_r = err_errno(errno, "%s: rename new/%s: %s", f->where, cur,
			                   strerror(errno));
			return -1;
		}
		mr_set(f, &m, mr_flags(f, &m), ":2,");
		m.meta &= ~MR_NEW;
		f->dir_dirty = true;
	}
	unlisted_remove(f, i);
	m.uid = uid;
	add_listed(f, &m);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Reading */

/* Opens r's file read-only where it is now (after relocate() if another
 * process moved it): the fd, -1 with errno (its name in nbuf), or -2 with
 * *error_r when its name cannot be read back. */
static int
open_rec_fd(struct maildir_folder *f, struct mrec *r, char nbuf[MNAME_SIZE],
            const char **error_r)
{
	int fd;

	if (mr_fsname(f, r, nbuf, error_r) == NULL)
		return -2;
	fd = openat(mr_dirfd(f, r), nbuf, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT && relocate(f, r) == 0 &&
	    mr_name(f, r, nbuf, error_r) != NULL)
		fd = openat(mr_dirfd(f, r), nbuf, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	return fd;
}

static int
open_mrec(struct maildir_folder *f, struct mrec *r, int *fd_r,
          const char **error_r)
{
	char nbuf[MNAME_SIZE];
	int fd = open_rec_fd(f, r, nbuf, error_r);

	if (fd == -2)
		return -1;
	if (fd < 0) {
		*error_r = err_set("%s: open %s: %s", f->where, nbuf,
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
	struct mrec *m = msg_lookup(f, uid);
	struct stat st;
	int fd;

	if (m == NULL) {
		*error_r = err_set("%s: no message with UID %u", f->where, uid);
		return -1;
	}
	if (open_mrec(f, m, &fd, error_r) < 0)
		return -1;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		*error_r = err_set("%s: UID %u is not a regular file", f->where, uid);
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
	struct mrec *m = msg_lookup(f, uid);
	struct maildir_msg *mm;
	struct writer cnt;
	char *chunk;
	uint64_t size;
	int fd;

	if (m == NULL) {
		*error_r = err_set("%s: no message with UID %u", f->where, uid);
		return -1;
	}
	mm = xmalloc(sizeof(*mm));
	size = fill(f, m, mm) ? mm->size : MAILDIR_SIZE_UNKNOWN;
	free(mm);
	if (size != MAILDIR_SIZE_UNKNOWN) {
		*size_r = size;
		return 0;
	}
	if (open_mrec(f, m, &fd, error_r) < 0)
		return -1;
	memset(&cnt, 0, sizeof(cnt));
	chunk = folder_iobuf(f);
	for (;;) {
		ssize_t n = read(fd, chunk, IO_CHUNK);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*error_r = err_errno(errno, "%s: UID %u: read: %s", f->where, uid,
			                   strerror(errno));
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		count_bytes(&cnt, chunk, (size_t)n);
	}
	close(fd);
	size = cnt.out_len + (f->o.flavor == MAILDIR_COURIER ? cnt.lfs : cnt.bare_lfs);
	szc_put(f, uid, size);
	*size_r = size;
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
 * would pay one journal commit and cache flush per file. With
 * wait_only (sync_by_journal), each file's write-back is waited for
 * instead, and the commit's next fsync is the one journal commit for the
 * batch (md_journal_orders_writes()): no commit and no cache flush per
 * file (IMAP->Maildir 2.7-3.0 s instead of 3.3-3.7 s, bench/run.py's
 * largest account). The threads share only this struct: the fds are
 * read-only, the counters atomic. */
#define SYNC_THREADS 16
#define SYNC_CHUNK 256          /* files open at once */

struct sync_job {
	const int *fds;
	size_t n;
	bool wait_only;
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
		int r;

		if (i >= j->n)
			break;
		/* WAIT_AFTER reports a write-back error (ENOSPC of a
		 * delayed allocation, EIO) as fdatasync does */
		r = j->wait_only ?
		    sync_file_range(j->fds[i], 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE |
		                    SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER) :
		    fdatasync(j->fds[i]);
		if (r < 0 && atomic_compare_exchange_strong(&j->failed, &none, i + 1))
			atomic_store(&j->failed_errno, errno);
	}
	return NULL;
}

/* Opens synced UID uid's file for its fdatasync: 1 with *fd_r, 0 when it
 * is gone (expunged since, or removed by someone else), -1 on error. */
static int
open_synced(struct maildir_folder *f, uint32_t uid, int *fd_r, const char **error_r)
{
	struct mrec *m = msg_lookup(f, uid);
	char nbuf[MNAME_SIZE];
	int fd;

	if (m == NULL)
		return 0;       /* expunged since */
	if ((fd = open_rec_fd(f, m, nbuf, error_r)) == -2)
		return -1;
	if (fd < 0 && errno == ENOENT && (m->meta & MR_PENDING) == 0)
		return 0;       /* removed by someone else */
	if (fd < 0) {
		*error_r = err_errno(errno, "%s: open %s%s: %s", f->where,
		                     (m->meta & MR_PENDING) != 0 ? "tmp/" : "",
		                     nbuf, strerror(errno));
		return -1;
	}
	*fd_r = fd;
	return 1;
}

/* A chunk of the batch being fdatasynced by threads of its own while the
 * copy goes on (bg_kick()). The threads touch only this struct; the
 * folder's thread joins them (bg_join()) before it reads the result or
 * closes the fds. */
struct sync_bg {
	struct sync_job j;
	int fds[SYNC_CHUNK];
	uint32_t uids[SYNC_CHUNK];
	pthread_t th[SYNC_THREADS];
	size_t nth;
};

/* Waits for the chunk being synced in the background, if any; a failure
 * is kept for the commit to report (sync_files()). */
static void
bg_join(struct maildir_folder *f)
{
	struct sync_bg *b = f->bg;

	if (b == NULL)
		return;
	f->bg = NULL;
	if (b->nth == 0)
		sync_worker(&b->j);     /* no thread could be started */
	for (size_t i = 0; i < b->nth; i++)
		pthread_join(b->th[i], NULL);
	if (atomic_load(&b->j.failed) != 0 && f->bg_errno == 0) {
		f->bg_bad_uid = b->uids[atomic_load(&b->j.failed) - 1];
		f->bg_errno = atomic_load(&b->j.failed_errno);
	}
	for (size_t i = 0; i < b->j.n; i++)
		close(b->fds[i]);
	free(b);
}

/* Opens the files of synced[*i..] into b, up to SYNC_CHUNK of them, and
 * moves *i past them; -1 with *error_r (*i at that file) when one cannot
 * be opened. */
static int
bg_fill(struct maildir_folder *f, struct sync_bg *b, size_t *i, const char **error_r)
{
	for (; *i < f->nsynced && b->j.n < SYNC_CHUNK; (*i)++) {
		int fd = -1, r = open_synced(f, f->synced[*i], &fd, error_r);

		if (r < 0)
			return -1;
		if (r > 0) {
			b->fds[b->j.n] = fd;
			b->uids[b->j.n++] = f->synced[*i];
		}
	}
	return 0;
}

/* Starts b's fdatasyncs on threads of their own; f->bg = b (no chunk may
 * be running). */
static void
bg_start(struct maildir_folder *f, struct sync_bg *b)
{
	b->j.fds = b->fds;
	b->j.wait_only = f->sync_by_journal;
	atomic_init(&b->j.next, 0);
	atomic_init(&b->j.failed, 0);
	atomic_init(&b->j.failed_errno, 0);
	for (size_t t = 0; t < SYNC_THREADS && t < b->j.n; t++) {
		if (pthread_create(&b->th[b->nth], NULL, sync_worker, &b->j) != 0)
			break;  /* fewer threads (none: bg_join() syncs) */
		b->nth++;
	}
	f->bg = b;
}

/* After a delivery: once a whole chunk of the batch is not yet synced,
 * its fdatasyncs start on threads of their own while the copy goes on, so
 * the commit waits only for the last chunk instead of stalling the
 * pipeline for the whole batch (issue 15). One chunk at a time: the next
 * one first waits for the previous, so the disk sets the pace and at most
 * SYNC_CHUNK files are open for it. A file that cannot be opened here is
 * left to the commit, which reports the error. */
static void
bg_kick(struct maildir_folder *f)
{
	struct sync_bg *b;
	const char *err;
	size_t i;

	if (!f->o.fsync || f->o.fsync_fs || f->bg_off ||
	    f->nsynced - f->nbg < SYNC_CHUNK)
		return;
	bg_join(f);
	b = xcalloc(1, sizeof(*b));
	i = f->nbg;
	if (bg_fill(f, b, &i, &err) < 0)
		f->bg_off = true;
	f->nbg = i;
	bg_start(f, b);
}

/* Makes the batch's files durable (pending ones in tmp/, adopted ones
 * where they are) before they are published and listed: an fdatasync of
 * each, issued in parallel, SYNC_CHUNK files at a time. With
 * sync_by_journal their write-back is waited for instead: what makes them
 * durable is the commit's next journal commit, which comes before any
 * line names them (the fsync of cur/ after the renames, the fdatasync of
 * the uidlist), and which cannot make a later change (a rename into cur/)
 * durable without them (md_journal_orders_writes()).
 * deliver() started their write-back (sync_file_range), and whole chunks
 * were synced in the background meanwhile (bg_kick()): this waits for
 * the last of those and syncs the rest. Not syncfs(): on a shared mail
 * spool it would flush every user's pending writes, and its errors may
 * belong to other files. */
static int
sync_files(struct maildir_folder *f, const char **error_r)
{
	size_t i;
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

	/* the chunk synced in the background, then the rest chunk by
	 * chunk, the same way but waited for */
	bg_join(f);
	i = f->nbg;
	while (ret == 0 && f->bg_errno == 0 && i < f->nsynced) {
		struct sync_bg *b = xcalloc(1, sizeof(*b));

		ret = bg_fill(f, b, &i, error_r);
		bg_start(f, b);
		bg_join(f);
		md_lock_touch(&f->lock);
	}
	if (ret == 0 && f->bg_errno != 0) {
		*error_r = err_errno(f->bg_errno, "%s: %s UID %u: %s", f->where,
		                     f->sync_by_journal ? "write-back of" : "fdatasync",
		                     f->bg_bad_uid, strerror(f->bg_errno));
		ret = -1;
	}
	/* after a failure a later commit syncs the whole batch again */
	f->bg_errno = 0;
	f->nbg = ret < 0 ? 0 : f->nsynced;
	f->bg_off = false;
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
		struct mrec *m = msg_lookup(f, f->synced[i]);
		char nbuf[MNAME_SIZE], tbuf[MNAME_SIZE];
		const char *err;

		if (m == NULL || (m->meta & MR_PENDING) == 0)
			continue;
		if (mr_fsname(f, m, tbuf, &err) == NULL || mr_name(f, m, nbuf, &err) == NULL) {
			log_warn("%s", err);
			continue;
		}
		if (renameat(f->curfd, nbuf, f->tmpfd, tbuf) < 0) {
			log_warn("%s: moving cur/%s back to tmp/ after a failed "
			         "commit: %s; it stays without a uidlist line",
			         f->where, nbuf, strerror(errno));
			m->meta &= ~MR_PENDING;
		}
	}
}

/* Renames every pending file from tmp/ into cur/ under its final name,
 * in UID order; *published_r tells whether any was. If a rename fails,
 * moves those already renamed back (unpublish()) and returns -1. On
 * success the files stay marked pending until the uidlist is in place,
 * so a later failure can still unpublish them; publish_done() clears the
 * marks. */
static int
publish(struct maildir_folder *f, bool *published_r, const char **error_r)
{
	*published_r = false;
	for (size_t i = 0; i < f->nsynced; i++) {
		struct mrec *m = msg_lookup(f, f->synced[i]);
		char nbuf[MNAME_SIZE], tbuf[MNAME_SIZE];

		if (m == NULL || (m->meta & MR_PENDING) == 0)
			continue;
		if (mr_fsname(f, m, tbuf, error_r) == NULL ||
		    mr_name(f, m, nbuf, error_r) == NULL) {
			unpublish(f, i);
			return -1;
		}
		if (renameat(f->tmpfd, tbuf, f->curfd, nbuf) < 0) {
			*error_r = err_set("%s: UID %u: rename tmp/%s to cur/: %s",
			                   f->where, m->uid, tbuf,
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
		struct mrec *m = msg_lookup(f, f->synced[i]);

		if (m != NULL)
			m->meta &= ~MR_PENDING;
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
		struct mrec *v = pass == 0 ? f->msgs : f->unl;
		size_t n = pass == 0 ? f->nmsgs : f->nunl;

		for (size_t i = 0; i < n; i++) {
			struct md_flags fl;
			const char *base;

			if (!flags_have_keywords(mr_flags(f, &v[i])))
				continue;
			base = rec_name(f, v[i].meta, v[i].ref, error_r);
			if (base == NULL) {
				md_ckw_free(&c);
				close(kfd);
				return -1;
			}
			md_flags_init(&fl);
			md_flags_parse(&fl, mr_flags(f, &v[i]));
			if (fl.nkw > 0) {
				if (c.n == c.alloc) {
					c.alloc = c.alloc == 0 ? 16 : c.alloc * 2;
					c.e = xreallocarray(c.e, c.alloc, sizeof(*c.e));
				}
				c.e[c.n].base = xstrdup(base);
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
/* Appends the line of record (meta, ref, uid) to out; its offset in out
 * into *off_r. */
static int
format_rec(struct maildir_folder *f, struct buf *out, uint32_t uid, uint32_t meta,
           uint32_t ref, uint64_t *off_r, const char **error_r)
{
	const char *base = rec_name(f, meta, ref, error_r);

	if (base == NULL)
		return -1;
	*off_r = buf_len(out);
	if (md_uidlist_format_line(out, f->o.flavor, uid, base, buf_data(&f->se)) < 0) {
		*error_r = err_set("%s: uidlist too large (limit %u bytes)", f->where,
		                   MD_META_MAX);
		return -1;
	}
	return 0;
}

/* After a commit wrote the lines: f->names keeps only the strings of
 * records still in it (unlisted files). */
static void
names_compact(struct maildir_folder *f)
{
	struct buf old = f->names;

	buf_init(&f->names, UINT32_MAX);
	for (int pass = 0; pass < 2; pass++) {
		struct mrec *v = pass == 0 ? f->msgs : f->unl;
		size_t n = pass == 0 ? f->nmsgs : f->nunl;

		for (size_t i = 0; i < n; i++) {
			const char *base;
			size_t blen;

			/* only names kept here: ref is otherwise an offset
			 * in the uidlist file */
			if ((v[i].meta & MR_POOL) == 0)
				continue;
			base = buf_data(&old) + v[i].ref;
			blen = strlen(base);
			v[i].ref = names_add(f, base, blen, base + blen + 1,
			                     strlen(base + blen + 1));
		}
	}
	buf_free(&old);
}

/* Appends the lines of the records above disk_maxuid to dovecot-uidlist,
 * as Dovecot does when it only adds records: under the lock, to the file
 * we read (same inode and size), which must end in LF (a torn last line
 * would otherwise merge with ours). The header stays: readers take
 * max(N, last UID + 1). Space is reserved first (fallocate), so a full
 * disk fails before a byte is written; a failing write is cut back to
 * the old size. The appended records then point at their lines in the
 * file. Returns 1 when appended, 0 when the file cannot take an append
 * (the caller rewrites it), -1 with *error_r. */
static int
uidlist_append(struct maildir_folder *f, const char **error_r)
{
	bool found;
	size_t from = msg_index(f, f->disk_maxuid + 1, &found);
	uint64_t *offs = NULL;
	struct buf b;
	struct stat st;
	char last;
	int fd, ret = -1;

	fd = openat(f->dirfd, MD_UIDLIST_DOVECOT, O_RDWR | O_APPEND | O_NOFOLLOW |
	            O_CLOEXEC);
	if (fd < 0)
		return 0;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || f->ulfd < 0 ||
	    st.st_ino != f->ul_st.st_ino || st.st_dev != f->ul_st.st_dev ||
	    st.st_size != f->ul_st.st_size || st.st_size == 0 ||
	    pread(fd, &last, 1, st.st_size - 1) != 1 || last != '\n') {
		close(fd);
		return 0;
	}
	buf_init(&b, MD_META_MAX);
	offs = xreallocarray(NULL, f->nmsgs - from + 1, sizeof(*offs));
	for (size_t i = from; i < f->nmsgs; i++) {
		if (format_rec(f, &b, f->msgs[i].uid, f->msgs[i].meta, f->msgs[i].ref,
		               &offs[i - from], error_r) < 0)
			goto out;
	}
	if ((uint64_t)st.st_size + buf_len(&b) >= MD_META_MAX) {
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
	/* the new lines are in the inode f->ulfd reads */
	for (size_t i = from; i < f->nmsgs; i++) {
		f->msgs[i].meta &= ~MR_POOL;
		f->msgs[i].ref = (uint32_t)((uint64_t)st.st_size + offs[i - from]);
	}
	ret = 1;
out:
	if (close(fd) < 0 && ret == 1) {
		*error_r = err_errno(errno, "%s: close %s: %s", f->where,
		                     MD_UIDLIST_DOVECOT, strerror(errno));
		ret = -1;
	}
	free(offs);
	buf_free(&b);
	return ret;
}

/* Writes out what b holds to fd when it is past a chunk (or with all):
 * the rewrite never holds the whole file (issue 15). *total counts the
 * bytes written. */
static int
flush_out(int fd, struct buf *b, bool all, uint64_t *total)
{
	if (buf_len(b) == 0 || (!all && buf_len(b) < IO_CHUNK))
		return 0;
	if (md_write_all(fd, buf_data(b), buf_len(b)) < 0)
		return -1;
	*total += buf_len(b);
	buf_reset(b);
	return 0;
}

/* Replaces the whole uidlist (temporary file + rename, as
 * md_replace_file() does: the same temporary names, mode, owner and
 * fdatasync): the header, then the lines of the messages and of f->gone
 * by UID, written IO_CHUNK bytes at a time. Before the rename the
 * temporary file is opened again for reading: the records then point at
 * their lines in the new file, which f->ulfd keeps. */
static int
uidlist_rewrite(struct maildir_folder *f, uint32_t v, uint32_t n,
                const char **error_r)
{
	struct buf b;
	char tmpname[600];
	uint64_t *moff, *goff, total = 0, off;
	size_t i = 0, k = 0;
	int tdfd, fd, rfd = -1, r = -1;

	if (f->o.flavor == MAILDIR_DOVECOT) {
		/* Dovecot's own temp name; it writes it only under the lock */
		tdfd = f->dirfd;
		snprintf(tmpname, sizeof(tmpname), "%s", MD_UIDLIST_DOVECOT ".tmp");
	} else {
		tdfd = f->tmpfd;
		snprintf(tmpname, sizeof(tmpname), "%lld.%ld_uiddb.%s",
		         (long long)time(NULL), (long)getpid(), f->hostname);
	}
	fd = openat(tdfd, tmpname, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_TRUNC,
	            f->o.file_mode);
	if (fd < 0) {
		*error_r = err_errno(errno, "%s: create %s: %s", f->where, tmpname,
		                     strerror(errno));
		return -1;
	}
	buf_init(&b, MD_META_MAX);
	moff = xreallocarray(NULL, f->nmsgs + 1, sizeof(*moff));
	goff = xreallocarray(NULL, f->ngone + 1, sizeof(*goff));
	if (md_fix_owner(fd, &f->o, f->o.file_mode, tmpname, error_r) < 0)
		goto out;
	if (md_uidlist_format_header(&b, f->o.flavor, v, n, f->ul.hdr_extra) < 0)
		goto too_large;
	while (i < f->nmsgs || k < f->ngone) {
		if (k == f->ngone || (i < f->nmsgs && f->msgs[i].uid < f->gone[k].uid)) {
			if (format_rec(f, &b, f->msgs[i].uid, f->msgs[i].meta,
			               f->msgs[i].ref, &off, error_r) < 0)
				goto out;
			moff[i++] = total + off;
		} else {
			if (format_rec(f, &b, f->gone[k].uid, 0, f->gone[k].off, &off,
			               error_r) < 0)
				goto out;
			goff[k++] = total + off;
		}
		/* below the cap by one byte: what the reader accepts */
		if (total + buf_len(&b) >= MD_META_MAX)
			goto too_large;
		if (flush_out(fd, &b, false, &total) < 0)
			goto write_error;
	}
	if (flush_out(fd, &b, true, &total) < 0)
		goto write_error;
	if (f->o.fsync && fdatasync(fd) < 0) {
		*error_r = err_errno(errno, "%s: fdatasync %s: %s", f->where, tmpname,
		                     strerror(errno));
		goto out;
	}
	/* close() can report a deferred write error (NFS, quota) */
	r = close(fd);
	fd = -1;
	if (r < 0) {
		r = -1;
		goto write_error;
	}
	r = -1;
	rfd = openat(tdfd, tmpname, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (rfd < 0) {
		*error_r = err_errno(errno, "%s: open %s: %s", f->where, tmpname,
		                     strerror(errno));
		goto out;
	}
	if (renameat(tdfd, tmpname, f->dirfd, uidlist_name(f)) < 0) {
		*error_r = err_errno(errno, "%s: rename %s to %s: %s", f->where, tmpname,
		                     uidlist_name(f), strerror(errno));
		goto out;
	}
	f->ul_bytes += total;
	f->ul_rewrites++;
	close_uidlist(f);
	f->ulfd = rfd;
	rfd = -1;
	f->ul.version = f->o.flavor == MAILDIR_COURIER ? 1 : 3;
	for (i = 0; i < f->nmsgs; i++) {
		f->msgs[i].meta &= ~MR_POOL;
		f->msgs[i].ref = (uint32_t)moff[i];
	}
	for (k = 0; k < f->ngone; k++)
		f->gone[k].off = (uint32_t)goff[k];
	r = 0;
	goto out;
too_large:
	*error_r = err_set("%s: uidlist too large (limit %u bytes)", f->where,
	                   MD_META_MAX);
	goto out;
write_error:
	*error_r = err_errno(errno, "%s: write %s: %s", f->where, tmpname,
	                     strerror(errno));
out:
	if (fd >= 0)
		close(fd);
	if (rfd >= 0)
		close(rfd);
	if (r < 0)
		unlinkat(tdfd, tmpname, 0);
	free(moff);
	free(goff);
	buf_free(&b);
	return r;
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
	if (v == 0 && max_uid(f) > 0) {
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
	names_compact(f);
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
	f->nsynced = f->nbg = 0;
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
