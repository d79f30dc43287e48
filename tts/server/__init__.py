"""A speech server for voice applications: OpenAI-compatible HTTP, streaming in and out.

    pip install ".[server]" && tts-server              # or: python -m tts.server --voice DIR

``POST /v1/audio/speech`` (OpenAI's request, plus ``seed``), streamed while generated;
``/v1/audio/speech/stream`` (WebSocket: text in as it is written, PCM out sentence by
sentence); ``GET /v1/voices``; ``GET /health``. See ``tts.server.app`` for the protocol,
``tts.server.cli`` for the options and ``python -m tts.server.bench`` for the benchmark.
"""
