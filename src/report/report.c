/* report.c: plan, progress, summary and report rendering (report.h). */
#include "report.h"

#include "inventory.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------- units */

void
report_fmt_bytes(char *out, size_t size, double v)
{
	static const char *const units[] = { "B", "KB", "MB", "GB", "TB" };
	size_t u = 0;

	while (v >= 1000 && u + 1 < N_ELEMENTS(units)) {
		v /= 1000;
		u++;
	}
	snprintf(out, size, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
}

void
report_fmt_duration(char *out, size_t size, double s)
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

/* -------------------------------------------------------------- plan */

static void
cost_json(struct json *j, const struct sched_cost *c)
{
	sched_cost_json(j, c);
}

/* The accounts' folders as plan --inventory reads them back. */
static void
inventory_json(struct json *j, const struct report_plan *rp)
{
	json_arr_begin(j);
	for (size_t i = 0; i < rp->plan->n_accounts; i++) {
		const struct sched_account_est *e = &rp->est[i];
		char sep[2] = { e->separator, '\0' };

		json_obj_begin(j);
		json_key(j, "account"); json_str(j, rp->accounts[i].src_user);
		if (e->prefix != NULL) {
			json_key(j, "prefix"); json_str(j, e->prefix);
		}
		if (e->separator != '\0') {
			json_key(j, "separator"); json_str(j, sep);
		}
		if (e->error != NULL) {
			json_key(j, "error"); json_str(j, e->error);
		}
		json_key(j, "folders");
		json_arr_begin(j);
		for (size_t k = 0; k < e->n_folders; k++) {
			const struct sched_folder_est *f = &e->folders[k];

			json_obj_begin(j);
			json_key(j, "name"); json_str(j, f->name);
			json_key(j, "messages"); json_u64(j, f->messages);
			json_key(j, "bytes"); json_u64(j, f->bytes);
			if (f->uidnext != 0) {
				json_key(j, "uidnext"); json_u64(j, f->uidnext);
			}
			json_obj_end(j);
		}
		json_arr_end(j);
		json_obj_end(j);
	}
	json_arr_end(j);
}

static void
job_json(struct json *j, const struct report_plan *rp, size_t i)
{
	const struct sched_job *jb = &rp->plan->jobs[i];
	const struct sched_account *a = &rp->accounts[jb->account];

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
	if (rp->est[jb->account].error != NULL) {
		json_key(j, "error");
		json_str(j, rp->est[jb->account].error);
	}
	json_obj_end(j);
}

void
report_plan_json(struct json *j, const struct report_plan *rp, bool with_jobs)
{
	const struct sched_plan *p = rp->plan;
	double est;

	json_obj_begin(j);
	json_key(j, "accounts"); json_u64(j, p->n_accounts);
	json_key(j, "workers"); json_u64(j, p->workers);
	json_key(j, "max_concurrency"); json_u64(j, rp->max_conc);
	json_key(j, "messages"); json_u64(j, p->messages);
	json_key(j, "bytes"); json_u64(j, p->bytes);
	json_key(j, "total_work_s"); json_double(j, p->total_seconds);
	json_key(j, "split_threshold_s"); json_double(j, p->threshold);
	/* with --machines: the estimate of all of them */
	est = rp->machines > 0 ? rp->machine_seconds[rp->machines] :
	    p->predicted[p->workers];
	json_key(j, "estimated_seconds"); json_double(j, est);
	json_key(j, "estimated_end"); json_i64(j, rp->now + (int64_t)est);
	json_key(j, "predicted_seconds");
	json_arr_begin(j);
	for (unsigned k = 1; k <= p->workers; k++) {
		json_obj_begin(j);
		json_key(j, "workers"); json_u64(j, k);
		json_key(j, "seconds"); json_double(j, p->predicted[k]);
		json_obj_end(j);
	}
	json_arr_end(j);
	json_key(j, "cost"); cost_json(j, rp->cost);
	json_key(j, "notes");
	json_arr_begin(j);
	for (size_t i = 0; i < p->n_notes; i++)
		json_str(j, p->notes[i]);
	json_arr_end(j);
	if (rp->machines > 0) {
		json_key(j, "machine_workers"); json_u64(j, rp->machine_workers);
		json_key(j, "source_max_mb_s"); json_double(j, rp->src_rate / 1e6);
		json_key(j, "final_inventory"); json_bool(j, rp->final_inventory);
		json_key(j, "machines");
		json_arr_begin(j);
		for (unsigned m = 1; m <= rp->machines; m++) {
			json_obj_begin(j);
			json_key(j, "machines"); json_u64(j, m);
			json_key(j, "workers"); json_u64(j, m * rp->machine_workers);
			json_key(j, "seconds"); json_double(j, rp->machine_seconds[m]);
			json_key(j, "bound"); json_str(j, rp->machine_bound[m]);
			json_obj_end(j);
		}
		json_arr_end(j);
	}
	if (with_jobs) {
		json_key(j, "jobs");
		json_arr_begin(j);
		for (size_t i = 0; i < p->n_jobs; i++)
			job_json(j, rp, i);
		json_arr_end(j);
		json_key(j, "inventory");
		inventory_json(j, rp);
	}
	json_obj_end(j);
}

/* The "folders" column of a job. */
static void
job_folders(char *out, size_t size, const struct report_plan *rp,
            const struct sched_job *jb)
{
	if (rp->est[jb->account].error != NULL)
		snprintf(out, size, "(inventory failed)");
	else if (jb->rest)
		snprintf(out, size, "all but %zu", jb->n_exclude);
	else if (jb->n_folders == 0)
		snprintf(out, size, "all (%u)", jb->est_folders);
	else if (jb->uid_lo != 0 || jb->uid_hi != 0)
		snprintf(out, size, "%.12s UID %u:%s", jb->folders[0], jb->uid_lo,
		         jb->uid_hi == UINT32_MAX ? "*" : "..");
	else if (jb->n_folders == 1)
		snprintf(out, size, "%.24s", jb->folders[0]);
	else
		snprintf(out, size, "%zu folders", jb->n_folders);
}

static void report_plan_machines_text(struct buf *out,
                                      const struct report_plan *rp);

void
report_plan_text(struct buf *out, const struct report_plan *rp)
{
	const struct sched_plan *p = rp->plan;
	const struct sched_cost *cost = rp->cost;
	char b1[32], b2[32], b3[32];
	time_t end;
	struct tm tm;

	ignore_result(buf_printf(out, "%-5s %-28s %-6s %-24s %9s %10s %9s\n",
	    "order", "account", "part", "folders", "messages", "size", "est"));
	for (size_t i = 0; i < p->n_jobs; i++) {
		const struct sched_job *jb = &p->jobs[i];
		char part[16], folders[64];

		snprintf(part, sizeof(part), "%u/%u", jb->part, jb->parts);
		job_folders(folders, sizeof(folders), rp, jb);
		report_fmt_bytes(b1, sizeof(b1), (double)jb->est_bytes);
		report_fmt_duration(b2, sizeof(b2), jb->est_seconds);
		ignore_result(buf_printf(out, "%-5zu %-28.28s %-6s %-24s %9" PRIu64
		    " %10s %9s\n", i + 1, rp->accounts[jb->account].src_user, part,
		    folders, jb->est_messages, b1, b2));
	}
	for (size_t i = 0; i < p->n_notes; i++)
		ignore_result(buf_printf(out, "note: %s\n", p->notes[i]));
	report_fmt_bytes(b1, sizeof(b1), (double)p->bytes);
	report_fmt_duration(b2, sizeof(b2), p->total_seconds);
	ignore_result(buf_printf(out, "\n%zu accounts, %zu jobs, %" PRIu64
	    " messages, %s; %s of work; split above %.1f s\n", p->n_accounts,
	    p->n_jobs, p->messages, b1, b2, p->threshold));
	report_fmt_bytes(b1, sizeof(b1), cost->avg_message_size);
	ignore_result(buf_printf(out, "cost model (%s): %.3f ms/message + %.2f "
	    "ms/MB, %.0f ms/folder (%.1f ms STATUS), %.0f ms/account; average "
	    "message %s\n",
	    cost->calibrated ? "measured" : "defaults", cost->per_message * 1e3,
	    cost->per_byte * 1e9, cost->per_folder * 1e3, cost->per_status * 1e3,
	    cost->per_account * 1e3, b1));
	if (cost->calibrated) {
		report_fmt_bytes(b1, sizeof(b1), (double)cost->sample_bytes);
		ignore_result(buf_printf(out, "  sample: %u messages, %s fetched "
		    "in %.2f s", cost->sample_messages, b1, cost->sample_seconds));
		if (cost->par_sessions > 1)
			ignore_result(buf_printf(out, "; %u sessions at once: %.2fx "
			    "one session", cost->par_sessions, cost->par_speedup));
		ignore_result(buf_append_str(out, "\n"));
	}
	if (cost->target_probed)
		ignore_result(buf_printf(out, "  target APPEND: %.3f ms/message + "
		    "%.2f ms/MB (a job costs the slower side)\n",
		    cost->dst_per_message * 1e3, cost->dst_per_byte * 1e9));
	if (rp->machines > 0) {
		/* the estimate per machine count instead of per worker */
		report_plan_machines_text(out, rp);
		return;
	}
	ignore_result(buf_append_str(out, "predicted time:"));
	for (unsigned k = 1; k <= p->workers; k++) {
		report_fmt_duration(b3, sizeof(b3), p->predicted[k]);
		ignore_result(buf_printf(out, "%s %u worker%s %s", k > 1 ? "," : "",
		    k, k > 1 ? "s" : "", b3));
	}
	end = (time_t)rp->now + (time_t)p->predicted[p->workers];
	localtime_r(&end, &tm);
	strftime(b1, sizeof(b1), "%Y-%m-%d %H:%M", &tm);
	report_fmt_duration(b3, sizeof(b3), rp->plan_seconds);
	ignore_result(buf_printf(out, "\nwith %u workers (at most %u at once by "
	    "the connection caps): about %.0f s, ending about %s (planning took "
	    "%s)\n", p->workers, rp->max_conc, p->predicted[p->workers], b1, b3));
}

static void
report_plan_machines_text(struct buf *out, const struct report_plan *rp)
{
	char b3[32];

	ignore_result(buf_printf(out, "%s\n", rp->final_inventory ?
	    "final pass: the inventory lists the new mail; a folder without "
	    "any costs one STATUS" : "estimate per machine count (one shared queue):"));
	if (rp->src_rate > 0)
		ignore_result(buf_printf(out, "source limit: %.0f MB/s in all\n",
		                         rp->src_rate / 1e6));
	for (unsigned m = 1; m <= rp->machines; m++) {
		report_fmt_duration(b3, sizeof(b3), rp->machine_seconds[m]);
		ignore_result(buf_printf(out, "%u machine%s x %u workers: %s "
		    "(%.0f s; limited by %s)\n", m, m > 1 ? "s" : "",
		    rp->machine_workers, b3, rp->machine_seconds[m],
		    rp->machine_bound[m]));
	}
}

/* ----------------------------------------------------------- display */

void
report_bar(struct buf *out, double fraction, unsigned width)
{
	unsigned fill = (unsigned)(fraction * width + 0.5);

	if (fill > width)
		fill = width;
	ignore_result(buf_append(out, "[", 1));
	for (unsigned i = 0; i < width; i++)
		ignore_result(buf_append(out, i < fill ? "#" : ".", 1));
	ignore_result(buf_append(out, "]", 1));
}

void
report_view_overall(struct buf *out, const struct sched_view *v,
                    const char *sep)
{
	char bb[32], be[32], br[32], eta[32], el[32];

	report_fmt_bytes(bb, sizeof(bb), (double)v->bytes);
	report_fmt_bytes(be, sizeof(be), (double)v->est_bytes);
	report_fmt_bytes(br, sizeof(br), v->rate_bytes);
	report_fmt_duration(eta, sizeof(eta), v->eta_seconds);
	report_fmt_duration(el, sizeof(el), v->elapsed);
	ignore_result(buf_printf(out, "%3.0f%% %" PRIu64 "/%" PRIu64 " messages, "
	    "%s/%s%s%.0f msg/s, %s/s, elapsed %s, ETA %s; jobs: %zu done, %zu "
	    "running, %zu pending, %zu failed", v->fraction * 100, v->messages,
	    v->est_messages, bb, be, sep, v->rate_messages, br, el, eta, v->done,
	    v->running, v->pending, v->failed));
}

void
report_view_job(struct buf *out, const struct sched_view_job *a)
{
	char bb[32], el[32], part[16];

	report_fmt_bytes(bb, sizeof(bb), (double)a->bytes);
	report_fmt_duration(el, sizeof(el), a->seconds);
	snprintf(part, sizeof(part), "%u/%u", a->part, a->parts);
	ignore_result(buf_printf(out, "  %-28.28s %-5s %7" PRIu64 "/%-7" PRIu64
	    " msgs %10s %7s", a->src_user, part, a->messages, a->est_messages,
	    bb, el));
	if (a->attempts > 1)
		ignore_result(buf_printf(out, "  attempt %u", a->attempts));
}

/* Appends line cut to width columns (ASCII; a wrapped line would break
 * the redraw, which counts lines) and a newline. */
static void
append_cut(struct buf *out, const char *line, size_t len, unsigned width)
{
	if (width > 1 && len > width - 1)
		len = width - 1;
	ignore_result(buf_append(out, line, len));
	ignore_result(buf_append(out, "\n", 1));
}

void
report_display_render(struct report_display *d, const struct sched_view *v,
                      bool final, double now, unsigned width, struct buf *out)
{
	struct buf line;
	const char *text, *nl;

	if (d->mode == REPORT_PROGRESS_NONE || d->mode == REPORT_PROGRESS_AUTO)
		return;
	if (d->mode == REPORT_PROGRESS_PLAIN) {
		if (!final && now - d->last_plain < 10)
			return;
		d->last_plain = now;
		ignore_result(buf_append_str(out, "progress: "));
		report_view_overall(out, v, ", ");
		ignore_result(buf_append_str(out, "\n"));
		return;
	}
	/* tty: move up over the last drawing, clear, draw again */
	if (d->lines > 0)
		ignore_result(buf_printf(out, "\033[%uA\r\033[J", d->lines));
	d->lines = 0;
	buf_init(&line, 1 << 16);
	report_bar(&line, v->fraction, width >= 100 ? 40 : 20);
	ignore_result(buf_append_str(&line, " "));
	report_view_overall(&line, v, "\n  ");
	text = buf_data(&line);
	nl = strchr(text, '\n');
	append_cut(out, text, (size_t)(nl - text), width);
	append_cut(out, nl + 1, strlen(nl + 1), width);
	d->lines += 2;
	for (size_t i = 0; i < v->n_active && i < 40; i++) {
		buf_reset(&line);
		report_view_job(&line, &v->active[i]);
		append_cut(out, buf_data(&line), buf_len(&line), width);
		d->lines++;
	}
	buf_free(&line);
}

/* ----------------------------------------------------------- reasons */

static const struct {
	const char *name, *label;
} reason_names[REPORT_REASON_COUNT] = {
	[REPORT_REASON_REFUSED] = { "refused-by-target", "refused by the target" },
	[REPORT_REASON_TOO_LARGE] = { "too-large", "too large for the target" },
	[REPORT_REASON_OVER_QUOTA] = { "over-quota", "over quota on the target" },
	[REPORT_REASON_UID_CONFLICT] = { "uid-conflict",
	                                 "cannot keep its UID" },
	[REPORT_REASON_VANISHED] = { "source-vanished",
	                             "vanished from the source" },
	[REPORT_REASON_SOURCE_FOLDER] = { "source-folder-failed",
	                                  "source folder failed" },
	[REPORT_REASON_TARGET_FOLDER] = { "target-folder-failed",
	                                  "target folder failed" },
	[REPORT_REASON_SESSION] = { "session", "connection (session)" },
	[REPORT_REASON_RUN] = { "run", "whole run" },
};

/* True if s contains word, ASCII case-insensitively. */
static bool
has_word(const char *s, const char *word)
{
	size_t n = strlen(word);

	for (; *s != '\0'; s++)
		if (str_ieqn(s, word, n))
			return true;
	return false;
}

/* True if s contains any of the NULL-terminated words. */
static bool
has_any(const char *s, const char *const *words)
{
	for (; *words != NULL; words++)
		if (has_word(s, *words))
			return true;
	return false;
}

enum report_reason
report_failure_reason(const struct state_failure *f)
{
	/* RFC 5530 response codes first (as the target sent them), then the
	 * engine's own texts (src/sync/pass.c, target-*.c) */
	static const char *const too_large[] = {
		"[TOOBIG]", "too large", "too big", "APPENDLIMIT", "exceeds",
		"[LIMIT]", NULL,
	};
	static const char *const quota[] = { "[OVERQUOTA]", "quota", NULL };
	static const char *const uid[] = {
		"cannot keep its UID", "holds another message", NULL,
	};
	static const char *const vanished[] = {
		"vanished", "[EXPUNGEISSUED]", "[NONEXISTENT]", "no longer exists",
		"expunged", NULL,
	};
	static const char *const source[] = {
		"on the source", "source:", NULL,
	};
	const char *t = f->reason != NULL ? f->reason : "";

	switch (f->scope) {
	case STATE_SCOPE_MESSAGE:
		if (has_any(t, too_large))
			return REPORT_REASON_TOO_LARGE;
		if (has_any(t, quota))
			return REPORT_REASON_OVER_QUOTA;
		if (has_any(t, uid))
			return REPORT_REASON_UID_CONFLICT;
		if (has_any(t, vanished))
			return REPORT_REASON_VANISHED;
		return REPORT_REASON_REFUSED;
	case STATE_SCOPE_FOLDER:
		if (has_any(t, vanished))
			return REPORT_REASON_VANISHED;
		if (has_any(t, source))
			return REPORT_REASON_SOURCE_FOLDER;
		return REPORT_REASON_TARGET_FOLDER;
	case STATE_SCOPE_SESSION:
		return REPORT_REASON_SESSION;
	default:
		return REPORT_REASON_RUN;
	}
}

const char *
report_reason_name(enum report_reason r)
{
	return (size_t)r < REPORT_REASON_COUNT ? reason_names[r].name : "run";
}

const char *
report_reason_label(enum report_reason r)
{
	return (size_t)r < REPORT_REASON_COUNT ? reason_names[r].label :
	       "whole run";
}

const char *
report_scope_name(int scope)
{
	static const char *const scopes[] = {
		"message", "folder", "session", "run",
	};

	return scope >= 0 && (size_t)scope < N_ELEMENTS(scopes) ?
	       scopes[scope] : "run";
}

void
report_reason_counts(const struct report_data *d,
                     size_t counts[REPORT_REASON_COUNT])
{
	memset(counts, 0, REPORT_REASON_COUNT * sizeof(counts[0]));
	for (size_t i = 0; i < d->n_fl; i++)
		counts[report_failure_reason(&d->fl[i])]++;
}

/* The src_user of account key, or the key. */
static const char *
account_user(const struct report_data *d, const char *key)
{
	for (size_t i = 0; i < d->n_accounts; i++)
		if (strcmp(d->accounts[i].account, key) == 0)
			return d->accounts[i].src_user;
	return key;
}

void
report_reasons_text(struct buf *out, const struct report_data *d,
                    size_t max_each)
{
	size_t counts[REPORT_REASON_COUNT];

	if (d->n_fl == 0)
		return;
	report_reason_counts(d, counts);
	ignore_result(buf_append_str(out, "failures by reason:\n"));
	for (size_t r = 0; r < REPORT_REASON_COUNT; r++) {
		size_t shown = 0;

		if (counts[r] == 0)
			continue;
		ignore_result(buf_printf(out, "  %s: %zu\n",
		    report_reason_name((enum report_reason)r), counts[r]));
		for (size_t i = 0; i < d->n_fl; i++) {
			const struct state_failure *f = &d->fl[i];

			if (report_failure_reason(f) != r)
				continue;
			if (max_each > 0 && shown++ == max_each) {
				ignore_result(buf_printf(out, "    ... %zu more (see "
				    "--report)\n", counts[r] - max_each));
				break;
			}
			ignore_result(buf_printf(out, "    %s %s",
			    account_user(d, f->account),
			    f->folder[0] ? f->folder : "(session)"));
			if (f->src_uid != 0)
				ignore_result(buf_printf(out, " UID %" PRIu32,
				    f->src_uid));
			ignore_result(buf_printf(out, ": %s\n", f->reason));
		}
	}
}

/* ----------------------------------------------------------- summary */

const char *
report_account_status(const struct report_account *a)
{
	if (a->failed > 0)
		return "failed";
	if (a->pending > 0)
		return "pending";
	return a->failed_msgs > 0 ? "done*" : "done";
}

static struct report_account *
summarize(const struct state_job *jobs, size_t n, size_t *count_r)
{
	struct report_account *s = xcalloc(n + 1, sizeof(*s));
	size_t count = 0;

	for (size_t i = 0; i < n; i++) {
		const struct state_job *j = &jobs[i];
		struct report_account *a = NULL;

		for (size_t k = 0; k < count && a == NULL; k++)
			if (strcmp(s[k].account, j->account) == 0)
				a = &s[k];
		if (a == NULL) {
			a = &s[count++];
			a->src_user = j->src_user;
			a->dst_user = j->dst_user;
			a->account = j->account;
			a->folders = -1;
		}
		if (j->started > 0 && (a->started == 0 || j->started < a->started))
			a->started = j->started;
		if (j->finished > a->finished)
			a->finished = j->finished;
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
		sched_bodies_sum(&a->bodies, &j->bodies);
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

void
report_data_summarize(struct report_data *d)
{
	size_t w = 0;

	d->accounts = summarize(d->jobs, d->n_jobs, &d->n_accounts);
	/* only the failures of this run's accounts count; the others move
	 * to the end, still freed with the list */
	for (size_t i = 0; i < d->n_fl_all; i++) {
		bool mine = false;

		for (size_t k = 0; k < d->n_accounts && !mine; k++)
			mine = strcmp(d->accounts[k].account, d->fl[i].account) == 0;
		if (mine) {
			struct state_failure t = d->fl[w];

			d->fl[w] = d->fl[i];
			d->fl[i] = t;
			w++;
		}
	}
	d->n_fl = w;
}

int
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
	report_data_summarize(d);
	return 0;
}

int
report_load_folders(struct state_db *db, struct report_data *d,
                    const char **error_r)
{
	for (size_t i = 0; i < d->n_accounts; i++) {
		struct state_folder *f;
		size_t n;

		if (state_folder_list(db, d->accounts[i].account, &f, &n,
		                      error_r) < 0)
			return -1;
		d->accounts[i].folders = (long)n;
		state_folder_list_free(&f, n);
	}
	return 0;
}

static bool
bodies_any(const struct state_bodies *b)
{
	return b->spool + b->imap > 0;
}

bool
report_bodies_total(const struct report_data *d, struct state_bodies *b_r)
{
	memset(b_r, 0, sizeof(*b_r));
	for (size_t i = 0; i < d->n_accounts; i++)
		sched_bodies_sum(b_r, &d->accounts[i].bodies);
	return bodies_any(b_r);
}

/* "bodies: ..." of b with a newline, after indent. */
static void
bodies_line(struct buf *out, const char *indent, const char *what,
            const struct state_bodies *b)
{
	ignore_result(buf_printf(out, "%s%s: ", indent, what));
	sched_bodies_text(out, b);
	ignore_result(buf_append_str(out, "\n"));
}

static void
bodies_json(struct json *j, const struct state_bodies *b)
{
	json_obj_begin(j);
	json_key(j, "from_spool"); json_u64(j, b->spool);
	json_key(j, "over_imap"); json_u64(j, b->imap);
	json_key(j, "missing"); json_u64(j, b->missing);
	json_key(j, "size"); json_u64(j, b->size);
	json_key(j, "uidvalidity"); json_u64(j, b->uidvalidity);
	json_key(j, "error"); json_u64(j, b->error);
	json_obj_end(j);
}

void
report_data_free(struct report_data *d)
{
	for (size_t i = 0; i < d->n_accounts; i++)
		free(d->accounts[i].errors);
	free(d->accounts);
	d->accounts = NULL;
	d->n_accounts = 0;
	state_failure_list_free(&d->fl, d->n_fl_all);
	d->n_fl = d->n_fl_all = 0;
	state_job_list_free(&d->jobs, d->n_jobs);
	d->n_jobs = 0;
	sched_view_free(&d->view);
	state_run_free(&d->run);
}

void
report_summary_text(struct buf *out, const struct report_data *d)
{
	const struct state_failure *fl = d->fl;
	struct state_bodies total;
	char bb[32], el[32];

	ignore_result(buf_printf(out, "%-28s %-8s %9s %10s %8s %8s  %s\n",
	    "account", "status", "messages", "size", "time", "attempts",
	    "errors"));
	for (size_t i = 0; i < d->n_accounts; i++) {
		const struct report_account *a = &d->accounts[i];
		size_t nerr = 0;

		for (size_t k = 0; k < d->n_fl; k++)
			nerr += strcmp(fl[k].account, a->account) == 0;
		report_fmt_bytes(bb, sizeof(bb), (double)a->bytes);
		report_fmt_duration(el, sizeof(el), a->seconds);
		ignore_result(buf_printf(out, "%-28.28s %-8s %9" PRIu64 " %10s %8s "
		    "%8u  ", a->src_user, report_account_status(a), a->messages,
		    bb, el, a->attempts));
		if (a->errors != NULL)
			ignore_result(buf_append_str(out, a->errors));
		if (nerr > 0)
			ignore_result(buf_printf(out, "%s%zu recorded failure%s",
			    a->errors ? "; " : "", nerr, nerr == 1 ? "" : "s"));
		ignore_result(buf_append_str(out, "\n"));
		if (bodies_any(&a->bodies))
			bodies_line(out, "    ", "bodies", &a->bodies);
		for (size_t k = 0, shown = 0; k < d->n_fl; k++) {
			if (strcmp(fl[k].account, a->account) != 0)
				continue;
			if (shown++ == 5) {
				ignore_result(buf_printf(out, "    ... %zu more (see "
				    "--report)\n", nerr - 5));
				break;
			}
			ignore_result(buf_printf(out, "    %s", fl[k].folder[0] ?
			    fl[k].folder : "(session)"));
			if (fl[k].src_uid != 0)
				ignore_result(buf_printf(out, " UID %" PRIu32,
				    fl[k].src_uid));
			ignore_result(buf_printf(out, ": %s\n", fl[k].reason));
		}
	}
	if (report_bodies_total(d, &total))
		bodies_line(out, "", "bodies (all accounts)", &total);
	/* every failure once more by reason: the counts a migration is
	 * judged by (the JSON report has them all) */
	report_reasons_text(out, d, 50);
}

void
report_status_text(struct buf *out, const struct report_data *d, int64_t now,
                   bool alive)
{
	const struct state_run *r = &d->run;
	struct state_bodies total;
	char hb[32];

	report_fmt_duration(hb, sizeof(hb), (double)(now - r->heartbeat));
	ignore_result(buf_printf(out, "run %lld: %s%s%s (pid %lld, last update "
	    "%s ago); plan estimate %.0f s\n", (long long)r->id, r->status,
	    r->error[0] ? ": " : "", r->error, (long long)r->pid, hb,
	    r->est_seconds));
	report_bar(out, d->view.fraction, 40);
	ignore_result(buf_append_str(out, " "));
	report_view_overall(out, &d->view, "\n  ");
	ignore_result(buf_append_str(out, "\n"));
	/* the summary has it when over; while alive, of the ended attempts */
	if (alive && report_bodies_total(d, &total))
		bodies_line(out, "  ", "bodies", &total);
	for (size_t i = 0; i < d->view.n_active; i++) {
		report_view_job(out, &d->view.active[i]);
		ignore_result(buf_append_str(out, "\n"));
	}
	if (!alive) {
		ignore_result(buf_append_str(out, "\n"));
		report_summary_text(out, d);
	}
}

static void
view_json(struct json *j, const struct sched_view *v)
{
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
}

static void
account_json(struct json *j, const struct report_data *d,
             const struct report_account *a)
{
	json_obj_begin(j);
	json_key(j, "src_user"); json_str(j, a->src_user);
	json_key(j, "dst_user"); json_str(j, a->dst_user);
	json_key(j, "account"); json_str(j, a->account);
	json_key(j, "status"); json_str(j, report_account_status(a));
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
	if (bodies_any(&a->bodies)) {
		json_key(j, "bodies");
		bodies_json(j, &a->bodies);
	}
	json_key(j, "errors");
	json_arr_begin(j);
	if (a->errors != NULL) {
		json_obj_begin(j);
		json_key(j, "scope"); json_str(j, "job");
		json_key(j, "reason"); json_str(j, a->errors);
		json_obj_end(j);
	}
	for (size_t k = 0; k < d->n_fl; k++) {
		const struct state_failure *f = &d->fl[k];

		if (strcmp(f->account, a->account) != 0)
			continue;
		json_obj_begin(j);
		json_key(j, "scope"); json_str(j, report_scope_name(f->scope));
		json_key(j, "category");
		json_str(j, report_reason_name(report_failure_reason(f)));
		json_key(j, "folder"); json_str(j, f->folder);
		json_key(j, "uid"); json_u64(j, f->src_uid);
		json_key(j, "reason"); json_str(j, f->reason);
		json_key(j, "attempts"); json_u64(j, f->attempts);
		json_obj_end(j);
	}
	json_arr_end(j);
	json_obj_end(j);
}

/* "failure_counts": every category with its count; "failures": each
 * failure, grouped by category (in the order of enum report_reason). */
static void
reasons_json(struct json *j, const struct report_data *d)
{
	size_t counts[REPORT_REASON_COUNT];

	report_reason_counts(d, counts);
	json_key(j, "failure_counts");
	json_obj_begin(j);
	for (size_t r = 0; r < REPORT_REASON_COUNT; r++) {
		json_key(j, report_reason_name((enum report_reason)r));
		json_u64(j, counts[r]);
	}
	json_obj_end(j);
	json_key(j, "failures");
	json_arr_begin(j);
	for (size_t r = 0; r < REPORT_REASON_COUNT; r++) {
		for (size_t i = 0; i < d->n_fl; i++) {
			const struct state_failure *f = &d->fl[i];

			if (report_failure_reason(f) != r)
				continue;
			json_obj_begin(j);
			json_key(j, "category");
			json_str(j, report_reason_name((enum report_reason)r));
			json_key(j, "account"); json_str(j, f->account);
			json_key(j, "src_user");
			json_str(j, account_user(d, f->account));
			json_key(j, "scope"); json_str(j, report_scope_name(f->scope));
			json_key(j, "folder"); json_str(j, f->folder);
			json_key(j, "uid"); json_u64(j, f->src_uid);
			json_key(j, "reason"); json_str(j, f->reason);
			json_key(j, "attempts"); json_u64(j, f->attempts);
			json_key(j, "when"); json_i64(j, f->when);
			json_obj_end(j);
		}
	}
	json_arr_end(j);
}

void
report_json(struct json *j, const struct report_data *d, double elapsed)
{
	const struct state_run *run = &d->run;
	const struct sched_view *v = &d->view;
	struct state_bodies total;

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
	json_key(j, "progress"); view_json(j, v);
	if (report_bodies_total(d, &total)) {
		json_key(j, "bodies");
		bodies_json(j, &total);
	}
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
	for (size_t i = 0; i < d->n_accounts; i++)
		account_json(j, d, &d->accounts[i]);
	json_arr_end(j);
	reasons_json(j, d);
	json_obj_end(j);
}

/* ------------------------------------------------------------- files */

/* write() all of data, retrying on EINTR and short writes. */
static int
write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

int
report_file_write(const char *path, const void *data, size_t len,
                  const char **error_r)
{
	char *tmp = xasprintf("%s.tmp-XXXXXX", path);
	char *dir_copy = xstrdup(path);
	const char *what = "write";
	int fd, dfd, err;

	/* mkstemp creates the file 0600 and O_EXCL: nobody else's file, and
	 * the same directory as path, so rename() cannot cross devices */
	fd = mkstemp(tmp);
	if (fd < 0) {
		*error_r = err_set("%s: %s", path, strerror(errno));
		goto fail_free;
	}
	if (fchmod(fd, 0600) < 0) {
		what = "chmod";
		goto fail;
	}
	if (write_all(fd, data, len) < 0)
		goto fail;
	what = "fsync";
	if (fsync(fd) < 0)
		goto fail;
	what = "close";
	err = close(fd);
	fd = -1;
	if (err < 0)
		goto fail;
	what = "rename";
	if (rename(tmp, path) < 0)
		goto fail;
	/* the rename itself must survive a crash: fsync the directory
	 * (failure to open it is not fatal: the file is complete) */
	dfd = open(dirname(dir_copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		ignore_result(fsync(dfd));
		close(dfd);
	}
	free(tmp);
	free(dir_copy);
	return 0;
fail:
	err = errno;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	*error_r = err_set("%s: %s: %s", path, what, strerror(err));
fail_free:
	free(tmp);
	free(dir_copy);
	return -1;
}

int
report_write(const char *path, const struct report_data *d, double elapsed,
             const char **error_r)
{
	struct buf out;
	struct json j;
	int ret;

	buf_init(&out, SIZE_MAX / 2);
	json_init(&j, &out);
	report_json(&j, d, elapsed);
	ignore_result(buf_append_str(&out, "\n"));
	ret = report_file_write(path, buf_data(&out), buf_len(&out), error_r);
	buf_free(&out);
	return ret;
}
