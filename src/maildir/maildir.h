/* maildir.h: Dovecot and Courier Maildir++ reader and writer.
 *
 * Writes a Maildir directly while keeping the source's UIDVALIDITY, UIDNEXT
 * and every message's UID (the "transparent cutover"), and reads one as a
 * migration source. Depends on base only: folder names arrive already in
 * modified UTF-7 (see maildir_folder_dirname()).
 *
 * Model (docs: /work/shared/docs/FORMATS.md sections 1 and 2):
 *   - A folder is opened once; its uidlist (dovecot-uidlist v3/v1 or
 *     courierimapuiddb), keywords file and cur/ + new/ are read.
 *   - The folder's lock (Dovecot: dovecot-uidlist.lock; Courier:
 *     tmp/courier.lock) is held only inside maildir_folder_commit(), never
 *     across the caller's network reads: a live server waits for that lock
 *     whenever it syncs (Dovecot gives up after ~2 minutes and breaks a
 *     lock unchanged for 2 minutes). Deliveries, flag changes and
 *     expunges take no lock (Dovecot renames and unlinks in cur/ without
 *     it too); exceptions: a flag change that needs a new Dovecot keyword
 *     letter on a published message takes it while it writes
 *     dovecot-keywords and renames, and maildir_unlisted_adopt()/_expunge()
 *     and maildir_folder_lock() take it until the next commit.
 *   - Deliveries are written to tmp/ (O_EXCL), checked, given their mtime
 *     (INTERNALDATE) and kept there, pending, invisible to the server.
 *     maildir_folder_commit(), once per batch: (fsync) fdatasyncs the
 *     batch's files, takes the lock, re-reads the uidlist and keywords if
 *     the server changed them since we read them, writes dovecot-keywords
 *     if the batch defined letters, renames every pending file into cur/
 *     under its final name, and adds their lines to the uidlist, then
 *     unlocks. If any step before the uidlist is written fails, the files
 *     already moved go back to tmp/.
 *   - UIDs of pending deliveries: maildir_deliver() refuses a UID below
 *     maildir_folder_min_uid(), the floor as of our last read of the
 *     uidlist. Without the lock the server may number new mail (or raise
 *     N) before our commit; the commit's re-read then drops every pending
 *     delivery whose UID is now below the floor the server left (unlinked
 *     from tmp/, never published) and fails with an error saying so; the
 *     others stay pending and the next commit publishes them. So a UID
 *     the server gave to another message is never written for ours.
 *   - Dovecot uidlist writes, as Dovecot itself does them: a commit that
 *     only adds lines appends them (one write, fdatasync with
 *     options.fsync) to the file we read, under the lock, keeping its
 *     header: readers take UIDNEXT = max(N, last UID + 1). The whole file
 *     is rewritten (temporary file + rename) only when it must change
 *     otherwise: a line on disk goes (expunge), the header changes (a new
 *     UIDVALIDITY, an N above the last UID + 1, as the copy sets once at
 *     the end of a folder), or the file cannot take an append (missing,
 *     version 1, lines out of order, or a torn last line). A folder filled
 *     in k commits thus costs O(N) uidlist bytes, not O(N * k). Courier
 *     takes the header's next UID for new mail (never max(UID) + 1) and
 *     reads a partial last line as a record: its courierimapuiddb is
 *     always rewritten whole.
 *   - A torn last line (no LF: an append cut short by a crash, or being
 *     written) is ignored by the reader, as Dovecot's reader ignores it;
 *     the file it names is unlisted; the next commit rewrites the file
 *     instead of appending after the fragment.
 *   - Crash safety: a crash (even SIGKILL inside a commit while a live
 *     server waits for our lock) leaves the old uidlist, or the new one,
 *     or the old one plus some whole appended lines and possibly a torn
 *     one; and our pending files in tmp/ (removed by the next
 *     maildir_folder_open() with create once our pid is gone). Only a
 *     crash inside commit, between the renames and the uidlist write,
 *     leaves files in cur/ without a line ("unlisted", see below), which
 *     the server numbers from UIDNEXT up. Never a line naming a UID the
 *     server already gave to another message.
 *   - Durability with options.fsync: deliver() starts each file's
 *     write-back (sync_file_range, no wait); commit fdatasyncs the batch's
 *     files (several calls in flight at once, so the file system commits
 *     its journal once for many files) before it takes the lock, then
 *     cur/ after the renames, then the appended uidlist (fdatasync) or
 *     the new uidlist and the folder directory. No syncfs(): on a shared
 *     spool it flushes every user's writes.
 *   - Dovecot keyword letters are defined in dovecot-keywords (written
 *     under the lock) before any file using the letter appears in cur/,
 *     because Dovecot would otherwise record an undefined letter as
 *     "unknown-N" for good. A delivery's new letters are chosen in memory
 *     and written by its commit; if the server defined keywords meanwhile,
 *     the commit gives pending deliveries their letters again. Courier
 *     keywords go to courierimapkeywords/:list at commit.
 *
 *   - Memory (issue 15): the folder keeps ~16 bytes a message (UID, flags
 *     id, where its name is, mtime), not its name: a listed message's base
 *     and ext fields are read back from its uidlist line by offset, in the
 *     uidlist file it parsed (kept open) or last wrote. The uidlist is read
 *     and written in 64 KiB pieces, never whole.
 *
 * A struct maildir_folder is used by one thread at a time (the accessors
 * too: they read the uidlist back through the folder's buffers). Error strings
 * (*error_r) are static or per-thread (err_set()) and stay valid until the
 * next failing call in the same thread.
 */
