/* report-metrics.c: the Prometheus text of a run (report.h), for
 * node_exporter's textfile collector (run --metrics FILE). */
#include "report.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A label value: backslash, double quote and newline escaped (the text
 * exposition format). */
static void
label_value(struct buf *out, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			ignore_result(buf_append_str(out, "\\\\"));
		else if (*s == '"')
			ignore_result(buf_append_str(out, "\\\""));
		else if (*s == '\n')
			ignore_result(buf_append_str(out, "\\n"));
		else
			ignore_result(buf_append(out, s, 1));
	}
}

static void
head(struct buf *out, const char *name, const char *type, const char *help)
{
	ignore_result(buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help,
	                         name, type));
}

/* A sample value: integers exactly, NaN for unknown. */
static void
value(struct buf *out, double v)
{
	if (isnan(v))
		ignore_result(buf_append_str(out, " NaN\n"));
	else if (v == floor(v) && fabs(v) < 9e15)
		ignore_result(buf_printf(out, " %.0f\n", v));
	else
		ignore_result(buf_printf(out, " %.6g\n", v));
}

struct pair_sum {
	const char *src, *dst;
	uint64_t messages, bytes;
};

void
report_metrics_text(struct buf *out, const struct report_metrics *m)
{
	static const char *const states[] = {
		"pending", "running", "done", "failed",
	};
	struct pair_sum *pairs = xcalloc(m->n_jobs + 1, sizeof(*pairs));
	size_t n_pairs = 0, by_state[4] = { 0 };
	uint64_t retries = 0, errors = 0, failed_msgs = 0;
	uint64_t est_messages = 0, est_bytes = 0;

	for (size_t i = 0; i < m->n_jobs; i++) {
		const struct state_job *j = &m->jobs[i];
		const char *src = m->src_host[i], *dst = m->dst_host[i];
		struct pair_sum *p = NULL;

		for (size_t k = 0; k < n_pairs && p == NULL; k++)
			if (strcmp(pairs[k].src, src) == 0 &&
			    strcmp(pairs[k].dst, dst) == 0)
				p = &pairs[k];
		if (p == NULL) {
			p = &pairs[n_pairs++];
			p->src = src;
			p->dst = dst;
		}
		p->messages += j->messages;
		p->bytes += j->bytes;
		if ((size_t)j->status < N_ELEMENTS(states))
			by_state[j->status]++;
		if (j->attempts > 1)
			retries += j->attempts - 1;
		errors += j->errors;
		failed_msgs += j->failed;
		est_messages += j->est_messages;
		est_bytes += j->est_bytes;
	}

	head(out, "imapferry_run_info", "gauge",
	     "The run these metrics are of (value 1).");
	ignore_result(buf_printf(out, "imapferry_run_info{run=\"%" PRId64
	                         "\"} 1\n", m->run_id));
	head(out, "imapferry_messages_copied_total", "counter",
	     "Messages copied, per source and target host.");
	for (size_t k = 0; k < n_pairs; k++) {
		ignore_result(buf_append_str(out, "imapferry_messages_copied_total"
		                             "{src_host=\""));
		label_value(out, pairs[k].src);
		ignore_result(buf_append_str(out, "\",dst_host=\""));
		label_value(out, pairs[k].dst);
		ignore_result(buf_append_str(out, "\"}"));
		value(out, (double)pairs[k].messages);
	}
	head(out, "imapferry_bytes_copied_total", "counter",
	     "Bytes copied (RFC822.SIZE), per source and target host.");
	for (size_t k = 0; k < n_pairs; k++) {
		ignore_result(buf_append_str(out, "imapferry_bytes_copied_total"
		                             "{src_host=\""));
		label_value(out, pairs[k].src);
		ignore_result(buf_append_str(out, "\",dst_host=\""));
		label_value(out, pairs[k].dst);
		ignore_result(buf_append_str(out, "\"}"));
		value(out, (double)pairs[k].bytes);
	}
	head(out, "imapferry_jobs", "gauge", "Jobs of the run by state.");
	for (size_t s = 0; s < N_ELEMENTS(states); s++) {
		ignore_result(buf_printf(out, "imapferry_jobs{state=\"%s\"}",
		                         states[s]));
		value(out, (double)by_state[s]);
	}
	head(out, "imapferry_queue_depth", "gauge",
	     "Jobs waiting to run (pending, retries included).");
	ignore_result(buf_append_str(out, "imapferry_queue_depth"));
	value(out, (double)by_state[STATE_JOB_PENDING]);
	head(out, "imapferry_job_retries_total", "counter",
	     "Attempts started beyond the first of each job.");
	ignore_result(buf_append_str(out, "imapferry_job_retries_total"));
	value(out, (double)retries);
	head(out, "imapferry_job_errors_total", "counter",
	     "Attempts that failed.");
	ignore_result(buf_append_str(out, "imapferry_job_errors_total"));
	value(out, (double)errors);
	head(out, "imapferry_messages_failed", "gauge",
	     "Messages refused in the last attempt of each job.");
	ignore_result(buf_append_str(out, "imapferry_messages_failed"));
	value(out, (double)failed_msgs);
	head(out, "imapferry_planned_messages", "gauge",
	     "Messages the plan estimated.");
	ignore_result(buf_append_str(out, "imapferry_planned_messages"));
	value(out, (double)est_messages);
	head(out, "imapferry_planned_bytes", "gauge", "Bytes the plan estimated.");
	ignore_result(buf_append_str(out, "imapferry_planned_bytes"));
	value(out, (double)est_bytes);
	head(out, "imapferry_rate_messages_per_second", "gauge",
	     "Recent copy rate in messages per second.");
	ignore_result(buf_append_str(out, "imapferry_rate_messages_per_second"));
	value(out, m->rate_messages);
	head(out, "imapferry_rate_bytes_per_second", "gauge",
	     "Recent copy rate in bytes per second.");
	ignore_result(buf_append_str(out, "imapferry_rate_bytes_per_second"));
	value(out, m->rate_bytes);
	head(out, "imapferry_start_time_seconds", "gauge",
	     "When the run started (Unix time).");
	ignore_result(buf_append_str(out, "imapferry_start_time_seconds"));
	value(out, (double)m->started);
	head(out, "imapferry_estimated_end_time_seconds", "gauge",
	     "When the run should end at the recent rate (Unix time; NaN "
	     "unknown).");
	ignore_result(buf_append_str(out, "imapferry_estimated_end_time_seconds"));
	value(out, m->eta_seconds >= 0 ? (double)m->now + ceil(m->eta_seconds) :
	      NAN);
	head(out, "imapferry_last_update_time_seconds", "gauge",
	     "When this file was written (Unix time).");
	ignore_result(buf_append_str(out, "imapferry_last_update_time_seconds"));
	value(out, (double)m->now);
	free(pairs);
}
