#!/usr/bin/env python3
"""Fidelity defects found by trying imapferry as a new user would (issue
"nothing a client notices"), each reproduced against real servers.

1. --delete-missing misses expunges an earlier run saw: run 1 without the
   option after an expunge on the source, run 2 with it and the same state:
   the stale copies must be expunged (the folder's sync point had moved on
   in run 1, so run 2 skipped the folder as unchanged). Both targets.
"""

import json
import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import copy_util as U  # noqa: E402

PW = "fid-pw"


def fill(s, folders):
    c = s.imap("alice", PW)
    for folder, count in folders.items():
        if folder != "INBOX":
            assert c.create(folder)[0] == "OK"
        for i in range(count):
            U.append(c, folder, U.make_message(i, tag=folder))
    c.logout()


def expunge(s, folder, uids):
    c = s.imap("alice", PW)
    assert c.select(folder)[0] == "OK"
    for u in uids:
        assert c.uid("STORE", str(u), "+FLAGS.SILENT", "(\\Deleted)")[0] == "OK"
        assert c.uid("EXPUNGE", str(u))[0] == "OK"
    c.logout()


def count(server, folder):
    c = server.imap("alice", PW)
    typ, data = c.status(folder, "(MESSAGES)")
    c.logout()
    assert typ == "OK", data
    return int(re.search(rb"MESSAGES (\d+)", data[0]).group(1))


def ferry(args):
    return H.run_ferry(args, env={"IMAPFERRY_SRC_PASSWORD": PW,
                                  "IMAPFERRY_DST_PASSWORD": PW})


def _delete_missing_after_earlier_run(maildir):
    tmp = tempfile.mkdtemp(prefix="ife-fid-")
    state = os.path.join(tmp, "st.db")
    try:
        with H.Dovecot("fsrc", users={"alice": PW}, ssl=False) as s, \
                H.Dovecot("fdst", users={"alice": PW}, ssl=False) as d:
            fill(s, {"INBOX": 5, "Work": 12})
            src = s.url("alice", query="?tls=none")
            dst = (f"maildir:{d.maildir('alice')}" if maildir
                   else d.url("alice", query="?tls=none"))
            base = ["copy", "--json", "--state", state] + (
                ["--owner", "mail:mail"] if maildir else [])
            p = ferry(base + [src, dst])
            assert p.returncode == 0, H.describe(p)
            assert count(d, "Work") == 12
            expunge(s, "Work", [2, 3, 7])
            # run 1 after the expunge, without --delete-missing: keeps them
            p = ferry(base + [src, dst])
            assert p.returncode == 0, H.describe(p)
            assert U.summary(p)["expunged"] == 0, H.describe(p)
            assert count(d, "Work") == 12
            # run 2 with --delete-missing and the same state: expunges them
            # although nothing changed on the source since run 1
            p = ferry(base + ["--delete-missing", src, dst])
            assert p.returncode == 0, H.describe(p)
            assert U.summary(p)["expunged"] == 3, H.describe(p)
            assert count(d, "Work") == 9
            assert count(d, "INBOX") == 5
            # and a third pass finds nothing more to do
            p = ferry(base + ["--delete-missing", src, dst])
            assert p.returncode == 0, H.describe(p)
            j = U.summary(p)
            assert j["expunged"] == 0 and j["copied"] == 0, H.describe(p)
            v = ferry(["verify", "--json", "--state", state, src, dst])
            assert v.returncode == 0, H.describe(v)
    finally:
        if not H.KEEP:
            shutil.rmtree(tmp, ignore_errors=True)


def test_delete_missing_after_earlier_run_imap():
    H.require_root()
    _delete_missing_after_earlier_run(maildir=False)


def test_delete_missing_after_earlier_run_maildir():
    H.require_root()
    _delete_missing_after_earlier_run(maildir=True)


