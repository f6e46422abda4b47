"""Inference: stylize, video, export, the zoo."""
