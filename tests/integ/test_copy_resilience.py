#!/usr/bin/env python3
"""imapferry copy under crashes, lost state, dropped connections and a
UIDVALIDITY change (Dovecot -> Dovecot), imaplib as the oracle.

Source: gen.py (users=1, messages=1500: ~860 messages, ~80 MB, ten
folders) plus 3000 small real messages in "Real". Progress on the target
is watched through its Maildir files (no IMAP session of ours is open on
the target while imapferry runs, so killing the target's imap processes
hits only imapferry's sessions).
"""

import collections
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import copy_util as U  # noqa: E402

SPW = "srcpw-R5t"
DUSERS = {"alice": "dpw-a1", "bob": "dpw-b2", "carol": "dpw-c3", "dave": "dpw-d4",
          "erin": "dpw-e5", "frank": "dpw-f6"}

S = D = None
TMP = None
TOTAL = 0               # messages on the source
SRC = None              # source snapshot (with bodies), refreshed by tests


@contextlib.contextmanager
def setup():
    global S, D, TMP, TOTAL, SRC
    H.require_root()
    corpus = H.gen_corpus(users=1, messages=1500, seed=3)
    TMP = tempfile.mkdtemp(prefix="ife-res-")
    S = H.Dovecot("rsrc", users={"alice": SPW}, ssl=False)
    D = H.Dovecot("rdst", users=DUSERS, ssl=False)
    try:
        S.load_maildir("alice", corpus.user_dir("user1"))
        real = [p for p in U.real_messages() if os.path.getsize(p) > 0][:3000]
        U.write_maildir_folder(S, "alice", ".Real", real)
        S.start()
        D.start()
        SRC = U.snapshot(S, "alice", SPW)
        TOTAL = sum(len(v) for v in SRC.values())
        assert TOTAL > 3500, TOTAL
        yield
    finally:
        D.stop()
        S.stop()
        if not H.KEEP:
            shutil.rmtree(TMP, ignore_errors=True)


def pair(user, state):
    return U.Pair(S, "alice", SPW, D, user, DUSERS[user], os.path.join(TMP, state))


def target_files(user):
    """Messages the target holds for user, counted on disk."""
    n = 0
    for root, _dirs, files in os.walk(D.maildir(user)):
        if os.path.basename(root) in ("cur", "new"):
            n += len(files)
    return n


