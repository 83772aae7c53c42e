/* target-imap.c: the IMAP target driver (target.h). The server chooses
 * UIDs (APPENDUID tells them): the pass keeps the source UID -> target UID
 * map in the state database.
 *
 * Pipelining: APPEND with LITERAL+ when offered (synchronizing literals
 * otherwise), grouped into MULTIAPPEND when offered (1,024 messages or a
 * hundredth of the folder, up to 8,192, and at most 8 MiB), 16 commands in
 * flight. A group the server refuses for a message's sake is copied again
 * in halves (sink->retry), down to the bad message alone, so it cannot
 * sink its neighbours. What a refusal means comes from its response code
 * (RFC 5530), never from its text. */
#include "target.h"

#include "copy.h"
#include "flags.h"
#include "log.h"
#include "mailboxes.h"
#include "uidset.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct imap_target {
	struct target t;
	struct imap_client *client;
	struct imap_keep *keep;   /* client's keepalive slot, or NULL */
	struct imap_account_info info;  /* folders and subscriptions */
	bool have_info;
	/* the open folder */
	char *name;
	uint32_t uidvalidity;
	char **pflags;            /* PERMANENTFLAGS */
	uint64_t mem_out;         /* bytes of in-memory bodies in APPENDs not
	                           * yet answered (APPEND_MEM_MAX) */
	uint64_t folder_size;     /* messages: EXISTS at SELECT + appended */
};

/* In-memory bodies in unanswered APPENDs, at most (bodies above the
 * spool threshold are in files and do not count): the pipeline's depth
 * alone let 16 groups of up to 8 MiB each stay in memory, 128 MB of
 * peak RSS for one account. */
#define APPEND_MEM_MAX (8u * 1024 * 1024)
/* Messages per MULTIAPPEND (and at most 8 MiB). Dovecot's cost per
 * APPEND command grows with the folder (it re-syncs the mailbox each
 * time, ~1 us per message in it): appending 5,000 small messages to a
 * 100,000-message folder took 14.6 s of its CPU in groups of 32 and 0.95 s
 * in groups of 1,024 (bench/appendgroup.py, issue 15). So a group holds
 * 1,024 messages, or a hundredth of the folder when that is more, up to
 * 8,192: the server's cost per message then stays the same as the folder
 * grows. A group the target refuses is retried in halves: a bad message
 * costs about 2 x log2(group) more APPENDs. */
#define APPEND_GROUP_MIN 1024
#define APPEND_GROUP_MAX 8192

struct append_group {
	struct imap_target *it;
	size_t count;
	uint32_t *uids;
	char **flags;
	int64_t *dates;
	uint64_t *sizes;
	uint64_t mem;             /* its in-memory bodies' bytes */
};

static struct imap_target *
IT(struct target *t)
{
	return (struct imap_target *)t;
}

static const struct imap_mailbox_info *
find_box(const struct imap_account_info *info, const char *name)
{
	for (size_t i = 0; i < info->count; i++)
		if (strcmp(info->boxes[i].name, name) == 0 ||
		    (str_ieq(name, "INBOX") && str_ieq(info->boxes[i].name, "INBOX")))
			return &info->boxes[i];
	return NULL;
}

/* A tagged reply that failed, as an error of its kind (by code). */
static const char *
reply_error(const struct imap_cmd_wait *w, enum err_kind dflt, const char *what)
{
	if (w->lost)
		return err_setk(ERRK_SESSION, "%s", w->error);
	return err_setk(imap_code_err_kind(w->code, dflt), "%s: %s", what,
	                w->error);
}

/* --------------------------------------------------------- sessions */

static void
imap_disconnect(struct target *t)
{
	struct imap_target *it = IT(t);

	imap_keep_remove(&it->keep);
	if (it->client != NULL)
		imap_client_free(&it->client);
	if (it->have_info) {
		imap_account_info_free(&it->info);
		it->have_info = false;
	}
}

static void
imap_logout(struct target *t)
{
	struct imap_target *it = IT(t);

	imap_keep_remove(&it->keep);
	if (it->client != NULL)
		imap_client_logout(&it->client);
}

