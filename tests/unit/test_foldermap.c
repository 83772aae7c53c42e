/* test_foldermap.c: folder-name mapping between servers (src/sync/foldermap). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "foldermap.h"
#include "response.h"

static const struct foldermap_side courier = { '.', "INBOX." };
static const struct foldermap_side dovecot_slash = { '/', "" };
static const struct foldermap_side dovecot_dot = { '.', "" };
static const struct foldermap_side flat = { '\0', "" };

/* A wire name with its length, so that names may hold NUL. */
#define W(s) .wire = (s), .len = sizeof(s) - 1

struct map_case {
	const char *wire;
	size_t len;
	unsigned attrs;
	int ret;                /* 0 or -1 */
	const char *logical;
	const char *dst;        /* NULL: excluded */
	const char *note;       /* NULL: none */
	unsigned special;
	enum foldermap_via via;
};

#define NOTE_UTF7 "invalid modified UTF-7 kept as bytes"
#define NOTE_SLASH "'/' in a name component replaced by '_'"
#define NOTE_DOT "'.' in a name component replaced by '_'"
#define NOTE_EMPTY "empty name component dropped"
#define NOTE_DOTDOT "component '..' renamed '__'"
#define NOTE_CTRL "control character replaced by '_'"
#define NOTE_FLAT "no hierarchy on the destination: '/' replaced by '_'"
#define NOTE_TAKEN(n) "destination name already used by another folder: '~" n "' appended"

static bool
str_same(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Checks one result against a case; reports the case on mismatch. */
static void
check_result(const char *table, size_t i, const struct map_case *c, int ret,
             const struct foldermap_result *r, const char *error)
{
	bool ok = ret == c->ret;

	if (ok && ret == 0) {
		ok = str_same(r->logical, c->logical) && str_same(r->dst_wire, c->dst) &&
		     str_same(r->note, c->note) && r->special_use == c->special &&
		     r->via == c->via && r->excluded == (c->dst == NULL);
	}
	if (!ok) {
		print_error("%s case %zu: ret %d (want %d)%s%s\n"
		            "  logical [%s] want [%s]\n  dst [%s] want [%s]\n"
		            "  note [%s] want [%s]\n  special %#x want %#x, via %d want %d\n",
		            table, i, ret, c->ret, ret < 0 ? " error: " : "",
		            ret < 0 ? error : "",
		            r->logical ? r->logical : "(null)", c->logical ? c->logical : "(null)",
		            r->dst_wire ? r->dst_wire : "(null)", c->dst ? c->dst : "(null)",
		            r->note ? r->note : "(null)", c->note ? c->note : "(null)",
		            r->special_use, c->special, r->via, c->via);
		fail();
	}
	if (ret < 0) {
		assert_non_null(error);
		assert_null(r->logical);
		assert_null(r->dst_wire);
		assert_null(r->note);
	}
}

static void
run_cases(const char *table, struct foldermap *fm, const struct map_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct foldermap_result r;
		const char *error = NULL;
		int ret;

		ret = foldermap_map(fm, cases[i].wire, cases[i].len, cases[i].attrs, &r, &error);
		check_result(table, i, &cases[i], ret, &r, error);
		foldermap_result_free(&r);
	}
}

/* ---- Cyrus / Courier legacy -> Dovecot '/' ---- */

static const struct map_case courier_to_dovecot[] = {
	{ W("INBOX"), .logical = "INBOX", .dst = "INBOX" },
	{ W("inbox"), .logical = "INBOX", .dst = "INBOX" },
	{ W("INBOX.Sent"), .logical = "Sent", .dst = "Sent", .special = IMAP_MBOX_SENT },
	{ W("INBOX.Archive.2019"), .logical = "Archive/2019", .dst = "Archive/2019" },
	{ W("INBOX.Listes.&APw-n&AO8-code"), .logical = "Listes/\xc3\xbcn\xc3\xaf" "code",
	  .dst = "Listes/&APw-n&AO8-code" },
	{ W("INBOX.Projects.Beta &- Co"), .logical = "Projects/Beta & Co",
	  .dst = "Projects/Beta &- Co" },
	{ W("INBOX.Envoy&AOk-s"), .logical = "Envoy\xc3\xa9s", .dst = "Envoy&AOk-s",
	  .special = IMAP_MBOX_SENT },
	{ W("inbox.Drafts"), .logical = "Drafts", .dst = "Drafts", .special = IMAP_MBOX_DRAFTS },
	/* '/' is not a separator on Courier: no hierarchy from it. */
	{ W("INBOX.a/b"), .logical = "a_b", .dst = "a_b", .note = NOTE_SLASH },
	{ W("INBOX.a..b"), .logical = "a//b", .dst = "a/b", .note = NOTE_EMPTY },
	{ W("INBOX.../../etc"), .logical = "//_//_etc", .dst = "_/_etc",
	  .note = NOTE_SLASH "; " NOTE_EMPTY },
	/* Outside the personal namespace: kept whole. */
	{ W("user.bob.x"), .logical = "user/bob/x", .dst = "user/bob/x" },
	{ W("INBOX."), .ret = -1 },
	{ W("INBOX.."), .ret = -1 },
	/* A folder called INBOX under INBOX collides with the real one. */
	{ W("INBOX.INBOX"), .logical = "INBOX", .dst = "INBOX~2", .note = NOTE_TAKEN("2") },
	{ W("INBOX.inbox"), .logical = "inbox", .dst = "inbox~2", .note = NOTE_TAKEN("2") },
};

