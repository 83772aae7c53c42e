/* maildir-create.c: folder creation that a live server never sees half
 * done. A new folder is built complete (cur/, new/, tmp/, maildirfolder and
 * a uidlist with the chosen UIDVALIDITY) under a name the server ignores,
 * then renamed into place with one rename(2). An empty folder the server
 * numbered itself (its UIDVALIDITY, no message) is taken over under the
 * uidlist lock. Kept apart from maildir.c (open, deliver, commit). */
#define _GNU_SOURCE             /* renameat2(RENAME_NOREPLACE) */
#include "maildir-private.h"

#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STAGE_TAG ".imapferry-new-"

static const struct md_lock_spec create_lock_dovecot = {
	.name = MD_LOCK_DOVECOT,
	.watch_name = MD_UIDLIST_DOVECOT,
	.dead_pid_min_age_s = 2,
	.stale_s = 120,
	.stale_by_ctime = true,
};

static const struct md_lock_spec create_lock_courier = {
	.name = MD_LOCK_COURIER,
	.watch_name = NULL,
	.dead_pid_min_age_s = 0,
	.stale_s = 120,
	.stale_by_ctime = false,
};

static void
fill_defaults(struct maildir_options *o, const struct maildir_options *in)
{
	if (in != NULL)
		*o = *in;
	else
		maildir_options_init(o);
	if (o->file_mode == 0)
		o->file_mode = 0600;
	if (o->dir_mode == 0)
		o->dir_mode = 0700;
	if (o->lock_timeout_ms == 0)
		o->lock_timeout_ms = 30000;
}

/* Writes the uidlist "V<uidvalidity> N1" into the directory dfd (temp name
 * in tmpfd, renamed into place). */
static int
write_uidlist(int dfd, int tmpfd, const struct maildir_options *o,
              uint32_t uidvalidity, const char **error_r)
{
	struct buf b;
	char tmpname[128];
	int r;

	buf_init(&b, 4096);
	r = md_uidlist_format_header(&b, o->flavor, uidvalidity, 1, NULL);
	if (r == 0) {
		if (o->flavor == MAILDIR_DOVECOT)
			r = md_replace_file(dfd, MD_UIDLIST_DOVECOT ".tmp", false, dfd,
			                    MD_UIDLIST_DOVECOT, buf_data(&b), buf_len(&b),
			                    o, 0, error_r);
		else {
			snprintf(tmpname, sizeof(tmpname), "%lld.%ld_uiddb.create",
			         (long long)time(NULL), (long)getpid());
			r = md_replace_file(tmpfd, tmpname, false, dfd, MD_UIDLIST_COURIER,
			                    buf_data(&b), buf_len(&b), o, 0, error_r);
		}
	} else {
		*error_r = err_set("uidlist too large");
	}
	buf_free(&b);
	return r;
}

/* Fills the empty directory dfd as a folder: cur/ new/ tmp/, maildirfolder
 * (unless INBOX), the uidlist; fsyncs what it wrote when o->fsync. */
static int
fill_folder(int dfd, bool inbox, const struct maildir_options *o,
            uint32_t uidvalidity, const char **error_r)
{
	static const char *const subdirs[] = { "cur", "new", "tmp" };
	int tmpfd = -1, ret = 0;

	for (size_t i = 0; i < N_ELEMENTS(subdirs) && ret == 0; i++) {
		int fd = md_mkdir_open(dfd, subdirs[i], o, true, NULL, error_r);

		if (fd < 0)
			ret = -1;
		else if (strcmp(subdirs[i], "tmp") == 0)
			tmpfd = fd;
		else
			close(fd);
	}
	if (ret == 0 && !inbox) {
		int fd = openat(dfd, "maildirfolder",
		                O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		                o->file_mode);

		if (fd < 0) {
			*error_r = err_errno(errno, "create maildirfolder: %s", strerror(errno));
			ret = -1;
		} else {
			ret = md_fix_owner(fd, o, o->file_mode, "maildirfolder", error_r);
			close(fd);
		}
	}
	if (ret == 0)
		ret = write_uidlist(dfd, tmpfd, o, uidvalidity, error_r);
	if (ret == 0 && o->fsync && fsync(dfd) < 0) {
		*error_r = err_errno(errno, "fsync: %s", strerror(errno));
		ret = -1;
	}
	if (tmpfd >= 0)
		close(tmpfd);
	return ret;
}

