"""Compute only what changed: tile reuse for static cameras.

A camera that watches the same scene all day sends frames that differ from the one before mostly
by sensor noise. :class:`TileReuse` cuts each LR frame into tiles of one shape (a kept core plus
the model's context on each side, :func:`~streamsr.backends.tiling.window_ranges`), compares each
tile's window with what it held when its output was last computed, and runs only the changed tiles
through the network, batched together; the others keep their output. The composite equals
whole-frame inference wherever tiles were recomputed, as tiling does, when the overlap covers the
network's receptive field (a model's declared ``halo``, else ``--tile-overlap``).

A tile changed when one 8×8 block of its window moved more than the noise does: the block's mean
Δ (signed: noise averages out, an object does not) or its mean |Δ| (a texture that changed but kept
its mean) above a multiple of the same statistic's noise level, and above an absolute floor for clean
video. The level starts from the first frame's own noise (a Haar estimate) and follows the lower
quartile of the blocks over the frames that are mostly static (a camera's picture mostly is), never
over a cut or a pan, which would raise the bar until motion is missed. The core is 32 LR pixels a side, or 4 × the overlap for wide networks (the
overlap read for context then costs at most 2.25× the kept pixels).

Drift guard: every tile is recomputed at each input keyframe (``refresh`` None; and at least every
:data:`KEYFRAME_MAX_AGE` seconds of media time), or once it is ``refresh`` seconds old; a frame in
which more than ``scene_cut`` of the tiles changed (a cut, a camera move) runs whole, without tile
overhead; a change of what the model is told (its noise level) recomputes everything.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from ..backends.tiling import Tile, cut_input, output_size, tile_grid, window_ranges
from ..errors import ConfigError

__all__ = ["KEYFRAME_MAX_AGE", "REUSE_MODES", "ReuseCounters", "ReusePolicy", "TileReuse", "plan_reuse"]

REUSE_MODES = ("auto", "on", "off")
#: with keyframe refreshes, the longest a tile's output is reused (a stream may have no keyframes)
KEYFRAME_MAX_AGE = 10.0
#: side of the blocks a change is looked for in (LR pixels)
BLOCK = 8
#: frames a file's run measures before ``--reuse auto`` decides whether reuse pays
PROBE_FRAMES = 60


@dataclass(frozen=True)
class ReusePolicy:
    """How a run reuses tiles.

    Args:
        core: LR pixels a tile keeps, a side.
        overlap: LR pixels of context read on each side of the core.
        refresh: seconds after which a tile is recomputed; None: at every input keyframe (and after
            :data:`KEYFRAME_MAX_AGE` seconds).
        scene_cut: above this fraction of changed tiles the frame runs whole.
        sensitivity: a block changed when its mean Δ (signed) exceeds this many times the lower
            quartile of its size over all blocks (for Gaussian noise 18 × the quartile is 6 σ)...
        floor: ... and this absolute level (of [0, 1]);
        spread_sensitivity, spread_floor: or when its mean |Δ| exceeds this many times the lower
            quartile block's, and this absolute level (a change of texture that keeps the mean).
        probe: after this many frames, turn reuse off when it saved less than ``min_saving`` (0: never).
        min_saving: whole-frame network pixels over reuse network pixels that keep reuse on.
    """

    core: int = 32
    overlap: int = 16
    refresh: float | None = None
    scene_cut: float = 0.5
    sensitivity: float = 18.0
    floor: float = 2.0 / 255
    spread_sensitivity: float = 3.0
    spread_floor: float = 8.0 / 255
    probe: int = 0
    min_saving: float = 1.5

    @property
    def max_age(self) -> float:
        """The longest a tile's output may be reused, in seconds of media time."""
        return self.refresh if self.refresh is not None else KEYFRAME_MAX_AGE


