/* test_pop3.c: pop3/ against a scripted fake POP3 server run in a thread
 * on 127.0.0.1, plus the URL parser and the UIDL-to-UID pairing.
 *
 * The fake server follows a script of steps: read one line from the
 * client, compare it with what the step expects, send the step's reply
 * (whole, one byte at a time, or split at a given offset). Everything the
 * client sent is kept in a transcript, so the tests check the exact bytes
 * on the wire (and that nothing follows a refusal). Server threads never
 * call cmocka (its failures longjmp); they record errors in struct fake
 * and the test checks after joining. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "pop3.h"

#define S_(lit) lit, sizeof(lit) - 1
#define IO_TIMEOUT_MS 3000
#define SRV_TIMEOUT_MS 10000

/* ---- the fake server ---- */

struct step {
	const char *expect;       /* line the client must send (no CRLF); NULL: none */
	const char *reply;        /* sent after the line; NULL: nothing */
	size_t reply_len;         /* 0: strlen(reply) */
};

enum wmode { W_WHOLE, W_BYTES, W_SPLIT };

struct fake {
	pthread_t thread;
	int lfd;
	char port[16];
	const struct step *steps;
	size_t nsteps;
	enum wmode wmode;
	size_t split_at;          /* W_SPLIT: first write of each reply */
	bool close_after;         /* close right after the last step */

	/* client input */
	char rbuf[16384];
	size_t rlen;

	/* results */
	char transcript[16384];   /* client lines, each ending in '\n' */
	size_t tlen;
	bool failed;
	char error[512];
};

static void ATTR_PRINTF(2, 3)
fake_fail(struct fake *f, const char *fmt, ...)
{
	va_list ap;

	if (f->failed)
		return;
	f->failed = true;
	va_start(ap, fmt);
	vsnprintf(f->error, sizeof(f->error), fmt, ap);
	va_end(ap);
}

/* Reads one client line (CRLF stripped) into line. Returns 1, 0 at EOF,
 * -1 on error or timeout. */
static int
fake_read_line(struct fake *f, int fd, char *line, size_t size)
{
	for (;;) {
		char *nl = memchr(f->rbuf, '\n', f->rlen);
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (nl != NULL) {
			size_t len = (size_t)(nl - f->rbuf), keep = len;

			if (len > 0 && f->rbuf[len - 1] == '\r')
				len--;
			if (len >= size)
				len = size - 1;
			memcpy(line, f->rbuf, len);
			line[len] = '\0';
			memmove(f->rbuf, nl + 1, f->rlen - keep - 1);
			f->rlen -= keep + 1;
			return 1;
		}
		if (f->rlen == sizeof(f->rbuf)) {
			fake_fail(f, "client line too long");
			return -1;
		}
		if (poll(&pfd, 1, SRV_TIMEOUT_MS) <= 0) {
			fake_fail(f, "timeout waiting for the client");
			return -1;
		}
		n = read(fd, f->rbuf + f->rlen, sizeof(f->rbuf) - f->rlen);
		if (n < 0 && errno == ECONNRESET)
			n = 0;
		if (n < 0) {
			fake_fail(f, "read: %s", strerror(errno));
			return -1;
		}
		if (n == 0)
			return 0;
		f->rlen += (size_t)n;
	}
}

static void
fake_record(struct fake *f, const char *line)
{
	size_t len = strlen(line);

	if (f->tlen + len + 2 > sizeof(f->transcript))
		return;
	memcpy(f->transcript + f->tlen, line, len);
	f->tlen += len;
	f->transcript[f->tlen++] = '\n';
	f->transcript[f->tlen] = '\0';
}

static int
write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int
fake_send(struct fake *f, int fd, const char *p, size_t len)
{
	switch (f->wmode) {
	case W_WHOLE:
		return write_all(fd, p, len);
	case W_BYTES:
		for (size_t i = 0; i < len; i++) {
			if (write_all(fd, p + i, 1) < 0)
				return -1;
			usleep(100);
		}
		return 0;
	case W_SPLIT:
		if (f->split_at == 0 || f->split_at >= len)
			return write_all(fd, p, len);
		if (write_all(fd, p, f->split_at) < 0)
			return -1;
		usleep(1000);
		return write_all(fd, p + f->split_at, len - f->split_at);
	}
	return -1;
}

static void *
fake_main(void *arg)
{
	struct fake *f = arg;
	struct pollfd pfd = { .fd = f->lfd, .events = POLLIN };
	char line[8192];
	sigset_t set;
	int fd, one = 1, r;

	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (poll(&pfd, 1, SRV_TIMEOUT_MS) <= 0) {
		fake_fail(f, "no client connected");
		return NULL;
	}
	fd = accept(f->lfd, NULL, NULL);
	if (fd < 0) {
		fake_fail(f, "accept: %s", strerror(errno));
		return NULL;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	for (size_t i = 0; i < f->nsteps; i++) {
		const struct step *st = &f->steps[i];

		if (st->expect != NULL) {
			r = fake_read_line(f, fd, line, sizeof(line));
			if (r <= 0) {
				if (r == 0)
					fake_fail(f, "client closed before sending '%s'",
					          st->expect);
				goto out;
			}
			fake_record(f, line);
			if (strcmp(line, st->expect) != 0) {
				fake_fail(f, "step %zu: expected '%s', got '%s'", i,
				          st->expect, line);
				goto out;
			}
		}
		if (st->reply != NULL &&
		    fake_send(f, fd, st->reply, st->reply_len != 0 ? st->reply_len :
		              strlen(st->reply)) < 0)
			goto out;
	}
	if (!f->close_after) {
		/* whatever the client sends after the script (should be nothing) */
		while ((r = fake_read_line(f, fd, line, sizeof(line))) > 0)
			fake_record(f, line);
	}
out:
	close(fd);
	return NULL;
}

static int
listen_loopback(char *port, size_t port_size)
{
	struct sockaddr_in sin;
	socklen_t slen = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 4), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &slen), 0);
	snprintf(port, port_size, "%u", (unsigned)ntohs(sin.sin_port));
	return fd;
}

