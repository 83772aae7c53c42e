#!/usr/bin/env python3
"""imapferry copy into a Maildir that a live Dovecot serves (issue 15).

The copy takes dovecot-uidlist.lock only inside each commit (every 2000
messages), not from the first delivery of a batch to its commit across
network reads: Dovecot waits for that lock whenever it has to sync, so a
lock held for a whole batch stalled every session of the user.

Tests:
  a  a client SELECTs INBOX and FETCHes its newest messages every 100 ms
     while `imapferry copy` writes 4000 messages into that INBOX, reading
     the source through a proxy that passes 3 MB/s (a batch of 2000 then
     takes seconds, as over a WAN, however fast the machine is):
     the 99th percentile of the loop's latency stays below 1 s (the one
     timing assertion: it checks for blocking, not speed); every UID the
     client sees holds the source's message of that UID; afterwards the
     target equals the source, and Dovecot's log has no complaint about
     the uidlist
  b  the same over a slower proxy with 600 messages (fewer than a commit's
     count) and IMAPFERRY_COMMIT_MS=1000: the target also commits on a
     timer, so the client sees the INBOX grow at least twice while the
     copy runs (with commits by count only, all 600 appear at the end)
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import maildir_util as M  # noqa: E402

USER, PW = "alice", "alicepw-L5"
N_FIRST = 20
N_BULK = int(os.environ.get("IMAPFERRY_LIVE_MESSAGES", "4000"))
# the source's replies reach imapferry at this rate: a batch of 2000
# messages then takes seconds however fast the machine is, as over a WAN
RATE = 3_000_000
T0 = 1_546_300_800


def add_source_mail(maildir, first, n, pad=4000):
    """n messages in the source INBOX's new/, numbered by Dovecot in name
    order at the next SELECT."""
    new = os.path.join(maildir, "new")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(maildir, sub), exist_ok=True)
    H.chown_tree(maildir, H.MAIL_UID, H.MAIL_GID)
    for i in range(first, first + n):
        data = M.make_body("live", i, True, extra=(b"z" * 76 + b"\r\n") * (pad // 78))
        path = os.path.join(new, f"{1_600_000_000 + i:012d}.M{i}P555.mda")
        with open(path, "wb") as f:
            f.write(data)
        os.utime(path, (T0 + i * 60, T0 + i * 60))
        os.chown(path, H.MAIL_UID, H.MAIL_GID)


def number_source(s):
    c = s.imap(USER, PW)
    try:
        typ, d = c.select("INBOX")
        assert typ == "OK", d
        return int(d[0])
    finally:
        c.logout()


def src_url(s):
    return s.url(USER, query="?tls=none")


class SlowProxy:
    """A TCP proxy on 127.0.0.1 that passes the server's bytes to the client
    at `rate` bytes per second (the client's bytes at full speed)."""

    def __init__(self, port, rate):
        self.port, self.rate = port, rate
        self.ls = socket.create_server(("127.0.0.1", 0))
        self.listen_port = self.ls.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.port))
            threading.Thread(target=self._pump, args=(c, u, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, self.rate), daemon=True).start()

    @staticmethod
    def _pump(a, b, rate):
        t0, sent = time.monotonic(), 0
        try:
            while True:
                data = a.recv(16384)
                if not data:
                    break
                b.sendall(data)
                sent += len(data)
                if rate:
                    ahead = sent / rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
        except OSError:
            pass
        finally:
            for x in (a, b):
                try:
                    x.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.ls.close()


