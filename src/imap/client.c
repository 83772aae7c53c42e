/* client.c: IMAP session with a pipelined command queue.
 *
 * Invariants:
 * - Commands move pending -> (sending) -> in_flight -> completed. The
 *   command being written is already on in_flight (its tag is on the wire,
 *   so its tagged reply may arrive at any time, e.g. NO instead of "+").
 * - Exactly one completion callback per command: cmd_complete() unlinks the
 *   command first, then calls back, then frees.
 * - Nothing is sent while a synchronizing literal waits for "+". */
#include "client.h"

#include "buf.h"
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_CHUNK (256 * 1024)
/* Literal bytes still due from which a read goes straight to the
 * literal's place (imap_parser_literal_place()); the tail of a smaller
 * one comes with the lines after it through rbuf. */
#define PLACE_MIN (16 * 1024)
#define LITERAL_MINUS_MAX 4096
#define CMD_TEXT_CAP (64 * 1024 * 1024)

enum part_type { PART_TEXT, PART_LITERAL, PART_LITERAL_FD, PART_CONT_LINE };

struct cmd_part {
	enum part_type type;
	char *data;               /* TEXT, LITERAL, CONT_LINE: owned */
	size_t len;
	int fd;                   /* LITERAL_FD: owned */
	uint64_t size;            /* LITERAL_FD */
};

struct imap_cmd {
	struct imap_client *client;
	struct imap_cmd *next;
	char tag[16];
	struct cmd_part *parts;
	size_t nparts, parts_alloc;
	struct buf text;          /* text being accumulated, not yet a part */
	size_t next_part;         /* sending progress */
	bool announced;           /* current literal's {N} was sent */
	bool waiting_cont;        /* waiting for "+" before sending on */
	bool sensitive;
	bool sasl;                /* AUTHENTICATE: may get a challenge to cancel */
	bool sasl_cancelled;
	uint64_t backlog;         /* literal bytes not yet sent */
	imap_untagged_cb *ucb;
	void *uctx;
	imap_cmd_done_cb *cb;
	void *ctx;
};

struct cmd_queue {
	struct imap_cmd *head, *tail;
	unsigned count;
};

struct imap_client {
	struct net_conn *conn;
	struct imap_parser *parser;
	char *label;
	char *host;
	unsigned depth;
	unsigned tag_counter;
	struct cmd_queue pending, in_flight;
	struct imap_cmd *sending;  /* also on in_flight */
	bool dead;
	char *dead_reason;
	bool got_bye;
	char *bye_text;            /* the BYE's text, control characters escaped */
	bool stop_reading;         /* after STARTTLS/COMPRESS OK */
	char *greeting;
	char **caps;               /* NULL-terminated */
	struct imap_strlist caps_list;
	struct imap_mailbox_state mbox;
	uint64_t backlog;
	imap_untagged_cb *ucb;
	void *uctx;
	char *rbuf;
	size_t rlen, roff;         /* unparsed bytes in rbuf[roff..rlen) */
	bool lit_plus, lit_minus;
};

static void client_fail(struct imap_client *c, const char *reason);

/* ---------------------------------------------------------------- queues */

static void
queue_push(struct cmd_queue *q, struct imap_cmd *cmd)
{
	cmd->next = NULL;
	if (q->tail != NULL)
		q->tail->next = cmd;
	else
		q->head = cmd;
	q->tail = cmd;
	q->count++;
}

static struct imap_cmd *
queue_pop(struct cmd_queue *q)
{
	struct imap_cmd *cmd = q->head;

	if (cmd == NULL)
		return NULL;
	q->head = cmd->next;
	if (q->head == NULL)
		q->tail = NULL;
	q->count--;
	cmd->next = NULL;
	return cmd;
}

static bool
queue_remove(struct cmd_queue *q, struct imap_cmd *cmd)
{
	struct imap_cmd **pp, *prev = NULL;

	for (pp = &q->head; *pp != NULL; prev = *pp, pp = &(*pp)->next) {
		if (*pp == cmd) {
			*pp = cmd->next;
			if (q->tail == cmd)
				q->tail = prev;
			q->count--;
			cmd->next = NULL;
			return true;
		}
	}
	return false;
}

/* -------------------------------------------------------------- commands */

static void
cmd_free(struct imap_cmd *cmd)
{
	for (size_t i = 0; i < cmd->nparts; i++) {
		struct cmd_part *p = &cmd->parts[i];
		if (cmd->sensitive && p->data != NULL)
			secret_free(&p->data);
		free(p->data);
		if (p->type == PART_LITERAL_FD && p->fd >= 0)
			close(p->fd);
	}
	free(cmd->parts);
	buf_free(&cmd->text);
	free(cmd);
}

static struct cmd_part *
cmd_part_new(struct imap_cmd *cmd, enum part_type type)
{
	struct cmd_part *p;

	if (cmd->nparts == cmd->parts_alloc) {
		cmd->parts_alloc = cmd->parts_alloc == 0 ? 4 : cmd->parts_alloc * 2;
		cmd->parts = xreallocarray(cmd->parts, cmd->parts_alloc,
		                           sizeof(*cmd->parts));
	}
	p = &cmd->parts[cmd->nparts++];
	memset(p, 0, sizeof(*p));
	p->type = type;
	p->fd = -1;
	return p;
}

