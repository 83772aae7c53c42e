/* users.c: users file, templates and logins (see users.h). */
#include "users.h"

#include "buf.h"

#include <stdlib.h>
#include <string.h>

#define USERS_FILE_MAX (64u * 1024 * 1024)
#define PASSWORD_FILE_MAX (64u * 1024)
#define FIELDS_MAX 16

/* ------------------------------------------------------------ parsing */

/* One line split into fields (owned strings). */
struct fields {
	char *v[FIELDS_MAX];
	size_t n;
};

static void
fields_free(struct fields *f)
{
	for (size_t i = 0; i < f->n; i++)
		secret_free(&f->v[i]);
	f->n = 0;
}

/* Splits line (len bytes, no newline) at sep. With quotes, a field may be
 * double-quoted with "" for a quote (CSV). Returns 0, or -1 with *error_r
 * (too many fields, bad quoting). */
static int
split_line(const char *line, size_t len, char sep, bool quotes,
           struct fields *f, const char **error_r)
{
	size_t i = 0;

	f->n = 0;
	for (;;) {
		struct buf b;

		if (f->n == FIELDS_MAX) {
			*error_r = "too many fields";
			return -1;
		}
		buf_init(&b, len + 1);
		if (quotes && i < len && line[i] == '"') {
			i++;
			for (;;) {
				if (i >= len) {
					buf_free(&b);
					*error_r = "unterminated quoted field";
					return -1;
				}
				if (line[i] == '"') {
					if (i + 1 < len && line[i + 1] == '"') {
						ignore_result(buf_append(&b, "\"", 1));
						i += 2;
						continue;
					}
					i++;
					break;
				}
				ignore_result(buf_append(&b, &line[i], 1));
				i++;
			}
			if (i < len && line[i] != sep) {
				buf_free(&b);
				*error_r = "text after a closing quote";
				return -1;
			}
		} else {
			size_t start = i;

			while (i < len && line[i] != sep)
				i++;
			ignore_result(buf_append(&b, line + start, i - start));
		}
		f->v[f->n++] = buf_take(&b);
		if (i >= len)
			return 0;
		i++; /* the separator */
	}
}

static char *
trim_dup(const char *s)
{
	size_t len = strlen(s);

	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	while (len > 0 && (*s == ' ' || *s == '\t')) {
		s++;
		len--;
	}
	return xstrndup(s, len);
}

enum column { COL_SRC_USER, COL_DST_USER, COL_SRC_PWFILE, COL_DST_PWFILE,
              COL_COUNT };
static const char *const column_names[COL_COUNT] = {
	"src_user", "dst_user", "src_password_file", "dst_password_file",
};

static int
read_password_file(const char *base_dir, const char *name, char **pw_r,
                   const char **error_r)
{
	char *path;
	const char *error;
	int ret;

	if (name[0] == '/' || base_dir == NULL)
		path = xstrdup(name);
	else
		path = xasprintf("%s/%s", base_dir, name);
	ret = file_read_small(path, PASSWORD_FILE_MAX, true, pw_r, &error);
	if (ret < 0) {
		*error_r = err_set("password file %s", error); /* names path */
	} else if ((*pw_r)[0] == '\0') {
		/* never a login with an empty password */
		secret_free(pw_r);
		*error_r = err_set("password file %s is empty", path);
		ret = -1;
	}
	free(path);
	return ret;
}

static void
users_add(struct sched_users *u, size_t *alloc, struct sched_user *user)
{
	if (u->count == *alloc) {
		*alloc = *alloc == 0 ? 64 : *alloc * 2;
		u->users = xreallocarray(u->users, *alloc, sizeof(*u->users));
	}
	u->users[u->count++] = *user;
}

