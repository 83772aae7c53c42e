/* manual.c: the manual pages (imapferry --man [COMMAND], roff) and the
 * bash completion (imapferry --completion bash). Both are generated from
 * the commands (cli_commands[]) and the option table (options.c), so the
 * pages, the completion and --help list the same options with the same
 * help; the build runs them (CMake, build/man, build/completion). The
 * prose of each page is here, taken from README.md's Usage sections.
 *
 * The prose uses a little markup, turned into roff by render():
 * paragraphs are separated by a blank line; a paragraph whose lines start
 * with 4 spaces is an example, printed as it is; "- " starts a list item
 * (its other lines continue it); "## Title" is a subsection; `code` is
 * bold. Everything else is escaped for roff. */
#include "cli.h"

#include <stdbool.h>
#include <string.h>

/* What a page's ENVIRONMENT lists. */
enum {
	ENV_PASSWORD = 1 << 0,        /* IMAPFERRY_PASSWORD */
	ENV_PAIR = 1 << 1,            /* IMAPFERRY_SRC/DST_PASSWORD */
	ENV_TLS = 1 << 2,             /* SSL_CERT_FILE, SSL_CERT_DIR */
	ENV_TMPDIR = 1 << 3,          /* TMPDIR */
	ENV_STATE = 1 << 4,           /* XDG_STATE_HOME, HOME */
};

struct man_page {
	const char *name;             /* the command, NULL for imapferry(1) */
	const char *description;
	const char *exit_note;        /* after the exit status table, or NULL */
	unsigned env;
	const char *files;            /* or NULL */
	const char *examples;
};

static const char url_text[] =
	"## URLs\n"
	"\n"
	"- `imap://USER@HOST[:PORT]` uses STARTTLS when the server offers it. "
	"Add `?tls=none` to stay in plain text, or `?starttls=require` to "
	"insist on TLS.\n"
	"- `imaps://USER@HOST[:PORT]` uses implicit TLS.\n"
	"- USER may be `alice*master`, a Dovecot master-user login; the "
	"password is then the master's. It may end in `;AUTH=PLAIN`, "
	"`;AUTH=LOGIN` or `;AUTH=XOAUTH2`.\n"
	"- `maildir:PATH[?flavor=dovecot|courier]` is a Maildir on this "
	"machine, where a command takes one (copy, verify, run).\n"
	"\n"
	"Passwords never come from the command line: from a password file "
	"(the whole file but the trailing newlines; an empty file is an "
	"error) or from the environment (see ENVIRONMENT). Certificates are "
	"verified against the system CAs; `SSL_CERT_FILE` or `--ca-file` adds "
	"your own, `--insecure` turns verification off.";

