#!/usr/bin/env python3
"""imapferry check and dovecot-config against real servers.

The source is a Cyrus 3.6 with the legacy namespace ("INBOX." prefix, "."
separator) whose account has INBOX.Sent, INBOX.Drafts and INBOX.Trash
(created with their special use when Cyrus takes CREATE ... USE, else
recognized by name) and a gen.py corpus.

1. check against a default Dovecot ("/" separator, no prefix, no
   special-use): UIDs change, the folder paths change, the special-use
   folders are missing; exit status 1.
2. check against a Maildir target: no UID finding, nothing a client
   notices (exit status 0); the namespace and special-use are infos that
   point at dovecot-config.
3. dovecot-config: the account copied into a Dovecot's Maildir, that
   Dovecot started with the generated fragment shows the same folder names
   as Cyrus (INBOX.Sent...) with their special use, and an mbsync
   configured for Cyrus, with only the host and port changed, syncs with
   nothing downloaded again.
4. exit status 3 when a server cannot be reached, 2 for usage errors.
"""

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

PW = "chkpw-1"
USER = None
C = None
TMP = None
SPECIAL = {"INBOX.Sent": "\\Sent", "INBOX.Drafts": "\\Drafts", "INBOX.Trash": "\\Trash"}


@contextlib.contextmanager
def setup():
    global C, TMP, USER
    H.require_root()
    corpus = H.gen_corpus(users=1, messages=40, seed=11)
    USER = corpus.users()[0]
    rows = list(corpus)
    TMP = tempfile.mkdtemp(prefix="ife-chk-")
    C = H.Cyrus("chk", users={USER: PW})
    try:
        C.start()       # skips the whole file if Cyrus is not installed
        c = C.imap(C.admin[0], C.admin[1], authzid=USER)
        for name, use in SPECIAL.items():
            # RFC 6154 CREATE-SPECIAL-USE; plain CREATE if refused
            typ, _ = c._simple_command("CREATE", name, f"(USE ({use}))")
            if typ != "OK":
                c.create(name)
        c.logout()
        C.load_corpus(USER, rows)
        yield
    finally:
        C.stop()
        if not H.KEEP:
            shutil.rmtree(TMP, ignore_errors=True)


def env():
    return {"IMAPFERRY_SRC_PASSWORD": PW, "IMAPFERRY_DST_PASSWORD": PW}


def src_url():
    return C.url(USER)


def check(dst, *args):
    p = H.run_ferry(["check", "--json", *args, src_url(), dst], env=env())
    assert p.returncode in (0, 1), H.describe(p)
    return p, json.loads(p.stdout)


def by_code(report, code):
    return [f for f in report["findings"] if f["code"] == code]


def cyrus_folders():
    """{UTF-8 name: {...}} as Cyrus shows them (imaplib)."""
    c = C.imap(USER, PW)
    try:
        return H.oracle_folders(c, with_size=False)
    finally:
        c.logout()


# -------------------------------------------------------------------- tests

def test_a_default_dovecot_target():
    with H.Dovecot("chkd", users={USER: PW}, ssl=False) as d:
        p, r = check(d.url(USER, query="?tls=none"))
        assert p.returncode == 1, H.describe(p)
        assert r["noticed"] is True and r["warnings"] >= 3, r
        uids = by_code(r, "uids")
        assert len(uids) == 1 and uids[0]["severity"] == "warning", r
        assert "INBOX" in uids[0]["folders"] and "INBOX.Sent" in uids[0]["folders"], uids
        src = cyrus_folders()
        assert uids[0]["messages"] == sum(e["messages"] for e in src.values()), uids
        assert set(uids[0]["folders"]) == {n for n, e in src.items() if e["selectable"]}, uids
        assert "maildir:" in uids[0]["remedy"], uids
        ns = by_code(r, "namespace")
        assert len(ns) == 1 and ns[0]["severity"] == "warning", r
        assert "INBOX.Sent -> Sent" in ns[0]["folders"], ns
        assert "dovecot-config" in ns[0]["remedy"], ns
        su = by_code(r, "special-use")
        assert len(su) == 1 and su[0]["severity"] == "warning", r
        shown = " ".join(su[0]["folders"])
        for name, use in SPECIAL.items():
            assert f"{name} ({use}" in shown, su
        # no folder renamed or refused, no APPENDLIMIT (Dovecot has none)
        assert not by_code(r, "name") and not by_code(r, "appendlimit"), r
        # the text form says the same, with the remedies
        q = H.run_ferry(["check", src_url(), d.url(USER, query="?tls=none")], env=env())
        assert q.returncode == 1, H.describe(q)
        assert re.search(r"^warning +uids: ", q.stdout, re.M), q.stdout
        assert "remedy: " in q.stdout and "clients will notice the switch" in q.stdout, q.stdout


