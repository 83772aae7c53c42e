/* fuzz_imap_parser.c: libFuzzer target for the IMAP response parser.
 *
 * The first input byte picks how the rest is cut into feeds. The input is
 * parsed twice, whole and in pieces, with small limits and a sink that
 * checks its own contract (handles are heap objects, so ASan catches a
 * double release or a leak); both runs must produce the same hash of
 * every typed field, the same error, and the same sink events. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parser.h"

#define MAX_INPUT (64 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct handle {
	uint64_t size, got, hash;
	int ended;
};

struct sink_ctx {
	uint64_t bytes, begins, ends, aborts, releases;
	int live;
	char scratch[7];          /* where place() lets the bytes go */
};

static uint64_t
mix(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

static uint64_t
mix_u64(uint64_t h, uint64_t v)
{
	return mix(h, &v, sizeof(v));
}

static uint64_t
mix_str(uint64_t h, const char *s)
{
	if (s == NULL)
		return mix_u64(h, 0xdead);
	return mix(h, s, strlen(s) + 1);
}

static void *
s_begin(void *ctx, uint64_t size)
{
	struct sink_ctx *c = ctx;
	struct handle *h;

	/* refuse some sizes, deterministically */
	if (size % 251 == 7)
		return NULL;
	h = calloc(1, sizeof(*h));
	if (h == NULL)
		abort();
	h->size = size;
	h->hash = 14695981039346656037ull;
	c->begins++;
	c->live++;
	return h;
}

static int
s_data(void *ctx, void *handle, const void *data, size_t len)
{
	struct sink_ctx *c = ctx;
	struct handle *h = handle;

	if (len == 0 || h->ended || h->got + len > h->size)
		abort();
	h->got += len;
	h->hash = mix(h->hash, data, len);
	c->bytes += len;
	return 0;
}

/* Zero-copy input (imap_parser_literal_place): the bytes go to a small
 * scratch area, then through s_data as if fed, so the result must equal
 * a plain feed's. */
static void *
s_place(void *ctx, void *handle, size_t *room_r)
{
	struct sink_ctx *c = ctx;

	*room_r = sizeof(c->scratch);
	return c->scratch;
}

static int
s_placed(void *ctx, void *handle, size_t len)
{
	struct sink_ctx *c = ctx;

	if (len > sizeof(c->scratch))
		abort();
	return s_data(ctx, handle, c->scratch, len);
}

static int
s_end(void *ctx, void *handle)
{
	struct sink_ctx *c = ctx;
	struct handle *h = handle;

	if (h->ended || h->got != h->size)
		abort();
	h->ended = 1;
	c->ends++;
	return 0;
}

static void
s_abort(void *ctx, void *handle)
{
	struct sink_ctx *c = ctx;

	c->aborts++;
	c->live--;
	free(handle);
}

static void
s_release(void *ctx, void *handle)
{
	struct sink_ctx *c = ctx;
	struct handle *h = handle;

	if (!h->ended)
		abort();
	c->releases++;
	c->live--;
	free(handle);
}

static uint64_t
hash_values(uint64_t h, const struct imap_value *v, size_t n)
{
	h = mix_u64(h, n);
	for (size_t i = 0; i < n; i++) {
		h = mix_u64(h, (uint64_t)v[i].type * 4 + v[i].is_literal * 2 +
		            v[i].is_literal8);
		switch (v[i].type) {
		case IMAP_VALUE_ATOM:
		case IMAP_VALUE_STRING:
		case IMAP_VALUE_NIL:
			if (v[i].str[v[i].len] != '\0')
				abort();
			h = mix(h, v[i].str, v[i].len);
			break;
		case IMAP_VALUE_LIST:
			/* nesting is bounded by max_depth, recursion is fine */
			h = hash_values(h, v[i].list, v[i].count);
			break;
		case IMAP_VALUE_STREAMED: {
			const struct handle *s = v[i].stream;

			if (s == NULL || !s->ended || s->size != v[i].stream_size)
				abort();
			h = mix_u64(mix_u64(h, s->size), s->hash);
			break;
		}
		}
	}
	return h;
}

static uint64_t
hash_strlist(uint64_t h, const struct imap_strlist *l)
{
	h = mix_u64(h, l->count);
	for (size_t i = 0; i < l->count; i++)
		h = mix_str(h, l->items[i]);
	return h;
}

static uint64_t
hash_response(uint64_t h, const struct imap_response *r)
{
	const struct imap_resp_code *c = &r->code;

	h = mix_u64(h, (uint64_t)r->kind << 32 | (uint64_t)r->status << 16 |
	            (uint64_t)c->type << 8 | (uint64_t)r->type);
	h = mix_str(h, r->tag);
	h = mix_str(h, r->text);
	h = mix_str(h, c->name);
	h = mix_u64(mix_u64(h, c->num), c->uidvalidity);
	h = mix_str(mix_str(h, c->set1), c->set2);
	h = hash_values(h, c->args, c->arg_count);
	h = hash_values(h, r->raw, r->raw_count);
	if (r->kind != IMAP_RESP_UNTAGGED)
		return h;
	switch (r->type) {
	case IMAP_UNTAGGED_CAPABILITY:
	case IMAP_UNTAGGED_ENABLED:
		return hash_strlist(h, &r->u.capability);
	case IMAP_UNTAGGED_FLAGS:
		return hash_strlist(h, &r->u.flags);
	case IMAP_UNTAGGED_LIST:
	case IMAP_UNTAGGED_LSUB:
		h = hash_strlist(mix_u64(h, r->u.list.attrs), &r->u.list.attr_names);
		h = mix_u64(h, (unsigned char)r->u.list.delimiter);
		return mix(h, r->u.list.name, r->u.list.name_len);
	case IMAP_UNTAGGED_STATUS: {
		const struct imap_status_data *s = &r->u.status;

		h = mix(h, s->mailbox, s->mailbox_len);
		h = mix_u64(h, s->have);
		h = mix_u64(h, (uint64_t)s->messages << 32 | s->recent);
		h = mix_u64(h, (uint64_t)s->uidnext << 32 | s->uidvalidity);
		h = mix_u64(h, (uint64_t)s->unseen << 32 | s->deleted);
		return mix_u64(mix_u64(h, s->highestmodseq), s->size);
	}
	case IMAP_UNTAGGED_NAMESPACE:
		for (int g = 0; g < 3; g++) {
			h = mix_u64(h, r->u.ns.count[g]);
			for (size_t i = 0; i < r->u.ns.count[g]; i++) {
				h = mix_str(h, r->u.ns.ns[g][i].prefix);
				h = mix_u64(h, (unsigned char)r->u.ns.ns[g][i].delimiter);
			}
		}
		return h;
	case IMAP_UNTAGGED_SEARCH:
	case IMAP_UNTAGGED_ESEARCH: {
		const struct imap_search_data *s = &r->u.search;

		h = mix(h, s->nums, s->count * sizeof(*s->nums));
		h = mix_str(mix_str(h, s->tag), s->all);
		h = mix_u64(h, (uint64_t)s->uid | s->have_min << 1 |
		            s->have_max << 2 | s->have_count << 3 |
		            s->have_modseq << 4);
		h = mix_u64(h, (uint64_t)s->min << 32 | s->max);
		return mix_u64(mix_u64(h, s->result_count), s->modseq);
	}
	case IMAP_UNTAGGED_FETCH: {
		const struct imap_fetch *f = &r->u.fetch;

		h = mix_u64(h, (uint64_t)f->seq << 32 | f->have);
		h = mix_u64(h, f->uid);
		h = hash_strlist(h, &f->flags);
		h = mix_u64(h, (uint64_t)f->internaldate);
		h = mix_u64(h, (uint64_t)(int64_t)f->internaldate_tz);
		h = mix_u64(mix_u64(h, f->rfc822_size), f->modseq);
		if (f->body_count > IMAP_FETCH_MAX_SECTIONS)
			abort();
		for (size_t i = 0; i < f->body_count; i++) {
			h = mix_str(h, f->bodies[i].section);
			h = mix_u64(h, (uint64_t)f->bodies[i].origin << 1 |
			            f->bodies[i].binary);
			h = hash_values(h, f->bodies[i].value, 1);
		}
		return h;
	}
	case IMAP_UNTAGGED_EXISTS:
	case IMAP_UNTAGGED_RECENT:
	case IMAP_UNTAGGED_EXPUNGE:
		return mix_u64(h, r->u.number);
	case IMAP_UNTAGGED_VANISHED:
		return mix_str(mix_u64(h, r->u.vanished.earlier), r->u.vanished.uids);
	default:
		return h;
	}
}

/* Parses data in pieces (piece == 0: whole); returns a hash of all
 * responses, the first error and the sink's counters. */
static uint64_t
run(const char *data, size_t size, size_t piece, unsigned pattern)
{
	static const struct imap_parser_limits lim = {
		.max_line = 8192,
		.max_literal_mem = 64,
		.max_literal = 1 << 20,
		.max_depth = 12,
		.max_tokens = 4096,
		.max_literal_mem_total = 1024,
	};
	struct sink_ctx ctx = { 0 };
	/* now and then small literals go to the sink too (min_size) */
	struct imap_literal_sink sink = {
		.begin = s_begin, .data = s_data, .end = s_end,
		.abort = s_abort, .release = s_release,
		.place = (pattern & 0x100) ? s_place : NULL,
		.placed = (pattern & 0x100) ? s_placed : NULL,
		.ctx = &ctx, .min_size = (pattern & 0x40) ? 16 : 0,
	};
	struct imap_parser *p = imap_parser_new(&lim);
	uint64_t h = 14695981039346656037ull;
	size_t a = 0, feeds = 0, nresp = 0;
	bool failed = false;

	imap_parser_set_sink(p, &sink);
	while (a < size && !failed) {
		size_t b = piece == 0 || size - a < piece ? size : a + piece;
		size_t off = a;

		while (off < b) {
			const struct imap_response *r = NULL;
			const char *err = NULL;
			size_t consumed = (size_t)-1;
			enum imap_parse_result res;

			if (++feeds > 2 * size + 16)
				abort(); /* no progress: an infinite loop */
			if (pattern & 0x100) {
				/* inside a literal: the next bytes placed, as
				 * the client reads a body into its buffer */
				size_t room;
				char *dst = imap_parser_literal_place(p, &room);

				if (dst != NULL) {
					size_t n = room < b - off ? room : b - off;

					memcpy(dst, data + off, n);
					if (imap_parser_placed(p, n, &err) < 0) {
						h = mix_str(mix_u64(h, 0xe7707), err);
						failed = true;
						break;
					}
					off += n;
					continue;
				}
			}
			res = imap_parser_feed(p, data + off, b - off, &consumed,
			                       &r, &err);
			if (consumed > b - off)
				abort();
			if (res == IMAP_PARSE_OK) {
				if (consumed == 0 || r == NULL)
					abort();
				h = hash_response(h, r);
				nresp++;
				/* now and then the caller keeps a stream */
				if ((pattern & 0x80) && r->kind == IMAP_RESP_UNTAGGED &&
				    r->type == IMAP_UNTAGGED_FETCH &&
				    r->u.fetch.body_count > 0) {
					void *st = imap_value_steal_stream(
						r->u.fetch.bodies[0].value);

					if (st != NULL)
						s_release(&ctx, st);
				}
				off += consumed;
			} else if (res == IMAP_PARSE_MORE) {
				if (consumed != b - off)
					abort();
				off = b;
			} else {
				if (err == NULL)
					abort();
				h = mix_str(mix_u64(h, 0xe7707), err);
				failed = true;
				break;
			}
		}
		a = b;
	}
	/* a parser that failed must still work after a reset */
	if (failed) {
		const struct imap_response *r;
		const char *err;
		size_t consumed;

		imap_parser_reset(p);
		if (imap_parser_feed(p, "* 1 EXISTS\r\n", 12, &consumed, &r,
		                     &err) != IMAP_PARSE_OK || r->u.number != 1)
			abort();
	}
	imap_parser_free(&p);
	if (ctx.live != 0 || ctx.begins != ctx.aborts + ctx.releases)
		abort();
	h = mix_u64(h, nresp);
	h = mix_u64(h, ctx.begins << 40 | ctx.ends << 20 | ctx.aborts);
	return mix_u64(h, ctx.bytes);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned pattern;
	size_t piece;
	uint64_t whole, split;

	if (size == 0)
		return 0;
	if (size > MAX_INPUT)
		size = MAX_INPUT;
	pattern = data[0];
	data++;
	size--;
	/* 1..8 bytes for the low patterns, larger pieces otherwise */
	piece = (pattern & 0x7f) < 8 ? (size_t)(pattern & 0x7f) + 1 :
	        (size_t)(pattern & 0x7f) * 3;
	whole = run((const char *)data, size, 0, pattern);
	split = run((const char *)data, size, piece, pattern);
	if (whole != split)
		abort(); /* the result depends on where the input was cut */
	/* literal bytes placed instead of fed (the client's zero-copy
	 * reads) must give the same result */
	if (run((const char *)data, size, piece, pattern | 0x100) != whole)
		abort();
	return 0;
}
