#include "json.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static void
put(struct json *j, const char *s, size_t len)
{
	if (buf_append(j->out, s, len) < 0)
		fatal("JSON output over its size limit");
}

static void
value_prefix(struct json *j)
{
	if (j->after_key) {
		j->after_key = false;
		return;
	}
	if (j->depth > 0 && j->need_comma[j->depth])
		put(j, ",", 1);
	if (j->depth > 0)
		j->need_comma[j->depth] = true;
}

void
json_init(struct json *j, struct buf *out)
{
	memset(j, 0, sizeof(*j));
	j->out = out;
}

static void
open_(struct json *j, const char *c)
{
	value_prefix(j);
	put(j, c, 1);
	if (j->depth + 1 >= N_ELEMENTS(j->need_comma))
		fatal("JSON nesting too deep");
	j->need_comma[++j->depth] = false;
}

static void
close_(struct json *j, const char *c)
{
	j->depth--;
	put(j, c, 1);
}

void json_obj_begin(struct json *j) { open_(j, "{"); }
void json_obj_end(struct json *j) { close_(j, "}"); }
void json_arr_begin(struct json *j) { open_(j, "["); }
void json_arr_end(struct json *j) { close_(j, "]"); }

void
json_key(struct json *j, const char *key)
{
	json_str(j, key);
	put(j, ":", 1);
	j->after_key = true;
}

/* Length of a valid UTF-8 sequence at s (max n bytes), or 0. */
static size_t
utf8_seq(const unsigned char *s, size_t n)
{
	size_t len;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0) { len = 2; cp = s[0] & 0x1f; }
	else if ((s[0] & 0xf0) == 0xe0) { len = 3; cp = s[0] & 0x0f; }
	else if ((s[0] & 0xf8) == 0xf0) { len = 4; cp = s[0] & 0x07; }
	else return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

void
json_strn(struct json *j, const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	char esc[8];

	value_prefix(j);
	put(j, "\"", 1);
	for (size_t i = 0; i < len;) {
		size_t n;

		if (s[i] == '"' || s[i] == '\\') {
			esc[0] = '\\';
			esc[1] = (char)s[i];
			put(j, esc, 2);
			i++;
		} else if (s[i] < 0x20 || s[i] == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", s[i]);
			put(j, esc, 6);
			i++;
		} else if ((n = utf8_seq(s + i, len - i)) == 0) {
			put(j, "\\ufffd", 6);
			i++;
		} else {
			put(j, (const char *)s + i, n);
			i += n;
		}
	}
	put(j, "\"", 1);
}

void
json_str(struct json *j, const char *s)
{
	if (s == NULL)
		json_null(j);
	else
		json_strn(j, s, strlen(s));
}

void
json_u64(struct json *j, uint64_t v)
{
	char tmp[32];

	value_prefix(j);
	snprintf(tmp, sizeof(tmp), "%" PRIu64, v);
	put(j, tmp, strlen(tmp));
}

void
json_i64(struct json *j, int64_t v)
{
	char tmp[32];

	value_prefix(j);
	snprintf(tmp, sizeof(tmp), "%" PRId64, v);
	put(j, tmp, strlen(tmp));
}

void
json_double(struct json *j, double v)
{
	char tmp[64];

	value_prefix(j);
	snprintf(tmp, sizeof(tmp), "%.3f", v);
	put(j, tmp, strlen(tmp));
}

void
json_double_g(struct json *j, double v)
{
	char tmp[64];

	if (!isfinite(v)) {
		json_null(j);
		return;
	}
	value_prefix(j);
	snprintf(tmp, sizeof(tmp), "%.9g", v);
	put(j, tmp, strlen(tmp));
}

void
json_bool(struct json *j, bool v)
{
	value_prefix(j);
	put(j, v ? "true" : "false", v ? 4 : 5);
}

void
json_null(struct json *j)
{
	value_prefix(j);
	put(j, "null", 4);
}
