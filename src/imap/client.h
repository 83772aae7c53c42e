/* client.h: one IMAP client session over a net_conn.
 *
 * Commands are built with imap_cmd_*() and submitted to a user-space queue
 * (pending); the session sends them while the pipeline has room
 * (in_flight < pipeline_depth), no synchronizing literal waits for "+",
 * and output is below the high-water mark. Literals use LITERAL+ (or
 * LITERAL- for <= 4096 bytes) when offered, else wait for continuation.
 * Every submitted command gets exactly one completion callback, also when
 * the connection dies (then tagged == NULL and error is set).
 *
 * Untagged responses go to the untagged callback of the oldest in-flight
 * command that has one, else to the session's default callback. The
 * session itself tracks CAPABILITY and the selected mailbox's state.
 *
 * Blocking model: imap_client_run*() send and read until the condition
 * holds or the connection fails. One thread per session.
 * Depends on net and base. */
#ifndef IMAPFERRY_IMAP_CLIENT_H
#define IMAPFERRY_IMAP_CLIENT_H

#include "base.h"
#include "buf.h"
#include "net.h"
#include "parser.h"
#include "response.h"

struct imap_client;
struct imap_cmd;

/* How an imap:// (not imaps://) session gets TLS. There is no
 * opportunistic mode: it would send the password in clear to a server (or
 * a man in the middle) that does not announce STARTTLS. */
enum imap_starttls {
	IMAP_STARTTLS_REQUIRE,  /* the default (0): STARTTLS, and fail before
	                         * any credential when it is not offered or
	                         * refused, or the greeting is PREAUTH */
	IMAP_STARTTLS_NEVER,    /* ?tls=none: plain text, asked for explicitly */
};

enum imap_auth_mech {
	IMAP_AUTH_AUTO,         /* PLAIN when offered (needed with authzid), else LOGIN */
	IMAP_AUTH_LOGIN,
	IMAP_AUTH_PLAIN,
	IMAP_AUTH_XOAUTH2,      /* password holds the OAuth2 access token */
};

struct imap_client_options {
	const char *host;
	const char *port;             /* NULL: 143, or 993 with implicit_tls */
	bool implicit_tls;
	enum imap_starttls starttls;
	struct net_options net;
	const char *user;             /* login name / SASL authcid */
	const char *password;         /* never logged */
	const char *authzid;          /* SASL PLAIN authorization identity or NULL */
	enum imap_auth_mech mech;
	bool compress;                /* COMPRESS=DEFLATE when offered */
	unsigned pipeline_depth;      /* 0: 64 */
	const struct imap_parser_limits *limits; /* NULL: defaults */
	const char *label;            /* for log lines, e.g. "src" */
};

/* Completion of one command. tagged is NULL when the connection failed
 * before the tagged reply; error then says why. tagged and error are valid
 * only during the call. */
typedef void imap_cmd_done_cb(void *ctx, const struct imap_response *tagged,
                              const char *error);
typedef void imap_untagged_cb(void *ctx, const struct imap_response *resp);

/* The selected mailbox as the server reported it (SELECT/EXAMINE). */
struct imap_mailbox_state {
	bool selected;
	bool read_only;
	uint32_t exists;
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint64_t highestmodseq;
	bool nomodseq;
	char **permanentflags;        /* NULL-terminated; NULL if not sent */
	char **flags;                 /* FLAGS response */
};

/* Connects, reads the greeting, does STARTTLS/COMPRESS as configured,
 * authenticates and learns the capabilities. opts and its strings are
 * copied (the password is wiped from memory when no longer needed).
 * Returns 0 with *client_r, or -1 with *error_r. *auth_failed_r (may be
 * NULL) tells whether the failure was a refused login (run scope: do not
 * retry) rather than a network problem (session scope). */
int imap_client_connect(const struct imap_client_options *opts,
                        struct imap_client **client_r, bool *auth_failed_r,
                        const char **error_r) ATTR_WARN_UNUSED;
/* Sends LOGOUT (best effort, bounded) and frees. *client becomes NULL. */
void imap_client_logout(struct imap_client **client);
/* Frees without LOGOUT. Pending commands complete with an error. */
void imap_client_free(struct imap_client **client);

