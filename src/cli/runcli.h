/* runcli.h: what plan, run and status share: their options, the users
 * file turned into accounts with endpoints and connection caps, and the
 * plan (inventory, measure, schedule). The rendering of plans, progress
 * and reports is in src/report. */
#ifndef IMAPFERRY_CLI_RUNCLI_H
#define IMAPFERRY_CLI_RUNCLI_H

#include "cli.h"

#include "maildir.h"
#include "plan.h"
#include "report.h"
#include "slots.h"
#include "source.h"
#include "users.h"

/* The options of plan and run (status takes --state and --run). */
struct run_cli {
	struct cli_common common;
	unsigned workers;
	unsigned max_src, max_dst;
	char **folders;
	size_t n_folders;
	const char **includes, **excludes, **maps;
	size_t n_inc, n_exc, n_map;
	const char *src_admin, *dst_admin, *src_pwfile, *dst_pwfile;
	const char *state_path, *report_path, *log_path;
	const char *html_path, *metrics_path;
	bool new_run, no_probe_target, no_calibrate, no_split, final;
	bool no_check;               /* plan --no-check */
	struct net_tls_ctx *tls;      /* shared by every session, or NULL */
	bool delete_missing, skip_deleted, uid_ranges;
	struct maildir_options md;
	unsigned max_errors, backoff, sample;
	unsigned retry_budget;       /* --retry-budget, 0: the engine's 120 s */
	double split_above;
	enum report_progress progress;
	int64_t run_id;
	const char *cost_path;       /* --cost: no calibration, or NULL */
	unsigned machines;           /* --machines: plan for M x workers */
	const char *machine;         /* --machine, or NULL */
	unsigned lease;              /* --lease, 0: 30 s */
	const char *dst_imap_tmpl;   /* --dst-imap (template), or NULL */
	const char *changes_users;   /* status --changes USERS, or NULL */
	const char *bodies_from;     /* --bodies-from cyrus-spool:PATH, or NULL */
	/* resolved */
	const char *users_path, *src_tmpl, *dst_tmpl;
	char *src_pw, *dst_pw;
	struct sched_users users;
	struct sched_account *accounts;
	size_t n_accounts;
	struct endpoint *eps;        /* 2 per account */
	struct endpoint *dovecot_eps; /* --dst-imap: 1 per account, or NULL */
	struct endpoint *bodies_eps; /* --bodies-from: 1 per account, or NULL */
	struct source *srcs;         /* each account's source recipe */
	struct sched_slots *src_slots, *dst_slots;
};

/* The options plan and run both take, for their struct cli_use lists. */
#define RUN_CLI_USES \
	{ CLI_OPT_WORKERS, NULL }, { CLI_OPT_MAX_SRC, NULL }, \
	{ CLI_OPT_MAX_DST, NULL }, { CLI_OPT_FOLDERS, NULL }, \
	{ CLI_OPT_SRC_ADMIN, NULL }, \
	{ CLI_OPT_SRC_PWFILE, "admin/master password, or the password of every\n" \
	                      "account without one in the users file\n" \
	                      "(else $IMAPFERRY_SRC_PASSWORD)" }, \
	{ CLI_OPT_DST_ADMIN, NULL }, \
	{ CLI_OPT_DST_PWFILE, "the same for the target\n" \
	                      "(else $IMAPFERRY_DST_PASSWORD)" }, \
	{ CLI_OPT_SAMPLE, NULL }, { CLI_OPT_PROBE_TARGET, NULL }, \
	{ CLI_OPT_NO_PROBE_TARGET, NULL }, { CLI_OPT_NO_CALIBRATE, NULL }, \
	{ CLI_OPT_NO_SPLIT, NULL }, { CLI_OPT_UID_RANGES, NULL }, \
	{ CLI_OPT_NO_UID_RANGES, NULL }, { CLI_OPT_SPLIT_ABOVE, NULL }, \
	{ CLI_OPT_OWNER, NULL }, { CLI_OPT_NO_FSYNC, NULL }, \
	{ CLI_OPT_FSYNC, NULL }, \
	{ CLI_OPT_BODIES_FROM, NULL }

