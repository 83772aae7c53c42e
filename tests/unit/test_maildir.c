/* test_maildir.c: the Dovecot/Courier Maildir++ reader and writer. */
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "maildir.h"
#include "maildir-private.h"
#include "tmpdir.h"

/* The accessors fill a caller's struct: these keep the tests short by
 * filling one of a ring of structs (a test holds a few at a time). */
static struct maildir_msg *
tslot(void)
{
	static struct maildir_msg ring[16];
	static unsigned int k;

	return &ring[k++ % 16];
}

static const struct maildir_msg *
tfind(struct maildir_folder *f, uint32_t uid)
{
	struct maildir_msg *m = tslot();

	return maildir_folder_find(f, uid, m) ? m : NULL;
}

static const struct maildir_msg *
tmsg(struct maildir_folder *f, size_t i)
{
	struct maildir_msg *m = tslot();

	return maildir_folder_msg(f, i, m) ? m : NULL;
}

static const struct maildir_msg *
tunl(struct maildir_folder *f, size_t i)
{
	struct maildir_msg *m = tslot();

	return maildir_folder_unlisted(f, i, m) ? m : NULL;
}

struct fixture {
	char dir[256];
	char root[300];
};

static int
setup(void **statep)
{
	struct fixture *fx = xcalloc(1, sizeof(*fx));

	if (tmpdir_make(fx->dir, sizeof(fx->dir), "test_maildir") < 0) {
		free(fx);
		return -1;
	}
	snprintf(fx->root, sizeof(fx->root), "%s/Maildir", fx->dir);
	*statep = fx;
	return 0;
}

static int
teardown(void **statep)
{
	struct fixture *fx = *statep;

	tmpdir_remove(fx->dir);
	free(fx);
	return 0;
}

/* ---- helpers ---- */

static struct maildir_options
opts(enum maildir_flavor flavor)
{
	struct maildir_options o;

	maildir_options_init(&o);
	o.flavor = flavor;
	o.fsync = false;
	o.lock_timeout_ms = 5000;
	o.hostname = "mx.test";
	return o;
}

static struct maildir_folder *
open_ok(const char *root, const char *dirname, const struct maildir_options *o)
{
	struct maildir_folder *f = NULL;
	const char *error = NULL;

	if (maildir_folder_open(root, dirname, o, true, &f, &error) < 0)
		fail_msg("maildir_folder_open(%s, %s): %s", root, dirname, error);
	return f;
}

static void
deliver_ok(struct maildir_folder *f, uint32_t uid, const char *flags,
           int64_t date, const char *data, const char *uidl, char **dropped_r)
{
	const char *error;

	if (maildir_deliver(f, uid, flags, date, data, strlen(data), uidl, dropped_r,
	                    &error) < 0)
		fail_msg("deliver %u: %s", uid, error);
}

static void
commit_ok(struct maildir_folder *f)
{
	const char *error;

	if (maildir_folder_commit(f, &error) < 0)
		fail_msg("commit: %s", error);
}

static char *
slurp(const char *path)
{
	/* not file_read_small(): message files may hold any byte */
	FILE *f = fopen(path, "rb");
	char *data;
	size_t len;

	if (f == NULL)
		fail_msg("read %s: %s", path, strerror(errno));
	data = xmalloc((1 << 24) + 1);
	len = fread(data, 1, 1 << 24, f);
	fclose(f);
	data[len] = '\0';
	return data;
}

static char *
slurp2(const char *dir, const char *name)
{
	char *p = xasprintf("%s/%s", dir, name);
	char *d = slurp(p);

	free(p);
	return d;
}

/* The name in dir of the file whose base is base (new string), or NULL. */
static char *
find_file(const char *dir, const char *base)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t blen = strlen(base);
	char *r = NULL;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, base, blen) == 0 &&
		    (de->d_name[blen] == ':' || de->d_name[blen] == '\0'))
			r = xstrdup(de->d_name);
	}
	closedir(d);
	return r;
}

static size_t
count_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] != '.')
			n++;
	}
	closedir(d);
	return n;
}

/* Returns the next line of buf from *off (NUL-terminated in place) and
 * moves *off past it, or NULL at the end. An offset, not a pointer into
 * buf: GCC 12 at -O2 takes a cursor pointer for one to a local of the
 * inlined slurp() (a false -Wdangling-pointer). */
static char *
next_line(char *buf, size_t *off)
{
	char *line = buf + *off;
	size_t len;

	if (*line == '\0')
		return NULL;
	len = strcspn(line, "\n");
	*off += len;
	if (line[len] == '\n') {
		line[len] = '\0';
		(*off)++;
	}
	return line;
}

static uint64_t
field(const char *name, char key)
{
	uint64_t v = 0;

	assert_true(md_name_field(name, key, &v));
	return v;
}

static const char msg_crlf[] =
	"From: a@example.com\r\nSubject: one\r\n\r\nHello\r\nWorld\r\n";
static const char msg_lf[] =
	"From: b@example.com\nSubject: two\n\nbare\nLF\nlines\n";
static const char msg_mixed[] =
	"From: c@example.com\r\nSubject: three\n\r\nx\ry\r\n";

/* ---- maildir_folder_dirname ---- */

static void
test_dirname_table(void **state)
{
	static const struct {
		const char *c[3];
		size_t n;
		const char *expect;     /* NULL: refused */
	} cases[] = {
		{ { "Archive", "2019" }, 2, ".Archive.2019" },
		{ { "INBOX" }, 1, "" },
		{ { "inbox" }, 1, "" },
		{ { NULL }, 0, "" },
		{ { "INBOX", "Sub" }, 2, ".INBOX.Sub" },
		{ { "Listes", "&APw-n&AO8-code" }, 2, ".Listes.&APw-n&AO8-code" },
		{ { "Beta &- Co" }, 1, ".Beta &- Co" },
		{ { ".." }, 1, NULL },
		{ { "." }, 1, NULL },
		{ { "" }, 1, NULL },
		{ { "a/b" }, 1, NULL },
		{ { "a.b" }, 1, NULL },
		{ { "\x01" }, 1, NULL },
		{ { "tab\there" }, 1, NULL },
		{ { "del\x7f" }, 1, NULL },
		{ { "caf\xc3\xa9" }, 1, NULL },
		{ { "bad&utf7" }, 1, NULL },
		{ { "Archive", "" }, 2, NULL },
		{ { "Archive", ".." }, 2, NULL },
	};
	char big[301];
	const char *bigc[1] = { big };
	char *d;
	const char *error;

	(void)state;
	for (size_t i = 0; i < N_ELEMENTS(cases); i++) {
		int r = maildir_folder_dirname(cases[i].c, cases[i].n, &d, &error);

		if (cases[i].expect == NULL) {
			assert_int_equal(r, -1);
			assert_null(d);
			assert_non_null(error);
		} else {
			if (r < 0)
				fail_msg("case %zu: %s", i, error);
			assert_string_equal(d, cases[i].expect);
			free(d);
		}
	}
	memset(big, 'x', 300);
	big[300] = '\0';
	assert_int_equal(maildir_folder_dirname(bigc, 1, &d, &error), -1);
	assert_non_null(strstr(error, "200"));
	/* components fine, whole name over NAME_MAX */
	{
		const char *c[2] = { big + 100, big + 100 };

		assert_int_equal(maildir_folder_dirname(c, 2, &d, &error), -1);
		assert_non_null(strstr(error, "too long"));
	}
}

/* ---- Dovecot: deliver with chosen UIDs, exact on-disk format ---- */

static void
test_dovecot_deliver_format(void **state)
{
	struct fixture *fx = *state;
	struct maildir_options o = opts(MAILDIR_DOVECOT);
	struct maildir_folder *f = open_ok(fx->root, ".Archive", &o);
	char *dir = xasprintf("%s/.Archive", fx->root);
	char *cur = xasprintf("%s/cur", dir);
	char *uidlist, *kw, *dropped = NULL, *line;
	size_t off = 0;
	const char *error;
	const struct maildir_msg *m;
	struct stat st;
	uint32_t uids[3] = { 5, 17, 900 };
	const char *datas[3] = { msg_crlf, msg_lf, msg_mixed };
	int64_t dates[3] = { 1500000005, 1500000017, 1500000900 };
	size_t n = 0;

	assert_int_equal(maildir_folder_uidvalidity(f), 0);
	assert_int_equal(maildir_folder_set_uids(f, 1234567, 1001, &error), 0);
	assert_int_equal(maildir_folder_uidvalidity(f), 1234567);
	assert_int_equal(maildir_folder_uidnext(f), 1001);
	assert_int_equal(maildir_folder_min_uid(f), 1);

	deliver_ok(f, 5, "\\Seen \\Flagged \\Answered Work", dates[0], msg_crlf,
	           NULL, &dropped);
	assert_null(dropped);
	deliver_ok(f, 17, "(\\Deleted \\Draft)", dates[1], msg_lf, NULL, NULL);
	deliver_ok(f, 900, "$Label1 work \\Recent", dates[2], msg_mixed, "UIDL-900",
	           &dropped);
	assert_null(dropped);
	assert_int_equal(maildir_folder_min_uid(f), 901);
	/* strictly ascending */
	assert_int_equal(maildir_deliver(f, 900, "", 1, "x", 1, NULL, NULL, &error), -1);
	assert_non_null(strstr(error, "900"));
	/* nothing written before commit */
	{
		char *p = xasprintf("%s/dovecot-uidlist", dir);

		assert_int_equal(stat(p, &st), -1);
		free(p);
	}
	commit_ok(f);
	assert_int_equal(maildir_folder_min_uid(f), 1001);
	/* the lock is gone, tmp/ is empty */
	{
		char *p = xasprintf("%s/dovecot-uidlist.lock", dir);
		char *t = xasprintf("%s/tmp", dir);

		assert_int_equal(stat(p, &st), -1);
		assert_int_equal(count_files(t), 0);
		free(p);
		free(t);
	}

	uidlist = slurp2(dir, "dovecot-uidlist");
	line = next_line(uidlist, &off);
	assert_string_equal(line, "3 V1234567 N1001");
	while ((line = next_line(uidlist, &off)) != NULL) {
		char expect_prefix[64], *base, *name, *path;
		uint64_t s, w;
		size_t len = strlen(datas[n]), bare = 0;

		assert_true(n < 3);
		snprintf(expect_prefix, sizeof(expect_prefix), "%u %s:", uids[n],
		         uids[n] == 900 ? "PUIDL-900 " : "");
		assert_true(strncmp(line, expect_prefix, strlen(expect_prefix)) == 0);
		base = line + strlen(expect_prefix);
		name = find_file(cur, base);
		assert_non_null(name);
		/* base is exactly the file name up to ':' */
		assert_int_equal(md_name_base_len(name), strlen(base));
		path = xasprintf("%s/%s", cur, name);
		assert_int_equal(stat(path, &st), 0);
		s = field(name, 'S');
		assert_int_equal(s, (uint64_t)st.st_size);
		assert_int_equal(s, len);
		for (size_t i = 0; i < len; i++)
			bare += datas[n][i] == '\n' && (i == 0 || datas[n][i - 1] != '\r');
		w = field(name, 'W');
		assert_int_equal(w, len + bare);
		assert_int_equal(st.st_mtime, dates[n]);
		assert_int_equal(st.st_mode & 0777, 0600);
		{
			char *content = slurp(path);

			assert_memory_equal(content, datas[n], len);
			free(content);
		}
		/* the unique part starts with the internaldate */
		{
			char prefix[32];

			snprintf(prefix, sizeof(prefix), "%lld.M", (long long)dates[n]);
			assert_true(strncmp(name, prefix, strlen(prefix)) == 0);
			assert_non_null(strstr(name, ".mx.test,S="));
		}
		if (n == 0)
			assert_string_equal(md_name_letters(name), "FRSa");
		else if (n == 1)
			assert_string_equal(md_name_letters(name), "DT");
		else
			assert_string_equal(md_name_letters(name), "ab");
		free(path);
		free(name);
		n++;
	}
	assert_int_equal(n, 3);
	free(uidlist);

	kw = slurp2(dir, "dovecot-keywords");
	assert_string_equal(kw, "0 Work\n1 $Label1\n");
	free(kw);

	/* the in-memory view */
	assert_int_equal(maildir_folder_count(f), 3);
	m = tfind(f, 5);
	assert_non_null(m);
	assert_string_equal(m->flags, "Work \\Answered \\Flagged \\Seen");
	assert_int_equal(m->size, strlen(msg_crlf));
	m = tfind(f, 900);
	assert_string_equal(m->flags, "$Label1 Work");
	assert_string_equal(m->pop3_uidl, "UIDL-900");
	{
		char *p = xasprintf("%s/maildirfolder", dir);

		assert_int_equal(stat(p, &st), 0);
		assert_int_equal(st.st_size, 0);
		free(p);
	}
	maildir_folder_close(&f);
	assert_null(f);
	free(cur);
	free(dir);
}

/* ---- 27 keywords ---- */

