#!/usr/bin/env python3
"""The workload `scripts/pgo-build` trains an instrumented `vigil` on.

Usage: pgo_train.py VIGIL WORK_DIR RULE_DIR...

It runs the paths a deployment spends its time on, with the repository's demo records as the
material (each varied so that no two events are alike), so that no hot path is left without
counts: LLVM optimises code without counts for size, as if it never ran.

- `vigil detect` over each JSON source's records, with its logsource and without (each record's
  shape recognised), against every rule directory given;
- `vigil run` with the embedded bus: records posted to ingest for every source, detected,
  indexed and searched, then a clean shutdown (the profile is written at exit).
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOKEN = "pgo-training-token-0123456789abcdef"

# (ingest source, demo file, logsource for `vigil detect`)
JSON_SOURCES = [
    ("cloudtrail", "cloudtrail.ndjson", "product=aws,service=cloudtrail"),
    (
        "kubernetes-audit",
        "kubernetes-audit.ndjson",
        "product=kubernetes,service=audit,category=application",
    ),
    ("flask-app", "flask-app.ndjson", None),
]
ACCESS_LOG = ("flask-access", "flask-access.log")


def varied(name: str, copies: int) -> list[str]:
    """The demo file's JSON records, `copies` times over, each with a field of its own."""
    lines = (REPO / "demo" / name).read_text().splitlines()
    out = []
    for copy in range(copies):
        for line in lines:
            record = json.loads(line)
            record["pgo"] = "training"
            record["pgoCopy"] = copy
            out.append(json.dumps(record, separators=(",", ":")))
    return out


def access_lines(copies: int) -> list[str]:
    lines = (REPO / "demo" / ACCESS_LOG[1]).read_text().splitlines()
    # The request path varies; the rest of each line is the demo's.
    return [line.replace(" /", f" /pgo{copy}/", 1) for copy in range(copies) for line in lines]


def train_detect(vigil: str, work: Path, rule_dirs: list[str]) -> None:
    rules = [arg for d in rule_dirs for arg in ("--rules", d)]
    mixed = []
    for _, name, logsource in JSON_SOURCES:
        lines = varied(name, 2000)
        mixed += lines[:20000]
        path = work / f"detect-{name}"
        path.write_text("\n".join(lines) + "\n")
        args = [vigil, "detect", *rules, str(path)]
        if logsource:
            args[2:2] = ["--logsource", logsource]
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    path = work / "detect-mixed"
    path.write_text("\n".join(mixed + access_lines(200)) + "\n")
    subprocess.run([vigil, "detect", *rules, str(path)], check=True, stdout=subprocess.DEVNULL)


def request(base: str, path: str, body: bytes | None = None) -> bytes:
    req = urllib.request.Request(base + path, data=body, method="POST" if body else "GET")
    req.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(req, timeout=120) as response:
        return response.read()


def train_run(vigil: str, work: Path, rules: str) -> None:
    data = work / "data"
    data.mkdir(mode=0o700)
    env = dict(os.environ, VIGIL_API_TOKEN=TOKEN, VIGIL_LOG="warn")
    child = subprocess.Popen(
        [vigil, "run", "--listen", "127.0.0.1:0", "--data-dir", str(data), "--rules", rules],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = child.stdout.readline().strip()
        prefix = "Vigil is listening on "
        if not first.startswith(prefix):
            raise SystemExit(f"vigil run printed {first!r}")
        base = first[len(prefix):]
        # The JSON records, which search finds by their `pgo` field.
        posted = 0
        for source, name, _ in JSON_SOURCES:
            lines = varied(name, 600)
            for start in range(0, len(lines), 5000):
                batch = lines[start:start + 5000]
                request(base, f"/api/v1/ingest/{source}", "\n".join(batch).encode())
                posted += len(batch)
        lines = access_lines(200)
        request(base, f"/api/v1/ingest/{ACCESS_LOG[0]}", "\n".join(lines).encode())
        deadline = time.monotonic() + 300
        while True:
            found = json.loads(request(base, "/api/v1/search?q=pgo:training&limit=1"))["total"]
            if found >= posted:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"only {found} of {posted} events were indexed")
            time.sleep(0.5)
        for query in ["eventName:ConsoleLogin", "verb:create", "pgo:training"]:
            request(base, "/api/v1/search?" + urllib.parse.urlencode({"q": query, "limit": 50}))
        request(base, "/api/v1/alerts?limit=50")
    finally:
        child.send_signal(signal.SIGTERM)
        child.stdout.read()
    if child.wait(timeout=120) != 0:
        raise SystemExit(f"vigil run exited with {child.returncode}")


def main() -> None:
    vigil, work, *rule_dirs = sys.argv[1:]
    # `vigil run` runs in the work directory, so the paths it is given must not be relative.
    vigil = str(Path(vigil).resolve())
    work = Path(work).resolve()
    train_detect(vigil, work, rule_dirs)
    train_run(vigil, work, str(REPO / "rules"))


if __name__ == "__main__":
    main()
