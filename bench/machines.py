#!/usr/bin/env python3
"""imapferry on several machines (issue 14): 1, 2 and 3 `imapferry run`
processes with different --machine names sharing one throwaway PostgreSQL,
against a source that serves each session at a limited rate (the proxy of
bench/server.py: an old server, one slow process per session), the same
accounts each time; next to the planner's prediction for that many machines.

    python3 bench/machines.py                  # about 4 minutes
    python3 bench/machines.py --machines 1,2,3 --rate 1.5 --workers 2
    python3 bench/machines.py --rate 1.5 --total-rate 5 --tag total5   # a source limit
    python3 bench/machines.py --rate 5 --calibrate-only --tag cal5     # a cost model only

Steps:
  1. the corpus (shared/corpus/gen.py --users 12 --messages 200 --seed 14
     --maildir, cached like bench/server.py) in a source Dovecot, behind
     the throttling proxy (--rate MB/s per session; --total-rate MB/s for
     all sessions together, 0: none);
  2. calibration through the proxy: `imapferry plan --json --save-cost
     COST` (the inventory and the cost model, once);
  3. the prediction: `imapferry plan --inventory PLAN.json --cost COST
     --workers W --machines M [--src-max-rate T] --json`;
  4. for N in --machines: a fresh target Dovecot and a fresh PostgreSQL
     database; N `imapferry run ... --state postgresql://... --machine mK
     --workers W --cost COST --split-above S` started together (no
     calibration before the run: every N plans from the same cost model;
     S the split threshold of the plan for N x W workers: the machine
     that plans knows only its own --workers); measured from the start
     of the processes to the last exit; the target checked against the
     manifest (every folder's message count).

Aggregate throughput = the corpus bytes / measured seconds; the ratio to
N x the one-machine throughput is the scaling efficiency (goal >= 0.8
until the source's total limit). Results: bench/results/machines-latest.
{md,json}. Needs root, dovecot and PostgreSQL (tests/integ/harness.py).
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import server as SB  # noqa: E402  (bench/server.py: corpus, proxy, checks)

harness = SB.harness
log = SB.log


class LimitedProxy(SB.ThrottleProxy):
    """ThrottleProxy with a bounded burst per session and, in addition, a
    limit on all sessions together (total bytes/s, server to client): the
    old server's disks or network."""

    def __init__(self, target_port, rate, total_rate):
        self.total_rate = total_rate
        self.gnext = 0.0
        super().__init__(target_port, rate)

    async def _pipe(self, reader, writer, rate):
        import asyncio
        cnext = 0.0
        try:
            while True:
                data = await reader.read(16384 if rate else 65536)
                if not data:
                    break
                if rate:
                    # a session idle for a while gets at most 50 ms of
                    # credit (ThrottleProxy counts from the connection's
                    # start: after a login and an inventory it sends a
                    # burst, and a calibration measures a faster session)
                    cnext = max(cnext, time.monotonic() - 0.05) + len(data) / rate
                    due = cnext
                    if self.total_rate:
                        # one virtual clock for all sessions (the loop
                        # is single-threaded: no lock)
                        self.gnext = max(self.gnext, time.monotonic()) + \
                            len(data) / self.total_rate
                        due = max(due, self.gnext)
                    now = time.monotonic()
                    if due > now:
                        await asyncio.sleep(due - now)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


def run_machines(b, n, pg, src, proxy, label, split_above):
    """n `imapferry run` processes on one new PostgreSQL database and a
    fresh target. Returns the measured record."""
    a = b.args
    dst = harness.Dovecot("mdst", users={u: "unused-pw" for u in src.users},
                          master=SB.MASTER, ssl=False)
    d = tempfile.mkdtemp(prefix=f"{label}-", dir=b.work)
    try:
        SB.start_dovecot(dst)
        SB.settle([src.server])
        load = SB.wait_quiet(a.quiet_wait) if a.quiet_wait > 0 else None
        state = pg.createdb(label.replace("-", "_"))
        args = [src.users_csv, f"imap://%u@{harness.HOST}:{proxy.port}?tls=none",
                f"imap://%u@{harness.HOST}:{dst.port}?tls=none",
                "--src-admin", SB.MASTER[0], "--src-password-file", b.master_pw_file,
                "--dst-admin", SB.MASTER[0], "--dst-password-file", b.master_pw_file,
                "--workers", str(a.workers), "--max-src-conns", "64",
                "--max-dst-conns", "64", "--cost", b.cost, "--state", state,
                "--progress", "none", "--lease", "30",
                "--split-above", f"{split_above:.3f}"]
        procs, outs = [], []
        busy0 = SB.sys_busy()
        t0 = time.monotonic()
        for k in range(n):
            out = open(os.path.join(d, f"m{k + 1}.out"), "wb")
            outs.append(out)
            procs.append(subprocess.Popen([b.bin, "run", *args, "--machine", f"m{k + 1}"],
                                          stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                          env=pg.env()))
        ends = []
        for p in procs:
            p.wait(timeout=1800)
            ends.append(time.monotonic() - t0)
        wall = max(ends)
        busy = SB.sys_busy() - busy0
        for o in outs:
            o.close()
        texts = []
        for k in range(n):
            with open(os.path.join(d, f"m{k + 1}.out"), "rb") as f:
                texts.append(f.read().decode("utf-8", "replace"))
        for k, p in enumerate(procs):
            if p.returncode != 0:
                raise SB.BenchError(f"{label}: machine m{k + 1} exited {p.returncode}:\n"
                                    f"{texts[k][-3000:]}")
        SB.settle([src.server, dst])
        SB.check_counts(f"target ({label})", src.exp, dst)
        db = state.rsplit("/", 1)[1]
        per = {r[0]: int(r[1]) for r in pg.psql(db, "SELECT claimed_by, count(*) FROM job"
                                                " GROUP BY 1")}
        jobs = sum(per.values())
        import re
        m = re.search(r"planning took ([0-9.]+) s", "\n".join(texts))
        return {"machines": n, "workers": a.workers, "wall_s": wall, "ends_s": ends,
                "planning_s": float(m.group(1)) if m else None,
                "jobs": jobs, "jobs_per_machine": per, "busy_cpu_s": busy,
                "idle_load_before": load,
                "mb_s": src.bytes / 1e6 / wall, "msg_s": src.messages / wall}
    finally:
        dst.stop()
        if not harness.KEEP:
            shutil.rmtree(d, ignore_errors=True)


