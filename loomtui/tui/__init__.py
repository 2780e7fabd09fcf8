"""The terminal UI (app, screens, widgets, themes): no engine logic, and the only package importing Textual or Rich."""
