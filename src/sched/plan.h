/* plan.h: the cost model and the schedule of a whole-server migration.
 * Pure computation (no I/O), so every decision is unit-tested.
 *
 * Cost model. The time of one job (an account or a part of one) is
 *   per_account + per_folder * folders + per_message * messages
 *   + per_byte * bytes
 * per_message and per_byte come from a least-squares fit over timed
 * batches of a measured sample of the source (sched_cost_fit());
 * per_account is twice the measured login + inventory time (both sides),
 * per_folder twice the measured EXAMINE time plus one CREATE on the
 * target. When the target probe measured APPEND too (an IMAP target;
 * probe.h), each coefficient is the larger of the two sides': the engine
 * reads and writes at once, so a copy goes at the slower side's pace.
 * Running k jobs at once does not make each as fast as alone: the model
 * keeps a measured speedup S at P parallel sessions (a session being a
 * fetch and an APPEND at once where the target was probed) and assumes
 * the efficiency S/P from 1 to P sessions linearly, but never more than
 * S below P (sched_cost_speedup()). On a machine where the client and
 * both servers share a few cores S is about 1: the whole server then
 * takes about the sum of its jobs, whatever N. The number of cores is
 * not an input: the servers are usually on other machines. How close
 * the estimate comes on a 2-core machine shared by the client and both
 * servers: docs/BENCHMARKS.md (single runs scatter by 2x there).
 *
 * Schedule. Jobs run largest first (LPT: each free worker takes the
 * largest job left, which is within 4/3 of the optimal makespan). An
 * account larger than the threshold T (total/N by default, N = workers)
 * whose work beyond the per-account cost exceeds that cost (else a split
 * only adds logins) is split by folder into parts of about T each (each
 * part pays the per-account cost again, so its folders get T minus that
 * cost, but never less than the cost itself). Parts are made of folder
 * families (a top-level folder and all below it, after the personal
 * namespace prefix), so a parent and its children are copied by one
 * session, parent first; a single folder above
 * that is split by UID range when the target allows it (a Maildir
 * target; an IMAP target assigns UIDs in APPEND order, so one folder is
 * never written by two sessions). One part of a split account is the
 * "rest" part: all folders except those of the other parts, so folders
 * created after the plan are copied too. */
#ifndef IMAPFERRY_SCHED_PLAN_H
#define IMAPFERRY_SCHED_PLAN_H

#include "base.h"

struct sched_cost {
	double per_account;       /* seconds per job (logins, inventories) */
	double per_folder;        /* seconds per folder (SELECT both sides) */
	double per_status;        /* seconds per folder of an unchanged folder
	                             in a later pass: its STATUS in the
	                             inventory (inventory.h) */
	double per_message;       /* seconds per message */
	double per_byte;          /* seconds per byte */
	unsigned par_sessions;    /* P of the parallel measure; <= 1: none */
	double par_speedup;       /* measured throughput ratio at P sessions */
	double avg_message_size;  /* bytes, for folders without a size */
	/* what was measured, for the report */
	unsigned sample_messages;
	uint64_t sample_bytes;
	double sample_seconds;
	bool calibrated;          /* false: the defaults below */
	bool target_probed;       /* APPEND probe was made */
	double dst_per_message, dst_per_byte;
};

/* Defaults without a measure: 5 ms per message, 20 MB/s, 50 ms per
 * folder, 2 ms per STATUS, 0.3 s per account, linear speedup, 60 KB per
 * message. */
void sched_cost_default(struct sched_cost *c);

/* One timed batch of the sample. */
struct sched_batch {
	unsigned messages;
	uint64_t bytes;
	double seconds;
};

/* Least squares of seconds = a * messages + b * bytes over n batches,
 * with a, b >= 0 (a negative coefficient is refitted as 0). Returns 0 with
 * *per_message_r and *per_byte_r, or -1 when the batches determine
 * nothing (no batch, or all empty). */
int sched_cost_fit(const struct sched_batch *b, size_t n,
                   double *per_message_r, double *per_byte_r) ATTR_WARN_UNUSED;

/* Seconds for one job of this size alone. */
double sched_cost_job(const struct sched_cost *c, unsigned folders,
                      uint64_t messages, uint64_t bytes);

/* Throughput of k concurrent sessions relative to one (1 for k <= 1). */
double sched_cost_speedup(const struct sched_cost *c, unsigned k);

/* Makespan of LPT on machines machines for durations (any order; not
 * modified). assign_r (n entries, may be NULL) gets each duration's
 * machine. Returns the largest machine total (0 for n == 0). */
