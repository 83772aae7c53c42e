/* report-html.c: the HTML report of a run (report.h): one self-contained
 * page, charts as inline SVG drawn here, a few lines of script to sort
 * the accounts table. Every text that comes from the state database
 * (account, folder and server texts) goes through report_html_escape(). */
#include "report.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Appends to out (a struct buf * named out in every caller). */
#define P(...) ignore_result(buf_printf(out, __VA_ARGS__))
#define S(s) ignore_result(buf_append_str(out, (s)))

/* The SVG coordinate system: charts scale to the page's width. */
#define SVG_W 960
#define SVG_LEFT 64                   /* room for lane and axis labels */
#define SVG_RIGHT 16
#define PLOT_W (SVG_W - SVG_LEFT - SVG_RIGHT)
#define THROUGHPUT_BUCKETS 60
#define HIST_BINS 10

void
report_html_escape(struct buf *out, const char *s)
{
	const char *run = s;

	for (; *s != '\0'; s++) {
		const char *rep;

		switch (*s) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '"': rep = "&quot;"; break;
		case '\'': rep = "&#39;"; break;
		default: continue;
		}
		ignore_result(buf_append(out, run, (size_t)(s - run)));
		ignore_result(buf_append_str(out, rep));
		run = s + 1;
	}
	ignore_result(buf_append(out, run, (size_t)(s - run)));
}

/* ------------------------------------------------ derived from the jobs */

struct by_start {
	int64_t start;
	size_t i;
};

