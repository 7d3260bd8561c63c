"""Ray Train + DeepSpeed training: continual pre-training, progressive SFT, distillation.

One recipe per mode (``cpt.run_cpt``, ``sft.run_sft``, ``distill``), built from small pieces:

- :mod:`~soaes.train.ds_config`: DeepSpeed JSON config and LR schedule (pure).
- :mod:`~soaes.train.engine`: worker setup, model loading (ZeRO-3 aware), ``deepspeed.initialize``,
  frozen teachers, the compiled-op cache.
- :mod:`~soaes.train.data`: Ray Data input, deterministic per-rank micro-batches, collate.
- :mod:`~soaes.train.checkpoints`: atomic DeepSpeed checkpoints, ``latest``, resume.
- :mod:`~soaes.train.loop`: the step loop (any loss), evaluation, reports, fault hook.
- :mod:`~soaes.train.metrics`: cross-rank sums, ``metrics.jsonl``, loss-curve PNG.
- :mod:`~soaes.train.worker`: the CPT/SFT worker function, composing the pieces above.
- :mod:`~soaes.train.launch`: driver side: step plan, ``TorchTrainer`` launch, run summary.
- :mod:`soaes.models.checkpoint`: HF safetensors export / load.
"""
