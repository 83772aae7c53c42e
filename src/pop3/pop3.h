/* pop3.h: a small, bounded, read-only POP3 client (RFC 1939, RFC 2449
 * CAPA, RFC 2595 STLS, RFC 5034 AUTH PLAIN) that reads the UIDL and size
 * of every message of a source mailbox, so that the same UIDLs can be
 * written into the target (POP3 clients then see no change at cutover).
 *
 * The mailbox is never modified: the session sends only CAPA, STLS, USER,
 * PASS, AUTH, UIDL, LIST and QUIT (never DELE, RETR or TOP).
 *
 * Blocking, one session per call; no state kept between calls.
 * Thread-safe as long as each thread uses its own options.
 * Depends on net and base. */
#ifndef IMAPFERRY_POP3_H
#define IMAPFERRY_POP3_H

#include "base.h"
#include "net.h"

/* RFC 1939 allows 1..70 characters in 0x21..0x7E, but real servers send
 * longer ones (Dovecot's %f with a long host name): accept up to 255. */
#define POP3_UIDL_MAX_LEN 255
/* Longest response line accepted (without CRLF). RFC 1939 allows 512
 * octets for status lines; real servers send longer -ERR texts, so we are
 * generous but bounded. */
#define POP3_LINE_MAX 4096
/* Default cap on the number of messages (pop3_options.max_entries = 0). */
#define POP3_DEFAULT_MAX_ENTRIES 10000000

struct pop3_options {
	const char *host;
	const char *port;             /* NULL: 110, or 995 with implicit_tls */
	bool implicit_tls;            /* pop3s: TLS from the first byte */
	bool starttls;                /* STLS when the server offers it (CAPA) */
	/* Never send credentials in plain text: with !implicit_tls, STLS is
	 * tried even when starttls is false, and the session fails when the
	 * server does not offer or refuses it. */
	bool require_tls;
	struct net_options net;
	const char *user;             /* USER, or SASL authcid */
	const char *password;         /* never logged */
	const char *authzid;          /* set: AUTH PLAIN with this authzid */
	size_t max_entries;           /* 0: POP3_DEFAULT_MAX_ENTRIES */
};

struct pop3_entry {
	uint32_t msgno;               /* POP3 message number, 1-based */
	uint64_t size;                /* LIST size (octets, CRLF line ends) */
	char *uidl;                   /* owned; 1..70 bytes of 0x21..0x7E */
};

/* Connects to o->host, reads the +OK greeting, asks CAPA, does STLS as
 * configured, logs in (USER/PASS, or AUTH PLAIN with base64 of
 * "authzid\0user\0password" when o->authzid is set), then sends UIDL and
 * LIST (pipelined when the server announces PIPELINING, else one after
 * the other) and returns, in message-number order, each message's UIDL
 * and size; finally QUIT.
 *
 * Every reply is checked: the UIDL and LIST listings must name the same
 * message numbers in strictly ascending order, each UIDL must be 1..70
 * bytes of 0x21..0x7E, lines are at most POP3_LINE_MAX bytes, and at most
 * max_entries messages are accepted. -ERR replies are reported with the
 * server's text (non-printable bytes shown as '?').
 *
 * o and its strings are only borrowed during the call. Returns 0 with
 * *entries_r (caller owns; free with pop3_entries_free(); NULL when the
 * mailbox is empty) and *count_r set, or -1 with *error_r (valid until
 * the next err_set() in this thread) and *entries_r = NULL, *count_r = 0.
 * A refused login reads "HOST:PORT: login as USER refused: -ERR ...". */
int pop3_fetch_uidls(const struct pop3_options *o, struct pop3_entry **entries_r,
                     size_t *count_r, const char **error_r) ATTR_WARN_UNUSED;

/* Frees count entries and the array, sets *entries to NULL. NULL is fine. */
void pop3_entries_free(struct pop3_entry **entries, size_t count);

/* Pairs POP3 messages with IMAP INBOX messages.
 *
 * Assumption (documented, checked as far as possible): the POP3 server
 * numbers the INBOX messages in IMAP UID order, i.e. POP3 message i is the
 * i-th INBOX message in IMAP sequence order. That holds for Dovecot's
 * defaults (pop3 shows every INBOX message, \Deleted ones included,
 * ordered by UID) and for Cyrus and Courier. It does not hold when the
 * server has a POP3-specific order (Dovecot's dovecot-uidlist "O<n>"
 * fields, pop3_deleted_flag hiding messages) or when the mailbox changed
 * between the POP3 and the IMAP listing.
 *
 * Checks: n == m; e[i].msgno == i + 1; imap_uids strictly ascending; and
 * e[i].size == imap_sizes[i] (POP3 LIST size against IMAP RFC822.SIZE;
 * Dovecot and Cyrus report the same CRLF size for both). Equal sizes make
 * a wrong pairing unlikely but cannot rule out swapped messages of the
 * same size. imap_sizes may be NULL to skip the size check.
 *
 * Returns 0 with *uids_r (copy of imap_uids) and *uidls_r (copies of the
 * UIDLs, uidls[i] belongs to uids[i]) and *count_r = n; the caller frees
 * both with pop3_matched_free(). Returns -1 with *error_r describing the
 * first mismatch, outputs NULL/0. */
int pop3_match_uids(const struct pop3_entry *e, size_t n, const uint32_t *imap_uids,
                    const uint64_t *imap_sizes, size_t m, uint32_t **uids_r,
                    char ***uidls_r, size_t *count_r,
                    const char **error_r) ATTR_WARN_UNUSED;

/* Frees the results of pop3_match_uids() and sets both pointers to NULL. */
void pop3_matched_free(uint32_t **uids, char ***uidls, size_t count);

/* ---- URLs ---- */

/* Storage for the strings a parsed URL points to. */
struct pop3_url {
	char *host, *port, *user;
	char *url;                    /* as given, for messages (no password) */
};

/* True when url starts with "pop3://" or "pop3s://". */
bool pop3_url_is(const char *url);

/* Parses "pop3://USER@HOST[:PORT][/][?OPTIONS]" or "pop3s://..." into o:
 * sets host, port (NULL when absent), user, implicit_tls, starttls and
 * require_tls, and leaves every other field of o alone (net, password,
 * authzid, max_entries). The strings live in u (zeroed first) until
 * pop3_url_free(u).
 *   pop3://   STLS, required: the session fails before USER/AUTH when
 *             the server does not offer it (like imap://);
 *   pop3s://  implicit TLS.
 * OPTIONS, '&'-separated (as in imap:// URLs):
 *   tls=none | starttls=no    plain text, no STLS (pop3:// only);
 *   starttls=require          the default, accepted (pop3:// only).
 * USER may be "alice*master" and may hold %XX escapes (alice%40example.org);
 * ";AUTH=*" and ";AUTH=+USER" are accepted and mean USER/PASS (AUTH PLAIN
 * is chosen by setting o->authzid). Passwords in the URL are refused.
 * Returns 0, or -1 with *error_r (u is then freed). */
int pop3_url_parse(const char *url, struct pop3_options *o, struct pop3_url *u,
                   const char **error_r) ATTR_WARN_UNUSED;

/* Frees the strings; u is zeroed. */
void pop3_url_free(struct pop3_url *u);

#endif
