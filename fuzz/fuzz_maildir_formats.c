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
	    md_uidlist_format_header(&out, MAILDIR_DOVECOT, a.uidvalidity,
	                             a.uidnext != 0 ? a.uidnext : 1, a.hdr_extra) == 0) {
		bool ok = true;

		for (size_t i = 0; i < a.nrecs && ok; i++) {
			char *base, *ext;

			if (md_uidlist_rec_at(text, len, &a, i, &base, &ext) < 0)
				abort();
			ok = md_uidlist_format_line(&out, MAILDIR_DOVECOT, a.recs[i].uid,
			                            base, ext) == 0;
			free(base);
			free(ext);
		}
		if (ok && md_uidlist_parse(buf_data(&out), buf_len(&out), &b, &error) == 0) {
			/* every record survives the round trip, ext fields too */
			if (b.nrecs != a.nrecs)
				abort();
			for (size_t i = 0; i < a.nrecs; i++) {
				char *ba, *ea, *bb, *eb;

				if (md_uidlist_rec_at(text, len, &a, i, &ba, &ea) < 0 ||
				    md_uidlist_rec_at(buf_data(&out), buf_len(&out), &b, i,
				                      &bb, &eb) < 0)
					abort();
				if (a.recs[i].uid != b.recs[i].uid || strcmp(ba, bb) != 0 ||
				    strcmp(ea, eb) != 0)
					abort();
				free(ba);
				free(ea);
				free(bb);
				free(eb);
			}
		}
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