static void
test_dovecot_27_keywords(void **state)
{
	struct fixture *fx = *state;
	struct maildir_options o = opts(MAILDIR_DOVECOT);
	struct maildir_folder *f = open_ok(fx->root, "", &o);
	struct buf flags;
	char *dropped = NULL, *kw, *name, *cur;
	const char *error;

	buf_init(&flags, 4096);
	assert_int_equal(buf_append_str(&flags, "\\Seen"), 0);
	for (int i = 0; i < 27; i++)
		assert_int_equal(buf_printf(&flags, " kw%02d", i), 0);
	assert_int_equal(buf_append_str(&flags, " \\Bogus bad\"kw"), 0);
	assert_int_equal(maildir_folder_set_uids(f, 7, 0, &error), 0);
	deliver_ok(f, 1, buf_data(&flags), 1600000000, msg_crlf, NULL, &dropped);
	assert_non_null(dropped);
	assert_string_equal(dropped, "\\Bogus bad\"kw kw26");
	free(dropped);
	commit_ok(f);
	/* INBOX: the root itself, no maildirfolder */
	cur = xasprintf("%s/cur", fx->root);
	assert_int_equal(count_files(cur), 1);
	name = find_file(cur, tfind(f, 1)->base);
	assert_string_equal(md_name_letters(name), "Sabcdefghijklmnopqrstuvwxyz");
	kw = slurp2(fx->root, "dovecot-keywords");
	assert_true(strncmp(kw, "0 kw00\n1 kw01\n", 14) == 0);
	assert_non_null(strstr(kw, "25 kw25\n"));
	assert_null(strstr(kw, "kw26"));
	{
		char *p = xasprintf("%s/maildirfolder", fx->root);
		struct stat st;

		assert_int_equal(stat(p, &st), -1);
		free(p);
	}
	/* uidlist without set N: N = last + 1 */
	{
		char *ul = slurp2(fx->root, "dovecot-uidlist");

		assert_true(strncmp(ul, "3 V7 N2\n1 :", 11) == 0);
		free(ul);
	}
	free(kw);
	free(name);
	free(cur);
	buf_free(&flags);
	maildir_folder_close(&f);
}

/* ---- set_flags, expunge, reopen ---- */

static void
test_dovecot_flags_expunge_reopen(void **state)
{
	struct fixture *fx = *state;
	struct maildir_options o = opts(MAILDIR_DOVECOT);
	struct maildir_folder *f = open_ok(fx->root, ".Box", &o);
	char *dir = xasprintf("%s/.Box", fx->root);
	char *cur = xasprintf("%s/cur", dir);
	char *base5, *base17, *name, *ul, *dropped;
	const struct maildir_msg *m;
	const char *error;
	struct stat st;

	assert_int_equal(maildir_folder_set_uids(f, 1234567, 1001, &error), 0);
	deliver_ok(f, 5, "\\Seen", 1500000005, msg_crlf, NULL, NULL);
	deliver_ok(f, 17, "", 1500000017, msg_lf, "U17", NULL);
	deliver_ok(f, 900, "Work", 1500000900, msg_mixed, NULL, NULL);
	commit_ok(f);
	base5 = xstrdup(tfind(f, 5)->base);
	base17 = xstrdup(tfind(f, 17)->base);

	/* set_flags renames within cur/, keeps the base and unmanaged letters */
	name = find_file(cur, base17);
	{
		char *from = xasprintf("%s/%s", cur, name);
		char *to = xasprintf("%s/%s:2,P", cur, base17);

		assert_int_equal(rename(from, to), 0);   /* as if Dovecot set P */
		free(from);
		free(to);
	}
	free(name);
	assert_int_equal(maildir_set_flags(f, 17, "\\Flagged Work $New", &dropped,
	                                   &error), 0);
	assert_null(dropped);
	name = find_file(cur, base17);
	assert_string_equal(md_name_letters(name), "FPab");
	free(name);
	assert_string_equal(tfind(f, 17)->flags, "$New Work \\Flagged");
	assert_int_equal(maildir_set_flags(f, 4242, "", NULL, &error), -1);

	/* expunge removes the file now and the line at commit */
	assert_int_equal(maildir_expunge(f, 5, &error), 0);
	assert_null(find_file(cur, base5));
	assert_null(tfind(f, 5));
	assert_int_equal(maildir_folder_count(f), 2);
	assert_int_equal(maildir_expunge(f, 5, &error), -1);
	commit_ok(f);
	ul = slurp2(dir, "dovecot-uidlist");
	assert_null(strstr(ul, base5));
	assert_true(strncmp(ul, "3 V1234567 N1001\n17 PU17 :", 26) == 0);
	free(ul);
	maildir_folder_close(&f);

	/* reopen: everything read back */
	f = open_ok(fx->root, ".Box", &o);
	assert_int_equal(maildir_folder_uidvalidity(f), 1234567);
	assert_int_equal(maildir_folder_uidnext(f), 1001);
	assert_int_equal(maildir_folder_min_uid(f), 1001);
	assert_int_equal(maildir_folder_count(f), 2);
	assert_int_equal(maildir_folder_unlisted_count(f), 0);
	m = tmsg(f, 0);
	assert_int_equal(m->uid, 17);
	assert_string_equal(m->base, base17);
	assert_string_equal(m->flags, "$New Work \\Flagged");
	assert_string_equal(m->pop3_uidl, "U17");
	assert_int_equal(m->mtime, 1500000017);
	assert_int_equal(m->file_size, strlen(msg_lf));
	assert_int_equal(m->size, strlen(msg_lf) + 6);    /* 6 bare LFs */
	m = tmsg(f, 1);
	assert_int_equal(m->uid, 900);
	assert_string_equal(m->flags, "Work");
	assert_null(m->pop3_uidl);
	{
		uint64_t size;
		int fd;

		assert_int_equal(maildir_open_msg(f, 900, &fd, &size, &error), 0);
		assert_int_equal(size, strlen(msg_mixed));
		assert_int_equal(fstat(fd, &st), 0);
		close(fd);
		assert_int_equal(maildir_msg_size(f, 900, &size, &error), 0);
		assert_int_equal(size, strlen(msg_mixed) + 1);
		assert_int_equal(maildir_open_msg(f, 5, &fd, &size, &error), -1);
	}
	/* a UID below what the folder has had is refused */
	assert_int_equal(maildir_deliver(f, 1000, "", 1, "x", 1, NULL, NULL, &error), -1);
	assert_non_null(strstr(error, "1001"));
	assert_int_equal(maildir_deliver(f, 901, "", 1, "x", 1, NULL, NULL, &error), -1);
	deliver_ok(f, 1001, "", 1600000000, msg_crlf, NULL, NULL);
	/* UIDVALIDITY can't change, UIDNEXT can't shrink */
	assert_int_equal(maildir_folder_set_uids(f, 99, 0, &error), -1);
	assert_non_null(strstr(error, "1234567"));
	assert_int_equal(maildir_folder_set_uids(f, 1234567, 1001, &error), -1);
	assert_int_equal(maildir_folder_set_uids(f, 1234567, 5000, &error), 0);
	commit_ok(f);
	ul = slurp2(dir, "dovecot-uidlist");
	assert_true(strncmp(ul, "3 V1234567 N5000\n", 17) == 0);
	free(ul);
	maildir_folder_close(&f);
	free(base5);
	free(base17);
	free(cur);
	free(dir);
}

/* ---- an existing uidlist: header fields and line extensions kept ---- */

static void
write_file(const char *path, const char *data)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	assert_int_equal(fputs(data, fp) >= 0, 1);
	assert_int_equal(fclose(fp), 0);
}

static void
test_dovecot_existing_uidlist(void **state)
{
	struct fixture *fx = *state;
	struct maildir_options o = opts(MAILDIR_DOVECOT);
	struct maildir_folder *f = open_ok(fx->root, "", &o);
	char *p, *ul;
	const char *error;

	maildir_folder_close(&f);
	p = xasprintf("%s/cur/1500000005.M5P1.mx,S=49,W=54:2,S", fx->root);
	write_file(p, "x");
	free(p);
	p = xasprintf("%s/cur/1500000900.M900P1.mx,S=185:2,", fx->root);
	write_file(p, "y");
	free(p);
	p = xasprintf("%s/new/1600000000.M1P2.mx", fx->root);
	write_file(p, "mda");
	free(p);
	p = xasprintf("%s/dovecot-uidlist", fx->root);
	/* out of order on purpose; a line without its file */
	write_file(p, "3 V1234567 N1001 G0123456789abcdef0123456789abcdef Xfoo\n"
	              "900 W191 :1500000900.M900P1.mx,S=185\n"
	              "5 :1500000005.M5P1.mx,S=49,W=54\n"
	              "17 :1500000017.M17P1.mx,S=52,W=57\n");
	free(p);

	f = open_ok(fx->root, "", &o);
	assert_int_equal(maildir_folder_uidvalidity(f), 1234567);
	assert_int_equal(maildir_folder_count(f), 2);
	assert_int_equal(tmsg(f, 0)->uid, 5);
	assert_int_equal(tmsg(f, 0)->size, 54);
	assert_string_equal(tmsg(f, 0)->flags, "\\Seen");
	assert_int_equal(tmsg(f, 1)->uid, 900);
	assert_int_equal(tmsg(f, 1)->size, 191);
	/* the MDA's file in new/ */
	assert_int_equal(maildir_folder_unlisted_count(f), 1);
	assert_string_equal(tunl(f, 0)->base, "1600000000.M1P2.mx");
	assert_true(tunl(f, 0)->in_new);
	assert_int_equal(maildir_folder_min_uid(f), 1001);
	assert_int_equal(maildir_folder_set_uids(f, 1234567, 0, &error), 0);
	deliver_ok(f, 1001, "", 1600000001, msg_crlf, NULL, NULL);
	commit_ok(f);
	ul = slurp2(fx->root, "dovecot-uidlist");
	{
		static const char expect[] =
			"3 V1234567 N1002 G0123456789abcdef0123456789abcdef Xfoo\n"
			"5 :1500000005.M5P1.mx,S=49,W=54\n"
			"17 :1500000017.M17P1.mx,S=52,W=57\n"
			"900 W191 :1500000900.M900P1.mx,S=185\n"
			"1001 :1600000001.M";

		assert_true(strncmp(ul, expect, strlen(expect)) == 0);
	}
	free(ul);
	/* adopt the unlisted file with the next UID: moved to cur/ */
	assert_int_equal(maildir_unlisted_adopt(f, 0, 1001, &error), -1);
	assert_int_equal(maildir_unlisted_adopt(f, 0, 1002, &error), 0);
	assert_int_equal(maildir_folder_unlisted_count(f), 0);
	assert_false(tfind(f, 1002)->in_new);
	commit_ok(f);
	ul = slurp2(fx->root, "dovecot-uidlist");
	assert_non_null(strstr(ul, "\n1002 :1600000000.M1P2.mx\n"));
	/* appended: the header keeps N1002, readers take the last UID + 1 */
	assert_true(strncmp(ul, "3 V1234567 N1002 ", 17) == 0);
	assert_int_equal(maildir_folder_min_uid(f), 1003);
	free(ul);
	maildir_folder_close(&f);

	/* a broken uidlist is refused, not rewritten */
	p = xasprintf("%s/dovecot-uidlist", fx->root);
	write_file(p, "3 V1 N2\nfoo :bar\n");
	assert_int_equal(maildir_folder_open(fx->root, "", &o, false, &f, &error), -1);
	assert_non_null(strstr(error, "corrupt"));
	free(p);
}

/* ---- locks ---- */

static void
write_lock(const char *path, const char *content)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
	close(fd);
}

static pid_t
dead_pid(void)
{
	pid_t pid = fork();
	int status;

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return pid;
}

static void
test_lock_timeout(void **state)
{
	struct fixture *fx = *state;
	struct maildir_options o = opts(MAILDIR_DOVECOT);
	struct maildir_folder *f;
	char host[256], content[300], *lock;
	const char *error;
	uint64_t t0;
	struct stat st;

	o.lock_timeout_ms = 1200;
	f = open_ok(fx->root, ".L", &o);
	assert_int_equal(gethostname(host, sizeof(host)), 0);
	/* a live pid on this host: our own */
	snprintf(content, sizeof(content), "%ld:%s", (long)getpid(), host);
	lock = xasprintf("%s/.L/dovecot-uidlist.lock", fx->root);
	write_lock(lock, content);
	assert_int_equal(maildir_folder_set_uids(f, 1, 10, &error), 0);
	t0 = time_mono_ms();
	assert_int_equal(maildir_folder_commit(f, &error), -1);
	assert_true(time_mono_ms() - t0 >= 1100);
	assert_non_null(strstr(error, "dovecot-uidlist.lock is locked by"));
	assert_non_null(strstr(error, content));
	/* the time waited: at least the timeout (more on a loaded machine) */
	{
		const char *g = strstr(error, "gave up after ");
		double waited;

		assert_non_null(g);
		assert_int_equal(sscanf(g, "gave up after %lf s", &waited), 1);
		assert_true(waited >= 1.2 && waited < 30);
	}
	/* a delivery takes no lock: it waits in tmp/, and its commit waits
	 * for the lock the same way and publishes nothing */
	assert_int_equal(maildir_deliver(f, 1, "", 1, "x", 1, NULL, NULL, &error), 0);
	assert_int_equal(maildir_folder_commit(f, &error), -1);
	assert_non_null(strstr(error, "locked by"));
	{
		char *cur = xasprintf("%s/.L/cur", fx->root);
		char *tmp = xasprintf("%s/.L/tmp", fx->root);

		assert_int_equal(count_files(cur), 0);
		assert_int_equal(count_files(tmp), 1);
		free(cur);
		free(tmp);
	}
	/* their lock is untouched */
	assert_int_equal(stat(lock, &st), 0);
	/* a dead pid on another host is not ours to judge */
	unlink(lock);
	snprintf(content, sizeof(content), "%ld:other-host.example", (long)dead_pid());
	write_lock(lock, content);
	assert_int_equal(maildir_folder_commit(f, &error), -1);
	assert_int_equal(stat(lock, &st), 0);
	/* released: commit works */
	unlink(lock);
	commit_ok(f);
	assert_int_equal(stat(lock, &st), -1);
	maildir_folder_close(&f);
	free(lock);
}

