/* plan.c: cost model, LPT schedule, split decisions (see plan.h). */
#include "plan.h"

#include "buf.h"
#include "copy.h"
#include "state.h"
#include "users.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------- cost model */

void
sched_cost_default(struct sched_cost *c)
{
	memset(c, 0, sizeof(*c));
	c->per_account = 0.3;
	c->per_folder = 0.05;
	c->per_status = 0.002;
	c->per_message = 0.005;
	c->per_byte = 1.0 / 20e6;
	c->par_sessions = 0;
	c->par_speedup = 0;
	c->avg_message_size = 60000;
}

int
sched_cost_fit(const struct sched_batch *b, size_t n, double *per_message_r,
               double *per_byte_r)
{
	double snn = 0, snb = 0, sbb = 0, snt = 0, sbt = 0, det;
	double a, c;

	for (size_t i = 0; i < n; i++) {
		double m = b[i].messages, y = (double)b[i].bytes, t = b[i].seconds;

		snn += m * m;
		snb += m * y;
		sbb += y * y;
		snt += m * t;
		sbt += y * t;
	}
	if (snn <= 0)
		return -1;
	det = snn * sbb - snb * snb;
	/* Batches of one size (det ~ 0) cannot tell the two apart: all
	 * time is per message then, right for messages of that size. */
	if (sbb <= 0 || det <= 1e-9 * snn * sbb) {
		*per_message_r = snt / snn;
		*per_byte_r = 0;
		return 0;
	}
	a = (snt * sbb - sbt * snb) / det;
	c = (sbt * snn - snt * snb) / det;
	if (a < 0) {
		a = 0;
		c = sbt / sbb;
	} else if (c < 0) {
		c = 0;
		a = snt / snn;
	}
	*per_message_r = a < 0 ? 0 : a;
	*per_byte_r = c < 0 ? 0 : c;
	return 0;
}

double
sched_cost_job(const struct sched_cost *c, unsigned folders, uint64_t messages,
               uint64_t bytes)
{
	double pm = c->per_message, pb = c->per_byte;

	if (c->target_probed) {
		if (c->dst_per_message > pm)
			pm = c->dst_per_message;
		if (c->dst_per_byte > pb)
			pb = c->dst_per_byte;
	}
	return c->per_account + c->per_folder * folders +
	       pm * (double)messages + pb * (double)bytes;
}

double
sched_cost_speedup(const struct sched_cost *c, unsigned k)
{
	double p, e, eff;

	if (k <= 1)
		return 1;
	if (c->par_sessions <= 1 || c->par_speedup <= 0)
		return k;
	p = c->par_sessions;
	e = c->par_speedup / p;
	if (e > 1)
		e = 1;
	if (e < 0.05)
		e = 0.05;
	/* efficiency 1 at one session, e at P, linear between; e beyond */
	eff = k >= p ? e : 1 + (e - 1) * (k - 1) / (p - 1);
	/* ... but below P never more throughput than P sessions had: with
	 * a low e the curve peaks before P (P = 4, speedup 1.1: 1.52 at 2,
	 * 1.55 at 3, 1.1 at 4), which predicted more workers as slower and
	 * the tail of a run (fewer jobs left) as faster than measured */
	if (k < p && k * eff > c->par_speedup)
		return c->par_speedup;
	return k * eff;
}

static int
cmp_double_desc(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? 1 : x > y ? -1 : 0;
}

double
sched_lpt_makespan(const double *durations, size_t n, unsigned machines,
                   unsigned *assign_r)
{
	size_t *order;
	double *load, span = 0;

	if (machines == 0)
		machines = 1;
	if (n == 0)
		return 0;
	order = xcalloc(n, sizeof(*order));
	load = xcalloc(machines, sizeof(*load));
	for (size_t i = 0; i < n; i++)
		order[i] = i;
	/* insertion sort by duration, descending, stable */
	for (size_t i = 1; i < n; i++) {
		size_t v = order[i], j = i;

		while (j > 0 && durations[order[j - 1]] < durations[v]) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = v;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned best = 0;

		for (unsigned m = 1; m < machines; m++)
			if (load[m] < load[best])
				best = m;
		load[best] += durations[order[i]];
		if (assign_r != NULL)
			assign_r[order[i]] = best;
	}
	for (unsigned m = 0; m < machines; m++)
		if (load[m] > span)
			span = load[m];
	free(order);
	free(load);
	return span;
}

