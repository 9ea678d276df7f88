"""The web consoles: templates, static files and the live stream."""
