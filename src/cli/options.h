/* options.h: the command-line options of every imapferry command, each
 * defined once (name, argument, value check, help line) in one table
 * (options.c), and the one parser the commands share.
 *
 * A command lists the options it takes (struct cli_use, optionally with
 * its own help text); cli_parse() builds getopt_long's table from that
 * list, checks every value (counts against their range, --tls-min,
 * --timeout), handles the common options itself (struct cli_common) and
 * hands the others to the command's callback. --help prints the usage
 * generated from the same list, so a help text lists every option its
 * command takes. Usage errors: a message on stderr, exit status 2
 * (enum cli_exit). */
#ifndef IMAPFERRY_CLI_OPTIONS_H
#define IMAPFERRY_CLI_OPTIONS_H

#include "net.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* The exit status of every command (README "Exit status", the man
 * pages' EXIT STATUS; main.c prints the same table). */
enum cli_exit {
	CLI_EXIT_OK = 0,        /* all done */
	CLI_EXIT_FAILURES = 1,  /* done, with failures listed: messages or
	                         * folders refused (copy), differences
	                         * (verify), failed or pending jobs (run) */
	CLI_EXIT_USAGE = 2,     /* the command line: an unknown option, a bad
	                         * value, URL, folder rule, users file or
	                         * password file, a missing password */
	CLI_EXIT_ERROR = 3,     /* could not run, or stopped: a server not
	                         * reached or a login refused, a state
	                         * database or file that cannot be used, an
	                         * error that stops the whole run */
};

/* The same table as the last lines of each command's --help. */
#define CLI_EXIT_HELP \
	"exit status: 0 all done, 1 done with failures (listed), 2 usage,\n" \
	"  3 could not run (or stopped by an error)"

/* Every option of every command. */
enum cli_opt {
	CLI_OPT_NONE = 0,
	/* common (handled by cli_parse() into struct cli_common) */
	CLI_OPT_INSECURE = 1000, CLI_OPT_TLS_MIN, CLI_OPT_CA_FILE,
	CLI_OPT_TIMEOUT, CLI_OPT_VERBOSE, CLI_OPT_DEBUG, CLI_OPT_TRACE,
	CLI_OPT_JSON,
	/* one account (ls, bench tools) */
	CLI_OPT_PASSWORD_FILE, CLI_OPT_AUTHZID,
	/* a pair of accounts (copy, verify) and many (plan, run) */
	CLI_OPT_SRC_PWFILE, CLI_OPT_DST_PWFILE, CLI_OPT_SRC_AUTHZID,
	CLI_OPT_DST_AUTHZID, CLI_OPT_SRC_ADMIN, CLI_OPT_DST_ADMIN,
	CLI_OPT_STATE, CLI_OPT_INCLUDE, CLI_OPT_EXCLUDE, CLI_OPT_MAP,
	CLI_OPT_FOLDERS, CLI_OPT_DELETE_MISSING, CLI_OPT_SKIP_DELETED,
	CLI_OPT_OWNER, CLI_OPT_NO_FSYNC, CLI_OPT_FSYNC,
	/* copy */
	CLI_OPT_DRY_RUN, CLI_OPT_NO_SUBS, CLI_OPT_FETCH_BATCH,
	CLI_OPT_APPEND_DEPTH, CLI_OPT_SPOOL_DIR, CLI_OPT_SRC_POP3,
	CLI_OPT_PARALLEL, CLI_OPT_BODIES_FROM, CLI_OPT_DST_IMAP,
	CLI_OPT_RETRY_BUDGET,
	/* verify */
	CLI_OPT_DEEP, CLI_OPT_NO_STATE,
	/* plan, run, status */
	CLI_OPT_WORKERS, CLI_OPT_MAX_SRC, CLI_OPT_MAX_DST, CLI_OPT_SAMPLE,
	CLI_OPT_PROBE_TARGET, CLI_OPT_NO_PROBE_TARGET, CLI_OPT_NO_CALIBRATE,
	CLI_OPT_NO_SPLIT, CLI_OPT_UID_RANGES, CLI_OPT_NO_UID_RANGES,
	CLI_OPT_SPLIT_ABOVE, CLI_OPT_REPORT, CLI_OPT_NEW_RUN,
	CLI_OPT_MAX_ERRORS, CLI_OPT_BACKOFF, CLI_OPT_PROGRESS, CLI_OPT_LOG,
	CLI_OPT_RUN_ID, CLI_OPT_FINAL, CLI_OPT_HTML, CLI_OPT_METRICS,
	CLI_OPT_CHANGES, CLI_OPT_NO_CHECK,
	/* run on several machines (PostgreSQL state) */
	CLI_OPT_MACHINE, CLI_OPT_LEASE,
	/* plan from an inventory file, for several machines */
	CLI_OPT_INVENTORY, CLI_OPT_MACHINES, CLI_OPT_COST, CLI_OPT_SAVE_COST,
	CLI_OPT_SRC_MAX_RATE,
	/* the first id a program may use for options of its own (extra) */
	CLI_OPT_LOCAL = 1500,
};