def _odd_files(tmp):
    """Messages a target normalises: a final bare CR, no final CRLF, a
    future INTERNALDATE (the last one; t0 below puts it in 2035)."""
    paths = []
    for i, body in enumerate([
            b"Subject: bare CR\r\nMessage-ID: <cr@x>\r\n\r\nends with CR\r",
            b"Subject: no final CRLF\r\nMessage-ID: <nocrlf@x>\r\n\r\nno newline",
            b"Subject: plain\r\nMessage-ID: <plain@x>\r\n\r\nok\r\n"]):
        path = os.path.join(tmp, f"odd{i}.eml")
        with open(path, "wb") as f:
            f.write(body)
        paths.append(path)
    return paths


def test_fingerprints_survive_target_normalisation():
    """Without state, copies the target normalised (Dovecot drops a final
    bare CR and replaces a future INTERNALDATE by the APPEND time) are
    recognised: a second stateless run copies nothing again."""
    H.require_root()
    tmp = tempfile.mkdtemp(prefix="ife-fid-")
    try:
        with H.Dovecot("fnsrc", users={"alice": PW}, ssl=False) as s, \
                H.Dovecot("fndst", users={"alice": PW}, ssl=False) as d:
            paths = _odd_files(tmp)
            U.write_maildir_folder(s, "alice", ".Odd", paths[:2])
            # a future INTERNALDATE (2035)
            U.write_maildir_folder(s, "alice", ".Future", paths[2:], t0=2_060_000_000)
            src = s.url("alice", query="?tls=none")
            dst = d.url("alice", query="?tls=none")
            p = ferry(["copy", "--json", "--state", os.path.join(tmp, "1.db"), src, dst])
            assert p.returncode == 0, H.describe(p)
            assert U.summary(p)["copied"] == 3, H.describe(p)
            # the target really changed them (else this test proves nothing)
            c = d.imap("alice", PW)
            assert c.select("Future")[0] == "OK"
            typ, data = c.fetch("1", "(INTERNALDATE)")
            c.logout()
            assert b"2035" not in data[0], data
            # a new state: nothing is copied twice
            p = ferry(["copy", "--json", "--state", os.path.join(tmp, "2.db"), src, dst])
            assert p.returncode == 0, H.describe(p)
            j = U.summary(p)
            assert j["copied"] == 0 and j["skipped"] == 3, H.describe(p)
            assert count(d, "Odd") == 2 and count(d, "Future") == 1
    finally:
        if not H.KEEP:
            shutil.rmtree(tmp, ignore_errors=True)


def _lsub(server, maildir_target=None):
    c = server.imap("alice", PW)
    typ, data = c.lsub()
    c.logout()
    assert typ == "OK", data
    return sorted(re.search(rb'"([^"]*)"$|(\S+)$', x).group(1 if x.endswith(b'"') else 2)
                  .decode() for x in data if x)


def test_stale_subscriptions_are_copied():
    """A subscription to a folder that does not exist (common on old
    servers) is copied like the others into a Maildir (Dovecot and dsync
    keep them); an IMAP target that refuses it is reported."""
    H.require_root()
    tmp = tempfile.mkdtemp(prefix="ife-fid-")
    try:
        with H.Dovecot("fssrc", users={"alice": PW}, ssl=False) as s, \
                H.Dovecot("fsdst", users={"alice": PW, "bob": PW}, ssl=False) as d:
            fill(s, {"INBOX": 1, "Work": 1})
            # written as Dovecot keeps them (it refuses to SUBSCRIBE to a
            # folder that does not exist, but keeps such subscriptions)
            with open(os.path.join(s.maildir("alice"), "subscriptions"), "w") as f:
                f.write("V\t2\n\nWork\nGone\tOld\nGone\n")
            H.chown_tree(s.maildir("alice"), H.MAIL_UID, H.MAIL_GID)
            want = _lsub(s)
            assert "Gone" in want and "Gone/Old" in want and "Work" in want, want
            src = s.url("alice", query="?tls=none")
            p = ferry(["copy", "--json", "--state", os.path.join(tmp, "a.db"), src,
                       d.url("alice", query="?tls=none")])
            assert p.returncode == 0, H.describe(p)
            # Dovecot refuses SUBSCRIBE to a folder that does not exist:
            # what it takes is copied, the refusal is reported
            assert _lsub(d) == ["Work"], _lsub(d)
            assert "subscription" in p.stderr, H.describe(p)
            # into a Maildir that Dovecot (user bob) then serves
            p = ferry(["copy", "--json", "--owner", "mail:mail", "--state",
                       os.path.join(tmp, "b.db"), src, f"maildir:{d.maildir('bob')}"])
            assert p.returncode == 0, H.describe(p)
            c = d.imap("bob", PW)
            typ, data = c.lsub()
            c.logout()
            got = sorted(x.decode().rsplit(" ", 1)[-1].strip('"') for x in data if x)
            assert got == want, (got, want)
    finally:
        if not H.KEEP:
            shutil.rmtree(tmp, ignore_errors=True)


