"""``python -m demo``: serve the text-to-speech web demo."""

from demo.app import main

raise SystemExit(main())
