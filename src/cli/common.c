/* common.c: small helpers every command (and imapferry-bench) shares. */
#include "cli.h"

#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>

void
cli_apply_common(const struct cli_common *common, struct endpoint *ep)
{
	ep->imap.net = common->net;
}

int
cli_parse_owner(const char *spec, uid_t *uid_r, gid_t *gid_r)
{
	char *dup = xstrdup(spec), *colon = strchr(dup, ':');
	struct passwd *pw;
	struct group *gr;
	uint64_t v;
	int ret = -1;

	if (colon != NULL)
		*colon++ = '\0';
	if (str_to_u64z(dup, UINT32_MAX - 1, &v)) {
		*uid_r = (uid_t)v;
		*gid_r = (gid_t)-1;
	} else if ((pw = getpwnam(dup)) != NULL) {
		*uid_r = pw->pw_uid;
		*gid_r = pw->pw_gid;
	} else {
		goto out;
	}
	if (colon != NULL) {
		if (str_to_u64z(colon, UINT32_MAX - 1, &v))
			*gid_r = (gid_t)v;
		else if ((gr = getgrnam(colon)) != NULL)
			*gid_r = gr->gr_gid;
		else
			goto out;
	}
	ret = 0;
out:
	free(dup);
	return ret;
}

int
cli_parse_fsync(const char *mode, bool *fsync_r, bool *fs_r)
{
	if (strcmp(mode, "file") == 0 || strcmp(mode, "fs") == 0) {
		*fsync_r = true;
		*fs_r = mode[1] == 's';
		return 0;
	}
	if (strcmp(mode, "off") == 0) {
		*fsync_r = false;
		*fs_r = false;
		return 0;
	}
	return -1;
}