/* Moves accumulated text into a part. */
static void
cmd_flush_text(struct imap_cmd *cmd)
{
	struct cmd_part *p;

	if (buf_len(&cmd->text) == 0)
		return;
	p = cmd_part_new(cmd, PART_TEXT);
	p->len = buf_len(&cmd->text);
	p->data = buf_take(&cmd->text);
}

struct imap_cmd *
imap_cmd_new(struct imap_client *client)
{
	struct imap_cmd *cmd = xcalloc(1, sizeof(*cmd));

	cmd->client = client;
	buf_init(&cmd->text, CMD_TEXT_CAP);
	return cmd;
}

void
imap_cmd_add(struct imap_cmd *cmd, const char *text)
{
	if (buf_append_str(&cmd->text, text) < 0)
		fatal("IMAP command text over %d bytes", CMD_TEXT_CAP);
}

void
imap_cmd_addf(struct imap_cmd *cmd, const char *fmt, ...)
{
	char *s;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		fatal("imap_cmd_addf: bad format");
	s = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	imap_cmd_add(cmd, s);
	free(s);
}

bool
imap_quote(struct buf *out, const char *s, size_t len)
{
	if (len > 1024)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == 0 || ch == '\r' || ch == '\n' || ch >= 0x80)
			return false;
	}
	if (buf_append(out, "\"", 1) < 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		if ((s[i] == '"' || s[i] == '\\') && buf_append(out, "\\", 1) < 0)
			return false;
		if (buf_append(out, &s[i], 1) < 0)
			return false;
	}
	return buf_append(out, "\"", 1) == 0;
}

static bool
is_atom_safe(const char *s, size_t len)
{
	if (len == 0 || len > 200)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch <= 0x20 || ch >= 0x7f || strchr("(){%*\"\\]", ch) != NULL)
			return false;
	}
	return !(len == 3 && str_ieqn(s, "NIL", 3));
}

void
imap_cmd_add_astring(struct imap_cmd *cmd, const char *s, size_t len)
{
	struct buf q;

	if (is_atom_safe(s, len)) {
		if (buf_append(&cmd->text, s, len) < 0)
			fatal("IMAP command text too long");
		return;
	}
	buf_init(&q, 4096);
	if (imap_quote(&q, s, len)) {
		imap_cmd_add(cmd, buf_data(&q));
		buf_free(&q);
		return;
	}
	buf_free(&q);
	imap_cmd_add_literal(cmd, s, len);
}

void
imap_cmd_add_literal_take(struct imap_cmd *cmd, char *data, size_t len)
{
	struct cmd_part *p;

	cmd_flush_text(cmd);
	p = cmd_part_new(cmd, PART_LITERAL);
	p->data = data;
	p->len = len;
	cmd->backlog += len;
}

void
imap_cmd_add_literal(struct imap_cmd *cmd, const void *data, size_t len)
{
	char *copy = xmalloc(len + 1);

	memcpy(copy, data, len);
	imap_cmd_add_literal_take(cmd, copy, len);
}

void
imap_cmd_add_literal_fd(struct imap_cmd *cmd, int fd, uint64_t size)
{
	struct cmd_part *p;

	cmd_flush_text(cmd);
	p = cmd_part_new(cmd, PART_LITERAL_FD);
	p->fd = fd;
	p->size = size;
	cmd->backlog += size;
}

/* A line sent after a "+" continuation (AUTHENTICATE). */
static void
cmd_add_cont_line(struct imap_cmd *cmd, const char *line)
{
	struct cmd_part *p;

	cmd_flush_text(cmd);
	p = cmd_part_new(cmd, PART_CONT_LINE);
	p->data = xstrdup(line);
	p->len = strlen(line);
}

void
imap_cmd_set_sensitive(struct imap_cmd *cmd)
{
	cmd->sensitive = true;
}

void
imap_cmd_set_untagged(struct imap_cmd *cmd, imap_untagged_cb *cb, void *ctx)
{
	cmd->ucb = cb;
	cmd->uctx = ctx;
}

void
imap_cmd_submit(struct imap_cmd *cmd, imap_cmd_done_cb *cb, void *ctx)
{
	struct imap_client *c = cmd->client;

	cmd_flush_text(cmd);
	cmd->cb = cb;
	cmd->ctx = ctx;
	if (c->dead) {
		if (cb != NULL)
			cb(ctx, NULL, c->dead_reason);
		cmd_free(cmd);
		return;
	}
	c->backlog += cmd->backlog;
	queue_push(&c->pending, cmd);
}

/* Completes a command that is no longer on any queue. */
static void
cmd_complete(struct imap_cmd *cmd, const struct imap_response *tagged,
             const char *error)
{
	struct imap_client *c = cmd->client;

	c->backlog -= cmd->backlog;
	cmd->backlog = 0;
	if (cmd->cb != NULL)
		cmd->cb(cmd->ctx, tagged, error);
	cmd_free(cmd);
}

/* --------------------------------------------------------------- sending */

static int
conn_write(struct imap_client *c, const void *data, size_t len)
{
	const char *error;

	if (net_conn_write(c->conn, data, len, &error) < 0) {
		client_fail(c, error);
		return -1;
	}
	return 0;
}

