#!/usr/bin/env python3
"""imapferry copy / verify between Cyrus 3.6 and Dovecot, imaplib as oracle.

1. Cyrus source (legacy namespace: "INBOX." prefix, "." separator), filled
   over IMAP (gen.py corpus, extra messages with keywords), copied into a
   Dovecot ("/" separator, no prefix): names mapped (INBOX.Sent -> Sent,
   INBOX.Archive.2019 -> Archive/2019, INBOX.Listes.&APw-n&AO8-code ->
   Listes/&APw-n&AO8-code), every message byte-identical with its flags,
   keywords and INTERNALDATE, subscriptions mapped, verify --deep clean.
2. Dovecot source -> Cyrus target with messages Cyrus refuses (an empty
   one, headers without a colon, mbox "From " lines...) among ordinary and
   odd ones (shared/corpus/real): the oracle is a byte-exact APPEND of the
   same source bytes to another Cyrus user. The run goes on past each
   refusal, exits non-zero, reports each with Cyrus's reason, and every
   message Cyrus accepts arrives as Cyrus stores it.

Note: a NUL byte cannot reach Cyrus from a Dovecot source: Dovecot serves
NUL as 0x80 in BODY[] (only BINARY[] has the NUL). test_nul_from_dovecot
pins that down: the message arrives with 0x80, as the source served it.
"""

import contextlib
import csv
import hashlib
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import copy_util as U  # noqa: E402

CUSERS = {"alice": "alicepw-c1", "bob": "bobpw-c2", "oracle": "oraclepw-c3"}
DUSERS = {"alice": "alicepw-d1", "bob": "bobpw-d2"}

C = D = None
TMP = None
CORPUS = None
ODD_FILES = []          # source files of the Dovecot "Odd" folder


@contextlib.contextmanager
def setup():
    global C, D, TMP, CORPUS
    H.require_root()
    CORPUS = H.gen_corpus(users=1, messages=150, seed=3)
    TMP = tempfile.mkdtemp(prefix="ife-cyr-")
    C = H.Cyrus("ccyr", users=CUSERS)
    D = H.Dovecot("cdov", users=DUSERS, ssl=False)
    try:
        odd_selection()
        U.write_maildir_folder(D, "bob", ".Odd", ODD_FILES)
        C.start()       # skips the whole file if Cyrus is not installed
        D.start()
        yield
    finally:
        D.stop()
        C.stop()
        if not H.KEEP:
            shutil.rmtree(TMP, ignore_errors=True)


