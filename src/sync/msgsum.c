#include "msgsum.h"

#include "buf.h"
#include "flags.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FP_FIELDS "MESSAGE-ID DATE FROM TO SUBJECT"

struct hash_stream {
	EVP_MD_CTX *md;
	unsigned char digest[32];
	bool done;
};

struct fetch_ctx {
	struct msgsum_list *list;
	unsigned what;
	char *error;
};

static void *
hs_begin(void *ctx, uint64_t size)
{
	struct hash_stream *hs = xcalloc(1, sizeof(*hs));

	hs->md = EVP_MD_CTX_new();
	if (hs->md == NULL || EVP_DigestInit_ex(hs->md, EVP_sha256(), NULL) != 1)
		fatal("OpenSSL SHA-256 init failed");
	return hs;
}

static int
hs_data(void *ctx, void *handle, const void *data, size_t len)
{
	struct hash_stream *hs = handle;

	return EVP_DigestUpdate(hs->md, data, len) == 1 ? 0 : -1;
}

static int
hs_end(void *ctx, void *handle)
{
	struct hash_stream *hs = handle;
	unsigned int n = 32;

	hs->done = EVP_DigestFinal_ex(hs->md, hs->digest, &n) == 1;
	return hs->done ? 0 : -1;
}

static void
hs_release(void *ctx, void *handle)
{
	struct hash_stream *hs = handle;

	EVP_MD_CTX_free(hs->md);
	free(hs);
}

static void
sha256(const void *data, size_t len, unsigned char out[32])
{
	unsigned int n = 32;

	if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1)
		fatal("OpenSSL SHA-256 failed");
}

void
msgsum_hex(const unsigned char d[32], char out[static 65])
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 0; i < 32; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	out[64] = '\0';
}

/* Normalizes header fields: unfolds, lower-cases names, collapses runs of
 * white space, drops the trailing blank line, so that servers that rewrite
 * line ends or folding still give the same fingerprint. */
void
msgsum_fingerprint(const char *hdr, size_t len, uint64_t size,
                   int64_t internaldate, unsigned char fp_r[32],
                   char **message_id_r)
{
	struct buf b;
	bool in_name = true, space = false;

	buf_init(&b, len + 128);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)hdr[i];

		if (ch == '\r')
			continue;
		if (ch == '\n') {
			if (i + 1 < len && (hdr[i + 1] == ' ' || hdr[i + 1] == '\t')) {
				space = true;   /* folded line */
				continue;
			}
			if (buf_append(&b, "\n", 1) < 0)
				break;
			in_name = true;
			space = false;
			continue;
		}
		if (ch == ' ' || ch == '\t') {
			space = true;
			continue;
		}
		if (space && !in_name && buf_len(&b) > 0 &&
		    buf_data(&b)[buf_len(&b) - 1] != '\n' &&
		    buf_data(&b)[buf_len(&b) - 1] != ':' &&
		    buf_append(&b, " ", 1) < 0)
			break;
		space = false;
		if (in_name && ch >= 'A' && ch <= 'Z')
			ch = (unsigned char)(ch + 32);
		if (in_name && ch == ':')
			in_name = false;
		if (buf_append(&b, &ch, 1) < 0)
			break;
	}
	if (message_id_r != NULL) {
		const char *p = strstr(buf_data(&b), "message-id:");
		*message_id_r = NULL;
		if (p != NULL) {
			p += 11;
			*message_id_r = xstrndup(p, strcspn(p, "\n"));
		}
	}
	/* Size and INTERNALDATE are not hashed: servers change them (Dovecot
	 * drops a final bare CR and replaces a future INTERNALDATE by the
	 * APPEND time; Courier adds a final CRLF), so msgsum_fpindex_match()
	 * compares them with those tolerances. */
	(void)size;
	(void)internaldate;
	sha256(buf_data(&b), buf_len(&b), fp_r);
	buf_free(&b);
}

