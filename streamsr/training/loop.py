"""The training loop of ``streamsr train``: Adam with a cosine schedule, checkpoints and resume,
validation against bicubic, shipped weights carrying their recipe."""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..degradation import Degradation
from ..evaluate import ModuleBackend, Upscaler, iter_items, score_items, score_round_trip
from ..models.geometry import Parts
from ..models.inputs import InputAssembler
from ..models.registry import count_parameters, get_model, load_weights
from .config import TrainConfig
from .data import PatchSampler
from .gan import Discriminator, VGG19Features

__all__ = ["VAL_DEGRADATION", "TrainResult", "source_tree", "train"]

log = logging.getLogger(__name__)

#: the folder of the running streamsr package (its parent is a checkout, or site-packages)
_PACKAGE_DIR = Path(__file__).resolve().parents[1]

#: the degraded validation setting of the issue: blur width 1.6, noise σ 10
VAL_DEGRADATION = Degradation(blur=1.6, noise=10.0)

Report = Callable[[dict], None]


class TrainResult(dict):
    """Final numbers of a run (a dict, JSON-ready)."""


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _flatten_optimizer(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict, dict]:
    tensors, meta = {}, {}
    for pid, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                meta[f"{prefix}.{pid}.{key}"] = value
    return tensors, meta


def _restore_optimizer(opt: torch.optim.Optimizer, prefix: str, tensors: dict, meta: dict) -> None:
    state = opt.state_dict()
    restored: dict = {}
    for name, value in list(tensors.items()) + list(meta.items()):
        head, pid, key = name.split(".", 2)
        if head == prefix:
            restored.setdefault(int(pid), {})[key] = value
    state["state"] = restored
    opt.load_state_dict(state)


def _save_checkpoint(path: Path, step: int, elapsed: float, nets: dict, opts: dict) -> None:
    tensors, meta = {}, {"step": step, "elapsed": elapsed}
    for name, net in nets.items():
        tensors.update({f"{name}/{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()})
    for name, opt in opts.items():
        t, m = _flatten_optimizer(opt, f"opt_{name}")
        tensors.update(t)
        meta.update(m)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"state": json.dumps(meta)})
    tmp.replace(path)  # a crash mid-write never leaves a broken checkpoint


def _load_checkpoint(path: Path, nets: dict, opts: dict) -> tuple[int, float]:
    from safetensors import safe_open

    tensors = load_file(str(path))
    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["state"])
    for name, net in nets.items():
        net.load_state_dict({k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith(name + "/")})
    for name, opt in opts.items():
        prefix = f"opt_{name}"
        _restore_optimizer(opt, prefix, {k: v for k, v in tensors.items() if k.startswith(prefix + ".")},
                           {k: v for k, v in meta.items() if k.startswith(prefix + ".")})
    return int(meta["step"]), float(meta["elapsed"])


def validate(model, spec, cfg: TrainConfig) -> dict:
    """Mean Y-PSNR of the model and bicubic on the validation folder (clean; and degraded with
    :data:`VAL_DEGRADATION` for degradation-aware models), at each of ``cfg.val_scales`` (keys
    ``psnr_clean_x3`` etc. when there are several). A down/up pair (IRN): the round trip (``psnr``),
    bicubic down and up (``psnr_bicubic``) and its LR against the bicubic LR (``psnr_lr``)."""
    model.eval()
    out = {}
    if isinstance(spec.geometry, Parts):  # a down/up pair: the round trip against bicubic down and up
        down, up = (Upscaler(ModuleBackend(getattr(model, p), spec.variant(cfg.scale, p))) for p in ("down", "up"))
        scores = [score_round_trip(down, up, hr, cfg.scale, name) for name, hr in iter_items(cfg.val_dir)]
        model.train()
        return {k: round(float(np.mean([getattr(s, k) for s in scores])), 3)
                for k in ("psnr", "psnr_bicubic", "psnr_lr")}
    settings = [("clean", None)] + ([("degraded", VAL_DEGRADATION)] if spec.conditioned else [])
    for scale in cfg.val_scales:
        tag = "" if len(cfg.val_scales) == 1 else f"_x{scale:g}"
        for label, deg in settings:
            up = Upscaler(ModuleBackend(model, spec.variant(cfg.scale)), deg or Degradation())
            scores = score_items(up, cfg.val_dir, scale, deg)
            out[f"psnr_{label}{tag}"] = round(float(np.mean([s.psnr for s in scores])), 3)
            out[f"psnr_{label}{tag}_bicubic"] = round(float(np.mean([s.psnr_bicubic for s in scores])), 3)
    model.train()
    return out


