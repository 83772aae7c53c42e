/* response.c: helpers on parsed values, sequence sets and IMAP dates. */
#include "response.h"
#include "parser-private.h"

#include <string.h>

bool
imap_value_number(const struct imap_value *v, uint64_t max, uint64_t *num_r)
{
	if (v == NULL || v->type != IMAP_VALUE_ATOM)
		return false;
	return str_to_u64(v->str, v->len, max, num_r);
}

bool
imap_value_ieq(const struct imap_value *v, const char *s)
{
	size_t len;

	if (v == NULL)
		return false;
	if (v->type != IMAP_VALUE_ATOM && v->type != IMAP_VALUE_STRING &&
	    v->type != IMAP_VALUE_NIL)
		return false;
	len = strlen(s);
	return v->len == len && str_ieqn(v->str, s, len);
}

void *
imap_value_steal_stream(const struct imap_value *v)
{
	struct imap_value *mv;
	void *h;

	if (v == NULL || v->type != IMAP_VALUE_STREAMED)
		return NULL;
	/* The value lives in the parser's own (non-const) storage; the const
	 * only keeps callers from editing responses by accident. A NULL
	 * stream tells the parser not to release() it. */
	mv = (struct imap_value *)(uintptr_t)v;
	h = mv->stream;
	mv->stream = NULL;
	return h;
}

bool
imap_strlist_has(const struct imap_strlist *l, const char *item)
{
	if (l == NULL)
		return false;
	for (size_t i = 0; i < l->count; i++) {
		if (str_ieq(l->items[i], item))
			return true;
	}
	return false;
}

/* ---- sequence sets ---- */

/* Parses a non-zero 32-bit number at *sp (no '*'), advancing *sp. */
static bool
seq_number(const char **sp, const char *end, uint32_t *num_r)
{
	const char *s = *sp;
	uint64_t v = 0;

	if (s >= end || *s < '0' || *s > '9')
		return false;
	while (s < end && *s >= '0' && *s <= '9') {
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > UINT32_MAX)
			return false;
		s++;
	}
	if (v == 0)
		return false;
	*sp = s;
	*num_r = (uint32_t)v;
	return true;
}

bool
imap_seqset_valid(const char *s, size_t len)
{
	const char *end = s + len;
	uint32_t n;

	for (;;) {
		if (!seq_number(&s, end, &n))
			return false;
		if (s < end && *s == ':') {
			s++;
			if (!seq_number(&s, end, &n))
				return false;
		}
		if (s == end)
			return true;
		if (*s != ',')
			return false;
		s++;
	}
}

int
imap_seqset_foreach(const char *set, size_t max,
                    int (*cb)(void *ctx, uint32_t num), void *ctx)
{
	const char *s = set, *end = set + strlen(set);
	size_t count = 0;

	for (;;) {
		uint32_t a, b;
		uint64_t n;

		if (!seq_number(&s, end, &a))
			return -1;
		b = a;
		if (s < end && *s == ':') {
			s++;
			if (!seq_number(&s, end, &b))
				return -1;
			if (a > b) {
				uint32_t t = a;

				a = b;
				b = t;
			}
		}
		/* Check the size before looping so "1:4294967295" with a
		 * small max costs nothing. */
		n = (uint64_t)b - a + 1;
		if (n > max - count)
			return -1;
		count += (size_t)n;
		for (uint64_t v = a; v <= b; v++) {
			if (cb(ctx, (uint32_t)v) < 0)
				return -1;
		}
		if (s == end)
			return 0;
		if (*s != ',')
			return -1;
		s++;
	}
}

/* ---- dates ---- */

static const char month_names[12][4] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};

