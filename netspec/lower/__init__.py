"""Lowering: turn checked netspec IR into PyTorch modules."""
