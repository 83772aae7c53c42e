#!/usr/bin/env python3
"""The large-folder curve (issue 15): one INBOX of N small messages on a
throwaway Dovecot, copied by `imapferry copy` into a second Dovecot over
IMAP and into a Maildir (Dovecot flavor), then an incremental pass over
the unchanged folder and `verify`, each with its wall time, CPU and peak
RSS. Sizes are given on the command line:

    bench/bigfolder.py 10000 100000 300000 [--targets imap,maildir]

The messages are written straight into the source Maildir (no APPEND) and
indexed by `doveadm index` before the clock starts. Results go to
bench/results/bigfolder-<date>.json and a Markdown table to stdout.

Each target (the Dovecot or the Maildir, and the state database) is on a
new journaled ext4 of its own, as in bench/run.py (--target-fs, default
auto: fresh when a loop device can be made; see FreshFs there for why the
machine's own disk misleads).
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
sys.path.insert(0, os.path.join(ROOT, "tests", "integ"))
import harness as H  # noqa: E402
sys.path.insert(0, HERE)
from run import FreshFs, fresh_fs_works  # noqa: E402

USER, PW = "big", "pw-big-1"
BIG_CONF = "default_vsz_limit = 2G\n"


def body(i):
    return (f"From: sender{i % 97}@example.org\r\n"
            f"To: {USER}@example.org\r\n"
            f"Subject: message {i}\r\n"
            f"Message-ID: <big{i}@example.org>\r\n"
            f"Date: Mon, 7 Dec 2026 04:00:00 +0000\r\n"
            f"\r\n" + ("line of text %d\r\n" % i) * (8 + i % 40)).encode()


def fill(server, n):
    """n messages in the source INBOX (cur/, every 7th \\Seen), indexed."""
    md = server.maildir(USER)
    for d in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(md, d), exist_ok=True)
    t0 = 1500000000
    cur = os.path.join(md, "cur")
    for i in range(n):
        data = body(i)
        name = f"{t0 + i}.M{i}P1.bench,S={len(data)}:2,{'S' if i % 7 == 0 else ''}"
        p = os.path.join(cur, name)
        with open(p, "wb") as f:
            f.write(data)
        os.utime(p, (t0 + i, t0 + i))
    H.chown_tree(os.path.join(server.data_dir, USER), H.MAIL_UID, H.MAIL_GID)
    server.doveadm("index", "-u", USER, "INBOX")


def measure(cmd, env, timeout=7200):
    """(exit status, seconds, user+sys CPU seconds, peak RSS MB, stderr).
    What earlier steps left in the page cache (the source's million files,
    the previous copy) is written back first, outside the timed window."""
    os.sync()
    with tempfile.NamedTemporaryFile(mode="r") as tf:
        t0 = time.monotonic()
        p = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", tf.name, *cmd],
                           env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=timeout)
        wall = time.monotonic() - t0
        vals = tf.read().split()
    rss_kb, usr, sys_ = int(vals[-3]), float(vals[-2]), float(vals[-1])
    return p.returncode, wall, usr + sys_, rss_kb / 1024.0, p.stderr


def measure_target(a, env, rows, n, target, src, dst, tmp):
    """copy, an incremental pass and verify of src's INBOX into target."""
    state = os.path.join(tmp, f"{target}.db")
    if target == "imap":
        durl = dst.url(USER, query="?tls=none")
    else:
        durl = "maildir:" + dst.maildir(USER)
    surl = src.url(USER, query="?tls=none")
    base = [a.bin, "copy", "--state", state]
    if target == "maildir":
        base += ["--owner", "mail:mail"]
    row = {"messages": n, "target": target}
    for phase, cmd in (
            ("copy", base + [surl, durl]),
            ("incremental", base + [surl, durl]),
            ("verify", [a.bin, "verify", "--state", state, surl, durl])):
        rc, wall, cpu, rss, err = measure(cmd, env)
        if rc != 0:
            print(f"{phase} {target} {n}: exit {rc}\n{err[-2000:]}",
                  file=sys.stderr)
        row[phase] = {"exit": rc, "seconds": round(wall, 2),
                      "cpu_s": round(cpu, 2), "rss_mb": round(rss, 1)}
        H.log(f"bigfolder: {n} {target} {phase}: {wall:.1f} s, "
              f"CPU {cpu:.1f} s, RSS {rss:.0f} MB, exit {rc}")
    rows.append(row)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sizes", type=int, nargs="+")
    ap.add_argument("--targets", default="imap,maildir")
    ap.add_argument("--bin", default=H.BIN)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--target-fs", choices=("auto", "fresh", "disk"), default="auto")
    a = ap.parse_args()
    fresh = a.target_fs == "fresh" or (a.target_fs == "auto" and
                                       fresh_fs_works("/var/tmp"))
    H.log(f"bigfolder: targets on {'a fresh journaled ext4 each' if fresh else 'the disk'}")
    env = dict(os.environ, IMAPFERRY_SRC_PASSWORD=PW, IMAPFERRY_DST_PASSWORD=PW)
    env.pop("IMAPFERRY_PASSWORD", None)
    rows = []
    for n in a.sizes:
        tmp = tempfile.mkdtemp(prefix="ife-big-")
        # a Dovecot serving a folder of a million messages needs more than
        # its default 256 MB per imap process (its own uidlist sync of the
        # folder allocates 128 MB blocks): as a real server would be set up
        with H.Dovecot("big-src", users={USER: PW}, ssl=False,
                       extra_conf=BIG_CONF) as src:
            t0 = time.monotonic()
            fill(src, n)
            H.log(f"bigfolder: {n} messages written and indexed in "
                  f"{time.monotonic() - t0:.1f} s")
            for target in a.targets.split(","):
                # room for the files and their inodes: 24 KB of (sparse)
                # image per message, 1.5 inodes at mkfs's 16 KB per inode
                tfs = FreshFs(max(8 << 30, n * 24 << 10), "/var/tmp") if fresh else None
                try:
                    with H.Dovecot("big-dst", users={USER: PW}, ssl=False,
                                   extra_conf=BIG_CONF,
                                   base_dir=tfs.mnt if tfs else None) as dst:
                        measure_target(a, env, rows, n, target, src, dst,
                                       tfs.mnt if tfs else tmp)
                finally:
                    if tfs is not None:
                        tfs.close()
        shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(a.out, exist_ok=True)
    out = os.path.join(a.out, time.strftime("bigfolder-%Y%m%d-%H%M.json"))
    with open(out, "w") as f:
        json.dump(rows, f, indent=1)
    print("| messages | target | copy s | µs/msg | copy RSS MB | incremental s | "
          "incr. RSS MB | verify s | verify RSS MB |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        c, i, v = r["copy"], r["incremental"], r["verify"]
        print(f"| {r['messages']:,} | {r['target']} | {c['seconds']} | "
              f"{c['seconds'] * 1e6 / r['messages']:.0f} | {c['rss_mb']} | "
              f"{i['seconds']} | {i['rss_mb']} | {v['seconds']} | {v['rss_mb']} |")
    print(f"\n(results in {out})")


if __name__ == "__main__":
    main()
