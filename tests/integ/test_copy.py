#!/usr/bin/env python3
"""imapferry copy / verify, Dovecot -> Dovecot, against imaplib as the oracle.

Source: the gen.py corpus (users=1, seed 3, Maildir) plus every message of
shared/corpus/real in a folder "Real", written into the source's Maildir
before the server starts. Messages a Dovecot target cannot take byte for
byte go to a folder "Odd" instead, and are checked against what the target
makes of a plain imaplib APPEND of the same bytes:
  - the empty message (Dovecot: "Can't save a zero byte message"), and
  - messages with CR CR LF: Dovecot saves CRLF as LF (mail_save_crlf=no),
    so one CR of each CR CR LF is lost on any APPEND.

Tests run in order and build on each other: full copy, re-run, incremental,
dry run and folder rules (fresh target users), verify detecting damage
(last: it damages the target).
"""

import contextlib
import hashlib
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import copy_util as U  # noqa: E402

USER, PW = "alice", "alicepw-Kd82"
# target users: the copy, the imaplib oracle, a dry run, folder rules
DUSERS = {USER: PW, "oracle": "oraclepw", "dry": "drypw", "mapped": "mappedpw"}
SUBS = ["INBOX", "Sent", "Archive/2019", H.mutf7_encode("Listes/ünïcode"), "Real"]

S = D = None            # source and target Dovecot
P = None                # U.Pair alice -> alice
TMP = None
ODD = []                # served source bytes of the Odd folder, in UID order


