/* test_imap_parser.c: the incremental IMAP response parser.
 *
 * Table-driven: every case is fed whole, split at every byte into two
 * feeds, and one byte at a time; a dump of every typed field (and of the
 * streamed bytes and sink events) must be identical in all runs. The
 * whole-feed run also calls the case's check function on each response. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "parser.h"

/* ---- a test sink that keeps streamed bytes ---- */

#define MAX_STREAMS 16
#define KEEP_BYTES (1024 * 1024)

struct tstream {
	struct buf data;        /* first KEEP_BYTES bytes */
	uint64_t size, got, hash;
	int ended, aborted, released;
};

struct tsink {
	struct tstream s[MAX_STREAMS];
	size_t n;
	size_t data_calls;
	bool refuse, fail_data;
	size_t fail_end_at;     /* 1-based stream whose end() fails; 0: none */
};

static uint64_t
fnv(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

static void *
ts_begin(void *ctx, uint64_t size)
{
	struct tsink *t = ctx;
	struct tstream *s;

	if (t->refuse || t->n == MAX_STREAMS)
		return NULL;
	s = &t->s[t->n++];
	memset(s, 0, sizeof(*s));
	buf_init(&s->data, KEEP_BYTES);
	s->size = size;
	s->hash = 14695981039346656037ull;
	return s;
}

static int
ts_data(void *ctx, void *h, const void *data, size_t len)
{
	struct tsink *t = ctx;
	struct tstream *s = h;

	t->data_calls++;
	assert_true(s->ended == 0 && s->aborted == 0);
	assert_true(len > 0);
	assert_true(s->got + len <= s->size);
	if (t->fail_data)
		return -1;
	if (buf_len(&s->data) + len <= KEEP_BYTES)
		assert_int_equal(buf_append(&s->data, data, len), 0);
	s->got += len;
	s->hash = fnv(s->hash, data, len);
	return 0;
}

static int
ts_end(void *ctx, void *h)
{
	struct tsink *t = ctx;
	struct tstream *s = h;

	assert_int_equal(s->got, s->size);
	s->ended++;
	return t->fail_end_at == (size_t)(s - t->s) + 1 ? -1 : 0;
}

static void
ts_abort(void *ctx, void *h)
{
	struct tstream *s = h;

	(void)ctx;
	s->aborted++;
}

static void
ts_release(void *ctx, void *h)
{
	struct tstream *s = h;

	(void)ctx;
	s->released++;
}

static void
ts_init(struct tsink *t, struct imap_literal_sink *sink)
{
	memset(t, 0, sizeof(*t));
	memset(sink, 0, sizeof(*sink));   /* min_size 0, no place() */
	sink->begin = ts_begin;
	sink->data = ts_data;
	sink->end = ts_end;
	sink->abort = ts_abort;
	sink->release = ts_release;
	sink->ctx = t;
}

static void
ts_free(struct tsink *t)
{
	for (size_t i = 0; i < t->n; i++)
		buf_free(&t->s[i].data);
}

/* Every handle ends in exactly one of: end() + release(), or abort(). */
static void
ts_check_closed(const struct tsink *t)
{
	for (size_t i = 0; i < t->n; i++) {
		const struct tstream *s = &t->s[i];

		if (s->aborted) {
			assert_int_equal(s->aborted, 1);
			assert_int_equal(s->released, 0);
		} else {
			assert_int_equal(s->ended, 1);
			assert_int_equal(s->released, 1);
		}
	}
}

/* ---- dump of a response: every typed field ---- */

static void
put(struct buf *b, const char *fmt, ...) ATTR_PRINTF(2, 3);

static void
put(struct buf *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	assert_true(n >= 0 && (size_t)n < sizeof(tmp));
	assert_int_equal(buf_append(b, tmp, (size_t)n), 0);
}

static void
put_bytes(struct buf *b, const char *s, size_t len)
{
	put(b, "\"");
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
			put(b, "%c", c);
		else
			put(b, "\\x%02x", c);
	}
	put(b, "\"");
}

static void
put_str(struct buf *b, const char *s)
{
	if (s == NULL)
		put(b, "(null)");
	else
		put_bytes(b, s, strlen(s));
}

static void put_values(struct buf *b, const struct imap_value *v, size_t n);

static void
put_value(struct buf *b, const struct imap_value *v)
{
	const struct tstream *s;

	if (v == NULL) {
		put(b, "-");
		return;
	}
	if (v->is_literal)
		put(b, v->is_literal8 ? "~" : "{}");
	switch (v->type) {
	case IMAP_VALUE_ATOM:
		put(b, "A");
		put_bytes(b, v->str, v->len);
		assert_int_equal(v->str[v->len], '\0');
		break;
	case IMAP_VALUE_STRING:
		put(b, "S");
		put_bytes(b, v->str, v->len);
		assert_int_equal(v->str[v->len], '\0');
		break;
	case IMAP_VALUE_NIL:
		put(b, "NIL");
		break;
	case IMAP_VALUE_LIST:
		put(b, "(");
		put_values(b, v->list, v->count);
		put(b, ")");
		break;
	case IMAP_VALUE_STREAMED:
		s = v->stream;
		assert_non_null(s);
		put(b, "STREAM[%" PRIu64 " got %" PRIu64 " hash %016" PRIx64 " ",
		    v->stream_size, s->got, s->hash);
		put_bytes(b, buf_data(&s->data), buf_len(&s->data) > 64 ? 64 :
		          buf_len(&s->data));
		put(b, "]");
		break;
	}
}

static void
put_values(struct buf *b, const struct imap_value *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			put(b, " ");
		put_value(b, &v[i]);
	}
}

static void
put_strlist(struct buf *b, const struct imap_strlist *l)
{
	put(b, "[");
	for (size_t i = 0; i < l->count; i++) {
		if (i > 0)
			put(b, " ");
		put_str(b, l->items[i]);
	}
	put(b, "]");
}

static void
dump(struct buf *b, const struct imap_response *r)
{
	const struct imap_resp_code *c = &r->code;

	put(b, "kind=%d tag=", (int)r->kind);
	put_str(b, r->tag);
	put(b, " status=%d code=%d name=", (int)r->status, (int)c->type);
	put_str(b, c->name);
	put(b, " num=%" PRIu64 " uv=%" PRIu32 " set1=", c->num, c->uidvalidity);
	put_str(b, c->set1);
	put(b, " set2=");
	put_str(b, c->set2);
	put(b, " args=(");
	put_values(b, c->args, c->arg_count);
	put(b, ") text=");
	put_str(b, r->text);
	put(b, " type=%d", (int)r->type);
	if (r->kind == IMAP_RESP_UNTAGGED) {
		switch (r->type) {
		case IMAP_UNTAGGED_CAPABILITY:
		case IMAP_UNTAGGED_ENABLED:
			put(b, " caps=");
			put_strlist(b, &r->u.capability);
			break;
		case IMAP_UNTAGGED_FLAGS:
			put(b, " flags=");
			put_strlist(b, &r->u.flags);
			break;
		case IMAP_UNTAGGED_LIST:
		case IMAP_UNTAGGED_LSUB:
			put(b, " attrs=%x names=", r->u.list.attrs);
			put_strlist(b, &r->u.list.attr_names);
			put(b, " delim=%d name=", r->u.list.delimiter);
			put_bytes(b, r->u.list.name, r->u.list.name_len);
			break;
		case IMAP_UNTAGGED_STATUS: {
			const struct imap_status_data *s = &r->u.status;

			put(b, " mbox=");
			put_bytes(b, s->mailbox, s->mailbox_len);
			put(b, " have=%x %u %u %u %u %u %u %" PRIu64 " %" PRIu64,
			    s->have, s->messages, s->recent, s->uidnext,
			    s->uidvalidity, s->unseen, s->deleted,
			    s->highestmodseq, s->size);
			break;
		}
		case IMAP_UNTAGGED_NAMESPACE:
			for (int g = 0; g < 3; g++) {
				put(b, " ns%d=[", g);
				for (size_t i = 0; i < r->u.ns.count[g]; i++) {
					put_str(b, r->u.ns.ns[g][i].prefix);
					put(b, ":%d ", r->u.ns.ns[g][i].delimiter);
				}
				put(b, "]");
			}
			break;
		case IMAP_UNTAGGED_SEARCH:
		case IMAP_UNTAGGED_ESEARCH: {
			const struct imap_search_data *s = &r->u.search;

			put(b, " n=%zu [", s->count);
			for (size_t i = 0; i < s->count && i < 50; i++)
				put(b, "%u ", s->nums[i]);
			put(b, "] uid=%d tag=", s->uid);
			put_str(b, s->tag);
			put(b, " min=%d:%u max=%d:%u count=%d:%u modseq=%d:%" PRIu64
			    " all=", s->have_min, s->min, s->have_max, s->max,
			    s->have_count, s->result_count, s->have_modseq,
			    s->modseq);
			put_str(b, s->all);
			break;
		}
		case IMAP_UNTAGGED_FETCH: {
			const struct imap_fetch *f = &r->u.fetch;

			put(b, " seq=%u have=%x uid=%u flags=", f->seq, f->have,
			    f->uid);
			put_strlist(b, &f->flags);
			put(b, " date=%lld tz=%d size=%" PRIu64 " modseq=%" PRIu64,
			    (long long)f->internaldate, f->internaldate_tz,
			    f->rfc822_size, f->modseq);
			for (size_t i = 0; i < f->body_count; i++) {
				put(b, " body[");
				put_str(b, f->bodies[i].section);
				put(b, "]<%u>%d=", f->bodies[i].origin,
				    f->bodies[i].binary);
				put_value(b, f->bodies[i].value);
			}
			break;
		}
		case IMAP_UNTAGGED_EXISTS:
		case IMAP_UNTAGGED_RECENT:
		case IMAP_UNTAGGED_EXPUNGE:
			put(b, " number=%u", r->u.number);
			break;
		case IMAP_UNTAGGED_VANISHED:
			put(b, " earlier=%d uids=", r->u.vanished.earlier);
			put_str(b, r->u.vanished.uids);
			break;
		default:
			break;
		}
	}
	put(b, " raw=(");
	put_values(b, r->raw, r->raw_count);
	put(b, ")\n");
}

/* ---- the table ---- */

typedef void check_fn(const struct imap_response *r, int idx);

struct tcase {
	const char *name;
	const char *in;
	size_t len;              /* 0: strlen(in) */
	int nresp;               /* complete responses expected */
	const char *error;       /* substring of the expected error, or NULL */
	check_fn *check;
	const struct imap_parser_limits *limits;
	bool sink;
	bool sink_refuse, sink_fail_data;
	size_t sink_fail_end_at;
};

enum feed_mode { FEED_WHOLE, FEED_SPLIT, FEED_BYTES };

static int checks_run, cases_run;
static long runs_compared;

/* Feeds the case in the given pattern; appends the dump to out. */
static void
run_case(const struct tcase *tc, enum feed_mode mode, size_t cut,
         struct buf *out)
{
	size_t len = tc->len != 0 ? tc->len : strlen(tc->in);
	struct imap_parser *p = imap_parser_new(tc->limits);
	struct imap_literal_sink sink;
	struct tsink ts;
	size_t a = 0;
	int nresp = 0;
	enum imap_parse_result last = IMAP_PARSE_MORE;
	bool failed = false;

