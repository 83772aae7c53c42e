/* test_maildir_create.c: maildir_folder_create(), maildir_folder_takeover()
 * and maildir_create_cleanup() (src/maildir/maildir-create.c): a folder
 * appears complete, with its uidlist, or not at all. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "maildir.h"
#include "tmpdir.h"

struct fx {
	char dir[256];
	char root[300];
	struct maildir_options o;
};

static int
setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	if (fx == NULL || tmpdir_make(fx->dir, sizeof(fx->dir), "mdcreate") < 0)
		return -1;
	snprintf(fx->root, sizeof(fx->root), "%s/home/Maildir", fx->dir);
	maildir_options_init(&fx->o);
	fx->o.fsync = false;
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *fx = *state;

	tmpdir_remove(fx->dir);
	free(fx);
	return 0;
}

static char *
slurp(const char *path)
{
	static char buf[4096];
	FILE *f = fopen(path, "r");
	size_t n;

	if (f == NULL)
		return NULL;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* true if dir/name exists */
static bool
exists(const char *dir, const char *name)
{
	char p[600];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return lstat(p, &st) == 0;
}

/* A pid that is not running (a child that exited). */
static pid_t
dead_pid(void)
{
	pid_t pid = fork();

	if (pid == 0)
		_exit(0);
	waitpid(pid, NULL, 0);
	return pid;
}

/* fchown() of the maildir code, replaced: a test is not root and cannot
 * give files away. It marks what it "gave away" with the sticky bit, and
 * after fchown_calls_left more calls it dies as kill -9 would (no
 * cleanup), so a test can stop a run at each fchown in turn. */
static long fchown_calls_left = -1;     /* -1: never dies */

int
fchown(int fd, uid_t owner, gid_t group)
{
	struct stat st;

	(void)owner;
	(void)group;
	if (fchown_calls_left == 0)
		_exit(137);
	if (fchown_calls_left > 0)
		fchown_calls_left--;
	if (fstat(fd, &st) < 0)
		return -1;
	return (int)syscall(SYS_fchmod, fd, (st.st_mode & 07777) | S_ISVTX);
}

/* Walks dir: every directory under a real name (not a stage, whose names
 * hold "imapferry-") must carry the mark of fchown(); counts the stages
 * seen in *stages. */
static void
check_marked(const char *dir, unsigned int *stages)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		char p[1200];
		struct stat st;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		assert_int_equal(lstat(p, &st), 0);
		if (!S_ISDIR(st.st_mode))
			continue;
		if (strstr(de->d_name, "imapferry-") != NULL) {
			(*stages)++;
			continue;
		}
		if ((st.st_mode & S_ISVTX) == 0)
			fail_msg("%s is visible without its owner", p);
		check_marked(p, stages);
	}
	closedir(d);
}

/* A run killed at any fchown() leaves no directory under its real name
 * that lacks its owner (a server running as that owner could not read
 * it), and the next run finishes the job and removes the stages. */
