/* target-maildir.c: the Maildir target driver (target.h): a Dovecot or
 * Courier Maildir written directly, keeping every folder's UIDVALIDITY and
 * UIDNEXT and every message's UID (the "transparent cutover"). The Maildir
 * itself is the record of what was copied: its uidlist holds the source's
 * UIDs (keeps_uids).
 *
 * Files go to tmp/ and are published into cur/ with their uidlist lines
 * at commit, under the folder's lock (maildir.h). A UID range of a split
 * folder above UID 1 is copied into a scratch Maildir in the folder's tmp/
 * (".imapferry-stage-<lo>", invisible to the server); the range that
 * completes the cover publishes every staged message into the folder in
 * UID order by hard links (publish()). */
#include "target.h"

#include "copy.h"
#include "log.h"
#include "mailboxes.h"
#include "mutf7.h"
#include "uidset.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define STAGE_PREFIX ".imapferry-stage-"
#define PUBLISH_COMMIT_EVERY 5000

/* Keywords a message could not keep in its file name, to set through the
 * serving Dovecot (spec->dst_imap) once the message is committed. */
struct kw_pending {
	uint32_t uid;
	char *keywords;           /* space-separated, owned: added, or with
	                           * replace the message's whole flag set */
	char *dropped;            /* replace: what the file name lacks, or NULL */
	bool replace;
};

struct md_target {
	struct target t;
	/* --dst-imap: the Dovecot serving the Maildir */
	struct imap_client *imap;
	struct imap_keep *keep;   /* imap's keepalive slot (waits between
	                           * commits), or NULL */
	char *imap_prefix;
	char imap_sep;
	bool imap_failed;
	bool served;              /* md_list() gave the flags as the serving
	                           * Dovecot has them (beyond 26 keywords) */
	struct kw_pending *kw;
	size_t n_kw, kw_alloc;
	/* the open folder */
	struct maildir_folder *f;
	struct maildir_folder *stage; /* a range above UID 1: its scratch folder */
	char *dirname;
	uint32_t uidvalidity;     /* the source's */
	uint32_t lo, hi;
	bool ranged, inbox;
	/* a delivery failed for want of space: deliver nothing more in this
	 * folder, or a later, smaller file would be committed above the
	 * failed UID, which could then never get its UID */
	bool full;
};

static struct md_target *
MT(struct target *t)
{
	return (struct md_target *)t;
}

/* ------------------------------------------------------------ names */

/* Splits a destination wire name ("Archive.2019", '.' separated, no
 * prefix) into the Maildir++ directory name. INBOX is the root. */
static int
dirname_of(const char *wire, char **dirname_r, const char **error_r)
{
	char *dup, *p, *next;
	const char **comps;
	size_t n = 0, alloc = 1;
	int ret;

	if (str_ieq(wire, "INBOX")) {
		*dirname_r = xstrdup("");
		return 0;
	}
	for (p = (char *)wire; *p != '\0'; p++)
		if (*p == '.')
			alloc++;
	comps = xcalloc(alloc + 1, sizeof(*comps));
	dup = xstrdup(wire);
	for (p = dup; p != NULL; p = next) {
		next = strchr(p, '.');
		if (next != NULL)
			*next++ = '\0';
		comps[n++] = p;
	}
	ret = maildir_folder_dirname(comps, n, dirname_r, error_r);
	if (ret < 0)
		*error_r = err_setk(ERRK_FOLDER, "%s", *error_r);
	free(comps);
	free(dup);
	return ret;
}

/* Courier-IMAP 5 keeps folder names on disk in UTF-8 (the directory of
 * INBOX.Listes.&APw-n&AO8-code is ".Listes." + the UTF-8 of "\u00fcn\u00efcode",
 * that of "Beta &- Co" is ".Projects.Beta & Co"), and courierimapsubscribed
 * too: a modified-UTF-7 directory name would be listed literally
 * ("INBOX.Listes.&-APw-n..."). Converts a checked modified-UTF-7 name to
 * that form; refuses what Courier 5 refuses ('/') or cannot be a safe
 * directory name (control characters, too long). */
static int
courier_utf8(const char *mutf7, size_t max, char **out_r, const char **error_r)
{
	struct buf b;

	buf_init(&b, max + 1);
	if (mutf7_decode(mutf7, strlen(mutf7), &b) < 0) {
		buf_free(&b);
		*error_r = err_setk(ERRK_FOLDER, "\"%.100s\": not valid modified "
		                    "UTF-7, or longer than %zu bytes in UTF-8 (Courier "
		                    "5 stores names in UTF-8)", mutf7, max);
		return -1;
	}
	for (size_t i = 0; i < buf_len(&b); i++) {
		unsigned char ch = (unsigned char)buf_data(&b)[i];

		if (ch >= 0xf0) {
			/* Courier-IMAP 5 converts names through UCS-2: a
			 * directory with a character outside the BMP (an
			 * emoji) makes every LIST of the account fail
			 * ("imap_filename_to_foldername ... failed"), so the
			 * user would see no folder at all */
			buf_free(&b);
			*error_r = err_setk(ERRK_FOLDER, "\"%.100s\": a character "
			                    "outside the Basic Multilingual Plane (an "
			                    "emoji?), which Courier-IMAP cannot list: "
			                    "rename the folder with --map", mutf7);
			return -1;
		}
		if (ch < 0x20 || ch == 0x7f || ch == '/') {
			buf_free(&b);
			*error_r = err_setk(ERRK_FOLDER, "\"%.100s\": %s in the name "
			                    "(Courier 5 stores names in UTF-8)", mutf7,
			                    ch == '/' ? "'/'" : "a control character");
			return -1;
		}
	}
	if (buf_len(&b) > max) {
		buf_free(&b);
		*error_r = err_setk(ERRK_FOLDER, "\"%.100s\": longer than %zu bytes "
		                    "in UTF-8", mutf7, max);
		return -1;
	}
	*out_r = buf_take(&b);
	return 0;
}

int
target_maildir_dirname(const char *wire, enum maildir_flavor flavor,
                       char **dirname_r, const char **error_r)
{
	char *d;

	if (dirname_of(wire, &d, error_r) < 0)
		return -1;
	if (flavor == MAILDIR_COURIER && d[0] != '\0') {
		int ret = courier_utf8(d, MAILDIR_DIRNAME_MAX, dirname_r, error_r);

		free(d);
		return ret;
	}
	*dirname_r = d;
	return 0;
}

/* The directory of a folder: root or root/dirname (new string). */
static char *
folder_path(const char *root, const char *dirname)
{
	return dirname[0] == '\0' ? xstrdup(root) :
	    xasprintf("%s/%s", root, dirname);
}

/* The error of a failed Maildir call, of its kind (a full disk stops the
 * run) or else dflt. */