/* Removes a staging directory (and the little fill_folder() put in it). */
static void
remove_stage(int parentfd, const char *name)
{
	static const char *const subdirs[] = { "cur", "new", "tmp" };
	int dfd = openat(parentfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d;
	struct dirent *de;

	if (dfd < 0)
		return;
	for (size_t i = 0; i < N_ELEMENTS(subdirs); i++) {
		int sfd = openat(dfd, subdirs[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
		                 O_CLOEXEC);

		if (sfd < 0)
			continue;
		d = fdopendir(sfd);
		if (d == NULL) {
			close(sfd);
			continue;
		}
		while ((de = readdir(d)) != NULL)
			if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
				(void)unlinkat(sfd, de->d_name, 0);
		closedir(d);
		(void)unlinkat(dfd, subdirs[i], AT_REMOVEDIR);
	}
	d = fdopendir(dfd);
	if (d == NULL) {
		close(dfd);
	} else {
		/* files, and the empty stages of a subdirectory a kill
		 * interrupted (md_mkdirat_owned()) */
		while ((de = readdir(d)) != NULL)
			if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
			    unlinkat(dirfd(d), de->d_name, 0) < 0 && errno == EISDIR)
				(void)unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR);
		closedir(d);
	}
	(void)unlinkat(parentfd, name, AT_REMOVEDIR);
}

/* remove() of md_cleanup_stages(): a folder stage of a killed run. */
static void
remove_stage_of_killed_run(int parentfd, const char *name)
{
	remove_stage(parentfd, name);
	log_debug("removed the staging directory %s left by a killed run", name);
}

/* Removes staging directories "<prefix><pid>-*" under parentfd whose pid
 * is gone (a killed run): only ours, never a live writer's. The same pass
 * removes the empty stages of md_mkdirat_owned(). */
static void
cleanup_stages(int parentfd, const char *prefix)
{
	md_cleanup_stages(parentfd, prefix, remove_stage_of_killed_run);
}

/* Builds a folder under parentfd/<prefix><pid>-XXXXXX and renames it to
 * parentfd/name unless that exists. *created_r: whether it was ours. */
