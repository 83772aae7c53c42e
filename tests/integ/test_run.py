#!/usr/bin/env python3
"""imapferry plan / run / status: a whole server, many accounts, against
throwaway Dovecot instances.

The source holds 60 accounts with skewed sizes (three with 900-2000
messages in several folders, the rest 5-50), written straight into Maildir
files for speed. The users file mixes both logins: half of the accounts
have their own password files, the others are logged in by an admin (the
Dovecot master user through the SASL authzid); one account has a wrong
password and must be skipped while the others go on.

The run is SIGKILLed twice at random moments and started again; at the
end every account is checked by an imaplib oracle (per folder: message
count and Message-IDs, none missing, none twice), several with "imapferry
verify" (exit 0), and the connection caps are checked by sampling the
established connections to each server (ss -tn) during the runs. The
plan's estimate is compared with the measured time of an uninterrupted
run (printed, not asserted).
"""

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import copy_util as U  # noqa: E402

N_USERS = 60
BIG = {"u00": 2000, "u01": 1200, "u02": 900}
BAD_USER = "u59"                 # wrong password in the users file
SOLO = "solo"                    # one account, one large INBOX (UID ranges)
SOLO_N = 3000
MASTER = ("master", "mpw-Qa9zW2xE")
WORKERS = 4
MAX_SRC = 3
MAX_DST = 2
# On this test's tiny accounts the logins dominate, and no account reaches
# total/N: a low threshold makes the big ones split (and the small ones
# stay whole: their work is below the cost of another login).
SPLIT_ABOVE = "0.3"
SEED = int(os.environ.get("IMAPFERRY_TEST_SEED", str(int(time.time()))))
RNG = random.Random(SEED)

S = D = D2 = D3 = None          # source, target, second target (timing),
                                # Maildir target served by a third
TMP = None
PW = {}
USERS_CSV = None
EXPECT = {}                      # user -> {folder raw name: [message-id]}
SECRETS = []


def users():
    return [f"u{i:02d}" for i in range(N_USERS)]


# --------------------------------------------------------------- corpus

def message(user, folder, i, size):
    mid = f"<{user}.{folder.replace('/', '_')}.{i}@ferry.test>"
    head = (f"From: sender{i % 7}@example.org\r\nTo: {user}@example.org\r\n"
            f"Subject: message {i} in {folder}\r\nMessage-ID: {mid}\r\n"
            f"Date: Mon, 3 Jun 2019 10:{i % 60:02d}:00 +0000\r\n\r\n")
    line = f"{user} {folder} {i} lorem ipsum dolor sit amet consectetur\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return mid, (head + body).encode()


def write_account(server, user, n):
    """n messages spread over INBOX and a few folders; sizes mostly 1-4 KB,
    one in 20 of 20-120 KB. Returns {folder: [message-id]}."""
    if n >= 500:
        folders = ["INBOX", "Archive", "Archive/2019", "Sent", "Lists/dev"]
        weights = [4, 3, 2, 2, 1]
    else:
        folders = ["INBOX", "Sent"]
        weights = [3, 1]
    out = {f: [] for f in folders}
    md = server.maildir(user)
    t0 = 1_500_000_000
    for i in range(n):
        f = RNG.choices(folders, weights)[0]
        size = RNG.randint(20_000, 120_000) if RNG.random() < 0.05 else \
            RNG.randint(800, 4000)
        mid, data = message(user, f, i, size)
        fs = "" if f == "INBOX" else "." + f.replace("/", ".")
        d = os.path.join(md, fs, "cur")
        os.makedirs(d, exist_ok=True)
        for sub in ("new", "tmp"):
            os.makedirs(os.path.join(md, fs, sub), exist_ok=True)
        when = t0 + i * 60
        flags = "S" if i % 3 else ""
        p = os.path.join(d, f"{when}.M{i}P1.ferry,S={len(data)}:2,{flags}")
        with open(p, "wb") as fh:
            fh.write(data)
        os.utime(p, (when, when))
        out[f].append(mid)
    H.chown_tree(os.path.join(server.data_dir, user), H.MAIL_UID, H.MAIL_GID)
    return {k: v for k, v in out.items() if v or k == "INBOX"}