double
sched_predict(const struct sched_cost *c, const double *durations, size_t n,
              unsigned k, unsigned max_conc)
{
	double *left, *run, t = 0;
	size_t next = 0, nrun = 0;

	if (k == 0)
		k = 1;
	if (max_conc > 0 && k > max_conc)
		k = max_conc;
	if (n == 0)
		return 0;
	/* Simulates the workers: jobs start largest first; m jobs running
	 * at once each progress at speedup(m)/m of their alone speed. */
	left = xcalloc(n, sizeof(*left));
	memcpy(left, durations, n * sizeof(*left));
	qsort(left, n, sizeof(*left), cmp_double_desc);
	run = xcalloc(k, sizeof(*run));
	for (;;) {
		double rate, step;
		size_t w = 0;

		while (nrun < k && next < n)
			run[nrun++] = left[next++];
		if (nrun == 0)
			break;
		rate = sched_cost_speedup(c, (unsigned)nrun) / (double)nrun;
		step = run[0];
		for (size_t i = 1; i < nrun; i++)
			if (run[i] < step)
				step = run[i];
		t += step / rate;
		for (size_t i = 0; i < nrun; i++) {
			run[i] -= step;
			if (run[i] > 1e-12)
				run[w++] = run[i];
		}
		nrun = w;
	}
	free(left);
	free(run);
	return t;
}

/* ------------------------------------------------------------ planning */

void
sched_account_est_free(struct sched_account_est *e)
{
	for (size_t i = 0; i < e->n_folders; i++)
		free(e->folders[i].name);
	free(e->folders);
	free(e->error);
	free(e->prefix);
	memset(e, 0, sizeof(*e));
}

/* A piece of an account: one folder, or a UID range of one. */
/* A piece of a split account: a folder family (a top-level folder and
 * everything below it), which always goes to one part: a copy engine
 * creates a parent before its children only within one pass (a parent
 * created by another part after a child can look like an existing
 * folder to it). */
struct piece {
	const struct sched_folder_est **f; /* into the family-sorted array */
	size_t count;
	uint64_t messages, bytes;
	double seconds;
};

struct jobs_out {
	struct sched_job *v;
	size_t n, alloc;
};

static struct sched_job *
job_add(struct jobs_out *o, size_t account)
{
	struct sched_job *j;

	if (o->n == o->alloc) {
		o->alloc = o->alloc == 0 ? 64 : o->alloc * 2;
		o->v = xreallocarray(o->v, o->alloc, sizeof(*o->v));
	}
	j = &o->v[o->n++];
	memset(j, 0, sizeof(*j));
	j->account = account;
	j->part = j->parts = 1;
	return j;
}

static void
strv_push(char ***v, size_t *n, const char *s)
{
	*v = xreallocarray(*v, *n + 2, sizeof(char *));
	(*v)[(*n)++] = xstrdup(s);
	(*v)[*n] = NULL;
}

static void
note_add(struct sched_plan *p, char *note)
{
	p->notes = xreallocarray(p->notes, p->n_notes + 2, sizeof(char *));
	p->notes[p->n_notes++] = note;
	p->notes[p->n_notes] = NULL;
}

static int
cmp_piece_desc(const void *a, const void *b)
{
	const struct piece *x = a, *y = b;

	if (x->seconds != y->seconds)
		return x->seconds < y->seconds ? 1 : -1;
	return strcmp(x->f[0]->name, y->f[0]->name);
}

