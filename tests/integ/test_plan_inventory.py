#!/usr/bin/env python3
"""imapferry plan --inventory FILE (issue 14): planning from an inventory
file without connecting, for several machines, with a saved cost model.

  test_csv_jobs_and_splits     a small CSV inventory: the expected jobs and
                               the split of the large account (and none
                               with --no-split)
  test_machines_decrease       --machines M: the estimate falls from 1 to M
                               machines; a source limit bounds it
  test_final_status_cost       --final: a folder without new mail costs one
                               STATUS, the others their EXAMINE and mail
  test_malformed_lines         a bad line, NUL and control bytes: exit 2 and
                               the line named
  test_cost_file               --cost FILE / --save-cost FILE: the model read
                               back is the one written; a bad file refused
  test_live_round_trip         against a real Dovecot: plan --json
                               --save-cost, then plan --inventory of that
                               JSON with --cost of that file gives the same
                               jobs and the same estimate
"""

import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

TMP = None

# the default cost model (plan.c): 5 ms/message, 50 ms/MB, 50 ms/folder,
# 300 ms/account, 2 ms per STATUS
DEF = {"msg": 0.005, "byte": 50e-9, "folder": 0.05, "account": 0.3, "status": 0.002}

SMALL = """account,folder,messages,bytes
alice,INBOX,4000,200000000
alice,Sent,4000,200000000
alice,Archive,4000,200000000
alice,Projects,4000,200000000
bob,INBOX,10,1000000
carol,INBOX,10,1000000
# a comment line
dave,INBOX,10,1000000
"""


def write(name, data, mode="w"):
    path = os.path.join(TMP, name)
    with open(path, mode) as f:
        f.write(data)
    return path


def plan(*args, ok=True):
    p = H.run_ferry(["plan", *args])
    if ok:
        assert p.returncode == 0, H.describe(p)
    return p


def plan_json(*args):
    return json.loads(plan(*args, "--json").stdout)


def test_csv_jobs_and_splits():
    inv = write("small.csv", SMALL)
    j = plan_json("--inventory", inv, "--workers", "4")
    assert j["accounts"] == 4, j["accounts"]
    assert j["messages"] == 16030 and j["bytes"] == 803000000, (j["messages"], j["bytes"])
    # alice: 4 folders of 30.05 s each above the threshold (total / 4 =
    # 30.46 s): one part per folder, one of them the rest part
    alice = [x for x in j["jobs"] if x["src_user"] == "alice"]
    assert len(j["jobs"]) == 7, [(x["src_user"], x["part"]) for x in j["jobs"]]
    assert len(alice) == 4 and all(x["parts"] == 4 for x in alice), alice
    assert sum(x["rest"] for x in alice) == 1, alice
    assert sum(x["messages"] for x in alice) == 16000
    one = alice[0]["seconds"]
    want = DEF["account"] + DEF["folder"] + 4000 * DEF["msg"] + 200e6 * DEF["byte"]
    assert abs(one - want) < 0.01, (one, want)
    # the inventory comes back in plan --json, folder by folder
    names = {a["account"]: [f["name"] for f in a["folders"]] for a in j["inventory"]}
    assert names["alice"] == ["INBOX", "Sent", "Archive", "Projects"], names
    j = plan_json("--inventory", inv, "--workers", "4", "--no-split")
    assert len(j["jobs"]) == 4, j["jobs"]
    # the text form names the split
    p = plan("--inventory", inv, "--workers", "4")
    assert "alice: split into 4 parts" in p.stdout, p.stdout


def test_machines_decrease():
    inv = write("small.csv", SMALL)
    j = plan_json("--inventory", inv, "--workers", "1", "--machines", "4")
    secs = [m["seconds"] for m in j["machines"]]
    H.log(f"1..4 machines: {secs}")
    assert [m["machines"] for m in j["machines"]] == [1, 2, 3, 4]
    assert all(b < a for a, b in zip(secs, secs[1:])), secs
    assert j["estimated_seconds"] == secs[-1]
    # one machine of one worker: the sum of the jobs
    assert abs(secs[0] - j["total_work_s"]) < 0.01, (secs[0], j["total_work_s"])
    # 4 machines: about the largest part (30.05 s) plus a small job
    assert secs[3] < 31.5, secs
    # a source serving 10 MB/s in all: 803 MB take 80 s whatever M
    j = plan_json("--inventory", inv, "--workers", "1", "--machines", "4",
                  "--src-max-rate", "10")
    m4 = j["machines"][3]
    assert m4["seconds"] >= 80 and m4["bound"] == "source", m4
    assert j["source_max_mb_s"] == 10
    p = plan("--inventory", inv, "--workers", "2", "--machines", "3")
    assert "3 machines x 2 workers" in p.stdout, p.stdout
    p = plan("--inventory", inv, "--src-max-rate", "0", ok=False)
    assert p.returncode == 2 and "--src-max-rate" in p.stderr, H.describe(p)


