/* probe.h: what the plan measures on the servers.
 *
 * Inventory: every account's source folders with LIST and pipelined
 * STATUS (MESSAGES UIDVALIDITY UIDNEXT, plus SIZE where STATUS=SIZE is
 * offered; else the bytes are estimated later from the sample's average
 * size), several accounts at once within the source connection cap. The
 * time of login + inventory is kept per account. An account whose source
 * is offline (src_spec, a copied Cyrus spool) is inventoried from its own
 * index (folders, messages, bytes) without a session or a slot; in the
 * calibration its sample is read from the files through the source's
 * reader (a disk-read cost) instead of fetched, and it has no parallel
 * measure.
 *
 * Calibration (sched_calibrate()), in this order:
 *   0. login + inventory (LIST, STATUS) timed alone, on up to seven
 *      accounts one after the other: twice the median is the cost per
 *      job (the engine logs in and lists on both sides);
 *   1. in up to three of the largest accounts: LIST and LIST with
 *      STATUS again, timed: their difference per folder is the STATUS
 *      cost of an unchanged folder in a later pass (per_status, the
 *      median; plan --inventory --final uses it); in the largest folder:
 *      EXAMINE (timed: twice it is the cost per folder, plus the CREATE
 *      of step 2 for a first pass), FETCH (UID RFC822.SIZE) of up to
 *      5000 messages (the average message size), then a sample chosen at
 *      evenly spaced size ranks (small to large, at most sample_messages
 *      and sample_bytes in all) fetched with pipelined UID FETCH
 *      BODY.PEEK[] into a sink that discards, in batches of similar size;
 *      a least-squares fit of the batch times gives the cost per message
 *      and per byte (plan.h);
 *   2. with probe_target, an IMAP target: a scratch folder
 *      "imapferry-probe-PID" (under the personal namespace prefix) is
 *      created (timed: a first pass CREATEs every folder) in the first
 *      sampled account's target; four groups of synthetic messages
 *      (128 x 1 KB, 64 x 16 KB, 32 x 128 KB, 8 x 1 MB: whole MULTIAPPEND
 *      commands of 32, built before the clock starts) are APPENDed
 *      (MULTIAPPEND of up to 32 where offered, the group's commands
 *      pipelined), each group timed until its last reply, in 5 rounds
 *      (the fastest round per group: the engine keeps its pipeline
 *      full); then the folder is deleted. A fit gives the
 *      target's cost per message and per byte; a job costs the slower
 *      side's (plan.h). A variant that streamed each group repeatedly
 *      without a wait, as the engine sends, was tried on the 2-core
 *      bench and estimated 1.4-3x too high (docs/BENCHMARKS.md), as did a
 *      timed fetch + APPEND of the sample at once: the engine overlaps its
 *      stages better than a few-second probe does. Without this step the
 *      target is assumed as fast as the source, which underestimates a
 *      copy into a server that syncs its writes.
 *      A Maildir target: the same groups written by the engine's Maildir
 *      writer (one commit per group, the run's fsync setting) into a
 *      scratch folder ".imapferry-probe-PID" inside the first account's
 *      Maildir tmp/ (or the nearest existing parent directory of a
 *      Maildir not made yet), removed afterwards;
 *   3. with par_sessions >= 2: the first account's sample again, warm,
 *      by one session, then by par_sessions sessions at once, then by
 *      one again (the mean of the two counts as alone): the throughput
 *      ratio is the speedup of parallel sessions. Where the target was
 *      probed, each session is a copy in miniature: a fetcher of the
 *      sample and an appender of synthetic messages of the sample's
 *      sizes (each to its own scratch folder, deleted) at once, each
 *      sized to last about 0.5 s alone; else a session fetches only. */
#ifndef IMAPFERRY_SCHED_PROBE_H
#define IMAPFERRY_SCHED_PROBE_H

#include "plan.h"
#include "slots.h"
#include "maildir.h"
#include "users.h"

struct sched_probe_options {
	unsigned sessions;            /* inventory sessions at once; 0: 4 */
	struct sched_slots *src_slots; /* caps (NULL: none) */
	struct sched_slots *dst_slots;
	char *const *folders;         /* the pass's folder filter, or NULL */
	size_t n_folders;
	unsigned sample_messages;     /* 0: 300 */
	uint64_t sample_bytes;        /* 0: 32 MiB */
	unsigned par_sessions;        /* parallel measure; <= 1: skip */
	bool probe_target;
	/* Maildir targets: the run's writer options (fsync, owner), or NULL */
	const struct maildir_options *md;
};

/* Inventories the source of n accounts into est[0..n-1] (zeroed first;
 * free each with sched_account_est_free()). An account that fails gets
 * est[i].error (and auth_failed for a refused login); the others go on.
 * Returns 0, or -1 with *error_r when the whole plan must stop: an admin
 * login (authzid) to a server that ignores authzids (Courier). */
int sched_inventory(const struct sched_account *accounts, size_t n,
                    const struct sched_probe_options *o,
                    struct sched_account_est *est,
                    const char **error_r) ATTR_WARN_UNUSED;

/* Measures the cost model (see the top of this file), starting from
 * sched_cost_default(). Returns 0 with *cost filled (calibrated false
 * when there was nothing to sample), or -1 with *error_r when a sample
 * session failed (*cost then holds the defaults and what was measured). */
int sched_calibrate(const struct sched_account *accounts,
                    const struct sched_account_est *est, size_t n,
                    const struct sched_probe_options *o,
                    struct sched_cost *cost,
                    const char **error_r) ATTR_WARN_UNUSED;

/* Checks an admin login: when opts logs in with an authzid and the
 * server's greeting says it ignores authzids, returns false with
 * *error_r (a message for the user). */
bool sched_check_authzid(const struct imap_client_options *opts,
                         struct imap_client *client, const char *side,
                         const char **error_r);

#endif
