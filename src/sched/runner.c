/* runner.c: worker threads running the jobs of a run (see runner.h). */
#include "runner.h"

#include "foldermap.h"
#include "log.h"
#include "mailboxes.h"
#include "buf.h"
#include "probe.h"
#include "source.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PROGRESS_TICK_MS 500
#define PROGRESS_WRITE_TICKS 4      /* every 2 s */
#define RATE_WINDOW_SEC 20.0
#define HIST_MAX 64
#define AUTH_FAILURES_STOP 5

struct rjob {
	struct state_job j;         /* mirror of the row; under r->lock */
	size_t account;             /* index, SIZE_MAX when unknown */
	struct copy_progress live;  /* the running attempt's counters */
	uint64_t base_messages, base_bytes; /* j.messages/bytes at its start */
	double attempt_start;       /* monotonic seconds */
	char **folders, **exclude;  /* decoded j.folders / j.exclude */
	size_t n_folders, n_exclude;
	/* shared state: this machine's claim of the job */
	bool local;                 /* claimed by a worker of this process */
	int64_t token;              /* the claim's fencing token */
	bool lost;                  /* the heartbeat found it taken over */
	double last_beat;           /* monotonic seconds of the last renewal */
};

struct ns_entry {
	char *key;                  /* "src:host:port" or "dst:host:port" */
	char *prefix;
	char separator;
};

struct hist {
	double t, work;
	uint64_t messages, bytes;
};

struct sched_runner {
	struct sched_run_options o;
	const struct sched_account *accounts;
	size_t n_accounts;
	struct rjob *jobs;
	size_t n_jobs;
	double total_work;          /* sum of est_seconds */

	pthread_mutex_t lock;
	pthread_cond_t changed;     /* a job ended, or stop */
	bool stop;                  /* take no new job */
	char *run_error;            /* run-scope error, or NULL */
	unsigned workers_alive;
	unsigned auth_failures, logins_ok;
	struct ns_entry *ns;
	size_t n_ns;
	struct hist hist[HIST_MAX];
	size_t n_hist;
	double start;

	pthread_t *threads;
	unsigned n_threads;
	pthread_t progress;
	bool progress_started;
	bool progress_quit;
	struct state_run run;       /* the run row, for heartbeats */
	/* several machines (shared state) */
	bool shared;
	unsigned lease;             /* seconds */
	unsigned lost_leases;       /* jobs of this machine others took */
	unsigned local_done;        /* attempts ended here */
	uint64_t local_messages, local_bytes; /* copied here, ended attempts */
	int64_t started_wall;
	char host[256];
};

struct worker {
	struct sched_runner *r;
	struct state_db *db;
};

static void attempt_begin_locked(struct rjob *rj);

/* -------------------------------------------------------- classification */

enum sched_error_class
sched_error_classify(enum err_kind kind)
{
	switch (kind) {
	case ERRK_DISK_FULL:
	case ERRK_STATE:
		return SCHED_ERR_RUN;
	case ERRK_AUTH:
	case ERRK_QUOTA:
	case ERRK_USAGE:
		return SCHED_ERR_ACCOUNT;
	default:
		return SCHED_ERR_RETRY;
	}
}

unsigned
sched_backoff(unsigned backoff, unsigned errors)
{
	uint64_t s = backoff;

	for (unsigned i = 1; i < errors && s < 300; i++)
		s *= 2;
	return s > 300 ? 300 : (unsigned)s;
}

/* ------------------------------------------------------------- engine */

void
sched_bodies_add(struct state_bodies *to, const struct source_body_stats *bs)
{
	to->spool += bs->from_spool;
	to->imap += bs->from_imap;
	to->missing += bs->missing;
	to->size += bs->size;
	to->uidvalidity += bs->uidvalidity;
	to->error += bs->error;
}

void
sched_bodies_sum(struct state_bodies *to, const struct state_bodies *from)
{
	to->spool += from->spool;
	to->imap += from->imap;
	to->missing += from->missing;
	to->size += from->size;
	to->uidvalidity += from->uidvalidity;
	to->error += from->error;
}

void
sched_bodies_text(struct buf *out, const struct state_bodies *b)
{
	static const char *const what[] = {
		"missing in the spool", "of another size",
		"in folders of another UIDVALIDITY", "unreadable in the spool",
	};
	const uint64_t n[] = { b->missing, b->size, b->uidvalidity, b->error };
	const char *sep = " (";

	ignore_result(buf_printf(out, "%" PRIu64 " from the Cyrus spool, %" PRIu64
	                         " over IMAP", b->spool, b->imap));
	for (size_t i = 0; i < N_ELEMENTS(n); i++) {
		if (n[i] == 0)
			continue;
		ignore_result(buf_printf(out, "%s%" PRIu64 " %s", sep, n[i],
		                         what[i]));
		sep = ", ";
	}
	if (sep[0] == ',')
		ignore_result(buf_append_str(out, ")"));
}

int
sched_engine_copy(const struct sched_engine_args *a, struct copy_stats *stats,
                  const char **error_r)
{
	struct copy_options o;
	struct source src = { .kind = SOURCE_IMAP, .imap = &a->account->src_opts };
	struct source_body_stats bodies = { 0 };
	struct target_spec dst = { 0 };
	int ret;

	/* the account's own source (a copied spool, bodies from one) */
	if (a->account->src_spec != NULL)
		source_init_like(&src, a->account->src_spec);
	src.body_stats = &bodies;
	if (a->base != NULL)
		o = *a->base;
	else
		memset(&o, 0, sizeof(o));
	if (a->account->dst_maildir) {
		target_spec_maildir_init(&dst);
		dst.root = a->account->dst_path;
		if (a->md != NULL)
			dst.md = *a->md;
		dst.md.flavor = a->account->dst_courier ? MAILDIR_COURIER :
		    MAILDIR_DOVECOT;
		dst.dst_imap = a->account->dst_imap;
	} else {
		dst.kind = TARGET_IMAP;
		dst.imap = &a->account->dst_opts;
	}
	o.account = a->account->key;
	o.fm = a->fm;
	o.folders = a->folders;
	o.n_folders = a->n_folders;
	o.progress = a->progress;
	o.uid_lo = a->uid_lo;
	o.uid_hi = a->uid_hi;
	o.run_id = a->run_id;
	/* a job is retried by the runner (backoff, --max-errors): within
	 * one attempt, a folder gets 2 minutes without progress, not 10 */
	if (o.retry_budget_s == 0)
		o.retry_budget_s = 120;
	ret = copy_account_to(&src, &dst, a->db, &o, stats, error_r);
	stats->bodies = bodies;
	if (bodies.from_spool + bodies.from_imap > 0) {
		struct state_bodies sb = { 0 };
		struct buf line;

		sched_bodies_add(&sb, &bodies);
		buf_init(&line, 1024);
		sched_bodies_text(&line, &sb);
		log_info("%s: bodies: %s", a->account->src_user, buf_data(&line));
		buf_free(&line);
	}
	return ret;
}

