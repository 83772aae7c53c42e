/* maildir-format.c: pure text formats of Maildir++ (no I/O): folder
 * directory names, message file names, flags, dovecot-uidlist /
 * courierimapuiddb, dovecot-keywords, courierimapkeywords/:list and the
 * subscriptions files. */
#include "maildir-private.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Folder directory names */

static bool
is_b64(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '+' || c == ',';
}

/* Returns NULL if the component is acceptable, else the reason. */
static const char *
component_problem(const char *c)
{
	size_t len = strlen(c);

	if (len == 0)
		return "empty name component";
	if (strcmp(c, ".") == 0 || strcmp(c, "..") == 0)
		return "name component \".\" or \"..\"";
	if (len > MAILDIR_COMPONENT_MAX)
		return "name component longer than 200 bytes";
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)c[i];

		if (ch == '/')
			return "'/' in a name component";
		if (ch == '.')
			return "'.' in a name component (the Maildir++ separator)";
		if (ch < 0x20 || ch == 0x7f)
			return "control character in a name component";
		if (ch > 0x7f)
			return "8-bit byte in a name component (not modified UTF-7)";
		if (ch == '&') {
			size_t j = i + 1;

			while (j < len && is_b64(c[j]))
				j++;
			if (j >= len || c[j] != '-')
				return "invalid modified UTF-7 ('&' run without '-')";
			i = j;
		}
	}
	return NULL;
}

int
maildir_folder_dirname(const char *const *components, size_t n,
                       char **dirname_r, const char **error_r)
{
	struct buf b;

	*dirname_r = NULL;
	if (n == 0 || (n == 1 && str_ieq(components[0], "INBOX"))) {
		*dirname_r = xstrdup("");
		return 0;
	}
	buf_init(&b, MAILDIR_DIRNAME_MAX + 1);
	for (size_t i = 0; i < n; i++) {
		const char *why = component_problem(components[i]);

		if (why != NULL) {
			*error_r = err_set("folder name component %zu (\"%.60s%s\"): %s",
			                   i + 1, components[i],
			                   strlen(components[i]) > 60 ? "..." : "", why);
			buf_free(&b);
			return -1;
		}
		if (buf_append_str(&b, ".") < 0 ||
		    buf_append_str(&b, components[i]) < 0) {
			*error_r = err_set("folder name too long for a Maildir++ "
			                   "directory (more than %d bytes)",
			                   MAILDIR_DIRNAME_MAX);
			buf_free(&b);
			return -1;
		}
	}
	if (buf_len(&b) > MAILDIR_DIRNAME_MAX) {
		*error_r = err_set("folder name too long for a Maildir++ directory "
		                   "(%zu bytes, at most %d)", buf_len(&b),
		                   MAILDIR_DIRNAME_MAX);
		buf_free(&b);
		return -1;
	}
	*dirname_r = buf_take(&b);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Message file names */

size_t
md_name_base_len(const char *name)
{
	const char *p = strchr(name, ':');

	return p != NULL ? (size_t)(p - name) : strlen(name);
}

const char *
md_name_letters(const char *name)
{
	const char *p = strchr(name, ':');

	if (p == NULL || strncmp(p, ":2,", 3) != 0)
		return "";
	return p + 3;
}

bool
md_name_field(const char *name, char key, uint64_t *value_r)
{
	size_t blen = md_name_base_len(name);
	const char *p = memchr(name, ',', blen);

	/* Fields are ",K=digits" after the unique part. */
	while (p != NULL && p < name + blen) {
		const char *start = p + 1;
		const char *end = memchr(start, ',', (size_t)(name + blen - start));

		if (end == NULL)
			end = name + blen;
		if (end - start >= 3 && start[0] == key && start[1] == '=')
			return str_to_u64(start + 2, (size_t)(end - start - 2),
			                  UINT64_MAX, value_r);
		p = end < name + blen ? end : NULL;
	}
	return false;
}

char *
md_host_escape(const char *host)
{
	struct buf b;

	buf_init(&b, 4096);
	for (const unsigned char *p = (const unsigned char *)host; *p != '\0'; p++) {
		int r;

		if (*p == '/' || *p == ':' || *p == ',' || *p == '\\' ||
		    *p <= 0x20 || *p >= 0x7f)
			r = buf_printf(&b, "\\%03o", *p);
		else
			r = buf_append(&b, p, 1);
		if (r < 0)
			break;
	}
	if (buf_len(&b) == 0)
		ignore_result(buf_append_str(&b, "localhost"));
	return buf_take(&b);
}

/* ------------------------------------------------------------------ */
/* Flags */

static const struct {
	unsigned int bit;
	char letter;
	const char *name;
} sysflags[] = {
	{ MD_DRAFT, 'D', "\\Draft" },
	{ MD_FLAGGED, 'F', "\\Flagged" },
	{ MD_ANSWERED, 'R', "\\Answered" },
	{ MD_SEEN, 'S', "\\Seen" },
	{ MD_DELETED, 'T', "\\Deleted" },
};

void
md_flags_init(struct md_flags *fl)
{
	memset(fl, 0, sizeof(*fl));
	buf_init(&fl->dropped, 1024 * 1024);
}

void
md_flags_free(struct md_flags *fl)
{
	for (size_t i = 0; i < fl->nkw; i++)
		free(fl->kw[i]);
	free(fl->kw);
	buf_free(&fl->dropped);
	fl->kw = NULL;
	fl->nkw = 0;
}

bool
md_keyword_valid(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > 200)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c <= 0x20 || c >= 0x7f || strchr("(){%*\"\\]", c) != NULL)
			return false;
	}
	return true;
}

