"""Helpers for test_maildir_target.py and test_hostile_names.py (standard
library only).

- write_source_maildir(): a hand-made Dovecot Maildir++ (dovecot-uidlist
  with chosen UIDVALIDITY/UIDNEXT/UIDs, dovecot-keywords, subscriptions)
  written before the source Dovecot first opens it;
- snapshot(): what a real server reports per folder through imaplib
  (UIDVALIDITY, UIDNEXT, and per UID: flags, INTERNALDATE, RFC822.SIZE,
  SHA-256 of BODY[]); compare_snapshots() asserts two are identical;
- pop3_uidls(), lsub(), dovecot_log_problems(), maildir file counts,
  tree_snapshot() for "nothing outside this directory changed" checks;
- ferry_maildir(): runs `imapferry copy SRC maildir:PATH`.

The oracle is always a real server (imaplib/poplib) or the file system,
never imapferry's own report.
"""

import datetime
import hashlib
import imaplib
import json
import os
import poplib
import re
import stat

import harness as H

imaplib._MAXLINE = 10_000_000

DOVECOT_LOG_BAD = ("UIDs not ordered", "renumber", "Expunged message reappeared",
                   "wrong W value", "UIDVALIDITY changed", "Broken file", "Corrupted",
                   "Panic", "Fatal", "Error:", "Warning:")

SYS_LETTERS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S",
               "\\Deleted": "T"}


# --------------------------------------------------------------------------
# Hand-written Dovecot Maildir (the source)

def make_body(folder, uid, crlf, extra=b""):
    """A small deterministic message; LF or CRLF line ends."""
    h = hashlib.sha256(f"{folder}/{uid}".encode()).hexdigest()
    lines = [f"From: Sender {uid} <s{uid}@example.org>",
             "To: alice@example.org",
             f"Subject: =?utf-8?q?caf=C3=A9?= {folder} uid {uid}",
             f"Message-ID: <{h[:16]}.{uid}@ferry.test>",
             "Date: Tue, 01 Jan 2019 10:00:00 +0000",
             "MIME-Version: 1.0",
             "Content-Type: text/plain; charset=utf-8",
             "",
             f"Body of {folder} {uid}.",
             "x" * (uid % 97),
             h,
             ""]
    sep = "\r\n" if crlf else "\n"
    return sep.join(lines).encode() + extra


def vsize(data):
    return len(data) + data.count(b"\n") - data.count(b"\r\n")


def folder_dirname(name):
    """IMAP name ("A/B", UTF-8) -> Maildir++ directory ("" for INBOX)."""
    if name == "INBOX":
        return ""
    return "." + ".".join(H.mutf7_encode(c) for c in name.split("/"))


def write_source_maildir(root, folders, subscriptions=(), owner=(H.MAIL_UID, H.MAIL_GID),
                         host="srchost"):
    """Writes a Dovecot Maildir++ by hand.

    folders: [{"name": "A/B" (UTF-8, "/" levels), "uidvalidity": v,
               "uidnext": n, "keywords": {index: name},
               "msgs": [{"uid", "letters" (e.g. "FSab"), "idate", "data",
                         "w_in_name" (bool), "w_in_ext" (bool)}]}]
    subscriptions: IMAP names ("A/B") for the V2 subscriptions file.
    host: the host part of the file names (Dovecot's "%f" POP3 UIDLs).
    """
    os.makedirs(root, exist_ok=True)
    for fo in folders:
        d = os.path.join(root, folder_dirname(fo["name"])) if fo["name"] != "INBOX" else root
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        if fo["name"] != "INBOX":
            open(os.path.join(d, "maildirfolder"), "wb").close()
        lines = [f"3 V{fo['uidvalidity']} N{fo['uidnext']}"]
        for m in sorted(fo["msgs"], key=lambda x: x["uid"]):
            data = m["data"]
            base = f"{m['idate']}.M{m['uid']}P4242.{host},S={len(data)}"
            ext = ""
            if m.get("w_in_name"):
                base += f",W={vsize(data)}"
            elif m.get("w_in_ext"):
                ext = f"W{vsize(data)} "
            path = os.path.join(d, "cur", f"{base}:2,{''.join(sorted(m.get('letters', '')))}")
            with open(path, "wb") as f:
                f.write(data)
            os.utime(path, (m["idate"], m["idate"]))
            lines.append(f"{m['uid']} {ext}:{base}")
        with open(os.path.join(d, "dovecot-uidlist"), "w") as f:
            f.write("\n".join(lines) + "\n")
        if fo.get("keywords"):
            with open(os.path.join(d, "dovecot-keywords"), "w") as f:
                for i, k in sorted(fo["keywords"].items()):
                    f.write(f"{i} {k}\n")
    if subscriptions:
        with open(os.path.join(root, "subscriptions"), "w") as f:
            f.write("V\t2\n\n")
            for s in subscriptions:
                f.write("\t".join(H.mutf7_encode(c) for c in s.split("/")) + "\n")
    if owner:
        H.chown_tree(os.path.dirname(root), *owner)


