/* slots.c: per-server connection caps (see slots.h). */
#include "slots.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct slot {
	char *key;
	unsigned used;
};

struct sched_slots {
	pthread_mutex_t lock;
	pthread_cond_t freed;
	unsigned max;
	unsigned peak;
	struct slot *v;
	size_t n;
};

struct sched_slots *
sched_slots_new(unsigned max)
{
	struct sched_slots *s = xcalloc(1, sizeof(*s));

	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->freed, NULL);
	s->max = max;
	return s;
}

void
sched_slots_free(struct sched_slots **slots)
{
	struct sched_slots *s = *slots;

	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i].key);
	free(s->v);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->freed);
	free(s);
	*slots = NULL;
}

/* The slot of key; called with the lock held. */
static struct slot *
find(struct sched_slots *s, const char *key)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i].key, key) == 0)
			return &s->v[i];
	s->v = xreallocarray(s->v, s->n + 1, sizeof(*s->v));
	s->v[s->n].key = xstrdup(key);
	s->v[s->n].used = 0;
	return &s->v[s->n++];
}

static void
take(struct sched_slots *s, struct slot *sl)
{
	sl->used++;
	if (sl->used > s->peak)
		s->peak = sl->used;
}

void
sched_slots_acquire(struct sched_slots *s, const char *key)
{
	pthread_mutex_lock(&s->lock);
	/* find() again after each wait: the array may have moved */
	while (s->max != 0 && find(s, key)->used >= s->max)
		pthread_cond_wait(&s->freed, &s->lock);
	take(s, find(s, key));
	pthread_mutex_unlock(&s->lock);
}

bool
sched_slots_try_acquire(struct sched_slots *s, const char *key)
{
	struct slot *sl;
	bool ok;

	pthread_mutex_lock(&s->lock);
	sl = find(s, key);
	ok = s->max == 0 || sl->used < s->max;
	if (ok)
		take(s, sl);
	pthread_mutex_unlock(&s->lock);
	return ok;
}

void
sched_slots_release(struct sched_slots *s, const char *key)
{
	struct slot *sl;

	pthread_mutex_lock(&s->lock);
	sl = find(s, key);
	if (sl->used > 0)
		sl->used--;
	pthread_cond_broadcast(&s->freed);
	pthread_mutex_unlock(&s->lock);
}

unsigned
sched_slots_peak(struct sched_slots *s)
{
	unsigned peak;

	pthread_mutex_lock(&s->lock);
	peak = s->peak;
	pthread_mutex_unlock(&s->lock);
	return peak;
}

unsigned
sched_slots_max(const struct sched_slots *s)
{
	return s->max;
}

char *
sched_slot_key(const char *host, const char *port, bool implicit_tls)
{
	return xasprintf("%s:%s", host != NULL ? host : "",
	                 port != NULL ? port : implicit_tls ? "993" : "143");
}
