#!/usr/bin/env python3
"""imapferry's command line (issue 12 item 7): usage errors name the option
and the value, the same account as source and target is refused, an empty
password file is an error naming the file. Exit status 2 for all of them.

A throwaway Dovecot serves as the account that must never be touched: after
every refused command its mailbox is unchanged.
"""

import contextlib
import os
import socket
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

PW = {"alice": "alice-Jq3vB8", "bob": "bob-Wx5nK2"}
S = None
TMP = None


@contextlib.contextmanager
def setup():
    global S, TMP
    with tempfile.TemporaryDirectory(prefix="ife-cli-") as TMP, \
            H.Dovecot("cli", users=PW) as S:
        c = S.imap("alice", PW["alice"])
        c.append("INBOX", None, None, b"Subject: one\r\n\r\nbody\r\n")
        c.logout()
        yield


def url(user, port=None, scheme="imap", query="?tls=none"):
    return f"{scheme}://{user}@{H.HOST}:{port or S.port}{query}"


def closed_port():
    with socket.socket() as s:
        s.bind((H.HOST, 0))
        return s.getsockname()[1]


def inbox_count(user):
    c = S.imap(user, PW[user])
    typ, data = c.status("INBOX", "(MESSAGES)")
    c.logout()
    return int(data[0].split()[-1].rstrip(b")"))


def both_env(src=None, dst=None):
    return {"IMAPFERRY_SRC_PASSWORD": src, "IMAPFERRY_DST_PASSWORD": dst}


def write(name, text):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def usage_error(p, *needles):
    """Exit status 2 and an "imapferry: " line naming every needle."""
    assert p.returncode == 2, H.describe(p)
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("imapferry: ")]
    assert any(all(n in ln for n in needles) for ln in lines), \
        f"no error line naming {needles}\n{H.describe(p)}"


# -- bad option values: the option and the value are named

def test_bad_option_values():
    users = write("users-bad.csv", "src_user,dst_user\nalice,bob\n")
    src, dst = url("alice"), url("bob")
    cases = [
        (["copy", "--parallel", "100", src, dst], "--parallel", "100"),
        (["copy", "--parallel", "0", src, dst], "--parallel", "0"),
        (["copy", "--fetch-batch", "x", src, dst], "--fetch-batch", "x"),
        (["copy", "--tls-min", "2.0", src, dst], "--tls-min", "2.0"),
        (["copy", "--owner", "no-such-user-xq", src, dst], "--owner", "no-such-user-xq"),
        (["copy", "--fsync", "sometimes", src, dst], "--fsync", "sometimes"),
        (["run", "--fsync", "each", users, src, dst, "--state", os.path.join(TMP, "s.db")],
         "--fsync", "each"),
        (["run", "--workers", "0", users, src, dst, "--state", os.path.join(TMP, "s.db")],
         "--workers", "0"),
        (["run", "--max-src-conns", "100000", users, src, dst, "--state",
          os.path.join(TMP, "s.db")], "--max-src-conns", "100000"),
        (["run", "--progress", "fancy", users, src, dst, "--state",
          os.path.join(TMP, "s.db")], "--progress", "fancy"),
        (["plan", "--workers", "5000", users, src, dst], "--workers", "5000"),
        (["plan", "--split-above", "-3", users, src, dst], "--split-above", "-3"),
        (["ls", "--timeout", "soon", src], "--timeout", "soon"),
        (["verify", "--timeout", "0", src, dst], "--timeout", "0"),
        (["status", "--state", "x.db", "--run", "last"], "--run", "last"),
    ]
    for args, opt, value in cases:
        p = H.run_ferry(args, env=both_env("x", "y"))
        usage_error(p, opt, value)
    assert not os.path.exists(os.path.join(TMP, "s.db"))


def test_unknown_option_and_operands():
    p = H.run_ferry(["copy", "--no-such-option", url("alice"), url("bob")])
    assert p.returncode == 2 and "usage: imapferry copy" in p.stderr, H.describe(p)
    p = H.run_ferry(["copy", url("alice")])
    assert p.returncode == 2 and "usage: imapferry copy" in p.stderr, H.describe(p)


def test_help_lists_every_option():
    for cmd, opts in {
        "copy": ["--ca-file", "--insecure", "-v", "--tls-min", "--parallel", "--json",
                 "--state", "--include", "--exclude", "--map", "--src-password-file"],
        "ls": ["--ca-file", "--tls-min", "--insecure", "--password-file", "--authzid",
               "--json", "-v"],
        "verify": ["--ca-file", "--insecure", "--deep", "--no-state", "--state"],
        "plan": ["--workers", "--ca-file", "--json", "--no-split", "--uid-ranges"],
        "run": ["--state", "--report", "--include", "--progress", "--ca-file"],
        "status": ["--state", "--run", "--json"],
        "check": ["--src-password-file", "--dst-password-file", "--src-pop3", "--map",
                  "--json", "--ca-file", "-v"],
        "dovecot-config": ["--password-file", "--authzid", "--ca-file", "--insecure"],
    }.items():
        p = H.run_ferry([cmd, "--help"])
        assert p.returncode == 0, H.describe(p)
        for o in opts:
            assert f"  {o}" in p.stdout or f", {o}" in p.stdout, f"{cmd} --help lacks {o}"


