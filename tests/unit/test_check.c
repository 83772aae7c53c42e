/* test_check.c: the preflight analysis and the generated Dovecot
 * configuration (src/sync/check) over constructed inventories. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "response.h"

#define F(n, a) { .name = (n), .name_len = sizeof(n) - 1, .attrs = (a), \
                  .selectable = true, .messages = 3 }

/* A Cyrus account in the legacy namespace. */
static const struct check_folder cyrus_folders[] = {
	F("INBOX", 0),
	F("INBOX.Sent", IMAP_MBOX_SENT),
	F("INBOX.Drafts", IMAP_MBOX_DRAFTS),
	F("INBOX.Trash", 0),                 /* by its name */
	F("INBOX.Archive.2019", 0),
};

static const struct check_side cyrus = {
	.store = CHECK_STORE_IMAP, .host = "old.example", .prefix = "INBOX.",
	.separator = '.', .folders = cyrus_folders,
	.count = sizeof(cyrus_folders) / sizeof(cyrus_folders[0]),
};

static const struct check_side dovecot_default = {
	.store = CHECK_STORE_IMAP, .host = "new.example", .prefix = "",
	.separator = '/',
};

static void
analyze(const struct check_input *in, struct check_report *r)
{
	struct foldermap *fm = foldermap_new(
	    &(struct foldermap_side){ in->src.separator, in->src.prefix },
	    &(struct foldermap_side){ in->dst.store == CHECK_STORE_MAILDIR ? '.' :
	                              in->dst.separator,
	                              in->dst.store == CHECK_STORE_MAILDIR ? "" :
	                              in->dst.prefix });

	check_analyze(in, fm, r);
	foldermap_free(&fm);
}

static const struct check_finding *
find(const struct check_report *r, const char *code, enum check_severity sev)
{
	for (size_t i = 0; i < r->count; i++)
		if (strcmp(r->items[i].code, code) == 0 && r->items[i].severity == sev)
			return &r->items[i];
	return NULL;
}

static bool
has_folder(const struct check_finding *f, const char *line)
{
	for (size_t i = 0; f != NULL && i < f->n_folders; i++)
		if (strcmp(f->folders[i], line) == 0)
			return true;
	return false;
}

static void
test_imap_target(void **state)
{
	struct check_input in = { .src = cyrus, .dst = dovecot_default };
	struct check_report r;
	const struct check_finding *f;

	(void)state;
	analyze(&in, &r);
	assert_true(check_report_noticed(&r));
	assert_int_equal(r.errors, 0);
	f = find(&r, "uids", CHECK_WARNING);
	assert_non_null(f);
	assert_int_equal(f->n_folders, 5);
	assert_int_equal(f->messages, 15);
	f = find(&r, "namespace", CHECK_WARNING);
	assert_non_null(f);
	assert_true(has_folder(f, "INBOX.Sent -> Sent"));
	assert_true(has_folder(f, "INBOX.Archive.2019 -> Archive/2019"));
	assert_false(has_folder(f, "INBOX -> INBOX"));
	assert_non_null(strstr(f->remedy, "dovecot-config"));
	f = find(&r, "special-use", CHECK_WARNING);
	assert_non_null(f);
	assert_true(has_folder(f, "INBOX.Sent (\\Sent)"));
	assert_true(has_folder(f, "INBOX.Drafts (\\Drafts)"));
	assert_true(has_folder(f, "INBOX.Trash (\\Trash, by its name)"));
	assert_non_null(find(&r, "pop3", CHECK_INFO));
	assert_non_null(find(&r, "host", CHECK_INFO));
	/* errors first, then warnings, then infos */
	for (size_t i = 1; i < r.count; i++)
		assert_true(r.items[i - 1].severity >= r.items[i].severity);
	check_report_free(&r);
}

static void
test_imap_target_same_namespace_special_use(void **state)
{
	static const struct check_folder dst_folders[] = {
		F("INBOX", 0),
		F("INBOX.Sent", IMAP_MBOX_SENT),
		F("INBOX.Drafts", IMAP_MBOX_DRAFTS),
		F("INBOX.Trash", IMAP_MBOX_TRASH),
	};
	struct check_input in = { .src = cyrus, .dst = cyrus };
	struct check_report r;

	(void)state;
	in.dst.folders = dst_folders;
	in.dst.count = 4;
	analyze(&in, &r);
	assert_non_null(find(&r, "uids", CHECK_WARNING));
	assert_null(find(&r, "namespace", CHECK_WARNING));
	assert_null(find(&r, "special-use", CHECK_WARNING));
	assert_null(find(&r, "host", CHECK_INFO));    /* the same host name */
	check_report_free(&r);
}

