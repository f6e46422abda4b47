"""Errors, files, images, safe unpickling, device and precision rules, settings (no nn.Module)."""
