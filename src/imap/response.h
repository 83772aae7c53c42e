/* response.h: typed IMAP responses, as produced by the parser.
 * All pointers inside a response are owned by the parser and valid until
 * the next imap_parser_feed/reset/free on that parser. Strings are
 * NUL-terminated (a literal may also contain NUL: use len). */
#ifndef IMAPFERRY_IMAP_RESPONSE_H
#define IMAPFERRY_IMAP_RESPONSE_H

#include "base.h"

#include <time.h>

/* ---- generic values (the tokens as a tree) ---- */
enum imap_value_type {
	IMAP_VALUE_ATOM,      /* includes numbers, flags (\Seen), BODY[...] */
	IMAP_VALUE_STRING,    /* quoted string or in-memory literal */
	IMAP_VALUE_NIL,
	IMAP_VALUE_LIST,
	IMAP_VALUE_STREAMED,  /* literal handed to the sink */
};

struct imap_value {
	enum imap_value_type type;
	bool is_literal;          /* STRING/STREAMED came as {N}/~{N} */
	bool is_literal8;         /* ~{N} */
	const char *str;          /* ATOM, STRING: NUL-terminated */
	size_t len;               /* ATOM, STRING: byte length */
	const struct imap_value *list; /* LIST: count children */
	size_t count;
	void *stream;             /* STREAMED: the sink's handle */
	uint64_t stream_size;     /* STREAMED: literal size */
};

/* ---- response codes: [CODE args] in resp-text ---- */
enum imap_code_type {
	IMAP_CODE_NONE,
	IMAP_CODE_ALERT,
	IMAP_CODE_CAPABILITY,     /* capability list in .args */
	IMAP_CODE_UIDVALIDITY,    /* .num */
	IMAP_CODE_UIDNEXT,        /* .num */
	IMAP_CODE_UNSEEN,         /* .num */
	IMAP_CODE_HIGHESTMODSEQ,  /* .num */
	IMAP_CODE_NOMODSEQ,
	IMAP_CODE_PERMANENTFLAGS, /* flags in .args (list values) */
	IMAP_CODE_READ_ONLY,
	IMAP_CODE_READ_WRITE,
	IMAP_CODE_TRYCREATE,
	IMAP_CODE_APPENDUID,      /* .uidvalidity, .set1 = uid set */
	IMAP_CODE_COPYUID,        /* .uidvalidity, .set1 = src, .set2 = dst */
	IMAP_CODE_OVERQUOTA,
	IMAP_CODE_LIMIT,
	IMAP_CODE_CLOSED,
	/* RFC 5530 */
	IMAP_CODE_ALREADYEXISTS,
	IMAP_CODE_NONEXISTENT,
	IMAP_CODE_UNAVAILABLE,
	IMAP_CODE_INUSE,
	IMAP_CODE_SERVERBUG,
	IMAP_CODE_CLIENTBUG,
	IMAP_CODE_CANNOT,
	IMAP_CODE_NOPERM,
	IMAP_CODE_CORRUPTION,
	IMAP_CODE_EXPUNGEISSUED,
	IMAP_CODE_AUTHENTICATIONFAILED,
	IMAP_CODE_AUTHORIZATIONFAILED,
	IMAP_CODE_EXPIRED,
	IMAP_CODE_PRIVACYREQUIRED,
	IMAP_CODE_CONTACTADMIN,
	IMAP_CODE_OTHER,          /* .name is the atom; .args raw tokens */
};

struct imap_resp_code {
	enum imap_code_type type;
	const char *name;         /* the code atom as sent, e.g. "UIDNEXT";
	                             "" for NONE. A known code whose args do
	                             not fit (e.g. [UIDNEXT abc]) is OTHER;
	                             args that do not tokenize are one ATOM
	                             holding the raw text */
	uint64_t num;
	uint32_t uidvalidity;
	const char *set1, *set2;  /* sequence sets as text, e.g. "4:7,9" */
	const struct imap_value *args; /* tokens after the name, up to ']' */
	size_t arg_count;
};

/* ---- typed untagged data ---- */
enum imap_untagged_type {
	IMAP_UNTAGGED_STATE,      /* * OK/NO/BAD/BYE/PREAUTH resp-text */
	IMAP_UNTAGGED_CAPABILITY,
	IMAP_UNTAGGED_LIST,
	IMAP_UNTAGGED_LSUB,
	IMAP_UNTAGGED_STATUS,
	IMAP_UNTAGGED_NAMESPACE,
	IMAP_UNTAGGED_SEARCH,
	IMAP_UNTAGGED_ESEARCH,
	IMAP_UNTAGGED_FETCH,
	IMAP_UNTAGGED_EXISTS,     /* .number */
	IMAP_UNTAGGED_RECENT,     /* .number */
	IMAP_UNTAGGED_EXPUNGE,    /* .number */
	IMAP_UNTAGGED_FLAGS,      /* .flags */
	IMAP_UNTAGGED_VANISHED,   /* .vanished */
	IMAP_UNTAGGED_ENABLED,    /* .capability (the enabled names) */
	IMAP_UNTAGGED_ID,         /* .raw */
	IMAP_UNTAGGED_OTHER,      /* .raw: all tokens after '*' */
};