	ts_init(&ts, &sink);
	ts.refuse = tc->sink_refuse;
	ts.fail_data = tc->sink_fail_data;
	ts.fail_end_at = tc->sink_fail_end_at;
	if (tc->sink)
		imap_parser_set_sink(p, &sink);
	while (a < len && !failed) {
		size_t b = mode == FEED_WHOLE ? len :
		           mode == FEED_BYTES ? a + 1 :
		           a < cut ? cut : len;
		size_t off = a;

		while (off < b) {
			const struct imap_response *r = NULL;
			const char *err = NULL;
			size_t consumed = 999999;

			last = imap_parser_feed(p, tc->in + off, b - off,
			                        &consumed, &r, &err);
			assert_true(consumed <= b - off);
			if (last == IMAP_PARSE_OK) {
				assert_true(consumed > 0);
				assert_non_null(r);
				dump(out, r);
				if (mode == FEED_WHOLE && tc->check != NULL) {
					tc->check(r, nresp);
					checks_run++;
				}
				nresp++;
				off += consumed;
			} else if (last == IMAP_PARSE_MORE) {
				assert_int_equal(consumed, b - off);
				off = b;
			} else {
				assert_non_null(err);
				put(out, "ERROR: %s\n", err);
				failed = true;
				break;
			}
		}
		a = b;
	}
	put(out, "last=%d nresp=%d\n", (int)last, nresp);
	imap_parser_free(&p);
	assert_null(p);
	ts_check_closed(&ts);
	for (size_t i = 0; i < ts.n; i++)
		put(out, "stream %zu: size=%" PRIu64 " got=%" PRIu64 " end=%d "
		    "abort=%d release=%d\n", i, ts.s[i].size, ts.s[i].got,
		    ts.s[i].ended, ts.s[i].aborted, ts.s[i].released);
	ts_free(&ts);
	if (mode == FEED_WHOLE) {
		if (tc->error != NULL) {
			if (!failed || strstr(buf_data(out), tc->error) == NULL)
				fail_msg("%s: expected error '%s', got:\n%s",
				         tc->name, tc->error, buf_data(out));
		} else if (failed) {
			fail_msg("%s: unexpected error:\n%s", tc->name,
			         buf_data(out));
		}
		if (nresp != tc->nresp)
			fail_msg("%s: %d responses, expected %d:\n%s", tc->name,
			         nresp, tc->nresp, buf_data(out));
	}
}

static void
run_table(const struct tcase *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct tcase *tc = &cases[i];
		size_t len = tc->len != 0 ? tc->len : strlen(tc->in);
		struct buf whole, other;

		buf_init(&whole, 1 << 24);
		buf_init(&other, 1 << 24);
		cases_run++;
		runs_compared += (long)len + 1;
		run_case(tc, FEED_WHOLE, 0, &whole);
		for (size_t cut = 1; cut < len; cut++) {
			buf_reset(&other);
			run_case(tc, FEED_SPLIT, cut, &other);
			if (strcmp(buf_data(&whole), buf_data(&other)) != 0)
				fail_msg("%s: split at %zu differs:\nwhole:\n%s\n"
				         "split:\n%s", tc->name, cut,
				         buf_data(&whole), buf_data(&other));
		}
		buf_reset(&other);
		run_case(tc, FEED_BYTES, 0, &other);
		if (strcmp(buf_data(&whole), buf_data(&other)) != 0)
			fail_msg("%s: byte-at-a-time differs:\nwhole:\n%s\n"
			         "bytes:\n%s", tc->name, buf_data(&whole),
			         buf_data(&other));
		buf_free(&whole);
		buf_free(&other);
	}
}

/* ---- check helpers ---- */

static const struct tstream *
stream_of(const struct imap_value *v)
{
	assert_int_equal(v->type, IMAP_VALUE_STREAMED);
	return v->stream;
}

static void
assert_value_str(const struct imap_value *v, const char *s)
{
	assert_int_equal(v->type, IMAP_VALUE_STRING);
	assert_int_equal(v->len, strlen(s));
	assert_memory_equal(v->str, s, v->len);
}

static void
assert_state(const struct imap_response *r, enum imap_status st,
             enum imap_code_type code, const char *text)
{
	assert_int_equal(r->status, st);
	assert_int_equal(r->code.type, code);
	assert_string_equal(r->text, text);
	if (r->kind != IMAP_RESP_TAGGED)
		assert_int_equal(r->kind, IMAP_RESP_UNTAGGED);
	assert_int_equal(r->type, IMAP_UNTAGGED_STATE);
}

/* ---- status responses, codes, continuations ---- */

static void
chk_dovecot_greeting(const struct imap_response *r, int idx)
{
	struct imap_strlist caps;
	const char *items[16];

	(void)idx;
	assert_int_equal(r->kind, IMAP_RESP_UNTAGGED);
	assert_null(r->tag);
	assert_state(r, IMAP_STATUS_OK, IMAP_CODE_CAPABILITY, "Dovecot ready.");
	assert_string_equal(r->code.name, "CAPABILITY");
	assert_int_equal(r->code.arg_count, 9);
	for (size_t i = 0; i < r->code.arg_count; i++) {
		assert_int_equal(r->code.args[i].type, IMAP_VALUE_ATOM);
		items[i] = r->code.args[i].str;
	}
	caps.items = items;
	caps.count = r->code.arg_count;
	assert_true(imap_strlist_has(&caps, "literal+"));
	assert_true(imap_strlist_has(&caps, "AUTH=PLAIN"));
	assert_false(imap_strlist_has(&caps, "AUTH=LOGIN"));
	assert_false(imap_strlist_has(&caps, "IMAP4"));
}

static void
chk_cyrus_greeting(const struct imap_response *r, int idx)
{
	(void)idx;
	assert_state(r, IMAP_STATUS_OK, IMAP_CODE_CAPABILITY,
	             "mail.example.com Cyrus IMAP 3.4.3 server ready");
	assert_int_equal(r->code.arg_count, 7);
	assert_string_equal(r->code.args[6].str, "SASL-IR");
}

static void
chk_courier_greeting(const struct imap_response *r, int idx)
{
	(void)idx;
	assert_state(r, IMAP_STATUS_OK, IMAP_CODE_CAPABILITY,
	             "Courier-IMAP ready. Copyright 1998-2018 Double Precision, "
	             "Inc.  See COPYING for distribution information.");
	assert_string_equal(r->code.args[5].str, "THREAD=REFERENCES");
}

static void
chk_appenduid(const struct imap_response *r, int idx)
{
	(void)idx;
	assert_int_equal(r->kind, IMAP_RESP_TAGGED);
	assert_string_equal(r->tag, "a1");
	assert_state(r, IMAP_STATUS_OK, IMAP_CODE_APPENDUID, "APPEND completed");
	assert_int_equal(r->code.uidvalidity, 38505);
	assert_string_equal(r->code.set1, "3955");
	assert_null(r->code.set2);
}

static void
chk_copyuid(const struct imap_response *r, int idx)
{
	(void)idx;
	assert_string_equal(r->tag, "A003");
	assert_state(r, IMAP_STATUS_OK, IMAP_CODE_COPYUID, "Done");
	assert_int_equal(r->code.uidvalidity, 38505);
	assert_string_equal(r->code.set1, "304,319:320");
	assert_string_equal(r->code.set2, "3956:3958");
}

static void
chk_trycreate(const struct imap_response *r, int idx)
{
	(void)idx;
	assert_string_equal(r->tag, "a3");
	assert_state(r, IMAP_STATUS_NO, IMAP_CODE_TRYCREATE,
	             "Mailbox doesn't exist: Foo");
}

static void
chk_permflags(const struct imap_response *r, int idx)
{
	const struct imap_value *l;

	(void)idx;
	assert_state(r, IMAP_STATUS_OK, IMAP_CODE_PERMANENTFLAGS,
	             "Flags permitted.");
	assert_int_equal(r->code.arg_count, 1);
	l = &r->code.args[0];
	assert_int_equal(l->type, IMAP_VALUE_LIST);
	assert_int_equal(l->count, 6);
	assert_true(imap_value_ieq(&l->list[0], "\\answered"));
	assert_string_equal(l->list[5].str, "\\*");
}

static void
chk_select_codes(const struct imap_response *r, int idx)
{
	static const struct {
		enum imap_code_type type;
		uint64_t num;
	} want[] = {
		{ IMAP_CODE_UIDVALIDITY, 3857529045u },
		{ IMAP_CODE_UIDNEXT, 4392 },
		{ IMAP_CODE_UNSEEN, 12 },
		{ IMAP_CODE_HIGHESTMODSEQ, 90060128194045007ull },
		{ IMAP_CODE_NOMODSEQ, 0 },
		{ IMAP_CODE_READ_WRITE, 0 },
		{ IMAP_CODE_READ_ONLY, 0 },
	};

	assert_true((size_t)idx < N_ELEMENTS(want));
	assert_int_equal(r->code.type, want[idx].type);
	assert_int_equal(r->code.num, want[idx].num);
	if (idx == 0)
		assert_int_equal(r->code.uidvalidity, 3857529045u);
	if (idx == 5) {
		assert_int_equal(r->kind, IMAP_RESP_TAGGED);
		assert_string_equal(r->text,
		                    "Select completed (0.001 + 0.000 secs).");
	}
}

static void
chk_misc_codes(const struct imap_response *r, int idx)
{
	static const enum imap_code_type want[] = {
		IMAP_CODE_ALERT, IMAP_CODE_OVERQUOTA, IMAP_CODE_LIMIT,
		IMAP_CODE_CLOSED, IMAP_CODE_OTHER, IMAP_CODE_OTHER,
		IMAP_CODE_UNAVAILABLE, IMAP_CODE_OTHER,
	};

	assert_true((size_t)idx < N_ELEMENTS(want));
	assert_int_equal(r->code.type, want[idx]);
	switch (idx) {
	case 0:
		assert_string_equal(r->text, "System shutdown in 10 minutes");
		break;
	case 4: /* [UIDNEXT abc]: known code, odd args -> OTHER */
		assert_string_equal(r->code.name, "UIDNEXT");
		assert_int_equal(r->code.arg_count, 1);
		assert_string_equal(r->code.args[0].str, "abc");
		break;
	case 5: /* [APPENDUID 1 *] */
		assert_string_equal(r->code.name, "APPENDUID");
		assert_null(r->code.set1);
		break;
	case 6:
		assert_string_equal(r->code.name, "UNAVAILABLE");
		assert_int_equal(r->code.arg_count, 0);
		break;
	case 7:
		assert_string_equal(r->code.name, "REFERRAL");
		assert_string_equal(r->code.args[0].str,
		                    "imap://user;AUTH=GSSAPI@SERVER2/");
		break;
	}
}

static void
chk_rfc5530(const struct imap_response *r, int idx)
{
	static const struct {
		enum imap_code_type code;
		enum err_kind kind;
	} want[] = {
		{ IMAP_CODE_ALREADYEXISTS, ERRK_FOLDER },
		{ IMAP_CODE_NONEXISTENT, ERRK_FOLDER },
		{ IMAP_CODE_OVERQUOTA, ERRK_QUOTA },
		{ IMAP_CODE_LIMIT, ERRK_MESSAGE },
		{ IMAP_CODE_INUSE, ERRK_SESSION },
		{ IMAP_CODE_SERVERBUG, ERRK_FOLDER },
		{ IMAP_CODE_AUTHENTICATIONFAILED, ERRK_AUTH },
		{ IMAP_CODE_CONTACTADMIN, ERRK_AUTH },
		{ IMAP_CODE_NONE, ERRK_FOLDER },
		{ IMAP_CODE_NONE, ERRK_FOLDER },
		{ IMAP_CODE_NONE, ERRK_FOLDER },
	};

	assert_true((size_t)idx < N_ELEMENTS(want));
	assert_int_equal(r->code.type, want[idx].code);
	/* the kind comes from the code; the default when there is none,
	 * whatever the text says */
	assert_int_equal(imap_code_err_kind(r->code.type, ERRK_FOLDER),
	                 want[idx].kind);
}

static void
chk_badcharset(const struct imap_response *r, int idx)
{
	(void)idx;
	assert_state(r, IMAP_STATUS_NO, IMAP_CODE_OTHER, "Unsupported charset");
	assert_string_equal(r->code.name, "BADCHARSET");
	assert_int_equal(r->code.arg_count, 1);
	assert_int_equal(r->code.args[0].type, IMAP_VALUE_LIST);
	assert_int_equal(r->code.args[0].count, 2);
	assert_string_equal(r->code.args[0].list[1].str, "US-ASCII");
}

static void
chk_xfoo(const struct imap_response *r, int idx)
{
	if (idx == 0) {
		assert_state(r, IMAP_STATUS_OK, IMAP_CODE_OTHER, "baz");
		assert_string_equal(r->code.name, "X-FOO");
		assert_int_equal(r->code.arg_count, 1);
		assert_string_equal(r->code.args[0].str, "bar");
	} else if (idx == 1) {
		/* args that do not tokenize stay one raw atom */
		assert_state(r, IMAP_STATUS_NO, IMAP_CODE_OTHER,
		             "text (with \"quote");
		assert_string_equal(r->code.name, "X-ODD");
		assert_int_equal(r->code.arg_count, 1);
		assert_string_equal(r->code.args[0].str, "(unbalanced \"x");
	} else {
		/* a '[' without ']' is not a code */
		assert_state(r, IMAP_STATUS_BAD, IMAP_CODE_NONE, "[oops no close");
	}
}

