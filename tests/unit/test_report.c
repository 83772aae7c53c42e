/* test_report.c: src/report: plan text and JSON, progress display,
 * summary, status text and JSON report rendered from constructed structs
 * (exact output), and report files written mode 0600 and atomically. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "report.h"
#include "tmpdir.h"

/* ------------------------------------------------------------- units */

static void
test_units(void **state)
{
	static const struct { double v; const char *bytes, *dur; } t[] = {
		{ 0, "0 B", "0.0s" },
		{ 999, "999 B", "16m39s" },
		{ 1000, "1.0 KB", "16m40s" },
		{ 1500000, "1.5 MB", "416h40m" },
		{ 9.94, "10 B", "9.9s" },
		{ 42.4, "42 B", "42s" },
		{ 3600, "3.6 KB", "1h00m" },
	};
	char b[32];

	for (size_t i = 0; i < N_ELEMENTS(t); i++) {
		report_fmt_bytes(b, sizeof(b), t[i].v);
		assert_string_equal(b, t[i].bytes);
		report_fmt_duration(b, sizeof(b), t[i].v);
		assert_string_equal(b, t[i].dur);
	}
	report_fmt_duration(b, sizeof(b), -1);
	assert_string_equal(b, "?");
	report_fmt_bytes(b, sizeof(b), 5e15);
	assert_string_equal(b, "5000.0 TB");
}

/* -------------------------------------------------------------- plan */

/* Two accounts: alice split in two parts (INBOX, the rest), bob whole
 * and failed in the inventory. */
struct plan_fixture {
	struct sched_plan plan;
	struct sched_cost cost;
	struct sched_account_est est[2];
	struct sched_account acc[2];
	struct sched_job jobs[3];
	double predicted[3];
	char *inbox[2], *exclude[2], *notes[2];
};

static void
plan_fixture_init(struct plan_fixture *f)
{
	memset(f, 0, sizeof(*f));
	f->inbox[0] = (char *)"INBOX";
	f->exclude[0] = (char *)"INBOX";
	f->notes[0] = (char *)"alice split into 2 parts";
	f->acc[0].src_user = (char *)"alice";
	f->acc[0].dst_user = (char *)"alice2";
	f->acc[1].src_user = (char *)"bob";
	f->acc[1].dst_user = (char *)"bob";
	f->est[1].error = (char *)"login refused";
	f->jobs[0] = (struct sched_job){ .account = 0, .part = 1, .parts = 2,
		.folders = f->inbox, .n_folders = 1, .est_folders = 1,
		.est_messages = 1200, .est_bytes = 15000000, .est_seconds = 65 };
	f->jobs[1] = (struct sched_job){ .account = 0, .part = 2, .parts = 2,
		.rest = true, .exclude = f->exclude, .n_exclude = 1,
		.est_folders = 7, .est_messages = 300, .est_bytes = 2500,
		.est_seconds = 4.25 };
	f->jobs[2] = (struct sched_job){ .account = 1, .part = 1, .parts = 1,
		.est_seconds = 0.3 };
	f->predicted[1] = 69.55;
	f->predicted[2] = 65;
	f->plan = (struct sched_plan){ .jobs = f->jobs, .n_jobs = 3,
		.n_accounts = 2, .workers = 2, .total_seconds = 69.55,
		.threshold = 34.775, .messages = 1500, .bytes = 15002500,
		.predicted = f->predicted, .notes = f->notes, .n_notes = 1 };
	sched_cost_default(&f->cost);
}

static void
report_plan_of(const struct plan_fixture *f, struct report_plan *rp)
{
	*rp = (struct report_plan){ .plan = &f->plan, .cost = &f->cost,
		.est = f->est, .accounts = f->acc, .max_conc = 2,
		.plan_seconds = 1.5, .now = 1700000000 };
}

static void
test_plan_text(void **state)
{
	struct plan_fixture f;
	struct report_plan rp;
	struct buf out;

	plan_fixture_init(&f);
	report_plan_of(&f, &rp);
	setenv("TZ", "UTC", 1);
	tzset();
	buf_init(&out, 1 << 20);
	report_plan_text(&out, &rp);
	assert_string_equal(buf_data(&out),
	    "order account                      part   folders                   messages       size       est\n"
	    "1     alice                        1/2    INBOX                         1200    15.0 MB     1m05s\n"
	    "2     alice                        2/2    all but 1                      300     2.5 KB      4.2s\n"
	    "3     bob                          1/1    (inventory failed)               0        0 B      0.3s\n"
	    "note: alice split into 2 parts\n"
	    "\n"
	    "2 accounts, 3 jobs, 1500 messages, 15.0 MB; 1m10s of work; split above 34.8 s\n"
	    "cost model (defaults): 5.000 ms/message + 50.00 ms/MB, 50 ms/folder (2.0 ms STATUS), 300 ms/account; average message 60.0 KB\n"
	    "predicted time: 1 worker 1m10s, 2 workers 1m05s\n"
	    "with 2 workers (at most 2 at once by the connection caps): about 65 s, ending about 2023-11-14 22:14 (planning took 1.5s)\n");
	buf_free(&out);
}