def plan_reuse(mode: str, refresh: float | None, *, live: bool, learned: bool, shrinks: bool, colour_on: str,
               halo: int | None, overlap: int) -> ReusePolicy | None:
    """Whether and how a run reuses tiles (``mode`` and ``refresh`` as :class:`~streamsr.config.RunConfig`
    checked them): ``on`` always, ``auto`` for live inputs and, on files, while the first
    :data:`PROBE_FRAMES` frames show it pays; never for a network that shrinks the picture, a fixed
    filter, or on the device colour chain.

    Raises:
        ConfigError: ``--reuse on`` where tiles cannot be reused (says why).
    """
    if mode == "off":
        return None
    why = ("the network shrinks the picture" if shrinks else "the model is a fixed filter" if not learned
           else "colour is converted on the device (--colour-on cpu allows it)" if colour_on == "device" else None)
    if why is not None:
        if mode == "on":
            raise ConfigError(f"--reuse on: tiles cannot be reused here: {why}")
        return None
    overlap = halo if halo is not None else overlap
    return ReusePolicy(core=max(32, 4 * overlap), overlap=overlap, refresh=refresh,
                       probe=PROBE_FRAMES if mode == "auto" and not live else 0)


class ReuseCounters:
    """What reuse did: frames, tiles recomputed (the fraction per frame over a recent window), and
    network pixels against whole-frame inference. Written by the inference thread, read by others.

    Args:
        window: how many recent frames the fraction's mean and p95 cover.
    """

    def __init__(self, window: int = 2048):
        self._recent: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()
        self.frames = self.whole_frames = self.scene_cuts = self.refreshes = 0
        self.network_pixels = self.frame_pixels = 0
        self.on = True
        self.decision: str | None = None

    def add(self, fraction: float, network_pixels: int, frame_pixels: int, why: str | None = None) -> None:
        """Count one frame: the fraction of its tiles recomputed and the LR pixels the network read."""
        with self._lock:
            self._recent.append(fraction)
            self.frames += 1
            self.network_pixels += network_pixels
            self.frame_pixels += frame_pixels
            self.whole_frames += why is not None
            self.scene_cuts += why == "scene cut"
            self.refreshes += why == "refresh"

    @property
    def saving(self) -> float | None:
        """Whole-frame network pixels over those reuse ran (None before the first frame)."""
        return self.frame_pixels / self.network_pixels if self.network_pixels else None

    def summary(self) -> dict:
        """Counts, the recomputed fraction's mean and p95 over recent frames, the saving."""
        with self._lock:
            recent = np.array(self._recent)
            out = {"on": self.on, "frames": self.frames, "whole_frames": self.whole_frames,
                   "scene_cuts": self.scene_cuts, "refreshes": self.refreshes,
                   "recomputed_mean": round(float(recent.mean()), 4) if len(recent) else None,
                   "recomputed_p95": round(float(np.percentile(recent, 95)), 4) if len(recent) else None,
                   "network_pixels_saved": round(self.saving, 3) if self.saving else None}
        if self.decision:
            out["decision"] = self.decision
        return out


