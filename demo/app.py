"""The gradio web demo: type text, hear it spoken as it is generated.

    python -m tts.demo [--voice PATH] [--host 127.0.0.1] [--port 7860] [--concurrency N]

Thin on purpose: everything speech-related goes through the public ``tts.Synthesizer``; this
file only turns its chunks into what the page shows. The audio streams to the browser chunk
by chunk, and the whole utterance comes again, losslessly, as a second player once it is done
(the stream is re-encoded to AAC by gradio, the full output is 16-bit wav). The mel
spectrogram and the attention alignment are redrawn each time a sentence finishes.

A script calls the same endpoint, ``/generate``, with gradio_client: ``predict`` answers the
last update, which carries the full audio (wav), the mel spectrogram, the alignment, the
timing and the words; only the first output, the streaming player's, holds chunks alone.

One Synthesizer per usable vocoder (the WaveNet once per kernel backend) is made at start and
shared by all requests; it keeps all generation state per call, so concurrent users each get
their own audio. gradio's queue bounds how many requests run at once.
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tts.audio import to_pcm16
from tts.command import MissingExtraError, OneLineParser

MAX_INPUT_CHARS = 2000  # characters of one request's text
# gradio's queue holds at most this many waiting requests per running one; beyond that a
# user gets "queue full" at once instead of a wait that would outlast the page.
QUEUE_PER_WORKER = 8
EXAMPLES = [
    "Hello! This is a neural text-to-speech engine, speaking in real time.",
    "The quick brown fox jumps over the lazy dog.",
    "On March 3rd, 2021, the temperature reached 42 degrees at 3:15 pm.",
    "Dr. Smith paid $12.50 for 3 books. Was it worth it? She thinks so.",
]
EXTRA_HINT = "pip install 'tts-engine[demo]'"


class ServeError(RuntimeError):
    """The page cannot be served where asked (the port is taken, the address is not ours)."""


class DemoInputError(ValueError):
    """A request the demo refuses: text too long or empty, a bad seed or rate, no such vocoder."""


def _import(name: str):
    try:
        return __import__(name)
    except ImportError:
        raise MissingExtraError(f"the demo needs {name}: {EXTRA_HINT}") from None


# --- synthesizers --------------------------------------------------------------------------


def load_synthesizers(voice: str | Path | None = None, device: str = "auto", lexicon=None) -> dict:
    """{label: Synthesizer} for every vocoder usable here (the WaveNet once per kernel
    backend), labelled as `tts.vocoder.choice.VocoderChoice.label`, the one ``auto`` picks first. Raises
    ``tts.SynthesisError`` if the voice cannot be loaded at all."""
    from tts import SynthesisError, Synthesizer
    from tts.vocoder.runtime import usable_choices

    # The automatic choice first: if it fails, the voice or device is at fault, not a vocoder.
    default = Synthesizer.load(voice, device=device, lexicon=lexicon)
    synths = {default.vocoder.label: default}
    for choice in usable_choices(default.device):
        try:
            synth = Synthesizer(default.voice, device=device, vocoder=choice, lexicon=lexicon)
        except SynthesisError:
            continue  # the voice has no WaveNet, or the backend cannot run it here
        synths.setdefault(synth.vocoder.label, synth)
    return synths


def warm_up(synth) -> None:
    """Speak a word once, so that one-time costs (JIT compiling, loading compiled kernels,
    allocator growth) are paid at start and not by the first visitor."""
    synth.synthesize("Ready.")


# --- one request, gradio-free --------------------------------------------------------------


@dataclass
class Timing:
    """How fast one request went. ``synthesis_s`` counts the engine only, not drawing or
    sending, so the real-time factor is the engine's."""

    first_audio_s: float | None = None  # request start -> first chunk ready
    synthesis_s: float = 0.0
    audio_s: float = 0.0
    sentences: int = 0
    vocoder: str = ""

    @property
    def real_time_factor(self) -> float | None:
        return self.synthesis_s / self.audio_s if self.audio_s > 0 else None

    def markdown(self, done: bool) -> str:
        first = "-" if self.first_audio_s is None else f"{self.first_audio_s * 1000:.0f} ms"
        rtf = "-" if self.real_time_factor is None else f"{self.real_time_factor:.2f}"
        state = "done" if done else "generating..."
        return (f"**{state}** · vocoder `{self.vocoder}` · time to first audio **{first}** · "
                f"real-time factor **{rtf}** (synthesis {self.synthesis_s:.2f} s for "
                f"{self.audio_s:.2f} s of audio, {self.sentences} sentence(s); below 1 is faster "
                f"than real time)")


