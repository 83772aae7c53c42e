/* cyrus-format.c: parsers of Cyrus's on-disk formats, from bytes in memory
 * (see docs/internals/cyrus-formats.md). Every read is bounded by the
 * buffer given; nothing here touches the file system. */
#include "cyrus.h"

#include "buf.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* MAILBOX_HEADER_MAGIC of imap/mailbox.h (2.x and 3.x alike) */
static const char header_magic[] =
	"\241\002\213\015Cyrus mailbox header\n"
	"\"The best thing about this system was that it had lots of goals.\"\n"
	"\t--Jim Morris on Andrew\n";

/* -------------------------------------------------------------- header */

void
cyrus_header_free(struct cyrus_header *h)
{
	free(h->quotaroot);
	free(h->uniqueid);
	free(h->name);
	for (size_t i = 0; i < CYRUS_MAX_USER_FLAGS; i++)
		free(h->flagname[i]);
	memset(h, 0, sizeof(*h));
}

static int
add_flag(struct cyrus_header *h, const char *name, size_t len, const char **error_r)
{
	if (h->n_flags >= CYRUS_MAX_USER_FLAGS) {
		*error_r = err_setk(ERRK_FOLDER, "cyrus.header: more than %d user flags",
		                    CYRUS_MAX_USER_FLAGS);
		return -1;
	}
	h->flagname[h->n_flags++] = name != NULL ? xstrndup(name, len) : NULL;
	return 0;
}

/* 2.x: "quotaroot TAB uniqueid [TAB ...] LF", then flag names separated
 * by single spaces, an empty name keeping its slot (mailbox.c,
 * mailbox_read_header()). */
static int
header_parse_v2(const char *p, const char *end, struct cyrus_header *h,
                const char **error_r)
{
	const char *eol = memchr(p, '\n', (size_t)(end - p));
	const char *tab, *name;

	if (eol == NULL)
		goto bad;
	tab = memchr(p, '\t', (size_t)(eol - p));
	if (tab == NULL)
		tab = eol;      /* before 2.2: no uniqueid */
	if (tab > p)
		h->quotaroot = xstrndup(p, (size_t)(tab - p));
	if (tab < eol) {
		const char *u = tab + 1, *t2 = memchr(u, '\t', (size_t)(eol - u));

		if (t2 == NULL)
			t2 = eol;
		if (t2 > u)
			h->uniqueid = xstrndup(u, (size_t)(t2 - u));
	}
	p = eol + 1;
	if (p >= end || (eol = memchr(p, '\n', (size_t)(end - p))) == NULL)
		goto bad;
	if (eol == p)
		return 0;       /* no user flags */
	for (name = p; name <= eol;) {
		const char *sp = memchr(name, ' ', (size_t)(eol - name));

		if (sp == NULL)
			sp = eol;
		if (add_flag(h, sp > name ? name : NULL, (size_t)(sp - name),
		             error_r) < 0)
			return -1;
		name = sp + 1;
	}
	/* trailing unused slots are not slots */
	while (h->n_flags > 0 && h->flagname[h->n_flags - 1] == NULL)
		h->n_flags--;
	return 0;
bad:
	*error_r = err_setk(ERRK_FOLDER, "cyrus.header: truncated");
	return -1;
}

/* One dlist item: a quoted string, a literal, or an atom (up to a space,
 * without the ')' that close lists; imap/dlist.c, _parseitem()). Returns
 * 1 for a string in *out, 0 for NIL, -1 for malformed input. */
static int
dlist_item(const char **pp, const char *end, struct buf *out)
{
	const char *p = *pp, *sp;

	buf_reset(out);
	if (*p == '"') {
		for (p++; p < end && *p != '"'; p++) {
			if (*p == '\\' && ++p >= end)
				return -1;
			if (buf_append(out, p, 1) < 0)
				return -1;
		}
		if (p >= end)
			return -1;
		*pp = p + 1;
		return 1;
	}
	if (*p == '{') {
		uint64_t n = 0;

		for (p++; p < end && *p >= '0' && *p <= '9'; p++) {
			n = n * 10 + (uint64_t)(*p - '0');
			if (n > (1u << 20))
				return -1;
		}
		if (p < end && *p == '+')
			p++;
		if (end - p < 3 || p[0] != '}' || p[1] != '\r' || p[2] != '\n' ||
		    (uint64_t)(end - p - 3) < n)
			return -1;
		if (buf_append(out, p + 3, (size_t)n) < 0)
			return -1;
		*pp = p + 3 + n;
		return 1;
	}
	for (sp = p; sp < end && *sp != ' ' && *sp != '\r' && *sp != '\n'; sp++)
		;
	while (sp > p && sp[-1] == ')')
		sp--;
	if (sp == p)
		return -1;
	*pp = sp;
	if (sp - p == 3 && memcmp(p, "NIL", 3) == 0)
		return 0;
	return buf_append(out, p, (size_t)(sp - p)) < 0 ? -1 : 1;
}

