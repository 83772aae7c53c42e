/* foldermap.c: folder names from source to destination (see foldermap.h).
 *
 * Logical names are the pivot: UTF-8, '/' between components, no
 * namespace prefix. Source names are decoded per component, so that one
 * broken component does not spoil its parents, and nothing is dropped
 * on the way in (empty components stay as "//") so that --map and
 * --exclude see the name as it is; all cleaning for the destination
 * happens on the way out, in to_wire(). Every destination name handed
 * out is recorded with its source name in a hash table: that both stops
 * two folders from sharing a destination and makes a repeated call for
 * the same source answer the same. */
#include "foldermap.h"

#include "buf.h"
#include "mutf7.h"
#include "response.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Internal buffers: inputs are bounded (FOLDERMAP_NAME_MAX, LOGICAL_MAX)
 * so that no cleaning step can reach this. */
#define FM_BUF_CAP (16 * 1024 * 1024)
/* Longest logical name accepted: a wire name may triple when escaped. */
#define LOGICAL_MAX (4 * FOLDERMAP_NAME_MAX)
/* Highest "~N" tried before giving up on a name. */
#define SUFFIX_MAX 10000

/* The special uses we redirect; \All and \Flagged are usually virtual. */
#define N_KINDS 5
static const unsigned kinds[N_KINDS] = {
	IMAP_MBOX_SENT, IMAP_MBOX_DRAFTS, IMAP_MBOX_TRASH, IMAP_MBOX_JUNK,
	IMAP_MBOX_ARCHIVE,
};
/* Which bit counts when a folder has several. */
static const unsigned special_order[] = {
	IMAP_MBOX_SENT, IMAP_MBOX_DRAFTS, IMAP_MBOX_TRASH, IMAP_MBOX_JUNK,
	IMAP_MBOX_ARCHIVE, IMAP_MBOX_ALL, IMAP_MBOX_FLAGGED,
};

/* Top-level names taken as special when a folder has no special-use
 * attribute. Within a kind, earlier names are preferred when a source
 * has several (foldermap_map_list). UTF-8 spelled as escapes. */
static const struct {
	unsigned bit;
	const char *name;
} well_known[] = {
	{ IMAP_MBOX_SENT, "Sent" },
	{ IMAP_MBOX_SENT, "Sent Items" },
	{ IMAP_MBOX_SENT, "Sent Messages" },
	{ IMAP_MBOX_SENT, "Sent Mail" },
	{ IMAP_MBOX_SENT, "Envoy\xc3\xa9s" },
	{ IMAP_MBOX_SENT, "Gesendet" },
	{ IMAP_MBOX_SENT, "Gesendete Elemente" },
	{ IMAP_MBOX_SENT, "Elementos enviados" },
	{ IMAP_MBOX_SENT, "Posta inviata" },
	{ IMAP_MBOX_DRAFTS, "Drafts" },
	{ IMAP_MBOX_DRAFTS, "Draft" },
	{ IMAP_MBOX_DRAFTS, "Brouillons" },
	{ IMAP_MBOX_DRAFTS, "Entw\xc3\xbcrfe" },
	{ IMAP_MBOX_TRASH, "Trash" },
	{ IMAP_MBOX_TRASH, "Deleted Items" },
	{ IMAP_MBOX_TRASH, "Deleted Messages" },
	{ IMAP_MBOX_TRASH, "Corbeille" },
	{ IMAP_MBOX_TRASH, "Papierkorb" },
	{ IMAP_MBOX_TRASH, "Bin" },
	{ IMAP_MBOX_JUNK, "Junk" },
	{ IMAP_MBOX_JUNK, "Spam" },
	{ IMAP_MBOX_JUNK, "Junk E-mail" },
	{ IMAP_MBOX_JUNK, "Junk Email" },
	{ IMAP_MBOX_JUNK, "Courrier ind\xc3\xa9sirable" },
	{ IMAP_MBOX_ARCHIVE, "Archive" },
	{ IMAP_MBOX_ARCHIVE, "Archives" },
};

struct rule {
	bool exact;
	char *old;          /* exact rules: the name to rename */
	regex_t re;         /* regex rules */
	char *repl;         /* NEW, escapes checked at add time */
};

struct claim {
	char *key;          /* destination wire name, INBOX upper-cased; NULL = free slot */
	char *src;          /* source wire name that holds it (INBOX
	                     * upper-cased, as the key) */
	size_t src_len;
};

