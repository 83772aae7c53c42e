/* maildir-private.h: internals shared by the maildir library files and the
 * tests. Not for other modules. */
#ifndef IMAPFERRY_MAILDIR_PRIVATE_H
#define IMAPFERRY_MAILDIR_PRIVATE_H

#include <string.h>
#include <sys/stat.h>

#include "buf.h"
#include "maildir.h"

#define MD_UIDLIST_DOVECOT "dovecot-uidlist"
#define MD_UIDLIST_COURIER "courierimapuiddb"
#define MD_KEYWORDS_DOVECOT "dovecot-keywords"
#define MD_KEYWORDS_COURIER_DIR "courierimapkeywords"
#define MD_LOCK_DOVECOT "dovecot-uidlist.lock"
#define MD_LOCK_COURIER "courier.lock"   /* in tmp/ */
#define MD_MAX_KEYWORDS 26              /* Dovecot letters a-z */
/* Size cap of the uidlist and keywords files, for reading and writing
 * alike: a uidlist we write can always be read back (about 12 million
 * messages at ~80 bytes a line). */
#define MD_META_MAX (1024u * 1024 * 1024)
#define MD_POP3_UIDL_MAX 255             /* RFC 1939 */

/* System flag bits, in the order of their Maildir letters. */
enum md_sysflag {
	MD_DRAFT = 1 << 0,      /* D */
	MD_FLAGGED = 1 << 1,    /* F */
	MD_ANSWERED = 1 << 2,   /* R */
	MD_SEEN = 1 << 3,       /* S */
	MD_DELETED = 1 << 4,    /* T */
};

/* ---- file names (maildir-format.c) ---- */

/* Length of the base (up to the first ':'). */
size_t md_name_base_len(const char *name);
/* The flag letters after ":2," (borrowed, "" if none). */
const char *md_name_letters(const char *name);
/* Looks up ",<key>=<digits>" in the base of name; false if absent/invalid. */
bool md_name_field(const char *name, char key, uint64_t *value_r);
/* Writes the escaped host name for unique names ('/' ':' ',' and
 * non-printable bytes as \ooo) into a new string. */
char *md_host_escape(const char *host);

/* ---- flags ---- */

/* A parsed IMAP flag set. */
struct md_flags {
	unsigned int sys;       /* enum md_sysflag bits */
	char **kw;              /* keyword names (owned), deduplicated (ASCII
	                           case-insensitively, first spelling wins) */
	size_t nkw;
	struct buf dropped;     /* space-separated names that cannot be stored */
};

void md_flags_init(struct md_flags *fl);
void md_flags_free(struct md_flags *fl);
/* Parses "\\Seen $Work" or "(\\Seen $Work)". \Recent is skipped; unknown
 * \System flags and invalid keyword atoms go to fl->dropped. Never fails. */
void md_flags_parse(struct md_flags *fl, const char *s);
/* Canonical flag string: system flags and keywords sorted by strcmp. */
char *md_flags_format(unsigned int sys, const char *const *kw, size_t nkw);
/* Maildir letters of sys ("DFRST" subset, ASCII order) into out (>= 6). */
void md_sys_letters(unsigned int sys, char *out);
/* true if s is a keyword atom the library stores. */
bool md_keyword_valid(const char *s);

/* ---- string pool ---- */

/* Strings that live as long as their pool: bump-allocated in chunks, no
 * per-string malloc or header (issue 15: a folder holds a few strings per
 * message). Strings are never freed one by one; md_pool_free() frees all. */
struct md_pool_chunk;
struct md_pool {
	struct md_pool_chunk *head;     /* chunk being filled, then older ones */
	size_t used, size;              /* of head's data */
};

/* A copy of s[0..len) with a NUL, in the pool. */
char *md_pool_strndup(struct md_pool *p, const char *s, size_t len);
char *md_pool_strdup(struct md_pool *p, const char *s);
void md_pool_free(struct md_pool *p);

/* ---- uidlist ---- */

/* Bytes read at a time by md_uidlist_parse_fd() (issue 15: a 1,000,000
 * line uidlist is ~80 MB; it is never held whole). */
#define MD_UIDLIST_CHUNK 65536

/* One line: its UID and the byte offset of the line in the parsed text or
 * file (below MD_META_MAX). The folder reads its base and ext fields back
 * from there when it needs them (md_uidlist_line()). */
struct md_rec {
	uint32_t uid;
	uint32_t off;
};

struct md_uidlist {
	int version;            /* 0: none/empty, 1 or 3 */
	bool unsorted;          /* lines were out of order or repeated a UID */
	bool torn;              /* the last line had no LF and was ignored */
	uint32_t uidvalidity, uidnext;
	char *hdr_extra;        /* owned: header fields other than V and N, or NULL */
	struct md_rec *recs;    /* sorted by uid, unique */
	size_t nrecs, arecs;
};

