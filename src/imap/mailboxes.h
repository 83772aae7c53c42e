/* mailboxes.h: listing an account's folders with their counts (LIST,
 * NAMESPACE, pipelined STATUS; sizes from STATUS=SIZE or summed
 * RFC822.SIZE). Protocol-level inventory used by ls, copy and plan. */
#ifndef IMAPFERRY_IMAP_MAILBOXES_H
#define IMAPFERRY_IMAP_MAILBOXES_H

#include "client.h"

struct imap_mailbox_info {
	char *name;               /* on the wire (modified UTF-7), owned */
	size_t name_len;          /* may differ from strlen if it holds NUL */
	char delimiter;
	unsigned attrs;           /* enum imap_mbox_attr */
	char **attr_names;        /* NULL-terminated, owned */
	bool selectable;
	bool subscribed;
	bool have_status;
	uint32_t messages, uidvalidity, uidnext;
	uint64_t highestmodseq;
	bool have_size;
	uint64_t size;
	const char *size_source;  /* "status", "fetch" or NULL */
};

struct imap_ns_info {
	char *prefix;
	char delimiter;
};

struct imap_account_info {
	struct imap_mailbox_info *boxes;
	size_t count;
	struct imap_ns_info *ns[3];  /* personal, other, shared */
	size_t ns_count[3];
	char separator;              /* of the personal namespace / INBOX */
};

enum imap_inventory_flags {
	IMAP_INV_STATUS = 1 << 0,    /* MESSAGES UIDVALIDITY UIDNEXT */
	IMAP_INV_SIZE   = 1 << 1,    /* byte totals (STATUS=SIZE or FETCH) */
	IMAP_INV_SUBSCRIBED = 1 << 2,/* LSUB */
};

/* Lists every folder of the logged-in account. Returns 0 with *info
 * filled (free with imap_account_info_free), or -1 with *error_r. */
int imap_account_inventory(struct imap_client *client, unsigned flags,
                           struct imap_account_info *info,
                           const char **error_r) ATTR_WARN_UNUSED;
void imap_account_info_free(struct imap_account_info *info);

/* Text of a special-use attribute bit set ("\\Sent"), or NULL. */
const char *imap_special_use_name(unsigned attrs);

#endif
