/* status.c: imapferry status --state FILE: the progress of a run, from
 * any terminal (src/report renders it). */
#include "runcli.h"

#include "json.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const struct cli_use status_opts[] = {
	{ CLI_OPT_STATE, "the state database of the run (required)" },
	{ CLI_OPT_RUN_ID, NULL },
	{ CLI_OPT_JSON, "the report as JSON (as run --report writes it)" },
	{ CLI_OPT_VERBOSE, NULL }, { CLI_OPT_DEBUG, NULL },
	{ CLI_OPT_TRACE, NULL },
	{ CLI_OPT_NONE, NULL },
};

const struct cli_command cli_cmd_status = {
	.name = "status", .program = "imapferry",
	.synopsis = "--state FILE [--run ID] [--json]",
	.intro = "Shows the progress of the last run (or run ID) of a state\n"
	         "database: live while it runs, the summary when over.",
	.opts = status_opts,
	.trailer = CLI_EXIT_HELP,
	.min_args = 0, .max_args = 0,
};

int
cmd_status(int argc, char **argv)
{
	struct run_cli c;
	struct state_db *db = NULL;
	struct report_data rep;
	struct buf out;
	const char *error;
	int64_t now;
	bool alive;
	int status = CLI_EXIT_USAGE;

	memset(&rep, 0, sizeof(rep));
	run_cli_init(&c, argc);
	if (run_cli_args(&c, &cli_cmd_status, argc, argv, &status) < 0)
		goto out;
	if (c.state_path == NULL) {
		fprintf(stderr, "imapferry: status: --state FILE is required\n");
		fprintf(stderr, "usage: imapferry status %s\n", cli_cmd_status.synopsis);
		status = CLI_EXIT_USAGE;
		goto out;
	}
	status = CLI_EXIT_ERROR;
	if (access(c.state_path, F_OK) != 0) {
		fprintf(stderr, "imapferry: %s: %s\n", c.state_path, strerror(errno));
		goto out;
	}
	if (state_open(c.state_path, &db, &error) < 0 ||
	    report_load(db, c.run_id, &rep, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		goto out;
	}
	now = (int64_t)time(NULL);
	alive = strcmp(rep.run.status, "running") == 0 &&
	    now - rep.run.heartbeat <= 10 && rep.run.pid > 0 &&
	    (kill((pid_t)rep.run.pid, 0) == 0 || errno == EPERM);
	if (strcmp(rep.run.status, "running") == 0 && !alive) {
		free(rep.run.status);
		rep.run.status = xstrdup("interrupted");
	}
	buf_init(&out, SIZE_MAX / 2);
	if (c.common.json) {
		struct json j;

		json_init(&j, &out);
		report_json(&j, &rep, rep.view.elapsed);
		puts(buf_data(&out));
	} else {
		report_status_text(&out, &rep, now, alive);
		fputs(buf_data(&out), stdout);
	}
	buf_free(&out);
	status = CLI_EXIT_OK;
out:
	report_data_free(&rep);
	state_close(&db);
	run_cli_free(&c);
	return status;
}