static void
fetch_untagged(void *ctx, const struct imap_response *resp)
{
	struct fetch_ctx *fc = ctx;
	const struct imap_fetch *f;
	struct msgsum *m;
	const char *hdr = NULL;
	size_t hdr_len = 0;

	if (resp->kind != IMAP_RESP_UNTAGGED || resp->type != IMAP_UNTAGGED_FETCH)
		return;
	f = &resp->u.fetch;
	if (!(f->have & IMAP_FETCH_UID))
		return;   /* an unsolicited flag update */
	if (fc->list->count == fc->list->alloc) {
		fc->list->alloc = fc->list->alloc == 0 ? 256 : fc->list->alloc * 2;
		fc->list->items = xreallocarray(fc->list->items, fc->list->alloc,
		                                sizeof(*fc->list->items));
	}
	m = &fc->list->items[fc->list->count++];
	memset(m, 0, sizeof(*m));
	m->uid = f->uid;
	m->flags = flags_canonical(f->flags.items, f->flags.count);
	m->internaldate = (int64_t)f->internaldate;
	m->size = f->rfc822_size;
	for (size_t i = 0; i < f->body_count; i++) {
		const struct imap_fetch_body *b = &f->bodies[i];

		if (b->value == NULL)
			continue;
		if (b->section[0] == '\0' || strcmp(b->section, "RFC822") == 0) {
			if (b->value->type == IMAP_VALUE_STRING) {
				sha256(b->value->str, b->value->len, m->body_sha);
				m->have_body = true;
			} else if (b->value->type == IMAP_VALUE_STREAMED) {
				struct hash_stream *hs = b->value->stream;
				memcpy(m->body_sha, hs->digest, 32);
				m->have_body = hs->done;
			} else if (b->value->type == IMAP_VALUE_NIL) {
				sha256("", 0, m->body_sha);
				m->have_body = true;
			}
		} else if (b->value->type == IMAP_VALUE_STRING) {
			hdr = b->value->str;
			hdr_len = b->value->len;
		} else if (b->value->type == IMAP_VALUE_NIL) {
			hdr = "";
		}
	}
	if ((fc->what & MSGSUM_FP) && hdr != NULL) {
		msgsum_fingerprint(hdr, hdr_len, m->size, m->internaldate, m->fp,
		                   &m->message_id);
		m->have_fp = true;
	}
}

static void
fetch_done(void *ctx, const struct imap_response *tagged, const char *error)
{
	struct fetch_ctx *fc = ctx;

	if (fc->error != NULL)
		return;
	if (tagged == NULL)
		fc->error = xstrdup(error);
	else if (tagged->status != IMAP_STATUS_OK)
		fc->error = xasprintf("UID FETCH refused: %s", tagged->text);
}

static int
cmp_uid(const void *a, const void *b)
{
	uint32_t x = ((const struct msgsum *)a)->uid, y = ((const struct msgsum *)b)->uid;

	return x < y ? -1 : x > y;
}

static int fetch_items(struct imap_client *c, const char *uidset,
                       unsigned what, uint64_t changedsince,
                       struct msgsum_list *list, const char **error_r);

int
msgsum_fetch(struct imap_client *c, const char *uidset, unsigned what,
             struct msgsum_list *list, const char **error_r)
{
	return fetch_items(c, uidset, what, 0, list, error_r);
}

int
msgsum_fetch_changed(struct imap_client *c, const char *uidset,
                     uint64_t changedsince, unsigned what,
                     struct msgsum_list *list, const char **error_r)
{
	return fetch_items(c, uidset, what, changedsince, list, error_r);
}

struct search_ctx {
	uint32_t *uids;
	size_t count, alloc;
	char *error;
};

static void
search_untagged(void *ctx, const struct imap_response *resp)
{
	struct search_ctx *sc = ctx;
	const struct imap_search_data *sd;

	if (resp->kind != IMAP_RESP_UNTAGGED ||
	    (resp->type != IMAP_UNTAGGED_SEARCH &&
	     resp->type != IMAP_UNTAGGED_ESEARCH))
		return;
	sd = &resp->u.search;
	if (sc->count + sd->count > sc->alloc) {
		sc->alloc = sc->count + sd->count + 64;
		sc->uids = xreallocarray(sc->uids, sc->alloc, sizeof(uint32_t));
	}
	memcpy(sc->uids + sc->count, sd->nums, sd->count * sizeof(uint32_t));
	sc->count += sd->count;
}

static void
search_done(void *ctx, const struct imap_response *tagged, const char *error)
{
	struct search_ctx *sc = ctx;

	if (tagged == NULL)
		sc->error = xstrdup(error);
	else if (tagged->status != IMAP_STATUS_OK)
		sc->error = xasprintf("UID SEARCH refused: %s", tagged->text);
}