static const char *
md_error(const char *error, enum err_kind dflt)
{
	enum err_kind k = err_kind_of(error);

	if (k == ERRK_OTHER || k == ERRK_NONE)
		return err_setk(dflt, "%s", error);
	return error;
}

static const char *
pop3_uidl_of(const struct target_spec *s, uint32_t uid)
{
	size_t lo = 0, hi = s->pop3_count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->pop3_uids[mid] == uid)
			return s->pop3_uidls[mid];
		if (s->pop3_uids[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* The names of the scratch folders in the folder's tmp/ (maybe none). */
static size_t
stage_names(const char *tmpdir, char ***names_r)
{
	DIR *d = opendir(tmpdir);
	struct dirent *de;
	char **v = NULL;
	size_t n = 0;

	*names_r = NULL;
	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, STAGE_PREFIX, strlen(STAGE_PREFIX)) != 0)
			continue;
		v = xreallocarray(v, n + 1, sizeof(*v));
		v[n++] = xstrdup(de->d_name);
	}
	closedir(d);
	*names_r = v;
	return n;
}

static void
remove_stages(const char *tmpdir, char **names, size_t n)
{
	const char *error;

	for (size_t i = 0; i < n; i++)
		if (maildir_folder_remove(tmpdir, names[i], &error) < 0)
			log_warn("removing the scratch folder: %s", error);
}

static void
free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* Scratch folders of an abandoned split of this folder: its messages
 * were copied directly now. */
static void
remove_all_stages(const char *root, const char *dirname)
{
	char *path = folder_path(root, dirname);
	char *tmpdir = xasprintf("%s/tmp", path);
	char **names;
	size_t n = stage_names(tmpdir, &names);

	remove_stages(tmpdir, names, n);
	free_names(names, n);
	free(tmpdir);
	free(path);
}

/* --------------------------------------------------------- sessions */

static int
md_connect(struct target *t, const char **error_r)
{
	struct stat st;

	/* a root that is not a directory is one error, not one per folder */
	if (stat(t->spec->root, &st) == 0 && !S_ISDIR(st.st_mode)) {
		*error_r = err_setk(ERRK_USAGE, "%s is not a directory",
		                    t->spec->root);
		return -1;
	}
	/* what maildir_folder_create() of a killed run left half built */
	maildir_create_cleanup(t->spec->root);
	return 0;
}

static void
close_folder_handles(struct md_target *mt)
{
	maildir_folder_close(&mt->stage);
	maildir_folder_close(&mt->f);
	XFREE(mt->dirname);
}

static void
md_disconnect(struct target *t)
{
	close_folder_handles(MT(t));
}

static void
md_logout(struct target *t)
{
	close_folder_handles(MT(t));
}

static void
md_setup_foldermap(struct target *t, struct foldermap *fm)
{
	(void)t;
	(void)fm;             /* a Maildir announces no special use */
}

static int
md_folder_name(struct target *t, const char *wire, char **name_r,
               const char **error_r)
{
	return target_maildir_dirname(wire, t->spec->md.flavor, name_r, error_r);
}

static bool
md_folder_exists(struct target *t, const char *name)
{
	char *path = folder_path(t->spec->root, name);
	char *cur = xasprintf("%s/cur", path);
	struct stat st;
	bool r = lstat(cur, &st) == 0 && S_ISDIR(st.st_mode);

	free(cur);
	free(path);
	return r;
}

/* --------------------------------------------------------- folders */

static int
open_stage(struct md_target *mt, const char **error_r)
{
	const struct target_spec *s = mt->t.spec;
	char *path = folder_path(s->root, mt->dirname);
	char *tmpdir = xasprintf("%s/tmp", path);
	char *name = xasprintf(STAGE_PREFIX "%" PRIu32, mt->lo);
	int r;

	r = maildir_folder_open(tmpdir, name, &s->md, true, &mt->stage, error_r);
	if (r == 0 && maildir_folder_uidvalidity(mt->stage) != 0 &&
	    maildir_folder_uidvalidity(mt->stage) != mt->uidvalidity) {
		/* of another UIDVALIDITY: not these messages */
		maildir_folder_close(&mt->stage);
		r = maildir_folder_remove(tmpdir, name, error_r);
		if (r == 0)
			r = maildir_folder_open(tmpdir, name, &s->md, true,
			                        &mt->stage, error_r);
	}
	if (r == 0 && maildir_folder_uidvalidity(mt->stage) == 0)
		r = maildir_folder_set_uids(mt->stage, mt->uidvalidity, 0, error_r);
	if (r < 0)
		*error_r = md_error(err_wrap(*error_r, "scratch folder: %s",
		                             *error_r), ERRK_FOLDER);
	free(name);
	free(tmpdir);
	free(path);
	return r;
}

static int
md_open_folder(struct target *t, const struct target_open *o,
               struct target_folder_info *info, const char **error_r)
{
	struct md_target *mt = MT(t);
	const struct target_spec *s = t->spec;
	bool created = false;
	uint32_t v;

	close_folder_handles(mt);
	memset(info, 0, sizeof(*info));
	mt->dirname = xstrdup(o->name);
	mt->full = false;
	mt->inbox = o->name[0] == '\0';
	mt->ranged = o->uid_lo != 0 || o->uid_hi != 0;
	mt->lo = mt->ranged && o->uid_lo > 1 ? o->uid_lo : 1;
	mt->hi = mt->ranged ? o->uid_hi : UINT32_MAX;
	mt->uidvalidity = o->src_uidvalidity;
	if (o->src_uidvalidity == 0) {
		*error_r = err_setk(ERRK_FOLDER, "the source reports no UIDVALIDITY");
		return -1;
	}
	/* a new folder appears complete, with its uidlist: a server that
	 * lists it meanwhile (or after a kill) cannot number it itself */
	if (!o->dry_run &&
	    maildir_folder_create(s->root, o->name, &s->md, o->src_uidvalidity,
	                          &created, error_r) < 0) {
		*error_r = md_error(*error_r, ERRK_FOLDER);
		return -1;
	}
	if (maildir_folder_open(s->root, o->name, &s->md, !o->dry_run, &mt->f,
	                        error_r) < 0) {
		if (o->dry_run) {
			info->missing = true;
			return 0;
		}
		*error_r = md_error(*error_r, ERRK_FOLDER);
		return -1;
	}
	v = maildir_folder_uidvalidity(mt->f);
	if (!o->dry_run && v != o->src_uidvalidity &&
	    maildir_folder_count(mt->f) == 0 &&
	    maildir_folder_unlisted_count(mt->f) == 0) {
		/* empty, numbered by the server (a login before the copy, or
		 * after a killed one): nothing was ever listed there, take it
		 * over with the source's UIDVALIDITY */
		maildir_folder_close(&mt->f);
		if (maildir_folder_takeover(s->root, o->name, &s->md,
		                            o->src_uidvalidity, error_r) < 0 ||
		    maildir_folder_open(s->root, o->name, &s->md, true, &mt->f,
		                        error_r) < 0) {
			*error_r = md_error(*error_r, ERRK_FOLDER);
			return -1;
		}
		v = maildir_folder_uidvalidity(mt->f);
	}
	if (created)
		info->created = true;
	if (v == 0) {
		/* UIDNEXT is set after the last delivery: a committed N is a
		 * floor for the UIDs that may follow */
		if (!o->dry_run &&
		    maildir_folder_set_uids(mt->f, o->src_uidvalidity, 0, error_r) < 0) {
			*error_r = md_error(*error_r, ERRK_FOLDER);
			return -1;
		}
		info->created = true;
	} else if (v != o->src_uidvalidity) {
		*error_r = err_setk(ERRK_FOLDER, "the Maildir folder %s has "
		    "UIDVALIDITY %" PRIu32 " but the source %" PRIu32 ": its UIDs "
		    "cannot be kept (move the Maildir folder away to copy it again)",
		    o->name[0] != '\0' ? o->name : "INBOX", v, o->src_uidvalidity);
		return -1;
	}
	info->uidvalidity = o->src_uidvalidity;
	info->uidnext = maildir_folder_uidnext(mt->f);
	info->exists = (uint32_t)maildir_folder_count(mt->f);
	/* files of an interrupted run are settled against the whole folder
	 * (md_list), not window by window */
	info->whole = mt->lo == 1 && maildir_folder_unlisted_count(mt->f) > 0;
	/* a range above UID 1 copies into its scratch folder */
	if (mt->lo > 1 && !o->dry_run && open_stage(mt, error_r) < 0)
		return -1;
	return 0;
}