static void
add_dropped(struct md_flags *fl, const char *s, size_t len)
{
	if (buf_len(&fl->dropped) > 0)
		ignore_result(buf_append_str(&fl->dropped, " "));
	ignore_result(buf_append(&fl->dropped, s, len));
}

static bool
is_flag_sep(char c)
{
	return c == ' ' || c == '\t' || c == '(' || c == ')' || c == '\r' ||
	       c == '\n';
}

void
md_flags_parse(struct md_flags *fl, const char *s)
{
	const char *p = s;

	while (*p != '\0') {
		const char *start;
		char *tok;
		size_t len;

		while (*p != '\0' && is_flag_sep(*p))
			p++;
		if (*p == '\0')
			break;
		start = p;
		while (*p != '\0' && !is_flag_sep(*p))
			p++;
		len = (size_t)(p - start);
		tok = xstrndup(start, len);
		if (tok[0] == '\\') {
			bool known = false;

			for (size_t i = 0; i < N_ELEMENTS(sysflags); i++) {
				if (str_ieq(tok, sysflags[i].name)) {
					fl->sys |= sysflags[i].bit;
					known = true;
				}
			}
			if (!known && !str_ieq(tok, "\\Recent"))
				add_dropped(fl, tok, len);
			free(tok);
			continue;
		}
		if (!md_keyword_valid(tok)) {
			add_dropped(fl, tok, len);
			free(tok);
			continue;
		}
		for (size_t i = 0; i < fl->nkw; i++) {
			if (str_ieq(fl->kw[i], tok)) {
				XFREE(tok);
				break;
			}
		}
		if (tok != NULL) {
			fl->kw = xreallocarray(fl->kw, fl->nkw + 1, sizeof(*fl->kw));
			fl->kw[fl->nkw++] = tok;
		}
	}
}

static int
cmp_strp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

