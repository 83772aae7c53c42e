/* mutf7.c: modified UTF-7 (RFC 3501 5.1.3) <-> UTF-8.
 *
 * Printable US-ASCII (0x20-0x7e) stands for itself except "&", written
 * "&-". Everything else is UTF-16BE in modified base64 ("," for "/", no
 * padding) between "&" and "-". Both directions are strict so that one
 * name has exactly one spelling: a server-side name that decodes must
 * encode back to the same bytes. Output goes to a temporary buffer first
 * so that out is unchanged on any error. */
#include "mutf7.h"

#include <string.h>

static const char b64chars[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/* Limit on names: far above any server's, and keeps the temp buffer sane. */
#define MUTF7_MAX_OUT (1024 * 1024)

static bool
is_direct(unsigned char c)
{
	return c >= 0x20 && c <= 0x7e;
}

static int
b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == ',')
		return 63;
	return -1;
}

size_t
mutf7_utf8_decode(const char *str, size_t len, uint32_t *cp_r)
{
	const unsigned char *s = (const unsigned char *)str;
	uint32_t cp, min;
	size_t n, i;

	if (s[0] < 0x80) {
		*cp_r = s[0];
		return s[0] != 0 ? 1 : 0;
	} else if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2;
		cp = s[0] & 0x1f;
		min = 0x80;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3;
		cp = s[0] & 0x0f;
		min = 0x800;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		cp = s[0] & 0x07;
		min = 0x10000;
	} else {
		return 0;
	}
	if (len < n)
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	*cp_r = cp;
	return n;
}