static void
test_maildir_target(void **state)
{
	struct check_input in = { .src = cyrus };
	struct check_report r;
	const struct check_finding *f;

	(void)state;
	in.dst.store = CHECK_STORE_MAILDIR;
	in.dst.flavor = MAILDIR_DOVECOT;
	analyze(&in, &r);
	assert_false(check_report_noticed(&r));
	assert_null(find(&r, "uids", CHECK_WARNING));
	f = find(&r, "namespace", CHECK_INFO);
	assert_non_null(f);
	assert_non_null(strstr(f->summary, "prefix \"INBOX.\", separator '.'"));
	assert_non_null(find(&r, "special-use", CHECK_INFO));
	check_report_free(&r);

	/* Courier-IMAP shows INBOX. and '.': nothing; a '/' source: a warning */
	in.dst.flavor = MAILDIR_COURIER;
	analyze(&in, &r);
	assert_null(find(&r, "namespace", CHECK_INFO));
	assert_null(find(&r, "namespace", CHECK_WARNING));
	check_report_free(&r);
	in.src.prefix = "";
	in.src.separator = '/';
	in.src.count = 1;
	analyze(&in, &r);
	assert_null(find(&r, "namespace", CHECK_WARNING)); /* INBOX alone: no path */
	check_report_free(&r);
}

static void
test_names(void **state)
{
	static char longname[320];
	struct check_folder folders[] = {
		F("INBOX", 0),
		F("INBOX.Party &2DzfiQ-", 0),       /* an emoji: outside the BMP */
		F("INBOX.Entw&APw-rfe", 0),         /* in the BMP */
		F("INBOX.Trash", 0),
		F("INBOX.trash", 0),
		{ .name = longname, .selectable = true },
	};
	struct check_input in = { .src = cyrus };
	struct check_report r;
	const struct check_finding *f;

	(void)state;
	memcpy(longname, "INBOX.", 6);
	memset(longname + 6, 'x', 300);
	folders[5].name_len = strlen(longname);
	in.src.folders = folders;
	in.src.count = 6;
	in.dst.store = CHECK_STORE_MAILDIR;
	in.dst.flavor = MAILDIR_COURIER;
	analyze(&in, &r);
	assert_true(check_report_noticed(&r));
	assert_true(r.errors >= 2);
	/* the emoji folder, and only it, for Courier-IMAP's LIST */
	f = NULL;
	for (size_t i = 0; i < r.count; i++)
		if (strstr(r.items[i].summary, "Basic Multilingual Plane") != NULL)
			f = &r.items[i];
	assert_non_null(f);
	assert_int_equal(f->severity, CHECK_ERROR);
	assert_int_equal(f->n_folders, 1);
	assert_string_equal(f->folders[0], "INBOX.Party \xf0\x9f\x8e\x89");
	/* too long for a Maildir++ directory */
	f = NULL;
	for (size_t i = 0; i < r.count; i++)
		if (strstr(r.items[i].summary, "cannot hold") != NULL)
			f = &r.items[i];
	assert_non_null(f);
	assert_int_equal(f->n_folders, 1);
	assert_non_null(strstr(f->folders[0], "xxxxx"));
	check_report_free(&r);

	/* an IMAP target that ignores case merges Trash and trash */
	in.dst = dovecot_default;
	in.dst.case_insensitive = true;
	in.src.count = 5;
	analyze(&in, &r);
	f = NULL;
	for (size_t i = 0; i < r.count; i++)
		if (strstr(r.items[i].summary, "only in case") != NULL)
			f = &r.items[i];
	assert_non_null(f);
	assert_int_equal(f->severity, CHECK_ERROR);
	assert_true(has_folder(f, "INBOX.Trash and INBOX.trash"));
	check_report_free(&r);
	/* the same target respecting case: no such finding */
	in.dst.case_insensitive = false;
	analyze(&in, &r);
	for (size_t i = 0; i < r.count; i++)
		assert_null(strstr(r.items[i].summary, "only in case"));
	assert_null(find(&r, "name", CHECK_ERROR));
	check_report_free(&r);
}