static void
test_plan_json(void **state)
{
	struct plan_fixture f;
	struct report_plan rp;
	struct buf out;
	struct json j;

	plan_fixture_init(&f);
	report_plan_of(&f, &rp);
	buf_init(&out, 1 << 20);
	json_init(&j, &out);
	report_plan_json(&j, &rp, true);
	assert_string_equal(buf_data(&out),
	    "{\"accounts\":2,\"workers\":2,\"max_concurrency\":2,"
	    "\"messages\":1500,\"bytes\":15002500,\"total_work_s\":69.550,"
	    "\"split_threshold_s\":34.775,\"estimated_seconds\":65.000,"
	    "\"estimated_end\":1700000065,\"predicted_seconds\":["
	    "{\"workers\":1,\"seconds\":69.550},{\"workers\":2,\"seconds\":65.000}],"
	    "\"cost\":{\"calibrated\":false,\"per_account_ms\":300,"
	    "\"per_folder_ms\":50,\"status_per_folder_ms\":2,"
	    "\"per_message_ms\":5,"
	    "\"per_megabyte_ms\":50,\"avg_message_size\":60000,"
	    "\"parallel_sessions\":0,\"parallel_speedup\":0,"
	    "\"sample_messages\":0,\"sample_bytes\":0,\"sample_seconds\":0,"
	    "\"target_probed\":false},"
	    "\"notes\":[\"alice split into 2 parts\"],\"jobs\":["
	    "{\"order\":1,\"src_user\":\"alice\",\"dst_user\":\"alice2\","
	    "\"part\":1,\"parts\":2,\"folders\":[\"INBOX\"],\"rest\":false,"
	    "\"messages\":1200,\"bytes\":15000000,\"seconds\":65.000},"
	    "{\"order\":2,\"src_user\":\"alice\",\"dst_user\":\"alice2\","
	    "\"part\":2,\"parts\":2,\"folders\":null,\"rest\":true,"
	    "\"exclude\":[\"INBOX\"],\"messages\":300,\"bytes\":2500,"
	    "\"seconds\":4.250},"
	    "{\"order\":3,\"src_user\":\"bob\",\"dst_user\":\"bob\",\"part\":1,"
	    "\"parts\":1,\"folders\":null,\"rest\":false,\"messages\":0,"
	    "\"bytes\":0,\"seconds\":0.300,\"error\":\"login refused\"}],"
	    "\"inventory\":[{\"account\":\"alice\",\"folders\":[]},"
	    "{\"account\":\"bob\",\"error\":\"login refused\","
	    "\"folders\":[]}]}");
	/* without the jobs (what the state database keeps) */
	buf_reset(&out);
	json_init(&j, &out);
	report_plan_json(&j, &rp, false);
	assert_null(strstr(buf_data(&out), "\"jobs\""));
	{
		static const char tail[] = "\"notes\":[\"alice split into 2 parts\"]}";

		assert_string_equal(buf_data(&out) + buf_len(&out) - strlen(tail),
		                    tail);
	}
	buf_free(&out);
}

/* ----------------------------------------------------------- display */

static void
view_fixture(struct sched_view *v, struct sched_view_job *active)
{
	memset(v, 0, sizeof(*v));
	memset(active, 0, 2 * sizeof(*active));
	active[0] = (struct sched_view_job){ .src_user = (char *)"alice",
		.part = 1, .parts = 2, .attempts = 2, .messages = 600,
		.est_messages = 1200, .bytes = 7500000, .seconds = 30 };
	active[1] = (struct sched_view_job){
		.src_user = (char *)"a-very-long-user-name@example.org",
		.part = 1, .parts = 1, .attempts = 1, .messages = 1,
		.est_messages = 10, .bytes = 999, .seconds = 2 };
	v->jobs = 3;
	v->done = 1;
	v->running = 2;
	v->messages = 750;
	v->est_messages = 1500;
	v->bytes = 7502500;
	v->est_bytes = 15002500;
	v->fraction = 0.5;
	v->elapsed = 75;
	v->rate_messages = 10;
	v->rate_bytes = 100000;
	v->eta_seconds = 75;
	v->active = active;
	v->n_active = 2;
}

static void
test_display(void **state)
{
	struct sched_view_job active[2];
	struct sched_view v;
	struct report_display d = { .mode = REPORT_PROGRESS_PLAIN };
	struct buf out;

	view_fixture(&v, active);
	buf_init(&out, 1 << 20);
	report_display_render(&d, &v, false, 100, 80, &out);
	assert_string_equal(buf_data(&out),
	    "progress:  50% 750/1500 messages, 7.5 MB/15.0 MB, 10 msg/s, "
	    "100.0 KB/s, elapsed 1m15s, ETA 1m15s; jobs: 1 done, 2 running, "
	    "0 pending, 0 failed\n");
	/* plain: one line per 10 s, and the final one always */
	buf_reset(&out);
	report_display_render(&d, &v, false, 105, 80, &out);
	assert_int_equal(buf_len(&out), 0);
	report_display_render(&d, &v, true, 106, 80, &out);
	assert_true(buf_len(&out) > 0);

	/* tty: bar, two halves, one line per running job, cut to width-1 */
	d = (struct report_display){ .mode = REPORT_PROGRESS_TTY };
	buf_reset(&out);
	report_display_render(&d, &v, false, 100, 60, &out);
	assert_string_equal(buf_data(&out),
	    "[##########..........]  50% 750/1500 messages, 7.5 MB/15.0 \n"
	    "  10 msg/s, 100.0 KB/s, elapsed 1m15s, ETA 1m15s; jobs: 1 d\n"
	    "  alice                        1/2       600/1200    msgs  \n"
	    "  a-very-long-user-name@exampl 1/1         1/10      msgs  \n");
	assert_int_equal(d.lines, 4);
	/* the next drawing first goes up over the last one */
	buf_reset(&out);
	report_display_render(&d, &v, false, 101, 200, &out);
	assert_memory_equal(buf_data(&out), "\033[4A\r\033[J[####", 13);
	assert_non_null(strstr(buf_data(&out),
	    "  alice                        1/2       600/1200    msgs     "
	    "7.5 MB     30s  attempt 2\n"));
	/* none: nothing */
	d.mode = REPORT_PROGRESS_NONE;
	buf_reset(&out);
	report_display_render(&d, &v, true, 200, 80, &out);
	assert_int_equal(buf_len(&out), 0);
	buf_free(&out);
}

