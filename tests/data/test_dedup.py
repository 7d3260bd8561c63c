"""MinHash, LSH banding and union-find (pure, no Ray)."""

from __future__ import annotations

import numpy as np

from soaes.data.dedup import (
    band_keys,
    group_pairs,
    jaccard_estimate,
    minhash,
    pairs_of_partition,
    perm_params,
    resolve_clusters,
    shingle_hashes,
)

A, B = perm_params(128)
TEXT = (
    "第一条 为了规范企业国有资产的管理，维护国家基本经济制度，巩固和发展国有经济，"
    "加强对国有资产的保护，发挥国有经济在国民经济中的主导作用，促进社会主义市场经济发展，制定本法。"
)


def _sig(text):
    return minhash(shingle_hashes(text, 5), A, B)


def test_near_copy_is_similar_and_distinct_text_is_not():
    near = TEXT.replace("巩固和发展", "巩固与发展")
    other = (
        "床前明月光，疑是地上霜。举头望明月，低头思故乡。这是一首流传很广的唐诗，写的是思乡之情。"
    )
    assert jaccard_estimate(_sig(TEXT), _sig(TEXT)) == 1.0
    assert jaccard_estimate(_sig(TEXT), _sig(near)) > 0.75
    assert jaccard_estimate(_sig(TEXT), _sig(other)) < 0.1


def test_band_keys_collide_only_on_equal_bands():
    s1, s2 = _sig(TEXT), _sig(TEXT).copy()
    s2[:4] += 1  # change the first band only
    k1, k2 = band_keys(s1, 32), band_keys(s2, 32)
    assert k1[0] != k2[0] and (k1[1:] == k2[1:]).all()
    assert len(set(band_keys(s1, 32).tolist())) == 32  # band index is part of the key


def test_group_pairs_all_or_star():
    assert group_pairs(np.array([5])).shape == (0, 2)
    assert group_pairs(np.array([3, 1, 2])).tolist() == [[1, 2], [1, 3], [2, 3]]
    star = group_pairs(np.arange(100), max_all_pairs=16)
    assert star.shape == (99, 2) and (star[:, 0] == 0).all()


def test_pairs_of_partition_finds_buckets():
    import pyarrow as pa

    t = pa.table({"part": [0] * 6, "key": [7, 9, 7, 8, 9, 7], "uid": [1, 2, 3, 4, 5, 6]})
    pairs = pairs_of_partition(t)
    got = sorted(zip(pairs.column("a").to_pylist(), pairs.column("b").to_pylist(), strict=True))
    assert got == [(1, 3), (1, 6), (2, 5), (3, 6)]


def test_resolve_clusters_keeps_the_preferred_document():
    pairs = [(1, 2), (2, 3), (10, 11)]
    priority = {1: (1, 1), 2: (0, 2), 3: (1, 3), 10: (0, 10), 11: (0, 11)}
    assert resolve_clusters(pairs, priority) == {1: 2, 3: 2, 11: 10}