static void
test_kill_at_each_chown(void **state)
{
	struct fx *fx = *state;
	static const char *const firsts[] = { "", ".Sent" };
	mode_t old_umask = umask(077);

	fx->o.owner = geteuid() + 1;    /* never us: every new inode is chowned */
	fx->o.dir_mode = 0750;
	for (size_t k = 0; k < 2; k++) {
		bool completed = false;

		for (long n = 0; n < 40 && !completed; n++) {
			char base[400], root[500];
			const char *error = NULL;
			unsigned int stages = 0;
			bool created;
			pid_t pid;
			int status;

			snprintf(base, sizeof(base), "%s/k%zu-%ld", fx->dir, k, n);
			assert_int_equal(mkdir(base, 0700), 0);
			snprintf(root, sizeof(root), "%s/vmail/user/Maildir", base);
			pid = fork();
			assert_true(pid >= 0);
			if (pid == 0) {
				fchown_calls_left = n;
				if (maildir_folder_create(root, firsts[k], &fx->o, 5,
				                          &created, &error) < 0)
					_exit(2);
				_exit(0);
			}
			assert_int_equal(waitpid(pid, &status, 0), pid);
			assert_true(WIFEXITED(status));
			if (WEXITSTATUS(status) == 0)
				completed = true;
			else
				assert_int_equal(WEXITSTATUS(status), 137);
			check_marked(base, &stages);
			/* the next run completes and leaves no stage */
			fchown_calls_left = -1;
			maildir_create_cleanup(root);
			if (maildir_folder_create(root, firsts[k], &fx->o, 5, &created,
			                          &error) < 0 ||
			    maildir_folder_create(root, "", &fx->o, 5, &created,
			                          &error) < 0)
				fail_msg("kill at chown %ld, next run: %s", n, error);
			{
				/* as the Maildir target opens INBOX: a root that a
				 * folder's creation made gets cur/, new/, tmp/ */
				struct maildir_folder *f;

				if (maildir_folder_open(root, "", &fx->o, true, &f, &error) < 0)
					fail_msg("kill at chown %ld, open INBOX: %s", n, error);
				maildir_folder_close(&f);
			}
			stages = 0;
			check_marked(base, &stages);
			if (stages != 0)
				fail_msg("kill at chown %ld: %u stages left", n, stages);
			{
				char cur[600];
				struct stat st;

				snprintf(cur, sizeof(cur), "%s/cur", root);
				assert_int_equal(stat(cur, &st), 0);
				assert_int_equal(st.st_mode & 0777, 0750);
			}
		}
		assert_true(completed);
	}
	umask(old_umask);
}

static void
test_inbox_then_folder(void **state)
{
	struct fx *fx = *state;
	const char *error = NULL;
	char p[600];
	bool created;

	assert_int_equal(maildir_folder_create(fx->root, "", &fx->o, 1234, &created,
	                                       &error), 0);
	assert_true(created);
	snprintf(p, sizeof(p), "%s/dovecot-uidlist", fx->root);
	assert_string_equal(slurp(p), "3 V1234 N1\n");
	assert_true(exists(fx->root, "cur"));
	assert_true(exists(fx->root, "new"));
	assert_true(exists(fx->root, "tmp"));
	assert_false(exists(fx->root, "maildirfolder"));

	assert_int_equal(maildir_folder_create(fx->root, ".A.B", &fx->o, 77, &created,
	                                       &error), 0);
	assert_true(created);
	snprintf(p, sizeof(p), "%s/.A.B/dovecot-uidlist", fx->root);
	assert_string_equal(slurp(p), "3 V77 N1\n");
	assert_true(exists(fx->root, ".A.B/maildirfolder"));
	assert_true(exists(fx->root, ".A.B/cur"));
	/* nothing left of the staging directories */
	snprintf(p, sizeof(p), "%s/tmp", fx->root);
	assert_int_equal(rmdir(p), 0);
	assert_int_equal(mkdir(p, 0700), 0);

	/* exists: left alone */
	assert_int_equal(maildir_folder_create(fx->root, ".A.B", &fx->o, 99, &created,
	                                       &error), 0);
	assert_false(created);
	snprintf(p, sizeof(p), "%s/.A.B/dovecot-uidlist", fx->root);
	assert_string_equal(slurp(p), "3 V77 N1\n");
	assert_int_equal(maildir_folder_create(fx->root, "", &fx->o, 99, &created,
	                                       &error), 0);
	assert_false(created);

	/* the folder opens with the UIDVALIDITY it was created with */
	{
		struct maildir_folder *f;

		assert_int_equal(maildir_folder_open(fx->root, ".A.B", &fx->o, true, &f,
		                                     &error), 0);
		assert_int_equal(maildir_folder_uidvalidity(f), 77);
		maildir_folder_close(&f);
	}
	assert_int_equal(maildir_folder_create(fx->root, "..", &fx->o, 1, &created,
	                                       &error), -1);
	assert_int_equal(maildir_folder_create(fx->root, ".x", &fx->o, 0, &created,
	                                       &error), -1);
}