def test_final_status_cost():
    inv = write("new.csv", "account,folder,messages,bytes\n"
                "erin,INBOX,10,1000000\nerin,Sent,0,0\nerin,Trash,0,0\n"
                "frank,INBOX,0,0\n")
    j = plan_json("--inventory", inv, "--final", "--workers", "1", "--machines", "1")
    assert j["final_inventory"] is True
    by = {x["src_user"]: x for x in j["jobs"]}
    want_e = (DEF["account"] + 2 * DEF["status"] + DEF["folder"] + 10 * DEF["msg"]
              + 1e6 * DEF["byte"])
    want_f = DEF["account"] + DEF["status"]
    assert abs(by["erin"]["seconds"] - want_e) < 1e-3, (by["erin"], want_e)
    assert abs(by["frank"]["seconds"] - want_f) < 1e-3, (by["frank"], want_f)
    # without --final every folder is a whole folder (an EXAMINE each)
    j = plan_json("--inventory", inv, "--workers", "1")
    by = {x["src_user"]: x for x in j["jobs"]}
    assert by["erin"]["seconds"] > want_e + 0.09, by["erin"]
    p = plan("--inventory", inv, "--final", "--state", os.path.join(TMP, "x.db"),
             ok=False)
    assert p.returncode == 2 and "--state" in p.stderr, H.describe(p)


def test_malformed_lines():
    cases = [
        ("bad-number.csv", "a,INBOX,1,2\nb,INBOX,x,3\n", "line 2", "messages"),
        ("bad-bytes.csv", "a,INBOX,1,2\nb,Sent,1,-3\n", "line 2", "bytes"),
        ("fields.csv", "account,folder,messages,bytes\na,INBOX,1,2\na,Sent,4\n",
         "line 3", "account,folder,messages,bytes"),
        ("empty-account.csv", "a,INBOX,1,2\n,INBOX,1,2\n", "line 2", "account"),
        ("twice.csv", "a,INBOX,1,2\na,Sent,1,2\na,INBOX,3,4\n", "line 3", "twice"),
        ("nul.csv", "a,INBOX,1,2\nb,IN\0BOX,1,2\n", "line 2", "NUL"),
        ("ctl.csv", "a,INBOX,1,2\na,Sent,1,2\nb,\x1b[31mX,1,2\n", "line 3", "control"),
        ("bad.json", '{"inventory": [{"account": "a", "folders": [\n'
         '{"name": "INBOX", "messages": 1, "bytes": 2},\n'
         '{"name": "Sent", "messages": "many", "bytes": 2}]}]}\n', "line 3", "messages"),
        ("nul.json", '{"inventory": [{"account": "a", "folders": [\n'
         '{"name": "IN\\u0000BOX", "messages": 1, "bytes": 2}]}]}\n', "line 2", "NUL"),
        ("trunc.json", '{"inventory": [{"account": "a",\n"folders": [\n', "line 3",
         "unexpected end"),
        ("empty.csv", "account,folder,messages,bytes\n", "", "no account"),
    ]
    for name, data, line, what in cases:
        path = write(name, data.encode("utf-8"), "wb")
        p = plan("--inventory", path, ok=False)
        assert p.returncode == 2, f"{name}: {H.describe(p)}"
        assert line in p.stderr and what in p.stderr and name in p.stderr, \
            f"{name}: {p.stderr!r}"
        assert "\x1b" not in p.stderr and "\0" not in p.stderr, f"{name}: {p.stderr!r}"
    # an escaped control byte in a JSON folder name is refused too
    path = write("esc.json", '[{"account": "a", "folders": [{"name": "a\\u001bb",'
                 ' "messages": 1, "bytes": 2}]}]')
    p = plan("--inventory", path, ok=False)
    assert p.returncode == 2 and "control byte" in p.stderr, H.describe(p)
    p = plan("--inventory", os.path.join(TMP, "missing.csv"), ok=False)
    assert p.returncode == 2 and "missing.csv" in p.stderr, H.describe(p)
    # operands with --inventory: nothing is contacted, so none are taken
    p = plan("--inventory", write("small.csv", SMALL), "u.csv", "imap://x", "imap://y",
             ok=False)
    assert p.returncode == 2 and "no USERS" in p.stderr, H.describe(p)