char *
md_flags_format(unsigned int sys, const char *const *kw, size_t nkw)
{
	const char **all = xcalloc(nkw + N_ELEMENTS(sysflags) + 1, sizeof(*all));
	size_t n = 0;
	struct buf b;

	for (size_t i = 0; i < N_ELEMENTS(sysflags); i++) {
		if ((sys & sysflags[i].bit) != 0)
			all[n++] = sysflags[i].name;
	}
	for (size_t i = 0; i < nkw; i++)
		all[n++] = kw[i];
	if (n > 0)
		qsort(all, n, sizeof(*all), cmp_strp);
	buf_init(&b, SIZE_MAX / 2);
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && strcmp(all[i], all[i - 1]) == 0)
			continue;
		if (buf_len(&b) > 0)
			ignore_result(buf_append_str(&b, " "));
		ignore_result(buf_append_str(&b, all[i]));
	}
	free(all);
	return buf_take(&b);
}

void
md_sys_letters(unsigned int sys, char *out)
{
	size_t n = 0;

	for (size_t i = 0; i < N_ELEMENTS(sysflags); i++) {
		if ((sys & sysflags[i].bit) != 0)
			out[n++] = sysflags[i].letter;
	}
	out[n] = '\0';
}

/* ------------------------------------------------------------------ */
/* String pool */

#define POOL_CHUNK 65536        /* data bytes of a chunk */

struct md_pool_chunk {
	struct md_pool_chunk *next;
	char data[];
};

/* size bytes of room in the pool. */
static char *
pool_alloc(struct md_pool *p, size_t size)
{
	char *r;

	if (p->head == NULL || p->size - p->used < size) {
		/* a long string gets a chunk of its own behind the head, so
		 * the head's free space is not wasted */
		size_t csize = size > POOL_CHUNK / 4 ? size : POOL_CHUNK;
		struct md_pool_chunk *c = xmalloc(sizeof(*c) + csize);

		if (csize != POOL_CHUNK && p->head != NULL) {
			c->next = p->head->next;
			p->head->next = c;
			return c->data;
		}
		c->next = p->head;
		p->head = c;
		p->used = 0;
		p->size = csize;
	}
	r = p->head->data + p->used;
	p->used += size;
	return r;
}

char *
md_pool_strndup(struct md_pool *p, const char *s, size_t len)
{
	char *r = pool_alloc(p, len + 1);

	memcpy(r, s, len);
	r[len] = '\0';
	return r;
}

char *
md_pool_strdup(struct md_pool *p, const char *s)
{
	return md_pool_strndup(p, s, strlen(s));
}

void
md_pool_free(struct md_pool *p)
{
	while (p->head != NULL) {
		struct md_pool_chunk *c = p->head;

		p->head = c->next;
		free(c);
	}
	p->used = p->size = 0;
}

/* ------------------------------------------------------------------ */
/* dovecot-uidlist and courierimapuiddb */

void
md_uidlist_free(struct md_uidlist *ul)
{
	free(ul->recs);
	free(ul->hdr_extra);
	memset(ul, 0, sizeof(*ul));
}

static bool
parse_u32(const char *s, size_t len, uint32_t *v_r)
{
	uint64_t v;

	if (!str_to_u64(s, len, UINT32_MAX, &v))
		return false;
	*v_r = (uint32_t)v;
	return true;
}