def test_well_known_keywords_keep_their_letters():
    """More than 26 keywords into a Dovecot Maildir: $Junk, seen last and
    on one message only, is kept; the least used custom keywords are the
    ones not kept (and named, exit 1); with --dst-imap all are kept."""
    H.require_root()
    tmp = tempfile.mkdtemp(prefix="ife-fid-")
    try:
        with H.Dovecot("fksrc", users={"alice": PW}, ssl=False) as s, \
                H.Dovecot("fkdst", users={"alice": PW, "bob": PW}, ssl=False) as d:
            kws = [f"Custom{i:02d}" for i in range(27)]
            c = s.imap("alice", PW)
            assert c.create("Tags")[0] == "OK"
            for i, k in enumerate(kws):
                # Custom00 and Custom01 on one message each, the others on two
                for rep in range(1 if i < 2 else 2):
                    U.append(c, "Tags", U.make_message(100 * rep + i, tag="Tags"),
                             flags=f"\\Seen {k}")
            U.append(c, "Tags", U.make_message(999, tag="Tags"), flags="$Junk")
            c.logout()
            src = s.url("alice", query="?tls=none")
            p = ferry(["copy", "--json", "--owner", "mail:mail", "--state",
                       os.path.join(tmp, "a.db"), src, f"maildir:{d.maildir('alice')}"])
            assert p.returncode == 1, H.describe(p)
            lost = set(re.findall(r"does not keep keyword (\S+): dropped", p.stderr))
            assert lost == {"Custom00", "Custom01"}, (lost, H.describe(p))
            c = d.imap("alice", PW)
            assert c.select("Tags")[0] == "OK"
            typ, data = c.uid("SEARCH", "KEYWORD", "$Junk")
            c.logout()
            assert typ == "OK" and len(data[0].split()) == 1, data
            # through the serving Dovecot, every keyword is kept
            p = H.run_ferry(["copy", "--json", "--owner", "mail:mail", "--state",
                             os.path.join(tmp, "b.db"), "--dst-imap",
                             f"imap://bob*{d.master[0]}@{d.host}:{d.port}?tls=none",
                             src, f"maildir:{d.maildir('bob')}"],
                            env={"IMAPFERRY_SRC_PASSWORD": PW,
                                 "IMAPFERRY_DST_PASSWORD": d.master[1]})
            p2 = p
            assert p.returncode == 0, H.describe(p)
            c = d.imap("bob", PW)
            assert c.select("Tags")[0] == "OK"
            for k in ("Custom00", "Custom01", "$Junk", "Custom26"):
                typ, data = c.uid("SEARCH", "KEYWORD", k)
                assert typ == "OK" and data[0].split(), (k, data, H.describe(p2))
            c.logout()
    finally:
        if not H.KEEP:
            shutil.rmtree(tmp, ignore_errors=True)


