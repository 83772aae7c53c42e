#include "uidset.h"

#include "response.h"

#include <stdio.h>
#include <stdlib.h>

int
uidset_format(struct buf *out, const uint32_t *uids, size_t count)
{
	size_t i = 0;

	while (i < count) {
		size_t j = i;

		while (j + 1 < count && uids[j + 1] == uids[j] + 1)
			j++;
		if (i > 0 && buf_append(out, ",", 1) < 0)
			return -1;
		if (j == i ? buf_printf(out, "%u", uids[i]) < 0 :
		             buf_printf(out, "%u:%u", uids[i], uids[j]) < 0)
			return -1;
		i = j + 1;
	}
	return 0;
}

char *
uidset_string(const uint32_t *uids, size_t count)
{
	struct buf b;

	buf_init(&b, SIZE_MAX / 2);
	if (uidset_format(&b, uids, count) < 0)
		fatal("uid set too large");
	return buf_take(&b);
}

struct expand_ctx {
	uint32_t *uids;
	size_t count, alloc;
};

static int
expand_cb(void *ctx, uint32_t num)
{
	struct expand_ctx *e = ctx;

	if (e->count == e->alloc) {
		e->alloc = e->alloc == 0 ? 64 : e->alloc * 2;
		e->uids = xreallocarray(e->uids, e->alloc, sizeof(*e->uids));
	}
	e->uids[e->count++] = num;
	return 0;
}

int
uidset_expand(const char *set, size_t max, uint32_t **uids_r, size_t *count_r)
{
	struct expand_ctx e = { 0 };

	if (imap_seqset_foreach(set, max, expand_cb, &e) < 0) {
		free(e.uids);
		return -1;
	}
	*uids_r = e.uids;
	*count_r = e.count;
	return 0;
}
