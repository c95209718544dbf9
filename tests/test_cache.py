"""Caches (TensorRT engines, exported graphs) live in the user's cache folder, never in the installed
package, and are written atomically."""

import os
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

import streamsr
from streamsr.backends.engine import EngineCache
from streamsr.cache import CACHE_ENV, cache_dir, cache_root, write_atomic
from streamsr.cli import main


def test_cache_root_order(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "mine"
    monkeypatch.delenv(CACHE_ENV)
    assert cache_root() == tmp_path / "xdg" / "streamsr"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # the XDG rules ignore a relative path
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "streamsr"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir("engines") == tmp_path / "home" / ".cache" / "streamsr" / "engines"


def test_engine_cache_defaults_to_the_user_cache_not_the_package(tmp_path, monkeypatch):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = EngineCache().folder
    assert folder == tmp_path / "xdg" / "streamsr" / "engines"
    package_parent = Path(streamsr.__file__).resolve().parents[1]  # site-packages when installed
    assert not folder.resolve().is_relative_to(package_parent)
    assert EngineCache(tmp_path / "explicit").folder == tmp_path / "explicit"  # --engine-dir still wins


def test_engines_list_and_clean_use_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    engines = tmp_path / "engines"
    engines.mkdir()
    (engines / "espcn_x2-0123456789ab-1x3x8x8_1x3x8x8_1x3x8x8-fp16-trt10.3.0-gpu-sm90.engine").write_bytes(b"x" * 10)
    (engines / "timing.cache").write_bytes(b"t")
    r = CliRunner().invoke(main, ["engines", "list"])
    assert r.exit_code == 0, r.stderr
    assert "espcn_x2-0123456789ab" in r.stdout and f"1 engine(s) in {engines}" in r.stdout
    r = CliRunner().invoke(main, ["engines", "clean"])
    assert r.exit_code == 0 and "removed 2 file(s)" in r.stdout
    assert not list(engines.iterdir())
    other = tmp_path / "other"
    r = CliRunner().invoke(main, ["engines", "list", "--engine-dir", str(other)])
    assert r.exit_code == 0 and f"0 engine(s) in {other}" in r.stdout


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "deep" / "er" / "graph.onnx"  # the folder is created
    write_atomic(path, b"first")
    write_atomic(path, b"second")
    assert path.read_bytes() == b"second"
    assert [p.name for p in path.parent.iterdir()] == ["graph.onnx"]


def test_write_atomic_failing_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "graph.onnx"
    write_atomic(path, b"old")

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space"):
        write_atomic(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["graph.onnx"]


def test_readers_never_see_half_a_file(tmp_path):
    """A writer replacing a large file over and over while readers read it: every read is one
    whole version (a plain write_bytes would show readers a truncated or mixed file)."""
    path = tmp_path / "graph.onnx"
    versions = [bytes([v]) * (1 << 21) for v in (1, 2, 3)]
    write_atomic(path, versions[0])
    stop, seen, bad = threading.Event(), set(), []

    def read():
        while not stop.is_set():
            data = path.read_bytes()
            if data in versions:
                seen.add(data[:1])
            else:
                bad.append(len(data))

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    try:
        for i in range(60):
            write_atomic(path, versions[i % 3])
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert not bad and seen
