"""Wait until the greeter API answers on $GREETER_URL/health.

The pipeline starts the `api` service and the steps together, so the first step that needs
it waits here (up to 30 seconds) instead of failing while the server is still starting.
"""

import os
import sys
import time
import urllib.request

URL = os.environ.get("GREETER_URL", "http://api:8080").rstrip("/")
TIMEOUT = 30.0
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy


def main() -> int:
    deadline = time.monotonic() + TIMEOUT
    attempt = 0
    while True:
        attempt += 1
        try:
            with OPENER.open(URL + "/health", timeout=2) as resp:
                print(f"{URL} is up (HTTP {resp.status}, attempt {attempt})", flush=True)
                return 0
        except OSError as exc:  # refused, unknown host yet, timeout, HTTP error
            error = exc
        if time.monotonic() >= deadline:
            print(f"{URL} did not answer within {TIMEOUT:.0f} s: {error}", file=sys.stderr)
            return 1
        print(f"waiting for {URL} (attempt {attempt}: {error})", flush=True)
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
