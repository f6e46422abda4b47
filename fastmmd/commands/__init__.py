"""One thin module per subcommand: flags in, settings out, an app called."""
