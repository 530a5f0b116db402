"""The spec's JSON Schema, shipped inside the package as ``reconcile.schemas``.

``reconcile.schema.json`` beside this file is the one copy: editors point at it here, and the build
(``[tool.setuptools.package-dir]`` in pyproject.toml) maps this directory into the wheel, where
``reconcile.spec`` reads it with ``importlib.resources``.
"""