struct foldermap {
	struct foldermap_side src, dst;   /* prefixes point to the copies below */
	char *src_prefix, *dst_prefix;

	struct rule *rules;
	size_t nrules;
	regex_t *includes, *excludes;
	size_t nincludes, nexcludes;

	char *dst_special[N_KINDS];       /* destination wire names */
	char *src_special[N_KINDS];       /* logical name of the one source
	                                   * folder sent there */
	struct claim *claims;             /* open addressing, power of 2 */
	size_t claims_size, nclaims;
};

static void
put(struct buf *b, const void *p, size_t n)
{
	/* Callers bound their input far below FM_BUF_CAP. */
	if (buf_append(b, p, n) < 0)
		fatal("foldermap: internal name buffer overflow");
}

/* Appends text to the "; "-separated note *note, once. */
static void
note_add(char **note, const char *text)
{
	char *n;

	if (*note == NULL) {
		*note = xstrdup(text);
		return;
	}
	if (strstr(*note, text) != NULL)
		return;
	n = xasprintf("%s; %s", *note, text);
	free(*note);
	*note = n;
}

/* Length of the valid multi-byte UTF-8 sequence at s, or 0 (also for
 * ASCII, which callers treat byte by byte, overlong forms, surrogates,
 * truncation). */
static size_t
utf8_seq_len(const unsigned char *s, size_t len)
{
	uint32_t cp;

	if (s[0] < 0x80)
		return 0;
	return mutf7_utf8_decode((const char *)s, len, &cp);
}

static void
put_hex_escape(struct buf *out, unsigned char c)
{
	static const char hex[] = "0123456789ABCDEF";
	char e[3] = { '_', hex[c >> 4], hex[c & 0x0f] };

	put(out, e, sizeof(e));
}

/* One source component (raw wire bytes) -> logical, appended to out.
 * Invalid modified UTF-7 keeps printable ASCII and valid UTF-8 (some
 * servers store raw 8-bit names) and escapes every other byte as "_XX",
 * which also keeps NUL and control bytes out of logical names. */
static void
component_to_logical(const struct foldermap_side *side, const char *raw,
                     size_t len, struct buf *out, char **note)
{
	const unsigned char *s = (const unsigned char *)raw;
	struct buf tmp;
	const char *d;
	bool slash = false;
	size_t i, n;

	buf_init(&tmp, FM_BUF_CAP);
	if (mutf7_decode(raw, len, &tmp) < 0) {
		buf_reset(&tmp);
		for (i = 0; i < len; ) {
			if (s[i] >= 0x20 && s[i] < 0x7f) {
				put(&tmp, &s[i], 1);
				i++;
			} else if ((n = utf8_seq_len(s + i, len - i)) > 0) {
				put(&tmp, &s[i], n);
				i += n;
			} else {
				put_hex_escape(&tmp, s[i]);
				i++;
			}
		}
		note_add(note, "invalid modified UTF-7 kept as bytes");
	}
	/* '/' is the logical separator: inside a component it must not
	 * create hierarchy. */
	d = buf_data(&tmp);
	for (i = 0; i < buf_len(&tmp); i++) {
		if (d[i] == '/' && side->separator != '/') {
			put(out, "_", 1);
			slash = true;
		} else {
			put(out, &d[i], 1);
		}
	}
	if (slash)
		note_add(note, "'/' in a name component replaced by '_'");
	buf_free(&tmp);
}

int
foldermap_wire_to_logical(const struct foldermap_side *side, const char *wire,
                          size_t len, char **logical_r, char **note_r,
                          const char **error_r)
{
	const char *prefix = side->prefix != NULL ? side->prefix : "";
	size_t plen = strlen(prefix);
	const char *p = wire, *end = wire + len, *c;
	char *note = NULL;
	struct buf out;

	if (len > FOLDERMAP_NAME_MAX) {
		*error_r = err_set("folder name too long (%zu bytes, limit %d)",
		                   len, FOLDERMAP_NAME_MAX);
		return -1;
	}
	buf_init(&out, FM_BUF_CAP);
	if (len == 5 && str_ieqn(wire, "INBOX", 5)) {
		put(&out, "INBOX", 5);
		goto done;
	}
	if (plen > 0 && len >= plen && str_ieqn(wire, prefix, plen)) {
		p += plen;
	} else if (plen == 0 && side->separator != '\0' && len > 5 &&
	    str_ieqn(wire, "INBOX", 5) && wire[5] == side->separator) {
		/* Dovecot "INBOX/foo": stays a child of INBOX. */
		put(&out, "INBOX/", 6);
		p += 6;
	}
	if (side->separator == '\0') {
		component_to_logical(side, p, (size_t)(end - p), &out, &note);
		goto done;
	}
	for (;;) {
		c = memchr(p, side->separator, (size_t)(end - p));
		if (c == NULL)
			c = end;
		component_to_logical(side, p, (size_t)(c - p), &out, &note);
		if (c == end)
			break;
		put(&out, "/", 1);
		p = c + 1;
	}
done:
	*logical_r = buf_take(&out);
	*note_r = note;
	return 0;
}

