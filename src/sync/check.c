/* check.c: the preflight of a migration and the generated Dovecot
 * configuration (check.h). */
#include "check.h"

#include "json.h"
#include "mutf7.h"
#include "response.h"
#include "target.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The special uses a client configures itself from (CLIENTS.md), in the
 * order findings and configuration list them. */
static const struct {
	unsigned bit;
	const char *name;
} special_uses[] = {
	{ IMAP_MBOX_SENT, "\\Sent" },
	{ IMAP_MBOX_DRAFTS, "\\Drafts" },
	{ IMAP_MBOX_TRASH, "\\Trash" },
	{ IMAP_MBOX_JUNK, "\\Junk" },
	{ IMAP_MBOX_ARCHIVE, "\\Archive" },
};

#define N_SPECIAL (sizeof(special_uses) / sizeof(special_uses[0]))

const char *
check_special_use_name(unsigned bit)
{
	for (size_t i = 0; i < N_SPECIAL; i++)
		if (special_uses[i].bit == bit)
			return special_uses[i].name;
	return NULL;
}

/* ------------------------------------------------------------ helpers */

/* The special-use kinds some folder of the side announces by attribute. */
static unsigned
announced_uses(const struct check_folder *folders, size_t count)
{
	unsigned m = 0;

	for (size_t i = 0; i < count; i++)
		m |= folders[i].attrs & IMAP_MBOX_SPECIAL_USE_MASK;
	return m;
}

/* The special use of a source folder as clients may rely on it: its
 * attribute, else its well-known name (recognized, from foldermap) for a
 * kind no folder announces by attribute. 0: none. */
static unsigned
special_of(unsigned attrs, unsigned recognized, unsigned announced)
{
	unsigned bit = attrs & IMAP_MBOX_SPECIAL_USE_MASK;

	if (bit != 0)
		return bit;
	return (recognized & announced) != 0 ? 0 : recognized;
}

/* A wire name as a client shows it: UTF-8 (modified UTF-7 decoded), or,
 * when it is not valid modified UTF-7, its bytes with control characters
 * as '?'. New string. */
static char *
display_name(const char *wire, size_t len)
{
	struct buf b;
	char *s;

	buf_init(&b, 4 * len + 16);
	if (mutf7_decode(wire, len, &b) == 0 && strlen(buf_data(&b)) == buf_len(&b))
		return buf_take(&b);
	buf_free(&b);
	s = xstrndup(wire, len);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)wire[i] < 0x20 || wire[i] == 0x7f)
			s[i] = '?';
	s[len] = '\0';
	return s;
}

static bool
has_non_bmp(const char *utf8)
{
	for (const unsigned char *p = (const unsigned char *)utf8; *p != '\0'; p++)
		if (*p >= 0xf0)
			return true;
	return false;
}

static bool
strv_has_ci(char *const *v, const char *s)
{
	for (; v != NULL && *v != NULL; v++)
		if (str_ieq(*v, s))
			return true;
	return false;
}

static struct check_finding *
finding_add(struct check_report *r, enum check_severity sev, const char *code,
            const char *remedy, const char *fmt, ...) ATTR_PRINTF(5, 6);

static struct check_finding *
finding_add(struct check_report *r, enum check_severity sev, const char *code,
            const char *remedy, const char *fmt, ...)
{
	struct check_finding *f;
	va_list ap;
	char tmp[1024];

	r->items = xreallocarray(r->items, r->count + 1, sizeof(*r->items));
	f = &r->items[r->count++];
	memset(f, 0, sizeof(*f));
	f->severity = sev;
	f->code = code;
	f->remedy = remedy != NULL ? xstrdup(remedy) : NULL;
	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	f->summary = xstrdup(tmp);
	f->folders = xcalloc(1, sizeof(char *));
	return f;
}

/* Adds a folder line (taken). */
static void
finding_folder_take(struct check_finding *f, char *line)
{
	f->folders = xreallocarray(f->folders, f->n_folders + 2, sizeof(char *));
	f->folders[f->n_folders++] = line;
	f->folders[f->n_folders] = NULL;
}

