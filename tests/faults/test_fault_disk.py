#!/usr/bin/env python3
"""Fault suite: disk full.

Each test mounts a small tmpfs (`mount -t tmpfs -o size=...`), fills it
during a copy, and checks a clean stop: exit status 3 and an error that
says "disk full"; then gives space back (remount bigger, or remove a filler
file) and checks that the next run completes with nothing lost, nothing
twice, and (Maildir) every UID kept.

  maildir_target  the target Maildir, served by a Dovecot, on a 20 MB tmpfs
  state_db        the state database on a tmpfs with a few KB left, IMAP
                  target
  writeback_error the disk reports a write-back error (fdatasync/fsync
                  EIO, through tests/support/failsync.c preloaded) for one
                  file of a chunk synced in the background, into a Maildir
                  served by a Dovecot
  writeback_error_journal  the same with the batch synced by waiting for
                  each file's write-back (sync_file_range) and one journal
                  commit, as on ext4 with a journal
"""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as F  # noqa: E402
from faultlib import H, M  # noqa: E402

S = CORPUS = USER = TMP = None
PW = "pw-disk-Q3"


@contextlib.contextmanager
def tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", path],
                       capture_output=True, text=True)
    if r.returncode != 0:
        H.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], capture_output=True)


@contextlib.contextmanager
def setup():
    global S, CORPUS, USER, TMP
    H.require_root()
    CORPUS = H.gen_corpus(users=1, messages=500, seed=3)
    USER = CORPUS.users()[0]
    TMP = tempfile.mkdtemp(prefix="ife-fd-")
    with H.Dovecot("fd-src", users={USER: PW}, ssl=False) as S:
        S.load_maildir(USER, CORPUS.user_dir(USER))
        try:
            yield
        finally:
            shutil.rmtree(TMP, ignore_errors=True)


def src_url():
    return S.url(USER, query="?tls=none")


def du(path):
    total = 0
    for dp, _dn, fn in os.walk(path):
        for f in fn:
            try:
                total += os.lstat(os.path.join(dp, f)).st_size
            except OSError:
                pass
    return total


def test_maildir_target():
    with H.Dovecot("fd-dst", users={USER: PW}, ssl=False) as d:
        home = os.path.join(d.data_dir, USER)
        with tmpfs(home, "20m"):
            os.chown(home, H.MAIL_UID, H.MAIL_GID)
            state = os.path.join(TMP, "md.db")
            args = ["copy", "--state", state, "--owner", "mail:mail", src_url(),
                    f"maildir:{d.maildir(USER)}"]
            env = F.ferry_env(src_pw=PW)
            p = F.run(args, env)
            assert p.returncode == 3, f"expected a stop (3)\n{H.describe(p)}"
            assert "disk full" in p.stderr.lower(), p.stderr[-3000:]
            used = du(home)
            r = subprocess.run(["mount", "-o", "remount,size=200m", home],
                               capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            # a client logs in before the next run (not while the disk is
            # full: Dovecot itself needs room for its index): it must find
            # nothing to number itself, or the next run could not keep UIDs
            F.login_check(d, USER, PW)
            p2 = F.run(args, env)
            assert p2.returncode == 0, H.describe(p2)
            src, dst = M.snapshot(S, USER, PW), M.snapshot(d, USER, PW)
            n = M.compare_snapshots(src, dst)
            assert not F.uid_problems(d), F.uid_problems(d)
            err = [ln for ln in p.stderr.splitlines() if "disk full" in ln.lower()]
            H.log(f"maildir_target: stopped with exit 3 ({used // 1024} KiB left in the Maildir after the stop): "
                  f"{err[-1][:160]!r}; after the remount {n} messages, UIDs kept")


def test_state_db():
    with H.Dovecot("fd-dst2", users={USER: PW}, ssl=False) as d:
        sdir = os.path.join(TMP, "statefs")
        with tmpfs(sdir, "512k"):
            state = os.path.join(sdir, "st.db")
            # leave a few pages: the database starts, then fills up
            filler = os.path.join(sdir, "filler")
            st = os.statvfs(sdir)
            with open(filler, "wb") as f:
                f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - 96 * 1024))
            args = ["copy", "--state", state, src_url(),
                    d.url(USER, query="?tls=none")]
            env = F.ferry_env(src_pw=PW, dst_pw=PW)
            p = F.run(args, env)
            assert p.returncode == 3, f"expected a stop (3)\n{H.describe(p)}"
            assert "disk full" in p.stderr.lower(), p.stderr[-3000:]
            os.unlink(filler)
            p2 = F.run(args, env)
            assert p2.returncode == 0, H.describe(p2)
            lost, dup = F.lost_and_duplicated(M.snapshot(S, USER, PW),
                                              M.snapshot(d, USER, PW))
            assert (lost, dup) == (0, 0), f"{lost} lost, {dup} duplicated"
            err = [ln for ln in p.stderr.splitlines() if "disk full" in ln.lower()]
            H.log(f"state_db: stopped with exit 3: {err[-1][:160]!r}; after freeing "
                  f"space: 0 lost, 0 duplicated")


