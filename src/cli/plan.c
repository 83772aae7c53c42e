/* plan.c: imapferry plan USERS SRC DST: inventory every account,
 * measure the servers and print the schedule (src/report renders it);
 * imapferry plan --inventory FILE: the same from an inventory file,
 * without connecting (src/sched/inventory.h). */
#include "runcli.h"
#include "plancheck.h"

#include "inventory.h"
#include "json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct cli_use plan_opts[] = {
	RUN_CLI_USES,
	{ CLI_OPT_STATE, "the state of the earlier passes (with --final)" },
	{ CLI_OPT_FINAL, "with --state: estimate a final pass now from\n"
	                 "STATUS of every folder against the last pass;\n"
	                 "with --inventory: the inventory lists the new\n"
	                 "mail since the last pass (0: one STATUS)" },
	{ CLI_OPT_NO_CHECK, NULL },
	{ CLI_OPT_INCLUDE, NULL }, { CLI_OPT_EXCLUDE, NULL },
	{ CLI_OPT_MAP, NULL },
	{ CLI_OPT_JSON, "the plan as JSON (with the inventory, which\n"
	                "plan --inventory reads)" },
	{ CLI_OPT_INVENTORY, NULL },
	{ CLI_OPT_MACHINES, NULL },
	{ CLI_OPT_SRC_MAX_RATE, NULL },
	{ CLI_OPT_COST, NULL },
	{ CLI_OPT_SAVE_COST, NULL },
	CLI_NET_USES,
	{ CLI_OPT_NONE, NULL },
};

const struct cli_command cli_cmd_plan = {
	.name = "plan", .program = "imapferry",
	.synopsis = "[options] USERS SRC DST | --inventory FILE [options]",
	.intro = "Takes an inventory of every account, measures the servers and\n"
	         "prints the schedule and the predicted time for 1..N workers;\n"
	         "checks what each account's mail clients will notice after the\n"
	         "switch (imapferry check), summarised per kind of finding.\n"
	         "Or plans from an inventory file, with the cost model of an\n"
	         "earlier calibration (--cost), for 1..M machines (--machines).",
	.opts = plan_opts,
	.trailer = RUN_CLI_TRAILER "\n"
	    "Inventory: CSV 'account,folder,messages,bytes' lines, or the JSON\n"
	    "  of plan --json. Cost file: the \"cost\" object of plan --json\n"
	    "  (what --save-cost writes).\n" CLI_EXIT_HELP,
	.min_args = 0, .max_args = 3,
};

struct plan_cli {
	struct run_cli c;             /* first: run_cli_option's ctx */
	const char *inventory, *save_cost;
	unsigned machines;
	double src_rate;              /* bytes/s */
	bool uid_ranges_given;
};

static int
plan_option(void *ctx, int id, const char *arg, uint64_t num)
{
	struct plan_cli *pc = ctx;

	switch (id) {
	case CLI_OPT_INVENTORY: pc->inventory = arg; return 0;
	case CLI_OPT_MACHINES: pc->machines = (unsigned)num; return 0;
	case CLI_OPT_SAVE_COST: pc->save_cost = arg; return 0;
	case CLI_OPT_SRC_MAX_RATE: {
		char *end;

		errno = 0;
		pc->src_rate = strtod(arg, &end) * 1e6;
		if (errno != 0 || *end != '\0' || end == arg ||
		    !(pc->src_rate > 0) || !isfinite(pc->src_rate))
			return cli_bad_value(id, arg, "expected MB/s (above 0)");
		return 0;
	}
	case CLI_OPT_UID_RANGES:
		pc->uid_ranges_given = true;
		break;
	default:
		break;
	}
	return run_cli_option(&pc->c, id, arg, num);
}

static int
save_cost(const char *path, const struct sched_cost *cost)
{
	struct buf out;
	struct json j;
	const char *error;
	int ret;

	buf_init(&out, 1 << 20);
	json_init(&j, &out);
	sched_cost_json(&j, cost);
	ignore_result(buf_append_str(&out, "\n"));
	ret = report_file_write(path, buf_data(&out), buf_len(&out), &error);
	if (ret < 0)
		fprintf(stderr, "imapferry: --save-cost: %s\n", error);
	buf_free(&out);
	return ret;
}

