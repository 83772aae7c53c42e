#!/usr/bin/env python3
"""A large folder compared window by window (issue 15: memory bounded by
the window, not the folder). IMAPFERRY_DIFF_WINDOW=40 makes a folder of
a few hundred messages take many windows, so that every path of the pass
crosses window boundaries: a first copy, an incremental pass with
expunges (--delete-missing), new mail and changed flags, a copy whose
state was lost (the target's copies found by fingerprint across windows,
none twice), into a Dovecot over IMAP and into a Dovecot Maildir with
every UID kept. Real Dovecots; imaplib is the oracle.
"""

import collections
import contextlib
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import copy_util as U  # noqa: E402
import maildir_util as M  # noqa: E402

WINDOW = 40
N = 400
SPW = "pw-win-src"
DUSERS = {"imap1": "pw-w1", "imap2": "pw-w2", "md1": "pw-w3"}
S = D = TMP = None


@contextlib.contextmanager
def setup():
    global S, D, TMP
    H.require_root()
    os.environ["IMAPFERRY_DIFF_WINDOW"] = str(WINDOW)
    TMP = tempfile.mkdtemp(prefix="ife-win-")
    S = H.Dovecot("wsrc", users={"alice": SPW}, ssl=False)
    D = H.Dovecot("wdst", users=DUSERS, ssl=False)
    try:
        S.start()
        D.start()
        c = S.imap("alice", SPW)
        try:
            c.create("Big")
            for i in range(N):
                flags = ["", "\\Seen", "\\Seen \\Flagged", "$Junk",
                         "\\Answered $Label1"][i % 5]
                U.append(c, "Big", U.make_message(i, tag="big", size=(i % 9) * 200),
                         flags=flags)
            # gaps in the UIDs: every 7th expunged
            c.select("Big")
            for uid in range(7, N + 1, 7):
                c.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)")
            c.expunge()
        finally:
            c.logout()
        yield
    finally:
        D.stop()
        S.stop()
        os.environ.pop("IMAPFERRY_DIFF_WINDOW", None)
        if not H.KEEP:
            shutil.rmtree(TMP, ignore_errors=True)


def windows_logged(p, folder="Big"):
    return sum(1 for ln in p.stderr.splitlines() if f"{folder} -> " in ln and "to copy" in ln)


def change_source():
    """Expunges 20 messages spread over the folder, adds 30, changes the
    flags of 25: every window has something to do."""
    c = S.imap("alice", SPW)
    try:
        c.select("Big")
        typ, data = c.uid("SEARCH", "ALL")
        uids = [int(x) for x in data[0].split()]
        for u in uids[3::17][:20]:
            c.uid("STORE", str(u), "+FLAGS.SILENT", "(\\Deleted)")
        c.expunge()
        typ, data = c.uid("SEARCH", "ALL")
        uids = [int(x) for x in data[0].split()]
        for u in uids[5::13][:25]:
            c.uid("STORE", str(u), "FLAGS.SILENT", "(\\Seen $Forwarded)")
        for i in range(30):
            U.append(c, "Big", U.make_message(1000 + i, tag="later"), flags="\\Flagged")
    finally:
        c.logout()


def no_duplicates(user, pw):
    snap = U.snapshot(D, user, pw)
    cnt = collections.Counter(m["msgid"] for m in snap.get("Big", []))
    dup = [k for k, v in cnt.items() if v > 1]
    assert not dup, f"duplicated on the target: {dup[:5]}"
    return snap


