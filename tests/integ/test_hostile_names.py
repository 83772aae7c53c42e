#!/usr/bin/env python3
"""Hostile source folder names -> maildir: (and -> a Dovecot IMAP target).

A scripted fake source server (tests/support/fakeserver.py) LISTs folders
whose names try to escape the Maildir ("../../etc", "a/../../b", "/abs"),
break Maildir++ ("..", ".", "INBOX.", names with '.'), or break parsers
(NUL, CR/LF and other control characters inside literals, invalid modified
UTF-7, a 300-byte name). Each folder holds one or two messages carrying a
token, so the files can be traced to the folder they came from.

Checked, from the file system and never from imapferry's report alone:
  - nothing is created or changed outside <tmp>/Maildir: the whole <tmp>
    tree (with decoy directories), the targets of two symlink decoys placed
    inside the Maildir (".evil" and a folder whose tmp/ is a symlink), and
    a few absolute paths the names aim at;
  - every message lands in a real Maildir++ folder directly under the root
    (no symlink on the way), folders never merge, a hostile folder is
    either renamed with a note on stderr or refused with a message naming
    the problem;
  - imapferry exits on its own, without a signal.
"""

import os
import re
import shutil
import sys
import tempfile
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "support"))
import harness as H  # noqa: E402
import maildir_util as M  # noqa: E402
from fakeserver import FakeServer  # noqa: E402

TAG = uuid.uuid4().hex[:10]
ABS_TARGETS = [f"/ife-pwned-{TAG}", f"/tmp/ife-pwned-{TAG}", f"/abs-{TAG}"]

# (raw name bytes, why it is hostile). Separator "/".
HOSTILE = [
    (b"../../etc", "parent escape"),
    (b"a/../../b", "parent escape inside"),
    (b"..", "dot-dot"),
    (b".", "dot"),
    (b"INBOX.", "INBOX with a trailing dot"),
    (b"nul\x00inside", "NUL in a literal"),
    (b"nul", "prefix of the NUL name"),
    (b"ctl\x01\x1b[31m\x7fx", "control characters"),
    (b"cr\r\nlf", "CR LF inside a literal"),
    (b"&Jjo!", "invalid mUTF-7"),
    (b"&U,BTFw", "unterminated mUTF-7"),
    (b"Stra\xc3\x9fe", "raw 8-bit"),
    (b"L" * 300, "300-byte name"),
    (b"/abs-" + TAG.encode(), "absolute"),
    (b"../../../../../../../../ife-pwned-" + TAG.encode(), "deep escape"),
    (b"../../../../../../../../tmp/ife-pwned-" + TAG.encode(), "escape to /tmp"),
    (b"v1.2", "dot inside"),
    (b"dots.in.name/sub.dir", "dots in two levels"),
    (b"a//b", "empty level"),
    (b"evil", "maps onto the .evil symlink decoy"),
    (b"Real", "its tmp/ is a symlink decoy"),
    (b"_", "collides with '.' renamed"),
    (b"A" * 150 + b"/" + b"B" * 150, "directory name over 255"),
    (b"cur", "Maildir subdirectory name"),
]
NORMAL = [(b"INBOX", "inbox"), (b"Plain", "a normal folder")]


def is_literal(name):
    return any(c < 0x20 or c > 0x7e or c in b'"\\' for c in name)


def astring(name):
    if is_literal(name):
        return b"{%d}\r\n" % len(name) + name
    return b'"' + name + b'"'