static int
cmp_start(const void *a, const void *b)
{
	const struct by_start *x = a, *y = b;

	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

unsigned
report_assign_lanes(const int64_t *start, const int64_t *end, size_t n,
                    int *lanes_r)
{
	struct by_start *order = xcalloc(n + 1, sizeof(*order));
	int64_t *lane_end = xcalloc(n + 1, sizeof(*lane_end));
	size_t m = 0;
	unsigned lanes = 0;

	for (size_t i = 0; i < n; i++) {
		lanes_r[i] = -1;
		if (start[i] > 0) {
			order[m].start = start[i];
			order[m].i = i;
			m++;
		}
	}
	qsort(order, m, sizeof(*order), cmp_start);
	for (size_t k = 0; k < m; k++) {
		size_t i = order[k].i;
		int64_t e = end[i] > start[i] ? end[i] : start[i];
		unsigned l = 0;

		/* the first lane whose last job ended by this start */
		while (l < lanes && lane_end[l] > start[i])
			l++;
		if (l == lanes)
			lanes++;
		lane_end[l] = e;
		lanes_r[i] = (int)l;
	}
	free(order);
	free(lane_end);
	return lanes;
}

void
report_spread(const int64_t *start, const int64_t *end, const double *value,
              size_t n, int64_t t0, double width, double *buckets,
              size_t n_buckets)
{
	memset(buckets, 0, n_buckets * sizeof(*buckets));
	if (!(width > 0))
		return;
	for (size_t i = 0; i < n; i++) {
		double s, e, rate;
		size_t k0, k1;

		if (start[i] <= 0 || value[i] <= 0)
			continue;
		s = (double)(start[i] - t0);
		e = end[i] > start[i] ? (double)(end[i] - t0) : s + 1;
		rate = value[i] / (e - s);
		k0 = s > 0 ? (size_t)(s / width) : 0;
		k1 = (size_t)ceil(e / width);
		for (size_t k = k0; k < k1 && k < n_buckets; k++) {
			double bs = (double)k * width, be = bs + width;
			double lo = s > bs ? s : bs, hi = e < be ? e : be;

			if (hi > lo)
				buckets[k] += rate * (hi - lo);
		}
	}
}

/* What the page needs per job: its last attempt's interval. */
struct hjob {
	int64_t start, end;
	const char *outcome;          /* CSS class: done, partial, ... */
};

static const char *
job_outcome(const struct state_job *j)
{
	switch (j->status) {
	case STATE_JOB_DONE:
		return j->failed > 0 ? "partial" : "done";
	case STATE_JOB_FAILED:
		return "failed";
	case STATE_JOB_RUNNING:
		return "running";
	default:
		return "pending";
	}
}

/* The end of job j's last attempt as far as known at now. */
static int64_t
job_end(const struct state_job *j, int64_t now)
{
	if (j->started <= 0)
		return 0;
	if (j->finished >= j->started)
		return j->finished;
	if (j->status == STATE_JOB_RUNNING)
		return now > j->started ? now : j->started;
	return j->updated > j->started ? j->updated : j->started;
}

/* ------------------------------------------------------------- pieces */

static void
fmt_time(char *out, size_t size, int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t <= 0) {
		snprintf(out, size, "-");
		return;
	}
	gmtime_r(&tt, &tm);
	strftime(out, size, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

static void
card(struct buf *out, const char *label, const char *value, const char *note)
{
	S("<div class=\"card\"><div class=\"label\">");
	S(label);
	S("</div><div class=\"value\">");
	report_html_escape(out, value);
	S("</div>");
	if (note != NULL && note[0] != '\0') {
		S("<div class=\"note\">");
		report_html_escape(out, note);
		S("</div>");
	}
	S("</div>\n");
}

/* The x axis of a chart over [0, span] seconds at y. */
static void
time_axis(struct buf *out, double span, int y)
{
	char b[32];

	P("<line class=\"axis\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>",
	  SVG_LEFT, y, SVG_W - SVG_RIGHT, y);
	for (int k = 0; k <= 4; k++) {
		double x = SVG_LEFT + PLOT_W * k / 4.0;

		report_fmt_duration(b, sizeof(b), span * k / 4.0);
		P("<line class=\"tick\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" "
		  "y2=\"%d\"/><text x=\"%.1f\" y=\"%d\" text-anchor=\"%s\">+%s"
		  "</text>", x, y, x, y + 4, x, y + 16,
		  k == 0 ? "start" : k == 4 ? "end" : "middle", b);
	}
	S("\n");
}

static void
section_glance(struct buf *out, const struct report_data *d, double span)
{
	const struct state_run *r = &d->run;
	const struct sched_view *v = &d->view;
	size_t acc_done = 0, acc_failed = 0, counts[REPORT_REASON_COUNT];
	uint64_t failed_msgs = 0, skipped = 0;
	struct state_bodies bodies;
	char a[64], b[64], c[160];

	for (size_t i = 0; i < d->n_accounts; i++) {
		const char *st = report_account_status(&d->accounts[i]);

		acc_done += st[0] == 'd';
		acc_failed += strcmp(st, "failed") == 0;
		failed_msgs += d->accounts[i].failed_msgs;
		skipped += d->accounts[i].skipped;
	}
	report_reason_counts(d, counts);
	S("<section id=\"glance\"><h2>The run at a glance</h2>\n"
	  "<div class=\"cards\">\n");
	snprintf(a, sizeof(a), "%zu", d->n_accounts);
	snprintf(c, sizeof(c), "%zu done, %zu failed, %zu other", acc_done,
	         acc_failed, d->n_accounts - acc_done - acc_failed);
	card(out, "Accounts", a, c);
	snprintf(a, sizeof(a), "%" PRIu64, v->messages);
	snprintf(c, sizeof(c), "planned %" PRIu64 "; %" PRIu64 " already on the "
	         "target", v->est_messages, skipped);
	card(out, "Messages copied", a, c);
	report_fmt_bytes(a, sizeof(a), (double)v->bytes);
	report_fmt_bytes(b, sizeof(b), (double)v->est_bytes);
	snprintf(c, sizeof(c), "planned %s", b);
	card(out, "Data copied", a, c);
	report_fmt_duration(a, sizeof(a), span);
	fmt_time(b, sizeof(b), r->started);
	snprintf(c, sizeof(c), "from %s", b);
	card(out, "Duration", a, c);
	report_fmt_duration(a, sizeof(a), r->est_seconds);
	if (r->est_seconds > 0 && span > 0)
		snprintf(c, sizeof(c), "took %.0f%% of the estimate",
		         100 * span / r->est_seconds);
	else
		snprintf(c, sizeof(c), "no estimate");
	card(out, "Plan estimate", a, c);
	snprintf(a, sizeof(a), "%zu/%zu done", v->done, v->jobs);
	snprintf(c, sizeof(c), "%zu failed, %zu pending, %zu running; %u "
	         "workers", v->failed, v->pending, v->running, r->workers);
	card(out, "Jobs", a, c);
	snprintf(a, sizeof(a), "%zu", d->n_fl);
	snprintf(c, sizeof(c), "%" PRIu64 " messages refused, %zu folders",
	         failed_msgs, counts[REPORT_REASON_SOURCE_FOLDER] +
	         counts[REPORT_REASON_TARGET_FOLDER]);
	card(out, "Failures recorded", a, c);
	/* --bodies-from only */
	if (report_bodies_total(d, &bodies)) {
		struct buf note;

		buf_init(&note, 1024);
		sched_bodies_text(&note, &bodies);
		snprintf(a, sizeof(a), "%" PRIu64, bodies.spool);
		card(out, "Bodies from the Cyrus spool", a, buf_data(&note));
		buf_free(&note);
	}
	S("</div>\n");
	/* planned against copied, as two bars */
	if (v->est_messages > 0) {
		double f = (double)v->messages / (double)v->est_messages;

		P("<div class=\"bars\"><div class=\"row\"><span>messages: copied "
		  "%.0f%% of the plan</span><div class=\"track\"><div "
		  "class=\"fill\" style=\"width:%.1f%%\"></div></div></div>",
		  100 * f, f > 1 ? 100 : 100 * f);
		f = v->est_bytes > 0 ? (double)v->bytes / (double)v->est_bytes : 0;
		P("<div class=\"row\"><span>bytes: copied %.0f%% of the plan"
		  "</span><div class=\"track\"><div class=\"fill\" style=\""
		  "width:%.1f%%\"></div></div></div></div>\n", 100 * f,
		  f > 1 ? 100 : 100 * f);
	}
	S("</section>\n");
}

static void
section_timeline(struct buf *out, const struct report_data *d,
                 const struct hjob *hj, int64_t t0, double span)
{
	int64_t *start = xcalloc(d->n_jobs + 1, sizeof(*start));
	int64_t *end = xcalloc(d->n_jobs + 1, sizeof(*end));
	int *lane = xcalloc(d->n_jobs + 1, sizeof(*lane));
	unsigned lanes;
	int lane_h = 22, top = 8, height;
	size_t bars = 0;

	for (size_t i = 0; i < d->n_jobs; i++) {
		start[i] = hj[i].start;
		end[i] = hj[i].end;
	}
	lanes = report_assign_lanes(start, end, d->n_jobs, lane);
	height = top + (int)lanes * lane_h + 28;
	S("<section id=\"timeline\"><h2>Timeline</h2>\n");
	if (lanes == 0) {
		S("<p>No job has started.</p></section>\n");
		goto out;
	}
	P("<div class=\"chartbox\"><svg class=\"chart wide\" viewBox=\"0 0 %d "
	  "%d\" role=\"img\" aria-label=\"one lane per worker, one bar per "
	  "job\">\n", SVG_W, height);
	for (unsigned l = 0; l < lanes; l++)
		P("<text x=\"4\" y=\"%d\">lane %u</text>", top + (int)l * lane_h + 15,
		  l + 1);
	S("\n");
	for (size_t i = 0; i < d->n_jobs; i++) {
		const struct state_job *j = &d->jobs[i];
		double x, w;
		char b1[32], b2[32];

		if (lane[i] < 0)
			continue;
		x = SVG_LEFT + PLOT_W * (double)(start[i] - t0) / span;
		w = PLOT_W * (double)(end[i] - start[i]) / span;
		if (w < 2)
			w = 2;
		report_fmt_bytes(b1, sizeof(b1), (double)j->bytes);
		report_fmt_duration(b2, sizeof(b2), (double)(end[i] - start[i]));
		P("<rect class=\"bar %s\" data-job=\"%" PRId64 "\" x=\"%.1f\" "
		  "y=\"%d\" width=\"%.1f\" height=\"%d\" rx=\"2\"><title>",
		  hj[i].outcome, j->id, x, top + lane[i] * lane_h + 2, w,
		  lane_h - 4);
		report_html_escape(out, j->src_user);
		P(" part %u/%u: %s, %" PRIu64 " messages, %s in %s, attempt %u",
		  j->part, j->parts, hj[i].outcome, j->messages, b1, b2,
		  j->attempts);
		S("</title></rect>\n");
		bars++;
	}
	time_axis(out, span, top + (int)lanes * lane_h + 4);
	S("</svg></div>\n<p class=\"legend\"><span class=\"key done\"></span>done "
	  "<span class=\"key partial\"></span>done, messages refused "
	  "<span class=\"key failed\"></span>failed "
	  "<span class=\"key running\"></span>running "
	  "<span class=\"key pending\"></span>waiting for a retry</p>\n");
	P("<p class=\"foot\">%zu jobs in %u lanes. The state database does not "
	  "record which worker ran a job: lanes are assigned by interval "
	  "scheduling (a job goes to the first lane free at its start), so a "
	  "lane is a worker's slot, not a particular thread. A bar spans the "
	  "job's last attempt (times in whole seconds); earlier attempts of a "
	  "retried job are not drawn.</p>\n</section>\n", bars, lanes);
out:
	free(start);
	free(end);
	free(lane);
}

/* One bar chart of per-second rates over the buckets. */
static void
rate_chart(struct buf *out, const char *cls, const char *title,
           const double *rate, size_t n, double span, bool bytes)
{
	int top = 22, plot_h = 120;
	double peak = 0, bw = (double)PLOT_W / (double)n;
	char b[32];

	for (size_t k = 0; k < n; k++)
		if (rate[k] > peak)
			peak = rate[k];
	if (bytes)
		report_fmt_bytes(b, sizeof(b), peak);
	else
		snprintf(b, sizeof(b), "%.1f", peak);
	P("<div class=\"chartbox\"><svg class=\"chart wide %s\" viewBox=\"0 0 "
	  "%d %d\" role=\"img\" aria-label=\"%s\">\n<text x=\"%d\" y=\"14\" "
	  "class=\"ctitle\">%s, "
	  "peak %s%s</text>", cls, SVG_W, top + plot_h + 24, title, SVG_LEFT,
	  title, b, bytes ? "/s" : "/s");
	P("<line class=\"axis\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>",
	  SVG_LEFT, top, SVG_LEFT, top + plot_h);
	P("<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>", SVG_LEFT - 4,
	  top + 10, b);
	P("<text x=\"%d\" y=\"%d\" text-anchor=\"end\">0</text>\n", SVG_LEFT - 4,
	  top + plot_h);
	for (size_t k = 0; k < n && peak > 0; k++) {
		double h = plot_h * rate[k] / peak;

		if (rate[k] <= 0)
			continue;
		P("<rect class=\"rate\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
		  "height=\"%.1f\"><title>%.1f</title></rect>", SVG_LEFT + bw * k,
		  top + plot_h - h, bw > 2 ? bw - 1 : bw, h,
		  bytes ? rate[k] / 1e6 : rate[k]);
	}
	S("\n");
	time_axis(out, span, top + plot_h);
	S("</svg></div>\n");
}

static void
section_throughput(struct buf *out, const struct report_data *d,
                   const struct hjob *hj, int64_t t0, double span)
{
	size_t n = span < THROUGHPUT_BUCKETS ? (size_t)ceil(span) :
	           THROUGHPUT_BUCKETS;
	int64_t *start = xcalloc(d->n_jobs + 1, sizeof(*start));
	int64_t *end = xcalloc(d->n_jobs + 1, sizeof(*end));
	double *val = xcalloc(d->n_jobs + 1, sizeof(*val));
	double *rate = NULL, width;

	if (n == 0)
		n = 1;
	width = span / (double)n;
	rate = xcalloc(n, sizeof(*rate));
	for (size_t i = 0; i < d->n_jobs; i++) {
		start[i] = hj[i].start;
		end[i] = hj[i].end;
	}
	S("<section id=\"throughput\"><h2>Throughput</h2>\n");
	for (size_t i = 0; i < d->n_jobs; i++)
		val[i] = (double)d->jobs[i].messages;
	report_spread(start, end, val, d->n_jobs, t0, width, rate, n);
	for (size_t k = 0; k < n; k++)
		rate[k] /= width;
	rate_chart(out, "messages", "messages/s", rate, n, span, false);
	for (size_t i = 0; i < d->n_jobs; i++)
		val[i] = (double)d->jobs[i].bytes;
	report_spread(start, end, val, d->n_jobs, t0, width, rate, n);
	for (size_t k = 0; k < n; k++)
		rate[k] /= width;
	rate_chart(out, "bytes", "MB/s", rate, n, span, true);
	P("<p class=\"foot\">Derived, not measured: the state database keeps "
	  "per job only its totals and the start and end of its last attempt, "
	  "so each job's messages and bytes are spread evenly over that "
	  "interval and summed per bucket of %.1f s. Messages copied by "
	  "earlier attempts of a retried job fall into its last attempt."
	  "</p>\n</section>\n", width);
	free(start);
	free(end);
	free(val);
	free(rate);
}

/* A histogram of n values in HIST_BINS equal bins from 0 to the largest. */
static void
histogram(struct buf *out, const char *cls, const char *title,
          const double *v, size_t n, bool bytes)
{
	size_t count[HIST_BINS] = { 0 }, most = 0;
	double hi = 0, bw;
	int top = 24, plot_h = 110, w = 460, left = 8;
	double cw = (double)(w - 2 * left) / HIST_BINS;

	for (size_t i = 0; i < n; i++)
		if (v[i] > hi)
			hi = v[i];
	bw = hi > 0 ? hi / HIST_BINS : 1;
	for (size_t i = 0; i < n; i++) {
		size_t k = (size_t)(v[i] / bw);

		count[k < HIST_BINS ? k : HIST_BINS - 1]++;
	}
	for (size_t k = 0; k < HIST_BINS; k++)
		if (count[k] > most)
			most = count[k];
	P("<figure><svg class=\"chart hist %s\" viewBox=\"0 0 %d %d\" "
	  "role=\"img\" aria-label=\"%s\">\n<text x=\"%d\" y=\"14\" "
	  "class=\"ctitle\">%s</text>", cls, w, top + plot_h + 32, title, left,
	  title);
	for (size_t k = 0; k < HIST_BINS; k++) {
		double h = most > 0 ? plot_h * (double)count[k] / (double)most : 0;
		double x = left + cw * (double)k;
		char b[32];

		if (bytes)
			report_fmt_bytes(b, sizeof(b), bw * (double)(k + 1));
		else
			report_fmt_duration(b, sizeof(b), bw * (double)(k + 1));
		P("<rect class=\"hbar\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
		  "height=\"%.1f\"><title>%zu accounts up to %s</title></rect>",
		  x + 1, top + plot_h - h, cw - 2, h, count[k], b);
		if (count[k] > 0)
			P("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%zu"
			  "</text>", x + cw / 2, top + plot_h - h - 3, count[k]);
		if (k % 2 == 1)
			P("<text x=\"%.1f\" y=\"%d\" text-anchor=\"%s\">%s</text>",
			  x + cw, top + plot_h + 14,
			  k + 1 == HIST_BINS ? "end" : "middle", b);
		S("\n");
	}
	P("<line class=\"axis\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>",
	  left, top + plot_h, w - left, top + plot_h);
	S("</svg></figure>\n");
}

static void
section_distribution(struct buf *out, const struct report_data *d)
{
	double *size = xcalloc(d->n_accounts + 1, sizeof(*size));
	double *secs = xcalloc(d->n_accounts + 1, sizeof(*secs));

	for (size_t i = 0; i < d->n_accounts; i++) {
		/* the account's size: what was copied plus what was already
		 * there is not known in bytes; the plan's estimate is */
		size[i] = (double)(d->accounts[i].est_bytes > d->accounts[i].bytes ?
		                   d->accounts[i].est_bytes : d->accounts[i].bytes);
		secs[i] = d->accounts[i].seconds;
	}
	S("<section id=\"distribution\"><h2>Accounts by size and by time</h2>\n"
	  "<div class=\"two\">\n");
	histogram(out, "sizes", "account size (bytes)", size, d->n_accounts, true);
	histogram(out, "times", "time per account", secs, d->n_accounts, false);
	S("</div>\n<p class=\"foot\">Ten equal bins from 0 to the largest; a "
	  "label is a bin's upper end. An account's size is the plan's "
	  "estimate (or what was copied, if more); its time is the sum over "
	  "its jobs and their attempts.</p>\n</section>\n");
	free(size);
	free(secs);
}

static void
section_accounts(struct buf *out, const struct report_data *d)
{
	S("<section id=\"accounts\"><h2>Accounts</h2>\n<p class=\"hint "
	  "noprint\">Click a column's title to sort by it.</p>\n<div "
	  "class=\"scroll\"><table class=\"sortable\" id=\"account-table\">"
	  "<thead><tr><th data-type=\"s\">account</th><th data-type=\"s\">"
	  "status</th><th data-type=\"n\">messages</th><th data-type=\"n\">"
	  "size</th><th data-type=\"n\">folders</th><th data-type=\"n\">time"
	  "</th><th data-type=\"n\">attempts</th><th data-type=\"n\" "
	  "class=\"txt\">errors"
	  "</th></tr></thead>\n<tbody>\n");
	for (size_t i = 0; i < d->n_accounts; i++) {
		const struct report_account *a = &d->accounts[i];
		size_t counts[REPORT_REASON_COUNT] = { 0 }, nerr = 0;
		const char *st = report_account_status(a);
		char b1[32], b2[32];
		bool first = true;

		for (size_t k = 0; k < d->n_fl; k++)
			if (strcmp(d->fl[k].account, a->account) == 0) {
				counts[report_failure_reason(&d->fl[k])]++;
				nerr++;
			}
		report_fmt_bytes(b1, sizeof(b1), (double)a->bytes);
		report_fmt_duration(b2, sizeof(b2), a->seconds);
		S("<tr data-account=\"");
		report_html_escape(out, a->src_user);
		S("\"><td>");
		report_html_escape(out, a->src_user);
		if (strcmp(a->src_user, a->dst_user) != 0) {
			S(" &rarr; ");
			report_html_escape(out, a->dst_user);
		}
		P("</td><td class=\"st %s\">%s</td>", strcmp(st, "done*") == 0 ?
		  "partial" : st, st);
		P("<td data-v=\"%" PRIu64 "\">%" PRIu64 "</td>", a->messages,
		  a->messages);
		P("<td data-v=\"%" PRIu64 "\">%s</td>", a->bytes, b1);
		if (a->folders >= 0)
			P("<td data-v=\"%ld\">%ld</td>", a->folders, a->folders);
		else
			S("<td data-v=\"-1\">?</td>");
		P("<td data-v=\"%.3f\">%s</td>", a->seconds, b2);
		P("<td data-v=\"%u\">%u</td>", a->attempts, a->attempts);
		P("<td class=\"txt\" data-v=\"%zu\">", nerr + (a->errors != NULL));
		for (size_t r = 0; r < REPORT_REASON_COUNT; r++) {
			if (counts[r] == 0)
				continue;
			P("%s%s %zu", first ? "" : ", ",
			  report_reason_name((enum report_reason)r), counts[r]);
			first = false;
		}
		if (a->errors != NULL) {
			S(first ? "" : "; ");
			S("<span class=\"joberr\">");
			report_html_escape(out, a->errors);
			S("</span>");
		}
		S("</td></tr>\n");
	}
	S("</tbody></table></div>\n</section>\n");
}

static void
section_failures(struct buf *out, const struct report_data *d)
{
	size_t counts[REPORT_REASON_COUNT], job_errors = 0;

	report_reason_counts(d, counts);
	for (size_t i = 0; i < d->n_jobs; i++)
		job_errors += d->jobs[i].status != STATE_JOB_DONE &&
		              d->jobs[i].error[0] != '\0';
	S("<section id=\"failures\"><h2>Failures</h2>\n");
	if (d->n_fl == 0 && job_errors == 0)
		S("<p>No failure recorded.</p>\n");
	if (job_errors > 0) {
		P("<h3>jobs that did not finish <span class=\"count\">(%zu)</span>"
		  "</h3>\n<div class=\"scroll\"><table class=\"fail\"><thead><tr>"
		  "<th>account</th><th>part</th><th>status</th><th>attempts</th>"
		  "<th>error</th></tr></thead><tbody>\n", job_errors);
		for (size_t i = 0; i < d->n_jobs; i++) {
			const struct state_job *j = &d->jobs[i];

			if (j->status == STATE_JOB_DONE || j->error[0] == '\0')
				continue;
			S("<tr class=\"joberror\"><td>");
			report_html_escape(out, j->src_user);
			P("</td><td>%u/%u</td><td>%s</td><td>%u</td><td>", j->part,
			  j->parts, state_job_status_name(j->status), j->attempts);
			report_html_escape(out, j->error);
			S("</td></tr>\n");
		}
		S("</tbody></table></div>\n");
	}
	for (size_t r = 0; r < REPORT_REASON_COUNT; r++) {
		const char *name = report_reason_name((enum report_reason)r);

		if (counts[r] == 0)
			continue;
		P("<h3 id=\"reason-%s\">%s <span class=\"count\">(%zu)</span></h3>\n"
		  "<div class=\"scroll\"><table class=\"fail\"><thead><tr><th>"
		  "account</th><th>folder</th><th>UID</th><th>attempts</th><th>"
		  "last</th><th>text</th></tr></thead><tbody>\n", name,
		  report_reason_label((enum report_reason)r), counts[r]);
		for (size_t i = 0; i < d->n_fl; i++) {
			const struct state_failure *f = &d->fl[i];
			char when[40];

			if (report_failure_reason(f) != r)
				continue;
			fmt_time(when, sizeof(when), f->when);
			P("<tr class=\"failure\" data-reason=\"%s\"><td>", name);
			for (size_t k = 0; k < d->n_accounts; k++)
				if (strcmp(d->accounts[k].account, f->account) == 0) {
					report_html_escape(out, d->accounts[k].src_user);
					break;
				}
			S("</td><td>");
			report_html_escape(out, f->folder[0] ? f->folder :
			                   "(session)");
			if (f->src_uid != 0)
				P("</td><td>%" PRIu32, f->src_uid);
			else
				S("</td><td>");
			P("</td><td>%u</td><td>%s</td><td>", f->attempts, when);
			report_html_escape(out, f->reason);
			S("</td></tr>\n");
		}
		S("</tbody></table></div>\n");
	}
	S("<p class=\"foot\">A failure's reason is read from its scope and its "
	  "text as stored (the state database keeps no reason code): see "
	  "docs/report.md. A failure stays recorded until a later run copies "
	  "the item.</p>\n</section>\n");
}

static const char page_style[] =
	":root{--done:#2e7d32;--partial:#e0a100;--failed:#c62828;"
	"--running:#1565c0;--pending:#9e9e9e;--ink:#1d232a;--muted:#5f6b76;"
	"--line:#d5dbe1}\n"
	"*{box-sizing:border-box}\n"
	"body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,"
	"sans-serif;color:var(--ink);margin:0 auto;max-width:1100px;"
	"padding:16px}\n"
	"h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.2em;margin:1.4em 0 "
	".5em;border-bottom:1px solid var(--line);padding-bottom:.2em}\n"
	"h3{font-size:1em;margin:1em 0 .3em}.count{color:var(--muted);"
	"font-weight:normal}\n"
	".sub{color:var(--muted);margin:.2em 0;overflow-wrap:anywhere}\n"
	".status{display:inline-block;padding:0 .5em;border-radius:4px;"
	"color:#fff;background:var(--pending)}\n"
	".status.done{background:var(--done)}.status.failed,.status.stopped"
	"{background:var(--failed)}.status.running{background:var(--running)}"
	"\n"
	".cards{display:grid;grid-template-columns:repeat(auto-fill,"
	"minmax(150px,1fr));gap:10px}\n"
	".card{border:1px solid var(--line);border-radius:6px;padding:8px 10px}"
	"\n"
	".card .label{color:var(--muted);font-size:.85em}.card .value{font-size:"
	"1.35em;font-weight:600}.card .note{color:var(--muted);font-size:.8em}"
	"\n"
	".bars{margin-top:10px}.bars .row{margin:4px 0}.track{height:8px;"
	"background:#eceff1;border-radius:4px}.fill{height:8px;background:"
	"var(--done);border-radius:4px}\n"
	"svg.chart{width:100%;height:auto;display:block;font-size:11px;"
	"fill:var(--ink)}\n"
	".axis{stroke:var(--muted);stroke-width:1}.tick{stroke:var(--muted)}\n"
	".ctitle{font-weight:600;font-size:12px}\n"
	".bar.done,.key.done{fill:var(--done);background:var(--done)}\n"
	".bar.partial,.key.partial{fill:var(--partial);background:"
	"var(--partial)}\n"
	".bar.failed,.key.failed{fill:var(--failed);background:var(--failed)}\n"
	".bar.running,.key.running{fill:var(--running);background:"
	"var(--running)}\n"
	".bar.pending,.key.pending{fill:var(--pending);background:"
	"var(--pending)}\n"
	".key{display:inline-block;width:12px;height:12px;border-radius:2px;"
	"vertical-align:-1px;margin:0 4px 0 10px}\n"
	".messages .rate{fill:#1565c0}.bytes .rate{fill:#6a1b9a}"
	".hbar{fill:#00838f}\n"
	".two{display:grid;grid-template-columns:1fr 1fr;gap:16px}"
	"figure{margin:0}\n"
	".foot,.legend,.hint{color:var(--muted);font-size:.85em}\n"
	".scroll{overflow-x:auto}\n"
	"table{border-collapse:collapse;width:100%;font-size:.9em}\n"
	"th,td{border-bottom:1px solid var(--line);padding:4px 6px;"
	"text-align:left;vertical-align:top}\n"
	"td[data-v]{text-align:right;font-variant-numeric:tabular-nums;"
	"white-space:nowrap}td.txt{text-align:left;white-space:normal;min-width:14em}\n"
	"table.sortable th{cursor:pointer;user-select:none;white-space:nowrap}\n"
	"th[data-type=n]{text-align:right}th.txt{text-align:left}\n"
	"th[data-dir=a]::after{content:' \\25b2'}th[data-dir=d]::after"
	"{content:' \\25bc'}\n"
	"td.st.done{color:var(--done)}td.st.partial{color:#a86f00}"
	"td.st.failed{color:var(--failed)}\n"
	"table.fail td:last-child{overflow-wrap:anywhere}\n"
	".chartbox{overflow-x:auto}\n"
	"@media (max-width:640px){body{padding:8px;font-size:14px}"
	".two{grid-template-columns:1fr}.cards{grid-template-columns:1fr 1fr}"
	"svg.chart.wide{min-width:720px}svg.chart.wide text{font-size:14px}"
	"svg.chart.wide text.ctitle{font-size:15px}}\n"
	"@media print{body{max-width:none;font-size:10pt}.noprint{display:none}"
	"section{break-inside:avoid-page}table{break-inside:auto}"
	"tr{break-inside:avoid}.scroll{overflow:visible}"
	"*{-webkit-print-color-adjust:exact;print-color-adjust:exact}}\n";

/* Sorts the accounts table by a clicked column: numbers by data-v. */
static const char page_script[] =
	"document.querySelectorAll('table.sortable th').forEach(function(th){"
	"th.addEventListener('click',function(){"
	"var tb=th.closest('table').tBodies[0],i=th.cellIndex,"
	"num=th.dataset.type==='n',dir=th.dataset.dir==='a'?-1:1;"
	"th.parentNode.querySelectorAll('th').forEach(function(h){"
	"h.removeAttribute('data-dir')});th.dataset.dir=dir>0?'a':'d';"
	"Array.from(tb.rows).sort(function(a,b){"
	"var x=a.cells[i],y=b.cells[i];"
	"return dir*(num?x.dataset.v-y.dataset.v:"
	"x.textContent.localeCompare(y.textContent))})"
	".forEach(function(r){tb.appendChild(r)})})});\n";

void
report_html(struct buf *out, const struct report_data *d, int64_t now)
{
	const struct state_run *r = &d->run;
	struct hjob *hj = xcalloc(d->n_jobs + 1, sizeof(*hj));
	int64_t t0 = r->started, t1 = r->finished;
	double span;
	char b1[40], b2[40];

	for (size_t i = 0; i < d->n_jobs; i++) {
		hj[i].start = d->jobs[i].started;
		hj[i].end = job_end(&d->jobs[i], now);
		hj[i].outcome = job_outcome(&d->jobs[i]);
		if (hj[i].start > 0 && (t0 <= 0 || hj[i].start < t0))
			t0 = hj[i].start;
		if (hj[i].end > t1)
			t1 = hj[i].end;
	}
	if (t1 <= 0 || strcmp(r->status, "running") == 0)
		t1 = t1 > now ? t1 : now;
	span = t1 > t0 ? (double)(t1 - t0) : 1;

	P("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
	  "<meta name=\"viewport\" content=\"width=device-width,"
	  "initial-scale=1\">\n<title>imapferry run %" PRId64 "</title>\n"
	  "<style>\n%s</style></head>\n<body>\n<header><h1>imapferry: run %"
	  PRId64 " <span class=\"status ", r->id, page_style, r->id);
	report_html_escape(out, r->status);
	S("\">");
	report_html_escape(out, r->status);
	S("</span></h1>\n<p class=\"sub\">");
	report_html_escape(out, r->src);
	S(" &rarr; ");
	report_html_escape(out, r->dst);
	fmt_time(b1, sizeof(b1), t0);
	fmt_time(b2, sizeof(b2), r->finished);
	P("</p>\n<p class=\"sub\">started %s, finished %s</p>\n", b1, b2);
	if (r->error != NULL && r->error[0] != '\0') {
		S("<p class=\"sub\">");
		report_html_escape(out, r->error);
		S("</p>\n");
	}
	S("</header>\n<main>\n");
	section_glance(out, d, span);
	section_timeline(out, d, hj, t0, span);
	section_throughput(out, d, hj, t0, span);
	section_distribution(out, d);
	section_accounts(out, d);
	section_failures(out, d);
	S("<section id=\"verification\"><h2>Verification</h2>\n<p>No "
	  "verification recorded: <code>imapferry verify</code> does not store "
	  "its results in the state database; run it per account and keep its "
	  "output.</p>\n</section>\n</main>\n");
	fmt_time(b1, sizeof(b1), now);
	P("<footer class=\"foot\"><p>Written by imapferry at %s from the state "
	  "database. Stored: the run, its jobs (status, attempts, messages, "
	  "bytes, time, start and end of the last attempt) and the failures. "
	  "Derived here: the lanes of the timeline, the throughput curve, "
	  "the histograms and the failure reasons.</p></footer>\n", b1);
	P("<script>\n%s</script>\n</body></html>\n", page_script);
	free(hj);
}

int
report_html_write(const char *path, const struct report_data *d, int64_t now,
                  const char **error_r)
{
	struct buf out;
	int ret;

	buf_init(&out, SIZE_MAX / 2);
	report_html(&out, d, now);
	ret = report_file_write(path, buf_data(&out), buf_len(&out), error_r);
	buf_free(&out);
	return ret;
}