def percentile(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def test_a_client_latency_during_copy():
    H.require_root()
    tmp = tempfile.mkdtemp(prefix="ife-live-a-")
    state = os.path.join(tmp, "st.db")
    try:
        with H.Dovecot("live-src", users={USER: PW}, ssl=False) as s, \
                H.Dovecot("live-dst", users={USER: PW}, ssl=False) as d:
            target = d.maildir(USER)
            add_source_mail(s.maildir(USER), 0, N_FIRST)
            assert number_source(s) == N_FIRST
            # a first copy gives the target INBOX the source's UIDVALIDITY
            p = M.ferry_maildir(src_url(s), PW, target, state=state)
            assert p.returncode == 0, H.describe(p)
            add_source_mail(s.maildir(USER), N_FIRST, N_BULK)
            assert number_source(s) == N_FIRST + N_BULK
            src = M.snapshot(s, USER, PW, body=False)["INBOX"]["msgs"]

            live = d.imap(USER, PW)
            assert live.select("INBOX")[0] == "OK"
            e = dict(os.environ, IMAPFERRY_SRC_PASSWORD=PW)
            e.pop("IMAPFERRY_PASSWORD", None)
            t_start = time.monotonic()
            proxy = SlowProxy(s.port, RATE)
            slow_url = src_url(s).replace(f":{s.port}", f":{proxy.listen_port}")
            assert slow_url != src_url(s), slow_url
            p = subprocess.Popen([H.BIN, "copy", "--state", state, "--owner", "mail:mail",
                                  slow_url, f"maildir:{target}"], env=e,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
            lat, seen = [], set()
            try:
                while p.poll() is None and time.monotonic() - t_start < 600:
                    t = time.monotonic()
                    typ, data = live.select("INBOX")     # read-write, as a client does
                    assert typ == "OK", data
                    exists = int(data[0])
                    lo = max(1, exists - 20)
                    typ, data = live.fetch(f"{lo}:*", "(UID FLAGS RFC822.SIZE)")
                    assert typ == "OK", data
                    lat.append(time.monotonic() - t)
                    for uid, m in M.parse_fetch(data, body=False).items():
                        seen.add(uid)
                        assert uid in src, f"the client saw UID {uid}, not a source UID"
                        assert m["size"] == src[uid]["size"], (uid, m, src[uid])
                    # a user's client, not a busy loop: a lock held from one
                    # commit to the next blocks the first round after each
                    # commit, and those rounds must weigh in the p99
                    time.sleep(0.1)
            finally:
                if p.poll() is None:
                    p.kill()
                out, err = p.communicate()
                proxy.close()
            took = time.monotonic() - t_start
            assert p.returncode == 0, f"copy: {p.returncode}\n{out.decode()}\n{err.decode()}"
            live.logout()
            assert len(lat) >= 10, f"only {len(lat)} client rounds in {took:.1f} s"
            p99, worst = percentile(lat, 0.99), max(lat)
            print(f"  {N_BULK} messages copied in {took:.1f} s; {len(lat)} SELECT+FETCH "
                  f"rounds: median {percentile(lat, 0.5) * 1000:.0f} ms, "
                  f"p99 {p99 * 1000:.0f} ms, max {worst * 1000:.0f} ms, "
                  f"{sum(1 for x in lat if x >= 0.5)} rounds >= 0.5 s; "
                  f"{len(seen)} UIDs seen during the copy", file=sys.stderr)
            assert p99 < 1.0, f"p99 {p99:.2f} s: the client was blocked (max {worst:.2f} s)"

            dst = M.snapshot(d, USER, PW, body=False)["INBOX"]
            assert sorted(dst["msgs"]) == sorted(src), \
                f"target {len(dst['msgs'])} messages, source {len(src)}"
            for uid, m in dst["msgs"].items():
                assert m["size"] == src[uid]["size"], uid
            bad = M.dovecot_log_problems(d)
            assert not bad, "dovecot.log complains:\n" + "\n".join(bad)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_b_commits_on_a_timer():
    H.require_root()
    tmp = tempfile.mkdtemp(prefix="ife-live-b-")
    state = os.path.join(tmp, "st.db")
    n = 600
    try:
        with H.Dovecot("liveb-src", users={USER: PW}, ssl=False) as s, \
                H.Dovecot("liveb-dst", users={USER: PW}, ssl=False) as d:
            target = d.maildir(USER)
            add_source_mail(s.maildir(USER), 0, N_FIRST)
            assert number_source(s) == N_FIRST
            p = M.ferry_maildir(src_url(s), PW, target, state=state)
            assert p.returncode == 0, H.describe(p)
            add_source_mail(s.maildir(USER), N_FIRST, n)
            assert number_source(s) == N_FIRST + n
            live = d.imap(USER, PW)
            e = dict(os.environ, IMAPFERRY_SRC_PASSWORD=PW, IMAPFERRY_COMMIT_MS="1000")
            e.pop("IMAPFERRY_PASSWORD", None)
            # about 2.6 MB at 600 KB/s: 4-5 s of copying
            proxy = SlowProxy(s.port, 600_000)
            slow_url = src_url(s).replace(f":{s.port}", f":{proxy.listen_port}")
            p = subprocess.Popen([H.BIN, "copy", "--state", state, "--owner", "mail:mail",
                                  slow_url, f"maildir:{target}"], env=e,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
            counts = []
            t_start = time.monotonic()
            try:
                while p.poll() is None and time.monotonic() - t_start < 300:
                    typ, data = live.select("INBOX")
                    assert typ == "OK", data
                    if p.poll() is None:
                        counts.append(int(data[0]))
                    time.sleep(0.1)
            finally:
                if p.poll() is None:
                    p.kill()
                out, err = p.communicate()
                proxy.close()
            assert p.returncode == 0, f"copy: {p.returncode}\n{out.decode()}\n{err.decode()}"
            live.logout()
            took = time.monotonic() - t_start
            steps = sorted(set(c for c in counts if N_FIRST < c < N_FIRST + n))
            print(f"  {n} messages in {took:.1f} s; the INBOX seen at {steps} "
                  f"between {N_FIRST} and {N_FIRST + n}", file=sys.stderr)
            assert took >= 2.5, f"the copy took {took:.1f} s: too fast to tell"
            assert len(steps) >= 2, f"published only at the end: {sorted(set(counts))}"
            dst = M.snapshot(d, USER, PW, body=False)["INBOX"]
            assert len(dst["msgs"]) == N_FIRST + n, len(dst["msgs"])
            bad = M.dovecot_log_problems(d)
            assert not bad, "dovecot.log complains:\n" + "\n".join(bad)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    H.run_tests()
