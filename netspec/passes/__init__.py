"""The compiler's passes, one per module; their order is `netspec.compiler.PASSES`, whose
docstring lists what each pass needs and ensures.

- `load.py`       parse the spec and every file it `use`s (bounded reads)
- `define.py`     index definitions into a Program (E105-E109)
- `bind.py`       choose the network, sort the `--set` values
- `constants.py`  evaluate tables, kernels and constants
- `expand/`       blocks, repeats, groups and shared sub-networks into a flat Graph
- `infer.py`      shapes, receptive fields, parameters, multiply-adds
- `limits.py`     parameters and activations under their limits
- `train/`       the `train` section: its models, their validation, the pass
- `lints.py`      the warnings, one rule each (LINTS)

`state.py` holds the CompileState they share and the `Pass` record (needs, ensures);
`values.py` and `arguments.py` are helpers that evaluate and validate arguments.
"""