/* The family of a folder name: its first component after the personal
 * namespace prefix ("INBOX.Archive.2019" with prefix "INBOX." and '.' is
 * "Archive"; "INBOX" is "INBOX"). Sets *start_r, returns the length. */
static size_t
family_of(const char *name, const char *prefix, char sep, size_t *start_r)
{
	size_t plen = prefix != NULL ? strlen(prefix) : 0, start = 0;
	const char *end;

	if (plen > 0 && strlen(name) > plen && str_ieqn(name, prefix, plen))
		start = plen;
	end = sep != '\0' ? strchr(name + start, sep) : NULL;
	*start_r = start;
	return end != NULL ? (size_t)(end - name) - start : strlen(name) - start;
}

struct family_sort {
	const char *prefix;
	char sep;
};

static _Thread_local struct family_sort family_ctx;

static int
cmp_family(const void *a, const void *b)
{
	const struct sched_folder_est *x = *(const struct sched_folder_est *const *)a;
	const struct sched_folder_est *y = *(const struct sched_folder_est *const *)b;
	size_t xs, ys, xl, yl;
	int r;

	xl = family_of(x->name, family_ctx.prefix, family_ctx.sep, &xs);
	yl = family_of(y->name, family_ctx.prefix, family_ctx.sep, &ys);
	r = memcmp(x->name + xs, y->name + ys, xl < yl ? xl : yl);
	if (r != 0)
		return r;
	if (xl != yl)
		return xl < yl ? -1 : 1;
	return strcmp(x->name, y->name);
}

static bool
same_family(const struct sched_folder_est *x, const struct sched_folder_est *y)
{
	size_t xs, ys, xl, yl;

	xl = family_of(x->name, family_ctx.prefix, family_ctx.sep, &xs);
	yl = family_of(y->name, family_ctx.prefix, family_ctx.sep, &ys);
	return xl == yl && memcmp(x->name + xs, y->name + ys, xl) == 0;
}

static double
folder_seconds(const struct sched_cost *c, uint64_t messages, uint64_t bytes)
{
	return sched_cost_job(c, 1, messages, bytes) - c->per_account;
}