static int
send_fd_literal(struct imap_client *c, struct imap_cmd *cmd, struct cmd_part *p)
{
	char chunk[65536];
	uint64_t left = p->size;

	while (left > 0) {
		size_t want = left < sizeof(chunk) ? (size_t)left : sizeof(chunk);
		ssize_t n = read(p->fd, chunk, want);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* The literal size is on the wire: the connection can
			 * no longer be used. */
			client_fail(c, err_set("reading message spool file: %s",
			                       n < 0 ? strerror(errno) : "short file"));
			return -1;
		}
		if (conn_write(c, chunk, (size_t)n) < 0)
			return -1;
		left -= (uint64_t)n;
		cmd->backlog -= (uint64_t)n;
		c->backlog -= (uint64_t)n;
	}
	close(p->fd);
	p->fd = -1;
	return 0;
}

/* Sends the current command as far as possible. Returns 1 when it is
 * completely sent, 0 when it waits for a continuation, -1 on failure. */
static int
send_cmd_parts(struct imap_client *c, struct imap_cmd *cmd)
{
	while (cmd->next_part < cmd->nparts) {
		struct cmd_part *p = &cmd->parts[cmd->next_part];
		uint64_t size;
		char hdr[48];
		bool sync;

		if (cmd->waiting_cont)
			return 0;
		switch (p->type) {
		case PART_TEXT:
			if (!cmd->sensitive)
				log_trace("%s C: %.*s", c->label,
				          (int)(p->len > 200 ? 200 : p->len), p->data);
			if (conn_write(c, p->data, p->len) < 0)
				return -1;
			cmd->next_part++;
			continue;
		case PART_CONT_LINE:
			if (!cmd->announced) {
				/* end the command line, then wait for the "+" */
				if (conn_write(c, "\r\n", 2) < 0)
					return -1;
				cmd->announced = true;
				cmd->waiting_cont = true;
				return 0;
			}
			/* the line is ended by the next part or the final CRLF */
			if (conn_write(c, p->data, p->len) < 0)
				return -1;
			cmd->announced = false;
			cmd->next_part++;
			continue;
		case PART_LITERAL:
		case PART_LITERAL_FD:
			break;
		}
		size = p->type == PART_LITERAL ? p->len : p->size;
		if (!cmd->announced) {
			sync = !(c->lit_plus ||
			         (c->lit_minus && size <= LITERAL_MINUS_MAX));
			snprintf(hdr, sizeof(hdr), "{%llu%s}\r\n",
			         (unsigned long long)size, sync ? "" : "+");
			if (conn_write(c, hdr, strlen(hdr)) < 0)
				return -1;
			cmd->announced = true;
			if (sync) {
				cmd->waiting_cont = true;
				return 0;
			}
		}
		if (p->type == PART_LITERAL) {
			if (conn_write(c, p->data, p->len) < 0)
				return -1;
			cmd->backlog -= p->len;
			c->backlog -= p->len;
			XFREE(p->data);
		} else if (send_fd_literal(c, cmd, p) < 0) {
			return -1;
		}
		cmd->announced = false;
		cmd->next_part++;
	}
	if (conn_write(c, "\r\n", 2) < 0)
		return -1;
	return 1;
}

/* Sends pending commands while the pipeline has room. Returns 0 or -1. */
static int
send_pending(struct imap_client *c)
{
	for (;;) {
		struct imap_cmd *cmd = c->sending;
		int ret;

		if (cmd == NULL) {
			if (c->pending.head == NULL ||
			    c->in_flight.count >= c->depth)
				break;
			cmd = queue_pop(&c->pending);
			snprintf(cmd->tag, sizeof(cmd->tag), "A%u",
			         ++c->tag_counter);
			queue_push(&c->in_flight, cmd);
			c->sending = cmd;
			if (conn_write(c, cmd->tag, strlen(cmd->tag)) < 0 ||
			    conn_write(c, " ", 1) < 0)
				return -1;
		}
		ret = send_cmd_parts(c, cmd);
		if (ret < 0)
			return -1;
		if (ret == 0)
			break;
		c->sending = NULL;
	}
	return 0;
}

/* -------------------------------------------------------------- receiving */

static char **
strv_from_list(const struct imap_strlist *l)
{
	char **v = xcalloc(l->count + 1, sizeof(*v));

	for (size_t i = 0; i < l->count; i++)
		v[i] = xstrdup(l->items[i]);
	return v;
}

static char **
strv_from_values(const struct imap_value *vals, size_t count)
{
	char **v = xcalloc(count + 1, sizeof(*v));
	size_t n = 0;

	for (size_t i = 0; i < count; i++)
		if (vals[i].type == IMAP_VALUE_ATOM)
			v[n++] = xstrdup(vals[i].str);
	return v;
}

static void
caps_set(struct imap_client *c, char **caps)
{
	size_t n = 0;

	strv_free(&c->caps);
	c->caps = caps;
	while (caps[n] != NULL)
		n++;
	c->caps_list.items = (const char *const *)c->caps;
	c->caps_list.count = n;
	c->lit_plus = imap_client_has_cap(c, "LITERAL+");
	c->lit_minus = imap_client_has_cap(c, "LITERAL-");
}

