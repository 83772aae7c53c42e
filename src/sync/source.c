/* source.c: IMAP, Maildir and Cyrus spool sources behind one interface
 * (source.h). */
#define _GNU_SOURCE 1 /* O_TMPFILE */
#include "source.h"

#include "buf.h"
#include "flags.h"
#include "log.h"
#include "uidset.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MEM_BODY_MAX (1024 * 1024)

int
source_connect(struct source *s, bool *refused_r, const char **error_r)
{
	struct stat st;

	*refused_r = false;
	if (s->kind == SOURCE_IMAP) {
		if (s->root != NULL && s->cy.user != NULL && s->cyrus == NULL &&
		    cyrus_account_open(s->root, &s->cy, &s->cyrus, error_r) < 0) {
			*refused_r = true;
			return -1;
		}
		if (imap_client_connect(s->imap, &s->client, refused_r, error_r) < 0)
			return -1;
		/* MODSEQ in every FETCH and STATUS from now on */
		if (imap_client_enable(s->client, "CONDSTORE", error_r) < 0) {
			imap_client_free(&s->client);
			return -1;
		}
		/* idle from here until the next call (keepalive.h) */
		s->keep = imap_keep_add(s->keeper, s->client, "source");
		imap_keep_park(s->keep);
		return 0;
	}
	if (s->kind == SOURCE_CYRUS) {
		/* offline: a bad root or user will not get better by retrying */
		if (cyrus_account_open(s->root, &s->cy, &s->cyrus, error_r) < 0) {
			*refused_r = true;
			return -1;
		}
		return 0;
	}
	if (stat(s->root, &st) < 0 || !S_ISDIR(st.st_mode)) {
		*error_r = err_set("%s: not a Maildir directory", s->root);
		*refused_r = true;
		return -1;
	}
	return 0;
}

void
source_adopt(struct source *s)
{
	if (s->client != NULL && s->keep == NULL) {
		s->keep = imap_keep_add(s->keeper, s->client, "source");
		imap_keep_park(s->keep);
	}
}

void
source_take_session(struct source *s, struct imap_client **c)
{
	const char *error;

	if (s->kind != SOURCE_IMAP || s->root != NULL || s->client != NULL) {
		imap_client_logout(c);
		return;
	}
	if (imap_client_enable(*c, "CONDSTORE", &error) < 0) {
		log_debug("source: the probing session: %s", error);
		imap_client_free(c);
		return;
	}
	s->client = *c;
	*c = NULL;
}

void
source_disconnect(struct source *s)
{
	imap_keep_remove(&s->keep);
	if (s->client != NULL)
		imap_client_free(&s->client);
	if (s->folder != NULL)
		maildir_folder_close(&s->folder);
	if (s->cfolder != NULL)
		cyrus_folder_close(&s->cfolder);
	if (s->cyrus != NULL)
		cyrus_account_free(&s->cyrus);
}

void
source_logout(struct source *s)
{
	imap_keep_remove(&s->keep);
	if (s->client != NULL)
		imap_client_logout(&s->client);
	source_disconnect(s);
}

bool
source_is_connected(const struct source *s)
{
	return s->kind == SOURCE_MAILDIR || s->client != NULL || s->cyrus != NULL;
}

bool
source_is_dead(const struct source *s)
{
	bool dead;

	if (s->kind != SOURCE_IMAP || s->client == NULL)
		return s->kind == SOURCE_IMAP;
	imap_keep_take(s->keep);
	dead = imap_client_is_dead(s->client);
	imap_keep_park(s->keep);
	return dead;
}

/* ------------------------------------------------------------- Maildir */

static char *
md_name_of(const char *dirname)
{
	return xstrdup(dirname[0] == '\0' ? "INBOX" : dirname + 1);
}

static char *
md_dirname_of(const char *name)
{
	return str_ieq(name, "INBOX") ? xstrdup("") : xasprintf(".%s", name);
}