static void
fake_start(struct fake *f, const struct step *steps, size_t nsteps)
{
	f->steps = steps;
	f->nsteps = nsteps;
	f->lfd = listen_loopback(f->port, sizeof(f->port));
	assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void
fake_join(struct fake *f)
{
	assert_int_equal(pthread_join(f->thread, NULL), 0);
	close(f->lfd);
}

static void
opts_init(struct pop3_options *o)
{
	memset(o, 0, sizeof(*o));
	o->host = "127.0.0.1";
	o->user = "alice";
	o->password = "s3cret pw";
	o->starttls = true;
	o->net.io_timeout_ms = IO_TIMEOUT_MS;
	o->net.connect_timeout_ms = IO_TIMEOUT_MS;
}

/* Runs one session against a fake server with the given script; the
 * error text (if any) is copied into error (size 512). */
static int
run_session(struct fake *f, const struct step *steps, size_t nsteps,
            struct pop3_options *o, struct pop3_entry **entries_r,
            size_t *count_r, char *error)
{
	const char *err = NULL;
	int ret;

	fake_start(f, steps, nsteps);
	o->port = f->port;
	ret = pop3_fetch_uidls(o, entries_r, count_r, &err);
	error[0] = '\0';
	if (ret < 0) {
		assert_non_null(err);
		snprintf(error, 512, "%s", err);
		assert_null(*entries_r);
		assert_int_equal(*count_r, 0);
	}
	fake_join(f);
	if (f->failed)
		fail_msg("fake server: %s (transcript: %s)", f->error, f->transcript);
	return ret;
}

static void
assert_contains(const char *haystack, const char *needle)
{
	if (strstr(haystack, needle) == NULL)
		fail_msg("'%s' does not contain '%s'", haystack, needle);
}

/* ---- scripts ---- */

#define GREETING "+OK Dovecot ready. <1.2.3@test>\r\n"
#define CAPA_PIPE "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\n" \
	"AUTH-RESP-CODE\r\nUSER\r\nSASL PLAIN LOGIN\r\n..X-STUFFED\r\n.\r\n"
#define CAPA_NOPIPE "+OK\r\nUIDL\r\nUSER\r\n.\r\n"
#define CAPA_STLS "+OK\r\nUIDL\r\nSTLS\r\nPIPELINING\r\nUSER\r\n.\r\n"
/* ".2 ..." is dot-stuffed (unnecessarily, which is allowed) */
#define UIDL_4 "+OK\r\n1 000000017b2a1c00\r\n.2 000000027b2a1c00\r\n" \
	"3 1234.5\r\n4 !~x\r\n.\r\n"
#define LIST_4 "+OK 4 messages:\r\n1 1200\r\n2 34 extra-info\r\n3 0 \r\n" \
	"4 18446744073709551615\r\n.\r\n"
#define LOGGED_IN "+OK Logged in.\r\n"

static void
check_four(struct pop3_entry *e, size_t n)
{
	static const char *uidls[] = { "000000017b2a1c00", "000000027b2a1c00",
	                               "1234.5", "!~x" };
	static const uint64_t sizes[] = { 1200, 34, 0, UINT64_MAX };

	assert_int_equal(n, 4);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(e[i].msgno, i + 1);
		assert_string_equal(e[i].uidl, uidls[i]);
		assert_true(e[i].size == sizes[i]);
	}
}

/* Runs a session that must succeed with the four messages of UIDL_4 and
 * LIST_4. With transcript, the commands the server saw must be exactly
 * those. */
static void
session_four(struct fake *f, const struct step *steps, size_t nsteps,
             struct pop3_options *o, const char *transcript)
{
	struct pop3_entry *e = NULL;
	size_t n = 0;
	char error[512];

	if (run_session(f, steps, nsteps, o, &e, &n, error) != 0)
		fail_msg("%s", error);
	check_four(e, n);
	if (transcript != NULL)
		assert_string_equal(f->transcript, transcript);
	pop3_entries_free(&e, n);
	assert_null(e);
}

/* Runs a session that must fail; its error text goes to error (512
 * bytes). */
static void
session_fails(struct fake *f, const struct step *steps, size_t nsteps,
              struct pop3_options *o, char *error)
{
	struct pop3_entry *e = NULL;
	size_t n = 0;

	assert_int_equal(run_session(f, steps, nsteps, o, &e, &n, error), -1);
}

static const struct step script_user_pass[] = {
	{ NULL, GREETING, 0 },
	{ "CAPA", CAPA_PIPE, 0 },
	{ "USER alice", "+OK\r\n", 0 },
	{ "PASS s3cret pw", LOGGED_IN, 0 },
	/* no reply to UIDL until LIST arrived: proves pipelining */
	{ "UIDL", NULL, 0 },
	{ "LIST", UIDL_4 LIST_4, 0 },
	{ "QUIT", "+OK Logging out.\r\n", 0 },
};
#define USER_PASS_TRANSCRIPT "CAPA\nUSER alice\nPASS s3cret pw\nUIDL\nLIST\nQUIT\n"

/* ---- tests: sessions ---- */

static void
test_user_pass(void **state)
{
	struct fake f = { 0 };
	struct pop3_options o;

	(void)state;
	opts_init(&o);
	session_four(&f, script_user_pass, N_ELEMENTS(script_user_pass), &o,
	             USER_PASS_TRANSCRIPT);
}

