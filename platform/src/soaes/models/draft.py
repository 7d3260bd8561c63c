"""Draft (student) construction for speculative decoding: prune, fresh, or pretrained.

Three ways to get a draft that shares the target's vocabulary:

* :func:`prune_draft` keeps the target's embeddings, final norm, output layer and a chosen
  subset of its decoder layers (renumbered). Works on safetensors tensors directly, one
  tensor at a time, so it also prunes a 72B target without loading it.
* :func:`fresh_draft` builds a new, smaller model of the target's architecture from a few
  shape fields, optionally starting its embeddings from the target's (copied when the width
  matches, else projected onto the top principal directions), because a narrower draft has
  a cheaper output layer (ENVIRONMENT.md: SmolLM2's 49k-vocabulary head is a fifth of its cost).
* :func:`pretrained_draft` takes an existing smaller checkpoint of the same family.

Every draft folder carries the target's tokenizer, and :func:`check_vocab` rejects a draft
whose vocabulary differs from the target's: vLLM's ``draft_model`` speculation compares
token ids, so a mismatch would silently give garbage acceptance.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

from soaes.config.distill import DraftConfig
from soaes.models.presets import resolve

log = logging.getLogger(__name__)

_LAYER_KEY = re.compile(r"^(.*\.layers\.)(\d+)(\..+)$")
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "generation_config.json",
)


class VocabMismatchError(ValueError):
    """The draft's vocabulary differs from the target's."""


def _config(model_dir: str | Path) -> dict:
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir}: no config.json (not a Hugging Face model folder)")
    return json.loads(path.read_text(encoding="utf-8"))


def _text_config(cfg: dict) -> dict:
    return cfg.get("text_config", cfg)


def check_vocab(draft_dir: str | Path, target_dir: str | Path) -> int:
    """Raise :class:`VocabMismatchError` unless draft and target share one vocabulary.

    Compares the configs' ``vocab_size`` (the logits width vLLM compares) and, when both
    folders hold a tokenizer, the token -> id maps.

    Returns:
        The shared vocabulary size.
    """
    dv = _text_config(_config(draft_dir)).get("vocab_size")
    tv = _text_config(_config(target_dir)).get("vocab_size")
    if dv != tv:
        raise VocabMismatchError(
            f"draft vocab_size {dv} != target vocab_size {tv} ({draft_dir} vs {target_dir}): "
            "the draft must share the target's vocabulary; build it from the target "
            "(draft.method=prune or fresh) or choose a checkpoint of the same family"
        )
    if (Path(draft_dir) / "tokenizer.json").is_file() and (
        Path(target_dir) / "tokenizer.json"
    ).is_file():
        from transformers import AutoTokenizer

        d_vocab = AutoTokenizer.from_pretrained(draft_dir).get_vocab()
        t_vocab = AutoTokenizer.from_pretrained(target_dir).get_vocab()
        if d_vocab != t_vocab:
            diff = sorted(set(d_vocab.items()) ^ set(t_vocab.items()))[:3]
            raise VocabMismatchError(
                f"draft tokenizer differs from the target's ({len(d_vocab)} vs {len(t_vocab)} "
                f"tokens, e.g. {diff}): use the target's tokenizer"
            )
    return int(tv)


def copy_tokenizer(src_dir: str | Path, out_dir: str | Path) -> None:
    """Copy the tokenizer (and generation config) files of ``src_dir`` into ``out_dir``."""
    for name in _TOKENIZER_FILES:
        if (Path(src_dir) / name).is_file():
            shutil.copy2(Path(src_dir) / name, Path(out_dir) / name)


def _weight_files(model_dir: Path) -> list[Path]:
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{model_dir}: no *.safetensors weights (convert the checkpoint)")
    return files


def prune_draft(target: str | Path, out_dir: str | Path, keep_layers: list[int]) -> Path:
    """Write a draft made of the target minus every decoder layer not in ``keep_layers``.

    Embeddings, final norm and output layer are kept as they are; kept layers are renumbered
    0..n-1 in the given order and their tensors copied bit for bit.

    Args:
        target: the target's model folder.
        out_dir: where the draft folder is written.
        keep_layers: indices of the target's layers to keep, e.g. ``[0, 1, 2, 3]``.

    Returns:
        The draft folder.
    """
    from safetensors.torch import save_file

    target, out = Path(target), Path(out_dir)
    cfg = _config(target)
    tcfg = _text_config(cfg)
    n = tcfg["num_hidden_layers"]
    bad = [i for i in keep_layers if not 0 <= i < n]
    if bad or not keep_layers or len(set(keep_layers)) != len(keep_layers):
        raise ValueError(f"keep_layers {keep_layers}: need distinct indices in [0, {n})")
    renumber = {old: new for new, old in enumerate(keep_layers)}
    out.mkdir(parents=True, exist_ok=True)
    files = _weight_files(target)
    names = (
        ["model.safetensors"]
        if len(files) == 1
        else [f"model-{i + 1:05d}-of-{len(files):05d}.safetensors" for i in range(len(files))]
    )
    weight_map: dict[str, str] = {}
    seen_layers = False
    for path, name in zip(files, names, strict=True):
        tensors, seen = _kept_tensors(path, renumber)
        seen_layers = seen_layers or seen
        save_file(tensors, out / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, name))
    if not seen_layers:
        raise ValueError(f"{target}: no '*.layers.N.*' tensors found; cannot prune this layout")
    if len(files) > 1:
        index = {"metadata": {}, "weight_map": weight_map}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    _keep_layer_config(tcfg, keep_layers, n)
    _write_config(out, cfg, {"method": "prune", "target": str(target), "keep_layers": keep_layers})
    copy_tokenizer(target, out)
    return out


def _kept_tensors(path: Path, renumber: dict[int, int]) -> tuple[dict, bool]:
    """The tensors of one weight file with only the kept layers (renumbered), and whether
    the file had any per-layer tensor at all."""
    from safetensors import safe_open

    tensors, seen = {}, False
    with safe_open(path, framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
            m = _LAYER_KEY.match(key)
            if m is None:
                tensors[key] = f.get_tensor(key)
                continue
            seen = True
            if int(m.group(2)) in renumber:
                new_key = f"{m.group(1)}{renumber[int(m.group(2))]}{m.group(3)}"
                tensors[new_key] = f.get_tensor(key)
    return tensors, seen


def _keep_layer_config(tcfg: dict, keep_layers: list[int], n: int) -> None:
    """Set the text config's layer count and per-layer lists to the kept layers (in place)."""
    tcfg["num_hidden_layers"] = len(keep_layers)
    for key in ("layer_types", "mlp_only_layers"):  # per-layer lists follow the kept layers
        if isinstance(tcfg.get(key), list) and len(tcfg[key]) == n:
            tcfg[key] = [tcfg[key][j] for j in keep_layers]
    if "max_window_layers" in tcfg:
        tcfg["max_window_layers"] = min(tcfg["max_window_layers"], len(keep_layers))