/* Splits account a (duration above the threshold) into jobs. */
static void
split_account(struct sched_plan *p, struct jobs_out *out, size_t a,
              const char *label, const struct sched_account_est *e,
              const struct sched_folder_est *fs, size_t nf,
              const struct sched_cost *c, const struct sched_plan_options *o)
{
	struct piece *pieces = xcalloc(nf + 1, sizeof(*pieces));
	const struct sched_folder_est **wf = xcalloc(nf + 1, sizeof(*wf));
	size_t np = 0, nw = 0, first_part = out->n, bins, rest_bin = 0;
	struct sched_job *bin_jobs;
	double whole = 0, *load;
	/* each part pays the per-account cost again: parts of at most the
	 * threshold in all, but never of less work than that cost */
	double cap = p->threshold - c->per_account;
	unsigned ranges = 0;

	if (cap < c->per_account)
		cap = c->per_account;
	if (cap <= 0)
		cap = p->threshold > 0 ? p->threshold : 1;

	for (size_t i = 0; i < nf; i++) {
		const struct sched_folder_est *f = &fs[i];
		double s = folder_seconds(c, f->messages, f->bytes);

		if (o->uid_split && s > cap && f->uidnext > 2 &&
		    f->messages > 1) {
			/* UID ranges of equal width: a folder's messages are
			 * spread over [1, uidnext) about evenly */
			unsigned r = (unsigned)ceil(s / cap);
			uint32_t span = f->uidnext - 1, lo = 1;

			if (r > f->messages)
				r = (unsigned)f->messages;
			if (r > span)
				r = span;
			for (unsigned k = 0; k < r; k++) {
				struct sched_job *j = job_add(out, a);
				uint32_t hi = k + 1 == r ? UINT32_MAX :
				    lo + span / r - 1;

				strv_push(&j->folders, &j->n_folders, f->name);
				j->uid_lo = lo;
				j->uid_hi = hi;
				j->est_folders = 1;
				j->est_messages = f->messages / r;
				j->est_bytes = f->bytes / r;
				j->est_seconds = c->per_account + s / r;
				lo = hi + 1;
			}
			ranges++;
			note_add(p, xasprintf("%s: folder %s split into %u UID "
			                      "ranges", label, f->name, r));
			continue;
		}
		wf[nw++] = f;
		whole += s;
	}
	/* whole folders, grouped into families */
	family_ctx.prefix = e->prefix;
	family_ctx.sep = e->separator;
	qsort(wf, nw, sizeof(*wf), cmp_family);
	for (size_t i = 0; i < nw; i++) {
		if (np == 0 || !same_family(pieces[np - 1].f[0], wf[i])) {
			pieces[np].f = &wf[i];
			np++;
		}
		pieces[np - 1].count++;
		pieces[np - 1].messages += wf[i]->messages;
		pieces[np - 1].bytes += wf[i]->bytes;
		pieces[np - 1].seconds += folder_seconds(c, wf[i]->messages,
		                                         wf[i]->bytes);
	}
	qsort(pieces, np, sizeof(*pieces), cmp_piece_desc);
	if (np > 0 && pieces[0].seconds > cap) {
		/* one note per account: the families too big for a part */
		struct buf names;
		unsigned big = 0;

		buf_init(&names, 1 << 16);
		for (size_t i = 0; i < np && pieces[i].seconds > cap; i++, big++)
			ignore_result(buf_printf(&names, "%s%s (%.1f s)",
			                         i > 0 ? ", " : "",
			                         pieces[i].f[0]->name,
			                         pieces[i].seconds));
		note_add(p, xasprintf("%s: %s take%s longer than a part should "
		    "(%.1f s): a folder with its subfolders is copied by one "
		    "session%s", label, buf_data(&names), big == 1 ? "s" : "",
		    cap, o->uid_split ? "" : " (an IMAP target assigns UIDs in "
		    "APPEND order)"));
		buf_free(&names);
	}
	bins = (size_t)ceil(whole / cap);
	if (bins < 1)
		bins = 1;
	if (bins > np && np > 0)
		bins = np;
	bin_jobs = xcalloc(bins, sizeof(*bin_jobs));
	load = xcalloc(bins, sizeof(*load));
	for (size_t i = 0; i < np; i++) {
		size_t best = 0;
		struct sched_job *j;

		for (size_t b = 1; b < bins; b++)
			if (load[b] < load[best])
				best = b;
		j = &bin_jobs[best];
		load[best] += pieces[i].seconds;
		for (size_t k = 0; k < pieces[i].count; k++) {
			strv_push(&j->folders, &j->n_folders,
			          pieces[i].f[k]->name);
			if (str_ieq(pieces[i].f[k]->name, "INBOX"))
				rest_bin = best;
		}
		j->est_folders += (unsigned)pieces[i].count;
		j->est_messages += pieces[i].messages;
		j->est_bytes += pieces[i].bytes;
	}
	/* The rest part takes every folder not named by another part,
	 * including those created after the plan. */
	for (size_t b = 0; b < bins; b++) {
		struct sched_job *j = job_add(out, a);

		*j = bin_jobs[b];
		j->account = a;
		j->est_seconds = c->per_account + load[b];
		if (b != rest_bin)
			continue;
		j->rest = true;
		for (size_t k = 0; k < j->n_folders; k++)
			free(j->folders[k]);
		XFREE(j->folders);
		j->n_folders = 0;
	}
	/* now that every part exists, give the rest part its excludes */
	for (size_t q = first_part; q < out->n; q++) {
		struct sched_job *r = &out->v[q];

		if (!r->rest)
			continue;
		for (size_t k = first_part; k < out->n; k++) {
			if (k == q)
				continue;
			for (size_t m = 0; m < out->v[k].n_folders; m++) {
				bool dup = false;

				for (size_t x = 0; x < r->n_exclude; x++)
					dup = dup || strcmp(r->exclude[x],
					                    out->v[k].folders[m]) == 0;
				if (!dup)
					strv_push(&r->exclude, &r->n_exclude,
					          out->v[k].folders[m]);
			}
		}
	}
	for (size_t q = first_part; q < out->n; q++) {
		out->v[q].part = (unsigned)(q - first_part + 1);
		out->v[q].parts = (unsigned)(out->n - first_part);
	}
	note_add(p, xasprintf("%s: split into %zu parts%s", label,
	                      out->n - first_part,
	                      ranges > 0 ? " (folders and UID ranges)" :
	                      " by folder"));
	free(bin_jobs);
	free(load);
	free(pieces);
	free(wf);
}

