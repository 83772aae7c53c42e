/* reader.c: the source reader thread (see reader.h). */
#define _GNU_SOURCE 1 /* O_TMPFILE */
#include "reader.h"

#include "flags.h"
#include "log.h"
#include "uidset.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


/* A body: in memory up to BODY_MEM_MAX bytes (allocated at its exact
 * size when the literal begins, read into from the connection directly
 * (spool_place) and handed whole to the queue), above that in an unlinked
 * spool file. 8 MiB, the queue's and the APPEND window's cap: a larger
 * body in memory would exceed them alone. */
#define BODY_MEM_MAX (8u << 20)

struct spool_file {
	int fd;                   /* -1: in memory */
	char *data;
	uint64_t len;
	uint64_t size;            /* the literal's */
};

struct fetch_reader {
	struct imap_client *src;
	const uint32_t *uids;
	size_t count;
	struct mqueue *q;
	/* The UIDs a FETCH reply may carry: uids[win_lo .. win_hi), the
	 * batches submitted and not yet completed (tagged replies come in
	 * order), each at most once (seen[i] for uids[i]). */
	size_t batch;
	size_t win_lo, win_hi;
	size_t batches_done;
	bool *seen;
	char *error;              /* session failure, or NULL */
	struct fetch_reader_options o;
	const char *spool_dir;
	pthread_t thread;
};

static void *
spool_begin(void *ctx, uint64_t size)
{
	struct fetch_reader *r = ctx;
	struct spool_file *sp;
	int fd;

	if (size <= BODY_MEM_MAX) {
		sp = xcalloc(1, sizeof(*sp));
		sp->fd = -1;
		sp->data = xmalloc((size_t)size + 1);
		sp->size = size;
		return sp;
	}
	fd = open(r->spool_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0) {
		char *path = xasprintf("%s/imapferry-spool-XXXXXX", r->spool_dir);
		fd = mkstemp(path);
		if (fd >= 0)
			unlink(path);
		free(path);
	}
	if (fd < 0) {
		log_error("cannot create a spool file in %s: %s", r->spool_dir,
		          strerror(errno));
		return NULL;
	}
	sp = xcalloc(1, sizeof(*sp));
	sp->fd = fd;
	return sp;
}

