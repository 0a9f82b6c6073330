"""memeforge renderer: the pure render engine and the worker that wraps it."""
