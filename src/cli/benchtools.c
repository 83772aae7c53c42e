/* benchtools.c: fetch-only and append-only, the two limits bench/ compares
 * imapferry with. (Being written.) */
#include "cli.h"

#include <stdio.h>

int
cmd_fetch_only(int argc, char **argv)
{
	fputs("imapferry: fetch-only: not implemented yet\n", stderr);
	return 2;
}

int
cmd_append_only(int argc, char **argv)
{
	fputs("imapferry: append-only: not implemented yet\n", stderr);
	return 2;
}
