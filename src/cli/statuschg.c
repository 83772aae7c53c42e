/* statuschg.c: status per account: when its last pass ended (the jobs of
 * the run) and, with --changes USERS, what changed on the source since:
 * one STATUS of every folder (the inventory plan uses) against the
 * state's last complete pass of the folder, as plan --final does. New
 * messages: UIDNEXT now - UIDNEXT then (capped by MESSAGES); expunged:
 * the messages the target holds for the folder (the state's records, or
 * the Maildir's uidlist) plus the new ones, minus MESSAGES now. */
#include "statuschg.h"

#include "log.h"
#include "maildir.h"
#include "probe.h"
#include "state.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void
status_accts_init(const struct report_data *rep, struct status_acct **v_r,
                  size_t *n_r)
{
	struct status_acct *v = xcalloc(rep->n_accounts + 1, sizeof(*v));

	for (size_t i = 0; i < rep->n_accounts; i++) {
		const struct report_account *a = &rep->accounts[i];

		v[i].src_user = a->src_user;
		v[i].account = a->account;
		/* a pass ended when every job of the account is done */
		if (a->pending == 0 && a->failed == 0 && a->done > 0)
			v[i].last_end = a->finished;
	}
	*v_r = v;
	*n_r = rep->n_accounts;
}

void
status_accts_free(struct status_acct **v, size_t n)
{
	for (size_t i = 0; *v != NULL && i < n; i++)
		free((*v)[i].error);
	free(*v);
	*v = NULL;
}

/* The messages the target holds for the folder of sf, or -1 unknown. */
static int64_t
held_before(const struct sched_account *a, struct state_db *db,
            const struct state_folder *sf)
{
	const char *error;

	if (a->dst_maildir) {
		struct maildir_options mo;
		struct maildir_folder *f = NULL;
		int64_t n;

		maildir_options_init(&mo);
		mo.flavor = a->dst_courier ? MAILDIR_COURIER : MAILDIR_DOVECOT;
		if (maildir_folder_open(a->dst_path, sf->dst_name != NULL ?
		                        sf->dst_name : "", &mo, false, &f,
		                        &error) < 0) {
			log_debug("status: %s: %s", sf->dst_name, error);
			return -1;
		}
		n = (int64_t)maildir_folder_count(f);
		maildir_folder_close(&f);
		return n;
	} else {
		struct state_msg *m = NULL;
		size_t n = 0;

		if (state_msgs_load(db, sf->id, &m, &n, &error) < 0) {
			log_debug("status: %s", error);
			return -1;
		}
		state_msgs_free(&m, n);
		return (int64_t)n;
	}
}

static int
account_changes(const struct sched_account *a, const struct sched_account_est *e,
                struct state_db *db, struct status_acct *s, const char **error_r)
{
	s->checked = true;
	for (size_t k = 0; k < e->n_folders; k++) {
		const struct sched_folder_est *f = &e->folders[k];
		struct state_folder sf;
		uint64_t fresh, gone = 0;
		int64_t held;
		bool found;

		s->folders++;
		if (state_folder_get(db, a->key, f->name, &sf, &found, error_r) < 0)
			return -1;
		if (!found || !sf.complete || sf.src_uidnext == 0 || f->uidnext == 0) {
			/* never copied completely: all of it is to copy */
			s->unknown++;
			s->new_messages += f->messages;
			if (found)
				state_folder_free(&sf);
			continue;
		}
		fresh = f->uidnext > sf.src_uidnext ? f->uidnext - sf.src_uidnext : 0;
		if (fresh > f->messages)
			fresh = f->messages;
		if ((held = held_before(a, db, &sf)) >= 0 &&
		    (uint64_t)held + fresh > f->messages)
			gone = (uint64_t)held + fresh - f->messages;
		if (fresh > 0 || gone > 0)
			s->changed++;
		s->new_messages += fresh;
		s->expunged += gone;
		state_folder_free(&sf);
	}
	return 0;
}

