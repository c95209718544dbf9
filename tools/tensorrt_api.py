"""Record the Python API of real TensorRT releases, so the tests can check our TensorRT code
against it on machines without TensorRT or a GPU.

TensorRT's Python bindings (``tensorrt-cuXX-bindings``) are real wheels on PyPI; the libraries
they link to (libnvinfer, the ONNX parser, the plugins) are not. The bindings only need a handful
of C functions from those libraries to *import* (the factories and version getters), so this tool
compiles stand-in libraries that export just those functions (returning NULL), imports the real
bindings against them, and writes what the module declares -- classes, methods with their
pybind11 signatures, properties, enums with their values -- to tests/data/tensorrt_api/<version>.json.
Nothing is executed: no engine is built. tests/trt_api.py turns such a file into a stand-in
``tensorrt`` module that refuses any name, argument or type the real release would refuse.

Usage (network to PyPI and gcc needed; not run by the tests or CI):
    python tools/tensorrt_api.py                      # the default releases below
    python tools/tensorrt_api.py 10.16.1.11:cu12 11.4.0.106:cu13
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "tensorrt_api"
DEFAULT_RELEASES = ["10.16.1.11:cu12", "11.4.0.106:cu13"]

# The C functions the bindings resolve when they are imported (found with `nm -D --undefined-only`).
STUB_NVINFER = """
#include <stddef.h>
void* createInferBuilder_INTERNAL(void* l, int v) { return NULL; }
void* createInferRefitter_INTERNAL(void* e, void* l, int v) { return NULL; }
void* createInferRuntime_INTERNAL(void* l, int v) { return NULL; }
void* getBuilderPluginRegistry(int c) { return NULL; }
void* getPluginRegistry(void) { return NULL; }
int getInferLibVersion(void) { return VERSION; }
"""
STUB_PARSER = """
#include <stddef.h>
void* createNvOnnxParserRefitter_INTERNAL(void* r, void* l, int v) { return NULL; }
void* createNvOnnxParser_INTERNAL(void* n, void* l, int v) { return NULL; }
int getNvOnnxParserVersion(void) { return VERSION; }
"""
STUB_PLUGIN = "int initLibNvInferPlugins(void* l, const char* n) { return 0; }\n"

_PREFIX = re.compile(r"\btensorrt(?:_bindings)?\.tensorrt\.|\btensorrt(?:_bindings)?\.")


def _clean(text: str) -> str:
    return _PREFIX.sub("", text)


def _signatures(doc: str, name: str) -> list[str]:
    """The pybind11 signature lines of a docstring (several for an overloaded function),
    without the name."""
    found = []
    for line in (doc or "").splitlines():
        m = re.match(rf"^(?:\d+\. )?{re.escape(name)}(\(.*\)(?: -> .*)?)$", line.strip())
        if m and m.group(1) != "(*args, **kwargs)":
            found.append(_clean(m.group(1)))
    return found


def _enum_members(cls) -> dict[str, int] | None:
    members = getattr(cls, "__members__", None)
    if not isinstance(members, dict):
        return None
    return {k: int(v) for k, v in members.items()}


def _describe_class(cls) -> dict:
    members: dict[str, dict] = {}
    for name in dir(cls):
        if name.startswith("_") and name != "__init__":
            continue
        try:
            attr = inspect.getattr_static(cls, name)
        except AttributeError:
            continue
        if isinstance(attr, property):
            sig = _clean((attr.fget.__doc__ or "").strip().splitlines()[0]) if attr.fget else ""
            members[name] = {"kind": "property", "type": sig.rsplit("-> ", 1)[-1] if "->" in sig else "",
                             "readonly": attr.fset is None}
        elif isinstance(attr, type):
            enum = _enum_members(attr)
            if enum is not None:
                members[name] = {"kind": "enum", "members": enum}
        elif callable(attr):
            kind = "staticmethod" if type(attr).__name__ == "staticmethod" else "method"
            members[name] = {"kind": kind, "signatures": _signatures(getattr(attr, "__doc__", "") or "", name)}
        elif _enum_members(type(attr)) is not None:  # an enum value exposed on the class (Logger.WARNING)
            members[name] = {"kind": "value", "type": _clean(type(attr).__qualname__), "value": int(attr)}
    bases = [_clean(b.__name__) for b in cls.__mro__[1:] if b.__module__.startswith("tensorrt")]
    return {"bases": bases, "members": members}


def dump(module_name: str) -> dict:
    """Describe an imported bindings module (run inside the stubbed interpreter)."""
    trt = __import__(module_name)
    spec: dict = {"version": trt.__version__, "classes": {}, "enums": {}, "functions": {}}
    for name in sorted(dir(trt)):
        if name.startswith("_"):
            continue
        obj = getattr(trt, name)
        if isinstance(obj, type):
            enum = _enum_members(obj)
            if enum is not None:
                spec["enums"][name] = enum
            elif obj.__module__.startswith("tensorrt"):
                spec["classes"][name] = _describe_class(obj)
        elif callable(obj) and type(obj).__name__ == "builtin_function_or_method":
            spec["functions"][name] = _signatures(obj.__doc__ or "", name)
    return spec


def _build_stubs(folder: Path, major: str, version: str) -> None:
    number = int("".join(f"{int(p):02d}" for p in version.split(".")[:3]))  # e.g. 11.4.0 -> 110400
    for lib, src in (("nvinfer", STUB_NVINFER), ("nvonnxparser", STUB_PARSER), ("nvinfer_plugin", STUB_PLUGIN)):
        c = folder / f"{lib}.c"
        c.write_text(src)
        subprocess.run(["gcc", "-shared", "-fPIC", f"-DVERSION={number}", "-o", str(folder / f"lib{lib}.so.{major}"),
                        str(c), f"-Wl,-soname,lib{lib}.so.{major}"], check=True)


def record(release: str, out: Path) -> Path:
    """Download one release's bindings, import them against stand-in libraries, write the JSON."""
    version, _, cuda = release.partition(":")
    major = version.split(".")[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        f"tensorrt-{cuda or 'cu12'}-bindings=={version}", "-d", str(tmp)], check=True)
        wheel = next(tmp.glob("*.whl"))
        with zipfile.ZipFile(wheel) as z:
            z.extractall(tmp / "site")
        _build_stubs(tmp, major, version)
        env = {**os.environ, "LD_LIBRARY_PATH": str(tmp), "PYTHONPATH": str(tmp / "site")}
        result = subprocess.run([sys.executable, __file__, "--dump", "tensorrt_bindings"], env=env,
                                check=True, capture_output=True, text=True)
    spec = json.loads(result.stdout)
    spec["source"] = f"{wheel.name} (real bindings, imported against stand-in libraries by tools/tensorrt_api.py)"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{spec['version']}.json"
    path.write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("releases", nargs="*", default=DEFAULT_RELEASES, help="VERSION:cuXX of the bindings wheel")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--dump", help=argparse.SUPPRESS)  # internal: describe an importable module
    args = parser.parse_args()
    if args.dump:
        json.dump(dump(args.dump), sys.stdout)
        return
    for release in args.releases:
        path = record(release, args.out)
        print(f"{release}: {path.relative_to(ROOT)} ({path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
