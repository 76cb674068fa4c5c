"""The demo: `dcase9 demo` (`make demo`), the whole path on data the toolkit synthesises, offline.

    from dcase9.demo import run_demo
    result = run_demo("demo-run")     # data -> validate -> train -> separate -> score -> page -> package

Everything the demo does is here, as an application of the API's verbs (`dcase9.api`) and of
`submission/`: `run` (the workflow, `run_demo`, and its listening page), `model` (training, resuming
or reusing the demo model) and `package` (its DCASE submission, marked as a demo, built and
checked). What it builds on lives with the library: the demo data's synthesis in
`dcase9.data.demo` (training's `tiny-demo` tokenizer reads its captions), the training preset
`toolkit/training/presets/demo.yaml`; `dcase9 demo` itself is `toolkit/cli/demo.py`.
"""

from dcase9.demo.model import changed_settings, train_demo_model
from dcase9.demo.package import DemoPackage, DemoPackageError, package_demo
from dcase9.demo.run import DEMO_EVALUATION_SETS, DemoResult, demo_page, run_demo

__all__ = ["DEMO_EVALUATION_SETS", "DemoPackage", "DemoPackageError", "DemoResult", "changed_settings", "demo_page",
           "package_demo", "run_demo", "train_demo_model"]