static bool
is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned
month_days(int64_t y, unsigned m)
{
	static const unsigned char days[12] = {
		31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31,
	};

	return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (m 1..12), after
 * Howard Hinnant's days_from_civil: no timegm(), no time zone state. */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static void
civil_from_days(int64_t z, int64_t *y_r, unsigned *m_r, unsigned *d_r)
{
	int64_t era, y;
	unsigned doe, yoe, doy, mp, d, m;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = (unsigned)(z - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	y = (int64_t)yoe + era * 400;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	d = doy - (153 * mp + 2) / 5 + 1;
	m = mp < 10 ? mp + 3 : mp - 9;
	*y_r = y + (m <= 2);
	*m_r = m;
	*d_r = d;
}

static bool
digits(const char *s, size_t n, unsigned *v_r)
{
	unsigned v = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*v_r = v;
	return true;
}

bool
imap_parse_datetime(const char *s, time_t *utc_r, int *tz_minutes_r)
{
	unsigned day, mon = 0, year, hh, mm, ss, zh, zm;
	int tz;
	int64_t t;

	/* date-day-fixed is " D" or "DD"; a bare "D" is accepted too. */
	if (s[0] == ' ')
		s++;
	if (s[0] >= '0' && s[0] <= '9' && s[1] == '-') {
		day = (unsigned)(s[0] - '0');
		s += 1;
	} else {
		if (!digits(s, 2, &day))
			return false;
		s += 2;
	}
	if (*s++ != '-')
		return false;
	for (unsigned i = 0; i < 12; i++) {
		if (str_ieqn(s, month_names[i], 3)) {
			mon = i + 1;
			break;
		}
	}
	if (mon == 0)
		return false;
	s += 3;
	if (*s++ != '-' || !digits(s, 4, &year))
		return false;
	s += 4;
	if (s[0] != ' ' || !digits(s + 1, 2, &hh) || s[3] != ':' ||
	    !digits(s + 4, 2, &mm) || s[6] != ':' || !digits(s + 7, 2, &ss) ||
	    s[9] != ' ' || (s[10] != '+' && s[10] != '-') ||
	    !digits(s + 11, 2, &zh) || !digits(s + 13, 2, &zm) || s[15] != '\0')
		return false;
	if (day < 1 || day > month_days(year, mon) || hh > 23 || mm > 59 ||
	    ss > 60 || zh > 23 || zm > 59)
		return false;
	tz = (int)(zh * 60 + zm);
	if (s[10] == '-')
		tz = -tz;
	t = days_from_civil(year, mon, day) * 86400 +
	    (int64_t)(hh * 3600 + mm * 60 + ss) - (int64_t)tz * 60;
	*utc_r = (time_t)t;
	*tz_minutes_r = tz;
	return true;
}

static char *
put_num(char *p, unsigned v, unsigned width)
{
	for (unsigned i = width; i > 0; i--) {
		p[i - 1] = (char)('0' + v % 10);
		v /= 10;
	}
	return p + width;
}

void
imap_format_datetime(time_t utc, char out[static 27])
{
	/* Clamp to what four year digits can say. */
	const int64_t lo = days_from_civil(0, 1, 1) * 86400;
	const int64_t hi = days_from_civil(9999, 12, 31) * 86400 + 86399;
	int64_t t = (int64_t)utc, days, secs, y;
	unsigned m, d;
	char *p = out;

	if (t < lo)
		t = lo;
	if (t > hi)
		t = hi;
	days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
	secs = t - days * 86400;
	civil_from_days(days, &y, &m, &d);
	p = put_num(p, d, 2);
	*p++ = '-';
	memcpy(p, month_names[m - 1], 3);
	p += 3;
	*p++ = '-';
	p = put_num(p, (unsigned)y, 4);
	*p++ = ' ';
	p = put_num(p, (unsigned)(secs / 3600), 2);
	*p++ = ':';
	p = put_num(p, (unsigned)(secs / 60 % 60), 2);
	*p++ = ':';
	p = put_num(p, (unsigned)(secs % 60), 2);
	memcpy(p, " +0000", 7);
}

enum err_kind
imap_code_err_kind(enum imap_code_type code, enum err_kind dflt)
{
	switch (code) {
	case IMAP_CODE_OVERQUOTA:
		return ERRK_QUOTA;
	case IMAP_CODE_UNAVAILABLE:
	case IMAP_CODE_INUSE:
		return ERRK_SESSION;
	case IMAP_CODE_AUTHENTICATIONFAILED:
	case IMAP_CODE_AUTHORIZATIONFAILED:
	case IMAP_CODE_EXPIRED:
	case IMAP_CODE_PRIVACYREQUIRED:
	case IMAP_CODE_CONTACTADMIN:
		return ERRK_AUTH;
	case IMAP_CODE_LIMIT:
		return ERRK_MESSAGE;
	case IMAP_CODE_NONEXISTENT:
	case IMAP_CODE_TRYCREATE:
	case IMAP_CODE_NOPERM:
		return ERRK_FOLDER;
	default:
		return dflt;
	}
}
