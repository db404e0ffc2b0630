"""Turning datasets into checkpoints: tokenizers, packing, SFT, logit distillation, LoRA, sweeps and multi-GPU launch."""
