#!/usr/bin/env python3
"""imapferry copy SRC maildir:PATH -- the "transparent cutover".

A real Dovecot serving the Maildir imapferry wrote must look exactly like the
source to clients that cache by UID: the same UIDVALIDITY, UIDNEXT and UIDs
per folder, the same flags/keywords, INTERNALDATE, RFC822.SIZE and bodies,
the same subscriptions and POP3 UIDLs. Every check asks a real server
(imaplib, poplib, mbsync) or the file system; imapferry's summary is never
the oracle.

Tests (independent, each with its own servers):
  a  hand-written source Maildir (UID gaps, expunges, odd UIDVALIDITYs,
     keywords, mUTF-7 and nested names) -> target Dovecot: identical
  b  POP3 UIDLs identical, also when the source's pop3_uidl_format differs
     from the target's (the P<uidl> field); negative control without
     --src-pop3
  c  mbsync keeps its cache across the cutover; negative control: a plain
     IMAP-to-IMAP copy makes mbsync fail on UIDVALIDITY
  d  incremental runs into a Maildir that a live Dovecot session is using
  e  SIGKILL mid-run, then re-run: no duplicates, UIDs as the source
  f  more than 26 keywords in a folder: reported, messages still copied
  g  cutover overlap: a target UID already holding other mail (delivered
     to the target, or a file of an interrupted run that the server
     numbered) is reported, never silently taken for the source's message
  h  SIGKILL during an incremental run into a Maildir a live Dovecot
     session is using: Dovecot breaks the dead lock but finds none of our
     files to number itself (they wait in tmp/ until commit); the re-run
     gives every message the source's UID, without duplicates
  i  the target on a new ext4 with a journal: a batch is made durable by
     waiting for each file's write-back and one journal commit; on ext4
     without a journal (same magic number) and on tmpfs, by an fdatasync
     per file; the served result identical either way
"""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import maildir_util as M  # noqa: E402

USER, PW = "alice", "alicepw-Q7"
T0 = 1_546_300_800          # 2019-01-01


def msg(folder, uid, letters="", crlf=False, w=None, extra=b""):
    return {"uid": uid, "letters": letters, "idate": T0 + uid * 3607 + len(folder) * 11,
            "data": M.make_body(folder, uid, crlf, extra),
            "w_in_name": w == "name", "w_in_ext": w == "ext"}


KW = {0: "$Work", 1: "Urgent", 3: "$Label3"}

# name, UIDVALIDITY, UIDNEXT, keywords, messages; expunged after start: EXPUNGE
FOLDERS = [
    {"name": "INBOX", "uidvalidity": 1234567, "uidnext": 1001, "keywords": KW,
     "msgs": [msg("INBOX", 5, "S", w="name"), msg("INBOX", 9, "RS"),
              msg("INBOX", 17, "FSa"), msg("INBOX", 120, "Sabd", crlf=True),
              msg("INBOX", 300, ""), msg("INBOX", 900, "DFRSTd", w="ext")]},
    {"name": "Archive", "uidvalidity": 42, "uidnext": 60, "keywords": {0: "Old"},
     "msgs": [msg("Archive", 1, "Sa"), msg("Archive", 2, "S"), msg("Archive", 50, "")]},
    {"name": "Archive/2019", "uidvalidity": 3_000_000_000, "uidnext": 7777, "keywords": {},
     "msgs": [msg("Archive/2019", 3, "S"), msg("Archive/2019", 10, "F"),
              msg("Archive/2019", 7000, "RS", extra=b"\xc3\xa9t\xc3\xa9 8bit\n")]},
    {"name": "Café/Ünïcode", "uidvalidity": 99, "uidnext": 12, "keywords": {2: "Ärger-x"},
     "msgs": [msg("Café/Ünïcode", 11, "S")]},
    {"name": "Projects & Co", "uidvalidity": 5, "uidnext": 300, "keywords": {25: "Last"},
     "msgs": [msg("Projects & Co", 100, "z", crlf=True), msg("Projects & Co", 200, "S", crlf=True),
              msg("Projects & Co", 299, "FS", crlf=True)]},
    {"name": "Empty", "uidvalidity": 77, "uidnext": 50, "keywords": {}, "msgs": []},
]
EXPUNGE = {"INBOX": [9], "Archive/2019": [10]}
SUBS = ["INBOX", "Archive/2019", "Café", "Café/Ünïcode", "Projects & Co"]  # "Café": a \Noselect parent


def raw(name):
    return H.mutf7_encode(name)


