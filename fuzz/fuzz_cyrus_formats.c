/* fuzz_cyrus_formats.c: the Cyrus spool parsers (cyrus.index, cyrus.header,
 * the flat seen db, subscription files, a `ctl_mboxlist -d` dump). A copied
 * spool may hold anything; parsing must never crash or read outside the
 * buffer, and every record of a parsed index must obey its own header.
 * The first byte picks the parser. */
#include "cyrus.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static void
index_case(const unsigned char *p, size_t len)
{
	struct cyrus_index ix;
	const char *error;
	uint32_t prev = 0;

	if (cyrus_index_parse(p, len, &ix, &error) < 0)
		return;
	if (!cyrus_index_version_known(ix.minor_version) ||
	    ix.count + ix.n_expunged != ix.num_records)
		abort();
	for (size_t i = 0; i < ix.count; i++) {
		if (ix.records[i].uid <= prev || ix.records[i].uid > ix.last_uid ||
		    (ix.records[i].system_flags & CYRUS_FLAG_EXPUNGED))
			abort();
		prev = ix.records[i].uid;
	}
	cyrus_index_free(&ix);
}

static void
header_case(const char *p, size_t len)
{
	struct cyrus_header h;
	struct cyrus_record r;
	const char *error;
	char *fl;

	if (cyrus_header_parse(p, len, &h, &error) < 0)
		return;
	if (h.n_flags > CYRUS_MAX_USER_FLAGS)
		abort();
	memset(&r, 0xff, sizeof(r));
	fl = cyrus_record_flags(&r, &h, true);
	free(fl);
	cyrus_header_free(&h);
}

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	const char *error;
	char *text;
	size_t len = size > 0 ? size - 1 : 0;

	if (size == 0 || size > (1u << 20))
		return 0;
	/* the parsers get exactly len bytes, no terminator */
	text = malloc(len > 0 ? len : 1);
	memcpy(text, data + 1, len);
	switch (data[0] % 5) {
	case 0:
		index_case((const unsigned char *)text, len);
		break;
	case 1:
		header_case(text, len);
		break;
	case 2: {
		uint32_t *ranges;
		size_t n;

		if (cyrus_seen_parse(text, len, "key", &ranges, &n, &error) == 0) {
			for (size_t i = 0; i < n; i++)
				if (ranges[2 * i] > ranges[2 * i + 1])
					abort();
			free(ranges);
		}
		break;
	}
	case 3: {
		char **names;
		size_t n;

		if (cyrus_subs_parse(text, len, "alice", &names, &n, &error) == 0)
			strv_free(&names);
		break;
	}
	default: {
		struct cyrus_mbentry *e;
		size_t n;

		if (cyrus_mboxlist_parse(text, len, "alice", &e, &n, &error) == 0)
			cyrus_mbentries_free(&e, n);
		break;
	}
	}
	free(text);
	return 0;
}