enum imap_status {
	IMAP_STATUS_NONE,
	IMAP_STATUS_OK,
	IMAP_STATUS_NO,
	IMAP_STATUS_BAD,
	IMAP_STATUS_BYE,
	IMAP_STATUS_PREAUTH,
};

/* A list of strings (capabilities, flags, attributes). */
struct imap_strlist {
	const char *const *items;
	size_t count;
};

/* LIST/LSUB mailbox attributes (RFC 3501, 3348, 5258, 6154). */
enum imap_mbox_attr {
	IMAP_MBOX_NOINFERIORS   = 1 << 0,
	IMAP_MBOX_NOSELECT      = 1 << 1,
	IMAP_MBOX_MARKED        = 1 << 2,
	IMAP_MBOX_UNMARKED      = 1 << 3,
	IMAP_MBOX_HASCHILDREN   = 1 << 4,
	IMAP_MBOX_HASNOCHILDREN = 1 << 5,
	IMAP_MBOX_NONEXISTENT   = 1 << 6,
	IMAP_MBOX_SUBSCRIBED    = 1 << 7,
	IMAP_MBOX_REMOTE        = 1 << 8,
	/* special use (RFC 6154, and XLIST's \Inbox \AllMail \Spam \Starred) */
	IMAP_MBOX_ALL           = 1 << 9,
	IMAP_MBOX_ARCHIVE       = 1 << 10,
	IMAP_MBOX_DRAFTS        = 1 << 11,
	IMAP_MBOX_FLAGGED       = 1 << 12,
	IMAP_MBOX_JUNK          = 1 << 13,
	IMAP_MBOX_SENT          = 1 << 14,
	IMAP_MBOX_TRASH         = 1 << 15,
	IMAP_MBOX_INBOX         = 1 << 16, /* XLIST \Inbox */
};
#define IMAP_MBOX_SPECIAL_USE_MASK \
	(IMAP_MBOX_ALL | IMAP_MBOX_ARCHIVE | IMAP_MBOX_DRAFTS | IMAP_MBOX_FLAGGED | \
	 IMAP_MBOX_JUNK | IMAP_MBOX_SENT | IMAP_MBOX_TRASH)

struct imap_list {
	unsigned attrs;           /* enum imap_mbox_attr bits */
	struct imap_strlist attr_names; /* every attribute as sent */
	char delimiter;           /* '\0' for NIL */
	const char *name;         /* as sent (modified UTF-7), quotes removed */
	size_t name_len;          /* a literal name may contain NUL: check it */
};

enum imap_status_item {
	IMAP_STATUS_MESSAGES      = 1 << 0,
	IMAP_STATUS_RECENT        = 1 << 1,
	IMAP_STATUS_UIDNEXT       = 1 << 2,
	IMAP_STATUS_UIDVALIDITY   = 1 << 3,
	IMAP_STATUS_UNSEEN        = 1 << 4,
	IMAP_STATUS_HIGHESTMODSEQ = 1 << 5,
	IMAP_STATUS_SIZE          = 1 << 6,
	IMAP_STATUS_DELETED       = 1 << 7,
};

struct imap_status_data {
	const char *mailbox;
	size_t mailbox_len;
	unsigned have;            /* enum imap_status_item bits present */
	uint32_t messages, recent, uidnext, uidvalidity, unseen, deleted;
	uint64_t highestmodseq, size;
};

struct imap_ns_entry {
	const char *prefix;
	char delimiter;           /* '\0' for NIL */
};

struct imap_namespace {
	/* personal, other users, shared; each may be empty (NIL) */
	const struct imap_ns_entry *ns[3];
	size_t count[3];
};

/* SEARCH and ESEARCH (RFC 4731). For ESEARCH, ALL is expanded into nums
 * (bounded by max_tokens). */
struct imap_search_data {
	const uint32_t *nums;
	size_t count;
	bool uid;                 /* ESEARCH ... UID */
	const char *tag;          /* ESEARCH (TAG "x"), or NULL */
	bool have_min, have_max, have_count, have_modseq;
	uint32_t min, max, result_count;
	uint64_t modseq;
	const char *all;          /* ESEARCH ALL as text, or NULL */
};

enum imap_fetch_item {
	IMAP_FETCH_UID          = 1 << 0,
	IMAP_FETCH_FLAGS        = 1 << 1,
	IMAP_FETCH_INTERNALDATE = 1 << 2,
	IMAP_FETCH_RFC822_SIZE  = 1 << 3,
	IMAP_FETCH_MODSEQ       = 1 << 4,
	IMAP_FETCH_BODY         = 1 << 5, /* at least one body section */
};

