#!/usr/bin/env python3
"""The old server's inventory, simulated: the input of
`imapferry plan --inventory FILE` (docs/SCALE.md).

    python3 bench/tools/inventory.py --out old-server.csv \\
        --final-out new-mail-1day.csv          # defaults: the figures below

Writes CSV lines "account,folder,messages,bytes" (the format plan
--inventory reads) and a summary on stderr. Deterministic for a --seed.

What is known of the old server (issue 14): 7 million messages, 800 GB, a
third of the messages in INBOXes. Everything else is an assumption, stated
here and in docs/SCALE.md:

  accounts      15,000 (--accounts); 8 % of them nearly empty (0-20
                messages: departed staff, service addresses)
  messages per  lognormal, sigma 1.6 (--sigma): heavy-tailed; the median
  account       account holds about a quarter of the mean, the largest
                holds 100-150 times the mean (tens of thousands of
                messages); scaled so the total is exactly --messages
  message size  per account a mean drawn lognormal (sigma 0.5) around the
                server's mean (800 GB / 7 M = 114 KB); scaled so the total
                is exactly --bytes
  INBOX share   per account Beta(2, 4) (mean 1/3), then corrected so that
                exactly --inbox-share of all messages are in INBOXes
  folders       INBOX, Sent, Drafts, Trash, plus 1 + lognormal(log(1 +
                messages / 500), 0.9) folders (at most 400); the non-INBOX
                messages: Sent 20 %, Trash 6 %, Drafts 1 %, the rest over
                the other folders by a Zipf law (exponent 1.1); all
                top-level ("Archive-2000", ... when there are more than 8:
                a hierarchy would tie its folders to one session, see
                docs/SCALE.md)
  new mail of   --new-share (0.3 %) of all messages, each in an account
  one day       chosen in proportion to its size (active mailboxes receive
                more), 80 % to INBOX, 15 % to Sent, 5 % to Trash; sizes as
                the account's mean (--final-out: every folder of every
                account, 0 where nothing came: each costs one STATUS)
"""

import argparse
import math
import random
import sys


def scale_to_total(weights, total):
    """Integers proportional to weights summing exactly to total (largest
    remainders)."""
    s = sum(weights)
    raw = [w * total / s for w in weights]
    out = [int(x) for x in raw]
    left = total - sum(out)
    order = sorted(range(len(raw)), key=lambda i: raw[i] - out[i], reverse=True)
    for i in order[:left]:
        out[i] += 1
    return out


