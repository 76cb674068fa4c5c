"""ResUNet30 training steps in the two memory layouts: float32 accuracy against float64, and speed.

One training step of the baseline recipe (train-mode batch norms, L1 waveform loss, backward,
AdamW with amsgrad at lr 1e-3) on the official 16 kHz net (STFT 1024/160), random weights
initialised as the reference does, random conditions and mixtures. For each layout of the
convolutional body (`contiguous`: NCHW, what the reference trains with; `channels_last`: NHWC)
it prints, against the same step computed in float64:

* `output dB`: 10 log10(|y64|^2 / |y32 - y64|^2) of the separated waveforms (train-mode forward);
* `loss rel`: |loss32 - loss64| / loss64;
* `weights dB`: the same SNR over every trained tensor after the AdamW step (the update itself, the
  step away from the initial weights, is what is compared);
* `grads dB`: the same over the gradients;

then the median wall time of a forward + backward + optimizer step in each layout (float32).
`--eval` also prints the eval-mode (inference) forward accuracy and speed, for comparison.

    python benchmarks/training_layout.py                      # CPU, batch 2 x 2 s, 2 threads
    python benchmarks/training_layout.py --batch-size 4 --seconds 4 --repeats 5
    python benchmarks/training_layout.py --device cuda --batch-size 16 --seconds 10

The layouts dcase9 uses per device type are `_TRAINING_CHANNELS_LAST_DEVICES` (train mode) and
`_CHANNELS_LAST_DEVICES` (eval mode) in `dcase9.models.resunet`.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402


def snr_db(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    reference = reference.double()
    error = (estimate.double() - reference).square().sum()
    return float(10 * torch.log10(reference.square().sum() / error)) if error > 0 else float("inf")


def build(device: str, dtype: torch.dtype, seed: int) -> Any:
    from dcase9.models.resunet import ResUNet30
    from dcase9.training.models import unused_resunet_parameters

    torch.manual_seed(seed)
    net = ResUNet30(n_fft=1024, hop_length=160).to(device=device, dtype=dtype).train()
    unused = unused_resunet_parameters(net)
    for name, parameter in net.named_parameters():
        parameter.requires_grad_(name not in unused)
    return net


def step(net: Any, mixture: torch.Tensor, target: torch.Tensor, condition: torch.Tensor,
         channels_last: bool) -> dict[str, Any]:
    """One training step in the given layout; returns output, loss, gradients and updated weights."""
    from dcase9.models import resunet

    saved = resunet._TRAINING_CHANNELS_LAST_DEVICES
    resunet._TRAINING_CHANNELS_LAST_DEVICES = (mixture.device.type,) if channels_last else ()
    try:
        trained = [p for p in net.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trained, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                                      amsgrad=True)
        output = net(mixture[:, None, :], condition)[:, 0, :]
        loss = torch.mean(torch.abs(output - target))
        loss.backward()
        grads = [p.grad.detach().clone() for p in trained]
        optimizer.step()
        return {"output": output.detach(), "loss": loss.detach(), "grads": grads,
                "weights": [p.detach().clone() for p in trained]}
    finally:
        resunet._TRAINING_CHANNELS_LAST_DEVICES = saved


def eval_forward(net: Any, mixture: torch.Tensor, condition: torch.Tensor, channels_last: bool) -> torch.Tensor:
    from dcase9.models import resunet

    saved = resunet._CHANNELS_LAST_DEVICES
    resunet._CHANNELS_LAST_DEVICES = (mixture.device.type,) if channels_last else ()
    try:
        with torch.no_grad():
            return net.eval()(mixture[:, None, :], condition)[:, 0, :]
    finally:
        resunet._CHANNELS_LAST_DEVICES = saved
        net.train()


def timed(runs: dict[str, Any], repeats: int, device: str) -> dict[str, tuple[float, float]]:
    """Seconds per call of each function, (best, median) of `repeats`, the functions alternating
    (a shared machine's load then weighs on each alike); one warm-up call each first."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(repeats + 1):
        for name, fn in runs.items():
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            if round_:
                times[name].append(time.perf_counter() - start)
    return {name: (min(t), statistics.median(t)) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval", action="store_true", help="also the eval-mode forward pass")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = args.device
    generator = torch.Generator().manual_seed(args.seed + 1)
    samples = int(args.seconds * 16000)
    # Mixtures of two noise-like sources at speech-like levels; the target is the first.
    target = 0.1 * torch.randn(args.batch_size, samples, generator=generator)
    mixture = target + 0.1 * torch.randn(args.batch_size, samples, generator=generator)
    condition = torch.nn.functional.normalize(torch.randn(args.batch_size, 512, generator=generator), dim=-1)

    net32 = build(device, torch.float32, args.seed)
    net64 = copy.deepcopy(net32).double()
    inputs64 = [t.to(device, torch.float64) for t in (mixture, target, condition)]
    inputs32 = [t.to(device) for t in (mixture, target, condition)]
    exact = step(copy.deepcopy(net64), *inputs64, channels_last=False)
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, batch {args.batch_size} x "
          f"{args.seconds:g} s, official 16 kHz ResUNet30")
    layouts = {"contiguous": False, "channels_last": True}
    timing_net = copy.deepcopy(net32)  # its weights change with each step: the cost does not
    seconds = timed({name: (lambda cl=cl: step(timing_net, *inputs32, channels_last=cl))
                     for name, cl in layouts.items()}, args.repeats, device)
    print(f"{'train step':<14} {'output dB':>9} {'loss rel':>9} {'grads dB':>8} {'weights dB':>10} "
          f"{'best s':>7} {'median s':>8}")
    initial = [p.detach().double() for p in net64.parameters() if p.requires_grad]
    for name, channels_last in layouts.items():
        result = step(copy.deepcopy(net32), *inputs32, channels_last=channels_last)
        loss_rel = abs(float(result["loss"]) - float(exact["loss"])) / float(exact["loss"])
        grads = snr_db(torch.cat([g.flatten() for g in result["grads"]]),
                       torch.cat([g.flatten() for g in exact["grads"]]))
        weights = snr_db(torch.cat([(w.double() - i).flatten() for w, i in zip(result["weights"], initial, strict=True)]),
                         torch.cat([(w - i).flatten() for w, i in zip(exact["weights"], initial, strict=True)]))
        best, median = seconds[name]
        print(f"{name:<14} {snr_db(result['output'], exact['output']):9.1f} {loss_rel:9.1e} {grads:8.1f} "
              f"{weights:10.1f} {best:7.2f} {median:8.2f}")
    if args.eval:
        exact_eval = eval_forward(copy.deepcopy(net64), inputs64[0], inputs64[2], channels_last=False)
        seconds = timed({name: (lambda cl=cl: eval_forward(net32, inputs32[0], inputs32[2], cl))
                         for name, cl in layouts.items()}, args.repeats, device)
        print(f"{'eval forward':<14} {'output dB':>9} {'best s':>7} {'median s':>8}")
        for name, channels_last in layouts.items():
            output = eval_forward(net32, inputs32[0], inputs32[2], channels_last)
            print(f"{name:<14} {snr_db(output, exact_eval):9.1f} {seconds[name][0]:7.2f} {seconds[name][1]:8.2f}")


if __name__ == "__main__":
    main()
