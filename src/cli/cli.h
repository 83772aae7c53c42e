/* cli.h: shared pieces of the command-line tool. */
#ifndef IMAPFERRY_CLI_H
#define IMAPFERRY_CLI_H

#include "endpoint.h"

/* Options common to every subcommand that talks to servers. */
struct cli_common {
	struct net_options net;
	bool json;
};

int cmd_ls(int argc, char **argv);
int cmd_copy(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_fetch_only(int argc, char **argv);
int cmd_append_only(int argc, char **argv);

/* Parses a common option (--insecure, --tls-min, --ca-file, --timeout,
 * -v/--verbose, --debug, --trace). Returns 1 if opt was consumed, 0 if it
 * is not a common option, -1 on a bad value (message printed). */
int cli_common_option(struct cli_common *common, int opt, const char *arg);
/* Applies net options of common to an endpoint. */
void cli_apply_common(const struct cli_common *common, struct endpoint *ep);

/* getopt_long option codes for the common options */
enum {
	OPT_INSECURE = 1000, OPT_TLS_MIN, OPT_CA_FILE, OPT_TIMEOUT, OPT_DEBUG,
	OPT_TRACE, OPT_JSON, OPT_PASSWORD_FILE, OPT_AUTHZID,
	OPT_FIRST_LOCAL = 1100,
};

#define CLI_COMMON_LONGOPTS \
	{ "insecure", no_argument, NULL, OPT_INSECURE }, \
	{ "tls-min", required_argument, NULL, OPT_TLS_MIN }, \
	{ "ca-file", required_argument, NULL, OPT_CA_FILE }, \
	{ "timeout", required_argument, NULL, OPT_TIMEOUT }, \
	{ "verbose", no_argument, NULL, 'v' }, \
	{ "debug", no_argument, NULL, OPT_DEBUG }, \
	{ "trace", no_argument, NULL, OPT_TRACE }, \
	{ "json", no_argument, NULL, OPT_JSON }

#endif