/* Drops a finding that has no folder after all (the last one). */
static void
finding_drop_if_empty(struct check_report *r, struct check_finding *f)
{
	if (f->n_folders > 0 || f != &r->items[r->count - 1])
		return;
	free(f->summary);
	free(f->remedy);
	free(f->folders);
	r->count--;
}

static const char *
side_prefix(const struct check_side *s)
{
	return s->prefix != NULL ? s->prefix : "";
}

static char *
sep_text(char sep)
{
	return sep == '\0' ? xstrdup("none (flat)") : xasprintf("'%c'", sep);
}

/* The target's folder of this wire name, or NULL. */
static const struct check_folder *
dst_folder(const struct check_side *dst, const char *wire)
{
	for (size_t i = 0; i < dst->count; i++)
		if (strlen(wire) == dst->folders[i].name_len &&
		    (str_ieq(wire, "INBOX") ? str_ieq(dst->folders[i].name, wire) :
		     memcmp(wire, dst->folders[i].name, dst->folders[i].name_len) == 0))
			return &dst->folders[i];
	return NULL;
}

/* --------------------------------------------------------- the checks */

struct ctx {
	const struct check_input *in;
	struct foldermap_result *res;   /* per source folder */
	char **shown;                   /* source names as clients show them */
	struct check_report *r;
};

static bool
mapped(const struct ctx *c, size_t i)
{
	return c->res[i].via != FOLDERMAP_VIA_FAILED && !c->res[i].excluded &&
	       c->res[i].dst_wire != NULL;
}

static void
check_uids(struct ctx *c)
{
	const struct check_input *in = c->in;
	struct check_finding *f;
	uint64_t messages = 0;

	if (in->dst.store != CHECK_STORE_IMAP)
		return;
	f = finding_add(c->r, CHECK_WARNING, "uids",
	                "copy into the new server's Maildir instead (DST "
	                "maildir:PATH[?flavor=courier], the transparent cutover): "
	                "every folder keeps its UIDVALIDITY and every message its UID",
	                "UIDVALIDITY and UIDs will change (an IMAP target chooses "
	                "them): every client throws its cache away and downloads "
	                "every folder again");
	for (size_t i = 0; i < in->src.count; i++) {
		if (!mapped(c, i) || !in->src.folders[i].selectable)
			continue;
		messages += in->src.folders[i].messages;
		finding_folder_take(f, xstrdup(c->shown[i]));
	}
	f->messages = messages;
	finding_drop_if_empty(c->r, f);
}

/* Prefix and separator: the paths clients keep in their settings. */
static void
check_namespace(struct ctx *c)
{
	const struct check_side *src = &c->in->src, *dst = &c->in->dst;
	char *ssep = sep_text(src->separator), *dsep;
	struct check_finding *f;

	if (dst->store == CHECK_STORE_MAILDIR && dst->flavor == MAILDIR_DOVECOT) {
		finding_add(c->r, CHECK_INFO, "namespace",
		            "include the output of 'imapferry dovecot-config SRC' in "
		            "the Dovecot configuration (README: Cutover procedure)",
		            "the Dovecot serving this Maildir must show the source's "
		            "personal namespace: prefix \"%s\", separator %s; otherwise "
		            "clients' folder paths (Sent, Drafts, Trash settings, "
		            "filters) break", side_prefix(src), ssep);
		free(ssep);
		return;
	}
	if (dst->store == CHECK_STORE_MAILDIR) {
		/* Courier-IMAP always shows INBOX. and '.' */
		dsep = xstrdup("'.'");
		if (str_ieq(side_prefix(src), "INBOX.") && src->separator == '.')
			goto out;
		f = finding_add(c->r, CHECK_WARNING, "namespace",
		                "Courier-IMAP cannot show another namespace: tell "
		                "users to choose their Sent, Drafts and Trash folders "
		                "again, or serve the Maildir with Dovecot "
		                "('imapferry dovecot-config SRC')",
		                "folder paths change: personal namespace \"%s\" with "
		                "separator %s on the source, \"INBOX.\" with %s on "
		                "Courier-IMAP: clients' folder settings and filters "
		                "break", side_prefix(src), ssep, dsep);
	} else {
		dsep = sep_text(dst->separator);
		if (str_ieq(side_prefix(src), side_prefix(dst)) &&
		    src->separator == dst->separator)
			goto out;
		f = finding_add(c->r, CHECK_WARNING, "namespace",
		                dst->courier ?
		                "Courier-IMAP cannot show another namespace: tell "
		                "users to choose their folders again" :
		                "make the target show the source's namespace (Dovecot: "
		                "include the output of 'imapferry dovecot-config "
		                "SRC'), or users must choose their Sent, Drafts and "
		                "Trash folders again and fix their filters",
		                "folder paths change: personal namespace \"%s\" with "
		                "separator %s on the source, \"%s\" with %s on the "
		                "target: clients keep folder paths in their settings "
		                "(Thunderbird's Sent, Drafts, Trash folder URIs, "
		                "filters), which break", side_prefix(src), ssep,
		                side_prefix(dst), dsep);
	}
	for (size_t i = 0; i < src->count; i++) {
		char *shown_dst;

		if (!mapped(c, i) || str_ieq(c->res[i].logical, "INBOX") ||
		    c->res[i].note != NULL || c->res[i].via != FOLDERMAP_VIA_IDENTITY)
			continue;
		if (dst->store == CHECK_STORE_MAILDIR) {
			char *dir = display_name(c->res[i].dst_wire,
			                         strlen(c->res[i].dst_wire));
			shown_dst = xasprintf("INBOX.%s", dir);
			free(dir);
		} else {
			shown_dst = display_name(c->res[i].dst_wire,
			                         strlen(c->res[i].dst_wire));
		}
		if (strcmp(shown_dst, c->shown[i]) != 0)
			finding_folder_take(f, xasprintf("%s -> %s", c->shown[i],
			                                 shown_dst));
		free(shown_dst);
	}
	finding_drop_if_empty(c->r, f);
out:
	free(ssep);
	free(dsep);
}

