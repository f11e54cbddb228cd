"""Put on PYTHONPATH of a fractional-GPU job by veil's scheduler: when the job imports torch,
each visible GPU gets torch.cuda.set_per_process_memory_fraction(VEIL_GPU_FRACTION)."""

import importlib.abc
import importlib.util
import os
import sys


class _ApplyFraction(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "torch":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("torch")
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            try:
                fraction = float(os.environ["VEIL_GPU_FRACTION"])
                if module.cuda.is_available():
                    for i in range(module.cuda.device_count()):
                        module.cuda.set_per_process_memory_fraction(fraction, i)
                    os.environ["VEIL_GPU_FRACTION_HOOK"] = "applied"
                else:
                    os.environ["VEIL_GPU_FRACTION_HOOK"] = "no-cuda"
            except Exception as e:  # never break the job's import of torch
                print(f"veil: GPU fraction not applied: {e}", file=sys.stderr)

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("VEIL_GPU_FRACTION"):
    sys.meta_path.insert(0, _ApplyFraction())