def test_dry_run_says_what_it_would_do():
    """--dry-run counts the folders it would create and the bytes it
    would copy (it said "0 created ... 0 bytes"), and creates nothing."""
    H.require_root()
    tmp = tempfile.mkdtemp(prefix="ife-fid-")
    try:
        with H.Dovecot("fdsrc", users={"alice": PW}, ssl=False) as s, \
                H.Dovecot("fddst", users={"alice": PW}, ssl=False) as d:
            fill(s, {"INBOX": 4, "Work": 6, "Work/Old": 2})
            c = s.imap("alice", PW)
            want = 0
            for box in ("INBOX", "Work", "Work/Old"):
                assert c.select(box)[0] == "OK"
                typ, data = c.fetch("1:*", "(RFC822.SIZE)")
                want += sum(int(x) for x in re.findall(rb"RFC822\.SIZE (\d+)",
                                                        b" ".join(data)))
            c.logout()
            for dst in (d.url("alice", query="?tls=none"),
                        f"maildir:{os.path.join(tmp, 'md')}"):
                p = ferry(["copy", "--json", "--dry-run", "--state",
                           os.path.join(tmp, "dry.db"), s.url("alice", query="?tls=none"),
                           dst])
                assert p.returncode == 0, H.describe(p)
                j = U.summary(p)
                assert j["dry_run"] and j["copied"] == 12, H.describe(p)
                assert j["folders_created"] == 2 + (1 if dst.startswith("maildir") else 0), \
                    H.describe(p)
                assert j["bytes"] == want, (j["bytes"], want, H.describe(p))
                p = ferry(["copy", "--dry-run", "--state", os.path.join(tmp, "dry.db"),
                           s.url("alice", query="?tls=none"), dst])
                assert "to create" in p.stdout and "12 to copy" in p.stdout, H.describe(p)
            assert not os.path.exists(os.path.join(tmp, "md")), os.listdir(tmp)
            c = d.imap("alice", PW)
            typ, data = c.list()
            c.logout()
            assert len([x for x in data if x]) == 1, data     # INBOX only
    finally:
        if not H.KEEP:
            shutil.rmtree(tmp, ignore_errors=True)


def _tags_with_28_keywords(s):
    """Tags: 27 custom keywords and $Junk over 54 messages."""
    c = s.imap("alice", PW)
    assert c.create("Tags")[0] == "OK"
    for i in range(27):
        for rep in range(1 if i < 2 else 2):
            U.append(c, "Tags", U.make_message(100 * rep + i, tag="Tags"),
                     flags=f"\\Seen Custom{i:02d}")
    U.append(c, "Tags", U.make_message(999, tag="Tags"), flags="$Junk")
    c.logout()