static void
chk_free_text(const struct imap_response *r, int idx)
{
	if (idx == 0) {
		assert_state(r, IMAP_STATUS_BAD, IMAP_CODE_NONE,
		             "Error in IMAP command: Unexpected ')' \" {5}");
		assert_string_equal(r->tag, "x1");
	} else {
		assert_int_equal(r->type, IMAP_UNTAGGED_EXISTS);
		assert_int_equal(r->u.number, 3);
	}
}

static void
chk_continuation(const struct imap_response *r, int idx)
{
	static const char *const texts[] = {
		"", "", "YGgGCSqGSIb3EgECAgIAb1kwV6ADAgEFoQMCAQ+iSzBJoAMCAQGiQgRA",
		"Ready for literal data", "idling",
	};

	assert_int_equal(r->kind, IMAP_RESP_CONTINUATION);
	assert_true((size_t)idx < N_ELEMENTS(texts));
	assert_string_equal(r->text, texts[idx]);
}

static void
chk_bye_preauth(const struct imap_response *r, int idx)
{
	if (idx == 0) {
		assert_state(r, IMAP_STATUS_BYE, IMAP_CODE_NONE,
		             "Logging out");
	} else if (idx == 1) {
		assert_state(r, IMAP_STATUS_PREAUTH, IMAP_CODE_CAPABILITY,
		             "Logged in as bob");
	} else if (idx == 2) {
		assert_state(r, IMAP_STATUS_OK, IMAP_CODE_NONE, "");
		assert_string_equal(r->tag, "a9");
	} else {
		assert_state(r, IMAP_STATUS_NO, IMAP_CODE_ALERT, "");
		assert_string_equal(r->tag, "b.2");
	}
}

/* ---- untagged data ---- */

static void
chk_capability(const struct imap_response *r, int idx)
{
	if (idx == 0) {
		assert_int_equal(r->type, IMAP_UNTAGGED_CAPABILITY);
		assert_int_equal(r->u.capability.count, 8);
		assert_true(imap_strlist_has(&r->u.capability, "IMAP4REV1"));
		assert_true(imap_strlist_has(&r->u.capability, "COMPRESS=DEFLATE"));
		assert_false(imap_strlist_has(&r->u.capability, "COMPRESS"));
		assert_int_equal(r->raw_count, 9);
	} else {
		assert_int_equal(r->type, IMAP_UNTAGGED_ENABLED);
		assert_int_equal(r->u.capability.count, idx == 1 ? 2 : 0);
	}
}

static void
chk_list(const struct imap_response *r, int idx)
{
	const struct imap_list *l = &r->u.list;

	assert_int_equal(r->type, idx == 5 ? IMAP_UNTAGGED_LSUB :
	                 IMAP_UNTAGGED_LIST);
	switch (idx) {
	case 0:
		assert_int_equal(l->attrs, IMAP_MBOX_HASNOCHILDREN | IMAP_MBOX_SENT);
		assert_int_equal(l->delimiter, '/');
		assert_string_equal(l->name, "Sent");
		assert_int_equal(l->attr_names.count, 2);
		assert_string_equal(l->attr_names.items[1], "\\Sent");
		break;
	case 1:
		assert_int_equal(l->attrs, IMAP_MBOX_NOSELECT | IMAP_MBOX_HASCHILDREN);
		assert_int_equal(l->delimiter, '.');
		assert_string_equal(l->name, "INBOX.Archive");
		break;
	case 2: /* literal name with quote and NUL */
		assert_int_equal(l->attrs, 0);
		assert_int_equal(l->name_len, 12);
		assert_memory_equal(l->name, "Foo \"Bar\"\0 x", 12);
		break;
	case 3:
		assert_int_equal(l->delimiter, '\0');
		assert_string_equal(l->name, "INBOX");
		break;
	case 4:
		assert_int_equal(l->delimiter, '\\');
		assert_string_equal(l->name, "Public Folders\\Team");
		break;
	case 5: /* LSUB ... NIL: a mailbox named NIL */
		assert_string_equal(l->name, "NIL");
		break;
	case 6: /* LIST-EXTENDED */
		assert_int_equal(l->attrs, IMAP_MBOX_SUBSCRIBED |
		                 IMAP_MBOX_HASNOCHILDREN);
		assert_string_equal(l->name, "Foo");
		assert_int_equal(r->raw_count, 5);
		break;
	case 7:
		assert_int_equal(l->attrs, IMAP_MBOX_HASNOCHILDREN | IMAP_MBOX_INBOX);
		break;
	case 8:
		assert_int_equal(l->attrs, IMAP_MBOX_ALL);
		assert_string_equal(l->name, "[Gmail]/All Mail");
		break;
	case 9:
		assert_int_equal(l->attrs, IMAP_MBOX_JUNK | IMAP_MBOX_FLAGGED);
		assert_string_equal(l->name, "[Gmail]/Trash");
		break;
	case 10:
		assert_int_equal(l->attrs, IMAP_MBOX_MARKED | IMAP_MBOX_UNMARKED |
		                 IMAP_MBOX_NONEXISTENT | IMAP_MBOX_REMOTE |
		                 IMAP_MBOX_ARCHIVE | IMAP_MBOX_DRAFTS |
		                 IMAP_MBOX_JUNK | IMAP_MBOX_TRASH | IMAP_MBOX_ALL |
		                 IMAP_MBOX_FLAGGED | IMAP_MBOX_NOINFERIORS);
		assert_int_equal(l->attr_names.count, 12);
		assert_string_equal(l->name, "Entw&APw-rfe");
		break;
	default:
		fail();
	}
}

static void
chk_status(const struct imap_response *r, int idx)
{
	const struct imap_status_data *s = &r->u.status;

	assert_int_equal(r->type, IMAP_UNTAGGED_STATUS);
	if (idx == 0) {
		assert_string_equal(s->mailbox, "Projects/Beta &- Co");
		assert_int_equal(s->have, IMAP_STATUS_MESSAGES |
		                 IMAP_STATUS_UIDNEXT | IMAP_STATUS_SIZE);
		assert_int_equal(s->messages, 3);
		assert_int_equal(s->uidnext, 4);
		assert_int_equal(s->size, 1234);
	} else if (idx == 1) {
		assert_string_equal(s->mailbox, "INBOX");
		assert_int_equal(s->have, 0xff);
		assert_int_equal(s->messages, 231);
		assert_int_equal(s->recent, 0);
		assert_int_equal(s->uidnext, 44292);
		assert_int_equal(s->uidvalidity, 4294967295u);
		assert_int_equal(s->unseen, 5);
		assert_int_equal(s->highestmodseq, 7011231777ull);
		assert_int_equal(s->deleted, 2);
		assert_int_equal(s->size, 18446744073709551615ull);
	} else {
		assert_int_equal(s->mailbox_len, 7);
		assert_memory_equal(s->mailbox, "a (b) c", 7);
		assert_int_equal(s->have, IMAP_STATUS_UNSEEN);
	}
}

static void
chk_namespace(const struct imap_response *r, int idx)
{
	const struct imap_namespace *ns = &r->u.ns;

	assert_int_equal(r->type, IMAP_UNTAGGED_NAMESPACE);
	if (idx == 0) {
		for (int g = 0; g < 3; g++) {
			assert_int_equal(ns->count[g], 1);
			assert_int_equal(ns->ns[g][0].delimiter, '.');
		}
		assert_string_equal(ns->ns[0][0].prefix, "INBOX.");
		assert_string_equal(ns->ns[1][0].prefix, "user.");
		assert_string_equal(ns->ns[2][0].prefix, "");
	} else if (idx == 1) {
		assert_int_equal(ns->count[0], 1);
		assert_int_equal(ns->count[1], 0);
		assert_int_equal(ns->count[2], 0);
		assert_int_equal(ns->ns[0][0].delimiter, '/');
	} else {
		assert_int_equal(ns->count[0], 2);
		assert_string_equal(ns->ns[0][1].prefix, "~");
		assert_int_equal(ns->ns[0][1].delimiter, '\0');
		assert_int_equal(ns->count[1], 0);
		assert_int_equal(ns->count[2], 1);
		assert_string_equal(ns->ns[2][0].prefix, "#shared.");
	}
}

static void
chk_search(const struct imap_response *r, int idx)
{
	const struct imap_search_data *s = &r->u.search;

	switch (idx) {
	case 0:
		assert_int_equal(r->type, IMAP_UNTAGGED_SEARCH);
		assert_int_equal(s->count, 3);
		assert_int_equal(s->nums[0], 2);
		assert_int_equal(s->nums[2], 882);
		assert_false(s->have_modseq);
		break;
	case 1:
		assert_int_equal(s->count, 0);
		break;
	case 2:
		assert_int_equal(s->count, 2);
		assert_true(s->have_modseq);
		assert_int_equal(s->modseq, 917162500);
		break;
	case 3:
		assert_int_equal(r->type, IMAP_UNTAGGED_ESEARCH);
		assert_string_equal(s->tag, "a3");
		assert_true(s->uid);
		assert_string_equal(s->all, "1:3,5");
		assert_int_equal(s->count, 4);
		assert_int_equal(s->nums[3], 5);
		break;
	case 4:
		assert_string_equal(s->tag, "A285");
		assert_true(s->have_min && s->have_max && s->have_count &&
		            s->have_modseq);
		assert_int_equal(s->min, 7);
		assert_int_equal(s->max, 3800);
		assert_int_equal(s->result_count, 15);
		assert_int_equal(s->modseq, 1234);
		assert_null(s->all);
		assert_int_equal(s->count, 0);
		break;
	case 5:
		assert_string_equal(s->tag, "x");
		assert_true(s->uid);
		assert_false(s->have_min || s->have_max || s->have_count);
		break;
	case 6:
		assert_null(s->tag);
		assert_false(s->uid);
		assert_int_equal(s->result_count, 0);
		assert_true(s->have_count);
		break;
	}
}

static void
chk_fetch_basic(const struct imap_response *r, int idx)
{
	const struct imap_fetch *f = &r->u.fetch;

	(void)idx;
	assert_int_equal(r->type, IMAP_UNTAGGED_FETCH);
	assert_int_equal(f->seq, 3);
	assert_int_equal(f->have, IMAP_FETCH_UID | IMAP_FETCH_RFC822_SIZE |
	                 IMAP_FETCH_FLAGS | IMAP_FETCH_INTERNALDATE |
	                 IMAP_FETCH_BODY);
	assert_int_equal(f->uid, 17);
	assert_int_equal(f->rfc822_size, 1234);
	assert_int_equal(f->flags.count, 2);
	assert_string_equal(f->flags.items[0], "\\Seen");
	assert_string_equal(f->flags.items[1], "$Label1");
	/* 1996-07-17 09:44:25 UTC */
	assert_int_equal(f->internaldate, 837596665);
	assert_int_equal(f->internaldate_tz, -420);
	assert_int_equal(f->body_count, 1);
	assert_string_equal(f->bodies[0].section, "");
	assert_int_equal(f->bodies[0].origin, 0);
	assert_false(f->bodies[0].binary);
	assert_value_str(f->bodies[0].value, "hello");
	assert_true(f->bodies[0].value->is_literal);
}