@contextlib.contextmanager
def source(name="src", extra_conf="", folders=FOLDERS, subs=SUBS, expunge=EXPUNGE):
    """A source Dovecot whose Maildir was written by hand before it started,
    then had EXPUNGE applied over IMAP."""
    s = H.Dovecot(name, users={USER: PW}, ssl=False, extra_conf=extra_conf)
    try:
        M.write_source_maildir(s.maildir(USER), folders, subs)
        s.start()
        c = s.imap(USER, PW)
        try:
            for box, uids in expunge.items():
                typ, d = c.select(M.quote(raw(box)))
                assert typ == "OK", d
                for u in uids:
                    assert c.uid("STORE", str(u), "+FLAGS.SILENT", "(\\Deleted)")[0] == "OK"
                    assert c.uid("EXPUNGE", str(u))[0] == "OK"
                c.unselect()        # not CLOSE: it would expunge every \\Deleted
        finally:
            c.logout()
        yield s
    finally:
        s.stop()


def src_url(s):
    return s.url(USER, query="?tls=none")


def copy_to(s, target, *opts, state=None, expect=0, **kw):
    p = M.ferry_maildir(src_url(s), PW, target, *opts, state=state, **kw)
    if expect is not None:
        assert p.returncode == expect, H.describe(p)
    return p


def assert_log_clean(*servers):
    for sv in servers:
        bad = M.dovecot_log_problems(sv)
        assert not bad, f"{sv.name}: dovecot.log complains:\n" + "\n".join(bad)


# --------------------------------------------------------------------------

