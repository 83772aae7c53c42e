#include "base.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("imapferry: fatal: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	abort();
}

void *
xmalloc(size_t size)
{
	void *p = malloc(size == 0 ? 1 : size);

	if (p == NULL)
		fatal("out of memory allocating %zu bytes", size);
	return p;
}

void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);

	if (p == NULL)
		fatal("out of memory allocating %zu x %zu bytes", n, size);
	return p;
}

void *
xrealloc(void *ptr, size_t size)
{
	void *p = realloc(ptr, size == 0 ? 1 : size);

	if (p == NULL)
		fatal("out of memory reallocating %zu bytes", size);
	return p;
}

void *
xreallocarray(void *ptr, size_t n, size_t size)
{
	if (size != 0 && n > SIZE_MAX / size)
		fatal("allocation overflow: %zu x %zu", n, size);
	return xrealloc(ptr, n * size);
}

char *
xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap, ap2;
	int n;
	char *p;

	va_start(ap, fmt);
	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		fatal("xasprintf: bad format");
	p = xmalloc((size_t)n + 1);
	vsnprintf(p, (size_t)n + 1, fmt, ap2);
	va_end(ap2);
	return p;
}

bool
str_to_u64(const char *s, size_t len, uint64_t max, uint64_t *value_r)
{
	uint64_t v = 0;

	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned d;

		if (s[i] < '0' || s[i] > '9')
			return false;
		d = (unsigned)(s[i] - '0');
		if (v > (max - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*value_r = v;
	return true;
}

bool
str_to_u64z(const char *s, uint64_t max, uint64_t *value_r)
{
	return str_to_u64(s, strlen(s), max, value_r);
}

static int
lc(int c)
{
	return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

bool
str_ieqn(const char *a, const char *b, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (lc((unsigned char)a[i]) != lc((unsigned char)b[i]))
			return false;
		if (a[i] == '\0')
			return true;
	}
	return true;
}

bool
str_ieq(const char *a, const char *b)
{
	size_t la = strlen(a);

	return la == strlen(b) && str_ieqn(a, b, la);
}

bool
str_has_iprefix(const char *s, const char *prefix)
{
	size_t lp = strlen(prefix);

	return strlen(s) >= lp && str_ieqn(s, prefix, lp);
}

size_t
str_copy(char *dst, const char *src, size_t dstsize)
{
	size_t len = strlen(src);

	if (dstsize > 0) {
		size_t n = len < dstsize - 1 ? len : dstsize - 1;
		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return len;
}

uint64_t
time_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

double
time_mono_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static _Thread_local char err_storage[1024];
static _Thread_local enum err_kind err_storage_kind;

static const char *
err_vset(enum err_kind kind, const char *fmt, va_list ap) ATTR_PRINTF(2, 0);

static const char *
err_vset(enum err_kind kind, const char *fmt, va_list ap)
{
	char tmp[sizeof(err_storage)];

	/* through tmp: an argument may point into err_storage itself */
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	memcpy(err_storage, tmp, sizeof(tmp));
	err_storage_kind = kind;
	return err_storage;
}

const char *
err_set(const char *fmt, ...)
{
	const char *r;
	va_list ap;

	va_start(ap, fmt);
	r = err_vset(ERRK_OTHER, fmt, ap);
	va_end(ap);
	return r;
}

const char *
err_setk(enum err_kind kind, const char *fmt, ...)
{
	const char *r;
	va_list ap;

	va_start(ap, fmt);
	r = err_vset(kind, fmt, ap);
	va_end(ap);
	return r;
}

const char *
err_errno(int errnum, const char *fmt, ...)
{
	const char *r;
	va_list ap;

	va_start(ap, fmt);
	r = err_vset(err_kind_errno(errnum), fmt, ap);
	va_end(ap);
	return r;
}

const char *
err_wrap(const char *inner, const char *fmt, ...)
{
	enum err_kind kind = err_kind_of(inner);
	const char *r;
	va_list ap;

	va_start(ap, fmt);
	r = err_vset(kind, fmt, ap);
	va_end(ap);
	return r;
}

enum err_kind
err_kind_of(const char *error)
{
	if (error == NULL)
		return ERRK_NONE;
	return error == err_storage ? err_storage_kind : ERRK_OTHER;
}

enum err_kind
err_kind_errno(int errnum)
{
	switch (errnum) {
	case ENOSPC:
		return ERRK_DISK_FULL;
#ifdef EDQUOT
	case EDQUOT:
		return ERRK_QUOTA;
#endif
	default:
		return ERRK_OTHER;
	}
}

const char *
err_kind_name(enum err_kind kind)
{
	static const char *const names[] = {
		[ERRK_NONE] = "none", [ERRK_OTHER] = "error",
		[ERRK_MESSAGE] = "message refused", [ERRK_FOLDER] = "folder",
		[ERRK_SESSION] = "session", [ERRK_AUTH] = "login refused",
		[ERRK_QUOTA] = "over quota", [ERRK_DISK_FULL] = "disk full",
		[ERRK_STATE] = "state database", [ERRK_USAGE] = "usage",
	};

	return (unsigned)kind < N_ELEMENTS(names) ? names[kind] : "error";
}

int
file_read_raw(const char *path, size_t max_size, char **data_r, size_t *len_r,
              const char **error_r)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *data;
	size_t len = 0;

	if (fd < 0) {
		*error_r = err_errno(errno, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || (size_t)st.st_size > max_size) {
		*error_r = err_set("%s: unreadable or larger than %zu bytes",
		                   path, max_size);
		close(fd);
		return -1;
	}
	data = xmalloc(max_size + 1);
	for (;;) {
		ssize_t n = read(fd, data + len, max_size - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*error_r = err_errno(errno, "%s: %s", path, strerror(errno));
			free(data);
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == max_size)
			break;
	}
	close(fd);
	data[len] = '\0';
	*data_r = data;
	*len_r = len;
	return 0;
}

int
file_read_small(const char *path, size_t max_size, bool strip_nl,
                char **data_r, const char **error_r)
{
	char *data;
	size_t len;
	unsigned line;
	unsigned char byte;

	if (file_read_raw(path, max_size, &data, &len, error_r) < 0)
		return -1;
	if (text_find_control(data, len, &line, &byte)) {
		*error_r = err_set("%s: line %u: control byte 0x%02x%s is not "
		                   "allowed", path, line, byte,
		                   byte == 0 ? " (NUL)" : byte == '\r' ?
		                   " (CR not before LF)" : "");
		/* may be a password: wipe all of it, NULs included */
		memset(data, 0, len);
		free(data);
		return -1;
	}
	if (strip_nl) {
		while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
			data[--len] = '\0';
		if (memchr(data, '\n', len) != NULL) {
			*error_r = err_set("%s: line 2: more than one line (the "
			                   "file must hold only the value)", path);
			secret_free(&data);
			return -1;
		}
		if (memchr(data, '\r', len) != NULL) {
			*error_r = err_set("%s: line 1: CR inside the value", path);
			secret_free(&data);
			return -1;
		}
	}
	*data_r = data;
	return 0;
}

bool
text_find_control(const char *text, size_t len, unsigned *line_r,
                  unsigned char *byte_r)
{
	unsigned line = 1;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];

		if (c == '\n') {
			line++;
			continue;
		}
		if (c == '\t' || (c >= 0x20 && c != 0x7f))
			continue;
		if (c == '\r' && (i + 1 == len || text[i + 1] == '\n'))
			continue;
		*line_r = line;
		*byte_r = c;
		return true;
	}
	return false;
}

void
secret_free(char **secret)
{
	if (*secret == NULL)
		return;
	volatile char *p = *secret;
	while (*p != '\0')
		*p++ = '\0';
	XFREE(*secret);
}

char *
base64_encode(const void *data, size_t len)
{
	static const char tbl[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *in = data;
	char *out = xmalloc((len + 2) / 3 * 4 + 1), *o = out;
	size_t i;

	for (i = 0; i + 2 < len; i += 3) {
		*o++ = tbl[in[i] >> 2];
		*o++ = tbl[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
		*o++ = tbl[((in[i + 1] & 15) << 2) | (in[i + 2] >> 6)];
		*o++ = tbl[in[i + 2] & 63];
	}
	if (i < len) {
		*o++ = tbl[in[i] >> 2];
		if (i + 1 < len) {
			*o++ = tbl[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
			*o++ = tbl[(in[i + 1] & 15) << 2];
		} else {
			*o++ = tbl[(in[i] & 3) << 4];
			*o++ = '=';
		}
		*o++ = '=';
	}
	*o = '\0';
	return out;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

char *
str_pct_decode(const char *s, size_t len)
{
	char *out = xmalloc(len + 1), *o = out;

	for (size_t i = 0; i < len; i++) {
		int h, l;
		char c;

		if (s[i] != '%') {
			*o++ = s[i];
			continue;
		}
		if (i + 2 >= len || (h = hexval(s[i + 1])) < 0 ||
		    (l = hexval(s[i + 2])) < 0)
			goto bad;
		c = (char)(h * 16 + l);
		if (c == '\0' || c == '\r' || c == '\n')
			goto bad;
		*o++ = c;
		i += 2;
	}
	*o = '\0';
	return out;
bad:
	free(out);
	return NULL;
}

char *
str_escape_controls(const char *s)
{
	static const char hex[] = "0123456789abcdef";
	size_t len = strlen(s);
	char *out = xmalloc(len * 4 + 1), *p = out;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c >= 0x7f) {
			*p++ = '\\';
			*p++ = 'x';
			*p++ = hex[c >> 4];
			*p++ = hex[c & 15];
		} else {
			*p++ = (char)c;
		}
	}
	*p = '\0';
	return out;
}

int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

void
u32_push(uint32_t **v, size_t *n, size_t *alloc, uint32_t x)
{
	if (*n == *alloc) {
		*alloc = *alloc == 0 ? 256 : *alloc * 2;
		*v = xreallocarray(*v, *alloc, sizeof(**v));
	}
	(*v)[(*n)++] = x;
}

void
strv_free(char ***v)
{
	if (*v == NULL)
		return;
	for (char **p = *v; *p != NULL; p++)
		free(*p);
	XFREE(*v);
}

char **
strv_dup(char *const *v)
{
	size_t n = 0;
	char **r;

	if (v == NULL)
		return NULL;
	while (v[n] != NULL)
		n++;
	r = xcalloc(n + 1, sizeof(*r));
	for (size_t i = 0; i < n; i++)
		r[i] = xstrdup(v[i]);
	return r;
}
