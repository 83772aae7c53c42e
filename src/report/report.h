/* report.h: what imapferry shows and writes about a whole-server run:
 * the plan (text and JSON), the live progress display, the per-account
 * summary, the status view and the JSON report, and the safe writing of
 * report files.
 *
 * Everything renders into a struct buf (the caller decides where it
 * goes: stdout, stderr, a file), so each output is unit-tested from
 * constructed structs (tests/unit/test_report.c). Nothing here parses
 * options or talks to a server; the only I/O is report_load() (the state
 * database) and report_file_write() (a file).
 *
 * Layering: report may use sched, state and base. Protocol code (net,
 * imap, pop3, maildir) never includes it. */
#ifndef IMAPFERRY_REPORT_H
#define IMAPFERRY_REPORT_H

#include "buf.h"
#include "json.h"
#include "plan.h"
#include "runner.h"
#include "state.h"
#include "users.h"

/* ---- units ---- */

/* "512 B", "1.5 KB", "2.0 MB", ... (powers of 1000) into out. */
void report_fmt_bytes(char *out, size_t size, double v);
/* "4.2s", "42s", "3m05s", "2h07m"; "?" for a negative or non-finite s. */
void report_fmt_duration(char *out, size_t size, double s);

/* ---- the plan ---- */

/* What a plan is printed from. All pointers are borrowed: est and
 * accounts are indexed by sched_job.account. */
struct report_plan {
	const struct sched_plan *plan;
	const struct sched_cost *cost;
	const struct sched_account_est *est;
	const struct sched_account *accounts;
	unsigned max_conc;            /* jobs at once allowed by the caps */
	double plan_seconds;          /* how long planning took (text only) */
	int64_t now;                  /* epoch seconds: the estimated end */
	/* plan --machines M: the estimate with 1..M machines of
	 * machine_workers workers each ([m], [0] unused), and what limits
	 * each (sched_predict_machines()); machines 0: none */
	unsigned machines, machine_workers;
	const double *machine_seconds;
	const char *const *machine_bound;
	double src_rate;              /* bytes/s, the source's total; 0 none */
	bool final_inventory;         /* an inventory of new mail (--final) */
};

/* The plan as one JSON object (accounts, workers, estimates, the cost
 * model, notes; the jobs and the inventory (every account's folders, the
 * format plan --inventory reads: src/sched/inventory.h) when with_jobs;
 * the estimate per machine count with rp->machines). The state database
 * keeps it without the jobs. */
void report_plan_json(struct json *j, const struct report_plan *rp,
                      bool with_jobs);
/* The plan as the text table of "imapferry plan", appended to out. The
 * estimated end is in local time. */
void report_plan_text(struct buf *out, const struct report_plan *rp);

/* ---- live progress ---- */

enum report_progress {
	REPORT_PROGRESS_AUTO,         /* tty on a terminal, else plain */
	REPORT_PROGRESS_TTY,          /* redrawn in place */
	REPORT_PROGRESS_PLAIN,        /* a log line every 10 s */
	REPORT_PROGRESS_NONE,
};

struct report_display {
	enum report_progress mode;    /* TTY, PLAIN or NONE (not AUTO) */
	unsigned lines;               /* drawn last time (tty); 0 after
	                               * something else was written */
	double last_plain;            /* time of the last plain line */
};

/* "[####....]" of width characters for fraction 0..1. */
void report_bar(struct buf *out, double fraction, unsigned width);
/* The overall progress: messages, bytes, rate, ETA, jobs; sep goes
 * between its two halves ("\n" on a terminal, where lines must stay
 * short). */
void report_view_overall(struct buf *out, const struct sched_view *v,
                         const char *sep);
/* One running job: user, part, messages, bytes, time, attempt. */
void report_view_job(struct buf *out, const struct sched_view_job *a);

/* Appends to out what the display shows now for v (nothing for NONE, or
 * for PLAIN when the last line is less than 10 s old and not final).
 * now is time_mono_sec(); width is the terminal's columns (TTY lines
 * are cut to width - 1, since a wrapped line breaks the redraw). */
void report_display_render(struct report_display *d,
                           const struct sched_view *v, bool final,
                           double now, unsigned width, struct buf *out);