static void
chk_fetch_sections(const struct imap_response *r, int idx)
{
	const struct imap_fetch *f = &r->u.fetch;

	assert_int_equal(r->type, IMAP_UNTAGGED_FETCH);
	switch (idx) {
	case 0:
		assert_int_equal(f->seq, 1);
		assert_int_equal(f->uid, 5);
		assert_int_equal(f->body_count, 1);
		assert_string_equal(f->bodies[0].section,
		                    "HEADER.FIELDS (MESSAGE-ID)");
		assert_value_str(f->bodies[0].value,
		                 "Message-ID: <a@b>\r\n\r\n");
		break;
	case 1:
		assert_int_equal(f->body_count, 2);
		assert_string_equal(f->bodies[0].section, "");
		assert_int_equal(f->bodies[0].origin, 0);
		assert_value_str(f->bodies[0].value, "abc");
		assert_string_equal(f->bodies[1].section, "TEXT");
		assert_int_equal(f->bodies[1].origin, 1024);
		assert_value_str(f->bodies[1].value, "xyz");
		assert_false(f->bodies[1].value->is_literal);
		break;
	case 2:
		assert_int_equal(f->body_count, 1);
		assert_true(f->bodies[0].binary);
		assert_string_equal(f->bodies[0].section, "1");
		assert_int_equal(f->bodies[0].value->len, 3);
		assert_memory_equal(f->bodies[0].value->str, "a\0c", 3);
		assert_true(f->bodies[0].value->is_literal8);
		break;
	case 3:
		assert_int_equal(f->body_count, 3);
		assert_string_equal(f->bodies[0].section, "RFC822.HEADER");
		assert_string_equal(f->bodies[1].section, "RFC822");
		assert_string_equal(f->bodies[2].section, "RFC822.TEXT");
		assert_int_equal(f->bodies[2].value->type, IMAP_VALUE_NIL);
		break;
	case 4: /* ENVELOPE, BODYSTRUCTURE, X-GM-... skipped */
		assert_int_equal(f->have, IMAP_FETCH_UID | IMAP_FETCH_MODSEQ |
		                 IMAP_FETCH_FLAGS);
		assert_int_equal(f->uid, 9);
		assert_int_equal(f->modseq, 12121231000ull);
		assert_int_equal(f->flags.count, 0);
		assert_int_equal(f->body_count, 0);
		break;
	case 5:
		assert_int_equal(f->have, IMAP_FETCH_FLAGS | IMAP_FETCH_UID);
		assert_int_equal(f->uid, 4);
		assert_int_equal(f->seq, 12);
		break;
	case 6: /* lower case, leading-space day */
		assert_int_equal(f->uid, 77);
		assert_int_equal(f->internaldate, 1577836800);
		assert_int_equal(f->internaldate_tz, 0);
		break;
	default:
		fail();
	}
}

static void
chk_numbers(const struct imap_response *r, int idx)
{
	static const struct {
		enum imap_untagged_type type;
		uint32_t n;
	} want[] = {
		{ IMAP_UNTAGGED_EXISTS, 172 },
		{ IMAP_UNTAGGED_RECENT, 0 },
		{ IMAP_UNTAGGED_EXPUNGE, 44 },
		{ IMAP_UNTAGGED_EXISTS, 4294967295u },
	};

	assert_int_equal(r->type, want[idx].type);
	assert_int_equal(r->u.number, want[idx].n);
}

static void
chk_flags_vanished(const struct imap_response *r, int idx)
{
	if (idx == 0) {
		assert_int_equal(r->type, IMAP_UNTAGGED_FLAGS);
		assert_int_equal(r->u.flags.count, 5);
		assert_string_equal(r->u.flags.items[4], "\\Draft");
	} else if (idx == 1) {
		assert_int_equal(r->type, IMAP_UNTAGGED_VANISHED);
		assert_true(r->u.vanished.earlier);
		assert_string_equal(r->u.vanished.uids, "41,43:116");
	} else {
		assert_int_equal(r->type, IMAP_UNTAGGED_VANISHED);
		assert_false(r->u.vanished.earlier);
		assert_string_equal(r->u.vanished.uids, "405,407");
	}
}

static void
chk_other(const struct imap_response *r, int idx)
{
	if (idx == 0) {
		assert_int_equal(r->type, IMAP_UNTAGGED_ID);
		assert_int_equal(r->raw_count, 2);
		assert_int_equal(r->raw[1].type, IMAP_VALUE_LIST);
		assert_value_str(&r->raw[1].list[1], "Dovecot");
	} else if (idx == 1) {
		assert_int_equal(r->type, IMAP_UNTAGGED_ID);
		assert_int_equal(r->raw[1].type, IMAP_VALUE_NIL);
	} else {
		assert_int_equal(r->type, IMAP_UNTAGGED_OTHER);
		assert_true(r->raw_count >= 2);
	}
}

static void
chk_streamed(const struct imap_response *r, int idx)
{
	const struct imap_fetch *f = &r->u.fetch;
	const struct tstream *s;

	(void)idx;
	assert_int_equal(f->uid, 7);
	assert_int_equal(f->body_count, 2);
	s = stream_of(f->bodies[0].value);
	assert_int_equal(f->bodies[0].value->stream_size, 26);
	assert_int_equal(s->got, 26);
	assert_memory_equal(buf_data(&s->data), "abcdefghijklmnopqrstuvwxyz", 26);
	assert_int_equal(s->ended, 1);
	assert_int_equal(s->released, 0);
	/* the small one stays in memory */
	assert_value_str(f->bodies[1].value, "abcd");
	s = stream_of(&r->raw[2].list[3]);
	assert_true(s == f->bodies[0].value->stream);
}

/* ---- the cases ---- */

static const struct imap_parser_limits small_lit = {
	.max_literal_mem = 4, .max_literal = 100, .max_literal_mem_total = 8,
};
static const struct imap_parser_limits short_line = { .max_line = 64 };
static const struct imap_parser_limits shallow = { .max_depth = 4 };
static const struct imap_parser_limits few_tokens = { .max_tokens = 5 };

/* sizeof, not strlen: some inputs hold NUL bytes */
#define IN(s) .in = s, .len = sizeof(s) - 1
#define OK1(n, s, fn) { .name = n, IN(s), .nresp = 1, .check = fn }
#define OKN(n, s, k, fn) { .name = n, IN(s), .nresp = k, .check = fn }
#define ERR(n, s, e) { .name = n, IN(s), .error = e }

static const struct tcase status_cases[] = {
	OK1("dovecot greeting",
	    "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE "
	    "LITERAL+ STARTTLS AUTH=PLAIN] Dovecot ready.\r\n",
	    chk_dovecot_greeting),
	OK1("cyrus greeting",
	    "* OK [CAPABILITY IMAP4rev1 LITERAL+ ID ENABLE AUTH=PLAIN "
	    "AUTH=LOGIN SASL-IR] mail.example.com Cyrus IMAP 3.4.3 server "
	    "ready\r\n", chk_cyrus_greeting),
	OK1("courier greeting",
	    "* OK [CAPABILITY IMAP4rev1 UIDPLUS CHILDREN NAMESPACE "
	    "THREAD=ORDEREDSUBJECT THREAD=REFERENCES SORT QUOTA IDLE ACL "
	    "ACL2=UNION STARTTLS] Courier-IMAP ready. Copyright 1998-2018 "
	    "Double Precision, Inc.  See COPYING for distribution "
	    "information.\r\n", chk_courier_greeting),
	OK1("appenduid", "a1 OK [APPENDUID 38505 3955] APPEND completed\r\n",
	    chk_appenduid),
	OK1("copyuid",
	    "A003 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n",
	    chk_copyuid),
	OK1("trycreate", "a3 NO [TRYCREATE] Mailbox doesn't exist: Foo\r\n",
	    chk_trycreate),
	OK1("permanentflags",
	    "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen "
	    "\\Draft \\*)] Flags permitted.\r\n", chk_permflags),
	OKN("select codes",
	    "* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"
	    "* OK [UIDNEXT 4392] Predicted next UID\r\n"
	    "* OK [UNSEEN 12] Message 12 is first unseen\r\n"
	    "* OK [HIGHESTMODSEQ 90060128194045007] Highest\r\n"
	    "* OK [NOMODSEQ] Sorry, this mailbox format doesn't support "
	    "modsequences\r\n"
	    "a4 OK [READ-WRITE] Select completed (0.001 + 0.000 secs).\r\n"
	    "a5 ok [read-only] done\r\n", 7, chk_select_codes),
	OKN("misc codes",
	    "* NO [ALERT] System shutdown in 10 minutes\r\n"
	    "a1 NO [OVERQUOTA] Quota exceeded (mailbox for user is full)\r\n"
	    "a2 NO [LIMIT] Too many\r\n"
	    "* OK [CLOSED] Previous mailbox closed.\r\n"
	    "* OK [UIDNEXT abc] odd\r\n"
	    "a3 OK [APPENDUID 1 *] odd set\r\n"
	    "a4 NO [UNAVAILABLE] Backend down\r\n"
	    "a5 NO [REFERRAL imap://user;AUTH=GSSAPI@SERVER2/] Go away\r\n",
	    8, chk_misc_codes),
	OKN("RFC 5530 codes",
	    "b1 NO [ALREADYEXISTS] Mailbox exists\r\n"
	    "b2 NO [NONEXISTENT] No such mailbox\r\n"
	    "b3 NO [OVERQUOTA] Quota exceeded\r\n"
	    "b4 NO [LIMIT] Message too large\r\n"
	    "b5 NO [INUSE] Mailbox in use\r\n"
	    "b6 NO [SERVERBUG] Internal error\r\n"
	    "b7 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
	    "b8 NO [CONTACTADMIN] Ask the admin\r\n"
	    "b9 NO No space left on device\r\n"
	    "b10 NO Quota exceeded (mailbox for user is full)\r\n"
	    "b11 NO Mailbox already exists\r\n",
	    11, chk_rfc5530),
	OK1("badcharset",
	    "a5 NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset\r\n",
	    chk_badcharset),
	OKN("odd codes",
	    "* OK [X-FOO bar] baz\r\n"
	    "* NO [X-ODD (unbalanced \"x] text (with \"quote\r\n"
	    "x BAD [oops no close\r\n", 3, chk_xfoo),
	OKN("free text is not tokenized",
	    "x1 BAD Error in IMAP command: Unexpected ')' \" {5}\r\n"
	    "* 3 EXISTS\r\n", 2, chk_free_text),
	OKN("continuations",
	    "+\r\n+ \r\n"
	    "+ YGgGCSqGSIb3EgECAgIAb1kwV6ADAgEFoQMCAQ+iSzBJoAMCAQGiQgRA\r\n"
	    "+ Ready for literal data\r\n+ idling\n", 5, chk_continuation),
	OKN("bye preauth bare status",
	    "* BYE Logging out\r\n"
	    "* PREAUTH [CAPABILITY IMAP4rev1] Logged in as bob\r\n"
	    "a9 OK\r\n"
	    "b.2 NO [ALERT]\r\n", 4, chk_bye_preauth),
};