static int
build_and_rename(int parentfd, const char *parent, const char *prefix,
                 const char *name, int name_dirfd, bool inbox,
                 const struct maildir_options *o, uint32_t uidvalidity,
                 bool *created_r, const char **error_r)
{
	char *tmpl = xasprintf("%s/%s%ld-XXXXXX", parent, prefix, (long)getpid());
	const char *stage;
	int dfd, r;

	*created_r = false;
	cleanup_stages(parentfd, prefix);
	if (mkdtemp(tmpl) == NULL) {
		*error_r = err_errno(errno, "mkdtemp %s: %s", tmpl, strerror(errno));
		free(tmpl);
		return -1;
	}
	stage = strrchr(tmpl, '/') + 1;
	dfd = openat(parentfd, stage, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0 || md_fix_owner(dfd, o, o->dir_mode, stage, error_r) < 0 ||
	    fill_folder(dfd, inbox, o, uidvalidity, error_r) < 0) {
		if (dfd < 0)
			*error_r = err_errno(errno, "open %s: %s", tmpl, strerror(errno));
		else
			close(dfd);
		remove_stage(parentfd, stage);
		free(tmpl);
		return -1;
	}
	close(dfd);
	r = renameat2(parentfd, stage, name_dirfd, name, RENAME_NOREPLACE);
	if (r < 0 && errno == EINVAL) {
		/* no RENAME_NOREPLACE here: rename(2) still refuses a
		 * non-empty directory */
		struct stat st;

		if (fstatat(name_dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			errno = EEXIST;
		} else {
			r = renameat(parentfd, stage, name_dirfd, name);
		}
	}
	if (r < 0) {
		int e = errno;

		remove_stage(parentfd, stage);
		if (e != EEXIST && e != ENOTEMPTY)
			*error_r = err_errno(e, "rename %s to %s: %s", stage, name,
			                     strerror(e));
		free(tmpl);
		/* EEXIST: someone else created it meanwhile */
		return e == EEXIST || e == ENOTEMPTY ? 0 : -1;
	}
	if (o->fsync && fsync(name_dirfd) < 0) {
		*error_r = err_errno(errno, "fsync: %s", strerror(errno));
		free(tmpl);
		return -1;
	}
	*created_r = true;
	free(tmpl);
	return 0;
}

int
maildir_folder_create(const char *root, const char *dirname,
                      const struct maildir_options *opts, uint32_t uidvalidity,
                      bool *created_r, const char **error_r)
{
	struct maildir_options o;
	struct stat st;
	const char *err = NULL;
	int ret = -1;

	*created_r = false;
	if (uidvalidity == 0) {
		*error_r = err_set("UIDVALIDITY 0 is invalid");
		return -1;
	}
	if (dirname[0] != '\0' &&
	    (dirname[0] != '.' || strcmp(dirname, ".") == 0 ||
	     strcmp(dirname, "..") == 0 || strchr(dirname, '/') != NULL ||
	     strlen(dirname) > MAILDIR_DIRNAME_MAX)) {
		*error_r = err_set("invalid Maildir++ folder directory \"%.100s\"", dirname);
		return -1;
	}
	fill_defaults(&o, opts);
	if (dirname[0] == '\0') {
		/* INBOX is the root: build it beside the root */
		char *copy = xstrdup(root), *slash, *parent, *prefix;
		int pfd;

		while (strlen(copy) > 1 && copy[strlen(copy) - 1] == '/')
			copy[strlen(copy) - 1] = '\0';
		if (stat(copy, &st) == 0) {
			free(copy);
			return 0;
		}
		slash = strrchr(copy, '/');
		parent = slash == NULL ? xstrdup(".") :
		         slash == copy ? xstrdup("/") : xstrndup(copy, (size_t)(slash - copy));
		prefix = xasprintf(".%s" STAGE_TAG, slash == NULL ? copy : slash + 1);
		if (md_mkdir_p(parent, &o, &err) < 0) {
			*error_r = err_wrap(err, "%s", err);
		} else if ((pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
			*error_r = err_errno(errno, "open %s: %s", parent, strerror(errno));
		} else {
			ret = build_and_rename(pfd, parent, prefix,
			                       slash == NULL ? copy : slash + 1, pfd, true,
			                       &o, uidvalidity, created_r, &err);
			if (ret < 0)
				*error_r = err_wrap(err, "%s: %s", root, err);
			close(pfd);
		}
		free(prefix);
		free(parent);
		free(copy);
		return ret;
	} else {
		/* the staging directory goes in the root's tmp/ (Dovecot and
		 * Courier skip directories there), or, in a root without
		 * tmp/ (not a Maildir itself), in the root under a name
		 * without the leading '.' of Maildir++ folders */
		char *tmpdir = xasprintf("%s/tmp", root);
		int rootfd = -1, tfd = -1;

		if (md_mkdir_p(root, &o, &err) < 0) {
			*error_r = err_wrap(err, "%s", err);
		} else if ((rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
			*error_r = err_errno(errno, "open %s: %s", root, strerror(errno));
		} else if (fstatat(rootfd, dirname, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			ret = 0;        /* exists: maildir_folder_open() checks it */
		} else {
			tfd = openat(rootfd, "tmp", O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
			             O_CLOEXEC);
			if (tfd >= 0)
				ret = build_and_rename(tfd, tmpdir, STAGE_TAG, dirname, rootfd,
				                       false, &o, uidvalidity, created_r, &err);
			else
				ret = build_and_rename(rootfd, root, &STAGE_TAG[1], dirname,
				                       rootfd, false, &o, uidvalidity,
				                       created_r, &err);
			if (ret < 0)
				*error_r = err_wrap(err, "%s/%s: %s", root, dirname, err);
		}
		if (tfd >= 0)
			close(tfd);
		if (rootfd >= 0)
			close(rootfd);
		free(tmpdir);
		return ret;
	}
}

/* true if the directory dfd/sub holds nothing but dot files. */
static bool
subdir_empty(int dfd, const char *sub)
{
	int fd = openat(dfd, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	bool empty = true;

	if (d == NULL) {
		if (fd >= 0)
			close(fd);
		return fd < 0 && errno == ENOENT;
	}
	while (empty && (de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			empty = false;
	closedir(d);
	return empty;
}

int
maildir_folder_takeover(const char *root, const char *dirname,
                        const struct maildir_options *opts, uint32_t uidvalidity,
                        const char **error_r)
{
	const struct md_lock_spec *spec;
	struct maildir_options o;
	struct md_lock lk = { .fd = -1 };
	struct md_uidlist ul = { 0 };
	struct buf b;
	struct stat st;
	const char *err = NULL, *where;
	char *path;
	int dfd, tmpfd = -1, r, ret = -1;

	fill_defaults(&o, opts);
	spec = o.flavor == MAILDIR_COURIER ? &create_lock_courier : &create_lock_dovecot;
	path = dirname[0] == '\0' ? xstrdup(root) : xasprintf("%s/%s", root, dirname);
	where = path;
	dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0) {
		*error_r = err_errno(errno, "open %s: %s", path, strerror(errno));
		free(path);
		return -1;
	}
	tmpfd = openat(dfd, "tmp", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (tmpfd < 0) {
		*error_r = err_errno(errno, "open %s/tmp: %s", path, strerror(errno));
		goto out;
	}
	if (md_lock_take(o.flavor == MAILDIR_COURIER ? tmpfd : dfd, dfd, spec, &lk, &o,
	                 o.lock_timeout_ms, where, &err) < 0) {
		*error_r = err_wrap(err, "%s", err);
		goto out;
	}
	/* under the lock, check again: no message, no uidlist line */
	buf_init(&b, MD_META_MAX);
	r = md_read_at(dfd, o.flavor == MAILDIR_COURIER ? MD_UIDLIST_COURIER :
	               MD_UIDLIST_DOVECOT, &b, &st, &err);
	if (r < 0) {
		*error_r = err_wrap(err, "%s: %s", where, err);
	} else if (r > 0 && md_uidlist_parse(buf_data(&b), buf_len(&b), &ul, &err) < 0) {
		*error_r = err_wrap(err, "%s: %s", where, err);
	} else if (ul.nrecs > 0 || !subdir_empty(dfd, "cur") || !subdir_empty(dfd, "new")) {
		*error_r = err_set("%s is not empty: not taking it over", where);
	} else {
		ret = write_uidlist(dfd, tmpfd, &o, uidvalidity, &err);
		if (ret < 0)
			*error_r = err_wrap(err, "%s: %s", where, err);
		else if (r > 0)
			log_info("%s: empty folder numbered by the server (UIDVALIDITY "
			         "%u) given the source's UIDVALIDITY %u", where,
			         ul.uidvalidity, uidvalidity);
	}
	buf_free(&b);
	md_uidlist_free(&ul);
	md_lock_release(o.flavor == MAILDIR_COURIER ? tmpfd : dfd, spec, &lk);
out:
	if (tmpfd >= 0)
		close(tmpfd);
	close(dfd);
	free(path);
	return ret;
}

void
maildir_create_cleanup(const char *root)
{
	char *copy = xstrdup(root), *slash, *parent, *prefix;
	int fd;

	while (strlen(copy) > 1 && copy[strlen(copy) - 1] == '/')
		copy[strlen(copy) - 1] = '\0';
	fd = open(copy, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		int tfd = openat(fd, "tmp", O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
		                 O_CLOEXEC);

		if (tfd >= 0) {
			cleanup_stages(tfd, STAGE_TAG);
			close(tfd);
		}
		cleanup_stages(fd, &STAGE_TAG[1]);
		close(fd);
	}
	slash = strrchr(copy, '/');
	if (slash != NULL && slash[1] != '\0') {
		parent = slash == copy ? xstrdup("/") : xstrndup(copy, (size_t)(slash - copy));
		prefix = xasprintf(".%s" STAGE_TAG, slash + 1);
		fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0) {
			cleanup_stages(fd, prefix);
			close(fd);
		}
		free(prefix);
		free(parent);
	}
	free(copy);
}
