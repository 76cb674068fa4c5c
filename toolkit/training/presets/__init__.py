"""Training presets as YAML data (`dcase9 train --preset NAME`); see dcase9.training.config."""
