"""One module per CLI command; each registers itself on ``tamdeploy.cli.app``."""