static int
imap_connect(struct target *t, const char **error_r)
{
	struct imap_target *it = IT(t);
	bool refused = false;

	imap_disconnect(t);
	if (t->spec->adopt != NULL && *t->spec->adopt != NULL) {
		it->client = *t->spec->adopt;
		*t->spec->adopt = NULL;
	} else if (imap_client_connect(t->spec->imap, &it->client, &refused,
	                               error_r) < 0) {
		if (refused)
			*error_r = err_setk(ERRK_AUTH, "%s", *error_r);
		return -1;
	}
	if (imap_account_inventory(it->client, IMAP_INV_SUBSCRIBED, &it->info,
	                           error_r) < 0) {
		*error_r = err_wrap(*error_r, "%s", *error_r);
		return -1;
	}
	it->have_info = true;
	/* the session waits between calls: the keeper's then */
	it->keep = imap_keep_add(t->keeper, it->client, "target");
	imap_keep_park(it->keep);
	return 0;
}

static void
imap_setup_foldermap(struct target *t, struct foldermap *fm)
{
	struct imap_target *it = IT(t);

	for (size_t i = 0; i < it->info.count; i++) {
		unsigned su = it->info.boxes[i].attrs & IMAP_MBOX_SPECIAL_USE_MASK;

		for (unsigned bit = 1; su != 0 && bit != 0; bit <<= 1)
			if (su & bit)
				foldermap_set_dst_special(fm, bit, it->info.boxes[i].name);
	}
}

static int
imap_folder_name(struct target *t, const char *wire, char **name_r,
                 const char **error_r)
{
	(void)t;
	(void)error_r;
	*name_r = xstrdup(wire);
	return 0;
}

static bool
imap_folder_exists(struct target *t, const char *name)
{
	struct imap_target *it = IT(t);

	return it->have_info && find_box(&it->info, name) != NULL;
}

/* ---------------------------------------------------------- folders */

static int
do_open_folder(struct target *t, const struct target_open *o,
                 struct target_folder_info *info, const char **error_r)
{
	struct imap_target *it = IT(t);
	const struct imap_mailbox_info *b = find_box(&it->info, o->name);
	const struct imap_mailbox_state *mb;
	const char *error;

	free(it->name);
	it->name = xstrdup(o->name);
	it->uidvalidity = 0;
	strv_free(&it->pflags);
	memset(info, 0, sizeof(*info));
	/* a \Noselect or \NonExistent parent that a child implies is listed
	 * but must still be created */
	if (b == NULL || !b->selectable) {
		struct imap_cmd_wait w = { 0 };
		struct imap_cmd *cmd;

		if (o->dry_run) {
			info->missing = true;
			return 0;
		}
		cmd = imap_cmd_new(it->client);
		imap_cmd_add(cmd, "CREATE ");
		imap_cmd_add_astring(cmd, o->name, strlen(o->name));
		imap_cmd_submit(cmd, imap_cmd_wait_done, &w);
		if (imap_client_run(it->client, &error) < 0) {
			*error_r = err_setk(ERRK_SESSION, "target: %s", error);
			free(w.error);
			return -1;
		}
		/* created by someone else meanwhile: fine (by code only) */
		if (w.error != NULL && (w.lost || w.code != IMAP_CODE_ALREADYEXISTS)) {
			*error_r = reply_error(&w, ERRK_FOLDER, "cannot create the folder "
			                       "on the target");
			free(w.error);
			return -1;
		}
		info->created = w.error == NULL;
		free(w.error);
	}
	if (imap_client_select(it->client, o->name, o->dry_run, &error) < 0) {
		*error_r = imap_client_is_dead(it->client) ?
		    err_setk(ERRK_SESSION, "target: %s", error) :
		    err_setk(ERRK_FOLDER, "cannot select the folder on the target: %s",
		             error);
		return -1;
	}
	mb = imap_client_mailbox(it->client);
	it->uidvalidity = mb->uidvalidity;
	it->folder_size = mb->exists;
	it->pflags = strv_dup(mb->permanentflags);
	info->uidvalidity = mb->uidvalidity;
	info->uidnext = mb->uidnext;
	info->exists = mb->exists;
	if (mb->exists == 0)
		info->uidnext = 0;    /* nothing to match */
	return 0;
}

