/* report.c: imapferry report --state FILE --html OUT.html [--run ID]:
 * the report of a run as one HTML page (src/report renders it), or as
 * text or JSON on stdout. */
#include "runcli.h"

#include "json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const struct cli_use report_opts[] = {
	{ CLI_OPT_STATE, "the state database of the run (required, only\n"
	                 "read)" },
	{ CLI_OPT_RUN_ID, NULL },
	{ CLI_OPT_HTML, NULL },
	{ CLI_OPT_JSON, "the report as JSON on stdout (as run --report\n"
	                "writes it)" },
	{ CLI_OPT_VERBOSE, NULL }, { CLI_OPT_DEBUG, NULL },
	{ CLI_OPT_NONE, NULL },
};

const struct cli_command cli_cmd_report = {
	.name = "report", .program = "imapferry",
	.synopsis = "--state FILE [--html OUT.html] [--run ID] [--json]",
	.intro = "Writes the report of the last run (or run ID) of a state\n"
	         "database as one self-contained HTML page (--html), or prints\n"
	         "the summary with the failures by reason (text, or --json).",
	.opts = report_opts,
	.trailer = CLI_EXIT_HELP,
	.min_args = 0, .max_args = 0,
};

int
cmd_report(int argc, char **argv)
{
	struct run_cli c;
	struct state_db *db = NULL;
	struct report_data rep;
	struct buf out;
	const char *error;
	int status = CLI_EXIT_USAGE;

	memset(&rep, 0, sizeof(rep));
	buf_init(&out, SIZE_MAX / 2);
	run_cli_init(&c, argc);
	if (run_cli_args(&c, &cli_cmd_report, argc, argv, &status) < 0)
		goto out;
	if (c.state_path == NULL) {
		fprintf(stderr, "imapferry: report: --state FILE is required\n");
		fprintf(stderr, "usage: imapferry report %s\n",
		        cli_cmd_report.synopsis);
		status = CLI_EXIT_USAGE;
		goto out;
	}
	status = CLI_EXIT_ERROR;
	/* state_open() would create a missing file */
	if (access(c.state_path, F_OK) != 0) {
		fprintf(stderr, "imapferry: %s: %s\n", c.state_path, strerror(errno));
		goto out;
	}
	if (state_open(c.state_path, &db, &error) < 0 ||
	    report_load(db, c.run_id, &rep, &error) < 0 ||
	    report_load_folders(db, &rep, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		goto out;
	}
	if (c.html_path != NULL) {
		if (report_html_write(c.html_path, &rep, (int64_t)time(NULL),
		                      &error) < 0) {
			fprintf(stderr, "imapferry: --html %s\n", error);
			goto out;
		}
		fprintf(stderr, "imapferry: run %lld: report written to %s\n",
		        (long long)rep.run.id, c.html_path);
	} else if (c.common.json) {
		struct json j;

		json_init(&j, &out);
		report_json(&j, &rep, rep.view.elapsed);
		ignore_result(buf_append_str(&out, "\n"));
		fputs(buf_data(&out), stdout);
	} else {
		report_summary_text(&out, &rep);
		fputs(buf_data(&out), stdout);
	}
	status = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_ERROR;
out:
	buf_free(&out);
	report_data_free(&rep);
	state_close(&db);
	run_cli_free(&c);
	return status;
}
