/* options.c: every option of every command, defined once, and the
 * parser the commands share (options.h). */
#include "options.h"

#include "base.h"
#include "log.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* Help lines start at this column. */
#define HELP_COLUMN 24

static const struct cli_opt_def opt_table[] = {
	/* common */
	{ CLI_OPT_INSECURE, "insecure", 0, CLI_ARG_NONE, NULL, 0,
	  "do not verify TLS certificates" },
	{ CLI_OPT_TLS_MIN, "tls-min", 0, CLI_ARG_STRING, "VERSION", 0,
	  "minimum TLS version: 1.0, 1.1, 1.2 or 1.3" },
	{ CLI_OPT_CA_FILE, "ca-file", 0, CLI_ARG_STRING, "FILE", 0,
	  "trust these CA certificates too" },
	{ CLI_OPT_TIMEOUT, "timeout", 0, CLI_ARG_COUNT, "SECONDS", 86400,
	  "a stall: no byte for this long while a reply\n"
	  "is due (default 60)" },
	{ CLI_OPT_VERBOSE, "verbose", 'v', CLI_ARG_NONE, NULL, 0,
	  "more logging" },
	{ CLI_OPT_DEBUG, "debug", 0, CLI_ARG_NONE, NULL, 0,
	  "debug logging (as -v)" },
	{ CLI_OPT_TRACE, "trace", 0, CLI_ARG_NONE, NULL, 0,
	  "protocol trace (never shows passwords)" },
	{ CLI_OPT_JSON, "json", 0, CLI_ARG_NONE, NULL, 0,
	  "machine-readable output" },
	/* one account */
	{ CLI_OPT_PASSWORD_FILE, "password-file", 0, CLI_ARG_STRING, "FILE", 0,
	  "password (else $IMAPFERRY_PASSWORD)" },
	{ CLI_OPT_AUTHZID, "authzid", 0, CLI_ARG_STRING, "ID", 0,
	  "log in on behalf of ID (SASL PLAIN)" },
	/* pairs and many accounts */
	{ CLI_OPT_SRC_PWFILE, "src-password-file", 0, CLI_ARG_STRING, "F", 0,
	  "source password (else $IMAPFERRY_SRC_PASSWORD)" },
	{ CLI_OPT_DST_PWFILE, "dst-password-file", 0, CLI_ARG_STRING, "F", 0,
	  "target password (else $IMAPFERRY_DST_PASSWORD)" },
	{ CLI_OPT_SRC_AUTHZID, "src-authzid", 0, CLI_ARG_STRING, "ID", 0,
	  "source: admin login on behalf of ID" },
	{ CLI_OPT_DST_AUTHZID, "dst-authzid", 0, CLI_ARG_STRING, "ID", 0,
	  "target: admin login on behalf of ID" },
	{ CLI_OPT_SRC_ADMIN, "src-admin", 0, CLI_ARG_STRING, "USER", 0,
	  "log in as USER on behalf of each account (SASL\n"
	  "PLAIN authzid: Cyrus admin, Dovecot master user)" },
	{ CLI_OPT_DST_ADMIN, "dst-admin", 0, CLI_ARG_STRING, "USER", 0,
	  "the same for the target" },
	{ CLI_OPT_STATE, "state", 0, CLI_ARG_STRING, "FILE", 0,
	  "state database (default under ~/.local/state)" },
	{ CLI_OPT_INCLUDE, "include", 0, CLI_ARG_STRING, "RE", 0,
	  "only folders matching RE (regex on the name;\nrepeatable)" },
	{ CLI_OPT_EXCLUDE, "exclude", 0, CLI_ARG_STRING, "RE", 0,
	  "not the folders matching RE (repeatable)" },
	{ CLI_OPT_MAP, "map", 0, CLI_ARG_STRING, "'OLD=NEW'", 0,
	  "rename folders (regex, \\1..\\9; repeatable)" },
	{ CLI_OPT_FOLDERS, "folders", 0, CLI_ARG_STRING, "NAME", 0,
	  "only this source folder (repeatable), e.g.\n"
	  "--folders INBOX for the final cutover pass" },
	{ CLI_OPT_DELETE_MISSING, "delete-missing", 0, CLI_ARG_NONE, NULL, 0,
	  "expunge on the target what the source lost" },
	{ CLI_OPT_SKIP_DELETED, "skip-deleted", 0, CLI_ARG_NONE, NULL, 0,
	  "do not copy messages flagged \\Deleted" },
	{ CLI_OPT_OWNER, "owner", 0, CLI_ARG_STRING, "USER[:GROUP]", 0,
	  "Maildir target: owner of the files written\n"
	  "(the server's mail user)" },
	{ CLI_OPT_NO_FSYNC, "no-fsync", 0, CLI_ARG_NONE, NULL, 0,
	  "Maildir target: no fdatasync at commits\n(faster, less safe)" },
	{ CLI_OPT_FSYNC, "fsync", 0, CLI_ARG_STRING, "MODE", 0,
	  "Maildir target durability: file (default:\n"
	  "each new file on disk before its commit:\n"
	  "an fdatasync each, or on ext4 with a journal\n"
	  "one journal commit per batch), fs (one syncfs of\n"
	  "the target file system per commit: for a file\n"
	  "system only the copy writes to), off (as --no-fsync)" },
	/* copy */
	{ CLI_OPT_DRY_RUN, "dry-run", 0, CLI_ARG_NONE, NULL, 0,
	  "show what would be done" },
	{ CLI_OPT_NO_SUBS, "no-subscriptions", 0, CLI_ARG_NONE, NULL, 0,
	  "do not copy subscriptions" },
	{ CLI_OPT_FETCH_BATCH, "fetch-batch", 0, CLI_ARG_COUNT, "N", 10000,
	  "UIDs per UID FETCH (default 500)" },
	{ CLI_OPT_APPEND_DEPTH, "append-depth", 0, CLI_ARG_COUNT, "N", 1000,
	  "APPEND commands in flight (default 16)" },
	{ CLI_OPT_SPOOL_DIR, "spool-dir", 0, CLI_ARG_STRING, "DIR", 0,
	  "spool files of large messages (default\n$TMPDIR or /tmp)" },
	{ CLI_OPT_SRC_POP3, "src-pop3", 0, CLI_ARG_STRING, "URL", 0,
	  "Maildir target: pop3[s]://USER@HOST, keep the\n"
	  "INBOX's POP3 UIDLs" },
	{ CLI_OPT_DST_IMAP, "dst-imap", 0, CLI_ARG_STRING, "URL", 0,
	  "Dovecot Maildir target: the Dovecot serving it\n"
	  "(imap://USER*MASTER@HOST, the password as the\n"
	  "target's): keywords beyond the file names' 26\n"
	  "are set through it" },
	{ CLI_OPT_BODIES_FROM, "bodies-from", 0, CLI_ARG_STRING, "URL", 0,
	  "IMAP source: cyrus-spool:PATH?user=NAME[&..]:\n"
	  "bodies from a copied Cyrus spool, metadata\n"
	  "over IMAP (IMAP when a file is missing or\n"
	  "its size differs); in plan and run PATH may\n"
	  "use %u and user= is the account's source user" },
	{ CLI_OPT_RETRY_BUDGET, "retry-budget", 0, CLI_ARG_COUNT, "SECONDS", 86400,
	  "keep reconnecting to copy a folder until it\n"
	  "made no progress for this long (600)" },
	{ CLI_OPT_PARALLEL, "parallel", 0, CLI_ARG_COUNT, "N", 16,
	  "session pairs, folders dealt out largest\n"
	  "first (default 2; 1 to 16)" },
	/* verify */
	{ CLI_OPT_DEEP, "deep", 0, CLI_ARG_NONE, NULL, 0,
	  "compare SHA-256 of every message" },
	{ CLI_OPT_NO_STATE, "no-state", 0, CLI_ARG_NONE, NULL, 0,
	  "pair messages by fingerprint only" },
	/* plan, run, status */
	{ CLI_OPT_WORKERS, "workers", 0, CLI_ARG_COUNT, "N", 1000,
	  "parallel jobs (default 4)" },
	{ CLI_OPT_MAX_SRC, "max-src-conns", 0, CLI_ARG_COUNT, "K", 10000,
	  "sessions per source server at once (default N)" },
	{ CLI_OPT_MAX_DST, "max-dst-conns", 0, CLI_ARG_COUNT, "K", 10000,
	  "sessions per target server at once (default N)" },
	{ CLI_OPT_SAMPLE, "sample", 0, CLI_ARG_COUNT, "N", 100000,
	  "messages fetched to measure the source (300)" },
	{ CLI_OPT_PROBE_TARGET, "probe-target", 0, CLI_ARG_NONE, NULL, 0,
	  "time APPENDs on an IMAP target (the default)" },
	{ CLI_OPT_NO_PROBE_TARGET, "no-probe-target", 0, CLI_ARG_NONE, NULL, 0,
	  "do not time APPENDs on an IMAP target (by\n"
	  "default 89 messages go to a scratch folder\n"
	  "imapferry-probe-PID of the first sampled\n"
	  "account, which is deleted afterwards)" },
	{ CLI_OPT_NO_CALIBRATE, "no-calibrate", 0, CLI_ARG_NONE, NULL, 0,
	  "no measure: default costs" },
	{ CLI_OPT_NO_SPLIT, "no-split", 0, CLI_ARG_NONE, NULL, 0,
	  "never split an account into parts" },
	{ CLI_OPT_UID_RANGES, "uid-ranges", 0, CLI_ARG_NONE, NULL, 0,
	  "Maildir target: split one large folder into UID\n"
	  "ranges (the default)" },
	{ CLI_OPT_NO_UID_RANGES, "no-uid-ranges", 0, CLI_ARG_NONE, NULL, 0,
	  "Maildir target: never split one folder into\n"
	  "UID ranges (only accounts by folders)" },
	{ CLI_OPT_SPLIT_ABOVE, "split-above", 0, CLI_ARG_STRING, "SECONDS", 0,
	  "split accounts estimated above this (default:\n"
	  "the total estimate / N)" },
	{ CLI_OPT_REPORT, "report", 0, CLI_ARG_STRING, "FILE.json", 0,
	  "per-account report at the end (written mode\n"
	  "0600, replaced atomically)" },
	{ CLI_OPT_FINAL, "final", 0, CLI_ARG_NONE, NULL, 0,
	  "with --state: estimate a final pass now from\n"
	  "STATUS of every folder against the last pass" },
	{ CLI_OPT_NO_CHECK, "no-check", 0, CLI_ARG_NONE, NULL, 0,
	  "skip the preflight of each account (what\n"
	  "clients will notice, as imapferry check;\n"
	  "skipped with --final)" },
	{ CLI_OPT_CHANGES, "changes", 0, CLI_ARG_STRING, "USERS", 0,
	  "per account, what changed on the source since\n"
	  "its last pass: STATUS of every folder of the\n"
	  "accounts of USERS (the run's SRC and DST)" },
	{ CLI_OPT_NEW_RUN, "new-run", 0, CLI_ARG_NONE, NULL, 0,
	  "plan a new run even if the last one of this\n"
	  "pass did not finish" },
	{ CLI_OPT_MAX_ERRORS, "max-errors", 0, CLI_ARG_COUNT, "N", 1000,
	  "failed attempts before a job fails (3)" },
	{ CLI_OPT_BACKOFF, "backoff", 0, CLI_ARG_COUNT, "SECONDS", 3600,
	  "first retry delay, doubled each time (5)" },
	{ CLI_OPT_PROGRESS, "progress", 0, CLI_ARG_STRING, "MODE", 0,
	  "auto, tty (redrawn), plain (a line every\n10 s) or none" },
	{ CLI_OPT_LOG, "log", 0, CLI_ARG_STRING, "FILE", 0,
	  "log lines to FILE (default on a terminal:\n"
	  "STATE.log, so the display stays clean)" },
	{ CLI_OPT_RUN_ID, "run", 0, CLI_ARG_STRING, "ID", 0,
	  "this run instead of the last one" },
	{ CLI_OPT_HTML, "html", 0, CLI_ARG_STRING, "FILE.html", 0,
	  "the report as one HTML page (written mode\n"
	  "0600, replaced atomically)" },
	{ CLI_OPT_METRICS, "metrics", 0, CLI_ARG_STRING, "FILE.prom", 0,
	  "Prometheus metrics every 5 s (node_exporter\n"
	  "textfile collector: renamed into place)" },
	{ CLI_OPT_MACHINE, "machine", 0, CLI_ARG_STRING, "NAME", 0,
	  "this machine's name in a run shared through\n"
	  "PostgreSQL (default: the host name)" },
	{ CLI_OPT_LEASE, "lease", 0, CLI_ARG_COUNT, "SECONDS", 3600,
	  "with PostgreSQL: a job of a machine that stops\n"
	  "renewing it goes to another after this (30)" },
	/* plan from an inventory file */
	{ CLI_OPT_INVENTORY, "inventory", 0, CLI_ARG_STRING, "FILE", 0,
	  "plan from this inventory (plan --json, or CSV\n"
	  "account,folder,messages,bytes) without\n"
	  "connecting; no USERS SRC DST" },
	{ CLI_OPT_MACHINES, "machines", 0, CLI_ARG_COUNT, "M", 1000,
	  "the estimate for 1..M machines of N workers\n"
	  "each (N: --workers; one shared queue)" },
	{ CLI_OPT_COST, "cost", 0, CLI_ARG_STRING, "FILE", 0,
	  "the cost model of an earlier calibration\n"
	  "(--save-cost, or the output of plan --json)" },
	{ CLI_OPT_SAVE_COST, "save-cost", 0, CLI_ARG_STRING, "FILE", 0,
	  "write the cost model to FILE (JSON)" },
	{ CLI_OPT_SRC_MAX_RATE, "src-max-rate", 0, CLI_ARG_STRING, "MB/S", 0,
	  "with --machines: the most the source serves in\n"
	  "all (MB/s); default: no limit" },
	{ 0, NULL, 0, CLI_ARG_NONE, NULL, 0, NULL },
};

