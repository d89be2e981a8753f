"""Live dreaming: one session (source -> gate -> live pipeline -> sinks) for the command line and
the app, its stats, the window's steering keys, and the foreground runner of `livedream live`."""