def test_b_maildir_target_nothing_noticed():
    md = os.path.join(TMP, "b", "Maildir")
    p, r = check("maildir:" + md)
    assert not by_code(r, "uids"), r
    assert p.returncode == 0 and r["noticed"] is False, H.describe(p)
    assert r["errors"] == 0 and r["warnings"] == 0, r
    ns = by_code(r, "namespace")
    assert ns and ns[0]["severity"] == "info" and "dovecot-config" in ns[0]["remedy"], r
    assert 'prefix "INBOX."' in ns[0]["summary"], ns
    su = by_code(r, "special-use")
    assert su and su[0]["severity"] == "info", r
    assert not os.path.exists(md), "check must not create the target"
    # a Courier Maildir shows INBOX. and '.' as Cyrus does: no namespace finding
    p, r = check("maildir:" + md + "?flavor=courier")
    assert not by_code(r, "namespace") and not by_code(r, "uids"), r
    assert p.returncode == 0, H.describe(p)


def test_c_dovecot_config_serves_cyrus_names():
    if not shutil.which("mbsync"):
        H.skip("mbsync (isync) is not installed")
    p = H.run_ferry(["dovecot-config", src_url()], password=PW)
    assert p.returncode == 0, H.describe(p)
    conf = p.stdout
    assert "prefix = INBOX.\n" in conf and "separator = .\n" in conf, conf
    assert "inbox = yes" in conf and "pop3_uidl_format" in conf, conf
    for name, use in SPECIAL.items():
        assert f'mailbox "{name[len("INBOX."):]}" {{\n    special_use = {use}' in conf, conf
    want = set(cyrus_folders())
    mb = Mbsync(os.path.join(TMP, "mb"))
    r = mb.run(C.host, C.port)
    assert r.returncode == 0, r.stdout
    before = mb.cache()
    assert sum(len(v) for v in before[0].values()) == sum(
        e["messages"] for e in cyrus_folders().values()), before[0]
    with H.Dovecot("chkc", users={USER: PW}, ssl=False, extra_conf=conf) as d:
        q = H.run_ferry(["copy", "--owner", "mail:mail", "--state",
                         os.path.join(TMP, "c.db"), src_url(), "maildir:" + d.maildir(USER)],
                        env=env())
        assert q.returncode == 0, H.describe(q)
        ls = H.run_ferry(["ls", "--json", d.url(USER, query="?tls=none")], password=PW)
        assert ls.returncode == 0, H.describe(ls)
        info = json.loads(ls.stdout)
        got = {f["name"]: f for f in info["folders"]}
        assert set(got) == want, (sorted(got), sorted(want))
        for name, use in SPECIAL.items():
            assert got[name]["special_use"] == use, got[name]
        assert info["separator"] == ".", info
        # an mbsync set up for Cyrus, only host and port changed: no download
        r = mb.run(d.host, d.port)
        after = mb.cache()
        bad = [ln for ln in r.stdout.splitlines()
               if MBSYNC_BAD.search(ln) and "sent in the clear" not in ln]
        assert r.returncode == 0 and not bad, r.stdout
        assert after[0] == before[0], ("mbsync downloaded again", before[0], after[0])
        assert after[1] == before[1], "mbsync's sync state changed:\n" + r.stdout
        # and check against that Maildir says nothing is noticed
        p2, rep = check("maildir:" + d.maildir(USER))
        assert p2.returncode == 0 and not by_code(rep, "uids"), rep


def test_d_exit_status():
    # nothing listens on this port: could not connect
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    p = H.run_ferry(["check", src_url(), f"imap://{USER}@127.0.0.1:{port}?tls=none"],
                    env=env())
    assert p.returncode == 3, H.describe(p)
    p = H.run_ferry(["check", src_url()], env=env())
    assert p.returncode == 2, H.describe(p)
    p = H.run_ferry(["dovecot-config", f"imap://{USER}@127.0.0.1:{port}?tls=none"],
                    password=PW)
    assert p.returncode == 3, H.describe(p)
    for cmd in ("check", "dovecot-config"):
        p = H.run_ferry([cmd, "--help"])
        assert p.returncode == 0 and "usage: imapferry " + cmd in p.stdout, H.describe(p)


# --------------------------------------------------------------------------
# mbsync as a caching client (as in test_maildir_target.py)

MBSYNC_BAD = re.compile(r"UIDVALIDITY|Maildir error|Error|cannot|unexpected", re.I)


class Mbsync:
    def __init__(self, d):
        self.d = d
        os.makedirs(os.path.join(d, "near"))
        os.makedirs(os.path.join(d, "state"))

    def run(self, host, port):
        rc = os.path.join(self.d, "mbsyncrc")
        with open(rc, "w") as f:
            f.write(f"""IMAPAccount acc
Host {host}
Port {port}
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
        files = {}
        for root, _dirs, names in os.walk(os.path.join(self.d, "near")):
            if os.path.basename(root) in ("cur", "new"):
                folder = os.path.relpath(os.path.dirname(root), os.path.join(self.d, "near"))
                files.setdefault(folder, []).extend(n.split(":")[0] for n in names)
        state = {}
        for root, _dirs, names in os.walk(os.path.join(self.d, "state")):
            for n in names:
                with open(os.path.join(root, n)) as f:
                    state[os.path.relpath(os.path.join(root, n), self.d)] = f.read()
        return {k: sorted(v) for k, v in files.items()}, state


if __name__ == "__main__":
    H.run_tests(setup=setup)