def test_writeback_error():
    """A write-back error of the disk on one file of the batch (fdatasync
    EIO, in a chunk synced in the background while the copy goes on): that
    commit fails, the batch never becomes visible to the serving Dovecot
    without its uidlist lines, and the copy (its retry of the folder, or
    the next run) ends with every message once, UIDs kept."""
    writeback_error("file", "fdatasync", "fd-dst3")


def test_writeback_error_journal():
    """The same where a journal orders the writes (ext4 with a journal:
    each file's write-back is waited for with sync_file_range, the batch
    made durable by one journal commit; forced here, the test's own file
    system may have no journal): the failed wait is reported the same way
    and nothing is lost or duplicated."""
    writeback_error("journal", "write-back of", "fd-dst4")


def writeback_error(mode, word, name):
    san = F.sanitizer()
    shim = os.path.join(os.environ.get("IMAPFERRY_BUILD", ""), "tests", "libfailsync.so")
    if not os.path.exists(shim):
        H.skip(f"no {shim} (set IMAPFERRY_BUILD)")
    # a folder larger than one background chunk (256 files)
    c = S.imap(USER, PW)
    try:
        if c.select("Bulk", readonly=True)[0] == "OK":
            c.close()
            have_bulk = True
        else:
            have_bulk = False
            assert c.create("Bulk")[0] == "OK"
        for i in range(0 if have_bulk else 600):
            body = (f"From: s{i}@example.org\r\nTo: r@example.net\r\n"
                    f"Message-ID: <bulk-{i}@example.org>\r\nSubject: bulk {i}\r\n"
                    f"\r\nbody {i}\r\n" + "x" * (i % 50) * 40 + "\r\n")
            typ, data = c.append("Bulk", "(\\Seen)" if i % 3 else "()", None,
                                 body.encode())
            assert typ == "OK", data
    finally:
        c.logout()
    with H.Dovecot(name, users={USER: PW}, ssl=False) as d:
        state = os.path.join(TMP, f"wb-{mode}.db")
        args = ["copy", "--debug", "--state", state, "--owner", "mail:mail",
                src_url(), f"maildir:{d.maildir(USER)}"]
        env = dict(F.ferry_env(src_pw=PW), IMAPFERRY_TEST_MD_SYNC=mode)
        bad = dict(env, LD_PRELOAD=shim, FAILSYNC_AT="100", FAILSYNC_COUNT="1",
                   FAILSYNC_MATCH=d.maildir(USER) + "/.Bulk/tmp/")
        if san == "asan":
            bad["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") +
                                   ":verify_asan_link_order=0").lstrip(":")
        p = F.run(args, bad)
        used = "waiting for their write-back" if mode == "journal" else "an fdatasync each"
        assert used in p.stderr, f"not synced in {mode} mode\n{H.describe(p)}"
        err = [ln for ln in p.stderr.splitlines()
               if f"{word} UID" in ln and "Input/output error" in ln]
        assert err, f"the write-back error was not reported\n{H.describe(p)}"
        # whatever the first run ended with: a client logging in now finds
        # nothing for Dovecot to number on its own
        F.login_check(d, USER, PW)
        assert not F.uid_problems(d), F.uid_problems(d)
        p2 = F.run(args, env)
        assert p2.returncode == 0, H.describe(p2)
        n = M.compare_snapshots(M.snapshot(S, USER, PW), M.snapshot(d, USER, PW))
        assert not F.uid_problems(d), F.uid_problems(d)
        lost, dup = F.lost_and_duplicated(M.snapshot(S, USER, PW),
                                          M.snapshot(d, USER, PW))
        assert (lost, dup) == (0, 0), f"{lost} lost, {dup} duplicated"
        H.log(f"writeback_error ({mode}): first run exit {p.returncode}: {err[0][:160]!r}; "
              f"after the next run {n} messages, UIDs kept, 0 lost, 0 duplicated")


if __name__ == "__main__":
    H.run_tests(setup=setup)
