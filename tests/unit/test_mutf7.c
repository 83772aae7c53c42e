/* test_mutf7.c: modified UTF-7 encoder and strict decoder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "buf.h"
#include "mutf7.h"

struct pair {
	const char *utf8;
	const char *mutf7;
};

static const struct pair pairs[] = {
	{ "", "" },
	{ "INBOX", "INBOX" },
	{ "Listes/ünïcode", "Listes/&APw-n&AO8-code" },
	{ "Projects/Beta & Co", "Projects/Beta &- Co" },
	{ "&", "&-" },
	{ "a&b&&", "a&-b&-&-" },
	{ "台北", "&U,BTFw-" },
	{ "~peter/mail/日本語/台北", "~peter/mail/&ZeVnLIqe-/&U,BTFw-" },
	{ "Entwürfe", "Entw&APw-rfe" },
	{ "Отправленные", "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-" },
	{ "Корзина", "&BBoEPgRABDcEOAQ9BDA-" },
	{ "😀", "&2D3eAA-" },
	{ "a😀b🎉", "a&2D3eAA-b&2DzfiQ-" },
	{ "ü😀ü", "&APzYPd4AAPw-" },
	{ "ä&ö", "&AOQ-&-&APY-" },
	{ "/ü?", "/&APw-?" },
	{ "\x7f", "&AH8-" },
	{ "\t", "&AAk-" },
	{ "ÿĀ", "&AP8BAA-" },
	{ "-&-", "-&--" },
	{ " ~!\"#$%'()*+,-./09:;<=>?@AZ[\\]^_`az{|}",
	  " ~!\"#$%'()*+,-./09:;<=>?@AZ[\\]^_`az{|}" },
};

static const char *const bad_mutf7[] = {
	"&",                /* "&" at end without "-" */
	"a&",
	"&AOQ",             /* run without "-" */
	"&U,BTFw",
	"&2D3eAA",
	"&AGE-",            /* encoded printable ASCII "a" */
	"&ACY-",            /* encoded "&" */
	"&ACA-",            /* encoded space */
	"&AOQAOQ-",         /* second unit is "9" */
	"&AGE-&AGE-",       /* adjacent encoded runs */
	"&AOQ-&APw-",
	"&ZeVnLIqe-&U,BTFw-",
	"&AAA-",            /* NUL */
	"&2D0-",            /* high surrogate alone */
	"&3gA-",            /* low surrogate alone */
	"&2D3YPQ-",         /* high surrogate followed by high */
	"&2D0AOQ-",         /* high surrogate followed by BMP */
	"&AOR-",            /* non-zero padding bits */
	"&AOQB-",
	"&A-",              /* no complete unit */
	"&AO-",
	"&AOQA-",           /* 8 leftover bits: one char too many */
	"&AO/-",            /* "/" instead of "," */
	"&AOQ=-",           /* padding */
	"&AO Q-",           /* space inside a run */
	"&-&",
	"\xc3\xa4",         /* raw UTF-8 */
	"a\tb",             /* control character */
	"a\rb",
	"\x7f",
	"\x80",
	"\xff",
};

static const char *const bad_utf8[] = {
	"\xc0\xaf",             /* overlong "/" */
	"\xc1\xbf",
	"\xe0\x80\xaf",         /* overlong 3-byte */
	"\xe0\x9f\xbf",
	"\xf0\x80\x80\xaf",     /* overlong 4-byte */
	"\xf0\x8f\xbf\xbf",
	"\xed\xa0\x80",         /* UTF-16 surrogate D800 */
	"\xed\xbf\xbf",         /* DFFF */
	"\xed\xa0\xbd\xed\xb8\x80", /* CESU-8 surrogate pair */
	"\xf4\x90\x80\x80",     /* U+110000 */
	"\xf5\x80\x80\x80",
	"\xf8\x88\x80\x80\x80", /* 5-byte form */
	"\xfc\x84\x80\x80\x80\x80",
	"\x80",                 /* lone continuation */
	"a\xbf",
	"\xc3",                 /* truncated */
	"\xe6\x97",
	"\xf0\x9f\x98",
	"x\xc3",
	"\xc3\x28",             /* bad continuation */
	"\xe6\x28\xa5",
	"\xfe",
	"\xff",
};

static void
test_pairs(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMENTS(pairs); i++) {
		const struct pair *p = &pairs[i];
		struct buf b;

		buf_init(&b, 4096);
		assert_int_equal(mutf7_encode(p->utf8, strlen(p->utf8), &b), 0);
		assert_string_equal(buf_data(&b), p->mutf7);
		buf_reset(&b);
		assert_int_equal(mutf7_decode(p->mutf7, strlen(p->mutf7), &b), 0);
		assert_string_equal(buf_data(&b), p->utf8);
		assert_true(mutf7_is_valid(p->mutf7, strlen(p->mutf7)));
		buf_free(&b);
	}
}

