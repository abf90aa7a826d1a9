"""``retinaface-trt selftest``: prove, without any data, that TensorRT engines compute what the executor computes.

For each backbone (seeded random weights of both, or the user's checkpoint) × precision × case
(:mod:`runtime.selftest.cases`): build the engine, serialize it with its sidecar, deserialize it, run it on
seeded synthetic photos with drawn faces (:mod:`runtime.selftest.inputs`), run the executor in float32 on
the same inputs, measure and judge (:mod:`runtime.selftest.checks`), and report (:mod:`runtime.selftest.report`).
``backend="torch"`` is the dry run: the executor stands in for TensorRT's build and deserialization
(:mod:`runtime.selftest.engines`), every other step is the same.

    from runtime.selftest import run_selftest, format_table
    result = run_selftest(backend="torch", device="cpu", patterns=["fixed"])
    print(format_table(result)); result.passed

Importing this package is light (no torch): the command-line help imports it.
"""

from runtime.selftest.report import as_dict, format_table  # noqa: F401
from runtime.selftest.run import BACKENDS, CaseResult, SelftestResult, run_selftest  # noqa: F401
