#include "verify.h"

#include "flags.h"
#include "log.h"
#include "mailboxes.h"
#include "msgsum.h"
#include "target.h"
#include "uidset.h"

#include <errno.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *
verify_kind_name(enum verify_kind kind)
{
	static const char *names[] = {
		"folder_missing", "uidvalidity", "uidnext", "missing", "extra", "size", "internaldate",
		"flags", "message_id", "body", "error",
	};

	return names[kind];
}

static void
add_diff(struct verify_report *r, enum verify_kind kind, const char *sf,
         const char *df, uint32_t su, uint32_t du, const char *fmt, ...)
    ATTR_PRINTF(7, 8);

static void
add_diff(struct verify_report *r, enum verify_kind kind, const char *sf,
         const char *df, uint32_t su, uint32_t du, const char *fmt, ...)
{
	struct verify_diff *d;
	va_list ap;
	char tmp[1024];

	if (r->count == r->alloc) {
		r->alloc = r->alloc == 0 ? 16 : r->alloc * 2;
		r->diffs = xreallocarray(r->diffs, r->alloc, sizeof(*r->diffs));
	}
	d = &r->diffs[r->count++];
	d->kind = kind;
	d->src_folder = xstrdup(sf);
	d->dst_folder = xstrdup(df != NULL ? df : "");
	d->src_uid = su;
	d->dst_uid = du;
	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	d->detail = xstrdup(tmp);
}

void
verify_report_free(struct verify_report *r)
{
	for (size_t i = 0; i < r->count; i++) {
		free(r->diffs[i].src_folder);
		free(r->diffs[i].dst_folder);
		free(r->diffs[i].detail);
	}
	free(r->diffs);
	memset(r, 0, sizeof(*r));
}

static void
compare_pair(struct verify_report *r, const char *sf, const char *df,
             const struct msgsum *s, const struct msgsum *d, bool deep)
{
	r->matched++;
	if (s->size != d->size)
		add_diff(r, VERIFY_SIZE, sf, df, s->uid, d->uid,
		         "source %" PRIu64 " bytes, target %" PRIu64, s->size, d->size);
	if (s->internaldate != d->internaldate)
		add_diff(r, VERIFY_DATE, sf, df, s->uid, d->uid,
		         "source %" PRId64 ", target %" PRId64, s->internaldate,
		         d->internaldate);
	if (strcmp(s->flags, d->flags) != 0)
		add_diff(r, VERIFY_FLAGS, sf, df, s->uid, d->uid,
		         "source (%s), target (%s)", s->flags, d->flags);
	if ((s->message_id == NULL) != (d->message_id == NULL) ||
	    (s->message_id != NULL && strcmp(s->message_id, d->message_id) != 0))
		add_diff(r, VERIFY_MESSAGE_ID, sf, df, s->uid, d->uid,
		         "source %s, target %s",
		         s->message_id ? s->message_id : "(none)",
		         d->message_id ? d->message_id : "(none)");
	if (deep && (!s->have_body || !d->have_body ||
	             memcmp(s->body_sha, d->body_sha, 32) != 0)) {
		char hs[65], hd[65];

		msgsum_hex(s->body_sha, hs);
		msgsum_hex(d->body_sha, hd);
		add_diff(r, VERIFY_BODY, sf, df, s->uid, d->uid,
		         "SHA-256 source %s, target %s", hs, hd);
	}
}

/* Compares the pairs the state knows (map) among sl and dl; sused and
 * dused mark the messages of sl and dl taken. */
static void
compare_known(struct verify_report *r, const struct verify_options *o,
              const char *sf, const char *df, const struct state_msg *map,
              size_t n_map, struct msgsum_list *sl, struct msgsum_list *dl,
              bool *sused, bool *dused)
{
	for (size_t i = 0; i < n_map; i++) {
		struct msgsum *s = msgsum_find(sl, map[i].src_uid);
		struct msgsum *d = map[i].dst_uid != 0 ?
		                   msgsum_find(dl, map[i].dst_uid) : NULL;

		if (s == NULL)
			continue;   /* gone on the source since */
		if (d == NULL && map[i].dst_uid != 0) {
			add_diff(r, VERIFY_MISSING, sf, df, s->uid, map[i].dst_uid,
			         "target UID %" PRIu32 " is gone", map[i].dst_uid);
			sused[s - sl->items] = true;
			continue;
		}
		if (d == NULL)
			continue;
		sused[s - sl->items] = true;
		dused[d - dl->items] = true;
		compare_pair(r, sf, df, s, d, o->deep);
	}
}

