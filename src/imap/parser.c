/* parser.c: incremental, bounded IMAP response parser (see parser.h).
 *
 * Three stages, each simple on its own:
 *
 *  1. The framer (imap_parser_feed) finds lines with memchr. A line that
 *     ends in a literal marker {N}, {N+} or ~{N} is followed by N bytes of
 *     literal data, copied in one piece per feed into `litbuf` (in memory)
 *     or handed to the sink (streamed). Every complete line is appended to
 *     `text` without its CRLF and with the literal marker replaced by one
 *     NUL byte. A raw NUL inside a line is an error, so in `text` a NUL
 *     always means "literal number k here". A line without a marker ends
 *     the response. The framer keeps only counters and the current partial
 *     line, which is all it needs to stop and resume at any byte.
 *
 *  2. Once a response is complete, the tokenizer turns `text` into a flat
 *     token array (atoms, strings, literals, NIL, list open/close) while
 *     counting the nesting depth, and build_tree() turns that into
 *     imap_value lists using an explicit stack: no recursion anywhere.
 *     Status responses (OK/NO/BAD/BYE/PREAUTH) and continuations are never
 *     tokenized past the optional [CODE args]: their text is free text, and
 *     the framer knows from the first line that they carry no literals.
 *
 *  3. The response layer (build_*) checks the shapes and fills the typed
 *     structs of response.h.
 *
 * Memory: every per-response array lives in a capped struct buf that is
 * reset, not freed, between responses (unless it grew past KEEP_MAX).
 * Strings are copied into one region reserved up front (3x the text size
 * is a proven upper bound), so pointers into it stay valid while the
 * response is built.
 */
#include "parser.h"
#include "parser-private.h"
#include "buf.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEF_MAX_LINE ((size_t)8 * 1024 * 1024)
#define DEF_MAX_LITERAL_MEM ((size_t)256 * 1024)
#define DEF_MAX_LITERAL ((uint64_t)4 * 1024 * 1024 * 1024)
#define DEF_MAX_DEPTH 32u
#define DEF_MAX_TOKENS ((size_t)2000000)
#define DEF_MAX_LITERAL_MEM_TOTAL ((size_t)16 * 1024 * 1024)
/* Buffers that grew past this for one response are freed afterwards so a
 * single huge response does not pin its memory for the session. */
#define KEEP_MAX ((size_t)1024 * 1024)

struct literal {
	uint64_t size;
	size_t off;             /* in memory: offset of the data in litbuf */
	void *handle;           /* streamed: until end()/abort(), else NULL */
	bool streamed;
	bool lit8;
};

enum tok_kind { TOK_VALUE, TOK_OPEN, TOK_CLOSE };

struct tok {
	enum tok_kind kind;
	struct imap_value v;
};

enum frame_state { FRAME_LINE, FRAME_LITERAL };

struct imap_parser {
	struct imap_parser_limits lim;
	struct imap_literal_sink sink;
	bool have_sink;

	/* framer */
	enum frame_state state;
	struct buf line;        /* current line while its LF is missing */
	size_t line_bytes;      /* raw bytes of this response outside literals */
	bool seen_first;        /* the response's first line is complete */
	bool is_text;           /* ... and it is resp-text (no literals) */
	struct buf text;        /* complete lines; literal marker -> NUL */
	struct buf litbuf;      /* in-memory literals, each NUL-terminated */
	size_t lit_mem;         /* sum of in-memory literal sizes */
	struct buf lits;        /* struct literal[nlits] */
	size_t nlits;
	uint64_t lit_left;      /* bytes of the current literal still due */

	/* per-response storage */
	struct buf strs;
	char *str_base;
	size_t str_used, str_cap;
	struct buf toks;        /* struct tok[ntoks] */
	size_t ntoks, nvalues;
	struct buf vals;        /* struct imap_value[nvals]: the tree */
	size_t nvals;
	struct buf pending;     /* build_tree's work stack */
	size_t *stack;          /* max_depth + 1 list starts */
	struct buf ptrs;        /* const char *[] for string lists */
	size_t ptr_used, ptr_cap;
	struct buf nums;        /* uint32_t[] for SEARCH/ESEARCH */
	struct buf nsents;      /* struct imap_ns_entry[] */
	struct imap_value code_raw; /* args of a [CODE] that did not tokenize */
	struct imap_response resp;
	bool resp_out;          /* resp was returned: retire on next call */
	bool failed;
	char err[256];
};

static void set_err(struct imap_parser *p, const char *fmt, ...)
	ATTR_PRINTF(2, 3);
static int fail(struct imap_parser *p, const char *fmt, ...) ATTR_PRINTF(2, 3);

/* ---- small helpers ---- */

/* The arrays below live in struct bufs; buf_data() is const because most
 * buffers hold text, but these are ours to write. */
static void *
buf_ptr(struct buf *b)
{
	return (void *)(uintptr_t)buf_data(b);
}

static size_t
sat_mul(size_t a, size_t b)
{
	return b != 0 && a > SIZE_MAX / b ? SIZE_MAX : a * b;
}

static size_t
sat_add(size_t a, size_t b)
{
	return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

static void
buf_recycle(struct buf *b)
{
	if (buf_len(b) > KEEP_MAX)
		buf_free(b);
	else
		buf_reset(b);
}

static void
set_err(struct imap_parser *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p->err, sizeof(p->err), fmt, ap);
	va_end(ap);
}

static struct literal *
lit_at(struct imap_parser *p, size_t i)
{
	return (struct literal *)buf_ptr(&p->lits) + i;
}

/* Aborts every streamed literal of the response in progress. */
static void
abort_streams(struct imap_parser *p)
{
	for (size_t i = 0; i < p->nlits; i++) {
		struct literal *l = lit_at(p, i);

		if (l->handle != NULL) {
			if (p->sink.abort != NULL)
				p->sink.abort(p->sink.ctx, l->handle);
			l->handle = NULL;
		}
	}
}

/* Records the error, aborts open streams; the parser then refuses input
 * until reset. Returns -1. */
static int
fail(struct imap_parser *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p->err, sizeof(p->err), fmt, ap);
	va_end(ap);
	abort_streams(p);
	p->failed = true;
	return -1;
}

