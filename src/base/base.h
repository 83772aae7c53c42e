/* base.h: allocation, attributes and small helpers shared by every module.
 * Depends on libc only. */
#ifndef IMAPFERRY_BASE_H
#define IMAPFERRY_BASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ATTR_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define ATTR_WARN_UNUSED __attribute__((warn_unused_result))
#define ATTR_NORETURN __attribute__((noreturn))
#define N_ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))

/* Allocators: out of memory aborts (this is a tool, not a library). */
void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *ptr, size_t size);
/* xreallocarray: overflow-checked n*size; aborts on overflow. */
void *xreallocarray(void *ptr, size_t n, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Returns a newly allocated formatted string; the caller owns it. */
char *xasprintf(const char *fmt, ...) ATTR_PRINTF(1, 2);
ATTR_NORETURN void fatal(const char *fmt, ...) ATTR_PRINTF(1, 2);

/* qsort() comparator of uint32_t values, ascending. */
int cmp_u32(const void *a, const void *b);
/* Appends x to the growing array *v of *n values (*alloc allocated). */
void u32_push(uint32_t **v, size_t *n, size_t *alloc, uint32_t x);

/* NULL-terminated string vectors: frees each string and the vector and
 * sets *v to NULL (NULL-safe); a deep copy (NULL for NULL). */
void strv_free(char ***v);
char **strv_dup(char *const *v);

/* Discards a result on purpose (a cast to void does not silence
 * ATTR_WARN_UNUSED in GCC). */
static inline void ignore_result(int r) { (void)r; }

/* Frees *p and sets it to NULL. */
#define XFREE(p) do { free(p); (p) = NULL; } while (0)

/* Parses a decimal unsigned number of exactly len bytes (no sign, no
 * spaces). Returns false on empty input, a non-digit, or overflow past max. */
bool str_to_u64(const char *s, size_t len, uint64_t max, uint64_t *value_r);
/* Same for a NUL-terminated string. */
bool str_to_u64z(const char *s, uint64_t max, uint64_t *value_r);

/* Case-insensitive ASCII comparisons (locale independent). */
bool str_ieq(const char *a, const char *b);
bool str_ieqn(const char *a, const char *b, size_t len);
bool str_has_iprefix(const char *s, const char *prefix);

/* Copies src into dst (size dstsize), always NUL-terminating when dstsize>0.
 * Returns strlen(src); truncation when the result >= dstsize. */
size_t str_copy(char *dst, const char *src, size_t dstsize);

/* Monotonic time in milliseconds and wall-clock seconds. */
uint64_t time_mono_ms(void);
double time_mono_sec(void);

/* Reads a whole small text file (at most max_size bytes) into a new
 * NUL-terminated string; trailing CR/LF stripped when strip_nl, and the
 * file must then hold a single line (a password, a token). A NUL or
 * another control byte (below 0x20, or 0x7f) is refused, except TAB, LF
 * and a CR before LF (or at the end): the callers treat the text as C
 * strings, and a NUL would silently cut it. Returns 0, or -1 with
 * *error_r set (static or per-thread storage) naming path and the line
 * (never the bytes of the file). */
int file_read_small(const char *path, size_t max_size, bool strip_nl,
                    char **data_r, const char **error_r);

/* Reads a whole small file of any bytes (at most max_size) into a new
 * buffer of *len_r bytes plus a terminating NUL, for formats that carry
 * control bytes or NULs of their own (Cyrus's subscriptions use 0x1f);
 * the caller parses it by length. Returns 0, or -1 with *error_r. */
int file_read_raw(const char *path, size_t max_size, char **data_r,
                  size_t *len_r, const char **error_r);

/* Finds the first byte of the len bytes at text that a text file must not
 * hold: a control byte other than TAB and LF (below 0x20, or 0x7f), or
 * a CR that is not followed by LF (a CR as the very last byte is fine).
 * Returns true and sets *line_r (1-based) and *byte_r when there is one,
 * false when the text is clean. */
bool text_find_control(const char *text, size_t len, unsigned *line_r,
                       unsigned char *byte_r) ATTR_WARN_UNUSED;

/* A copy of s safe to print: bytes below 0x20 and from 0x7f up become
 * "\xHH" (folder names from a server may hold escape sequences). */
char *str_escape_controls(const char *s);

/* Decodes %XX escapes of len bytes into a new string. Returns NULL for a
 * malformed escape or one that decodes to NUL, CR or LF. */
char *str_pct_decode(const char *s, size_t len);

/* Overwrites a secret with zeros before freeing it. */
void secret_free(char **secret);

/* Per-thread error message storage for "-1 + *error_r" returns whose text
 * is formatted. The returned pointer stays valid until the next call of
 * err_set() (or err_setk/err_errno/err_wrap) in the same thread.
 *
 * Errors carry a kind, set where the error happens (from errno, an IMAP
 * response code, an SQLite result code), never guessed from the text:
 * err_kind_of() returns the kind of the message in hand if it is the
 * thread's current formatted error, ERRK_OTHER for any other string (a
 * static message, or one overwritten since). err_set() gives ERRK_OTHER;
 * err_wrap() keeps the kind of the inner error it quotes. */
enum err_kind {
	ERRK_NONE = 0,
	ERRK_OTHER,        /* no kind known: the caller's default applies */
	ERRK_MESSAGE,      /* one message refused (too large, malformed) */
	ERRK_FOLDER,       /* one folder refused (create, select, name) */
	ERRK_SESSION,      /* connection lost, timeout, malformed response,
	                     server temporarily unavailable: retry */
	ERRK_AUTH,         /* login refused: the account, not the run */
	ERRK_QUOTA,        /* the account's quota (OVERQUOTA, EDQUOT) */
	ERRK_DISK_FULL,    /* no space left on a device (ENOSPC, SQLITE_FULL) */
	ERRK_STATE,        /* the state database */
	ERRK_USAGE,        /* arguments or configuration */
};

const char *err_set(const char *fmt, ...) ATTR_PRINTF(1, 2);
const char *err_setk(enum err_kind kind, const char *fmt, ...) ATTR_PRINTF(2, 3);
/* Kind from errnum (err_kind_errno()); the text is the caller's (it
 * usually ends with strerror(errnum)). */
const char *err_errno(int errnum, const char *fmt, ...) ATTR_PRINTF(2, 3);
/* The kind of inner (see err_kind_of()); inner is usually one of the args. */
const char *err_wrap(const char *inner, const char *fmt, ...) ATTR_PRINTF(2, 3);
enum err_kind err_kind_of(const char *error);
/* ENOSPC: ERRK_DISK_FULL; EDQUOT: ERRK_QUOTA; others: ERRK_OTHER. */
enum err_kind err_kind_errno(int errnum);
/* A short English name of the kind ("disk full", ...) for reports. */
const char *err_kind_name(enum err_kind kind);

/* Base64 (RFC 4648, with padding) of len bytes, appended as text to a new
 * NUL-terminated string the caller owns. */
char *base64_encode(const void *data, size_t len);

#endif
