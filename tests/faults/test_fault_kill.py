#!/usr/bin/env python3
"""Fault suite: kill -9 at random moments.

  copy_maildir  `imapferry copy SRC maildir:PATH` SIGKILLed 20 times at random
                moments while a Dovecot serves PATH; between kills a client
                logs in (LIST, SELECT of every folder, STATUS), which makes
                Dovecot number any folder it finds without a uidlist (issue
                12, defect 1). The final run completes and every folder has
                the source's UIDVALIDITY, UIDNEXT and UIDs, flags and bodies.
  run_maildir   the same with `imapferry run` (planning, the Maildir probe,
                the workers), 20 kills; nothing left that the source lacks.
  plan_probe    `imapferry plan` SIGKILLed while its target probe folder
                exists (defect 2); the next plan deletes it; no
                imapferry-probe folder remains in the mailbox.
  imap_ghost_appends  `imapferry copy` into an IMAP target SIGKILLed while
                APPENDs it sent are still on their way (a proxy passes
                them on slowly, as socket buffers do): the server commits
                them after the process died. The next run, started at once,
                must wait for the folder to settle and match them: every
                message once.

Kill moments are uniform in [0, T] where T is the measured time of an
uninterrupted run; IMAPFERRY_TEST_SEED replays them.
"""

import contextlib
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as F  # noqa: E402
from faultlib import H, M  # noqa: E402

KILLS = int(os.environ.get("IMAPFERRY_FAULT_KILLS", "20"))
S = CORPUS = USER = None
PW = "pw-kill-Q1"
TMP = None


@contextlib.contextmanager
def setup():
    global S, CORPUS, USER, TMP
    H.require_root()
    CORPUS = H.gen_corpus(users=1, messages=500, seed=3)
    USER = CORPUS.users()[0]
    TMP = tempfile.mkdtemp(prefix="ife-fk-")
    with H.Dovecot("fk-src", users={USER: PW}, ssl=False) as S:
        S.load_maildir(USER, CORPUS.user_dir(USER))
        try:
            yield
        finally:
            shutil.rmtree(TMP, ignore_errors=True)


def src_url():
    return S.url(USER, query="?tls=none")


def kill_loop(tag, make_args, env, server, target_dir, reset):
    """Starts make_args() KILLS times, each SIGKILLed after a random delay
    in [0, T] (T: an uninterrupted run, measured first into a scratch
    target by reset(scratch=True)). A client logs in between. A run that
    ends before its kill starts a new round from an empty target.
    Returns the kill delays."""
    r = F.rng(tag)
    reset(True)
    t0 = time.monotonic()
    p = F.run(make_args(True), env)
    full = time.monotonic() - t0
    assert p.returncode == 0, f"calibration run: {p.returncode}\n{p.stderr[-3000:]}"
    reset(False)
    killed, rounds = [], 0
    while len(killed) < KILLS:
        delay = r.uniform(0.0, full)
        proc = F.start(make_args(False), env)
        if F.kill_after(proc, delay):
            killed.append(round(delay, 3))
        else:
            assert proc.returncode in (0, 1), f"{tag}: exit {proc.returncode}"
            rounds += 1
            if rounds > 2 * KILLS:
                break
            reset(False)       # complete: start again from scratch
            continue
        # a mail client in between: Dovecot numbers what it finds
        if os.path.isdir(target_dir):
            time.sleep(r.uniform(0.0, 0.3))
            F.login_check(server, USER, PW)
    assert len(killed) >= KILLS // 2, f"{tag}: only {len(killed)} kills landed"
    H.log(f"{tag}: full run {full:.2f} s; {len(killed)} kills at "
          f"{sorted(killed)} s; {rounds} runs completed before their kill")
    return killed


