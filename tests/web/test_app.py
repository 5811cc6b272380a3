"""The HTTP API on tiny random networks: uploads and their checks, stylize, jobs, errors as JSON."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from atelier.cli import main
from atelier.errors import OptionError
from atelier.web import check_binding
from web_helpers import content_png, running_server, style_png, tiny_studio

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install 'atelier[web]'")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx (the webtest extra)")
from fastapi.testclient import TestClient

from atelier.web.app import create_app


@pytest.fixture
def client(tiny_encoder, one_thread):
    studio = tiny_studio(tiny_encoder, max_upload_bytes=200_000)
    with TestClient(create_app(studio)) as client:
        client.studio = studio
        yield client


def _upload(client, data, name="photo.png", purpose="image"):
    response = client.post("/api/uploads", files={"file": (name, data, "image/png")}, data={"purpose": purpose})
    assert response.status_code == 200, response.text
    return response.json()


def _wait(client, job_id, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = client.get(f"/api/jobs/{job_id}").json()
        if state["state"] not in ("queued", "running"):
            return state
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {state}")


def test_methods_are_served_with_their_controls(client):
    body = client.get("/api/methods").json()
    methods = {m["name"]: m for m in body["methods"]}
    assert methods["gatys"]["heavy"] and not methods["adain"]["heavy"]
    assert "alpha" in [c["name"] for c in methods["adain"]["controls"]]
    assert client.get("/openapi.json").json()["paths"].keys() >= {"/api/stylize", "/api/translate", "/api/jobs"}


def test_stylize_returns_an_image_of_the_asked_size_in_each_format(client):
    content, style = _upload(client, content_png(48, 64)), _upload(client, style_png(), "style.png")
    body = {"content": content["id"], "styles": ["upload:" + style["id"]], "method": "adain",
            "options": {"alpha": 0.5}, "size": 32}
    response = client.post("/api/stylize", json=body)
    assert response.status_code == 200, response.text
    assert Image.open(io.BytesIO(response.content)).size == (32, 24)
    command = response.headers["x-atelier-command"]
    assert command.startswith("atelier stylize photo.png --style style.png --method adain")
    job = response.headers["x-atelier-job"]
    for fmt, kind in (("jpeg", "JPEG"), ("tiff", "TIFF")):
        image = Image.open(io.BytesIO(client.get(f"/api/jobs/{job}/result?format={fmt}").content))
        assert (image.format, image.size) == (kind, (32, 24))
    tifffile = pytest.importorskip("tifffile", reason="16-bit TIFF needs the bitdepth extra")
    deep = tifffile.imread(io.BytesIO(client.get(f"/api/jobs/{job}/result?format=tiff16").content))
    assert deep.dtype == "uint16" and deep.shape == (24, 32, 3)
    assert len(set(deep.ravel().tolist()) - set(range(0, 65536, 257))) > 0  # not 8-bit values scaled up


def test_moving_alpha_changes_the_preview_without_encoding_the_style_again(client, monkeypatch):
    content, style = _upload(client, content_png(48, 64)), _upload(client, style_png())
    body = {"content": content["id"], "styles": ["upload:" + style["id"]], "method": "adain", "preview": True}
    first = client.post("/api/stylize", json={**body, "options": {"alpha": 1.0}}).content
    method, _ = client.studio.method("adain", {"alpha": 1.0})
    calls = []
    original = method.encode_layer
    monkeypatch.setattr(method, "encode_layer", lambda image, *a, **k: calls.append(image.shape) or original(
        image, *a, **k))
    second = client.post("/api/stylize", json={**body, "options": {"alpha": 0.2}}).content
    assert first != second
    assert calls == [(1, 3, 48, 64)]  # only the content: the style's features came from the method's memo


def test_a_painted_mask_places_the_style(client):
    content, style = _upload(client, content_png(48, 64)), _upload(client, style_png())
    painting = Image.new("RGBA", (64, 48))
    painting.paste((230, 25, 75, 255), (0, 0, 32, 48))
    buffer = io.BytesIO()
    painting.save(buffer, "PNG")
    mask = _upload(client, buffer.getvalue(), "mask.png", purpose="painting")
    body = {"content": content["id"], "styles": ["upload:" + style["id"]], "method": "adain", "size": 64,
            "mask_painting": mask["id"]}
    response = client.post("/api/stylize", json=body)
    assert response.status_code == 200, response.text
    assert "--mask mask1.png" in response.headers["x-atelier-command"]
    job = response.headers["x-atelier-job"]
    mask_file = Image.open(io.BytesIO(client.get(f"/api/jobs/{job}/files/mask1.png").content))
    assert mask_file.size == (64, 48)
    assert mask_file.getpixel((5, 5)) == 255 and mask_file.getpixel((60, 5)) == 0  # painted left half only
    for name in ("mask2.png", "..%2F..%2Fetc%2Fpasswd"):
        assert client.get(f"/api/jobs/{job}/files/{name}").status_code == 404


@pytest.mark.parametrize(("payload", "status", "message"), [
    ({"method": "adain", "options": {"alfa": 1}}, 400, "unknown option 'alfa' for method 'adain'; did you mean alpha"),
    ({"method": "gatys", "options": {"save_dir": "/tmp"}}, 400, "names a file"),
    ({"method": "adain", "unknown_field": 1}, 422, "unknown_field: unknown field, refused"),
    ({"method": "no_such"}, 400, "unknown method 'no_such'"),
    ({"method": "adain", "styles": ["gallery:../../etc/passwd"]}, 404, "no gallery entry"),
    ({"method": "adain", "styles": ["file:/etc/passwd"]}, 400, "a style is 'upload:<id>' or 'gallery:<id>'"),
])
def test_bad_requests_get_one_json_line_and_a_4xx(client, payload, status, message):
    content, style = _upload(client, content_png()), _upload(client, style_png())
    body = {"content": content["id"], "styles": ["upload:" + style["id"]], **payload}
    response = client.post("/api/stylize", json=body)
    assert response.status_code == status
    assert message in response.json()["error"] and "\n" not in response.json()["error"]


def test_bad_uploads_are_refused_with_the_cli_messages(client):
    text = client.post("/api/uploads", files={"file": ("holiday.jpg", b"just some text", "image/jpeg")})
    assert text.status_code == 415
    assert text.json()["error"].startswith("holiday.jpg: not a readable image")
    assert "/tmp" not in text.json()["error"]  # the server's temporary path is never shown
    big = client.post("/api/uploads", files={"file": ("big.png", b"x" * 400_000, "image/png")})
    assert big.status_code == 413 and "upload limit" in big.json()["error"]
    unknown = client.post("/api/stylize", json={"content": "nope", "styles": []})
    assert unknown.status_code == 404 and "upload the file again" in unknown.json()["error"]


def test_a_gatys_job_reports_progress_and_cancels_keeping_its_best_image(client):
    content, style = _upload(client, content_png(48, 64)), _upload(client, style_png())
    body = {"content": content["id"], "styles": ["upload:" + style["id"]], "method": "gatys",
            "options": {"iterations": 5000, "scales": 1}, "size": 48}
    job = client.post("/api/jobs", json=body)
    assert job.status_code == 202
    job_id = job.json()["id"]
    deadline = time.time() + 20
    while client.get(f"/api/jobs/{job_id}").json()["progress"] == 0 and time.time() < deadline:
        time.sleep(0.05)
    assert client.delete(f"/api/jobs/{job_id}").status_code == 200
    state = _wait(client, job_id)
    assert state["state"] == "cancelled" and 0 < state["progress"] < 1
    result = client.get(f"/api/jobs/{job_id}/result")
    assert result.status_code == 200 and Image.open(io.BytesIO(result.content)).size == (48, 36)


def test_jobs_beyond_the_queue_limit_get_503(client):
    content, style = _upload(client, content_png()), _upload(client, style_png())
    body = {"content": content["id"], "styles": ["upload:" + style["id"]], "method": "gatys",
            "options": {"iterations": 5000, "scales": 1}, "size": 48}
    ids = [client.post("/api/jobs", json=body).json()["id"] for _ in range(client.studio.settings.queue_limit)]
    refused = client.post("/api/jobs", json=body)
    assert refused.status_code == 503 and "job queue is full (4 of 4" in refused.json()["error"]
    for job_id in ids:
        client.delete(f"/api/jobs/{job_id}")


def test_the_token_guards_the_api(tiny_encoder):
    with TestClient(create_app(tiny_studio(tiny_encoder), token="s3cret-token")) as client:
        assert client.get("/api/methods").status_code == 401
        assert client.get("/api/methods", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        assert client.get("/").status_code == 200  # the page itself holds no data
        assert client.get("/api/gallery/nothing").status_code == 404  # public paintings: no token, no such entry


def test_binding_beyond_loopback_needs_a_token(capsys):
    check_binding("127.0.0.1", None)
    check_binding("::1", None)
    with pytest.raises(OptionError, match="give --token"):
        check_binding("0.0.0.0", None)
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "give --token" in capsys.readouterr().err


def test_a_video_job_is_submitted_polled_and_downloaded(client, tmp_path):
    pytest.importorskip("av", reason="video needs the video extra (PyAV)")
    from atelier.io.video import probe_video, write_video
    from helpers import smooth_image

    source = tmp_path / "clip.mp4"
    write_video(source, (smooth_image(32, 48, seed=s) for s in range(3)), fps=6)
    video = client.post("/api/uploads", files={"file": ("clip.mp4", source.read_bytes(), "video/mp4")},
                        data={"purpose": "video"}).json()
    style = _upload(client, style_png())
    job = client.post("/api/jobs", json={"kind": "video", "content": video["id"], "method": "adain",
                                         "styles": ["upload:" + style["id"]]})
    assert job.status_code == 202, job.text
    state = _wait(client, job.json()["id"])
    assert state["state"] == "done", state["error"]
    assert state["command"].startswith("atelier stylize clip.mp4 --style photo.png --method adain")
    result = client.get(f"/api/jobs/{state['id']}/result")
    assert result.headers["content-type"] == "video/mp4"
    (tmp_path / "out.mp4").write_bytes(result.content)
    info = probe_video(tmp_path / "out.mp4")
    assert (info.width, info.height) == (48, 32)


def test_stopping_the_server_removes_every_temporary_file(tiny_encoder):
    studio = tiny_studio(tiny_encoder)
    with TestClient(create_app(studio)) as client:
        content, style = _upload(client, content_png()), _upload(client, style_png())
        body = {"content": content["id"], "styles": ["upload:" + style["id"]], "method": "gatys",
                "options": {"iterations": 5000, "scales": 1}, "size": 48}
        job = client.post("/api/jobs", json=body).json()
        while not client.get(f"/api/jobs/{job['id']}").json()["has_intermediate"]:
            time.sleep(0.05)
        folder = studio.queue.get(job["id"]).workdir
        assert folder.is_dir()
        temporary = studio._tmp
    assert not folder.exists() and not temporary.exists()  # the job was cancelled and its files removed
    assert studio.queue.get(job["id"]).state == "cancelled"


def test_photo_takes_painted_corresponding_regions(client):
    content, style = _upload(client, content_png(48, 64)), _upload(client, style_png())

    def painting(size, box):
        image = Image.new("RGBA", size)
        image.paste((230, 25, 75, 255), box)
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        return _upload(client, buffer.getvalue(), "regions.png", purpose="painting")["id"]

    body = {"content": content["id"], "styles": ["upload:" + style["id"]], "method": "photo", "size": 32,
            "options": {"iterations": 2, "refine_iterations": 1, "scales": 1},
            "content_regions": painting((64, 48), (0, 0, 32, 48)), "style_regions": painting((48, 48), (0, 0, 24, 48))}
    job = client.post("/api/jobs", json=body)
    assert job.status_code == 202, job.text
    state = _wait(client, job.json()["id"], timeout=60)
    assert state["state"] == "done", state["error"]
    assert "--content-mask content_regions.png --style-mask style_regions.png" in state["command"]
    one_side = client.post("/api/jobs", json={**body, "style_regions": None})
    assert one_side.status_code == 400 and "on both" in one_side.json()["error"]


def test_a_client_that_goes_away_cancels_its_job(tiny_encoder):
    import httpx

    studio = tiny_studio(tiny_encoder)
    with running_server(create_app(studio)) as address, httpx.Client(base_url=address) as http:
        ids = [http.post("/api/uploads", files={"file": (n, d)}).json()["id"]
               for n, d in (("photo.png", content_png()), ("style.png", style_png()))]
        body = {"content": ids[0], "styles": ["upload:" + ids[1]], "method": "gatys",
                "options": {"iterations": 5000, "scales": 1}, "size": 48}
        with pytest.raises(httpx.ReadTimeout):
            http.post("/api/stylize", json=body, timeout=1.0)  # gives up and disconnects
        (job,) = studio.queue._jobs.values()
        assert job.cancel_requested.wait(10), "the disconnect was not seen"
        assert job.finished.wait(20) and job.state == "cancelled"
