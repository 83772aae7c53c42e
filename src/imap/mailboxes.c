#include "mailboxes.h"

#include "log.h"

#include <stdlib.h>
#include <string.h>

struct inv_ctx {
	struct imap_account_info *info;
	size_t alloc;
	bool lsub;
	uint64_t fetch_size;
	uint32_t fetch_count;
	char *error;
};

static struct imap_mailbox_info *
find_box(struct imap_account_info *info, const char *name, size_t len)
{
	for (size_t i = 0; i < info->count; i++)
		if (info->boxes[i].name_len == len &&
		    memcmp(info->boxes[i].name, name, len) == 0)
			return &info->boxes[i];
	return NULL;
}

/* A new folder entry from a LIST or LSUB reply, with these attributes. */
static struct imap_mailbox_info *
add_box(struct inv_ctx *ic, const struct imap_list *l, unsigned attrs)
{
	struct imap_account_info *info = ic->info;
	struct imap_mailbox_info *box;

	if (info->count == ic->alloc) {
		ic->alloc = ic->alloc == 0 ? 16 : ic->alloc * 2;
		info->boxes = xreallocarray(info->boxes, ic->alloc,
		                            sizeof(*info->boxes));
	}
	box = &info->boxes[info->count++];
	memset(box, 0, sizeof(*box));
	box->name = xstrndup(l->name, l->name_len);
	box->name_len = l->name_len;
	box->delimiter = l->delimiter;
	box->attrs = attrs;
	box->attr_names = xcalloc(l->attr_names.count + 1, sizeof(char *));
	for (size_t i = 0; i < l->attr_names.count; i++)
		box->attr_names[i] = xstrdup(l->attr_names.items[i]);
	box->selectable = (attrs & (IMAP_MBOX_NOSELECT |
	                            IMAP_MBOX_NONEXISTENT)) == 0;
	return box;
}

static void
inv_untagged(void *ctx, const struct imap_response *resp)
{
	struct inv_ctx *ic = ctx;
	struct imap_account_info *info = ic->info;
	struct imap_mailbox_info *box;

	if (resp->kind != IMAP_RESP_UNTAGGED)
		return;
	switch (resp->type) {
	case IMAP_UNTAGGED_LIST: {
		const struct imap_list *l = &resp->u.list;

		if (find_box(info, l->name, l->name_len) != NULL)
			return;
		box = add_box(ic, l, l->attrs);
		if (l->attrs & IMAP_MBOX_SUBSCRIBED)
			box->subscribed = true;
		if (str_ieq(box->name, "INBOX") && l->delimiter != '\0')
			info->separator = l->delimiter;
		break;
	}
	case IMAP_UNTAGGED_LSUB:
		/* \Noselect in LSUB: not subscribed, but has subscribed
		 * children (RFC 3501 6.3.9; Courier sends these for "*") */
		if (resp->u.list.attrs & IMAP_MBOX_NOSELECT)
			break;
		box = find_box(info, resp->u.list.name, resp->u.list.name_len);
		/* a subscription to a folder that does not exist (stale, as
		 * old servers have many): kept, as \NonExistent, so that it
		 * is copied exactly */
		if (box == NULL)
			box = add_box(ic, &resp->u.list,
			              IMAP_MBOX_NONEXISTENT | IMAP_MBOX_NOSELECT);
		box->subscribed = true;
		break;
	case IMAP_UNTAGGED_STATUS: {
		const struct imap_status_data *st = &resp->u.status;

		box = find_box(info, st->mailbox, st->mailbox_len);
		if (box == NULL)
			return;
		box->have_status = true;
		box->messages = st->messages;
		box->uidvalidity = st->uidvalidity;
		box->uidnext = st->uidnext;
		box->highestmodseq = st->highestmodseq;
		if (st->have & IMAP_STATUS_SIZE) {
			box->have_size = true;
			box->size = st->size;
			box->size_source = "status";
		}
		break;
	}
	case IMAP_UNTAGGED_NAMESPACE:
		for (int k = 0; k < 3; k++) {
			info->ns_count[k] = resp->u.ns.count[k];
			info->ns[k] = xcalloc(resp->u.ns.count[k] + 1,
			                      sizeof(*info->ns[k]));
			for (size_t i = 0; i < resp->u.ns.count[k]; i++) {
				info->ns[k][i].prefix =
				    xstrdup(resp->u.ns.ns[k][i].prefix);
				info->ns[k][i].delimiter =
				    resp->u.ns.ns[k][i].delimiter;
			}
		}
		break;
	case IMAP_UNTAGGED_FETCH:
		if (resp->u.fetch.have & IMAP_FETCH_RFC822_SIZE) {
			ic->fetch_size += resp->u.fetch.rfc822_size;
			ic->fetch_count++;
		}
		break;
	default:
		break;
	}
}