/* ------------------------------------------------------------ helpers */

static void
set_run_error(struct sched_runner *r, const char *error)
{
	/* called with the lock held */
	if (r->run_error == NULL)
		r->run_error = xstrdup(error);
	r->stop = true;
	pthread_cond_broadcast(&r->changed);
}

/* Writes the job's row (a copy taken under the lock). With a shared
 * state, the end of a claimed attempt is written only while the claim
 * holds (state_job_release()), and other workers are woken. */
static void
job_persist(struct worker *w, struct rjob *rj)
{
	struct sched_runner *r = w->r;
	struct state_job copy;
	const char *error;
	bool claimed, lost = false;
	int64_t token;
	int rc;

	pthread_mutex_lock(&r->lock);
	copy = rj->j;
	copy.error = xstrdup(rj->j.error != NULL ? rj->j.error : "");
	claimed = r->shared && rj->local;
	token = rj->token;
	if (claimed && rj->j.status != STATE_JOB_RUNNING)
		rj->local = false;
	pthread_mutex_unlock(&r->lock);
	if (claimed)
		rc = state_job_release(w->db, &copy, token, &lost, &error);
	else
		rc = state_job_update(w->db, &copy, &error);
	if (rc == 0 && lost) {
		log_warn("%s (part %u/%u): another machine took this job over "
		         "(lease lost): its end is not recorded here",
		         copy.src_user, copy.part, copy.parts);
		pthread_mutex_lock(&r->lock);
		r->lost_leases++;
		pthread_mutex_unlock(&r->lock);
	}
	if (rc == 0 && claimed)
		state_notify(w->db);
	if (rc < 0) {
		enum err_kind kind = err_kind_of(error);

		log_error("run: %s", error);
		if (sched_error_classify(kind == ERRK_DISK_FULL ? kind : ERRK_STATE) ==
		    SCHED_ERR_RUN) {
			pthread_mutex_lock(&r->lock);
			set_run_error(r, error);
			pthread_mutex_unlock(&r->lock);
		}
	}
	free(copy.error);
}

static void
job_set_error(struct rjob *rj, const char *error, int scope)
{
	free(rj->j.error);
	rj->j.error = xstrdup(error != NULL ? error : "");
	rj->j.scope = scope;
}

/* The namespace of one side, cached per server. Called without the lock;
 * returns true and fills side (prefix owned by the cache) if known. */
static bool
ns_lookup(struct sched_runner *r, const char *key, struct foldermap_side *side)
{
	bool found = false;

	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->n_ns && !found; i++)
		if (strcmp(r->ns[i].key, key) == 0) {
			side->prefix = r->ns[i].prefix;
			side->separator = r->ns[i].separator;
			found = true;
		}
	pthread_mutex_unlock(&r->lock);
	return found;
}

static void
ns_store(struct sched_runner *r, const char *key, const char *prefix,
         char separator)
{
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->n_ns; i++)
		if (strcmp(r->ns[i].key, key) == 0) {
			pthread_mutex_unlock(&r->lock);
			return;
		}
	r->ns = xreallocarray(r->ns, r->n_ns + 1, sizeof(*r->ns));
	r->ns[r->n_ns].key = xstrdup(key);
	r->ns[r->n_ns].prefix = xstrdup(prefix);
	r->ns[r->n_ns].separator = separator;
	r->n_ns++;
	pthread_mutex_unlock(&r->lock);
}

/* Logs in on one side, learns its namespace (cached under key) and, with
 * list_r, the selectable folders. Returns 0, or -1 with *error_r and
 * *run_scope_r for an admin login to a server that ignores authzids. */
static int
probe_side(struct sched_runner *r, const struct imap_client_options *opts,
           const char *key, const char *side, char ***list_r, size_t *n_r,
           bool *run_scope_r, const char **error_r)
{
	struct imap_account_info info;
	struct imap_client *c;
	char sep;

	*run_scope_r = false;
	if (imap_client_connect(opts, &c, NULL, error_r) < 0) {
		*error_r = err_wrap(*error_r, "%s: %s", side, *error_r);
		return -1;
	}
	if (!sched_check_authzid(opts, c, side, error_r)) {
		*run_scope_r = true;
		imap_client_logout(&c);
		return -1;
	}
	if (imap_account_inventory(c, 0, &info, error_r) < 0) {
		*error_r = err_wrap(*error_r, "%s: %s", side, *error_r);
		imap_client_free(&c);
		return -1;
	}
	imap_client_logout(&c);
	sep = info.separator;
	if (sep == '\0' && info.ns_count[0] > 0)
		sep = info.ns[0][0].delimiter;
	ns_store(r, key, info.ns_count[0] > 0 ? info.ns[0][0].prefix : "", sep);
	if (list_r != NULL) {
		char **v = xcalloc(info.count + 1, sizeof(char *));
		size_t n = 0;

		for (size_t i = 0; i < info.count; i++)
			if (info.boxes[i].selectable &&
			    strlen(info.boxes[i].name) == info.boxes[i].name_len)
				v[n++] = xstrdup(info.boxes[i].name);
		*list_r = v;
		*n_r = n;
	}
	imap_account_info_free(&info);
	return 0;
}

static bool
in_list(char *const *v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i], name) == 0)
			return true;
	return false;
}

/* ---------------------------------------------------------------- jobs */

/* Takes the next runnable job (plan order) and marks it running, or
 * returns NULL when the worker should exit. */