static void
test_appendlimit_and_keywords(void **state)
{
	static const uint64_t sizes[] = { 500, 2000, 1000, 3000 };
	static char *kw[] = { "$Forwarded", "Work", NULL };
	static char *perms[] = { "\\Seen", "\\Deleted", "$Forwarded", NULL };
	static char *perms_all[] = { "\\Seen", "\\*", NULL };
	struct check_folder src[] = { F("INBOX", 0), F("INBOX.Lists", 0) };
	struct check_folder dst[] = { F("INBOX", 0), F("Lists", 0) };
	struct check_input in = { .src = cyrus, .dst = dovecot_default };
	struct check_report r;
	const struct check_finding *f;

	(void)state;
	src[0].sizes = sizes;
	src[0].n_sizes = 4;
	src[0].keywords = kw;
	src[1].keywords = kw;
	dst[0].permanentflags = perms;
	dst[1].permanentflags = perms_all;
	in.src.folders = src;
	in.src.count = 2;
	in.dst.folders = dst;
	in.dst.count = 2;
	in.dst.appendlimit = 1000;
	analyze(&in, &r);
	f = find(&r, "appendlimit", CHECK_ERROR);
	assert_non_null(f);
	assert_int_equal(f->messages, 2);
	assert_true(has_folder(f, "INBOX: 2 messages"));
	assert_non_null(strstr(f->summary, "the largest has 3000 bytes"));
	f = find(&r, "keywords", CHECK_WARNING);
	assert_non_null(f);
	assert_int_equal(f->n_folders, 1);   /* Lists allows any keyword */
	assert_string_equal(f->folders[0], "INBOX: Work");
	check_report_free(&r);

	/* a folder not created yet: INBOX's PERMANENTFLAGS */
	in.dst.count = 1;
	in.dst.appendlimit = 0;
	in.dst.permanentflags = perms;
	analyze(&in, &r);
	assert_null(find(&r, "appendlimit", CHECK_ERROR));
	f = find(&r, "keywords", CHECK_WARNING);
	assert_non_null(f);
	assert_true(has_folder(f, "INBOX.Lists: Work (as INBOX's PERMANENTFLAGS)"));
	check_report_free(&r);
}

static void
test_dovecot_maildir_keywords(void **state)
{
	static char *kw[CHECK_DOVECOT_KEYWORDS_MAX + 2];
	static char names[CHECK_DOVECOT_KEYWORDS_MAX + 1][8];
	struct check_folder src[] = { F("INBOX", 0) };
	struct check_input in = { .src = cyrus };
	struct check_report r;
	const struct check_finding *f;

	(void)state;
	for (int i = 0; i <= CHECK_DOVECOT_KEYWORDS_MAX; i++) {
		snprintf(names[i], sizeof(names[i]), "kw%d", i);
		kw[i] = names[i];
	}
	src[0].keywords = kw;
	in.src.folders = src;
	in.src.count = 1;
	in.dst.store = CHECK_STORE_MAILDIR;
	in.dst.flavor = MAILDIR_DOVECOT;
	analyze(&in, &r);
	f = find(&r, "keywords", CHECK_WARNING);
	assert_non_null(f);
	assert_true(has_folder(f, "INBOX: 27 keywords"));
	check_report_free(&r);
	/* 26 fit */
	kw[CHECK_DOVECOT_KEYWORDS_MAX] = NULL;
	analyze(&in, &r);
	assert_null(find(&r, "keywords", CHECK_WARNING));
	check_report_free(&r);
	/* Courier keeps keywords in a file of their own: no limit */
	kw[CHECK_DOVECOT_KEYWORDS_MAX] = names[CHECK_DOVECOT_KEYWORDS_MAX];
	in.dst.flavor = MAILDIR_COURIER;
	analyze(&in, &r);
	assert_null(find(&r, "keywords", CHECK_WARNING));
	check_report_free(&r);
}

static void
test_pop3(void **state)
{
	struct check_input in = { .src = cyrus, .dst = dovecot_default,
	                          .src_pop3 = "pop3://alice@old.example" };
	struct check_report r;

	(void)state;
	analyze(&in, &r);
	assert_non_null(find(&r, "pop3", CHECK_WARNING));
	check_report_free(&r);
	in.dst = (struct check_side){ .store = CHECK_STORE_MAILDIR,
	                              .flavor = MAILDIR_DOVECOT };
	analyze(&in, &r);
	assert_null(find(&r, "pop3", CHECK_WARNING));
	assert_null(find(&r, "pop3", CHECK_INFO));
	check_report_free(&r);
}