def odd_selection():
    """Real messages with oddities Cyrus may refuse or rewrite, a few
    ordinary ones, a message with a NUL byte and the empty message."""
    want = {"bad_hdr", "bare_cr", "8bit_hdr", "long10k", "long998", "mixed_eol", "no_sep"}
    picked, plain, from_line = [], [], []
    for root, _dirs, files in sorted(os.walk(U.REAL_DIR)):
        if "ODDITIES.tsv" not in files:
            continue
        with open(os.path.join(root, "ODDITIES.tsv"), newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                fl = set((row.get("flags") or "").split(","))
                path = os.path.join(root, row["file"])
                if fl & want:
                    picked.append(path)
                elif "from_line" in fl:
                    from_line.append(path)
                else:
                    plain.append(path)
    empty = [p for p in U.real_messages() if os.path.getsize(p) == 0]
    nul = os.path.join(TMP, "nul.eml")
    with open(nul, "wb") as f:
        f.write(U.make_message(7, "nul")[:-2] + b"a NUL byte:\x00.\r\n")
    ODD_FILES[:] = sorted(picked) + from_line[:10] + plain[:10] + empty + [nul]
    assert len(picked) > 100 and empty, (len(picked), empty)


def cyrus_name(folder):
    return H.mutf7_encode(H.imap_folder_name(folder, ".", "INBOX."))


def dovecot_name(folder):
    return H.mutf7_encode(folder)


# -------------------------------------------------------------------- tests

def test_cyrus_to_dovecot():
    n = C.load_corpus("alice", [dict(r, user="alice") for r in CORPUS if r["user"] == "user1"])
    assert n == len(CORPUS)
    c = C.imap("alice", CUSERS["alice"])
    try:
        for i in range(6):
            U.append(c, "INBOX.Sent" if i % 2 else "INBOX.Archive.2019",
                     U.make_message(i, "cyr"),
                     flags=["\\Seen $Label1", "\\Flagged Work", "\\Answered $Forwarded",
                            "", "\\Draft", "\\Seen Junk-Old"][i],
                     date=f'"1{i}-Mar-2021 08:30:00 +0200"')
        for name in ("INBOX", "INBOX.Sent", "INBOX.Archive.2019", cyrus_name("Listes/ünïcode")):
            assert c.subscribe(U.quote(name))[0] == "OK", name
        subs_src = U.subscriptions(c)
    finally:
        c.logout()
    src = U.snapshot(C, "alice", CUSERS["alice"])
    assert cyrus_name("Listes/ünïcode") == "INBOX.Listes.&APw-n&AO8-code"
    for f in ("INBOX.Sent", "INBOX.Archive.2019", "INBOX.Listes.&APw-n&AO8-code",
              "INBOX.Projects.Beta &- Co"):
        assert src.get(f), f"the Cyrus source lacks {f}: {sorted(src)}"

    pair = U.Pair(C, "alice", CUSERS["alice"], D, "alice", DUSERS["alice"],
                  os.path.join(TMP, "c2d.db"))
    _, j = pair.copy()
    total = sum(len(v) for v in src.values())
    assert j["copied"] == total and j["failed"] == 0, j

    dst = U.snapshot(D, "alice", DUSERS["alice"])
    mapping = {raw: "INBOX" if raw == "INBOX" else raw[len("INBOX."):].replace(".", "/")
               for raw in src}
    assert mapping["INBOX.Sent"] == "Sent"
    assert mapping["INBOX.Archive.2019"] == "Archive/2019"
    assert mapping["INBOX.Listes.&APw-n&AO8-code"] == "Listes/&APw-n&AO8-code"
    assert sorted(dst) == sorted(mapping.values()), (sorted(dst), sorted(mapping.values()))
    assert U.compare_snapshots(src, dst, mapping) == total
    kws = {f for v in dst.values() for m in v for f in m["flags"]}
    assert {"$Label1", "Work", "Junk-Old", "\\Flagged", "\\Draft"} <= kws, kws

    d = D.imap("alice", DUSERS["alice"])
    try:
        subs_dst = U.subscriptions(d)
    finally:
        d.logout()
    assert subs_dst == sorted(mapping[s] for s in subs_src), (subs_src, subs_dst)

    _, v = pair.verify("--deep", expect=0)
    assert v["differences"] == 0 and v["matched"] == total, v
    _, v = pair.verify("--deep", "--no-state", expect=0)
    assert v["matched"] == total, v
    _, j = pair.copy()
    assert j["copied"] == 0, j


def test_dovecot_to_cyrus_refusals():
    # what the Dovecot source serves, and what Cyrus makes of those bytes
    d = D.imap("bob", DUSERS["bob"])
    try:
        src = U.fetch_folder(d, "Odd")
        typ, data = d.select("Odd", readonly=True)
        bodies = []
        for m in src:
            typ, fd = d.uid("FETCH", str(m["uid"]), "(BODY.PEEK[])")
            bodies.append(fd[0][1] if isinstance(fd[0], tuple) else b"")
        d.close()
    finally:
        d.logout()
    assert len(src) == len(ODD_FILES)
    raw = U.RawImap(C, "oracle", CUSERS["oracle"])
    verdict = []
    try:
        for b in bodies:
            ok, text = raw.append("INBOX", b)
            verdict.append(ok or text)
    finally:
        raw.logout()
    o = C.imap("oracle", CUSERS["oracle"])
    try:
        stored = iter(U.fetch_folder(o, "INBOX"))
    finally:
        o.logout()
    expect, refused, changed = [], [], 0
    for m, b, v in zip(src, bodies, verdict):
        if v is True:
            sha = next(stored)["sha"]
            expect.append((sha, m["flags"], m["idate"]))
            changed += sha != hashlib.sha256(b).hexdigest()
        else:
            refused.append((m, v))
    assert refused and expect, "Cyrus should refuse some of these and take others"
    assert any("NUL" in r or "invalid header" in r for _, r in refused) or \
        any("Zero-length" in r for _, r in refused), refused

    pair = U.Pair(D, "bob", DUSERS["bob"], C, "bob", CUSERS["bob"],
                  os.path.join(TMP, "d2c.db"))
    p, j = pair.copy(expect=1)
    assert j["failed"] == len(refused), (j, [r for _, r in refused])
    assert j["copied"] == len(expect), j
    for m, reason in refused:
        # the reason as Cyrus gave it (without the tag and "NO ")
        text = reason.split(" ", 1)[1] if reason.startswith("NO ") else reason
        text = text.split("]", 1)[-1].strip()
        assert f"UID {m['uid']} refused by the target" in p.stderr and text in p.stderr, \
            f"refusal of UID {m['uid']} ({reason}) not reported\n" + H.describe(p)

    dst = U.snapshot(C, "bob", CUSERS["bob"])
    assert "INBOX.Odd" in dst, sorted(dst)
    got = U.multiset(dst["INBOX.Odd"])
    assert got == sorted(expect), "what arrived differs from what Cyrus makes of the bytes"

    # verify: exactly the refused messages are missing; rewritten ones
    # (bare CR, bare LF -> CRLF) differ in body and size, nothing else
    _, v = pair.verify("--deep", expect=1)
    missing = sorted(dd["src_uid"] for dd in v["diffs"] if dd["kind"] == "missing")
    assert missing == sorted(m["uid"] for m, _ in refused), v["diffs"]
    assert set(U.diff_kinds(v)) <= {"missing", "body", "size"}, v["diffs"]
    assert len([dd for dd in v["diffs"] if dd["kind"] == "body"]) == changed, v["diffs"]

    # a re-run tries the refused messages again and copies nothing else
    p, j = pair.copy(expect=1)
    assert j["copied"] == 0 and j["failed"] == len(refused), j


def test_nul_from_dovecot():
    """The NUL message of the Odd folder: Dovecot serves it as 0x80 in
    BODY[], so Cyrus takes it, and the target holds 0x80 (as served)."""
    c = C.imap("bob", CUSERS["bob"])
    try:
        msgs = U.fetch_folder(c, "INBOX.Odd")
        typ, _ = c.select("INBOX.Odd", readonly=True)
        typ, data = c.uid("SEARCH", None, "HEADER", "Message-ID", "<nul.7@ferry.test>")
        uids = data[0].split()
        assert len(uids) == 1, (data, len(msgs))
        typ, fd = c.uid("FETCH", uids[0], "(BODY.PEEK[])")
        body = fd[0][1]
    finally:
        c.logout()
    assert b"\x00" not in body and b"a NUL byte:\x80." in body, body[-60:]


if __name__ == "__main__":
    H.run_tests(setup=setup)