#define DLIST_DEPTH 8

/* 3.x: one dlist line "%(T el N user.alice I <id> A %(alice lrs..) U (kw
 * ..))" (mailbox.c, mailbox_header_data_cstring(); dlist.c, _parsesax()),
 * parsed with an explicit stack. */
static int
header_parse_dlist(const char *p, const char *end, struct cyrus_header *h,
                   const char **error_r)
{
	struct frame { bool kv, have_key, is_u; char key[4]; } st[DLIST_DEPTH];
	size_t depth = 0;
	struct buf item;
	int r;

	buf_init(&item, 1 << 20);
	if (end - p < 2 || p[0] != '%' || p[1] != '(')
		goto bad;
	memset(&st[0], 0, sizeof(st[0]));
	st[0].kv = true;
	depth = 1;
	p += 2;
	while (depth > 0) {
		struct frame *f = &st[depth - 1];

		while (p < end && *p == ' ')
			p++;
		if (p >= end)
			goto bad;
		if (*p == ')') {
			depth--;
			p++;
			continue;
		}
		if (f->kv && !f->have_key) {
			if (dlist_item(&p, end, &item) != 1)
				goto bad;
			f->have_key = true;
			str_copy(f->key, buf_data(&item), sizeof(f->key));
			if (buf_len(&item) >= sizeof(f->key))
				f->key[0] = '\0';   /* a long key: not one we read */
			continue;
		}
		if (*p == '(' || (*p == '%' && end - p >= 2 && p[1] == '(')) {
			bool kv = *p == '%';

			if (depth == DLIST_DEPTH)
				goto bad;
			st[depth].kv = kv;
			st[depth].have_key = false;
			st[depth].is_u = depth == 1 && !kv && strcmp(f->key, "U") == 0;
			st[depth].key[0] = '\0';
			f->have_key = false;
			depth++;
			p += kv ? 2 : 1;
			continue;
		}
		if ((r = dlist_item(&p, end, &item)) < 0)
			goto bad;
		if (depth == 1) {
			char **slot = strcmp(f->key, "N") == 0 ? &h->name :
			              strcmp(f->key, "I") == 0 ? &h->uniqueid :
			              strcmp(f->key, "Q") == 0 ? &h->quotaroot : NULL;

			if (slot != NULL && r == 1) {
				free(*slot);
				*slot = xstrdup(buf_data(&item));
			}
		} else if (f->is_u &&
		           add_flag(h, r == 1 ? buf_data(&item) : NULL,
		                    buf_len(&item), error_r) < 0) {
			buf_free(&item);
			return -1;
		}
		f->have_key = false;
	}
	buf_free(&item);
	while (p < end && (*p == ' ' || *p == '\r' || *p == '\n'))
		p++;
	if (p != end)
		goto bad_trailing;
	while (h->n_flags > 0 && h->flagname[h->n_flags - 1] == NULL)
		h->n_flags--;
	return 0;
bad:
	buf_free(&item);
	*error_r = err_setk(ERRK_FOLDER, "cyrus.header: malformed mailbox data");
	return -1;
bad_trailing:
	*error_r = err_setk(ERRK_FOLDER, "cyrus.header: data after the mailbox data");
	return -1;
}

int
cyrus_header_parse(const char *data, size_t len, struct cyrus_header *h,
                   const char **error_r)
{
	const char *p = data + sizeof(header_magic) - 1, *end = data + len;
	int ret;

	memset(h, 0, sizeof(*h));
	if (len < sizeof(header_magic) - 1 ||
	    memcmp(data, header_magic, sizeof(header_magic) - 1) != 0) {
		*error_r = err_setk(ERRK_FOLDER, "cyrus.header: not a Cyrus mailbox "
		                    "header (bad magic)");
		return -1;
	}
	if (p < end && *p == '%') {
		/* Cyrus cuts at the first LF; a literal ({N+} CRLF) would hold
		 * one, so the dlist is read up to the end of the file */
		ret = header_parse_dlist(p, end, h, error_r);
	} else {
		ret = header_parse_v2(p, end, h, error_r);
	}
	if (ret < 0)
		cyrus_header_free(h);
	return ret;
}

