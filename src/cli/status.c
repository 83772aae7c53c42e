/* status.c: imapferry status --state FILE: the progress of a run, from
 * any terminal (src/report renders it). On a shared PostgreSQL state
 * (several machines) it adds every machine of the run: jobs running and
 * done, rate, last heartbeat, jobs lost to others (leases taken over). */
#include "runcli.h"
#include "statuschg.h"

#include "json.h"

#include <errno.h>
#include <inttypes.h>
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
	{ CLI_OPT_CHANGES, NULL },
	{ CLI_OPT_SRC_ADMIN, "with --changes: as for run" },
	{ CLI_OPT_SRC_PWFILE, "with --changes: as for run\n"
	                      "(else $IMAPFERRY_SRC_PASSWORD)" },
	{ CLI_OPT_DST_ADMIN, "with --changes: as for run" },
	{ CLI_OPT_DST_PWFILE, "with --changes: as for run\n"
	                      "(else $IMAPFERRY_DST_PASSWORD)" },
	{ CLI_OPT_MAX_SRC, NULL },
	{ CLI_OPT_INSECURE, NULL }, { CLI_OPT_CA_FILE, NULL },
	{ CLI_OPT_TLS_MIN, NULL }, { CLI_OPT_TIMEOUT, NULL },
	{ CLI_OPT_VERBOSE, NULL }, { CLI_OPT_DEBUG, NULL },
	{ CLI_OPT_TRACE, NULL },
	{ CLI_OPT_NONE, NULL },
};

const struct cli_command cli_cmd_status = {
	.name = "status", .program = "imapferry",
	.synopsis = "--state FILE [--run ID] [--json] [--changes USERS]",
	.intro = "Shows the progress of the last run (or run ID) of a state\n"
	         "database: live while it runs, the summary when over;\n"
	         "with a PostgreSQL state, every machine of the run. Per\n"
	         "account, when its last pass ended; with --changes, what\n"
	         "changed on its source since (new and expunged messages,\n"
	         "from one STATUS of every folder).",
	.opts = status_opts,
	.trailer = CLI_EXIT_HELP,
	.min_args = 0, .max_args = 0,
};

/* A machine that renewed its row in the last 10 s (2 s writes) runs. */
#define MACHINE_ALIVE_SECONDS 10

static bool
machine_alive(const struct state_machine *m)
{
	return strcmp(m->status, "running") == 0 &&
	    m->age <= MACHINE_ALIVE_SECONDS;
}

static void
machines_text(struct buf *out, const struct state_machine *m, size_t n)
{
	if (n == 0)
		return;
	ignore_result(buf_printf(out, "machines:\n"));
	for (size_t i = 0; i < n; i++) {
		char rate[32];

		report_fmt_bytes(rate, sizeof(rate), m[i].rate_bytes);
		ignore_result(buf_printf(out, "  %-16s %-11s %u running, %u done, %" PRIu64
		            " messages, %.1f msg/s, %s/s; heartbeat %llds ago; "
		            "%u lost lease%s (%s pid %lld)\n", m[i].name,
		            machine_alive(&m[i]) ? m[i].status :
		            strcmp(m[i].status, "running") == 0 ? "silent" :
		            m[i].status, machine_alive(&m[i]) ? m[i].jobs_running : 0,
		            m[i].jobs_done, m[i].messages, m[i].rate_messages, rate,
		            (long long)m[i].age, m[i].lost_leases,
		            m[i].lost_leases == 1 ? "" : "s", m[i].host,
		            (long long)m[i].pid));
	}
}

static void
machines_json(struct json *j, const struct state_machine *m, size_t n)
{
	json_arr_begin(j);
	for (size_t i = 0; i < n; i++) {
		json_obj_begin(j);
		json_key(j, "name"); json_str(j, m[i].name);
		json_key(j, "host"); json_str(j, m[i].host);
		json_key(j, "pid"); json_i64(j, m[i].pid);
		json_key(j, "status"); json_str(j, m[i].status);
		json_key(j, "alive"); json_bool(j, machine_alive(&m[i]));
		json_key(j, "workers"); json_u64(j, m[i].workers);
		json_key(j, "jobs_running"); json_u64(j, m[i].jobs_running);
		json_key(j, "jobs_done"); json_u64(j, m[i].jobs_done);
		json_key(j, "messages"); json_u64(j, m[i].messages);
		json_key(j, "bytes"); json_u64(j, m[i].bytes);
		json_key(j, "rate_messages"); json_double(j, m[i].rate_messages);
		json_key(j, "rate_bytes"); json_double(j, m[i].rate_bytes);
		json_key(j, "heartbeat"); json_i64(j, m[i].heartbeat);
		json_key(j, "heartbeat_age_seconds"); json_i64(j, m[i].age);
		json_key(j, "lost_leases"); json_u64(j, m[i].lost_leases);
		json_obj_end(j);
	}
	json_arr_end(j);
}

