#!/usr/bin/env python3
"""Peak memory of a whole-server run (issue 15): 16 accounts copied at once
by one `imapferry run --workers 16`, with 5 % of the messages 20-50 MB, into
a Dovecot over IMAP and into Maildirs written directly. Goal: peak RSS of
the imapferry process below 100 MB for both.

    python3 bench/memory.py                      # 16 accounts x 100 messages
    python3 bench/memory.py --accounts 16 --messages 100 --large-pct 5

The source's Maildirs are written directly (no APPEND; small messages 2-20
KB, large ones 20-50 MB, deterministic) and indexed by `doveadm index`
before the clock starts. Each target (the IMAP target Dovecot's data, or
the Maildirs) is on a new journaled ext4 (run.py's FreshFs: a server's
disk, not the bench machine's ext4 without a journal) when a loop device
can be made (--target-fs). Every target is checked against the source's
message count per account. Reports wall seconds, MB/s, client CPU and peak
RSS (GNU time), as a Markdown table; raw numbers into
bench/results/memory-<date>.json.
"""

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integ"))
import harness as H  # noqa: E402
from bigfolder import measure  # noqa: E402  (exit, wall s, CPU s, peak RSS MB, stderr)
from run import FreshFs, fresh_fs_works  # noqa: E402

MASTER = ("master", "masterpw-1")
PW = "pw-mem-1"


def body(rng, i, size):
    head = (f"From: sender{i % 97}@example.org\r\nTo: someone@example.org\r\n"
            f"Subject: message {i}\r\nMessage-ID: <mem{i}.{size}@example.org>\r\n"
            f"Date: Mon, 7 Dec 2026 04:00:00 +0000\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: application/octet-stream\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n").encode()
    line = (rng.randbytes(57).hex()[:76] + "\r\n").encode()
    n = max(1, (size - len(head)) // len(line))
    return head + line * n


def fill(server, users, n, large_pct, seed):
    """n messages per user, large_pct % of them 20-50 MB; returns bytes."""
    total = 0
    t0 = 1500000000
    for ui, u in enumerate(users):
        rng = random.Random(seed * 1000 + ui)
        md = server.maildir(u)
        for d in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(md, d), exist_ok=True)
        n_large = max(1, round(n * large_pct / 100))
        large = set(rng.sample(range(n), n_large))
        for i in range(n):
            size = rng.randint(20, 50) * 1_000_000 if i in large else rng.randint(2000, 20000)
            data = body(rng, i, size)
            total += len(data)
            name = f"{t0 + i}.M{i}P{ui}.mem,S={len(data)}:2,{'S' if i % 3 == 0 else ''}"
            p = os.path.join(md, "cur", name)
            with open(p, "wb") as f:
                f.write(data)
            os.utime(p, (t0 + i, t0 + i))
        H.chown_tree(os.path.join(server.data_dir, u), H.MAIL_UID, H.MAIL_GID)
        server.doveadm("index", "-u", u, "INBOX")
    return total