static int
parse_header(const char *line, size_t len, struct md_uidlist *ul,
             const char **error_r)
{
	const char *p = line, *end = line + len;
	struct buf extra;

	if (len < 2 || line[0] < '0' || line[0] > '9' || line[1] != ' ') {
		*error_r = "broken header (no version number)";
		return -1;
	}
	ul->version = line[0] - '0';
	p += 2;
	if (ul->version == 1) {
		const char *sp = memchr(p, ' ', (size_t)(end - p));

		if (sp == NULL || !parse_u32(p, (size_t)(sp - p), &ul->uidvalidity) ||
		    !parse_u32(sp + 1, (size_t)(end - sp - 1), &ul->uidnext)) {
			*error_r = "broken version 1 header";
			return -1;
		}
	} else if (ul->version == 3) {
		buf_init(&extra, MD_META_MAX);
		while (p < end) {
			const char *tok = p;

			while (p < end && *p != ' ')
				p++;
			if (p - tok >= 1) {
				if (tok[0] == 'V' || tok[0] == 'N') {
					if (!parse_u32(tok + 1, (size_t)(p - tok - 1),
					               tok[0] == 'V' ? &ul->uidvalidity :
					               &ul->uidnext)) {
						buf_free(&extra);
						*error_r = "broken V or N in the header";
						return -1;
					}
				} else {
					if (buf_len(&extra) > 0)
						ignore_result(buf_append_str(&extra, " "));
					ignore_result(buf_append(&extra, tok, (size_t)(p - tok)));
				}
			}
			while (p < end && *p == ' ')
				p++;
		}
		if (buf_len(&extra) > 0)
			ul->hdr_extra = buf_take(&extra);
		else
			buf_free(&extra);
	} else {
		*error_r = err_set("unsupported uidlist version %d", ul->version);
		return -1;
	}
	if (ul->uidvalidity == 0 || ul->uidnext == 0) {
		*error_r = "broken header (UIDVALIDITY or next UID is 0)";
		return -1;
	}
	return 0;
}

static int
cmp_rec(const void *a, const void *b)
{
	const struct md_rec *x = a, *y = b;

	if (x->uid != y->uid)
		return x->uid < y->uid ? -1 : 1;
	return x->off < y->off ? -1 : (x->off > y->off);
}

/* Sorts by UID; for a repeated UID the later line (higher offset) wins. */
static void
sort_records(struct md_uidlist *ul)
{
	size_t n = 0;

	if (ul->nrecs > 1)
		qsort(ul->recs, ul->nrecs, sizeof(*ul->recs), cmp_rec);
	for (size_t i = 0; i < ul->nrecs; i++) {
		if (i + 1 < ul->nrecs && ul->recs[i + 1].uid == ul->recs[i].uid)
			continue;
		ul->recs[n++] = ul->recs[i];
	}
	ul->nrecs = n;
}

int
md_uidlist_line(const char *line, size_t len, int version, uint32_t *uid_r,
                struct buf *ext, const char **base_r, size_t *blen_r,
                const char **why_r)
{
	const char *p = line, *end = line + len;

	while (p < end && *p >= '0' && *p <= '9')
		p++;
	if (p == line || p == end || *p != ' ' ||
	    !parse_u32(line, (size_t)(p - line), uid_r) || *uid_r == 0 ||
	    *uid_r == UINT32_MAX) {
		*why_r = "invalid UID";
		return -1;
	}
	while (p < end && *p == ' ')
		p++;
	buf_reset(ext);
	if (version == 3) {
		while (p < end && *p != ':') {
			const char *tok = p;

			while (p < end && *p != ' ')
				p++;
			/* Dovecot drops fields with an invalid key, so do we */
			if (tok[0] >= 'A' && tok[0] <= 'Z') {
				if (buf_len(ext) > 0)
					ignore_result(buf_append_str(ext, " "));
				ignore_result(buf_append(ext, tok, (size_t)(p - tok)));
			}
			while (p < end && *p == ' ')
				p++;
		}
		if (p == end) {
			*why_r = "no ':' before the file name";
			return -1;
		}
		p++;
	}
	if (p == end || memchr(p, '/', (size_t)(end - p)) != NULL ||
	    memchr(p, '\0', (size_t)(end - p)) != NULL) {
		*why_r = "missing or invalid file name";
		return -1;
	}
	*base_r = p;
	*blen_r = (size_t)(end - p);
	return 0;
}

/* Line-by-line state of a uidlist parse (text or chunks of a file). */
struct ul_parse {
	struct md_uidlist *ul;
	unsigned int lineno;
	bool sorted;
	struct buf ext;         /* scratch, reused line by line */
};

