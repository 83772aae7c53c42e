/* keepalive.h: NOOP on IMAP sessions that wait while their owner works
 * elsewhere.
 *
 * A copy keeps two sessions, and one of them often waits without sending:
 * the source while the target commits or stores what was fetched, the
 * target while the source is slow. Servers log out a client idle past
 * their autologout (RFC 9051: at least 30 min, some use less), and NAT
 * boxes and firewalls forget idle connections sooner. TCP keepalive
 * (net.c) finds a dead peer but does not count as activity for the server:
 * a NOOP does.
 *
 * A keeper is one helper thread. A session registered with it belongs to
 * its owner between imap_keep_take() and imap_keep_park() (calls may nest)
 * and to the keeper while parked: after idle_ms parked, and only when no
 * command is pending or in flight (their replies belong to the owner's
 * callbacks), the keeper sends NOOP and reads its reply; untagged data in
 * it updates the session's state as always. A take waits for a NOOP under
 * way. A NOOP refused is logged; a connection lost in it leaves the session
 * dead, which its owner finds at its next command (and reconnects).
 *
 * The owner's cost is a mutex lock per take and per park, never per
 * message. All functions accept a NULL keeper or slot (no keepalive). */
#ifndef IMAPFERRY_IMAP_KEEPALIVE_H
#define IMAPFERRY_IMAP_KEEPALIVE_H

#include "client.h"

#define IMAP_KEEPALIVE_DEFAULT_MS 60000

struct imap_keeper;
struct imap_keep;

/* Starts a keeper that sends NOOP after idle_ms parked (0: the default). */
struct imap_keeper *imap_keeper_new(unsigned idle_ms);
/* Stops the thread; every slot must have been removed. NULL-safe. */
void imap_keeper_free(struct imap_keeper **k);

/* Registers client, taken by the caller. label names it in log lines
 * (copied). Returns the slot, or NULL when k is NULL. */
struct imap_keep *imap_keep_add(struct imap_keeper *k, struct imap_client *client,
                                const char *label);
/* Unregisters (waits for a NOOP under way); the caller then owns the
 * client alone, e.g. to free it. *slot becomes NULL. */
void imap_keep_remove(struct imap_keep **slot);
/* The owner uses the session from now on (waits for a NOOP under way). */
void imap_keep_take(struct imap_keep *slot);
/* The owner is done with it for now: idle time starts. */
void imap_keep_park(struct imap_keep *slot);
/* NOOPs sent through the slot so far (for tests and logs). */
unsigned imap_keep_noops(struct imap_keep *slot);

#endif