# --------------------------------------------------------------------------
# imaplib oracle

_UID = re.compile(rb"UID (\d+)")
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
_IDATE = re.compile(rb'INTERNALDATE "([^"]+)"')
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


def quote(name):
    return H._quote(name)


def idate_epoch(s):
    return int(datetime.datetime.strptime(s.decode().strip(), "%d-%b-%Y %H:%M:%S %z")
               .timestamp())


def selectable(conn):
    typ, data = conn.list('""', "*")
    assert typ == "OK", data
    out = []
    for attrs, _d, raw in H.parse_list_response(data):
        low = [a.lower() for a in attrs]
        if "\\noselect" not in low and "\\nonexistent" not in low:
            out.append(raw)
    return sorted(out)


def parse_fetch(data, body=True):
    """imaplib FETCH data -> {uid: {"flags", "idate", "size", "sha"}}."""
    out = {}
    for j, d in enumerate(data):
        if isinstance(d, tuple):
            head, lit = d[0], d[1]
            if j + 1 < len(data) and isinstance(data[j + 1], bytes):
                head = head + b" " + data[j + 1]
        elif isinstance(d, bytes) and not body and _UID.search(d):
            head, lit = d, None
        else:
            continue
        m = _UID.search(head)
        if m is None:
            continue
        e = {}
        fl = _FLAGS.search(head)
        if fl:
            e["flags"] = tuple(sorted(f.decode() for f in fl.group(1).split()
                                      if f.lower() != b"\\recent"))
        im = _IDATE.search(head)
        if im:
            e["idate"] = idate_epoch(im.group(1))
        sm = _SIZE.search(head)
        if sm:
            e["size"] = int(sm.group(1))
        if lit is not None and body:
            e["sha"] = hashlib.sha256(lit).hexdigest()
        out[int(m.group(1))] = e
    return out


def status(conn, raw):
    typ, data = conn.status(quote(raw), "(UIDVALIDITY UIDNEXT MESSAGES)")
    assert typ == "OK", (raw, data)
    s = data[0]
    return {k: int(re.search(k.encode() + rb" (\d+)", s).group(1))
            for k in ("UIDVALIDITY", "UIDNEXT", "MESSAGES")}


def folder_snapshot(conn, raw, body=True):
    typ, data = conn.select(quote(raw), readonly=True)
    assert typ == "OK", (raw, data)
    uv = conn.untagged_responses.get("UIDVALIDITY", [None])[0]
    un = conn.untagged_responses.get("UIDNEXT", [None])[0]
    exists = int(data[0])
    msgs = {}
    if exists:
        items = ("(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])" if body
                 else "(UID FLAGS INTERNALDATE RFC822.SIZE)")
        typ, fd = conn.uid("FETCH", "1:*", items)
        assert typ == "OK", (raw, fd)
        msgs = parse_fetch(fd, body)
    conn.close()
    st = status(conn, raw)
    assert uv is None or int(uv) == st["UIDVALIDITY"], (raw, uv, st)
    assert un is None or int(un) == st["UIDNEXT"], (raw, un, st)
    assert len(msgs) == exists, f"{raw}: EXISTS {exists} but FETCH returned {len(msgs)}"
    return {"uidvalidity": st["UIDVALIDITY"], "uidnext": st["UIDNEXT"], "msgs": msgs}


def snapshot(server, user, password, body=True):
    """{raw folder name: folder_snapshot()} of every selectable folder."""
    c = server.imap(user, password)
    try:
        return {raw: folder_snapshot(c, raw, body) for raw in selectable(c)}
    finally:
        c.logout()


def lsub(server, user, password):
    c = server.imap(user, password)
    try:
        typ, data = c.lsub('""', "*")
        assert typ == "OK", data
        return sorted(raw for _a, _d, raw in H.parse_list_response(data))
    finally:
        c.logout()


def compare_snapshots(src, dst, ignore=()):
    """Asserts: same folders; per folder same UIDVALIDITY, UIDNEXT, UID set,
    and per UID the same flags (keywords included), INTERNALDATE, size,
    body hash. Returns the number of messages compared."""
    sf = sorted(k for k in src if k not in ignore)
    df = sorted(k for k in dst if k not in ignore)
    assert sf == df, f"folders differ: source {sf}, target {df}"
    n = 0
    for name in sf:
        s, d = src[name], dst[name]
        assert s["uidvalidity"] == d["uidvalidity"], \
            f"{name}: UIDVALIDITY source {s['uidvalidity']} target {d['uidvalidity']}"
        assert s["uidnext"] == d["uidnext"], \
            f"{name}: UIDNEXT source {s['uidnext']} target {d['uidnext']}"
        assert sorted(s["msgs"]) == sorted(d["msgs"]), \
            f"{name}: UIDs source {sorted(s['msgs'])} target {sorted(d['msgs'])}"
        for uid, sm in s["msgs"].items():
            dm = d["msgs"][uid]
            for k in ("flags", "idate", "size", "sha"):
                assert sm.get(k) == dm.get(k), \
                    f"{name} UID {uid}: {k} source {sm.get(k)!r} target {dm.get(k)!r}"
            n += 1
    return n


