/* runcli.c: options, accounts and the plan shared by plan, run and
 * status (runcli.h). */
#include "runcli.h"

#include "inventory.h"
#include "log.h"
#include "probe.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int
run_cli_option(void *ctx, int id, const char *arg, uint64_t num)
{
	struct run_cli *c = ctx;

	switch (id) {
	case CLI_OPT_WORKERS: c->workers = (unsigned)num; return 0;
	case CLI_OPT_MAX_SRC: c->max_src = (unsigned)num; return 0;
	case CLI_OPT_MAX_DST: c->max_dst = (unsigned)num; return 0;
	case CLI_OPT_SAMPLE: c->sample = (unsigned)num; return 0;
	case CLI_OPT_MAX_ERRORS: c->max_errors = (unsigned)num; return 0;
	case CLI_OPT_BACKOFF: c->backoff = (unsigned)num; return 0;
	case CLI_OPT_RETRY_BUDGET: c->retry_budget = (unsigned)num; return 0;
	case CLI_OPT_FOLDERS: c->folders[c->n_folders++] = (char *)arg; return 0;
	case CLI_OPT_INCLUDE: c->includes[c->n_inc++] = arg; return 0;
	case CLI_OPT_EXCLUDE: c->excludes[c->n_exc++] = arg; return 0;
	case CLI_OPT_MAP: c->maps[c->n_map++] = arg; return 0;
	case CLI_OPT_SRC_ADMIN: c->src_admin = arg; return 0;
	case CLI_OPT_DST_ADMIN: c->dst_admin = arg; return 0;
	case CLI_OPT_SRC_PWFILE: c->src_pwfile = arg; return 0;
	case CLI_OPT_DST_PWFILE: c->dst_pwfile = arg; return 0;
	case CLI_OPT_STATE: c->state_path = arg; return 0;
	case CLI_OPT_REPORT: c->report_path = arg; return 0;
	case CLI_OPT_LOG: c->log_path = arg; return 0;
	case CLI_OPT_HTML: c->html_path = arg; return 0;
	case CLI_OPT_METRICS: c->metrics_path = arg; return 0;
	case CLI_OPT_NEW_RUN: c->new_run = true; return 0;
	case CLI_OPT_MACHINE: c->machine = arg; return 0;
	case CLI_OPT_COST: c->cost_path = arg; return 0;
	case CLI_OPT_MACHINES: c->machines = (unsigned)num; return 0;
	case CLI_OPT_DST_IMAP: c->dst_imap_tmpl = arg; return 0;
	case CLI_OPT_CHANGES: c->changes_users = arg; return 0;
	case CLI_OPT_NO_CHECK: c->no_check = true; return 0;
	case CLI_OPT_LEASE: c->lease = (unsigned)num; return 0;
	case CLI_OPT_FINAL: c->final = true; return 0;
	case CLI_OPT_PROBE_TARGET: c->no_probe_target = false; return 0;
	case CLI_OPT_NO_PROBE_TARGET: c->no_probe_target = true; return 0;
	case CLI_OPT_NO_CALIBRATE: c->no_calibrate = true; return 0;
	case CLI_OPT_NO_SPLIT: c->no_split = true; return 0;
	case CLI_OPT_SPLIT_ABOVE: {
		char *end;

		errno = 0;
		c->split_above = strtod(arg, &end);
		if (errno != 0 || *end != '\0' || end == arg ||
		    !(c->split_above > 0) || !isfinite(c->split_above))
			return cli_bad_value(id, arg, "expected seconds (above 0)");
		return 0;
	}
	case CLI_OPT_DELETE_MISSING: c->delete_missing = true; return 0;
	case CLI_OPT_SKIP_DELETED: c->skip_deleted = true; return 0;
	case CLI_OPT_UID_RANGES: c->uid_ranges = true; return 0;
	case CLI_OPT_NO_UID_RANGES: c->uid_ranges = false; return 0;
	case CLI_OPT_NO_FSYNC: c->md.fsync = false; return 0;
	case CLI_OPT_FSYNC:
		if (cli_parse_fsync(arg, &c->md.fsync, &c->md.fsync_fs) < 0)
			return cli_bad_value(id, arg, "expected file, fs or off");
		return 0;
	case CLI_OPT_BODIES_FROM:
		if (strncmp(arg, "cyrus-spool:", 12) != 0)
			return cli_bad_value(id, arg, "expected cyrus-spool:PATH"
			                     "[?user=NAME&..] (PATH may use %u)");
		c->bodies_from = arg;
		return 0;
	case CLI_OPT_OWNER:
		if (cli_parse_owner(arg, &c->md.owner, &c->md.group) < 0)
			return cli_bad_value(id, arg, "unknown user or group");
		return 0;
	case CLI_OPT_RUN_ID: {
		uint64_t v;

		if (!str_to_u64z(arg, INT64_MAX, &v))
			return cli_bad_value(id, arg, "expected a run number");
		c->run_id = (int64_t)v;
		return 0;
	}
	case CLI_OPT_PROGRESS:
		if (strcmp(arg, "auto") == 0)
			c->progress = REPORT_PROGRESS_AUTO;
		else if (strcmp(arg, "tty") == 0)
			c->progress = REPORT_PROGRESS_TTY;
		else if (strcmp(arg, "plain") == 0)
			c->progress = REPORT_PROGRESS_PLAIN;
		else if (strcmp(arg, "none") == 0)
			c->progress = REPORT_PROGRESS_NONE;
		else
			return cli_bad_value(id, arg, "expected auto, tty, plain "
			                     "or none");
		return 0;
	default:
		return -1;
	}
}

