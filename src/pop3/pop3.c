/* pop3.c: the read-only POP3 session behind pop3_fetch_uidls().
 *
 * Input is framed in a fixed read buffer: a line is copied out into
 * s->line (NUL-terminated, length kept since a hostile server may send
 * NUL bytes) before it is looked at, so no pointer into rbuf outlives a
 * read. A partial line is moved to the front before the next read; since
 * a line is at most POP3_LINE_MAX bytes and rbuf is much larger, a read
 * always has room. */
#include "pop3.h"

#include "log.h"

#include <stdlib.h>
#include <string.h>

#define READ_CHUNK (64 * 1024)
/* RFC 5034 4: an AUTH command with initial response must fit in 255
 * octets, else the response goes on its own line after "+ ". */
#define AUTH_LINE_MAX 255
/* How much of a server's text goes into an error message. */
#define SERVER_TEXT_MAX 300

struct pop3_caps {
	bool known;               /* CAPA answered +OK */
	bool stls;
	bool pipelining;
};

struct pop3_session {
	struct net_conn *conn;
	char *host;               /* "host:port", for messages */
	char *rbuf;
	size_t roff, rlen;
	char line[POP3_LINE_MAX + 1];
	size_t line_len;
	char reply_text[SERVER_TEXT_MAX + 8]; /* last non-+OK status, printable */
	struct pop3_caps caps;
};

/* Copies len bytes of server text into out (size outsize) for messages:
 * bytes outside 0x20..0x7E become '?', long texts end in "...". */
