/* cyrus-fs.c: a user's mailboxes in a copied Cyrus partition. Every path
 * below the root is opened with openat() one component at a time with
 * O_NOFOLLOW, so nothing outside the root is ever read. */
#include "cyrus.h"

#include "buf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define META_MAX (256u << 20)     /* cyrus.index, cyrus.header, db files */
#define WALK_DEPTH 64
#define MAILBOXES_MAX 100000

struct cyrus_account {
	int root_fd;
	char *root;
	char *user;               /* as given */
	struct cyrus_mailbox *boxes;
	size_t count;
	char *inbox_id;           /* INBOX's uniqueid in the uuid layout */
	char *seen;               /* the flat seen db, or NULL */
	size_t seen_len;
};

struct cyrus_folder {
	const struct cyrus_account *a;
	int dir_fd;
	struct cyrus_header h;
	struct cyrus_index ix;
	uint32_t *seen;           /* ranges (lo, hi) from the seen db (< 12) */
	size_t n_seen;
};

/* Opens rel ('/'-separated, below dir_fd) as a directory without
 * following symlinks. Returns the fd, or -1 with *error_r. */
static int
open_dir_below(int dir_fd, const char *rel, const char **error_r)
{
	char *copy = xstrdup(rel), *save = NULL;
	int fd = dup(dir_fd);

	if (fd < 0) {
		*error_r = err_errno(errno, "dup: %s", strerror(errno));
		free(copy);
		return -1;
	}
	for (char *comp = strtok_r(copy, "/", &save); comp != NULL;
	     comp = strtok_r(NULL, "/", &save)) {
		int next;

		if (strcmp(comp, ".") == 0 || strcmp(comp, "..") == 0) {
			*error_r = err_setk(ERRK_USAGE, "%s: '.' or '..' in a spool path",
			                    rel);
			goto fail;
		}
		next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0) {
			int e = errno;

			*error_r = err_setk(ERRK_FOLDER, "%s: %s", rel,
			                    e == ELOOP || e == ENOTDIR ?
			                    "a symlink or not a directory in the path" :
			                    strerror(e));
			goto fail;
		}
		close(fd);
		fd = next;
	}
	free(copy);
	return fd;
fail:
	close(fd);
	free(copy);
	return -1;
}