static int
do_fingerprints(struct target *t, uint32_t from, struct msgsum_list *list,
                  const char **error_r)
{
	struct imap_target *it = IT(t);
	char set[32];

	snprintf(set, sizeof(set), "%u:*", from != 0 ? from : 1);
	if (msgsum_fetch(it->client, set, MSGSUM_FP, list, error_r) < 0) {
		*error_r = err_setk(ERRK_SESSION, "%s", *error_r);
		return -1;
	}
	/* "n:*" also returns the last message when n is past the end */
	while (list->count > 0 && list->items[0].uid < from) {
		free(list->items[0].flags);
		free(list->items[0].message_id);
		memmove(list->items, list->items + 1,
		        (list->count - 1) * sizeof(*list->items));
		list->count--;
	}
	return 0;
}

/* ------------------------------------------------------- appending */

static size_t
do_batch_max(struct target *t, bool single)
{
	struct imap_target *it = IT(t);

	if (single || !imap_client_has_cap(it->client, "MULTIAPPEND"))
		return 1;
	if (t->spec->multiappend_max != 0)
		return t->spec->multiappend_max;
	if (it->folder_size / 100 <= APPEND_GROUP_MIN)
		return APPEND_GROUP_MIN;
	return it->folder_size / 100 < APPEND_GROUP_MAX ?
	    (size_t)(it->folder_size / 100) : APPEND_GROUP_MAX;
}

static void
group_free(struct append_group *g)
{
	for (size_t i = 0; i < g->count; i++)
		free(g->flags[i]);
	free(g->uids);
	free(g->flags);
	free(g->dates);
	free(g->sizes);
	free(g);
}

static void
append_done(void *ctx, const struct imap_response *tagged, const char *error)
{
	struct append_group *g = ctx;
	struct imap_target *it = g->it;
	const struct target_sink *sink = &it->t.sink;
	uint32_t *dst_uids = NULL;
	size_t n_dst = 0;

	it->mem_out -= g->mem;

	if (tagged == NULL) {
		sink->failed(sink->ctx, ERRK_SESSION, error);
	} else if (tagged->status != IMAP_STATUS_OK) {
		enum err_kind kind = imap_code_err_kind(tagged->code.type,
		                                        ERRK_MESSAGE);
		char *raw = tagged->code.name[0] != '\0' ?
		    xasprintf("[%s] %s", tagged->code.name, tagged->text) :
		    xstrdup(tagged->text);
		char *text = str_escape_controls(raw);

		free(raw);

		if (kind == ERRK_MESSAGE && g->count > 1) {
			/* one bad message fails the whole MULTIAPPEND: copy
			 * them again in halves, down to the one alone */
			for (size_t i = 0; i < g->count; i++)
				sink->retry(sink->ctx, g->uids[i], g->count);
		} else if (kind == ERRK_MESSAGE) {
			sink->refused(sink->ctx, g->uids[0], kind, text);
		} else {
			char *why = xasprintf("target refused APPEND to %s: %s",
			                      it->name, text);

			sink->failed(sink->ctx, kind, why);
			free(why);
		}
		free(text);
	} else {
		if (tagged->code.type == IMAP_CODE_APPENDUID &&
		    tagged->code.uidvalidity == it->uidvalidity &&
		    (uidset_expand(tagged->code.set1, g->count, &dst_uids, &n_dst) < 0 ||
		     n_dst != g->count)) {
			free(dst_uids);
			dst_uids = NULL;
		}
		it->folder_size += g->count;
		for (size_t i = 0; i < g->count; i++)
			sink->delivered(sink->ctx, g->uids[i],
			                dst_uids != NULL ? dst_uids[i] : 0,
			                g->flags[i], g->sizes[i], g->dates[i]);
		free(dst_uids);
	}
	group_free(g);
}

