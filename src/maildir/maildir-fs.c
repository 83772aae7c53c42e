/* maildir-fs.c: file-system helpers of the maildir library: whole-file
 * reads, atomic replacement, directory creation with owner and mode, and the
 * O_EXCL lock files of Dovecot and Courier. Every path is relative to a
 * directory descriptor and opened with O_NOFOLLOW. */
#define _GNU_SOURCE     /* O_TMPFILE, renameat2(RENAME_NOREPLACE) */
#include "maildir-private.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

int
md_read_at(int dirfd, const char *name, struct buf *b, struct stat *st_r,
           const char **error_r)
{
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		*error_r = err_errno(errno, "open %s: %s", name, strerror(errno));
		return -1;
	}
	if (fstat(fd, st_r) < 0 || !S_ISREG(st_r->st_mode)) {
		*error_r = err_set("%s: not a regular file", name);
		close(fd);
		return -1;
	}
	buf_reset(b);
	for (;;) {
		size_t want = 65536;
		char *p = buf_reserve(b, want);
		ssize_t n;

		if (p == NULL)  /* near the cap: the rest may still fit */
			p = buf_reserve(b, want = 1);
		if (p == NULL) {
			*error_r = err_set("%s: %u bytes or larger", name, MD_META_MAX);
			close(fd);
			return -1;
		}
		n = read(fd, p, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*error_r = err_errno(errno, "read %s: %s", name, strerror(errno));
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		buf_commit(b, (size_t)n);
	}
	close(fd);
	return 1;
}

