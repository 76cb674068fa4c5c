"""`dcase9 separate` against AudioSep's own pipeline (its `pipeline.py`), emulated, start-up included.

Two workloads, each one fresh process per mode: one recording of 60 s, and ten recordings of 10 s,
32 kHz mono WAVs (AudioSep's rate: its `librosa.load(sr=32000)` resamples nothing). The model is
System 2 (AudioSep: ResUNet30 at 32 kHz, STFT 2048/320, and the whole laion CLAP, HTSAT audio tower
included) with random full-size weights in the official Lightning layout (`ss_model.*`,
`query_encoder.model.*`), plus a stand-in of the standalone laion CLAP file AudioSep's CLAP_Encoder
reads (the weights under `module.` and an Adam state: about 2.3 GB, as
music_speech_audioset_epoch_15_esc_89.98.pt); `--tiny`: the test suite's stand-ins instead (a
full-width ResUNet30 on a 512/128 STFT, the tiny CLAP, no standalone file).

AudioSep's pipeline, emulated from the facts of its code (`AudioSepPipeline`):
- its imports: lightning.pytorch (its AudioSep LightningModule), librosa where installed, transformers;
- `build_audiosep`: `CLAP_Encoder()` builds the whole CLAP randomly initialised and loads the
  standalone laion file read whole; `load_ss_model` builds ResUNet30 (random initialisation) and
  `AudioSep.load_from_checkpoint` reads the Lightning checkpoint whole and loads the separation net
  and, again, the query encoder from it;
- `separate_audio(model, file, text, out)`, called once per file: `librosa.load(file, sr=32000,
  mono=True)` (soundfile's float32 samples, the mean over channels, soxr HQ at other rates); the
  text embedded by `get_query_embed(modality="text")`: a batch of two copies (its CLAP_Encoder doubles
  a single text) padded to 512 tokens, the first row kept; one forward pass of the whole recording,
  in PyTorch's default NCHW layout; `np.round(x * 32767).astype(np.int16)` written by
  `scipy.io.wavfile.write` at 32 kHz.
Kinder to AudioSep than the real thing: the net is ours (`torch.stft`, not torchlibrosa's
convolutional STFT), the laion code is not imported, librosa is skipped where not installed.

dcase9: `dcase9 separate FILES -q TEXT -s 2 --checkpoint CKPT --offline -o OUT` (the system's 10 s
chunks, cross-faded: 60 s cost 8 chunks of 10 s; 10 s recordings run whole), and the same with
`--segment 0` (the whole recording at once, as AudioSep). The modes alternate over `--repeats` runs
and the fastest of each is kept.

    python benchmarks/separate.py --repeats 2            # full-size random weights
    python benchmarks/separate.py --tiny --repeats 1     # the tests' stand-ins
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RATE = 32000
QUERY = "a dog barks"
FULL_STFT = {"n_fft": 2048, "hop_length": 320}  # AudioSep's
TINY_STFT = {"n_fft": 512, "hop_length": 128}
CHECKPOINT = "audiosep.ckpt"
STANDALONE_CLAP = "music_speech_audioset_stand_in.pt"


class AudioSepPipeline:
    """AudioSep's `build_audiosep` and `separate_audio`, emulated (module docstring). `clap`: the CLAP
    architecture (`ClapArchitecture` fields; default the real one), `stft`: the net's STFT,
    `standalone`: the standalone laion file CLAP_Encoder loads first (None: none, as in the tests)."""

    def __init__(self, checkpoint: Path, tokenizer: Path, *, clap: dict[str, Any] | None = None,
                 stft: dict[str, int] = FULL_STFT, standalone: Path | None = None):
        import torch

        try:
            import lightning.pytorch  # noqa: F401  models/audiosep.py: its LightningModule
        except ImportError:
            pass
        try:
            import librosa  # noqa: F401  pipeline.py and utils.py import it
        except ImportError:
            pass
        from dcase9.models import resunet as resunet_module
        from dcase9.models.checkpoints import load_weights, strip_prefix
        from dcase9.models.clap import ClapArchitecture, ClapEncoder, build_clap_model, load_laion_weights, \
            load_roberta_tokenizer

        spec = ClapArchitecture(**(clap or {})).spec()
        self.tokenizer = load_roberta_tokenizer(tokenizer)  # RobertaTokenizer.from_pretrained("roberta-base")
        model = build_clap_model(spec)  # create_model(...): the whole CLAP, randomly initialised
        if standalone is not None:  # ... then its pretrained file, read whole
            state = torch.load(standalone, map_location="cpu", weights_only=True)
            load_laion_weights(model, strip_prefix(state["state_dict"], "module."), source=str(standalone))
            del state
        self.clap = ClapEncoder(model, spec.front_end, self.tokenizer)
        self.net = resunet_module.ResUNet30(**stft)  # load_ss_model: built (random initialisation), then loaded
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
        load_weights(self.net, strip_prefix(state, "ss_model."), source=str(checkpoint),
                     ignore=resunet_module.RESUNET30_IGNORED_KEYS)
        load_laion_weights(model, strip_prefix(state, "query_encoder.model."), source=str(checkpoint))
        del state
        self.net.eval()

    def load(self, path: Path) -> Any:
        """`librosa.load(path, sr=32000, mono=True)`: float32 samples, the channel mean, soxr HQ when not at 32 kHz,
        cut or zero-padded to ceil(n * 32000 / rate) (librosa's `fix`)."""
        import math

        import numpy as np
        import soundfile as sf
        import soxr

        data, rate = sf.read(path, dtype="float32", always_2d=True)
        mono = np.mean(data, axis=1) if data.shape[1] > 1 else data[:, 0]
        if rate == RATE:
            return mono
        length = math.ceil(len(mono) * RATE / rate)
        out = soxr.resample(mono, rate, RATE, quality="HQ")
        return np.pad(out, (0, max(0, length - len(out))))[:length].astype(np.float32)

    def text_embedding(self, text: str) -> Any:
        """`get_query_embed(modality="text", text=[text])`: two copies padded to 512 tokens, the first row."""
        tokens = self.tokenizer([text] * 2, padding="max_length", truncation=True, max_length=512,
                                return_tensors="pt")
        return self.clap.embed_tokens(tokens["input_ids"], tokens["attention_mask"])[:1]

    def separate(self, path: Path, text: str) -> Any:
        """The float32 estimate `separate_audio` computes (before its int16 write)."""
        import torch

        mixture = self.load(path)
        with torch.no_grad():
            condition = self.text_embedding(text)
            estimate = self.net(torch.from_numpy(mixture)[None, None, :], condition)
        return estimate[0, 0].numpy()

    def separate_audio(self, path: Path, text: str, output: Path) -> None:
        import numpy as np
        from scipy.io.wavfile import write

        estimate = self.separate(path, text)
        write(output, RATE, np.round(estimate * 32767).astype(np.int16))


def prepare(work: Path, tiny: bool) -> dict[str, Any]:
    """The recordings, the tokenizer, the checkpoint (and the standalone CLAP stand-in) under `work`, reused."""
    import numpy as np
    import soundfile as sf
    import torch

    from benchmarks.end_to_end import full_size_laion_clap
    from benchmarks.inference import tokenizer_folder
    from tests.tiny_models import resunet_weights, system_config, tiny_clap_laion_weights, write_lightning_checkpoint

    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    recordings = work / "recordings"
    long_file, short = recordings / "long" / "sixty.wav", recordings / "short"
    if not long_file.is_file():
        long_file.parent.mkdir(parents=True, exist_ok=True)
        short.mkdir(parents=True, exist_ok=True)
        sf.write(long_file, (0.1 * rng.standard_normal(60 * RATE)).astype(np.float32), RATE, subtype="PCM_16")
        for k in range(10):
            sf.write(short / f"clip{k}.wav", (0.1 * rng.standard_normal(10 * RATE)).astype(np.float32), RATE,
                     subtype="PCM_16")
    tokenizer, tokenizer_name = tokenizer_folder(work)
    stft = TINY_STFT if tiny else FULL_STFT
    checkpoint = work / (("tiny-" if tiny else "") + CHECKPOINT)
    standalone = None if tiny else work / STANDALONE_CLAP
    if not checkpoint.is_file() or (standalone is not None and not standalone.is_file()):
        clap = tiny_clap_laion_weights() if tiny else full_size_laion_clap()
        write_lightning_checkpoint(checkpoint, resunet=resunet_weights(**stft), clap=clap)
        if standalone is not None:
            adam = {i: {"step": torch.tensor(1.0), "exp_avg": torch.zeros_like(v), "exp_avg_sq": torch.zeros_like(v)}
                    for i, v in enumerate(clap.values()) if v.is_floating_point()}
            torch.save({"epoch": 15, "state_dict": {f"module.{k}": v for k, v in clap.items()},
                        "optimizer": {"state": adam, "param_groups": [{"lr": 1e-4, "params": sorted(adam)}]}},
                       standalone)
    config = work / ("tiny.yaml" if tiny else "full.yaml")
    import yaml

    config.write_text(yaml.safe_dump(system_config(stft) if tiny else {**stft}))
    return {"long": [long_file], "short": sorted(short.glob("*.wav")), "tokenizer": tokenizer,
            "tokenizer_name": tokenizer_name, "checkpoint": checkpoint, "standalone": standalone, "config": config,
            "stft": stft, "tiny": tiny}


def run_audiosep(files: list[Path], out: Path, setup: dict[str, Any]) -> None:
    """A child process: AudioSep's pipeline built once, `separate_audio` once per file."""
    from dcase9.models import resunet as resunet_module
    from tests.tiny_models import system_config

    resunet_module._CHANNELS_LAST_DEVICES = ()  # the reference net runs in PyTorch's default NCHW layout

    clap = system_config()["clap"] if setup["tiny"] else None
    pipeline = AudioSepPipeline(Path(setup["checkpoint"]), Path(setup["tokenizer"]), clap=clap, stft=setup["stft"],
                                standalone=Path(setup["standalone"]) if setup["standalone"] else None)
    out.mkdir(parents=True, exist_ok=True)
    for path in files:
        pipeline.separate_audio(path, QUERY, out / path.name)


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=str(ROOT), capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:6])} ... failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs per mode; the best is kept")
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of every process")
    parser.add_argument("--tiny", action="store_true", help="the tests' stand-ins instead of full-size weights")
    parser.add_argument("--work", help="folder for the recordings, checkpoints and outputs (default: temporary)")
    parser.add_argument("--workloads", default="long,short", help="long (one 60 s file), short (ten 10 s files)")
    parser.add_argument("--modes", default="audiosep,dcase9,dcase9-whole")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # JSON: an AudioSep run in this process
    args = parser.parse_args()

    if args.child:
        child = json.loads(args.child)
        run_audiosep([Path(p) for p in child["files"]], Path(child["out"]), child["setup"])
        return

    with tempfile.TemporaryDirectory(prefix="dcase9-separate-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        setup = prepare(work, args.tiny)
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
        shared = {k: str(v) if isinstance(v, Path) else v for k, v in setup.items()
                  if k in ("tokenizer", "checkpoint", "standalone", "stft", "tiny")}
        best: dict[tuple[str, str], float] = {}
        for repeat in range(args.repeats):
            for workload in args.workloads.split(","):
                files = setup[workload]
                for mode in args.modes.split(","):
                    out = work / "out" / f"{workload}-{mode}"
                    if mode == "audiosep":
                        command = [sys.executable, __file__, "--child", json.dumps(
                            {"files": [str(f) for f in files], "out": str(out), "setup": shared})]
                    else:
                        command = [sys.executable, "-m", "dcase9.cli", "separate", *map(str, files), "-q", QUERY,
                                   "-s", "2", "--checkpoint", str(setup["checkpoint"]), "--weight",
                                   f"roberta-base-tokenizer={setup['tokenizer']}", "--system-config",
                                   str(setup["config"]), "--offline", "--overwrite", "--device", "cpu", "-o", str(out)]
                        if mode == "dcase9-whole":
                            command += ["--segment", "0"]
                    seconds = timed(command, env)
                    print(f"run {repeat + 1} {workload} {mode}: {seconds:.1f} s", flush=True)
                    best[(workload, mode)] = min(seconds, best.get((workload, mode), float("inf")))
        print(f"\n{'tiny stand-ins' if args.tiny else 'full-size random weights'}, tokenizer "
              f"{setup['tokenizer_name']}, {args.threads} threads, best of {args.repeats} alternating runs")
        for workload in args.workloads.split(","):
            label = "one 60 s recording" if workload == "long" else "ten 10 s recordings"
            line = ", ".join(f"{mode} {best[(workload, mode)]:.1f} s" for mode in args.modes.split(","))
            print(f"{label}: {line}")
            if "audiosep" in args.modes:
                for mode in args.modes.split(","):
                    if mode != "audiosep":
                        print(f"  {mode} is {best[(workload, 'audiosep')] / best[(workload, mode)]:.2f}x faster "
                              "than AudioSep's pipeline (emulated)")


if __name__ == "__main__":
    main()