def test_unkept_keywords_are_not_flag_updates():
    """Keywords the Maildir's file names cannot hold (a 27th and 28th
    Dovecot keyword) are not "flag updates" on every later run: a run with
    nothing changed reports 0; a real change is counted once. The same
    with --dst-imap (the keywords beyond 26 are in the serving Dovecot's
    index, not in the file names)."""
    H.require_root()
    tmp = tempfile.mkdtemp(prefix="ife-fid-")
    try:
        with H.Dovecot("fusrc", users={"alice": PW}, ssl=False) as s, \
                H.Dovecot("fudst", users={"alice": PW, "bob": PW}, ssl=False) as d:
            _tags_with_28_keywords(s)
            src = s.url("alice", query="?tls=none")
            dst = f"maildir:{d.maildir('alice')}"
            base = ["copy", "--json", "--owner", "mail:mail"]
            p = ferry(base + [src, dst])
            assert p.returncode == 1, H.describe(p)     # 2 keywords not kept
            assert U.summary(p)["copied"] == 53, H.describe(p)
            for extra in ([], ["--state", os.path.join(tmp, "a.db")]):
                p = ferry(base + extra + [src, dst])
                j = U.summary(p)
                assert j["copied"] == 0 and j["flags_updated"] == 0, H.describe(p)
                assert p.returncode == 0, H.describe(p)
            # a real change is one flag update, once
            c = s.imap("alice", PW)
            assert c.select("Tags")[0] == "OK"
            assert c.uid("STORE", "1", "+FLAGS.SILENT", "(\\Flagged)")[0] == "OK"
            c.logout()
            p = ferry(base + [src, dst])
            assert U.summary(p)["flags_updated"] == 1, H.describe(p)
            p = ferry(base + [src, dst])
            assert U.summary(p)["flags_updated"] == 0, H.describe(p)
            # through the serving Dovecot
            dsti = f"imap://bob*{d.master[0]}@{d.host}:{d.port}?tls=none"
            env = {"IMAPFERRY_SRC_PASSWORD": PW,
                   "IMAPFERRY_DST_PASSWORD": d.master[1]}
            bob = f"maildir:{d.maildir('bob')}"
            for i in range(3):
                p = H.run_ferry(base + ["--dst-imap", dsti, src, bob], env=env)
                assert p.returncode == 0, H.describe(p)
                j = U.summary(p)
                if i == 0:
                    assert j["copied"] == 53, H.describe(p)
                else:
                    assert j["copied"] == 0 and j["flags_updated"] == 0, \
                        H.describe(p)
            c = d.imap("bob", PW)
            assert c.select("Tags")[0] == "OK"
            typ, data = c.uid("SEARCH", "KEYWORD", "Custom00")
            c.logout()
            assert typ == "OK" and len(data[0].split()) == 1, data
            # a later change of keywords beyond 26 on the source reaches
            # the target through the serving Dovecot (removed and added),
            # once
            c = s.imap("alice", PW)
            assert c.select("Tags")[0] == "OK"
            had = c.uid("SEARCH", "KEYWORD", "Custom00")[1][0].split()
            other = c.uid("SEARCH", "KEYWORD", "Custom05")[1][0].split()
            assert len(had) == 1 and other, (had, other)
            c.uid("STORE", had[0], "-FLAGS.SILENT", "(Custom00)")
            c.uid("STORE", had[0], "+FLAGS.SILENT", "(Custom01)")
            c.uid("STORE", other[0], "+FLAGS.SILENT", "(Custom00)")
            c.logout()
            p = H.run_ferry(base + ["--dst-imap", dsti, src, bob], env=env)
            assert p.returncode == 0, H.describe(p)
            assert U.summary(p)["flags_updated"] == 2, H.describe(p)
            p = H.run_ferry(base + ["--dst-imap", dsti, src, bob], env=env)
            assert U.summary(p)["flags_updated"] == 0, H.describe(p)
            src_snap = U.snapshot(s, "alice", PW, body=False)
            dst_snap = U.snapshot(d, "bob", PW, body=False)
            U.compare_snapshots(src_snap, dst_snap, body=False)
            p = H.run_ferry(["verify", "--json", "--dst-imap", dsti, src, bob], env=env)
            assert p.returncode == 0, H.describe(p)
    finally:
        if not H.KEEP:
            shutil.rmtree(tmp, ignore_errors=True)


