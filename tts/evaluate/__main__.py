import sys

from tts.evaluate.cli import main

sys.exit(main())