/* One APPEND (MULTIAPPEND for several) for the list of messages. */
static void
do_deliver(struct target *t, struct cmsg *list)
{
	struct imap_target *it = IT(t);
	struct imap_cmd *cmd = imap_cmd_new(it->client);
	struct append_group *g = xcalloc(1, sizeof(*g));
	size_t n = 0;

	for (struct cmsg *m = list; m != NULL; m = m->next)
		n++;
	g->it = it;
	g->uids = xcalloc(n, sizeof(*g->uids));
	g->flags = xcalloc(n, sizeof(*g->flags));
	g->dates = xcalloc(n, sizeof(*g->dates));
	g->sizes = xcalloc(n, sizeof(*g->sizes));
	imap_cmd_add(cmd, "APPEND ");
	imap_cmd_add_astring(cmd, it->name, strlen(it->name));
	while (list != NULL) {
		struct cmsg *m = list;
		char date[32], *dropped = NULL;
		char *keep = flags_filter(m->flags, it->pflags, &dropped);

		list = m->next;
		if (dropped[0] != '\0')
			t->sink.dropped(t->sink.ctx, m->uid, dropped);
		free(dropped);
		imap_format_datetime((time_t)m->internaldate, date);
		imap_cmd_addf(cmd, " (%s) \"%s\" ", keep, date);
		free(keep);
		if (m->fd >= 0) {
			imap_cmd_add_literal_fd(cmd, m->fd, m->size);
			m->fd = -1;
		} else {
			imap_cmd_add_literal_take(cmd, m->data, (size_t)m->size);
			m->data = NULL;
			g->mem += m->size;
		}
		g->uids[g->count] = m->uid;
		g->flags[g->count] = m->flags;
		m->flags = NULL;
		g->dates[g->count] = m->internaldate;
		g->sizes[g->count] = m->size;
		g->count++;
		cmsg_free(&m);
	}
	it->mem_out += g->mem;
	imap_cmd_submit(cmd, append_done, g);
}

/* Submitted and not yet answered: a command still queued counts (the
 * client sends them once more than the depth are outstanding, or at a
 * wait for all). */
static unsigned
do_in_flight(struct target *t)
{
	struct imap_client *c = IT(t)->client;

	return imap_client_in_flight(c) + imap_client_queued(c);
}

static int
do_wait(struct target *t, bool all, const char **error_r)
{
	struct imap_target *it = IT(t);
	unsigned depth = t->spec->append_depth != 0 ? t->spec->append_depth : 16;
	int r = all ? imap_client_run(it->client, error_r) :
	              imap_client_run_until_below(it->client, depth, error_r);

	/* and until the unanswered groups' bodies fit APPEND_MEM_MAX */
	while (r == 0 && !all && it->mem_out > APPEND_MEM_MAX) {
		unsigned n = do_in_flight(t);

		if (n == 0)
			break;
		r = imap_client_run_until_below(it->client, n - 1, error_r);
	}

	if (r < 0)
		*error_r = err_setk(ERRK_SESSION, "%s", *error_r);
	return r;
}

static int
imap_commit(struct target *t, const char **error_r)
{
	(void)t;
	(void)error_r;
	return 0;             /* an OK to APPEND is the commit */
}

static unsigned
imap_commit_every(struct target *t)
{
	(void)t;
	return 0;
}

/* ------------------------------------------------- flags, expunges */

/* Sorts pointers to flag changes by (flags, target UID). */
static int
cmp_flag_change(const void *a, const void *b)
{
	const struct target_flags *x = *(const struct target_flags *const *)a;
	const struct target_flags *y = *(const struct target_flags *const *)b;
	int c = strcmp(x->flags, y->flags);

	if (c != 0)
		return c;
	return x->dst_uid < y->dst_uid ? -1 : x->dst_uid > y->dst_uid;
}

/* One UID STORE per distinct flag set: the changes sorted by (flags, UID),
 * each run of equal flags one command (sorting, not a pairwise search:
 * a pass of many distinct keyword sets stays O(n log n)). */
static int
do_set_flags(struct target *t, const struct target_flags *f, size_t n,
               const char **error_r)
{
	struct imap_target *it = IT(t);
	struct imap_cmd_wait w = { 0 };
	const struct target_flags **v = xcalloc(n + 1, sizeof(*v));
	uint32_t *uids = xcalloc(n + 1, sizeof(uint32_t));
	const char *error;
	int ret = 0;

	for (size_t i = 0; i < n; i++)
		v[i] = &f[i];
	qsort(v, n, sizeof(*v), cmp_flag_change);
	for (size_t i = 0, j; i < n; i = j) {
		size_t k = 0;
		char *keep, *set;
		struct imap_cmd *cmd;

		for (j = i; j < n && strcmp(v[j]->flags, v[i]->flags) == 0; j++)
			uids[k++] = v[j]->dst_uid;
		keep = flags_filter(v[i]->flags, it->pflags, NULL);
		set = uidset_string(uids, k);
		cmd = imap_cmd_new(it->client);
		imap_cmd_addf(cmd, "UID STORE %s FLAGS.SILENT (%s)", set, keep);
		imap_cmd_submit(cmd, imap_cmd_wait_done, &w);
		free(set);
		free(keep);
		if (imap_client_run_until_below(it->client, 16, &error) < 0)
			break;
	}
	if (imap_client_run(it->client, &error) < 0) {
		*error_r = err_setk(ERRK_SESSION, "%s", error);
		ret = -1;
	} else if (w.error != NULL) {
		*error_r = reply_error(&w, ERRK_FOLDER, "target refused a flag change");
		ret = -1;
	}
	free(w.error);
	free(v);
	free(uids);
	return ret;
}