/* ------------------------------------------------ summary and report */

static void
add_job(struct report_data *d, const char *account, const char *user,
        enum state_job_status status, uint64_t messages, uint64_t failed,
        unsigned attempts, const char *error)
{
	struct state_job *j = &d->jobs[d->n_jobs++];

	memset(j, 0, sizeof(*j));
	j->account = xstrdup(account);
	j->src_user = xstrdup(user);
	j->dst_user = xstrdup(user);
	j->status = status;
	j->messages = messages;
	j->bytes = messages * 1000;
	j->failed = failed;
	j->attempts = attempts;
	j->seconds = 10;
	j->est_messages = messages + 5;
	j->error = xstrdup(error);
}

static void
add_failure(struct report_data *d, const char *account, const char *folder,
            uint32_t uid, enum state_scope scope, const char *reason)
{
	struct state_failure *f = &d->fl[d->n_fl_all++];

	f->account = xstrdup(account);
	f->folder = xstrdup(folder);
	f->src_uid = uid;
	f->scope = scope;
	f->reason = xstrdup(reason);
	f->attempts = 1;
}

/* A finished run: alice done with one failed message (two jobs), bob
 * failed; a failure of an account of another run is not shown. */
static void
data_fixture(struct report_data *d)
{
	memset(d, 0, sizeof(*d));
	d->run.id = 7;
	d->run.status = xstrdup("failed");
	d->run.error = xstrdup("1 job failed; run again to retry them");
	d->run.pid = 4242;
	d->run.started = 1700000000;
	d->run.finished = 1700000100;
	d->run.heartbeat = 1700000100;
	d->run.workers = 2;
	d->run.est_seconds = 90;
	d->jobs = xcalloc(4, sizeof(*d->jobs));
	add_job(d, "k-alice", "alice", STATE_JOB_DONE, 100, 1, 1, "");
	add_job(d, "k-bob", "bob", STATE_JOB_FAILED, 0, 0, 3,
	        "login refused: [AUTHENTICATIONFAILED]");
	add_job(d, "k-alice", "alice", STATE_JOB_DONE, 50, 0, 2, "");
	d->fl = xcalloc(4, sizeof(*d->fl));
	add_failure(d, "k-other", "INBOX", 1, STATE_SCOPE_MESSAGE, "other run");
	add_failure(d, "k-alice", "Sent", 12, STATE_SCOPE_MESSAGE,
	            "refused by the target: too big");
	d->view.jobs = 3;
	d->view.done = 2;
	d->view.failed = 1;
	d->view.messages = 150;
	d->view.est_messages = 165;
	d->view.fraction = 1;
	d->view.eta_seconds = 0;
	report_data_summarize(d);
}

static void
test_summary(void **state)
{
	struct report_data d;
	struct buf out;

	data_fixture(&d);
	assert_int_equal(d.n_accounts, 2);
	assert_int_equal(d.n_fl, 1);
	assert_string_equal(d.fl[0].account, "k-alice");
	assert_string_equal(report_account_status(&d.accounts[0]), "done*");
	assert_string_equal(report_account_status(&d.accounts[1]), "failed");
	buf_init(&out, 1 << 20);
	report_summary_text(&out, &d);
	assert_string_equal(buf_data(&out),
	    "account                      status    messages       size     time attempts  errors\n"
	    "alice                        done*          150   150.0 KB      20s        2  1 recorded failure\n"
	    "    Sent UID 12: refused by the target: too big\n"
	    "bob                          failed           0        0 B      10s        3  login refused: [AUTHENTICATIONFAILED]\n"
	    "failures by reason:\n"
	    "  too-large: 1\n"
	    "    alice Sent UID 12: refused by the target: too big\n");
	/* status of a dead run: header, bar, progress, then the summary */
	buf_reset(&out);
	report_status_text(&out, &d, 1700000160, false);
	assert_string_equal(buf_data(&out),
	    "run 7: failed: 1 job failed; run again to retry them (pid 4242, "
	    "last update 1m00s ago); plan estimate 90 s\n"
	    "[########################################] 100% 150/165 messages, "
	    "0 B/0 B\n  0 msg/s, 0 B/s, elapsed 0.0s, ETA 0.0s; jobs: 2 done, "
	    "0 running, 0 pending, 1 failed\n"
	    "\n"
	    "account                      status    messages       size     time attempts  errors\n"
	    "alice                        done*          150   150.0 KB      20s        2  1 recorded failure\n"
	    "    Sent UID 12: refused by the target: too big\n"
	    "bob                          failed           0        0 B      10s        3  login refused: [AUTHENTICATIONFAILED]\n"
	    "failures by reason:\n"
	    "  too-large: 1\n"
	    "    alice Sent UID 12: refused by the target: too big\n");
	buf_free(&out);
	report_data_free(&d);
	assert_null(d.jobs);
	assert_null(d.accounts);
}