static void
inv_done(void *ctx, const struct imap_response *tagged, const char *error)
{
	struct inv_ctx *ic = ctx;

	if (ic->error != NULL)
		return;
	if (tagged == NULL)
		ic->error = xstrdup(error);
	else if (tagged->status != IMAP_STATUS_OK)
		ic->error = str_escape_controls(tagged->text); /* to a terminal */
}

/* STATUS replies are not an error to stop for: a folder may vanish. */
static void
status_done(void *ctx, const struct imap_response *tagged, const char *error)
{
	struct inv_ctx *ic = ctx;

	if (tagged == NULL && ic->error == NULL)
		ic->error = xstrdup(error);
}

/* "(MESSAGES UIDVALIDITY UIDNEXT [SIZE] [HIGHESTMODSEQ])" */
static void
add_status_items(struct imap_client *c, struct imap_cmd *cmd, unsigned flags,
                 bool status_size)
{
	imap_cmd_add(cmd, "(MESSAGES UIDVALIDITY UIDNEXT");
	if ((flags & IMAP_INV_SIZE) && status_size)
		imap_cmd_add(cmd, " SIZE");
	if (imap_client_has_cap(c, "CONDSTORE"))
		imap_cmd_add(cmd, " HIGHESTMODSEQ");
	imap_cmd_add(cmd, ")");
}

int
imap_account_inventory(struct imap_client *c, unsigned flags,
                       struct imap_account_info *info, const char **error_r)
{
	struct inv_ctx ic = { .info = info };
	struct imap_cmd *cmd;
	bool status_size = imap_client_has_cap(c, "STATUS=SIZE");
	bool list_status = (flags & (IMAP_INV_STATUS | IMAP_INV_SIZE)) != 0 &&
	                   imap_client_has_cap(c, "LIST-STATUS");

	memset(info, 0, sizeof(*info));
	imap_client_set_untagged(c, inv_untagged, &ic);
	if (imap_client_has_cap(c, "NAMESPACE")) {
		cmd = imap_cmd_new(c);
		imap_cmd_add(cmd, "NAMESPACE");
		imap_cmd_submit(cmd, inv_done, &ic);
	}
	cmd = imap_cmd_new(c);
	if (imap_client_has_cap(c, "LIST-EXTENDED") &&
	    (imap_client_has_cap(c, "SPECIAL-USE") || list_status)) {
		imap_cmd_add(cmd, "LIST \"\" \"*\" RETURN (");
		if (imap_client_has_cap(c, "SPECIAL-USE"))
			imap_cmd_add(cmd, "SPECIAL-USE ");
		imap_cmd_add(cmd, "CHILDREN");
		if (list_status) {
			/* RFC 5819: the STATUS of every folder in the same
			 * reply (\Noselect ones get none) */
			imap_cmd_add(cmd, " STATUS ");
			add_status_items(c, cmd, flags, status_size);
		}
		imap_cmd_add(cmd, ")");
	} else {
		imap_cmd_add(cmd, "LIST \"\" \"*\"");
	}
	imap_cmd_submit(cmd, inv_done, &ic);
	if (flags & IMAP_INV_SUBSCRIBED) {
		cmd = imap_cmd_new(c);
		imap_cmd_add(cmd, "LSUB \"\" \"*\"");
		imap_cmd_submit(cmd, inv_done, &ic);
	}
	if (imap_client_run(c, error_r) < 0 || ic.error != NULL)
		goto fail;