static void
track_code(struct imap_client *c, const struct imap_resp_code *code)
{
	switch (code->type) {
	case IMAP_CODE_CAPABILITY:
		caps_set(c, strv_from_values(code->args, code->arg_count));
		break;
	case IMAP_CODE_UIDVALIDITY:
		c->mbox.uidvalidity = (uint32_t)code->num;
		break;
	case IMAP_CODE_UIDNEXT:
		c->mbox.uidnext = (uint32_t)code->num;
		break;
	case IMAP_CODE_HIGHESTMODSEQ:
		c->mbox.highestmodseq = code->num;
		break;
	case IMAP_CODE_NOMODSEQ:
		c->mbox.nomodseq = true;
		break;
	case IMAP_CODE_PERMANENTFLAGS:
		strv_free(&c->mbox.permanentflags);
		if (code->arg_count == 1 && code->args[0].type == IMAP_VALUE_LIST)
			c->mbox.permanentflags = strv_from_values(
			    code->args[0].list, code->args[0].count);
		else
			c->mbox.permanentflags = strv_from_values(
			    code->args, code->arg_count);
		break;
	case IMAP_CODE_READ_ONLY:
		c->mbox.read_only = true;
		break;
	case IMAP_CODE_READ_WRITE:
		c->mbox.read_only = false;
		break;
	default:
		break;
	}
}

static void
handle_untagged(struct imap_client *c, const struct imap_response *resp)
{
	struct imap_cmd *cmd;

	switch (resp->type) {
	case IMAP_UNTAGGED_STATE:
		track_code(c, &resp->code);
		if (resp->status == IMAP_STATUS_BYE) {
			c->got_bye = true;
			free(c->bye_text);
			c->bye_text = str_escape_controls(resp->text != NULL ?
			                                  resp->text : "");
			log_debug("%s: server said BYE: %s", c->label, resp->text);
		} else if (resp->code.type == IMAP_CODE_ALERT) {
			log_warn("%s: server alert: %s", c->label, resp->text);
		}
		break;
	case IMAP_UNTAGGED_CAPABILITY:
		caps_set(c, strv_from_list(&resp->u.capability));
		break;
	case IMAP_UNTAGGED_EXISTS:
		c->mbox.exists = resp->u.number;
		break;
	case IMAP_UNTAGGED_EXPUNGE:
		if (c->mbox.exists > 0)
			c->mbox.exists--;
		break;
	case IMAP_UNTAGGED_FLAGS:
		strv_free(&c->mbox.flags);
		c->mbox.flags = strv_from_list(&resp->u.flags);
		break;
	default:
		break;
	}
	for (cmd = c->in_flight.head; cmd != NULL; cmd = cmd->next) {
		if (cmd->ucb != NULL) {
			cmd->ucb(cmd->uctx, resp);
			return;
		}
	}
	if (c->ucb != NULL)
		c->ucb(c->uctx, resp);
}

static int
handle_response(struct imap_client *c, const struct imap_response *resp)
{
	struct imap_cmd *cmd;

	switch (resp->kind) {
	case IMAP_RESP_UNTAGGED:
		handle_untagged(c, resp);
		return 0;
	case IMAP_RESP_CONTINUATION:
		cmd = c->sending;
		if (cmd != NULL && cmd->waiting_cont) {
			cmd->waiting_cont = false;
			return 0;
		}
		cmd = c->in_flight.head;
		if (c->sending == NULL && cmd != NULL && cmd->sasl &&
		    !cmd->sasl_cancelled) {
			/* A SASL challenge after our (initial) response that
			 * we have no answer for, e.g. XOAUTH2's JSON error:
			 * cancel with an empty line; the tagged NO follows
			 * (RFC 7628 3.2.3). */
			cmd->sasl_cancelled = true;
			return conn_write(c, "\r\n", 2);
		}
		client_fail(c, "server sent an unexpected continuation");
		return -1;
	case IMAP_RESP_TAGGED:
		break;
	}
	for (cmd = c->in_flight.head; cmd != NULL; cmd = cmd->next)
		if (strcmp(cmd->tag, resp->tag) == 0)
			break;
	if (cmd == NULL) {
		client_fail(c, err_set("server sent a reply for unknown tag '%.40s'",
		                       resp->tag));
		return -1;
	}
	track_code(c, &resp->code);
	if (cmd == c->sending) {
		/* Refused before we finished sending (e.g. literal too
		 * large): the rest of this command must not be sent. */
		c->sending = NULL;
	}
	queue_remove(&c->in_flight, cmd);
	if (resp->status != IMAP_STATUS_OK)
		log_debug("%s: %s %s: %s", c->label, cmd->tag,
		          resp->status == IMAP_STATUS_NO ? "NO" : "BAD", resp->text);
	cmd_complete(cmd, resp, NULL);
	return 0;
}

