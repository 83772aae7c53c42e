/* test_inventory.c: inventory and cost files, and the estimate for several
 * machines (src/sched/inventory.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inventory.h"

static int
parse(const char *text, struct sched_inventory *inv, const char **error_r)
{
	return sched_inventory_parse("inv", text, strlen(text), inv, error_r);
}

static void
test_csv(void **state)
{
	struct sched_inventory inv;
	const char *error = NULL;

	(void)state;
	assert_int_equal(parse("account,folder,messages,bytes\n"
	                       "a@x,INBOX,10,1000\r\n"
	                       "# comment\n\n"
	                       "b@x,INBOX.Sent,2,20\n"
	                       "a@x,Projects, 2024,5,500\n"
	                       "b@x,INBOX,0,0\n", &inv, &error), 0);
	assert_int_equal(inv.n, 2);
	assert_string_equal(inv.names[0], "a@x");
	assert_int_equal(inv.est[0].n_folders, 2);
	/* a folder may hold commas: messages and bytes are the last two */
	assert_string_equal(inv.est[0].folders[1].name, "Projects, 2024");
	assert_int_equal(inv.est[0].messages, 15);
	assert_int_equal(inv.est[0].bytes, 1500);
	assert_int_equal(inv.est[0].folders[0].uidnext, 11);
	/* folders under "INBOX.": Courier's namespace */
	assert_string_equal(inv.est[1].prefix, "INBOX.");
	assert_int_equal(inv.est[1].separator, '.');
	assert_ptr_equal(inv.est[1].label, inv.names[1]);
	assert_int_equal(inv.folders, 4);
	assert_int_equal(inv.messages, 17);
	sched_inventory_free(&inv);
}