static const struct man_page pages[] = {
	{ NULL,
	  "imapferry migrates mail accounts from one IMAP server to another, "
	  "for example from an old Cyrus to Dovecot, so that mail clients do "
	  "not notice the move:\n"
	  "\n"
	  "- every folder keeps its UIDVALIDITY and every message its UID, so "
	  "clients do not download everything again;\n"
	  "- copies are incremental: a bulk pass days before the switch, then "
	  "a short final pass;\n"
	  "- a verification shows, per account and folder, that nothing was "
	  "lost or changed.\n"
	  "\n"
	  "Each command has its own manual page, and `imapferry COMMAND "
	  "--help` lists its options.\n"
	  "\n"
	  "## Commands\n"
	  "\n"
	  "@COMMANDS@\n"
	  "\n"
	  "@URLS@",
	  NULL, ENV_PASSWORD | ENV_PAIR | ENV_TLS | ENV_STATE,
	  "- `~/.local/state/imapferry/*.db`: the state database of a copy or "
	  "verify run without `--state` (under `$XDG_STATE_HOME` when set).",
	  "Look at a server:\n"
	  "\n"
	  "    IMAPFERRY_PASSWORD=secret imapferry ls imaps://alice@mail.example\n"
	  "\n"
	  "Copy one account, then prove it:\n"
	  "\n"
	  "    export IMAPFERRY_SRC_PASSWORD=... IMAPFERRY_DST_PASSWORD=...\n"
	  "    imapferry copy --state alice.db \\\n"
	  "      imap://alice@old.example imap://alice@new.example\n"
	  "    imapferry verify --state alice.db \\\n"
	  "      imap://alice@old.example imap://alice@new.example" },
	{ "ls",
	  "`ls` connects to a server and shows its greeting, capabilities, "
	  "namespaces and hierarchy separator. It then lists every folder with "
	  "its attributes, special use, message count and size in bytes, and "
	  "the totals.\n"
	  "\n"
	  "- `--authzid alice`, with the admin or master user in the URL, logs "
	  "in on behalf of alice with `AUTHENTICATE PLAIN`.\n"
	  "- The password comes from `--password-file` or from "
	  "`$IMAPFERRY_PASSWORD`, never from the command line.\n"
	  "- `--json` prints a single object with the keys `server`, "
	  "`namespaces`, `separator`, `folders` and `totals`. Sizes are the "
	  "server's RFC822.SIZE.\n"
	  "\n"
	  "@URLS@",
	  "A server that cannot be reached or refuses the login: 3.",
	  ENV_PASSWORD | ENV_TLS, NULL,
	  "    IMAPFERRY_PASSWORD=secret \\\n"
	  "      imapferry ls --json 'imap://alice@mail.example.org'\n"
	  "\n"
	  "An admin looking at alice's account on a Cyrus server:\n"
	  "\n"
	  "    imapferry ls --password-file admin.pw --authzid alice \\\n"
	  "      imaps://cyrus@mail.example.org" },
	{ "copy",
	  "Copies one account, incrementally.\n"
	  "\n"
	  "- Every folder (or those chosen with `--include`/`--exclude` regular "
	  "expressions), mapped between the two servers' namespaces: prefix and "
	  "separator (`INBOX.Sent` with `.` on Cyrus or Courier becomes `Sent` "
	  "on a Dovecot with `/`), special-use folders matched by attribute or "
	  "common name, `--map 'OLD=NEW'` rules, modified UTF-7 both ways; "
	  "subscriptions copied.\n"
	  "- Bodies byte for byte, flags and keywords (what the target's "
	  "PERMANENTFLAGS refuses is reported), INTERNALDATE, `\\Deleted` "
	  "messages with their flag (`--skip-deleted` to leave them).\n"
	  "- The source is only read: EXAMINE and BODY.PEEK, never STORE or "
	  "EXPUNGE there.\n"
	  "- Incremental: the state database (SQLite, `--state FILE`) maps each "
	  "source message to its copy. A re-run copies only new messages, "
	  "carries flag changes over (CONDSTORE CHANGEDSINCE when offered), and "
	  "with `--delete-missing` expunges on the target what the source lost. "
	  "Without state, copies are recognized by fingerprint and not made "
	  "twice. A run killed at any moment is simply run again. "
	  "`--folders INBOX` copies only the INBOX: the final cutover pass.\n"
	  "- Failures by scope: a message the target refuses is recorded with "
	  "the server's reason and the run goes on (exit status 1); a dropped "
	  "connection is reopened with backoff; a refused login or a full disk "
	  "stops the run (exit status 3). `--dry-run` shows what would be "
	  "done.\n"
	  "- Admin logins: `--src-authzid alice` with the admin in the URL "
	  "(Cyrus admins, Dovecot master users via SASL PLAIN), or "
	  "`imap://alice*master@host`. Courier ignores an authorization "
	  "identity and would log in as the admin: imapferry detects it and "
	  "refuses.\n"
	  "- The same account as SRC and DST is refused.\n"
	  "\n"
	  "## Transparent cutover into a Maildir\n"
	  "\n"
	  "IMAP gives no way to choose UIDs on APPEND, so with DST "
	  "`maildir:PATH` imapferry writes the new server's Maildir itself "
	  "(`?flavor=dovecot`, the default, or `?flavor=courier`; PATH may use "
	  "`%u`, `%n`, `%d`): every folder keeps the source's UIDVALIDITY and "
	  "UIDNEXT and every message its UID. `--src-pop3` keeps the INBOX's "
	  "POP3 UIDLs too. Files go to `tmp/`, get their INTERNALDATE as mtime "
	  "and are published into `cur/` with the uidlist under Dovecot's "
	  "`dovecot-uidlist.lock`, so re-runs into a Maildir that Dovecot is "
	  "already serving keep every UID stable. A Maildir can also be the "
	  "source (`maildir:PATH` as SRC, read through its uidlist).\n"
	  "\n"
	  "@URLS@",
	  "1: messages or folders that could not be copied, each listed with "
	  "the server's reason. 3: a server not reached, a refused login, a "
	  "state database that cannot be opened, or an error that stopped the "
	  "copy (a full disk, OVERQUOTA); run again once the cause is fixed.",
	  ENV_PAIR | ENV_TLS | ENV_TMPDIR | ENV_STATE,
	  "- `~/.local/state/imapferry/*.db`: the state database without "
	  "`--state`, one per source and target (under `$XDG_STATE_HOME` when "
	  "set).\n"
	  "- `dovecot-uidlist`, `dovecot-keywords`, `courierimapuiddb`, "
	  "`courierimapkeywords/`: the UID and keyword files written into a "
	  "Maildir target.",
	  "    IMAPFERRY_SRC_PASSWORD=... IMAPFERRY_DST_PASSWORD=... \\\n"
	  "      imapferry copy --state alice.db \\\n"
	  "      imap://alice@old.example imap://alice@new.example\n"
	  "\n"
	  "The final pass of a cutover, only the INBOX:\n"
	  "\n"
	  "    imapferry copy --state alice.db --folders INBOX \\\n"
	  "      imap://alice@old.example imap://alice@new.example\n"
	  "\n"
	  "Into the Maildir the new Dovecot serves, keeping UIDs and UIDLs:\n"
	  "\n"
	  "    imapferry copy --owner vmail:vmail \\\n"
	  "      --src-pop3 pop3://alice@old.example \\\n"
	  "      imap://alice@old.example maildir:/srv/mail/alice/Maildir" },
	{ "verify",
	  "Compares an account on two servers, per folder: counts and every "
	  "message (size, INTERNALDATE, flags, Message-ID; `--deep` compares "
	  "the SHA-256 of every message), paired through the state database "
	  "when it exists, else by fingerprint; against a Maildir target "
	  "(`maildir:PATH[?flavor=dovecot|courier]` as DST), by UID, with "
	  "UIDVALIDITY and UIDNEXT. Every difference is listed (`--json` "
	  "too).\n"
	  "\n"
	  "@URLS@",
	  "1: differences were found, each listed. 3: a server not reached, a "
	  "refused login, a state database that cannot be opened.",
	  ENV_PAIR | ENV_TLS | ENV_STATE,
	  "- `~/.local/state/imapferry/*.db`: the state database of a copy "
	  "without `--state` (under `$XDG_STATE_HOME` when set).",
	  "    imapferry verify --deep --state alice.db \\\n"
	  "      imap://alice@old.example imap://alice@new.example" },
	{ "plan",
	  "Takes an inventory of every account of USERS, measures the servers "
	  "on a short sample (cost per message, per byte, per folder, per "
	  "login), and prints the schedule: largest first, the biggest "
	  "mailboxes split by folder so they do not decide the end time, the "
	  "predicted time for 1..N workers and the estimated end. Into a "
	  "Maildir, one large folder is also split into UID ranges copied at "
	  "the same time (`--no-uid-ranges` to keep folders whole). Nothing is "
	  "written to the target but, unless `--no-probe-target`, a scratch "
	  "folder that is deleted afterwards.\n"
	  "\n"
	  "- USERS is a CSV file (`src_user,dst_user[,src_password_file,"
	  "dst_password_file]`) or imapsync's `user1;password1;user2;"
	  "password2` lines.\n"
	  "- SRC and DST are templates with `%u` (user), `%n` (local part) and "
	  "`%d` (domain): `imap://%u@old.example`, `imap://%u*master@host`, "
	  "`maildir:/srv/mail/%u/Maildir`. A line whose source and target are "
	  "the same account is refused.\n"
	  "\n"
	  "With `--inventory FILE` nothing is contacted: the accounts and "
	  "their folders come from FILE (the JSON of `plan --json`, which "
	  "holds an \"inventory\" array, or CSV lines "
	  "`account,folder,messages,bytes`) and the costs from `--cost FILE` "
	  "(what `--save-cost FILE` wrote after a calibration, or a `plan "
	  "--json` output; else the defaults). `--machines M` prints the "
	  "estimate for 1..M machines of `--workers` jobs each sharing one "
	  "queue, and what limits each (`--src-max-rate`: the source's total). "
	  "With `--final`, FILE lists the new mail since the last complete "
	  "pass: a folder with 0 messages costs one STATUS. docs/SCALE.md "
	  "simulates a whole server this way.\n"
	  "\n"
	  "@URLS@",
	  "An account that cannot be inventoried is logged and planned with "
	  "default costs (exit status 0). 2: a malformed inventory or cost "
	  "file (the line named). 3: the inventory could not run.",
	  ENV_PAIR | ENV_TLS, NULL,
	  "    imapferry plan --workers 8 --src-admin cyrus \\\n"
	  "      --src-password-file admin.pw --dst-password-file master.pw \\\n"
	  "      users.csv 'imap://%u@old.example' \\\n"
	  "      'imap://%u*master@new.example'\n"
	  "    imapferry plan --inventory old-server.csv --cost cost.json \\\n"
	  "      --workers 8 --machines 8 --src-max-rate 150" },
	{ "run",
	  "Executes the plan of `imapferry-plan`(1) with N workers, with caps "
	  "on sessions per source and per target server (`--max-src-conns`, "
	  "`--max-dst-conns`), retries by error scope with backoff, live "
	  "progress (a bar on a terminal, log lines otherwise), a summary per "
	  "account and `--report FILE.json` (written mode 0600 and replaced "
	  "atomically: it names accounts). `--metrics FILE.prom` writes "
	  "Prometheus metrics every 5 s for node_exporter's textfile "
	  "collector (copied messages and bytes per source and target host, "
	  "jobs by state, retries, queue depth, rates, the estimated end). "
	  "Everything is in the state "
	  "database: the same command after a crash or a kill resumes; "
	  "`--new-run` starts a new pass. `^C` once starts no new jobs and "
	  "waits for the running ones; twice, it quits at once (the run "
	  "resumes).\n"
	  "\n"
	  "USERS, SRC and DST are those of `imapferry-plan`(1).\n"
	  "\n"
	  "@URLS@",
	  "1: jobs failed or are left pending (also after ^C), each listed in "
	  "the summary; the same command retries them. 3: an error that stops "
	  "the whole run (no login works, the target is full), or a state "
	  "database or log file that cannot be used. A second ^C or SIGTERM "
	  "quits at once with exit status 130.",
	  ENV_PAIR | ENV_TLS | ENV_TMPDIR,
	  "- `FILE` (`--state`): the state database: mappings, jobs, progress.\n"
	  "- `FILE.lock`: keeps a second run on the same state database out.\n"
	  "- `FILE.log`: the log on a terminal without `--log`, so the display "
	  "stays clean.",
	  "    imapferry run --workers 8 --state migration.db \\\n"
	  "      --src-admin cyrus --src-password-file admin.pw \\\n"
	  "      --dst-password-file master.pw --report report.json \\\n"
	  "      users.csv 'imap://%u@old.example' \\\n"
	  "      'imap://%u*master@new.example'\n"
	  "    imapferry plan --inventory old-server.csv --cost cost.json \\\n"
	  "      --workers 8 --machines 8 --src-max-rate 150" },
	{ "check",
	  "Lists, before anything is copied, what mail clients will notice "
	  "after the switch from SRC to DST (the same URLs and options as "
	  "`imapferry-copy`(1); nothing is written anywhere). Each finding has "
	  "a severity (error, warning, info), the folders or messages "
	  "concerned and the remedy:\n"
	  "\n"
	  "- `uids`: an IMAP target chooses new UIDVALIDITYs and UIDs, so every "
	  "client downloads every folder again (remedy: a `maildir:` target);\n"
	  "- `namespace`: the personal namespace prefix or the separator "
	  "differs, so folder paths kept in clients' settings break (remedy: "
	  "`imapferry-dovecot-config`(1));\n"
	  "- `special-use`: Sent, Drafts, Trash, Junk, Archive folders the "
	  "target does not announce;\n"
	  "- `name`: names the target cannot hold (too long, unsafe, outside "
	  "the BMP on Courier, case-only differences);\n"
	  "- `appendlimit`, `keywords`, `pop3`, `host`.\n"
	  "\n"
	  "`--json` prints one object with `noticed` and `findings`.",
	  "0: clients notice nothing (infos only); 1: they will notice "
	  "something; 3: a server could not be reached or refused the login.",
	  ENV_PASSWORD | ENV_PAIR | ENV_TLS, NULL,
	  "    imapferry check imap://alice@old.example \\\n"
	  "      maildir:/srv/mail/alice/Maildir" },
	{ "dovecot-config",
	  "Prints a Dovecot 2.3 configuration fragment that makes the Dovecot "
	  "serving a migrated Maildir look like SRC to mail clients: the "
	  "personal namespace with SRC's prefix and separator (`inbox = yes`), "
	  "a `mailbox` block with `special_use` for each folder that has one "
	  "on SRC, and `pop3_uidl_format` for the POP3 UIDLs that `copy "
	  "--src-pop3` keeps. Include it after Debian's `conf.d/` files "
	  "(e.g. as `conf.d/99-imapferry.conf`) and check with `doveconf -n`.",
	  "3: the server could not be reached or refused the login.",
	  ENV_PASSWORD | ENV_TLS, NULL,
	  "    imapferry dovecot-config imap://alice@old.example \\\n"
	  "      > /etc/dovecot/conf.d/99-imapferry.conf" },
	{ "status",
	  "Shows the progress of the last run (or run ID) of a state "
	  "database: live while it runs, from any terminal, and the summary "
	  "when it is over. `--json` prints the report that `run --report` "
	  "writes.",
	  "3: the state database does not exist or cannot be read.",
	  0,
	  "- `FILE` (`--state`): the state database of `imapferry-run`(1), "
	  "only read.",
	  "    imapferry status --state migration.db\n"
	  "    imapferry status --state migration.db --json" },
	{ "report",
	  "Writes the report of the last run (or run ID) of a state database "
	  "as one HTML page (`--html`): self-contained (no script, font or "
	  "image from elsewhere), readable on a phone and printable. It shows "
	  "the run at a glance (accounts, messages, bytes, duration, the "
	  "plan's estimate against what happened, failures), a timeline with "
	  "a bar per job, the throughput over time, histograms of account "
	  "sizes and times, a table of the accounts that sorts by any column, "
	  "and every failure grouped by its reason. Without `--html` it prints "
	  "the summary of `imapferry-run`(1) with the failures by reason, or "
	  "with `--json` the report that `run --report` writes. A run with "
	  "`--bodies-from cyrus-spool:` also shows, per account and in total, "
	  "how many bodies came from the spool and how many over IMAP, by "
	  "reason (`missing`, `size`, `uidvalidity`, `error`); nothing for "
	  "other runs.\n"
	  "\n"
	  "Some of it is derived, not stored: the state database does not "
	  "record which worker ran a job, so the timeline's lanes come from "
	  "interval scheduling; the throughput spreads each job's messages and "
	  "bytes evenly over its last attempt; a failure's reason "
	  "(`refused-by-target`, `too-large`, `over-quota`, `uid-conflict`, "
	  "`source-vanished`, `source-folder-failed`, `target-folder-failed`, "
	  "`session`, `run`) is read from its scope and its text.",
	  "3: the state database does not exist, holds no run, or the page "
	  "cannot be written.",
	  0,
	  "- `FILE` (`--state`): the state database of `imapferry-run`(1), "
	  "only read.\n"
	  "- `OUT.html` (`--html`): written mode 0600 (it names accounts) "
	  "through a temporary file in the same directory, renamed over it.",
	  "    imapferry report --state migration.db --html report.html\n"
	  "    imapferry report --state migration.db --run 3 --json" },
};