bool imap_client_has_cap(const struct imap_client *client, const char *cap);
const struct imap_strlist *imap_client_caps(const struct imap_client *client);
const char *imap_client_greeting(const struct imap_client *client);
struct net_conn *imap_client_conn(struct imap_client *client);
/* True once the connection failed or the server sent BYE. */
bool imap_client_is_dead(const struct imap_client *client);
const struct imap_mailbox_state *imap_client_mailbox(const struct imap_client *client);
void imap_client_set_untagged(struct imap_client *client, imap_untagged_cb *cb,
                              void *ctx);
/* Literals above limits.max_literal_mem go to this sink (NULL: refused). */
void imap_client_set_literal_sink(struct imap_client *client,
                                  const struct imap_literal_sink *sink);
unsigned imap_client_in_flight(const struct imap_client *client);
unsigned imap_client_queued(const struct imap_client *client);

/* The first failure of the commands submitted with imap_cmd_wait_done()
 * and &wait: the connection's error or the server's tagged NO/BAD text
 * (owned; the caller frees it), or NULL when all succeeded. */
struct imap_cmd_wait {
	char *error;
	bool lost;                /* the session died (no tagged reply) */
	enum imap_code_type code; /* the failed reply's response code */
};
void imap_cmd_wait_done(void *ctx, const struct imap_response *tagged,
                        const char *error);

/* ---- building commands ---- */
struct imap_cmd *imap_cmd_new(struct imap_client *client);
/* Appends raw text (atoms, spaces, parentheses) verbatim. */
void imap_cmd_add(struct imap_cmd *cmd, const char *text);
void imap_cmd_addf(struct imap_cmd *cmd, const char *fmt, ...) ATTR_PRINTF(2, 3);
/* Appends an astring: atom if safe, quoted if possible, else a literal. */
void imap_cmd_add_astring(struct imap_cmd *cmd, const char *s, size_t len);
/* Appends a literal with the given bytes (copied). */
void imap_cmd_add_literal(struct imap_cmd *cmd, const void *data, size_t len);
/* Appends a literal and takes ownership of data (freed after sending). */
void imap_cmd_add_literal_take(struct imap_cmd *cmd, char *data, size_t len);
/* Appends a literal streamed from fd (size bytes from its current offset);
 * takes ownership of fd (closed after sending or on failure). */
void imap_cmd_add_literal_fd(struct imap_cmd *cmd, int fd, uint64_t size);
/* Marks the command as carrying a secret: it is never logged. */
void imap_cmd_set_sensitive(struct imap_cmd *cmd);
void imap_cmd_set_untagged(struct imap_cmd *cmd, imap_untagged_cb *cb, void *ctx);
/* Queues the command; ownership passes to the client. cb may be NULL. */
void imap_cmd_submit(struct imap_cmd *cmd, imap_cmd_done_cb *cb, void *ctx);
/* Bytes of literal data of a command not yet sent, for back-pressure. */
uint64_t imap_client_output_backlog(const struct imap_client *client);

/* ---- driving ---- */
/* Sends and reads until no command is pending or in flight. Returns 0, or
 * -1 with *error_r when the connection failed (all commands have then been
 * completed with the error). */
int imap_client_run(struct imap_client *client, const char **error_r) ATTR_WARN_UNUSED;
/* Same, but returns as soon as at most max_outstanding commands are
 * pending or in flight (for feeding a pipeline from a producer). */
int imap_client_run_until_below(struct imap_client *client,
                                unsigned max_outstanding,
                                const char **error_r) ATTR_WARN_UNUSED;

/* ---- common commands (blocking: submit + run) ----
 * Each returns 0 on tagged OK, -1 otherwise with *error_r (which includes
 * the server's text for NO/BAD). */
int imap_client_simple(struct imap_client *client, const char *command,
                       const char **error_r) ATTR_WARN_UNUSED;
/* ENABLE (RFC 5161) the given space-separated extensions that the server
 * advertises (others are skipped). Returns 0 (also when nothing was left to
 * enable) or -1 with *error_r. */
int imap_client_enable(struct imap_client *client, const char *extensions,
                       const char **error_r) ATTR_WARN_UNUSED;

/* SELECT (read_only=false) or EXAMINE a mailbox (name in mUTF-7 as on the
 * wire). With condstore, adds (CONDSTORE) when the server has it. */
int imap_client_select(struct imap_client *client, const char *mailbox,
                       bool read_only, const char **error_r) ATTR_WARN_UNUSED;

/* Quotes s for IMAP as a quoted string if possible; returns false when it
 * needs a literal (8-bit, CR, LF, NUL or long). */
bool imap_quote(struct buf *out, const char *s, size_t len);

#endif
