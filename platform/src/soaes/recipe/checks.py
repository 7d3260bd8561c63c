"""Checks across the recipe's stage configs that no single config can make on its own."""

from __future__ import annotations

from soaes.config.data import DataCPTConfig, DataSFTConfig


def _cpt_laws(cpt: DataCPTConfig) -> set[str] | None:
    """The laws the CPT corpus reads (None: every law in force)."""
    laws = [s.laws for s in cpt.sources if s.format == "builtin" and s.name == "laws"]
    if not laws:
        return set()
    if any(x is None for x in laws):
        return None
    return {law for group in laws for law in group}


def data_consistency(cpt: DataCPTConfig, sft: DataSFTConfig) -> list[str]:
    """What makes the eval sets' disclosures false, one message per problem (empty: none).

    ``law_withheld`` is promised to be in no training corpus, ``law_recall`` and
    ``scenario_article`` to be in the CPT text: the two data configs must agree on the
    withheld laws, and every recall law must be read by CPT and not withheld.
    """
    problems = []
    if set(cpt.withheld_laws) != set(sft.withheld_laws):
        only = sorted(set(cpt.withheld_laws) ^ set(sft.withheld_laws))
        problems.append(f"withheld_laws differ between data_cpt and data_sft: {only}")
    recall = set(sft.eval_sets.recall_laws or [])
    read = _cpt_laws(cpt)
    if sft.eval_sets.recall_laws is None and read is not None:
        problems.append(
            "data_sft eval_sets.recall_laws is null (every law in force) but CPT reads only "
            f"{len(read)} laws: name them in recall_laws"
        )
    if read is not None and recall - read:
        missing = sorted(recall - read)
        problems.append(
            f"data_sft eval_sets.recall_laws not in the CPT corpus (data_cpt sources.laws): "
            f"{missing}"
        )
    if recall & set(cpt.withheld_laws):
        both = sorted(recall & set(cpt.withheld_laws))
        problems.append(f"data_sft eval_sets.recall_laws also withheld from CPT: {both}")
    return problems