/* Copies a printable prefix of a value into out, for error messages. */
static const char *
describe(const struct imap_value *v, char *out, size_t outsize)
{
	size_t n = 0;

	if (v == NULL)
		return "nothing";
	switch (v->type) {
	case IMAP_VALUE_LIST:
		return "a list";
	case IMAP_VALUE_STREAMED:
		return "a streamed literal";
	case IMAP_VALUE_NIL:
		return "NIL";
	default:
		break;
	}
	for (size_t i = 0; i < v->len && n + 4 < outsize; i++) {
		unsigned char c = (unsigned char)v->str[i];

		out[n++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	if (n < v->len && n + 3 < outsize) {
		memcpy(out + n, "...", 3);
		n += 3;
	}
	out[n] = '\0';
	return out;
}

/* Copies s[0..len) into the response's string region, NUL-terminated.
 * NULL when the region (sized for the worst case) is exhausted. */
static const char *
str_put(struct imap_parser *p, const char *s, size_t len)
{
	char *d;

	if (len >= p->str_cap - p->str_used)
		return NULL;
	d = p->str_base + p->str_used;
	memcpy(d, s, len);
	d[len] = '\0';
	p->str_used += len + 1;
	return d;
}

static enum imap_status
status_word(const char *w, size_t len)
{
	static const struct {
		const char *name;
		size_t len;
		enum imap_status st;
	} words[] = {
		{ "OK", 2, IMAP_STATUS_OK },
		{ "NO", 2, IMAP_STATUS_NO },
		{ "BAD", 3, IMAP_STATUS_BAD },
		{ "BYE", 3, IMAP_STATUS_BYE },
		{ "PREAUTH", 7, IMAP_STATUS_PREAUTH },
	};

	for (size_t i = 0; i < N_ELEMENTS(words); i++) {
		if (len == words[i].len && str_ieqn(w, words[i].name, len))
			return words[i].st;
	}
	return IMAP_STATUS_NONE;
}

/* A continuation or a status response (tagged or untagged OK, NO, BAD,
 * BYE, PREAUTH) is one line of resp-text that is never tokenized and
 * cannot carry literals: "* OK Quota {5}" is text, not a literal. The
 * framer and the response layer both decide with this function. */
static bool
line_is_text(const char *s, size_t len)
{
	const char *sp, *w, *end = s + len;
	size_t wl = 0;

	if (len > 0 && s[0] == '+')
		return true;
	sp = memchr(s, ' ', len);
	if (sp == NULL)
		return false;
	w = sp + 1;
	while (w + wl < end && w[wl] != ' ')
		wl++;
	return status_word(w, wl) != IMAP_STATUS_NONE;
}

/* ---- framer ---- */

static void
clear_response(struct imap_parser *p)
{
	p->state = FRAME_LINE;
	buf_recycle(&p->line);
	p->line_bytes = 0;
	p->seen_first = false;
	p->is_text = false;
	buf_recycle(&p->text);
	buf_recycle(&p->litbuf);
	p->lit_mem = 0;
	buf_recycle(&p->lits);
	p->nlits = 0;
	p->lit_left = 0;
	buf_recycle(&p->strs);
	p->str_base = NULL;
	p->str_used = p->str_cap = 0;
	buf_recycle(&p->toks);
	p->ntoks = p->nvalues = 0;
	buf_recycle(&p->vals);
	p->nvals = 0;
	buf_recycle(&p->pending);
	buf_recycle(&p->ptrs);
	p->ptr_used = p->ptr_cap = 0;
	buf_recycle(&p->nums);
	buf_recycle(&p->nsents);
	memset(&p->resp, 0, sizeof(p->resp));
}

/* Releases the streamed handles of the response handed out last (those
 * not stolen) and forgets it. */
static void
retire(struct imap_parser *p)
{
	struct imap_value *v = buf_ptr(&p->vals);

	for (size_t i = 0; i < p->nvals; i++) {
		if (v[i].type == IMAP_VALUE_STREAMED && v[i].stream != NULL) {
			if (p->sink.release != NULL)
				p->sink.release(p->sink.ctx, v[i].stream);
			v[i].stream = NULL;
		}
	}
	p->resp_out = false;
	clear_response(p);
}

static int
literal_done(struct imap_parser *p)
{
	struct literal *l = lit_at(p, p->nlits - 1);

	if (!l->streamed && buf_append(&p->litbuf, "", 1) < 0)
		return fail(p, "internal error: literal buffer full");
	p->state = FRAME_LINE;
	return 0;
}

static int
literal_begin(struct imap_parser *p, uint64_t size, bool lit8)
{
	struct literal *l;

	if (size > p->lim.max_literal)
		return fail(p, "literal of %" PRIu64 " bytes exceeds limit %" PRIu64,
		            size, p->lim.max_literal);
	l = (struct literal *)buf_reserve(&p->lits, sizeof(*l));
	if (l == NULL)
		return fail(p, "too many literals in one response");
	memset(l, 0, sizeof(*l));
	buf_commit(&p->lits, sizeof(*l));
	p->nlits++;
	l->size = size;
	l->lit8 = lit8;
	if (size <= p->lim.max_literal_mem &&
	    !(p->have_sink && p->sink.min_size != 0 && size >= p->sink.min_size)) {
		if (size > p->lim.max_literal_mem_total - p->lit_mem)
			return fail(p, "in-memory literals of one response exceed "
			            "%zu bytes", p->lim.max_literal_mem_total);
		p->lit_mem += (size_t)size;
		l->off = buf_len(&p->litbuf);
		/* One allocation for the whole literal, then plain copies. */
		if (buf_reserve(&p->litbuf, (size_t)size + 1) == NULL)
			return fail(p, "internal error: literal buffer full");
	} else {
		if (!p->have_sink)
			return fail(p, "literal of %" PRIu64 " bytes is over the "
			            "in-memory limit %zu and no sink is set",
			            size, p->lim.max_literal_mem);
		l->streamed = true;
		l->handle = p->sink.begin(p->sink.ctx, size);
		if (l->handle == NULL)
			return fail(p, "literal refused by sink");
	}
	p->lit_left = size;
	p->state = FRAME_LITERAL;
	if (size == 0)
		return literal_done(p);
	return 0;
}

/* Looks for a literal marker ending the segment s[0..len). Returns 1 with
 * *start_r (where the marker begins), *size_r and *lit8_r set; 0 if there
 * is none; -1 (parser failed) if the size overflows 64 bits. The marker
 * must start a token: "{" or "~{" after SP, "(" or at the start of a
 * continuation segment; "abc{5}" is an atom. */
static int
find_literal(struct imap_parser *p, const char *s, size_t len, bool first,
             size_t *start_r, uint64_t *size_r, bool *lit8_r)
{
	size_t close, dend, dstart, m;
	bool lit8;

	if (len < 3 || s[len - 1] != '}')
		return 0;
	close = len - 1;
	dend = close;
	if (s[dend - 1] == '+')
		dend--;
	dstart = dend;
	while (dstart > 0 && s[dstart - 1] >= '0' && s[dstart - 1] <= '9')
		dstart--;
	if (dstart == dend || dstart == 0 || s[dstart - 1] != '{')
		return 0;
	m = dstart - 1;
	lit8 = m > 0 && s[m - 1] == '~';
	if (lit8)
		m--;
	if (m == 0 ? first : (s[m - 1] != ' ' && s[m - 1] != '('))
		return 0;
	if (!str_to_u64(s + dstart, dend - dstart, UINT64_MAX, size_r)) {
		fail(p, "literal size %.*s%s is out of range",
		     (int)(dend - dstart > 40 ? 40 : dend - dstart), s + dstart,
		     dend - dstart > 40 ? "..." : "");
		return -1;
	}
	*start_r = m;
	*lit8_r = lit8;
	return 1;
}

static int build_response(struct imap_parser *p);

/* Handles one complete line s[0..len) (LF removed). Returns 0 to go on
 * (a literal follows), 1 when the response is complete, -1 on error. */
static int
segment_done(struct imap_parser *p, const char *s, size_t len)
{
	bool first = !p->seen_first;
	size_t start;
	uint64_t size;
	bool lit8;
	int r;

	if (len > 0 && s[len - 1] == '\r')
		len--;
	if (memchr(s, '\0', len) != NULL)
		return fail(p, "NUL byte in response line");
	if (first) {
		if (len == 0)
			return fail(p, "empty response line");
		p->is_text = line_is_text(s, len);
		p->seen_first = true;
	}
	if (!p->is_text) {
		r = find_literal(p, s, len, first, &start, &size, &lit8);
		if (r < 0)
			return -1;
		if (r > 0) {
			if (buf_append(&p->text, s, start) < 0 ||
			    buf_append(&p->text, "", 1) < 0)
				return fail(p, "internal error: text buffer full");
			return literal_begin(p, size, lit8);
		}
	}
	if (buf_append(&p->text, s, len) < 0)
		return fail(p, "internal error: text buffer full");
	return build_response(p) < 0 ? -1 : 1;
}

/* ---- tokenizer ---- */

#define C_STOP 0x01  /* ends an atom: SP ( ) " and NUL (literal marker) */
#define C_CODE 0x02  /* ends an atom inside [CODE args]: ] */
#define C_QSPC 0x04  /* special inside a quoted string: " \ CR LF NUL */

static const unsigned char cclass[256] = {
	[0] = C_STOP | C_QSPC,
	[' '] = C_STOP,
	['('] = C_STOP,
	[')'] = C_STOP,
	['"'] = C_STOP | C_QSPC,
	[']'] = C_CODE,
	['\\'] = C_QSPC,
	['\r'] = C_QSPC,
	['\n'] = C_QSPC,
};

static struct tok *
tok_push(struct imap_parser *p, enum tok_kind kind)
{
	struct tok *t;

	if (kind != TOK_CLOSE && ++p->nvalues > p->lim.max_tokens) {
		set_err(p, "too many tokens in response (limit %zu)",
		        p->lim.max_tokens);
		return NULL;
	}
	t = (struct tok *)buf_reserve(&p->toks, sizeof(*t));
	if (t == NULL) {
		set_err(p, "too many tokens in response (limit %zu)",
		        p->lim.max_tokens);
		return NULL;
	}
	buf_commit(&p->toks, sizeof(*t));
	p->ntoks++;
	memset(t, 0, sizeof(*t));
	t->kind = kind;
	return t;
}

/* Index just past the ']' matching the '[' at s[i], or 0 if the line
 * segment has none: BODY[HEADER.FIELDS (A B)]<0> is one atom. */
static size_t
bracket_end(const char *s, size_t i, size_t len)
{
	unsigned depth = 0;

	for (; i < len && s[i] != '\0'; i++) {
		if (s[i] == '[')
			depth++;
		else if (s[i] == ']' && --depth == 0)
			return i + 1;
	}
	return 0;
}

static int
tok_quoted(struct imap_parser *p, const char *s, size_t len, size_t *ip,
           struct imap_value *v)
{
	size_t i = *ip + 1, o = 0;
	char *out;

	/* The copy is never longer than the rest of the text. */
	if (len - i >= p->str_cap - p->str_used) {
		set_err(p, "internal error: string space exhausted");
		return -1;
	}
	out = p->str_base + p->str_used;
	for (;;) {
		unsigned char c;

		if (i >= len) {
			set_err(p, "unterminated quoted string");
			return -1;
		}
		c = (unsigned char)s[i];
		if ((cclass[c] & C_QSPC) == 0) {
			out[o++] = (char)c;
			i++;
			continue;
		}
		if (c == '"') {
			i++;
			break;
		}
		if (c == '\\') {
			/* Only \" and \\ are escapes; anything else is kept
			 * as sent rather than refused. */
			if (i + 1 < len && (s[i + 1] == '"' || s[i + 1] == '\\')) {
				out[o++] = s[i + 1];
				i += 2;
			} else {
				out[o++] = '\\';
				i++;
			}
			continue;
		}
		if (c == '\0') {
			/* The line ended (in a literal marker) inside quotes. */
			set_err(p, "unterminated quoted string");
			return -1;
		}
		set_err(p, "bare CR or LF in quoted string");
		return -1;
	}
	out[o] = '\0';
	p->str_used += o + 1;
	v->type = IMAP_VALUE_STRING;
	v->str = out;
	v->len = o;
	*ip = i;
	return 0;
}

static int
tok_literal(struct imap_parser *p, size_t *lit_next, struct imap_value *v)
{
	struct literal *l;

	if (*lit_next >= p->nlits) {
		set_err(p, "internal error: literal marker mismatch");
		return -1;
	}
	l = lit_at(p, (*lit_next)++);
	v->is_literal = true;
	v->is_literal8 = l->lit8;
	if (l->streamed) {
		v->type = IMAP_VALUE_STREAMED;
		v->stream = l->handle;
		v->stream_size = l->size;
		v->str = "";
	} else {
		v->type = IMAP_VALUE_STRING;
		v->str = buf_data(&p->litbuf) + l->off;
		v->len = (size_t)l->size;
	}
	return 0;
}

static int
tok_atom(struct imap_parser *p, const char *s, size_t len, size_t *ip,
         bool code, struct imap_value *v)
{
	unsigned char stop = code ? C_STOP | C_CODE : C_STOP;
	size_t start = *ip, i = *ip;
	const char *str;

	while (i < len) {
		unsigned char c = (unsigned char)s[i];

		if (cclass[c] & stop)
			break;
		if (c < 0x20 || c == 0x7f) {
			set_err(p, "control character 0x%02x in response", c);
			return -1;
		}
		if (c == '[' && !code) {
			size_t e = bracket_end(s, i, len);

			if (e != 0) {
				i = e;
				continue;
			}
		}
		i++;
	}
	if (i == start) {
		/* Only ']' in code mode stops an atom at its first byte. */
		set_err(p, "unexpected '%c'", s[i]);
		return -1;
	}
	str = str_put(p, s + start, i - start);
	if (str == NULL) {
		set_err(p, "internal error: string space exhausted");
		return -1;
	}
	v->str = str;
	v->len = i - start;
	v->type = v->len == 3 && str_ieqn(str, "NIL", 3) ? IMAP_VALUE_NIL :
	          IMAP_VALUE_ATOM;
	*ip = i;
	return 0;
}

/* Pass 1: s[0..len) into the flat token array. In code mode ']' ends
 * atoms (the caller has cut the text at the code's closing ']'). On error
 * returns -1 with p->err set; the parser itself has not failed. */
static int
tokenize(struct imap_parser *p, const char *s, size_t len, bool code)
{
	size_t i = 0, lit_next = 0;
	unsigned depth = 0;
	struct tok *t;

	for (;;) {
		while (i < len && s[i] == ' ')
			i++;
		if (i == len)
			break;
		switch (s[i]) {
		case '(':
			if (depth == p->lim.max_depth) {
				set_err(p, "list nesting deeper than %u",
				        p->lim.max_depth);
				return -1;
			}
			depth++;
			if (tok_push(p, TOK_OPEN) == NULL)
				return -1;
			i++;
			break;
		case ')':
			if (depth == 0) {
				set_err(p, "unexpected ')'");
				return -1;
			}
			depth--;
			if (tok_push(p, TOK_CLOSE) == NULL)
				return -1;
			i++;
			break;
		case '"':
			if ((t = tok_push(p, TOK_VALUE)) == NULL ||
			    tok_quoted(p, s, len, &i, &t->v) < 0)
				return -1;
			break;
		case '\0':
			if ((t = tok_push(p, TOK_VALUE)) == NULL ||
			    tok_literal(p, &lit_next, &t->v) < 0)
				return -1;
			i++;
			break;
		default:
			if ((t = tok_push(p, TOK_VALUE)) == NULL ||
			    tok_atom(p, s, len, &i, code, &t->v) < 0)
				return -1;
			break;
		}
	}
	if (depth > 0) {
		set_err(p, "unterminated list (missing ')')");
		return -1;
	}
	return 0;
}

/* Pass 2: the flat tokens into a tree. A list's children must be one
 * array, so values wait on the `pending` stack until their list closes,
 * then move as a block into `vals`. Every value lands in vals exactly
 * once; the top level comes last and is returned as the raw array. */
static int
build_tree(struct imap_parser *p, const struct imap_value **raw_r,
           size_t *count_r)
{
	const struct tok *toks = buf_ptr(&p->toks);
	struct imap_value *vals, *pend;
	size_t n = p->nvalues, npend = 0, nval = 0, sp = 0;

	vals = (struct imap_value *)buf_reserve(&p->vals, sat_mul(n, sizeof(*vals)));
	pend = (struct imap_value *)buf_reserve(&p->pending, sat_mul(n, sizeof(*pend)));
	if (vals == NULL || pend == NULL) {
		set_err(p, "too many tokens in response (limit %zu)",
		        p->lim.max_tokens);
		return -1;
	}
	for (size_t i = 0; i < p->ntoks; i++) {
		switch (toks[i].kind) {
		case TOK_VALUE:
			pend[npend++] = toks[i].v;
			break;
		case TOK_OPEN:
			p->stack[sp++] = npend;
			break;
		case TOK_CLOSE: {
			size_t start = p->stack[--sp], cnt = npend - start;
			struct imap_value lv;

			if (cnt > 0)
				memcpy(vals + nval, pend + start, cnt * sizeof(*vals));
			memset(&lv, 0, sizeof(lv));
			lv.type = IMAP_VALUE_LIST;
			lv.str = "";
			lv.list = vals + nval;
			lv.count = cnt;
			nval += cnt;
			npend = start;
			pend[npend++] = lv;
			break;
		}
		}
	}
	if (npend > 0)
		memcpy(vals + nval, pend + 0, npend * sizeof(*vals));
	*raw_r = vals + nval;
	*count_r = npend;
	nval += npend;
	buf_commit(&p->vals, nval * sizeof(*vals));
	p->nvals = nval;
	/* Committed only so buf_recycle() sees how big it got. */
	buf_commit(&p->pending, n * sizeof(*pend));
	return 0;
}

/* ---- response layer: helpers ---- */

static bool
is_atom(const struct imap_value *v)
{
	/* NIL is also the atom "NIL" (a flag or capability could be). */
	return v->type == IMAP_VALUE_ATOM || v->type == IMAP_VALUE_NIL;
}

static bool
is_astring(const struct imap_value *v)
{
	return v->type == IMAP_VALUE_ATOM || v->type == IMAP_VALUE_NIL ||
	       v->type == IMAP_VALUE_STRING;
}

static bool
get_u32(const struct imap_value *v, bool nonzero, uint32_t *r)
{
	uint64_t n;

	if (!imap_value_number(v, UINT32_MAX, &n) || (nonzero && n == 0))
		return false;
	*r = (uint32_t)n;
	return true;
}

static const char **
ptrs_alloc(struct imap_parser *p, size_t n)
{
	const char **a;

	if (n > p->ptr_cap - p->ptr_used)
		return NULL;
	a = (const char **)buf_ptr(&p->ptrs) + p->ptr_used;
	p->ptr_used += n;
	return a;
}

/* Fills a string list from a list value whose items must be atoms. */
static int
atoms_to_strlist(struct imap_parser *p, const struct imap_value *items,
                 size_t count, const char *what, struct imap_strlist *l)
{
	const char **a = ptrs_alloc(p, count);
	char d[48];

	if (a == NULL)
		return fail(p, "internal error: pointer space exhausted");
	for (size_t i = 0; i < count; i++) {
		if (!is_atom(&items[i]))
			return fail(p, "%s: %s is not an atom", what,
			            describe(&items[i], d, sizeof(d)));
		a[i] = items[i].str;
	}
	l->items = a;
	l->count = count;
	return 0;
}

/* ---- resp-text and [CODE args] ---- */

/* The ']' closing a code whose args start at s: outside quoted strings
 * and parentheses if possible, else the first ']' at all. */
static const char *
code_close(const char *s, const char *end)
{
	const char *q = s;
	unsigned depth = 0;
	bool quoted = false;

	for (; q < end; q++) {
		if (quoted) {
			if (*q == '\\' && q + 1 < end)
				q++;
			else if (*q == '"')
				quoted = false;
		} else if (*q == '"') {
			quoted = true;
		} else if (*q == '(') {
			depth++;
		} else if (*q == ')') {
			if (depth > 0)
				depth--;
		} else if (*q == ']' && depth == 0) {
			return q;
		}
	}
	return memchr(s, ']', (size_t)(end - s));
}

static bool
code_is(const struct imap_resp_code *c, const char *name)
{
	return str_ieq(c->name, name);
}

static bool
atom_is_set(const struct imap_value *v)
{
	return v->type == IMAP_VALUE_ATOM && imap_seqset_valid(v->str, v->len);
}

/* Types a code from its name and args. A known code whose args do not
 * fit is typed OTHER rather than failing the whole response. */
static void
type_code(struct imap_resp_code *c)
{
	static const struct {
		const char *name;
		enum imap_code_type type;
	} plain[] = {
		{ "ALERT", IMAP_CODE_ALERT },
		{ "CAPABILITY", IMAP_CODE_CAPABILITY },
		{ "NOMODSEQ", IMAP_CODE_NOMODSEQ },
		{ "READ-ONLY", IMAP_CODE_READ_ONLY },
		{ "READ-WRITE", IMAP_CODE_READ_WRITE },
		{ "TRYCREATE", IMAP_CODE_TRYCREATE },
		{ "OVERQUOTA", IMAP_CODE_OVERQUOTA },
		{ "LIMIT", IMAP_CODE_LIMIT },
		{ "CLOSED", IMAP_CODE_CLOSED },
		{ "ALREADYEXISTS", IMAP_CODE_ALREADYEXISTS },
		{ "NONEXISTENT", IMAP_CODE_NONEXISTENT },
		{ "UNAVAILABLE", IMAP_CODE_UNAVAILABLE },
		{ "INUSE", IMAP_CODE_INUSE },
		{ "SERVERBUG", IMAP_CODE_SERVERBUG },
		{ "CLIENTBUG", IMAP_CODE_CLIENTBUG },
		{ "CANNOT", IMAP_CODE_CANNOT },
		{ "NOPERM", IMAP_CODE_NOPERM },
		{ "CORRUPTION", IMAP_CODE_CORRUPTION },
		{ "EXPUNGEISSUED", IMAP_CODE_EXPUNGEISSUED },
		{ "AUTHENTICATIONFAILED", IMAP_CODE_AUTHENTICATIONFAILED },
		{ "AUTHORIZATIONFAILED", IMAP_CODE_AUTHORIZATIONFAILED },
		{ "EXPIRED", IMAP_CODE_EXPIRED },
		{ "PRIVACYREQUIRED", IMAP_CODE_PRIVACYREQUIRED },
		{ "CONTACTADMIN", IMAP_CODE_CONTACTADMIN },
	}, numeric[] = {
		{ "UIDVALIDITY", IMAP_CODE_UIDVALIDITY },
		{ "UIDNEXT", IMAP_CODE_UIDNEXT },
		{ "UNSEEN", IMAP_CODE_UNSEEN },
		{ "HIGHESTMODSEQ", IMAP_CODE_HIGHESTMODSEQ },
	};
	const struct imap_value *a = c->args;
	uint32_t uv;

	c->type = IMAP_CODE_OTHER;
	for (size_t i = 0; i < N_ELEMENTS(plain); i++) {
		if (code_is(c, plain[i].name)) {
			c->type = plain[i].type;
			return;
		}
	}
	for (size_t i = 0; i < N_ELEMENTS(numeric); i++) {
		if (code_is(c, numeric[i].name)) {
			if (c->arg_count >= 1 &&
			    imap_value_number(&a[0], UINT64_MAX, &c->num)) {
				c->type = numeric[i].type;
				if (c->type == IMAP_CODE_UIDVALIDITY &&
				    c->num <= UINT32_MAX)
					c->uidvalidity = (uint32_t)c->num;
			}
			return;
		}
	}
	if (code_is(c, "PERMANENTFLAGS")) {
		if (c->arg_count == 1 && a[0].type == IMAP_VALUE_LIST)
			c->type = IMAP_CODE_PERMANENTFLAGS;
	} else if (code_is(c, "APPENDUID")) {
		if (c->arg_count == 2 && get_u32(&a[0], true, &uv) &&
		    atom_is_set(&a[1])) {
			c->type = IMAP_CODE_APPENDUID;
			c->uidvalidity = uv;
			c->set1 = a[1].str;
		}
	} else if (code_is(c, "COPYUID")) {
		if (c->arg_count == 3 && get_u32(&a[0], true, &uv) &&
		    atom_is_set(&a[1]) && atom_is_set(&a[2])) {
			c->type = IMAP_CODE_COPYUID;
			c->uidvalidity = uv;
			c->set1 = a[1].str;
			c->set2 = a[2].str;
		}
	}
}

/* s[0..len): everything after the status word (or after "+"). */
static int
parse_resp_text(struct imap_parser *p, const char *s, size_t len)
{
	const char *end = s + len, *name, *ne, *close, *t;
	struct imap_resp_code *c = &p->resp.code;

	if (s < end && *s == ' ')
		s++;
	t = s;
	if (s < end && *s == '[') {
		name = s + 1;
		ne = name;
		while (ne < end && *ne != ' ' && *ne != ']')
			ne++;
		close = ne < end && *ne == ']' ? ne :
		        ne < end ? code_close(ne + 1, end) : NULL;
		/* Without a closing ']' it is not a code, only text. */
		if (close != NULL) {
			c->name = str_put(p, name, (size_t)(ne - name));
			if (c->name == NULL)
				return fail(p, "internal error: string space exhausted");
			if (close > ne) {
				const char *a = ne + 1;

				if (tokenize(p, a, (size_t)(close - a), true) == 0 &&
				    build_tree(p, &c->args, &c->arg_count) == 0) {
					/* typed below */
				} else {
					/* Odd args never fail the response:
					 * keep them as one raw atom. */
					p->code_raw.type = IMAP_VALUE_ATOM;
					p->code_raw.str = str_put(p, a, (size_t)(close - a));
					p->code_raw.len = (size_t)(close - a);
					if (p->code_raw.str == NULL)
						return fail(p, "internal error: string space exhausted");
					c->args = &p->code_raw;
					c->arg_count = 1;
				}
			}
			type_code(c);
			t = close + 1;
			if (t < end && *t == ' ')
				t++;
		}
	}
	p->resp.text = str_put(p, t, (size_t)(end - t));
	if (p->resp.text == NULL)
		return fail(p, "internal error: string space exhausted");
	return 0;
}

/* ---- typed untagged data ---- */

static int
build_fetch_body(struct imap_parser *p, const struct imap_value *name,
                 const struct imap_value *val, struct imap_fetch *f)
{
	static const char *const rfc822[] = {
		"RFC822", "RFC822.HEADER", "RFC822.TEXT",
	};
	struct imap_fetch_body *b;
	const char *s = name->str, *br, *cb, *end = name->str + name->len;
	const char *section = NULL;
	size_t plen;
	bool binary = false;
	uint32_t origin = 0;
	char d[48];

	for (size_t i = 0; i < N_ELEMENTS(rfc822); i++) {
		if (imap_value_ieq(name, rfc822[i])) {
			section = rfc822[i];
			break;
		}
	}
	if (section == NULL) {
		br = memchr(s, '[', name->len);
		if (br == NULL)
			return 0;
		plen = (size_t)(br - s);
		if ((plen == 4 && str_ieqn(s, "BODY", 4)) ||
		    (plen == 9 && str_ieqn(s, "BODY.PEEK", 9)))
			binary = false;
		else if ((plen == 6 && str_ieqn(s, "BINARY", 6)) ||
		         (plen == 11 && str_ieqn(s, "BINARY.PEEK", 11)))
			binary = true;
		else
			return 0; /* BINARY.SIZE[1] and such: not a body */
		cb = memchr(br, ']', (size_t)(end - br));
		if (cb == NULL)
			return fail(p, "FETCH: no ']' in %s",
			            describe(name, d, sizeof(d)));
		if (cb + 1 < end) {
			const char *o = cb + 2;
			uint64_t n;

			if (cb[1] != '<' || end[-1] != '>' ||
			    !str_to_u64(o, (size_t)(end - 1 - o), UINT32_MAX, &n))
				return fail(p, "FETCH: bad partial origin in %s",
				            describe(name, d, sizeof(d)));
			origin = (uint32_t)n;
		}
		section = str_put(p, br + 1, (size_t)(cb - br - 1));
		if (section == NULL)
			return fail(p, "internal error: string space exhausted");
	}
	if (val->type != IMAP_VALUE_STRING && val->type != IMAP_VALUE_NIL &&
	    val->type != IMAP_VALUE_STREAMED)
		return fail(p, "FETCH: value of %s is not a string",
		            describe(name, d, sizeof(d)));
	if (f->body_count == IMAP_FETCH_MAX_SECTIONS)
		return fail(p, "FETCH: more than %d body sections",
		            IMAP_FETCH_MAX_SECTIONS);
	b = &f->bodies[f->body_count++];
	b->section = section;
	b->origin = origin;
	b->binary = binary;
	b->value = val;
	f->have |= IMAP_FETCH_BODY;
	return 1;
}

static int
build_fetch(struct imap_parser *p, const struct imap_value *raw, size_t n)
{
	struct imap_fetch *f = &p->resp.u.fetch;
	const struct imap_value *items;
	size_t count;
	uint64_t num;
	char d[48];

	if (!get_u32(&raw[0], true, &f->seq))
		return fail(p, "FETCH: bad message number %s",
		            describe(&raw[0], d, sizeof(d)));
	if (n != 3 || raw[2].type != IMAP_VALUE_LIST)
		return fail(p, "FETCH: expected one parenthesized item list");
	items = raw[2].list;
	count = raw[2].count;
	for (size_t i = 0; i < count; i += 2) {
		const struct imap_value *name = &items[i], *val;
		int r;

		if (name->type != IMAP_VALUE_ATOM)
			return fail(p, "FETCH: item name %s is not an atom",
			            describe(name, d, sizeof(d)));
		if (i + 1 == count)
			return fail(p, "FETCH: item %s has no value",
			            describe(name, d, sizeof(d)));
		val = &items[i + 1];
		if (imap_value_ieq(name, "UID")) {
			if (!get_u32(val, true, &f->uid))
				return fail(p, "FETCH: bad UID %s",
				            describe(val, d, sizeof(d)));
			f->have |= IMAP_FETCH_UID;
		} else if (imap_value_ieq(name, "FLAGS")) {
			if (val->type != IMAP_VALUE_LIST)
				return fail(p, "FETCH: FLAGS is %s, not a list",
				            describe(val, d, sizeof(d)));
			if (atoms_to_strlist(p, val->list, val->count,
			                     "FETCH FLAGS", &f->flags) < 0)
				return -1;
			f->have |= IMAP_FETCH_FLAGS;
		} else if (imap_value_ieq(name, "INTERNALDATE")) {
			if (val->type != IMAP_VALUE_STRING ||
			    !imap_parse_datetime(val->str, &f->internaldate,
			                         &f->internaldate_tz))
				return fail(p, "FETCH: bad INTERNALDATE %s",
				            describe(val, d, sizeof(d)));
			f->have |= IMAP_FETCH_INTERNALDATE;
		} else if (imap_value_ieq(name, "RFC822.SIZE")) {
			if (!imap_value_number(val, UINT64_MAX, &f->rfc822_size))
				return fail(p, "FETCH: bad RFC822.SIZE %s",
				            describe(val, d, sizeof(d)));
			f->have |= IMAP_FETCH_RFC822_SIZE;
		} else if (imap_value_ieq(name, "MODSEQ")) {
			if (val->type != IMAP_VALUE_LIST || val->count != 1 ||
			    !imap_value_number(&val->list[0], UINT64_MAX, &num))
				return fail(p, "FETCH: MODSEQ is not (number)");
			f->modseq = num;
			f->have |= IMAP_FETCH_MODSEQ;
		} else {
			r = build_fetch_body(p, name, val, f);
			if (r < 0)
				return -1;
			/* r == 0: ENVELOPE, BODYSTRUCTURE, X-GM-...: skipped */
		}
	}
	p->resp.type = IMAP_UNTAGGED_FETCH;
	return 0;
}

static unsigned
mbox_attr(const struct imap_value *v)
{
	static const struct {
		const char *name;
		unsigned bit;
	} attrs[] = {
		{ "\\Noinferiors", IMAP_MBOX_NOINFERIORS },
		{ "\\Noselect", IMAP_MBOX_NOSELECT },
		{ "\\Marked", IMAP_MBOX_MARKED },
		{ "\\Unmarked", IMAP_MBOX_UNMARKED },
		{ "\\HasChildren", IMAP_MBOX_HASCHILDREN },
		{ "\\HasNoChildren", IMAP_MBOX_HASNOCHILDREN },
		{ "\\NonExistent", IMAP_MBOX_NONEXISTENT },
		{ "\\Subscribed", IMAP_MBOX_SUBSCRIBED },
		{ "\\Remote", IMAP_MBOX_REMOTE },
		{ "\\All", IMAP_MBOX_ALL },
		{ "\\Archive", IMAP_MBOX_ARCHIVE },
		{ "\\Drafts", IMAP_MBOX_DRAFTS },
		{ "\\Flagged", IMAP_MBOX_FLAGGED },
		{ "\\Junk", IMAP_MBOX_JUNK },
		{ "\\Sent", IMAP_MBOX_SENT },
		{ "\\Trash", IMAP_MBOX_TRASH },
		/* XLIST (Gmail's predecessor of SPECIAL-USE) */
		{ "\\Inbox", IMAP_MBOX_INBOX },
		{ "\\AllMail", IMAP_MBOX_ALL },
		{ "\\Spam", IMAP_MBOX_JUNK },
		{ "\\Starred", IMAP_MBOX_FLAGGED },
	};

	for (size_t i = 0; i < N_ELEMENTS(attrs); i++) {
		if (imap_value_ieq(v, attrs[i].name))
			return attrs[i].bit;
	}
	return 0;
}

/* A one-character quoted delimiter or NIL. */
static bool
get_delimiter(const struct imap_value *v, char *delim_r)
{
	if (v->type == IMAP_VALUE_NIL) {
		*delim_r = '\0';
		return true;
	}
	if (v->type != IMAP_VALUE_STRING || v->len != 1)
		return false;
	*delim_r = v->str[0];
	return true;
}

static int
build_list(struct imap_parser *p, const struct imap_value *raw, size_t n,
           enum imap_untagged_type type)
{
	struct imap_list *l = &p->resp.u.list;
	const char *w = raw[0].str;
	char d[48];

	if (n < 4)
		return fail(p, "%s: expected (attributes) delimiter name, got "
		            "%zu items", w, n - 1);
	if (raw[1].type != IMAP_VALUE_LIST)
		return fail(p, "%s: attributes are %s, not a list", w,
		            describe(&raw[1], d, sizeof(d)));
	if (atoms_to_strlist(p, raw[1].list, raw[1].count, w,
	                     &l->attr_names) < 0)
		return -1;
	for (size_t i = 0; i < raw[1].count; i++)
		l->attrs |= mbox_attr(&raw[1].list[i]);
	if (!get_delimiter(&raw[2], &l->delimiter))
		return fail(p, "%s: bad hierarchy delimiter %s", w,
		            describe(&raw[2], d, sizeof(d)));
	if (!is_astring(&raw[3]))
		return fail(p, "%s: bad mailbox name (%s)", w,
		            describe(&raw[3], d, sizeof(d)));
	l->name = raw[3].str;
	l->name_len = raw[3].len;
	/* raw[4...]: LIST-EXTENDED data such as ("CHILDINFO" ("SUBSCRIBED")) */
	p->resp.type = type;
	return 0;
}

static int
build_status(struct imap_parser *p, const struct imap_value *raw, size_t n)
{
	static const struct {
		const char *name;
		unsigned bit;
	} known[] = {
		{ "MESSAGES", IMAP_STATUS_MESSAGES },
		{ "RECENT", IMAP_STATUS_RECENT },
		{ "UIDNEXT", IMAP_STATUS_UIDNEXT },
		{ "UIDVALIDITY", IMAP_STATUS_UIDVALIDITY },
		{ "UNSEEN", IMAP_STATUS_UNSEEN },
		{ "HIGHESTMODSEQ", IMAP_STATUS_HIGHESTMODSEQ },
		{ "SIZE", IMAP_STATUS_SIZE },
		{ "DELETED", IMAP_STATUS_DELETED },
	};
	struct imap_status_data *st = &p->resp.u.status;
	const struct imap_value *items;
	char d[48];

	if (n != 3 || !is_astring(&raw[1]) || raw[2].type != IMAP_VALUE_LIST)
		return fail(p, "STATUS: expected mailbox and (items)");
	st->mailbox = raw[1].str;
	st->mailbox_len = raw[1].len;
	items = raw[2].list;
	if (raw[2].count % 2 != 0)
		return fail(p, "STATUS: item list has an odd number of elements");
	for (size_t i = 0; i < raw[2].count; i += 2) {
		unsigned bit = 0;
		uint64_t v;

		if (items[i].type != IMAP_VALUE_ATOM)
			return fail(p, "STATUS: item name %s is not an atom",
			            describe(&items[i], d, sizeof(d)));
		for (size_t k = 0; k < N_ELEMENTS(known); k++) {
			if (imap_value_ieq(&items[i], known[k].name))
				bit = known[k].bit;
		}
		if (bit == 0)
			continue; /* MAILBOXID, X-...: ignored */
		if (!imap_value_number(&items[i + 1],
		                       bit & (IMAP_STATUS_HIGHESTMODSEQ |
		                              IMAP_STATUS_SIZE) ?
		                       UINT64_MAX : UINT32_MAX, &v))
			return fail(p, "STATUS: bad value %s for %s",
			            describe(&items[i + 1], d, sizeof(d)),
			            items[i].str);
		st->have |= bit;
		switch (bit) {
		case IMAP_STATUS_MESSAGES: st->messages = (uint32_t)v; break;
		case IMAP_STATUS_RECENT: st->recent = (uint32_t)v; break;
		case IMAP_STATUS_UIDNEXT: st->uidnext = (uint32_t)v; break;
		case IMAP_STATUS_UIDVALIDITY: st->uidvalidity = (uint32_t)v; break;
		case IMAP_STATUS_UNSEEN: st->unseen = (uint32_t)v; break;
		case IMAP_STATUS_DELETED: st->deleted = (uint32_t)v; break;
		case IMAP_STATUS_HIGHESTMODSEQ: st->highestmodseq = v; break;
		case IMAP_STATUS_SIZE: st->size = v; break;
		}
	}
	p->resp.type = IMAP_UNTAGGED_STATUS;
	return 0;
}

static int
build_namespace(struct imap_parser *p, const struct imap_value *raw, size_t n)
{
	struct imap_namespace *ns = &p->resp.u.ns;
	struct imap_ns_entry *e;
	size_t total = 0;
	char d[48];

	if (n != 4)
		return fail(p, "NAMESPACE: expected three groups, got %zu", n - 1);
	for (size_t g = 0; g < 3; g++) {
		const struct imap_value *v = &raw[1 + g];

		if (v->type == IMAP_VALUE_LIST)
			total += v->count;
		else if (v->type != IMAP_VALUE_NIL)
			return fail(p, "NAMESPACE: group %zu is %s, not a list "
			            "or NIL", g + 1, describe(v, d, sizeof(d)));
	}
	e = (struct imap_ns_entry *)buf_reserve(&p->nsents,
	                                        sat_mul(total, sizeof(*e)));
	if (e == NULL)
		return fail(p, "internal error: namespace space exhausted");
	for (size_t g = 0; g < 3; g++) {
		const struct imap_value *v = &raw[1 + g];

		ns->ns[g] = e;
		if (v->type != IMAP_VALUE_LIST)
			continue;
		for (size_t i = 0; i < v->count; i++) {
			const struct imap_value *ent = &v->list[i];

			/* ("prefix" "delim" extension...) */
			if (ent->type != IMAP_VALUE_LIST || ent->count < 2 ||
			    !is_astring(&ent->list[0]) ||
			    !get_delimiter(&ent->list[1], &e->delimiter))
				return fail(p, "NAMESPACE: bad entry in group %zu",
				            g + 1);
			e->prefix = ent->list[0].str;
			e++;
		}
		ns->count[g] = v->count;
	}
	buf_commit(&p->nsents, total * sizeof(*e));
	p->resp.type = IMAP_UNTAGGED_NAMESPACE;
	return 0;
}

static int
nums_push(void *ctx, uint32_t num)
{
	struct imap_parser *p = ctx;

	return buf_append(&p->nums, &num, sizeof(num));
}

static int
build_search(struct imap_parser *p, const struct imap_value *raw, size_t n)
{
	struct imap_search_data *s = &p->resp.u.search;
	char d[48];

	for (size_t i = 1; i < n; i++) {
		uint32_t num;

		if (i == n - 1 && raw[i].type == IMAP_VALUE_LIST) {
			/* RFC 7162: "(MODSEQ n)" after the numbers */
			if (raw[i].count != 2 ||
			    !imap_value_ieq(&raw[i].list[0], "MODSEQ") ||
			    !imap_value_number(&raw[i].list[1], UINT64_MAX,
			                       &s->modseq))
				return fail(p, "SEARCH: bad (MODSEQ n) suffix");
			s->have_modseq = true;
			break;
		}
		if (!get_u32(&raw[i], true, &num))
			return fail(p, "SEARCH: %s is not a message number",
			            describe(&raw[i], d, sizeof(d)));
		if (nums_push(p, num) < 0)
			return fail(p, "too many tokens in response (limit %zu)",
			            p->lim.max_tokens);
	}
	s->nums = buf_ptr(&p->nums);
	s->count = buf_len(&p->nums) / sizeof(uint32_t);
	p->resp.type = IMAP_UNTAGGED_SEARCH;
	return 0;
}

static int
build_esearch(struct imap_parser *p, const struct imap_value *raw, size_t n)
{
	struct imap_search_data *s = &p->resp.u.search;
	size_t i = 1;
	char d[48];

	if (i < n && raw[i].type == IMAP_VALUE_LIST) {
		const struct imap_value *c = &raw[i];

		/* search-correlator: (TAG "x"); other correlators ignored */
		if (c->count == 2 && imap_value_ieq(&c->list[0], "TAG")) {
			if (c->list[1].type != IMAP_VALUE_STRING &&
			    c->list[1].type != IMAP_VALUE_ATOM)
				return fail(p, "ESEARCH: bad TAG");
			s->tag = c->list[1].str;
		}
		i++;
	}
	if (i < n && imap_value_ieq(&raw[i], "UID")) {
		s->uid = true;
		i++;
	}
	for (; i < n; i += 2) {
		const struct imap_value *name = &raw[i], *val;

		if (name->type != IMAP_VALUE_ATOM)
			return fail(p, "ESEARCH: item name %s is not an atom",
			            describe(name, d, sizeof(d)));
		if (i + 1 == n)
			return fail(p, "ESEARCH: %s has no value", name->str);
		val = &raw[i + 1];
		if (imap_value_ieq(name, "MIN")) {
			if (!get_u32(val, true, &s->min))
				return fail(p, "ESEARCH: bad MIN");
			s->have_min = true;
		} else if (imap_value_ieq(name, "MAX")) {
			if (!get_u32(val, true, &s->max))
				return fail(p, "ESEARCH: bad MAX");
			s->have_max = true;
		} else if (imap_value_ieq(name, "COUNT")) {
			if (!get_u32(val, false, &s->result_count))
				return fail(p, "ESEARCH: bad COUNT");
			s->have_count = true;
		} else if (imap_value_ieq(name, "MODSEQ")) {
			if (!imap_value_number(val, UINT64_MAX, &s->modseq))
				return fail(p, "ESEARCH: bad MODSEQ");
			s->have_modseq = true;
		} else if (imap_value_ieq(name, "ALL")) {
			if (!atom_is_set(val))
				return fail(p, "ESEARCH: bad ALL set %s",
				            describe(val, d, sizeof(d)));
			buf_reset(&p->nums);
			if (imap_seqset_foreach(val->str, p->lim.max_tokens,
			                        nums_push, p) < 0)
				return fail(p, "ESEARCH: ALL holds more than %zu "
				            "numbers (token limit)",
				            p->lim.max_tokens);
			s->all = val->str;
		}
		/* PARTIAL, RELEVANCY...: ignored */
	}
	s->nums = buf_ptr(&p->nums);
	s->count = buf_len(&p->nums) / sizeof(uint32_t);
	p->resp.type = IMAP_UNTAGGED_ESEARCH;
	return 0;
}

static int
build_vanished(struct imap_parser *p, const struct imap_value *raw, size_t n)
{
	size_t i = 1;
	char d[48];

	if (i < n && raw[i].type == IMAP_VALUE_LIST) {
		if (raw[i].count != 1 || !imap_value_ieq(&raw[i].list[0], "EARLIER"))
			return fail(p, "VANISHED: unknown modifier list");
		p->resp.u.vanished.earlier = true;
		i++;
	}
	if (i + 1 != n || !atom_is_set(&raw[i]))
		return fail(p, "VANISHED: bad UID set %s",
		            describe(i < n ? &raw[i] : NULL, d, sizeof(d)));
	p->resp.u.vanished.uids = raw[i].str;
	p->resp.type = IMAP_UNTAGGED_VANISHED;
	return 0;
}

/* "* N WORD": EXISTS, RECENT, EXPUNGE, FETCH; others are OTHER. */
static int
build_numbered(struct imap_parser *p, const struct imap_value *raw, size_t n)
{
	static const struct {
		const char *name;
		enum imap_untagged_type type;
		bool nonzero;
	} simple[] = {
		{ "EXISTS", IMAP_UNTAGGED_EXISTS, false },
		{ "RECENT", IMAP_UNTAGGED_RECENT, false },
		{ "EXPUNGE", IMAP_UNTAGGED_EXPUNGE, true },
	};
	char d[48];

	if (n >= 2 && imap_value_ieq(&raw[1], "FETCH"))
		return build_fetch(p, raw, n);
	for (size_t i = 0; n >= 2 && i < N_ELEMENTS(simple); i++) {
		if (!imap_value_ieq(&raw[1], simple[i].name))
			continue;
		if (!get_u32(&raw[0], simple[i].nonzero, &p->resp.u.number))
			return fail(p, "%s: number %s out of range",
			            simple[i].name, describe(&raw[0], d, sizeof(d)));
		if (n != 2)
			return fail(p, "%s: unexpected data after it",
			            simple[i].name);
		p->resp.type = simple[i].type;
		return 0;
	}
	p->resp.type = IMAP_UNTAGGED_OTHER;
	return 0;
}

static int
build_untagged(struct imap_parser *p, const char *s, size_t len)
{
	const struct imap_value *raw;
	size_t n;
	const char *w;
	struct imap_response *r = &p->resp;

	if (tokenize(p, s, len, false) < 0 || build_tree(p, &raw, &n) < 0) {
		/* p->err is set already */
		abort_streams(p);
		p->failed = true;
		return -1;
	}
	/* Pointer space for string lists: never more items than values. */
	if (buf_reserve(&p->ptrs, sat_mul(p->nvalues, sizeof(char *))) == NULL)
		return fail(p, "too many tokens in response (limit %zu)",
		            p->lim.max_tokens);
	buf_commit(&p->ptrs, p->nvalues * sizeof(char *));
	p->ptr_cap = p->nvalues;
	p->ptr_used = 0;
	r->raw = raw;
	r->raw_count = n;
	if (n == 0)
		return fail(p, "empty untagged response");
	if (raw[0].type != IMAP_VALUE_ATOM) {
		r->type = IMAP_UNTAGGED_OTHER;
		return 0;
	}
	w = raw[0].str;
	if (w[0] >= '0' && w[0] <= '9')
		return build_numbered(p, raw, n);
	if (str_ieq(w, "CAPABILITY") || str_ieq(w, "ENABLED")) {
		r->type = str_ieq(w, "ENABLED") ? IMAP_UNTAGGED_ENABLED :
		          IMAP_UNTAGGED_CAPABILITY;
		return atoms_to_strlist(p, raw + 1, n - 1, w, &r->u.capability);
	}
	if (str_ieq(w, "LIST") || str_ieq(w, "XLIST"))
		return build_list(p, raw, n, IMAP_UNTAGGED_LIST);
	if (str_ieq(w, "LSUB"))
		return build_list(p, raw, n, IMAP_UNTAGGED_LSUB);
	if (str_ieq(w, "STATUS"))
		return build_status(p, raw, n);
	if (str_ieq(w, "NAMESPACE"))
		return build_namespace(p, raw, n);
	if (str_ieq(w, "SEARCH"))
		return build_search(p, raw, n);
	if (str_ieq(w, "ESEARCH"))
		return build_esearch(p, raw, n);
	if (str_ieq(w, "FLAGS")) {
		if (n != 2 || raw[1].type != IMAP_VALUE_LIST)
			return fail(p, "FLAGS: expected one flag list");
		r->type = IMAP_UNTAGGED_FLAGS;
		return atoms_to_strlist(p, raw[1].list, raw[1].count, "FLAGS",
		                        &r->u.flags);
	}
	if (str_ieq(w, "VANISHED"))
		return build_vanished(p, raw, n);
	r->type = str_ieq(w, "ID") ? IMAP_UNTAGGED_ID : IMAP_UNTAGGED_OTHER;
	return 0;
}

static bool
tag_char(unsigned char c)
{
	/* ASTRING-CHAR except "+": no CTL, SP, ( ) { % * " \ */
	return c > 0x20 && c < 0x7f && strchr("(){%*\"\\+", c) == NULL;
}

/* Ends every streamed literal of a parsed response (see the sink's
 * contract in parser.h). If one end() fails, that handle gets abort(),
 * those ended before it get release() (they will never be seen), those
 * after it get abort(), and the response fails. */
static int
end_streams(struct imap_parser *p)
{
	size_t i, k;

	for (i = 0; i < p->nlits; i++) {
		struct literal *l = lit_at(p, i);

		if (l->handle == NULL || p->sink.end == NULL)
			continue;
		if (p->sink.end(p->sink.ctx, l->handle) < 0)
			break;
	}
	if (i == p->nlits) {
		/* The handles now live in the response's STREAMED values;
		 * retire() releases them from there. */
		for (k = 0; k < p->nlits; k++)
			lit_at(p, k)->handle = NULL;
		return 0;
	}
	for (k = 0; k < i; k++) {
		struct literal *l = lit_at(p, k);

		if (l->handle != NULL && p->sink.release != NULL)
			p->sink.release(p->sink.ctx, l->handle);
		l->handle = NULL;
	}
	return fail(p, "literal sink failed to finish a literal");
}

static int
build_response(struct imap_parser *p)
{
	const char *s = buf_data(&p->text), *end, *sp, *w;
	size_t len = buf_len(&p->text), wl;
	struct imap_response *r = &p->resp;
	enum imap_status st;
	char *base;

	/* Every string of the response fits in 3x the text (see header). */
	p->str_cap = sat_add(sat_mul(len, 3), 64);
	base = buf_reserve(&p->strs, p->str_cap);
	if (base == NULL)
		return fail(p, "internal error: cannot reserve string space");
	p->str_base = base;
	p->str_used = 0;
	memset(r, 0, sizeof(*r));
	r->text = "";
	r->code.name = "";
	end = s + len;

	if (s[0] == '+') {
		r->kind = IMAP_RESP_CONTINUATION;
		s++;
		if (s < end && *s == ' ')
			s++;
		r->text = str_put(p, s, (size_t)(end - s));
		if (r->text == NULL)
			return fail(p, "internal error: string space exhausted");
		goto done;
	}
	sp = memchr(s, ' ', len);
	if (sp == NULL)
		return fail(p, "response has no data after its tag");
	if (sp == s + 1 && s[0] == '*') {
		r->kind = IMAP_RESP_UNTAGGED;
	} else {
		char d[48];
		struct imap_value tv = { .type = IMAP_VALUE_ATOM, .str = s,
		                         .len = (size_t)(sp - s) };

		for (const char *q = s; q < sp; q++) {
			if (!tag_char((unsigned char)*q))
				return fail(p, "invalid tag '%s'",
				            describe(&tv, d, sizeof(d)));
		}
		r->kind = IMAP_RESP_TAGGED;
		r->tag = str_put(p, s, (size_t)(sp - s));
		if (r->tag == NULL)
			return fail(p, "internal error: string space exhausted");
	}
	w = sp + 1;
	wl = 0;
	while (w + wl < end && w[wl] != ' ')
		wl++;
	st = status_word(w, wl);
	if (st != IMAP_STATUS_NONE) {
		r->status = st;
		r->type = IMAP_UNTAGGED_STATE;
		if (parse_resp_text(p, w + wl, (size_t)(end - (w + wl))) < 0)
			return -1;
		goto done;
	}
	if (r->kind == IMAP_RESP_TAGGED)
		return fail(p, "tagged response %s without OK, NO or BAD", r->tag);
	if (build_untagged(p, sp + 1, (size_t)(end - (sp + 1))) < 0)
		return -1;
done:
	buf_commit(&p->strs, p->str_used);
	return end_streams(p);
}

/* ---- public API ---- */

struct imap_parser *
imap_parser_new(const struct imap_parser_limits *limits)
{
	struct imap_parser *p = xcalloc(1, sizeof(*p));
	struct imap_parser_limits *l = &p->lim;
	size_t maxt;

	if (limits != NULL)
		*l = *limits;
	if (l->max_line == 0)
		l->max_line = DEF_MAX_LINE;
	/* Keeps 3 * max_line and friends far from overflowing. */
	if (l->max_line > SIZE_MAX / 16)
		l->max_line = SIZE_MAX / 16;
	if (l->max_literal_mem == 0)
		l->max_literal_mem = DEF_MAX_LITERAL_MEM;
	if (l->max_literal_mem > SIZE_MAX / 16)
		l->max_literal_mem = SIZE_MAX / 16;
	if (l->max_literal == 0)
		l->max_literal = DEF_MAX_LITERAL;
	if (l->max_depth == 0)
		l->max_depth = DEF_MAX_DEPTH;
	if (l->max_tokens == 0)
		l->max_tokens = DEF_MAX_TOKENS;
	if (l->max_literal_mem_total == 0)
		l->max_literal_mem_total = DEF_MAX_LITERAL_MEM_TOTAL;
	if (l->max_literal_mem_total < l->max_literal_mem)
		l->max_literal_mem_total = l->max_literal_mem;
	if (l->max_literal_mem_total > SIZE_MAX / 16)
		l->max_literal_mem_total = SIZE_MAX / 16;

	maxt = sat_add(l->max_tokens, 1);
	buf_init(&p->line, l->max_line);
	buf_init(&p->text, l->max_line);
	/* + one NUL per literal, and a literal takes at least 4 line bytes */
	buf_init(&p->litbuf, sat_add(l->max_literal_mem_total, l->max_line));
	buf_init(&p->lits, sat_mul(l->max_line / 4 + 1, sizeof(struct literal)));
	buf_init(&p->strs, sat_add(sat_mul(l->max_line, 3), 64));
	buf_init(&p->toks, sat_mul(sat_mul(maxt, 2), sizeof(struct tok)));
	buf_init(&p->vals, sat_mul(maxt, sizeof(struct imap_value)));
	buf_init(&p->pending, sat_mul(maxt, sizeof(struct imap_value)));
	buf_init(&p->ptrs, sat_mul(maxt, sizeof(char *)));
	buf_init(&p->nums, sat_mul(maxt, sizeof(uint32_t)));
	buf_init(&p->nsents, sat_mul(maxt, sizeof(struct imap_ns_entry)));
	p->stack = xreallocarray(NULL, (size_t)l->max_depth + 1, sizeof(size_t));
	clear_response(p);
	return p;
}

void
imap_parser_free(struct imap_parser **parser)
{
	struct imap_parser *p = *parser;

	if (p == NULL)
		return;
	imap_parser_reset(p);
	buf_free(&p->line);
	buf_free(&p->text);
	buf_free(&p->litbuf);
	buf_free(&p->lits);
	buf_free(&p->strs);
	buf_free(&p->toks);
	buf_free(&p->vals);
	buf_free(&p->pending);
	buf_free(&p->ptrs);
	buf_free(&p->nums);
	buf_free(&p->nsents);
	free(p->stack);
	free(p);
	*parser = NULL;
}

void *
imap_parser_literal_place(struct imap_parser *p, size_t *room_r)
{
	struct literal *l;
	void *dst;
	size_t room;

	*room_r = 0;
	if (p->failed || p->resp_out || p->state != FRAME_LITERAL ||
	    p->lit_left == 0)
		return NULL;
	l = lit_at(p, p->nlits - 1);
	if (!l->streamed) {
		/* literal_begin() reserved the whole literal and its NUL */
		room = p->lit_left < SIZE_MAX ? (size_t)p->lit_left : SIZE_MAX;
		dst = buf_reserve(&p->litbuf, room);
	} else if (p->sink.place != NULL && p->sink.placed != NULL) {
		dst = p->sink.place(p->sink.ctx, l->handle, &room);
		if (room > p->lit_left)
			room = (size_t)p->lit_left;
	} else {
		return NULL;
	}
	if (dst == NULL || room == 0)
		return NULL;
	*room_r = room;
	return dst;
}

int
imap_parser_placed(struct imap_parser *p, size_t len, const char **error_r)
{
	struct literal *l;

	if (p->failed)
		goto error;
	if (p->state != FRAME_LITERAL || len > p->lit_left)
		fatal("imap_parser_placed: %zu bytes outside a literal", len);
	l = lit_at(p, p->nlits - 1);
	if (!l->streamed)
		buf_commit(&p->litbuf, len);
	else if (p->sink.placed(p->sink.ctx, l->handle, len) < 0) {
		fail(p, "literal sink failed to store data");
		goto error;
	}
	p->lit_left -= len;
	if (p->lit_left == 0 && literal_done(p) < 0)
		goto error;
	return 0;
error:
	*error_r = p->err;
	return -1;
}

void
imap_parser_set_sink(struct imap_parser *p, const struct imap_literal_sink *sink)
{
	bool open = false;

	/* Handles already given out belong to the old sink: release them
	 * there; a response still arriving cannot switch sinks midway. */
	if (p->resp_out)
		retire(p);
	for (size_t i = 0; i < p->nlits; i++)
		open |= lit_at(p, i)->handle != NULL;
	if (open)
		fail(p, "literal sink changed in the middle of a response");
	if (sink != NULL) {
		if (sink->begin == NULL || sink->data == NULL)
			fatal("imap_parser_set_sink: begin and data are required");
		p->sink = *sink;
		p->have_sink = true;
	} else {
		memset(&p->sink, 0, sizeof(p->sink));
		p->have_sink = false;
	}
}

void
imap_parser_reset(struct imap_parser *p)
{
	if (p->resp_out)
		retire(p);
	abort_streams(p);
	clear_response(p);
	p->failed = false;
	p->err[0] = '\0';
}

enum imap_parse_result
imap_parser_feed(struct imap_parser *p, const char *data, size_t len,
                 size_t *consumed_r, const struct imap_response **resp_r,
                 const char **error_r)
{
	size_t pos = 0;

	*consumed_r = 0;
	*resp_r = NULL;
	if (p->resp_out)
		retire(p);
	if (p->failed)
		goto error;
	while (pos < len) {
		const char *lf;
		size_t n;
		int r;

		if (p->state == FRAME_LITERAL) {
			struct literal *l = lit_at(p, p->nlits - 1);

			n = len - pos;
			if (n > p->lit_left)
				n = (size_t)p->lit_left;
			/* Whole chunks: one copy or one sink call per feed. */
			if (!l->streamed) {
				if (buf_append(&p->litbuf, data + pos, n) < 0) {
					fail(p, "internal error: literal buffer full");
					goto error;
				}
			} else if (p->sink.data(p->sink.ctx, l->handle,
			                        data + pos, n) < 0) {
				fail(p, "literal sink failed to store data");
				goto error;
			}
			pos += n;
			p->lit_left -= n;
			if (p->lit_left == 0 && literal_done(p) < 0)
				goto error;
			continue;
		}
		lf = memchr(data + pos, '\n', len - pos);
		n = lf != NULL ? (size_t)(lf - (data + pos)) + 1 : len - pos;
		/* Counted with CR and LF, so the verdict does not depend on
		 * where the input was split. */
		if (n > p->lim.max_line - p->line_bytes) {
			fail(p, "response line longer than %zu bytes",
			     p->lim.max_line);
			goto error;
		}
		p->line_bytes += n;
		if (lf == NULL) {
			if (buf_append(&p->line, data + pos, n) < 0) {
				fail(p, "internal error: line buffer full");
				goto error;
			}
			pos += n;
			break;
		}
		if (buf_len(&p->line) > 0) {
			if (buf_append(&p->line, data + pos, n - 1) < 0) {
				fail(p, "internal error: line buffer full");
				goto error;
			}
			r = segment_done(p, buf_data(&p->line), buf_len(&p->line));
			buf_reset(&p->line);
		} else {
			/* Fast path: the whole line is in this input. */
			r = segment_done(p, data + pos, n - 1);
		}
		pos += n;
		if (r < 0)
			goto error;
		if (r > 0) {
			p->resp_out = true;
			*consumed_r = pos;
			*resp_r = &p->resp;
			return IMAP_PARSE_OK;
		}
	}
	*consumed_r = pos;
	return IMAP_PARSE_MORE;
error:
	*consumed_r = pos;
	*error_r = p->err;
	return IMAP_PARSE_ERROR;
}
