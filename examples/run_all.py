"""Run every example against moto; exit non-zero if any of them fails.

    python examples/run_all.py            # all of them
    python examples/run_all.py app_registration pytest_usage   # some, by name

Each ``examples/*.py`` program (this one aside) runs as its own process; each folder
with ``test_*.py`` files runs under pytest from inside that folder, so its own pytest
configuration applies. CI runs this script.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
TIMEOUT_SECONDS = 300

# Never hand a real AWS identity to an example: they all run on moto.
_STRIPPED = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_KMS",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "SSE_GUARD_POLICY",
)


@dataclass(frozen=True)
class Example:
    name: str
    argv: tuple[str, ...]
    cwd: Path


def examples() -> list[Example]:
    found = [
        Example(path.stem, (sys.executable, str(path)), HERE)
        for path in sorted(HERE.glob("*.py"))
        if path.name != Path(__file__).name and not path.name.startswith("_")
    ]
    found += [
        Example(folder.name, (sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"), folder)
        for folder in sorted(p for p in HERE.iterdir() if p.is_dir())
        if any(folder.glob("test_*.py"))
    ]
    return found


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _STRIPPED}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def run(example: Example, env: dict[str, str]) -> bool:
    print(f"=== {example.name}: {' '.join(Path(a).name if i == 0 else a for i, a in enumerate(example.argv))}", flush=True)
    started = time.monotonic()
    try:
        result = subprocess.run(example.argv, cwd=example.cwd, env=env, timeout=TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        print(f"=== {example.name}: TIMED OUT after {TIMEOUT_SECONDS}s", flush=True)
        return False
    ok = result.returncode == 0
    print(f"=== {example.name}: {'ok' if ok else f'FAILED (exit {result.returncode})'} in {time.monotonic() - started:.1f}s\n", flush=True)
    return ok


def main(argv: list[str]) -> int:
    chosen = examples()
    if argv:
        unknown = sorted(set(argv) - {e.name for e in chosen})
        if unknown:
            print(f"no example named {', '.join(unknown)}; have {', '.join(e.name for e in chosen)}", file=sys.stderr)
            return 2
        chosen = [e for e in chosen if e.name in argv]
    env = environment()
    failed = [e.name for e in chosen if not run(e, env)]
    if failed:
        print(f"{len(failed)} of {len(chosen)} examples failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"all {len(chosen)} examples passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
