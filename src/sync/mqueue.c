#include "mqueue.h"

#include <stdlib.h>
#include <time.h>
#include <unistd.h>

void
cmsg_free(struct cmsg **msgp)
{
	struct cmsg *m = *msgp;

	if (m == NULL)
		return;
	free(m->flags);
	free(m->data);
	if (m->fd >= 0)
		close(m->fd);
	free(m);
	*msgp = NULL;
}

static uint64_t
mem_cost(const struct cmsg *m)
{
	return m->data != NULL ? m->size : 0;
}

void
mqueue_init(struct mqueue *q, size_t max_count, uint64_t max_mem_bytes)
{
	q->head = q->tail = NULL;
	q->count = 0;
	q->mem_bytes = 0;
	q->max_count = max_count;
	q->max_mem_bytes = max_mem_bytes;
	q->bytes = 0;
	atomic_init(&q->closed, false);
	atomic_init(&q->aborted, false);
	pthread_mutex_init(&q->lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&q->changed, &ca);
		pthread_condattr_destroy(&ca);
	}
}

void
mqueue_deinit(struct mqueue *q)
{
	struct cmsg *m, *next;

	for (m = q->head; m != NULL; m = next) {
		next = m->next;
		cmsg_free(&m);
	}
	q->head = q->tail = NULL;
	pthread_cond_destroy(&q->changed);
	pthread_mutex_destroy(&q->lock);
}

int
mqueue_push(struct mqueue *q, struct cmsg *msg)
{
	pthread_mutex_lock(&q->lock);
	/* An oversized message is let in when the queue is empty, so it
	 * cannot wait forever. */
	while (!q->aborted && q->count > 0 &&
	       (q->count >= q->max_count ||
	        q->mem_bytes + mem_cost(msg) > q->max_mem_bytes))
		pthread_cond_wait(&q->changed, &q->lock);
	if (q->aborted) {
		pthread_mutex_unlock(&q->lock);
		cmsg_free(&msg);
		return -1;
	}
	msg->next = NULL;
	if (q->tail != NULL)
		q->tail->next = msg;
	else
		q->head = msg;
	q->tail = msg;
	q->count++;
	q->mem_bytes += mem_cost(msg);
	q->bytes += msg->size;
	pthread_cond_broadcast(&q->changed);
	pthread_mutex_unlock(&q->lock);
	return 0;
}

struct cmsg *
mqueue_pop_batch(struct mqueue *q, size_t max_count, uint64_t max_bytes)
{
	return mqueue_pop_batch_min(q, max_count, max_bytes, 1, 0);
}

struct cmsg *
mqueue_pop_batch_min(struct mqueue *q, size_t max_count, uint64_t max_bytes,
                     size_t min_count, unsigned wait_ms)
{
	struct cmsg *first = NULL, **tailp = &first;
	size_t n = 0;
	uint64_t bytes = 0;
	struct timespec deadline;

	pthread_mutex_lock(&q->lock);
	while (q->head == NULL && !q->closed)
		pthread_cond_wait(&q->changed, &q->lock);
	if (min_count > 1 && wait_ms > 0) {
		clock_gettime(CLOCK_MONOTONIC, &deadline);
		deadline.tv_sec += wait_ms / 1000;
		deadline.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
		if (deadline.tv_nsec >= 1000000000L) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000L;
		}
		/* stop waiting as soon as the producer could block: a full
		 * count or half the memory budget */
		while (!q->closed && !q->aborted && q->count < min_count &&
		       q->bytes < max_bytes && q->count < q->max_count &&
		       q->mem_bytes < q->max_mem_bytes / 2 &&
		       pthread_cond_timedwait(&q->changed, &q->lock,
		                              &deadline) == 0)
			;
	}
	while (q->head != NULL && n < max_count &&
	       (n == 0 || bytes + q->head->size <= max_bytes)) {
		struct cmsg *m = q->head;

		q->head = m->next;
		if (q->head == NULL)
			q->tail = NULL;
		q->count--;
		q->mem_bytes -= mem_cost(m);
		q->bytes -= m->size;
		bytes += m->size;
		m->next = NULL;
		*tailp = m;
		tailp = &m->next;
		n++;
	}
	pthread_cond_broadcast(&q->changed);
	pthread_mutex_unlock(&q->lock);
	return first;
}

bool
mqueue_wait_ready(struct mqueue *q, unsigned wait_ms)
{
	struct timespec deadline;
	bool ready;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += wait_ms / 1000;
	deadline.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&q->lock);
	while (q->head == NULL && !q->closed &&
	       pthread_cond_timedwait(&q->changed, &q->lock, &deadline) == 0)
		;
	ready = q->head != NULL || q->closed;
	pthread_mutex_unlock(&q->lock);
	return ready;
}

void
mqueue_close(struct mqueue *q)
{
	pthread_mutex_lock(&q->lock);
	q->closed = true;
	pthread_cond_broadcast(&q->changed);
	pthread_mutex_unlock(&q->lock);
}

void
mqueue_abort(struct mqueue *q)
{
	pthread_mutex_lock(&q->lock);
	q->aborted = true;
	pthread_cond_broadcast(&q->changed);
	pthread_mutex_unlock(&q->lock);
}

bool
mqueue_is_aborted(struct mqueue *q)
{
	return atomic_load(&q->aborted);
}
