#!/usr/bin/env python3
"""imapferry run on several machines sharing a PostgreSQL state.

Three "machines" (imapferry run processes with different --machine names)
run the same command against one throwaway PostgreSQL and one Dovecot pair
with 36 accounts. Each test starts from an empty target and a new database:

  test_three_machines_kill9     one machine is SIGKILLed mid-run: its jobs
                                finish elsewhere after the lease expires;
                                the caps hold over all three (ss); every
                                account complete, nothing twice
  test_sigstop_past_lease       a machine is SIGSTOPped past its lease,
                                another takes its job, SIGCONT: the stalled
                                one writes no duplicate and no stale mapping
  test_postgres_restart         PostgreSQL restarts mid-run: the machines
                                reconnect or stop; started again they finish
                                with nothing lost
  test_status                   status lists every machine (text, --json)

The oracle is imaplib (per folder: every Message-ID once) and the state:
every mapping points at a target UID that holds that message.
"""

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import json

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import copy_util as U  # noqa: E402

N_USERS = 36
BIG = {"u00": 1500, "u01": 1200, "u02": 1000, "u03": 800}
MASTER = ("master", "mpw-Mm7xQ")
WORKERS = 2
MAX_SRC = 4
MAX_DST = 3
LEASE = 3
SEED = int(os.environ.get("IMAPFERRY_TEST_SEED", str(int(time.time()))))
RNG = random.Random(SEED)

S = D = PG = None
TMP = None
PW = {}
EXPECT = {}
USERS_CSV = None
DB_N = [0]


def users():
    return [f"u{i:02d}" for i in range(N_USERS)]