int
md_write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) {
			errno = ENOSPC;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
md_fix_owner(int fd, const struct maildir_options *o, mode_t mode,
             const char *what, const char **error_r)
{
	struct stat st;
	bool chown_needed;

	/* fstat costs no inode write; fchmod/fchown that change nothing
	 * would still dirty the inode (ctime) of every message */
	if (fstat(fd, &st) < 0) {
		*error_r = err_errno(errno, "stat %s: %s", what, strerror(errno));
		return -1;
	}
	/* fchmod: the umask must not narrow the configured modes */
	if ((st.st_mode & 07777) != (mode & 07777) && fchmod(fd, mode) < 0) {
		*error_r = err_errno(errno, "chmod %s: %s", what, strerror(errno));
		return -1;
	}
	chown_needed = (o->owner != (uid_t)-1 && st.st_uid != o->owner) ||
	               (o->group != (gid_t)-1 && st.st_gid != o->group);
	if (chown_needed && fchown(fd, o->owner, o->group) < 0) {
		*error_r = err_errno(errno, "chown %s to %ld:%ld: %s", what, (long)o->owner,
		                   (long)o->group, strerror(errno));
		return -1;
	}
	return 0;
}

int
md_mkdirat_owned(int dirfd, const char *name, const struct maildir_options *o,
                 const char **error_r)
{
	char stage[64];
	struct timespec ts;
	struct stat st;
	unsigned int tries = 0;
	int fd, r;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return 0;       /* maildir_folder_open() checks what it is */
	clock_gettime(CLOCK_REALTIME, &ts);
	for (;;) {
		/* unique among this process's threads too: the stack
		 * address and the clock differ between concurrent callers */
		uint32_t salt = (uint32_t)ts.tv_nsec ^ (uint32_t)(uintptr_t)&st ^
		                (tries * 2654435761u);

		snprintf(stage, sizeof(stage), MD_DIRSTAGE_TAG "%ld-%08x",
		         (long)getpid(), salt);
		if (mkdirat(dirfd, stage, o->dir_mode) == 0)
			break;
		if (errno != EEXIST || ++tries >= 100) {
			*error_r = err_errno(errno, "mkdir %s: %s", name, strerror(errno));
			return -1;
		}
	}
	fd = openat(dirfd, stage, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || md_fix_owner(fd, o, o->dir_mode, name, error_r) < 0) {
		if (fd < 0)
			*error_r = err_errno(errno, "open %s: %s", stage, strerror(errno));
		else
			close(fd);
		(void)unlinkat(dirfd, stage, AT_REMOVEDIR);
		return -1;
	}
	close(fd);
	r = renameat2(dirfd, stage, dirfd, name, RENAME_NOREPLACE);
	if (r < 0 && errno == EINVAL) {
		/* no RENAME_NOREPLACE on this file system: rename(2) would
		 * replace an empty directory, so look first */
		if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
			errno = EEXIST;
		else
			r = renameat(dirfd, stage, dirfd, name);
	}
	if (r < 0) {
		int e = errno;

		(void)unlinkat(dirfd, stage, AT_REMOVEDIR);
		if (e == EEXIST || e == ENOTEMPTY)
			return 0;       /* someone else made it meanwhile */
		*error_r = err_errno(e, "rename %s to %s: %s", stage, name, strerror(e));
		return -1;
	}
	return 1;
}

bool
md_stage_is_stale(const char *name, const char *prefix)
{
	size_t plen = strlen(prefix);
	char *end;
	long pid;

	if (strncmp(name, prefix, plen) != 0)
		return false;
	pid = strtol(name + plen, &end, 10);
	return end != name + plen && *end == '-' && pid > 0 && pid <= INT32_MAX &&
	       (pid_t)pid != getpid() && kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

void
md_cleanup_stages(int dirfd, const char *prefix,
                  void (*remove)(int dirfd, const char *name))
{
	int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;

	if (d == NULL) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (md_stage_is_stale(de->d_name, MD_DIRSTAGE_TAG))
			/* only ever empty: AT_REMOVEDIR refuses anything else */
			(void)unlinkat(dirfd, de->d_name, AT_REMOVEDIR);
		else if (prefix != NULL && md_stage_is_stale(de->d_name, prefix))
			remove(dirfd, de->d_name);
	}
	closedir(d);
}

int
md_mkdir_p(const char *path, const struct maildir_options *o, const char **error_r)
{
	char *p = xstrdup(path);
	size_t len = strlen(p);
	int ret = 0;

	for (size_t i = 1; i <= len && ret == 0; i++) {
		char *slash;
		int pfd;

		if (p[i] != '/' && p[i] != '\0')
			continue;
		p[i] = '\0';
		slash = strrchr(p, '/');
		if (slash == NULL) {
			pfd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		} else if (slash == p) {
			pfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		} else {
			*slash = '\0';
			pfd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			*slash = '/';
		}
		if (pfd < 0) {
			*error_r = err_errno(errno, "open the parent of %s: %s", p,
			                     strerror(errno));
			ret = -1;
		} else {
			const char *name = slash == NULL ? p : slash + 1;
			struct stat st;

			if (name[0] != '\0' && strcmp(name, ".") != 0 &&
			    strcmp(name, "..") != 0 &&
			    fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
				/* rare (a new account): the scan costs one
				 * readdir of the parent */
				md_cleanup_stages(pfd, NULL, NULL);
				if (md_mkdirat_owned(pfd, name, o, error_r) < 0) {
					*error_r = err_wrap(*error_r, "%s: %s", p, *error_r);
					ret = -1;
				}
			}
			close(pfd);
		}
		if (i < len)
			p[i] = '/';
	}
	free(p);
	return ret;
}

#define EXT4_SUPER_MAGIC_ 0xEF53         /* ext2/3/4: linux/magic.h */
#define EXT4_JOURNAL_INO_ 8             /* the journal's inode */

bool
md_journal_orders_writes(int fd)
{
	const char *test = getenv("IMAPFERRY_TEST_MD_SYNC");
	char sys[64], target[512], jbd2[600];
	const char *name;
	struct statfs sfs;
	struct stat st;
	ssize_t n;

	if (test != NULL && test[0] != '\0')
		return strcmp(test, "journal") == 0;
	if (fstatfs(fd, &sfs) < 0 || sfs.f_type != EXT4_SUPER_MAGIC_ ||
	    fstat(fd, &st) < 0)
		return false;
	/* the block device's name: /sys/dev/block/M:m -> .../block/sda/sda1;
	 * its journal, if it has one, is /proc/fs/jbd2/<name>-8 */
	snprintf(sys, sizeof(sys), "/sys/dev/block/%u:%u", major(st.st_dev),
	         minor(st.st_dev));
	n = readlink(sys, target, sizeof(target) - 1);
	if (n <= 0)
		return false;
	target[n] = '\0';
	name = strrchr(target, '/');
	name = name != NULL ? name + 1 : target;
	snprintf(jbd2, sizeof(jbd2), "/proc/fs/jbd2/%s-%d", name, EXT4_JOURNAL_INO_);
	return access(jbd2, F_OK) == 0;
}

int
md_mkdir_open(int dirfd, const char *name, const struct maildir_options *o,
              bool create, bool *created_r, const char **error_r)
{
	struct stat st;
	bool created = false;
	int fd;

	if (create) {
		int r = md_mkdirat_owned(dirfd, name, o, error_r);

		if (r < 0)
			return -1;
		created = r > 0;
	}
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;

		if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISLNK(st.st_mode))
			*error_r = err_set("%s is a symlink; refusing to follow it", name);
		else if (e == ENOENT)
			*error_r = err_set("%s does not exist", name);
		else
			*error_r = err_errno(e, "open %s: %s", name, strerror(e));
		return -1;
	}
	if (created_r != NULL)
		*created_r = created;
	return fd;
}

