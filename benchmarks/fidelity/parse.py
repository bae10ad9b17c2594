"""Turn the authors' printed logs into per-epoch test curves (H@1/10/50, MR, MRR per direction) and timings.

Input: the shim's timing log (``<seconds since start>\\t<line>`` for every printed line), or a plain log (then no
wall-clock times). Lines parsed:

* MEAformer (``main.py:Runner._test``): ``Ep K | l2r: acc of top [1, 10, 50] = [a b c], mr = X, mrr = Y, ...``
  and the same with ``r2l``; the shim's ``[fidelity-shim] epoch K done`` marks the end of each epoch (train +
  test). Lines after `` Test result `` (the final re-test of the best model) are not part of the curve.
* MCLEA / EVA (``run.py:MCLEA.test``, ``run_dbp15k.py:main``): ``[epoch K] loss_all: L, time: T s`` (training
  time of epoch K), ``[epoch K] checkpoint!`` then ``l2r: acc of top [1, 10, 50] = [...], mr = X, mrr = Y,
  time = T s`` and ``r2l: ...``.

``epoch`` in the output counts completed epochs (1-based); their own 0-based index is kept as ``their_epoch``.
"""
from __future__ import annotations

import re
from pathlib import Path

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_METRICS = re.compile(r"(?P<dir>l2r|r2l): acc of top \[(?P<ks>[\d, ]+)\] = \[(?P<acc>[^\]]*)\], mr = (?P<mr>"
                      + _NUM + r"), mrr = (?P<mrr>" + _NUM + r")(?:.*?time = (?P<time>" + _NUM + r") s)?")
_MEA_EP = re.compile(r"Ep (?P<ep>\d+) \| ")
_SHIM_EP = re.compile(r"\[fidelity-shim\] epoch (?P<ep>\d+) done")
_TRAIN = re.compile(r"\[epoch (?P<ep>\d+)\] loss_all: (?P<loss>" + _NUM + r"|nan|inf), time: (?P<time>" + _NUM
                    + r") s")
_BAR_START = re.compile(r"\| 0/\d+ \[")
_CHECK = re.compile(r"\[epoch (?P<ep>\d+)\] checkpoint!")


def read_lines(path: str | Path) -> list[tuple[float | None, str]]:
    """``(seconds or None, line)`` from a shim timing log or a plain log (``\\r`` also ends a line)."""
    out: list[tuple[float | None, str]] = []
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    for raw in re.split(r"[\r\n]+", text):
        t, line = None, raw
        head, sep, rest = raw.partition("\t")
        if sep:
            try:
                t, line = float(head), rest
            except ValueError:
                pass
        if line.strip():
            out.append((t, line))
    return out


def _metrics(m: re.Match) -> dict:
    ks = [int(k) for k in m.group("ks").split(",")]
    acc = [float(x) for x in m.group("acc").split()]
    d = {f"hits@{k}": a for k, a in zip(ks, acc)}
    d["mr"], d["mrr"] = float(m.group("mr")), float(m.group("mrr"))
    return d


def _finish(records: dict[int, dict]) -> list[dict]:
    out = []
    for ep in sorted(records):
        r = records[ep]
        test = r.get("test", {})
        if "l2r" in test and "r2l" in test:
            test["mean"] = {k: (test["l2r"][k] + test["r2l"][k]) / 2 for k in test["l2r"] if k in test["r2l"]}
        out.append({"epoch": ep + 1, "their_epoch": ep, **r})
    return out


def parse_meaformer(path: str | Path) -> list[dict]:
    records: dict[int, dict] = {}
    marks: dict[int, float] = {}
    start: float | None = None
    for t, line in read_lines(path):
        if "Test result" in line:
            break
        if start is None and t is not None and _BAR_START.search(line):
            start = t  # the epoch bar appears: training begins
        s = _SHIM_EP.search(line)
        if s and t is not None:
            marks[int(s.group("ep"))] = t
            continue
        e, m = _MEA_EP.search(line), _METRICS.search(line)
        if e and m:
            rec = records.setdefault(int(e.group("ep")), {"test": {}})
            rec["test"][m.group("dir")] = _metrics(m)
            loss = re.search(r"Loss = (" + _NUM + ")", line)
            if loss:
                rec["loss"] = float(loss.group(1))
    prev = start
    for ep in sorted(records):
        if ep in marks:
            records[ep]["wall_s"] = round(marks[ep] - prev, 3) if prev is not None else None
            records[ep]["t_end_s"] = marks[ep]
            prev = marks[ep]
    return _finish(records)


def parse_mclea_eva(path: str | Path) -> list[dict]:
    """MCLEA's and EVA's shared print format (EVA's code is MCLEA's ancestor)."""
    records: dict[int, dict] = {}
    current = None
    last_end: float | None = None
    for t, line in read_lines(path):
        if last_end is None and t is not None and "[start training...]" in line:
            last_end = t
        tr = _TRAIN.search(line)
        if tr:
            ep = int(tr.group("ep"))
            rec = records.setdefault(ep, {"test": {}})
            rec["loss"] = float(tr.group("loss"))
            rec["train_s"] = float(tr.group("time"))
            current = ep
            continue
        ck = _CHECK.search(line)
        if ck:
            current = int(ck.group("ep"))
            continue
        m = _METRICS.search(line)
        if m and current is not None:
            rec = records.setdefault(current, {"test": {}})
            rec["test"][m.group("dir")] = _metrics(m)
            if m.group("time") is not None:
                rec["test_s"] = float(m.group("time"))  # r2l's time is cumulative over both directions
            if m.group("dir") == "r2l" and t is not None:
                rec["wall_s"] = round(t - last_end, 3) if last_end is not None else None
                rec["t_end_s"] = t
                last_end = t
    # keep only epochs with a test (a run evaluated every epoch has all of them)
    return _finish({ep: r for ep, r in records.items() if r["test"]})


PARSERS = {"meaformer": parse_meaformer, "mclea": parse_mclea_eva, "eva": parse_mclea_eva}


def parse(model: str, path: str | Path) -> list[dict]:
    return PARSERS[model](path)


def seconds_per_epoch(curve: list[dict]) -> float | None:
    """Median wall seconds of an epoch (train + that epoch's test), first epoch excluded when there are others."""
    vals = [r["wall_s"] for r in curve if r.get("wall_s") is not None]
    if not vals:
        vals = [r["train_s"] + r.get("test_s", 0.0) for r in curve if r.get("train_s") is not None]
    if not vals:
        return None
    vals = sorted(vals)
    n = len(vals)
    return vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2
