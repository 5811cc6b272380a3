"""The HTTP layer of ``atelier serve``: a FastAPI app serving the studio page and its JSON API.

OpenAPI at ``/docs`` and ``/openapi.json``; the work is in :mod:`atelier.web.studio`.

Every error is JSON ``{"error": "<one line>"}`` with a 4xx status (503 when the queue is full or
memory is short), using the same messages as the CLI.
"""

from __future__ import annotations

import asyncio
import hmac
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import AtelierError, ImageError, ImageTooLargeError
from .forms import PALETTE, method_summary
from .jobs import InsufficientMemoryError, Job, QueueFullError
from .studio import NotFoundError, Studio, StudioSettings, encode_image

__all__ = ["StylizeRequest", "TranslateRequest", "create_app"]

#: Download formats: tiff is 8-bit, tiff16 16 bits per channel (the ``bitdepth`` extra).
Format = Literal["png", "jpeg", "tiff", "tiff16"]


class StylizeRequest(BaseModel):
    """Stylize an uploaded image (``POST /api/stylize``, or ``POST /api/jobs`` with ``kind``)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["stylize", "video"] = Field("stylize", description="for /api/jobs: an image or a video job")
    content: str = Field(description="upload id of the content image (a video for kind=video)")
    styles: list[str] = Field(default=[], description="'upload:<id>' or 'gallery:<id>', one per style; none "
                                                      "for methods with trained styles (johnson)")
    method: str = Field("adain", description="a method name (GET /api/methods)")
    options: dict[str, Any] = Field(default={}, description="the method's options; unknown ones are refused")
    style_weights: list[float] | None = Field(None, description="blend weight per style (normalised)")
    mask_painting: str | None = Field(None, description="upload id of an RGBA painting (purpose=painting): "
                                                        "style k where the brush used palette colour k")
    masks: list[str] | None = Field(None, description="upload ids of grayscale masks, one per style")
    content_regions: str | None = Field(None, description="photo: upload id of a region painting of the content "
                                                          "(purpose=painting); regions match by brush colour")
    style_regions: str | None = Field(None, description="photo: the matching region painting of the style")
    size: int | None = Field(None, description="longest side of the output in px (default: the content's)")
    preview: bool = Field(False, description="render at the server's preview size")
    preserve_color: str = Field("none", description="none, luminance or histogram")
    seed: int | None = None


class TranslateRequest(BaseModel):
    """Translate an uploaded image with a trained CycleGAN / U-GAT-IT model."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["translate"] = "translate"
    image: str = Field(description="upload id")
    model: str = Field(description="a translation model name (GET /api/models)")
    direction: Literal["a2b", "b2a"] = "a2b"
    size: int | None = None


def _status(error: Exception) -> int:
    if isinstance(error, (QueueFullError, InsufficientMemoryError)):
        return 503
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, ImageTooLargeError):
        return 413
    if isinstance(error, ImageError):
        return 415 if "not a readable" in str(error) else 422
    return 400


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)


class _Guard:
    """The token and the upload size limit, checked before a request's body is read.

    A plain ASGI middleware (not ``@app.middleware``, whose wrapper hides a client's disconnect
    from ``Request.is_disconnected``, which is how a request's job is cancelled when its client goes).
    """

    def __init__(self, app: Any, *, token: str | None, max_bytes: int) -> None:
        self.app, self.token, self.max_bytes = app, token, max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            refusal = self.refuse(scope["path"], scope["method"], dict(scope["headers"]))
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def refuse(self, path: str, method: str, headers: dict[bytes, bytes]) -> JSONResponse | None:
        # The gallery's example paintings are public (CSS thumbnails cannot send a header); all else needs the token.
        if self.token and path.startswith("/api") and not path.startswith("/api/gallery/"):
            given = headers.get(b"authorization", b"").decode("latin-1").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return _error(401, "this server needs its token: send 'Authorization: Bearer <token>'")
        if method in ("POST", "PUT", "PATCH"):
            length = headers.get(b"content-length", b"").decode("latin-1")
            if not length.isdigit():  # a chunked body could not be refused before it is read
                return _error(411, "send the request with a Content-Length header")
            limit = self.max_bytes + 64 * 1024  # the file plus the form's own bytes
            if int(length) > limit:
                return _error(413, f"the request is {int(length) / 2**20:.1f} MB, above the upload limit of "
                                   f"{self.max_bytes / 2**20:.0f} MB; send a smaller file")
        return None