class Source:
    """Folders and messages of the fake source, and the responder that
    plays a small IMAP4rev1 server on top of fakeserver's steps."""

    def __init__(self, folders):
        self.folders = []
        for i, (name, why) in enumerate(folders):
            msgs = []
            for k in range(1 + i % 2):
                uid = 3 + 4 * k + i
                token = f"TOKEN-{TAG}-{i}-{k}"
                body = (f"From: x@example.org\r\nSubject: {why}\r\n"
                        f"Message-ID: <{token}@ferry.test>\r\n\r\n{token}\r\n").encode()
                msgs.append({"uid": uid, "body": body, "token": token,
                             "flags": "\\Seen" if k else ""})
            self.folders.append({"name": name, "why": why, "i": i, "msgs": msgs,
                                 "uidvalidity": 1000 + i, "uidnext": 100 + i})
        self.by_name = {f["name"]: f for f in self.folders}
        self.selected = {}
        self.commands = []

    # -- client side parsing
    def read_command(self, line, conn):
        """The whole command as tokens (literals resolved)."""
        tokens = []
        while True:
            m = re.search(rb"\{(\d+)(\+?)\}$", line)
            head = line[:m.start()] if m else line
            tokens += self.tokenize(head)
            if not m:
                return tokens
            if not m.group(2):
                conn.send(b"+ go\r\n", {})
            tokens.append(conn.read_exact(int(m.group(1)), 10))
            line = conn.read_line(10)

    @staticmethod
    def tokenize(s):
        out, i = [], 0
        while i < len(s):
            c = s[i:i + 1]
            if c == b" ":
                i += 1
            elif c == b'"':
                j, buf = i + 1, b""
                while j < len(s) and s[j:j + 1] != b'"':
                    if s[j:j + 1] == b"\\":
                        j += 1
                    buf += s[j:j + 1]
                    j += 1
                out.append(buf)
                i = j + 1
            elif c == b"(":
                depth, j = 0, i
                while j < len(s):
                    if s[j:j + 1] == b"(":
                        depth += 1
                    elif s[j:j + 1] == b")":
                        depth -= 1
                        if depth == 0:
                            break
                    j += 1
                out.append(s[i:j + 1])
                i = j + 1
            else:
                j = i
                while j < len(s) and s[j:j + 1] != b" ":
                    j += 1
                out.append(s[i:j])
                i = j
        return out

    # -- answers
    def respond(self, m, conn):
        line = m.string
        toks = self.read_command(line, conn)
        tag, cmd = toks[0], toks[1].upper() if len(toks) > 1 else b""
        args = toks[2:]
        self.commands.append(toks)
        ok = tag + b" OK done\r\n"
        if cmd == b"UID" and args:
            cmd, args = b"UID " + args[0].upper(), args[1:]
        if cmd == b"CAPABILITY":
            return b"* CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN SASL-IR UIDPLUS\r\n" + ok
        if cmd in (b"LOGIN", b"AUTHENTICATE", b"NOOP", b"CHECK", b"ENABLE", b"ID"):
            return ok
        if cmd == b"LOGOUT":
            return b"* BYE bye\r\n" + ok
        if cmd in (b"LIST", b"LSUB"):
            out = b""
            for f in self.folders:
                out += b"* " + cmd + b" (\\HasNoChildren) \"/\" " + astring(f["name"]) + b"\r\n"
            return out + ok
        if cmd in (b"STATUS", b"SELECT", b"EXAMINE"):
            f = self.by_name.get(args[0]) if args else None
            if f is None:
                return tag + b" NO [NONEXISTENT] no such folder\r\n"
            if cmd == b"STATUS":
                return (b"* STATUS " + astring(f["name"]) +
                        b" (MESSAGES %d UIDVALIDITY %d UIDNEXT %d)\r\n"
                        % (len(f["msgs"]), f["uidvalidity"], f["uidnext"]) + ok)
            self.selected[id(conn)] = f
            return (b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
                    b"* %d EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY %d] v\r\n"
                    b"* OK [UIDNEXT %d] n\r\n" % (len(f["msgs"]), f["uidvalidity"], f["uidnext"])
                    + tag + (b" OK [READ-ONLY] done\r\n" if cmd == b"EXAMINE"
                             else b" OK [READ-WRITE] done\r\n"))
        if cmd in (b"CLOSE", b"UNSELECT"):
            self.selected.pop(id(conn), None)
            return ok
        if cmd in (b"FETCH", b"UID FETCH"):
            f = self.selected.get(id(conn))
            if f is None:
                return tag + b" BAD no folder selected\r\n"
            want = self.uidset(args[0], f, by_uid=cmd == b"UID FETCH")
            items = b" ".join(args[1:]).upper()
            out = b""
            for seq, msg in enumerate(f["msgs"], 1):
                if msg not in want:
                    continue
                parts = [b"UID %d" % msg["uid"], b"FLAGS (%s)" % msg["flags"].encode(),
                         b'INTERNALDATE "01-Jan-2020 10:00:00 +0000"',
                         b"RFC822.SIZE %d" % len(msg["body"])]
                if b"BODY" in items or b"RFC822 " in items + b" ":
                    parts.append(b"BODY[] {%d}\r\n" % len(msg["body"]) + msg["body"])
                out += b"* %d FETCH (" % seq + b" ".join(parts) + b")\r\n"
            return out + ok
        return tag + b" BAD unknown command\r\n"

    @staticmethod
    def uidset(spec, f, by_uid):
        keys = [m["uid"] if by_uid else n for n, m in enumerate(f["msgs"], 1)]
        top = max(keys) if keys else 0
        chosen = []
        for part in spec.split(b","):
            lo, _, hi = part.partition(b":")
            lo = top if lo == b"*" else int(lo)
            hi = lo if not hi else (top if hi == b"*" else int(hi))
            lo, hi = min(lo, hi), max(lo, hi)
            chosen += [m for k, m in zip(keys, f["msgs"]) if lo <= k <= hi]
        return chosen

    def script(self, steps=3000):
        return [(None, b"* OK [CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN SASL-IR UIDPLUS] fake\r\n")] + \
            [(rb"^\S+", self.respond, {"no_tag": True, "timeout": 60})] * steps