static void
test_lock_stale_dead_pid(void **state)
{
	struct fixture *fx = *state;
	struct maildir_options o = opts(MAILDIR_DOVECOT);
	struct maildir_folder *f = open_ok(fx->root, "", &o);
	char host[256], content[300], *lock, *ul;
	const char *error;
	uint64_t t0, t;
	struct stat st;

	assert_int_equal(gethostname(host, sizeof(host)), 0);
	snprintf(content, sizeof(content), "%ld:%s", (long)dead_pid(), host);
	lock = xasprintf("%s/dovecot-uidlist.lock", fx->root);
	write_lock(lock, content);
	assert_int_equal(maildir_folder_set_uids(f, 42, 100, &error), 0);
	t0 = time_mono_ms();
	commit_ok(f);
	t = time_mono_ms() - t0;
	/* broken once it is 2 s old, like Dovecot does (mtime has 1 s steps) */
	assert_true(t >= 1000);
	assert_true(t < 4500);
	assert_int_equal(stat(lock, &st), -1);
	ul = slurp2(fx->root, "dovecot-uidlist");
	assert_string_equal(ul, "3 V42 N100\n");
	free(ul);
	maildir_folder_close(&f);
	free(lock);
}

/* A lock has its owner, mode and "<pid>:<host>" before it has its name
 * (md_create_excl): a kill -9 between create and write must not leave an
 * empty lock the server cannot read (Dovecot waited 2 minutes on one). */
static void
test_create_excl_complete(void **state)
{
	struct fixture *fx = *state;
	struct maildir_options o = opts(MAILDIR_DOVECOT);
	const char *error = NULL, *id = md_lock_id();
	char *path = xasprintf("%s/x.lock", fx->dir), *body;
	struct stat st;
	int dfd = open(fx->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), fd, fd2;

	assert_true(dfd >= 0);
	o.file_mode = 0640;
	fd = md_create_excl(dfd, "x.lock", &o, id, strlen(id), &error);
	assert_true(fd >= 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal((size_t)st.st_size, strlen(id));
	body = slurp2(fx->dir, "x.lock");
	assert_string_equal(body, id);
	free(body);
	/* exclusive: a second create fails with EEXIST and leaves it alone */
	fd2 = md_create_excl(dfd, "x.lock", &o, "other", 5, &error);
	assert_int_equal(fd2, -1);
	assert_int_equal(errno, EEXIST);
	assert_non_null(error);
	body = slurp2(fx->dir, "x.lock");
	assert_string_equal(body, id);
	free(body);
	close(fd);
	close(dfd);
	free(path);
}

/* ---- a second writer changed the folder: our floor follows ---- */

/* Number of files in root/dirname/sub. */
static size_t
count_in(const char *root, const char *dirname, const char *sub)
{
	char *p = xasprintf("%s/%s%s%s", root, dirname, dirname[0] != '\0' ? "/" : "",
	                    sub);
	size_t n = count_files(p);

	free(p);
	return n;
}

static void
test_refresh_under_lock(void **state)
{
	struct fixture *fx = *state;
	struct maildir_options o = opts(MAILDIR_DOVECOT);
	struct maildir_folder *a = open_ok(fx->root, "", &o), *b;
	const char *error;

	assert_int_equal(maildir_folder_set_uids(a, 9, 10, &error), 0);
	commit_ok(a);
	b = open_ok(fx->root, "", &o);
	deliver_ok(b, 10, "", 1, msg_crlf, NULL, NULL);
	deliver_ok(b, 11, "", 1, msg_crlf, NULL, NULL);
	commit_ok(b);
	maildir_folder_close(&b);
	/* a still believes 10 is free: the delivery (no lock) is pending;
	 * the commit's lock re-reads the uidlist, finds 10 taken and drops
	 * the delivery instead of listing a UID the server gave out */
	assert_int_equal(maildir_folder_min_uid(a), 10);
	deliver_ok(a, 10, "", 1, "x", NULL, NULL);
	assert_int_equal(maildir_folder_commit(a, &error), -1);
	assert_non_null(strstr(error, "up to 11"));
	assert_non_null(strstr(error, "1 uncommitted deliveries from UID 10"));
	assert_int_equal(count_in(fx->root, "", "tmp"), 0);
	assert_int_equal(maildir_folder_count(a), 2);
	assert_int_equal(maildir_folder_min_uid(a), 12);
	deliver_ok(a, 12, "", 1, msg_crlf, NULL, NULL);
	commit_ok(a);
	assert_int_equal(maildir_folder_count(a), 3);
	maildir_folder_close(&a);
}

/* A re-read keeps a pending delivery whose UID is still free with its
 * base, POP3 UIDL and flags (its strings move to the new uidlist pool). */
static void
test_refresh_keeps_pending(void **state)
{
	struct fixture *fx = *state;
	struct maildir_options o = opts(MAILDIR_DOVECOT);
	struct maildir_folder *a = open_ok(fx->root, "", &o), *b;
	const struct maildir_msg *m;
	const char *error;
	char *base, *ul, *line, *name;

	assert_int_equal(maildir_folder_set_uids(a, 9, 10, &error), 0);
	commit_ok(a);
	deliver_ok(a, 20, "\\Seen Work", 1500000020, msg_crlf, "U20", NULL);
	base = xstrdup(tfind(a, 20)->base);
	b = open_ok(fx->root, "", &o);
	deliver_ok(b, 10, "", 1, msg_crlf, NULL, NULL);
	commit_ok(b);
	maildir_folder_close(&b);
	commit_ok(a);           /* re-reads: 10 is the server's now */
	assert_int_equal(maildir_folder_count(a), 2);
	m = tfind(a, 20);
	assert_non_null(m);
	assert_string_equal(m->base, base);
	assert_string_equal(m->pop3_uidl, "U20");
	assert_string_equal(m->flags, "Work \\Seen");
	ul = slurp2(fx->root, "dovecot-uidlist");
	line = xasprintf("\n20 PU20 :%s\n", base);
	assert_non_null(strstr(ul, line));
	name = xasprintf("%s/cur/%s:2,Sa", fx->root, base);
	assert_int_equal(access(name, F_OK), 0);
	maildir_folder_close(&a);
	a = open_ok(fx->root, "", &o);
	m = tfind(a, 20);
	assert_non_null(m);
	assert_string_equal(m->pop3_uidl, "U20");
	assert_string_equal(m->flags, "Work \\Seen");
	maildir_folder_close(&a);
	free(base);
	free(ul);
	free(line);
	free(name);
}

/* ---- symlinks ---- */

static void
test_symlink_refused(void **state)
{
	struct fixture *fx = *state;
	struct maildir_options o = opts(MAILDIR_DOVECOT);
	struct maildir_folder *f = open_ok(fx->root, "", &o), *g = NULL;
	char *outside = xasprintf("%s/outside", fx->dir);
	char *evil = xasprintf("%s/.Evil", fx->root);
	char *sub;
	const char *error;

	maildir_folder_close(&f);
	/* a complete Maildir outside the root */
	f = open_ok(outside, "", &o);
	maildir_folder_close(&f);
	assert_int_equal(symlink(outside, evil), 0);
	assert_int_equal(maildir_folder_open(fx->root, ".Evil", &o, false, &g, &error), -1);
	assert_null(g);
	assert_non_null(strstr(error, "symlink"));
	assert_int_equal(maildir_folder_open(fx->root, ".Evil", &o, true, &g, &error), -1);
	assert_non_null(strstr(error, "symlink"));
	/* cur/ as a symlink inside a real folder */
	f = open_ok(fx->root, ".Real", &o);
	maildir_folder_close(&f);
	sub = xasprintf("%s/.Real/cur", fx->root);
	assert_int_equal(rmdir(sub), 0);
	free(sub);
	sub = xasprintf("%s/cur", outside);
	{
		char *link = xasprintf("%s/.Real/cur", fx->root);

		assert_int_equal(symlink(sub, link), 0);
		free(link);
	}
	assert_int_equal(maildir_folder_open(fx->root, ".Real", &o, false, &g, &error), -1);
	assert_non_null(strstr(error, "symlink"));
	/* invalid directory names */
	assert_int_equal(maildir_folder_open(fx->root, "../x", &o, true, &g, &error), -1);
	assert_int_equal(maildir_folder_open(fx->root, "..", &o, true, &g, &error), -1);
	assert_int_equal(maildir_folder_open(fx->root, "Archive", &o, true, &g, &error), -1);
	/* a missing folder without create */
	assert_int_equal(maildir_folder_open(fx->root, ".Nope", &o, false, &g, &error), -1);
	/* a message file that is a symlink is ignored */
	{
		char *target = xasprintf("%s/secret", fx->dir);
		char *link = xasprintf("%s/cur/1.M1P1.x,S=3:2,", fx->root);

		write_file(target, "abc");
		assert_int_equal(symlink(target, link), 0);
		f = open_ok(fx->root, "", &o);
		assert_int_equal(maildir_folder_unlisted_count(f), 0);
		maildir_folder_close(&f);
		free(target);
		free(link);
	}
	free(sub);
	free(evil);
	free(outside);
}

/* ---- Courier ---- */

static void
test_courier(void **state)
{
	struct fixture *fx = *state;
	struct maildir_options o = opts(MAILDIR_COURIER);
	struct maildir_folder *f = open_ok(fx->root, ".Archive", &o);
	char *dir = xasprintf("%s/.Archive", fx->root);
	char *cur = xasprintf("%s/cur", dir);
	char *db, *kw, *name, *path, *content, *expect;
	const char *b5, *b17;
	const char *error;
	const struct maildir_msg *m;
	struct stat st;

	assert_int_equal(maildir_folder_set_uids(f, 1234567, 1001, &error), 0);
	deliver_ok(f, 5, "\\Seen Work $Label1", 1500000005, msg_crlf, NULL, NULL);
	deliver_ok(f, 17, "\\Answered", 1500000017, msg_mixed, NULL, NULL);
	deliver_ok(f, 900, "Work", 1500000900, msg_lf, NULL, NULL);
	/* the Courier lock lives in tmp/ while held: only inside commit */
	{
		char *lk = xasprintf("%s/tmp/courier.lock", dir);

		assert_int_equal(stat(lk, &st), -1);
		commit_ok(f);
		assert_int_equal(stat(lk, &st), -1);
		free(lk);
	}
	b5 = tfind(f, 5)->base;
	b17 = tfind(f, 17)->base;

	/* LF storage; S= is the LF size; no W= */
	name = find_file(cur, b5);
	assert_string_equal(md_name_letters(name), "S");
	path = xasprintf("%s/%s", cur, name);
	content = slurp(path);
	assert_string_equal(content, "From: a@example.com\nSubject: one\n\nHello\nWorld\n");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(field(name, 'S'), (uint64_t)st.st_size);
	assert_int_equal(st.st_mtime, 1500000005);
	{
		uint64_t w;

		assert_false(md_name_field(name, 'W', &w));
	}
	m = tfind(f, 5);
	assert_int_equal(m->size, strlen(msg_crlf));        /* RFC822.SIZE */
	assert_int_equal(m->file_size, (uint64_t)st.st_size);
	free(content);
	free(path);
	free(name);
	/* a bare CR survives; CRLF and bare LF become LF */
	name = find_file(cur, b17);
	path = xasprintf("%s/%s", cur, name);
	content = slurp(path);
	assert_string_equal(content, "From: c@example.com\nSubject: three\n\nx\ry\n");
	free(content);
	free(path);
	free(name);

	db = slurp2(dir, "courierimapuiddb");
	expect = xasprintf("1 1234567 1001\n5 %s\n17 %s\n900 %s\n", b5, b17,
	                   tfind(f, 900)->base);
	assert_string_equal(db, expect);
	free(expect);
	free(db);
	kw = slurp2(dir, "courierimapkeywords/:list");
	expect = xasprintf("$Label1\nWork\n\n%s:0 1\n%s:1\n", b5,
	                   tfind(f, 900)->base);
	assert_string_equal(kw, expect);
	free(expect);
	free(kw);
	assert_int_equal(stat(dir, &st), 0);

	/* set_flags changes keywords; a Courier update file is merged */
	assert_int_equal(maildir_set_flags(f, 900, "\\Flagged", NULL, &error), 0);
	commit_ok(f);
	kw = slurp2(dir, "courierimapkeywords/:list");
	expect = xasprintf("$Label1\nWork\n\n%s:0 1\n", b5);
	assert_string_equal(kw, expect);
	free(expect);
	free(kw);
	{
		char *upd = xasprintf("%s/courierimapkeywords/.5.%s", dir, b5);

		write_file(upd, "Urgent\n");
		maildir_folder_close(&f);
		f = open_ok(fx->root, ".Archive", &o);
		assert_string_equal(tfind(f, 5)->flags, "Urgent \\Seen");
		assert_string_equal(tfind(f, 900)->flags, "\\Flagged");
		assert_string_equal(tfind(f, 17)->flags, "\\Answered");
		assert_int_equal(maildir_folder_uidvalidity(f), 1234567);
		assert_int_equal(maildir_folder_uidnext(f), 1001);
		/* our next :list holds the merged state; the update file goes */
		assert_int_equal(maildir_set_flags(f, 17, "\\Answered Later", NULL,
		                                   &error), 0);
		commit_ok(f);
		assert_int_equal(stat(upd, &st), -1);
		kw = slurp2(dir, "courierimapkeywords/:list");
		expect = xasprintf("Later\nUrgent\n\n%s:1\n%s:0\n",
		                   tfind(f, 5)->base,
		                   tfind(f, 17)->base);
		assert_string_equal(kw, expect);
		free(expect);
		free(kw);
		free(upd);
	}
	/* size for a file without W=: S + every LF */
	{
		uint64_t size;

		maildir_folder_close(&f);
		f = open_ok(fx->root, ".Archive", &o);
		assert_int_equal(tfind(f, 5)->size, MAILDIR_SIZE_UNKNOWN);
		assert_int_equal(maildir_msg_size(f, 5, &size, &error), 0);
		assert_int_equal(size, strlen(msg_crlf));
		assert_int_equal(tfind(f, 5)->size, strlen(msg_crlf));
	}
	maildir_folder_close(&f);
	free(cur);
	free(dir);
}

/* ---- streaming from an fd, Courier conversion across chunk boundaries ---- */

static void
test_deliver_fd(void **state)
{
	struct fixture *fx = *state;
	size_t len = 200000;
	char *data = xmalloc(len), *src = xasprintf("%s/src", fx->dir);
	char *expect = xmalloc(len), *content, *name, *path;
	size_t elen = 0;
	const char *error;
	int fd;

	for (size_t i = 0; i < len; i++)
		data[i] = (char)('a' + i % 26);
	/* CRLF pairs split at the 64 KiB read boundary and elsewhere */
	for (size_t pos = 65535; pos + 1 < len; pos += 65536) {
		data[pos] = '\r';
		data[pos + 1] = '\n';
	}
	for (size_t pos = 100; pos + 1 < len; pos += 997) {
		data[pos] = '\r';
		data[pos + 1] = '\n';
	}
	data[len - 1] = '\r';   /* a final lone CR */
	for (size_t i = 0; i < len; i++) {
		if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')
			continue;
		expect[elen++] = data[i];
	}
	fd = open(src, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	for (int flavor = 0; flavor < 2; flavor++) {
		struct maildir_options o = opts(flavor == 0 ? MAILDIR_DOVECOT :
		                                MAILDIR_COURIER);
		struct maildir_folder *f = open_ok(fx->root, flavor == 0 ? ".D" : ".C", &o);
		char *cur = xasprintf("%s/%s/cur", fx->root, flavor == 0 ? ".D" : ".C");

		assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
		assert_int_equal(maildir_folder_set_uids(f, 1, 0, &error), 0);
		if (maildir_deliver_fd(f, 3, "\\Seen", 1700000000, fd, len, NULL, NULL,
		                       &error) < 0)
			fail_msg("%s", error);
		/* a short source fails and leaves nothing */
		assert_int_equal(lseek(fd, (off_t)len - 10, SEEK_SET), (off_t)len - 10);
		assert_int_equal(maildir_deliver_fd(f, 4, "", 1, fd, 100, NULL, NULL,
		                                    &error), -1);
		assert_non_null(strstr(error, "ended after 10 of 100"));
		commit_ok(f);
		assert_int_equal(count_files(cur), 1);
		name = find_file(cur, tfind(f, 3)->base);
		path = xasprintf("%s/%s", cur, name);
		content = slurp(path);
		if (flavor == 0) {
			assert_memory_equal(content, data, len);
			assert_int_equal(field(name, 'S'), len);
		} else {
			assert_memory_equal(content, expect, elen);
			assert_int_equal(field(name, 'S'), elen);
		}
		free(content);
		free(path);
		free(name);
		free(cur);
		maildir_folder_close(&f);
	}
	close(fd);
	free(src);
	free(data);
	free(expect);
}

/* ---- pending deliveries: in tmp/ until commit ---- */

/* The path of the file in root/sub whose name starts with prefix (new
 * string), or NULL. */
static char *
find_prefix(const char *root, const char *sub, const char *prefix)
{
	char *dir = xasprintf("%s/%s", root, sub), *r = NULL;
	DIR *d = opendir(dir);
	struct dirent *de;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, prefix, strlen(prefix)) == 0)
			r = xasprintf("%s/%s", dir, de->d_name);
	}
	closedir(d);
	free(dir);
	return r;
}

