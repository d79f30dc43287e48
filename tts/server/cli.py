"""The ``tts-server`` command (also ``python -m tts.server``).

    tts-server [--voice DIR ...] [--voice-dir DIR] [--host 127.0.0.1] [--port 8000]
               [--workers N] [--queue N] [--api-key KEY] [--cors-origin URL ...]

Voices are loaded (and warmed up) before the port opens, one shared ``Synthesizer`` each.
Exit codes (tts.command): 0 after a clean stop; 2 bad usage or input (a --voice folder that is
missing or holds no voice); 1 no voice installed, a broken one, a missing extra, or an address
that cannot be served. Every error is one line on stderr.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from pathlib import Path

from tts.cli import add_vocoder_options, check_vocoder_options
from tts.command import MissingExtraError, OneLineParser, UsageError, check_voice_folder, run_command

API_KEY_ENV = "TTS_SERVER_API_KEY"
EXTRA_HINT = "pip install 'tts-engine[server]'"


def build_parser() -> OneLineParser:
    from tts.server.app import MAX_INPUT_CHARS
    from tts.voice import BUNDLED_VOICE

    p = OneLineParser(prog="tts-server", description="Serve speech over an OpenAI-compatible HTTP API and a WebSocket.")
    p.add_argument("--voice", type=Path, action="append", default=[],
                   help="a voice folder, served under its folder name (repeatable)")
    p.add_argument("--voice-dir", type=Path,
                   help=f"serve every voice folder in this folder (default, without --voice: {BUNDLED_VOICE.parent})")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default auto)")
    add_vocoder_options(p)
    p.add_argument("--lexicon", type=Path, help="pronunciations in CMUdict's format, before the built-in ones")
    p.add_argument("--workers", type=int, default=4 * (os.cpu_count() or 1),
                   help="most requests generated at once; fewer when the engine could not keep them all "
                        "in real time (default: 4 per CPU core)")
    p.add_argument("--queue", type=int, default=0,
                   help="requests that may wait for a running one to end; past that, 503 (default 0: "
                        "every request admitted starts at once)")
    p.add_argument("--max-chars", type=int, default=MAX_INPUT_CHARS,
                   help=f"longest input accepted, in characters (default {MAX_INPUT_CHARS})")
    p.add_argument("--api-key", default=os.environ.get(API_KEY_ENV),
                   help=f"require 'Authorization: Bearer KEY' on every route but /health (default: ${API_KEY_ENV})")
    p.add_argument("--cors-origin", action="append", default=[],
                   help="let web pages from this origin call the server (repeatable; '*' for any)")
    return p


def find_voices(args) -> dict[str, Path]:
    """{name: folder} from --voice and --voice-dir (the bundled folder when neither is given)."""
    from tts.voice import BUNDLED_VOICE, CONFIG_FILE

    voices: dict[str, Path] = {}

    def add(path: Path) -> None:
        if path.name in voices:
            raise UsageError(f"two voices are named {path.name!r}: {voices[path.name]} and {path}")
        voices[path.name] = path

    for path in args.voice:  # a wrong path is bad input (2): fixing the command line fixes it
        check_voice_folder(path)
        add(path)
    folder = args.voice_dir or (None if args.voice else BUNDLED_VOICE.parent)
    if folder is not None:
        if args.voice_dir is not None and not folder.is_dir():
            raise UsageError(f"voice folder not found: {folder}")
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            if (path / CONFIG_FILE).is_file():
                add(path)
        if not voices:
            raise NoVoice(f"no voice installed yet in {folder}: pass --voice DIR or --voice-dir DIR")
    return voices


class NoVoice(Exception):
    pass


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as e:
        sock.close()
        raise OSError(f"cannot serve on {host}:{port}: {getattr(e, 'strerror', None) or e}") from None
    sock.listen(2048)
    return sock


def _measure(synth, pool) -> None:
    """The engine's speed on one stream, for the pool to admit no more streams than it keeps
    in real time from the first request on."""
    import time

    start = time.monotonic()
    audio = synth.synthesize("The server measures how fast it speaks.")
    pool.realtime.record(time.monotonic() - start, len(audio) / synth.sample_rate, streams=1)


def _check_extra() -> None:
    for name in ("fastapi", "uvicorn", "websockets"):
        try:
            __import__(name)
        except ImportError:
            raise MissingExtraError(f"the server needs {name}: {EXTRA_HINT}") from None


def run(args) -> int:
    from tts.server.app import Server, build_app
    from tts.server.encode import formats
    from tts.server.workers import WorkerPool
    from tts.synthesizer import Synthesizer

    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    check_vocoder_options(args)
    if args.lexicon is not None:
        from tts.text.lexicon import LexiconError, load_lexicon

        try:
            args.lexicon = load_lexicon(args.lexicon)
        except LexiconError as e:
            raise UsageError(str(e)) from None
    queue = args.queue
    if queue < 0:
        raise UsageError("--queue must be 0 or more")
    if args.max_chars < 1:
        raise UsageError("--max-chars must be at least 1")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not a port number")
    _check_extra()
    import uvicorn

    voices = find_voices(args)
    synths = {}
    for name, path in voices.items():
        synths[name] = Synthesizer.load(path, device=args.device, vocoder=args.choice, lexicon=args.lexicon)
        synths[name].synthesize("Ready.")  # one-time costs (JIT compiling) now, not on the first request
    pool = WorkerPool(args.workers, queue)
    _measure(next(iter(synths.values())), pool)
    app = build_app(Server(synths, pool, formats(), args.max_chars, args.api_key or None), args.cors_origin)
    sock = _bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    if not _is_loopback(args.host) and not args.api_key:
        print(f"tts-server: warning: listening on {args.host} without --api-key: anyone who can reach "
              f"this port can use the server", file=sys.stderr)
    url_host = f"[{host}]" if ":" in host else host
    print(f"tts-server: serving {', '.join(synths)} on http://{url_host}:{port} "
          f"({args.workers} workers, queue {queue})", flush=True)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        pool.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("tts-server", lambda: run(build_parser().parse_args(argv)), failure=(NoVoice, OSError))


if __name__ == "__main__":
    sys.exit(main())
