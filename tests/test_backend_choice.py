"""``--backend auto`` takes the fastest backend measured for the network (the shipped speed table),
and the torch backend's default channels_last on the CPU follows the same table. No timing here:
the choices are checked against the table's numbers."""

import json

import pytest
from model_cases import model_cases

from streamsr.backends import PREFERENCE, backend_option_names, create_backend, list_backends, resolve_backend
from streamsr.backends.base import get_backend_class
from streamsr.backends.choice import SPEED_TABLE, measured_speeds
from streamsr.backends.torch_backend import TorchConfig, _channels_last
from streamsr.models import get_model

TABLE = json.loads(SPEED_TABLE.read_text())
ROWS = TABLE["rows"]
#: every registered network by name
NETWORKS = {v.name: v for v in (get_model(name).variant(factor, part) for name, factor, part in model_cases())}
CPU_VARIANTS = sorted({r["variant"] for r in ROWS if r["device"] == "cpu" and r["precision"] == "fp32"})


def _fastest(variant: str, device: str = "cpu", backend: str | None = None) -> dict:
    rows = [r for r in ROWS if (r["variant"], r["device"], r["precision"]) == (variant, device, "fp32")
            and backend in (None, r["backend"])]
    return max(rows, key=lambda r: r["fps"])


def test_the_table_is_sound():
    for r in ROWS:
        assert r["variant"] in NETWORKS, r
        assert r["backend"] in list_backends() and r["device"] in PREFERENCE, r
        assert r["fps"] > 0 and set(r["options"]) <= set(backend_option_names(r["backend"])), r


def test_every_network_is_measured_on_the_cpu():
    """auto is measured, not guessed, for every registered network (re-measure with
    tools/measure_backend_speed.py --models NAME --merge after adding one)."""
    assert set(NETWORKS) <= set(CPU_VARIANTS), sorted(set(NETWORKS) - set(CPU_VARIANTS))


@pytest.mark.parametrize("variant", CPU_VARIANTS)
def test_auto_picks_the_fastest_measured_backend(variant):
    assert resolve_backend("auto", "cpu", variant) == _fastest(variant)["backend"]


def test_auto_takes_a_variant_or_its_name_and_the_run_precision():
    variant = get_model("espcn").variant(2)
    assert resolve_backend("auto", "cpu", variant) == resolve_backend("auto", "cpu", variant.name)
    assert resolve_backend("auto", "cpu", variant, "fp32") == _fastest(variant.name)["backend"]


def test_the_table_is_not_one_fixed_order():
    """The point of measuring: the fastest backend differs between networks on this CPU."""
    assert len({_fastest(v)["backend"] for v in CPU_VARIANTS}) > 1


def test_unmeasured_networks_and_devices_walk_the_preference():
    first_available = next(b for b in PREFERENCE["cpu"] if get_backend_class(b).available("cpu"))
    assert resolve_backend("auto", "cpu") == first_available  # no network given (callers that do not know it)
    assert resolve_backend("auto", "cpu", "nosuchnet_x2") == first_available
    assert measured_speeds("espcn_x2", "cpu", "int4") == []  # another precision is another measurement


def test_a_faster_backend_that_is_unavailable_is_passed_over(monkeypatch):
    variant = next(v for v in CPU_VARIANTS if _fastest(v)["backend"] == "onnxruntime")
    monkeypatch.setattr(get_backend_class("onnxruntime"), "available", classmethod(lambda cls, device: False))
    runner_up = max((r for r in ROWS if (r["variant"], r["device"], r["precision"]) == (variant, "cpu", "fp32")
                     and r["backend"] != "onnxruntime"), key=lambda r: r["fps"])
    assert resolve_backend("auto", "cpu", variant) == runner_up["backend"]


def test_a_named_backend_is_never_overridden():
    for variant in CPU_VARIANTS:
        for name in ("torch", "onnxruntime", "openvino"):
            assert resolve_backend(name, "cpu", variant) == name


@pytest.mark.parametrize("model,factor", [("espcn", 2), ("srresnet", 2)])
def test_create_backend_auto_loads_the_measured_choice(model, factor):
    variant = get_model(model).variant(factor)
    backend = create_backend("auto", variant, device="cpu")
    try:
        assert backend.name == _fastest(variant.name)["backend"]
    finally:
        backend.close()


@pytest.mark.parametrize("variant", CPU_VARIANTS)
def test_torch_channels_last_on_the_cpu_follows_the_table(variant):
    net = NETWORKS[variant]
    wanted = bool(_fastest(variant, backend="torch")["options"].get("channels_last", False))
    assert _channels_last(TorchConfig(device="cpu"), net) is wanted
    for forced in (True, False):  # the user's choice wins
        assert _channels_last(TorchConfig(device="cpu", channels_last=forced), net) is forced
    assert _channels_last(TorchConfig(device="cuda"), net) is True  # always on CUDA unless told otherwise


def test_the_torch_backend_takes_the_measured_memory_format():
    import torch

    for variant in ("espcn_x2", "area_x2-down"):  # small networks, one of each kind on this CPU
        backend = create_backend("torch", NETWORKS[variant], device="cpu")
        wanted = _fastest(variant, backend="torch")["options"]["channels_last"]
        assert (backend.memory_format is torch.channels_last) is wanted
        fmt = torch.channels_last if wanted else torch.contiguous_format
        assert all(p.is_contiguous(memory_format=fmt) for p in backend.model.parameters() if p.dim() == 4)
