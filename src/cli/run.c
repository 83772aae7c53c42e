/* run.c: imapferry plan / run / status: a whole server, many accounts.
 *
 *   plan USERS SRC DST     inventory, measured cost model, schedule
 *   run USERS SRC DST --state FILE
 *                          the plan executed by worker threads, resumable
 *   status --state FILE    the progress of a run, from any terminal
 *
 * The scheduling itself is in src/sched; this file parses options,
 * resolves each account's endpoints (URL parsing is the command line's),
 * draws progress and writes the summary and the JSON report. */
#include "cli.h"

#include "buf.h"
#include "copy.h"
#include "json.h"
#include "log.h"
#include "plan.h"
#include "probe.h"
#include "runner.h"
#include "slots.h"
#include "state.h"
#include "users.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <math.h>
#include <pwd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

enum {
	OPT_WORKERS = OPT_FIRST_LOCAL, OPT_MAX_SRC, OPT_MAX_DST, OPT_FOLDERS,
	OPT_SRC_ADMIN, OPT_DST_ADMIN, OPT_SRC_PW, OPT_DST_PW, OPT_STATE,
	OPT_REPORT, OPT_NEW_RUN, OPT_MAX_ERRORS, OPT_BACKOFF, OPT_LOG,
	OPT_PROGRESS, OPT_SAMPLE, OPT_PROBE_TARGET, OPT_NO_CALIBRATE,
	OPT_NO_SPLIT, OPT_INCLUDE, OPT_EXCLUDE, OPT_MAP, OPT_RUN_ID,
	OPT_DELETE_MISSING, OPT_SKIP_DELETED, OPT_NO_PROBE_TARGET,
	OPT_SPLIT_ABOVE, OPT_UID_RANGES, OPT_NO_UID_RANGES, OPT_OWNER, OPT_NO_FSYNC,
};

enum progress_mode { PROGRESS_AUTO, PROGRESS_TTY, PROGRESS_PLAIN,
                     PROGRESS_NONE };

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
	bool new_run, no_probe_target, no_calibrate, no_split;
	bool delete_missing, skip_deleted, uid_ranges;
	struct maildir_options md;
	unsigned max_errors, backoff, sample;
	double split_above;
	enum progress_mode progress;
	int64_t run_id;
	/* resolved */
	const char *users_path, *src_tmpl, *dst_tmpl;
	char *src_pw, *dst_pw;
	struct sched_users users;
	struct sched_account *accounts;
	size_t n_accounts;
	struct endpoint *eps;        /* 2 per account */
	struct sched_slots *src_slots, *dst_slots;
};

#define RUN_LONGOPTS \
	CLI_COMMON_LONGOPTS, \
	{ "workers", required_argument, NULL, OPT_WORKERS }, \
	{ "max-src-conns", required_argument, NULL, OPT_MAX_SRC }, \
	{ "max-dst-conns", required_argument, NULL, OPT_MAX_DST }, \
	{ "folders", required_argument, NULL, OPT_FOLDERS }, \
	{ "src-admin", required_argument, NULL, OPT_SRC_ADMIN }, \
	{ "dst-admin", required_argument, NULL, OPT_DST_ADMIN }, \
	{ "src-password-file", required_argument, NULL, OPT_SRC_PW }, \
	{ "dst-password-file", required_argument, NULL, OPT_DST_PW }, \
	{ "sample", required_argument, NULL, OPT_SAMPLE }, \
	{ "probe-target", no_argument, NULL, OPT_PROBE_TARGET }, \
	{ "no-probe-target", no_argument, NULL, OPT_NO_PROBE_TARGET }, \
	{ "no-calibrate", no_argument, NULL, OPT_NO_CALIBRATE }, \
	{ "no-split", no_argument, NULL, OPT_NO_SPLIT }, \
	{ "no-uid-ranges", no_argument, NULL, OPT_NO_UID_RANGES }, \
	{ "split-above", required_argument, NULL, OPT_SPLIT_ABOVE }, \
	{ "owner", required_argument, NULL, OPT_OWNER }, \
	{ "no-fsync", no_argument, NULL, OPT_NO_FSYNC }, \
	{ "help", no_argument, NULL, 'h' }

#define PLAN_HELP \
	"  --workers N           parallel jobs (default 4)\n" \
	"  --max-src-conns K     sessions per source server at once (default N)\n" \
	"  --max-dst-conns K     sessions per target server at once (default N)\n" \
	"  --folders NAME        only this source folder (repeatable), e.g.\n" \
	"                        --folders INBOX for the final cutover pass\n" \
	"  --src-admin USER      log in as USER on behalf of each account (SASL\n" \
	"                        PLAIN authzid: Cyrus admin, Dovecot master user)\n" \
	"  --src-password-file F admin/master password, or the password of every\n" \
	"                        account without one in the users file\n" \
	"  --dst-admin USER / --dst-password-file F   the same for the target\n" \
	"  --sample N            messages fetched to measure the source (300)\n" \
	"  --no-probe-target     do not time APPENDs on an IMAP target (by\n" \
	"                        default 89 messages go to a scratch folder\n" \
	"                        imapferry-probe-PID of the first sampled\n" \
	"                        account, which is deleted afterwards)\n" \
	"  --no-calibrate        no measure: default costs\n" \
	"  --no-split            never split an account into parts\n" \
	"  --no-uid-ranges       Maildir target: never split one folder into\n" \
	"                        UID ranges (only accounts by folders)\n" \
	"  --split-above SECONDS split accounts estimated above this (default:\n" \
	"                        the total estimate / N)\n" \
	"  --owner USER[:GROUP]  Maildir target: owner of the files written\n" \
	"  --no-fsync            Maildir target: no fdatasync at commits\n" \
	"USERS: CSV 'src_user,dst_user[,src_password_file,dst_password_file]' or\n" \
	"  imapsync lines 'user1;password1;user2;password2'.\n" \
	"SRC/DST: templates with %u (user), %n (local part), %d (domain):\n" \
	"  'imap://%u@host:143?tls=none', 'imap://%u*master@host',\n" \
	"  'maildir:/srv/mail/%u/Maildir'.\n"

static volatile sig_atomic_t got_signal;
static volatile sig_atomic_t signal_count;

static void
on_signal(int sig)
{
	got_signal = sig;
	signal_count++;
}

/* ------------------------------------------------------------ helpers */

