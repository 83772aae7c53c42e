/* json.h: a minimal streaming JSON writer into a struct buf (for --json
 * reports). Strings are escaped; invalid UTF-8 bytes become U+FFFD. The
 * writer tracks commas itself: call json_key() before a value in an
 * object. */
#ifndef IMAPFERRY_JSON_H
#define IMAPFERRY_JSON_H

#include "buf.h"

struct json {
	struct buf *out;
	unsigned depth;
	bool need_comma[64];
	bool after_key;
};

void json_init(struct json *j, struct buf *out);
void json_obj_begin(struct json *j);
void json_obj_end(struct json *j);
void json_arr_begin(struct json *j);
void json_arr_end(struct json *j);
void json_key(struct json *j, const char *key);
void json_str(struct json *j, const char *s);
void json_strn(struct json *j, const char *s, size_t len);
void json_u64(struct json *j, uint64_t v);
void json_i64(struct json *j, int64_t v);
void json_double(struct json *j, double v);      /* 3 decimals */
/* 9 significant digits (a value read back: cost models); null when not
 * finite */
void json_double_g(struct json *j, double v);
void json_bool(struct json *j, bool v);
void json_null(struct json *j);

#endif