def markdown(rows, pred, bounds, meta, a):
    L = []
    one = rows[0]["mb_s"] if rows and rows[0]["machines"] == 1 else None
    L.append(f"Source behind a proxy serving each session at most {a.rate:g} MB/s"
             + (f" and all sessions together at most {a.total_rate:g} MB/s"
                if a.total_rate else "")
             + f"; {a.workers} workers per machine; every run from an empty target "
             "and a new PostgreSQL database. Measured: from starting the N processes to "
             "the last exit (planning included). Predicted: `imapferry plan --inventory "
             "PLAN.json --cost COST --machines N` from the calibration before the runs.")
    L.append("")
    L.append("| machines | sessions | measured s | aggregate MB/s | msg/s | "
             "ratio to N × one | predicted s (limit) | prediction error | jobs per machine |")
    L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        n = r["machines"]
        ratio = r["mb_s"] / (n * one) if one else None
        p = pred.get(n)
        err = 100 * (p - r["wall_s"]) / r["wall_s"] if p else None
        L.append(f"| {n} | {n * r['workers']} | {r['wall_s']:.1f} | {r['mb_s']:.2f} | "
                 f"{r['msg_s']:.0f} | {SB.fmt(ratio, '{:.2f}')} | {SB.fmt(p)} ({bounds.get(n)}) | "
                 f"{SB.pct(err)} | "
                 + ", ".join(f"{k}: {v}" for k, v in sorted(r["jobs_per_machine"].items()))
                 + " |")
    L.append("")
    L.append(f"- {meta}")
    return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--machines", default="1,2,3")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rate", type=float, default=1.5, help="MB/s per session")
    ap.add_argument("--total-rate", type=float, default=0,
                    help="MB/s of all sessions together (0: none)")
    ap.add_argument("--users", type=int, default=12)
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--quiet-wait", type=float, default=3)
    ap.add_argument("--bin", default=harness.BIN)
    ap.add_argument("--cache", default="/var/tmp/imapferry-bench")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--tag", default=None)
    ap.add_argument("--calibrate-only", action="store_true",
                    help="stop after the calibration (results/machines-TAG-cost.json)")
    a = ap.parse_args()
    ns = SB.ints(a.machines)
    if os.geteuid() != 0:
        sys.exit("bench: needs root (throwaway Dovecot and PostgreSQL instances)")
    t_start = time.monotonic()
    b = SB.Bench()
    b.args = a
    b.work = tempfile.mkdtemp(prefix="ife-machines-bench-", dir="/var/tmp")
    b.bin = os.path.join(b.work, "imapferry")
    shutil.copy2(a.bin, b.bin)
    with open(b.bin, "rb") as f:
        b.bin_sha256 = hashlib.sha256(f.read()).hexdigest()
    b.master_pw_file = os.path.join(b.work, "master.pw")
    with open(b.master_pw_file, "w") as f:
        f.write(SB.MASTER[1] + "\n")
    os.chmod(b.master_pw_file, 0o600)
    rows, pred, bounds, split = [], {}, {}, {}
    try:
        root, manifest = SB.corpus(a.cache, a.users, a.messages, a.seed)
        src = SB.Source("mach", root, manifest, b.work)
        pg = harness.Postgres("bpg")
        proxy = None
        try:
            src.start()
            pg.start()
            proxy = LimitedProxy(src.server.port, a.rate * 1e6, a.total_rate * 1e6)
            log(f"bench: proxy on port {proxy.port}: {a.rate:g} MB/s per session"
                + (f", {a.total_rate:g} MB/s in all" if a.total_rate else ""))
            # calibration through the proxy, once (into a scratch target)
            cal_dst = SB.start_dovecot(harness.Dovecot(
                "mcal", users={u: "unused-pw" for u in src.users}, master=SB.MASTER,
                ssl=False))
            try:
                b.cost = os.path.join(b.work, "cost.json")
                plan_path = os.path.join(b.work, "plan.json")
                t = time.monotonic()
                wall, _, p = SB.run_cmd([
                    b.bin, "plan", src.users_csv,
                    f"imap://%u@{harness.HOST}:{proxy.port}?tls=none",
                    f"imap://%u@{harness.HOST}:{cal_dst.port}?tls=none",
                    "--src-admin", SB.MASTER[0], "--src-password-file", b.master_pw_file,
                    "--dst-admin", SB.MASTER[0], "--dst-password-file", b.master_pw_file,
                    "--workers", str(a.workers), "--json", "--save-cost", b.cost], 600)
                if p["rc"] != 0:
                    raise SB.BenchError(f"plan exited {p['rc']}: {p['stderr'][-2000:]}")
                with open(plan_path, "w") as f:
                    f.write(p["stdout"])
                log(f"bench: calibration {time.monotonic() - t:.1f} s")
                with open(b.cost) as f:
                    cost = json.load(f)
            finally:
                cal_dst.stop()
            os.makedirs(a.out, exist_ok=True)
            for nm in ["machines-latest"] + ([f"machines-{a.tag}"] if a.tag else []):
                shutil.copy(b.cost, os.path.join(a.out, nm + "-cost.json"))
            if a.calibrate_only:
                log(f"bench: cost model {cost}")
                return
            # the prediction for N machines: a plan for N x W workers (its
            # split threshold is then given to the runs: the first machine
            # plans with its own --workers only)
            for n in ns:
                pargs = [b.bin, "plan", "--inventory", plan_path, "--cost", b.cost,
                         "--workers", str(a.workers), "--machines", str(n), "--json"]
                if a.total_rate:
                    pargs += ["--src-max-rate", str(a.total_rate)]
                _, _, p = SB.run_cmd(pargs, 120)
                if p["rc"] != 0:
                    raise SB.BenchError(f"plan --inventory exited {p['rc']}: "
                                        f"{p['stderr']}")
                pj = json.loads(p["stdout"])
                pred[n] = pj["machines"][-1]["seconds"]
                bounds[n] = pj["machines"][-1]["bound"]
                split[n] = (pj["split_threshold_s"], len(pj["jobs"]))
            log(f"bench: cost {cost}; predicted " + ", ".join(
                f"{k}: {v:.1f} s ({bounds[k]}, {split[k][1]} jobs)"
                for k, v in sorted(pred.items())))
            for n in ns:
                r = run_machines(b, n, pg, src, proxy, f"n{n}", split[n][0])
                rows.append(r)
                log(f"bench: {n} machine(s): {r['wall_s']:.1f} s, {r['mb_s']:.2f} MB/s, "
                    f"predicted {pred.get(n, 0):.1f} s; jobs {r['jobs_per_machine']}; "
                    f"elapsed {time.monotonic() - t_start:.0f} s")
        finally:
            if proxy is not None:
                proxy.stop()
            pg.stop()
            src.stop()
    finally:
        shutil.rmtree(b.work, ignore_errors=True)
    mach = SB.machine()
    meta = (f"corpus `gen.py --users {a.users} --messages {a.messages} --seed {a.seed} "
            f"--maildir`: {src.messages:,} messages, {src.bytes / 1e6:,.0f} MB, "
            f"{len(src.users)} accounts; {mach['nproc']} × {mach['cpu']}, Dovecot "
            f"{mach['dovecot']}; source, proxy, target, PostgreSQL and every imapferry "
            f"process on one machine over 127.0.0.1; total bench time "
            f"{time.monotonic() - t_start:.0f} s")
    md = markdown(rows, pred, bounds, meta, a)
    print(md)
    os.makedirs(a.out, exist_ok=True)
    doc = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": mach, "args": vars(a),
           "imapferry_sha256": b.bin_sha256, "cost": cost, "predicted_s": pred,
           "predicted_bound": bounds,
           "split_above_s": {k: v[0] for k, v in split.items()},
           "planned_jobs": {k: v[1] for k, v in split.items()}, "runs": rows,
           "corpus": {"messages": src.messages, "bytes": src.bytes,
                      "per_user": src.per_user}}
    for nm in ["machines-latest"] + ([f"machines-{a.tag}"] if a.tag else []):
        with open(os.path.join(a.out, nm + ".json"), "w") as f:
            json.dump(doc, f, indent=1)
        with open(os.path.join(a.out, nm + ".md"), "w") as f:
            f.write(md)


if __name__ == "__main__":
    try:
        main()
    except SB.BenchError as e:
        log(f"bench: FAILED: {e}")
        sys.exit(1)