def wait_for_files(p, user, at_least, timeout=60):
    """Polls the target's Maildir until it holds at_least messages (or the
    copy exits). Returns the count seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = target_files(user)
        if n >= at_least or p.poll() is not None:
            return n
        time.sleep(0.01)
    raise AssertionError(f"the copy made no progress: {target_files(user)} < {at_least}")


def err_text(p):
    with open(p.err_path, encoding="utf-8", errors="replace") as f:
        return f.read()


def finish(p, timeout=300):
    try:
        rc = p.wait(timeout)
    except Exception:
        U.kill9(p)
        raise
    with open(p.out_path, encoding="utf-8", errors="replace") as f:
        out = f.read()
    with open(p.err_path, encoding="utf-8", errors="replace") as f:
        err = f.read()
    return rc, out, err


def check_exact(user, src=None):
    """Per folder the target has exactly the source's messages: same
    multiset of (body SHA-256, flags, INTERNALDATE), no Message-ID more
    often than on the source."""
    src = src or SRC
    dst = U.snapshot(D, user, DUSERS[user])
    assert sorted(dst) == sorted(src), (sorted(dst), sorted(src))
    for name in src:
        s, d = src[name], dst[name]
        cs = collections.Counter(m["msgid"] for m in s)
        cd = collections.Counter(m["msgid"] for m in d)
        extra = {k: cd[k] - cs[k] for k in cd if cd[k] > cs[k]}
        assert not extra, f"{name}: duplicated on the target: {list(extra.items())[:5]}"
        assert len(s) == len(d), f"{name}: {len(s)} on the source, {len(d)} on the target"
        assert U.multiset(s) == U.multiset(d), f"{name}: contents differ"
    return dst


# -------------------------------------------------------------------- tests

def test_a_kill9_and_resume():
    P = pair("alice", "kill.db")
    seen = []
    for frac in (0.15, 0.55):
        before = target_files("alice")
        p = P.spawn_copy()
        n = wait_for_files(p, "alice", before + int(TOTAL * frac))
        U.kill9(p)
        time.sleep(0.3)         # let the target finish what it received
        after = target_files("alice")
        seen.append((before, n, after))
        assert p.returncode == -9, f"the copy ended before the kill ({seen})"
        assert before < after < TOTAL, f"kill not in the middle: {seen}"
    p, j = P.copy()
    H.log(f"kill points (before, seen, after): {seen}; resumed: {j}")
    H.log("\n".join(ln for ln in p.stderr.splitlines() if "fingerprint" in ln or "already" in ln))
    assert j["copied"] + j["skipped"] >= TOTAL - seen[-1][2], j
    assert j["skipped"] >= seen[-1][2], (j, seen)     # found by state or fingerprint
    check_exact("alice")
    _, v = P.verify("--deep", expect=0)
    assert v["matched"] == TOTAL, v
    _, v = P.verify("--deep", "--no-state", expect=0)
    assert v["matched"] == TOTAL, v


def test_b_lost_state_no_duplicates():
    # the full target of test a, without its state
    P = pair("alice", "fresh.db")
    _, j = P.copy()
    assert j["copied"] == 0 and j["skipped"] == TOTAL, j
    check_exact("alice")
    # a partly filled target: some folders copied with state A, then
    # everything with state B
    A, B = pair("bob", "partA.db"), pair("bob", "partB.db")
    _, ja = A.copy("--include", "^(INBOX|Real)$")
    assert ja["copied"] == len(SRC["INBOX"]) + len(SRC["Real"]), ja
    os.unlink(A.state)
    _, jb = B.copy()
    assert jb["skipped"] == ja["copied"], jb
    assert jb["copied"] == TOTAL - ja["copied"], jb
    check_exact("bob")
    _, v = B.verify("--deep", expect=0)
    assert v["matched"] == TOTAL, v


def _imap_children(server):
    out = []
    for pid in H.descendants(server.pid):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "imap":
                    out.append(pid)
        except OSError:
            pass
    return out


def test_c_dropped_connections():
    P = pair("carol", "drop.db")
    p = P.spawn_copy()
    killed = []
    # the source's session early (Real, 3000 small messages, is copied
    # first; the reader is usually still fetching), the target's once the
    # copy has reconnected and is appending again
    for server in (S, D):
        if server is S:
            n = wait_for_files(p, "carol", 150)
        else:
            deadline = time.monotonic() + 60
            while p.poll() is None:
                err = err_text(p)
                i = err.find("reconnecting")
                if i >= 0 and " to copy," in err[i:]:
                    break
                assert time.monotonic() < deadline, err
                time.sleep(0.01)
            n = wait_for_files(p, "carol", target_files("carol") + 100)
        assert p.poll() is None, f"the copy ended before the connection was cut at {n}"
        pids = _imap_children(server)
        assert pids, f"no imap process on the {server.kind} {server.name}"
        # SIGKILL on the source (read-only sessions); SIGTERM on the
        # target: a Dovecot imap killed with SIGKILL while appending can
        # leave its Maildir dovecot-uidlist dotlock behind, and the next
        # session then waits 2 minutes for it to go stale.
        for pid in pids:
            os.kill(pid, 9 if server is S else 15)
        killed.append((server.name, n, pids))
    rc, out, err = finish(p)
    H.log(f"cut connections: {killed}\n{err[-2500:]}")
    assert err.count("reconnecting") >= 2, err[-3000:]
    assert rc == 0, f"exit {rc} after {killed}\n{out}\n{err[-4000:]}"
    check_exact("carol")
    _, v = P.verify("--deep", expect=0)
    assert v["matched"] == TOTAL, v


def test_c_target_restart():
    """The target goes away for 2.5 s mid-copy: the first reconnect finds
    no server, a later one succeeds, and the copy completes."""
    P = pair("erin", "restart.db")
    p = P.spawn_copy()
    n = wait_for_files(p, "erin", 100)
    # freeze the session first, so the copy cannot finish while the
    # server shuts down; then end it cleanly (SIGTERM: see test_c)
    kids = _imap_children(D)
    for pid in kids:
        os.kill(pid, signal.SIGSTOP)
    assert p.poll() is None, f"the copy ended before the restart at {n}"
    for pid in kids:
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGCONT)
    U.restart_dovecot(D, 2.5)
    rc, out, err = finish(p)
    H.log(f"target restarted at {n}\n{err[-2000:]}")
    assert "reconnecting" in err, err[-3000:]
    assert "vanished" not in err, err[-3000:]
    assert rc == 0, f"exit {rc}\n{out}\n{err[-4000:]}"
    check_exact("erin")
    _, v = P.verify("--deep", expect=0)
    assert v["matched"] == TOTAL, v


def _fmt_date(epoch):
    return time.strftime("%d-%b-%Y %H:%M:%S +0000", time.gmtime(epoch))


def recreate_folder(folder, new_messages):
    """Deletes and recreates a source folder (a new UIDVALIDITY) with
    every other old message (same bytes, date, flags) and new_messages
    new ones. Returns (old listing, kept indexes)."""
    c = S.imap("alice", SPW)
    try:
        typ, data = c.status(folder, "(UIDVALIDITY)")
        old_uidv = data[0]
        old = U.fetch_folder(c, folder)
        assert c.select(folder, readonly=True)[0] == "OK"
        bodies = []
        for m in old:
            typ, fd = c.uid("FETCH", str(m["uid"]), "(BODY.PEEK[])")
            bodies.append(fd[0][1])
        c.close()
        assert len(old) >= 6, len(old)
        assert c.delete(folder)[0] == "OK"
        time.sleep(1.1)         # a new UIDVALIDITY (Dovecot uses the time)
        assert c.create(folder)[0] == "OK"
        typ, data = c.status(folder, "(UIDVALIDITY)")
        assert data[0] != old_uidv, (old_uidv, data)
    finally:
        c.logout()
    keep = list(range(0, len(old), 2))
    r = U.RawImap(S, "alice", SPW)
    try:
        for i in keep:
            ok, text = r.append(folder, bodies[i], flags=" ".join(old[i]["flags"]),
                                date=_fmt_date(old[i]["idate"]))
            assert ok, text
        for i in range(new_messages):
            ok, text = r.append(folder, U.make_message(i, "uidv"), flags="\\Seen",
                                date="01-Apr-2024 12:00:00 +0000")
            assert ok, text
    finally:
        r.logout()
    return old, keep


def test_d_uidvalidity_change():
    P = pair("dave", "uidv.db")
    _, j = P.copy()
    assert j["copied"] == TOTAL, j
    folder = "Archive"
    # the new folder: every other old message, plus three new ones
    old, keep = recreate_folder(folder, 3)
    p, j = P.copy()
    H.log(p.stderr[-1500:])
    assert j["copied"] == 3, j
    assert j["skipped"] >= len(keep), j
    src = U.snapshot(S, "alice", SPW)
    dst = U.snapshot(D, "dave", DUSERS["dave"])
    # the target: the old folder (nothing lost, nothing twice) plus the new ones
    new = [m for m in src[folder] if m["msgid"] and m["msgid"].startswith("<uidv.")]
    assert len(new) == 3
    assert U.multiset(dst[folder]) == sorted(U.multiset(old) + U.multiset(new)), \
        "the target folder is not the old one plus the three new messages"
    # verify names only the messages the source dropped, as extra
    _, v = P.verify("--deep", expect=1)
    assert U.diff_kinds(v) == ["extra"], v["diffs"]
    assert len(v["diffs"]) == len(old) - len(keep), v["diffs"]
    for name in src:
        if name != folder:
            U.compare_folder(name, src[name], dst[name])


def test_e_uidvalidity_change_delete_missing():
    """The same with --delete-missing: the copies of the messages the
    recreated folder lost are expunged on the target, the others kept
    (matched by fingerprint, not copied again)."""
    P = pair("frank", "uidv-del.db")
    folder = "Archive"
    P.copy()
    before = U.snapshot(D, "frank", DUSERS["frank"], body=False)[folder]
    old, keep = recreate_folder(folder, 0)
    assert len(before) == len(old), (len(before), len(old))
    p, j = P.copy("--delete-missing")
    H.log(p.stderr[-800:])
    assert j["copied"] == 0, j
    assert j["expunged"] == len(old) - len(keep), j
    after = U.snapshot(D, "frank", DUSERS["frank"], body=False)[folder]
    assert sorted(m["msgid"] for m in after) == \
        sorted(old[i]["msgid"] for i in keep)
    # the kept ones are the same target messages (same UIDs): not copied again
    assert {m["uid"] for m in after} <= {m["uid"] for m in before}
    _, v = P.verify("--deep", expect=0)


if __name__ == "__main__":
    H.run_tests(setup=setup)