static int
do_expunge(struct target *t, const uint32_t *uids, size_t n, size_t *done_r,
             const char **error_r)
{
	struct imap_target *it = IT(t);
	struct imap_cmd_wait w = { 0 };
	struct imap_cmd *cmd;
	const char *error;
	char *set;

	*done_r = 0;
	if (!imap_client_has_cap(it->client, "UIDPLUS")) {
		log_warn("%s: the target lacks UIDPLUS: not expunging %zu "
		         "messages deleted on the source", it->name, n);
		return 0;
	}
	set = uidset_string(uids, n);
	cmd = imap_cmd_new(it->client);
	imap_cmd_addf(cmd, "UID STORE %s +FLAGS.SILENT (\\Deleted)", set);
	imap_cmd_submit(cmd, imap_cmd_wait_done, &w);
	cmd = imap_cmd_new(it->client);
	imap_cmd_addf(cmd, "UID EXPUNGE %s", set);
	imap_cmd_submit(cmd, imap_cmd_wait_done, &w);
	free(set);
	if (imap_client_run(it->client, &error) < 0) {
		*error_r = err_setk(ERRK_SESSION, "%s", error);
		free(w.error);
		return -1;
	}
	if (w.error != NULL) {
		*error_r = reply_error(&w, ERRK_FOLDER, "target refused to expunge");
		free(w.error);
		return -1;
	}
	*done_r = n;
	return 0;
}

static int
imap_close_folder(struct target *t, const struct target_close *c,
                  const char **error_r)
{
	(void)t;
	(void)c;
	(void)error_r;
	return 0;
}

static int
do_subscribe(struct target *t, char *const *wires, size_t n, bool dry_run,
               unsigned *count_r, const char **error_r)
{
	struct imap_target *it = IT(t);
	struct imap_cmd_wait w = { 0 };
	const char *error;
	int ret = 0;

	*count_r = 0;
	if (it->client == NULL || imap_client_is_dead(it->client))
		return 0;
	for (size_t i = 0; i < n; i++) {
		const struct imap_mailbox_info *b = find_box(&it->info, wires[i]);
		struct imap_cmd *cmd;

		if (b != NULL && b->subscribed)
			continue;
		(*count_r)++;
		if (dry_run)
			continue;
		cmd = imap_cmd_new(it->client);
		imap_cmd_add(cmd, "SUBSCRIBE ");
		imap_cmd_add_astring(cmd, wires[i], strlen(wires[i]));
		imap_cmd_submit(cmd, imap_cmd_wait_done, &w);
	}
	if (!dry_run && imap_client_run(it->client, &error) < 0) {
		*error_r = err_setk(ERRK_SESSION, "subscribing: %s", error);
		ret = -1;
	} else if (w.error != NULL) {
		*error_r = reply_error(&w, ERRK_FOLDER, "target refused a "
		                       "subscription");
		ret = -1;
	}
	free(w.error);
	return ret;
}

static int
do_remove_folder(struct target *t, const char *name, const char **error_r)
{
	struct imap_target *it = IT(t);
	struct imap_cmd_wait w = { 0 };
	struct imap_cmd *cmd;
	const char *error;
	int ret = 0;

	cmd = imap_cmd_new(it->client);
	imap_cmd_add(cmd, "DELETE ");
	imap_cmd_add_astring(cmd, name, strlen(name));
	imap_cmd_submit(cmd, imap_cmd_wait_done, &w);
	if (imap_client_run(it->client, &error) < 0) {
		*error_r = err_setk(ERRK_SESSION, "%s", error);
		ret = -1;
	} else if (w.error != NULL && (w.lost || w.code != IMAP_CODE_NONEXISTENT)) {
		*error_r = reply_error(&w, ERRK_FOLDER, "target refused DELETE");
		ret = -1;
	}
	free(w.error);
	return ret;
}

