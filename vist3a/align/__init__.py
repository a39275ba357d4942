"""Direct reward finetuning of the generator (VIST3A section 3.2)."""