/* Text with roff's special characters escaped. A '-' at the start of a
 * word (an option) and every '-' in code is a minus, "\-"; one inside a
 * word stays a hyphen. */
static void
put_escaped(FILE *f, const char *s, size_t n, bool code)
{
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];

		if (ch == '\\') {
			fputs("\\e", f);
		} else if (ch == '-' && (code || i == 0 || s[i - 1] == ' ' ||
		           s[i - 1] == '(' || s[i - 1] == '[' || s[i - 1] == '-' ||
		           s[i - 1] == '/' || s[i - 1] == '|')) {
			fputs("\\-", f);
		} else if ((ch == '.' || ch == '\'') && (i == 0 || s[i - 1] == '\n')) {
			fputs("\\&", f);
			fputc(ch, f);
		} else {
			fputc(ch, f);
		}
	}
}

/* One line of prose: escaped, `code` in bold. */
static void
put_inline(FILE *f, const char *s, size_t n)
{
	size_t i = 0;

	if (n > 0 && (s[0] == '.' || s[0] == '\''))
		fputs("\\&", f);
	while (i < n) {
		const char *tick = memchr(s + i, '`', n - i);
		const char *end;

		if (tick == NULL ||
		    (end = memchr(tick + 1, '`', n - (size_t)(tick + 1 - s))) == NULL) {
			put_escaped(f, s + i, n - i, false);
			return;
		}
		put_escaped(f, s + i, (size_t)(tick - (s + i)), false);
		fputs("\\fB", f);
		put_escaped(f, tick + 1, (size_t)(end - tick - 1), true);
		fputs("\\fR", f);
		i = (size_t)(end + 1 - s);
	}
}

