/* probe.c: inventory and calibration for the plan (see probe.h). */
#include "probe.h"

#include "buf.h"
#include "copy.h"
#include "log.h"
#include "mailboxes.h"
#include "mqueue.h"
#include "source.h"
#include "target.h"

#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SIZE_SCAN_MAX 5000        /* messages whose size is read per folder */
#define UIDS_PER_FETCH 8          /* UIDs per pipelined UID FETCH */
#define SAMPLE_ACCOUNTS 3
#define LOGIN_SAMPLES 7           /* logins timed alone */
#define PAR_MIN_SECONDS 0.5
#define PAR_MAX_REPS 40
#define PROBE_ROUNDS 5            /* the target probe's groups, repeated */
#define PROBE_GROUP_MAX 128       /* messages in its largest group */

bool
sched_check_authzid(const struct imap_client_options *opts,
                    struct imap_client *client, const char *side,
                    const char **error_r)
{
	if (opts->authzid == NULL ||
	    !sched_greeting_ignores_authzid(imap_client_greeting(client)))
		return true;
	*error_r = err_set("%s server %s looks like Courier-IMAP (greeting: "
	                   "\"%.80s\"): Courier ignores the SASL authorization "
	                   "identity and would log the admin %s into the admin's "
	                   "own mailbox instead of %s's; refusing. Give each "
	                   "account its own password (users file) instead of an "
	                   "admin login", side, opts->host,
	                   imap_client_greeting(client), opts->user, opts->authzid);
	return false;
}

static void
slot_take(struct sched_slots *s, const char *key)
{
	if (s != NULL && key != NULL)
		sched_slots_acquire(s, key);
}

static void
slot_give(struct sched_slots *s, const char *key)
{
	if (s != NULL && key != NULL)
		sched_slots_release(s, key);
}

/* ----------------------------------------------------------- inventory */

struct inv_shared {
	const struct sched_account *accounts;
	size_t n;
	const struct sched_probe_options *o;
	struct sched_account_est *est;
	pthread_mutex_t lock;
	size_t next;
	char *fatal;              /* Courier with an authzid */
};

/* The account's selectable folders with their status, from info, into
 * e's folders and totals. */
static void
est_add_folders(struct sched_account_est *e, const struct imap_account_info *info)
{
	e->folders = xcalloc(info->count + 1, sizeof(*e->folders));
	for (size_t k = 0; k < info->count; k++) {
		const struct imap_mailbox_info *b = &info->boxes[k];
		struct sched_folder_est *f;

		if (!b->selectable || !b->have_status ||
		    strlen(b->name) != b->name_len)
			continue;
		f = &e->folders[e->n_folders++];
		f->name = xstrdup(b->name);
		f->messages = b->messages;
		f->uidnext = b->uidnext;
		f->bytes = b->have_size ? b->size : 0;
		f->bytes_estimated = !b->have_size;
		e->messages += f->messages;
		e->bytes += f->bytes;
	}
}

/* An offline source (a copied spool): folders, message counts and bytes
 * from its own index, no session, no slot. */
static void
inventory_offline(const struct sched_account *a, struct sched_account_est *e)
{
	struct imap_account_info info;
	struct source s;
	const char *error;
	bool refused = false;
	double t0 = time_mono_sec();

	source_init_like(&s, a->src_spec);
	if (source_connect(&s, &refused, &error) < 0) {
		e->error = xasprintf("source: %s", error);
		return;
	}
	if (source_inventory(&s, IMAP_INV_STATUS | IMAP_INV_SIZE, &info,
	                     &error) < 0) {
		e->error = xasprintf("source: %s", error);
		source_disconnect(&s);
		return;
	}
	e->separator = info.separator;
	e->prefix = xstrdup("");
	est_add_folders(e, &info);
	imap_account_info_free(&info);
	source_disconnect(&s);
	e->login_seconds = time_mono_sec() - t0;
}

static void
inventory_one(struct inv_shared *sh, size_t i)
{
	const struct sched_account *a = &sh->accounts[i];
	struct sched_account_est *e = &sh->est[i];
	struct imap_account_info info;
	struct imap_client *c = NULL;
	const char *error;
	bool refused = false;
	double t0 = time_mono_sec();
	unsigned flags = IMAP_INV_STATUS;

	e->label = a->src_user;
	if (a->src_spec != NULL && source_is_offline(a->src_spec)) {
		inventory_offline(a, e);
		return;
	}
	slot_take(sh->o->src_slots, a->src_slot);
	if (imap_client_connect(&a->src_opts, &c, &refused, &error) < 0) {
		e->error = xasprintf("source: %s", error);
		e->auth_failed = refused;
		goto out;
	}
	if (!sched_check_authzid(&a->src_opts, c, "source", &error)) {
		e->error = xstrdup(error);
		pthread_mutex_lock(&sh->lock);
		if (sh->fatal == NULL)
			sh->fatal = xstrdup(error);
		pthread_mutex_unlock(&sh->lock);
		goto out;
	}
	/* STATUS SIZE only where the server has it: the fallback (FETCH
	 * RFC822.SIZE of every message) would read every index. */
	if (imap_client_has_cap(c, "STATUS=SIZE"))
		flags |= IMAP_INV_SIZE;
	if (imap_account_inventory(c, flags, &info, &error) < 0) {
		e->error = xasprintf("source: %s", error);
		goto out;
	}
	e->separator = info.separator;
	if (e->separator == '\0' && info.ns_count[0] > 0)
		e->separator = info.ns[0][0].delimiter;
	e->prefix = xstrdup(info.ns_count[0] > 0 ? info.ns[0][0].prefix : "");
	est_add_folders(e, &info);
	imap_account_info_free(&info);
	imap_client_logout(&c);
	e->login_seconds = time_mono_sec() - t0;
out:
	if (c != NULL)
		imap_client_free(&c);
	slot_give(sh->o->src_slots, a->src_slot);
}

static void *
inventory_thread(void *arg)
{
	struct inv_shared *sh = arg;

	for (;;) {
		size_t i;

		pthread_mutex_lock(&sh->lock);
		i = sh->fatal == NULL ? sh->next++ : sh->n;
		pthread_mutex_unlock(&sh->lock);
		if (i >= sh->n)
			return NULL;
		inventory_one(sh, i);
	}
}

int
sched_inventory(const struct sched_account *accounts, size_t n,
                const struct sched_probe_options *o,
                struct sched_account_est *est, const char **error_r)
{
	struct inv_shared sh = {
		.accounts = accounts, .n = n, .o = o, .est = est,
	};
	unsigned nthreads = o->sessions > 0 ? o->sessions : 4;
	pthread_t *threads;
	unsigned started = 0;