static void
test_render(void **state)
{
	static const struct check_folder src[] = { F("INBOX", 0) };
	struct check_input in = { .src = cyrus, .dst = dovecot_default };
	struct check_report r;
	struct buf out;

	(void)state;
	in.src.folders = src;
	in.src.count = 1;
	in.src.host = NULL;
	analyze(&in, &r);
	buf_init(&out, 1 << 20);
	assert_int_equal(check_render_text(&r, &out), 0);
	assert_string_equal(buf_data(&out),
	    "warning uids: UIDVALIDITY and UIDs will change (an IMAP target "
	    "chooses them): every client throws its cache away and downloads "
	    "every folder again (3 messages)\n"
	    "        - INBOX\n"
	    "        remedy: copy into the new server's Maildir instead (DST "
	    "maildir:PATH[?flavor=courier], the transparent cutover): every "
	    "folder keeps its UIDVALIDITY and every message its UID\n"
	    "info    pop3: if the source serves POP3, the UIDLs POP3 clients "
	    "remember change unless they are kept; POP3 clients then download "
	    "every message again\n"
	    "        remedy: copy into the new server's Dovecot Maildir with "
	    "--src-pop3 pop3://USER@HOST\n"
	    "check: 0 errors, 1 warning, 1 info: clients will notice the switch\n");
	buf_reset(&out);
	assert_int_equal(check_render_json(&r, &out), 0);
	assert_non_null(strstr(buf_data(&out),
	    "{\"noticed\":true,\"errors\":0,\"warnings\":1,\"infos\":1,"
	    "\"findings\":[{\"severity\":\"warning\",\"code\":\"uids\","));
	assert_non_null(strstr(buf_data(&out),
	    "\"folders\":[\"INBOX\"],\"messages\":3,\"remedy\":"));
	buf_free(&out);
	check_report_free(&r);
}

static void
test_dovecot_config(void **state)
{
	struct buf out;

	(void)state;
	buf_init(&out, 1 << 20);
	assert_int_equal(check_dovecot_config(&cyrus, &out), 0);
	assert_string_equal(buf_data(&out),
	    "# Written by imapferry dovecot-config: Dovecot then shows the "
	    "migrated\n# Maildir as the old server showed the account. Include "
	    "it after conf.d/\n# (it overrides namespace inbox: prefix, "
	    "separator, special-use folders).\n"
	    "namespace inbox {\n"
	    "  inbox = yes\n"
	    "  prefix = INBOX.\n"
	    "  separator = .\n"
	    "  mailbox \"Sent\" {\n"
	    "    special_use = \\Sent\n"
	    "  }\n"
	    "  mailbox \"Drafts\" {\n"
	    "    special_use = \\Drafts\n"
	    "  }\n"
	    "  # special by its name only:\n"
	    "  mailbox \"Trash\" {\n"
	    "    special_use = \\Trash\n"
	    "  }\n"
	    "}\n"
	    "# POP3: messages copied with --src-pop3 keep the old server's UIDL "
	    "(the P field of\n# dovecot-uidlist, which Dovecot serves before "
	    "this format); new messages get:\n"
	    "pop3_uidl_format = %08Xu%08Xv\n");
	buf_free(&out);

	/* a default Dovecot: no prefix, '/'; a name with '"' is quoted */
	{
		static const struct check_folder f[] = {
			F("INBOX", 0), F("Sent \"Mail\"", IMAP_MBOX_SENT),
		};
		struct check_side side = { .prefix = "", .separator = '/',
		                           .folders = f, .count = 2 };

		buf_init(&out, 1 << 20);
		assert_int_equal(check_dovecot_config(&side, &out), 0);
		assert_non_null(strstr(buf_data(&out), "  prefix = \n  separator = /\n"
		    "  mailbox \"Sent \\\"Mail\\\"\" {\n    special_use = \\Sent\n"));
		buf_free(&out);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_imap_target),
		cmocka_unit_test(test_imap_target_same_namespace_special_use),
		cmocka_unit_test(test_maildir_target),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_appendlimit_and_keywords),
		cmocka_unit_test(test_dovecot_maildir_keywords),
		cmocka_unit_test(test_pop3),
		cmocka_unit_test(test_render),
		cmocka_unit_test(test_dovecot_config),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
