#!/usr/bin/env python3
"""Checks helm/tests/function_map.rs's list of Helm's functions against Helm's own engine.

Each name is put in a branch that never runs (`{{ if false }}{{ NAME }}{{ end }}`): Go's
parser still resolves it, so Helm fails with `function "NAME" not defined` exactly when the
name is missing from its function map. Run with the helm-python-sdk virtualenv:
    .venv/bin/python scripts/oracle_funcs.py
"""
import os, re, sys, tempfile
from helm_python import Chart

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
src = open(os.path.join(ROOT, "helm/tests/function_map.rs")).read()
names = set()
for const in ["GO_BUILTINS", "SPRIG", "HELM_EXTRA"]:
    body = re.search(const + r": &\[&str\] = &\[(.*?)\];", src, re.S).group(1)
    names |= set(re.findall(r'"([^"]+)"', re.sub(r"//[^\n]*", "", body)))
deleted = set(re.findall(r'"([^"]+)"', re.search(r"HELM_DELETED: &\[&str\] = &\[(.*?)\];", src, re.S).group(1)))
expected_missing = deleted | {"randSeededNumeric"}

def defined(chart, name):
    with open(os.path.join(chart, "templates", "t.yaml"), "w") as f:
        f.write("{{ if false }}{{ %s }}{{ end }}\n" % name)
    try:
        Chart.load(chart).render({}, name="r", namespace="ns")
        return True
    except Exception as e:
        if 'function "%s" not defined' % name in str(e):
            return False
        raise

with tempfile.TemporaryDirectory() as chart:
    os.makedirs(os.path.join(chart, "templates"))
    with open(os.path.join(chart, "Chart.yaml"), "w") as f:
        f.write("apiVersion: v2\nname: fm\nversion: 0.1.0\n")
    wrong = [n for n in sorted(names - deleted) if not defined(chart, n)]
    wrong += [n for n in sorted(expected_missing) if defined(chart, n)]
print(f"{len(names - deleted)} names defined in Helm, {len(expected_missing)} absent as expected; wrong: {wrong}")
sys.exit(1 if wrong else 0)