/* --------------------------------------------------------------- index */

static uint32_t
be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t
be64(const unsigned char *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}

/* Per minor version (mailbox.c, mailbox_buf_to_index_header() and
 * mailbox_buf_to_index_record() of 3.6.1; mailbox.h of 2.3.16 and
 * 2.4.17): the header length (its CRC in the last 4 bytes from 12 on),
 * the record size (its CRC in the last 4 bytes from 12 on), where MODSEQ
 * is (0: none). */
struct index_layout {
	uint32_t version, header_len, record_size, modseq_off;
	bool crc;
};

static const struct index_layout layouts[] = {
	{ 9, 96, 80, 72, false },
	{ 10, 96, 88, 80, false },
	{ 12, 128, 96, 80, true },
	{ 13, 128, 104, 80, true },
	{ 14, 160, 104, 80, true },
	{ 15, 160, 104, 80, true },
	{ 16, 160, 112, 80, true },
	{ 17, 160, 112, 80, true },
};

static const struct index_layout *
layout_of(uint32_t version)
{
	for (size_t i = 0; i < N_ELEMENTS(layouts); i++)
		if (layouts[i].version == version)
			return &layouts[i];
	return NULL;
}

bool
cyrus_index_version_known(uint32_t minor_version)
{
	return layout_of(minor_version) != NULL;
}

static uint32_t
crc_of(const unsigned char *p, size_t len)
{
	return (uint32_t)crc32(0L, p, (uInt)len);
}

void
cyrus_index_free(struct cyrus_index *ix)
{
	free(ix->records);
	memset(ix, 0, sizeof(*ix));
}

int
cyrus_index_parse(const unsigned char *data, size_t len, struct cyrus_index *ix,
                  const char **error_r)
{
	const struct index_layout *l;
	uint64_t need;
	uint32_t prev_uid = 0;

	memset(ix, 0, sizeof(*ix));
	if (len < 12) {
		*error_r = err_setk(ERRK_FOLDER, "cyrus.index: truncated (%zu bytes, "
		                    "no version)", len);
		return -1;
	}
	ix->minor_version = be32(data + 8);
	if ((l = layout_of(ix->minor_version)) == NULL) {
		*error_r = err_setk(ERRK_FOLDER, "cyrus.index: unsupported minor "
		                    "version %u (known: 9, 10, 12-17)",
		                    ix->minor_version);
		return -1;
	}
	if (len < l->header_len) {
		*error_r = err_setk(ERRK_FOLDER, "cyrus.index: truncated header (%zu "
		                    "of %u bytes, version %u)", len, l->header_len,
		                    ix->minor_version);
		return -1;
	}
	if (l->crc && crc_of(data, l->header_len - 4) !=
	    be32(data + l->header_len - 4)) {
		*error_r = err_setk(ERRK_FOLDER, "cyrus.index: header checksum "
		                    "mismatch (a torn or damaged copy?)");
		return -1;
	}
	ix->start_offset = be32(data + 12);
	ix->record_size = be32(data + 16);
	ix->num_records = be32(data + 20);
	ix->last_appenddate = be32(data + 24);
	ix->last_uid = be32(data + 28);
	ix->uidvalidity = be32(data + 44);
	ix->highestmodseq = be64(data + 68);
	if (ix->record_size != l->record_size) {
		*error_r = err_setk(ERRK_FOLDER, "cyrus.index: record size %u does "
		                    "not match version %u (%u)", ix->record_size,
		                    ix->minor_version, l->record_size);
		return -1;
	}
	if (ix->start_offset < l->header_len || ix->start_offset > len) {
		*error_r = err_setk(ERRK_FOLDER, "cyrus.index: records start at %u, "
		                    "outside %u..%zu", ix->start_offset,
		                    l->header_len, len);
		return -1;
	}
	need = (uint64_t)ix->start_offset +
	       (uint64_t)ix->num_records * ix->record_size;
	if (need > len) {
		*error_r = err_setk(ERRK_FOLDER, "cyrus.index: %u records need %" PRIu64
		                    " bytes, the file has %zu (truncated)",
		                    ix->num_records, need, len);
		return -1;
	}
	ix->records = xcalloc((size_t)ix->num_records + 1, sizeof(*ix->records));
	for (uint32_t i = 0; i < ix->num_records; i++) {
		const unsigned char *p = data + ix->start_offset +
		                         (size_t)i * ix->record_size;
		struct cyrus_record *r = &ix->records[ix->count];

		if (l->crc && crc_of(p, l->record_size - 4) !=
		    be32(p + l->record_size - 4)) {
			*error_r = err_setk(ERRK_FOLDER, "cyrus.index: record %u: "
			                    "checksum mismatch", i + 1);
			goto fail;
		}
		r->uid = be32(p);
		r->internaldate = be32(p + 4);
		r->size = be32(p + 12);
		r->system_flags = be32(p + 32);
		for (size_t k = 0; k < N_ELEMENTS(r->user_flags); k++)
			r->user_flags[k] = be32(p + 36 + 4 * k);
		r->modseq = be64(p + l->modseq_off);
		if (r->uid <= prev_uid || r->uid > ix->last_uid) {
			*error_r = err_setk(ERRK_FOLDER, "cyrus.index: record %u: UID %u "
			                    "out of order (after %u, last UID %u)", i + 1,
			                    r->uid, prev_uid, ix->last_uid);
			goto fail;
		}
		prev_uid = r->uid;
		if (r->system_flags & (CYRUS_FLAG_EXPUNGED | CYRUS_FLAG_UNLINKED)) {
			ix->n_expunged++;
			continue;
		}
		ix->count++;
	}
	return 0;
fail:
	cyrus_index_free(ix);
	return -1;
}