def real_errors(fs):
    """Fake-server errors other than the client closing after LOGOUT."""
    return [e for e in fs.errors if "client closed; pending b''" not in e[1]]


def files_by_token(root):
    """{token: [(dirname relative to root, file name)]} over the Maildir."""
    out = {}
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        for n in files:
            p = os.path.join(dirpath, n)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            with open(p, "rb") as f:
                data = f.read()
            for t in set(re.findall(rb"TOKEN-[0-9a-f]+-\d+-\d", data)):
                if t.decode().startswith(f"TOKEN-{TAG}-"):
                    out.setdefault(t.decode(), []).append(
                        (os.path.relpath(dirpath, root), n))
    return out


def printable(name):
    return name.decode("utf-8", "replace")


def check_placements(src, root, stderr):
    """Every token is in at most one place, inside a real folder directly
    under root; different source folders never share a folder. Returns
    {folder index: Maildir++ dirname} of the folders that arrived."""
    found = files_by_token(root)
    placed = {}
    for f in src.folders:
        dirs = set()
        for msg in f["msgs"]:
            where = found.get(msg["token"], [])
            if not where:
                continue
            assert len(where) == 1, f"{f['why']}: token {msg['token']} in {where}"
            rel, _n = where[0]
            dirs.add(rel)
        if not dirs:
            continue
        assert len(dirs) == 1, f"{f['why']}: messages spread over {dirs}"
        rel = dirs.pop()
        sub = os.path.basename(rel)
        assert sub in ("cur", "new"), (f["why"], rel)
        folder = os.path.dirname(rel)
        if folder == "":
            dn = ""
        else:
            assert "/" not in folder and folder.startswith(".") and folder not in (".", ".."), \
                f"{f['why']}: landed in {rel!r}, not a Maildir++ folder directly under the root"
            dn = folder
            full = os.path.join(root, dn)
            assert not os.path.islink(full) and os.path.realpath(full) == full, (f["why"], full)
            assert os.path.exists(os.path.join(full, "maildirfolder")), (f["why"], full)
        assert len(f["msgs"]) == sum(1 for msg in f["msgs"] if msg["token"] in found), \
            f"{f['why']}: only some messages arrived"
        placed[f["i"]] = dn
    by_dir = {}
    for i, dn in placed.items():
        by_dir.setdefault(dn, []).append(src.folders[i]["why"])
    merged = {dn: v for dn, v in by_dir.items() if len(v) > 1}
    assert not merged, f"source folders merged into one Maildir folder: {merged}\n{stderr}"
    return placed