int
cmd_status(int argc, char **argv)
{
	struct run_cli c;
	struct state_db *db = NULL;
	struct report_data rep;
	struct buf out;
	struct state_machine *machines = NULL;
	size_t n_machines = 0;
	struct status_acct *accts = NULL;
	size_t n_accts = 0;
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
	if (!state_path_is_url(c.state_path) && access(c.state_path, F_OK) != 0) {
		fprintf(stderr, "imapferry: %s: %s\n", c.state_path, strerror(errno));
		goto out;
	}
	if (state_open(c.state_path, &db, &error) < 0 ||
	    report_load(db, c.run_id, &rep, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		goto out;
	}
	now = (int64_t)time(NULL);
	if (state_is_shared(db)) {
		/* pids of other hosts mean nothing here: the heartbeats */
		if (state_machine_list(db, rep.run.id, &machines, &n_machines,
		                       &error) < 0) {
			fprintf(stderr, "imapferry: %s\n", error);
			goto out;
		}
		alive = false;
		for (size_t i = 0; i < n_machines; i++)
			alive = alive || machine_alive(&machines[i]);
		alive = alive && strcmp(rep.run.status, "running") == 0;
	} else {
		alive = strcmp(rep.run.status, "running") == 0 &&
		    now - rep.run.heartbeat <= 10 && rep.run.pid > 0 &&
		    (kill((pid_t)rep.run.pid, 0) == 0 || errno == EPERM);
	}
	if (strcmp(rep.run.status, "running") == 0 && !alive) {
		free(rep.run.status);
		rep.run.status = xstrdup("interrupted");
	}
	if (!state_is_shared(db) && c.run_id == 0 &&
	    strcmp(rep.run.status, "done") != 0 &&
	    strcmp(rep.run.status, "running") != 0) {
		/* a run that started and has not yet taken the run over
		 * (between its start and the resume it records) */
		char *lock_path = xasprintf("%s.lock", c.state_path);

		if (run_cli_state_locked(lock_path)) {
			free(rep.run.status);
			rep.run.status = xstrdup("running");
		}
		free(lock_path);
	}
	status_accts_init(&rep, &accts, &n_accts);
	if (c.changes_users != NULL) {
		/* the run's own templates, the accounts of USERS */
		c.users_path = c.changes_users;
		c.src_tmpl = rep.run.src;
		c.dst_tmpl = rep.run.dst;
		if ((status = status_changes(&c, db, accts, n_accts)) != 0)
			goto out;
		status = CLI_EXIT_ERROR;
	}
	buf_init(&out, SIZE_MAX / 2);
	if (c.common.json) {
		struct json j;
		struct buf m;
		struct json jm;

		json_init(&j, &out);
		report_json(&j, &rep, rep.view.elapsed);
		/* the report object, with "passes" (and "machines") added */
		buf_init(&m, SIZE_MAX / 2);
		json_init(&jm, &m);
		status_accts_json(&jm, accts, n_accts);
		if (buf_len(&out) > 0 && buf_data(&out)[buf_len(&out) - 1] == '}') {
			printf("%.*s,\"passes\":%s", (int)buf_len(&out) - 1,
			       buf_data(&out), buf_data(&m));
			if (state_is_shared(db)) {
				buf_reset(&m);
				json_init(&jm, &m);
				machines_json(&jm, machines, n_machines);
				printf(",\"machines\":%s", buf_data(&m));
			}
			puts("}");
		} else {
			puts(buf_data(&out));
		}
		buf_free(&m);
	} else {
		report_status_text(&out, &rep, now, alive);
		machines_text(&out, machines, n_machines);
		status_accts_text(&out, accts, n_accts, now);
		fputs(buf_data(&out), stdout);
	}
	buf_free(&out);
	status = CLI_EXIT_OK;
out:
	status_accts_free(&accts, n_accts);
	state_machine_list_free(&machines, n_machines);
	report_data_free(&rep);
	state_close(&db);
	run_cli_free(&c);
	return status;
}
