/* main.c: imapferry command dispatch. */
#include "cli.h"

#include <signal.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct cli_entry cli_commands[] = {
	{ &cli_cmd_ls, cmd_ls, "URL",
	  "list a server's capabilities, namespaces and folders" },
	{ &cli_cmd_copy, cmd_copy, "SRC DST",
	  "copy an account, incrementally" },
	{ &cli_cmd_verify, cmd_verify, "SRC DST",
	  "compare an account on two servers" },
	{ &cli_cmd_check, cmd_check, "SRC DST",
	  "what mail clients will notice after the switch" },
	{ &cli_cmd_dovecot_config, cmd_dovecot_config, "SRC",
	  "a Dovecot configuration that keeps SRC's folder names" },
	{ &cli_cmd_plan, cmd_plan, "USERS SRC DST",
	  "inventory and schedule many accounts" },
	{ &cli_cmd_run, cmd_run, "USERS SRC DST --state FILE",
	  "migrate many accounts" },
	{ &cli_cmd_status, cmd_status, "--state FILE",
	  "progress of a run" },
	{ &cli_cmd_report, cmd_report, "--state FILE --html OUT",
	  "a run's report as one HTML page" },
	{ NULL, NULL, NULL, NULL },
};

/* What imapferry --help lists as common options: most commands take
 * them (each command's --help says which). */
const struct cli_use cli_main_uses[] = {
	{ CLI_OPT_PASSWORD_FILE, NULL }, { CLI_OPT_AUTHZID, NULL },
	{ CLI_OPT_JSON, NULL },
	CLI_NET_USES,
	{ CLI_OPT_NONE, NULL },
};

static const struct cli_command main_cmd = {
	.name = "COMMAND", .program = "imapferry", .synopsis = "[options] ...",
	.opts = cli_main_uses,
};

void
cli_main_usage(FILE *f)
{
	fputs("usage: imapferry COMMAND [options] ...\n"
	      "\n"
	      "commands:\n", f);
	for (const struct cli_entry *e = cli_commands; e->cmd != NULL; e++) {
		char left[64];

		snprintf(left, sizeof(left), "%s %s", e->cmd->name, e->operands);
		/* a long synopsis: the summary on a line of its own */
		fprintf(f, "  %-18s%s%s\n", left,
		        strlen(left) < 18 ? " " : "\n                     ",
		        e->summary);
	}
	fputs("imapferry COMMAND --help lists a command's options; the manual:\n"
	      "man imapferry, man imapferry-COMMAND.\n"
	      "\n"
	      "URL: imap://USER@HOST[:PORT] (STARTTLS, required; ?tls=none for plain\n"
	      "     text), imaps://USER@HOST[:PORT] (implicit TLS).\n"
	      "     USER may be alice*master (Dovecot master user) and may end in\n"
	      "     ;AUTH=PLAIN|LOGIN|XOAUTH2.\n"
	      "\n"
	      "common ", f);
	/* "options:" and the list, as a command's --help has them */
	cli_usage_options(&main_cmd, f);
	fputs(CLI_EXIT_HELP "\n", f);
}

int
main(int argc, char **argv)
{
	const char *cmd;

	/* A peer closing a socket must be an error, not a signal. */
	signal(SIGPIPE, SIG_IGN);
#ifdef __GLIBC__
	/* Message bodies of up to 8 MiB come and go all the time: glibc's
	 * dynamic thresholds gave each a fresh mapping or trimmed the
	 * arena under it, and every page was faulted in again (~7 us each
	 * in a VM: a third of the copy's CPU). Fixed thresholds keep up to
	 * 32 MiB free per arena for the next bodies (issue 15: page faults
	 * 35,000 -> 17,000, client CPU -15 %, peak RSS +5 MB on the bench
	 * account). */
	mallopt(M_MMAP_THRESHOLD, 16 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 32 * 1024 * 1024);
#endif
	if (argc < 2) {
		cli_main_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	cmd = argv[1];
	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 ||
	    strcmp(cmd, "help") == 0) {
		cli_main_usage(stdout);
		return CLI_EXIT_OK;
	}
	if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
		puts("imapferry " IMAPFERRY_VERSION);
		return CLI_EXIT_OK;
	}
	/* Not in --help: what the build runs to make the manual pages and
	 * the bash completion from the option table. */
	if (strcmp(cmd, "--man") == 0 && argc <= 4) {
		if (cli_man_print(argc > 2 && strcmp(argv[2], "imapferry") != 0 ?
		                  argv[2] : NULL, argc > 3 ? argv[3] : NULL,
		                  stdout) < 0) {
			fprintf(stderr, "imapferry: --man: unknown command '%s'\n",
			        argv[2]);
			return CLI_EXIT_USAGE;
		}
		return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_ERROR;
	}
	if (strcmp(cmd, "--completion") == 0 && argc == 3 &&
	    strcmp(argv[2], "bash") == 0) {
		cli_completion_bash(stdout);
		return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_ERROR;
	}
	for (const struct cli_entry *e = cli_commands; e->cmd != NULL; e++)
		if (strcmp(cmd, e->cmd->name) == 0)
			return e->run(argc - 1, argv + 1);
	fprintf(stderr, "imapferry: unknown command '%s'\n", cmd);
	cli_main_usage(stderr);
	return CLI_EXIT_USAGE;
}
