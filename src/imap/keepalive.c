/* keepalive.c: the keeper thread (keepalive.h).
 *
 * Every field of a slot is under the keeper's lock. The client itself is
 * used by the keeper only while the slot is parked (depth 0) and marked
 * busy, so owner and keeper never use it at once, and the lock orders
 * what each did before the other takes over. */
#include "keepalive.h"

#include "log.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct imap_keep {
	struct imap_keep *next;
	struct imap_keeper *k;
	struct imap_client *client;
	char *label;
	unsigned depth;           /* takes not yet parked */
	bool busy;                /* the keeper sends NOOP on it */
	uint64_t since;           /* parked since (monotonic ms) */
	unsigned noops;
};

struct imap_keeper {
	pthread_mutex_t lock;
	pthread_cond_t changed;
	struct imap_keep *slots;
	unsigned idle_ms, tick_ms;
	bool quit;
	pthread_t thread;
};

/* The slot to keep alive now, or NULL. Lock held. */
static struct imap_keep *
due_slot(struct imap_keeper *k, uint64_t now)
{
	for (struct imap_keep *s = k->slots; s != NULL; s = s->next) {
		if (s->depth > 0 || s->busy || now - s->since < k->idle_ms)
			continue;
		/* parked: the keeper may look at it. Commands of the owner's
		 * still in flight, or a session already dead, are the owner's
		 * business: look again an interval later. */
		if (imap_client_is_dead(s->client) ||
		    imap_client_in_flight(s->client) > 0 ||
		    imap_client_queued(s->client) > 0) {
			s->since = now;
			continue;
		}
		return s;
	}
	return NULL;
}

static void
keep_noop(struct imap_keep *s, uint64_t idle)
{
	const char *error;

	if (imap_client_simple(s->client, "NOOP", &error) == 0) {
		log_debug("%s: idle for %.1f s: NOOP", s->label, idle / 1000.0);
		return;
	}
	if (imap_client_is_dead(s->client))
		log_info("%s: the session was lost while idle (NOOP: %s); its "
		         "next use reconnects", s->label, error);
	else
		log_warn("%s: NOOP refused while idle: %s", s->label, error);
}

static void *
keeper_main(void *arg)
{
	struct imap_keeper *k = arg;

	pthread_mutex_lock(&k->lock);
	while (!k->quit) {
		uint64_t now = time_mono_ms();
		struct imap_keep *s = due_slot(k, now);
		struct timespec ts;

		if (s != NULL) {
			uint64_t idle = now - s->since;

			s->busy = true;
			pthread_mutex_unlock(&k->lock);
			keep_noop(s, idle);
			pthread_mutex_lock(&k->lock);
			s->busy = false;
			s->since = time_mono_ms();
			s->noops++;
			pthread_cond_broadcast(&k->changed);
			continue;
		}
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += k->tick_ms / 1000;
		ts.tv_nsec += (long)(k->tick_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		(void)pthread_cond_timedwait(&k->changed, &k->lock, &ts);
	}
	pthread_mutex_unlock(&k->lock);
	return NULL;
}

struct imap_keeper *
imap_keeper_new(unsigned idle_ms)
{
	struct imap_keeper *k = xcalloc(1, sizeof(*k));
	pthread_condattr_t ca;

	k->idle_ms = idle_ms != 0 ? idle_ms : IMAP_KEEPALIVE_DEFAULT_MS;
	/* a parked session gets its NOOP between idle_ms and 1.25 idle_ms */
	k->tick_ms = k->idle_ms / 4;
	if (k->tick_ms < 20)
		k->tick_ms = 20;
	if (k->tick_ms > 5000)
		k->tick_ms = 5000;
	pthread_mutex_init(&k->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&k->changed, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&k->thread, NULL, keeper_main, k) != 0)
		fatal("pthread_create failed");
	return k;
}

void
imap_keeper_free(struct imap_keeper **kp)
{
	struct imap_keeper *k = *kp;

	if (k == NULL)
		return;
	pthread_mutex_lock(&k->lock);
	if (k->slots != NULL)
		fatal("imap_keeper_free: a session is still registered");
	k->quit = true;
	pthread_cond_broadcast(&k->changed);
	pthread_mutex_unlock(&k->lock);
	pthread_join(k->thread, NULL);
	pthread_cond_destroy(&k->changed);
	pthread_mutex_destroy(&k->lock);
	free(k);
	*kp = NULL;
}

struct imap_keep *
imap_keep_add(struct imap_keeper *k, struct imap_client *client,
              const char *label)
{
	struct imap_keep *s;

	if (k == NULL)
		return NULL;
	s = xcalloc(1, sizeof(*s));
	s->k = k;
	s->client = client;
	s->label = xstrdup(label != NULL ? label : "imap");
	s->depth = 1;
	pthread_mutex_lock(&k->lock);
	s->since = time_mono_ms();
	s->next = k->slots;
	k->slots = s;
	pthread_mutex_unlock(&k->lock);
	return s;
}

void
imap_keep_remove(struct imap_keep **slotp)
{
	struct imap_keep *s = *slotp;
	struct imap_keeper *k;

	if (s == NULL)
		return;
	k = s->k;
	pthread_mutex_lock(&k->lock);
	while (s->busy)
		pthread_cond_wait(&k->changed, &k->lock);
	for (struct imap_keep **pp = &k->slots; *pp != NULL; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	pthread_mutex_unlock(&k->lock);
	free(s->label);
	free(s);
	*slotp = NULL;
}

void
imap_keep_take(struct imap_keep *s)
{
	struct imap_keeper *k;

	if (s == NULL)
		return;
	k = s->k;
	pthread_mutex_lock(&k->lock);
	while (s->busy)
		pthread_cond_wait(&k->changed, &k->lock);
	s->depth++;
	pthread_mutex_unlock(&k->lock);
}

void
imap_keep_park(struct imap_keep *s)
{
	struct imap_keeper *k;

	if (s == NULL)
		return;
	k = s->k;
	pthread_mutex_lock(&k->lock);
	if (s->depth == 0)
		fatal("imap_keep_park: %s is not taken", s->label);
	if (--s->depth == 0)
		s->since = time_mono_ms();
	pthread_mutex_unlock(&k->lock);
}

unsigned
imap_keep_noops(struct imap_keep *s)
{
	unsigned n;

	if (s == NULL)
		return 0;
	pthread_mutex_lock(&s->k->lock);
	n = s->noops;
	pthread_mutex_unlock(&s->k->lock);
	return n;
}
