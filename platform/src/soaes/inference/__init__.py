"""Offline inference: the in-process vLLM engine shared by distillation, eval, bench and serve."""
