"""A stand-in ``tensorrt`` module made from the recorded API of a real TensorRT release
(tests/data/tensorrt_api/<version>.json, written by tools/tensorrt_api.py from the real bindings).

Every attribute, constructor and method call is checked against what that release declares: an
unknown name, a wrong number of arguments, an unknown keyword or an argument of the wrong type
raises :class:`ApiMismatch`, as the real module would raise AttributeError/TypeError. Calls are
logged; methods return stand-ins of their declared return type (``bool`` -> True), and a test can
give a method its own result through ``returns``. It runs nothing: it checks that our TensorRT code
speaks the release's API, not that the engine it would build is right.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

API_DIR = Path(__file__).parent / "data" / "tensorrt_api"
RELEASES = sorted(p.stem for p in API_DIR.glob("*.json"))


class ApiMismatch(AssertionError):
    """Our code used something this TensorRT release does not have or would refuse."""


def _split_top(text: str) -> list[str]:
    """Split on commas outside brackets."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[(<{":
            depth += 1
        elif ch in "])>}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


class Signature:
    """One pybind11 signature: ``(self: X, a: T, b: T = d) -> R``."""

    def __init__(self, text: str):
        m = re.match(r"^\((.*)\)(?: -> (.*))?$", text)
        if not m:
            raise ValueError(text)
        self.text, self.returns = text, (m.group(2) or "None").strip()
        self.params = []  # (name, type, has_default)
        for part in _split_top(m.group(1)):
            if part in ("*", "/"):
                continue
            name, _, rest = part.partition(":")
            annotation, eq, _ = rest.partition("=")
            self.params.append((name.strip(), annotation.strip(), bool(eq)))

    def bind(self, api: TensorRTApi, args: tuple, kwargs: dict, method: bool) -> str | None:
        """None when the call fits this signature, else why not."""
        params = self.params[1:] if method else self.params
        if len(args) > len(params):
            return f"{len(args)} positional arguments for {len(params)} parameters"
        bound = dict(zip([p[0] for p in params], args))
        for k, v in kwargs.items():
            if k not in [p[0] for p in params]:
                return f"no parameter named {k!r}"
            if k in bound:
                return f"{k!r} given twice"
            bound[k] = v
        for name, annotation, has_default in params:
            if name not in bound:
                if not has_default:
                    return f"missing argument {name!r}"
                continue
            why = api.type_error(annotation, bound[name])
            if why:
                return f"{name}: {why}"
        return None


class EnumValue(int):
    """A value of a recorded enum: an int that knows its enum (as pybind11 enums convert with int())."""

    def __new__(cls, enum: str, name: str, value: int):
        obj = super().__new__(cls, value)
        obj.enum, obj.name = enum, name
        return obj

    def __repr__(self):
        return f"<{self.enum}.{self.name}: {int(self)}>"


class EnumType:
    """A recorded enum: its members as attributes and in ``__members__``."""

    def __init__(self, qualname: str, members: dict[str, int]):
        self.__name__ = qualname
        self.__members__ = {k: EnumValue(qualname, k, v) for k, v in members.items()}

    def __getattr__(self, name):
        try:
            return self.__dict__["__members__"][name]
        except KeyError:
            raise ApiMismatch(f"TensorRT {self.__name__} has no member {name!r}") from None


class Instance:
    """A stand-in object of a recorded class."""

    def __init__(self, api: TensorRTApi, cls: str):
        self._api, self._cls = api, cls

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._api.member(self._cls, name, self)

    def __setattr__(self, name, value):
        if name.startswith("_"):
            return object.__setattr__(self, name, value)
        entry = self._api.lookup(self._cls, name)
        if entry is None or entry["kind"] != "property" or entry["readonly"]:
            raise ApiMismatch(f"TensorRT {self._cls}.{name} cannot be set")
        self._api.calls.append((f"{self._cls}.{name}=", (value,), {}))

    def __bytes__(self):
        # IHostMemory supports the buffer protocol (bytes(engine)); a serialized stand-in
        if "IHostMemory" not in self._api.family(self._cls):
            raise ApiMismatch(f"bytes() of a TensorRT {self._cls}")
        return b"serialized-by-stand-in-tensorrt"

    def __repr__(self):
        return f"<stand-in tensorrt.{self._cls}>"