static bool
md_needs_meta(struct target *t, uint32_t check_from)
{
	struct md_target *mt = MT(t);
	size_t n = maildir_folder_count(mt->f);

	/* sizes and dates only when unlisted files need matching or
	 * messages need checking */
	return maildir_folder_unlisted_count(mt->f) > 0 ||
	       (n > 0 && maildir_folder_uid(mt->f, n - 1) >= check_from);
}

struct adopt {
	char *base;               /* the unlisted file's base name */
	uint32_t uid;             /* its source message, if one */
	size_t candidates;        /* source messages it could be */
};

static int
cmp_adopt(const void *a, const void *b)
{
	const struct adopt *x = a, *y = b;

	return x->uid < y->uid ? -1 : x->uid > y->uid;
}

/* Files an interrupted run moved into cur/ without listing them: each is
 * matched against the source by INTERNALDATE and size. One match: adopted
 * with that message's UID. Several, or a UID that can no longer be placed
 * or is listed already: removed (copied again). None: not ours (an MDA
 * delivered it), left for the server to number. The matches are decided
 * first and adopted in UID order: adopting a higher UID first raises the
 * folder's floor above the lower ones, which could then never be placed
 * (found by a kill -9 of run in test_cyrus_run). */
static int
adopt_unlisted(struct md_target *mt, const struct msgsum_list *src,
               const char **error_r)
{
	struct maildir_folder *f = mt->f;
	size_t n = maildir_folder_unlisted_count(f), adopted = 0, removed = 0;
	struct adopt *v = xcalloc(n + 1, sizeof(*v));
	struct maildir_msg *u = xmalloc(sizeof(*u));
	const char *error;
	int ret = 0;

	for (size_t i = 0; i < n; i++) {
		if (!maildir_folder_unlisted(f, i, u)) {
			v[i].base = xstrdup("");
			continue;
		}
		v[i].base = xstrdup(u->base);
		for (size_t k = 0; k < src->count; k++) {
			const struct msgsum *s = &src->items[k];

			if (s->internaldate != u->mtime ||
			    maildir_folder_find(f, s->uid, NULL))
				continue;
			if (u->size != MAILDIR_SIZE_UNKNOWN && u->size != s->size &&
			    u->file_size != s->size)
				continue;
			v[i].uid = s->uid;
			v[i].candidates++;
		}
	}
	qsort(v, n, sizeof(*v), cmp_adopt);
	for (size_t j = 0; j < n && ret == 0; j++) {
		size_t i, m = maildir_folder_unlisted_count(f);

		if (v[j].candidates == 0)
			continue;
		for (i = 0; i < m; i++)
			if (maildir_folder_unlisted(f, i, u) &&
			    strcmp(u->base, v[j].base) == 0)
				break;
		if (i == m)
			continue;       /* gone meanwhile (the server took it) */
		if (v[j].candidates == 1 && v[j].uid >= maildir_folder_min_uid(f) &&
		    !maildir_folder_find(f, v[j].uid, NULL) &&
		    maildir_unlisted_adopt(f, i, v[j].uid, &error) == 0) {
			adopted++;
			continue;
		}
		if (maildir_unlisted_expunge(f, i, error_r) < 0) {
			*error_r = md_error(*error_r, ERRK_FOLDER);
			ret = -1;
			break;
		}
		removed++;
	}
	for (size_t i = 0; i < n; i++)
		free(v[i].base);
	free(v);
	free(u);
	if (adopted + removed > 0)
		log_info("%s: %zu files of an interrupted run adopted, %zu removed "
		         "to be copied again", maildir_folder_name(f), adopted,
		         removed);
	return ret;
}

/* Keywords clients act on, given Dovecot's 26 file-name letters first:
 * junk filters, forwarding and receipts, Thunderbird's labels. */
static const char *const well_known_keywords[] = {
	"$Junk", "$NotJunk", "Junk", "NonJunk", "$Forwarded", "$MDNSent",
	"$Phishing", "$Label1", "$Label2", "$Label3", "$Label4", "$Label5",
};

struct kw_count {
	char *name;
	size_t count;
	int rank;                 /* index in well_known_keywords, or -1 */
};

