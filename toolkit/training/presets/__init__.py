"""Training presets as YAML data (`dcase9 train --preset NAME`); see toolkit.training.config."""