/* Reads the regular file name in dir_fd (at most max bytes, no symlink). */
static int
read_file_at(int dir_fd, const char *name, size_t max, char **data_r,
             size_t *len_r, const char **error_r)
{
	int fd = openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	size_t len = 0;
	char *data;

	if (fd < 0) {
		*error_r = err_setk(ERRK_FOLDER, "%s: %s", name, errno == ELOOP ?
		                    "is a symlink" : strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
		*error_r = err_setk(ERRK_FOLDER, "%s: not a regular file of at most "
		                    "%zu bytes", name, max);
		close(fd);
		return -1;
	}
	data = xmalloc((size_t)st.st_size + 1);
	while (len < (size_t)st.st_size) {
		ssize_t n = read(fd, data + len, (size_t)st.st_size - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			*error_r = err_setk(ERRK_FOLDER, "%s: %s", name,
			                    n < 0 ? strerror(errno) : "shrank while read");
			free(data);
			close(fd);
			return -1;
		}
		len += (size_t)n;
	}
	close(fd);
	data[len] = '\0';
	*data_r = data;
	*len_r = len;
	return 0;
}

static bool
is_dir_at(int dir_fd, const char *name)
{
	struct stat st;

	return fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	       S_ISDIR(st.st_mode);
}

static bool
is_file_at(int dir_fd, const char *name)
{
	struct stat st;

	return fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	       S_ISREG(st.st_mode);
}

/* A local part or folder level as a directory name: '.' is '^'. */
static char *
dir_component(const char *s, size_t len)
{
	char *c = xstrndup(s, len);

	for (char *p = c; *p != '\0'; p++)
		if (*p == '.')
			*p = '^';
	return c;
}

static void
add_box(struct cyrus_account *a, size_t *alloc, char *name, char *dir)
{
	if (a->count + 1 >= *alloc) {
		*alloc = *alloc == 0 ? 16 : *alloc * 2;
		a->boxes = xreallocarray(a->boxes, *alloc, sizeof(*a->boxes));
	}
	memset(&a->boxes[a->count], 0, sizeof(a->boxes[0]));
	a->boxes[a->count].name = name;
	a->boxes[a->count].dir = dir;
	a->count++;
}

/* Every directory below user_dir (relative to the root) holding a
 * cyrus.header is a mailbox; its folder name is its path below user_dir,
 * '^' read as '.'. Entries with a '.' are message or meta files (a
 * directory cannot have one: levels are separate directories). */
static int
walk_legacy(struct cyrus_account *a, const char *user_dir, const char **error_r)
{
	struct item { char *rel, *name; unsigned depth; } *stack = NULL;
	size_t n = 0, alloc_stack = 0, alloc_boxes = 0;
	int ret = 0;

	stack = xcalloc(1, sizeof(*stack));
	alloc_stack = 1;
	stack[n++] = (struct item){ xstrdup(user_dir), xstrdup("INBOX"), 0 };
	while (n > 0) {
		struct item it = stack[--n];
		int fd = open_dir_below(a->root_fd, it.rel, error_r);
		DIR *d;
		struct dirent *de;

		if (fd < 0) {
			free(it.rel);
			free(it.name);
			ret = -1;
			break;
		}
		if (is_file_at(fd, "cyrus.header")) {
			if (a->count >= MAILBOXES_MAX) {
				*error_r = err_setk(ERRK_FOLDER, "more than %d mailboxes",
				                    MAILBOXES_MAX);
				close(fd);
				free(it.rel);
				free(it.name);
				ret = -1;
				break;
			}
			add_box(a, &alloc_boxes, xstrdup(it.name), xstrdup(it.rel));
		}
		if ((d = fdopendir(fd)) == NULL) {
			close(fd);
			free(it.rel);
			free(it.name);
			continue;
		}
		while ((de = readdir(d)) != NULL) {
			char *sub;

			if (strchr(de->d_name, '.') != NULL ||
			    !is_dir_at(dirfd(d), de->d_name) || it.depth + 1 >= WALK_DEPTH)
				continue;
			sub = xstrdup(de->d_name);
			for (char *c = sub; *c != '\0'; c++)
				if (*c == '^')
					*c = '.';
			if (n == alloc_stack) {
				alloc_stack *= 2;
				stack = xreallocarray(stack, alloc_stack, sizeof(*stack));
			}
			stack[n++] = (struct item){
				xasprintf("%s/%s", it.rel, de->d_name),
				it.depth == 0 ? xstrdup(sub) : xasprintf("%s/%s", it.name, sub),
				it.depth + 1,
			};
			free(sub);
		}
		closedir(d);
		free(it.rel);
		free(it.name);
	}
	for (size_t i = 0; i < n; i++) {
		free(stack[i].rel);
		free(stack[i].name);
	}
	free(stack);
	return ret;
}

/* The user's directory in the legacy layout for a hash mode (0 none, 1
 * hashimapspool, 2 fulldirhash). */
static char *
legacy_user_dir(const char *user, int hash)
{
	const char *at = strchr(user, '@');
	char *local = dir_component(user, at != NULL ? (size_t)(at - user) : strlen(user));
	char *dom = NULL, *path;

	if (at != NULL)
		dom = hash == 0 ? xasprintf("domain/%s/", at + 1) :
		      xasprintf("domain/%c/%s/", cyrus_dir_hash(at + 1, hash == 2), at + 1);
	if (hash == 0)
		path = xasprintf("%suser/%s", dom != NULL ? dom : "", local);
	else
		path = xasprintf("%s%c/user/%s", dom != NULL ? dom : "",
		                 cyrus_dir_hash(local, hash == 2), local);
	free(local);
	free(dom);
	return path;
}

static char *
expand_tmpl(const char *tmpl, const char *user)
{
	const char *at = strchr(user, '@');
	size_t ulen = at != NULL ? (size_t)(at - user) : strlen(user);
	char *local = dir_component(user, ulen);
	struct buf b;

	buf_init(&b, 1 << 16);
	for (const char *p = tmpl; *p != '\0'; p++) {
		if (*p != '%' || p[1] == '\0') {
			ignore_result(buf_append(&b, p, 1));
			continue;
		}
		switch (*++p) {
		case 'u': ignore_result(buf_append_str(&b, local)); break;
		case 'd': ignore_result(buf_append_str(&b, at != NULL ? at + 1 : "")); break;
		case 'h': ignore_result(buf_printf(&b, "%c", cyrus_dir_hash(local, false))); break;
		case 'H': ignore_result(buf_printf(&b, "%c", cyrus_dir_hash(local, true))); break;
		default: ignore_result(buf_append(&b, p, 1)); break;
		}
	}
	free(local);
	return buf_take(&b);
}

/* Finds the config file of the user for ext ("sub", "seen") under
 * config_dir (imap/user.c, user_hash_meta(); mboxname.c,
 * mboxname_conf_getpath()): user/<h>/<user>.<ext> with the plain or the
 * full hash, and for an INBOX in the 3.x layout by unique id
 * user/uuid/<c0>/<c1>/<uniqueid>/<ext>.db. Returns a new path of an
 * existing file, or NULL. */
static char *
config_file(const char *config_dir, const char *user, const char *ext,
            const char *inbox_id)
{
	const char *at = strchr(user, '@');
	char *local = xstrndup(user, at != NULL ? (size_t)(at - user) : strlen(user));
	struct stat st;

	for (int k = 0; k < 3; k++) {
		char *path;

		if (k == 2 && (inbox_id == NULL || strlen(inbox_id) < 2))
			break;
		if (k == 2)
			path = xasprintf("%s/user/uuid/%c/%c/%s/%s.db", config_dir,
			                 inbox_id[0], inbox_id[1], inbox_id, ext);
		else if (at != NULL)
			path = xasprintf("%s/domain/%c/%s/user/%c/%s.%s", config_dir,
			                 cyrus_dir_hash(at + 1, k), at + 1,
			                 cyrus_dir_hash(local, k), local, ext);
		else
			path = xasprintf("%s/user/%c/%s.%s", config_dir,
			                 cyrus_dir_hash(local, k), local, ext);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			free(local);
			return path;
		}
		free(path);
	}
	free(local);
	return NULL;
}