def block_means(diff: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """Mean of ``diff`` (T×H×W) over each block×block block (edge blocks smaller): T×⌈H/b⌉×⌈W/b⌉."""
    _, h, w = diff.shape
    ys, xs = np.arange(0, h, block), np.arange(0, w, block)
    sums = np.add.reduceat(np.add.reduceat(diff, ys, axis=1), xs, axis=2)
    counts = np.diff(np.append(ys, h))[:, None] * np.diff(np.append(xs, w))[None, :]
    return sums / counts


def _track(level: float, value: float) -> float:
    """A noise level followed over mostly static frames: down fast, up by at most a fifth a frame."""
    if value < level:
        return 0.5 * (level + value)
    return min(value, 1.2 * level + 0.2 / 255)


def spatial_noise(image: np.ndarray) -> float:
    """σ of white noise in a C×H×W frame (of [0, 1]) from one frame: the median |HH| of its Haar
    level / 0.6745, averaged over channels (as :func:`~streamsr.degradation.estimate_noise`)."""
    x = image[:, : image.shape[1] // 2 * 2, : image.shape[2] // 2 * 2]
    hh = (x[:, 0::2, 0::2] - x[:, 0::2, 1::2] - x[:, 1::2, 0::2] + x[:, 1::2, 1::2]) / 2.0
    return float(np.median(np.abs(hh).reshape(len(x), -1), axis=1).mean() / 0.6745)


def expected_levels(sigma: float) -> list[float]:
    """The two statistics' lower quartiles between two frames of the same scene under white noise
    σ: the signed block mean's (its σ is σ·√2 / √(3·8·8)) and the block mean of |Δ| (≈ 1.08 σ)."""
    return [0.3186 * sigma * np.sqrt(2.0 / (3 * BLOCK * BLOCK)), 1.08 * sigma]


class TileReuse:
    """One stream's tile reuse on a backend (see the module docstring). Called frame by frame,
    in order, from one thread.

    Args:
        backend: the loaded backend (its ``infer`` runs whole frames and batches of tiles).
        policy: how tiles are cut, compared and refreshed.
        counters: where it counts what it did (a new :class:`ReuseCounters` when None).
    """

    def __init__(self, backend, policy: ReusePolicy, counters: ReuseCounters | None = None):
        self.backend, self.policy = backend, policy
        self.counters = counters or ReuseCounters()
        self._shape: tuple | None = None
        self._out: np.ndarray | None = None
        self._noise: list[float] | None = None  # the levels of the two statistics
        # the any-scale decoders read one query table per call: tiles, each with its own, run alone
        self._batch = 1 if any(i.per_batch for i in backend.variant.inputs) else backend.capabilities.max_batch

    def _start(self, h: int, w: int, big: tuple[int, int]) -> None:
        p = self.policy
        self.tiles: list[Tile] = tile_grid((h, w), big, self.backend.variant.factor,
                                           lambda size: window_ranges(size, p.core, p.overlap))
        self._shape, self._out, self._noise = (h, w, big), None, None

    def __call__(self, image: np.ndarray, extra: dict[str, np.ndarray], time: float, key: bool) -> np.ndarray:
        """The output of one C×H×W frame (``extra``: the model's other inputs for it, batch 1),
        presented at ``time`` seconds; ``key``: the input flagged it a keyframe."""
        _, h, w = image.shape
        big = output_size(self.backend.variant, h, w, extra)
        if not self.counters.on:  # --reuse auto turned it off: whole frames, nothing kept
            return self.backend.infer(np.ascontiguousarray(image[None]), extra)[0]
        if self._shape != (h, w, big):
            self._start(h, w, big)
        windows = np.stack([image[:, t.lr_y[0]:t.lr_y[1], t.lr_x[0]:t.lr_x[1]] for t in self.tiles])
        told = {k: float(np.mean(v)) for k, v in extra.items()}
        if self._out is None or self._retold(told) or (key and self.policy.refresh is None):
            out = self._whole(image, extra, windows, time, told, why="refresh")
        else:
            changed = self._changed(windows)
            stale = (time - self._born > self.policy.max_age) | (time < self._born)
            run = changed | stale
            if changed.mean() > self.policy.scene_cut or run.mean() > self.policy.scene_cut:
                why = "scene cut" if changed.mean() > self.policy.scene_cut else "refresh"
                out = self._whole(image, extra, windows, time, told, why=why)
            else:
                out = self._tiles(np.flatnonzero(run), windows, extra, time, h * w)
        self._probe()
        return out

    def _retold(self, told: dict[str, float]) -> bool:
        """Whether what the model is told moved by more than 5 % since the tiles were computed."""
        return any(abs(v - self._told.get(k, v)) > 1e-3 + 0.05 * abs(self._told.get(k, v)) for k, v in told.items())

    def _changed(self, windows: np.ndarray) -> np.ndarray:
        """Per tile: whether a block of its window moved beyond the noise since it was computed. On a
        frame that the shift alone makes a cut, tiles that changed only in spread are left unmarked:
        the whole frame runs."""
        p, n, channels = self.policy, len(windows), windows.shape[1]
        diff = windows - self._refs
        # channel means as sums scaled once (numpy's mean over an axis is several times slower)
        shift = np.abs(block_means(diff.sum(axis=1))) / channels  # noise averages out; a moving object does not
        t_shift = max(p.floor, p.sensitivity * self._noise[0])
        changed = shift.reshape(n, -1).max(axis=1) > t_shift
        if changed.mean() > p.scene_cut:
            return changed  # a cut or a pan: the spread cannot make it less of one, and it teaches no noise
        np.abs(diff, out=diff)
        spread = block_means(diff.sum(axis=1)) / channels  # a texture change of zero mean
        t_spread = max(p.spread_floor, p.spread_sensitivity * self._noise[1])
        changed |= spread.reshape(n, -1).max(axis=1) > t_spread
        if changed.mean() <= p.scene_cut:
            # learn the camera's noise from frames that are mostly static (their lower quartile of
            # blocks); never from a cut or a pan, which would raise the bar until motion is missed
            self._noise = [_track(old, float(np.quantile(new, 0.25)))
                           for old, new in zip(self._noise, (shift, spread), strict=True)]
        return changed

    def _whole(self, image, extra, windows, time, told, why: str) -> np.ndarray:
        """Run the whole frame; every tile's output and window is now this frame's."""
        out = self.backend.infer(np.ascontiguousarray(image[None]), extra)[0]
        if self._noise is None:  # a first guess from the picture itself, refined over time
            self._noise = expected_levels(spatial_noise(image))
        self._out, self._refs, self._told = out, windows, told
        self._born = np.full(len(self.tiles), time)
        self.counters.add(1.0, image.shape[1] * image.shape[2], image.shape[1] * image.shape[2], why)
        return out

    def _tiles(self, run: np.ndarray, windows: np.ndarray, extra: dict, time: float, pixels: int) -> np.ndarray:
        """Recompute the tiles ``run`` (indices) in batches of one output shape; the rest reuse."""
        out = self._out
        if len(run):
            out = out.copy()  # earlier outputs are still being encoded: never written in place
            groups: dict[tuple, list[int]] = {}
            for i in run:
                t = self.tiles[i]
                groups.setdefault((t.net_y[1] - t.net_y[0], t.net_x[1] - t.net_x[0]), []).append(int(i))
            limit = self._batch or len(run)
            for members in groups.values():
                for k in range(0, len(members), limit):
                    self._run_batch(members[k : k + limit], windows, extra, out)
            self._refs[run] = windows[run]
            self._born[run] = time
            self._out = out
        self.counters.add(len(run) / len(self.tiles), len(run) * windows.shape[2] * windows.shape[3], pixels)
        return out

    def _run_batch(self, members: list[int], windows: np.ndarray, extra: dict, out: np.ndarray) -> None:
        variant = self.backend.variant
        tiles = [self.tiles[i] for i in members]
        feeds = {i.name: np.concatenate([cut_input(variant, i, extra[i.name], t, self.policy.overlap, np.array)
                                         for t in tiles]) for i in variant.inputs if i.name in extra}
        parts = self.backend.infer(np.ascontiguousarray(windows[members]), feeds)
        for t, part in zip(tiles, parts, strict=True):
            out[:, t.keep_y[0]:t.keep_y[1], t.keep_x[0]:t.keep_x[1]] = t.kept_part(part)

    def _probe(self) -> None:
        """``--reuse auto`` on a file: after the probe, keep reuse only where it pays."""
        c, p = self.counters, self.policy
        if p.probe and c.on and c.frames == p.probe and (c.saving or 0) < p.min_saving:
            c.on = False
            c.decision = (f"tile reuse turned off after {c.frames} frames: it saved only {c.saving:.2f}x of the "
                          f"network's pixels (below {p.min_saving}x); --reuse on keeps it")
