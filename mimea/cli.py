"""``mimea`` console script: ``data check``, ``data convert``, ``features images``, ``train``, ``models``, ``tune``.

Every command turns its flags into the one RunConfig tree (``mimea.training.config.resolve``); no flag rewrites
another. Input errors print one line naming the file (and line) and exit with status 2, without a traceback.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from mimea.training.config import PROFILES as PROFILE_NAMES

EXIT_INPUT_ERROR = 2


_PYTHON_LITERALS = {"True": True, "False": False, "None": None}


def _parse_value(text: str) -> Any:
    """``key=value`` values: JSON when it parses (numbers, true/false, null, lists), else the plain string;
    Python's ``True`` / ``False`` / ``None`` spellings are read as JSON's."""
    if text in _PYTHON_LITERALS:
        return _PYTHON_LITERALS[text]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_assignments(items: Sequence[str] | None) -> dict[str, Any]:
    """``["train.epochs=10", "split.ratio=0.5"]`` -> nested dict."""
    out: dict[str, Any] = {}
    for item in items or ():
        if "=" not in item:
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = _parse_value(value)
    return out


def _cmd_data_check(args) -> int:
    from mimea.data.loader import load_folder
    from mimea.data.stats import dataset_statistics, format_statistics

    pair = load_folder(args.path, missing_image=args.missing_image)
    stats = dataset_statistics(pair)
    print(json.dumps(stats, indent=2) if args.json else format_statistics(stats))
    return 0


def _cmd_data_convert_mmkb(args) -> int:
    from tabulate import tabulate

    from mimea.data.convert_mmkb import PAIRS, convert_mmkb

    counts = convert_mmkb(args.src, args.dst, args.pair, args.name, names_file=args.names,
                          allow_missing_images=args.allow_missing_images, image_format=args.image_format)
    kg1, kg2, default = PAIRS[args.pair]
    rows = [[key.replace("_", " "), counts["kg1"][key], counts["kg2"][key]] for key in counts["kg1"]]
    rows.append(["links", counts["links"], ""])
    print(f"wrote {Path(args.dst) / (args.name or default)} ({args.pair}, ids as MCLEA's mmkb_convert.py)")
    print(tabulate(rows, headers=["", kg1, kg2], tablefmt="plain"))
    return 0


def _cmd_features_images(args) -> int:
    from mimea.data.image_features import extract_image_features

    out = extract_image_features(args.images_dir, args.backbone, args.out, weights=args.weights, index=args.index,
                                 batch_size=args.batch_size, device=args.device, image_size=args.image_size,
                                 dataset_dir=args.dataset_dir, skip_unreadable=args.skip_unreadable,
                                 progress=not args.no_progress)
    print(f"wrote {out['out']}: {out['entities']} entities from {out['images']} images, {out['dim']}-d "
          f"{args.backbone} features ({out['recipe']['weights']}) on {out['device']}"
          + (f"; {out['skipped']} unreadable images skipped" if out["skipped"] else ""))
    if out["recorded_in"] is not None:
        print(f"recorded image_backbone in {out['recorded_in']}")
    else:
        print("note: the output is not ROOT/pkls/NAME_id_img_feature_dict.* of a dataset and no --dataset-dir "
              "was given, so no dataset.json records the backbone", file=sys.stderr)
    return 0


def build_config(args):
    from mimea.training.config import resolve

    overrides = parse_assignments(args.set)
    for section in ("data", "split", "train"):
        if not isinstance(overrides.get(section, {}), dict):
            raise ValueError(f"{section}={overrides[section]!r}: expected a section (set its fields as "
                             f"{section}.KEY=VALUE)")
    data = overrides.setdefault("data", {})
    if args.dataset:
        data["dataset"] = args.dataset
    if args.data_dir:
        data["data_dir"] = str(Path(args.data_dir).resolve())
    if args.ratio is not None:
        overrides.setdefault("split", {})["ratio"] = args.ratio
    train = overrides.setdefault("train", {})
    if args.iterative:
        train["iterative"] = True
    if args.epochs is not None:
        train["epochs"] = args.epochs
    if args.device:
        train["device"] = args.device
    if args.no_progress:
        train["progress"] = False
    model_overrides = parse_assignments(args.model_set)
    set_model = overrides.pop("model_config", {})   # --set model_config.KEY=VALUE is --model-set KEY=VALUE
    if isinstance(set_model, dict):
        model_overrides = {**set_model, **model_overrides}
    if args.config:
        from mimea.training.validate import check_config_file, read_config_file

        loaded = read_config_file(args.config)   # a malformed file: one line FILE:LINE: message
        if "model_config" in loaded:  # a tuned best.json: {"model_config": {...}, "train": {...}, ...}
            check_config_file(args.config, args.model, loaded["model_config"], loaded.get("train") or {})
            for key, value in (loaded.get("train") or {}).items():
                train.setdefault(key, value)
            loaded = loaded["model_config"]
        else:
            check_config_file(args.config, args.model, loaded, {})
        model_overrides = {**loaded, **model_overrides}
    return resolve(args.model, args.profile, overrides, model_overrides)


def _cmd_train(args) -> int:
    from mimea.pipeline import run, with_seed

    if args.replicates < 1:
        raise ValueError(f"--replicates {args.replicates}: expected at least 1")
    base = build_config(args)
    seeds = args.seeds if args.seeds else [base.seed + i for i in range(args.replicates)]
    rows = []
    for seed in seeds:
        out = run(with_seed(base, seed), args.results, force=args.force, restart_damaged=args.restart_damaged)
        test, meta = out["results"]["test"], out["metadata"]
        l2r = test["l2r"]
        rows.append([out["run_id"], seed, l2r["hits@1"], l2r["hits@10"], l2r["mrr"], meta["epochs_run"],
                     meta["time_per_epoch_s"], meta["train_time_s"], meta["peak_memory_mb"],
                     meta["n_parameters"], "reused" if out["reused"] else meta["stopped_by"]])
    from tabulate import tabulate

    print(tabulate(rows, headers=["run", "seed", "H@1", "H@10", "MRR", "epochs", "s/epoch", "train s",
                                  "peak MB", "params", "stopped"], floatfmt=".4f"))
    print(f"(test, left-to-right, {base.eval.similarity}; runs under {Path(args.results) / 'runs'})")
    return 0


def _cmd_models(args) -> int:
    from mimea.models import registry

    from tabulate import tabulate

    rows = []
    for name, where in registry.sources().items():
        cls = registry.get(name)
        rows.append([name, where, f"{cls.__module__}.{cls.__qualname__}"])
    print(tabulate(rows, headers=["model", "source", "class"], tablefmt="plain"))
    return 0


def _cmd_tune(args) -> int:
    from mimea.executors import from_flags
    from mimea.tuning.study import tune_from_args

    executor = from_flags(args.executor, args.submitit_cluster, parse_assignments(args.submitit_set),
                          Path(args.results).resolve() / "submitit")
    return tune_from_args(args, build_config, executor)


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="mimea", help="registered model name (see `mimea models`)")
    p.add_argument("--dataset", default=None, help="synthetic (default under smoke) | FBDB15K | FBYG15K | NAME")
    p.add_argument("--data-dir", default=None, help="ROOT holding NAME/norm (default: $MIMEA_DATA_DIR)")
    p.add_argument("--ratio", type=float, default=None, help="seed ratio (0.2, 0.5, 0.8)")
    p.add_argument("--profile", default="smoke", choices=list(PROFILE_NAMES))
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--iterative", action="store_true", help="iterative training (recorded in the protocol)")
    p.add_argument("--device", default=None, help="auto (default) | cpu | cuda | cuda:N")
    p.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="any RunConfig field, e.g. train.lr=1e-3")
    p.add_argument("--model-set", nargs="*", metavar="KEY=VALUE", help="a field of the model's Config")
    p.add_argument("--config", default=None,
                   help="JSON of model Config fields, or a tuned best.json (its model_config and train keys)")
    p.add_argument("--results", default="results", help="run store root (default: results)")
    p.add_argument("--no-progress", action="store_true")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mimea", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True)
    check = data.add_parser("check", help="validate a dataset folder (ROOT/NAME) and print its statistics")
    check.add_argument("path")
    check.add_argument("--missing-image", default="mask", choices=["mask", "random"])
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=_cmd_data_check)
    convert = data.add_parser("convert", help="convert a release to the MEAformer/MCLEA layout (docs/data.md)")
    formats = convert.add_subparsers(dest="convert_format", required=True)
    mmkb = formats.add_parser("mmkb", help="MMKB files (*_EntityTriples.txt, *_SameAsLink.txt, "
                                           "*_NumericalTriples.txt, *_ImageIndex.txt, *_ImageData.h5)")
    mmkb.add_argument("src", help="folder with KG/KG_*.txt (the mmkb repository layout) or KG_*.txt")
    mmkb.add_argument("dst", help="data ROOT to write NAME/{norm,extra} and pkls/ into")
    mmkb.add_argument("--pair", default="FB15K-DB15K", choices=["FB15K-DB15K", "FB15K-YAGO15K"])
    mmkb.add_argument("--name", default=None, help="dataset folder name (default FBDB15K / FBYG15K)")
    mmkb.add_argument("--names", default=None, metavar="FILE", help="entity<TAB>name lines (e.g. Freebase names)")
    mmkb.add_argument("--allow-missing-images", action="store_true",
                      help="skip images of the index that the h5 file lacks (MCLEA's converter does)")
    mmkb.add_argument("--image-format", default="pkl", choices=["pkl", "npz"])
    mmkb.set_defaults(func=_cmd_data_convert_mmkb)

    feats = sub.add_parser("features", help="feature extraction").add_subparsers(dest="features_command",
                                                                                 required=True)
    images = feats.add_parser("images", help="one image feature vector per entity (docs/data.md)")
    images.add_argument("images_dir", help="IMAGES_DIR/<entity id>.<ext> or IMAGES_DIR/<entity id>/<name>.<ext>")
    images.add_argument("--backbone", required=True, choices=["vgg16", "resnet152", "clip-vit-b32"])
    images.add_argument("--out", required=True, help="ROOT/pkls/NAME_id_img_feature_dict.npz (or .pkl)")
    images.add_argument("--weights", default=None,
                        help="weight file (default: torchvision's file in the torch hub cache; never downloaded), "
                             "or 'random' (random initialisation, for tests)")
    images.add_argument("--index", default=None, metavar="FILE", help="lines entity id<TAB>image path")
    images.add_argument("--batch-size", type=int, default=32)
    images.add_argument("--device", default="auto", help="auto (default: cuda when present) | cpu | cuda[:N]")
    images.add_argument("--image-size", type=int, default=224, help="centre crop (VGG16/ResNet; default 224)")
    images.add_argument("--dataset-dir", default=None,
                        help="ROOT/NAME whose extra/dataset.json records the backbone (default: from --out)")
    images.add_argument("--skip-unreadable", action="store_true", help="skip (and count) unreadable images")
    images.add_argument("--no-progress", action="store_true")
    images.set_defaults(func=_cmd_features_images)

    train = sub.add_parser("train", help="train and evaluate runs; writes the run store")
    _add_run_flags(train)
    train.add_argument("--seeds", type=int, nargs="*", help="init seeds (default: seed 0..replicates-1)")
    train.add_argument("--replicates", type=int, default=1)
    train.add_argument("--force", action="store_true", help="discard a stored run with the same config")
    train.add_argument("--restart-damaged", action="store_true",
                       help="a stored run with a damaged file: move the file aside (NAME.damaged-TIME), start over")
    train.set_defaults(func=_cmd_train)

    models = sub.add_parser("models", help="list registered models and where each came from")
    models.set_defaults(func=_cmd_models)

    tune = sub.add_parser("tune", help="Optuna study on validation MRR")
    _add_run_flags(tune)
    tune.add_argument("--n-trials", type=int, default=20)
    tune.add_argument("--storage", default=None, help="default: sqlite under results/; or postgresql://...")
    tune.add_argument("--study-name", default=None)
    tune.add_argument("--timeout", type=float, default=None)
    tune.add_argument("--replicate-best", type=int, default=0)
    tune.add_argument("--out", default=None, help="folder for trials.csv, best.json, figures")
    tune.add_argument("--workers", type=int, default=1,
                      help="worker jobs sharing the study (with --executor submitit; default 1: this process)")
    from mimea.executors import add_executor_flags

    add_executor_flags(tune, executor_help="inprocess (default): this process is the one worker; submitit: "
                       "--workers jobs (Slurm, or its local executor), storage and --results on a filesystem every "
                       "node reaches", set_example="timeout_min=240 gpus_per_node=1 slurm_partition=gpu")
    tune.set_defaults(func=_cmd_tune)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from mimea.data.errors import DataError

    parser = make_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except DataError as exc:
        print(f"mimea: error: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except (FileNotFoundError, KeyError, ValueError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"mimea: error: {msg}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except OSError as exc:   # a read-only run store or cache: one line, no traceback
        from mimea.store.damage import is_unwritable, unwritable

        if not is_unwritable(exc):
            raise
        print(f"mimea: error: {unwritable(exc)}", file=sys.stderr)
        return EXIT_INPUT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
