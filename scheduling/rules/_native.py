"""The rules compiled to C by mypyc, used only when they were built from exactly these sources.

The engine is most of a re-plan's CPU (docs/benchmarks.md, "Left to do"), and mypyc runs the same
modules 1.4–1.5× faster. A compiled module sits beside nothing: ``build()`` compiles a copy of the
rules' sources into ``<venv>/carnet-native/rules-<hash>/``, named by a hash of those sources
(and of the interpreter's ABI), and ``activate()``, run by ``scheduling/rules/__init__.py`` before
any rule module is imported, puts that folder first on the package's ``__path__`` only when the
hash of the sources being imported now names a finished build. So an edited ``.py`` is never
shadowed by a stale build: the hash no longer matches and the plain modules run, until the next
``build()`` (``scripts/_lib.sh`` runs it on every install and test run).

``CARNET_NATIVE_RULES=0`` turns the compiled rules off (the test command's SQLite run does, so the
plain modules keep their full test run; its PostgreSQL run uses the compiled ones, and
tests/scheduling/test_rules_native.py compares the plans both give). ``CARNET_NATIVE_DIR`` moves
the builds' folder. Pure standard library, like the rules: importable before Django.

    python -m scheduling.compile_rules build    # compile (about 30 s; needs gcc and Python.h)
    python -m scheduling.compile_rules status   # exit 0 when the compiled rules are in use
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import MutableSequence
from pathlib import Path

PACKAGE = "scheduling.rules"
HERE = Path(__file__).resolve().parent
# Every module of the package but this one, the package itself (it activates the build) and the
# plan preview (a debugging aid, built once per request, not per patient).
PLAIN = frozenset({"__init__", "_native", "preview"})
MARKER = "BUILD-COMPLETE"
ENABLED_ENV = "CARNET_NATIVE_RULES"
DIR_ENV = "CARNET_NATIVE_DIR"
# The file name ending of this interpreter's extension modules: a build for another cannot load.
SUFFIX = str(sysconfig.get_config_var("EXT_SUFFIX"))


def compiled_modules(source: Path = HERE) -> list[str]:
    """The names of the modules compiled, sorted (``engine``, ``facts``, …)."""
    return sorted(p.stem for p in source.glob("*.py") if p.stem not in PLAIN)


def sources_hash(source: Path = HERE) -> str:
    """A hash of what a build is made from: every compiled module's name and bytes, and the
    interpreter's extension ABI (a build for another Python cannot be loaded)."""
    digest = hashlib.blake2b(digest_size=12)
    digest.update(SUFFIX.encode())
    for name in compiled_modules(source):
        digest.update(b"\0" + name.encode() + b"\0")
        digest.update((source / f"{name}.py").read_bytes())
    return digest.hexdigest()


def builds_dir() -> Path:
    return Path(os.environ.get(DIR_ENV) or Path(sys.prefix) / "carnet-native")


def build_path(source: Path = HERE) -> Path:
    return builds_dir() / f"rules-{sources_hash(source)}"


def enabled() -> bool:
    return os.environ.get(ENABLED_ENV, "1") != "0"


def activate(package_path: MutableSequence[str]) -> bool:
    """Put the build of these very sources first on ``package_path`` (the package's ``__path__``)
    when it exists and is complete; leave everything as it is otherwise. True when activated."""
    if not enabled():
        return False
    try:
        found = build_path()
    except OSError:  # sources not shipped (bytecode only): nothing to compare a build with
        return False
    if not (found / MARKER).is_file():
        return False
    # The compiled modules share one library, which each of them imports by its top-level name:
    # loaded here from this build, so that no other folder on ``sys.path`` can supply it.
    # A library that does not load (damaged, another libc) leaves the plain rules: never fatal.
    for shared in found.glob(f"*__mypyc{SUFFIX}"):
        name = shared.name.removesuffix(SUFFIX)
        spec = importlib.util.spec_from_file_location(name, shared)
        if spec is None or spec.loader is None:
            return False
        try:
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        except (ImportError, OSError):
            sys.modules.pop(name, None)
            return False
    package_path.insert(0, str(found / "scheduling" / "rules"))
    return True


def active() -> bool:
    """True when the rules running in this process are the compiled ones."""
    engine = sys.modules.get(f"{PACKAGE}.engine")
    return engine is not None and not str(getattr(engine, "__file__", "")).endswith(".py")


def describe() -> str:
    """Which rules this process runs, in words for a log line or a status command."""
    import scheduling.rules.engine  # noqa: F401  # what this process runs

    if active():
        return f"the rules run compiled (mypyc, {build_path().name})"
    if not enabled():
        return f"the rules run as plain Python ({ENABLED_ENV}=0)"
    return "the rules run as plain Python: no build for these sources (python -m scheduling.compile_rules build)"


def build() -> Path:
    """Compile the rules' current sources unless that build exists; returns its folder.

    Built in a temporary copy (only ``scheduling/rules``, which imports nothing but the standard
    library), then renamed into place, so a half-made build is never found and two builds at once
    do not meet. Older builds are removed. Raises ``RuntimeError`` with mypyc's output on failure.
    """
    target = build_path()
    if (target / MARKER).is_file():
        return target
    modules = compiled_modules()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rules-", dir=target.parent) as work:
        tree = Path(work) / "tree"
        (tree / "scheduling" / "rules").mkdir(parents=True)
        (tree / "scheduling" / "__init__.py").write_text("")
        for path in HERE.glob("*.py"):
            shutil.copy2(path, tree / "scheduling" / "rules" / path.name)
        # mypy's settings for the build: none of the project's (no Django plugin needed here).
        (tree / "mypy.ini").write_text("[mypy]\n")
        files = [f"scheduling/rules/{name}.py" for name in modules]
        run = subprocess.run(  # noqa: S603  # this interpreter, fixed arguments
            [sys.executable, "-m", "mypyc", *files],
            cwd=tree,
            capture_output=True,
            text=True,
            check=False,
        )
        if run.returncode != 0:
            raise RuntimeError(f"mypyc failed (exit {run.returncode}):\n{run.stdout}\n{run.stderr}")
        out = Path(work) / "out"
        (out / "scheduling" / "rules").mkdir(parents=True)
        for name in modules:
            (tree / "scheduling" / "rules" / f"{name}{SUFFIX}").rename(out / "scheduling" / "rules" / f"{name}{SUFFIX}")
        shared = list(tree.glob(f"*__mypyc{SUFFIX}"))
        if len(shared) != 1 or len(list(out.rglob(f"*{SUFFIX}"))) != len(modules):
            raise RuntimeError(f"mypyc left an unexpected set of modules in {tree}")
        shared[0].rename(out / shared[0].name)
        (out / MARKER).write_text("\n".join(modules) + "\n")
        try:
            out.rename(target)
        except OSError:  # another build of the same sources finished first
            if not (target / MARKER).is_file():
                raise
    for old in target.parent.glob("rules-*"):
        if old != target and old.is_dir() and (old / MARKER).is_file():
            shutil.rmtree(old, ignore_errors=True)
    print(f"compiled {len(modules)} rule modules into {target}")
    return target


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "status"
    if command == "build":
        try:
            build()
        except (RuntimeError, OSError) as error:
            print(f"the rules were not compiled, they run as plain Python: {error}", file=sys.stderr)
            return 1
        return 0
    if command == "status":
        print(describe())
        return 0 if active() else 1
    print("usage: python -m scheduling.compile_rules build|status", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
