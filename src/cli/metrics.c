/* metrics.c: run --metrics FILE: the run's Prometheus metrics (rendered
 * by src/report) written every few seconds from the run's progress loop
 * (runcli.h). */
#include "runcli.h"

#include "log.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Seconds between two writes (node_exporter reads the file whenever it
 * is scraped; the progress thread updates the job table every 2 s). */
#define METRICS_INTERVAL 5.0

/* "host:port" of an IMAP side, "maildir" for a Maildir target. */
static char *
host_label(const struct imap_client_options *o, bool maildir)
{
	if (maildir || o->host == NULL)
		return xstrdup("maildir");
	if (o->port != NULL)
		return xasprintf("%s:%s", o->host, o->port);
	return xstrdup(o->host);
}

int
run_metrics_tick(struct run_metrics *m, const struct run_cli *c,
                 struct state_db *db, int64_t run_id,
                 const struct sched_view *v, bool final)
{
	struct state_job *jobs = NULL;
	struct state_run run = { 0 };
	struct report_metrics rm = { 0 };
	char **src = NULL, **dst = NULL;
	const char *error;
	size_t n = 0;
	struct buf out;
	bool found;
	double now = time_mono_sec();
	int ret = -1;

	if (m->path == NULL || (!final && m->written &&
	                        now - m->last < METRICS_INTERVAL))
		return 0;
	m->last = now;
	m->written = true;
	buf_init(&out, SIZE_MAX / 2);
	if (state_run_get(db, run_id, NULL, &run, &found, &error) < 0 ||
	    state_job_list(db, run_id, &jobs, &n, &error) < 0)
		goto out;
	src = xcalloc(n + 1, sizeof(*src));
	dst = xcalloc(n + 1, sizeof(*dst));
	for (size_t i = 0; i < n; i++) {
		const struct sched_account *a = NULL;

		for (size_t k = 0; k < c->n_accounts && a == NULL; k++)
			if (strcmp(c->accounts[k].key, jobs[i].account) == 0)
				a = &c->accounts[k];
		src[i] = a == NULL ? xstrdup("unknown") :
		         a->src_spec != NULL && source_is_offline(a->src_spec) ?
		         xstrdup("spool") : host_label(&a->src_opts, false);
		dst[i] = a != NULL ? host_label(&a->dst_opts, a->dst_maildir) :
		         xstrdup("unknown");
	}
	rm.run_id = run_id;
	rm.jobs = jobs;
	rm.n_jobs = n;
	rm.src_host = (const char *const *)src;
	rm.dst_host = (const char *const *)dst;
	rm.rate_messages = v != NULL ? v->rate_messages : run.rate_messages;
	rm.rate_bytes = v != NULL ? v->rate_bytes : run.rate_bytes;
	rm.eta_seconds = v != NULL ? v->eta_seconds : run.eta_seconds;
	if (final && found && strcmp(run.status, "done") == 0)
		rm.eta_seconds = 0;
	rm.started = found ? run.started : 0;
	rm.now = (int64_t)time(NULL);
	report_metrics_text(&out, &rm);
	if (report_file_write(m->path, buf_data(&out), buf_len(&out),
	                      &error) < 0)
		goto out;
	ret = 0;
out:
	if (ret < 0 && !m->warned) {
		/* a monitoring file must not stop a migration */
		log_warn("--metrics: %s", error);
		m->warned = true;
	}
	for (size_t i = 0; i < n && src != NULL; i++) {
		free(src[i]);
		free(dst[i]);
	}
	free(src);
	free(dst);
	state_job_list_free(&jobs, n);
	state_run_free(&run);
	buf_free(&out);
	return ret;
}
