"""One MSNEA optimisation step, theirs and ours, from the same weights on the same triples and negatives.

    python benchmarks/fidelity/msnea_step.py --authors-code $SCRATCH/msnea --layout $SCRATCH/work/msnea \
        --data-dir $SCRATCH/data2048/mmkg [--dataset FBDB15K --ratio 0.2] [--json OUT.json]

``--layout`` is what ``msnea_layout.py`` wrote (their ``kgs.py:KGs`` reads it); ``--data-dir`` the stand-in root it
was written from (ours reads it through ``mimea``'s loader). Their ``kgs.py`` and ``model.py`` are imported from
their checkout (``evaluation``, which ``model.py`` star-imports and never uses, is an empty module here so the
check needs no scikit-learn); nothing of theirs is copied.

What it checks, in order, and prints as one JSON object:

1. **data**: the triple set after the seed swaps, the two per-KG triple lists a pass reads (ours:
   ``MSNEA._lists``), the steps of an epoch, the entity pools corruptions come from, every entity's attribute set
   after the seed union, and the image rows;
2. **one step**: our weights copied into their model (ids mapped through the layout's ``e<id>`` / ``r<id>`` /
   ``a<column>`` names), one batch of ``triple_batch_size`` triples with our corruptions, all train links for the
   alignment (as their ``train``); their ``r_loss + ContrastiveLoss`` x 4 against our ``batch_loss``, term by
   term, and the relative error of every parameter's gradient.
"""
from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _rel_err(a, b) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-12))