static void
test_summary_many_failures(void **state)
{
	struct report_data d;
	struct buf out;

	memset(&d, 0, sizeof(d));
	d.run.status = xstrdup("done");
	d.run.error = xstrdup("");
	d.jobs = xcalloc(1, sizeof(*d.jobs));
	add_job(&d, "k", "carol", STATE_JOB_DONE, 10, 7, 1, "");
	d.fl = xcalloc(7, sizeof(*d.fl));
	for (uint32_t i = 1; i <= 7; i++)
		add_failure(&d, "k", i == 7 ? "" : "INBOX", i == 7 ? 0 : i,
		            i == 7 ? STATE_SCOPE_SESSION : STATE_SCOPE_MESSAGE, "no");
	report_data_summarize(&d);
	buf_init(&out, 1 << 20);
	report_summary_text(&out, &d);
	assert_non_null(strstr(buf_data(&out), "7 recorded failures\n"
	    "    INBOX UID 1: no\n"));
	assert_non_null(strstr(buf_data(&out), "    INBOX UID 5: no\n"
	    "    ... 2 more (see --report)\n"));
	/* per account at most 5; by reason all of them */
	*strstr(buf_data(&out), "failures by reason:") = '\0';
	assert_null(strstr(buf_data(&out), "UID 6"));
	buf_reset(&out);
	report_reasons_text(&out, &d, 0);
	assert_string_equal(buf_data(&out), "failures by reason:\n"
	    "  refused-by-target: 6\n"
	    "    carol INBOX UID 1: no\n    carol INBOX UID 2: no\n"
	    "    carol INBOX UID 3: no\n    carol INBOX UID 4: no\n"
	    "    carol INBOX UID 5: no\n    carol INBOX UID 6: no\n"
	    "  session: 1\n"
	    "    carol (session): no\n");
	buf_reset(&out);
	report_reasons_text(&out, &d, 2);
	assert_non_null(strstr(buf_data(&out), "UID 2: no\n    ... 4 more"));
	buf_free(&out);
	report_data_free(&d);
}

static const char report_expected[] =
	"{\"run\":7,\"status\":\"failed\","
	"\"error\":\"1 job failed; run again to retry them\",\"pid\":4242,"
	"\"started\":1700000000,\"finished\":1700000100,"
	"\"heartbeat\":1700000100,\"workers\":2,\"estimated_seconds\":90.000,"
	"\"elapsed_seconds\":98.500,\"progress\":{\"fraction\":1.000,"
	"\"messages\":150,\"bytes\":0,\"est_messages\":165,\"est_bytes\":0,"
	"\"rate_messages\":0.000,\"rate_bytes\":0.000,\"eta_seconds\":0.000,"
	"\"jobs\":3,\"pending\":0,\"running\":0,\"done\":2,\"failed\":1},"
	"\"active\":[],\"accounts\":["
	"{\"src_user\":\"alice\",\"dst_user\":\"alice\",\"account\":\"k-alice\","
	"\"status\":\"done*\",\"jobs\":2,\"messages\":150,\"bytes\":150000,"
	"\"skipped\":0,\"failed_messages\":1,\"folders_failed\":0,"
	"\"est_messages\":160,\"est_bytes\":0,\"seconds\":20.000,\"attempts\":2,"
	"\"errors\":[{\"scope\":\"message\",\"category\":\"too-large\","
	"\"folder\":\"Sent\",\"uid\":12,"
	"\"reason\":\"refused by the target: too big\",\"attempts\":1}]},"
	"{\"src_user\":\"bob\",\"dst_user\":\"bob\",\"account\":\"k-bob\","
	"\"status\":\"failed\",\"jobs\":1,\"messages\":0,\"bytes\":0,"
	"\"skipped\":0,\"failed_messages\":0,\"folders_failed\":0,"
	"\"est_messages\":5,\"est_bytes\":0,\"seconds\":10.000,\"attempts\":3,"
	"\"errors\":[{\"scope\":\"job\","
	"\"reason\":\"login refused: [AUTHENTICATIONFAILED]\"}]}],"
	"\"failure_counts\":{\"refused-by-target\":0,\"too-large\":1,"
	"\"over-quota\":0,\"uid-conflict\":0,\"source-vanished\":0,"
	"\"source-folder-failed\":0,\"target-folder-failed\":0,"
	"\"session\":0,\"run\":0},"
	"\"failures\":[{\"category\":\"too-large\",\"account\":\"k-alice\","
	"\"src_user\":\"alice\",\"scope\":\"message\",\"folder\":\"Sent\","
	"\"uid\":12,\"reason\":\"refused by the target: too big\","
	"\"attempts\":1,\"when\":0}]}";

static void
test_report_json(void **state)
{
	struct report_data d;
	struct buf out;
	struct json j;

	data_fixture(&d);
	buf_init(&out, 1 << 20);
	json_init(&j, &out);
	report_json(&j, &d, 98.5);
	assert_string_equal(buf_data(&out), report_expected);
	buf_free(&out);
	report_data_free(&d);
}

/* --bodies-from: the counts per account (summed over its jobs) and in
 * total, in the summary, the status of a live run, the JSON and the
 * page; an account without them shows nothing. */
