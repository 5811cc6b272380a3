"""The web studio's state and work, without the web framework.

Uploads (checked like the CLI's inputs), the style gallery, method objects built once and reused,
and the jobs that stylize, translate and map videos on the :class:`~atelier.web.jobs.JobQueue`.

No value from a request ever becomes a path: uploads live in memory (images) or in a temporary
folder under a name the server picks (videos), and are referred to by random ids; gallery entries
and models by the names the server lists.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import shlex
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..api import PRESERVE_COLOR, normalize_weights, stylize_tensor
from ..errors import AtelierError, ImageError, MaskError, OptionError, UnknownNameError, suggest
from ..io.images import DEFAULT_MAX_PIXELS, load_image, resize_longest, save_image, tensor_to_pil
from ..io.masks import load_masks
from ..io.video import VIDEO_SUFFIXES
from ..methods import Method, get_method
from .forms import (
    HEAVY_METHODS,
    LIVE_OPTIONS,
    check_options,
    masks_from_painting,
    reproduce_command,
    segmentation_from_painting,
)
from .jobs import Job, JobInterrupted, JobQueue

__all__ = ["NotFoundError", "Studio", "StudioSettings", "Upload"]

#: Bytes per output pixel a job may need, for the check before it starts: the encoder's
#: activations up to relu5_1 kept for the backward pass and L-BFGS's history (see
#: OptimizationMethod.check_memory, which refines this for gatys and photo when the job runs);
#: feed-forward methods need about a tenth.
HEAVY_BYTES_PER_PIXEL = 6_000
LIGHT_BYTES_PER_PIXEL = 600
IMAGE_FORMATS = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg"), "tiff": ("TIFF", "image/tiff"),
                 "tiff16": ("TIFF", "image/tiff")}


class NotFoundError(AtelierError):
    """An upload, gallery entry, model or job id that the server does not know (HTTP 404)."""


@dataclass
class StudioSettings:
    """Limits and defaults of one server."""

    workers: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))
    queue_limit: int = 20
    max_upload_bytes: int = 20 * 2**20
    max_pixels: int = DEFAULT_MAX_PIXELS
    preview_size: int = 256
    max_size: int = 2048
    uploads_kept: int = 64
    device: str = "cpu"
    gallery: Sequence[Path] = ()
    #: Gatys jobs save an intermediate image every this many iterations.
    intermediate_every: int = 10


@dataclass
class Upload:
    """An uploaded image (kept as a tensor) or video (kept in a private temporary folder)."""

    id: str
    name: str
    kind: str
    width: int
    height: int
    tensor: Tensor | None = None
    painting: np.ndarray | None = None
    path: Path | None = None

    def public(self) -> dict[str, Any]:
        """What a client sees of the upload."""
        return {"id": self.id, "name": self.name, "kind": self.kind, "width": self.width, "height": self.height}


def display_name(filename: str | None) -> str:
    """A client's file name reduced to something safe to show and to put in a command line."""
    base = re.split(r"[\\/]", filename or "")[-1]
    base = re.sub(r"[^A-Za-z0-9._ -]", "_", base).strip(" .")[:80]
    return base or "upload"


MethodFactory = Callable[[str, dict[str, Any]], Method]


def default_factory(name: str, options: dict[str, Any]) -> Method:
    """Build a registered method (its VGG-19 encoder is loaded once per source and shared)."""
    return get_method(name)(**options)