/* Parses what is buffered in rbuf. Returns 0 or -1. */
static int
parse_buffered(struct imap_client *c)
{
	while (c->roff < c->rlen && !c->dead) {
		const struct imap_response *resp;
		const char *error;
		size_t consumed = 0;
		enum imap_parse_result r;

		if (c->stop_reading) {
			client_fail(c, "server sent data right after its "
			               "STARTTLS/COMPRESS reply (possible injection)");
			return -1;
		}
		r = imap_parser_feed(c->parser, c->rbuf + c->roff,
		                     c->rlen - c->roff, &consumed, &resp, &error);
		c->roff += consumed;
		if (r == IMAP_PARSE_MORE)
			break;
		if (r == IMAP_PARSE_ERROR) {
			client_fail(c, err_set("malformed response from server: %s",
			                       error));
			return -1;
		}
		if (handle_response(c, resp) < 0)
			return -1;
	}
	if (c->roff == c->rlen)
		c->roff = c->rlen = 0;
	return c->dead ? -1 : 0;
}

/* Reads once (blocking) and parses. Returns 0 or -1. */
static int
read_some(struct imap_client *c)
{
	const char *error;
	void *dst;
	size_t room;
	ssize_t n;

	if (c->roff < c->rlen)
		return parse_buffered(c);
	/* inside a literal of some size: read it where it goes, not through
	 * rbuf (one copy less per body byte) */
	dst = c->stop_reading ? NULL :
	    imap_parser_literal_place(c->parser, &room);
	if (dst != NULL && room >= PLACE_MIN)
		n = net_conn_read(c->conn, dst, room, &error);
	else {
		dst = NULL;
		n = net_conn_read(c->conn, c->rbuf, READ_CHUNK, &error);
	}
	if (n < 0) {
		client_fail(c, error);
		return -1;
	}
	if (n == 0) {
		client_fail(c, c->got_bye ?
		            err_set("server closed the connection (BYE: %.200s)",
		                    c->bye_text) :
		            "server closed the connection");
		return -1;
	}
	if (dst != NULL) {
		if (imap_parser_placed(c->parser, (size_t)n, &error) < 0) {
			client_fail(c, err_set("malformed response from "
			                       "server: %s", error));
			return -1;
		}
		return 0;
	}
	c->roff = 0;
	c->rlen = (size_t)n;
	return parse_buffered(c);
}

static void
client_fail(struct imap_client *c, const char *reason)
{
	struct imap_cmd *cmd;

	if (c->dead)
		return;
	c->dead = true;
	c->dead_reason = xasprintf("%s: %s", c->host, reason);
	c->sending = NULL;
	/* Callbacks may submit more commands: those complete at once since
	 * c->dead is set. */
	while ((cmd = queue_pop(&c->in_flight)) != NULL)
		cmd_complete(cmd, NULL, c->dead_reason);
	while ((cmd = queue_pop(&c->pending)) != NULL)
		cmd_complete(cmd, NULL, c->dead_reason);
}

/* ---------------------------------------------------------------- driving */

int
imap_client_run_until_below(struct imap_client *c, unsigned max_outstanding,
                            const char **error_r)
{
	const char *error;

	while (!c->dead && c->pending.count + c->in_flight.count > max_outstanding) {
		if (send_pending(c) < 0)
			break;
		if (c->in_flight.count == 0)
			continue;
		if (c->roff == c->rlen &&
		    net_conn_flush(c->conn, &error) < 0) {
			client_fail(c, error);
			break;
		}
		if (read_some(c) < 0)
			break;
	}
	if (c->dead) {
		*error_r = c->dead_reason;
		return -1;
	}
	if (net_conn_flush(c->conn, &error) < 0) {
		client_fail(c, error);
		*error_r = c->dead_reason;
		return -1;
	}
	return 0;
}

int
imap_client_run(struct imap_client *c, const char **error_r)
{
	return imap_client_run_until_below(c, 0, error_r);
}

struct simple_ctx {
	bool done;
	bool ok;
	bool auth_refused;
	enum err_kind kind;       /* of a tagged NO/BAD, by its code */
	char *error;
};

static void
simple_done(void *ctx, const struct imap_response *tagged, const char *error)
{
	struct simple_ctx *s = ctx;

	s->done = true;
	if (tagged == NULL) {
		s->error = xstrdup(error);
	} else if (tagged->status == IMAP_STATUS_OK) {
		s->ok = true;
	} else {
		/* server text goes to the terminal: no raw control characters */
		char *text = str_escape_controls(tagged->text);

		s->error = xasprintf("%s%s",
		                     tagged->status == IMAP_STATUS_NO ? "NO " : "BAD ",
		                     text);
		free(text);
		/* a server that cannot authenticate anyone just now says
		 * [UNAVAILABLE] (RFC 5530): that is not a refusal */
		s->kind = imap_code_err_kind(tagged->code.type, ERRK_OTHER);
		s->auth_refused = s->kind != ERRK_SESSION;
	}
}

/* Submits cmd, runs until it completes. Returns 0 on OK or -1 with
 * *error_r (per-thread storage). */
static int
cmd_run(struct imap_client *c, struct imap_cmd *cmd, bool *refused_r,
        const char **error_r)
{
	struct simple_ctx s = { 0 };
	const char *error;

	imap_cmd_submit(cmd, simple_done, &s);
	while (!s.done) {
		if (imap_client_run_until_below(c, c->pending.count +
		                                c->in_flight.count - 1, &error) < 0)
			break;
	}
	if (refused_r != NULL)
		*refused_r = s.auth_refused;
	if (s.ok)
		return 0;
	*error_r = err_setk(s.kind != ERRK_NONE ? s.kind : ERRK_SESSION, "%s",
	                    s.error != NULL ? s.error : "connection failed");
	free(s.error);
	return -1;
}

