"""The report writer renders every section from a small results dict, and 'not run' when empty."""

from __future__ import annotations

import json
import re
from pathlib import Path

from soaes.eval.report import PAPER, headline, read_loss_curves, write_report

SECTIONS = [
    "Headline: the paper's claims beside ours",
    "Models evaluated",
    "Retention against base",
    "Continual pre-training (CPT)",
    "Domain-progressive vs single-stage SFT",
    "Speculative decoding with the distilled draft",
    "Serving: Ray Serve app, target + distilled draft",
    "Loss curves",
    "Scoring conventions",
]


# The shape `soaes bench serve --out` writes (values made up).
SERVING = json.loads((Path(__file__).parent / "serving_bench.json").read_text())


def _ratio(before, after, low=None, high=None):
    d = {"before": before, "after": after, "ratio": after / before}
    if low is not None:
        d.update(low=low, high=high, n=20, ci=0.95)
    return d


def _qa(r1, b4):
    conv = {"rouge-1": r1, "rouge-2": r1 / 2, "rouge-l": r1 * 0.9, "bleu-4": b4}
    return {"source": "qa.jsonl", "n_items": 20, "n_malformed": 1, "jieba": conv, "sacrebleu": conv}


def small_results(metrics_path) -> dict:
    model = {
        "path": "tiny/target",
        "mmlu": {"n": 57, "accuracy": 0.3, "p_correct": 0.27, "scoring": "option"},
        "perplexity": {
            "general_zh": {"group": "general", "ppl": 40.0, "n_docs": 8, "n_tokens": 900}
        },
        "qa": {"laws": _qa(30.0, 10.0)},
    }
    jieba = {"rouge-1": _ratio(30, 33, 1.01, 1.2), "bleu-4": _ratio(10, 11.5, 0.9, 1.4)}
    rows = [
        {
            "k": k,
            "acceptance_rate": 0.6,
            "mean_acceptance_length": 1 + 0.6 * k,
            "per_position": [0.7, 0.5, 0.3][:k],
            "speedup_measured": 1.2 + 0.1 * k,
            "speedup_theoretical": 1.5,
            "outputs_identical": True,
        }
        for k in (1, 2, 3)
    ]
    return {
        "title": "tiny report",
        "created": "2026-11-25 10:00 UTC",
        "profile": "tiny",
        "models": {"base": model, "cpt": model},
        "retention": {
            "baseline": "base",
            "models": {"cpt": {"mmlu_accuracy": _ratio(0.3, 0.29, 0.85, 1.1)}},
        },
        "cpt": {
            "before": "base",
            "after": "cpt",
            "mmlu_accuracy": _ratio(0.3, 0.29, 0.85, 1.1),
            "mmlu_p_correct": _ratio(0.27, 0.28, 0.95, 1.1),
            "perplexity": {"domain": {"group": "domain", **_ratio(50, 20, 0.35, 0.45)}},
            "downstream": {
                "before": "base_sft",
                "after": "cpt_sft",
                "qa_set": "laws",
                "n": 20,
                "jieba": jieba,
                "sacrebleu": jieba,
            },
        },
        "progressive": {
            "before": "single",
            "after": "prog",
            "qa_set": "laws",
            "n": 20,
            "jieba": jieba,
            "sacrebleu": jieba,
        },
        "speculative": {
            "distilled": {"best_k": 3, "c": 0.3, "rows": rows},
            "undistilled": {"best_k": 1, "c": 0.3, "rows": rows[:1]},
        },
        "serving": SERVING,
        "loss_curves": read_loss_curves({"cpt": str(metrics_path)}),
    }


def test_report_has_every_section(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(
        "\n".join(json.dumps({"step": s, "loss": 5 - s / 10, "lr": 1e-3}) for s in range(10))
        + "\nnot json\n"
    )
    paths = write_report(small_results(metrics), tmp_path / "report")
    md = paths["md"].read_text(encoding="utf-8")
    page = paths["html"].read_text(encoding="utf-8")
    for title in SECTIONS:
        assert f"## {title}" in md and f"<h2>{title}</h2>" in page.replace("&#x27;", "'")
    assert "Not run" not in md
    # Figures: PNG files beside the Markdown, base64 inside the HTML (self-contained page).
    figs = re.findall(r"\]\((figures/[^)]+\.png)\)", md)
    assert len(figs) >= 5 and all((paths["md"].parent / f).is_file() for f in figs)
    assert page.count('src="data:image/png;base64,') == len(figs) and "figures/" not in page
    # The paper's figures sit beside ours.
    assert "99.8%" in md and "1.17x" in md and "1.06x" in md and "1.39-1.52x" in md
    assert "96.7% [85.0, 110.0]" in md  # retention 0.29/0.30 with its CI
    assert "| HTTP via Serve | 12.00 | 10.00 | 1.20 |" in md and "0.410" in md
    body = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert body["paper"] == PAPER and body["loss_curves"]["cpt"]["loss"][-1] == [9, 4.1]
    verdicts = [c["verdict"] for c in body["headline"]]
    # retention CI [0.85, 1.10] holds 0.998; ROUGE-1 CI above 1; BLEU-4 CI straddles 1;
    # 1.2 + 0.1 * 3 = 1.5x at the best k (3) is inside 1.39-1.52x; outputs identical.
    assert verdicts == [
        "consistent (paper value in our CI)",
        "gain (CI above 1)",
        "gain, within noise",
        "gain (CI above 1)",
        "gain, within noise",
        "in paper range",
        "holds",
    ]


def test_empty_results_render_not_run(tmp_path):
    paths = write_report({}, tmp_path)
    md = paths["md"].read_text(encoding="utf-8")
    for title in SECTIONS[1:]:
        assert f"## {title.replace('base', 'the baseline')}" in md
    # models, retention, CPT, progressive, speculative, serving, loss
    assert md.count("Not run") == 7
    assert all(c["verdict"] == "not run" for c in headline({}))
    assert '<p class="notrun">' in paths["html"].read_text(encoding="utf-8")