double sched_lpt_makespan(const double *durations, size_t n,
                          unsigned machines, unsigned *assign_r);

/* Predicted wall time of jobs (their alone-durations) with k workers
 * (capped at max_conc concurrent jobs, 0: no cap): LPT makespan of the
 * durations stretched by k / speedup(k). */
double sched_predict(const struct sched_cost *c, const double *durations,
                     size_t n, unsigned k, unsigned max_conc);

/* ---- input: what the inventory found ---- */
struct sched_folder_est {
	char *name;               /* source wire name (owned) */
	uint64_t messages;
	uint64_t bytes;
	bool bytes_estimated;     /* messages * average size */
	uint32_t uidnext;
};

struct sched_account_est {
	const char *label;        /* for notes, e.g. the source user; borrowed */
	struct sched_folder_est *folders;
	size_t n_folders;
	uint64_t messages, bytes;
	double login_seconds;     /* login + inventory of the source */
	double extra_seconds;     /* added to the account's cost: the STATUS
	                             of folders left out (inventory.h) */
	char *prefix;             /* personal namespace prefix (owned) or NULL */
	char separator;           /* hierarchy separator, '\0' unknown */
	char *error;              /* inventory failed: why (owned), or NULL */
	bool auth_failed;
};

void sched_account_est_free(struct sched_account_est *e);

/* ---- output: the jobs ---- */
struct sched_job {
	size_t account;           /* index into the accounts */
	unsigned part, parts;     /* 1-based; 1/1 for a whole account */
	char **folders;           /* NULL-terminated, owned; NULL: all */
	size_t n_folders;
	bool rest;                /* all folders except exclude[] */
	char **exclude;           /* NULL-terminated, owned, or NULL */
	size_t n_exclude;
	uint32_t uid_lo, uid_hi;  /* UID range of folders[0]; 0 0: whole */
	unsigned est_folders;
	uint64_t est_messages, est_bytes;
	double est_seconds;
};

struct sched_plan_options {
	unsigned workers;         /* N; 0 counts as 1 */
	unsigned max_conc;        /* connection caps: jobs at once; 0 none */
	bool split;               /* split accounts above the threshold */
	double split_above;       /* the threshold in seconds; 0: total/N */
	bool uid_split;           /* target allows UID-range parts (Maildir) */
	/* the pass's folder filter (NULL: all folders) */
	char *const *folders;
	size_t n_folders;
};

struct sched_plan {
	struct sched_job *jobs;   /* largest first */
	size_t n_jobs;
	size_t n_accounts;
	unsigned workers;
	double total_seconds;     /* sum of the job durations */
	double threshold;         /* split above (total / N by default) */
	uint64_t messages, bytes;
	double *predicted;        /* [k] for k = 1..workers ([0] unused) */
	char **notes;             /* NULL-terminated human notes, owned */
	size_t n_notes;
};

/* Builds the jobs of n accounts from their estimates (est[i] belongs to
 * account i; an account whose inventory failed gets one job of
 * per_account seconds, so the run records its error). Never fails.
 * Free with sched_plan_free(). */
void sched_plan_build(const struct sched_account_est *est, size_t n,
                      const struct sched_cost *c,
                      const struct sched_plan_options *o,
                      struct sched_plan *plan_r);
void sched_plan_free(struct sched_plan *plan);

/* ---- the final pass ---- */
struct sched_final_summary {
	size_t folders;           /* folders inventoried */
	size_t unchanged;         /* same UIDVALIDITY and UIDNEXT as the last
	                             complete pass: one STATUS each */
	size_t changed;           /* new messages since (or flags) */
	size_t unknown;           /* never copied completely: whole */
	uint64_t new_messages, new_bytes;
};

/* Turns the inventory of the accounts into the estimate of a final pass
 * now: per folder, only the messages above the UIDNEXT of the last
 * complete pass recorded in the state (bytes in proportion); a folder the
 * state does not know (or whose UIDVALIDITY changed) stays whole. The
 * cost model then prices the folders' STATUS and the new mail. accounts[i]
 * belongs to est[i]. Returns 0, or -1 with *error_r (state database). */
struct sched_account;
struct state_db;
int sched_final_deltas(struct state_db *db, const struct sched_account *accounts,
                       struct sched_account_est *est, size_t n,
                       struct sched_final_summary *sum_r,
                       const char **error_r) ATTR_WARN_UNUSED;
/* Adds a plan note saying what the final pass covers. */
void sched_plan_note_final(struct sched_plan *plan,
                           const struct sched_final_summary *sum);

#endif