def imap_count(server, user):
    c = server.imap(user, PW)
    try:
        typ, data = c.select("INBOX", readonly=True)
        return int(data[0])
    finally:
        c.logout()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accounts", type=int, default=16)
    ap.add_argument("--messages", type=int, default=100)
    ap.add_argument("--large-pct", type=float, default=5)
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--targets", default="imap,maildir")
    ap.add_argument("--bin", default=H.BIN)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--target-fs", choices=("auto", "fresh", "disk"), default="auto",
                    help="fresh: each target on a new journaled ext4 (loop device); "
                         "auto: fresh when possible")
    a = ap.parse_args()
    H.require_root()
    users = [f"m{i:02d}" for i in range(a.accounts)]
    work = tempfile.mkdtemp(prefix="ifmem-", dir="/var/tmp")
    os.chmod(work, 0o755)
    src = H.Dovecot("memsrc", users={u: PW for u in users}, ssl=False, master=MASTER)
    rows = []
    try:
        src.start()
        t0 = time.monotonic()
        nbytes = fill(src, users, a.messages, a.large_pct, a.seed)
        H.log(f"memory: {a.accounts} accounts x {a.messages} messages, "
              f"{nbytes / 1e6:.0f} MB, written and indexed in {time.monotonic() - t0:.0f} s")
        users_csv = os.path.join(work, "users.csv")
        with open(users_csv, "w") as f:
            f.write("src_user,dst_user\n" + "".join(f"{u},{u}\n" for u in users))
        mpw = os.path.join(work, "master.pw")
        with open(mpw, "w") as f:
            f.write(MASTER[1] + "\n")
        os.chmod(mpw, 0o600)
        fresh = a.target_fs == "fresh" or (a.target_fs == "auto" and fresh_fs_works(work))
        for target in a.targets.split(","):
            dst = tfs = None
            state = os.path.join(work, f"{target}.db")
            if fresh:
                tfs = FreshFs(max(4 << 30, 3 * nbytes), work)
            tdir = tfs.mnt if tfs else work
            cmd = [a.bin, "run", users_csv,
                   f"imap://%u@{src.host}:{src.port}?tls=none"]
            if target == "imap":
                dst = H.Dovecot("memdst", users={u: PW for u in users}, ssl=False,
                                master=MASTER, base_dir=tfs.mnt if tfs else None)
                dst.start()
                cmd += [f"imap://%u@{dst.host}:{dst.port}?tls=none",
                        "--dst-admin", MASTER[0], "--dst-password-file", mpw]
            else:
                cmd += [f"maildir:{tdir}/md/%u/Maildir", "--owner", "8:8"]
            cmd += ["--src-admin", MASTER[0], "--src-password-file", mpw,
                    "--state", state, "--workers", str(a.workers),
                    "--progress", "none", "--no-calibrate"]
            try:
                os.sync()
                rc, wall, cpu, rss, err = measure(cmd, dict(os.environ))
                if rc != 0:
                    raise SystemExit(f"memory: {target}: exit {rc}\n{err[-3000:]}")
                for u in users:
                    want = a.messages
                    if target == "imap":
                        got = imap_count(dst, u)
                    else:
                        cur = os.path.join(tdir, "md", u, "Maildir", "cur")
                        got = len(os.listdir(cur))
                    if got != want:
                        raise SystemExit(f"memory: {target} {u}: {got} messages, "
                                         f"the source has {want}")
                row = {"target": target, "target_fs": "fresh" if tfs else "disk",
                       "accounts": a.accounts, "messages": a.messages,
                       "large_pct": a.large_pct, "workers": a.workers, "bytes": nbytes,
                       "seconds": round(wall, 2), "cpu_s": round(cpu, 2),
                       "rss_mb": round(rss, 1), "mb_per_s": round(nbytes / 1e6 / wall, 1)}
                rows.append(row)
                H.log(f"memory: {target}: {wall:.1f} s, {nbytes / 1e6 / wall:.0f} MB/s, "
                      f"CPU {cpu:.1f} s, peak RSS {rss:.0f} MB")
            finally:
                if dst is not None:
                    dst.stop()
                shutil.rmtree(os.path.join(tdir, "md"), ignore_errors=True)
                if tfs is not None:
                    tfs.close()
    finally:
        src.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("| target | accounts x messages (large %) | workers | GB | s | MB/s | client CPU s | peak RSS MB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['target']} | {r['accounts']} x {r['messages']} ({r['large_pct']:g} %) | "
              f"{r['workers']} | {r['bytes'] / 1e9:.2f} | {r['seconds']:.1f} | "
              f"{r['mb_per_s']:.0f} | {r['cpu_s']:.1f} | {r['rss_mb']:.0f} |")
    os.makedirs(a.out, exist_ok=True)
    out = os.path.join(a.out, time.strftime("memory-%Y%m%d-%H%M.json"))
    with open(out, "w") as f:
        json.dump(rows, f, indent=1)
    print(f"\n(results in {out})")


if __name__ == "__main__":
    main()
