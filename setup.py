"""The optional compiled helper of the fan-out loop (pushy_shard/front/_sendall.c).

Everything else is in pyproject.toml. `optional=True`: where it cannot be built (no C
compiler, no Python headers) the install goes on without it and the server runs the same
loop in Python.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("pushy_shard.front._sendall", ["pushy_shard/front/_sendall.c"],
                             optional=True)])
