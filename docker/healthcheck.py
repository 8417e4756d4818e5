"""Container health probe: exit 0 when a URL answers 2xx/3xx, 1 otherwise.

Usage: python docker/healthcheck.py [URL]
The URL defaults to $HEALTHCHECK_URL, else the API's health endpoint on
127.0.0.1:$API_PORT. Standard library only, so it runs in any role.
"""

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    port = os.environ.get("API_PORT", "8000")
    default = f"http://127.0.0.1:{port}/api/v1/health"
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("HEALTHCHECK_URL", default)
    try:
        with urllib.request.urlopen(url, timeout=8) as response:  # noqa: S310 (local URL)
            status = response.status
    except urllib.error.HTTPError as error:
        print(f"unhealthy: {url} answered {error.code}")
        return 1
    except OSError as error:
        print(f"unhealthy: {url}: {error}")
        return 1
    print(f"healthy: {url} answered {status}")
    return 0 if status < 400 else 1


if __name__ == "__main__":
    sys.exit(main())
