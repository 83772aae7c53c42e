#!/usr/bin/env python3
"""Files an interrupted copy left in a Maildir's cur/ without uidlist
lines are adopted with their source UIDs, whatever order their names sort
in. A copy's file names start with the message's INTERNALDATE, so when the
dates fall as the UIDs rise, the unlisted files sort in reverse UID order:
adopting them in that order put the folder's floor above the lower UIDs,
which could then never be placed (found by a kill -9 of run in
test_cyrus_run: 10 of 11 messages of a folder lost to the target).
Real Dovecots; imaplib is the oracle."""

import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import copy_util as U  # noqa: E402
import maildir_util as M  # noqa: E402

PW = "pw-adopt-1"
N = 12


def test_unlisted_files_adopted_in_uid_order():
    H.require_root()
    tmp = tempfile.mkdtemp(prefix="ife-adopt-")
    try:
        with H.Dovecot("adsrc", users={"alice": PW}, ssl=False) as s, \
                H.Dovecot("addst", users={"alice": PW}, ssl=False) as d:
            c = s.imap("alice", PW)
            c.create("Box")
            for i in range(N):
                # UID 1 newest, UID N oldest
                date = f'"{28 - i:02d}-Nov-2020 10:00:00 +0000"'
                U.append(c, "Box", U.make_message(i, tag="adopt"), flags="\\Seen",
                         date=date)
            c.logout()
            src = s.url("alice", query="?tls=none")
            target = d.maildir("alice")
            state = os.path.join(tmp, "a.db")
            p = M.ferry_maildir(src, PW, target, state=state)
            assert p.returncode == 0, H.describe(p)
            # an interrupted run: the files in cur/, the uidlist without
            # their lines (as a kill between the rename and the append)
            folder = os.path.join(target, ".Box")
            ul = os.path.join(folder, "dovecot-uidlist")
            with open(ul) as f:
                header = f.readline()
            header = re.sub(r" N\d+", " N1", header)
            with open(ul, "w") as f:
                f.write(header)
            os.chown(ul, H.MAIL_UID, H.MAIL_GID)
            names = sorted(os.listdir(os.path.join(folder, "cur")))
            assert len(names) == N, names
            # (a new state: the killed run had not recorded the folder)
            p = M.ferry_maildir(src, PW, target, state=state + "2")
            assert p.returncode == 0, H.describe(p)
            assert f"{N} files of an interrupted run adopted, 0 removed" in p.stderr, \
                H.describe(p)
            j = M.summary(p)
            assert j["copied"] == 0 and j["failed"] == 0, j
            M.compare_snapshots(M.snapshot(s, "alice", PW), M.snapshot(d, "alice", PW))
            assert not M.dovecot_log_problems(d), M.dovecot_log_problems(d)
    finally:
        if not H.KEEP:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    H.run_tests()
