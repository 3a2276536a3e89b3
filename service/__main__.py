"""``python -m service [--flags]``: settings from flags, environment and .env, then serve."""

from __future__ import annotations

import logging
import signal
import sys

import uvloop
from pydantic import ValidationError

from service.config import settings_from_cli
from service.errors import InvalidInput
from service.routing.experiments import ExperimentsFileError
from service.runtime import load_checked_experiments
from service.server import serve


def main(argv: list[str] | None = None) -> None:
    try:
        settings = settings_from_cli(sys.argv[1:] if argv is None else argv)
    except ValidationError as exc:  # a setting that cannot be used: name it, no traceback
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        sys.exit(f"python -m service: invalid settings: {problems}")
    logging.basicConfig(
        level=settings.server.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        load_checked_experiments(settings)
    except (ExperimentsFileError, InvalidInput) as exc:
        sys.exit(f"python -m service: {exc}")
    # uvicorn drains on SIGTERM, restores the previous handler and re-raises the signal. With this handler in
    # place, a SIGTERM that was served gracefully ends the process with 0 instead of being killed by it.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    # uvloop (shipped with uvicorn[standard]) for both transports: uvicorn only installs it when it owns the loop
    uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
