#!/usr/bin/env python3
"""Differential run of `harmony template` against Helm's engine (helm-python-sdk) on the
real charts with other release names/namespaces. Usage: .venv/bin/python scripts/oracle_diff.py"""
import json, os, re, subprocess, sys, yaml
from helm_python import Chart
BASE = "/work/shared/conformance/real-charts"
H = os.path.abspath("target/release/harmony")
SEP = re.compile(r"(?:^|\s*\n)---\s*")
cases = json.load(open(os.path.join(BASE, "cases.json")))
ok = total = 0
for c in cases:
    for name, ns in [("other", "ns2"), ("z-" + c["release_name"], "kube-system")]:
        total += 1
        vals = yaml.safe_load(open(os.path.join(BASE, c["values_file"]))) if c.get("values_file") else {}
        try:
            want_raw = Chart.load(os.path.join(BASE, c["chart"])).render(vals or {}, name=name, namespace=ns)
        except Exception as e:
            want_raw = None; werr = str(e)
        args = [H, "template", name, c["chart"], "-n", ns, "--kube-version", "v1.36.0"] + (["-f", c["values_file"]] if c.get("values_file") else [])
        p = subprocess.run(args, cwd=BASE, capture_output=True, text=True)
        if want_raw is None:
            good = p.returncode != 0
            if not good: print("  expected error:", c["name"], name, werr[:200])
            ok += good; continue
        want = {}
        for path, text in want_raw.items():
            b = os.path.basename(path)
            if b.startswith("_") or b == "NOTES.txt": continue
            docs = sorted(d.strip() for d in SEP.split(text) if d.strip())
            if docs: want[path] = docs
        got = {}
        for block in re.split(r"^---\n(?=# Source: )", p.stdout, flags=re.M):
            if not block.startswith("# Source: "): continue
            head, _, body = block.partition("\n")
            got.setdefault(head[len("# Source: "):].strip(), []).append(body.strip())
        got = {k: sorted(d for d in v if d) for k, v in got.items()}
        got = {k: v for k, v in got.items() if v}
        for path in c.get("nondeterministic", []):
            for d in (want, got):
                if path in d: d[path] = len(d[path])
        good = p.returncode == 0 and got == want
        ok += good
        if not good:
            diff = [k for k in sorted(set(want) | set(got)) if want.get(k) != got.get(k)]
            print("  differs:", c["name"], name, ns, p.stderr.strip()[-200:], diff[:5])
print(f"{ok}/{total} identical")