/* ---- the summary and the report of a run ---- */

/* One account of a run, summed over its jobs. Strings are borrowed from
 * the jobs but errors, which is owned. */
struct report_account {
	const char *src_user, *dst_user, *account;
	size_t jobs, done, failed, pending;
	uint64_t messages, bytes, skipped, failed_msgs, est_messages, est_bytes;
	unsigned folders_failed, attempts;
	double seconds;
	char *errors;                 /* job errors "; "-joined, or NULL */
	long folders;                 /* in the state database; -1 unknown
	                               * (report_load_folders() fills it) */
	int64_t started, finished;    /* first start, last end of its jobs'
	                               * last attempts (epoch s); 0 never */
	struct state_bodies bodies;   /* --bodies-from: where its bodies came
	                               * from (all 0 for other sources) */
};

/* "done", "done*" (messages failed), "pending" or "failed". */
const char *report_account_status(const struct report_account *a);

/* Everything the summary and the report show. Owned (report_data_free()). */
struct report_data {
	struct state_run run;
	struct sched_view view;
	struct state_job *jobs;
	size_t n_jobs;
	struct state_failure *fl;     /* this run's accounts' failures first */
	size_t n_fl;                  /* ... how many of them */
	size_t n_fl_all;              /* all entries of fl (to free) */
	struct report_account *accounts;
	size_t n_accounts;
};

/* Loads run run_id (0: the last) with its view, jobs and failures, then
 * report_data_summarize(). d is zeroed first. Returns 0, or -1 with
 * *error_r (then free d with report_data_free() all the same). */
int report_load(struct state_db *db, int64_t run_id, struct report_data *d,
                const char **error_r) ATTR_WARN_UNUSED;
/* Sums d->jobs into d->accounts (first-seen order) and moves the
 * failures of these accounts to the front of d->fl (d->n_fl of them);
 * the others stay after them. For a d filled by hand (tests). */
void report_data_summarize(struct report_data *d);
/* Sets the folders of each account of d from the state database.
 * Returns 0 or -1 with *error_r. */
int report_load_folders(struct state_db *db, struct report_data *d,
                        const char **error_r) ATTR_WARN_UNUSED;
/* The bodies of all of d's accounts, summed into *b_r; returns true when
 * any came from a spool copy or over IMAP in its place (a run with
 * --bodies-from), false for a run without (then nothing is shown). */
bool report_bodies_total(const struct report_data *d,
                         struct state_bodies *b_r);
/* Frees everything d owns (also what a failed report_load() left). */
void report_data_free(struct report_data *d);

/* The report as one JSON object: the run, its progress, the running
 * jobs and every account with its errors and recorded failures. */
void report_json(struct json *j, const struct report_data *d, double elapsed);
/* The per-account table (at most 5 failures shown per account). */
void report_summary_text(struct buf *out, const struct report_data *d);
/* What "imapferry status" prints: the run, a bar, the overall progress,
 * the running jobs and, when the run is not alive, the summary. now is
 * epoch seconds (for the heartbeat's age). */
void report_status_text(struct buf *out, const struct report_data *d,
                        int64_t now, bool alive);

/* ---- failure reasons ----
 *
 * The state database keeps each failure as a row (account, folder, UID,
 * scope, the server's or the engine's text); it has no reason code. The
 * reports group failures by a category derived from the scope and the
 * text as stored (docs/report.md lists the rules): this is a reading of
 * the text for people, never an input to what the engine does. */
enum report_reason {
	REPORT_REASON_REFUSED,        /* message: refused by the target */
	REPORT_REASON_TOO_LARGE,      /* message: [TOOBIG], APPENDLIMIT, ... */
	REPORT_REASON_OVER_QUOTA,     /* message: [OVERQUOTA], quota */
	REPORT_REASON_UID_CONFLICT,   /* message: cannot keep its UID */
	REPORT_REASON_VANISHED,       /* message or folder: gone from the source */
	REPORT_REASON_SOURCE_FOLDER,  /* folder: the source could not be read */
	REPORT_REASON_TARGET_FOLDER,  /* folder: the target folder failed */
	REPORT_REASON_SESSION,        /* session scope */
	REPORT_REASON_RUN,            /* run scope */
	REPORT_REASON_COUNT
};

