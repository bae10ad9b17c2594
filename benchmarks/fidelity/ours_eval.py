"""Our side of the GCN-Align fidelity run: ``mimea.cli`` unchanged, its test evaluation made the authors'.

    python -m benchmarks.fidelity.ours_eval train --model gcn_align ... --profile authors \\
        --set model_config.joint_normalize=false [--csls-log FILE]

The authors test GCN-Align with ``metrics.py:get_combine_hits``: Manhattan distance (``cdist(..., "cityblock")``)
on the raw ``[beta * SE, (1 - beta) * AE]``, candidates the test pairs' other side. Ours ranks by cosine/CSLS on
the L2-normalised joint. For a like-for-like curve this wrapper replaces ``mimea.evaluation.ranking.evaluate``
(which ``mimea.pipeline.run`` imports when it runs) by :func:`cityblock_evaluate`: the same ranks as the authors'
(``benchmarks/fidelity/cityblock.py``, the function the shim applies to their matrix). With
``model_config.joint_normalize=false`` our joint embedding IS ``[beta * SE, (1 - beta) * AE]`` (the switch only
changes the embedding that is evaluated; the loss reads SE and AE). Every call also runs our own evaluator
(cosine/CSLS as configured): the final test keeps it under ``"ours"``, and ``--csls-log FILE`` appends one JSON
line per call (``{"call", "n", "l2r", "mean"}``), so both protocols are on record; the curve holds the cityblock one.
Nothing of the package is edited; training is untouched.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def cityblock_evaluate(emb, pairs, **kwargs) -> dict:
    """``evaluate``'s result shape (``l2r``, ``r2l``, ``mean``) with the authors' cityblock ranks."""
    from benchmarks.fidelity import cityblock

    x = emb.detach().cpu().numpy()
    ids = pairs.detach().cpu().numpy()
    m = cityblock.metrics(*cityblock.ranks(x[ids[:, 0]], x[ids[:, 1]]))
    return {**m, "similarity": "cityblock (the authors' metrics.py:get_hits; benchmarks/fidelity/cityblock.py)"}


def install(csls_log: Path | None = None) -> None:
    import mimea.evaluation.ranking as ranking

    ours = ranking.evaluate
    calls = {"n": 0}

    def evaluate(emb, pairs, **kwargs):
        own = ours(emb, pairs, **kwargs)
        calls["n"] += 1
        if csls_log is not None:
            with open(csls_log, "a", encoding="utf-8") as f:
                f.write(json.dumps({"call": calls["n"], "n": int(len(pairs)), "similarity": kwargs.get("similarity"),
                                    "l2r": own["l2r"], "mean": own["mean"]}) + "\n")
        return {**cityblock_evaluate(emb, pairs), "ours": {k: own[k] for k in ("l2r", "r2l", "mean") if k in own}}

    ranking.evaluate = evaluate


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    csls_log = None
    if "--csls-log" in argv:
        i = argv.index("--csls-log")
        if i + 1 >= len(argv):
            raise SystemExit("--csls-log needs a file")
        csls_log = Path(argv[i + 1]).resolve()
        del argv[i:i + 2]
    install(csls_log)
    from mimea.cli import main as cli

    return cli(argv)


if __name__ == "__main__":
    raise SystemExit(main())