/* The messages of sl and dl no pair took (sused, dused; NULL: none),
 * paired by fingerprint; what is left is missing or extra. */
static void
compare_rest(struct verify_report *r, const struct verify_options *o,
             const char *sf, const char *df, struct msgsum_list *sl,
             const bool *sused, struct msgsum_list *dl, const bool *dused)
{
	struct msgsum_fpindex ix;

	msgsum_fpindex_init(&ix, dl);
	for (size_t k = 0; dused != NULL && k < dl->count; k++)
		if (dused[k])
			msgsum_fpindex_mark(&ix, &dl->items[k]);
	for (size_t i = 0; i < sl->count; i++) {
		struct msgsum *d;

		if (sused != NULL && sused[i])
			continue;
		d = msgsum_fpindex_match(&ix, &sl->items[i], (int64_t)time(NULL));
		if (d != NULL)
			compare_pair(r, sf, df, &sl->items[i], d, o->deep);
		else
			add_diff(r, VERIFY_MISSING, sf, df, sl->items[i].uid, 0,
			         "%" PRIu64 " bytes, Message-ID %s", sl->items[i].size,
			         sl->items[i].message_id ? sl->items[i].message_id : "(none)");
	}
	for (size_t k = 0; k < dl->count; k++)
		if (!msgsum_fpindex_taken(&ix, &dl->items[k]))
			add_diff(r, VERIFY_EXTRA, sf, df, 0, dl->items[k].uid,
			         "%" PRIu64 " bytes, Message-ID %s", dl->items[k].size,
			         dl->items[k].message_id ? dl->items[k].message_id : "(none)");
	msgsum_fpindex_free(&ix);
}

/* A source folder larger than this, with the state's pairs, is verified
 * window by window: memory bounded by the window and 12 bytes of UIDs per
 * message, not every message's summary on both sides (issue 15). The
 * messages no pair knows are matched by fingerprint at the end, as in a
 * small folder. IMAPFERRY_DIFF_WINDOW overrides it (tests), as for copy. */
#define VERIFY_WINDOW 50000

static size_t
verify_window(void)
{
	const char *w = getenv("IMAPFERRY_DIFF_WINDOW");
	uint64_t v;

	if (w != NULL && str_to_u64(w, strlen(w), UINT32_MAX, &v) && v > 0)
		return (size_t)v;
	return VERIFY_WINDOW;
}

/* Fetches the summaries of uids (sorted) in groups, so that no command
 * line grows with the folder. */
static int
fetch_uids(struct imap_client *c, const uint32_t *uids, size_t n, unsigned what,
           struct msgsum_list *list, const char **error_r)
{
	for (size_t i = 0; i < n; i += 5000) {
		char *set = uidset_string(uids + i, n - i < 5000 ? n - i : 5000);
		int ret = msgsum_fetch(c, set, what, list, error_r);

		free(set);
		if (ret < 0)
			return -1;
	}
	return 0;
}

/* verify_folder() of a large folder with the state's pairs; both folders
 * are selected. */
static void
verify_folder_windowed(struct imap_client *src, struct imap_client *dst,
                       const struct verify_options *o, const char *sf,
                       const char *df, int64_t folder_id, size_t window,
                       struct verify_report *r)
{
	unsigned what = MSGSUM_FLAGS | MSGSUM_FP | (o->deep ? MSGSUM_BODY : 0);
	uint32_t *src_uids = NULL, *dst_uids = NULL, *claimed = NULL, *left = NULL;
	size_t n_src = 0, n_dst = 0, n_claimed = 0, a_claimed = 0, n_left = 0,
	       a_left = 0;
	struct msgsum_list sl = { 0 }, dl = { 0 };
	const char *error;

