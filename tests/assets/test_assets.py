"""Assets: checksum and member checks leave nothing behind; the Qwen2 tokenizer is exact."""

from __future__ import annotations

import pytest

from soaes.assets import fetch as fetch_mod
from soaes.assets.catalog import ASSETS
from soaes.assets.fetch import AssetError, require


@pytest.fixture()
def tmp_cache(tmp_path, monkeypatch):
    """An empty asset cache that reuses the real download cache (no re-download)."""
    real_downloads = fetch_mod.cache_dir() / "downloads"
    monkeypatch.setenv("SOAES_CACHE", str(tmp_path))
    (tmp_path / "downloads").mkdir()
    for f in real_downloads.glob("chatterbot*"):
        (tmp_path / "downloads" / f.name).symlink_to(f)
    return tmp_path


def _leftovers(cache):
    return (
        sorted(p.name for p in (cache / "assets").iterdir()) if (cache / "assets").exists() else []
    )


def test_tampered_file_fails_checksum_and_leaves_nothing(tmp_cache, monkeypatch):
    good = ASSETS["chatterbot"]
    archive = tmp_cache / "downloads" / good.filename
    tampered = bytearray(archive.read_bytes())
    tampered[100] ^= 0xFF
    archive.unlink()
    archive.write_bytes(bytes(tampered))
    # A tampered archive is re-downloaded by download(); simulate a tampered mirror instead.
    monkeypatch.setattr(fetch_mod, "download", lambda spec, dest: archive)
    with pytest.raises(AssetError, match="sha256 mismatch"):
        fetch_mod.fetch("chatterbot")
    assert not fetch_mod.is_present("chatterbot")
    assert _leftovers(tmp_cache) == []


def test_missing_member_fails_and_leaves_nothing(tmp_cache, monkeypatch):
    spec = ASSETS["chatterbot"].model_copy(update={"members": ["chatterbot_corpus/data/klingon/*"]})
    monkeypatch.setitem(ASSETS, "chatterbot", spec)
    with pytest.raises(AssetError, match="member\\(s\\) not found"):
        fetch_mod.fetch("chatterbot")
    assert _leftovers(tmp_cache) == []


def test_fetch_is_atomic_and_rerun_is_noop(tmp_cache):
    path = fetch_mod.fetch("chatterbot")
    assert (
        (path / "ASSET.json").is_file()
        and (path / "chinese" / "money.yml")
        and (path / "english" / "money.yml").is_file()
    )
    mtime = (path / "ASSET.json").stat().st_mtime_ns
    assert fetch_mod.fetch("chatterbot") == path
    assert (path / "ASSET.json").stat().st_mtime_ns == mtime
    assert _leftovers(tmp_cache) == ["chatterbot"]


def test_require_names_the_fix(tmp_cache):
    with pytest.raises(AssetError, match="soaes assets fetch laws"):
        require("laws")


def test_qwen2_tokenizer_ids_match_qwen2_and_tiktoken():
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    from transformers import AutoTokenizer

    from soaes.assets.convert import QWEN2_PATTERN

    folder = require("qwen2_tokenizer")
    tok = AutoTokenizer.from_pretrained(folder / "tokenizer")
    # Known Qwen2/2.5 ids (published tokenizer): "Hello world", "你好".
    assert tok("Hello world").input_ids == [9707, 1879]
    assert tok("你好").input_ids == [108386]
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [
        151643,
        151644,
        151645,
    ]
    ref = tiktoken.Encoding(
        "qwen",
        pat_str=QWEN2_PATTERN,
        mergeable_ranks=load_tiktoken_bpe(str(folder / "qwen.tiktoken")),
        special_tokens={},
    )
    for text in [
        "《中华人民共和国企业国有资产法》第十一条规定了什么？",
        "  The Board's 2023 report: ROE=12.5%\n\n国有资本投资公司",
        "mixed 中英 text 123456",
    ]:
        assert tok(text).input_ids == ref.encode(text), text
    chat = tok.apply_chat_template(
        [{"role": "user", "content": "你好"}], tokenize=False, add_generation_prompt=True
    )
    assert chat.endswith("<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n")