def test_bench_tools_not_in_imapferry():
    for cmd in ("fetch-only", "append-only"):
        p = H.run_ferry([cmd, url("alice")], password=PW["alice"])
        assert p.returncode == 2 and f"unknown command '{cmd}'" in p.stderr, H.describe(p)


# -- the same account as source and target

def test_same_account_copy():
    before = inbox_count("alice")
    port = S.port
    same = [
        (url("alice"), url("alice")),
        (f"imap://alice@{H.HOST}?tls=none", f"imap://alice@{H.HOST}:143?tls=none"),
        (url("alice"), url("alice*master")),
        (url("alice"), url("ALICE", query="?tls=none&compress=yes")),
        (url("admin"), url("alice")),   # with --src-authzid alice below
    ]
    for i, (src, dst) in enumerate(same):
        extra = ["--src-authzid", "alice"] if i == 4 else []
        for cmd in (["copy", "--state", os.path.join(TMP, "same.db")], ["verify"]):
            p = H.run_ferry([*cmd, *extra, src, dst],
                            env=both_env(PW["alice"], PW["alice"]))
            usage_error(p, "same account")
    assert not os.path.exists(os.path.join(TMP, "same.db"))
    assert inbox_count("alice") == before
    # not the same: another user, another port, another authzid
    other = closed_port()
    for src, dst, extra in [
        (url("alice", port), url("bob", other), []),
        (url("alice", port), url("alice", other), []),
        (url("admin", other), url("admin", other), ["--src-authzid", "alice",
                                                     "--dst-authzid", "bob"]),
    ]:
        p = H.run_ferry(["copy", "--state", os.path.join(TMP, "other.db"), *extra, src, dst],
                        env=both_env("x", "y"))
        assert "same account" not in p.stderr, H.describe(p)


def test_same_maildir_copy():
    md = os.path.join(TMP, "Maildir")
    os.makedirs(os.path.join(md, "cur"))
    for dst in (f"maildir:{md}", f"maildir:{md}/", f"maildir:{TMP}/./Maildir"):
        p = H.run_ferry(["copy", "--state", os.path.join(TMP, "md.db"),
                         f"maildir:{md}", dst])
        usage_error(p, "same Maildir")


def test_same_account_run():
    users = write("users-same.csv", "src_user,dst_user\nbob,bob\nalice,alice\n")
    tmpl_src = f"imap://%u@{H.HOST}:{S.port}?tls=none"
    tmpl_dst = f"imap://%u@{H.HOST}:{S.port}?tls=none&compress=yes"
    state = os.path.join(TMP, "same-run.db")
    for cmd in (["run", "--state", state], ["plan"]):
        p = H.run_ferry([*cmd, users, tmpl_src, tmpl_dst],
                        env=both_env(PW["alice"], PW["alice"]))
        usage_error(p, "line 2", "same account")
    assert not os.path.exists(state)
    # the line that is the same account is named
    users = write("users-same2.csv", "src_user,dst_user\nalice,bob\nbob,bob\n")
    p = H.run_ferry(["plan", users, tmpl_src, tmpl_dst], env=both_env("x", "y"))
    usage_error(p, "line 3", "same account")


# -- empty password files

def test_empty_password_file():
    empty = write("empty.pw", "")
    newline = write("newline.pw", "\n")
    crlf = write("crlf.pw", "\r\n\n")
    good = write("good.pw", PW["bob"] + "\n")
    for pwfile in (empty, newline, crlf):
        p = H.run_ferry(["ls", "--password-file", pwfile, url("alice")])
        usage_error(p, pwfile, "empty")
        p = H.run_ferry(["copy", "--state", os.path.join(TMP, "pw.db"),
                         "--src-password-file", pwfile, "--dst-password-file", good,
                         url("alice"), url("bob")])
        usage_error(p, pwfile, "empty")
        p = H.run_ferry(["verify", "--src-password-file", good, "--dst-password-file",
                         pwfile, url("bob"), url("alice")])
        usage_error(p, pwfile, "empty")
        users = write("users-pw.csv", "src_user,dst_user\nalice,bob\n")
        p = H.run_ferry(["run", "--state", os.path.join(TMP, "pw-run.db"),
                         "--src-password-file", pwfile, "--dst-password-file", good,
                         users, url("%u"), url("%u", closed_port())])
        usage_error(p, pwfile, "empty")
        # a password file named in the users file
        users = write("users-pwcol.csv", "src_user,dst_user,src_password_file,"
                       f"dst_password_file\nalice,bob,{pwfile},{good}\n")
        p = H.run_ferry(["plan", users, url("%u"), url("%u", closed_port())])
        usage_error(p, pwfile, "empty")
    assert not os.path.exists(os.path.join(TMP, "pw.db"))
    assert not os.path.exists(os.path.join(TMP, "pw-run.db"))


if __name__ == "__main__":
    H.run_tests(setup=setup)