char *
cyrus_record_flags(const struct cyrus_record *r, const struct cyrus_header *h,
                   bool seen)
{
	static const struct { uint32_t bit; const char *name; } sys[] = {
		{ CYRUS_FLAG_ANSWERED, "\\Answered" },
		{ CYRUS_FLAG_FLAGGED, "\\Flagged" },
		{ CYRUS_FLAG_DELETED, "\\Deleted" },
		{ CYRUS_FLAG_DRAFT, "\\Draft" },
	};
	struct buf b;

	buf_init(&b, 1 << 20);
	if (seen)
		ignore_result(buf_append_str(&b, "\\Seen"));
	for (size_t i = 0; i < N_ELEMENTS(sys); i++)
		if (r->system_flags & sys[i].bit)
			ignore_result(buf_printf(&b, "%s%s", buf_len(&b) ? " " : "",
			                         sys[i].name));
	for (size_t i = 0; i < h->n_flags; i++)
		if (h->flagname[i] != NULL && (r->user_flags[i / 32] >> (i % 32)) & 1)
			ignore_result(buf_printf(&b, "%s%s", buf_len(&b) ? " " : "",
			                         h->flagname[i]));
	return buf_take(&b);
}

/* ---------------------------------------------------------- config files */

static bool
is_cyrusdb_binary(const char *data, size_t len, const char **format_r)
{
	if (len >= 16 && memcmp(data, "\241\002\213\015skiplist file", 16) == 0)
		*format_r = "skiplist";
	else if (len >= 16 && memcmp(data, "\241\002\213\015twoskip file", 16) == 0)
		*format_r = "twoskip";
	else if (len >= 4 && memcmp(data, "\241\002\213\015", 4) == 0)
		*format_r = "binary Cyrus db";
	else
		return false;
	return true;
}

/* Parses "a:b,c,d:e" into ascending ranges; returns false if malformed. */
static bool
parse_uidset(const char *p, const char *end, uint32_t **uids_r, size_t *n_r)
{
	size_t n = 0, alloc = 0;
	uint32_t *v = NULL;

	while (p < end) {
		uint64_t lo, hi;
		const char *q = p;

		while (q < end && *q >= '0' && *q <= '9')
			q++;
		if (!str_to_u64(p, (size_t)(q - p), UINT32_MAX, &lo))
			goto bad;
		hi = lo;
		if (q < end && *q == ':') {
			p = ++q;
			while (q < end && *q >= '0' && *q <= '9')
				q++;
			if (!str_to_u64(p, (size_t)(q - p), UINT32_MAX, &hi))
				goto bad;
			if (hi < lo) {
				uint64_t t = lo;
				lo = hi;
				hi = t;
			}
		}
		if (n + 2 > alloc) {
			alloc = alloc == 0 ? 16 : alloc * 2;
			v = xreallocarray(v, alloc, sizeof(*v));
		}
		v[n++] = (uint32_t)lo;
		v[n++] = (uint32_t)hi;
		if (q < end && *q != ',')
			goto bad;
		p = q < end ? q + 1 : q;
	}
	*uids_r = v;
	*n_r = n / 2;
	return true;
bad:
	free(v);
	return false;
}

