/* test_keepalive.c: the keeper (src/imap/keepalive.c) against a fake IMAP
 * server thread on 127.0.0.1 that counts the NOOPs it gets: a parked
 * session gets NOOP after the interval and its reply is handled (the
 * EXISTS in it reaches the session's state); a taken session, or a parked
 * one with a command of its owner's still queued, gets none; a take waits
 * for a NOOP under way; a session the server dropped while idle is found
 * dead by its owner. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "client.h"
#include "keepalive.h"
#include "log.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define IDLE_MS 150

struct fake {
	int lfd;
	char port[16];
	pthread_t thread;
	atomic_uint noops;
	atomic_uint commands;
	unsigned noop_delay_ms;   /* before answering a NOOP */
	unsigned autologout_ms;   /* drop a client idle this long (0: never) */
};

static void
say(int fd, const char *s)
{
	size_t len = strlen(s);

	while (len > 0) {
		ssize_t n = write(fd, s, len);

		if (n <= 0)
			return;
		s += n;
		len -= (size_t)n;
	}
}

static void *
fake_main(void *arg)
{
	struct fake *f = arg;
	struct pollfd pfd = { .fd = f->lfd, .events = POLLIN };
	char buf[4096], out[256];
	size_t have = 0;
	int fd;

	if (poll(&pfd, 1, 10000) != 1 || (fd = accept(f->lfd, NULL, NULL)) < 0)
		return NULL;
	say(fd, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] fake\r\n");
	for (;;) {
		struct pollfd cp = { .fd = fd, .events = POLLIN };
		ssize_t n;
		char *eol;

		if (f->autologout_ms != 0 && poll(&cp, 1, (int)f->autologout_ms) == 0) {
			say(fd, "* BYE autologout\r\n");
			break;
		}
		n = read(fd, buf + have, sizeof(buf) - 1 - have);
		if (n <= 0)
			break;
		have += (size_t)n;
		buf[have] = '\0';
		while ((eol = strstr(buf, "\r\n")) != NULL) {
			char tag[32] = "", cmd[32] = "";

			*eol = '\0';
			(void)sscanf(buf, "%31s %31s", tag, cmd);
			atomic_fetch_add(&f->commands, 1);
			if (strcmp(cmd, "NOOP") == 0) {
				atomic_fetch_add(&f->noops, 1);
				usleep(f->noop_delay_ms * 1000);
				snprintf(out, sizeof(out), "* 7 EXISTS\r\n%s OK noop\r\n", tag);
			} else if (strcmp(cmd, "LOGOUT") == 0) {
				snprintf(out, sizeof(out), "* BYE bye\r\n%s OK\r\n", tag);
			} else if (strcmp(cmd, "CAPABILITY") == 0) {
				snprintf(out, sizeof(out), "* CAPABILITY IMAP4rev1 "
				         "AUTH=PLAIN SASL-IR\r\n%s OK\r\n", tag);
			} else {
				snprintf(out, sizeof(out), "%s OK done\r\n", tag);
			}
			say(fd, out);
			have -= (size_t)(eol + 2 - buf);
			memmove(buf, eol + 2, have + 1);
		}
	}
	close(fd);
	return NULL;
}

static void
fake_start(struct fake *f)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(f->lfd >= 0);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(f->lfd, 4), 0);
	assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&sa, &len), 0);
	snprintf(f->port, sizeof(f->port), "%u", ntohs(sa.sin_port));
	assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void
fake_stop(struct fake *f)
{
	pthread_join(f->thread, NULL);
	close(f->lfd);
}

static struct imap_client *
connect_fake(struct fake *f)
{
	struct imap_client_options o = {
		.host = "127.0.0.1", .port = f->port,
		.starttls = IMAP_STARTTLS_NEVER,
		.user = "u", .password = "pw", .label = "test",
		.net = { .io_timeout_ms = 5000 },
	};
	struct imap_client *c = NULL;
	const char *error = NULL;

	if (imap_client_connect(&o, &c, NULL, &error) < 0)
		fail_msg("connect: %s", error);
	return c;
}

static void
sleep_ms(unsigned ms)
{
	usleep(ms * 1000);
}