/* One line (without its LF) at byte offset off. */
static int
ul_parse_line(struct ul_parse *ps, const char *line, size_t len, uint64_t off,
              const char **error_r)
{
	struct md_uidlist *ul = ps->ul;
	const char *why;

	ps->lineno++;
	if (ps->lineno == 1) {
		if (parse_header(line, len, ul, &why) < 0)
			goto broken;
	} else if (len > 0) {
		struct md_rec rec = { 0 };
		const char *base;
		size_t blen;

		if (md_uidlist_line(line, len, ul->version, &rec.uid, &ps->ext, &base,
		                    &blen, &why) < 0)
			goto broken;
		rec.off = (uint32_t)off;
		if (ul->nrecs == ul->arecs) {
			ul->arecs = ul->arecs == 0 ? 64 : ul->arecs * 2;
			ul->recs = xreallocarray(ul->recs, ul->arecs, sizeof(*ul->recs));
		}
		if (ul->nrecs > 0 && ul->recs[ul->nrecs - 1].uid >= rec.uid)
			ps->sorted = false;
		ul->recs[ul->nrecs++] = rec;
	}
	return 0;
broken:
	*error_r = err_set("line %u: %s", ps->lineno, why);
	return -1;
}

static void
ul_parse_init(struct ul_parse *ps, struct md_uidlist *ul)
{
	memset(ul, 0, sizeof(*ul));
	memset(ps, 0, sizeof(*ps));
	ps->ul = ul;
	ps->sorted = true;
	buf_init(&ps->ext, MD_META_MAX);
}

static void
ul_parse_done(struct ul_parse *ps)
{
	buf_free(&ps->ext);
	if (!ps->sorted) {
		ps->ul->unsorted = true;
		sort_records(ps->ul);
	}
}

int
md_uidlist_parse(const char *text, size_t len, struct md_uidlist *ul,
                 const char **error_r)
{
	const char *p = text, *end = text + len;
	struct ul_parse ps;

	ul_parse_init(&ps, ul);
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl != NULL ? nl : end;

		if (nl == NULL && ps.lineno > 0) {
			/* no LF: an append cut short, or being written */
			ul->torn = true;
			break;
		}
		if (ul_parse_line(&ps, p, (size_t)(le - p), (uint64_t)(p - text),
		                  error_r) < 0) {
			buf_free(&ps.ext);
			md_uidlist_free(ul);
			return -1;
		}
		p = nl != NULL ? nl + 1 : end;
	}
	ul_parse_done(&ps);
	return 0;
}

int
md_uidlist_parse_fd(int fd, struct md_uidlist *ul, const char **error_r)
{
	struct ul_parse ps;
	struct buf b;
	uint64_t boff = 0;      /* file offset of b's first byte */
	size_t scan = 0;        /* bytes of b already searched for LF */
	int ret = -1;

	ul_parse_init(&ps, ul);
	buf_init(&b, MD_META_MAX);
	for (;;) {
		size_t want = MD_UIDLIST_CHUNK;
		char *p = buf_reserve(&b, want);
		ssize_t n;

		if (p == NULL || boff + buf_len(&b) >= MD_META_MAX) {
			*error_r = err_set("%u bytes or larger", MD_META_MAX);
			ret = -2;
			goto out;
		}
		n = read(fd, p, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*error_r = err_errno(errno, "read: %s", strerror(errno));
			ret = -2;
			goto out;
		}
		if (n == 0)
			break;
		buf_commit(&b, (size_t)n);
		/* the whole lines in b; the rest waits for the next chunk */
		{
			const char *s = buf_data(&b), *q = s, *end = s + buf_len(&b);
			const char *from = s + scan, *nl;

			while ((nl = memchr(from, '\n', (size_t)(end - from))) != NULL) {
				if (ul_parse_line(&ps, q, (size_t)(nl - q),
				                  boff + (uint64_t)(q - s), error_r) < 0)
					goto out;
				q = from = nl + 1;
			}
			boff += (uint64_t)(q - s);
			buf_consume(&b, (size_t)(q - s));
			scan = buf_len(&b);
		}
	}
	if (buf_len(&b) > 0) {
		/* a last line without LF: the header is read anyway, a
		 * record is torn */
		if (ps.lineno > 0)
			ul->torn = true;
		else if (ul_parse_line(&ps, buf_data(&b), buf_len(&b), boff, error_r) < 0)
			goto out;
	}
	ret = 0;
out:
	buf_free(&b);
	if (ret < 0) {
		buf_free(&ps.ext);
		md_uidlist_free(ul);
		return ret;
	}
	ul_parse_done(&ps);
	return 0;
}

