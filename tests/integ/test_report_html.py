#!/usr/bin/env python3
"""imapferry report --html and run --metrics, against a real run.

A source Dovecot with 6 accounts (one with a folder named like markup,
holding a message too large for the target), a target Dovecot that
refuses messages above 40 KB (quota_max_mail_size: NO [LIMIT]), and one
account with a wrong password. "imapferry run --metrics" writes the
Prometheus file while it runs; then "imapferry report --html" writes the
page, which headless Chromium loads: the dumped DOM must have the
sections, one timeline bar per job that ran, one table row per account,
every failure listed under its reason, the hostile folder name as text
(no element from it); screenshots at 1280 and 390 pixels wide are kept in
$IMAPFERRY_BUILD/report-html/ for a person to look at.

The expected values come from the report JSON and the state database
read with Python's sqlite3, never from the page itself.
"""

import contextlib
import html.parser
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

USERS = ["ann", "ben", "cat", "dan", "eve", "fay"]
BAD = "fay"                         # wrong password in the users file
HOSTILE = 'Evil <script>alert("x")</script> \'quoted\''
LIMIT = 40_000
PW = {u: f"pw-{u}-9x" for u in USERS}
S = D = None
TMP = None
USERS_CSV = None
OUT = None                          # where screenshots are kept


