"""A neural text-to-speech engine: text in, 16 kHz speech out.

    from tts import Synthesizer
    synth = Synthesizer.load()
    audio = synth.synthesize("Hello, world.")
"""

__version__ = "0.1.0"
__all__ = ["Chunk", "SynthesisError", "Synthesizer"]


def __getattr__(name):
    # The pipeline pulls in torch and the models; `import tts.text` alone should stay light.
    if name in __all__:
        from tts import synthesizer

        return getattr(synthesizer, name)
    raise AttributeError(f"module 'tts' has no attribute {name!r}")
