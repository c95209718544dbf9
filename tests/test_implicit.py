"""LIIF and LTE: the query tables by hand, and the separable implementation against the papers'
formulation (grid_sample of the four neighbours, full MLP input, area ensemble) written out here."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from streamsr.metrics import imresize
from streamsr.models import build_model, get_model
from streamsr.models.inputs import Grid, InputAssembler, get_provider
from streamsr.models.tables import AXIS_CHANNELS, CELL_CLIP, axis_table


def test_axis_tables_by_hand_2x2_to_3x5():
    rows, cols = axis_table(2, 3), axis_table(2, 5)
    assert rows.shape == (AXIS_CHANNELS, 3) and cols.shape == (AXIS_CHANNELS, 5)
    # coordinates -2/3, 0, 2/3; LR cell centres -1/2, 1/2
    np.testing.assert_array_equal(rows[0], [0, 0, 1])  # v = -1
    np.testing.assert_array_equal(rows[1], [0, 1, 1])  # v = +1
    np.testing.assert_allclose(rows[2], [-1 / 3, 1, 1 / 3], atol=1e-6)
    np.testing.assert_allclose(rows[3], [-1 / 3, -1, 1 / 3], atol=1e-6)
    np.testing.assert_allclose(rows[4], [0.5, 0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(rows[6], [4 / 3] * 3, atol=1e-6)  # cell 2/3 of [-1,1] times 2 LR pixels
    assert rows[7:11].min() >= 0 and rows[7:11].max() <= 1
    # coordinates -0.8, -0.4, 0, 0.4, 0.8
    np.testing.assert_array_equal(cols[0], [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(cols[1], [0, 1, 1, 1, 1])
    np.testing.assert_allclose(cols[2], [-0.6, 0.2, 1.0, 1.8, 0.6], atol=1e-6)
    np.testing.assert_allclose(cols[3], [-0.6, -1.8, -1.0, -0.2, 0.6], atol=1e-6)
    np.testing.assert_allclose(cols[4], [0.5, 0.9, 0.5, 0.1, 0.5], atol=1e-6)  # the nearer cell weighs more
    np.testing.assert_allclose(cols[4] + cols[5], 1, atol=1e-6)
    np.testing.assert_allclose(cols[6], [0.8] * 5, atol=1e-6)
    # the skip's taps: MATLAB's bicubic imresize, one axis at a time
    lr = np.random.default_rng(0).random((2, 2))
    for table, axis, n in ((rows, 0, 3), (cols, 1, 5)):
        taps, weights = table[7:11].astype(int), table[11:15]
        line = lr[:, 0] if axis == 0 else lr[0]
        want = imresize(line[:, None] if axis == 0 else line[None], size=(n, 1) if axis == 0 else (1, n)).ravel()
        np.testing.assert_allclose((line[taps] * weights).sum(0), want, atol=1e-6)


def test_cell_is_held_beyond_the_training_range():
    assert axis_table(10, 20)[6, 0] == pytest.approx(2 / 2)
    assert axis_table(10, 80)[6, 0] == pytest.approx(2 / CELL_CLIP)  # x8: cell of x4
    assert axis_table(10, 120)[6, 0] == pytest.approx(2 / CELL_CLIP)


def _coords(n: int) -> torch.Tensor:
    return -1 + (2 * torch.arange(n, dtype=torch.float64) + 1) / n


def _reference(model, image: torch.Tensor, out_h: int, out_w: int, decode) -> torch.Tensor:
    """The papers' query_rgb: for each v in {-1, 1}², grid_sample (nearest) the features and their
    cell centres at the shifted coordinate, relative coordinate and cell times the LR size,
    decode, blend by the diagonally opposite area; plus the skip (MATLAB bicubic here)."""
    x = (image - 0.5) / 0.5
    n, _, h, w = x.shape
    feat = model.encoder(x)
    yy, xx = torch.meshgrid(_coords(out_h), _coords(out_w), indexing="ij")
    coord = torch.stack([yy, xx], -1).view(1, -1, 2).float().expand(n, -1, -1)  # (y, x), as the papers
    fy, fx = torch.meshgrid(_coords(h), _coords(w), indexing="ij")
    feat_coord = torch.stack([fy, fx], 0).float().unsqueeze(0).expand(n, -1, -1, -1)
    s = out_h / h, out_w / w
    cell = torch.tensor([2 / out_h * max(s[0] / CELL_CLIP, 1), 2 / out_w * max(s[1] / CELL_CLIP, 1)])
    preds, areas = [], []
    for vy in (-1, 1):
        for vx in (-1, 1):
            c = coord.clone()
            c[..., 0] += vy / h + 1e-6
            c[..., 1] += vx / w + 1e-6
            c.clamp_(-1 + 1e-6, 1 - 1e-6)
            grid = c.flip(-1).unsqueeze(1)
            q_coord = F.grid_sample(feat_coord, grid, mode="nearest", align_corners=False)[:, :, 0].permute(0, 2, 1)
            rel = coord - q_coord
            rel = rel * torch.tensor([h, w])
            rel_cell = (cell * torch.tensor([h, w])).expand_as(rel)
            preds.append(decode(feat, grid, rel, rel_cell))
            areas.append((rel[..., 0] * rel[..., 1]).abs() + 1e-9)
    total = torch.stack(areas).sum(0)
    areas = [areas[3], areas[2], areas[1], areas[0]]
    out = sum(p * (a / total).unsqueeze(-1) for p, a in zip(preds, areas))
    out = out.permute(0, 2, 1).reshape(n, 3, out_h, out_w)
    skip = torch.from_numpy(np.stack([imresize(img.numpy().transpose(1, 2, 0).astype(np.float64), size=(out_h, out_w))
                                      for img in x])).permute(0, 3, 1, 2).float()
    return (out + skip) * 0.5 + 0.5


def _liif_decode(model):
    def decode(feat, grid, rel, rel_cell):
        unfolded = F.unfold(feat, 3, padding=1).view(feat.shape[0], -1, *feat.shape[2:])
        q = F.grid_sample(unfolded, grid, mode="nearest", align_corners=False)[:, :, 0].permute(0, 2, 1)
        first = torch.cat([model.first.weight.flatten(1), model.coords.weight], 1)  # the paper's Linear(580 -> 256)
        hidden = torch.relu(torch.cat([q, rel, rel_cell], -1) @ first.T + model.first.bias)
        return model.mlp(hidden)

    return decode


def _lte_decode(model):
    def decode(feat, grid, rel, rel_cell):
        sample = lambda t: F.grid_sample(t, grid, mode="nearest", align_corners=False)[:, :, 0].permute(0, 2, 1)
        coef, freq = sample(model.coef(feat)), sample(model.freq(feat))
        bs, q = coef.shape[:2]
        freq = torch.stack(torch.split(freq, 2, dim=-1), dim=-1)  # (bs, q, 2, width/2)
        freq = (freq * rel.unsqueeze(-1)).sum(-2) + model.phase(rel_cell.reshape(bs * q, -1)).view(bs, q, -1)
        basis = torch.cat([torch.cos(math.pi * freq), torch.sin(math.pi * freq)], -1)
        return model.mlp(coef * basis)

    return decode


def _randomized(name):
    model = build_model(name, None, pretrained=False)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model


@pytest.mark.parametrize("name,decode", [("liif", _liif_decode), ("lte", _lte_decode)])
@pytest.mark.parametrize("lr,out", [((7, 9), (17, 13)), ((6, 5), (12, 10)), ((5, 4), (31, 37))])
def test_matches_the_papers_formulation(name, decode, lr, out):
    """Non-uniform scales (x2.43 by x1.44), an integer one, and beyond the training range (x6+)."""
    model = _randomized(name)
    image = torch.rand(2, 3, *lr, generator=torch.Generator().manual_seed(0))
    model_inputs = get_model(name).inputs
    extra = InputAssembler(model_inputs).arrays([None, None], *lr, out=out)
    with torch.no_grad():
        ours = model(image, *(torch.from_numpy(extra[i.name]) for i in model_inputs[1:]))
        ref = _reference(model, image, *out, decode(model))
    assert ours.shape == (2, 3, *out)
    torch.testing.assert_close(ours, ref, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["liif", "lte"])
def test_the_skip_is_matlab_bicubic(name):
    """With its output layer at zero the model is the baseline every evaluation compares with:
    the network learns only what bicubic misses."""
    model = build_model(name, None, pretrained=False)
    with torch.no_grad():
        model.mlp.layers[-1].weight.zero_()
        model.mlp.layers[-1].bias.zero_()
    image = torch.rand(1, 3, 6, 8)
    model_inputs = get_model(name).inputs
    tables = InputAssembler(model_inputs).arrays([None], 6, 8, out=(15, 20))
    with torch.no_grad():
        out = model(image, *(torch.from_numpy(tables[i.name]) for i in model_inputs[1:]))
    ref = imresize(image[0].numpy().transpose(1, 2, 0).astype(np.float64), size=(15, 20)).transpose(2, 0, 1)
    np.testing.assert_allclose(out[0].numpy(), ref, atol=1e-5)


def test_decoding_in_bands_matches_at_once(monkeypatch):
    """Large outputs decode a band of rows at a time (bounded memory): same result."""
    from streamsr.models import implicit

    model = _randomized("liif")
    image = torch.rand(1, 3, 9, 11)
    spec_inputs = get_model("liif").inputs
    tables = InputAssembler(spec_inputs).arrays([None], 9, 11, out=(23, 29))
    args = [torch.from_numpy(tables[i.name]) for i in spec_inputs[1:]]
    with torch.no_grad():
        whole = model(image, *args)
        monkeypatch.setattr(implicit, "QUERY_CHUNK", 50)  # two rows of 29 per band
        banded = model(image, *args)
    torch.testing.assert_close(banded, whole)


def test_tables_are_built_once_per_size():
    calls = []
    provider = get_provider("implicit_rows")
    spec_inputs = get_model("lte").inputs
    assembler = InputAssembler(spec_inputs)
    original = provider.table
    try:
        object.__setattr__(provider, "table", lambda i, g: calls.append(g) or original(i, g))
        for _ in range(5):
            assembler.arrays([None], 30, 40, out=(45, 60))
        assert len(calls) == 1  # five frames, one table
        assembler.arrays([None], 30, 40, out=(60, 80))  # the stream changed size
        assembler.arrays([None], 30, 40, out=(60, 80))
        assert len(calls) == 2 and calls[1] == Grid(1, (30, 40), (60, 80))
    finally:
        object.__setattr__(provider, "table", original)


@pytest.mark.parametrize("name", ["liif", "lte"])
def test_fp16_network_keeps_its_tables_in_float32(name, tmp_path):
    """A wide frame (LR indices past 2048, which fp16 cannot count) through the network in fp16:
    the tables stay float32 in PyTorch and in the exported fp16 graph, so the picture matches fp32."""
    import onnxruntime as ort
    from safetensors.torch import save_file

    from streamsr.backends.export import export_onnx
    from streamsr.metrics import psnr

    model = _randomized(name)
    inputs = get_model(name).inputs
    assert [i.full_precision for i in inputs] == [False, True, True]
    image = torch.rand(1, 3, 2, 2600, generator=torch.Generator().manual_seed(0))
    tables = InputAssembler(inputs).arrays([None], 2, 2600, out=(3, 3900))
    args = [torch.from_numpy(tables[i.name]) for i in inputs[1:]]
    with torch.no_grad():
        ref = model(image, *args).numpy()
        half = model.half()(image.half(), *args).float().numpy()
    assert psnr(np.clip(half, 0, 1), np.clip(ref, 0, 1), peak=1.0) > 35
    weights = tmp_path / "w.safetensors"
    save_file({k: v.float().contiguous() for k, v in model.state_dict().items()}, str(weights))
    graph = export_onnx(get_model(name).variant(None), precision="fp16", weights=weights)
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": image.numpy(), **tables})[0]
    assert psnr(np.clip(got, 0, 1), np.clip(ref, 0, 1), peak=1.0) > 35