const struct cli_opt_def *
cli_opt_find(const struct cli_command *cmd, int id)
{
	for (const struct cli_opt_def *d = opt_table; d->id != 0; d++)
		if (d->id == id)
			return d;
	if (cmd != NULL && cmd->extra != NULL)
		for (const struct cli_opt_def *d = cmd->extra; d->id != 0; d++)
			if (d->id == id)
				return d;
	return NULL;
}

int
cli_bad_value(int id, const char *value, const char *why)
{
	const struct cli_opt_def *d = cli_opt_find(NULL, id);

	fprintf(stderr, "imapferry: --%s '%s': %s\n", d != NULL ? d->name : "?",
	        value, why);
	return -1;
}

/* "  --name ARG" / "  -v, --verbose" padded, then the help, each of its
 * lines indented to HELP_COLUMN. */
static void
usage_option(FILE *f, const struct cli_opt_def *d, const char *help)
{
	char left[64];
	int n;

	if (d->short_name != '\0')
		n = snprintf(left, sizeof(left), "  -%c, --%s%s%s", d->short_name,
		             d->name, d->metavar ? " " : "",
		             d->metavar ? d->metavar : "");
	else
		n = snprintf(left, sizeof(left), "  --%s%s%s", d->name,
		             d->metavar ? " " : "", d->metavar ? d->metavar : "");
	fputs(left, f);
	if (n >= HELP_COLUMN) {
		/* too long for the column: the help goes on the next line */
		fprintf(f, "\n%*s", HELP_COLUMN, "");
	} else {
		fprintf(f, "%*s", HELP_COLUMN - n, "");
	}
	for (const char *p = help; *p != '\0'; p++) {
		fputc(*p, f);
		if (*p == '\n')
			fprintf(f, "%*s", HELP_COLUMN, "");
	}
	fputc('\n', f);
}