/* Every reply trickles in one byte per write. */
static void
test_one_byte_writes(void **state)
{
	struct fake f = { .wmode = W_BYTES };
	struct pop3_options o;

	(void)state;
	opts_init(&o);
	session_four(&f, script_user_pass, N_ELEMENTS(script_user_pass), &o,
	             USER_PASS_TRANSCRIPT);
}

/* Every reply split in two writes at every offset of the longest one. */
static void
test_split_every_byte(void **state)
{
	size_t max = strlen(UIDL_4 LIST_4);

	(void)state;
	for (size_t k = 1; k < max; k++) {
		struct fake f = { .wmode = W_SPLIT, .split_at = k };
		struct pop3_options o;
		struct pop3_entry *e = NULL;
		size_t n = 0;
		char error[512];

		opts_init(&o);
		if (run_session(&f, script_user_pass, N_ELEMENTS(script_user_pass),
		                &o, &e, &n, error) != 0)
			fail_msg("split at %zu: %s", k, error);
		check_four(e, n);
		assert_string_equal(f.transcript, USER_PASS_TRANSCRIPT);
		pop3_entries_free(&e, n);
	}
}

/* Without PIPELINING (and without CAPA at all) the commands go one by one. */
static void
test_no_pipelining(void **state)
{
	static const struct step nopipe[] = {
		{ NULL, GREETING, 0 },
		{ "CAPA", CAPA_NOPIPE, 0 },
		{ "USER alice", "+OK\r\n", 0 },
		{ "PASS s3cret pw", LOGGED_IN, 0 },
		{ "UIDL", UIDL_4, 0 },
		{ "LIST", LIST_4, 0 },
		{ "QUIT", "+OK\r\n", 0 },
	};
	static const struct step nocapa[] = {
		{ NULL, "+OK\r\n", 0 },
		{ "CAPA", "-ERR Unknown command.\r\n", 0 },
		{ "USER alice", "+OK\r\n", 0 },
		{ "PASS s3cret pw", "+OK\r\n", 0 },
		{ "UIDL", UIDL_4, 0 },
		{ "LIST", LIST_4, 0 },
		{ "QUIT", "+OK\r\n", 0 },
	};
	const struct step *scripts[] = { nopipe, nocapa };
	size_t lens[] = { N_ELEMENTS(nopipe), N_ELEMENTS(nocapa) };

	(void)state;
	for (size_t i = 0; i < N_ELEMENTS(scripts); i++) {
		struct fake f = { 0 };
		struct pop3_options o;

		opts_init(&o);
		session_four(&f, scripts[i], lens[i], &o, USER_PASS_TRANSCRIPT);
	}
}

static void
test_empty_mailbox(void **state)
{
	static const struct step script[] = {
		{ NULL, GREETING, 0 },
		{ "CAPA", CAPA_PIPE, 0 },
		{ "USER alice", "+OK\r\n", 0 },
		{ "PASS s3cret pw", LOGGED_IN, 0 },
		{ "UIDL", NULL, 0 },
		{ "LIST", "+OK\r\n.\r\n+OK 0 messages:\r\n.\r\n", 0 },
		{ "QUIT", "+OK\r\n", 0 },
	};
	struct fake f = { 0 };
	struct pop3_options o;
	struct pop3_entry *e = NULL;
	size_t n = 99;
	char error[512];

	(void)state;
	opts_init(&o);
	assert_int_equal(run_session(&f, script, N_ELEMENTS(script), &o, &e, &n,
	                             error), 0);
	assert_int_equal(n, 0);
	assert_null(e);
	pop3_entries_free(&e, n);
}

/* AUTH PLAIN with authzid: the exact base64 on the wire. */
static void
test_auth_plain(void **state)
{
	static const struct step script[] = {
		{ NULL, GREETING, 0 },
		{ "CAPA", CAPA_PIPE, 0 },
		/* base64("admin\0alice\0s3cret pw") */
		{ "AUTH PLAIN YWRtaW4AYWxpY2UAczNjcmV0IHB3", LOGGED_IN, 0 },
		{ "UIDL", NULL, 0 },
		{ "LIST", UIDL_4 LIST_4, 0 },
		{ "QUIT", "+OK\r\n", 0 },
	};
	struct fake f = { 0 };
	struct pop3_options o;

	(void)state;
	opts_init(&o);
	o.authzid = "admin";
	session_four(&f, script, N_ELEMENTS(script), &o, NULL);
}

/* A response that would make the command longer than 255 octets goes on
 * its own line after "+ " (RFC 5034 4). */
static void
test_auth_plain_long(void **state)
{
	char pass[301], raw[320];
	char *b64;
	struct step script[] = {
		{ NULL, GREETING, 0 },
		{ "CAPA", CAPA_PIPE, 0 },
		{ "AUTH PLAIN", "+ \r\n", 0 },
		{ NULL, LOGGED_IN, 0 },
		{ "UIDL", NULL, 0 },
		{ "LIST", UIDL_4 LIST_4, 0 },
		{ "QUIT", "+OK\r\n", 0 },
	};
	struct fake f = { 0 };
	struct pop3_options o;

	(void)state;
	memset(pass, 'p', 300);
	pass[300] = '\0';
	memcpy(raw, "admin\0alice\0", 12);
	memcpy(raw + 12, pass, 300);
	b64 = base64_encode(raw, 312);
	script[3].expect = b64;
	opts_init(&o);
	o.authzid = "admin";
	o.password = pass;
	session_four(&f, script, N_ELEMENTS(script), &o, NULL);
	free(b64);
}

