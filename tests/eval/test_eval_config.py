"""The eval pipeline's config: cross-field checks name the offending field."""

from __future__ import annotations

import pytest

from soaes.config.loader import ConfigError, validate_config

BASE = {
    "kind": "eval",
    "name": "t",
    "output_dir": "o",
    "models": [{"name": "a", "path": "tiny/target"}, {"name": "b", "path": "tiny/draft"}],
}


@pytest.mark.parametrize(
    "patch, message",
    [
        (
            {"qa": [{"name": "s", "path": "x.jsonl", "builtin": "laws_articles", "limit": 2}]},
            "qa.0: Value error, set exactly one of path or builtin",
        ),
        ({"qa": [{"name": "s", "builtin": "laws_articles"}]}, "limit is required"),
        (
            {"perplexity": [{"name": "g", "group": "general"}]},
            "set exactly one of source or validation_dir",
        ),
        (
            {"perplexity": [{"name": "g", "group": "general", "source": "wiki"}]},
            "perplexity.0.source",
        ),
        (
            {"models": [{"name": "a", "path": "p"}, {"name": "a", "path": "q"}]},
            "names must be unique",
        ),
        ({"retention": {"baseline": "zz"}}, "retention.baseline 'zz' is not in models"),
        ({"roles": {"cpt_after": "zz"}}, "roles.cpt_after: 'zz' is not one of"),
        (
            {
                "roles": {"progressive": "a"},
                "models": [{"name": "a", "path": "p", "tasks": ["mmlu"]}],
            },
            "roles.progressive: model 'a'",
        ),
        ({"models": [{"name": "a b", "path": "p"}]}, "models.0.name"),
    ],
)
def test_bad_configs_name_the_field(patch, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        validate_config({**BASE, **patch})


def test_defaults():
    cfg = validate_config(BASE)
    assert cfg.models[0].tasks == ["qa", "mmlu", "perplexity"]
    assert cfg.mmlu.scoring == "option" and cfg.reuse_results and cfg.task_num_cpus == 2