def zipf_weights(n, s):
    return [1.0 / (k + 1) ** s for k in range(n)]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="the inventory CSV")
    ap.add_argument("--final-out", help="the new mail of one day, per folder (CSV)")
    ap.add_argument("--accounts", type=int, default=15000)
    ap.add_argument("--messages", type=int, default=7_000_000)
    ap.add_argument("--bytes", type=float, default=800e9)
    ap.add_argument("--inbox-share", type=float, default=1 / 3)
    ap.add_argument("--sigma", type=float, default=1.6)
    ap.add_argument("--empty-share", type=float, default=0.08)
    ap.add_argument("--new-share", type=float, default=0.003)
    ap.add_argument("--domain", default="example.org")
    ap.add_argument("--seed", type=int, default=14)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    n = a.accounts

    # messages per account
    w = []
    for _ in range(n):
        if rng.random() < a.empty_share:
            w.append(rng.uniform(0, 20) / (a.messages / n) * 1e-3)
        else:
            w.append(rng.lognormvariate(0, a.sigma))
    msgs = scale_to_total(w, a.messages)

    # INBOX share per account, corrected to the global share
    share = [rng.betavariate(2, 4) for _ in range(n)]
    for _ in range(30):
        inbox = sum(m * s for m, s in zip(msgs, share))
        f = a.inbox_share * a.messages / inbox
        share = [min(0.98, max(0.01, s * f)) for s in share]
    inbox = [int(round(m * s)) for m, s in zip(msgs, share)]
    # exact total: adjust the largest accounts by a message or so
    diff = int(round(a.inbox_share * a.messages)) - sum(inbox)
    order = sorted(range(n), key=lambda i: msgs[i], reverse=True)
    k = 0
    while diff != 0 and k < 100 * n:
        i = order[k % n]
        step = 1 if diff > 0 else -1
        if 0 <= inbox[i] + step <= msgs[i]:
            inbox[i] += step
            diff -= step
        k += 1

    # folders and their messages
    accounts = []
    for i in range(n):
        user = f"user{i + 1:05d}@{a.domain}"
        m = msgs[i]
        rest = m - inbox[i]
        extra = 1 + int(rng.lognormvariate(math.log(1 + m / 500), 0.9))
        extra = min(extra, 400)
        names = ["INBOX", "Sent", "Drafts", "Trash"]
        archive = extra > 8
        for k in range(extra):
            names.append(f"Archive-{2000 + k}" if archive else f"Folder{k + 1}")
        ws = [0.20, 0.01, 0.06] + [0.73 * z / sum(zipf_weights(extra, 1.1))
                                    for z in zipf_weights(extra, 1.1)]
        counts = [inbox[i]] + (scale_to_total(ws, rest) if rest > 0 else [0] * len(ws))
        accounts.append((user, names, counts))

    # bytes: a mean size per account, scaled to the total
    mean = a.bytes / a.messages
    size_w = [rng.lognormvariate(0, 0.5) for _ in range(n)]
    tot_w = sum(msgs[i] * size_w[i] for i in range(n))
    f = a.bytes / (mean * tot_w)
    folder_bytes = []
    for i, (user, names, counts) in enumerate(accounts):
        s = mean * size_w[i] * f
        folder_bytes.append([int(round(c * s * rng.uniform(0.8, 1.2))) if c else 0
                             for c in counts])
    # exact total bytes: scale the folders (rounding error spread)
    tb = sum(sum(b) for b in folder_bytes)
    g = a.bytes / tb
    folder_bytes = [[int(round(x * g)) for x in b] for b in folder_bytes]
    fix = int(a.bytes) - sum(sum(b) for b in folder_bytes)
    big = max(range(n), key=lambda i: folder_bytes[i][0])
    folder_bytes[big][0] += fix

    with open(a.out, "w") as out:
        out.write("account,folder,messages,bytes\n")
        for (user, names, counts), b in zip(accounts, folder_bytes):
            for name, c, x in zip(names, counts, b):
                out.write(f"{user},{name},{c},{x}\n")

    # summary
    tot_m = sum(msgs)
    tot_b = sum(sum(b) for b in folder_bytes)
    tot_in = sum(c[0] for _, _, c in accounts)
    per = sorted(msgs)
    nf = sum(len(nm) for _, nm, _ in accounts)
    bigf = max(((u, nm[k], c[k], b[k]) for (u, nm, c), b in zip(accounts, folder_bytes)
                for k in range(len(nm))), key=lambda t: t[3])
    biga = max(range(n), key=lambda i: sum(folder_bytes[i]))
    print(f"inventory: {n} accounts, {nf} folders, {tot_m} messages, {tot_b / 1e9:.1f} GB; "
          f"INBOX {100 * tot_in / tot_m:.1f} % of the messages; messages per account: "
          f"median {per[n // 2]}, p90 {per[int(n * 0.9)]}, p99 {per[int(n * 0.99)]}, "
          f"max {per[-1]}; largest account {accounts[biga][0]} "
          f"({msgs[biga]} messages, {sum(folder_bytes[biga]) / 1e9:.2f} GB); "
          f"largest folder {bigf[0]} {bigf[1]} ({bigf[2]} messages, {bigf[3] / 1e9:.2f} GB)",
          file=sys.stderr)

    if a.final_out:
        new_total = int(round(a.new_share * a.messages))
        cum, acc = [], 0
        for m in msgs:
            acc += m
            cum.append(acc)
        import bisect
        new = [[0] * len(nm) for _, nm, _ in accounts]
        for _ in range(new_total):
            i = bisect.bisect_right(cum, rng.random() * acc)
            i = min(i, n - 1)
            r = rng.random()
            k = 0 if r < 0.80 else 1 if r < 0.95 else 3
            new[i][k] += 1
        nb = 0
        changed = 0
        with open(a.final_out, "w") as out:
            out.write("account,folder,messages,bytes\n")
            for i, (user, names, counts) in enumerate(accounts):
                s = mean * size_w[i] * f * g
                for k, name in enumerate(names):
                    c = new[i][k]
                    x = int(round(c * s))
                    nb += x
                    changed += c > 0
                    out.write(f"{user},{name},{c},{x}\n")
        print(f"new mail of one day: {new_total} messages ({100 * a.new_share:.2f} %), "
              f"{nb / 1e9:.2f} GB, in {changed} of {nf} folders", file=sys.stderr)


if __name__ == "__main__":
    main()