int
md_create_excl(int dirfd, const char *name, const struct maildir_options *o,
               const void *data, size_t len, const char **error_r)
{
	char procpath[64];
	int fd, saved;

	*error_r = NULL;
#ifdef O_TMPFILE
	fd = openat(dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, o->file_mode);
	if (fd >= 0) {
		if (md_fix_owner(fd, o, o->file_mode, name, error_r) < 0) {
			close(fd);
			return -1;
		}
		if (md_write_all(fd, data, len) < 0) {
			saved = errno;
			*error_r = err_errno(saved, "write %s: %s", name, strerror(saved));
			close(fd);
			errno = saved;
			return -1;
		}
		snprintf(procpath, sizeof(procpath), "/proc/self/fd/%d", fd);
		if (linkat(AT_FDCWD, procpath, dirfd, name, AT_SYMLINK_FOLLOW) == 0)
			return fd;
		saved = errno;
		if (saved == ENOENT &&   /* no /proc: root may link by descriptor */
		    linkat(fd, "", dirfd, name, AT_EMPTY_PATH) == 0)
			return fd;
		if (saved == ENOENT)
			saved = errno;
		close(fd);
		errno = saved;
		if (saved == EEXIST) {
			*error_r = err_errno(saved, "create %s: %s", name, strerror(saved));
			return -1;
		}
		/* linking refused for another reason: the plain way below */
	} else if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL &&
	           errno != ENOENT) {
		saved = errno;
		*error_r = err_errno(saved, "create %s: %s", name, strerror(saved));
		errno = saved;
		return -1;
	}
#endif
	/* No O_TMPFILE (NFS, old kernels): O_EXCL, then owner and content.
	 * A kill in between leaves an empty file, judged stale by age. */
	fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	            o->file_mode);
	if (fd < 0) {
		saved = errno;
		*error_r = err_errno(saved, "create %s: %s", name, strerror(saved));
		errno = saved;
		return -1;
	}
	if (md_fix_owner(fd, o, o->file_mode, name, error_r) < 0 ||
	    md_write_all(fd, data, len) < 0) {
		saved = errno;
		if (*error_r == NULL)
			*error_r = err_errno(saved, "write %s: %s", name, strerror(saved));
		close(fd);
		unlinkat(dirfd, name, 0);
		errno = saved;
		return -1;
	}
	return fd;
}

