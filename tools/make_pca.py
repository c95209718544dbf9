"""Compute the SRMD kernel PCA shipped as streamsr/degradation/srmd_pca.safetensors.

SRMD recipe: sample 10,000 random anisotropic 15×15 Gaussian kernels (angle in [0, π), variances
in [0.1, 10]) plus isotropic ones of width 0.2–4, flatten them, and keep the top 15 eigenvectors of
K^T K (PCA without centring). Seeded, so the result is reproducible.

    python tools/make_pca.py
"""

from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from streamsr.degradation.kernels import isotropic_gaussian, random_anisotropic

OUT = Path(__file__).resolve().parents[1] / "streamsr" / "degradation" / "srmd_pca.safetensors"


def main(n: int = 10_000, dims: int = 15) -> None:
    rng = np.random.default_rng(2018)
    kernels = [random_anisotropic(rng) for _ in range(n)]
    kernels += [isotropic_gaussian(w) for w in np.linspace(0.2, 4.0, 200)]
    k = np.stack([x.reshape(-1) for x in kernels])
    values, vectors = np.linalg.eigh(k.T @ k)
    pca = vectors[:, np.argsort(values)[::-1][:dims]]
    pca *= np.sign(pca.sum(axis=0, keepdims=True))  # a fixed sign for each direction
    explained = np.sort(values)[::-1][:dims].sum() / values.sum()
    save_file({"pca": np.ascontiguousarray(pca, dtype=np.float32)}, str(OUT), metadata={  # C order: raw buffer
        "recipe": f"{n} random anisotropic (var 0.1-10) + 200 isotropic (0.2-4) 15x15 kernels, seed 2018, "
                  f"top {dims} eigenvectors of K^T K (no centring); energy kept {explained:.6f}"})
    print(f"wrote {OUT}: energy kept {explained:.6f}")


if __name__ == "__main__":
    main()