static void
test_auth_plain_refused(void **state)
{
	static const struct step script[] = {
		{ NULL, GREETING, 0 },
		{ "CAPA", CAPA_PIPE, 0 },
		{ "AUTH PLAIN YWRtaW4AYWxpY2UAczNjcmV0IHB3",
		  "-ERR [AUTH] Authentication failed.\r\n", 0 },
	};
	struct fake f = { 0 };
	struct pop3_options o;
	char error[512];

	(void)state;
	opts_init(&o);
	o.authzid = "admin";
	session_fails(&f, script, N_ELEMENTS(script), &o, error);
	assert_contains(error, "login as alice for admin refused: "
	                "-ERR [AUTH] Authentication failed.");
	assert_string_equal(f.transcript,
	                    "CAPA\nAUTH PLAIN YWRtaW4AYWxpY2UAczNjcmV0IHB3\n");
}

/* -ERR on PASS (and on USER): the server's text, and nothing sent after. */
static void
test_login_refused(void **state)
{
	static const struct step pass_err[] = {
		{ NULL, GREETING, 0 },
		{ "CAPA", CAPA_PIPE, 0 },
		{ "USER alice", "+OK\r\n", 0 },
		{ "PASS s3cret pw", "-ERR [AUTH] Authentication failed.\r\n", 0 },
	};
	static const struct step user_err[] = {
		{ NULL, GREETING, 0 },
		{ "CAPA", CAPA_PIPE, 0 },
		{ "USER alice", "-ERR [AUTH] Plaintext authentication disallowed "
		  "on non-secure (SSL/TLS) connections.\r\n", 0 },
	};
	struct fake f = { 0 }, g = { 0 };
	struct pop3_options o;
	char error[512], expect[512];

	(void)state;
	opts_init(&o);
	session_fails(&f, pass_err, N_ELEMENTS(pass_err), &o, error);
	snprintf(expect, sizeof(expect), "127.0.0.1:%s: login as alice refused: "
	         "-ERR [AUTH] Authentication failed.", f.port);
	assert_string_equal(error, expect);
	assert_string_equal(f.transcript, "CAPA\nUSER alice\nPASS s3cret pw\n");

	session_fails(&g, user_err, N_ELEMENTS(user_err), &o, error);
	assert_contains(error, "login as alice refused: -ERR [AUTH] Plaintext "
	                "authentication disallowed");
	assert_string_equal(g.transcript, "CAPA\nUSER alice\n");
}

static void
test_bad_greeting(void **state)
{
	static const struct step err[] = {
		{ NULL, "-ERR [SYS/TEMP] Too many connections\r\n", 0 },
	};
	static const struct step junk[] = {
		{ NULL, "* OK IMAP4rev1 ready\r\n", 0 },
	};
	struct fake f = { 0 }, g = { 0 };
	struct pop3_options o;
	char error[512];

	(void)state;
	opts_init(&o);
	session_fails(&f, err, 1, &o, error);
	assert_contains(error, "greeting failed: -ERR [SYS/TEMP] Too many connections");
	assert_string_equal(f.transcript, "");
	session_fails(&g, junk, 1, &o, error);
	assert_contains(error, "unexpected reply to greeting: '* OK IMAP4rev1 ready'");
}

/* ---- hostile listings ---- */

struct bad_case {
	const char *uidl;         /* UIDL reply */
	size_t uidl_len;
	const char *list;         /* LIST reply (after UIDL's, pipelined) */
	const char *error;        /* expected in the error text */
};

#define LIST_2 "+OK\r\n1 10\r\n2 20\r\n.\r\n"
#define UIDL_2 "+OK\r\n1 a\r\n2 b\r\n.\r\n"
#define L64 "1234567890123456789012345678901234567890123456789012345678901234"
/* 256 bytes: one past the accepted maximum (RFC 1939 says 70; servers
 * send more) */
#define L256 L64 L64 L64 L64