@dataclass
class Update:
    """What one step of a request changes on the page."""

    audio: np.ndarray  # (n,) int16: the newest chunk
    mel_picture: np.ndarray | None  # (H, W, 3) uint8, only when a sentence has just finished
    alignment_picture: np.ndarray | None
    timing: Timing
    words: list  # every word heard so far, with its times (tts.timings.WordTiming)


def words_table(words: list) -> list[list]:
    """Rows of the page's word table: the word as written, its start and end in seconds."""
    return [[w.word, round(w.start, 3), round(w.end, 3)] for w in words]


def check_request(text: str, seed, rate, vocoder: str, synths: dict, max_chars: int = MAX_INPUT_CHARS
                  ) -> tuple[str, int, float, str]:
    """Refuse what the engine should not be asked, with a message for the user; returns the
    checked (text, seed, rate, label of the vocoder)."""
    from tts.errors import check_rate, check_seed

    text = text or ""
    if len(text) > max_chars:
        raise DemoInputError(f"the text is {len(text)} characters long; the demo speaks at most "
                             f"{max_chars} characters at a time")
    if not text.strip():
        raise DemoInputError("type some text to speak")
    if isinstance(seed, float) and seed.is_integer():  # gradio's Number sends 3.0 for 3
        seed = int(seed)
    try:
        check_seed(seed)
    except ValueError as e:
        raise DemoInputError(f"the {e}") from None
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        raise DemoInputError(f"the speaking rate must be a number, got {rate!r}") from None
    try:
        check_rate(rate)
    except ValueError as e:
        raise DemoInputError(f"the {e}") from None
    if vocoder not in synths:
        raise DemoInputError(f"vocoder {vocoder!r} is not available here (available: {', '.join(synths)})")
    return text, seed, rate, vocoder


MAX_PAUSE = 10.0  # seconds between sentences or paragraphs


def check_pauses(sentence_pause, paragraph_pause) -> dict:
    """The pauses as `Synthesizer.stream` takes them, or DemoInputError saying what is wrong."""
    pauses = {}
    for name, value in (("sentence_pause", sentence_pause), ("paragraph_pause", paragraph_pause)):
        try:
            pauses[name] = float(value or 0.0)
        except (TypeError, ValueError):
            raise DemoInputError(f"the {name.replace('_', ' ')} must be a number of seconds, got {value!r}") from None
        if not 0 <= pauses[name] <= MAX_PAUSE:
            raise DemoInputError(f"the {name.replace('_', ' ')} must be 0 to {MAX_PAUSE:g} seconds, got {value}")
    return pauses


def describe(synth) -> str:
    """The loaded voice's models in words, for the page's heading."""
    acoustic = {"parallel": "parallel acoustic model (predicted durations)",
                "attention": "attention acoustic model"}.get(synth.acoustic.kind, f"{synth.acoustic.kind} acoustic model")
    vocoder = (f"autoregressive WaveNet vocoder ({synth.vocoder.backend} kernel)" if synth.vocoder.backend
               else "Griffin-Lim (phase from the mel alone)")
    return f"{acoustic} + {vocoder}"


def speak(synth, text: str, seed: int, rate: float, **options) -> Iterator[Update]:
    """Stream one request: an Update per audio chunk, pictures when a sentence finishes;
    ``options`` as `Synthesizer.stream` takes them (ssml, sentence_pause, paragraph_pause).

    Raises ``tts.text.NothingToSpeakError`` (a ValueError) before yielding if the text holds
    nothing to say, and ``tts.text.ssml.SsmlError`` (a ValueError) for malformed SSML.
    """
    timing = Timing(vocoder=synth.vocoder.label)
    mels: list[np.ndarray] = []  # (frames, n_mels) per finished sentence
    words: list = []
    start = time.perf_counter()
    chunks = synth.stream(text, seed=seed, rate=rate, **options)
    while True:
        t = time.perf_counter()
        chunk = next(chunks, None)
        timing.synthesis_s += time.perf_counter() - t
        if chunk is None:
            return
        if timing.first_audio_s is None:
            timing.first_audio_s = time.perf_counter() - start
        timing.audio_s += len(chunk.audio) / synth.sample_rate
        mel_picture = alignment_picture = None
        words = words + chunk.words
        if chunk.last and len(chunk.mel):
            mels.append(chunk.mel)
            timing.sentences += 1
            mel_picture = draw_mel(mels)
            alignment_picture = draw_alignment(chunk.alignment, chunk.phonemes, chunk.sentence, len(chunk.mel))
        yield Update(to_pcm16(chunk.audio), mel_picture, alignment_picture, timing, words)