#ifndef IMAPFERRY_MAILDIR_H
#define IMAPFERRY_MAILDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base.h"

enum maildir_flavor {
	MAILDIR_DOVECOT,        /* dovecot-uidlist, dovecot-keywords, CRLF as given */
	MAILDIR_COURIER,        /* courierimapuiddb, courierimapkeywords/, LF storage */
};

/* Largest folder-name component and Maildir++ directory name accepted by
 * maildir_folder_dirname(). The directory name is one path component, so it
 * must fit NAME_MAX (255) on common file systems. */
#define MAILDIR_COMPONENT_MAX 200
#define MAILDIR_DIRNAME_MAX 255

/* maildir_msg.size before the RFC822.SIZE is known (see maildir_msg_size()). */
#define MAILDIR_SIZE_UNKNOWN UINT64_MAX

struct maildir_options {
	enum maildir_flavor flavor;
	uid_t owner;            /* (uid_t)-1: keep the creating process's */
	gid_t group;            /* (gid_t)-1: keep */
	mode_t file_mode;       /* messages, uidlist, keywords, locks: 0600 */
	mode_t dir_mode;        /* created directories: 0700 */
	bool fsync;             /* fdatasync files + directories at commit */
	bool fsync_fs;          /* with fsync: one syncfs() of the target's
	                           file system per commit instead of an
	                           fdatasync per file (--fsync=fs: for a
	                           file system only the copy writes to) */
	const char *hostname;   /* for unique file names; NULL: gethostname() */
	unsigned int lock_timeout_ms;   /* wait for a foreign lock: 30000 */
};

/* Fills *o with the defaults documented above (Dovecot flavor, fsync on). */
void maildir_options_init(struct maildir_options *o);

/* Builds the on-disk Maildir++ directory name of a folder from its logical
 * components, each already in modified UTF-7 (e.g. {"Archive", "2019"} ->
 * ".Archive.2019"). n == 0, or the single component "INBOX" (any case), is
 * INBOX, the root: "". A component that is empty, "." or "..", contains '/',
 * '.', a control character or a byte outside printable ASCII, is not valid
 * modified UTF-7, or is longer than MAILDIR_COMPONENT_MAX bytes, and a result
 * longer than MAILDIR_DIRNAME_MAX bytes, are refused: returns -1 with
 * *error_r naming the component, so the caller can rename the folder.
 * On success returns 0 and *dirname_r is a new string the caller frees. */
int maildir_folder_dirname(const char *const *components, size_t n,
                           char **dirname_r, const char **error_r);

/* Room in struct maildir_msg for the base name and the POP3 UIDL. */
#define MAILDIR_MSG_TEXT 1024

/* A message as known to the folder, filled into the caller's struct by
 * maildir_folder_msg(), _find() and _unlisted() (issue 15: the folder
 * keeps ~16 bytes per message, not this struct). base and pop3_uidl point
 * into the struct's own text[]; flags into the folder (valid until
 * close). A later call that changes the folder does not change a filled
 * struct: fill it again. */