/* Folders the map had to rename, or could not map at all. */
static void
check_renamed(struct ctx *c)
{
	const struct check_side *src = &c->in->src;
	struct check_finding *f, *bad;

	bad = finding_add(c->r, CHECK_ERROR, "name",
	                  "rename the folder on the source, or --exclude it",
	                  "folders that cannot be copied under any name");
	for (size_t i = 0; i < src->count; i++)
		if (c->res[i].via == FOLDERMAP_VIA_FAILED)
			finding_folder_take(bad, xasprintf("%s: %s", c->shown[i],
			                    c->res[i].note != NULL ? c->res[i].note :
			                    "cannot be mapped"));
	finding_drop_if_empty(c->r, bad);
	f = finding_add(c->r, CHECK_WARNING, "name",
	                "choose the new names yourself with --map 'OLD=NEW', and "
	                "tell the users concerned",
	                "folders get another name on the target: clients' "
	                "settings and filters that name them break");
	for (size_t i = 0; i < src->count; i++) {
		char *d;

		if (!mapped(c, i) || c->res[i].note == NULL)
			continue;
		d = display_name(c->res[i].dst_wire, strlen(c->res[i].dst_wire));
		finding_folder_take(f, xasprintf("%s -> %s (%s)", c->shown[i], d,
		                                 c->res[i].note));
		free(d);
	}
	finding_drop_if_empty(c->r, f);
}