	if (msgsum_uids_range(src, 1, UINT32_MAX, &src_uids, &n_src, &error) < 0) {
		add_diff(r, VERIFY_ERROR, sf, df, 0, 0, "source: %s", error);
		return;
	}
	r->folders++;
	r->messages += n_src;
	for (size_t w0 = 0; w0 < n_src; w0 += window) {
		size_t w1 = n_src - w0 < window ? n_src : w0 + window;
		struct state_msg *map = NULL;
		uint32_t *du;
		size_t n_map = 0, n_du = 0;
		bool *sused, *dused;
		char set[32];

		snprintf(set, sizeof(set), "%" PRIu32 ":%" PRIu32, src_uids[w0],
		         src_uids[w1 - 1]);
		if (msgsum_fetch(src, set, what, &sl, &error) < 0) {
			add_diff(r, VERIFY_ERROR, sf, df, 0, 0, "source: %s", error);
			goto out;
		}
		if (state_msgs_load_range(o->db, folder_id, src_uids[w0],
		                          src_uids[w1 - 1], &map, &n_map, &error) < 0) {
			add_diff(r, VERIFY_ERROR, sf, df, 0, 0, "state: %s", error);
			goto out;
		}
		du = xcalloc(n_map + 1, sizeof(*du));
		for (size_t i = 0; i < n_map; i++)
			if (map[i].dst_uid != 0 && msgsum_find(&sl, map[i].src_uid) != NULL)
				du[n_du++] = map[i].dst_uid;
		qsort(du, n_du, sizeof(*du), cmp_u32);
		if (fetch_uids(dst, du, n_du, what, &dl, &error) < 0) {
			add_diff(r, VERIFY_ERROR, sf, df, 0, 0, "target: %s", error);
			free(du);
			state_msgs_free(&map, n_map);
			goto out;
		}
		free(du);
		sused = xcalloc(sl.count + 1, sizeof(bool));
		dused = xcalloc(dl.count + 1, sizeof(bool));
		compare_known(r, o, sf, df, map, n_map, &sl, &dl, sused, dused);
		for (size_t k = 0; k < dl.count; k++)
			if (dused[k])
				u32_push(&claimed, &n_claimed, &a_claimed, dl.items[k].uid);
		free(dused);
		/* the rest of the window: by fingerprint at the end */
		for (size_t i = 0; i < sl.count; i++)
			if (!sused[i])
				u32_push(&left, &n_left, &a_left, sl.items[i].uid);
		free(sused);
		state_msgs_free(&map, n_map);
		msgsum_list_free(&sl);
		msgsum_list_free(&dl);
	}
	/* the target's messages no pair claimed, and the source's left */
	if (msgsum_uids_range(dst, 1, UINT32_MAX, &dst_uids, &n_dst, &error) < 0) {
		add_diff(r, VERIFY_ERROR, sf, df, 0, 0, "target: %s", error);
		goto out;
	}
	qsort(claimed, n_claimed, sizeof(*claimed), cmp_u32);
	{
		size_t k = 0, m = 0;

		for (size_t i = 0; i < n_dst; i++) {
			while (k < n_claimed && claimed[k] < dst_uids[i])
				k++;
			if (k < n_claimed && claimed[k] == dst_uids[i])
				continue;
			dst_uids[m++] = dst_uids[i];
		}
		n_dst = m;
	}
	if (fetch_uids(src, left, n_left, what, &sl, &error) < 0) {
		add_diff(r, VERIFY_ERROR, sf, df, 0, 0, "source: %s", error);
		goto out;
	}
	if (fetch_uids(dst, dst_uids, n_dst, what, &dl, &error) < 0) {
		add_diff(r, VERIFY_ERROR, sf, df, 0, 0, "target: %s", error);
		goto out;
	}
	compare_rest(r, o, sf, df, &sl, NULL, &dl, NULL);
out:
	msgsum_list_free(&sl);
	msgsum_list_free(&dl);
	free(src_uids);
	free(dst_uids);
	free(claimed);
	free(left);
}

static void
verify_folder(struct imap_client *src, struct imap_client *dst,
              const struct verify_options *o, const char *sf, const char *df,
              struct verify_report *r)
{
	unsigned what = MSGSUM_FLAGS | MSGSUM_FP | (o->deep ? MSGSUM_BODY : 0);
	struct msgsum_list sl = { 0 }, dl = { 0 };
	struct state_folder st;
	struct state_msg *map = NULL;
	size_t n_map = 0;
	bool found = false, *dused = NULL, *sused = NULL;
	const char *error;