static void
test_courier_to_dovecot(void **state)
{
	struct foldermap *fm = foldermap_new(&courier, &dovecot_slash);

	(void)state;
	run_cases("courier_to_dovecot", fm, courier_to_dovecot, N_ELEMENTS(courier_to_dovecot));
	foldermap_free(&fm);
	assert_null(fm);
}

/* ---- Dovecot '/' -> Courier ---- */

static const struct map_case dovecot_to_courier[] = {
	{ W("INBOX"), .logical = "INBOX", .dst = "INBOX" },
	{ W("Sent"), .logical = "Sent", .dst = "INBOX.Sent", .special = IMAP_MBOX_SENT },
	{ W("Archive/2019"), .logical = "Archive/2019", .dst = "INBOX.Archive.2019" },
	{ W("INBOX/foo"), .logical = "INBOX/foo", .dst = "INBOX.foo" },
	{ W("inbox/bar"), .logical = "INBOX/bar", .dst = "INBOX.bar" },
	{ W("a.b"), .logical = "a.b", .dst = "INBOX.a_b", .note = NOTE_DOT },
	{ W("Listes/&APw-n&AO8-code"), .logical = "Listes/\xc3\xbcn\xc3\xaf" "code",
	  .dst = "INBOX.Listes.&APw-n&AO8-code" },
	{ W("Projects/Beta &- Co"), .logical = "Projects/Beta & Co",
	  .dst = "INBOX.Projects.Beta &- Co" },
	/* "INBOX/foo" already took INBOX.foo. */
	{ W("foo"), .logical = "foo", .dst = "INBOX.foo~2", .note = NOTE_TAKEN("2") },
};

static void
test_dovecot_to_courier(void **state)
{
	struct foldermap *fm = foldermap_new(&dovecot_slash, &courier);

	(void)state;
	run_cases("dovecot_to_courier", fm, dovecot_to_courier, N_ELEMENTS(dovecot_to_courier));
	foldermap_free(&fm);
}

/* ---- Dovecot '/' -> Dovecot '.' ---- */

static const struct map_case slash_to_dot[] = {
	{ W("a.b/c"), .logical = "a.b/c", .dst = "a_b.c", .note = NOTE_DOT },
	{ W("x/y"), .logical = "x/y", .dst = "x.y" },
	{ W("1.2.3"), .logical = "1.2.3", .dst = "1_2_3", .note = NOTE_DOT },
	{ W("INBOX/x"), .logical = "INBOX/x", .dst = "INBOX.x" },
};

static void
test_slash_to_dot(void **state)
{
	struct foldermap *fm = foldermap_new(&dovecot_slash, &dovecot_dot);

	(void)state;
	run_cases("slash_to_dot", fm, slash_to_dot, N_ELEMENTS(slash_to_dot));
	foldermap_free(&fm);
}

/* ---- hostile names, Dovecot '/' -> Dovecot '.' (Maildir++ style) ---- */