static int
md_inventory(struct source *s, unsigned flags, struct imap_account_info *info,
             const char **error_r)
{
	char **dirs = NULL, **subs = NULL;
	size_t n = 0, n_subs = 0;

	memset(info, 0, sizeof(*info));
	if (maildir_list_folders(s->root, &dirs, &n, error_r) < 0)
		return -1;
	if ((flags & IMAP_INV_SUBSCRIBED) &&
	    maildir_subscriptions_read(s->root, s->md.flavor, '.', &subs, &n_subs,
	                               error_r) < 0) {
		maildir_strv_free(&dirs, n);
		return -1;
	}
	info->boxes = xcalloc(n + 1, sizeof(*info->boxes));
	info->separator = '.';
	for (size_t i = 0; i < n; i++) {
		struct imap_mailbox_info *box = &info->boxes[info->count];
		struct maildir_folder *f;
		const char *error;

		memset(box, 0, sizeof(*box));
		box->name = md_name_of(dirs[i]);
		box->name_len = strlen(box->name);
		box->delimiter = '.';
		box->attr_names = xcalloc(1, sizeof(char *));
		box->selectable = true;
		for (size_t k = 0; k < n_subs; k++) {
			const char *sub = subs[k];

			if (str_has_iprefix(sub, "INBOX.") && !str_ieq(box->name, "INBOX"))
				sub += 6;
			if (strcmp(sub, box->name) == 0 ||
			    (str_ieq(sub, "INBOX") && str_ieq(box->name, "INBOX")))
				box->subscribed = true;
		}
		if ((flags & (IMAP_INV_STATUS | IMAP_INV_SIZE)) &&
		    maildir_folder_open(s->root, dirs[i], &s->md, false, &f,
		                        &error) == 0) {
			box->have_status = true;
			box->uidvalidity = maildir_folder_uidvalidity(f);
			box->uidnext = maildir_folder_uidnext(f);
			box->messages = (uint32_t)maildir_folder_count(f);
			maildir_folder_close(&f);
		}
		info->count++;
	}
	maildir_strv_free(&dirs, n);
	maildir_strv_free(&subs, n_subs);
	return 0;
}

static int
md_select(struct source *s, const char *name, struct source_folder *st,
          const char **error_r)
{
	char *dirname = md_dirname_of(name);
	int ret;

	if (s->folder != NULL)
		maildir_folder_close(&s->folder);
	ret = maildir_folder_open(s->root, dirname, &s->md, false, &s->folder,
	                          error_r);
	free(dirname);
	if (ret < 0)
		return -1;
	if (maildir_folder_uidvalidity(s->folder) == 0) {
		*error_r = err_set("%s: the Maildir folder has no uidlist yet (let "
		                   "its server open it once): its UIDs are unknown",
		                   name);
		maildir_folder_close(&s->folder);
		return -1;
	}
	memset(st, 0, sizeof(*st));
	st->uidvalidity = maildir_folder_uidvalidity(s->folder);
	st->uidnext = maildir_folder_uidnext(s->folder);
	st->exists = (uint32_t)maildir_folder_count(s->folder);
	return 0;
}

/* Reads a message as a server would serve it: bare LF becomes CRLF. Small
 * messages go to memory (*data_r), large ones to an unlinked spool file
 * (*fd_r). Returns 0 or -1 with *error_r. */
