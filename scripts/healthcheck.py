"""Container health check: exit 0 when the service answers 200 on /v2/health/ready, 1 otherwise.

The image's HEALTHCHECK runs it with the venv's python (the slim image has no curl). It reads the port from
SLIMSERVE_SERVER__HTTP_PORT, as the service does, so a port changed by environment is still the one checked.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

READY_PATH = "/v2/health/ready"


def main() -> int:
    port = os.environ.get("SLIMSERVE_SERVER__HTTP_PORT", "8000")
    url = f"http://127.0.0.1:{port}{READY_PATH}"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