/* One logical component (n > 0 bytes) made safe for side, appended. */
static void
sanitize_component(const struct foldermap_side *side, const char *s, size_t n,
                   struct buf *out, char **note)
{
	const unsigned char *u = (const unsigned char *)s;
	char text[64];
	size_t i, l;

	/* Names become directories on Maildir targets. */
	if (n == 1 && s[0] == '.') {
		put(out, "_", 1);
		note_add(note, "component '.' renamed '_'");
		return;
	}
	if (n == 2 && s[0] == '.' && s[1] == '.') {
		put(out, "__", 2);
		note_add(note, "component '..' renamed '__'");
		return;
	}
	for (i = 0; i < n; ) {
		if (u[i] < 0x20 || u[i] == 0x7f) {
			put(out, "_", 1);
			note_add(note, "control character replaced by '_'");
			i++;
		} else if (u[i] < 0x80) {
			if (s[i] == side->separator) {
				put(out, "_", 1);
				snprintf(text, sizeof(text),
				         "'%c' in a name component replaced by '_'",
				         side->separator);
				note_add(note, text);
			} else {
				put(out, &s[i], 1);
			}
			i++;
		} else if ((l = utf8_seq_len(u + i, n - i)) > 0) {
			put(out, &s[i], l);
			i += l;
		} else {
			put_hex_escape(out, u[i]);
			note_add(note, "invalid UTF-8 escaped");
			i++;
		}
	}
}

/* Logical -> clean UTF-8 with side's separator (or '_' on a flat side)
 * appended to out. Returns the number of components kept and the length
 * of the first one in *first_len_r. */
static size_t
sanitize_join(const struct foldermap_side *side, const char *logical,
              struct buf *out, size_t *first_len_r, char **note)
{
	char join = side->separator != '\0' ? side->separator : '_';
	const char *p = logical, *c;
	size_t count = 0, n;

	*first_len_r = 0;
	for (;; p = c + 1) {
		c = strchr(p, '/');
		n = c != NULL ? (size_t)(c - p) : strlen(p);
		if (n == 0) {
			note_add(note, "empty name component dropped");
		} else {
			if (count > 0) {
				put(out, &join, 1);
				if (side->separator == '\0')
					note_add(note, "no hierarchy on the destination: "
					         "'/' replaced by '_'");
			}
			sanitize_component(side, p, n, out, note);
			if (count == 0)
				*first_len_r = buf_len(out);
			count++;
		}
		if (c == NULL)
			break;
	}
	return count;
}

/* Logical -> wire for side. bare: a relative name (below a special
 * folder), without the INBOX rule and the prefix. Adds to *note. */
static int
to_wire(const struct foldermap_side *side, const char *logical, bool bare,
        char **wire_r, char **note, const char **error_r)
{
	const char *prefix = side->prefix != NULL ? side->prefix : "";
	struct buf utf8, wire;
	size_t count, first_len;
	bool inbox;

	if (strlen(logical) > LOGICAL_MAX) {
		*error_r = err_set("folder name too long (%zu bytes)", strlen(logical));
		return -1;
	}
	buf_init(&utf8, FM_BUF_CAP);
	count = sanitize_join(side, logical, &utf8, &first_len, note);
	if (count == 0) {
		buf_free(&utf8);
		*error_r = err_set("folder name is empty once empty components are removed");
		return -1;
	}
	inbox = !bare && first_len == 5 && memcmp(buf_data(&utf8), "INBOX", 5) == 0;
	buf_init(&wire, FM_BUF_CAP);
	if (!bare && !inbox)
		put(&wire, prefix, strlen(prefix));
	/* The input is now valid UTF-8 without NUL: only the size can fail. */
	if (mutf7_encode(buf_data(&utf8), buf_len(&utf8), &wire) < 0) {
		buf_free(&utf8);
		buf_free(&wire);
		*error_r = err_set("folder name too long once encoded");
		return -1;
	}
	buf_free(&utf8);
	*wire_r = buf_take(&wire);
	return 0;
}

