"""Training: the LightningModule, data, callbacks and LightningCLI (the only Lightning importer)."""