/* The command list of imapferry(1). */
static void
put_commands(FILE *f)
{
	for (const struct cli_entry *e = cli_commands; e->cmd != NULL; e++) {
		fputs(".TP\n\\fBimapferry ", f);
		put_escaped(f, e->cmd->name, strlen(e->cmd->name), true);
		fputs("\\fR ", f);
		put_escaped(f, e->operands, strlen(e->operands), false);
		fputc('\n', f);
		put_escaped(f, e->summary, strlen(e->summary), false);
		fprintf(f, ": \\fBimapferry\\-%s\\fR(1).\n", e->cmd->name);
	}
}

/* Renders doc (the markup of the top of this file) as roff. */
static void
render(FILE *f, const char *doc)
{
	const char *p = doc;
	bool first = true;

	while (*p != '\0') {
		const char *end = strstr(p, "\n\n");
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
		const char *next = end != NULL ? end + 2 : p + len;

		if (strncmp(p, "@COMMANDS@", len) == 0 && len == 10) {
			put_commands(f);
		} else if (strncmp(p, "@URLS@", len) == 0 && len == 6) {
			render(f, url_text);
		} else if (strncmp(p, "## ", 3) == 0) {
			fputs(".SS \"", f);
			put_escaped(f, p + 3, len - 3, false);
			fputs("\"\n", f);
			first = true;
			p = next;
			continue;
		} else if (strncmp(p, "    ", 4) == 0) {
			/* an example: as it is, indented */
			fputs(first ? "" : ".PP\n", f);
			fputs(".RS 4\n.nf\n", f);
			for (const char *l = p; l < p + len;) {
				const char *nl = memchr(l, '\n', (size_t)(p + len - l));
				size_t ll = nl != NULL ? (size_t)(nl - l) : (size_t)(p + len - l);

				if (ll >= 4 && (l[4] == '.' || l[4] == '\''))
					fputs("\\&", f);
				put_escaped(f, l + 4, ll - 4, true);
				fputc('\n', f);
				l += ll + 1;
			}
			fputs(".fi\n.RE\n", f);
		} else if (strncmp(p, "- ", 2) == 0) {
			/* a list: an item per "- " line */
			for (const char *l = p; l < p + len;) {
				const char *nl = memchr(l, '\n', (size_t)(p + len - l));
				size_t ll = nl != NULL ? (size_t)(nl - l) : (size_t)(p + len - l);

				if (strncmp(l, "- ", 2) == 0) {
					fputs(".IP \\(bu 2\n", f);
					put_inline(f, l + 2, ll - 2);
				} else {
					put_inline(f, l, ll);
				}
				fputc('\n', f);
				l += ll + 1;
			}
		} else {
			fputs(first ? "" : ".PP\n", f);
			put_inline(f, p, len);
			fputc('\n', f);
		}
		first = false;
		p = next;
	}
}