	if (imap_client_select(src, sf, true, &error) < 0) {
		add_diff(r, VERIFY_ERROR, sf, df, 0, 0, "source: %s", error);
		goto out;
	}
	if (imap_client_select(dst, df, true, &error) < 0) {
		add_diff(r, VERIFY_ERROR, sf, df, 0, 0, "target: %s", error);
		goto out;
	}
	/* a large folder with the state's pairs: in windows */
	if (o->db != NULL && o->account != NULL &&
	    imap_client_mailbox(src)->exists > verify_window() &&
	    state_folder_get(o->db, o->account, sf, &st, &found, &error) == 0 &&
	    found) {
		bool usable = st.src_uidvalidity == imap_client_mailbox(src)->uidvalidity;
		int64_t id = st.id;

		state_folder_free(&st);
		found = false;
		if (usable) {
			verify_folder_windowed(src, dst, o, sf, df, id, verify_window(), r);
			goto out;
		}
	}
	if ((imap_client_mailbox(src)->exists > 0 &&
	     msgsum_fetch(src, "1:*", what, &sl, &error) < 0)) {
		add_diff(r, VERIFY_ERROR, sf, df, 0, 0, "source: %s", error);
		goto out;
	}
	if ((imap_client_mailbox(dst)->exists > 0 &&
	     msgsum_fetch(dst, "1:*", what, &dl, &error) < 0)) {
		add_diff(r, VERIFY_ERROR, sf, df, 0, 0, "target: %s", error);
		goto out;
	}
	r->folders++;
	r->messages += sl.count;
	dused = xcalloc(dl.count + 1, sizeof(bool));
	sused = xcalloc(sl.count + 1, sizeof(bool));
	if (o->db != NULL && o->account != NULL &&
	    state_folder_get(o->db, o->account, sf, &st, &found, &error) == 0 &&
	    found) {
		if (st.src_uidvalidity == imap_client_mailbox(src)->uidvalidity &&
		    state_msgs_load(o->db, st.id, &map, &n_map, &error) < 0)
			n_map = 0;
		state_folder_free(&st);
	}
	compare_known(r, o, sf, df, map, n_map, &sl, &dl, sused, dused);
	compare_rest(r, o, sf, df, &sl, sused, &dl, dused);
out:
	state_msgs_free(&map, n_map);
	free(dused);
	free(sused);
	msgsum_list_free(&sl);
	msgsum_list_free(&dl);
}

int
verify_account(const struct imap_client_options *src_opts,
               const struct imap_client_options *dst_opts,
               const struct verify_options *o, struct verify_report *r,
               const char **error_r)
{
	struct imap_client *src = NULL, *dst = NULL;
	struct imap_account_info si, di;
	int ret = -1;

	memset(r, 0, sizeof(*r));
	if (imap_client_connect(src_opts, &src, NULL, error_r) < 0) {
		*error_r = err_set("source: %s", *error_r);
		return -1;
	}
	if (imap_client_connect(dst_opts, &dst, NULL, error_r) < 0) {
		*error_r = err_set("target: %s", *error_r);
		imap_client_free(&src);
		return -1;
	}
	if (imap_account_inventory(src, IMAP_INV_STATUS, &si, error_r) < 0) {
		imap_client_free(&src);
		imap_client_free(&dst);
		return -1;
	}
	if (imap_account_inventory(dst, 0, &di, error_r) < 0) {
		imap_account_info_free(&si);
		imap_client_free(&src);
		imap_client_free(&dst);
		return -1;
	}
	for (size_t i = 0; i < di.count; i++) {
		unsigned su = di.boxes[i].attrs & IMAP_MBOX_SPECIAL_USE_MASK;
		for (unsigned bit = 1; su != 0 && bit != 0; bit <<= 1)
			if (su & bit)
				foldermap_set_dst_special(o->fm, bit, di.boxes[i].name);
	}
	for (size_t i = 0; i < si.count; i++) {
		const struct imap_mailbox_info *box = &si.boxes[i];
		struct foldermap_result res;
		const char *error;
		bool exists = false;

		if (!box->selectable)
			continue;
		if (foldermap_map(o->fm, box->name, box->name_len, box->attrs, &res,
		                  &error) < 0) {
			add_diff(r, VERIFY_ERROR, box->name, NULL, 0, 0, "%s", error);
			continue;
		}
		if (!res.excluded) {
			for (size_t k = 0; k < di.count && !exists; k++)
				exists = strcmp(di.boxes[k].name, res.dst_wire) == 0 ||
				         (str_ieq(res.dst_wire, "INBOX") &&
				          str_ieq(di.boxes[k].name, "INBOX"));
			if (!exists) {
				/* its messages are missing too: count them */
				add_diff(r, VERIFY_FOLDER_MISSING, box->name, res.dst_wire,
				         0, 0, "%" PRIu32 " messages on the source",
				         box->messages);
				r->folders++;
				r->messages += box->messages;
			} else
				verify_folder(src, dst, o, box->name, res.dst_wire, r);
		}
		foldermap_result_free(&res);
		if (imap_client_is_dead(src) || imap_client_is_dead(dst)) {
			*error_r = err_set("connection lost during verification");
			goto out;
		}
	}
	ret = 0;
out:
	imap_account_info_free(&si);
	imap_account_info_free(&di);
	imap_client_logout(&src);
	imap_client_logout(&dst);
	return ret;
}

