"""Turn the authors' printed logs into per-epoch test curves (H@1/10/50, MR, MRR per direction) and timings.

Input: the shim's timing log (``<seconds since start>\\t<line>`` for every printed line), or a plain log (then no
wall-clock times). Lines parsed:

* MEAformer (``main.py:Runner._test``): ``Ep K | l2r: acc of top [1, 10, 50] = [a b c], mr = X, mrr = Y, ...``
  and the same with ``r2l``; the shim's ``[fidelity-shim] epoch K done`` marks the end of each epoch (train +
  test). Lines after `` Test result `` (the final re-test of the best model) are not part of the curve.
* MCLEA / EVA (``run.py:MCLEA.test``, ``run_dbp15k.py:main``): ``[epoch K] loss_all: L, time: T s`` (training
  time of epoch K), ``[epoch K] checkpoint!`` then ``l2r: acc of top [1, 10, 50] = [...], mr = X, mrr = Y,
  time = T s`` and ``r2l: ...``.

* GCN-Align (``train.py`` through the shim): ``Epoch: 0001 AE_train_loss= L SE_train_loss= L`` per epoch;
  ``metrics.py:get_hits`` prints ``For each left:`` / ``For each right:`` then ``Hits@k: P%``; after each such
  block the shim prints ``[fidelity-shim] cityblock epoch=N view=SE+AE | l2r hits@1=.. mr=.. mrr=.. | r2l ...
  | time=T`` (MR/MRR from the same matrix; ``view=SE``: their final SE-only test). The curve holds the ``SE+AE``
  tests (their headline) with THEIR printed Hits@k (``P / 100``) and the shim's MR/MRR.

* MSNEA (``main.py`` through the shim): ``[epoch K] loss: L, relation loss: R, align loss:A, time: T s`` (their
  logger; T = training seconds of epoch K, 1-based), the shim's ``[fidelity-shim] msnea test epoch=K``, then
  their ``evaluation.py:greedy_alignment`` line ``accurate results: hits@[1, 5, 10] = [a b c]%, mr = X, mrr = Y,
  time = T s`` (left-to-right only, percentages).

``epoch`` in the output counts completed epochs (1-based); their own 0-based index is kept as ``their_epoch``.
"""
from __future__ import annotations

import re
import statistics
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


_GA_EPOCH = re.compile(r"^Epoch: (?P<ep>\d+) AE_train_loss= (?P<ae>" + _NUM + r"|nan|inf) SE_train_loss= (?P<se>"
                       + _NUM + r"|nan|inf)")
_GA_HITS = re.compile(r"^Hits@(?P<k>\d+): (?P<p>" + _NUM + r")%")
_GA_SHIM = re.compile(r"\[fidelity-shim\] cityblock epoch=(?P<ep>\d+) view=(?P<view>\S+) \| (?P<rest>.*)$")
_GA_SPLIT = re.compile(r"\[fidelity-shim\] split: .*test_sha1=(?P<sha>[0-9a-f]+)")


def _ga_shim_metrics(rest: str) -> tuple[dict, float | None]:
    out, seconds = {}, None
    for part in rest.split(" | "):
        head, _, kv = part.partition(" ")
        if head in ("l2r", "r2l"):
            out[head] = {k: float(v) for k, v in (x.split("=", 1) for x in kv.split())}
        elif head.startswith("time="):
            seconds = float(head.split("=", 1)[1])
    return out, seconds


def _ga_train_seconds(epoch_t: dict[int, float], test_s: dict[int, float], start: float | None) -> dict[int, float]:
    """Training seconds of epoch n: from the previous epoch line (or ``start``, the end of loading) to its own,
    minus the test the shim ran in between (a periodic test sits before "Epoch: n"; the final one after the last
    line). Without ``start`` the first epoch has none."""
    train_s: dict[int, float] = {}
    prev = start
    last = max(epoch_t) if epoch_t else 0
    for ep in sorted(epoch_t):
        if prev is not None:
            train_s[ep] = round(epoch_t[ep] - prev - (test_s.get(ep, 0.0) if ep != last else 0.0), 4)
        prev = epoch_t[ep]
    return train_s


