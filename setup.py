"""The one compiled piece: the batched IIR kernel (audioflow.dsp._iir). It is optional: without a C
compiler the build goes on and audioflow filters in the frequency domain instead (same response)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("audioflow.dsp._iir", ["src/audioflow/dsp/_iir.c"],
                             extra_compile_args=["-O3", "-std=gnu99"], optional=True)])
