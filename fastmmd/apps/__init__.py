"""Per-image optimization, compare, evaluate, data fetching, the web page."""