static void
test_bodies(void **state)
{
	struct report_data d;
	struct buf out;
	struct json j;
	const char *s;

	data_fixture(&d);
	d.run.src = xstrdup("imap://%u@old");
	d.run.dst = xstrdup("maildir:/srv/%u");
	/* alice's two jobs; bob (failed at login) read none */
	d.jobs[0].bodies = (struct state_bodies){ .spool = 90, .imap = 10,
	    .missing = 3, .size = 2, .uidvalidity = 5 };
	d.jobs[2].bodies = (struct state_bodies){ .spool = 49, .imap = 1,
	    .error = 1 };
	/* summed again */
	for (size_t i = 0; i < d.n_accounts; i++)
		free(d.accounts[i].errors);
	free(d.accounts);
	report_data_summarize(&d);
	assert_int_equal(d.accounts[0].bodies.spool, 139);
	assert_int_equal(d.accounts[0].bodies.imap, 11);
	buf_init(&out, 1 << 20);
	report_summary_text(&out, &d);
	s = buf_data(&out);
	assert_non_null(strstr(s, "1 recorded failure\n"
	    "    bodies: 139 from the Cyrus spool, 11 over IMAP (3 missing in "
	    "the spool, 2 of another size, 5 in folders of another UIDVALIDITY, "
	    "1 unreadable in the spool)\n    Sent UID 12"));
	assert_non_null(strstr(s, "[AUTHENTICATIONFAILED]\n"
	    "bodies (all accounts): 139 from the Cyrus spool, 11 over IMAP (3 "
	    "missing in the spool, 2 of another size, 5 in folders of another "
	    "UIDVALIDITY, 1 unreadable in the spool)\nfailures by reason:"));
	/* a live run's status: the total of the attempts ended so far */
	buf_reset(&out);
	report_status_text(&out, &d, 1700000160, true);
	assert_non_null(strstr(buf_data(&out), "1 failed\n  bodies: 139 from "
	    "the Cyrus spool, 11 over IMAP (3 missing"));
	buf_reset(&out);
	json_init(&j, &out);
	report_json(&j, &d, 98.5);
	s = buf_data(&out);
	assert_non_null(strstr(s, "\"failed\":1},\"bodies\":{\"from_spool\":139,"
	    "\"over_imap\":11,\"missing\":3,\"size\":2,\"uidvalidity\":5,"
	    "\"error\":1},\"active\""));
	assert_non_null(strstr(s, "\"attempts\":2,\"bodies\":{\"from_spool\":139,"));
	/* bob: none */
	assert_null(strstr(strstr(s, "\"src_user\":\"bob\""), "bodies"));
	buf_reset(&out);
	report_html(&out, &d, 1700000200);
	assert_non_null(strstr(buf_data(&out), "Bodies from the Cyrus spool"));
	assert_non_null(strstr(buf_data(&out), "139 from the Cyrus spool, 11 "
	    "over IMAP (3 missing in the spool"));
	buf_free(&out);
	report_data_free(&d);

	/* none: nothing in the page either */
	data_fixture(&d);
	d.run.src = xstrdup("imap://%u@old");
	d.run.dst = xstrdup("maildir:/srv/%u");
	buf_init(&out, 1 << 22);
	report_html(&out, &d, 1700000200);
	assert_null(strstr(buf_data(&out), "Bodies from"));
	buf_free(&out);
	report_data_free(&d);
}

/* ----------------------------------------------------------- reasons */

static void
test_reasons(void **state)
{
	static const struct {
		enum state_scope scope;
		const char *text;
		enum report_reason want;
	} t[] = {
		{ STATE_SCOPE_MESSAGE, "[TOOBIG] Message too large",
		  REPORT_REASON_TOO_LARGE },
		{ STATE_SCOPE_MESSAGE, "message exceeds APPENDLIMIT",
		  REPORT_REASON_TOO_LARGE },
		{ STATE_SCOPE_MESSAGE, "[OVERQUOTA] Quota exceeded (mailbox "
		  "for user is full)", REPORT_REASON_OVER_QUOTA },
		{ STATE_SCOPE_MESSAGE, "UID 7 is below the Maildir folder's "
		  "UIDNEXT 9: it cannot keep its UID", REPORT_REASON_UID_CONFLICT },
		{ STATE_SCOPE_MESSAGE, "UID 3 on the target holds another message",
		  REPORT_REASON_UID_CONFLICT },
		{ STATE_SCOPE_MESSAGE, "[EXPUNGEISSUED] Some messages were "
		  "expunged", REPORT_REASON_VANISHED },
		{ STATE_SCOPE_MESSAGE, "[PARSE] bad header", REPORT_REASON_REFUSED },
		{ STATE_SCOPE_MESSAGE, "", REPORT_REASON_REFUSED },
		{ STATE_SCOPE_FOLDER, "cannot examine Lists on the source: "
		  "[NONEXISTENT] Mailbox doesn't exist", REPORT_REASON_VANISHED },
		{ STATE_SCOPE_FOLDER, "cannot examine Lists on the source: BAD",
		  REPORT_REASON_SOURCE_FOLDER },
		{ STATE_SCOPE_FOLDER, "Lists: target refused CREATE: [CANNOT] x",
		  REPORT_REASON_TARGET_FOLDER },
		{ STATE_SCOPE_SESSION, "too big", REPORT_REASON_SESSION },
		{ STATE_SCOPE_RUN, "disk full", REPORT_REASON_RUN },
	};

	for (size_t i = 0; i < N_ELEMENTS(t); i++) {
		struct state_failure f = { .scope = t[i].scope,
		                           .reason = (char *)t[i].text };

		assert_int_equal(report_failure_reason(&f), t[i].want);
	}
	assert_string_equal(report_reason_name(REPORT_REASON_TOO_LARGE),
	                    "too-large");
	assert_string_equal(report_reason_label(REPORT_REASON_REFUSED),
	                    "refused by the target");
	assert_string_equal(report_scope_name(-1), "run");
}

/* -------------------------------------------------------------- HTML */

