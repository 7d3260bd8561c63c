"""The recipe refuses data configs whose eval-set disclosures would be false."""

from __future__ import annotations

import pytest

from soaes.config.loader import ConfigError, load_config
from soaes.recipe.checks import data_consistency
from soaes.recipe.full import check_data

CPT, SFT = "pipelines/data_cpt_demo.yaml", "pipelines/data_sft_demo.yaml"


@pytest.mark.parametrize("recipe", ["full_demo", "full_repro", "full_tiny"])
def test_shipped_recipes_are_consistent(recipe):
    check_data(load_config(f"pipelines/{recipe}.yaml", []))


def test_recall_law_outside_the_cpt_corpus_is_named():
    cpt = load_config(CPT, ["sources.0.laws=[中华人民共和国会计法]"])
    (msg,) = data_consistency(
        cpt,
        load_config(SFT, ["eval_sets.recall_laws=[中华人民共和国会计法, 中华人民共和国审计法]"]),
    )
    assert "recall_laws not in the CPT corpus" in msg and "审计法" in msg


def test_withheld_laws_must_agree():
    sft = load_config(SFT, [])
    cpt = load_config(CPT, ["withheld_laws=[]"])
    assert any("withheld_laws differ" in p for p in data_consistency(cpt, sft))


def test_null_recall_with_a_cpt_subset_is_refused():
    cpt = load_config(CPT, [])
    sft = load_config(SFT, ["eval_sets.recall_laws=null"])
    assert any("recall_laws is null" in p for p in data_consistency(cpt, sft))


def test_run_full_refuses_before_starting_anything():
    cfg = load_config(
        "pipelines/full_repro.yaml",
        ['data_sft.overrides=["eval_sets.recall_laws=[中华人民共和国证券法]"]'],
    )
    with pytest.raises(ConfigError, match="证券法"):
        check_data(cfg)