static void
test_pending(void **state)
{
	struct fixture *fx = *state;
	struct maildir_options o = opts(MAILDIR_DOVECOT);
	struct maildir_folder *f = open_ok(fx->root, ".P", &o);
	char *dir = xasprintf("%s/.P", fx->root);
	char *cur = xasprintf("%s/cur", dir);
	char *ul, *name, *base7;
	const struct maildir_msg *m;
	const char *error;
	struct stat st;
	uint64_t size;
	int fd;

	assert_int_equal(maildir_folder_set_uids(f, 555, 0, &error), 0);
	deliver_ok(f, 5, "\\Seen", 1500000005, msg_crlf, NULL, NULL);
	deliver_ok(f, 6, "", 1500000006, msg_lf, NULL, NULL);
	deliver_ok(f, 7, "Work", 1500000007, msg_mixed, "U7", NULL);
	/* written to tmp/, nothing published, no uidlist */
	assert_int_equal(count_in(fx->root, ".P", "tmp"), 3);
	assert_int_equal(count_in(fx->root, ".P", "cur"), 0);
	assert_int_equal(count_in(fx->root, ".P", "new"), 0);
	ul = xasprintf("%s/dovecot-uidlist", dir);
	assert_int_equal(stat(ul, &st), -1);
	free(ul);
	/* ... yet visible to the caller as before */
	assert_int_equal(maildir_folder_count(f), 3);
	assert_int_equal(tmsg(f, 1)->uid, 6);
	m = tfind(f, 7);
	assert_non_null(m);
	assert_string_equal(m->flags, "Work");
	assert_int_equal(m->mtime, 1500000007);
	assert_int_equal(maildir_folder_min_uid(f), 8);
	/* read from tmp/ */
	assert_int_equal(maildir_open_msg(f, 6, &fd, &size, &error), 0);
	assert_int_equal(size, strlen(msg_lf));
	{
		char buf[256];

		assert_int_equal(read(fd, buf, sizeof(buf)), (ssize_t)strlen(msg_lf));
		assert_memory_equal(buf, msg_lf, strlen(msg_lf));
	}
	close(fd);
	assert_int_equal(maildir_msg_size(f, 6, &size, &error), 0);
	assert_int_equal(size, strlen(msg_lf) + 6);
	/* set_flags on a pending message: only its future name changes */
	assert_int_equal(maildir_set_flags(f, 7, "\\Flagged Work $Two", NULL, &error), 0);
	assert_string_equal(tfind(f, 7)->flags, "$Two Work \\Flagged");
	assert_int_equal(count_in(fx->root, ".P", "tmp"), 3);
	assert_int_equal(count_in(fx->root, ".P", "cur"), 0);
	/* expunge on a pending message: unlinked from tmp/, UID not reused */
	assert_int_equal(maildir_expunge(f, 6, &error), 0);
	assert_int_equal(count_in(fx->root, ".P", "tmp"), 2);
	assert_null(tfind(f, 6));
	assert_int_equal(maildir_folder_count(f), 2);
	assert_int_equal(maildir_deliver(f, 6, "", 1, "x", 1, NULL, NULL, &error), -1);
	base7 = xstrdup(tfind(f, 7)->base);

	commit_ok(f);
	assert_int_equal(count_in(fx->root, ".P", "tmp"), 0);
	assert_int_equal(count_in(fx->root, ".P", "cur"), 2);
	ul = slurp2(dir, "dovecot-uidlist");
	{
		char *line = xasprintf("\n7 PU7 :%s\n", base7);

		assert_true(strncmp(ul, "3 V555 N8\n5 :", 13) == 0);
		assert_non_null(strstr(ul, line));
		assert_null(strstr(ul, "\n6 "));
		free(line);
	}
	free(ul);
	name = find_file(cur, base7);
	assert_non_null(name);
	assert_string_equal(md_name_letters(name), "Fab");
	{
		char *path = xasprintf("%s/%s", cur, name);

		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(st.st_mtime, 1500000007);
		free(path);
	}
	free(name);
	/* published files are read from cur/ */
	assert_int_equal(maildir_open_msg(f, 7, &fd, &size, &error), 0);
	close(fd);

	/* close without commit: nothing published, nothing left in tmp/ */
	deliver_ok(f, 10, "", 1600000010, msg_crlf, NULL, NULL);
	deliver_ok(f, 11, "", 1600000011, msg_crlf, NULL, NULL);
	assert_int_equal(count_in(fx->root, ".P", "tmp"), 2);
	ul = slurp2(dir, "dovecot-uidlist");
	maildir_folder_close(&f);
	assert_int_equal(count_in(fx->root, ".P", "tmp"), 0);
	assert_int_equal(count_in(fx->root, ".P", "cur"), 2);
	{
		char *ul2 = slurp2(dir, "dovecot-uidlist");
		char *lock = xasprintf("%s/dovecot-uidlist.lock", dir);

		assert_string_equal(ul, ul2);
		assert_int_equal(stat(lock, &st), -1);
		free(ul2);
		free(lock);
	}
	free(ul);
	f = open_ok(fx->root, ".P", &o);
	assert_int_equal(maildir_folder_count(f), 2);
	assert_int_equal(maildir_folder_unlisted_count(f), 0);
	assert_string_equal(tfind(f, 7)->flags, "$Two Work \\Flagged");
	maildir_folder_close(&f);
	free(base7);
	free(cur);
	free(dir);
}

/* Many pending files in one commit, both flavors, fsync on (per file,
 * and for Dovecot also --fsync=fs: one syncfs per commit). */
static void
test_pending_many(void **state)
{
	struct fixture *fx = *state;
	const uint32_t n = 700;

	for (int variant = 0; variant < 3; variant++) {
		int flavor = variant == 1;
		struct maildir_options o = opts(flavor == 0 ? MAILDIR_DOVECOT :
		                                MAILDIR_COURIER);
		const char *dn = variant == 0 ? ".ManyD" : variant == 1 ? ".ManyC" :
		                 ".ManyS";
		struct maildir_folder *f;
		char *dir = xasprintf("%s/%s", fx->root, dn), *ul;
		const char *error;
		size_t lines = 0, off;

		o.fsync = true;
		o.fsync_fs = variant == 2;
		f = open_ok(fx->root, dn, &o);
		assert_int_equal(maildir_folder_set_uids(f, 99, 5000, &error), 0);
		for (uint32_t uid = 1; uid <= n; uid++)
			deliver_ok(f, uid * 3, uid % 3 == 0 ? "\\Seen Work" : "\\Seen",
			           1600000000 + uid, msg_crlf, NULL, NULL);
		/* (no courier.lock: deliveries take no lock) */
		assert_int_equal(count_in(fx->root, dn, "tmp"), n);
		assert_int_equal(count_in(fx->root, dn, "cur"), 0);
		/* a flag change and an expunge among them */
		assert_int_equal(maildir_set_flags(f, 30, "\\Answered", NULL, &error), 0);
		assert_int_equal(maildir_expunge(f, 33, &error), 0);
		commit_ok(f);
		/* the Courier lock lives in tmp/ and is gone now too */
		assert_int_equal(count_in(fx->root, dn, "tmp"), 0);
		assert_int_equal(count_in(fx->root, dn, "cur"), n - 1);
		ul = slurp2(dir, flavor == 0 ? "dovecot-uidlist" : "courierimapuiddb");
		off = 0;
		assert_non_null(next_line(ul, &off));
		while (next_line(ul, &off) != NULL)
			lines++;
		assert_int_equal(lines, n - 1);
		free(ul);
		maildir_folder_close(&f);
		f = open_ok(fx->root, dn, &o);
		assert_int_equal(maildir_folder_count(f), n - 1);
		assert_int_equal(maildir_folder_unlisted_count(f), 0);
		assert_string_equal(tfind(f, 30)->flags, "\\Answered");
		assert_string_equal(tfind(f, 9)->flags, "Work \\Seen");
		assert_null(tfind(f, 33));
		assert_int_equal(maildir_folder_uidnext(f), 5000);
		maildir_folder_close(&f);
		free(dir);
	}
}

/* With fsync on, whole chunks of a batch are fdatasynced in the background
 * while deliveries go on (bg_kick()); the commit syncs the rest. A file
 * that the background pass cannot open is left to the commit, which
 * reports it and publishes nothing; after the caller drops it, the retry
 * publishes and lists every other file of the batch. */
static void
test_background_sync(void **state)
{
	struct fixture *fx = *state;
	struct maildir_options o = opts(MAILDIR_DOVECOT);
	const uint32_t n = 700;
	struct maildir_folder *f;
	char *dir = xasprintf("%s/.Bg", fx->root), *ul, *victim, pfx[32];
	const char *error;
	size_t lines = 0, off = 0;

	o.fsync = true;
	f = open_ok(fx->root, ".Bg", &o);
	assert_int_equal(maildir_folder_set_uids(f, 7, 0, &error), 0);
	for (uint32_t uid = 1; uid <= n; uid++) {
		deliver_ok(f, uid, "\\Seen", 1600000000 + uid, msg_crlf, NULL, NULL);
		if (uid == 100) {
			/* before the first chunk (256) is handed over */
			snprintf(pfx, sizeof(pfx), "%u.M", 1600000050u);
			victim = find_prefix(dir, "tmp", pfx);
			assert_non_null(victim);
			assert_int_equal(unlink(victim), 0);
			free(victim);
		}
	}
	assert_int_equal(maildir_folder_commit(f, &error), -1);
	assert_non_null(strstr(error, "tmp/1600000050.M"));
	assert_int_equal(count_in(fx->root, ".Bg", "cur"), 0);
	assert_int_equal(count_in(fx->root, ".Bg", "tmp"), n - 1);
	assert_int_equal(maildir_expunge(f, 50, &error), 0);
	commit_ok(f);
	assert_int_equal(count_in(fx->root, ".Bg", "tmp"), 0);
	assert_int_equal(count_in(fx->root, ".Bg", "cur"), n - 1);
	ul = slurp2(dir, "dovecot-uidlist");
	assert_non_null(next_line(ul, &off));
	while (next_line(ul, &off) != NULL)
		lines++;
	assert_int_equal(lines, n - 1);
	free(ul);
	/* a second batch over two chunks after the first commit */
	for (uint32_t uid = n + 1; uid <= n + 600; uid++)
		deliver_ok(f, uid, "", 1600001000 + uid, msg_crlf, NULL, NULL);
	commit_ok(f);
	maildir_folder_close(&f);
	f = open_ok(fx->root, ".Bg", &o);
	assert_int_equal(maildir_folder_count(f), n - 1 + 600);
	assert_int_equal(maildir_folder_unlisted_count(f), 0);
	assert_null(tfind(f, 50));
	assert_non_null(tfind(f, n + 600));
	maildir_folder_close(&f);
	free(dir);
}