static int
cmp_box(const void *a, const void *b)
{
	const struct cyrus_mailbox *x = a, *y = b;

	return strcmp(x->name, y->name);
}

static int
find_mailboxes(struct cyrus_account *a, const struct cyrus_options *o,
               const char **error_r)
{
	char *user_dir = NULL;
	int ret;

	if (o->tmpl != NULL) {
		user_dir = expand_tmpl(o->tmpl, o->user);
	} else {
		for (int hash = 0; hash < 3 && user_dir == NULL; hash++) {
			char *d = legacy_user_dir(o->user, hash);
			int fd = open_dir_below(a->root_fd, d, error_r);

			if (fd >= 0) {
				close(fd);
				user_dir = d;
			} else {
				free(d);
			}
		}
	}
	if (o->mboxlist != NULL) {
		struct cyrus_mbentry *e = NULL;
		size_t n = 0, alloc = 0;
		char *data;
		size_t len;

		if (file_read_raw(o->mboxlist, META_MAX, &data, &len, error_r) < 0) {
			free(user_dir);
			return -1;
		}
		ret = cyrus_mboxlist_parse(data, len, o->user, &e, &n, error_r);
		free(data);
		if (ret < 0) {
			free(user_dir);
			return -1;
		}
		for (size_t i = 0; i < n; i++) {
			char *dir;

			if (e[i].legacy_dirs || e[i].uniqueid == NULL) {
				char *comp = dir_component(e[i].name, strlen(e[i].name));

				if (user_dir == NULL)
					continue;
				/* '/' levels stay '/', a '.' in a level is '^' */
				dir = str_ieq(e[i].name, "INBOX") ? xstrdup(user_dir) :
				      xasprintf("%s/%s", user_dir, comp);
				free(comp);
			} else {
				if (strlen(e[i].uniqueid) < 2 || strchr(e[i].uniqueid, '/') != NULL)
					continue;
				dir = xasprintf("uuid/%c/%c/%s", e[i].uniqueid[0],
				                e[i].uniqueid[1], e[i].uniqueid);
				if (strcmp(e[i].name, "INBOX") == 0 && a->inbox_id == NULL)
					a->inbox_id = xstrdup(e[i].uniqueid);
			}
			add_box(a, &alloc, e[i].name, dir);
			e[i].name = NULL;
		}
		cyrus_mbentries_free(&e, n);
		free(user_dir);
		if (a->count == 0) {
			*error_r = err_setk(ERRK_USAGE, "%s: no mailbox of %s in the "
			                    "mailbox list", o->mboxlist, o->user);
			return -1;
		}
		return 0;
	}
	if (user_dir == NULL) {
		*error_r = err_setk(ERRK_USAGE, "%s: no mailboxes of %s (looked for "
		                    "user/NAME with and without hashimapspool; for "
		                    "the 3.x layout by unique id give mboxlist=DUMP)",
		                    a->root, o->user);
		return -1;
	}
	ret = walk_legacy(a, user_dir, error_r);
	free(user_dir);
	return ret;
}