static const struct tcase data_cases[] = {
	OKN("capability enabled",
	    "* CAPABILITY IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE "
	    "COMPRESS=DEFLATE AUTH=PLAIN\r\n"
	    "* ENABLED CONDSTORE QRESYNC\r\n"
	    "* ENABLED\r\n", 3, chk_capability),
	OKN("list",
	    "* LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\n"
	    "* LIST (\\Noselect \\HasChildren) \".\" INBOX.Archive\r\n"
	    "* LIST () \"/\" {12}\r\nFoo \"Bar\"\0 x\r\n"
	    "* LIST (\\HasNoChildren) NIL INBOX\r\n"
	    "* LIST () \"\\\\\" \"Public Folders\\\\Team\"\r\n"
	    "* LSUB () \".\" NIL\r\n"
	    "* LIST (\\Subscribed \\HasNoChildren) \"/\" \"Foo\" "
	    "(\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n"
	    "* XLIST (\\HasNoChildren \\Inbox) \"/\" \"Inbox\"\r\n"
	    "* XLIST (\\AllMail) \"/\" \"[Gmail]/All Mail\"\r\n"
	    "* LIST (\\Spam \\starred) \"/\" [Gmail]/Trash\r\n"
	    "* LIST (\\Marked \\Unmarked \\NonExistent \\Remote \\Archive "
	    "\\Drafts \\Junk \\Trash \\All \\Flagged \\Noinferiors \\X-Foo) "
	    "\"/\" \"Entw&APw-rfe\"\r\n",
	    11, chk_list),
	OKN("status",
	    "* STATUS \"Projects/Beta &- Co\" (MESSAGES 3 UIDNEXT 4 SIZE 1234)\r\n"
	    "* STATUS INBOX (MESSAGES 231 RECENT 0 UIDNEXT 44292 UIDVALIDITY "
	    "4294967295 UNSEEN 5 HIGHESTMODSEQ 7011231777 DELETED 2 "
	    "SIZE 18446744073709551615 MAILBOXID (F2212ea87-6097))\r\n"
	    "* STATUS {7}\r\na (b) c (X-UNKNOWN \"s\" UNSEEN 0)\r\n",
	    3, chk_status),
	OKN("namespace",
	    "* NAMESPACE ((\"INBOX.\" \".\")) ((\"user.\" \".\")) "
	    "((\"\" \".\"))\r\n"
	    "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n"
	    "* NAMESPACE ((\"\" \"/\" \"X-PARAM\" (\"FLAG1\" \"FLAG2\")) "
	    "(\"~\" NIL)) NIL ((\"#shared.\" \".\"))\r\n", 3, chk_namespace),
	OKN("search esearch",
	    "* SEARCH 2 84 882\r\n"
	    "* SEARCH\r\n"
	    "* SEARCH 2 5 (MODSEQ 917162500)\r\n"
	    "* ESEARCH (TAG \"a3\") UID ALL 1:3,5\r\n"
	    "* ESEARCH (TAG \"A285\") UID MIN 7 MAX 3800 COUNT 15 "
	    "MODSEQ 1234\r\n"
	    "* ESEARCH (TAG \"x\") UID\r\n"
	    "* ESEARCH COUNT 0 PARTIAL (1:10 NIL)\r\n", 7, chk_search),
	OK1("fetch basic",
	    "* 3 FETCH (UID 17 RFC822.SIZE 1234 FLAGS (\\Seen $Label1) "
	    "INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" BODY[] {5}\r\n"
	    "hello)\r\n", chk_fetch_basic),
	OKN("fetch sections",
	    "* 1 FETCH (BODY[HEADER.FIELDS (MESSAGE-ID)] {21}\r\n"
	    "Message-ID: <a@b>\r\n\r\n UID 5)\r\n"
	    "* 2 FETCH (BODY[]<0> {3}\r\nabc BODY[TEXT]<1024> \"xyz\")\r\n"
	    "* 3 FETCH (BINARY[1] ~{3}\r\na\0c)\r\n"
	    "* 4 FETCH (RFC822.HEADER {2}\r\nh\n RFC822 {0}\r\n "
	    "RFC822.TEXT NIL)\r\n"
	    "* 5 FETCH (ENVELOPE (\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" "
	    "\"IMAP4rev1 WG mtg summary and minutes\" ((\"Terry Gray\" NIL "
	    "\"gray\" \"cac.washington.edu\")) NIL NIL NIL NIL NIL "
	    "\"<B27397-0100000@cac.washington.edu>\") BODYSTRUCTURE "
	    "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" "
	    "3028 92) X-GM-MSGID 1278455344230334865 X-GM-LABELS (\\Inbox "
	    "\"Foo bar\") UID 9 MODSEQ (12121231000) FLAGS () "
	    "BINARY.SIZE[1] 3 BODY (\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 3 1)"
	    ")\r\n"
	    "* 12 FETCH (FLAGS (\\Seen) UID 4)\r\n"
	    "* 1 fetch (uid 77 internaldate \" 1-Jan-2020 00:00:00 +0000\")\r\n",
	    7, chk_fetch_sections),
	OKN("exists recent expunge",
	    "* 172 EXISTS\r\n* 0 RECENT\n* 44 EXPUNGE\r\n* 4294967295 EXISTS\r\n",
	    4, chk_numbers),
	OKN("flags vanished",
	    "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
	    "* VANISHED (EARLIER) 41,43:116\r\n"
	    "* VANISHED 405,407\r\n", 3, chk_flags_vanished),
	OKN("id and other",
	    "* ID (\"name\" \"Dovecot\")\r\n"
	    "* ID NIL\r\n"
	    "* QUOTAROOT INBOX \"\"\r\n"
	    "* QUOTA \"\" (STORAGE 10 512)\r\n"
	    "* 5 XYZZY\r\n"
	    "* \"odd\" thing\r\n"
	    "* METADATA \"\" (/shared/comment {3}\r\nabc)\r\n", 7, chk_other),
};

#define SINK(n, s, lim, k, e, fn) \
	{ .name = n, IN(s), .limits = lim, .sink = true, .nresp = k, \
	  .error = e, .check = fn }

static const struct tcase literal_cases[] = {
	SINK("streamed and small literal",
	     "* 9 FETCH (UID 7 BODY[] {26}\r\nabcdefghijklmnopqrstuvwxyz "
	     "BODY[HEADER] {4}\r\nabcd)\r\n", &small_lit, 1, NULL, chk_streamed),
	SINK("two streamed literals then next response",
	     "* 1 FETCH (BODY[1] {5}\r\n12345 BODY[2] ~{6}\r\n\0\0\0\0\0\0)\r\n"
	     "* 2 EXISTS\r\n", &small_lit, 2, NULL, NULL),
	SINK("streamed literal, response fails after it",
	     "* 1 FETCH (BODY[] {10}\r\n0123456789 UID abc)\r\n",
	     &small_lit, 0, "FETCH: bad UID abc", NULL),
	SINK("literal over max_literal",
	     "* 1 FETCH (BODY[] {101}\r\n", &small_lit, 0,
	     "literal of 101 bytes exceeds limit 100", NULL),
	{ .name = "literal refused", IN("* 1 FETCH (BODY[] {10}\r\n"),
	  .limits = &small_lit, .sink = true, .sink_refuse = true,
	  .error = "literal refused by sink" },
	{ .name = "sink data fails",
	  IN("* 1 FETCH (BODY[] {10}\r\n0123456789)\r\n"),
	  .limits = &small_lit, .sink = true, .sink_fail_data = true,
	  .error = "literal sink failed" },
	{ .name = "sink end fails",
	  IN("* 1 FETCH (BODY[] {10}\r\n0123456789 BODY[1] {5}\r\n12345)\r\n"),
	  .limits = &small_lit, .sink = true, .sink_fail_end_at = 1,
	  .error = "literal sink failed to finish" },
	{ .name = "second sink end fails",
	  IN("* 1 FETCH (BODY[] {10}\r\n0123456789 BODY[1] {5}\r\n12345 "
	     "BODY[2] {6}\r\n123456)\r\n"),
	  .limits = &small_lit, .sink = true, .sink_fail_end_at = 2,
	  .error = "literal sink failed to finish" },
	{ .name = "no sink", IN("* 1 FETCH (BODY[] {10}\r\n0123456789)\r\n"),
	  .limits = &small_lit, .error = "no sink is set" },
	{ .name = "in-memory total",
	  IN("* X {4}\r\nabcd {4}\r\nabcd {4}\r\nabcd\r\n"),
	  .limits = &small_lit, .sink = true,
	  .error = "in-memory literals of one response exceed 8 bytes" },
	OKN("literal+ and empty literal",
	    "* LIST () \"/\" {3+}\r\nabc\r\n* LIST () \"/\" {0}\r\n\r\n", 2,
	    NULL),
	OK1("literal right before the next line",
	    "* ID ({2}\r\nab{2}\r\ncd)\r\n", NULL),
	OK1("brace in mid-line is an atom", "* X a{5} {b}\r\n", NULL),
};

static const struct tcase error_cases[] = {
	ERR("fetch uid abc", "* 12 FETCH (UID abc)\r\n", "FETCH: bad UID abc"),
	ERR("fetch uid 0", "* 12 FETCH (UID 0)\r\n", "FETCH: bad UID 0"),
	ERR("fetch no list", "* 12 FETCH UID 5\r\n",
	    "FETCH: expected one parenthesized item list"),
	ERR("fetch item without value", "* 1 FETCH (UID 5 FLAGS)\r\n",
	    "FETCH: item FLAGS has no value"),
	ERR("fetch bad date",
	    "* 1 FETCH (INTERNALDATE \"32-Jul-1996 02:44:25 -0700\")\r\n",
	    "FETCH: bad INTERNALDATE 32-Jul-1996"),
	ERR("fetch bad origin", "* 1 FETCH (BODY[]<x> \"a\")\r\n",
	    "FETCH: bad partial origin in BODY[]<x>"),
	ERR("fetch body atom", "* 1 FETCH (BODY[] abc)\r\n",
	    "FETCH: value of BODY[] is not a string"),
	ERR("fetch flags not list", "* 1 FETCH (FLAGS \\Seen)\r\n",
	    "FETCH: FLAGS is \\Seen, not a list"),
	ERR("fetch modseq", "* 1 FETCH (MODSEQ 5)\r\n",
	    "FETCH: MODSEQ is not (number)"),
	ERR("fetch too many bodies",
	    "* 1 FETCH (BODY[1] NIL BODY[2] NIL BODY[3] NIL BODY[4] NIL "
	    "BODY[5] NIL)\r\n", "FETCH: more than 4 body sections"),
	ERR("fetch seq 0", "* 0 FETCH (UID 1)\r\n", "FETCH: bad message number 0"),
	ERR("status odd", "* STATUS INBOX (MESSAGES)\r\n",
	    "STATUS: item list has an odd number"),
	ERR("status bad value", "* STATUS INBOX (MESSAGES x)\r\n",
	    "STATUS: bad value x for MESSAGES"),
	ERR("status no list", "* STATUS INBOX\r\n",
	    "STATUS: expected mailbox and (items)"),
	ERR("list missing name", "* LIST (\\Noselect) \"/\"\r\n",
	    "LIST: expected (attributes) delimiter name"),
	ERR("list bad delimiter", "* LIST () \"//\" foo\r\n",
	    "LIST: bad hierarchy delimiter //"),
	ERR("list attrs not list", "* LIST \\Noselect \"/\" foo\r\n",
	    "LIST: attributes are \\Noselect, not a list"),
	ERR("namespace two groups", "* NAMESPACE NIL NIL\r\n",
	    "NAMESPACE: expected three groups"),
	ERR("namespace bad entry", "* NAMESPACE ((\"\")) NIL NIL\r\n",
	    "NAMESPACE: bad entry in group 1"),
	ERR("search not number", "* SEARCH 1 x\r\n",
	    "SEARCH: x is not a message number"),
	ERR("vanished bad set", "* VANISHED (EARLIER) 1:*\r\n",
	    "VANISHED: bad UID set 1:*"),
	ERR("exists too big", "* 4294967296 EXISTS\r\n",
	    "EXISTS: number 4294967296 out of range"),
	ERR("expunge 0", "* 0 EXPUNGE\r\n", "EXPUNGE: number 0 out of range"),
	ERR("flags not list", "* FLAGS \\Seen\r\n", "FLAGS: expected one flag list"),
	ERR("capability string", "* CAPABILITY IMAP4rev1 \"x\"\r\n",
	    "CAPABILITY: x is not an atom"),
	ERR("literal 2^63",
	    "* 1 FETCH (BODY[] {9223372036854775808}\r\n",
	    "literal of 9223372036854775808 bytes exceeds limit 4294967296"),
	ERR("literal 2^64", "* 1 FETCH (BODY[] {18446744073709551616}\r\n",
	    "literal size 18446744073709551616 is out of range"),
	ERR("literal 2^64+1", "* 1 FETCH (BODY[] ~{18446744073709551617}\r\n",
	    "literal size 18446744073709551617 is out of range"),
	ERR("literal 20 nines", "* 1 FETCH (BODY[] {99999999999999999999}\r\n",
	    "literal size 99999999999999999999 is out of range"),
	{ .name = "line over limit", .limits = &short_line,
	  IN("* OK 0123456789012345678901234567890123456789012345678901234"
	        "56789\r\n"), .error = "response line longer than 64 bytes" },
	{ .name = "line over limit across literal", .limits = &short_line,
	  IN("* 1 FETCH (BODY[1] {3}\r\nabc BODY[2] {3}\r\nabc BODY[3] {3}"
	        "\r\nabc BODY[4] {3}\r\nabc)\r\n"),
	  .error = "response line longer than 64 bytes" },
	{ .name = "line at limit", .limits = &short_line,
	  IN("* OK 01234567890123456789012345678901234567890123456789012345"
	        "6\r\n"), .nresp = 1 },
	{ .name = "nesting over limit", .limits = &shallow,
	  IN("* X (((((a)))))\r\n"), .error = "list nesting deeper than 4" },
	{ .name = "nesting at limit", .limits = &shallow,
	  IN("* X ((((a))))\r\n"), .nresp = 1 },
	ERR("nesting over default",
	    "* X ((((((((((((((((((((((((((((((((("
	    ")))))))))))))))))))))))))))))))))\r\n",
	    "list nesting deeper than 32"),
	{ .name = "too many tokens", .limits = &few_tokens,
	  IN("* SEARCH 1 2 3 4 5\r\n"), .error = "too many tokens" },
	{ .name = "tokens at limit", .limits = &few_tokens,
	  IN("* SEARCH 1 2 3 4\r\n"), .nresp = 1 },
	ERR("esearch all over token limit",
	    "* ESEARCH (TAG \"a\") UID ALL 1:4294967295\r\n",
	    "ESEARCH: ALL holds more than 2000000 numbers"),
	{ .name = "esearch all at token limit", .limits = &few_tokens,
	  IN("* ESEARCH ALL 1:5\r\n"), .nresp = 1 },
	{ .name = "esearch all over small limit", .limits = &few_tokens,
	  IN("* ESEARCH ALL 1:6\r\n"), .error = "ALL holds more than 5" },
	{ .name = "NUL in quoted string",
	  IN("* LIST () \"/\" \"a\0b\"\r\n"),
	  .error = "NUL byte in response line" },
	ERR("CR in quoted string", "* LIST () \"/\" \"a\rb\"\r\n",
	    "bare CR or LF in quoted string"),
	ERR("unterminated quoted across lines",
	    "* LIST () \"/\" \"abc\r\ndef\"\r\n", "unterminated quoted string"),
	ERR("unterminated quoted before literal",
	    "* LIST () \"/\" \"abc {3}\r\ndef\r\n", "unterminated quoted string"),
	ERR("garbage tag", "a(1 OK done\r\n", "invalid tag 'a(1'"),
	ERR("control tag", "\x01\x02 OK done\r\n", "invalid tag '?\?'"),
	ERR("empty line", "\r\n", "empty response line"),
	ERR("bare lf empty line", "\n", "empty response line"),
	ERR("star alone", "*\r\n", "response has no data after its tag"),
	ERR("star space", "* \r\n", "empty untagged response"),
	ERR("tagged without status", "a1 FETCH 1\r\n",
	    "tagged response a1 without OK, NO or BAD"),
	ERR("unexpected close", "* X a)\r\n", "unexpected ')'"),
	ERR("unterminated list", "* X (a\r\n", "unterminated list"),
	ERR("control char in atom", "* X a\x01" "b\r\n",
	    "control character 0x01 in response"),
	{ .name = "error after good responses",
	  IN("* 1 EXISTS\r\n* 2 EXISTS\r\n* 3 EXISTS x\r\n* 4 EXISTS\r\n"),
	  .nresp = 2, .error = "EXISTS: unexpected data after it" },
	{ .name = "incomplete response", IN("* 1 FETCH (BODY[] {10}\r\n01234"),
	  .nresp = 0 },
	ERR("fetch no close bracket", "* 1 FETCH (BODY[abc NIL)\r\n",
	    "FETCH: no ']' in BODY[abc"),
	ERR("fetch name not atom", "* 1 FETCH (\"UID\" 5)\r\n",
	    "FETCH: item name UID is not an atom"),
	ERR("fetch bad size", "* 1 FETCH (RFC822.SIZE -1)\r\n",
	    "FETCH: bad RFC822.SIZE -1"),
	ERR("fetch long value", "* 1 FETCH (UID 1234567890123456789012345678"
	    "90123456789012345678901234567890)\r\n",
	    "FETCH: bad UID 12345678901234567890123456789012345678901234..."),
	ERR("fetch flags with list", "* 1 FETCH (FLAGS (\\Seen (x)))\r\n",
	    "FETCH FLAGS: a list is not an atom"),
	ERR("list bad name", "* LIST () \"/\" (a)\r\n",
	    "LIST: bad mailbox name (a list)"),
	ERR("status item not atom", "* STATUS a (\"MESSAGES\" 1)\r\n",
	    "STATUS: item name MESSAGES is not an atom"),
	ERR("namespace group", "* NAMESPACE x NIL NIL\r\n",
	    "NAMESPACE: group 1 is x, not a list or NIL"),
	ERR("esearch bad tag", "* ESEARCH (TAG (x))\r\n", "ESEARCH: bad TAG"),
	ERR("esearch name", "* ESEARCH UID (x) 1\r\n",
	    "ESEARCH: item name a list is not an atom"),
	ERR("esearch no value", "* ESEARCH MIN\r\n", "ESEARCH: MIN has no value"),
	ERR("esearch bad min", "* ESEARCH MIN 0\r\n", "ESEARCH: bad MIN"),
	ERR("esearch bad max", "* ESEARCH MAX x\r\n", "ESEARCH: bad MAX"),
	ERR("esearch bad count", "* ESEARCH COUNT -1\r\n", "ESEARCH: bad COUNT"),
	ERR("esearch bad modseq", "* ESEARCH MODSEQ x\r\n", "ESEARCH: bad MODSEQ"),
	ERR("esearch bad all", "* ESEARCH ALL 3:*\r\n", "ESEARCH: bad ALL set 3:*"),
	ERR("vanished modifier", "* VANISHED (LATER) 1\r\n",
	    "VANISHED: unknown modifier list"),
	ERR("vanished no set", "* VANISHED\r\n", "VANISHED: bad UID set nothing"),
	ERR("vanished streamed", "* VANISHED ({3}\r\nabc) 1\r\n",
	    "VANISHED: unknown modifier list"),
};