def create_app(studio: Studio | None = None, *, token: str | None = None) -> FastAPI:
    """The app serving ``studio`` (a default one when None).

    With ``token``, every ``/api`` request needs ``Authorization: Bearer <token>`` (the page reads
    it from ``#token=...`` in its address).
    """
    studio = studio or Studio(StudioSettings())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        studio.close()  # cancel the jobs, remove every temporary file

    app = FastAPI(title="atelier studio", version="1", lifespan=lifespan,
                  description="Neural style transfer over HTTP: upload images, stylize, translate, run video jobs.")
    app.state.studio = studio

    app.add_middleware(_Guard, token=token, max_bytes=studio.settings.max_upload_bytes)

    @app.exception_handler(AtelierError)
    async def atelier_error(request: Request, error: AtelierError) -> JSONResponse:
        return _error(_status(error), str(error))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = "unknown field, refused" if first.get("type") == "extra_forbidden" else first.get("msg", "invalid")
        return _error(422, f"{where}: {message}" if where else message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return _error(error.status_code, str(error.detail))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(resources.files("atelier.web").joinpath("static/index.html").read_text())

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        files = {"studio.js": "text/javascript", "studio.css": "text/css"}  # a fixed list: no path from the request
        if name not in files:
            return _error(404, f"no static file {name!r}")
        return Response(resources.files("atelier.web").joinpath(f"static/{name}").read_bytes(), media_type=files[name])

    @app.get("/api/methods", summary="every method with its options as controls")
    async def methods() -> dict[str, Any]:
        return {"methods": method_summary(studio.models()), "palette": [list(c) for c in PALETTE],
                "preview_size": studio.settings.preview_size}

    @app.get("/api/gallery", summary="example paintings and trained per-style networks")
    async def gallery() -> dict[str, Any]:
        return {"items": studio.gallery()}

    @app.get("/api/models", summary="trained networks: per-style (johnson) and translation")
    async def models() -> dict[str, Any]:
        return {"johnson": studio.models(), "translation": studio.models("translation")}

    @app.get("/api/gallery/{entry_id}", summary="a gallery painting (JPEG); ?thumb=true for a thumbnail")
    async def gallery_image(entry_id: str, thumb: bool = False) -> Response:
        data, media = encode_image(await asyncio.to_thread(studio.gallery_image, entry_id, thumb), "jpeg")
        return Response(data, media_type=media, headers={"Cache-Control": "max-age=3600"})

    @app.post("/api/uploads", summary="upload an image, a mask painting or a video; returns its id")
    async def upload(file: Annotated[UploadFile, File()],
                     purpose: Annotated[Literal["image", "painting", "video"], Form()] = "image") -> dict[str, Any]:
        data = await file.read(studio.settings.max_upload_bytes + 1)
        found = await asyncio.to_thread(studio.add_upload, data, file.filename, purpose=purpose)
        return found.public()

    async def wait(job: Job, request: Request) -> None:
        """Wait for ``job``; a client that goes away cancels it."""
        while not job.finished.is_set():
            if await request.is_disconnected():
                studio.queue.cancel(job.id)
                return
            await asyncio.sleep(0.05)

    def result_response(job: Job, fmt: str) -> Response:
        if job.state != "done":
            status = 409 if job.state in ("queued", "running") else 422
            return _error(status, job.error or f"job {job.id} is {job.state}")
        data, media = encode_image(job.result, fmt)
        return Response(data, media_type=media, headers={"X-Atelier-Job": job.id,
                                                         "X-Atelier-Command": job.command})

    @app.post("/api/stylize", summary="stylize an image and wait for the result (PNG, JPEG or TIFF)",
              responses={200: {"content": {"image/png": {}}}})
    async def stylize(body: StylizeRequest, request: Request, format: Format = "png") -> Response:
        job = await asyncio.to_thread(studio.submit_stylize, body.model_dump())
        await wait(job, request)
        return result_response(job, format)

    @app.post("/api/translate", summary="translate an image and wait for the result",
              responses={200: {"content": {"image/png": {}}}})
    async def translate(body: TranslateRequest, request: Request, format: Format = "png") -> Response:
        job = await asyncio.to_thread(studio.submit_translate, body.model_dump())
        await wait(job, request)
        return result_response(job, format)

    @app.post("/api/jobs", status_code=202, summary="submit a stylize, translate or video job; poll it")
    async def submit(body: StylizeRequest | TranslateRequest) -> dict[str, Any]:
        request = body.model_dump()
        if isinstance(body, TranslateRequest):
            job = await asyncio.to_thread(studio.submit_translate, request)
        elif body.kind == "video":
            job = await asyncio.to_thread(studio.submit_video, request)
        else:
            job = await asyncio.to_thread(studio.submit_stylize, request)
        return job.public()

    def find(job_id: str) -> Job:
        job = studio.queue.get(job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id!r} on this server (finished jobs are kept for the last "
                                f"{studio.queue.history})")
        return job

    @app.get("/api/jobs/{job_id}", summary="a job's state, progress and ETA")
    async def poll(job_id: str) -> dict[str, Any]:
        return find(job_id).public()

    @app.delete("/api/jobs/{job_id}", summary="cancel a job (gatys keeps its best image so far)")
    async def cancel(job_id: str) -> dict[str, Any]:
        job = find(job_id)
        studio.queue.cancel(job_id)
        return job.public()

    @app.get("/api/jobs/{job_id}/result", summary="a finished job's image (or video)")
    async def result(job_id: str, format: Format = "png") -> Response:
        job = find(job_id)
        if job.kind == "video" and job.state == "done":
            return FileResponse(job.result, media_type="video/mp4", filename="result.mp4")
        if job.state == "cancelled" and job.result is not None:  # the best image before the cancel
            data, media = encode_image(job.result, format)
            return Response(data, media_type=media, headers={"X-Atelier-Job": job.id})
        return await asyncio.to_thread(result_response, job, format)

    @app.get("/api/jobs/{job_id}/files/{name}", summary="a file the job's command names (a painted mask)")
    async def job_file(job_id: str, name: str) -> Response:
        job = find(job_id)
        if name not in job.files:  # looked up by name in the job's own table: never a path
            return _error(404, f"job {job_id} has no file {name!r} (it has: {', '.join(sorted(job.files)) or 'none'})")
        return Response(job.files[name], media_type="image/png",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.get("/api/jobs/{job_id}/intermediate", summary="the latest intermediate image of a running gatys job")
    async def intermediate(job_id: str) -> Response:
        job = find(job_id)
        image = None if job.intermediate is None else await asyncio.to_thread(job.intermediate)
        if image is None:
            return _error(404, f"job {job_id} has no intermediate image yet")
        data, media = encode_image(image, "jpeg")
        return Response(data, media_type=media)

    return app