/* Names the target cannot hold as mapped. */
static void
check_names(struct ctx *c)
{
	const struct check_side *src = &c->in->src, *dst = &c->in->dst;
	bool courier = dst->courier ||
	    (dst->store == CHECK_STORE_MAILDIR && dst->flavor == MAILDIR_COURIER);
	struct check_finding *f;

	if (courier) {
		f = finding_add(c->r, CHECK_ERROR, "name",
		                "rename these folders on the source, or map them with "
		                "--map 'OLD=NEW' to names within the BMP",
		                "folder names with a character outside Unicode's Basic "
		                "Multilingual Plane (an emoji...): Courier-IMAP then "
		                "fails LIST for the whole account, and clients see no "
		                "folder at all");
		for (size_t i = 0; i < src->count; i++) {
			char *d;

			if (!mapped(c, i))
				continue;
			d = display_name(c->res[i].dst_wire, strlen(c->res[i].dst_wire));
			if (has_non_bmp(d))
				finding_folder_take(f, xstrdup(c->shown[i]));
			free(d);
		}
		finding_drop_if_empty(c->r, f);
	}
	if (dst->store == CHECK_STORE_MAILDIR) {
		f = finding_add(c->r, CHECK_ERROR, "name",
		                "rename these folders on the source, or --map them",
		                "folder names this Maildir (%s) cannot hold",
		                dst->flavor == MAILDIR_COURIER ? "Courier" : "Dovecot");
		for (size_t i = 0; i < src->count; i++) {
			const char *error;
			char *dir;

			if (!mapped(c, i))
				continue;
			if (courier) {
				/* said above, in its own finding */
				char *d = display_name(c->res[i].dst_wire,
				                       strlen(c->res[i].dst_wire));
				bool bmp = !has_non_bmp(d);

				free(d);
				if (!bmp)
					continue;
			}
			if (target_maildir_dirname(c->res[i].dst_wire, dst->flavor,
			                           &dir, &error) < 0)
				finding_folder_take(f, xasprintf("%s: %s", c->shown[i],
				                                 error));
			else
				free(dir);
		}
		finding_drop_if_empty(c->r, f);
	} else {
		f = finding_add(c->r, CHECK_WARNING, "name",
		                "shorten these names on the source, or --map them",
		                "folder names longer than %d bytes: many servers keep "
		                "a folder in one file name and refuse them",
		                CHECK_NAME_MAX);
		for (size_t i = 0; i < src->count; i++)
			if (mapped(c, i) && strlen(c->res[i].dst_wire) > CHECK_NAME_MAX)
				finding_folder_take(f, xstrdup(c->shown[i]));
		finding_drop_if_empty(c->r, f);
	}
	if (!dst->case_insensitive)
		return;
	f = finding_add(c->r, CHECK_ERROR, "name",
	                "rename one of each pair on the source, or --map it",
	                "folders whose names differ only in case: the target "
	                "compares names ignoring case and merges them");
	for (size_t i = 0; i < src->count; i++) {
		if (!mapped(c, i))
			continue;
		for (size_t k = i + 1; k < src->count; k++)
			if (mapped(c, k) &&
			    str_ieq(c->res[i].dst_wire, c->res[k].dst_wire) &&
			    strcmp(c->res[i].dst_wire, c->res[k].dst_wire) != 0)
				finding_folder_take(f, xasprintf("%s and %s", c->shown[i],
				                                 c->shown[k]));
	}
	finding_drop_if_empty(c->r, f);
}

static void
check_special_use(struct ctx *c)
{
	const struct check_side *src = &c->in->src, *dst = &c->in->dst;
	unsigned dst_has = announced_uses(dst->folders, dst->count), missing = 0;
	unsigned announced = announced_uses(src->folders, src->count);
	struct check_finding *f;
	char kinds[128] = "";

	for (size_t i = 0; i < src->count; i++) {
		unsigned bit = special_of(src->folders[i].attrs,
		                          c->res[i].special_use, announced);

		if (mapped(c, i) && (bit & ~dst_has & (IMAP_MBOX_SENT |
		    IMAP_MBOX_DRAFTS | IMAP_MBOX_TRASH | IMAP_MBOX_JUNK |
		    IMAP_MBOX_ARCHIVE)) != 0)
			missing |= bit & ~dst_has;
	}
	if (missing == 0)
		return;
	for (size_t k = 0; k < N_SPECIAL; k++)
		if (missing & special_uses[k].bit)
			snprintf(kinds + strlen(kinds), sizeof(kinds) - strlen(kinds),
			         "%s%s", kinds[0] != '\0' ? " " : "", special_uses[k].name);
	if (dst->store == CHECK_STORE_MAILDIR) {
		f = finding_add(c->r, CHECK_INFO, "special-use",
		                dst->flavor == MAILDIR_DOVECOT ?
		                "include the output of 'imapferry dovecot-config SRC' "
		                "(mailbox blocks with special_use)" :
		                "check that Courier-IMAP announces them "
		                "(its folder names INBOX.Sent, INBOX.Drafts, INBOX.Trash)",
		                "the server serving this Maildir must announce the "
		                "special use of these folders (%s), or new accounts "
		                "in Thunderbird, Apple Mail and K-9 pick or create "
		                "other folders", kinds);
	} else {
		f = finding_add(c->r, CHECK_WARNING, "special-use",
		                "announce them on the target (Dovecot: mailbox blocks "
		                "with special_use, see 'imapferry dovecot-config SRC'; "
		                "or CREATE-SPECIAL-USE)",
		                "the target announces %s for %s: Thunderbird, Apple "
		                "Mail and K-9 configure accounts from special-use "
		                "folders and pick or create other folders (Apple Mail "
		                "creates \"Sent Messages\")", dst_has == 0 ?
		                "no special-use folder at all" : "no special-use folder",
		                kinds);
	}
	for (size_t i = 0; i < src->count; i++) {
		unsigned bit = special_of(src->folders[i].attrs,
		                          c->res[i].special_use, announced) & missing;

		for (size_t k = 0; k < N_SPECIAL && mapped(c, i); k++)
			if (bit & special_uses[k].bit)
				finding_folder_take(f, xasprintf("%s (%s%s)", c->shown[i],
				                    special_uses[k].name,
				                    (src->folders[i].attrs & bit) ? "" :
				                    ", by its name"));
	}
}