static const struct map_case hostile[] = {
	{ W("../../etc"), .logical = "../../etc", .dst = "__.__.etc", .note = NOTE_DOTDOT },
	{ W("a/../b"), .logical = "a/../b", .dst = "a.__.b", .note = NOTE_DOTDOT },
	{ W(".."), .logical = "..", .dst = "__", .note = NOTE_DOTDOT },
	{ W("."), .logical = ".", .dst = "_", .note = "component '.' renamed '_'" },
	{ W("a/./b"), .logical = "a/./b", .dst = "a._.b", .note = "component '.' renamed '_'" },
	{ W(""), .ret = -1 },
	{ W("/"), .ret = -1 },
	{ W("//"), .ret = -1 },
	{ W("a//b"), .logical = "a//b", .dst = "a.b", .note = NOTE_EMPTY },
	{ W("/c/"), .logical = "/c/", .dst = "c", .note = NOTE_EMPTY },
	{ W("n\0ul"), .logical = "n_00ul", .dst = "n_00ul", .note = NOTE_UTF7 },
	{ W("\0"), .logical = "_00", .dst = "_00", .note = NOTE_UTF7 },
	{ W("\x01"), .logical = "_01", .dst = "_01", .note = NOTE_UTF7 },
	{ W("d\x7f"), .logical = "d_7F", .dst = "d_7F", .note = NOTE_UTF7 },
	{ W("&Jjo!"), .logical = "&Jjo!", .dst = "&-Jjo!", .note = NOTE_UTF7 },
	{ W("&U,BTFw"), .logical = "&U,BTFw", .dst = "&-U,BTFw", .note = NOTE_UTF7 },
	{ W("&AGE-"), .logical = "&AGE-", .dst = "&-AGE-", .note = NOTE_UTF7 },
	{ W("ok/&Jjo!/x"), .logical = "ok/&Jjo!/x", .dst = "ok.&-Jjo!.x", .note = NOTE_UTF7 },
	/* Valid mUTF-7 for U+0001: decodes, then cleaned on the way out. */
	{ W("&AAE-"), .logical = "\x01", .dst = "_~2",
	  .note = NOTE_CTRL "; " NOTE_TAKEN("2") },
	/* Raw 8-bit names: UTF-8 is kept, anything else escaped. */
	{ W("caf\xc3\xa9"), .logical = "caf\xc3\xa9", .dst = "caf&AOk-", .note = NOTE_UTF7 },
	{ W("caf\xe9"), .logical = "caf_E9", .dst = "caf_E9", .note = NOTE_UTF7 },
	{ W("\xff\xfe"), .logical = "_FF_FE", .dst = "_FF_FE", .note = NOTE_UTF7 },
	/* The escape of "\x01" above is now taken. */
	{ W("_01"), .logical = "_01", .dst = "_01~2", .note = NOTE_TAKEN("2") },
};

static void
test_hostile(void **state)
{
	struct foldermap *fm = foldermap_new(&dovecot_slash, &dovecot_dot);

	(void)state;
	run_cases("hostile", fm, hostile, N_ELEMENTS(hostile));
	foldermap_free(&fm);
}

static void
test_long_names(void **state)
{
	struct foldermap *fm = foldermap_new(&courier, &dovecot_slash);
	size_t big = FOLDERMAP_NAME_MAX + 1;
	char *wire = malloc(big + 1), *want = malloc(2001);
	struct foldermap_result r;
	const char *error = NULL;

	(void)state;
	memcpy(wire, "INBOX.", 6);
	memset(wire + 6, 'x', 2000);
	memset(want, 'x', 2000);
	want[2000] = '\0';
	assert_int_equal(foldermap_map(fm, wire, 2006, 0, &r, &error), 0);
	assert_string_equal(r.logical, want);
	assert_string_equal(r.dst_wire, want);
	assert_null(r.note);
	foldermap_result_free(&r);

	memset(wire + 6, 'y', big - 6);
	assert_int_equal(foldermap_map(fm, wire, big, 0, &r, &error), -1);
	assert_non_null(strstr(error, "too long"));
	assert_null(r.logical);
	free(wire);
	free(want);
	foldermap_free(&fm);
}

/* ---- collisions ---- */

static const struct map_case collide[] = {
	{ W("a.b"), .logical = "a.b", .dst = "a_b", .note = NOTE_DOT },
	{ W("a_b"), .logical = "a_b", .dst = "a_b~2", .note = NOTE_TAKEN("2") },
	/* The same source again: the same answer, no new suffix. */
	{ W("a.b"), .logical = "a.b", .dst = "a_b", .note = NOTE_DOT },
	{ W("a_b"), .logical = "a_b", .dst = "a_b~2", .note = NOTE_TAKEN("2") },
	{ W("a_b~2"), .logical = "a_b~2", .dst = "a_b~2~2", .note = NOTE_TAKEN("2") },
	{ W("a..b"), .logical = "a..b", .dst = "a__b", .note = NOTE_DOT },
	{ W("a/.b"), .logical = "a/.b", .dst = "a._b", .note = NOTE_DOT },
	{ W("a/_b"), .logical = "a/_b", .dst = "a._b~2", .note = NOTE_TAKEN("2") },
	{ W("a:_b"), .logical = "a:_b", .dst = "a:_b" },
	{ W("a/:b"), .logical = "a/:b", .dst = "a.:b" },
	{ W("x.y"), .logical = "x.y", .dst = "x_y", .note = NOTE_DOT },
	{ W("x_y~2"), .logical = "x_y~2", .dst = "x_y~2" },
	{ W("x_y"), .logical = "x_y", .dst = "x_y~3", .note = NOTE_TAKEN("3") },
};

