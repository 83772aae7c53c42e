/* inventory.c: inventory and cost files, and the estimate for several
 * machines (inventory.h). */
#include "inventory.h"

#include "buf.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INVENTORY_MAX_SIZE ((size_t)1 << 30)
#define COST_MAX_SIZE ((size_t)64 << 20)   /* a whole plan --json */
#define JSON_MAX_DEPTH 16
/* integers read from JSON numbers must be exact in a double */
#define JSON_MAX_INT 9007199254740992.0

/* ------------------------------------------------------- JSON reader */

/* A small JSON reader for these two files: the document becomes a tree
 * (the files are at most what plan --json writes). Nesting is bounded by
 * JSON_MAX_DEPTH (the recursion is that deep at most); strings holding
 * NUL (\u0000) or a raw control byte are refused. */
enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct jval {
	enum jtype type;
	unsigned line;
	bool b;
	double num;
	char *str;                /* J_STR */
	struct jval *v;           /* J_ARR items, J_OBJ values */
	char **keys;              /* J_OBJ */
	size_t n, alloc;
};

struct jparser {
	const char *p, *end;
	unsigned line;
	const char *error;        /* err_set() text */
	const char *what;
};

static void
jval_free(struct jval *v)
{
	for (size_t i = 0; i < v->n; i++) {
		jval_free(&v->v[i]);
		if (v->keys != NULL)
			free(v->keys[i]);
	}
	free(v->v);
	free(v->keys);
	free(v->str);
	memset(v, 0, sizeof(*v));
}

static int
jfail(struct jparser *jp, const char *why)
{
	if (jp->error == NULL)
		jp->error = err_setk(ERRK_USAGE, "%s line %u: %s", jp->what,
		                     jp->line, why);
	return -1;
}

static void
jskip_ws(struct jparser *jp)
{
	while (jp->p < jp->end) {
		char ch = *jp->p;

		if (ch == '\n')
			jp->line++;
		else if (ch != ' ' && ch != '\t' && ch != '\r')
			break;
		jp->p++;
	}
}

