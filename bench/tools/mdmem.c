/* mdmem.c (maildir-mem): heap bytes per message of an open Maildir folder
 * (issue 15). Delivers N small messages into a fresh Dovecot-flavor
 * folder DIR (removed first; no fsync, a commit every 5,000 as the copy
 * does), then reopens it from disk, and prints the malloc'd bytes per
 * message (glibc mallinfo2) in both states:
 *
 *   build/bench/tools/maildir-mem /var/tmp/mdmem 100000
 *   /usr/bin/time -v build/bench/tools/maildir-mem /var/tmp/mdmem 1000000
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "maildir.h"

static size_t
heap(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
}

int
main(int argc, char **argv)
{
	struct maildir_options o;
	struct maildir_folder *f = NULL;
	const char *err;
	char cmd[600];
	size_t n, h0, h1;

	if (argc != 3) {
		fprintf(stderr, "usage: maildir-mem DIR N\n");
		return 2;
	}
	n = strtoul(argv[2], NULL, 10);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", argv[1]);
	if (system(cmd) != 0)
		return 1;
	maildir_options_init(&o);
	o.fsync = false;
	h0 = heap();
	if (maildir_folder_open(argv[1], "", &o, true, &f, &err) < 0 ||
	    maildir_folder_set_uids(f, 1234, 0, &err) < 0)
		goto fail;
	for (size_t i = 1; i <= n; i++) {
		char data[200];
		int len = snprintf(data, sizeof(data), "Subject: m %zu\r\n\r\nbody %zu\r\n", i, i);

		if (maildir_deliver(f, (uint32_t)i, i % 7 == 0 ? "\\Seen" : "", 1500000000 + (int64_t)i,
		                    data, (size_t)len, NULL, NULL, &err) < 0)
			goto fail;
		if (i % 5000 == 0 && maildir_folder_commit(f, &err) < 0)
			goto fail;
	}
	if (maildir_folder_commit(f, &err) < 0)
		goto fail;
	h1 = heap();
	printf("delivered %zu: %.1f B/msg\n", n, (double)(h1 - h0) / (double)n);
	maildir_folder_close(&f);
	h0 = heap();
	if (maildir_folder_open(argv[1], "", &o, false, &f, &err) < 0)
		goto fail;
	h1 = heap();
	printf("reopened %zu: %.1f B/msg (count %zu)\n", n, (double)(h1 - h0) / (double)n,
	       maildir_folder_count(f));
	maildir_folder_close(&f);
	return 0;
fail:
	fprintf(stderr, "mdmem: %s\n", err);
	return 1;
}