/* A commit that fails midway moves the published files back to tmp/ and
 * leaves the uidlist alone; a retry works. */
static void
test_pending_commit_fails(void **state)
{
	struct fixture *fx = *state;
	struct maildir_options o = opts(MAILDIR_DOVECOT);
	struct maildir_folder *f = open_ok(fx->root, "", &o);
	char *ul0, *ul, *victim, *blocker;
	const char *error;
	struct stat st;

	assert_int_equal(maildir_folder_set_uids(f, 31, 0, &error), 0);
	deliver_ok(f, 1, "", 1500000001, msg_crlf, NULL, NULL);
	commit_ok(f);
	ul0 = slurp2(fx->root, "dovecot-uidlist");
	for (uint32_t uid = 2; uid <= 9; uid++)
		deliver_ok(f, uid, "\\Seen", 1500000000 + uid, msg_crlf, NULL, NULL);

	/* 1: a rename fails: UID 6's file vanished from tmp/ */
	victim = find_prefix(fx->root, "tmp", "1500000006.M");
	assert_non_null(victim);
	assert_int_equal(unlink(victim), 0);
	free(victim);
	assert_int_equal(maildir_folder_commit(f, &error), -1);
	assert_non_null(strstr(error, "UID 6"));
	assert_non_null(strstr(error, "vanished"));
	/* UIDs 2-5 went to cur/ and came back: nothing published */
	assert_int_equal(count_in(fx->root, "", "cur"), 1);
	assert_int_equal(count_in(fx->root, "", "tmp"), 7);
	ul = slurp2(fx->root, "dovecot-uidlist");
	assert_string_equal(ul, ul0);
	free(ul);
	{
		char *lock = xasprintf("%s/dovecot-uidlist.lock", fx->root);

		assert_int_equal(stat(lock, &st), -1);
		free(lock);
	}
	/* still pending: the caller drops the lost one, the retry works */
	assert_int_equal(maildir_folder_count(f), 9);
	assert_int_equal(maildir_expunge(f, 6, &error), 0);
	commit_ok(f);
	assert_int_equal(count_in(fx->root, "", "cur"), 8);
	assert_int_equal(count_in(fx->root, "", "tmp"), 0);
	ul = slurp2(fx->root, "dovecot-uidlist");
	/* appended: the header keeps N2 */
	assert_true(strncmp(ul, "3 V31 N2\n1 :", 12) == 0);
	assert_non_null(strstr(ul, "\n5 :1500000005.M"));
	assert_null(strstr(ul, "\n6 :"));
	assert_non_null(strstr(ul, "\n9 :1500000009.M"));
	free(ul);
	free(ul0);

	/* 2: writing the uidlist fails after the renames: all go back (a
	 * higher N makes it a rewrite through dovecot-uidlist.tmp) */
	ul0 = slurp2(fx->root, "dovecot-uidlist");
	for (uint32_t uid = 10; uid <= 12; uid++)
		deliver_ok(f, uid, "", 1500000000 + uid, msg_crlf, NULL, NULL);
	assert_int_equal(maildir_folder_set_uids(f, 31, 20, &error), 0);
	blocker = xasprintf("%s/dovecot-uidlist.tmp", fx->root);
	assert_int_equal(mkdir(blocker, 0700), 0);
	assert_int_equal(maildir_folder_commit(f, &error), -1);
	assert_non_null(strstr(error, "dovecot-uidlist.tmp"));
	assert_int_equal(count_in(fx->root, "", "cur"), 8);
	assert_int_equal(count_in(fx->root, "", "tmp"), 3);
	ul = slurp2(fx->root, "dovecot-uidlist");
	assert_string_equal(ul, ul0);
	free(ul);
	assert_int_equal(rmdir(blocker), 0);
	free(blocker);
	commit_ok(f);
	assert_int_equal(count_in(fx->root, "", "cur"), 11);
	assert_int_equal(count_in(fx->root, "", "tmp"), 0);
	ul = slurp2(fx->root, "dovecot-uidlist");
	assert_non_null(strstr(ul, "\n12 :1500000012.M"));
	free(ul);
	free(ul0);
	maildir_folder_close(&f);
	f = open_ok(fx->root, "", &o);
	assert_int_equal(maildir_folder_count(f), 11);
	assert_int_equal(maildir_folder_unlisted_count(f), 0);
	maildir_folder_close(&f);
}

/* ---- crash safety: delivered, not committed ---- */

static void
test_crash_pending(void **state)
{
	struct fixture *fx = *state;
	struct maildir_options o = opts(MAILDIR_DOVECOT);
	struct maildir_folder *f = open_ok(fx->root, "", &o);
	char *ul0, *ul, *lock;
	const char *error;
	struct stat st;
	pid_t pid;
	int status;

	assert_int_equal(maildir_folder_set_uids(f, 77, 50, &error), 0);
	deliver_ok(f, 10, "\\Seen", 1, msg_crlf, NULL, NULL);
	commit_ok(f);
	maildir_folder_close(&f);
	ul0 = slurp2(fx->root, "dovecot-uidlist");
	/* a child delivers UIDs 50-52 and dies before commit, holding the
	 * lock (as after SIGKILL inside a commit) */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct maildir_folder *c = NULL;

		if (maildir_folder_open(fx->root, "", &o, false, &c, &error) < 0)
			_exit(1);
		for (uint32_t uid = 50; uid <= 52; uid++) {
			if (maildir_deliver(c, uid, "\\Flagged", 1600000000, msg_lf,
			                    strlen(msg_lf), NULL, NULL, &error) < 0)
				_exit(2);
		}
		if (maildir_folder_lock(c, &error) < 0)
			_exit(3);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* the files are only in tmp/: a server breaking the dead lock finds
	 * nothing to number */
	assert_int_equal(count_in(fx->root, "", "tmp"), 3);
	assert_int_equal(count_in(fx->root, "", "cur"), 1);
	assert_int_equal(count_in(fx->root, "", "new"), 0);
	ul = slurp2(fx->root, "dovecot-uidlist");
	assert_string_equal(ul, ul0);
	free(ul);
	lock = xasprintf("%s/dovecot-uidlist.lock", fx->root);
	assert_int_equal(stat(lock, &st), 0);
	/* opening without create leaves tmp/ alone */
	assert_int_equal(maildir_folder_open(fx->root, "", &o, false, &f, &error), 0);
	assert_int_equal(count_in(fx->root, "", "tmp"), 3);
	maildir_folder_close(&f);
	/* the next open (pid dead) removes the dead writer's files */
	f = open_ok(fx->root, "", &o);
	assert_int_equal(count_in(fx->root, "", "tmp"), 0);
	assert_int_equal(maildir_folder_count(f), 1);
	assert_int_equal(maildir_folder_unlisted_count(f), 0);
	assert_int_equal(maildir_folder_min_uid(f), 50);
	/* the dead child's lock is broken (dead pid, >= 2 s): delivering the
	 * same UIDs again works */
	deliver_ok(f, 50, "\\Flagged", 1600000000, msg_lf, NULL, NULL);
	commit_ok(f);
	assert_int_equal(stat(lock, &st), -1);
	ul = slurp2(fx->root, "dovecot-uidlist");
	assert_true(strncmp(ul, "3 V77 N50\n10 :", 14) == 0);
	assert_non_null(strstr(ul, "\n50 :1600000000.M"));
	free(ul);
	maildir_folder_close(&f);
	free(lock);
	free(ul0);
}

/* Files in cur/ without a uidlist line (an MDA, an older crashed run) are
 * listed as unlisted and can be adopted or expunged. */
static void
test_unlisted(void **state)
{
	struct fixture *fx = *state;
	struct maildir_options o = opts(MAILDIR_DOVECOT);
	struct maildir_folder *f = open_ok(fx->root, "", &o);
	const char *base = "1600000000.M1P99999Q1.mx.test,S=46,W=52";
	char *ul, *p;
	const char *error;

	assert_int_equal(maildir_folder_set_uids(f, 77, 50, &error), 0);
	deliver_ok(f, 10, "\\Seen", 1, msg_crlf, NULL, NULL);
	commit_ok(f);
	maildir_folder_close(&f);
	p = xasprintf("%s/cur/%s:2,F", fx->root, base);
	write_file(p, msg_lf);
	{
		struct timespec ts[2] = { { 1600000000, 0 }, { 1600000000, 0 } };

		assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
	}
	free(p);

	f = open_ok(fx->root, "", &o);
	assert_int_equal(maildir_folder_count(f), 1);
	assert_int_equal(maildir_folder_unlisted_count(f), 1);
	assert_int_equal(tunl(f, 0)->uid, 0);
	assert_string_equal(tunl(f, 0)->base, base);
	assert_string_equal(tunl(f, 0)->flags, "\\Flagged");
	assert_int_equal(tunl(f, 0)->mtime, 1600000000);
	assert_int_equal(tunl(f, 0)->size, 52);
	assert_int_equal(maildir_unlisted_adopt(f, 0, 49, &error), -1);
	assert_int_equal(maildir_unlisted_adopt(f, 0, 50, &error), 0);
	commit_ok(f);
	ul = slurp2(fx->root, "dovecot-uidlist");
	{
		char *line = xasprintf("\n50 :%s\n", base);

		assert_non_null(strstr(ul, line));
		assert_true(strncmp(ul, "3 V77 N50\n", 10) == 0);
		free(line);
	}
	free(ul);
	/* expunging an unlisted file */
	{
		p = xasprintf("%s/new/1700000000.M9P9.mda", fx->root);
		write_file(p, "x");
		maildir_folder_close(&f);
		f = open_ok(fx->root, "", &o);
		assert_int_equal(maildir_folder_unlisted_count(f), 1);
		assert_int_equal(maildir_unlisted_expunge(f, 0, &error), 0);
		assert_int_equal(access(p, F_OK), -1);
		commit_ok(f);
		free(p);
	}
	maildir_folder_close(&f);
}

/* ---- subscriptions and folder lists ---- */

static void
test_subscriptions(void **state)
{
	struct fixture *fx = *state;
	struct maildir_options o = opts(MAILDIR_DOVECOT);
	struct maildir_folder *f = open_ok(fx->root, "", &o);
	const char *names[] = { "INBOX", "Archive/2019", "Listes/&APw-n&AO8-code" };
	const char *bad[] = { "a//b" };
	const char *dotted[] = { "Archive/v1.2" };
	char **v = NULL, *data;
	size_t n = 0;
	const char *error;
	struct stat st;

	maildir_folder_close(&f);
	assert_int_equal(maildir_subscriptions_read(fx->root, MAILDIR_DOVECOT, '/',
	                                            &v, &n, &error), 0);
	assert_int_equal(n, 0);
	assert_int_equal(maildir_subscriptions_write(fx->root, &o, names, 3, '/',
	                                             &error), 0);
	data = slurp2(fx->root, "subscriptions");
	assert_string_equal(data, "V\t2\n\nINBOX\nArchive\t2019\nListes\t&APw-n&AO8-code\n");
	free(data);
	{
		char *p = xasprintf("%s/subscriptions", fx->root);

		assert_int_equal(stat(p, &st), 0);
		assert_int_equal(st.st_mode & 0777, 0600);
		free(p);
	}
	assert_int_equal(maildir_subscriptions_read(fx->root, MAILDIR_DOVECOT, '/',
	                                            &v, &n, &error), 0);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < 3; i++)
		assert_string_equal(v[i], names[i]);
	maildir_strv_free(&v, n);
	assert_null(v);
	assert_int_equal(maildir_subscriptions_write(fx->root, &o, bad, 1, '/', &error), -1);
	assert_non_null(strstr(error, "empty hierarchy level"));
	/* the old header-less format */
	{
		char *p = xasprintf("%s/subscriptions", fx->root);

		write_file(p, "INBOX\nArchive.2019\n");
		free(p);
	}
	assert_int_equal(maildir_subscriptions_read(fx->root, MAILDIR_DOVECOT, '/',
	                                            &v, &n, &error), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[1], "Archive/2019");
	maildir_strv_free(&v, n);

	o.flavor = MAILDIR_COURIER;
	assert_int_equal(maildir_subscriptions_write(fx->root, &o, names, 2, '/',
	                                             &error), 0);
	data = slurp2(fx->root, "courierimapsubscribed");
	assert_string_equal(data, "INBOX\nINBOX.Archive.2019\n");
	free(data);
	{
		const char *cnames[] = { "INBOX", "INBOX.Archive.2019", "Sent" };

		assert_int_equal(maildir_subscriptions_write(fx->root, &o, cnames, 3, '.',
		                                             &error), 0);
		data = slurp2(fx->root, "courierimapsubscribed");
		assert_string_equal(data, "INBOX\nINBOX.Archive.2019\nINBOX.Sent\n");
		free(data);
	}
	assert_int_equal(maildir_subscriptions_read(fx->root, MAILDIR_COURIER, '.',
	                                            &v, &n, &error), 0);
	assert_int_equal(n, 3);
	assert_string_equal(v[1], "INBOX.Archive.2019");
	maildir_strv_free(&v, n);
	assert_int_equal(maildir_subscriptions_read(fx->root, MAILDIR_COURIER, '/',
	                                            &v, &n, &error), 0);
	assert_string_equal(v[0], "INBOX");
	assert_string_equal(v[1], "Archive/2019");
	assert_string_equal(v[2], "Sent");
	maildir_strv_free(&v, n);
	/* a '.' inside a level cannot be written for Courier */
	assert_int_equal(maildir_subscriptions_write(fx->root, &o, dotted, 1, '/',
	                                             &error), -1);
	/* no lock file left behind */
	{
		char *p = xasprintf("%s/courierimapsubscribed.lock", fx->root);

		assert_int_equal(stat(p, &st), -1);
		free(p);
	}
}