int
msgsum_uids_range(struct imap_client *c, uint32_t lo, uint32_t hi,
                  uint32_t **uids_r, size_t *count_r, const char **error_r)
{
	struct search_ctx sc = { 0 };
	struct imap_cmd *cmd = imap_cmd_new(c);
	bool esearch = imap_client_has_cap(c, "ESEARCH");
	size_t k = 0;

	if (lo <= 1 && hi == UINT32_MAX)
		imap_cmd_add(cmd, esearch ? "UID SEARCH RETURN (ALL) ALL" :
		                            "UID SEARCH ALL");
	else if (hi == UINT32_MAX)
		imap_cmd_addf(cmd, "UID SEARCH %sUID %" PRIu32 ":*",
		              esearch ? "RETURN (ALL) " : "", lo);
	else
		imap_cmd_addf(cmd, "UID SEARCH %sUID %" PRIu32 ":%" PRIu32,
		              esearch ? "RETURN (ALL) " : "", lo, hi);
	imap_cmd_set_untagged(cmd, search_untagged, &sc);
	imap_cmd_submit(cmd, search_done, &sc);
	if (imap_client_run(c, error_r) < 0 || sc.error != NULL) {
		if (sc.error != NULL)
			*error_r = err_set("%s", sc.error);
		free(sc.error);
		free(sc.uids);
		return -1;
	}
	qsort(sc.uids, sc.count, sizeof(*sc.uids), cmp_u32);
	/* "lo:*" names the last message even below lo (RFC 9051 6.4.8) */
	for (size_t i = 0; i < sc.count; i++)
		if (sc.uids[i] >= lo && sc.uids[i] <= hi)
			sc.uids[k++] = sc.uids[i];
	*uids_r = sc.uids;
	*count_r = k;
	return 0;
}

static int
fetch_items(struct imap_client *c, const char *uidset, unsigned what,
            uint64_t changedsince, struct msgsum_list *list,
            const char **error_r)
{
	static const struct imap_literal_sink hash_sink = {
		.begin = hs_begin, .data = hs_data, .end = hs_end,
		.abort = hs_release, .release = hs_release,
	};
	struct fetch_ctx fc = { .list = list, .what = what };
	struct imap_cmd *cmd = imap_cmd_new(c);
	int ret = 0;

	imap_cmd_addf(cmd, "UID FETCH %s (UID", uidset);
	if (what & MSGSUM_FLAGS)
		imap_cmd_add(cmd, " FLAGS");
	if (what & (MSGSUM_META | MSGSUM_FP))
		imap_cmd_add(cmd, " INTERNALDATE RFC822.SIZE");
	if (what & MSGSUM_FP)
		imap_cmd_add(cmd, " BODY.PEEK[HEADER.FIELDS (" FP_FIELDS ")]");
	if (what & MSGSUM_BODY)
		imap_cmd_add(cmd, " BODY.PEEK[]");
	imap_cmd_add(cmd, ")");
	if (changedsince != 0)
		imap_cmd_addf(cmd, " (CHANGEDSINCE %llu)",
		              (unsigned long long)changedsince);
	imap_cmd_set_untagged(cmd, fetch_untagged, &fc);
	if (what & MSGSUM_BODY)
		imap_client_set_literal_sink(c, &hash_sink);
	imap_cmd_submit(cmd, fetch_done, &fc);
	if (imap_client_run(c, error_r) < 0)
		ret = -1;
	if (what & MSGSUM_BODY)
		imap_client_set_literal_sink(c, NULL);
	if (ret == 0 && fc.error != NULL) {
		*error_r = err_set("%s", fc.error);
		ret = -1;
	}
	free(fc.error);
	if (list->count > 1)
		qsort(list->items, list->count, sizeof(*list->items), cmp_uid);
	return ret;
}

void
msgsum_list_free(struct msgsum_list *list)
{
	for (size_t i = 0; i < list->count; i++) {
		free(list->items[i].flags);
		free(list->items[i].message_id);
	}
	free(list->items);
	memset(list, 0, sizeof(*list));
}