static struct rjob *
job_pick(struct sched_runner *r)
{
	pthread_mutex_lock(&r->lock);
	for (;;) {
		int64_t now = (int64_t)time(NULL);
		bool waiting = false;
		struct rjob *best = NULL;
		struct timespec until;

		if (r->stop)
			break;
		for (size_t i = 0; i < r->n_jobs && best == NULL; i++) {
			struct rjob *rj = &r->jobs[i];

			if (rj->j.status == STATE_JOB_RUNNING)
				waiting = true;
			if (rj->j.status != STATE_JOB_PENDING)
				continue;
			if (rj->j.not_before <= now)
				best = rj;
			else
				waiting = true;
		}
		if (best != NULL) {
			best->j.status = STATE_JOB_RUNNING;
			best->j.attempts++;
			best->j.updated = now;
			best->j.started = now;
			best->j.finished = 0;
			attempt_begin_locked(best);
			pthread_mutex_unlock(&r->lock);
			return best;
		}
		/* Running jobs may come back for a retry: wait for them. */
		for (size_t i = 0; i < r->n_jobs && !waiting; i++)
			waiting = r->jobs[i].j.status == STATE_JOB_RUNNING;
		if (!waiting)
			break;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 1;
		pthread_cond_timedwait(&r->changed, &r->lock, &until);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

/* Starts an attempt of rj in memory (lock held). */
static void
attempt_begin_locked(struct rjob *rj)
{
	rj->base_messages = rj->j.messages;
	rj->base_bytes = rj->j.bytes;
	rj->live.messages = 0;
	rj->live.bytes = 0;
	rj->live.failed = 0;
	rj->attempt_start = time_mono_sec();
	rj->last_beat = rj->attempt_start;
}

/* Replaces the mirror of a job by row j (moved; lock held). */
static void
mirror_take_locked(struct rjob *rj, struct state_job *j)
{
	state_job_free(&rj->j);
	rj->j = *j;
	memset(j, 0, sizeof(*j));
}

/* The job with this id, or NULL. Jobs are sorted by seq, seq = index+1
 * as stored by the plan; the loop covers other numberings. */
static struct rjob *
job_by_id(struct sched_runner *r, int64_t id, unsigned seq)
{
	if (seq >= 1 && seq <= r->n_jobs && r->jobs[seq - 1].j.id == id)
		return &r->jobs[seq - 1];
	for (size_t i = 0; i < r->n_jobs; i++)
		if (r->jobs[i].j.id == id)
			return &r->jobs[i];
	return NULL;
}

/* Shared state: claims the next job from the database, waiting while
 * the run has jobs pending (backoff, caps) or running elsewhere.
 * Returns NULL when the worker should exit. */
static struct rjob *
job_claim(struct worker *w)
{
	struct sched_runner *r = w->r;
	struct state_claim c = {
		.run_id = r->o.run_id, .machine = r->o.machine,
		.lease_seconds = r->lease, .max_src = r->o.max_src,
		.max_dst = r->o.max_dst,
	};
	double failing_since = 0;

	for (;;) {
		struct state_job j;
		struct rjob *rj;
		const char *error;
		size_t busy;
		bool found, stop;

		pthread_mutex_lock(&r->lock);
		stop = r->stop;
		pthread_mutex_unlock(&r->lock);
		if (stop)
			return NULL;
		if (state_job_claim(w->db, &c, &j, &found, &busy, &error) < 0) {
			/* PostgreSQL restarting, the network: try again for
			 * a while (the leases of running jobs outlive it) */
			double now = time_mono_sec();

			if (failing_since == 0)
				failing_since = now;
			if (now - failing_since > 60) {
				pthread_mutex_lock(&r->lock);
				set_run_error(r, error);
				pthread_mutex_unlock(&r->lock);
				return NULL;
			}
			log_warn("run: %s; trying again", error);
			sleep(1);
			continue;
		}
		failing_since = 0;
		if (!found) {
			if (busy == 0)
				return NULL;
			(void)state_wait(w->db, 1000);
			continue;
		}
		pthread_mutex_lock(&r->lock);
		rj = job_by_id(r, j.id, j.seq);
		if (rj == NULL || rj->account == SIZE_MAX) {
			/* a job this process cannot run (another users file) */
			pthread_mutex_unlock(&r->lock);
			j.status = STATE_JOB_FAILED;
			j.finished = (int64_t)time(NULL);
			free(j.error);
			j.error = xstrdup("the account is not in this machine's "
			                  "users file");
			if (state_job_release(w->db, &j, j.lease_token, &found,
			                      &error) < 0)
				log_warn("run: %s", error);
			state_job_free(&j);
			continue;
		}
		rj->token = j.lease_token;
		rj->local = true;
		rj->lost = false;
		mirror_take_locked(rj, &j);
		attempt_begin_locked(rj);
		if (rj->j.attempts > 1)
			log_info("%s (part %u/%u): attempt %u%s", rj->j.src_user,
			         rj->j.part, rj->j.parts, rj->j.attempts,
			         rj->j.errors == 0 ? " (taken over from a machine "
			         "that stopped renewing its lease)" : "");
		pthread_mutex_unlock(&r->lock);
		return rj;
	}
}

/* Fails every pending job of account (its login was refused). */
static void
fail_account(struct worker *w, size_t account, const char *error)
{
	struct sched_runner *r = w->r;
	const char *err2;

	if (r->shared &&
	    state_job_fail_account(w->db, r->o.run_id,
	                           r->accounts[account].key, error, &err2) < 0)
		log_warn("run: %s", err2);
	for (size_t i = 0; i < r->n_jobs; i++) {
		struct rjob *rj = &r->jobs[i];
		bool hit;

		pthread_mutex_lock(&r->lock);
		hit = rj->account == account && rj->j.status == STATE_JOB_PENDING;
		if (hit) {
			rj->j.status = STATE_JOB_FAILED;
			rj->j.finished = (int64_t)time(NULL);
			rj->j.updated = rj->j.finished;
			job_set_error(rj, error, STATE_SCOPE_RUN);
		}
		pthread_mutex_unlock(&r->lock);
		if (hit && !r->shared)
			job_persist(w, rj);
	}
}

/* Records the end of an attempt: ret/error from the engine (or a probe). */
static void
job_end(struct worker *w, struct rjob *rj, int ret, const char *error,
        enum err_kind kind, const struct copy_stats *st)
{
	struct sched_runner *r = w->r;
	unsigned max_errors = r->o.max_errors > 0 ? r->o.max_errors : 3;
	unsigned backoff = r->o.backoff > 0 ? r->o.backoff : 5;
	const struct sched_account *a = &r->accounts[rj->account];
	enum sched_error_class cls = SCHED_ERR_RETRY;
	int64_t now = (int64_t)time(NULL);
	char *msg = NULL;
	bool account_failed = false;

	pthread_mutex_lock(&r->lock);
	r->local_done++;
	r->local_messages += st->copied;
	r->local_bytes += st->bytes;
	rj->j.seconds += time_mono_sec() - rj->attempt_start;
	rj->j.messages = rj->base_messages + st->copied;
	rj->j.bytes = rj->base_bytes + st->bytes;
	rj->j.skipped = st->skipped;
	rj->j.failed = st->failed;
	rj->j.folders_failed = st->folders_failed;
	/* like messages: what each attempt read, summed */
	sched_bodies_add(&rj->j.bodies, &st->bodies);
	rj->j.updated = now;
	if (ret < 0) {
		cls = sched_error_classify(kind);
		msg = xstrdup(error != NULL ? error : "failed");
	} else if (st->folders_failed > 0) {
		msg = xasprintf("%u folder%s failed (see the failures in the "
		                "state database)", st->folders_failed,
		                st->folders_failed == 1 ? "" : "s");
	}
	if (msg == NULL) {
		rj->j.status = STATE_JOB_DONE;
		rj->j.finished = now;
		job_set_error(rj, st->failed > 0 ? "some messages were refused "
		              "by the target (see the failures)" : "",
		              st->failed > 0 ? STATE_SCOPE_MESSAGE : -1);
		r->logins_ok++;
	} else if (cls == SCHED_ERR_RUN) {
		/* the job itself stays pending: nothing is wrong with it */
		rj->j.status = STATE_JOB_PENDING;
		rj->j.not_before = 0;
		job_set_error(rj, msg, STATE_SCOPE_RUN);
		log_error("%s: %s: stopping the run", a->src_user, msg);
		set_run_error(r, msg);
	} else if (cls == SCHED_ERR_ACCOUNT) {
		rj->j.errors++;
		rj->j.status = STATE_JOB_FAILED;
		rj->j.finished = now;
		job_set_error(rj, msg, STATE_SCOPE_RUN);
		account_failed = true;
		log_error("%s: %s: account skipped", a->src_user, msg);
		if (kind == ERRK_AUTH) {
			r->auth_failures++;
			if (r->logins_ok == 0 &&
			    r->auth_failures >= AUTH_FAILURES_STOP) {
				char *e = xasprintf("the first %u accounts all "
				    "refused the login and none worked: check "
				    "the credentials (last: %s)",
				    r->auth_failures, msg);
				set_run_error(r, e);
				free(e);
			}
		}
	} else {
		rj->j.errors++;
		r->logins_ok++;
		job_set_error(rj, msg, ret < 0 ? STATE_SCOPE_SESSION :
		              STATE_SCOPE_FOLDER);
		if (rj->j.errors >= max_errors) {
			rj->j.status = STATE_JOB_FAILED;
			rj->j.finished = now;
			log_error("%s (part %u/%u): %s: giving up after %u "
			          "attempts", a->src_user, rj->j.part, rj->j.parts,
			          msg, rj->j.errors);
		} else {
			unsigned wait = sched_backoff(backoff, rj->j.errors);

			rj->j.status = STATE_JOB_PENDING;
			rj->j.not_before = now + wait;
			log_warn("%s (part %u/%u): %s: retrying in %u s",
			         a->src_user, rj->j.part, rj->j.parts, msg, wait);
		}
	}
	pthread_cond_broadcast(&r->changed);
	pthread_mutex_unlock(&r->lock);
	job_persist(w, rj);
	if (account_failed)
		fail_account(w, rj->account, msg);
	free(msg);
}

/* Runs one attempt of a job within its connection slots. */
static void
job_run(struct worker *w, struct rjob *rj)
{
	struct sched_runner *r = w->r;
	const struct sched_account *a = &r->accounts[rj->account];
	struct foldermap_side sside = { 0 }, dside = { 0 };
	struct copy_stats st;
	struct sched_engine_args args = { 0 };
	char **list = NULL, **sel = NULL, *skey, *dkey;
	size_t n_list = 0, n_sel = 0;
	const char *error = NULL;
	bool run_scope = false;
	enum err_kind kind = ERRK_NONE;
	int ret = -1;

	memset(&st, 0, sizeof(st));
	/* per server and kind of login: the first admin (authzid) login
	 * to a server is probed even when accounts with their own
	 * passwords were first, so a server that ignores authzids is
	 * caught before any copy */
	skey = xasprintf("src:%s%s", a->src_slot != NULL ? a->src_slot : "",
	                 a->src_opts.authzid != NULL ? "+authzid" : "");
	dkey = xasprintf("dst:%s%s", a->dst_slot != NULL ? a->dst_slot : "",
	                 a->dst_opts.authzid != NULL ? "+authzid" : "");
	if (!r->shared)
		job_persist(w, rj);
	if (r->o.src_slots != NULL && a->src_slot != NULL)
		sched_slots_acquire(r->o.src_slots, a->src_slot);
	if (!a->dst_maildir && r->o.dst_slots != NULL && a->dst_slot != NULL)
		sched_slots_acquire(r->o.dst_slots, a->dst_slot);

	/* namespaces (cached per server) and, for the rest part of a split
	 * account, the current folder list; an offline source has its
	 * own */
	if (a->src_spec != NULL && source_is_offline(a->src_spec)) {
		bool refused;

		if (source_folder_names(a->src_spec, &list, &n_list,
		                        &sside.separator, &refused, &error) < 0)
			goto end;
		sside.prefix = "";
		if (rj->j.exclude[0] == '\0') {
			strv_free(&list);
			n_list = 0;
		}
	} else if ((rj->j.exclude[0] != '\0' || !ns_lookup(r, skey, &sside)) &&
	    probe_side(r, &a->src_opts, skey, "source",
	               rj->j.exclude[0] != '\0' ? &list : NULL, &n_list,
	               &run_scope, &error) < 0)
		goto end;
	if (sside.separator == '\0' && !ns_lookup(r, skey, &sside)) {
		error = "source namespace unknown";
		goto end;
	}
	if (a->dst_maildir) {
		dside.separator = '.';
		dside.prefix = "";
	} else if (!ns_lookup(r, dkey, &dside) &&
	           (probe_side(r, &a->dst_opts, dkey, "target", NULL, NULL,
	                       &run_scope, &error) < 0 ||
	            !ns_lookup(r, dkey, &dside))) {
		if (error == NULL)
			error = "target namespace unknown";
		goto end;
	}

	/* the folders of this job */
	if (rj->n_folders > 0) {
		args.folders = rj->folders;
		args.n_folders = rj->n_folders;
	} else if (list != NULL) {
		sel = xcalloc(n_list + 1, sizeof(char *));
		for (size_t i = 0; i < n_list; i++)
			if (!in_list(rj->exclude, rj->n_exclude, list[i]) &&
			    copy_folder_selected(r->o.folders, r->o.n_folders,
			                         list[i]))
				sel[n_sel++] = list[i];
		args.folders = sel;
		args.n_folders = n_sel;
	} else {
		args.folders = r->o.folders;
		args.n_folders = r->o.n_folders;
	}
	args.fm = foldermap_new(&sside, &dside);
	for (size_t i = 0; i < r->o.n_includes; i++)
		ignore_result(foldermap_add_include(args.fm, r->o.includes[i],
		                                    &error));
	for (size_t i = 0; i < r->o.n_excludes; i++)
		ignore_result(foldermap_add_exclude(args.fm, r->o.excludes[i],
		                                    &error));
	for (size_t i = 0; i < r->o.n_maps; i++)
		ignore_result(foldermap_add_rule(args.fm, r->o.maps[i], &error));
	error = NULL;
	args.account = a;
	args.db = w->db;
	args.uid_lo = rj->j.uid_lo;
	args.uid_hi = rj->j.uid_hi;
	args.run_id = r->o.run_id;
	args.base = r->o.copy;
	args.md = r->o.md;
	args.progress = &rj->live;
	log_debug("%s (part %u/%u): starting attempt %u", a->src_user,
	          rj->j.part, rj->j.parts, rj->j.attempts);
	/* every state write of the engine checks the claim (state.h) */
	if (r->shared)
		state_fence_set(w->db, rj->j.id, rj->token);
	ret = (r->o.engine != NULL ? r->o.engine : sched_engine_copy)(&args, &st,
	                                                            &error);
	kind = ret < 0 ? st.error_kind : ERRK_NONE;
	foldermap_free(&args.fm);
end:
	if (ret < 0 && kind == ERRK_NONE)
		kind = err_kind_of(error);    /* a probe's, before any other */
	if (!a->dst_maildir && r->o.dst_slots != NULL && a->dst_slot != NULL)
		sched_slots_release(r->o.dst_slots, a->dst_slot);
	if (r->o.src_slots != NULL && a->src_slot != NULL)
		sched_slots_release(r->o.src_slots, a->src_slot);
	if (run_scope) {
		pthread_mutex_lock(&r->lock);
		set_run_error(r, error);
		pthread_mutex_unlock(&r->lock);
		ret = -1;
	}
	if (r->shared) {
		/* read before state_fence_set() clears it */
		bool lost = state_fence_lost(w->db);

		state_fence_set(w->db, 0, 0);
		pthread_mutex_lock(&r->lock);
		lost = lost || rj->lost;
		if (lost) {
			/* another machine runs it now: write nothing more */
			rj->local = false;
			rj->j.seconds += time_mono_sec() - rj->attempt_start;
			r->lost_leases++;
			pthread_cond_broadcast(&r->changed);
		}
		pthread_mutex_unlock(&r->lock);
		if (lost) {
			log_warn("%s (part %u/%u): the lease was taken over by "
			         "another machine: leaving the job to it",
			         a->src_user, rj->j.part, rj->j.parts);
			free(sel);
			strv_free(&list);
			free(skey);
			free(dkey);
			return;
		}
	}
	{
		char *e = error != NULL ? xstrdup(error) : NULL;

		if (run_scope) {
			/* a pending job is not at fault: leave it pending */
			pthread_mutex_lock(&r->lock);
			rj->j.status = STATE_JOB_PENDING;
			rj->j.seconds += time_mono_sec() - rj->attempt_start;
			job_set_error(rj, e, STATE_SCOPE_RUN);
			pthread_cond_broadcast(&r->changed);
			pthread_mutex_unlock(&r->lock);
			job_persist(w, rj);
		} else {
			job_end(w, rj, ret, e, kind, &st);
		}
		free(e);
	}
	free(sel);
	strv_free(&list);
	free(skey);
	free(dkey);
}

static void *
worker_thread(void *arg)
{
	struct worker *w = arg;
	struct sched_runner *r = w->r;
	struct rjob *rj;
	const char *error;

	if (state_open(r->o.state_path, &w->db, &error) < 0) {
		pthread_mutex_lock(&r->lock);
		set_run_error(r, error);
		pthread_mutex_unlock(&r->lock);
	} else if (r->shared) {
		while ((rj = job_claim(w)) != NULL)
			job_run(w, rj);
	} else {
		while ((rj = job_pick(r)) != NULL)
			job_run(w, rj);
	}
	state_close(&w->db);
	pthread_mutex_lock(&r->lock);
	r->workers_alive--;
	pthread_cond_broadcast(&r->changed);
	pthread_mutex_unlock(&r->lock);
	free(w);
	return NULL;
}

/* ------------------------------------------------------------- views */

static double
job_fraction(const struct state_job *j, uint64_t messages, uint64_t bytes)
{
	double f;

	if (j->status == STATE_JOB_DONE)
		return 1;
	if (j->est_bytes > 0)
		f = (double)bytes / (double)j->est_bytes;
	else if (j->est_messages > 0)
		f = (double)messages / (double)j->est_messages;
	else
		f = 0;
	return f > 1 ? 1 : f;
}

/* Adds a job to the view; messages/bytes are its live counts. */
static void
view_add(struct sched_view *v, const struct state_job *j, const char *src_user,
         uint64_t messages, uint64_t bytes, double seconds, double *work)
{
	v->jobs++;
	switch (j->status) {
	case STATE_JOB_PENDING: v->pending++; break;
	case STATE_JOB_RUNNING: v->running++; break;
	case STATE_JOB_DONE: v->done++; break;
	case STATE_JOB_FAILED: v->failed++; break;
	}
	v->est_messages += j->est_messages;
	v->est_bytes += j->est_bytes;
	v->messages += messages;
	v->bytes += bytes;
	/* failed jobs count as done work: nothing more will happen */
	*work += j->status == STATE_JOB_FAILED ? j->est_seconds :
	    j->est_seconds * job_fraction(j, messages, bytes);
	if (j->status == STATE_JOB_RUNNING) {
		struct sched_view_job *a;

		v->active = xreallocarray(v->active, v->n_active + 1,
		                          sizeof(*v->active));
		a = &v->active[v->n_active++];
		memset(a, 0, sizeof(*a));
		a->src_user = xstrdup(src_user);
		a->account = xstrdup(j->account);
		a->part = j->part;
		a->parts = j->parts;
		a->status = j->status;
		a->attempts = j->attempts;
		a->messages = messages;
		a->bytes = bytes;
		a->est_messages = j->est_messages;
		a->est_bytes = j->est_bytes;
		a->seconds = seconds;
		a->error = j->error != NULL && j->error[0] != '\0' ?
		    xstrdup(j->error) : NULL;
	}
}

/* The view and the work done; called with the lock held. */
static double
view_fill_locked(struct sched_runner *r, struct sched_view *v)
{
	double work = 0, now = time_mono_sec();

	memset(v, 0, sizeof(*v));
	v->run_id = r->o.run_id;
	for (size_t i = 0; i < r->n_jobs; i++) {
		struct rjob *rj = &r->jobs[i];
		bool running = rj->j.status == STATE_JOB_RUNNING;
		uint64_t m = running ? rj->base_messages + rj->live.messages :
		    rj->j.messages;
		uint64_t b = running ? rj->base_bytes + rj->live.bytes :
		    rj->j.bytes;

		view_add(v, &rj->j, rj->account != SIZE_MAX ?
		         r->accounts[rj->account].src_user : rj->j.src_user, m, b,
		         running ? now - rj->attempt_start : rj->j.seconds, &work);
	}
	v->fraction = r->total_work > 0 ? work / r->total_work :
	    v->jobs > 0 ? (double)(v->done + v->failed) / (double)v->jobs : 1;
	v->elapsed = now - r->start;
	v->eta_seconds = -1;
	return work;
}

/* Rates over the last RATE_WINDOW_SEC from the history; lock held. */
static void
view_rates_locked(struct sched_runner *r, struct sched_view *v, double work)
{
	double now = time_mono_sec();
	const struct hist *old = NULL;

	for (size_t i = 0; i < r->n_hist; i++)
		if (now - r->hist[i].t <= RATE_WINDOW_SEC) {
			old = &r->hist[i];
			break;
		}
	if (old == NULL || now - old->t < 1) {
		old = r->n_hist > 0 ? &r->hist[0] : NULL;
		if (old == NULL || now - old->t < 1) {
			if (r->run.est_seconds > 0)
				v->eta_seconds = r->run.est_seconds *
				    (1 - v->fraction);
			return;
		}
	}
	v->rate_messages = (double)(v->messages - old->messages) / (now - old->t);
	v->rate_bytes = (double)(v->bytes - old->bytes) / (now - old->t);
	if (work > old->work && r->total_work > 0)
		v->eta_seconds = (r->total_work - work) /
		    ((work - old->work) / (now - old->t));
	/* early on the rate says little: the plan's estimate of what is
	 * left says more */
	if ((v->elapsed < 10 || v->fraction < 0.05) && r->run.est_seconds > 0)
		v->eta_seconds = r->run.est_seconds * (1 - v->fraction);
	if (v->running + v->pending == 0)
		v->eta_seconds = 0;
}

void
sched_runner_view(struct sched_runner *r, struct sched_view *v)
{
	double work;

	pthread_mutex_lock(&r->lock);
	work = view_fill_locked(r, v);
	view_rates_locked(r, v, work);
	pthread_mutex_unlock(&r->lock);
}

void
sched_view_free(struct sched_view *v)
{
	for (size_t i = 0; i < v->n_active; i++) {
		free(v->active[i].src_user);
		free(v->active[i].account);
		free(v->active[i].error);
	}
	free(v->active);
	memset(v, 0, sizeof(*v));
}

int
sched_view_load(struct state_db *db, int64_t run_id, struct sched_view *v,
                const char **error_r)
{
	struct state_job *jobs;
	struct state_run run;
	size_t n;
	bool found;
	double work = 0, total = 0;
	int64_t now = (int64_t)time(NULL);

	memset(v, 0, sizeof(*v));
	if (state_run_get(db, run_id, NULL, &run, &found, error_r) < 0)
		return -1;
	if (!found) {
		*error_r = err_set("no run %lld in the state database",
		                   (long long)run_id);
		return -1;
	}
	if (state_job_list(db, run_id, &jobs, &n, error_r) < 0) {
		state_run_free(&run);
		return -1;
	}
	v->run_id = run_id;
	for (size_t i = 0; i < n; i++) {
		const struct state_job *j = &jobs[i];

		total += j->est_seconds;
		view_add(v, j, j->src_user, j->messages, j->bytes,
		         j->status == STATE_JOB_RUNNING && j->started > 0 ?
		         (double)(now - j->started) : j->seconds, &work);
	}
	v->fraction = total > 0 ? work / total :
	    n > 0 ? (double)(v->done + v->failed) / (double)n : 1;
	v->elapsed = (double)((run.finished > 0 ? run.finished : now) -
	                      run.started);
	v->rate_messages = run.rate_messages;
	v->rate_bytes = run.rate_bytes;
	v->eta_seconds = run.eta_seconds;
	state_job_list_free(&jobs, n);
	state_run_free(&run);
	return 0;
}

/* ----------------------------------------------------------- progress */

struct progress_item {
	int64_t id;
	unsigned attempts;
	uint64_t messages, bytes;
};

struct beat_item {
	int64_t id, token;
	uint64_t messages, bytes;
	size_t index;
};

/* Shared state: renews the leases of this machine's running jobs that
 * are due (every lease/3 s, or all with force) and stores their live
 * counters; a job found taken over is marked lost for its worker. */
static void
leases_renew(struct sched_runner *r, struct state_db *db, bool force)
{
	struct beat_item *items;
	double now = time_mono_sec();
	double every = r->lease / 3.0 < 0.5 ? 0.5 : r->lease / 3.0;
	size_t n = 0;

	pthread_mutex_lock(&r->lock);
	items = xcalloc(r->n_jobs + 1, sizeof(*items));
	for (size_t i = 0; i < r->n_jobs; i++) {
		struct rjob *rj = &r->jobs[i];

		if (!rj->local || rj->lost || rj->j.status != STATE_JOB_RUNNING ||
		    (!force && now - rj->last_beat < every))
			continue;
		items[n].id = rj->j.id;
		items[n].token = rj->token;
		items[n].messages = rj->base_messages + rj->live.messages;
		items[n].bytes = rj->base_bytes + rj->live.bytes;
		items[n].index = i;
		n++;
	}
	pthread_mutex_unlock(&r->lock);
	for (size_t i = 0; i < n; i++) {
		const char *error;
		bool lost;

		if (state_job_heartbeat(db, items[i].id, items[i].token, r->lease,
		                        items[i].messages, items[i].bytes,
		                        (int64_t)time(NULL), &lost, &error) < 0) {
			/* the lease runs on; the next tick tries again */
			log_warn("run: renewing a lease: %s", error);
			continue;
		}
		pthread_mutex_lock(&r->lock);
		if (lost && r->jobs[items[i].index].token == items[i].token) {
			r->jobs[items[i].index].lost = true;
			log_warn("%s (part %u/%u): the lease was taken over by "
			         "another machine", r->jobs[items[i].index].j.src_user,
			         r->jobs[items[i].index].j.part,
			         r->jobs[items[i].index].j.parts);
		} else if (!lost) {
			r->jobs[items[i].index].last_beat = now;
		}
		pthread_mutex_unlock(&r->lock);
	}
	free(items);
}

/* Shared state: reads the jobs other machines run into the mirror (the
 * view then shows the whole run). */
static void
mirror_refresh(struct sched_runner *r, struct state_db *db)
{
	struct state_job *jobs;
	const char *error;
	size_t n;

	if (state_job_list(db, r->o.run_id, &jobs, &n, &error) < 0) {
		log_warn("run: reading the jobs: %s", error);
		return;
	}
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < n; i++) {
		struct rjob *rj = job_by_id(r, jobs[i].id, jobs[i].seq);

		if (rj != NULL && !rj->local)
			mirror_take_locked(rj, &jobs[i]);
	}
	pthread_mutex_unlock(&r->lock);
	state_job_list_free(&jobs, n);
}

/* Shared state: this machine's row (status: "running", or the final
 * one). */
static void
machine_write(struct sched_runner *r, struct state_db *db, const char *status)
{
	struct state_machine m = { 0 };
	double elapsed = time_mono_sec() - r->start;
	const char *error;

	pthread_mutex_lock(&r->lock);
	m.run_id = r->o.run_id;
	m.name = (char *)r->o.machine;
	m.host = r->host;
	m.pid = (int64_t)getpid();
	m.status = (char *)status;
	m.started = r->started_wall;
	m.workers = r->n_threads;
	m.jobs_done = r->local_done;
	m.messages = r->local_messages;
	m.bytes = r->local_bytes;
	for (size_t i = 0; i < r->n_jobs; i++)
		if (r->jobs[i].local && r->jobs[i].j.status == STATE_JOB_RUNNING) {
			m.jobs_running++;
			m.messages += r->jobs[i].live.messages;
			m.bytes += r->jobs[i].live.bytes;
		}
	pthread_mutex_unlock(&r->lock);
	if (elapsed > 1) {
		m.rate_messages = (double)m.messages / elapsed;
		m.rate_bytes = (double)m.bytes / elapsed;
	}
	if (state_machine_put(db, &m, &error) < 0)
		log_warn("run: %s", error);
}

/* Writes the live counters of running jobs and the run's heartbeat. */
static void
progress_write(struct sched_runner *r, struct state_db *db)
{
	struct progress_item *items;
	struct sched_view v;
	size_t n = 0;
	int64_t now = (int64_t)time(NULL);
	const char *error;
	double work;

	if (r->shared) {
		/* counters go with the lease renewals */
		leases_renew(r, db, true);
		mirror_refresh(r, db);
		machine_write(r, db, "running");
	}
	pthread_mutex_lock(&r->lock);
	items = xcalloc(r->n_jobs + 1, sizeof(*items));
	for (size_t i = 0; i < r->n_jobs; i++) {
		struct rjob *rj = &r->jobs[i];

		if (rj->j.status != STATE_JOB_RUNNING || r->shared)
			continue;
		items[n].id = rj->j.id;
		items[n].attempts = rj->j.attempts;
		items[n].messages = rj->base_messages + rj->live.messages;
		items[n].bytes = rj->base_bytes + rj->live.bytes;
		n++;
	}
	work = view_fill_locked(r, &v);
	view_rates_locked(r, &v, work);
	pthread_mutex_unlock(&r->lock);

	if (state_begin(db, &error) < 0)
		goto fail;
	for (size_t i = 0; i < n; i++)
		if (state_job_progress(db, items[i].id, items[i].attempts,
		                       items[i].messages, items[i].bytes, now,
		                       &error) < 0)
			goto fail_tx;
	r->run.heartbeat = now;
	r->run.pid = (int64_t)getpid();
	r->run.rate_messages = v.rate_messages;
	r->run.rate_bytes = v.rate_bytes;
	r->run.eta_seconds = v.eta_seconds;
	if (state_run_update(db, &r->run, &error) < 0 ||
	    state_commit(db, &error) < 0)
		goto fail_tx;
	goto out;
fail_tx:
	state_rollback(db);
fail:
	log_warn("run: writing progress: %s", error);
out:
	sched_view_free(&v);
	free(items);
}

static void *
progress_thread(void *arg)
{
	struct sched_runner *r = arg;
	struct state_db *db = NULL;
	const char *error;
	unsigned tick = 0;

	if (state_open(r->o.state_path, &db, &error) < 0)
		log_warn("run: progress will not be written: %s", error);
	for (;;) {
		struct sched_view v;
		double work;
		bool quit;

		pthread_mutex_lock(&r->lock);
		quit = r->progress_quit;
		work = view_fill_locked(r, &v);
		if (r->n_hist == HIST_MAX) {
			memmove(r->hist, r->hist + 1,
			        (HIST_MAX - 1) * sizeof(*r->hist));
			r->n_hist--;
		}
		r->hist[r->n_hist].t = time_mono_sec();
		r->hist[r->n_hist].work = work;
		r->hist[r->n_hist].messages = v.messages;
		r->hist[r->n_hist].bytes = v.bytes;
		r->n_hist++;
		pthread_mutex_unlock(&r->lock);
		sched_view_free(&v);
		if (db != NULL && (quit || tick % PROGRESS_WRITE_TICKS == 0))
			progress_write(r, db);
		else if (db != NULL && r->shared)
			leases_renew(r, db, false);
		if (quit)
			break;
		tick++;
		usleep(PROGRESS_TICK_MS * 1000);
	}
	state_close(&db);
	return NULL;
}

/* -------------------------------------------------------------- setup */

int
sched_runner_start(const struct sched_run_options *o,
                   const struct sched_account *accounts, size_t n_accounts,
                   struct sched_runner **runner_r, const char **error_r)
{
	struct sched_runner *r = xcalloc(1, sizeof(*r));
	struct state_db *db = NULL;
	struct state_job *jobs = NULL;
	size_t n = 0;
	bool found;
	unsigned workers = o->workers > 0 ? o->workers : 4;

	r->o = *o;
	r->accounts = accounts;
	r->n_accounts = n_accounts;
	r->start = time_mono_sec();
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->changed, NULL);
	r->started_wall = (int64_t)time(NULL);
	if (gethostname(r->host, sizeof(r->host) - 1) < 0)
		snprintf(r->host, sizeof(r->host), "unknown");
	if (state_open(o->state_path, &db, error_r) < 0 ||
	    state_run_get(db, o->run_id, NULL, &r->run, &found, error_r) < 0 ||
	    state_job_list(db, o->run_id, &jobs, &n, error_r) < 0)
		goto fail;
	if (!found) {
		*error_r = err_set("no run %lld in the state database",
		                   (long long)o->run_id);
		goto fail;
	}
	r->jobs = xcalloc(n + 1, sizeof(*r->jobs));
	r->n_jobs = n;
	for (size_t i = 0; i < n; i++) {
		struct rjob *rj = &r->jobs[i];

		rj->j = jobs[i];
		rj->account = SIZE_MAX;
		for (size_t a = 0; a < n_accounts; a++)
			if (strcmp(accounts[a].key, rj->j.account) == 0) {
				rj->account = a;
				break;
			}
		rj->folders = sched_names_decode(rj->j.folders, &rj->n_folders);
		rj->exclude = sched_names_decode(rj->j.exclude, &rj->n_exclude);
		r->total_work += rj->j.est_seconds;
		if (rj->account == SIZE_MAX && (rj->j.status == STATE_JOB_PENDING ||
		                                rj->j.status == STATE_JOB_RUNNING)) {
			rj->j.status = STATE_JOB_FAILED;
			job_set_error(rj, "the account is no longer in the "
			              "users file (or its URL or login "
			              "changed)", STATE_SCOPE_RUN);
		}
	}
	free(jobs); /* its strings moved into r->jobs */
	jobs = NULL;
	r->shared = state_is_shared(db);
	r->lease = o->lease > 0 ? o->lease : 30;
	if (r->o.machine == NULL)
		r->o.machine = r->host;
	for (size_t i = 0; i < n && !r->shared; i++) {
		struct rjob *rj = &r->jobs[i];
		const char *error;

		if (rj->account == SIZE_MAX &&
		    state_job_update(db, &rj->j, &error) < 0)
			log_warn("run: %s", error);
	}
	/* the machine's row exists before its first claim: a machine that
	 * takes a job of this one over counts the lost lease in that row
	 * (a row written later by the progress thread would start at 0) */
	if (r->shared)
		machine_write(r, db, "running");
	state_close(&db);

	r->threads = xcalloc(workers, sizeof(*r->threads));
	pthread_mutex_lock(&r->lock);
	for (unsigned t = 0; t < workers; t++) {
		struct worker *w = xcalloc(1, sizeof(*w));

		w->r = r;
		if (pthread_create(&r->threads[t], NULL, worker_thread, w) != 0) {
			free(w);
			break;
		}
		r->n_threads++;
		r->workers_alive++;
	}
	pthread_mutex_unlock(&r->lock);
	if (r->n_threads == 0)
		fatal("cannot start worker threads");
	if (pthread_create(&r->progress, NULL, progress_thread, r) == 0)
		r->progress_started = true;
	*runner_r = r;
	return 0;
fail:
	state_job_list_free(&jobs, n);
	state_close(&db);
	state_run_free(&r->run);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->changed);
	free(r);
	return -1;
}