static void
test_collisions(void **state)
{
	struct foldermap *fm = foldermap_new(&dovecot_slash, &dovecot_dot);

	(void)state;
	run_cases("collide", fm, collide, N_ELEMENTS(collide));
	foldermap_free(&fm);
}

/* ---- special use ---- */

static const struct map_case special_attr[] = {
	{ W("Sent Items"), .attrs = IMAP_MBOX_SENT | IMAP_MBOX_HASCHILDREN,
	  .logical = "Sent Items", .dst = "Sent", .special = IMAP_MBOX_SENT,
	  .via = FOLDERMAP_VIA_SPECIAL },
	{ W("Sent Items/2019"), .logical = "Sent Items/2019", .dst = "Sent/2019",
	  .via = FOLDERMAP_VIA_SPECIAL },
	{ W("Sent Items/a.b"), .logical = "Sent Items/a.b", .dst = "Sent/a.b",
	  .via = FOLDERMAP_VIA_SPECIAL },
	/* Only one source folder per kind: this one keeps its name,
	 * which "Sent Items" now holds. */
	{ W("Sent"), .logical = "Sent", .dst = "Sent~2", .note = NOTE_TAKEN("2"),
	  .special = IMAP_MBOX_SENT },
	{ W("Deleted Items"), .logical = "Deleted Items", .dst = "Trash",
	  .special = IMAP_MBOX_TRASH, .via = FOLDERMAP_VIA_SPECIAL },
	{ W("Deleted Items/old"), .logical = "Deleted Items/old", .dst = "Trash/old",
	  .via = FOLDERMAP_VIA_SPECIAL },
	{ W("Foo/Sent"), .logical = "Foo/Sent", .dst = "Foo/Sent" },
	/* No \Drafts on the destination: identity. */
	{ W("Drafts"), .logical = "Drafts", .dst = "Drafts", .special = IMAP_MBOX_DRAFTS },
	/* \All is recognized, never redirected. */
	{ W("All Mail"), .attrs = IMAP_MBOX_ALL, .logical = "All Mail", .dst = "All Mail",
	  .special = IMAP_MBOX_ALL },
	{ W("[Gmail]/Spam"), .attrs = IMAP_MBOX_JUNK, .logical = "[Gmail]/Spam",
	  .dst = "Junk", .special = IMAP_MBOX_JUNK, .via = FOLDERMAP_VIA_SPECIAL },
	{ W("[Gmail]/Spam/x"), .logical = "[Gmail]/Spam/x", .dst = "Junk/x",
	  .via = FOLDERMAP_VIA_SPECIAL },
};

static void
test_special_by_attr(void **state)
{
	struct foldermap *fm = foldermap_new(&dovecot_slash, &dovecot_slash);

	(void)state;
	foldermap_set_dst_special(fm, IMAP_MBOX_SENT, "Sent");
	foldermap_set_dst_special(fm, IMAP_MBOX_TRASH, "Old Trash");
	foldermap_set_dst_special(fm, IMAP_MBOX_TRASH, "Trash");   /* replaces */
	foldermap_set_dst_special(fm, IMAP_MBOX_JUNK, "Junk");
	foldermap_set_dst_special(fm, IMAP_MBOX_ALL, "All");      /* ignored */
	run_cases("special_attr", fm, special_attr, N_ELEMENTS(special_attr));
	foldermap_free(&fm);
}

static const struct map_case special_name[] = {
	/* A child listed before its parent still follows it. */
	{ W("INBOX.Sent Messages.Old"), .logical = "Sent Messages/Old", .dst = "Sent/Old",
	  .via = FOLDERMAP_VIA_SPECIAL },
	{ W("INBOX.Sent Messages"), .logical = "Sent Messages", .dst = "Sent",
	  .special = IMAP_MBOX_SENT, .via = FOLDERMAP_VIA_SPECIAL },
	{ W("INBOX.SPAM"), .logical = "SPAM", .dst = "Junk",
	  .special = IMAP_MBOX_JUNK, .via = FOLDERMAP_VIA_SPECIAL },
	{ W("INBOX.Archive.Sent"), .logical = "Archive/Sent", .dst = "Archive/Sent" },
	{ W("INBOX.Corbeille.a/b"), .logical = "Corbeille/a_b", .dst = "Trash/a_b",
	  .note = NOTE_SLASH, .via = FOLDERMAP_VIA_SPECIAL },
};