void
cli_usage(const struct cli_command *cmd, FILE *f)
{
	fprintf(f, "usage: %s %s %s\n", cmd->program, cmd->name, cmd->synopsis);
	if (cmd->intro != NULL)
		fprintf(f, "%s\n", cmd->intro);
	cli_usage_options(cmd, f);
	if (cmd->trailer != NULL)
		fprintf(f, "%s\n", cmd->trailer);
}

void
cli_usage_options(const struct cli_command *cmd, FILE *f)
{
	fputs("options:\n", f);
	for (const struct cli_use *u = cmd->opts; u->id != CLI_OPT_NONE; u++) {
		const struct cli_opt_def *d = cli_opt_find(cmd, u->id);

		if (d == NULL)
			fatal("option %d of %s is not defined", u->id, cmd->name);
		usage_option(f, d, u->help != NULL ? u->help : d->help);
	}
	fprintf(f, "  -h, --help%*sthis text\n", HELP_COLUMN - 12, "");
}

static void
usage_short(const struct cli_command *cmd)
{
	fprintf(stderr, "usage: %s %s %s (see %s %s --help)\n", cmd->program,
	        cmd->name, cmd->synopsis, cmd->program, cmd->name);
}

/* The common options: into common (log levels are process-wide). */
static int
common_option(struct cli_common *common, int id, const char *arg, uint64_t num)
{
	switch (id) {
	case CLI_OPT_INSECURE:
		common->net.insecure = true;
		return 0;
	case CLI_OPT_TLS_MIN:
		if (!net_parse_tls_version(arg, &common->net.min_tls_version))
			return cli_bad_value(id, arg, "expected 1.0, 1.1, 1.2 or 1.3");
		return 0;
	case CLI_OPT_CA_FILE:
		common->net.ca_file = arg;
		return 0;
	case CLI_OPT_TIMEOUT:
		common->net.io_timeout_ms = (int)num * 1000;
		if (common->net.connect_timeout_ms == 0 || num * 1000 < 30000)
			common->net.connect_timeout_ms = (int)num * 1000;
		return 0;
	case CLI_OPT_VERBOSE:
	case CLI_OPT_DEBUG:
		log_configure(LOG_DEBUG, 2);
		return 0;
	case CLI_OPT_TRACE:
		log_configure(LOG_TRACE, 2);
		return 0;
	case CLI_OPT_JSON:
		common->json = true;
		return 0;
	default:
		return 1;
	}
}