int
imap_client_simple(struct imap_client *c, const char *command,
                   const char **error_r)
{
	struct imap_cmd *cmd = imap_cmd_new(c);

	imap_cmd_add(cmd, command);
	return cmd_run(c, cmd, NULL, error_r);
}

int
imap_client_enable(struct imap_client *c, const char *extensions,
                   const char **error_r)
{
	char *dup = xstrdup(extensions), *p, *next;
	struct buf cmd;
	int ret = 0;

	if (!imap_client_has_cap(c, "ENABLE")) {
		free(dup);
		return 0;
	}
	buf_init(&cmd, 4096);
	for (p = dup; p != NULL; p = next) {
		next = strchr(p, ' ');
		if (next != NULL)
			*next++ = '\0';
		if (*p != '\0' && imap_client_has_cap(c, p) &&
		    (buf_append_str(&cmd, buf_len(&cmd) == 0 ? "ENABLE " : " ") < 0 ||
		     buf_append_str(&cmd, p) < 0))
			fatal("ENABLE command too long");
	}
	if (buf_len(&cmd) > 0)
		ret = imap_client_simple(c, buf_data(&cmd), error_r);
	buf_free(&cmd);
	free(dup);
	return ret;
}

int
imap_client_select(struct imap_client *c, const char *mailbox, bool read_only,
                   const char **error_r)
{
	struct imap_cmd *cmd = imap_cmd_new(c);
	char **pf = c->mbox.permanentflags, **fl = c->mbox.flags;

	strv_free(&pf);
	strv_free(&fl);
	memset(&c->mbox, 0, sizeof(c->mbox));
	imap_cmd_add(cmd, read_only ? "EXAMINE " : "SELECT ");
	imap_cmd_add_astring(cmd, mailbox, strlen(mailbox));
	if (imap_client_has_cap(c, "CONDSTORE"))
		imap_cmd_add(cmd, " (CONDSTORE)");
	c->mbox.read_only = read_only;
	if (cmd_run(c, cmd, NULL, error_r) < 0)
		return -1;
	c->mbox.selected = true;
	return 0;
}

/* --------------------------------------------------------------- connect */

static int
read_greeting(struct imap_client *c, const char **error_r)
{
	/* The greeting is the one response we read without a command in
	 * flight: a dummy in-flight count is not needed, we read directly. */
	const struct imap_response *resp;
	const char *error;
	size_t consumed;

	for (;;) {
		enum imap_parse_result r;
		ssize_t n;

		if (c->roff == c->rlen) {
			n = net_conn_read(c->conn, c->rbuf, READ_CHUNK, &error);
			if (n <= 0) {
				*error_r = err_set("%s: no greeting: %s", c->host,
				                   n == 0 ? "connection closed" : error);
				return -1;
			}
			c->roff = 0;
			c->rlen = (size_t)n;
		}
		r = imap_parser_feed(c->parser, c->rbuf + c->roff,
		                     c->rlen - c->roff, &consumed, &resp, &error);
		c->roff += consumed;
		if (r == IMAP_PARSE_ERROR) {
			*error_r = err_set("%s: malformed greeting: %s", c->host, error);
			return -1;
		}
		if (r == IMAP_PARSE_OK)
			break;
	}
	if (resp->kind != IMAP_RESP_UNTAGGED || resp->type != IMAP_UNTAGGED_STATE ||
	    (resp->status != IMAP_STATUS_OK && resp->status != IMAP_STATUS_PREAUTH)) {
		char *text = str_escape_controls(resp->text != NULL ? resp->text : "");

		*error_r = err_set("%s: server refused the connection: %s", c->host,
		                   text);
		free(text);
		return -1;
	}
	c->greeting = xstrdup(resp->text);
	track_code(c, &resp->code);
	return resp->status == IMAP_STATUS_PREAUTH ? 1 : 0;
}

static int
do_starttls(struct imap_client *c, const char **error_r)
{
	const char *error;

	c->stop_reading = false;
	if (imap_client_simple(c, "STARTTLS", error_r) < 0) {
		if (!c->dead)
			*error_r = err_set("%s: STARTTLS refused: %s", c->host,
			                   *error_r);
		return -1;
	}
	if (c->roff < c->rlen) {
		*error_r = err_set("%s: server sent data right after its STARTTLS "
		                   "reply (possible injection); refusing", c->host);
		return -1;
	}
	if (net_conn_start_tls(c->conn, &error) < 0) {
		*error_r = err_set("%s", error);
		return -1;
	}
	/* Capabilities learned before TLS are not to be trusted. */
	strv_free(&c->caps);
	c->caps_list.count = 0;
	c->caps_list.items = NULL;
	return imap_client_simple(c, "CAPABILITY", error_r);
}

