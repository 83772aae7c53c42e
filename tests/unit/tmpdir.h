/* tmpdir.h: scratch directories for the unit tests that write files
 * (test_maildir.c, test_state.c): made in setup, removed in teardown. */
#ifndef IMAPFERRY_TESTS_TMPDIR_H
#define IMAPFERRY_TESTS_TMPDIR_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base.h"

/* Creates a new directory "$TMPDIR/NAME.XXXXXX" (TMPDIR when absolute,
 * else /tmp) and writes its path to dir (size bytes). Returns 0 or -1. */
static inline int
tmpdir_make(char *dir, size_t size, const char *name)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(dir, size, "%s/%s.XXXXXX",
	         tmp != NULL && tmp[0] == '/' ? tmp : "/tmp", name);
	return mkdtemp(dir) != NULL ? 0 : -1;
}

/* rm -r path, ignoring errors (nftw would need _XOPEN_SOURCE). */
static inline void
tmpdir_remove(const char *path)
{
	struct dirent *de;
	struct stat st;
	DIR *dir;

	if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode) &&
	    (dir = opendir(path)) != NULL) {
		while ((de = readdir(dir)) != NULL) {
			char *sub;

			if (strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0)
				continue;
			sub = xasprintf("%s/%s", path, de->d_name);
			tmpdir_remove(sub);
			free(sub);
		}
		closedir(dir);
	}
	remove(path);
}

#endif