/* One option's tag and help, as in --help but with the lines joined. */
static void
put_option(FILE *f, const struct cli_opt_def *d, const char *help)
{
	fputs(".TP\n", f);
	if (d->short_name != '\0')
		fprintf(f, "\\fB\\-%c\\fR, ", d->short_name);
	fputs("\\fB\\-\\-", f);
	put_escaped(f, d->name, strlen(d->name), true);
	fputs("\\fR", f);
	if (d->metavar != NULL) {
		fputs(" \\fI", f);
		put_escaped(f, d->metavar, strlen(d->metavar), true);
		fputs("\\fR", f);
	}
	fputc('\n', f);
	for (const char *h = help; *h != '\0'; h++) {
		if (*h == '\n')
			fputc(' ', f);
		else if (*h == '\\')
			fputs("\\e", f);
		else if (*h == '-' && (h == help || h[-1] == ' ' || h[-1] == '\n' ||
		         h[-1] == '-' || h[-1] == '('))
			fputs("\\-", f);
		else
			fputc(*h, f);
	}
	fputs(".\n", f);
}

static void
put_options(FILE *f, const struct cli_command *cmd)
{
	fputs(".SH OPTIONS\n", f);
	for (const struct cli_use *u = cmd->opts; u->id != CLI_OPT_NONE; u++) {
		const struct cli_opt_def *d = cli_opt_find(cmd, u->id);

		if (d != NULL)
			put_option(f, d, u->help != NULL ? u->help : d->help);
	}
	fputs(".TP\n\\fB\\-h\\fR, \\fB\\-\\-help\\fR\n"
	      "Print the usage and every option, then exit.\n", f);
}

