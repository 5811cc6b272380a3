"""Shared machinery of the methods that run one trained per-style network (``--model NAME``).

Johnson et al.'s transformer nets and Wang et al.'s hierarchical networks are both found by
name (``atelier models``) or file, checked against the training task that made them, refused
above a stated memory bound (:func:`~atelier.pipelines.memory.check_fits`), and chosen by the
CLI from the file's header alone. Part of the framework layer: method modules import it, it
imports none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from torch import Tensor, nn

from ..errors import OptionError, WeightsError
from ..nets.pretrained import describe_load_error, locate_model, read_header, read_weights
from ..options import MethodConfig
from .base import Method, available_methods

__all__ = [
    "TrainedNetworkMethod",
    "collection_info",
    "holds_styles",
    "load_trained",
    "method_for_model",
    "read_trained",
]

#: The method ``--model`` means when the model's task names no model-holding method.
DEFAULT_MODEL_METHOD = "johnson"


def read_trained(model: str, *, task: str, train_hint: str,
                 what: str) -> tuple[dict[str, Tensor], dict[str, str], Path]:
    """Tensors, header and path of the trained network ``model`` (a name or a file) made by ``task``.

    Raises:
        OptionError: no model given.
        WeightsError: not found (the message says how to train it), unreadable, or made by
            another task (the message names ``what`` was expected).
    """
    if not model:
        raise OptionError("give a trained model: --model NAME (see `atelier models`) or --model FILE.safetensors")
    path = locate_model(model, train_hint=train_hint)
    state, header = read_weights(path)
    if header.get("task") != task:
        raise WeightsError(f"{path}: not a {what} (task {header.get('task')!r}); list them with `atelier models`")
    return state, header, path


NetworkT = TypeVar("NetworkT", bound=nn.Module)


def load_trained(model: str, *, task: str, train_hint: str, what: str,
                 build: Callable[[dict[str, str]], NetworkT]) -> tuple[NetworkT, dict[str, str], Path]:
    """The trained network ``model`` rebuilt from its header by ``build``, with its weights, frozen.

    Returns the network (eval mode, no gradients), its header and its path.

    Raises:
        OptionError: no model given.
        WeightsError: not found, made by another task, or a header or weights that do not fit
            (the message names ``what`` was expected and how to get a good file).
    """
    state, header, path = read_trained(model, task=task, train_hint=train_hint, what=what)
    try:
        network = build(header)
        network.load_state_dict({k: v.float() for k, v in state.items()})
    except (KeyError, ValueError, RuntimeError, OptionError) as error:
        raise WeightsError(f"{path}: damaged {what} header or weights ({describe_load_error(error)}); "
                           "re-export it with `atelier train` or use another model") from None
    return network.eval().requires_grad_(False), header, path


def collection_info(header: dict[str, str], path: Path) -> dict[str, Any]:
    """What a collection-trained model's file tells: its path, name, collection and training steps."""
    return {"path": str(path), "name": header.get("name", path.stem),
            "collection": header.get("collection", path.stem), "steps": int(header.get("steps", 0))}


def holds_styles(task: str) -> bool:
    """Whether ``--model NAME`` alone runs a model made by ``task`` (a card's or a header's).

    True for the methods that run a trained model named by their ``model`` option (``johnson``,
    ``multimodal``, ``style_aware``, ``disentangle``); the decoders of the arbitrary-style methods
    are options of those methods instead.
    """
    cls = available_methods().get(task)
    return cls is not None and "model" in cls.Config.field_names()


def method_for_model(model: str) -> str:
    """The method that runs ``model`` (the CLI's default when ``--model`` is given).

    The task in the model's header when that is a method that runs a named model (``multimodal``,
    ``style_aware``, ``disentangle``; see :func:`holds_styles`), else ``johnson`` (which then
    reports a missing or wrong file).
    """
    try:
        task = read_header(locate_model(model, train_hint="")).get("task", "")
    except (OSError, WeightsError):  # the method that loads it reports the problem in its own words
        return DEFAULT_MODEL_METHOD
    return task if holds_styles(task) else DEFAULT_MODEL_METHOD


class TrainedNetworkMethod(Method, Generic[NetworkT]):
    """A method that runs one trained network named by its ``model`` option, loaded on first use.

    Subclasses set :meth:`load` (name or path -> network and its header facts); tests pass a tiny
    ``network`` directly.
    """

    #: The facts a network without a file reports (its name; style names or collection).
    unloaded_info: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: MethodConfig | None = None, *, network: NetworkT | None = None,
                 **options: Any) -> None:
        super().__init__(config, **options)
        self._network = network
        self._info: dict[str, Any] = {"name": "network", **self.unloaded_info}

    @staticmethod
    def load(model: str) -> tuple[NetworkT, dict[str, Any]]:
        """The trained network ``model`` (a name or a file) and its header facts."""
        raise NotImplementedError

    @property
    def network(self) -> NetworkT:
        """The trained network, loaded on first use."""
        if self._network is None:
            self._network, self._info = self.load(getattr(self.config, "model", ""))
        return self._network