def assert_clean_stderr(p):
    """Names never reach the terminal raw: no ESC sequences or other
    control characters, and no line that does not start as a log line
    (what a CR LF inside a name would make)."""
    raw_ctl = sorted({hex(ord(ch)) for ch in p.stderr
                      if (ord(ch) < 0x20 and ch not in "\n\t") or 0x7f <= ord(ch) < 0xa0})
    bad = [ln for ln in p.stderr.splitlines() if any(hex(ord(ch)) in raw_ctl for ch in ln)]
    assert not raw_ctl, f"raw control characters {raw_ctl} on stderr:\n" + \
        "\n".join(repr(ln) for ln in bad)
    stray = [ln for ln in p.stderr.splitlines()
             if ln and not re.match(r"^(\d\d:\d\d:\d\d\.\d+ \w+: |imapferry: )", ln)]
    assert not stray, f"stderr lines injected by folder names: {stray}"


def snapshot_all(base):
    snap = M.tree_snapshot(base)
    for p in ABS_TARGETS:
        snap["ABS:" + p] = os.path.lexists(p)
    return snap


def test_a_hostile_names_into_maildir():
    H.require_root()
    base = tempfile.mkdtemp(prefix="ife-hostile-")
    try:
        work = os.path.join(base, "work")
        root = os.path.join(work, "Maildir")
        outside = os.path.join(base, "outside")
        outside2 = os.path.join(base, "outside2")
        for d in (os.path.join(base, "etc"), os.path.join(work, "decoy"), outside, outside2,
                  os.path.join(root, "cur"), os.path.join(root, "new"), os.path.join(root, "tmp"),
                  os.path.join(root, ".Real", "cur"), os.path.join(root, ".Real", "new")):
            os.makedirs(d, exist_ok=True)
        with open(os.path.join(base, "etc", "passwd"), "w") as f:
            f.write("decoy\n")
        with open(os.path.join(outside, "keep"), "w") as f:
            f.write("outside\n")
        os.symlink(outside, os.path.join(root, ".evil"))
        os.symlink(outside2, os.path.join(root, ".Real", "tmp"))
        # metadata files as symlinks to files outside: never written through
        with open(os.path.join(outside, "subs"), "w") as f:
            f.write("V\t2\n\nouter\n")
        os.symlink(os.path.join(outside, "subs"), os.path.join(root, "subscriptions"))
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(root, ".v1_2", sub))
        os.symlink(os.path.join(outside, "keep"), os.path.join(root, ".v1_2", "dovecot-uidlist"))
        os.symlink(os.path.join(outside, "keep"),
                   os.path.join(root, ".v1_2", "dovecot-uidlist.lock"))
        before = snapshot_all(base)
        before_root = M.tree_snapshot(root)
        assert not any(v for k, v in before.items() if k.startswith("ABS:")), before

        src = Source(NORMAL + HOSTILE)
        with FakeServer(src.script(), linger=5) as fs:
            p = H.run_ferry(["copy", "--state", os.path.join(base, "st.db"), "--no-fsync",
                             f"imap://u@127.0.0.1:{fs.port}?tls=none", f"maildir:{root}"],
                            env={"IMAPFERRY_SRC_PASSWORD": "pw"}, timeout=120)
        assert p.returncode >= 0, f"imapferry killed by signal {-p.returncode}\n{H.describe(p)}"
        assert "AddressSanitizer" not in p.stderr and "runtime error" not in p.stderr, p.stderr
        assert not real_errors(fs), (fs.errors, H.describe(p))
        assert_clean_stderr(p)
        assert any(t[1:2] and t[1].upper() in (b"EXAMINE", b"SELECT") for t in src.commands), \
            "imapferry never selected a folder: the test exercised nothing\n" + H.describe(p)

        # 1. nothing outside the Maildir changed
        after = snapshot_all(base)
        outside_diff = [d for d in M.tree_diff(before, after)
                        if not re.match(r"^(created|changed|removed): (work/Maildir(/|\s|$)|st\.db)",
                                        d)]
        assert not outside_diff, "changed outside the Maildir:\n" + "\n".join(outside_diff) + \
            "\n" + H.describe(p)
        # the symlink decoys are untouched and nothing went through them
        assert os.readlink(os.path.join(root, ".evil")) == outside
        assert os.readlink(os.path.join(root, ".Real", "tmp")) == outside2
        assert sorted(os.listdir(outside)) == ["keep", "subs"] and os.listdir(outside2) == []
        # the pre-existing INBOX directories are still directories
        for k in ("cur", "new", "tmp"):
            assert before_root[k][0] == M.tree_snapshot(root)[k][0]

        # 2. placements: real folders under the root, never merged
        placed = check_placements(src, root, p.stderr)
        assert 0 in placed and placed[0] == "", f"INBOX did not arrive in the root: {placed}"
        assert 1 in placed and placed[1] == ".Plain", placed

        # 3. each hostile folder: renamed with a note, or refused with a message
        notes = [ln for ln in p.stderr.splitlines() if "warn" in ln or "error" in ln]
        unreported = []
        for f in src.folders[len(NORMAL):]:
            dn = placed.get(f["i"])
            if dn is not None and dn == "." + f["name"].decode("ascii", "replace"):
                continue    # stored under its own name (only for names that are fine)
            shown = printable(f["name"])[:40]
            key = re.escape(shown[:12]) if shown.isprintable() else None
            if key and not any(re.search(key, ln) for ln in notes):
                unreported.append((f["why"], dn))
        assert not unreported, "hostile folders renamed/refused without a message naming them: " \
            f"{unreported}\n{H.describe(p)}"
        refused = [f["why"] for f in src.folders[len(NORMAL):] if f["i"] not in placed]
        H.log(f"hostile: {len(placed) - len(NORMAL)} renamed/kept, refused: {refused}; exit "
              f"{p.returncode}")
        # the folders that cannot be written as they are and were refused
        # are counted as failures: a non-zero exit says so
        if refused:
            assert p.returncode != 0, H.describe(p)
    finally:
        shutil.rmtree(base, ignore_errors=True)
        for t in ABS_TARGETS:
            if os.path.lexists(t) and TAG in t:
                shutil.rmtree(t, ignore_errors=True)