/* ------------------------------------------------------ Maildir target */

/* Reads a message file: SHA-256 of the bytes as served (LF -> CRLF when
 * the flavor stores LF) and the header fields for the fingerprint. */
static int
hash_file(int fd, bool lf_to_crlf, unsigned char sha[32], char **msgid_r)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	char buf[65536], out[131072];
	unsigned int n32 = 32;
	char prev = '\0';
	ssize_t n;
	struct buf hdr;
	bool in_hdr = true;

	buf_init(&hdr, 1 << 20);
	if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
		fatal("OpenSSL SHA-256 init failed");
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		size_t o = 0;

		for (ssize_t i = 0; i < n; i++) {
			if (lf_to_crlf && buf[i] == '\n' && prev != '\r')
				out[o++] = '\r';
			out[o++] = buf[i];
			prev = buf[i];
		}
		if (in_hdr) {
			const char *end;

			if (buf_append(&hdr, out, o) < 0)
				in_hdr = false;
			else if ((end = strstr(buf_data(&hdr), "\r\n\r\n")) != NULL)
				in_hdr = false;
		}
		EVP_DigestUpdate(md, out, o);
	}
	EVP_DigestFinal_ex(md, sha, &n32);
	EVP_MD_CTX_free(md);
	*msgid_r = NULL;
	{
		/* Message-ID value, as msgsum_fingerprint() extracts it */
		const char *h = buf_data(&hdr), *end = strstr(h, "\r\n\r\n");
		size_t len = end != NULL ? (size_t)(end - h) + 2 : buf_len(&hdr);
		struct buf fields;
		const char *p = h;

		buf_init(&fields, 1 << 20);
		while (p < h + len) {
			const char *eol = strstr(p, "\r\n");
			const char *next;

			if (eol == NULL || eol > h + len)
				eol = h + len;
			next = eol + 2;
			/* the field continues on folded lines */
			while (next < h + len && (*next == ' ' || *next == '\t')) {
				const char *e2 = strstr(next, "\r\n");
				if (e2 == NULL)
					break;
				eol = e2;
				next = e2 + 2;
			}
			if (str_has_iprefix(p, "message-id:") &&
			    buf_append(&fields, p, (size_t)(eol - p)) == 0 &&
			    buf_append(&fields, "\r\n", 2) == 0) {
				unsigned char fp[32];
				msgsum_fingerprint(buf_data(&fields), buf_len(&fields), 0,
				                   0, fp, msgid_r);
				break;
			}
			p = next;
		}
		buf_free(&fields);
	}
	buf_free(&hdr);
	return n < 0 ? -1 : 0;
}

/* The Dovecot serving the Maildir (verify_options.dst_imap): its
 * session and personal namespace. */
struct served {
	struct imap_client *c;
	char *prefix;
	char sep;
};

/* The IMAP name on the serving Dovecot of a Maildir++ directory name
 * (".Archive.2019" -> prefix + "Archive" + sep + "2019"; "" is INBOX). */
static char *
served_name(const struct served *sv, const char *dirname)
{
	char *name;
	size_t plen = strlen(sv->prefix);

	if (dirname[0] == '\0')
		return xstrdup("INBOX");
	name = xasprintf("%s%s", sv->prefix, dirname + 1);
	if (sv->sep != '.' && sv->sep != '\0')
		for (char *p = name + plen; *p != '\0'; p++)
			if (*p == '.')
				*p = sv->sep;
	return name;
}