def message(user, folder, i, size):
    head = (f"From: a@example.org\r\nTo: {user}@example.org\r\n"
            f"Subject: {i} in {folder}\r\n"
            f"Message-ID: <{user}.{i}.{abs(hash(folder))}@report.test>\r\n"
            f"Date: Mon, 3 Jun 2019 10:{i % 60:02d}:00 +0000\r\n\r\n")
    line = "lorem ipsum dolor sit amet consectetur adipiscing elit\r\n"
    return (head + line * max(1, (size - len(head)) // len(line))).encode()


def imap_quote(name):
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@contextlib.contextmanager
def setup():
    global S, D, TMP, USERS_CSV, OUT
    TMP = tempfile.mkdtemp(prefix="ife-rh-", dir="/tmp")
    OUT = os.path.join(os.environ.get("IMAPFERRY_BUILD", TMP), "report-html")
    os.makedirs(OUT, exist_ok=True)
    limit = (f"mail_plugins = $mail_plugins quota\n"
             f"plugin {{\n  quota = count:User quota\n"
             f"  quota_vsizes = yes\n  quota_max_mail_size = {LIMIT}\n}}\n")
    with H.Dovecot("rhsrc", users=PW, ssl=False) as S, \
            H.Dovecot("rhdst", users=PW, ssl=False, extra_conf=limit) as D:
        for k, u in enumerate(USERS):
            c = S.imap(u, PW[u])
            n = 10 + 25 * k
            for i in range(n):
                typ, _ = c.append("INBOX", None, None,
                                  message(u, "INBOX", i, 1500 + 97 * i))
                assert typ == "OK"
            if u in ("ben", "dan"):
                typ, _ = c.create(imap_quote(HOSTILE))
                assert typ == "OK", (typ, _)
                for i, size in enumerate((2000, LIMIT + 20_000, 3000)):
                    typ, _ = c.append(imap_quote(HOSTILE), None, None,
                                      message(u, HOSTILE, i, size))
                    assert typ == "OK"
            c.logout()
        lines = ["src_user,dst_user,src_password_file,dst_password_file"]
        for u in USERS:
            for side in ("src", "dst"):
                with open(os.path.join(TMP, f"{u}.{side}"), "w") as f:
                    f.write(("wrong" if u == BAD else PW[u]) + "\n")
            lines.append(f"{u},{u},{u}.src,{u}.dst")
        USERS_CSV = os.path.join(TMP, "users.csv")
        with open(USERS_CSV, "w") as f:
            f.write("\n".join(lines) + "\n")
        try:
            yield
        finally:
            if not H.KEEP:
                shutil.rmtree(TMP, ignore_errors=True)


def url(server):
    return f"imap://%u@{server.host}:{server.port}?tls=none"


# ---------------------------------------------------------- the run

STATE = RUN = REPORT = METRICS = None
SEEN_DURING_RUN = []


def the_run():
    """One run for all tests: with --metrics and --report."""
    global STATE, RUN, REPORT, METRICS
    if RUN is not None:
        return RUN
    STATE = os.path.join(TMP, "state.db")
    METRICS = os.path.join(TMP, "prom", "imapferry.prom")
    os.makedirs(os.path.dirname(METRICS))
    REPORT = os.path.join(TMP, "report.json")
    done = threading.Event()

    def watch():
        while not done.is_set():
            if os.path.exists(METRICS):
                SEEN_DURING_RUN.append(time.monotonic())
            time.sleep(0.2)
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    RUN = H.run_ferry(["run", USERS_CSV, url(S), url(D), "--state", STATE,
                       "--workers", "2", "--backoff", "1", "--max-errors", "1",
                       "--no-probe-target", "--progress", "plain",
                       "--metrics", METRICS, "--report", REPORT],
                      timeout=300)
    done.set()
    t.join()
    H.log(RUN.stdout)
    assert RUN.returncode == 1, H.describe(RUN)      # BAD's login
    return RUN


def report_json():
    with open(REPORT) as f:
        return json.load(f)


def db_jobs():
    con = sqlite3.connect(STATE)
    try:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute("SELECT * FROM job")]
    finally:
        con.close()


# ---------------------------------------------------------- the DOM

class Dom(html.parser.HTMLParser):
    """Elements with their attributes and the text inside each, enough
    to count and look up what the page shows."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements = []          # (tag, attrs dict, [text])
        self.stack = []

    def handle_starttag(self, tag, attrs):
        el = (tag, dict(attrs), [])
        self.elements.append(el)
        if tag not in ("meta", "br", "hr", "img", "input", "link"):
            self.stack.append(el)

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, dict(attrs), []))

    def handle_endtag(self, tag):
        while self.stack:
            el = self.stack.pop()
            if el[0] == tag:
                break

    def handle_data(self, data):
        for el in self.stack:
            el[2].append(data)

    def find(self, tag, **attrs):
        out = []
        for t, a, text in self.elements:
            if t == tag and all(
                    (v is True and k in a) or
                    (k == "class" and v in (a.get("class") or "").split()) or
                    a.get(k) == v for k, v in attrs.items()):
                out.append((a, " ".join(text)))
        return out


def chromium():
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return name
    H.skip("chromium is not installed (scripts/install-deps.sh)")


def browse(page, extra, timeout=120):
    prof = tempfile.mkdtemp(prefix="ife-chrome-", dir=TMP)
    args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--hide-scrollbars",
            f"--user-data-dir={prof}", *extra, "file://" + page]
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    assert p.returncode == 0, p.stderr.decode(errors="replace")[-2000:]
    return p.stdout.decode("utf-8", "replace")


def write_page():
    the_run()
    page = os.path.join(TMP, "report.html")
    p = H.run_ferry(["report", "--state", STATE, "--html", page], timeout=60)
    assert p.returncode == 0, H.describe(p)
    assert page in p.stderr, p.stderr
    return page


# ---------------------------------------------------------- tests

def test_report_html_in_chromium():
    page = write_page()
    st = os.stat(page)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    assert sorted(os.listdir(TMP)).count("report.html") == 1
    assert not [n for n in os.listdir(TMP) if ".tmp-" in n]
    with open(page, encoding="utf-8") as f:
        raw = f.read()
    # self-contained: nothing loaded from anywhere
    assert not re.search(r'\b(src|href)\s*=', raw), "external reference"
    assert "http://" not in raw and "https://" not in raw

    rep = report_json()
    jobs = db_jobs()
    ran = [j for j in jobs if j["started"] > 0]
    dom = Dom()
    dom.feed(browse(page, ["--dump-dom"]))

    for sec in ("glance", "timeline", "throughput", "distribution",
                "accounts", "failures", "verification"):
        assert dom.find("section", id=sec), f"section {sec} missing"
    # one bar per job that ran, coloured by its outcome
    bars = dom.find("rect", **{"class": "bar"})
    assert len(bars) == len(ran), (len(bars), len(ran))
    assert sorted(int(a["data-job"]) for a, _ in bars) == \
        sorted(j["id"] for j in ran)
    failed_ids = {j["id"] for j in jobs if j["status"] == "failed"}   # failed
    assert failed_ids
    for a, _ in bars:
        if int(a["data-job"]) in failed_ids:
            assert "failed" in a["class"].split(), a
    # the table: one row per account, the numbers of the JSON report
    rows = dom.find("tr", **{"data-account": True})
    assert sorted(a["data-account"] for a, _ in rows) == sorted(USERS), rows
    for acc in rep["accounts"]:
        cells = [(a, t) for a, t in dom.find("tr", **{
            "data-account": acc["src_user"]})]
        assert len(cells) == 1
        assert re.search(rf"\b{acc['messages']}\b", cells[0][1]), cells
    # every failure under its reason; the too-large ones name the folder
    want = rep["failures"]
    assert len(want) >= 2, want
    got = dom.find("tr", **{"class": "failure"})
    assert len(got) == len(want), (got, want)
    cats = sorted(a["data-reason"] for a, _ in got)
    assert cats == sorted(f["category"] for f in want), cats
    assert rep["failure_counts"]["too-large"] == 2, rep["failure_counts"]
    big = [t for a, t in got if a["data-reason"] == "too-large"]
    assert all(HOSTILE in t for t in big), big
    assert dom.find("tr", **{"class": "joberror"}), "login failure not listed"
    # the hostile name is text: the only script element is the page's own
    assert len(dom.find("script")) == 1
    assert HOSTILE in "".join(t for _, t in dom.find("section", id="failures"))
    assert "No verification recorded" in \
        dom.find("section", id="verification")[0][1]

    # screenshots for a person to look at
    for name, size in (("report-desktop.png", "1280,2400"),
                       ("report-phone.png", "390,2400")):
        out = os.path.join(OUT, name)
        if os.path.exists(out):
            os.unlink(out)
        browse(page, [f"--screenshot={out}", f"--window-size={size}"])
        assert os.path.getsize(out) > 10_000, out
        H.log(f"screenshot: {out}")
    shutil.copy(page, os.path.join(OUT, "report.html"))


METRIC_LINE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*"'
    r'(,[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*")*)?\})? '
    r'(?P<value>-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$')


def parse_prom(text):
    """Checks the text exposition format; returns {(name, labels): value}."""
    helps, types, samples = set(), {}, {}
    for ln in text.splitlines():
        if ln.startswith("# HELP "):
            helps.add(ln.split()[2])
        elif ln.startswith("# TYPE "):
            _, _, name, typ = ln.split()
            assert typ in ("counter", "gauge"), ln
            types[name] = typ
        else:
            m = METRIC_LINE.match(ln)
            assert m, f"not a metric line: {ln!r}"
            name = m.group(1)
            assert name in helps and name in types, f"no HELP/TYPE: {name}"
            if types[name] == "counter":
                assert name.endswith("_total"), name
            samples[(name, m.group(2) or "")] = float(m.group("value"))
    return samples


def test_metrics_file():
    the_run()
    assert SEEN_DURING_RUN, "the metrics file appeared only after the run"
    st = os.stat(METRICS)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert os.listdir(os.path.dirname(METRICS)) == ["imapferry.prom"]
    with open(METRICS) as f:
        text = f.read()
    H.log(text)
    s = parse_prom(text)
    rep = report_json()
    jobs = db_jobs()

    def total(name):
        return sum(v for (n, _), v in s.items() if n == name)
    assert total("imapferry_messages_copied_total") == \
        sum(a["messages"] for a in rep["accounts"])
    assert total("imapferry_bytes_copied_total") == \
        sum(a["bytes"] for a in rep["accounts"])
    # one source and one target host
    pairs = [k for k in s if k[0] == "imapferry_messages_copied_total"]
    assert pairs == [("imapferry_messages_copied_total",
                      f'{{src_host="{S.host}:{S.port}",'
                      f'dst_host="{D.host}:{D.port}"}}')], pairs
    by = {st: s[("imapferry_jobs", f'{{state="{st}"}}')]
          for st in ("pending", "running", "done", "failed")}
    assert by["done"] == sum(j["status"] == "done" for j in jobs), by
    assert by["failed"] == sum(j["status"] == "failed" for j in jobs) >= 1, by
    assert by["running"] == 0 and by["pending"] == 0, by
    assert s[("imapferry_queue_depth", "")] == 0
    assert s[("imapferry_job_retries_total", "")] == \
        sum(max(j["attempts"] - 1, 0) for j in jobs)
    assert s[("imapferry_messages_failed", "")] == 2


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("skip all: needs root for Dovecot")
        print("0 passed, 0 failed")
        sys.exit(0)
    H.run_tests(setup=setup)