/* The category of one failure row. */
enum report_reason report_failure_reason(const struct state_failure *f);
/* "refused-by-target", "too-large", ... (JSON keys, metric labels). */
const char *report_reason_name(enum report_reason r);
/* "refused by the target", "too large for the target", ... */
const char *report_reason_label(enum report_reason r);
/* Counts d's failures (the first d->n_fl) per category into counts. */
void report_reason_counts(const struct report_data *d,
                          size_t counts[REPORT_REASON_COUNT]);
/* "message", "folder", "session", "run". */
const char *report_scope_name(int scope);

/* "failures by reason:", then for each category with failures its count
 * and each failure (account, folder, UID, text), at most max_each per
 * category (0: all). Nothing when d has no failures. */
void report_reasons_text(struct buf *out, const struct report_data *d,
                         size_t max_each);

/* ---- the HTML report (report-html.c) ----
 *
 * One self-contained page (no script, font or image from elsewhere; SVG
 * drawn here): the run at a glance, a timeline of the jobs, throughput,
 * histograms of account sizes and times, a sortable table of accounts,
 * every failure grouped by reason, the verification. Every text from the
 * state database is escaped. now is epoch seconds (the end of running
 * jobs); folders of the accounts come from report_load_folders() (else
 * shown as "?"). */
void report_html(struct buf *out, const struct report_data *d, int64_t now);
/* report_html() of d to path by report_file_write(). */
int report_html_write(const char *path, const struct report_data *d,
                      int64_t now, const char **error_r) ATTR_WARN_UNUSED;
/* Appends s to out with & < > " ' escaped for HTML text and attributes. */
void report_html_escape(struct buf *out, const char *s);
/* Lane of each of n intervals [start[i], end[i]) by interval scheduling
 * in order of start: the first lane free at its start (lanes_r[i], from
 * 0; -1 for an interval with start 0, never run). Returns the number of
 * lanes used. */
unsigned report_assign_lanes(const int64_t *start, const int64_t *end,
                             size_t n, int *lanes_r);
/* Spreads each job's value evenly over [start, end] (end == start: one
 * second) and sums it per bucket of width seconds from t0: buckets[k]
 * gets the value that fell into [t0 + k*width, t0 + (k+1)*width). */
void report_spread(const int64_t *start, const int64_t *end,
                   const double *value, size_t n, int64_t t0, double width,
                   double *buckets, size_t n_buckets);

/* ---- metrics (report-metrics.c) ---- */

/* What the Prometheus text is made of; all borrowed. */
struct report_metrics {
	int64_t run_id;
	const struct state_job *jobs;
	size_t n_jobs;
	const char *const *src_host;  /* per job: source host label */
	const char *const *dst_host;  /* per job: target host label */
	double rate_messages, rate_bytes; /* recent, per second */
	double eta_seconds;           /* < 0 unknown */
	int64_t started;              /* the run's start, epoch seconds */
	int64_t now;                  /* epoch seconds */
};

/* The metrics in the Prometheus text exposition format (HELP and TYPE
 * lines, label values escaped), for node_exporter's textfile collector:
 * copied messages and bytes per source and target host, jobs by state,
 * retries, queue depth, rates, the estimated end. */
void report_metrics_text(struct buf *out, const struct report_metrics *m);

/* ---- files ---- */

/* Writes data to path safely: a new file "path.tmp-XXXXXX" in the same
 * directory, mode 0600 (reports name accounts), every byte written,
 * fsync, rename over path (atomic: readers see the old file or the new
 * one, never half of one), then an fsync of the directory. An existing
 * file is replaced, whatever its mode. Returns 0, or -1 with *error_r
 * naming the path (the temporary file is removed). */
int report_file_write(const char *path, const void *data, size_t len,
                      const char **error_r) ATTR_WARN_UNUSED;
/* report_json() of d, with a newline, to path by report_file_write().
 * Returns 0 or -1 with *error_r. */
int report_write(const char *path, const struct report_data *d,
                 double elapsed, const char **error_r) ATTR_WARN_UNUSED;

#endif