static bool
user_name_ok(const char *s)
{
	if (s[0] == '\0')
		return false;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

int
sched_users_parse(const char *text, size_t len, const char *base_dir,
                  struct sched_users *users_r, const char **error_r)
{
	struct sched_users u = { 0 };
	int col_of[COL_COUNT];
	size_t alloc = 0, pos = 0;
	unsigned lineno = 0;
	bool have_format = false;
	const char *error;

	memset(users_r, 0, sizeof(*users_r));
	for (int c = 0; c < COL_COUNT; c++)
		col_of[c] = -1;
	while (pos < len) {
		const char *line = text + pos, *nl = memchr(line, '\n', len - pos);
		size_t llen = nl != NULL ? (size_t)(nl - line) : len - pos;
		struct fields f = { .n = 0 };
		struct sched_user user = { 0 };
		size_t k;

		pos += llen + (nl != NULL ? 1 : 0);
		lineno++;
		if (llen > 0 && line[llen - 1] == '\r')
			llen--;
		k = 0;
		while (k < llen && (line[k] == ' ' || line[k] == '\t'))
			k++;
		if (k == llen || line[k] == '#')
			continue;
		{
			unsigned bad_line;
			unsigned char byte;

			/* a NUL would cut a name; other control bytes
			 * reach logs, URLs and paths */
			if (text_find_control(line, llen, &bad_line, &byte)) {
				*error_r = err_set("users file line %u: control "
				    "byte 0x%02x%s is not allowed", lineno, byte,
				    byte == 0 ? " (NUL)" : "");
				goto fail;
			}
		}
		if (!have_format) {
			have_format = true;
			/* A CSV header names src_user; anything else with a
			 * ';' is imapsync's user;password;user;password. */
			if (split_line(line, llen, ',', true, &f, &error) == 0) {
				for (size_t i = 0; i < f.n; i++) {
					char *name = trim_dup(f.v[i]);
					int c;

					for (c = 0; c < COL_COUNT; c++)
						if (strcmp(name, column_names[c]) == 0)
							break;
					if (c < COL_COUNT) {
						if (col_of[c] >= 0) {
							*error_r = err_set("users file line %u: "
							    "column %s twice", lineno, name);
							free(name);
							fields_free(&f);
							goto fail;
						}
						col_of[c] = (int)i;
					}
					free(name);
				}
			}
			if (col_of[COL_SRC_USER] >= 0) {
				for (size_t i = 0; i < f.n; i++) {
					bool known = false;

					for (int c = 0; c < COL_COUNT; c++)
						known = known || col_of[c] == (int)i;
					if (!known) {
						char *name = trim_dup(f.v[i]);

						*error_r = err_set("users file line %u: "
						    "unknown column '%.60s' (expected "
						    "src_user, dst_user, src_password_file, "
						    "dst_password_file)", lineno, name);
						free(name);
						fields_free(&f);
						goto fail;
					}
				}
				fields_free(&f);
				continue;
			}
			fields_free(&f);
			if (memchr(line, ';', llen) == NULL) {
				*error_r = err_set("users file line %u: expected a CSV "
				    "header 'src_user,dst_user,...' or imapsync lines "
				    "'user1;password1;user2;password2'", lineno);
				goto fail;
			}
			u.imapsync_format = true;
		}
		user.line = lineno;
		if (u.imapsync_format) {
			/* No quoting: imapsync splits at every ';'. */
			if (split_line(line, llen, ';', false, &f, &error) < 0 ||
			    (f.n == 5 && f.v[4][0] != '\0') ||
			    (f.n != 4 && f.n != 5)) {
				*error_r = err_set("users file line %u: expected "
				    "user1;password1;user2;password2", lineno);
				fields_free(&f);
				goto fail;
			}
			user.src_user = trim_dup(f.v[0]);
			user.src_password = xstrdup(f.v[1]);
			user.dst_user = trim_dup(f.v[2]);
			user.dst_password = xstrdup(f.v[3]);
			if (user.dst_user[0] == '\0') {
				free(user.dst_user);
				user.dst_user = xstrdup(user.src_user);
			}
		} else {
			const char *pw_src = NULL, *pw_dst = NULL;

			if (split_line(line, llen, ',', true, &f, &error) < 0) {
				*error_r = err_set("users file line %u: %s", lineno,
				                   error);
				goto fail;
			}
#define FIELD(c) (col_of[c] >= 0 && (size_t)col_of[c] < f.n ? f.v[col_of[c]] : "")
			user.src_user = trim_dup(FIELD(COL_SRC_USER));
			user.dst_user = trim_dup(FIELD(COL_DST_USER));
			if (user.dst_user[0] == '\0') {
				free(user.dst_user);
				user.dst_user = xstrdup(user.src_user);
			}
			pw_src = FIELD(COL_SRC_PWFILE);
			pw_dst = FIELD(COL_DST_PWFILE);
#undef FIELD
			if ((pw_src[0] != '\0' &&
			     read_password_file(base_dir, pw_src, &user.src_password,
			                        &error) < 0) ||
			    (pw_dst[0] != '\0' &&
			     read_password_file(base_dir, pw_dst, &user.dst_password,
			                        &error) < 0)) {
				*error_r = err_set("users file line %u: %s", lineno,
				                   error);
				fields_free(&f);
				users_add(&u, &alloc, &user);
				goto fail;
			}
		}
		fields_free(&f);
		if (!user_name_ok(user.src_user) || !user_name_ok(user.dst_user)) {
			*error_r = err_set("users file line %u: empty user name or "
			                   "control character in it", lineno);
			users_add(&u, &alloc, &user);
			goto fail;
		}
		for (size_t i = 0; i < u.count; i++)
			if (strcmp(u.users[i].src_user, user.src_user) == 0) {
				*error_r = err_set("users file line %u: source user "
				    "%.100s already on line %u", lineno,
				    user.src_user, u.users[i].line);
				users_add(&u, &alloc, &user);
				goto fail;
			}
		users_add(&u, &alloc, &user);
	}
	if (!u.imapsync_format && have_format && col_of[COL_SRC_USER] < 0) {
		*error_r = "users file: no src_user column";
		goto fail;
	}
	if (u.count == 0) {
		*error_r = "users file: no users";
		goto fail;
	}
	*users_r = u;
	return 0;
fail:
	sched_users_free(&u);
	return -1;
}

int
sched_users_load(const char *path, struct sched_users *users_r,
                 const char **error_r)
{
	char *text, *dir, *slash;
	const char *error;
	int ret;

	if (file_read_small(path, USERS_FILE_MAX, false, &text, &error) < 0) {
		/* error starts with path */
		*error_r = err_set("users file %s", error);
		return -1;
	}
	dir = xstrdup(path);
	slash = strrchr(dir, '/');
	if (slash == NULL) {
		free(dir);
		dir = NULL;
	} else {
		slash[slash == dir ? 1 : 0] = '\0';
	}
	/* The text may hold passwords (imapsync format): wiped after.
	 * file_read_small() refused NUL bytes, so strlen() is the size. */
	ret = sched_users_parse(text, strlen(text), dir, users_r, &error);
	if (ret < 0)
		*error_r = err_set("%s: %s", path, error);  /* "users file line N" */
	secret_free(&text);
	free(dir);
	return ret;
}

void
sched_users_free(struct sched_users *users)
{
	for (size_t i = 0; i < users->count; i++) {
		free(users->users[i].src_user);
		free(users->users[i].dst_user);
		secret_free(&users->users[i].src_password);
		secret_free(&users->users[i].dst_password);
	}
	free(users->users);
	memset(users, 0, sizeof(*users));
}

/* ---------------------------------------------------------- templates */

bool
sched_url_is_imap(const char *url)
{
	return strncmp(url, "imap://", 7) == 0 || strncmp(url, "imaps://", 8) == 0;
}

/* Characters kept as they are in the user part of a URL: RFC 3986
 * unreserved and sub-delims but ';' (it starts ";AUTH="), plus '@' (the
 * endpoint parser splits at the last '@') and '*' (master logins). */
static bool
url_user_char_ok(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || strchr("-._~!$&'()*+,=@", c) != NULL;
}

static void
append_url_escaped(struct buf *b, const char *s, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c != '\0' && url_user_char_ok(c)) {
			ignore_result(buf_append(b, &s[i], 1));
		} else {
			char esc[3] = { '%', hex[c >> 4], hex[c & 15] };

			ignore_result(buf_append(b, esc, 3));
		}
	}
}