	memset(est, 0, n * sizeof(*est));
	if (nthreads > n)
		nthreads = n > 0 ? (unsigned)n : 1;
	pthread_mutex_init(&sh.lock, NULL);
	threads = xcalloc(nthreads, sizeof(*threads));
	for (unsigned t = 0; t < nthreads; t++)
		if (pthread_create(&threads[t], NULL, inventory_thread, &sh) == 0)
			started++;
		else
			break;
	if (started == 0)
		(void)inventory_thread(&sh);
	for (unsigned t = 0; t < started; t++)
		pthread_join(threads[t], NULL);
	free(threads);
	pthread_mutex_destroy(&sh.lock);
	if (sh.fatal != NULL) {
		*error_r = err_set("%s", sh.fatal);
		free(sh.fatal);
		return -1;
	}
	return 0;
}

/* --------------------------------------------------------- calibration */

/* Streamed literals (above the parser's in-memory limit) are counted and
 * dropped. */
static void *
discard_begin(void *ctx, uint64_t size)
{
	static char handle;

	(void)ctx;
	(void)size;
	return &handle;
}

static int
discard_data(void *ctx, void *handle, const void *data, size_t len)
{
	return 0;
}

static int
discard_end(void *ctx, void *handle)
{
	return 0;
}

static void
discard_abort(void *ctx, void *handle)
{
}

static const struct imap_literal_sink discard_sink = {
	.begin = discard_begin, .data = discard_data, .end = discard_end,
	.abort = discard_abort, .release = discard_abort,
};

struct msg_size {
	uint32_t uid;
	uint64_t size;
};

struct size_scan {
	struct msg_size *v;
	size_t n, alloc;
};

static void
size_untagged(void *ctx, const struct imap_response *r)
{
	struct size_scan *s = ctx;

	if (r->type != IMAP_UNTAGGED_FETCH ||
	    (r->u.fetch.have & (IMAP_FETCH_UID | IMAP_FETCH_RFC822_SIZE)) !=
	    (IMAP_FETCH_UID | IMAP_FETCH_RFC822_SIZE))
		return;
	if (s->n == s->alloc) {
		s->alloc = s->alloc == 0 ? 256 : s->alloc * 2;
		s->v = xreallocarray(s->v, s->alloc, sizeof(*s->v));
	}
	s->v[s->n].uid = r->u.fetch.uid;
	s->v[s->n].size = r->u.fetch.rfc822_size;
	s->n++;
}

static int
cmp_size(const void *a, const void *b)
{
	const struct msg_size *x = a, *y = b;

	if (x->size != y->size)
		return x->size < y->size ? -1 : 1;
	return x->uid < y->uid ? -1 : x->uid > y->uid;
}

struct fetch_wait {
	char *error;
	unsigned pending;
};

static void
fetch_done(void *ctx, const struct imap_response *tagged, const char *error)
{
	struct fetch_wait *w = ctx;

	w->pending--;
	if (w->error != NULL)
		return;
	if (tagged == NULL)
		w->error = xstrdup(error);
	else if (tagged->status != IMAP_STATUS_OK)
		w->error = xasprintf("UID FETCH: %s", tagged->text);
}

/* Fetches the bodies of msgs (pipelined, discarded). Returns 0 or -1. */
static int
fetch_bodies(struct imap_client *c, const struct msg_size *msgs, size_t n,
             const char **error_r)
{
	struct fetch_wait w = { 0 };

	for (size_t i = 0; i < n; i += UIDS_PER_FETCH) {
		struct imap_cmd *cmd = imap_cmd_new(c);
		size_t end = i + UIDS_PER_FETCH < n ? i + UIDS_PER_FETCH : n;

		imap_cmd_add(cmd, "UID FETCH ");
		for (size_t k = i; k < end; k++)
			imap_cmd_addf(cmd, "%s%u", k > i ? "," : "", msgs[k].uid);
		imap_cmd_add(cmd, " (UID BODY.PEEK[])");
		w.pending++;
		imap_cmd_submit(cmd, fetch_done, &w);
	}
	if (imap_client_run(c, error_r) < 0) {
		free(w.error);
		return -1;
	}
	if (w.error != NULL) {
		*error_r = err_set("%s", w.error);
		free(w.error);
		return -1;
	}
	return 0;
}

/* Chooses up to max messages at evenly spaced size ranks of sorted (by
 * size) within max_bytes, dropping the largest first. */
static size_t
choose_sample(const struct msg_size *sorted, size_t n, unsigned max,
              uint64_t max_bytes, struct msg_size *out)
{
	size_t m = n < max ? n : max, k = 0;
	uint64_t bytes = 0;

	for (size_t i = 0; i < m; i++) {
		size_t idx = m > 1 ? i * (n - 1) / (m - 1) : 0;

		if (k > 0 && out[k - 1].uid == sorted[idx].uid)
			continue;
		out[k++] = sorted[idx];
		bytes += sorted[idx].size;
	}
	while (k > 1 && bytes > max_bytes) {
		bytes -= out[k - 1].size;
		k--;
	}
	return k;
}

/* Sorts by UID (the server reads a folder in order). */
static int
cmp_uid(const void *a, const void *b)
{
	const struct msg_size *x = a, *y = b;

	return x->uid < y->uid ? -1 : x->uid > y->uid;
}

/* ------------------------------------------------- APPEND helpers */

/* Runs "VERB mailbox" (the name quoted or sent as a literal). */
static int
mailbox_command(struct imap_client *c, const char *verb, const char *name,
                const char **error_r)
{
	struct imap_cmd_wait w = { 0 };
	struct imap_cmd *cmd = imap_cmd_new(c);

	imap_cmd_addf(cmd, "%s ", verb);
	imap_cmd_add_astring(cmd, name, strlen(name));
	imap_cmd_submit(cmd, imap_cmd_wait_done, &w);
	if (imap_client_run(c, error_r) < 0) {
		free(w.error);
		return -1;
	}
	if (w.error != NULL) {
		*error_r = err_set("%s %s: %s", verb, name, w.error);
		free(w.error);
		return -1;
	}
	return 0;
}

/* ------------------------------------------- probe folders */

/* Probe folders in a user's target mailbox are named
 * "<prefix>imapferry-probe-h<host id>-<pid>[-<n>]": the name itself is the
 * record of who made it (the 8 hex digits hash this host's name: no '.'
 * or other separator of any server), so the next probe on the same host
 * removes what a killed run left (its pid gone) before making its own,
 * with no state database (plan runs without one). */
#define PROBE_TAG "imapferry-probe-"