void
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

int
run_cli_args(struct run_cli *c, const struct cli_command *cmd, int argc,
             char **argv, int *status_r)
{
	int argi;

	if (cli_parse(cmd, argc, argv, &c->common, run_cli_option, c, &argi,
	              status_r) < 0)
		return -1;
	if (cmd->min_args == 3) {
		c->users_path = argv[argi];
		c->src_tmpl = argv[argi + 1];
		c->dst_tmpl = argv[argi + 2];
	}
	return 0;
}

void
run_cli_free(struct run_cli *c)
{
	if (c->eps != NULL)
		for (size_t i = 0; i < 2 * c->n_accounts; i++)
			endpoint_free(&c->eps[i]);
	free(c->eps);
	if (c->dovecot_eps != NULL)
		for (size_t i = 0; i < c->n_accounts; i++)
			endpoint_free(&c->dovecot_eps[i]);
	free(c->dovecot_eps);
	if (c->bodies_eps != NULL)
		for (size_t i = 0; i < c->n_accounts; i++)
			endpoint_free(&c->bodies_eps[i]);
	free(c->bodies_eps);
	free(c->srcs);
	sched_accounts_free(&c->accounts, c->n_accounts);
	sched_users_free(&c->users);
	secret_free(&c->src_pw);
	secret_free(&c->dst_pw);
	sched_slots_free(&c->src_slots);
	sched_slots_free(&c->dst_slots);
	net_tls_ctx_free(&c->tls);
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
		if (cli_password_file_read(file, pw_r, &error) < 0) {
			fprintf(stderr, "imapferry: %s\n", error);
			return -1;
		}
	} else if ((v = getenv(env)) != NULL) {
		*pw_r = xstrdup(v);
	}
	return 0;
}

/* --dst-imap TEMPLATE: each account's Dovecot serving its Maildir (the
 * target's login password: --dst-password-file, else the account's). */
