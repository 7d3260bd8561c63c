"""SFT conversation builders over the real corpora of shared/DATA.md, plus user jsonl.

Each builder yields ``Example`` records: an id, the *group key* that train/validation/test
splitting is done by (the source document: a conversation, a law article, an insurance
answer), and ``messages`` (``[{role, content}]``, user first, alternating with the
assistant). A malformed record is yielded with ``reason`` set instead of being dropped.
"""

from __future__ import annotations

import functools
import gzip
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import yaml

from soaes.assets.fetch import require
from soaes.assets.texts import law_articles
from soaes.data import law_questions as lq
from soaes.data.clean import normalize_text

ROLES = ("system", "user", "assistant")


@dataclass
class Example:
    """One conversation (or a quarantined record when ``reason`` is set).

    ``finish``, when set, returns the real messages (``[]``: none can be built); until it is
    called ``messages`` is a unique placeholder, so that costly examples are only built once
    dedup and caps have kept them.
    """

    example_id: str
    group_key: str
    messages: list[dict] = field(default_factory=list)
    reason: str = ""
    detail: str = ""
    finish: Callable[[], list[dict]] | None = None


def alternate(turns: list[str]) -> list[dict]:
    """Turns spoken alternately, user first -> messages; a trailing user turn is dropped."""
    msgs = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": normalize_text(t)}
        for i, t in enumerate(turns)
    ]
    return msgs[: len(msgs) - len(msgs) % 2]


def check_messages(messages) -> tuple[str, str]:
    """``("", "")`` for a well-formed conversation, else ``(reason, detail)``."""
    if not isinstance(messages, list):
        return "bad_messages", "messages must be a list"
    if not messages:
        return "no_assistant_turn", "no complete user/assistant exchange"
    for i, m in enumerate(messages):
        if (
            not isinstance(m, dict)
            or m.get("role") not in ROLES
            or not isinstance(m.get("content"), str)
        ):
            return "bad_messages", f"messages[{i}] needs role in {ROLES} and string content"
        if m["role"] == "system" and i:
            return "bad_messages", f"messages[{i}]: system only as the first message"
        if not m["content"].strip():
            return "empty_turn", f"messages[{i}] has empty content"
    roles = [m["role"] for m in messages if m["role"] != "system"]
    if not roles or roles[0] != "user":
        return "bad_messages", "the first non-system message must be from the user"
    if "assistant" not in roles:
        return "no_assistant_turn", "no assistant message to learn from"
    return "", ""


def _example(example_id: str, group_key: str, messages: list[dict]) -> Example:
    reason, detail = check_messages(messages)
    return Example(example_id, group_key, messages, reason, detail)


def chatterbot(lang: str) -> Iterator[Example]:
    """chatterbot-corpus dialogues (``chinese`` or ``english`` folder), one per conversation."""
    folder = require("chatterbot") / {"zh": "chinese", "en": "english"}[lang]
    for path in sorted(folder.glob("*.yml")):
        convs = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("conversations") or []
        for i, turns in enumerate(convs):
            eid = f"chatterbot_{lang}:{path.stem}:{i}"
            if not isinstance(turns, list) or not all(
                isinstance(t, str | int | float) for t in turns
            ):
                yield Example(eid, eid, reason="bad_messages", detail="turns must be strings")
                continue
            yield _example(eid, eid, alternate([str(t) for t in turns]))


def chitchat() -> Iterator[Example]:
    """chitchat-dataset conversations: speakers alternate; the first speaker is the user."""
    data = json.loads((require("chitchat") / "dataset.json").read_text(encoding="utf-8"))
    for conv_id in sorted(data):
        turns, speakers = [], []
        for run in data[conv_id].get("messages") or []:
            for msg in run:
                sender, text = msg.get("sender"), (msg.get("text") or "").strip()
                if not text:
                    continue
                if speakers and speakers[-1] == sender:
                    turns[-1] += "\n" + text  # same speaker again: one turn
                else:
                    turns.append(text)
                    speakers.append(sender)
        eid = f"chitchat:{conv_id}"
        yield _example(eid, eid, alternate(turns))