class TensorRTApi:
    """The stand-in module for one recorded release (use as ``sys.modules['tensorrt']``)."""

    def __init__(self, version: str):
        spec = json.loads((API_DIR / f"{version}.json").read_text())
        self.__version__ = spec["version"]
        self._spec = spec
        self.calls: list[tuple[str, tuple, dict]] = []
        self.returns: dict[str, object] = {}  # "Class.method" -> value or callable(*args, **kwargs)
        self._enums = {name: EnumType(name, members) for name, members in spec["enums"].items()}
        for cls, entry in spec["classes"].items():
            for name, m in entry["members"].items():
                if m["kind"] == "enum":
                    self._enums[f"{cls}.{name}"] = EnumType(f"{cls}.{name}", m["members"])

    # -- what the module declares
    def lookup(self, cls: str, name: str) -> dict | None:
        for c in self.family(cls):
            entry = self._spec["classes"].get(c, {}).get("members", {}).get(name)
            if entry is not None:
                return entry
        return None

    def family(self, cls: str) -> list[str]:
        return [cls, *self._spec["classes"].get(cls, {}).get("bases", [])]

    def _enum_named(self, annotation: str) -> EnumType | None:
        name = annotation.split("[")[0]
        if name in self._enums:
            return self._enums[name]
        # nested enums are recorded under the class that defines them and its subclasses
        owner, _, leaf = name.rpartition(".")
        for key, enum in self._enums.items():
            if owner and key.endswith(f".{leaf}") and owner in self.family(key.rpartition(".")[0]):
                return enum
        return None

    def type_error(self, annotation: str, value) -> str | None:
        """Why pybind11 would refuse ``value`` for a parameter annotated ``annotation`` (or None)."""
        a = annotation.replace("typing.", "")
        if a.startswith("Optional[") or a.endswith("| None"):
            if value is None:
                return None
            a = a.removeprefix("Optional[").removesuffix("]").removesuffix("| None").strip()
        if a in self._spec["classes"]:
            if a == "Dims" or a.startswith("Dims"):  # tuples and lists convert implicitly
                ok = isinstance(value, (tuple, list)) and all(isinstance(v, int) for v in value)
            else:
                ok = isinstance(value, Instance) and a in self.family(value._cls)
            return None if ok else f"expects {a}, got {value!r}"
        enum = self._enum_named(a)
        if enum is not None:
            ok = isinstance(value, EnumValue) and value.enum == enum.__name__
            return None if ok else f"expects {enum.__name__}, got {value!r}"
        if a in ("SupportsInt", "int"):
            return None if isinstance(value, int) and not isinstance(value, bool) else f"expects int, got {value!r}"
        if a in ("SupportsFloat", "float"):
            return None if isinstance(value, (int, float)) else f"expects float, got {value!r}"
        if a in ("tuple", "list"):
            return None if type(value).__name__ == a else f"expects {a}, got {value!r}"
        if a == "bool":
            return None if isinstance(value, bool) else f"expects bool, got {value!r}"
        if a == "str":
            return None if isinstance(value, str) else f"expects str, got {value!r}"
        if a in ("buffer", "typing_extensions.Buffer", "collections.abc.Buffer", "bytes"):
            return None if isinstance(value, (bytes, bytearray, memoryview)) else f"expects a buffer, got {value!r}"
        return None  # other annotations (object, callables, sequences) are not checked

    def _result(self, key: str, returns: str, args, kwargs):
        if key in self.returns:
            r = self.returns[key]
            return r(*args, **kwargs) if callable(r) else r
        if returns in self._spec["classes"]:
            return Instance(self, returns)
        return {"bool": True, "int": 0, "None": None, "str": "", "float": 0.0}.get(returns)

    def _call(self, cls: str, name: str, signatures: list[str], args, kwargs, method: bool):
        if not signatures:
            raise ApiMismatch(f"TensorRT {cls}.{name} cannot be called from Python")
        reasons = []
        for text in signatures:
            sig = Signature(text)
            why = sig.bind(self, args, kwargs, method)
            if why is None:
                self.calls.append((f"{cls}.{name}", args, kwargs))
                return self._result(f"{cls}.{name}", sig.returns, args, kwargs)
            reasons.append(f"{text}: {why}")
        raise ApiMismatch(f"TensorRT {self.__version__} refuses {cls}.{name}{args!r}{kwargs or ''}: "
                          + "; ".join(reasons))

    def member(self, cls: str, name: str, instance: Instance):
        entry = self.lookup(cls, name)
        if entry is None:
            raise ApiMismatch(f"TensorRT {self.__version__} {cls} has no attribute {name!r}")
        if entry["kind"] == "property":
            key = f"{cls}.{name}"
            if key in self.returns:
                return self.returns[key]
            return self._result(key, entry["type"], (), {})
        if entry["kind"] == "value":
            return self._enums[entry["type"]].__members__[name] if entry["type"] in self._enums else entry["value"]
        if entry["kind"] == "enum":
            return self._enum_named(f"{cls}.{name}")
        return lambda *args, **kwargs: self._call(cls, name, entry["signatures"], args, kwargs, method=True)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        spec = self.__dict__["_spec"]
        if name in self._enums:
            return self._enums[name]
        if name in spec["classes"]:
            return _Class(self, name)
        if name in spec["functions"]:
            return lambda *a, **k: self._call("tensorrt", name, spec["functions"][name], a, k, method=False)
        raise ApiMismatch(f"TensorRT {self.__version__} has no attribute {name!r}")

    def called(self, name: str) -> list[tuple[tuple, dict]]:
        """The (args, kwargs) of every logged call of ``Class.method``."""
        return [(a, k) for n, a, k in self.calls if n == name]


class _Class:
    """A recorded class: constructible where it has ``__init__`` signatures; class-level members."""

    def __init__(self, api: TensorRTApi, name: str):
        self._api, self._name = api, name

    def __call__(self, *args, **kwargs):
        entry = self._api.lookup(self._name, "__init__") or {"signatures": []}
        self._api._call(self._name, "__init__", entry["signatures"], args, kwargs, method=True)
        return Instance(self._api, self._name)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        entry = self._api.lookup(self._name, name)
        if entry is None:
            raise ApiMismatch(f"TensorRT {self._api.__version__} {self._name} has no attribute {name!r}")
        if entry["kind"] == "enum":
            return self._api._enum_named(f"{self._name}.{name}")
        if entry["kind"] == "value":
            return self._api._enums[entry["type"]].__members__[name]
        raise ApiMismatch(f"TensorRT {self._name}.{name} is not a class-level attribute")
