/* cli.h: shared pieces of the command-line tool. */
#ifndef IMAPFERRY_CLI_H
#define IMAPFERRY_CLI_H

#include "endpoint.h"
#include "options.h"

int cmd_ls(int argc, char **argv);
int cmd_copy(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_dovecot_config(int argc, char **argv);

/* Applies net options of common to an endpoint. */
void cli_apply_common(const struct cli_common *common, struct endpoint *ep);

/* --owner USER[:GROUP], names or numbers: *uid_r and *gid_r (the user's
 * group when no GROUP is given; (gid_t)-1 for a numeric user without
 * one). Returns 0, or -1 for an unknown user or group. */
int cli_parse_owner(const char *spec, uid_t *uid_r, gid_t *gid_r);

#endif