def laws_qa(
    include: list[str] | None = None, withheld: list[str] | tuple = (), seed: int = 0
) -> Iterator[Example]:
    """Expert Q&A from laws.db articles in force: two questions per article, one group.

    An article-text question in a training phrasing picked per article (``《X》第N条规定了
    什么？``, ``…的内容是什么？``, ``请背诵…``, ``…是怎么规定的？``) -> the article text, and a
    keyword scenario (see ``law_questions``) -> ``《X》第N条``. The eval phrasings of
    ``law_questions.HELD_OUT_*`` are never used here. Scenario messages are built by
    ``Example.finish`` (jieba keywords cost ~0.3 ms an article), only for kept examples;
    articles whose text occurs more than once (``本法自公布之日起施行。``) get no scenario:
    their law and number cannot be told from their content.

    Args:
        include: only these laws (None: all); ``withheld`` laws are never used.
        seed: seeds the phrasing picked per article.
    """
    rows = law_articles(include, withheld)
    repeats = Counter(normalize_text(t or "") for _, _, _, t in law_articles())
    for aid, law, no, text in rows:
        group, text = f"laws:{aid}", normalize_text(text or "")
        if not text or not law or not no:
            yield Example(
                f"laws_qa:{aid}:direct", group, reason="missing_field", detail="empty article"
            )
            continue
        question = lq.article_question(lq.pick(lq.TRAIN_ARTICLE, str(aid), seed), law, no)
        yield _example(
            f"laws_qa:{aid}:direct",
            group,
            [{"role": "user", "content": question}, {"role": "assistant", "content": text}],
        )
        if repeats[text] == 1:
            template = lq.pick(lq.TRAIN_SCENARIO, str(aid), seed)
            ex = _example(
                f"laws_qa:{aid}:scenario",
                group,
                [  # a unique placeholder until finish()
                    {"role": "user", "content": f"scenario {aid}"},
                    {"role": "assistant", "content": "-"},
                ],
            )
            ex.finish = functools.partial(_scenario_messages, template, law, no, text)
            yield ex


def _scenario_messages(template: str, law: str, no: str, text: str) -> list[dict]:
    points = lq.scenario_points(text, law)
    if not points:
        return []
    return [
        {"role": "user", "content": lq.scenario_question(template, points)},
        {"role": "assistant", "content": lq.article_id(law, no)},
    ]


def insuranceqa(lang: str) -> Iterator[Example]:
    """insuranceqa questions -> their first reference answer; grouped by that answer.

    Questions that share an answer land in the same split, so a test answer is never a
    train answer.
    """
    root = require("insuranceqa")
    answers = json.loads(gzip.open(root / "answers.json.gz").read())
    for split in ("train", "valid", "test"):
        questions = json.loads(gzip.open(root / f"{split}.json.gz").read())
        for qid in sorted(questions, key=lambda k: int(k) if k.isdigit() else k):
            q = questions[qid]
            eid = f"insuranceqa_{lang}:{split}:{qid}"
            aid = (q.get("answers") or [None])[0]
            question = normalize_text(q.get(lang) or "")
            answer = normalize_text((answers.get(str(aid)) or {}).get(lang) or "")
            if not question or not answer:
                yield Example(
                    eid, eid, reason="missing_field", detail=f"question or answer {aid} empty"
                )
                continue
            yield _example(
                eid,
                f"insuranceqa:answer:{aid}",
                [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
            )


# Builder name -> function of the builder options (only laws_qa reads them: ``laws``,
# ``withheld``, ``seed``).
BUILDERS = {
    "chatterbot_zh": lambda opts: chatterbot("zh"),
    "chatterbot_en": lambda opts: chatterbot("en"),
    "chitchat": lambda opts: chitchat(),
    "laws_qa": lambda opts: laws_qa(
        opts.get("laws"), opts.get("withheld", ()), opts.get("seed", 0)
    ),
    "insuranceqa_zh": lambda opts: insuranceqa("zh"),
    "insuranceqa_en": lambda opts: insuranceqa("en"),
}


def messages_from_json(obj) -> tuple[list[dict], str, str]:
    """A user jsonl record ``{"messages": [...]}`` -> normalised messages, reason, detail."""
    if not isinstance(obj, dict) or "messages" not in obj:
        return [], "missing_field", "record needs a 'messages' list"
    reason, detail = check_messages(obj["messages"])
    if reason:
        return [], reason, detail
    return (
        [{"role": m["role"], "content": normalize_text(m["content"])} for m in obj["messages"]],
        "",
        "",
    )
