#!/usr/bin/env python3
"""The workload `scripts/pgo-build` trains an instrumented `vigil` on.

Usage: pgo_train.py VIGIL WORK_DIR RULE_DIR...

It runs the paths a deployment spends its time on, with the repository's demo records as the
material (each varied so that no two events are alike), so that no hot path is left without
counts: LLVM optimises code without counts for size, as if it never ran.

- `vigil detect` over each JSON source's records, with its logsource and without (each record's
  shape recognised), against every rule directory given and a rule set generated from the
  records (`generate_rules`), and alone against rules keyed on each source's operation
  (`generate_keyed_rules`), the shape of SigmaHQ's rules for CloudTrail and Kubernetes audit;
- `vigil run` with the embedded bus: records posted to ingest for every source, detected,
  indexed and searched, then a clean shutdown (the profile is written at exit).
"""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parent.parent
TOKEN = "pgo-training-token-0123456789abcdef"

class JsonSource(NamedTuple):
    ingest: str
    demo_file: str
    # `vigil detect --logsource`; None leaves each record's shape to be recognised.
    detect_logsource: str | None
    # The logsource the rules generated from the source's records declare.
    rule_logsource: dict[str, str]
    # The fields that name the operation a record is about, which SigmaHQ's rules for the
    # source list exact values of; none for a source it has no rules for.
    operation_fields: tuple[str, ...] = ()

    @property
    def stem(self) -> str:
        """The demo file's name without its extension: the directory of its generated rules."""
        return self.demo_file.split(".")[0]


JSON_SOURCES = [
    JsonSource(
        "cloudtrail",
        "cloudtrail.ndjson",
        "product=aws,service=cloudtrail",
        {"product": "aws", "service": "cloudtrail"},
        ("eventSource", "eventName"),
    ),
    JsonSource(
        "kubernetes-audit",
        "kubernetes-audit.ndjson",
        "product=kubernetes,service=audit,category=application",
        {"product": "kubernetes", "service": "audit"},
        ("verb", "objectRef.resource"),
    ),
    JsonSource(
        "flask-app",
        "flask-app.ndjson",
        None,
        {"product": "python", "service": "flask", "category": "application"},
    ),
]
ACCESS_LOG = ("flask-access", "flask-access.log")
GENERATED_PER_SOURCE = 150
# The share of generated rules whose values are altered so that they rarely match.
MISSING = 0.9
# The same for rules keyed on the operation (`generate_keyed_rules`): at this share they match
# about once a demo record (0.93 times a CloudTrail record, 0.97 times a Kubernetes audit
# event), at 0.9 2.1 and 1.6 times; SigmaHQ's match 0.7 and 0.13 times an event of
# benches/detect_vs_rsigma.rs.
KEYED_MISSING = 0.96
# The keyed rules' runs are repeated so that their path's counts are not outweighed by the
# text scans of every other run: one pass was never better than three (benches/RESULTS.md).
KEYED_PASSES = 3


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