static void
utf8_put(struct buf *b, uint32_t cp)
{
	char o[4];
	size_t n;

	if (cp < 0x80) {
		o[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		o[0] = (char)(0xc0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		o[0] = (char)(0xe0 | cp >> 12);
		o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		o[0] = (char)(0xf0 | cp >> 18);
		o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
		o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
		o[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	ignore_result(buf_append(b, o, n));
}

static int
jhex4(struct jparser *jp, uint32_t *v_r)
{
	uint32_t v = 0;

	if (jp->end - jp->p < 4)
		return jfail(jp, "truncated \\u escape");
	for (int i = 0; i < 4; i++) {
		char ch = *jp->p++;

		v <<= 4;
		if (ch >= '0' && ch <= '9')
			v |= (uint32_t)(ch - '0');
		else if (ch >= 'a' && ch <= 'f')
			v |= (uint32_t)(ch - 'a' + 10);
		else if (ch >= 'A' && ch <= 'F')
			v |= (uint32_t)(ch - 'A' + 10);
		else
			return jfail(jp, "bad \\u escape");
	}
	*v_r = v;
	return 0;
}

/* At the opening quote. */
static int
jstring(struct jparser *jp, char **s_r)
{
	struct buf b;

	buf_init(&b, 1 << 20);
	jp->p++;
	for (;;) {
		unsigned char ch;

		if (jp->p >= jp->end) {
			buf_free(&b);
			return jfail(jp, "unterminated string");
		}
		ch = (unsigned char)*jp->p++;
		if (ch == '"')
			break;
		if (ch < 0x20 || ch == 0x7f) {
			buf_free(&b);
			return jfail(jp, "control byte in a string");
		}
		if (ch != '\\') {
			if (buf_append(&b, (const char *)&ch, 1) < 0) {
				buf_free(&b);
				return jfail(jp, "string too long");
			}
			continue;
		}
		if (jp->p >= jp->end) {
			buf_free(&b);
			return jfail(jp, "unterminated string");
		}
		ch = (unsigned char)*jp->p++;
		switch (ch) {
		case '"': case '\\': case '/':
			ignore_result(buf_append(&b, (const char *)&ch, 1));
			break;
		case 'b': ignore_result(buf_append(&b, "\b", 1)); break;
		case 'f': ignore_result(buf_append(&b, "\f", 1)); break;
		case 'n': ignore_result(buf_append(&b, "\n", 1)); break;
		case 'r': ignore_result(buf_append(&b, "\r", 1)); break;
		case 't': ignore_result(buf_append(&b, "\t", 1)); break;
		case 'u': {
			uint32_t cp, lo;

			if (jhex4(jp, &cp) < 0) {
				buf_free(&b);
				return -1;
			}
			if (cp >= 0xd800 && cp < 0xdc00 && jp->end - jp->p >= 6 &&
			    jp->p[0] == '\\' && jp->p[1] == 'u') {
				jp->p += 2;
				if (jhex4(jp, &lo) < 0) {
					buf_free(&b);
					return -1;
				}
				if (lo >= 0xdc00 && lo < 0xe000)
					cp = 0x10000 + ((cp - 0xd800) << 10) +
					     (lo - 0xdc00);
				else
					cp = 0xfffd;
			} else if (cp >= 0xd800 && cp < 0xe000) {
				cp = 0xfffd;
			}
			if (cp == 0) {
				buf_free(&b);
				return jfail(jp, "NUL (\\u0000) in a string");
			}
			utf8_put(&b, cp);
			break;
		}
		default:
			buf_free(&b);
			return jfail(jp, "bad escape in a string");
		}
	}
	*s_r = xstrndup(buf_data(&b), buf_len(&b));
	buf_free(&b);
	return 0;
}

static int jvalue(struct jparser *jp, struct jval *v, unsigned depth);

static struct jval *
jpush(struct jval *v)
{
	if (v->n == v->alloc) {
		v->alloc = v->alloc == 0 ? 8 : v->alloc * 2;
		v->v = xreallocarray(v->v, v->alloc, sizeof(*v->v));
		if (v->type == J_OBJ)
			v->keys = xreallocarray(v->keys, v->alloc,
			                        sizeof(*v->keys));
	}
	memset(&v->v[v->n], 0, sizeof(v->v[v->n]));
	if (v->type == J_OBJ)
		v->keys[v->n] = NULL;
	return &v->v[v->n++];
}

static int
jcontainer(struct jparser *jp, struct jval *v, unsigned depth)
{
	char close = v->type == J_OBJ ? '}' : ']';

	if (depth >= JSON_MAX_DEPTH)
		return jfail(jp, "nested too deep");
	jp->p++;
	jskip_ws(jp);
	if (jp->p < jp->end && *jp->p == close) {
		jp->p++;
		return 0;
	}
	for (;;) {
		struct jval *item;
		char *key = NULL;

		jskip_ws(jp);
		if (v->type == J_OBJ) {
			if (jp->p >= jp->end || *jp->p != '"')
				return jfail(jp, "expected a key");
			if (jstring(jp, &key) < 0)
				return -1;
			jskip_ws(jp);
			if (jp->p >= jp->end || *jp->p != ':') {
				free(key);
				return jfail(jp, "expected ':'");
			}
			jp->p++;
		}
		item = jpush(v);
		if (v->type == J_OBJ)
			v->keys[v->n - 1] = key;
		if (jvalue(jp, item, depth + 1) < 0)
			return -1;
		jskip_ws(jp);
		if (jp->p < jp->end && *jp->p == ',') {
			jp->p++;
			continue;
		}
		if (jp->p < jp->end && *jp->p == close) {
			jp->p++;
			return 0;
		}
		return jfail(jp, v->type == J_OBJ ? "expected ',' or '}'" :
		             "expected ',' or ']'");
	}
}

static int
jvalue(struct jparser *jp, struct jval *v, unsigned depth)
{
	jskip_ws(jp);
	v->line = jp->line;
	if (jp->p >= jp->end)
		return jfail(jp, "unexpected end");
	switch (*jp->p) {
	case '{':
		v->type = J_OBJ;
		return jcontainer(jp, v, depth);
	case '[':
		v->type = J_ARR;
		return jcontainer(jp, v, depth);
	case '"':
		v->type = J_STR;
		return jstring(jp, &v->str);
	default:
		break;
	}
	if ((size_t)(jp->end - jp->p) >= 4 && memcmp(jp->p, "true", 4) == 0) {
		v->type = J_BOOL;
		v->b = true;
		jp->p += 4;
		return 0;
	}
	if ((size_t)(jp->end - jp->p) >= 5 && memcmp(jp->p, "false", 5) == 0) {
		v->type = J_BOOL;
		jp->p += 5;
		return 0;
	}
	if ((size_t)(jp->end - jp->p) >= 4 && memcmp(jp->p, "null", 4) == 0) {
		v->type = J_NULL;
		jp->p += 4;
		return 0;
	}
	if (*jp->p == '-' || (*jp->p >= '0' && *jp->p <= '9')) {
		char tmp[64], *e;
		size_t k = 0;

		while (jp->p + k < jp->end && k < sizeof(tmp) - 1 &&
		       strchr("+-0123456789.eE", jp->p[k]) != NULL) {
			tmp[k] = jp->p[k];
			k++;
		}
		tmp[k] = '\0';
		errno = 0;
		v->num = strtod(tmp, &e);
		if (e != tmp + k || errno != 0 || !isfinite(v->num))
			return jfail(jp, "bad number");
		v->type = J_NUM;
		jp->p += k;
		return 0;
	}
	return jfail(jp, "unexpected character");
}

static int
json_doc_parse(const char *what, const char *data, size_t len,
               struct jval *root, const char **error_r)
{
	struct jparser jp = { data, data + len, 1, NULL, what };

	memset(root, 0, sizeof(*root));
	if (jvalue(&jp, root, 0) < 0) {
		jval_free(root);
		*error_r = jp.error;
		return -1;
	}
	jskip_ws(&jp);
	if (jp.p != jp.end) {
		jfail(&jp, "text after the JSON value");
		jval_free(root);
		*error_r = jp.error;
		return -1;
	}
	return 0;
}

static const struct jval *
jget(const struct jval *o, const char *key)
{
	if (o == NULL || o->type != J_OBJ)
		return NULL;
	for (size_t i = 0; i < o->n; i++)
		if (strcmp(o->keys[i], key) == 0)
			return &o->v[i];
	return NULL;
}

/* ------------------------------------------------------- inventories */

/* Accounts by name: open addressing over indexes into inv->names. */
struct acct_index {
	size_t *slot;             /* index + 1; 0: empty */
	size_t cap;
};

static uint64_t
str_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static void
index_rebuild(struct acct_index *x, const struct sched_inventory *inv)
{
	free(x->slot);
	x->cap = x->cap == 0 ? 1024 : x->cap * 2;
	x->slot = xcalloc(x->cap, sizeof(*x->slot));
	for (size_t i = 0; i < inv->n; i++) {
		size_t h = (size_t)(str_hash(inv->names[i]) & (x->cap - 1));

		while (x->slot[h] != 0)
			h = (h + 1) & (x->cap - 1);
		x->slot[h] = i + 1;
	}
}

/* The account named name, added when new. */
static struct sched_account_est *
account_get(struct sched_inventory *inv, struct acct_index *x, size_t *alloc,
            const char *name)
{
	size_t h;

	if (x->cap == 0 || 2 * (inv->n + 1) > x->cap)
		index_rebuild(x, inv);
	h = (size_t)(str_hash(name) & (x->cap - 1));
	while (x->slot[h] != 0) {
		if (strcmp(inv->names[x->slot[h] - 1], name) == 0)
			return &inv->est[x->slot[h] - 1];
		h = (h + 1) & (x->cap - 1);
	}
	if (inv->n == *alloc) {
		*alloc = *alloc == 0 ? 64 : *alloc * 2;
		inv->est = xreallocarray(inv->est, *alloc, sizeof(*inv->est));
		inv->names = xreallocarray(inv->names, *alloc, sizeof(*inv->names));
	}
	memset(&inv->est[inv->n], 0, sizeof(inv->est[inv->n]));
	inv->names[inv->n] = xstrdup(name);
	x->slot[h] = inv->n + 1;
	return &inv->est[inv->n++];
}

static void
folder_add(struct sched_account_est *e, size_t *alloc, const char *name,
           uint64_t messages, uint64_t bytes, uint32_t uidnext)
{
	struct sched_folder_est *f;

	if (e->n_folders == *alloc) {
		*alloc = *alloc == 0 ? 8 : *alloc * 2;
		e->folders = xreallocarray(e->folders, *alloc, sizeof(*e->folders));
	}
	f = &e->folders[e->n_folders++];
	memset(f, 0, sizeof(*f));
	f->name = xstrdup(name);
	f->messages = messages;
	f->bytes = bytes;
	f->uidnext = uidnext != 0 ? uidnext :
	    messages < UINT32_MAX - 1 ? (uint32_t)messages + 1 : UINT32_MAX;
	e->messages += messages;
	e->bytes += bytes;
}

/* Per-account folder capacities, parallel to inv->est while loading. */
struct loader {
	struct sched_inventory *inv;
	struct acct_index index;
	size_t alloc;
	size_t *falloc;           /* folder capacity per account */
	size_t falloc_n;
};

static struct sched_account_est *
loader_account(struct loader *l, const char *name, size_t **falloc_r)
{
	struct sched_account_est *e = account_get(l->inv, &l->index, &l->alloc,
	                                          name);
	size_t i = (size_t)(e - l->inv->est);

	if (l->falloc_n < l->alloc) {
		l->falloc = xreallocarray(l->falloc, l->alloc, sizeof(*l->falloc));
		memset(l->falloc + l->falloc_n, 0,
		       (l->alloc - l->falloc_n) * sizeof(*l->falloc));
		l->falloc_n = l->alloc;
	}
	*falloc_r = &l->falloc[i];
	return e;
}

static bool
folder_known(const struct sched_account_est *e, const char *name)
{
	/* folders per account are few (a few hundred at most): linear */
	for (size_t i = 0; i < e->n_folders; i++)
		if (strcmp(e->folders[i].name, name) == 0)
			return true;
	return false;
}

/* Guesses the personal namespace of an account read from CSV: "INBOX."
 * and '.' when folders are under INBOX. (Courier, Cyrus), else '/' when a
 * name holds one, else '.'. */
static void
guess_namespace(struct sched_account_est *e)
{
	bool inbox_dot = false, slash = false;

	if (e->separator != '\0')
		return;
	for (size_t i = 0; i < e->n_folders; i++) {
		inbox_dot = inbox_dot || str_has_iprefix(e->folders[i].name,
		                                         "INBOX.");
		slash = slash || strchr(e->folders[i].name, '/') != NULL;
	}
	if (inbox_dot) {
		if (e->prefix == NULL)
			e->prefix = xstrdup("INBOX.");
		e->separator = '.';
	} else {
		e->separator = slash ? '/' : '.';
	}
}

static int
parse_u64_field(const char *what, unsigned line, const char *field,
                const char *s, size_t len, uint64_t *v_r,
                const char **error_r)
{
	while (len > 0 && (*s == ' ' || *s == '\t')) {
		s++;
		len--;
	}
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' ||
	                   s[len - 1] == '\r'))
		len--;
	if (len == 0 || !str_to_u64(s, len, (uint64_t)1 << 53, v_r)) {
		*error_r = err_setk(ERRK_USAGE, "%s line %u: %s: expected a "
		                    "whole number, found '%.*s'", what, line, field,
		                    len > 40 ? 40 : (int)len, s);
		return -1;
	}
	return 0;
}

static int
parse_csv(struct loader *l, const char *what, const char *data, size_t len,
          const char **error_r)
{
	const char *p = data, *end = data + len;
	unsigned line = 0;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *eol = nl != NULL ? nl : end, *c1, *c2, *c3;
		size_t n = (size_t)(eol - p);
		uint64_t messages, bytes;
		struct sched_account_est *e;
		size_t *falloc;
		char *acct, *folder;

		line++;
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n == 0 || p[0] == '#' || (line == 1 && n >= 8 &&
		                              memcmp(p, "account,", 8) == 0))
			goto next;
		if (memchr(p, '\t', n) != NULL) {
			/* text_find_control() lets TAB through: not in names */
			*error_r = err_setk(ERRK_USAGE, "%s line %u: control byte "
			                    "0x09 (TAB)", what, line);
			return -1;
		}
		c1 = memchr(p, ',', n);
		c3 = NULL;
		c2 = NULL;
		for (const char *q = p + n; q > p; q--)
			if (q[-1] == ',') {
				if (c3 == NULL) {
					c3 = q - 1;
				} else {
					c2 = q - 1;
					break;
				}
			}
		if (c1 == NULL || c2 == NULL || c2 <= c1) {
			*error_r = err_setk(ERRK_USAGE, "%s line %u: expected "
			                    "'account,folder,messages,bytes'", what,
			                    line);
			return -1;
		}
		if (c1 == p || c2 == c1 + 1) {
			*error_r = err_setk(ERRK_USAGE, "%s line %u: empty %s", what,
			                    line, c1 == p ? "account" : "folder");
			return -1;
		}
		if (parse_u64_field(what, line, "messages", c2 + 1,
		                    (size_t)(c3 - c2 - 1), &messages, error_r) < 0 ||
		    parse_u64_field(what, line, "bytes", c3 + 1,
		                    (size_t)(p + n - c3 - 1), &bytes, error_r) < 0)
			return -1;
		acct = xstrndup(p, (size_t)(c1 - p));
		folder = xstrndup(c1 + 1, (size_t)(c2 - c1 - 1));
		e = loader_account(l, acct, &falloc);
		if (folder_known(e, folder)) {
			*error_r = err_setk(ERRK_USAGE, "%s line %u: folder %s of "
			                    "account %s listed twice", what, line,
			                    folder, acct);
			free(acct);
			free(folder);
			return -1;
		}
		folder_add(e, falloc, folder, messages, bytes, 0);
		free(acct);
		free(folder);
next:
		p = nl != NULL ? nl + 1 : end;
	}
	return 0;
}