struct maildir_msg {
	uint32_t uid;           /* 0 for an unlisted file */
	bool in_new;            /* the file is in new/ (Recent) */
	const char *base;       /* file name up to ':' (what the uidlist names) */
	const char *flags;      /* canonical IMAP flags: space-separated, sorted
	                           by strcmp, system flags as "\\Seen"; "" if none */
	int64_t mtime;          /* INTERNALDATE, epoch seconds */
	uint64_t file_size;     /* bytes on disk (the name's S=, else stat) */
	uint64_t size;          /* RFC822.SIZE (CRLF); MAILDIR_SIZE_UNKNOWN
	                           until maildir_msg_size() read the file */
	const char *pop3_uidl;  /* Dovecot "P" field, or NULL */
	char text[MAILDIR_MSG_TEXT];
};

struct maildir_folder;

/* Opens the folder root/dirname (dirname "" is INBOX, the root itself;
 * otherwise one component starting with '.', e.g. from
 * maildir_folder_dirname() or maildir_list_folders()).
 * create: mkdir -p root and root/dirname/{cur,new,tmp} with o->dir_mode and
 * o->owner/group, and an empty "maildirfolder" file in non-INBOX folders.
 * Reads the uidlist and keywords of o->flavor and scans cur/ and new/.
 * With create, also removes from tmp/ the files a killed writer of this
 * host left (our unique-name patterns, pid no longer running): pending
 * deliveries of a crashed run and temporary metadata files.
 * Never follows a symlink below root (the folder and its cur/new/tmp are
 * opened with O_NOFOLLOW relative to a root directory descriptor; message
 * files that are not regular files are ignored). o may be NULL (defaults).
 * Returns 0 and *f_r, or -1 with *error_r (missing folder without create,
 * symlink, unreadable or corrupt uidlist, I/O error). */
int maildir_folder_open(const char *root, const char *dirname,
                        const struct maildir_options *o, bool create,
                        struct maildir_folder **f_r, const char **error_r);

/* Creates the folder root/dirname (dirname "" is INBOX, the root) if it
 * does not exist, complete before a server can see it: cur/ new/ tmp/,
 * "maildirfolder" (not for INBOX) and a uidlist "V<uidvalidity> N1" are
 * built under a name servers ignore (root/tmp/.imapferry-new-<pid>-XXXXXX,
 * or root/imapferry-new-<pid>-XXXXXX in a root without tmp/; for the root,
 * ".<root name>.imapferry-new-<pid>-XXXXXX" beside it) and
 * renamed into place (RENAME_NOREPLACE). Staging directories a killed run
 * left (dead pid) are removed first. An existing folder is left as it is
 * (*created_r false); so is a race lost to another creator. A non-INBOX
 * folder whose root is missing gets a bare root directory (INBOX's
 * UIDVALIDITY is not known here): create INBOX first. (maildir-create.c)
 * Returns 0, or -1 with *error_r. */
int maildir_folder_create(const char *root, const char *dirname,
                          const struct maildir_options *o, uint32_t uidvalidity,
                          bool *created_r, const char **error_r);

/* Removes the staging directories of maildir_folder_create() that killed
 * runs (dead pid) left in and beside root. Errors are ignored. */
void maildir_create_cleanup(const char *root);

/* Gives an empty folder the server numbered itself (a uidlist of another
 * UIDVALIDITY, or none, no uidlist line and no file in cur/ or new/) the
 * uidlist "V<uidvalidity> N1", under the uidlist lock. Nothing was ever
 * numbered there that a client could have cached, so no UID is lost.
 * Returns 0, or -1 with *error_r (not empty, lock timeout, I/O). */
int maildir_folder_takeover(const char *root, const char *dirname,
                            const struct maildir_options *o, uint32_t uidvalidity,
                            const char **error_r);

/* Closes the folder and sets *f to NULL. Uncommitted changes are dropped:
 * pending deliveries are unlinked from tmp/ (they were never published),
 * flag renames, unlinks and adoptions' moves stay done. Releases the lock
 * if held. NULL-safe. */
void maildir_folder_close(struct maildir_folder **f);

