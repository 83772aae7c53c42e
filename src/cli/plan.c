/* plan.c: imapferry plan USERS SRC DST: inventory every account,
 * measure the servers and print the schedule (src/report renders it). */
#include "runcli.h"
#include "plancheck.h"

#include "json.h"

#include <stdio.h>
#include <stdlib.h>

static const struct cli_use plan_opts[] = {
	RUN_CLI_USES,
	{ CLI_OPT_STATE, "the state of the earlier passes (with --final)" },
	{ CLI_OPT_FINAL, NULL },
	{ CLI_OPT_NO_CHECK, NULL },
	{ CLI_OPT_INCLUDE, NULL }, { CLI_OPT_EXCLUDE, NULL },
	{ CLI_OPT_MAP, NULL },
	{ CLI_OPT_JSON, "the plan as JSON" },
	CLI_NET_USES,
	{ CLI_OPT_NONE, NULL },
};

const struct cli_command cli_cmd_plan = {
	.name = "plan", .program = "imapferry",
	.synopsis = "[options] USERS SRC DST",
	.intro = "Takes an inventory of every account, measures the servers and\n"
	         "prints the schedule and the predicted time for 1..N workers;\n"
	         "checks what each account's mail clients will notice after the\n"
	         "switch (imapferry check), summarised per kind of finding.",
	.opts = plan_opts,
	.trailer = RUN_CLI_TRAILER "\n" CLI_EXIT_HELP,
	.min_args = 3, .max_args = 3,
};

int
cmd_plan(int argc, char **argv)
{
	struct run_cli c;
	struct sched_cost cost;
	struct sched_plan plan;
	struct sched_account_est *est = NULL;
	struct report_plan rp;
	struct buf out;
	struct plan_check pc = { 0 };
	double plan_seconds;
	int status = CLI_EXIT_USAGE;

	run_cli_init(&c, argc);
	if (run_cli_args(&c, &cli_cmd_plan, argc, argv, &status) < 0)
		goto out;
	if ((status = run_cli_setup_accounts(&c)) != 0)
		goto out;
	if ((status = run_cli_make_plan(&c, &cost, &plan, &est,
	                                &plan_seconds)) != 0)
		goto out;
	run_cli_report_plan(&c, &plan, &cost, est, plan_seconds, &rp);
	/* --final must stay cheap (one STATUS per folder): the preflight
	 * fetches every message's flags and size, it was done before */
	if (c.final)
		c.no_check = true;
	if (!c.no_check)
		plan_check_run(&c, &pc);
	buf_init(&out, SIZE_MAX / 2);
	if (c.common.json) {
		struct json j;

		json_init(&j, &out);
		report_plan_json(&j, &rp, true);
		if (!c.no_check && buf_len(&out) > 0 &&
		    buf_data(&out)[buf_len(&out) - 1] == '}') {
			/* the plan object with "check" added */
			struct buf chk;

			buf_init(&chk, SIZE_MAX / 2);
			plan_check_json(&chk, &pc);
			printf("%.*s,\"check\":%s}\n", (int)buf_len(&out) - 1,
			       buf_data(&out), buf_data(&chk));
			buf_free(&chk);
		} else {
			puts(buf_data(&out));
		}
	} else {
		report_plan_text(&out, &rp);
		if (!c.no_check)
			plan_check_text(&out, &pc);
		fputs(buf_data(&out), stdout);
	}
	plan_check_free(&pc);
	buf_free(&out);
	sched_plan_free(&plan);
	for (size_t i = 0; i < c.n_accounts; i++)
		sched_account_est_free(&est[i]);
	free(est);
	status = CLI_EXIT_OK;
out:
	run_cli_free(&c);
	return status;
}