def test_copy_maildir():
    with H.Dovecot("fk-dst", users={USER: PW}, ssl=False) as d:
        target = d.maildir(USER)
        state = os.path.join(TMP, "copy.db")
        scratch = os.path.join(TMP, "scratch-md")

        def args(scratch_run):
            return ["copy", "--state", state + (".s" if scratch_run else ""),
                    "--owner", "mail:mail", src_url(),
                    f"maildir:{scratch if scratch_run else target}"]

        def reset(scratch_run):
            paths = (scratch, state + ".s") if scratch_run else \
                (os.path.join(d.data_dir, USER), state)
            for pth in paths:
                if os.path.isdir(pth):
                    shutil.rmtree(pth)
                elif os.path.exists(pth):
                    os.unlink(pth)

        env = F.ferry_env(src_pw=PW)
        kill_loop("copy_maildir", args, env, d, target, reset)
        p = F.run(args(False), env)
        assert p.returncode == 0, f"final run: {p.returncode}\n{p.stderr[-4000:]}"
        src = M.snapshot(S, USER, PW)
        dst = M.snapshot(d, USER, PW)
        n = M.compare_snapshots(src, dst)
        assert not F.uid_problems(d), F.uid_problems(d)
        leftover = [e for e in os.listdir(os.path.join(target, "tmp")) if "imapferry" in e]
        assert not leftover, leftover
        H.log(f"copy_maildir: final run kept {n} messages in {len(src)} folders, "
              f"UIDVALIDITY/UIDNEXT/UIDs equal")


def test_plan_probe():
    """plan killed while its probe folder exists in the target mailbox."""
    with H.Dovecot("fk-pdst", users={USER: PW}, ssl=False) as d:
        users = os.path.join(TMP, "plan-users.csv")
        pwf = os.path.join(TMP, "pw")
        with open(pwf, "w") as f:
            f.write(PW + "\n")
        with open(users, "w") as f:
            f.write("src_user,dst_user,src_password_file,dst_password_file\n")
            f.write(f"{USER},{USER},{pwf},{pwf}\n")
        url = f"imap://%u@127.0.0.1:{S.port}?tls=none"
        durl = f"imap://%u@127.0.0.1:{d.port}?tls=none"
        args = ["plan", users, url, durl]
        env = F.ferry_env()
        # the account must exist on the target before the probe
        F.login_check(d, USER, PW)
        md = d.maildir(USER)
        killed_with = []
        for attempt in range(3):
            proc = F.start(args, env)
            deadline = time.monotonic() + 60
            seen = []
            while proc.poll() is None and time.monotonic() < deadline:
                seen = [e for e in os.listdir(md) if "imapferry-probe" in e]
                if seen:
                    time.sleep(F.rng("plan").uniform(0.0, 0.2))
                    proc.kill()
                    break
                time.sleep(0.005)
            F.no_sanitizer_report(proc.communicate()[1])
            if seen:
                killed_with = seen
                break
        assert killed_with, "plan never made a probe folder before it ended"
        left = F.imapferry_probe_folders(d, USER, PW)
        H.log(f"plan_probe: killed with {killed_with} on disk; left in the mailbox: {left}")
        p = F.run(args, env)
        assert p.returncode == 0, p.stderr[-3000:]
        assert "deleted the probe folder" in p.stderr or not left, p.stderr[-3000:]
        left = F.imapferry_probe_folders(d, USER, PW)
        assert not left, f"probe folders remain after the next plan: {left}\n{p.stderr[-3000:]}"
        assert not [e for e in os.listdir(md) if "imapferry" in e], os.listdir(md)


