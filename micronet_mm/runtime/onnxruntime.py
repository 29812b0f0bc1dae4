"""ONNX Runtime behind the runtime-module interface of :mod:`micronet_mm.runtime.loaders`:
``load(path, threads=1) -> runner``, ``runner(x) -> list[np.ndarray]``, ``runner.output_names``.

:func:`open_session` holds the options every tool of this project uses (CPU provider, full graph
optimisation, sequential execution, one intra-op and one inter-op thread by default), so that
measurements and parity checks compare alike.
"""
from __future__ import annotations

from .loaders import Runner


def open_session(path: str, threads: int = 1, profile_prefix: str | None = None):
    """An ONNX Runtime CPU session of ``path``.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads (inter-op: one; execution is sequential).
        profile_prefix: turn on ONNX Runtime's profiler, writing ``PREFIX_*.json``.
    """
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if profile_prefix:
        opts.enable_profiling, opts.profile_file_prefix = True, profile_prefix
    return ort.InferenceSession(path, opts, providers=['CPUExecutionProvider'])


def load(path: str, threads: int = 1) -> Runner:
    """The runner of an ``.onnx`` file (one input, the image batch)."""
    sess = open_session(path, threads)
    name = sess.get_inputs()[0].name
    return Runner(lambda x: sess.run(None, {name: x}), [o.name for o in sess.get_outputs()])
