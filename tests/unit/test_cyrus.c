/* test_cyrus.c: the Cyrus spool reader (src/cyrus). A small writer below
 * builds cyrus.index files of minor versions 10, 12, 13, 16 and 17 from
 * the layouts documented in docs/internals/cyrus-formats.md (its own table,
 * not the reader's), and hostile spools: symlinks, a "<UID>." directory,
 * truncated indexes, record counts larger than the file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "cyrus.h"
#include "tmpdir.h"

/* ------------------------------------------------------------- writer */

/* per version: header length, record size, MODSEQ offset, CRCs */
static const struct { uint32_t v, hlen, rsize, modseq; int crc; } wl[] = {
	{ 10, 96, 88, 80, 0 },
	{ 12, 128, 96, 80, 1 },
	{ 13, 128, 104, 80, 1 },
	{ 16, 160, 112, 80, 1 },
	{ 17, 160, 112, 80, 1 },
	/* refused: 11 was Fastmail-internal, 19 is Cyrus 3.10 */
	{ 11, 128, 96, 80, 1 },
	{ 19, 160, 112, 80, 1 },
};

struct trec {
	uint32_t uid, idate, size, sysflags;
	uint32_t uf[4];
	uint64_t modseq;
};

static void
put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static void
put64(unsigned char *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

/* Builds an index of version v; returns its length (*out malloc'ed). */
static size_t
write_index(uint32_t v, uint32_t uidvalidity, uint32_t last_uid,
            const struct trec *r, size_t n, unsigned char **out)
{
	size_t k = 0, len;
	unsigned char *b;

	while (wl[k].v != v)
		k++;
	len = wl[k].hlen + n * wl[k].rsize;
	b = calloc(1, len);
	put32(b + 0, 1);                 /* generation */
	put32(b + 8, v);
	put32(b + 12, wl[k].hlen);       /* start offset */
	put32(b + 16, wl[k].rsize);
	put32(b + 20, (uint32_t)n);      /* num_records */
	put32(b + 28, last_uid);
	put32(b + 44, uidvalidity);
	put64(b + 68, 4242);             /* highestmodseq */
	if (wl[k].crc)
		put32(b + wl[k].hlen - 4, (uint32_t)crc32(0, b, wl[k].hlen - 4));
	for (size_t i = 0; i < n; i++) {
		unsigned char *p = b + wl[k].hlen + i * wl[k].rsize;

		put32(p, r[i].uid);
		put32(p + 4, r[i].idate);
		put32(p + 12, r[i].size);
		put32(p + 32, r[i].sysflags);
		for (int w = 0; w < 4; w++)
			put32(p + 36 + 4 * w, r[i].uf[w]);
		put64(p + wl[k].modseq, r[i].modseq);
		if (wl[k].crc)
			put32(p + wl[k].rsize - 4,
			      (uint32_t)crc32(0, p, wl[k].rsize - 4));
	}
	*out = b;
	return len;
}

static const struct trec recs[] = {
	{ 3, 1600000003, 120, 0x10 | 0x2, { 1, 0, 0, 0 }, 7 },       /* Seen Flagged kw0 */
	{ 5, 1600000005, 200, 0x4 | CYRUS_FLAG_EXPUNGED, { 0 }, 8 }, /* expunged */
	{ 9, 1600000009, 300, 0x1 | 0x8, { 0, 1u << 8, 0, 0 }, 9 },  /* Answered Draft kw40 */
	{ 12, 1600000012, 400, 0x4, { 1u << 31, 0, 0, 1u << 31 }, 10 },/* Deleted kw31 kw127 */
};

static const char magic[] =
	"\241\002\213\015Cyrus mailbox header\n"
	"\"The best thing about this system was that it had lots of goals.\"\n"
	"\t--Jim Morris on Andrew\n";

/* A header naming 128 user flags kw0..kw127 (3.x dlist or 2.x lines). */
static char *
make_header(bool dlist, const char *uniqueid)
{
	size_t cap = 8192, len;
	char *h = malloc(cap);

	len = (size_t)snprintf(h, cap, dlist ? "%s%%(T el N user.alice I %s A "
	                       "%%(alice lrswipkxtecdan) U (" : "%s\t%s\n",
	                       magic, uniqueid);
	for (int i = 0; i < 128; i++)
		len += (size_t)snprintf(h + len, cap - len, "%skw%d", i ? " " : "", i);
	snprintf(h + len, cap - len, dlist ? "))\n" : "\nalice\tlrswipkxtecdan\t\n");
	return h;
}

/* -------------------------------------------------------------- parsers */

static void
test_index_versions(void **state)
{
	static const uint32_t versions[] = { 10, 12, 13, 16, 17 };
	struct cyrus_header h;
	const char *error;
	char *hdr = make_header(true, "abc");

	(void)state;
	assert_int_equal(cyrus_header_parse(hdr, strlen(hdr), &h, &error), 0);
	for (size_t i = 0; i < N_ELEMENTS(versions); i++) {
		struct cyrus_index ix;
		unsigned char *b;
		size_t len = write_index(versions[i], 77, 12, recs, 4, &b);
		char *fl;

		assert_int_equal(cyrus_index_parse(b, len, &ix, &error), 0);
		assert_int_equal(ix.minor_version, versions[i]);
		assert_int_equal(ix.uidvalidity, 77);
		assert_int_equal(ix.last_uid, 12);
		assert_int_equal(ix.highestmodseq, 4242);
		/* the expunged record is skipped */
		assert_int_equal(ix.count, 3);
		assert_int_equal(ix.n_expunged, 1);
		assert_int_equal(ix.records[0].uid, 3);
		assert_int_equal(ix.records[1].uid, 9);
		assert_int_equal(ix.records[2].uid, 12);
		assert_int_equal(ix.records[1].internaldate, 1600000009);
		assert_int_equal(ix.records[1].size, 300);
		assert_int_equal(ix.records[2].modseq, 10);
		fl = cyrus_record_flags(&ix.records[0], &h, true);
		assert_string_equal(fl, "\\Seen \\Flagged kw0");
		free(fl);
		fl = cyrus_record_flags(&ix.records[1], &h, false);
		assert_string_equal(fl, "\\Answered \\Draft kw40");
		free(fl);
		fl = cyrus_record_flags(&ix.records[2], &h, false);
		assert_string_equal(fl, "\\Deleted kw31 kw127");
		free(fl);
		cyrus_index_free(&ix);
		free(b);
	}
	cyrus_header_free(&h);
	free(hdr);
}

static void
test_index_refused_versions(void **state)
{
	static const uint32_t refused[] = { 11, 19 };
	struct cyrus_index ix;
	const char *error;

	(void)state;
	for (size_t i = 0; i < N_ELEMENTS(refused); i++) {
		unsigned char *b;
		size_t len = write_index(refused[i], 1, 12, recs, 4, &b);
		char want[64];

		assert_int_equal(cyrus_index_parse(b, len, &ix, &error), -1);
		snprintf(want, sizeof(want), "unsupported minor version %u", refused[i]);
		assert_non_null(strstr(error, want));
		assert_int_equal(err_kind_of(error), ERRK_FOLDER);
		assert_false(cyrus_index_version_known(refused[i]));
		free(b);
	}
}

static void
test_index_hostile(void **state)
{
	struct cyrus_index ix;
	const char *error;
	unsigned char *b;
	size_t len = write_index(17, 1, 12, recs, 4, &b);

	(void)state;
	/* every truncation is an error, never a read past the end */
	for (size_t cut = 0; cut < len; cut++) {
		unsigned char *c = malloc(cut + 1);

		memcpy(c, b, cut);
		assert_int_equal(cyrus_index_parse(c, cut, &ix, &error), -1);
		free(c);
	}
	/* a record count larger than the file (header CRC made valid) */
	put32(b + 20, 1000000);
	put32(b + 156, (uint32_t)crc32(0, b, 156));
	assert_int_equal(cyrus_index_parse(b, len, &ix, &error), -1);
	assert_non_null(strstr(error, "1000000 records need"));
	put32(b + 20, UINT32_MAX);
	put32(b + 156, (uint32_t)crc32(0, b, 156));
	assert_int_equal(cyrus_index_parse(b, len, &ix, &error), -1);
	put32(b + 20, 4);
	/* a record size that does not match the version */
	put32(b + 16, 104);
	put32(b + 156, (uint32_t)crc32(0, b, 156));
	assert_int_equal(cyrus_index_parse(b, len, &ix, &error), -1);
	assert_non_null(strstr(error, "record size 104"));
	put32(b + 16, 112);
	/* a start offset outside the file */
	put32(b + 12, 0x7fffffff);
	put32(b + 156, (uint32_t)crc32(0, b, 156));
	assert_int_equal(cyrus_index_parse(b, len, &ix, &error), -1);
	put32(b + 12, 160);
	put32(b + 156, (uint32_t)crc32(0, b, 156));
	assert_int_equal(cyrus_index_parse(b, len, &ix, &error), 0);
	cyrus_index_free(&ix);
	/* a damaged record or header */
	b[160 + 12] ^= 1;
	assert_int_equal(cyrus_index_parse(b, len, &ix, &error), -1);
	assert_non_null(strstr(error, "record 1: checksum mismatch"));
	b[160 + 12] ^= 1;
	b[44] ^= 1;
	assert_int_equal(cyrus_index_parse(b, len, &ix, &error), -1);
	assert_non_null(strstr(error, "header checksum"));
	free(b);
	/* UIDs out of order, or above last_uid */
	{
		struct trec bad[2] = { recs[2], recs[0] };

		len = write_index(16, 1, 12, bad, 2, &b);
		assert_int_equal(cyrus_index_parse(b, len, &ix, &error), -1);
		assert_non_null(strstr(error, "out of order"));
		free(b);
		len = write_index(10, 1, 8, recs, 4, &b);
		assert_int_equal(cyrus_index_parse(b, len, &ix, &error), -1);
		free(b);
	}
}

static void
test_header_formats(void **state)
{
	struct cyrus_header h;
	const char *error;
	char *hdr;
	char buf[1024];

	(void)state;
	/* 3.x, all 128 names */
	hdr = make_header(true, "2gi1bkkbxd4uee3pz4bhgabk");
	assert_int_equal(cyrus_header_parse(hdr, strlen(hdr), &h, &error), 0);
	assert_string_equal(h.uniqueid, "2gi1bkkbxd4uee3pz4bhgabk");
	assert_string_equal(h.name, "user.alice");
	assert_int_equal(h.n_flags, 128);
	assert_string_equal(h.flagname[127], "kw127");
	cyrus_header_free(&h);
	/* every prefix: an error or a header, never a crash */
	for (size_t cut = 0; cut < strlen(hdr); cut++) {
		if (cyrus_header_parse(hdr, cut, &h, &error) == 0)
			cyrus_header_free(&h);
	}
	free(hdr);
	/* 2.x lines, empty slots kept */
	snprintf(buf, sizeof(buf), "%suser.alice\tdeadbeef\n$Label1  Work \nacl\n", magic);
	assert_int_equal(cyrus_header_parse(buf, strlen(buf), &h, &error), 0);
	assert_string_equal(h.quotaroot, "user.alice");
	assert_string_equal(h.uniqueid, "deadbeef");
	assert_null(h.name);
	assert_int_equal(h.n_flags, 3);
	assert_string_equal(h.flagname[0], "$Label1");
	assert_null(h.flagname[1]);
	assert_string_equal(h.flagname[2], "Work");
	cyrus_header_free(&h);
	/* 3.x: NIL for a removed flag, quoted and literal strings */
	snprintf(buf, sizeof(buf), "%s%%(T e N \"user.a b\" I {3+}\r\nxyz U (a NIL \"c d\"))\n",
	         magic);
	assert_int_equal(cyrus_header_parse(buf, strlen(buf), &h, &error), 0);
	assert_string_equal(h.name, "user.a b");
	assert_string_equal(h.uniqueid, "xyz");
	assert_int_equal(h.n_flags, 3);
	assert_null(h.flagname[1]);
	assert_string_equal(h.flagname[2], "c d");
	cyrus_header_free(&h);
	/* hostile: bad magic, deep nesting, a literal past the end, 129 flags */
	assert_int_equal(cyrus_header_parse("nope", 4, &h, &error), -1);
	assert_non_null(strstr(error, "magic"));
	snprintf(buf, sizeof(buf), "%s%%(A ((((((((((x))))))))))\n", magic);
	assert_int_equal(cyrus_header_parse(buf, strlen(buf), &h, &error), -1);
	snprintf(buf, sizeof(buf), "%s%%(I {999}\r\nxyz)\n", magic);
	assert_int_equal(cyrus_header_parse(buf, strlen(buf), &h, &error), -1);
	{
		char big[4096];
		size_t len = (size_t)snprintf(big, sizeof(big), "%s%%(U (", magic);

		for (int i = 0; i < 129; i++)
			len += (size_t)snprintf(big + len, sizeof(big) - len, " f%d", i);
		snprintf(big + len, sizeof(big) - len, "))\n");
		assert_int_equal(cyrus_header_parse(big, strlen(big), &h, &error), -1);
		assert_non_null(strstr(error, "more than 128"));
	}
}

static void
test_seen_subs_mboxlist(void **state)
{
	static const char seen[] =
		"other\t1 0 9 0 1:9\n"
		"deadbeef\t1 1600000000 12 1600000000 3,9:10\n";
	static const char subs2[] =
		"user.alice\t\nuser.alice.Sent\t\nuser.alice.A^B.C\t\nuser.bob.X\t\n"
		"user.alicex.Y\t\n";
	static const char subs3[] =
		"\x1fVER\x1f\t2\nNINBOX\t\nNINBOX\x1fSub\x1f" "Deep\t\nNuser\x1f" "bob\t\n";
	static const char dump[] =
		"{\n"
		"\"user.alice\": {\"name\": \"user.alice\", \"mbtype\": \"e\", "
		"\"partition\": \"default\", \"uniqueid\": \"abcdef\"},\n"
		"\"user.alice.Old\": {\"name\": \"user.alice.Old\", \"mbtype\": \"el\", "
		"\"partition\": \"default\", \"uniqueid\": \"u2\"},\n"
		"\"user.alice.Gone\": {\"name\": \"user.alice.Gone\", \"mbtype\": \"ed\", "
		"\"uniqueid\": \"u3\"},\n"
		"\"user.alice.Cal\": {\"name\": \"user.alice.Cal\", \"mbtype\": \"c\", "
		"\"uniqueid\": \"u4\"},\n"
		"\"user.bob\": {\"name\": \"user.bob\", \"mbtype\": \"e\", \"uniqueid\": \"u5\"}\n"
		"}\n";
	uint32_t *r;
	size_t n;
	char **names;
	struct cyrus_mbentry *e;
	const char *error;

	(void)state;
	assert_int_equal(cyrus_seen_parse(seen, strlen(seen), "deadbeef", &r, &n, &error), 0);
	assert_int_equal(n, 2);
	assert_int_equal(r[0], 3);
	assert_int_equal(r[1], 3);
	assert_int_equal(r[2], 9);
	assert_int_equal(r[3], 10);
	free(r);
	assert_int_equal(cyrus_seen_parse(seen, strlen(seen), "nothere", &r, &n, &error), 0);
	assert_int_equal(n, 0);
	assert_int_equal(cyrus_seen_parse("\241\002\213\015skiplist file\0\0\0", 20, "x",
	                                  &r, &n, &error), -1);
	assert_non_null(strstr(error, "skiplist"));
	assert_int_equal(cyrus_seen_parse("k\t1 0 0 0 1:x\n", 14, "k", &r, &n, &error), -1);

	assert_int_equal(cyrus_subs_parse(subs2, strlen(subs2), "alice", &names, &n, &error), 0);
	assert_int_equal(n, 3);
	assert_string_equal(names[0], "INBOX");
	assert_string_equal(names[1], "Sent");
	assert_string_equal(names[2], "A.B/C");
	strv_free(&names);
	assert_int_equal(cyrus_subs_parse(subs3, strlen(subs3), "alice", &names, &n, &error), 0);
	assert_int_equal(n, 2);
	assert_string_equal(names[1], "Sub/Deep");
	strv_free(&names);

	assert_int_equal(cyrus_mboxlist_parse(dump, strlen(dump), "alice", &e, &n, &error), 0);
	assert_int_equal(n, 2);
	assert_string_equal(e[0].name, "INBOX");
	assert_string_equal(e[0].uniqueid, "abcdef");
	assert_false(e[0].legacy_dirs);
	assert_string_equal(e[1].name, "Old");
	assert_true(e[1].legacy_dirs);
	cyrus_mbentries_free(&e, n);
	assert_int_equal(cyrus_mboxlist_parse("user.alice\tdefault\tacl\n", 23, "alice",
	                                      &e, &n, &error), -1);
	assert_int_equal(cyrus_dir_hash("alice", false), 'a');
	assert_int_equal(cyrus_dir_hash("9lives", false), 'q');
	assert_true(cyrus_dir_hash("alice", true) >= 'A' &&
	            cyrus_dir_hash("alice", true) < 'A' + 23);
}

/* ------------------------------------------------------------ spool tree */

struct fixture {
	char dir[256];
	char outside[300];
};

static int
setup(void **statep)
{
	struct fixture *fx = xcalloc(1, sizeof(*fx));

	if (tmpdir_make(fx->dir, sizeof(fx->dir), "test_cyrus") < 0)
		return -1;
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

static void
write_file(const char *dir, const char *name, const void *data, size_t len)
{
	char *path = xasprintf("%s/%s", dir, name);
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	free(path);
}

/* A mailbox at dir (created) with the records of recs of version v. */
static void
make_mailbox(const char *dir, uint32_t v, bool dlist, const char *uniqueid)
{
	char *hdr = make_header(dlist, uniqueid);
	unsigned char *ix;
	size_t len = write_index(v, 99, 12, recs, 4, &ix);

	assert_int_equal(mkdir(dir, 0700), 0);
	write_file(dir, "cyrus.header", hdr, strlen(hdr));
	write_file(dir, "cyrus.index", ix, len);
	for (size_t i = 0; i < N_ELEMENTS(recs); i++) {
		char name[16], *body = malloc(recs[i].size);

		memset(body, 'a' + (int)i, recs[i].size);
		snprintf(name, sizeof(name), "%u.", recs[i].uid);
		write_file(dir, name, body, recs[i].size);
		free(body);
	}
	free(ix);
	free(hdr);
}

static void
test_spool_legacy(void **statep)
{
	struct fixture *fx = *statep;
	struct cyrus_options o = { .user = "alice" };
	struct cyrus_account *a;
	struct cyrus_folder *f;
	const struct cyrus_record *r;
	const char *error;
	char *p, *fl;
	uint64_t size;
	bool missing;
	int fd;

	p = xasprintf("%s/user", fx->dir);
	assert_int_equal(mkdir(p, 0700), 0);
	free(p);
	p = xasprintf("%s/user/alice", fx->dir);
	make_mailbox(p, 17, true, "u-inbox");
	free(p);
	p = xasprintf("%s/user/alice/Sent", fx->dir);
	make_mailbox(p, 17, true, "u-sent");
	free(p);
	p = xasprintf("%s/user/alice/A^B", fx->dir);
	make_mailbox(p, 13, true, "u-ab");
	free(p);
	/* a directory that is not a mailbox, with one below it */
	p = xasprintf("%s/user/alice/Par", fx->dir);
	assert_int_equal(mkdir(p, 0700), 0);
	free(p);
	p = xasprintf("%s/user/alice/Par/Kid", fx->dir);
	make_mailbox(p, 16, true, "u-kid");
	free(p);
	/* hostile: a symlinked folder pointing outside, a symlinked
	 * message, a "<UID>." directory, a symlinked cyrus.index */
	snprintf(fx->outside, sizeof(fx->outside), "%s/outside", fx->dir);
	make_mailbox(fx->outside, 17, true, "u-out");
	p = xasprintf("%s/user/alice/Evil", fx->dir);
	assert_int_equal(symlink(fx->outside, p), 0);
	free(p);
	p = xasprintf("%s/user/alice/Sent/3.", fx->dir);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(symlink("/etc/passwd", p), 0);
	free(p);
	p = xasprintf("%s/user/alice/Sent/9.", fx->dir);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(mkdir(p, 0700), 0);
	free(p);
	p = xasprintf("%s/user/alice/Par/Kid/cyrus.index", fx->dir);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(symlink("../../../../outside/cyrus.index", p), 0);
	free(p);

	assert_int_equal(cyrus_account_open(fx->dir, &o, &a, &error), 0);
	assert_int_equal(cyrus_account_count(a), 4);
	assert_string_equal(cyrus_account_mailbox(a, 0)->name, "A.B");
	assert_string_equal(cyrus_account_mailbox(a, 1)->name, "INBOX");
	assert_string_equal(cyrus_account_mailbox(a, 2)->name, "Par/Kid");
	assert_string_equal(cyrus_account_mailbox(a, 3)->name, "Sent");

	assert_int_equal(cyrus_folder_open(a, "INBOX", &f, NULL, &error), 0);
	assert_int_equal(cyrus_folder_uidvalidity(f), 99);
	assert_int_equal(cyrus_folder_uidnext(f), 13);
	assert_int_equal(cyrus_folder_index(f)->count, 3);
	r = cyrus_folder_find(f, 9);
	assert_non_null(r);
	assert_null(cyrus_folder_find(f, 5));
	fl = cyrus_folder_flags(f, cyrus_folder_find(f, 3));
	assert_string_equal(fl, "\\Seen \\Flagged kw0");
	free(fl);
	assert_int_equal(cyrus_folder_open_msg(f, 9, &fd, &size, &missing, &error), 0);
	assert_int_equal(size, 300);
	close(fd);
	cyrus_folder_close(&f);

	assert_int_equal(cyrus_folder_open(a, "Sent", &f, NULL, &error), 0);
	assert_int_equal(cyrus_folder_open_msg(f, 3, &fd, &size, &missing, &error), -1);
	assert_non_null(strstr(error, "symlink"));
	assert_int_equal(err_kind_of(error), ERRK_MESSAGE);
	assert_true(missing);
	missing = false;
	assert_int_equal(cyrus_folder_open_msg(f, 9, &fd, &size, &missing, &error), -1);
	assert_non_null(strstr(error, "not a regular file"));
	assert_true(missing);
	assert_int_equal(cyrus_folder_open_msg(f, 77, &fd, &size, &missing, &error), -1);
	assert_true(missing);
	cyrus_folder_close(&f);

	/* there but unreadable: not missing; not in the account: missing */
	missing = true;
	assert_int_equal(cyrus_folder_open(a, "Par/Kid", &f, &missing, &error), -1);
	assert_non_null(strstr(error, "cyrus.index: is a symlink"));
	assert_int_equal(err_kind_of(error), ERRK_FOLDER);
	assert_false(missing);
	assert_int_equal(cyrus_folder_open(a, "Evil", &f, NULL, &error), -1);
	assert_int_equal(cyrus_folder_open(a, "No/Such", &f, &missing, &error), -1);
	assert_true(missing);
	cyrus_account_free(&a);

	/* bad user names and roots */
	o.user = "../alice";
	assert_int_equal(cyrus_account_open(fx->dir, &o, &a, &error), -1);
	assert_int_equal(err_kind_of(error), ERRK_USAGE);
	o.user = "..";
	assert_int_equal(cyrus_account_open(fx->dir, &o, &a, &error), -1);
	o.user = "nobody";
	assert_int_equal(cyrus_account_open(fx->dir, &o, &a, &error), -1);
	assert_int_equal(err_kind_of(error), ERRK_USAGE);
	o.user = "alice";
	assert_int_equal(cyrus_account_open("/nonexistent/spool", &o, &a, &error), -1);
	/* a template that climbs out of the root */
	o.tmpl = "../outside";
	assert_int_equal(cyrus_account_open(fx->dir, &o, &a, &error), -1);
}

static void
test_spool_hashed_seen_subs(void **statep)
{
	struct fixture *fx = *statep;
	struct cyrus_options o = { .user = "bob" };
	struct cyrus_account *a;
	struct cyrus_folder *f;
	const char *error;
	char *p, *fl, seen[128];
	static const char subs[] = "user.bob.Sent\t\n";

	/* Cyrus 2.3: hashimapspool, version 10, 2.x header, seen in the
	 * flat seen db of the config directory */
	p = xasprintf("%s/b", fx->dir);
	assert_int_equal(mkdir(p, 0700), 0);
	free(p);
	p = xasprintf("%s/b/user", fx->dir);
	assert_int_equal(mkdir(p, 0700), 0);
	free(p);
	p = xasprintf("%s/b/user/bob", fx->dir);
	make_mailbox(p, 10, false, "bob-inbox-id");
	free(p);
	p = xasprintf("%s/b/user/bob/Sent", fx->dir);
	make_mailbox(p, 10, false, "bob-sent-id");
	free(p);
	p = xasprintf("%s/conf", fx->dir);
	assert_int_equal(mkdir(p, 0700), 0);
	free(p);
	p = xasprintf("%s/conf/user", fx->dir);
	assert_int_equal(mkdir(p, 0700), 0);
	free(p);
	p = xasprintf("%s/conf/user/b", fx->dir);
	assert_int_equal(mkdir(p, 0700), 0);
	snprintf(seen, sizeof(seen), "bob-inbox-id\t1 0 12 0 1:3,12\n");
	write_file(p, "bob.seen", seen, strlen(seen));
	write_file(p, "bob.sub", subs, strlen(subs));
	free(p);
	o.config_dir = p = xasprintf("%s/conf", fx->dir);
	assert_int_equal(cyrus_account_open(fx->dir, &o, &a, &error), 0);
	free(p);
	assert_int_equal(cyrus_account_count(a), 2);
	assert_false(cyrus_account_mailbox(a, 0)->subscribed);
	assert_true(cyrus_account_mailbox(a, 1)->subscribed);
	assert_int_equal(cyrus_folder_open(a, "INBOX", &f, NULL, &error), 0);
	/* version 10: the record's bit 4 is not \Seen; the seen db is */
	fl = cyrus_folder_flags(f, cyrus_folder_find(f, 3));
	assert_string_equal(fl, "\\Seen \\Flagged kw0");
	free(fl);
	fl = cyrus_folder_flags(f, cyrus_folder_find(f, 9));
	assert_string_equal(fl, "\\Answered \\Draft kw40");
	free(fl);
	fl = cyrus_folder_flags(f, cyrus_folder_find(f, 12));
	assert_string_equal(fl, "\\Seen \\Deleted kw31 kw127");
	free(fl);
	cyrus_folder_close(&f);
	cyrus_account_free(&a);

	/* the same tree through a template */
	o.config_dir = NULL;
	o.tmpl = "%h/user/%u";
	assert_int_equal(cyrus_account_open(fx->dir, &o, &a, &error), 0);
	assert_int_equal(cyrus_account_count(a), 2);
	cyrus_account_free(&a);
}

static void
test_spool_uuid_layout(void **statep)
{
	struct fixture *fx = *statep;
	struct cyrus_options o = { .user = "carol" };
	struct cyrus_account *a;
	struct cyrus_folder *f;
	const char *error;
	char *p, *dump;

	p = xasprintf("%s/uuid", fx->dir);
	assert_int_equal(mkdir(p, 0700), 0);
	free(p);
	p = xasprintf("%s/uuid/x", fx->dir);
	assert_int_equal(mkdir(p, 0700), 0);
	free(p);
	p = xasprintf("%s/uuid/x/y", fx->dir);
	assert_int_equal(mkdir(p, 0700), 0);
	free(p);
	p = xasprintf("%s/uuid/x/y/xyz1", fx->dir);
	make_mailbox(p, 17, true, "xyz1");
	free(p);
	p = xasprintf("%s/dump.json", fx->dir);
	dump = "{\n\"user.carol\": {\"name\": \"user.carol\", \"mbtype\": \"e\", "
	       "\"uniqueid\": \"xyz1\"},\n"
	       "\"user.carol.Evil\": {\"name\": \"user.carol.Evil\", \"mbtype\": \"e\", "
	       "\"uniqueid\": \"../../etc\"}\n}\n";
	write_file(fx->dir, "dump.json", dump, strlen(dump));
	o.mboxlist = p;
	assert_int_equal(cyrus_account_open(fx->dir, &o, &a, &error), 0);
	free(p);
	assert_int_equal(cyrus_account_count(a), 1);
	assert_int_equal(cyrus_folder_open(a, "INBOX", &f, NULL, &error), 0);
	assert_int_equal(cyrus_folder_index(f)->count, 3);
	cyrus_folder_close(&f);
	cyrus_account_free(&a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_index_versions),
		cmocka_unit_test(test_index_refused_versions),
		cmocka_unit_test(test_index_hostile),
		cmocka_unit_test(test_header_formats),
		cmocka_unit_test(test_seen_subs_mboxlist),
		cmocka_unit_test_setup_teardown(test_spool_legacy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spool_hashed_seen_subs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spool_uuid_layout, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