static int
cmp_job_desc(const void *a, const void *b)
{
	const struct sched_job *x = a, *y = b;

	if (x->est_seconds != y->est_seconds)
		return x->est_seconds < y->est_seconds ? 1 : -1;
	if (x->account != y->account)
		return x->account < y->account ? -1 : 1;
	return x->part < y->part ? -1 : x->part > y->part;
}

void
sched_plan_build(const struct sched_account_est *est, size_t n,
                 const struct sched_cost *c,
                 const struct sched_plan_options *o,
                 struct sched_plan *p)
{
	unsigned workers = o->workers > 0 ? o->workers : 1;
	struct sched_folder_est **sel = xcalloc(n + 1, sizeof(*sel));
	size_t *nsel = xcalloc(n + 1, sizeof(*nsel));
	double *acc_seconds = xcalloc(n + 1, sizeof(double));
	struct jobs_out out = { 0 };
	double *durations;

	memset(p, 0, sizeof(*p));
	p->workers = workers;
	p->n_accounts = n;
	/* the folders of the pass, with byte estimates where missing */
	for (size_t a = 0; a < n; a++) {
		const struct sched_account_est *e = &est[a];
		uint64_t m = 0, b = 0;

		sel[a] = xcalloc(e->n_folders + 1, sizeof(**sel));
		for (size_t i = 0; i < e->n_folders; i++) {
			struct sched_folder_est f = e->folders[i];

			if (!copy_folder_selected(o->folders, o->n_folders, f.name))
				continue;
			if (f.bytes_estimated || (f.bytes == 0 && f.messages > 0)) {
				f.bytes = (uint64_t)(c->avg_message_size *
				                     (double)f.messages);
				f.bytes_estimated = true;
			}
			m += f.messages;
			b += f.bytes;
			sel[a][nsel[a]++] = f;
		}
		acc_seconds[a] = e->error != NULL ? c->per_account :
		    sched_cost_job(c, (unsigned)nsel[a], m, b) + e->extra_seconds;
		p->total_seconds += acc_seconds[a];
		p->messages += m;
		p->bytes += b;
	}
	p->threshold = o->split_above > 0 ? o->split_above :
	    p->total_seconds / workers;
	for (size_t a = 0; a < n; a++) {
		/* Split only what is worth it: an account above the
		 * threshold whose work (beyond logging in) is more than
		 * the cost of another login. */
		if (o->split && workers > 1 && est[a].error == NULL &&
		    acc_seconds[a] > p->threshold &&
		    acc_seconds[a] - c->per_account > c->per_account &&
		    (nsel[a] > 1 || o->uid_split)) {
			char *label = est[a].label != NULL ? xstrdup(est[a].label) :
			    xasprintf("account %zu", a + 1);

			split_account(p, &out, a, label, &est[a], sel[a], nsel[a],
			              c, o);
			free(label);
			continue;
		}
		if (o->split && workers > 1 && est[a].error == NULL &&
		    acc_seconds[a] > p->threshold && nsel[a] == 1 &&
		    !o->uid_split)
			note_add(p, xasprintf("%s: its one folder %s takes %.1f s, "
			    "more than %.1f s; an IMAP target cannot take one "
			    "folder from two sessions", est[a].label != NULL ?
			    est[a].label : "an account", sel[a][0].name,
			    acc_seconds[a], p->threshold));
		struct sched_job *j = job_add(&out, a);
		uint64_t m = 0, b = 0;

		for (size_t i = 0; i < nsel[a]; i++) {
			m += sel[a][i].messages;
			b += sel[a][i].bytes;
		}
		j->est_folders = (unsigned)nsel[a];
		j->est_messages = m;
		j->est_bytes = b;
		j->est_seconds = acc_seconds[a];
	}
	qsort(out.v, out.n, sizeof(*out.v), cmp_job_desc);
	p->jobs = out.v;
	p->n_jobs = out.n;
	p->total_seconds = 0;
	durations = xcalloc(out.n + 1, sizeof(double));
	for (size_t i = 0; i < out.n; i++) {
		durations[i] = out.v[i].est_seconds;
		p->total_seconds += durations[i];
	}
	p->predicted = xcalloc(workers + 1, sizeof(double));
	for (unsigned k = 1; k <= workers; k++)
		p->predicted[k] = sched_predict(c, durations, out.n, k,
		                                o->max_conc);
	free(durations);
	for (size_t a = 0; a < n; a++)
		free(sel[a]);
	free(sel);
	free(nsel);
	free(acc_seconds);
}