# --------------------------------------------------------------------------
# POP3, logs, files

def pop3_uidls(server, user, password):
    """[(msg number, uidl)] as the server's POP3 reports them."""
    p = poplib.POP3(server.host, server.pop3_port, timeout=30)
    try:
        p.user(user)
        p.pass_(password)
        _resp, lines, _ = p.uidl()
        return [tuple(x.decode().split(" ", 1)) for x in lines]
    finally:
        p.quit()


def dovecot_log_problems(server, extra=()):
    """Lines of the server's dovecot.log that show a broken uidlist/file."""
    if not os.path.exists(server.log_path):
        return []
    with open(server.log_path, "rb") as f:
        text = f.read().decode("utf-8", "replace")
    return [ln for ln in text.splitlines()
            if any(b.lower() in ln.lower() for b in DOVECOT_LOG_BAD + tuple(extra))]


def maildir_folders(root):
    """{dirname ("" = INBOX): path} of the Maildir++ folders under root."""
    out = {}
    if os.path.isdir(os.path.join(root, "cur")):
        out[""] = root
    for n in sorted(os.listdir(root)):
        p = os.path.join(root, n)
        if n.startswith(".") and not os.path.islink(p) and os.path.isdir(os.path.join(p, "cur")):
            out[n] = p
    return out


def message_files(folder_path):
    """Names of the message files in cur/ and new/."""
    out = []
    for sub in ("cur", "new"):
        d = os.path.join(folder_path, sub)
        if os.path.isdir(d):
            out += [f"{sub}/{n}" for n in os.listdir(d) if not n.startswith(".")]
    return sorted(out)


def read_uidlist(folder_path):
    """(header dict, [(uid, ext, base)]) of a dovecot-uidlist."""
    with open(os.path.join(folder_path, "dovecot-uidlist")) as f:
        lines = f.read().splitlines()
    hdr = {}
    for tok in lines[0].split()[1:]:
        hdr[tok[0]] = tok[1:]
    recs = []
    for ln in lines[1:]:
        if not ln:
            continue
        head, _, base = ln.partition(":")
        parts = head.split()
        recs.append((int(parts[0]), parts[1:], base))
    return hdr, recs


def tree_snapshot(path):
    """{relative path: (type, mode, uid, gid, size, mtime_ns, link target,
    sha256 of content)} of everything under path (symlinks not followed)."""
    out = {}
    if not os.path.lexists(path):
        return out
    for root, dirs, files in os.walk(path, followlinks=False):
        for n in dirs + files + ([] if root != path else []):
            p = os.path.join(root, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, path)
            target = os.readlink(p) if stat.S_ISLNK(st.st_mode) else None
            digest = None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                        st.st_gid, st.st_size if not stat.S_ISDIR(st.st_mode) else 0,
                        st.st_mtime_ns if not stat.S_ISDIR(st.st_mode) else 0,
                        target, digest)
    st = os.lstat(path)
    out["."] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    return out


def tree_diff(before, after):
    """Human-readable differences between two tree_snapshot()s."""
    diff = []
    for k in sorted(set(before) | set(after)):
        if k not in after:
            diff.append(f"removed: {k}")
        elif k not in before:
            diff.append(f"created: {k} {after[k]}")
        elif before[k] != after[k]:
            diff.append(f"changed: {k} {before[k]} -> {after[k]}")
    return diff


# --------------------------------------------------------------------------
# Running imapferry

def ferry_maildir(src_url, password, target, *opts, state=None, flavor=None,
                  owner="mail:mail", src_pop3=None, timeout=300):
    """imapferry copy SRC maildir:TARGET; returns the CompletedProcess."""
    dst = f"maildir:{target}" + (f"?flavor={flavor}" if flavor else "")
    args = ["copy", "--json"]
    if state:
        args += ["--state", state]
    if owner:
        args += ["--owner", owner]
    if src_pop3:
        args += ["--src-pop3", src_pop3]
    args += list(opts) + [src_url, dst]
    return H.run_ferry(args, env={"IMAPFERRY_SRC_PASSWORD": password}, timeout=timeout)


def summary(p):
    lines = [ln for ln in p.stdout.splitlines() if ln.strip().startswith("{")]
    assert lines, "copy printed no JSON summary\n" + H.describe(p)
    return json.loads(lines[-1])