int
md_uidlist_rec_at(const char *text, size_t len, const struct md_uidlist *ul,
                  size_t i, char **base_r, char **ext_r)
{
	const char *line = text + ul->recs[i].off, *nl, *base, *why;
	struct buf ext;
	size_t blen;
	uint32_t uid;

	nl = memchr(line, '\n', len - ul->recs[i].off);
	buf_init(&ext, MD_META_MAX);
	if (nl == NULL || md_uidlist_line(line, (size_t)(nl - line), ul->version, &uid,
	                                  &ext, &base, &blen, &why) < 0) {
		buf_free(&ext);
		return -1;
	}
	*base_r = xstrndup(base, blen);
	*ext_r = buf_take(&ext);
	return 0;
}

int
md_uidlist_format_header(struct buf *out, enum maildir_flavor flavor,
                         uint32_t uidvalidity, uint32_t uidnext,
                         const char *hdr_extra)
{
	if (flavor == MAILDIR_COURIER)
		return buf_printf(out, "1 %u %u\n", uidvalidity, uidnext);
	return buf_printf(out, "3 V%u N%u%s%s\n", uidvalidity, uidnext,
	                  hdr_extra != NULL ? " " : "",
	                  hdr_extra != NULL ? hdr_extra : "");
}

int
md_uidlist_format_line(struct buf *out, enum maildir_flavor flavor, uint32_t uid,
                       const char *base, const char *ext)
{
	if (flavor == MAILDIR_COURIER)
		return buf_printf(out, "%u %s\n", uid, base);
	return buf_printf(out, "%u%s%s :%s\n", uid, ext[0] != '\0' ? " " : "", ext,
	                  base);
}

