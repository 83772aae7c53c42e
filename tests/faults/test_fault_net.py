#!/usr/bin/env python3
"""Fault suite: the network.

A proxy (faultlib.FaultProxy) sits between imapferry and the servers and
cuts connections (RST) at random byte offsets of everything it forwards,
inside literals as anywhere else, or stalls them (forwards nothing more,
keeps them open). Offsets are uniform over the traffic of an uninterrupted
copy measured first through the same proxy.

  cuts_imap     50 cuts (25 on the source side, 25 on the target side)
                during one `copy` IMAP -> IMAP: it completes in one
                invocation; per folder the bodies are the source's, 0 lost,
                0 duplicated
  cuts_maildir  50 cuts of the source connection during one `copy` into a
                Maildir a Dovecot serves: one invocation, UIDVALIDITY,
                UIDNEXT, UIDs, flags and bodies equal
  stall         the source connection stalls 3 times (--timeout 5): each is
                detected after 5 s without a byte, logged, reconnected; one
                invocation completes
  keepalive     a session that waits sends NOOP (IMAPFERRY_KEEPALIVE_MS=500
                instead of 60 s): the source answers a body FETCH 4 s late
                and the target session, idle meanwhile, gets a NOOP; the
                target answers its first APPEND 4 s late and the source
                session, idle once everything is fetched, gets a NOOP; both
                copies complete, 0 lost, 0 duplicated
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

CUTS = int(os.environ.get("IMAPFERRY_FAULT_CUTS", "50"))
S = CORPUS = USER = TMP = None
PW = "pw-net-Q2"
CAL = "calib"


@contextlib.contextmanager
def setup():
    global S, CORPUS, USER, TMP
    H.require_root()
    CORPUS = H.gen_corpus(users=1, messages=500, seed=3)
    USER = CORPUS.users()[0]
    TMP = tempfile.mkdtemp(prefix="ife-fn-")
    with H.Dovecot("fn-src", users={USER: PW}, ssl=False) as S:
        S.load_maildir(USER, CORPUS.user_dir(USER))
        try:
            yield
        finally:
            shutil.rmtree(TMP, ignore_errors=True)


def purl(user, port):
    return f"imap://{user}@127.0.0.1:{port}?tls=none"


def offsets(r, n, total):
    return sorted(int(r.uniform(0.02, 0.98) * total) for _ in range(n))


def copy(src_port, dst, state, *extra, dst_user=None):
    args = ["copy", "--state", state, "--timeout", "10", *extra, purl(USER, src_port), dst]
    t0 = time.monotonic()
    p = F.run(args, F.ferry_env(src_pw=PW, dst_pw=PW), timeout=900)
    return p, time.monotonic() - t0


def retries(p):
    return [ln for ln in p.stderr.splitlines() if "retry" in ln]


def test_cuts_imap():
    r = F.rng("cuts_imap")
    with H.Dovecot("fn-dst", users={USER: PW, CAL: PW}, ssl=False) as d:
        sp, dp = F.FaultProxy(S.port), F.FaultProxy(d.port)
        p, clean = copy(sp.port, purl(CAL, dp.port), os.path.join(TMP, "cal.db"))
        assert p.returncode == 0, H.describe(p)
        st, dt = sp.total, dp.total
        sp.close()
        dp.close()
        half = CUTS // 2
        sp = F.FaultProxy(S.port, cuts=offsets(r, half, st))
        dp = F.FaultProxy(d.port, cuts=offsets(r, CUTS - half, dt))
        p, took = copy(sp.port, purl(USER, dp.port), os.path.join(TMP, "imap.db"))
        sp.close()
        dp.close()
        fired = len(sp.fired) + len(dp.fired)
        assert p.returncode == 0, f"{fired} cuts fired\n" + H.describe(p)
        lost, dup = F.lost_and_duplicated(M.snapshot(S, USER, PW), M.snapshot(d, USER, PW))
        assert (lost, dup) == (0, 0), f"{lost} lost, {dup} duplicated after {fired} cuts"
        assert fired == CUTS, f"only {fired} of {CUTS} cuts fired"
        H.log(f"cuts_imap: {fired} cuts survived in one run ({len(retries(p))} retries "
              f"logged), {took:.1f} s against {clean:.1f} s uncut; "
              f"traffic {st} + {dt} bytes; 0 lost, 0 duplicated")


def test_cuts_maildir():
    r = F.rng("cuts_maildir")
    with H.Dovecot("fn-md", users={USER: PW}, ssl=False) as d:
        sp = F.FaultProxy(S.port)
        scratch = os.path.join(TMP, "cal-md")
        p, clean = copy(sp.port, f"maildir:{scratch}", os.path.join(TMP, "calm.db"))
        assert p.returncode == 0, H.describe(p)
        st = sp.total
        sp.close()
        sp = F.FaultProxy(S.port, cuts=offsets(r, CUTS, st))
        p, took = copy(sp.port, f"maildir:{d.maildir(USER)}", os.path.join(TMP, "md.db"),
                       "--owner", "mail:mail")
        sp.close()
        assert p.returncode == 0, f"{len(sp.fired)} cuts fired\n" + H.describe(p)
        src, dst = M.snapshot(S, USER, PW), M.snapshot(d, USER, PW)
        n = M.compare_snapshots(src, dst)
        assert F.lost_and_duplicated(src, dst) == (0, 0)
        assert len(sp.fired) == CUTS, f"only {len(sp.fired)} of {CUTS} cuts fired"
        H.log(f"cuts_maildir: {len(sp.fired)} cuts survived in one run "
              f"({len(retries(p))} retries logged), {took:.1f} s against {clean:.1f} s "
              f"uncut; {n} messages with their UIDs")


def test_stall():
    r = F.rng("stall")
    with H.Dovecot("fn-st", users={USER: PW, CAL: PW}, ssl=False) as d:
        sp = F.FaultProxy(S.port)
        p, clean = copy(sp.port, purl(CAL, d.port), os.path.join(TMP, "cals.db"))
        assert p.returncode == 0, H.describe(p)
        st = sp.total
        sp.close()
        sp = F.FaultProxy(S.port, stalls=offsets(r, 3, st))
        args = ["copy", "--state", os.path.join(TMP, "st.db"), "--timeout", "5",
                purl(USER, sp.port), purl(USER, d.port)]
        t0 = time.monotonic()
        p = F.run(args, F.ferry_env(src_pw=PW, dst_pw=PW), timeout=600)
        took = time.monotonic() - t0
        sp.close()
        assert p.returncode == 0, H.describe(p)
        assert len(sp.fired) == 3, sp.fired
        logged = [ln for ln in p.stderr.splitlines() if "no progress" in ln or "timeout" in ln]
        assert len(logged) >= 3, p.stderr[-3000:]
        lost, dup = F.lost_and_duplicated(M.snapshot(S, USER, PW), M.snapshot(d, USER, PW))
        assert (lost, dup) == (0, 0), (lost, dup)
        # each stall costs the 5 s timeout and a 1-2 s backoff, not 120 s
        assert took < clean + 3 * 12 + 20, f"{took:.1f} s"
        H.log(f"stall: 3 stalls detected and survived in {took:.1f} s "
              f"({clean:.1f} s unstalled)")


def noop_conns(proxy):
    """Indexes of the proxy's connections whose client sent NOOP."""
    return [i for i in range(len(proxy.sent)) if b"NOOP" in proxy.commands(i)]


