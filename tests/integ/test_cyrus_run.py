#!/usr/bin/env python3
"""imapferry plan / run with a Cyrus source: a copied spool read offline
(cyrus:COPY?user=%u) and the hybrid (--bodies-from cyrus-spool:COPY, the
metadata from the live Cyrus over IMAP), several accounts from a users
file, into Dovecot Maildirs (maildir:/path/%u/Maildir).

A real Cyrus 3.6 (harness) is loaded over IMAP with three accounts (the
gen.py corpus with its flags and keywords, nested folders, expunges so UIDs
have gaps); its spool and config directories are copied with `cp -a`
while it runs. The oracle is imaplib against both servers: per folder the
same UIDVALIDITY, UIDNEXT and UIDs, and per UID the same flags, keywords,
INTERNALDATE, RFC822.SIZE and body bytes (maildir_util.compare_snapshots).

  plan_offline   the inventory comes from the spool (no Cyrus login, no
                 password given): per account the message count of the
                 Cyrus account
  run_offline    a run SIGKILLed after its plan was stored, started again:
                 resumes and completes; every account UID-exact, so no
                 message twice; a second run copies nothing
  run_offline_unknown_user  a user the spool lacks: that account fails
                 once, naming it; the other is copied
  plan_hybrid    --bodies-from on plan: the counts over IMAP
  run_hybrid     --bodies-from on run: UID-exact;
                 the bodies came from the spool (logged per account), files
                 removed from the copy and one truncated came over IMAP,
                 counted by reason in report (text, JSON, HTML) and status
"""

import contextlib
import json
import os
import random
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

CUSERS = {"alice": "alicepw-r1", "bob": "bobpw-r2", "carol": "carolpw-r3"}
SEED = int(os.environ.get("IMAPFERRY_SEED", random.randrange(1 << 30)))
RNG = random.Random(SEED)
C = D = D2 = None
TMP = COPY = USERS = ADMIN_PW = None
BODIES = re.compile(r"(\S+): bodies: (\d+) from the Cyrus spool, (\d+) over IMAP")


@contextlib.contextmanager
def setup():
    global C, D, D2, TMP, COPY, USERS, ADMIN_PW
    H.require_root()
    H.log(f"seed {SEED}")
    corpus = H.gen_corpus(users=3, messages=250, seed=31)
    TMP = tempfile.mkdtemp(prefix="ife-cyrun-")
    C = H.Cyrus("cyrun", users=CUSERS)
    D = H.Dovecot("cyrund", users=CUSERS, ssl=False)
    D2 = H.Dovecot("cyrunh", users=CUSERS, ssl=False)
    try:
        C.start()       # skips the whole file if Cyrus is not installed
        D.start()
        D2.start()
        for i, user in enumerate(sorted(CUSERS)):
            load(user, [dict(r, user=user) for r in corpus if r["user"] == f"user{i + 1}"])
        COPY = os.path.join(TMP, "copy")
        os.makedirs(COPY)
        for d in ("spool", "lib"):
            subprocess.run(["cp", "-a", os.path.join(C.dir, d), os.path.join(COPY, d)],
                           check=True)
        USERS = os.path.join(TMP, "users.csv")
        with open(USERS, "w") as f:
            f.write("src_user,dst_user\n")
            for u in sorted(CUSERS):
                f.write(f"{u},{u}\n")
        ADMIN_PW = os.path.join(TMP, "admin.pw")
        with open(ADMIN_PW, "w") as f:
            f.write(C.admin[1] + "\n")
        os.chmod(ADMIN_PW, 0o600)
        yield
    finally:
        D2.stop()
        D.stop()
        C.stop()
        if not H.KEEP:
            shutil.rmtree(TMP, ignore_errors=True)


def load(user, rows):
    assert C.load_corpus(user, rows) == len(rows)
    c = C.imap(user, CUSERS[user])
    try:
        # expunges: gaps in UIDs
        assert c.select("INBOX")[0] == "OK"
        assert c.uid("STORE", "2,5:7", "+FLAGS", "(\\Deleted)")[0] == "OK"
        assert c.expunge()[0] == "OK"
        c.close()
    finally:
        c.logout()


def to_dovecot(raw):
    """Cyrus "INBOX.A.B" -> Dovecot "A/B" (both modified UTF-7)."""
    return "INBOX" if raw == "INBOX" else raw[len("INBOX."):].replace(".", "/")


def cyrus_snapshot(user, body=True):
    return {to_dovecot(k): v for k, v in M.snapshot(C, user, CUSERS[user], body).items()}


def offline_src():
    return f"cyrus:{COPY}/spool?user=%u&config={COPY}/lib"


def hybrid_args():
    return ["--bodies-from", f"cyrus-spool:{COPY}/spool",
            "--src-admin", C.admin[0], "--src-password-file", ADMIN_PW]


def dst_tmpl(server):
    return f"maildir:{server.data_dir}/%u/Maildir"


