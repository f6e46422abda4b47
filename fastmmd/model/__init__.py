"""The transformation network, its conditioning, storage, files and runtime."""