def test_keepalive():
    env = F.ferry_env(src_pw=PW, dst_pw=PW)
    env["IMAPFERRY_KEEPALIVE_MS"] = "500"
    with H.Dovecot("fn-ka", users={"ka1": PW, "ka2": PW}, ssl=False) as d:
        # a slow source: its 2nd body FETCH is answered 4 s late (one
        # session pair, small batches: the target has 5 messages to store
        # first, then nothing, with APPENDs possibly still in flight)
        sp = F.FaultProxy(S.port, pause=(rb"BODY\.PEEK\[\]", 2, 4))
        dp = F.FaultProxy(d.port, record=True)
        args = ["copy", "--state", os.path.join(TMP, "ka1.db"), "--timeout", "10",
                "--parallel", "1", "--fetch-batch", "5", "--no-subscriptions",
                purl(USER, sp.port), purl("ka1", dp.port)]
        p = F.run(args, env, timeout=300)
        sp.close()
        dp.close()
        assert p.returncode == 0, H.describe(p)
        assert len(sp.paused) == 1, sp.paused
        assert noop_conns(dp), ("no NOOP from the target session while the source "
                                f"was slow: {dp.commands(0)[-20:]}")
        assert not noop_conns(sp), "NOOP on the source while it was busy"
        assert F.lost_and_duplicated(M.snapshot(S, USER, PW), M.snapshot(d, "ka1", PW)) == (0, 0)
        # a slow target: its first APPEND is answered 4 s late, while the
        # source has fetched the whole first folder (INBOX) into the queue
        sp = F.FaultProxy(S.port, record=True)
        dp = F.FaultProxy(d.port, pause=(rb"APPEND", 1, 4))
        args = ["copy", "--state", os.path.join(TMP, "ka2.db"), "--timeout", "10",
                "--parallel", "1", "--no-subscriptions", purl(USER, sp.port),
                purl("ka2", dp.port)]
        p = F.run(args, env, timeout=300)
        sp.close()
        dp.close()
        assert p.returncode == 0, H.describe(p)
        assert len(dp.paused) == 1, dp.paused
        assert noop_conns(sp), ("no NOOP from the source session while the target "
                                f"was slow: {sp.commands(0)[-20:]}")
        assert F.lost_and_duplicated(M.snapshot(S, USER, PW), M.snapshot(d, "ka2", PW)) == (0, 0)
        H.log(f"keepalive: NOOP on the target while the source was slow, on the "
              f"source while the target was slow; both copies complete")


if __name__ == "__main__":
    H.run_tests(setup=setup)
