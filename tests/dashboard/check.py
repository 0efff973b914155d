#!/usr/bin/env python3
"""Ask Prometheus every query of a Grafana dashboard; fail unless each one
returns at least one series with a finite value (tests/dashboard/run.sh).

    check.py --prometheus http://127.0.0.1:9090 --dashboard deploy/grafana/fsp2p-dashboard.json
             [--wait SECONDS] [--targets N] [--metrics name,name,...] [--require EXPR ...]

Grafana's interval variables are replaced with fixed windows ($__rate_interval
and $__interval with 30s, $__range with 5m) and every template variable with
its "All" value (`.*`, the dashboard uses them as regex matchers), so the
expressions are the ones Grafana would send. Until --wait seconds pass the
queries are asked again (rates and histogram quantiles need a few scrapes);
then the ones still empty are listed and the exit status is 1.
--targets N: also require N scrape targets up. --metrics: also require that
the dashboard's queries use each of these metric names. --require EXPR (repeatable):
also ask this PromQL expression, which must return at least one series with a
finite value like the dashboard's (a comparison such as `sum(x{path="turn"}) > 0`
returns nothing while it is false).
"""
import argparse
import json
import math
import re
import sys
import time
import urllib.parse
import urllib.request

FIXED = {
    "__rate_interval": "30s",
    "__interval": "30s",
    "__range": "5m",
}


def exprs(dashboard):
    """Every (panel title, expr) of the dashboard, rows' panels included."""
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((p.get("title", "?"), t["expr"]))
            walk(p.get("panels", []))

    walk(dashboard.get("panels", []))
    return out


def substitute(expr, variables):
    def one(m):
        name = m.group(1) or m.group(2)
        if name in FIXED:
            return FIXED[name]
        if name in variables:
            return variables[name]
        raise ValueError(f"unknown variable ${name} in {expr}")

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", one, expr)


def query(base, expr):
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{body.get('errorType')}: {body.get('error')}")
    return body["data"]


def finite_series(data):
    """How many series of an instant query have a finite value."""
    if data["resultType"] == "scalar":
        return int(math.isfinite(float(data["result"][1])))
    n = 0
    for s in data["result"]:
        try:
            if math.isfinite(float(s["value"][1])):
                n += 1
        except (KeyError, ValueError, IndexError):
            pass
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prometheus", required=True)
    ap.add_argument("--dashboard", required=True)
    ap.add_argument("--wait", type=float, default=0)
    ap.add_argument("--targets", type=int, default=0)
    ap.add_argument("--metrics", default="")
    ap.add_argument("--require", action="append", default=[])
    a = ap.parse_args()
    with open(a.dashboard) as f:
        dash = json.load(f)
    variables = {
        v["name"]: v.get("allValue") or ".*"
        for v in dash.get("templating", {}).get("list", [])
        if v.get("type") != "datasource"
    }
    todo = exprs(dash)
    if not todo:
        print("dashboard: no queries in", a.dashboard)
        return 1
    problems = []
    text = " ".join(e for _, e in todo)
    for m in filter(None, a.metrics.split(",")):
        if not re.search(re.escape(m) + r"(_bucket|_sum|_count)?\b", text):
            problems.append(f"no query uses {m}")
    if problems:
        print("\n".join("dashboard: FAIL: " + p for p in problems))
        return 1
    checks = [(t, substitute(e, variables)) for t, e in todo]
    if a.targets:
        checks.append(("scrape targets", f"count(up == 1) >= {a.targets}"))
    checks += [("required", e) for e in a.require]
    deadline = time.monotonic() + a.wait
    while True:
        failing = []
        for title, e in checks:
            try:
                n = finite_series(query(a.prometheus, e))
                if n == 0:
                    failing.append((title, e, "no series with a finite value"))
            except Exception as err:  # noqa: BLE001 - every failure is reported
                failing.append((title, e, str(err)))
        if not failing or time.monotonic() >= deadline:
            break
        time.sleep(2)
    for title, e, why in failing:
        print(f"dashboard: FAIL: [{title}] {e}\n    {why}")
    print(f"dashboard: {len(checks) - len(failing)} of {len(checks)} queries returned data")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
