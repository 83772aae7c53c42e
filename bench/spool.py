#!/usr/bin/env python3
"""The old Cyrus's fast path, side by side: one Cyrus account copied into a
Maildir four ways, one run each.

    python3 bench/spool.py             # about 3-4 minutes on 2 cores
    python3 bench/spool.py --no-fsync  # the Maildir writes without fsync

Methods (the same account, the same machine, one after the other):
  fetch     imapferry-bench fetch-only: Cyrus's IMAP read limit (bodies
            discarded): what any IMAP-reading copier can reach at best
  imap      imapferry copy imap://cyrus maildir:PATH (everything over IMAP)
  hybrid    imapferry copy --bodies-from cyrus-spool:COPY imap://cyrus
            maildir:PATH (metadata over IMAP, bodies from the copied spool)
  offline   imapferry copy cyrus:COPY?user=NAME maildir:PATH (no IMAP)
  offline-fsfs     the same with --fsync fs (one syncfs per commit: durable,
                   for a file system only the copy writes to)
  offline-nofsync  the same with --no-fsync

The account: users user1 and user3 of the bench corpus (bench/run.py's
gen.py --users 3 --messages 1500 --seed 7: 2,275 messages, 172 MB of
files) APPENDed into one Cyrus 3.6 account (harness, plain IMAP); its spool
and config directories are then copied with `cp -a` (the "rsync"). Every
Maildir is counted on disk against the Cyrus account's STATUS.

Reports wall seconds, msgs/s, MB/s (the bytes of the spool files: what every
method moves), client CPU and peak RSS (GNU time), Cyrus's CPU, and the
ratio of the offline rate to the fetch-only limit (goal: >= 3x). Writes
bench/results/spool-latest.{md,json}.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as R  # noqa: E402  (sets the harness's server directory)

harness = R.harness
USER, PASSWORD = "bench", "benchpw-1"
METHODS = ["fetch", "imap", "hybrid", "offline", "offline-fsfs", "offline-nofsync"]
LABELS = {
    "fetch": "IMAP fetch-only limit (imapferry-bench)",
    "imap": "imapferry copy, IMAP → Maildir",
    "hybrid": "imapferry copy --bodies-from cyrus-spool: → Maildir",
    "offline": "imapferry copy cyrus: (offline) → Maildir",
    "offline-fsfs": "imapferry copy --fsync fs cyrus: (offline) → Maildir",
    "offline-nofsync": "imapferry copy --no-fsync cyrus: (offline) → Maildir",
}


def spool_bytes(root):
    """Bytes of the <UID>. files below root (the account's spool)."""
    n = files = 0
    for dirpath, _dirs, names in os.walk(root):
        for f in names:
            if re.fullmatch(r"\d+\.", f):
                n += os.path.getsize(os.path.join(dirpath, f))
                files += 1
    return n, files


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(R.ROOT, "build", "src", "cli", "imapferry"))
    ap.add_argument("--bench-bin", default=None)
    ap.add_argument("--cache", default="/var/tmp/imapferry-bench")
    ap.add_argument("--no-fsync", action="store_true",
                    help="copy --no-fsync (the Maildir writes without fsync)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--runs", type=int, default=3,
                    help="runs of each method, interleaved; the median is reported")
    ap.add_argument("--quiet-wait", type=float, default=10,
                    help="seconds to wait at most for an idle machine before each run")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work directory (the spool copy) for a look")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "spool-latest"))
    args = ap.parse_args()
    args.users, args.messages, args.seed = 3, 1500, 7
    methods = args.methods.split(",")
    work = tempfile.mkdtemp(prefix="spool-", dir="/var/tmp")
    os.chmod(work, 0o755)
    ferry = os.path.join(work, "imapferry")
    shutil.copy2(args.bin, ferry)
    bench_bin = os.path.join(work, "imapferry-bench")
    shutil.copy2(args.bench_bin or R.bench_bin_of(args.bin), bench_bin)
    root, rows = R.corpus(args)
    rows = [dict(r, abs_path=os.path.join(root, r["path"]), folder=r["folder"])
            for r in rows if r["user"] in ("user1", "user3")]
    cy = harness.Cyrus("bspool", users={USER: PASSWORD})
    results = {}
    try:
        cy.start()
        t0 = time.monotonic()
        loaded = cy.load_corpus(USER, [dict(r, user=USER) for r in rows])
        R.log(f"bench: {loaded} messages APPENDed into Cyrus in "
              f"{time.monotonic() - t0:.0f} s")
        want = R.folder_counts(cy, USER, PASSWORD)
        n_msgs = sum(want.values())
        copy = os.path.join(work, "copy")
        os.makedirs(copy)
        t0 = time.monotonic()
        for d in ("spool", "lib"):
            subprocess.run(["cp", "-a", os.path.join(cy.dir, d), os.path.join(copy, d)],
                           check=True)
        cp_s = time.monotonic() - t0
        nbytes, nfiles = spool_bytes(os.path.join(copy, "spool", "user", USER))
        if nfiles != n_msgs:
            raise R.BenchError(f"the spool has {nfiles} message files, Cyrus {n_msgs}")
        R.log(f"bench: {n_msgs} messages, {nbytes / 1e6:.1f} MB; spool copied in {cp_s:.1f} s")
        src = f"imap://{USER}@{harness.HOST}:{cy.port}?tls=none"
        env = R.ferry_env(PASSWORD, PASSWORD)
        extra = ["--no-fsync"] if args.no_fsync else []
        runs = {m: [] for m in methods}
        for run_no, m in [(k, m) for k in range(args.runs) for m in methods]:
            d = os.path.join(work, f"{m}-{run_no}")
            os.makedirs(d)
            state = ["--state", os.path.join(d, "state.sqlite")]
            dst = f"maildir:{d}/Maildir"
            if m == "fetch":
                cmd = [bench_bin, "fetch-only", "--json", src]
            elif m == "imap":
                cmd = [ferry, "copy", "--json", *state, *extra, src, dst]
            elif m == "hybrid":
                cmd = [ferry, "copy", "--json", *state, *extra, "--bodies-from",
                       f"cyrus-spool:{copy}/spool?user={USER}", src, dst]
            elif m == "offline-fsfs":
                cmd = [ferry, "copy", "--json", *state, "--fsync", "fs",
                       f"cyrus:{copy}/spool?user={USER}&config={copy}/lib", dst]
            elif m == "offline-nofsync":
                cmd = [ferry, "copy", "--json", *state, "--no-fsync",
                       f"cyrus:{copy}/spool?user={USER}&config={copy}/lib", dst]
            else:
                cmd = [ferry, "copy", "--json", *state, *extra,
                       f"cyrus:{copy}/spool?user={USER}&config={copy}/lib", dst]
            os.sync()
            R.settle([cy])
            load = R.wait_quiet(args.quiet_wait) if args.quiet_wait > 0 else None
            cpu0, busy0 = R.tree_cpu(cy.pid), R.sys_busy()
            wall, res = R.run_procs([cmd], env=env)
            busy1, cpu1 = R.sys_busy(), R.tree_cpu(cy.pid)
            r = res[0]
            if r["rc"] != 0:
                raise R.BenchError(f"{m}: exit {r['rc']}\n{r['stdout'][-1500:]}\n"
                                   f"{r['stderr'][-1500:]}")
            if m == "fetch":
                got = json.loads(r["stdout"])["messages"]
            else:
                got = sum(R.maildir_counts(os.path.join(d, "Maildir")).values())
            if got != n_msgs:
                raise R.BenchError(f"{m}: {got} messages, Cyrus has {n_msgs}")
            bodies = [ln for ln in r["stdout"].splitlines() if "bodies_from_spool" in ln]
            runs[m].append({
                "load_before": load,
                "wall": wall, "messages": got, "bytes": nbytes,
                "msgs_per_s": got / wall, "mb_per_s": nbytes / 1e6 / wall,
                "client_cpu": r["cpu"], "client_maxrss_mb": r["maxrss_kb"] / 1024,
                "cyrus_cpu": cpu1 - cpu0,
                "other_cpu": max(0.0, busy1 - busy0 - r["cpu"] - (cpu1 - cpu0)),
                "bodies": json.loads(bodies[-1]) if bodies else None,
                "command": " ".join(c if c != bench_bin and c != ferry else
                                    os.path.basename(c) for c in cmd),
            })
            R.log(f"bench: {m} run {run_no + 1}: {wall:.2f} s, {got / wall:.0f} msg/s, "
                  f"{nbytes / 1e6 / wall:.1f} MB/s, CPU {r['cpu']:.2f} s, "
                  f"other CPU {runs[m][-1]['other_cpu']:.2f} s")
            # (kept until the end: ext4 allocating inodes right after
            # thousands were deleted scans for recently deleted ones,
            # recently_deleted() in perf: a cost a migration into a new
            # file system does not have)
        # per method the run of median wall time
        for m in methods:
            rs = sorted(runs[m], key=lambda x: x["wall"])
            results[m] = dict(rs[len(rs) // 2], walls=[x["wall"] for x in runs[m]])
    finally:
        cy.stop()
        if args.keep:
            R.log(f"bench: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    lines = ["| method | s (median; all runs) | msgs/s | MB/s | client CPU s | peak RSS MB | Cyrus CPU s | other CPU s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for m in methods:
        r = results[m]
        walls = "/".join(f"{w:.2f}" for w in r["walls"])
        lines.append(f"| {LABELS[m]} | {r['wall']:.2f} ({walls}) | {r['msgs_per_s']:.0f} | "
                     f"{r['mb_per_s']:.1f} | {r['client_cpu']:.2f} | "
                     f"{r['client_maxrss_mb']:.1f} | {r['cyrus_cpu']:.2f} | "
                     f"{r['other_cpu']:.2f} |")
    notes = [f"Account: {n_msgs} messages, {nbytes / 1e6:.1f} MB of spool files "
             f"(Cyrus 3.6, {len(want)} folders); Maildir fsync "
             f"{'off (--no-fsync)' if args.no_fsync else 'on (default)'}; "
             f"{args.runs} runs of each method, interleaved, median shown."]
    if "fetch" in results:
        for m in ("offline", "offline-fsfs", "offline-nofsync", "hybrid", "imap"):
            if m in results:
                notes.append(f"{m} / fetch-only: "
                             f"{results[m]['msgs_per_s'] / results['fetch']['msgs_per_s']:.2f}x")
    if results.get("hybrid", {}).get("bodies"):
        notes.append(f"hybrid bodies: {results['hybrid']['bodies']}")
    md = "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"
    print(md)
    with open(args.out + ".md", "w") as f:
        f.write(md)
    with open(args.out + ".json", "w") as f:
        json.dump({"machine": R.machine(), "no_fsync": args.no_fsync,
                   "messages": n_msgs, "bytes": nbytes, "runs": runs,
                   "results": results}, f, indent=1)


if __name__ == "__main__":
    try:
        main()
    except R.BenchError as e:
        R.log(f"bench: FAILED: {e}")
        sys.exit(1)
