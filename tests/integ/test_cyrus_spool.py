#!/usr/bin/env python3
"""imapferry copy cyrus:SPOOL maildir:PATH -- the old server's fast path.

A real Cyrus 3.6 (harness) is loaded over IMAP: the gen.py corpus (nested
and non-ASCII folders), messages of shared/corpus/real, every system flag,
more than 26 keywords in one folder, expunges so UIDs have gaps, a
\\Deleted message left in place, subscriptions. Its spool and config
directories are copied with `cp -a` while it runs; imapferry then reads
the copy offline (no IMAP to Cyrus) into the Maildir of a harness Dovecot.
The oracle is imaplib against both servers: per folder the same
UIDVALIDITY, UIDNEXT and UIDs, and per UID the same flags and keywords,
INTERNALDATE, RFC822.SIZE and body bytes; the same subscriptions.

  legacy   mailbox_legacy_dirs: yes (spool/user/alice/...), subscriptions
           and the mailbox set found without a mailbox list
  dump     the same spool through a `ctl_mboxlist -d` dump
  uuid     mailbox_legacy_dirs: no (spool/uuid/x/y/<uniqueid>): through the
           dump
  imap     the same spool into an IMAP account of the Dovecot (new UIDs):
           the same bodies, flags, dates and subscriptions
  hybrid   --bodies-from cyrus-spool: with Cyrus's IMAP as the source: a
           missing file, a missing folder, a file of another size and a
           folder of another UIDVALIDITY come over IMAP, counted by reason
           (--json and text)
  errors   a user without mailboxes, an unknown index version: clear
           errors, exit status non-zero
"""

import contextlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import copy_util as U  # noqa: E402
import maildir_util as M  # noqa: E402

CUSERS = {"alice": "alicepw-s1", "carol": "carolpw-s3"}
DUSERS = {"alice": "alicepw-t1", "carol": "carolpw-t3", "dave": "davepw-t4",
          "erin": "erinpw-t5", "frank": "frankpw-t6"}
KEYWORDS = [f"kw{i:02d}" for i in range(30)]
C = C2 = D = None
TMP = None
CORPUS = None
KEPT_DELETED = {}
DROPPED = re.compile(r"(\S+): the target does not keep keyword (\S+): dropped")


class UuidCyrus(H.Cyrus):
    """The harness's Cyrus with the 3.6 layout by unique id."""

    def _setup(self):
        super()._setup()
        with open(self.conf_path) as f:
            conf = f.read()
        with open(self.conf_path, "w") as f:
            f.write(conf.replace("mailbox_legacy_dirs: yes", "mailbox_legacy_dirs: no"))


@contextlib.contextmanager
def setup():
    global C, C2, D, TMP, CORPUS
    H.require_root()
    CORPUS = H.gen_corpus(users=1, messages=120, seed=13)
    TMP = tempfile.mkdtemp(prefix="ife-cysp-")
    C = H.Cyrus("cysp", users={"alice": CUSERS["alice"]})
    C2 = UuidCyrus("cysu", users={"carol": CUSERS["carol"]})
    D = H.Dovecot("cyspd", users=DUSERS, ssl=False)
    try:
        C.start()       # skips the whole file if Cyrus is not installed
        C2.start()
        D.start()
        load(C, "alice")
        load(C2, "carol")
        yield
    finally:
        D.stop()
        C2.stop()
        C.stop()
        if not H.KEEP:
            shutil.rmtree(TMP, ignore_errors=True)


