#!/usr/bin/env python3
"""imapferry benchmark: copy side by side with its peers and its limits.

    python3 bench/run.py            # 3 runs of everything (< 20 min on 2 cores)
    python3 bench/run.py --quick    # 1 run, one account, no warm-up round
    python3 bench/run.py --methods ferry,append --scopes one --runs 5

Needs root, dovecot, doveadm, mbsync and a built imapferry (see bench/README.md).
Prints a Markdown table; writes bench/results/latest.json and latest.md.

Methods (each into a fresh Dovecot target, except fetch):
  ferry          imapferry copy IMAP -> IMAP
  mbsync         isync's mbsync (Far = source, Near = target, Sync Pull)
  dsync          doveadm -o mail_fsync=never backup -R imapc: run by the target
                 (the exact baseline, at its fastest)
  dsync-fsync    the same with Dovecot's default mail_fsync=optimized
  fetch          imapferry-bench fetch-only: the source's read limit (bodies discarded)
  append         imapferry-bench append-only: the target's APPEND limit (from the files)
  ferry-maildir  imapferry copy IMAP -> maildir:PATH (default durability: an
                 fdatasync per new file)
  ferry-maildir-fs   the same with --fsync fs (one syncfs per commit)
  ferry-maildir-off  the same with --fsync off (as dsync's mail_fsync=never)

Scopes: "one" = the largest account; "all" = every account, one process per
account started together (as a user would run them), for every method.
"""

import argparse
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
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integ"))
import harness  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_DIR = "/var/tmp/ifb"     # short: Dovecot's unix socket paths must stay < 107 bytes


def _short_tempdir(tag, base=None):
    """Like harness.short_tempdir, but under SERVER_DIR: on a shared machine
    other jobs clean /tmp, and a source that vanishes mid-bench is a lost
    quarter of an hour."""
    os.makedirs(SERVER_DIR, exist_ok=True)
    os.chmod(SERVER_DIR, 0o755)
    d = tempfile.mkdtemp(prefix=f"{tag[:8]}-", dir=base or SERVER_DIR)
    os.chmod(d, 0o755)          # the servers drop privileges and must traverse it
    return d


harness.short_tempdir = _short_tempdir
MASTER = ("master", "masterpw")
ALL_METHODS = ["ferry", "mbsync", "dsync", "dsync-fsync", "fetch", "append",
               "ferry-maildir", "ferry-maildir-fs", "ferry-maildir-off"]
LABELS = {
    "ferry": "imapferry copy (IMAP→IMAP)",
    "mbsync": "mbsync",
    "dsync": "doveadm -o mail_fsync=never backup -R imapc:",
    "dsync-fsync": "doveadm -o mail_fsync=optimized backup -R imapc:",
    "fetch": "fetch-only limit",
    "append": "APPEND-only limit",
    "ferry-maildir": "imapferry copy (IMAP→Maildir)",
    "ferry-maildir-fs": "imapferry copy --fsync fs (IMAP→Maildir)",
    "ferry-maildir-off": "imapferry copy --fsync off (IMAP→Maildir)",
}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class BenchError(Exception):
    """A wrong result (message counts differ) or a failed tool: fatal."""


# --------------------------------------------------------------------------
# corpus

