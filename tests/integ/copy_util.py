"""Helpers shared by test_copy*.py (Python standard library only).

The oracle is imaplib: snapshot() reads every folder of an account with
BODY.PEEK[] / FLAGS / INTERNALDATE and hashes each message, so two
snapshots can be compared message by message, never trusting imapferry's
own output.
"""

import hashlib
import imaplib
import json
import os
import re
import signal
import subprocess
import time

import harness as H

imaplib._MAXLINE = 10_000_000       # long FETCH lines of big flag lists

REAL_DIR = os.path.join(os.path.dirname(os.path.abspath(H.SRC)), "shared", "corpus", "real")


def real_messages():
    """Paths of every message file under shared/corpus/real (recursively),
    sorted; the .tsv/.md metadata files are not messages."""
    out = []
    for root, _dirs, files in os.walk(REAL_DIR):
        for n in files:
            if n.endswith((".tsv", ".md")):
                continue
            out.append(os.path.join(root, n))
    out.sort()
    return out


def write_maildir_folder(server, user, folder_fs, paths, t0=1_100_000_000):
    """Write message files straight into user's Maildir++ folder
    (folder_fs: the on-disk name, e.g. ".Real"; "" for INBOX) before (or
    while) Dovecot serves it: cur/<time>.M<n>P1.ferrytest,S=<size>:2, with
    mtime = INTERNALDATE. Returns [(path, internaldate)] in name order,
    which is the UID order Dovecot assigns."""
    md = server.maildir(user)
    base = os.path.join(md, folder_fs) if folder_fs else md
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    out = []
    for i, p in enumerate(paths):
        st = os.stat(p)
        when = t0 + i * 61
        name = f"{when}.M{i:06d}P1.ferrytest,S={st.st_size}:2,"
        dst = os.path.join(base, "cur", name)
        with open(p, "rb") as f, open(dst, "wb") as g:
            g.write(f.read())
        os.utime(dst, (when, when))
        out.append((p, when))
    H.chown_tree(os.path.join(server.data_dir, user), H.MAIL_UID, H.MAIL_GID)
    return out


# --------------------------------------------------------------------------
# imaplib oracle

_UID = re.compile(rb"UID (\d+)")
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
_IDATE = re.compile(rb'INTERNALDATE "([^"]+)"')
_MSGID = re.compile(rb"^message-id:\s*(\S+)", re.I | re.M)


def quote(name):
    return H._quote(name)


def folders(conn):
    """{raw name: attributes} of the selectable folders."""
    typ, data = conn.list('""', "*")
    assert typ == "OK", data
    out = {}
    for attrs, _delim, raw in H.parse_list_response(data):
        low = [a.lower() for a in attrs]
        if "\\noselect" in low or "\\nonexistent" in low:
            continue
        out[raw] = attrs
    return out


def subscriptions(conn):
    typ, data = conn.lsub('""', "*")
    assert typ == "OK", data
    return sorted(raw for _a, _d, raw in H.parse_list_response(data))


def fetch_folder(conn, raw, body=True):
    """[{uid, sha, flags (sorted tuple), idate (epoch), size, msgid}] of one
    folder, sorted by UID."""
    typ, data = conn.select(quote(raw), readonly=True)
    assert typ == "OK", (raw, data)
    n = int(data[0])
    if n == 0:
        conn.close()
        return []
    items = "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])" if body else \
        "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"
    typ, data = conn.fetch("1:*", items)
    assert typ == "OK", (raw, data)
    out = []
    for j, d in enumerate(data):
        if not isinstance(d, tuple):
            continue
        head, lit = d[0], d[1]
        # items after the literal (Cyrus sends UID last) come as the next bytes
        if j + 1 < len(data) and isinstance(data[j + 1], bytes):
            head = head + b" " + data[j + 1]
        m = _UID.search(head)
        if m is None:
            continue
        fl = _FLAGS.search(head)
        flags = tuple(sorted(f.decode() for f in fl.group(1).split())) if fl else ()
        flags = tuple(f for f in flags if f != "\\Recent")
        idate = time.mktime(imaplib.Internaldate2tuple(b'INTERNALDATE "'
                                                       + _IDATE.search(head).group(1) + b'"'))
        mid = _MSGID.search(re.split(rb"\r?\n\r?\n", lit, 1)[0])
        out.append({
            "uid": int(m.group(1)),
            "sha": hashlib.sha256(lit).hexdigest() if body else None,
            "flags": flags,
            "idate": int(idate),
            "size": int(re.search(rb"RFC822\.SIZE (\d+)", head).group(1)),
            "msgid": mid.group(1).decode("utf-8", "replace") if mid else None,
        })
    conn.close()
    out.sort(key=lambda x: x["uid"])
    return out