void
sched_plan_free(struct sched_plan *p)
{
	for (size_t i = 0; i < p->n_jobs; i++) {
		struct sched_job *j = &p->jobs[i];

		for (size_t k = 0; k < j->n_folders; k++)
			free(j->folders[k]);
		free(j->folders);
		for (size_t k = 0; k < j->n_exclude; k++)
			free(j->exclude[k]);
		free(j->exclude);
	}
	free(p->jobs);
	free(p->predicted);
	for (size_t i = 0; i < p->n_notes; i++)
		free(p->notes[i]);
	free(p->notes);
	memset(p, 0, sizeof(*p));
}

int
sched_final_deltas(struct state_db *db, const struct sched_account *accounts,
                   struct sched_account_est *est, size_t n,
                   struct sched_final_summary *sum, const char **error_r)
{
	memset(sum, 0, sizeof(*sum));
	for (size_t i = 0; i < n; i++) {
		struct sched_account_est *e = &est[i];

		e->messages = e->bytes = 0;
		for (size_t k = 0; k < e->n_folders; k++) {
			struct sched_folder_est *f = &e->folders[k];
			struct state_folder sf;
			bool found;
			uint64_t fresh;

			sum->folders++;
			if (state_folder_get(db, accounts[i].key, f->name, &sf, &found,
			                     error_r) < 0)
				return -1;
			if (!found || !sf.complete || sf.src_uidnext == 0 ||
			    f->uidnext == 0) {
				sum->unknown++;
			} else {
				/* UIDs are given in ascending order: what came
				 * since is at most UIDNEXT now - UIDNEXT then */
				fresh = f->uidnext > sf.src_uidnext ?
				        f->uidnext - sf.src_uidnext : 0;
				if (fresh > f->messages)
					fresh = f->messages;
				if (fresh == 0)
					sum->unchanged++;
				else
					sum->changed++;
				f->bytes = f->messages > 0 ?
				           (uint64_t)((double)f->bytes * (double)fresh /
				                      (double)f->messages) : 0;
				f->messages = fresh;
			}
			if (found)
				state_folder_free(&sf);
			sum->new_messages += f->messages;
			sum->new_bytes += f->bytes;
			e->messages += f->messages;
			e->bytes += f->bytes;
		}
	}
	return 0;
}

void
sched_plan_note_final(struct sched_plan *plan,
                      const struct sched_final_summary *sum)
{
	note_add(plan, xasprintf("final pass: %" PRIu64 " new messages (%" PRIu64
	    " bytes) in %zu changed folders, %zu folders never copied "
	    "completely, %zu unchanged (one STATUS each), against the last "
	    "complete pass in the state", sum->new_messages, sum->new_bytes,
	    sum->changed, sum->unknown, sum->unchanged));
}