def test_cost_file():
    inv = write("small.csv", SMALL)
    cost = {"calibrated": True, "per_account_ms": 120.0, "per_folder_ms": 7.5,
            "status_per_folder_ms": 0.25, "per_message_ms": 0.8,
            "per_megabyte_ms": 250.0, "avg_message_size": 70000.0,
            "parallel_sessions": 4, "parallel_speedup": 3.5,
            "sample_messages": 300, "sample_bytes": 12345678,
            "sample_seconds": 3.25, "target_probed": False}
    c1 = write("cost.json", json.dumps(cost))
    c2 = os.path.join(TMP, "cost2.json")
    j = plan_json("--inventory", inv, "--cost", c1, "--save-cost", c2)
    assert j["cost"] == cost, (j["cost"], cost)
    with open(c2) as f:
        assert json.load(f) == cost
    assert os.stat(c2).st_mode & 0o077 == 0, oct(os.stat(c2).st_mode)
    # the cost model is what the estimate used
    alice = next(x for x in j["jobs"] if x["src_user"] == "alice")
    want = 0.120 + 0.0075 + 4000 * 0.0008 + 200 * 0.250
    assert abs(alice["seconds"] - want) < 0.01, (alice["seconds"], want)
    # a whole plan --json is a cost file too (its "cost")
    pj = write("plan.json", json.dumps(j))
    j2 = plan_json("--inventory", inv, "--cost", pj)
    assert j2["cost"] == cost and j2["jobs"] == j["jobs"]
    # refused: a key missing, a negative number
    bad = dict(cost)
    del bad["per_message_ms"]
    p = plan("--inventory", inv, "--cost", write("bad1.json", json.dumps(bad)), ok=False)
    assert p.returncode == 2 and "per_message_ms" in p.stderr, H.describe(p)
    bad = dict(cost, per_folder_ms=-1)
    p = plan("--inventory", inv, "--cost", write("bad2.json", json.dumps(bad)), ok=False)
    assert p.returncode == 2 and "per_folder_ms" in p.stderr, H.describe(p)
    # run --cost: the same file, read before anything is copied (the
    # servers here refuse connections: only the cost file can stop it)
    users = write("u.csv", "src_user,dst_user\nu1,u1\n")
    pw = write("pw", "x\n")
    p = H.run_ferry(["run", users, "imap://%u@127.0.0.1:1?tls=none",
                     "imap://%u@127.0.0.2:1?tls=none", "--src-password-file", pw,
                     "--dst-password-file", pw, "--state", os.path.join(TMP, "r.db"),
                     "--cost", os.path.join(TMP, "bad1.json"), "--progress", "none"])
    assert p.returncode == 2 and "per_message_ms" in p.stderr, H.describe(p)


def message(user, folder, i):
    body = f"{user} {folder} {i} lorem ipsum dolor sit amet\r\n" * (20 + i % 50)
    return (f"From: a@example.org\r\nTo: {user}@example.org\r\nSubject: m {i}\r\n"
            f"Message-ID: <{user}.{folder}.{i}@inv.test>\r\n"
            f"Date: Tue, 4 Jun 2019 10:00:00 +0000\r\n\r\n{body}").encode()