static void
test_courier(void **state)
{
	struct fx *fx = *state;
	const char *error = NULL;
	char p[600];
	bool created;

	fx->o.flavor = MAILDIR_COURIER;
	assert_int_equal(maildir_folder_create(fx->root, "", &fx->o, 5, &created,
	                                       &error), 0);
	assert_int_equal(maildir_folder_create(fx->root, ".Sent", &fx->o, 6, &created,
	                                       &error), 0);
	snprintf(p, sizeof(p), "%s/.Sent/courierimapuiddb", fx->root);
	assert_string_equal(slurp(p), "1 6 1\n");
}

static void
test_cleanup_of_killed_runs(void **state)
{
	struct fx *fx = *state;
	const char *error = NULL;
	char p[700];
	pid_t dead = dead_pid();
	bool created;

	assert_int_equal(maildir_folder_create(fx->root, "", &fx->o, 1, &created,
	                                       &error), 0);
	/* a staging directory of a killed run, and one of a live process */
	snprintf(p, sizeof(p), "%s/tmp/.imapferry-new-%ld-abcdef", fx->root, (long)dead);
	assert_int_equal(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/tmp/.imapferry-new-%ld-abcdef/cur", fx->root, (long)dead);
	assert_int_equal(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/tmp/.imapferry-new-%ld-abcdef/dovecot-uidlist", fx->root,
	         (long)dead);
	fclose(fopen(p, "w"));
	snprintf(p, sizeof(p), "%s/tmp/.imapferry-new-1-live", fx->root);
	assert_int_equal(mkdir(p, 0700), 0);
	maildir_create_cleanup(fx->root);
	snprintf(p, sizeof(p), "%s/tmp/.imapferry-new-%ld-abcdef", fx->root, (long)dead);
	assert_int_equal(access(p, F_OK), -1);
	snprintf(p, sizeof(p), "%s/tmp/.imapferry-new-1-live", fx->root);
	assert_int_equal(access(p, F_OK), 0);
}

static void
test_takeover(void **state)
{
	struct fx *fx = *state;
	const char *error = NULL;
	char p[600];
	bool created;
	FILE *f;

	/* a folder the server numbered itself: its own UIDVALIDITY, empty */
	assert_int_equal(maildir_folder_create(fx->root, ".T", &fx->o, 1000, &created,
	                                       &error), 0);
	snprintf(p, sizeof(p), "%s/.T/dovecot-uidlist", fx->root);
	f = fopen(p, "w");
	fputs("3 V1700000000 N1 G0123456789abcdef0123456789abcdef\n", f);
	fclose(f);
	assert_int_equal(maildir_folder_takeover(fx->root, ".T", &fx->o, 42, &error), 0);
	assert_string_equal(slurp(p), "3 V42 N1\n");
	snprintf(p, sizeof(p), "%s/.T/dovecot-uidlist.lock", fx->root);
	assert_int_equal(access(p, F_OK), -1);

	/* a root without uidlist, made by hand */
	assert_int_equal(maildir_folder_takeover(fx->root, "", &fx->o, 7, &error), -1);
	snprintf(p, sizeof(p), "%s/cur", fx->root);
	assert_int_equal(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/tmp", fx->root);
	(void)mkdir(p, 0700);
	assert_int_equal(maildir_folder_takeover(fx->root, "", &fx->o, 7, &error), 0);
	snprintf(p, sizeof(p), "%s/dovecot-uidlist", fx->root);
	assert_string_equal(slurp(p), "3 V7 N1\n");

	/* not empty: refused, untouched */
	snprintf(p, sizeof(p), "%s/.T/cur/1.M1P1.host,S=3:2,S", fx->root);
	f = fopen(p, "w");
	fputs("abc", f);
	fclose(f);
	assert_int_equal(maildir_folder_takeover(fx->root, ".T", &fx->o, 43, &error), -1);
	assert_non_null(strstr(error, "not empty"));
	snprintf(p, sizeof(p), "%s/.T/dovecot-uidlist", fx->root);
	assert_string_equal(slurp(p), "3 V42 N1\n");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_inbox_then_folder, setup, teardown),
		cmocka_unit_test_setup_teardown(test_courier, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cleanup_of_killed_runs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_takeover, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kill_at_each_chown, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