static void
test_bad_mutf7(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMENTS(bad_mutf7); i++) {
		const char *s = bad_mutf7[i];
		struct buf b;

		buf_init(&b, 4096);
		assert_int_equal(buf_append_str(&b, "keep"), 0);
		if (mutf7_decode(s, strlen(s), &b) != -1)
			fail_msg("accepted bad mUTF-7 \"%s\"", s);
		/* out is left as it was */
		assert_string_equal(buf_data(&b), "keep");
		assert_false(mutf7_is_valid(s, strlen(s)));
		buf_free(&b);
	}
}

static void
test_embedded_nul(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 4096);
	assert_int_equal(mutf7_decode("a\0b", 3, &b), -1);
	assert_false(mutf7_is_valid("a\0b", 3));
	assert_int_equal(mutf7_encode("a\0b", 3, &b), -1);
	assert_int_equal(buf_len(&b), 0);
	buf_free(&b);
}

static void
test_bad_utf8(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < N_ELEMENTS(bad_utf8); i++) {
		const char *s = bad_utf8[i];
		struct buf b;

		buf_init(&b, 4096);
		if (mutf7_encode(s, strlen(s), &b) != -1)
			fail_msg("encoded bad UTF-8 #%zu", i);
		assert_int_equal(buf_len(&b), 0);
		buf_free(&b);
	}
}

static void
test_cap(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 8);
	/* "&U,BTFw-!" is 9 bytes */
	assert_int_equal(mutf7_encode("台北!", strlen("台北!"), &b), -1);
	assert_int_equal(buf_len(&b), 0);
	assert_int_equal(mutf7_decode("&U,BTFw-&-&-", 12, &b), 0);
	assert_int_equal(buf_len(&b), 8);
	assert_int_equal(mutf7_decode("&AOQ-", 5, &b), -1);
	assert_int_equal(buf_len(&b), 8);
	buf_free(&b);
}

static uint32_t rng_state = 2463534242U;

static uint32_t
rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

static size_t
put_utf8(char *s, uint32_t cp)
{
	if (cp < 0x80) {
		s[0] = (char)cp;
		return 1;
	} else if (cp < 0x800) {
		s[0] = (char)(0xc0 | (cp >> 6));
		s[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	} else if (cp < 0x10000) {
		s[0] = (char)(0xe0 | (cp >> 12));
		s[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		s[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	s[0] = (char)(0xf0 | (cp >> 18));
	s[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	s[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	s[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Random valid UTF-8 round-trips, and the mUTF-7 is itself valid. */
static void
test_random_roundtrip(void **state)
{
	int iter;

	(void)state;
	for (iter = 0; iter < 3000; iter++) {
		char s[256];
		size_t len = 0, n = rng() % 20;
		struct buf e, d;

		while (n-- > 0) {
			uint32_t cp;

			switch (rng() % 4) {
			case 0: cp = 0x20 + rng() % 0x5f; break;
			case 1: cp = 1 + rng() % 0xff; break;
			case 2: cp = 0x80 + rng() % 0xff80; break;
			default: cp = 0x10000 + rng() % 0x100000; break;
			}
			if (cp >= 0xd800 && cp <= 0xdfff)
				cp = '&';
			len += put_utf8(s + len, cp);
		}
		buf_init(&e, 4096);
		buf_init(&d, 4096);
		assert_int_equal(mutf7_encode(s, len, &e), 0);
		assert_true(mutf7_is_valid(buf_data(&e), buf_len(&e)));
		assert_int_equal(mutf7_decode(buf_data(&e), buf_len(&e), &d), 0);
		assert_int_equal(buf_len(&d), len);
		assert_memory_equal(buf_data(&d), s, len);
		buf_free(&e);
		buf_free(&d);
	}
}

/* Strictness means one spelling per name: whatever random mUTF-7 decodes
 * must encode back to exactly the same bytes. */
static void
test_random_canonical(void **state)
{
	static const char alphabet[] = "&&&--AOQAPwz,+2D3eU9/ a";
	int iter, accepted = 0;

	(void)state;
	for (iter = 0; iter < 200000; iter++) {
		char s[16];
		size_t len = 1 + rng() % sizeof(s), i;
		struct buf d, e;

		for (i = 0; i < len; i++)
			s[i] = alphabet[rng() % (sizeof(alphabet) - 1)];
		buf_init(&d, 4096);
		buf_init(&e, 4096);
		if (mutf7_decode(s, len, &d) == 0) {
			accepted++;
			assert_int_equal(mutf7_encode(buf_data(&d), buf_len(&d), &e), 0);
			if (buf_len(&e) != len || memcmp(buf_data(&e), s, len) != 0)
				fail_msg("\"%.*s\" decodes but re-encodes as \"%s\"",
				         (int)len, s, buf_data(&e));
		}
		buf_free(&d);
		buf_free(&e);
	}
	assert_true(accepted > 1000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pairs),
		cmocka_unit_test(test_bad_mutf7),
		cmocka_unit_test(test_embedded_nul),
		cmocka_unit_test(test_bad_utf8),
		cmocka_unit_test(test_cap),
		cmocka_unit_test(test_random_roundtrip),
		cmocka_unit_test(test_random_canonical),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