def test_live_round_trip():
    users = {"ann": "pw-ann-1", "ben": "pw-ben-2", "cid": "pw-cid-3"}
    sizes = {"ann": {"INBOX": 300, "Sent": 200, "Archive": 150}, "ben": {"INBOX": 40},
             "cid": {"INBOX": 20, "Drafts": 3}}
    with H.Dovecot("isrc", users=users, master=("master", "mpw-inv"), ssl=False) as S, \
            H.Dovecot("idst", users=users, master=("master", "mpw-inv"), ssl=False) as D:
        for u, folders in sizes.items():
            md = S.maildir(u)
            for f, n in folders.items():
                d = os.path.join(md, "" if f == "INBOX" else "." + f)
                for sub in ("cur", "new", "tmp"):
                    os.makedirs(os.path.join(d, sub), exist_ok=True)
                for i in range(n):
                    data = message(u, f, i)
                    with open(os.path.join(d, "cur", f"{1500000000 + i}.M{i}P1.h,"
                                           f"S={len(data)}:2,S"), "wb") as fh:
                        fh.write(data)
            H.chown_tree(os.path.join(S.data_dir, u), H.MAIL_UID, H.MAIL_GID)
        users_csv = write("users.csv", "src_user,dst_user\n" +
                          "".join(f"{u},{u}\n" for u in users))
        mpw = write("master.pw", "mpw-inv\n")
        src = f"imap://%u@{S.host}:{S.port}?tls=none"
        dst = f"imap://%u@{D.host}:{D.port}?tls=none"
        common = [users_csv, src, dst, "--src-admin", "master", "--src-password-file",
                  mpw, "--dst-admin", "master", "--dst-password-file", mpw,
                  "--workers", "2", "--split-above", "0.05"]
        cost = os.path.join(TMP, "live-cost.json")
        live = plan_json(*common, "--save-cost", cost)
        with open(cost) as f:
            saved = json.load(f)
        assert saved == live["cost"], (saved, live["cost"])
        assert saved["calibrated"] is True and saved["per_message_ms"] >= 0
        assert saved["status_per_folder_ms"] >= 0
        H.log(f"calibrated: {saved}")
        inv = {a["account"]: {f["name"]: f["messages"] for f in a["folders"]}
               for a in live["inventory"]}
        assert inv["ann"] == sizes["ann"] and inv["cid"] == sizes["cid"], inv
        # the same plan from that JSON and that cost file, offline
        inv_file = write("live-plan.json", json.dumps(live))
        off = plan_json("--inventory", inv_file, "--cost", cost, "--workers", "2",
                        "--split-above", "0.05")
        assert off["cost"] == live["cost"]
        strip = [{k: v for k, v in x.items() if k != "dst_user"} for x in live["jobs"]]
        got = [{k: v for k, v in x.items() if k not in ("dst_user", "seconds")}
               for x in off["jobs"]]
        assert got == [{k: v for k, v in x.items() if k != "seconds"} for x in strip], \
            (off["jobs"], live["jobs"])
        for a, b in zip(off["jobs"], live["jobs"]):
            assert abs(a["seconds"] - b["seconds"]) < 0.002, (a, b)
        # (the cost file keeps 9 significant digits)
        assert abs(off["total_work_s"] - live["total_work_s"]) < 0.002, \
            (off["total_work_s"], live["total_work_s"])
        for a, b in zip(off["predicted_seconds"], live["predicted_seconds"]):
            assert abs(a["seconds"] - b["seconds"]) < 0.002, (a, b)
        # live plan with --cost: no calibration, the same model
        again = plan_json(*common, "--cost", cost)
        assert again["cost"] == saved
        # run --cost (no measure) --machines 3: planned for 3 x 2 workers
        p = H.run_ferry(["run", *common, "--cost", cost, "--machines", "3",
                         "--state", os.path.join(TMP, "live.db"), "--progress", "none"])
        assert p.returncode == 0, H.describe(p)
        assert "with 6 workers" in p.stderr, p.stderr
        c = D.imap("master", "mpw-inv", authzid="ann")
        try:
            for f, n in sizes["ann"].items():
                typ, data = c.status(f, "(MESSAGES)")
                assert typ == "OK" and f"MESSAGES {n})".encode() in data[0], (f, data)
        finally:
            c.logout()
        H.log(f"live plan: {len(live['jobs'])} jobs, "
              f"{sum(x['parts'] > 1 for x in live['jobs'])} of them parts")


def setup():
    import contextlib

    @contextlib.contextmanager
    def cm():
        global TMP
        TMP = tempfile.mkdtemp(prefix="ife-inv-", dir="/tmp")
        try:
            yield
        finally:
            if not H.KEEP:
                shutil.rmtree(TMP, ignore_errors=True)
    return cm()


if __name__ == "__main__":
    H.run_tests(globals(), setup=setup)
