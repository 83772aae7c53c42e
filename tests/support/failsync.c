/* failsync.c: an LD_PRELOAD shim for the fault suite (test_fault_disk.py):
 * fdatasync(), fsync() and sync_file_range() with SYNC_FILE_RANGE_WAIT_AFTER
 * (the calls that report a write-back error) fail with EIO, as after a
 * write-back error of the disk, for files whose path contains
 * $FAILSYNC_MATCH: the $FAILSYNC_AT-th such call (1-based) and the
 * $FAILSYNC_COUNT - 1 after it (default 1).
 * Every other call goes to the C library. Test support only: never
 * installed, never linked into imapferry. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_long calls;

static int
should_fail(int fd)
{
	const char *match = getenv("FAILSYNC_MATCH");
	const char *at = getenv("FAILSYNC_AT");
	const char *count = getenv("FAILSYNC_COUNT");
	char link[64], path[4096];
	ssize_t n;
	long k, first, many;

	if (match == NULL || at == NULL)
		return 0;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	if ((n = readlink(link, path, sizeof(path) - 1)) <= 0)
		return 0;
	path[n] = '\0';
	if (strstr(path, match) == NULL)
		return 0;
	k = atomic_fetch_add(&calls, 1) + 1;
	first = atol(at);
	many = count != NULL ? atol(count) : 1;
	return k >= first && k < first + many;
}

static int (*real_fdatasync)(int);
static int (*real_fsync)(int);
static int (*real_sync_file_range)(int, off_t, off_t, unsigned int);

/* resolved once, before any thread of the program starts */
__attribute__((constructor)) static void
resolve(void)
{
	real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
	real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
	real_sync_file_range = (int (*)(int, off_t, off_t, unsigned int))
	                       dlsym(RTLD_NEXT, "sync_file_range");
}

static int
call(int (*real)(int), int fd)
{
	if (should_fail(fd)) {
		errno = EIO;
		return -1;
	}
	return real(fd);
}

int
fdatasync(int fd)
{
	return call(real_fdatasync, fd);
}

int
fsync(int fd)
{
	return call(real_fsync, fd);
}

int
sync_file_range(int fd, off_t offset, off_t nbytes, unsigned int flags)
{
	/* only a wait reports write-back errors; starting one does not */
	if ((flags & SYNC_FILE_RANGE_WAIT_AFTER) != 0 && should_fail(fd)) {
		errno = EIO;
		return -1;
	}
	return real_sync_file_range(fd, offset, nbytes, flags);
}