/* Parked: NOOP after the interval, its EXISTS handled; taken: none. */
static void
test_noop_when_parked(void **state)
{
	struct fake f = { 0 };
	struct imap_keeper *k = imap_keeper_new(IDLE_MS);
	struct imap_client *c;
	struct imap_keep *s;
	unsigned n;

	(void)state;
	fake_start(&f);
	c = connect_fake(&f);
	s = imap_keep_add(k, c, "test");       /* taken */
	sleep_ms(3 * IDLE_MS);
	assert_int_equal(atomic_load(&f.noops), 0);
	imap_keep_park(s);
	sleep_ms(3 * IDLE_MS);
	imap_keep_take(s);
	n = atomic_load(&f.noops);
	assert_true(n >= 1);
	assert_int_equal(imap_keep_noops(s), n);
	/* the reply's untagged data went into the session's state */
	assert_int_equal(imap_client_mailbox(c)->exists, 7);
	assert_false(imap_client_is_dead(c));
	/* taken again: nothing more */
	sleep_ms(3 * IDLE_MS);
	assert_int_equal(atomic_load(&f.noops), n);
	/* nested takes: parked only when the last one is */
	imap_keep_take(s);
	imap_keep_park(s);
	sleep_ms(3 * IDLE_MS);
	assert_int_equal(atomic_load(&f.noops), n);
	imap_keep_park(s);
	imap_keep_remove(&s);
	assert_null(s);
	imap_client_logout(&c);
	imap_keeper_free(&k);
	fake_stop(&f);
}

/* A command of the owner's still queued: the keeper leaves it alone. */
static void
test_no_noop_with_commands_queued(void **state)
{
	struct fake f = { 0 };
	struct imap_keeper *k = imap_keeper_new(IDLE_MS);
	struct imap_cmd_wait w = { 0 };
	struct imap_client *c;
	struct imap_cmd *cmd;
	struct imap_keep *s;
	const char *error;

	(void)state;
	fake_start(&f);
	c = connect_fake(&f);
	s = imap_keep_add(k, c, "test");
	cmd = imap_cmd_new(c);
	imap_cmd_add(cmd, "CHECK");
	imap_cmd_submit(cmd, imap_cmd_wait_done, &w);
	imap_keep_park(s);
	sleep_ms(3 * IDLE_MS);
	imap_keep_take(s);
	assert_int_equal(atomic_load(&f.noops), 0);
	assert_int_equal(imap_client_run(c, &error), 0);
	assert_null(w.error);
	imap_keep_park(s);
	sleep_ms(3 * IDLE_MS);
	imap_keep_take(s);
	assert_true(atomic_load(&f.noops) >= 1);
	imap_keep_remove(&s);
	imap_client_logout(&c);
	imap_keeper_free(&k);
	fake_stop(&f);
}

/* A take while the keeper waits for a NOOP's reply waits for it. */
static void
test_take_waits_for_noop(void **state)
{
	struct fake f = { .noop_delay_ms = 400 };
	struct imap_keeper *k = imap_keeper_new(IDLE_MS);
	struct imap_client *c;
	struct imap_keep *s;
	const char *error;

	(void)state;
	fake_start(&f);
	c = connect_fake(&f);
	s = imap_keep_add(k, c, "test");
	imap_keep_park(s);
	while (atomic_load(&f.noops) == 0)
		sleep_ms(10);
	imap_keep_take(s);        /* the NOOP is answered 400 ms later */
	assert_int_equal(imap_keep_noops(s), 1);
	assert_int_equal(imap_client_in_flight(c), 0);
	assert_int_equal(imap_client_simple(c, "CHECK", &error), 0);
	imap_keep_remove(&s);
	imap_client_logout(&c);
	imap_keeper_free(&k);
	fake_stop(&f);
}

/* The server logs an idle session out before the keeper's NOOP: the NOOP
 * finds it dead, and so does the owner's next command (which makes the
 * pass reconnect). */
static void
test_dead_while_idle(void **state)
{
	/* the server's autologout is shorter than the keeper's interval */
	struct fake f = { .autologout_ms = IDLE_MS / 2 };
	struct imap_keeper *k = imap_keeper_new(IDLE_MS);
	struct imap_client *c;
	struct imap_keep *s;
	const char *error;

	(void)state;
	fake_start(&f);
	c = connect_fake(&f);
	s = imap_keep_add(k, c, "test");
	imap_keep_park(s);
	sleep_ms(4 * IDLE_MS);
	imap_keep_take(s);
	assert_true(imap_client_is_dead(c));
	assert_int_equal(imap_client_simple(c, "CHECK", &error), -1);
	imap_keep_remove(&s);
	imap_client_free(&c);
	imap_keeper_free(&k);
	fake_stop(&f);
}

/* No keeper: every call is a no-op. */
static void
test_null_keeper(void **state)
{
	struct imap_keep *s = imap_keep_add(NULL, NULL, "x");

	(void)state;
	assert_null(s);
	imap_keep_take(s);
	imap_keep_park(s);
	assert_int_equal(imap_keep_noops(s), 0);
	imap_keep_remove(&s);
	{
		struct imap_keeper *none = NULL;

		imap_keeper_free(&none);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_noop_when_parked),
		cmocka_unit_test(test_no_noop_with_commands_queued),
		cmocka_unit_test(test_take_waits_for_noop),
		cmocka_unit_test(test_dead_while_idle),
		cmocka_unit_test(test_null_keeper),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
