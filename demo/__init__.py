"""The gradio web demo (python -m demo), built on the public tts API alone."""