static int
md_read_msg(struct maildir_folder *f, uint32_t uid, const char *spool_dir,
            char **data_r, int *fd_r, uint64_t *size_r, const char **error_r)
{
	char in[65536], out[131072], prev = '\0';
	uint64_t fsize, total = 0;
	struct buf mem;
	int fd, spool = -1;
	ssize_t n;

	*data_r = NULL;
	*fd_r = -1;
	if (maildir_open_msg(f, uid, &fd, &fsize, error_r) < 0)
		return -1;
	buf_init(&mem, (size_t)2 * MEM_BODY_MAX + 2);
	while ((n = read(fd, in, sizeof(in))) > 0) {
		size_t o = 0;

		for (ssize_t i = 0; i < n; i++) {
			if (in[i] == '\n' && prev != '\r')
				out[o++] = '\r';
			out[o++] = in[i];
			prev = in[i];
		}
		total += o;
		if (spool < 0 && total > MEM_BODY_MAX) {
			spool = open(spool_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
			if (spool < 0) {
				*error_r = err_errno(errno, "spool file in %s: %s", spool_dir,
				                   strerror(errno));
				goto fail;
			}
			if (write(spool, buf_data(&mem), buf_len(&mem)) !=
			    (ssize_t)buf_len(&mem))
				goto write_fail;
			buf_free(&mem);
		}
		if (spool >= 0) {
			if (write(spool, out, o) != (ssize_t)o)
				goto write_fail;
		} else if (buf_append(&mem, out, o) < 0) {
			*error_r = "message buffer";
			goto fail;
		}
	}
	if (n < 0) {
		*error_r = err_errno(errno, "reading UID %u: %s", uid, strerror(errno));
		goto fail;
	}
	close(fd);
	*size_r = total;
	if (spool >= 0) {
		lseek(spool, 0, SEEK_SET);
		*fd_r = spool;
	} else {
		*data_r = buf_take(&mem);
	}
	return 0;
write_fail:
	*error_r = err_errno(errno, "writing spool file: %s", strerror(errno));
fail:
	if (spool >= 0)
		close(spool);
	close(fd);
	buf_free(&mem);
	return -1;
}

/* The header fields an IMAP server returns for BODY.PEEK[HEADER.FIELDS
 * (MESSAGE-ID DATE FROM TO SUBJECT)], from the message bytes. */
static void
header_fields(const char *msg, size_t len, struct buf *out)
{
	static const char *const names[] = {
		"message-id:", "date:", "from:", "to:", "subject:",
	};
	const char *p = msg, *end = msg + len;

	while (p < end && *p != '\r' && *p != '\n') {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *next = eol != NULL ? eol + 1 : end;
		bool want = false;

		while (next < end && (*next == ' ' || *next == '\t')) {
			eol = memchr(next, '\n', (size_t)(end - next));
			next = eol != NULL ? eol + 1 : end;
		}
		for (size_t i = 0; i < N_ELEMENTS(names) && !want; i++)
			want = str_has_iprefix(p, names[i]);
		if (want && buf_append(out, p, (size_t)(next - p)) < 0)
			return;
		p = next;
	}
	ignore_result(buf_append(out, "\r\n", 2));
}

static int
md_list(struct source *s, const uint32_t *uids, size_t n, unsigned what,
        struct msgsum_list *list, const char **error_r)
{
	struct maildir_folder *f = s->folder;
	size_t count = uids != NULL ? n : maildir_folder_count(f);

	for (size_t i = 0; i < count; i++) {
		struct maildir_msg mm, *m = &mm;
		struct msgsum *sum;
		uint64_t size;

		if (!(uids != NULL ? maildir_folder_find(f, uids[i], m) :
		      maildir_folder_msg(f, i, m)))
			continue;
		sum = msgsum_list_add(list);
		sum->uid = m->uid;
		sum->flags = xstrdup(m->flags);
		sum->internaldate = m->mtime;
		if ((what & (MSGSUM_META | MSGSUM_FP)) &&
		    maildir_msg_size(f, sum->uid, &size, error_r) == 0)
			sum->size = size;
		if (what & (MSGSUM_FP | MSGSUM_BODY)) {
			char *data = NULL;
			int fd = -1;
			struct buf hdr;

			if (md_read_msg(f, sum->uid, "/tmp", &data, &fd, &size,
			                error_r) < 0)
				continue;
			if (fd >= 0) {
				/* large: hash from the spool file */
				data = xmalloc(size + 1);
				if (read(fd, data, size) != (ssize_t)size)
					size = 0;
				close(fd);
			}
			buf_init(&hdr, 1 << 20);
			header_fields(data, size, &hdr);
			msgsum_fingerprint(buf_data(&hdr), buf_len(&hdr), sum->size,
			                   sum->internaldate, sum->fp, &sum->message_id);
			sum->have_fp = true;
			buf_free(&hdr);
			if (what & MSGSUM_BODY) {
				unsigned int n32 = 32;
				EVP_Digest(data, size, sum->body_sha, &n32, EVP_sha256(), NULL);
				sum->have_body = true;
			}
			free(data);
		}
	}
	return 0;
}

/* ---------------------------------------------------------- Cyrus spool */

static int
cy_inventory(struct source *s, unsigned flags, struct imap_account_info *info,
             const char **error_r)
{
	size_t n = cyrus_account_count(s->cyrus);

	memset(info, 0, sizeof(*info));
	info->boxes = xcalloc(n + 1, sizeof(*info->boxes));
	info->separator = '/';
	for (size_t i = 0; i < n; i++) {
		const struct cyrus_mailbox *mb = cyrus_account_mailbox(s->cyrus, i);
		struct imap_mailbox_info *box = &info->boxes[info->count++];
		struct cyrus_folder *f;
		const char *error;

		memset(box, 0, sizeof(*box));
		box->name = xstrdup(mb->name);
		box->name_len = strlen(box->name);
		box->delimiter = '/';
		box->attr_names = xcalloc(1, sizeof(char *));
		box->selectable = true;
		box->subscribed = mb->subscribed;
		if (!(flags & (IMAP_INV_STATUS | IMAP_INV_SIZE)))
			continue;
		if (cyrus_folder_open(s->cyrus, mb->name, &f, NULL, &error) < 0) {
			/* listed without status: selecting it reports the error */
			log_warn("Cyrus mailbox %s: %s", mb->name, error);
			continue;
		}
		box->have_status = true;
		box->uidvalidity = cyrus_folder_uidvalidity(f);
		box->uidnext = cyrus_folder_uidnext(f);
		box->messages = (uint32_t)cyrus_folder_index(f)->count;
		box->highestmodseq = cyrus_folder_index(f)->highestmodseq;
		if (flags & IMAP_INV_SIZE) {
			const struct cyrus_index *ix = cyrus_folder_index(f);

			for (size_t k = 0; k < ix->count; k++)
				box->size += ix->records[k].size;
			box->have_size = true;
			box->size_source = "status";
		}
		cyrus_folder_close(&f);
	}
	return 0;
}

static int
cy_select(struct source *s, const char *name, struct source_folder *st,
          const char **error_r)
{
	if (s->cfolder != NULL)
		cyrus_folder_close(&s->cfolder);
	if (cyrus_folder_open(s->cyrus, name, &s->cfolder, NULL, error_r) < 0)
		return -1;
	memset(st, 0, sizeof(*st));
	st->uidvalidity = cyrus_folder_uidvalidity(s->cfolder);
	st->uidnext = cyrus_folder_uidnext(s->cfolder);
	st->exists = (uint32_t)cyrus_folder_index(s->cfolder)->count;
	st->highestmodseq = cyrus_folder_index(s->cfolder)->highestmodseq;
	return 0;
}

/* The spool file of a record, served as Cyrus serves it (byte for byte:
 * Cyrus stores CRLF). Up to MEM_BODY_MAX bytes go to memory (*data_r),
 * larger files are handed over as their own read-only fd (*fd_r, at
 * offset 0) unless in_memory. A missing file or one whose size differs
 * from the index (changed or torn while copied) is an error
 * (ERRK_MESSAGE); why_r (may be NULL) then tells which. */
static int
cy_read_file(const struct cyrus_folder *f, uint32_t uid, uint64_t want_size,
             bool in_memory, char **data_r, int *fd_r, uint64_t *size_r,
             enum source_body_why *why_r, const char **error_r)
{
	enum source_body_why why_unused;
	uint64_t fsize, got = 0;
	bool missing;
	char *data;
	int fd;

	if (why_r == NULL)
		why_r = &why_unused;
	*data_r = NULL;
	*fd_r = -1;
	if (cyrus_folder_open_msg(f, uid, &fd, &fsize, &missing, error_r) < 0) {
		*why_r = missing ? SOURCE_BODY_MISSING : SOURCE_BODY_ERROR;
		return -1;
	}
	if (fsize != want_size) {
		*why_r = SOURCE_BODY_SIZE;
		*error_r = err_setk(ERRK_MESSAGE, "spool file %u.: %" PRIu64 " bytes, "
		                    "expected %" PRIu64, uid, fsize, want_size);
		close(fd);
		return -1;
	}
	*size_r = fsize;
	if (fsize > MEM_BODY_MAX && !in_memory) {
		*fd_r = fd;
		return 0;
	}
	data = xmalloc((size_t)fsize + 1);
	while (got < fsize) {
		ssize_t n = read(fd, data + got, (size_t)(fsize - got));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			*why_r = SOURCE_BODY_ERROR;
			*error_r = err_setk(ERRK_MESSAGE, "spool file %u.: %s", uid,
			                    n < 0 ? strerror(errno) : "shrank while read");
			free(data);
			close(fd);
			return -1;
		}
		got += (uint64_t)n;
	}
	data[fsize] = '\0';
	close(fd);
	*data_r = data;
	return 0;
}

