/* test_msgsum.c: pairing copies by fingerprint through what targets do to
 * messages (a final bare CR dropped, a final CRLF added, a future
 * INTERNALDATE replaced by the APPEND time). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "msgsum.h"

static void
set(struct msgsum *m, uint32_t uid, const char *hdr, uint64_t size, int64_t date)
{
	memset(m, 0, sizeof(*m));
	m->uid = uid;
	m->size = size;
	m->internaldate = date;
	msgsum_fingerprint(hdr, strlen(hdr), size, date, m->fp, NULL);
	m->have_fp = true;
}

static void
test_match_tolerances(void **state)
{
	const char *h1 = "Message-ID: <a@x>\r\nSubject: one\r\n\r\n";
	const char *h2 = "Message-ID: <b@x>\r\nSubject:  two\r\n\r\n";
	const int64_t now = 1800000000, future = 2060000000;
	struct msgsum_list dst = { 0 };
	struct msgsum src[6];
	struct msgsum_fpindex ix;

	(void)state;
	dst.items = calloc(6, sizeof(*dst.items));
	dst.count = dst.alloc = 6;
	/* the target: h1 at 100 bytes twice (one exact, one with a CR
	 * dropped), h1 with a CRLF added, h2 with its date replaced */
	set(&dst.items[0], 10, h1, 99, 1000);
	set(&dst.items[1], 11, h1, 100, 1000);
	set(&dst.items[2], 12, h1, 302, 1000);
	set(&dst.items[3], 13, h2, 50, now - 5);
	set(&dst.items[4], 14, h2, 50, 1000);
	set(&dst.items[5], 15, h1, 500, 1000);
	msgsum_fpindex_init(&ix, &dst);

	/* folding and white space do not change the fingerprint */
	set(&src[0], 1, "message-id: <b@x>\r\nsubject: two\r\n\r\n", 50, 1000);
	assert_memory_equal(src[0].fp, dst.items[4].fp, 32);
	/* exact matches win over normalised ones */
	set(&src[1], 2, h1, 100, 1000);
	assert_ptr_equal(msgsum_fpindex_match(&ix, &src[1], now), &dst.items[1]);
	set(&src[2], 3, h1, 100, 1000);       /* then the one a CR shorter */
	assert_ptr_equal(msgsum_fpindex_match(&ix, &src[2], now), &dst.items[0]);
	set(&src[3], 4, h1, 300, 1000);       /* Courier added CRLF */
	assert_ptr_equal(msgsum_fpindex_match(&ix, &src[3], now), &dst.items[2]);
	assert_ptr_equal(msgsum_fpindex_match(&ix, &src[0], now), &dst.items[4]);
	/* a future date became the APPEND time, before now */
	set(&src[4], 5, h2, 50, future);
	assert_ptr_equal(msgsum_fpindex_match(&ix, &src[4], now), &dst.items[3]);
	/* but not a past date that differs, nor a size far off */
	set(&src[5], 6, h1, 400, 1000);
	assert_null(msgsum_fpindex_match(&ix, &src[5], now));
	set(&src[5], 6, h1, 500, 999);
	assert_null(msgsum_fpindex_match(&ix, &src[5], now));
	set(&src[5], 6, h1, 500, 1000);
	assert_ptr_equal(msgsum_fpindex_match(&ix, &src[5], now), &dst.items[5]);
	/* each target message pairs once */
	assert_null(msgsum_fpindex_match(&ix, &src[1], now));

	msgsum_fpindex_free(&ix);
	for (size_t i = 0; i < 6; i++) {
		free(src[i].message_id);
		free(dst.items[i].message_id);
	}
	free(dst.items);
}

/* The index sorts by the fingerprint's first 8 bytes: fingerprints that
 * share them but differ later are told apart (the whole one decides). */
static void
test_match_same_key_prefix(void **state)
{
	struct msgsum_list dst = { 0 };
	struct msgsum s = { 0 };
	struct msgsum_fpindex ix;

	(void)state;
	dst.items = calloc(3, sizeof(*dst.items));
	dst.count = dst.alloc = 3;
	for (uint32_t i = 0; i < 3; i++) {
		dst.items[i].uid = 20 + i;
		dst.items[i].size = 100;
		dst.items[i].internaldate = 1000;
		dst.items[i].have_fp = true;
		memset(dst.items[i].fp, 0xab, 32);
		dst.items[i].fp[31] = (unsigned char)i;   /* same first 8 bytes */
	}
	msgsum_fpindex_init(&ix, &dst);
	s.size = 100;
	s.internaldate = 1000;
	s.have_fp = true;
	memset(s.fp, 0xab, 32);
	s.fp[31] = 2;
	assert_ptr_equal(msgsum_fpindex_match(&ix, &s, 2000), &dst.items[2]);
	assert_null(msgsum_fpindex_match(&ix, &s, 2000));       /* taken */
	s.fp[31] = 7;                                           /* no such one */
	assert_null(msgsum_fpindex_match(&ix, &s, 2000));
	s.fp[31] = 0;
	assert_ptr_equal(msgsum_fpindex_match(&ix, &s, 2000), &dst.items[0]);
	msgsum_fpindex_free(&ix);
	free(dst.items);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_match_tolerances),
		cmocka_unit_test(test_match_same_key_prefix),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
