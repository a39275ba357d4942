"""Family-agnostic building blocks for generator plugins."""
