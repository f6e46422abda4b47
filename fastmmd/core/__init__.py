"""Torch-only math without VGG: colour, motion, norm statistics, procedural samples."""
