"""Shared helpers of the fault suite (tests/faults/test_fault_*.py).

Standard library only. Imports the integration harness (tests/integ) for
the throwaway servers, the corpus and the imaplib oracles.
"""

import os
import random
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integ"))
sys.path.insert(0, os.path.join(HERE, "..", "support"))
import harness as H  # noqa: E402,F401
import maildir_util as M  # noqa: E402,F401

SEED = int(os.environ.get("IMAPFERRY_TEST_SEED", str(int(time.time()))))
print(f"faults: IMAPFERRY_TEST_SEED={SEED} replays this run", flush=True)


def rng(tag):
    """A random generator per test, reproducible with IMAPFERRY_TEST_SEED."""
    return random.Random(f"{SEED}-{tag}")


def ferry_env(src_pw=None, dst_pw=None):
    e = dict(os.environ)
    e.pop("IMAPFERRY_PASSWORD", None)
    if src_pw is not None:
        e["IMAPFERRY_SRC_PASSWORD"] = src_pw
    if dst_pw is not None:
        e["IMAPFERRY_DST_PASSWORD"] = dst_pw
    return e


# What ASan, UBSan, LSan and TSan print: under the sanitizer builds a
# report fails the test even when the process was killed afterwards or
# its exit status is one a test accepts (1: "some messages failed").
SANITIZER_REPORT = re.compile(r"ERROR: (Address|Leak)Sanitizer|WARNING: ThreadSanitizer|"
                              r"runtime error: |ThreadSanitizer: |AddressSanitizer: ")


def no_sanitizer_report(text, what=""):
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    m = SANITIZER_REPORT.search(text or "")
    if m:
        at = max(0, m.start() - 200)
        raise AssertionError(f"sanitizer report{' in ' + what if what else ''}:\n"
                             f"{text[at:at + 6000]}")


def sanitizer():
    """"asan" or "tsan" when the binary under test was built with
    AddressSanitizer or ThreadSanitizer, else None."""
    with open(H.BIN, "rb") as f:
        data = f.read()
    if b"__tsan_init" in data:
        return "tsan"
    if b"__asan_init" in data:
        return "asan"
    return None