int
foldermap_logical_to_wire(const struct foldermap_side *side, const char *logical,
                          char **wire_r, char **note_r, const char **error_r)
{
	char *note = NULL;

	if (to_wire(side, logical, false, wire_r, &note, error_r) < 0) {
		free(note);
		return -1;
	}
	*note_r = note;
	return 0;
}

static void
side_copy(struct foldermap_side *to, char **prefix_r, const struct foldermap_side *from)
{
	*prefix_r = xstrdup(from->prefix != NULL ? from->prefix : "");
	to->separator = from->separator;
	to->prefix = *prefix_r;
}

struct foldermap *
foldermap_new(const struct foldermap_side *src, const struct foldermap_side *dst)
{
	struct foldermap *fm = xcalloc(1, sizeof(*fm));

	side_copy(&fm->src, &fm->src_prefix, src);
	side_copy(&fm->dst, &fm->dst_prefix, dst);
	return fm;
}

void
foldermap_free(struct foldermap **fmp)
{
	struct foldermap *fm = *fmp;
	size_t i;

	if (fm == NULL)
		return;
	for (i = 0; i < fm->nrules; i++) {
		if (fm->rules[i].exact)
			free(fm->rules[i].old);
		else
			regfree(&fm->rules[i].re);
		free(fm->rules[i].repl);
	}
	free(fm->rules);
	for (i = 0; i < fm->nincludes; i++)
		regfree(&fm->includes[i]);
	free(fm->includes);
	for (i = 0; i < fm->nexcludes; i++)
		regfree(&fm->excludes[i]);
	free(fm->excludes);
	for (i = 0; i < N_KINDS; i++) {
		free(fm->dst_special[i]);
		free(fm->src_special[i]);
	}
	for (i = 0; i < fm->claims_size; i++) {
		free(fm->claims[i].key);
		free(fm->claims[i].src);
	}
	free(fm->claims);
	free(fm->src_prefix);
	free(fm->dst_prefix);
	free(fm);
	*fmp = NULL;
}

/* ---- rules, include, exclude ---- */

static int
regex_compile(regex_t *re, const char *pattern, int flags, const char *what,
              const char **error_r)
{
	char msg[256];
	int e;

	e = regcomp(re, pattern, REG_EXTENDED | flags);
	if (e != 0) {
		regerror(e, re, msg, sizeof(msg));
		*error_r = err_set("%s '%s': bad regular expression: %s",
		                   what, pattern, msg);
		return -1;
	}
	return 0;
}

int
foldermap_add_rule(struct foldermap *fm, const char *spec, const char **error_r)
{
	struct rule r;
	struct buf old;
	const char *p, *eq = NULL;
	size_t nsub = 0;

	memset(&r, 0, sizeof(r));
	buf_init(&old, FM_BUF_CAP);
	for (p = spec; *p != '\0'; p++) {
		if (p[0] == '\\' && p[1] == '=') {
			put(&old, "=", 1);
			p++;
		} else if (p[0] == '\\' && p[1] != '\0') {
			put(&old, p, 2);
			p++;
		} else if (p[0] == '=') {
			eq = p;
			break;
		} else {
			put(&old, p, 1);
		}
	}
	if (eq == NULL || buf_len(&old) == 0 || eq[1] == '\0') {
		buf_free(&old);
		*error_r = err_set("--map '%s': expected OLD=NEW with both sides "
		                   "non-empty", spec);
		return -1;
	}
	r.exact = strpbrk(buf_data(&old), ".[]()*+?{}|^$\\") == NULL;
	if (!r.exact) {
		if (regex_compile(&r.re, buf_data(&old), 0, "--map", error_r) < 0) {
			buf_free(&old);
			return -1;
		}
		nsub = r.re.re_nsub;
	}
	for (p = eq + 1; *p != '\0'; p++) {
		if (*p != '\\')
			continue;
		p++;
		if (*p == '\\')
			continue;
		if (*p < '0' || *p > '9' || (size_t)(*p - '0') > nsub) {
			if (!r.exact)
				regfree(&r.re);
			if (*p >= '0' && *p <= '9')
				*error_r = err_set("--map '%s': \\%c but OLD has only %zu "
				                   "group(s)", spec, *p, nsub);
			else
				*error_r = err_set("--map '%s': in NEW, '\\' must be "
				                   "followed by a digit or '\\'", spec);
			buf_free(&old);
			return -1;
		}
	}
	r.repl = xstrdup(eq + 1);
	if (r.exact)
		r.old = buf_take(&old);
	buf_free(&old);
	fm->rules = xreallocarray(fm->rules, fm->nrules + 1, sizeof(*fm->rules));
	fm->rules[fm->nrules++] = r;
	return 0;
}