static void
fmt_bytes(char *out, size_t size, double v)
{
	static const char *const units[] = { "B", "KB", "MB", "GB", "TB" };
	size_t u = 0;

	while (v >= 1000 && u + 1 < N_ELEMENTS(units)) {
		v /= 1000;
		u++;
	}
	snprintf(out, size, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
}

static void
fmt_duration(char *out, size_t size, double s)
{
	uint64_t t;

	if (s < 0 || !isfinite(s)) {
		snprintf(out, size, "?");
		return;
	}
	t = (uint64_t)(s + 0.5);
	if (t >= 3600)
		snprintf(out, size, "%" PRIu64 "h%02" PRIu64 "m", t / 3600,
		         t / 60 % 60);
	else if (t >= 60)
		snprintf(out, size, "%" PRIu64 "m%02" PRIu64 "s", t / 60, t % 60);
	else if (s < 9.95)
		snprintf(out, size, "%.1fs", s);
	else
		snprintf(out, size, "%" PRIu64 "s", t);
}

static int
parse_count(const char *opt, const char *arg, uint64_t max, unsigned *v_r)
{
	uint64_t v;

	if (!str_to_u64z(arg, max, &v) || v == 0) {
		fprintf(stderr, "imapferry: %s: expected a number from 1 to %"
		        PRIu64 "\n", opt, max);
		return -1;
	}
	*v_r = (unsigned)v;
	return 0;
}

/* --owner USER[:GROUP], names or numbers. Returns 0 or -1. */
static int
parse_owner(const char *spec, uid_t *uid_r, gid_t *gid_r)
{
	char *user = xstrdup(spec), *group = strchr(user, ':');
	uint64_t v;
	int ret = -1;

	if (group != NULL)
		*group++ = '\0';
	if (str_to_u64z(user, UINT32_MAX - 1, &v)) {
		*uid_r = (uid_t)v;
	} else {
		struct passwd *pw = getpwnam(user);

		if (pw == NULL)
			goto out;
		*uid_r = pw->pw_uid;
		if (group == NULL)
			*gid_r = pw->pw_gid;
	}
	if (group != NULL) {
		if (str_to_u64z(group, UINT32_MAX - 1, &v)) {
			*gid_r = (gid_t)v;
		} else {
			struct group *gr = getgrnam(group);

			if (gr == NULL)
				goto out;
			*gid_r = gr->gr_gid;
		}
	}
	ret = 0;
out:
	free(user);
	return ret;
}

/* Consumes an option shared by plan and run. 1: consumed, 0: not one,
 * -1: bad value (message printed). */
static int
run_option(struct run_cli *c, int opt, const char *arg)
{
	int ret = cli_common_option(&c->common, opt, arg);

	if (ret != 0)
		return ret;
	switch (opt) {
	case OPT_WORKERS:
		return parse_count("--workers", arg, 1000, &c->workers) < 0 ? -1 : 1;
	case OPT_MAX_SRC:
		return parse_count("--max-src-conns", arg, 10000, &c->max_src) < 0 ?
		    -1 : 1;
	case OPT_MAX_DST:
		return parse_count("--max-dst-conns", arg, 10000, &c->max_dst) < 0 ?
		    -1 : 1;
	case OPT_SAMPLE:
		return parse_count("--sample", arg, 100000, &c->sample) < 0 ? -1 : 1;
	case OPT_MAX_ERRORS:
		return parse_count("--max-errors", arg, 1000, &c->max_errors) < 0 ?
		    -1 : 1;
	case OPT_BACKOFF:
		return parse_count("--backoff", arg, 3600, &c->backoff) < 0 ? -1 : 1;
	case OPT_FOLDERS:
		c->folders[c->n_folders++] = (char *)arg;
		return 1;
	case OPT_INCLUDE: c->includes[c->n_inc++] = arg; return 1;
	case OPT_EXCLUDE: c->excludes[c->n_exc++] = arg; return 1;
	case OPT_MAP: c->maps[c->n_map++] = arg; return 1;
	case OPT_SRC_ADMIN: c->src_admin = arg; return 1;
	case OPT_DST_ADMIN: c->dst_admin = arg; return 1;
	case OPT_SRC_PW: c->src_pwfile = arg; return 1;
	case OPT_DST_PW: c->dst_pwfile = arg; return 1;
	case OPT_STATE: c->state_path = arg; return 1;
	case OPT_REPORT: c->report_path = arg; return 1;
	case OPT_LOG: c->log_path = arg; return 1;
	case OPT_NEW_RUN: c->new_run = true; return 1;
	case OPT_PROBE_TARGET: c->no_probe_target = false; return 1;
	case OPT_NO_PROBE_TARGET: c->no_probe_target = true; return 1;
	case OPT_NO_CALIBRATE: c->no_calibrate = true; return 1;
	case OPT_NO_SPLIT: c->no_split = true; return 1;
	case OPT_SPLIT_ABOVE: {
		char *end;

		errno = 0;
		c->split_above = strtod(arg, &end);
		if (errno != 0 || *end != '\0' || end == arg ||
		    !(c->split_above > 0) || !isfinite(c->split_above)) {
			fprintf(stderr, "imapferry: --split-above: expected "
			        "seconds\n");
			return -1;
		}
		return 1;
	}
	case OPT_DELETE_MISSING: c->delete_missing = true; return 1;
	case OPT_UID_RANGES: c->uid_ranges = true; return 1;
	case OPT_NO_UID_RANGES: c->uid_ranges = false; return 1;
	case OPT_NO_FSYNC: c->md.fsync = false; return 1;
	case OPT_OWNER:
		if (parse_owner(arg, &c->md.owner, &c->md.group) < 0) {
			fprintf(stderr, "imapferry: --owner: unknown user or "
			        "group '%s'\n", arg);
			return -1;
		}
		return 1;
	case OPT_SKIP_DELETED: c->skip_deleted = true; return 1;
	case OPT_RUN_ID: {
		uint64_t v;

		if (!str_to_u64z(arg, INT64_MAX, &v)) {
			fprintf(stderr, "imapferry: --run: expected a run number\n");
			return -1;
		}
		c->run_id = (int64_t)v;
		return 1;
	}
	case OPT_PROGRESS:
		if (strcmp(arg, "auto") == 0)
			c->progress = PROGRESS_AUTO;
		else if (strcmp(arg, "tty") == 0)
			c->progress = PROGRESS_TTY;
		else if (strcmp(arg, "plain") == 0)
			c->progress = PROGRESS_PLAIN;
		else if (strcmp(arg, "none") == 0)
			c->progress = PROGRESS_NONE;
		else {
			fprintf(stderr, "imapferry: --progress: auto, tty, plain "
			        "or none\n");
			return -1;
		}
		return 1;
	default:
		return 0;
	}
}

static void
run_cli_init(struct run_cli *c, int argc)
{
	memset(c, 0, sizeof(*c));
	maildir_options_init(&c->md);
	c->uid_ranges = true;
	c->folders = xcalloc((size_t)argc + 1, sizeof(char *));
	c->includes = xcalloc((size_t)argc + 1, sizeof(char *));
	c->excludes = xcalloc((size_t)argc + 1, sizeof(char *));
	c->maps = xcalloc((size_t)argc + 1, sizeof(char *));
}

/* Parses the command line of plan and run: the options (run_option())
 * and the three arguments USERS SRC DST, into c. Returns 0, or -1 with
 * *status_r set to the exit status: 0 after --help (usage printed to
 * stdout), 2 after a bad option or argument count (usage printed to
 * stderr) or a bad option value (run_option() printed why). */
static int
run_cli_args(struct run_cli *c, int argc, char **argv,
             const struct option *longopts, void (*usage)(FILE *f),
             int *status_r)
{
	int opt, ret;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
		if (opt == 'h') {
			usage(stdout);
			*status_r = 0;
			return -1;
		}
		if ((ret = run_option(c, opt, optarg)) < 0) {
			*status_r = 2;
			return -1;
		}
		if (ret == 0)
			break;
	}
	if (opt != -1 || optind + 3 != argc) {
		usage(stderr);
		*status_r = 2;
		return -1;
	}
	c->users_path = argv[optind];
	c->src_tmpl = argv[optind + 1];
	c->dst_tmpl = argv[optind + 2];
	return 0;
}

static void
run_cli_free(struct run_cli *c)
{
	if (c->eps != NULL)
		for (size_t i = 0; i < 2 * c->n_accounts; i++)
			endpoint_free(&c->eps[i]);
	free(c->eps);
	sched_accounts_free(&c->accounts, c->n_accounts);
	sched_users_free(&c->users);
	secret_free(&c->src_pw);
	secret_free(&c->dst_pw);
	sched_slots_free(&c->src_slots);
	sched_slots_free(&c->dst_slots);
	free(c->folders);
	free(c->includes);
	free(c->excludes);
	free(c->maps);
}

static int
load_login_password(const char *file, const char *env, char **pw_r)
{
	const char *error, *v;

	*pw_r = NULL;
	if (file != NULL) {
		if (file_read_small(file, 64 * 1024, true, pw_r, &error) < 0) {
			fprintf(stderr, "imapferry: %s\n", error);
			return -1;
		}
	} else if ((v = getenv(env)) != NULL) {
		*pw_r = xstrdup(v);
	}
	return 0;
}

/* Users file, templates, logins, endpoints, caps. Returns 0 or an exit
 * status (message printed). */