static void
check_appendlimit(struct ctx *c)
{
	const struct check_side *src = &c->in->src, *dst = &c->in->dst;
	struct check_finding *f;
	uint64_t total = 0, largest = 0;

	if (dst->store != CHECK_STORE_IMAP || dst->appendlimit == 0)
		return;
	f = finding_add(c->r, CHECK_ERROR, "appendlimit",
	                "raise the target's limit, or copy into its Maildir "
	                "(maildir:PATH), which has none",
	                "messages larger than the target's APPENDLIMIT (%" PRIu64
	                " bytes) will be refused", dst->appendlimit);
	for (size_t i = 0; i < src->count; i++) {
		uint64_t n = 0;

		if (!mapped(c, i))
			continue;
		for (size_t k = 0; k < src->folders[i].n_sizes; k++)
			if (src->folders[i].sizes[k] > dst->appendlimit) {
				n++;
				if (src->folders[i].sizes[k] > largest)
					largest = src->folders[i].sizes[k];
			}
		if (n > 0)
			finding_folder_take(f, xasprintf("%s: %" PRIu64 " message%s",
			                                 c->shown[i], n, n > 1 ? "s" : ""));
		total += n;
	}
	f->messages = total;
	if (total > 0) {
		char *s = xasprintf("%s; the largest has %" PRIu64 " bytes",
		                    f->summary, largest);

		free(f->summary);
		f->summary = s;
	}
	finding_drop_if_empty(c->r, f);
}

static void
check_keywords(struct ctx *c)
{
	const struct check_side *src = &c->in->src, *dst = &c->in->dst;
	struct check_finding *f;

	if (dst->store == CHECK_STORE_MAILDIR) {
		if (dst->flavor != MAILDIR_DOVECOT)
			return;
		f = finding_add(c->r, CHECK_WARNING, "keywords",
		                "give copy/run --dst-imap the Dovecot that serves "
		                "the Maildir (the others are set in its index), "
		                "or remove unused keywords on the source, or use a "
		                "Courier Maildir (?flavor=courier) or an IMAP target",
		                "folders with more than %d keywords: a Dovecot Maildir "
		                "keeps at most %d per folder (the letters a..z), the "
		                "others are dropped", CHECK_DOVECOT_KEYWORDS_MAX,
		                CHECK_DOVECOT_KEYWORDS_MAX);
		for (size_t i = 0; i < src->count; i++) {
			size_t n = 0;

			if (!mapped(c, i))
				continue;
			for (char *const *k = src->folders[i].keywords; k && *k; k++)
				n++;
			if (n > CHECK_DOVECOT_KEYWORDS_MAX)
				finding_folder_take(f, xasprintf("%s: %zu keywords",
				                                 c->shown[i], n));
		}
		finding_drop_if_empty(c->r, f);
		return;
	}
	f = finding_add(c->r, CHECK_WARNING, "keywords",
	                "allow keywords on the target folder (PERMANENTFLAGS \\*), "
	                "or copy into its Maildir (maildir:PATH)",
	                "keywords the target's PERMANENTFLAGS refuse: they are "
	                "lost on the copies, and clients lose their tags and labels");
	for (size_t i = 0; i < src->count; i++) {
		const struct check_folder *df;
		char *const *perm;
		struct buf lost;
		bool any = false;

		if (!mapped(c, i) || src->folders[i].keywords == NULL)
			continue;
		df = dst_folder(dst, c->res[i].dst_wire);
		perm = df != NULL && df->permanentflags != NULL ? df->permanentflags :
		       dst->permanentflags;
		if (perm == NULL || strv_has_ci(perm, "\\*"))
			continue;
		buf_init(&lost, 4096);
		for (char *const *k = src->folders[i].keywords; *k != NULL; k++) {
			if (strv_has_ci(perm, *k))
				continue;
			if (buf_printf(&lost, "%s%s", any ? " " : "", *k) < 0)
				break;
			any = true;
		}
		if (any)
			finding_folder_take(f, xasprintf("%s: %s%s", c->shown[i],
			                    buf_data(&lost), df != NULL &&
			                    df->permanentflags != NULL ? "" :
			                    " (as INBOX's PERMANENTFLAGS)"));
		buf_free(&lost);
	}
	finding_drop_if_empty(c->r, f);
}

