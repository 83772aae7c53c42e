/* reader.h: the source side of a copy: a thread that owns the source
 * session while it runs pipelined UID FETCH (UID FLAGS INTERNALDATE
 * BODY.PEEK[]) over a list of UIDs and hands each message to a bounded
 * mqueue. Bodies above the parser's in-memory limit stream into unlinked
 * spool files, so memory stays bounded whatever the message sizes. */
#ifndef IMAPFERRY_SYNC_READER_H
#define IMAPFERRY_SYNC_READER_H

#include "client.h"
#include "keepalive.h"
#include "mqueue.h"

struct fetch_reader;

struct fetch_reader_options {
	unsigned batch;           /* UIDs per UID FETCH; 0: 500 */
	unsigned depth;           /* UID FETCH commands in flight; 0: 1, which
	                             keeps the source's order (servers may
	                             interleave pipelined FETCH replies) */
	bool skip_deleted;        /* drop messages flagged \Deleted */
	const char *spool_dir;    /* NULL: $TMPDIR or /tmp */
	/* NULL, or the session's keepalive slot, taken by the caller: the
	 * reader parks it when its last command is done (the session then
	 * waits until the join, while the target stores what is queued) */
	struct imap_keep *keep;
};

/* Starts the reader thread on the selected folder of src. src must not be
 * used by the caller until fetch_reader_join(). uids (ascending) and q
 * must stay valid until then. The queue is closed when the reader ends. */
struct fetch_reader *fetch_reader_start(struct imap_client *src,
                                        const uint32_t *uids, size_t count,
                                        struct mqueue *q,
                                        const struct fetch_reader_options *o);
/* Waits for the thread; returns NULL, or the source session's error (a
 * new string the caller frees). Frees the reader, sets *r to NULL. */
char *fetch_reader_join(struct fetch_reader **r);

#endif