static const struct bad_case bad_cases[] = {
	{ S_("+OK\r\n1\r\n.\r\n"), LIST_2, "malformed UIDL line: '1'" },
	{ S_("+OK\r\nx abc\r\n.\r\n"), LIST_2, "malformed UIDL line: 'x abc'" },
	{ S_("+OK\r\n0 abc\r\n.\r\n"), LIST_2, "malformed UIDL line: '0 abc'" },
	{ S_("+OK\r\n-1 abc\r\n.\r\n"), LIST_2, "malformed UIDL line" },
	{ S_("+OK\r\n1 \r\n.\r\n"), LIST_2, "malformed UIDL line: '1 '" },
	{ S_("+OK\r\n1  abc\r\n.\r\n"), LIST_2, "has byte 0x20 at offset 0" },
	{ S_("+OK\r\n4294967296 a\r\n.\r\n"), LIST_2, "malformed UIDL line" },
	{ S_("+OK\r\n1 ab cd\r\n.\r\n"), LIST_2,
	  "UIDL of message 1 has byte 0x20 at offset 2 (only 0x21-0x7E allowed): 'ab cd'" },
	{ S_("+OK\r\n1 ab\x01" "cd\r\n.\r\n"), LIST_2, "has byte 0x01 at offset 2" },
	{ S_("+OK\r\n1 ab\x7f" "cd\r\n.\r\n"), LIST_2, "has byte 0x7f" },
	{ S_("+OK\r\n1 \xc3\xa9t\xc3\xa9\r\n.\r\n"), LIST_2, "has byte 0xc3 at offset 0" },
	{ S_("+OK\r\n1 ab\0cd\r\n.\r\n"), LIST_2, "has byte 0x00 at offset 2 (only 0x21-0x7E allowed): 'ab?cd'" },
	{ S_("+OK\r\n1 " L256 "\r\n.\r\n"), LIST_2,
	  "UIDL of message 1 is 256 bytes long (at most 255 accepted)" },
	{ S_("+OK\r\n2 a\r\n1 b\r\n.\r\n"), LIST_2,
	  "UIDL listing not in ascending order: message 1 after 2" },
	{ S_("+OK\r\n1 a\r\n1 b\r\n.\r\n"), LIST_2, "message 1 after 1" },
	{ S_("-ERR Unknown command: UIDL\r\n"), LIST_2,
	  "UIDL failed: -ERR Unknown command: UIDL" },
	{ S_("garbage\r\n"), LIST_2, "unexpected reply to UIDL: 'garbage'" },
	{ S_(UIDL_2), "+OK\r\n1 10\r\n.\r\n", "UIDL listed 2 messages but LIST only 1" },
	{ S_(UIDL_2), "+OK\r\n1 10\r\n2 20\r\n3 30\r\n.\r\n",
	  "LIST names message 3, which UIDL did not list" },
	{ S_(UIDL_2), "+OK\r\n1 10\r\n3 30\r\n.\r\n",
	  "LIST names message 3 where UIDL had message 2" },
	{ S_(UIDL_2), "+OK\r\n1 12x\r\n.\r\n", "malformed LIST line: '1 12x'" },
	{ S_(UIDL_2), "+OK\r\n1 -5\r\n.\r\n", "malformed LIST line" },
	{ S_(UIDL_2), "+OK\r\n1\r\n.\r\n", "malformed LIST line" },
	{ S_(UIDL_2), "+OK\r\n1 99999999999999999999\r\n.\r\n", "malformed LIST line" },
	{ S_(UIDL_2), "-ERR no\r\n", "LIST failed: -ERR no" },
	/* ". " is not the terminator: unstuffed it is " " */
	{ S_("+OK\r\n1 a\r\n. \r\n.\r\n"), LIST_2, "malformed UIDL line: ' '" },
};

static void
test_bad_listings(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_ELEMENTS(bad_cases); i++) {
		const struct bad_case *c = &bad_cases[i];
		char reply[4096];
		size_t llen = strlen(c->list);
		struct step script[] = {
			{ NULL, GREETING, 0 },
			{ "CAPA", CAPA_PIPE, 0 },
			{ "USER alice", "+OK\r\n", 0 },
			{ "PASS s3cret pw", LOGGED_IN, 0 },
			{ "UIDL", NULL, 0 },
			{ "LIST", reply, c->uidl_len + llen },
		};
		struct fake f = { 0 };
		struct pop3_options o;
		struct pop3_entry *e = NULL;
		size_t n = 0;
		char error[512];

		assert_true(c->uidl_len + llen <= sizeof(reply));
		memcpy(reply, c->uidl, c->uidl_len);
		memcpy(reply + c->uidl_len, c->list, llen);
		opts_init(&o);
		if (run_session(&f, script, N_ELEMENTS(script), &o, &e, &n, error) == 0)
			fail_msg("case %zu: accepted", i);
		if (strstr(error, c->error) == NULL)
			fail_msg("case %zu: '%s' does not contain '%s'", i, error,
			         c->error);
		/* nothing (no QUIT) after a broken listing */
		assert_string_equal(f.transcript, "CAPA\nUSER alice\nPASS s3cret pw\n"
		                    "UIDL\nLIST\n");
	}
}

/* More messages than max_entries. */
static void
test_max_entries(void **state)
{
	struct fake f = { 0 };
	struct pop3_options o;
	char error[512];

	(void)state;
	opts_init(&o);
	o.max_entries = 3;
	session_fails(&f, script_user_pass, 6, &o, error);
	assert_contains(error, "more than 3 messages in the mailbox");
}

/* Status lines up to POP3_LINE_MAX bytes pass; longer ones fail, also
 * when no newline ever comes. */
static void
test_line_too_long(void **state)
{
	static char ok_greeting[POP3_LINE_MAX + 3], long_greeting[POP3_LINE_MAX + 4];
	static char no_newline[3 * POP3_LINE_MAX], long_uidl[POP3_LINE_MAX + 64];
	struct step ok_script[] = {
		{ NULL, ok_greeting, 0 },
		{ "CAPA", CAPA_PIPE, 0 },
		{ "USER alice", "+OK\r\n", 0 },
		{ "PASS s3cret pw", LOGGED_IN, 0 },
		{ "UIDL", NULL, 0 },
		{ "LIST", UIDL_4 LIST_4, 0 },
		{ "QUIT", "+OK\r\n", 0 },
	};
	struct step long_script[] = { { NULL, long_greeting, 0 } };
	struct step nonl_script[] = { { NULL, no_newline, 0 } };
	struct step uidl_script[] = {
		{ NULL, GREETING, 0 },
		{ "CAPA", CAPA_PIPE, 0 },
		{ "USER alice", "+OK\r\n", 0 },
		{ "PASS s3cret pw", LOGGED_IN, 0 },
		{ "UIDL", NULL, 0 },
		{ "LIST", long_uidl, 0 },
	};
	struct fake f1 = { 0 }, f2 = { 0 }, f3 = { 0 }, f4 = { 0 };
	struct pop3_options o;
	char error[512];
	uint64_t t0;

	(void)state;
	/* "+OK " + filler, exactly POP3_LINE_MAX bytes before CRLF */
	memcpy(ok_greeting, "+OK ", 4);
	memset(ok_greeting + 4, 'x', POP3_LINE_MAX - 4);
	memcpy(ok_greeting + POP3_LINE_MAX, "\r\n", 3);
	memcpy(long_greeting, "+OK ", 4);
	memset(long_greeting + 4, 'x', POP3_LINE_MAX - 3);
	memcpy(long_greeting + POP3_LINE_MAX + 1, "\r\n", 3);
	memcpy(no_newline, "+OK ", 4);
	memset(no_newline + 4, 'y', sizeof(no_newline) - 5);
	memcpy(long_uidl, "+OK\r\n1 ", 7);
	memset(long_uidl + 7, 'z', POP3_LINE_MAX);
	memcpy(long_uidl + 7 + POP3_LINE_MAX, "\r\n.\r\n", 6);

	opts_init(&o);
	session_four(&f1, ok_script, N_ELEMENTS(ok_script), &o, NULL);

	session_fails(&f2, long_script, 1, &o, error);
	assert_contains(error, "server sent a line longer than 4096 bytes");

	/* must not wait for the io timeout */
	t0 = time_mono_ms();
	session_fails(&f3, nonl_script, 1, &o, error);
	assert_contains(error, "server sent a line longer than 4096 bytes");
	assert_true(time_mono_ms() - t0 < IO_TIMEOUT_MS);

	session_fails(&f4, uidl_script, N_ELEMENTS(uidl_script), &o, error);
	assert_contains(error, "server sent a line longer than 4096 bytes");
}