int
md_replace_file(int tmpdirfd, const char *tmpname, bool excl, int dirfd,
                const char *name, const void *data, size_t len,
                const struct maildir_options *o, time_t mtime,
                const char **error_r)
{
	int fd;

	if (excl) {
		/* the temp file is a lock others judge: complete before named */
		fd = md_create_excl(tmpdirfd, tmpname, o, data, len, error_r);
		if (fd < 0)
			return -1;
	} else {
		fd = openat(tmpdirfd, tmpname,
		            O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_TRUNC,
		            o->file_mode);
		if (fd < 0) {
			*error_r = err_errno(errno, "create %s: %s", tmpname, strerror(errno));
			return -1;
		}
		if (md_fix_owner(fd, o, o->file_mode, tmpname, error_r) < 0)
			goto fail;
		if (md_write_all(fd, data, len) < 0) {
			*error_r = err_errno(errno, "write %s: %s", tmpname, strerror(errno));
			goto fail;
		}
	}
	if (mtime > 0) {
		struct timespec ts[2] = { { mtime, 0 }, { mtime, 0 } };

		if (futimens(fd, ts) < 0) {
			*error_r = err_errno(errno, "utime %s: %s", tmpname, strerror(errno));
			goto fail;
		}
	}
	if (o->fsync && fdatasync(fd) < 0) {
		*error_r = err_errno(errno, "fdatasync %s: %s", tmpname, strerror(errno));
		goto fail;
	}
	if (close(fd) < 0) {
		fd = -1;
		*error_r = err_errno(errno, "close %s: %s", tmpname, strerror(errno));
		goto fail;
	}
	fd = -1;
	if (renameat(tmpdirfd, tmpname, dirfd, name) < 0) {
		*error_r = err_errno(errno, "rename %s to %s: %s", tmpname, name, strerror(errno));
		goto fail;
	}
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlinkat(tmpdirfd, tmpname, 0);
	return -1;
}

/* ------------------------------------------------------------------ */
/* Locks */

static _Thread_local char lock_id[300];

const char *
md_lock_id(void)
{
	char host[256];

	if (gethostname(host, sizeof(host)) < 0)
		str_copy(host, "localhost", sizeof(host));
	host[sizeof(host) - 1] = '\0';
	snprintf(lock_id, sizeof(lock_id), "%ld:%s", (long)getpid(), host);
	return lock_id;
}

struct lock_info {
	char holder[128];       /* printable copy of the content */
	int64_t age_s;          /* by mtime */
	ino_t ino;
	dev_t dev;
	bool gone;
	bool stale;
};

static int64_t
age_of(const struct timespec *ts)
{
	return (int64_t)time(NULL) - (int64_t)ts->tv_sec;
}

/* Looks at an existing lock: who holds it and whether it is stale by the
 * rules of spec. */
static void
lock_examine(int lockdirfd, int watchdirfd, const struct md_lock_spec *spec,
             struct lock_info *li)
{
	char raw[256], myid[300];
	struct stat st, wst;
	ssize_t n;
	int fd;

	memset(li, 0, sizeof(*li));
	fd = openat(lockdirfd, spec->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		li->gone = errno == ENOENT;
		str_copy(li->holder, "(unreadable)", sizeof(li->holder));
		return;
	}
	if (fstat(fd, &st) < 0) {
		close(fd);
		return;
	}
	li->ino = st.st_ino;
	li->dev = st.st_dev;
	li->age_s = age_of(&st.st_mtim);
	n = read(fd, raw, sizeof(raw) - 1);
	close(fd);
	if (n < 0)
		n = 0;
	raw[n] = '\0';
	{
		size_t j = 0;

		for (ssize_t i = 0; i < n && j + 1 < sizeof(li->holder); i++) {
			if (raw[i] == '\n' || raw[i] == '\0')
				break;
			li->holder[j++] = (raw[i] >= 0x20 && raw[i] < 0x7f) ? raw[i] : '?';
		}
		li->holder[j] = '\0';
	}

	/* <pid>:<our hostname> with the pid gone */
	str_copy(myid, md_lock_id(), sizeof(myid));
	{
		const char *colon = strchr(raw, ':');
		const char *mycolon = strchr(myid, ':');
		uint64_t pid;

		if (colon != NULL && strcmp(colon, mycolon) == 0 &&
		    str_to_u64(raw, (size_t)(colon - raw), INT32_MAX, &pid) &&
		    pid > 0 && (pid_t)pid != getpid() &&
		    kill((pid_t)pid, 0) < 0 && errno == ESRCH &&
		    li->age_s >= (int64_t)spec->dead_pid_min_age_s) {
			li->stale = true;
			return;
		}
	}
	/* unchanged for stale_s */
	if (spec->stale_by_ctime) {
		if (age_of(&st.st_ctim) < (int64_t)spec->stale_s)
			return;
		if (spec->watch_name != NULL &&
		    fstatat(watchdirfd, spec->watch_name, &wst, AT_SYMLINK_NOFOLLOW) == 0 &&
		    age_of(&wst.st_ctim) < (int64_t)spec->stale_s)
			return;
		li->stale = true;
	} else if (li->age_s >= (int64_t)spec->stale_s) {
		li->stale = true;
	}
}