/* ------------------------------------------------- the keeper's turns */

/* The session is the driver's only during a call: between calls the
 * keeper may send NOOP on it (keepalive.h). */
static void
take(struct target *t)
{
	imap_keep_take(IT(t)->keep);
}

static void
park(struct target *t)
{
	imap_keep_park(IT(t)->keep);
}

static int
imap_open_folder(struct target *t, const struct target_open *o,
                 struct target_folder_info *info, const char **error_r)
{
	int r;

	take(t);
	r = do_open_folder(t, o, info, error_r);
	park(t);
	return r;
}

static int
imap_fingerprints(struct target *t, uint32_t from, struct msgsum_list *list,
                  const char **error_r)
{
	int r;

	take(t);
	r = do_fingerprints(t, from, list, error_r);
	park(t);
	return r;
}

static size_t
imap_batch_max(struct target *t, bool single)
{
	size_t r;

	take(t);
	r = do_batch_max(t, single);
	park(t);
	return r;
}

static void
imap_deliver(struct target *t, struct cmsg *list)
{
	take(t);
	do_deliver(t, list);
	park(t);
}

static unsigned
imap_in_flight(struct target *t)
{
	unsigned r;

	take(t);
	r = do_in_flight(t);
	park(t);
	return r;
}

static int
imap_wait(struct target *t, bool all, const char **error_r)
{
	int r;

	take(t);
	r = do_wait(t, all, error_r);
	park(t);
	return r;
}

static int
imap_set_flags(struct target *t, const struct target_flags *f, size_t n,
               const char **error_r)
{
	int r;

	take(t);
	r = do_set_flags(t, f, n, error_r);
	park(t);
	return r;
}

static int
imap_expunge(struct target *t, const uint32_t *uids, size_t n, size_t *done_r,
             const char **error_r)
{
	int r;

	take(t);
	r = do_expunge(t, uids, n, done_r, error_r);
	park(t);
	return r;
}

static int
imap_subscribe(struct target *t, char *const *wires, size_t n, bool dry_run,
               unsigned *count_r, const char **error_r)
{
	int r;

	take(t);
	r = do_subscribe(t, wires, n, dry_run, count_r, error_r);
	park(t);
	return r;
}

static int
imap_remove_folder(struct target *t, const char *name, const char **error_r)
{
	int r;

	take(t);
	r = do_remove_folder(t, name, error_r);
	park(t);
	return r;
}

static void
imap_free(struct target *t)
{
	struct imap_target *it = IT(t);

	imap_disconnect(t);
	strv_free(&it->pflags);
	free(it->name);
	free(it);
}

/* What the folder's PERMANENTFLAGS accept. */
static char *
imap_storable_flags(struct target *t, const char *flags)
{
	return flags_filter(flags != NULL ? flags : "", IT(t)->pflags, NULL);
}

static const struct target_ops imap_ops = {
	.name = "imap",
	.keeps_uids = false,
	.ordered = false,
	.connect = imap_connect,
	.disconnect = imap_disconnect,
	.logout = imap_logout,
	.setup_foldermap = imap_setup_foldermap,
	.folder_name = imap_folder_name,
	.folder_exists = imap_folder_exists,
	.open_folder = imap_open_folder,
	.fingerprints = imap_fingerprints,
	.batch_max = imap_batch_max,
	.deliver = imap_deliver,
	.in_flight = imap_in_flight,
	.wait = imap_wait,
	.commit = imap_commit,
	.commit_every = imap_commit_every,
	.set_flags = imap_set_flags,
	.storable_flags = imap_storable_flags,
	.expunge = imap_expunge,
	.close_folder = imap_close_folder,
	.publish = NULL,
	.remove_folder = imap_remove_folder,
	.subscribe = imap_subscribe,
	.free = imap_free,
};

struct target *
target_imap_new(const struct target_spec *spec)
{
	struct imap_target *it = xcalloc(1, sizeof(*it));

	(void)spec;
	it->t.ops = &imap_ops;
	return &it->t;
}
