/* fuzz_maildir_formats.c: the Maildir metadata parsers (dovecot-uidlist,
 * courierimapuiddb, dovecot-keywords, courierimapkeywords, subscriptions,
 * file-name flags). A target Maildir may hold files written by anything;
 * parsing them must never crash, and a parsed uidlist must format and
 * parse back to the same records. The first byte picks the parser. */
#include "maildir-private.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static void
uidlist_roundtrip(const char *text, size_t len)
{
	struct md_uidlist a = { 0 }, b = { 0 };
	const char *error;
	struct buf out;

	if (md_uidlist_parse(text, len, &a, &error) < 0) {
		md_uidlist_free(&a);
		return;
	}
	buf_init(&out, 64 << 20);
	if (a.uidvalidity != 0 &&
	    md_uidlist_format(&out, MAILDIR_DOVECOT, a.uidvalidity,
	                      a.uidnext != 0 ? a.uidnext : 1, a.hdr_extra,
	                      a.recs, a.nrecs) == 0 &&
	    md_uidlist_parse(buf_data(&out), buf_len(&out), &b, &error) == 0) {
		/* every record survives the round trip, ext fields too (a
		 * record's base and ext are one pool string) */
		if (b.nrecs != a.nrecs)
			abort();
		for (size_t i = 0; i < a.nrecs; i++)
			if (a.recs[i].uid != b.recs[i].uid ||
			    strcmp(a.recs[i].base, b.recs[i].base) != 0 ||
			    strcmp(md_rec_ext(&a.recs[i]), md_rec_ext(&b.recs[i])) != 0)
				abort();
	}
	md_uidlist_free(&b);
	md_uidlist_free(&a);
	buf_free(&out);
}

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	const char *text = (const char *)data + 1;
	size_t len;

	if (size < 1 || size > 64 * 1024)
		return 0;
	len = size - 1;
	switch (data[0] % 6) {
	case 0:
		uidlist_roundtrip(text, len);
		break;
	case 1: {
		char *kw[MD_MAX_KEYWORDS] = { 0 };
		struct buf out;

		md_dkw_parse(text, len, kw);
		buf_init(&out, 1 << 20);
		ignore_result(md_dkw_format(&out, kw));
		buf_free(&out);
		for (int i = 0; i < MD_MAX_KEYWORDS; i++)
			free(kw[i]);
		break;
	}
	case 2: {
		struct md_ckw c = { 0 };
		struct buf out;

		md_ckw_parse(text, len, &c);
		buf_init(&out, 16 << 20);
		ignore_result(md_ckw_format(&out, &c));
		buf_free(&out);
		md_ckw_free(&c);
		break;
	}
	case 3:
	case 4: {
		char **names = NULL;
		size_t n = 0;

		if (md_subs_parse(text, len, data[0] % 6 == 3 ? MAILDIR_DOVECOT :
		                  MAILDIR_COURIER, '/', &names, &n) == 0)
			maildir_strv_free(&names, n);
		break;
	}
	default: {
		/* a file name: flags and size fields */
		char *name = malloc(len + 1);
		struct md_flags fl;
		uint64_t v;

		memcpy(name, text, len);
		name[len] = '\0';
		md_flags_init(&fl);
		md_flags_parse(&fl, md_name_letters(name));
		md_flags_free(&fl);
		(void)md_name_field(name, 'S', &v);
		(void)md_name_field(name, 'W', &v);
		(void)md_name_base_len(name);
		free(name);
		break;
	}
	}
	return 0;
}
