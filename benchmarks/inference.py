"""Benchmark: the batched inference engine against a one-clip-at-a-time loop of the same model.

Both run the full-size text-queried ResUNet30 (26.4 M parameters) and the full CLAP text tower
(roberta-base size) with random weights (pretrained weights cannot be downloaded everywhere; the
cost is the same), written once into a checkpoint of the official layout and loaded by
`api.load_separator` as `dcase9 infer` loads a system, on the same mixtures of the demo validation
set, and write the same WAVs.

- `loop`: what the official evaluator does: for each row, read and mix the clips, tokenise the
  caption padded to 512 tokens (as a batch of two copies, as its CLAP encoder does for one text)
  and embed it, separate with batch 1, write the output.
- `engine`: `dcase9 infer`: batches, query embeddings cached per distinct caption and padded to the
  longest caption of a batch, audio read and mixed on background threads, outputs written atomically
  by a writer thread.

Each mode runs in its own process so that peak memory is measured separately; the modes alternate
over `--repeats` runs and the fastest run of each is reported (load from other work only adds time). Prints clips/s,
real-time factor, the engine's speed-up and peak memory (RSS on CPU, allocated on CUDA).

    python benchmarks/inference.py --clips 16 --device cpu --repeats 2
    python benchmarks/inference.py --clips 64 --device cuda --batch-size 16 --precision bf16
    python benchmarks/inference.py --system 2 --device cuda --precision bf16
    python benchmarks/inference.py --system 2 --device cuda --resampler julius

System 2 runs at 32 kHz: `--resampler` picks how both modes resample (soxr HQ on the CPU, the
engine's default, in its reading and writing threads; or julius on the device).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SYSTEM_STFT = {"baseline": (16000, 1024, 160), "2": (32000, 2048, 320)}


def write_random_checkpoint(path: Path, system: str) -> Path:
    """The system's full-size ResUNet30 (initialised as the reference does) and a random CLAP text tower,
    in a checkpoint of the official layout (`ss_model.*`, `query_encoder.model.*` in laion's names)."""
    import torch

    from dcase9.models.clap import ClapArchitecture, ClapTextTower, transformers_to_laion
    from dcase9.models.resunet import ResUNet30, init_like_reference

    torch.manual_seed(0)
    _, n_fft, hop = SYSTEM_STFT[system]
    resunet = ResUNet30(n_fft=n_fft, hop_length=hop)
    init_like_reference(resunet)
    clap = transformers_to_laion(ClapTextTower(ClapArchitecture().text_tower()).state_dict())
    torch.save({"state_dict": {**{f"ss_model.{k}": v for k, v in resunet.state_dict().items()},
                               **{f"query_encoder.model.{k}": v for k, v in clap.items()}}}, path)
    return path


def load_separator(args: argparse.Namespace) -> Any:
    """The system as `dcase9 infer` loads it, from the random checkpoint."""
    from dcase9 import api

    _, n_fft, hop = SYSTEM_STFT[args.system]
    return api.load_separator(args.system, checkpoint=args.checkpoint, weights={"roberta-base-tokenizer": args.tokenizer},
                              options={"n_fft": n_fft, "hop_length": hop}, device=args.device,
                              precision=args.precision, batch_size=args.batch_size, resampler=args.resampler,
                              offline=True, progress=False)


def official_row(separator: Any, dataset: Any, spec: Any, device: Any, precision: str = "fp32",
                 resampler: str = "soxr", tokenizer: Any = None) -> tuple[Any, Any]:
    """One row the way the official evaluator's loop does it: read both clips again (no cache), mix,
    tokenise the caption padded to 512 tokens as a batch of two copies (its CLAP encoder doubles a
    single text), embed, separate with batch 1. Returns the item and the 16 kHz estimate (numpy).
    Systems at another rate resample with soxr HQ on the CPU (as librosa does) or julius on the device.
    `tokenizer`: transformers' (the evaluator's), when the separator's own is the engine's `RobertaBpe`,
    which pads to the longest caption only."""
    import torch

    from dcase9.audio import SAMPLE_RATE, resample, resample_hq
    from dcase9.data.items import ItemLoader
    from dcase9.engine import autocast_context

    clap = separator.clap
    with torch.inference_mode():
        item = ItemLoader(dataset, cache_clips=0).load(spec)
        tokens = (tokenizer or clap.tokenizer)([spec.query] * 2, padding="max_length", truncation=True,
                                               max_length=512, return_tensors="pt")
        condition = clap.embed_tokens(tokens["input_ids"], tokens["attention_mask"])[:1]
        rate, length = separator.sample_rate, item.mixture.shape[-1]
        if resampler == "soxr":
            mixture = torch.from_numpy(resample_hq(item.mixture, SAMPLE_RATE, rate))[None].to(device)
        else:
            mixture = resample(torch.from_numpy(item.mixture)[None].to(device), SAMPLE_RATE, rate)
        with autocast_context(device, precision):
            estimate = separator.separate(mixture, condition).float()
        if resampler == "soxr":
            return item, resample_hq(estimate[0].cpu().numpy(), rate, SAMPLE_RATE)[:length]
        return item, resample(estimate, rate, SAMPLE_RATE)[0, :length].cpu().numpy()


def reference_separator(work: Path, checkpoint: str, standalone_clap: str, *, sample_rate: int, n_fft: int,
                        hop_length: int) -> Any:
    """The official code's start-up, emulated (the DCASE evaluator and AudioSep's benchmark.py do the same):
    the whole CLAP built at random, then loaded from the standalone laion file (CLAP_Encoder()); ResUNet30
    built, then loaded from the Lightning checkpoint, whose query encoder is loaded again (load_ss_model).
    The net runs as it is (not folded), as the reference's does."""
    import torch

    from dcase9.models import resunet as resunet_module
    from dcase9.models.checkpoints import load_weights, strip_prefix
    from dcase9.models.clap import (ClapArchitecture, ClapEncoder, build_clap_model, load_laion_weights,
                                     load_roberta_tokenizer)
    from dcase9.systems.text_queried import TextQueriedResUNet

    spec = ClapArchitecture().spec()
    tokenizer = load_roberta_tokenizer(tokenizer_folder(work)[0])
    clap = build_clap_model(spec)
    standalone = torch.load(work / standalone_clap, map_location="cpu", weights_only=True)
    load_laion_weights(clap, strip_prefix(standalone["state_dict"], "module."), source=standalone_clap)
    del standalone
    resunet = resunet_module.ResUNet30(n_fft=n_fft, hop_length=hop_length)
    state = torch.load(work / checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    load_weights(resunet, strip_prefix(state, "ss_model."), source=checkpoint,
                 ignore=resunet_module.RESUNET30_IGNORED_KEYS)
    load_laion_weights(clap, strip_prefix(state, "query_encoder.model."), source=checkpoint)
    del state
    return TextQueriedResUNet(sample_rate, resunet.eval(), ClapEncoder(clap, spec.front_end, tokenizer),
                              fold_on_cpu=False)


def tokenizer_folder(work: Path) -> tuple[Path, str]:
    """roberta-base from the Hugging Face cache if present, else our tiny stand-in tokenizer."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download("FacebookAI/roberta-base", local_files_only=True,
                                      allow_patterns=["vocab.json", "merges.txt"])), "roberta-base"
    except Exception:
        from tests.tiny_roberta_tokenizer import write_tiny_roberta_tokenizer

        return write_tiny_roberta_tokenizer(work / "tokenizer"), "tiny stand-in (byte-level, more tokens per caption)"


def run_mode(args: argparse.Namespace) -> dict[str, float]:
    import torch

    from dcase9.audio import write_wav
    from dcase9.data.formats import open_dataset

    torch.set_num_threads(args.threads)
    from dcase9.allocator import reuse_freed_memory

    reuse_freed_memory()  # what `dcase9 infer` does for its own process (both modes had it when measured)
    separator = load_separator(args)
    device = separator.device
    dataset = open_dataset(args.data)
    dataset.mixtures = dataset.mixtures[: args.clips]
    out = Path(args.out)
    if args.mode == "loop":  # the evaluator's (transformers') tokenizer: it pads to 512 tokens
        from dcase9.models.clap import load_roberta_tokenizer

        tokenizer = load_roberta_tokenizer(args.tokenizer)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    if args.mode == "engine":
        separator.infer(dataset, out, overwrite=True)
    else:
        for spec in dataset.mixtures:
            _, estimate = official_row(separator.model, dataset, spec, device, args.precision, args.resampler,
                                       tokenizer)
            write_wav(out / f"{spec.id}.wav", estimate)
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB -> MiB on Linux
    seconds = time.perf_counter() - started
    audio_seconds = len(dataset.mixtures) * 10.0
    return {"seconds": seconds, "clips_per_s": len(dataset.mixtures) / seconds, "rtf": seconds / audio_seconds,
            "peak_mib": peak, "device": str(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--system", choices=sorted(SYSTEM_STFT), default="baseline")
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the engine's (8 on CUDA, 1 on CPU)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--resampler", choices=["soxr", "julius"], default="soxr",
                        help="16 kHz <-> the model's rate (System 2 only)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs per mode; the best is kept")
    parser.add_argument("--data", help="validation-set folder (default: the demo data, generated)")
    parser.add_argument("--mode", choices=["engine", "loop"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.mode:  # a child process: one mode, results as JSON on stdout
        print(json.dumps(run_mode(args)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.data is None:
            from dcase9.data.demo import make_validation

            args.data = str(make_validation(work / "data", clips_per_class=max(1, -(-args.clips // 24))))
        tokenizer, tokenizer_name = tokenizer_folder(work)
        checkpoint = write_random_checkpoint(work / "random.ckpt", args.system)
        results: dict[str, dict[str, float]] = {}
        for _, mode in [(r, m) for r in range(args.repeats) for m in ("loop", "engine")]:
            command = [sys.executable, __file__, "--mode", mode, "--out", str(work / mode), "--tokenizer",
                       str(tokenizer), "--checkpoint", str(checkpoint), "--data", args.data, "--system", args.system, "--clips", str(args.clips),
                       "--device", args.device, "--precision", args.precision, "--threads", str(args.threads),
                       "--resampler", args.resampler]
            if args.batch_size is not None:
                command += ["--batch-size", str(args.batch_size)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            result = json.loads(output.strip().splitlines()[-1])
            # Alternating repeats, best of each: other load on a shared machine only ever adds time.
            if mode not in results or result["seconds"] < results[mode]["seconds"]:
                results[mode] = result
    loop, engine = results["loop"], results["engine"]
    print(f"system {args.system}, {args.clips} clips of 10 s, device {engine['device']}, precision {args.precision}, "
          f"{args.threads} threads, best of {args.repeats} alternating runs, tokenizer: {tokenizer_name}")
    print(f"{'mode':<8}{'seconds':>10}{'clips/s':>10}{'RTF':>10}{'peak MiB':>11}")
    for mode, r in (("loop", loop), ("engine", engine)):
        print(f"{mode:<8}{r['seconds']:>10.2f}{r['clips_per_s']:>10.3f}{r['rtf']:>10.4f}{r['peak_mib']:>11.0f}")
    print(f"engine speed-up over the one-clip loop: {loop['seconds'] / engine['seconds']:.2f}x "
          f"(batch size {args.batch_size or 'the engine default'})")


if __name__ == "__main__":
    main()