def test_b_hostile_names_into_dovecot_imap():
    H.require_root()
    base = tempfile.mkdtemp(prefix="ife-hostile-imap-")
    try:
        with H.Dovecot("hostile-dst", users={"alice": "alicepw"}, ssl=False) as d:
            before = snapshot_all(d.dir)
            src = Source(NORMAL + HOSTILE)
            with FakeServer(src.script(), linger=5) as fs:
                p = H.run_ferry(["copy", "--state", os.path.join(base, "st.db"),
                                 f"imap://u@127.0.0.1:{fs.port}?tls=none",
                                 d.url("alice", query="?tls=none")],
                                env={"IMAPFERRY_SRC_PASSWORD": "pw",
                                     "IMAPFERRY_DST_PASSWORD": "alicepw"}, timeout=120)
            assert p.returncode >= 0, f"killed by signal {-p.returncode}\n{H.describe(p)}"
            assert not real_errors(fs), (fs.errors, H.describe(p))
            assert_clean_stderr(p)
            for t in ABS_TARGETS:
                assert not os.path.lexists(t), t
            # the data directory only grew below alice's Maildir
            after = snapshot_all(d.dir)
            stray = [x for x in M.tree_diff(before, after)
                     if not re.match(r"^\w+: (data/alice(/|\s|$)|dovecot\.log|run/|state/|"
                                     r"dovecot\.conf)", x)]
            assert not stray, stray
            c = d.imap("alice", "alicepw")
            try:
                names = {raw for _a, _d, raw in H.parse_list_response(c.list('""', "*")[1])}
                arrived = {}
                for raw in names:
                    typ, data = c.select(M.quote(raw), readonly=True)
                    if typ != "OK" or int(data[0]) == 0:
                        continue
                    typ, fd = c.fetch("1:*", "(BODY.PEEK[])")
                    for x in fd:
                        if isinstance(x, tuple):
                            for t in re.findall(rb"TOKEN-[0-9a-f]+-\d+-\d", x[1]):
                                arrived.setdefault(t.decode(), set()).add(raw)
                    c.close()
            finally:
                c.logout()
            for f in src.folders:
                homes = {h for msg in f["msgs"] for h in arrived.get(msg["token"], ())}
                assert len(homes) <= 1, (f["why"], homes)
            for f in src.folders[:len(NORMAL)]:
                assert all(msg["token"] in arrived for msg in f["msgs"]), (f["why"], arrived)
            bad = M.dovecot_log_problems(d)
            assert not bad, bad
            H.log(f"hostile -> IMAP: exit {p.returncode}, {len(names)} folders on the target")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    H.run_tests()
