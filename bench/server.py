#!/usr/bin/env python3
"""imapferry whole-server benchmark: the plan's estimate against the run, and
what splitting a large account buys.

    python3 bench/server.py                  # 3 runs of everything (15 min on a quiet 2-core machine)
    python3 bench/server.py --quick          # 1 run of each configuration (about 6 min)
    python3 bench/server.py --parts estimate --runs 1 --est-workers 2

For every configuration (corpus, workers N, splitting on or off) and run:
a fresh, empty target Dovecot; `imapferry plan --workers N --json` (its
"estimated_seconds" is the estimate); then `imapferry run --workers N` with
a fresh state file (it plans again; its own estimate and its planning time
are recorded too); the measured time is the run's elapsed time after its
planning (report "elapsed_seconds"), the process's whole wall time is kept
as well. The target is then checked with imaplib: every folder holds the
manifest's message count. Runs of all configurations are interleaved (run
1 of each, then run 2 of each, ...), so a slow minute on a shared machine
does not land on one configuration only.

Parts:
  estimate  main corpus (gen.py --users 3 --messages 1500 --seed 7), N in
            --est-workers (1,2,4), splitting on (the default of run)
  split     main corpus, N in --split-workers (3,4), with and without
            --no-split (the split runs of N that are also in --est-workers
            are shared)
  skew      the skewed corpus (--skew-users 8 --skew-messages 800, seed 7:
            one account holds 79 % of the messages), N in --skew-workers
            (3,4), with and without --no-split
  maildir   main corpus into a Maildir written directly (the transparent
            cutover target: one large folder is also split by UID range),
            N in --maildir-workers (2,3), with and without --no-split;
            checked by counting the files of every folder
  slow      the same Maildir target, but the source served through a proxy
            that gives every session at most --slow-rate MB/s (20): an
            old server slow per session, where splitting the largest
            mailbox across sessions is what shortens the run; N in
            --slow-workers (4), with and without --no-split

Needs root, dovecot and a built imapferry. Writes bench/results/server-latest.json
and server-latest.md (and server-TAG.* with --tag). Python 3 standard library.
"""

import argparse
import asyncio
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integ"))
import harness  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_DIR = "/var/tmp/ifsrv"   # short: Dovecot's unix socket paths must stay < 107 bytes
MASTER = ("master", "masterpw")


def _short_tempdir(tag, base=None):
    """harness.short_tempdir, but under SERVER_DIR: other jobs on a shared
    machine clean /tmp, and a source that vanishes mid-bench is lost time."""
    os.makedirs(SERVER_DIR, exist_ok=True)
    os.chmod(SERVER_DIR, 0o755)
    d = tempfile.mkdtemp(prefix=f"{tag[:8]}-", dir=base or SERVER_DIR)
    os.chmod(d, 0o755)          # the servers drop privileges and must traverse it
    return d


harness.short_tempdir = _short_tempdir


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class BenchError(Exception):
    """A wrong result or a failed tool: fatal."""


# --------------------------------------------------------------------------
# corpus