static void
test_special_by_name(void **state)
{
	struct foldermap *fm = foldermap_new(&courier, &dovecot_slash);

	(void)state;
	foldermap_set_dst_special(fm, IMAP_MBOX_SENT, "Sent");
	foldermap_set_dst_special(fm, IMAP_MBOX_JUNK, "Junk");
	foldermap_set_dst_special(fm, IMAP_MBOX_TRASH, "Trash");
	run_cases("special_name", fm, special_name, N_ELEMENTS(special_name));
	foldermap_free(&fm);
}

static const struct map_case special_to_courier[] = {
	{ W("Sent Items/2019"), .logical = "Sent Items/2019", .dst = "INBOX.Sent.2019",
	  .via = FOLDERMAP_VIA_SPECIAL },
	{ W("Sent Items"), .logical = "Sent Items", .dst = "INBOX.Sent",
	  .special = IMAP_MBOX_SENT, .via = FOLDERMAP_VIA_SPECIAL },
	{ W("Sent Items/v1.2"), .logical = "Sent Items/v1.2", .dst = "INBOX.Sent.v1_2",
	  .note = NOTE_DOT, .via = FOLDERMAP_VIA_SPECIAL },
};

static void
test_special_to_courier(void **state)
{
	struct foldermap *fm = foldermap_new(&dovecot_slash, &courier);

	(void)state;
	foldermap_set_dst_special(fm, IMAP_MBOX_SENT, "INBOX.Sent");
	run_cases("special_to_courier", fm, special_to_courier, N_ELEMENTS(special_to_courier));
	foldermap_free(&fm);
}

/* ---- --map rules ---- */

static const struct map_case rules[] = {
	{ W("Old"), .logical = "Old", .dst = "New", .via = FOLDERMAP_VIA_RULE },
	{ W("Old/x"), .logical = "Old/x", .dst = "New/x", .via = FOLDERMAP_VIA_RULE },
	{ W("Old/x/y"), .logical = "Old/x/y", .dst = "New/x/y", .via = FOLDERMAP_VIA_RULE },
	{ W("Older"), .logical = "Older", .dst = "Older" },
	{ W("old"), .logical = "old", .dst = "old" },
	{ W("Archive/2019"), .logical = "Archive/2019", .dst = "Old Archive/2019",
	  .via = FOLDERMAP_VIA_RULE },
	{ W("Archive/2019x"), .logical = "Archive/2019x", .dst = "Misc",
	  .via = FOLDERMAP_VIA_RULE },
	{ W("a=b"), .logical = "a=b", .dst = "c=d", .via = FOLDERMAP_VIA_RULE },
	/* Anchoring: the whole name, leftmost-longest. */
	{ W("xy"), .logical = "xy", .dst = "Z", .via = FOLDERMAP_VIA_RULE },
	{ W("xyz"), .logical = "xyz", .dst = "xyz" },
	{ W("b"), .logical = "b", .dst = "Q", .via = FOLDERMAP_VIA_RULE },
	{ W("bc"), .logical = "bc", .dst = "bc" },
	{ W("k&-1"), .logical = "k&1", .dst = "\\k&-1", .via = FOLDERMAP_VIA_RULE },
	/* Rule output is cleaned like any name. */
	{ W("dots"), .logical = "dots", .dst = "x/__/y", .note = NOTE_DOTDOT,
	  .via = FOLDERMAP_VIA_RULE },
	{ W("gone"), .ret = -1 },
	/* Merging by rule is refused too. */
	{ W("Misc2"), .logical = "Misc2", .dst = "Misc~2", .note = NOTE_TAKEN("2"),
	  .via = FOLDERMAP_VIA_RULE },
};

static void
test_rules(void **state)
{
	static const char *const good[] = {
		"Old=New", "Old=Other", "Archive/([0-9]{4})=Old Archive/\\1",
		"Archive/.*=Misc", "a\\=b=c=d", "x|xy=Z", "a)|b=Q",
		"(k)&1=\\\\\\1&1", "dots=x/../y", "gone=/", "Misc2=Misc",
	};
	static const char *const bad[] = {
		"nomapping", "=x", "x=", "a(=b", "a=\\1", "(a)=\\2", "a=b\\x", "a=b\\",
		"[z=y",
	};
	struct foldermap *fm = foldermap_new(&dovecot_slash, &dovecot_slash);
	const char *error;

	(void)state;
	for (size_t i = 0; i < N_ELEMENTS(good); i++) {
		error = NULL;
		if (foldermap_add_rule(fm, good[i], &error) != 0)
			fail_msg("rule %s: %s", good[i], error);
	}
	for (size_t i = 0; i < N_ELEMENTS(bad); i++) {
		error = NULL;
		assert_int_equal(foldermap_add_rule(fm, bad[i], &error), -1);
		assert_non_null(error);
		assert_non_null(strstr(error, "--map"));
	}
	error = NULL;
	assert_int_equal(foldermap_add_rule(fm, "a(=b", &error), -1);
	assert_non_null(strstr(error, "bad regular expression"));
	run_cases("rules", fm, rules, N_ELEMENTS(rules));
	foldermap_free(&fm);
}