static void
check_pop3(struct ctx *c)
{
	const struct check_input *in = c->in;
	bool keeps = in->dst.store == CHECK_STORE_MAILDIR &&
	             in->dst.flavor == MAILDIR_DOVECOT;

	if (in->src_pop3 != NULL && !keeps) {
		finding_add(c->r, CHECK_WARNING, "pop3",
		            "copy into the new server's Dovecot Maildir with "
		            "--src-pop3: the UIDLs are stored in dovecot-uidlist and "
		            "Dovecot serves them",
		            "the source serves POP3 (%s): the UIDLs POP3 clients "
		            "remember will change and they download every message "
		            "again", in->src_pop3);
	} else if (in->src_pop3 == NULL) {
		finding_add(c->r, CHECK_INFO, "pop3",
		            keeps ? "give the source's POP3 URL with --src-pop3 "
		            "pop3://USER@HOST to copy and check" :
		            "copy into the new server's Dovecot Maildir with "
		            "--src-pop3 pop3://USER@HOST",
		            "if the source serves POP3, the UIDLs POP3 clients "
		            "remember change unless they are kept; POP3 clients then "
		            "download every message again");
	}
}

static void
check_host(struct ctx *c)
{
	const struct check_input *in = c->in;
	char *remedy;

	if (in->src.host == NULL)
		return;
	if (in->dst.host != NULL && str_ieq(in->src.host, in->dst.host))
		return;
	remedy = xasprintf("keep the host name clients use: move the DNS name "
	                   "%s to the new server at the switch", in->src.host);
	finding_add(c->r, CHECK_INFO, "host", remedy,
	            "clients are configured for %s: some download everything "
	            "again when the host name in their settings changes",
	            in->src.host);
	free(remedy);
}

void
check_analyze(const struct check_input *in, struct foldermap *fm,
              struct check_report *r)
{
	struct foldermap_input *fin;
	struct ctx c = { .in = in, .r = r };
	struct check_finding *sorted;
	size_t n = in->src.count, k = 0;

	memset(r, 0, sizeof(*r));
	/* the target's special folders, as a copy would use them */
	for (size_t i = 0; i < in->dst.count; i++)
		for (size_t s = 0; s < N_SPECIAL; s++)
			if (in->dst.folders[i].attrs & special_uses[s].bit)
				foldermap_set_dst_special(fm, special_uses[s].bit,
				                          in->dst.folders[i].name);
	fin = xcalloc(n + 1, sizeof(*fin));
	c.res = xcalloc(n + 1, sizeof(*c.res));
	c.shown = xcalloc(n + 1, sizeof(*c.shown));
	for (size_t i = 0; i < n; i++) {
		fin[i].wire = in->src.folders[i].name;
		fin[i].len = in->src.folders[i].name_len;
		fin[i].attrs = in->src.folders[i].attrs;
		c.shown[i] = display_name(fin[i].wire, fin[i].len);
	}
	foldermap_map_list(fm, fin, n, c.res);