def snapshot(server, user, password, body=True, only=None):
    """{raw folder name: fetch_folder()} for every selectable folder."""
    c = server.imap(user, password)
    try:
        return {raw: fetch_folder(c, raw, body)
                for raw in folders(c) if only is None or raw in only}
    finally:
        c.logout()


def compare_folder(name, src, dst, body=True):
    """Asserts the two message lists are equal in UID order: count, body
    SHA-256, flags, INTERNALDATE, size. Returns the number compared."""
    assert len(src) == len(dst), \
        f"{name}: {len(src)} messages on the source, {len(dst)} on the target"
    for i, (s, d) in enumerate(zip(src, dst)):
        where = f"{name} #{i + 1} (src UID {s['uid']}, dst UID {d['uid']}, {s['msgid']})"
        if body:
            assert s["sha"] == d["sha"], f"{where}: body differs"
        assert s["size"] == d["size"], f"{where}: size {s['size']} != {d['size']}"
        assert s["flags"] == d["flags"], f"{where}: flags {s['flags']} != {d['flags']}"
        assert s["idate"] == d["idate"], f"{where}: INTERNALDATE {s['idate']} != {d['idate']}"
    return len(src)


def compare_snapshots(src, dst, mapping=None, body=True, ignore=()):
    """Every source folder (mapped through mapping: src raw -> dst raw) has
    an identical target folder. Returns the number of messages compared."""
    n = 0
    for raw, msgs in src.items():
        if raw in ignore:
            continue
        target = (mapping or {}).get(raw, raw)
        assert target in dst, f"folder {raw} -> {target} missing on the target " \
                              f"(target has {sorted(dst)})"
        n += compare_folder(f"{raw} -> {target}", msgs, dst[target], body)
    return n


def msgid_dupes(msgs):
    """Message-IDs that occur more than once in a folder listing."""
    seen, dup = set(), set()
    for m in msgs:
        k = m["msgid"] or f"sha:{m['sha']}"
        if k in seen:
            dup.add(k)
        seen.add(k)
    return dup


def multiset(msgs):
    """Sorted (sha, flags, idate) of a folder: order-independent equality."""
    return sorted((m["sha"], m["flags"], m["idate"]) for m in msgs)


# --------------------------------------------------------------------------
# Running imapferry