/* UIDVALIDITY to be written (set_uids) or on disk; 0 if none yet. */
uint32_t maildir_folder_uidvalidity(const struct maildir_folder *f);
/* The N the next commit writes: max(set N, N on disk, highest UID + 1). */
uint32_t maildir_folder_uidnext(const struct maildir_folder *f);
/* The lowest UID maildir_deliver() accepts now: max(N on disk, highest UID
 * on disk + 1) as of our last read of the uidlist (open, or a commit's
 * re-read) -- the server may already have seen anything below -- and
 * above every UID delivered since. 1 for a folder without a uidlist. The
 * server may raise it meanwhile: commit checks again (see the model). */
uint32_t maildir_folder_min_uid(const struct maildir_folder *f);
/* The folder's directory name as passed to open (borrowed). */
const char *maildir_folder_name(const struct maildir_folder *f);

/* Sets the UIDVALIDITY and UIDNEXT written by the next commit. uidvalidity
 * must be non-zero and may differ from the one on disk only if there is no
 * uidlist on disk yet (else -1: "folder has UIDVALIDITY X"). uidnext 0 keeps
 * the current N (use that for all but the last commit of an initial fill
 * split into several commits: a committed N is a floor for later UIDs);
 * otherwise it must be >= maildir_folder_uidnext() before the call. */
int maildir_folder_set_uids(struct maildir_folder *f, uint32_t uidvalidity,
                            uint32_t uidnext, const char **error_r);

/* Messages with a UID whose file exists, sorted by UID. Pending deliveries
 * (still in tmp/, not yet committed) are included, so find() sees a UID as
 * soon as maildir_deliver() returned. The folder keeps a compact record
 * per message (UID, flags, where its name is: the uidlist line's offset,
 * read back from the uidlist file when asked); maildir_folder_msg() and
 * _find() fill *m from it (m may be NULL for _find(): only whether the
 * UID exists). They return false for i >= maildir_folder_count(), an
 * unknown UID, or (with a warning logged) when the uidlist cannot be read
 * back. maildir_folder_uid() is the UID of message i alone, without I/O. */
size_t maildir_folder_count(const struct maildir_folder *f);
uint32_t maildir_folder_uid(const struct maildir_folder *f, size_t i);
/* The flags of message i alone ("" for none, NULL for i >= count), without
 * I/O: valid until the folder changes. */
const char *maildir_folder_flags(const struct maildir_folder *f, size_t i);
bool maildir_folder_msg(struct maildir_folder *f, size_t i, struct maildir_msg *m);
bool maildir_folder_find(struct maildir_folder *f, uint32_t uid, struct maildir_msg *m);

/* Files in cur/ or new/ without a uidlist line (uid 0): mail delivered by an
 * MDA the server has not numbered yet, or our own deliveries from a run
 * that was killed inside a commit (or by an older version that renamed
 * files into cur/ at delivery). The server gives them UIDs >= UIDNEXT when
 * it next opens the folder. The caller may adopt or expunge them.
 * maildir_folder_unlisted() fills *m (false for i out of range). */
size_t maildir_folder_unlisted_count(const struct maildir_folder *f);
bool maildir_folder_unlisted(struct maildir_folder *f, size_t i, struct maildir_msg *m);
/* Gives unlisted file i the UID uid (same rules as maildir_deliver()) or
 * removes it. Both remove it from the unlisted list (indexes shift). */
int maildir_unlisted_adopt(struct maildir_folder *f, size_t i, uint32_t uid,
                           const char **error_r);
int maildir_unlisted_expunge(struct maildir_folder *f, size_t i, const char **error_r);

/* Delivers one message with the chosen UID, which must be >=
 * maildir_folder_min_uid() (so strictly ascending within a run). flags:
 * IMAP flags separated by spaces, optionally in parentheses ("\\Seen $Work");
 * \Recent is ignored. Data is stored as given for Dovecot (CRLF as served);
 * for Courier CRLF is stored as LF. The file is named
 * "<internaldate>.M<usec>P<pid>Q<n>.<host>,S=<file size>[,W=<RFC822.SIZE>]"
 * + ":2,<letters>" in cur/ (W= only for Dovecot, always exact), mtime =
 * internaldate; the file is written to tmp/ and stays there, pending, until
 * commit renames it into cur/ under that name (maildir_open_msg() and
 * maildir_msg_size() read it from tmp/ meanwhile; close without commit
 * unlinks it). Dovecot letters: D F R S T, then keyword letters a-z from
 * dovecot-keywords, in ASCII order. Keywords that cannot be stored (a 27th
 * Dovecot keyword, an invalid name, an unknown \System flag) do not fail the
 * delivery: they are listed, space-separated, in *dropped_r (a new string,
 * NULL if none; dropped_r may be NULL) so the caller can set them over IMAP.
 * (New letters are written to dovecot-keywords by the commit, under the
 * lock, before the file appears in cur/.) pop3_uidl (or NULL): stored as
 * the Dovecot "P" field (printable ASCII without space, at most 70 bytes).
 * Takes no lock. The uidlist line is written by commit. Returns -1 with
 * *error_r on a UID below min_uid, short read (deliver_fd), or I/O error;
 * nothing is left in tmp/ or cur/ then. */