static int
cy_read_msg(const struct cyrus_folder *f, const struct cyrus_record *rec,
            bool in_memory, char **data_r, int *fd_r, uint64_t *size_r,
            const char **error_r)
{
	return cy_read_file(f, rec->uid, rec->size, in_memory, data_r, fd_r,
	                    size_r, NULL, error_r);
}

static void header_fields(const char *msg, size_t len, struct buf *out);

static int
cy_list(struct source *s, const uint32_t *uids, size_t n, unsigned what,
        struct msgsum_list *list, const char **error_r)
{
	const struct cyrus_folder *f = s->cfolder;
	const struct cyrus_index *ix = cyrus_folder_index(f);
	size_t count = uids != NULL ? n : ix->count;

	for (size_t i = 0; i < count; i++) {
		const struct cyrus_record *r = uids != NULL ?
		    cyrus_folder_find(f, uids[i]) : &ix->records[i];
		struct msgsum *sum;
		char *fl;

		if (r == NULL)
			continue;
		sum = msgsum_list_add(list);
		sum->uid = r->uid;
		fl = cyrus_folder_flags(f, r);
		sum->flags = flags_canonical_str(fl);
		free(fl);
		sum->internaldate = r->internaldate;
		sum->size = r->size;
		if (what & (MSGSUM_FP | MSGSUM_BODY)) {
			char *data;
			uint64_t size;
			int fd;
			struct buf hdr;
			const char *error;

			if (cy_read_msg(f, r, true, &data, &fd, &size, &error) < 0) {
				log_warn("Cyrus UID %u: %s", r->uid, error);
				continue;
			}
			buf_init(&hdr, 1 << 20);
			header_fields(data, (size_t)size, &hdr);
			msgsum_fingerprint(buf_data(&hdr), buf_len(&hdr), sum->size,
			                   sum->internaldate, sum->fp, &sum->message_id);
			sum->have_fp = true;
			buf_free(&hdr);
			if (what & MSGSUM_BODY) {
				unsigned int n32 = 32;
				EVP_Digest(data, (size_t)size, sum->body_sha, &n32,
				           EVP_sha256(), NULL);
				sum->have_body = true;
			}
			free(data);
		}
	}
	(void)error_r;
	return 0;
}