static int
utf8_append(struct buf *out, uint32_t cp)
{
	unsigned char s[4];
	size_t n;

	if (cp < 0x80) {
		s[0] = (unsigned char)cp;
		n = 1;
	} else if (cp < 0x800) {
		s[0] = (unsigned char)(0xc0 | (cp >> 6));
		s[1] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		s[0] = (unsigned char)(0xe0 | (cp >> 12));
		s[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		s[2] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		s[0] = (unsigned char)(0xf0 | (cp >> 18));
		s[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
		s[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		s[3] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return buf_append(out, s, n);
}

/* Base64 state of an encoded run: bits not yet written. */
struct b64_state {
	uint32_t bits;
	unsigned nbits;
};

static int
b64_put16(struct buf *out, struct b64_state *st, uint32_t unit)
{
	char c;

	st->bits = (st->bits << 16) | unit;
	st->nbits += 16;
	while (st->nbits >= 6) {
		st->nbits -= 6;
		c = b64chars[(st->bits >> st->nbits) & 0x3f];
		if (buf_append(out, &c, 1) < 0)
			return -1;
	}
	st->bits &= (1U << st->nbits) - 1;
	return 0;
}

/* Ends an encoded run: the remaining bits, zero-padded, then "-". The
 * state is ready for the next run. */
static int
b64_end(struct buf *out, struct b64_state *st)
{
	if (st->nbits > 0) {
		char c = b64chars[(st->bits << (6 - st->nbits)) & 0x3f];

		if (buf_append(out, &c, 1) < 0)
			return -1;
	}
	st->bits = 0;
	st->nbits = 0;
	return buf_append(out, "-", 1);
}

static int
encode(const unsigned char *s, size_t len, struct buf *out)
{
	struct b64_state st = { 0, 0 };
	bool in_run = false;
	size_t i = 0;

	while (i < len) {
		uint32_t cp;
		size_t n = mutf7_utf8_decode((const char *)s + i, len - i, &cp);

		if (n == 0)
			return -1;
		i += n;
		if (cp < 0x80 && is_direct((unsigned char)cp)) {
			if (in_run) {
				if (b64_end(out, &st) < 0)
					return -1;
				in_run = false;
			}
			if (cp == '&') {
				if (buf_append(out, "&-", 2) < 0)
					return -1;
			} else {
				char c = (char)cp;

				if (buf_append(out, &c, 1) < 0)
					return -1;
			}
			continue;
		}
		if (!in_run) {
			if (buf_append(out, "&", 1) < 0)
				return -1;
			in_run = true;
		}
		if (cp >= 0x10000) {
			cp -= 0x10000;
			if (b64_put16(out, &st, 0xd800 | (cp >> 10)) < 0 ||
			    b64_put16(out, &st, 0xdc00 | (cp & 0x3ff)) < 0)
				return -1;
		} else if (b64_put16(out, &st, cp) < 0) {
			return -1;
		}
	}
	if (in_run && b64_end(out, &st) < 0)
		return -1;
	return 0;
}

/* Decodes the base64 run starting at s[*pos] (just after "&", not "-")
 * up to and including its "-". out may be NULL (validation only). */
static int
decode_run(const unsigned char *s, size_t len, size_t *pos, struct buf *out)
{
	uint32_t bits = 0, high = 0;
	unsigned nbits = 0;
	size_t i = *pos, units = 0;

	for (; i < len && s[i] != '-'; i++) {
		int v = b64_value(s[i]);
		uint32_t unit;

		if (v < 0)
			return -1;
		bits = (bits << 6) | (uint32_t)v;
		nbits += 6;
		if (nbits < 16)
			continue;
		nbits -= 16;
		unit = (bits >> nbits) & 0xffff;
		bits &= (1U << nbits) - 1;
		units++;
		if (high != 0) {
			uint32_t cp;

			if (unit < 0xdc00 || unit > 0xdfff)
				return -1;      /* high surrogate not followed by low */
			cp = 0x10000 + ((high - 0xd800) << 10) + (unit - 0xdc00);
			high = 0;
			if (out != NULL && utf8_append(out, cp) < 0)
				return -1;
		} else if (unit >= 0xd800 && unit <= 0xdbff) {
			high = unit;
		} else if (unit >= 0xdc00 && unit <= 0xdfff) {
			return -1;              /* low surrogate alone */
		} else if (unit == 0 || (unit < 0x80 && is_direct((unsigned char)unit))) {
			return -1;              /* NUL, or ASCII that must be direct */
		} else if (out != NULL && utf8_append(out, unit) < 0) {
			return -1;
		}
	}
	if (i == len)
		return -1;                      /* no closing "-" */
	/* Only the zero padding of the last unit may be left: fewer than 6
	 * bits, all zero. This also rejects runs with no complete unit. */
	if (units == 0 || nbits >= 6 || bits != 0 || high != 0)
		return -1;
	*pos = i + 1;
	return 0;
}

static int
decode(const unsigned char *s, size_t len, struct buf *out)
{
	bool after_run = false;
	size_t i = 0;

	while (i < len) {
		if (!is_direct(s[i]))
			return -1;
		if (s[i] != '&') {
			if (out != NULL && buf_append(out, &s[i], 1) < 0)
				return -1;
			i++;
			after_run = false;
			continue;
		}
		if (i + 1 < len && s[i + 1] == '-') {
			if (out != NULL && buf_append(out, "&", 1) < 0)
				return -1;
			i += 2;
			after_run = false;
			continue;
		}
		/* "&AOQ-&APw-" must have been one run "&AOQA,A-". */
		if (after_run)
			return -1;
		i++;
		if (decode_run(s, len, &i, out) < 0)
			return -1;
		after_run = true;
	}
	return 0;
}

/* Runs encode() or decode() into a temporary buffer and appends the
 * result to out only when the whole conversion succeeded. */
static int
convert(int (*fn)(const unsigned char *, size_t, struct buf *),
        const char *in, size_t len, struct buf *out)
{
	struct buf tmp;
	int ret;

	buf_init(&tmp, MUTF7_MAX_OUT);
	ret = fn((const unsigned char *)in, len, &tmp);
	if (ret == 0)
		ret = buf_append(out, buf_data(&tmp), buf_len(&tmp));
	buf_free(&tmp);
	return ret;
}

int
mutf7_encode(const char *utf8, size_t len, struct buf *out)
{
	return convert(encode, utf8, len, out);
}

int
mutf7_decode(const char *mutf7, size_t len, struct buf *out)
{
	return convert(decode, mutf7, len, out);
}

bool
mutf7_is_valid(const char *s, size_t len)
{
	return decode((const unsigned char *)s, len, NULL) == 0;
}

char *
mutf7_display(const char *mutf7)
{
	struct buf b;
	char *r;

	buf_init(&b, strlen(mutf7) * 2 + 16);
	if (mutf7_decode(mutf7, strlen(mutf7), &b) < 0 ||
	    memchr(buf_data(&b), '\0', buf_len(&b)) != NULL) {
		buf_free(&b);
		return str_escape_controls(mutf7);
	}
	r = str_escape_controls(buf_data(&b));
	buf_free(&b);
	return r;
}
