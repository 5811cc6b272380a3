"""Engine-independent planning: style assignment, mirrored outputs, the manifest."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from atelier.batch import Job, Manifest, list_images, plan_jobs
from atelier.errors import ImageError, OptionError

INPUTS = [f"dir{i % 3}/img{i:03d}.jpg" for i in range(60)]
STYLES = [f"s{i}.jpg" for i in range(7)]


def test_same_seed_same_assignment_other_seed_another():
    first = plan_jobs(INPUTS, STYLES, "random", seed=3)
    assert plan_jobs(list(reversed(INPUTS)), list(reversed(STYLES)), "random", seed=3) == first
    other = plan_jobs(INPUTS, STYLES, "random", seed=4)
    assert sum(a.style != b.style for a, b in zip(first, other)) > 30  # ~6/7 of them change
    assert len({job.style for job in first}) == len(STYLES)


def test_random_style_of_an_input_does_not_depend_on_the_other_inputs():
    everything = {job.input: job.style for job in plan_jobs(INPUTS, STYLES, "random", seed=1)}
    some = plan_jobs([*INPUTS[::5], "new.png"], STYLES, "random", seed=1)
    assert all(everything[job.input] == job.style for job in some if job.input in everything)


def test_cycle_uses_every_style_equally_often():
    counts = Counter(job.style for job in plan_jobs(INPUTS, STYLES, "cycle", seed=0))
    assert set(counts) == set(STYLES) and max(counts.values()) - min(counts.values()) <= 1
    assert plan_jobs(INPUTS, STYLES, "cycle", seed=0) != plan_jobs(INPUTS, STYLES, "cycle", seed=1)


def test_all_pairs_every_input_with_every_style_into_distinct_files():
    jobs = plan_jobs(INPUTS[:4], ["a/x.png", "b/x.png"], "all", seed=0)
    assert len(jobs) == 8 and len({job.output for job in jobs}) == 8
    assert jobs[0].output == "dir0/img000__a-x.png"


def test_outputs_mirror_the_tree_and_take_the_format():
    jobs = plan_jobs(["a/b/photo.jpeg", "top.png"], STYLES, "random", seed=0, suffix=".jpg")
    assert [job.output for job in jobs] == ["a/b/photo.jpg", "top.jpg"]


@pytest.mark.parametrize("mode, suffix, styles", [("each", ".png", STYLES), ("random", ".gif", STYLES),
                                                  ("random", ".png", [])])
def test_bad_plans_are_refused(mode, suffix, styles):
    with pytest.raises(OptionError):
        plan_jobs(INPUTS, styles, mode, seed=0, suffix=suffix)


def test_list_images_is_recursive_sorted_and_skips_hidden_and_other_files(tmp_path):
    for name in ["b.jpg", "a/c.PNG", ".hidden/d.jpg", "a/.e.jpg", "notes.txt", ".hidden/none/f.txt"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert list_images(tmp_path, "inputs") == ["a/c.PNG", "b.jpg"]
    with pytest.raises(ImageError, match="no such folder"):
        list_images(tmp_path / "missing", "inputs")
    with pytest.raises(ImageError, match="no images"):
        list_images(tmp_path / ".hidden" / "none", "inputs")


def _record(job: Job, status="done", options=None):
    return {"input": job.input, "style": job.style, "output": job.output, "options": options or {"m": 1},
            "seconds": 0.1, "status": status}


def test_manifest_skips_done_jobs_with_the_same_options_and_a_present_file(tmp_path):
    jobs = plan_jobs(["a.jpg", "b.jpg", "c.jpg", "d.jpg"], STYLES, "random", seed=0)
    for job in jobs:
        (tmp_path / job.output).write_bytes(b"png")
    (tmp_path / jobs[3].output).unlink()  # recorded, but the file is gone: redo
    manifest = Manifest(tmp_path)
    manifest.append([_record(jobs[0]), _record(jobs[1], "failed"), _record(jobs[3])])
    manifest.append([_record(jobs[2], options={"m": 2})])
    assert [job.input for job in manifest.pending(jobs, {"m": 1})] == ["b.jpg", "c.jpg", "d.jpg"]
    assert [job.input for job in manifest.pending(jobs, {"m": 2})] == ["a.jpg", "b.jpg", "d.jpg"]


def test_a_line_cut_by_a_kill_is_ignored_and_does_not_swallow_the_next(tmp_path):
    jobs = plan_jobs(["a.jpg", "b.jpg"], STYLES, "random", seed=0)
    for job in jobs:
        (tmp_path / job.output).write_bytes(b"png")
    manifest = Manifest(tmp_path)
    manifest.append([_record(jobs[0])])
    with open(manifest.path, "a") as file:
        file.write(json.dumps(_record(jobs[1]))[:25])  # killed mid-line
    manifest.append([_record(jobs[1])])
    assert manifest.done({"m": 1}) == {"a.png", "b.png"}
    assert len(list(manifest.records())) == 2