#define RUN_CLI_TRAILER \
	"USERS: CSV 'src_user,dst_user[,src_password_file,dst_password_file]' or\n" \
	"  imapsync lines 'user1;password1;user2;password2'.\n" \
	"SRC/DST: templates with %u (user), %n (local part), %d (domain):\n" \
	"  'imap://%u@host:143?tls=none', 'imap://%u*master@host',\n" \
	"  'maildir:/srv/mail/%u/Maildir'. A line whose source and target are\n" \
	"  the same account is refused.\n" \
	"SRC may be 'cyrus:/copy/spool?user=%u': a copied Cyrus spool read\n" \
	"  offline (the users file names the Cyrus users)."

/* Zeroes c and sets the defaults; argc bounds the repeatable options. */
void run_cli_init(struct run_cli *c, int argc);
/* The cli_option_fn of plan, run and status (ctx: struct run_cli). */
int run_cli_option(void *ctx, int id, const char *arg, uint64_t num);
/* Parses the command line of cmd into c: the options, then USERS SRC DST
 * when cmd takes 3 operands. Returns 0, or -1 with *status_r (0 after
 * --help, 2 after a usage error; the message printed). */
int run_cli_args(struct run_cli *c, const struct cli_command *cmd, int argc,
                 char **argv, int *status_r);
void run_cli_free(struct run_cli *c);

/* Users file, templates, logins, endpoints, caps. Returns 0, or the exit
 * status (message printed): 2 for a bad users file, template or
 * password file, or a line whose source and target are one account. */
int run_cli_setup_accounts(struct run_cli *c);

/* FILE.lock of a state database: run holds a write lock on it (fcntl, so
 * that status can see it without taking it) for as long as it lives.
 * run_cli_lock_state returns the descriptor, or -1 with errno
 * (EWOULDBLOCK: another run holds it); run_cli_state_locked says whether
 * a live process holds it now. */
int run_cli_lock_state(const char *lock_path);
bool run_cli_state_locked(const char *lock_path);
/* Jobs at once allowed by the caps (one source and one target server;
 * with several, each server has its own caps). */
unsigned run_cli_max_concurrency(const struct run_cli *c);
/* True when every account has the same source and the same target
 * server (the usual case): the caps then bound the jobs at once. */
bool run_cli_one_server_pair(const struct run_cli *c);
/* Inventory, calibration, schedule. Returns 0 with *cost, *plan (free
 * with sched_plan_free()), *est_r (one per account, free each with
 * sched_account_est_free() and the array) and the seconds planning took,
 * or an exit status (message printed): 3 when the inventory could not
 * run (an account that cannot be inventoried is only logged). */
int run_cli_make_plan(struct run_cli *c, struct sched_cost *cost,
                      struct sched_plan *plan, struct sched_account_est **est_r,
                      double *plan_seconds_r);
/* The struct report_plan of a plan of c (now: the current time). */
void run_cli_report_plan(const struct run_cli *c, const struct sched_plan *p,
                         const struct sched_cost *cost,
                         const struct sched_account_est *est,
                         double plan_seconds, struct report_plan *rp_r);

/* run --metrics FILE (metrics.c). Zero it and set path (NULL: off). */
struct run_metrics {
	const char *path;
	double last;                  /* time_mono_sec() of the last write */
	bool written, warned;
};
/* Writes the metrics of run_id to m->path (report_file_write(): a
 * temporary file in the same directory renamed over it, as
 * node_exporter's textfile collector wants) when the last write is 5 s
 * old, or always when final. Totals come from the job table (the
 * runner's progress thread updates it every 2 s), hosts from c's
 * accounts, rates and ETA from v (NULL: from the run's row). Returns 0,
 * or -1 after logging the first failure (the run goes on). */
int run_metrics_tick(struct run_metrics *m, const struct run_cli *c,
                     struct state_db *db, int64_t run_id,
                     const struct sched_view *v, bool final);

#endif
