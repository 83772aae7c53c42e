/* mqueue.h: the bounded queue between the source reader thread and the
 * target writer: messages with their bodies in memory or in an unlinked
 * spool file. Bounded by bytes held in memory and by message count, so a
 * fast reader cannot outrun a slow target. The only state shared between
 * the two threads. */
#ifndef IMAPFERRY_SYNC_MQUEUE_H
#define IMAPFERRY_SYNC_MQUEUE_H

#include "base.h"

#include <pthread.h>
#include <stdatomic.h>

struct cmsg {
	struct cmsg *next;
	uint32_t uid;             /* source UID */
	char *flags;              /* canonical source flags, owned */
	int64_t internaldate;
	uint64_t size;            /* body size */
	char *data;               /* body in memory (owned), or NULL */
	int fd;                   /* body in an unlinked spool file, or -1 */
};

void cmsg_free(struct cmsg **msg);

struct mqueue {
	pthread_mutex_t lock;
	pthread_cond_t changed;
	struct cmsg *head, *tail;
	size_t count, max_count;
	uint64_t mem_bytes, max_mem_bytes;
	uint64_t bytes;           /* body sizes of the queued messages */
	/* Written under lock; atomic so that a thread may also poll them
	 * without the lock (mqueue_is_aborted()) without a data race. */
	atomic_bool closed;       /* producer finished */
	atomic_bool aborted;      /* consumer gave up: producer stops */
};

void mqueue_init(struct mqueue *q, size_t max_count, uint64_t max_mem_bytes);
void mqueue_deinit(struct mqueue *q);
/* Adds msg (ownership passes), waiting while the queue is full. Returns 0,
 * or -1 (msg freed) when the consumer aborted. */
int mqueue_push(struct mqueue *q, struct cmsg *msg);
/* Takes up to max_count messages holding at most max_bytes (at least one
 * message), waiting while the queue is empty and open. Returns the list
 * (linked by next) or NULL when closed and drained. */
struct cmsg *mqueue_pop_batch(struct mqueue *q, size_t max_count,
                              uint64_t max_bytes);
/* The same, but once a message is there, waits up to wait_ms for
 * min_count messages (or max_bytes, the end of the stream, or a queue so
 * full that the producer could block): fuller batches when the consumer
 * is ahead anyway. */
struct cmsg *mqueue_pop_batch_min(struct mqueue *q, size_t max_count,
                                  uint64_t max_bytes, size_t min_count,
                                  unsigned wait_ms);
/* Waits up to wait_ms for a message or the end of the stream. Returns
 * true when one is there, false when the time ran out. */
bool mqueue_wait_ready(struct mqueue *q, unsigned wait_ms);
void mqueue_close(struct mqueue *q);
void mqueue_abort(struct mqueue *q);
/* True once the consumer called mqueue_abort(): a producer polls it
 * between expensive steps (any thread, no lock needed). */
bool mqueue_is_aborted(struct mqueue *q);

#endif