void md_uidlist_free(struct md_uidlist *ul);
/* Parses a dovecot-uidlist (v1 or v3) or courierimapuiddb (v1) text of len
 * bytes. Out-of-order lines are sorted; for a repeated UID the last line
 * wins (both set ul->unsorted). An empty text is version 0. A last record
 * line without its LF is ignored and sets ul->torn: an append cut short by
 * a crash, or one still being written; Dovecot's reader (which reads only
 * LF-terminated lines) ignores it the same way. Returns -1 with *error_r
 * (line number) on a broken header or line. */
int md_uidlist_parse(const char *text, size_t len, struct md_uidlist *ul,
                     const char **error_r);
/* The same from a file descriptor, read MD_UIDLIST_CHUNK bytes at a time
 * (only a partial line is carried from one chunk to the next). Returns -1
 * with *error_r for a broken line or header, -2 for a read error or a file
 * of MD_META_MAX bytes or more. */
int md_uidlist_parse_fd(int fd, struct md_uidlist *ul, const char **error_r);
/* Splits a record line (without its LF) of a uidlist of this version:
 * *uid_r, the ext fields as md_uidlist_format_line() writes them into *ext
 * (reset first; "W191 Pabc" or ""), and the base (*base_r, *blen_r: in
 * line, not NUL-terminated). Returns -1 with *why_r when it is broken. */
int md_uidlist_line(const char *line, size_t len, int version, uint32_t *uid_r,
                    struct buf *ext, const char **base_r, size_t *blen_r,
                    const char **why_r);
/* Tests and fuzzer: record i of a text md_uidlist_parse() parsed, as a
 * new base and ext string. */
int md_uidlist_rec_at(const char *text, size_t len, const struct md_uidlist *ul,
                      size_t i, char **base_r, char **ext_r);
/* Appends the header line: Dovecot "3 V<v> N<n>[ <extra>]", Courier
 * "1 <v> <n>". */
int md_uidlist_format_header(struct buf *out, enum maildir_flavor flavor,
                             uint32_t uidvalidity, uint32_t uidnext,
                             const char *hdr_extra);
/* Appends one record line: Dovecot "<uid>[ <ext>] :<base>", Courier
 * "<uid> <base>". */
int md_uidlist_format_line(struct buf *out, enum maildir_flavor flavor, uint32_t uid,
                           const char *base, const char *ext);
/* The value of ext field `key` in an ext string (new string), or NULL. */
char *md_ext_get(const char *ext, char key);

/* ---- keywords files ---- */

/* dovecot-keywords: "<idx> <name>" lines into kw[26] (owned strings). */
void md_dkw_parse(const char *text, size_t len, char *kw[MD_MAX_KEYWORDS]);
int md_dkw_format(struct buf *out, char *const kw[MD_MAX_KEYWORDS]);

/* courierimapkeywords/:list: names, empty line, "<base>:<i> <i>" lines. */
struct md_ckw_entry {
	char *base;             /* owned */
	char **kw;              /* owned names */
	size_t nkw;
};
struct md_ckw {
	struct md_ckw_entry *e;
	size_t n, alloc;
};
void md_ckw_free(struct md_ckw *c);
void md_ckw_parse(const char *text, size_t len, struct md_ckw *c);
/* Formats from entries (names numbered in strcmp order); empty output when
 * no entry has keywords. */
int md_ckw_format(struct buf *out, const struct md_ckw *c);

/* ---- subscriptions text ---- */
int md_subs_format(struct buf *out, enum maildir_flavor flavor,
                   const char *const *names, size_t n, char sep,
                   const char **error_r);
int md_subs_parse(const char *text, size_t len, enum maildir_flavor flavor,
                  char sep, char ***names_r, size_t *n_r);

/* ---- file system helpers (maildir-fs.c) ---- */

/* Reads the whole file name under dirfd (O_NOFOLLOW) into *b (cap
 * MD_META_MAX); *st_r gets its stat. Returns 1, 0 if it does not exist,
 * -1 with *error_r. */
int md_read_at(int dirfd, const char *name, struct buf *b, struct stat *st_r,
               const char **error_r);
/* write(2) all of data; -1 with errno on failure. */
int md_write_all(int fd, const void *data, size_t len);
/* Applies mode and owner to a new fd; calls fchmod/fchown only when its
 * mode (the umask may have narrowed it) or owner differ. */
int md_fix_owner(int fd, const struct maildir_options *o, mode_t mode,
                 const char *what, const char **error_r);
/* Prefix of the staging names md_mkdirat_owned() uses: no leading '.', so
 * Dovecot and Courier never list one as a Maildir++ folder. */
#define MD_DIRSTAGE_TAG "imapferry-dir-"
/* Creates the directory name under dirfd with the configured mode and
 * owner, never visible without them: made under a staging name
 * (MD_DIRSTAGE_TAG "<pid>-<hex>"), given mode and owner, then renamed to
 * name with RENAME_NOREPLACE. A kill -9 leaves no directory or the
 * finished one under name (maybe an empty stage, which md_mkdir_p() and
 * maildir_create_cleanup() remove). Returns 1 created, 0 it existed
 * (whoever made it), -1 with *error_r. */