static void
put_env(FILE *f, unsigned env)
{
	fputs(".SH ENVIRONMENT\n", f);
	if (env == 0)
		fputs("None: this command reads only its state database.\n", f);
	if (env & ENV_PASSWORD)
		fputs(".TP\n.B IMAPFERRY_PASSWORD\n"
		      "The password, when there is no \\fB\\-\\-password\\-file\\fR.\n", f);
	if (env & ENV_PAIR)
		fputs(".TP\n.B IMAPFERRY_SRC_PASSWORD\n"
		      "The source's password (for plan and run: the admin's, or "
		      "that of every account without one in the users file), when "
		      "there is no \\fB\\-\\-src\\-password\\-file\\fR.\n"
		      ".TP\n.B IMAPFERRY_DST_PASSWORD\n"
		      "The same for the target (\\fB\\-\\-dst\\-password\\-file\\fR).\n",
		      f);
	if (env & ENV_TLS)
		fputs(".TP\n.B SSL_CERT_FILE\n"
		      "A file of CA certificates that OpenSSL trusts instead of the "
		      "system's (\\fBSSL_CERT_DIR\\fR: a directory); "
		      "\\fB\\-\\-ca\\-file\\fR adds to them.\n", f);
	if (env & ENV_TMPDIR)
		fputs(".TP\n.B TMPDIR\n"
		      "Where spool files of large messages go (default /tmp).\n", f);
	if (env & ENV_STATE)
		fputs(".TP\n.BR XDG_STATE_HOME \", \" HOME\n"
		      "The default state database is under "
		      "\\fI$XDG_STATE_HOME/imapferry\\fR, else "
		      "\\fI$HOME/.local/state/imapferry\\fR.\n", f);
}