static int
read_subscriptions(struct cyrus_account *a, const struct cyrus_options *o,
                   const char **error_r)
{
	char *path = o->sub_file != NULL ? xstrdup(o->sub_file) :
	             o->config_dir != NULL ?
	             config_file(o->config_dir, o->user, "sub", a->inbox_id) :
	             NULL;
	char *data, **names;
	size_t n, len;
	int ret;

	if (path == NULL)
		return 0;
	ret = file_read_raw(path, META_MAX, &data, &len, error_r);
	free(path);
	if (ret < 0)
		return -1;
	ret = cyrus_subs_parse(data, len, o->user, &names, &n, error_r);
	free(data);
	if (ret < 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < a->count; k++)
			if (strcmp(names[i], a->boxes[k].name) == 0)
				a->boxes[k].subscribed = true;
	strv_free(&names);
	return 0;
}

int
cyrus_account_open(const char *root, const struct cyrus_options *o,
                   struct cyrus_account **acct_r, const char **error_r)
{
	struct cyrus_account *a;
	char *seen_path;

	if (o->user == NULL || o->user[0] == '\0' || strchr(o->user, '/') != NULL ||
	    o->user[0] == '.') {
		*error_r = err_setk(ERRK_USAGE, "cyrus: a user name is needed "
		                    "(?user=NAME), without '/'");
		return -1;
	}
	a = xcalloc(1, sizeof(*a));
	a->root = xstrdup(root);
	a->user = xstrdup(o->user);
	a->root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (a->root_fd < 0) {
		*error_r = err_setk(ERRK_USAGE, "%s: not a Cyrus partition directory: %s",
		                    root, strerror(errno));
		goto fail;
	}
	if (find_mailboxes(a, o, error_r) < 0)
		goto fail;
	qsort(a->boxes, a->count, sizeof(*a->boxes), cmp_box);
	if (read_subscriptions(a, o, error_r) < 0)
		goto fail;
	seen_path = o->seen_file != NULL ? xstrdup(o->seen_file) :
	            o->config_dir != NULL ?
	            config_file(o->config_dir, o->user, "seen", a->inbox_id) :
	            NULL;
	if (seen_path != NULL) {
		int ret = file_read_raw(seen_path, META_MAX, &a->seen, &a->seen_len,
		                        error_r);

		free(seen_path);
		if (ret < 0)
			goto fail;
	}
	*acct_r = a;
	return 0;
fail:
	cyrus_account_free(&a);
	return -1;
}

void
cyrus_account_free(struct cyrus_account **ap)
{
	struct cyrus_account *a = *ap;

	if (a == NULL)
		return;
	if (a->root_fd >= 0)
		close(a->root_fd);
	for (size_t i = 0; i < a->count; i++) {
		free(a->boxes[i].name);
		free(a->boxes[i].dir);
	}
	free(a->boxes);
	free(a->root);
	free(a->user);
	free(a->inbox_id);
	free(a->seen);
	free(a);
	*ap = NULL;
}

size_t
cyrus_account_count(const struct cyrus_account *a)
{
	return a->count;
}

const struct cyrus_mailbox *
cyrus_account_mailbox(const struct cyrus_account *a, size_t i)
{
	return i < a->count ? &a->boxes[i] : NULL;
}

