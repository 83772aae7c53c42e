#!/usr/bin/env python3
"""What the MULTIAPPEND group size costs a Dovecot that holds a large folder
(issue 15: copy's groups went from 32 to 1,024 messages).

    python3 bench/appendgroup.py                    # 300,000 + 5,000, groups 32,256,1024,4096
    python3 bench/appendgroup.py --messages 100000 --groups 32,1024

A throwaway Dovecot (plain IMAP, `default_vsz_limit = 2G`) gets one INBOX
of --messages small files (APPENDed in groups of 4,096, or with --fill files
written straight into its Maildir and indexed with `doveadm index`); then `imapferry-bench append-only --group G` APPENDs
--append small messages into that INBOX for every G, twice, interleaved
(the folder grows by --append each time, which is small against its
size). Printed and written to bench/results/appendgroup-latest.json: the
wall time and the target Dovecot's CPU (master and every child) per run.
The Dovecot's data is on a new journaled ext4 (run.py's FreshFs) when a loop
device can be made (--target-fs).
Needs root, dovecot and a built imapferry-bench (--bench-bin).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integ"))
import harness  # noqa: E402
import run as R  # noqa: E402

MSG = (b"From: a@example.org\r\nTo: b@example.org\r\nSubject: test %d\r\n"
       b"Message-ID: <%d@bench.example>\r\n\r\nbody line\r\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=300000)
    ap.add_argument("--append", type=int, default=5000)
    ap.add_argument("--groups", default="32,256,1024,4096")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--fill", choices=("files", "append"), default="append",
                    help="how the folder is filled: APPENDed in groups of 4,096 (Dovecot "
                         "names and indexes every file itself: the folder a copy "
                         "makes), or files written into its Maildir and indexed")
    ap.add_argument("--bench-bin", default=os.path.join(ROOT, "build", "bench", "tools",
                                                         "imapferry-bench"))
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--target-fs", choices=("auto", "fresh", "disk"), default="auto")
    a = ap.parse_args()
    groups = [int(g) for g in a.groups.split(",")]
    pw = {"big": "benchpw"}
    work = tempfile.mkdtemp(prefix="ife-appendgroup-", dir="/var/tmp")
    tfs = None
    if a.target_fs == "fresh" or (a.target_fs == "auto" and R.fresh_fs_works(work)):
        tfs = R.FreshFs(max(4 << 30, a.messages * 400), work)
    d = R.start_dovecot(harness.Dovecot("bgrp", users=pw, master=R.MASTER, ssl=False,
                                        extra_conf="default_vsz_limit = 2G\n",
                                        base_dir=tfs.mnt if tfs else None))
    try:
        md = None
        with open(d.conf_path) as f:
            for line in f:
                if line.startswith("mail_location"):
                    md = line.split("maildir:")[1].strip().replace("%u", "big")
        env = dict(os.environ, IMAPFERRY_PASSWORD="benchpw")
        t0 = time.monotonic()
        if a.fill == "files":
            for sub in ("cur", "new", "tmp"):
                os.makedirs(os.path.join(md, sub), exist_ok=True)
            for i in range(a.messages):
                with open(f"{md}/cur/{1600000000 + i}.M{i}P1.bench:2,S", "wb") as f:
                    f.write(MSG % (i, i))
            subprocess.run(["chown", "-R", "mail:mail", os.path.dirname(md)], check=True)
            subprocess.run(["doveadm", "-c", d.conf_path, "index", "-u", "big", "INBOX"],
                           check=True)
        else:
            fill = os.path.join(work, "fill", "INBOX")
            os.makedirs(fill)
            for i in range(a.messages):
                with open(os.path.join(fill, f"{i}.eml"), "wb") as f:
                    f.write(MSG % (i, i))
            subprocess.run([a.bench_bin, "append-only", "--group", "4096",
                            f"imap://big@{harness.HOST}:{d.port}?tls=none",
                            os.path.dirname(fill)], env=env, check=True,
                           stdout=subprocess.DEVNULL)
            shutil.rmtree(os.path.dirname(fill))
        print(f"appendgroup: {a.messages} messages in INBOX ({a.fill}), "
              f"{time.monotonic() - t0:.1f} s", flush=True)
        src = os.path.join(work, "src", "INBOX")
        os.makedirs(src)
        for i in range(a.append):
            with open(os.path.join(src, f"{i}.eml"), "wb") as f:
                f.write(MSG % (10**9 + i, 10**9 + i))
        results = []
        for run in range(a.runs):
            for g in groups:
                c0, t0 = R.tree_cpu(d.pid), time.monotonic()
                p = subprocess.run([a.bench_bin, "append-only", "--json", "--group", str(g),
                                    f"imap://big@{harness.HOST}:{d.port}?tls=none",
                                    os.path.dirname(src)], env=env, capture_output=True,
                                   text=True)
                wall = time.monotonic() - t0
                time.sleep(0.3)
                cpu = R.tree_cpu(d.pid) - c0
                if p.returncode != 0:
                    sys.exit(f"append-only failed: {p.stderr[-500:]}")
                results.append({"group": g, "run": run, "wall": wall, "target_cpu": cpu,
                                "folder_before": a.messages + a.append * len(results)})
                print(f"group {g:5d}: {wall:7.2f} s wall, target CPU {cpu:7.2f} s",
                      flush=True)
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "appendgroup-latest.json"), "w") as f:
            json.dump({"messages": a.messages, "append": a.append,
                       "target_fs": "fresh" if tfs else "disk", "results": results}, f,
                      indent=1)
    finally:
        d.stop()
        if tfs is not None:
            tfs.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
