/* run.c: imapferry run USERS SRC DST --state FILE: the plan executed by
 * worker threads (src/sched), resumable from the state database, with
 * live progress, a summary per account and --report FILE.json (rendered
 * by src/report). */
#include "runcli.h"

#include "foldermap.h"
#include "json.h"
#include "log.h"
#include "runner.h"
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static const struct cli_use run_opts[] = {
	RUN_CLI_USES,
	{ CLI_OPT_STATE, "state database (required): mappings, jobs,\n"
	                 "progress; the same command resumes a run\n"
	                 "(FILE.lock keeps a second run out)" },
	{ CLI_OPT_NEW_RUN, NULL },
	{ CLI_OPT_REPORT, NULL },
	{ CLI_OPT_METRICS, NULL },
	{ CLI_OPT_MAX_ERRORS, NULL },
	{ CLI_OPT_BACKOFF, NULL },
	{ CLI_OPT_RETRY_BUDGET, "within one attempt of a job, keep reconnecting\n"
	                        "to copy a folder until it made no progress for\n"
	                        "this long (120; then the attempt fails and\n"
	                        "--backoff, --max-errors apply)" },
	{ CLI_OPT_MACHINE, NULL }, { CLI_OPT_LEASE, NULL },
	{ CLI_OPT_MACHINES, "the machines that will share this run (with\n"
	                    "PostgreSQL): the machine that plans splits\n"
	                    "accounts for M x N workers (default 1)" },
	{ CLI_OPT_COST, "the cost model of an earlier calibration (what\n"
	                "plan --save-cost wrote): no measure before\n"
	                "the run" },
	{ CLI_OPT_PROGRESS, NULL },
	{ CLI_OPT_LOG, NULL },
	{ CLI_OPT_INCLUDE, NULL }, { CLI_OPT_EXCLUDE, NULL },
	{ CLI_OPT_MAP, NULL },
	{ CLI_OPT_DELETE_MISSING, NULL }, { CLI_OPT_SKIP_DELETED, NULL },
	{ CLI_OPT_DST_IMAP, "Dovecot Maildir target: the Dovecot serving it, a\n"
	                    "template as DST (imap://%u*MASTER@HOST, the\n"
	                    "password as the target's): keywords beyond the\n"
	                    "file names' 26 are set through it" },
	CLI_NET_USES,
	{ CLI_OPT_NONE, NULL },
};

const struct cli_command cli_cmd_run = {
	.name = "run", .program = "imapferry",
	.synopsis = "[options] USERS SRC DST --state FILE",
	.intro = "Migrates every account of USERS with N workers, resumably.",
	.opts = run_opts,
	.trailer = RUN_CLI_TRAILER "\n"
	    "Several machines: --state postgresql://USER@HOST[:PORT]/DB (the\n"
	    "  password from PGPASSWORD or ~/.pgpass), the same command on each\n"
	    "  machine with its own --machine NAME: the first plans, the others\n"
	    "  join; --max-src-conns/--max-dst-conns then hold over all of them.\n"
	    CLI_EXIT_HELP,
	.min_args = 3, .max_args = 3,
};

/* Written by the signal handler, read by cmd_run()'s loop. */
static volatile sig_atomic_t got_signal;
static volatile sig_atomic_t signal_count;

static void
on_signal(int sig)
{
	got_signal = sig;
	signal_count++;
}

static unsigned
term_width(void)
{
	struct winsize ws;

	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
		return ws.ws_col;
	return 80;
}

/* Draws v on stderr by d's mode. */
static void
display_draw(struct report_display *d, const struct sched_view *v, bool final)
{
	struct buf b;

	buf_init(&b, 1 << 20);
	report_display_render(d, v, final, time_mono_sec(),
	                      d->mode == REPORT_PROGRESS_TTY ? term_width() : 80,
	                      &b);
	if (buf_len(&b) > 0)
		ignore_result(write(STDERR_FILENO, buf_data(&b), buf_len(&b)));
	buf_free(&b);
}

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
	struct report_plan rp;
	struct buf out;
	struct json j;

	run_cli_report_plan(c, p, cost, est, 0, &rp);
	buf_init(&out, SIZE_MAX / 2);
	json_init(&j, &out);
	report_plan_json(&j, &rp, false);
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
		/* the caps over several machines count by these */
		sj.src_slot = a->src_slot;
		sj.dst_slot = a->dst_maildir ? NULL : a->dst_slot;
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