/* The server goes away: before the greeting, after CAPA was sent, in the
 * middle of a listing line, before the terminating ".". */
static void
test_server_closes_early(void **state)
{
	static const struct step none[] = { { NULL, NULL, 0 } };
	static const struct step after_capa[] = {
		{ NULL, GREETING, 0 },
		{ "CAPA", NULL, 0 },
	};
	static const struct step mid_line[] = {
		{ NULL, GREETING, 0 },
		{ "CAPA", CAPA_PIPE, 0 },
		{ "USER alice", "+OK\r\n", 0 },
		{ "PASS s3cret pw", LOGGED_IN, 0 },
		{ "UIDL", NULL, 0 },
		{ "LIST", "+OK\r\n1 abc\r\n2 de", 0 },
	};
	static const struct step no_dot[] = {
		{ NULL, GREETING, 0 },
		{ "CAPA", CAPA_PIPE, 0 },
		{ "USER alice", "+OK\r\n", 0 },
		{ "PASS s3cret pw", LOGGED_IN, 0 },
		{ "UIDL", NULL, 0 },
		{ "LIST", UIDL_2 "+OK\r\n1 10\r\n2 20\r\n", 0 },
	};
	static const struct {
		const struct step *steps;
		size_t n;
		const char *error;
	} cases[] = {
		{ none, 1, "connection closed by the server" },
		{ after_capa, 2, "connection closed by the server" },
		{ mid_line, 6, "connection closed by the server in the middle of a line" },
		{ no_dot, 6, "connection closed by the server" },
	};

	(void)state;
	for (size_t i = 0; i < N_ELEMENTS(cases); i++) {
		struct fake f = { .close_after = true };
		struct pop3_options o;
		char error[512];

		opts_init(&o);
		session_fails(&f, cases[i].steps, cases[i].n, &o, error);
		assert_contains(error, cases[i].error);
	}
}

static void
test_connect_refused(void **state)
{
	struct pop3_options o;
	struct pop3_entry *e = NULL;
	size_t n = 0;
	const char *error = NULL;
	char port[16];
	int fd;

	(void)state;
	/* a port that was free a moment ago */
	fd = listen_loopback(port, sizeof(port));
	close(fd);
	opts_init(&o);
	o.port = port;
	assert_int_equal(pop3_fetch_uidls(&o, &e, &n, &error), -1);
	assert_non_null(error);
	assert_null(e);
}

/* CR/LF in credentials would inject commands: refused before connecting. */
static void
test_crlf_in_credentials(void **state)
{
	struct pop3_options o;
	struct pop3_entry *e = NULL;
	size_t n = 0;
	const char *error = NULL;

	(void)state;
	opts_init(&o);
	o.port = "1";
	o.user = "alice\r\nDELE 1";
	assert_int_equal(pop3_fetch_uidls(&o, &e, &n, &error), -1);
	assert_string_equal(error, "pop3: user name, password or authzid contains CR or LF");
	opts_init(&o);
	o.port = "1";
	o.password = "pw\nDELE 1";
	assert_int_equal(pop3_fetch_uidls(&o, &e, &n, &error), -1);
	assert_contains(error, "CR or LF");
}

/* ---- STLS ---- */

static void
test_stls(void **state)
{
	static const struct step not_offered[] = {
		{ NULL, GREETING, 0 },
		{ "CAPA", CAPA_PIPE, 0 },
	};
	static const struct step refused[] = {
		{ NULL, GREETING, 0 },
		{ "CAPA", CAPA_STLS, 0 },
		{ "STLS", "-ERR TLS support isn't enabled.\r\n", 0 },
	};
	static const struct step injected[] = {
		{ NULL, GREETING, 0 },
		{ "CAPA", CAPA_STLS, 0 },
		{ "STLS", "+OK Begin TLS negotiation now.\r\n+OK fake\r\n", 0 },
	};
	/* tls=none: STLS offered but not used */
	static const struct step plain[] = {
		{ NULL, GREETING, 0 },
		{ "CAPA", CAPA_STLS, 0 },
		{ "USER alice", "+OK\r\n", 0 },
		{ "PASS s3cret pw", LOGGED_IN, 0 },
		{ "UIDL", NULL, 0 },
		{ "LIST", UIDL_4 LIST_4, 0 },
		{ "QUIT", "+OK\r\n", 0 },
	};
	struct fake f1 = { 0 }, f2 = { 0 }, f3 = { 0 }, f4 = { 0 }, f5 = { 0 };
	struct pop3_options o;
	char error[512];

	(void)state;
	/* required, not offered: no credentials sent */
	opts_init(&o);
	o.require_tls = true;
	session_fails(&f1, not_offered, N_ELEMENTS(not_offered), &o, error);
	assert_contains(error, "server does not offer STLS and TLS is required");
	assert_string_equal(f1.transcript, "CAPA\n");

	/* required (even with starttls off), offered but refused */
	opts_init(&o);
	o.starttls = false;
	o.require_tls = true;
	session_fails(&f2, refused, N_ELEMENTS(refused), &o, error);
	assert_contains(error, "STLS failed: -ERR TLS support isn't enabled.");
	assert_string_equal(f2.transcript, "CAPA\nSTLS\n");

	/* opportunistic, refused: no silent fallback to plain text either */
	opts_init(&o);
	session_fails(&f3, refused, N_ELEMENTS(refused), &o, error);
	assert_contains(error, "STLS failed");
	assert_string_equal(f3.transcript, "CAPA\nSTLS\n");

	/* plaintext right behind the +OK */
	opts_init(&o);
	session_fails(&f4, injected, N_ELEMENTS(injected), &o, error);
	assert_contains(error, "possible injection");

	opts_init(&o);
	o.starttls = false;
	session_four(&f5, plain, N_ELEMENTS(plain), &o, USER_PASS_TRANSCRIPT);
}