static bool
path_component_ok(const char *s, size_t len)
{
	if (len == 0 || s[0] == '.')
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] == '/' || (unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

char *
sched_template_expand(const char *tmpl, const char *user, const char **error_r)
{
	bool url = sched_url_is_imap(tmpl);
	const char *at = strrchr(user, '@');
	size_t ulen = strlen(user);
	size_t nlen = at != NULL ? (size_t)(at - user) : ulen;
	const char *dom = at != NULL ? at + 1 : "";
	struct buf b;

	buf_init(&b, SIZE_MAX / 2);
	for (const char *p = tmpl; *p != '\0'; p++) {
		const char *s;
		size_t len;

		if (*p != '%') {
			ignore_result(buf_append(&b, p, 1));
			continue;
		}
		switch (p[1]) {
		case 'u': s = user; len = ulen; break;
		case 'n': s = user; len = nlen; break;
		case 'd': s = dom; len = strlen(dom); break;
		case '%': s = "%"; len = 1; break;
		case '\0':
			*error_r = err_set("template '%s': '%%' at the end "
			                   "(write %%%% for a '%%')", tmpl);
			buf_free(&b);
			return NULL;
		default:
			*error_r = err_set("template '%s': unknown '%%%c' "
			                   "(expected %%u, %%n, %%d or %%%%)",
			                   tmpl, p[1]);
			buf_free(&b);
			return NULL;
		}
		p++;
		if (s == user || s == dom) {
			if (url) {
				append_url_escaped(&b, s, len);
				continue;
			}
			if (!path_component_ok(s, len)) {
				*error_r = err_set("user '%.100s' cannot be part of "
				                   "a path ('/', leading '.', empty "
				                   "or control characters)", user);
				buf_free(&b);
				return NULL;
			}
		}
		ignore_result(buf_append(&b, s, len));
	}
	return buf_take(&b);
}

char *
sched_url_replace_user(const char *url, const char *user)
{
	const char *rest, *end, *at = NULL, *semi;
	struct buf b;

	if (!sched_url_is_imap(url))
		return NULL;
	rest = strstr(url, "://") + 3;
	end = rest + strcspn(rest, "/?");
	for (const char *p = rest; p < end; p++)
		if (*p == '@')
			at = p;
	if (at == NULL)
		return NULL;
	semi = memchr(rest, ';', (size_t)(at - rest));
	buf_init(&b, SIZE_MAX / 2);
	ignore_result(buf_append(&b, url, (size_t)(rest - url)));
	append_url_escaped(&b, user, strlen(user));
	if (semi != NULL)
		ignore_result(buf_append(&b, semi, (size_t)(at - semi)));
	ignore_result(buf_append_str(&b, at));
	return buf_take(&b);
}

char *
sched_account_key(const char *src_url, const char *src_authzid,
                  const char *dst_url, const char *dst_authzid)
{
	/* the format of cli/pair.c */
	return xasprintf("%s%s%s -> %s%s%s", src_url,
	                 src_authzid ? " as " : "", src_authzid ? src_authzid : "",
	                 dst_url, dst_authzid ? " as " : "",
	                 dst_authzid ? dst_authzid : "");
}

/* Resolves one side of one account. */
static int
resolve_side(const char *tmpl, const char *user, const char *user_pw,
             const struct sched_login *login, const char *side,
             unsigned line, char **url_r, char **authzid_r,
             const char **password_r, const char **error_r)
{
	char *url = sched_template_expand(tmpl, user, error_r);

	*authzid_r = NULL;
	*password_r = NULL;
	if (url == NULL)
		return -1;
	*url_r = url;
	if (!sched_url_is_imap(url))
		return 0;
	if (user_pw != NULL) {
		*password_r = user_pw;
		return 0;
	}
	if (login->admin != NULL) {
		char *admin_url = sched_url_replace_user(url, login->admin);

		if (admin_url == NULL) {
			*error_r = err_set("%s URL %s has no user part", side, url);
			return -1;
		}
		free(url);
		*url_r = admin_url;
		*authzid_r = xstrdup(user);
	}
	if (login->password == NULL) {
		*error_r = err_set("users file line %u: no %s password for %s "
		                   "(give a password file in the users file, or "
		                   "--%s-password-file)", line, side, user, side);
		return -1;
	}
	*password_r = login->password;
	return 0;
}

int
sched_accounts_build(const struct sched_users *users, const char *src_tmpl,
                     const char *dst_tmpl, const struct sched_login *src,
                     const struct sched_login *dst,
                     struct sched_account **accounts_r, size_t *count_r,
                     const char **error_r)
{
	struct sched_account *a = xcalloc(users->count + 1, sizeof(*a));
	size_t n = 0;

	for (size_t i = 0; i < users->count; i++) {
		const struct sched_user *u = &users->users[i];
		struct sched_account *acc = &a[n++];

		acc->src_user = xstrdup(u->src_user);
		acc->dst_user = xstrdup(u->dst_user);
		acc->line = u->line;
		if (resolve_side(src_tmpl, u->src_user, u->src_password, src, "src",
		                 u->line, &acc->src_url, &acc->src_authzid,
		                 &acc->src_password, error_r) < 0 ||
		    resolve_side(dst_tmpl, u->dst_user, u->dst_password, dst, "dst",
		                 u->line, &acc->dst_url, &acc->dst_authzid,
		                 &acc->dst_password, error_r) < 0) {
			sched_accounts_free(&a, n);
			return -1;
		}
		acc->key = sched_account_key(acc->src_url, acc->src_authzid,
		                             acc->dst_url, acc->dst_authzid);
	}
	*accounts_r = a;
	*count_r = n;
	return 0;
}

void
sched_accounts_free(struct sched_account **accounts, size_t count)
{
	struct sched_account *a = *accounts;

	if (a == NULL)
		return;
	for (size_t i = 0; i < count; i++) {
		free(a[i].key);
		free(a[i].src_user);
		free(a[i].dst_user);
		free(a[i].src_url);
		free(a[i].dst_url);
		free(a[i].src_authzid);
		free(a[i].dst_authzid);
		free(a[i].src_slot);
		free(a[i].dst_slot);
	}
	free(a);
	*accounts = NULL;
}

bool
sched_greeting_ignores_authzid(const char *greeting)
{
	return greeting != NULL && strstr(greeting, "Courier") != NULL;
}

/* ------------------------------------------------------- name lists */

char *
sched_names_encode(char *const *names, size_t count)
{
	struct buf b;

	buf_init(&b, SIZE_MAX / 2);
	for (size_t i = 0; i < count; i++) {
		if (i > 0)
			ignore_result(buf_append(&b, "\n", 1));
		for (const char *p = names[i]; *p != '\0'; p++) {
			if (*p == '\\')
				ignore_result(buf_append(&b, "\\\\", 2));
			else if (*p == '\n')
				ignore_result(buf_append(&b, "\\n", 2));
			else
				ignore_result(buf_append(&b, p, 1));
		}
	}
	return buf_take(&b);
}

char **
sched_names_decode(const char *text, size_t *count_r)
{
	size_t n = 0, cap = 1;
	char **v;
	const char *p = text;

	for (const char *q = text; *q != '\0'; q++)
		if (*q == '\n')
			cap++;
	v = xcalloc(cap + 1, sizeof(char *));
	if (*text == '\0') {
		*count_r = 0;
		return v;
	}
	for (;;) {
		struct buf b;

		buf_init(&b, SIZE_MAX / 2);
		for (; *p != '\0' && *p != '\n'; p++) {
			if (*p == '\\' && p[1] == 'n') {
				ignore_result(buf_append(&b, "\n", 1));
				p++;
			} else if (*p == '\\' && p[1] == '\\') {
				ignore_result(buf_append(&b, "\\", 1));
				p++;
			} else {
				ignore_result(buf_append(&b, p, 1));
			}
		}
		v[n++] = buf_take(&b);
		if (*p == '\0')
			break;
		p++;
	}
	*count_r = n;
	return v;
}

void
sched_names_free(char ***names)
{
	if (*names == NULL)
		return;
	for (char **p = *names; *p != NULL; p++)
		free(*p);
	XFREE(*names);
}