# --- pictures ------------------------------------------------------------------------------


def _figure(width: float, height: float):
    # A Figure of its own with an Agg canvas, never pyplot: pyplot's global state is not safe
    # across the threads gradio serves requests on.
    _import("matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _pixels(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()  # (H, W, 3) uint8


def draw_mel(mels: list[np.ndarray]) -> np.ndarray:
    """The sentences' mel spectrograms side by side, split by dashed lines."""
    fig = _figure(8, 2.6)
    ax = fig.add_subplot()
    image = ax.imshow(np.concatenate(mels).T, origin="lower", aspect="auto", interpolation="none",
                      cmap="magma")
    edge = 0
    for mel in mels[:-1]:
        edge += mel.shape[0]
        ax.axvline(edge - 0.5, color="white", linestyle="--", linewidth=1)
    ax.set(title="mel spectrogram", xlabel="mel frame", ylabel="mel band")
    fig.colorbar(image, ax=ax, pad=0.01)
    return _pixels(fig)


def draw_alignment(alignment: np.ndarray, phonemes: list[str], sentence: int, frames: int | None = None) -> np.ndarray:
    """Which symbol each decoder step (the attention model) or each mel frame (the parallel
    model, whose alignment has one row per frame of the sentence's ``frames``) says: a clean
    diagonal means the model read the text in order."""
    fig = _figure(8, 3.2)
    ax = fig.add_subplot()
    ax.imshow(alignment.T, origin="lower", aspect="auto", interpolation="none", cmap="viridis",
              vmin=0.0, vmax=1.0)
    per_frame = frames is not None and len(alignment) == frames
    ax.set(title=f"{'symbol of each frame' if per_frame else 'attention alignment'}, sentence {sentence + 1}",
           xlabel="mel frame" if per_frame else "decoder step", ylabel="symbol")
    ax.xaxis.get_major_locator().set_params(integer=True)
    if len(phonemes) <= 48:  # beyond that the labels overlap
        labels = [p if p.strip() else "␣" for p in phonemes] + ["EOS"] * (alignment.shape[1] - len(phonemes))
        ax.set_yticks(range(alignment.shape[1]), labels[: alignment.shape[1]], fontsize=6)
    return _pixels(fig)


# --- the page ------------------------------------------------------------------------------


def build_app(synths: dict, max_chars: int = MAX_INPUT_CHARS):
    """The gradio Blocks page over already loaded synthesizers ({vocoder label: Synthesizer})."""
    gr = _import("gradio")
    from tts.errors import MAX_RATE, MIN_RATE
    from tts.text import NothingToSpeakError
    from tts.text.ssml import SsmlError

    if not synths:
        raise ValueError("build_app needs at least one Synthesizer")
    sample_rate = next(iter(synths.values())).sample_rate

    def generate(text, seed, rate, vocoder, ssml=False, sentence_pause=0.0, paragraph_pause=0.0):
        try:
            text, seed, rate, label = check_request(text, seed, rate, vocoder, synths, max_chars)
            pauses = check_pauses(sentence_pause, paragraph_pause)
            updates = speak(synths[label], text, seed, rate, ssml=bool(ssml) or None, **pauses)
            first = next(updates, None)  # a text with nothing to say fails here, before any output
        except (DemoInputError, NothingToSpeakError, SsmlError) as e:
            # The user's mistake, shown on the page: not a fault for the console's log.
            raise gr.Error(str(e), print_exception=False) from None
        if first is None:
            raise gr.Error("the text holds nothing that can be said aloud", print_exception=False)
        pieces, update = [], first
        mel_picture = alignment_picture = None
        while update is not None:
            pieces.append(update.audio)
            if update.mel_picture is not None:
                mel_picture, alignment_picture = update.mel_picture, update.alignment_picture
            yield ((sample_rate, update.audio), gr.skip(),
                   gr.skip() if update.mel_picture is None else update.mel_picture,
                   gr.skip() if update.alignment_picture is None else update.alignment_picture,
                   update.timing.markdown(done=False), words_table(update.words) if update.words else gr.skip())
            last, update = update, next(updates, None)
        # Whole, not skipped: gradio_client's predict() answers this last update alone.
        yield (gr.skip(), (sample_rate, np.concatenate(pieces)), mel_picture, alignment_picture,
               first.timing.markdown(done=True), words_table(last.words))

    with gr.Blocks(title="Text to speech", analytics_enabled=False) as app:
        gr.Markdown("# Text to speech\nEnglish text in, 16 kHz speech out, streamed as it is "
                    f"generated: {describe(next(iter(synths.values())))}.")
        with gr.Row():
            with gr.Column():
                text = gr.Textbox(label="Text", lines=5, value=EXAMPLES[0],
                                  info=f"up to {max_chars} characters")
                with gr.Row():
                    seed = _unchecked(gr.Number(label="Seed", value=0, precision=0, minimum=0))
                    rate = _unchecked(gr.Slider(MIN_RATE, MAX_RATE, value=1.0, step=0.05, label="Speaking rate"))
                vocoder = gr.Dropdown(list(synths), value=next(iter(synths)), label="Vocoder")
                with gr.Row():
                    ssml = gr.Checkbox(label="SSML", value=False,
                                       info="read the text as SSML (also when it starts with markup, such as <speak>)")
                    sentence_pause = gr.Number(label="Pause between sentences (s)", value=0.0, minimum=0,
                                               maximum=MAX_PAUSE)
                    paragraph_pause = gr.Number(label="Pause between paragraphs (s)", value=0.0, minimum=0,
                                                maximum=MAX_PAUSE)
                button = gr.Button("Generate", variant="primary")
                gr.Examples(EXAMPLES, inputs=[text])
            with gr.Column():
                streamed = gr.Audio(label="Streaming", streaming=True, autoplay=True,
                                    interactive=False, elem_id="streamed-audio")
                full = gr.Audio(label="Full audio (lossless)", type="numpy", format="wav",
                                interactive=False, elem_id="full-audio")
                timing = gr.Markdown()
                words = gr.Dataframe(headers=["word", "start (s)", "end (s)"], label="Words, as they are heard",
                                     interactive=False, elem_id="word-timings")
        mel = gr.Image(label="Mel spectrogram", type="numpy", format="png", interactive=False)
        alignment = gr.Image(label="Alignment", type="numpy", format="png", interactive=False)
        button.click(generate, inputs=[text, seed, rate, vocoder, ssml, sentence_pause, paragraph_pause],
                     outputs=[streamed, full, mel, alignment, timing, words], api_name="generate")
    return app


def _unchecked(component):
    """The gradio input ``component`` with its bounds shown on the page but not enforced by
    gradio, whose refusal logs a whole traceback for each: `check_request` refuses an
    out-of-range value in one line on the page and none in the console. (On the instance: a
    subclass of a gradio component makes gradio write a .pyi file beside this one.)"""
    component.preprocess = lambda payload: payload
    return component


# --- command line --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m tts.demo", description="The text-to-speech web demo.")
    p.add_argument("--voice", type=Path, help="voice folder (default: the bundled voice)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default auto)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--concurrency", type=int, default=2,
                   help="requests generated at once; later ones wait in a queue (default 2)")
    p.add_argument("--max-chars", type=int, default=MAX_INPUT_CHARS,
                   help=f"longest text accepted, in characters (default {MAX_INPUT_CHARS})")
    p.add_argument("--lexicon", type=Path, help="pronunciations in CMUdict's format, before the built-in ones")
    return p


def main(argv: list[str] | None = None) -> int:
    from tts.command import EXIT_OK, UsageError, check_voice_folder, run_command

    def body() -> int:
        args = build_parser().parse_args(argv)
        if args.concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        if args.voice is not None:
            check_voice_folder(args.voice)
        _import("gradio")  # before the slow voice load, so a missing extra is said at once
        _import("matplotlib")
        if shutil.which("ffmpeg") is None:
            # gradio re-encodes streamed audio with ffmpeg; without it every request would fail.
            raise MissingExtraError("the demo streams audio through ffmpeg, which is not installed "
                                    "(e.g. apt-get install ffmpeg)")
        synths = load_synthesizers(args.voice, args.device, args.lexicon)
        warm_up(next(iter(synths.values())))
        app = build_app(synths, args.max_chars)
        print(f"voice loaded; vocoders: {', '.join(synths)}", flush=True)
        app.queue(default_concurrency_limit=args.concurrency, max_size=QUEUE_PER_WORKER * args.concurrency)
        try:
            app.launch(server_name=args.host, server_port=args.port, ssr_mode=False, show_error=True)
        except OSError as e:  # the port is taken, or the address is not this machine's
            raise ServeError(f"cannot serve on {args.host}:{args.port}: {e}") from None
        return EXIT_OK

    return run_command("demo", body, failure=(ServeError,))
