/* msgsum.h: per-message summaries of a selected folder, fetched in one
 * pipelined pass: UID, flags, INTERNALDATE, RFC822.SIZE, a fingerprint
 * (SHA-256 over the Message-ID/Date/From/To/Subject header fields; size and
 * INTERNALDATE are compared beside it, see msgsum_fpindex_match()) and, on request, the SHA-256 of the whole body (streamed,
 * never held in memory). Used to find copies without state (dedupe) and
 * by verify. */
#ifndef IMAPFERRY_SYNC_MSGSUM_H
#define IMAPFERRY_SYNC_MSGSUM_H

#include "client.h"

struct msgsum {
	uint32_t uid;
	char *flags;              /* canonical, owned */
	int64_t internaldate;
	uint64_t size;
	char *message_id;         /* value of Message-ID, owned, or NULL */
	unsigned char fp[32];     /* fingerprint */
	unsigned char body_sha[32];
	bool have_fp, have_body;
};

struct msgsum_list {
	struct msgsum *items;     /* sorted by uid */
	size_t count, alloc;
};

enum msgsum_what {
	MSGSUM_FLAGS = 1 << 0,
	MSGSUM_META  = 1 << 1,    /* INTERNALDATE, RFC822.SIZE */
	MSGSUM_FP    = 1 << 2,    /* fingerprint (implies META) */
	MSGSUM_BODY  = 1 << 3,    /* SHA-256 of BODY.PEEK[] */
};

/* Fetches summaries of uidset ("1:*" or "4,7:9") in the selected folder,
 * appending to list (sorted by uid afterwards). Returns 0 or -1 with
 * *error_r (connection failure; a failed FETCH is also -1). */
int msgsum_fetch(struct imap_client *client, const char *uidset,
                 unsigned what, struct msgsum_list *list,
                 const char **error_r) ATTR_WARN_UNUSED;
/* The same for the messages of uidset whose MODSEQ is above changedsince
 * (CONDSTORE "CHANGEDSINCE"): new and changed messages only. */
int msgsum_fetch_changed(struct imap_client *client, const char *uidset,
                         uint64_t changedsince, unsigned what,
                         struct msgsum_list *list,
                         const char **error_r) ATTR_WARN_UNUSED;
/* The UIDs lo..hi of the selected folder (UID SEARCH ALL or UID lo:hi, with
 * ESEARCH's compact reply when offered), ascending, in a new array. */
int msgsum_uids_range(struct imap_client *client, uint32_t lo, uint32_t hi,
                      uint32_t **uids_r,
                    size_t *count_r, const char **error_r) ATTR_WARN_UNUSED;
void msgsum_list_free(struct msgsum_list *list);
/* A new zeroed entry at the end of list (which grows as needed). */
struct msgsum *msgsum_list_add(struct msgsum_list *list);
/* Binary search by uid; NULL if absent. */
struct msgsum *msgsum_find(const struct msgsum_list *list, uint32_t uid);
/* An index of a list by fingerprint, to pair copies in O(n log n). */
struct msgsum_fpindex {
	struct msgsum_fpentry *entries;   /* sorted by fingerprint */
	size_t count;
	struct msgsum_list *list;
	bool *taken;                      /* by position in list */
};
/* Indexes the messages of list that have a fingerprint. list must not
 * change while the index is used. */
void msgsum_fpindex_init(struct msgsum_fpindex *ix, struct msgsum_list *list);
/* Takes the copy of source message s among the indexed ones: the same
 * fingerprint (header fields), and the same RFC822.SIZE and INTERNALDATE
 * or what a target's normalisation makes of them (a final bare CR
 * dropped, a final CRLF added, a future INTERNALDATE replaced by the
 * APPEND time, before now). Exact matches first; NULL if none. */
struct msgsum *msgsum_fpindex_match(struct msgsum_fpindex *ix,
                                    const struct msgsum *s, int64_t now);
bool msgsum_fpindex_taken(const struct msgsum_fpindex *ix, const struct msgsum *m);
/* Marks a message of the indexed list as taken (paired by other means). */
void msgsum_fpindex_mark(struct msgsum_fpindex *ix, const struct msgsum *m);
void msgsum_fpindex_free(struct msgsum_fpindex *ix);

/* Lower-case hex of 32 bytes into out (65 bytes). */
void msgsum_hex(const unsigned char d[32], char out[static 65]);

/* Computes the fingerprint from a header-fields literal. */
void msgsum_fingerprint(const char *hdr, size_t len, uint64_t size,
                        int64_t internaldate, unsigned char fp_r[32],
                        char **message_id_r);

#endif