static int
setup_accounts(struct run_cli *c)
{
	struct sched_login sl, dl;
	const char *error;
	unsigned workers;

	if (sched_users_load(c->users_path, &c->users, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		return 2;
	}
	if (!sched_url_is_imap(c->src_tmpl)) {
		fprintf(stderr, "imapferry: the source must be an IMAP server "
		        "(imap:// or imaps://)\n");
		return 2;
	}
	if (load_login_password(c->src_pwfile, "IMAPFERRY_SRC_PASSWORD",
	                        &c->src_pw) < 0 ||
	    load_login_password(c->dst_pwfile, "IMAPFERRY_DST_PASSWORD",
	                        &c->dst_pw) < 0)
		return 2;
	sl = (struct sched_login){ .admin = c->src_admin, .password = c->src_pw };
	dl = (struct sched_login){ .admin = c->dst_admin, .password = c->dst_pw };
	if (sched_accounts_build(&c->users, c->src_tmpl, c->dst_tmpl, &sl, &dl,
	                         &c->accounts, &c->n_accounts, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		return 2;
	}
	c->eps = xcalloc(2 * c->n_accounts + 1, sizeof(*c->eps));
	for (size_t i = 0; i < c->n_accounts; i++) {
		struct sched_account *a = &c->accounts[i];
		struct endpoint *se = &c->eps[2 * i], *de = &c->eps[2 * i + 1];

		if (endpoint_parse(a->src_url, se, &error) < 0 ||
		    endpoint_parse(a->dst_url, de, &error) < 0) {
			fprintf(stderr, "imapferry: users file line %u: %s\n",
			        a->line, error);
			return 2;
		}
		cli_apply_common(&c->common, se);
		cli_apply_common(&c->common, de);
		se->imap.password = a->src_password;
		se->imap.authzid = a->src_authzid;
		se->imap.label = "src";
		a->src_opts = se->imap;
		a->src_slot = sched_slot_key(se->host, se->port,
		                             se->imap.implicit_tls);
		if (de->kind == ENDPOINT_MAILDIR) {
			a->dst_maildir = true;
			a->dst_courier = de->flavor != NULL &&
			                 strcmp(de->flavor, "courier") == 0;
			a->dst_path = de->path;
		} else {
			de->imap.password = a->dst_password;
			de->imap.authzid = a->dst_authzid;
			de->imap.label = "dst";
			a->dst_opts = de->imap;
			a->dst_slot = sched_slot_key(de->host, de->port,
			                             de->imap.implicit_tls);
		}
	}
	workers = c->workers > 0 ? c->workers : 4;
	c->workers = workers;
	c->src_slots = sched_slots_new(c->max_src > 0 ? c->max_src : workers);
	c->dst_slots = sched_slots_new(c->max_dst > 0 ? c->max_dst : workers);
	return 0;
}

/* True when every account has the same source and the same target
 * server (the usual case): the caps then bound the jobs at once. */
static bool
one_server_pair(const struct run_cli *c)
{
	for (size_t i = 1; i < c->n_accounts; i++) {
		const struct sched_account *a = &c->accounts[i], *b = &c->accounts[0];

		if (strcmp(a->src_slot, b->src_slot) != 0 ||
		    (a->dst_slot != NULL) != (b->dst_slot != NULL) ||
		    (a->dst_slot != NULL && strcmp(a->dst_slot, b->dst_slot) != 0))
			return false;
	}
	return true;
}

/* Jobs at once allowed by the caps (for one source and one target
 * server; with several, each server has its own caps). */
static unsigned
max_concurrency(const struct run_cli *c)
{
	unsigned m = c->workers;

	if (sched_slots_max(c->src_slots) < m)
		m = sched_slots_max(c->src_slots);
	if (c->n_accounts > 0 && !c->accounts[0].dst_maildir &&
	    sched_slots_max(c->dst_slots) < m)
		m = sched_slots_max(c->dst_slots);
	return m > 0 ? m : 1;
}

/* Inventory, calibration, schedule. Returns 0 or an exit status. */
static int
make_plan(struct run_cli *c, struct sched_cost *cost, struct sched_plan *plan,
          struct sched_account_est **est_r, double *plan_seconds_r)
{
	struct sched_probe_options po = { 0 };
	struct sched_plan_options o = { 0 };
	struct sched_account_est *est;
	const char *error;
	double t0 = time_mono_sec();
	size_t failed = 0;

	po.sessions = max_concurrency(c);
	po.src_slots = c->src_slots;
	po.dst_slots = c->dst_slots;
	po.folders = c->n_folders > 0 ? c->folders : NULL;
	po.n_folders = c->n_folders;
	po.sample_messages = c->sample;
	po.par_sessions = max_concurrency(c) < 16 ? max_concurrency(c) : 16;
	po.probe_target = !c->no_probe_target;
	po.md = &c->md;
	est = xcalloc(c->n_accounts + 1, sizeof(*est));
	log_info("plan: inventory of %zu accounts (%u sessions at once)",
	         c->n_accounts, po.sessions);
	if (sched_inventory(c->accounts, c->n_accounts, &po, est, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		for (size_t i = 0; i < c->n_accounts; i++)
			sched_account_est_free(&est[i]);
		free(est);
		return 1;
	}
	for (size_t i = 0; i < c->n_accounts; i++)
		if (est[i].error != NULL) {
			failed++;
			log_warn("plan: %s: %s", c->accounts[i].src_user,
			         est[i].error);
		}
	if (c->no_calibrate) {
		sched_cost_default(cost);
	} else {
		log_info("plan: measuring the source");
		if (sched_calibrate(c->accounts, est, c->n_accounts, &po, cost,
		                    &error) < 0)
			log_warn("plan: measure incomplete: %s", error);
	}
	o.workers = c->workers;
	o.max_conc = max_concurrency(c);
	o.split = !c->no_split;
	o.split_above = c->split_above;
	/* UID-range parts of one large folder: Maildir targets only (an
	 * IMAP target numbers messages in APPEND order) */
	o.uid_split = c->uid_ranges && c->n_accounts > 0 &&
	              c->accounts[0].dst_maildir;
	o.folders = po.folders;
	o.n_folders = po.n_folders;
	sched_plan_build(est, c->n_accounts, cost, &o, plan);
	if (failed > 0)
		log_warn("plan: %zu of %zu accounts could not be inventoried "
		         "(their jobs will record the error)", failed,
		         c->n_accounts);
	*est_r = est;
	*plan_seconds_r = time_mono_sec() - t0;
	return 0;
}

static void
cost_json(struct json *j, const struct sched_cost *c)
{
	json_obj_begin(j);
	json_key(j, "calibrated"); json_bool(j, c->calibrated);
	json_key(j, "per_account_ms"); json_double(j, c->per_account * 1e3);
	json_key(j, "per_folder_ms"); json_double(j, c->per_folder * 1e3);
	json_key(j, "per_message_ms"); json_double(j, c->per_message * 1e3);
	json_key(j, "per_megabyte_ms"); json_double(j, c->per_byte * 1e9);
	json_key(j, "avg_message_size"); json_double(j, c->avg_message_size);
	json_key(j, "parallel_sessions"); json_u64(j, c->par_sessions);
	json_key(j, "parallel_speedup"); json_double(j, c->par_speedup);
	json_key(j, "sample_messages"); json_u64(j, c->sample_messages);
	json_key(j, "sample_bytes"); json_u64(j, c->sample_bytes);
	json_key(j, "sample_seconds"); json_double(j, c->sample_seconds);
	json_key(j, "target_probed"); json_bool(j, c->target_probed);
	if (c->target_probed) {
		json_key(j, "target_per_message_ms");
		json_double(j, c->dst_per_message * 1e3);
		json_key(j, "target_per_megabyte_ms");
		json_double(j, c->dst_per_byte * 1e9);
	}
	json_obj_end(j);
}

static void
plan_json(struct json *j, const struct run_cli *c, const struct sched_plan *p,
          const struct sched_cost *cost, const struct sched_account_est *est,
          bool with_jobs)
{
	json_obj_begin(j);
	json_key(j, "accounts"); json_u64(j, p->n_accounts);
	json_key(j, "workers"); json_u64(j, p->workers);
	json_key(j, "max_concurrency"); json_u64(j, max_concurrency(c));
	json_key(j, "messages"); json_u64(j, p->messages);
	json_key(j, "bytes"); json_u64(j, p->bytes);
	json_key(j, "total_work_s"); json_double(j, p->total_seconds);
	json_key(j, "split_threshold_s"); json_double(j, p->threshold);
	json_key(j, "estimated_seconds"); json_double(j, p->predicted[p->workers]);
	json_key(j, "estimated_end"); json_i64(j, (int64_t)time(NULL) +
	                                     (int64_t)p->predicted[p->workers]);
	json_key(j, "predicted_seconds");
	json_arr_begin(j);
	for (unsigned k = 1; k <= p->workers; k++) {
		json_obj_begin(j);
		json_key(j, "workers"); json_u64(j, k);
		json_key(j, "seconds"); json_double(j, p->predicted[k]);
		json_obj_end(j);
	}
	json_arr_end(j);
	json_key(j, "cost"); cost_json(j, cost);
	json_key(j, "notes");
	json_arr_begin(j);
	for (size_t i = 0; i < p->n_notes; i++)
		json_str(j, p->notes[i]);
	json_arr_end(j);
	if (with_jobs) {
		json_key(j, "jobs");
		json_arr_begin(j);
		for (size_t i = 0; i < p->n_jobs; i++) {
			const struct sched_job *jb = &p->jobs[i];
			const struct sched_account *a = &c->accounts[jb->account];

			json_obj_begin(j);
			json_key(j, "order"); json_u64(j, i + 1);
			json_key(j, "src_user"); json_str(j, a->src_user);
			json_key(j, "dst_user"); json_str(j, a->dst_user);
			json_key(j, "part"); json_u64(j, jb->part);
			json_key(j, "parts"); json_u64(j, jb->parts);
			json_key(j, "folders");
			if (jb->rest || jb->n_folders == 0) {
				json_null(j);
			} else {
				json_arr_begin(j);
				for (size_t k = 0; k < jb->n_folders; k++)
					json_str(j, jb->folders[k]);
				json_arr_end(j);
			}
			json_key(j, "rest"); json_bool(j, jb->rest);
			if (jb->rest) {
				json_key(j, "exclude");
				json_arr_begin(j);
				for (size_t k = 0; k < jb->n_exclude; k++)
					json_str(j, jb->exclude[k]);
				json_arr_end(j);
			}
			if (jb->uid_lo != 0 || jb->uid_hi != 0) {
				json_key(j, "uid_lo"); json_u64(j, jb->uid_lo);
				json_key(j, "uid_hi"); json_u64(j, jb->uid_hi);
			}
			json_key(j, "messages"); json_u64(j, jb->est_messages);
			json_key(j, "bytes"); json_u64(j, jb->est_bytes);
			json_key(j, "seconds"); json_double(j, jb->est_seconds);
			if (est[jb->account].error != NULL) {
				json_key(j, "error");
				json_str(j, est[jb->account].error);
			}
			json_obj_end(j);
		}
		json_arr_end(j);
	}
	json_obj_end(j);
}

static void
plan_print(const struct run_cli *c, const struct sched_plan *p,
           const struct sched_cost *cost, const struct sched_account_est *est,
           double plan_seconds)
{
	char b1[32], b2[32], b3[32];
	time_t end;
	struct tm tm;

	printf("%-5s %-28s %-6s %-24s %9s %10s %9s\n", "order", "account",
	       "part", "folders", "messages", "size", "est");
	for (size_t i = 0; i < p->n_jobs; i++) {
		const struct sched_job *jb = &p->jobs[i];
		char part[16], folders[64];

		snprintf(part, sizeof(part), "%u/%u", jb->part, jb->parts);
		if (est[jb->account].error != NULL)
			snprintf(folders, sizeof(folders), "(inventory failed)");
		else if (jb->rest)
			snprintf(folders, sizeof(folders), "all but %zu",
			         jb->n_exclude);
		else if (jb->n_folders == 0)
			snprintf(folders, sizeof(folders), "all (%u)",
			         jb->est_folders);
		else if (jb->uid_lo != 0 || jb->uid_hi != 0)
			snprintf(folders, sizeof(folders), "%.12s UID %u:%s",
			         jb->folders[0], jb->uid_lo,
			         jb->uid_hi == UINT32_MAX ? "*" : "..");
		else if (jb->n_folders == 1)
			snprintf(folders, sizeof(folders), "%.24s", jb->folders[0]);
		else
			snprintf(folders, sizeof(folders), "%zu folders",
			         jb->n_folders);
		fmt_bytes(b1, sizeof(b1), (double)jb->est_bytes);
		fmt_duration(b2, sizeof(b2), jb->est_seconds);
		printf("%-5zu %-28.28s %-6s %-24s %9" PRIu64 " %10s %9s\n", i + 1,
		       c->accounts[jb->account].src_user, part, folders,
		       jb->est_messages, b1, b2);
	}
	for (size_t i = 0; i < p->n_notes; i++)
		printf("note: %s\n", p->notes[i]);
	fmt_bytes(b1, sizeof(b1), (double)p->bytes);
	printf("\n%zu accounts, %zu jobs, %" PRIu64 " messages, %s; %s of "
	       "work; split above %.1f s\n", p->n_accounts, p->n_jobs,
	       p->messages, b1, (fmt_duration(b2, sizeof(b2), p->total_seconds), b2),
	       p->threshold);
	fmt_bytes(b1, sizeof(b1), cost->avg_message_size);
	printf("cost model (%s): %.3f ms/message + %.2f ms/MB, %.0f ms/folder, "
	       "%.0f ms/account; average message %s\n",
	       cost->calibrated ? "measured" : "defaults",
	       cost->per_message * 1e3, cost->per_byte * 1e9,
	       cost->per_folder * 1e3, cost->per_account * 1e3, b1);
	if (cost->calibrated) {
		fmt_bytes(b1, sizeof(b1), (double)cost->sample_bytes);
		printf("  sample: %u messages, %s fetched in %.2f s", cost->sample_messages,
		       b1, cost->sample_seconds);
		if (cost->par_sessions > 1)
			printf("; %u sessions at once: %.2fx one session",
			       cost->par_sessions, cost->par_speedup);
		printf("\n");
	}
	if (cost->target_probed)
		printf("  target APPEND: %.3f ms/message + %.2f ms/MB (a job "
		       "costs the slower side)\n", cost->dst_per_message * 1e3,
		       cost->dst_per_byte * 1e9);
	printf("predicted time:");
	for (unsigned k = 1; k <= p->workers; k++) {
		fmt_duration(b3, sizeof(b3), p->predicted[k]);
		printf("%s %u worker%s %s", k > 1 ? "," : "", k, k > 1 ? "s" : "",
		       b3);
	}
	end = time(NULL) + (time_t)p->predicted[p->workers];
	localtime_r(&end, &tm);
	strftime(b1, sizeof(b1), "%Y-%m-%d %H:%M", &tm);
	fmt_duration(b3, sizeof(b3), plan_seconds);
	printf("\nwith %u workers (at most %u at once by the connection caps): "
	       "about %.0f s, ending about %s (planning took %s)\n", p->workers,
	       max_concurrency(c), p->predicted[p->workers], b1, b3);
}

static void
usage_plan(FILE *f)
{
	fputs("usage: imapferry plan [options] USERS SRC DST\n" PLAN_HELP
	      "  --json                the plan as JSON\n", f);
}

int
cmd_plan(int argc, char **argv)
{
	static const struct option longopts[] = {
		RUN_LONGOPTS,
		{ "uid-ranges", no_argument, NULL, OPT_UID_RANGES },
		{ NULL, 0, NULL, 0 },
	};
	struct run_cli c;
	struct sched_cost cost;
	struct sched_plan plan;
	struct sched_account_est *est = NULL;
	double plan_seconds;
	int status = 2;

	run_cli_init(&c, argc);
	if (run_cli_args(&c, argc, argv, longopts, usage_plan, &status) < 0)
		goto out;
	if ((status = setup_accounts(&c)) != 0)
		goto out;
	if ((status = make_plan(&c, &cost, &plan, &est, &plan_seconds)) != 0)
		goto out;
	if (c.common.json) {
		struct buf out;
		struct json j;

		buf_init(&out, SIZE_MAX / 2);
		json_init(&j, &out);
		plan_json(&j, &c, &plan, &cost, est, true);
		puts(buf_data(&out));
		buf_free(&out);
	} else {
		plan_print(&c, &plan, &cost, est, plan_seconds);
	}
	sched_plan_free(&plan);
	for (size_t i = 0; i < c.n_accounts; i++)
		sched_account_est_free(&est[i]);
	free(est);
	status = 0;
out:
	run_cli_free(&c);
	return status;
}

/* ---------------------------------------------------------------- run */

/* The pass key: what a run copies. The same templates and folder filter
 * resume the same run. */
static char *
pass_key(const struct run_cli *c)
{
	char **sorted = xcalloc(c->n_folders + 1, sizeof(char *));
	char *names, *key;

	for (size_t i = 0; i < c->n_folders; i++) {
		size_t k = i;

		while (k > 0 && strcmp(sorted[k - 1], c->folders[i]) > 0) {
			sorted[k] = sorted[k - 1];
			k--;
		}
		sorted[k] = c->folders[i];
	}
	names = sched_names_encode(sorted, c->n_folders);
	key = xasprintf("src=%s\ndst=%s\nfolders=%s", c->src_tmpl, c->dst_tmpl,
	                names);
	free(names);
	free(sorted);
	return key;
}

/* Stores a new run and its jobs in one transaction. */
static int
store_plan(struct state_db *db, const struct run_cli *c, const char *pass,
           const struct sched_plan *p, const struct sched_cost *cost,
           const struct sched_account_est *est, int64_t *run_id_r)
{
	struct state_run run = { 0 };
	const char *error;
	struct buf out;
	struct json j;

	buf_init(&out, SIZE_MAX / 2);
	json_init(&j, &out);
	plan_json(&j, c, p, cost, est, false);
	run.pass = (char *)pass;
	run.src = (char *)c->src_tmpl;
	run.dst = (char *)c->dst_tmpl;
	run.folders = sched_names_encode(c->folders, c->n_folders);
	run.workers = c->workers;
	run.status = (char *)"running";
	run.started = (int64_t)time(NULL);
	run.heartbeat = run.started;
	run.pid = (int64_t)getpid();
	run.est_seconds = p->predicted[p->workers];
	run.eta_seconds = -1;
	run.plan = (char *)buf_data(&out);
	if (state_begin(db, &error) < 0)
		goto fail;
	if (state_run_insert(db, &run, &error) < 0)
		goto fail_tx;
	for (size_t i = 0; i < p->n_jobs; i++) {
		const struct sched_job *jb = &p->jobs[i];
		const struct sched_account *a = &c->accounts[jb->account];
		struct state_job sj = { 0 };
		int rc;

		sj.run_id = run.id;
		sj.seq = (unsigned)i + 1;
		sj.account = a->key;
		sj.src_user = a->src_user;
		sj.dst_user = a->dst_user;
		sj.part = jb->part;
		sj.parts = jb->parts;
		sj.folders = sched_names_encode(jb->folders, jb->n_folders);
		sj.exclude = sched_names_encode(jb->exclude, jb->n_exclude);
		sj.uid_lo = jb->uid_lo;
		sj.uid_hi = jb->uid_hi;
		sj.est_messages = jb->est_messages;
		sj.est_bytes = jb->est_bytes;
		sj.est_seconds = jb->est_seconds;
		sj.status = STATE_JOB_PENDING;
		sj.scope = -1;
		rc = state_job_insert(db, &sj, &error);
		free(sj.folders);
		free(sj.exclude);
		if (rc < 0)
			goto fail_tx;
	}
	if (state_commit(db, &error) < 0)
		goto fail_tx;
	*run_id_r = run.id;
	free(run.folders);
	buf_free(&out);
	return 0;
fail_tx:
	state_rollback(db);
fail:
	fprintf(stderr, "imapferry: %s\n", error);
	free(run.folders);
	buf_free(&out);
	return -1;
}

/* Resumes run r: jobs of a dead process and failed jobs are pending
 * again. */
static int
resume_run(struct state_db *db, struct state_run *r, unsigned workers)
{
	struct state_job *jobs;
	size_t n, done = 0, retried = 0;
	const char *error;

	if (state_begin(db, &error) < 0)
		goto fail;
	if (state_job_requeue(db, r->id, &error) < 0 ||
	    state_job_list(db, r->id, &jobs, &n, &error) < 0)
		goto fail_tx;
	for (size_t i = 0; i < n; i++) {
		if (jobs[i].status == STATE_JOB_DONE)
			done++;
		if (jobs[i].status != STATE_JOB_FAILED)
			continue;
		jobs[i].status = STATE_JOB_PENDING;
		jobs[i].errors = 0;
		jobs[i].not_before = 0;
		retried++;
		if (state_job_update(db, &jobs[i], &error) < 0) {
			state_job_list_free(&jobs, n);
			goto fail_tx;
		}
	}
	free(r->status);
	r->status = xstrdup("running");
	free(r->error);
	r->error = xstrdup("");
	r->finished = 0;
	r->pid = (int64_t)getpid();
	r->heartbeat = (int64_t)time(NULL);
	r->workers = workers;
	if (state_run_update(db, r, &error) < 0 ||
	    state_commit(db, &error) < 0) {
		state_job_list_free(&jobs, n);
		goto fail_tx;
	}
	log_info("run: resuming run %lld: %zu of %zu jobs done%s",
	         (long long)r->id, done, n,
	         retried > 0 ? ", failed jobs are retried" : "");
	state_job_list_free(&jobs, n);
	return 0;
fail_tx:
	state_rollback(db);
fail:
	fprintf(stderr, "imapferry: %s\n", error);
	return -1;
}

/* ------------------------------------------------------------ display */

static void
draw_bar(struct buf *b, double fraction, unsigned width)
{
	unsigned fill = (unsigned)(fraction * width + 0.5);

	if (fill > width)
		fill = width;
	ignore_result(buf_append(b, "[", 1));
	for (unsigned i = 0; i < width; i++)
		ignore_result(buf_append(b, i < fill ? "#" : ".", 1));
	ignore_result(buf_append(b, "]", 1));
}

/* The overall progress: messages, bytes, rate, ETA; sep between its
 * two halves ("\n" on a terminal, where lines must stay short). */
static void
view_overall(struct buf *b, const struct sched_view *v, const char *sep)
{
	char bb[32], be[32], br[32], eta[32], el[32];

	fmt_bytes(bb, sizeof(bb), (double)v->bytes);
	fmt_bytes(be, sizeof(be), (double)v->est_bytes);
	fmt_bytes(br, sizeof(br), v->rate_bytes);
	fmt_duration(eta, sizeof(eta), v->eta_seconds);
	fmt_duration(el, sizeof(el), v->elapsed);
	ignore_result(buf_printf(b, "%3.0f%% %" PRIu64 "/%" PRIu64 " messages, "
	    "%s/%s%s%.0f msg/s, %s/s, elapsed %s, ETA %s; jobs: %zu done, %zu "
	    "running, %zu pending, %zu failed", v->fraction * 100, v->messages,
	    v->est_messages, bb, be, sep, v->rate_messages, br, el, eta, v->done,
	    v->running, v->pending, v->failed));
}

/* Appends line cut to width columns (ASCII; a wrapped line would break
 * the redraw, which counts lines). */
static void
append_cut(struct buf *out, const char *line, size_t len, unsigned width)
{
	if (width > 1 && len > width - 1)
		len = width - 1;
	ignore_result(buf_append(out, line, len));
	ignore_result(buf_append(out, "\n", 1));
}

static unsigned
term_width(void)
{
	struct winsize ws;

	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
		return ws.ws_col;
	return 80;
}

static void
view_active_line(struct buf *b, const struct sched_view_job *a)
{
	char bb[32], el[32], part[16];

	fmt_bytes(bb, sizeof(bb), (double)a->bytes);
	fmt_duration(el, sizeof(el), a->seconds);
	snprintf(part, sizeof(part), "%u/%u", a->part, a->parts);
	ignore_result(buf_printf(b, "  %-28.28s %-5s %7" PRIu64 "/%-7" PRIu64
	    " msgs %10s %7s", a->src_user, part, a->messages, a->est_messages,
	    bb, el));
	if (a->attempts > 1)
		ignore_result(buf_printf(b, "  attempt %u", a->attempts));
}

struct display {
	enum progress_mode mode;
	unsigned lines;               /* drawn last time (tty) */
	double last_plain;
};

static void
display_draw(struct display *d, const struct sched_view *v, bool final)
{
	struct buf b;

	if (d->mode == PROGRESS_NONE)
		return;
	buf_init(&b, 1 << 20);
	if (d->mode == PROGRESS_PLAIN) {
		double now = time_mono_sec();

		if (!final && now - d->last_plain < 10)
			goto out;
		d->last_plain = now;
		ignore_result(buf_append_str(&b, "progress: "));
		view_overall(&b, v, ", ");
		ignore_result(buf_append_str(&b, "\n"));
		ignore_result(write(STDERR_FILENO, buf_data(&b), buf_len(&b)));
		goto out;
	}
	/* tty: move up over the last drawing, clear, draw again */
	if (d->lines > 0)
		ignore_result(buf_printf(&b, "\033[%uA\r\033[J", d->lines));
	d->lines = 0;
	{
		unsigned width = term_width();
		struct buf line;
		const char *text, *nl;

		buf_init(&line, 1 << 16);
		draw_bar(&line, v->fraction, width >= 100 ? 40 : 20);
		ignore_result(buf_append_str(&line, " "));
		view_overall(&line, v, "\n  ");
		text = buf_data(&line);
		nl = strchr(text, '\n');
		append_cut(&b, text, (size_t)(nl - text), width);
		append_cut(&b, nl + 1, strlen(nl + 1), width);
		d->lines += 2;
		for (size_t i = 0; i < v->n_active && i < 40; i++) {
			buf_reset(&line);
			view_active_line(&line, &v->active[i]);
			append_cut(&b, buf_data(&line), buf_len(&line), width);
			d->lines++;
		}
		buf_free(&line);
	}
	ignore_result(write(STDERR_FILENO, buf_data(&b), buf_len(&b)));
out:
	buf_free(&b);
}

/* ---------------------------------------------------------- summary */

struct acct_sum {
	const char *src_user, *dst_user, *account;
	size_t jobs, done, failed, pending;
	uint64_t messages, bytes, skipped, failed_msgs, est_messages, est_bytes;
	unsigned folders_failed, attempts;
	double seconds;
	int64_t first_start, last_end;
	char *errors;                 /* job errors, "; "-joined */
};

static struct acct_sum *
summarize(const struct state_job *jobs, size_t n, size_t *count_r)
{
	struct acct_sum *s = xcalloc(n + 1, sizeof(*s));
	size_t count = 0;

	for (size_t i = 0; i < n; i++) {
		const struct state_job *j = &jobs[i];
		struct acct_sum *a = NULL;

		for (size_t k = 0; k < count && a == NULL; k++)
			if (strcmp(s[k].account, j->account) == 0)
				a = &s[k];
		if (a == NULL) {
			a = &s[count++];
			a->src_user = j->src_user;
			a->dst_user = j->dst_user;
			a->account = j->account;
		}
		a->jobs++;
		if (j->status == STATE_JOB_DONE)
			a->done++;
		else if (j->status == STATE_JOB_FAILED)
			a->failed++;
		else
			a->pending++;
		a->messages += j->messages;
		a->bytes += j->bytes;
		a->skipped += j->skipped;
		a->failed_msgs += j->failed;
		a->est_messages += j->est_messages;
		a->est_bytes += j->est_bytes;
		a->folders_failed += j->folders_failed;
		if (j->attempts > a->attempts)
			a->attempts = j->attempts; /* tries of its most tried part */
		a->seconds += j->seconds;
		if (j->error[0] != '\0' && j->status != STATE_JOB_DONE) {
			char *e = a->errors == NULL ? xstrdup(j->error) :
			    xasprintf("%s; %s", a->errors, j->error);

			free(a->errors);
			a->errors = e;
		}
	}
	*count_r = count;
	return s;
}

static const char *
acct_status(const struct acct_sum *a)
{
	if (a->failed > 0)
		return "failed";
	if (a->pending > 0)
		return "pending";
	return a->failed_msgs > 0 ? "done*" : "done";
}

static void
summary_print(FILE *f, const struct acct_sum *s, size_t n,
              const struct state_failure *fl, size_t n_fl)
{
	char bb[32], el[32];

	fprintf(f, "%-28s %-8s %9s %10s %8s %8s  %s\n", "account", "status",
	        "messages", "size", "time", "attempts", "errors");
	for (size_t i = 0; i < n; i++) {
		const struct acct_sum *a = &s[i];
		size_t nerr = 0;

		for (size_t k = 0; k < n_fl; k++)
			nerr += strcmp(fl[k].account, a->account) == 0;
		fmt_bytes(bb, sizeof(bb), (double)a->bytes);
		fmt_duration(el, sizeof(el), a->seconds);
		fprintf(f, "%-28.28s %-8s %9" PRIu64 " %10s %8s %8u  ", a->src_user,
		        acct_status(a), a->messages, bb, el, a->attempts);
		if (a->errors != NULL)
			fprintf(f, "%s", a->errors);
		if (nerr > 0)
			fprintf(f, "%s%zu recorded failure%s", a->errors ? "; " : "",
			        nerr, nerr == 1 ? "" : "s");
		fprintf(f, "\n");
		for (size_t k = 0, shown = 0; k < n_fl; k++) {
			if (strcmp(fl[k].account, a->account) != 0)
				continue;
			if (shown++ == 5) {
				fprintf(f, "    ... %zu more (see --report)\n",
				        nerr - 5);
				break;
			}
			fprintf(f, "    %s", fl[k].folder[0] ? fl[k].folder :
			        "(session)");
			if (fl[k].src_uid != 0)
				fprintf(f, " UID %" PRIu32, fl[k].src_uid);
			fprintf(f, ": %s\n", fl[k].reason);
		}
	}
}

static void
report_json(struct json *j, const struct state_run *run,
            const struct sched_view *v, const struct acct_sum *s, size_t n,
            const struct state_failure *fl, size_t n_fl, double elapsed)
{
	json_obj_begin(j);
	json_key(j, "run"); json_i64(j, run->id);
	json_key(j, "status"); json_str(j, run->status);
	json_key(j, "error"); json_str(j, run->error);
	json_key(j, "pid"); json_i64(j, run->pid);
	json_key(j, "started"); json_i64(j, run->started);
	json_key(j, "finished"); json_i64(j, run->finished);
	json_key(j, "heartbeat"); json_i64(j, run->heartbeat);
	json_key(j, "workers"); json_u64(j, run->workers);
	json_key(j, "estimated_seconds"); json_double(j, run->est_seconds);
	json_key(j, "elapsed_seconds"); json_double(j, elapsed);
	json_key(j, "progress");
	json_obj_begin(j);
	json_key(j, "fraction"); json_double(j, v->fraction);
	json_key(j, "messages"); json_u64(j, v->messages);
	json_key(j, "bytes"); json_u64(j, v->bytes);
	json_key(j, "est_messages"); json_u64(j, v->est_messages);
	json_key(j, "est_bytes"); json_u64(j, v->est_bytes);
	json_key(j, "rate_messages"); json_double(j, v->rate_messages);
	json_key(j, "rate_bytes"); json_double(j, v->rate_bytes);
	json_key(j, "eta_seconds"); json_double(j, v->eta_seconds);
	json_key(j, "jobs"); json_u64(j, v->jobs);
	json_key(j, "pending"); json_u64(j, v->pending);
	json_key(j, "running"); json_u64(j, v->running);
	json_key(j, "done"); json_u64(j, v->done);
	json_key(j, "failed"); json_u64(j, v->failed);
	json_obj_end(j);
	json_key(j, "active");
	json_arr_begin(j);
	for (size_t i = 0; i < v->n_active; i++) {
		const struct sched_view_job *a = &v->active[i];

		json_obj_begin(j);
		json_key(j, "src_user"); json_str(j, a->src_user);
		json_key(j, "part"); json_u64(j, a->part);
		json_key(j, "parts"); json_u64(j, a->parts);
		json_key(j, "messages"); json_u64(j, a->messages);
		json_key(j, "bytes"); json_u64(j, a->bytes);
		json_key(j, "est_messages"); json_u64(j, a->est_messages);
		json_key(j, "est_bytes"); json_u64(j, a->est_bytes);
		json_key(j, "seconds"); json_double(j, a->seconds);
		json_key(j, "attempt"); json_u64(j, a->attempts);
		json_obj_end(j);
	}
	json_arr_end(j);
	json_key(j, "accounts");
	json_arr_begin(j);
	for (size_t i = 0; i < n; i++) {
		const struct acct_sum *a = &s[i];

		json_obj_begin(j);
		json_key(j, "src_user"); json_str(j, a->src_user);
		json_key(j, "dst_user"); json_str(j, a->dst_user);
		json_key(j, "account"); json_str(j, a->account);
		json_key(j, "status"); json_str(j, acct_status(a));
		json_key(j, "jobs"); json_u64(j, a->jobs);
		json_key(j, "messages"); json_u64(j, a->messages);
		json_key(j, "bytes"); json_u64(j, a->bytes);
		json_key(j, "skipped"); json_u64(j, a->skipped);
		json_key(j, "failed_messages"); json_u64(j, a->failed_msgs);
		json_key(j, "folders_failed"); json_u64(j, a->folders_failed);
		json_key(j, "est_messages"); json_u64(j, a->est_messages);
		json_key(j, "est_bytes"); json_u64(j, a->est_bytes);
		json_key(j, "seconds"); json_double(j, a->seconds);
		json_key(j, "attempts"); json_u64(j, a->attempts);
		json_key(j, "errors");
		json_arr_begin(j);
		if (a->errors != NULL) {
			json_obj_begin(j);
			json_key(j, "scope"); json_str(j, "job");
			json_key(j, "reason"); json_str(j, a->errors);
			json_obj_end(j);
		}
		for (size_t k = 0; k < n_fl; k++) {
			static const char *const scopes[] = {
				"message", "folder", "session", "run",
			};

			if (strcmp(fl[k].account, a->account) != 0)
				continue;
			json_obj_begin(j);
			json_key(j, "scope");
			json_str(j, (size_t)fl[k].scope < N_ELEMENTS(scopes) ?
			         scopes[fl[k].scope] : "run");
			json_key(j, "folder"); json_str(j, fl[k].folder);
			json_key(j, "uid"); json_u64(j, fl[k].src_uid);
			json_key(j, "reason"); json_str(j, fl[k].reason);
			json_key(j, "attempts"); json_u64(j, fl[k].attempts);
			json_obj_end(j);
		}
		json_arr_end(j);
		json_obj_end(j);
	}
	json_arr_end(j);
	json_obj_end(j);
}

/* Loads everything the summary and the report show. */
struct report_data {
	struct state_run run;
	struct sched_view view;
	struct state_job *jobs;
	size_t n_jobs;
	struct state_failure *fl;
	size_t n_fl;                  /* of this run's accounts (first) */
	size_t n_fl_all;
	struct acct_sum *sums;
	size_t n_sums;
};

static int
report_load(struct state_db *db, int64_t run_id, struct report_data *d,
            const char **error_r)
{
	bool found;

	memset(d, 0, sizeof(*d));
	if (state_run_get(db, run_id, NULL, &d->run, &found, error_r) < 0)
		return -1;
	if (!found) {
		*error_r = "no run in the state database";
		return -1;
	}
	if (sched_view_load(db, d->run.id, &d->view, error_r) < 0 ||
	    state_job_list(db, d->run.id, &d->jobs, &d->n_jobs, error_r) < 0 ||
	    state_failure_list(db, NULL, &d->fl, &d->n_fl_all, error_r) < 0)
		return -1;
	d->n_fl = d->n_fl_all;
	d->sums = summarize(d->jobs, d->n_jobs, &d->n_sums);
	return 0;
}

static void
report_free(struct report_data *d)
{
	for (size_t i = 0; i < d->n_sums; i++)
		free(d->sums[i].errors);
	free(d->sums);
	state_failure_list_free(&d->fl, d->n_fl_all);
	state_job_list_free(&d->jobs, d->n_jobs);
	sched_view_free(&d->view);
	state_run_free(&d->run);
}

/* Only the failures of this run's accounts. */
static void
report_filter_failures(struct report_data *d)
{
	size_t w = 0;

	for (size_t i = 0; i < d->n_fl_all; i++) {
		bool mine = false;

		for (size_t k = 0; k < d->n_sums && !mine; k++)
			mine = strcmp(d->sums[k].account, d->fl[i].account) == 0;
		if (mine) {
			struct state_failure t = d->fl[w];

			d->fl[w] = d->fl[i];
			d->fl[i] = t;
			w++;
		}
	}
	/* the others stay at the end, freed with the list */
	d->n_fl = w;
}

static int
report_write(const char *path, const struct report_data *d, double elapsed)
{
	struct buf out;
	struct json j;
	FILE *f;
	int ret = 0;

	buf_init(&out, SIZE_MAX / 2);
	json_init(&j, &out);
	report_json(&j, &d->run, &d->view, d->sums, d->n_sums, d->fl, d->n_fl,
	            elapsed);
	f = fopen(path, "w");
	if (f == NULL || fputs(buf_data(&out), f) < 0 || fputc('\n', f) < 0) {
		fprintf(stderr, "imapferry: --report %s: %s\n", path,
		        strerror(errno));
		ret = -1;
	}
	if (f != NULL && fclose(f) != 0 && ret == 0) {
		fprintf(stderr, "imapferry: --report %s: %s\n", path,
		        strerror(errno));
		ret = -1;
	}
	buf_free(&out);
	return ret;
}

/* Quick exit on a second signal: the run is resumable from the state. */
static void
quick_exit_run(const char *state_path, int64_t run_id)
{
	struct state_db *db = NULL;
	struct state_run r;
	const char *error;
	bool found;

	if (state_open(state_path, &db, &error) == 0 &&
	    state_run_get(db, run_id, NULL, &r, &found, &error) == 0 && found) {
		free(r.status);
		r.status = xstrdup("interrupted");
		free(r.error);
		r.error = xstrdup("stopped by a signal; run again to resume");
		r.heartbeat = (int64_t)time(NULL);
		ignore_result(state_job_requeue(db, run_id, &error));
		ignore_result(state_run_update(db, &r, &error));
		state_run_free(&r);
	}
	state_close(&db);
	fprintf(stderr, "\nimapferry: interrupted; run the same command again "
	        "to resume\n");
	_exit(130);
}

static void
usage_run(FILE *f)
{
	fputs("usage: imapferry run [options] USERS SRC DST --state FILE\n"
	      PLAN_HELP
	      "  --state FILE          state database (required): mappings, jobs,\n"
	      "                        progress; the same command resumes a run\n"
	      "                        (FILE.lock keeps a second run out)\n"
	      "  --new-run             plan a new run even if the last one of this\n"
	      "                        pass did not finish\n"
	      "  --report FILE.json    per-account report at the end\n"
	      "  --max-errors N        failed attempts before a job fails (3)\n"
	      "  --backoff SECONDS     first retry delay, doubled each time (5)\n"
	      "  --progress MODE       auto, tty (redrawn), plain (a line every\n"
	      "                        10 s) or none\n"
	      "  --log FILE            log lines to FILE (default on a terminal:\n"
	      "                        STATE.log, so the display stays clean)\n"
	      "  --include RE / --exclude RE / --map 'OLD=NEW'   as for copy\n"
	      "  --delete-missing / --skip-deleted               as for copy\n"
	      "exit status: 0 all accounts done, 1 some failed or the run "
	      "stopped, 2 usage\n", f);
}

int
cmd_run(int argc, char **argv)
{
	static const struct option longopts[] = {
		RUN_LONGOPTS,
		{ "state", required_argument, NULL, OPT_STATE },
		{ "report", required_argument, NULL, OPT_REPORT },
		{ "new-run", no_argument, NULL, OPT_NEW_RUN },
		{ "max-errors", required_argument, NULL, OPT_MAX_ERRORS },
		{ "backoff", required_argument, NULL, OPT_BACKOFF },
		{ "progress", required_argument, NULL, OPT_PROGRESS },
		{ "log", required_argument, NULL, OPT_LOG },
		{ "include", required_argument, NULL, OPT_INCLUDE },
		{ "exclude", required_argument, NULL, OPT_EXCLUDE },
		{ "map", required_argument, NULL, OPT_MAP },
		{ "delete-missing", no_argument, NULL, OPT_DELETE_MISSING },
		{ "skip-deleted", no_argument, NULL, OPT_SKIP_DELETED },
		{ NULL, 0, NULL, 0 },
	};
	struct run_cli c;
	struct state_db *db = NULL;
	struct state_run run = { 0 };
	struct sched_runner *runner = NULL;
	struct sched_run_options ro = { 0 };
	struct sched_run_result res = { 0 };
	struct copy_options copy = { 0 };
	struct display disp = { 0 };
	struct report_data rep;
	struct sigaction sa;
	char *pass = NULL, *lock_path = NULL, *log_default = NULL;
	const char *error;
	int ret, status = 2, lock_fd = -1, log_fd = -1;
	int64_t run_id = 0;
	double t0, elapsed;
	bool found, tty;

	run_cli_init(&c, argc);
	if (run_cli_args(&c, argc, argv, longopts, usage_run, &status) < 0)
		goto out;
	if (c.state_path == NULL)
		goto usage;
	/* validate folder rules before anything is planned */
	{
		struct foldermap_side side = { .separator = '/' };
		struct foldermap *fm = foldermap_new(&side, &side);
		bool bad = false;

		for (size_t i = 0; i < c.n_inc && !bad; i++)
			bad = foldermap_add_include(fm, c.includes[i], &error) < 0;
		for (size_t i = 0; i < c.n_exc && !bad; i++)
			bad = foldermap_add_exclude(fm, c.excludes[i], &error) < 0;
		for (size_t i = 0; i < c.n_map && !bad; i++)
			bad = foldermap_add_rule(fm, c.maps[i], &error) < 0;
		foldermap_free(&fm);
		if (bad) {
			fprintf(stderr, "imapferry: %s\n", error);
			goto out;
		}
	}
	tty = isatty(STDERR_FILENO) == 1;
	disp.mode = c.progress == PROGRESS_AUTO ?
	    (tty ? PROGRESS_TTY : PROGRESS_PLAIN) : c.progress;
	if (c.log_path == NULL && disp.mode == PROGRESS_TTY)
		c.log_path = log_default = xasprintf("%s.log", c.state_path);
	if (c.log_path != NULL) {
		log_fd = open(c.log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
		              0600);
		if (log_fd < 0) {
			fprintf(stderr, "imapferry: --log %s: %s\n", c.log_path,
			        strerror(errno));
			goto out;
		}
		log_configure(log_enabled(LOG_DEBUG) ? LOG_DEBUG : LOG_INFO,
		              log_fd);
		fprintf(stderr, "imapferry: logging to %s\n", c.log_path);
	}
	if ((status = setup_accounts(&c)) != 0)
		goto out;
	status = 1;

	/* one run at a time per state file */
	lock_path = xasprintf("%s.lock", c.state_path);
	lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB) < 0) {
		fprintf(stderr, "imapferry: %s: %s\n", lock_path,
		        errno == EWOULDBLOCK ? "another imapferry run uses this "
		        "state database" : strerror(errno));
		goto out;
	}
	if (state_open(c.state_path, &db, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		goto out;
	}
	pass = pass_key(&c);
	if (state_run_get(db, 0, pass, &run, &found, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		goto out;
	}
	t0 = time_mono_sec();
	if (found && strcmp(run.status, "done") != 0 && !c.new_run) {
		if (resume_run(db, &run, c.workers) < 0)
			goto out;
		run_id = run.id;
	} else {
		struct sched_cost cost;
		struct sched_plan plan;
		struct sched_account_est *est;
		double plan_seconds;
		char b[32];

		if ((status = make_plan(&c, &cost, &plan, &est,
		                        &plan_seconds)) != 0)
			goto out;
		status = 1;
		ret = store_plan(db, &c, pass, &plan, &cost, est, &run_id);
		fmt_duration(b, sizeof(b), plan.predicted[plan.workers]);
		log_info("run %lld: %zu accounts, %zu jobs, %" PRIu64 " messages; "
		         "plan estimate %.1f s (%s) with %u workers", (long long)run_id,
		         plan.n_accounts, plan.n_jobs, plan.messages,
		         plan.predicted[plan.workers], b, plan.workers);
		fprintf(stderr, "imapferry: run %lld: %zu accounts, %zu jobs, %"
		        PRIu64 " messages; plan estimate %.1f s with %u workers "
		        "(planning took %.1f s)\n", (long long)run_id,
		        plan.n_accounts, plan.n_jobs, plan.messages,
		        plan.predicted[plan.workers], plan.workers, plan_seconds);
		sched_plan_free(&plan);
		for (size_t i = 0; i < c.n_accounts; i++)
			sched_account_est_free(&est[i]);
		free(est);
		if (ret < 0)
			goto out;
		t0 = time_mono_sec();
	}
	state_run_free(&run);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	copy.quiet = !log_enabled(LOG_DEBUG);
	copy.delete_missing = c.delete_missing;
	copy.skip_deleted = copy.fetch.skip_deleted = c.skip_deleted;
	ro.state_path = c.state_path;
	ro.run_id = run_id;
	ro.workers = c.workers;
	if (one_server_pair(&c) && max_concurrency(&c) < c.workers) {
		/* more workers would only wait for a connection slot */
		log_info("run: the connection caps allow %u jobs at once: "
		         "%u workers", max_concurrency(&c), max_concurrency(&c));
		ro.workers = max_concurrency(&c);
	}
	ro.src_slots = c.src_slots;
	ro.dst_slots = c.dst_slots;
	ro.max_errors = c.max_errors;
	ro.backoff = c.backoff;
	ro.engine = NULL;  /* by target: copy_account or tomaildir */
	ro.copy = &copy;
	ro.md = &c.md;
	ro.folders = c.n_folders > 0 ? c.folders : NULL;
	ro.n_folders = c.n_folders;
	ro.includes = c.includes;
	ro.n_includes = c.n_inc;
	ro.excludes = c.excludes;
	ro.n_excludes = c.n_exc;
	ro.maps = c.maps;
	ro.n_maps = c.n_map;
	/* the signals go to this thread only: workers are not interrupted */
	{
		sigset_t block, old;
		int rc;

		sigemptyset(&block);
		sigaddset(&block, SIGINT);
		sigaddset(&block, SIGTERM);
		pthread_sigmask(SIG_BLOCK, &block, &old);
		rc = sched_runner_start(&ro, c.accounts, c.n_accounts, &runner,
		                        &error);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (rc < 0) {
			fprintf(stderr, "imapferry: %s\n", error);
			goto out;
		}
	}
	if (disp.mode == PROGRESS_TTY)
		fputs("\033[?25l", stderr); /* hide the cursor */
	while (!sched_runner_finished(runner)) {
		struct sched_view v;

		if (signal_count == 1 && got_signal == SIGINT) {
			got_signal = 0;
			sched_runner_stop(runner);
			fprintf(stderr, "\nimapferry: no new jobs; waiting for the "
			        "running ones (^C again to quit now, the run "
			        "resumes)\n");
			disp.lines = 0;
		} else if (signal_count > 1 || got_signal == SIGTERM) {
			if (disp.mode == PROGRESS_TTY)
				fputs("\033[?25h", stderr);
			quick_exit_run(c.state_path, run_id);
		}
		sched_runner_view(runner, &v);
		display_draw(&disp, &v, false);
		sched_view_free(&v);
		usleep(500 * 1000);
	}
	{
		struct sched_view v;

		sched_runner_view(runner, &v);
		display_draw(&disp, &v, true);
		sched_view_free(&v);
	}
	if (disp.mode == PROGRESS_TTY)
		fputs("\033[?25h", stderr);
	sched_runner_finish(&runner, &res);
	elapsed = time_mono_sec() - t0;

	/* the run's final state */
	if (state_run_get(db, run_id, NULL, &run, &found, &error) < 0 || !found) {
		fprintf(stderr, "imapferry: %s\n", found ? error : "run vanished");
		goto out;
	}
	free(run.status);
	free(run.error);
	if (res.error != NULL) {
		run.status = xstrdup("stopped");
		run.error = xstrdup(res.error);
	} else if (res.stopped) {
		run.status = xstrdup("interrupted");
		run.error = xstrdup("stopped by a signal; run again to resume");
	} else if (res.failed > 0 || res.pending > 0) {
		run.status = xstrdup("failed");
		run.error = xasprintf("%zu job%s failed; run again to retry them",
		                      res.failed, res.failed == 1 ? "" : "s");
	} else {
		run.status = xstrdup("done");
		run.error = xstrdup("");
	}
	run.finished = (int64_t)time(NULL);
	run.heartbeat = run.finished;
	run.eta_seconds = strcmp(run.status, "done") == 0 ? 0 : -1;
	if (state_run_update(db, &run, &error) < 0)
		fprintf(stderr, "imapferry: %s\n", error);
	state_run_free(&run);

	if (report_load(db, run_id, &rep, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		report_free(&rep);
		goto out;
	}
	report_filter_failures(&rep);
	summary_print(stdout, rep.sums, rep.n_sums, rep.fl, rep.n_fl);
	printf("run %lld %s: %zu jobs done, %zu failed, %zu pending; "
	       "%" PRIu64 " messages, %.1f s (plan estimate %.1f s); "
	       "most sessions at once per server: source %u, target %u\n",
	       (long long)run_id, rep.run.status, res.done, res.failed,
	       res.pending, rep.view.messages, elapsed, rep.run.est_seconds,
	       res.src_peak, res.dst_peak);
	if (res.error != NULL)
		printf("stopped: %s\n", res.error);
	if (c.report_path != NULL && report_write(c.report_path, &rep,
	                                          elapsed) < 0)
		res.failed++;
	report_free(&rep);
	status = res.error == NULL && !res.stopped && res.failed == 0 &&
	         res.pending == 0 ? 0 : 1;
	goto out;
usage:
	usage_run(stderr);
	status = 2;
out:
	free(res.error);
	state_run_free(&run);
	state_close(&db);
	free(pass);
	if (lock_fd >= 0)
		close(lock_fd);
	free(lock_path);
	if (log_fd >= 0) {
		log_configure(LOG_INFO, STDERR_FILENO);
		close(log_fd);
	}
	free(log_default);
	run_cli_free(&c);
	return status;
}

/* ------------------------------------------------------------- status */

int
cmd_status(int argc, char **argv)
{
	static const struct option longopts[] = {
		CLI_COMMON_LONGOPTS,
		{ "state", required_argument, NULL, OPT_STATE },
		{ "run", required_argument, NULL, OPT_RUN_ID },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct run_cli c;
	struct state_db *db = NULL;
	struct report_data rep;
	const char *error;
	int opt, ret, status = 2;

	memset(&rep, 0, sizeof(rep));
	run_cli_init(&c, argc);
	optind = 1;
	while ((opt = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
		if (opt == 'h') {
			puts("usage: imapferry status --state FILE [--run ID] [--json]\n"
			     "Shows the progress of the last run (or run ID) of a state\n"
			     "database: live while it runs, the summary when over.");
			status = 0;
			goto out;
		}
		if ((ret = run_option(&c, opt, optarg)) < 0)
			goto out;
		if (ret == 0)
			goto usage;
	}
	if (optind != argc || c.state_path == NULL)
		goto usage;
	status = 1;
	if (access(c.state_path, F_OK) != 0) {
		fprintf(stderr, "imapferry: %s: %s\n", c.state_path, strerror(errno));
		goto out;
	}
	if (state_open(c.state_path, &db, &error) < 0 ||
	    report_load(db, c.run_id, &rep, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		goto out_rep;
	}
	report_filter_failures(&rep);
	{
		int64_t now = (int64_t)time(NULL);
		bool alive = strcmp(rep.run.status, "running") == 0 &&
		    now - rep.run.heartbeat <= 10 && rep.run.pid > 0 &&
		    (kill((pid_t)rep.run.pid, 0) == 0 || errno == EPERM);

		if (strcmp(rep.run.status, "running") == 0 && !alive) {
			free(rep.run.status);
			rep.run.status = xstrdup("interrupted");
		}
		if (c.common.json) {
			struct buf out;
			struct json j;

			buf_init(&out, SIZE_MAX / 2);
			json_init(&j, &out);
			report_json(&j, &rep.run, &rep.view, rep.sums, rep.n_sums,
			            rep.fl, rep.n_fl, rep.view.elapsed);
			puts(buf_data(&out));
			buf_free(&out);
		} else {
			struct buf b;
			char hb[32];

			buf_init(&b, 1 << 20);
			fmt_duration(hb, sizeof(hb), (double)(now - rep.run.heartbeat));
			printf("run %lld: %s%s%s (pid %lld, last update %s ago); "
			       "plan estimate %.0f s\n", (long long)rep.run.id,
			       rep.run.status, rep.run.error[0] ? ": " : "",
			       rep.run.error, (long long)rep.run.pid, hb,
			       rep.run.est_seconds);
			draw_bar(&b, rep.view.fraction, 40);
			ignore_result(buf_append_str(&b, " "));
			view_overall(&b, &rep.view, "\n  ");
			ignore_result(buf_append_str(&b, "\n"));
			for (size_t i = 0; i < rep.view.n_active; i++) {
				view_active_line(&b, &rep.view.active[i]);
				ignore_result(buf_append_str(&b, "\n"));
			}
			fputs(buf_data(&b), stdout);
			buf_free(&b);
			if (!alive) {
				printf("\n");
				summary_print(stdout, rep.sums, rep.n_sums, rep.fl,
				              rep.n_fl);
			}
		}
	}
	status = 0;
out_rep:
	report_free(&rep);
	goto out;
usage:
	fprintf(stderr, "usage: imapferry status --state FILE [--run ID] "
	        "[--json]\n");
	status = 2;
out:
	state_close(&db);
	run_cli_free(&c);
	return status;
}