static uint32_t
probe_host_id(void)
{
	char host[256];
	uint32_t h = 2166136261u;

	if (gethostname(host, sizeof(host)) < 0)
		str_copy(host, "localhost", sizeof(host));
	host[sizeof(host) - 1] = '\0';
	for (const char *p = host; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return h;
}

/* A new string: the probe folder name; index < 0: none. */
static char *
probe_folder_name(const char *prefix, int index)
{
	if (index < 0)
		return xasprintf("%s" PROBE_TAG "h%08x-%ld", prefix,
		                 (unsigned)probe_host_id(), (long)getpid());
	return xasprintf("%s" PROBE_TAG "h%08x-%ld-%d", prefix,
	                 (unsigned)probe_host_id(), (long)getpid(), index);
}

/* true if name (without the prefix) is a probe folder a dead process of
 * this host made: "h<our id>-<pid>[-<n>]", or the older "<pid>[-<n>]"
 * of versions that did not name the host; with own, one this process
 * made. */
static bool
probe_folder_stale(const char *name, uint32_t host_id, bool own)
{
	const char *p = name;
	char *end;
	long pid;

	if (strncmp(p, PROBE_TAG, strlen(PROBE_TAG)) != 0)
		return false;
	p += strlen(PROBE_TAG);
	if (*p == 'h') {
		unsigned long id = strtoul(p + 1, &end, 16);

		if (end != p + 9 || *end != '-' || id != host_id)
			return false;
		p = end + 1;
	}
	if (*p < '0' || *p > '9')
		return false;
	pid = strtol(p, &end, 10);
	if (*end == '-') {
		const char *q = end + 1;

		if (*q < '0' || *q > '9')
			return false;
		(void)strtol(q, &end, 10);
	}
	if (*end != '\0' || pid <= 0 || pid > INT32_MAX)
		return false;
	if (own || (pid_t)pid == getpid())
		return own && (pid_t)pid == getpid();
	return kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

/* Deletes the probe folders a killed plan or run of this host left in
 * the account (listed in info); with own, this process's. Failures are
 * logged, not fatal. */
static void
remove_stale_probes(struct imap_client *c, const struct imap_account_info *info,
                    const char *prefix, const char *user, bool own)
{
	uint32_t id = probe_host_id();
	size_t plen = strlen(prefix);

	for (size_t i = 0; i < info->count; i++) {
		const char *name = info->boxes[i].name;
		const char *err;

		if (info->boxes[i].name_len != strlen(name) ||
		    strncmp(name, prefix, plen) != 0 ||
		    !probe_folder_stale(name + plen, id, own))
			continue;
		if (mailbox_command(c, "DELETE", name, &err) < 0)
			log_warn("plan: could not delete the probe folder %s %s on "
			         "%s: %s", name, own ? "a failed session left" :
			         "a killed run left", user, err);
		else
			log_info("plan: deleted the probe folder %s %s on %s", name,
			         own ? "a failed session left" : "a killed run left",
			         user);
	}
}

/* Removes the scratch folders ".imapferry-probe-<pid>" that a killed
 * Maildir probe of this host left in parent (pid gone). */
static void
remove_stale_md_probes(const char *parent)
{
	DIR *d = opendir(parent);
	struct dirent *de;

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		const char *p = de->d_name, *err;
		char *end;
		long pid;

		if (strncmp(p, "." PROBE_TAG, strlen("." PROBE_TAG)) != 0)
			continue;
		p += strlen("." PROBE_TAG);
		pid = strtol(p, &end, 10);
		if (end == p || *end != '\0' || pid <= 0 || pid > INT32_MAX ||
		    (pid_t)pid == getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		if (maildir_folder_remove(parent, de->d_name, &err) < 0)
			log_warn("plan: could not remove %s/%s a killed run left: %s",
			         parent, de->d_name, err);
	}
	closedir(d);
}

/* A synthetic message of about size bytes. Returns a new buffer. */
static char *
synthetic_message(size_t size, unsigned n, size_t *len_r)
{
	struct buf b;
	static const char line[] =
	    "The quick brown fox jumps over the lazy dog. 0123456789 abcdefghij\r\n";

	buf_init(&b, size + 4096);
	ignore_result(buf_printf(&b, "From: probe@imapferry.invalid\r\n"
	    "To: probe@imapferry.invalid\r\nSubject: imapferry plan probe %u\r\n"
	    "Message-ID: <probe-%u-%ld@imapferry.invalid>\r\n"
	    "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n", n, n,
	    (long)getpid()));
	while (buf_len(&b) + sizeof(line) - 1 <= size)
		ignore_result(buf_append(&b, line, sizeof(line) - 1));
	*len_r = buf_len(&b);
	return buf_take(&b);
}

/* ---------------------------------------------------- parallel measure */

/* One session of the parallel measure: the source half fetches the sample
 * (pipelined, discarded); the target half (append) APPENDs synthetic
 * messages of the sample's sizes to its own scratch folder, as
 * probe_target() does, and deletes the folder afterwards. */
struct par_fetch {
	const struct sched_account *a;
	const char *folder;
	const struct msg_size *msgs;
	size_t n;
	unsigned reps;
	bool append;
	unsigned index;           /* names the scratch folder */
	pthread_barrier_t *barrier;
	double start, end;
	char *error;
	bool maybe_left;          /* its scratch folder may still exist */
};

/* Deletes the probe folders of this process that a failed session of the
 * parallel measure may have left (its CREATE may have reached the server
 * with no reply seen): a plan that ends leaves nothing in a mailbox. */
static void
remove_own_probes(const struct sched_account *a, const struct sched_probe_options *o)
{
	struct imap_client *c = NULL;
	struct imap_account_info info;
	const char *error;

	slot_take(o->dst_slots, a->dst_slot);
	if (imap_client_connect(&a->dst_opts, &c, NULL, &error) < 0 ||
	    imap_account_inventory(c, 0, &info, &error) < 0) {
		log_warn("plan: could not look for probe folders left on %s: %s "
		         "(the next plan or run deletes them)", a->dst_user, error);
	} else {
		remove_stale_probes(c, &info, info.ns_count[0] > 0 ?
		                    info.ns[0][0].prefix : "", a->dst_user, true);
		imap_account_info_free(&info);
	}
	if (c != NULL)
		imap_client_logout(&c);
	slot_give(o->dst_slots, a->dst_slot);
}

static void *
par_fetch_thread(void *arg)
{
	struct par_fetch *p = arg;
	struct imap_client *c = NULL;
	const char *error = NULL;
	bool ok;

	ok = imap_client_connect(&p->a->src_opts, &c, NULL, &error) == 0;
	if (ok) {
		imap_client_set_literal_sink(c, &discard_sink);
		ok = imap_client_select(c, p->folder, true, &error) == 0;
	}
	pthread_barrier_wait(p->barrier);
	p->start = time_mono_sec();
	for (unsigned r = 0; ok && r < p->reps; r++)
		ok = fetch_bodies(c, p->msgs, p->n, &error) == 0;
	p->end = time_mono_sec();
	if (!ok)
		p->error = xstrdup(error != NULL ? error : "failed");
	if (c != NULL)
		imap_client_logout(&c);
	return NULL;
}

/* APPENDs n messages of msgs' sizes to folder, as the copy engine sends
 * them (MULTIAPPEND of up to per_cmd, pipelined). Returns 0 or -1. */
static int
append_sample(struct imap_client *c, const char *folder, unsigned per_cmd,
              char *const *msgs, const size_t *lens, size_t n,
              const char **error_r)
{
	struct imap_cmd_wait w = { 0 };

	for (size_t i = 0; i < n; i += per_cmd) {
		struct imap_cmd *cmd = imap_cmd_new(c);

		imap_cmd_add(cmd, "APPEND ");
		imap_cmd_add_astring(cmd, folder, strlen(folder));
		for (size_t k = i; k < i + per_cmd && k < n; k++) {
			imap_cmd_add(cmd, " (\\Seen) ");
			imap_cmd_add_literal(cmd, msgs[k], lens[k]);
		}
		imap_cmd_submit(cmd, imap_cmd_wait_done, &w);
	}
	if (imap_client_run(c, error_r) < 0) {
		free(w.error);
		return -1;
	}
	if (w.error != NULL) {
		*error_r = err_set("APPEND: %s", w.error);
		free(w.error);
		return -1;
	}
	return 0;
}

static void *
par_append_thread(void *arg)
{
	struct par_fetch *p = arg;
	struct imap_account_info info;
	struct imap_client *c = NULL;
	const char *error = NULL, *err;
	char *folder = NULL, **msgs = xcalloc(p->n + 1, sizeof(*msgs));
	size_t *lens = xcalloc(p->n + 1, sizeof(*lens));
	unsigned per_cmd = 1;
	bool ok, created = false;

	/* made before the clock starts (the copy engine does not) */
	for (size_t k = 0; k < p->n; k++)
		msgs[k] = synthetic_message(p->msgs[k].size, (unsigned)k, &lens[k]);
	ok = imap_client_connect(&p->a->dst_opts, &c, NULL, &error) == 0 &&
	     imap_account_inventory(c, 0, &info, &error) == 0;
	if (ok) {
		per_cmd = imap_client_has_cap(c, "MULTIAPPEND") ? 32 : 1;
		folder = probe_folder_name(info.ns_count[0] > 0 ?
		                           info.ns[0][0].prefix : "", (int)p->index);
		imap_account_info_free(&info);
		ok = created = mailbox_command(c, "CREATE", folder, &error) == 0;
	}
	pthread_barrier_wait(p->barrier);
	p->start = time_mono_sec();
	for (unsigned r = 0; ok && r < p->reps; r++)
		ok = append_sample(c, folder, per_cmd, msgs, lens, p->n,
		                   &error) == 0;
	p->end = time_mono_sec();
	if (!ok)
		p->error = xstrdup(error != NULL ? error : "failed");
	if (created) {
		if (mailbox_command(c, "DELETE", folder, &err) < 0) {
			log_warn("plan: could not delete the probe folder %s on %s: %s",
			         folder, p->a->dst_user, err);
			p->maybe_left = true;
		}
	} else if (folder != NULL) {
		/* a CREATE that failed for want of a reply may have made it */
		if (c == NULL || imap_client_is_dead(c) ||
		    mailbox_command(c, "DELETE", folder, &err) < 0)
			p->maybe_left = true;
	}
	for (size_t k = 0; k < p->n; k++)
		free(msgs[k]);
	free(msgs);
	free(lens);
	free(folder);
	if (c != NULL)
		imap_client_logout(&c);
	return NULL;
}

/* Runs sessions fetchers (reps_f repetitions each; 0: none) and sessions
 * appenders (reps_a; 0: none) at once. Returns the time from the first
 * start to the last end, or -1 (logged) when a session failed. */
static double
par_run(const struct sched_account *a, const char *folder,
        const struct msg_size *msgs, size_t n, unsigned sessions,
        unsigned reps_f, unsigned reps_a, const struct sched_probe_options *o)
{
	unsigned nt = (reps_f > 0 ? sessions : 0) + (reps_a > 0 ? sessions : 0);
	struct par_fetch *pf = xcalloc(nt + 1, sizeof(*pf));
	pthread_t *th = xcalloc(nt + 1, sizeof(*th));
	pthread_barrier_t barrier;
	double first = 0, last = 0;
	bool failed = false;

	pthread_barrier_init(&barrier, NULL, nt);
	for (unsigned i = 0; i < nt; i++) {
		bool app = reps_f == 0 || i >= sessions;

		pf[i] = (struct par_fetch){ .a = a, .folder = folder,
		                            .msgs = msgs, .n = n,
		                            .reps = app ? reps_a : reps_f,
		                            .append = app, .index = i,
		                            .barrier = &barrier };
		if (app)
			slot_take(o->dst_slots, a->dst_slot);
		else
			slot_take(o->src_slots, a->src_slot);
	}
	for (unsigned i = 0; i < nt; i++)
		if (pthread_create(&th[i], NULL, pf[i].append ? par_append_thread :
		                   par_fetch_thread, &pf[i]) != 0)
			fatal("cannot start threads for the parallel measure");
	for (unsigned i = 0; i < nt; i++) {
		pthread_join(th[i], NULL);
		if (pf[i].error != NULL) {
			log_warn("plan: parallel measure: %s", pf[i].error);
			failed = true;
			free(pf[i].error);
		}
		if (i == 0 || pf[i].start < first)
			first = pf[i].start;
		if (pf[i].end > last)
			last = pf[i].end;
		if (pf[i].append)
			slot_give(o->dst_slots, a->dst_slot);
		else
			slot_give(o->src_slots, a->src_slot);
	}
	pthread_barrier_destroy(&barrier);
	for (unsigned i = 0; i < nt; i++)
		if (pf[i].maybe_left) {
			remove_own_probes(a, o);
			break;
		}
	free(pf);
	free(th);
	return failed || last <= first ? -1 : last - first;
}

/* Repetitions for one session to take at least PAR_MIN_SECONDS, from one
 * timed repetition (a few milliseconds would measure only noise). */
static unsigned
par_reps(double one)
{
	double want = one > 0 ? ceil(PAR_MIN_SECONDS / one) : PAR_MAX_REPS;

	return want < 1 ? 1 : want > PAR_MAX_REPS ? PAR_MAX_REPS : (unsigned)want;
}

/* The parallel measure: the work of one session alone, then of P sessions
 * at once (P times the work), then one session alone again; the speedup
 * is P * (mean time alone) / (time of P). A session is a copy in
 * miniature when the target was probed (an IMAP target): a fetcher of the
 * sample and an appender of as many bytes running together, each sized
 * to take about PAR_MIN_SECONDS alone. The copy engine reads and writes
 * at once, and where the source, the target or the client share CPUs or
 * disks, how the whole copy scales is what counts: a fetch-only measure
 * saw 1.2-2.8x at 4 sessions on 2 cores where copies scaled 1.1x. Without
 * a target probe (Maildir targets, --no-probe-target) a session fetches
 * only. */
static void
measure_parallel(const struct sched_account *a, const char *folder,
                 const struct msg_size *msgs, size_t n,
                 const struct sched_probe_options *o, bool pairs,
                 struct sched_cost *cost)
{
	unsigned p = o->par_sessions, reps_f, reps_a = 0;
	double t1, t1b, tp;

	/* size each half from one repetition alone, warm */
	t1 = par_run(a, folder, msgs, n, 1, 1, 0, o);
	if (t1 < 0)
		goto fail;
	reps_f = par_reps(t1);
	if (pairs) {
		t1 = par_run(a, folder, msgs, n, 1, 0, 1, o);
		if (t1 < 0)
			goto fail;
		reps_a = par_reps(t1);
	}
	t1 = par_run(a, folder, msgs, n, 1, reps_f, reps_a, o);
	tp = t1 < 0 ? -1 : par_run(a, folder, msgs, n, p, reps_f, reps_a, o);
	t1b = tp < 0 ? -1 : par_run(a, folder, msgs, n, 1, reps_f, reps_a, o);
	if (t1b < 0)
		goto fail;
	cost->par_sessions = p;
	cost->par_speedup = (double)p * (t1 + t1b) / 2 / tp;
	if (cost->par_speedup > p)
		cost->par_speedup = p;
	if (cost->par_speedup < 1)
		cost->par_speedup = 1;
	return;
fail:
	log_warn("plan: parallel measure skipped");
}

/* ------------------------------------------------------- target probe */

static double median(double *v, size_t n);

/* The fastest of n rounds: each round of a probe group starts with an
 * empty pipeline and ends by draining it, and is hit by whatever else
 * the machine does at that moment; the copy engine keeps its pipeline
 * full for the whole run, which the fastest round comes closest to (on
 * the bench, the median of the rounds over-estimated runs by 20-30 %). */
static double
fastest(const double *v, size_t n)
{
	double m = v[0];

	for (size_t i = 1; i < n; i++)
		if (v[i] < m)
			m = v[i];
	return m;
}

/* The groups of synthetic messages both target probes write: whole
 * MULTIAPPEND commands of 32, as the engine sends them. */
static const struct { size_t size; unsigned count; } probe_groups[] = {
	{ 1024, 128 }, { 16 * 1024, 64 }, { 128 * 1024, 32 },
	{ 1024 * 1024, 8 },
};

/* The target's cost per message and per byte from the groups' rounds. */
static void
fit_target(struct sched_batch batches[N_ELEMENTS(probe_groups)],
           double rounds[N_ELEMENTS(probe_groups)][PROBE_ROUNDS],
           struct sched_cost *cost)
{
	for (size_t g = 0; g < N_ELEMENTS(probe_groups); g++)
		batches[g].seconds = fastest(rounds[g], PROBE_ROUNDS);
	if (sched_cost_fit(batches, N_ELEMENTS(probe_groups), &cost->dst_per_message,
	                   &cost->dst_per_byte) == 0)
		cost->target_probed = true;
}

/* The target probe: the groups APPENDed PROBE_ROUNDS times, each
 * group's time the fastest of its rounds (see fastest()). */
static int
probe_target(const struct sched_account *a, const struct sched_probe_options *o,
             struct sched_cost *cost, const char **error_r)
{
	struct sched_batch batches[N_ELEMENTS(probe_groups)];
	double rounds[N_ELEMENTS(probe_groups)][PROBE_ROUNDS];
	struct imap_account_info info;
	struct imap_client *c = NULL;
	struct imap_cmd_wait w = { 0 };
	char *folder = NULL;
	const char *prefix = "";
	unsigned per_cmd;
	double t_create;
	int ret = -1;
	bool left = false;        /* the probe folder may still exist */

	slot_take(o->dst_slots, a->dst_slot);
	if (imap_client_connect(&a->dst_opts, &c, NULL, error_r) < 0)
		goto out;
	if (!sched_check_authzid(&a->dst_opts, c, "target", error_r))
		goto out;
	per_cmd = imap_client_has_cap(c, "MULTIAPPEND") ? 32 : 1;
	if (imap_account_inventory(c, 0, &info, error_r) < 0)
		goto out;
	if (info.ns_count[0] > 0)
		prefix = info.ns[0][0].prefix;
	remove_stale_probes(c, &info, prefix, a->dst_user, false);
	folder = probe_folder_name(prefix, -1);
	log_info("plan: target probe in %s's mailbox: folder %s (deleted after "
	         "the probe; one a killed run leaves is deleted by the next)",
	         a->dst_user, folder);
	imap_account_info_free(&info);
	t_create = time_mono_sec();
	if (mailbox_command(c, "CREATE", folder, error_r) < 0) {
		const char *err;

		/* a CREATE that failed for want of a reply may have made it */
		if (imap_client_is_dead(c))
			left = true;
		else
			(void)mailbox_command(c, "DELETE", folder, &err);
		goto out;
	}
	t_create = time_mono_sec() - t_create;
	for (size_t gr = 0; gr < PROBE_ROUNDS * N_ELEMENTS(probe_groups); gr++) {
		size_t g = gr % N_ELEMENTS(probe_groups);
		char *msgs[PROBE_GROUP_MAX];
		size_t lens[PROBE_GROUP_MAX];
		uint64_t bytes = 0;
		double t0;

		/* made before the clock starts: building them (line by
		 * line) took a third of the time of a 1 MB group, a cost
		 * the copy engine does not have */
		for (unsigned k = 0; k < probe_groups[g].count; k++) {
			msgs[k] = synthetic_message(probe_groups[g].size, k, &lens[k]);
			bytes += lens[k];
		}
		t0 = time_mono_sec();
		/* as the copy engine sends them: MULTIAPPEND of up to 32
		 * messages where offered, else one APPEND each, pipelined */
		for (unsigned i = 0; i < probe_groups[g].count; i += per_cmd) {
			struct imap_cmd *cmd = imap_cmd_new(c);

			imap_cmd_add(cmd, "APPEND ");
			imap_cmd_add_astring(cmd, folder, strlen(folder));
			for (unsigned k = i; k < i + per_cmd &&
			     k < probe_groups[g].count; k++) {
				imap_cmd_add(cmd, " (\\Seen) ");
				imap_cmd_add_literal_take(cmd, msgs[k], lens[k]);
			}
			imap_cmd_submit(cmd, imap_cmd_wait_done, &w);
		}
		if (imap_client_run(c, error_r) < 0)
			goto out_delete;
		if (w.error != NULL) {
			*error_r = err_set("APPEND: %s", w.error);
			goto out_delete;
		}
		batches[g].messages = probe_groups[g].count;
		batches[g].bytes = bytes;
		rounds[g][gr / N_ELEMENTS(probe_groups)] = time_mono_sec() - t0;
		log_debug("plan: target probe: %u messages, %llu bytes: "
		          "%.1f ms", probe_groups[g].count, (unsigned long long)bytes,
		          rounds[g][gr / N_ELEMENTS(probe_groups)] * 1e3);
	}
	fit_target(batches, rounds, cost);
	/* a first pass creates every folder on the target */
	cost->per_folder += t_create;
	ret = 0;
out_delete:
	{
		const char *err;

		if (mailbox_command(c, "DELETE", folder, &err) < 0) {
			log_warn("plan: could not delete the probe folder %s "
			         "on %s: %s", folder, a->dst_user, err);
			left = imap_client_is_dead(c);
		}
	}
out:
	free(w.error);
	free(folder);
	if (c != NULL)
		imap_client_logout(&c);
	slot_give(o->dst_slots, a->dst_slot);
	/* a lost session may have left it: from a new one */
	if (left)
		remove_own_probes(a, o);
	return ret;
}

/* The Maildir target probe: the same groups written with the Maildir
 * writer the engine uses (deliveries to tmp/, one commit per group: the
 * engine commits every 2000 messages; with the run's fsync setting) into
 * a scratch folder on the target's file system, then removed. Where the
 * account's Maildir exists, the scratch folder is inside its tmp/ (no
 * server lists it); otherwise in the nearest existing parent directory. */
struct probe_sink {
	unsigned refused;
	char *error;
};

static void
probe_delivered(void *ctx, uint32_t src_uid, uint32_t dst_uid,
                const char *flags, uint64_t size, int64_t date)
{
	(void)ctx, (void)src_uid, (void)dst_uid, (void)flags, (void)size,
	(void)date;
}

static void
probe_refused(void *ctx, uint32_t src_uid, enum err_kind kind,
              const char *reason)
{
	struct probe_sink *ps = ctx;

	(void)src_uid, (void)kind;
	if (ps->error == NULL)
		ps->error = xstrdup(reason);
	ps->refused++;
}

static void
probe_retry(void *ctx, uint32_t src_uid, size_t group_size)
{
	probe_refused(ctx, src_uid, ERRK_MESSAGE, "refused");
}

static void
probe_failed(void *ctx, enum err_kind kind, const char *error)
{
	probe_refused(ctx, 0, kind, error);
}

static void
probe_dropped(void *ctx, uint32_t src_uid, const char *dropped)
{
	(void)ctx, (void)src_uid, (void)dropped;
}

static int
probe_maildir(const struct sched_account *a, const struct sched_probe_options *o,
              struct sched_cost *cost, const char **error_r)
{
	struct sched_batch batches[N_ELEMENTS(probe_groups)];
	double rounds[N_ELEMENTS(probe_groups)][PROBE_ROUNDS];
	struct probe_sink ps = { 0 };
	struct target_sink sink = {
		.ctx = &ps, .delivered = probe_delivered, .refused = probe_refused,
		.retry = probe_retry, .failed = probe_failed,
		.dropped = probe_dropped,
	};
	struct target_spec spec = { .kind = TARGET_MAILDIR };
	struct target_open topen = { .src_uidvalidity = 1 };
	struct target_folder_info ti;
	struct target_close tc = { 0 };
	struct copy_stats stats;
	struct target *t = NULL;
	char *parent, *name = xasprintf(".imapferry-probe-%ld", (long)getpid());
	struct stat st;
	uint32_t uid = 1;
	bool opened = false;
	int ret = -1;

	target_spec_maildir_init(&spec);
	if (o->md != NULL)
		spec.md = *o->md;
	spec.md.flavor = a->dst_courier ? MAILDIR_COURIER : MAILDIR_DOVECOT;
	if (stat(a->dst_path, &st) == 0 && S_ISDIR(st.st_mode)) {
		parent = xasprintf("%s/tmp", a->dst_path);
		if (stat(parent, &st) < 0 || !S_ISDIR(st.st_mode)) {
			free(parent);
			parent = xstrdup(a->dst_path);
		}
	} else {
		char *p = xstrdup(a->dst_path);

		for (;;) {
			char *up = xstrdup(dirname(p));

			free(p);
			p = up;
			if ((stat(p, &st) == 0 && S_ISDIR(st.st_mode)) ||
			    strcmp(p, "/") == 0 || strcmp(p, ".") == 0)
				break;
		}
		parent = p;
	}
	remove_stale_md_probes(parent);
	/* the engine's own Maildir driver, on a scratch folder */
	spec.root = parent;
	t = target_new(&spec, &sink, &stats);
	topen.name = name;
	if (t->ops->connect(t, error_r) < 0 ||
	    t->ops->open_folder(t, &topen, &ti, error_r) < 0)
		goto out;
	opened = true;
	for (size_t gr = 0; gr < PROBE_ROUNDS * N_ELEMENTS(probe_groups); gr++) {
		size_t g = gr % N_ELEMENTS(probe_groups);
		struct cmsg *list = NULL, **tail = &list;
		uint64_t bytes = 0;
		double t0;
		int r;

		for (unsigned k = 0; k < probe_groups[g].count; k++) {
			struct cmsg *m = xcalloc(1, sizeof(*m));
			size_t len;

			m->data = synthetic_message(probe_groups[g].size, k, &len);
			m->size = len;
			m->uid = uid++;
			m->flags = xstrdup("\\Seen");
			m->internaldate = 1700000000;
			m->fd = -1;
			bytes += len;
			*tail = m;
			tail = &m->next;
		}
		t0 = time_mono_sec();
		t->ops->deliver(t, list);
		r = ps.refused > 0 ? -1 : t->ops->commit(t, error_r);
		rounds[g][gr / N_ELEMENTS(probe_groups)] = time_mono_sec() - t0;
		if (ps.refused > 0)
			*error_r = err_set("%s", ps.error);
		if (r < 0)
			goto out;
		batches[g].messages = probe_groups[g].count;
		batches[g].bytes = bytes;
	}
	fit_target(batches, rounds, cost);
	ret = 0;
out:
	if (opened) {
		const char *err;

		(void)t->ops->close_folder(t, &tc, &err);
		if (t->ops->remove_folder(t, name, &err) < 0)
			log_warn("plan: could not remove the probe folder %s/%s: %s",
			         parent, name, err);
	}
	target_free(&t);
	free(ps.error);
	free(parent);
	free(name);
	return ret;
}

/* ----------------------------------------------------------- calibrate */

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
median(double *v, size_t n)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Samples one account: returns 0 with batches appended, -1 on error.
 * With keep_r, the sample (messages fetched) is left in *keep_r, *n_keep_r
 * for the parallel measure (free it). */
static int
sample_account(const struct sched_account *a, const struct sched_folder_est *f,
               unsigned share, uint64_t share_bytes,
               const struct sched_probe_options *o, struct msg_size **keep_r,
               size_t *n_keep_r,
               struct sched_cost *cost, struct sched_batch *batches,
               size_t *n_batches, size_t max_batches, double *examine_r,
               double *login_r, double *status_r, uint64_t *size_sum_r,
               uint64_t *size_count_r, const char **error_r)
{
	struct imap_account_info info;
	struct size_scan scan = { 0 };
	struct msg_size *sample = NULL;
	struct imap_client *c = NULL;
	size_t n, per_batch, nb;
	char *cmdtext;
	double t0;
	int ret = -1;

	slot_take(o->src_slots, a->src_slot);
	/* alone on the server (the inventory ran several at once): the cost
	 * of a login and an inventory, as the engine does on each side */
	t0 = time_mono_sec();
	if (imap_client_connect(&a->src_opts, &c, NULL, error_r) < 0)
		goto out;
	if (imap_account_inventory(c, IMAP_INV_STATUS, &info, error_r) < 0)
		goto out;
	imap_account_info_free(&info);
	*login_r = time_mono_sec() - t0;
	/* STATUS per folder (a later pass checks an unchanged folder with
	 * its STATUS only): LIST with STATUS minus LIST alone, warm */
	*status_r = -1;
	{
		double t_list, t_status;
		size_t count;

		t0 = time_mono_sec();
		if (imap_account_inventory(c, 0, &info, error_r) < 0)
			goto out;
		imap_account_info_free(&info);
		t_list = time_mono_sec() - t0;
		t0 = time_mono_sec();
		if (imap_account_inventory(c, IMAP_INV_STATUS, &info, error_r) < 0)
			goto out;
		count = info.count;
		imap_account_info_free(&info);
		t_status = time_mono_sec() - t0;
		if (count > 0)
			*status_r = (t_status > t_list ? t_status - t_list : 0) /
			            (double)count;
	}
	imap_client_set_literal_sink(c, &discard_sink);
	t0 = time_mono_sec();
	if (imap_client_select(c, f->name, true, error_r) < 0)
		goto out;
	*examine_r = time_mono_sec() - t0;
	imap_client_set_untagged(c, size_untagged, &scan);
	cmdtext = xasprintf("FETCH 1:%u (UID RFC822.SIZE)",
	                    f->messages < SIZE_SCAN_MAX ? (unsigned)f->messages :
	                    SIZE_SCAN_MAX);
	ret = imap_client_simple(c, cmdtext, error_r);
	free(cmdtext);
	imap_client_set_untagged(c, NULL, NULL);
	if (ret < 0)
		goto out;
	ret = -1;
	for (size_t i = 0; i < scan.n; i++)
		*size_sum_r += scan.v[i].size;
	*size_count_r += scan.n;
	qsort(scan.v, scan.n, sizeof(*scan.v), cmp_size);
	sample = xcalloc(share + 1, sizeof(*sample));
	n = choose_sample(scan.v, scan.n, share, share_bytes, sample);
	/* batches of neighbours in size: the fit needs small and large */
	nb = max_batches - *n_batches;
	if (nb > 8)
		nb = 8;
	if (nb == 0 || n == 0) {
		ret = 0;
		goto out;
	}
	per_batch = (n + nb - 1) / nb;
	for (size_t i = 0; i < n; i += per_batch) {
		size_t end = i + per_batch < n ? i + per_batch : n;
		struct sched_batch *b = &batches[(*n_batches)++];

		b->messages = (unsigned)(end - i);
		b->bytes = 0;
		for (size_t k = i; k < end; k++)
			b->bytes += sample[k].size;
		qsort(sample + i, end - i, sizeof(*sample), cmp_uid);
		t0 = time_mono_sec();
		if (fetch_bodies(c, sample + i, end - i, error_r) < 0) {
			(*n_batches)--;
			goto out;
		}
		b->seconds = time_mono_sec() - t0;
		cost->sample_messages += b->messages;
		cost->sample_bytes += b->bytes;
		cost->sample_seconds += b->seconds;
	}
	imap_client_logout(&c);
	slot_give(o->src_slots, a->src_slot);
	if (keep_r != NULL) {
		*keep_r = sample;
		*n_keep_r = n;
		sample = NULL;
	}
	free(sample);
	free(scan.v);
	return 0;
out:
	if (c != NULL)
		imap_client_free(&c);
	slot_give(o->src_slots, a->src_slot);
	free(sample);
	free(scan.v);
	return ret;
}

/* The offline counterpart of sample_account(): the sample read from the
 * source's own files (a copied spool) through its reader, in batches of
 * similar size, timed (a disk-read cost instead of a fetch). */
static int
sample_offline(const struct sched_account *a, const struct sched_folder_est *f,
               unsigned share, uint64_t share_bytes, struct sched_cost *cost,
               struct sched_batch *batches, size_t *n_batches,
               size_t max_batches, double *examine_r, uint64_t *size_sum_r,
               uint64_t *size_count_r, const char **error_r)
{
	struct msgsum_list list = { 0 };
	struct source_folder st;
	struct msg_size *all = NULL, *sample = NULL;
	struct source s;
	size_t n, per_batch, nb;
	bool refused;
	double t0;
	int ret = -1;

	source_init_like(&s, a->src_spec);
	if (source_connect(&s, &refused, error_r) < 0)
		return -1;
	t0 = time_mono_sec();
	if (source_select(&s, f->name, &st, error_r) < 0 ||
	    source_list(&s, NULL, 0, MSGSUM_META, &list, error_r) < 0)
		goto out;
	*examine_r = time_mono_sec() - t0;
	all = xcalloc(list.count + 1, sizeof(*all));
	for (size_t i = 0; i < list.count; i++) {
		all[i].uid = list.items[i].uid;
		all[i].size = list.items[i].size;
		*size_sum_r += all[i].size;
	}
	*size_count_r += list.count;
	qsort(all, list.count, sizeof(*all), cmp_size);
	sample = xcalloc(share + 1, sizeof(*sample));
	n = choose_sample(all, list.count, share, share_bytes, sample);
	nb = max_batches - *n_batches;
	if (nb > 8)
		nb = 8;
	ret = 0;
	if (nb == 0 || n == 0)
		goto out;
	per_batch = (n + nb - 1) / nb;
	for (size_t i = 0; i < n && ret == 0; i += per_batch) {
		size_t end = i + per_batch < n ? i + per_batch : n;
		struct sched_batch *b = &batches[(*n_batches)++];
		struct fetch_reader_options fo = { 0 };
		struct source_reader *rd;
		uint32_t *uids = xcalloc(end - i + 1, sizeof(*uids));
		struct mqueue q;
		struct cmsg *m;
		char *err;

		b->messages = (unsigned)(end - i);
		b->bytes = 0;
		qsort(sample + i, end - i, sizeof(*sample), cmp_uid);
		for (size_t k = i; k < end; k++) {
			b->bytes += sample[k].size;
			uids[k - i] = sample[k].uid;
		}
		mqueue_init(&q, 64, 16u * 1024 * 1024);
		t0 = time_mono_sec();
		rd = source_reader_start(&s, uids, end - i, &q, &fo);
		while ((m = mqueue_pop_batch(&q, 64, 16u * 1024 * 1024)) != NULL)
			while (m != NULL) {
				struct cmsg *next = m->next;

				cmsg_free(&m);
				m = next;
			}
		err = source_reader_join(&rd);
		b->seconds = time_mono_sec() - t0;
		mqueue_deinit(&q);
		free(uids);
		if (err != NULL) {
			*error_r = err_set("%s", err);
			free(err);
			(*n_batches)--;
			ret = -1;
			break;
		}
		cost->sample_messages += b->messages;
		cost->sample_bytes += b->bytes;
		cost->sample_seconds += b->seconds;
	}
out:
	msgsum_list_free(&list);
	free(all);
	free(sample);
	source_disconnect(&s);
	return ret;
}

int
sched_calibrate(const struct sched_account *accounts,
                const struct sched_account_est *est, size_t n,
                const struct sched_probe_options *o, struct sched_cost *cost,
                const char **error_r)
{
	unsigned max_msgs = o->sample_messages > 0 ? o->sample_messages : 300;
	uint64_t max_bytes = o->sample_bytes > 0 ? o->sample_bytes :
	    32u * 1024 * 1024;
	size_t order[SAMPLE_ACCOUNTS], n_order = 0;
	struct sched_batch batches[SAMPLE_ACCOUNTS * 8];
	size_t n_batches = 0;
	double examine[SAMPLE_ACCOUNTS], alone[LOGIN_SAMPLES], *logins;
	double status[SAMPLE_ACCOUNTS];
	size_t n_examine = 0, n_logins = 0, n_extra = 0, n_status = 0;
	uint64_t size_sum = 0, size_count = 0;
	struct msg_size *par_sample = NULL;
	size_t n_par = 0;
	const struct sched_account *par_account = NULL;
	const char *par_folder = NULL;
	int ret = 0;

	sched_cost_default(cost);
	/* per account: the login + inventory time, on both sides */
	logins = xcalloc(n + 1, sizeof(double));
	for (size_t i = 0; i < n; i++)
		if (est[i].error == NULL && est[i].login_seconds > 0)
			logins[n_logins++] = est[i].login_seconds;
	if (n_logins > 0)
		cost->per_account = 2 * median(logins, n_logins);
	free(logins);
	/* the largest accounts, by messages */
	while (n_order < SAMPLE_ACCOUNTS) {
		size_t best = n;

		for (size_t i = 0; i < n; i++) {
			bool taken = false;

			for (size_t k = 0; k < n_order; k++)
				taken = taken || order[k] == i;
			if (taken || est[i].error != NULL || est[i].messages == 0)
				continue;
			if (best == n || est[i].messages > est[best].messages)
				best = i;
		}
		if (best == n)
			break;
		order[n_order++] = best;
	}
	for (size_t s = 0; s < n_order; s++) {
		const struct sched_account_est *e = &est[order[s]];
		const struct sched_folder_est *big = NULL;

		for (size_t k = 0; k < e->n_folders; k++)
			if (copy_folder_selected(o->folders, o->n_folders,
			                         e->folders[k].name) &&
			    (big == NULL || e->folders[k].messages > big->messages))
				big = &e->folders[k];
		if (big == NULL || big->messages == 0)
			continue;
		if (accounts[order[s]].src_spec != NULL &&
		    source_is_offline(accounts[order[s]].src_spec)) {
			if (sample_offline(&accounts[order[s]], big,
			                   max_msgs / (unsigned)n_order,
			                   max_bytes / n_order, cost, batches,
			                   &n_batches, N_ELEMENTS(batches),
			                   &examine[n_examine], &size_sum,
			                   &size_count, error_r) < 0) {
				ret = -1;
				break;
			}
			alone[n_examine] = est[order[s]].login_seconds;
			n_examine++;
			continue;
		}
		if (sample_account(&accounts[order[s]], big,
		                   max_msgs / (unsigned)n_order,
		                   max_bytes / n_order, o,
		                   s == 0 && o->par_sessions > 1 ? &par_sample : NULL,
		                   &n_par, cost, batches,
		                   &n_batches, N_ELEMENTS(batches),
		                   &examine[n_examine], &alone[n_examine],
		                   &status[n_status], &size_sum, &size_count,
		                   error_r) < 0) {
			ret = -1;
			break;
		}
		if (status[n_status] >= 0)
			n_status++;
		if (s == 0) {
			par_account = &accounts[order[s]];
			par_folder = big->name;
		}
		n_examine++;
	}
	if (size_count > 0)
		cost->avg_message_size = (double)size_sum / (double)size_count;
	/* a few more logins alone, on small accounts: one login varies a
	 * lot on a busy server */
	for (size_t i = 0; i < n && n_examine + n_extra < LOGIN_SAMPLES; i++) {
		struct imap_account_info info;
		struct imap_client *c;
		const char *err;
		double t0;
		bool taken = false;

		for (size_t k = 0; k < n_order; k++)
			taken = taken || order[k] == i;
		if (taken || est[i].error != NULL)
			continue;
		if (accounts[i].src_spec != NULL &&
		    source_is_offline(accounts[i].src_spec)) {
			alone[n_examine + n_extra++] = est[i].login_seconds;
			continue;
		}
		slot_take(o->src_slots, accounts[i].src_slot);
		t0 = time_mono_sec();
		if (imap_client_connect(&accounts[i].src_opts, &c, NULL, &err) == 0) {
			if (imap_account_inventory(c, IMAP_INV_STATUS, &info,
			                           &err) == 0) {
				imap_account_info_free(&info);
				alone[n_examine + n_extra++] = time_mono_sec() - t0;
			}
			imap_client_logout(&c);
		}
		slot_give(o->src_slots, accounts[i].src_slot);
	}
	if (n_examine > 0)
		cost->per_folder = 2 * median(examine, n_examine);
	if (n_status > 0)
		cost->per_status = median(status, n_status);
	if (n_examine + n_extra > 0)
		cost->per_account = 2 * median(alone, n_examine + n_extra);
	if (n_batches > 0 &&
	    sched_cost_fit(batches, n_batches, &cost->per_message,
	                   &cost->per_byte) == 0)
		cost->calibrated = true;
	if (ret == 0 && o->probe_target && n_order > 0 &&
	    (accounts[order[0]].dst_maildir ?
	     probe_maildir(&accounts[order[0]], o, cost, error_r) :
	     probe_target(&accounts[order[0]], o, cost, error_r)) < 0)
		ret = -1;
	/* after the target probe: a probed target makes each session of
	 * the parallel measure a fetch and an APPEND at once */
	if (par_sample != NULL && n_par > 0)
		measure_parallel(par_account, par_folder, par_sample, n_par, o,
		                 cost->target_probed && !par_account->dst_maildir,
		                 cost);
	free(par_sample);
	return ret;
}
