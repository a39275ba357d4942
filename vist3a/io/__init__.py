"""Files in and out: checkpoints, YAML documents, atomic writes."""