static void
test_lanes_spread(void **state)
{
	/* 5 jobs on 2 workers; job 3 never started; job 4 starts when job 0
	 * ends (the lane is free again) */
	const int64_t start[] = { 100, 100, 105, 0, 110, 111 };
	const int64_t end[] = { 110, 120, 108, 0, 130, 112 };
	const double val[] = { 10, 20, 0, 99, 40, 5 };
	int lanes[6];
	double b[4];

	assert_int_equal(report_assign_lanes(start, end, 6, lanes), 3);
	assert_int_equal(lanes[0], 0);
	assert_int_equal(lanes[1], 1);
	assert_int_equal(lanes[2], 2);
	assert_int_equal(lanes[3], -1);
	assert_int_equal(lanes[4], 0);
	assert_int_equal(lanes[5], 2);
	/* buckets of 10 s from 100: job 0 all in the first, job 1 half and
	 * half, job 4 half and half of the next two, job 5 in the second */
	report_spread(start, end, val, 6, 100, 10, b, 4);
	assert_true(fabs(b[0] - 20) < 1e-9);
	assert_true(fabs(b[1] - 35) < 1e-9);
	assert_true(fabs(b[2] - 20) < 1e-9);
	assert_true(fabs(b[3] - 0) < 1e-9);
}

static bool
is_void_element(const char *name, size_t len)
{
	static const char *const v[] = { "meta", "br", "hr", "img", "input",
	                                  "link" };

	for (size_t i = 0; i < N_ELEMENTS(v); i++)
		if (strlen(v[i]) == len && memcmp(v[i], name, len) == 0)
			return true;
	return false;
}

/* A small check of the page's structure: every element closed in order
 * (void and self-closed elements aside), no '<' in text that does not
 * start a tag, script and style bodies skipped. Returns the number of
 * elements, or fails the test. */
static size_t
html_check(const char *html)
{
	char stack[256][24];
	size_t depth = 0, elements = 0;
	const char *p = html;

	assert_true(strncmp(p, "<!DOCTYPE html>", 15) == 0);
	p += 15;
	while ((p = strchr(p, '<')) != NULL) {
		const char *name, *end;
		size_t len;
		bool closing = p[1] == '/';

		name = p + 1 + closing;
		len = strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789");
		assert_true(len > 0 && len < sizeof(stack[0]));
		end = strchr(name, '>');
		assert_non_null(end);
		/* no '<' inside a tag: attribute values are escaped */
		assert_true(memchr(name, '<', (size_t)(end - name)) == NULL);
		if (closing) {
			assert_true(depth > 0);
			depth--;
			assert_int_equal(strlen(stack[depth]), len);
			assert_memory_equal(stack[depth], name, len);
		} else {
			elements++;
			if (end[-1] != '/' && !is_void_element(name, len)) {
				assert_true(depth < N_ELEMENTS(stack));
				memcpy(stack[depth], name, len);
				stack[depth][len] = '\0';
				depth++;
			}
			if ((len == 6 && memcmp(name, "script", 6) == 0) ||
			    (len == 5 && memcmp(name, "style", 5) == 0)) {
				char close[16];

				snprintf(close, sizeof(close), "</%.*s>", (int)len, name);
				end = strstr(end, close);
				assert_non_null(end);
				end--;
			}
		}
		p = end + 1;
	}
	assert_int_equal(depth, 0);
	return elements;
}

static size_t
count_str(const char *s, const char *what)
{
	size_t n = 0;

	while ((s = strstr(s, what)) != NULL) {
		n++;
		s += strlen(what);
	}
	return n;
}

static void
test_html(void **state)
{
	static const char hostile[] = "<script>alert(1)</script>&\"'";
	struct report_data d;
	struct buf out;
	const char *h;

	/* the fixture with times (alice's two jobs back to back, bob's
	 * beside them), a hostile folder name, account name and server
	 * texts; then summarized again, since accounts borrow the strings */
	data_fixture(&d);
	d.run.src = xstrdup("imap://%u@old.example.org");
	d.run.dst = xstrdup("imap://%u@<b>new</b>");
	free(d.fl[0].folder);    /* alice's, first after summarizing */
	d.fl[0].folder = xstrdup(hostile);
	free(d.fl[0].reason);
	d.fl[0].reason = xstrdup("[TOOBIG] <img src=x onerror=alert(2)>");
	free(d.jobs[1].error);
	d.jobs[1].error = xstrdup("login refused: <i>no</i>");
	free(d.jobs[1].src_user);
	d.jobs[1].src_user = xstrdup("bob<svg onload=alert(3)>");
	d.jobs[0].id = 1;
	d.jobs[0].started = 1700000000;
	d.jobs[0].finished = 1700000040;
	d.jobs[1].id = 2;
	d.jobs[1].started = 1700000010;
	d.jobs[1].finished = 1700000020;
	d.jobs[2].id = 3;
	d.jobs[2].started = 1700000040;
	d.jobs[2].finished = 1700000090;
	for (size_t i = 0; i < d.n_accounts; i++)
		free(d.accounts[i].errors);
	free(d.accounts);
	report_data_summarize(&d);
	d.accounts[0].folders = 4;

	buf_init(&out, 1 << 22);
	report_html(&out, &d, 1700000100);
	h = buf_data(&out);
	assert_true(html_check(h) > 50);
	/* the sections */
	assert_non_null(strstr(h, "<section id=\"glance\">"));
	assert_non_null(strstr(h, "<section id=\"timeline\">"));
	assert_non_null(strstr(h, "<section id=\"throughput\">"));
	assert_non_null(strstr(h, "<section id=\"distribution\">"));
	assert_non_null(strstr(h, "<section id=\"accounts\">"));
	assert_non_null(strstr(h, "<section id=\"failures\">"));
	assert_non_null(strstr(h, "No verification recorded"));
	/* SVG: one bar per job, two lanes (alice's jobs back to back) */
	assert_int_equal(count_str(h, "<svg "), 5);
	assert_int_equal(count_str(h, "<rect class=\"bar "), 3);
	assert_non_null(strstr(h, "3 jobs in 2 lanes"));
	assert_non_null(strstr(h, "<rect class=\"bar partial\" data-job=\"1\""));
	assert_non_null(strstr(h, "<rect class=\"bar failed\" data-job=\"2\""));
	/* the table: one row per account, numbers sortable by data-v */
	assert_int_equal(count_str(h, "<tr data-account="), 2);
	assert_non_null(strstr(h, "<td data-v=\"4\">4</td>"));
	assert_non_null(strstr(h, "too-large 1"));
	/* failures grouped by reason */
	assert_non_null(strstr(h, "<h3 id=\"reason-too-large\">too large for "
	                          "the target <span class=\"count\">(1)"));
	assert_int_equal(count_str(h, "<tr class=\"failure\""), 1);
	assert_int_equal(count_str(h, "<tr class=\"joberror\""), 1);
	/* every text escaped: the only script element is the page's own */
	assert_int_equal(count_str(h, "<script"), 1);
	assert_null(strstr(h, "<img"));
	assert_null(strstr(h, "<svg onload"));
	assert_null(strstr(h, "<i>"));
	assert_null(strstr(h, "<b>"));
	assert_non_null(strstr(h, "&lt;script&gt;alert(1)&lt;/script&gt;"
	                          "&amp;&quot;&#39;"));
	assert_non_null(strstr(h, "bob&lt;svg onload=alert(3)&gt;"));
	/* self-contained */
	assert_null(strstr(h, "http://"));
	assert_null(strstr(h, "https://"));
	assert_null(strstr(h, " src=\""));
	assert_null(strstr(h, " href="));
	assert_non_null(strstr(h, "@media print"));
	assert_non_null(strstr(h, "name=\"viewport\""));
	buf_free(&out);
	report_data_free(&d);
}