/* One Maildir folder against its source folder, UID for UID, in windows
 * of source UIDs (verify_window()): the source's and the serving
 * Dovecot's summaries are held for one window at a time, the source's
 * UIDs (4 bytes each) for the whole folder, to find the Maildir's
 * extra messages. */
static void
verify_maildir_folder(struct imap_client *src, const char *root,
                      enum maildir_flavor flavor, const struct verify_options *o,
                      const struct imap_mailbox_info *box, const char *dirname,
                      struct served *sv, struct verify_report *r)
{
	struct msgsum_list served = { 0 };
	unsigned what = MSGSUM_FLAGS | MSGSUM_FP | (o->deep ? MSGSUM_BODY : 0);
	struct maildir_options mo;
	struct maildir_folder *f = NULL;
	struct msgsum_list sl = { 0 };
	const char *error, *dn = dirname[0] != '\0' ? dirname : "INBOX";
	const struct imap_mailbox_state *mb;
	uint32_t *src_uids = NULL;
	size_t n_src = 0, n_md, window = verify_window();
	bool served_empty = true;

	maildir_options_init(&mo);
	mo.flavor = flavor;
	if (maildir_folder_open(root, dirname, &mo, false, &f, &error) < 0) {
		add_diff(r, VERIFY_FOLDER_MISSING, box->name, dn, 0, 0, "%s", error);
		return;
	}
	if (imap_client_select(src, box->name, true, &error) < 0 ||
	    (imap_client_mailbox(src)->exists > 0 &&
	     msgsum_uids_range(src, 1, UINT32_MAX, &src_uids, &n_src, &error) < 0)) {
		add_diff(r, VERIFY_ERROR, box->name, dn, 0, 0, "source: %s", error);
		goto out;
	}
	r->folders++;
	r->messages += n_src;
	mb = imap_client_mailbox(src);
	if (sv != NULL) {
		char *name = served_name(sv, dirname);

		if (imap_client_select(sv->c, name, true, &error) < 0) {
			add_diff(r, VERIFY_ERROR, box->name, dn, 0, 0,
			         "%s on the serving Dovecot: %s", name, error);
			free(name);
			goto out;
		}
		served_empty = imap_client_mailbox(sv->c)->exists == 0;
		free(name);
	}
	if (maildir_folder_uidvalidity(f) != mb->uidvalidity)
		add_diff(r, VERIFY_UIDVALIDITY, box->name, dn, 0, 0,
		         "source %" PRIu32 ", Maildir %" PRIu32, mb->uidvalidity,
		         maildir_folder_uidvalidity(f));
	if (mb->uidnext != 0 && maildir_folder_uidnext(f) != mb->uidnext)
		add_diff(r, VERIFY_UIDNEXT, box->name, dn, 0, 0,
		         "source %" PRIu32 ", Maildir %" PRIu32, mb->uidnext,
		         maildir_folder_uidnext(f));
	for (size_t w0 = 0; w0 < n_src; w0 += window) {
		size_t w1 = n_src - w0 < window ? n_src : w0 + window;
		char set[32];

		snprintf(set, sizeof(set), "%" PRIu32 ":%" PRIu32, src_uids[w0],
		         src_uids[w1 - 1]);
		if (msgsum_fetch(src, set, what, &sl, &error) < 0) {
			add_diff(r, VERIFY_ERROR, box->name, dn, 0, 0, "source: %s", error);
			goto out;
		}
		if (sv != NULL && !served_empty &&
		    msgsum_fetch(sv->c, set, MSGSUM_FLAGS, &served, &error) < 0) {
			add_diff(r, VERIFY_ERROR, box->name, dn, 0, 0,
			         "the serving Dovecot: %s", error);
			goto out;
		}
		for (size_t i = 0; i < sl.count; i++) {
			const struct msgsum *s = &sl.items[i];
			struct maildir_msg mm, *m = &mm;
			struct msgsum d = { 0 };
			uint64_t size;
			int fd;

			if (!maildir_folder_find(f, s->uid, m)) {
				add_diff(r, VERIFY_MISSING, box->name, dn, s->uid, 0,
				         "%" PRIu64 " bytes, Message-ID %s", s->size,
				         s->message_id ? s->message_id : "(none)");
				continue;
			}
			d.uid = m->uid;
			if (sv != NULL) {
				const struct msgsum *x = msgsum_find(&served, m->uid);

				d.flags = xstrdup(x != NULL ? x->flags : "(not served)");
			} else {
				d.flags = xstrdup(m->flags);
			}
			d.internaldate = m->mtime;
			if (maildir_msg_size(f, m->uid, &size, &error) < 0)
				size = 0;
			d.size = size;
			if (maildir_open_msg(f, m->uid, &fd, &size, &error) == 0) {
				if (hash_file(fd, flavor == MAILDIR_COURIER, d.body_sha,
				              &d.message_id) == 0)
					d.have_body = true;
				close(fd);
			}
			compare_pair(r, box->name, dn, s, &d, o->deep);
			free(d.flags);
			free(d.message_id);
		}
		msgsum_list_free(&sl);
		msgsum_list_free(&served);
	}
	n_md = maildir_folder_count(f);
	for (size_t i = 0; i < n_md; i++) {
		uint32_t uid = maildir_folder_uid(f, i);

		if (n_src == 0 || bsearch(&uid, src_uids, n_src, sizeof(*src_uids),
		                          cmp_u32) == NULL)
			add_diff(r, VERIFY_EXTRA, box->name, dn, 0, uid,
			         "in the Maildir only");
	}
out:
	msgsum_list_free(&served);
	msgsum_list_free(&sl);
	free(src_uids);
	maildir_folder_close(&f);
}