def write_solo(server, user, n):
    """One INBOX of n messages; then every 7th and the last three are
    expunged, so the UIDs have gaps and UIDNEXT is above the last UID.
    Returns the remaining Message-IDs."""
    md = server.maildir(user)
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(md, sub), exist_ok=True)
    mids = []
    t0 = 1_400_000_000
    for i in range(n):
        size = RNG.randint(30_000, 90_000) if RNG.random() < 0.03 else \
            RNG.randint(700, 3000)
        mid, data = message(user, "INBOX", i, size)
        when = t0 + i * 30
        p = os.path.join(md, "cur", f"{when}.M{i}P2.ferry,S={len(data)}:2,"
                         f"{'S' if i % 2 else ''}{'F' if i % 11 == 0 else ''}")
        with open(p, "wb") as fh:
            fh.write(data)
        os.utime(p, (when, when))
        mids.append(mid)
    H.chown_tree(os.path.join(server.data_dir, user), H.MAIL_UID, H.MAIL_GID)
    c = server.imap(user, PW[user])
    c.select("INBOX")
    gone = [u for u in range(1, n + 1) if u % 7 == 0 or u > n - 3]
    for k in range(0, len(gone), 200):
        typ, _ = c.uid("STORE", ",".join(map(str, gone[k:k + 200])),
                       "+FLAGS.SILENT", "(\\Deleted)")
        assert typ == "OK"
    c.expunge()
    left = U.fetch_folder(c, "INBOX", body=False)
    c.logout()
    assert len(left) == n - len(gone) and set(m["msgid"] for m in left) <= set(mids)
    return [m["msgid"] for m in left]


@contextlib.contextmanager
def setup():
    global S, D, D2, D3, TMP, USERS_CSV
    for u in users() + [SOLO]:
        PW[u] = f"pw-{u}-{RNG.randrange(10**8):08d}"
    SECRETS.extend(list(PW.values()) + [MASTER[1]])
    TMP = tempfile.mkdtemp(prefix="ife-run-", dir="/tmp")
    with H.Dovecot("runsrc", users=PW, master=MASTER, ssl=False) as S, \
            H.Dovecot("rundst", users=PW, master=MASTER, ssl=False) as D, \
            H.Dovecot("rundst2", users=PW, master=MASTER, ssl=False) as D2, \
            H.Dovecot("runmd", users=PW, master=MASTER, ssl=False) as D3:
        for u in users():
            n = BIG.get(u, RNG.randint(5, 50))
            EXPECT[u] = write_account(S, u, n)
        EXPECT[SOLO] = {"INBOX": write_solo(S, SOLO, SOLO_N)}
        # users file: even accounts have password files, odd ones go
        # through the admin (master user by authzid); BAD_USER a wrong one
        pwdir = os.path.join(TMP, "pw")
        os.makedirs(pwdir)
        lines = ["src_user,dst_user,src_password_file,dst_password_file"]
        for i, u in enumerate(users()):
            if i % 2 == 0 or u == BAD_USER:
                pw = "wrong-password" if u == BAD_USER else PW[u]
                for side in ("src", "dst"):
                    with open(os.path.join(pwdir, f"{u}.{side}"), "w") as f:
                        f.write(pw + "\n")
                lines.append(f"{u},{u},pw/{u}.src,pw/{u}.dst")
            else:
                lines.append(f"{u},,,")
        USERS_CSV = os.path.join(TMP, "users.csv")
        with open(USERS_CSV, "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(os.path.join(TMP, "master"), "w") as f:
            f.write(MASTER[1] + "\n")
        try:
            yield
        finally:
            if not H.KEEP:
                shutil.rmtree(TMP, ignore_errors=True)


def url(server):
    return f"imap://%u@{server.host}:{server.port}?tls=none"


def login_args():
    m = os.path.join(TMP, "master")
    return ["--src-admin", MASTER[0], "--src-password-file", m,
            "--dst-admin", MASTER[0], "--dst-password-file", m]


def run_args(dst, state, extra=()):
    return ["run", USERS_CSV, url(S), url(dst), "--state", state,
            "--workers", str(WORKERS), "--max-src-conns", str(MAX_SRC),
            "--max-dst-conns", str(MAX_DST), "--backoff", "1",
            "--split-above", SPLIT_ABOVE, "--progress", "plain",
            *login_args(), *extra]


def no_secrets(text):
    for s in SECRETS:
        assert s not in text, "a password leaked into the output"


# ------------------------------------------------------ connection caps

class ConnSampler:
    """Samples established client connections to each port with ss."""

    def __init__(self, ports):
        self.ports = ports
        self.peak = {p: 0 for p in ports}
        self.samples = 0
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.loop, daemon=True)

    def loop(self):
        while not self.stop.is_set():
            out = subprocess.run(["ss", "-tnH", "state", "established"],
                                 stdout=subprocess.PIPE, text=True).stdout
            count = {p: 0 for p in self.ports}
            for line in out.splitlines():
                parts = line.split()
                if len(parts) < 4:
                    continue
                peer = parts[-1]            # client sockets: peer = server
                port = int(peer.rsplit(":", 1)[1])
                if port in count:
                    count[port] += 1
            for p in self.ports:
                self.peak[p] = max(self.peak[p], count[p])
            self.samples += 1
            time.sleep(0.02)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.t.join()
        return False