def load(cy, user):
    """The account: corpus, real messages, flags, 30 keywords, expunges."""
    rows = [dict(r, user=user) for r in CORPUS if r["user"] == "user1"]
    assert cy.load_corpus(user, rows) == len(rows)
    c = cy.imap(user, CUSERS[user])
    try:
        for name in ("INBOX.Real", "INBOX.Keywords", "INBOX.Deep.Er.Nest",
                     H.mutf7_encode("INBOX.Ünïcode.Ça va")):
            typ, data = c.create(U.quote(name))
            assert typ == "OK" or b"exists" in b" ".join(data).lower(), (name, data)
        real = 0
        for p in U.real_messages():
            with open(p, "rb") as f:
                body = f.read()
            if not body or b"\0" in body:
                continue
            typ, data = c.append("INBOX.Real", "(\\Seen)", '"02-Feb-2019 03:04:05 +0000"', body)
            real += typ == "OK"
            if real >= 60:
                break
        assert real >= 40, real
        for i in range(40):
            kws = " ".join(KEYWORDS[j] for j in range(30) if (i + j) % 7 == 0 or i == j)
            U.append(c, "INBOX.Keywords", U.make_message(i, "kw"),
                     flags=(["\\Seen ", "\\Flagged ", "\\Answered ", "\\Draft ", ""][i % 5] + kws).strip(),
                     date=f'"1{i % 10}-Mar-2021 08:30:{i:02d} +0200"')
        for i in range(6):
            U.append(c, H.mutf7_encode("INBOX.Ünïcode.Ça va") if i % 2 else "INBOX.Deep.Er.Nest",
                     U.make_message(i, "nest", size=3000 * i),
                     flags=["\\Seen $Label1", "\\Flagged Work", "", "$Forwarded", "\\Draft", ""][i])
        # expunges: gaps in UIDs; one \Deleted message stays
        for folder, uids in (("INBOX", "2,5:7"), ("INBOX.Keywords", "3,39"), ("INBOX.Real", "1")):
            typ, data = c.select(U.quote(folder))
            assert typ == "OK", data
            assert c.uid("STORE", uids, "+FLAGS", "(\\Deleted)")[0] == "OK"
            assert c.expunge()[0] == "OK"
            c.close()
        # (UNSELECT, not CLOSE: CLOSE would expunge it)
        c.select("INBOX")
        typ, data = c.uid("SEARCH", "ALL")
        last = data[0].split()[-1].decode()
        assert c.uid("STORE", last, "+FLAGS", "(\\Deleted \\Answered)")[0] == "OK"
        c.unselect()
        KEPT_DELETED[user] = int(last)
        for name in ("INBOX", "INBOX.Keywords", "INBOX.Deep.Er.Nest",
                     H.mutf7_encode("INBOX.Ünïcode.Ça va")):
            assert c.subscribe(U.quote(name))[0] == "OK", name
    finally:
        c.logout()


def copy_spool(cy, tag):
    """cp -a of the live server's spool and config directory."""
    dst = os.path.join(TMP, tag)
    os.makedirs(dst)
    for d in ("spool", "lib"):
        subprocess.run(["cp", "-a", os.path.join(cy.dir, d), os.path.join(dst, d)], check=True)
    return dst


def mboxlist_dump(cy, path):
    with open(path, "w") as f:
        subprocess.run(["/usr/lib/cyrus/bin/ctl_mboxlist", "-C", cy.conf_path, "-d"],
                       stdout=f, check=True)


def ferry(src, user, *opts, expect=0, dst_imap=False):
    """copy SRC maildir:(D's Maildir of user); with dst_imap, the keywords
    the file names cannot hold (more than 26) go through D (--dst-imap,
    D's master user); without, they are named as not kept (exit 1)."""
    target = D.maildir(user)
    env = {"IMAPFERRY_SRC_PASSWORD": None}
    if dst_imap:
        opts = (*opts, "--dst-imap", f"imap://{user}*{D.master[0]}@{D.host}:{D.port}?tls=none")
        env["IMAPFERRY_DST_PASSWORD"] = D.master[1]
    p = H.run_ferry(["copy", "--json", "--owner", "mail:mail",
                     "--state", os.path.join(TMP, f"{user}.db"), *opts,
                     src, f"maildir:{target}"], env=env)
    assert p.returncode == expect, H.describe(p)
    return p


def to_dovecot(raw):
    """Cyrus "INBOX.A.B" -> Dovecot "A/B" (both modified UTF-7)."""
    return "INBOX" if raw == "INBOX" else raw[len("INBOX."):].replace(".", "/")


def check_account(cy, user, p, all_kept=False):
    """The Maildir served by Dovecot equals the Cyrus account by UID."""
    src = M.snapshot(cy, user, CUSERS[user])
    dst = M.snapshot(D, user, DUSERS[user])
    src = {to_dovecot(k): v for k, v in src.items()}
    # the oracle sees what the test made (guards the fixture)
    assert {"INBOX", "Keywords", "Real", "Deep/Er/Nest",
            H.mutf7_encode("Ünïcode/Ça va")} <= set(src), sorted(src)
    inbox = src["INBOX"]["msgs"]
    kept = KEPT_DELETED[user]
    assert 2 not in inbox and "\\Deleted" in inbox[kept]["flags"], sorted(inbox)
    kws = {f for m in src["Keywords"]["msgs"].values() for f in m["flags"]
           if not f.startswith("\\")}
    assert kws == set(KEYWORDS), sorted(kws)
    if all_kept:
        # --dst-imap: the 4 keywords beyond the file names' 26 are in
        # Dovecot's index: all 30 served
        assert not DROPPED.findall(p.stderr), H.describe(p)
    else:
        # Maildir file names keep 26 keywords per folder: imapferry names
        # each one it drops (so all 30 came out of the spool); the rest
        # must be identical
        dropped = {}
        for folder, kw in DROPPED.findall(p.stderr):
            dropped.setdefault(folder, set()).add(kw)
        assert set(dropped) == {"Keywords"}, dropped
        assert len(dropped["Keywords"]) == 4 and dropped["Keywords"] <= set(KEYWORDS), dropped
        for m in src["Keywords"]["msgs"].values():
            m["flags"] = tuple(f for f in m["flags"] if f not in dropped["Keywords"])
    n = M.compare_snapshots(src, dst)
    assert n == sum(len(v["msgs"]) for v in src.values()) and n > 150, n
    subs = sorted(to_dovecot(s) for s in M.lsub(cy, user, CUSERS[user]))
    assert M.lsub(D, user, DUSERS[user]) == subs, (M.lsub(D, user, DUSERS[user]), subs)
    assert len(subs) == 4, subs
    return n