/* ---- logging: passwords never appear, even at LOG_TRACE ---- */

static void
test_password_not_logged(void **state)
{
	static const struct step plain_script[] = {
		{ NULL, GREETING, 0 },
		{ "CAPA", CAPA_PIPE, 0 },
		{ "AUTH PLAIN YWRtaW4AYWxpY2UAczNjcmV0IHB3", LOGGED_IN, 0 },
		{ "UIDL", NULL, 0 },
		{ "LIST", UIDL_4 LIST_4, 0 },
		{ "QUIT", "+OK\r\n", 0 },
	};
	char path[] = "/tmp/test_pop3_log_XXXXXX";
	struct fake f = { 0 }, g = { 0 };
	struct pop3_options o;
	char *text = NULL;
	const char *err;
	int fd;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	log_configure(LOG_TRACE, fd);
	opts_init(&o);
	session_four(&f, script_user_pass, N_ELEMENTS(script_user_pass), &o,
	             NULL);
	o.authzid = "admin";
	session_four(&g, plain_script, N_ELEMENTS(plain_script), &o, NULL);
	log_configure(LOG_INFO, STDERR_FILENO);
	close(fd);
	assert_int_equal(file_read_small(path, 1 << 20, false, &text, &err), 0);
	unlink(path);
	assert_contains(text, "C: UIDL");        /* tracing was on */
	assert_contains(text, "C: PASS <hidden>");
	assert_contains(text, "C: AUTH PLAIN <hidden>");
	assert_null(strstr(text, "s3cret"));
	assert_null(strstr(text, "YWRtaW4AYWxpY2UAczNjcmV0IHB3"));
	free(text);
}

/* ---- URLs ---- */

static void
test_url_ok(void **state)
{
	static const struct {
		const char *url, *host, *port, *user;
		bool implicit_tls, starttls, require_tls;
	} cases[] = {
		/* issue 12: pop3:// requires STLS unless ?tls=none */
		{ "pop3://alice@mail.example.org", "mail.example.org", NULL, "alice",
		  false, true, true },
		{ "pop3://alice@mail.example.org:1110/", "mail.example.org", "1110",
		  "alice", false, true, true },
		{ "pop3s://alice@mail.example.org:1995", "mail.example.org", "1995",
		  "alice", true, false, true },
		{ "pop3://alice%40example.org@[::1]:110/?tls=none", "::1", "110",
		  "alice@example.org", false, false, false },
		{ "pop3://a@b@host?starttls=require", "host", NULL, "a@b",
		  false, true, true },
		{ "pop3://alice*master;AUTH=*@h?starttls=no", "h", NULL,
		  "alice*master", false, false, false },
		{ "pop3://bob;auth=+USER@[2001:db8::1]", "2001:db8::1", NULL, "bob",
		  false, true, true },
	};

	(void)state;
	for (size_t i = 0; i < N_ELEMENTS(cases); i++) {
		struct pop3_options o;
		struct pop3_url u;
		const char *error = NULL;

		memset(&o, 0, sizeof(o));
		o.password = "kept";
		o.net.io_timeout_ms = 42;
		if (pop3_url_parse(cases[i].url, &o, &u, &error) < 0)
			fail_msg("%s: %s", cases[i].url, error);
		assert_string_equal(o.host, cases[i].host);
		if (cases[i].port == NULL)
			assert_null(o.port);
		else
			assert_string_equal(o.port, cases[i].port);
		assert_string_equal(o.user, cases[i].user);
		assert_int_equal(o.implicit_tls, cases[i].implicit_tls);
		assert_int_equal(o.starttls, cases[i].starttls);
		assert_int_equal(o.require_tls, cases[i].require_tls);
		assert_string_equal(o.password, "kept");
		assert_int_equal(o.net.io_timeout_ms, 42);
		assert_string_equal(u.url, cases[i].url);
		assert_true(pop3_url_is(cases[i].url));
		pop3_url_free(&u);
		assert_null(u.host);
	}
}

