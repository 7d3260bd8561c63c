"""Questions about law articles: phrasing templates (train vs held out) and keyword scenarios.

Two intents, each asked with several phrasings. Training examples use the ``TRAIN_*``
templates (one picked per article, seeded); the eval sets use only the ``HELD_OUT_*``
templates, so an eval question is never phrased as any training question.

- **Article text** (``《X》第N条规定了什么？`` -> the article's text): scored by text overlap.
- **Scenario -> article** (a description of the situation -> ``《X》第N条``): scored by exact
  law and article number. The description is the article's top TF-IDF keywords (jieba),
  never a quotation of it: keywords containing the law's name (full or short), ``本法`` or any
  article/clause number are removed, so the question names neither the law nor the number
  (subject words such as 公司 or 劳动者 stay: identifying the law from them is the task).
  This is a keyword description of what the article governs, not a natural-language case.
"""

from __future__ import annotations

import re
from functools import lru_cache

from soaes.data.dedup import stable_hash64

TRAIN_ARTICLE = {
    "what": "《{law}》{no}规定了什么？",
    "content": "《{law}》{no}的内容是什么？",
    "recite": "请背诵《{law}》{no}。",
    "how": "《{law}》{no}是怎么规定的？",
}
# Held-out phrasings avoid 的/，/。: in the jieba ROUGE convention punctuation and 的 are
# tokens, and they made up most of the question-as-answer (echo) score.
HELD_OUT_ARTICLE = {
    "write_out": "《{law}》{no}原文是什么？",
    "quote": "能完整引用《{law}》{no}条文吗？",
    "tell_me": "《{law}》{no}具体条文怎么写？",
}
TRAIN_SCENARIO = {
    "points": "某一情形涉及以下要点：{points}。应当依据哪部法律的哪一条处理？",
    "which": "下列要点出自一项法律条文：{points}。这是哪部法律的第几条？",
}
HELD_OUT_SCENARIO = {
    "keywords": "关键词：{points}。请指出对应的法律名称和条号。",
    "case": "一个问题涉及{points}等方面，应适用哪部法律的哪一条？",
}
MIN_POINTS = 3
_NUMBERED = re.compile(r"第[一二三四五六七八九十百千零〇两\d]+[条款项章节编目]")
_FILLER = {"本法", "本条", "规定", "下列", "前款", "有关", "应当", "依照", "依法"}


def pick(templates: dict[str, str], key: str, seed: int) -> str:
    """The template name used for ``key`` (e.g. an article id): seeded, stable across runs."""
    names = sorted(templates)
    return names[stable_hash64(f"{seed}\x00{key}") % len(names)]


def short_law_name(law: str) -> str:
    """``中华人民共和国公司法`` -> ``公司法`` (the name a question would use for short)."""
    return law.removeprefix("中华人民共和国")


def article_question(template: str, law: str, no: str) -> str:
    """An article-text question in one named template (train or held out)."""
    return {**TRAIN_ARTICLE, **HELD_OUT_ARTICLE}[template].format(law=law, no=no)


def article_id(law: str, no: str) -> str:
    """The answer of a scenario item: ``《X》第N条`` (scored by exact law and number)."""
    return f"《{law}》{no}"


@lru_cache(maxsize=1)
def _extract_tags():
    import jieba
    import jieba.analyse

    jieba.setLogLevel(60)
    return jieba.analyse.extract_tags


def scenario_points(text: str, law: str, k: int = 5) -> list[str]:
    """Up to ``k`` keywords of an article (TF-IDF order) that name neither law nor number."""
    names = (law, short_law_name(law))
    out = []
    for word in _extract_tags()(text, topK=k + 6):
        if (
            word in _FILLER
            or _NUMBERED.search(word)
            or word.isdigit()
            or "中华人民共和国" in word
            or any(n in word for n in names)
        ):
            continue
        out.append(word)
        if len(out) == k:
            break
    return out


def scenario_question(template: str, points: list[str]) -> str:
    """A scenario question in one named template from an article's keywords."""
    return {**TRAIN_SCENARIO, **HELD_OUT_SCENARIO}[template].format(points="、".join(points))


def template_regex(template: str) -> re.Pattern:
    """A template with its fields as wildcards: every question it renders full-matches it."""
    parts = re.split(r"\{(?:law|no|points)\}", template)
    return re.compile(".+".join(re.escape(p) for p in parts), re.S)


def answer_chars_in_question(question: str, answer: str) -> float:
    """Share of the answer's word characters (letters, digits, ideographs) found in the question.

    A leak measure with no tokenizer: 1.0 when the question spells out every character the
    answer uses, low when the answer must come from the model.
    """
    chars = [c for c in answer if c.isalnum()]
    if not chars:
        return 0.0
    present = {c for c in question if c.isalnum()}
    return sum(c in present for c in chars) / len(chars)
