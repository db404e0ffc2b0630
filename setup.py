"""The one compiled piece of the lab: nexa.data._minhash, the fused MinHash kernel (see its source).

Everything else is in pyproject.toml. The extension is optional: where no C compiler is found the build
goes on without it, and nexa.data.dedup runs its numpy kernel, which gives the same signatures
(`nexa.data.dedup.MINHASH_KERNEL` says which one runs).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("nexa.data._minhash", ["src/nexa/data/_minhash.c"], optional=True,
                             extra_compile_args=["-O3"])])
