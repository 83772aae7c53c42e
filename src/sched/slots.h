/* slots.h: connection caps per server. Every session the scheduler opens
 * (inventory, probes, the copy engine's source and target sessions) is
 * taken from a slot of its server, keyed by "host:port"; a slot is given
 * back when the session is closed. Source and target caps are separate
 * tables, so a cap of K means at most K sessions to each source server
 * and K to each target server at any moment.
 *
 * Thread-safe (one mutex and condition variable per table). */
#ifndef IMAPFERRY_SCHED_SLOTS_H
#define IMAPFERRY_SCHED_SLOTS_H

#include "base.h"

struct sched_slots;

/* A table where every server gets max slots (0: unlimited). */
struct sched_slots *sched_slots_new(unsigned max);
void sched_slots_free(struct sched_slots **slots);

/* Takes one slot of server key (copied on first use), waiting while all
 * are taken. */
void sched_slots_acquire(struct sched_slots *slots, const char *key);
/* Takes one slot if one is free now; returns false otherwise. */
bool sched_slots_try_acquire(struct sched_slots *slots, const char *key);
/* Gives a slot of key back. */
void sched_slots_release(struct sched_slots *slots, const char *key);
/* Most slots of any server ever taken at once (for tests and reports). */
unsigned sched_slots_peak(struct sched_slots *slots);
/* The cap (0: unlimited). */
unsigned sched_slots_max(const struct sched_slots *slots);

/* "host:port" of a server for slot keys; port NULL: default (143, or
 * 993 with implicit TLS). Returns a new string. */
char *sched_slot_key(const char *host, const char *port, bool implicit_tls);

#endif