class Pair:
    """A source and a target account, with the ferry arguments to copy
    between them."""

    def __init__(self, src, suser, spw, dst, duser, dpw, state):
        self.src, self.suser, self.spw = src, suser, spw
        self.dst, self.duser, self.dpw = dst, duser, dpw
        self.state = state

    def urls(self):
        return [self.src.url(self.suser, query="?tls=none"),
                self.dst.url(self.duser, query="?tls=none")]

    def env(self):
        return {"IMAPFERRY_SRC_PASSWORD": self.spw, "IMAPFERRY_DST_PASSWORD": self.dpw}

    def args(self, cmd, *opts, state=None):
        st = state if state is not None else self.state
        return [cmd, *(["--state", st] if st else []), *opts, *self.urls()]

    def copy(self, *opts, state=None, expect=0, timeout=600):
        p = H.run_ferry(self.args("copy", "--json", *opts, state=state), env=self.env(),
                        timeout=timeout)
        if expect is not None:
            assert p.returncode == expect, H.describe(p)
        return p, summary(p)

    def verify(self, *opts, state=None, expect=None, timeout=600):
        p = H.run_ferry(self.args("verify", "--json", *opts, state=state), env=self.env(),
                        timeout=timeout)
        assert p.returncode in (0, 1), H.describe(p)
        try:
            j = json.loads(p.stdout)
        except json.JSONDecodeError as e:
            raise AssertionError(f"verify --json is not JSON: {e}\n{H.describe(p)}")
        assert (p.returncode == 0) == (j["differences"] == 0), H.describe(p)
        if expect is not None:
            assert p.returncode == expect, H.describe(p)
        return p, j

    def spawn_copy(self, *opts, state=None):
        """Starts a copy in the background; returns the Popen (stdout/stderr
        to files in the state's directory)."""
        e = dict(os.environ)
        e.update(self.env())
        st = state if state is not None else self.state
        out = open(st + ".out", "wb")
        err = open(st + ".err", "wb")
        p = subprocess.Popen([H.BIN, *self.args("copy", "--json", *opts, state=state)],
                             env=e, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        out.close()
        err.close()
        p.out_path, p.err_path = st + ".out", st + ".err"
        return p


def summary(p):
    """The --json summary of a copy run (the last line of stdout)."""
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    assert lines, "copy printed no summary\n" + H.describe(p)
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError as e:
        raise AssertionError(f"copy --json summary is not JSON: {e}\n{H.describe(p)}")


def diff_kinds(j):
    return sorted({d["kind"] for d in j["diffs"]})


def kill9(p):
    try:
        os.kill(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()


def status_messages(server, user, password, raw):
    c = server.imap(user, password)
    try:
        typ, data = c.status(quote(raw), "(MESSAGES)")
        if typ != "OK":
            return 0
        return int(re.search(rb"MESSAGES (\d+)", data[0]).group(1))
    finally:
        c.logout()


def append(conn, raw, body, flags="", date=None):
    typ, data = conn.append(quote(raw), f"({flags})" if flags is not None else None,
                            date, body)
    assert typ == "OK", (raw, data)
    return data


def make_message(i, tag="new", size=0, extra_headers=""):
    """A small RFC 5322 message with a unique Message-ID (CRLF)."""
    body = f"body of {tag} message {i}\r\n" + ("x" * 70 + "\r\n") * (size // 72)
    return (f"From: Sender {i} <s{i}@example.org>\r\n"
            f"To: rcpt@example.net\r\n"
            f"Subject: {tag} message {i}\r\n"
            f"Date: Mon, 1 Jan 2024 10:{i % 60:02d}:00 +0000\r\n"
            f"Message-ID: <{tag}.{i}@ferry.test>\r\n"
            f"{extra_headers}"
            f"\r\n{body}").encode()


class RawImap:
    """A minimal byte-exact IMAP client for APPEND: imaplib rewrites every
    bare CR and LF of an APPENDed message to CRLF, so it cannot serve as
    the oracle for what a server makes of exact bytes."""

    def __init__(self, server, user, password):
        import socket
        self.s = socket.create_connection((server.host, server.port), timeout=30)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.s.makefile("rb")
        self.n = 0
        self.f.readline()
        ok, text = self.command(f"LOGIN {quote(user)} {quote(password)}".encode())
        assert ok, text

    def _tag(self):
        self.n += 1
        return f"R{self.n}".encode()

    def _wait(self, tag):
        while True:
            line = self.f.readline()
            if not line:
                raise ConnectionError("server closed the connection")
            if line.startswith(tag + b" "):
                rest = line[len(tag) + 1:].decode("utf-8", "replace").rstrip("\r\n")
                return rest.startswith("OK"), rest

    def command(self, cmd):
        tag = self._tag()
        self.s.sendall(tag + b" " + cmd + b"\r\n")
        return self._wait(tag)

    def append(self, folder, body, flags="", date=None):
        """APPEND with a synchronizing literal; returns (ok, tagged text)."""
        tag = self._tag()
        d = f' "{date}"' if date else ""
        self.s.sendall(tag + f" APPEND {quote(folder)} ({flags}){d} {{{len(body)}}}\r\n".encode())
        while True:
            line = self.f.readline()
            if not line:
                raise ConnectionError("server closed the connection")
            if line.startswith(b"+"):
                break
            if line.startswith(tag + b" "):     # refused before the literal
                rest = line[len(tag) + 1:].decode("utf-8", "replace").rstrip("\r\n")
                return False, rest
        self.s.sendall(body + b"\r\n")
        return self._wait(tag)

    def logout(self):
        try:
            self.command(b"LOGOUT")
        except OSError:
            pass
        self.s.close()


def restart_dovecot(server, down_seconds):
    """Stops a running harness Dovecot (master and all its sessions) and
    starts it again after down_seconds on the same ports and data; the
    harness's stop() would delete its directory."""
    H.stop_pid(server.pid)
    try:
        os.unlink(server.pid_path)
    except FileNotFoundError:
        pass
    time.sleep(down_seconds)
    subprocess.run(["dovecot", "-c", server.conf_path], check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            with open(server.pid_path) as f:
                server.pid = int(f.read().split()[0])
            break
        except (FileNotFoundError, ValueError, IndexError):
            assert time.monotonic() < deadline, "dovecot did not restart"
            time.sleep(0.02)
    server._wait_ready(20, lambda: H.proc_alive(server.pid))