int md_mkdirat_owned(int dirfd, const char *name, const struct maildir_options *o,
                     const char **error_r);
/* True if name is "<prefix><pid>-..." of a process that is gone (not
 * this one): the leftover of a killed run, never a live writer's. */
bool md_stage_is_stale(const char *name, const char *prefix);
/* Removes from dirfd what killed runs left there: the empty stages of
 * md_mkdirat_owned(), and, with a prefix, the entries md_stage_is_stale()
 * for it, by remove(dirfd, name). */
void md_cleanup_stages(int dirfd, const char *prefix,
                       void (*remove)(int dirfd, const char *name));
/* mkdir -p of a trusted path, each directory it creates made by
 * md_mkdirat_owned() after removing the empty stages of killed runs
 * beside it. */
int md_mkdir_p(const char *path, const struct maildir_options *o,
               const char **error_r);
/* mkdir name under dirfd (EEXIST is fine) and open it O_NOFOLLOW; a new
 * one is made by md_mkdirat_owned(). Returns the fd or -1. */
int md_mkdir_open(int dirfd, const char *name, const struct maildir_options *o,
                  bool create, bool *created_r, const char **error_r);
/* True when a journal commit on fd's file system makes durable every
 * metadata change made before it, in order: ext4 with its journal in an
 * inode (jbd2 commits its transactions in sequence, each after a cache
 * flush). There, files whose write-back was waited for (sync_file_range
 * WAIT_AFTER: data written, extents and size updated in transactions
 * already begun) become durable with the next fsync/fdatasync of any
 * later change (the renames into cur/, the uidlist), without one journal
 * commit and one cache flush per file. Anything else (ext4 without a
 * journal, other file systems, an unknown device) is false: one
 * fdatasync per file. IMAPFERRY_TEST_MD_SYNC=journal|file forces the
 * answer (tests). */
bool md_journal_orders_writes(int fd);
/* Creates name in dirfd exclusively (errno EEXIST when it exists) with the
 * configured owner and mode and data already in it: an unnamed O_TMPFILE
 * gets owner, mode and content, then a link gives it its name, so a kill -9
 * leaves no file or the complete one, never an empty root-owned lock a
 * server cannot read. Falls back to O_EXCL where O_TMPFILE is missing
 * (NFS). Returns the open descriptor, or -1 with *error_r. */
int md_create_excl(int dirfd, const char *name, const struct maildir_options *o,
                   const void *data, size_t len, const char **error_r);
/* Writes data to tmpname under tmpdir (O_CREAT|O_TRUNC or O_EXCL), sets
 * mode/owner, optional mtime (>0), fdatasync when o->fsync, then renames it
 * to name under dirfd. */
int md_replace_file(int tmpdirfd, const char *tmpname, bool excl, int dirfd,
                    const char *name, const void *data, size_t len,
                    const struct maildir_options *o, time_t mtime,
                    const char **error_r);

/* A lock file held with O_EXCL. */
struct md_lock {
	int fd;                 /* -1 when not held */
	ino_t ino;
	dev_t dev;
	uint64_t touched_ms;
};

struct md_lock_spec {
	const char *name;               /* relative to the lock directory */
	const char *watch_name;         /* Dovecot: the uidlist (ctime rule), or NULL */
	unsigned int dead_pid_min_age_s; /* our host + dead pid: break at this age */
	unsigned int stale_s;           /* break when unchanged this long */
	bool stale_by_ctime;            /* Dovecot judges by ctime, Courier mtime */
};

/* Takes the lock spec->name under lockdirfd (the watch file is under
 * watchdirfd), waiting up to timeout_ms and breaking stale locks. where
 * names the folder in error messages ("... is locked by \"123:host\" ..."). */
int md_lock_take(int lockdirfd, int watchdirfd, const struct md_lock_spec *spec,
                 struct md_lock *lk, const struct maildir_options *o,
                 unsigned int timeout_ms, const char *where, const char **error_r);
/* true if the lock file is still the one we created. */
bool md_lock_is_ours(int lockdirfd, const struct md_lock_spec *spec,
                     const struct md_lock *lk);
/* Touches the lock if 10 s passed since the last touch (Dovecot breaks
 * locks unchanged for 120 s). */
void md_lock_touch(struct md_lock *lk);
/* Unlinks the lock if it is still ours; closes the fd. */
void md_lock_release(int lockdirfd, const struct md_lock_spec *spec,
                     struct md_lock *lk);
/* "<pid>:<hostname>" as Dovecot and Courier write it (static buffer). */
const char *md_lock_id(void);

/* ---- test hooks (maildir.c) ---- */

/* Bytes of uidlist text this folder wrote so far (appends and rewrites),
 * and how many commits rewrote the whole file. */
uint64_t md_folder_uidlist_bytes(const struct maildir_folder *f);
unsigned int md_folder_uidlist_rewrites(const struct maildir_folder *f);

#endif