def test_a_identical_folders_uids_flags_bodies():
    H.require_root()
    tmp = tempfile.mkdtemp(prefix="ife-mdt-a-")
    try:
        _test_a(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _test_a(tmp):
    with source("mda-src") as s, H.Dovecot("mda-dst", users={USER: PW}, ssl=False) as d:
        src = M.snapshot(s, USER, PW)
        # the oracle sees the hand-written state (guards the fixture itself)
        assert src["INBOX"]["uidvalidity"] == 1234567 and src["INBOX"]["uidnext"] == 1001
        assert sorted(src["INBOX"]["msgs"]) == [5, 17, 120, 300, 900], src["INBOX"]
        assert "$Label3" in src["INBOX"]["msgs"][120]["flags"], src["INBOX"]["msgs"][120]
        assert src[raw("Archive/2019")]["uidvalidity"] == 3_000_000_000
        assert src["Empty"]["uidnext"] == 50 and not src["Empty"]["msgs"]
        target = d.maildir(USER)
        assert not os.path.exists(target)
        copy_to(s, target, state=os.path.join(tmp, "st.db"))
        # the files belong to the mail user, as Dovecot needs
        for dirpath, dirs, files in os.walk(target):
            for n in dirs + files:
                st = os.lstat(os.path.join(dirpath, n))
                assert (st.st_uid, st.st_gid) == (H.MAIL_UID, H.MAIL_GID), \
                    f"{os.path.join(dirpath, n)} owned by {st.st_uid}:{st.st_gid}"
        dst = M.snapshot(d, USER, PW)
        n = M.compare_snapshots(src, dst)
        assert n == 14, n
        assert M.lsub(d, USER, PW) == M.lsub(s, USER, PW) == sorted(raw(x) for x in SUBS), \
            (M.lsub(d, USER, PW), M.lsub(s, USER, PW))
        # a second snapshot after Dovecot indexed everything: still the same
        assert M.compare_snapshots(src, M.snapshot(d, USER, PW)) == n
        # the target accepts new mail above the source's UIDNEXT
        c = d.imap(USER, PW)
        try:
            typ, r = c.append("INBOX", None, None, M.make_body("new", 1, True))
            assert typ == "OK" and b"APPENDUID 1234567 1001]" in r[0], r
        finally:
            c.logout()
        assert_log_clean(s, d)


# --------------------------------------------------------------------------

def pop3_case(tag, extra_conf, with_pop3=True):
    """(source UIDLs, target UIDLs) after a copy with/without --src-pop3."""
    tmp = tempfile.mkdtemp(prefix=f"ife-mdt-{tag}-")
    try:
        with source(f"p{tag}-src", extra_conf=extra_conf) as s, \
                H.Dovecot(f"p{tag}-dst", users={USER: PW}, ssl=False) as d:
            su = M.pop3_uidls(s, USER, PW)
            pop = f"pop3://{USER}@{s.host}:{s.pop3_port}?tls=none"
            copy_to(s, d.maildir(USER), state=os.path.join(tmp, "st.db"),
                    src_pop3=pop if with_pop3 else None)
            du = M.pop3_uidls(d, USER, PW)
            assert_log_clean(s, d)
            # IMAP view unchanged by the P fields
            assert sorted(M.snapshot(d, USER, PW, body=False)["INBOX"]["msgs"]) == \
                [5, 17, 120, 300, 900]
            return su, du
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_b_pop3_uidls():
    H.require_root()
    # same format on both sides: equal UIDVALIDITY/UIDs give equal UIDLs
    su, du = pop3_case("def", "")
    assert len(su) == 5 and su == du, (su, du)
    # a source format the target does not use: only P<uidl> keeps them
    for tag, fmt in (("vu", "%08Xv%08Xu"), ("f", "%f")):
        conf = f"pop3_uidl_format = {fmt}\n"
        su, du = pop3_case(tag, conf)
        assert len(su) == 5 and su == du, f"{fmt}: source {su}\ntarget {du}"
    # negative control: without --src-pop3 the target's own format shows
    su, du = pop3_case("neg", "pop3_uidl_format = %08Xv%08Xu\n", with_pop3=False)
    assert su != du, f"UIDLs equal without --src-pop3: the check cannot fail ({su})"


# --------------------------------------------------------------------------
# mbsync as a caching client

MBSYNC_BAD = re.compile(r"UIDVALIDITY|Maildir error|Error|cannot|unexpected", re.I)


class Mbsync:
    """mbsync with a Far IMAP account and its own Near Maildir store; the
    same state files whatever server Far points at."""

    def __init__(self, d):
        self.d = d
        os.makedirs(os.path.join(d, "near"))
        os.makedirs(os.path.join(d, "state"))

    def run(self, server):
        rc = os.path.join(self.d, "mbsyncrc")
        with open(rc, "w") as f:
            f.write(f"""IMAPAccount acc
Host {server.host}
Port {server.port}
User {USER}
Pass {PW}
SSLType None
AuthMechs LOGIN

IMAPStore far
Account acc

MaildirStore near
Path {self.d}/near/
Inbox {self.d}/near/INBOX
SubFolders Verbatim

Channel ch
Far :far:
Near :near:
Patterns *
Create Near
Sync Pull
SyncState {self.d}/state/
CopyArrivalDate yes
""")
        return subprocess.run(["mbsync", "-V", "-c", rc, "-a"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=120)

    def cache(self):
        """{near folder: sorted message file bases}, and the state files."""
        files = {}
        for root, _dirs, names in os.walk(os.path.join(self.d, "near")):
            if os.path.basename(root) in ("cur", "new"):
                folder = os.path.relpath(os.path.dirname(root), os.path.join(self.d, "near"))
                files.setdefault(folder, []).extend(n.split(":")[0] for n in names)
        state = {}
        for n in os.listdir(os.path.join(self.d, "state")):
            with open(os.path.join(self.d, "state", n)) as f:
                state[n] = f.read()
        return {k: sorted(v) for k, v in files.items()}, state


def mbsync_problems(mb, server):
    """Runs mbsync against server and lists what shows the cache was not
    kept: an exit status, UIDVALIDITY/error lines, a re-download (new or
    removed Near files), changed sync state."""
    before = mb.cache()
    p = mb.run(server)
    after = mb.cache()
    problems = []
    if p.returncode != 0:
        problems.append(f"mbsync exited {p.returncode}")
    problems += [f"mbsync: {ln}" for ln in p.stdout.splitlines()
                 if MBSYNC_BAD.search(ln) and "sent in the clear" not in ln]
    if after[0] != before[0]:
        problems.append(f"Near store changed: {before[0]} -> {after[0]}")
    if after[1] != before[1]:
        problems.append("sync state changed:\n" + "\n".join(
            f"  {k}: {before[1].get(k)!r} -> {after[1].get(k)!r}"
            for k in sorted(set(before[1]) | set(after[1])) if before[1].get(k) != after[1].get(k)))
    return problems, p.stdout


def test_c_mbsync_keeps_its_cache():
    H.require_root()
    if not shutil.which("mbsync"):
        H.skip("mbsync (isync) is not installed")
    tmp = tempfile.mkdtemp(prefix="ife-mdt-c-")
    try:
        with source("mdc-src") as s, \
                H.Dovecot("mdc-dst", users={USER: PW}, ssl=False) as d, \
                H.Dovecot("mdc-imap", users={USER: PW}, ssl=False) as d3:
            mb = Mbsync(os.path.join(tmp, "mb"))
            p = mb.run(s)
            assert p.returncode == 0, p.stdout
            files, state = mb.cache()
            assert sum(len(v) for v in files.values()) == 14, files
            # sanity: a second run against the source itself changes nothing
            probs, out = mbsync_problems(mb, s)
            assert not probs, "\n".join(probs) + "\n" + out
            copy_to(s, d.maildir(USER), state=os.path.join(tmp, "st.db"))
            probs, out = mbsync_problems(mb, d)
            assert not probs, ("mbsync did not keep its cache after the cutover:\n"
                               + "\n".join(probs) + "\n--- mbsync -V\n" + out)
            # negative control: a plain IMAP -> IMAP copy (new UIDVALIDITYs)
            q = H.run_ferry(["copy", "--state", os.path.join(tmp, "imap.db"), src_url(s),
                             d3.url(USER, query="?tls=none")],
                            env={"IMAPFERRY_SRC_PASSWORD": PW, "IMAPFERRY_DST_PASSWORD": PW})
            assert q.returncode == 0, H.describe(q)
            mb2 = Mbsync(os.path.join(tmp, "mb2"))
            assert mb2.run(s).returncode == 0
            probs, out = mbsync_problems(mb2, d3)
            assert probs, "mbsync saw no difference after an IMAP copy: the check is blind\n" + out
            assert any("UIDVALIDITY" in x for x in probs), probs
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------

def test_d_incremental_into_live_maildir():
    H.require_root()
    tmp = tempfile.mkdtemp(prefix="ife-mdt-d-")
    state = os.path.join(tmp, "st.db")
    try:
        with source("mdd-src") as s, H.Dovecot("mdd-dst", users={USER: PW}, ssl=False) as d:
            copy_to(s, d.maildir(USER), "--delete-missing", state=state)
            first = M.snapshot(d, USER, PW)
            M.compare_snapshots(M.snapshot(s, USER, PW), first)
            live = d.imap(USER, PW)
            typ, _ = live.select("INBOX")              # read-write, as a client does
            assert typ == "OK"
            seq_uids = M.parse_fetch(live.uid("FETCH", "1:*", "(UID)")[1], body=False)
            assert sorted(seq_uids) == [5, 17, 120, 300, 900]

            # changes on the source
            c = s.imap(USER, PW)
            for i in range(2):
                typ, r = c.append("INBOX", "(\\Seen $Work)", None,
                                  M.make_body("new-inbox", i, crlf=bool(i)))
                assert typ == "OK", r
            typ, r = c.append(M.quote(raw("Archive/2019")), "(\\Flagged)", None,
                              M.make_body("new-2019", 1, True))
            assert typ == "OK", r
            c.select("INBOX")
            assert c.uid("STORE", "17", "-FLAGS.SILENT", "(\\Flagged $Work)")[0] == "OK"
            assert c.uid("STORE", "17", "+FLAGS.SILENT", "(Urgent \\Answered)")[0] == "OK"
            assert c.uid("STORE", "300", "+FLAGS.SILENT", "(\\Seen NewKw)")[0] == "OK"
            assert c.uid("STORE", "120", "+FLAGS.SILENT", "(\\Deleted)")[0] == "OK"
            assert c.uid("EXPUNGE", "120")[0] == "OK"
            c.unselect()
            c.select(M.quote(raw("Archive/2019")))
            assert c.uid("STORE", "3", "+FLAGS.SILENT", "(\\Deleted)")[0] == "OK"
            assert c.uid("EXPUNGE", "3")[0] == "OK"
            c.unselect()
            c.logout()
            src = M.snapshot(s, USER, PW)
            assert sorted(src["INBOX"]["msgs"]) == [5, 17, 300, 900, 1001, 1002], src["INBOX"]

            # (--fsync fs: one syncfs per commit instead of an fdatasync per file)
            copy_to(s, d.maildir(USER), "--delete-missing", "--fsync", "fs", state=state)

            # the open session sees the changes at its next NOOP
            live.untagged_responses.clear()
            typ, _ = live.noop()
            assert typ == "OK"
            seen = dict(live.untagged_responses)
            assert "EXPUNGE" in seen and "EXISTS" in seen, seen
            now = M.parse_fetch(live.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")[1])
            assert sorted(now) == sorted(src["INBOX"]["msgs"]), \
                f"open session: UIDs {sorted(now)}, source {sorted(src['INBOX']['msgs'])}"
            for uid, m in now.items():
                assert m["flags"] == src["INBOX"]["msgs"][uid]["flags"], (uid, m, src["INBOX"])
                assert m["sha"] == src["INBOX"]["msgs"][uid]["sha"], uid
                if uid in first["INBOX"]["msgs"]:
                    assert m["sha"] == first["INBOX"]["msgs"][uid]["sha"], uid
            live.logout()
            # a fresh session: everything as the source, UIDVALIDITY unchanged
            dst = M.snapshot(d, USER, PW)
            M.compare_snapshots(src, dst)
            for name in dst:
                assert dst[name]["uidvalidity"] == first[name]["uidvalidity"], name
            assert dst["INBOX"]["uidnext"] == 1003 and dst[raw("Archive/2019")]["uidnext"] == 7778

            # re-runs copy nothing and change nothing on disk
            files = {k: M.message_files(v) for k, v in M.maildir_folders(d.maildir(USER)).items()}
            for _ in range(2):
                copy_to(s, d.maildir(USER), "--delete-missing", state=state)
                again = {k: M.message_files(v)
                         for k, v in M.maildir_folders(d.maildir(USER)).items()}
                assert again == files, (files, again)
                M.compare_snapshots(src, M.snapshot(d, USER, PW))
            assert_log_clean(s, d)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------

def count_target_files(root, subs=("cur", "tmp")):
    """Files delivered so far: published (cur/) or pending (tmp/)."""
    n = 0
    for _k, path in (M.maildir_folders(root).items() if os.path.isdir(root) else []):
        for sub in subs:
            try:
                n += len([x for x in os.listdir(os.path.join(path, sub))
                          if not x.startswith(".")])
            except FileNotFoundError:
                pass
    return n


def test_e_sigkill_then_rerun():
    H.require_root()
    corpus = H.gen_corpus(users=1, messages=1500, seed=3)
    tmp = tempfile.mkdtemp(prefix="ife-mdt-e-")
    state = os.path.join(tmp, "st.db")
    s = H.Dovecot("mde-src", users={USER: PW}, ssl=False)
    try:
        s.load_maildir(USER, corpus.user_dir("user1"))
        with s, H.Dovecot("mde-dst", users={USER: PW}, ssl=False) as d:
            # UID gaps on the source too
            c = s.imap(USER, PW)
            c.select("INBOX")
            assert c.uid("STORE", ",".join(map(str, range(2, 40, 3))), "+FLAGS.SILENT", "(\\Deleted)")[0] == "OK"
            c.expunge()
            c.logout()
            src = M.snapshot(s, USER, PW)
            total = sum(len(v["msgs"]) for v in src.values())
            target = d.maildir(USER)
            kills = 0
            for frac in (0.25, 0.6):
                e = dict(os.environ, IMAPFERRY_SRC_PASSWORD=PW)
                e.pop("IMAPFERRY_PASSWORD", None)
                p = subprocess.Popen([H.BIN, "copy", "--state", state, "--owner", "mail:mail",
                                      src_url(s), f"maildir:{target}"], env=e,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
                deadline = time.monotonic() + 120
                while p.poll() is None and time.monotonic() < deadline:
                    if count_target_files(target) >= frac * total:
                        p.send_signal(signal.SIGKILL)
                        kills += 1
                        break
                    time.sleep(0.002)
                p.wait()
            assert kills >= 1, "the copy finished before it could be killed"
            killed_at = count_target_files(target)
            r = copy_to(s, target, state=state)
            # no duplicates: exactly one file per source message, and one
            # uidlist line per file
            folders = M.maildir_folders(target)
            for name, snap in src.items():
                dn = M.folder_dirname(H.mutf7_decode(name)) if name != "INBOX" else ""
                assert dn in folders, (name, dn, sorted(folders))
                files = M.message_files(folders[dn])
                assert len(files) == len(snap["msgs"]), \
                    f"{name}: {len(files)} files for {len(snap['msgs'])} source messages"
                hdr, recs = M.read_uidlist(folders[dn])
                assert sorted(u for u, _e, _b in recs) == sorted(snap["msgs"]), name
                leftovers = os.listdir(os.path.join(folders[dn], "tmp"))
                assert not leftovers, f"{name}: tmp/ still holds {leftovers}"
            M.compare_snapshots(src, M.snapshot(d, USER, PW))
            assert_log_clean(s, d)
            H.log(f"test_e: killed {kills}x, {killed_at}/{total} files before the re-run; "
                  f"{r.stderr.strip().splitlines()[-1:] if r.stderr.strip() else ''}")
    finally:
        s.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------

def test_f_more_than_26_keywords():
    H.require_root()
    tmp = tempfile.mkdtemp(prefix="ife-mdt-f-")
    kws = [f"Tag{i:02d}" for i in range(31)]
    try:
        with source("mdf-src", folders=[dict(FOLDERS[0], msgs=FOLDERS[0]["msgs"][:1])],
                    subs=["INBOX"], expunge={}) as s, \
                H.Dovecot("mdf-dst", users={USER: PW}, ssl=False) as d:
            c = s.imap(USER, PW)
            assert c.create("Tags")[0] == "OK"
            for i, k in enumerate(kws):
                flags = f"(\\Seen {k}" + (f" {kws[(i + 7) % len(kws)]})" if i % 3 == 0 else ")")
                typ, r = c.append("Tags", flags, None, M.make_body("Tags", i + 1, True))
                assert typ == "OK", r
            c.logout()
            src = M.snapshot(s, USER, PW)
            used = {k for m in src["Tags"]["msgs"].values() for k in m["flags"]
                    if not k.startswith("\\")}
            assert used == set(kws), used       # the source really holds 31 keywords
            p = copy_to(s, d.maildir(USER), state=os.path.join(tmp, "st.db"), expect=None)
            assert p.returncode in (0, 1), H.describe(p)
            dst = M.snapshot(d, USER, PW)
            assert sorted(dst["Tags"]["msgs"]) == sorted(src["Tags"]["msgs"]), H.describe(p)
            lost = set()
            for uid, sm in src["Tags"]["msgs"].items():
                dm = dst["Tags"]["msgs"][uid]
                assert dm["sha"] == sm["sha"] and dm["idate"] == sm["idate"], uid
                assert set(dm["flags"]) <= set(sm["flags"]), (uid, sm, dm)
                assert "\\Seen" in dm["flags"], (uid, dm)
                lost |= set(sm["flags"]) - set(dm["flags"])
            kept = {k for m in dst["Tags"]["msgs"].values() for k in m["flags"]
                    if not k.startswith("\\")}
            assert len(kept) == 26, sorted(kept)
            assert lost == set(kws) - kept, (lost, kept)
            # every lost keyword is named on stderr as not kept
            report = [ln for ln in p.stderr.splitlines() if "keyword" in ln.lower()]
            for k in sorted(lost):
                assert any(re.search(rf"\b{k}\b", ln) for ln in report), \
                    f"keyword {k} lost without a report\n{H.describe(p)}"
            for k in sorted(kept):
                assert not any(re.search(rf"\b{k}\b", ln) for ln in report), \
                    f"keyword {k} reported lost but kept\n{H.describe(p)}"
            M.compare_snapshots({k: v for k, v in src.items() if k != "Tags"},
                                {k: v for k, v in dst.items() if k != "Tags"})
            assert_log_clean(s, d)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------

def test_g_target_uid_taken_by_other_mail_is_reported():
    """Cutover overlap: mail reaches the target (UID 1001 there) while the
    source gets its own UID 1001. A re-run must not take the target's
    message for the source's one silently: it keeps the target's mail and
    reports the UID."""
    H.require_root()
    tmp = tempfile.mkdtemp(prefix="ife-mdt-g-")
    state = os.path.join(tmp, "st.db")
    try:
        with source("mdg-src") as s, H.Dovecot("mdg-dst", users={USER: PW}, ssl=False) as d:
            copy_to(s, d.maildir(USER), "--delete-missing", state=state)
            c = d.imap(USER, PW)
            typ, r = c.append("INBOX", "(\\Seen)", time.time() - 86400 * 3,
                              M.make_body("delivered-to-target", 1, True))
            assert typ == "OK" and b"APPENDUID 1234567 1001]" in r[0], r
            c.logout()
            c = s.imap(USER, PW)
            typ, r = c.append("INBOX", None, time.time() - 86400 * 7,
                              M.make_body("late-on-source", 2, True, extra=b"longer\r\n"))
            assert typ == "OK" and b"APPENDUID 1234567 1001]" in r[0], r
            c.logout()
            before = M.snapshot(d, USER, PW)["INBOX"]["msgs"][1001]
            p = copy_to(s, d.maildir(USER), "--delete-missing", state=state, expect=None)
            after = M.snapshot(d, USER, PW)["INBOX"]["msgs"]
            src = M.snapshot(s, USER, PW)["INBOX"]["msgs"]
            assert after.get(1001) == before, "the target's own message under UID 1001 was " \
                f"replaced or removed\n{H.describe(p)}"
            assert after[1001]["sha"] != src[1001]["sha"]
            assert p.returncode != 0 and re.search(r"UID 1001\b", p.stderr), \
                "UID 1001 differs between source and target without a report\n" + H.describe(p)
            assert_log_clean(s, d)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------

def add_source_mail(maildir, first_uid, n, pad=6000):
    """Drops n messages into the source INBOX's new/ as an MDA would, for
    source UIDs first_uid.. in file-name order (Dovecot numbers new files
    sorted by name). Their INTERNALDATEs DEcrease with the UID, so a server
    numbering our copies itself (sorted by our names, which start with the
    INTERNALDATE) would give them other UIDs than the source's."""
    new = os.path.join(maildir, "new")
    for i in range(n):
        uid = first_uid + i
        data = M.make_body("bulk", uid, True, extra=(b"y" * 76 + b"\r\n") * (pad // 78))
        path = os.path.join(new, f"{1_600_000_000 + i}.M{i}P777.mdahost")
        with open(path, "wb") as f:
            f.write(data)
        idate = T0 + 10_000_000 - i * 61
        os.utime(path, (idate, idate))
        os.chown(path, H.MAIL_UID, H.MAIL_GID)


def check_target_numbering(d, src_inbox, when):
    """Every UID a fresh Dovecot session shows in INBOX holds the source's
    message of that UID, and UIDNEXT does not run past the source's."""
    dst = M.snapshot(d, USER, PW)["INBOX"]
    wrong = [u for u, m in dst["msgs"].items()
             if u not in src_inbox["msgs"] or m["sha"] != src_inbox["msgs"][u]["sha"]]
    assert not wrong, f"{when}: Dovecot numbered files itself: target UIDs " \
        f"{sorted(wrong)[:10]}... ({len(wrong)}) hold no or other source messages"
    assert dst["uidnext"] <= src_inbox["uidnext"], (when, dst["uidnext"], src_inbox["uidnext"])
    return dst


def test_h_sigkill_while_dovecot_serves_the_target():
    H.require_root()
    tmp = tempfile.mkdtemp(prefix="ife-mdt-h-")
    state = os.path.join(tmp, "st.db")
    n_new = 3000
    try:
        with source("mdh-src") as s, H.Dovecot("mdh-dst", users={USER: PW}, ssl=False) as d:
            target = d.maildir(USER)
            copy_to(s, target, state=state)
            live = d.imap(USER, PW)
            assert live.select("INBOX")[0] == "OK"      # read-write, as a client does
            before = M.parse_fetch(live.uid("FETCH", "1:*", "(UID)")[1], body=False)
            assert sorted(before) == [5, 17, 120, 300, 900], before

            add_source_mail(s.maildir(USER), 1001, n_new)
            c = s.imap(USER, PW)
            c.select("INBOX")
            # gaps in the new source UIDs too
            gone = ",".join(str(u) for u in range(1001, 1001 + n_new, 7))
            assert c.uid("STORE", gone, "+FLAGS.SILENT", "(\\Deleted)")[0] == "OK"
            assert c.uid("EXPUNGE", gone)[0] == "OK"   # UID 900 is \Deleted too
            c.logout()
            src = M.snapshot(s, USER, PW)
            assert len(src["INBOX"]["msgs"]) == 5 + n_new - len(range(1001, 1001 + n_new, 7)), \
                (len(src["INBOX"]["msgs"]), sorted(src["INBOX"]["msgs"])[:20], src["INBOX"]["uidnext"])
            assert src["INBOX"]["uidnext"] == 1001 + n_new, src["INBOX"]["uidnext"]

            # run 1: killed before its first commit (every 2000 messages);
            # run 2: killed after one, if it gets that far. (Not inside a
            # commit: a kill between its renames into cur/ and its uidlist
            # rename is the one window left, kept short, not tested here.)
            kills = []
            for want_published in (0, 2000):
                e = dict(os.environ, IMAPFERRY_SRC_PASSWORD=PW)
                e.pop("IMAPFERRY_PASSWORD", None)
                cur0 = count_target_files(target, ("cur",))
                p = subprocess.Popen([H.BIN, "copy", "--state", state, "--owner", "mail:mail",
                                      src_url(s), f"maildir:{target}"], env=e,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
                deadline = time.monotonic() + 120
                while p.poll() is None and time.monotonic() < deadline:
                    # cur/ first: once all of a commit's files are in
                    # cur/, files in tmp/ are later deliveries, so the
                    # commit is over
                    published = count_target_files(target, ("cur",)) - cur0
                    pending = count_target_files(target, ("tmp",))
                    if published >= want_published and \
                            (pending >= 300 if want_published else pending + published >= 300):
                        p.send_signal(signal.SIGKILL)
                        kills.append((pending, published))
                        break
                    time.sleep(0.002)
                p.wait()
                if p.returncode != -signal.SIGKILL:
                    break
                # Dovecot breaks our dead process's lock (same host, pid
                # gone, >= 2 s old) at its next sync: the open session's
                # NOOP, and a fresh session
                time.sleep(3)
                assert live.noop()[0] == "OK"
                now = M.parse_fetch(live.uid("FETCH", "1:*", "(UID)")[1], body=False)
                stray = [u for u in now if u not in src["INBOX"]["msgs"]]
                assert not stray, f"after kill {len(kills)} {kills[-1]}: the open session " \
                    f"sees UIDs the source lacks: {sorted(stray)[:10]}"
                check_target_numbering(d, src["INBOX"], f"after kill {len(kills)}")
            assert kills, "the copy finished before it could be killed"
            assert kills[0][1] == 0, kills

            r = copy_to(s, target, state=state)
            dst = M.snapshot(d, USER, PW)
            M.compare_snapshots(src, dst)
            check_target_numbering(d, src["INBOX"], "after the re-run")
            hdr, recs = M.read_uidlist(target)
            files = M.message_files(target)
            assert len(files) == len(src["INBOX"]["msgs"]), \
                f"{len(files)} files for {len(src['INBOX']['msgs'])} source messages"
            assert sorted(u for u, _e, _b in recs) == sorted(src["INBOX"]["msgs"])
            assert not os.listdir(os.path.join(target, "tmp"))
            # the open session sees exactly the source's UIDs
            assert live.noop()[0] == "OK"
            now = M.parse_fetch(live.uid("FETCH", "1:*", "(UID)")[1], body=False)
            assert sorted(now) == sorted(src["INBOX"]["msgs"])
            live.logout()
            assert_log_clean(s, d)
            H.log(f"test_h: killed at (pending, published) {kills}; "
                  f"{r.stderr.strip().splitlines()[-1:] if r.stderr.strip() else ''}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)



# --------------------------------------------------------------------------

@contextlib.contextmanager
def home_on(fs, home):
    """Mounts a new file system of kind fs ("ext4", "ext4-nojournal",
    "tmpfs") on home (the target user's home, owned by mail:mail)."""
    img = dev = None
    os.makedirs(home, exist_ok=True)
    try:
        if fs == "tmpfs":
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", home],
                           check=True, capture_output=True)
        else:
            fd, img = tempfile.mkstemp(prefix="ife-mdt-i-", suffix=".img", dir="/var/tmp")
            os.ftruncate(fd, 256 << 20)
            os.close(fd)
            p = subprocess.run(["losetup", "--find", "--show", img],
                               capture_output=True, text=True)
            if p.returncode != 0:
                H.skip(f"no loop device here: {p.stderr.strip()}")
            dev = p.stdout.strip()
            subprocess.run(["mkfs.ext4", "-q", "-F"] +
                           (["-O", "^has_journal"] if fs == "ext4-nojournal" else []) +
                           [dev], check=True, capture_output=True)
            subprocess.run(["mount", dev, home], check=True, capture_output=True)
        os.chown(home, H.MAIL_UID, H.MAIL_GID)
        yield home
    finally:
        subprocess.run(["umount", home], capture_output=True)
        if dev:
            subprocess.run(["losetup", "-d", dev], capture_output=True)
        if img:
            os.unlink(img)


def test_i_sync_by_journal_only_where_a_journal_orders_writes():
    H.require_root()
    for tool in ("losetup", "mkfs.ext4", "mount"):
        if not shutil.which(tool):
            H.skip(f"{tool} is not installed")
    tmp = tempfile.mkdtemp(prefix="ife-mdt-i-")
    want = {"ext4": "ext4 with a journal: a batch's files are synced by waiting",
            "ext4-nojournal": "a batch's files are synced by an fdatasync each",
            "tmpfs": "a batch's files are synced by an fdatasync each"}
    try:
        with source("mdi-src") as s:
            for fs, line in want.items():
                src = M.snapshot(s, USER, PW)
                total = sum(len(v["msgs"]) for v in src.values())
                with H.Dovecot(f"mdi-{fs}", users={USER: PW}, ssl=False) as d:
                    target = d.maildir(USER)
                    with home_on(fs, os.path.dirname(target)):
                        p = copy_to(s, target, "--debug",
                                    state=os.path.join(tmp, f"{fs}.db"))
                        used = [ln for ln in p.stderr.splitlines() if "are synced by" in ln]
                        assert used and all(line in ln for ln in used), \
                            f"{fs}: {used[:3]}\n{H.describe(p)}"
                        n = M.compare_snapshots(src, M.snapshot(d, USER, PW))
                        assert n == total >= 14, (n, total)
                        # an incremental pass finds nothing to do, and
                        # a new message on the source lands with its UID
                        c = s.imap(USER, PW)
                        try:
                            typ, r = c.append("Archive", None, None,
                                              M.make_body(f"new-{fs}", 1, True))
                            assert typ == "OK", r
                        finally:
                            c.logout()
                        copy_to(s, target, state=os.path.join(tmp, f"{fs}.db"))
                        src2 = M.snapshot(s, USER, PW)
                        assert M.compare_snapshots(src2, M.snapshot(d, USER, PW)) == n + 1
                        assert_log_clean(d)
                    H.log(f"test_i: {fs}: {used[0].split(': ', 2)[-1][:70]!r}, {n} messages")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    H.run_tests()