def leaves(value, path: str = ""):
    """(dotted field, text) for each string of a record, list items under their list's field."""
    if isinstance(value, dict):
        for key, item in value.items():
            if re.fullmatch(r"[A-Za-z0-9_]+", key):
                yield from leaves(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for item in value:
            yield from leaves(item, path)
    elif isinstance(value, str) and path and 3 <= len(value) <= 200:
        yield path, value


def generated_item(
    rng: random.Random, field: str, text: str, seen: list[str], alter: bool
) -> tuple[str, object]:
    """One selection item on `field`, in one of the shapes Sigma rules use, from a record's text
    (and others of the field, `seen`), each value it looks for `changed` where `alter` is set."""

    def change(value: str) -> str:
        return changed(rng, value, alter)

    cut = rng.randint(3, len(text))
    shape = rng.random()
    if shape < 0.5:
        picked = [text] + rng.sample(seen, min(len(seen), rng.randint(0, 6)))
        values = sorted({change(value) for value in picked})
        return field, values if len(values) > 1 else values[0]
    if shape < 0.7:
        start = rng.randint(0, len(text) - 3)
        return f"{field}|contains", change(text[start:start + cut])
    if shape < 0.8:
        return f"{field}|startswith", change(text[:cut])
    if shape < 0.9:
        return f"{field}|endswith", change(text[-cut:])
    if shape < 0.95:
        return f"{field}|contains|all", sorted({change(text[:3]), change(text[-3:])})
    return f"{field}|re", "^" + re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", change(text[:cut]))


def changed(rng: random.Random, text: str, alter: bool) -> str:
    """`text` with one character changed where `alter` is set, else `text`."""
    if not alter:
        return text
    at = rng.randrange(len(text))
    return text[:at] + ("Q" if text[at] != "Q" else "Z") + text[at + 1:]


def source_records(source: JsonSource) -> tuple[list[dict], dict[str, list[str]]]:
    """The source's demo records, and each field's texts over them, in record order."""
    lines = (REPO / "demo" / source.demo_file).read_text().splitlines()
    records = [json.loads(line) for line in lines]
    by_field: dict[str, list[str]] = {}
    for record in records:
        for field, text in leaves(record):
            by_field.setdefault(field, []).append(text)
    return records, by_field


def write_rule(
    out: Path, rng: random.Random, title: str, number: int, source: JsonSource, detection: dict
) -> None:
    rule = {
        "title": f"{title} {number} for {source.demo_file}",
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "status": "test",
        "logsource": source.rule_logsource,
        "detection": detection,
        "level": rng.choice(["low", "medium", "high"]),
    }
    (out / f"rule_{number:03}.yml").write_text("".join(block_yaml(rule)))


# YAML reads a plain scalar of these as something other than a string.
NOT_STRINGS = {"true", "false", "yes", "no", "on", "off", "y", "n", "null", "~"}


def scalar(text: str) -> str:
    """`text` as a YAML string: plain where YAML reads it back as this string, as most of
    SigmaHQ's values are written, else double-quoted (a JSON string is one)."""
    plain = re.fullmatch(r"[A-Za-z][A-Za-z0-9_.,/@|*()=+-]*( [A-Za-z0-9_.,/@|*()=+-]+)*", text)
    if plain and text.lower() not in NOT_STRINGS:
        return text
    return json.dumps(text, ensure_ascii=False)


def block_yaml(value: dict, indent: str = ""):
    """`value`, a rule of strings, lists of strings and mappings, as block-style YAML lines:
    the style SigmaHQ's rules are written in, whose parse the training then exercises (as
    JSON, which is YAML too, the rules trained another path of the YAML reader)."""
    for key, item in value.items():
        if isinstance(item, dict):
            yield f"{indent}{scalar(key)}:\n"
            yield from block_yaml(item, indent + "    ")
        elif isinstance(item, list):
            yield f"{indent}{scalar(key)}:\n"
            yield from (f"{indent}    - {scalar(entry)}\n" for entry in item)
        else:
            yield f"{indent}{scalar(key)}: {scalar(item)}\n"


def generate_rules(directory: Path, seed: int) -> None:
    """Rules of the shapes SigmaHQ's cloud and Kubernetes rules have, on the demo records' fields.

    A deployment's rules (SigmaHQ's, say) are not in the repository, and the repository's own
    match few of the training's records, so the paths that evaluate many rules, explain their
    matches and walk lists would be left without counts. These rules are generated from the
    records' own values: a tenth keep them and match, the rest have a character altered and
    rarely do (about four matches an event over the CloudTrail and Kubernetes audit records).
    Many look for parts of values, so each source's plan finds its candidates by scanning the
    record's text (`generate_keyed_rules` trains the other way).
    """
    rng = random.Random(seed)
    for source in JSON_SOURCES:
        records, by_field = source_records(source)
        out = directory / source.stem
        out.mkdir(parents=True)
        for number in range(GENERATED_PER_SOURCE):
            fields = list(dict(leaves(rng.choice(records))).items())
            picked = rng.sample(fields, min(len(fields), rng.randint(1, 3)))
            # Most of a deployment's rules match no given event: so most generated rules have
            # a character of each value they look for changed.
            alter = rng.random() < MISSING
            items = [
                generated_item(rng, field, text, sorted(set(by_field[field])), alter)
                for field, text in picked
            ]
            detection: dict[str, object] = {}
            shape = rng.random()
            if shape < 0.05:
                # Keywords: values looked for in every string of the record.
                # In order: altering a set's words in its (hash-seeded) order would make the
                # rules differ from one run to the next.
                words = sorted({text[: rng.randint(3, len(text))] for _, text in picked})
                detection["keywords"] = sorted(changed(rng, w, alter) for w in words)
                detection["condition"] = "keywords"
            elif shape < 0.6 or len(items) == 1:
                detection["selection"] = dict(items)
                detection["condition"] = "selection"
            elif shape < 0.8:
                detection["selection"] = dict(items[:-1])
                detection["filter"] = dict(items[-1:])
                detection["condition"] = "selection and not filter"
            else:
                for index, item in enumerate(items):
                    detection[f"selection_{index}"] = dict([item])
                detection["condition"] = rng.choice(["1 of selection_*", "all of selection_*"])
            write_rule(out, rng, "Generated training rule", number, source, detection)


def generate_keyed_rules(directory: Path, seed: int) -> None:
    """Rules of the shape nearly all of SigmaHQ's CloudTrail and Kubernetes audit rules take:
    exact values of the fields that name the operation (CloudTrail's `eventSource` and
    `eventName`, Kubernetes audit's `verb` and `objectRef.resource`), beside conditions on
    other fields.

    A plan whose rules nearly all name such values looks the fields' values up in a table
    (`KeyIndex`, detect/src/prefilter/keys.rs) instead of scanning the record's text, which is
    how `vigil detect` runs SigmaHQ's rules for both sources. `generate_rules` never makes
    such a plan, so without these that path was trained only by the repository's CloudTrail
    rules in `vigil run`.
    """
    rng = random.Random(seed)
    for source in JSON_SOURCES:
        if not source.operation_fields:
            continue
        records, by_field = source_records(source)
        records = [
            record
            for record in records
            if set(source.operation_fields) <= dict(leaves(record)).keys()
        ]
        out = directory / source.stem
        out.mkdir(parents=True)
        for number in range(GENERATED_PER_SOURCE):
            fields = dict(leaves(rng.choice(records)))
            alter = rng.random() < KEYED_MISSING
            selection: dict[str, object] = {}
            for field in source.operation_fields:
                seen = sorted(set(by_field[field]))
                picked = [fields[field]] + rng.sample(seen, min(len(seen), rng.randint(0, 6)))
                values = sorted({changed(rng, value, alter) for value in picked})
                selection[field] = values if len(values) > 1 else values[0]
            others = sorted(set(fields) - set(source.operation_fields))
            items = [
                generated_item(rng, field, fields[field], sorted(set(by_field[field])), alter)
                for field in rng.sample(others, min(len(others), rng.randint(0, 2)))
            ]
            detection: dict[str, object] = {"selection": selection}
            if items and rng.random() < 0.3:
                selection.update(items[:-1])
                detection["filter"] = dict(items[-1:])
                detection["condition"] = "selection and not filter"
            else:
                selection.update(items)
                detection["condition"] = "selection"
            write_rule(out, rng, "Generated keyed training rule", number, source, detection)


def train_detect(vigil: str, work: Path, rule_dirs: list[str]) -> None:
    generated = work / "generated-rules"
    generate_rules(generated, seed=20)
    keyed = work / "keyed-rules"
    generate_keyed_rules(keyed, seed=21)
    rules = [arg for d in [*rule_dirs, str(generated)] for arg in ("--rules", d)]

    def detect(*args: str) -> None:
        subprocess.run([vigil, "detect", *args], check=True, stdout=subprocess.DEVNULL)

    mixed = []
    for source in JSON_SOURCES:
        lines = varied(source.demo_file, 2000)
        mixed += lines[:20000]
        path = work / f"detect-{source.demo_file}"
        path.write_text("\n".join(lines) + "\n")
        logsource = source.detect_logsource
        selected = ["--logsource", logsource] if logsource else []
        detect(*selected, *rules, str(path))
        if source.operation_fields:
            # On their own: beside the rules above, the plan would scan the text again.
            for _ in range(KEYED_PASSES):
                detect(*selected, "--rules", str(keyed / source.stem), str(path))
    path = work / "detect-mixed"
    path.write_text("\n".join(mixed + access_lines(200)) + "\n")
    detect(*rules, str(path))


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
        for source in JSON_SOURCES:
            lines = varied(source.demo_file, 600)
            for start in range(0, len(lines), 5000):
                batch = lines[start:start + 5000]
                request(base, f"/api/v1/ingest/{source.ingest}", "\n".join(batch).encode())
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