/* ------------------------------------------------------ hybrid (IMAP) */

/* The spool folder of the IMAP folder just selected: "INBOX.A.B" (Cyrus's
 * legacy namespace) or "A/B" (altnamespace) is "A/B" in the spool. Kept
 * only when its UIDVALIDITY is the server's: another one means the copy
 * is of another incarnation of the folder, and every body comes over
 * IMAP (s->hy_why says why). */
static void
hy_select(struct source *s, const char *name, uint32_t uidvalidity)
{
	char sep = s->imap_sep != '\0' ? s->imap_sep : '.';
	char *cname;
	const char *error;
	bool missing;

	if (s->cfolder != NULL)
		cyrus_folder_close(&s->cfolder);
	if (str_ieq(name, "INBOX"))
		cname = xstrdup("INBOX");
	else if (str_has_iprefix(name, "INBOX") && name[5] == sep)
		cname = xstrdup(name + 6);
	else
		cname = xstrdup(name);
	for (char *c = cname; *c != '\0' && sep != '/'; c++)
		if (*c == sep)
			*c = '/';
	if (cyrus_folder_open(s->cyrus, cname, &s->cfolder, &missing,
	                      &error) < 0) {
		log_warn("%s: bodies over IMAP: %s", name, error);
		s->hy_why = missing ? SOURCE_BODY_MISSING : SOURCE_BODY_ERROR;
	} else if (cyrus_folder_uidvalidity(s->cfolder) != uidvalidity) {
		s->hy_why = SOURCE_BODY_UIDVALIDITY;
		log_warn("%s: bodies over IMAP: the spool copy has UIDVALIDITY %u, "
		         "the server %u", name, cyrus_folder_uidvalidity(s->cfolder),
		         uidvalidity);
		cyrus_folder_close(&s->cfolder);
	}
	free(cname);
}

/* -------------------------------------------------------------- readers */

struct source_reader {
	struct source *s;
	struct fetch_reader *imap;
	/* Maildir */
	const uint32_t *uids;
	size_t count;
	struct mqueue *q;
	struct fetch_reader_options o;  /* o.keep NULL: see keep */
	struct imap_keep *keep;   /* hybrid: parked when the thread ends */
	char *error;
	pthread_t thread;
};