def parse_gcn_align(path: str | Path) -> list[dict]:
    """GCN-Align's curve (see the module docstring); each record also has ``train_s`` (median training seconds
    of the epochs since the previous record, the test excluded), ``test_s`` and ``loss`` (AE + SE)."""
    epoch_t: dict[int, float] = {}
    losses: dict[int, float] = {}
    tests: dict[tuple[int, str], dict] = {}
    test_s: dict[int, float] = {}
    printed: dict[str, dict] = {}
    direction = None
    start = None
    for t, line in read_lines(path):
        if start is None and _GA_SPLIT.search(line):
            start = t
        e = _GA_EPOCH.search(line)
        if e:
            ep = int(e.group("ep"))
            losses[ep] = float(e.group("ae")) + float(e.group("se"))
            if t is not None:
                epoch_t[ep] = t
            continue
        if line.startswith("For each left:"):
            direction, printed = "l2r", {"l2r": {}, "r2l": {}}
            continue
        if line.startswith("For each right:"):
            direction = "r2l"
            continue
        h = _GA_HITS.search(line)
        if h and direction:
            printed[direction][f"hits@{h.group('k')}"] = round(float(h.group("p")) / 100, 6)
            continue
        s = _GA_SHIM.search(line)
        if s:
            shim, seconds = _ga_shim_metrics(s.group("rest"))
            ep, view = int(s.group("ep")), s.group("view")
            rec = {}
            for d in ("l2r", "r2l"):
                theirs = printed.get(d) or {}
                rec[d] = {**{k: v for k, v in shim.get(d, {}).items() if k.startswith("hits@")}, **theirs,
                          **{k: shim[d][k] for k in ("mr", "mrr") if k in shim.get(d, {})}}
            rec["mean"] = {k: round((rec["l2r"][k] + rec["r2l"][k]) / 2, 6) for k in rec["l2r"] if k in rec["r2l"]}
            tests[(ep, view)] = rec
            if seconds is not None:
                test_s[ep] = test_s.get(ep, 0.0) + seconds if view == "SE+AE" else test_s.get(ep, 0.0)
            direction, printed = None, {}
    train_s = _ga_train_seconds(epoch_t, test_s, start)
    out, prev_ep = [], 0
    for ep in sorted({ep for ep, view in tests if view == "SE+AE"}):
        block = sorted(v for k, v in train_s.items() if prev_ep < k <= ep and k > 1) or \
            sorted(v for k, v in train_s.items() if prev_ep < k <= ep)
        rec = {"epoch": ep, "their_epoch": ep - 1, "test": tests[(ep, "SE+AE")],
               "loss": losses.get(ep), "train_s": block[len(block) // 2] if block else None,
               "test_s": test_s.get(ep)}
        if (ep, "SE") in tests:
            rec["test_se_only"] = tests[(ep, "SE")]
        out.append(rec)
        prev_ep = ep
    return out


def gcn_align_timing(path: str | Path) -> dict:
    """``{"seconds_per_epoch": median training seconds of an epoch (epoch 1 excluded), "seconds_per_test": median
    seconds of one SE+AE test, "test_sha1": of the test links the shim used}`` from a GCN-Align timing log."""
    epoch_t, tests, sha = {}, [], None
    for t, line in read_lines(path):
        e = _GA_EPOCH.search(line)
        if e and t is not None:
            epoch_t[int(e.group("ep"))] = t
        s = _GA_SHIM.search(line)
        if s and s.group("view") == "SE+AE":
            tests.append((int(s.group("ep")), _ga_shim_metrics(s.group("rest"))[1]))
        sp = _GA_SPLIT.search(line)
        if sp:
            sha = sp.group("sha")
    test_at = {ep: sec for ep, sec in tests if sec is not None}
    diffs = list(_ga_train_seconds(epoch_t, test_at, None).values())   # epoch 1 excluded: no start
    return {"seconds_per_epoch": round(statistics.median(diffs), 4) if diffs else None,
            "seconds_per_test": round(statistics.median(test_at.values()), 3) if test_at else None,
            "test_sha1": sha}


_MS_TRAIN = re.compile(r"\[epoch (?P<ep>\d+)\] loss: (?P<loss>" + _NUM + r"|nan|inf), relation loss: (?P<rel>" + _NUM
                       + r"|nan|inf), align loss:\s*(?P<align>" + _NUM + r"|nan|inf), time: (?P<time>" + _NUM + r")s")
_MS_SHIM = re.compile(r"\[fidelity-shim\] msnea test epoch=(?P<ep>\d+)")
_MS_TEST = re.compile(r"accurate results: hits@\[(?P<ks>[\d, ]+)\] = \[(?P<acc>[^\]]*)\]%, mr = (?P<mr>" + _NUM
                      + r"), mrr = (?P<mrr>" + _NUM + r"), time = (?P<time>" + _NUM + r") s")


def parse_msnea(path: str | Path) -> list[dict]:
    """MSNEA's curve: one record per shim-requested test, ``test.l2r`` (their only direction; Hits@k as
    fractions), ``loss`` / ``loss_relation`` / ``loss_align`` and ``train_s`` of that epoch, ``test_s``."""
    train: dict[int, dict] = {}
    out: list[dict] = []
    pending = None
    for _, line in read_lines(path):
        tr = _MS_TRAIN.search(line)
        if tr:
            train[int(tr.group("ep"))] = {"loss": float(tr.group("loss")), "loss_relation": float(tr.group("rel")),
                                          "loss_align": float(tr.group("align")), "train_s": float(tr.group("time"))}
            continue
        sh = _MS_SHIM.search(line)
        if sh:
            pending = int(sh.group("ep"))
            continue
        m = _MS_TEST.search(line)
        if m and pending is not None:
            l2r = {k: (round(v / 100, 6) if k.startswith("hits@") else v) for k, v in _metrics(m).items()}
            out.append({"epoch": pending, "their_epoch": pending, "test": {"l2r": l2r}, **train.get(pending, {}),
                        "test_s": float(m.group("time"))})
            pending = None
    return out


PARSERS = {"meaformer": parse_meaformer, "mclea": parse_mclea_eva, "eva": parse_mclea_eva,
           "gcn_align": parse_gcn_align, "msnea": parse_msnea}


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