static void
test_list_folders(void **state)
{
	struct fixture *fx = *state;
	struct maildir_options o = opts(MAILDIR_DOVECOT);
	const char *dirs[] = { ".Sent", ".Archive.2019", "" };
	char **v = NULL, *p;
	size_t n = 0;
	const char *error;

	for (size_t i = 0; i < N_ELEMENTS(dirs); i++) {
		struct maildir_folder *f = open_ok(fx->root, dirs[i], &o);

		maildir_folder_close(&f);
	}
	p = xasprintf("%s/.NoCur", fx->root);
	assert_int_equal(mkdir(p, 0700), 0);
	free(p);
	p = xasprintf("%s/.Evil", fx->root);
	assert_int_equal(symlink(fx->root, p), 0);
	free(p);
	assert_int_equal(maildir_list_folders(fx->root, &v, &n, &error), 0);
	assert_int_equal(n, 3);
	assert_string_equal(v[0], "");
	assert_string_equal(v[1], ".Archive.2019");
	assert_string_equal(v[2], ".Sent");
	maildir_strv_free(&v, n);
}

/* ---- owner/mode ---- */

static void
test_modes(void **state)
{
	struct fixture *fx = *state;
	struct maildir_options o = opts(MAILDIR_DOVECOT);
	struct maildir_folder *f;
	struct stat st;
	char *p;

	o.file_mode = 0640;
	o.dir_mode = 0750;
	o.owner = getuid();
	o.group = getgid();
	f = open_ok(fx->root, ".M", &o);
	deliver_ok(f, 1, "", 1, msg_crlf, NULL, NULL);
	{
		const char *error;

		assert_int_equal(maildir_folder_set_uids(f, 1, 0, &error), 0);
	}
	commit_ok(f);
	p = xasprintf("%s/.M/cur", fx->root);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0750);
	free(p);
	assert_int_equal(stat(fx->root, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0750);
	p = xasprintf("%s/.M/dovecot-uidlist", fx->root);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0640);
	free(p);
	p = xasprintf("%s/.M/cur/%s:2,", fx->root, tfind(f, 1)->base);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0640);
	free(p);
	maildir_folder_close(&f);
}

/* ---- uidlist parser table ---- */

static void
test_uidlist_parse(void **state)
{
	static const struct {
		const char *text;
		int ret;
		uint32_t v, n;
		size_t nrecs;
	} cases[] = {
		{ "", 0, 0, 0, 0 },
		{ "3 V1 N2\n", 0, 1, 2, 0 },
		{ "3 N500 V123\n", 0, 123, 500, 0 },
		{ "3 V1 N2 G00 Xy\n1 :a\n2 W9 P :b\n", 0, 1, 2, 2 },
		{ "1 12345 101\n7 a\n100 b:2,S\n", 0, 12345, 101, 2 },
		{ "3 V1 N9\n5 :a\n2 :b\n5 :c\n", 0, 1, 9, 2 },
		{ "3 V0 N2\n", -1, 0, 0, 0 },
		{ "3 V1\n", -1, 0, 0, 0 },
		{ "2 V1 N2\n", -1, 0, 0, 0 },
		{ "x\n", -1, 0, 0, 0 },
		{ "3 V1 N2\n0 :a\n", -1, 0, 0, 0 },
		{ "3 V1 N2\n1 a\n", -1, 0, 0, 0 },
		{ "3 V1 N2\n1 :\n", -1, 0, 0, 0 },
		{ "3 V1 N2\n1 :a/b\n", -1, 0, 0, 0 },
		{ "3 V1 N2\n4294967295 :a\n", -1, 0, 0, 0 },
		{ "3 V1 N99999999999\n", -1, 0, 0, 0 },
	};
	struct md_uidlist ul;
	const char *error;

	(void)state;
	for (size_t i = 0; i < N_ELEMENTS(cases); i++) {
		int r = md_uidlist_parse(cases[i].text, strlen(cases[i].text), &ul, &error);

		if (r != cases[i].ret)
			fail_msg("case %zu: %d (%s)", i, r, r < 0 ? error : "");
		if (r == 0) {
			assert_int_equal(ul.uidvalidity, cases[i].v);
			assert_int_equal(ul.uidnext, cases[i].n);
			assert_int_equal(ul.nrecs, cases[i].nrecs);
		}
		md_uidlist_free(&ul);
	}
	static const char t1[] = "3 V1 N9 G00 Xy\n2 W9 P :b\n5 :a\n";
	static const char t2[] = "3 V1 N9\n5 :a\n2 :b\n5 :c\n";
	char *base, *ext;

	assert_int_equal(md_uidlist_parse(t1, 29, &ul, &error), 0);
	assert_string_equal(ul.hdr_extra, "G00 Xy");
	assert_int_equal(md_uidlist_rec_at(t1, 29, &ul, 0, &base, &ext), 0);
	assert_string_equal(ext, "W9 P");
	assert_string_equal(base, "b");
	free(base);
	free(ext);
	md_uidlist_free(&ul);
	assert_int_equal(md_uidlist_parse(t2, 23, &ul, &error), 0);
	assert_int_equal(ul.recs[0].uid, 2);
	assert_int_equal(md_uidlist_rec_at(t2, 23, &ul, 1, &base, &ext), 0);
	assert_string_equal(base, "c");      /* the later line wins */
	free(base);
	free(ext);
	md_uidlist_free(&ul);
}


/* ---- issue 15: the folder object's memory ---- */

/* Pool strings survive later allocations: short ones filling chunks,
 * long ones (own chunks) in between, an empty one. */
static void
test_pool_strings(void **state)
{
	struct md_pool p = { 0 };
	char *s[3000];
	char big[70000];

	(void)state;
	memset(big, 'x', sizeof(big));
	for (size_t i = 0; i < N_ELEMENTS(s); i++) {
		char tmp[64];

		if (i % 500 == 7) {
			s[i] = md_pool_strndup(&p, big, 20000 + i);    /* own chunk */
			continue;
		}
		snprintf(tmp, sizeof(tmp), "string-%zu-%s", i, i % 3 == 0 ? "" : "padding");
		s[i] = md_pool_strdup(&p, i == 1 ? "" : tmp);
	}
	for (size_t i = 0; i < N_ELEMENTS(s); i++) {
		char tmp[64];

		if (i % 500 == 7) {
			assert_int_equal(strlen(s[i]), 20000 + i);
			assert_int_equal(strspn(s[i], "x"), 20000 + i);
			continue;
		}
		snprintf(tmp, sizeof(tmp), "string-%zu-%s", i, i % 3 == 0 ? "" : "padding");
		assert_string_equal(s[i], i == 1 ? "" : tmp);
	}
	md_pool_free(&p);
	md_pool_free(&p);       /* a freed pool is empty */
}

/* A filled message stays as it was while the folder changes around it
 * (deliveries, flag changes, expunges of others, commits that turn its
 * line into an offset in the uidlist), and filling it again gives the
 * same base and UIDL; flags strings are interned: equal flags are one
 * string, and an old one stays readable until close. */
static void
test_msg_pointers_stable(void **state)
{
	struct fixture *fx = *state;
	struct maildir_options o = opts(MAILDIR_DOVECOT);
	struct maildir_folder *f = open_ok(fx->root, ".Stable", &o);
	struct maildir_msg *mm = xmalloc(sizeof(*mm));
	const struct maildir_msg *m, *u;
	const char *flags, *error;
	char *base_copy;

	assert_int_equal(maildir_folder_set_uids(f, 77, 0, &error), 0);
	deliver_ok(f, 3, "\\Seen", 1500000003, msg_crlf, "P3", NULL);
	assert_true(maildir_folder_find(f, 3, mm));
	assert_true(maildir_folder_find(f, 3, NULL));
	assert_false(maildir_folder_find(f, 4, NULL));
	flags = mm->flags;
	base_copy = xstrdup(mm->base);
	for (uint32_t uid = 4; uid < 3000; uid++)
		deliver_ok(f, uid, uid % 2 ? "\\Seen" : "", 1500000000 + uid, msg_lf,
		           uid % 5 == 0 ? "Pop" : NULL, NULL);
	commit_ok(f);
	assert_string_equal(mm->base, base_copy);       /* the caller's copy */
	m = tfind(f, 3);
	assert_string_equal(m->base, base_copy);
	assert_string_equal(m->pop3_uidl, "P3");
	assert_int_equal(m->mtime, 1500000003);
	assert_int_equal(m->size, strlen(msg_crlf));
	/* equal flags are one string */
	assert_ptr_equal(tfind(f, 5)->flags, flags);
	assert_int_equal(maildir_folder_uid(f, 0), 3);
	assert_int_equal(maildir_folder_uid(f, 2), 5);
	assert_int_equal(maildir_set_flags(f, 3, "\\Answered Junk", NULL, &error), 0);
	m = tfind(f, 3);
	assert_string_equal(m->flags, "Junk \\Answered");
	assert_string_equal(flags, "\\Seen");
	assert_string_equal(m->base, base_copy);
	assert_int_equal(maildir_expunge(f, 4, &error), 0);
	deliver_ok(f, 3000, "", 1500003000, msg_lf, NULL, NULL);
	commit_ok(f);
	u = tfind(f, 3000);
	assert_non_null(u);
	m = tfind(f, 3);
	assert_string_equal(m->flags, "Junk \\Answered");
	assert_string_equal(m->base, base_copy);
	assert_int_equal(maildir_folder_count(f), 2997);
	maildir_folder_close(&f);
	free(mm);

	/* read back: the names rebuilt from base + suffix open the files */
	f = open_ok(fx->root, ".Stable", &o);
	assert_int_equal(maildir_folder_count(f), 2997);
	m = tfind(f, 3);
	assert_string_equal(m->base, base_copy);
	assert_string_equal(m->flags, "Junk \\Answered");
	assert_string_equal(m->pop3_uidl, "P3");
	assert_string_equal(tfind(f, 10)->pop3_uidl, "Pop");
	assert_null(tfind(f, 11)->pop3_uidl);
	for (uint32_t uid = 5; uid <= 3000; uid += 499) {
		uint64_t size;
		int fd;

		assert_int_equal(maildir_open_msg(f, uid, &fd, &size, &error), 0);
		close(fd);
	}
	assert_int_equal(maildir_expunge(f, 3, &error), 0);
	commit_ok(f);
	maildir_folder_close(&f);
	free(base_copy);
}


/* ---- issue 15: appends, the lock only in commit ---- */

static off_t
file_size_of(const char *root, const char *name)
{
	char *p = xasprintf("%s/%s", root, name);
	struct stat st;

	assert_int_equal(stat(p, &st), 0);
	free(p);
	return st.st_size;
}

/* A folder filled in many commits: every commit after the first appends
 * only its own lines, so the bytes written add up to the file's size
 * (linear, not quadratic); the file equals what one commit of all the
 * messages writes, apart from the header's N, which readers take as
 * max(N, last UID + 1). A higher UIDNEXT at the end rewrites it once. */
static void
test_uidlist_append_linear(void **state)
{
	struct fixture *fx = *state;
	struct maildir_options o = opts(MAILDIR_DOVECOT);
	struct maildir_folder *f = open_ok(fx->root, ".Many", &o);
	struct maildir_folder *g;
	const uint32_t batches = 40, per = 25;
	const char *error;
	char *ul, *one, *nl1, *nl2;
	uint64_t bytes_after_first = 0;
	off_t size_after_first = 0;

	assert_int_equal(maildir_folder_set_uids(f, 4242, 0, &error), 0);
	for (uint32_t b = 0; b < batches; b++) {
		for (uint32_t k = 1; k <= per; k++) {
			uint32_t uid = b * per + k;

			deliver_ok(f, uid, uid % 2 ? "\\Seen" : "", 1600000000 + uid,
			           msg_crlf, uid % 5 == 0 ? "u" : NULL, NULL);
		}
		commit_ok(f);
		if (b == 0) {
			bytes_after_first = md_folder_uidlist_bytes(f);
			size_after_first = file_size_of(fx->root, ".Many/dovecot-uidlist");
		}
	}
	/* the first commit created the file; the others only appended */
	assert_int_equal(md_folder_uidlist_rewrites(f), 1);
	assert_int_equal(bytes_after_first, (uint64_t)size_after_first);
	assert_int_equal(md_folder_uidlist_bytes(f),
	                 (uint64_t)file_size_of(fx->root, ".Many/dovecot-uidlist"));
	assert_int_equal(maildir_folder_min_uid(f), batches * per + 1);

	/* the same content as a single commit writes (names differ in
	 * their unique part: compare the parsed records) */
	ul = slurp2(fx->root, ".Many/dovecot-uidlist");
	assert_true(strncmp(ul, "3 V4242 N26\n", 12) == 0);
	g = open_ok(fx->root, ".Many", &o);
	assert_int_equal(maildir_folder_count(g), batches * per);
	assert_int_equal(maildir_folder_unlisted_count(g), 0);
	assert_int_equal(maildir_folder_uidnext(g), batches * per + 1);
	assert_string_equal(tfind(g, 5)->pop3_uidl, "u");
	/* a forced rewrite (a higher N) writes the same lines */
	assert_int_equal(maildir_folder_set_uids(g, 4242, 5000, &error), 0);
	commit_ok(g);
	assert_int_equal(md_folder_uidlist_rewrites(g), 1);
	one = slurp2(fx->root, ".Many/dovecot-uidlist");
	assert_true(strncmp(one, "3 V4242 N5000\n", 14) == 0);
	nl1 = strchr(ul, '\n');
	nl2 = strchr(one, '\n');
	assert_string_equal(nl1, nl2);
	free(one);
	free(ul);
	maildir_folder_close(&g);
	maildir_folder_close(&f);

	/* an expunge of a line on disk rewrites; a commit with only new
	 * lines after it appends again */
	f = open_ok(fx->root, ".Many", &o);
	assert_int_equal(maildir_expunge(f, 7, &error), 0);
	commit_ok(f);
	assert_int_equal(md_folder_uidlist_rewrites(f), 1);
	ul = slurp2(fx->root, ".Many/dovecot-uidlist");
	assert_null(strstr(ul, "\n7 :"));
	free(ul);
	deliver_ok(f, 5000, "", 1600009999, msg_crlf, NULL, NULL);
	commit_ok(f);
	assert_int_equal(md_folder_uidlist_rewrites(f), 1);
	maildir_folder_close(&f);
}