static void
chk_lenient(const struct imap_response *r, int idx)
{
	switch (idx) {
	case 0:
		assert_int_equal(r->type, IMAP_UNTAGGED_OTHER);
		assert_string_equal(r->raw[1].str, "a{5}");
		break;
	case 1:
		assert_string_equal(r->raw[1].str, "BODY[abc");
		assert_int_equal(r->raw_count, 2);
		break;
	case 2: /* only \" and \\ are escapes */
		assert_value_str(&r->raw[1], "a\\b\\c");
		break;
	case 3:
		assert_string_equal(r->code.name, "X-Q");
		assert_int_equal(r->code.arg_count, 1);
		assert_string_equal(r->code.args[0].str, "(a]b)");
		assert_string_equal(r->text, "t");
		break;
	case 4:
		assert_value_str(&r->code.args[0], "a\"]b");
		assert_string_equal(r->text, "u");
		break;
	case 5:
		assert_int_equal(r->u.fetch.body_count, 1);
		assert_string_equal(r->u.fetch.bodies[0].section, "TEXT");
		break;
	case 6: /* tagged BYE is tolerated */
		assert_int_equal(r->kind, IMAP_RESP_TAGGED);
		assert_int_equal(r->status, IMAP_STATUS_BYE);
		break;
	default:
		fail();
	}
}

static const struct tcase lenient_cases[] = {
	OKN("lenient tokens",
	    "* X a{5}\r\n"
	    "* X BODY[abc\r\n"
	    "* X \"a\\b\\\\c\"\r\n"
	    "* OK [X-Q (a]b)] t\r\n"
	    "* OK [X-Q \"a\\\"]b\"] u\r\n"
	    "* 1 FETCH (BODY.PEEK[TEXT] NIL)\r\n"
	    "a1 BYE odd\r\n", 7, chk_lenient),
};

static void
test_status_responses(void **state)
{
	(void)state;
	run_table(status_cases, N_ELEMENTS(status_cases));
}

static void
test_untagged_data(void **state)
{
	(void)state;
	run_table(data_cases, N_ELEMENTS(data_cases));
}

static void
test_literals(void **state)
{
	(void)state;
	run_table(literal_cases, N_ELEMENTS(literal_cases));
}

static void
test_errors(void **state)
{
	(void)state;
	run_table(error_cases, N_ELEMENTS(error_cases));
}

static void
test_lenient(void **state)
{
	(void)state;
	run_table(lenient_cases, N_ELEMENTS(lenient_cases));
}

/* ---- lifecycle of streamed handles ---- */

static void
feed_ok(struct imap_parser *p, const char *s, size_t len,
        const struct imap_response **r_r)
{
	size_t consumed;
	const char *err = NULL;

	assert_int_equal(imap_parser_feed(p, s, len, &consumed, r_r, &err),
	                 IMAP_PARSE_OK);
	assert_int_equal(consumed, len);
}

static void
test_stream_release_and_steal(void **state)
{
	static const char in[] =
		"* 1 FETCH (BODY[1] {5}\r\n12345 BODY[2] {6}\r\n123456)\r\n";
	struct imap_parser *p = imap_parser_new(&small_lit);
	struct imap_literal_sink sink;
	struct tsink ts;
	const struct imap_response *r;
	void *h;

	(void)state;
	ts_init(&ts, &sink);
	imap_parser_set_sink(p, &sink);
	feed_ok(p, in, sizeof(in) - 1, &r);
	assert_int_equal(ts.n, 2);
	assert_int_equal(ts.s[0].ended, 1);
	assert_int_equal(ts.s[1].ended, 1);
	h = imap_value_steal_stream(r->u.fetch.bodies[0].value);
	assert_ptr_equal(h, &ts.s[0]);
	assert_null(imap_value_steal_stream(&r->raw[0]));
	/* released at the next feed, except the stolen one */
	assert_int_equal(ts.s[1].released, 0);
	feed_ok(p, "* 2 EXISTS\r\n", 12, &r);
	assert_int_equal(ts.s[0].released, 0);
	assert_int_equal(ts.s[1].released, 1);

	/* released by reset too */
	feed_ok(p, in, sizeof(in) - 1, &r);
	imap_parser_reset(p);
	assert_int_equal(ts.s[2].released, 1);
	assert_int_equal(ts.s[3].released, 1);

	/* reset mid-literal aborts */
	{
		size_t consumed;
		const char *err;

		assert_int_equal(imap_parser_feed(p, in, 30, &consumed, &r, &err),
		                 IMAP_PARSE_MORE);
		assert_int_equal(ts.n, 5);
		imap_parser_reset(p);
		assert_int_equal(ts.s[4].aborted, 1);
		assert_int_equal(ts.s[4].ended, 0);
	}
	/* freed after a response: released */
	feed_ok(p, in, sizeof(in) - 1, &r);
	imap_parser_free(&p);
	assert_int_equal(ts.s[5].released, 1);
	assert_int_equal(ts.s[6].released, 1);
	ts_free(&ts);
}

static void
test_set_sink(void **state)
{
	static const char in[] = "* 1 FETCH (BODY[1] {5}\r\n12345)\r\n";
	/* max_literal_mem_total below max_literal_mem is raised to it */
	static const struct imap_parser_limits lim = {
		.max_literal_mem = 4, .max_literal_mem_total = 1,
	};
	struct imap_parser *p = imap_parser_new(&lim);
	struct imap_literal_sink sink;
	struct tsink ts;
	const struct imap_response *r;
	const char *err = NULL;
	size_t consumed;

	(void)state;
	ts_init(&ts, &sink);
	imap_parser_set_sink(p, &sink);
	feed_ok(p, "* 1 FETCH (BODY[1] {4}\r\nabcd)\r\n", 31, &r);
	assert_value_str(r->u.fetch.bodies[0].value, "abcd");
	feed_ok(p, in, sizeof(in) - 1, &r);
	assert_int_equal(ts.n, 1);
	/* switching retires the response: its handle goes back now */
	imap_parser_set_sink(p, NULL);
	assert_int_equal(ts.s[0].released, 1);
	assert_int_equal(imap_parser_feed(p, in, sizeof(in) - 1, &consumed,
	                                  &r, &err), IMAP_PARSE_ERROR);
	assert_non_null(strstr(err, "no sink is set"));
	imap_parser_reset(p);
	/* switching with a literal open fails the parser, aborting it */
	imap_parser_set_sink(p, &sink);
	assert_int_equal(imap_parser_feed(p, in, 26, &consumed, &r, &err),
	                 IMAP_PARSE_MORE);
	imap_parser_set_sink(p, &sink);
	assert_int_equal(ts.s[1].aborted, 1);
	assert_int_equal(imap_parser_feed(p, in + 26, sizeof(in) - 27,
	                                  &consumed, &r, &err), IMAP_PARSE_ERROR);
	assert_string_equal(err, "literal sink changed in the middle of a "
	                    "response");
	imap_parser_reset(p);
	feed_ok(p, in, sizeof(in) - 1, &r);
	imap_parser_free(&p);
	ts_check_closed(&ts);
	ts_free(&ts);
}

/* min_size: a literal that fits in memory goes to the sink anyway when
 * it is at least min_size bytes; smaller ones and an empty one stay. */
