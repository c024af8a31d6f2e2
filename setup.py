"""The package layout of the wheel; the metadata is in pyproject.toml.

`resources/` (model configs, vocabularies, sigma tables) and `workflows/` (the templates) stay at the top of
the repository, where the docs, the scripts and `sdgraph run workflows/…` name them. A wheel can only ship
data inside a package, so they are mapped to `nodes/_data/resources` and `nodes/_data/workflows` there, and
`nodes.shipped` finds them through importlib.resources. pyproject.toml cannot list a package that lives in
another folder next to discovered ones, hence this file.
"""

from setuptools import find_packages, setup

SHIPPED = {"nodes._data.resources": "resources", "nodes._data.workflows": "workflows"}

setup(
    packages=[*find_packages(include=["app*", "nodes*", "graph_engine*", "ui*"]), *SHIPPED],
    package_dir=SHIPPED,
    # Everything in the two folders, sub-folders included (some are named like `sd3.5_large`, so they cannot
    # be packages of their own); nothing else is package data.
    package_data={name: ["**/*"] for name in SHIPPED},
    include_package_data=False,
)
