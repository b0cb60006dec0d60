"""Capture: where driving frames come from (webcams, video files, image folders, the demo's clip)."""