static int
cmp_kw_count(const void *a, const void *b)
{
	const struct kw_count *x = a, *y = b;

	if ((x->rank >= 0) != (y->rank >= 0))
		return x->rank >= 0 ? -1 : 1;
	if (x->rank >= 0)
		return x->rank - y->rank;
	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* Plans the folder's keyword letters from what the source's messages
 * carry: the well-known keywords first, then by how many messages use
 * them, so that past 26 the least used ones are those set through
 * --dst-imap (or reported). */
static void
plan_keywords(struct maildir_folder *f, const struct msgsum_list *src)
{
	struct kw_count *v = NULL;
	const char **names;
	size_t n = 0;

	if (f == NULL || src == NULL)
		return;
	for (size_t i = 0; i < src->count; i++) {
		const char *p = src->items[i].flags != NULL ? src->items[i].flags : "";

		while (*p != '\0') {
			size_t len = strcspn(p, " "), k;

			if (len > 0 && p[0] != '\\') {
				for (k = 0; k < n; k++)
					if (strlen(v[k].name) == len &&
					    str_ieqn(v[k].name, p, len))
						break;
				if (k == n) {
					v = xreallocarray(v, n + 1, sizeof(*v));
					v[n].name = xstrndup(p, len);
					v[n].count = 0;
					v[n].rank = -1;
					for (size_t w = 0; w < N_ELEMENTS(well_known_keywords); w++)
						if (str_ieq(v[n].name, well_known_keywords[w]))
							v[n].rank = (int)w;
					n++;
				}
				v[k].count++;
			}
			p += len;
			p += strspn(p, " ");
		}
	}
	if (n == 0)
		return;
	qsort(v, n, sizeof(*v), cmp_kw_count);
	names = xcalloc(n, sizeof(*names));
	for (size_t i = 0; i < n; i++)
		names[i] = v[i].name;
	maildir_folder_plan_keywords(f, names, n);
	for (size_t i = 0; i < n; i++)
		free(v[i].name);
	free(names);
	free(v);
}

static bool kw_route(const struct md_target *mt);
static bool served_flags(struct md_target *mt, uint32_t lo, uint32_t hi,
                         struct msgsum_list *list);

/* UID uid's flags: as the serving Dovecot has them when served lists
 * them, else its own (from the file name). */
static const char *
flags_of(uint32_t uid, const char *own, const struct msgsum_list *served)
{
	const struct msgsum *x = msgsum_find(served, uid);

	return x != NULL ? x->flags : own;
}

static void
add_msg(struct state_msg *out, char **strings, const struct maildir_msg *m,
        const struct msgsum_list *src, const char *flags)
{
	const struct msgsum *s = src != NULL ? msgsum_find(src, m->uid) : NULL;
	size_t len = strlen(flags) + 1;

	out->src_uid = out->dst_uid = m->uid;
	/* in the array's own allocation, as state_msgs_load() gives them
	 * (state_msgs_free() frees both) */
	memcpy(*strings, flags, len);
	out->flags = *strings;
	*strings += len;
	out->internaldate = m->mtime;
	/* the size as the source counts it when either of ours matches
	 * (Courier stores LF: the file is shorter than RFC822.SIZE) */
	out->size = s != NULL && (m->size == s->size || m->file_size == s->size) ?
	            s->size : m->size;
}

/* The index of f's first message at or above uid (messages are sorted by
 * UID): a window's listing starts there. */
static size_t
first_at(struct maildir_folder *f, size_t n, uint32_t uid)
{
	size_t a = 0, b = n;

	while (a < b) {
		size_t m = a + (b - a) / 2;

		if (maildir_folder_uid(f, m) < uid)
			a = m + 1;
		else
			b = m;
	}
	return a;
}

static int
md_list(struct target *t, const struct msgsum_list *src, bool settle,
        uint32_t lo, uint32_t hi, struct state_msg **msgs_r, size_t *n_r,
        const char **error_r)
{
	struct md_target *mt = MT(t);
	size_t nf, ns, n = 0, i = 0, k = 0, bytes = 0, c_total = 0;
	struct msgsum_list served = { 0 };
	struct state_msg *v;
	struct maildir_msg *ma, *mb;
	char *strings, *strings_end;

	/* files a crashed run delivered but did not list */
	if (settle && mt->lo == 1 && maildir_folder_unlisted_count(mt->f) > 0 &&
	    adopt_unlisted(mt, src, error_r) < 0)
		return -1;
	ma = xmalloc(sizeof(*ma));
	mb = xmalloc(sizeof(*mb));
	if (settle) {
		plan_keywords(mt->f, src);
		plan_keywords(mt->stage, src);
	}
	if (lo < mt->lo)
		lo = mt->lo;
	if (hi > mt->hi)
		hi = mt->hi;
	/* the window's records only: the first at or above lo, by UID */
	nf = maildir_folder_count(mt->f);
	ns = mt->stage != NULL ? maildir_folder_count(mt->stage) : 0;
	i = first_at(mt->f, nf, lo);
	k = mt->stage != NULL ? first_at(mt->stage, ns, lo) : 0;
	/* with --dst-imap the flags as Dovecot serves them: keywords beyond
	 * the file names' 26 are in its index only */
	mt->served = kw_route(mt) && i < nf && maildir_folder_uid(mt->f, i) <= hi &&
	             served_flags(mt, lo, hi, &served);
	{
		size_t c = 0;

		/* sizing from the records alone: reading each name back twice
		 * made an incremental pass over 1,000,000 messages 30 % slower */
		for (size_t j = i; j < nf && maildir_folder_uid(mt->f, j) <= hi; j++, c++)
			bytes += strlen(flags_of(maildir_folder_uid(mt->f, j),
			                         maildir_folder_flags(mt->f, j), &served)) + 1;
		for (size_t j = k; j < ns && maildir_folder_uid(mt->stage, j) <= hi; j++, c++)
			bytes += strlen(maildir_folder_flags(mt->stage, j)) + 1;
		c_total = c;
		v = xcalloc(1, (c + 1) * sizeof(*v) + bytes);
		strings = (char *)(v + c + 1);
		strings_end = strings + bytes;
	}
	/* the folder's messages in the window, and the scratch folder's
	 * (copied by an earlier attempt of this range): both by UID */
	while (i < nf || k < ns) {
		const struct maildir_msg *a = i < nf && maildir_folder_msg(mt->f, i, ma) ?
		                              ma : NULL;
		const struct maildir_msg *b = k < ns && maildir_folder_msg(mt->stage, k, mb) ?
		                              mb : NULL;

		if (a == NULL && i < nf) {
			i++;    /* unreadable (warned): skipped */
			continue;
		}
		if (b == NULL && k < ns) {
			k++;
			continue;
		}

		if (a != NULL && a->uid > hi) {
			a = NULL;
			i = nf;
		}
		if (b != NULL && b->uid > hi) {
			b = NULL;
			k = ns;
		}
		if (a == NULL && b == NULL)
			break;
		{
			const struct maildir_msg *pick;
			const char *fl;

			if (b != NULL && (a == NULL || b->uid < a->uid)) {
				pick = b;
				fl = b->flags;
				k++;
			} else {
				pick = a;
				fl = flags_of(a->uid, a->flags, &served);
				if (b != NULL && b->uid == a->uid)
					k++;
				i++;
			}
			/* the flags were counted above; a message read back
			 * only now does not overflow them */
			if (n <= c_total && (size_t)(strings_end - strings) > strlen(fl))
				add_msg(&v[n++], &strings, pick, src, fl);
		}
	}
	msgsum_list_free(&served);
	free(ma);
	free(mb);
	*msgs_r = v;
	*n_r = n;
	return 0;
}

static void
md_expect_keywords(struct target *t, char *const *names)
{
	struct md_target *mt = MT(t);
	const char *wk[N_ELEMENTS(well_known_keywords)];
	size_t n = 0;

	if (names == NULL)
		return;
	/* the well-known ones in their rank; the others by their count,
	 * window by window (plan_keywords) */
	for (size_t w = 0; w < N_ELEMENTS(well_known_keywords); w++)
		for (size_t i = 0; names[i] != NULL; i++)
			if (str_ieq(names[i], well_known_keywords[w])) {
				wk[n++] = names[i];
				break;
			}
	if (n == 0)
		return;
	if (mt->f != NULL)
		maildir_folder_plan_keywords(mt->f, wk, n);
	if (mt->stage != NULL)
		maildir_folder_plan_keywords(mt->stage, wk, n);
}

static bool
md_can_place(struct target *t, uint32_t uid, char **why_r)
{
	struct md_target *mt = MT(t);

	if (uid >= maildir_folder_min_uid(mt->f))
		return true;
	*why_r = xasprintf("UID %" PRIu32 " is below the Maildir folder's UIDNEXT "
	                   "%" PRIu32 " (expunged on the target?): it cannot keep "
	                   "its UID", uid, maildir_folder_min_uid(mt->f));
	return false;
}

/* What the folder's file names can show: md_list() lists nothing more. */
static char *
md_storable_flags(struct target *t, const char *flags)
{
	struct md_target *mt = MT(t);

	if (mt->f == NULL || mt->served)
		return xstrdup(flags != NULL ? flags : "");
	return maildir_folder_storable_flags(mt->f, flags);
}

/* -------------------------------------------------------- delivery */

/* Keywords uid could not keep in its file name: through the Dovecot that
 * serves the Maildir after the commit, or reported as dropped. */
static void
kw_dropped(struct md_target *mt, uint32_t uid, const char *dropped)
{
	struct kw_pending *k;

	if (mt->t.spec->dst_imap == NULL || mt->t.spec->md.flavor != MAILDIR_DOVECOT) {
		mt->t.sink.dropped(mt->t.sink.ctx, uid, dropped);
		return;
	}
	if (mt->n_kw == mt->kw_alloc) {
		mt->kw_alloc = mt->kw_alloc == 0 ? 64 : mt->kw_alloc * 2;
		mt->kw = xreallocarray(mt->kw, mt->kw_alloc, sizeof(*mt->kw));
	}
	k = &mt->kw[mt->n_kw++];
	k->uid = uid;
	k->keywords = xstrdup(dropped);
	k->dropped = NULL;
	k->replace = false;
}

/* True when keywords beyond the file names' 26 go through the serving
 * Dovecot (--dst-imap). */
static bool
kw_route(const struct md_target *mt)
{
	return mt->t.spec->dst_imap != NULL &&
	       mt->t.spec->md.flavor == MAILDIR_DOVECOT && !mt->imap_failed;
}

/* A message's changed flags through the serving Dovecot after the commit
 * (UID STORE FLAGS: keywords beyond the letters added and removed). */
static void
kw_replace(struct md_target *mt, uint32_t uid, const char *flags,
           const char *dropped)
{
	struct kw_pending *k;

	if (mt->n_kw == mt->kw_alloc) {
		mt->kw_alloc = mt->kw_alloc == 0 ? 64 : mt->kw_alloc * 2;
		mt->kw = xreallocarray(mt->kw, mt->kw_alloc, sizeof(*mt->kw));
	}
	k = &mt->kw[mt->n_kw++];
	k->uid = uid;
	k->keywords = xstrdup(flags);
	k->dropped = dropped != NULL ? xstrdup(dropped) : NULL;
	k->replace = true;
}

static void
kw_clear(struct md_target *mt, bool report)
{
	for (size_t i = 0; i < mt->n_kw; i++) {
		struct kw_pending *k = &mt->kw[i];

		if (report && (!k->replace || k->dropped != NULL))
			mt->t.sink.dropped(mt->t.sink.ctx, k->uid,
			                   k->replace ? k->dropped : k->keywords);
		free(k->keywords);
		free(k->dropped);
	}
	mt->n_kw = 0;
}

/* The IMAP name, on the serving Dovecot, of a Maildir++ directory name
 * (".Archive.2019" -> prefix + "Archive" + sep + "2019"; "" is INBOX). */
static char *
imap_name_of(const struct md_target *mt, const char *dirname)
{
	char *name, *p;

	if (dirname[0] == '\0')
		return xstrdup("INBOX");
	name = xasprintf("%s%s", mt->imap_prefix != NULL ? mt->imap_prefix : "",
	                 dirname + 1);
	if (mt->imap_sep != '.' && mt->imap_sep != '\0')
		for (p = name + strlen(mt->imap_prefix != NULL ?
		                       mt->imap_prefix : ""); *p != '\0'; p++)
			if (*p == '.')
				*p = mt->imap_sep;
	return name;
}

static void
kw_session_free(struct md_target *mt)
{
	imap_keep_remove(&mt->keep);
	imap_client_free(&mt->imap);
}

/* Sets the pending keywords of the committed folder dirname through the
 * serving Dovecot (grouped by keyword set: one UID STORE each); what it
 * refuses, or all when it cannot be reached, is reported as dropped. The
 * session is held between commits (kept alive by the keeper). */
/* The session to the serving Dovecot, connected at first use; false when
 * it cannot be had (then keywords beyond 26 are reported as dropped). */
static bool
kw_connect(struct md_target *mt)
{
	struct imap_account_info info;
	const char *error;

	if (mt->imap == NULL && !mt->imap_failed) {
		if (imap_client_connect(mt->t.spec->dst_imap, &mt->imap, NULL,
		                        &error) < 0 ||
		    imap_account_inventory(mt->imap, 0, &info, &error) < 0) {
			log_warn("--dst-imap: %s: keywords beyond the file names' 26 "
			         "are not kept", error);
			if (mt->imap != NULL)
				kw_session_free(mt);
			mt->imap_failed = true;
		} else {
			/* taken: kw_flush() parks it */
			mt->keep = imap_keep_add(mt->t.keeper, mt->imap,
			                         "--dst-imap");
			mt->imap_sep = info.separator;
			if (info.ns_count[0] > 0) {
				mt->imap_prefix = xstrdup(info.ns[0][0].prefix);
				if (info.ns[0][0].delimiter != '\0')
					mt->imap_sep = info.ns[0][0].delimiter;
			}
			imap_account_info_free(&info);
		}
	}
	return mt->imap != NULL;
}

static bool
kw_same(const struct kw_pending *a, const struct kw_pending *b)
{
	return a->replace == b->replace && strcmp(a->keywords, b->keywords) == 0;
}

static int
cmp_kw_pending(const void *pa, const void *pb)
{
	const struct kw_pending *a = pa, *b = pb;
	int c;

	if (a->replace != b->replace)
		return a->replace ? 1 : -1;
	if ((c = strcmp(a->keywords, b->keywords)) != 0)
		return c;
	return a->uid < b->uid ? -1 : a->uid > b->uid;
}

static void
kw_flush_session(struct md_target *mt, const char *dirname)
{
	struct imap_cmd_wait w = { 0 };
	const char *error;
	char *mailbox;

	if (mt->n_kw == 0)
		return;
	if (!kw_connect(mt)) {
		kw_clear(mt, true);
		return;
	}
	mailbox = imap_name_of(mt, dirname);
	if (imap_client_select(mt->imap, mailbox, false, &error) < 0) {
		log_warn("--dst-imap: selecting %s: %s: keywords beyond the file "
		         "names' 26 are not kept", mailbox, error);
		if (imap_client_is_dead(mt->imap))
			kw_session_free(mt);
		free(mailbox);
		kw_clear(mt, true);
		return;
	}
	/* one UID STORE per distinct flag set, pipelined: the pending
	 * changes sorted by (kind, flags, UID), then each run of equal
	 * flags is one command (sorting keeps a pass of many distinct flag
	 * sets O(n log n), where pairwise grouping was quadratic). Adds
	 * (keywords a delivered file could not hold) go before replaces;
	 * a UID has at most one entry of each kind per commit (delivered
	 * once; its flags set once per pass), so the order between groups
	 * does not matter. */
	qsort(mt->kw, mt->n_kw, sizeof(*mt->kw), cmp_kw_pending);
	for (size_t i = 0, j; i < mt->n_kw; i = j) {
		uint32_t *uids;
		struct imap_cmd *cmd;
		char *set;

		for (j = i + 1; j < mt->n_kw && kw_same(&mt->kw[i], &mt->kw[j]); j++)
			;
		uids = xcalloc(j - i, sizeof(*uids));
		for (size_t k = i; k < j; k++)
			uids[k - i] = mt->kw[k].uid;
		set = uidset_string(uids, j - i);
		cmd = imap_cmd_new(mt->imap);
		imap_cmd_addf(cmd, "UID STORE %s %sFLAGS.SILENT (%s)", set,
		              mt->kw[i].replace ? "" : "+", mt->kw[i].keywords);
		imap_cmd_submit(cmd, imap_cmd_wait_done, &w);
		free(set);
		free(uids);
	}
	if (imap_client_run(mt->imap, &error) < 0 || w.error != NULL) {
		log_warn("--dst-imap: setting keywords in %s: %s", mailbox,
		         w.error != NULL ? w.error : error);
		if (imap_client_is_dead(mt->imap))
			kw_session_free(mt);
		kw_clear(mt, true);
	} else {
		kw_clear(mt, false);
	}
	/* nothing selected stays open between folders */
	if (mt->imap != NULL && imap_client_simple(mt->imap, "UNSELECT", &error) < 0 &&
	    imap_client_is_dead(mt->imap))
		kw_session_free(mt);
	free(w.error);
	free(mailbox);
}

static void
kw_flush(struct md_target *mt, const char *dirname)
{
	if (mt->n_kw == 0)
		return;
	imap_keep_take(mt->keep);
	kw_flush_session(mt, dirname);
	imap_keep_park(mt->keep);   /* NULL when the session was dropped */
}

/* The flags of the open folder's messages lo..hi as the serving Dovecot
 * has them. false (logged) when it cannot say: then the file names'. */
static bool
served_flags(struct md_target *mt, uint32_t lo, uint32_t hi,
             struct msgsum_list *list)
{
	const char *error;
	char *mailbox, set[32];
	bool ok = false;

	if (hi == UINT32_MAX)
		snprintf(set, sizeof(set), "%" PRIu32 ":*", lo);
	else
		snprintf(set, sizeof(set), "%" PRIu32 ":%" PRIu32, lo, hi);
	imap_keep_take(mt->keep);
	if (kw_connect(mt)) {
		mailbox = imap_name_of(mt, mt->dirname);
		if (imap_client_select(mt->imap, mailbox, true, &error) < 0 ||
		    (imap_client_mailbox(mt->imap)->exists > 0 &&
		     msgsum_fetch(mt->imap, set, MSGSUM_FLAGS, list, &error) < 0)) {
			log_warn("--dst-imap: %s: %s: keywords beyond the file names' "
			         "26 are compared by their letters only", mailbox, error);
			msgsum_list_free(list);
			if (imap_client_is_dead(mt->imap))
				kw_session_free(mt);
		} else {
			ok = true;
		}
		if (mt->imap != NULL &&
		    imap_client_simple(mt->imap, "UNSELECT", &error) < 0 &&
		    imap_client_is_dead(mt->imap))
			kw_session_free(mt);
		free(mailbox);
	}
	imap_keep_park(mt->keep);
	return ok;
}

static size_t
md_batch_max(struct target *t, bool single)
{
	(void)t;
	return single ? 1 : 64;
}

static void
md_deliver(struct target *t, struct cmsg *list)
{
	struct md_target *mt = MT(t);
	struct maildir_folder *into = mt->stage != NULL ? mt->stage : mt->f;
	const struct target_sink *sink = &t->sink;

	while (list != NULL) {
		struct cmsg *m = list;
		const char *uidl = mt->inbox ? pop3_uidl_of(t->spec, m->uid) : NULL;
		char *dropped = NULL;
		const char *error;
		int ret;

		list = m->next;
		if (mt->full) {
			cmsg_free(&m);  /* the run stops: copied again next time */
			continue;
		}
		if (m->fd >= 0)
			ret = maildir_deliver_fd(into, m->uid, m->flags, m->internaldate,
			                         m->fd, m->size, uidl, &dropped, &error);
		else
			ret = maildir_deliver(into, m->uid, m->flags, m->internaldate,
			                      m->data, (size_t)m->size, uidl, &dropped,
			                      &error);
		if (ret < 0) {
			enum err_kind k = err_kind_of(error);

			if (k == ERRK_DISK_FULL || k == ERRK_QUOTA) {
				mt->full = true;
				sink->failed(sink->ctx, k, error);
			} else
				sink->refused(sink->ctx, m->uid, ERRK_MESSAGE, error);
		} else {
			if (dropped != NULL)
				kw_dropped(mt, m->uid, dropped);
			sink->delivered(sink->ctx, m->uid, m->uid, m->flags, m->size,
			                m->internaldate);
		}
		free(dropped);
		cmsg_free(&m);
	}
}

static unsigned
md_in_flight(struct target *t)
{
	(void)t;
	return 0;
}

static int
md_wait(struct target *t, bool all, const char **error_r)
{
	(void)t;
	(void)all;
	(void)error_r;
	return 0;
}

static int
md_commit(struct target *t, const char **error_r)
{
	struct md_target *mt = MT(t);

	if (mt->stage != NULL && maildir_folder_commit(mt->stage, error_r) < 0) {
		*error_r = md_error(*error_r, ERRK_FOLDER);
		return -1;
	}
	if (mt->f != NULL && maildir_folder_commit(mt->f, error_r) < 0) {
		*error_r = md_error(*error_r, ERRK_FOLDER);
		return -1;
	}
	return 0;
}

static unsigned
md_commit_every(struct target *t)
{
	return t->spec->commit_every != 0 ? t->spec->commit_every : 2000;
}

static struct maildir_folder *
holder(struct md_target *mt, uint32_t uid)
{
	if (maildir_folder_find(mt->f, uid, NULL))
		return mt->f;
	if (mt->stage != NULL && maildir_folder_find(mt->stage, uid, NULL))
		return mt->stage;
	return NULL;
}

static int
md_set_flags(struct target *t, const struct target_flags *fl, size_t n,
             const char **error_r)
{
	struct md_target *mt = MT(t);

	(void)error_r;
	for (size_t i = 0; i < n; i++) {
		struct maildir_folder *f = holder(mt, fl[i].dst_uid);
		char *dropped = NULL;
		const char *error;

		if (f == NULL)
			continue;
		if (maildir_set_flags(f, fl[i].dst_uid, fl[i].flags, &dropped,
		                      &error) < 0) {
			log_warn("%s: UID %" PRIu32 ": %s", maildir_folder_name(mt->f),
			         fl[i].dst_uid, error);
			continue;
		}
		if (mt->served && f == mt->f && kw_route(mt))
			kw_replace(mt, fl[i].dst_uid, fl[i].flags, dropped);
		else if (dropped != NULL)
			kw_dropped(mt, fl[i].dst_uid, dropped);
		free(dropped);
	}
	return 0;
}

static int
md_expunge(struct target *t, const uint32_t *uids, size_t n, size_t *done_r,
           const char **error_r)
{
	struct md_target *mt = MT(t);

	(void)error_r;
	*done_r = 0;
	for (size_t i = 0; i < n; i++) {
		struct maildir_folder *f = holder(mt, uids[i]);
		const char *error;

		if (f == NULL)
			continue;
		if (maildir_expunge(f, uids[i], &error) < 0)
			log_warn("%s: UID %" PRIu32 ": %s", maildir_folder_name(mt->f),
			         uids[i], error);
		else if (f == mt->f)
			(*done_r)++;
	}
	return 0;
}

static int
md_close_folder(struct target *t, const struct target_close *c,
                const char **error_r)
{
	struct md_target *mt = MT(t);
	int ret = 0;

	if (mt->f == NULL)
		return 0;
	/* UIDNEXT as the source has it, never below what the folder
	 * already promised; for a split folder the publishing range sets
	 * it */
	if (!mt->ranged && c->complete) {
		uint32_t next = c->src_uidnext;
		const char *error;

		if (maildir_folder_uidnext(mt->f) > next)
			next = maildir_folder_uidnext(mt->f);
		if (maildir_folder_set_uids(mt->f, mt->uidvalidity, next, &error) < 0)
			log_warn("%s: %s", maildir_folder_name(mt->f), error);
	}
	ret = md_commit(t, error_r);
	/* what the file names cannot hold, once Dovecot can see the files
	 * (a range above UID 1 is still staged: its publisher does it) */
	if (ret == 0 && mt->stage == NULL)
		kw_flush(mt, mt->dirname);
	else
		kw_clear(mt, mt->stage == NULL);
	if (ret == 0 && !mt->ranged && c->complete)
		remove_all_stages(t->spec->root, mt->dirname);
	close_folder_handles(mt);
	return ret;
}

struct staged {
	uint32_t uid;
	size_t stage;
};

static int
cmp_staged(const void *a, const void *b)
{
	const struct staged *x = a, *y = b;

	if (x->uid != y->uid)
		return x->uid < y->uid ? -1 : 1;
	return x->stage < y->stage ? -1 : x->stage > y->stage;
}

/* Every UID range of the folder is done: publishes the staged messages
 * into it in UID order. Serialized between jobs and processes by flock()
 * on tmp/.imapferry-publish.lock (released by a crash). */
static int
md_publish(struct target *t, const char *dirname, uint32_t uidnext,
           uint32_t *uidvalidity_r, const char **error_r)
{
	struct md_target *mt = MT(t);
	const struct target_spec *s = t->spec;
	const struct target_sink *sink = &t->sink;
	struct maildir_folder *f = NULL, **stages = NULL;
	struct maildir_msg *u = xmalloc(sizeof(*u)), *m = xmalloc(sizeof(*m));
	struct staged *list = NULL;
	size_t n_list = 0, n_names = 0, published = 0, refused = 0;
	char **names = NULL, *path, *tmpdir, *lockpath;
	uint32_t v = 0;
	int lockfd, ret = -1;

	close_folder_handles(mt);
	path = folder_path(s->root, dirname);
	tmpdir = xasprintf("%s/tmp", path);
	lockpath = xasprintf("%s/.imapferry-publish.lock", tmpdir);
	lockfd = open(lockpath, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (lockfd < 0 || flock(lockfd, LOCK_EX) < 0) {
		*error_r = err_errno(errno, "%s: %s", lockpath, strerror(errno));
		*error_r = md_error(*error_r, ERRK_FOLDER);
		goto out;
	}
	if (maildir_folder_open(s->root, dirname, &s->md, true, &f, error_r) < 0) {
		*error_r = md_error(*error_r, ERRK_FOLDER);
		goto out;
	}
	v = maildir_folder_uidvalidity(f);
	n_names = stage_names(tmpdir, &names);
	stages = xcalloc(n_names + 1, sizeof(*stages));
	for (size_t i = 0; i < n_names; i++) {
		struct maildir_folder *st;
		const char *error;
		size_t cnt;

		if (maildir_folder_open(tmpdir, names[i], &s->md, false, &st,
		                        &error) < 0) {
			log_warn("%s: scratch folder %s: %s", dirname, names[i], error);
			continue;
		}
		if (v == 0 || maildir_folder_uidvalidity(st) != v) {
			/* another UIDVALIDITY: not these messages */
			maildir_folder_close(&st);
			continue;
		}
		stages[i] = st;
		cnt = maildir_folder_count(st);
		list = xreallocarray(list, n_list + cnt + 1, sizeof(*list));
		for (size_t k = 0; k < cnt; k++) {
			list[n_list].uid = maildir_folder_uid(st, k);
			list[n_list].stage = i;
			n_list++;
		}
	}
	/* a crash inside an earlier publish's commit left files in cur/
	 * without lines: the scratch folders still have them */
	for (size_t i = 0; i < maildir_folder_unlisted_count(f);) {
		bool ours = false;

		if (!maildir_folder_unlisted(f, i, u)) {
			i++;
			continue;
		}
		for (size_t k = 0; k < n_list && !ours; k++) {
			ours = maildir_folder_find(stages[list[k].stage], list[k].uid, m) &&
			       m->mtime == u->mtime && m->file_size == u->file_size;
		}
		if (ours) {
			if (maildir_unlisted_expunge(f, i, error_r) < 0) {
				*error_r = md_error(*error_r, ERRK_FOLDER);
				goto out;
			}
			continue;
		}
		i++;
	}
	if (n_list > 1)
		qsort(list, n_list, sizeof(*list), cmp_staged);
	for (size_t k = 0; k < n_list; k++) {
		uint32_t uid = list[k].uid;
		char *dropped = NULL;

		if (maildir_folder_find(f, uid, NULL))
			continue;       /* published before, or a duplicate */
		if (uid < maildir_folder_min_uid(f)) {
			char *why = xasprintf("UID %" PRIu32 " is below the Maildir "
			    "folder's UIDNEXT %" PRIu32 ": it cannot keep its UID",
			    uid, maildir_folder_min_uid(f));

			sink->refused(sink->ctx, uid, ERRK_MESSAGE, why);
			free(why);
			refused++;
			continue;
		}
		if (maildir_link_in(f, stages[list[k].stage], uid, &dropped,
		                    error_r) < 0) {
			*error_r = md_error(err_wrap(*error_r, "publishing UID %" PRIu32
			                             ": %s", uid, *error_r), ERRK_FOLDER);
			goto out;
		}
		if (dropped != NULL)
			kw_dropped(mt, uid, dropped);
		free(dropped);
		if (++published % PUBLISH_COMMIT_EVERY == 0 &&
		    maildir_folder_commit(f, error_r) < 0) {
			*error_r = md_error(*error_r, ERRK_FOLDER);
			goto out;
		}
	}
	if (v != 0) {
		uint32_t next = uidnext;
		const char *error;

		if (maildir_folder_uidnext(f) > next)
			next = maildir_folder_uidnext(f);
		if (maildir_folder_set_uids(f, v, next, &error) < 0)
			log_warn("%s: %s", dirname, error);
	}
	if (maildir_folder_commit(f, error_r) < 0) {
		*error_r = md_error(*error_r, ERRK_FOLDER);
		goto out;
	}
	kw_flush(mt, dirname);
	log_info("%s: %zu staged messages published from %zu UID ranges%s",
	         dirname[0] != '\0' ? dirname : "INBOX", published, n_names,
	         refused > 0 ? " (some refused)" : "");
	for (size_t i = 0; i < n_names; i++)
		maildir_folder_close(&stages[i]);
	remove_stages(tmpdir, names, n_names);
	/* nothing of ours stays in the folder: a later publisher that
	 * waited on this file finds no staged folder left (publishing is
	 * idempotent under the uidlist lock) */
	(void)unlink(lockpath);
	*uidvalidity_r = v;
	ret = 0;
out:
	for (size_t i = 0; i < n_names && stages != NULL; i++)
		maildir_folder_close(&stages[i]);
	free(stages);
	free(list);
	free(u);
	free(m);
	free_names(names, n_names);
	maildir_folder_close(&f);
	if (lockfd >= 0)
		close(lockfd);
	free(lockpath);
	free(tmpdir);
	free(path);
	return ret;
}

static int
md_subscribe(struct target *t, char *const *wires, size_t n, bool dry_run,
             unsigned *count_r, const char **error_r)
{
	const struct target_spec *s = t->spec;
	const char **names = xcalloc(n + 1, sizeof(*names));
	char **tmp = xcalloc(n + 1, sizeof(*tmp));
	bool courier = s->md.flavor == MAILDIR_COURIER;
	const char *error;
	size_t k = 0;
	int ret = 0;

	for (size_t i = 0; i < n; i++) {
		if (courier && !str_ieq(wires[i], "INBOX")) {
			char *name = xasprintf("INBOX.%s", wires[i]);

			/* in UTF-8, like the directory names */
			if (courier_utf8(name, SIZE_MAX / 2, &tmp[k], &error) < 0) {
				log_warn("subscription %s not written: %s", wires[i],
				         error);
				free(name);
				continue;
			}
			free(name);
		} else {
			tmp[k] = xstrdup(wires[i]);
		}
		names[k] = tmp[k];
		k++;
	}
	*count_r = (unsigned)k;
	if (k > 0 && !dry_run &&
	    maildir_subscriptions_write(s->root, &s->md, names, k, '.', error_r) < 0)
		ret = -1;
	for (size_t i = 0; i < k; i++)
		free(tmp[i]);
	free(tmp);
	free(names);
	return ret;
}

static int
md_remove_folder(struct target *t, const char *name, const char **error_r)
{
	close_folder_handles(MT(t));
	return maildir_folder_remove(t->spec->root, name, error_r);
}

static void
md_free(struct target *t)
{
	struct md_target *mt = MT(t);

	close_folder_handles(mt);
	kw_clear(mt, true);
	free(mt->kw);
	imap_keep_remove(&mt->keep);
	if (mt->imap != NULL)
		imap_client_logout(&mt->imap);
	free(mt->imap_prefix);
	free(t);
}

static const struct target_ops maildir_ops = {
	.name = "maildir",
	.keeps_uids = true,
	.ordered = true,
	.connect = md_connect,
	.disconnect = md_disconnect,
	.logout = md_logout,
	.setup_foldermap = md_setup_foldermap,
	.folder_name = md_folder_name,
	.folder_exists = md_folder_exists,
	.open_folder = md_open_folder,
	.needs_meta = md_needs_meta,
	.list = md_list,
	.can_place = md_can_place,
	.expect_keywords = md_expect_keywords,
	.storable_flags = md_storable_flags,
	.batch_max = md_batch_max,
	.deliver = md_deliver,
	.in_flight = md_in_flight,
	.wait = md_wait,
	.commit = md_commit,
	.commit_every = md_commit_every,
	.set_flags = md_set_flags,
	.expunge = md_expunge,
	.close_folder = md_close_folder,
	.publish = md_publish,
	.remove_folder = md_remove_folder,
	.subscribe = md_subscribe,
	.free = md_free,
};

struct target *
target_maildir_new(const struct target_spec *spec)
{
	struct md_target *mt = xcalloc(1, sizeof(*mt));

	(void)spec;
	mt->t.ops = &maildir_ops;
	return &mt->t;
}

void
target_spec_maildir_init(struct target_spec *spec)
{
	memset(spec, 0, sizeof(*spec));
	spec->kind = TARGET_MAILDIR;
	maildir_options_init(&spec->md);
}