int maildir_deliver(struct maildir_folder *f, uint32_t uid, const char *flags,
                    int64_t internaldate, const void *data, size_t len,
                    const char *pop3_uidl, char **dropped_r, const char **error_r);
/* Same, streaming exactly len bytes from fd (from its current offset). */
int maildir_deliver_fd(struct maildir_folder *f, uint32_t uid, const char *flags,
                       int64_t internaldate, int fd, uint64_t len,
                       const char *pop3_uidl, char **dropped_r, const char **error_r);

/* Takes message uid of the folder `from` (same flavor, same file system)
 * into f as a pending delivery, like maildir_deliver() but by a hard link
 * instead of a copy: same UID rules, flags, INTERNALDATE (the file's
 * mtime), sizes and POP3 UIDL as in `from`. `from` is not changed (its
 * file stays), so a crash before f's commit loses nothing; remove `from`
 * after the commit. Used to publish a UID range staged in a scratch
 * folder. Returns -1 with *error_r (unknown UID, UID below f's floor,
 * link failure; no lock is taken). */
int maildir_link_in(struct maildir_folder *f, struct maildir_folder *from,
                    uint32_t uid, char **dropped_r, const char **error_r);

/* Dovecot: gives keyword letters (a-z), in the order given, to those of
 * names that have none yet, while letters remain, before deliveries ask
 * for them: a caller that knows a folder holds more than 26 keywords
 * names the ones that matter most first (well-known ones such as $Junk),
 * so those are the ones the file names keep. Defined in memory; the next
 * commit writes dovecot-keywords. Courier: nothing to do (no limit). */
void maildir_folder_plan_keywords(struct maildir_folder *f,
                                  const char *const *names, size_t n);

/* The flags of `flags` (space-separated, canonical order kept) that the
 * files of f can hold: the five system flags with letters, and valid
 * keywords (Dovecot: those with a letter, or any while a letter is free).
 * A new string. What a listing of f can show, so that a caller comparing
 * the source's flags with f's compares what can be kept. */
char *maildir_folder_storable_flags(const struct maildir_folder *f,
                                    const char *flags);

/* Removes the folder root/dirname (not INBOX) with the files of its cur/,
 * new/, tmp/ and courierimapkeywords/ and its own files; a subdirectory
 * other than those makes it fail. A missing folder is not an error. For
 * scratch folders only: the messages are gone. */
int maildir_folder_remove(const char *root, const char *dirname,
                          const char **error_r);

/* Replaces a message's flags (rename within cur/, or new/ -> cur/; for a
 * pending delivery only the name commit will give it changes); letters
 * the library does not manage (e.g. 'P') are kept. Keywords as in deliver;
 * a published file that needs a new Dovecot letter: dovecot-keywords is
 * written under the lock first (held for this call only, unless
 * maildir_folder_lock() took it). Returns -1 if uid is unknown, the file
 * vanished, or that lock times out. */
int maildir_set_flags(struct maildir_folder *f, uint32_t uid, const char *flags,
                      char **dropped_r, const char **error_r);

/* Unlinks a message (a pending delivery from tmp/); its uidlist line goes
 * at commit (a pending one never had one). A file already gone is not an
 * error. The UID is not reused. Returns -1 if uid is unknown. */
int maildir_expunge(struct maildir_folder *f, uint32_t uid, const char **error_r);

/* Takes the folder lock now and keeps it until the next commit or close
 * (changes take it as the model says). Waits up to
 * o->lock_timeout_ms for a foreign lock; breaks a stale one as the server
 * does (Dovecot: our host, dead pid, >= 2 s old; or lock and uidlist both
 * unchanged for 120 s. Courier: our host and dead pid; or 120 s old).
 * Re-reads the folder if the server changed its uidlist since open.
 * Returns 0, or -1 ("... lock held by 1234:host ...; gave up after 30 s"). */