/* Rules come before special use. */
static void
test_rule_before_special(void **state)
{
	static const struct map_case cases[] = {
		{ W("INBOX.Sent"), .logical = "Sent", .dst = "Sent/Old",
		  .special = IMAP_MBOX_SENT, .via = FOLDERMAP_VIA_RULE },
		{ W("INBOX.Sent Items"), .logical = "Sent Items", .dst = "Sent",
		  .attrs = IMAP_MBOX_SENT, .special = IMAP_MBOX_SENT,
		  .via = FOLDERMAP_VIA_SPECIAL },
		/* A rule that makes INBOX: the real one holds it already. */
		{ W("INBOX"), .logical = "INBOX", .dst = "INBOX" },
		{ W("INBOX.Old Inbox"), .logical = "Old Inbox", .dst = "INBOX~2",
		  .note = NOTE_TAKEN("2"), .via = FOLDERMAP_VIA_RULE },
	};
	struct foldermap *fm = foldermap_new(&courier, &dovecot_slash);
	const char *error;

	(void)state;
	foldermap_set_dst_special(fm, IMAP_MBOX_SENT, "Sent");
	assert_int_equal(foldermap_add_rule(fm, "Sent=Sent/Old", &error), 0);
	assert_int_equal(foldermap_add_rule(fm, "Old Inbox=INBOX", &error), 0);
	run_cases("rule_before_special", fm, cases, N_ELEMENTS(cases));
	foldermap_free(&fm);

	/* The "~N" of INBOX stays inside a destination prefix. */
	fm = foldermap_new(&dovecot_slash, &courier);
	assert_int_equal(foldermap_add_rule(fm, "Old Inbox=INBOX", &error), 0);
	{
		static const struct map_case c2[] = {
			{ W("INBOX"), .logical = "INBOX", .dst = "INBOX" },
			{ W("Old Inbox"), .logical = "Old Inbox", .dst = "INBOX.INBOX~2",
			  .note = NOTE_TAKEN("2"), .via = FOLDERMAP_VIA_RULE },
		};
		run_cases("rule_inbox_courier", fm, c2, N_ELEMENTS(c2));
	}
	foldermap_free(&fm);
}

/* ---- --include / --exclude ---- */

static const struct map_case filters[] = {
	{ W("INBOX"), .logical = "INBOX", .dst = "INBOX" },
	{ W("Archive/2019"), .logical = "Archive/2019", .dst = "Archive/2019" },
	{ W("Archive/2018"), .logical = "Archive/2018", .via = FOLDERMAP_VIA_EXCLUDED },
	{ W("Archive"), .logical = "Archive", .dst = "Archive", .special = IMAP_MBOX_ARCHIVE },
	{ W("Sent"), .logical = "Sent", .special = IMAP_MBOX_SENT,
	  .via = FOLDERMAP_VIA_EXCLUDED },
	{ W("My Archive"), .logical = "My Archive", .via = FOLDERMAP_VIA_EXCLUDED },
};

static void
test_include_exclude(void **state)
{
	struct foldermap *fm = foldermap_new(&dovecot_slash, &dovecot_slash);
	const char *error = NULL;

	(void)state;
	assert_int_equal(foldermap_add_include(fm, "^Arch", &error), 0);
	assert_int_equal(foldermap_add_include(fm, "^INBOX$", &error), 0);
	assert_int_equal(foldermap_add_exclude(fm, "2018", &error), 0);
	assert_int_equal(foldermap_add_include(fm, "(", &error), -1);
	assert_non_null(strstr(error, "--include"));
	assert_int_equal(foldermap_add_exclude(fm, "[", &error), -1);
	assert_non_null(strstr(error, "--exclude"));
	run_cases("filters", fm, filters, N_ELEMENTS(filters));
	foldermap_free(&fm);

	/* Exclude alone keeps everything else. */
	fm = foldermap_new(&courier, &dovecot_slash);
	assert_int_equal(foldermap_add_exclude(fm, "^Trash", &error), 0);
	{
		static const struct map_case c2[] = {
			{ W("INBOX.Trash"), .logical = "Trash", .special = IMAP_MBOX_TRASH,
			  .via = FOLDERMAP_VIA_EXCLUDED },
			{ W("INBOX.Trash.x"), .logical = "Trash/x", .via = FOLDERMAP_VIA_EXCLUDED },
			{ W("INBOX.NoTrash"), .logical = "NoTrash", .dst = "NoTrash" },
		};
		run_cases("exclude_only", fm, c2, N_ELEMENTS(c2));
	}
	foldermap_free(&fm);
}