static int
jnum_u64(const char *what, const struct jval *o, const char *key, bool need,
         uint64_t *v_r, const char **error_r)
{
	const struct jval *v = jget(o, key);

	*v_r = 0;
	if (v == NULL || (v->type == J_NULL && !need)) {
		if (!need)
			return 0;
		*error_r = err_setk(ERRK_USAGE, "%s line %u: \"%s\" missing",
		                    what, o->line, key);
		return -1;
	}
	if (v->type != J_NUM || v->num < 0 || v->num > JSON_MAX_INT ||
	    v->num != floor(v->num)) {
		*error_r = err_setk(ERRK_USAGE, "%s line %u: \"%s\": expected a "
		                    "whole number", what, v->line, key);
		return -1;
	}
	*v_r = (uint64_t)v->num;
	return 0;
}

static const char *
jstr(const struct jval *o, const char *key)
{
	const struct jval *v = jget(o, key);

	return v != NULL && v->type == J_STR ? v->str : NULL;
}

/* plan --json's "inventory" array. */
static int
parse_json_inventory(struct loader *l, const char *what, const struct jval *arr,
                     const char **error_r)
{
	for (size_t i = 0; i < arr->n; i++) {
		const struct jval *a = &arr->v[i], *fs = jget(a, "folders");
		const char *name = jstr(a, "account"), *prefix, *sep, *err;
		struct sched_account_est *e;
		size_t *falloc;

		if (a->type != J_OBJ || name == NULL || name[0] == '\0') {
			*error_r = err_setk(ERRK_USAGE, "%s line %u: expected an "
			                    "object with \"account\"", what, a->line);
			return -1;
		}
		e = loader_account(l, name, &falloc);
		if (e->n_folders > 0 || e->error != NULL) {
			*error_r = err_setk(ERRK_USAGE, "%s line %u: account %s "
			                    "listed twice", what, a->line, name);
			return -1;
		}
		prefix = jstr(a, "prefix");
		sep = jstr(a, "separator");
		if (prefix != NULL && prefix[0] != '\0')
			e->prefix = xstrdup(prefix);
		if (sep != NULL && strlen(sep) == 1)
			e->separator = sep[0];
		if ((err = jstr(a, "error")) != NULL)
			e->error = xstrdup(err);
		if (fs == NULL || fs->type != J_ARR) {
			if (e->error != NULL)
				continue;
			*error_r = err_setk(ERRK_USAGE, "%s line %u: account %s: "
			                    "\"folders\" missing", what, a->line, name);
			return -1;
		}
		for (size_t k = 0; k < fs->n; k++) {
			const struct jval *f = &fs->v[k];
			const char *fname = jstr(f, "name");
			uint64_t m, b, u;

			if (f->type != J_OBJ || fname == NULL || fname[0] == '\0') {
				*error_r = err_setk(ERRK_USAGE, "%s line %u: expected "
				                    "a folder with \"name\"", what,
				                    f->line);
				return -1;
			}
			if (jnum_u64(what, f, "messages", true, &m, error_r) < 0 ||
			    jnum_u64(what, f, "bytes", true, &b, error_r) < 0 ||
			    jnum_u64(what, f, "uidnext", false, &u, error_r) < 0)
				return -1;
			if (folder_known(e, fname)) {
				*error_r = err_setk(ERRK_USAGE, "%s line %u: folder %s "
				                    "of account %s listed twice", what,
				                    f->line, fname, name);
				return -1;
			}
			folder_add(e, falloc, fname, m, b,
			           u > UINT32_MAX ? UINT32_MAX : (uint32_t)u);
		}
	}
	return 0;
}