static void
put_exit(FILE *f, const char *note)
{
	fputs(".SH EXIT STATUS\n"
	      "The same for every imapferry command:\n"
	      ".TP\n.B 0\nAll done.\n"
	      ".TP\n.B 1\nDone, with failures, each listed: messages or folders "
	      "refused (copy), differences (verify), failed or pending jobs "
	      "(run).\n"
	      ".TP\n.B 2\nUsage: an unknown option, a bad option value, URL, "
	      "folder rule, users file or password file, a missing password.\n"
	      ".TP\n.B 3\nCould not run, or stopped by an error: a server not "
	      "reached or a login refused, a state database that cannot be "
	      "used, an error that stops the whole run.\n", f);
	if (note != NULL) {
		fputs(".PP\n", f);
		put_inline(f, note, strlen(note));
		fputc('\n', f);
	}
}

static void
put_see_also(FILE *f, const char *name)
{
	bool first = true;

	fputs(".SH SEE ALSO\n", f);
	if (name != NULL) {
		fputs(".BR imapferry (1)", f);
		first = false;
	}
	for (const struct cli_entry *e = cli_commands; e->cmd != NULL; e++) {
		if (name != NULL && strcmp(name, e->cmd->name) == 0)
			continue;
		fprintf(f, "%s.BR imapferry\\-%s (1)", first ? "" : ",\n",
		        e->cmd->name);
		first = false;
	}
	fputs(",\n.BR dovecot (1),\n.BR mbsync (1)\n.PP\n"
	      "README.md and docs/ in /usr/share/doc/imapferry.\n", f);
}

int
cli_man_print(const char *name, const char *date, FILE *f)
{
	const struct man_page *pg = NULL;
	const struct cli_entry *e = NULL;
	char upper[64];
	size_t i;

	for (i = 0; i < sizeof(pages) / sizeof(pages[0]); i++)
		if ((name == NULL) == (pages[i].name == NULL) &&
		    (name == NULL || strcmp(name, pages[i].name) == 0))
			pg = &pages[i];
	if (name != NULL)
		for (e = cli_commands; e->cmd != NULL; e++)
			if (strcmp(name, e->cmd->name) == 0)
				break;
	if (pg == NULL || (e != NULL && e->cmd == NULL))
		return -1;
	snprintf(upper, sizeof(upper), "IMAPFERRY%s%s", name ? "\\-" : "",
	         name ? name : "");
	for (i = 0; upper[i] != '\0'; i++)
		if (upper[i] >= 'a' && upper[i] <= 'z')
			upper[i] = (char)(upper[i] - 'a' + 'A');
	fprintf(f, ".\\\" Generated by imapferry --man from src/cli (options.c, "
	        "manual.c): do not edit.\n");
	fprintf(f, ".TH %s 1 \"%s\" \"imapferry %s\" \"User Commands\"\n", upper,
	        date != NULL ? date : "", IMAPFERRY_VERSION);
	/* no hyphenation: options and URLs must stay whole */
	fputs(".nh\n.ad l\n.SH NAME\n", f);
	if (e == NULL) {
		fputs("imapferry \\- migrate mail accounts between IMAP servers, "
		      "keeping UIDs\n"
		      ".SH SYNOPSIS\n"
		      ".B imapferry\n.I COMMAND\n[options] ...\n.br\n"
		      ".B imapferry\n\\fB\\-\\-help\\fR | \\fB\\-\\-version\\fR\n", f);
	} else {
		fprintf(f, "imapferry\\-%s \\- %s\n", e->cmd->name, e->summary);
		fprintf(f, ".SH SYNOPSIS\n.B imapferry %s\n", e->cmd->name);
		put_escaped(f, e->cmd->synopsis, strlen(e->cmd->synopsis), true);
		fputc('\n', f);
	}
	fputs(".SH DESCRIPTION\n", f);
	render(f, pg->description);
	if (e != NULL) {
		put_options(f, e->cmd);
	} else {
		struct cli_command main_opts = { .name = "imapferry",
		                                 .opts = cli_main_uses };

		put_options(f, &main_opts);
		fputs(".TP\n\\fB\\-\\-version\\fR\nPrint the version, then exit.\n"
		      ".PP\nEach command takes the options its page lists; most "
		      "take these.\n", f);
	}
	put_exit(f, pg->exit_note);
	put_env(f, pg->env);
	if (pg->files != NULL) {
		fputs(".SH FILES\n", f);
		render(f, pg->files);
	}
	fputs(".SH EXAMPLES\n", f);
	render(f, pg->examples);
	put_see_also(f, name);
	return 0;
}