int
md_lock_take(int lockdirfd, int watchdirfd, const struct md_lock_spec *spec,
             struct md_lock *lk, const struct maildir_options *o,
             unsigned int timeout_ms, const char *where, const char **error_r)
{
	uint64_t start = time_mono_ms();
	unsigned int sleep_ms = 10;
	struct lock_info li = { .holder = "" };

	for (;;) {
		const char *id = md_lock_id();
		const char *err2 = NULL;
		/* owner, mode and "<pid>:<host>" are in place before the lock
		 * has a name: a kill -9 never leaves an empty root-owned lock
		 * that Dovecot cannot read and waits 2 minutes for */
		int fd = md_create_excl(lockdirfd, spec->name, o, id, strlen(id), &err2);
		struct stat st;
		uint64_t waited;

		if (fd >= 0) {
			if (fstat(fd, &st) < 0) {
				*error_r = err_errno(errno, "%s: lock %s: %s", where,
				                   spec->name, strerror(errno));
				close(fd);
				unlinkat(lockdirfd, spec->name, 0);
				return -1;
			}
			lk->fd = fd;
			lk->ino = st.st_ino;
			lk->dev = st.st_dev;
			lk->touched_ms = time_mono_ms();
			return 0;
		}
		if (errno != EEXIST) {
			*error_r = err_wrap(err2, "%s: lock: %s", where, err2);
			return -1;
		}
		lock_examine(lockdirfd, watchdirfd, spec, &li);
		if (li.gone)
			continue;
		if (li.stale) {
			struct stat now;

			/* unlink only the lock we judged, not a fresh one */
			if (fstatat(lockdirfd, spec->name, &now, AT_SYMLINK_NOFOLLOW) == 0 &&
			    now.st_ino == li.ino && now.st_dev == li.dev)
				unlinkat(lockdirfd, spec->name, 0);
			continue;
		}
		waited = time_mono_ms() - start;
		if (waited >= timeout_ms) {
			*error_r = err_set("%s: %s is locked by \"%s\" (lock age %lld s); "
			                   "gave up after %.1f s", where, spec->name,
			                   li.holder, (long long)li.age_s,
			                   (double)waited / 1000.0);
			return -1;
		}
		if (sleep_ms > timeout_ms - waited)
			sleep_ms = (unsigned int)(timeout_ms - waited);
		{
			struct timespec ts = { sleep_ms / 1000,
			                       (long)(sleep_ms % 1000) * 1000000L };

			nanosleep(&ts, NULL);
		}
		if (sleep_ms < 200)
			sleep_ms *= 2;
	}
}

bool
md_lock_is_ours(int lockdirfd, const struct md_lock_spec *spec,
                const struct md_lock *lk)
{
	struct stat st;

	return lk->fd >= 0 &&
	       fstatat(lockdirfd, spec->name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	       st.st_ino == lk->ino && st.st_dev == lk->dev;
}

void
md_lock_touch(struct md_lock *lk)
{
	uint64_t now = time_mono_ms();

	if (lk->fd >= 0 && now - lk->touched_ms >= 10000) {
		futimens(lk->fd, NULL);
		lk->touched_ms = now;
	}
}

void
md_lock_release(int lockdirfd, const struct md_lock_spec *spec, struct md_lock *lk)
{
	if (lk->fd < 0)
		return;
	if (md_lock_is_ours(lockdirfd, spec, lk))
		unlinkat(lockdirfd, spec->name, 0);
	close(lk->fd);
	lk->fd = -1;
}
