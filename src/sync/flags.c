#include "flags.h"

#include "buf.h"

#include <stdlib.h>
#include <string.h>

static const char *const system_flags[] = {
	"\\Answered", "\\Deleted", "\\Draft", "\\Flagged", "\\Seen",
};

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

char *
flags_canonical(const char *const *flags, size_t count)
{
	const char **v = xcalloc(count + 1, sizeof(*v));
	size_t n = 0;
	struct buf b;

	for (size_t i = 0; i < count; i++) {
		const char *f = flags[i];
		bool dup = false;

		if (f[0] == '\0' || str_ieq(f, "\\Recent"))
			continue;
		if (f[0] == '\\') {
			for (size_t k = 0; k < N_ELEMENTS(system_flags); k++)
				if (str_ieq(f, system_flags[k]))
					f = system_flags[k];
		}
		for (size_t k = 0; k < n && !dup; k++)
			dup = str_ieq(v[k], f);
		if (!dup)
			v[n++] = f;
	}
	qsort(v, n, sizeof(*v), cmp_str);
	buf_init(&b, SIZE_MAX / 2);
	for (size_t i = 0; i < n; i++) {
		if ((i > 0 && buf_append(&b, " ", 1) < 0) ||
		    buf_append_str(&b, v[i]) < 0)
			fatal("flags too long");
	}
	free(v);
	return buf_take(&b);
}

char *
flags_canonical_str(const char *flags)
{
	char *dup = xstrdup(flags), *p, *next;
	const char **v = NULL;
	size_t n = 0, alloc = 0;
	char *res;

	for (p = dup; p != NULL; p = next) {
		next = strchr(p, ' ');
		if (next != NULL)
			*next++ = '\0';
		if (*p == '\0')
			continue;
		if (n == alloc) {
			alloc = alloc == 0 ? 8 : alloc * 2;
			v = xreallocarray(v, alloc, sizeof(*v));
		}
		v[n++] = p;
	}
	res = flags_canonical(v, n);
	free(v);
	free(dup);
	return res;
}

bool
flags_has(const char *canonical, const char *flag)
{
	size_t len = strlen(flag);
	const char *p = canonical;

	while ((p = strstr(p, flag)) != NULL) {
		if ((p == canonical || p[-1] == ' ') &&
		    (p[len] == ' ' || p[len] == '\0'))
			return true;
		p += len;
	}
	return false;
}

static bool
permitted(const char *flag, char *const *pf)
{
	bool keyword = flag[0] != '\\';

	if (pf == NULL)
		return true;
	for (; *pf != NULL; pf++) {
		if (str_ieq(*pf, flag))
			return true;
		if (keyword && strcmp(*pf, "\\*") == 0)
			return true;
	}
	return false;
}

char *
flags_filter(const char *canonical, char *const *permanentflags,
             char **dropped_r)
{
	struct buf keep, drop;
	char *dup = xstrdup(canonical), *p, *next;

	buf_init(&keep, SIZE_MAX / 2);
	buf_init(&drop, SIZE_MAX / 2);
	for (p = dup; p != NULL; p = next) {
		struct buf *b;

		next = strchr(p, ' ');
		if (next != NULL)
			*next++ = '\0';
		if (*p == '\0')
			continue;
		b = permitted(p, permanentflags) ? &keep : &drop;
		if ((buf_len(b) > 0 && buf_append(b, " ", 1) < 0) ||
		    buf_append_str(b, p) < 0)
			fatal("flags too long");
	}
	free(dup);
	if (dropped_r != NULL)
		*dropped_r = buf_take(&drop);
	else
		buf_free(&drop);
	return buf_take(&keep);
}
