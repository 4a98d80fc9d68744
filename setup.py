# cffi's setuptools hook is only reachable through setup(); the rest of the
# metadata lives in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["native/build_native.py:ffibuilder"])
