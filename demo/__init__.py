"""The gradio web demo (python -m tts.demo), built on the public tts API alone."""