def test_a_imap_target_windows():
    P = U.Pair(S, "alice", SPW, D, "imap1", DUSERS["imap1"], os.path.join(TMP, "i1.db"))
    p, j = P.copy()
    n = windows_logged(p)
    assert n >= (N * 6 // 7) // WINDOW - 1, f"{n} windows logged\n{p.stderr}"
    src = U.snapshot(S, "alice", SPW)
    assert U.compare_snapshots(src, U.snapshot(D, "imap1", DUSERS["imap1"])) > 300
    p, j = P.copy()
    assert j["copied"] == 0 and j["flags_updated"] == 0, j
    change_source()
    p, j = P.copy("--delete-missing")
    assert j["copied"] == 30 and j["expunged"] == 20 and j["flags_updated"] >= 20, j
    src = U.snapshot(S, "alice", SPW)
    U.compare_snapshots(src, no_duplicates("imap1", DUSERS["imap1"]))
    p, j = P.verify()
    assert j["differences"] == 0, j
    H.log(f"imap target: {n} windows; incremental {j}")


def test_b_lost_state_matches_across_windows():
    """The target holds a copy made with another state: every message is
    unknown to the new state, found by fingerprint window after window,
    each target copy taken once (none copied twice)."""
    P = U.Pair(S, "alice", SPW, D, "imap2", DUSERS["imap2"], os.path.join(TMP, "i2.db"))
    p, j = P.copy()
    total = j["copied"]
    p, j = P.copy(state=os.path.join(TMP, "i2-lost.db"))
    assert j["copied"] == 0 and j["skipped"] == total, j
    assert "messages were already on the target" in p.stderr, p.stderr
    snap = no_duplicates("imap2", DUSERS["imap2"])
    assert len(snap["Big"]) == total


def test_c_maildir_target_windows_keep_uids():
    target = D.maildir("md1")
    state = os.path.join(TMP, "md.db")
    url = S.url("alice", query="?tls=none")
    p = M.ferry_maildir(url, SPW, target, state=state)
    assert p.returncode == 0, H.describe(p)
    assert windows_logged(p) > 3, p.stderr
    M.compare_snapshots(M.snapshot(S, "alice", SPW), M.snapshot(D, "md1", DUSERS["md1"]))
    change_source()
    p = M.ferry_maildir(url, SPW, target, "--delete-missing", state=state)
    assert p.returncode == 0, H.describe(p)
    j = M.summary(p)
    assert j["copied"] == 30 and j["expunged"] == 20, j
    M.compare_snapshots(M.snapshot(S, "alice", SPW), M.snapshot(D, "md1", DUSERS["md1"]))
    assert not M.dovecot_log_problems(D), M.dovecot_log_problems(D)
    p = M.ferry_maildir(url, SPW, target, state=state)
    j = M.summary(p)
    assert p.returncode == 0 and j["copied"] == 0 and j["flags_updated"] == 0, j


def test_d_verify_in_windows_finds_damage():
    """verify of a folder larger than the window, with the state's pairs
    (window by window, the rest by fingerprint): a message gone from the
    target, changed flags and a message only on the target are found."""
    P = U.Pair(S, "alice", SPW, D, "imap1", DUSERS["imap1"], os.path.join(TMP, "i1.db"))
    P.copy("--delete-missing")       # the source changed in test_c
    p, j = P.verify()
    assert j["differences"] == 0, j
    c = D.imap("imap1", DUSERS["imap1"])
    try:
        c.select("Big")
        typ, data = c.uid("SEARCH", "ALL")
        uids = [int(x) for x in data[0].split()]
        gone, flagged = uids[100], uids[250]
        c.uid("STORE", str(gone), "+FLAGS.SILENT", "(\\Deleted)")
        c.expunge()
        c.uid("STORE", str(flagged), "FLAGS.SILENT", "(\\Draft)")
        U.append(c, "Big", U.make_message(5000, tag="extra"))
    finally:
        c.logout()
    p, j = P.verify(expect=1)
    kinds = collections.Counter(d["kind"] for d in j["diffs"])
    assert kinds == {"missing": 1, "flags": 1, "extra": 1}, (kinds, p.stdout[-3000:])


def test_e_maildir_verify_in_windows_finds_damage():
    """verify of a Maildir folder larger than the window (source and
    serving-Dovecot summaries one window at a time, UID for UID): clean
    after the copy, plain and through --dst-imap; then a message expunged,
    one whose flags changed and one only in the Maildir, each found once."""
    url = S.url("alice", query="?tls=none")
    target = D.maildir("md1")
    dsti = f"imap://md1@{D.host}:{D.port}?tls=none"
    env = {"IMAPFERRY_SRC_PASSWORD": SPW, "IMAPFERRY_DST_PASSWORD": DUSERS["md1"]}

    def verify(*opts, expect=0):
        p = H.run_ferry(["verify", "--json", *opts, url, f"maildir:{target}"], env=env)
        assert p.returncode == expect, H.describe(p)
        return json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("{")][-1])

    j = verify()
    assert j["differences"] == 0 and j["messages"] > 300, j
    j = verify("--dst-imap", dsti)
    assert j["differences"] == 0, j
    c = D.imap("md1", DUSERS["md1"])
    try:
        c.select("Big")
        typ, data = c.uid("SEARCH", "ALL")
        uids = [int(x) for x in data[0].split()]
        # one in the first window, one in a later one
        gone, flagged = uids[10], uids[300]
        c.uid("STORE", str(gone), "+FLAGS.SILENT", "(\\Deleted)")
        c.expunge()
        c.uid("STORE", str(flagged), "FLAGS.SILENT", "(\\Draft)")
        U.append(c, "Big", U.make_message(5001, tag="extra"))
    finally:
        c.logout()
    for opts in ((), ("--dst-imap", dsti)):
        j = verify(*opts, expect=1)
        kinds = collections.Counter(d["kind"] for d in j["diffs"])
        assert kinds == {"missing": 1, "flags": 1, "extra": 1, "uidnext": 1}, (opts, j)
        by_kind = {d["kind"]: d for d in j["diffs"]}
        assert by_kind["missing"]["src_uid"] == gone, by_kind
        assert by_kind["flags"]["src_uid"] == flagged, by_kind


if __name__ == "__main__":
    H.run_tests(setup=setup)