def summary(p):
    return M.summary(p)


# -------------------------------------------------------------------- tests

def test_legacy():
    root = copy_spool(C, "legacy")
    assert os.path.isdir(os.path.join(root, "spool", "user", "alice", "Keywords"))
    src = f"cyrus:{root}/spool?user=alice&config={root}/lib"
    p = ferry(src, "alice", dst_imap=True)
    j = summary(p)
    assert j["failed"] == 0 and j["copied"] > 150 and j["dropped_flags"] == 0, j
    n = check_account(C, "alice", p, all_kept=True)
    assert j["copied"] == n, (j, n)
    # incremental: nothing new
    j = summary(ferry(src, "alice", dst_imap=True))
    assert j["copied"] == 0 and j["failed"] == 0 and j["dropped_flags"] == 0, j


def test_dump():
    root = copy_spool(C, "dump")
    dump = os.path.join(root, "mailboxes.json")
    mboxlist_dump(C, dump)
    shutil.rmtree(D.maildir("alice"))
    os.unlink(os.path.join(TMP, "alice.db"))
    p = ferry(f"cyrus:{root}/spool?user=alice&config={root}/lib&mboxlist={dump}", "alice",
              expect=1)    # 4 keywords not kept, without --dst-imap
    check_account(C, "alice", p)


def test_uuid():
    root = copy_spool(C2, "uuid")
    assert os.path.isdir(os.path.join(root, "spool", "uuid")), os.listdir(os.path.join(root, "spool"))
    assert not os.path.exists(os.path.join(root, "spool", "user", "carol"))
    dump = os.path.join(root, "mailboxes.json")
    mboxlist_dump(C2, dump)
    p = ferry(f"cyrus:{root}/spool?user=carol&config={root}/lib&mboxlist={dump}", "carol",
              expect=1)    # 4 keywords not kept, without --dst-imap
    check_account(C2, "carol", p)


def test_to_imap():
    """cyrus: -> imap://: the same bodies, flags and dates (new UIDs)."""
    root = copy_spool(C, "imap")
    dst = D.url("dave", query="?tls=none")
    p = H.run_ferry(["copy", "--json", "--state", os.path.join(TMP, "imap.db"),
                     f"cyrus:{root}/spool?user=alice&config={root}/lib", dst],
                    env={"IMAPFERRY_DST_PASSWORD": DUSERS["dave"]})
    assert p.returncode == 0, H.describe(p)
    src = U.snapshot(C, "alice", CUSERS["alice"])
    got = U.snapshot(D, "dave", DUSERS["dave"])
    mapping = {raw: to_dovecot(raw) for raw in src}
    # (Dovecot's Maildir keeps 26 keywords per folder: that folder's
    # flags are checked by the Maildir tests above)
    n = U.compare_snapshots(src, got, mapping, ignore=("INBOX.Keywords",))
    assert len(got["Keywords"]) == len(src["INBOX.Keywords"])
    assert summary(p)["copied"] == n + len(got["Keywords"]), summary(p)
    assert sorted(U.subscriptions(D.imap("dave", DUSERS["dave"]))) == \
        sorted(to_dovecot(s) for s in M.lsub(C, "alice", CUSERS["alice"]))


def exists(cy, user, folder):
    """The messages of folder on the live server (EXISTS)."""
    c = cy.imap(user, CUSERS[user])
    try:
        typ, data = c.select(U.quote(folder), readonly=True)
        assert typ == "OK", (folder, data)
        return int(data[0])
    finally:
        c.logout()


def set_uidvalidity(index, uidvalidity):
    """Rewrites the UIDVALIDITY of a cyrus.index (offset 44), with the
    header CRC."""
    with open(index, "r+b") as f:
        data = bytearray(f.read())
        hlen = struct.unpack(">I", data[12:16])[0]
        data[44:48] = struct.pack(">I", uidvalidity)
        data[hlen - 4:hlen] = struct.pack(">I", zlib.crc32(bytes(data[:hlen - 4])))
        f.seek(0)
        f.write(data)