def _write_config(out: Path, cfg: dict, provenance: dict) -> None:
    (out / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    (out / "draft.json").write_text(json.dumps(provenance, indent=2), encoding="utf-8")


def _init_embeddings_from(model, target_dir: Path) -> None:
    """Start the draft's token embeddings (and an untied output layer) from the target's.

    Same width: copied. Narrower: the target's embedding matrix projected onto its top
    principal directions (truncated SVD), which keeps the geometry of token similarity.
    """
    import torch
    from transformers import AutoModelForCausalLM

    teacher = AutoModelForCausalLM.from_pretrained(target_dir, dtype=torch.float32)
    pairs = [(model.get_input_embeddings(), teacher.get_input_embeddings())]
    if not model.config.tie_word_embeddings:
        pairs.append((model.get_output_embeddings(), teacher.get_output_embeddings()))
    with torch.no_grad():
        for dst, src in pairs:
            w = src.weight.float()
            d = dst.weight.shape[1]
            if d >= w.shape[1]:
                dst.weight.zero_()
                dst.weight[:, : w.shape[1]] = w
            else:
                _, _, vh = torch.linalg.svd(w - w.mean(0), full_matrices=False)
                dst.weight.copy_(w @ vh[:d].T)
    del teacher


def fresh_draft(
    target: str | Path,
    out_dir: str | Path,
    shape: dict,
    seed: int = 0,
    init_embeddings: bool = True,
) -> Path:
    """Write a new, randomly initialised draft of the target's architecture and vocabulary.

    Args:
        target: the target's model folder.
        out_dir: where the draft folder is written.
        shape: config fields to override, e.g. ``{"hidden_size": 256, "num_hidden_layers": 4}``.
        seed: torch seed of the initialisation.
        init_embeddings: start the embeddings from the target's (see module docstring).

    Returns:
        The draft folder.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    target, out = Path(target), Path(out_dir)
    cfg = AutoConfig.from_pretrained(target)
    for key, value in shape.items():  # head_dim may be new: models read it with getattr
        setattr(cfg, key, value)
    if getattr(cfg, "layer_types", None) is not None:
        cfg.layer_types = cfg.layer_types[:1] * cfg.num_hidden_layers
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    if init_embeddings:
        _init_embeddings_from(model, target)
    model.save_pretrained(out, safe_serialization=True)
    (out / "draft.json").write_text(
        json.dumps(
            {
                "method": "fresh",
                "target": str(target),
                "shape": shape,
                "seed": seed,
                "init_embeddings": init_embeddings,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    copy_tokenizer(target, out)
    return out


def pretrained_draft(path: str | Path, target: str | Path) -> Path:
    """Check an existing checkpoint as a draft of ``target`` and return its folder."""
    check_vocab(path, target)
    return Path(path)


def build_draft(cfg: DraftConfig, target: str, out_dir: str | Path) -> Path:
    """Build (or check) the configured draft for ``target`` and verify its vocabulary.

    Args:
        cfg: the draft block of a distillation config.
        target: the target's handle or folder (resolved through the presets).
        out_dir: where a pruned or fresh draft is written (a temp folder, renamed when done).

    Returns:
        The draft folder, whose vocabulary is checked against the target's.
    """
    target_dir = Path(resolve(target))
    if cfg.method == "pretrained":
        return pretrained_draft(resolve(cfg.path or ""), target_dir)
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if cfg.method == "prune":
        prune_draft(target_dir, tmp, cfg.layers_to_keep())
    else:
        fresh_draft(target_dir, tmp, cfg.shape_overrides(), cfg.seed, cfg.init_embeddings)
    check_vocab(tmp, target_dir)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log.info("built %s draft of %s in %s", cfg.method, target_dir, out)
    return out
