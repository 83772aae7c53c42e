/* main.c: imapferry command dispatch. */
#include "cli.h"

#include "log.h"
#include "net.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
usage(FILE *f)
{
	fputs("usage: imapferry COMMAND [options] ...\n"
	      "\n"
	      "commands:\n"
	      "  ls URL             list a server's capabilities, namespaces and folders\n"
	      "  copy SRC DST       copy an account, incrementally (see copy --help)\n"
	      "  verify SRC DST     compare an account on two servers (see verify --help)\n"
	      "  plan USERS SRC DST inventory and schedule many accounts (plan --help)\n"
	      "  run USERS SRC DST --state FILE   migrate many accounts (run --help)\n"
	      "  status --state FILE              progress of a run (status --help)\n"
	      "\n"
	      "URL: imap://USER@HOST[:PORT] (STARTTLS, required; ?tls=none for plain\n"
	      "     text), imaps://USER@HOST[:PORT] (implicit TLS).\n"
	      "     USER may be alice*master (Dovecot master user) and may end in\n"
	      "     ;AUTH=PLAIN|LOGIN|XOAUTH2.\n"
	      "\n"
	      "common options:\n"
	      "  --password-file FILE   password (else $IMAPFERRY_PASSWORD)\n"
	      "  --authzid ID           log in on behalf of ID (SASL PLAIN)\n"
	      "  --insecure             do not verify TLS certificates\n"
	      "  --tls-min 1.0|1.1|1.2|1.3  minimum TLS version\n"
	      "  --ca-file FILE         trust these CA certificates\n"
	      "  --timeout SECONDS      network timeout (default 120)\n"
	      "  --json                 machine-readable output\n"
	      "  -v, --debug, --trace   more logging (--trace never shows passwords)\n",
	      f);
}

int
cli_common_option(struct cli_common *common, int opt, const char *arg)
{
	uint64_t v;

	switch (opt) {
	case OPT_INSECURE:
		common->net.insecure = true;
		return 1;
	case OPT_TLS_MIN:
		if (!net_parse_tls_version(arg, &common->net.min_tls_version)) {
			fprintf(stderr, "imapferry: --tls-min: expected 1.0, 1.1, 1.2 or 1.3\n");
			return -1;
		}
		return 1;
	case OPT_CA_FILE:
		common->net.ca_file = arg;
		return 1;
	case OPT_TIMEOUT:
		if (!str_to_u64z(arg, 86400, &v) || v == 0) {
			fprintf(stderr, "imapferry: --timeout: expected seconds\n");
			return -1;
		}
		common->net.io_timeout_ms = (int)v * 1000;
		if (common->net.connect_timeout_ms == 0 || v * 1000 < 30000)
			common->net.connect_timeout_ms = (int)v * 1000;
		return 1;
	case 'v':
		log_configure(LOG_DEBUG, 2);
		return 1;
	case OPT_DEBUG:
		log_configure(LOG_DEBUG, 2);
		return 1;
	case OPT_TRACE:
		log_configure(LOG_TRACE, 2);
		return 1;
	case OPT_JSON:
		common->json = true;
		return 1;
	default:
		return 0;
	}
}

void
cli_apply_common(const struct cli_common *common, struct endpoint *ep)
{
	ep->imap.net = common->net;
}

int
main(int argc, char **argv)
{
	const char *cmd;

	/* A peer closing a socket must be an error, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	cmd = argv[1];
	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 ||
	    strcmp(cmd, "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
		puts("imapferry 0.1.0");
		return 0;
	}
	if (strcmp(cmd, "ls") == 0)
		return cmd_ls(argc - 1, argv + 1);
	if (strcmp(cmd, "copy") == 0)
		return cmd_copy(argc - 1, argv + 1);
	if (strcmp(cmd, "verify") == 0)
		return cmd_verify(argc - 1, argv + 1);
	if (strcmp(cmd, "plan") == 0)
		return cmd_plan(argc - 1, argv + 1);
	if (strcmp(cmd, "run") == 0)
		return cmd_run(argc - 1, argv + 1);
	if (strcmp(cmd, "status") == 0)
		return cmd_status(argc - 1, argv + 1);
	/* measuring tools for bench/: the limits imapferry is compared to */
	if (strcmp(cmd, "fetch-only") == 0)
		return cmd_fetch_only(argc - 1, argv + 1);
	if (strcmp(cmd, "append-only") == 0)
		return cmd_append_only(argc - 1, argv + 1);
	fprintf(stderr, "imapferry: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}
