"""Style losses as distances between feature distributions (Li et al. 2017), and their fusions.

A loss spec is a method name or a weighted sum of them: ``gram``, ``bn+poly``, ``0.5*bn+0.5*poly``,
``linear+gaussian``. Unweighted fusions give every method weight 1/k so a fusion is about as strong
as a single method. (The authors' ``--multi-weight`` multiplied the *first* method's weight by every
entry, so "0.5,0.5" gave 0.25 and 1; fastmmd does what was intended: w_i for method i.)

The parsing and validation of a spec live with the settings (:func:`fastmmd.losses.settings.parse_loss`).
"""

from __future__ import annotations

from fastmmd.losses.content import content_loss, relative_content_loss, total_variation
from fastmmd.losses.settings import METHOD_NAMES, StyleLoss, parse_loss
from fastmmd.losses.style import METHODS, StyleMethod

__all__ = ["METHODS", "METHOD_NAMES", "StyleLoss", "StyleMethod", "content_loss", "parse_loss", "relative_content_loss", "total_variation"]