def test_run_and_verify_through_dst_imap():
    """run --dst-imap TEMPLATE gives each account's Maildir target the
    Dovecot serving it (keywords beyond 26 set through it); verify
    --dst-imap compares keywords as that Dovecot serves them: every one
    verifies, where the file names alone lack 3 of 29 per account."""
    H.require_root()
    tmp = tempfile.mkdtemp(prefix="ife-fid-")
    try:
        with H.Dovecot("frsrc", users={"alice": PW, "carol": PW}, ssl=False) as s, \
                H.Dovecot("frdst", users={"alice": PW, "carol": PW}, ssl=False) as d:
            for user in ("alice", "carol"):
                c = s.imap(user, PW)
                assert c.create("Tags")[0] == "OK"
                for i in range(28):
                    U.append(c, "Tags", U.make_message(i, tag=user),
                             flags=f"Custom{i:02d}" + (" $Junk" if i == 27 else ""))
                c.logout()
            users = os.path.join(tmp, "users.csv")
            with open(users, "w") as f:
                f.write("src_user,dst_user\nalice,alice\ncarol,carol\n")
            dsti = f"imap://%u*{d.master[0]}@{d.host}:{d.port}?tls=none"
            env = {"IMAPFERRY_SRC_PASSWORD": PW,
                   "IMAPFERRY_DST_PASSWORD": d.master[1]}
            src = f"imap://%u@{s.host}:{s.port}?tls=none"
            dst = f"maildir:{d.data_dir}/%u/Maildir"
            p = H.run_ferry(["run", "--state", os.path.join(tmp, "r.db"),
                             "--owner", "mail:mail", "--progress", "plain",
                             "--dst-imap", dsti, users, src, dst], env=env)
            assert p.returncode == 0, H.describe(p)
            assert "does not keep keyword" not in p.stderr, H.describe(p)
            for user in ("alice", "carol"):
                c = d.imap(user, PW)
                assert c.select("Tags")[0] == "OK"
                for k in ("Custom00", "Custom27", "$Junk"):
                    typ, data = c.uid("SEARCH", "KEYWORD", k)
                    assert typ == "OK" and len(data[0].split()) == 1, \
                        (user, k, data, H.describe(p))
                c.logout()
                one = [s.url(user, query="?tls=none"), f"maildir:{d.maildir(user)}"]
                # the file names alone: 3 keywords per account missing
                # (on 2 or 3 messages: which 3 lack a letter depends on
                # the order in which the folder's UID ranges committed)
                v = H.run_ferry(["verify", "--json", "--no-state"] + one, env=env)
                assert v.returncode == 1, H.describe(v)
                j = json.loads(v.stdout)
                assert {x["kind"] for x in j["diffs"]} == {"flags"}, H.describe(v)
                missing = []
                for x in j["diffs"]:
                    m = re.match(r"source \((.*)\), target \((.*)\)$", x["detail"])
                    assert m, x
                    missing += sorted(set(m.group(1).split()) - set(m.group(2).split()))
                assert len(missing) == 3 and 2 <= j["differences"] <= 3, \
                    (missing, H.describe(v))
                # through the serving Dovecot: all verify
                v = H.run_ferry(["verify", "--json", "--no-state", "--dst-imap",
                                 dsti.replace("%u", user)] + one, env=env)
                assert v.returncode == 0, H.describe(v)
                j = json.loads(v.stdout)
                assert j["differences"] == 0 and j["matched"] == 28, H.describe(v)
            # a wrong --dst-imap: the target is no Maildir
            v = H.run_ferry(["verify", "--dst-imap", dsti.replace("%u", "alice"),
                             s.url("alice", query="?tls=none"),
                             d.url("alice", query="?tls=none")], env=env)
            assert v.returncode == 2 and "maildir" in v.stderr, H.describe(v)
    finally:
        if not H.KEEP:
            shutil.rmtree(tmp, ignore_errors=True)


