"""The LivePortrait networks (one file per network) and the code that knows their checkpoints."""
