"""A neural text-to-speech engine: text in, 16 kHz speech out.

    from tts import Synthesizer
    synth = Synthesizer.load()
    audio = synth.synthesize("Hello, world.")
"""

import os as _os

__version__ = "0.2.0"  # 0.2: one installed namespace (tts.vocoder, tts.kernels, tts.train, tts.demo)

# The engine is one namespace: the folders vocoder/, kernels/, train/ and demo/ beside this one
# in a source checkout are tts.vocoder, tts.kernels, tts.train and tts.demo (pyproject.toml
# installs them inside tts). Searching the checkout's root too makes them so without an install.
_checkout = _os.path.dirname(__path__[0])
if _os.path.isfile(_os.path.join(_checkout, "kernels", "__init__.py")) \
        and not _os.path.isdir(_os.path.join(__path__[0], "kernels")):
    __path__.append(_checkout)
__all__ = ["Chunk", "SynthesisError", "Synthesizer"]


def __getattr__(name):
    # The pipeline pulls in torch and the models; `import tts.text` alone should stay light.
    if name in __all__:
        from tts import synthesizer

        return getattr(synthesizer, name)
    raise AttributeError(f"module 'tts' has no attribute {name!r}")