def test_run_maildir():
    with H.Dovecot("fk-rdst", users={USER: PW}, ssl=False) as d:
        users = os.path.join(TMP, "run-users.csv")
        pwf = os.path.join(TMP, "pw-run")
        with open(pwf, "w") as f:
            f.write(PW + "\n")
        with open(users, "w") as f:
            f.write("src_user,dst_user,src_password_file\n")
            f.write(f"{USER},{USER},{pwf}\n")
        state = os.path.join(TMP, "run.db")
        scratch = os.path.join(TMP, "scratch-run")
        url = f"imap://%u@127.0.0.1:{S.port}?tls=none"

        def args(scratch_run):
            root = scratch if scratch_run else d.data_dir
            return ["run", users, url, f"maildir:{root}/%u/Maildir", "--state",
                    state + (".s" if scratch_run else ""), "--workers", "2",
                    "--split-above", "0.3", "--owner", "8:8", "--progress", "plain"]

        def reset(scratch_run):
            paths = (scratch, state + ".s") if scratch_run else \
                (os.path.join(d.data_dir, USER), state)
            for pth in paths:
                if os.path.isdir(pth):
                    shutil.rmtree(pth)
                elif os.path.exists(pth):
                    os.unlink(pth)

        env = F.ferry_env()
        kill_loop("run_maildir", args, env, d, d.maildir(USER), reset)
        p = F.run(args(False), env)
        assert p.returncode == 0, f"final run: {p.returncode}\n{p.stderr[-4000:]}"
        src = M.snapshot(S, USER, PW)
        dst = M.snapshot(d, USER, PW)
        n = M.compare_snapshots(src, dst)
        assert not F.uid_problems(d), F.uid_problems(d)
        target = d.maildir(USER)
        junk = [e for e in os.listdir(target) + os.listdir(os.path.join(target, "tmp"))
                if "imapferry" in e]
        assert not junk, f"left in the Maildir: {junk}"
        H.log(f"run_maildir: final run kept {n} messages in {len(src)} folders")



def test_imap_ghost_appends():
    with H.Dovecot("fk-gdst", users={USER: PW}, ssl=False) as d:
        # groups of at most 8 MiB pass in ~2 s, less than the next run's
        # 3 s of quiet; 4 MB on their way take a second to land
        proxy = F.GhostProxy(d.port, rate=4_000_000)
        try:
            state = os.path.join(TMP, "ghost.db")
            env = F.ferry_env(src_pw=PW, dst_pw=PW)
            via = f"imap://{USER}@127.0.0.1:{proxy.port}?tls=none"
            proc = F.start(["copy", "--state", state, src_url(), via], env)
            deadline = time.monotonic() + 60
            while proxy.backlog() < 4_000_000 and proc.poll() is None and \
                    time.monotonic() < deadline:
                time.sleep(0.005)
            assert proc.poll() is None, "the copy ended before APPENDs piled up"
            backlog = proxy.backlog()
            F.kill_after(proc, 0)
            # at once, while the dead copy's APPENDs are still arriving
            # (the same URL: the state keys folders by it)
            p = F.run(["copy", "--state", state, src_url(), via], env)
            assert p.returncode == 0, f"next run: {p.returncode}\n{p.stderr[-3000:]}"
            while not proxy.done() and time.monotonic() < deadline + 60:
                time.sleep(0.05)
            assert proxy.done(), "the proxy never passed everything on"
            time.sleep(0.5)
            src, dst = M.snapshot(S, USER, PW), M.snapshot(d, USER, PW)
            lost, dup = F.lost_and_duplicated(src, dst)
            per = {f: (len(src.get(f, {"msgs": {}})["msgs"]), len(v["msgs"]))
                   for f, v in dst.items()}
            assert (lost, dup) == (0, 0), \
                f"{lost} lost, {dup} duplicated; (source, target) per folder {per}\n" \
                f"{p.stderr[-3000:]}"
            waited = [ln for ln in p.stderr.splitlines() if "waiting until it settles" in ln]
            # a sanitizer's binary starts slowly enough (3 s under TSan)
            # for the APPENDs to have landed before it looks: nothing to
            # wait for then, and the matching alone must find them
            assert waited or F.sanitizer(), \
                f"the next run did not see the folder grow\n{p.stderr[-2000:]}"
            H.log(f"imap_ghost_appends: killed with {backlog} bytes on their way; "
                  f"next run: {(waited or ['-'])[0].split(': ', 1)[-1][:110]!r}; "
                  f"0 lost, 0 duplicated")
        finally:
            proxy.close()


if __name__ == "__main__":
    H.run_tests(setup=setup)