static void
test_errors(void **state)
{
	static const struct {
		const char *text, *want;
	} cases[] = {
		{ "a,INBOX,1,2\nb,INBOX,1x,2\n", "inv line 2: messages" },
		{ "a,INBOX,1,2\nb,INBOX,1,99999999999999999999\n", "inv line 2: bytes" },
		{ "a,INBOX,1\n", "inv line 1: expected" },
		{ "a,INBOX,1,2\na,INBOX,1,2\n", "inv line 2: folder INBOX of account a "
		  "listed twice" },
		{ "a,INBOX,1,2\n\001,b,1,2\n", "inv line 2: control byte 0x01" },
		{ "a,INBOX,1,2\na\tb,INBOX,1,2\n", "inv line 2: control byte 0x09" },
		{ "[{\"account\": \"a\\tb\", \"folders\": []}]",
		  "control byte in an account name" },
		{ "", "inv: no account" },
		{ "[{\"account\": \"a\", \"folders\": [{\"name\": \"I\\u0000\", "
		  "\"messages\": 1, \"bytes\": 2}]}]", "inv line 1: NUL" },
		{ "[{\"account\": \"a\", \"folders\": [{\"name\": \"I\", "
		  "\"messages\": 1.5, \"bytes\": 2}]}]", "\"messages\": expected a "
		  "whole number" },
		{ "[{\"account\": \"a\", \"folders\": [\n{\"name\": \"I\", "
		  "\"messages\": 1}]}]", "inv line 2: \"bytes\" missing" },
		{ "{\"x\": 1}", "needs \"inventory\"" },
		{ "[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]", "nested too deep" },
		{ "[{\"account\": \"a\", \"folders\": []}] x", "text after" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sched_inventory inv;
		const char *error = NULL;

		assert_int_equal(parse(cases[i].text, &inv, &error), -1);
		if (error == NULL || strstr(error, cases[i].want) == NULL)
			fail_msg("case %zu: '%s' does not say '%s'", i,
			         error != NULL ? error : "(null)", cases[i].want);
		assert_null(inv.est);
	}
	{
		/* a NUL byte in a CSV file (strlen would stop at it) */
		static const char text[] = "a,INBOX,1,2\nb,IN\0X,1,2\n";
		struct sched_inventory inv;
		const char *error = NULL;

		assert_int_equal(sched_inventory_parse("inv", text, sizeof(text) - 1,
		                                       &inv, &error), -1);
		assert_non_null(strstr(error, "inv line 2: NUL"));
	}
}

static void
test_json_jobs(void **state)
{
	struct sched_inventory inv;
	const char *error = NULL;

	(void)state;
	/* an older plan --json: one folder per job, UID-range parts summed */
	assert_int_equal(parse("{\"jobs\": [{\"src_user\": \"a\", \"folders\": "
	                       "[\"INBOX\"], \"uid_lo\": 1, \"messages\": 10, "
	                       "\"bytes\": 100}, {\"src_user\": \"a\", \"folders\": "
	                       "[\"INBOX\"], \"messages\": 5, \"bytes\": 50}, "
	                       "{\"src_user\": \"b\", \"folders\": null, "
	                       "\"messages\": 3, \"bytes\": 30}]}", &inv, &error), 0);
	assert_int_equal(inv.n, 2);
	assert_int_equal(inv.est[0].n_folders, 1);
	assert_int_equal(inv.est[0].folders[0].messages, 15);
	assert_string_equal(inv.est[1].folders[0].name, "INBOX");
	sched_inventory_free(&inv);
	/* escapes, surrogate pairs */
	assert_int_equal(parse("{\"inventory\": [{\"account\": \"\\u00e9\\ud83d"
	                       "\\ude00\", \"separator\": \"/\", \"folders\": "
	                       "[{\"name\": \"a\\/b\", \"messages\": 0, \"bytes\": 0, "
	                       "\"uidnext\": 7}]}]}", &inv, &error), 0);
	assert_string_equal(inv.names[0], "\xc3\xa9\xf0\x9f\x98\x80");
	assert_string_equal(inv.est[0].folders[0].name, "a/b");
	assert_int_equal(inv.est[0].folders[0].uidnext, 7);
	assert_int_equal(inv.est[0].separator, '/');
	sched_inventory_free(&inv);
}

static void
test_cost_round_trip(void **state)
{
	struct sched_cost c, d;
	struct buf out;
	struct json j;
	const char *error = NULL;

	(void)state;
	sched_cost_default(&c);
	c.per_account = 0.1234567;
	c.per_status = 0.0000873;
	c.per_byte = 1.0 / 5e6;
	c.par_sessions = 8;
	c.par_speedup = 3.09;
	c.target_probed = true;
	c.dst_per_message = 0.000127;
	c.calibrated = true;
	buf_init(&out, 1 << 16);
	json_init(&j, &out);
	sched_cost_json(&j, &c);
	assert_int_equal(sched_cost_parse("cost", buf_data(&out), buf_len(&out), &d,
	                                  &error), 0);
	assert_true(fabs(d.per_account - c.per_account) < 1e-9);
	assert_true(fabs(d.per_status - c.per_status) < 1e-12);
	assert_true(fabs(d.per_byte - c.per_byte) < 1e-15);
	assert_true(fabs(d.dst_per_message - c.dst_per_message) < 1e-12);
	assert_int_equal(d.par_sessions, 8);
	assert_true(d.calibrated && d.target_probed);
	buf_free(&out);
	{
		static const char bad[] = "{\"per_account_ms\": 1, "
		    "\"per_folder_ms\": 1, \"per_message_ms\": \"x\", "
		    "\"per_megabyte_ms\": 1}";

		assert_int_equal(sched_cost_parse("cost", bad, sizeof(bad) - 1, &d,
		                                  &error), -1);
	}
	assert_non_null(strstr(error, "per_message_ms"));
}

/* n jobs of the given seconds and bytes, largest first */
static void
plan_of(struct sched_plan *p, const double *secs, const uint64_t *bytes, size_t n)
{
	memset(p, 0, sizeof(*p));
	p->jobs = calloc(n, sizeof(*p->jobs));
	p->n_jobs = n;
	for (size_t i = 0; i < n; i++) {
		p->jobs[i].est_seconds = secs[i];
		p->jobs[i].est_bytes = bytes[i];
	}
}

static void
test_predict_machines(void **state)
{
	static const double secs[] = { 40, 30, 20, 10, 10, 10 };
	static const uint64_t bytes[] = { 400, 300, 200, 100, 100, 100 };
	struct sched_cost c;
	struct sched_plan p;
	const char *bound;
	double t1, t2, t3;

	(void)state;
	sched_cost_default(&c);
	plan_of(&p, secs, bytes, 6);
	/* one machine, one worker: the sum */
	t1 = sched_predict_machines(&c, &p, 1, 1, 0, 0, &bound);
	assert_true(fabs(t1 - 120) < 1e-6);
	assert_string_equal(bound, "workers");
	/* two machines of one worker: LPT 40+20 | 30+10+10+10 = 60 */
	t2 = sched_predict_machines(&c, &p, 2, 1, 0, 0, NULL);
	assert_true(fabs(t2 - 60) < 1e-6);
	/* many machines: the largest job */
	t3 = sched_predict_machines(&c, &p, 8, 1, 0, 0, &bound);
	assert_true(fabs(t3 - 40) < 1e-6);
	assert_string_equal(bound, "largest job");
	/* a cap on jobs at once over all machines */
	assert_true(fabs(sched_predict_machines(&c, &p, 8, 1, 2, 0, NULL) - 60)
	            < 1e-6);
	/* a source limit: 1200 bytes at 10 bytes/s take 120 s at least */
	t3 = sched_predict_machines(&c, &p, 8, 1, 0, 10, &bound);
	assert_true(t3 >= 120 - 1e-6 && t3 < 125);
	assert_string_equal(bound, "source");
	/* a measured speedup of 2 at 4 sessions: one machine of 4 workers
	 * goes half as fast per job as 4 machines of one */
	c.par_sessions = 4;
	c.par_speedup = 2;
	assert_true(sched_predict_machines(&c, &p, 1, 4, 0, 0, NULL) >
	            sched_predict_machines(&c, &p, 4, 1, 0, 0, NULL) * 1.4);
	free(p.jobs);
}

static void
test_final(void **state)
{
	struct sched_inventory inv;
	struct sched_cost c;
	const char *error = NULL;

	(void)state;
	sched_cost_default(&c);
	assert_int_equal(parse("a,INBOX,3,300\na,Sent,0,0\na,Trash,0,0\n"
	                       "b,INBOX,0,0\n", &inv, &error), 0);
	assert_int_equal(sched_inventory_final(&inv, &c), 1);
	assert_int_equal(inv.est[0].n_folders, 1);
	assert_true(fabs(inv.est[0].extra_seconds - 2 * c.per_status) < 1e-12);
	assert_int_equal(inv.est[1].n_folders, 0);
	assert_true(fabs(inv.est[1].extra_seconds - c.per_status) < 1e-12);
	sched_inventory_free(&inv);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_csv),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_json_jobs),
		cmocka_unit_test(test_cost_round_trip),
		cmocka_unit_test(test_predict_machines),
		cmocka_unit_test(test_final),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