static void *
md_reader_main(void *arg)
{
	struct source_reader *r = arg;
	const char *spool = r->o.spool_dir != NULL ? r->o.spool_dir :
	                    (getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");

	for (size_t i = 0; i < r->count && !mqueue_is_aborted(r->q); i++) {
		struct maildir_msg mm, *m = &mm;
		struct cmsg *c;
		const char *error;

		if (!maildir_folder_find(r->s->folder, r->uids[i], m))
			continue;
		if (r->o.skip_deleted && flags_has(m->flags, "\\Deleted"))
			continue;
		c = xcalloc(1, sizeof(*c));
		c->uid = m->uid;
		c->flags = xstrdup(m->flags);
		c->internaldate = m->mtime;
		if (md_read_msg(r->s->folder, m->uid, spool, &c->data, &c->fd,
		                &c->size, &error) < 0) {
			/* a vanished file is an expunge, not a session error */
			log_warn("Maildir UID %u: %s", m->uid, error);
			cmsg_free(&c);
			continue;
		}
		if (mqueue_push(r->q, c) < 0)
			break;
	}
	mqueue_close(r->q);
	return NULL;
}

static void *
cy_reader_main(void *arg)
{
	struct source_reader *r = arg;
	const struct cyrus_folder *f = r->s->cfolder;

	for (size_t i = 0; i < r->count && !r->q->aborted; i++) {
		const struct cyrus_record *rec = cyrus_folder_find(f, r->uids[i]);
		struct cmsg *c;
		const char *error;
		char *fl;

		if (rec == NULL)
			continue;
		if (r->o.skip_deleted && (rec->system_flags & CYRUS_FLAG_DELETED))
			continue;
		c = xcalloc(1, sizeof(*c));
		c->uid = rec->uid;
		fl = cyrus_folder_flags(f, rec);
		c->flags = flags_canonical_str(fl);
		free(fl);
		c->internaldate = rec->internaldate;
		if (cy_read_msg(f, rec, false, &c->data, &c->fd, &c->size, &error) < 0) {
			/* the next pass finds it again (a copy taken while the
			 * server ran may lag its index) */
			log_warn("Cyrus UID %u: %s", rec->uid, error);
			cmsg_free(&c);
			continue;
		}
		if (mqueue_push(r->q, c) < 0)
			break;
	}
	mqueue_close(r->q);
	return NULL;
}

static void
count_spool(struct source *s)
{
	if (s->body_stats != NULL)
		__atomic_fetch_add(&s->body_stats->from_spool, 1, __ATOMIC_RELAXED);
}

static void
count_imap(struct source *s, enum source_body_why why, uint64_t n)
{
	struct source_body_stats *bs = s->body_stats;
	uint64_t *reason;

	if (bs == NULL || n == 0)
		return;
	switch (why) {
	case SOURCE_BODY_MISSING:
		reason = &bs->missing;
		break;
	case SOURCE_BODY_SIZE:
		reason = &bs->size;
		break;
	case SOURCE_BODY_UIDVALIDITY:
		reason = &bs->uidvalidity;
		break;
	default:
		reason = &bs->error;
		break;
	}
	__atomic_fetch_add(reason, n, __ATOMIC_RELAXED);
	__atomic_fetch_add(&bs->from_imap, n, __ATOMIC_RELAXED);
}

/* Fetches uids over IMAP into r->q, in order: through a private queue
 * drained into r->q (a fetch reader closes the queue it fills). Each
 * body handed on is counted as over IMAP for its reason: whys[i] for
 * uids[i], or why for all when whys is NULL. Returns 0, or -1 when the
 * consumer aborted or the session failed (r->error). */
static int
hy_fetch_imap(struct source_reader *r, const uint32_t *uids,
              const enum source_body_why *whys, size_t n,
              enum source_body_why why)
{
	struct mqueue tq;
	struct fetch_reader *fr;
	struct cmsg *list;
	uint64_t passed = 0;
	uint32_t uid;
	size_t k = 0;
	char *error;
	int ret = 0;

	mqueue_init(&tq, 64, 64u << 20);
	fr = fetch_reader_start(r->s->client, uids, n, &tq, &r->o);
	while ((list = mqueue_pop_batch(&tq, 64, UINT64_MAX)) != NULL) {
		while (list != NULL) {
			struct cmsg *m = list;

			list = m->next;
			m->next = NULL;
			if (ret < 0) {
				cmsg_free(&m);
				continue;
			}
			uid = m->uid;
			if (mqueue_push(r->q, m) < 0) {
				ret = -1;
				mqueue_abort(&tq);
				continue;
			}
			/* both ascending: the reason of the UID handed on */
			while (whys != NULL && k < n && uids[k] < uid)
				k++;
			if (whys != NULL && k < n && uids[k] == uid)
				count_imap(r->s, whys[k], 1);
			else
				passed++;
		}
	}
	error = fetch_reader_join(&fr);
	mqueue_deinit(&tq);
	count_imap(r->s, why, passed);
	if (error != NULL) {
		r->error = error;
		return -1;
	}
	return ret;
}

/* The hybrid reader: per batch one UID FETCH (UID FLAGS INTERNALDATE
 * RFC822.SIZE), then each body from its spool file when the file has
 * exactly RFC822.SIZE bytes, else over IMAP, in UID order. A folder
 * without a usable spool copy (cfolder NULL) comes over IMAP whole. */
static void *
hy_reader_main(void *arg)
{
	struct source_reader *r = arg;
	const struct cyrus_folder *f = r->s->cfolder;
	size_t batch = r->o.batch != 0 ? r->o.batch : 500;
	uint32_t *fb = xcalloc(batch + 1, sizeof(*fb));
	enum source_body_why *fb_why = xcalloc(batch + 1, sizeof(*fb_why));
	bool stop = false;

	if (f == NULL) {
		ignore_result(hy_fetch_imap(r, r->uids, NULL, r->count,
		                            r->s->hy_why));
		stop = true;
	}

	for (size_t at = 0; at < r->count && !stop && !r->q->aborted; at += batch) {
		size_t n = r->count - at < batch ? r->count - at : batch, n_fb = 0;
		struct msgsum_list meta = { 0 };
		char *set = uidset_string(r->uids + at, n);
		const char *error;

		if (msgsum_fetch(r->s->client, set, MSGSUM_FLAGS | MSGSUM_META, &meta,
		                 &error) < 0) {
			r->error = xstrdup(error);
			stop = true;
		}
		free(set);
		for (size_t i = 0; i < n && !stop && !r->q->aborted; i++) {
			const struct msgsum *m = msgsum_find(&meta, r->uids[at + i]);
			struct cmsg *c;

			if (m == NULL)
				continue;       /* expunged on the server meanwhile */
			if (r->o.skip_deleted && flags_has(m->flags, "\\Deleted"))
				continue;
			c = xcalloc(1, sizeof(*c));
			c->fd = -1;
			if (cy_read_file(f, m->uid, m->size, false, &c->data, &c->fd,
			                 &c->size, &fb_why[n_fb], &error) < 0) {
				cmsg_free(&c);
				fb[n_fb++] = m->uid;
				continue;
			}
			/* what could not come from the spool goes first: UID order */
			if (n_fb > 0 && hy_fetch_imap(r, fb, fb_why, n_fb,
			                              SOURCE_BODY_ERROR) < 0) {
				cmsg_free(&c);
				stop = true;
				break;
			}
			n_fb = 0;
			c->uid = m->uid;
			c->flags = xstrdup(m->flags);
			c->internaldate = m->internaldate;
			if (mqueue_push(r->q, c) < 0)
				stop = true;
			else
				count_spool(r->s);
		}
		if (!stop && n_fb > 0 && hy_fetch_imap(r, fb, fb_why, n_fb,
		                                       SOURCE_BODY_ERROR) < 0)
			stop = true;
		msgsum_list_free(&meta);
	}
	free(fb);
	free(fb_why);
	imap_keep_park(r->keep);
	mqueue_close(r->q);
	return NULL;
}

struct source_reader *
source_reader_start(struct source *s, const uint32_t *uids, size_t count,
                    struct mqueue *q, const struct fetch_reader_options *o)
{
	struct source_reader *r = xcalloc(1, sizeof(*r));

	r->s = s;
	/* the reader's until it parks it (reader.h) */
	imap_keep_take(s->keep);
	if (s->kind == SOURCE_IMAP && s->cyrus == NULL) {
		struct fetch_reader_options fo = *o;

		fo.keep = s->keep;
		r->imap = fetch_reader_start(s->client, uids, count, q, &fo);
		return r;
	}
	r->uids = uids;
	r->count = count;
	r->q = q;
	r->o = *o;
	/* the hybrid reader's own fetch readers must not park it */
	r->o.keep = NULL;
	r->keep = s->keep;
	if (pthread_create(&r->thread, NULL, s->kind == SOURCE_IMAP ?
	                   hy_reader_main : s->kind == SOURCE_CYRUS ?
	                   cy_reader_main : md_reader_main, r) != 0)
		fatal("pthread_create failed");
	return r;
}

char *
source_reader_join(struct source_reader **rp)
{
	struct source_reader *r = *rp;
	char *error;

	if (r->imap != NULL) {
		error = fetch_reader_join(&r->imap);
	} else {
		pthread_join(r->thread, NULL);
		error = r->error;
	}
	free(r);
	*rp = NULL;
	return error;
}

/* ------------------------------------------------------------ dispatch */

int
source_inventory(struct source *s, unsigned flags, struct imap_account_info *info,
                 const char **error_r)
{
	int ret;

	if (s->kind == SOURCE_MAILDIR)
		return md_inventory(s, flags, info, error_r);
	if (s->kind == SOURCE_CYRUS)
		return cy_inventory(s, flags, info, error_r);
	imap_keep_take(s->keep);
	ret = imap_account_inventory(s->client, flags, info, error_r);
	imap_keep_park(s->keep);
	if (ret < 0)
		return -1;
	s->imap_sep = info->separator;
	return 0;
}

int
source_select(struct source *s, const char *name, struct source_folder *st,
              const char **error_r)
{
	const struct imap_mailbox_state *mb;

	if (s->kind == SOURCE_MAILDIR)
		return md_select(s, name, st, error_r);
	if (s->kind == SOURCE_CYRUS)
		return cy_select(s, name, st, error_r);
	imap_keep_take(s->keep);
	if (imap_client_select(s->client, name, true, error_r) < 0) {
		imap_keep_park(s->keep);
		return -1;
	}
	mb = imap_client_mailbox(s->client);
	st->uidvalidity = mb->uidvalidity;
	st->uidnext = mb->uidnext;
	st->exists = mb->exists;
	st->highestmodseq = mb->highestmodseq;
	imap_keep_park(s->keep);
	if (s->cyrus != NULL)
		hy_select(s, name, st->uidvalidity);
	return 0;
}

int
source_list(struct source *s, const uint32_t *uids, size_t n, unsigned what,
            struct msgsum_list *list, const char **error_r)
{
	char *set;
	int ret;

	if (s->kind == SOURCE_MAILDIR)
		return md_list(s, uids, n, what, list, error_r);
	if (s->kind == SOURCE_CYRUS)
		return cy_list(s, uids, n, what, list, error_r);
	if (uids != NULL && n == 0)
		return 0;
	imap_keep_take(s->keep);
	if (uids == NULL) {
		ret = imap_client_mailbox(s->client)->exists == 0 ? 0 :
		      msgsum_fetch(s->client, "1:*", what, list, error_r);
	} else {
		set = uidset_string(uids, n);
		ret = msgsum_fetch(s->client, set, what, list, error_r);
		free(set);
	}
	imap_keep_park(s->keep);
	return ret;
}

/* Drops the summaries outside [lo, hi] (the list stays sorted). */
static void
keep_range(struct msgsum_list *list, uint32_t lo, uint32_t hi)
{
	size_t k = 0;

	for (size_t i = 0; i < list->count; i++) {
		struct msgsum *m = &list->items[i];

		if (m->uid < lo || m->uid > hi) {
			free(m->flags);
			free(m->message_id);
			continue;
		}
		list->items[k++] = *m;
	}
	list->count = k;
}

int
source_list_range(struct source *s, uint32_t lo, uint32_t hi, unsigned what,
                  struct msgsum_list *list, const char **error_r)
{
	char set[32];
	int ret;

	if (lo == 0)
		lo = 1;
	if (s->kind == SOURCE_MAILDIR) {
		ret = md_list(s, NULL, 0, what, list, error_r);
	} else if (s->kind == SOURCE_CYRUS) {
		ret = cy_list(s, NULL, 0, what, list, error_r);
	} else {
		/* "lo:*" names the last message even when its UID is below lo
		 * (RFC 9051 6.4.8): filtered below */
		if (hi == UINT32_MAX)
			snprintf(set, sizeof(set), "%" PRIu32 ":*", lo);
		else
			snprintf(set, sizeof(set), "%" PRIu32 ":%" PRIu32, lo, hi);
		imap_keep_take(s->keep);
		ret = imap_client_mailbox(s->client)->exists == 0 ? 0 :
		      msgsum_fetch(s->client, set, what, list, error_r);
		imap_keep_park(s->keep);
	}
	if (ret == 0)
		keep_range(list, lo, hi);
	return ret;
}

uint32_t
source_uidnext_now(const struct source *s)
{
	uint32_t uidnext;

	if (s->kind != SOURCE_IMAP || s->client == NULL)
		return 0;
	/* the keeper's NOOP may have brought a new UIDNEXT */
	imap_keep_take(s->keep);
	uidnext = imap_client_mailbox(s->client)->uidnext;
	imap_keep_park(s->keep);
	return uidnext;
}

/* ------------------------------------------------------------- recipes */

void
source_init_like(struct source *s, const struct source *spec)
{
	*s = *spec;
	s->client = NULL;
	s->folder = NULL;
	s->cyrus = NULL;
	s->cfolder = NULL;
	s->imap_sep = '\0';
	s->body_stats = NULL;
}

bool
source_is_offline(const struct source *spec)
{
	return spec->kind != SOURCE_IMAP;
}

int
source_folder_names(const struct source *spec, char ***names_r,
                    size_t *count_r, char *sep_r, bool *refused_r,
                    const char **error_r)
{
	struct imap_account_info info;
	struct source s;
	char **v;
	size_t n = 0;

	source_init_like(&s, spec);
	if (source_connect(&s, refused_r, error_r) < 0)
		return -1;
	if (source_inventory(&s, 0, &info, error_r) < 0) {
		source_disconnect(&s);
		return -1;
	}
	v = xcalloc(info.count + 1, sizeof(char *));
	for (size_t i = 0; i < info.count; i++)
		if (info.boxes[i].selectable &&
		    strlen(info.boxes[i].name) == info.boxes[i].name_len)
			v[n++] = xstrdup(info.boxes[i].name);
	*sep_r = info.separator;
	imap_account_info_free(&info);
	source_logout(&s);
	*names_r = v;
	*count_r = n;
	return 0;
}
