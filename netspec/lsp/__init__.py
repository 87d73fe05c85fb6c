"""`netspec lsp`: a language server for `.net` files, built on `netspec.compiler.analyze`
and pygls.

    server.py       the handlers; none can stop the server (each logs what it raises)
    documents.py    each open document's analysis, per version; `use` reads open buffers
    positions.py    spans (1-based, code points) and protocol positions (0-based, UTF-16)
    index.py        every name and where it is written, from the AST
    facts.py        every node and where it was written, with its inferred shape
    diagnostics.py  hover.py  navigation.py  completion.py  symbols.py  tokens.py
    inlay.py  formatting.py  opinfo.py    one feature each (opinfo: an operation's parameters)

Nothing here imports torch: the server starts in the time the front end takes.
"""