def popen_ferry(args):
    env = dict(os.environ)
    env.pop("IMAPFERRY_PASSWORD", None)
    out = open(os.path.join(TMP, "run.out"), "ab")
    return subprocess.Popen([H.BIN, *args], stdout=out, stderr=out,
                            stdin=subprocess.DEVNULL, env=env)


def read_out():
    try:
        with open(os.path.join(TMP, "run.out"), "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


# ------------------------------------------------------------------ oracle

def check_account(server, user, only=None):
    """Every source folder's Message-IDs are on the target exactly once."""
    want = EXPECT[user]
    snap = U.snapshot(server, user, PW[user], body=False)
    for folder, mids in want.items():
        if only is not None and folder not in only:
            continue
        raw = H.mutf7_encode(folder)
        assert raw in snap, f"{user}: folder {folder} missing on the target"
        got = [m["msgid"] for m in snap[raw]]
        dup = {m for m in got if got.count(m) > 1}
        assert not dup, f"{user}/{folder}: copied twice: {sorted(dup)[:5]}"
        missing = set(mids) - set(got)
        assert not missing, f"{user}/{folder}: {len(missing)} missing, " \
                            f"e.g. {sorted(missing)[:3]}"
        assert len(got) == len(mids), f"{user}/{folder}: {len(got)} != {len(mids)}"


# ------------------------------------------------------------------- tests

def test_plan():
    global SPLIT_ABOVE
    # the split threshold from this machine's own estimate of the largest
    # account (a fixed number of seconds made the test depend on how fast
    # the machine measured: the estimate moves with the calibration)
    p = H.run_ferry(["plan", USERS_CSV, url(S), url(D), "--no-split", "--json",
                     *login_args()])
    assert p.returncode == 0, H.describe(p)
    est = max(j["seconds"] for j in json.loads(p.stdout)["jobs"] if j["src_user"] == "u00")
    SPLIT_ABOVE = f"{min(0.3, est / 3):.3f}"
    H.log(f"plan: u00 estimated at {est:.3f} s: split above {SPLIT_ABOVE} s")
    p = H.run_ferry(["plan", USERS_CSV, url(S), url(D), "--workers",
                     str(WORKERS), "--max-src-conns", str(MAX_SRC),
                     "--max-dst-conns", str(MAX_DST), "--split-above",
                     SPLIT_ABOVE, "--json", *login_args()])
    no_secrets(p.stdout + p.stderr)
    assert p.returncode == 0, H.describe(p)
    plan = json.loads(p.stdout)
    jobs = plan["jobs"]
    H.log(f"plan: {len(jobs)} jobs, {plan['messages']} messages, estimate "
          f"{plan['estimated_seconds']:.1f} s, cost {plan['cost']}")
    assert plan["accounts"] == N_USERS
    assert plan["max_concurrency"] == min(WORKERS, MAX_SRC, MAX_DST)
    # largest first
    secs = [j["seconds"] for j in jobs]
    assert secs == sorted(secs, reverse=True), secs[:10]
    # the largest account is above total/N and split by folder, with one
    # "rest" part taking every folder the others do not name
    parts = [j for j in jobs if j["src_user"] == "u00"]
    assert len(parts) >= 2, parts
    assert sum(1 for j in parts if j["rest"]) == 1
    named = [f for j in parts if not j["rest"] for f in j["folders"]]
    rest = [j for j in parts if j["rest"]][0]
    assert sorted(rest["exclude"]) == sorted(named)
    # small accounts stay whole
    small = [j for j in jobs if j["src_user"] == "u10"]
    assert len(small) == 1 and small[0]["parts"] == 1
    # the refused account is planned (its job records the error)
    bad = [j for j in jobs if j["src_user"] == BAD_USER]
    assert len(bad) == 1 and "refused" in bad[0].get("error", ""), bad
    # counts from STATUS
    total = sum(len(m) for u in users() if u != BAD_USER
                for m in EXPECT[u].values())
    assert plan["messages"] == total, (plan["messages"], total)
    assert plan["cost"]["calibrated"] and plan["cost"]["sample_messages"] > 50
    pred = [x["seconds"] for x in plan["predicted_seconds"]]
    assert len(pred) == WORKERS and pred[0] >= pred[-1] > 0
    # the table form
    p = H.run_ferry(["plan", USERS_CSV, url(S), url(D), "--workers", "2",
                     "--no-calibrate", *login_args()])
    assert p.returncode == 0, H.describe(p)
    assert "predicted time: 1 worker" in p.stdout, p.stdout


def test_plan_imapsync_format():
    # imapsync-style lines: user1;password1;user2;password2
    path = os.path.join(TMP, "users.txt")
    with open(path, "w") as f:
        for u in ("u03", "u04"):
            f.write(f"{u};{PW[u]};{u};{PW[u]}\n")
    p = H.run_ferry(["plan", path, url(S), url(D), "--json", "--no-calibrate"])
    no_secrets(p.stdout + p.stderr)
    assert p.returncode == 0, H.describe(p)
    plan = json.loads(p.stdout)
    assert plan["accounts"] == 2 and all("error" not in j for j in plan["jobs"])


def test_users_file_control_bytes():
    """Issue 12: a NUL in the users file cut the user name ("u03,u0\\0x"
    copied u03 into "u0"): plan and run refuse the file, name it and the
    line, and copy nothing."""
    path = os.path.join(TMP, "nul.csv")
    with open(path, "wb") as f:
        f.write(b"src_user,dst_user\nu02,u02\nu03,u0\x003\n")
    state = os.path.join(TMP, "nul.db")
    for args in (["plan", path, url(S), url(D), "--no-calibrate"],
                 ["run", path, url(S), url(D), "--state", state,
                  "--progress", "none"]):
        p = H.run_ferry([*args, *login_args()], timeout=60)
        assert p.returncode != 0, H.describe(p)
        assert "nul.csv" in p.stderr and "line 3" in p.stderr, H.describe(p)
        assert "NUL" in p.stderr, H.describe(p)
    # nothing ran: no job was recorded
    if os.path.exists(state):
        st = H.run_ferry(["status", "--state", state, "--json"])
        assert '"done": 0' in st.stdout or st.returncode != 0, st.stdout


def start_and_wait(args, kill, low, high):
    """Starts a run; the first one (kill 0) is given until its plan is
    stored (planning alone is ~10 s here); then waits a random time in
    [low, high] seconds or until it ends. Returns (process, delay)."""
    before = len(read_out())
    proc = popen_ferry(args)
    if kill == 0:
        while "plan estimate" not in read_out()[before:] and \
                proc.poll() is None:
            time.sleep(0.05)
    delay = RNG.uniform(low, high)
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    return proc, delay


def test_run_killed_twice_then_complete():
    state = os.path.join(TMP, "state.db")
    ports = [S.port, D.port]
    with ConnSampler(ports) as cs:
        for kill in range(2):
            proc, delay = start_and_wait(run_args(D, state), kill, 0.3, 3.0)
            if kill == 1 and proc.poll() is None:
                # status from another process while the run is going
                st = H.run_ferry(["status", "--state", state, "--json"])
                assert st.returncode == 0, H.describe(st)
                sj = json.loads(st.stdout)
                H.log(f"status during the run: {sj['status']}, "
                      f"{sj['progress']['done']}/{sj['progress']['jobs']} jobs, "
                      f"{sj['progress']['messages']} messages")
                assert sj["status"] in ("running", "failed", "done")
                assert sj["progress"]["jobs"] > N_USERS
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                H.log(f"SIGKILL after {delay:.2f} s (seed {SEED})")
            else:
                H.log(f"run ended before the kill ({delay:.2f} s)")
            proc.wait()
        report = os.path.join(TMP, "report.json")
        t0 = time.monotonic()
        p = H.run_ferry(run_args(D, state, ["--report", report]), timeout=200)
        H.log(f"final run: {time.monotonic() - t0:.1f} s")
    out = p.stdout + p.stderr + read_out()
    no_secrets(out)
    H.log(p.stdout[-3000:])
    # the refused account fails, nothing else
    assert p.returncode == 1, H.describe(p)
    with open(report) as f:
        rep = json.load(f)
    by = {a["src_user"]: a for a in rep["accounts"]}
    assert len(by) == N_USERS
    assert by[BAD_USER]["status"] == "failed", by[BAD_USER]
    assert "refused" in json.dumps(by[BAD_USER]["errors"])
    for u in users():
        if u != BAD_USER:
            assert by[u]["status"] == "done", by[u]
    H.log(f"connection peaks: source {cs.peak[S.port]} (cap {MAX_SRC}), "
          f"target {cs.peak[D.port]} (cap {MAX_DST}), {cs.samples} samples")
    assert cs.samples > 20
    assert 1 <= cs.peak[S.port] <= MAX_SRC, cs.peak
    assert 1 <= cs.peak[D.port] <= MAX_DST, cs.peak
    # every account, by the oracle
    for u in users():
        if u != BAD_USER:
            check_account(D, u)
    # status after the end
    st = H.run_ferry(["status", "--state", state, "--json"])
    assert st.returncode == 0, H.describe(st)
    sj = json.loads(st.stdout)
    assert sj["status"] == "failed" and sj["progress"]["failed"] == 1, sj["progress"]
    st = H.run_ferry(["status", "--state", state])
    assert "run " in st.stdout and BAD_USER in st.stdout, st.stdout
    # a run that holds FILE.lock but has not yet taken the run over (it
    # is starting): status says running, and a second run is kept out
    import fcntl
    with open(state + ".lock", "r+") as lk:
        fcntl.lockf(lk, fcntl.LOCK_EX | fcntl.LOCK_NB)
        st = H.run_ferry(["status", "--state", state, "--json"])
        assert json.loads(st.stdout)["status"] == "running", st.stdout
        p = H.run_ferry(run_args(D, state), timeout=60)
        assert p.returncode != 0 and "another imapferry run" in p.stderr, \
            H.describe(p)
    st = H.run_ferry(["status", "--state", state, "--json"])
    assert json.loads(st.stdout)["status"] == "failed", st.stdout


def test_verify_accounts():
    """imapferry verify with the run's state, for accounts logged in both
    ways (the state key is the one copy/verify use for the same login)."""
    state = os.path.join(TMP, "state.db")
    master = os.path.join(TMP, "master")
    for u in ("u00", "u01", "u02", "u10", "u11"):
        if int(u[1:]) % 2 == 0:
            args = [f"imap://{u}@{S.host}:{S.port}?tls=none",
                    f"imap://{u}@{D.host}:{D.port}?tls=none",
                    "--src-password-file", os.path.join(TMP, "pw", f"{u}.src"),
                    "--dst-password-file", os.path.join(TMP, "pw", f"{u}.dst")]
        else:
            args = [f"imap://master@{S.host}:{S.port}?tls=none",
                    f"imap://master@{D.host}:{D.port}?tls=none",
                    "--src-authzid", u, "--dst-authzid", u,
                    "--src-password-file", master, "--dst-password-file", master]
        p = H.run_ferry(["verify", *args, "--state", state])
        assert p.returncode == 0, H.describe(p)
        assert "0 differences" in p.stdout, p.stdout


def test_cutover_inbox_pass():
    """New mail arrives; a final pass with --folders INBOX copies it."""
    state = os.path.join(TMP, "state.db")
    for u in ("u00", "u05", "u06"):
        extra = write_account_inbox_extra(u, 7)
        EXPECT[u]["INBOX"] += extra
    # the final pass sized first: from STATUS against the last pass, only
    # the 21 new messages count, every other folder one STATUS
    p = H.run_ferry(["plan", USERS_CSV, url(S), url(D), "--state", state, "--final",
                     "--workers", str(WORKERS), "--no-calibrate", "--json",
                     *login_args()])
    no_secrets(p.stdout + p.stderr)
    assert p.returncode == 0, H.describe(p)
    final = json.loads(p.stdout)
    assert final["messages"] == 21, (final["messages"], H.describe(p))
    note = [n for n in final["notes"] if n.startswith("final pass:")]
    assert note and note[0].startswith("final pass: 21 new messages"), final["notes"]
    p = H.run_ferry(["plan", USERS_CSV, url(S), url(D), "--final", "--no-calibrate",
                     *login_args()])
    assert p.returncode != 0 and "--final needs --state" in p.stderr, H.describe(p)
    p = H.run_ferry(run_args(D, state, ["--folders", "INBOX", "--new-run"]),
                    timeout=120)
    no_secrets(p.stdout + p.stderr)
    assert p.returncode in (0, 1), H.describe(p)
    assert "run 2" in p.stdout or "run 3" in p.stdout, p.stdout
    for u in ("u00", "u05", "u06"):
        check_account(D, u, only={"INBOX"})


def write_account_inbox_extra(user, n):
    md = S.maildir(user)
    mids = []
    for i in range(n):
        mid, data = message(user, "INBOX-late", 100000 + i, 1500)
        when = 1_600_000_000 + i
        p = os.path.join(md, "new", f"{when}.M{i}P9.late")
        with open(p, "wb") as fh:
            fh.write(data)
        os.chown(p, H.MAIL_UID, H.MAIL_GID)
        mids.append(mid)
    return mids


def test_maildir_target():
    """The same scheduler with the Maildir engine: accounts written
    straight into a Maildir that a Dovecot then serves (the big account
    split into parts copied at the same time)."""
    some = ["u00", "u03", "u04", "u05", "u06", "u07"]
    path = os.path.join(TMP, "md-users.csv")
    with open(path, "w") as f:
        f.write("src_user,dst_user,src_password_file\n")
        for u in some:
            f.write(f"{u},{u},{'pw/' + u + '.src' if int(u[1:]) % 2 == 0 else ''}\n")
    state = os.path.join(TMP, "md.db")
    dst = f"maildir:{D3.data_dir}/%u/Maildir"
    p = H.run_ferry(["run", path, url(S), dst, "--state", state, "--workers", "3",
                     "--split-above", SPLIT_ABOVE, "--owner", "8:8", "--progress",
                     "plain", "--src-admin", MASTER[0], "--src-password-file",
                     os.path.join(TMP, "master")], timeout=200)
    no_secrets(p.stdout + p.stderr)
    assert p.returncode == 0, H.describe(p)
    H.log(p.stdout.splitlines()[-1])
    st = json.loads(H.run_ferry(["status", "--state", state, "--json"]).stdout)
    assert st["status"] == "done", st
    assert sum(1 for a in st["accounts"] if a["src_user"] == "u00") == 1
    for u in some:
        check_account(D3, u)


def solo_status(server, raw="INBOX"):
    c = server.imap(SOLO, PW[SOLO])
    try:
        typ, data = c.status(raw, "(UIDVALIDITY UIDNEXT MESSAGES)")
        assert typ == "OK", data
        return data[0].decode()
    finally:
        c.logout()


def test_maildir_uid_ranges_killed():
    """One account with one large INBOX, Maildir target, 3 workers: the
    plan splits the folder into UID ranges copied at the same time (all
    but the first staged in a scratch folder, then published in UID
    order); the run is SIGKILLed twice and completed. The Maildir that a
    Dovecot then serves has every message once, with the source's UIDs,
    UIDVALIDITY and UIDNEXT, and no scratch folder is left."""
    path = os.path.join(TMP, "solo.csv")
    with open(os.path.join(TMP, "pw", "solo.src"), "w") as f:
        f.write(PW[SOLO] + "\n")
    with open(path, "w") as f:
        f.write("src_user,dst_user,src_password_file\n")
        f.write(f"{SOLO},{SOLO},pw/solo.src\n")
        f.write("u03,u03,\nu04,u04,pw/u04.src\n")
    dst = f"maildir:{D3.data_dir}/%u/Maildir"
    common = [path, url(S), dst, "--workers", "3", "--split-above", "0.2",
              "--owner", "8:8", "--src-admin", MASTER[0],
              "--src-password-file", os.path.join(TMP, "master")]
    p = H.run_ferry(["plan", *common, "--json"], timeout=120)
    assert p.returncode == 0, H.describe(p)
    plan = json.loads(p.stdout)
    ranges = sorted((j["uid_lo"], j["uid_hi"]) for j in plan["jobs"]
                    if j.get("uid_lo") is not None)
    H.log(f"plan: UID ranges of {SOLO}/INBOX: {ranges}")
    assert len(ranges) >= 2, plan["jobs"]
    assert ranges[0][0] == 1 and ranges[-1][1] == 2**32 - 1, ranges
    for (a, b), (c, _) in zip(ranges, ranges[1:]):
        assert c == b + 1, ranges

    state = os.path.join(TMP, "solo.db")
    root = os.path.join(D3.data_dir, SOLO, "Maildir")
    for kill in range(2):
        proc, delay = start_and_wait(["run", *common, "--state", state,
                                      "--progress", "plain", "--backoff", "1"],
                                     kill, 0.2, 2.5)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            H.log(f"SIGKILL after {delay:.2f} s (seed {SEED})")
        proc.wait()
        tmp = os.path.join(root, "tmp")
        if os.path.isdir(tmp):
            H.log(f"after the kill: scratch folders "
                  f"{[n for n in os.listdir(tmp) if n.startswith('.imapferry-stage-')]}")
    p = H.run_ferry(["run", *common, "--state", state, "--progress", "plain",
                     "--backoff", "1", "-v"], timeout=300)
    no_secrets(p.stdout + p.stderr)
    assert p.returncode == 0, H.describe(p)
    H.log([ln for ln in (p.stdout + p.stderr).splitlines() if "published" in ln][-3:])

    st = json.loads(H.run_ferry(["status", "--state", state, "--json"]).stdout)
    solo = [a for a in st["accounts"] if a["src_user"] == SOLO]
    assert solo and solo[0]["jobs"] >= 2 and solo[0]["status"] == "done", solo
    # Dovecot serves the result: the oracle by Message-ID, then UIDs
    check_account(D3, SOLO)
    src = U.snapshot(S, SOLO, PW[SOLO], body=False)["INBOX"]
    got = U.snapshot(D3, SOLO, PW[SOLO], body=False)["INBOX"]
    assert [m["uid"] for m in src] == [m["uid"] for m in got]
    assert [m["msgid"] for m in src] == [m["msgid"] for m in got]
    assert [m["flags"] for m in src] == [m["flags"] for m in got]
    assert [m["idate"] for m in src] == [m["idate"] for m in got]
    s1, s2 = solo_status(S), solo_status(D3)
    H.log(f"source {s1} / target {s2}")
    assert s1.split("(", 1)[1] == s2.split("(", 1)[1], (s1, s2)
    left = [n for n in os.listdir(os.path.join(root, "tmp"))
            if n.startswith(".imapferry-stage-")]
    assert not left, left
    # the plan's Maildir probe wrote into a scratch folder and removed it
    probes = [os.path.join(dp, n) for dp, dn, _ in os.walk(D3.data_dir)
              for n in dn if n.startswith(".imapferry-probe-")]
    assert not probes, probes
    for u in ("u03", "u04"):
        check_account(D3, u)
    # an incremental pass of the same split (a new run, nothing changed):
    # every range finds its folder unchanged, the publisher finds nothing
    p = H.run_ferry(["run", *common, "--state", state, "--progress", "plain",
                     "--new-run"], timeout=300)
    assert p.returncode == 0, H.describe(p)
    assert [m["uid"] for m in U.snapshot(D3, SOLO, PW[SOLO], body=False)["INBOX"]] == \
        [m["uid"] for m in src]
    # and imapferry verify agrees, by UID
    p = H.run_ferry(["verify", f"imap://{SOLO}@{S.host}:{S.port}?tls=none",
                     f"maildir:{root}", "--src-password-file",
                     os.path.join(TMP, "pw", "solo.src")], timeout=120)
    assert p.returncode == 0, H.describe(p)
    assert "0 differences" in p.stdout, p.stdout


def test_all_logins_refused():
    """Wrong credentials for everyone: the run stops after five refusals
    instead of trying every account, and says why."""
    path = os.path.join(TMP, "bad.csv")
    with open(path, "w") as f:
        for u in users()[10:18]:
            f.write(f"{u};wrong-{u};{u};wrong-{u}\n")
    state = os.path.join(TMP, "bad.db")
    p = H.run_ferry(["run", path, url(S), url(D), "--state", state,
                     "--workers", "1", "--progress", "none"], timeout=120)
    for u in users()[10:18]:
        assert f"wrong-{u}" not in p.stdout + p.stderr
    assert p.returncode == 3, H.describe(p)   # the run stopped
    assert "refused the login and none worked" in p.stdout, H.describe(p)
    st = json.loads(H.run_ferry(["status", "--state", state, "--json"]).stdout)
    assert st["status"] == "stopped", st["status"]
    assert st["progress"]["failed"] == 5 and st["progress"]["pending"] == 3, \
        st["progress"]


def test_estimate_vs_measured():
    """An uninterrupted run into a fresh target: the plan's estimate next
    to the measured time (reported, not asserted: the +-30 % target is for
    the benchmark corpus)."""
    state = os.path.join(TMP, "state2.db")
    t0 = time.monotonic()
    p = H.run_ferry(run_args(D2, state), timeout=200)
    wall = time.monotonic() - t0
    assert p.returncode == 1, H.describe(p)      # BAD_USER only
    last = [ln for ln in p.stdout.splitlines() if ln.startswith("run 1 ")]
    assert last, p.stdout
    H.log(last[0])
    est = float(last[0].split("plan estimate ")[1].split(" s")[0])
    meas = float(last[0].split("messages, ")[1].split(" s")[0])
    print(f"estimate vs measured: plan {est:.1f} s, run {meas:.1f} s "
          f"(ratio {meas / est if est else 0:.2f}), wall with planning {wall:.1f} s")
    for u in ("u00", "u01", "u33"):
        check_account(D2, u)


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("skip all: needs root for Dovecot")
        print("0 passed, 0 failed")
        sys.exit(0)
    if not shutil.which("ss"):
        print("skip all: ss not installed")
        print("0 passed, 0 failed")
        sys.exit(0)
    H.log(f"test_run: seed {SEED}")
    H.run_tests(setup=setup)