def compare(authors_code: Path, layout: Path, data_dir: Path, dataset: str = "FBDB15K", ratio: float = 0.2,
            split_seed: int = 42, seed: int = 0) -> dict:
    import torch

    from baselines.msnea import MSNEA
    from mimea.data.loader import load_pair
    from mimea.data.splits import make_split

    sys.modules.setdefault("evaluation", types.ModuleType("evaluation"))
    sys.path.insert(0, str(Path(authors_code).resolve()))
    import kgs as their_kgs        # noqa: E402  (their checkout)
    import model as their_model    # noqa: E402

    root = str(Path(layout).resolve()) + "/"
    K = their_kgs.KGs(root, "721", ordered=True)
    args = types.SimpleNamespace(**json.loads((Path(layout) / "config.json").read_text(encoding="utf-8")))
    torch.manual_seed(seed)
    T = their_model.MSNEA(K, args)
    pair = load_pair(data_dir, dataset)
    split = make_split(pair.links, ratio, mode="lineage", split_seed=split_seed, val_fraction=0.0)
    O = MSNEA(pair, MSNEA.Config())
    ent = torch.full((pair.n_ent,), -1, dtype=torch.long)
    for name, i in K.ent_ids_dict.items():
        ent[int(name[1:])] = i
    rel = torch.full((max(pair.n_rel, 1),), -1, dtype=torch.long)
    for d in (K.rel_ids1_dict, K.rel_ids2_dict):
        for name, i in d.items():
            rel[int(name[1:])] = i
    links = split.train[(ent[split.train[:, 0]] >= 0) & (ent[split.train[:, 1]] >= 0)]   # the links they read
    if ent[links].tolist() != [list(x) for x in K.train_links]:
        raise SystemExit("msnea_step: the layout's train links are not our split's (rewrite it with msnea_layout.py)")
    O.prepare_training(links)
    from benchmarks.fidelity.authors import COMMITS
    report: dict = {"authors": {"repository": "liyichen-cly/MSNEA", "commit": COMMITS["msnea"]},
                    "dataset": dataset, "ratio": ratio, "data": {}, "step": {}}
    data = report["data"]
    mapped = torch.stack([ent[O.triples[:, 0]], rel[O.triples[:, 1]], ent[O.triples[:, 2]]], 1)
    ours_set = {tuple(x) for x in mapped.tolist()}
    theirs_set = set(K.relation_triples_list1) | set(K.relation_triples_list2)
    data["triples"] = {"ours": len(ours_set), "theirs": len(theirs_set), "same": ours_set == theirs_set}
    idx, kg = O._lists()
    for k, lst in ((0, K.relation_triples_list1), (1, K.relation_triples_list2)):
        mine = [tuple(x) for x in mapped[idx[kg == k]].tolist()]
        data[f"list{k + 1}"] = {"ours": len(mine), "theirs": len(lst), "same": sorted(mine) == sorted(lst)}
    their_steps = -(-(len(K.relation_triples_list1) + len(K.relation_triples_list2)) // args.batch_size)
    data["steps_per_epoch"] = {"ours": O.steps_per_epoch(0, 0), "theirs": their_steps}
    data["corruption_pools"] = {"same": sorted(ent[O.kg1].tolist()) == sorted(K.kg1_entities_list)
                                and sorted(ent[O.kg2].tolist()) == sorted(K.kg2_entities_list)}
    col = {i: int(name[1:]) for d in (K.attr_id_dict1, K.attr_id_dict2) for name, i in d.items()}
    x = O.encoder.feature("attribute")[:, :O.n_att]
    differ = 0
    for e in torch.nonzero(ent >= 0).flatten().tolist():
        i = int(ent[e])
        theirs = {col[a]: torch.sigmoid(torch.tensor(float(v))) for a, v in zip(K.eid_aid_list[i], K.eid_vid_list[i]) if a}
        ours = set(torch.nonzero(x[e] > 0).flatten().tolist())
        if set(theirs) != ours or (O.att_values is not None and any(
                abs(float(O.att_values[e, j]) - float(theirs[j])) > 1e-6 for j in ours)):
            differ += 1
    data["attributes"] = {"entities_differing": differ, "max_slots": {"ours": int((x > 0).sum(1).max()),
                                                                      "theirs": int(K.attr_max_num)}}
    mask = ent >= 0
    data["images_max_abs_diff"] = float((T.img_embed.weight[ent[mask]] - O.encoder.feature("image")[mask]).abs().max())

    rm = rel >= 0
    name_enc = O.encoder.features["attribute"].net
    with torch.no_grad():
        T.ent_embed.weight[ent[mask]] = O.encoder.entity.weight[mask]
        T.rel_embed.weight[rel[rm]] = O.relations.weight[rm]
        for theirs_lin, ours_lin in ((T.fc1, O.encoder.features["image"].net), (T.fc3, O.visual_head),
                                     (T.attr_encoder.fc2, O.attr_fc)):
            theirs_lin.weight.copy_(ours_lin.weight)
            theirs_lin.bias.copy_(ours_lin.bias)
        T.attr_encoder.fc1.weight.zero_()   # one-hot names: column j of their fc1 is our name j's weight
        T.attr_encoder.fc1.weight[:, :name_enc.weight.size(1)] = name_enc.weight
        T.attr_encoder.fc1.bias.copy_(name_enc.bias)

    torch.manual_seed(seed + 1)
    pick = torch.randperm(O.triples.size(0))[:O.config.triple_batch_size]
    tri = O.triples[pick]
    lists = O.rel_kg[tri[:, 1]]
    h_neg, t_neg = O._corrupt(tri, lists)

    class _Fixed:
        def next(self):
            return pick, lists

    O._pass = _Fixed()
    O._corrupt = lambda t, kg=None, max_try=10: (h_neg, t_neg)
    ours_loss, logs = O.batch_loss(links)
    ours_loss.backward()
    e1 = [x[0] for x in K.train_links]
    e2 = [x[1] for x in K.train_links]

    def attr_inputs(es):
        return (torch.LongTensor([K.eid_aid_list[x] for x in es]), torch.FloatTensor([K.eid_vid_list[x] for x in es]),
                torch.ByteTensor([K.eid_mask_list[x] for x in es]), torch.FloatTensor([K.eav_len_list[x] for x in es]))

    r_loss, rs, ats, ims, score = T(ent[tri[:, 0]], rel[tri[:, 1]], ent[tri[:, 2]], ent[h_neg], rel[tri[:, 1]],
                                    ent[t_neg], torch.LongTensor(e1), torch.LongTensor(e2),
                                    *attr_inputs(e1), *attr_inputs(e2))
    crit, label = their_model.ContrastiveLoss(), torch.eye(len(e1))
    terms = {"joint": crit(score, label), "graph": crit(rs, label), "attribute": crit(ats, label),
             "image": crit(ims, label)}
    their_loss = r_loss + sum(terms.values())
    their_loss.backward()
    step = report["step"]
    step["loss"] = {"ours": float(ours_loss.detach()), "theirs": float(their_loss.detach())}
    step["relation"] = {"ours": logs["loss_relation"], "theirs": float(r_loss.detach())}
    for k, v in terms.items():
        step[f"align_{k}"] = {"ours": logs[f"align_{k}"], "theirs": float(v.detach())}
    step["grad_rel_err"] = {
        "entity": _rel_err(O.encoder.entity.weight.grad[mask], T.ent_embed.weight.grad[ent[mask]]),
        "relation": _rel_err(O.relations.weight.grad[rm], T.rel_embed.weight.grad[rel[rm]]),
        "image_fc": _rel_err(O.encoder.features["image"].net.weight.grad, T.fc1.weight.grad),
        "visual_head": _rel_err(O.visual_head.weight.grad, T.fc3.weight.grad),
        "attribute_name": _rel_err(name_enc.weight.grad, T.attr_encoder.fc1.weight.grad[:, :name_enc.weight.size(1)]),
        "attribute_fc2": _rel_err(O.attr_fc.weight.grad, T.attr_encoder.fc2.weight.grad)}
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--authors-code", type=Path, required=True, help="their checkout (scratch, outside the repo)")
    ap.add_argument("--layout", type=Path, required=True, help="what msnea_layout.py wrote")
    ap.add_argument("--data-dir", type=Path, required=True, help="the stand-in root the layout was written from")
    ap.add_argument("--dataset", default="FBDB15K")
    ap.add_argument("--ratio", type=float, default=0.2)
    ap.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    report = compare(args.authors_code, args.layout, args.data_dir, args.dataset, args.ratio)
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
