"""Shared helpers of the fault suite (tests/faults/test_fault_*.py).

Standard library only. Imports the integration harness (tests/integ) for
the throwaway servers, the corpus and the imaplib oracles.
"""

import os
import random
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integ"))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
import harness as H  # noqa: E402,F401
import maildir_util as M  # noqa: E402,F401

SEED = int(os.environ.get("IMAPFERRY_TEST_SEED", str(int(time.time()))))


def rng(tag):
    """A random generator per test, reproducible with IMAPFERRY_TEST_SEED."""
    return random.Random(f"{SEED}-{tag}")


def ferry_env(src_pw=None, dst_pw=None):
    e = dict(os.environ)
    e.pop("IMAPFERRY_PASSWORD", None)
    if src_pw is not None:
        e["IMAPFERRY_SRC_PASSWORD"] = src_pw
    if dst_pw is not None:
        e["IMAPFERRY_DST_PASSWORD"] = dst_pw
    return e


def start(args, env):
    return subprocess.Popen([H.BIN, *args], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def run(args, env, timeout=600):
    p = subprocess.run([H.BIN, *args], env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=timeout)
    return p


def kill_after(p, delay):
    """SIGKILL p after delay seconds unless it ended first. Returns True if
    it was killed."""
    try:
        p.wait(timeout=delay)
        p.communicate()
        return False
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.communicate()
        return True


def login_check(server, user, pw):
    """What a mail client does at login: LIST, SELECT of every folder,
    STATUS. Returns {raw name: (UIDVALIDITY, UIDNEXT, MESSAGES)}."""
    c = server.imap(user, pw)
    out = {}
    try:
        for raw in M.selectable(c):
            typ, data = c.select(M.quote(raw))
            assert typ == "OK", (raw, data)
            c.unselect()
            st = M.status(c, raw)
            out[raw] = (st["UIDVALIDITY"], st["UIDNEXT"], st["MESSAGES"])
    finally:
        c.logout()
    return out


def uid_problems(server):
    """Lines of dovecot.log that mean a UID was not kept."""
    bad = ("UIDs not ordered", "renumber", "Expunged message reappeared",
           "wrong W value", "Broken file", "Corrupted", "Panic", "Fatal")
    try:
        with open(server.log_path, errors="replace") as f:
            return [ln.rstrip() for ln in f if any(b in ln for b in bad)]
    except FileNotFoundError:
        return []


def run_rss(cmd, env, timeout=120):
    """Runs cmd (stdout/stderr to temporary files, stdin /dev/null).
    Returns (exit status, stdout, stderr, peak RSS in KiB from wait4)."""
    import tempfile
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                             stderr=err)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid == p.pid:
                break
            if time.monotonic() > deadline:
                p.kill()
                pid, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.02)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return (p.returncode, out.read().decode(errors="replace"),
                err.read().decode(errors="replace"), ru.ru_maxrss)


def imapferry_probe_folders(server, user, pw):
    c = server.imap(user, pw)
    try:
        typ, data = c.list('""', "*")
        assert typ == "OK", data
        return [raw for _a, _d, raw in H.parse_list_response(data)
                if re.search(r"imapferry", raw)]
    finally:
        c.logout()