/* ---- flat sides ---- */

static void
test_flat(void **state)
{
	static const struct map_case to_flat[] = {
		{ W("Archive/2019"), .logical = "Archive/2019", .dst = "Archive_2019",
		  .note = NOTE_FLAT },
		{ W("INBOX/x"), .logical = "INBOX/x", .dst = "INBOX_x", .note = NOTE_FLAT },
		{ W("a.b"), .logical = "a.b", .dst = "a.b" },
		{ W("Sent Items/2019"), .logical = "Sent Items/2019", .dst = "Sent_2019",
		  .note = NOTE_FLAT, .via = FOLDERMAP_VIA_SPECIAL },
	};
	static const struct map_case from_flat[] = {
		{ W("a/b"), .logical = "a_b", .dst = "a_b", .note = NOTE_SLASH },
		{ W("a.b"), .logical = "a.b", .dst = "a.b" },
		{ W("INBOX"), .logical = "INBOX", .dst = "INBOX" },
	};
	struct foldermap *fm = foldermap_new(&dovecot_slash, &flat);

	(void)state;
	foldermap_set_dst_special(fm, IMAP_MBOX_SENT, "Sent");
	run_cases("to_flat", fm, to_flat, N_ELEMENTS(to_flat));
	foldermap_free(&fm);
	fm = foldermap_new(&flat, &dovecot_slash);
	run_cases("from_flat", fm, from_flat, N_ELEMENTS(from_flat));
	foldermap_free(&fm);
}

/* ---- map_list: independent of the LIST order ---- */

struct list_want {
	const char *logical, *dst, *note;
	enum foldermap_via via;
};

static void
check_list(const char *table, const struct foldermap_side *src,
           const struct foldermap_side *dst, const char *sent,
           const struct foldermap_input *in, const struct list_want *want, size_t n)
{
	size_t perm[8], i, p;
	struct foldermap_result res[8];

	assert_true(n <= 8);
	/* Forward, reversed and rotated. */
	for (p = 0; p < 3; p++) {
		struct foldermap_input shuffled[8];
		struct foldermap *fm = foldermap_new(src, dst);

		if (sent != NULL)
			foldermap_set_dst_special(fm, IMAP_MBOX_SENT, sent);
		for (i = 0; i < n; i++) {
			perm[i] = p == 0 ? i : p == 1 ? n - 1 - i : (i + 1) % n;
			shuffled[i] = in[perm[i]];
		}
		foldermap_map_list(fm, shuffled, n, res);
		for (i = 0; i < n; i++) {
			const struct list_want *w = &want[perm[i]];
			const struct foldermap_result *r = &res[i];

			if (!str_same(r->logical, w->logical) || !str_same(r->dst_wire, w->dst) ||
			    !str_same(r->note, w->note) || r->via != w->via) {
				print_error("%s order %zu item %zu: logical [%s] dst [%s] note [%s] via %d\n",
				            table, p, perm[i], r->logical ? r->logical : "(null)",
				            r->dst_wire ? r->dst_wire : "(null)",
				            r->note ? r->note : "(null)", r->via);
				fail();
			}
		}
		for (i = 0; i < n; i++)
			foldermap_result_free(&res[i]);
		foldermap_free(&fm);
	}
}