/* An older plan --json: one folder per job. */
static int
parse_json_jobs(struct loader *l, const char *what, const struct jval *arr,
                const char **error_r)
{
	for (size_t i = 0; i < arr->n; i++) {
		const struct jval *j = &arr->v[i], *fs = jget(j, "folders");
		const char *name = jstr(j, "src_user"), *folder = "INBOX";
		struct sched_account_est *e;
		size_t *falloc;
		uint64_t m, b;

		if (j->type != J_OBJ || name == NULL || name[0] == '\0') {
			*error_r = err_setk(ERRK_USAGE, "%s line %u: expected a job "
			                    "with \"src_user\"", what, j->line);
			return -1;
		}
		if (jnum_u64(what, j, "messages", true, &m, error_r) < 0 ||
		    jnum_u64(what, j, "bytes", true, &b, error_r) < 0)
			return -1;
		if (fs != NULL && fs->type == J_ARR && fs->n > 0 &&
		    fs->v[0].type == J_STR)
			folder = fs->v[0].str;
		e = loader_account(l, name, &falloc);
		for (size_t k = 0; k < e->n_folders; k++)
			if (strcmp(e->folders[k].name, folder) == 0) {
				/* UID-range parts of one folder */
				e->folders[k].messages += m;
				e->folders[k].bytes += b;
				e->folders[k].uidnext += (uint32_t)m;
				e->messages += m;
				e->bytes += b;
				folder = NULL;
				break;
			}
		if (folder != NULL)
			folder_add(e, falloc, folder, m, b, 0);
	}
	return 0;
}