static int
do_auth(struct imap_client *c, const struct imap_client_options *o,
        bool *refused_r, const char **error_r)
{
	struct imap_cmd *cmd = imap_cmd_new(c);
	enum imap_auth_mech mech = o->mech;
	const char *user = o->user != NULL ? o->user : "";
	const char *pass = o->password != NULL ? o->password : "";

	imap_cmd_set_sensitive(cmd);
	if (mech == IMAP_AUTH_AUTO) {
		if (o->authzid != NULL || imap_client_has_cap(c, "AUTH=PLAIN"))
			mech = IMAP_AUTH_PLAIN;
		else
			mech = IMAP_AUTH_LOGIN;
	}
	if (mech == IMAP_AUTH_LOGIN && imap_client_has_cap(c, "LOGINDISABLED")) {
		cmd_free(cmd);
		*error_r = err_setk(ERRK_AUTH, "%s: server disables LOGIN%s", c->host,
		                   net_conn_is_tls(c->conn) ? "" :
		                   " without TLS (use imaps:// or STARTTLS)");
		*refused_r = true;
		return -1;
	}
	if (mech == IMAP_AUTH_LOGIN) {
		imap_cmd_add(cmd, "LOGIN ");
		imap_cmd_add_astring(cmd, user, strlen(user));
		imap_cmd_add(cmd, " ");
		imap_cmd_add_astring(cmd, pass, strlen(pass));
	} else {
		const char *zid = o->authzid != NULL ? o->authzid : "";
		size_t lz = strlen(zid), lu = strlen(user), lp = strlen(pass);
		char *raw, *b64;
		size_t rawlen;

		if (mech == IMAP_AUTH_PLAIN) {
			rawlen = lz + 1 + lu + 1 + lp;
			raw = xmalloc(rawlen + 1);
			memcpy(raw, zid, lz);
			raw[lz] = '\0';
			memcpy(raw + lz + 1, user, lu);
			raw[lz + 1 + lu] = '\0';
			memcpy(raw + lz + 2 + lu, pass, lp);
			imap_cmd_add(cmd, "AUTHENTICATE PLAIN");
		} else {
			char *s = xasprintf("user=%s\001auth=Bearer %s\001\001",
			                    user, pass);
			rawlen = strlen(s);
			raw = s;
			imap_cmd_add(cmd, "AUTHENTICATE XOAUTH2");
		}
		cmd->sasl = true;
		b64 = base64_encode(raw, rawlen);
		memset(raw, 0, rawlen);
		free(raw);
		if (imap_client_has_cap(c, "SASL-IR")) {
			imap_cmd_add(cmd, " ");
			imap_cmd_add(cmd, b64);
		} else {
			cmd_add_cont_line(cmd, b64);
		}
		secret_free(&b64);
	}
	if (cmd_run(c, cmd, refused_r, error_r) < 0) {
		/* a tagged NO/BAD is a refusal; a lost or broken session is
		 * not (its error already names the host) */
		if (*refused_r)
			*error_r = err_setk(ERRK_AUTH, "%s: login as %s%s%s refused: %s", c->host,
			                   user, o->authzid != NULL ? " for " : "",
			                   o->authzid != NULL ? o->authzid : "",
			                   *error_r);
		else
			*error_r = err_setk(ERRK_SESSION, "login as %s%s%s failed: %s", user,
			                   o->authzid != NULL ? " for " : "",
			                   o->authzid != NULL ? o->authzid : "",
			                   *error_r);
		return -1;
	}
	return 0;
}