def test_status_per_account_last_pass_and_changes():
    """status shows per account when its last pass ended; with --changes
    USERS, what changed on the source since (one STATUS per folder
    against the state): new and expunged messages, for a Maildir target
    (counted in its uidlist) and an IMAP target (the state's records)."""
    H.require_root()
    tmp = tempfile.mkdtemp(prefix="ife-fid-")
    try:
        with H.Dovecot("fssrc", users={"alice": PW, "carol": PW}, ssl=False) as s, \
                H.Dovecot("fsdst", users={"alice": PW, "carol": PW}, ssl=False) as d:
            for user in ("alice", "carol"):
                c = s.imap(user, PW)
                assert c.create("Work")[0] == "OK"
                for i in range(6):
                    U.append(c, "Work", U.make_message(i, tag=user))
                    U.append(c, "INBOX", U.make_message(50 + i, tag=user))
                c.logout()
            users = os.path.join(tmp, "users.csv")
            with open(users, "w") as f:
                f.write("src_user,dst_user\nalice,alice\ncarol,carol\n")
            src = f"imap://%u@{s.host}:{s.port}?tls=none"
            targets = {"md": f"maildir:{d.data_dir}/%u/Maildir",
                       "imap": f"imap://%u@{d.host}:{d.port}?tls=none"}
            for name, dst in targets.items():
                state = os.path.join(tmp, f"{name}.db")
                p = ferry(["run", "--state", state, "--owner", "mail:mail",
                           "--progress", "none", users, src, dst])
                assert p.returncode == 0, H.describe(p)
                st = ferry(["status", "--state", state, "--json"])
                assert st.returncode == 0, H.describe(st)
                j = json.loads(st.stdout)
                passes = {x["src_user"]: x for x in j["passes"]}
                assert set(passes) == {"alice", "carol"}, j["passes"]
                for x in passes.values():
                    assert x["last_pass_ended"] > 1_700_000_000, x
                    assert x["changes"] is None, x
            # on the source: alice gets 3 new messages in Work, 2 expunged
            c = s.imap("alice", PW)
            for i in range(3):
                U.append(c, "Work", U.make_message(200 + i, tag="alice"))
            c.logout()
            c = s.imap("alice", PW)
            assert c.select("Work")[0] == "OK"
            for u in (2, 4):
                assert c.uid("STORE", str(u), "+FLAGS.SILENT", "(\\Deleted)")[0] == "OK"
            assert c.expunge()[0] == "OK"
            c.logout()
            for name in targets:
                state = os.path.join(tmp, f"{name}.db")
                st = ferry(["status", "--state", state, "--json", "--changes", users])
                assert st.returncode == 0, H.describe(st)
                passes = {x["src_user"]: x for x in json.loads(st.stdout)["passes"]}
                a, b = passes["alice"]["changes"], passes["carol"]["changes"]
                assert a["new_messages"] == 3 and a["expunged_messages"] == 2, \
                    (name, a, H.describe(st))
                assert a["changed_folders"] == 1 and a["folders"] == 2, (name, a)
                assert b["new_messages"] == 0 and b["expunged_messages"] == 0 \
                    and b["changed_folders"] == 0, (name, b)
                st = ferry(["status", "--state", state, "--changes", users])
                assert st.returncode == 0, H.describe(st)
                line = [x for x in st.stdout.splitlines()
                        if x.strip().startswith("alice") and "last pass ended" in x]
                assert line and \
                    "3 new, 2 expunged in 1 of 2 folders" in line[0], H.describe(st)
            # plan --final says the same for the window, and stays cheap:
            # no per-account preflight
            p = ferry(["plan", "--final", "--no-calibrate", "--json", "--state",
                       os.path.join(tmp, "md.db"), users, src, targets["md"]])
            assert p.returncode == 0, H.describe(p)
            j = json.loads(p.stdout)
            assert "check" not in j, H.describe(p)
            assert any("final pass: 3 new messages" in n for n in j["notes"]), j["notes"]
    finally:
        if not H.KEEP:
            shutil.rmtree(tmp, ignore_errors=True)


