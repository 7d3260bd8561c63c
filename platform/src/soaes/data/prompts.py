"""Domain prompts shared by on-policy data generation and acceptance measurement.

Sources: questions about real law articles (laws.db: the paper's domain), real insurance
questions (insuranceqa, zh or en), general English prompts (the chatterbot corpus's
conversation openers), or a user jsonl. The train/eval split is deterministic,
so the prompts that acceptance is measured on are never distilled on.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path
from typing import Any

from soaes.config.distill import PromptsConfig

_LAW_TEMPLATES = (
    "《{law}》{no}规定了什么？",
    "请用简单的话解释下面的法律条文。\n{law}{no}：{text}",
)


def _laws_questions() -> list[str]:
    """Domain questions about real law articles, in a fixed order."""
    from soaes.assets.texts import law_articles

    rows = [(law, no, text) for _, law, no, text in law_articles()]
    return [
        _LAW_TEMPLATES[i % 2].format(law=law, no=no or "", text=(text or "")[:200])
        for i, (law, no, text) in enumerate(rows)
    ]


def _insuranceqa_questions(lang: str, split: str) -> list[str]:
    """Insurance questions; the eval split reads the corpus's own test file."""
    from soaes.assets.fetch import require

    path = require("insuranceqa") / ("test.json.gz" if split == "eval" else "train.json.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        records = json.load(f)
    return [
        " ".join(r[lang].split()) for _, r in sorted(records.items(), key=lambda kv: int(kv[0]))
    ]


def _general_questions() -> list[str]:
    """General English prompts: the opening line of each chatterbot-corpus conversation
    (greetings, food, health, computers, …), deduplicated, in file order."""
    import yaml

    from soaes.assets.fetch import require

    seen: dict[str, None] = {}
    for path in sorted((require("chatterbot") / "english").glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for conv in doc.get("conversations") or []:
            if conv and isinstance(conv[0], str) and conv[0].strip():
                seen.setdefault(" ".join(conv[0].split()), None)
    return list(seen)


def _jsonl_prompts(path: str) -> list[str | list[dict]]:
    items: list[str | list[dict]] = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        rec = json.loads(line)
        if "prompt" in rec:
            items.append(str(rec["prompt"]))
        elif "messages" in rec:
            items.append(list(rec["messages"]))
        else:
            raise ValueError(f"{path}:{n}: need a 'prompt' or 'messages' field")
    return items


def load_prompts(cfg: PromptsConfig, tokenizer: Any) -> list[str]:
    """The configured prompts as strings ready for the model.

    The split is deterministic (every 10th item is 'eval'), so distillation prompts never
    include the prompts acceptance is measured on.

    Args:
        cfg: which prompts.
        tokenizer: the target's tokenizer (for its chat template).
    """
    if cfg.source.startswith("insuranceqa_"):
        items = _insuranceqa_questions(cfg.source.removeprefix("insuranceqa_"), cfg.split)
    else:
        read = {"laws_qa": _laws_questions, "general_en": _general_questions}.get(cfg.source)
        items = read() if read else _jsonl_prompts(cfg.path or "")
        items = [x for i, x in enumerate(items) if (i % 10 == 0) == (cfg.split == "eval")]
    random.Random(cfg.seed).shuffle(items)
    out = []
    for item in items[: cfg.num_prompts]:
        messages = item if isinstance(item, list) else [{"role": "user", "content": item}]
        if cfg.chat_template:
            out.append(
                tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            )
        else:
            out.append(item if isinstance(item, str) else messages[-1]["content"])
    if not out:
        raise ValueError(f"prompts ({cfg.source}, split {cfg.split}): no prompts found")
    return out
