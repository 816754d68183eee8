"""Compressed communication: codecs (pure tensor functions) for the mixer's compressed steps."""
from .codecs import QSGD, Cast, Codec, Identity, Int8, Key, RandomK, Sign, TopK, parse_codec

__all__ = ["QSGD", "Cast", "Codec", "Identity", "Int8", "Key", "RandomK", "Sign", "TopK", "parse_codec"]