int
cyrus_seen_parse(const char *data, size_t len, const char *key,
                 uint32_t **ranges_r, size_t *count_r, const char **error_r)
{
	const char *p = data, *end = data + len, *format;
	size_t klen = strlen(key);

	*ranges_r = NULL;
	*count_r = 0;
	if (is_cyrusdb_binary(data, len, &format)) {
		*error_r = err_setk(ERRK_USAGE, "the seen db is a %s file: convert it "
		                    "to flat text first (cvt_cyrusdb FILE %s NEW flat)",
		                    format, format);
		return -1;
	}
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *v, *set;

		if (eol == NULL)
			eol = end;
		if ((size_t)(eol - p) > klen && memcmp(p, key, klen) == 0 &&
		    p[klen] == '\t') {
			/* "1 lastread lastuid lastchange uidset" (seen_db.c) */
			v = p + klen + 1;
			set = v;
			for (int field = 0; field < 4; field++) {
				set = memchr(set, ' ', (size_t)(eol - set));
				if (set == NULL)
					break;
				set++;
			}
			if (set == NULL || v[0] != '1' || v[1] != ' ' ||
			    !parse_uidset(set, eol, ranges_r, count_r)) {
				*error_r = err_setk(ERRK_FOLDER, "seen db: malformed entry "
				                    "for %s", key);
				return -1;
			}
			return 0;
		}
		p = eol + 1;
	}
	return 0;
}

static char *
name_from_components(const char *p, size_t len, char sep, bool caret)
{
	char *name = xstrndup(p, len);

	for (char *c = name; *c != '\0'; c++) {
		if (*c == sep)
			*c = '/';
		else if (caret && *c == '^')
			*c = '.';
	}
	return name;
}

/* Folder name of an internal name ("user.alice.A^B.C" -> "A.B/C", the
 * user's own "user.alice" -> "INBOX"), or NULL when it is not the user's.
 * A user "alice@example.org" has internal names "example.org!user.alice". */
static char *
folder_of_intname(const char *name, size_t len, const char *user)
{
	const char *at = strchr(user, '@');
	size_t ulen = at != NULL ? (size_t)(at - user) : strlen(user);
	char *prefix;
	size_t plen;
	char *folder = NULL;

	prefix = at != NULL ? xasprintf("%s!user.%.*s", at + 1, (int)ulen, user) :
	                      xasprintf("user.%.*s", (int)ulen, user);
	/* dots in a user name are '^' in internal names */
	for (char *c = prefix + (at != NULL ? strlen(at + 1) + 6 : 5); *c; c++)
		if (*c == '.')
			*c = '^';
	plen = strlen(prefix);
	if (len == plen && memcmp(name, prefix, plen) == 0)
		folder = xstrdup("INBOX");
	else if (len > plen + 1 && memcmp(name, prefix, plen) == 0 && name[plen] == '.')
		folder = name_from_components(name + plen + 1, len - plen - 1, '.', true);
	free(prefix);
	return folder;
}

int
cyrus_subs_parse(const char *data, size_t len, const char *user,
                 char ***names_r, size_t *count_r, const char **error_r)
{
	const char *p = data, *end = data + len, *format;
	bool v3 = len >= 5 && memcmp(data, "\x1fVER\x1f", 5) == 0;
	size_t n = 0, alloc = 8;
	char **names = xcalloc(alloc, sizeof(char *));

	if (is_cyrusdb_binary(data, len, &format)) {
		free(names);
		*error_r = err_setk(ERRK_USAGE, "the subscriptions file is a %s file: "
		                    "convert it to flat text first", format);
		return -1;
	}
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *tab;
		char *folder = NULL;

		if (eol == NULL)
			eol = end;
		tab = memchr(p, '\t', (size_t)(eol - p));
		if (tab == NULL)
			tab = eol;
		if (v3) {
			/* "N" + the name relative to the user: INBOX\x1fA\x1fB
			 * (mboxlist.c, mboxlist_dbname_to_key()) */
			if (tab - p >= 6 && p[0] == 'N' && memcmp(p + 1, "INBOX", 5) == 0 &&
			    (tab - p == 6 || p[6] == '\x1f'))
				folder = tab - p == 6 ? xstrdup("INBOX") :
				         name_from_components(p + 7, (size_t)(tab - p - 7),
				                              '\x1f', false);
		} else if (tab > p) {
			folder = folder_of_intname(p, (size_t)(tab - p), user);
		}
		if (folder != NULL) {
			if (n + 2 > alloc) {
				alloc *= 2;
				names = xreallocarray(names, alloc, sizeof(char *));
			}
			names[n++] = folder;
			names[n] = NULL;
		}
		p = eol + 1;
	}
	*names_r = names;
	*count_r = n;
	return 0;
}