int
imap_client_connect(const struct imap_client_options *o,
                    struct imap_client **client_r, bool *auth_failed_r,
                    const char **error_r)
{
	struct imap_client *c;
	const char *port = o->port != NULL ? o->port : (o->implicit_tls ? "993" : "143");
	bool refused = false;
	int preauth;

	if (auth_failed_r != NULL)
		*auth_failed_r = false;
	c = xcalloc(1, sizeof(*c));
	c->label = xstrdup(o->label != NULL ? o->label : "imap");
	c->host = xasprintf("%s:%s", o->host, port);
	c->depth = o->pipeline_depth != 0 ? o->pipeline_depth : 64;
	c->parser = imap_parser_new(o->limits);
	c->rbuf = xmalloc(READ_CHUNK);
	if (net_connect(o->host, port, o->implicit_tls, &o->net, &c->conn,
	                error_r) < 0)
		goto fail;
	if ((preauth = read_greeting(c, error_r)) < 0)
		goto fail;
	if (c->caps == NULL && imap_client_simple(c, "CAPABILITY", error_r) < 0)
		goto fail;
	if (!o->implicit_tls && o->starttls != IMAP_STARTTLS_NEVER) {
		if (preauth != 0) {
			/* no password is sent, but the mail would travel in
			 * clear, and STARTTLS is not allowed after PREAUTH */
			*error_r = err_set("%s: server sent PREAUTH without TLS "
			                   "(TLS is required: use imaps://, or "
			                   "?tls=none to allow plain text)", c->host);
			goto fail;
		}
		if (!imap_client_has_cap(c, "STARTTLS")) {
			*error_r = err_set("%s: server does not offer STARTTLS (TLS is "
			                   "required: use imaps://, or ?tls=none to "
			                   "allow plain text)", c->host);
			goto fail;
		}
		if (do_starttls(c, error_r) < 0)
			goto fail;
	}
	/* Defensive: the branch above guarantees it. */
	if (o->starttls != IMAP_STARTTLS_NEVER && !net_conn_is_tls(c->conn)) {
		*error_r = err_set("%s: TLS is required", c->host);
		goto fail;
	}
	if (preauth == 0 && o->authzid != NULL && o->authzid[0] != '\0' &&
	    strstr(c->greeting, "Courier") != NULL) {
		/* Courier accepts PLAIN with an authorization identity and
		 * silently logs in as the admin: the admin's own mailbox
		 * would be copied as the user's. */
		*error_r = err_setk(ERRK_AUTH, "%s: Courier-IMAP ignores the authorization "
		                   "identity (it would log in as %s, not as %s): "
		                   "log in as the user instead", c->host,
		                   o->user != NULL ? o->user : "", o->authzid);
		if (auth_failed_r != NULL)
			*auth_failed_r = true;
		goto fail;
	}
	if (preauth == 0 && do_auth(c, o, &refused, error_r) < 0) {
		if (auth_failed_r != NULL)
			*auth_failed_r = refused;
		goto fail;
	}
	/* Servers may announce more after login; ask unless the OK told us. */
	if (imap_client_simple(c, "CAPABILITY", error_r) < 0)
		goto fail;
	if (o->compress && imap_client_has_cap(c, "COMPRESS=DEFLATE")) {
		const char *error;

		if (imap_client_simple(c, "COMPRESS DEFLATE", error_r) < 0)
			goto fail;
		/* compressed data may follow the OK in the same read */
		if (c->roff < c->rlen &&
		    net_conn_unread(c->conn, c->rbuf + c->roff, c->rlen - c->roff,
		                    &error) < 0) {
			*error_r = err_set("%s", error);
			goto fail;
		}
		c->roff = c->rlen = 0;
		if (net_conn_start_compress(c->conn, &error) < 0) {
			*error_r = err_set("%s", error);
			goto fail;
		}
	}
	if (imap_client_has_cap(c, "ID")) {
		struct imap_cmd *cmd = imap_cmd_new(c);

		/* Informational; a NO (Courier) is fine. */
		imap_cmd_add(cmd, "ID (\"name\" \"imapferry\" \"version\" \"0.1\")");
		imap_cmd_submit(cmd, NULL, NULL);
	}
	*client_r = c;
	return 0;
fail:
	*error_r = err_wrap(*error_r, "%s", *error_r);
	imap_client_free(&c);
	return -1;
}

void
imap_client_free(struct imap_client **clientp)
{
	struct imap_client *c = *clientp;
	char **pf, **fl;

	if (c == NULL)
		return;
	client_fail(c, "session closed");
	if (c->conn != NULL)
		net_conn_close(&c->conn);
	imap_parser_free(&c->parser);
	pf = c->mbox.permanentflags;
	fl = c->mbox.flags;
	strv_free(&pf);
	strv_free(&fl);
	strv_free(&c->caps);
	free(c->dead_reason);
	free(c->bye_text);
	free(c->greeting);
	free(c->label);
	free(c->host);
	free(c->rbuf);
	free(c);
	*clientp = NULL;
}

void
imap_client_logout(struct imap_client **clientp)
{
	struct imap_client *c = *clientp;
	const char *error;

	if (c == NULL)
		return;
	if (!c->dead) {
		struct imap_cmd *cmd = imap_cmd_new(c);

		imap_cmd_add(cmd, "LOGOUT");
		imap_cmd_submit(cmd, NULL, NULL);
		ignore_result(imap_client_run(c, &error));
	}
	imap_client_free(clientp);
}

/* -------------------------------------------------------------- accessors */

bool
imap_client_has_cap(const struct imap_client *c, const char *cap)
{
	return imap_strlist_has(&c->caps_list, cap);
}

const struct imap_strlist *
imap_client_caps(const struct imap_client *c)
{
	return &c->caps_list;
}

const char *
imap_client_greeting(const struct imap_client *c)
{
	return c->greeting != NULL ? c->greeting : "";
}

struct net_conn *
imap_client_conn(struct imap_client *c)
{
	return c->conn;
}

bool
imap_client_is_dead(const struct imap_client *c)
{
	return c->dead;
}

const struct imap_mailbox_state *
imap_client_mailbox(const struct imap_client *c)
{
	return &c->mbox;
}

void
imap_client_set_untagged(struct imap_client *c, imap_untagged_cb *cb, void *ctx)
{
	c->ucb = cb;
	c->uctx = ctx;
}

void
imap_client_set_literal_sink(struct imap_client *c,
                             const struct imap_literal_sink *sink)
{
	imap_parser_set_sink(c->parser, sink);
}

unsigned
imap_client_in_flight(const struct imap_client *c)
{
	return c->in_flight.count;
}

unsigned
imap_client_queued(const struct imap_client *c)
{
	return c->pending.count;
}

uint64_t
imap_client_output_backlog(const struct imap_client *c)
{
	return c->backlog;
}

void
imap_cmd_wait_done(void *ctx, const struct imap_response *tagged,
                   const char *error)
{
	struct imap_cmd_wait *w = ctx;

	if (w->error != NULL)
		return;
	if (tagged == NULL) {
		w->error = xstrdup(error);
		w->lost = true;
	} else if (tagged->status != IMAP_STATUS_OK) {
		w->error = xstrdup(tagged->text);
		w->code = tagged->code.type;
	}
}