int
status_changes(struct run_cli *c, struct state_db *db, struct status_acct *v,
               size_t n)
{
	struct sched_probe_options po = { 0 };
	struct sched_account_est *est;
	const char *error;
	int status;

	if ((status = run_cli_setup_accounts(c)) != 0)
		return status;
	po.sessions = run_cli_max_concurrency(c);
	po.src_slots = c->src_slots;
	po.dst_slots = c->dst_slots;
	po.md = &c->md;
	est = xcalloc(c->n_accounts + 1, sizeof(*est));
	log_info("status: STATUS of every folder of %zu accounts (%u sessions "
	         "at once)", c->n_accounts, po.sessions);
	if (sched_inventory(c->accounts, c->n_accounts, &po, est, &error) < 0) {
		fprintf(stderr, "imapferry: %s\n", error);
		status = CLI_EXIT_ERROR;
		goto out;
	}
	status = CLI_EXIT_OK;
	for (size_t i = 0; i < c->n_accounts && status == CLI_EXIT_OK; i++) {
		struct status_acct *s = NULL;

		for (size_t k = 0; k < n && s == NULL; k++)
			if (strcmp(v[k].account, c->accounts[i].key) == 0)
				s = &v[k];
		if (s == NULL)
			continue;     /* not in this run */
		if (est[i].error != NULL) {
			s->error = xstrdup(est[i].error);
			continue;
		}
		if (account_changes(&c->accounts[i], &est[i], db, s, &error) < 0) {
			fprintf(stderr, "imapferry: %s\n", error);
			status = CLI_EXIT_ERROR;
		}
	}
out:
	for (size_t i = 0; i < c->n_accounts; i++)
		sched_account_est_free(&est[i]);
	free(est);
	return status;
}

void
status_accts_text(struct buf *out, const struct status_acct *v, size_t n,
                  int64_t now)
{
	int w = 8;

	if (n == 0)
		return;
	for (size_t i = 0; i < n; i++)
		if ((int)strlen(v[i].src_user) > w)
			w = (int)strlen(v[i].src_user);
	ignore_result(buf_printf(out, "\naccounts (last pass%s):\n",
	                         v[0].checked || v[0].error != NULL ?
	                         ", changes on the source since" : ""));
	for (size_t i = 0; i < n; i++) {
		const struct status_acct *s = &v[i];

		ignore_result(buf_printf(out, "  %-*s ", w, s->src_user));
		if (s->last_end > 0) {
			char when[32], ago[32];
			time_t t = (time_t)s->last_end;
			struct tm tm;

			gmtime_r(&t, &tm);
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
			report_fmt_duration(ago, sizeof(ago),
			                    (double)(now - s->last_end));
			ignore_result(buf_printf(out, "last pass ended %s (%s ago)",
			                         when, ago));
		} else {
			ignore_result(buf_printf(out, "no complete pass"));
		}
		if (s->error != NULL)
			ignore_result(buf_printf(out, "; changes unknown: %s", s->error));
		else if (s->checked)
			ignore_result(buf_printf(out, "; since: %" PRIu64 " new, %" PRIu64
			    " expunged in %zu of %zu folders%s", s->new_messages,
			    s->expunged, s->changed + s->unknown, s->folders,
			    s->unknown > 0 ? " (some never copied completely)" : ""));
		ignore_result(buf_append_str(out, "\n"));
	}
}

void
status_accts_json(struct json *j, const struct status_acct *v, size_t n)
{
	json_arr_begin(j);
	for (size_t i = 0; i < n; i++) {
		const struct status_acct *s = &v[i];

		json_obj_begin(j);
		json_key(j, "src_user"); json_str(j, s->src_user);
		json_key(j, "account"); json_str(j, s->account);
		json_key(j, "last_pass_ended"); json_i64(j, s->last_end);
		json_key(j, "changes");
		if (!s->checked) {
			json_null(j);
		} else {
			json_obj_begin(j);
			json_key(j, "folders"); json_u64(j, s->folders);
			json_key(j, "changed_folders"); json_u64(j, s->changed);
			json_key(j, "never_complete_folders"); json_u64(j, s->unknown);
			json_key(j, "new_messages"); json_u64(j, s->new_messages);
			json_key(j, "expunged_messages"); json_u64(j, s->expunged);
			json_obj_end(j);
		}
		json_key(j, "error");
		if (s->error != NULL)
			json_str(j, s->error);
		else
			json_null(j);
		json_obj_end(j);
	}
	json_arr_end(j);
}
