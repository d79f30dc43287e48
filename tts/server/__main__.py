"""``python -m tts.server``: serve speech over HTTP and WebSocket."""

from tts.server.cli import main

raise SystemExit(main())