class Studio:
    """Uploads, gallery, method cache and job queue of one server."""

    def __init__(self, settings: StudioSettings | None = None, *, build_method: MethodFactory = default_factory):
        self.settings = settings or StudioSettings()
        self.build_method = build_method
        self._tmp = Path(tempfile.mkdtemp(prefix="atelier-serve-"))
        self.queue = JobQueue(workers=self.settings.workers, limit=self.settings.queue_limit, root=self._tmp)
        self._uploads: OrderedDict[str, Upload] = OrderedDict()
        self._uploads_lock = threading.Lock()
        self._methods: OrderedDict[tuple, tuple[Any, threading.Lock]] = OrderedDict()  # methods, translators
        self._methods_lock = threading.Lock()
        self._gallery = self._scan_gallery()

    # -- uploads -------------------------------------------------------------------------------------
    def add_upload(self, data: bytes, filename: str | None, *, purpose: str = "image") -> Upload:
        """Check and keep an upload.

        ``purpose`` is ``image`` (content or style), ``painting`` (a mask painting, RGBA) or ``video``.

        Raises:
            ImageError: empty, too large, not an image (or video) or corrupt — the CLI's checks.
        """
        name = display_name(filename)
        if purpose not in ("image", "painting", "video"):
            raise OptionError(f"purpose must be image, painting or video, not {purpose!r}")
        if not data:
            raise ImageError(f"{name}: the upload is empty; choose the file again")
        if len(data) > self.settings.max_upload_bytes:
            raise ImageError(f"{name}: {len(data) / 2**20:.1f} MB is above the upload limit of "
                             f"{self.settings.max_upload_bytes / 2**20:.0f} MB; send a smaller file")
        upload_id = secrets.token_hex(8)
        if purpose == "video" or Path(name).suffix.lower() in VIDEO_SUFFIXES:
            upload = self._video_upload(upload_id, name, data)
        else:
            folder = Path(tempfile.mkdtemp(dir=self._tmp))
            temp = folder / "upload"  # the server's name, never the client's
            try:
                temp.write_bytes(data)
                try:
                    tensor = load_image(temp, max_pixels=self.settings.max_pixels, name=name)
                except ImageError as error:  # the CLI's message, with the upload's name for the temp path
                    raise type(error)(str(error).replace(str(temp), name)) from None
                painting = None
                if purpose == "painting":
                    with Image.open(io.BytesIO(data)) as image:  # checked by load_image above
                        painting = np.asarray(image.convert("RGBA"))
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            upload = Upload(upload_id, name, purpose, tensor.shape[-1], tensor.shape[-2], tensor=tensor,
                            painting=painting)
        with self._uploads_lock:
            self._uploads[upload_id] = upload
            while len(self._uploads) > self.settings.uploads_kept:
                _, old = self._uploads.popitem(last=False)
                _remove_upload(old)
        return upload

    def _video_upload(self, upload_id: str, name: str, data: bytes) -> Upload:
        from ..io.video import probe_video

        folder = Path(tempfile.mkdtemp(dir=self._tmp))
        path = folder / f"video{Path(name).suffix.lower() if Path(name).suffix.lower() in VIDEO_SUFFIXES else '.mp4'}"
        path.write_bytes(data)
        try:
            info = probe_video(path)
        except AtelierError as error:
            shutil.rmtree(folder, ignore_errors=True)
            raise ImageError(str(error).replace(str(path), name)) from None
        except Exception as error:  # PyAV's own errors for a file that is not a video
            shutil.rmtree(folder, ignore_errors=True)
            raise ImageError(f"{name}: not a readable video ({error.__class__.__name__}); "
                             "convert it to MP4 (H.264)") from None
        if info.width * info.height > self.settings.max_pixels:
            shutil.rmtree(folder, ignore_errors=True)
            raise ImageError(f"{name}: {info.width}x{info.height} frames are above the limit of "
                             f"{self.settings.max_pixels:,} pixels")
        return Upload(upload_id, name, "video", info.width, info.height, path=path)

    def upload(self, upload_id: Any, kind: str = "image") -> Upload:
        """The upload with this id; ``kind`` checks what it is."""
        with self._uploads_lock:
            found = self._uploads.get(upload_id) if isinstance(upload_id, str) else None
        if found is None:
            raise NotFoundError(f"no upload {upload_id!r} on this server (uploads are kept for the last "
                                f"{self.settings.uploads_kept}); upload the file again")
        if (kind == "image" and found.tensor is None) or (kind == "video" and found.path is None):
            raise OptionError(f"upload {found.name!r} is a {found.kind}, expected a {kind}")
        if kind == "painting" and found.painting is None:
            raise OptionError(f"upload {found.name!r} was not sent as a mask painting (purpose=painting)")
        return found

    def image(self, upload_id: Any) -> Tensor:
        """The uploaded image's tensor; :class:`OptionError` when the upload is not an image."""
        tensor = self.upload(upload_id, "image").tensor
        assert tensor is not None  # upload() checked the kind
        return tensor

    def painting(self, upload_id: Any) -> np.ndarray:
        """The uploaded mask painting's pixels; :class:`OptionError` when it was not sent as one."""
        painting = self.upload(upload_id, "painting").painting
        assert painting is not None
        return painting

    def video_path(self, upload_id: Any) -> Path:
        """The uploaded video's private file; :class:`OptionError` when the upload is not a video."""
        path = self.upload(upload_id, "video").path
        assert path is not None
        return path

    # -- gallery -------------------------------------------------------------------------------------
    def _scan_gallery(self) -> dict[str, dict[str, Any]]:
        from ..io.images import image_files

        entries: dict[str, dict[str, Any]] = {}
        for folder in self.settings.gallery:
            for path in image_files(folder):
                key = re.sub(r"[^a-z0-9_]", "_", path.stem.lower())[:40]
                entries.setdefault(key, {"id": key, "label": path.stem.replace("_", " "), "path": path})
        return entries

    def gallery(self) -> list[dict[str, Any]]:
        """Example paintings (by id) and the trained per-style networks (``model``: their names and styles)."""
        import json

        from ..nets.pretrained import model_cards

        items: list[dict[str, Any]] = [{"kind": "painting", "id": e["id"], "label": e["label"]}
                                       for e in self._gallery.values()]
        for card in model_cards():
            if card.get("task") != "johnson":
                continue
            names = json.loads(card.get("header", {}).get("style_names", "[]") or "[]") or [card["name"]]
            thumb = next((self._gallery_key(s) for s in card.get("options", {}).get("styles", [])
                          if self._gallery_key(s)), None)
            items.append({"kind": "model", "id": card["name"], "label": card["name"].replace("_", " "),
                          "styles": names, "thumb": thumb})
        return items

    def _gallery_key(self, style_path: str) -> str | None:
        stem = Path(str(style_path)).stem.lower()
        return next((k for k, e in self._gallery.items() if Path(e["path"]).stem.lower() == stem), None)

    def models(self, task: str = "johnson") -> list[str]:
        """Names of the trained networks of ``task`` (``johnson`` per-style, ``translation``)."""
        from ..nets.pretrained import model_cards

        tasks = ("cyclegan", "ugatit") if task == "translation" else (task,)
        return [card["name"] for card in model_cards() if card.get("task") in tasks]

    def gallery_image(self, entry_id: str, thumb: bool = False) -> Image.Image:
        """A gallery painting (a thumbnail of at most 160 px with ``thumb``)."""
        entry = self._gallery.get(entry_id)
        if entry is None:
            raise NotFoundError(f"no gallery entry {entry_id!r}{suggest(entry_id, self._gallery)}")
        image = tensor_to_pil(load_image(entry["path"], name=entry["label"]))
        if thumb:
            image.thumbnail((160, 160))
        return image

    def style_tensor(self, ref: Any) -> Tensor:
        """A style given as ``upload:<id>`` or ``gallery:<id>``.

        The same tensor object every time, so a method's style memo recognises it.
        """
        if not isinstance(ref, str) or ":" not in ref:
            raise OptionError(f"a style is 'upload:<id>' or 'gallery:<id>', got {ref!r}")
        kind, _, key = ref.partition(":")
        if kind == "upload":
            return self.image(key)
        if kind == "gallery":
            entry = self._gallery.get(key)
            if entry is None:
                raise NotFoundError(f"no gallery entry {key!r}{suggest(key, self._gallery)}")
            if "tensor" not in entry:
                entry["tensor"] = load_image(entry["path"], max_pixels=self.settings.max_pixels, name=entry["label"])
            return entry["tensor"]
        raise OptionError(f"a style is 'upload:<id>' or 'gallery:<id>', got {ref!r}")

    def style_label(self, ref: str) -> str:
        """The file name a style goes by in the reproducing command."""
        kind, _, key = ref.partition(":")
        if kind == "upload":
            return self.upload(key).name
        return Path(self._gallery[key]["path"]).name

    # -- methods -------------------------------------------------------------------------------------
    def method(self, name: str, options: dict[str, Any]) -> tuple[Method, threading.Lock]:
        """A method object for ``options``, reused across requests that differ only in :data:`LIVE_OPTIONS`.

        Its networks and style memo stay; the config is swapped under the returned lock, which the
        caller holds while it runs.
        """
        fixed = tuple(sorted((k, repr(v)) for k, v in options.items() if k not in LIVE_OPTIONS))
        key = (name, fixed)
        with self._methods_lock:
            if key in self._methods:
                self._methods.move_to_end(key)
                return self._methods[key]
        method = self.build_method(name, dict(options))
        with self._methods_lock:
            entry = self._methods.setdefault(key, (method, threading.Lock()))
            while len(self._methods) > 8:
                self._methods.popitem(last=False)
        return entry

    # -- jobs ----------------------------------------------------------------------------------------
    def submit_stylize(self, request: dict[str, Any]) -> Job:
        """Check a stylize request (see :class:`~atelier.web.app.StylizeRequest`) and queue it."""
        name = request.get("method") or "adain"
        cls = get_method(name)
        options = check_options(name, request.get("options") or {}, self.models())
        content = self.upload(request.get("content")).tensor
        assert content is not None
        refs = list(request.get("styles") or [])
        styles = [self.style_tensor(ref) for ref in refs]
        count = len(styles) if cls.uses_style_images else None
        if cls.uses_style_images and not styles:
            raise OptionError(f"method {name!r} needs at least one style; pick one from the gallery or upload one")
        if not cls.uses_style_images and styles:
            raise OptionError(f"method {name!r} takes its styles from its trained model; drop the style images")
        preserve = request.get("preserve_color") or "none"
        if preserve not in PRESERVE_COLOR:
            raise OptionError(f"preserve_color must be one of {', '.join(PRESERVE_COLOR)}, not {preserve!r}")
        size = self._size(request, content)
        sized = resize_longest(content, size) if size != max(content.shape[-2:]) else content
        heavy = name in HEAVY_METHODS

        if heavy:  # a fresh object per job (built when it starts): its intermediate images go to its folder
            method, lock = None, threading.Lock()
        else:
            method, lock = self.method(name, options)
        if count is None:
            assert method is not None
            count = method.style_count()
        weights = request.get("style_weights")
        if weights is not None:
            normalize_weights(weights, count)  # the API's checks and messages, before queueing
        masks = self._masks(request, count, (int(sized.shape[-2]), int(sized.shape[-1])))
        if masks is not None and not cls.supports_masks:
            raise OptionError(f"method {name!r} does not support masks; render without a painted mask")
        regions = self._regions(request, name, len(styles))
        seed = request.get("seed")
        pixels = int(sized.shape[-1] * sized.shape[-2])
        need = pixels * (HEAVY_BYTES_PER_PIXEL if heavy else LIGHT_BYTES_PER_PIXEL)
        command = reproduce_command(
            method=name, options=options, styles=[self.style_label(r) for r in refs],
            content=self.upload(request.get("content")).name, style_weights=weights,
            masks=0 if masks is None else count, size=size, preserve_color=preserve, seed=seed,
            regions=regions is not None)

        def run(job: Job) -> Tensor:
            nonlocal method
            if method is None:
                extra: dict[str, Any] = {}
                if self.settings.intermediate_every and "save_every" in cls.Config.field_names():
                    folder = job.make_workdir()
                    extra = {"save_every": self.settings.intermediate_every, "save_dir": str(folder)}
                    job.intermediate = lambda: _latest_image(folder)
                if regions is not None:  # files the server writes and names, in the job's own folder
                    for key, array in zip(("content_mask", "style_mask"), regions):
                        path = job.make_workdir() / f"{key}.png"
                        Image.fromarray(array, "RGB").save(path)
                        extra[key] = str(path)
                method = self.build_method(name, {**options, **extra})
            job.stage = name
            with lock:
                if not heavy:
                    method.config = cls.Config.from_dict(options, method=name)
                result = stylize_tensor(sized, styles, method, style_weights=weights, masks=masks,
                                        preserve_color=preserve, device=self.settings.device, seed=seed,
                                        progress=False)
            image = result.image.detach().float().cpu()  # kept at full precision for 16-bit downloads
            if result.interrupted:
                raise JobInterrupted(image)
            return image

        files: dict[str, bytes] = {}
        if masks is not None:  # the files the command names, as the CLI reads them (white = that style)
            for index in range(count):
                files[f"mask{index + 1}.png"] = _png(Image.fromarray(
                    (masks[0, index].numpy() * 255).round().astype(np.uint8), "L"))
        if regions is not None:
            content_map, style_map = (_png(Image.fromarray(a, "RGB")) for a in regions)
            files.update({"content_regions.png": content_map, "style_regions.png": style_map})
        return self.queue.submit("stylize", run, need_bytes=need, command=command, files=files)

    def submit_translate(self, request: dict[str, Any]) -> Job:
        """Queue the translation of an uploaded image (``image``, ``model``, ``direction``, ``size``)."""
        from ..pipelines.translation import DIRECTIONS

        model = request.get("model")
        models = self.models("translation")
        if model not in models:
            raise UnknownNameError(f"unknown translation model {model!r}{suggest(str(model), models)} "
                                   f"(available: {', '.join(models) or 'none'})")
        direction = request.get("direction") or "a2b"
        if direction not in DIRECTIONS:
            raise OptionError(f"direction must be a2b or b2a, not {direction!r}")
        image = self.upload(request.get("image")).tensor
        assert image is not None
        size = self._size(request, image)
        sized = resize_longest(image, size) if size != max(image.shape[-2:]) else image
        translator, lock = self._translator(model)

        def run(job: Job) -> Image.Image:
            job.stage = f"translate {model} {direction}"
            with lock, torch.no_grad():
                return tensor_to_pil(translator(sized, direction, device=self.settings.device))

        command = shlex.join(["atelier", "translate", self.upload(request.get("image")).name, "--model", model,
                              "--direction", direction, "--size", str(size), "-o", "result.png"])
        return self.queue.submit("translate", run, need_bytes=int(sized.shape[-1] * sized.shape[-2]) *
                                 LIGHT_BYTES_PER_PIXEL, command=command)

    def _translator(self, model: str) -> tuple[Any, threading.Lock]:
        from ..pipelines.translation import Translator

        key = ("translate", model)
        with self._methods_lock:
            if key not in self._methods:
                self._methods[key] = (Translator(model), threading.Lock())
            return self._methods[key]

    def submit_video(self, request: dict[str, Any]) -> Job:
        """Queue the stylization of an uploaded video; the result is an MP4 in the job's folder.

        ``content`` is a video upload; method, options and styles as for images.
        """
        from ..api import map_video

        name = request.get("method") or "johnson"
        cls = get_method(name)
        options = check_options(name, request.get("options") or {}, self.models())
        video = self.upload(request.get("content"), kind="video")
        video_file = self.video_path(video.id)
        styles = [self.style_tensor(ref) for ref in request.get("styles") or []]
        if cls.uses_style_images and not styles:
            raise OptionError(f"method {name!r} needs at least one style; pick one from the gallery or upload one")
        size = None if request.get("size") is None else self._size(request, max(video.width, video.height))
        weights = request.get("style_weights")
        method, lock = self.method(name, options)
        frame = size or max(video.width, video.height)
        need = frame * frame * (HEAVY_BYTES_PER_PIXEL if name in HEAVY_METHODS else LIGHT_BYTES_PER_PIXEL)

        def run(job: Job) -> Path:
            output = job.make_workdir() / "result.mp4"
            job.stage = f"video {name}"

            def stylize_frame(tensor: Tensor) -> Tensor:
                return stylize_tensor(tensor, styles, method, style_weights=weights, device=self.settings.device,
                                      progress=False).image

            with lock:
                method.config = cls.Config.from_dict(options, method=name)
                return map_video(video_file, stylize_frame, output=output, size=size,
                                 max_pixels=self.settings.max_pixels, progress=False)

        command = reproduce_command(method=name, options=options, content=video.name, style_weights=weights,
                                    styles=[self.style_label(r) for r in request.get("styles") or []], size=size,
                                    output="result.mp4")
        return self.queue.submit("video", run, need_bytes=need, command=command)

    def _size(self, request: dict[str, Any], image: Tensor | int) -> int:
        """The output's longest side.

        ``preview_size`` for previews, else ``size`` (default: the upload's, at most ``max_size``).
        """
        longest = image if isinstance(image, int) else int(max(image.shape[-2:]))
        if request.get("preview"):
            return min(self.settings.preview_size, longest)
        size = request.get("size")
        if size is None:
            return min(longest, self.settings.max_size)
        if not isinstance(size, int) or isinstance(size, bool) or not 16 <= size <= self.settings.max_size:
            raise OptionError(f"size must be a whole number of pixels from 16 to {self.settings.max_size}, "
                              f"got {size!r}")
        return size

    def _regions(self, request: dict[str, Any], method: str, styles: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The painted corresponding regions of ``photo`` (content and style) as segmentation maps."""
        given = [request.get("content_regions"), request.get("style_regions")]
        if given == [None, None]:
            return None
        if method != "photo":
            raise OptionError("content_regions and style_regions are the corresponding regions of method 'photo'; "
                              "for other methods paint a mask (mask_painting)")
        if None in given:
            raise MaskError("paint the corresponding regions on both the content and the style")
        if styles != 1:
            raise OptionError(f"painted regions match one style image, got {styles}")
        if request.get("options", {}).get("auto_masks"):
            raise OptionError("give either painted regions or auto_masks, not both")
        content, style = (segmentation_from_painting(self.painting(g)) for g in given)
        return content, style

    def _masks(self, request: dict[str, Any], count: int, size: tuple[int, int]) -> Tensor | None:
        painting, masks = request.get("mask_painting"), request.get("masks")
        if painting is not None and masks is not None:
            raise MaskError("give either a mask painting or masks, not both")
        if painting is not None:
            arrays = list(masks_from_painting(self.painting(painting), count))
            return load_masks(arrays, count=count, size=size)
        if masks is not None:
            if not isinstance(masks, list):
                raise MaskError("masks must be a list of upload ids, one grayscale image per style")
            return load_masks([self.image(m) for m in masks], count=count, size=size)
        return None

    def close(self) -> None:
        """Stop the jobs and remove every temporary file of this server."""
        self.queue.close()
        shutil.rmtree(self._tmp, ignore_errors=True)


def encode_image(image: Image.Image | Tensor, fmt: str) -> tuple[bytes, str]:
    """``image`` as file bytes in ``fmt``, and its media type.

    ``image`` is PIL, or a ``(1, 3, H, W)`` tensor in [0, 1]; ``fmt`` is PNG, JPEG (quality 95),
    8-bit TIFF or 16-bit TIFF (``tiff16``: with the ``bitdepth`` extra, written by
    :func:`~atelier.io.images.save_image`).
    """
    if fmt not in IMAGE_FORMATS:
        raise OptionError(f"format must be one of {', '.join(IMAGE_FORMATS)}, not {fmt!r}")
    pil_format, media = IMAGE_FORMATS[fmt]
    if fmt == "tiff16":
        if not isinstance(image, Tensor):
            raise OptionError("this result has 8 bits per channel only; download it as png, jpeg or tiff")
        with tempfile.TemporaryDirectory(prefix="atelier-tiff-") as folder:
            path = save_image(image, Path(folder) / "result.tif", bit_depth=16)  # the server's own name
            return path.read_bytes(), media
    pil = tensor_to_pil(image) if isinstance(image, Tensor) else image
    buffer = io.BytesIO()
    pil.save(buffer, format=pil_format, **({"quality": 95} if pil_format == "JPEG" else {}))
    return buffer.getvalue(), media


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _latest_image(folder: Path) -> Image.Image | None:
    files = sorted(folder.glob("iteration_*.png"))
    for path in reversed(files):
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except OSError:  # being written right now: take the one before
            continue
    return None


def _remove_upload(upload: Upload) -> None:
    if upload.path is not None:
        shutil.rmtree(upload.path.parent, ignore_errors=True)