def corpus(cache, users, messages, seed):
    """Generate (once, cached like bench/run.py and the harness) and return
    (root, manifest rows)."""
    gen = harness.corpus_gen_path()
    with open(gen, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    root = os.path.join(cache, f"corpus-{digest}-u{users}-m{messages}-s{seed}-maildir")
    if not os.path.exists(os.path.join(root, "manifest.jsonl")):
        os.makedirs(cache, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix="gen-", dir=cache)
        log(f"bench: generating {root} (about 40 s)")
        subprocess.run([sys.executable, gen, "--out", tmp, "--users", str(users),
                        "--messages", str(messages), "--seed", str(seed), "--maildir"],
                       check=True, stdout=subprocess.DEVNULL)
        os.rename(tmp, root)
    with open(os.path.join(root, "manifest.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return root, rows


def expected(rows):
    """{user: {folder: messages}} from the manifest."""
    out = {}
    for r in rows:
        d = out.setdefault(r["user"], {})
        d[r["folder"]] = d.get(r["folder"], 0) + 1
    return out


# --------------------------------------------------------------------------
# CPU accounting (as in bench/run.py)

def tree_cpu(pid):
    """CPU seconds of a server instance: its master and every live
    descendant, children reaped by the master included (cutime/cstime)."""
    total = 0
    for p in [pid] + harness.descendants(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                s = f.read()
        except OSError:
            continue
        v = s[s.rfind(")") + 2:].split()
        total += int(v[11]) + int(v[12]) + int(v[13]) + int(v[14])
    return total / CLK_TCK


def sys_busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK_TCK


def wait_quiet(max_wait, threshold=0.3):
    """Wait (up to max_wait s) until the machine is busy for less than
    threshold cores over one second; returns the last load seen."""
    deadline = time.monotonic() + max_wait
    while True:
        b0, t0 = sys_busy(), time.monotonic()
        time.sleep(1.0)
        load = (sys_busy() - b0) / (time.monotonic() - t0)
        if load < threshold or time.monotonic() >= deadline:
            return load
        time.sleep(1.0)


def imap_children(pid):
    n = 0
    for p in harness.descendants(pid):
        try:
            with open(f"/proc/{p}/comm") as f:
                n += f.read().strip() == "imap"
        except OSError:
            pass
    return n


def settle(servers, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(imap_children(s.pid) == 0 for s in servers if s is not None):
            return
        time.sleep(0.05)


# --------------------------------------------------------------------------
# servers

def start_dovecot(d):
    """d.start(), tolerating the harness's race with Dovecot's pid file."""
    try:
        d.start()
    except (IndexError, ValueError):
        deadline = time.monotonic() + 10
        while True:
            try:
                with open(d.pid_path) as f:
                    d.pid = int(f.read().split()[0])
                break
            except (IndexError, ValueError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        harness._servers.append(d)
        d._wait_ready(20, lambda: harness.proc_alive(d.pid))
    return d


def folder_counts(server, user):
    """{folder (manifest spelling): messages} of the non-empty folders, as
    imaplib sees them (logged in as the master user on behalf of user)."""
    c = server.imap(MASTER[0], MASTER[1], authzid=user, timeout=120)
    try:
        f = harness.oracle_folders(c, with_size=False)
    finally:
        c.logout()
    return {name: e["messages"] for name, e in f.items()
            if e["selectable"] and e["messages"] > 0}


def check_maildir_counts(what, exp, root):
    """Every folder of the manifest has its message count in the Maildir
    written under root (files in cur/ and new/), and no scratch folder of a
    UID-range split is left in any tmp/."""
    for user, want in exp.items():
        md = os.path.join(root, user, "Maildir")
        got = {}
        for folder in want:
            d = md if folder == "INBOX" else os.path.join(
                md, "." + harness.mutf7_encode(folder).replace("/", "."))
            got[folder] = sum(len(os.listdir(os.path.join(d, sub)))
                              for sub in ("cur", "new")
                              if os.path.isdir(os.path.join(d, sub)))
            tmp = os.path.join(d, "tmp")
            left = [n for n in os.listdir(tmp) if n.startswith(".imapferry-stage-")] \
                if os.path.isdir(tmp) else []
            if left:
                raise BenchError(f"{what}: {user}/{folder}: scratch folders left: {left}")
        if want != got:
            diff = {k: (want[k], got[k]) for k in want if want[k] != got[k]}
            raise BenchError(f"{what}: {user}: message counts differ from the manifest "
                             f"(folder: (expected, found)): {diff}")


def check_counts(what, exp, server):
    for user, want in exp.items():
        got = folder_counts(server, user)
        if want != got:
            diff = {k: (want.get(k), got.get(k)) for k in sorted(set(want) | set(got))
                    if want.get(k) != got.get(k)}
            raise BenchError(f"{what}: {user}: message counts differ from the manifest "
                             f"(folder: (expected, found)): {diff}")


class Source:
    """A source Dovecot serving one corpus, and what a run needs."""

    def __init__(self, name, root, rows, work):
        self.name, self.root, self.rows = name, root, rows
        self.exp = expected(rows)
        self.users = sorted(self.exp)
        self.messages = len(rows)
        self.bytes = sum(r["size"] for r in rows)
        self.per_user = {u: sum(self.exp[u].values()) for u in self.users}
        self.server = harness.Dovecot("bsrc", users={u: "unused-pw" for u in self.users},
                                      master=MASTER, ssl=False)
        self.users_csv = os.path.join(work, f"{name}-users.csv")
        with open(self.users_csv, "w") as f:
            f.write("src_user,dst_user\n")
            for u in self.users:
                f.write(f"{u},{u}\n")

    def start(self):
        t = time.monotonic()
        for u in self.users:
            self.server.load_maildir(u, os.path.join(self.root, u))
        start_dovecot(self.server)
        check_counts(f"source {self.name}", self.exp, self.server)
        log(f"bench: source {self.name} up in {time.monotonic() - t:.0f} s "
            f"({self.messages} messages, {self.bytes / 1e6:.0f} MB, users "
            + ", ".join(f"{u}={self.per_user[u]}" for u in self.users) + ")")

    def stop(self):
        self.server.stop()


# --------------------------------------------------------------------------
# one measured run

class ThrottleProxy:
    """A TCP proxy on 127.0.0.1 in front of the source that serves every
    connection at most rate bytes/s (server to client): an old server whose
    sessions are each slow (one process per session on a slow disk, as in
    ../shared/docs/MISSION.md) while many sessions at once are not."""

    def __init__(self, target_port, rate):
        self.target_port, self.rate = target_port, rate
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = None
        self.t = threading.Thread(target=self._main, daemon=True)
        self.t.start()
        self.ready.wait(10)

    def _main(self):
        asyncio.set_event_loop(self.loop)
        srv = self.loop.run_until_complete(
            asyncio.start_server(self._client, harness.HOST, 0))
        self.port = srv.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    async def _pipe(self, reader, writer, rate):
        start, sent = time.monotonic(), 0
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if rate:
                    due = start + (sent + len(data)) / rate
                    now = time.monotonic()
                    if due > now:
                        await asyncio.sleep(due - now)
                sent += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _client(self, creader, cwriter):
        try:
            sreader, swriter = await asyncio.open_connection(harness.HOST,
                                                             self.target_port)
        except OSError:
            cwriter.close()
            return
        await asyncio.gather(self._pipe(creader, swriter, 0),
                             self._pipe(sreader, cwriter, self.rate))

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.t.join(5)


def src_port(bench, src):
    proxy = getattr(bench, "proxy", None)
    return proxy.port if proxy is not None else src.server.port


def ferry_args(bench, src, dst, workers, split, maildir=None):
    """maildir: a directory: the target is maildir:DIR/%u/Maildir (dst unused)."""
    if maildir is not None:
        args = [src.users_csv,
                f"imap://%u@{harness.HOST}:{src_port(bench, src)}?tls=none",
                f"maildir:{maildir}/%u/Maildir",
                "--src-admin", MASTER[0], "--src-password-file", bench.master_pw_file,
                "--workers", str(workers)]
        if not split:
            args.append("--no-split")
        return args
    args = [src.users_csv,
            f"imap://%u@{harness.HOST}:{src_port(bench, src)}?tls=none",
            f"imap://%u@{harness.HOST}:{dst.port}?tls=none",
            "--src-admin", MASTER[0], "--src-password-file", bench.master_pw_file,
            "--dst-admin", MASTER[0], "--dst-password-file", bench.master_pw_file,
            "--workers", str(workers)]
    if not split:
        args.append("--no-split")
    return args


def run_cmd(cmd, timeout):
    """Runs cmd; returns (wall s, client CPU s, CompletedProcess-like dict)."""
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    try:
        _, status, ru = os.wait4(p.pid, 0)
    except BaseException:
        p.kill()
        raise
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    err.seek(0)
    r = {"rc": p.returncode, "stdout": out.read().decode("utf-8", "replace"),
         "stderr": err.read().decode("utf-8", "replace")}
    out.close()
    err.close()
    return wall, ru.ru_utime + ru.ru_stime, r


def measure(bench, src, workers, split, label, maildir=False):
    """plan --json, then run, into a fresh target (a Dovecot, or with
    maildir a Maildir tree written directly). Returns the run's record."""
    a = bench.args
    d = tempfile.mkdtemp(prefix=f"{label}-", dir=bench.work)
    mdroot = os.path.join(d, "md") if maildir else None
    dst = harness.Dovecot("bdst", users={u: "unused-pw" for u in src.users},
                          master=MASTER, ssl=False)
    try:
        if not maildir:
            start_dovecot(dst)
        settle([src.server])
        os.sync()
        load = wait_quiet(a.quiet_wait) if a.quiet_wait > 0 else None
        args = ferry_args(bench, src, dst, workers, split, mdroot)

        # the plan alone (it probes the target: a scratch folder, deleted)
        pwall, _, p = run_cmd([bench.bin, "plan", *args, "--json"], 600)
        if p["rc"] != 0:
            raise BenchError(f"plan exited {p['rc']}: {p['stderr'][-2000:]}")
        plan = json.loads(p["stdout"])
        settle([src.server, None if maildir else dst])

        # the run (it plans again, then copies)
        report = os.path.join(d, "report.json")
        cpu0 = (tree_cpu(src.server.pid), 0 if maildir else tree_cpu(dst.pid))
        busy0 = sys_busy()
        wall, ccpu, r = run_cmd([bench.bin, "run", *args, "--state",
                                 os.path.join(d, "state.db"), "--progress", "none",
                                 "--report", report], 3600)
        settle([src.server, None if maildir else dst])
        busy = sys_busy() - busy0
        scpu = tree_cpu(src.server.pid) - cpu0[0]
        dcpu = 0 if maildir else tree_cpu(dst.pid) - cpu0[1]
        if r["rc"] != 0:
            raise BenchError(f"run exited {r['rc']}: {r['stdout'][-1500:]}"
                             f"{r['stderr'][-1500:]}")
        with open(report) as f:
            rep = json.load(f)
        m = re.search(r"plan estimate ([0-9.]+) s with \d+ workers \(planning took ([0-9.]+) s\)",
                      r["stderr"])
        run_est = float(m.group(1)) if m else rep.get("estimated_seconds")
        run_plan_s = float(m.group(2)) if m else None
        if maildir:
            check_maildir_counts(f"target ({label})", src.exp, mdroot)
        else:
            check_counts(f"target ({label})", src.exp, dst)
        measured = rep["elapsed_seconds"]
        est = plan["estimated_seconds"]
        return {
            "corpus": src.name + ("-maildir" if maildir else ""), "workers": workers, "split": split, "label": label,
            "plan_estimate_s": est,
            "plan_predicted_s": {str(x["workers"]): x["seconds"]
                                 for x in plan["predicted_seconds"]},
            "plan_wall_s": pwall,
            "plan_jobs": len(plan.get("jobs", [])),
            "plan_total_work_s": plan["total_work_s"],
            "plan_cost": plan["cost"],
            "plan_notes": plan.get("notes", []),
            "run_estimate_s": run_est,
            "run_planning_s": run_plan_s,
            "measured_s": measured,                 # after the run's planning
            "run_wall_s": wall,                     # the whole process
            "error_pct": 100.0 * (est - measured) / measured,
            "run_error_pct": (100.0 * (run_est - measured) / measured
                              if run_est is not None else None),
            "messages": rep["progress"]["messages"],
            "client_cpu_s": ccpu, "src_cpu_s": scpu, "dst_cpu_s": dcpu,
            "other_cpu_s": busy - ccpu - scpu - dcpu,
            "idle_load_before": load,
            "accounts": [{"user": x["src_user"], "jobs": x["jobs"],
                          "messages": x["messages"], "seconds": x["seconds"]}
                         for x in rep["accounts"]],
            "run_summary": r["stdout"].strip().splitlines()[-1:],
        }
    finally:
        if not maildir:
            dst.stop()
        shutil.rmtree(d, ignore_errors=True)



# --------------------------------------------------------------------------
# report

def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def summarize(runs):
    s = {k: med([r[k] for r in runs]) for k in
         ("plan_estimate_s", "run_estimate_s", "measured_s", "run_wall_s", "plan_wall_s",
          "run_planning_s", "other_cpu_s", "plan_jobs")}
    s["measured_min"] = min(r["measured_s"] for r in runs)
    s["measured_max"] = max(r["measured_s"] for r in runs)
    # error of the medians, and the per-run errors
    s["error_pct"] = 100.0 * (s["plan_estimate_s"] - s["measured_s"]) / s["measured_s"]
    s["run_error_pct"] = (100.0 * (s["run_estimate_s"] - s["measured_s"]) / s["measured_s"]
                          if s["run_estimate_s"] is not None else None)
    s["errors_pct"] = [r["error_pct"] for r in runs]
    s["run_errors_pct"] = [r["run_error_pct"] for r in runs]
    s["runs"] = len(runs)
    s["messages"] = runs[0]["messages"]
    return s


def fmt(v, f="{:.1f}"):
    return "–" if v is None else f.format(v)


def pct(v):
    return "–" if v is None else f"{v:+.0f} %"


def markdown(results, sources, meta):
    L = []
    L.append("Estimate: `imapferry plan --workers N --json` \"estimated_seconds\" (the run's "
             "own plan in brackets). Measured: the run's time after its planning "
             "(report \"elapsed_seconds\"), median and min–max. Error = (estimate − "
             "measured) / measured, of the medians; per-run errors in the last column.")
    L.append("")
    L.append("| corpus | N | split | estimate s | measured s (min–max) | error | "
             "run's own estimate (error) | within ±30 % | per-run errors |")
    L.append("|---|---:|---|---:|---|---:|---|---|---|")
    order = {"main": 0, "skew": 1, "main-maildir": 2, "main-slow-maildir": 3}
    for key in sorted(results, key=lambda k: (order.get(k[0], 9), not k[2], k[1])):
        s = results[key]
        c, n, sp = key
        ok = "yes" if abs(s["error_pct"]) <= 30 else "**no**"
        L.append(f"| {c} | {n} | {'on' if sp else 'off'} | {s['plan_estimate_s']:.1f} | "
                 f"{s['measured_s']:.1f} ({s['measured_min']:.1f}–{s['measured_max']:.1f}) | "
                 f"{pct(s['error_pct'])} | {fmt(s['run_estimate_s'])} "
                 f"({pct(s['run_error_pct'])}) | {ok} | "
                 + ", ".join(f"{e:+.0f}" for e in s["errors_pct"]) + " |")
    L.append("")
    rows = []
    for (c, n, sp), s in results.items():
        if sp and (c, n, False) in results:
            rows.append((c, n, s, results[(c, n, False)]))
    if rows:
        L.append("Splitting: the run's time after planning (median; min–max) with the "
                 "default split and with `--no-split`; jobs = the plan's job count; whole "
                 "wall = the `run` process including its planning.")
        L.append("")
        L.append("| corpus | N | split: jobs | split: measured s | no-split: jobs | "
                 "no-split: measured s | split ÷ no-split | whole wall s split / no-split |")
        L.append("|---|---:|---:|---|---:|---|---:|---|")
        for c, n, s, ns in sorted(rows, key=lambda r: (order.get(r[0], 9), r[1])):
            L.append(f"| {c} | {n} | {s['plan_jobs']:.0f} | {s['measured_s']:.1f} "
                     f"({s['measured_min']:.1f}–{s['measured_max']:.1f}) | "
                     f"{ns['plan_jobs']:.0f} | {ns['measured_s']:.1f} "
                     f"({ns['measured_min']:.1f}–{ns['measured_max']:.1f}) | "
                     f"{s['measured_s'] / ns['measured_s']:.2f} | "
                     f"{s['run_wall_s']:.1f} / {ns['run_wall_s']:.1f} |")
        L.append("")
    for name, src in sources.items():
        big = max(src["per_user"].items(), key=lambda kv: kv[1])
        L.append(f"- {name}: `{src['gen']}`: {src['messages']:,} messages, "
                 f"{src['bytes'] / 1e6:,.0f} MB, {len(src['per_user'])} accounts; the largest "
                 f"({big[0]}) holds {big[1]:,} messages "
                 f"({100 * big[1] / src['messages']:.0f} %)")
    L.append(f"- {meta}")
    return "\n".join(L) + "\n"


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    try:
        dv = subprocess.run(["dovecot", "--version"], stdout=subprocess.PIPE,
                            text=True).stdout.split()[0]
    except (OSError, IndexError):
        dv = "?"
    return {"nproc": os.cpu_count(), "cpu": model, "ram_gb": round(mem_kb / 1048576, 1),
            "kernel": platform.release(), "dovecot": dv}


# --------------------------------------------------------------------------

class Bench:
    pass


def ints(s):
    return [int(x) for x in s.split(",") if x]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true",
                    help="1 run of each configuration")
    ap.add_argument("--parts", default="estimate,split,skew,maildir,slow")
    ap.add_argument("--est-workers", default="1,2,4")
    ap.add_argument("--split-workers", default="3,4")
    ap.add_argument("--skew-workers", default="3,4")
    ap.add_argument("--maildir-workers", default="2,3")
    ap.add_argument("--slow-workers", default="4")
    ap.add_argument("--slow-rate", type=float, default=20,
                    help="part slow: MB/s per source session (default 20)")
    ap.add_argument("--no-warm", action="store_true",
                    help="skip the untimed warm-up run per corpus")
    ap.add_argument("--quiet-wait", type=float, default=3,
                    help="before each run, wait up to this many seconds for the CPUs "
                         "to be idle (0: do not wait)")
    ap.add_argument("--bin", default=harness.BIN)
    ap.add_argument("--cache", default="/var/tmp/imapferry-bench")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--tag", default=None, help="also write server-TAG.json/.md")
    ap.add_argument("--users", type=int, default=3)
    ap.add_argument("--messages", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--skew-users", type=int, default=8)
    ap.add_argument("--skew-messages", type=int, default=800)
    ap.add_argument("--skew-seed", type=int, default=7)
    a = ap.parse_args()
    if a.quick:
        a.runs = 1
    parts = [p for p in a.parts.split(",") if p]
    for p in parts:
        if p not in ("estimate", "split", "skew", "maildir", "slow"):
            ap.error(f"unknown part {p}")
    if os.geteuid() != 0:
        sys.exit("bench: needs root (throwaway Dovecot instances)")
    if not os.access(a.bin, os.X_OK):
        sys.exit(f"bench: {a.bin} not built (cmake --preset default && cmake --build build)")
    if not shutil.which("dovecot"):
        sys.exit("bench: dovecot not installed (scripts/install-deps.sh)")

    # configurations: corpus -> [(workers, split)]
    configs = {"main": [], "skew": []}
    if "estimate" in parts:
        configs["main"] += [(n, True, False, False) for n in ints(a.est_workers)]
    if "split" in parts:
        for n in ints(a.split_workers):
            configs["main"] += [(n, True, False, False), (n, False, False, False)]
    if "skew" in parts:
        for n in ints(a.skew_workers):
            configs["skew"] += [(n, True, False, False), (n, False, False, False)]
    if "maildir" in parts:
        for n in ints(a.maildir_workers):
            configs["main"] += [(n, True, True, False), (n, False, True, False)]
    if "slow" in parts:
        for n in ints(a.slow_workers):
            configs["main"] += [(n, True, True, True), (n, False, True, True)]
    for k in configs:
        seen = []
        for c in configs[k]:
            if c not in seen:
                seen.append(c)
        configs[k] = seen

    t_start = time.monotonic()
    b = Bench()
    b.args = a
    b.work = tempfile.mkdtemp(prefix="ife-server-bench-", dir="/var/tmp")
    b.bin = os.path.join(b.work, "imapferry")      # a rebuild mid-bench must not mix builds
    shutil.copy2(a.bin, b.bin)
    with open(b.bin, "rb") as f:
        b.bin_sha256 = hashlib.sha256(f.read()).hexdigest()
    b.master_pw_file = os.path.join(b.work, "master.pw")
    with open(b.master_pw_file, "w") as f:
        f.write(MASTER[1] + "\n")
    os.chmod(b.master_pw_file, 0o600)

    gens = {"main": (a.users, a.messages, a.seed),
            "skew": (a.skew_users, a.skew_messages, a.skew_seed)}
    plan_of = {k: [(k, c) for c in configs[k]] for k in configs}
    raw, sources = {}, {}
    try:
        for name in ("main", "skew"):
            todo = plan_of[name]
            if not todo:
                continue
            u, m, s = gens[name]
            root, rows = corpus(a.cache, u, m, s)
            src = Source(name, root, rows, b.work)
            info = {"root": root, "messages": src.messages, "bytes": src.bytes,
                    "per_user": src.per_user,
                    "gen": f"gen.py --users {u} --messages {m} --seed {s} --maildir"}
            sources[name] = info
            proxy = None
            try:
                src.start()
                if any(c[3] for _, c in todo):
                    proxy = ThrottleProxy(src.server.port, a.slow_rate * 1e6)
                    log(f"bench: {name}: throttling proxy on port {proxy.port}, "
                        f"{a.slow_rate:g} MB/s per session")
                if not a.no_warm:
                    # Dovecot builds its index files on first access and the page
                    # cache fills: one untimed run
                    log(f"bench: {name}: warm-up run (untimed)")
                    r = measure(b, src, 2, True, f"{name}-warm")
                    log(f"bench: {name}: warm-up {r['measured_s']:.1f} s")
                for i in range(a.runs):
                    for kind, (n, split, md, slow) in todo:
                        label = (f"{kind}{'-slow' if slow else ''}"
                                 f"{'-maildir' if md else ''}-n{n}-"
                                 f"{'split' if split else 'nosplit'}-{i + 1}")
                        b.proxy = proxy if slow else None
                        r = measure(b, src, n, split, label, maildir=md)
                        b.proxy = None
                        if slow:
                            r["corpus"] = f"{kind}-slow-maildir"
                        raw.setdefault((r["corpus"], n, split), []).append(r)
                        log(f"bench: {label:24} plan {r['plan_estimate_s']:6.1f} s "
                            f"(run's {fmt(r['run_estimate_s'])}) measured "
                            f"{r['measured_s']:6.1f} s error {r['error_pct']:+5.0f} % "
                            f"jobs {r['plan_jobs']} whole {r['run_wall_s']:.1f} s; "
                            f"other CPU {r['other_cpu_s']:.1f} s; elapsed "
                            f"{time.monotonic() - t_start:.0f} s")
            finally:
                if proxy is not None:
                    proxy.stop()
                src.stop()
    finally:
        shutil.rmtree(b.work, ignore_errors=True)

    results = {k: summarize(v) for k, v in raw.items()}
    mach = machine()
    meta = (f"{a.runs} run(s) per configuration, median; {mach['nproc']} × {mach['cpu']}, "
            f"{mach['ram_gb']} GB RAM, Dovecot {mach['dovecot']}, source, target and "
            f"imapferry on one machine over 127.0.0.1; total bench time "
            f"{time.monotonic() - t_start:.0f} s")
    md = markdown(results, sources, meta)
    print(md)
    os.makedirs(a.out, exist_ok=True)
    doc = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": mach, "args": vars(a),
           "imapferry_sha256": b.bin_sha256, "corpora": sources,
           "results": [dict(corpus=k[0], workers=k[1], split=k[2], **v)
                       for k, v in results.items()],
           "runs": [r for v in raw.values() for r in v]}
    names = ["server-latest"] + ([f"server-{a.tag}"] if a.tag else [])
    for nm in names:
        with open(os.path.join(a.out, nm + ".json"), "w") as f:
            json.dump(doc, f, indent=1)
        with open(os.path.join(a.out, nm + ".md"), "w") as f:
            f.write(md)


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        log(f"bench: FAILED: {e}")
        sys.exit(1)
