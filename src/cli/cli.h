/* cli.h: shared pieces of the command-line tool. */
#ifndef IMAPFERRY_CLI_H
#define IMAPFERRY_CLI_H

#include "endpoint.h"
#include "options.h"

#include <stdio.h>

int cmd_ls(int argc, char **argv);
int cmd_copy(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_dovecot_config(int argc, char **argv);

/* Each command's name, synopsis, help texts and options (ls.c, ...). */
extern const struct cli_command cli_cmd_ls, cli_cmd_copy, cli_cmd_verify,
    cli_cmd_plan, cli_cmd_run, cli_cmd_status, cli_cmd_report, cli_cmd_check,
    cli_cmd_dovecot_config;

/* One imapferry command: what main() dispatches to and what the manual
 * pages and the completion are generated from. */
struct cli_entry {
	const struct cli_command *cmd;
	int (*run)(int argc, char **argv);
	const char *operands;         /* for imapferry --help: "SRC DST" */
	const char *summary;          /* one line, no capital, no period */
};

/* Every command, in the order of imapferry --help; ends with cmd NULL. */
extern const struct cli_entry cli_commands[];

/* The common options as imapferry --help lists them (ends with id 0). */
extern const struct cli_use cli_main_uses[];

/* Prints imapferry --help to f (the commands, URLs, common options). */
void cli_main_usage(FILE *f);

/* Prints the manual page of command name (NULL: imapferry(1) itself) in
 * roff to f; date is the page's date ("2024-05-01") or NULL. Returns 0,
 * or -1 for an unknown command. */
int cli_man_print(const char *name, const char *date, FILE *f);

/* Prints the bash completion script of imapferry to f. */
void cli_completion_bash(FILE *f);

/* Applies net options of common to an endpoint. */
void cli_apply_common(const struct cli_common *common, struct endpoint *ep);

/* --owner USER[:GROUP], names or numbers: *uid_r and *gid_r (the user's
 * group when no GROUP is given; (gid_t)-1 for a numeric user without
 * one). Returns 0, or -1 for an unknown user or group. */
int cli_parse_owner(const char *spec, uid_t *uid_r, gid_t *gid_r);

/* --fsync MODE into *fsync_r, *fs_r (struct maildir_options): file
 * (fdatasync each new file, the default), fs (one syncfs() of the
 * target file system per commit), off (as --no-fsync). Returns 0, or -1
 * for another word. */
int cli_parse_fsync(const char *mode, bool *fsync_r, bool *fs_r);

#endif