static void
test_sink_min_size(void **state)
{
	static const char F1[] = "* 1 FETCH (BODY[] {2}\r\nab)\r\n";
	static const char F2[] = "* 2 FETCH (BODY[] {3}\r\nabc)\r\n";
	static const char F3[] = "* 3 FETCH (BODY[] {0}\r\n)\r\n";
	struct imap_parser *p = imap_parser_new(NULL);
	struct imap_literal_sink sink;
	struct tsink ts;
	const struct imap_response *r;

	(void)state;
	ts_init(&ts, &sink);
	sink.min_size = 3;
	imap_parser_set_sink(p, &sink);
	feed_ok(p, F1, sizeof(F1) - 1, &r);
	assert_value_str(r->u.fetch.bodies[0].value, "ab");
	assert_int_equal(ts.n, 0);
	feed_ok(p, F2, sizeof(F2) - 1, &r);
	assert_int_equal(ts.n, 1);
	assert_int_equal(r->u.fetch.bodies[0].value->type, IMAP_VALUE_STREAMED);
	assert_int_equal(r->u.fetch.bodies[0].value->stream_size, 3);
	assert_int_equal(ts.s[0].got, 3);
	feed_ok(p, F3, sizeof(F3) - 1, &r);
	assert_int_equal(ts.n, 1);
	imap_parser_free(&p);
	ts_check_closed(&ts);
	ts_free(&ts);
}

/* ---- zero-copy literal input (imap_parser_literal_place) ---- */

struct psink {
	char *data;
	uint64_t size, len;
	int placed_calls, data_calls;
};

static void *
ps_begin(void *ctx, uint64_t size)
{
	struct psink *t = ctx;

	t->data = malloc((size_t)size + 1);
	t->size = size;
	t->len = 0;
	return t->data;
}

static int
ps_data(void *ctx, void *handle, const void *data, size_t len)
{
	struct psink *t = ctx;

	assert_true(len <= t->size - t->len);
	memcpy(t->data + t->len, data, len);
	t->len += len;
	t->data_calls++;
	return 0;
}

static void *
ps_place(void *ctx, void *handle, size_t *room_r)
{
	struct psink *t = ctx;

	*room_r = (size_t)(t->size - t->len);
	return t->data + t->len;
}

static int
ps_placed(void *ctx, void *handle, size_t len)
{
	struct psink *t = ctx;

	assert_true(len <= t->size - t->len);
	t->len += len;
	t->placed_calls++;
	return 0;
}

static void
ps_release(void *ctx, void *handle)
{
	struct psink *t = ctx;

	free(t->data);
	t->data = NULL;
}

/* Feeds "* 1 FETCH (UID 7 BODY[] {n}\r\n" + 10 body bytes through feed,
 * the rest of the body through place/placed in pieces of 1, 7, 4096...
 * bytes, then ")\r\n"; the response must carry the whole body. */
static void
place_case(bool streamed, bool with_place, size_t n)
{
	struct imap_parser *p = imap_parser_new(NULL);
	struct imap_literal_sink sink = {
		.begin = ps_begin, .data = ps_data, .abort = ps_release,
		.release = ps_release, .min_size = 1,
	};
	struct psink ps = { 0 };
	struct buf in;
	const struct imap_response *r = NULL;
	const struct imap_value *v;
	const char *err = NULL;
	char *body = malloc(n);
	size_t consumed, off, head, pieces = 0;
	static const size_t steps[] = { 1, 7, 4096, 65536, 3 };
	void *dst;
	size_t room;

	for (size_t i = 0; i < n; i++)
		body[i] = (char)('a' + (i * 7 + i / 13) % 26);
	sink.ctx = &ps;
	if (with_place) {
		sink.place = ps_place;
		sink.placed = ps_placed;
	}
	if (streamed)
		imap_parser_set_sink(p, &sink);
	buf_init(&in, SIZE_MAX / 2);
	assert_int_equal(buf_printf(&in, "* 1 FETCH (UID 7 BODY[] {%zu}\r\n", n), 0);
	head = buf_len(&in);
	assert_int_equal(buf_append(&in, body, 10), 0);
	/* not in a literal yet: nothing to place */
	assert_null(imap_parser_literal_place(p, &room));
	assert_int_equal(room, 0);
	assert_int_equal(imap_parser_feed(p, buf_data(&in), buf_len(&in),
	                                  &consumed, &r, &err), IMAP_PARSE_MORE);
	assert_int_equal(consumed, head + 10);
	off = 10;
	while ((dst = imap_parser_literal_place(p, &room)) != NULL) {
		size_t k = steps[pieces++ % 5];

		assert_true(room == n - off);   /* never past the literal */
		if (k > room)
			k = room;
		memcpy(dst, body + off, k);
		assert_int_equal(imap_parser_placed(p, k, &err), 0);
		off += k;
	}
	if (streamed && !with_place) {
		/* a sink without place: the bytes go through feed and data() */
		assert_int_equal(off, 10);
		assert_int_equal(imap_parser_feed(p, body + off, n - off,
		                                  &consumed, &r, &err),
		                 IMAP_PARSE_MORE);
		assert_int_equal(consumed, n - off);
		off = n;
	}
	assert_int_equal(off, n);
	/* the literal is complete: nothing more to place */
	assert_null(imap_parser_literal_place(p, &room));
	assert_int_equal(imap_parser_feed(p, ")\r\n", 3, &consumed, &r, &err),
	                 IMAP_PARSE_OK);
	assert_int_equal(r->u.fetch.uid, 7);
	v = r->u.fetch.bodies[0].value;
	if (streamed) {
		assert_int_equal(v->type, IMAP_VALUE_STREAMED);
		assert_int_equal(v->stream_size, n);
		assert_int_equal(ps.len, n);
		assert_memory_equal(ps.data, body, n);
		assert_int_equal(ps.placed_calls > 0, with_place);
	} else {
		assert_int_equal(v->type, IMAP_VALUE_STRING);
		assert_int_equal(v->len, n);
		assert_memory_equal(v->str, body, n);
		assert_int_equal(v->str[n], '\0');
	}
	/* the next response parses as usual */
	assert_int_equal(imap_parser_feed(p, "a1 OK done\r\n", 12, &consumed, &r,
	                                  &err), IMAP_PARSE_OK);
	assert_int_equal(r->status, IMAP_STATUS_OK);
	imap_parser_free(&p);
	assert_null(ps.data);
	buf_free(&in);
	free(body);
}

static void
test_literal_place(void **state)
{
	(void)state;
	place_case(true, true, 200000);    /* streamed, sink places */
	place_case(true, true, 11);
	place_case(true, false, 70000);    /* streamed, sink cannot place */
	place_case(false, false, 100000);  /* in memory: the parser places */
	place_case(false, false, 11);
}

/* Bytes placed after the parser failed are refused, and a failed sink
 * fails the parser. */
static int
ps_placed_fail(void *ctx, void *handle, size_t len)
{
	return -1;
}

static void
test_literal_place_fail(void **state)
{
	static const char in[] = "* 1 FETCH (BODY[] {100000}\r\n";
	struct imap_parser *p = imap_parser_new(NULL);
	struct psink ps = { 0 };
	struct imap_literal_sink sink = {
		.begin = ps_begin, .data = ps_data, .abort = ps_release,
		.release = ps_release, .place = ps_place,
		.placed = ps_placed_fail, .ctx = &ps, .min_size = 1,
	};
	const struct imap_response *r;
	const char *err = NULL;
	size_t consumed, room;
	void *dst;

	(void)state;
	imap_parser_set_sink(p, &sink);
	assert_int_equal(imap_parser_feed(p, in, sizeof(in) - 1, &consumed, &r,
	                                  &err), IMAP_PARSE_MORE);
	dst = imap_parser_literal_place(p, &room);
	assert_non_null(dst);
	assert_int_equal(room, 100000);
	memset(dst, 'x', 10);
	assert_int_equal(imap_parser_placed(p, 10, &err), -1);
	assert_non_null(strstr(err, "sink failed"));
	/* failed: no more places, and feeds keep failing */
	assert_null(imap_parser_literal_place(p, &room));
	assert_int_equal(imap_parser_feed(p, "x", 1, &consumed, &r, &err),
	                 IMAP_PARSE_ERROR);
	imap_parser_free(&p);
	assert_null(ps.data);   /* aborted */
}

static void
test_error_is_sticky(void **state)
{
	struct imap_parser *p = imap_parser_new(NULL);
	const struct imap_response *r;
	const char *err = NULL;
	size_t consumed;

	(void)state;
	assert_int_equal(imap_parser_feed(p, "* X )\r\n", 7, &consumed, &r, &err),
	                 IMAP_PARSE_ERROR);
	assert_string_equal(err, "unexpected ')'");
	err = NULL;
	assert_int_equal(imap_parser_feed(p, "* 1 EXISTS\r\n", 12, &consumed,
	                                  &r, &err), IMAP_PARSE_ERROR);
	assert_string_equal(err, "unexpected ')'");
	imap_parser_reset(p);
	feed_ok(p, "* 1 EXISTS\r\n", 12, &r);
	assert_int_equal(r->u.number, 1);
	/* empty feed */
	assert_int_equal(imap_parser_feed(p, "", 0, &consumed, &r, &err),
	                 IMAP_PARSE_MORE);
	assert_int_equal(consumed, 0);
	imap_parser_free(&p);
	imap_parser_free(&p);
}

/* ---- large literals are handled in chunks ---- */

static void
test_large_memory_literal(void **state)
{
	const size_t n = 100 * 1024;
	struct buf in;
	struct imap_parser *p = imap_parser_new(NULL);
	const struct imap_response *r = NULL;
	const struct imap_value *v;
	const char *err;
	size_t off = 0, consumed;

	(void)state;
	buf_init(&in, 1 << 20);
	assert_int_equal(buf_printf(&in, "* 1 FETCH (UID 5 BODY[] {%zu}\r\n", n), 0);
	for (size_t i = 0; i < n; i++) {
		char c = (char)(i % 251);

		assert_int_equal(buf_append(&in, &c, 1), 0);
	}
	assert_int_equal(buf_append_str(&in, ")\r\n"), 0);
	/* 4 KiB pieces, like reads from a socket */
	for (;;) {
		size_t piece = buf_len(&in) - off < 4096 ? buf_len(&in) - off : 4096;
		enum imap_parse_result res =
			imap_parser_feed(p, buf_data(&in) + off, piece, &consumed,
			                 &r, &err);

		off += consumed;
		if (res == IMAP_PARSE_OK)
			break;
		assert_int_equal(res, IMAP_PARSE_MORE);
	}
	assert_int_equal(off, buf_len(&in));
	v = r->u.fetch.bodies[0].value;
	assert_int_equal(v->type, IMAP_VALUE_STRING);
	assert_int_equal(v->len, n);
	for (size_t i = 0; i < n; i++)
		assert_int_equal((unsigned char)v->str[i], i % 251);
	assert_int_equal(v->str[n], '\0');
	imap_parser_free(&p);
	buf_free(&in);
}

static void
test_streamed_50mb(void **state)
{
	const uint64_t n = 50ull * 1024 * 1024;
	const size_t chunk = 64 * 1024;
	struct imap_parser *p = imap_parser_new(NULL);
	struct imap_literal_sink sink;
	struct tsink ts;
	const struct imap_response *r = NULL;
	const char *err;
	char head[64], *block = xmalloc(chunk);
	uint64_t sent = 0, want_hash = 14695981039346656037ull;
	size_t consumed, calls = 0;
	int hl;

	(void)state;
	ts_init(&ts, &sink);
	imap_parser_set_sink(p, &sink);
	hl = snprintf(head, sizeof(head), "* 7 FETCH (BODY[] {%" PRIu64 "}\r\n", n);
	assert_int_equal(imap_parser_feed(p, head, (size_t)hl, &consumed, &r, &err),
	                 IMAP_PARSE_MORE);
	while (sent < n) {
		size_t k = n - sent < chunk ? (size_t)(n - sent) : chunk;

		for (size_t i = 0; i < k; i++)
			block[i] = (char)((sent + i) * 7);
		want_hash = fnv(want_hash, block, k);
		assert_int_equal(imap_parser_feed(p, block, k, &consumed, &r, &err),
		                 IMAP_PARSE_MORE);
		assert_int_equal(consumed, k);
		sent += k;
		calls++;
	}
	feed_ok(p, " UID 9)\r\n", 9, &r);
	assert_int_equal(r->u.fetch.uid, 9);
	assert_int_equal(r->u.fetch.bodies[0].value->type, IMAP_VALUE_STREAMED);
	assert_int_equal(r->u.fetch.bodies[0].value->stream_size, n);
	assert_int_equal(ts.n, 1);
	assert_int_equal(ts.s[0].got, n);
	assert_int_equal(ts.s[0].hash, want_hash);
	assert_int_equal(ts.s[0].ended, 1);
	/* one sink call per feed, never byte by byte */
	assert_int_equal(ts.data_calls, calls);
	imap_parser_free(&p);
	assert_int_equal(ts.s[0].released, 1);
	ts_free(&ts);
	free(block);
}

