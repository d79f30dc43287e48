"""The vocoder, mel spectrogram to 16 kHz audio: the choice of vocoder and kernel (`choice`),
the runtime that streams mel to audio (`runtime`), the WaveNet (`wavenet`), its predictor
(`lpc`) and its voicing detector (`voicing`)."""