static int
add_pattern(regex_t **list, size_t *n, const char *regex, const char *what,
            const char **error_r)
{
	regex_t re;

	if (regex_compile(&re, regex, REG_NOSUB, what, error_r) < 0)
		return -1;
	*list = xreallocarray(*list, *n + 1, sizeof(**list));
	(*list)[(*n)++] = re;
	return 0;
}

int
foldermap_add_include(struct foldermap *fm, const char *regex, const char **error_r)
{
	return add_pattern(&fm->includes, &fm->nincludes, regex, "--include", error_r);
}

int
foldermap_add_exclude(struct foldermap *fm, const char *regex, const char **error_r)
{
	return add_pattern(&fm->excludes, &fm->nexcludes, regex, "--exclude", error_r);
}

static bool
is_excluded(const struct foldermap *fm, const char *logical)
{
	size_t i;
	bool kept = fm->nincludes == 0;

	for (i = 0; i < fm->nincludes && !kept; i++)
		kept = regexec(&fm->includes[i], logical, 0, NULL, 0) == 0;
	if (!kept)
		return true;
	for (i = 0; i < fm->nexcludes; i++)
		if (regexec(&fm->excludes[i], logical, 0, NULL, 0) == 0)
			return true;
	return false;
}

/* Expands r->repl for logical with matches m[0..9] into *new_r.
 * Returns 0, or -1 if the result is too long. */
static int
rule_expand(const struct rule *r, const char *logical, const regmatch_t *m,
            char **new_r, const char **error_r)
{
	struct buf b;
	const char *p;
	int ret = 0;

	buf_init(&b, LOGICAL_MAX);
	for (p = r->repl; *p != '\0' && ret == 0; p++) {
		if (*p != '\\') {
			ret = buf_append(&b, p, 1);
			continue;
		}
		p++;
		if (*p == '\\') {
			ret = buf_append(&b, p, 1);
		} else {
			const regmatch_t *g = &m[*p - '0'];

			if (g->rm_so >= 0)
				ret = buf_append(&b, logical + g->rm_so,
				                 (size_t)(g->rm_eo - g->rm_so));
		}
	}
	if (ret < 0) {
		buf_free(&b);
		*error_r = err_set("--map result longer than %d bytes", LOGICAL_MAX);
		return -1;
	}
	*new_r = buf_take(&b);
	return 0;
}

/* Returns 1 with *new_r if a rule matches logical, 0 if none, -1 on
 * error. */
static int
rules_apply(const struct foldermap *fm, const char *logical, char **new_r,
            const char **error_r)
{
	size_t len = strlen(logical), i, k;
	regmatch_t m[10];

	for (i = 0; i < fm->nrules; i++) {
		const struct rule *r = &fm->rules[i];

		for (k = 0; k < N_ELEMENTS(m); k++)
			m[k].rm_so = m[k].rm_eo = -1;
		if (r->exact) {
			size_t ol = strlen(r->old);
			char *base;

			if (strncmp(logical, r->old, ol) != 0 ||
			    (logical[ol] != '\0' && logical[ol] != '/'))
				continue;
			m[0].rm_so = 0;
			m[0].rm_eo = (regoff_t)ol;
			if (rule_expand(r, logical, m, &base, error_r) < 0)
				return -1;
			/* Children follow: "Old/x" -> "New/x". */
			*new_r = xasprintf("%s%s", base, logical + ol);
			free(base);
			return 1;
		}
		/* POSIX matching is leftmost-longest: if the whole name can
		 * match, m[0] covers it. Anchoring this way rather than by
		 * wrapping OLD in "^(...)$" keeps an OLD such as "a)|b" from
		 * escaping the anchors. */
		if (regexec(&r->re, logical, N_ELEMENTS(m), m, 0) != 0 ||
		    m[0].rm_so != 0 || (size_t)m[0].rm_eo != len)
			continue;
		if (rule_expand(r, logical, m, new_r, error_r) < 0)
			return -1;
		return 1;
	}
	return 0;
}

/* ---- special use ---- */

