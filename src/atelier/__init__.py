"""atelier: neural style transfer, every method behind one API and CLI.

>>> import atelier
>>> image = atelier.stylize("photo.jpg", "painting.jpg", method="gatys", size=512)  # doctest: +SKIP
>>> winter = atelier.translate("summer.jpg", "summer2winter", direction="a2b")  # doctest: +SKIP
>>> report = atelier.evaluate(["adain", "wct"], contents="photos/", styles="art/", output="rep/")  # doctest: +SKIP
"""

from . import train
from .api import StylizationInterrupted, stylize, stylize_video, translate, translate_video
from .errors import AtelierError
from .eval import EvalReport, evaluate
from .methods import available_methods, get_method

__version__ = "0.1.0"
__all__ = ["AtelierError", "EvalReport", "StylizationInterrupted", "__version__", "available_methods", "evaluate",
           "get_method", "stylize", "stylize_video", "train", "translate", "translate_video"]
