"""The frozen VGG-19 feature extractor and its weights."""
