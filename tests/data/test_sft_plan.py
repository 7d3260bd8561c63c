"""SFT planning: splits by source document, no test leakage, caps, weights (pure, no Ray)."""

from __future__ import annotations

import numpy as np

from soaes.data.dedup import stable_hash64
from soaes.data.sft_plan import plan_sft, weight_copies


def _meta(n_groups=400):
    rows = []
    for g in range(n_groups):
        for variant in range(2):  # two questions per source document share its answer
            q, a = f"q{g}-{variant}", f"answer {g}"
            rows.append(
                {
                    "uid": stable_hash64(f"{g}:{variant}"),
                    "stage": "s2",
                    "source": "laws_qa",
                    "group_hash": stable_hash64(f"law:{g}"),
                    "status": "ok",
                    "reason": "",
                    "content_hash": stable_hash64(q + a),
                    "q_hash": stable_hash64(q),
                    "a_hash": stable_hash64(a),
                    "turns": [stable_hash64(q), stable_hash64(a)],
                }
            )
    # a chat example whose reply repeats a domain answer verbatim
    rows.append(
        {
            "uid": 1,
            "stage": "s1",
            "source": "chat",
            "group_hash": 1,
            "status": "ok",
            "reason": "",
            "content_hash": 1,
            "q_hash": 11,
            "a_hash": stable_hash64("answer 7"),
            "turns": [11, stable_hash64("answer 7")],
        }
    )
    meta = {k: np.array([r[k] for r in rows]) for k in rows[0] if k != "turns"}
    meta["status"], meta["reason"] = meta["status"].astype(object), meta["reason"].astype(object)
    meta["turn_hashes"] = [np.array(r["turns"], dtype=np.int64) for r in rows]
    return meta


STAGES = [
    {"name": "s1", "sources": [{"label": "chat", "weight": 1.0, "max_examples": None}]},
    {"name": "s2", "sources": [{"label": "laws_qa", "weight": 1.0, "max_examples": None}]},
]


def test_groups_stay_together_and_test_never_leaks():
    meta = _meta()
    plan = plan_sft(
        meta, STAGES, seed=0, validation_fraction=0.1, test_fraction=0.1, rows_per_shard=100
    )
    by_group: dict = {}
    for g, sp, o in zip(meta["group_hash"], plan.split, plan.outcome, strict=True):
        if o == "out":
            by_group.setdefault(g, set()).add(sp)
    assert all(len(s) == 1 for s in by_group.values())
    train = {h for i in np.flatnonzero(plan.split == "train") for h in meta["turn_hashes"][i]}
    test = np.flatnonzero(plan.split == "test")
    assert test.size > 20
    assert not any(meta["q_hash"][i] in train or meta["a_hash"][i] in train for i in test)
    # "answer 7" is a train reply of stage s1: if its group drew test it was dropped.
    g7 = meta["group_hash"] == stable_hash64("law:7")
    assert set(plan.outcome[g7]) <= {"out", "filtered:test_overlap"}
    if plan.split[g7][0] != "train" and (plan.outcome[g7] != "out").any():
        assert (plan.outcome[g7] == "filtered:test_overlap").all()


def test_exact_duplicates_and_caps_are_counted():
    meta = _meta(50)
    meta["content_hash"][3] = meta["content_hash"][2]
    stages = [
        STAGES[0],
        {"name": "s2", "sources": [{"label": "laws_qa", "weight": 1.0, "max_examples": 40}]},
    ]
    plan = plan_sft(
        meta, stages, seed=0, validation_fraction=0.0, test_fraction=0.0, rows_per_shard=7
    )
    assert (plan.outcome == "exact_dup").sum() == 1
    assert ((plan.outcome == "out") & (meta["stage"] == "s2")).sum() == 40
    assert (plan.outcome == "filtered:over_max_examples").sum() == 100 - 1 - 40
    # shards of 7 rows, ranks 0..n-1 within the stage split
    s2 = plan.entry_out[np.isin(plan.entry_uid, meta["uid"][meta["stage"] == "s2"])]
    assert len({plan.out_names[i] for i in s2}) == 6


def test_weight_copies():
    uid = np.arange(10000)
    assert (weight_copies(uid, 2.0, 0) == 2).all()
    half = weight_copies(uid, 0.5, 0)
    assert set(half.tolist()) == {0, 1} and 0.45 < half.mean() < 0.55


def test_reserved_groups_all_go_to_test():
    meta = _meta()
    reserved = np.array([stable_hash64(f"law:{g}") for g in range(0, 400, 4)], dtype=np.int64)
    plan = plan_sft(
        meta,
        STAGES,
        seed=0,
        validation_fraction=0.1,
        test_fraction=0.1,
        rows_per_shard=100,
        test_groups=reserved,
    )
    mine = np.isin(meta["group_hash"], reserved)
    alive = plan.outcome == "out"
    assert mine.sum() == 200 and (plan.split[mine & alive] == "test").all()
    assert (alive & mine).sum() >= 198  # only a test_overlap drop may remove one
    # the other documents still split by their hash (some train, some validation)
    assert {"train", "validation", "test"} <= set(plan.split[~mine & alive])
