"""atelier: neural style transfer, every method behind one API and CLI.

>>> import atelier
>>> image = atelier.stylize("photo.jpg", "painting.jpg", method="gatys", size=512)  # doctest: +SKIP
>>> winter = atelier.translate("summer.jpg", "summer2winter", direction="a2b")  # doctest: +SKIP
>>> report = atelier.evaluate(["adain", "wct"], contents="photos/", styles="art/", output="rep/")  # doctest: +SKIP
"""

# The methods first: importing them fills the method and training-task registries.
from .methods import available_methods, get_method  # isort: skip
from .api import StylizationInterrupted, stylize, stylize_video, translate, translate_video
from .errors import AtelierError
from .eval import EvalReport, evaluate

# ``atelier.train(config)`` is the training function; the package ``atelier.train`` stays importable
# (``from atelier.train import TrainConfig``), only this attribute of ``atelier`` names the function.
from .train.trainer import train

__version__ = "0.1.0"
__all__ = ["AtelierError", "EvalReport", "StylizationInterrupted", "__version__", "available_methods", "evaluate",
           "get_method", "stylize", "stylize_video", "train", "translate", "translate_video"]
