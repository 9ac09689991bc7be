"""Entry point of the InterIR Explorer (``python app.py``; also a Hugging Face Space's app_file).

Serves on 127.0.0.1:7860 (or $GRADIO_SERVER_NAME / $GRADIO_SERVER_PORT); see app/main.py.
"""
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from app.main import main  # noqa: E402  (the app/ package, next to this file)

if __name__ == "__main__":
    sys.exit(main())