def train(cfg: TrainConfig, *, resume: bool = False, report: Report | None = None) -> TrainResult:
    """Run one training configuration.

    Args:
        cfg: the configuration.
        resume: continue from ``out_dir/last.safetensors`` (step, optimizer state and schedule).
        report: called with a dict (step, loss, lr, val numbers) now and then (progress display).

    Returns:
        :class:`TrainResult` with the final validation numbers and paths.
    """
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = _device(cfg.device)
    spec = get_model(cfg.model, cfg.scale)
    if spec.scales and cfg.scale is None:
        from ..errors import ConfigError

        raise ConfigError(f"model {spec.name} has one network per factor: set scale = "
                          f"{' | '.join(map(str, spec.scales))} in the training config")
    if cfg.loss_options and spec.train_loss is None:
        from ..errors import ConfigError

        raise ConfigError(f"loss_options are for a model's own loss; {spec.name} trains with loss = {cfg.loss!r}")
    model = spec.build(cfg.scale, **cfg.model_kwargs).to(device).train()
    own_loss = spec.loss
    init = cfg.gan.init if cfg.loss == "gan" else cfg.init
    init_recipe = None
    if init:
        load_weights(model, init)
        init_recipe = _stored_recipe(init)
    sampler = PatchSampler(cfg.train_dir, cfg.scale if spec.scales else cfg.scale_range, cfg.lr_patch,
                           cfg.degradation, seed=cfg.seed)
    inputs = InputAssembler(spec.inputs)
    pixel_loss = F.l1_loss if cfg.loss == "l1" else F.mse_loss
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    nets, opts = {"g": model}, {"g": opt}
    disc = content = None
    if cfg.loss == "gan":
        disc = Discriminator().to(device)
        nets["d"], opts["d"] = disc, torch.optim.Adam(disc.parameters(), lr=cfg.gan.d_lr, betas=(0.9, 0.999))
        if cfg.gan.vgg_weights:
            content = VGG19Features(cfg.gan.vgg_weights).to(device)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ship_to = _ship_destination(spec, cfg.scale, out_dir) if cfg.ship else None
    ckpt = out_dir / "last.safetensors"
    step, elapsed = 0, 0.0
    if resume:
        if not ckpt.is_file():
            from ..errors import ConfigError

            raise ConfigError(f"nothing to resume: {ckpt} does not exist")
        step, elapsed = _load_checkpoint(ckpt, nets, opts)
    start = time.monotonic() - elapsed
    loss_avg = None
    budget = cfg.minutes * 60 if cfg.minutes else None

    def progress() -> float:
        frac = step / cfg.iterations
        if budget:
            frac = max(frac, (time.monotonic() - start) / budget)
        return min(frac, 1.0)

    while progress() < 1.0:
        for o in opts.values():  # cosine to 1e-6 over the run (by steps or wall clock)
            base = cfg.lr if o is opt else cfg.gan.d_lr
            for g in o.param_groups:
                g["lr"] = 1e-6 + 0.5 * (base - 1e-6) * (1 + math.cos(math.pi * progress()))
        lr, hr, conds = sampler.batch(cfg.batch)
        lr, hr = lr.to(device), hr.to(device)
        extra = inputs.arrays(conds, lr.shape[2], lr.shape[3], out=(hr.shape[2], hr.shape[3]))
        args = [lr] + [torch.from_numpy(extra[i.name]).to(device) for i in inputs.inputs]
        if cfg.loss == "gan":
            loss = _gan_step(model, disc, content, opts["d"], args, hr, cfg)
        elif own_loss is not None:  # the model's own (UDVD: every dynamic module supervised)
            loss = own_loss(model, args, hr, **cfg.loss_options)
        else:
            loss = pixel_loss(model(*args), hr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
        info = {"step": step, "loss": loss_avg, "lr": opt.param_groups[0]["lr"], "progress": progress()}
        if step % cfg.val_every == 0:
            info.update(validate(model, spec, cfg))
        if step % cfg.checkpoint_every == 0:
            _save_checkpoint(ckpt, step, time.monotonic() - start, nets, opts)
        if report is not None:
            report(info)
    _save_checkpoint(ckpt, step, time.monotonic() - start, nets, opts)
    wall = time.monotonic() - start
    model = model.cpu().eval()
    result = TrainResult(step=step, wall_seconds=round(wall), **validate(model, spec, cfg))
    recipe = {
        "model": cfg.model, "scale": cfg.scale, **({} if spec.scales else {"scale_range": list(cfg.scale_range)}),
        "model_kwargs": cfg.model_kwargs, "iterations": step,
        "batch": cfg.batch, "lr_patch": cfg.lr_patch,
        "loss": cfg.loss if cfg.loss == "gan" or own_loss is None else f"{own_loss.__name__} (the model's own)",
        "optimizer": f"adam lr {cfg.lr} cosine to 1e-6"
                     + (f", gradient norm clipped to {cfg.grad_clip:g}" if cfg.grad_clip else ""),
        "loss_options": cfg.loss_options, "augment": "rot90 + hflip", "seed": cfg.seed, "degradation": asdict(cfg.degradation),
        "gan": asdict(cfg.gan) if cfg.loss == "gan" else None, "train_data": cfg.train_dir,
        "val_data": cfg.val_dir, "init": init, "init_recipe": init_recipe, "wall_seconds": round(wall), "parameters": count_parameters(model),
        "hardware": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                    f"{device.type}, torch {torch.__version__}", "validation": dict(result),
    }
    final = out_dir / spec.weights_file(cfg.scale)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    meta = {"recipe": json.dumps(recipe), "model_kwargs": json.dumps(cfg.model_kwargs)}
    save_file(state, str(final), metadata=meta)
    (out_dir / f"{final.stem}.json").write_text(json.dumps(recipe, indent=2) + "\n")
    result["weights"] = str(final)
    if ship_to is not None:
        if ship_to != final:
            save_file(state, str(ship_to), metadata=meta)
            ship_to.with_suffix(".json").write_text(json.dumps(recipe, indent=2) + "\n")
        result["shipped"] = str(ship_to)
    return result


def source_tree(package_dir: str | Path | None = None) -> Path | None:
    """The source checkout streamsr runs from, or None for an installed package.

    A checkout is the package folder's parent when it holds a ``pyproject.toml`` declaring the
    project ``streamsr`` and the package's weights folder is writable.

    Args:
        package_dir: the ``streamsr`` package folder (default: the running one).
    """
    package = Path(package_dir) if package_dir is not None else _PACKAGE_DIR
    root = package.parent
    try:
        name = tomllib.loads((root / "pyproject.toml").read_text()).get("project", {}).get("name")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    weights = package / "models" / "weights"
    return root if name == "streamsr" and os.access(weights, os.W_OK) else None


def _ship_destination(spec, scale: int, out_dir: Path) -> Path:
    """Where ``ship = true`` puts the final weights: the checkout's package weights, or (installed
    package: never write into site-packages) the run's own copy in ``out_dir``."""
    if source_tree(_PACKAGE_DIR) is not None:
        return _PACKAGE_DIR / "models" / "weights" / spec.weights_file(scale)
    log.warning("ship = true, but streamsr runs from an installed package (%s), not a source checkout: "
                "the final weights stay in %s; use them with --weights", _PACKAGE_DIR, out_dir)
    return out_dir / spec.weights_file(scale)


def _stored_recipe(path: str | Path) -> dict | None:
    """The recipe a weights file carries in its metadata (None for files without one)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        raw = (f.metadata() or {}).get("recipe")
    return json.loads(raw) if raw else None


def _gan_step(model, disc, content, d_opt, args, hr, cfg: TrainConfig):
    """One discriminator update, then the generator's loss (adversarial + content + pixel)."""
    sr = model(*args)
    real, fake = disc(hr), disc(sr.detach())
    d_loss = F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + \
        F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
    d_opt.zero_grad(set_to_none=True)
    d_loss.backward()
    d_opt.step()
    adv = disc(sr)
    g_adv = F.binary_cross_entropy_with_logits(adv, torch.ones_like(adv))
    if content is not None:
        feat = F.mse_loss(content(sr), content(hr))
    else:  # the discriminator's own features (no VGG-19 can be downloaded here)
        with torch.no_grad():
            targets = disc.features(hr)
        feat = sum(F.l1_loss(a, b) for a, b in zip(disc.features(sr), targets))
    return cfg.gan.feature_weight * feat + cfg.gan.adv_weight * g_adv + cfg.gan.pixel_weight * F.l1_loss(sr, hr)
