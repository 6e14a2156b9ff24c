"""Install ``podnet-cni`` into a runtime's CNI plugin directory as a fast launcher.

A runtime finds a plugin by its ``type`` in its plugin directories (``/opt/cni/bin``,
``/usr/lib/cni``) and execs it for every pod. The console script pip makes would start
Python with ``site`` and every ``.pth`` hook of the environment, which costs more than
the shim's whole job; the launcher written here runs the same code with ``python -I -S``
(isolated, no ``site``) and the package's directory put on ``sys.path`` by hand.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

PLUGIN_NAME = "podnet-cni"


class InstallError(RuntimeError):
    pass


def package_root() -> Path:
    """A directory that holds this package under its import name ``node_agent``."""
    package = Path(__file__).resolve().parent
    if package.name == "node_agent":
        return package.parent
    alias = package.parent / "node_agent"
    if alias.is_dir() and alias.resolve() == package:
        return package.parent
    raise InstallError(f"{package} is not importable as node_agent from its parent directory")


def launcher_text(python: str | None = None, root: Path | None = None) -> str:
    return (
        f"#!{python or sys.executable} -IS\n"
        "# podnet-cni: the CNI plugin of podnet; forwards each call to the node agent.\n"
        "import sys\n"
        f"sys.path.insert(0, {str(root or package_root())!r})\n"
        "from node_agent.cni import main\n"
        "sys.exit(main())\n"
    )


def install_cni(directory: Path, name: str = PLUGIN_NAME) -> Path:
    """Write the launcher atomically (a runtime may exec it meanwhile); returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    fd, temporary = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(launcher_text())
        os.chmod(temporary, 0o755)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target