/* Prints the plan (text or JSON) with the estimate per machine count
 * and the check's summary (chk, or NULL). */
static void
print_plan(struct plan_cli *pc, struct report_plan *rp,
           const struct sched_cost *cost, unsigned max_conc,
           const struct plan_check *chk)
{
	unsigned machines = pc->machines;
	double *ms = NULL;
	const char **mb = NULL;
	struct buf out;

	if (machines > 0) {
		ms = xcalloc(machines + 1, sizeof(*ms));
		mb = xcalloc(machines + 1, sizeof(*mb));
		for (unsigned m = 1; m <= machines; m++)
			ms[m] = sched_predict_machines(cost, rp->plan, m,
			                               pc->c.workers, max_conc,
			                               pc->src_rate, &mb[m]);
		rp->machines = machines;
		rp->machine_workers = pc->c.workers;
		rp->machine_seconds = ms;
		rp->machine_bound = mb;
		rp->src_rate = pc->src_rate;
	}
	buf_init(&out, SIZE_MAX / 2);
	if (pc->c.common.json) {
		struct json j;

		json_init(&j, &out);
		report_plan_json(&j, rp, true);
		if (chk != NULL && buf_len(&out) > 0 &&
		    buf_data(&out)[buf_len(&out) - 1] == '}') {
			/* the plan object with "check" added */
			struct buf cb;

			buf_init(&cb, SIZE_MAX / 2);
			plan_check_json(&cb, chk);
			printf("%.*s,\"check\":%s}\n", (int)buf_len(&out) - 1,
			       buf_data(&out), buf_data(&cb));
			buf_free(&cb);
		} else {
			puts(buf_data(&out));
		}
	} else {
		report_plan_text(&out, rp);
		if (chk != NULL)
			plan_check_text(&out, chk);
		fputs(buf_data(&out), stdout);
	}
	buf_free(&out);
	free(ms);
	free(mb);
}

/* The jobs at once over all machines allowed by --max-src-conns and
 * --max-dst-conns when given (0: no cap). */
static unsigned
explicit_caps(const struct run_cli *c)
{
	unsigned m = c->max_src;

	if (c->max_dst > 0 && (m == 0 || c->max_dst < m))
		m = c->max_dst;
	return m;
}