/* A crash in the middle of an append leaves a last line without its LF.
 * Dovecot's reader (i_stream_read_next_line) ignores it; so do we: the
 * file it names is unlisted. The next commit rewrites the file instead
 * of appending after the fragment. */
/* md_uidlist_parse_fd() reads 64 KiB chunks: lines cut by a chunk
 * boundary, a line longer than a chunk and a torn last line give what the
 * whole-text parse gives, offsets included. */
static void
test_uidlist_chunked(void **state)
{
	struct fixture *fx = *state;
	struct md_uidlist a, b;
	const char *error;
	struct buf t;
	char *path = xasprintf("%s/chunked", fx->root), *big;
	int fd;

	(void)mkdir(fx->root, 0700);
	buf_init(&t, SIZE_MAX / 2);
	assert_int_equal(buf_append_str(&t, "3 V5 N9 G0\n"), 0);
	for (unsigned int uid = 1; uid <= 5000; uid++)
		assert_int_equal(buf_printf(&t, "%u W%u :1500000%03u.M%uP1.host,S=%u\n",
		                            uid, uid * 3, uid % 1000, uid, uid), 0);
	big = xmalloc(70001);
	memset(big, 'x', 70000);
	big[70000] = '\0';
	assert_int_equal(buf_printf(&t, "6000 :%s\n", big), 0);
	assert_int_equal(buf_append_str(&t, "6001 :torn"), 0);
	write_file(path, buf_data(&t));
	assert_int_equal(md_uidlist_parse(buf_data(&t), buf_len(&t), &a, &error), 0);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(md_uidlist_parse_fd(fd, &b, &error), 0);
	close(fd);
	assert_true(buf_len(&t) > 4 * MD_UIDLIST_CHUNK);
	assert_int_equal(a.nrecs, 5001);
	assert_int_equal(b.nrecs, a.nrecs);
	assert_true(a.torn);
	assert_true(b.torn);
	assert_string_equal(b.hdr_extra, "G0");
	for (size_t i = 0; i < a.nrecs; i++) {
		char *base, *ext;

		assert_int_equal(a.recs[i].uid, b.recs[i].uid);
		assert_int_equal(a.recs[i].off, b.recs[i].off);
		assert_int_equal(md_uidlist_rec_at(buf_data(&t), buf_len(&t), &b, i,
		                                   &base, &ext), 0);
		if (i == 5000)
			assert_string_equal(base, big);
		else
			assert_int_equal(strtoul(ext + 1, NULL, 10), 3 * (i + 1));
		free(base);
		free(ext);
	}
	md_uidlist_free(&a);
	md_uidlist_free(&b);
	/* a broken line is reported with its number */
	write_file(path, "3 V5 N9\n1 :a\n2 b\n");
	fd = open(path, O_RDONLY);
	assert_int_equal(md_uidlist_parse_fd(fd, &b, &error), -1);
	assert_string_equal(error, "line 3: no ':' before the file name");
	close(fd);
	buf_free(&t);
	free(big);
	free(path);
}

/* Another writer appends lines to the uidlist we read (in place, as
 * Dovecot does): our records still read their names back from the same
 * inode; the commit's re-read finds the new lines. With the hash cut to 2
 * bits (test hook) every base collides with others: open still matches
 * each file to its own line. */
static void
test_readback_append_collisions(void **state)
{
	struct fixture *fx = *state;
	struct maildir_options o = opts(MAILDIR_DOVECOT);
	struct maildir_folder *f, *g;
	const char *error;
	char *path, *base5;
	FILE *fp;

	f = open_ok(fx->root, ".Rb", &o);
	assert_int_equal(maildir_folder_set_uids(f, 42, 0, &error), 0);
	for (uint32_t uid = 1; uid <= 40; uid++)
		deliver_ok(f, uid, uid % 3 ? "\\Seen" : "", 1500000000 + uid, msg_crlf,
		           uid == 7 ? "u7" : NULL, NULL);
	commit_ok(f);
	base5 = xstrdup(tfind(f, 5)->base);
	maildir_folder_close(&f);

	setenv("IMAPFERRY_TEST_MD_HASH_BITS", "2", 1);
	f = open_ok(fx->root, ".Rb", &o);
	assert_int_equal(maildir_folder_count(f), 40);
	assert_int_equal(maildir_folder_unlisted_count(f), 0);
	for (uint32_t uid = 1; uid <= 40; uid++) {
		const struct maildir_msg *m = tfind(f, uid);

		assert_non_null(m);
		assert_int_equal(m->mtime, 1500000000 + uid);
		assert_string_equal(m->flags, uid % 3 ? "\\Seen" : "");
	}
	assert_string_equal(tfind(f, 7)->pop3_uidl, "u7");
	/* another writer: a file and its line appended in place */
	path = xasprintf("%s/.Rb/cur/1600000000.M1P9.other:2,F", fx->root);
	write_file(path, "Subject: x\r\n\r\nother\r\n");
	free(path);
	path = xasprintf("%s/.Rb/dovecot-uidlist", fx->root);
	fp = fopen(path, "a");
	assert_non_null(fp);
	fputs("41 :1600000000.M1P9.other\n", fp);
	fclose(fp);
	free(path);
	assert_string_equal(tfind(f, 5)->base, base5);
	assert_null(tfind(f, 41));
	/* our commit re-reads the folder first */
	deliver_ok(f, 42, "", 1500000042, msg_lf, NULL, NULL);
	commit_ok(f);
	assert_string_equal(tfind(f, 41)->base, "1600000000.M1P9.other");
	assert_string_equal(tfind(f, 41)->flags, "\\Flagged");
	assert_string_equal(tfind(f, 5)->base, base5);
	assert_int_equal(maildir_folder_count(f), 42);
	/* an expunge rewrites the file: records point into the new one */
	assert_int_equal(maildir_expunge(f, 6, &error), 0);
	commit_ok(f);
	assert_string_equal(tfind(f, 5)->base, base5);
	assert_string_equal(tfind(f, 7)->pop3_uidl, "u7");
	assert_null(tfind(f, 6));
	g = open_ok(fx->root, ".Rb", &o);
	assert_int_equal(maildir_folder_count(g), 41);
	assert_string_equal(tfind(g, 41)->base, "1600000000.M1P9.other");
	assert_string_equal(tfind(g, 5)->base, base5);
	maildir_folder_close(&g);
	maildir_folder_close(&f);
	unsetenv("IMAPFERRY_TEST_MD_HASH_BITS");
	free(base5);
}

static void
test_uidlist_torn_line(void **state)
{
	struct fixture *fx = *state;
	struct maildir_options o = opts(MAILDIR_DOVECOT);
	struct maildir_folder *f;
	struct md_uidlist ul;
	const char *error;
	char *p, *text;
	static const char torn[] =
		"3 V9 N2\n1 :1500000001.M1P1.mx\n2 :1500000002.M2P1.mx\n3 :15000";

	assert_int_equal(md_uidlist_parse(torn, strlen(torn), &ul, &error), 0);
	assert_int_equal(ul.nrecs, 2);
	assert_true(ul.torn);
	md_uidlist_free(&ul);
	/* a torn UID ("1" of "12") is not a line either */
	assert_int_equal(md_uidlist_parse("3 V9 N2\n1 :a\n1", 14, &ul, &error), 0);
	assert_int_equal(ul.nrecs, 1);
	assert_true(ul.torn);
	md_uidlist_free(&ul);
	/* a header alone without LF is still read */
	assert_int_equal(md_uidlist_parse("3 V9 N2", 7, &ul, &error), 0);
	assert_int_equal(ul.uidnext, 2);
	assert_false(ul.torn);
	md_uidlist_free(&ul);

	f = open_ok(fx->root, "", &o);
	maildir_folder_close(&f);
	for (int i = 1; i <= 3; i++) {
		p = xasprintf("%s/cur/150000000%d.M%dP1.mx:2,", fx->root, i, i);
		write_file(p, "Subject: x\n\nx\n");
		free(p);
	}
	p = xasprintf("%s/dovecot-uidlist", fx->root);
	write_file(p, "3 V9 N2\n1 :1500000001.M1P1.mx\n2 :1500000002.M2P1.mx\n"
	              "3 :1500000003.M3");
	f = open_ok(fx->root, "", &o);
	assert_int_equal(maildir_folder_count(f), 2);
	assert_int_equal(maildir_folder_unlisted_count(f), 1);
	assert_int_equal(maildir_folder_min_uid(f), 3);
	deliver_ok(f, 4, "", 1600000004, msg_crlf, NULL, NULL);
	commit_ok(f);
	/* rewritten, not appended to the fragment */
	assert_int_equal(md_folder_uidlist_rewrites(f), 1);
	text = slurp(p);
	assert_true(strncmp(text, "3 V9 N5\n1 :1500000001.M1P1.mx\n"
	                    "2 :1500000002.M2P1.mx\n4 :1600000004.M", 62) == 0);
	assert_int_equal(text[strlen(text) - 1], '\n');
	assert_null(strstr(text, "M3\n"));
	free(text);
	/* the next commit appends again */
	deliver_ok(f, 5, "", 1600000005, msg_crlf, NULL, NULL);
	commit_ok(f);
	assert_int_equal(md_folder_uidlist_rewrites(f), 1);
	maildir_folder_close(&f);
	free(p);
}

/* Deliveries take no lock: another process takes dovecot-uidlist.lock
 * and changes the folder while ours are pending; our commit then waits
 * for the lock, re-reads the uidlist, keeps the deliveries above what
 * the server numbered and appends after the server's lines. */