	check_uids(&c);
	check_namespace(&c);
	check_special_use(&c);
	check_renamed(&c);
	check_names(&c);
	check_appendlimit(&c);
	check_keywords(&c);
	check_pop3(&c);
	check_host(&c);

	/* errors first, then warnings, then infos; stable */
	sorted = xcalloc(r->count + 1, sizeof(*sorted));
	for (int sev = CHECK_ERROR; sev >= CHECK_INFO; sev--)
		for (size_t i = 0; i < r->count; i++)
			if ((int)r->items[i].severity == sev)
				sorted[k++] = r->items[i];
	free(r->items);
	r->items = sorted;
	for (size_t i = 0; i < r->count; i++) {
		switch (r->items[i].severity) {
		case CHECK_ERROR: r->errors++; break;
		case CHECK_WARNING: r->warnings++; break;
		case CHECK_INFO: r->infos++; break;
		}
	}
	for (size_t i = 0; i < n; i++) {
		foldermap_result_free(&c.res[i]);
		free(c.shown[i]);
	}
	free(c.res);
	free(c.shown);
	free(fin);
}

bool
check_report_noticed(const struct check_report *r)
{
	return r->errors > 0 || r->warnings > 0;
}

void
check_report_free(struct check_report *r)
{
	for (size_t i = 0; i < r->count; i++) {
		free(r->items[i].summary);
		free(r->items[i].remedy);
		for (size_t k = 0; k < r->items[i].n_folders; k++)
			free(r->items[i].folders[k]);
		free(r->items[i].folders);
	}
	free(r->items);
	memset(r, 0, sizeof(*r));
}

/* ---------------------------------------------------------- rendering */

static const char *
severity_name(enum check_severity s)
{
	switch (s) {
	case CHECK_ERROR: return "error";
	case CHECK_WARNING: return "warning";
	case CHECK_INFO: break;
	}
	return "info";
}

int
check_render_text(const struct check_report *r, struct buf *out)
{
	for (size_t i = 0; i < r->count; i++) {
		const struct check_finding *f = &r->items[i];

		if (buf_printf(out, "%-7s %s: %s", severity_name(f->severity),
		               f->code, f->summary) < 0)
			return -1;
		if (f->messages > 0 &&
		    buf_printf(out, " (%" PRIu64 " message%s)", f->messages,
		               f->messages > 1 ? "s" : "") < 0)
			return -1;
		if (buf_append_str(out, "\n") < 0)
			return -1;
		for (size_t k = 0; k < f->n_folders; k++)
			if (buf_printf(out, "        - %s\n", f->folders[k]) < 0)
				return -1;
		if (f->remedy != NULL &&
		    buf_printf(out, "        remedy: %s\n", f->remedy) < 0)
			return -1;
	}
	return buf_printf(out, "check: %u error%s, %u warning%s, %u info%s: %s\n",
	                  r->errors, r->errors == 1 ? "" : "s", r->warnings,
	                  r->warnings == 1 ? "" : "s", r->infos,
	                  r->infos == 1 ? "" : "s", check_report_noticed(r) ?
	                  "clients will notice the switch" :
	                  "clients will notice nothing");
}

int
check_render_json(const struct check_report *r, struct buf *out)
{
	struct json j;

	/* the writer does not report a full buffer: give it a large cap */
	json_init(&j, out);
	json_obj_begin(&j);
	json_key(&j, "noticed"); json_bool(&j, check_report_noticed(r));
	json_key(&j, "errors"); json_u64(&j, r->errors);
	json_key(&j, "warnings"); json_u64(&j, r->warnings);
	json_key(&j, "infos"); json_u64(&j, r->infos);
	json_key(&j, "findings");
	json_arr_begin(&j);
	for (size_t i = 0; i < r->count; i++) {
		const struct check_finding *f = &r->items[i];

		json_obj_begin(&j);
		json_key(&j, "severity"); json_str(&j, severity_name(f->severity));
		json_key(&j, "code"); json_str(&j, f->code);
		json_key(&j, "summary"); json_str(&j, f->summary);
		json_key(&j, "folders");
		json_arr_begin(&j);
		for (size_t k = 0; k < f->n_folders; k++)
			json_str(&j, f->folders[k]);
		json_arr_end(&j);
		json_key(&j, "messages"); json_u64(&j, f->messages);
		json_key(&j, "remedy");
		if (f->remedy != NULL)
			json_str(&j, f->remedy);
		else
			json_null(&j);
		json_obj_end(&j);
	}
	json_arr_end(&j);
	json_obj_end(&j);
	return buf_len(out) > 0 ? 0 : -1;
}