int maildir_folder_lock(struct maildir_folder *f, const char **error_r);

/* Publishes the pending deliveries and writes the uidlist (and keywords)
 * reflecting all changes since the last commit; holds the lock only
 * while it does (see the model). In this order: (fsync: fdatasync the
 * batch's files); take the lock, re-reading the folder if the server
 * changed it (dropping pending deliveries whose UID it gave out, which
 * fails the commit: "... N uncommitted deliveries from UID U on were
 * dropped ..."); dovecot-keywords if the batch defined letters; rename
 * every pending file from tmp/ into cur/ under its final name, in UID
 * order; (fsync: cur/); Courier keywords; the uidlist: Dovecot appends
 * "<uid> [ext] :<base>" lines when only lines were added (fdatasync), or
 * rewrites "3 V<v> N<n>" plus the old header's other fields (G<guid>,
 * unknown keys) and all lines in ascending UID order (P<uidl> for
 * pop3_uidl; other fields of existing lines kept) by temporary file +
 * rename (fsync: the folder directory); Courier always rewrites "1 <v>
 * <n>" then "<uid> <base>"; release the lock.
 * Never writes an N below the one on disk or a UID at or below one on disk.
 * With no changes it only releases a lock held. Returns -1 with *error_r
 * (UIDVALIDITY unset, lock lost or timed out, UIDs taken by the server
 * meanwhile, a pending file vanished, I/O error); the previous uidlist is
 * then untouched (an append that failed is cut back), the lock released,
 * and pending files moved back to tmp/ (best effort: one that cannot go
 * back stays in cur/ unlisted, with a warning). They stay pending: a
 * later commit retries them (except those dropped as above). (A failing
 * fsync of the folder directory after the uidlist rename also returns
 * -1; the new uidlist is then in place.) */
int maildir_folder_commit(struct maildir_folder *f, const char **error_r);

/* Opens the file of uid read-only (O_NOFOLLOW), from tmp/ for a pending
 * delivery; *size_r is its size on disk (Courier: LF bytes). The caller
 * closes *fd_r. Follows a rename by the server. */
int maildir_open_msg(struct maildir_folder *f, uint32_t uid, int *fd_r,
                     uint64_t *size_r, const char **error_r);

/* Sets *size_r to the message's RFC822.SIZE, reading the file when the name
 * and uidlist do not say (Dovecot without W=, Courier): file size + LFs not
 * preceded by CR (Courier: + every LF). Caches it in the folder (by UID). */
int maildir_msg_size(struct maildir_folder *f, uint32_t uid, uint64_t *size_r,
                     const char **error_r);

/* Account-level subscriptions in root (Dovecot "subscriptions", Courier
 * "courierimapsubscribed"), replaced atomically via a ".lock" temp file.
 * names: IMAP names as the server shows them, hierarchy separator
 * `separator`, already in modified UTF-7. Dovecot: "V\t2\n\n" then one name
 * per line with levels separated by TAB ("Archive/2019" -> "Archive\t2019").
 * Courier: one full name per line with '.' levels and the "INBOX." prefix
 * added unless present ("Archive/2019" -> "INBOX.Archive.2019"). Names with
 * TAB, CR, LF or empty levels are refused. */
int maildir_subscriptions_write(const char *root, const struct maildir_options *o,
                                const char *const *names, size_t n, char separator,
                                const char **error_r);
/* Reads them back as names with `separator` (Courier: as written when
 * separator is '.', else without "INBOX." and with separator). Also reads
 * Dovecot's old header-less '.' format. A missing file gives n = 0.
 * *names_r is a new vector: free it with maildir_strv_free(). */
int maildir_subscriptions_read(const char *root, enum maildir_flavor flavor,
                               char separator, char ***names_r, size_t *n_r,
                               const char **error_r);

/* Lists the folders of root: "" (INBOX) if root/cur exists, then every
 * directory ".X" directly under root that has a cur/ subdirectory (symlinks
 * skipped), sorted by strcmp. Free with maildir_strv_free(). */
int maildir_list_folders(const char *root, char ***dirnames_r, size_t *n_r,
                         const char **error_r);

/* Frees a vector of n strings returned above; sets *v to NULL. */
void maildir_strv_free(char ***v, size_t n);

#endif