void
sched_runner_stop(struct sched_runner *r)
{
	pthread_mutex_lock(&r->lock);
	r->stop = true;
	pthread_cond_broadcast(&r->changed);
	pthread_mutex_unlock(&r->lock);
}

bool
sched_runner_finished(struct sched_runner *r)
{
	bool done;

	pthread_mutex_lock(&r->lock);
	done = r->workers_alive == 0;
	pthread_mutex_unlock(&r->lock);
	return done;
}

void
sched_runner_finish(struct sched_runner **rp, struct sched_run_result *res)
{
	struct sched_runner *r = *rp;

	memset(res, 0, sizeof(*res));
	for (unsigned t = 0; t < r->n_threads; t++)
		pthread_join(r->threads[t], NULL);
	pthread_mutex_lock(&r->lock);
	r->progress_quit = true;
	pthread_mutex_unlock(&r->lock);
	if (r->progress_started)
		pthread_join(r->progress, NULL);
	if (r->shared) {
		struct state_db *db = NULL;
		const char *error;

		if (state_open(r->o.state_path, &db, &error) == 0) {
			mirror_refresh(r, db);
			machine_write(r, db, r->run_error != NULL ? "stopped" :
			              r->stop ? "interrupted" : "done");
		} else {
			log_warn("run: %s", error);
		}
		state_close(&db);
	}
	res->lost_leases = r->lost_leases;
	res->stopped = r->stop;
	res->error = r->run_error;
	r->run_error = NULL;
	for (size_t i = 0; i < r->n_jobs; i++) {
		switch (r->jobs[i].j.status) {
		case STATE_JOB_DONE: res->done++; break;
		case STATE_JOB_FAILED: res->failed++; break;
		default: res->pending++; break;
		}
		if (r->jobs[i].j.status == STATE_JOB_DONE && r->jobs[i].j.failed > 0)
			res->refused_jobs++;
	}
	if (r->o.src_slots != NULL)
		res->src_peak = sched_slots_peak(r->o.src_slots);
	if (r->o.dst_slots != NULL)
		res->dst_peak = sched_slots_peak(r->o.dst_slots);
	for (size_t i = 0; i < r->n_jobs; i++) {
		state_job_free(&r->jobs[i].j);
		sched_names_free(&r->jobs[i].folders);
		sched_names_free(&r->jobs[i].exclude);
	}
	free(r->jobs);
	for (size_t i = 0; i < r->n_ns; i++) {
		free(r->ns[i].key);
		free(r->ns[i].prefix);
	}
	free(r->ns);
	free(r->threads);
	state_run_free(&r->run);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->changed);
	free(r);
	*rp = NULL;
}