def served(data):
    """The bytes Dovecot serves for a Maildir file: bare LF -> CRLF."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def dovecot_roundtrips(data):
    s = served(data)
    return len(s) > 0 and b"\r\r\n" not in s


@contextlib.contextmanager
def setup():
    global S, D, P, TMP, ODD
    H.require_root()
    corpus = H.gen_corpus(users=1, messages=500, seed=3)
    TMP = tempfile.mkdtemp(prefix="ife-copy-")
    S = H.Dovecot("csrc", users={USER: PW}, ssl=False)
    D = H.Dovecot("cdst", users=DUSERS, ssl=False)
    try:
        S.load_maildir(USER, corpus.user_dir("user1"))
        real, odd = [], []
        for p in U.real_messages():
            with open(p, "rb") as f:
                (real if dovecot_roundtrips(f.read()) else odd).append(p)
        assert len(real) + len(odd) > 9000, "shared/corpus/real looks incomplete"
        U.write_maildir_folder(S, USER, ".Real", real)
        U.write_maildir_folder(S, USER, ".Odd", odd, t0=1_200_000_000)
        for p in odd:
            with open(p, "rb") as f:
                ODD.append(served(f.read()))
        S.start()
        D.start()
        c = S.imap(USER, PW)
        for name in SUBS:
            assert c.subscribe(U.quote(name))[0] == "OK", name
        c.logout()
        P = U.Pair(S, USER, PW, D, USER, PW, os.path.join(TMP, "state.db"))
        yield
    finally:
        D.stop()
        S.stop()
        if not H.KEEP:
            import shutil
            shutil.rmtree(TMP, ignore_errors=True)


def snapshots(body=True):
    return U.snapshot(S, USER, PW, body), U.snapshot(D, USER, PW, body)


def check_identical(src, dst):
    """All folders but Odd identical (UID order), Odd as the oracle says."""
    n = U.compare_snapshots(src, dst, ignore=("Odd",))
    check_odd(src["Odd"], dst.get("Odd"))
    return n


_odd_oracle = None


def odd_oracle():
    """What the target Dovecot makes of imaplib APPENDs of the Odd source
    bytes: [sha or ("refused", reason)] in source order (another user on
    the target, so the copied account is untouched)."""
    global _odd_oracle
    if _odd_oracle is None:
        r = U.RawImap(D, "oracle", "oraclepw")
        out = []
        try:
            for body in ODD:
                ok, text = r.append("INBOX", body)
                out.append("ok" if ok else ("refused", text))
        finally:
            r.logout()
        c = D.imap("oracle", "oraclepw")
        try:
            got = U.fetch_folder(c, "INBOX")
        finally:
            c.logout()
        it = iter(got)
        _odd_oracle = [o if o != "ok" else next(it)["sha"] for o in out]
    return _odd_oracle


def check_odd(src_odd, dst_odd):
    assert len(src_odd) == len(ODD), "the Odd folder was not served as written"
    oracle = odd_oracle()
    refused = [o for o in oracle if isinstance(o, tuple)]
    assert refused, "the oracle should refuse the empty message"
    expected = [o for o in oracle if not isinstance(o, tuple)]
    assert dst_odd is not None, "Odd missing on the target"
    got = [m["sha"] for m in dst_odd]
    assert got == expected, ("Odd on the target differs from imaplib APPENDs of the "
                             f"same bytes:\n{got}\n{expected}")
    for s, d in zip([m for m, o in zip(src_odd, oracle) if not isinstance(o, tuple)],
                    dst_odd):
        assert s["flags"] == d["flags"] and s["idate"] == d["idate"], (s, d)


# -------------------------------------------------------------------- tests

def test_a_full_copy():
    src = U.snapshot(S, USER, PW)
    # the corpus is what the test claims: keywords, flags, folders, size
    assert sum(len(v) for v in src.values()) > 9200, {k: len(v) for k, v in src.items()}
    kws = {f for v in src.values() for m in v for f in m["flags"]}
    for f in ("$Label1", "Work", "\\Seen", "\\Flagged", "\\Answered"):
        assert f in kws, f"corpus lacks {f}: {kws}"
    assert H.mutf7_encode("Listes/ünïcode") in src and "Projects/Beta &- Co" in src

    p, j = P.copy(expect=1)         # the empty message is refused: exit 1
    assert j["failed"] == len([o for o in odd_oracle() if isinstance(o, tuple)]), j
    assert "zero byte" in p.stderr and "Odd" in p.stderr, \
        "the refusal is not reported with the server's reason\n" + H.describe(p)
    total = sum(len(v) for v in src.values())
    assert j["copied"] == total - j["failed"], j
    assert j["folders_failed"] == 0, j

    dst = U.snapshot(D, USER, PW)
    assert check_identical(src, dst) > 9000
    assert sorted(dst) == sorted(src), (sorted(dst), sorted(src))

    cs, cd = S.imap(USER, PW), D.imap(USER, PW)
    try:
        assert U.subscriptions(cd) == U.subscriptions(cs), \
            (U.subscriptions(cs), U.subscriptions(cd))
    finally:
        cs.logout()
        cd.logout()

    _, v = P.verify("--deep", "--exclude", "^Odd$", expect=0)
    assert v["differences"] == 0 and v["matched"] == total - len(ODD), v
    # Without the exclude, verify names exactly the Odd messages the
    # target changed or refused.
    _, v = P.verify("--deep", expect=1)
    assert {d["src_folder"] for d in v["diffs"]} == {"Odd"}, v["diffs"]
    oracle = odd_oracle()
    n_changed = sum(1 for o, b in zip(oracle, ODD)
                    if not isinstance(o, tuple) and o != hashlib.sha256(b).hexdigest())
    n_refused = sum(1 for o in oracle if isinstance(o, tuple))
    kinds = [d["kind"] for d in v["diffs"]]
    assert kinds.count("missing") == n_refused, v["diffs"]
    assert kinds.count("body") == n_changed, v["diffs"]


def test_b_rerun_copies_nothing():
    _, j = P.copy(expect=1)         # the empty message is still refused
    assert j["copied"] == 0 and j["expunged"] == 0 and j["flags_updated"] == 0, j
    assert j["folders_created"] == 0, j
    src, dst = snapshots(body=False)
    U.compare_snapshots(src, dst, ignore=("Odd",), body=False)
    assert len(dst["Odd"]) == len(ODD) - 1


def logins(server, user):
    with open(server.log_path, errors="replace") as f:
        return sum(1 for line in f if f"Login: user=<{user}>" in line)


def test_b2_sessions_per_copy():
    """A copy (two session pairs by default) logs in once per pair that
    has folders: the sessions that learn each side's namespace carry on,
    the source's to list the folders and share them out and then as the
    first pair's, the target's as the first pair's; the subscriptions are
    written by the pair that finishes last, over its own sessions, not by
    an extra pair (each login costs a Dovecot a new process, ~40 ms of
    CPU). Before: 5 and 4, then 3 and 3."""
    s0, d0 = logins(S, USER), logins(D, USER)
    _, j = P.copy(expect=1)
    assert j["copied"] == 0, j
    s1, d1 = logins(S, USER) - s0, logins(D, USER) - d0
    assert 1 <= s1 <= 2 and 1 <= d1 <= 2, (s1, d1)
    # the subscriptions still come across whole: one removed on the
    # target is written again
    c = D.imap(USER, PW)
    try:
        assert c.unsubscribe(U.quote("Sent"))[0] == "OK"
    finally:
        c.logout()
    P.copy(expect=1)
    cs, cd = S.imap(USER, PW), D.imap(USER, PW)
    try:
        assert U.subscriptions(cd) == U.subscriptions(cs), \
            (U.subscriptions(cs), U.subscriptions(cd))
        assert "Sent" in U.subscriptions(cd)
    finally:
        cs.logout()
        cd.logout()


def test_c_incremental():
    c = S.imap(USER, PW)
    try:
        for i in range(5):
            U.append(c, "INBOX" if i < 3 else "Archive/2019", U.make_message(i, "incr"),
                     flags="\\Seen $Label1" if i % 2 else "",
                     date=f'"0{i + 1}-Feb-2024 10:00:00 +0100"')
        typ, data = c.select("INBOX")
        assert typ == "OK"
        typ, data = c.uid("SEARCH", None, "SEEN")
        seen = data[0].split()
        assert len(seen) >= 6, data
        a, b, k = seen[0], seen[1], seen[2]
        assert c.uid("STORE", a, "+FLAGS", "(\\Flagged)")[0] == "OK"
        assert c.uid("STORE", b, "-FLAGS", "(\\Seen)")[0] == "OK"
        assert c.uid("STORE", k, "+FLAGS", "($Ferried)")[0] == "OK"
        gone = seen[3:5]
        assert c.uid("STORE", b",".join(gone), "+FLAGS", "(\\Deleted)")[0] == "OK"
        assert c.expunge()[0] == "OK"
        c.close()
    finally:
        c.logout()
    _, j = P.copy("--delete-missing", expect=1)
    assert j["copied"] == 5, j
    assert j["flags_updated"] == 3, j
    assert j["expunged"] == 2, j
    src, dst = snapshots()
    check_identical(src, dst)
    flags = {m["uid"]: m["flags"] for m in src["INBOX"]}
    assert "$Ferried" in flags[int(k)] and "\\Flagged" in flags[int(a)]
    assert "\\Seen" not in flags[int(b)] and int(gone[0]) not in flags
    _, v = P.verify("--deep", "--exclude", "^Odd$", expect=0)
    assert v["differences"] == 0, v


def test_d_dry_run_creates_nothing():
    pair = U.Pair(S, USER, PW, D, "dry", "drypw", os.path.join(TMP, "dry.db"))
    _, j = pair.copy("--dry-run", expect=None)
    assert j["dry_run"] is True and j["copied"] > 9000, j
    c = D.imap("dry", "drypw")
    try:
        names = U.folders(c)
        assert list(names) == ["INBOX"], names
        assert U.fetch_folder(c, "INBOX", body=False) == []
        assert U.subscriptions(c) == [], U.subscriptions(c)
    finally:
        c.logout()


def test_e_include_exclude_map():
    pair = U.Pair(S, USER, PW, D, "mapped", "mappedpw", os.path.join(TMP, "mapped.db"))
    rules = ["--include", "^(INBOX|Archive|Projects)", "--exclude", "2020$",
             "--exclude", "^Projects/Alpha$", "--map", "Archive=Old/Archive"]
    _, j = pair.copy(*rules)
    src = U.snapshot(S, USER, PW)
    dst = U.snapshot(D, "mapped", "mappedpw")
    mapping = {"Archive": "Old/Archive", "Archive/2019": "Old/Archive/2019"}
    want = {"INBOX", "Archive", "Archive/2019", "Projects/Beta &- Co"}
    U.compare_snapshots({k: v for k, v in src.items() if k in want}, dst, mapping)
    got = {k for k, v in dst.items()}
    assert got == {"INBOX", "Old/Archive", "Old/Archive/2019", "Projects/Beta &- Co"}, got
    _, v = pair.verify("--deep", *rules, expect=0)
    assert v["folders"] == 4 and v["differences"] == 0, v


def _target_file(folder_fs, msgid):
    d = os.path.join(D.maildir(USER), folder_fs, "cur")
    for n in os.listdir(d):
        with open(os.path.join(d, n), "rb") as f:
            if msgid.encode() in f.read(8192):
                return os.path.join(d, n)
    raise AssertionError(f"no file for {msgid} in {d}")


def test_f_verify_detects_damage():
    # runs last: it damages the target
    dst = U.snapshot(D, USER, PW, body=False)
    c = D.imap(USER, PW)
    try:
        # 1. a message deleted on the target
        victim = dst["Sent"][2]
        assert c.select("Sent")[0] == "OK"
        assert c.uid("STORE", str(victim["uid"]), "+FLAGS", "(\\Deleted)")[0] == "OK"
        assert c.expunge()[0] == "OK"
        c.close()
        # 2. changed flags on the target
        flagged = dst["Drafts"][1]
        assert c.select("Drafts")[0] == "OK"
        assert c.uid("STORE", str(flagged["uid"]), "+FLAGS", "(\\Answered $Oops)")[0] == "OK"
        c.close()
    finally:
        c.logout()
    # 3. one byte changed in a target Maildir file (same size)
    altered = [m for m in dst["Real"][100:] if m["msgid"]][0]
    path = _target_file(".Real", altered["msgid"])
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        i = len(data) - 3
        while not chr(data[i]).isalnum():
            i -= 1
        data[i] = ord("x") if data[i] != ord("x") else ord("y")
        f.seek(0)
        f.write(data)
    src_now = U.snapshot(S, USER, PW, body=False)
    # verify (with state pairing, and by fingerprint only)
    for extra in ((), ("--no-state",)):
        _, v = P.verify("--deep", "--exclude", "^Odd$", *extra, expect=1)
        by = {(d["kind"], d["src_folder"]) for d in v["diffs"]}
        assert ("missing", "Sent") in by, v["diffs"]
        assert ("flags", "Drafts") in by, v["diffs"]
        assert ("body", "Real") in by, v["diffs"]
        assert len(v["diffs"]) == 3, v["diffs"]
        miss = [d for d in v["diffs"] if d["kind"] == "missing"][0]
        assert miss["src_uid"] == src_now["Sent"][2]["uid"], miss
        flg = [d for d in v["diffs"] if d["kind"] == "flags"][0]
        assert flg["dst_uid"] == flagged["uid"] and "$Oops" in flg["detail"], flg
        body = [d for d in v["diffs"] if d["kind"] == "body"][0]
        assert body["dst_uid"] == altered["uid"], body
    # without --deep the body change is invisible, the others are not
    _, v = P.verify("--exclude", "^Odd$", expect=1)
    assert sorted(U.diff_kinds(v)) == ["flags", "missing"], v["diffs"]


if __name__ == "__main__":
    H.run_tests(setup=setup)