static int
setup_dst_imap(struct run_cli *c)
{
	const char *error;

	c->dovecot_eps = xcalloc(c->n_accounts + 1, sizeof(*c->dovecot_eps));
	for (size_t i = 0; i < c->n_accounts; i++) {
		struct sched_account *a = &c->accounts[i];
		struct endpoint *ep = &c->dovecot_eps[i];
		char *url;

		if (!a->dst_maildir) {
			fprintf(stderr, "imapferry: --dst-imap needs a maildir: "
			        "target\n");
			return -1;
		}
		if ((url = sched_template_expand(c->dst_imap_tmpl, a->dst_user,
		                                 &error)) == NULL ||
		    endpoint_parse(url, ep, &error) < 0 ||
		    (ep->kind != ENDPOINT_IMAP &&
		     (error = "an imap:// or imaps:// URL") != NULL)) {
			fprintf(stderr, "imapferry: --dst-imap: users file line "
			        "%u: %s\n", a->line, error);
			free(url);
			return -1;
		}
		free(url);
		cli_apply_common(&c->common, ep);
		ep->imap.net.tls_ctx = c->tls;
		ep->imap.password = c->dst_pw != NULL ? c->dst_pw : a->dst_password;
		ep->imap.label = "dovecot";
		a->dst_imap = &ep->imap;
	}
	return 0;
}

/* The source recipe of account i (struct source): the Cyrus spool of a
 * cyrus: source, or for --bodies-from the spool of the account's user
 * (PATH's %u expanded; ?user= defaults to the source user). */
static int
setup_source(struct run_cli *c, size_t i, const struct endpoint *se)
{
	struct sched_account *a = &c->accounts[i];
	struct source *s = &c->srcs[i];
	const struct endpoint *cy = se;
	const char *error;

	s->kind = se->kind == ENDPOINT_CYRUS ? SOURCE_CYRUS : SOURCE_IMAP;
	s->imap = &a->src_opts;
	if (c->bodies_from != NULL) {
		struct endpoint *be = &c->bodies_eps[i];
		char *path = sched_template_expand(c->bodies_from + 12,
		                                   a->src_user, &error);
		char *url;

		if (path == NULL) {
			fprintf(stderr, "imapferry: --bodies-from: %s\n", error);
			return -1;
		}
		url = strstr(path, "user=") != NULL ?
		    xasprintf("cyrus:%s", path) :
		    xasprintf("cyrus:%s%cuser=%s", path,
		              strchr(path, '?') != NULL ? '&' : '?', a->src_user);
		free(path);
		if (endpoint_parse(url, be, &error) < 0) {
			fprintf(stderr, "imapferry: --bodies-from: %s\n", error);
			free(url);
			return -1;
		}
		free(url);
		cy = be;
	} else if (se->kind != ENDPOINT_CYRUS) {
		a->src_spec = s;
		return 0;
	}
	s->root = cy->path;
	s->cy = (struct cyrus_options){
		.user = cy->cy_user, .config_dir = cy->cy_config,
		.mboxlist = cy->cy_mboxlist, .tmpl = cy->cy_tmpl,
		.sub_file = cy->cy_sub, .seen_file = cy->cy_seen,
	};
	a->src_spec = s;
	return 0;
}