def test_hybrid():
    """--bodies-from cyrus-spool: metadata over IMAP, bodies from the copy;
    what the copy cannot give comes over IMAP, counted by reason: a missing
    file and a folder missing from the copy ("missing"), a file of another
    size ("size"), a folder whose copy has another UIDVALIDITY (all of it,
    "uidvalidity")."""
    root = copy_spool(C, "hybrid")
    inbox = os.path.join(root, "spool", "user", "alice")
    real = os.path.join(inbox, "Real")
    first = min(int(n[:-1]) for n in os.listdir(inbox) if re.fullmatch(r"\d+\.", n))
    os.unlink(os.path.join(inbox, f"{first}."))
    some = sorted(n for n in os.listdir(real) if re.fullmatch(r"\d+\.", n))[3]
    with open(os.path.join(real, some), "ab") as f:
        f.write(b"changed since the server wrote it\r\n")
    shutil.rmtree(os.path.join(inbox, "Deep", "Er", "Nest"))
    n_nest = exists(C, "alice", "INBOX.Deep.Er.Nest")
    set_uidvalidity(os.path.join(inbox, "Keywords", "cyrus.index"), 4242)
    n_kw = exists(C, "alice", "INBOX.Keywords")
    assert n_nest > 0 and n_kw > 0, (n_nest, n_kw)
    target = D.maildir("frank")
    p = H.run_ferry(["copy", "--json", "--owner", "mail:mail",
                     "--state", os.path.join(TMP, "frank.db"),
                     "--bodies-from", f"cyrus-spool:{root}/spool?user=alice",
                     C.url("alice"), f"maildir:{target}"],
                    env={"IMAPFERRY_SRC_PASSWORD": CUSERS["alice"]})
    # the Keywords folder's 4 keywords beyond 26 are not kept (no --dst-imap)
    assert p.returncode == 1 and U_dropped(p) > 0, H.describe(p)
    assert len(set(DROPPED.findall(p.stderr))) == 4, H.describe(p)
    lines = [json.loads(ln) for ln in p.stdout.splitlines() if ln.startswith("{")]
    bodies, j = lines[-2], lines[-1]
    over = 2 + n_nest + n_kw
    assert bodies == {"bodies_from_spool": j["copied"] - over, "bodies_from_imap": over,
                      "bodies_imap_missing": 1 + n_nest, "bodies_imap_size": 1,
                      "bodies_imap_uidvalidity": n_kw, "bodies_imap_error": 0}, (bodies, j)
    src = {to_dovecot(k): v for k, v in M.snapshot(C, "alice", CUSERS["alice"]).items()}
    dst = M.snapshot(D, "frank", DUSERS["frank"])
    n = M.compare_snapshots(src, dst, ignore=("Keywords",))
    assert n + len(src["Keywords"]["msgs"]) == j["copied"], (n, j)
    # the text form: the same counts, each reason named
    target = os.path.join(TMP, "hybrid-text")
    p = H.run_ferry(["copy", "--state", os.path.join(TMP, "hybrid-text.db"),
                     "--bodies-from", f"cyrus-spool:{root}/spool?user=alice",
                     C.url("alice"), f"maildir:{target}"],
                    env={"IMAPFERRY_SRC_PASSWORD": CUSERS["alice"]})
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("bodies:")]
    assert line == [f"bodies: {j['copied'] - over} from the Cyrus spool, {over} over IMAP "
                    f"({1 + n_nest} missing in the spool, 1 of another size, {n_kw} in "
                    f"folders of another UIDVALIDITY)"], H.describe(p)


def U_dropped(p):
    return [json.loads(ln) for ln in p.stdout.splitlines() if ln.startswith("{")][-1][
        "dropped_flags"]


def test_errors():
    root = copy_spool(C, "errors")
    p = ferry(f"cyrus:{root}/spool?user=nobody", "erin", expect=3)
    assert "no mailboxes of nobody" in p.stderr, H.describe(p)
    p = ferry(f"cyrus:{root}/spool", "erin", expect=2)
    assert "user=NAME" in p.stderr, H.describe(p)
    # an index of a version this reader does not know: that folder fails,
    # naming the version; the others are copied
    ix = os.path.join(root, "spool", "user", "alice", "Real", "cyrus.index")
    with open(ix, "r+b") as f:
        data = bytearray(f.read())
        hlen = struct.unpack(">I", data[12:16])[0]
        data[8:12] = struct.pack(">I", 19)
        data[hlen - 4:hlen] = struct.pack(">I", zlib.crc32(bytes(data[:hlen - 4])))
        f.seek(0)
        f.write(data)
    p = ferry(f"cyrus:{root}/spool?user=alice", "erin", expect=1)
    assert "unsupported minor version 19" in p.stderr, H.describe(p)
    j = summary(p)
    assert j["folders_failed"] == 1 and j["copied"] > 100, j


if __name__ == "__main__":
    H.run_tests(setup=setup)