static void
test_url_bad(void **state)
{
	static const struct {
		const char *url, *error;
	} cases[] = {
		{ "imap://alice@h", "expected pop3:// or pop3s://" },
		{ "pop://alice@h", "expected pop3:// or pop3s://" },
		{ "pop3://mail.example.org", "no user name (pop3://USER@HOST)" },
		{ "pop3://alice:pw@h", "passwords are not accepted in URLs" },
		{ "pop3://@h", "bad or empty user name" },
		{ "pop3://al%4@h", "bad or empty user name" },
		{ "pop3://alice%0d%0aDELE%201@h", "bad or empty user name" },
		{ "pop3://alice%00@h", "bad or empty user name" },
		{ "pop3://alice;AUTH=LOGIN@h", "unsupported URL auth 'AUTH=LOGIN'" },
		{ "pop3://alice@", "empty host" },
		{ "pop3://alice@:110", "empty host" },
		{ "pop3://alice@[::1", "unterminated [IPv6]" },
		{ "pop3://alice@[::1]x", "junk after [IPv6]" },
		{ "pop3://alice@h:0", "bad port '0'" },
		{ "pop3://alice@h:65536", "bad port '65536'" },
		{ "pop3://alice@h:", "bad port ''" },
		{ "pop3://alice@h:11x", "bad port '11x'" },
		{ "pop3://alice@h?compress=yes", "unknown URL option 'compress=yes'" },
		{ "pop3s://alice@h?tls=none", "is for pop3:// only" },
		{ "pop3://alice@h/INBOX", "unexpected path in a POP3 URL" },
	};

	(void)state;
	for (size_t i = 0; i < N_ELEMENTS(cases); i++) {
		struct pop3_options o;
		struct pop3_url u;
		const char *error = NULL;

		memset(&o, 0, sizeof(o));
		o.host = "untouched";
		if (pop3_url_parse(cases[i].url, &o, &u, &error) == 0)
			fail_msg("%s: accepted", cases[i].url);
		if (strstr(error, cases[i].error) == NULL)
			fail_msg("%s: '%s' does not contain '%s'", cases[i].url, error,
			         cases[i].error);
		/* no pointers into freed storage */
		assert_string_equal(o.host, "untouched");
		assert_null(u.url);
		pop3_url_free(&u);
	}
	assert_false(pop3_url_is("imap://a@b"));
}

/* ---- pairing with IMAP UIDs ---- */

static void
test_match(void **state)
{
	struct pop3_entry e[3] = {
		{ 1, 10, (char *)"a" }, { 2, 20, (char *)"b" }, { 3, 30, (char *)"c" },
	};
	uint32_t uids[3] = { 5, 7, 100 };
	uint64_t sizes[3] = { 10, 20, 30 };
	uint32_t *ru = NULL;
	char **rs = NULL;
	size_t rn = 0;
	const char *error = NULL;

	(void)state;
	assert_int_equal(pop3_match_uids(e, 3, uids, sizes, 3, &ru, &rs, &rn,
	                                 &error), 0);
	assert_int_equal(rn, 3);
	assert_int_equal(ru[0], 5);
	assert_int_equal(ru[2], 100);
	assert_string_equal(rs[1], "b");
	assert_ptr_not_equal(rs[1], e[1].uidl);
	pop3_matched_free(&ru, &rs, rn);
	assert_null(ru);
	assert_null(rs);

	/* sizes unknown: pairing by position only */
	assert_int_equal(pop3_match_uids(e, 3, uids, NULL, 3, &ru, &rs, &rn,
	                                 &error), 0);
	pop3_matched_free(&ru, &rs, rn);

	/* empty on both sides */
	assert_int_equal(pop3_match_uids(e, 0, uids, sizes, 0, &ru, &rs, &rn,
	                                 &error), 0);
	assert_int_equal(rn, 0);
	assert_null(ru);
	pop3_matched_free(&ru, &rs, rn);

	assert_int_equal(pop3_match_uids(e, 3, uids, sizes, 2, &ru, &rs, &rn,
	                                 &error), -1);
	assert_string_equal(error, "POP3 lists 3 messages but the IMAP INBOX has 2");
	assert_null(ru);
	assert_null(rs);
	assert_int_equal(rn, 0);

	sizes[1] = 21;
	assert_int_equal(pop3_match_uids(e, 3, uids, sizes, 3, &ru, &rs, &rn,
	                                 &error), -1);
	assert_contains(error, "POP3 message 2 (UIDL b) has size 20 but IMAP UID 7 "
	                "has RFC822.SIZE 21");
	sizes[1] = 20;

	uids[1] = 5;
	assert_int_equal(pop3_match_uids(e, 3, uids, sizes, 3, &ru, &rs, &rn,
	                                 &error), -1);
	assert_contains(error, "IMAP UIDs not in ascending order: UID 5 after 5");
	uids[1] = 7;

	e[2].msgno = 4;
	assert_int_equal(pop3_match_uids(e, 3, uids, sizes, 3, &ru, &rs, &rn,
	                                 &error), -1);
	assert_contains(error, "entry 3 is message 4");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_user_pass),
		cmocka_unit_test(test_one_byte_writes),
		cmocka_unit_test(test_split_every_byte),
		cmocka_unit_test(test_no_pipelining),
		cmocka_unit_test(test_empty_mailbox),
		cmocka_unit_test(test_auth_plain),
		cmocka_unit_test(test_auth_plain_long),
		cmocka_unit_test(test_auth_plain_refused),
		cmocka_unit_test(test_login_refused),
		cmocka_unit_test(test_bad_greeting),
		cmocka_unit_test(test_bad_listings),
		cmocka_unit_test(test_max_entries),
		cmocka_unit_test(test_line_too_long),
		cmocka_unit_test(test_server_closes_early),
		cmocka_unit_test(test_connect_refused),
		cmocka_unit_test(test_crlf_in_credentials),
		cmocka_unit_test(test_stls),
		cmocka_unit_test(test_password_not_logged),
		cmocka_unit_test(test_url_ok),
		cmocka_unit_test(test_url_bad),
		cmocka_unit_test(test_match),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