int
cli_parse(const struct cli_command *cmd, int argc, char **argv,
          struct cli_common *common, cli_option_fn *fn, void *ctx,
          int *argi_r, int *status_r)
{
	size_t n = 0, k = 0;
	struct option *longopts;
	char optstring[64] = "h";
	size_t olen = 1;
	int opt, nargs, ret = -1;

	for (const struct cli_use *u = cmd->opts; u->id != CLI_OPT_NONE; u++)
		n++;
	longopts = xcalloc(n + 2, sizeof(*longopts));
	for (const struct cli_use *u = cmd->opts; u->id != CLI_OPT_NONE; u++) {
		const struct cli_opt_def *d = cli_opt_find(cmd, u->id);

		if (d == NULL)
			fatal("option %d of %s is not defined", u->id, cmd->name);
		longopts[k].name = d->name;
		longopts[k].has_arg = d->kind == CLI_ARG_NONE ? no_argument :
		                      required_argument;
		longopts[k].val = d->id;
		k++;
		if (d->short_name != '\0' && olen + 3 < sizeof(optstring)) {
			optstring[olen++] = d->short_name;
			if (d->kind != CLI_ARG_NONE)
				optstring[olen++] = ':';
			optstring[olen] = '\0';
		}
	}
	longopts[k].name = "help";
	longopts[k].has_arg = no_argument;
	longopts[k].val = 'h';

	*status_r = 2;
	optind = 1;
	while ((opt = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
		const struct cli_opt_def *d;
		uint64_t num = 0;

		if (opt == 'h') {
			cli_usage(cmd, stdout);
			*status_r = 0;
			goto out;
		}
		if (opt == '?' || opt == ':')
			goto usage;       /* getopt said what was wrong */
		/* a short option: its id */
		for (const struct cli_use *u = cmd->opts;
		     opt < 256 && u->id != CLI_OPT_NONE; u++)
			if ((d = cli_opt_find(cmd, u->id))->short_name == opt)
				opt = d->id;
		d = cli_opt_find(cmd, opt);
		if (d == NULL)
			goto usage;
		if (d->kind == CLI_ARG_COUNT &&
		    (!str_to_u64z(optarg, d->max, &num) || num == 0)) {
			char why[64];

			snprintf(why, sizeof(why), "expected a number from 1 to %"
			         PRIu64, d->max);
			cli_bad_value(d->id, optarg, why);
			goto usage;
		}
		if (common != NULL) {
			int r = common_option(common, d->id, optarg, num);

			if (r < 0)
				goto usage;
			if (r == 0)
				continue;
		}
		if (fn(ctx, d->id, d->kind == CLI_ARG_NONE ? NULL : optarg,
		       num) < 0)
			goto usage;
	}
	nargs = argc - optind;
	if (nargs < cmd->min_args || nargs > cmd->max_args) {
		fprintf(stderr, "imapferry: %s: %s arguments\n", cmd->name,
		        nargs < cmd->min_args ? "missing" : "too many");
		goto usage;
	}
	*argi_r = optind;
	*status_r = 0;
	ret = 0;
	goto out;
usage:
	usage_short(cmd);
	*status_r = 2;
out:
	free(longopts);
	return ret;
}

int
cli_password_file_read(const char *path, char **pw_r, const char **error_r)
{
	char *pw;

	if (file_read_small(path, 64 * 1024, true, &pw, error_r) < 0)
		return -1;
	if (pw[0] == '\0') {
		secret_free(&pw);
		*error_r = err_set("password file %s is empty", path);
		return -1;
	}
	*pw_r = pw;
	return 0;
}