/* The options of cmd that take a value, as a bash case pattern. */
static void
put_value_options(FILE *f, const struct cli_command *cmd)
{
	bool first = true;

	for (const struct cli_use *u = cmd->opts; u->id != CLI_OPT_NONE; u++) {
		const struct cli_opt_def *d = cli_opt_find(cmd, u->id);

		if (d == NULL || d->kind == CLI_ARG_NONE)
			continue;
		fprintf(f, "%s--%s", first ? "" : "|", d->name);
		if (d->short_name != '\0')
			fprintf(f, "|-%c", d->short_name);
		first = false;
	}
	if (first)
		fputs("--", f);   /* no such option: never matches a value */
}

void
cli_completion_bash(FILE *f)
{
	fputs("# bash completion for imapferry\n"
	      "# Generated by imapferry --completion bash from the option table "
	      "(src/cli):\n# do not edit.\n"
	      "\n"
	      "_imapferry()\n"
	      "{\n"
	      "\tlocal cur=${COMP_WORDS[COMP_CWORD]} prev= opts= values=\n"
	      "\t[ \"$COMP_CWORD\" -gt 0 ] && prev=${COMP_WORDS[COMP_CWORD-1]}\n"
	      "\tCOMPREPLY=()\n"
	      "\tif [ \"$COMP_CWORD\" -le 1 ]; then\n"
	      "\t\tCOMPREPLY=($(compgen -W '", f);
	for (const struct cli_entry *e = cli_commands; e->cmd != NULL; e++)
		fprintf(f, "%s ", e->cmd->name);
	fputs("--help --version' -- \"$cur\"))\n"
	      "\t\treturn 0\n"
	      "\tfi\n"
	      "\tcase ${COMP_WORDS[1]} in\n", f);
	for (const struct cli_entry *e = cli_commands; e->cmd != NULL; e++) {
		const struct cli_command *cmd = e->cmd;

		fprintf(f, "\t%s)\n\t\topts='", cmd->name);
		for (const struct cli_use *u = cmd->opts; u->id != CLI_OPT_NONE;
		     u++) {
			const struct cli_opt_def *d = cli_opt_find(cmd, u->id);

			if (d == NULL)
				continue;
			fprintf(f, "--%s ", d->name);
			if (d->short_name != '\0')
				fprintf(f, "-%c ", d->short_name);
		}
		fputs("--help -h'\n\t\tcase $prev in\n\t\t", f);
		put_value_options(f, cmd);
		fputs(") values=1 ;;\n\t\tesac\n\t\t;;\n", f);
	}
	fputs("\t*)\n"
	      "\t\treturn 0\n"
	      "\t\t;;\n"
	      "\tesac\n"
	      "\t# an option's value: files (the default completion)\n"
	      "\t[ -n \"$values\" ] && return 0\n"
	      "\tcase $cur in\n"
	      "\t-*)\n"
	      "\t\tCOMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n"
	      "\t\t;;\n"
	      "\tesac\n"
	      "\treturn 0\n"
	      "}\n"
	      "complete -o bashdefault -o default -F _imapferry imapferry\n", f);
}