static void
test_map_list(void **state)
{
	static const struct foldermap_input in1[] = {
		{ "a.b", 3, 0 }, { "a_b", 3, 0 }, { "", 0, 0 }, { "c", 1, 0 },
	};
	static const struct list_want want1[] = {
		{ "a.b", "a_b~2", NOTE_DOT "; " NOTE_TAKEN("2"), FOLDERMAP_VIA_IDENTITY },
		{ "a_b", "a_b", NULL, FOLDERMAP_VIA_IDENTITY },
		{ "", NULL, "folder name is empty once empty components are removed",
		  FOLDERMAP_VIA_FAILED },
		{ "c", "c", NULL, FOLDERMAP_VIA_IDENTITY },
	};
	/* No attributes: "Sent" is preferred to "Sent Messages". */
	static const struct foldermap_input in2[] = {
		{ "INBOX.Sent Messages", 19, 0 }, { "INBOX.Sent.Old", 14, 0 },
		{ "INBOX.Sent", 10, 0 }, { "INBOX", 5, 0 },
	};
	static const struct list_want want2[] = {
		{ "Sent Messages", "Sent Messages", NULL, FOLDERMAP_VIA_IDENTITY },
		{ "Sent/Old", "Sent/Old", NULL, FOLDERMAP_VIA_SPECIAL },
		{ "Sent", "Sent", NULL, FOLDERMAP_VIA_SPECIAL },
		{ "INBOX", "INBOX", NULL, FOLDERMAP_VIA_IDENTITY },
	};
	/* The attribute wins over the name; the special folder gets its
	 * destination before the plain "Sent". */
	static const struct foldermap_input in3[] = {
		{ "INBOX.Sent Messages", 19, IMAP_MBOX_SENT }, { "INBOX.Sent.Old", 14, 0 },
		{ "INBOX.Sent", 10, 0 }, { "INBOX.Sent Messages.x", 21, 0 },
	};
	static const struct list_want want3[] = {
		{ "Sent Messages", "Sent", NULL, FOLDERMAP_VIA_SPECIAL },
		{ "Sent/Old", "Sent/Old", NULL, FOLDERMAP_VIA_IDENTITY },
		{ "Sent", "Sent~2", NOTE_TAKEN("2"), FOLDERMAP_VIA_IDENTITY },
		{ "Sent Messages/x", "Sent/x", NULL, FOLDERMAP_VIA_SPECIAL },
	};

	(void)state;
	check_list("list1", &dovecot_slash, &dovecot_dot, NULL, in1, want1, N_ELEMENTS(in1));
	check_list("list2", &courier, &dovecot_slash, "Sent", in2, want2, N_ELEMENTS(in2));
	check_list("list3", &courier, &dovecot_slash, "Sent", in3, want3, N_ELEMENTS(in3));
}

/* ---- the helpers on their own ---- */

static void
test_helpers(void **state)
{
	static const struct {
		const struct foldermap_side *side;
		const char *logical, *wire, *note;
	} to_wire[] = {
		{ &courier, "INBOX", "INBOX", NULL },
		{ &courier, "Sent", "INBOX.Sent", NULL },
		{ &courier, "INBOX/a/b", "INBOX.a.b", NULL },
		{ &courier, "INBOXES", "INBOX.INBOXES", NULL },
		{ &courier, "a\xff", "INBOX.a_FF", "invalid UTF-8 escaped" },
		{ &courier, "a\xc3", "INBOX.a_C3", "invalid UTF-8 escaped" },
		{ &courier, "\xed\xa0\x80", "INBOX._ED_A0_80", "invalid UTF-8 escaped" },
		{ &courier, "a\tb/", "INBOX.a_b", NOTE_CTRL "; " NOTE_EMPTY },
		{ &dovecot_slash, "\xe2\x82\xac 100", "&IKw- 100", NULL },
		{ &dovecot_slash, "\xf0\x9f\x93\xa7", "&2D3c5w-", NULL },
		{ &flat, "a/b", "a_b", NOTE_FLAT },
	};
	char *out, *note;
	const char *error;

	(void)state;
	for (size_t i = 0; i < N_ELEMENTS(to_wire); i++) {
		assert_int_equal(foldermap_logical_to_wire(to_wire[i].side, to_wire[i].logical,
		                                           &out, &note, &error), 0);
		if (!str_same(out, to_wire[i].wire) || !str_same(note, to_wire[i].note))
			fail_msg("to_wire %zu: [%s] [%s]", i, out, note ? note : "(null)");
		free(out);
		free(note);
	}
	assert_int_equal(foldermap_logical_to_wire(&courier, "//", &out, &note, &error), -1);
	assert_int_equal(foldermap_wire_to_logical(&courier, "INBOX.x.&2D3c5w-", 16,
	                                           &out, &note, &error), 0);
	assert_string_equal(out, "x/\xf0\x9f\x93\xa7");
	assert_null(note);
	free(out);
	/* NULL prefix means "". */
	{
		struct foldermap_side s = { '/', NULL };

		assert_int_equal(foldermap_wire_to_logical(&s, "a/b", 3, &out, &note, &error), 0);
		assert_string_equal(out, "a/b");
		free(out);
	}
	foldermap_free(&(struct foldermap *){ NULL });
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_courier_to_dovecot),
		cmocka_unit_test(test_dovecot_to_courier),
		cmocka_unit_test(test_slash_to_dot),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_long_names),
		cmocka_unit_test(test_collisions),
		cmocka_unit_test(test_special_by_attr),
		cmocka_unit_test(test_special_by_name),
		cmocka_unit_test(test_special_to_courier),
		cmocka_unit_test(test_rules),
		cmocka_unit_test(test_rule_before_special),
		cmocka_unit_test(test_include_exclude),
		cmocka_unit_test(test_flat),
		cmocka_unit_test(test_map_list),
		cmocka_unit_test(test_helpers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
