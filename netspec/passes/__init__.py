"""The compiler's passes, one per module; their order is `netspec.compiler.PASSES`.

`state.py` holds the CompileState they share and the `Pass` record (needs, ensures);
`values.py` and `arguments.py` are helpers that evaluate and validate arguments.
"""
