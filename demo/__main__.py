"""``python -m tts.demo``: serve the text-to-speech web demo."""

from tts.demo.app import main

raise SystemExit(main())