def check_accounts(server):
    """Every account of the Dovecot equals its Cyrus account by UID."""
    total = 0
    for u in sorted(CUSERS):
        src = cyrus_snapshot(u)
        dst = M.snapshot(server, u, CUSERS[u])
        assert len(src) >= 3, sorted(src)
        assert 2 not in src["INBOX"]["msgs"] and 5 not in src["INBOX"]["msgs"]
        n = M.compare_snapshots(src, dst)
        assert n == sum(len(f["msgs"]) for f in src.values()) and n > 100, (u, n)
        total += n
    return total


def plan_counts(p):
    """{src_user: messages} from plan --json's jobs."""
    assert p.returncode == 0, H.describe(p)
    j = json.loads(p.stdout)
    got = {}
    for job in j["jobs"]:
        assert "error" not in job, job
        got[job["src_user"]] = got.get(job["src_user"], 0) + job["messages"]
    return j, got


def expected_counts():
    return {u: sum(len(f["msgs"]) for f in cyrus_snapshot(u, body=False).values())
            for u in CUSERS}


def run_killed_then_complete(src, dst, state, total, extra=()):
    """A run SIGKILLed once its plan is stored and it has copied a random
    part (a fifth to a half) of the total messages, then the same command
    again. Returns the last run's process and the files the first left."""
    args = ["run", USERS, src, dst, "--state", state, "--workers", "1",
            "--progress", "plain", "--owner", "mail:mail", *extra]
    out = os.path.join(TMP, os.path.basename(state) + ".out")
    with open(out, "wb") as f:
        proc = subprocess.Popen([H.BIN, *args], stdout=f, stderr=f,
                                stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        with open(out, "rb") as f:
            if b"plan estimate" in f.read():
                break
        time.sleep(0.02)
    # killed by progress, not by time: a run that copies everything in
    # less than the delay would not be killed mid-way
    kill_at = RNG.randint(max(1, total // 5), max(1, total // 2))
    t0 = time.monotonic()
    while proc.poll() is None and count_files(dst) < kill_at and \
            time.monotonic() - t0 < 120:
        time.sleep(0.005)
    delay = time.monotonic() - t0
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    files = count_files(dst)
    H.log(f"{files} message files in the Maildirs after the first run")
    with open(out, "rb") as f:
        first = f.read().decode("utf-8", "replace")
    assert "plan estimate" in first, first[-3000:]
    H.log(f"first run {'SIGKILLed' if killed else 'ended'} {delay:.2f} s after its plan "
          f"(seed {SEED})")
    t0 = time.monotonic()
    p = H.run_ferry(args, timeout=300)
    H.log(f"second run: {time.monotonic() - t0:.1f} s")
    assert p.returncode == 0, H.describe(p)
    if killed:
        assert "resuming run" in p.stderr, H.describe(p)
    return p, files


def count_files(dst):
    """Message files in every account's Maildir of the template dst."""
    n = 0
    for u in CUSERS:
        root = dst[len("maildir:"):].replace("%u", u)
        for dirpath, _dirs, names in os.walk(root):
            if os.path.basename(dirpath) in ("cur", "new"):
                n += len(names)
    return n


# -------------------------------------------------------------------- tests

def test_plan_offline():
    # the inventory reads the copy only (no password given for Cyrus)
    want = expected_counts()
    p = H.run_ferry(["plan", "--json", USERS, offline_src(), dst_tmpl(D)])
    j, got = plan_counts(p)
    text = H.run_ferry(["plan", USERS, offline_src(), dst_tmpl(D)])
    assert got == want, (got, want)
    assert j["accounts"] == 3 and j["messages"] == sum(want.values()), j
    assert j["bytes"] > 0, j
    assert text.returncode == 0, H.describe(text)
    for u in CUSERS:
        assert u in text.stdout, text.stdout


def test_run_offline():
    state = os.path.join(TMP, "offline.db")
    want = sum(expected_counts().values())
    p, files = run_killed_then_complete(offline_src(), dst_tmpl(D), state, want)
    n = check_accounts(D)
    H.log(f"offline: {n} messages UID-exact in 3 accounts")
    # killed mid-way: some messages were there, not all
    assert 0 < files < n, (files, n)
    # the run is done: the same command plans a new pass that finds
    # everything copied
    p = H.run_ferry(["run", USERS, offline_src(), dst_tmpl(D), "--state", state,
                     "--progress", "none", "--owner", "mail:mail"])
    assert p.returncode == 0, H.describe(p)
    m = re.search(r"done, 0 failed, 0 pending; (\d+) messages", p.stdout)
    assert m and int(m.group(1)) == 0, p.stdout
    check_accounts(D)


def test_run_offline_unknown_user():
    """A user the spool does not have: that account fails once (no retry),
    naming it; the others are copied."""
    users = os.path.join(TMP, "users-nobody.csv")
    with open(users, "w") as f:
        f.write("src_user,dst_user\nalice,alice\nnobody,nobody\n")
    dst = os.path.join(TMP, "nobody-md")
    p = H.run_ferry(["run", users, offline_src(), f"maildir:{dst}/%u", "--state",
                     os.path.join(TMP, "nobody.db"), "--progress", "none",
                     "--backoff", "30"], timeout=120)
    assert p.returncode == 1, H.describe(p)
    assert re.search(r"nobody\s+failed .*no mailboxes of nobody", p.stdout), p.stdout
    assert re.search(r"alice\s+done", p.stdout), p.stdout
    assert not os.path.exists(os.path.join(dst, "nobody"))


def test_plan_hybrid():
    want = expected_counts()
    # (?user=%u spelled out: the same as the default)
    args = hybrid_args()
    args[1] += "?user=%u"
    p = H.run_ferry(["plan", "--json", USERS, C.url("%u"), dst_tmpl(D2), *args])
    _j, got = plan_counts(p)
    assert got == want, (got, want)


def live_spool_files(user, n):
    """The spool files of the first n live INBOX messages of user (UIDs
    2 and 5-7 were expunged, their files may stay)."""
    inbox = os.path.join(COPY, "spool", "user", user)
    uids = sorted(int(f[:-1]) for f in os.listdir(inbox) if re.fullmatch(r"\d+\.", f))
    return [os.path.join(inbox, f"{u}.") for u in uids if u not in (2, 5, 6, 7)][:n]


def report_json(state, cmd="report"):
    p = H.run_ferry([cmd, "--state", state, "--json"])
    assert p.returncode == 0, H.describe(p)
    return json.loads(p.stdout.splitlines()[0])


def test_run_hybrid():
    """Files removed from the copy (alice 2, bob 1) and one truncated
    (carol) come over IMAP: the run's log, report (text, JSON, HTML) and
    status count them by reason."""
    missing = {"alice": live_spool_files("alice", 2), "bob": live_spool_files("bob", 1)}
    truncated = live_spool_files("carol", 1)[0]
    saved = []
    for u, paths in missing.items():
        for k, path in enumerate(paths):
            keep = os.path.join(TMP, f"{u}-{k}")
            os.rename(path, keep)
            saved.append((keep, path))
    keep = os.path.join(TMP, "carol-truncated")
    shutil.copy2(truncated, keep)
    saved.append((keep, truncated))
    os.truncate(truncated, os.path.getsize(truncated) // 2)
    state = os.path.join(TMP, "hybrid.db")
    try:
        p = H.run_ferry(["run", USERS, C.url("%u"), dst_tmpl(D2), "--state",
                         state, "--progress", "plain",
                         "--owner", "mail:mail", *hybrid_args()], timeout=300)
        assert p.returncode == 0, H.describe(p)
    finally:
        for keep, path in saved:
            os.replace(keep, path)
    n = check_accounts(D2)
    logs = BODIES.findall(p.stderr)
    spool = sum(int(s) for _u, s, _i in logs)
    imap = sum(int(i) for _u, _s, i in logs)
    H.log(f"hybrid: {n} messages UID-exact; bodies {spool} from the spool, {imap} over IMAP")
    assert {u for u, _s, _i in logs} == set(CUSERS), logs
    # every body came from the spool but the 3 missing and the 1 truncated
    assert imap == 4 and spool + imap == n, (spool, imap, n)
    assert sum(int(i) for u, _s, i in logs if u == "bob") == 1, logs

    # the report of the run: per account and in total, by reason
    j = report_json(state)
    want = {"from_spool": n - 4, "over_imap": 4, "missing": 3, "size": 1,
            "uidvalidity": 0, "error": 0}
    assert j["bodies"] == want, j["bodies"]
    per = {a["src_user"]: a["bodies"] for a in j["accounts"]}
    assert per["alice"]["missing"] == 2 and per["alice"]["over_imap"] == 2, per
    assert per["bob"]["missing"] == 1 and per["bob"]["size"] == 0, per
    assert per["carol"]["size"] == 1 and per["carol"]["missing"] == 0, per
    assert sum(b["from_spool"] for b in per.values()) == n - 4, per
    assert report_json(state, "status")["bodies"] == want
    p = H.run_ferry(["report", "--state", state])
    assert p.returncode == 0, H.describe(p)
    assert f"bodies (all accounts): {n - 4} from the Cyrus spool, 4 over IMAP " \
        "(3 missing in the spool, 1 of another size)" in p.stdout, p.stdout
    assert re.search(r"\n    bodies: \d+ from the Cyrus spool, 1 over IMAP "
                     r"\(1 of another size\)\n", p.stdout), p.stdout
    html = os.path.join(TMP, "hybrid.html")
    p = H.run_ferry(["report", "--state", state, "--html", html])
    assert p.returncode == 0, H.describe(p)
    with open(html) as f:
        page = f.read()
    assert "Bodies from the Cyrus spool" in page and \
        f"{n - 4} from the Cyrus spool, 4 over IMAP (3 missing" in page, page[:3000]

    # a run without --bodies-from shows nothing of bodies (run_offline's,
    # unless this test runs alone)
    off = os.path.join(TMP, "offline.db")
    if os.path.exists(off):
        j = report_json(off)
        assert "bodies" not in j and all("bodies" not in a for a in j["accounts"]), j
        p = H.run_ferry(["report", "--state", off])
        assert p.returncode == 0 and "bodies" not in p.stdout, H.describe(p)


if __name__ == "__main__":
    H.run_tests(setup=setup)