void
foldermap_set_dst_special(struct foldermap *fm, unsigned special_use_bit,
                          const char *dst_wire_name)
{
	size_t k;

	for (k = 0; k < N_KINDS; k++) {
		if (kinds[k] == special_use_bit) {
			free(fm->dst_special[k]);
			fm->dst_special[k] = xstrdup(dst_wire_name);
		}
	}
}

static int
kind_index(unsigned bit)
{
	for (int k = 0; k < N_KINDS; k++)
		if (kinds[k] == bit)
			return k;
	return -1;
}

static unsigned
attr_special(unsigned attrs)
{
	for (size_t i = 0; i < N_ELEMENTS(special_order); i++)
		if (attrs & special_order[i])
			return special_order[i];
	return 0;
}

/* Index in well_known[] of a top-level logical name, or -1. */
static int
well_known_index(const char *logical)
{
	if (strchr(logical, '/') != NULL)
		return -1;
	for (size_t i = 0; i < N_ELEMENTS(well_known); i++)
		if (str_ieq(logical, well_known[i].name))
			return (int)i;
	return -1;
}

static unsigned
recognize(const char *logical, unsigned attrs)
{
	unsigned bit = attr_special(attrs);
	int i;

	if (bit != 0)
		return bit;
	i = well_known_index(logical);
	return i >= 0 ? well_known[i].bit : 0;
}

/* The destination wire name under which logical goes because it is the
 * special folder of a kind, or below one (*rest_r: the part below it,
 * "" for the folder itself); NULL if none. The first folder seen for a
 * kind becomes that kind's source folder. */
static const char *
special_target(struct foldermap *fm, const char *logical, unsigned attrs,
               const char **rest_r)
{
	size_t alen;
	const char *s;
	int k;

	k = kind_index(recognize(logical, attrs));
	if (k >= 0) {
		if (fm->src_special[k] == NULL)
			fm->src_special[k] = xstrdup(logical);
		if (strcmp(fm->src_special[k], logical) == 0) {
			*rest_r = "";
			return fm->dst_special[k];
		}
	}
	/* A child: the longest ancestor that is a kind's source folder. */
	for (alen = strlen(logical); alen > 0; alen--) {
		if (logical[alen] != '/')
			continue;
		for (k = 0; k < N_KINDS; k++) {
			s = fm->src_special[k];
			if (s != NULL && strlen(s) == alen &&
			    memcmp(s, logical, alen) == 0) {
				*rest_r = logical + alen + 1;
				return fm->dst_special[k];
			}
		}
	}
	/* A child of a well-known name not seen yet (children may be listed
	 * before their parent). */
	s = strchr(logical, '/');
	if (s != NULL) {
		char *top = xstrndup(logical, (size_t)(s - logical));
		int i = well_known_index(top);

		k = i >= 0 ? kind_index(well_known[i].bit) : -1;
		if (k >= 0 && fm->src_special[k] == NULL) {
			fm->src_special[k] = top;
			*rest_r = s + 1;
			return fm->dst_special[k];
		}
		free(top);
	}
	return NULL;
}

/* ---- destination names already handed out ---- */

