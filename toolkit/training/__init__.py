"""Training separation models with the DCASE 2024 Task 9 baseline recipe (`dcase9 train`).

    from dcase9.training import assemble_config, train
    config = assemble_config(preset="system1", overrides=[{"data": {"datafiles": ["fsd50k_gpt4.json"]}}])
    result = train(config, "runs/system1")          # resumable: train(config, "runs/system1", resume=True)

Training knows nothing of `systems/`: `train(config, out, system=SystemFacts(...))` receives what it
needs of the system that loads its checkpoints; `dcase9.api.train` (and `dcase9 train`) pass it.

Modules: `config` (typed configuration, presets), `data` (caption-audio files, clip reading,
the resumable sampler), `mixing` (the baseline's SegmentMixer), `models` (trainable model
families, registered by name), `schedules` (learning-rate warm-ups), `module` (the
LightningModule, checkpoints, progress), `run` (`train()`). Lightning is imported only by
`module`, when a run starts.
"""

from dcase9.training.config import TrainConfig, assemble_config, preset_names, read_preset
from dcase9.training.run import SystemFacts, TrainResult, train

__all__ = ["SystemFacts", "TrainConfig", "TrainResult", "assemble_config", "preset_names", "read_preset", "train"]