static void
test_html_empty(void **state)
{
	struct report_data d;
	struct buf out;

	memset(&d, 0, sizeof(d));
	d.run.id = 1;
	d.run.status = xstrdup("running");
	d.run.error = xstrdup("");
	d.run.src = xstrdup("");
	d.run.dst = xstrdup("");
	d.run.started = 1700000000;
	report_data_summarize(&d);
	buf_init(&out, 1 << 20);
	report_html(&out, &d, 1700000005);
	html_check(buf_data(&out));
	assert_non_null(strstr(buf_data(&out), "No job has started."));
	assert_non_null(strstr(buf_data(&out), "No failure recorded."));
	buf_free(&out);
	report_data_free(&d);
}

/* ----------------------------------------------------------- metrics */

static void
test_metrics(void **state)
{
	struct state_job jobs[3];
	const char *src[] = { "old.example.org", "old.example.org", "b\"\\\n" };
	const char *dst[] = { "new:143", "new:143", "maildir" };
	struct report_metrics m = {
		.run_id = 3, .jobs = jobs, .n_jobs = 3, .src_host = src,
		.dst_host = dst, .rate_messages = 12.5, .rate_bytes = 1000,
		.eta_seconds = 9.5, .started = 1700000000, .now = 1700000050,
	};
	struct buf out;

	memset(jobs, 0, sizeof(jobs));
	jobs[0] = (struct state_job){ .status = STATE_JOB_DONE, .messages = 10,
		.bytes = 1000, .attempts = 1, .est_messages = 10 };
	jobs[1] = (struct state_job){ .status = STATE_JOB_RUNNING, .messages = 5,
		.bytes = 500, .attempts = 3, .errors = 2, .failed = 1 };
	jobs[2] = (struct state_job){ .status = STATE_JOB_PENDING };
	buf_init(&out, 1 << 20);
	report_metrics_text(&out, &m);
	assert_string_equal(buf_data(&out),
	    "# HELP imapferry_run_info The run these metrics are of (value 1).\n"
	    "# TYPE imapferry_run_info gauge\n"
	    "imapferry_run_info{run=\"3\"} 1\n"
	    "# HELP imapferry_messages_copied_total Messages copied, per source "
	    "and target host.\n"
	    "# TYPE imapferry_messages_copied_total counter\n"
	    "imapferry_messages_copied_total{src_host=\"old.example.org\","
	    "dst_host=\"new:143\"} 15\n"
	    "imapferry_messages_copied_total{src_host=\"b\\\"\\\\\\n\","
	    "dst_host=\"maildir\"} 0\n"
	    "# HELP imapferry_bytes_copied_total Bytes copied (RFC822.SIZE), per "
	    "source and target host.\n"
	    "# TYPE imapferry_bytes_copied_total counter\n"
	    "imapferry_bytes_copied_total{src_host=\"old.example.org\","
	    "dst_host=\"new:143\"} 1500\n"
	    "imapferry_bytes_copied_total{src_host=\"b\\\"\\\\\\n\","
	    "dst_host=\"maildir\"} 0\n"
	    "# HELP imapferry_jobs Jobs of the run by state.\n"
	    "# TYPE imapferry_jobs gauge\n"
	    "imapferry_jobs{state=\"pending\"} 1\n"
	    "imapferry_jobs{state=\"running\"} 1\n"
	    "imapferry_jobs{state=\"done\"} 1\n"
	    "imapferry_jobs{state=\"failed\"} 0\n"
	    "# HELP imapferry_queue_depth Jobs waiting to run (pending, retries "
	    "included).\n"
	    "# TYPE imapferry_queue_depth gauge\n"
	    "imapferry_queue_depth 1\n"
	    "# HELP imapferry_job_retries_total Attempts started beyond the "
	    "first of each job.\n"
	    "# TYPE imapferry_job_retries_total counter\n"
	    "imapferry_job_retries_total 2\n"
	    "# HELP imapferry_job_errors_total Attempts that failed.\n"
	    "# TYPE imapferry_job_errors_total counter\n"
	    "imapferry_job_errors_total 2\n"
	    "# HELP imapferry_messages_failed Messages refused in the last "
	    "attempt of each job.\n"
	    "# TYPE imapferry_messages_failed gauge\n"
	    "imapferry_messages_failed 1\n"
	    "# HELP imapferry_planned_messages Messages the plan estimated.\n"
	    "# TYPE imapferry_planned_messages gauge\n"
	    "imapferry_planned_messages 10\n"
	    "# HELP imapferry_planned_bytes Bytes the plan estimated.\n"
	    "# TYPE imapferry_planned_bytes gauge\n"
	    "imapferry_planned_bytes 0\n"
	    "# HELP imapferry_rate_messages_per_second Recent copy rate in "
	    "messages per second.\n"
	    "# TYPE imapferry_rate_messages_per_second gauge\n"
	    "imapferry_rate_messages_per_second 12.5\n"
	    "# HELP imapferry_rate_bytes_per_second Recent copy rate in bytes "
	    "per second.\n"
	    "# TYPE imapferry_rate_bytes_per_second gauge\n"
	    "imapferry_rate_bytes_per_second 1000\n"
	    "# HELP imapferry_start_time_seconds When the run started (Unix "
	    "time).\n"
	    "# TYPE imapferry_start_time_seconds gauge\n"
	    "imapferry_start_time_seconds 1700000000\n"
	    "# HELP imapferry_estimated_end_time_seconds When the run should end "
	    "at the recent rate (Unix time; NaN unknown).\n"
	    "# TYPE imapferry_estimated_end_time_seconds gauge\n"
	    "imapferry_estimated_end_time_seconds 1700000060\n"
	    "# HELP imapferry_last_update_time_seconds When this file was "
	    "written (Unix time).\n"
	    "# TYPE imapferry_last_update_time_seconds gauge\n"
	    "imapferry_last_update_time_seconds 1700000050\n");
	buf_reset(&out);
	m.eta_seconds = -1;
	report_metrics_text(&out, &m);
	assert_non_null(strstr(buf_data(&out),
	    "\nimapferry_estimated_end_time_seconds NaN\n"));
	buf_free(&out);
}