void
sched_inventory_free(struct sched_inventory *inv)
{
	for (size_t i = 0; i < inv->n; i++) {
		sched_account_est_free(&inv->est[i]);
		free(inv->names[i]);
	}
	free(inv->est);
	free(inv->names);
	memset(inv, 0, sizeof(*inv));
}

int
sched_inventory_parse(const char *what, const char *data, size_t len,
                      struct sched_inventory *inv, const char **error_r)
{
	struct loader l = { 0 };
	unsigned line;
	unsigned char byte;
	size_t i = 0;
	int ret;

	memset(inv, 0, sizeof(*inv));
	l.inv = inv;
	/* NUL and control bytes refused everywhere, before any parsing (a
	 * JSON string could only carry them escaped, which jstring refuses
	 * for NUL; other escaped controls are refused below) */
	if (memchr(data, '\0', len) != NULL) {
		const char *z = memchr(data, '\0', len);

		line = 1;
		for (const char *q = data; q < z; q++)
			line += *q == '\n';
		*error_r = err_setk(ERRK_USAGE, "%s line %u: NUL byte", what, line);
		return -1;
	}
	if (text_find_control(data, len, &line, &byte)) {
		*error_r = err_setk(ERRK_USAGE, "%s line %u: control byte 0x%02x",
		                    what, line, byte);
		return -1;
	}
	while (i < len && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' ||
	                   data[i] == '\r'))
		i++;
	if (i < len && (data[i] == '{' || data[i] == '[')) {
		struct jval root;
		const struct jval *arr;

		if (json_doc_parse(what, data, len, &root, error_r) < 0)
			return -1;
		if (root.type == J_ARR) {
			ret = parse_json_inventory(&l, what, &root, error_r);
		} else if ((arr = jget(&root, "inventory")) != NULL &&
		           arr->type == J_ARR) {
			ret = parse_json_inventory(&l, what, arr, error_r);
		} else if ((arr = jget(&root, "jobs")) != NULL &&
		           arr->type == J_ARR) {
			ret = parse_json_jobs(&l, what, arr, error_r);
		} else {
			*error_r = err_setk(ERRK_USAGE, "%s: a JSON inventory needs "
			                    "\"inventory\" (plan --json) or \"jobs\"",
			                    what);
			ret = -1;
		}
		jval_free(&root);
	} else {
		ret = parse_csv(&l, what, data, len, error_r);
	}
	free(l.index.slot);
	free(l.falloc);
	if (ret == 0 && inv->n == 0) {
		*error_r = err_setk(ERRK_USAGE, "%s: no account", what);
		ret = -1;
	}
	if (ret < 0) {
		sched_inventory_free(inv);
		return -1;
	}
	for (size_t a = 0; a < inv->n; a++) {
		struct sched_account_est *e = &inv->est[a];

		e->label = inv->names[a];
		guess_namespace(e);
		/* names from the file: controls came escaped in JSON only */
		for (const char *q = inv->names[a]; *q != '\0'; q++)
			if ((unsigned char)*q < 0x20 || *q == 0x7f) {
				*error_r = err_setk(ERRK_USAGE, "%s: control byte in "
				                    "an account name", what);
				sched_inventory_free(inv);
				return -1;
			}
		for (size_t k = 0; k < e->n_folders; k++)
			for (const char *q = e->folders[k].name; *q != '\0'; q++)
				if ((unsigned char)*q < 0x20 || *q == 0x7f) {
					*error_r = err_setk(ERRK_USAGE, "%s: account %s: "
					    "control byte in a folder name", what,
					    inv->names[a]);
					sched_inventory_free(inv);
					return -1;
				}
		inv->folders += e->n_folders;
		inv->messages += e->messages;
		inv->bytes += e->bytes;
	}
	return 0;
}

