"""The core CLI commands, one module each; ``vist3a.cli`` wires them together."""