int
run_cli_setup_accounts(struct run_cli *c)
{
	struct sched_login sl, dl;
	const char *error;
	unsigned workers;

	if (sched_users_load(c->users_path, &c->users, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		return CLI_EXIT_USAGE;
	}
	if (!sched_url_is_imap(c->src_tmpl) &&
	    strncmp(c->src_tmpl, "cyrus:", 6) != 0) {
		fprintf(stderr, "imapferry: the source must be an IMAP server "
		        "(imap:// or imaps://) or a copied Cyrus spool (cyrus:)\n");
		return CLI_EXIT_USAGE;
	}
	if (c->bodies_from != NULL && !sched_url_is_imap(c->src_tmpl)) {
		fprintf(stderr, "imapferry: --bodies-from needs an IMAP source\n");
		return CLI_EXIT_USAGE;
	}
	if (load_login_password(c->src_pwfile, "IMAPFERRY_SRC_PASSWORD",
	                        &c->src_pw) < 0 ||
	    load_login_password(c->dst_pwfile, "IMAPFERRY_DST_PASSWORD",
	                        &c->dst_pw) < 0)
		return CLI_EXIT_USAGE;
	sl = (struct sched_login){ .admin = c->src_admin, .password = c->src_pw };
	dl = (struct sched_login){ .admin = c->dst_admin, .password = c->dst_pw };
	if (sched_accounts_build(&c->users, c->src_tmpl, c->dst_tmpl, &sl, &dl,
	                         &c->accounts, &c->n_accounts, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		return CLI_EXIT_USAGE;
	}
	c->eps = xcalloc(2 * c->n_accounts + 1, sizeof(*c->eps));
	c->srcs = xcalloc(c->n_accounts + 1, sizeof(*c->srcs));
	if (c->bodies_from != NULL)
		c->bodies_eps = xcalloc(c->n_accounts + 1, sizeof(*c->bodies_eps));
	/* one TLS context (one read of the trust store) for every session of
	 * every account; a failure is reported by the first connection that
	 * needs TLS */
	if (net_tls_ctx_new(&c->common.net, &c->tls, &error) < 0)
		c->tls = NULL;
	for (size_t i = 0; i < c->n_accounts; i++) {
		struct sched_account *a = &c->accounts[i];
		struct endpoint *se = &c->eps[2 * i], *de = &c->eps[2 * i + 1];

		if (endpoint_parse(a->src_url, se, &error) < 0 ||
		    endpoint_parse(a->dst_url, de, &error) < 0) {
			fprintf(stderr, "imapferry: users file line %u: %s\n",
			        a->line, error);
			return CLI_EXIT_USAGE;
		}
		if (endpoint_same_account(se, a->src_authzid, de,
		                          a->dst_authzid)) {
			fprintf(stderr, "imapferry: users file line %u: source and "
			        "target are the same account (%s)\n", a->line,
			        a->src_authzid != NULL ? a->src_authzid : se->url);
			return CLI_EXIT_USAGE;
		}
		cli_apply_common(&c->common, se);
		cli_apply_common(&c->common, de);
		se->imap.net.tls_ctx = de->imap.net.tls_ctx = c->tls;
		se->imap.password = a->src_password;
		se->imap.authzid = a->src_authzid;
		se->imap.label = "src";
		a->src_opts = se->imap;
		if (se->kind == ENDPOINT_IMAP)
			a->src_slot = sched_slot_key(se->host, se->port,
			                             se->imap.implicit_tls);
		if (setup_source(c, i, se) < 0)
			return CLI_EXIT_USAGE;
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
	if (c->dst_imap_tmpl != NULL && setup_dst_imap(c) < 0)
		return CLI_EXIT_USAGE;
	workers = c->workers > 0 ? c->workers : 4;
	c->workers = workers;
	c->src_slots = sched_slots_new(c->max_src > 0 ? c->max_src : workers);
	c->dst_slots = sched_slots_new(c->max_dst > 0 ? c->max_dst : workers);
	return 0;
}

bool
run_cli_one_server_pair(const struct run_cli *c)
{
	for (size_t i = 1; i < c->n_accounts; i++) {
		const struct sched_account *a = &c->accounts[i], *b = &c->accounts[0];

		if ((a->src_slot != NULL) != (b->src_slot != NULL) ||
		    (a->src_slot != NULL && strcmp(a->src_slot, b->src_slot) != 0) ||
		    (a->dst_slot != NULL) != (b->dst_slot != NULL) ||
		    (a->dst_slot != NULL && strcmp(a->dst_slot, b->dst_slot) != 0))
			return false;
	}
	return true;
}

unsigned
run_cli_max_concurrency(const struct run_cli *c)
{
	unsigned m = c->workers;

	if (sched_slots_max(c->src_slots) < m)
		m = sched_slots_max(c->src_slots);
	if (c->n_accounts > 0 && !c->accounts[0].dst_maildir &&
	    sched_slots_max(c->dst_slots) < m)
		m = sched_slots_max(c->dst_slots);
	return m > 0 ? m : 1;
}

int
run_cli_make_plan(struct run_cli *c, struct sched_cost *cost,
                  struct sched_plan *plan, struct sched_account_est **est_r,
                  double *plan_seconds_r)
{
	struct sched_probe_options po = { 0 };
	struct sched_plan_options o = { 0 };
	struct sched_account_est *est;
	struct sched_final_summary final;
	const char *error;
	double t0 = time_mono_sec();
	size_t failed = 0;

	po.sessions = run_cli_max_concurrency(c);
	po.src_slots = c->src_slots;
	po.dst_slots = c->dst_slots;
	po.folders = c->n_folders > 0 ? c->folders : NULL;
	po.n_folders = c->n_folders;
	po.sample_messages = c->sample;
	po.par_sessions = po.sessions < 16 ? po.sessions : 16;
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
		return CLI_EXIT_ERROR;
	}
	for (size_t i = 0; i < c->n_accounts; i++)
		if (est[i].error != NULL) {
			failed++;
			log_warn("plan: %s: %s", c->accounts[i].src_user,
			         est[i].error);
		}
	if (c->final) {
		struct state_db *db = NULL;

		if (c->state_path == NULL) {
			fprintf(stderr, "imapferry: --final needs --state (the state "
			        "of the earlier passes)\n");
			goto fail;
		}
		if (state_open(c->state_path, &db, &error) < 0 ||
		    sched_final_deltas(db, c->accounts, est, c->n_accounts,
		                       &final, &error) < 0) {
			fprintf(stderr, "imapferry: %s\n", error);
			state_close(&db);
			goto fail;
		}
		state_close(&db);
	}
	if (c->cost_path != NULL) {
		if (sched_cost_load(c->cost_path, cost, &error) < 0) {
			fprintf(stderr, "imapferry: %s\n", error);
			for (size_t i = 0; i < c->n_accounts; i++)
				sched_account_est_free(&est[i]);
			free(est);
			return CLI_EXIT_USAGE;
		}
	} else if (c->no_calibrate) {
		sched_cost_default(cost);
	} else {
		log_info("plan: measuring the source");
		if (sched_calibrate(c->accounts, est, c->n_accounts, &po, cost,
		                    &error) < 0)
			log_warn("plan: measure incomplete: %s", error);
	}
	o.workers = c->workers;
	o.max_conc = run_cli_max_concurrency(c);
	o.split = !c->no_split;
	o.split_above = c->split_above;
	/* UID-range parts of one large folder: Maildir targets only (an
	 * IMAP target numbers messages in APPEND order) */
	o.uid_split = c->uid_ranges && c->n_accounts > 0 &&
	              c->accounts[0].dst_maildir;
	o.folders = po.folders;
	o.n_folders = po.n_folders;
	sched_plan_build(est, c->n_accounts, cost, &o, plan);
	if (c->final)
		sched_plan_note_final(plan, &final);
	if (failed > 0)
		log_warn("plan: %zu of %zu accounts could not be inventoried "
		         "(their jobs will record the error)", failed,
		         c->n_accounts);
	*est_r = est;
	*plan_seconds_r = time_mono_sec() - t0;
	return 0;
fail:
	for (size_t i = 0; i < c->n_accounts; i++)
		sched_account_est_free(&est[i]);
	free(est);
	return 1;
}

void
run_cli_report_plan(const struct run_cli *c, const struct sched_plan *p,
                    const struct sched_cost *cost,
                    const struct sched_account_est *est, double plan_seconds,
                    struct report_plan *rp_r)
{
	memset(rp_r, 0, sizeof(*rp_r));
	rp_r->plan = p;
	rp_r->cost = cost;
	rp_r->est = est;
	rp_r->accounts = c->accounts;
	rp_r->max_conc = run_cli_max_concurrency(c);
	rp_r->plan_seconds = plan_seconds;
	rp_r->now = (int64_t)time(NULL);
}

int
run_cli_lock_state(const char *lock_path)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	int fd, e;

	if ((fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0)
		return -1;
	if (fcntl(fd, F_SETLK, &fl) < 0) {
		e = errno == EACCES || errno == EAGAIN ? EWOULDBLOCK : errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

bool
run_cli_state_locked(const char *lock_path)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	int fd;
	bool locked;

	/* F_GETLK only asks: a run starting now is not kept out */
	if ((fd = open(lock_path, O_RDONLY | O_CLOEXEC)) < 0)
		return false;
	locked = fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
	close(fd);
	return locked;
}
