"""The WaveNet vocoder: mel spectrogram to 16 kHz audio, one sample at a time."""
