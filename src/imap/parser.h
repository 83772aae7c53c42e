/* parser.h: incremental, bounded IMAP response parser (RFC 3501/9051).
 *
 * Push API: the caller feeds bytes as they arrive; the parser consumes what
 * it can and either returns one complete response, asks for more input, or
 * fails. It can stop and resume at any byte, so a response split anywhere
 * parses the same as one fed whole.
 *
 * Two layers inside (see parser.c): a framer/tokenizer (lines, atoms,
 * quoted strings, literals {N} {N+} ~{N}, NIL, nested lists with an explicit
 * stack, resp-text with [CODE args]) and a response layer that turns the
 * tokens into the typed structs of response.h.
 *
 * Literals larger than limits.max_literal_mem go to the caller's sink (if
 * set) in chunks as they arrive, never into memory; without a sink they are
 * a parse error. Every limit has its own error text.
 * Depends on base only. */
#ifndef IMAPFERRY_IMAP_PARSER_H
#define IMAPFERRY_IMAP_PARSER_H

#include "base.h"
#include "response.h"

struct imap_parser;

struct imap_parser_limits {
	size_t max_line;          /* bytes of one response outside literals; 0: 8 MiB */
	size_t max_literal_mem;   /* literals up to this stay in memory; 0: 256 KiB */
	uint64_t max_literal;     /* any literal, streamed or not; 0: 4 GiB */
	unsigned max_depth;       /* list nesting; 0: 32 */
	size_t max_tokens;        /* tokens in one response; 0: 2,000,000 */
	/* in-memory literals of one response together; 0: 16 MiB (never
	 * less than max_literal_mem). Bounds a response made of many small
	 * literals. */
	size_t max_literal_mem_total;
};

/* Receives literals above max_literal_mem. begin() returns an opaque
 * handle (non-NULL) or NULL to refuse (parse error "literal refused by
 * sink"); data() returns 0 or -1 (parse error); end() is called once all
 * bytes arrived; abort() is called instead of end() when the parser is
 * reset/freed mid-literal or the response fails to parse after the
 * literal. The handle then appears in the response as an
 * IMAP_VALUE_STREAMED value; ownership of the handle stays with the sink:
 * after the response has been consumed, the parser calls release() on every
 * streamed handle of that response (at the next feed or on free), unless
 * imap_value_steal_stream() took it.
 *
 * Precisely, per handle: begin, data* (chunks as they arrive, never
 * byte by byte), then exactly one of
 *   - end() once the literal is complete AND the whole response parsed
 *     (end() is deferred to the response's final line), later followed by
 *     release() unless stolen; or
 *   - abort() (no end(), no release()) when the response fails for any
 *     reason, the parser is reset/freed mid-response, or data()/end()
 *     itself returned -1.
 * A failed response never exposes its handles. */
struct imap_literal_sink {
	void *(*begin)(void *ctx, uint64_t size);
	int (*data)(void *ctx, void *handle, const void *data, size_t len);
	int (*end)(void *ctx, void *handle);
	void (*abort)(void *ctx, void *handle);
	void (*release)(void *ctx, void *handle);
	/* Optional, both or neither: where the next bytes of a streamed
	 * literal can be stored in place, and how many fit (*room_r; NULL:
	 * not now), then how many were stored there. Lets the client read
	 * a body from the connection straight into the sink's memory
	 * (imap_parser_literal_place()) instead of through its read buffer
	 * and data(). */
	void *(*place)(void *ctx, void *handle, size_t *room_r);
	int (*placed)(void *ctx, void *handle, size_t len);
	void *ctx;
	/* 0, or: literals of at least this many bytes go to the sink even
	 * when they would fit in memory (a caller that keeps the bodies
	 * anyway saves a copy: the sink can allocate exactly size bytes and
	 * the handle be stolen). */
	uint64_t min_size;
};

enum imap_parse_result {
	IMAP_PARSE_OK,     /* *resp_r holds one complete response */
	IMAP_PARSE_MORE,   /* all input consumed, response incomplete */
	IMAP_PARSE_ERROR,  /* *error_r says why; parser must be reset or freed */
};

/* Creates a parser; limits may be NULL for the defaults. */
struct imap_parser *imap_parser_new(const struct imap_parser_limits *limits);
void imap_parser_free(struct imap_parser **parser);
/* The sink struct is copied. NULL removes it. Takes effect at once. Like
 * a feed, it ends the lifetime of the response returned last (its streamed
 * handles are released to the old sink). Switching while a streamed
 * literal of an unfinished response is open aborts it and fails the
 * parser ("literal sink changed in the middle of a response"). */
void imap_parser_set_sink(struct imap_parser *parser,
                          const struct imap_literal_sink *sink);
/* Forgets any partial response (aborting an open streamed literal). */
void imap_parser_reset(struct imap_parser *parser);

/* Feeds len bytes. Sets *consumed_r to the bytes used (on OK this may be
 * less than len: the rest belongs to the next response; feed it again).
 * On IMAP_PARSE_OK, *resp_r points to a response owned by the parser,
 * valid until the next imap_parser_feed/reset/free call.
 * On IMAP_PARSE_ERROR, *error_r describes the problem (valid until the next
 * call on this parser). */
/* Zero-copy literal input: while the parser is inside a literal whose
 * bytes can be stored in place (an in-memory literal, or a streamed one
 * whose sink has place()), returns where the next bytes go and sets
 * *room_r to how many may be written there (never past the literal's
 * end); else NULL. The caller writes up to *room_r bytes there (reads them
 * from the connection) and reports them with imap_parser_placed(), which
 * counts them as fed input. Input already buffered must be fed first: the
 * bytes placed are the next ones of the stream. */
void *imap_parser_literal_place(struct imap_parser *parser, size_t *room_r);
/* Returns 0, or -1 with *error_r (the parser failed, as in a feed). */
int imap_parser_placed(struct imap_parser *parser, size_t len,
                       const char **error_r);

enum imap_parse_result
imap_parser_feed(struct imap_parser *parser, const char *data, size_t len,
                 size_t *consumed_r, const struct imap_response **resp_r,
                 const char **error_r);

#endif
