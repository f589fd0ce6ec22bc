"""Terminal views: rich renderables made from plain data (a Capture, a document), one module
per command, on the primitives of matrix.py. Never sees a tensor; never prints.

    matrix.py   View, colour ramps, numeric grids, heat maps, token strips, panels of maps
    parts.py    what every capture view shares: header line, weights matrix, top-k lines,
                embeddings table
    inspect.py heads.py steps.py rollout.py compare.py model.py cross.py generate.py
    train.py tokens.py (the last needs neither torch nor NumPy)
"""