/* ------------------------------------------------------ dovecot-config */

/* A Dovecot config string: "..." with '"' and '\' escaped. */
static int
conf_quote(struct buf *out, const char *s)
{
	if (buf_append_str(out, "\"") < 0)
		return -1;
	for (; *s != '\0'; s++) {
		if ((*s == '"' || *s == '\\') && buf_append_str(out, "\\") < 0)
			return -1;
		if (buf_append(out, s, 1) < 0)
			return -1;
	}
	return buf_append_str(out, "\"");
}

int
check_dovecot_config(const struct check_side *src, struct buf *out)
{
	const char *prefix = side_prefix(src);
	struct foldermap_side side = { src->separator, prefix };
	struct foldermap *fm = foldermap_new(&side, &side);
	struct foldermap_input *fin;
	struct foldermap_result *res;
	unsigned announced = announced_uses(src->folders, src->count);
	int ret = -1;

	fin = xcalloc(src->count + 1, sizeof(*fin));
	res = xcalloc(src->count + 1, sizeof(*res));
	for (size_t i = 0; i < src->count; i++) {
		fin[i].wire = src->folders[i].name;
		fin[i].len = src->folders[i].name_len;
		fin[i].attrs = src->folders[i].attrs;
	}
	foldermap_map_list(fm, fin, src->count, res);

	if (buf_printf(out, "# Written by imapferry dovecot-config%s%s: Dovecot then "
	               "shows the migrated\n# Maildir as the old server showed the "
	               "account. Include it after conf.d/\n# (it overrides "
	               "namespace inbox: prefix, separator, special-use folders).\n"
	               "namespace inbox {\n  inbox = yes\n  prefix = %s\n",
	               src->url != NULL ? " " : "", src->url != NULL ? src->url : "",
	               prefix) < 0)
		goto out;
	if (src->separator != '\0' &&
	    buf_printf(out, "  separator = %c\n", src->separator) < 0)
		goto out;
	for (size_t i = 0; i < src->count; i++) {
		unsigned bit = special_of(src->folders[i].attrs, res[i].special_use,
		                          announced);
		char *shown, *name;
		size_t plen = strlen(prefix);

		if (bit == 0 || res[i].logical == NULL ||
		    str_ieq(res[i].logical, "INBOX"))
			continue;
		/* the name in the namespace: as shown, without the prefix */
		shown = display_name(fin[i].wire, fin[i].len);
		name = plen > 0 && strlen(shown) > plen && str_ieqn(shown, prefix, plen) ?
		       shown + plen : shown;
		if (((bit & src->folders[i].attrs) == 0 &&
		     buf_append_str(out, "  # special by its name only:\n") < 0) ||
		    buf_append_str(out, "  mailbox ") < 0 || conf_quote(out, name) < 0 ||
		    buf_append_str(out, " {\n    special_use =") < 0) {
			free(shown);
			goto out;
		}
		for (size_t s = 0; s < N_SPECIAL; s++)
			if ((bit & special_uses[s].bit) &&
			    buf_printf(out, " %s", special_uses[s].name) < 0) {
				free(shown);
				goto out;
			}
		free(shown);
		if (buf_append_str(out, "\n  }\n") < 0)
			goto out;
	}
	if (buf_append_str(out, "}\n"
	    "# POP3: messages copied with --src-pop3 keep the old server's UIDL "
	    "(the P field of\n# dovecot-uidlist, which Dovecot serves before "
	    "this format); new messages get:\n"
	    "pop3_uidl_format = %08Xu%08Xv\n") < 0)
		goto out;
	ret = 0;
out:
	for (size_t i = 0; i < src->count; i++)
		foldermap_result_free(&res[i]);
	free(res);
	free(fin);
	foldermap_free(&fm);
	return ret;
}
