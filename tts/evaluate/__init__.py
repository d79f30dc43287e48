"""Judge a voice like a listener would, beside its teacher: ``python -m tts.evaluate VOICE_DIR
--corpus CORPUS_DIR``.

On the first N held-out lines of a teacher corpus it prints one table, engine beside teacher:
Whisper tiny.en word error rate, DNSMOS P.835 / P.808, mel-cepstral distortion against the
teacher, speaker similarity to the speaker's recordings (Resemblyzer), and the duration
ratio; then each model alone (the vocoder's copy-synthesis of the
teacher's mel; the acoustic model's mel through Griffin-Lim, beside the teacher's own mel
through Griffin-Lim); robustness on hard texts; end-to-end speed.

- ``metrics``: the metric code on plain arrays (tested on tiny inputs).
- ``judges``: the recognizer, DNSMOS, the speaker encoder and the Piper teacher, from the
  ``eval`` extra.
- ``robustness``: the hard texts and their checks.
- ``cli``: the runner, the table and the JSON report.
- ``compare``: two reports on the same lines, paired; ``merge``: reports on different lines,
  one report; ``reports``: reading a report back.
"""
