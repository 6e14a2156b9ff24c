"""``podnet-cni``: placeholder until the node agent lands; answers VERSION only.

Stdlib only, so that the shim starts fast.
"""

from __future__ import annotations

import json
import os
import sys

SUPPORTED_VERSIONS = ["0.4.0", "1.0.0"]


def main() -> int:
    command = os.environ.get("CNI_COMMAND", "")
    if command == "VERSION":
        print(json.dumps({"cniVersion": "1.0.0", "supportedVersions": SUPPORTED_VERSIONS}))
        return 0
    error = {
        "cniVersion": "1.0.0",
        "code": 4 if command in ("ADD", "DEL", "CHECK") else 2,
        "msg": f"podnet-cni: {command or 'no CNI_COMMAND'} is not available yet",
        "details": "the podnet node agent is not part of this release",
    }
    print(json.dumps(error))
    return 1


if __name__ == "__main__":
    sys.exit(main())
