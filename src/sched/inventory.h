/* inventory.h: planning without connecting (issue 14): an inventory file
 * instead of the servers, a cost model saved by an earlier calibration,
 * and the estimate for several machines.
 *
 * Inventory file (plan --inventory FILE), one of:
 *   - the JSON that "imapferry plan --json" writes: its "inventory" array,
 *       [{"account": "alice", "prefix": "INBOX.", "separator": ".",
 *         "folders": [{"name": "INBOX", "messages": 1200,
 *                      "bytes": 95000000, "uidnext": 1301}, ...]}, ...]
 *     ("prefix", "separator", "uidnext" optional; the array alone is
 *     accepted too). A plan --json of an older imapferry has no
 *     "inventory": its "jobs" are read instead, one folder per job (the
 *     job's first folder, or INBOX for a whole account) with the job's
 *     messages and bytes: the totals are right, the folders are not.
 *   - CSV lines "account,folder,messages,bytes" (a first line starting
 *     "account," is a header; empty lines and lines starting with '#' are
 *     skipped). The account is the text before the first comma, messages
 *     and bytes the last two fields, the folder all between (so it may
 *     hold commas; no quoting). bytes 0 with messages: estimated from the
 *     cost model's average message size.
 * Accounts keep the order of their first appearance. A control byte or
 * NUL anywhere, a number that is not a decimal integer, a field missing,
 * a folder listed twice for an account: an error naming the line.
 *
 * Cost file (plan --cost FILE, written by plan --save-cost FILE): the JSON
 * object that plan --json has under "cost" (a whole plan --json document
 * is accepted too: its "cost" is taken):
 *   {"calibrated": true, "per_account_ms": 310, "per_folder_ms": 12,
 *    "status_per_folder_ms": 0.4, "per_message_ms": 0.9,
 *    "per_megabyte_ms": 200, "avg_message_size": 80000,
 *    "parallel_sessions": 4, "parallel_speedup": 3.8, ...}
 * per_account_ms, per_folder_ms, per_message_ms and per_megabyte_ms are
 * required; the others default as sched_cost_default(). Unknown keys are
 * ignored (the sample figures are kept for the report). */
#ifndef IMAPFERRY_SCHED_INVENTORY_H
#define IMAPFERRY_SCHED_INVENTORY_H

#include "json.h"
#include "plan.h"

struct sched_inventory {
	struct sched_account_est *est;  /* n; est[i].label borrows names[i] */
	char **names;                   /* account names (owned) */
	size_t n;
	uint64_t folders, messages, bytes;
};

/* Reads an inventory file (see above; at most 1 GB). Returns 0 with *inv
 * (free with sched_inventory_free()), or -1 with *error_r naming the file
 * and the line. */
int sched_inventory_load(const char *path, struct sched_inventory *inv,
                         const char **error_r) ATTR_WARN_UNUSED;
/* The same from a buffer (len bytes; what names it in errors). */
int sched_inventory_parse(const char *what, const char *data, size_t len,
                          struct sched_inventory *inv,
                          const char **error_r) ATTR_WARN_UNUSED;
void sched_inventory_free(struct sched_inventory *inv);

/* A final pass after an earlier complete one, priced from an inventory
 * of what is new since (messages and bytes per folder): a folder with no
 * new message costs one STATUS (per_status), its whole cost moved into
 * the account's extra_seconds and the folder dropped from est; the others
 * keep their EXAMINE and their new mail. Returns the folders that stay. */
size_t sched_inventory_final(struct sched_inventory *inv,
                             const struct sched_cost *c);

/* The cost model as JSON (the "cost" object of plan --json). */
void sched_cost_json(struct json *j, const struct sched_cost *c);
/* Reads a cost file (see above) into *c. Returns 0, or -1 with *error_r
 * naming the file and the key. */
int sched_cost_load(const char *path, struct sched_cost *c,
                    const char **error_r) ATTR_WARN_UNUSED;
int sched_cost_parse(const char *what, const char *data, size_t len,
                     struct sched_cost *c,
                     const char **error_r) ATTR_WARN_UNUSED;

/* Predicted wall time of a plan's jobs run by machines machines with
 * workers jobs each at most, all taking the largest job left from one
 * queue (as the PostgreSQL claims do). The jobs of one machine progress
 * at speedup(k)/k of their alone speed (k: jobs running on it); max_conc
 * (0: none) caps the jobs at once over all machines (the connection
 * caps); src_rate (bytes/s, 0: none) caps the bytes per second of all
 * jobs together (the source's total limit): when the jobs running would
 * read faster, all slow down in proportion. bound_r (may be NULL) gets
 * what limited the end most: "source" (the rate cap was binding for more
 * than half the time), "largest job" (the last job to end ran alone for
 * more than a tenth of the time), or "workers". */
double sched_predict_machines(const struct sched_cost *c,
                              const struct sched_plan *p, unsigned machines,
                              unsigned workers, unsigned max_conc,
                              double src_rate, const char **bound_r);

#endif
