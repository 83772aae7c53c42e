/* plancheck.c: plan runs the preflight (imapferry check) of every
 * account, as many at once as the inventory (the run's sessions and
 * connection caps), and summarises it: one line per kind of finding with
 * the number of accounts concerned; --json has every account's findings. */
#include "plancheck.h"

#include "checkacct.h"
#include "json.h"
#include "log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bytes of a finding's summary shown as the example of its kind. */
#define EXAMPLE_MAX 100

struct pc_shared {
	const struct run_cli *c;
	struct plan_check *pc;
	pthread_mutex_t lock;
	size_t next;
};

static void
check_one(struct pc_shared *sh, size_t i)
{
	const struct run_cli *c = sh->c;
	const struct sched_account *a = &c->accounts[i];
	struct plan_check_acct *pa = &sh->pc->v[i];
	struct check_account_args args = { 0 };
	const char *error;

	args.src = &a->src_opts;
	args.src_url = a->src_url;
	args.dst_url = a->dst_url;
	args.dst = a->dst_maildir ? NULL : &a->dst_opts;
	args.dst_flavor = a->dst_courier ? MAILDIR_COURIER : MAILDIR_DOVECOT;
	args.includes = c->includes;
	args.excludes = c->excludes;
	args.maps = c->maps;
	args.n_inc = c->n_inc;
	args.n_exc = c->n_exc;
	args.n_map = c->n_map;
	args.src_slots = c->src_slots;
	args.dst_slots = c->dst_slots;
	args.src_slot = a->src_slot;
	args.dst_slot = a->dst_slot;
	if (check_account_run(&args, &pa->r, &error) < 0) {
		pa->error = xstrdup(error);
		log_warn("plan: check %s: %s", a->src_user, error);
	}
}

static void *
check_thread(void *arg)
{
	struct pc_shared *sh = arg;

	for (;;) {
		size_t i;

		pthread_mutex_lock(&sh->lock);
		i = sh->next++;
		pthread_mutex_unlock(&sh->lock);
		if (i >= sh->pc->n)
			return NULL;
		check_one(sh, i);
	}
}

void
plan_check_run(const struct run_cli *c, struct plan_check *pc)
{
	struct pc_shared sh = { .c = c, .pc = pc };
	unsigned nthreads = run_cli_max_concurrency(c);
	pthread_t *threads;
	unsigned started = 0;

	memset(pc, 0, sizeof(*pc));
	pc->n = c->n_accounts;
	pc->v = xcalloc(pc->n + 1, sizeof(*pc->v));
	for (size_t i = 0; i < pc->n; i++) {
		pc->v[i].src_user = c->accounts[i].src_user;
		pc->v[i].dst_user = c->accounts[i].dst_user;
	}
	if (nthreads > pc->n)
		nthreads = (unsigned)pc->n;
	if (nthreads > 16)
		nthreads = 16;
	log_info("plan: checking what clients will notice, %zu accounts (%u at "
	         "once)", pc->n, nthreads);
	pthread_mutex_init(&sh.lock, NULL);
	threads = xcalloc(nthreads + 1, sizeof(*threads));
	for (unsigned t = 0; t < nthreads; t++)
		if (pthread_create(&threads[t], NULL, check_thread, &sh) == 0)
			started++;
	if (started == 0)
		check_thread(&sh);
	for (unsigned t = 0; t < started; t++)
		pthread_join(threads[t], NULL);
	free(threads);
	pthread_mutex_destroy(&sh.lock);
}

void
plan_check_free(struct plan_check *pc)
{
	for (size_t i = 0; i < pc->n; i++) {
		free(pc->v[i].error);
		check_report_free(&pc->v[i].r);
	}
	free(pc->v);
	memset(pc, 0, sizeof(*pc));
}

static const char *
sev_name(enum check_severity s)
{
	switch (s) {
	case CHECK_ERROR: return "error";
	case CHECK_WARNING: return "warning";
	default: return "info";
	}
}

/* The kinds of finding (code and severity) with the accounts concerned
 * and the first account's summary, worst first. */
struct pc_kind {
	const char *code;
	enum check_severity severity;
	size_t accounts;
	const char *example_user, *example;
};

static struct pc_kind *
kinds_of(const struct plan_check *pc, size_t *n_r)
{
	struct pc_kind *k = NULL;
	size_t n = 0;

	for (size_t i = 0; i < pc->n; i++) {
		const struct check_report *r = &pc->v[i].r;

		if (pc->v[i].error != NULL)
			continue;
		for (size_t f = 0; f < r->count; f++) {
			const struct check_finding *x = &r->items[f];
			size_t j;
			bool again = false;

			/* an account counts once per kind */
			for (size_t g = 0; g < f && !again; g++)
				again = strcmp(r->items[g].code, x->code) == 0 &&
				        r->items[g].severity == x->severity;
			if (again)
				continue;
			for (j = 0; j < n; j++)
				if (strcmp(k[j].code, x->code) == 0 &&
				    k[j].severity == x->severity)
					break;
			if (j == n) {
				k = xreallocarray(k, n + 1, sizeof(*k));
				k[n].code = x->code;
				k[n].severity = x->severity;
				k[n].accounts = 0;
				k[n].example_user = pc->v[i].src_user;
				k[n].example = x->summary;
				n++;
			}
			k[j].accounts++;
		}
	}
	/* worst first, then by accounts (stable enough for n small) */
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 &&
		     (k[j].severity > k[j - 1].severity ||
		      (k[j].severity == k[j - 1].severity &&
		       k[j].accounts > k[j - 1].accounts)); j--) {
			struct pc_kind t = k[j];

			k[j] = k[j - 1];
			k[j - 1] = t;
		}
	*n_r = n;
	return k;
}

