/* maildir-account.c: account-level files of a Maildir++ root: the
 * subscriptions file and the list of folders. */
#include "maildir-private.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SUBS_LOCK_STALE_S 30

void
maildir_strv_free(char ***v, size_t n)
{
	if (*v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free((*v)[i]);
	free(*v);
	*v = NULL;
}

static const char *
subs_name(enum maildir_flavor flavor)
{
	return flavor == MAILDIR_COURIER ? "courierimapsubscribed" : "subscriptions";
}

int
maildir_subscriptions_write(const char *root, const struct maildir_options *o,
                            const char *const *names, size_t n, char separator,
                            const char **error_r)
{
	struct maildir_options defaults;
	const char *name, *err;
	char lockname[64];
	uint64_t start = time_mono_ms();
	struct buf b;
	int rootfd, fd = -1, r = -1;

	if (o == NULL) {
		maildir_options_init(&defaults);
		o = &defaults;
	}
	name = subs_name(o->flavor);
	snprintf(lockname, sizeof(lockname), "%s.lock", name);
	buf_init(&b, MD_META_MAX);
	if (md_subs_format(&b, o->flavor, names, n, separator, error_r) < 0) {
		buf_free(&b);
		return -1;
	}
	rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0) {
		*error_r = err_errno(errno, "open %s: %s", root, strerror(errno));
		buf_free(&b);
		return -1;
	}
	/* The ".lock" file is the temp file (Dovecot's dotlock protocol):
	 * whoever creates it may rename it into place. It has its owner and
	 * content before it has its name (md_create_excl). */
	for (;;) {
		struct stat st;

		fd = md_create_excl(rootfd, lockname, o, buf_data(&b), buf_len(&b), &err);
		if (fd >= 0 || errno != EEXIST)
			break;
		if (fstatat(rootfd, lockname, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    (int64_t)time(NULL) - (int64_t)st.st_mtime >= SUBS_LOCK_STALE_S) {
			unlinkat(rootfd, lockname, 0);
			continue;
		}
		if (time_mono_ms() - start >= (o->lock_timeout_ms != 0 ?
		                               o->lock_timeout_ms : 30000)) {
			errno = EEXIST;
			break;
		}
		{
			struct timespec ts = { 0, 50 * 1000000L };

			nanosleep(&ts, NULL);
		}
	}
	if (fd < 0) {
		if (errno == EEXIST)
			*error_r = err_set("%s/%s: locked by another process", root, lockname);
		else
			*error_r = err_wrap(err, "%s: %s", root, err);
		goto out;
	}
	if (o->fsync && fdatasync(fd) < 0) {
		*error_r = err_errno(errno, "%s/%s: write: %s", root, lockname, strerror(errno));
		goto out_unlink;
	}
	r = close(fd);
	fd = -1;
	if (r < 0 || renameat(rootfd, lockname, rootfd, name) < 0) {
		*error_r = err_errno(errno, "%s/%s: %s", root, name, strerror(errno));
		r = -1;
		goto out_unlink;
	}
	if (o->fsync && fsync(rootfd) < 0) {
		*error_r = err_errno(errno, "%s: fsync: %s", root, strerror(errno));
		r = -1;
		goto out;
	}
	r = 0;
	goto out;
out_unlink:
	unlinkat(rootfd, lockname, 0);
	r = -1;
out:
	if (fd >= 0)
		close(fd);
	close(rootfd);
	buf_free(&b);
	return r;
}

int
maildir_subscriptions_read(const char *root, enum maildir_flavor flavor,
                           char separator, char ***names_r, size_t *n_r,
                           const char **error_r)
{
	struct stat st;
	struct buf b;
	const char *err;
	int rootfd, r;

	*names_r = NULL;
	*n_r = 0;
	rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0) {
		*error_r = err_errno(errno, "open %s: %s", root, strerror(errno));
		return -1;
	}
	buf_init(&b, MD_META_MAX);
	r = md_read_at(rootfd, subs_name(flavor), &b, &st, &err);
	close(rootfd);
	if (r < 0) {
		*error_r = err_wrap(err, "%s: %s", root, err);
		buf_free(&b);
		return -1;
	}
	if (r > 0)
		md_subs_parse(buf_data(&b), buf_len(&b), flavor, separator, names_r, n_r);
	buf_free(&b);
	return 0;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* true if name under dfd is a real directory (not a symlink) with cur/. */
static bool
is_folder_dir(int dfd, const char *name)
{
	struct stat st;
	int fd;
	bool ok;

	if (name[0] != '\0') {
		fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return false;
	} else {
		fd = dfd;
	}
	ok = fstatat(fd, "cur", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
	if (fd != dfd)
		close(fd);
	return ok;
}

int
maildir_list_folders(const char *root, char ***dirnames_r, size_t *n_r,
                     const char **error_r)
{
	char **v = NULL;
	size_t n = 0;
	struct dirent *de;
	DIR *d;
	int rootfd;

	*dirnames_r = NULL;
	*n_r = 0;
	rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0) {
		*error_r = err_errno(errno, "open %s: %s", root, strerror(errno));
		return -1;
	}
	d = fdopendir(rootfd);
	if (d == NULL) {
		*error_r = err_errno(errno, "opendir %s: %s", root, strerror(errno));
		close(rootfd);
		return -1;
	}
	while ((errno = 0, de = readdir(d)) != NULL) {
		if (de->d_name[0] != '.' || strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (!is_folder_dir(dirfd(d), de->d_name))
			continue;
		v = xreallocarray(v, n + 1, sizeof(*v));
		v[n++] = xstrdup(de->d_name);
	}
	if (errno != 0) {
		*error_r = err_errno(errno, "readdir %s: %s", root, strerror(errno));
		closedir(d);
		maildir_strv_free(&v, n);
		return -1;
	}
	if (is_folder_dir(dirfd(d), "")) {
		v = xreallocarray(v, n + 1, sizeof(*v));
		v[n++] = xstrdup("");
	}
	closedir(d);
	if (n > 0)
		qsort(v, n, sizeof(*v), cmp_str);
	*dirnames_r = v;
	*n_r = n;
	return 0;
}
