"""Feature encoders (VGG-19) and the sources of their weights."""

from .vgg import LAYER_NAMES, Preprocessing, VGGEncoder
from .weights import load_vgg19, random_vgg19

__all__ = ["LAYER_NAMES", "Preprocessing", "VGGEncoder", "load_vgg19", "random_vgg19"]