static const char *
printable(const char *s, size_t len, char *out, size_t outsize)
{
	size_t i, o = 0;

	for (i = 0; i < len && o + 4 < outsize; i++) {
		unsigned char c = (unsigned char)s[i];
		out[o++] = c >= 0x20 && c <= 0x7e ? (char)c : '?';
	}
	if (i < len) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

/* ---- input ---- */

/* Reads the next line (without CRLF; a bare LF is accepted too) into
 * s->line. Returns 0, or -1 with *error_r on EOF, I/O error or a line
 * longer than POP3_LINE_MAX. */
static int
read_line(struct pop3_session *s, const char **error_r)
{
	const char *nl;
	const char *error;
	ssize_t n;
	size_t len;

	for (;;) {
		nl = memchr(s->rbuf + s->roff, '\n', s->rlen - s->roff);
		if (nl != NULL)
			break;
		/* +1: the CR of a line of exactly POP3_LINE_MAX bytes */
		if (s->rlen - s->roff > POP3_LINE_MAX + 1)
			goto too_long;
		if (s->roff > 0) {
			memmove(s->rbuf, s->rbuf + s->roff, s->rlen - s->roff);
			s->rlen -= s->roff;
			s->roff = 0;
		}
		n = net_conn_read(s->conn, s->rbuf + s->rlen, READ_CHUNK - s->rlen,
		                  &error);
		if (n < 0) {
			*error_r = err_set("%s: %s", s->host, error);
			return -1;
		}
		if (n == 0) {
			*error_r = err_set("%s: connection closed by the server%s",
			                   s->host, s->rlen > s->roff ?
			                   " in the middle of a line" : "");
			return -1;
		}
		s->rlen += (size_t)n;
	}
	len = (size_t)(nl - (s->rbuf + s->roff));
	if (len > 0 && s->rbuf[s->roff + len - 1] == '\r')
		len--;
	if (len > POP3_LINE_MAX)
		goto too_long;
	memcpy(s->line, s->rbuf + s->roff, len);
	s->line[len] = '\0';
	s->line_len = len;
	s->roff = (size_t)(nl + 1 - s->rbuf);
	if (log_enabled(LOG_TRACE)) {
		char text[SERVER_TEXT_MAX + 8];

		log_trace("pop3 %s S: %s", s->host,
		          printable(s->line, len, text, sizeof(text)));
	}
	return 0;
too_long:
	*error_r = err_set("%s: server sent a line longer than %d bytes",
	                   s->host, POP3_LINE_MAX);
	return -1;
}

/* Classifies the status line in s->line, the reply to cmd. Returns 0 for
 * "+OK" (*text_r, may be NULL, points to the text after it in s->line,
 * valid until the next read); -1 with *error_r for "-ERR" (then
 * *err_reply_r = true, may be NULL) or anything else. In both failure
 * cases s->reply_text holds the line, made printable. */
static int
check_status(struct pop3_session *s, const char *cmd, const char **text_r,
             bool *err_reply_r, const char **error_r)
{
	if (err_reply_r != NULL)
		*err_reply_r = false;
	if (strncmp(s->line, "+OK", 3) == 0 &&
	    (s->line[3] == '\0' || s->line[3] == ' ')) {
		if (text_r != NULL)
			*text_r = s->line[3] == ' ' ? s->line + 4 : s->line + 3;
		return 0;
	}
	printable(s->line, s->line_len, s->reply_text, sizeof(s->reply_text));
	if (strncmp(s->line, "-ERR", 4) == 0 &&
	    (s->line[4] == '\0' || s->line[4] == ' ')) {
		if (err_reply_r != NULL)
			*err_reply_r = true;
		*error_r = err_set("%s: %s failed: %s", s->host, cmd, s->reply_text);
	} else {
		*error_r = err_set("%s: unexpected reply to %s: '%s'", s->host,
		                   cmd, s->reply_text);
	}
	return -1;
}

/* Reads a status line and checks it (see check_status()). */
static int
read_status(struct pop3_session *s, const char *cmd, const char **text_r,
            bool *err_reply_r, const char **error_r)
{
	if (err_reply_r != NULL)
		*err_reply_r = false;
	if (read_line(s, error_r) < 0)
		return -1;
	return check_status(s, cmd, text_r, err_reply_r, error_r);
}

/* True when s->line is a SASL continuation ("+ text" or "+"). */
static bool
is_continuation(const struct pop3_session *s)
{
	return s->line[0] == '+' && (s->line[1] == ' ' || s->line[1] == '\0');
}

/* One line of a multi-line reply (dot-unstuffed). Returns 0 or -1 with
 * *error_r. */
typedef int multiline_cb(struct pop3_session *s, void *ctx, const char *line,
                         size_t len, const char **error_r);

/* Reads the body of a multi-line reply (after its +OK) up to the line
 * ".", removes dot-stuffing (RFC 1939 3) and calls cb for each line.
 * Returns 0 or -1 with *error_r. */
static int
read_multiline(struct pop3_session *s, multiline_cb *cb, void *ctx,
               const char **error_r)
{
	for (;;) {
		const char *line;
		size_t len;

		if (read_line(s, error_r) < 0)
			return -1;
		line = s->line;
		len = s->line_len;
		if (len > 0 && line[0] == '.') {
			if (len == 1)
				return 0;
			line++;
			len--;
		}
		if (cb(s, ctx, line, len, error_r) < 0)
			return -1;
	}
}

/* ---- output ---- */

/* Queues "cmd CRLF". What is logged is shown_as when not NULL (so that
 * secrets never reach the log). */
static int
send_cmd(struct pop3_session *s, const char *cmd, const char *shown_as,
         const char **error_r)
{
	const char *error;

	log_trace("pop3 %s C: %s", s->host, shown_as != NULL ? shown_as : cmd);
	if (net_conn_write(s->conn, cmd, strlen(cmd), &error) < 0 ||
	    net_conn_write(s->conn, "\r\n", 2, &error) < 0 ||
	    net_conn_flush(s->conn, &error) < 0) {
		*error_r = err_set("%s: %s", s->host, error);
		return -1;
	}
	return 0;
}

/* Sends cmd and reads a single-line +OK. */
static int
simple_cmd(struct pop3_session *s, const char *cmd, bool *err_reply_r,
           const char **error_r)
{
	if (send_cmd(s, cmd, NULL, error_r) < 0)
		return -1;
	return read_status(s, cmd, NULL, err_reply_r, error_r);
}

/* ---- CAPA, STLS, login ---- */

static int
capa_line(struct pop3_session *s, void *ctx, const char *line, size_t len,
          const char **error_r)
{
	size_t wlen = strcspn(line, " ");

	(void)ctx;
	(void)error_r;
	if (wlen > len)         /* NUL inside the line: ignore the rest */
		wlen = len;
	if (wlen == 4 && str_ieqn(line, "STLS", 4))
		s->caps.stls = true;
	else if (wlen == 10 && str_ieqn(line, "PIPELINING", 10))
		s->caps.pipelining = true;
	return 0;
}

/* Asks CAPA (RFC 2449). A server without CAPA (-ERR) has no extensions. */
static int
do_capa(struct pop3_session *s, const char **error_r)
{
	bool err_reply;

	memset(&s->caps, 0, sizeof(s->caps));
	if (simple_cmd(s, "CAPA", &err_reply, error_r) < 0)
		return err_reply ? 0 : -1;
	s->caps.known = true;
	return read_multiline(s, capa_line, NULL, error_r);
}

static int
do_stls(struct pop3_session *s, const char **error_r)
{
	const char *error;

	if (simple_cmd(s, "STLS", NULL, error_r) < 0)
		return -1;
	if (s->roff < s->rlen) {
		*error_r = err_set("%s: server sent data right after its STLS "
		                   "reply (possible injection); refusing", s->host);
		return -1;
	}
	if (net_conn_start_tls(s->conn, &error) < 0) {
		*error_r = err_set("%s: %s", s->host, error);
		return -1;
	}
	log_debug("pop3 %s: %s", s->host, net_conn_describe(s->conn));
	/* RFC 2595 4: capabilities learned before TLS are discarded. */
	return do_capa(s, error_r);
}

static bool
has_crlf(const char *s)
{
	return s != NULL && strpbrk(s, "\r\n") != NULL;
}

/* Builds the SASL PLAIN response, base64 of authzid NUL user NUL pass.
 * The caller frees it with secret_free(). */
static char *
plain_response(const char *zid, const char *user, const char *pass)
{
	size_t lz = strlen(zid), lu = strlen(user), lp = strlen(pass);
	size_t rawlen = lz + 1 + lu + 1 + lp;
	char *raw = xmalloc(rawlen + 1), *b64;

	memcpy(raw, zid, lz);
	raw[lz] = '\0';
	memcpy(raw + lz + 1, user, lu);
	raw[lz + 1 + lu] = '\0';
	memcpy(raw + lz + 2 + lu, pass, lp);
	raw[rawlen] = '\0';
	b64 = base64_encode(raw, rawlen);
	memset(raw, 0, rawlen);
	free(raw);
	return b64;
}

/* AUTH PLAIN (RFC 5034), with the response in the command when it fits.
 * Returns 0, or -1 with *error_r (*err_reply_r: the server said -ERR). */
static int
auth_plain(struct pop3_session *s, const struct pop3_options *o,
           const char *user, const char *pass, bool *err_reply_r,
           const char **error_r)
{
	char *b64 = plain_response(o->authzid, user, pass);
	char *cmd = NULL;
	int ret = -1;

	*err_reply_r = false;
	if (strlen("AUTH PLAIN ") + strlen(b64) + 2 <= AUTH_LINE_MAX) {
		cmd = xasprintf("AUTH PLAIN %s", b64);
		if (send_cmd(s, cmd, "AUTH PLAIN <hidden>", error_r) < 0)
			goto out;
	} else {
		if (send_cmd(s, "AUTH PLAIN", NULL, error_r) < 0 ||
		    read_line(s, error_r) < 0)
			goto out;
		if (!is_continuation(s)) {
			/* -ERR (refused), or +OK before any response */
			if (check_status(s, "AUTH PLAIN", NULL, err_reply_r,
			                 error_r) == 0)
				*error_r = err_set("%s: AUTH PLAIN: +OK before the "
				                   "response was sent", s->host);
			goto out;
		}
		if (send_cmd(s, b64, "<hidden>", error_r) < 0)
			goto out;
	}
	if (read_line(s, error_r) < 0)
		goto out;
	if (is_continuation(s)) {
		/* PLAIN has one round; cancel a further challenge (RFC 5034
		 * 4) and give up. */
		if (send_cmd(s, "*", NULL, error_r) < 0)
			goto out;
		*error_r = err_set("%s: unexpected SASL challenge after the "
		                   "PLAIN response", s->host);
		goto out;
	}
	ret = check_status(s, "AUTH PLAIN", NULL, err_reply_r, error_r);
out:
	secret_free(&cmd);
	secret_free(&b64);
	return ret;
}

/* Logs in with USER/PASS or, with an authzid, AUTH PLAIN. A refusal
 * (-ERR) reads "HOST: login as USER [for AUTHZID] refused: -ERR text";
 * network and protocol errors are passed on as they are. */
static int
do_login(struct pop3_session *s, const struct pop3_options *o,
         const char **error_r)
{
	const char *user = o->user != NULL ? o->user : "";
	const char *pass = o->password != NULL ? o->password : "";
	bool err_reply = false;
	char *cmd;
	int ret;

	if (o->authzid != NULL) {
		ret = auth_plain(s, o, user, pass, &err_reply, error_r);
	} else {
		cmd = xasprintf("USER %s", user);
		ret = simple_cmd(s, cmd, &err_reply, error_r);
		free(cmd);
		if (ret == 0) {
			cmd = xasprintf("PASS %s", pass);
			if ((ret = send_cmd(s, cmd, "PASS <hidden>", error_r)) == 0)
				ret = read_status(s, "PASS", NULL, &err_reply, error_r);
			secret_free(&cmd);
		}
	}
	if (ret < 0 && err_reply) {
		*error_r = err_set("%s: login as %s%s%s refused: %s", s->host, user,
		                   o->authzid != NULL ? " for " : "",
		                   o->authzid != NULL ? o->authzid : "",
		                   s->reply_text);
	}
	return ret;
}

/* ---- UIDL and LIST ---- */

struct listing {
	struct pop3_entry *entries;
	size_t count, alloc, max;
	size_t list_next;         /* LIST: index of the next expected entry */
};

/* Parses "msgno SP rest" (trailing blanks removed). Returns false when
 * malformed; *rest_r and *rest_len_r: the text after the single space. */
static bool
split_msgno(const char *line, size_t len, uint32_t *msgno_r,
            const char **rest_r, size_t *rest_len_r)
{
	const char *sp;
	uint64_t v;

	while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t'))
		len--;
	sp = memchr(line, ' ', len);
	if (sp == NULL || !str_to_u64(line, (size_t)(sp - line), UINT32_MAX, &v) ||
	    v == 0)
		return false;
	*msgno_r = (uint32_t)v;
	*rest_r = sp + 1;
	*rest_len_r = len - (size_t)(sp + 1 - line);
	return true;
}

static int
uidl_line(struct pop3_session *s, void *ctx, const char *line, size_t len,
          const char **error_r)
{
	struct listing *l = ctx;
	char text[SERVER_TEXT_MAX + 8];
	const char *uidl;
	size_t ulen, i;
	uint32_t msgno;

	if (!split_msgno(line, len, &msgno, &uidl, &ulen) || ulen == 0) {
		*error_r = err_set("%s: malformed UIDL line: '%s'", s->host,
		                   printable(line, len, text, sizeof(text)));
		return -1;
	}
	if (l->count > 0 && msgno <= l->entries[l->count - 1].msgno) {
		*error_r = err_set("%s: UIDL listing not in ascending order: "
		                   "message %u after %u", s->host, msgno,
		                   l->entries[l->count - 1].msgno);
		return -1;
	}
	if (ulen > POP3_UIDL_MAX_LEN) {
		*error_r = err_set("%s: UIDL of message %u is %zu bytes long "
		                   "(at most %d accepted)", s->host, msgno, ulen,
		                   POP3_UIDL_MAX_LEN);
		return -1;
	}
	for (i = 0; i < ulen; i++) {
		unsigned char c = (unsigned char)uidl[i];

		if (c < 0x21 || c > 0x7e) {
			*error_r = err_set("%s: UIDL of message %u has byte 0x%02x "
			                   "at offset %zu (only 0x21-0x7E allowed): '%s'",
			                   s->host, msgno, c, i,
			                   printable(uidl, ulen, text, sizeof(text)));
			return -1;
		}
	}
	if (l->count >= l->max) {
		*error_r = err_set("%s: more than %zu messages in the mailbox",
		                   s->host, l->max);
		return -1;
	}
	if (l->count == l->alloc) {
		l->alloc = l->alloc == 0 ? 64 : l->alloc * 2;
		l->entries = xreallocarray(l->entries, l->alloc, sizeof(*l->entries));
	}
	l->entries[l->count].msgno = msgno;
	l->entries[l->count].size = 0;
	l->entries[l->count].uidl = xstrndup(uidl, ulen);
	l->count++;
	return 0;
}

static int
list_line(struct pop3_session *s, void *ctx, const char *line, size_t len,
          const char **error_r)
{
	struct listing *l = ctx;
	char text[SERVER_TEXT_MAX + 8];
	const char *rest;
	size_t rlen, dlen;
	uint32_t msgno;
	uint64_t size;

	/* RFC 1939 5: "msgno SP size", later extensions may add more after
	 * another space. */
	if (!split_msgno(line, len, &msgno, &rest, &rlen) ||
	    (dlen = strspn(rest, "0123456789")) == 0 || (dlen > rlen) ||
	    (dlen < rlen && rest[dlen] != ' ') ||
	    !str_to_u64(rest, dlen, UINT64_MAX, &size)) {
		*error_r = err_set("%s: malformed LIST line: '%s'", s->host,
		                   printable(line, len, text, sizeof(text)));
		return -1;
	}
	if (l->list_next >= l->count) {
		*error_r = err_set("%s: LIST names message %u, which UIDL did not "
		                   "list (UIDL listed %zu)", s->host, msgno, l->count);
		return -1;
	}
	if (l->entries[l->list_next].msgno != msgno) {
		*error_r = err_set("%s: LIST names message %u where UIDL had "
		                   "message %u", s->host, msgno,
		                   l->entries[l->list_next].msgno);
		return -1;
	}
	l->entries[l->list_next++].size = size;
	return 0;
}

static int
do_listings(struct pop3_session *s, struct listing *l, const char **error_r)
{
	if (s->caps.pipelining) {
		/* RFC 2449 6.6: both commands go out in one write */
		if (send_cmd(s, "UIDL", NULL, error_r) < 0 ||
		    send_cmd(s, "LIST", NULL, error_r) < 0)
			return -1;
	} else if (send_cmd(s, "UIDL", NULL, error_r) < 0) {
		return -1;
	}
	if (read_status(s, "UIDL", NULL, NULL, error_r) < 0 ||
	    read_multiline(s, uidl_line, l, error_r) < 0)
		return -1;
	if (!s->caps.pipelining && send_cmd(s, "LIST", NULL, error_r) < 0)
		return -1;
	if (read_status(s, "LIST", NULL, NULL, error_r) < 0 ||
	    read_multiline(s, list_line, l, error_r) < 0)
		return -1;
	if (l->list_next != l->count) {
		*error_r = err_set("%s: UIDL listed %zu messages but LIST only %zu",
		                   s->host, l->count, l->list_next);
		return -1;
	}
	return 0;
}

/* ---- the session ---- */

static int
check_options(const struct pop3_options *o, const char **error_r)
{
	if (o->host == NULL || o->host[0] == '\0') {
		*error_r = "pop3: no host";
		return -1;
	}
	if (o->user == NULL || o->user[0] == '\0') {
		*error_r = "pop3: no user name";
		return -1;
	}
	/* A CR or LF would end the command and start another one. */
	if (has_crlf(o->user) || has_crlf(o->password) || has_crlf(o->authzid)) {
		*error_r = "pop3: user name, password or authzid contains CR or LF";
		return -1;
	}
	return 0;
}

int
pop3_fetch_uidls(const struct pop3_options *o, struct pop3_entry **entries_r,
                 size_t *count_r, const char **error_r)
{
	const char *port = o->port != NULL ? o->port : (o->implicit_tls ? "995" : "110");
	struct pop3_session s;
	struct listing l;
	const char *text;
	int ret = -1;

	*entries_r = NULL;
	*count_r = 0;
	if (check_options(o, error_r) < 0)
		return -1;
	memset(&s, 0, sizeof(s));
	memset(&l, 0, sizeof(l));
	l.max = o->max_entries != 0 ? o->max_entries : POP3_DEFAULT_MAX_ENTRIES;
	s.host = xasprintf("%s:%s", o->host, port);
	s.rbuf = xmalloc(READ_CHUNK);
	if (net_connect(o->host, port, o->implicit_tls, &o->net, &s.conn,
	                error_r) < 0)
		goto out;
	log_debug("pop3 %s: connected (%s)", s.host, net_conn_describe(s.conn));
	if (read_status(&s, "greeting", &text, NULL, error_r) < 0)
		goto out;
	if (log_enabled(LOG_DEBUG)) {
		char shown[SERVER_TEXT_MAX + 8];

		log_debug("pop3 %s: greeting: %s", s.host,
		          printable(text, strlen(text), shown, sizeof(shown)));
	}
	if (do_capa(&s, error_r) < 0)
		goto out;
	if (!o->implicit_tls && (o->starttls || o->require_tls)) {
		if (s.caps.stls) {
			if (do_stls(&s, error_r) < 0)
				goto out;
		} else if (o->require_tls) {
			*error_r = err_set("%s: server does not offer STLS and TLS is "
			                   "required", s.host);
			goto out;
		}
	}
	/* Defensive: the branches above guarantee it. */
	if (o->require_tls && !net_conn_is_tls(s.conn)) {
		*error_r = err_set("%s: TLS is required", s.host);
		goto out;
	}
	if (do_login(&s, o, error_r) < 0)
		goto out;
	if (do_listings(&s, &l, error_r) < 0)
		goto out;
	/* Best effort: the data is complete; a failing QUIT changes nothing
	 * (we deleted nothing). */
	{
		const char *error;

		if (simple_cmd(&s, "QUIT", NULL, &error) < 0)
			log_debug("pop3 %s: QUIT: %s", s.host, error);
	}
	log_debug("pop3 %s: %zu messages", s.host, l.count);
	*entries_r = l.entries;
	*count_r = l.count;
	l.entries = NULL;
	l.count = 0;
	ret = 0;
out:
	pop3_entries_free(&l.entries, l.count);
	net_conn_close(&s.conn);
	free(s.rbuf);
	free(s.host);
	return ret;
}

void
pop3_entries_free(struct pop3_entry **entries, size_t count)
{
	if (*entries == NULL)
		return;
	for (size_t i = 0; i < count; i++)
		free((*entries)[i].uidl);
	XFREE(*entries);
}

/* ---- pairing with IMAP ---- */

int
pop3_match_uids(const struct pop3_entry *e, size_t n, const uint32_t *imap_uids,
                const uint64_t *imap_sizes, size_t m, uint32_t **uids_r,
                char ***uidls_r, size_t *count_r, const char **error_r)
{
	uint32_t *uids;
	char **uidls;
	size_t i;

	*uids_r = NULL;
	*uidls_r = NULL;
	*count_r = 0;
	if (n != m) {
		*error_r = err_set("POP3 lists %zu messages but the IMAP INBOX has "
		                   "%zu", n, m);
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (e[i].msgno != i + 1) {
			*error_r = err_set("POP3 message numbers are not 1..%zu: "
			                   "entry %zu is message %u", n, i + 1,
			                   e[i].msgno);
			return -1;
		}
		if (i > 0 && imap_uids[i] <= imap_uids[i - 1]) {
			*error_r = err_set("IMAP UIDs not in ascending order: UID %u "
			                   "after %u", imap_uids[i], imap_uids[i - 1]);
			return -1;
		}
		if (imap_sizes != NULL && e[i].size != imap_sizes[i]) {
			*error_r = err_set("POP3 message %u (UIDL %s) has size %llu "
			                   "but IMAP UID %u has RFC822.SIZE %llu: the "
			                   "POP3 order does not follow the IMAP UIDs",
			                   e[i].msgno, e[i].uidl,
			                   (unsigned long long)e[i].size, imap_uids[i],
			                   (unsigned long long)imap_sizes[i]);
			return -1;
		}
	}
	if (n == 0)
		return 0;
	uids = xreallocarray(NULL, n, sizeof(*uids));
	uidls = xreallocarray(NULL, n, sizeof(*uidls));
	for (i = 0; i < n; i++) {
		uids[i] = imap_uids[i];
		uidls[i] = xstrdup(e[i].uidl);
	}
	*uids_r = uids;
	*uidls_r = uidls;
	*count_r = n;
	return 0;
}

void
pop3_matched_free(uint32_t **uids, char ***uidls, size_t count)
{
	if (*uidls != NULL) {
		for (size_t i = 0; i < count; i++)
			free((*uidls)[i]);
	}
	XFREE(*uidls);
	XFREE(*uids);
}