void
cyrus_mbentries_free(struct cyrus_mbentry **entries, size_t count)
{
	for (size_t i = 0; i < count && *entries != NULL; i++) {
		free((*entries)[i].name);
		free((*entries)[i].uniqueid);
		free((*entries)[i].partition);
	}
	free(*entries);
	*entries = NULL;
}

/* The string value of "key": "..." within [p, end) (no escapes beyond
 * \" and \\, enough for names, ids and partitions), or NULL. */
static char *
json_str_field(const char *p, const char *end, const char *key)
{
	char pat[32];
	size_t plen = (size_t)snprintf(pat, sizeof(pat), "\"%s\": \"", key);
	struct buf b;

	for (const char *q = p; q + plen <= end; q++) {
		if (memcmp(q, pat, plen) != 0)
			continue;
		buf_init(&b, 1 << 16);
		for (q += plen; q < end && *q != '"'; q++) {
			if (*q == '\\' && q + 1 < end)
				q++;
			if (buf_append(&b, q, 1) < 0)
				break;
		}
		if (q >= end) {
			buf_free(&b);
			return NULL;
		}
		return buf_take(&b);
	}
	return NULL;
}

int
cyrus_mboxlist_parse(const char *data, size_t len, const char *user,
                     struct cyrus_mbentry **entries_r, size_t *count_r,
                     const char **error_r)
{
	const char *p = data, *end = data + len;
	size_t n = 0, alloc = 16;
	struct cyrus_mbentry *v = xcalloc(alloc, sizeof(*v));
	bool json = false;

	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		char *name, *type, *folder;

		if (eol == NULL)
			eol = end;
		if (eol - p >= 1 && *p == '{')
			json = true;
		if (*p != '"' || (name = json_str_field(p, eol, "name")) == NULL) {
			p = eol + 1;
			continue;
		}
		folder = folder_of_intname(name, strlen(name), user);
		free(name);
		type = json_str_field(p, eol, "mbtype");
		if (folder == NULL || type == NULL ||
		    !(type[0] == 'e' || type[0] == '\0' || type[0] == 'l') ||
		    strpbrk(type, "dmrxi") != NULL) {
			free(folder);
			free(type);
			p = eol + 1;
			continue;
		}
		if (n + 1 >= alloc) {
			alloc *= 2;
			v = xreallocarray(v, alloc, sizeof(*v));
		}
		memset(&v[n], 0, sizeof(v[n]));
		v[n].name = folder;
		v[n].uniqueid = json_str_field(p, eol, "uniqueid");
		v[n].partition = json_str_field(p, eol, "partition");
		v[n].legacy_dirs = strchr(type, 'l') != NULL;
		free(type);
		n++;
		p = eol + 1;
	}
	if (!json) {
		cyrus_mbentries_free(&v, n);
		*error_r = err_setk(ERRK_USAGE, "mailbox list: not a `ctl_mboxlist -d` "
		                    "dump of Cyrus 3.x (JSON)");
		return -1;
	}
	*entries_r = v;
	*count_r = n;
	return 0;
}

char
cyrus_dir_hash(const char *name, bool full)
{
	if (full) {
		uint32_t n = 0;

		for (const unsigned char *p = (const unsigned char *)name;
		     *p != '\0' && *p != '.'; p++)
			n = ((n << 3) ^ (n >> 5)) ^ *p;
		return (char)('A' + n % 23);
	}
	if (name[0] >= 'A' && name[0] <= 'Z')
		return (char)(name[0] - 'A' + 'a');
	return name[0] >= 'a' && name[0] <= 'z' ? name[0] : 'q';
}