def start(args, env):
    return subprocess.Popen([H.BIN, *args], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def run(args, env, timeout=600):
    p = subprocess.run([H.BIN, *args], env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=timeout)
    no_sanitizer_report(p.stderr, " ".join(args[:1]))
    return p


def kill_after(p, delay):
    """SIGKILL p after delay seconds unless it ended first. Returns True if
    it was killed."""
    try:
        p.wait(timeout=delay)
        _out, err = p.communicate()
        no_sanitizer_report(err)
        return False
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        _out, err = p.communicate()
        no_sanitizer_report(err)
        return True


def login_check(server, user, pw):
    """What a mail client does at login: LIST, SELECT of every folder,
    STATUS. Returns {raw name: (UIDVALIDITY, UIDNEXT, MESSAGES)}."""
    c = server.imap(user, pw)
    out = {}
    try:
        for raw in M.selectable(c):
            typ, data = c.select(M.quote(raw))
            assert typ == "OK", (raw, data)
            c.unselect()
            st = M.status(c, raw)
            out[raw] = (st["UIDVALIDITY"], st["UIDNEXT"], st["MESSAGES"])
    finally:
        c.logout()
    return out


def uid_problems(server):
    """Lines of dovecot.log that mean a UID was not kept."""
    bad = ("UIDs not ordered", "renumber", "Expunged message reappeared",
           "wrong W value", "Broken file", "Corrupted", "Panic", "Fatal")
    try:
        with open(server.log_path, errors="replace") as f:
            return [ln.rstrip() for ln in f if any(b in ln for b in bad)]
    except FileNotFoundError:
        return []


def run_rss(cmd, env, timeout=120):
    """Runs cmd (stdout/stderr to temporary files, stdin /dev/null).
    Returns (exit status, stdout, stderr, peak RSS in KiB). The peak comes
    from /usr/bin/time (its child's ru_maxrss); without it, from polling
    VmHWM in /proc. (Not wait4() here: a child forked from this Python
    process keeps the parent's high-water mark across exec.)"""
    import tempfile
    timer = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(mode="r") as tf:
        full = [timer, "-f", "%M", "-o", tf.name, *cmd] if timer else list(cmd)
        p = subprocess.Popen(full, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        hwm = 0
        deadline = time.monotonic() + timeout
        while p.poll() is None:
            if time.monotonic() > deadline:
                p.kill()
                p.wait()
                break
            if not timer:
                try:
                    with open(f"/proc/{p.pid}/status") as f:
                        for ln in f:
                            if ln.startswith("VmHWM:"):
                                hwm = max(hwm, int(ln.split()[1]))
                except (OSError, ValueError):
                    pass
            time.sleep(0.01)
        rc = p.returncode
        if timer:
            vals = [ln.strip() for ln in tf.read().splitlines() if ln.strip().isdigit()]
            hwm = int(vals[-1]) if vals else 0
            text = tf.name
            del text
        out.seek(0)
        err.seek(0)
        e = err.read().decode(errors="replace")
        no_sanitizer_report(e)
        if timer:
            # time(1) reports a signal as "Command terminated by signal N"
            m = re.search(r"Command terminated by signal (\d+)", e)
            if m:
                rc = -int(m.group(1))
            elif re.search(r"Command exited with non-zero status (\d+)", e):
                rc = int(re.search(r"Command exited with non-zero status (\d+)", e).group(1))
        return rc, out.read().decode(errors="replace"), e, hwm


def imapferry_probe_folders(server, user, pw):
    c = server.imap(user, pw)
    try:
        typ, data = c.list('""', "*")
        assert typ == "OK", data
        return [raw for _a, _d, raw in H.parse_list_response(data)
                if re.search(r"imapferry", raw)]
    finally:
        c.logout()


class FaultProxy:
    """A TCP proxy 127.0.0.1:port -> 127.0.0.1:upstream that cuts
    connections (RST, both sides) or stalls them (stops forwarding, keeps
    them open) when the bytes forwarded, counted over every connection and
    both directions, reach the next of the given offsets. A cut falls at an
    exact byte: inside a literal as often as anywhere else."""

    def __init__(self, upstream_port, cuts=(), stalls=(), pause=None, record=False):
        """pause: (regex, n, seconds): when the client's bytes on one
        connection match regex for the n-th time (over every connection),
        that connection forwards nothing in either direction for seconds,
        then goes on (a slow server, not a stall). With record or pause,
        what clients send is kept per connection in self.sent (a list of
        bytearrays)."""
        import socket
        import threading
        self.upstream = upstream_port
        self.pause = pause
        self.pause_seen = 0
        self.paused = []          # (connection index, monotonic start, end)
        self.record = record or pause is not None
        self.counts = []          # pause pattern matches per connection
        self.sent = []
        self.events = sorted([(o, "cut") for o in cuts] + [(o, "stall") for o in stalls])
        self.fired = []
        self.total = 0
        self.conns = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.stopped = True
        self.sock.close()

    def _accept(self):
        import socket
        import threading
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += 1
                idx = len(self.sent)
                self.sent.append(bytearray())
                self.counts.append(0)
            threading.Thread(target=self._pump, args=(c, u, idx), daemon=True).start()

    @staticmethod
    def _rst(*socks):
        import socket
        import struct
        for s in socks:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
            except OSError:
                pass

    def _budget(self, n):
        """How many of n bytes may pass now, and the event at that point."""
        with self.lock:
            if self.events and self.total + n >= self.events[0][0]:
                off, kind = self.events.pop(0)
                k = max(0, off - self.total)
                self.total += k
                self.fired.append((kind, off))
                return k, kind
            self.total += n
            return n, None

    def _pause_due(self, idx):
        """Seconds to pause connection idx now (its client just sent)."""
        import re as _re
        if self.pause is None:
            return 0
        pattern, nth, secs = self.pause
        with self.lock:
            before = self.pause_seen
            n = len(_re.findall(pattern, bytes(self.sent[idx])))
            self.pause_seen += n - self.counts[idx]
            self.counts[idx] = n
            if before < nth <= self.pause_seen:
                return secs
        return 0

    def commands(self, idx):
        """The command lines (tag stripped) client idx sent, literals
        included as they came."""
        with self.lock:
            data = bytes(self.sent[idx])
        return [ln.split(b" ", 1)[1] if b" " in ln else ln
                for ln in data.split(b"\r\n") if ln]

    def _pump(self, c, u, idx):
        import select
        socks = [c, u]
        peer = {c: u, u: c}
        try:
            while True:
                r, _, _ = select.select(socks, [], [], 60)
                if not r:
                    continue
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        self._rst(c, u)
                        return
                    k, kind = self._budget(len(data))
                    if k:
                        peer[s].sendall(data[:k])
                    if s is c and k and self.record:
                        with self.lock:
                            self.sent[idx] += data[:k]
                        secs = self._pause_due(idx)
                        if secs:
                            t0 = time.monotonic()
                            time.sleep(secs)
                            with self.lock:
                                self.paused.append((idx, t0, time.monotonic()))
                    if kind == "cut":
                        self._rst(c, u)
                        return
                    if kind == "stall":
                        # keep both open, forward nothing more, until
                        # the client gives up on it
                        while True:
                            rr, _, _ = select.select([c], [], [], 120)
                            if not rr or not c.recv(65536):
                                break
                        self._rst(c, u)
                        return
        except OSError:
            self._rst(c, u)


class GhostProxy:
    """A TCP proxy 127.0.0.1:port -> 127.0.0.1:upstream that takes in what
    a client sends as fast as it comes and passes it on at `rate` bytes per
    second. When the client is gone (kill -9), what it sent is still passed
    on before the upstream is closed, as the dead client's socket buffer
    and the server's are: the server runs those commands after the client
    died. backlog() is what was taken in and not yet passed on; done() is
    true once every connection has passed everything on."""

    def __init__(self, upstream_port, rate):
        import socket
        import threading
        self.upstream, self.rate = upstream_port, rate
        self.lock = threading.Lock()
        self.taken = self.passed = 0
        self.active = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.sock.close()

    def backlog(self):
        with self.lock:
            return self.taken - self.passed

    def done(self):
        with self.lock:
            return self.active == 0

    def _accept(self):
        import collections
        import socket
        import threading
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.upstream))
            q = collections.deque()
            cond = threading.Condition()
            state = {"gone": False}
            with self.lock:
                self.active += 1
            threading.Thread(target=self._take, args=(c, q, cond, state), daemon=True).start()
            threading.Thread(target=self._pass, args=(u, q, cond, state), daemon=True).start()
            threading.Thread(target=self._back, args=(u, c), daemon=True).start()

    def _take(self, c, q, cond, state):
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    break
                with cond:
                    q.append(data)
                    cond.notify()
                with self.lock:
                    self.taken += len(data)
        except OSError:
            pass
        with cond:
            state["gone"] = True
            cond.notify()

    def _pass(self, u, q, cond, state):
        import socket
        t0, sent = time.monotonic(), 0
        try:
            while True:
                with cond:
                    while not q and not state["gone"]:
                        cond.wait()
                    if not q:
                        break
                    data = q.popleft()
                u.sendall(data)
                sent += len(data)
                with self.lock:
                    self.passed += len(data)
                ahead = sent / self.rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
            u.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            with self.lock:
                self.active -= 1

    @staticmethod
    def _back(u, c):
        """Server to client; once the client is gone the server's replies
        are read and dropped, so that it runs every command it was sent."""
        client = True
        try:
            while True:
                data = u.recv(65536)
                if not data:
                    break
                if client:
                    try:
                        c.sendall(data)
                    except OSError:
                        client = False
        except OSError:
            pass
        for x in (u, c):
            try:
                x.close()
            except OSError:
                pass


def sha_multiset(snap):
    """{folder: sorted body SHA-256 list} of an M.snapshot()."""
    return {f: sorted(m["sha"] for m in v["msgs"].values()) for f, v in snap.items()}


def lost_and_duplicated(src, dst):
    """(lost, duplicated) message counts between two M.snapshot()s,
    comparing bodies per folder."""
    import collections
    lost = dup = 0
    a, b = sha_multiset(src), sha_multiset(dst)
    for f in set(a) | set(b):
        ca, cb = collections.Counter(a.get(f, [])), collections.Counter(b.get(f, []))
        for h in set(ca) | set(cb):
            if cb[h] < ca[h]:
                lost += ca[h] - cb[h]
            elif cb[h] > ca[h]:
                dup += cb[h] - ca[h]
    return lost, dup