/* Many FETCH responses in one buffer: a rough throughput figure. */
static void
test_fetch_throughput(void **state)
{
	const int count = 200000;
	struct buf in;
	struct imap_parser *p = imap_parser_new(NULL);
	const struct imap_response *r;
	const char *err;
	size_t off = 0, consumed;
	int got = 0;
	double t0, t;

	(void)state;
	buf_init(&in, 1 << 28);
	for (int i = 1; i <= count; i++)
		assert_int_equal(buf_printf(&in,
			"* %d FETCH (UID %d RFC822.SIZE %d FLAGS (\\Seen $Label1) "
			"INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" MODSEQ (%d) "
			"BODY[HEADER.FIELDS (MESSAGE-ID)] {28}\r\n"
			"Message-ID: <%08d@x>\r\n\r\n)\r\n",
			i, i + 1000, i * 3, i, i), 0);
	t0 = time_mono_sec();
	while (off < buf_len(&in)) {
		assert_int_equal(imap_parser_feed(p, buf_data(&in) + off,
		                                  buf_len(&in) - off, &consumed,
		                                  &r, &err), IMAP_PARSE_OK);
		off += consumed;
		got++;
		assert_int_equal(r->u.fetch.uid, (uint32_t)got + 1000);
	}
	t = time_mono_sec() - t0;
	assert_int_equal(got, count);
	print_message("%d FETCH responses (%zu bytes) in %.3f s: %.0f/s\n",
	              count, buf_len(&in), t, count / (t > 0 ? t : 1e-9));
	imap_parser_free(&p);
	buf_free(&in);
}

/* ---- helpers in response.c ---- */

struct collect {
	uint32_t nums[64];
	size_t n;
	int stop_at;
};

static int
collect_cb(void *ctx, uint32_t num)
{
	struct collect *c = ctx;

	if (c->stop_at != 0 && num == (uint32_t)c->stop_at)
		return -1;
	assert_true(c->n < N_ELEMENTS(c->nums));
	c->nums[c->n++] = num;
	return 0;
}

static void
test_seqset_foreach(void **state)
{
	static const struct {
		const char *set;
		size_t max;
		int ret;
		const char *nums;
	} cases[] = {
		{ "1:3,7,9:8", 100, 0, "1 2 3 7 8 9" },
		{ "5", 100, 0, "5" },
		{ "4294967295", 100, 0, "4294967295" },
		{ "4294967294:4294967295", 2, 0, "4294967294 4294967295" },
		{ "1:3", 3, 0, "1 2 3" },
		{ "1:3", 2, -1, NULL },
		{ "1:4294967295", 1000, -1, NULL },
		{ "1,2,3,4", 3, -1, NULL },
		{ "", 100, -1, NULL },
		{ "0", 100, -1, NULL },
		{ "1:*", 100, -1, NULL },
		{ "*", 100, -1, NULL },
		{ "1,", 100, -1, NULL },
		{ ",1", 100, -1, NULL },
		{ "1::2", 100, -1, NULL },
		{ "1 2", 100, -1, NULL },
		{ "4294967296", 100, -1, NULL },
		{ "-1", 100, -1, NULL },
	};
	struct collect c;

	(void)state;
	for (size_t i = 0; i < N_ELEMENTS(cases); i++) {
		char got[256] = "";
		size_t gl = 0;

		memset(&c, 0, sizeof(c));
		if (imap_seqset_foreach(cases[i].set, cases[i].max, collect_cb,
		                        &c) != cases[i].ret)
			fail_msg("seqset '%s': wrong return", cases[i].set);
		if (cases[i].nums == NULL)
			continue;
		for (size_t k = 0; k < c.n; k++)
			gl += (size_t)snprintf(got + gl, sizeof(got) - gl, "%s%u",
			                       k > 0 ? " " : "", c.nums[k]);
		assert_string_equal(got, cases[i].nums);
	}
	/* the callback can stop the walk */
	memset(&c, 0, sizeof(c));
	c.stop_at = 3;
	assert_int_equal(imap_seqset_foreach("1:10", 100, collect_cb, &c), -1);
	assert_int_equal(c.n, 2);
}

static time_t
utc(int y, int mo, int d, int h, int mi, int s)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = s;
	return timegm(&tm);
}

static void
test_parse_datetime(void **state)
{
	static const struct {
		const char *s;
		bool ok;
		int y, mo, d, h, mi, sec, tz;
	} cases[] = {
		{ "17-Jul-1996 02:44:25 -0700", true, 1996, 7, 17, 9, 44, 25, -420 },
		{ " 1-Jan-2020 00:00:00 +0000", true, 2020, 1, 1, 0, 0, 0, 0 },
		{ "1-Jan-2020 00:00:00 +0000", true, 2020, 1, 1, 0, 0, 0, 0 },
		{ "01-jan-2020 00:00:00 +0130", true, 2019, 12, 31, 22, 30, 0, 90 },
		{ "29-Feb-2020 12:00:00 +0000", true, 2020, 2, 29, 12, 0, 0, 0 },
		{ "29-Feb-2000 12:00:00 +0000", true, 2000, 2, 29, 12, 0, 0, 0 },
		{ "31-Dec-1969 23:59:59 +0000", true, 1969, 12, 31, 23, 59, 59, 0 },
		{ "01-Mar-2038 01:02:03 -1200", true, 2038, 3, 1, 13, 2, 3, -720 },
		{ "31-Dec-9999 23:59:59 +0000", true, 9999, 12, 31, 23, 59, 59, 0 },
		{ "30-Feb-2020 00:00:00 +0000", false, 0, 0, 0, 0, 0, 0, 0 },
		{ "29-Feb-2100 00:00:00 +0000", false, 0, 0, 0, 0, 0, 0, 0 },
		{ "17-Jux-1996 02:44:25 -0700", false, 0, 0, 0, 0, 0, 0, 0 },
		{ "17-July-1996 02:44:25 -0700", false, 0, 0, 0, 0, 0, 0, 0 },
		{ "00-Jul-1996 02:44:25 -0700", false, 0, 0, 0, 0, 0, 0, 0 },
		{ "17-Jul-1996 24:44:25 -0700", false, 0, 0, 0, 0, 0, 0, 0 },
		{ "17-Jul-1996 02:60:25 -0700", false, 0, 0, 0, 0, 0, 0, 0 },
		{ "17-Jul-1996 02:44:25 0700", false, 0, 0, 0, 0, 0, 0, 0 },
		{ "17-Jul-1996 02:44:25 -07000", false, 0, 0, 0, 0, 0, 0, 0 },
		{ "17-Jul-1996 02:44:25 -0760", false, 0, 0, 0, 0, 0, 0, 0 },
		{ "17-Jul-1996 02:44:25", false, 0, 0, 0, 0, 0, 0, 0 },
		{ "17-Jul-96 02:44:25 -0700", false, 0, 0, 0, 0, 0, 0, 0 },
		{ "  1-Jan-2020 00:00:00 +0000", false, 0, 0, 0, 0, 0, 0, 0 },
		{ "", false, 0, 0, 0, 0, 0, 0, 0 },
		{ "1", false, 0, 0, 0, 0, 0, 0, 0 },
		{ "17-Jul-1996 02:44:25 -0700 ", false, 0, 0, 0, 0, 0, 0, 0 },
	};

	(void)state;
	for (size_t i = 0; i < N_ELEMENTS(cases); i++) {
		time_t t = 12345;
		int tz = 99;
		bool ok = imap_parse_datetime(cases[i].s, &t, &tz);

		if (ok != cases[i].ok)
			fail_msg("datetime '%s': got %d", cases[i].s, ok);
		if (!ok)
			continue;
		assert_int_equal(t, utc(cases[i].y, cases[i].mo, cases[i].d,
		                        cases[i].h, cases[i].mi, cases[i].sec));
		assert_int_equal(tz, cases[i].tz);
	}
}

static void
test_format_datetime(void **state)
{
	static const time_t times[] = {
		0, 837596665, 1577836800, 951782400, 4102444799, -1, 68169600,
		253402300799,
	};
	char out[27];
	time_t t;
	int tz;

	(void)state;
	imap_format_datetime(837596665, out);
	assert_string_equal(out, "17-Jul-1996 09:44:25 +0000");
	imap_format_datetime(0, out);
	assert_string_equal(out, "01-Jan-1970 00:00:00 +0000");
	for (size_t i = 0; i < N_ELEMENTS(times); i++) {
		imap_format_datetime(times[i], out);
		assert_int_equal(strlen(out), 26);
		assert_true(imap_parse_datetime(out, &t, &tz));
		assert_int_equal(t, times[i]);
		assert_int_equal(tz, 0);
	}
	/* every day for 30 years round-trips */
	for (time_t d = 0; d < 30 * 366; d++) {
		time_t v = d * 86400 + 3600 * 13 + 61;

		imap_format_datetime(v, out);
		assert_true(imap_parse_datetime(out, &t, &tz));
		assert_int_equal(t, v);
	}
	/* out of range is clamped, still valid */
	imap_format_datetime((time_t)INT64_MAX / 2, out);
	assert_string_equal(out, "31-Dec-9999 23:59:59 +0000");
	imap_format_datetime(-(time_t)INT64_MAX / 2, out);
	assert_string_equal(out, "01-Jan-0000 00:00:00 +0000");
}

static void
test_value_helpers(void **state)
{
	struct imap_value num = { .type = IMAP_VALUE_ATOM, .str = "4294967296",
	                          .len = 10 };
	struct imap_value str = { .type = IMAP_VALUE_STRING, .str = "123",
	                          .len = 3 };
	struct imap_value nil = { .type = IMAP_VALUE_NIL, .str = "NIL", .len = 3 };
	const char *items[] = { "IMAP4rev1", "AUTH=PLAIN", "COMPRESS=DEFLATE" };
	struct imap_strlist l = { items, 3 };
	uint64_t v;

	(void)state;
	assert_true(imap_value_number(&num, UINT64_MAX, &v));
	assert_int_equal(v, 4294967296ull);
	assert_false(imap_value_number(&num, UINT32_MAX, &v));
	assert_false(imap_value_number(&str, UINT64_MAX, &v));
	assert_false(imap_value_number(NULL, UINT64_MAX, &v));
	assert_true(imap_value_ieq(&str, "123"));
	assert_false(imap_value_ieq(&str, "1234"));
	assert_true(imap_value_ieq(&nil, "nil"));
	assert_true(imap_strlist_has(&l, "auth=plain"));
	assert_true(imap_strlist_has(&l, "compress=deflate"));
	assert_false(imap_strlist_has(&l, "AUTH"));
	assert_false(imap_strlist_has(NULL, "AUTH"));
	assert_null(imap_value_steal_stream(&str));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status_responses),
		cmocka_unit_test(test_untagged_data),
		cmocka_unit_test(test_literals),
		cmocka_unit_test(test_literal_place),
		cmocka_unit_test(test_literal_place_fail),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_lenient),
		cmocka_unit_test(test_set_sink),
		cmocka_unit_test(test_stream_release_and_steal),
		cmocka_unit_test(test_sink_min_size),
		cmocka_unit_test(test_error_is_sticky),
		cmocka_unit_test(test_large_memory_literal),
		cmocka_unit_test(test_streamed_50mb),
		cmocka_unit_test(test_fetch_throughput),
		cmocka_unit_test(test_seqset_foreach),
		cmocka_unit_test(test_parse_datetime),
		cmocka_unit_test(test_format_datetime),
		cmocka_unit_test(test_value_helpers),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);

	print_message("table cases: %d (fed whole, split at every byte, byte "
	              "by byte: %ld runs compared); responses checked: %d\n",
	              cases_run, runs_compared, checks_run);
	return rc;
}