static int
spool_data(void *ctx, void *handle, const void *data, size_t len)
{
	struct spool_file *sp = handle;
	const char *p = data;

	if (sp->fd < 0) {
		/* the parser never passes more than the announced size */
		memcpy(sp->data + sp->len, data, len);
		sp->len += len;
		return 0;
	}
	while (len > 0) {
		ssize_t n = write(sp->fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			log_error("writing spool file: %s", strerror(errno));
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* In-memory bodies are read from the connection straight into their
 * buffer (imap_parser_literal_place()). */
static void *
spool_place(void *ctx, void *handle, size_t *room_r)
{
	struct spool_file *sp = handle;

	if (sp->fd >= 0) {
		*room_r = 0;
		return NULL;
	}
	*room_r = (size_t)(sp->size - sp->len);
	return sp->data + sp->len;
}

static int
spool_placed(void *ctx, void *handle, size_t len)
{
	struct spool_file *sp = handle;

	sp->len += len;
	return 0;
}

static int
spool_end(void *ctx, void *handle)
{
	struct spool_file *sp = handle;

	if (sp->fd < 0) {
		sp->data[sp->len] = '\0';
		return 0;
	}
	return lseek(sp->fd, 0, SEEK_SET) == 0 ? 0 : -1;
}

static void
spool_release(void *ctx, void *handle)
{
	struct spool_file *sp = handle;

	if (sp->fd >= 0)
		close(sp->fd);
	free(sp->data);
	free(sp);
}

/* Index of uid in uids[lo .. hi) (ascending), or (size_t)-1. */
static size_t
uid_index(const uint32_t *uids, size_t lo, size_t hi, uint32_t uid)
{
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (uids[mid] == uid)
			return mid;
		if (uids[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return (size_t)-1;
}

/* A message in a FETCH reply must be one the batches in flight asked
 * for, and come once: a server that sends more (UID 999 to "UID FETCH
 * 1:3", the same UID twice, a body without UID) cannot be trusted with the
 * rest of the session, and what it sent must not reach the target (a
 * Maildir's uidlist would jump to UID 1000). Sets r->error and returns
 * false for such a reply. */
static bool
reply_requested(struct fetch_reader *r, const struct imap_fetch *f)
{
	size_t i;

	if (!(f->have & IMAP_FETCH_UID)) {
		r->error = xasprintf("the source sent a message body without UID "
		                     "(FETCH of sequence number %u): protocol "
		                     "error", f->seq);
		return false;
	}
	i = uid_index(r->uids, r->win_lo, r->win_hi, f->uid);
	if (i == (size_t)-1) {
		r->error = xasprintf("the source sent unrequested UID %u in reply "
		                     "to UID FETCH: protocol error", f->uid);
		return false;
	}
	if (r->seen[i]) {
		r->error = xasprintf("the source sent UID %u twice in reply to "
		                     "UID FETCH: protocol error", f->uid);
		return false;
	}
	r->seen[i] = true;
	return true;
}

static void
reader_fetch(void *ctx, const struct imap_response *resp)
{
	struct fetch_reader *r = ctx;
	const struct imap_fetch *f;
	const struct imap_value *body = NULL;
	struct cmsg *m;

	if (resp->kind != IMAP_RESP_UNTAGGED || resp->type != IMAP_UNTAGGED_FETCH)
		return;
	f = &resp->u.fetch;
	for (size_t i = 0; i < f->body_count; i++)
		if (f->bodies[i].section[0] == '\0')
			body = f->bodies[i].value;
	if (body == NULL)
		return;   /* a flag change pushed by the server (with or
		           * without UID), not a message */
	if (r->error != NULL)
		return;   /* after a protocol error: drop the rest (a streamed
		           * body is released by the parser) */
	if (!reply_requested(r, f))
		return;   /* the caller reports r->error (session scope) */
	m = xcalloc(1, sizeof(*m));
	m->fd = -1;
	m->uid = f->uid;
	m->flags = flags_canonical(f->flags.items, f->flags.count);
	m->internaldate = (int64_t)f->internaldate;
	if (body->type == IMAP_VALUE_STRING) {
		m->data = xmalloc(body->len + 1);
		memcpy(m->data, body->str, body->len);
		m->size = body->len;
	} else if (body->type == IMAP_VALUE_STREAMED) {
		struct spool_file *sp = imap_value_steal_stream(body);

		m->fd = sp->fd;
		m->data = sp->data;   /* NULL for a spool file */
		m->size = body->stream_size;
		free(sp);
	} else {
		m->data = xstrdup("");
		m->size = 0;
	}
	if (r->o.skip_deleted && flags_has(m->flags, "\\Deleted")) {
		cmsg_free(&m);
		return;
	}
	(void)mqueue_push(r->q, m);
}

static void
reader_done(void *ctx, const struct imap_response *tagged, const char *error)
{
	struct fetch_reader *r = ctx;

	/* the oldest batch in flight is complete: its UIDs leave the window */
	r->batches_done++;
	r->win_lo = r->batches_done * r->batch < r->count ?
	            r->batches_done * r->batch : r->count;
	if (r->error != NULL)
		return;
	if (tagged == NULL)
		r->error = xstrdup(error);
	else if (tagged->status != IMAP_STATUS_OK)
		r->error = xasprintf("UID FETCH refused by the source: %s",
		                     tagged->text);
}

static void *
reader_main(void *arg)
{
	struct fetch_reader *r = arg;
	const struct fetch_reader_options *o = &r->o;
	struct imap_literal_sink sink = {
		.begin = spool_begin, .data = spool_data, .end = spool_end,
		.abort = spool_release, .release = spool_release,
		.place = spool_place, .placed = spool_placed, .ctx = r,
		.min_size = 1,        /* every body: one copy, see BODY_MEM_MAX */
	};
	size_t batch = r->batch;
	/* One FETCH in flight by default: servers may interleave the replies of
	 * pipelined FETCH commands (Dovecot does under load), and the target
	 * should get the messages in the source's order (a Maildir even
	 * requires it). Large batches keep the server busy. */
	unsigned depth = o->depth != 0 ? o->depth : 1;
	const char *error;

	imap_client_set_literal_sink(r->src, &sink);
	for (size_t i = 0; i < r->count && r->error == NULL; i += batch) {
		size_t n = r->count - i < batch ? r->count - i : batch;
		char *set;
		struct imap_cmd *cmd;

		if (mqueue_is_aborted(r->q))
			break;
		r->win_hi = i + n;
		set = uidset_string(r->uids + i, n);
		cmd = imap_cmd_new(r->src);
		imap_cmd_addf(cmd, "UID FETCH %s (UID FLAGS INTERNALDATE BODY.PEEK[])",
		              set);
		free(set);
		imap_cmd_set_untagged(cmd, reader_fetch, r);
		imap_cmd_submit(cmd, reader_done, r);
		if (imap_client_run_until_below(r->src, depth - 1, &error) < 0)
			break;
	}
	if (imap_client_run(r->src, &error) < 0 && r->error == NULL)
		r->error = xstrdup(error);
	imap_client_set_literal_sink(r->src, NULL);
	/* nothing more to fetch: the session waits until the join (the
	 * target may take long for what is queued), parked with the keeper */
	imap_keep_park(o->keep);
	mqueue_close(r->q);
	return NULL;
}


struct fetch_reader *
fetch_reader_start(struct imap_client *src, const uint32_t *uids, size_t count,
                   struct mqueue *q, const struct fetch_reader_options *o)
{
	struct fetch_reader *r = xcalloc(1, sizeof(*r));
	const char *tmp = getenv("TMPDIR");

	r->src = src;
	r->uids = uids;
	r->count = count;
	r->q = q;
	r->o = *o;
	r->batch = o->batch != 0 ? o->batch : 500;
	r->seen = xcalloc(count > 0 ? count : 1, sizeof(*r->seen));
	r->spool_dir = o->spool_dir != NULL ? o->spool_dir :
	               (tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
	if (pthread_create(&r->thread, NULL, reader_main, r) != 0)
		fatal("pthread_create failed");
	return r;
}

char *
fetch_reader_join(struct fetch_reader **rp)
{
	struct fetch_reader *r = *rp;
	char *error;

	pthread_join(r->thread, NULL);
	error = r->error;
	free(r->seen);
	free(r);
	*rp = NULL;
	return error;
}