def test_plan_checks_every_account():
    """plan runs the preflight (imapferry check) of every account and
    summarises it: one line per kind of finding with the number of
    accounts concerned; plan --json has each account's findings; an
    account that cannot be checked is named; --no-check skips it."""
    H.require_root()
    tmp = tempfile.mkdtemp(prefix="ife-fid-")
    try:
        with H.Dovecot("fpsrc", users={"alice": PW, "carol": PW}, ssl=False,
                       separator=".", prefix="INBOX.") as s, \
                H.Dovecot("fpdst", users={"alice": PW, "carol": PW}, ssl=False) as d:
            c = s.imap("alice", PW)
            assert c.create("INBOX.Tags")[0] == "OK"
            for i in range(28):
                U.append(c, "INBOX.Tags", U.make_message(i, tag="alice"),
                         flags=f"Custom{i:02d}")
            c.logout()
            c = s.imap("carol", PW)
            assert c.create("INBOX.Work")[0] == "OK"
            U.append(c, "INBOX.Work", U.make_message(1, tag="carol"))
            c.logout()
            users = os.path.join(tmp, "users.csv")
            with open(users, "w") as f:
                f.write("src_user,dst_user\nalice,alice\ncarol,carol\ndave,dave\n")
            src = f"imap://%u@{s.host}:{s.port}?tls=none"
            dst = f"maildir:{d.data_dir}/%u/Maildir"
            common = ["plan", "--no-calibrate", users, src, dst]
            p = ferry(common + ["--json"])
            assert p.returncode == 0, H.describe(p)
            chk = json.loads(p.stdout)["check"]
            assert chk["checked"] == 2 and chk["failed"] == 1, chk
            kinds = {k["code"]: k["accounts"] for k in chk["kinds"]}
            assert kinds.get("keywords") == 1, (kinds, H.describe(p))
            assert kinds.get("namespace") == 2, kinds
            accts = {a["src_user"]: a for a in chk["accounts"]}
            assert accts["dave"]["error"] and accts["dave"]["report"] is None, accts
            kw = [f for f in accts["alice"]["report"]["findings"]
                  if f["code"] == "keywords"]
            assert kw and kw[0]["folders"] == ["INBOX.Tags: 28 keywords"], accts["alice"]
            assert not [f for f in accts["carol"]["report"]["findings"]
                        if f["code"] == "keywords"], accts["carol"]
            assert not os.path.exists(d.maildir("carol")), "plan must not create"
            p = ferry(common)
            assert p.returncode == 0, H.describe(p)
            assert re.search(r"^\s+\w+\s+keywords\s+1 account\b", p.stdout, re.M), p.stdout
            assert re.search(r"^\s+info\s+namespace\s+2 accounts\b", p.stdout, re.M), \
                p.stdout
            assert "1 account could not be checked: dave" in p.stdout, p.stdout
            p = ferry(common + ["--no-check", "--json"])
            assert p.returncode == 0 and "check" not in json.loads(p.stdout), \
                H.describe(p)
    finally:
        if not H.KEEP:
            shutil.rmtree(tmp, ignore_errors=True)


def test_keywords_outside_permanentflags_are_not_flag_updates():
    """An IMAP target whose PERMANENTFLAGS lack \\* (Courier with
    IMAP_KEYWORDS=0) drops the keywords: a later run with nothing changed
    reports 0 flag updates (it counted every keyword again), a change of
    a flag it keeps is one update."""
    H.require_root()
    tmp = tempfile.mkdtemp(prefix="ife-fid-")
    try:
        with H.Dovecot("fcsrc", users={"alice": PW}, ssl=False) as s, \
                H.Courier("fcdst", users={"alice": PW},
                          env={"IMAP_KEYWORDS": "0"}) as d:
            c = s.imap("alice", PW)
            for i in range(4):
                U.append(c, "INBOX", U.make_message(i, tag="kw"),
                         flags=f"\\Seen $Label{i + 1} Custom")
            c.logout()
            src = s.url("alice", query="?tls=none")
            dst = d.url("alice")
            base = ["copy", "--json", "--state", os.path.join(tmp, "c.db")]
            p = ferry(base + [src, dst])
            assert U.summary(p)["copied"] == 4, H.describe(p)
            assert "does not keep keyword" in p.stderr, H.describe(p)
            for _ in range(2):
                p = ferry(base + [src, dst])
                j = U.summary(p)
                assert j["copied"] == 0 and j["flags_updated"] == 0, H.describe(p)
                assert j["dropped_flags"] == 0, H.describe(p)
            c = s.imap("alice", PW)
            assert c.select("INBOX")[0] == "OK"
            assert c.uid("STORE", "1", "+FLAGS.SILENT", "(\\Flagged)")[0] == "OK"
            c.logout()
            p = ferry(base + [src, dst])
            assert U.summary(p)["flags_updated"] == 1, H.describe(p)
            c = d.imap("alice", PW)
            assert c.select("INBOX")[0] == "OK"
            typ, data = c.search(None, "FLAGGED")
            c.logout()
            assert typ == "OK" and len(data[0].split()) == 1, data
    finally:
        if not H.KEEP:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    H.run_tests(globals())