int
cyrus_folder_open(struct cyrus_account *a, const char *name,
                  struct cyrus_folder **f_r, bool *missing_r,
                  const char **error_r)
{
	const struct cyrus_mailbox *box = NULL;
	struct cyrus_folder *f;
	struct stat st;
	char *data = NULL;
	size_t len;

	if (missing_r != NULL)
		*missing_r = false;
	for (size_t i = 0; i < a->count && box == NULL; i++)
		if (strcmp(a->boxes[i].name, name) == 0 ||
		    (str_ieq(name, "INBOX") && strcmp(a->boxes[i].name, "INBOX") == 0))
			box = &a->boxes[i];
	if (box == NULL) {
		*error_r = err_setk(ERRK_FOLDER, "%s: no such Cyrus mailbox", name);
		if (missing_r != NULL)
			*missing_r = true;
		return -1;
	}
	f = xcalloc(1, sizeof(*f));
	f->a = a;
	f->dir_fd = -1;
	if ((f->dir_fd = open_dir_below(a->root_fd, box->dir, error_r)) < 0) {
		/* a directory listed (mailboxes dump) but not in the copy */
		if (missing_r != NULL)
			*missing_r = fstatat(a->root_fd, box->dir, &st,
			                     AT_SYMLINK_NOFOLLOW) < 0 ?
			             errno == ENOENT || errno == ENOTDIR :
			             !S_ISDIR(st.st_mode);
		goto fail;
	}
	if (read_file_at(f->dir_fd, "cyrus.header", META_MAX, &data, &len, error_r) < 0 ||
	    cyrus_header_parse(data, len, &f->h, error_r) < 0)
		goto fail_wrap;
	free(data);
	data = NULL;
	if (read_file_at(f->dir_fd, "cyrus.index", META_MAX, &data, &len, error_r) < 0 ||
	    cyrus_index_parse((const unsigned char *)data, len, &f->ix, error_r) < 0)
		goto fail_wrap;
	free(data);
	data = NULL;
	if (f->ix.minor_version < 12 && a->seen != NULL && f->h.uniqueid != NULL &&
	    cyrus_seen_parse(a->seen, a->seen_len, f->h.uniqueid, &f->seen,
	                     &f->n_seen, error_r) < 0)
		goto fail_wrap;
	*f_r = f;
	return 0;
fail_wrap:
	*error_r = err_wrap(*error_r, "%s (%s): %s", name, box->dir, *error_r);
fail:
	free(data);
	cyrus_folder_close(&f);
	return -1;
}

void
cyrus_folder_close(struct cyrus_folder **fp)
{
	struct cyrus_folder *f = *fp;

	if (f == NULL)
		return;
	if (f->dir_fd >= 0)
		close(f->dir_fd);
	cyrus_header_free(&f->h);
	cyrus_index_free(&f->ix);
	free(f->seen);
	free(f);
	*fp = NULL;
}

const struct cyrus_index *
cyrus_folder_index(const struct cyrus_folder *f)
{
	return &f->ix;
}

const struct cyrus_header *
cyrus_folder_header(const struct cyrus_folder *f)
{
	return &f->h;
}

uint32_t
cyrus_folder_uidvalidity(const struct cyrus_folder *f)
{
	return f->ix.uidvalidity;
}

uint32_t
cyrus_folder_uidnext(const struct cyrus_folder *f)
{
	return f->ix.last_uid == UINT32_MAX ? UINT32_MAX : f->ix.last_uid + 1;
}

const struct cyrus_record *
cyrus_folder_find(const struct cyrus_folder *f, uint32_t uid)
{
	size_t lo = 0, hi = f->ix.count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (f->ix.records[mid].uid == uid)
			return &f->ix.records[mid];
		if (f->ix.records[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

char *
cyrus_folder_flags(const struct cyrus_folder *f, const struct cyrus_record *r)
{
	bool seen = false;

	if (f->ix.minor_version >= 12) {
		seen = (r->system_flags & CYRUS_FLAG_SEEN) != 0;
	} else {
		for (size_t i = 0; i < f->n_seen && !seen; i++)
			seen = r->uid >= f->seen[2 * i] && r->uid <= f->seen[2 * i + 1];
	}
	return cyrus_record_flags(r, &f->h, seen);
}

int
cyrus_folder_open_msg(const struct cyrus_folder *f, uint32_t uid, int *fd_r,
                      uint64_t *size_r, bool *missing_r, const char **error_r)
{
	char name[16];
	struct stat st;
	int fd;

	*missing_r = false;
	snprintf(name, sizeof(name), "%u.", uid);
	fd = openat(f->dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		*missing_r = errno == ENOENT || errno == ELOOP;
		*error_r = err_setk(ERRK_MESSAGE, "spool file %s: %s", name,
		                    errno == ELOOP ? "is a symlink" : strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		*missing_r = true;
		*error_r = err_setk(ERRK_MESSAGE, "spool file %s: not a regular file",
		                    name);
		close(fd);
		return -1;
	}
	*fd_r = fd;
	*size_r = (uint64_t)st.st_size;
	return 0;
}