static void
counts(const struct plan_check *pc, size_t *checked, size_t *noticed,
       size_t *failed)
{
	*checked = *noticed = *failed = 0;
	for (size_t i = 0; i < pc->n; i++) {
		if (pc->v[i].error != NULL) {
			(*failed)++;
			continue;
		}
		(*checked)++;
		if (check_report_noticed(&pc->v[i].r))
			(*noticed)++;
	}
}

void
plan_check_text(struct buf *out, const struct plan_check *pc)
{
	size_t n_kinds, checked, noticed, failed;
	struct pc_kind *k = kinds_of(pc, &n_kinds);

	counts(pc, &checked, &noticed, &failed);
	ignore_result(buf_printf(out, "\npreflight (imapferry check of each "
	    "account): clients notice something in %zu of %zu accounts "
	    "checked\n", noticed, checked));
	for (size_t i = 0; i < n_kinds; i++) {
		/* the example cut to a line's worth, on a UTF-8 boundary */
		size_t len = strlen(k[i].example), cut = len;

		if (len > EXAMPLE_MAX) {
			cut = EXAMPLE_MAX;
			while (cut > 0 && (k[i].example[cut] & 0xC0) == 0x80)
				cut--;
		}
		ignore_result(buf_printf(out, "  %-7s %-12s %5zu account%s  (e.g. "
		    "%s: %.*s%s)\n", sev_name(k[i].severity), k[i].code,
		    k[i].accounts, k[i].accounts == 1 ? " " : "s",
		    k[i].example_user, (int)cut, k[i].example,
		    cut < len ? "..." : ""));
	}
	if (failed > 0) {
		ignore_result(buf_printf(out, "  %zu account%s could not be "
		    "checked:", failed, failed == 1 ? "" : "s"));
		for (size_t i = 0, shown = 0; i < pc->n && shown < 5; i++)
			if (pc->v[i].error != NULL) {
				ignore_result(buf_printf(out, "%s %s (%s)", shown > 0 ?
				    ";" : "", pc->v[i].src_user, pc->v[i].error));
				shown++;
			}
		ignore_result(buf_append_str(out, "\n"));
	}
	if (n_kinds > 0)
		ignore_result(buf_append_str(out, "  details: plan --json "
		    "(\"check\"), or imapferry check SRC DST for one account\n"));
	free(k);
}

/* Appends the JSON object of w's buffer without its closing brace. */
static void
append_open(struct buf *out, const struct buf *obj)
{
	ignore_result(buf_append(out, buf_data(obj), buf_len(obj) - 1));
}

void
plan_check_json(struct buf *out, const struct plan_check *pc)
{
	size_t n_kinds, checked, noticed, failed;
	struct pc_kind *k = kinds_of(pc, &n_kinds);
	struct buf b;
	struct json j;

	counts(pc, &checked, &noticed, &failed);
	buf_init(&b, SIZE_MAX / 2);
	json_init(&j, &b);
	json_obj_begin(&j);
	json_key(&j, "checked"); json_u64(&j, checked);
	json_key(&j, "noticed"); json_u64(&j, noticed);
	json_key(&j, "failed"); json_u64(&j, failed);
	json_key(&j, "kinds");
	json_arr_begin(&j);
	for (size_t i = 0; i < n_kinds; i++) {
		json_obj_begin(&j);
		json_key(&j, "severity"); json_str(&j, sev_name(k[i].severity));
		json_key(&j, "code"); json_str(&j, k[i].code);
		json_key(&j, "accounts"); json_u64(&j, k[i].accounts);
		json_obj_end(&j);
	}
	json_arr_end(&j);
	json_obj_end(&j);
	append_open(out, &b);
	ignore_result(buf_append_str(out, ",\"accounts\":["));
	for (size_t i = 0; i < pc->n; i++) {
		const struct plan_check_acct *pa = &pc->v[i];

		buf_reset(&b);
		json_init(&j, &b);
		json_obj_begin(&j);
		json_key(&j, "src_user"); json_str(&j, pa->src_user);
		json_key(&j, "dst_user"); json_str(&j, pa->dst_user);
		json_key(&j, "error");
		if (pa->error != NULL)
			json_str(&j, pa->error);
		else
			json_null(&j);
		json_obj_end(&j);
		if (i > 0)
			ignore_result(buf_append_str(out, ","));
		append_open(out, &b);
		ignore_result(buf_append_str(out, ",\"report\":"));
		if (pa->error != NULL) {
			ignore_result(buf_append_str(out, "null"));
		} else {
			buf_reset(&b);
			if (check_render_json(&pa->r, &b) < 0)
				fatal("check report too large");
			ignore_result(buf_append(out, buf_data(&b), buf_len(&b)));
		}
		ignore_result(buf_append_str(out, "}"));
	}
	ignore_result(buf_append_str(out, "]}"));
	buf_free(&b);
	free(k);
}