static uint64_t
hash_str(const char *s)
{
	uint64_t h = 14695981039346656037ULL;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

/* A copy of name (len bytes, NUL-terminated) with a leading INBOX
 * component upper-cased: INBOX is case-insensitive on every server, and
 * "inbox/x" is "INBOX/x" on those we know. */
static char *
inbox_key(const char *name, size_t len, char separator)
{
	char *key = xmalloc(len + 1);

	memcpy(key, name, len);
	key[len] = '\0';
	if (len >= 5 && str_ieqn(key, "INBOX", 5) &&
	    (len == 5 || (separator != '\0' && key[5] == separator)))
		memcpy(key, "INBOX", 5);
	return key;
}

static struct claim *
claim_slot(struct claim *claims, size_t size, const char *key)
{
	size_t i = (size_t)hash_str(key) & (size - 1);

	while (claims[i].key != NULL && strcmp(claims[i].key, key) != 0)
		i = (i + 1) & (size - 1);
	return &claims[i];
}

/* Takes key and src (src_len bytes). */
static void
claim_add(struct foldermap *fm, char *key, char *src, size_t len)
{
	struct claim *c;
	size_t i;

	if ((fm->nclaims + 1) * 2 > fm->claims_size) {
		size_t nsize = fm->claims_size == 0 ? 64 : fm->claims_size * 2;
		struct claim *n = xcalloc(nsize, sizeof(*n));

		for (i = 0; i < fm->claims_size; i++)
			if (fm->claims[i].key != NULL)
				*claim_slot(n, nsize, fm->claims[i].key) = fm->claims[i];
		free(fm->claims);
		fm->claims = n;
		fm->claims_size = nsize;
	}
	c = claim_slot(fm->claims, fm->claims_size, key);
	c->key = key;
	c->src = src;
	c->src_len = len;
	fm->nclaims++;
}

static char *
with_suffix(const struct foldermap *fm, const char *base, unsigned n)
{
	/* With a prefix, a top-level "INBOX~2" would be outside it. */
	if (fm->dst.prefix[0] != '\0' && str_ieq(base, "INBOX"))
		return xasprintf("%sINBOX~%u", fm->dst.prefix, n);
	return xasprintf("%s~%u", base, n);
}

/* Makes res->dst_wire unique among the names handed out, or confirms
 * that src already holds it. */
static int
claim(struct foldermap *fm, const char *src, size_t len,
      struct foldermap_result *res, const char **error_r)
{
	char *cand = xstrdup(res->dst_wire), *key, text[96];
	char *skey = inbox_key(src, len, fm->src.separator);
	struct claim *c;
	unsigned n = 1;

	for (;;) {
		key = inbox_key(cand, strlen(cand), fm->dst.separator);
		c = fm->claims_size > 0 ? claim_slot(fm->claims, fm->claims_size, key) : NULL;
		if (c == NULL || c->key == NULL) {
			claim_add(fm, key, skey, len);
			skey = NULL;
			break;
		}
		free(key);
		if (c->src_len == len && memcmp(c->src, skey, len) == 0)
			break;
		if (++n > SUFFIX_MAX) {
			*error_r = err_set("no free destination name for '%s'", res->dst_wire);
			free(cand);
			free(skey);
			return -1;
		}
		free(cand);
		cand = with_suffix(fm, res->dst_wire, n);
	}
	free(skey);
	if (n > 1) {
		snprintf(text, sizeof(text),
		         "destination name already used by another folder: "
		         "'~%u' appended", n);
		note_add(&res->note, text);
		free(res->dst_wire);
		res->dst_wire = cand;
	} else {
		free(cand);
	}
	return 0;
}

/* ---- mapping ---- */

/* Everything but uniqueness. On -1, *res may be partly filled. */
static int
compute(struct foldermap *fm, const char *wire, size_t len, unsigned attrs,
        struct foldermap_result *res, const char **error_r)
{
	const char *target, *rest;
	char *renamed = NULL, *below;
	int ret;

	if (foldermap_wire_to_logical(&fm->src, wire, len, &res->logical,
	                              &res->note, error_r) < 0)
		return -1;
	res->special_use = recognize(res->logical, attrs);
	if (is_excluded(fm, res->logical)) {
		res->excluded = true;
		res->via = FOLDERMAP_VIA_EXCLUDED;
		return 0;
	}
	ret = rules_apply(fm, res->logical, &renamed, error_r);
	if (ret < 0)
		return -1;
	if (ret > 0) {
		res->via = FOLDERMAP_VIA_RULE;
		ret = to_wire(&fm->dst, renamed, false, &res->dst_wire,
		              &res->note, error_r);
		free(renamed);
		return ret;
	}
	target = special_target(fm, res->logical, attrs, &rest);
	if (target != NULL) {
		res->via = FOLDERMAP_VIA_SPECIAL;
		if (*rest == '\0') {
			res->dst_wire = xstrdup(target);
			return 0;
		}
		if (to_wire(&fm->dst, rest, true, &below, &res->note, error_r) < 0)
			return -1;
		if (fm->dst.separator == '\0')
			note_add(&res->note, "no hierarchy on the destination: "
			         "'/' replaced by '_'");
		res->dst_wire = xasprintf("%s%c%s", target,
		    fm->dst.separator != '\0' ? fm->dst.separator : '_', below);
		free(below);
		return 0;
	}
	res->via = FOLDERMAP_VIA_IDENTITY;
	return to_wire(&fm->dst, res->logical, false, &res->dst_wire,
	               &res->note, error_r);
}

int
foldermap_map(struct foldermap *fm, const char *src_wire, size_t len,
              unsigned src_attrs, struct foldermap_result *res,
              const char **error_r)
{
	memset(res, 0, sizeof(*res));
	if (compute(fm, src_wire, len, src_attrs, res, error_r) < 0 ||
	    (!res->excluded && claim(fm, src_wire, len, res, error_r) < 0)) {
		foldermap_result_free(res);
		return -1;
	}
	return 0;
}

void
foldermap_result_free(struct foldermap_result *res)
{
	XFREE(res->logical);
	XFREE(res->dst_wire);
	XFREE(res->note);
	memset(res, 0, sizeof(*res));
}

struct list_item {
	size_t idx;
	const struct foldermap_input *in;
	int prio;
};

static int
list_item_cmp(const void *a, const void *b)
{
	const struct list_item *x = a, *y = b;
	size_t n = x->in->len < y->in->len ? x->in->len : y->in->len;
	int c;

	if (x->prio != y->prio)
		return x->prio < y->prio ? -1 : 1;
	c = memcmp(x->in->wire, y->in->wire, n);
	if (c != 0)
		return c;
	if (x->in->len != y->in->len)
		return x->in->len < y->in->len ? -1 : 1;
	/* Same name listed twice: keep the input order. */
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static void
list_fail(struct foldermap_result *res, const char *error)
{
	char *logical = res->logical;

	res->logical = NULL;
	foldermap_result_free(res);
	res->logical = logical;
	res->via = FOLDERMAP_VIA_FAILED;
	res->note = xstrdup(error);
}

/* Chooses each kind's source folder over the whole list (items in byte
 * order): a folder with the attribute, else the well-known name listed
 * first in well_known[]. */
static void
list_choose_specials(struct foldermap *fm, const struct list_item *items,
                     char **logicals, size_t count)
{
	size_t i, k;
	int wi, best_wi;
	const char *best;

	for (i = 0; i < count; i++) {
		int kk = kind_index(attr_special(items[i].in->attrs));

		if (logicals[i] != NULL && kk >= 0 && fm->src_special[kk] == NULL)
			fm->src_special[kk] = xstrdup(logicals[i]);
	}
	for (k = 0; k < N_KINDS; k++) {
		if (fm->src_special[k] != NULL)
			continue;
		best = NULL;
		best_wi = -1;
		for (i = 0; i < count; i++) {
			if (logicals[i] == NULL ||
			    attr_special(items[i].in->attrs) != 0)
				continue;
			wi = well_known_index(logicals[i]);
			if (wi >= 0 && well_known[wi].bit == kinds[k] &&
			    (best == NULL || wi < best_wi)) {
				best = logicals[i];
				best_wi = wi;
			}
		}
		if (best != NULL)
			fm->src_special[k] = xstrdup(best);
	}
}

void
foldermap_map_list(struct foldermap *fm, const struct foldermap_input *in,
                   size_t count, struct foldermap_result *res)
{
	struct list_item *items;
	char **logicals, *note;
	const char *error;
	size_t i;

	if (count == 0)
		return;
	items = xreallocarray(NULL, count, sizeof(*items));
	logicals = xcalloc(count, sizeof(*logicals));
	for (i = 0; i < count; i++) {
		items[i].idx = i;
		items[i].in = &in[i];
		items[i].prio = 0;
	}
	qsort(items, count, sizeof(*items), list_item_cmp);
	for (i = 0; i < count; i++) {
		if (foldermap_wire_to_logical(&fm->src, items[i].in->wire,
		    items[i].in->len, &logicals[i], &note, &error) < 0)
			continue;
		free(note);
		if (is_excluded(fm, logicals[i]))
			XFREE(logicals[i]);
	}
	list_choose_specials(fm, items, logicals, count);
	for (i = 0; i < count; i++)
		free(logicals[i]);
	free(logicals);

	for (i = 0; i < count; i++) {
		struct foldermap_result *r = &res[items[i].idx];

		memset(r, 0, sizeof(*r));
		if (compute(fm, items[i].in->wire, items[i].in->len,
		            items[i].in->attrs, r, &error) < 0)
			list_fail(r, error);
		if (r->via == FOLDERMAP_VIA_FAILED || r->via == FOLDERMAP_VIA_EXCLUDED)
			items[i].prio = 3;
		else if (r->via != FOLDERMAP_VIA_IDENTITY)
			items[i].prio = 0;
		else
			items[i].prio = r->note == NULL ? 1 : 2;
	}
	qsort(items, count, sizeof(*items), list_item_cmp);
	for (i = 0; i < count && items[i].prio < 3; i++) {
		struct foldermap_result *r = &res[items[i].idx];

		if (claim(fm, items[i].in->wire, items[i].in->len, r, &error) < 0)
			list_fail(r, error);
	}
	free(items);
}
