"""soaes: from a general base LLM to a served domain expert, on Ray.

The recipe of SOAEsV2 (arXiv 2505.04723): continual pre-training with general replay,
domain-progressive SFT, and distillation-enhanced speculative decoding.
"""

__version__ = "0.1.0"