def corpus(args):
    """Generate (once) and return (root, manifest rows)."""
    gen = harness.corpus_gen_path()
    with open(gen, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    root = os.path.join(args.cache, f"corpus-{digest}-u{args.users}-m{args.messages}"
                                    f"-s{args.seed}-maildir")
    if not os.path.exists(os.path.join(root, "manifest.jsonl")):
        os.makedirs(args.cache, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix="gen-", dir=args.cache)
        log(f"bench: generating the corpus into {root} (about 40 s)")
        subprocess.run([sys.executable, gen, "--out", tmp, "--users", str(args.users),
                        "--messages", str(args.messages), "--seed", str(args.seed),
                        "--maildir"], check=True, stdout=subprocess.DEVNULL)
        os.rename(tmp, root)
    rows = []
    with open(os.path.join(root, "manifest.jsonl"), encoding="utf-8") as f:
        for line in f:
            rows.append(json.loads(line))
    return root, rows


def expected(rows, users):
    """{user: {folder (UTF-8, "/" separated): messages}} from the manifest."""
    out = {u: {} for u in users}
    for r in rows:
        if r["user"] not in out:
            continue
        d = out[r["user"]]
        d[r["folder"]] = d.get(r["folder"], 0) + 1
    return out


# --------------------------------------------------------------------------
# CPU of processes

def _stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    return s[s.rfind(")") + 2:].split()


def tree_cpu(pid):
    """CPU seconds of a server instance: utime+stime+cutime+cstime of its
    master and of every live descendant. A child that exited and was reaped
    by the master is in the master's cutime/cstime, a live one in its own
    utime/stime, so before/after differences count every process that ran in
    between exactly once (Dovecot's imap processes exit at logout)."""
    total = 0
    for p in [pid] + harness.descendants(pid):
        try:
            f = _stat_fields(p)
        except OSError:
            continue
        # fields after the command: state=0 ... utime=11 stime=12 cutime=13 cstime=14
        total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return total / CLK_TCK


def sys_busy():
    """CPU seconds the whole machine spent busy so far (all cores; /proc/stat:
    user nice system irq softirq steal)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK_TCK


def wait_quiet(max_wait, threshold=0.3):
    """Other sessions may share the machine (builds, fuzzers, tests). Wait
    (up to max_wait seconds) until the machine was busy for less than
    threshold cores over one second. Returns the load last seen (cores)."""
    deadline = time.monotonic() + max_wait
    while True:
        b0, t0 = sys_busy(), time.monotonic()
        time.sleep(1.0)
        load = (sys_busy() - b0) / (time.monotonic() - t0)
        if load < threshold or time.monotonic() >= deadline:
            return load
        time.sleep(2.0)


def imap_children(pid):
    """Live imap processes of an instance (they exit after LOGOUT)."""
    n = 0
    for p in harness.descendants(pid):
        try:
            with open(f"/proc/{p}/comm") as f:
                if f.read().strip() == "imap":
                    n += 1
        except OSError:
            pass
    return n


def settle(servers, timeout=5.0):
    """Wait until the sessions of the run have ended (imap processes gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(imap_children(s.pid) == 0 for s in servers if s is not None):
            return
        time.sleep(0.05)


def run_procs(cmds, env=None):
    """Start every command at once, wait for all. Returns (wall seconds,
    [dict(rc, stdout, stderr, cpu, maxrss_kb)]). CPU comes from wait4() of
    each process (children it waited for included). Peak RSS comes from GNU
    time wrapped around each command: a child forked from this Python process
    would report at least Python's own RSS (Linux keeps the pre-exec
    high-water mark in ru_maxrss)."""
    procs = []
    t0 = time.monotonic()
    for c in cmds:
        out = tempfile.TemporaryFile()
        err = tempfile.TemporaryFile()
        tf = tempfile.NamedTemporaryFile(prefix="time-", delete=False)
        tf.close()
        p = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", tf.name, *c],
                             stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
        procs.append((p, out, err, tf.name))
    results = []
    for p, out, err, tname in procs:
        # wait4 per process: its own rusage (and its reaped children's)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        with open(tname) as f:
            tlines = f.read().split()
        os.unlink(tname)
        maxrss = int(tlines[-1]) if tlines and tlines[-1].isdigit() else ru.ru_maxrss
        results.append({
            "rc": p.returncode,
            "stdout": out.read().decode("utf-8", "replace"),
            "stderr": err.read().decode("utf-8", "replace"),
            "cpu": ru.ru_utime + ru.ru_stime,
            "maxrss_kb": maxrss,
        })
        out.close()
        err.close()
    return time.monotonic() - t0, results


# --------------------------------------------------------------------------
# servers

def imapc_conf(src):
    """Target settings for doveadm backup -R imapc: (SERVERS.md section 2)."""
    return f"""imapc_host = {harness.HOST}
imapc_port = {src.port}
imapc_user = %u
imapc_master_user = {MASTER[0]}
imapc_password = {MASTER[1]}
imapc_features = rfc822.size fetch-headers
mail_prefetch_count = 20
"""


def start_dovecot(d):
    """d.start(), tolerating the harness's race with Dovecot's pid file
    (it may read master.pid after it is created but before it is written:
    IndexError); the instance then is already running, so finish the start
    here instead."""
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


def new_target(src, users, base=None):
    return start_dovecot(harness.Dovecot("bdst", users=users, master=MASTER, ssl=False,
                                         extra_conf=imapc_conf(src), base_dir=base))


class FreshFs:
    """A new, empty ext4 (with its journal, as on a mail server) for one run's
    target: a sparse image on a loop device with direct I/O (no second page
    cache), mounted under SERVER_DIR.

    Why: the bench machine's own ext4 has no journal, and there ext4 skips
    every inode freed in the last 60-300 s when it allocates one
    (fs/ext4/ialloc.c, recently_deleted()). Each run deletes the previous
    run's target (16,000-18,000 files), so the next target's file creations
    scanned inode tables: `perf` showed a Dovecot target spending 3-6 s of
    extra system time in ext4_create -> recently_deleted, growing run after
    run. A migration writes to a server's disk, not to one that just had
    18,000 files deleted without a journal; every method gets a fresh
    file system, created outside the timed window."""

    def __init__(self, size_bytes, work):
        self.img = self.dev = self.mnt = None
        try:
            fd, self.img = tempfile.mkstemp(prefix="fs-", suffix=".img", dir=work)
            os.ftruncate(fd, size_bytes)
            os.close(fd)
            self.dev = subprocess.run(
                ["losetup", "--find", "--show", "--direct-io=on", self.img],
                check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True).stdout.strip()
            subprocess.run(["mkfs.ext4", "-q", "-F", "-E",
                            "lazy_itable_init=0,lazy_journal_init=0", self.dev],
                           check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            os.makedirs(SERVER_DIR, exist_ok=True)
            self.mnt = tempfile.mkdtemp(prefix="fs-", dir=SERVER_DIR)
            subprocess.run(["mount", self.dev, self.mnt], check=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            os.chmod(self.mnt, 0o755)
        except (OSError, subprocess.CalledProcessError) as e:
            self.close()
            err = getattr(e, "stderr", None) or str(e)
            raise BenchError(f"fresh target file system: {str(err).strip()}")

    def close(self):
        if self.mnt:
            subprocess.run(["umount", self.mnt], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            try:
                os.rmdir(self.mnt)
            except OSError:
                pass
            self.mnt = None
        if self.dev:
            subprocess.run(["losetup", "-d", self.dev], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            self.dev = None
        if self.img:
            try:
                os.unlink(self.img)
            except OSError:
                pass
            self.img = None


def fresh_fs_works(work):
    """--target-fs auto: fresh when a loop device can be made here."""
    if not (shutil.which("losetup") and shutil.which("mkfs.ext4")):
        return False
    try:
        FreshFs(256 << 20, work).close()
        return True
    except BenchError as e:
        log(f"bench: no fresh target file systems ({e}); targets on the disk")
        return False


def folder_counts(server, user, password):
    """{folder UTF-8: messages} of the selectable, non-empty folders."""
    c = server.imap(user, password, timeout=120)
    try:
        f = harness.oracle_folders(c, with_size=False)
    finally:
        c.logout()
    return {name: e["messages"] for name, e in f.items()
            if e["selectable"] and e["messages"] > 0}


def maildir_counts(path):
    """{folder: messages} of a Maildir++ tree (names mUTF-7 decoded)."""
    out = {}
    if not os.path.isdir(path):
        return out
    for d in [""] + sorted(os.listdir(path)):
        if d and not d.startswith("."):
            continue
        base = os.path.join(path, d)
        n = sum(len(os.listdir(os.path.join(base, s))) for s in ("cur", "new")
                if os.path.isdir(os.path.join(base, s)))
        if n:
            name = "INBOX" if not d else harness.mutf7_decode(d[1:]).replace(".", "/")
            out[name] = n
    return out


def check_counts(what, user, want, got):
    if want != got:
        diff = {k: (want.get(k), got.get(k)) for k in sorted(set(want) | set(got))
                if want.get(k) != got.get(k)}
        raise BenchError(f"{what}: {user}: message counts differ from the source "
                         f"(folder: (expected, found)): {diff}")


# --------------------------------------------------------------------------
# the methods

class Ctx:
    def __init__(self, args, root, rows, src, users, passwords):
        self.args = args
        self.root = root
        self.rows = rows
        self.src = src
        self.users = users              # all users, largest first
        self.pw = passwords
        self.exp = expected(rows, users)
        self.bytes = {u: sum(r["size"] for r in rows if r["user"] == u) for u in users}
        self.msgs = {u: sum(self.exp[u].values()) for u in users}
        self.work = tempfile.mkdtemp(prefix="ife-bench-", dir="/var/tmp")
        # A private copy of the binary: a rebuild during the bench must not
        # mix two builds in one table.
        self.bin = os.path.join(self.work, "imapferry")
        shutil.copy2(args.bin, self.bin)
        with open(self.bin, "rb") as f:
            self.bin_sha256 = hashlib.sha256(f.read()).hexdigest()
        # fetch-only and append-only: the separate, never installed
        # imapferry-bench of the same build
        self.bench_bin = os.path.join(self.work, "imapferry-bench")
        if os.access(args.bench_bin, os.X_OK):
            shutil.copy2(args.bench_bin, self.bench_bin)
        self.ferry_maildir_note = None
        self.fresh_fs = False                   # --target-fs: see FreshFs
        self.quiet_budget = args.quiet_total    # seconds of waiting left


def bench_bin_of(ferry_bin):
    """imapferry-bench of the build that made ferry_bin: BUILD/src/cli/imapferry
    -> BUILD/bench/tools/imapferry-bench (else the same directory)."""
    d = os.path.dirname(os.path.abspath(ferry_bin))
    if d.endswith(os.path.join("src", "cli")):
        return os.path.join(os.path.dirname(os.path.dirname(d)), "bench", "tools",
                            "imapferry-bench")
    return os.path.join(d, "imapferry-bench")


def url(server, user):
    return f"imap://{user}@{harness.HOST}:{server.port}?tls=none"


def ferry_env(pw_src, pw_dst):
    e = dict(os.environ)
    e["IMAPFERRY_SRC_PASSWORD"] = pw_src
    e["IMAPFERRY_DST_PASSWORD"] = pw_dst
    e["IMAPFERRY_PASSWORD"] = pw_src
    return e


def mbsync_config(path, src, dst, user, pw, state_dir):
    with open(path, "w") as f:
        f.write(f"""# SERVERS.md section 5
IMAPAccount far
Host {harness.HOST}
Port {src.port}
User {user}
Pass {pw}
SSLType None
AuthMechs LOGIN

IMAPStore far
Account far

IMAPAccount near
Host {harness.HOST}
Port {dst.port}
User {user}
Pass {pw}
SSLType None
AuthMechs LOGIN

IMAPStore near
Account near

Channel ch
Far :far:
Near :near:
Patterns *
Create Near
Sync Pull
CopyArrivalDate yes
SyncState {state_dir}/
""")


def measure(ctx, method, users, run_id):
    """One timed run of method for users. Returns a result dict, None when
    the method is unsupported (note recorded), or raises BenchError."""
    a = ctx.args
    tfs = dst = None
    if ctx.fresh_fs and method != "fetch":
        tfs = FreshFs(max(4 << 30, 3 * sum(ctx.bytes[u] for u in users)), ctx.work)
    d = tempfile.mkdtemp(prefix=f"{method}-{run_id}-", dir=tfs.mnt if tfs else ctx.work)
    os.chmod(d, 0o755)
    try:
        if method in ("ferry", "mbsync", "dsync", "dsync-fsync", "append"):
            dst = new_target(ctx.src, {u: ctx.pw[u] for u in users},
                             base=tfs.mnt if tfs else None)
        cmds, env = [], None
        if method == "ferry":
            for u in users:
                cmds.append([ctx.bin, "copy", "--json", "--state",
                             os.path.join(d, f"{u}.sqlite"), url(ctx.src, u), url(dst, u)])
            env = ferry_env(ctx.pw[users[0]], ctx.pw[users[0]])
        elif method.startswith("ferry-maildir"):
            mode = {"ferry-maildir": [], "ferry-maildir-fs": ["--fsync", "fs"],
                    "ferry-maildir-off": ["--fsync", "off"]}[method]
            for u in users:
                cmds.append([ctx.bin, "copy", "--json", *mode, "--state",
                             os.path.join(d, f"{u}.sqlite"), url(ctx.src, u),
                             f"maildir:{d}/{u}/Maildir"])
            env = ferry_env(ctx.pw[users[0]], ctx.pw[users[0]])
        elif method == "mbsync":
            for u in users:
                cfg = os.path.join(d, f"{u}.mbsyncrc")
                sd = os.path.join(d, f"{u}.state")
                os.makedirs(sd)
                mbsync_config(cfg, ctx.src, dst, u, ctx.pw[u], sd)
                cmds.append(["mbsync", "-q", "-c", cfg, "-a"])
        elif method in ("dsync", "dsync-fsync"):
            fs = "never" if method == "dsync" else "optimized"
            for u in users:
                cmds.append(["doveadm", "-c", dst.conf_path, "-o", f"mail_fsync={fs}",
                             "backup", "-R", "-u", u, "imapc:"])
        elif method == "fetch":
            for u in users:
                cmds.append([ctx.bench_bin, "fetch-only", "--json", url(ctx.src, u)])
            env = ferry_env(ctx.pw[users[0]], ctx.pw[users[0]])
        elif method == "append":
            for u in users:
                cmds.append([ctx.bench_bin, "append-only", "--json", url(dst, u),
                             os.path.join(ctx.root, u, "Maildir")])
            env = ferry_env(ctx.pw[users[0]], ctx.pw[users[0]])
        servers = [ctx.src, dst]
        settle(servers)
        os.sync()
        idle_load = None
        if a.quiet_wait > 0 and ctx.quiet_budget > 0:
            t = time.monotonic()
            idle_load = wait_quiet(min(a.quiet_wait, ctx.quiet_budget))
            ctx.quiet_budget -= time.monotonic() - t
        cpu0 = [tree_cpu(s.pid) if s else None for s in servers]
        busy0 = sys_busy()
        wall, res = run_procs(cmds, env=env)
        settle(servers)
        busy1 = sys_busy()
        cpu1 = [tree_cpu(s.pid) if s else None for s in servers]

        if method == "ferry-maildir" and any(
                r["rc"] == 2 and "maildir" in r["stderr"].lower() for r in res):
            # usage error about the maildir: endpoint: not supported (yet)
            ctx.ferry_maildir_note = res[0]["stderr"].strip().splitlines()[-1]
            return None
        for u, r in zip(users, res):
            if r["rc"] != 0:
                path = os.path.join(a.cache, "logs", f"fail-{method}-{run_id}-{u}.txt")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write(f"{' '.join(cmds[users.index(u)])}\nexit {r['rc']}\n--- stdout\n"
                            f"{r['stdout']}\n--- stderr\n{r['stderr']}")
                raise BenchError(f"{method} {u}: exit {r['rc']} (output in {path})\n"
                                 f"--- stdout\n{r['stdout'][-1500:]}\n"
                                 f"--- stderr\n{r['stderr'][-1500:]}")
        # correctness: what is on the target is what the source has
        copied = 0
        for u, r in zip(users, res):
            want = ctx.exp[u]
            if method == "fetch":
                got = json.loads(r["stdout"])["messages"]
                if got != ctx.msgs[u]:
                    raise BenchError(f"fetch {u}: read {got} messages, the source "
                                     f"has {ctx.msgs[u]}")
                copied += got
                continue
            if method.startswith("ferry-maildir"):
                got = maildir_counts(os.path.join(d, u, "Maildir"))
            else:
                got = folder_counts(dst, u, ctx.pw[u])
            check_counts(method, u, want, got)
            copied += sum(got.values())
        src_cpu = cpu1[0] - cpu0[0] if method not in ("append",) else None
        dst_cpu = cpu1[1] - cpu0[1] if dst is not None and method != "fetch" else None
        nbytes = sum(ctx.bytes[u] for u in users)
        ours = sum(r["cpu"] for r in res) + sum(
            c1 - c0 for c0, c1 in zip(cpu0, cpu1) if c0 is not None)
        return {
            "other_cpu": max(0.0, busy1 - busy0 - ours),
            "load_before": idle_load,
            "wall": wall,
            "messages": copied,
            "source_messages": sum(ctx.msgs[u] for u in users),
            "bytes": nbytes,
            "client_cpu": sum(r["cpu"] for r in res),
            "client_maxrss_mb": max(r["maxrss_kb"] for r in res) / 1024,
            "src_cpu": src_cpu,
            "dst_cpu": dst_cpu,
            "tool_json": [r["stdout"].strip() for r in res
                          if r["stdout"].strip().startswith("{")],
        }
    finally:
        if dst is not None:
            dst.stop()
        shutil.rmtree(d, ignore_errors=True)
        if tfs is not None:
            tfs.close()


# --------------------------------------------------------------------------
# report

def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def summarize(runs):
    s = {k: med([r[k] for r in runs]) for k in
         ("wall", "client_cpu", "client_maxrss_mb", "src_cpu", "dst_cpu", "other_cpu")}
    s["wall_min"] = min(r["wall"] for r in runs)
    s["wall_max"] = max(r["wall"] for r in runs)
    s["messages"] = runs[0]["messages"]
    s["source_messages"] = runs[0]["source_messages"]
    s["bytes"] = runs[0]["bytes"]
    s["msg_per_s"] = s["source_messages"] / s["wall"]
    s["mb_per_s"] = s["bytes"] / 1e6 / s["wall"]
    s["cpu_ms_per_msg"] = (s["client_cpu"] * 1000 / s["source_messages"]
                           if s["client_cpu"] is not None else None)
    s["runs"] = len(runs)
    return s


def f1(v, fmt="{:.1f}"):
    return "–" if v is None else fmt.format(v)


def markdown(results, scopes, notes, ctx_info):
    lines = []
    lines.append("| method | scope | messages | wall s (median; min–max) | msg/s | MB/s "
                 "| client CPU s | client ms/msg | client peak RSS MB | source CPU s "
                 "| target CPU s | other CPU s |")
    lines.append("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for scope in scopes:
        for m in ALL_METHODS:
            s = results.get(scope, {}).get(m)
            if s is None:
                continue
            lines.append(
                f"| {LABELS[m]} | {scope} | {s['messages']:,} | "
                f"{s['wall']:.2f} ({s['wall_min']:.2f}–{s['wall_max']:.2f}) | "
                f"{s['msg_per_s']:,.0f} | {s['mb_per_s']:.0f} | {f1(s['client_cpu'])} | "
                f"{f1(s['cpu_ms_per_msg'], '{:.3f}')} | {f1(s['client_maxrss_mb'], '{:.0f}')} | "
                f"{f1(s['src_cpu'])} | {f1(s['dst_cpu'])} | {f1(s['other_cpu'])} |")
    lines.append("")
    lines.append("| ratio (rate of imapferry copy ÷ rate of X) | " +
                 " | ".join(scopes) + " | target |")
    lines.append("|---|" + "---:|" * len(scopes) + "---|")
    targets = {"mbsync": "≥ 2.00", "append": "≥ 0.90", "dsync": "", "fetch": ""}
    for m in ("mbsync", "dsync", "append", "fetch"):
        cells = []
        for scope in scopes:
            r = results.get(scope, {})
            if "ferry" in r and m in r:
                cells.append(f"{r['ferry']['msg_per_s'] / r[m]['msg_per_s']:.2f}")
            else:
                cells.append("–")
        lines.append(f"| vs {LABELS[m]} | " + " | ".join(cells) + f" | {targets[m]} |")
    checks = []
    for scope in scopes:
        s = results.get(scope, {}).get("ferry")
        if s is None:
            continue
        checks.append(f"client CPU {s['cpu_ms_per_msg']:.3f} ms/msg (target < 0.1), "
                      f"peak RSS {s['client_maxrss_mb']:.0f} MB (target < 100) [{scope}]")
    # the Maildir copies against dsync (both write the Maildir themselves)
    for fm, dm in (("ferry-maildir", "dsync"), ("ferry-maildir", "dsync-fsync"),
                   ("ferry-maildir-fs", "dsync"), ("ferry-maildir-off", "dsync")):
        cells = []
        for scope in scopes:
            r = results.get(scope, {})
            cells.append(f"{r[fm]['msg_per_s'] / r[dm]['msg_per_s']:.2f}"
                         if fm in r and dm in r else "–")
        if any(c != "–" for c in cells):
            lines.append(f"| {LABELS[fm]} vs {LABELS[dm]} | " + " | ".join(cells) +
                         f" | {'≥ 2.00' if dm == 'dsync' else ''} |")
    lines.append("")
    lines.extend(f"- {c}" for c in checks)
    lines.extend(f"- {n}" for n in notes)
    lines.append(f"- {ctx_info}")
    return "\n".join(lines) + "\n"


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])

    def ver(cmd):
        try:
            return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True).stdout.strip().splitlines()[0]
        except (OSError, IndexError):
            return "?"
    return {
        "nproc": os.cpu_count(), "cpu": model, "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(), "dovecot": ver(["dovecot", "--version"]),
        "isync": ver(["mbsync", "--version"]),
    }


# --------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true",
                    help="1 run, the largest account only, no warm-up round")
    ap.add_argument("--methods", default=",".join(ALL_METHODS))
    ap.add_argument("--scopes", default="one,all")
    ap.add_argument("--no-warm", action="store_true", help="skip the warm-up round")
    ap.add_argument("--quiet-wait", type=float, default=15,
                    help="before each run, wait up to this many seconds for other "
                         "processes to leave the CPUs idle (0: do not wait)")
    ap.add_argument("--quiet-total", type=float, default=90,
                    help="at most this many seconds of such waiting in the whole bench")
    ap.add_argument("--bin", default=harness.BIN)
    ap.add_argument("--bench-bin", default=None,
                    help="imapferry-bench (fetch-only, append-only); default: "
                         "BUILD/bench/tools/imapferry-bench of --bin's build")
    ap.add_argument("--target-fs", choices=("auto", "fresh", "disk"), default="auto",
                    help="where each run's target lives: fresh = a new journaled ext4 "
                         "on a loop device per run (see FreshFs), disk = a directory "
                         "on the machine's disk; auto = fresh when possible")
    ap.add_argument("--cache", default="/var/tmp/imapferry-bench")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--users", type=int, default=3)
    ap.add_argument("--messages", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    if a.quick:
        a.runs, a.scopes, a.no_warm = 1, "one", True
    methods = [m for m in a.methods.split(",") if m]
    scopes = [s for s in a.scopes.split(",") if s]
    for m in methods:
        if m not in ALL_METHODS:
            ap.error(f"unknown method {m}")
    for s in scopes:
        if s not in ("one", "all"):
            ap.error(f"unknown scope {s}")
    if os.geteuid() != 0:
        sys.exit("bench: needs root (throwaway Dovecot instances)")
    if not os.access(a.bin, os.X_OK):
        sys.exit(f"bench: {a.bin} not built (cmake --preset default && cmake --build build)")
    if a.bench_bin is None:
        a.bench_bin = bench_bin_of(a.bin)
    if ({"fetch", "append"} & set(methods)) and not os.access(a.bench_bin, os.X_OK):
        sys.exit(f"bench: {a.bench_bin} not built (cmake --preset default && "
                 f"cmake --build build)")
    for tool, m in (("mbsync", "mbsync"), ("doveadm", "dsync"), ("dovecot", None)):
        if (m is None or m in methods) and not shutil.which(tool):
            sys.exit(f"bench: {tool} not installed (scripts/install-deps.sh)")

    t_start = time.monotonic()
    root, rows = corpus(a)
    users = sorted({r["user"] for r in rows},
                   key=lambda u: -sum(1 for r in rows if r["user"] == u))
    pw = {u: "benchpw" for u in users}     # one password: one environment for all processes
    log(f"bench: corpus {root}: {len(rows)} messages, "
        f"{sum(r['size'] for r in rows) / 1e6:.0f} MB; users {users}")
    src = harness.Dovecot("bsrc", users=pw, master=MASTER, ssl=False)
    ctx = None
    try:
        for u in users:
            src.load_maildir(u, os.path.join(root, u))
        start_dovecot(src)
        ctx = Ctx(a, root, rows, src, users, pw)
        if a.target_fs == "fresh" or (a.target_fs == "auto" and fresh_fs_works(ctx.work)):
            ctx.fresh_fs = True
        a.target_fs_used = "fresh" if ctx.fresh_fs else "disk"
        for u in users:      # the source holds the corpus (oracle: imaplib)
            check_counts("source", u, ctx.exp[u], folder_counts(src, u, pw[u]))
        scope_users = {"one": users[:1], "all": users}
        failed = {}

        def attempt(m, us, run_id):
            """measure(), but a failing method is reported, dropped from the
            later runs, and makes the bench exit 1 at the end."""
            try:
                return measure(ctx, m, us, run_id)
            except BenchError as e:
                log(f"bench: FAILED: {e}")
                failed[m] = str(e).splitlines()[0]
                return None

        if not a.no_warm:
            # Dovecot builds its index and cache files on first access (and adds
            # cache fields as clients ask for them), and the page cache fills:
            # one untimed pass of each method that reads the source differently
            # (append-only does not read it; IMAP->Maildir reads it as copy does).
            log("bench: warm-up round")
            for m in methods:
                if m in ("ferry", "mbsync", "dsync", "fetch"):
                    attempt(m, users if m == "fetch" else users[:1], "warm")
        raw = {s: {m: [] for m in methods} for s in scopes}
        for i in range(a.runs):
            for s in scopes:
                for m in methods:
                    if m in failed or (m == "ferry-maildir" and ctx.ferry_maildir_note):
                        continue
                    r = attempt(m, scope_users[s], f"{s}{i}")
                    if r is None and m in failed:
                        continue
                    if r is None:
                        log(f"bench: {m}: skipped: {ctx.ferry_maildir_note}")
                        continue
                    raw[s][m].append(r)
                    log(f"bench: run {i + 1}/{a.runs} {s:3} {m:13} {r['wall']:7.2f} s "
                        f"{r['source_messages'] / r['wall']:7.0f} msg/s "
                        f"client {r['client_cpu']:.1f} s CPU {r['client_maxrss_mb']:.0f} MB"
                        f"; other processes {r['other_cpu']:.1f} s CPU")
        results = {s: {m: summarize(v) for m, v in raw[s].items() if v} for s in scopes}
        bin_sha = ctx.bin_sha256
    finally:
        src.stop()
        if ctx is not None:
            shutil.rmtree(ctx.work, ignore_errors=True)

    notes = [f"**FAILED: {LABELS[m]}**: {why}" for m, why in failed.items()]
    if "ferry-maildir" in methods and ctx.ferry_maildir_note:
        notes.append(f"imapferry copy IMAP→Maildir skipped: {ctx.ferry_maildir_note}")
    notes.append("rates use the source's message count and the corpus bytes (message "
                 "files, MB = 10^6 bytes) for every method; every run is checked: the "
                 "target holds exactly the source's messages per folder")
    notes.append("other CPU s: CPU time the rest of the machine used during the run "
                 "(/proc/stat busy time minus client and servers); a large value means the "
                 "run competed with other work on the machine")
    notes.append("scope all: one process per account, the three started together, for "
                 "every method")
    notes.append("target file system: " + (
        "a new journaled ext4 for each run (loop device, direct I/O; --target-fs)"
        if a.target_fs_used == "fresh" else
        "a directory on the machine's disk, the previous runs' targets deleted shortly "
        "before (--target-fs disk)"))
    notes.append("dsync: doveadm is the client and writes the target's Maildir itself, so "
                 "its client CPU includes the target's storage work")
    mach = machine()
    info = (f"{a.runs} run(s), median; {mach['nproc']} × {mach['cpu']}, {mach['ram_gb']} GB, "
            f"{mach['dovecot'].split()[0]} / {mach['isync']}; "
            f"total bench time {time.monotonic() - t_start:.0f} s")
    md = markdown(results, scopes, notes, info)
    print(md)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "latest.json"), "w") as f:
        json.dump({"machine": mach, "args": vars(a), "corpus": root, "failed": failed,
                   "imapferry_sha256": bin_sha, "results": results,
                   "runs": raw, "notes": notes, "date": time.strftime("%Y-%m-%d %H:%M:%S")},
                  f, indent=1, default=str)
    with open(os.path.join(a.out, "latest.md"), "w") as f:
        f.write(md)
    if failed:
        log("bench: FAILED: " + "; ".join(f"{m}: {why}" for m, why in failed.items()))
        sys.exit(1)


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        log(f"bench: FAILED: {e}")
        sys.exit(1)
