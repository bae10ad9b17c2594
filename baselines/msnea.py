"""MSNEA (Chen et al., KDD 2022, "Multi-modal Siamese Network for Entity Alignment"), under the shared harness.

What makes the method (the entity table, image and attribute encoders come from the shared
:class:`~mimea.nn.multimodal.MultiModalEncoder`; trainer and evaluator are shared):

* visual-enhanced relation learning: a TransE margin loss ``sum relu(margin + |h + r - t|^2 - |h' + r - t'|^2)``
  on L2-normalised entity and relation embeddings (one corrupted triple per triple), plus the same loss with
  head and tail replaced by image-projected embeddings (a second image projection, ``visual_head``);
* attribute attention guided by the visual embedding: each attribute name has an embedding; an entity's
  attribute embedding is the softmax(<attribute, visual>)-weighted sum over ITS attributes. With
  ``attribute_values`` the numeric value enters as ``sigmoid(value)`` next to the name (MSNEA's FC over
  [name; value]);
* Siamese contrastive alignment on the relational, visual and attribute embeddings and on the joint
  (concat, L2-normalised): ``mean((1 - I) S^2 + I relu(align_margin - S)^2)`` over the in-batch similarities S.

Fallback where an entity has no real image (``img_mask`` False; every entity when the pair has no image
features): its attention is guided by its relational embedding instead, its triples leave the visual TransE
term, and (missing-image policy ``mask``) its visual part of the joint is zero. With no image features at all the
visual modality, its alignment term and the visual TransE term are absent. Details: ``docs/baselines.md``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mimea.data.pair import MMKGPair
from mimea.models.base import AlignmentModel, Embeddings, ModelConfig
from mimea.models.registry import register
from mimea.nn.multimodal import MultiModalEncoder, encoder_protocol


def siamese_loss(x: Tensor, y: Tensor, margin: float = 2.0) -> Tensor:
    """MSNEA's contrastive alignment on in-batch similarities ``S = x y^T`` (row i of x aligned to row i of y):
    ``mean((1 - I) S^2 + I relu(margin - S)^2)``.

    Computed without the ``[B, B]`` matrix: ``sum S^2 = ||S||_F^2 = tr((x^T x)(y^T y))`` (``[d, d]`` products,
    ``O(B d^2)`` instead of ``O(B^2 d)``), minus the diagonal's ``S_ii^2``, plus its hinge terms.
    """
    diag = (x * y).sum(dim=1)
    frob = ((x.t() @ x) * (y.t() @ y)).sum()
    n = x.size(0)
    return (frob - diag.square().sum() + F.relu(margin - diag).square().sum()) / (n * n)


def transe_margin(h: Tensor, r: Tensor, t: Tensor, h_neg: Tensor, t_neg: Tensor, margin: float) -> Tensor:
    """``sum relu(margin + |h + r - t|^2 - |h' + r - t'|^2)`` (MSNEA sums over the triple batch)."""
    pos = (h + r - t).square().sum(-1)
    neg = (h_neg + r - t_neg).square().sum(-1)
    return F.relu(margin + pos - neg).sum()


@register
class MSNEA(AlignmentModel):
    """TransE + visual TransE, visually guided attribute attention, Siamese alignment per modality and joint."""

    name: ClassVar[str] = "msnea"
    #: 1: the authors' attention padding, missing-image handling, Xavier-normal init and negatives from the
    #: triple's (relation's) KG became the defaults
    #: (side-by-side run with their main.py, docs/fidelity.md section 6); runs of revision 0 keep their ids.
    #: 2: their triple batches (an epoch-long pass over per-KG lists in which KG1's also holds KG2's triples,
    #: corruptions from entities in triples, known triples redrawn), after a one-step check that our loss and
    #: gradients equal theirs from the same weights (benchmarks/fidelity/msnea_step.py)
    REVISION: ClassVar[int] = 2
    # Authors' config.json: Adam lr 1e-3 (no weight decay), batch 5000, max 200 epochs.
    train_defaults: ClassVar[dict] = {"lr": 1e-3, "weight_decay": 0.0, "batch_size": 5000, "epochs": 200}
    #: cpu profile: an epoch is 145 steps of ~1 s on FBDB15K 20 % (one core) -> 2 epochs (benchmarks/bench_epoch.py).
    profile_defaults: ClassVar[dict] = {"cpu": {"train": {"epochs": 2, "eval_every": 1}}}

    @dataclass
    class Config(ModelConfig):
        dim: int = 100                  # every embedding (entity, relation, visual, attribute)
        margin: float = 1.0             # TransE margin
        align_margin: float = 2.0       # ContrastiveLoss margin
        triple_batch_size: int = 5000   # triples (each with one corruption) per optimisation step
        # numeric attribute values (the authors always read them): None = when the data has them
        # (extra/attr_values_*), True = required, False = names only
        attribute_values: bool | None = None
        triple_swap: bool = True        # the authors' supervised triple swap across seed pairs (prepare_training)
        share_seed_attributes: bool = True  # each seed pair gets the union of both attribute sets (theirs)
        # "authors": model.py:AttrEncoder's softmax(logits * mask): every entity has max_num slots, the ones it
        # lacks are pad keys fc2([name(0); sigmoid(0)]) with logit 0 (an entity without attributes gets the pad
        # key); "own": a softmax over the entity's own attributes, a zero row without any
        attention_padding: str = "authors"
        # "authors": an entity without an image reads its image row like any other (a zero row under missing
        # image policy "mask" -> normalize(fc(0)) = the projection's bias direction, as their zero ResNet vector):
        # it guides the attention, enters the joint, and its triples stay in the visual TransE; "fallback": its
        # relational embedding guides, its visual part is zero (policy "mask"), its triples leave the visual TransE
        missing_visual: str = "authors"
        # "authors": xavier_normal_ on the entity table and on the image, visual-head and attribute-name weights,
        # as their model.py (biases at nn.Linear's default); "default": Xavier-uniform entity table, nn.Linear's
        # own init elsewhere (the earlier behaviour)
        init: str = "authors"
        # the KG a corrupted entity is drawn from. "relation" (theirs: a triple sits in the list of the KG it came
        # from, so a swapped triple (e2, r, t) of KG1's relation r is corrupted with KG1 entities); "head": the
        # head entity's KG (the earlier behaviour: a swapped triple's head is the other KG's)
        negative_kg: str = "relation"
        # width of the attribute-name encoder's input (zero-padded; 0 = the pair's attribute columns as loaded).
        # Their name encoder is fc1 = Linear(768, d) over 768-d BERT rows, whose Xavier-normal / default-bias scale
        # follows that width; 768 gives ours the same init scale over the one-hot name columns
        name_width: int = 0
        # which triples a step's TransE reads. "pass" (theirs, utils.py:generate_relation_triple_batch): an epoch
        # is one pass over each KG's shuffled triple list, every step a chunk of both lists in proportion to their
        # sizes; "replacement": triple_batch_size triples drawn uniformly with replacement each step (the earlier
        # behaviour)
        triple_sampling: str = "pass"
        # their generate_neg_triples_fast: a corruption that is itself a known triple is drawn again (a fresh coin
        # and entity), up to 10 tries, the 10th kept whatever it is; False: never checked (the earlier behaviour;
        # about 1.3 % of the negatives are then true triples on FBDB15K)
        negative_filter: bool = True
        # the triple lists of a pass. "authors": KG1's list also holds KG2's own (unswapped) triples, as their
        # kgs.py leaves it (`self.relation_triples = self.id_relation_triples1.extend(self.id_relation_triples2)`
        # extends KG1's list in place before the per-KG lists are built): every KG2 triple is trained twice an
        # epoch, once in KG1's list with KG1 entities as corruptions, and the epoch has that many more steps;
        # "disjoint": each triple once, in its own KG's list
        triple_lists: str = "authors"
        # the entities a corruption is drawn from: "in_triples" (theirs: kgs.py numbers only entities that occur in
        # a relation triple) or "all" (every entity of the KG, the earlier behaviour)
        negative_entities: str = "in_triples"

        def __post_init__(self):
            for key, allowed in (("attention_padding", ("authors", "own")), ("missing_visual", ("authors", "fallback")),
                                 ("init", ("authors", "default")), ("negative_kg", ("relation", "head")),
                                 ("triple_sampling", ("pass", "replacement")),
                                 ("triple_lists", ("authors", "disjoint")),
                                 ("negative_entities", ("in_triples", "all"))):
                if getattr(self, key) not in allowed:
                    raise ValueError(f"MSNEA config {key}={getattr(self, key)!r}: choose one of {', '.join(allowed)}")

    def __init__(self, pair: MMKGPair, config: "MSNEA.Config"):
        super().__init__(pair, config)
        d = config.dim
        self.encoder = MultiModalEncoder(pair, ("graph", "image", "attribute"), graph_kind="none", graph_dim=d,
                                         feature_dims=d, entity_init="xavier", attribute_width=config.name_width)
        self.has_image = "image" in self.encoder.modalities
        self.relations = nn.Embedding(max(pair.n_rel, 1), d)
        nn.init.xavier_normal_(self.relations.weight)
        self.visual_head = nn.Linear(pair.img_features.size(1), d) if self.has_image else None  # MSNEA's fc3
        use_values = config.attribute_values
        if use_values is None:
            use_values = getattr(pair, "att_values", None) is not None
        values = _attribute_values(pair) if use_values else None
        self.uses_values = values is not None
        self.attr_fc = nn.Linear(2 * d if values is not None else d, d)  # MSNEA's fc2 over [name; value]
        nn.init.xavier_normal_(self.attr_fc.weight)
        if values is not None:
            self.register_buffer("att_values", torch.sigmoid(values.float()), persistent=False)
        else:
            self.att_values = None
        n_att = pair.att_features.size(1)   # the name columns; the encoder's input may be zero-padded wider
        self.n_att = n_att
        self.register_buffer("att_onehot", torch.eye(n_att, self.encoder.feature("attribute").size(1)),
                             persistent=False)
        self._padded: tuple | None = None        # the padded attention's constant tables (_padded_rows), lazily
        self._padded_at: tuple | None = None     # (index, its rows of those tables): the last index asked for
        self.register_buffer("triples", pair.triples.long(), persistent=False)
        dev = pair.triples.device
        kg_of = torch.zeros(pair.n_ent, dtype=torch.long, device=dev)
        kg_of[pair.kg2] = 1
        self.register_buffer("kg_of", kg_of, persistent=False)
        pool = [pair.kg1.long(), pair.kg2.long()]
        if config.negative_entities == "in_triples" and len(pair.triples):
            seen = torch.zeros(pair.n_ent, dtype=torch.bool, device=dev)
            seen[pair.triples[:, 0].long()] = True
            seen[pair.triples[:, 2].long()] = True
            pool = [p[seen[p]] if bool(seen[p].any()) else p for p in pool]
        self.register_buffer("kg1", pool[0], persistent=False)
        self.register_buffer("kg2", pool[1], persistent=False)
        # the (unswapped) triples of KG2, which their kgs.py also puts into KG1's list (triple_lists="authors")
        own = pair.triples[kg_of[pair.triples[:, 0].long()] == 1].long()
        self.register_buffer("kg2_own", own.unique(dim=0) if len(own) else own, persistent=False)
        # a relation's KG: its triples' heads' KG
        rel_kg = torch.zeros(max(pair.n_rel, 1), dtype=torch.long, device=dev)
        if len(pair.triples):
            rel_kg[pair.triples[:, 1].long()] = kg_of[pair.triples[:, 0].long()]
        self.register_buffer("rel_kg", rel_kg, persistent=False)
        if config.init == "authors":   # their model.py: xavier_normal_ on every weight it initialises
            nn.init.xavier_normal_(self.encoder.entity.weight)
            for lin in (self.encoder.features["image"].net if self.has_image else None, self.visual_head,
                        self.encoder.features["attribute"].net):
                if isinstance(lin, nn.Linear):
                    nn.init.xavier_normal_(lin.weight)
        self.zero_missing_visual = pair.provenance.get("missing_image_policy", "mask") == "mask"
        self._protocol = encoder_protocol(pair, self.encoder, attribute_values=self.uses_values)
        self._protocol.update({"triple_swap": config.triple_swap, "seed_attribute_union": config.share_seed_attributes,
                               "attention_padding": config.attention_padding,
                               "missing_visual": config.missing_visual, "init": config.init,
                               "negative_kg": config.negative_kg, "triple_sampling": config.triple_sampling,
                               "negative_filter": config.negative_filter, "triple_lists": config.triple_lists,
                               "negative_entities": config.negative_entities})
        self._pass: TriplePass | None = None    # built lazily from the (possibly swapped) triples
        self._triple_keys: Tensor | None = None  # the sorted keys of the known triples (negative_filter), lazily

    def prepare_training(self, train_links: Tensor) -> None:
        """The authors' seed-dependent data (kgs.py): every triple of a seed entity copied with its counterpart
        substituted (triples kept as a set, as theirs), and each seed pair given the union of both attribute sets
        (names and values). Deterministic in the links; the validation and test links are never used."""
        links = train_links.long().to(self.triples.device)
        if self.config.triple_swap and len(links):
            self.triples = swapped_triples(self.triples, links, self.kg_of.numel())
            self._pass = None
        self._triple_keys = None
        if self.config.share_seed_attributes and len(links):
            x = self.encoder.feature("attribute").clone()    # never write into the pair's own tensor
            self.encoder.register_buffer("x_attribute", x, persistent=False)
            self._padded = self._padded_at = None
            a, b = links[:, 0], links[:, 1]
            xa, xb = x[a, :self.n_att].clone(), x[b, :self.n_att].clone()
            union = torch.maximum(xa, xb)
            x[a, :self.n_att], x[b, :self.n_att] = union, union
            if self.att_values is not None:   # a value the entity lacks comes from its counterpart
                v = self.att_values
                va = torch.where(xa > 0, v[a], v[b])
                vb = torch.where(xb > 0, v[b], v[a])
                v[a], v[b] = va, vb

    # ------------------------------------------------------------------------------------------------
    def attribute_attention(self, guide: Tensor, index: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(attribute embedding ``[N, d]``, attention ``[N, A]``) with each entity's query ``guide[n]``; with
        ``index``, the rows of those entities only (``guide`` is then ``[K, d]``).

        ``attention_padding="own"``: a softmax over the entity's own attributes (rows of entities without
        attributes are zero). ``"authors"``: their ``softmax(logits * mask)`` over ``max_num`` slots (``max_num``
        = the most attributes any entity has): the ``max_num - n`` slots an entity lacks hold the pad key
        ``fc2([name(0); sigmoid(0)])`` (``name(0)``: the name encoder of an all-zero row, their ``fc1`` of the
        zero BERT row) with logit 0 (not ``<guide, pad key>``: their mask multiplies the logit), computed here as one extra column with logit ``log(max_num - n)``; the
        returned attention has ``A + 1`` columns, the last the pad slots' total weight. The softmax runs over each
        entity's ``max_num + 1`` slots (its own attributes, the pad column), gathered from the dense logits, not
        over all ``A + 1`` columns: the same finite logits, so the same weights (up to the order of a row's sum),
        without a dozen ``[N, A + 1]`` elementwise passes a step (``A`` = 341 on FBDB15K, ``max_num`` = 21).
        """
        values = self.att_values
        names = self.encoder.encode("attribute", self.att_onehot)              # [A, d] name embeddings
        d = names.size(1)
        w = self.attr_fc.weight
        keys = names @ w[:, :d].t() + self.attr_fc.bias                         # [A, d]: fc2([name; .])
        u = w[:, d:].sum(dim=1) if values is not None else None                 # fc2 on a repeated scalar
        if self.config.attention_padding == "own":
            x = self.encoder.feature("attribute")[:, :self.n_att]
            if index is not None:
                x = x[index]
                values = values[index] if values is not None else None
            logits = guide @ keys.t()                                            # [N, A]
            if values is not None:
                logits = logits + values * (guide @ u).unsqueeze(1)
            has = x > 0
            some = has.any(dim=1, keepdim=True)
            logits = logits.masked_fill(~has & some, float("-inf"))              # softmax over own attributes
            alpha = torch.softmax(logits, dim=1) * some                          # no attribute: zero row
            out = alpha @ keys
            if values is not None:
                out = out + (alpha * values).sum(dim=1, keepdim=True) * u
            return out, alpha
        cols, keep, fill, values = self._padded_rows(index)                    # [N, S] each, S = max_num + 1
        pad_name = self.encoder.encode("attribute", self.att_onehot.new_zeros(1, self.att_onehot.size(1)))
        keys = torch.cat([keys, pad_name @ w[:, :d].t() + self.attr_fc.bias])   # [A + 1, d]: the pad key last
        # a pad slot's logit is 0 (their logits * mask), its key the pad key: n_pad slots = one column, log(n_pad);
        # a slot beyond it: -inf. Both come from ``fill`` where ``keep`` (the entity's own attributes) is False.
        logits = (guide @ keys.t()).gather(1, cols)                              # [N, S]: the slots' columns
        if values is not None:   # the pad slot's value is sigmoid(0) = 0.5 (its logit is replaced below)
            logits = logits + values * (guide @ u).unsqueeze(1)
        slot = torch.softmax(torch.where(keep, logits, fill), dim=1)             # [N, S]
        # the weights by column; the slots beyond the pad slot point at the pad column with weight exactly 0
        alpha = slot.new_zeros(slot.size(0), keys.size(0)).scatter_add(1, cols, slot)   # [N, A + 1]
        out = alpha @ keys
        if values is not None:
            out = out + (slot * values).sum(dim=1, keepdim=True) * u
        return out, alpha

    def _padded_rows(self, index: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """The constant parts of the ``"authors"`` padded attention, ``[N, S]`` with ``S = max_num + 1`` slots per
        entity (rows ``index``): each slot's column (the entity's own attribute columns in ascending order, then
        the pad column ``A``, which also fills the slots beyond it), whether the slot's logit is computed (an own
        attribute), the logit otherwise (the pad slot ``log(max_num - n)``, ``-inf`` when the entity fills every
        slot; ``-inf`` beyond it), and the slots' attribute values (0.5 for the pad slot and beyond). Built once
        from the attribute sets (again after ``prepare_training`` changes them); the rows of the last ``index``
        are kept, since a training step asks for the same entities every time."""
        full = self.encoder.feature("attribute")[:, :self.n_att]
        if self._padded is None or self._padded[0].device != full.device:
            has = full > 0
            n_att = has.size(1)
            n_own = has.sum(dim=1, keepdim=True)
            max_num = int(n_own.max()) if n_own.numel() else 0
            slots = torch.arange(max_num + 1, device=full.device).unsqueeze(0)          # [1, S]
            own_first = torch.argsort((~has).to(torch.int8), dim=1, stable=True)[:, :max_num]
            own_first = torch.cat([own_first, own_first.new_full((own_first.size(0), 1), n_att)], dim=1)
            keep = slots < n_own                                                          # [N, S]
            cols = torch.where(keep, own_first, torch.full_like(own_first, n_att))
            n_pad = (max_num - n_own).to(full.dtype)     # max_num (their padding width) - the entity's own
            pad_logit = torch.where(n_pad > 0, n_pad.clamp(min=1).log(), torch.full_like(n_pad, float("-inf")))
            fill = torch.where(slots == n_own, pad_logit, torch.full_like(pad_logit, float("-inf")))
            values = None
            if self.att_values is not None:
                values = torch.full(cols.shape, 0.5, dtype=self.att_values.dtype, device=cols.device)
                if n_att:     # no attribute column at all: every slot is the pad slot
                    values = torch.where(keep, self.att_values.gather(1, cols.clamp(max=n_att - 1)), values)
            self._padded = (cols, keep, fill, values)
            self._padded_at = None
        if index is None:
            return self._padded
        if self._padded_at is None or not (self._padded_at[0].shape == index.shape
                                           and torch.equal(self._padded_at[0], index)):
            self._padded_at = (index.clone(), tuple(None if x is None else x[index] for x in self._padded))
        return self._padded_at[1]

    def forward(self, index: Tensor | None = None, graph: Tensor | None = None) -> Embeddings:
        """All entities, or (``index``) the rows of those entities only: the training step encodes the image and
        attribute views of the batch's entities alone (their losses read no other row); TransE reads the rows of
        its triples' entities, which :meth:`batch_loss` takes from :meth:`relational_rows` directly. ``graph``:
        the rows' normalised relational embedding, already read (:meth:`batch_loss`)."""
        if graph is None:
            embs = self.encoder(index, only=("graph", "image"))    # the attribute view comes from the attention
            rel = F.normalize(embs["graph"], dim=-1)
        else:
            embs = self.encoder(index, only=("image",))
            rel = graph
        out = {"graph": rel}
        guide = rel
        if self.has_image:
            vis = F.normalize(embs["image"], dim=-1)
            if self.config.missing_visual == "authors":
                guide = vis
                out["image"] = vis
            else:
                real = (self.encoder.img_mask if index is None else self.encoder.img_mask[index]).unsqueeze(1)
                guide = torch.where(real, vis, rel)
                out["image"] = vis * real if self.zero_missing_visual else vis
        att, alpha = self.attribute_attention(guide, index)
        out["attribute"] = att
        joint = F.normalize(torch.cat(list(out.values()), dim=1), dim=-1)
        return Embeddings(joint=joint, modalities=out, extras={"attribute_attention": alpha})

    # ------------------------------------------------------------------------------------------------
    def _corrupt(self, triples: Tensor, kg: Tensor | None = None, max_try: int = 10) -> tuple[Tensor, Tensor]:
        """One corrupted (head, tail) per triple: head or tail (fair coin) replaced by a uniform entity of ``kg``
        (per triple: the list it was drawn from), by default the triple's KG (``negative_kg``: its relation's, as
        theirs, or its head's). ``negative_filter``: the ones that are known triples are drawn again, up to
        ``max_try`` draws in all (their ``generate_neg_triples_fast``)."""
        h, r, t = triples[:, 0], triples[:, 1], triples[:, 2]
        if kg is None:
            kg = self.rel_kg[r] if self.config.negative_kg == "relation" else self.kg_of[h]
        h_neg, t_neg = self._draw_corruption(h, t, kg)
        if self.config.negative_filter:
            for _ in range(max_try - 1):
                redo = self._known(h_neg, r, t_neg)
                if not redo.any():
                    break
                h2, t2 = self._draw_corruption(h[redo], t[redo], kg[redo])
                h_neg[redo], t_neg[redo] = h2, t2     # both fresh tensors of torch.where: never h, t themselves
        return h_neg, t_neg

    def _draw_corruption(self, h: Tensor, t: Tensor, kg: Tensor) -> tuple[Tensor, Tensor]:
        n1, n2 = self.kg1.numel(), self.kg2.numel()
        draw = (torch.rand(h.shape, device=h.device) * torch.where(kg == 0, n1, n2)).long()
        repl = torch.where(kg == 0, self.kg1[draw.clamp(max=n1 - 1)], self.kg2[draw.clamp(max=n2 - 1)])
        head = torch.rand(h.shape, device=h.device) < 0.5
        return torch.where(head, repl, h), torch.where(head, t, repl)

    def _triple_key(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        return (h * self.rel_kg.numel() + r) * self.kg_of.numel() + t

    def _known(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        """Whether each ``(h, r, t)`` is one of the model's (swapped) triples: a binary search in their keys."""
        if self._triple_keys is None:
            tri = self.triples
            self._triple_keys = torch.unique(self._triple_key(tri[:, 0], tri[:, 1], tri[:, 2]))
        keys = self._triple_keys
        q = self._triple_key(h, r, t)
        pos = torch.searchsorted(keys, q).clamp(max=max(keys.numel() - 1, 0))
        return keys[pos] == q if keys.numel() else torch.zeros_like(q, dtype=torch.bool)

    def steps_per_epoch(self, n_links: int, batch_size: int) -> int:
        """The authors' epoch: ceil(triples in the lists / triple_batch_size) steps (145 on FBDB15K 20 %: KG2's
        triples counted twice under ``triple_lists="authors"``), each with the alignment loss on a batch of links
        (all of them when the link batch is at least the train links, as theirs)."""
        return max(1, -(-self._list_size() // self.config.triple_batch_size))

    def _list_size(self) -> int:
        n = int(self.triples.size(0))
        if self.config.triple_sampling == "pass" and self.config.triple_lists == "authors":
            n += int(self.kg2_own.size(0))
        return n

    def _lists(self) -> tuple[Tensor, Tensor]:
        """(triple index, the KG list it sits in) of every entry of the two lists."""
        idx = torch.arange(self.triples.size(0), device=self.triples.device)
        kg = self.rel_kg[self.triples[:, 1]]
        if self.config.triple_lists == "authors" and len(self.kg2_own):
            keys = self._triple_key(self.triples[:, 0], self.triples[:, 1], self.triples[:, 2])
            order = torch.argsort(keys)
            own = self._triple_key(self.kg2_own[:, 0], self.kg2_own[:, 1], self.kg2_own[:, 2])
            extra = order[torch.searchsorted(keys[order], own)]
            idx = torch.cat([idx, extra])
            kg = torch.cat([kg, torch.zeros_like(extra)])
        return idx, kg

    def relation_loss(self, rel_rows: Callable[[Tensor], Tensor]) -> Tensor:
        """TransE on the step's ``triple_batch_size`` triples (``triple_sampling``: the next chunk of the pass, or drawn
        at random), plus visual TransE where all four entities have images.

        ``rel_rows(ids)``: the normalised relational embedding of entities ``ids`` ``[K, d]``. The batch's distinct
        heads, tails and corruptions are read once (about 9,800 of 27,793 rows on FBDB15K), so neither the
        normalisation nor the table's gradient is computed per role over the whole table (the same values)."""
        draw = self._draw_triples()
        if draw is None:
            return self.relations.weight.new_zeros(())
        uniq, inv = torch.unique(torch.stack(draw[1:]), return_inverse=True)
        return self._relation_terms(draw, rel_rows(uniq)[inv].unbind(0))

    def _draw_triples(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor] | None:
        """The step's triples and their corruptions, ``(r, h, t, h_neg, t_neg)`` (``None``: no triples)."""
        n_tri = self.triples.size(0)
        if n_tri == 0:
            return None
        if self.config.triple_sampling == "pass":
            if self._pass is None:
                entries, lists = self._lists()
                self._pass = TriplePass(lists, self.config.triple_batch_size, entries)
            idx, kg = self._pass.next()
        else:
            idx = torch.randint(n_tri, (min(self.config.triple_batch_size, n_tri),), device=self.triples.device)
            kg = None
        tri = self.triples[idx]
        h_neg, t_neg = self._corrupt(tri, kg if self.config.negative_kg == "relation" else None)
        return tri[:, 1], tri[:, 0], tri[:, 2], h_neg, t_neg

    def _relation_terms(self, draw: tuple[Tensor, ...], rows: tuple[Tensor, ...]) -> Tensor:
        """TransE (and visual TransE) of ``draw`` = ``(r, h, t, h_neg, t_neg)`` given the four entities'
        normalised relational rows ``(eh, et, eh_neg, et_neg)``, each ``[B, d]``."""
        r, h, t, h_neg, t_neg = draw
        rvec = F.normalize(self.relations(r), dim=-1)
        m = self.config.margin
        eh, et, eh_neg, et_neg = rows
        loss = transe_margin(eh, rvec, et, eh_neg, et_neg, m)
        if self.has_image:
            real = self.encoder.img_mask
            keep = real[h] & real[t] & real[h_neg] & real[t_neg]
            if self.config.missing_visual == "authors":
                keep = torch.ones_like(keep)
            if keep.any():
                ents = torch.stack([h, t, h_neg, t_neg])[:, keep]
                # each distinct entity's image projected once (about half the 4 x batch rows; the same values)
                uniq, inv = torch.unique(ents, return_inverse=True)
                iw = F.normalize(self.visual_head(self.encoder.feature("image")[uniq]), dim=-1)[inv]
                loss = loss + transe_margin(iw[0], rvec[keep], iw[1], iw[2], iw[3], m)
        return loss

    def relational(self) -> Tensor:
        """The L2-normalised relational (TransE) embedding of every entity ``[N, d]``."""
        return F.normalize(self.encoder.structure(), dim=-1)

    def relational_rows(self, ids: Tensor) -> Tensor:
        """The rows ``ids`` of :meth:`relational` ``[K, d]`` without the whole table: MSNEA's encoder has no graph
        layer (``graph_kind="none"``), so each row is its own TransE table row, normalised."""
        return F.normalize(self.encoder.entity.weight[ids], dim=-1)

    def batch_loss(self, links: Tensor) -> tuple[Tensor, dict[str, float]]:
        """One step: the alignment terms on the batch's entities only (renumbered), TransE on its triples' rows.
        The batch's entities and the triples' are read from the entity table in one gather (one dense gradient
        of the table, not two). The triples are drawn before the forward, which draws no random numbers: the
        same loss and gradients as ``loss(self(), links)`` (tests/test_batch_forward.py)."""
        index, local = torch.unique(links, return_inverse=True)
        draw = self._draw_triples()
        if draw is None:
            return self._loss(self(index), local, lambda: self.relations.weight.new_zeros(()))
        k = index.numel()
        uniq, inv = torch.unique(torch.cat([index, torch.stack(draw[1:]).flatten()]), return_inverse=True)
        rows = self.relational_rows(uniq)
        tri_rows = rows[inv[k:]].view(4, -1, rows.size(1)).unbind(0)
        return self._loss(self(index, graph=rows[inv[:k]]), local, lambda: self._relation_terms(draw, tri_rows))

    def loss(self, emb: Embeddings, links: Tensor) -> tuple[Tensor, dict[str, float]]:
        graph = emb.modalities["graph"]
        return self._loss(emb, links, lambda: self.relation_loss(lambda ids: graph[ids]))

    def _loss(self, emb: Embeddings, links: Tensor,
              relation: Callable[[], Tensor]) -> tuple[Tensor, dict[str, float]]:
        a, b = links[:, 0], links[:, 1]
        margin = self.config.align_margin
        terms = {m: siamese_loss(e[a], e[b], margin) for m, e in emb.modalities.items()}
        terms["joint"] = siamese_loss(emb.joint[a], emb.joint[b], margin)
        align = torch.stack(list(terms.values())).sum()
        rel = relation()
        logs = {"loss_relation": float(rel.detach()), "loss_align": float(align.detach())}
        logs.update({f"align_{k}": float(v.detach()) for k, v in terms.items()})
        return rel + align, logs

    def protocol(self) -> dict[str, Any]:
        return dict(self._protocol)

    @classmethod
    def search_space(cls, trial) -> dict[str, Any]:
        return {"margin": trial.suggest_float("margin", 0.5, 3.0),
                "align_margin": trial.suggest_float("align_margin", 1.0, 3.0)}


class TriplePass:
    """The authors' triple batches (``utils.py:generate_relation_triple_batch``): the triples of each KG in a list,
    each list shuffled once per pass; a pass has ``ceil(n / batch)`` steps, step ``s`` takes the ``s``-th chunk of
    ``int(n1 / n * batch)`` triples of KG1's list and of ``batch - that`` of KG2's (a short or empty chunk at the
    end). ``kg[i]`` is the list of entry ``i``, ``entries[i]`` its triple (default ``i``: an entry per triple).
    ``next()`` returns (triple indices, their lists) of the next step; the shuffle draws from torch's global RNG,
    which the trainer's checkpoints restore, and a pass ends with an epoch (``MSNEA.steps_per_epoch`` steps)."""

    def __init__(self, kg: Tensor, batch: int, entries: Tensor | None = None):
        self.entries = entries if entries is not None else torch.arange(kg.numel(), device=kg.device)
        self.kg = kg
        self.groups = [torch.nonzero(kg == k).flatten() for k in (0, 1)]
        n = int(kg.numel())
        self.steps = max(1, -(-n // batch))
        b1 = int(self.groups[0].numel() / max(n, 1) * batch)
        self.sizes = (b1, batch - b1)
        self.step = 0
        self.order: list[Tensor] = []

    def next(self) -> tuple[Tensor, Tensor]:
        if self.step == 0:
            self.order = [g[torch.randperm(g.numel(), device=g.device)] for g in self.groups]
        s = self.step
        pos = torch.cat([o[s * b:(s + 1) * b] for o, b in zip(self.order, self.sizes)])
        self.step = (s + 1) % self.steps
        return self.entries[pos], self.kg[pos]


def swapped_triples(triples: Tensor, links: Tensor, n_ent: int) -> Tensor:
    """``triples`` plus, for every seed link (e1, e2), each triple with e1 as head or tail copied with e1 -> e2,
    and each with e2 copied with e2 -> e1; the result as a set (duplicates dropped, sorted), as the authors'
    ``generate_sup_relation_triples`` + ``add_sup_relation_triples``."""
    other = torch.full((n_ent,), -1, dtype=torch.long, device=triples.device)
    other[links[:, 0]] = links[:, 1]
    other[links[:, 1]] = links[:, 0]
    h, r, t = triples[:, 0], triples[:, 1], triples[:, 2]
    new = [triples]
    sh = other[h] >= 0
    new.append(torch.stack([other[h[sh]], r[sh], t[sh]], dim=1))
    st = other[t] >= 0
    new.append(torch.stack([h[st], r[st], other[t[st]]], dim=1))
    out = torch.cat(new)
    n_rel = int(out[:, 1].max()) + 1 if len(out) else 1
    key = torch.unique((out[:, 0] * n_rel + out[:, 1]) * n_ent + out[:, 2])
    return torch.stack([key // (n_rel * n_ent), (key // n_ent) % n_rel, key % n_ent], dim=1)


def _attribute_values(pair: MMKGPair) -> Tensor:
    """The pair's numeric attribute values ``[N, A]`` (columns as ``att_features``); a clear error without them."""
    values = getattr(pair, "att_values", None)
    if values is None:
        raise ValueError(f"MSNEA attribute_values=True needs numeric attribute values, and pair {pair.name!r} "
                         "carries none (MMKGPair.att_values); use attribute_values=False (protocol B)")
    if tuple(values.shape) != tuple(pair.att_features.shape):
        raise ValueError(f"att_values has shape {tuple(values.shape)}, att_features {tuple(pair.att_features.shape)}")
    return values