def message(user, folder, i, size):
    mid = f"<{user}.{folder}.{i}@machines.test>"
    head = (f"From: a{i % 5}@example.org\r\nTo: {user}@example.org\r\n"
            f"Subject: m {i}\r\nMessage-ID: {mid}\r\n"
            f"Date: Tue, 4 Jun 2019 10:{i % 60:02d}:00 +0000\r\n\r\n")
    line = f"{user} {folder} {i} lorem ipsum dolor sit amet\r\n"
    return mid, (head + line * max(1, (size - len(head)) // len(line))).encode()


def write_account(server, user, n):
    folders = ["INBOX", "Sent", "Archive"] if n >= 500 else ["INBOX"]
    out = {f: [] for f in folders}
    md = server.maildir(user)
    for i in range(n):
        f = folders[i % len(folders)]
        mid, data = message(user, f, i, RNG.randint(800, 6000))
        fs = "" if f == "INBOX" else "." + f
        d = os.path.join(md, fs, "cur")
        os.makedirs(d, exist_ok=True)
        for sub in ("new", "tmp"):
            os.makedirs(os.path.join(md, fs, sub), exist_ok=True)
        when = 1_500_000_000 + i * 60
        with open(os.path.join(d, f"{when}.M{i}P3.m,S={len(data)}:2,S"), "wb") as fh:
            fh.write(data)
        out[f].append(mid)
    H.chown_tree(os.path.join(server.data_dir, user), H.MAIL_UID, H.MAIL_GID)
    return out


def url(server):
    return f"imap://%u@{server.host}:{server.port}?tls=none"


def fresh_target():
    """Empties every account of the target (a new run from scratch)."""
    for u in users():
        shutil.rmtree(os.path.join(D.data_dir, u), ignore_errors=True)


def new_state():
    DB_N[0] += 1
    return PG.createdb(f"run{DB_N[0]}")


def run_args(state, machine, extra=()):
    m = os.path.join(TMP, "master")
    return ["run", USERS_CSV, url(S), url(D), "--state", state,
            "--machine", machine, "--workers", str(WORKERS),
            "--max-src-conns", str(MAX_SRC), "--max-dst-conns", str(MAX_DST),
            "--lease", str(LEASE), "--backoff", "1", "--no-calibrate",
            "--progress", "plain", "--src-admin", MASTER[0],
            "--src-password-file", m, "--dst-admin", MASTER[0],
            "--dst-password-file", m, *extra]


def start(state, machine, extra=()):
    out = open(os.path.join(TMP, f"{machine}.out"), "ab")
    return subprocess.Popen([H.BIN, *run_args(state, machine, extra)],
                            stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                            env=PG.env())


def output(machine):
    with open(os.path.join(TMP, f"{machine}.out"), "rb") as f:
        return f.read().decode("utf-8", "replace")


def wait(procs, timeout=400):
    deadline = time.monotonic() + timeout
    codes = {}
    for name, p in procs.items():
        try:
            codes[name] = p.wait(max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            raise AssertionError(f"{name} did not finish:\n{output(name)[-3000:]}")
    return codes


def jobs(state_db):
    return query(state_db, "SELECT seq, status, claimed_by, attempts FROM job"
                 " ORDER BY seq")


def query(state_db, sql):
    """psql, or [] while the first machine has not created the schema."""
    try:
        return PG.psql(state_db, sql)
    except RuntimeError as e:
        if "does not exist" in str(e):
            return []
        raise


def check_all(state_db):
    """Every account complete on the target, nothing twice, and every
    mapping of the state points at the right message."""
    for u in users():
        snap = U.snapshot(D, u, PW[u], body=False)
        for folder, mids in EXPECT[u].items():
            raw = H.mutf7_encode(folder)
            assert raw in snap, f"{u}: {folder} missing"
            got = [m["msgid"] for m in snap[raw]]
            dup = {m for m in got if got.count(m) > 1}
            assert not dup, f"{u}/{folder}: copied twice: {sorted(dup)[:3]}"
            missing = set(mids) - set(got)
            assert not missing, f"{u}/{folder}: {len(missing)} missing"
    # the mappings: target UID -> the source message's Message-ID
    rows = PG.psql(state_db, "SELECT f.account, f.src_name, m.src_uid, m.dst_uid"
                   " FROM msg m JOIN folder f ON f.id = m.folder_id")
    by = {}
    for acct, folder, su, du in rows:
        by.setdefault((acct, folder), []).append((int(su), int(du)))
    checked = 0
    for (acct, folder), pairs in by.items():
        user = [u for u in users() if u in acct.split("\n")[0] or acct.endswith(u)]
        if not user:
            continue
        u = max(user, key=len)
        src = {m["uid"]: m["msgid"] for m in U.fetch_folder(
            S.imap(u, PW[u]), folder, body=False)}
        c = D.imap(u, PW[u])
        dst = {m["uid"]: m["msgid"] for m in U.fetch_folder(c, folder, body=False)}
        c.logout()
        dsts = [d for _, d in pairs]
        assert len(dsts) == len(set(dsts)), f"{u}/{folder}: two mappings, one UID"
        for su, du in pairs:
            assert dst.get(du) == src.get(su), \
                f"{u}/{folder}: mapping {su}->{du} is stale"
            checked += 1
    assert checked > 0
    H.log(f"state: {checked} mappings checked")


def setup():
    global S, D, PG, TMP, USERS_CSV
    import contextlib

    @contextlib.contextmanager
    def cm():
        global S, D, PG, TMP, USERS_CSV
        for u in users():
            PW[u] = f"pw-{u}-{RNG.randrange(10**6)}"
        TMP = tempfile.mkdtemp(prefix="ife-mach-", dir="/tmp")
        with H.Dovecot("msrc", users=PW, master=MASTER, ssl=False) as S, \
                H.Dovecot("mdst", users=PW, master=MASTER, ssl=False) as D, \
                H.Postgres("mpg") as PG:
            for u in users():
                EXPECT[u] = write_account(S, u, BIG.get(u, RNG.randint(5, 60)))
            USERS_CSV = os.path.join(TMP, "users.csv")
            with open(USERS_CSV, "w") as f:
                f.write("src_user,dst_user\n" +
                        "\n".join(f"{u}," for u in users()) + "\n")
            with open(os.path.join(TMP, "master"), "w") as f:
                f.write(MASTER[1] + "\n")
            try:
                yield
            finally:
                if not H.KEEP:
                    shutil.rmtree(TMP, ignore_errors=True)
    return cm()


def test_three_machines_kill9():
    fresh_target()
    state = new_state()
    db = state.rsplit("/", 1)[1]
    ports = [S.port, D.port]
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from test_run import ConnSampler
    with ConnSampler(ports) as cs:
        procs = {m: start(state, m) for m in ("m1", "m2", "m3")}
        # m2 dies once it holds a job
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            rows = jobs(db)
            if any(r[1] == "running" and r[2] == "m2" for r in rows):
                break
            assert procs["m2"].poll() is None, output("m2")[-2000:]
            time.sleep(0.1)
        else:
            raise AssertionError("m2 never claimed a job:\n" + output("m2"))
        time.sleep(0.5)
        procs["m2"].kill()
        procs["m2"].wait()
        held = [r for r in jobs(db) if r[1] == "running" and r[2] == "m2"]
        H.log(f"killed m2 holding {len(held)} job(s)")
        codes = wait({k: v for k, v in procs.items() if k != "m2"})
    for m, code in codes.items():
        assert code == 0, f"{m} exited {code}:\n{output(m)[-3000:]}"
    rows = jobs(db)
    assert all(r[1] == "done" for r in rows), rows
    taken = [r for r in held if True]
    for r in taken:
        now = [x for x in rows if x[0] == r[0]][0]
        assert now[2] in ("m1", "m3") and int(now[3]) >= 2, now
    lost = PG.psql(db, "SELECT lost_leases FROM machine WHERE name = 'm2'")
    assert lost and int(lost[0][0]) == len(held), (lost, held)
    H.log(f"caps: source peak {cs.peak[S.port]} (max {MAX_SRC}), target "
          f"peak {cs.peak[D.port]} (max {MAX_DST}), {cs.samples} samples")
    assert cs.peak[S.port] <= MAX_SRC, cs.peak
    assert cs.peak[D.port] <= MAX_DST, cs.peak
    per = PG.psql(db, "SELECT claimed_by, count(*) FROM job GROUP BY 1")
    H.log(f"jobs per machine: {per}")
    check_all(db)


def test_sigstop_past_lease():
    fresh_target()
    state = new_state()
    db = state.rsplit("/", 1)[1]
    procs = {"s1": start(state, "s1")}
    # s1 stops while copying a big account
    deadline = time.monotonic() + 120
    job = None
    while time.monotonic() < deadline and job is None:
        for seq, st, by, att, msgs in query(
                db, "SELECT seq, status, claimed_by, attempts, messages FROM job"
                " WHERE account LIKE '%u0_%' ORDER BY seq"):
            # (progress reaches the table with the heartbeat only: on a
            # fast machine a big job can end before it shows messages)
            if st == "running" and by == "s1":
                job = seq
                break
        time.sleep(0.05)
    assert job is not None, "s1 never ran a big job:\n" + output("s1")
    os.kill(procs["s1"].pid, signal.SIGSTOP)
    # its row was written before its first claim: the lost lease is
    # counted there even when s1 stops before its first heartbeat
    rows = PG.psql(db, "SELECT lost_leases FROM machine WHERE name = 's1'")
    assert rows == [["0"]], rows
    H.log(f"s1 stopped in job {job}")
    time.sleep(LEASE + 3)
    procs["s2"] = start(state, "s2")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        r = PG.psql(db, f"SELECT claimed_by, status FROM job WHERE seq = {job}")[0]
        if r[0] == "s2" or r[1] == "done":
            break
        time.sleep(0.1)
    assert r[0] == "s2", r
    time.sleep(1)
    os.kill(procs["s1"].pid, signal.SIGCONT)
    codes = wait(procs)
    for m, code in codes.items():
        assert code == 0, f"{m} exited {code}:\n{output(m)[-3000:]}"
    assert "taken over" in output("s1"), output("s1")[-2000:]
    lost = PG.psql(db, "SELECT lost_leases FROM machine WHERE name = 's1'")
    assert int(lost[0][0]) >= 1, lost
    check_all(db)


def test_postgres_restart():
    fresh_target()
    state = new_state()
    db = state.rsplit("/", 1)[1]
    procs = {m: start(state, m) for m in ("p1", "p2")}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if sum(int(x[0]) for x in query(db, "SELECT count(*) FROM job WHERE"
                                        " status = 'done'")) >= 3:
            break
        time.sleep(0.1)
    PG.restart(1.0)
    H.log("PostgreSQL restarted")
    codes = wait(procs)
    H.log(f"exit codes after the restart: {codes}")
    # a machine that stopped (a transaction broke) resumes on its next start
    left = int(PG.psql(db, "SELECT count(*) FROM job WHERE status <> 'done'")[0][0])
    if left:
        again = {m: start(state, m) for m in ("p1", "p2")}
        codes = wait(again)
        for m, code in codes.items():
            assert code == 0, f"{m} exited {code}:\n{output(m)[-3000:]}"
    rows = jobs(db)
    assert all(r[1] == "done" for r in rows), rows
    check_all(db)


def test_status():
    state = PG.url(f"run{DB_N[0]}")
    p = subprocess.run([H.BIN, "status", "--state", state], env=PG.env(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.returncode == 0, p.stderr
    assert "machines:" in p.stdout and "p1" in p.stdout, p.stdout
    assert PG.PASSWORD not in p.stdout + p.stderr
    p = subprocess.run([H.BIN, "status", "--state", state, "--json"], env=PG.env(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.returncode == 0, p.stderr
    j = json.loads(p.stdout)
    names = sorted(m["name"] for m in j["machines"])
    assert names == ["p1", "p2"], names
    assert all("lost_leases" in m and "heartbeat_age_seconds" in m for m in j["machines"])
    # a password in the URL is refused, and not echoed
    bad = state.replace("imapferry@", "imapferry:" + PG.PASSWORD + "@")
    p = subprocess.run([H.BIN, "status", "--state", bad], env=PG.env(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.returncode != 0 and PG.PASSWORD not in p.stdout + p.stderr, p.stderr


if __name__ == "__main__":
    H.log(f"seed {SEED}")
    H.run_tests(globals(), setup=setup)