struct msgsum *
msgsum_find(const struct msgsum_list *list, uint32_t uid)
{
	size_t lo = 0, hi = list->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (list->items[mid].uid == uid)
			return &list->items[mid];
		if (list->items[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* 16 bytes per message: the first 8 bytes of the fingerprint as the sort
 * key, the whole one compared in the list (a folder of a million
 * unknown messages: 16 MB of index, not 40). */
struct msgsum_fpentry {
	uint64_t key;
	uint32_t pos;             /* in list->items */
};

static uint64_t
fp_key(const unsigned char fp[32])
{
	uint64_t k = 0;

	for (int i = 0; i < 8; i++)
		k = k << 8 | fp[i];
	return k;
}

static int
cmp_fpentry(const void *a, const void *b)
{
	const struct msgsum_fpentry *x = a, *y = b;

	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

void
msgsum_fpindex_init(struct msgsum_fpindex *ix, struct msgsum_list *list)
{
	ix->list = list;
	ix->count = 0;
	ix->entries = xcalloc(list->count + 1, sizeof(*ix->entries));
	ix->taken = xcalloc(list->count + 1, sizeof(bool));
	for (size_t i = 0; i < list->count; i++) {
		if (!list->items[i].have_fp)
			continue;
		ix->entries[ix->count].key = fp_key(list->items[i].fp);
		ix->entries[ix->count].pos = (uint32_t)i;
		ix->count++;
	}
	qsort(ix->entries, ix->count, sizeof(*ix->entries), cmp_fpentry);
}

/* Whether d can be a copy of s as a target stores it: the same size and
 * INTERNALDATE, or what a server's normalisation makes of them. */
static bool
alike(const struct msgsum *s, const struct msgsum *d, int64_t now, bool exact)
{
	bool size_ok, date_ok;

	if (exact)
		return s->size == d->size && s->internaldate == d->internaldate;
	/* Dovecot drops a final bare CR (-1), Courier adds a final CRLF
	 * (+2) to a message that lacks one */
	size_ok = d->size == s->size || d->size + 1 == s->size ||
	          d->size == s->size + 2 || d->size == s->size + 1;
	/* a future INTERNALDATE becomes the APPEND time (in the past now) */
	date_ok = d->internaldate == s->internaldate ||
	          (s->internaldate > now && d->internaldate <= now &&
	           d->internaldate < s->internaldate);
	return size_ok && date_ok;
}

struct msgsum *
msgsum_fpindex_match(struct msgsum_fpindex *ix, const struct msgsum *s,
                     int64_t now)
{
	size_t lo = 0, hi = ix->count, first;
	uint64_t key;

	if (!s->have_fp)
		return NULL;
	key = fp_key(s->fp);
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ix->entries[mid].key < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	first = lo;
	/* exactly alike first, then through a normalisation; entries of the
	 * same key whose whole fingerprint differs are skipped */
	for (int pass = 0; pass < 2; pass++) {
		for (lo = first; lo < ix->count && ix->entries[lo].key == key; lo++) {
			size_t pos = ix->entries[lo].pos;
			const struct msgsum *d = &ix->list->items[pos];

			if (!ix->taken[pos] && memcmp(d->fp, s->fp, 32) == 0 &&
			    alike(s, d, now, pass == 0)) {
				ix->taken[pos] = true;
				return &ix->list->items[pos];
			}
		}
	}
	return NULL;
}

bool
msgsum_fpindex_taken(const struct msgsum_fpindex *ix, const struct msgsum *m)
{
	return ix->taken[m - ix->list->items];
}

void
msgsum_fpindex_mark(struct msgsum_fpindex *ix, const struct msgsum *m)
{
	ix->taken[m - ix->list->items] = true;
}

void
msgsum_fpindex_free(struct msgsum_fpindex *ix)
{
	free(ix->entries);
	free(ix->taken);
	memset(ix, 0, sizeof(*ix));
}

struct msgsum *
msgsum_list_add(struct msgsum_list *list)
{
	struct msgsum *m;

	if (list->count == list->alloc) {
		list->alloc = list->alloc == 0 ? 256 : list->alloc * 2;
		list->items = xreallocarray(list->items, list->alloc,
		                            sizeof(*list->items));
	}
	m = &list->items[list->count++];
	memset(m, 0, sizeof(*m));
	return m;
}