enum cli_opt_kind {
	CLI_ARG_NONE,                 /* a flag */
	CLI_ARG_STRING,               /* any text */
	CLI_ARG_COUNT,                /* a number from 1 to max */
};

/* The definition of one option. */
struct cli_opt_def {
	int id;
	const char *name;             /* long name without "--" */
	char short_name;              /* e.g. 'v', or '\0' */
	enum cli_opt_kind kind;
	const char *metavar;          /* "FILE", "N"; NULL for a flag */
	uint64_t max;                 /* CLI_ARG_COUNT: the largest value */
	const char *help;             /* default help; '\n' starts a line
	                               * that is indented under the first */
};

/* An option a command takes, with its own help or NULL (the table's). */
struct cli_use {
	int id;
	const char *help;
};

struct cli_command {
	const char *name;             /* "copy", or "fetch-only" */
	const char *program;          /* "imapferry" */
	const char *synopsis;         /* "[options] SRC DST" */
	const char *intro;            /* lines before the options, or NULL */
	const struct cli_use *opts;   /* ends with id CLI_OPT_NONE */
	const char *trailer;          /* lines after the options, or NULL */
	int min_args, max_args;       /* operands after the options */
	const struct cli_opt_def *extra; /* the program's own options (ids
	                               * from CLI_OPT_LOCAL, ends with id 0),
	                               * or NULL */
};

/* The network and logging options (struct cli_common but --json), for
 * the struct cli_use list of every command that talks to servers. */
#define CLI_NET_USES \
	{ CLI_OPT_INSECURE, NULL }, { CLI_OPT_CA_FILE, NULL }, \
	{ CLI_OPT_TLS_MIN, NULL }, { CLI_OPT_TIMEOUT, NULL }, \
	{ CLI_OPT_VERBOSE, NULL }, { CLI_OPT_DEBUG, NULL }, \
	{ CLI_OPT_TRACE, NULL }

/* Options common to every command that talks to servers. */
struct cli_common {
	struct net_options net;
	bool json;
};

/* Called for each option other than the common ones, in command-line
 * order: arg is the text (NULL for a flag), num its value for a count.
 * Returns 0, or -1 for a value the command refuses (it printed why,
 * naming the option and the value). */
typedef int cli_option_fn(void *ctx, int id, const char *arg, uint64_t num);

/* Parses argv (argv[0] is the command's name) for cmd. Returns 0 with
 * *argi_r the index of the first operand (their count checked), or -1
 * with *status_r: 0 after --help (usage on stdout), 2 after a usage
 * error (unknown option, bad value, operand count: a message naming
 * the option and the value on stderr). */
int cli_parse(const struct cli_command *cmd, int argc, char **argv,
              struct cli_common *common, cli_option_fn *fn, void *ctx,
              int *argi_r, int *status_r);

/* The definition of option id: the table's, else cmd's own (cmd->extra;
 * cmd may be NULL). NULL if there is none. */
const struct cli_opt_def *cli_opt_find(const struct cli_command *cmd, int id);

/* Prints the full usage of cmd (what --help shows) to f. */
void cli_usage(const struct cli_command *cmd, FILE *f);
/* Prints "options:" and cmd's options with their help, as --help does. */
void cli_usage_options(const struct cli_command *cmd, FILE *f);

/* Prints "imapferry: --NAME 'VALUE': why" on stderr for a value of
 * option id (of the common table) that a command refuses. Returns -1
 * (for "return cli_bad_value(...)" in a cli_option_fn). */
int cli_bad_value(int id, const char *value, const char *why);

/* Reads a password file: its content without the trailing newline(s).
 * An empty file (or only newlines) is an error naming the file: never a
 * login with an empty password. Returns 0 with *pw_r (free with
 * secret_free()), or -1 with *error_r. */
int cli_password_file_read(const char *path, char **pw_r,
                           const char **error_r) ATTR_WARN_UNUSED;

#endif