int
sched_inventory_load(const char *path, struct sched_inventory *inv,
                     const char **error_r)
{
	char *data, *what;
	size_t len;
	const char *error;
	int ret;

	if (file_read_raw(path, INVENTORY_MAX_SIZE, &data, &len, &error) < 0) {
		*error_r = err_setk(ERRK_USAGE, "inventory %s", error);
		return -1;
	}
	what = xasprintf("inventory %s", path);
	ret = sched_inventory_parse(what, data, len, inv, error_r);
	free(what);
	free(data);
	return ret;
}

size_t
sched_inventory_final(struct sched_inventory *inv, const struct sched_cost *c)
{
	size_t kept = 0;

	for (size_t a = 0; a < inv->n; a++) {
		struct sched_account_est *e = &inv->est[a];
		size_t w = 0;

		for (size_t k = 0; k < e->n_folders; k++) {
			if (e->folders[k].messages == 0) {
				e->extra_seconds += c->per_status;
				free(e->folders[k].name);
				continue;
			}
			e->folders[w++] = e->folders[k];
		}
		e->n_folders = w;
		kept += w;
	}
	return kept;
}

/* ---------------------------------------------------------- cost files */

void
sched_cost_json(struct json *j, const struct sched_cost *c)
{
	json_obj_begin(j);
	json_key(j, "calibrated"); json_bool(j, c->calibrated);
	json_key(j, "per_account_ms"); json_double_g(j, c->per_account * 1e3);
	json_key(j, "per_folder_ms"); json_double_g(j, c->per_folder * 1e3);
	json_key(j, "status_per_folder_ms"); json_double_g(j, c->per_status * 1e3);
	json_key(j, "per_message_ms"); json_double_g(j, c->per_message * 1e3);
	json_key(j, "per_megabyte_ms"); json_double_g(j, c->per_byte * 1e9);
	json_key(j, "avg_message_size"); json_double_g(j, c->avg_message_size);
	json_key(j, "parallel_sessions"); json_u64(j, c->par_sessions);
	json_key(j, "parallel_speedup"); json_double_g(j, c->par_speedup);
	json_key(j, "sample_messages"); json_u64(j, c->sample_messages);
	json_key(j, "sample_bytes"); json_u64(j, c->sample_bytes);
	json_key(j, "sample_seconds"); json_double_g(j, c->sample_seconds);
	json_key(j, "target_probed"); json_bool(j, c->target_probed);
	if (c->target_probed) {
		json_key(j, "target_per_message_ms");
		json_double_g(j, c->dst_per_message * 1e3);
		json_key(j, "target_per_megabyte_ms");
		json_double_g(j, c->dst_per_byte * 1e9);
	}
	json_obj_end(j);
}