int
verify_account_maildir(const struct imap_client_options *src_opts,
                       const char *root, enum maildir_flavor flavor,
                       const struct verify_options *o, struct verify_report *r,
                       const char **error_r)
{
	struct imap_client *src = NULL;
	struct imap_account_info si;
	struct served sv = { 0 };

	memset(r, 0, sizeof(*r));
	if (o->dst_imap != NULL) {
		struct imap_account_info di;

		if (imap_client_connect(o->dst_imap, &sv.c, NULL, error_r) < 0 ||
		    imap_account_inventory(sv.c, 0, &di, error_r) < 0) {
			*error_r = err_set("serving Dovecot: %s", *error_r);
			if (sv.c != NULL)
				imap_client_free(&sv.c);
			return -1;
		}
		sv.sep = di.separator;
		if (di.ns_count[0] > 0) {
			sv.prefix = xstrdup(di.ns[0][0].prefix);
			if (di.ns[0][0].delimiter != '\0')
				sv.sep = di.ns[0][0].delimiter;
		} else {
			sv.prefix = xstrdup("");
		}
		imap_account_info_free(&di);
	}
	if (imap_client_connect(src_opts, &src, NULL, error_r) < 0) {
		*error_r = err_set("source: %s", *error_r);
		goto fail;
	}
	if (imap_account_inventory(src, IMAP_INV_STATUS, &si, error_r) < 0) {
		imap_client_free(&src);
		goto fail;
	}
	for (size_t i = 0; i < si.count; i++) {
		const struct imap_mailbox_info *box = &si.boxes[i];
		struct foldermap_result res;
		const char *error;
		char *dirname;

		if (!box->selectable)
			continue;
		if (foldermap_map(o->fm, box->name, box->name_len, box->attrs, &res,
		                  &error) < 0) {
			add_diff(r, VERIFY_ERROR, box->name, NULL, 0, 0, "%s", error);
			continue;
		}
		if (!res.excluded) {
			if (target_maildir_dirname(res.dst_wire, flavor, &dirname,
			                           &error) < 0) {
				add_diff(r, VERIFY_ERROR, box->name, res.dst_wire, 0, 0,
				         "%s", error);
			} else {
				verify_maildir_folder(src, root, flavor, o, box, dirname,
				                      sv.c != NULL ? &sv : NULL, r);
				free(dirname);
			}
		}
		foldermap_result_free(&res);
		if (imap_client_is_dead(src) ||
		    (sv.c != NULL && imap_client_is_dead(sv.c))) {
			*error_r = err_set("connection lost during verification");
			imap_account_info_free(&si);
			imap_client_free(&src);
			goto fail;
		}
	}
	imap_account_info_free(&si);
	imap_client_logout(&src);
	if (sv.c != NULL)
		imap_client_logout(&sv.c);
	free(sv.prefix);
	return 0;
fail:
	if (sv.c != NULL)
		imap_client_free(&sv.c);
	free(sv.prefix);
	return -1;
}
