"""The compiler's passes, one per module."""