#define IMAP_FETCH_MAX_SECTIONS 4

struct imap_fetch_body {
	const char *section;      /* "" for BODY[], "HEADER.FIELDS (MESSAGE-ID)" ...
	                             (case as sent); "RFC822", "RFC822.HEADER",
	                             "RFC822.TEXT" for those items */
	uint32_t origin;          /* <origin> of a partial fetch, else 0 */
	bool binary;              /* BINARY[...] */
	const struct imap_value *value; /* STRING (quoted or in-memory
	                             literal: use len), NIL or STREAMED */
};

struct imap_fetch {
	uint32_t seq;
	unsigned have;            /* enum imap_fetch_item bits */
	uint32_t uid;
	struct imap_strlist flags;
	time_t internaldate;      /* UTC epoch seconds */
	int internaldate_tz;      /* offset east of UTC in minutes */
	uint64_t rfc822_size;
	uint64_t modseq;
	struct imap_fetch_body bodies[IMAP_FETCH_MAX_SECTIONS];
	size_t body_count;
};

struct imap_response {
	enum { IMAP_RESP_UNTAGGED, IMAP_RESP_TAGGED, IMAP_RESP_CONTINUATION } kind;
	const char *tag;          /* TAGGED only */
	/* TAGGED and IMAP_UNTAGGED_STATE: status, code, text */
	enum imap_status status;
	struct imap_resp_code code;
	const char *text;         /* human-readable text ("" if none); also
	                             the continuation's text */
	enum imap_untagged_type type; /* UNTAGGED; STATE for TAGGED */
	union {
		uint32_t number;
		struct imap_strlist capability; /* CAPABILITY, ENABLED */
		struct imap_strlist flags;      /* FLAGS */
		struct imap_list list;          /* LIST, LSUB */
		struct imap_status_data status; /* STATUS */
		struct imap_namespace ns;       /* NAMESPACE */
		struct imap_search_data search; /* SEARCH, ESEARCH */
		struct imap_fetch fetch;        /* FETCH */
		struct {
			bool earlier;
			const char *uids; /* sequence set text */
		} vanished;
	} u;
	/* every token after "* " (untagged) for types the caller wants to look
	 * at itself (ID, OTHER) or debugging; empty for status responses
	 * (their only tokens are the code's args) and continuations */
	const struct imap_value *raw;
	size_t raw_count;
};

/* Returns true (and the value) for an atom that is a number within max. */
bool imap_value_number(const struct imap_value *v, uint64_t max, uint64_t *num_r);
/* True if v is an ATOM or STRING equal (ASCII case-insensitively) to s. */
bool imap_value_ieq(const struct imap_value *v, const char *s);
/* Detaches a STREAMED handle from the response so the parser won't
 * release() it: the caller now owns it. Returns the handle. */
void *imap_value_steal_stream(const struct imap_value *v);
/* True if the capability (case-insensitive) is in the list. For "AUTH=X"
 * and "COMPRESS=X" pass the whole token. */
bool imap_strlist_has(const struct imap_strlist *l, const char *item);

/* ---- helpers: sequence sets and dates ---- */

/* Calls cb for each number of a sequence set ("1:3,7,9:8"), ascending
 * within each range. '*' is refused. Stops and returns -1 when cb returns
 * -1, when the set is malformed, or when it holds more than max numbers.
 * Returns 0 otherwise. */
int imap_seqset_foreach(const char *set, size_t max,
                        int (*cb)(void *ctx, uint32_t num), void *ctx);

/* Parses an IMAP date-time "17-Jul-1996 02:44:25 -0700" (quotes removed).
 * Returns false when malformed. */
bool imap_parse_datetime(const char *s, time_t *utc_r, int *tz_minutes_r);
/* Formats for APPEND: "17-Jul-1996 09:44:25 +0000" (always UTC) into
 * out (at least 27 bytes). */
void imap_format_datetime(time_t utc, char out[static 27]);

/* The error kind a tagged NO/BAD's response code implies (RFC 5530):
 * OVERQUOTA: ERRK_QUOTA; UNAVAILABLE, INUSE: ERRK_SESSION (try again later);
 * AUTHENTICATIONFAILED, AUTHORIZATIONFAILED, EXPIRED, PRIVACYREQUIRED,
 * CONTACTADMIN: ERRK_AUTH; LIMIT: ERRK_MESSAGE; NONEXISTENT, TRYCREATE,
 * NOPERM: ERRK_FOLDER; any other code or none: dflt. Never the text. */
enum err_kind imap_code_err_kind(enum imap_code_type code, enum err_kind dflt);

#endif
