"""The Helm chart through the Helm SDK (PyPI helm-python-sdk), offline.

usage:
  python chart.py render CHART OUT.yaml [VALUES.yaml]   render (release "sidetrace" in namespace "sidetrace")
  python chart.py schema CHART GOOD.yaml... -- BAD.yaml...
      values.schema.json accepts the chart's defaults and every GOOD file,
      and rejects each document of every BAD file (a YAML stream of cases)
  python chart.py lint CHART VALUES.yaml...             helm lint --strict, Kubernetes 1.30
"""

import sys

import helm_python as helm
import yaml


def values(path):
    with open(path) as f:
        return helm.values_from_yaml(f.read())


def render(chart_dir, out, values_file=None):
    chart = helm.Chart.load(chart_dir)
    vals = values(values_file) if values_file else None
    rendered = chart.render(vals, name="sidetrace", namespace="sidetrace", is_install=True)
    docs = [text for path, text in sorted(rendered.items()) if path.endswith((".yaml", ".yml")) and text.strip()]
    with open(out, "w") as f:
        f.write("\n---\n".join(docs))
    print(f"rendered {len(docs)} templates to {out}")


def schema(chart_dir, args):
    chart = helm.Chart.load(chart_dir)
    split = args.index("--")
    good, bad = args[:split], args[split + 1 :]
    chart.validate_schema(None)
    print("ok: the chart's defaults")
    for path in good:
        chart.validate_schema(values(path))
        print(f"ok: {path}")
    failures = 0
    for path in bad:
        with open(path) as f:
            cases = [c for c in yaml.safe_load_all(f) if c]
        for case in cases:
            try:
                chart.validate_schema(case)
            except helm.HelmValuesError as e:
                print(f"rejected as it should be: {case}: {' '.join(str(e).split())[:200]}")
                continue
            print(f"FAIL: accepted {case}")
            failures += 1
    sys.exit(1 if failures else 0)


def lint(chart_dir, files):
    failures = 0
    for path in [None, *files]:
        report = helm.lint(chart_dir, values(path) if path else None, strict=True, kube_version="v1.30.0")
        bad = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2] + report.get("errors", [])
        for m in bad:
            print(f"FAIL lint ({path or 'defaults'}): {m}")
        failures += len(bad)
        print(f"lint ({path or 'defaults'}): {len(report.get('messages', []))} messages, {len(bad)} warnings or errors")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    cmd, chart_dir, *rest = sys.argv[1:]
    if cmd == "render":
        render(chart_dir, *rest)
    elif cmd == "schema":
        schema(chart_dir, rest)
    elif cmd == "lint":
        lint(chart_dir, rest)
    else:
        sys.exit(f"unknown command {cmd}")