/* A number >= 0 at key of o into *v_r scaled by scale; absent and not
 * needed: *v_r unchanged. */
static int
cost_num(const char *what, const struct jval *o, const char *key, bool need,
         double scale, double *v_r, const char **error_r)
{
	const struct jval *v = jget(o, key);

	if (v == NULL) {
		if (!need)
			return 0;
		*error_r = err_setk(ERRK_USAGE, "%s: \"%s\" missing", what, key);
		return -1;
	}
	if (v->type != J_NUM || !(v->num >= 0) || !isfinite(v->num)) {
		*error_r = err_setk(ERRK_USAGE, "%s line %u: \"%s\": expected a "
		                    "number (0 or more)", what, v->line, key);
		return -1;
	}
	*v_r = v->num * scale;
	return 0;
}

int
sched_cost_parse(const char *what, const char *data, size_t len,
                 struct sched_cost *c, const char **error_r)
{
	struct jval root;
	const struct jval *o, *v;
	double par = 0, sm = 0, sb = 0;
	int ret = -1;

	if (memchr(data, '\0', len) != NULL) {
		*error_r = err_setk(ERRK_USAGE, "%s: NUL byte", what);
		return -1;
	}
	if (json_doc_parse(what, data, len, &root, error_r) < 0)
		return -1;
	o = jget(&root, "cost") != NULL ? jget(&root, "cost") : &root;
	if (o->type != J_OBJ) {
		*error_r = err_setk(ERRK_USAGE, "%s: expected a JSON object (the "
		                    "\"cost\" of plan --json)", what);
		goto out;
	}
	sched_cost_default(c);
	if (cost_num(what, o, "per_account_ms", true, 1e-3, &c->per_account,
	             error_r) < 0 ||
	    cost_num(what, o, "per_folder_ms", true, 1e-3, &c->per_folder,
	             error_r) < 0 ||
	    cost_num(what, o, "per_message_ms", true, 1e-3, &c->per_message,
	             error_r) < 0 ||
	    cost_num(what, o, "per_megabyte_ms", true, 1e-9, &c->per_byte,
	             error_r) < 0 ||
	    cost_num(what, o, "status_per_folder_ms", false, 1e-3,
	             &c->per_status, error_r) < 0 ||
	    cost_num(what, o, "avg_message_size", false, 1, &c->avg_message_size,
	             error_r) < 0 ||
	    cost_num(what, o, "parallel_speedup", false, 1, &c->par_speedup,
	             error_r) < 0 ||
	    cost_num(what, o, "parallel_sessions", false, 1, &par, error_r) < 0 ||
	    cost_num(what, o, "sample_messages", false, 1, &sm, error_r) < 0 ||
	    cost_num(what, o, "sample_bytes", false, 1, &sb, error_r) < 0 ||
	    cost_num(what, o, "sample_seconds", false, 1, &c->sample_seconds,
	             error_r) < 0 ||
	    cost_num(what, o, "target_per_message_ms", false, 1e-3,
	             &c->dst_per_message, error_r) < 0 ||
	    cost_num(what, o, "target_per_megabyte_ms", false, 1e-9,
	             &c->dst_per_byte, error_r) < 0)
		goto out;
	if (par > 10000 || sm > UINT32_MAX) {
		*error_r = err_setk(ERRK_USAGE, "%s: parallel_sessions or "
		                    "sample_messages out of range", what);
		goto out;
	}
	c->par_sessions = (unsigned)par;
	c->sample_messages = (unsigned)sm;
	c->sample_bytes = (uint64_t)sb;
	if (c->avg_message_size <= 0)
		c->avg_message_size = 60000;
	v = jget(o, "calibrated");
	c->calibrated = v != NULL && v->type == J_BOOL && v->b;
	v = jget(o, "target_probed");
	c->target_probed = v != NULL && v->type == J_BOOL && v->b;
	ret = 0;
out:
	jval_free(&root);
	return ret;
}

