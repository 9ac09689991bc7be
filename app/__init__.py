"""The InterIR Explorer Gradio app: ``python app.py`` (see app/main.py)."""