/* plan --inventory FILE: nothing is contacted. */
static int
plan_inventory(struct plan_cli *pc)
{
	struct run_cli *c = &pc->c;
	struct sched_inventory inv;
	struct sched_plan_options o = { 0 };
	struct sched_account *accounts;
	struct sched_cost cost;
	struct sched_plan plan;
	struct report_plan rp;
	const char *error;
	unsigned workers = c->workers > 0 ? c->workers : 4;
	unsigned machines = pc->machines > 0 ? pc->machines : 1;
	unsigned max_conc = explicit_caps(c);

	if (c->cost_path != NULL) {
		if (sched_cost_load(c->cost_path, &cost, &error) < 0) {
			fprintf(stderr, "imapferry: %s\n", error);
			return CLI_EXIT_USAGE;
		}
	} else {
		sched_cost_default(&cost);
	}
	if (sched_inventory_load(pc->inventory, &inv, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		return CLI_EXIT_USAGE;
	}
	if (c->final)
		sched_inventory_final(&inv, &cost);
	c->workers = workers;
	/* one shared queue: the schedule of all machines' workers */
	o.workers = machines * workers;
	o.max_conc = max_conc;
	o.split = !c->no_split;
	o.split_above = c->split_above;
	/* no target to ask: UID ranges (a Maildir target) on request only */
	o.uid_split = pc->uid_ranges_given;
	o.folders = c->n_folders > 0 ? c->folders : NULL;
	o.n_folders = c->n_folders;
	sched_plan_build(inv.est, inv.n, &cost, &o, &plan);
	/* report rows name accounts by src_user: borrowed from inv */
	accounts = xcalloc(inv.n + 1, sizeof(*accounts));
	for (size_t i = 0; i < inv.n; i++)
		accounts[i].src_user = accounts[i].dst_user = inv.names[i];
	memset(&rp, 0, sizeof(rp));
	rp.plan = &plan;
	rp.cost = &cost;
	rp.est = inv.est;
	rp.accounts = accounts;
	rp.max_conc = max_conc > 0 ? max_conc : o.workers;
	rp.now = (int64_t)time(NULL);
	rp.final_inventory = c->final;
	if (pc->machines == 0)
		pc->machines = 1;
	print_plan(pc, &rp, &cost, max_conc, NULL);
	free(accounts);
	sched_plan_free(&plan);
	sched_inventory_free(&inv);
	if (pc->save_cost != NULL && save_cost(pc->save_cost, &cost) < 0)
		return CLI_EXIT_ERROR;
	return CLI_EXIT_OK;
}

int
cmd_plan(int argc, char **argv)
{
	struct plan_cli pc;
	struct run_cli *c = &pc.c;
	struct sched_cost cost;
	struct sched_plan plan;
	struct sched_account_est *est = NULL;
	struct report_plan rp;
	struct plan_check chk = { 0 };
	double plan_seconds;
	const char *error;
	int status = CLI_EXIT_USAGE, argi;
	unsigned workers;

	memset(&pc, 0, sizeof(pc));
	run_cli_init(c, argc);
	if (cli_parse(&cli_cmd_plan, argc, argv, &c->common, plan_option, &pc,
	              &argi, &status) < 0)
		goto out;
	status = CLI_EXIT_USAGE;
	if (pc.inventory != NULL) {
		if (argc - argi != 0) {
			fprintf(stderr, "imapferry: plan --inventory takes no USERS "
			        "SRC DST (nothing is contacted)\n");
			goto out;
		}
		if (c->state_path != NULL) {
			fprintf(stderr, "imapferry: plan --inventory takes no --state "
			        "(with --final the inventory lists the new mail)\n");
			goto out;
		}
		status = plan_inventory(&pc);
		goto out;
	}
	if (argc - argi != 3) {
		fprintf(stderr, "imapferry: plan needs USERS SRC DST, or "
		        "--inventory FILE\n");
		goto out;
	}
	c->users_path = argv[argi];
	c->src_tmpl = argv[argi + 1];
	c->dst_tmpl = argv[argi + 2];
	if (c->cost_path != NULL && sched_cost_load(c->cost_path, &cost,
	                                            &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		goto out;
	}
	if ((status = run_cli_setup_accounts(c)) != 0)
		goto out;
	/* with --machines M: the schedule of M x N workers (one queue) */
	workers = c->workers;
	if (pc.machines > 1)
		c->workers = pc.machines * workers;
	status = run_cli_make_plan(c, &cost, &plan, &est, &plan_seconds);
	c->workers = workers;
	if (status != 0)
		goto out;
	run_cli_report_plan(c, &plan, &cost, est, plan_seconds, &rp);
	/* --final must stay cheap (one STATUS per folder): the preflight
	 * fetches every message's flags and size, it was done before */
	if (c->final)
		c->no_check = true;
	if (!c->no_check)
		plan_check_run(c, &chk);
	print_plan(&pc, &rp, &cost, pc.machines > 0 ? explicit_caps(c) :
	           run_cli_max_concurrency(c), c->no_check ? NULL : &chk);
	plan_check_free(&chk);
	sched_plan_free(&plan);
	for (size_t i = 0; i < c->n_accounts; i++)
		sched_account_est_free(&est[i]);
	free(est);
	status = CLI_EXIT_OK;
	if (pc.save_cost != NULL && save_cost(pc.save_cost, &cost) < 0)
		status = CLI_EXIT_ERROR;
out:
	run_cli_free(c);
	return status;
}