/* ------------------------------------------------------------- files */

static char *
slurp(const char *path)
{
	char *data;
	const char *error;

	assert_int_equal(file_read_small(path, 1 << 20, false, &data, &error), 0);
	return data;
}

static size_t
count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

static void
test_file_write(void **state)
{
	char dir[256], *path, *data;
	struct report_data d;
	const char *error;
	struct stat st;
	mode_t old_umask = umask(022);
	int fd;

	assert_int_equal(tmpdir_make(dir, sizeof(dir), "test-report"), 0);
	path = xasprintf("%s/report.json", dir);

	/* a new file: 0600 whatever the umask, content as given */
	assert_int_equal(report_file_write(path, "{}\n", 3, &error), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	data = slurp(path);
	assert_string_equal(data, "{}\n");
	free(data);

	/* an existing 0644 file is replaced by a new 0600 one (a new inode:
	 * a reader holding the old file never sees half of the new) */
	assert_int_equal(unlink(path), 0);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "old old old old\n", 16), 16);
	close(fd);
	assert_int_equal(chmod(path, 0644), 0);
	{
		struct stat before;

		assert_int_equal(stat(path, &before), 0);
		data_fixture(&d);
		assert_int_equal(report_write(path, &d, 98.5, &error), 0);
		report_data_free(&d);
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(st.st_mode & 07777, 0600);
		assert_true(st.st_ino != before.st_ino);
	}
	data = slurp(path);
	assert_int_equal(strlen(data), strlen(report_expected) + 1);
	assert_memory_equal(data, report_expected, strlen(report_expected));
	assert_int_equal(data[strlen(report_expected)], '\n');
	free(data);
	/* no temporary file is left behind */
	assert_int_equal(count_entries(dir), 1);

	/* a directory that does not exist: an error naming the path */
	free(path);
	path = xasprintf("%s/missing/report.json", dir);
	assert_int_equal(report_file_write(path, "x", 1, &error), -1);
	assert_non_null(strstr(error, path));
	/* a target that cannot be replaced (a directory): the temporary
	 * file is removed, the directory stays */
	free(path);
	path = xasprintf("%s/adir", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(report_file_write(path, "x", 1, &error), -1);
	assert_non_null(strstr(error, "rename"));
	assert_int_equal(count_entries(dir), 2);

	free(path);
	umask(old_umask);
	tmpdir_remove(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_units),
		cmocka_unit_test(test_plan_text),
		cmocka_unit_test(test_plan_json),
		cmocka_unit_test(test_display),
		cmocka_unit_test(test_summary),
		cmocka_unit_test(test_summary_many_failures),
		cmocka_unit_test(test_report_json),
		cmocka_unit_test(test_bodies),
		cmocka_unit_test(test_reasons),
		cmocka_unit_test(test_lanes_spread),
		cmocka_unit_test(test_html),
		cmocka_unit_test(test_html_empty),
		cmocka_unit_test(test_metrics),
		cmocka_unit_test(test_file_write),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
