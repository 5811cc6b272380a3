"""Trainable networks (decoders, transformer nets, generators) and their pretrained weights."""

from .decoder import DECODER_LAYERS, VGGDecoder, decoder_block
from .pretrained import SHIPPED, locate, read_weights

__all__ = ["DECODER_LAYERS", "SHIPPED", "VGGDecoder", "decoder_block", "locate", "read_weights"]