/* True when a machine other than self renewed its row of run_id in the
 * last window seconds and still runs. */
static bool
others_alive(struct state_db *db, int64_t run_id, const char *self,
             int64_t window)
{
	struct state_machine *m;
	const char *error;
	size_t n;
	bool alive = false;

	if (state_machine_list(db, run_id, &m, &n, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		return true; /* do not retry others' failed jobs blindly */
	}
	for (size_t i = 0; i < n; i++)
		if (strcmp(m[i].name, self) != 0 &&
		    strcmp(m[i].status, "running") == 0 && m[i].age <= window)
			alive = true;
	state_machine_list_free(&m, n);
	return alive;
}

/* Joins run r on a shared state: running jobs belong to live machines or
 * are claimed again when their lease expires, so nothing is requeued;
 * failed jobs are retried only by the first machine of a restart. */
static int
join_run(struct state_db *db, struct state_run *r, const char *machine,
         unsigned lease)
{
	const char *error;
	bool alive = others_alive(db, r->id, machine,
	                          (int64_t)(lease > 10 ? lease : 10));

	if (!alive && state_job_retry_failed(db, r->id, &error) < 0)
		goto fail;
	if (strcmp(r->status, "running") != 0) {
		free(r->status);
		r->status = xstrdup("running");
		free(r->error);
		r->error = xstrdup("");
		r->finished = 0;
		r->heartbeat = (int64_t)time(NULL);
		r->pid = (int64_t)getpid();
		if (state_run_update(db, r, &error) < 0)
			goto fail;
	}
	log_info("run: %s run %lld as machine %s%s",
	         alive ? "joining" : "resuming", (long long)r->id, machine,
	         alive ? "" : "; failed jobs are retried");
	fprintf(stderr, "imapferry: %s run %lld as machine %s\n",
	        alive ? "joining" : "resuming", (long long)r->id, machine);
	return 0;
fail:
	fprintf(stderr, "imapferry: %s\n", error);
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

/* Quick exit on a second signal: the run is resumable from the state.
 * On a shared state only this machine's row says so: its leases expire
 * and other machines take its jobs over. */
static void
quick_exit_run(const char *state_path, int64_t run_id, const char *machine)
{
	struct state_db *db = NULL;
	struct state_run r;
	const char *error;
	bool found;

	if (state_open(state_path, &db, &error) == 0 && state_is_shared(db)) {
		struct state_machine *m;
		size_t n;

		if (state_machine_list(db, run_id, &m, &n, &error) == 0) {
			for (size_t i = 0; i < n; i++)
				if (strcmp(m[i].name, machine) == 0) {
					free(m[i].status);
					m[i].status = xstrdup("interrupted");
					ignore_result(state_machine_put(db, &m[i],
					                                &error));
				}
			state_machine_list_free(&m, n);
		}
	} else if (db != NULL &&
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

int
cmd_run(int argc, char **argv)
{
	struct run_cli c;
	struct state_db *db = NULL;
	struct state_run run = { 0 };
	struct sched_runner *runner = NULL;
	struct sched_run_options ro = { 0 };
	struct sched_run_result res = { 0 };
	struct copy_options copy = { 0 };
	struct report_display disp = { 0 };
	struct run_metrics metrics = { 0 };
	struct report_data rep;
	struct sigaction sa;
	char *pass = NULL, *lock_path = NULL, *log_default = NULL;
	char host[256] = "";
	const char *machine;
	bool shared, locked = false;
	const char *error;
	int ret, status = CLI_EXIT_USAGE, lock_fd = -1, log_fd = -1;
	int64_t run_id = 0;
	double t0, elapsed;
	bool found, tty;

	run_cli_init(&c, argc);
	if (run_cli_args(&c, &cli_cmd_run, argc, argv, &status) < 0)
		goto out;
	if (c.state_path == NULL) {
		fprintf(stderr, "imapferry: run: --state FILE is required\n");
		goto usage;
	}
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
			status = CLI_EXIT_USAGE;
			goto out;
		}
	}
	shared = state_path_is_url(c.state_path);
	/* one run at a time per state file (a shared state has many); taken
	 * first, so that status sees a run that is starting */
	if (!shared)
		lock_path = xasprintf("%s.lock", c.state_path);
	if (!shared && (lock_fd = run_cli_lock_state(lock_path)) < 0) {
		fprintf(stderr, "imapferry: %s: %s\n", lock_path,
		        errno == EWOULDBLOCK ? "another imapferry run uses this "
		        "state database" : strerror(errno));
		status = CLI_EXIT_ERROR;
		goto out;
	}
	if (gethostname(host, sizeof(host) - 1) < 0)
		snprintf(host, sizeof(host), "unknown");
	machine = c.machine != NULL ? c.machine : host;
	tty = isatty(STDERR_FILENO) == 1;
	disp.mode = c.progress == REPORT_PROGRESS_AUTO ?
	    (tty ? REPORT_PROGRESS_TTY : REPORT_PROGRESS_PLAIN) : c.progress;
	if (c.log_path == NULL && disp.mode == REPORT_PROGRESS_TTY)
		c.log_path = log_default = shared ?
		    xasprintf("imapferry-%s.log", machine) :
		    xasprintf("%s.log", c.state_path);
	if (c.log_path != NULL) {
		log_fd = open(c.log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
		              0600);
		if (log_fd < 0) {
			fprintf(stderr, "imapferry: --log %s: %s\n", c.log_path,
			        strerror(errno));
			status = CLI_EXIT_ERROR;
			goto out;
		}
		log_configure(log_enabled(LOG_DEBUG) ? LOG_DEBUG : LOG_INFO,
		              log_fd);
		fprintf(stderr, "imapferry: logging to %s\n", c.log_path);
	}
	if ((status = run_cli_setup_accounts(&c)) != 0)
		goto out;
	/* from here on, an error that stops the run */
	status = CLI_EXIT_ERROR;

	if (state_open(c.state_path, &db, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		goto out;
	}
	pass = pass_key(&c);
	/* machines started together: the first plans, the others wait for
	 * its plan and join the run */
	if (shared) {
		if (state_run_lock(db, pass, &error) < 0) {
			fprintf(stderr, "imapferry: %s\n", error);
			goto out;
		}
		locked = true;
	}
	if (state_run_get(db, 0, pass, &run, &found, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		goto out;
	}
	t0 = time_mono_sec();
	if (shared && found && strcmp(run.status, "done") != 0 &&
	    (!c.new_run || others_alive(db, run.id, machine, 10))) {
		/* --new-run on every machine: the first one's new run */
		if (join_run(db, &run, machine, c.lease > 0 ? c.lease : 30) < 0)
			goto out;
		run_id = run.id;
	} else if (found && strcmp(run.status, "done") != 0 && !c.new_run) {
		if (resume_run(db, &run, c.workers) < 0)
			goto out;
		run_id = run.id;
	} else {
		struct sched_cost cost;
		struct sched_plan plan;
		struct sched_account_est *est;
		double plan_seconds;
		char b[32];

		unsigned workers = c.workers;

		/* --machines M: one queue for M x N workers (the split
		 * threshold), this machine still runs N */
		if (c.machines > 1)
			c.workers = c.machines * workers;
		status = run_cli_make_plan(&c, &cost, &plan, &est, &plan_seconds);
		c.workers = workers;
		if (status != 0)
			goto out;
		status = CLI_EXIT_ERROR;
		ret = store_plan(db, &c, pass, &plan, &cost, est, &run_id);
		report_fmt_duration(b, sizeof(b), plan.predicted[plan.workers]);
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
	if (locked) {
		state_run_unlock(db, pass);
		locked = false;
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	copy.quiet = !log_enabled(LOG_DEBUG);
	copy.delete_missing = c.delete_missing;
	copy.retry_budget_s = c.retry_budget;
	copy.skip_deleted = copy.fetch.skip_deleted = c.skip_deleted;
	ro.state_path = c.state_path;
	ro.run_id = run_id;
	ro.workers = c.workers;
	if (run_cli_one_server_pair(&c) && run_cli_max_concurrency(&c) < c.workers) {
		/* more workers would only wait for a connection slot */
		log_info("run: the connection caps allow %u jobs at once: "
		         "%u workers", run_cli_max_concurrency(&c), run_cli_max_concurrency(&c));
		ro.workers = run_cli_max_concurrency(&c);
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
	ro.machine = machine;
	ro.lease = c.lease;
	ro.max_src = c.max_src;
	ro.max_dst = c.max_dst;
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
	if (disp.mode == REPORT_PROGRESS_TTY)
		fputs("\033[?25l", stderr); /* hide the cursor */
	metrics.path = c.metrics_path;
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
			if (disp.mode == REPORT_PROGRESS_TTY)
				fputs("\033[?25h", stderr);
			quick_exit_run(c.state_path, run_id, machine);
		}
		sched_runner_view(runner, &v);
		display_draw(&disp, &v, false);
		ignore_result(run_metrics_tick(&metrics, &c, db, run_id, &v, false));
		sched_view_free(&v);
		usleep(500 * 1000);
	}
	{
		struct sched_view v;

		sched_runner_view(runner, &v);
		display_draw(&disp, &v, true);
		sched_view_free(&v);
	}
	if (disp.mode == REPORT_PROGRESS_TTY)
		fputs("\033[?25h", stderr);
	sched_runner_finish(&runner, &res);
	elapsed = time_mono_sec() - t0;

	/* the run's final state */
	if (state_run_get(db, run_id, NULL, &run, &found, &error) < 0 || !found) {
		fprintf(stderr, "imapferry: %s\n", found ? error : "run vanished");
		goto out;
	}
	if (shared) {
		/* the run is over only when no machine has a job left */
		struct state_job *jobs;
		size_t n, open_jobs = 0, failed = 0;

		if (state_job_list(db, run_id, &jobs, &n, &error) < 0) {
			fprintf(stderr, "imapferry: %s\n", error);
			goto out;
		}
		for (size_t i = 0; i < n; i++) {
			open_jobs += jobs[i].status == STATE_JOB_PENDING ||
			    jobs[i].status == STATE_JOB_RUNNING;
			failed += jobs[i].status == STATE_JOB_FAILED;
		}
		state_job_list_free(&jobs, n);
		res.pending = open_jobs;
		res.failed = failed;
		if (open_jobs > 0 && (res.error != NULL || res.stopped)) {
			/* others go on, or the next start resumes */
			goto summary;
		}
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
summary:
	state_run_free(&run);
	ignore_result(run_metrics_tick(&metrics, &c, db, run_id, NULL, true));

	if (report_load(db, run_id, &rep, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		report_data_free(&rep);
		goto out;
	}
	{
		struct buf out;

		buf_init(&out, SIZE_MAX / 2);
		report_summary_text(&out, &rep);
		fputs(buf_data(&out), stdout);
		buf_free(&out);
	}
	printf("run %lld %s: %zu jobs done, %zu failed, %zu pending; "
	       "%" PRIu64 " messages, %.1f s (plan estimate %.1f s); "
	       "most sessions at once per server: source %u, target %u\n",
	       (long long)run_id, rep.run.status, res.done, res.failed,
	       res.pending, rep.view.messages, elapsed, rep.run.est_seconds,
	       res.src_peak, res.dst_peak);
	if (res.error != NULL)
		printf("stopped: %s\n", res.error);
	if (res.refused_jobs > 0)
		printf("%zu job%s done with messages not copied (see `imapferry "
		       "status` and the failures in the state)\n", res.refused_jobs,
		       res.refused_jobs == 1 ? "" : "s");
	if (shared)
		printf("machine %s: %u job%s lost to other machines (lease "
		       "expired)\n", machine, res.lost_leases,
		       res.lost_leases == 1 ? "" : "s");
	if (c.report_path != NULL &&
	    report_write(c.report_path, &rep, elapsed, &error) < 0) {
		fprintf(stderr, "imapferry: --report %s\n", error);
		res.failed++;
	}
	report_data_free(&rep);
	/* stopped by an error of the whole run (every login refused, the
	 * target full): 3; jobs failed or left pending (also after ^C), or
	 * messages a target refused: 1 */
	if (res.error != NULL)
		status = CLI_EXIT_ERROR;
	else if (res.stopped || res.failed > 0 || res.pending > 0 ||
	         res.refused_jobs > 0)
		status = CLI_EXIT_FAILURES;
	else
		status = CLI_EXIT_OK;
	goto out;
usage:
	fprintf(stderr, "usage: imapferry run %s (see imapferry run --help)\n",
	        cli_cmd_run.synopsis);
	status = CLI_EXIT_USAGE;
out:
	if (locked)
		state_run_unlock(db, pass);
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