static void
test_lock_free_between_deliveries(void **state)
{
	struct fixture *fx = *state;
	struct maildir_options o = opts(MAILDIR_DOVECOT);
	struct maildir_folder *f = open_ok(fx->root, "", &o);
	char *lock = xasprintf("%s/dovecot-uidlist.lock", fx->root);
	char *ulp = xasprintf("%s/dovecot-uidlist", fx->root);
	const char *error;
	char *text;
	struct stat st;
	pid_t pid;
	int status, pfd[2];
	uint64_t t0;

	assert_int_equal(maildir_folder_set_uids(f, 5, 0, &error), 0);
	deliver_ok(f, 1, "", 1600000001, msg_crlf, NULL, NULL);
	commit_ok(f);
	deliver_ok(f, 100, "", 1600000100, msg_crlf, NULL, NULL);
	deliver_ok(f, 101, "\\Seen", 1600000101, msg_crlf, NULL, NULL);
	assert_int_equal(stat(lock, &st), -1);
	/* "the server": takes the lock, numbers a message of its own as 50
	 * (an append, as Dovecot does), holds the lock 400 ms */
	assert_int_equal(pipe(pfd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(lock, O_WRONLY | O_CREAT | O_EXCL, 0600), uf;
		struct timespec ts = { 0, 400 * 1000000L };

		if (fd < 0)
			_exit(1);
		if (write(fd, "1:other", 7) != 7)
			_exit(2);
		uf = open(ulp, O_WRONLY | O_APPEND);
		if (uf < 0 || write(uf, "50 :1600000050.M1P2.mx\n", 23) != 23)
			_exit(3);
		close(uf);
		if (write(pfd[1], "x", 1) != 1)
			_exit(4);
		nanosleep(&ts, NULL);
		unlink(lock);
		_exit(0);
	}
	close(pfd[1]);
	{
		char c;

		assert_int_equal(read(pfd[0], &c, 1), 1);
	}
	close(pfd[0]);
	/* the lock is theirs now; delivering does not wait */
	t0 = time_mono_ms();
	deliver_ok(f, 102, "", 1600000102, msg_crlf, NULL, NULL);
	assert_true(time_mono_ms() - t0 < 300);
	/* the commit waits for it, then re-reads */
	commit_ok(f);
	assert_true(time_mono_ms() - t0 >= 300);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(stat(lock, &st), -1);
	text = slurp(ulp);
	assert_non_null(strstr(text, "\n1 :1600000001.M"));
	assert_non_null(strstr(text, "\n50 :1600000050.M1P2.mx\n100 :1600000100.M"));
	assert_non_null(strstr(text, "\n102 :1600000102.M"));
	free(text);
	/* a re-read file: the server's line came in, ours were appended */
	assert_int_equal(md_folder_uidlist_rewrites(f), 1);
	assert_int_equal(maildir_folder_count(f), 4);  /* 50 has no file */
	assert_int_equal(maildir_folder_min_uid(f), 103);
	maildir_folder_close(&f);
	free(lock);
	free(ulp);
}

/* Keyword letters: a new keyword of a pending delivery is defined in
 * dovecot-keywords by the commit, before the file that uses it is in
 * cur/; if the server defined the letter for another keyword meanwhile,
 * the delivery gets the next free letter. A flag change on a published
 * message that needs a new letter writes the keywords file under the
 * lock first and releases the lock. */
static void
test_keywords_before_use(void **state)
{
	struct fixture *fx = *state;
	struct maildir_options o = opts(MAILDIR_DOVECOT);
	struct maildir_folder *f = open_ok(fx->root, "", &o);
	char *kwp = xasprintf("%s/dovecot-keywords", fx->root);
	char *lock = xasprintf("%s/dovecot-uidlist.lock", fx->root);
	const char *error;
	char *text, *name;
	struct stat st;

	assert_int_equal(maildir_folder_set_uids(f, 3, 0, &error), 0);
	deliver_ok(f, 1, "\\Seen Work", 1600000001, msg_crlf, NULL, NULL);
	/* pending: nothing defined on disk yet, nothing in cur/ */
	assert_int_equal(stat(kwp, &st), -1);
	assert_int_equal(count_in(fx->root, "", "cur"), 0);
	/* the server defines "a" meanwhile (under its lock) */
	write_file(kwp, "0 Other\n");
	commit_ok(f);
	text = slurp(kwp);
	assert_string_equal(text, "0 Other\n1 Work\n");
	free(text);
	name = find_prefix(fx->root, "cur", "1600000001.M");
	assert_non_null(name);
	assert_non_null(strstr(name, ":2,Sb"));
	free(name);
	assert_string_equal(tfind(f, 1)->flags, "Work \\Seen");
	/* a published message gets a new keyword: defined first */
	assert_int_equal(maildir_set_flags(f, 1, "Third", NULL, &error), 0);
	text = slurp(kwp);
	assert_string_equal(text, "0 Other\n1 Work\n2 Third\n");
	free(text);
	name = find_prefix(fx->root, "cur", "1600000001.M");
	assert_non_null(strstr(name, ":2,c"));
	free(name);
	assert_int_equal(stat(lock, &st), -1);
	maildir_folder_close(&f);
	f = open_ok(fx->root, "", &o);
	assert_string_equal(tfind(f, 1)->flags, "Third");
	maildir_folder_close(&f);
	free(kwp);
	free(lock);
}

/* ---- throughput ---- */

/* A UID range staged in a scratch folder inside tmp/ is published into
 * the real folder by hard links, keeping UID, flags, keywords, date and
 * POP3 UIDL; the scratch folder is then removed; the cleanup of tmp/
 * leaves the scratch directory alone. */
static void
test_link_in(void **state)
{
	struct fixture *fx = *state;
	struct maildir_options o = opts(MAILDIR_DOVECOT);
	struct maildir_folder *real, *stage;
	const struct maildir_msg *m;
	char *stage_root, *dropped = NULL;
	const char *error;
	struct stat st;

	real = open_ok(fx->root, ".Big", &o);
	assert_int_equal(maildir_folder_set_uids(real, 7, 0, &error), 0);
	deliver_ok(real, 1, "\\Seen", 1500000000, "Subject: a\r\n\r\none\r\n", NULL, NULL);
	commit_ok(real);
	maildir_folder_close(&real);

	stage_root = xasprintf("%s/.Big/tmp", fx->root);
	stage = open_ok(stage_root, ".imapferry-stage-10", &o);
	assert_int_equal(maildir_folder_set_uids(stage, 7, 0, &error), 0);
	deliver_ok(stage, 10, "\\Flagged $Work", 1500000100, "Subject: b\r\n\r\ntwo\r\n", "u10", NULL);
	deliver_ok(stage, 12, "", 1500000200, "Subject: c\n\nthree\n", NULL, NULL);
	commit_ok(stage);

	/* the real folder's open (create) cleans tmp/ but not the stage */
	real = open_ok(fx->root, ".Big", &o);
	assert_int_equal(stat(stage_root, &st), 0);
	/* a UID at or below the floor is refused */
	deliver_ok(real, 5, "", 1500000050, "Subject: d\r\n\r\n", NULL, NULL);
	assert_int_equal(maildir_link_in(real, stage, 12, &dropped, &error), 0);
	assert_int_equal(maildir_link_in(real, stage, 10, &dropped, &error), -1);
	assert_non_null(strstr(error, "below"));
	assert_int_equal(maildir_link_in(real, stage, 11, &dropped, &error), -1);
	commit_ok(real);
	maildir_folder_close(&real);

	real = open_ok(fx->root, ".Big", &o);
	assert_int_equal(maildir_folder_count(real), 3);
	m = tfind(real, 12);
	assert_non_null(m);
	assert_int_equal(m->mtime, 1500000200);
	assert_int_equal(m->file_size, 18);
	assert_int_equal(m->size, 21);
	assert_string_equal(m->flags, "");
	maildir_folder_close(&real);
	maildir_folder_close(&stage);

	/* a fresh real folder takes the staged 10 with its keywords */
	real = open_ok(fx->root, ".Other", &o);
	stage = open_ok(stage_root, ".imapferry-stage-10", &o);
	assert_int_equal(maildir_folder_set_uids(real, 7, 0, &error), 0);
	assert_int_equal(maildir_link_in(real, stage, 10, &dropped, &error), 0);
	assert_null(dropped);
	commit_ok(real);
	maildir_folder_close(&real);
	maildir_folder_close(&stage);
	real = open_ok(fx->root, ".Other", &o);
	m = tfind(real, 10);
	assert_non_null(m);
	assert_string_equal(m->flags, "$Work \\Flagged");
	assert_string_equal(m->pop3_uidl, "u10");
	assert_int_equal(m->mtime, 1500000100);
	maildir_folder_close(&real);

	assert_int_equal(maildir_folder_remove(stage_root, ".imapferry-stage-10", &error), 0);
	assert_int_equal(lstat(stage_root, &st), 0);
	{
		char *p = xasprintf("%s/.imapferry-stage-10", stage_root);

		assert_int_equal(lstat(p, &st), -1);
		free(p);
	}
	/* missing: fine; INBOX and odd names: refused */
	assert_int_equal(maildir_folder_remove(stage_root, ".imapferry-stage-10", &error), 0);
	assert_int_equal(maildir_folder_remove(fx->root, "", &error), -1);
	assert_int_equal(maildir_folder_remove(fx->root, "../x", &error), -1);
	free(stage_root);
}

/* The same for Courier: LF storage, keywords in courierimapkeywords/,
 * RFC822.SIZE of the staged file carried over. */
static void
test_link_in_courier(void **state)
{
	struct fixture *fx = *state;
	struct maildir_options o = opts(MAILDIR_COURIER);
	struct maildir_folder *real, *stage;
	const struct maildir_msg *m;
	char *stage_root, *kw, *dropped = NULL;
	const char *error;

	real = open_ok(fx->root, ".Big", &o);
	assert_int_equal(maildir_folder_set_uids(real, 9, 0, &error), 0);
	deliver_ok(real, 2, "\\Seen", 1500000000, "Subject: a\r\n\r\none\r\n", NULL, NULL);
	commit_ok(real);
	stage_root = xasprintf("%s/.Big/tmp", fx->root);
	stage = open_ok(stage_root, ".imapferry-stage-3", &o);
	assert_int_equal(maildir_folder_set_uids(stage, 9, 0, &error), 0);
	deliver_ok(stage, 3, "\\Answered Work", 1500000300, "Subject: b\r\n\r\ntwo\r\n", NULL, NULL);
	commit_ok(stage);
	assert_int_equal(maildir_link_in(real, stage, 3, &dropped, &error), 0);
	assert_null(dropped);
	assert_int_equal(maildir_folder_set_uids(real, 9, 10, &error), 0);
	commit_ok(real);
	maildir_folder_close(&real);
	maildir_folder_close(&stage);

	real = open_ok(fx->root, ".Big", &o);
	assert_int_equal(maildir_folder_count(real), 2);
	assert_int_equal(maildir_folder_uidnext(real), 10);
	m = tfind(real, 3);
	assert_non_null(m);
	assert_string_equal(m->flags, "Work \\Answered");
	assert_int_equal(m->mtime, 1500000300);
	assert_int_equal(m->file_size, 16);
	{
		uint64_t size;

		assert_int_equal(maildir_msg_size(real, 3, &size, &error), 0);
		assert_int_equal(size, 19);
	}
	maildir_folder_close(&real);
	kw = slurp2(fx->root, ".Big/courierimapkeywords/:list");
	assert_non_null(strstr(kw, "Work"));
	free(kw);
	assert_int_equal(maildir_folder_remove(stage_root, ".imapferry-stage-3", &error), 0);
	free(stage_root);
}

static void
bench(const char *root, bool fsync_on)
{
	struct maildir_options o = opts(MAILDIR_DOVECOT);
	struct maildir_folder *f;
	char body[4096];
	const char *error;
	uint64_t t0, ms;
	const uint32_t n = 3000;

	o.fsync = fsync_on;
	f = open_ok(root, fsync_on ? ".BenchSync" : ".Bench", &o);
	memset(body, 'x', sizeof(body));
	for (size_t i = 78; i < sizeof(body); i += 80) {
		body[i] = '\r';
		body[i + 1] = '\n';
	}
	assert_int_equal(maildir_folder_set_uids(f, 1, 0, &error), 0);
	t0 = time_mono_ms();
	for (uint32_t uid = 1; uid <= n; uid++) {
		if (maildir_deliver(f, uid, uid % 2 ? "\\Seen" : "\\Seen Work", 1600000000,
		                    body, sizeof(body), NULL, NULL, &error) < 0)
			fail_msg("%s", error);
		if (uid % 500 == 0)
			commit_ok(f);
	}
	commit_ok(f);
	ms = time_mono_ms() - t0;
	print_message("maildir: %u x 4 KiB messages, commit per 500, fsync %s: "
	              "%llu ms (%.0f msg/s)\n", n, fsync_on ? "on" : "off",
	              (unsigned long long)ms, ms > 0 ? n * 1000.0 / (double)ms : 0.0);
	assert_int_equal(maildir_folder_count(f), n);
	maildir_folder_close(&f);
}

static void
test_throughput(void **state)
{
	struct fixture *fx = *state;

	bench(fx->root, false);
	bench(fx->root, true);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

/* W= (the size with CRLF line ends) of random CR/LF/text mixes of many
 * lengths, from memory and through the fd path's 64 KiB chunks: every
 * LF not preceded by a CR counts once, also across a chunk boundary. */
static void
test_vsize_random(void **state)
{
	struct fixture *fx = *state;
	struct maildir_options o = opts(MAILDIR_DOVECOT);
	struct maildir_folder *f = open_ok(fx->root, ".VSize", &o);
	char *cur = xasprintf("%s/.VSize/cur", fx->root);
	char *src = xasprintf("%s/vsize-src", fx->root);
	const size_t lens[] = { 1, 2, 15, 16, 17, 31, 33, 255 * 16 + 7, 4096 + 1,
	                        65535, 65536, 65537, 200003 };
	const size_t n = sizeof(lens) / sizeof(lens[0]);
	const char *error;
	unsigned seed = 12345;

	assert_int_equal(maildir_folder_set_uids(f, 7, 0, &error), 0);
	for (size_t k = 0; k < 2 * n; k++) {
		size_t len = lens[k % n], bare = 0;
		char *data = xmalloc(len), *name;
		uint32_t uid = (uint32_t)k + 1;

		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			switch ((seed >> 16) % 7) {
			case 0: data[i] = '\r'; break;
			case 1: case 2: data[i] = '\n'; break;
			default: data[i] = 'x'; break;
			}
		}
		if (len > 65536) {      /* a CR ending the first chunk, LF after */
			data[65535] = '\r';
			data[65536] = '\n';
		}
		for (size_t i = 0; i < len; i++)
			bare += data[i] == '\n' && (i == 0 || data[i - 1] != '\r');
		if (k < n) {
			if (maildir_deliver(f, uid, "", 1600000000, data, len, NULL, NULL,
			                    &error) < 0)
				fail_msg("%s", error);
		} else {
			int fd = open(src, O_RDWR | O_CREAT | O_TRUNC, 0600);

			assert_true(fd >= 0);
			assert_int_equal(write(fd, data, len), (ssize_t)len);
			assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
			if (maildir_deliver_fd(f, uid, "", 1600000000, fd, len, NULL, NULL,
			                       &error) < 0)
				fail_msg("%s", error);
			close(fd);
		}
		commit_ok(f);
		name = find_file(cur, tfind(f, uid)->base);
		assert_non_null(name);
		assert_int_equal(field(name, 'S'), len);
		if (field(name, 'W') != len + bare)
			fail_msg("length %zu (%s): W=%llu, expected %zu", len,
			         k < n ? "memory" : "fd",
			         (unsigned long long)field(name, 'W'), len + bare);
		free(name);
		free(data);
	}
	maildir_folder_close(&f);
	free(cur);
	free(src);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dirname_table),
		cmocka_unit_test(test_uidlist_parse),
		T(test_dovecot_deliver_format),
		T(test_vsize_random),
		T(test_dovecot_27_keywords),
		T(test_dovecot_flags_expunge_reopen),
		T(test_dovecot_existing_uidlist),
		T(test_lock_timeout),
		T(test_lock_stale_dead_pid),
		T(test_create_excl_complete),
		T(test_refresh_under_lock),
		T(test_refresh_keeps_pending),
		T(test_symlink_refused),
		T(test_courier),
		T(test_deliver_fd),
		T(test_pending),
		T(test_pending_many),
		T(test_background_sync),
		T(test_pending_commit_fails),
		T(test_crash_pending),
		T(test_unlisted),
		T(test_subscriptions),
		T(test_list_folders),
		T(test_modes),
		T(test_link_in),
		T(test_link_in_courier),
		cmocka_unit_test(test_pool_strings),
		T(test_msg_pointers_stable),
		T(test_uidlist_append_linear),
		T(test_uidlist_torn_line),
		T(test_uidlist_chunked),
		T(test_readback_append_collisions),
		T(test_lock_free_between_deliveries),
		T(test_keywords_before_use),
		T(test_throughput),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