char *
md_ext_get(const char *ext, char key)
{
	const char *p = ext;

	while (p != NULL && *p != '\0') {
		const char *sp = strchr(p, ' ');
		size_t len = sp != NULL ? (size_t)(sp - p) : strlen(p);

		if (len >= 1 && p[0] == key)
			return xstrndup(p + 1, len - 1);
		p = sp != NULL ? sp + 1 : NULL;
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* dovecot-keywords */

void
md_dkw_parse(const char *text, size_t len, char *kw[MD_MAX_KEYWORDS])
{
	const char *p = text, *end = text + len;

	for (size_t i = 0; i < MD_MAX_KEYWORDS; i++)
		XFREE(kw[i]);
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl != NULL ? nl : end;
		const char *sp = memchr(p, ' ', (size_t)(le - p));
		uint64_t idx;

		if (sp != NULL && sp + 1 < le &&
		    str_to_u64(p, (size_t)(sp - p), MD_MAX_KEYWORDS - 1, &idx)) {
			free(kw[idx]);
			kw[idx] = xstrndup(sp + 1, (size_t)(le - sp - 1));
		}
		p = nl != NULL ? nl + 1 : end;
	}
}

int
md_dkw_format(struct buf *out, char *const kw[MD_MAX_KEYWORDS])
{
	for (unsigned int i = 0; i < MD_MAX_KEYWORDS; i++) {
		if (kw[i] != NULL && buf_printf(out, "%u %s\n", i, kw[i]) < 0)
			return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* courierimapkeywords/:list */

void
md_ckw_free(struct md_ckw *c)
{
	for (size_t i = 0; i < c->n; i++) {
		for (size_t j = 0; j < c->e[i].nkw; j++)
			free(c->e[i].kw[j]);
		free(c->e[i].kw);
		free(c->e[i].base);
	}
	free(c->e);
	memset(c, 0, sizeof(*c));
}

void
md_ckw_parse(const char *text, size_t len, struct md_ckw *c)
{
	const char *p = text, *end = text + len;
	char **names = NULL;
	size_t nnames = 0;
	bool in_names = true;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl != NULL ? nl : end;

		if (in_names) {
			if (le == p) {
				in_names = false;
			} else {
				names = xreallocarray(names, nnames + 1, sizeof(*names));
				names[nnames++] = xstrndup(p, (size_t)(le - p));
			}
		} else {
			const char *colon = memchr(p, ':', (size_t)(le - p));

			if (colon != NULL && colon > p) {
				struct md_ckw_entry e = { 0 };
				const char *q = colon + 1;

				e.base = xstrndup(p, (size_t)(colon - p));
				while (q < le) {
					const char *t = q;
					uint64_t idx;

					while (q < le && *q != ' ')
						q++;
					if (str_to_u64(t, (size_t)(q - t), SIZE_MAX, &idx) &&
					    idx < nnames) {
						e.kw = xreallocarray(e.kw, e.nkw + 1,
						                     sizeof(*e.kw));
						e.kw[e.nkw++] = xstrdup(names[idx]);
					}
					while (q < le && *q == ' ')
						q++;
				}
				if (c->n == c->alloc) {
					c->alloc = c->alloc == 0 ? 16 : c->alloc * 2;
					c->e = xreallocarray(c->e, c->alloc, sizeof(*c->e));
				}
				c->e[c->n++] = e;
			}
		}
		p = nl != NULL ? nl + 1 : end;
	}
	for (size_t i = 0; i < nnames; i++)
		free(names[i]);
	free(names);
}

int
md_ckw_format(struct buf *out, const struct md_ckw *c)
{
	const char **names = NULL;
	size_t nnames = 0, total = 0;
	int ret = 0;

	for (size_t i = 0; i < c->n; i++)
		total += c->e[i].nkw;
	if (total == 0)
		return 0;
	names = xcalloc(total, sizeof(*names));
	for (size_t i = 0; i < c->n; i++) {
		for (size_t j = 0; j < c->e[i].nkw; j++)
			names[nnames++] = c->e[i].kw[j];
	}
	if (nnames > 0)
		qsort(names, nnames, sizeof(*names), cmp_strp);
	total = 0;
	for (size_t i = 0; i < nnames; i++) {
		if (i == 0 || strcmp(names[i], names[i - 1]) != 0)
			names[total++] = names[i];
	}
	nnames = total;
	for (size_t i = 0; i < nnames && ret == 0; i++)
		ret = buf_printf(out, "%s\n", names[i]);
	if (ret == 0)
		ret = buf_append_str(out, "\n");
	for (size_t i = 0; i < c->n && ret == 0; i++) {
		const struct md_ckw_entry *e = &c->e[i];

		if (e->nkw == 0)
			continue;
		ret = buf_printf(out, "%s:", e->base);
		for (size_t j = 0; j < e->nkw && ret == 0; j++) {
			const char *key = e->kw[j];
			const char **hit = bsearch(&key, names, nnames, sizeof(*names),
			                           cmp_strp);

			ret = buf_printf(out, "%s%zu", j > 0 ? " " : "",
			                 (size_t)(hit - names));
		}
		if (ret == 0)
			ret = buf_append_str(out, "\n");
	}
	free(names);
	return ret;
}

/* ------------------------------------------------------------------ */
/* Subscriptions */

/* Appends name with separator sep replaced by to, or -1 (reason in *why). */
static int
append_levels(struct buf *out, const char *name, char sep, char to,
              const char **why)
{
	size_t len = strlen(name);

	if (len == 0) {
		*why = "empty name";
		return -1;
	}
	if (name[0] == sep || name[len - 1] == sep) {
		*why = "empty hierarchy level";
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		char c = name[i];

		if (c == '\t' || c == '\r' || c == '\n') {
			*why = "TAB, CR or LF in the name";
			return -1;
		}
		if (c == sep) {
			if (name[i + 1] == sep) {
				*why = "empty hierarchy level";
				return -1;
			}
			c = to;
		} else if (c == to && to != sep) {
			*why = to == '.' ? "'.' in a level (Courier's separator)" :
			       "separator character in a level";
			return -1;
		}
		if (buf_append(out, &c, 1) < 0) {
			*why = "too long";
			return -1;
		}
	}
	return 0;
}

int
md_subs_format(struct buf *out, enum maildir_flavor flavor,
               const char *const *names, size_t n, char sep, const char **error_r)
{
	const char *why = NULL;

	if (flavor == MAILDIR_DOVECOT && buf_append_str(out, "V\t2\n\n") < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		const char *name = names[i];
		int r = 0;

		if (flavor == MAILDIR_DOVECOT) {
			if (str_ieq(name, "INBOX"))
				r = buf_append_str(out, "INBOX");
			else
				r = append_levels(out, name, sep, '\t', &why);
		} else {
			size_t il = strlen("INBOX");

			if (str_ieq(name, "INBOX")) {
				r = buf_append_str(out, "INBOX");
			} else if (str_ieqn(name, "INBOX", il) && name[il] == sep) {
				r = buf_append_str(out, "INBOX.");
				if (r == 0)
					r = append_levels(out, name + il + 1, sep, '.', &why);
			} else if (strncmp(name, "#shared", 7) == 0 && name[7] == sep) {
				r = append_levels(out, name, sep, '.', &why);
			} else if (strncmp(name, "shared", 6) == 0 && name[6] == sep) {
				r = append_levels(out, name, sep, '.', &why);
			} else {
				r = buf_append_str(out, "INBOX.");
				if (r == 0)
					r = append_levels(out, name, sep, '.', &why);
			}
		}
		if (r == 0)
			r = buf_append_str(out, "\n");
		if (r < 0) {
			*error_r = err_set("subscription \"%.100s\": %s", name,
			                   why != NULL ? why : "too long");
			return -1;
		}
	}
	return 0;
}

static void
strv_push(char ***v, size_t *n, char *s)
{
	*v = xreallocarray(*v, *n + 1, sizeof(**v));
	(*v)[(*n)++] = s;
}

static char *
replace_char(const char *s, size_t len, char from, char to)
{
	char *r = xstrndup(s, len);

	for (char *p = r; *p != '\0'; p++) {
		if (*p == from)
			*p = to;
	}
	return r;
}

int
md_subs_parse(const char *text, size_t len, enum maildir_flavor flavor,
              char sep, char ***names_r, size_t *n_r)
{
	const char *p = text, *end = text + len;
	bool v2 = false;

	*names_r = NULL;
	*n_r = 0;
	if (flavor == MAILDIR_DOVECOT && len >= 2 && p[0] == 'V' && p[1] == '\t') {
		const char *nl = memchr(p, '\n', len);

		v2 = true;
		p = nl != NULL ? nl + 1 : end;
	}
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl != NULL ? nl : end;
		size_t l = (size_t)(le - p);

		if (l > 0 && p[l - 1] == '\r')
			l--;
		if (l > 0) {
			char *name;

			if (flavor == MAILDIR_DOVECOT)
				name = replace_char(p, l, v2 ? '\t' : '.', sep);
			else if (sep == '.')
				name = xstrndup(p, l);
			else if (l > 6 && strncmp(p, "INBOX.", 6) == 0)
				name = replace_char(p + 6, l - 6, '.', sep);
			else
				name = replace_char(p, l, '.', sep);
			strv_push(names_r, n_r, name);
		}
		p = nl != NULL ? nl + 1 : end;
	}
	return 0;
}
