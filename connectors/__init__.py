"""Platform connectors: one package per platform behind the core's connector contract."""
