"""``mixer`` as a subprocess that also serves the tests' httpjson push adapter (tests/push/httpjson.py),
so an end-to-end test can give a worker a push backend it controls."""

from __future__ import annotations

import sys

from mixer.cli import main
from mixer.registry import AdapterRegistry
from tests.push.httpjson import HttpJsonAdapter

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], registry=AdapterRegistry({"httpjson": HttpJsonAdapter()})))