	if (flags & (IMAP_INV_STATUS | IMAP_INV_SIZE)) {
		/* pipelined STATUS for what LIST-STATUS did not cover */
		for (size_t i = 0; i < info->count; i++) {
			if (!info->boxes[i].selectable || info->boxes[i].have_status)
				continue;
			cmd = imap_cmd_new(c);
			imap_cmd_add(cmd, "STATUS ");
			imap_cmd_add_astring(cmd, info->boxes[i].name,
			                     info->boxes[i].name_len);
			imap_cmd_add(cmd, " ");
			add_status_items(c, cmd, flags, status_size);
			imap_cmd_submit(cmd, status_done, &ic);
		}
		if (imap_client_run(c, error_r) < 0 || ic.error != NULL)
			goto fail;
	}
	if ((flags & IMAP_INV_SIZE) && !status_size) {
		for (size_t i = 0; i < info->count; i++) {
			struct imap_mailbox_info *box = &info->boxes[i];

			if (!box->selectable || !box->have_status)
				continue;
			box->have_size = true;
			box->size_source = "fetch";
			if (box->messages == 0)
				continue;
			if (imap_client_select(c, box->name, true, error_r) < 0) {
				log_warn("cannot examine %s: %s", box->name, *error_r);
				box->have_size = false;
				box->size_source = NULL;
				continue;
			}
			ic.fetch_size = 0;
			ic.fetch_count = 0;
			if (imap_client_simple(c, "FETCH 1:* (RFC822.SIZE)",
			                       error_r) < 0)
				goto fail;
			box->size = ic.fetch_size;
		}
	}
	if (info->separator == '\0' && info->ns_count[0] > 0)
		info->separator = info->ns[0][0].delimiter;
	imap_client_set_untagged(c, NULL, NULL);
	return 0;
fail:
	if (ic.error != NULL)
		*error_r = err_set("listing folders: %s", ic.error);
	free(ic.error);
	imap_client_set_untagged(c, NULL, NULL);
	imap_account_info_free(info);
	return -1;
}

void
imap_account_info_free(struct imap_account_info *info)
{
	for (size_t i = 0; i < info->count; i++) {
		struct imap_mailbox_info *box = &info->boxes[i];
		for (char **p = box->attr_names; p != NULL && *p != NULL; p++)
			free(*p);
		free(box->attr_names);
		free(box->name);
	}
	free(info->boxes);
	for (int k = 0; k < 3; k++) {
		for (size_t i = 0; i < info->ns_count[k]; i++)
			free(info->ns[k][i].prefix);
		free(info->ns[k]);
	}
	memset(info, 0, sizeof(*info));
}

const char *
imap_special_use_name(unsigned attrs)
{
	static const struct { unsigned bit; const char *name; } su[] = {
		{ IMAP_MBOX_SENT, "\\Sent" }, { IMAP_MBOX_DRAFTS, "\\Drafts" },
		{ IMAP_MBOX_TRASH, "\\Trash" }, { IMAP_MBOX_JUNK, "\\Junk" },
		{ IMAP_MBOX_ARCHIVE, "\\Archive" }, { IMAP_MBOX_ALL, "\\All" },
		{ IMAP_MBOX_FLAGGED, "\\Flagged" },
	};

	for (size_t i = 0; i < N_ELEMENTS(su); i++)
		if (attrs & su[i].bit)
			return su[i].name;
	return NULL;
}
