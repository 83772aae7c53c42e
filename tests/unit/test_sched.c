/* test_sched.c: the scheduler (src/sched): users file, templates, logins,
 * cost model, LPT schedule and split decisions, retries, connection caps,
 * and the runs/jobs tables of the state database. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "plan.h"
#include "runner.h"
#include "slots.h"
#include "state.h"
#include "users.h"

static bool
contains(const char *hay, const char *needle)
{
	return hay != NULL && strstr(hay, needle) != NULL;
}

/* A temporary directory with files, removed by the caller. */
static char *
tmpdir_new(void)
{
	char *d = strdup("/tmp/test-sched-XXXXXX");

	assert_non_null(mkdtemp(d));
	return d;
}

static void
write_file(const char *dir, const char *name, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static void
rm_rf(const char *dir)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/* ------------------------------------------------------------ users file */

struct users_case {
	const char *text;
	int ret;
	size_t count;
	const char *error;         /* substring of the error */
	const char *first_src, *first_dst;
	const char *first_src_pw, *first_dst_pw;
	bool imapsync;
};

static const struct users_case users_cases[] = {
	{ "src_user,dst_user\nalice,alice2\nbob,\n", 0, 2, NULL,
	  "alice", "alice2", NULL, NULL, false },
	/* columns in any order, comments, blank lines, CRLF, spaces */
	{ "# accounts\n\ndst_user , src_user\r\n b@x.org , a@x.org \r\n", 0, 1,
	  NULL, "a@x.org", "b@x.org", NULL, NULL, false },
	/* quoted fields with a comma and a quote */
	{ "src_user,dst_user\n\"a,b\",\"c\"\"d\"\n", 0, 1, NULL, "a,b", "c\"d",
	  NULL, NULL, false },
	{ "src_user,dst_user,src_password_file,dst_password_file\n"
	  "carol,carol,pw1,pw2\n", 0, 1, NULL, "carol", "carol", "secret-one",
	  "secret-two", false },
	/* only src_user: dst is the same */
	{ "src_user\nx\ny\n", 0, 2, NULL, "x", "x", NULL, NULL, false },
	/* imapsync style, with and without the trailing ';' */
	{ "u1;p;w;1;u2;p2\n", -1, 0, "expected user1;password1", NULL, NULL,
	  NULL, NULL, true },
	{ "u1;pa,ss;u2;pw2;\nv1;q1;;q2\n", 0, 2, NULL, "u1", "u2", "pa,ss", "pw2",
	  true },
	{ "u1;p1;u2\n", -1, 0, "line 1: expected user1;password1", NULL, NULL,
	  NULL, NULL, true },
	/* errors */
	{ "", -1, 0, "no users", NULL, NULL, NULL, NULL, false },
	{ "src_user,dst_user\n", -1, 0, "no users", NULL, NULL, NULL, NULL, false },
	{ "alice\n", -1, 0, "expected a CSV header", NULL, NULL, NULL, NULL, false },
	{ "src_user,password\nalice,x\n", -1, 0, "unknown column 'password'",
	  NULL, NULL, NULL, NULL, false },
	{ "src_user,src_user\n", -1, 0, "column src_user twice", NULL, NULL, NULL,
	  NULL, false },
	{ "src_user\na\nb\na\n", -1, 0, "line 4: source user a already on line 2",
	  NULL, NULL, NULL, NULL, false },
	{ "src_user,dst_user\n\"open,x\n", -1, 0, "line 2: unterminated",
	  NULL, NULL, NULL, NULL, false },
	{ "src_user,src_password_file\nalice,missing\n", -1, 0,
	  "line 2: password file", NULL, NULL, NULL, NULL, false },
	{ "src_user\n,\n", -1, 0, "line 2: empty user name", NULL, NULL, NULL,
	  NULL, false },
};

static void
test_users_parse(void **state)
{
	char *dir = tmpdir_new();

	write_file(dir, "pw1", "secret-one\n");
	write_file(dir, "pw2", "secret-two");
	for (size_t i = 0; i < N_ELEMENTS(users_cases); i++) {
		const struct users_case *c = &users_cases[i];
		struct sched_users u;
		const char *error = NULL;
		int ret = sched_users_parse(c->text, strlen(c->text), dir, &u, &error);

		if (ret != c->ret || (ret < 0 && !contains(error, c->error)))
			fail_msg("case %zu: ret %d error '%s'", i, ret,
			         error != NULL ? error : "");
		if (ret < 0) {
			/* passwords never appear in errors */
			assert_false(contains(error, "pa,ss"));
			assert_false(contains(error, "secret"));
			continue;
		}
		assert_int_equal(u.count, c->count);
		assert_int_equal(u.imapsync_format, c->imapsync);
		assert_string_equal(u.users[0].src_user, c->first_src);
		assert_string_equal(u.users[0].dst_user, c->first_dst);
		if (c->first_src_pw == NULL)
			assert_null(u.users[0].src_password);
		else
			assert_string_equal(u.users[0].src_password, c->first_src_pw);
		if (c->first_dst_pw == NULL)
			assert_null(u.users[0].dst_password);
		else
			assert_string_equal(u.users[0].dst_password, c->first_dst_pw);
		sched_users_free(&u);
		assert_int_equal(u.count, 0);
	}
	rm_rf(dir);
	free(dir);
}

/* Every prefix of a valid file parses or fails cleanly (no crash, no
 * leak under the sanitizers), and the load from a file finds password
 * files next to it. */
static void
test_users_load(void **state)
{
	static const char text[] =
	    "src_user,dst_user,src_password_file\na,b,pw\n\"c\",d,\n";
	char *dir = tmpdir_new(), path[512];
	struct sched_users u;
	const char *error = NULL;

	for (size_t len = 0; len <= sizeof(text) - 1; len++) {
		if (sched_users_parse(text, len, NULL, &u, &error) == 0)
			sched_users_free(&u);
	}
	write_file(dir, "pw", "pw-of-a\n");
	write_file(dir, "users.csv", text);
	snprintf(path, sizeof(path), "%s/users.csv", dir);
	assert_int_equal(sched_users_load(path, &u, &error), 0);
	assert_int_equal(u.count, 2);
	assert_string_equal(u.users[0].src_password, "pw-of-a");
	assert_null(u.users[1].src_password);
	assert_int_equal(u.users[1].line, 3);
	sched_users_free(&u);
	snprintf(path, sizeof(path), "%s/none.csv", dir);
	assert_int_equal(sched_users_load(path, &u, &error), -1);
	assert_true(contains(error, "none.csv"));
	rm_rf(dir);
	free(dir);
}

static void
write_bytes(const char *dir, const char *name, const char *data, size_t len)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

#define B(s) s, sizeof(s) - 1

/* Issue 12: a NUL (or another control byte) in the users file or in a
 * password file is refused with the file name and the line, instead of
 * cutting the text there ("user1,us\0er1" copied user1 to "us"). */
static void
test_users_control_bytes(void **state)
{
	static const struct {
		const char *file;      /* "users.csv" or "pw" */
		const char *data;
		size_t len;
		const char *error;     /* substring */
	} cases[] = {
		{ "users.csv", B("src_user,dst_user\nuser1,us\0er1\n"),
		  "line 2" },
		{ "users.csv", B("src_user,dst_user\nuser1,user1\n\0"),
		  "line 3" },
		{ "users.csv", B("src_user,dst_user\r\nuser1,us\x01" "er1\r\n"),
		  "line 2" },
		{ "users.csv", B("src_user,dst_user\nuser1,us\rer1\n"),
		  "line 2" },
		{ "users.csv", B("src_user,dst_user\nuser1,user1\x1b[2J\n"),
		  "line 2" },
		{ "users.csv", B("u1;p\0w;u2;pw2\n"), "line 1" },
		{ "pw", B("sec\0ret\n"), "line 1" },
		{ "pw", B("secret\nmore\n"), "line 2" },
		{ "pw", B("sec\x7fret\n"), "line 1" },
	};
	char *dir = tmpdir_new(), path[512];

	(void)state;
	for (size_t i = 0; i < N_ELEMENTS(cases); i++) {
		struct sched_users u;
		const char *error = NULL;

		if (strcmp(cases[i].file, "pw") == 0)
			write_file(dir, "users.csv",
			           "src_user,src_password_file\nuser1,pw\n");
		write_bytes(dir, cases[i].file, cases[i].data, cases[i].len);
		snprintf(path, sizeof(path), "%s/users.csv", dir);
		if (sched_users_load(path, &u, &error) == 0) {
			fail_msg("case %zu: loaded %zu users, first %s -> %s", i,
			         u.count, u.users[0].src_user, u.users[0].dst_user);
		}
		if (!contains(error, cases[i].error) ||
		    !contains(error, cases[i].file))
			fail_msg("case %zu: error '%s', expected '%s' and '%s'", i,
			         error != NULL ? error : "(null)", cases[i].error,
			         cases[i].file);
		/* TAB is allowed; a CR only before LF. */
		unlink(path);
	}
	write_bytes(dir, "users.csv", B("src_user,dst_user\r\n\tuser1\t,user2\r\n"));
	{
		struct sched_users u;
		const char *error = NULL;

		snprintf(path, sizeof(path), "%s/users.csv", dir);
		if (sched_users_load(path, &u, &error) < 0)
			fail_msg("%s", error);
		assert_string_equal(u.users[0].src_user, "user1");
		sched_users_free(&u);
	}
	rm_rf(dir);
	free(dir);
}

/* ------------------------------------------------------------ templates */

struct tmpl_case {
	const char *tmpl, *user, *want, *error;
};

static const struct tmpl_case tmpl_cases[] = {
	{ "imap://%u@127.0.0.1:1430?tls=none", "alice",
	  "imap://alice@127.0.0.1:1430?tls=none", NULL },
	{ "imap://%u@host", "alice@example.org", "imap://alice@example.org@host",
	  NULL },
	{ "imaps://%n@mail.%d", "bob@example.org", "imaps://bob@mail.example.org",
	  NULL },
	{ "imap://%u*master@host", "carol", "imap://carol*master@host", NULL },
	/* characters the URL syntax needs escaped */
	{ "imap://%u@h", "a;b:c/d?e%f g", "imap://a%3Bb%3Ac%2Fd%3Fe%25f%20g@h",
	  NULL },
	{ "maildir:/srv/mail/%d/%n/Maildir", "dave@example.org",
	  "maildir:/srv/mail/example.org/dave/Maildir", NULL },
	{ "maildir:/srv/%u", "x", "maildir:/srv/x", NULL },
	{ "maildir:/m/%u 100%%", "x", "maildir:/m/x 100%", NULL },
	{ "maildir:/m/%d/%n", "nodomain", NULL, "cannot be part of a path" },
	{ "maildir:/m/%u", "../etc", NULL, "cannot be part of a path" },
	{ "maildir:/m/%u", "a/b", NULL, "cannot be part of a path" },
	{ "maildir:/m/%u", ".hidden", NULL, "cannot be part of a path" },
	{ "imap://%x@h", "a", NULL, "unknown '%x'" },
	{ "imap://%u@h%", "a", NULL, "'%' at the end" },
};

static void
test_template_expand(void **state)
{
	for (size_t i = 0; i < N_ELEMENTS(tmpl_cases); i++) {
		const struct tmpl_case *c = &tmpl_cases[i];
		const char *error = NULL;
		char *got = sched_template_expand(c->tmpl, c->user, &error);

		if (c->want != NULL) {
			if (got == NULL || strcmp(got, c->want) != 0)
				fail_msg("case %zu: got '%s' want '%s'", i,
				         got != NULL ? got : error, c->want);
		} else if (got != NULL || !contains(error, c->error)) {
			fail_msg("case %zu: got '%s' error '%s'", i,
			         got != NULL ? got : "", error != NULL ? error : "");
		}
		free(got);
	}
}

static void
test_url_helpers(void **state)
{
	char *s;

	s = sched_url_replace_user("imap://alice@host:143?tls=none", "admin");
	assert_string_equal(s, "imap://admin@host:143?tls=none");
	free(s);
	s = sched_url_replace_user("imaps://a@b.org;AUTH=PLAIN@host", "ad;min");
	assert_string_equal(s, "imaps://ad%3Bmin;AUTH=PLAIN@host");
	free(s);
	assert_null(sched_url_replace_user("maildir:/x", "a"));
	assert_null(sched_url_replace_user("imap://host", "a"));
	assert_true(sched_url_is_imap("imaps://x@y"));
	assert_false(sched_url_is_imap("maildir:/y"));
	/* the key of cli/pair.c for the same URLs and authzids */
	s = sched_account_key("imap://admin@h", "alice", "imap://alice@d", NULL);
	assert_string_equal(s, "imap://admin@h as alice -> imap://alice@d");
	free(s);
	assert_true(sched_greeting_ignores_authzid(
	    "* OK [CAPABILITY IMAP4rev1] Courier-IMAP ready. Copyright 1998-2018"));
	assert_false(sched_greeting_ignores_authzid("* OK Dovecot ready."));
	assert_false(sched_greeting_ignores_authzid(NULL));
}

static void
test_accounts_build(void **state)
{
	static const char text[] =
	    "src_user,dst_user\nalice@x.org,alice\nbob,bob\n";
	struct sched_users u;
	struct sched_account *a;
	size_t n;
	const char *error = NULL;
	struct sched_login src = { .admin = "cyrusadmin", .password = "adminpw" };
	struct sched_login dst = { .admin = NULL, .password = "masterpw" };
	struct sched_login none = { 0 };

	assert_int_equal(sched_users_parse(text, strlen(text), NULL, &u, &error), 0);
	u.users[1].src_password = strdup("bobs-own");
	assert_int_equal(sched_accounts_build(&u, "imap://%u@old:143",
	                                      "imap://%u*master@new", &src, &dst,
	                                      &a, &n, &error), 0);
	assert_int_equal(n, 2);
	/* admin login: the admin in the URL, the account as authzid */
	assert_string_equal(a[0].src_url, "imap://cyrusadmin@old:143");
	assert_string_equal(a[0].src_authzid, "alice@x.org");
	assert_string_equal(a[0].src_password, "adminpw");
	/* master login in the template: the side's password */
	assert_string_equal(a[0].dst_url, "imap://alice*master@new");
	assert_null(a[0].dst_authzid);
	assert_string_equal(a[0].dst_password, "masterpw");
	assert_string_equal(a[0].key, "imap://cyrusadmin@old:143 as alice@x.org "
	                    "-> imap://alice*master@new");
	/* a password of its own wins over the admin */
	assert_string_equal(a[1].src_url, "imap://bob@old:143");
	assert_null(a[1].src_authzid);
	assert_string_equal(a[1].src_password, "bobs-own");
	sched_accounts_free(&a, n);
	assert_null(a);
	/* no password at all for alice's source */
	assert_int_equal(sched_accounts_build(&u, "imap://%u@old", "maildir:/m/%u",
	                                      &none, &none, &a, &n, &error), -1);
	assert_true(contains(error, "line 2: no src password for alice@x.org"));
	/* a maildir target needs none; a bad user for a path fails */
	sched_users_free(&u);
	assert_int_equal(sched_users_parse("src_user\nx\n", 11, NULL, &u, &error), 0);
	assert_int_equal(sched_accounts_build(&u, "imap://%u@old", "maildir:/m/%u",
	                                      &src, &none, &a, &n, &error), 0);
	assert_string_equal(a[0].dst_url, "maildir:/m/x");
	assert_null(a[0].dst_password);
	sched_accounts_free(&a, n);
	sched_users_free(&u);
}

static void
test_names_codec(void **state)
{
	char *names[] = { "INBOX", "a\nb", "c\\nd", "x\\", NULL };
	char *enc, **dec;
	size_t n;

	enc = sched_names_encode(names, 4);
	assert_string_equal(enc, "INBOX\na\\nb\nc\\\\nd\nx\\\\");
	dec = sched_names_decode(enc, &n);
	assert_int_equal(n, 4);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(dec[i], names[i]);
	assert_null(dec[4]);
	sched_names_free(&dec);
	assert_null(dec);
	free(enc);
	enc = sched_names_encode(names, 0);
	assert_string_equal(enc, "");
	dec = sched_names_decode(enc, &n);
	assert_int_equal(n, 0);
	assert_null(dec[0]);
	sched_names_free(&dec);
	free(enc);
}

/* ------------------------------------------------------------ cost model */

static void
test_cost_fit(void **state)
{
	/* seconds = 2 ms per message + 10 ms per MB */
	struct sched_batch b[4] = {
		{ 50, 50 * 2000, 0 }, { 40, 40 * 20000, 0 },
		{ 20, 20 * 200000, 0 }, { 5, 5 * 1000000, 0 },
	};
	struct sched_batch same[2] = { { 10, 10000, 0.5 }, { 20, 20000, 1.0 } };
	struct sched_batch neg[2] = { { 10, 1000, 1.0 }, { 10, 100000, 0.5 } };
	double pm, pb;

	for (size_t i = 0; i < 4; i++)
		b[i].seconds = b[i].messages * 0.002 + (double)b[i].bytes * 1e-8;
	assert_int_equal(sched_cost_fit(b, 4, &pm, &pb), 0);
	assert_true(fabs(pm - 0.002) < 1e-9);
	assert_true(fabs(pb - 1e-8) < 1e-14);
	/* one size only: all per message */
	assert_int_equal(sched_cost_fit(same, 2, &pm, &pb), 0);
	assert_true(fabs(pm - 0.05) < 1e-12);
	assert_true(pb == 0);
	/* larger messages faster: never a negative cost */
	assert_int_equal(sched_cost_fit(neg, 2, &pm, &pb), 0);
	assert_true(pm >= 0 && pb >= 0);
	assert_int_equal(sched_cost_fit(b, 0, &pm, &pb), -1);
}

static void
test_cost_job_and_speedup(void **state)
{
	struct sched_cost c;

	sched_cost_default(&c);
	c.per_account = 1;
	c.per_folder = 0.5;
	c.per_message = 0.01;
	c.per_byte = 1e-6;
	assert_true(fabs(sched_cost_job(&c, 2, 100, 1000000) - (1 + 1 + 1 + 1)) < 1e-9);
	/* the slower side counts when the target was measured */
	c.target_probed = true;
	c.dst_per_message = 0.02;
	c.dst_per_byte = 0;
	assert_true(fabs(sched_cost_job(&c, 2, 100, 1000000) - 5) < 1e-9);

	/* no parallel measure: linear */
	assert_true(sched_cost_speedup(&c, 1) == 1);
	assert_true(sched_cost_speedup(&c, 8) == 8);
	/* 4 sessions measured at 2x: efficiency 1 -> 0.5 linearly */
	c.par_sessions = 4;
	c.par_speedup = 2;
	assert_true(fabs(sched_cost_speedup(&c, 4) - 2) < 1e-9);
	assert_true(fabs(sched_cost_speedup(&c, 2) - 2 * (1 - 0.5 / 3)) < 1e-9);
	assert_true(fabs(sched_cost_speedup(&c, 8) - 4) < 1e-9);
	assert_true(sched_cost_speedup(&c, 0) == 1);
	/* a low speedup at P (CPU-bound servers): below P never more than
	 * S(P), so more workers are never predicted slower (the linear
	 * efficiency alone gives 1.52 at 2, 1.55 at 3 and 1.1 at 4) */
	c.par_speedup = 1.1;
	assert_true(fabs(sched_cost_speedup(&c, 2) - 1.1) < 1e-9);
	assert_true(fabs(sched_cost_speedup(&c, 3) - 1.1) < 1e-9);
	assert_true(fabs(sched_cost_speedup(&c, 4) - 1.1) < 1e-9);
	for (unsigned k = 1; k < 8; k++)
		assert_true(sched_cost_speedup(&c, k + 1) >=
		            sched_cost_speedup(&c, k) - 1e-12);
}

static void
test_lpt(void **state)
{
	static const double d1[] = { 1, 7, 3, 5, 2, 4 };
	static const double d2[] = { 3, 3, 2, 2, 2 };
	unsigned assign[6];

	assert_true(sched_lpt_makespan(d1, 6, 2, assign) == 11);
	/* largest first: 7 on machine 0, 5 on 1, 4 joins 5 */
	assert_int_equal(assign[1], 0);
	assert_int_equal(assign[3], 1);
	assert_int_equal(assign[5], 1);
	/* LPT's classic worst case: 7 where 6 is optimal (within 4/3) */
	assert_true(sched_lpt_makespan(d2, 5, 2, NULL) == 7);
	assert_true(sched_lpt_makespan(d2, 5, 1, NULL) == 12);
	assert_true(sched_lpt_makespan(d2, 5, 10, NULL) == 3);
	assert_true(sched_lpt_makespan(d2, 0, 2, NULL) == 0);
}

static void
test_predict(void **state)
{
	static const double d[] = { 1, 1, 1, 1 };
	static const double d2[] = { 3, 3, 2, 2, 2 };
	struct sched_cost c;

	sched_cost_default(&c);
	/* linear speedup: the LPT makespan */
	assert_true(fabs(sched_predict(&c, d2, 5, 2, 0) - 7) < 1e-9);
	assert_true(fabs(sched_predict(&c, d2, 5, 1, 0) - 12) < 1e-9);
	/* capped by the connections: 10 workers, 2 at once */
	assert_true(fabs(sched_predict(&c, d2, 5, 10, 2) - 7) < 1e-9);
	/* no gain from parallel sessions: the total work */
	c.par_sessions = 4;
	c.par_speedup = 1;
	assert_true(fabs(sched_predict(&c, d, 4, 4, 0) - 4) < 1e-9);
	/* 2x at 4: four equal jobs take 2 */
	c.par_speedup = 2;
	assert_true(fabs(sched_predict(&c, d, 4, 4, 0) - 2) < 1e-9);
}

/* ------------------------------------------------------------- planning */

static struct sched_folder_est
folder(const char *name, uint64_t messages, uint64_t bytes)
{
	struct sched_folder_est f = {
		.name = strdup(name), .messages = messages, .bytes = bytes,
		.uidnext = (uint32_t)messages + 1,
	};
	return f;
}

/* Account 0: big (5 folders, 1000 messages), accounts 1..8: 20 messages
 * each, account 9: inventory failed. Cost: 1 s per account, 10 ms per
 * message, nothing per byte or folder. */
static void
make_est(struct sched_account_est *e)
{
	memset(e, 0, 10 * sizeof(*e));
	e[0].folders = calloc(5, sizeof(struct sched_folder_est));
	e[0].folders[0] = folder("INBOX", 400, 4000000);
	e[0].folders[1] = folder("Archive", 300, 3000000);
	e[0].folders[2] = folder("Sent", 150, 1500000);
	e[0].folders[3] = folder("Lists", 100, 1000000);
	e[0].folders[4] = folder("Drafts", 50, 500000);
	e[0].n_folders = 5;
	e[0].label = "big";
	for (int i = 1; i < 9; i++) {
		e[i].folders = calloc(2, sizeof(struct sched_folder_est));
		e[i].folders[0] = folder("INBOX", 15, 0);
		e[i].folders[0].bytes_estimated = true;
		e[i].folders[1] = folder("Sent", 5, 50000);
		e[i].n_folders = 2;
	}
	e[9].error = strdup("login as x refused");
	e[9].auth_failed = true;
}

static void
cost_simple(struct sched_cost *c)
{
	sched_cost_default(c);
	c->per_account = 1;
	c->per_folder = 0;
	c->per_message = 0.01;
	c->per_byte = 0;
	c->avg_message_size = 1000;
}

static void
test_plan_split_by_folder(void **state)
{
	struct sched_account_est e[10];
	struct sched_cost c;
	struct sched_plan p;
	struct sched_plan_options o = { .workers = 4, .split = true };
	const struct sched_job *rest = NULL;
	unsigned parts = 0;
	double sum = 0;

	make_est(e);
	cost_simple(&c);
	sched_plan_build(e, 10, &c, &o, &p);
	/* work: big 1 + 10 = 11 s, small 8 x 1.2, failed 1: total 21.6,
	 * threshold 5.4: big is split, folder parts get 5.4 - 1 s each */
	assert_true(fabs(p.threshold - 21.6 / 4) < 1e-9);
	assert_int_equal(p.messages, 1000 + 8 * 20);
	/* estimated bytes: 15 messages x 1000 */
	assert_int_equal(p.bytes, 10000000 + 8 * (15000 + 50000));
	for (size_t i = 0; i < p.n_jobs; i++) {
		const struct sched_job *j = &p.jobs[i];

		if (i > 0)
			assert_true(p.jobs[i - 1].est_seconds >= j->est_seconds);
		sum += j->est_seconds;
		if (j->account != 0) {
			assert_int_equal(j->parts, 1);
			assert_false(j->rest);
			assert_null(j->folders);
			continue;
		}
		parts++;
		assert_true(j->est_seconds <= p.threshold + 1e-9);
		if (j->rest) {
			assert_null(rest);
			rest = j;
		}
	}
	assert_int_equal(parts, 3);           /* ceil(10 / 4.4) */
	assert_non_null(rest);
	/* the rest part excludes exactly the folders of the others, and
	 * holds INBOX */
	{
		size_t named = 0;

		for (size_t i = 0; i < p.n_jobs; i++) {
			const struct sched_job *j = &p.jobs[i];

			if (j->account != 0 || j->rest)
				continue;
			for (size_t k = 0; k < j->n_folders; k++) {
				bool found = false;

				assert_string_not_equal(j->folders[k], "INBOX");
				for (size_t x = 0; x < rest->n_exclude; x++)
					found = found ||
					    strcmp(rest->exclude[x], j->folders[k]) == 0;
				assert_true(found);
				named++;
			}
		}
		assert_int_equal(named, rest->n_exclude);
		assert_int_equal(rest->n_folders, 0);
	}
	assert_true(fabs(sum - p.total_seconds) < 1e-9);
	/* the failed account gets one job of per_account */
	assert_true(p.n_notes >= 1);
	assert_true(contains(p.notes[0], "big: split into 3 parts"));
	for (unsigned k = 1; k <= 4; k++)
		assert_true(p.predicted[k] > 0);
	assert_true(fabs(p.predicted[1] - p.total_seconds) < 1e-9);
	assert_true(p.predicted[4] < p.predicted[1]);
	sched_plan_free(&p);

	/* no split when asked, or with one worker */
	o.split = false;
	sched_plan_build(e, 10, &c, &o, &p);
	assert_int_equal(p.n_jobs, 10);
	assert_int_equal(p.jobs[0].account, 0);
	sched_plan_free(&p);
	o.split = true;
	o.workers = 1;
	sched_plan_build(e, 10, &c, &o, &p);
	assert_int_equal(p.n_jobs, 10);
	sched_plan_free(&p);
	/* an explicit threshold; small accounts above it stay whole: their
	 * work (0.2 s) is less than another login (1 s) */
	o.workers = 4;
	o.split_above = 1.1;
	sched_plan_build(e, 10, &c, &o, &p);
	for (size_t i = 0; i < p.n_jobs; i++)
		if (p.jobs[i].account != 0)
			assert_int_equal(p.jobs[i].parts, 1);
	/* big: 10 s of folders in parts of >= 1 s: one per folder (each
	 * folder is its own family here: no separator known) */
	assert_int_equal(p.n_jobs, 9 + 5);
	sched_plan_free(&p);
	for (int i = 0; i < 10; i++)
		sched_account_est_free(&e[i]);
}

/* A parent and its children always land in the same part. */
static void
test_plan_families(void **state)
{
	static const struct {
		const char *prefix;
		char sep;
		const char *names[8];
	} layouts[] = {
		{ "", '/', { "INBOX", "Archive", "Archive/2019", "Archive/2020",
		             "Sent", "Lists", "Lists/dev", "Trash" } },
		{ "INBOX.", '.', { "INBOX", "INBOX.Archive", "INBOX.Archive.2019",
		                   "INBOX.Archive.2020", "INBOX.Sent",
		                   "INBOX.Lists", "INBOX.Lists.dev", "INBOX.Trash" } },
	};

	for (size_t l = 0; l < N_ELEMENTS(layouts); l++) {
		struct sched_account_est e[2];
		struct sched_cost c;
		struct sched_plan p;
		struct sched_plan_options o = { .workers = 8, .split = true,
		                                .split_above = 2 };
		size_t parts = 0;

		memset(e, 0, sizeof(e));
		e[0].folders = calloc(8, sizeof(struct sched_folder_est));
		for (int i = 0; i < 8; i++)
			e[0].folders[i] = folder(layouts[l].names[i], 100 + 10 * i, 0);
		e[0].n_folders = 8;
		e[0].prefix = strdup(layouts[l].prefix);
		e[0].separator = layouts[l].sep;
		cost_simple(&c);
		sched_plan_build(e, 1, &c, &o, &p);
		for (size_t i = 0; i < p.n_jobs; i++) {
			const struct sched_job *j = &p.jobs[i];
			char *const *names = j->rest ? j->exclude : j->folders;
			size_t n = j->rest ? j->n_exclude : j->n_folders;
			bool archive = false, archive2019 = false, lists = false,
			     listsdev = false;

			parts++;
			if (j->rest)
				continue;
			for (size_t k = 0; k < n; k++) {
				const char *x = names[k] + strlen(layouts[l].prefix);

				if (strcmp(names[k], "INBOX") == 0)
					x = "INBOX";
				archive |= strcmp(x, "Archive") == 0;
				archive2019 |= strcmp(x, "Archive/2019") == 0 ||
				    strcmp(x, "Archive.2019") == 0;
				lists |= strcmp(x, "Lists") == 0;
				listsdev |= strcmp(x, "Lists/dev") == 0 ||
				    strcmp(x, "Lists.dev") == 0;
			}
			assert_int_equal(archive, archive2019);
			assert_int_equal(lists, listsdev);
		}
		/* 5 families (INBOX, Archive, Sent, Lists, Trash) */
		assert_int_equal(parts, 5);
		sched_plan_free(&p);
		sched_account_est_free(&e[0]);
	}
}

static void
test_plan_uid_ranges(void **state)
{
	struct sched_account_est e[2];
	struct sched_cost c;
	struct sched_plan p;
	struct sched_plan_options o = { .workers = 4, .split = true };
	uint32_t next = 1;
	size_t ranges = 0;

	memset(e, 0, sizeof(e));
	e[0].folders = calloc(1, sizeof(struct sched_folder_est));
	e[0].folders[0] = folder("INBOX", 2000, 0);
	e[0].folders[0].uidnext = 4001;
	e[0].n_folders = 1;
	e[1].folders = calloc(1, sizeof(struct sched_folder_est));
	e[1].folders[0] = folder("INBOX", 100, 0);
	e[1].n_folders = 1;
	cost_simple(&c);
	/* IMAP target: one folder cannot be split; a note says why */
	sched_plan_build(e, 2, &c, &o, &p);
	assert_int_equal(p.n_jobs, 2);
	assert_int_equal(p.n_notes, 1);
	assert_true(contains(p.notes[0], "one folder"));
	sched_plan_free(&p);
	o.workers = 8;
	sched_plan_build(e, 2, &c, &o, &p);
	assert_int_equal(p.n_jobs, 2);
	sched_plan_free(&p);
	/* Maildir target: UID ranges covering 1..max, plus an empty rest
	 * part for folders created later */
	o.uid_split = true;
	sched_plan_build(e, 2, &c, &o, &p);
	for (size_t i = 0; i < p.n_jobs; i++) {
		const struct sched_job *j = &p.jobs[i];

		if (j->account != 0 || j->rest)
			continue;
		ranges++;
	}
	assert_true(ranges >= 2);
	/* in UID order the ranges are contiguous */
	for (size_t r = 0; r < ranges; r++) {
		const struct sched_job *hit = NULL;

		for (size_t i = 0; i < p.n_jobs; i++)
			if (p.jobs[i].account == 0 && !p.jobs[i].rest &&
			    p.jobs[i].uid_lo == next)
				hit = &p.jobs[i];
		assert_non_null(hit);
		assert_string_equal(hit->folders[0], "INBOX");
		if (r + 1 == ranges)
			assert_int_equal(hit->uid_hi, UINT32_MAX);
		else
			next = hit->uid_hi + 1;
	}
	for (size_t i = 0; i < p.n_jobs; i++)
		if (p.jobs[i].account == 0 && p.jobs[i].rest) {
			assert_int_equal(p.jobs[i].n_exclude, 1);
			assert_string_equal(p.jobs[i].exclude[0], "INBOX");
		}
	sched_plan_free(&p);
	for (int i = 0; i < 2; i++)
		sched_account_est_free(&e[i]);
}

static void
test_plan_folder_filter(void **state)
{
	struct sched_account_est e[10];
	struct sched_cost c;
	struct sched_plan p;
	char *inbox[] = { "inbox", NULL };
	struct sched_plan_options o = { .workers = 2, .split = true,
	                                .folders = inbox, .n_folders = 1 };

	make_est(e);
	cost_simple(&c);
	sched_plan_build(e, 10, &c, &o, &p);
	/* only the INBOXes count (any case) */
	assert_int_equal(p.messages, 400 + 8 * 15);
	/* big: 1 + 4 s, above 13.2/2? no: nothing is split */
	assert_int_equal(p.n_jobs, 10);
	sched_plan_free(&p);
	for (int i = 0; i < 10; i++)
		sched_account_est_free(&e[i]);
}

/* ------------------------------------------------- retries and the caps */

static void
test_error_classes(void **state)
{
	/* by the kind the error was given where it happened, never by the
	 * text: a server's NO text saying "No space left on device" without
	 * a code is not a full disk */
	assert_int_equal(sched_error_classify(ERRK_QUOTA), SCHED_ERR_ACCOUNT);
	assert_int_equal(sched_error_classify(ERRK_AUTH), SCHED_ERR_ACCOUNT);
	assert_int_equal(sched_error_classify(ERRK_USAGE), SCHED_ERR_ACCOUNT);
	assert_int_equal(sched_error_classify(ERRK_STATE), SCHED_ERR_RUN);
	assert_int_equal(sched_error_classify(ERRK_DISK_FULL), SCHED_ERR_RUN);
	assert_int_equal(sched_error_classify(ERRK_SESSION), SCHED_ERR_RETRY);
	assert_int_equal(sched_error_classify(ERRK_FOLDER), SCHED_ERR_RETRY);
	assert_int_equal(sched_error_classify(ERRK_OTHER), SCHED_ERR_RETRY);
	assert_int_equal(sched_error_classify(err_kind_of(err_set("target "
	                 "refused APPEND: NO No space left on device"))),
	                 SCHED_ERR_RETRY);
	assert_int_equal(sched_error_classify(err_kind_of(err_errno(ENOSPC,
	                 "write: %s", strerror(ENOSPC)))), SCHED_ERR_RUN);
	assert_int_equal(sched_error_classify(err_kind_of("a static string")),
	                 SCHED_ERR_RETRY);
	assert_int_equal(sched_backoff(5, 1), 5);
	assert_int_equal(sched_backoff(5, 2), 10);
	assert_int_equal(sched_backoff(5, 3), 20);
	assert_int_equal(sched_backoff(5, 30), 300);
}

static void
test_slots(void **state)
{
	struct sched_slots *s = sched_slots_new(2);
	char *key = sched_slot_key("h", NULL, false);

	assert_string_equal(key, "h:143");
	free(key);
	key = sched_slot_key("h", NULL, true);
	assert_string_equal(key, "h:993");
	free(key);
	assert_true(sched_slots_try_acquire(s, "a:1"));
	sched_slots_acquire(s, "a:1");
	assert_false(sched_slots_try_acquire(s, "a:1"));
	/* caps are per server */
	assert_true(sched_slots_try_acquire(s, "b:1"));
	sched_slots_release(s, "a:1");
	assert_true(sched_slots_try_acquire(s, "a:1"));
	assert_int_equal(sched_slots_peak(s), 2);
	assert_int_equal(sched_slots_max(s), 2);
	sched_slots_free(&s);
	assert_null(s);
	s = sched_slots_new(0);
	for (int i = 0; i < 100; i++)
		assert_true(sched_slots_try_acquire(s, "x"));
	assert_int_equal(sched_slots_peak(s), 100);
	sched_slots_free(&s);
}

/* ------------------------------------------------------ runs and jobs */

static void
test_state_runs_jobs(void **state)
{
	char path[] = "/tmp/test-sched-db-XXXXXX";
	int fd = mkstemp(path);
	struct state_db *db = NULL;
	struct state_run r = { 0 }, got;
	struct state_job j = { 0 }, *jobs;
	const char *error = NULL;
	size_t n;
	bool found;
	sqlite3 *raw;

	assert_true(fd >= 0);
	close(fd);
	unlink(path);
	assert_int_equal(state_open(path, &db, &error), 0);
	r.pass = "p1";
	r.src = "imap://%u@a";
	r.dst = "imap://%u@b";
	r.workers = 4;
	r.status = "running";
	r.started = 1000;
	r.est_seconds = 12.5;
	assert_int_equal(state_run_insert(db, &r, &error), 0);
	assert_true(r.id > 0);
	j.run_id = r.id;
	j.seq = 1;
	j.account = "k";
	j.src_user = "alice";
	j.dst_user = "alice";
	j.part = 1;
	j.parts = 2;
	j.folders = "INBOX\nSent";
	j.est_messages = 10;
	j.scope = -1;
	assert_int_equal(state_job_insert(db, &j, &error), 0);
	j.seq = 2;
	j.part = 2;
	j.folders = "";
	j.exclude = "INBOX\nSent";
	assert_int_equal(state_job_insert(db, &j, &error), 0);

	/* by pass, by id, any */
	assert_int_equal(state_run_get(db, 0, "p1", &got, &found, &error), 0);
	assert_true(found);
	assert_int_equal(got.id, r.id);
	assert_string_equal(got.status, "running");
	assert_string_equal(got.folders, "");
	assert_true(got.est_seconds == 12.5);
	state_run_free(&got);
	assert_int_equal(state_run_get(db, 0, "p2", &got, &found, &error), 0);
	assert_false(found);
	assert_int_equal(state_run_get(db, r.id, "ignored", &got, &found, &error), 0);
	assert_true(found);
	state_run_free(&got);

	/* progress only while running the same attempt */
	assert_int_equal(state_job_list(db, r.id, &jobs, &n, &error), 0);
	assert_int_equal(n, 2);
	assert_string_equal(jobs[0].folders, "INBOX\nSent");
	assert_string_equal(jobs[1].exclude, "INBOX\nSent");
	assert_int_equal(jobs[0].status, STATE_JOB_PENDING);
	jobs[0].status = STATE_JOB_RUNNING;
	jobs[0].attempts = 1;
	assert_int_equal(state_job_update(db, &jobs[0], &error), 0);
	assert_int_equal(state_job_progress(db, jobs[0].id, 1, 5, 500, 77, &error), 0);
	assert_int_equal(state_job_progress(db, jobs[0].id, 2, 9, 900, 78, &error), 0);
	assert_int_equal(state_job_progress(db, jobs[1].id, 0, 9, 900, 78, &error), 0);
	state_job_list_free(&jobs, n);
	assert_int_equal(state_job_list(db, r.id, &jobs, &n, &error), 0);
	assert_int_equal(jobs[0].messages, 5);
	assert_int_equal(jobs[0].bytes, 500);
	assert_int_equal(jobs[1].messages, 0);
	state_job_list_free(&jobs, n);
	/* a dead process's running jobs are pending again */
	assert_int_equal(state_job_requeue(db, r.id, &error), 0);
	assert_int_equal(state_job_list(db, r.id, &jobs, &n, &error), 0);
	assert_int_equal(jobs[0].status, STATE_JOB_PENDING);
	assert_int_equal(jobs[0].attempts, 1);
	assert_string_equal(state_job_status_name(jobs[0].status), "pending");
	state_job_list_free(&jobs, n);
	state_close(&db);

	/* a version 1 file gets the tables by migration */
	assert_int_equal(sqlite3_open(path, &raw), SQLITE_OK);
	assert_int_equal(sqlite3_exec(raw, "DROP TABLE job; DROP TABLE run;"
	                              "PRAGMA user_version = 1", NULL, NULL,
	                              NULL), SQLITE_OK);
	assert_int_equal(sqlite3_close(raw), SQLITE_OK);
	assert_int_equal(state_open(path, &db, &error), 0);
	assert_int_equal(state_run_get(db, 0, NULL, &got, &found, &error), 0);
	assert_false(found);
	state_close(&db);
	unlink(path);
	{
		char side[sizeof(path) + 8];

		snprintf(side, sizeof(side), "%s-wal", path);
		unlink(side);
		snprintf(side, sizeof(side), "%s-shm", path);
		unlink(side);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_users_parse),
		cmocka_unit_test(test_users_load),
		cmocka_unit_test(test_users_control_bytes),
		cmocka_unit_test(test_template_expand),
		cmocka_unit_test(test_url_helpers),
		cmocka_unit_test(test_accounts_build),
		cmocka_unit_test(test_names_codec),
		cmocka_unit_test(test_cost_fit),
		cmocka_unit_test(test_cost_job_and_speedup),
		cmocka_unit_test(test_lpt),
		cmocka_unit_test(test_predict),
		cmocka_unit_test(test_plan_split_by_folder),
		cmocka_unit_test(test_plan_families),
		cmocka_unit_test(test_plan_uid_ranges),
		cmocka_unit_test(test_plan_folder_filter),
		cmocka_unit_test(test_error_classes),
		cmocka_unit_test(test_slots),
		cmocka_unit_test(test_state_runs_jobs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