int
sched_cost_load(const char *path, struct sched_cost *c, const char **error_r)
{
	char *data, *what;
	size_t len;
	const char *error;
	int ret;

	if (file_read_raw(path, COST_MAX_SIZE, &data, &len, &error) < 0) {
		*error_r = err_setk(ERRK_USAGE, "cost file %s", error);
		return -1;
	}
	what = xasprintf("cost file %s", path);
	ret = sched_cost_parse(what, data, len, c, error_r);
	free(what);
	free(data);
	return ret;
}

/* -------------------------------------------------- several machines */

struct mjob {
	double left;              /* seconds alone left */
	double rate_bytes;        /* bytes per second alone */
	unsigned machine;
};

static int
cmp_job_seconds_desc(const void *a, const void *b)
{
	const struct sched_job *x = a, *y = b;

	return x->est_seconds < y->est_seconds ? 1 :
	       x->est_seconds > y->est_seconds ? -1 : 0;
}

double
sched_predict_machines(const struct sched_cost *c, const struct sched_plan *p,
                       unsigned machines, unsigned workers, unsigned max_conc,
                       double src_rate, const char **bound_r)
{
	struct sched_job *order;
	struct mjob *run;
	unsigned *on, slots;
	size_t next = 0, nrun = 0;
	double t = 0, t_capped = 0, t_alone_tail = 0;

	if (machines == 0)
		machines = 1;
	if (workers == 0)
		workers = 1;
	slots = machines * workers;
	if (max_conc > 0 && slots > max_conc)
		slots = max_conc;
	if (bound_r != NULL)
		*bound_r = "workers";
	if (p->n_jobs == 0)
		return 0;
	/* the plan's jobs are largest first already; sort a copy anyway */
	order = xcalloc(p->n_jobs, sizeof(*order));
	memcpy(order, p->jobs, p->n_jobs * sizeof(*order));
	qsort(order, p->n_jobs, sizeof(*order), cmp_job_seconds_desc);
	run = xcalloc(slots, sizeof(*run));
	on = xcalloc(machines, sizeof(*on));
	for (;;) {
		double step = INFINITY, total_rate = 0, scale = 1;
		size_t w = 0;

		/* a free worker takes the largest job left; of the machines
		 * with a free worker, the one running fewest jobs */
		while (nrun < slots && next < p->n_jobs) {
			unsigned best = machines;
			const struct sched_job *j;

			for (unsigned m = 0; m < machines; m++)
				if (on[m] < workers && (best == machines ||
				                        on[m] < on[best]))
					best = m;
			if (best == machines)
				break;
			j = &order[next++];
			run[nrun].left = j->est_seconds;
			run[nrun].rate_bytes = j->est_seconds > 0 ?
			    (double)j->est_bytes / j->est_seconds : 0;
			run[nrun].machine = best;
			on[best]++;
			nrun++;
		}
		if (nrun == 0)
			break;
		/* each job's speed (alone = 1) */
		for (size_t i = 0; i < nrun; i++) {
			unsigned k = on[run[i].machine];

			total_rate += run[i].rate_bytes *
			              sched_cost_speedup(c, k) / k;
		}
		if (src_rate > 0 && total_rate > src_rate)
			scale = src_rate / total_rate;
		for (size_t i = 0; i < nrun; i++) {
			unsigned k = on[run[i].machine];
			double speed = sched_cost_speedup(c, k) / k * scale;
			double d = run[i].left / speed;

			if (d < step)
				step = d;
		}
		t += step;
		if (scale < 1)
			t_capped += step;
		if (nrun == 1 && next >= p->n_jobs)
			t_alone_tail += step;
		for (size_t i = 0; i < nrun; i++) {
			unsigned k = on[run[i].machine];
			double speed = sched_cost_speedup(c, k) / k * scale;

			run[i].left -= step * speed;
		}
		for (size_t i = 0; i < nrun; i++) {
			if (run[i].left > 1e-9) {
				run[w++] = run[i];
				continue;
			}
			on[run[i].machine]--;
		}
		nrun = w;
	}
	if (bound_r != NULL && t > 0) {
		if (t_capped > t / 2)
			*bound_r = "source";
		else if (t_alone_tail > t / 10)
			*bound_r = "largest job";
	}
	free(order);
	free(run);
	free(on);
	return t;
}
