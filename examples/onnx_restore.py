"""Restore an image with a pisasr ONNX export and onnxruntime alone (numpy, Pillow, onnxruntime; no torch, no
pisasr):

    python examples/onnx_restore.py EXPORT_DIR input.png output.png [--lambda_pix A --lambda_sem B]

EXPORT_DIR comes from ``python scripts/export.py --to onnx``. The steps are pisasr's defaults: inputs whose short
side is below process_size / upscale are first enlarged to it, the image is upsampled x upscale with PIL's bicubic,
reflect-padded to a multiple of 8, encoded, ``z_H = z_L - sum(w * unet(z_L))``, decoded, cropped, colour-fixed
(AdaIN against the upsampled input) and resized back if it was enlarged. The whole image goes through each graph
at once (pisasr tiles latents above 96 x 96 and images above 1024 x 1024; outputs match it below those sizes).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image


def adain(content: np.ndarray, reference: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Per-channel mean/std transfer of [3, H, W] arrays (unbiased variance, as torch.var)."""

    def stats(a):
        return a.mean((1, 2), keepdims=True), np.sqrt(a.var((1, 2), ddof=1, keepdims=True) + eps)

    (c_mean, c_std), (r_mean, r_std) = stats(content), stats(reference)
    return (content - c_mean) / c_std * r_std + r_mean


def resize_float(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """PIL bicubic on float channels ([3, H, W] -> [3, *size])."""
    height, width = size
    return np.stack(
        [np.asarray(Image.fromarray(c, "F").resize((width, height), Image.BICUBIC)) for c in image]
    )


class OnnxPiSASR:
    def __init__(self, folder: str | Path, providers: list[str] | None = None, threads: int = 0):
        self.folder = Path(folder)
        self.spec = json.loads((self.folder / "pisasr_export.json").read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads

        def session(name: str) -> ort.InferenceSession:
            path = str(self.folder / f"{name}.onnx")
            return ort.InferenceSession(path, options, providers=providers or ["CPUExecutionProvider"])

        self.encoder, self.decoder = session("vae_encoder"), session("vae_decoder")
        self.unets = {name: session(name) for name in self.spec["unets"]}

    def weights(self, lambda_pix: float | None, lambda_sem: float | None) -> dict[str, float]:
        if lambda_pix is None and lambda_sem is None:
            return self.spec["unets"]
        a = self.spec["lambda_pix"] if lambda_pix is None else lambda_pix
        b = self.spec["lambda_sem"] if lambda_sem is None else lambda_sem
        if self.spec["pair_fixed"]:
            if (a, b) != (self.spec["lambda_pix"], self.spec["lambda_sem"]):
                raise SystemExit(
                    f"error: this export has the pair ({self.spec['lambda_pix']}, {self.spec['lambda_sem']}) "
                    "built in; export without --lambda_pix/--lambda_sem for another pair"
                )
            return self.spec["unets"]
        return {"unet_pix": a - b, "unet_full": b}

    def restore(self, image: Image.Image, lambda_pix: float | None = None, lambda_sem: float | None = None):
        """8-bit RGB PIL image in, float [3, H, W] in [0, 1] out (upscale x the input)."""
        s = self.spec
        up, width, height = s["upscale"], image.width, image.height
        min_side = s["process_size"] // up
        enlarged = min(height, width) < min_side
        if enlarged:
            scale = min_side / min(height, width)
            image = image.resize((int(scale * width), int(scale * height)), Image.BICUBIC)
        model_h, model_w = image.height * up, image.width * up
        reference = np.asarray(image.resize((model_w, model_h), Image.BICUBIC), np.float32).transpose(2, 0, 1)
        reference = reference / np.float32(255.0)
        x = np.pad(reference * 2 - 1, ((0, 0), (0, -model_h % 8), (0, -model_w % 8)), mode="reflect")
        z_lr = self.encoder.run(None, {"image": x[None]})[0]
        z = z_lr
        for name, w in self.weights(lambda_pix, lambda_sem).items():
            if w != 0:
                z = z - np.float32(w) * self.unets[name].run(None, {"latent": z_lr})[0]
        decoded = self.decoder.run(None, {"latent": z})[0][0, :, :model_h, :model_w]
        out = np.clip((decoded + 1) / 2, 0, 1)
        if s["color_fix"] == "adain":
            out = np.clip(adain(out, reference), 0, 1)
        if enlarged:
            out = np.clip(resize_float(out, (height * up, width * up)), 0, 1)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export_dir")
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--lambda_pix", type=float)
    parser.add_argument("--lambda_sem", type=float)
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: all cores)")
    args = parser.parse_args()
    model = OnnxPiSASR(args.export_dir, threads=args.threads)
    out = model.restore(Image.open(args.input).convert("RGB"), args.lambda_pix, args.lambda_sem)
    Image.fromarray((out.transpose(1, 2, 0) * 255).round().astype(np.uint8)).save(args.output)


if __name__ == "__main__":
    main()
