/* test_mqueue.c: the bounded queue between the reader and the writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mqueue.h"

static struct cmsg *
msg(uint32_t uid, size_t size, bool in_memory)
{
	struct cmsg *m = xcalloc(1, sizeof(*m));

	m->uid = uid;
	m->fd = -1;
	m->size = size;
	if (in_memory)
		m->data = xcalloc(1, size + 1);
	return m;
}

static size_t
count_free(struct cmsg *batch, uint32_t *first_uid_r)
{
	size_t n = 0;

	if (first_uid_r != NULL && batch != NULL)
		*first_uid_r = batch->uid;
	while (batch != NULL) {
		struct cmsg *m = batch;

		batch = m->next;
		cmsg_free(&m);
		n++;
	}
	return n;
}

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Order is kept; max_count and max_bytes bound a batch (one message
 * always goes, even above max_bytes); the end is NULL after close. */
static void
test_batches(void **state)
{
	struct mqueue q;
	uint32_t first = 0;

	(void)state;
	mqueue_init(&q, 100, 1 << 20);
	for (uint32_t uid = 1; uid <= 10; uid++)
		assert_int_equal(mqueue_push(&q, msg(uid, 100, true)), 0);
	assert_int_equal(q.bytes, 1000);
	assert_int_equal(q.mem_bytes, 1000);
	assert_int_equal(count_free(mqueue_pop_batch(&q, 4, 1 << 20), &first), 4);
	assert_int_equal(first, 1);
	assert_int_equal(count_free(mqueue_pop_batch(&q, 100, 250), &first), 2);
	assert_int_equal(first, 5);
	assert_int_equal(mqueue_push(&q, msg(11, 5000, false)), 0);
	assert_int_equal(q.mem_bytes, 400);       /* a spool file costs none */
	assert_int_equal(q.bytes, 5400);
	assert_int_equal(count_free(mqueue_pop_batch(&q, 100, 1 << 20), &first), 5);
	assert_int_equal(first, 7);
	assert_int_equal(q.bytes, 0);
	mqueue_close(&q);
	assert_null(mqueue_pop_batch(&q, 100, 1 << 20));
	mqueue_deinit(&q);
}

struct producer {
	struct mqueue *q;
	uint32_t n;
	unsigned gap_ms;
	bool close;
};

static void *
produce(void *arg)
{
	struct producer *p = arg;

	for (uint32_t uid = 1; uid <= p->n; uid++) {
		usleep(p->gap_ms * 1000);
		if (mqueue_push(p->q, msg(uid, 10, true)) < 0)
			break;
	}
	if (p->close)
		mqueue_close(p->q);
	return NULL;
}

/* min_count: waits for a fuller batch, but not past wait_ms, and not at
 * all once the stream ended. */
static void
test_pop_min(void **state)
{
	struct mqueue q;
	struct producer p = { .q = &q, .n = 8, .gap_ms = 2, .close = false };
	pthread_t t;
	double t0;
	size_t got;

	(void)state;
	mqueue_init(&q, 100, 1 << 20);
	assert_int_equal(pthread_create(&t, NULL, produce, &p), 0);
	/* 8 messages 2 ms apart arrive well within 2 s: one batch of 8 */
	got = count_free(mqueue_pop_batch_min(&q, 8, 1 << 20, 8, 2000), NULL);
	assert_int_equal(got, 8);
	pthread_join(t, NULL);

	/* only 3 come: the wait ends after about wait_ms with 3 */
	p.n = 3;
	p.gap_ms = 0;
	assert_int_equal(pthread_create(&t, NULL, produce, &p), 0);
	pthread_join(t, NULL);
	t0 = now_ms();
	got = count_free(mqueue_pop_batch_min(&q, 8, 1 << 20, 8, 50), NULL);
	assert_int_equal(got, 3);
	assert_true(now_ms() - t0 >= 40);

	/* closed: no waiting for more */
	assert_int_equal(mqueue_push(&q, msg(1, 10, true)), 0);
	mqueue_close(&q);
	t0 = now_ms();
	got = count_free(mqueue_pop_batch_min(&q, 8, 1 << 20, 8, 5000), NULL);
	assert_int_equal(got, 1);
	assert_true(now_ms() - t0 < 4000);
	mqueue_deinit(&q);
}

static void *
poll_aborted(void *arg)
{
	struct mqueue *q = arg;
	unsigned long spins = 0;

	/* what the readers do between batches: no lock held */
	while (!mqueue_is_aborted(q))
		spins++;
	return (void *)(uintptr_t)(spins > 0 ? 1 : 2);
}

/* Issue 12: producers poll the abort flag without the lock while the
 * consumer sets it; the flag is atomic (a ThreadSanitizer build reported
 * the plain read as a data race). The poller sees it and stops. */
static void
test_abort_polled(void **state)
{
	struct mqueue q;
	pthread_t t;
	void *ret;

	(void)state;
	mqueue_init(&q, 4, 1 << 20);
	assert_false(mqueue_is_aborted(&q));
	assert_int_equal(pthread_create(&t, NULL, poll_aborted, &q), 0);
	usleep(2000);
	mqueue_abort(&q);
	assert_int_equal(pthread_join(t, &ret), 0);
	assert_non_null(ret);
	assert_true(mqueue_is_aborted(&q));
	/* a push after the abort is refused and frees the message */
	assert_int_equal(mqueue_push(&q, msg(1, 10, true)), -1);
	mqueue_deinit(&q);
}

/* A full queue ends the wait: the producer would block otherwise. */
static void
test_pop_min_full(void **state)
{
	struct mqueue q;
	double t0;

	(void)state;
	mqueue_init(&q, 4, 1 << 20);
	for (uint32_t uid = 1; uid <= 4; uid++)
		assert_int_equal(mqueue_push(&q, msg(uid, 10, true)), 0);
	t0 = now_ms();
	assert_int_equal(count_free(mqueue_pop_batch_min(&q, 32, 1 << 20, 32,
	                                                 5000), NULL), 4);
	assert_true(now_ms() - t0 < 4000);
	mqueue_deinit(&q);
}

/* mqueue_wait_ready(): false after the wait on an empty open queue (the
 * pass then takes the target's replies in), true at once with a message
 * or after the close. */
static void
test_wait_ready(void **state)
{
	struct mqueue q;
	double t0;

	(void)state;
	mqueue_init(&q, 4, 1 << 20);
	t0 = now_ms();
	assert_false(mqueue_wait_ready(&q, 100));
	assert_true(now_ms() - t0 >= 90);
	assert_int_equal(mqueue_push(&q, msg(1, 10, true)), 0);
	t0 = now_ms();
	assert_true(mqueue_wait_ready(&q, 5000));
	assert_true(now_ms() - t0 < 4000);
	assert_int_equal(count_free(mqueue_pop_batch(&q, 8, 1 << 20), NULL), 1);
	mqueue_close(&q);
	assert_true(mqueue_wait_ready(&q, 5000));
	assert_null(mqueue_pop_batch(&q, 8, 1 << 20));
	mqueue_deinit(&q);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_batches),
		cmocka_unit_test(test_pop_min),
		cmocka_unit_test(test_pop_min_full),
		cmocka_unit_test(test_abort_polled),
		cmocka_unit_test(test_wait_ready),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
